"""Euler sampling speed of the flow network with classifier-free guidance.

Runs the full-size network (random weights, so no download) for ``--steps`` Euler steps with
CFG at each batch size, once with two separate passes per step (conditional, then
unconditional; the reference's way) and once with a single batched pass of 2B samples.
Prints seconds per clip and the batched / two-pass time ratio (< 1 means batching wins).

    python benchmarks/sampling.py                      # small_44k_sa, 25 steps, batch 1 and 4
    python benchmarks/sampling.py --quick              # 2 steps, batch 1
    python benchmarks/sampling.py --device cuda --dtype bf16
    python benchmarks/sampling.py --tiny --json sampling.json   # smoke run: debug, 2 steps
"""

from __future__ import annotations

import argparse
import time

import torch
from sizes import (
    TINY_STEPS,
    Sizes,
    add_run_flags,
    check_device,
    write_json,
)

from saganet.cli import guidance_strength, positive_int
from saganet.model import VARIANTS, FlowMatching, FlowNetwork, build_network
from saganet.runtime import configure_runtime

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_sampling(net: FlowNetwork, batch: int, steps: int, cfg: float, batched: bool,
                  device: torch.device, dtype: torch.dtype, repeats: int) -> float:
    """Best wall time of ``repeats`` guided Euler runs (after one warm-up step)."""
    config = net.config
    generator = torch.Generator(device=device).manual_seed(0)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator, device=device, dtype=dtype)

    cond = net.preprocess_conditions(randn(batch, config.clip_seq_len, config.clip_dim),
                                     randn(batch, config.sync_seq_len, config.sync_dim),
                                     randn(batch, config.text_seq_len, config.text_dim))
    empty = net.get_empty_conditions(batch)
    x0 = randn(batch, config.latent_seq_len, config.latent_dim)

    def velocity(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return net.ode_wrapper(t, x, cond, empty, cfg, batched=batched)

    velocity(torch.tensor(0.0), x0)  # warm-up (allocator, kernels)
    best = float("inf")
    for _ in range(repeats):
        _synchronize(device)
        start = time.perf_counter()
        FlowMatching(num_steps=steps).to_data(velocity, x0)
        _synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="small_44k_sa", choices=list(VARIANTS))
    parser.add_argument("--steps", type=positive_int, default=25, help="Euler steps (default 25)")
    parser.add_argument("--batch-sizes", type=positive_int, nargs="+", default=[1, 4])
    parser.add_argument("--cfg", type=guidance_strength, default=4.5,
                        help="guidance strength (>= 1)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32", choices=list(DTYPES))
    parser.add_argument("--repeats", type=positive_int, default=1,
                        help="runs per setting; best is kept")
    add_run_flags(parser)
    parser.add_argument("--quick", action="store_true", help="2 steps, batch size 1")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.batch_sizes = 2, [1]
    if args.tiny:
        args.variant, args.steps = Sizes(tiny=True).network, TINY_STEPS
    if args.cfg < 1:
        parser.error("--cfg below 1 runs the conditional pass only; nothing to compare")
    configure_runtime(args.variant, threads=args.threads)

    device, dtype = check_device(parser, args.device), DTYPES[args.dtype]
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    net = build_network(args.variant).to(device, dtype).eval()
    print(f"{args.variant} on {device} ({args.dtype}, {torch.get_num_threads()} CPU threads), "
          f"{args.steps} Euler steps, cfg {args.cfg}; {net.latent_seq_len} latent tokens")
    print(f"{'batch':>5} {'two-pass s/clip':>16} {'batched s/clip':>15} {'batched/two-pass':>17}")
    rows = []
    with torch.inference_mode():
        for batch in args.batch_sizes:
            two_pass, one_pass = (
                time_sampling(net, batch, args.steps, args.cfg, batched, device, dtype,
                              args.repeats) / batch
                for batched in (False, True))
            print(f"{batch:>5} {two_pass:>16.3f} {one_pass:>15.3f} {one_pass / two_pass:>17.3f}")
            rows.append({"batch": batch, "two_pass_s_per_clip": two_pass,
                         "batched_s_per_clip": one_pass, "ratio": one_pass / two_pass})
    if args.json is not None:
        write_json(args.json, {"variant": args.variant, "steps": args.steps,
                               "device": str(device), "dtype": args.dtype,
                               "batches": rows})


if __name__ == "__main__":
    main()
