"""Importing saganet's library modules is cheap and changes nothing outside saganet."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The library modules a notebook imports to build models and generate, and the trainer's.
LIBRARY = ["saganet.pipeline", "saganet.inference", "saganet.soundtrack", "saganet.models",
           "saganet.debug_weights", "saganet.segment", "saganet.media", "saganet.training.loop"]
# Imported only when first used (or never): each takes seconds or sets process-wide state.
# torch._dynamo is what torchvision and TensorDict cost (2-4 s per process); scipy.signal ~1 s.
HEAVY = ["open_clip", "gradio", "transformers", "torchvision", "tensordict", "torch._dynamo",
         "scipy.signal"]


def test_library_import_leaves_heavy_packages_unimported() -> None:
    # One process for all: a Python start with torch takes seconds.
    probe = (f"import sys, json, importlib; [importlib.import_module(m) for m in {LIBRARY!r}]; "
             f"print(json.dumps(sorted(set({HEAVY!r}) & set(sys.modules))))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, check=True)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_top_level_names_are_their_modules_objects_and_cost_no_import() -> None:
    import importlib

    import saganet

    names = [name for name in saganet.__all__ if name != "__version__"]
    assert sorted(names) == sorted(saganet._EXPORTS)
    for name in names:
        module = importlib.import_module(saganet._EXPORTS[name])
        assert getattr(saganet, name) is getattr(module, name), name
        assert name in dir(saganet)
    with pytest.raises(AttributeError, match="no_such_name"):
        saganet.no_such_name  # noqa: B018
    # `import saganet` alone loads none of them (nor torch): a CLI's --help stays instant.
    probe = ("import sys, saganet; "
             "print(sorted({'torch', *saganet._EXPORTS.values()} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("package", ["saganet.segment", "saganet.features"])
def test_every_listed_name_of_a_lazy_package_resolves(package: str) -> None:
    import importlib

    module = importlib.import_module(package)
    for name in module.__all__:
        assert getattr(module, name) is not None, name
    with pytest.raises(AttributeError, match=f"module '{package}' has no attribute 'nope'"):
        module.nope  # noqa: B018
