"""The models behind the app, loaded once and shared by every request, and the one path from a
video and its objects to sound: track the objects, then write their soundtrack.

Tracking is :func:`saganet.segment.track_objects` and generation
:func:`saganet.soundtrack.write_soundtrack`, the functions ``demo.py`` runs: the app adds no
pipeline of its own. One request uses the models at a time (Gradio's queue already runs them
one by one; the lock keeps that true for any other caller).

A request may carry a :class:`~saganet.cancel.CancelToken`: it is checked once the models are
free, and handed to both library functions, which check it when they start (after any variant
loaded) and at every safe point. A stopped request is logged with the last progress it
reached (``generation stopped after sampling 3/25: the tab was closed``).
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from saganet import weights
from saganet.app.objects import AppObject
from saganet.app.options import GenerationOptions
from saganet.app.server_detail import server_detail
from saganet.cancel import CancelledError, CancelToken
from saganet.cli import device_and_dtype
from saganet.errors import UserInputError
from saganet.inference import SamplingOptions
from saganet.models import SAGANetModels
from saganet.pipeline import load_models, pipeline_variant, required_files
from saganet.segment.grid import GRID_FPS
from saganet.segment.models import SegmenterCache, sam2_folder, sam3_folder, tracker_for
from saganet.segment.models import required_files as tracker_files
from saganet.segment.prompts import ObjectPrompt
from saganet.segment.tracking import Tracking, track_objects
from saganet.soundtrack import (
    FeatureCache,
    SoundtrackOutputs,
    SoundtrackRequest,
    SoundtrackResult,
    check_long_enough,
    check_outputs,
    write_soundtrack,
)
from saganet.soundtrack.feature_cache import DEFAULT_MAX_BYTES

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``; stages: ``loading``, ``tracking``, ``features``,
``sampling``, ``decoding``, ``writing``, and ``downloading <file>`` while another variant's
weights download (done and total in MB; total 0 where the server does not say)."""

DOWNLOADING = "downloading"


def _no_progress(stage: str, done: int, total: int) -> None:
    """Progress reports nobody reads."""


