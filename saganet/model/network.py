"""The flow network: MMAudio's MM-DiT that predicts the flow velocity of audio latents.

Conditions: CLIP frame features (8 fps), segmentation-aware Synchformer features (8 tokens per
16-frame window) and CLIP text token features. Their projections are computed once per clip
(:meth:`FlowNetwork.preprocess_conditions`) and reused at every sampling step
(:meth:`FlowNetwork.predict_flow`). Also owns classifier-free guidance (:meth:`ode_wrapper`),
the latent normalisation statistics and the learned "empty" features, and checkpoint loading
with the published LoRA semantics (:mod:`saganet.model.lora`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from saganet.model.blocks import FinalBlock, JointBlock, MMDitSingleBlock
from saganet.model.config import NetworkConfig
from saganet.model.embeddings import TimestepEmbedder
from saganet.model.layers import MLP, ChannelLastConv1d, ConvMLP
from saganet.model.lora import LoRALinear, loading_unmerged_weights
from saganet.model.rope import compute_rope_rotations
from saganet.model.sequence import SYNC_TOKENS_PER_SEGMENT
from saganet.state_dict import CheckpointMismatchError, check_state_dict, load_state_dict_strict

log = logging.getLogger(__name__)

# Buffers the network recomputes; older checkpoints may still contain them.
NON_PERSISTENT_KEYS = ("t_embed.freqs", "latent_rot", "clip_rot")
LORA_KEY_PATTERNS = ("*.lora_A", "*.lora_B")


@dataclass
class Conditions:
    """Projected conditions of a batch, reusable across sampling steps.

    Args:
        clip_f: ``(B, Nc, D)`` projected CLIP tokens.
        sync_f: ``(B, N, D)`` projected Synchformer tokens, upsampled to the latent length.
        text_f: ``(B, Nt, D)`` projected text tokens.
        clip_f_c: ``(B, D)`` pooled CLIP condition.
        text_f_c: ``(B, D)`` pooled text condition.
        sync_upsampled: ``sync_f`` is the nearest-neighbour upsampling of the network's
            ``sync_seq_len`` tokens (as :meth:`FlowNetwork.preprocess_conditions` makes it), so
            its rows repeat in a known pattern that sampling can exploit.
    """

    clip_f: torch.Tensor
    sync_f: torch.Tensor
    text_f: torch.Tensor
    clip_f_c: torch.Tensor
    text_f_c: torch.Tensor
    sync_upsampled: bool = False

    @staticmethod
    def tensor_fields() -> tuple[str, ...]:
        """Names of the per-clip tensors (batch axis first); the other fields are flags."""
        return tuple(f.name for f in dataclasses.fields(Conditions) if f.name != "sync_upsampled")

    @staticmethod
    def cat(*parts: Conditions) -> Conditions:
        """Stack condition batches along the batch axis."""
        return Conditions(**{name: torch.cat([getattr(p, name) for p in parts])
                             for name in Conditions.tensor_fields()},
                          sync_upsampled=all(p.sync_upsampled for p in parts))

    def select(self, index: slice | torch.Tensor) -> Conditions:
        """The conditions of some clips of the batch (a slice or an index tensor)."""
        return dataclasses.replace(self, **{name: getattr(self, name)[index]
                                            for name in self.tensor_fields()})


def _upsampled_rows(sync_len: int, latent_len: int,
                    device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Where the sync rows repeat after upsampling ``sync_len`` tokens to ``latent_len``.

    Returns:
        ``(U,)`` the first latent position of each distinct row, and ``(latent_len,)`` the
        distinct row each latent position holds.
    """
    # The same interpolation as preprocess_conditions, applied to the source positions (on the
    # CPU, which also serves networks built on the meta device).
    positions = torch.arange(sync_len, dtype=torch.float32, device="cpu")[None, None]
    source = F.interpolate(positions, size=latent_len, mode="nearest-exact")[0, 0]
    starts = torch.ones(latent_len, dtype=torch.bool, device="cpu")
    starts[1:] = source[1:] != source[:-1]
    return starts.nonzero().squeeze(1).to(device), (starts.long().cumsum(0) - 1).to(device)


def _check_tokens(name: str, x: torch.Tensor, length: int) -> None:
    if x.shape[1] != length:
        raise ValueError(f"{name} has {x.shape[1]} tokens, the network is set up for {length} "
                         "(call update_seq_lengths for another duration)")


