"""Writing FLAC and MP4 outputs: round trips, stream copy, overlay, no overwrite, no leftovers."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch

from saganet.errors import UserInputError
from saganet.example import SyntheticScene
from saganet.media import output as media_out
from saganet.media.output import AudioTrack, write_flac, write_video_with_audio
from tests.media.test_video_io import box_frames, level_frames, write_video

SR = 44100
AUDIO = 0.5 * torch.sin(torch.arange(221184) / 20.0)[None]  # (1, L), 5.0155 s


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 6 s H.264 video (with B-frames: libx264's defaults) of moving shapes."""
    scene = SyntheticScene(width=160, height=96, duration=6.0)
    return write_video(tmp_path_factory.mktemp("src") / "shapes.mp4",
                       (image for image, _ in scene.frames()), fps=scene.fps)


def read_audio(path: Path) -> tuple[np.ndarray, int, str]:
    """Mono samples, sampling rate and codec of a file's audio stream."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        assert stream.channels == 1
        samples = np.concatenate([f.to_ndarray()[0] for f in container.decode(stream)])
        return samples, stream.sample_rate, stream.codec_context.name


def video_packets(path: Path) -> list[bytes]:
    """The coded video packets of a file, in order."""
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(container.streams.video[0]) if p.size]


def stream_facts(path: Path) -> dict[str, dict]:
    """Per stream type: codec, size, decoded frames and duration (s), packets, rotation."""
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        frames = list(container.decode(video))
        times = [f.time for f in frames]
        step = times[1] - times[0] if len(times) > 1 else 0
        facts = {"video": {"codec": video.codec_context.name, "width": video.width,
                           "height": video.height, "pix_fmt": video.codec_context.pix_fmt,
                           "packets": video_packets(path), "frames": frames,
                           "seconds": times[-1] - times[0] + step,
                           "rotation": frames[0].rotation}}
    samples, rate, codec = read_audio(path)
    facts["audio"] = {"codec": codec, "rate": rate, "seconds": len(samples) / rate}
    return facts


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("shape", [(1, -1), (-1,)])
def test_flac_round_trip_is_24_bit_mono(tmp_path: Path, shape: tuple[int, ...]) -> None:
    audio = AUDIO.reshape(shape)
    path = write_flac(tmp_path / "out.flac", audio, SR)
    samples, rate, codec = read_audio(path)
    assert (rate, codec, samples.shape) == (SR, "flac", (AUDIO.shape[1],))
    # 24 bits: errors below one 24-bit step (16 bits would be 256 times coarser).
    error = np.abs(samples / 2**31 - AUDIO[0].numpy()).max()
    assert error <= 1 / 2**23
    assert leftovers(tmp_path) == []


def test_flac_clips_out_of_range_samples(tmp_path: Path) -> None:
    path = write_flac(tmp_path / "loud.flac", torch.tensor([2.0, -3.0, 0.25]), SR)
    samples, _, _ = read_audio(path)
    np.testing.assert_allclose(samples / 2**31, [1, -1, 0.25], atol=2 / 2**23)


def test_no_overwrite_without_the_flag(tmp_path: Path, source: Path) -> None:
    path = tmp_path / "out.flac"
    path.write_bytes(b"precious")
    with pytest.raises(UserInputError, match="overwrite") as err:
        write_flac(path, AUDIO, SR)
    assert err.value.path == str(path) and path.read_bytes() == b"precious"
    mp4 = tmp_path / "out.mp4"
    mp4.write_bytes(b"precious")
    with pytest.raises(UserInputError, match="overwrite"):
        write_video_with_audio(source, AUDIO, SR, mp4, 5.0)
    assert mp4.read_bytes() == b"precious"
    write_flac(path, AUDIO, SR, overwrite=True)
    assert read_audio(path)[0].shape == (AUDIO.shape[1],)


def test_failure_leaves_no_temporary_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          source: Path) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(media_out, "_audio_frame", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        write_video_with_audio(source, AUDIO, SR, tmp_path / "out.mp4", 5.0)
    monkeypatch.setattr(av.AudioFrame, "from_ndarray", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        write_flac(tmp_path / "out.flac", AUDIO, SR)
    assert list(tmp_path.iterdir()) == []


def test_mp4_copies_the_video_stream(tmp_path: Path, source: Path) -> None:
    path = write_video_with_audio(source, AUDIO, SR, tmp_path / "out.mp4", 5.0)
    out = stream_facts(path)
    video = out["video"]
    with av.open(str(source)) as container:
        stream = container.streams.video[0]
        original = (stream.codec_context.name, stream.width, stream.height)
    assert (video["codec"], video["width"], video["height"]) == original
    # No re-encoding: the coded packets are the source's, byte for byte, up to the cut.
    assert video["packets"] == video_packets(source)[: len(video["packets"])]
    assert video["seconds"] == pytest.approx(5.0, abs=0.05)
    assert out["audio"]["codec"] == "aac" and out["audio"]["rate"] == SR
    assert out["audio"]["seconds"] == pytest.approx(AUDIO.shape[1] / SR, abs=0.03)
    assert leftovers(tmp_path) == []


@pytest.mark.skipif("libx265" not in av.codecs_available, reason="no HEVC encoder")
@pytest.mark.parametrize("tag", ["hvc1", "hev1"])
def test_mp4_copy_keeps_the_hevc_tag(tmp_path: Path, tag: str) -> None:
    # iPhones write HEVC as "hvc1"; the copy was "hev1" (the muxer's default), which
    # QuickTime, Safari and iOS do not play.
    fps = 30
    # x265 corrupts its heap on frames much smaller than this.
    src = write_video(tmp_path / "IMG_0001.MOV", box_frames(fps, 64, 96, (0, 0, 0.5, 0.5)),
                      fps=fps, codec="libx265", options={"x265-params": "log-level=error"},
                      codec_tag=tag, container="mov")
    seconds = 0.5
    path = write_video_with_audio(src, AUDIO[:, : round(seconds * SR)], SR,
                                  tmp_path / "out.mp4", seconds)
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_tag == tag
    assert video_packets(path) == video_packets(src)[: len(video_packets(path))]


@pytest.mark.parametrize(("name", "codec"), [("av1.mp4", "libsvtav1"),
                                              ("vp9.webm", "libvpx-vp9")])
def test_mp4_copies_other_codecs_browsers_play(tmp_path: Path, name: str, codec: str) -> None:
    if codec not in av.codecs_available:
        pytest.skip(f"no {codec} encoder")
    src = write_video(tmp_path / name, box_frames(20, 64, 64, (0, 0, 0.5, 0.5)), codec=codec)
    path = write_video_with_audio(src, AUDIO[:, : SR // 2], SR, tmp_path / "out.mp4", 0.5)
    with av.open(str(src)) as container:
        original = container.streams.video[0].codec_context.codec.canonical_name
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.codec.canonical_name == original
    facts = stream_facts(path)["video"]
    assert facts["packets"] == video_packets(src)[: len(facts["packets"])]
    assert len(facts["frames"]) == len(facts["packets"])  # every copied frame decodes


def test_mp4_copy_cuts_at_the_duration(tmp_path: Path, source: Path) -> None:
    path = write_video_with_audio(source, AUDIO[:, : 2 * SR], SR, tmp_path / "cut.mp4", 2.0)
    facts = stream_facts(path)
    # Cut on packets: every kept frame decodes, and the video lasts about 2 s.
    assert facts["video"]["seconds"] == pytest.approx(2.0, abs=0.15)
    assert len(facts["video"]["frames"]) == len(facts["video"]["packets"])
    assert facts["audio"]["seconds"] == pytest.approx(2.0, abs=0.03)


def test_mp4_copy_keeps_the_rotation(tmp_path: Path) -> None:
    src = write_video(tmp_path / "rotated.mp4", level_frames(25, 32, 64), rotation=90)
    path = write_video_with_audio(src, AUDIO[:, :SR], SR, tmp_path / "out.mp4", 1.0)
    facts = stream_facts(path)
    assert facts["video"]["packets"] == video_packets(src)
    assert facts["video"]["rotation"] == 90


def test_overlay_reencodes_and_tints_the_object(tmp_path: Path) -> None:
    src = write_video(tmp_path / "src.mp4", level_frames(25, 36, 64))
    masks = torch.zeros(25, 1, 224, 224)
    masks[:, :, :, 112:] = 1  # the right half of the picture
    path = write_video_with_audio(src, AUDIO[:, :SR], SR, tmp_path / "overlay.mp4", 1.0,
                                  overlay_masks=masks, overlay_color=(255, 0, 0),
                                  overlay_alpha=0.5)
    facts = stream_facts(path)
    video = facts["video"]
    assert (video["codec"], video["pix_fmt"], video["width"], video["height"]) == (
        "h264", "yuv420p", 64, 36)
    assert len(video["frames"]) == 25
    rgb = video["frames"][10].to_ndarray(format="rgb24").astype(float)
    level = 8 + 4 * 10
    left, right = rgb[:, :28].mean(axis=(0, 1)), rgb[:, 36:].mean(axis=(0, 1))
    np.testing.assert_allclose(left, [level] * 3, atol=4)
    np.testing.assert_allclose(right, [(level + 255) / 2, level / 2, level / 2], atol=6)
    assert facts["audio"]["codec"] == "aac"


@pytest.mark.parametrize(("name", "codec", "pix_fmt", "container"), [
    ("huffyuv.avi", "huffyuv", "yuv422p", "avi"),  # a codec MP4 cannot hold
    ("raw.h264", "libx264", "yuv420p", "h264"),  # packets without timestamps
    # Codecs MP4 holds but browsers do not play there: the copy did not play in the web app.
    ("mjpeg.mp4", "mjpeg", "yuvj420p", "mp4"),
    ("png.mov", "png", "rgb24", "mov"),
    ("ffv1.mkv", "ffv1", "yuv420p", "matroska"),
    ("mpeg4.mp4", "mpeg4", "yuv420p", "mp4"),
])
def test_stream_that_cannot_be_copied_is_reencoded(tmp_path: Path, name: str, codec: str,
                                                   pix_fmt: str, container: str) -> None:
    src = write_video(tmp_path / name, box_frames(20, 32, 48, (0, 0, 0.5, 0.5)), codec=codec,
                      pix_fmt=pix_fmt, container=container)
    path = write_video_with_audio(src, AUDIO[:, :SR], SR, tmp_path / "out.mp4", 0.5)
    video = stream_facts(path)["video"]
    assert (video["codec"], video["width"], video["height"]) == ("h264", 48, 32)
    assert len(video["frames"]) == 13  # frames shown before 0.5 s at 25 fps: 0 .. 0.48 s
    corner = video["frames"][0].to_ndarray(format="rgb24")[:16, :24].mean()
    assert corner > 240


# FFmpeg's numbers: BT.2020 primaries (9), PQ (16) or HLG (18) transfer, BT.2020 NCL matrix (9),
# limited (1) or full (2) range; BT.601 matrix (5, as JPEG) in full range.
@pytest.mark.parametrize(("pix_fmt", "tags"), [
    ("yuv420p10le", {"color_primaries": 9, "color_trc": 16, "colorspace": 9, "color_range": 1}),
    ("yuv420p", {"color_primaries": 9, "color_trc": 18, "colorspace": 9, "color_range": 2}),
    ("yuv420p", {"color_primaries": 1, "color_trc": 1, "colorspace": 5, "color_range": 2}),
])
@pytest.mark.parametrize("overlay", [False, True])
def test_reencoded_video_keeps_the_colour_tags(tmp_path: Path, pix_fmt: str,
                                               tags: dict[str, int], overlay: bool) -> None:
    # Re-encoding dropped them: an HDR video played as SDR, washed out.
    rgb = [(200, 40, 90), (30, 160, 220), (128, 128, 128)]
    frames = [np.full((32, 48, 3), color, np.uint8) for color in rgb for _ in range(5)]
    src = write_video(tmp_path / "tagged.mkv", frames, pix_fmt=pix_fmt, color_tags=tags)
    fps, start = 25, 0.0 if overlay else 0.2  # either re-encodes
    seconds = len(frames) / fps - start
    masks = torch.zeros(len(frames), 1, 8, 8) if overlay else None
    path = write_video_with_audio(src, AUDIO[:, :SR], SR, tmp_path / "out.mp4", seconds,
                                  start=start, overlay_masks=masks)
    with av.open(str(path)) as container:
        context = container.streams.video[0].codec_context
        assert context.name == "h264"
        assert {name: getattr(context, name) for name in tags} == tags
        written = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    with av.open(str(src)) as container:
        shown = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    # The pixels are coded with the matrix and range the tags say: the colours stay.
    skipped = round(start * fps)
    assert len(written) == len(shown) - skipped
    for out, original in zip(written, shown[skipped:], strict=True):
        np.testing.assert_allclose(out.mean(axis=(0, 1)), original.mean(axis=(0, 1)), atol=3)


@pytest.mark.parametrize(("height", "width"), [(40, 1), (1, 40), (33, 47)])
def test_reencoded_video_of_any_size(tmp_path: Path, height: int, width: int) -> None:
    # yuv420p takes even sizes only; a 1-pixel side became 0, which the encoder refused.
    fps, seconds = 25, 0.4
    frames = [np.full((height, width, 3), 8 * k, np.uint8) for k in range(round(fps * seconds))]
    src = write_video(tmp_path / "thin.mov", frames, fps=fps, codec="png", pix_fmt="rgb24")
    start = 1 / fps  # a later start re-encodes
    path = write_video_with_audio(src, AUDIO[:, : round(seconds * SR)], SR,
                                  tmp_path / "out.mp4", seconds - start, start=start)
    video = stream_facts(path)["video"]
    for written, stored in ((video["width"], width), (video["height"], height)):
        assert written % 2 == 0 and abs(written - stored) == stored % 2
    assert len(video["frames"]) == len(frames) - 1


def test_bad_source_video_is_a_user_error(tmp_path: Path) -> None:
    text = tmp_path / "text.mp4"
    text.write_text("not a video")
    with pytest.raises(UserInputError) as err:
        write_video_with_audio(text, AUDIO, SR, tmp_path / "out.mp4", 5.0)
    assert err.value.path == str(text)
    assert not (tmp_path / "out.mp4").exists() and leftovers(tmp_path) == []


def test_outputs_under_a_relative_name_with_a_colon(tmp_path: Path, source: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # FFmpeg took "take" in "take:2/..." for a protocol: after all the work, "Protocol not
    # found" (the hidden temporary names beside the outputs start the same way).
    folder = Path("take:2")
    (tmp_path / folder).mkdir()
    monkeypatch.chdir(tmp_path)
    seconds = 1.0
    audio = AUDIO[:, : round(seconds * SR)]
    written = [write_flac(folder / "a.flac", audio, SR),
               write_video_with_audio(source, audio, SR, folder / "copy.mp4", seconds),
               write_video_with_audio(source, audio, SR, folder / "encoded.mp4", seconds,
                                      start=seconds),
               media_out.write_mask_video(folder / "mask.mp4",
                                          [np.ones((16, 16), bool)] * round(seconds * 25))]
    for path in written:
        with av.open(str(tmp_path / path)) as container:
            assert container.streams
    assert read_audio(tmp_path / written[0])[0].shape[0] == audio.shape[1]
    assert leftovers(tmp_path / folder) == []


def test_tracks_are_titled_and_the_first_is_the_default(tmp_path: Path, source: Path) -> None:
    titles = ["mix", "circle", "square"]
    tracks = [AudioTrack(AUDIO[0, : 2 * SR] * (k + 1) / len(titles), title)
              for k, title in enumerate(titles)]
    path = write_video_with_audio(source, tracks, SR, tmp_path / "tracks.mp4", 2.0)
    with av.open(str(path)) as container:
        audio = list(container.streams.audio)
        assert [s.metadata.get("handler_name") for s in audio] == titles
        assert [bool(s.disposition & av.stream.Disposition.default) for s in audio] == [
            True] + [False] * (len(titles) - 1)
    levels = []
    for index in range(len(titles)):
        with av.open(str(path)) as container:
            frames = container.decode(container.streams.audio[index])
            levels.append(np.abs(np.concatenate([f.to_ndarray()[0] for f in frames])).max())
    # Each track holds its own samples (they differ in level here).
    assert levels == sorted(levels) and levels[0] < levels[-1] * 0.8


def test_start_cuts_the_video_and_keeps_the_length(tmp_path: Path, source: Path) -> None:
    duration = 2.0
    path = write_video_with_audio(source, AUDIO[:, : round(duration * SR)], SR,
                                  tmp_path / "later.mp4", duration, start=2.5)
    facts = stream_facts(path)
    assert facts["video"]["seconds"] == pytest.approx(duration, abs=0.05)
    assert facts["video"]["frames"][0].time == pytest.approx(0.0, abs=1e-3)
    # The first written frame is the source's frame at 2.5 s.
    with av.open(str(source)) as container:
        expected = next(f for f in container.decode(video=0) if f.time >= 2.5 - 1e-3)
        expected = expected.to_ndarray(format="rgb24").astype(int)
    first = facts["video"]["frames"][0].to_ndarray(format="rgb24").astype(int)
    assert np.abs(first - expected).mean() < 4


def test_flac_from_a_memory_mapped_file(tmp_path: Path) -> None:
    samples = np.lib.format.open_memmap(tmp_path / "audio.npy", mode="w+", dtype=np.float32,
                                        shape=(3 * SR + 17,))
    samples[:] = np.sin(np.arange(len(samples)) / 7.0) * 0.4
    path = write_flac(tmp_path / "out.flac", samples, SR)
    decoded, rate, _ = read_audio(path)
    assert rate == SR and decoded.shape == samples.shape
    # s32 samples carrying 24 bits: one 24-bit step is 2 ** -23 of full scale.
    assert np.abs(decoded / 2.0**31 - samples).max() <= 2.0**-23


@pytest.mark.parametrize("container", ["mpegts", "mp4"])
def test_mp4_copy_of_a_late_starting_video_starts_with_its_audio(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, container: str) -> None:
    # MPEG-TS files (camcorders' .mts, broadcast and HLS recordings) start their timestamps
    # later than 0; the generated sound starts at the first frame, and so must the video.
    scene = SyntheticScene(width=96, height=64, duration=2.0)
    images = [image for image, _ in scene.frames()]
    delay_ms = 1400
    step_ms = round(1000 / scene.fps)
    src = write_video(tmp_path / f"late.{'ts' if container == 'mpegts' else 'mp4'}", images,
                      fps=scene.fps, container=container,
                      pts_ms=[delay_ms + step_ms * k for k in range(len(images))])
    with av.open(str(src)) as source:
        assert source.streams.video[0].start_time is not None
        assert float(source.start_time / av.time_base) >= delay_ms / 1000 - 0.01
    duration = len(images) / scene.fps

    def reencoded(*args: object, **kwargs: object) -> None:
        raise AssertionError("the video stream was re-encoded, not copied")

    monkeypatch.setattr(media_out, "_write_reencoded", reencoded)
    path = write_video_with_audio(src, AUDIO[:, : round(duration * SR)], SR,
                                  tmp_path / "out.mp4", duration)
    facts = stream_facts(path)
    with av.open(str(path)) as out:
        starts = [float(s.start_time * s.time_base) for s in out.streams]
    assert starts == pytest.approx([0.0] * len(starts), abs=0.001)
    assert facts["video"]["frames"][0].time == pytest.approx(0.0, abs=0.001)
    assert facts["video"]["seconds"] == pytest.approx(duration, abs=0.05)


def test_mp4_copy_of_a_trimmed_mp4_keeps_its_first_frame_and_length(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: Path) -> None:
    # An MP4 cut without re-encoding starts with packets its edit list hides (decoded as
    # references, never shown): the copy starts at the first frame shown, and lasts as long.
    trimmed = tmp_path / "trimmed.mp4"
    with av.open(str(source)) as src, av.open(str(trimmed), "w") as out:
        stream = src.streams.video[0]
        copy = out.add_stream_from_template(stream)
        hidden = round(0.5 / stream.time_base)
        for packet in src.demux(stream):
            if packet.dts is None:
                continue
            packet.pts -= hidden
            packet.dts -= hidden
            packet.stream = copy
            out.mux(packet)
    with av.open(str(trimmed)) as container:
        assert any(p.is_discard for p in container.demux(video=0))
    with av.open(str(trimmed)) as container:
        shown = [f.to_ndarray(format="rgb24").astype(int) for f in container.decode(video=0)]
        period = float(1 / container.streams.video[0].average_rate)

    def reencoded(*args: object, **kwargs: object) -> None:
        raise AssertionError("the video stream was re-encoded, not copied")

    monkeypatch.setattr(media_out, "_write_reencoded", reencoded)
    duration = 2.0
    path = write_video_with_audio(trimmed, AUDIO[:, : round(duration * SR)], SR,
                                  tmp_path / "out.mp4", duration)
    facts = stream_facts(path)
    frames = facts["video"]["frames"]
    assert frames[0].time == pytest.approx(0.0, abs=0.001)
    assert np.array_equal(frames[0].to_ndarray(format="rgb24"), shown[0])
    assert facts["video"]["seconds"] == pytest.approx(duration, abs=2 * period)


@pytest.mark.parametrize("channels", [1, 2])
def test_wav_holds_the_flac_samples(tmp_path: Path, channels: int) -> None:
    """``write_audio`` picks the type by suffix; WAV and FLAC hold the same 24-bit samples."""
    from saganet.media.output import write_audio
    from tests.videos import read_audio as read_channels

    audio = np.random.default_rng(channels).uniform(-1, 1, (channels, 3000)).astype(np.float32)
    files = {suffix: write_audio(tmp_path / f"a{suffix}", audio, SR)
             for suffix in (".wav", ".flac")}
    (wav, wav_rate), (flac, flac_rate) = (read_channels(files[s]) for s in (".wav", ".flac"))
    assert wav_rate == flac_rate == SR and wav.shape == audio.shape
    np.testing.assert_array_equal(wav, flac)
    np.testing.assert_allclose(wav, audio, atol=2**-23)
    with av.open(str(files[".wav"])) as container:
        assert container.format.name == "wav"
        assert container.streams.audio[0].codec_context.name == "pcm_s24le"
    with pytest.raises(ValueError, match=r"\.flac or \.wav"):
        write_audio(tmp_path / "a.mp3", audio, SR)


@pytest.mark.parametrize("suffix", [".flac", ".wav", ".mp4"])
def test_tags_are_written_into_the_file(tmp_path: Path, source: Path, suffix: str) -> None:
    """Every writer stores the file-level ``tags`` (here the ``comment`` key the settings use,
    which WAV's INFO list holds too), non-ASCII text included; none without them."""
    from saganet.media.output import write_audio

    comment = "prompt: violín \u266a, seed 7"

    def write(path: Path, tags: dict[str, str] | None) -> Path:
        if suffix == ".mp4":
            return write_video_with_audio(source, AUDIO, SR, path, 1.0, tags=tags)
        return write_audio(path, AUDIO, SR, tags=tags)

    tagged = write(tmp_path / f"tagged{suffix}", {"comment": comment})
    plain = write(tmp_path / f"plain{suffix}", None)
    with av.open(str(tagged)) as container:
        assert container.metadata.get("comment") == comment
    with av.open(str(plain)) as container:
        assert "comment" not in container.metadata
    if suffix != ".mp4":
        # Tags change no sample.
        np.testing.assert_array_equal(read_audio(tagged)[0], read_audio(plain)[0])


@pytest.mark.parametrize("channels", [1, 2])
def test_a_wav_with_a_time_reference_is_a_broadcast_wav(tmp_path: Path, channels: int) -> None:
    """``time_reference``: the WAV gets a ``bext`` chunk holding it (where editors place
    the file), next to the ``comment``; the samples are those of the plain WAV. FLAC has no
    such field, so ``write_audio`` leaves it out there."""
    from saganet.media.output import write_audio, write_wav

    audio = AUDIO.repeat(channels, 1)
    at = 7 * SR // 3 + 1
    spotted = write_wav(tmp_path / "spotted.wav", audio, SR, tags={"comment": "c"},
                        time_reference=at)
    plain = write_wav(tmp_path / "plain.wav", audio, SR)
    with open(spotted, "rb") as f:
        assert b"bext" in f.read(4096)
    with open(plain, "rb") as f:
        assert b"bext" not in f.read(4096)
    with av.open(str(spotted)) as container:
        assert int(container.metadata["time_reference"]) == at
        assert container.metadata.get("comment") == "c"
    np.testing.assert_array_equal(_samples(spotted), _samples(plain))
    assert _samples(spotted).shape[0] == channels
    same = write_audio(tmp_path / "same.wav", audio, SR, time_reference=at)
    with av.open(str(same)) as container:
        assert int(container.metadata["time_reference"]) == at
    flac = write_audio(tmp_path / "a.flac", audio, SR, time_reference=at)
    with av.open(str(flac)) as container:
        assert "time_reference" not in container.metadata
    for bad in (-1, True, 2**64):
        with pytest.raises(ValueError, match="sample count"):
            write_wav(tmp_path / "bad.wav", audio, SR, time_reference=bad)


def _samples(path: Path) -> np.ndarray:
    """``(C, L)`` samples of a file's audio stream."""
    from tests.videos import read_audio as read_channels

    return read_channels(path)[0]
