"""How much faster each stage of the default path could get without doing less work.

Runs the default path's stages at official sizes with random weights (the models of
``benchmarks/pipeline.py``) once each, under the profiler and a FLOP counter, and prints per
stage: its FLOPs (matrix products, convolutions, attention), its time, the share of that time
spent inside those product kernels, the rate they ran at, and this CPU's fp32 matrix-product
rate measured in the same run (the best of a few large square products). From these:

* **bound**: the stage's FLOPs at the measured matrix-product rate, the time the stage would
  take if everything but its products were free and every product ran as fast as a large
  square one;
* **headroom** = stage time / bound: the most any change that keeps the same products (same
  output up to float rounding) could gain.

A headroom near 1 means the stage is bound by its arithmetic: only less work per output (other
precision, other models) makes it faster. Time per frame (CLIP) or window (Synchformer) does
not depend on the clip length, so ``--duration 1`` measures those two as well as longer clips
do; sampling and vocoding have their own shapes per length (5 s by default).

    python benchmarks/headroom.py --threads 1                    # every stage, 5 s clip
    python benchmarks/headroom.py --duration 1 --stages clip_images,synchformer
    python benchmarks/headroom.py --tiny --json headroom.json   # smoke run: debug sizes, 1 s
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from typing import TYPE_CHECKING

import torch
from pipeline import (
    CFG_STRENGTH,
    NEGATIVE_PROMPT,
    NUM_STEPS,
    PROMPT,
    SEED,
    Models,
    build_clip,
    build_rest,
)
from sizes import (
    CLIP_IMAGE_SIZE,
    TINY_STEPS,
    Sizes,
    add_run_flags,
    write_json,
)
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from saganet.cli import positive_float

if TYPE_CHECKING:
    from saganet.models import SAGANetModels

STAGES = ("clip_images", "clip_text", "synchformer", "sampling", "vae", "vocoder")
# Kernels that do the counted FLOPs on the CPU (their self time, children excluded).
PRODUCT_KERNELS = frozenset({
    "aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::mkldnn_convolution",
    "aten::_scaled_dot_product_flash_attention_for_cpu", "aten::_slow_conv2d_forward",
    "aten::slow_conv_transpose2d", "aten::slow_conv_dilated2d", "aten::_convolution_depthwise2d",
})
PEAK_SIZES = (1024, 2048, 3072)
TINY_PEAK_SIZES = (128, 256)


def _cpu_attention_flops(query_shape: torch.Size, key_shape: torch.Size,
                         value_shape: torch.Size, *args: object, **kwargs: object) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


# The counter knows the GPU attention kernels only; the CPU's flash kernel does the same work.
CPU_ATTENTION_FLOPS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention_flops,
}


def matmul_rate(repeats: int = 5, sizes: tuple[int, ...] = PEAK_SIZES) -> float:
    """This CPU's fp32 matrix-product rate in GFLOP/s: the best of square products of
    ``sizes``."""
    best = 0.0
    for size in sizes:
        a, b = torch.randn(size, size), torch.randn(size, size)
        a @ b  # warm-up: threads, pages
        for _ in range(repeats):
            start = time.perf_counter()
            a @ b
            best = max(best, 2 * size**3 / (time.perf_counter() - start) / 1e9)
    return best


def stage_inputs(duration: float, network: str) -> dict[str, torch.Tensor]:
    """Random inputs of a ``duration`` s clip, in the shapes the demo feeds each stage of the
    flow network variant ``network``."""
    from saganet.features import focal_crop
    from saganet.media.video import CLIP_FPS, SYNC_FPS
    from saganet.model import CONFIG_44K_SA, VARIANTS

    generator = torch.Generator().manual_seed(1)
    config = VARIANTS[network].with_sequence(CONFIG_44K_SA.with_duration(duration))
    sync_frames = 2 * torch.rand(1, int(SYNC_FPS * duration), 3, 224, 224,
                                 generator=generator) - 1
    masks = torch.zeros(1, int(SYNC_FPS * duration), 1, 224, 224)
    masks[..., 60:150, 40:100] = 1.0
    detail_frames, detail_masks = focal_crop(sync_frames, masks)
    return {
        "clip_frames": torch.rand(1, int(CLIP_FPS * duration), 3, CLIP_IMAGE_SIZE,
                                  CLIP_IMAGE_SIZE, generator=generator),
        "sync_frames": sync_frames, "masks": masks,
        "detail_frames": detail_frames, "detail_masks": detail_masks,
        "clip_f": torch.randn(1, config.clip_seq_len, config.clip_dim, generator=generator),
        "sync_f": torch.randn(1, config.sync_seq_len, config.sync_dim, generator=generator),
        "text_f": torch.randn(1, config.text_seq_len, config.text_dim, generator=generator),
        "negative_f": torch.randn(1, config.text_seq_len, config.text_dim,
                                  generator=generator),
        "latents": torch.randn(1, config.latent_seq_len, config.latent_dim,
                               generator=generator),
    }


def run_stage(name: str, models: Models, library: SAGANetModels | None,
              inputs: dict[str, torch.Tensor], num_steps: int = NUM_STEPS) -> None:
    """One stage of the default path (``generate``'s calls and options) on ``inputs``;
    ``library`` is ``models.library(duration)`` (None for CLIP's stages)."""
    from saganet.features import encode_sync
    from saganet.inference import SamplingOptions, initial_noise, sample

    options = SamplingOptions(cfg_strength=CFG_STRENGTH, num_steps=num_steps)
    if name == "clip_images":
        models.clip.encode_images(inputs["clip_frames"], chunk_size=options.clip_chunk_size)
    elif name == "clip_text":
        models.clip.encode_text([PROMPT])
        models.clip.encode_text([NEGATIVE_PROMPT])
    elif name == "synchformer":
        encode_sync(models.synchformer, inputs["sync_frames"], inputs["masks"],
                    inputs["detail_frames"], inputs["detail_masks"],
                    chunk_size=options.sync_chunk_size)
    elif name == "sampling":
        net = models.network
        cond = net.preprocess_conditions(inputs["clip_f"], inputs["sync_f"], inputs["text_f"])
        empty = net.get_empty_conditions(1, negative_text_features=inputs["negative_f"])
        x0 = initial_noise(inputs["latents"].shape, torch.Generator().manual_seed(SEED),
                           torch.device("cpu"), torch.float32)
        sample(library, cond, empty, x0, options=options)
    elif name == "vae":
        models.codec.decode_mel(inputs["latents"])
    elif name == "vocoder":
        codec = models.codec
        frames = 2 * inputs["latents"].shape[1]  # the VAE decoder doubles the frame rate
        mel = torch.randn(1, codec.config.mel.num_mels, frames,
                          generator=torch.Generator().manual_seed(2)) - 5
        codec.vocode(mel)
    else:
        raise ValueError(f"unknown stage {name!r}")


def count_flops(name: str, models: Models, library: SAGANetModels | None,
                inputs: dict[str, torch.Tensor], num_steps: int = NUM_STEPS) -> float:
    """FLOPs of one stage, counted on fake tensors (shapes only, nothing computed).

    Counted apart from the timed run: the counter's dispatch hooks cost as much as a third of
    a stage's time.
    """
    # The fused attention kernels of nn.MultiheadAttention / nn.TransformerEncoderLayer (CLIP,
    # the Synchformer's aggregation) have no FLOP formula; their decomposition has the same
    # products, which the counter sees.
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with warnings.catch_warnings(), FakeTensorMode(allow_non_fake_inputs=True) as fake:
            # CLIP compares clips' data pointers to encode shared frames once; fake tensors
            # have pointers too, but warn about them.
            warnings.filterwarnings("ignore", message=".*data pointer of FakeTensor")
            fake_inputs = {key: fake.from_tensor(value) for key, value in inputs.items()}
            with FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOPS) as counter:
                run_stage(name, models, library, fake_inputs, num_steps)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return float(counter.get_total_flops())


def measure(name: str, models: Models, library: SAGANetModels | None,
            inputs: dict[str, torch.Tensor], num_steps: int = NUM_STEPS) -> dict[str, float]:
    """Time, FLOPs and product-kernel time of one stage run."""
    flops = count_flops(name, models, library, inputs, num_steps)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        wall, cpu = time.perf_counter(), time.process_time()
        run_stage(name, models, library, inputs, num_steps)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    events = prof.key_averages()
    total_us = sum(e.self_cpu_time_total for e in events)
    product_us = sum(e.self_cpu_time_total for e in events if e.key in PRODUCT_KERNELS)
    top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:4]
    return {"flops": flops, "wall_s": wall, "cpu_s": cpu,
            "product_share": product_us / total_us if total_us else 0.0,
            "top": ", ".join(f"{e.key.removeprefix('aten::')} "
                             f"{e.self_cpu_time_total / total_us:.0%}" for e in top)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=positive_float, default=None,
                        help="seconds of video (default 5; 1 with --tiny)")
    parser.add_argument("--stages", type=lambda s: s.split(","), default=list(STAGES),
                        help=f"comma-separated subset of {','.join(STAGES)}")
    add_run_flags(parser)
    parser.add_argument("--count-only", action="store_true",
                        help="only count each stage's FLOPs (nothing is computed)")
    args = parser.parse_args()
    if args.duration is None:
        args.duration = 1.0 if args.tiny else 5.0
    unknown = sorted(set(args.stages) - set(STAGES))
    if unknown:
        parser.error(f"unknown stages: {', '.join(unknown)}")
    from saganet.runtime import configure_runtime

    sizes = Sizes(args.tiny)
    num_steps = TINY_STEPS if args.tiny else NUM_STEPS
    peak_sizes = TINY_PEAK_SIZES if args.tiny else PEAK_SIZES
    # What generate() runs under (for the debug variant's models, one thread).
    threads = configure_runtime(sizes.network, threads=args.threads).intra_op
    device, dtype = torch.device("cpu"), torch.float32
    models = Models(None, None, None, None)
    if {"clip_images", "clip_text"} & set(args.stages):
        models.clip = build_clip(device, dtype, args.tiny)
    library = None
    if set(args.stages) - {"clip_images", "clip_text"}:
        build_rest(models, device, dtype, args.tiny)
        library = models.library(args.duration)
    for module in (models.clip, models.network, models.synchformer, models.codec):
        if module is not None:  # the FLOP counter's module hooks need frozen parameters
            module.requires_grad_(False)
    inputs = stage_inputs(args.duration, sizes.network)
    if args.count_only:
        print(f"{args.duration:g} s clip: FLOPs of the default path (matrix products, "
              "convolutions, attention)")
        with torch.inference_mode():
            for name in STAGES:
                if name in args.stages:
                    flops = count_flops(name, models, library, inputs, num_steps)
                    print(f"{name:12s} {flops / 1e12:9.3f} TFLOP", flush=True)
        return 0
    rate = matmul_rate(sizes=peak_sizes)
    print(f"{args.duration:g} s clip, {threads} threads; fp32 matrix products on this CPU: "
          f"{rate:.1f} GFLOP/s (best square product, measured now)", file=sys.stderr)
    results = {}
    with torch.inference_mode():
        for name in STAGES:
            if name in args.stages:
                results[name] = measure(name, models, library, inputs, num_steps)
                print(f"  {name}: {results[name]['cpu_s']:.1f} CPU-s", file=sys.stderr,
                      flush=True)
    rate_after = matmul_rate(sizes=peak_sizes)
    print(f"\n{'stage':12s} {'GFLOP':>9s} {'CPU s':>8s} {'products':>9s} {'GFLOP/s':>8s} "
          f"{'bound s':>8s} {'headroom':>9s}  top kernels (share of the stage)")
    for name, r in results.items():
        r["bound_s"] = r["flops"] / (max(rate, rate_after) * 1e9)
        r["headroom"] = r["cpu_s"] / r["bound_s"] if r["bound_s"] else float("nan")
        product_s = r["product_share"] * r["cpu_s"]
        r["product_gflops"] = r["flops"] / product_s / 1e9 if product_s else 0.0
        print(f"{name:12s} {r['flops'] / 1e9:9.1f} {r['cpu_s']:8.1f} "
              f"{r['product_share']:8.0%} {r['product_gflops']:8.1f} {r['bound_s']:8.1f} "
              f"{r['headroom']:8.2f}x  {r['top']}")
    print(f"\nmatrix-product rate before / after the stages: {rate:.1f} / {rate_after:.1f} "
          "GFLOP/s (the higher is the bound's rate; a large gap means the CPU was shared)")
    if args.json is not None:
        write_json(args.json, {"duration": args.duration, "threads": threads,
                               "matmul_gflops": [rate, rate_after],
                               "stages": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
