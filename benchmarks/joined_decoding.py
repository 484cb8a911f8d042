"""Vocoder time of a long clip: each window on its own against the windows joined first.

Joint sampling leaves overlapping windows with the same latents, so ``write_soundtrack``
joins their mel frames and vocodes each object's segment once (in the vocoder's own chunks,
each with its receptive field of context). The baseline, measured in the same run, vocodes
every window whole, as before: each overlap once per window. The vocoder is nearly all of
decoding (``benchmarks/codec.py``). For each clip length the windows come from the plan
``write_soundtrack`` makes (``--overlap`` as there), with random weights and random mel
frames (the cost does not depend on them).

    python benchmarks/joined_decoding.py                     # 6, 10 and 30 s, official size
    python benchmarks/joined_decoding.py --lengths 6 12
    python benchmarks/joined_decoding.py --tiny --json joined.json   # smoke run: debug size
"""

from __future__ import annotations

import argparse

import torch
from sizes import Sizes, add_run_flags, best_time, write_json

from saganet.cli import positive_float, positive_int
from saganet.codec import AudioCodec
from saganet.model import CONFIG_44K_SA
from saganet.runtime import configure_runtime
from saganet.soundtrack.plan import plan_windows

TINY_LENGTHS = (6.0,)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=positive_float, nargs="+", default=[6.0, 10.0, 30.0],
                        help="clip lengths in seconds (each longer than one window)")
    parser.add_argument("--overlap", type=positive_float, default=1.0,
                        help="least overlap of neighbouring windows, seconds (default 1)")
    parser.add_argument("--repeats", type=positive_int, default=1,
                        help="timed calls (best is kept)")
    add_run_flags(parser)
    args = parser.parse_args()
    if args.tiny:
        args.lengths = list(TINY_LENGTHS)
    sizes = Sizes(args.tiny)
    configure_runtime(sizes.network, threads=args.threads)
    torch.manual_seed(0)
    codec = AudioCodec.from_config(sizes.codec(), need_encoder=False)
    per_latent = codec.samples_per_latent // codec.hop_length
    num_mels = codec.config.mel.num_mels
    print(f"vocoder {sizes.vocoder_name}, {torch.get_num_threads()} threads, best of "
          f"{args.repeats}")
    rows = []
    for length in args.lengths:
        plan = plan_windows(length, CONFIG_44K_SA, codec.samples_per_latent,
                            overlap=args.overlap)
        window_frames = plan.window_latents * per_latent
        joined_frames = plan.num_latents * per_latent
        window_mel = torch.randn(1, num_mels, window_frames)
        joined_mel = torch.randn(1, num_mels, joined_frames)

        def per_window(mel: torch.Tensor = window_mel, count: int = len(plan.windows)) -> None:
            for _ in range(count):
                codec.vocode(mel)

        def joined(mel: torch.Tensor = joined_mel) -> None:
            codec.vocode(mel)

        baseline_s = best_time(per_window, args.repeats)
        joined_s = best_time(joined, args.repeats)
        rows.append({"seconds": length, "windows": len(plan.windows),
                     "per_window_frames": len(plan.windows) * window_frames,
                     "joined_frames": joined_frames, "per_window_s": baseline_s,
                     "joined_s": joined_s, "speed_up": baseline_s / joined_s})
        print(f"  {length:6.1f} s, {len(plan.windows)} windows: per window "
              f"{len(plan.windows) * window_frames} frames {baseline_s:8.3f} s, joined "
              f"{joined_frames} frames {joined_s:8.3f} s   x{baseline_s / joined_s:.2f}")
    if args.json is not None:
        write_json(args.json, {"vocoder": sizes.vocoder_name, "lengths": rows})


if __name__ == "__main__":
    main()
