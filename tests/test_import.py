"""Importing saganet's library modules is cheap and changes nothing outside saganet."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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