class _LastReport:
    """Passes progress reports on and remembers the latest (for the log of a stopped job)."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.last: tuple[str, int, int] | None = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        self.last = (stage, done, total)
        self.progress(stage, done, total)

    def describe(self) -> str:
        if self.last is None:
            return "before it started"
        stage, done, total = self.last
        return f"after {stage} {done}/{total}"


# Whether this thread is inside a request already (a generation's tracking is part of it).
_in_request = threading.local()


@contextmanager
def _logged_stop(what: str, reports: _LastReport) -> Iterator[None]:
    """Log a request stopped through its token: what it was, how far it got and why (once,
    by the outermost request of the thread)."""
    if getattr(_in_request, "active", False):
        yield
        return
    _in_request.active = True
    try:
        yield
    except CancelledError as err:
        log.info("%s stopped %s: %s", what, reports.describe(), err.reason)
        raise
    finally:
        _in_request.active = False


@dataclass(frozen=True)
class ModelSettings:
    """Which models the app runs, and where (``app.py``'s model flags).

    Args:
        variant: the pipeline variant loaded at start (others load on request).
        weights_dir: weights folder (default: the user cache).
        checkpoint: a weights file of one's own for ``variant``.
        device: ``auto``, ``cpu``, ``cuda[:N]`` or ``mps``.
        full_precision: fp32 on CUDA (default there: bf16).
        cpu_bf16: bf16 on the CPU too (``--cpu_bf16``).
        offline: never download (None: ``SAGANET_OFFLINE`` / ``HF_HUB_OFFLINE``).
        segment_model: SAM 2.1 size or folder for clicks (None: ``debug`` with the ``debug``
            variant, else ``tiny``).
        text_model: a local SAM 3 folder for phrases (None: the cache's, if there).
    """

    variant: str = "saganet_small"
    weights_dir: Path | None = None
    checkpoint: Path | None = None
    device: str = "auto"
    full_precision: bool = False
    cpu_bf16: bool = False
    offline: bool | None = None
    segment_model: str | None = None
    text_model: Path | None = None

    @property
    def tracker(self) -> str:
        """The SAM 2.1 model tracking clicks and boxes."""
        return tracker_for(self.segment_model, pipeline_variant(self.variant).debug)


@dataclass
class Soundtrack:
    """What one generation made.

    Args:
        tracking: the tracking the masks came from.
        result: the files and what was done (see :class:`~saganet.soundtrack.SoundtrackResult`).
        stems: object name -> its sound file (the mix itself for a single object).
        variant: the variant that generated it.
    """

    tracking: Tracking
    result: SoundtrackResult
    stems: dict[str, Path]
    variant: str

    @property
    def duration(self) -> float:
        return self.result.segment.duration


def tracking_range(objects: Sequence[AppObject], options: GenerationOptions,
                   video_seconds: float) -> tuple[float, float]:
    """Seconds to track: the generated range, widened to the objects' clicks and boxes (a click
    before ``start`` still tells the tracker what the object is).

    Args:
        objects: the objects.
        options: the request's options.
        video_seconds: the video's length.

    Raises:
        UserInputError: the generated range starts past the end of the video or is shorter
            than one Synchformer window (found here, before minutes of tracking, rather than
            by the generation after it).
    """
    start = options.start
    duration = options.segment_duration
    if start >= video_seconds:
        raise UserInputError(f"start {start:g} s is past the end of the video "
                             f"({video_seconds:.2f} s)")
    end = video_seconds if duration is None else min(video_seconds, start + duration)
    check_long_enough(end - start, start=start)
    earliest = [t for t in (o.earliest() for o in objects) if t is not None]
    latest = [t for t in (o.latest() for o in objects) if t is not None]
    if earliest:
        start = min(start, *earliest)
    if latest:
        end = min(video_seconds, max(end, max(latest) + 1 / GRID_FPS))
    return start, end


class Engine:
    """The app's models and the work done with them.

    Args:
        settings: which models, where.
        feature_cache_bytes: most bytes of video features kept between generations (0: none).

    Raises:
        UserInputError: an unknown variant or device.
    """

    def __init__(self, settings: ModelSettings,
                 feature_cache_bytes: int = DEFAULT_MAX_BYTES) -> None:
        pipeline_variant(settings.variant)
        self.settings = settings
        self.device, self.dtype = device_and_dtype(settings)
        self.segmenters = SegmenterCache()
        # A video generated again (another prompt, seed, guidance) reuses its CLIP and
        # Synchformer features: most of a generation's time on a CPU.
        self.features = FeatureCache(feature_cache_bytes)
        self._loaded: tuple[str, SAGANetModels] | None = None
        self.lock = threading.RLock()

    @property
    def loaded_variant(self) -> str | None:
        return None if self._loaded is None else self._loaded[0]

    def models(self, variant: str | None = None) -> SAGANetModels:
        """The loaded models of ``variant`` (default: the app's), loaded on first use; loading
        another variant frees the previous one (one set of weights in memory at a time).

        Raises:
            UserInputError: an unknown variant, or weights missing offline (the loaded variant
                stays).
        """
        variant = variant or self.settings.variant
        pipeline_variant(variant)
        with self.lock:
            if self._loaded is not None and self._loaded[0] == variant:
                return self._loaded[1]
            self.fetch_variant(variant)
            return self._switch(variant)

    def _switch(self, variant: str) -> SAGANetModels:
        """Free the loaded variant and load ``variant``, whose files are in the cache
        (:meth:`fetch_variant`; call with :attr:`lock` held)."""
        if self._loaded is not None:
            log.info("unloading variant %s to load %s", self._loaded[0], variant)
            self._loaded = None
            self.features.clear()
            gc.collect()
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
        checkpoint = self.settings.checkpoint if variant == self.settings.variant else None
        models = load_models(variant, weights_dir=self.settings.weights_dir,
                             checkpoint=checkpoint, device=self.device, dtype=self.dtype,
                             offline=self.settings.offline)
        self._loaded = (variant, models)
        return models

    def fetch_variant(self, variant: str, progress: Progress = _no_progress) -> None:
        """Have the variant's files in the cache (downloaded unless offline) before the loaded
        variant is freed and before any tracking: the page's *Variant* offers every variant,
        and one whose weights were missing offline, or failed to download, unloaded the app's
        own for nothing (the next job waited to load it again), after all the tracking.

        The visitor reads which variant is missing; the files and where they go (the server's
        folders, not the visitor's business) go to the log, for whoever runs the app.

        Args:
            variant: the variant.
            progress: told which file downloads and how far (stage ``downloading <file>``).

        Raises:
            UserInputError: files of the variant missing offline, or a failed download.
        """
        checkpoint = self.settings.checkpoint if variant == self.settings.variant else None

        def downloading(name: str, received: int, expected: int | None) -> None:
            progress(f"{DOWNLOADING} {name}", received // 10**6, (expected or 0) // 10**6)

        with server_detail(log, f"variant {variant} requested but not available",
                           f"the {variant} variant is not available on this server (its "
                           "weights are missing or failed to download); pick another variant"):
            weights.resolve_all(required_files(variant, checkpoint=checkpoint),
                                self.settings.weights_dir, offline=self.settings.offline,
                                on_progress=downloading)

    def preload(self) -> None:
        """Load the app's variant and its click tracker now, so that missing weights are
        reported at start and the first visitor does not wait for loading.

        Raises:
            UserInputError: an unknown variant, or weights missing offline.
        """
        settings = self.settings
        if weights.is_offline(settings.offline):
            # Everything missing is listed at once.
            names = [*required_files(settings.variant, checkpoint=settings.checkpoint),
                     *tracker_files(settings.tracker)]
            weights.resolve_all(names, settings.weights_dir, offline=True)
        folder = sam2_folder(settings.tracker, settings.weights_dir, settings.offline)
        self.models()
        self.segmenters.sam2(folder, self.device)

    def _text_model(self, prompts: Sequence[ObjectPrompt]) -> Path | None:
        """The SAM 3 folder for the phrases among ``prompts`` (None: no phrase).

        The visitor reads which objects cannot be found by a phrase; how to get SAM 3 and
        where its files go (the server's folders, not the visitor's business) go to the log,
        for whoever runs the app.

        Raises:
            UserInputError: a phrase, and no SAM 3 on this server.
        """
        phrased = [p.name for p in prompts if p.text is not None]
        if not phrased:
            return None
        with server_detail(log, "a phrase was given but SAM 3 is not available",
                           "finding an object by a phrase is not available on this server (it "
                           f"has no SAM 3 model): click on {', '.join(phrased)} instead"):
            return sam3_folder(self.settings.text_model, self.settings.weights_dir)

    def track(self, video: Path, objects: Sequence[AppObject], start: float = 0.0,
              end: float | None = None, progress: Progress = _no_progress,
              cancel: CancelToken | None = None) -> Tracking:
        """Track the objects through ``start`` .. ``end`` seconds of the video.

        Args:
            video: the video.
            objects: its objects.
            start: first second tracked.
            end: last second tracked (None: the end of the video).
            progress: called as work advances.
            cancel: stops the tracking at its next frame.

        Raises:
            UserInputError: bad prompts (see :func:`~saganet.segment.track_objects`), a
                missing model, or an object found in no frame.
            CancelledError: ``cancel`` was cancelled.
        """
        prompts = [o.tracking_prompt() for o in objects]
        text_model = self._text_model(prompts)
        reports = _LastReport(progress)
        with _logged_stop("tracking", reports), self.lock:
            return track_objects(
                video, prompts, model=self.settings.tracker, text_model=text_model,
                weights_dir=self.settings.weights_dir, offline=self.settings.offline,
                device=str(self.device), start=start, end=end,
                on_progress=lambda done, total: reports("tracking", done, total),
                models=self.segmenters, cancel=cancel)

    def soundtrack(self, video: Path, objects: Sequence[AppObject], options: GenerationOptions,
                   output_dir: Path, track_range: tuple[float, float],
                   tracking: Tracking | None = None,
                   progress: Progress = _no_progress,
                   cancel: CancelToken | None = None) -> Soundtrack:
        """Generate the sound of every object: track them (unless given ``tracking`` of these
        objects), then write the stems, the mix and the MP4 into ``output_dir``.

        Args:
            video: the video.
            objects: its objects (names unique).
            options: time range, sampling and variant.
            output_dir: where the files go (the video's name is their stem).
            track_range: seconds to track (see :func:`tracking_range`).
            tracking: a tracking of these objects covering ``track_range``, to reuse.
            progress: called as work advances.
            cancel: stops the work at its next safe point (a tracked frame, a window's
                features, an Euler step, a decoded chunk, a file), leaving no file behind.

        Raises:
            UserInputError: bad objects or options (a name too long for a file name: before
                the tracking), a variant whose weights are missing offline or fail to
                download (before the tracking too), a failed tracking.
            CancelledError: ``cancel`` was cancelled.
        """
        check_objects(objects)
        check_output_names(video, objects, output_dir)
        variant = options.variant or self.settings.variant
        reports = _LastReport(progress)
        with _logged_stop("generation", reports), self.lock:
            if cancel is not None:
                cancel.check()
            # The files of another variant are fetched before the tracking, and loaded after
            # it (the lock keeps the loaded variant as it is meanwhile).
            switching = self.loaded_variant != variant
            if switching:
                reports("loading", 0, 1)
                self.fetch_variant(variant, reports)
            if tracking is None:
                tracking = self.track(video, objects, *track_range, progress=reports,
                                      cancel=cancel)
            if switching:
                reports("loading", 0, 1)
                models = self._switch(variant)
            else:
                models = self.models(variant)
            request = SoundtrackRequest(
                video=video,
                objects=tuple(o.sound_object(tracking.objects[o.name]) for o in objects),
                output_dir=output_dir, start=options.start,
                duration=options.segment_duration, original_sound=options.original_sound,
                pan=options.pan, audio_format=options.audio_format,
                sample_rate=options.sample_rate,
                negatives_from_others=options.negatives_from_others,
                silence_hidden=not options.keep_hidden)
            result = write_soundtrack(models, request, seed=options.seed, progress=reports,
                                      options=SamplingOptions(cfg_strength=options.cfg_strength,
                                                              num_steps=options.num_steps),
                                      cancel=cancel, cache=self.features)
        stems = dict(result.outputs.stems) or {objects[0].name: result.outputs.mix}
        return Soundtrack(tracking, result, stems, variant)


def check_objects(objects: Sequence[AppObject]) -> None:
    """Every object can be tracked (a click, a box or a phrase).

    Raises:
        UserInputError: an object without anything to track it by.
    """
    for obj in objects:
        if not obj.pointed:
            raise UserInputError(f"object {obj.name!r} has no click yet: click on it in the "
                                 "frame (or give a box or a phrase)")


def check_output_names(video: Path, objects: Sequence[AppObject], output_dir: Path) -> None:
    """The files a generation of ``objects`` writes into ``output_dir`` can be made: the check
    :func:`~saganet.soundtrack.write_soundtrack` makes before its work, made before the
    tracking that comes first here (an object's name is part of its stem's file name, and one
    too long for the file system was refused only after all the tracking).

    Args:
        video: the video (its name is the files' stem).
        objects: its objects.
        output_dir: where the files go.

    Raises:
        UserInputError: a file name the file system does not take, or an output already there.
    """
    outputs = SoundtrackOutputs.named(output_dir, video.stem, [o.name for o in objects])
    check_outputs(outputs, overwrite=False, inputs=[video])
