"""CPU time to decode audio from latents with the official-size codec (random weights).

Splits the decode into the VAE (latents -> log-mel) and the vocoder (log-mel -> waveform),
with each part's share and real-time factor. In the same run, on a shorter clip, the folded
vocoder is compared with the baseline of the same vocoder still carrying its weight-norm
parametrisation (what running it straight after loading would cost).

    python benchmarks/codec.py                 # 5 s of audio (minutes on 2 busy cores)
    python benchmarks/codec.py --seconds 2     # shorter
    python benchmarks/codec.py --quick         # 1 s, 0.25 s for the baseline
    python benchmarks/codec.py --tiny --json codec.json   # smoke run: debug-size codec, --quick
"""

from __future__ import annotations

import argparse

import torch
from sizes import Sizes, add_run_flags, best_time, write_json

from saganet.cli import positive_float, positive_int
from saganet.codec import AudioCodec, BigVGAN
from saganet.runtime import configure_runtime


def _latents(codec: AudioCodec, seconds: float) -> torch.Tensor:
    num_latents = max(1, round(seconds * codec.sampling_rate / codec.samples_per_latent))
    return torch.randn(1, num_latents, codec.latent_dim)  # (B, N, C)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=positive_float, default=5.0,
                        help="audio duration to decode")
    parser.add_argument("--baseline-seconds", type=positive_float, default=1.0,
                        help="duration for the folded-vs-parametrised vocoder comparison")
    parser.add_argument("--repeats", type=positive_int, default=1,
                        help="timed calls (best is kept)")
    add_run_flags(parser)
    parser.add_argument("--quick", action="store_true", help="1 s of audio, 0.25 s baseline")
    args = parser.parse_args()
    if args.quick or args.tiny:
        args.seconds, args.baseline_seconds = 1.0, 0.25
    configure_runtime(Sizes(args.tiny).network, threads=args.threads)

    sizes = Sizes(args.tiny)
    torch.manual_seed(0)
    codec = AudioCodec.from_config(sizes.codec(), need_encoder=False)
    # Baseline: a vocoder still carrying its weight-norm parametrisation (g * v / ||v|| is
    # recomputed at every call), as it is right after loading bigvgan_generator.pt.
    parametrised = BigVGAN(sizes.vocoder()).eval()
    parametrised.requires_grad_(False)

    latents = _latents(codec, args.seconds)
    audio_seconds = latents.shape[1] * codec.samples_per_latent / codec.sampling_rate
    with torch.no_grad():
        mel = codec.decode_mel(latents)  # (B, 128, 2N)
        short_mel = codec.decode_mel(_latents(codec, args.baseline_seconds))
        short_seconds = short_mel.shape[-1] * codec.hop_length / codec.sampling_rate

    print(f"decode {latents.shape[1]} latents -> {audio_seconds:.3f} s of audio at "
          f"{codec.sampling_rate} Hz, {torch.get_num_threads()} threads, best of {args.repeats}")
    vae_s = best_time(lambda: codec.decode_mel(latents), args.repeats)
    vocoder_s = best_time(lambda: codec.vocode(mel), args.repeats)
    total_s = vae_s + vocoder_s
    for name, seconds in (("VAE decode (latents -> log-mel)", vae_s),
                          ("vocoder (log-mel -> waveform)", vocoder_s),
                          ("total decode", total_s)):
        print(f"  {name:40s} {seconds:8.3f} s   x{audio_seconds / seconds:6.3f} real time   "
              f"{seconds / total_s:6.1%} of decode")

    folded_s = best_time(lambda: codec.vocode(short_mel), args.repeats)
    with torch.no_grad():
        baseline_s = best_time(lambda: parametrised(short_mel), args.repeats)
    print(f"vocoder on {short_seconds:.3f} s of audio:")
    print(f"  {'baseline: weight-norm parametrised':40s} {baseline_s:8.3f} s")
    print(f"  {'folded weights (what AudioCodec runs)':40s} {folded_s:8.3f} s   "
          f"x{baseline_s / folded_s:.3f} speed-up")
    if args.json is not None:
        write_json(args.json, {
            "audio_s": audio_seconds, "vae_s": vae_s, "vocoder_s": vocoder_s,
            "total_s": total_s, "baseline_audio_s": short_seconds,
            "parametrised_vocoder_s": baseline_s, "folded_vocoder_s": folded_s,
            "speed_up": baseline_s / folded_s})


if __name__ == "__main__":
    main()
