"""Fixtures for the segmentation tests: tiny random SAM 2 folders, one torch thread."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.shared import DUET, need


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
    need(DUET)
    return DUET
