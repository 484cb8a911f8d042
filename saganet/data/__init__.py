"""Data: reading videos and masks (``video``), writing results (``media_out``), datasets."""

from saganet.data.media_out import write_flac, write_video_with_audio
from saganet.data.video import (
    ClipInputs,
    FrameRequest,
    VideoFrames,
    VideoInfo,
    load_clip,
    load_video_frames,
    probe_video,
    read_frame_sets,
    read_frames,
)

__all__ = [
    "ClipInputs",
    "FrameRequest",
    "VideoFrames",
    "VideoInfo",
    "load_clip",
    "load_video_frames",
    "probe_video",
    "read_frame_sets",
    "read_frames",
    "write_flac",
    "write_video_with_audio",
]