def _check_features(name: str, x: torch.Tensor, length: int, dim: int,
                    batch: int | None = None) -> None:
    # Checked here: features of another width or rank failed in a matmul or a broadcast deep
    # inside the projections, and clips of two batch sizes were projected without an error.
    if x.dim() != 3 or x.shape[2] != dim or (batch is not None and x.shape[0] != batch):
        clips = "B" if batch is None else str(batch)
        raise ValueError(f"{name} must be ({clips}, {length}, {dim}) (clips, tokens, channels), "
                         f"got {tuple(x.shape)}")
    _check_tokens(name, x, length)


class FlowNetwork(nn.Module):
    """MM-DiT flow network (MMAudio architecture, optional LoRA on the latent stream).

    A freshly built network has NaN ``latent_mean``/``latent_std`` and a zero
    ``empty_string_feat``; all three come from the checkpoint.

    Args:
        config: the architecture; kept as ``self.config`` (``dataclasses.asdict`` of it is
            what our checkpoints store).
    """

    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        self.config = config
        dim, c = config.hidden_dim, config
        nominal_hidden = int(dim * c.mlp_ratio)
        lora_rank = c.lora_rank if c.use_lora else 0

        # Parameters first: their order is the published state-dict order.
        self.sync_pos_emb = nn.Parameter(torch.empty(1, 1, SYNC_TOKENS_PER_SEGMENT, c.sync_dim))
        self.latent_mean = nn.Parameter(torch.empty(1, 1, c.latent_dim), requires_grad=False)
        self.latent_std = nn.Parameter(torch.empty(1, 1, c.latent_dim), requires_grad=False)
        self.empty_string_feat = nn.Parameter(torch.empty(c.text_seq_len, c.text_dim),
                                              requires_grad=False)
        self.empty_clip_feat = nn.Parameter(torch.empty(1, c.clip_dim))
        self.empty_sync_feat = nn.Parameter(torch.empty(1, c.sync_dim))

        # v2 swaps SELU for SiLU and adds a SiLU after the first Linear of CLIP/text.
        def activation() -> nn.Module:
            return nn.SiLU() if c.v2 else nn.SELU()

        self.audio_input_proj = nn.Sequential(
            ChannelLastConv1d(c.latent_dim, dim, kernel_size=7, padding=3), activation(),
            ConvMLP(dim, nominal_hidden, kernel_size=7, padding=3))
        self.clip_input_proj = nn.Sequential(
            nn.Linear(c.clip_dim, dim), *([nn.SiLU()] if c.v2 else []),
            ConvMLP(dim, nominal_hidden, kernel_size=3, padding=1))
        self.sync_input_proj = nn.Sequential(
            ChannelLastConv1d(c.sync_dim, dim, kernel_size=7, padding=3), activation(),
            ConvMLP(dim, nominal_hidden, kernel_size=3, padding=1))
        self.text_input_proj = nn.Sequential(
            nn.Linear(c.text_dim, dim), *([nn.SiLU()] if c.v2 else []),
            MLP(dim, nominal_hidden))
        self.clip_cond_proj = nn.Linear(dim, dim)
        self.text_cond_proj = nn.Linear(dim, dim)
        self.global_cond_mlp = MLP(dim, nominal_hidden)
        self.final_layer = FinalBlock(dim, c.latent_dim)
        if c.v2:
            self.t_embed = TimestepEmbedder(dim, frequency_size=dim, max_period=1)
        else:
            self.t_embed = TimestepEmbedder(dim, frequency_size=256, max_period=10000)
        self.joint_blocks = nn.ModuleList(
            JointBlock(dim, c.num_heads, c.mlp_ratio, pre_only=(i == c.joint_depth - 1),
                       lora_rank=lora_rank, lora_alpha=c.lora_alpha)
            for i in range(c.joint_depth))
        self.fused_blocks = nn.ModuleList(
            MMDitSingleBlock(dim, c.num_heads, c.mlp_ratio, kernel_size=3, padding=1,
                             lora_rank=lora_rank, lora_alpha=c.lora_alpha)
            for _ in range(c.fused_depth))

        self.register_buffer("latent_rot", torch.empty(0), persistent=False)
        self.register_buffer("clip_rot", torch.empty(0), persistent=False)
        # Sampling shortcuts that keep the output up to float rounding (set_fast_inference).
        self.fast_inference = True
        self.update_seq_lengths(c.latent_seq_len, c.clip_seq_len, c.sync_seq_len)
        self.initialize_weights()

    @torch.no_grad()
    def initialize_weights(self) -> None:
        """MMAudio's initialisation (matters only for training from scratch and new LoRA)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):  # LoRA base weights included
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            if isinstance(module, LoRALinear):
                module.reset_lora()
        nn.init.normal_(self.t_embed.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embed.mlp[2].weight, std=0.02)
        # Zero adaLN outputs: every block starts as the identity (gates 0, shift 0, scale 1).
        ada_blocks = [self.final_layer, *self.fused_blocks]
        for joint in self.joint_blocks:
            ada_blocks += [joint.latent_block, joint.clip_block, joint.text_block]
        for block in ada_blocks:
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
        # Zero output conv: the untrained network predicts zero velocity.
        nn.init.zeros_(self.final_layer.conv.weight)
        nn.init.zeros_(self.final_layer.conv.bias)
        # Zero sync positional embedding and learned empty features: learned from scratch.
        nn.init.zeros_(self.sync_pos_emb)
        nn.init.zeros_(self.empty_clip_feat)
        nn.init.zeros_(self.empty_sync_feat)
        # Zero empty text feature and NaN statistics: placeholders until weights are loaded.
        nn.init.zeros_(self.empty_string_feat)
        self.latent_mean.fill_(float("nan"))
        self.latent_std.fill_(float("nan"))

    # ------------------------------------------------------------------ sequence lengths

    @property
    def latent_seq_len(self) -> int:
        return self.config.latent_seq_len

    @property
    def clip_seq_len(self) -> int:
        return self.config.clip_seq_len

    @property
    def sync_seq_len(self) -> int:
        return self.config.sync_seq_len

    def update_seq_lengths(self, latent_seq_len: int, clip_seq_len: int,
                           sync_seq_len: int) -> None:
        """Set the token counts (another clip duration) and rebuild the RoPE tables.

        Tables are fp32 on the device of the parameters, whatever the model dtype.

        Args:
            latent_seq_len: audio latent tokens.
            clip_seq_len: CLIP frame tokens.
            sync_seq_len: Synchformer tokens (a multiple of 8).
        """
        self.config = dataclasses.replace(self.config, latent_seq_len=latent_seq_len,
                                          clip_seq_len=clip_seq_len, sync_seq_len=sync_seq_len)
        self._build_rope_tables()

    def _build_rope_tables(self) -> None:
        device = self.latent_mean.device
        head_dim = self.config.head_dim
        self.latent_rot = compute_rope_rotations(self.latent_seq_len, head_dim, device=device)
        # CLIP token i sits at latent position i * latent_len / clip_len.
        self.clip_rot = compute_rope_rotations(
            self.clip_seq_len, head_dim, freq_scaling=self.latent_seq_len / self.clip_seq_len,
            device=device)
        self._sync_rows = _upsampled_rows(self.sync_seq_len, self.latent_seq_len, device)

    def set_fast_inference(self, enabled: bool = True) -> FlowNetwork:
        """Switch the sampling shortcuts on (default) or off; outputs agree up to float rounding.

        On: the latent stream's per-token adaLN modulation is computed once per distinct
        Synchformer row (about half of the 216 tokens repeat their neighbour after the
        nearest-neighbour upsampling) and gathered; batched guidance projects the latents
        once for both branches; token convolutions run as matrix products on the CPU. Off:
        the reference's operations, one for one (the baseline of ``benchmarks/pipeline.py``
        and of the equivalence tests).

        Args:
            enabled: use the shortcuts.
        """
        self.fast_inference = enabled
        for module in self.modules():
            if isinstance(module, ChannelLastConv1d):
                module.as_matmul = enabled
        return self

    def _apply(self, fn: Callable, recurse: bool = True) -> FlowNetwork:
        # .to()/.cuda()/.half()/to_empty() would cast or blank the derived buffers: recompute
        # them (RoPE stays fp32; the timestep frequencies keep the new dtype, as the
        # reference's cast does).
        super()._apply(fn, recurse)
        self._build_rope_tables()
        self.t_embed.reset_frequencies()
        return self

    # ------------------------------------------------------------------ forward

    def preprocess_conditions(self, clip_f: torch.Tensor, sync_f: torch.Tensor,
                              text_f: torch.Tensor) -> Conditions:
        """Project the conditions once per clip.

        Args:
            clip_f: ``(B, Nc, clip_dim)`` CLIP image features.
            sync_f: ``(B, Ns, sync_dim)`` Synchformer features.
            text_f: ``(B', Nt, text_dim)`` text features (B' may differ from B; see
                :meth:`get_empty_conditions`).
        """
        cfg = self.config
        _check_features("clip_f", clip_f, self.clip_seq_len, cfg.clip_dim)
        _check_features("sync_f", sync_f, self.sync_seq_len, cfg.sync_dim, len(clip_f))
        _check_features("text_f", text_f, cfg.text_seq_len, cfg.text_dim)
        # The same 8 positional vectors repeat in every Synchformer window.
        sync_f = sync_f.unflatten(1, (-1, SYNC_TOKENS_PER_SEGMENT)) + self.sync_pos_emb
        sync_f = sync_f.flatten(1, 2)  # (B, Ns, sync_dim)

        clip_f = self.clip_input_proj(clip_f)  # (B, Nc, D)
        sync_f = self.sync_input_proj(sync_f)  # (B, Ns, D)
        text_f = self.text_input_proj(text_f)  # (B', Nt, D)

        sync_f = F.interpolate(sync_f.transpose(1, 2), size=self.latent_seq_len,
                               mode="nearest-exact").transpose(1, 2)  # (B, N, D)
        # Pooling includes the text padding tokens, as trained.
        clip_f_c = self.clip_cond_proj(clip_f.mean(dim=1))  # (B, D)
        text_f_c = self.text_cond_proj(text_f.mean(dim=1))  # (B', D)
        return Conditions(clip_f, sync_f, text_f, clip_f_c, text_f_c, sync_upsampled=True)

    def predict_flow(self, latent: torch.Tensor, t: torch.Tensor, conditions: Conditions, *,
                     latent_repeats: int = 1) -> torch.Tensor:
        """Velocity of ``latent`` at flow time ``t``.

        Args:
            latent: ``(B, N, latent_dim)`` normalised latents.
            t: ``(R * B,)`` flow times in [0, 1].
            conditions: from :meth:`preprocess_conditions`, batch ``R * B``.
            latent_repeats: ``R``: the same latents go with ``R`` consecutive condition
                batches (guidance branches); they are projected once and repeated.

        Returns:
            ``(R * B, N, latent_dim)``.
        """
        _check_tokens("latent", latent, self.latent_seq_len)
        x = self.audio_input_proj(latent)  # (B, N, D)
        if latent_repeats > 1:
            x = x.repeat(latent_repeats, 1, 1)  # (R * B, N, D)
        c = conditions
        global_c = self.global_cond_mlp(c.clip_f_c + c.text_f_c)  # (B, D)
        global_c = (self.t_embed(t) + global_c).unsqueeze(1)  # (B, 1, D)
        extended_index = None
        if self.fast_inference and c.sync_upsampled:
            first, extended_index = self._sync_rows
            extended_c = global_c + c.sync_f[:, first]  # (B, U, D), distinct rows only
        else:
            extended_c = global_c + c.sync_f  # (B, N, D)

        clip_f, text_f = c.clip_f, c.text_f
        for block in self.joint_blocks:
            x, clip_f, text_f = block(x, clip_f, text_f, global_c, extended_c,
                                      self.latent_rot, self.clip_rot, extended_index)
        for block in self.fused_blocks:
            x = block(x, extended_c, self.latent_rot, extended_index)
        # global_c, not extended_c: an upstream slip the checkpoints were trained with.
        return self.final_layer(x, global_c)

    def forward(self, latent: torch.Tensor, clip_f: torch.Tensor, sync_f: torch.Tensor,
                text_f: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Training forward: :meth:`preprocess_conditions` then :meth:`predict_flow`.

        Args:
            latent: ``(B, N, latent_dim)`` interpolated latents x_t.
            clip_f: ``(B, Nc, clip_dim)``.
            sync_f: ``(B, Ns, sync_dim)``.
            text_f: ``(B, Nt, text_dim)``.
            t: ``(B,)`` flow times.
        """
        return self.predict_flow(latent, t, self.preprocess_conditions(clip_f, sync_f, text_f))

    # ------------------------------------------------------------------ guidance

    def get_empty_string_sequence(self, bs: int) -> torch.Tensor:
        """``(bs, Nt, text_dim)`` text features of the empty prompt."""
        return self.empty_string_feat.unsqueeze(0).expand(bs, -1, -1)

    def get_empty_clip_sequence(self, bs: int) -> torch.Tensor:
        """``(bs, Nc, clip_dim)`` learned "no video" CLIP features."""
        return self.empty_clip_feat.unsqueeze(0).expand(bs, self.clip_seq_len, -1)

    def get_empty_sync_sequence(self, bs: int) -> torch.Tensor:
        """``(bs, Ns, sync_dim)`` learned "no video" Synchformer features."""
        return self.empty_sync_feat.unsqueeze(0).expand(bs, self.sync_seq_len, -1)

    def get_empty_conditions(self, bs: int,
                             negative_text_features: torch.Tensor | None = None) -> Conditions:
        """Unconditional branch of classifier-free guidance.

        Args:
            bs: batch size.
            negative_text_features: ``(bs, Nt, text_dim)`` features of negative prompts, used
                instead of the empty prompt.
        """
        if negative_text_features is not None:
            _check_features("negative_text_features", negative_text_features,
                            self.config.text_seq_len, self.config.text_dim)
        text = (self.get_empty_string_sequence(1) if negative_text_features is None
                else negative_text_features)
        # Video conditions are identical for the whole batch: project one and expand.
        empty = self.preprocess_conditions(self.get_empty_clip_sequence(1),
                                           self.get_empty_sync_sequence(1), text)

        def expand(x: torch.Tensor) -> torch.Tensor:
            return x.expand(bs, *x.shape[1:])

        text_f, text_f_c = empty.text_f, empty.text_f_c
        if negative_text_features is None:
            text_f, text_f_c = expand(text_f), expand(text_f_c)
        return Conditions(expand(empty.clip_f), expand(empty.sync_f), text_f,
                          expand(empty.clip_f_c), text_f_c, sync_upsampled=True)

    def ode_wrapper(self, t: torch.Tensor, x: torch.Tensor, conditions: Conditions,
                    empty_conditions: Conditions, cfg_strength: float, *,
                    batched: bool = False) -> torch.Tensor:
        """Guided velocity ``cfg * v(cond) + (1 - cfg) * v(uncond)`` for the ODE solvers.

        ``cfg_strength < 1`` returns the conditional velocity alone (one pass); otherwise both
        branches run, even at 1.

        Args:
            t: 0-d flow time (cast to ``x``'s dtype, as the reference does).
            x: ``(B, N, latent_dim)`` current latents.
            conditions: conditional branch.
            empty_conditions: unconditional branch (:meth:`get_empty_conditions`).
            cfg_strength: guidance strength.
            batched: run both branches as one pass of batch 2B (faster on GPUs; same result
                up to float rounding) instead of two passes.
        """
        t = t * torch.ones(len(x), device=x.device, dtype=x.dtype)  # (B,)
        if cfg_strength < 1.0:
            return self.predict_flow(x, t, conditions)
        if batched:
            both = Conditions.cat(conditions, empty_conditions)
            if self.fast_inference:  # both branches see the same latents: project them once
                out = self.predict_flow(x, torch.cat([t, t]), both, latent_repeats=2)
            else:
                out = self.predict_flow(torch.cat([x, x]), torch.cat([t, t]), both)
            v_cond, v_uncond = out.chunk(2)
        else:
            v_cond = self.predict_flow(x, t, conditions)
            v_uncond = self.predict_flow(x, t, empty_conditions)
        return cfg_strength * v_cond + (1 - cfg_strength) * v_uncond

    # ------------------------------------------------------------------ latent statistics

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """``(x - mean) / std`` with the checkpoint's statistics; returns a NEW tensor
        (the reference works in place)."""
        return (x - self.latent_mean) / self.latent_std

    def unnormalize(self, x: torch.Tensor) -> torch.Tensor:
        """``x * std + mean``; returns a NEW tensor (the reference works in place)."""
        return x * self.latent_std + self.latent_mean

    # ------------------------------------------------------------------ weights

    def load_weights(self, state_dict: Mapping[str, torch.Tensor], *, base_only: bool = False,
                     lora_merged: bool = True, what: str = "checkpoint") -> None:
        """Load network weights strictly; the only tolerated differences are named here.

        Always tolerated: the recomputed buffers ``t_embed.freqs``, ``latent_rot``,
        ``clip_rot`` in older files (dropped).

        Args:
            state_dict: the weights (e.g. ``saganet.pth['network']`` or an MMAudio file).
            base_only: the file is a base network without LoRA factors (MMAudio's
                ``small_44k``/``medium_44k`` to start LoRA training): its qkv weights become
                the base weights and the LoRA factors keep their values (a fresh network's
                zero ``lora_B`` leaves the outputs equal to the base network's). Without LoRA
                this is a plain strict load.
            lora_merged: the stored LoRA-layer ``qkv.weight`` already contains the update
                (true for published files and every file we save). False for a raw dump of
                base weights plus factors, whose update is then added on top.
            what: name of the weights in error messages (usually the file path).

        Raises:
            CheckpointMismatchError: keys missing, unexpected or mis-shaped.
        """
        state_dict = {k: v for k, v in state_dict.items() if k not in NON_PERSISTENT_KEYS}
        allow_missing = self._check_weights(state_dict, base_only, what)
        if lora_merged and not base_only:
            load_state_dict_strict(self, state_dict, allow_missing=allow_missing, what=what)
        else:
            with loading_unmerged_weights(self):
                load_state_dict_strict(self, state_dict, allow_missing=allow_missing, what=what)
        log.info("loaded %s into %s network (%s)", what,
                 "LoRA" if self.config.use_lora else "base",
                 "base weights only" if base_only else
                 "merged LoRA" if lora_merged else "unmerged LoRA")

    def check_weights(self, state_dict: Mapping[str, torch.Tensor], *,
                      base_only: bool = False, what: str = "checkpoint") -> None:
        """Raise what :meth:`load_weights` would raise for ``state_dict``; load nothing (to
        check every module of a file before loading any).

        Args:
            state_dict: the weights.
            base_only: as for :meth:`load_weights`.
            what: name of the weights in error messages.

        Raises:
            CheckpointMismatchError: keys missing, unexpected or mis-shaped.
        """
        state_dict = {k: v for k, v in state_dict.items() if k not in NON_PERSISTENT_KEYS}
        allow_missing = self._check_weights(state_dict, base_only, what)
        check_state_dict(self, state_dict, allow_missing=allow_missing, what=what)

    def _check_weights(self, state_dict: Mapping[str, torch.Tensor], base_only: bool,
                       what: str) -> tuple[str, ...]:
        """The LoRA-specific checks; returns the keys that may be missing."""
        has_factors = any(k.endswith((".lora_A", ".lora_B")) for k in state_dict)
        if self.config.use_lora and base_only:
            if has_factors:
                raise CheckpointMismatchError(f"{what} has LoRA factors, so it is not a base "
                                              "network checkpoint; load it without base_only")
            return LORA_KEY_PATTERNS
        if self.config.use_lora and not has_factors:
            check_state_dict(self, state_dict, what=what + " (no LoRA factors: if this is an "
                             "MMAudio base checkpoint, load it with base_only=True)")
        return ()

    def load_lora_weights(self, lora_state_dict: Mapping[str, torch.Tensor], *,
                          what: str = "lora weights") -> None:
        """Load only the LoRA factors (a published file's ``lora`` dict), strictly.

        The adapted qkv weights stay what they are (published semantics: the stored merged
        weight is used as is); only the split into base + update changes, which matters for
        resuming training.

        Args:
            lora_state_dict: every ``*.lora_A`` / ``*.lora_B`` key of this network, nothing else.
            what: name of the weights in error messages.
        """
        if not self.config.use_lora:
            raise CheckpointMismatchError(f"{what}: this network variant has no LoRA layers")
        def is_lora(key: str) -> bool:
            return key.endswith((".lora_A", ".lora_B"))

        foreign = [k for k in lora_state_dict if not is_lora(k)]
        if foreign:
            raise CheckpointMismatchError(f"{what}: {len(foreign)} unexpected non-LoRA key(s): "
                                          + ", ".join(foreign[:12]))
        current = self.state_dict()  # adapted (merged) qkv weights
        others = [k for k in current if not is_lora(k)]
        check_state_dict(self, lora_state_dict, allow_missing=others, what=what)
        self.load_weights({**current, **lora_state_dict}, lora_merged=True, what=what)
