"""From a video and its objects to sound files: the one path of ``demo.py``, the batch command
and the web app.

:func:`write_soundtrack` covers the requested seconds of the video with windows of the model's
training duration (:mod:`saganet.soundtrack.plan`), reads each window's frames and masks while
the video streams past (:mod:`saganet.media.windows`), runs every object of a window as one
batch through the stages of :func:`saganet.inference.generate`, joins the windows
(:mod:`saganet.soundtrack.join`) and writes one stem per object, their mix and an MP4.

Memory does not grow with the video's length: frames are held for one window at a time, the
audio is accumulated in memory-mapped files in a hidden work folder beside the outputs (removed
at the end), and the files are encoded from there in chunks. Joint sampling keeps every
window's conditions (a few hundred kB each) until sampling is done, runs the network on at most
``NETWORK_CHUNK`` clips at a time and decodes one window's worth of clips at a time.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from numbers import Integral
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from saganet.cancel import CancelToken, checked
from saganet.errors import UserInputError
from saganet.fileio import nearest_existing
from saganet.inference import (
    GenerationBatch,
    SamplingOptions,
    checked_options,
    decode,
    encode_conditions,
    encode_sync_features,
    sample,
)
from saganet.leftovers import name_part, owned_folder, remove_dead
from saganet.media.audio import read_video_sound
from saganet.media.masks import MaskFiles, MaskSource
from saganet.media.output import OVERLAY_COLORS, AudioTrack, Overlay, write_audio
from saganet.media.output import write_video_with_audio as write_mp4
from saganet.media.resample import resample_into, resampled_length
from saganet.media.video import SYNC_FPS, VideoInfo, check_mask_aspect, probe_video
from saganet.media.windows import WindowFrames, read_windows
from saganet.model import Conditions
from saganet.models import SAGANetModels
from saganet.soundtrack.feature_cache import FeatureCache, masks_digest, video_key
from saganet.soundtrack.join import VelocityFusion, join_weights
from saganet.soundtrack.mix import MixLevel, level_mix
from saganet.soundtrack.pan import Pan, mask_positions
from saganet.soundtrack.plan import Window, WindowPlan, check_long_enough, plan_windows
from saganet.soundtrack.request import (
    ORIGINAL_SOUND_TITLE,
    SoundObject,
    SoundtrackOutputs,
    SoundtrackRequest,
)
from saganet.soundtrack.settings import settings_record, settings_tags
from saganet.soundtrack.window_images import WindowImageEncoder

if TYPE_CHECKING:
    from saganet.model import SequenceConfig
    from saganet.soundtrack.clip_pass import ClipFeatures

log = logging.getLogger(__name__)

ProgressFn = Callable[[str, int, int], None]
"""``progress(stage, done, total)``; stages: ``features``, ``sampling``, ``decoding``,
``writing``."""

# Clips per network pass when every window of a long video is sampled at once.
NETWORK_CHUNK = 16
# How much earlier than the segment masks of unknown frame rate may end: one frame of the
# 25 fps grid that masks tracked in memory are on.
_LENGTH_TOLERANCE_S = 1 / SYNC_FPS


def _length_tolerance(masks: MaskSource) -> float:
    """How much earlier than the segment the masks may end: one frame at their own rate (the
    last mask is held over it), so a 12 fps mask video is held to its frames, not to 25 fps
    ones; the 25 fps frame where the rate is unknown."""
    if isinstance(masks, MaskFiles) and masks.info.fps > 0:
        return 1 / masks.info.fps
    return _LENGTH_TOLERANCE_S


@dataclass(frozen=True)
class Segment:
    """The seconds of the video that are generated.

    Args:
        start: seconds from the video's first frame.
        duration: seconds generated.
        video_info: the video's metadata.
    """

    start: float
    duration: float
    video_info: VideoInfo


@dataclass
class SoundtrackResult:
    """What :func:`write_soundtrack` did.

    Args:
        outputs: the files written.
        segment: the seconds generated.
        plan: the windows.
        silenced: object name -> ``(start, end)`` seconds (of the video) where its masks were
            empty and its stem is silent.
        mix_level: how the mix was levelled (None for one object).
    """

    outputs: SoundtrackOutputs
    segment: Segment
    plan: WindowPlan
    silenced: dict[str, list[tuple[float, float]]]
    mix_level: MixLevel | None


@contextmanager
def timed(stage: str) -> Iterator[None]:
    """Log how long a stage took (one line per stage, as the demo reports)."""
    start = time.perf_counter()
    yield
    log.info("%-10s %6.2f s", stage, time.perf_counter() - start)


def resolve_segment(request: SoundtrackRequest) -> Segment:
    """Check the request's inputs (video, masks, time range) without decoding them.

    Raises:
        UserInputError: unreadable video or mask video, a mask of another aspect ratio or
            shorter than the segment, a time range outside the video, or one shorter than
            one Synchformer window.
    """
    info = probe_video(request.video)
    length = info.duration
    if length is not None and request.start >= length:
        raise UserInputError(f"start {request.start:g} s is past the end of the video "
                             f"({length:.2f} s)", request.video)
    available = None if length is None else length - request.start
    duration = request.duration if request.duration is not None else available
    if duration is None:
        raise UserInputError("the video does not say how long it is; give a duration",
                             request.video)
    requested = duration
    shortened = available is not None and duration > available + 1e-6
    if shortened:
        duration = available
    # An end minus a start in floats lands a hair off the frame grid (5.0 - 4.36 =
    # 0.6399999999999997): the window's frame count would lose a frame, and a part of exactly
    # one Synchformer window would be refused as too short. Nanoseconds are far below any
    # frame or sample.
    duration = round(duration, 9)
    # Too little to generate anything is the error (naming the start that left it), not a
    # shorter run to warn of first.
    check_long_enough(duration, start=request.start if request.start else None,
                      source=request.video)
    if shortened:
        log.warning("%s holds only %.3f s from %.3f s: using that instead of %.3f s",
                    request.video, available, request.start, requested)
    end = request.start + duration
    for obj in request.objects:
        if isinstance(obj.masks, MaskFiles):
            check_mask_aspect(info, obj.masks.info)
        covered = obj.masks.duration
        # The nanosecond margin keeps a mask exactly one frame short on the taken side.
        if covered is not None and covered < end - _length_tolerance(obj.masks) - 1e-9:
            raise UserInputError(f"the masks of {obj.name!r} last {covered:.2f} s but the video "
                                 f"is used up to {end:.2f} s; give masks as long as the video",
                                 obj.masks.name)
    return Segment(request.start, duration, info)


def plan_soundtrack(request: SoundtrackRequest, segment: Segment, sequence: SequenceConfig,
                    samples_per_latent: int) -> WindowPlan:
    """The windows that cover ``segment`` for models trained on ``sequence``.

    Args:
        request: what to generate (its ``overlap``).
        segment: from :func:`resolve_segment`.
        sequence: the models' training clip (``models.training_sequence``).
        samples_per_latent: waveform samples per latent (``models.codec.samples_per_latent``).
    """
    return plan_windows(segment.duration, sequence, samples_per_latent, overlap=request.overlap,
                        source=request.video)


def window_start(segment: Segment, window: Window) -> float:
    """Seconds from the video's first frame to the window's first."""
    return segment.start + window.offset


def visible_objects(request: SoundtrackRequest, segment: Segment, plan: WindowPlan,
                    window: Window) -> tuple[list[int], list[torch.Tensor]]:
    """The objects that sound in a window and their ``(Ts, 1, 224, 224)`` uint8 masks:
    all of them, or with ``silence_hidden`` those whose masks are not empty there."""
    present, masks = [], []
    for k, obj in enumerate(request.objects):
        window_masks = _window_masks(obj, window_start(segment, window), plan.window_duration)
        if request.silence_hidden and not window_masks.any():
            continue
        present.append(k)
        masks.append(window_masks)
    return present, masks


def _window_masks(obj: SoundObject, start: float, duration: float) -> torch.Tensor:
    """The object's masks from ``start`` for ``duration`` seconds at 25 fps (the last one held
    at the end)."""
    count = int(SYNC_FPS * duration)
    masks = obj.masks.read(start, start + duration)
    if len(masks) == 0:
        raise UserInputError(f"the masks of {obj.name!r} have no frame at {start:.2f} s",
                             obj.masks.name)
    if len(masks) < count:
        masks = torch.cat([masks, masks[-1:].expand(count - len(masks), -1, -1, -1)])
    return masks[:count]


def check_outputs(outputs: SoundtrackOutputs | Sequence[Path], overwrite: bool,
                  inputs: Sequence[Path] = ()) -> None:
    """Fail before any work if an output exists (and may not be replaced), is a folder, or is
    one of the inputs (never replaced, even with ``overwrite``).

    Args:
        outputs: the files to write.
        overwrite: existing outputs may be replaced.
        inputs: the files read (:meth:`SoundtrackRequest.input_files`).
    """
    paths = outputs.all() if isinstance(outputs, SoundtrackOutputs) else list(outputs)
    for path in paths:
        _check_name_lengths(path)
        try:
            exists = path.exists()
        except OSError as err:  # e.g. a path longer than the system takes
            raise UserInputError(f"cannot use this output: {err.strerror}", path) from None
        if path.is_dir():
            raise UserInputError("output is a folder", path)
        if exists and any(_same_file(path, source) for source in inputs):
            raise UserInputError("output would replace an input file; choose another output "
                                 "folder", path)
        if exists and not overwrite:
            raise UserInputError("output exists; pass --overwrite (overwrite=True from "
                                 "Python) to replace it", path)


def _check_name_lengths(path: Path) -> None:
    """Fail if a name in ``path`` that does not exist yet (the file's, or a folder's to be
    created) is longer than the file system allows: found before any work, where creating it
    would fail after all of it.

    Args:
        path: a file to write.
    """
    existing = nearest_existing(path.parent)
    limit = _name_max(existing)
    created = existing
    for name in path.relative_to(existing).parts:
        created /= name
        size = len(os.fsencode(name))
        if size > limit:
            raise UserInputError(f"name too long: {size} bytes, where this file system takes "
                                 f"at most {limit}", created)


def _name_max(folder: Path) -> int:
    """The longest name in bytes that ``folder``'s file system takes (255 where unknown)."""
    try:
        limit = os.pathconf(folder, "PC_NAME_MAX")
    except (AttributeError, ValueError, OSError):  # no pathconf (Windows), or not known
        return 255
    return limit if limit > 0 else 255  # -1: no limit known


