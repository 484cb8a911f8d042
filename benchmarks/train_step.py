"""Training-step throughput of the saganet_small recipe at full size (random weights).

Measures optimiser steps per second for batch size 1 with
  1. the flow network alone (LoRA recipe; sync features given), the baseline, and
  2. the online segmentation-aware Synchformer feeding the network (what training runs),
and prints both and their ratio. Every step is the trainer's own: the shared loss function,
backward, gradient clipping over the trainable parameters, AdamW.

    python benchmarks/train_step.py                  # CPU, 1 s clips (two Synchformer windows)
    python benchmarks/train_step.py --quick          # 0.64 s clips (one window)
    python benchmarks/train_step.py --device cuda --amp --duration 5 --steps 20 --warmup 3
    python benchmarks/train_step.py --tiny --json train_step.json   # smoke run: debug sizes

The default clip is 1 s, not the recipe's 5 s: the Synchformer's backward keeps the
activations of all 14 windows of a 5 s clip (about 50 GB in fp32), more than a typical CPU
machine has; its cost grows linearly with the number of windows. Use --duration 5 where the
memory is there.
"""

from __future__ import annotations

import argparse
import time

import torch
from sizes import Sizes, add_json_flag, add_tiny_flag, check_device, write_json

from saganet.cli import non_negative_int, positive_float, positive_int
from saganet.features import SynchformerWithContext
from saganet.model import CONFIG_44K_SA, FlowMatching, build_network
from saganet.training.config import LossConfig, OptimConfig
from saganet.training.optim import build_optimizer
from saganet.training.step import flow_matching_loss
from saganet.training.trainable import TrainableFlow, configure_trainable


class NetworkOnly(torch.nn.Module):
    """TrainableFlow's interface with precomputed sync features (the baseline)."""

    def __init__(self, core: TrainableFlow, sync_f: torch.Tensor) -> None:
        super().__init__()
        self.core = core
        self.sync_f = sync_f

    def forward(self, x_t, t, clip_f, text_f, frames, masks, detail_frames, detail_masks,
                drop_video, drop_text):
        return self.core.network(x_t, clip_f, self.sync_f, text_f, t)


def time_steps(model, core: TrainableFlow, inputs: dict, params: list, steps: int, warmup: int,
               autocast: torch.dtype | None) -> float:
    """Seconds per optimiser step (after ``warmup`` untimed steps)."""
    device = inputs["a_mean"].device
    optimizer = build_optimizer({"all": params}, OptimConfig(), amp=autocast is not None)
    generator = torch.Generator(device).manual_seed(0)
    flow, cfg = FlowMatching(), LossConfig()
    start = 0.0
    for i in range(warmup + steps):
        if i == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        out = flow_matching_loss(model, core.network, inputs, generator=generator, flow=flow,
                                 cfg=cfg, autocast_dtype=autocast)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=positive_int, default=2, help="timed steps per setting")
    parser.add_argument("--warmup", type=non_negative_int, default=1, help="untimed steps first")
    parser.add_argument("--duration", type=positive_float, default=1.0,
                        help="clip length in seconds (the recipe uses 5)")
    parser.add_argument("--quick", action="store_true", help="0.64 s clips, 1 timed step")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA)")
    parser.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")
    add_json_flag(parser)
    add_tiny_flag(parser)
    args = parser.parse_args()
    if args.quick or args.tiny:
        args.duration, args.steps = 0.64, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    device = check_device(parser, args.device)
    autocast = torch.bfloat16 if args.amp else None
    torch.manual_seed(0)

    sizes = Sizes(args.tiny)
    sequence = CONFIG_44K_SA.with_duration(args.duration)
    network = build_network(sizes.network, sequence)
    with torch.no_grad():
        network.latent_mean.zero_()
        network.latent_std.fill_(1.0)
    synchformer = SynchformerWithContext(sizes.synchformer())
    groups = configure_trainable(network, synchformer, use_lora=True)
    core = TrainableFlow(network, synchformer).to(device).train()
    c, frames = network.config, int(sequence.num_sync_frames)
    inputs = {
        "a_mean": torch.randn(1, c.latent_seq_len, c.latent_dim, device=device),
        "a_std": torch.rand(1, c.latent_seq_len, c.latent_dim, device=device),
        "clip_features": torch.randn(1, c.clip_seq_len, c.clip_dim, device=device),
        "text_features": torch.randn(1, c.text_seq_len, c.text_dim, device=device),
        "frames": torch.rand(1, frames, 3, 224, 224, device=device) * 2 - 1,
        "detail_frames": torch.rand(1, frames, 3, 224, 224, device=device) * 2 - 1,
        "masks": (torch.rand(1, frames, 1, 224, 224, device=device) > 0.5).float(),
        "detail_masks": (torch.rand(1, frames, 1, 224, 224, device=device) > 0.5).float(),
    }
    recipe = "debug (--tiny)" if args.tiny else "saganet_small"
    print(f"{recipe} recipe, batch 1, {args.duration:g} s clips "
          f"({c.latent_seq_len} latents, {c.sync_seq_len} sync tokens), {device}, "
          f"{'bf16 autocast' if autocast else 'fp32'}, {torch.get_num_threads()} CPU threads")
    sync_f = torch.randn(1, c.sync_seq_len, c.sync_dim, device=device)
    base = time_steps(NetworkOnly(core, sync_f), core, inputs, groups["network"], args.steps,
                      args.warmup, autocast)
    print(f"network only (baseline):      {1 / base:8.3f} steps/s  ({base:.3f} s/step)")
    full = time_steps(core, core, inputs, groups["network"] + groups["synchformer"],
                      args.steps, args.warmup, autocast)
    print(f"with online Synchformer:      {1 / full:8.3f} steps/s  ({full:.3f} s/step)")
    print(f"ratio (full / network only):  {full / base:8.2f}x time per step")
    if args.json is not None:
        write_json(args.json, {
            "network": sizes.network, "duration": args.duration, "device": str(device),
            "amp": args.amp, "network_only_s_per_step": base,
            "with_synchformer_s_per_step": full, "ratio": full / base})


if __name__ == "__main__":
    main()
