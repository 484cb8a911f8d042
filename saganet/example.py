"""The demo's inputs when the user gives none: the published duet, or a clip made here.

The published example (a trumpet and violin duet from URMP with one mask video per instrument)
is downloaded into the weight cache. The ``debug`` variant needs no download at all, so its
example is made on this machine: two shapes moving over a textured background, with a
lossless mask video per shape, deterministic for given sizes. It is written once into
``<cache>/example/synthetic/`` and reused.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from saganet import weights
from saganet.fileio import atomic_output, exclusive, ffmpeg_name
from saganet.media.output import write_mask_video

DUET_VIDEO = "Vid_09_Jesus_tpt_vn_159092_164092.mp4"
DUET_MASKS = {
    "violin": "Masks_02_vn_09_Jesus_159092_164092.mp4",
    "trumpet": "Masks_01_tpt_09_Jesus_159092_164092.mp4",
}
SYNTHETIC_STEM = "synthetic_shapes"


@dataclass(frozen=True)
class ExampleClip:
    """A video with one mask video and one prompt per object.

    Args:
        video: the video file.
        masks: object name -> mask video.
        prompts: object name -> text prompt.
        default_objects: the objects the demo sonifies when none is named.
    """

    video: Path
    masks: dict[str, Path]
    prompts: dict[str, str]
    default_objects: tuple[str, ...]


@dataclass(frozen=True)
class SyntheticScene:
    """Two shapes moving over a static textured background.

    Args:
        width: frame width in pixels.
        height: frame height in pixels.
        fps: frame rate.
        duration: seconds.
        seed: seed of the background texture.
    """

    width: int = 320
    height: int = 180
    fps: int = 25
    duration: float = 5.0
    seed: int = 0

    @property
    def num_frames(self) -> int:
        return round(self.fps * self.duration)

    def _background(self) -> np.ndarray:
        rows = np.linspace(0, 1, self.height, dtype=np.float32)[:, None, None]
        cols = np.linspace(0, 1, self.width, dtype=np.float32)[None, :, None]
        gradient = 40 + 60 * rows * np.array([0.3, 0.6, 1.0]) + 40 * cols * np.array([1, 0.5, 0])
        noise = np.random.default_rng(self.seed).normal(0, 12, (self.height, self.width, 1))
        return np.clip(gradient + noise, 0, 255).astype(np.uint8)  # (H, W, 3)

    def frames(self) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
        """Per frame: the RGB image ``(H, W, 3)`` uint8 and each shape's mask ``(H, W)``."""
        background = self._background()
        yy, xx = np.mgrid[: self.height, : self.width]
        radius, side = self.height * 0.16, self.height * 0.28
        for index in range(self.num_frames):
            t = index / self.fps
            # The circle swings across the left half, the square bounces in the right half,
            # at different rates, so their masks differ in position and motion.
            cx = self.width * (0.25 + 0.15 * math.sin(2 * math.pi * 0.4 * t))
            cy = self.height * 0.5
            sx = self.width * 0.72
            sy = self.height * (0.5 + 0.25 * math.sin(2 * math.pi * 0.7 * t))
            circle = (xx - cx) ** 2 + (yy - cy) ** 2 <= radius**2
            square = (np.abs(xx - sx) <= side / 2) & (np.abs(yy - sy) <= side / 2)
            image = background.copy()
            image[circle] = (230, 60, 50)
            image[square] = (50, 90, 230)
            yield image, {"circle": circle, "square": square}


PROMPTS = {"circle": "drum", "square": "violin"}


def _write_video(path: Path, scene: SyntheticScene) -> None:
    with av.open(ffmpeg_name(path), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=Fraction(scene.fps), options={"crf": "18"})
        stream.width, stream.height, stream.pix_fmt = scene.width, scene.height, "yuv420p"
        for image, _ in scene.frames():
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(stream.encode(None))


def synthetic_example(folder: str | os.PathLike[str],
                      scene: SyntheticScene | None = None) -> ExampleClip:
    """The synthetic example under ``folder``, written first if it is not there.

    Args:
        folder: where the files live (the demo uses ``<cache>/example/synthetic``).
        scene: what to draw (default: 320x180, 25 fps, 5 s).
    """
    scene = scene or SyntheticScene()
    folder = Path(folder)
    video = folder / f"{SYNTHETIC_STEM}.mp4"
    masks = {name: folder / f"{SYNTHETIC_STEM}_{name}_mask.mp4" for name in PROMPTS}
    clip = ExampleClip(video, masks, dict(PROMPTS), tuple(PROMPTS))
    if video.exists() and all(p.exists() for p in masks.values()):
        return clip
    folder.mkdir(parents=True, exist_ok=True)
    with exclusive(folder / ".write.lock"):
        if not (video.exists() and all(p.exists() for p in masks.values())):
            for name, path in masks.items():
                write_mask_video(path, (shapes[name] for _, shapes in scene.frames()),
                                 fps=scene.fps, overwrite=True)
            # The video last: its presence marks a complete example.
            with atomic_output(video, overwrite=True, suffix=".mp4") as tmp:
                _write_video(tmp, scene)
    return clip


def example_inputs(debug: bool, weights_dir: str | os.PathLike[str] | None = None,
                   offline: bool | None = None) -> ExampleClip:
    """The demo's example: the synthetic clip for the ``debug`` variant (made here, into the
    cache), else the published duet (downloaded into the cache on first use).

    Args:
        debug: the debug variant runs (nothing may be downloaded).
        weights_dir: the cache folder (default: the user cache).
        offline: never download (the error lists what is missing).
    """
    if debug:
        return synthetic_example(weights.cache_dir(weights_dir) / "example" / "synthetic")
    files = weights.fetch_group("example", weights_dir, offline)
    return ExampleClip(files[DUET_VIDEO], {n: files[f] for n, f in DUET_MASKS.items()},
                       {n: n for n in DUET_MASKS}, ("violin",))
