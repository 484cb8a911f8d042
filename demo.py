"""Generate the sound of one masked object in a video: writes ``<stem>.flac`` and ``<stem>.mp4``.

    python demo.py --video clip.mp4 --mask_video mask.mp4 --prompt violin

Without ``--video`` it runs on the published duet example (violin mask, prompt "violin").
Every step lives in the ``saganet`` package; this script only parses and reports.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from saganet import dist
from saganet.cli import (
    add_model_arguments,
    add_sampling_arguments,
    device_and_dtype,
)
from saganet.errors import UserInputError, report_user_error
from saganet.runtime import configure_runtime

log = logging.getLogger("saganet.demo")

EXAMPLE_VIDEO = "Vid_09_Jesus_tpt_vn_159092_164092.mp4"
EXAMPLE_MASK = "Masks_02_vn_09_Jesus_159092_164092.mp4"
EXAMPLE_PROMPT = "violin"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--video", type=Path, help="input video (default: the duet example)")
    parser.add_argument("--mask_video", type=Path,
                        help="binary mask video of the sounding object (required with --video)")
    parser.add_argument("--prompt", default=None, help="text prompt, e.g. an instrument name")
    parser.add_argument("--negative_prompt", default="", help="what the audio should not be")
    parser.add_argument("--mask_away_clip", action="store_true",
                        help="drop the CLIP frame features (condition on sync features only)")
    parser.add_argument("--output", type=Path, default=Path("output"), help="output folder")
    parser.add_argument("--mask_overlay", action="store_true",
                        help="tint the masked object in the output video (re-encodes it)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    add_model_arguments(parser)
    add_sampling_arguments(parser)
    return parser


def run(args: argparse.Namespace) -> list[Path]:
    # Heavy imports here so that --help and argument errors are instant.
    from saganet import weights
    from saganet.inference import SamplingOptions
    from saganet.media.video import load_video_inputs
    from saganet.pipeline import load_models, pipeline_variant
    from saganet.soundtrack import SoundtrackRequest, timed, write_soundtrack

    pipeline_variant(args.variant)  # fail on an unknown name before any work
    video, mask, prompt = _inputs(args, weights)
    flac, mp4 = _output_paths(args, video)
    device, dtype = device_and_dtype(args)
    # Inputs are read before the models load, so bad input fails fast and downloads nothing.
    with timed("read"):
        inputs = load_video_inputs(video, mask, duration=args.duration)
    with timed("load"):
        models = load_models(args.variant, weights_dir=args.weights_dir,
                             checkpoint=args.checkpoint, device=device, dtype=dtype,
                             offline=args.offline)
        if prompt is not None:
            _check_prompt_length(models, prompt)
    request = SoundtrackRequest(video, flac, mp4, prompt, args.negative_prompt,
                                args.mask_away_clip, args.mask_overlay)
    write_soundtrack(models, inputs, request, seed=args.seed, overwrite=args.overwrite,
                     options=SamplingOptions(cfg_strength=args.cfg_strength,
                                             num_steps=args.num_steps), progress=True)
    if device.type == "cuda":
        log.info("peak GPU memory %.2f GiB", torch.cuda.max_memory_allocated(device) / 2**30)
    return [flac] if mp4 is None else [flac, mp4]


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
    tokens = models.clip_encoder.count_tokens(prompt)[0]
    if tokens > models.clip_encoder.context_length:
        log.warning("the prompt has %d tokens; CLIP reads only the first %d", tokens,
                    models.clip_encoder.context_length)


def _output_paths(args: argparse.Namespace, video: Path) -> tuple[Path, Path | None]:
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
    flac = folder / f"{video.stem}.flac"
    mp4 = None if args.skip_video_composite else folder / f"{video.stem}.mp4"
    for path in (flac, mp4):
        if path is not None and path.exists() and not args.overwrite:
            raise UserInputError("output exists; pass --overwrite to replace it", path)
    return flac, mp4


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    configure_runtime(args.variant)
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
        return report_user_error("demo.py", err)
    finally:
        dist.cleanup()


if __name__ == "__main__":
    sys.exit(main())
