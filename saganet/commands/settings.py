"""Show how a result was generated, and the ``demo.py`` command that makes it again.

    saganet-settings output/clip_take3.flac
    saganet-settings output/clip.mp4 --inputs ~/videos
    saganet-settings output/clip.flac --json

Every file :func:`~saganet.soundtrack.write_soundtrack` writes (from ``demo.py``, the batch
command or the app) records its settings (:mod:`saganet.soundtrack.settings`). This prints the
``demo.py`` command line they amount to: the same video, objects, masks (the mask video or
mask image folder, or the clicks, boxes or phrase they were tracked from), prompts, seeds,
sampler, model, device and precision, so that a take picked in the app or out of ``--takes``
is made again, longer, with more steps or another prompt by editing one flag. Files are
recorded by name only, so ``--inputs`` says the folder of the video and mask videos (or mask
image folders).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from saganet.errors import UserInputError, report_user_error

PROG = "saganet-settings"


def _flag(name: str, value: object) -> list[str]:
    """``--name value``; ``--name=value`` for a value argparse would take for an option."""
    text = value if isinstance(value, str) else repr(value)
    return [f"--{name}={text}"] if text.startswith("-") else [f"--{name}", text]


def _model_flags(record: dict[str, Any]) -> list[str]:
    if record.get("variant") is None:
        raise UserInputError("its models were not loaded by name (built in Python), so no "
                             "demo.py command makes it again")
    flags = _flag("variant", record["variant"])
    if record.get("checkpoint") is not None:
        flags += _flag("checkpoint", record["checkpoint"])
    device, precision = record["device"], record["precision"]
    flags += _flag("device", device)
    # The demo's precision follows the device (bf16 on CUDA, fp32 elsewhere) unless told.
    if precision == "float32" and device == "cuda":
        flags.append("--full_precision")
    elif precision == "bfloat16" and device == "cpu":
        flags.append("--cpu_bf16")
    elif precision != ("bfloat16" if device == "cuda" else "float32"):
        raise UserInputError(f"it was made in {precision} on {device}, which demo.py does not "
                             "run")
    return flags


def _sampler_flags(record: dict[str, Any], defaults: argparse.Namespace) -> list[str]:
    from saganet.inference import SamplingOptions
    from saganet.media.audio import SAMPLE_RATE

    if record["method"] != SamplingOptions().method:
        raise UserInputError(f"it was sampled with method {record['method']!r}, which demo.py "
                             "does not set")
    seeds = [o["seed"] for o in record["objects"]]
    if seeds != list(range(seeds[0], seeds[0] + len(seeds))):
        raise UserInputError(f"its objects' seeds {seeds} do not follow each other, as "
                             "demo.py's do")
    flags = []
    if record["start"]:
        flags += _flag("start", record["start"])
    flags += _flag("duration", record["duration"])
    flags += _flag("cfg_strength", record["cfg_strength"])
    flags += _flag("num_steps", record["num_steps"])
    flags += _flag("seed", seeds[0])
    if record["join"] != defaults.join:
        flags += _flag("join", record["join"])
    if record["overlap"] != defaults.overlap:
        flags += _flag("overlap", record["overlap"])
    if not record["silence_hidden"]:
        flags.append("--keep_hidden")
    if record["mask_away_clip"]:
        flags.append("--mask_away_clip")
    if record["pan"]:
        flags.append("--pan")
    if record["sample_rate"] != SAMPLE_RATE:
        flags += _flag("sample_rate", record["sample_rate"])
    return flags


def _object_flags(record: dict[str, Any], inputs: Path | None) -> list[str]:
    from saganet.weights.registry import SAM3_REPO

    flags: list[str] = []
    click_models, text_models = set(), set()
    for obj in record["objects"]:
        flags += _flag("object", obj["name"])
        masks = obj["masks"]
        if masks is None:
            raise UserInputError(f"object {obj['name']!r}: its masks were given from Python, "
                                 "not from a mask video or prompts, and are not recorded")
        if "video" in masks or "frames" in masks:
            # A folder of mask images goes under --mask_video too, with its object id.
            given = masks["video"] if "video" in masks else masks["frames"]
            flags += _flag("mask_video", given if inputs is None else str(inputs / given))
            if masks.get("object_id") is not None:
                flags += _flag("mask_id", masks["object_id"])
        else:
            tracked = dict(masks["tracked"])
            model = tracked.pop("segment_model")
            (text_models if "segment_text" in tracked else click_models).add(model)
            for name, values in tracked.items():
                for value in [values] if isinstance(values, str) else values:
                    flags += _flag(name, value)
        if obj["prompt"]:
            flags += _flag("prompt", obj["prompt"])
        if obj["negative_prompt"]:
            flags += _flag("negative_prompt", obj["negative_prompt"])
    # One tracking model for clicks and boxes, one for phrases, in a demo run.
    for models, what in ((click_models, "clicks and boxes"), (text_models, "phrases")):
        if len(models) > 1:
            raise UserInputError(f"its {what} were tracked with several models "
                                 f"({', '.join(sorted(models))}); demo.py uses one")
    if click_models:
        flags += _flag("segment_model", click_models.pop())
    if text_models and (model := text_models.pop()) != SAM3_REPO:
        flags += _flag("segment_text_model", model)
    return flags


def remake_arguments(record: dict[str, Any], inputs: str | Path | None = None) -> list[str]:
    """The ``demo.py`` arguments that generate the file ``record`` was read from again
    (:func:`~saganet.soundtrack.read_settings`): its sound, stems and mix alike, to the bit
    on the same device and precision.

    Args:
        record: a file's settings.
        inputs: the folder of its video and mask videos (None: their names alone, as
            recorded). Weights folders and the output folder are the caller's to add.

    Raises:
        UserInputError: the record holds what ``demo.py`` cannot do (models built in Python,
            masks given as arrays, another sampling method or precision).
    """
    from saganet.commands.demo import build_parser

    folder = None if inputs is None else Path(inputs)
    defaults = build_parser().parse_args([])
    try:
        video = record["video"] if folder is None else str(folder / record["video"])
        return [*_flag("video", video), *_model_flags(record),
                *_sampler_flags(record, defaults), *_object_flags(record, folder)]
    except (KeyError, TypeError, IndexError, AttributeError) as err:
        # A record edited by hand, or written by another version of the format.
        raise UserInputError(f"its settings are incomplete or malformed ({type(err).__name__}: "
                             f"{err})") from None


def remake_command(record: dict[str, Any], inputs: str | Path | None = None) -> str:
    """:func:`remake_arguments` as one shell command line, ``python demo.py ...``.

    Raises:
        UserInputError: as :func:`remake_arguments`.
    """
    return shlex.join(["python", "demo.py", *remake_arguments(record, inputs)])


def build_parser() -> argparse.ArgumentParser:
    """The command's argument parser."""
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Examples:\n" + __doc__.split("\n\n")[1])
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE",
                        help="sound files or MP4s written by saganet")
    parser.add_argument("--inputs", type=Path, default=None,
                        help="folder of the video and mask videos (default: their names "
                             "alone, as recorded)")
    parser.add_argument("--json", action="store_true",
                        help="print the recorded settings as JSON instead of the command")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status.

    Args:
        argv: arguments without the program name (default ``sys.argv[1:]``).
    """
    from saganet.soundtrack.settings import read_settings

    args = build_parser().parse_args(argv)
    lines = []
    try:
        for path in args.files:
            record = read_settings(path)
            if record is None:
                raise UserInputError("no saganet settings in it (written by another program, "
                                     "or with --no_settings)", path)
            if len(args.files) > 1:
                lines.append(f"# {path}")
            if args.json:
                lines.append(json.dumps(record, indent=2, ensure_ascii=False))
                continue
            try:
                lines.append(remake_command(record, args.inputs))
            except UserInputError as err:
                raise UserInputError(str(err), path) from None
    except UserInputError as err:
        return report_user_error(PROG, err)
    # Printed once every file is read: a bad file leaves no partial listing.
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
