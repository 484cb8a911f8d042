"""Generate the sound of one masked object in a video: writes ``<stem>.flac`` and ``<stem>.mp4``.

    python demo.py --video clip.mp4 --mask_video mask.mp4 --prompt violin

Without ``--video`` it runs on the published duet example (violin mask, prompt "violin").
Every step lives in the ``saganet`` package; this script only parses and reports.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch

from saganet import dist
from saganet.errors import UserInputError

log = logging.getLogger("saganet.demo")

EXAMPLE_VIDEO = "Vid_09_Jesus_tpt_vn_159092_164092.mp4"
EXAMPLE_MASK = "Masks_02_vn_09_Jesus_159092_164092.mp4"
EXAMPLE_PROMPT = "violin"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", default="saganet_small",
                        help="saganet_small (LoRA, default), saganet_small_no_lora or debug")
    parser.add_argument("--video", type=Path, help="input video (default: the duet example)")
    parser.add_argument("--mask_video", type=Path,
                        help="binary mask video of the sounding object (required with --video)")
    parser.add_argument("--prompt", default=None, help="text prompt, e.g. an instrument name")
    parser.add_argument("--negative_prompt", default="", help="what the audio should not be")
    parser.add_argument("--duration", type=float, default=5.0,
                        help="seconds to generate (shorter inputs shorten it)")
    parser.add_argument("--cfg_strength", type=float, default=7.0,
                        help="classifier-free guidance strength")
    parser.add_argument("--num_steps", type=int, default=25, help="Euler steps")
    parser.add_argument("--mask_away_clip", action="store_true",
                        help="drop the CLIP frame features (condition on sync features only)")
    parser.add_argument("--output", type=Path, default=Path("output"), help="output folder")
    parser.add_argument("--seed", type=int, default=42, help="seed of the initial noise")
    parser.add_argument("--skip_video_composite", action="store_true",
                        help="write only the .flac, not the .mp4")
    parser.add_argument("--full_precision", action="store_true",
                        help="fp32 on CUDA (default there: bf16); CPU and MPS always use fp32")
    parser.add_argument("--weights_dir", type=Path, default=None,
                        help="weights folder (default: $SAGANET_CACHE or ~/.cache/saganet)")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="a weights file to use instead of the variant's published one")
    parser.add_argument("--device", default="auto", help="auto (cuda, mps, cpu), cuda, mps, cpu")
    parser.add_argument("--mask_overlay", action="store_true",
                        help="tint the masked object in the output video (re-encodes it)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument("--offline", action="store_true", default=None,
                        help="never download; report missing files and where they go")
    return parser


@contextmanager
def stage(name: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    log.info("%-10s %6.2f s", name, time.perf_counter() - start)


def run(args: argparse.Namespace) -> list[Path]:
    # Heavy imports here so that --help and argument errors are instant.
    from saganet import weights
    from saganet.data.media_out import write_flac, write_video_with_audio
    from saganet.data.video import load_clip
    from saganet.inference import GenerationBatch, SamplingOptions, generate
    from saganet.pipeline import load_models, pipeline_variant

    pipeline_variant(args.variant)  # fail on an unknown name before any work
    video, mask, prompt = _inputs(args, weights)
    outputs = _output_paths(args, video)
    device = dist.default_device() if args.device == "auto" else torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" and not args.full_precision else torch.float32
    with stage("read"):
        clip = load_clip(video, mask, duration=args.duration)
    with stage("load"):
        models = load_models(args.variant, weights_dir=args.weights_dir,
                             checkpoint=args.checkpoint, device=device, dtype=dtype,
                             offline=args.offline)
        models.set_duration(clip.duration)
        if prompt is not None:
            _check_prompt_length(models, prompt)
    batch = GenerationBatch(
        sync_frames=clip.sync_frames[None], masks=clip.masks[None],
        clip_frames=None if args.mask_away_clip else clip.clip_frames[None],
        texts=None if prompt is None else [prompt], negative_texts=[args.negative_prompt])
    options = SamplingOptions(cfg_strength=args.cfg_strength, num_steps=args.num_steps)
    generator = torch.Generator(device=device).manual_seed(args.seed)
    with stage("generate"):
        result = generate(models, batch, generator=generator, options=options, progress=True)
    audio = result.audio[0]  # (1, L)
    with stage("write"):
        write_flac(outputs[0], audio, result.sampling_rate, overwrite=args.overwrite)
        if len(outputs) > 1:
            write_video_with_audio(video, audio, result.sampling_rate, outputs[1],
                                   duration=clip.duration,
                                   overlay_masks=clip.masks if args.mask_overlay else None,
                                   overwrite=args.overwrite)
    if device.type == "cuda":
        log.info("peak GPU memory %.2f GiB", torch.cuda.max_memory_allocated(device) / 2**30)
    return outputs


def _inputs(args: argparse.Namespace, weights) -> tuple[Path, Path, str | None]:
    if args.video is None:
        if args.mask_video is not None:
            raise UserInputError("--mask_video needs --video")
        files = weights.fetch_group("example", args.weights_dir, args.offline)
        prompt = EXAMPLE_PROMPT if args.prompt is None else args.prompt
        return files[EXAMPLE_VIDEO], files[EXAMPLE_MASK], _clean_prompt(prompt)
    if args.mask_video is None:
        raise UserInputError("--mask_video is required with --video", args.video)
    return args.video, args.mask_video, _clean_prompt(args.prompt)


def _clean_prompt(prompt: str | None) -> str | None:
    if prompt is not None and not prompt.strip():
        raise UserInputError("--prompt is empty; leave it out for no text condition")
    return prompt


def _check_prompt_length(models, prompt: str) -> None:
    tokens = models.clip.count_tokens(prompt)[0]
    if tokens > models.clip.context_length:
        log.warning("the prompt has %d tokens; CLIP reads only the first %d", tokens,
                    models.clip.context_length)


def _output_paths(args: argparse.Namespace, video: Path) -> list[Path]:
    folder = args.output
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserInputError(f"cannot create the output folder ({err.strerror})", folder) from err
    probe = folder / f".write-test-{id(args)}"
    try:
        probe.touch()
        probe.unlink()
    except OSError as err:
        raise UserInputError(f"output folder is not writable ({err.strerror})", folder) from err
    outputs = [folder / f"{video.stem}.flac"]
    if not args.skip_video_composite:
        outputs.append(folder / f"{video.stem}.mp4")
    for path in outputs:
        if path.exists() and not args.overwrite:
            raise UserInputError("output exists; pass --overwrite to replace it", path)
    return outputs


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    info = dist.init(None if args.device == "auto" else args.device)
    try:
        if not info.is_main:
            # One video needs one process; extra torchrun ranks have nothing to do.
            log.info("rank %d: nothing to do (the demo runs on rank 0)", info.rank)
            return 0
        for path in run(args):
            print(path)
        return 0
    except UserInputError as err:
        print(f"demo.py: error: {err}", file=sys.stderr)
        return 2
    finally:
        dist.cleanup()


if __name__ == "__main__":
    sys.exit(main())
