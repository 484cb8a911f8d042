"""Command-line pieces shared by the entry points.

``demo.py`` and ``python -m saganet.batch`` take the same model and sampling options with the
same meaning and defaults (those of the reference demo), so they are declared once here, as
are the object groups of ``demo.py`` (``--object NAME`` followed by that object's options).
"""

from __future__ import annotations

import argparse
import logging
import math
import re
import signal
import sys
import threading
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from saganet.errors import CFG_STRENGTH_RULE, CPU_FLAG, cfg_strength_ok, check_time_range
from saganet.runtime import configure_runtime

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

# Said once per run in fp32 on a CPU that multiplies bf16 natively; the figures are those of
# docs/performance.md (a Sapphire Rapids class Xeon, official sizes).
CPU_BF16_HINT = ("this CPU multiplies bf16 matrices natively (AMX / AVX512-BF16): --cpu_bf16 "
                 "runs the models about 4x faster here, with audio within about 0.3 % RMS of "
                 "fp32 (docs/performance.md#precision)")

LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"

# Where the weights cache is when no folder is given (saganet.weights.cache_dir), for the help
# of every --weights_dir: kept here, as importing saganet.weights would slow down --help.
CACHE_DEFAULT = "$SAGANET_CACHE, else $XDG_CACHE_HOME/saganet, else ~/.cache/saganet"
# The feature cache's default budget in MB (saganet.soundtrack.feature_cache.DEFAULT_MAX_BYTES),
# kept here for the same reason: that module needs torch.
FEATURE_CACHE_MB = 512
# The rates --sample_rate offers (saganet.soundtrack.request.OUTPUT_RATES), kept here for the
# same reason.
OUTPUT_RATES = (16000, 22050, 24000, 32000, 44100, 48000, 88200, 96000)


def _variant(args: argparse.Namespace) -> str | None:
    return getattr(args, "variant", None)


# Options whose value may begin with "-": a point left of or above the frame, refused later
# with the reason. argparse takes "-1,5" for an unknown option (only "-1" or "-1.5" pass as
# values) and would say just "expected one argument".
POINT_OPTIONS = ("--click", "--negative_click", "--box")
_DASH_VALUE = re.compile(r"-[\d.]")


def attach_dash_values(argv: Sequence[str], options: Sequence[str] = POINT_OPTIONS
                       ) -> list[str]:
    """``argv`` with ``--click -1,5`` written ``--click=-1,5`` (for each of ``options``), the
    form argparse takes; what follows ``--`` is left alone."""
    out: list[str] = []
    rest = list(argv)
    while rest:
        token = rest.pop(0)
        if token == "--":
            return [*out, token, *rest]
        if token in options and rest and _DASH_VALUE.match(rest[0]):
            token = f"{token}={rest.pop(0)}"
        out.append(token)
    return out


