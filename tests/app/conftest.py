"""Fixtures of the app tests: debug weights, tiny random SAM 2 / SAM 3 folders, a short
synthetic clip, and the app launched in-process on 127.0.0.1 with a ``gradio_client``."""

from __future__ import annotations

from pathlib import Path

import pytest

from saganet.example import SyntheticScene
from tests.videos import write_video


@pytest.fixture(scope="session")
def weights_dir(tmp_path_factory) -> Path:
    """A weights cache; the debug variant's random weights are generated into it on first
    load."""
    return tmp_path_factory.mktemp("weights")


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
def server(engine, tmp_path_factory):
    """The app served in-process on 127.0.0.1 (closed, with its files, after the module).

    Each module's app gets its own Gradio file cache: Gradio names cached files by their
    content, so with one shared cache, the app of another test worker closing (which empties
    its cache) removed the same clip uploaded here.
    """
    from saganet.app.limits import Limits
    from saganet.app.server import AppServer

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRADIO_TEMP_DIR", str(tmp_path_factory.mktemp("gradio")))
        app = AppServer(engine, Limits(max_seconds=10.0, max_objects=3, max_steps=25))
        app.launch(block=False)
        yield app
        app.close()
