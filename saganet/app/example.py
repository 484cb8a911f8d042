"""The "pick the example" button: the demo's example video with its objects already clicked.

The example (:func:`saganet.example.example_inputs`: the published duet, or the synthetic
two-shape clip for the ``debug`` variant) comes with a mask video per object. Each object
starts with one click on the first frame that shows it, at the point deepest inside its mask,
so the example tracks and generates at once and shows where to click.
"""

from __future__ import annotations

import logging
import os

import numpy as np
from scipy import ndimage

from saganet.app.objects import AppObject, Click
from saganet.app.server_detail import server_detail
from saganet.example import ExampleClip, example_inputs
from saganet.media.video import SYNC_FPS, probe_video, read_frames

log = logging.getLogger(__name__)

# Seconds of a mask video searched for the object's first appearance.
_SEARCH_SECONDS = 5.0


def deepest_point(mask: np.ndarray) -> tuple[float, float]:
    """The ``(x, y)`` pixel centre deepest inside a non-empty boolean mask ``(H, W)`` (farthest
    from its edge: inside even for a ring or a crescent, unlike the centroid)."""
    if not mask.any():
        raise ValueError("the mask is empty")
    depth = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(depth)), depth.shape)
    return float(x) + 0.5, float(y) + 0.5


def first_click(mask_video: str | os.PathLike[str]) -> Click | None:
    """A click on the first 25 fps frame of a mask video that shows the object (None if it
    shows nothing in the searched seconds)."""
    info = probe_video(mask_video)
    masks = read_frames(mask_video, SYNC_FPS, (info.height, info.width), gray=True,
                        end=_SEARCH_SECONDS)  # (T, 1, H, W)
    for slot, mask in enumerate(masks[:, 0].numpy() > 127):
        if mask.any():
            x, y = deepest_point(mask)
            return Click(x, y, slot / SYNC_FPS)
    return None


def example_objects(example: ExampleClip) -> list[AppObject]:
    """One object per mask of the example, named and prompted as the example says, each with
    a click on its first appearance."""
    objects = []
    for name, mask in example.masks.items():
        click = first_click(mask)
        objects.append(AppObject(name, prompt=example.prompts.get(name, name),
                                 clicks=[click] if click is not None else []))
    return objects


def load_example(debug: bool, weights_dir: str | os.PathLike[str] | None,
                 offline: bool | None) -> tuple[ExampleClip, list[AppObject]]:
    """The example clip (made or downloaded into the cache on first use) and its objects.

    The visitor reads that the example is missing; the files and where they go (the server's
    folders, not the visitor's business) go to the log, for whoever runs the app.

    Args:
        debug: the ``debug`` variant runs (the synthetic clip: nothing is downloaded).
        weights_dir: the cache folder.
        offline: never download.

    Raises:
        UserInputError: the duet's files missing offline, or a failed download.
    """
    with server_detail(log, "the example was requested but is not available",
                       "the duet example is not available on this server (its files are "
                       "missing or failed to download); upload a video instead"):
        example = example_inputs(debug, weights_dir, offline)
    return example, example_objects(example)
