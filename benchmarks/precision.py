"""How far bf16 output is from fp32, stage by stage, at official sizes with random weights.

Builds the modules of ``benchmarks/pipeline.py`` (official sizes, random weights, nothing
downloaded), runs each stage in fp32 and again after casting its module to bf16, on the same
inputs, so each stage's own error shows; then the whole chain from conditions to audio in
bf16 against fp32. Modules are cast in place, one at a time, so memory stays at the fp32
weights. Reports the relative RMS difference ``rms(bf16 - fp32) / rms(fp32)``
and, for features, the cosine similarity. Also prints the bf16/fp32 time ratio of each stage:
on CPUs without AVX512-BF16 or AMX, bf16 is far slower (``--cpu_bf16`` is opt-in for that
reason).

    python benchmarks/precision.py                   # CPU: about 10 minutes on 2 cores
    python benchmarks/precision.py --device cuda
    python benchmarks/precision.py --tiny --json precision.json   # smoke run, debug sizes
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from pipeline import CFG_STRENGTH, NUM_STEPS, build_models
from sizes import (
    CLIP_IMAGE_SIZE,
    TINY_STEPS,
    Sizes,
    add_run_flags,
    check_device,
    write_json,
)

from saganet.cli import positive_float, positive_int
from saganet.features import encode_sync, focal_crop
from saganet.model import CONFIG_44K_SA, FlowMatching
from saganet.runtime import configure_runtime

# The rows of the table: each stage alone, then the whole chain from conditions to audio.
STAGES = ("clip_images", "clip_text", "synchformer", "sampling", "vae", "vocoder",
          "conditions->audio")


def _compare(reference: torch.Tensor, value: torch.Tensor) -> dict[str, float]:
    reference, value = reference.float().cpu(), value.float().cpu()
    rms = reference.pow(2).mean().sqrt().item()
    error = (value - reference).pow(2).mean().sqrt().item()
    cosine = F.cosine_similarity(value.flatten(), reference.flatten(), dim=0).item()
    return {"relative_rms": error / rms if rms else float("nan"), "cosine": cosine}


def _timed(fn: Callable[[], torch.Tensor], device: torch.device) -> tuple[torch.Tensor, float]:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seconds", type=positive_float, default=1.0, help="clip length (>= 0.64)")
    parser.add_argument("--clip-frames", type=positive_int, default=1,
                        help="CLIP frames compared (each costs ~1 TFLOP)")
    add_run_flags(parser)
    args = parser.parse_args()
    num_steps = TINY_STEPS if args.tiny else NUM_STEPS
    configure_runtime(Sizes(args.tiny).network, threads=args.threads)
    device = check_device(parser, args.device)
    if device.type == "cuda":  # a true fp32 reference
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False

    models = build_models(device, torch.float32, need_clip=True, tiny=args.tiny)
    sequence = CONFIG_44K_SA.with_duration(args.seconds)
    models.network.update_seq_lengths(sequence.latent_seq_len, sequence.clip_seq_len,
                                      sequence.sync_seq_len)

    g = torch.Generator().manual_seed(0)
    frames = torch.rand(1, args.clip_frames, 3, CLIP_IMAGE_SIZE, CLIP_IMAGE_SIZE,
                        generator=g).to(device)
    sync_frames = (torch.rand(1, 16, 3, 224, 224, generator=g) * 2 - 1).to(device)
    masks = torch.zeros(1, 16, 1, 224, 224, device=device)
    masks[..., 60:150, 80:140] = 1.0
    detail, detail_mask = focal_crop(sync_frames.cpu(), masks.cpu())
    detail, detail_mask = detail.to(device), detail_mask.to(device)
    config = models.network.config
    conditions = {
        "clip_f": torch.randn(1, config.clip_seq_len, config.clip_dim, generator=g),
        "sync_f": torch.randn(1, config.sync_seq_len, config.sync_dim, generator=g),
        "text_f": torch.randn(1, config.text_seq_len, config.text_dim, generator=g),
    }
    conditions = {k: F.normalize(v, dim=-1).to(device) for k, v in conditions.items()}
    x0 = torch.randn(1, config.latent_seq_len, config.latent_dim, generator=g).to(device)

    def sample(dtype: torch.dtype) -> torch.Tensor:
        net = models.network
        cond = net.preprocess_conditions(*(conditions[k].to(dtype)
                                           for k in ("clip_f", "sync_f", "text_f")))
        empty = net.get_empty_conditions(1)
        flow = FlowMatching(num_steps=num_steps)
        return net.unnormalize(flow.to_data(
            lambda t, x: net.ode_wrapper(t, x, cond, empty, CFG_STRENGTH, batched=True),
            x0.to(dtype)))

    def to_bf16(module: torch.nn.Module) -> None:
        module.to(torch.bfloat16)  # the network keeps its RoPE tables in fp32 (its _apply)

    rows = []

    def record(name: str, reference: tuple[torch.Tensor, float],
               value: tuple[torch.Tensor, float]) -> torch.Tensor:
        rows.append((name, _compare(reference[0], value[0]), value[1] / reference[1]))
        return reference[0]

    with torch.inference_mode():
        clip = models.clip
        images = _timed(lambda: clip.encode_images(frames), device)
        texts = _timed(lambda: clip.encode_text(["violin", "a dog barking"]), device)
        to_bf16(clip)
        record("clip_images", images,
               _timed(lambda: clip.encode_images(frames.to(torch.bfloat16)), device))
        record("clip_text", texts,
               _timed(lambda: clip.encode_text(["violin", "a dog barking"]), device))

        def sync(dtype: torch.dtype) -> torch.Tensor:
            return encode_sync(models.synchformer, *(
                x.to(dtype) for x in (sync_frames, masks, detail, detail_mask)))

        reference = _timed(lambda: sync(torch.float32), device)
        to_bf16(models.synchformer)
        record("synchformer", reference, _timed(lambda: sync(torch.bfloat16), device))
        reference = _timed(lambda: sample(torch.float32), device)
        to_bf16(models.network)
        latents = record("sampling", reference, _timed(lambda: sample(torch.bfloat16), device))
        codec = models.codec
        mel = _timed(lambda: codec.decode_mel(latents), device)
        audio = _timed(lambda: codec.vocode(mel[0]), device)
        to_bf16(codec)
        record("vae", mel, _timed(lambda: codec.decode_mel(latents), device))
        record("vocoder", audio, _timed(lambda: codec.vocode(mel[0]), device))
        chain = codec.vocode(codec.decode_mel(sample(torch.bfloat16)))
        rows.append(("conditions->audio", _compare(audio[0], chain), float("nan")))

    size = "debug-size (--tiny)" if args.tiny else "official-size"
    print(f"bf16 against fp32 on {device}, {args.seconds:g} s clip, random {size} "
          f"weights ({torch.get_num_threads()} CPU threads)")
    print(f"{'stage':18s} {'relative RMS':>13s} {'cosine':>9s} {'bf16/fp32 time':>15s}")
    for name, metrics, ratio in rows:
        print(f"{name:18s} {metrics['relative_rms']:13.2e} {metrics['cosine']:9.5f} "
              f"{ratio:15.2f}")
    if args.json is not None:
        write_json(args.json, {
            "device": str(device), "seconds": args.seconds,
            "stages": {name: {**metrics,
                              "bf16_vs_fp32_time": ratio if math.isfinite(ratio) else None}
                       for name, metrics, ratio in rows}})


if __name__ == "__main__":
    main()
