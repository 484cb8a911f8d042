"""``write_soundtrack`` end to end with debug models on synthetic clips: stems, mix, length,
tracks, hidden objects, joint sampling, and agreement with ``generate()``."""

from __future__ import annotations

import dataclasses
import logging
import math
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from saganet.debug_weights import build_debug_models
from saganet.errors import UserInputError
from saganet.example import SyntheticScene
from saganet.inference import GenerationBatch, SamplingOptions, generate
from saganet.media.masks import MaskVideo
from saganet.media.output import write_mask_video
from saganet.media.video import load_video_inputs, probe_video
from saganet.model.sequence import SYNC_FPS, SYNC_SEGMENT_FRAMES
from saganet.soundtrack import (
    SoundObject,
    SoundtrackRequest,
    check_seed,
    resolve_segment,
    write_soundtrack,
)
from saganet.soundtrack import render as render_module
from saganet.soundtrack.mix import MIX_PEAK, level_mix
from tests.videos import read_audio, stream_ends, write_video

OPTIONS = SamplingOptions(cfg_strength=4.5, num_steps=2)
# One 24-bit step of a FLAC sample, in full-scale units.
FLAC_STEP = 2.0 ** -23


@pytest.fixture(scope="module")
def models():
    return build_debug_models(seed=0)


def write_clip(folder: Path, scene: SyntheticScene, hide: dict[str, float] | None = None,
               ) -> tuple[Path, dict[str, Path]]:
    """The scene's video and one lossless mask video per shape; ``hide`` empties a shape's
    mask before the given second."""
    hide = hide or {}
    frames = list(scene.frames())
    video = write_video(folder / "clip.mp4", (image for image, _ in frames),
                        fps=scene.fps)
    masks = {}
    for name in frames[0][1]:
        hidden_until = hide.get(name, 0.0)
        masks[name] = write_mask_video(
            folder / f"clip_{name}_mask.mp4",
            (shapes[name] & (k / scene.fps >= hidden_until) for k, (_, shapes)
             in enumerate(frames)), fps=scene.fps)
    return video, masks


def read_flac(path: Path) -> np.ndarray:
    return read_audio(path)[0][0]


