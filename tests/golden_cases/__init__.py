"""Golden-case handlers, one module per package area.

Each area module exposes ``HANDLERS: dict[str, Callable[[dict], None]]`` mapping a golden
file's ``module`` field to a function that rebuilds the module from the case, runs it and
asserts every recorded output, and ``MANIFESTS: dict[str, Callable[[], dict[str, tuple]]]``
mapping a manifest name to a function that returns ``{key: (shape, dtype)}`` for the module
built at official size (on the meta device, so nothing is allocated).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

AREAS = ("network", "features", "codec", "io")


def _collect(attribute: str) -> dict[str, Callable]:
    merged: dict[str, Callable] = {}
    for area in AREAS:
        try:
            module = importlib.import_module(f"tests.golden_cases.{area}")
        except ModuleNotFoundError as err:
            # Only a missing area module is tolerated; a broken import inside one must fail.
            if err.name != f"tests.golden_cases.{area}":
                raise
            continue
        for key, fn in getattr(module, attribute, {}).items():
            if key in merged:
                raise RuntimeError(f"golden {attribute} key {key!r} is claimed twice")
            merged[key] = fn
    return merged


def handlers() -> dict[str, Callable[[dict], None]]:
    return _collect("HANDLERS")


def manifests() -> dict[str, Callable[[], dict[str, tuple]]]:
    return _collect("MANIFESTS")