def _same_file(path: Path, other: Path) -> bool:
    try:
        return os.path.samefile(path, other)
    except OSError:
        return False


@dataclass
class _Item:
    """One object in one window: its conditions wait here until sampling."""

    obj: int
    window: int
    conditions: Conditions
    empty: Conditions


class _Stems:
    """Each object's audio of the segment, accumulated in memory-mapped float32 files."""

    def __init__(self, folder: Path, names: list[str], plan: WindowPlan,
                 equal_power: bool) -> None:
        self.plan = plan
        self.length = plan.num_samples
        self.audio = {name: np.lib.format.open_memmap(folder / f"{index}.npy", mode="w+",
                                                      dtype=np.float32, shape=(self.length,))
                      for index, name in enumerate(names)}
        self.weights = [w.float().numpy() for w in join_weights(plan, equal_power=equal_power)]

    def add(self, name: str, window: Window, audio: torch.Tensor) -> None:
        """Add a window's decoded ``(L,)`` audio with its join weight."""
        span = self.plan.sample_span(window)
        stop = min(span.stop, self.length)
        count = stop - span.start
        if count <= 0:
            return
        weighted = audio[:count].numpy() * self.weights[window.index][:count]
        self.audio[name][span.start : stop] += weighted

    def add_run(self, name: str, windows: Sequence[int], start: int,
                audio: torch.Tensor) -> None:
        """Add ``(L,)`` audio from sample ``start`` of the segment, a piece of consecutive
        windows decoded as one (joint sampling), faded as the windows' own weights fade:
        towards a window where the object is hidden, not between the run's windows (there
        they sum to 1)."""
        stop = min(start + len(audio), self.length)
        if stop <= start:
            return
        fade = np.zeros(stop - start, np.float32)
        for index in windows:
            span = self.plan.sample_span(self.plan.windows[index])
            low, high = max(span.start, start), min(span.stop, stop)
            if low < high:
                fade[low - start : high - start] += self.weights[index][low - span.start :
                                                                        high - span.start]
        self.audio[name][start:stop] += audio[: stop - start].numpy() * fade