def test_long_clip_with_a_hidden_object(models, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """12.3 s at 29.97 fps, two objects, the square hidden at first: exact lengths, titled
    tracks, silence where hidden, identical latents where windows overlap, overlaps vocoded
    once, levelled mix."""
    fps = Fraction(30000, 1001)
    duration = 12.3
    scene = SyntheticScene(width=128, height=72, fps=fps, duration=duration)
    hidden_until = 8.5
    video, masks = write_clip(tmp_path, scene, hide={"square": hidden_until})
    objects = tuple(SoundObject(name, MaskVideo(path), name) for name, path in masks.items())
    request = SoundtrackRequest(video, objects, tmp_path / "out", join="joint")
    decoded_latents: list[torch.Tensor] = []
    vocoded_frames: list[int] = []
    codec = models.codec
    real_decode_mel, real_vocode = codec.decode_mel, codec.vocode

    def recording_decode_mel(latents):
        decoded_latents.append(latents.clone())
        return real_decode_mel(latents)

    def recording_vocode(mel, **kwargs):
        vocoded_frames.append(mel.shape[-1])
        return real_vocode(mel, **kwargs)

    monkeypatch.setattr(codec, "decode_mel", recording_decode_mel)
    monkeypatch.setattr(codec, "vocode", recording_vocode)
    result = write_soundtrack(models, request, options=OPTIONS, seed=3)
    plan, outputs = result.plan, result.outputs
    sr = plan.sampling_rate
    assert len(plan.windows) > 1

    # Exact lengths, every stream: those of the video (369 frames at 29.97 fps: 12.312 s).
    duration = probe_video(video).duration
    expected = round(duration * sr)
    stems = {name: read_flac(path) for name, path in outputs.stems.items()}
    mix = read_flac(outputs.mix)
    assert set(stems) == set(masks)
    assert all(len(a) == expected for a in [*stems.values(), mix])
    seconds = stream_ends(outputs.video)
    frame_period = float(1 / fps)
    assert all(abs(s - duration) <= frame_period for s in seconds["video"])
    assert len(seconds["audio"]) == 1 + len(masks)
    assert all(abs(s - duration) <= 1024 / sr for s in seconds["audio"])
    with av.open(str(outputs.video)) as container:
        titles = [s.metadata.get("handler_name") for s in container.streams.audio]
    assert titles == ["mix", *masks]

    # The hidden object is silent where no window sees it, and said so.
    ((start, end),) = result.silenced["square"]
    assert start == pytest.approx(0.0)
    assert end <= hidden_until and end > 0
    assert not np.any(stems["square"][: math.floor(end * sr)])
    assert np.abs(stems["square"][math.ceil(hidden_until * sr):]).max() > 1e-3
    assert "circle" not in result.silenced

    # The VAE decoder never gets more clips at once than one window has objects, however
    # many windows the video has.
    assert max(len(batch) for batch in decoded_latents) <= len(objects)
    assert sum(len(batch) for batch in decoded_latents) > len(objects)

    # Joint sampling: overlapping windows of one object hold identical latents.
    latents = torch.cat(decoded_latents)
    # A window is hidden for the square when its mask is empty in all of it.
    hidden = {w.index for w in plan.windows
              if w.offset + plan.window_duration <= hidden_until}
    assert hidden
    order = [(k, w.index) for k, o in enumerate(objects) for w in plan.windows
             if not (o.name == "square" and w.index in hidden)]
    assert len(order) == len(latents)
    checked = 0
    for i, (obj_a, win_a) in enumerate(order):
        for j, (obj_b, win_b) in enumerate(order):
            if obj_a != obj_b or win_b <= win_a:
                continue
            a, b = plan.latent_span(plan.windows[win_a]), plan.latent_span(plan.windows[win_b])
            low, high = max(a.start, b.start), min(a.stop, b.stop)
            if low < high:
                assert torch.equal(latents[i, low - a.start : high - a.start],
                                   latents[j, low - b.start : high - b.start])
                checked += 1
    assert checked >= len(plan.windows) - 1

    # The vocoder (nearly all of decoding) goes over each run of an object's consecutive
    # windows once, in pieces of one pass each: overlaps once, not once per window.
    per_latent = codec.samples_per_latent // codec.hop_length
    runs = [sorted(w for k2, w in order if k2 == k) for k in range(len(objects))]
    spans = [(plan.windows[r[-1]].latent_offset - plan.windows[r[0]].latent_offset
              + plan.window_latents) * per_latent for r in runs]
    assert all(r == list(range(r[0], r[-1] + 1)) for r in runs)  # one run each here
    assert max(vocoded_frames) <= codec.vocoder.chunk_frames
    context = codec.vocoder.receptive_field
    assert sum(spans) <= sum(vocoded_frames) <= sum(spans) + 2 * context * len(vocoded_frames)
    assert sum(vocoded_frames) < len(order) * plan.window_latents * per_latent

    # The mix is the levelled sum of the stems and does not clip.
    gain = result.mix_level.gain
    levelled = gain * (stems["circle"] + stems["square"])
    assert np.abs(mix - levelled).max() <= 3 * FLAC_STEP
    assert np.abs(mix).max() <= MIX_PEAK + FLAC_STEP


def test_joint_windows_are_vocoded_as_one_signal(models, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Joint decoding: the stem is the vocoder's output for the windows' mel frames joined
    on the segment's grid with the equal-amplitude weights, computed here in one pass; the
    render's pieces (any size, with their context) give it up to float rounding."""
    from saganet.soundtrack.join import join_weights

    scene = SyntheticScene(width=96, height=54, duration=7.3)
    video, masks = write_clip(tmp_path, scene)
    name, path = next(iter(masks.items()))
    codec = models.codec
    windows_latents: list[torch.Tensor] = []
    real_decode_mel = codec.decode_mel

    def recording(latents):
        windows_latents.append(latents.clone())
        return real_decode_mel(latents)

    monkeypatch.setattr(codec, "decode_mel", recording)
    context = codec.vocoder.receptive_field
    stems = []
    for chunk_frames in (None, 2 * context + 7):  # one pass per run; many small pieces
        monkeypatch.setattr(codec.vocoder, "chunk_frames", chunk_frames)
        windows_latents.clear()
        request = SoundtrackRequest(video, (SoundObject(name, MaskVideo(path), name),),
                                    tmp_path / f"out{chunk_frames}", join="joint")
        result = write_soundtrack(models, request, options=OPTIONS, seed=5)
        stems.append(read_flac(result.outputs.mix))
    plan = result.plan
    assert len(plan.windows) >= 2 and len(windows_latents) == len(plan.windows)

    per_latent = codec.samples_per_latent // codec.hop_length
    weights = join_weights(plan, equal_power=False, per_latent=per_latent)
    mel = torch.zeros(1, codec.config.mel.num_mels, plan.num_latents * per_latent)
    for window, latents, weight in zip(plan.windows, windows_latents, weights, strict=True):
        start = window.latent_offset * per_latent
        part = real_decode_mel(latents).float() * weight.float()
        mel[..., start : start + part.shape[-1]] += part
    monkeypatch.setattr(codec.vocoder, "chunk_frames", None)
    expected = codec.vocode(mel).float().clamp(-1, 1)[0, 0, : plan.num_samples].numpy()
    for stem in stems:
        np.testing.assert_allclose(stem, expected, atol=4 * FLAC_STEP + 1e-6)


def test_crossfade_join_writes_the_same_files(models, tmp_path: Path) -> None:
    scene = SyntheticScene(width=96, height=54, duration=6.2)
    video, masks = write_clip(tmp_path, scene)
    name, path = next(iter(masks.items()))
    request = SoundtrackRequest(video, (SoundObject(name, MaskVideo(path), name),),
                                tmp_path / "out", join="crossfade")
    result = write_soundtrack(models, request, options=OPTIONS, seed=0)
    assert len(result.plan.windows) == 2 and result.outputs.stems == {}
    audio = read_flac(result.outputs.mix)
    assert len(audio) == round(scene.duration * result.plan.sampling_rate)
    assert np.abs(audio).max() > 1e-3


def test_names_as_long_as_the_file_system_takes(models, tmp_path: Path) -> None:
    """An output name of 255 bytes is written (the hidden work folder beside it is named
    shorter); a longer one, or a longer folder name, is refused before any work."""
    scene = SyntheticScene(width=96, height=54, duration=1.0)
    video, masks = write_clip(tmp_path, scene)
    name, path = next(iter(masks.items()))
    objects = (SoundObject(name, MaskVideo(path), name),)
    stem = "s" * (255 - len(".flac"))
    result = write_soundtrack(models, SoundtrackRequest(video, objects, tmp_path / "out",
                                                        stem=stem), options=OPTIONS, seed=0)
    assert result.outputs.mix.name == f"{stem}.flac" and result.outputs.mix.is_file()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"{stem}.flac",
                                                                    f"{stem}.mp4"]
    too_long = {"": SoundtrackRequest(video, objects, tmp_path / "out2", stem=stem + "s"),
                "d" * 256: SoundtrackRequest(video, objects, tmp_path / ("d" * 256) / "x")}
    for folder, request in too_long.items():
        with pytest.raises(UserInputError, match=r"name too long: 25[67] bytes") as err:
            write_soundtrack(models, request, options=OPTIONS, seed=0)
        assert err.value.path == str(tmp_path / folder if folder else request.outputs().mix)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("d", "out"))) == [
        "out"]


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_an_output_folder_that_cannot_be_made_is_a_user_error(models, tmp_path: Path) -> None:
    scene = SyntheticScene(width=96, height=54, duration=1.0)
    video, masks = write_clip(tmp_path, scene)
    name, path = next(iter(masks.items()))
    out = Path("/proc/saganet_out/a")
    request = SoundtrackRequest(video, (SoundObject(name, MaskVideo(path), name),), out)
    with pytest.raises(UserInputError, match="cannot create the output folder") as err:
        write_soundtrack(models, request, options=OPTIONS, seed=0)
    assert err.value.path == str(out) and not out.parent.exists()


