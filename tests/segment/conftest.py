"""Fixtures for the segmentation tests: a SAM 2 model that never finds the object, the duet
video (the tiny models that find everything are in tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.shared import DUET, need


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
