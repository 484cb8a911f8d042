"""Golden handler for the video/mask reading path (``io.training_path``).

The case records what the training-time preprocessing (FFmpeg ``fps`` filter, FFmpeg rgb24 /
gray conversion, torchvision bicubic antialiased squash resize, uint8) gives for the shared
duet video and its violin mask. Decoders and resize kernels may differ slightly between
builds, so pixels are compared with explicit image tolerances instead of
``compare.assert_outputs``' 1e-5:

* frame choice: every output frame's mean within 0.5 (on 0-255) of the recorded mean — a
  neighbouring frame of this video differs by more, so a wrong choice fails;
* the stored whole frames (``*.frames`` at the indices ``*.keep``): mean absolute difference
  at most 1.0;
* frame identity: this video barely moves (neighbouring frames differ in mean by < 0.05 and by
  0.1-0.5 in mean absolute difference), so the two checks above cannot tell neighbours apart.
  Each stored frame is therefore also matched against every source frame (read at the
  video's own rate, resized the same way): the closest source frame must be the one we put
  in that slot;
* the mask: mean absolute difference at most 1.0, at most 1 % of the recorded non-zero pixels
  changing between zero and non-zero, and every frame's non-zero bounding box within 2 pixels
  (the focal crop is cut from those boxes).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from saganet.media.video import FrameRequest, probe_video, read_frame_sets
from tests.shared import EXAMPLES, need

MEAN_TOL = 0.5
PIXEL_MAD_TOL = 1.0
NONZERO_CHANGE_TOL = 0.01
BOX_TOL_PX = 2


def _request(spec: dict, duration: float, gray: bool = False) -> FrameRequest:
    height, width = spec["size"]
    return FrameRequest(spec["fps"], (height, width), gray=gray, end=duration)


def _check_identity(name: str, ours: torch.Tensor, sources: torch.Tensor,
                    outputs: dict) -> None:
    """The source frame closest to each stored frame is the one in our slot."""
    keep, stored = outputs[f"{name}.keep"], outputs[f"{name}.frames"]
    for index, expected in zip(keep.tolist(), stored, strict=True):
        # Our slot holds a resized source frame bit for bit: find which one(s).
        same = (sources == ours[index]).flatten(1).all(dim=1)
        assert same.any(), f"{name}: slot {index} matches no source frame"
        mad = (sources.float() - expected.float()).abs().mean(dim=(1, 2, 3))
        closest = int(mad.argmin())
        assert same[closest], (
            f"{name}: slot {index} holds source frame(s) {torch.nonzero(same).flatten().tolist()}"
            f" but the recorded frame is closest to source frame {closest}")


def _check_frames(name: str, ours: torch.Tensor, outputs: dict) -> None:
    means = outputs[f"{name}.frame_means"]
    assert ours.shape[0] == means.shape[0], (
        f"{name}: {ours.shape[0]} frames, expected {means.shape[0]}")
    diff = (ours.float().mean(dim=(1, 2, 3)) - means).abs()
    bad = torch.nonzero(diff > MEAN_TOL).flatten().tolist()
    assert not bad, (f"{name}: frames {bad[:10]} differ in mean by up to {diff.max():.3f} "
                     "(wrong frame chosen?)")
    keep, stored = outputs[f"{name}.keep"], outputs[f"{name}.frames"]
    assert ours.shape[1:] == stored.shape[1:], (
        f"{name}: frame shape {tuple(ours.shape[1:])} != {tuple(stored.shape[1:])}")
    for index, expected in zip(keep.tolist(), stored, strict=True):
        mad = (ours[index].float() - expected.float()).abs().mean().item()
        assert mad <= PIXEL_MAD_TOL, (
            f"{name}: frame {index} mean abs diff {mad:.3f} > {PIXEL_MAD_TOL}")


def _boxes(masks: torch.Tensor) -> torch.Tensor:
    """Per-frame (top, left, bottom, right) of non-zero pixels; -1s for empty frames."""
    boxes = []
    for frame in masks[:, 0]:
        rows = torch.nonzero(frame.any(dim=1)).flatten()
        cols = torch.nonzero(frame.any(dim=0)).flatten()
        boxes.append([rows[0], cols[0], rows[-1], cols[-1]] if rows.numel() else [-1] * 4)
    return torch.tensor(boxes)


def _check_mask(ours: torch.Tensor, expected: torch.Tensor) -> None:
    assert ours.shape == expected.shape, (
        f"mask: shape {tuple(ours.shape)} != {tuple(expected.shape)}")
    mad = (ours.float() - expected.float()).abs().mean().item()
    assert mad <= PIXEL_MAD_TOL, f"mask: mean abs diff {mad:.4f} > {PIXEL_MAD_TOL}"
    changed = ((ours > 0) ^ (expected > 0)).sum().item()
    allowed = NONZERO_CHANGE_TOL * (expected > 0).sum().item()
    assert changed <= allowed, (
        f"mask: {changed} pixels change between zero and non-zero (> {allowed:.0f})")
    box_diff = (_boxes(ours) - _boxes(expected)).abs().amax(dim=1)
    bad = torch.nonzero(box_diff > BOX_TOL_PX).flatten().tolist()
    assert not bad, (
        f"mask: non-zero bounding boxes of frames {bad[:10]} move by more than {BOX_TOL_PX} px")


def _input_file(case: dict, name: str) -> Path:
    """A file the case names: beside the case file first (other case folders bring their own
    videos), then in the shared examples."""
    candidates = [Path(case.get("folder", EXAMPLES)) / name, EXAMPLES / name]
    for path in candidates:
        if path.is_file():
            return path
    need(EXAMPLES / name)
    return EXAMPLES / name


def training_path(case: dict) -> None:
    config, outputs = case["config"], case["outputs"]
    video = _input_file(case, case["inputs"]["video"])
    mask = _input_file(case, case["inputs"]["mask"])
    duration = float(config["duration"])
    produced = {"clip_u8", "sync_u8", "mask_u8"}
    recorded = {k.split(".")[0] for k, v in outputs.items() if isinstance(v, torch.Tensor)}
    assert recorded <= produced, (
        f"outputs this handler does not check: {sorted(recorded - produced)}")

    # Every source frame up to the cut (plus one, which the last slot may show), for identity.
    source_fps = probe_video(video).fps
    source_end = duration + 1.5 / source_fps
    clip, sync, clip_sources, sync_sources = read_frame_sets(video, [
        _request(config["clip"], duration), _request(config["sync"], duration),
        FrameRequest(source_fps, tuple(config["clip"]["size"]), end=source_end),
        FrameRequest(source_fps, tuple(config["sync"]["size"]), end=source_end)])
    for name, spec, ours, sources in (("clip_u8", config["clip"], clip, clip_sources),
                                      ("sync_u8", config["sync"], sync, sync_sources)):
        ours = ours[: int(spec["fps"] * duration)]  # (T, 3, H, W) uint8
        _check_frames(name, ours, outputs)
        _check_identity(name, ours, sources, outputs)
    (masks,) = read_frame_sets(mask, [_request(config["mask"], duration, gray=True)])
    _check_mask(masks[: int(config["mask"]["fps"] * duration)], outputs["mask_u8"])


HANDLERS: dict[str, Callable[[dict], None]] = {"io.training_path": training_path}
MANIFESTS: dict[str, Callable[[], dict]] = {}
