"""Fixtures for the segmentation tests: tiny random SAM 2 folders, one torch thread."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from tests.conftest import EXAMPLES

DUET_VIDEO = EXAMPLES / "Vid_09_Jesus_tpt_vn_159092_164092.mp4"


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny models on a loaded machine run several times faster on one intra-op thread.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def sam2_folder(tmp_path_factory) -> Path:
    """A tiny random SAM 2 video model that always reports the object present."""
    from saganet.segment.debug_models import write_tiny_sam2

    return write_tiny_sam2(tmp_path_factory.mktemp("sam2") / "present", object_present=True)


@pytest.fixture(scope="session")
def sam2_absent_folder(tmp_path_factory) -> Path:
    """A tiny random SAM 2 video model that never finds the object."""
    from saganet.segment.debug_models import write_tiny_sam2

    return write_tiny_sam2(tmp_path_factory.mktemp("sam2") / "absent", object_present=False)


@pytest.fixture
def duet_video() -> Path:
    """The shared duet example; skips when ../shared is absent (never under CI=true)."""
    if not DUET_VIDEO.is_file():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{DUET_VIDEO} is missing under CI")
        pytest.skip(f"{DUET_VIDEO} not found (../shared is absent)")
    return DUET_VIDEO