class _Generator:
    """Runs the windows of one request through encode, sample and decode."""

    def __init__(self, models: SAGANetModels, request: SoundtrackRequest, segment: Segment,
                 plan: WindowPlan, options: SamplingOptions, seed: int,
                 progress: ProgressFn, clip_features: ClipFeatures | None,
                 cancel: CancelToken | None, cache: FeatureCache | None) -> None:
        self.models, self.request, self.plan = models, request, plan
        self.segment, self.options, self.progress = segment, options, progress
        self.cancel = cancel
        self.clip_features = clip_features
        self.cache, self.video = cache, None
        if cache is not None:
            cache.bind(models)
            self.video = video_key(request.video)
        self.objects = list(request.objects)
        self.hidden: list[set[int]] = [set() for _ in self.objects]
        self.noise = self._noise(seed)
        self.text = ([self._text(o) for o in self.objects] if clip_features is None
                     else [self._stored_text(k) for k in range(len(self.objects))])
        self.images = (WindowImageEncoder(models.clip_encoder, options.clip_chunk_size, cache,
                                          self.video)
                       if clip_features is None and not request.mask_away_clip else None)
        # Network evaluations, for progress: every window's steps, or one joint run.
        runs = 1 if request.join == "joint" else len(plan.windows)
        self.steps_total = runs * options.num_steps
        self.steps_done = 0

    def _noise(self, seed: int) -> list[torch.Tensor]:
        """Per object, ``(1, N_segment, C)`` noise of the whole segment; windows are cut from
        it, so windows share their overlap's noise. Object ``k`` draws from ``seed + k``: one
        object alone gets exactly what a single clip with ``seed`` would."""
        net = self.models.network
        noise = []
        for k in range(len(self.objects)):
            generator = torch.Generator(device=self.models.device).manual_seed(seed + k)
            noise.append(torch.randn((1, self.plan.num_latents, net.config.latent_dim),
                                     generator=generator, device=self.models.device,
                                     dtype=self.models.dtype))
        return noise

    @torch.inference_mode()
    def _text(self, obj: SoundObject) -> tuple[torch.Tensor, torch.Tensor]:
        """The object's prompt and negative prompt features, ``(1, 77, text_dim)`` each; no
        prompt is the network's stored empty prompt (no text condition)."""
        clip = self.models.clip_encoder
        if clip is None:
            raise ValueError("these models were loaded without CLIP")
        positive = (self.models.network.get_empty_string_sequence(1) if obj.prompt is None
                    else clip.encode_text([obj.prompt]))
        return positive, clip.encode_text([self.request.negative_prompt(obj)])

    def _stored_text(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`_text` from the features CLIP computed before the other models loaded."""
        features = self.clip_features
        positive = features.prompts[index]
        if positive is None:
            positive = self.models.network.get_empty_string_sequence(1)
        return positive, features.negative_prompts[index]

    def encode(self, frames: WindowFrames, window: Window) -> list[_Item]:
        """Conditions of every object visible in the window."""
        present, masks = visible_objects(self.request, self.segment, self.plan, window)
        for k in set(range(len(self.objects))) - set(present):
            self.hidden[k].add(window.index)
        if not present:
            return []
        count = len(present)
        clip_features = None
        if self.clip_features is not None and not self.request.mask_away_clip:
            clip_features = self.clip_features.images[window.index].expand(count, -1, -1)
        elif self.images is not None:
            clip_features = self.images(frames).expand(count, -1, -1)
        batch = GenerationBatch(
            sync_frames=frames.sync_frames[None].expand(count, -1, -1, -1, -1),
            masks=torch.stack(masks).float().div_(255),
            clip_features=clip_features, sync_features=self._sync_features(frames, masks),
            text_features=torch.cat([self.text[k][0] for k in present]),
            negative_text_features=torch.cat([self.text[k][1] for k in present]))
        conditions, empty = encode_conditions(self.models, batch, self.options)
        return [_Item(k, window.index, _select(conditions, i), _select(empty, i))
                for i, k in enumerate(present)]

    def _sync_features(self, frames: WindowFrames,
                       masks: list[torch.Tensor]) -> torch.Tensor | None:
        """The Synchformer features of the window for each of ``masks`` (its objects'), those
        of earlier generations taken from the cache and the others computed and kept; None
        without a cache (then they are computed with the rest of the conditions)."""
        if self.cache is None:
            return None
        keys = [("sync", self.video, frames.sync_slots, masks_digest(m)) for m in masks]
        found = [self.cache.get(key) for key in keys]
        missing = [i for i, feature in enumerate(found) if feature is None]
        if missing:
            batch = GenerationBatch(
                sync_frames=frames.sync_frames[None].expand(len(missing), -1, -1, -1, -1),
                masks=torch.stack([masks[i] for i in missing]).float().div_(255))
            computed = encode_sync_features(self.models, batch, self.options)
            for i, feature in zip(missing, computed, strict=True):
                self.cache.put(keys[i], feature)
                found[i] = feature
        return torch.stack([f.to(self.models.device) for f in found])

    def window_noise(self, item: _Item) -> torch.Tensor:
        span = self.plan.latent_span(self.plan.windows[item.window])
        return self.noise[item.obj][:, span]

    def sample(self, items: list[_Item], fuse: VelocityFusion | None) -> torch.Tensor:
        options = self.options
        if options.network_chunk_size is None:
            options = dataclasses.replace(options, network_chunk_size=NETWORK_CHUNK)
        done = self.steps_done

        def on_step(calls: int) -> None:
            self.steps_done = done + calls
            self.progress("sampling", self.steps_done, self.steps_total)

        return sample(self.models, Conditions.cat(*(i.conditions for i in items)),
                      Conditions.cat(*(i.empty for i in items)),
                      torch.cat([self.window_noise(i) for i in items]), options=options,
                      fuse=fuse, on_step=on_step, cancel=self.cancel)


def _select(conditions: Conditions, index: int) -> Conditions:
    return conditions.select(slice(index, index + 1))


def _silenced_spans(hidden: set[int], plan: WindowPlan, start: float,
                    ) -> list[tuple[float, float]]:
    """Seconds of the video where the stem is silent: covered by hidden windows only (on the
    audio's grid, where each window's sound is placed), merged."""
    sr = plan.sampling_rate

    def seconds(window: Window) -> tuple[float, float]:
        span = plan.sample_span(window)
        return span.start / sr, min(span.stop / sr, plan.duration)

    visible = [seconds(w) for w in plan.windows if w.index not in hidden]
    spans: list[tuple[float, float]] = []
    for window in plan.windows:
        if window.index not in hidden:
            continue
        low, high = seconds(window)
        for other_low, other_high in visible:
            if other_low <= low < other_high:
                low = other_high
            if other_low < high <= other_high:
                high = other_low
        if low < high:
            if spans and low <= spans[-1][1] + 1e-9:
                spans[-1] = (spans[-1][0], max(spans[-1][1], high))
            else:
                spans.append((low, high))
    return [(start + a, start + b) for a, b in spans]


@torch.inference_mode()
def write_soundtrack(models: SAGANetModels, request: SoundtrackRequest, *,
                     options: SamplingOptions | None = None, seed: int = 42,
                     overwrite: bool = False,
                     progress: ProgressFn | None = None,
                     clip_features: ClipFeatures | None = None,
                     cancel: CancelToken | None = None,
                     cache: FeatureCache | None = None) -> SoundtrackResult:
    """Generate the sound of every object of a video, for any length, and write the files.

    Args:
        models: loaded models (any duration; set to the window length here).
        request: the video, its objects, the time range and the outputs.
        options: sampler settings (default: :class:`~saganet.inference.SamplingOptions`, the
            evaluation's guidance 4.5 and 25 steps; the demo passes its own, guidance 7).
        seed: seed of the initial noise (object ``k`` uses ``seed + k``; 42 as in the demo).
        overwrite: replace existing outputs.
        progress: called as work advances (see :data:`ProgressFn`).
        clip_features: every CLIP feature of the request, computed beforehand
            (:func:`~saganet.soundtrack.encode_clip_features`, for models loaded without CLIP);
            None: ``models.clip_encoder`` computes them window by window.
        cancel: stops the work at its next check once cancelled (each progress report:
            before each window's features, decoded chunk and file; and before every network
            evaluation), leaving no file behind.
        cache: CLIP and Synchformer features kept from earlier calls (see
            :mod:`saganet.soundtrack.feature_cache`): those of this video and these masks are
            taken from it, the others computed and added. The audio is the same either way.

    Raises:
        UserInputError: bad inputs (checked before any decoding: also a seed that is no
            integer) or existing outputs.
        ValueError: ``clip_features`` computed for other windows.
        CancelledError: ``cancel`` was cancelled before the outputs were in place.
    """
    if cancel is not None:
        cancel.check()
    progress = checked(progress or (lambda stage, done, total: None), cancel)
    options = checked_options(options)
    seed = check_seed(seed, len(request.objects))
    outputs = request.outputs()
    check_outputs(outputs, overwrite, request.input_files())
    segment = resolve_segment(request)
    if request.original_sound and request.write_video and not segment.video_info.has_audio:
        log.warning("%s has no sound of its own: the MP4 gets no %r track", request.video,
                    ORIGINAL_SOUND_TITLE)
    plan = plan_soundtrack(request, segment, models.training_sequence,
                           models.codec.samples_per_latent)
    if clip_features is not None:
        clip_features.check_plan(segment, plan)
    models.set_duration(plan.window_duration)
    log.info("%s: %.2f s from %.2f s in %d window(s) of %.2f s, %d object(s), %s", request.video,
             segment.duration, segment.start, len(plan.windows), plan.window_duration,
             len(request.objects), request.join if len(plan.windows) > 1 else "one window")
    names = [o.name for o in request.objects]
    record = settings_record(
        request, models, start=segment.start, duration=segment.duration, options=options,
        seed=seed, sample_rate=request.sample_rate or plan.sampling_rate,
    ) if request.record_settings else None
    with _output_folder(Path(request.output_dir)) as folder:
        # What runs killed outright (SIGKILL, power loss) left here; see saganet.leftovers.
        remove_dead(folder)
        with owned_folder(folder, f".{name_part(request.name)}.work-") as work:
            runner = _Generator(models, request, segment, plan, options, seed, progress,
                                clip_features, cancel, cache)
            stems = _Stems(work, names, plan, equal_power=request.join == "crossfade")
            with timed("generate"):
                _run(runner, stems)
            silenced = {name: _silenced_spans(runner.hidden[k], plan, segment.start)
                        for k, name in enumerate(names) if runner.hidden[k]}
            with timed("write"):
                level = _write_outputs(request, outputs, segment, stems, work, overwrite,
                                       progress, record)
    return SoundtrackResult(outputs, segment, plan, silenced, level)


def check_seed(seed: int, objects: int, name: str = "seed") -> int:
    """``seed`` as an int, if every object's seed (``seed + k``) is one a torch generator
    takes; ``name`` is what the error calls it (a command's flag)."""
    if not isinstance(seed, Integral) or isinstance(seed, bool):
        raise UserInputError(f"{name} must be an integer, got {seed!r}")
    if not -(2**63) <= seed <= 2**63 - objects:
        # A seed of 10**300 (typed as 1e300 in the app) would be 301 digits in the message.
        shown = f"{seed:.3e}" if abs(seed) >= 10**20 else str(seed)
        raise UserInputError(f"{name} must be from -2^63 to 2^63 - {objects}, got {shown}")
    return int(seed)


@contextmanager
def _output_folder(folder: Path) -> Iterator[Path]:
    """The output folder, created if needed and removed again (with the folders created for
    it) when the block fails and leaves it empty."""
    created = _make_output_folder(folder)
    try:
        yield folder
    except BaseException:
        _remove_empty(created)
        raise


def check_output_folder(folder: Path) -> None:
    """Create the output folder as :func:`write_soundtrack` will, and remove what was made:
    a folder that cannot be created (e.g. under ``/proc``, which root may write, yet holds
    none) is found only by trying, and better before the slow work than after it.

    Raises:
        UserInputError: the folder cannot be created.
    """
    _remove_empty(_make_output_folder(folder))


def _make_output_folder(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; returns those created, the deepest first.

    Raises:
        UserInputError: it cannot be created (whatever was made on the way is removed).
    """
    existing = nearest_existing(folder)
    if not os.path.isdir(existing):
        # mkdir would only say "File exists" or "Not a directory", naming neither.
        raise UserInputError(f"cannot create the output folder: {existing} is not a folder",
                             folder)
    created = [folder, *folder.parents]
    created = created[:created.index(existing)]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        _remove_empty(created)
        raise UserInputError(f"cannot create the output folder: {err.strerror}",
                             folder) from None
    return created


def _remove_empty(created: list[Path]) -> None:
    """Remove the folders made for the output folder (the deepest first) while they are
    empty; a failed ``mkdir`` may have made only the outer ones."""
    for path in created:
        if not path.is_dir():
            continue
        if any(path.iterdir()):
            break
        path.rmdir()


def _run(runner: _Generator, stems: _Stems) -> None:
    """Encode, sample and decode every window (jointly or one by one)."""
    plan, request = runner.plan, runner.request
    starts = [window_start(runner.segment, w) for w in plan.windows]
    joint = request.join == "joint" and len(plan.windows) > 1
    items: list[_Item] = []
    # Reported before the first window too: its features take longest (CLIP).
    runner.progress("features", 0, len(plan.windows))
    for frames in read_windows(request.video, starts, plan.window_duration):
        window = plan.windows[frames.index]
        window_items = runner.encode(frames, window)
        runner.progress("features", frames.index + 1, len(plan.windows))
        if joint:
            items.extend(window_items)
        elif window_items:
            _decode_into(runner, stems, window_items, runner.sample(window_items, None))
    if joint and items:
        # Object-major order: each object's windows form one run for the fusion.
        items.sort(key=lambda i: (i.obj, i.window))
        groups = [[i.window for i in items if i.obj == k] for k in range(len(runner.objects))]
        fusion = VelocityFusion(plan, [g for g in groups if g])
        _decode_joint(runner, stems, items, runner.sample(items, fusion))


def _decode_joint(runner: _Generator, stems: _Stems, items: list[_Item],
                  latents: torch.Tensor) -> None:
    """Decode jointly sampled windows, which hold the same latents where they overlap, as one
    signal per run of an object's consecutive windows: each window's latents become mel
    frames (the VAE decoder, a small share of decoding), the frames are joined on the
    segment's mel grid with the equal-amplitude weights, and the vocoder (nearly all of
    decoding) runs over the run once, so overlaps are vocoded once instead of once per window
    (a 6 s clip in two 5 s windows vocodes about 6.5 s, not 10).

    The run goes through the vocoder in pieces that each fit one of its passes, read with its
    receptive field of context on both sides (the audio of the whole run in one pass, up to
    float rounding); a window's mel frames are decoded when the first piece needs them and
    dropped after the last, so memory does not grow with the length."""
    plan, codec = runner.plan, runner.models.codec
    vocoder, hop = codec.vocoder, codec.hop_length
    per_latent = codec.samples_per_latent // hop
    window_frames = plan.window_latents * per_latent
    runs: list[list[tuple[int, int]]] = []  # per run: (window index, latents row)
    for row, item in enumerate(items):  # object-major, windows in order
        last = runs[-1][-1] if runs else None
        if last is not None and items[last[1]].obj == item.obj and last[0] == item.window - 1:
            runs[-1].append((item.window, row))
        else:
            runs.append([(item.window, row)])
    lengths = [(plan.windows[run[-1][0]].latent_offset - plan.windows[run[0][0]].latent_offset)
               * per_latent + window_frames for run in runs]
    context = vocoder.receptive_field
    total, done = sum(lengths), 0
    for run, length in zip(runs, lengths, strict=True):
        windows = [index for index, _ in run]
        present = [i in windows for i in range(len(plan.windows))]
        weights = join_weights(plan, equal_power=False, per_latent=per_latent, present=present)
        origin = plan.windows[windows[0]].latent_offset * per_latent
        starts = {index: plan.windows[index].latent_offset * per_latent - origin
                  for index in windows}
        decoded: dict[int, torch.Tensor] = {}  # weighted mel frames of the windows in reach

        def joined(first: int, last: int, run: list[tuple[int, int]] = run,
                   weights: list[torch.Tensor] = weights, starts: dict[int, int] = starts,
                   decoded: dict[int, torch.Tensor] = decoded) -> torch.Tensor:
            mel = torch.zeros(1, codec.config.mel.num_mels, last - first,
                              dtype=torch.float32, device=latents.device)
            for index, row in run:
                low, high = max(starts[index], first), min(starts[index] + window_frames, last)
                if low >= high:
                    continue
                if index not in decoded:
                    decoded[index] = codec.decode_mel(latents[row : row + 1]).float() * \
                        weights[index].to(mel.device, torch.float32)
                mel[..., low - first : high - first] += decoded[index][
                    ..., low - starts[index] : high - starts[index]]
            return mel

        # Pieces that with their context fill one vocoder pass (no chunking inside it).
        size = length if vocoder.chunk_frames is None else max(1, vocoder.chunk_frames
                                                                - 2 * context)
        name = runner.objects[items[run[0][1]].obj].name
        for start in range(0, length, size):
            stop = min(start + size, length)
            first, last = max(0, start - context), min(length, stop + context)
            audio = codec.vocode(joined(first, last)).float().clamp(-1, 1).cpu()
            stems.add_run(name, windows, (origin + start) * hop,
                          audio[0, 0, (start - first) * hop : (stop - first) * hop])
            for index in [i for i in decoded if starts[i] + window_frames <= stop - context]:
                del decoded[index]  # no later piece reaches it
            runner.progress("decoding", done + stop, total)
        done += length

def _decode_into(runner: _Generator, stems: _Stems, items: list[_Item],
                 latents: torch.Tensor) -> None:
    """Decode latents ``(B, N, C)`` and add them to the stems, as many clips at a time as one
    window has objects: the vocoder's activations (tens of MB per clip and layer at 44.1 kHz)
    are the largest of any stage, so decoding more at once would make the joint path's peak
    memory grow with the number of windows, up to the chunk size."""
    chunk = max(1, len(runner.objects))
    for i in range(0, len(items), chunk):
        audio = decode(runner.models, latents[i : i + chunk])  # (b, 1, L)
        for item, waveform in zip(items[i : i + chunk], audio, strict=True):
            stems.add(runner.objects[item.obj].name, runner.plan.windows[item.window],
                      waveform[0])
        runner.progress("decoding", min(i + chunk, len(items)), len(items))


def _write_outputs(request: SoundtrackRequest, outputs: SoundtrackOutputs, segment: Segment,
                   stems: _Stems, work: Path, overwrite: bool,
                   progress: ProgressFn, record: dict | None) -> MixLevel | None:
    """The sound files and the MP4, each written in the work folder and renamed into place only
    when all are complete (a failure or Ctrl-C while writing leaves none of them); the mix's
    file last (it marks a finished job). Each carries ``record`` (the settings) if given."""

    def tags(name: str | None = None) -> dict[str, str] | None:
        return None if record is None else settings_tags(record, name)

    staged = {path: work / f"output{k}{path.suffix}" for k, path in enumerate(outputs.all())}
    names = list(stems.audio)
    mix, level = _mix(request, segment, stems, work)
    # The files' rate: the model's, or the one asked for (the mix levelled before, so that
    # a stem and its share of the mix stay the same sound at any rate).
    model_rate = stems.plan.sampling_rate
    sr = request.sample_rate or model_rate
    sounds = {n: _at_rate(stems.audio[n], model_rate, sr, work / f"stem{k}_{sr}.npy")
              for k, n in enumerate(names) if n in outputs.stems}
    mix = _at_rate(mix, model_rate, sr, work / f"mix_{sr}.npy")
    total = len(outputs.all())
    done = 0
    if outputs.video is not None:
        tracks = [AudioTrack(mix, "mix" if len(names) > 1 else names[0])]
        tracks += [AudioTrack(sounds[n], n) for n in outputs.stems]
        if request.original_sound:
            original = np.lib.format.open_memmap(
                work / "original.npy", mode="w+", dtype=np.float32,
                shape=(resampled_length(stems.length, model_rate, sr),))
            if read_video_sound(request.video, segment.start, original, sr):
                tracks.append(AudioTrack(original, ORIGINAL_SOUND_TITLE))
        overlays = [Overlay(_Shifted(o.masks, segment.start), OVERLAY_COLORS[k % len(
            OVERLAY_COLORS)]) for k, o in enumerate(request.objects)] if request.mask_overlay \
            else []
        write_mp4(request.video, tracks, sr, staged[outputs.video], segment.duration,
                  start=segment.start, overlays=overlays, tags=tags())
        done += 1
        progress("writing", done, total)
    # WAV files are Broadcast WAVs placed at their first sample's time in the video.
    at = round(segment.start * sr)
    for name, path in outputs.stems.items():
        write_audio(staged[path], sounds[name], sr, tags=tags(name), time_reference=at)
        done += 1
        progress("writing", done, total)
    write_audio(staged[outputs.mix], mix, sr, tags=tags(), time_reference=at)
    # Reported before the renames: the work can still stop here, and not after them.
    progress("writing", total, total)
    check_outputs(outputs, overwrite)  # nothing appeared meanwhile that may not be replaced
    for path, written in staged.items():
        os.replace(written, path)
    return level


def _at_rate(audio: np.ndarray, rate: int, wanted: int, path: Path) -> np.ndarray:
    """``audio`` at ``wanted`` Hz: itself, or resampled into a file of the work folder."""
    if wanted == rate:
        return audio
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(
        *audio.shape[:-1], resampled_length(audio.shape[-1], rate, wanted)))
    resample_into(audio, rate, wanted, out)
    return out


def _mix(request: SoundtrackRequest, segment: Segment, stems: _Stems,
         work: Path) -> tuple[np.ndarray, MixLevel | None]:
    """The mix and its level: a lone object's stem as it is (mono, nothing levelled), else
    the levelled sum in a file of the work folder, stereo with ``request.pan``."""
    names = list(stems.audio)
    pans = None
    if request.pan:
        pans = [Pan(mask_positions(o.masks, segment.start, segment.duration),
                    stems.plan.sampling_rate) for o in request.objects]
    elif len(names) == 1:
        return stems.audio[names[0]], None
    channels = (2,) if pans is not None else ()
    mix = np.lib.format.open_memmap(work / "mix.npy", mode="w+", dtype=np.float32,
                                    shape=(*channels, stems.length))
    return mix, level_mix([stems.audio[n] for n in names], mix, pans)


class _Shifted:
    """Masks read relative to a later start (the written video begins at the segment)."""

    def __init__(self, masks: MaskSource, offset: float) -> None:
        self.masks, self.offset = masks, offset

    def read(self, start: float = 0.0, end: float | None = None) -> torch.Tensor:
        return self.masks.read(start + self.offset, None if end is None else end + self.offset)

