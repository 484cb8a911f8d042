"""What to generate for a video: its sounding objects, the time range, and where results go.

A :class:`SoundtrackRequest` names a video and one or more :class:`SoundObject` (each with its
masks, prompt and negative prompt). Outputs go into one folder under one stem:

* one object: ``<stem>.flac`` (its sound) and ``<stem>.mp4``;
* several objects: ``<stem>_<object>.flac`` per object, ``<stem>.flac`` (the mix) and
  ``<stem>.mp4`` holding the mix as its default sound track plus one track per object, titled
  with the object's name;
* on request, the ``.mp4`` also carries the video's own sound as its last track, to compare,
  and the mix is stereo, each object panned to where it is in the frame.

Every file records the settings it was generated with (:mod:`saganet.soundtrack.settings`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from saganet.errors import UserInputError, check_seconds, check_time_range
from saganet.fileio import check_object_name, name_clash
from saganet.media.masks import MaskSource, MaskVideo
from saganet.soundtrack.join import JOIN_METHODS

# The title of the MP4 track with the video's own sound. Object names have no spaces, so no
# object's track can be called this.
ORIGINAL_SOUND_TITLE = "original sound"
# The sound files' types (their suffixes): saganet.media.output.AUDIO_WRITERS writes each.
AUDIO_FORMATS = ("flac", "wav")
# The sampling rates the files may be written at (Hz): those of AAC, the MP4's codec.
OUTPUT_RATES = (16000, 22050, 24000, 32000, 44100, 48000, 88200, 96000)


@dataclass(frozen=True)
class SoundObject:
    """One object to sonify.

    Args:
        name: short name, used in file names and track titles (letters, digits and ``_ . + -``
            only, starting with a letter, digit or ``_``: no spaces).
        masks: where its masks come from: a mask video (its path, or a
            :class:`~saganet.media.masks.MaskVideo`), a folder of mask images
            (:class:`~saganet.media.mask_frames.MaskFrames`), or tracking.
        prompt: text prompt (None: no text condition).
        negative_prompt: text of the unconditional branch (None: ``""``, or the other objects'
            prompts with :attr:`SoundtrackRequest.negatives_from_others`).
    """

    name: str
    masks: MaskSource | str | os.PathLike[str]
    prompt: str | None = None
    negative_prompt: str | None = None

    def __post_init__(self) -> None:
        # Types first: a prompt given as a list failed later as an AttributeError/TypeError.
        if not isinstance(self.name, str):
            raise UserInputError(f"object name must be a string, got {self.name!r}")
        for field_name in ("prompt", "negative_prompt"):
            value = getattr(self, field_name)
            if value is not None and not isinstance(value, str):
                raise UserInputError(f"object {self.name!r}: {field_name} must be a string or "
                                     f"None, got {type(value).__name__}")
        # A path is what a user has at hand: it names a mask video (frozen: set directly).
        if isinstance(self.masks, (str, os.PathLike)):
            if Path(self.masks).is_dir():
                # Its images are timed by the video's frame rate, which is not known here.
                raise UserInputError(f"object {self.name!r}: a folder of mask images is given "
                                     "as saganet.mask_source(folder, video) or "
                                     "saganet.MaskFrames(folder, fps)", self.masks)
            object.__setattr__(self, "masks", MaskVideo(self.masks))
        elif not callable(getattr(self.masks, "read", None)):
            # Not isinstance(MaskSource): that evaluates the properties (a mask video's
            # duration opens the file) long before the inputs are checked in order.
            raise UserInputError(f"object {self.name!r}: masks must be a mask video's path or a "
                                 f"saganet.media.masks.MaskSource, got "
                                 f"{type(self.masks).__name__}")


@dataclass(frozen=True)
class SoundtrackOutputs:
    """The files a request writes.

    Args:
        mix: ``<stem>.flac`` (or ``.wav``): the object's sound, or the mix of several.
        stems: object name -> ``<stem>_<name>.flac`` (or ``.wav``; empty for one object).
        video: ``<stem>.mp4``, or None when not written.
    """

    mix: Path
    stems: dict[str, Path] = field(default_factory=dict)
    video: Path | None = None

    @classmethod
    def named(cls, folder: Path, stem: str, names: Sequence[str],
              write_video: bool = True, audio_format: str = "flac") -> SoundtrackOutputs:
        """The files of a request with objects called ``names``: known before their masks
        are (a caller that tracks them first checks these names before the tracking).

        Args:
            folder: the output folder.
            stem: the file name stem.
            names: the objects' names, in order (one object's sound is the mix: no stem).
            write_video: the ``.mp4`` is written too.
            audio_format: ``flac`` or ``wav``, the sound files' type.
        """
        stems = {} if len(names) == 1 else {name: folder / f"{stem}_{name}.{audio_format}"
                                            for name in names}
        video = folder / f"{stem}.mp4" if write_video else None
        return cls(folder / f"{stem}.{audio_format}", stems, video)

    def all(self) -> list[Path]:
        """Every file, the mix's sound file last (it marks a finished job)."""
        files = [] if self.video is None else [self.video]
        return [*files, *self.stems.values(), self.mix]


