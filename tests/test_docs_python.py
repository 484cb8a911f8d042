"""The Python examples of the user documentation run, as written, offline.

Every fenced ``python`` block of README.md and docs/*.md belongs to a document that is either
run here or listed in :data:`NOT_RUN` with the reason; a document that gains its first Python
block fails :func:`test_every_document_with_python_is_classified` until it is sorted.

The blocks of one document run in order in one namespace, as a reader pastes them into a
notebook, in a fresh folder holding the files they name (a synthetic two-shape clip under the
names ``duet.mp4``, ``violin_mask.mp4`` ...). Only what cannot work here is changed, the same
way in every block: the published variant becomes ``debug`` (tiny random weights made in a
temporary cache, nothing downloaded), ``cuda`` becomes ``cpu`` and bf16 becomes fp32. A
traceback names the document and its line.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from saganet.example import SyntheticScene, synthetic_example

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# What cannot run on a machine without weights, GPU or network; an offline twin is named.
OFFLINE = [('"saganet_small"', '"debug"'), ('"cuda"', '"cpu"'), ("torch.bfloat16", "torch.float32")]
NOT_RUN = {
    "docs/app.md": "talks to a running web app (tests/app run the same requests)",
    "docs/evaluation.md": "needs folders of generated and real audio (tests/evaluation)",
    "docs/model.md": "fragments on the published weight files (tests/model, tests/features, "
                     "tests/codec cover each call)",
    "docs/segmentation.md": "downloads SAM 2.1 (tests/segment run it on tiny SAM folders)",
    "docs/weights.md": "downloads the published files (tests/test_weights.py)",
}


@dataclass(frozen=True)
class Block:
    """One fenced ``python`` block.

    Args:
        doc: path relative to the repository.
        line: line of its first code line.
        code: the code as written.
    """

    doc: str
    line: int
    code: str


def python_blocks(doc: Path) -> list[Block]:
    """The fenced ``python`` blocks of a Markdown file, in order."""
    blocks, code, start = [], None, 0
    for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), start=1):
        stripped = line.strip()
        if code is None and re.fullmatch(r"```\s*python", stripped):
            code, start = [], number + 1
        elif code is not None and stripped.startswith("```"):
            blocks.append(Block(str(doc.relative_to(REPO)), start, "\n".join(code) + "\n"))
            code = None
        elif code is not None:
            code.append(line)
    return blocks


def offline(code: str) -> str:
    for published, here in OFFLINE:
        code = code.replace(published, here)
    return code


def _check_readme(namespace: dict) -> None:
    outputs = namespace["result"].outputs
    assert all(path.stat().st_size > 0 for path in [outputs.mix, *outputs.stems.values()])


def _check_generation(namespace: dict) -> None:
    audio, models = namespace["result"].audio, namespace["models"]
    assert audio.shape == (1, 1, models.sequence.num_audio_samples)


def _check_video_io(namespace: dict) -> None:
    assert Path("out.flac").stat().st_size > 0 and Path("out.mp4").stat().st_size > 0


# Document -> what its last block must have left behind.
RUN: dict[str, Callable[[dict], None]] = {
    "README.md": _check_readme,
    "docs/generation.md": _check_generation,
    "docs/video_io.md": _check_video_io,
}


def test_every_document_with_python_is_classified() -> None:
    with_python = {str(doc.relative_to(REPO)) for doc in DOCS if python_blocks(doc)}
    assert with_python - set(RUN) - set(NOT_RUN) == set()
    # Entries for documents that lost their examples are stale.
    assert set(RUN) | set(NOT_RUN) <= with_python


@pytest.fixture(scope="module")
def clip_files(tmp_path_factory) -> dict[str, Path]:
    """The file names the examples use, for a short synthetic clip of two shapes."""
    scene = SyntheticScene(width=64, height=36, duration=1.0)
    example = synthetic_example(tmp_path_factory.mktemp("clip"), scene)
    circle, square = (example.masks[name] for name in ("circle", "square"))
    return {"duet.mp4": example.video, "clip.mp4": example.video, "video.mp4": example.video,
            "violin_mask.mp4": circle, "mask.mp4": circle, "trumpet_mask.mp4": square}


@pytest.mark.parametrize("doc", list(RUN))
def test_python_examples_run(doc: str, clip_files: dict[str, Path], tmp_path: Path,
                             tmp_path_factory, monkeypatch) -> None:
    blocks = python_blocks(REPO / doc)
    assert blocks, f"{doc} has no Python example any more"
    monkeypatch.setenv("SAGANET_CACHE", str(tmp_path_factory.getbasetemp() / "weights-cache"))
    monkeypatch.chdir(tmp_path)
    for name, source in clip_files.items():
        shutil.copyfile(source, name)
    namespace: dict = {"__name__": "__docs__"}
    with torch.random.fork_rng(devices=[]):
        for block in blocks:
            # Padded with blank lines so that a traceback gives the document's own line.
            code = "\n" * (block.line - 1) + offline(block.code)
            exec(compile(code, block.doc, "exec"), namespace)
    RUN[doc](namespace)
