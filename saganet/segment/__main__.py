"""Command line: ``python -m saganet.segment VIDEO --click X,Y[@T] ... --output masks/``.

Writes ``<output>/<video stem>_<object>_mask.mp4`` per object (lossless) and, with
``--preview``, ``<output>/<video stem>_preview.mp4``. Several objects: ``--object NAME`` starts
an object, and the ``--click``, ``--negative_click``, ``--box`` and ``--text`` after it belong
to it; prompts before any ``--object`` belong to one object, named after its ``--text`` phrase
(made file-safe, as ``demo.py`` names an object after its prompt) or else ``object1``::

    python -m saganet.segment duet.mp4 --output masks \\
        --object violin --click 1368,624 --click 1300,600@2.5 \\
        --object trumpet --box 600,555,810,790@f12 --negative_click 1368,624
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from saganet.cli import CACHE_DEFAULT, begin, default_object_name
from saganet.errors import CPU_FLAG, UserInputError, check_time_range, report_user_error

PROG = "python -m saganet.segment"
_PROMPT_FLAGS = ("click", "negative_click", "box", "text")


class _Collect(argparse.Action):
    """Keeps ``--object`` and the prompt flags in command-line order (they form groups)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        items = list(getattr(namespace, "prompt_items", None) or [])
        items.append((self.dest, values))
        namespace.prompt_items = items


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Track the objects you point at through a video and write "
        "their mask videos.", epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("video", type=Path, help="the video")
    parser.add_argument("--object", dest="object", action=_Collect, metavar="NAME",
                        help="start a new object called NAME (letters, digits, _ . + -)")
    parser.add_argument("--click", action=_Collect, metavar="X,Y[@T]",
                        help="a point on the object, in pixels of the upright frame; @T in "
                        "seconds (2.5) or a frame index (f62); default time 0")
    parser.add_argument("--negative_click", action=_Collect, metavar="X,Y[@T]",
                        help="a point that is not the object")
    parser.add_argument("--box", action=_Collect, metavar="X0,Y0,X1,Y1[@T]",
                        help="a box around the object")
    parser.add_argument("--text", action=_Collect, metavar="PHRASE",
                        help="a phrase naming the object (SAM 3; gated, see docs)")
    parser.add_argument("--output", type=Path, required=True, help="output folder")
    parser.add_argument("--preview", action="store_true",
                        help="also write a preview with each object tinted")
    parser.add_argument("--model", default="tiny",
                        help="SAM 2.1 size for clicks/boxes: tiny (default), small, base-plus, "
                        "large, debug (tiny random weights, made in the cache; for tests) or a "
                        "local model folder")
    parser.add_argument("--text_model", default=None,
                        help="local SAM 3 folder for --text (default: the cache's copy)")
    parser.add_argument("--weights_dir", type=Path, default=None,
                        help=f"weights folder (default: {CACHE_DEFAULT})")
    parser.add_argument("--offline", action="store_true", default=None,
                        help="never download; report missing files and where they go")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, mps or auto")
    parser.add_argument("--start", type=float, default=0.0, help="seconds to skip")
    parser.add_argument("--end", type=float, default=None, help="seconds to stop at")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.set_defaults(prompt_items=None)
    return parser


def objects_from_args(items: Sequence[tuple[str, str]]) -> list:
    """Objects from the ``(flag, value)`` items in command-line order (module docstring).

    Args:
        items: ``("object", NAME)`` starts an object; prompt flags add to the current one.

    Raises:
        UserInputError: a malformed prompt, an object without prompts, two phrases for one
            object, or a repeated name.
    """
    from saganet.segment.prompts import check_unique_names, object_prompt

    groups: list[tuple[str | None, dict[str, list[str]]]] = []
    for flag, value in items:
        if flag == "object":
            groups.append((value, {f: [] for f in _PROMPT_FLAGS}))
            continue
        if not groups:
            groups.append((None, {f: [] for f in _PROMPT_FLAGS}))
        groups[-1][1][flag].append(value)
    objects = []
    for index, (given, prompts) in enumerate(groups):
        name = given if given is not None else default_object_name(prompts["text"][:1], index)
        if len(prompts["text"]) > 1:
            raise UserInputError(f"object {name}: give one --text per object")
        objects.append(object_prompt(name, prompts["click"], prompts["negative_click"],
                                     prompts["box"], prompts["text"][0] if prompts["text"]
                                     else None))
    check_unique_names(objects)
    return objects


def _outputs(args: argparse.Namespace, names: Sequence[str]) -> tuple[dict[str, Path],
                                                                      Path | None]:
    """The files to write, checked before the tracking: each name fits the file system (a
    long object name makes a long file name), none exists unless ``--overwrite``, and the
    output folder can be created (not under a file). Otherwise these are found only when
    writing, after all the tracking.

    Raises:
        UserInputError: an output that cannot or may not be written.
    """
    from saganet.soundtrack import check_output_folder, check_outputs

    stem = args.video.stem
    masks = {name: args.output / f"{stem}_{name}_mask.mp4" for name in names}
    preview = args.output / f"{stem}_preview.mp4" if args.preview else None
    paths = [*masks.values(), *([preview] if preview is not None else [])]
    check_outputs(paths, args.overwrite, [args.video])
    if args.output.exists() and not args.output.is_dir():
        raise UserInputError("output is not a folder", args.output)
    check_output_folder(args.output)
    return masks, preview


def run(args: argparse.Namespace) -> list[Path]:
    """Track and write; returns the files written (all of them, or none on an error)."""
    from saganet.dist import resolve_device
    from saganet.segment.tracking import track_objects

    # Named as the flags, as demo.py and the batch command name theirs (the library's check
    # inside track_objects would say "start" and "end").
    check_time_range(args.start, args.end, names=("--start", "--end", "--duration"))
    objects = objects_from_args(args.prompt_items or [])
    masks, preview = _outputs(args, [obj.name for obj in objects])
    # Checked here to name the flag; track_objects would name its argument.
    device = resolve_device(args.device, use_cpu=CPU_FLAG)
    tracking = track_objects(args.video, objects, model=args.model, text_model=args.text_model,
                             weights_dir=args.weights_dir, offline=args.offline,
                             device=str(device), start=args.start, end=args.end, progress=True)
    for line in tracking.summary():
        print(line)
    created = not args.output.exists()
    written: list[Path] = []
    try:
        for name, path in masks.items():
            written.append(tracking.write_mask_video(name, path, overwrite=args.overwrite))
        if preview is not None:
            written.append(tracking.write_preview(preview, overwrite=args.overwrite))
    except BaseException:
        # All or nothing: a partial set of outputs would look like a finished run.
        for path in written:
            path.unlink(missing_ok=True)
        if created and args.output.is_dir() and not any(args.output.iterdir()):
            args.output.rmdir()
        raise
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status.

    Args:
        argv: arguments without the program name; ``sys.argv[1:]`` when None.
    """
    # The debug tracker is tiny (one thread); every published SAM 2.1 size is worth all cores.
    args = begin(build_parser(), argv, model=lambda a: "debug" if a.model == "debug" else None)
    try:
        for path in run(args):
            print(path)
    except UserInputError as err:
        return report_user_error(PROG, err)
    return 0


if __name__ == "__main__":
    sys.exit(main())