@dataclass(frozen=True)
class SoundtrackRequest:
    """A video, its sounding objects, and what to write.

    Args:
        video: the source video.
        objects: the objects to sonify (at least one; names unique).
        output_dir: folder of the outputs.
        stem: file name stem of the outputs (default: the video's).
        start: seconds of the video to skip.
        duration: seconds to generate from ``start`` (None: to the end of the video); a
            shorter video shortens it, with a warning. Times may be any real numbers (NumPy
            scalars too).
        join: how windows of a video longer than one window are joined: ``"joint"`` (joint
            sampling with fused overlaps) or ``"crossfade"`` (independent windows, equal-power
            crossfade); see :mod:`saganet.soundtrack.join`.
        overlap: least overlap of neighbouring windows, in seconds.
        silence_hidden: an object whose masks are empty for a whole window is silent there
            (with short fades) instead of being generated from its empty masks.
        negatives_from_others: an object without a negative prompt takes the other objects'
            prompts as its negative prompt.
        mask_away_clip: drop the CLIP frame features.
        mask_overlay: tint the objects in the ``.mp4`` (re-encodes the video).
        write_video: write the ``.mp4`` (otherwise only the sound files).
        original_sound: the ``.mp4`` also carries the video's own sound, mono, as its last
            track, titled :data:`ORIGINAL_SOUND_TITLE` (a video without sound gets none, with a
            warning).
        pan: the mix is stereo, each object placed left to right where its masks are in the
            frame (:mod:`saganet.soundtrack.pan`); the stems stay mono.
        audio_format: the sound files' type: ``flac`` (24-bit FLAC) or ``wav`` (24-bit PCM
            WAV, for tools that do not read FLAC).
        sample_rate: the sampling rate of every file written, one of :data:`OUTPUT_RATES`
            (None: the model's, 44.1 kHz); the finished sound is resampled to it
            (:mod:`saganet.media.resample`).
        record_settings: every file written records how it was generated, in its ``comment``
            tag (:mod:`saganet.soundtrack.settings`).
    """

    video: Path | str
    objects: tuple[SoundObject, ...]
    output_dir: Path | str
    stem: str | None = None
    start: float = 0.0
    duration: float | None = None
    join: str = "joint"
    overlap: float = 1.0
    silence_hidden: bool = True
    negatives_from_others: bool = False
    mask_away_clip: bool = False
    mask_overlay: bool = False
    write_video: bool = True
    original_sound: bool = False
    pan: bool = False
    audio_format: str = "flac"
    sample_rate: int | None = None
    record_settings: bool = True

    def __post_init__(self) -> None:
        # Paths may be given as strings; the fields always hold Paths (frozen: set directly).
        object.__setattr__(self, "video", Path(self.video))
        object.__setattr__(self, "output_dir", Path(self.output_dir))
        if isinstance(self.objects, SoundObject):
            raise UserInputError("objects must be a tuple or list of SoundObjects: "
                                 "objects=(SoundObject(...),)")
        object.__setattr__(self, "objects", tuple(self.objects))
        for obj in self.objects:
            if not isinstance(obj, SoundObject):
                raise UserInputError(f"objects must be SoundObjects, got "
                                     f"{type(obj).__name__}")
        if self.stem is not None and (
                not isinstance(self.stem, str) or self.stem in (".", "..")
                or any(sep and sep in self.stem for sep in ("/", os.sep, os.altsep, "\0"))):
            # A stem is a file name in output_dir: a path in it failed with FileNotFoundError
            # after the work had started, or wrote outside output_dir.
            raise UserInputError(f"stem {self.stem!r} must be a file name without folders; "
                                 "put the folder in output_dir")
        if not self.objects:
            raise UserInputError("no object to sonify: give at least one mask or prompt")
        names = [o.name for o in self.objects]
        for name in names:
            check_object_name(name)
        # Without case: the names become file names.
        clash = name_clash(names)
        if clash:
            raise UserInputError(f"two objects are called {clash}; give each a different name "
                                 "(case aside)")
        for obj in self.objects:
            if obj.prompt is not None and not obj.prompt.strip():
                raise UserInputError(f"object {obj.name!r}: the prompt is empty; leave it out "
                                     "for no text condition")
        if self.negatives_from_others and len(self.objects) > 1:
            lacking = [o.name for o in self.objects if o.prompt is None]
            if lacking:
                raise UserInputError(f"object {lacking[0]!r} has no prompt: the other objects "
                                     "take it as their negative prompt "
                                     "(--negatives_from_others; negatives_from_others=True "
                                     "from Python)")
        if self.audio_format not in AUDIO_FORMATS:
            raise UserInputError(f"unknown audio format {self.audio_format!r}; choose one of "
                                 f"{', '.join(AUDIO_FORMATS)}")
        if self.sample_rate is not None and (isinstance(self.sample_rate, bool)
                                             or self.sample_rate not in OUTPUT_RATES):
            raise UserInputError(f"sample rate {self.sample_rate!r} is not one the files can "
                                 f"have; choose one of {', '.join(map(str, OUTPUT_RATES))} Hz")
        if self.sample_rate is not None:
            # A plain int (not a NumPy one): the settings record holds it as JSON.
            object.__setattr__(self, "sample_rate", int(self.sample_rate))
        if self.join not in JOIN_METHODS:
            raise UserInputError(f"unknown join method {self.join!r}; choose one of "
                                 f"{', '.join(JOIN_METHODS)}")
        start, duration = check_time_range(self.start, duration=self.duration)
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "duration", duration)
        object.__setattr__(self, "overlap", check_seconds(self.overlap, "overlap"))

    @property
    def name(self) -> str:
        """The outputs' file name stem."""
        return self.stem or self.video.stem

    def outputs(self) -> SoundtrackOutputs:
        """Where the results go."""
        return SoundtrackOutputs.named(Path(self.output_dir), self.name,
                                       [o.name for o in self.objects], self.write_video,
                                       self.audio_format)

    def input_files(self) -> list[Path]:
        """The files the request reads: the video and the mask videos."""
        masks = [o.masks.path for o in self.objects if isinstance(o.masks, MaskVideo)]
        return [Path(self.video), *masks]

    def negative_prompt(self, obj: SoundObject) -> str:
        """The negative prompt ``obj`` is generated with."""
        if obj.negative_prompt is not None:
            return obj.negative_prompt
        if self.negatives_from_others:
            return ", ".join(o.prompt for o in self.objects if o is not obj and o.prompt)
        return ""