def test_one_window_equals_generate(models, tmp_path: Path) -> None:
    """A clip shorter than a window goes through exactly ``generate()``."""
    scene = SyntheticScene(width=96, height=54, duration=2.0)
    video, masks = write_clip(tmp_path, scene)
    name, path = next(iter(masks.items()))
    seed = 11
    request = SoundtrackRequest(video, (SoundObject(name, MaskVideo(path), "violin", "hiss"),),
                                tmp_path / "out", write_video=False)
    result = write_soundtrack(models, request, options=OPTIONS, seed=seed)
    inputs = load_video_inputs(video, path, duration=scene.duration)
    models.set_duration(inputs.duration)
    batch = GenerationBatch(sync_frames=inputs.sync_frames[None], masks=inputs.masks[None],
                            clip_frames=inputs.clip_frames[None], texts=["violin"],
                            negative_texts=["hiss"])
    reference = generate(models, batch, generator=torch.Generator().manual_seed(seed),
                         options=OPTIONS).audio[0, 0].numpy()
    ours = read_flac(result.outputs.mix)
    assert len(ours) == round(scene.duration * result.plan.sampling_rate)
    assert np.abs(ours - np.clip(reference[: len(ours)], -1, 1)).max() <= FLAC_STEP


def test_bad_requests_are_user_errors(models, tmp_path: Path) -> None:
    scene = SyntheticScene(width=96, height=54, duration=2.0)
    video, masks = write_clip(tmp_path, scene)
    short = write_mask_video(tmp_path / "short.mp4",
                             (np.ones((54, 96), bool) for _ in range(scene.fps)), fps=scene.fps)
    (name, path), (other, other_path) = list(masks.items())
    cases = {
        "last": dict(objects=(SoundObject(name, MaskVideo(short), "x"),)),
        "past the end": dict(objects=(SoundObject(name, MaskVideo(path)),), start=9.0),
        "no prompt": dict(objects=(SoundObject(name, MaskVideo(path), "x"),
                                   SoundObject(other, MaskVideo(other_path))),
                          negatives_from_others=True),
        "different name": dict(objects=(SoundObject(name, MaskVideo(path)),
                                        SoundObject(name, MaskVideo(other_path)))),
        "case aside": dict(objects=(SoundObject(name, MaskVideo(path)),
                                    SoundObject(name.swapcase(), MaskVideo(other_path)))),
        "file names": dict(objects=(SoundObject("a/b", MaskVideo(path)),)),
    }
    with pytest.raises(UserInputError, match="SamplingOptions"):
        write_soundtrack(models, SoundtrackRequest(video, output_dir=tmp_path / "out",
                                                   objects=(SoundObject(name, path),)),
                         options={"num_steps": 2}, seed=0)
    assert not (tmp_path / "out").exists()
    for problem, fields in cases.items():
        out = tmp_path / "out"
        with pytest.raises(UserInputError, match=problem):
            request = SoundtrackRequest(video, output_dir=out, **fields)
            write_soundtrack(models, request, options=OPTIONS, seed=0)
        assert not out.exists(), problem


