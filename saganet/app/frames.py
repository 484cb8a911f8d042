"""The frame the page shows: a slot of the video, scaled down, with clicks and tracked masks.

The page shows the video's frames smaller than they are (a 1080p frame would not fit), and a
click on a Gradio image reports pixels of the image the page was sent. :class:`FrameView` keeps
the scale, so a click maps back to pixels of the original upright frame — what the tracker
expects — and the clicks already made are drawn where they were made.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from saganet.app.objects import AppObject
from saganet.media.output import OVERLAY_COLORS
from saganet.segment.grid import VideoGrid
from saganet.segment.tracking import Tracking

# Longest side of a shown frame: large enough to click precisely, small enough to send fast.
MAX_SHOWN_SIDE = 1280
# Tracked masks are tinted this much in the shown frame (as in the tracking preview).
MASK_ALPHA = 0.45


def object_color(index: int) -> tuple[int, int, int]:
    """The colour of the ``index``-th object (the preview's and the MP4 overlay's)."""
    red, green, blue = OVERLAY_COLORS[index % len(OVERLAY_COLORS)]
    return red, green, blue


@dataclass(frozen=True)
class FrameView:
    """How one frame is shown: its slot and the shown size against the video's.

    Args:
        slot: the 25 fps grid slot of the frame.
        shown_width: width of the image sent to the page.
        shown_height: height of the image sent to the page.
        width: width of the video's upright frames.
        height: height of the video's upright frames.
    """

    slot: int
    shown_width: int
    shown_height: int
    width: int
    height: int

    def to_video(self, x: float, y: float) -> tuple[float, float]:
        """Pixels of the shown image -> pixels of the video's frame (clamped to the frame)."""
        vx = x * self.width / self.shown_width
        vy = y * self.height / self.shown_height
        return min(max(vx, 0.0), float(self.width)), min(max(vy, 0.0), float(self.height))

    def to_shown(self, x: float, y: float) -> tuple[float, float]:
        """Pixels of the video's frame -> pixels of the shown image."""
        return x * self.shown_width / self.width, y * self.shown_height / self.height


def shown_size(width: int, height: int, max_side: int = MAX_SHOWN_SIDE) -> tuple[int, int]:
    """The size a ``width`` x ``height`` frame is shown at (never enlarged).

    Args:
        width: frame width.
        height: frame height.
        max_side: longest side shown.
    """
    scale = min(1.0, max_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def read_slot(grid: VideoGrid, slot: int) -> np.ndarray:
    """The upright ``(H, W, 3)`` RGB frame of a grid slot (one seek and a short decode)."""
    for _, frame in grid.forward(slot, slot + 1):
        return frame
    raise IndexError(f"slot {slot} is past the end of {grid.path}")


def render_frame(grid: VideoGrid, slot: int, objects: Sequence[AppObject],
                 tracking: Tracking | None = None, current: int | None = None,
                 max_side: int = MAX_SHOWN_SIDE,
                 tracked_names: Sequence[str | None] | None = None,
                 ) -> tuple[np.ndarray, FrameView]:
    """The frame of ``slot`` as the page shows it: scaled down, each tracked object tinted in
    its colour, and the clicks made on this frame drawn as dots (positive) and crosses
    (negative); the current object's clicks are larger.

    Args:
        grid: the video.
        slot: the slot to show.
        objects: the session's objects (their order gives their colours).
        tracking: the latest tracking, if any.
        current: index of the object being edited.
        max_side: longest side shown.
        tracked_names: the name of each object's masks in ``tracking`` (None: not tracked);
            default: its own name.
    """
    frame = read_slot(grid, slot)
    height, width = frame.shape[:2]
    shown_w, shown_h = shown_size(width, height, max_side)
    image = Image.fromarray(frame).resize((shown_w, shown_h), Image.Resampling.BILINEAR)
    pixels = np.asarray(image, dtype=np.float32).copy()
    if tracking is not None:
        if tracked_names is None:
            tracked_names = [obj.name for obj in objects]
        for k, name in enumerate(tracked_names):
            masks = None if name is None else tracking.objects.get(name)
            if masks is None or not tracking.first <= slot < min(tracking.stop, len(masks)):
                continue
            mask = Image.fromarray(masks.masks(slot, slot + 1)[0]).resize(
                (shown_w, shown_h), Image.Resampling.NEAREST)
            inside = np.asarray(mask, dtype=bool)
            color = np.asarray(object_color(k), np.float32)
            pixels[inside] = pixels[inside] * (1 - MASK_ALPHA) + color * MASK_ALPHA
    image = Image.fromarray(np.round(pixels).astype(np.uint8))
    view = FrameView(slot, shown_w, shown_h, width, height)
    draw = ImageDraw.Draw(image)
    base = max(4.0, max(shown_w, shown_h) / 160)
    for k, obj in enumerate(objects):
        radius = base * (1.5 if k == current else 1.0)
        for click in obj.clicks:
            if click.slot != slot:
                continue
            x, y = view.to_shown(click.x, click.y)
            box = (x - radius, y - radius, x + radius, y + radius)
            if click.positive:
                draw.ellipse(box, fill=object_color(k), outline="white", width=2)
            else:
                draw.ellipse(box, fill="white", outline=object_color(k), width=2)
                draw.line(box, fill=object_color(k), width=2)
                draw.line((box[0], box[3], box[2], box[1]), fill=object_color(k), width=2)
    return np.asarray(image), view


def placeholder(width: int = 960, height: int = 540,
                text: str = "Upload a video or pick the example") -> np.ndarray:
    """The frame shown before a video is loaded: grey, with what to do (a click on it says
    the same in a message)."""
    image = Image.new("RGB", (width, height), (48, 48, 52))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=max(12, height // 18))
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    draw.text(((width - right + left) / 2, (height - bottom + top) / 2), text, fill=(220, 220, 220),
              font=font)
    return np.asarray(image)
