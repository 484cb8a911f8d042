"""Tracking with tiny random SAM 2 models: what reaches the model (points, boxes, frames) and
where, per-object results, bounded session state, equality with a whole-video session, and
every bad input. Random weights give meaningless masks, so no test depends on mask quality."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from saganet.errors import UserInputError
from saganet.media.masks import MaskSource, MaskVideo
from saganet.media.video import SYNC_FPS, read_frames
from saganet.segment import object_prompt, track_objects
from saganet.segment.grid import VideoGrid
from saganet.segment.models import load_sam2
from saganet.segment.session import Sam2Tracker, memory_window
from saganet.segment.tracking import slot_prompts
from tests.videos import write_video

_STEP = 5


@pytest.fixture
def spy(monkeypatch):
    """Records what the session hands the model: prompts per (object, frame) and frames."""
    from transformers import Sam2VideoInferenceSession

    seen = {"points": [], "frames": []}
    add_point_inputs = Sam2VideoInferenceSession.add_point_inputs
    get_frame = Sam2VideoInferenceSession.get_frame

    def record_points(self, obj_idx, frame_idx, inputs):
        seen["points"].append((self.obj_idx_to_id(obj_idx), frame_idx,
                               inputs["point_coords"][0, 0].tolist(),
                               inputs["point_labels"][0, 0].tolist()))
        return add_point_inputs(self, obj_idx, frame_idx, inputs)

    def record_frame(self, frame_idx):
        frame = get_frame(self, frame_idx)
        seen["frames"].append((frame_idx, frame.clone()))
        return frame

    monkeypatch.setattr(Sam2VideoInferenceSession, "add_point_inputs", record_points)
    monkeypatch.setattr(Sam2VideoInferenceSession, "get_frame", record_frame)
    return seen


def _input_size(folder) -> int:
    from transformers import Sam2VideoConfig

    return Sam2VideoConfig.from_pretrained(folder).image_size


def _unnormalize(frame: torch.Tensor) -> np.ndarray:
    """Model input (3, S, S) -> uint8-scale values (ImageNet mean/std undone)."""
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    return ((frame * std + mean) * 255).numpy()


def test_clicks_and_boxes_reach_the_model_at_1080p(tmp_path, sam2_folder, spy):
    height, width = 1080, 1920
    frames = [np.full((height, width, 3), 20 * i, np.uint8) for i in range(6)]
    video = write_video(tmp_path / "hd.mp4", frames, fps=25)
    size = _input_size(sam2_folder)
    objects = [object_prompt("a", clicks=["800,400@0.12"], negative_clicks=["100,50@0.12"]),
               object_prompt("b", boxes=["300,200,10,20@f2"])]
    tracking = track_objects(video, objects, model=sam2_folder, offline=True)

    sx, sy = size / width, size / height
    got = sorted(spy["points"], key=lambda p: p[0])
    assert [(obj, frame) for obj, frame, _, _ in got] == [(0, 3), (1, 2)]
    assert np.allclose(got[0][2], [[800 * sx, 400 * sy], [100 * sx, 50 * sy]])
    assert got[0][3] == [1, 0]
    assert np.allclose(got[1][2], [[10 * sx, 20 * sy], [300 * sx, 200 * sy]])
    assert got[1][3] == [2, 3]  # box corners

    assert list(tracking.objects) == ["a", "b"]
    model = sam2_folder.name
    assert tracking.objects["a"].origin == {"click": ["800,400@0.12"],
                                            "negative_click": ["100,50@0.12"],
                                            "segment_model": model}
    assert tracking.objects["b"].origin == {"box": ["10,20,300,200@f2"], "segment_model": model}
    for masks in tracking.objects.values():
        assert isinstance(masks, MaskSource)
        assert (masks.height, masks.width, len(masks)) == (height, width, len(frames))
    # Lossless round trip of a tracked object: the file reads back as the memory serves.
    path = tracking.write_mask_video("a", tmp_path / "a_mask.mp4")
    assert torch.equal(MaskVideo(path).read(), tracking.objects["a"].read())


@pytest.mark.parametrize("rotation", [90, 270])
def test_portrait_rotated_video(tmp_path, sam2_folder, spy, rotation):
    coded_h, coded_w = 48, 64
    frames = []
    for i in range(8):
        image = np.full((coded_h, coded_w, 3), 30 + 10 * i, np.uint8)
        image[:12, :20] = 250  # a marker that rotation moves
        frames.append(image)
    video = write_video(tmp_path / "rot.mp4", frames, fps=25, rotation=rotation)
    size = _input_size(sam2_folder)
    tracking = track_objects(video, [object_prompt("a", clicks=["40,10@0.2"])],
                             model=sam2_folder, offline=True)
    width, height = tracking.info.width, tracking.info.height
    assert (width, height) == (coded_h, coded_w)  # upright: portrait
    [(_, frame_idx, coords, _)] = spy["points"]
    assert frame_idx == 5
    assert np.allclose(coords, [[40 * size / width, 10 * size / height]])
    # The model sees the upright frame: compare with the reader's upright frames.
    upright = read_frames(video, SYNC_FPS, (height, width))
    seen = dict(spy["frames"])
    for slot in (0, 5):
        expected = torch.nn.functional.interpolate(
            upright[slot][None].float(), size=(size, size), mode="bilinear",
            antialias=True)[0].numpy()
        assert np.abs(_unnormalize(seen[slot]) - expected).mean() < 6


@pytest.mark.parametrize("kind", ["fps30", "fps12", "vfr"])
def test_frames_align_with_the_reader(tmp_path, sam2_folder, spy, kind):
    if kind == "vfr":
        pts_ms = [0, 30, 45, 100, 180, 190, 200, 260, 400, 410, 430, 500, 520, 600, 610, 700]
        video = write_video(tmp_path / "v.mkv", [np.full((24, 32, 3), _STEP * i, np.uint8)
                                                  for i in range(len(pts_ms))], pts_ms=pts_ms)
    else:
        fps = {"fps30": 30, "fps12": 12}[kind]
        video = write_video(tmp_path / "v.mp4", [np.full((24, 32, 3), _STEP * i, np.uint8)
                                                  for i in range(20)], fps=fps)
    reference = read_frames(video, SYNC_FPS, (24, 32))
    expected = [round(float(np.median(f.numpy())) / _STEP) for f in reference]
    middle = len(expected) // 2
    tracking = track_objects(video, [object_prompt("a", clicks=[f"5,5@{middle / SYNC_FPS}"])],
                             model=sam2_folder, offline=True)
    seen = {frame_idx: round(float(np.median(_unnormalize(frame))) / _STEP)
            for frame_idx, frame in spy["frames"]}
    # Every slot is tracked (backwards from the prompt too), each with the reader's frame.
    assert seen == dict(enumerate(expected))
    assert len(tracking.objects["a"]) == len(expected)


def _video(tmp_path, count=40, height=24, width=32):
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 255, (height, width, 3), dtype=np.uint8) for _ in range(count)]
    return write_video(tmp_path / "noise.mp4", frames, fps=25, options={"qp": "0"})


def test_bounded_session_equals_whole_video_session(tmp_path, sam2_folder):
    video = _video(tmp_path)
    objects = [object_prompt("a", clicks=["10,8@0.6"], negative_clicks=["3,3@0.6"]),
               object_prompt("b", boxes=["4,4,20,16@1.2"], clicks=["12,10@0.2"])]
    segmenter = load_sam2(sam2_folder)
    grid = VideoGrid(video)
    index = grid.scan()
    prompts = slot_prompts(objects, index, 0, index.num_slots)

    tracked: dict[int, dict[int, torch.Tensor]] = {}
    tracker = Sam2Tracker(segmenter, grid, 0, index.num_slots)
    tracker.add_prompts(prompts)
    tracker.track(lambda slot, masks: tracked.setdefault(slot, masks))
    window = memory_window(segmenter.model.config)
    for outputs in tracker.session.output_dict_per_obj.values():
        assert len(outputs["non_cond_frame_outputs"]) <= 2 * (window + 1)
        for storage in outputs.values():
            assert all("high_res_masks" not in out for out in storage.values())
    assert len(tracker.session.processed_frames) == index.num_slots
    assert len(dict.keys(tracker.session.processed_frames)) == 1

    # The reference: transformers' own session holding the whole video.
    model, processor = segmenter.model, segmenter.processor
    frames = torch.from_numpy(np.stack([f for _, f in grid.forward(0, index.num_slots)]))
    session = processor.init_video_session(video=frames.permute(0, 3, 1, 2))
    size = [index.info.height, index.info.width]
    for slot in sorted(prompts):
        for obj_id, prompt in prompts[slot].items():
            processor.add_inputs_to_inference_session(
                session, frame_idx=slot, obj_ids=obj_id,
                input_points=[[list(map(list, prompt.points))]] if prompt.points else None,
                input_labels=[[list(prompt.labels)]] if prompt.points else None,
                input_boxes=[[list(prompt.box)]] if prompt.box else None, original_size=size)
        session.obj_with_new_inputs = list(prompts[slot])
        model(inference_session=session, frame_idx=slot)
    start = min(prompts)
    reference = {}
    runs = [model.propagate_in_video_iterator(session)]
    if start > 0:
        runs.append(model.propagate_in_video_iterator(session, start_frame_idx=start - 1,
                                                      reverse=True))
    for run in runs:
        for out in run:
            masks = processor.post_process_masks([out.pred_masks], original_sizes=[size])[0]
            reference[out.frame_idx] = {i: masks[k, 0] for k, i in enumerate(out.object_ids)}
    assert sorted(tracked) == sorted(reference) == list(range(index.num_slots))
    for slot, masks in reference.items():
        for obj_id, mask in masks.items():
            assert torch.equal(tracked[slot][obj_id], mask), (slot, obj_id)


def test_tracked_range_and_spans(tmp_path, sam2_folder):
    video = _video(tmp_path, count=20)
    tracking = track_objects(video, [object_prompt("a", clicks=["5,5@0.4"])],
                             model=sam2_folder, offline=True, start=0.2, end=0.6)
    masks = tracking.objects["a"]
    first, stop = round(0.2 * SYNC_FPS), round(0.6 * SYNC_FPS)
    assert (tracking.first, tracking.stop, len(masks)) == (first, stop, stop)
    assert not masks.visible[:first].any()
    assert masks.read(0.0, 0.2).sum() == 0
    assert masks.read().shape[0] == stop
    for span in masks.spans():
        assert first / SYNC_FPS <= span.start < span.end <= stop / SYNC_FPS
    assert tracking.lost("a") == pytest.approx((~masks.visible[first:stop]).sum() / SYNC_FPS)


def test_object_never_found_is_an_error(tmp_path, sam2_absent_folder):
    video = _video(tmp_path, count=6)
    with pytest.raises(UserInputError, match="not found in any frame: try another click"):
        track_objects(video, [object_prompt("ghost", clicks=["5,5"])],
                      model=sam2_absent_folder, offline=True)


@pytest.mark.parametrize(("prompt", "kwargs", "match"), [
    (dict(clicks=["33,5"]), {}, "outside the 32x24 frame"),
    (dict(clicks=["5,-1"]), {}, "outside the 32x24 frame"),
    (dict(boxes=["0,0,40,10"]), {}, "outside the 32x24 frame"),
    (dict(clicks=["5,5@0.5"]), {}, "past the end of the video"),
    (dict(clicks=["5,5@f6"]), {}, "past the end of the video"),
    (dict(clicks=["5,5@0.2"]), dict(end=0.1), "outside the tracked range"),
    (dict(boxes=["1,1,9,9", "2,2,8,8"]), {}, "two boxes"),
    (dict(clicks=["5,5"]), dict(start=5.0), "past the end"),
    (dict(clicks=["5,5"]), dict(start=float("inf")), "start must be"),
    (dict(clicks=["5,5"]), dict(end=float("nan")), "end must be"),
    (dict(clicks=["5,5"]), dict(end=float("inf")), "end must be"),
])
def test_bad_prompts_fail_before_any_model_loads(tmp_path, prompt, kwargs, match):
    video = _video(tmp_path, count=6)
    # A model that does not exist proves nothing was loaded before the error.
    with pytest.raises(UserInputError, match=match):
        track_objects(video, [object_prompt("a", **prompt)], model="no-such-model", **kwargs)


def test_missing_weights_offline_and_unknown_models(tmp_path):
    video = _video(tmp_path, count=6)
    objects = [object_prompt("a", clicks=["5,5"])]
    with pytest.raises(UserInputError, match=r"offline mode is on.*sam2\.1-hiera-small"):
        track_objects(video, objects, model="small", weights_dir=tmp_path / "w", offline=True)
    with pytest.raises(UserInputError, match="unknown segmentation model"):
        track_objects(video, objects, model="huge", weights_dir=tmp_path / "w", offline=True)
    assert not (tmp_path / "w").exists() or not any((tmp_path / "w").rglob("*.safetensors"))


def test_text_prompt_without_sam3_says_how_to_get_it(tmp_path):
    video = _video(tmp_path, count=6)
    with pytest.raises(UserInputError, match=r"request access at https://huggingface.co/"
                                             r"facebook/sam3.*fetch segment_text") as info:
        track_objects(video, [object_prompt("voice", text="singer")],
                      weights_dir=tmp_path / "w", offline=False)
    # Python callers are told their argument beside the commands' flags.
    assert "text_model= from Python" in str(info.value)
    with pytest.raises(UserInputError, match="does not exist"):
        track_objects(video, [object_prompt("voice", text="singer")],
                      text_model=tmp_path / "nowhere")


def test_progress_callback_and_shared_models(tmp_path, sam2_folder, monkeypatch):
    """``on_progress`` counts every tracked slot up to its total; a ``SegmenterCache`` loads
    the model once for several runs, and its results equal a run without it."""
    from saganet.segment import models as models_module
    from saganet.segment.models import SegmenterCache

    video = _video(tmp_path, count=12)
    objects = [object_prompt("a", clicks=["5,5@0.2"])]
    loads = []
    load = models_module.load_sam2
    monkeypatch.setattr(models_module, "load_sam2",
                        lambda *args, **kwargs: loads.append(args) or load(*args, **kwargs))
    calls: list[tuple[int, int]] = []
    cache = SegmenterCache()
    first = track_objects(video, objects, model=sam2_folder, offline=True, start=0.04,
                          on_progress=lambda done, total: calls.append((done, total)),
                          models=cache)
    second = track_objects(video, objects, model=sam2_folder, offline=True, start=0.04,
                           models=cache)
    alone = track_objects(video, objects, model=sam2_folder, offline=True, start=0.04)
    tracked = first.stop - first.first
    assert calls == [(k, tracked) for k in range(1, tracked + 1)]
    assert len(cache) == 1 and len(loads) == 2  # the cache's load, and the run without it
    for other in (second, alone):
        assert np.array_equal(first.objects["a"].masks(), other.objects["a"].masks())


def test_a_cancelled_tracking_stops_at_its_next_frame(tmp_path, sam2_folder):
    """A token cancelled during the frame ``k`` report stops the tracking before frame
    ``k + 1`` is reported; one cancelled beforehand stops it before any frame."""
    from saganet.cancel import CancelledError, CancelToken

    video = _video(tmp_path, count=12)
    objects = [object_prompt("a", clicks=["5,5@0.2"])]
    total = VideoGrid(video).scan().num_slots
    stop_at = total // 2
    token, calls = CancelToken(), []

    def report(done: int, count: int) -> None:
        calls.append(done)
        if done == stop_at:
            token.cancel("enough")

    with pytest.raises(CancelledError, match="enough"):
        track_objects(video, objects, model=sam2_folder, offline=True, on_progress=report,
                      cancel=token)
    assert calls == list(range(1, stop_at + 1))
    calls.clear()
    with pytest.raises(CancelledError):
        track_objects(video, objects, model=sam2_folder, offline=True, on_progress=report,
                      cancel=token)
    assert calls == []


def test_loading_and_writing_models_draw_no_transformers_bars(tmp_path, sam2_folder, capfd):
    """transformers draws its own bars while it loads or saves a model ('Loading weights',
    'Writing model shards'): under a command's log (demo, segment, app) they were a noisy line
    outside saganet's own progress policy. Its setting is left as it was."""
    from transformers.utils import logging as hf_logging

    from saganet.segment.debug_models import write_tiny_sam2

    before = hf_logging.is_progress_bar_enabled()
    capfd.readouterr()
    load_sam2(write_tiny_sam2(tmp_path / "sam2", object_present=True))
    load_sam2(sam2_folder)
    err = capfd.readouterr().err
    assert "Loading weights" not in err and "Writing model shards" not in err, err
    assert hf_logging.is_progress_bar_enabled() == before