def test_outputs_never_replace_the_inputs(models, tmp_path: Path) -> None:
    scene = SyntheticScene(width=96, height=54, duration=1.0)
    video, masks = write_clip(tmp_path, scene)
    (name, path), (other, other_path) = list(masks.items())
    objects = (SoundObject(name, MaskVideo(path), "x"),
               SoundObject(other, MaskVideo(other_path), "y"))
    # Into the inputs' own folder: the MP4 would be the video, or (named so) a mask video.
    cases = {video: SoundtrackRequest(video, objects, tmp_path),
             path: SoundtrackRequest(video, objects, tmp_path, stem=path.stem)}
    before = {p: p.read_bytes() for p in [video, *masks.values()]}
    for replaced, request in cases.items():
        assert replaced in request.outputs().all()
        with pytest.raises(UserInputError, match="input") as err:
            write_soundtrack(models, request, options=OPTIONS, seed=0, overwrite=True)
        assert err.value.path == str(replaced)
    assert {p: p.read_bytes() for p in before} == before


@pytest.mark.parametrize("existing", [False, True])
def test_interrupted_writing_leaves_no_output(models, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch,
                                              existing: bool) -> None:
    scene = SyntheticScene(width=96, height=54, duration=1.0)
    video, masks = write_clip(tmp_path, scene)
    objects = tuple(SoundObject(name, MaskVideo(path), name) for name, path in masks.items())
    out = tmp_path / "out"
    request = SoundtrackRequest(video, objects, out)
    outputs = request.outputs().all()
    if existing:  # an earlier run's files, to be replaced: kept whole when this run fails
        out.mkdir()
        for path in outputs:
            path.write_bytes(path.name.encode())
    before = sorted(out.iterdir()) if existing else None
    real_write_audio = render_module.write_audio
    written = []

    def interrupted_at_the_last_file(path, *args, **kwargs):
        # Ctrl-C while the last file (the mix) is written, the others complete.
        if len(written) == len(request.outputs().stems):
            raise KeyboardInterrupt
        written.append(real_write_audio(path, *args, **kwargs))
        return written[-1]

    monkeypatch.setattr(render_module, "write_audio", interrupted_at_the_last_file)
    with pytest.raises(KeyboardInterrupt):
        write_soundtrack(models, request, options=OPTIONS, seed=0, overwrite=existing)
    assert len(written) == len(objects) > 1
    if existing:
        assert sorted(out.iterdir()) == before
        assert all(path.read_bytes() == path.name.encode() for path in outputs)
    else:
        assert not out.exists()
    monkeypatch.setattr(render_module, "write_audio", real_write_audio)
    result = write_soundtrack(models, request, options=OPTIONS, seed=0, overwrite=existing)
    assert sorted(out.iterdir()) == sorted(outputs) == sorted(result.outputs.all())
    assert all(len(read_audio(path)[0][0]) for path in outputs)


