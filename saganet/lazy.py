"""A package's names imported on first use: the module-level ``__getattr__`` of PEP 562.

Packages whose names pull in seconds of imports (torch, open_clip, transformers) export them
through :func:`lazy_names`, so that importing the package, a command's ``--help`` or a light
helper in it stays instant.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_names(package: str, modules: Mapping[str, str]) -> Callable[[str], Any]:
    """The ``__getattr__`` of ``package``: name ``n`` of ``modules`` is ``n`` of module
    ``modules[n]`` (absolute, or relative to ``package`` when it starts with a dot), imported
    when first asked for; any other name raises :class:`AttributeError`."""

    def get(name: str) -> Any:
        if name not in modules:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(modules[name], package), name)

    return get
