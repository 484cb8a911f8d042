"""Numerical fidelity against the reference outputs in ``$SAGANET_GOLDEN_DIR``.

Every ``*.pt`` case in the folder runs; a case whose ``module`` no handler knows fails. The
same harness checks the official checkpoint manifests (``manifests/*.json``): our modules,
built at official size, must have exactly the published state-dict keys (in order), shapes
and dtypes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.golden_cases import handlers, manifests
from tests.shared import GOLDEN_DIR, need

CASE_FILES = sorted(GOLDEN_DIR.glob("*.pt"))
MANIFEST_FILES = sorted((GOLDEN_DIR / "manifests").glob("*.json"))


def test_golden_dir_has_cases() -> None:
    need(GOLDEN_DIR)
    assert CASE_FILES, f"no golden cases (*.pt) in {GOLDEN_DIR}; set SAGANET_GOLDEN_DIR"


@pytest.mark.parametrize("path", CASE_FILES, ids=[p.stem for p in CASE_FILES])
def test_case(path: Path) -> None:
    case = torch.load(path, weights_only=True)
    case["folder"] = path.parent
    handler = handlers().get(case["module"])
    if handler is None:
        pytest.fail(f"{path.name}: no handler for module {case['module']!r}")
    torch.manual_seed(0)
    handler(case)


@pytest.mark.parametrize("path", MANIFEST_FILES, ids=[p.stem for p in MANIFEST_FILES])
def test_manifest(path: Path) -> None:
    manifest = json.loads(path.read_text())
    builder = manifests().get(manifest["name"])
    if builder is None:
        pytest.fail(f"{path.name}: no builder for manifest {manifest['name']!r}")
    ours = builder()
    expected_keys = manifest["state_dict_keys"]
    missing = sorted(set(expected_keys) - set(ours))
    unexpected = sorted(set(ours) - set(expected_keys))
    assert not missing and not unexpected, (
        f"{manifest['name']}: missing {missing[:20]} ({len(missing)}), "
        f"unexpected {unexpected[:20]} ({len(unexpected)})"
    )
    wrong = {
        k: (ours[k], (tuple(manifest["tensors"][k]["shape"]), manifest["tensors"][k]["dtype"]))
        for k in expected_keys
        if ours[k] != (tuple(manifest["tensors"][k]["shape"]), manifest["tensors"][k]["dtype"])
    }
    assert not wrong, f"{manifest['name']}: mis-shaped keys (ours, official): {wrong}"
    # Same registration order as the published files, so saved checkpoints diff cleanly.
    assert list(ours) == expected_keys, f"{manifest['name']}: state-dict key order differs"