def test_work_folder_of_a_killed_run_is_removed_by_the_next(models, tmp_path: Path) -> None:
    scene = SyntheticScene(width=96, height=54, duration=1.0)
    video, masks = write_clip(tmp_path, scene)
    name, path = next(iter(masks.items()))
    out = tmp_path / "out"
    out.mkdir()
    request = SoundtrackRequest(video, (SoundObject(name, MaskVideo(path), name),), out,
                                write_video=False)
    # A run killed with SIGKILL while generating: its work folder (made as write_soundtrack
    # makes it, with memory-mapped audio in it) stays behind.
    killed = subprocess.Popen(
        [sys.executable, "-c", "import time; from pathlib import Path\n"
         "from saganet.leftovers import owned_folder\n"
         f"with owned_folder(Path({str(out)!r}), '.{request.name}.work-') as work:\n"
         "    (work / 'mix.npy').write_bytes(bytes(64)); print(work, flush=True)\n"
         "    time.sleep(600)"], stdout=subprocess.PIPE, text=True)
    work = Path(killed.stdout.readline().strip())
    killed.kill()
    killed.communicate(timeout=30)
    assert killed.returncode == -9 and (work / "mix.npy").exists()
    # One made on another machine (a shared folder): its owner may still run.
    pid, start, machine, rand = work.name.rsplit("-", 4)[1:]
    foreign = out / f".{request.name}.work-{pid}-{start}-{'0' * 12}-{rand}"
    assert machine != "0" * 12
    foreign.mkdir()
    result = write_soundtrack(models, request, options=OPTIONS, seed=0)
    assert sorted(out.iterdir()) == sorted([*result.outputs.all(), foreign])


def test_a_raw_stream_without_a_stated_length_is_measured(models, tmp_path: Path) -> None:
    # A raw .h264 stream (e.g. from a camera module) states no length: the sound must still
    # last as long as the video, not as long as asked for.
    scene = SyntheticScene(width=96, height=54, duration=1.2)
    frames = [image for image, _ in scene.frames()]
    video = write_video(tmp_path / "raw.h264", frames, fps=scene.fps, container="h264")
    _, masks = write_clip(tmp_path, SyntheticScene(width=96, height=54,
                                                   duration=2 * scene.duration))
    length = len(frames) / scene.fps
    assert probe_video(video).duration == pytest.approx(length)
    name, path = next(iter(masks.items()))
    for duration in (None, 2 * length):
        request = SoundtrackRequest(video, (SoundObject(name, MaskVideo(path), name),),
                                    tmp_path / f"out{duration}", duration=duration)
        result = write_soundtrack(models, request, options=OPTIONS, seed=0)
        assert len(read_flac(result.outputs.mix)) == round(length * result.plan.sampling_rate)
        ends = stream_ends(result.outputs.video)
        assert all(abs(end - length) <= 1024 / result.plan.sampling_rate
                   for end in ends["audio"])


