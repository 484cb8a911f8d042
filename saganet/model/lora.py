"""LoRA on the qkv projection of the latent stream, with SAGANet's checkpoint semantics.

What is adapted: the ``3D`` output rows of a qkv weight are split into three
contiguous blocks of ``D`` rows and blocks 0 and 2 get a rank-r update each. Because the qkv
channels are interleaved per head (``(head, dim, q/k/v)``), these blocks are "q, k and v of the
first and last third of the heads", not "q and v". The update is ``scaling * [B0 A0; 0; B1 A1]``
with ``lora_A`` ``(2r, D)`` and ``lora_B`` ``(2D, r)``.

How it is stored: a published or our-saved ``qkv.weight`` ALREADY contains the
update (``W_base + scaling * dW``). A :class:`LoRALinear` keeps the frozen base weight and
adds the update on the fly, and converts at the state-dict boundary: ``state_dict()`` writes the
merged weight, and loading subtracts the update of the loaded factors, so a published weight is
used exactly as stored and training resumes from the recovered base weight. A state dict that
holds a base (unmerged) weight must be loaded inside :func:`loading_unmerged_weights`.

:func:`merge_lora` folds the update into the weight for fast inference; in that mode the
factors are ignored by the forward pass (and get no gradient) until :func:`unmerge_lora`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

ROW_BLOCKS = 3  # the qkv output rows form three D-row blocks
ADAPTED_ROW_BLOCKS = (0, 2)  # loralib's enable_lora=[True, False, True]


class LoRALinear(nn.Linear):
    """A qkv ``Linear(D, 3D)`` with a frozen base weight and a LoRA update on row blocks 0, 2.

    Args:
        in_features: input width D.
        out_features: output width, ``3 * D``.
        rank: LoRA rank r.
        alpha: LoRA alpha; the update is scaled by ``alpha / rank``.
        bias: whether the projection has a bias (trainable together with the factors).
    """

    def __init__(self, in_features: int, out_features: int, rank: int, alpha: float,
                 bias: bool = True) -> None:
        super().__init__(in_features, out_features, bias=bias)
        if out_features % ROW_BLOCKS:
            raise ValueError(f"out_features {out_features} is not three row blocks")
        self.rank = rank
        self.scaling = alpha / rank
        self.block_rows = out_features // ROW_BLOCKS
        adapted = len(ADAPTED_ROW_BLOCKS)
        self.lora_A = nn.Parameter(torch.empty(adapted * rank, in_features))
        self.lora_B = nn.Parameter(torch.empty(adapted * self.block_rows, rank))
        self.weight.requires_grad_(False)  # the base weight is frozen; only the update trains
        self.merged = False
        # Whether a ``weight`` being loaded already contains the update (published layout).
        self.incoming_weights_merged = True
        self.reset_lora()
        self.register_state_dict_post_hook(_write_merged_weight)
        self.register_load_state_dict_pre_hook(_read_weight)

    def reset_lora(self) -> None:
        """loralib's initialisation: Kaiming-uniform ``lora_A``, zero ``lora_B``."""
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        # Zero B: a fresh adapter leaves the base network's outputs unchanged.
        nn.init.zeros_(self.lora_B)

    def delta_weight(self, lora_a: torch.Tensor | None = None,
                     lora_b: torch.Tensor | None = None) -> torch.Tensor:
        """The unscaled update ``[B0 A0; 0; B1 A1]`` of shape ``(3D, D)``.

        Args:
            lora_a: factors to use instead of ``self.lora_A`` (e.g. ones being loaded).
            lora_b: factors to use instead of ``self.lora_B``.
        """
        lora_a = self.lora_A if lora_a is None else lora_a
        lora_b = self.lora_B if lora_b is None else lora_b
        adapted = len(ADAPTED_ROW_BLOCKS)
        per_block = torch.bmm(lora_b.view(adapted, self.block_rows, self.rank),
                              lora_a.view(adapted, self.rank, -1))  # (2, D, D)
        zeros = per_block.new_zeros(self.block_rows, per_block.shape[-1])
        blocks = [zeros] * ROW_BLOCKS
        for slot, block in enumerate(ADAPTED_ROW_BLOCKS):
            blocks[block] = per_block[slot]
        return torch.cat(blocks, dim=0)  # (3D, D)

    def effective_weight(self) -> torch.Tensor:
        """The weight the forward pass uses: ``W_base + scaling * dW`` (or ``W`` if merged)."""
        if self.merged:
            return self.weight
        return self.weight + self.scaling * self.delta_weight()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.effective_weight(), self.bias)

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the update into ``weight`` (inference speed); no-op if already merged."""
        if not self.merged:
            self.weight.add_(self.scaling * self.delta_weight())
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Recover the base weight after :meth:`merge`; no-op if not merged."""
        if self.merged:
            self.weight.sub_(self.scaling * self.delta_weight())
            self.merged = False

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, rank={self.rank}, scaling={self.scaling}, "
                f"adapted_row_blocks={ADAPTED_ROW_BLOCKS}, merged={self.merged}")


