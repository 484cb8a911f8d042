"""The flow-matching loss of one batch: the single function behind training AND validation.

Random draws happen in the reference's order, all from the caller's
generator: the VAE posterior sample, the time steps (logit-normal), the noise, the video-dropout
and then the text-dropout coins. Validation calls the same function under ``torch.no_grad``
with its own generator reset to a fixed state, so validation losses are comparable over a run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch

from saganet.data.sms_dataset import mask_to_unit, video_to_unit
from saganet.model import FlowMatching, FlowNetwork
from saganet.training.config import LossConfig


@dataclass
class LossOutput:
    """Result of :func:`flow_matching_loss`.

    Args:
        loss: scalar mean over the batch (what is optimised).
        per_sample: ``(B,)`` detached per-sample losses.
        t: ``(B,)`` the flow times drawn for the batch.
    """

    loss: torch.Tensor
    per_sample: torch.Tensor
    t: torch.Tensor


def to_device(batch: Mapping[str, Any], device: torch.device) -> dict[str, torch.Tensor]:
    """Model inputs of a collated batch on ``device``, videos converted from uint8.

    Args:
        batch: a batch from :class:`saganet.training.data.CountingCollate`.
        device: target device.
    """
    def move(key: str) -> torch.Tensor:
        return batch[key].to(device, non_blocking=True)

    return {
        "a_mean": move("a_mean").float(), "a_std": move("a_std").float(),
        "clip_features": move("clip_features").float(),
        "text_features": move("text_features").float(),
        "frames": video_to_unit(move("sync_video")),
        "detail_frames": video_to_unit(move("sync_detail_video")),
        "masks": mask_to_unit(move("mask_video")),
        "detail_masks": mask_to_unit(move("mask_detail_video")),
    }


def flow_matching_loss(
    model: Callable[..., torch.Tensor],
    network: FlowNetwork,
    inputs: Mapping[str, torch.Tensor],
    *,
    generator: torch.Generator,
    flow: FlowMatching,
    cfg: LossConfig,
    autocast_dtype: torch.dtype | None = None,
) -> LossOutput:
    """Flow-matching loss of one batch with null-condition dropout.

    Args:
        model: :class:`saganet.training.trainable.TrainableFlow` (possibly DDP-wrapped).
        network: the flow network inside ``model`` (for the latent statistics).
        inputs: :func:`to_device` output.
        generator: source of every random draw (on the inputs' device).
        flow: interpolation, target and time distribution.
        cfg: dropout probabilities.
        autocast_dtype: run the forward under autocast with this dtype (None = no autocast).
    """
    a_mean, a_std = inputs["a_mean"], inputs["a_std"]
    device, bs = a_mean.device, a_mean.shape[0]
    eps = torch.randn(a_mean.shape, generator=generator, device=device)
    x1 = network.normalize(a_mean + a_std * eps)  # (B, N, C) posterior sample, normalised
    t = flow.sample_t(bs, generator=generator, device=device)  # (B,)
    x0 = torch.randn(x1.shape, generator=generator, device=device)
    x_t = flow.get_conditional_flow(x0, x1, t)
    drop_video = torch.rand(bs, generator=generator, device=device) < cfg.null_video_prob
    drop_text = torch.rand(bs, generator=generator, device=device) < cfg.null_text_prob
    autocast = (torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype is not None
                else nullcontext())
    with autocast:
        pred = model(x_t, t, inputs["clip_features"], inputs["text_features"], inputs["frames"],
                     inputs["masks"], inputs["detail_frames"], inputs["detail_masks"],
                     drop_video, drop_text)
    per_sample = flow.loss(pred.float(), x0, x1)  # (B,)
    return LossOutput(loss=per_sample.mean(), per_sample=per_sample.detach(), t=t)