@pytest.mark.parametrize("container", ["matroska", "webm"])
def test_sound_longer_than_the_video_does_not_lengthen_it(models, tmp_path: Path,
                                                          container: str) -> None:
    # Matroska states the length of its longest track: here the recorded sound, a second
    # longer than the video. The video's own length counts (and masks as long are enough).
    scene = SyntheticScene(width=96, height=54, duration=1.2)
    _, masks = write_clip(tmp_path, scene)
    frames = [image for image, _ in scene.frames()]
    length = len(frames) / scene.fps
    rate = 48000
    sound = 0.1 * np.sin(np.arange(round((length + 1.0) * rate)) / 10.0)
    webm = container == "webm"
    video = write_video(tmp_path / f"clip.{'webm' if webm else 'mkv'}", frames,
                        fps=scene.fps, codec="libvpx-vp9" if webm else "libx264",
                        audio=sound, audio_rate=rate, audio_codec="libopus" if webm else "aac")
    assert probe_video(video).duration == pytest.approx(length)
    name, path = next(iter(masks.items()))
    request = SoundtrackRequest(video, (SoundObject(name, MaskVideo(path), name),),
                                tmp_path / "out", duration=None)
    result = write_soundtrack(models, request, options=OPTIONS, seed=0)
    assert len(read_flac(result.outputs.mix)) == round(length * result.plan.sampling_rate)


def test_request_takes_string_paths_and_a_list_of_objects(tmp_path: Path) -> None:
    video, out = tmp_path / "clip.mp4", tmp_path / "out"
    names = ["a", "b", "c"]
    objects = [SoundObject(n, MaskVideo(tmp_path / f"{n}.mp4"), n) for n in names]
    request = SoundtrackRequest(str(video), objects, str(out))
    assert request.video == video and request.output_dir == out
    assert request.objects == tuple(objects)
    outputs = request.outputs()
    assert outputs.mix == out / "clip.flac"
    assert list(outputs.stems) == names
    assert all(path.parent == out for path in outputs.stems.values())


def test_mix_level_applies_one_gain_only_when_needed() -> None:
    rng = np.random.default_rng(0)
    quiet = [rng.uniform(-0.2, 0.2, 1000).astype(np.float32) for _ in range(2)]
    loud = [rng.uniform(-0.9, 0.9, 1000).astype(np.float32) for _ in range(3)]
    for stems in (quiet, loud):
        out = np.empty_like(stems[0])
        level = level_mix(stems, out)
        total = np.sum(stems, axis=0, dtype=np.float64)
        assert level.peak == pytest.approx(np.abs(total).max(), rel=1e-6)
        assert level.gain == (1.0 if level.peak <= MIX_PEAK else pytest.approx(
            MIX_PEAK / level.peak))
        np.testing.assert_allclose(out, level.gain * total, atol=1e-6)
        assert np.abs(out).max() <= MIX_PEAK + 1e-6


@pytest.mark.parametrize("stage", ["features", "sampling", "decoding", "writing"])
def test_a_cancelled_soundtrack_stops_at_its_next_check(models, tmp_path: Path, stage: str,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        ) -> None:
    """A token cancelled during a stage's first report stops the work at the next report
    (no later report arrives), raises CancelledError and leaves no file or folder behind."""
    from saganet.cancel import CancelledError, CancelToken

    scene = SyntheticScene(width=64, height=36, fps=25, duration=1.2)
    video, masks = write_clip(tmp_path, scene)
    before = set(tmp_path.rglob("*"))
    objects = tuple(SoundObject(name, MaskVideo(path), name) for name, path in masks.items())
    request = SoundtrackRequest(video, objects, tmp_path / "out" / "nested")
    token, reports, evaluations = CancelToken(), [], []
    network = models.network
    monkeypatch.setattr(network, "ode_wrapper", lambda *args, **kwargs: evaluations.append(
        len(reports)) or type(network).ode_wrapper(network, *args, **kwargs))

    def progress(name: str, done: int, total: int) -> None:
        reports.append((name, done))
        if name == stage and done > 0:
            token.cancel(f"stop in {stage}")

    with pytest.raises(CancelledError, match=f"stop in {stage}"):
        write_soundtrack(models, request, options=OPTIONS, progress=progress, cancel=token)
    first = next(k for k, (name, done) in enumerate(reports) if name == stage and done > 0)
    assert len(reports) == first + 1  # the next check stopped it
    assert set(tmp_path.rglob("*")) == before
    if stage == "sampling":
        # No network evaluation after the cancelling report (one per step: batched CFG).
        assert reports[-1] == ("sampling", 1) and OPTIONS.num_steps > 1
        assert evaluations == [first]
    reports.clear()
    with pytest.raises(CancelledError):  # a token cancelled beforehand: nothing starts
        write_soundtrack(models, request, options=OPTIONS, progress=progress, cancel=token)
    assert reports == [] and set(tmp_path.rglob("*")) == before