def begin(parser: argparse.ArgumentParser, argv: Sequence[str] | None,
          model: Callable[[argparse.Namespace], str | None] = _variant) -> argparse.Namespace:
    """What every command does first: parse ``argv``, log to stderr, and apply the CPU
    run-time policy (:func:`~saganet.runtime.configure_runtime`) for the model it will run.

    Args:
        parser: the command's parser.
        argv: arguments without the program name (None: ``sys.argv[1:]``).
        model: the variant about to run, from the parsed arguments (default: ``--variant``;
            None counts as full size).
    """
    args = parser.parse_args(attach_dash_values(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    # httpx logs every request at info (Gradio's start-up checks, each hub download): noise.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    configure_runtime(model(args))
    return args


@contextmanager
def terminate_cleanly() -> Iterator[None]:
    """While the block runs, SIGTERM (``kill``, ``timeout``, job schedulers) raises
    ``SystemExit(143)`` like Ctrl-C raises KeyboardInterrupt, so that a run cleans up after
    itself (its hidden work folder, an output folder it created) instead of ending on the
    spot."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@dataclass
class ObjectArgs:
    """One object as given on the command line: its masks come from a mask video, or from
    tracking what the user points at (clicks, boxes or a phrase).

    Args:
        name: ``--object NAME`` (None: named after its prompt).
        mask_video: ``--mask_video`` (a mask video or a folder of mask images).
        mask_id: ``--mask_id`` (the object's id in a folder of label images).
        prompt: ``--prompt``.
        negative_prompt: ``--negative_prompt``.
        clicks: ``--click X,Y[@T]`` (repeatable).
        negative_clicks: ``--negative_click X,Y[@T]`` (repeatable).
        boxes: ``--box X0,Y0,X1,Y1[@T]`` (repeatable).
        segment_text: ``--segment_text PHRASE``.
    """

    name: str | None = None
    mask_video: Path | None = None
    mask_id: int | None = None
    prompt: str | None = None
    negative_prompt: str | None = None
    clicks: list[str] = field(default_factory=list)
    negative_clicks: list[str] = field(default_factory=list)
    boxes: list[str] = field(default_factory=list)
    segment_text: str | None = None

    @property
    def tracked(self) -> bool:
        """The object's masks come from tracking (a click, a box or a phrase)."""
        return bool(self.clicks or self.negative_clicks or self.boxes or self.segment_text)


class _ObjectOption(argparse.Action):
    """An option of the current object group: ``--object`` opens a group, the others fill the
    last one (the first group opens by itself)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        objects = list(getattr(namespace, "objects", None) or [])
        if self.dest == "name" or not objects:
            objects.append(ObjectArgs())
        current = objects[-1]
        value = getattr(current, self.dest)
        if isinstance(value, list):
            value.append(values)
        elif value is not None:
            where = f"object {current.name!r}" if current.name else "one object"
            parser.error(f"{option_string} given twice for {where}; start another object "
                         "with --object NAME")
        else:
            setattr(current, self.dest, values)
        namespace.objects = objects


def add_object_arguments(parser: argparse.ArgumentParser) -> None:
    """``[--object NAME] (--mask_video PATH [--mask_id N] | --click X,Y[@T] ... | --box ... |
    --segment_text PHRASE) [--prompt TEXT] [--negative_prompt TEXT]``, once per object
    (results in ``args.objects``, a list of :class:`ObjectArgs`), and the tracking models."""
    group = parser.add_argument_group(
        "objects", "Each object: its masks (a mask video, or what you point at: clicks, boxes "
        "or a phrase, tracked through the video) and its prompts. For several objects, start "
        "each with --object NAME; the options after it belong to that object.")
    parser.set_defaults(objects=[])
    group.add_argument("--object", dest="name", action=_ObjectOption, metavar="NAME",
                       help="start a new object (used in file names and track titles)")
    group.add_argument("--mask_video", dest="mask_video", action=_ObjectOption, type=Path,
                       metavar="PATH", help="binary mask video of the object, or a folder of "
                                            "mask images named by frame number (DAVIS-style "
                                            "PNGs)")
    group.add_argument("--mask_id", dest="mask_id", action=_ObjectOption, type=positive_int,
                       metavar="N", help="the object's id in a folder of label images "
                                         "(palette PNGs; default: every non-zero pixel)")
    group.add_argument("--click", dest="clicks", action=_ObjectOption, metavar="X,Y[@T]",
                       help="a point on the object, in pixels of the (upright) video frame, "
                            "at T seconds (1.5) or frame index (f37); default 0; repeatable")
    group.add_argument("--negative_click", dest="negative_clicks", action=_ObjectOption,
                       metavar="X,Y[@T]", help="a point that is not the object; repeatable")
    group.add_argument("--box", dest="boxes", action=_ObjectOption, metavar="X0,Y0,X1,Y1[@T]",
                       help="a box around the object; repeatable")
    group.add_argument("--segment_text", dest="segment_text", action=_ObjectOption,
                       metavar="PHRASE", help="a phrase naming the object (SAM 3, gated: see "
                                              "docs/segmentation.md)")
    group.add_argument("--prompt", dest="prompt", action=_ObjectOption, metavar="TEXT",
                       help="text prompt, e.g. an instrument name (default: none)")
    group.add_argument("--negative_prompt", dest="negative_prompt", action=_ObjectOption,
                       metavar="TEXT", help="what the object's audio should not be")
    tracking = parser.add_argument_group("tracking (for --click, --box, --segment_text)")
    tracking.add_argument("--segment_model", default=None,
                          help="SAM 2.1 size for clicks and boxes: tiny (default; debug for "
                               "--variant debug), small, base-plus, large, or a local folder")
    tracking.add_argument("--segment_text_model", default=None,
                          help="local SAM 3 folder for --segment_text (default: the cache's)")


def object_name(args: ObjectArgs, index: int) -> str:
    """The object's name: ``--object``, else :func:`default_object_name` of its ``--prompt``
    and its ``--segment_text``."""
    return args.name or default_object_name((args.prompt, args.segment_text), index)


def default_object_name(phrases: Sequence[str | None], index: int) -> str:
    """The name of an object the user did not name: the first of ``phrases`` (its prompt, the
    phrase it was found by) that leaves something once made file-safe, else ``object<k>``
    (``index`` counts from 0).

    The name passes the check of a name given by the user
    (:func:`saganet.fileio.check_object_name`) and stays portable: ASCII letters, digits and
    ``_ . -``, starting with a letter or digit, at most 40 characters. Accents are dropped
    (``violín``: ``violin``), any other run of characters becomes ``_``.
    """
    for phrase in phrases:
        if not phrase:
            continue
        ascii_phrase = unicodedata.normalize("NFKD", phrase).encode("ascii", "ignore")
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", ascii_phrase.decode())
        # The user gave no name, so a phrase such as ".22 rifle" or "../x" must not make one
        # that a check refuses: a leading . or - (hidden files, options) is dropped.
        safe = re.sub(r"^[^A-Za-z0-9]+", "", safe)[:40].rstrip("_")
        if safe:
            return safe
    return f"object{index + 1}"


def _number(text: str, convert: Callable[[str], float], expected: str,
            ok: Callable[[float], bool], requirement: str) -> float:
    """``convert(text)`` if it parses and passes ``ok``; else the argparse error saying which."""
    try:
        value = convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"{requirement}, got {text}")
    return value


def parse_duration(text: str) -> float:
    """``--duration``: seconds, or ``full`` (to the end of the video: ``math.inf``)."""
    if text.strip().lower() == "full":
        return math.inf
    return _number(text, float, "seconds or 'full'", lambda v: v > 0, "must be positive")


def positive_int(text: str) -> int:
    """A whole number of at least 1 (``--num_steps``)."""
    return int(_number(text, int, "a whole number", lambda v: v >= 1, "must be at least 1"))


def positive_float(text: str) -> float:
    """A finite number above 0 (a benchmark's seconds or budget): NaN or infinity would run
    the whole benchmark and only then fail, or time nothing."""
    return _number(text, float, "a number", lambda v: math.isfinite(v) and v > 0,
                   "must be a finite number above 0")


def non_negative_int(text: str) -> int:
    """A whole number of at least 0 (untimed warm-up steps)."""
    return int(_number(text, int, "a whole number", lambda v: v >= 0, "must be at least 0"))


def non_negative_float(text: str) -> float:
    """A finite number of at least 0 (a memory budget, where 0 turns the thing off)."""
    return _number(text, float, "a number", lambda v: math.isfinite(v) and v >= 0,
                   "must be a finite number of at least 0")


def guidance_strength(text: str) -> float:
    """``--cfg_strength``: a finite number of magnitude at most
    :data:`~saganet.errors.MAX_CFG_STRENGTH` (NaN, infinity or a huge strength would make
    every sample NaN, found only after all the compute)."""
    return _number(text, float, "a number", cfg_strength_ok, f"must be {CFG_STRENGTH_RULE}")


def add_long_form_arguments(parser: argparse.ArgumentParser) -> None:
    """``--start --end --join --overlap --keep_hidden --negatives_from_others``."""
    parser.add_argument("--start", type=float, default=0.0,
                        help="seconds of the video to skip (default 0)")
    parser.add_argument("--end", type=float, default=None,
                        help="second of the video to stop at (instead of --duration)")
    parser.add_argument("--join", choices=("joint", "crossfade"), default="joint",
                        help="how windows of a video longer than 5 s are joined: joint "
                             "sampling with shared overlaps (default) or independent windows "
                             "with an equal-power crossfade")
    parser.add_argument("--overlap", type=float, default=1.0,
                        help="least overlap of neighbouring windows in seconds (default 1)")
    parser.add_argument("--keep_hidden", action="store_true",
                        help="generate an object also where its mask is empty for a whole "
                             "window (default: silent there)")
    parser.add_argument("--negatives_from_others", action="store_true",
                        help="an object without --negative_prompt takes the other objects' "
                             "prompts as negative prompt")


def segment_duration(args: argparse.Namespace) -> float | None:
    """Seconds to generate from ``--start``: ``--end - --start``, ``--duration``, or None for
    ``--duration full``.

    Raises:
        UserInputError: a bad ``--start``, ``--end`` or ``--duration``, named by its flag.
    """
    duration = None if math.isinf(args.duration) else args.duration
    return check_time_range(args.start, args.end, duration,
                            names=("--start", "--end", "--duration"))[1]


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """``--variant --weights_dir --checkpoint --device --full_precision --cpu_bf16
    --offline``."""
    parser.add_argument("--variant", default="saganet_small",
                        help="saganet_small (LoRA, default), saganet_small_no_lora or debug")
    parser.add_argument("--weights_dir", type=Path, default=None,
                        help=f"weights folder (default: {CACHE_DEFAULT})")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="a weights file to use instead of the variant's published one")
    parser.add_argument("--device", default="auto",
                        help="auto (default: cuda, mps or cpu, the first present), cuda[:N], "
                             "mps, cpu")
    parser.add_argument("--full_precision", action="store_true",
                        help="fp32 on CUDA (default there: bf16); CPU and MPS use fp32 unless "
                             "--cpu_bf16")
    parser.add_argument("--cpu_bf16", action="store_true",
                        help="bf16 on the CPU (opt-in; fast only on CPUs with AVX512-BF16 or "
                             "AMX, several times slower elsewhere; see docs/performance.md)")
    parser.add_argument("--offline", action="store_true", default=None,
                        help="never download; report missing files and where they go")


def add_feature_cache_argument(parser: argparse.ArgumentParser) -> None:
    """``--feature_cache_mb``: the budget of the commands' :class:`~saganet.soundtrack.FeatureCache`
    (in MB, 10^6 bytes, as the app's ``--max_upload_mb``)."""
    parser.add_argument("--feature_cache_mb", type=non_negative_float, default=FEATURE_CACHE_MB,
                        help="most MB of video features (CLIP frames, Synchformer windows) kept "
                             "for the next generation of the same video, least recently used "
                             f"out (default {FEATURE_CACHE_MB:g}; 0 keeps none)")


def feature_cache_bytes(megabytes: float) -> int:
    """The byte budget of ``--feature_cache_mb``."""
    return round(megabytes * 10**6)


def add_sampling_arguments(parser: argparse.ArgumentParser) -> None:
    """``--duration --cfg_strength --num_steps --seed --skip_video_composite --wav
    --sample_rate --original_sound --pan --no_settings`` (check ``--original_sound`` with
    :func:`check_video_flags`)."""
    parser.add_argument("--duration", type=parse_duration, default=5.0,
                        help="seconds to generate, or 'full' for the whole video (default 5; "
                             "longer videos are covered by overlapping 5 s windows)")
    parser.add_argument("--cfg_strength", type=guidance_strength, default=7.0,
                        help="classifier-free guidance strength (default 7)")
    parser.add_argument("--num_steps", type=positive_int, default=25,
                        help="Euler steps (default 25)")
    parser.add_argument("--seed", type=int, default=42,
                        help="seed of the initial noise (default 42; object k uses seed + k)")
    parser.add_argument("--skip_video_composite", action="store_true",
                        help="write only the sound files, not the .mp4")
    parser.add_argument("--wav", action="store_true",
                        help="write the sound as 24-bit WAV instead of FLAC (for tools that do "
                             "not read FLAC)")
    parser.add_argument("--sample_rate", type=int, choices=OUTPUT_RATES, default=None,
                        metavar="HZ",
                        help="write every file at this rate, e.g. 48000 for video work (the "
                             "model makes 44100, the default; "
                             f"{', '.join(map(str, OUTPUT_RATES))})")
    parser.add_argument("--original_sound", action="store_true",
                        help="also put the video's own sound into the .mp4, as its last "
                             "track ('original sound'), to compare")
    parser.add_argument("--pan", action="store_true",
                        help="a stereo mix: each object placed left to right where its mask is "
                             "in the frame (the stems stay mono)")
    parser.add_argument("--no_settings", action="store_true",
                        help="do not record the generation settings (prompts, seeds, model, "
                             "sampler) in the files' comment tag")


def audio_format(args: argparse.Namespace) -> str:
    """The sound files' type the flags ask for (``--wav``)."""
    return "wav" if args.wav else "flac"


def check_video_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """A usage error (exit 2) for flags about the ``.mp4`` that ``--skip_video_composite``
    does not write."""
    if not args.skip_video_composite:
        return
    for flag in ("mask_overlay", "original_sound"):
        if getattr(args, flag, False):
            parser.error(f"--{flag} goes into the MP4, which --skip_video_composite does "
                         "not write")


def device_and_dtype(args: Any) -> tuple[torch.device, torch.dtype]:
    """The device of ``--device`` and the parameter dtype: bf16 on CUDA unless
    ``--full_precision``, fp32 elsewhere (bf16 matmuls are slow on most CPUs) unless
    ``--cpu_bf16`` on a CPU. A CPU with bf16 matrix instructions running a full-size model
    in fp32 without ``--full_precision`` logs :data:`CPU_BF16_HINT`.

    Args:
        args: parsed model arguments, or anything with their ``device``, ``full_precision``
            and ``cpu_bf16`` attributes (the app's model settings).
    """
    # Imported here: commands such as `python -m saganet.weights` never need torch.
    import torch

    from saganet import dist
    from saganet.errors import UserInputError
    from saganet.runtime import cpu_has_fast_bf16, is_tiny_model

    device = dist.resolve_device(args.device, use_cpu=CPU_FLAG)
    if getattr(args, "cpu_bf16", False):
        if args.full_precision:
            raise UserInputError("--cpu_bf16 and --full_precision contradict each other")
        if device.type == "cpu":
            if not cpu_has_fast_bf16():
                log.warning("--cpu_bf16: this CPU has no bf16 matrix instructions (AVX512-BF16 "
                            "or AMX); bf16 will be several times slower than fp32 here")
            return device, torch.bfloat16
    elif (device.type == "cpu" and not args.full_precision and cpu_has_fast_bf16()
          and not is_tiny_model(getattr(args, "variant", None))):
        # Not for the debug variant's tiny models: nothing there is worth the switch.
        log.info(CPU_BF16_HINT)
    half = device.type == "cuda" and not args.full_precision
    return device, torch.bfloat16 if half else torch.float32
