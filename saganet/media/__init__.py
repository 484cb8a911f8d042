"""Media I/O at run time: videos and mask videos in (``video``), soundtracks in (``audio``),
results out (``output``: FLAC or WAV, and MP4). PyAV only."""

from saganet.media.output import write_audio, write_flac, write_video_with_audio, write_wav
from saganet.media.video import (
    FrameRequest,
    VideoFrames,
    VideoInfo,
    VideoInputs,
    load_video_frames,
    load_video_inputs,
    probe_video,
    read_frame_sets,
    read_frames,
)

__all__ = [
    "FrameRequest",
    "VideoFrames",
    "VideoInfo",
    "VideoInputs",
    "load_video_frames",
    "load_video_inputs",
    "probe_video",
    "read_frame_sets",
    "read_frames",
    "write_audio",
    "write_flac",
    "write_video_with_audio",
    "write_wav",
]
