"""Fixtures of the app tests: debug weights, tiny random SAM 2 / SAM 3 folders, a short
synthetic clip, and the app launched in-process on 127.0.0.1 with a ``gradio_client``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from saganet.example import SyntheticScene
from tests.videos import write_video


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny models on a loaded machine run faster on one intra-op thread.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def weights_dir(tmp_path_factory) -> Path:
    """A weights cache; the debug variant's random weights are generated into it on first
    load."""
    return tmp_path_factory.mktemp("weights")


@pytest.fixture(scope="session")
def sam2_folder(tmp_path_factory) -> Path:
    """A tiny random SAM 2 video model that always reports the object present."""
    from saganet.segment.debug_models import write_tiny_sam2

    return write_tiny_sam2(tmp_path_factory.mktemp("sam2") / "model", object_present=True)


@pytest.fixture(scope="session")
def sam3_folder(tmp_path_factory) -> Path:
    """A tiny random SAM 3 (phrases) that finds every phrase."""
    from saganet.segment.debug_models import write_tiny_sam3

    return write_tiny_sam3(tmp_path_factory.mktemp("sam3") / "model", object_present=True)


@pytest.fixture(scope="session")
def scene() -> SyntheticScene:
    return SyntheticScene(width=192, height=108, fps=25, duration=2.0)


@pytest.fixture(scope="session")
def clip(tmp_path_factory, scene) -> Path:
    """A short synthetic video of two moving shapes."""
    frames = (image for image, _ in scene.frames())
    return write_video(tmp_path_factory.mktemp("clip") / "shapes.mp4", frames, fps=scene.fps)


@pytest.fixture(scope="session")
def engine(weights_dir, sam2_folder, sam3_folder):
    """The debug variant with the tiny trackers, loaded once for the session."""
    from saganet.app.engine import Engine, ModelSettings

    engine = Engine(ModelSettings(variant="debug", weights_dir=weights_dir, device="cpu",
                                  offline=True, segment_model=str(sam2_folder),
                                  text_model=sam3_folder))
    engine.preload()
    return engine


@pytest.fixture(scope="module")
def server(engine):
    """The app served in-process on 127.0.0.1 (closed, with its files, after the module)."""
    from saganet.app.limits import Limits
    from saganet.app.server import AppServer

    app = AppServer(engine, Limits(max_seconds=10.0, max_objects=3, max_steps=25))
    app.launch(block=False)
    yield app
    app.close()