def _write_merged_weight(module: LoRALinear, state_dict: dict, prefix: str,
                         local_metadata: dict) -> None:
    """state_dict() hook: publish ``W_base + scaling * dW`` under ``weight``."""
    if not module.merged:
        with torch.no_grad():
            state_dict[prefix + "weight"] = module.effective_weight().detach()


def _read_weight(module: LoRALinear, state_dict: dict, prefix: str, local_metadata: dict,
                 strict: bool, missing_keys: list, unexpected_keys: list,
                 error_msgs: list) -> None:
    """load_state_dict() pre-hook: turn a stored weight into what this module keeps.

    Factors absent from ``state_dict`` are taken from the module (they keep their values).
    Mis-shaped entries are left alone for PyTorch's own error report.
    """
    key = prefix + "weight"
    if key not in state_dict:
        return
    stored = state_dict[key]
    lora_a = state_dict.get(prefix + "lora_A", module.lora_A)
    lora_b = state_dict.get(prefix + "lora_B", module.lora_B)
    if (stored.shape != module.weight.shape or lora_a.shape != module.lora_A.shape
            or lora_b.shape != module.lora_B.shape):
        return
    if module.incoming_weights_merged == module.merged:
        return
    with torch.no_grad():
        update = module.scaling * module.delta_weight(lora_a.to(stored), lora_b.to(stored))
        # Merged file into an unmerged module: recover the base; base file into a merged one:
        # fold the update in.
        state_dict[key] = stored - update if module.incoming_weights_merged else stored + update


def lora_layers(module: nn.Module) -> list[LoRALinear]:
    """All LoRA layers inside ``module`` (12 in the official LoRA variants)."""
    return [m for m in module.modules() if isinstance(m, LoRALinear)]


@contextmanager
def loading_unmerged_weights(module: nn.Module) -> Iterator[None]:
    """Within this context, ``load_state_dict`` treats LoRA ``weight`` entries as BASE weights.

    Use it for state dicts that hold the weight without the update (a raw training-mode
    dump, or an MMAudio base checkpoint). Outside it, stored weights are taken to be merged.

    Args:
        module: the network (or any module containing LoRA layers).
    """
    layers = lora_layers(module)
    for layer in layers:
        layer.incoming_weights_merged = False
    try:
        yield
    finally:
        for layer in layers:
            layer.incoming_weights_merged = True


def merge_lora(module: nn.Module) -> None:
    """Fold every LoRA update into its weight (faster inference; factors stop training).

    Args:
        module: the network.
    """
    for layer in lora_layers(module):
        layer.merge()


def unmerge_lora(module: nn.Module) -> None:
    """Undo :func:`merge_lora`: weights return to the base, the update is added on the fly.

    Args:
        module: the network.
    """
    for layer in lora_layers(module):
        layer.unmerge()


def lora_parameters(module: nn.Module) -> list[nn.Parameter]:
    """What LoRA training updates: every ``lora_A``, ``lora_B`` and the LoRA layers' biases.

    Args:
        module: the network.
    """
    params: list[nn.Parameter] = []
    for layer in lora_layers(module):
        params += [layer.lora_A, layer.lora_B]
        if layer.bias is not None:
            params.append(layer.bias)
    return params


def mark_only_lora_trainable(module: nn.Module) -> None:
    """Freeze everything except :func:`lora_parameters` (SAGANet's LoRA fine-tuning setup).

    Args:
        module: the network.
    """
    trainable = {id(p) for p in lora_parameters(module)}
    for param in module.parameters():
        param.requires_grad_(id(param) in trainable)


def lora_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """Only the ``lora_A``/``lora_B`` entries (the published checkpoint's ``lora`` dict).

    Args:
        module: the network.
    """
    return {k: v for k, v in module.state_dict().items()
            if k.endswith((".lora_A", ".lora_B"))}
