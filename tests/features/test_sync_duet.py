"""The shared duet video with the trumpet mask vs the violin mask gives different sync features."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import av
import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from saganet.features import (
    SynchformerConfig,
    SynchformerWithContext,
    encode_sync,
    focal_crop,
    focal_crop_boxes,
)
from tests.shared import DUET, TRUMPET, VIOLIN, need

VIDEO, MASK_TRUMPET, MASK_VIOLIN = DUET, TRUMPET, VIOLIN
NUM_FRAMES = 32  # ~1.3 s at 25 fps (the files are 25 fps): 3 windows


def _decode(path: Path, gray: bool) -> torch.Tensor:
    """First NUM_FRAMES frames squash-resized to 224 -> (1, T, C, 224, 224) uint8."""
    frames = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            array = frame.to_ndarray(format="gray" if gray else "rgb24")
            image = torch.from_numpy(array)
            image = image[None] if gray else image.permute(2, 0, 1)  # (C, H, W)
            frames.append(TF.resize(image, [224, 224], antialias=True))
            if len(frames) == NUM_FRAMES:
                break
    return torch.stack(frames)[None]


@pytest.fixture(scope="module")
def clip_inputs() -> dict[str, tuple[torch.Tensor, ...]]:
    need(VIDEO, MASK_TRUMPET, MASK_VIOLIN)
    frames = _decode(VIDEO, gray=False).float() / 127.5 - 1  # [-1, 1]
    inputs = {}
    for name, path in (("trumpet", MASK_TRUMPET), ("violin", MASK_VIOLIN)):
        # The mask videos are lossy: binarise so compression noise is not foreground.
        masks = (_decode(path, gray=True) > 127).float()
        inputs[name] = (frames, masks, *focal_crop(frames, masks))
    return inputs


def test_two_masks_give_two_focal_windows(clip_inputs: dict) -> None:
    boxes = {name: focal_crop_boxes(inputs[1]) for name, inputs in clip_inputs.items()}
    assert not torch.equal(boxes["trumpet"], boxes["violin"])
    for box in boxes.values():  # a real zoom, not the whole-frame fallback
        x0, y0, x1, y1 = box[0].tolist()
        assert (x1 - x0) * (y1 - y0) < 224 * 224


def test_two_masks_give_different_sync_features(clip_inputs: dict) -> None:
    torch.manual_seed(0)
    # The debug size with one block: the 224-px token grid is what matters here.
    config = dataclasses.replace(SynchformerConfig.debug(), depth=1)
    model = SynchformerWithContext(config).eval()
    with torch.no_grad():
        model.vfeat_extractor.patch_embed_3d_mask.proj.weight.normal_(0, 0.02)
        for layer in model.vfeat_extractor.cross_attn_layers:
            layer.attn_factor.fill_(0.5)
            layer.mlp_factor.fill_(0.5)
        features = {name: encode_sync(model, *inputs, chunk_size=2)
                    for name, inputs in clip_inputs.items()}
    assert features["trumpet"].shape == (1, 8 * 3, 48)
    difference = (features["trumpet"] - features["violin"]).abs().mean()
    assert difference > 0.05 * features["trumpet"].abs().mean()