def test_a_cancelled_generate_stops_before_its_next_network_evaluation(
        models, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``generate(cancel=...)``: cancelled during step ``k``'s report, no network evaluation
    follows (one per step with batched CFG); an uncancelled token changes nothing."""
    from saganet.cancel import CancelledError, CancelToken

    scene = SyntheticScene(width=64, height=36, fps=25, duration=1.0)
    video, masks = write_clip(tmp_path, scene)
    inputs = load_video_inputs(video, next(iter(masks.values())), duration=scene.duration)
    models.set_duration(inputs.duration)
    batch = GenerationBatch(sync_frames=inputs.sync_frames[None], masks=inputs.masks[None],
                            clip_frames=inputs.clip_frames[None], texts=["a"])
    options = SamplingOptions(num_steps=OPTIONS.num_steps + 2)
    stop_at = options.num_steps // 2
    evaluations, token = [], CancelToken()
    network = models.network
    monkeypatch.setattr(network, "ode_wrapper", lambda *args, **kwargs: evaluations.append(
        1) or type(network).ode_wrapper(network, *args, **kwargs))

    def on_step(done: int) -> None:
        if done == stop_at:
            token.cancel()

    with pytest.raises(CancelledError):
        generate(models, batch, generator=torch.Generator().manual_seed(1), options=options,
                 on_step=on_step, cancel=token)
    assert len(evaluations) == stop_at
    plain = generate(models, batch, generator=torch.Generator().manual_seed(1),
                     options=options)
    checked = generate(models, batch, generator=torch.Generator().manual_seed(1),
                       options=options, cancel=CancelToken())
    assert torch.equal(plain.audio, checked.audio)


def test_an_object_takes_its_mask_video_as_a_path(models, tmp_path: Path) -> None:
    scene = SyntheticScene(width=64, height=36, duration=1.0)
    video, masks = write_clip(tmp_path, scene)
    name, path = next(iter(masks.items()))
    results = {}
    for kind, source in (("path", str(path)), ("mask_video", MaskVideo(path))):
        request = SoundtrackRequest(video, (SoundObject(name, source, "violin"),),
                                    tmp_path / kind, write_video=False)
        results[kind] = read_flac(write_soundtrack(models, request, options=OPTIONS).outputs.mix)
    assert np.array_equal(results["path"], results["mask_video"])
    with pytest.raises(UserInputError, match="masks must be a mask video's path"):
        SoundObject(name, np.zeros((3, 8, 8), bool), "violin")


def test_seeds_are_integers_of_any_type(models, tmp_path: Path) -> None:
    scene = SyntheticScene(width=64, height=36, duration=1.0)
    video, masks = write_clip(tmp_path, scene)
    objects = tuple(SoundObject(name, MaskVideo(path), name) for name, path in masks.items())
    request = SoundtrackRequest(video, objects, tmp_path / "out", write_video=False)
    mixes = [read_flac(write_soundtrack(models, request, options=OPTIONS, seed=seed,
                                        overwrite=True).outputs.mix)
             for seed in (5, np.int64(5))]
    assert np.array_equal(*mixes)
    # Object k draws from seed + k: the last object's seed must fit a torch generator too.
    for seed in (None, "5", 2.0, True, 2**63 - len(objects) + 1):
        with pytest.raises(UserInputError, match="seed must be"):
            write_soundtrack(models, request, options=OPTIONS, seed=seed, overwrite=True)
    write_soundtrack(models, request, options=OPTIONS, seed=2**63 - len(objects), overwrite=True)


@pytest.mark.parametrize("seed", [10**300, -(10**40), 2**63])
def test_a_huge_seed_is_refused_in_a_short_message(seed: int) -> None:
    with pytest.raises(UserInputError, match="seed must be") as info:
        check_seed(seed, 2)
    message = str(info.value)
    assert len(message) < 80 and (str(seed) in message or f"{seed:.3e}" in message)


def test_request_times_take_numpy_scalars_and_refuse_non_numbers(models,
                                                                 tmp_path: Path) -> None:
    scene = SyntheticScene(width=64, height=36, duration=2.0)
    video, masks = write_clip(tmp_path, scene)
    name, path = next(iter(masks.items()))
    objects = (SoundObject(name, MaskVideo(path), "violin"),)
    times = {"start": np.float64(0.25), "duration": np.float32(1.5), "overlap": np.float32(0.5)}
    request = SoundtrackRequest(video, objects, tmp_path / "out", write_video=False, **times)
    assert all(type(getattr(request, k)) is float for k in times)
    result = write_soundtrack(models, request, options=OPTIONS)
    assert result.segment.duration == pytest.approx(float(times["duration"]))
    for field, value in (("duration", "full"), ("start", None), ("overlap", "1"),
                         ("duration", True)):
        message = f"^{field} must be a (positive |non-negative )?number of seconds, got "
        with pytest.raises(UserInputError, match=message):
            SoundtrackRequest(video, objects, tmp_path / "out", **{field: value})


def test_too_little_left_after_start_is_one_error_without_a_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A start that leaves less than one Synchformer window: the error, not first a warning
    that a shorter run will be made instead."""
    window = SYNC_SEGMENT_FRAMES / SYNC_FPS
    scene = SyntheticScene(width=64, height=36, duration=3 * window)
    video, masks = write_clip(tmp_path, scene)
    length = probe_video(video).duration
    start = length - 0.5 * window
    request = SoundtrackRequest(video, (SoundObject("circle", MaskVideo(masks["circle"])),),
                                tmp_path / "out", start=start, duration=length)
    with caplog.at_level(logging.WARNING), pytest.raises(UserInputError) as raised:
        resolve_segment(request)
    assert str(raised.value) == (
        f"{video}: {length - start:.3f} s from {start:g} s is too short: need at least "
        f"{window:.2f} s (one Synchformer window)")
    assert not caplog.records
    # A duration asked for that is too short is named with its start too.
    short = dataclasses.replace(request, start=window, duration=0.5 * window)
    with pytest.raises(UserInputError, match=f": {0.5 * window:.3f} s from {window:g} s is "):
        resolve_segment(short)
    # Enough left: the shorter run goes ahead, with the warning.
    enough = length - 2 * window
    with caplog.at_level(logging.WARNING):
        segment = resolve_segment(dataclasses.replace(request, start=enough))
    assert segment.duration == pytest.approx(length - enough)
    assert [r.getMessage() for r in caplog.records if "holds only" in r.getMessage()]


@pytest.mark.parametrize("fps", [12, SYNC_FPS])
def test_masks_one_frame_short_at_their_own_rate_are_taken(tmp_path: Path, fps: int) -> None:
    """A mask video that ends one of its own frames before the video is taken (its last mask
    is held); two frames short is refused. The allowance was one 25 fps frame whatever the
    mask's rate, so a 12 fps mask one frame short (0.083 s) was refused."""
    scene = SyntheticScene(width=64, height=36, duration=2.0)
    video, _ = write_clip(tmp_path, scene)
    length = probe_video(video).duration
    full = round(fps * length)
    for missing in (1, 2):
        path = write_mask_video(tmp_path / f"short{missing}.mp4",
                                (np.ones((36, 64), bool) for _ in range(full - missing)),
                                fps=fps)
        request = SoundtrackRequest(video, (SoundObject("circle", MaskVideo(path)),),
                                    tmp_path / "out")
        if missing == 1:
            assert resolve_segment(request).duration == pytest.approx(length)
        else:
            with pytest.raises(UserInputError, match=r"last .* s but the video is used up to"):
                resolve_segment(request)


def test_the_shortest_part_at_the_end_of_a_video_is_generated(models, tmp_path: Path) -> None:
    # The last 16 frames (one Synchformer window): the length to the end, video length minus
    # start in floats, lands a hair below 0.64 s here (5.0 - 4.36), which was refused as
    # "0.640 s is too short: need at least 0.64 s".
    scene = SyntheticScene(width=96, height=54, duration=5.0)
    video, masks = write_clip(tmp_path, scene)
    window = SYNC_SEGMENT_FRAMES
    start = (scene.num_frames - window) / scene.fps
    assert (scene.num_frames / scene.fps - start) * SYNC_FPS < window  # the rounding at stake
    name, path = next(iter(masks.items()))
    for end in (None, scene.num_frames / scene.fps):
        request = SoundtrackRequest(video, (SoundObject(name, MaskVideo(path), name),),
                                    tmp_path / f"out{end}", start=start,
                                    duration=None if end is None else end - start)
        result = write_soundtrack(models, request, options=OPTIONS, seed=0)
        length = window / SYNC_FPS
        assert result.segment.duration == pytest.approx(length)
        assert len(read_flac(result.outputs.mix)) == round(length * result.plan.sampling_rate)
