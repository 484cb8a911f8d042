"""Phrases tracked with a tiny random SAM 3 model loaded like the real one (cache folder or
local folder, offline): per-object outputs, frames in order, bounded session state, errors."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from saganet.errors import UserInputError
from saganet.segment import object_prompt, track_objects
from saganet.weights.registry import SAM3_FILES, SAM3_REPO
from tests.videos import write_video


@pytest.fixture
def spy(monkeypatch):
    """Records the SAM 3 session and the frames its model reads."""
    from transformers import Sam3VideoInferenceSession, Sam3VideoProcessor

    seen = {"sessions": [], "frames": []}
    init = Sam3VideoProcessor.init_video_session
    get_frame = Sam3VideoInferenceSession.get_frame

    def record_session(self, *args, **kwargs):
        session = init(self, *args, **kwargs)
        seen["sessions"].append(session)
        return session

    def record_frame(self, frame_idx):
        seen["frames"].append(frame_idx)
        return get_frame(self, frame_idx)

    monkeypatch.setattr(Sam3VideoProcessor, "init_video_session", record_session)
    monkeypatch.setattr(Sam3VideoInferenceSession, "get_frame", record_frame)
    return seen


def _video(tmp_path, count=8):
    rng = np.random.default_rng(3)
    frames = [rng.integers(0, 255, (24, 32, 3), dtype=np.uint8) for _ in range(count)]
    return write_video(tmp_path / "clip.mp4", frames, fps=25)


def test_phrases_and_clicks_in_one_call(tmp_path, sam2_folder, sam3_folder, spy):
    video = _video(tmp_path)
    objects = [object_prompt("voice", text="singer"), object_prompt("bow", clicks=["5,5@f2"]),
               object_prompt("voice2", text="singer")]
    tracking = track_objects(video, objects, model=sam2_folder, text_model=sam3_folder,
                             offline=True)
    slots = len(tracking.objects["bow"])
    assert list(tracking.objects) == ["voice", "bow", "voice2"]
    for masks in tracking.objects.values():
        assert len(masks) == slots and masks.visible.any()
        assert masks.read().shape == (slots, 1, 224, 224)
    # One phrase, one concept: both objects named "singer" get the same masks.
    assert np.array_equal(tracking.objects["voice"].masks(), tracking.objects["voice2"].masks())
    # SAM 3 reads every slot once, in order (the frames of a phrase have no time).
    assert spy["frames"] == list(range(slots))
    # Each object's masks record the prompts and the model they were tracked with.
    assert tracking.objects["voice"].origin == {"segment_text": "singer",
                                                "segment_model": sam3_folder.name}
    assert tracking.objects["bow"].origin == {"click": ["5,5@f2"],
                                              "segment_model": sam2_folder.name}

    [session] = spy["sessions"]
    assert len(dict.keys(session.processed_frames)) == 1
    assert len(session.obj_id_to_tracker_score_frame_wise) <= 1
    tracker = session.output_dict_per_obj
    assert all(len(out["cond_frame_outputs"]) <= 4 for out in tracker.values())


def test_phrase_model_from_the_cache_folder(tmp_path, sam3_folder):
    video = _video(tmp_path, count=4)
    weights_dir = tmp_path / "w"
    placed = weights_dir / "hub" / SAM3_REPO
    placed.mkdir(parents=True)
    for name in SAM3_FILES:
        shutil.copy(sam3_folder / name, placed / name)
    tracking = track_objects(video, [object_prompt("voice", text="singer")],
                             weights_dir=weights_dir, offline=True)
    assert tracking.objects["voice"].visible.any()
    # A model found in the cache is recorded by its hub name, not its folder.
    assert tracking.objects["voice"].origin["segment_model"] == SAM3_REPO


def test_phrase_never_found(tmp_path):
    from saganet.segment.debug_models import write_tiny_sam3

    folder = write_tiny_sam3(tmp_path / "absent", object_present=False)
    with pytest.raises(UserInputError, match="voice not found in any frame: try another phrase"):
        track_objects(_video(tmp_path, count=4), [object_prompt("voice", text="singer")],
                      text_model=folder)


def test_not_a_sam3_folder(tmp_path, sam2_folder):
    with pytest.raises(UserInputError, match="not a SAM 3 video model folder"):
        track_objects(_video(tmp_path, count=4), [object_prompt("voice", text="singer")],
                      text_model=tmp_path)
    assert torch.get_num_threads() == 1
