"""Generate the sound of the objects of a video: one ``.flac`` per object, their mix, an ``.mp4``.

    python demo.py --video clip.mp4 --click 812,430 --prompt violin
    python demo.py --video clip.mp4 --mask_video mask.mp4 --prompt violin
    python demo.py --video duet.mp4 --duration full \\
        --object violin --mask_video violin_mask.mp4 --prompt violin \\
        --object trumpet --mask_video trumpet_mask.mp4 --prompt trumpet

Without ``--video`` it runs on an example: the published duet (violin mask, prompt "violin"),
or, for ``--variant debug``, a synthetic clip made on the spot (nothing is downloaded).
``demo.py`` and ``saganet-demo`` run :func:`main`; the work is done by
:func:`saganet.soundtrack.write_soundtrack`, this module only parses, checks and reports.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import logging
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from saganet import dist
from saganet.cli import (
    ObjectArgs,
    add_long_form_arguments,
    add_model_arguments,
    add_object_arguments,
    add_sampling_arguments,
    audio_format,
    begin,
    check_video_flags,
    device_and_dtype,
    object_name,
    positive_int,
    segment_duration,
    terminate_cleanly,
)
from saganet.errors import CPU_FLAG, INTERRUPTED_STATUS, UserInputError, report_user_error
from saganet.fileio import check_folder_creatable

if TYPE_CHECKING:
    from tqdm import tqdm

log = logging.getLogger("saganet.demo")


def build_parser() -> argparse.ArgumentParser:
    """The demo's argument parser."""
    parser = argparse.ArgumentParser(
        prog="demo.py", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Examples:\n" + __doc__.split("\n\n")[1])
    parser.add_argument("--video", type=Path, help="input video (default: an example)")
    add_object_arguments(parser)
    parser.add_argument("--mask_away_clip", action="store_true",
                        help="drop the CLIP frame features (condition on sync features only)")
    parser.add_argument("--output", type=Path, default=Path("output"),
                        help="output folder (default: output)")
    parser.add_argument("--mask_overlay", action="store_true",
                        help="tint the objects in the output video (re-encodes it)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    add_model_arguments(parser)
    add_sampling_arguments(parser)
    parser.add_argument("--takes", type=positive_int, default=1,
                        help="generate this many takes, each with its own seeds (take t: "
                             "--seed + (t - 1) x the number of objects), as <stem>_take<t> "
                             "files; the video's features are computed once (default 1: no "
                             "suffix)")
    add_long_form_arguments(parser)
    return parser


def run(args: argparse.Namespace) -> list[Path]:
    """Generate what the arguments ask for; returns the files written."""
    # Heavy imports here so that --help and argument errors are instant.
    from saganet import weights
    from saganet.inference import SamplingOptions
    from saganet.media.masks import MaskFiles
    from saganet.pipeline import (
        check_checkpoint,
        load_clip,
        load_models,
        pipeline_variant,
        required_files,
        window_layout,
    )
    from saganet.segment.models import required_files as tracker_files
    from saganet.segment.models import tracker_for
    from saganet.soundtrack import (
        FeatureCache,
        check_outputs,
        check_seed,
        encode_clip_features,
        plan_soundtrack,
        resolve_segment,
        timed,
        write_soundtrack,
    )

    spec = pipeline_variant(args.variant)  # fail on an unknown name before any work
    device, dtype = device_and_dtype(args)
    if args.checkpoint is not None:
        check_checkpoint(args.variant, args.checkpoint, option="--variant {}")
    segment_model = tracker_for(args.segment_model, spec.debug)
    tracked = [o for o in args.objects if o.tracked]
    if weights.is_offline(args.offline):
        # Everything missing is listed at once, before any video is opened.
        names = required_files(args.variant, checkpoint=args.checkpoint)
        if args.video is None and not spec.debug:
            names += list(weights.group_members("example"))
        if tracked:
            names += tracker_files(segment_model)
        weights.resolve_all(names, args.weights_dir, offline=True)
    request, prompts = _request(args, spec.debug)
    check_seed(args.seed, args.takes * len(request.objects), "--seed")
    mask_files = _mask_files(request, prompts)
    check_outputs([*(path for take in _takes(request, args.takes)
                     for path in take.outputs().all()),
                   *mask_files.values()], args.overwrite, request.input_files())
    _check_output_folder(args.output)
    segment = resolve_segment(request)  # reads headers only: bad input fails fast
    # What the video holds, so that write_soundtrack, resolving it again, does not repeat the
    # warning that the video is shorter than asked for.
    request = dataclasses.replace(request, duration=segment.duration)
    # The windows too (a bad --overlap, too short a segment), before tracking and loading.
    plan = plan_soundtrack(request, segment, *window_layout(args.variant))
    tracking = None
    if prompts:
        from saganet.segment import track_objects

        with timed("track"):
            tracking = track_objects(
                request.video, list(prompts.values()), model=segment_model,
                text_model=args.segment_text_model, weights_dir=args.weights_dir,
                offline=args.offline, device=str(device), start=segment.start,
                end=segment.start + segment.duration, progress=True)
        for line in tracking.summary():
            log.info("%s", line)
        request = dataclasses.replace(request, objects=tuple(
            dataclasses.replace(o, masks=tracking.objects[o.name]) if o.name in prompts else o
            for o in request.objects))
    options = SamplingOptions(cfg_strength=args.cfg_strength, num_steps=args.num_steps)
    progress = _progress_bars()
    # CLIP first, alone: its features are computed and CLIP released before the other models
    # load, so the run never holds all the weights at once (saganet.soundtrack.clip_pass).
    with timed("load CLIP"):
        clip = load_clip(args.variant, weights_dir=args.weights_dir, device=device,
                         dtype=dtype, offline=args.offline)
    for obj in request.objects:
        if obj.prompt is not None:
            _check_prompt_length(clip, obj.name, obj.prompt)
    log.info("generating %.2f s from %.2f s of %s", segment.duration, segment.start,
             request.video)
    with timed("run CLIP"):
        clip_features = encode_clip_features(clip, request, segment, plan, options=options,
                                             progress=progress)
    del clip
    gc.collect()
    with timed("load model"):
        models = load_models(args.variant, weights_dir=args.weights_dir,
                             checkpoint=args.checkpoint, device=device, dtype=dtype,
                             offline=args.offline, need_clip=False)
    # The Synchformer's features of the first take serve the others (only the seeds differ).
    cache = FeatureCache() if args.takes > 1 else None
    written = []
    for number, take in enumerate(_takes(request, args.takes)):
        if args.takes > 1:
            log.info("take %d of %d", number + 1, args.takes)
        result = write_soundtrack(models, take, seed=args.seed + number * len(request.objects),
                                  overwrite=args.overwrite, options=options, progress=progress,
                                  clip_features=clip_features, cache=cache)
        written += result.outputs.all()
        _report_level(result)
    if tracking is not None:
        # The tracked masks beside the outputs, to reuse (--mask_video) or fix.
        written += [tracking.write_mask_video(name, path, overwrite=args.overwrite)
                    for name, path in mask_files.items()]
    given = {o.name: o.masks for o in request.objects if isinstance(o.masks, MaskFiles)}
    for name, spans in result.silenced.items():
        where = ", ".join(f"{a:.2f}-{b:.2f} s" for a, b in spans)
        hint = given[name].empty_hint() if name in given else ""
        # An object hidden all the time gets a silent stem: most likely the wrong mask.
        whole = sum(b - a for a, b in spans) >= segment.duration - 1e-3
        log.log(logging.WARNING if whole else logging.INFO, "%s: mask empty, silent at %s%s",
                name, where, hint)
    if device.type == "cuda":
        import torch

        log.info("peak GPU memory %.2f GiB", torch.cuda.max_memory_allocated(device) / 2**30)
    return written


class _TrackedLater:
    """The masks of an object that is tracked once every input has been checked."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.duration = None

    def read(self, start: float = 0.0, end: float | None = None):
        raise RuntimeError(f"{self.name}: masks read before tracking")


def _request(args: argparse.Namespace, debug: bool):
    """The soundtrack request of the arguments (an example when there is no --video), and the
    tracking prompts of the objects whose masks come from what the user points at."""
    from saganet.example import example_inputs
    from saganet.media.masks import mask_source
    from saganet.segment import object_prompt
    from saganet.soundtrack import SoundObject, SoundtrackRequest

    objects: list[ObjectArgs] = list(args.objects)
    video = args.video
    if video is None:
        if any(o.mask_video is not None for o in objects):
            raise UserInputError("--mask_video needs --video")
        example = example_inputs(debug, args.weights_dir, args.offline)
        video = example.video
        objects = [o if o.tracked else _example_object(example, o) for o in
                   objects or [ObjectArgs(name) for name in example.default_objects]]
    if not objects:
        raise UserInputError("no object: give --mask_video, or point at the object with "
                             "--click, --box or --segment_text", video)
    for k, obj in enumerate(objects):
        if obj.tracked == (obj.mask_video is not None):
            raise UserInputError(f"object {object_name(obj, k)!r} needs either --mask_video or "
                                 "--click/--box/--segment_text (one of the two)", video)
        if obj.mask_id is not None and obj.mask_video is None:
            raise UserInputError(f"object {object_name(obj, k)!r}: --mask_id picks the object "
                                 "in a folder of label images given as --mask_video")
    duration = segment_duration(args)
    names = [object_name(o, k) for k, o in enumerate(objects)]
    prompts = {name: object_prompt(name, o.clicks, o.negative_clicks, o.boxes, o.segment_text)
               for name, o in zip(names, objects, strict=True) if o.tracked}
    request = SoundtrackRequest(
        video=video,
        objects=tuple(SoundObject(name, _TrackedLater(name) if o.tracked
                                  else mask_source(o.mask_video, video, o.mask_id),
                                  o.prompt, o.negative_prompt)
                      for name, o in zip(names, objects, strict=True)),
        output_dir=args.output, start=args.start, duration=duration, join=args.join,
        overlap=args.overlap, silence_hidden=not args.keep_hidden,
        negatives_from_others=args.negatives_from_others, mask_away_clip=args.mask_away_clip,
        mask_overlay=args.mask_overlay, write_video=not args.skip_video_composite,
        original_sound=args.original_sound, pan=args.pan,
        audio_format=audio_format(args), sample_rate=args.sample_rate,
        record_settings=not args.no_settings)
    return request, prompts


def _takes(request, count: int) -> list:
    """The request of each take: the request itself for one, else one per take with the stem
    ``<stem>_take<t>``."""
    if count == 1:
        return [request]
    return [dataclasses.replace(request, stem=f"{request.name}_take{t}")
            for t in range(1, count + 1)]


def _report_level(result) -> None:
    level = result.mix_level
    if level is not None and level.gain < 1:
        log.info("mix levelled by %.2f dB (peak of the sum %.2f)", 20 * math.log10(level.gain),
                 level.peak)


def _mask_files(request, prompts: dict) -> dict[str, Path]:
    """Where the tracked masks are saved: ``<stem>_mask.mp4`` for one object, else
    ``<stem>_<object>_mask.mp4``."""
    folder = Path(request.output_dir)
    if len(request.objects) == 1:
        return {name: folder / f"{request.name}_mask.mp4" for name in prompts}
    return {name: folder / f"{request.name}_{name}_mask.mp4" for name in prompts}


def _example_object(example, obj: ObjectArgs) -> ObjectArgs:
    """An object of the example: its mask, and its prompt unless one is given."""
    name = obj.name or example.default_objects[0]
    if name not in example.masks:
        raise UserInputError(f"the example has no object {name!r}; it has "
                             f"{', '.join(example.masks)}")
    prompt = obj.prompt if obj.prompt is not None else example.prompts[name]
    return ObjectArgs(name, example.masks[name], prompt=prompt,
                      negative_prompt=obj.negative_prompt)


def _check_output_folder(folder: Path) -> None:
    """The output folder can be created and written, checked before the slow work (and
    created only to be removed again: a failed run must leave nothing behind)."""
    from saganet.soundtrack import check_output_folder

    existing = check_folder_creatable(folder, "output folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserInputError(f"output folder is not writable ({existing})", folder)
    check_output_folder(folder)


def _check_prompt_length(encoder, name: str, prompt: str) -> None:
    tokens = encoder.count_tokens(prompt)[0]
    if tokens > encoder.context_length:
        log.warning("the prompt of %s has %d tokens; CLIP reads only the first %d", name,
                    tokens, encoder.context_length)


def _progress_bars():
    """A progress bar per stage (one line per interval in a log)."""
    from saganet.progress import progress_bar

    bars: dict[str, tqdm] = {}

    def progress(stage: str, done: int, total: int) -> None:
        bar = bars.get(stage)
        if bar is None:
            bar = bars[stage] = progress_bar(total=total, desc=stage, leave=False)
        bar.total = total
        # update(), not n= and refresh(): it keeps the bar's interval between redraws.
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return progress


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; returns the exit status (2 for a user error).

    Args:
        argv: arguments without the program name (default ``sys.argv[1:]``).
    """
    parser = build_parser()
    args = begin(parser, argv)
    check_video_flags(parser, args)
    try:
        info = dist.init(args.device, use_cpu=CPU_FLAG)
    except UserInputError as err:
        return report_user_error("demo.py", err)
    try:
        if not info.is_main:
            # One video needs one process; extra torchrun ranks have nothing to do.
            log.info("rank %d: nothing to do (the demo runs on rank 0)", info.rank)
            return 0
        with terminate_cleanly():
            written = run(args)
        for path in written:
            print(path)
        return 0
    except UserInputError as err:
        return report_user_error("demo.py", err)
    except KeyboardInterrupt:
        # Ctrl-C is the user's choice, not a failure to explain: one line, the shell's status
        # (on a line of its own: a progress bar may hold the current one).
        print("\ndemo.py: interrupted", file=sys.stderr)
        return INTERRUPTED_STATUS
    finally:
        dist.cleanup()

