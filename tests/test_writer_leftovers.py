"""Writers killed outright (SIGKILL) in the middle of a file leave its hidden temporary; the
next write into that folder removes it. One case per kind of writer: those staging through
``atomic_output`` (mask videos of tracking, evaluation reports, checkpoints, audio) and those
with their own staging (prep clips, mask videos from RLE, focal prompts, latent shards, batch
evaluation's JSON), all naming their temporaries with ``saganet.fileio.temporary_sibling``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from saganet.leftovers import Owner, owner_of
from tests.killed import Holder

# Each writer as source, run by the killed process and by the test's own (next) run:
# ``write(path)`` writes one output file at ``path``.
WRITERS = {
    # Tracking's and the example's mask videos; evaluation reports, checkpoints and audio
    # stage through the same atomic_output.
    "mask video": ("saganet.fileio", """
import numpy as np
from saganet.media.output import write_mask_video
def write(path):
    mask = np.zeros((16, 24), dtype=bool)
    write_mask_video(path, [mask, ~mask])
"""),
    "mask video from RLE": ("saganet.prep.rle", """
import numpy as np
from saganet.prep.rle import masks_to_video
def write(path):
    mask = np.zeros((16, 24), dtype=bool)
    masks_to_video(np.stack([mask, ~mask]), path)
"""),
    "prepared clip": ("saganet.prep.clip_cut", """
from saganet.prep.clip_cut import copy_clip
def write(path):
    source = path.parent.parent / f"source-{path.name}"
    source.write_bytes(b"a clip")
    copy_clip(source, path)
"""),
    "focal prompt": ("saganet.prep.focal_prompts", """
import torch
from saganet.prep.focal_prompts import write_h264
def write(path):
    write_h264(path, torch.zeros(2, 3, 16, 24, dtype=torch.uint8))
"""),
    "latent shard": ("saganet.prep.latents", """
from saganet.prep.latents import ShardWriter
def write(path):
    writer = ShardWriter(path.parent, rank=int(path.stem[1:5]), samples_per_shard=1)
    writer.add([], None, failed=[("clip", "unreadable")])
    writer.flush()
"""),
    "batch evaluation JSON": ("saganet.evaluation.batch_eval", """
from saganet.evaluation.batch_eval import write_json_atomic
def write(path):
    write_json_atomic(path, {"done": 1})
"""),
}
# Names of two outputs of each writer in one folder.
NAMES = {"latent shard": ("r0000_000000.pt", "r0001_000000.pt"),
         "batch evaluation JSON": ("a.json", "b.json")}

# The killed process takes its temporary name as the writer does (``module`` is where the
# writer looks temporary_sibling up), writes half a file under it and hangs there.
STUCK = """import time
from pathlib import Path
import {module} as patched
real = patched.temporary_sibling
def stuck(path, suffix='.part'):
    tmp = real(path, suffix)
    tmp.write_bytes(b'half')
    print(tmp, flush=True)
    time.sleep(600)
patched.temporary_sibling = stuck
{source}
if True:
    write(Path({path!r}))
"""


def _stuck_writer(holders: list[Holder], case: str, path: Path) -> Holder:
    module, source = WRITERS[case]
    holder = Holder(STUCK.format(module=module, source=source, path=str(path)))
    holders.append(holder)
    return holder


def _write(case: str, path: Path) -> None:
    namespace: dict[str, Any] = {}
    exec(WRITERS[case][1], namespace)
    namespace["write"](path)


@pytest.mark.parametrize("case", WRITERS)
def test_next_write_removes_the_temporary_of_a_killed_writer(
        case: str, holders: list[Holder], tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    first, second = NAMES.get(case, ("a.mp4", "b.mp4"))
    folder = tmp_path / "out"
    folder.mkdir()
    # Reproduce: the writer killed with SIGKILL while its file is half written.
    killed = _stuck_writer(holders, case, folder / first).kill()
    assert killed.parent == folder and killed.read_bytes() == b"half"
    assert owner_of(killed.name) is Owner.DEAD
    with caplog.at_level(logging.INFO, logger="saganet.leftovers"):
        _write(case, folder / second)
    assert sorted(p.name for p in folder.iterdir()) == [second]
    assert [r.getMessage() for r in caplog.records if r.name == "saganet.leftovers"] == [
        f"removed {killed}, left by a process that no longer runs"]


def test_a_running_writers_temporary_is_kept(holders: list[Holder], tmp_path: Path) -> None:
    case = "prepared clip"
    running = _stuck_writer(holders, case, tmp_path / "out" / "a.mp4").path
    _write(case, running.parent / "b.mp4")
    assert sorted(p.name for p in running.parent.iterdir()) == sorted([running.name, "b.mp4"])
