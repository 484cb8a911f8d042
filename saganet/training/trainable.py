"""The module that is trained: Synchformer-with-context feeding the flow network, and what in it
receives gradients.

:class:`TrainableFlow` bundles both networks so that one forward call computes sync features
and the predicted velocity. That single call is what DDP wraps: it synchronises the gradients of
both modules in one reduction, and the Synchformer may be run in several window chunks inside
it (DDP forbids several forward calls of one wrapped module per backward).

Trainable sets (those of the reference's training):

* LoRA runs: the network's ``lora_A``, ``lora_B`` and the biases of its 12 LoRA qkv layers,
  plus the Synchformer's mask embedding and cross-attention layers;
* no-LoRA runs: only the Synchformer's mask embedding and cross-attention layers (the network
  keeps MMAudio's weights).
"""

from __future__ import annotations

import torch
from torch import nn

from saganet.features.segments import encode_sync
from saganet.features.synchformer import SynchformerWithContext
from saganet.model import FlowNetwork, mark_only_lora_trainable
from saganet.model.lora import LoRALinear


class TrainableFlow(nn.Module):
    """Synchformer-with-context + flow network, as one module.

    Args:
        network: the flow network.
        synchformer: the segmentation-aware Synchformer.
        sync_chunk: Synchformer windows per call (0 = all windows of the batch at once).
    """

    def __init__(self, network: FlowNetwork, synchformer: SynchformerWithContext,
                 sync_chunk: int = 0) -> None:
        super().__init__()
        self.network = network
        self.synchformer = synchformer
        self.sync_chunk = sync_chunk

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, clip_f: torch.Tensor,
                text_f: torch.Tensor, frames: torch.Tensor, masks: torch.Tensor,
                detail_frames: torch.Tensor, detail_masks: torch.Tensor,
                drop_video: torch.Tensor, drop_text: torch.Tensor) -> torch.Tensor:
        """Predicted velocity for a batch, with null-condition dropout applied.

        Args:
            x_t: ``(B, N, latent_dim)`` interpolated latents.
            t: ``(B,)`` flow times.
            clip_f: ``(B, Nc, clip_dim)`` precomputed CLIP features.
            text_f: ``(B, Nt, text_dim)`` precomputed text features.
            frames, detail_frames: ``(B, T, 3, H, W)`` in [-1, 1].
            masks, detail_masks: ``(B, T, 1, H, W)`` in [0, 1].
            drop_video: ``(B,)`` bool; those samples get the learned empty CLIP and sync
                features (both together).
            drop_text: ``(B,)`` bool; those samples get ``empty_string_feat``.
        """
        net = self.network
        sync_f = encode_sync(self.synchformer, frames, masks, detail_frames, detail_masks,
                             chunk_size=self.sync_chunk or None)  # (B, Ns, sync_dim)
        drop_video = drop_video.view(-1, 1, 1)
        # torch.where keeps the kept rows' graph (and broadcasts the (1, D) empty features).
        clip_f = torch.where(drop_video, net.empty_clip_feat.to(clip_f.dtype), clip_f)
        sync_f = torch.where(drop_video, net.empty_sync_feat.to(sync_f.dtype), sync_f)
        text_f = torch.where(drop_text.view(-1, 1, 1), net.empty_string_feat.to(text_f.dtype),
                             text_f)
        return net(x_t, clip_f, sync_f, text_f, t)


def configure_trainable(network: FlowNetwork, synchformer: SynchformerWithContext,
                        use_lora: bool) -> dict[str, list[nn.Parameter]]:
    """Set ``requires_grad`` for the recipe and return the trainable parameters per module.

    Args:
        network: the flow network (a LoRA variant iff ``use_lora``).
        synchformer: the segmentation-aware Synchformer.
        use_lora: LoRA recipe (else only the Synchformer's context parameters train).
    """
    if use_lora != network.config.use_lora:
        raise ValueError(f"use_lora={use_lora} but the network variant has "
                         f"use_lora={network.config.use_lora}")
    if use_lora:
        mark_only_lora_trainable(network)
    else:
        network.requires_grad_(False)
    synchformer.set_context_trainable(True)
    return {"network": [p for p in network.parameters() if p.requires_grad],
            "synchformer": [p for p in synchformer.parameters() if p.requires_grad]}


def trainable_names(module: nn.Module) -> list[str]:
    """Names of the parameters of ``module`` that require gradients."""
    return [name for name, p in module.named_parameters() if p.requires_grad]


def raw_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """``state_dict()`` with every LoRA layer's BASE weight instead of the merged one.

    A training state stores this form: loading it back with ``lora_merged=False`` restores the
    base weights bit for bit, whereas a merged weight would be un-merged with float rounding.

    Args:
        module: the network (or any module containing LoRA layers).
    """
    state = module.state_dict()
    for name, layer in module.named_modules():
        if isinstance(layer, LoRALinear):
            if layer.merged:
                raise RuntimeError(f"{name} is merged; unmerge LoRA before saving a raw state")
            state[f"{name}.weight" if name else "weight"] = layer.weight.detach()
    return state
