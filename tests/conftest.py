"""Shared pytest hooks and fixtures: the thread policy, tiny random SAM 2 / SAM 3 folders,
processes to kill with SIGKILL, and how many golden cases ran."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from saganet.runtime import configure_runtime
from tests.killed import Holder


def pytest_configure(config: pytest.Config) -> None:
    # The tests run tiny models: one thread per process (see saganet/runtime.py), so that
    # `pytest -n 2` workers never wait on each other's cores.
    configure_runtime("debug")


@pytest.fixture(scope="session")
def sam2_folder(tmp_path_factory) -> Path:
    """A tiny random SAM 2 video model that always reports the object present."""
    from saganet.segment.debug_models import write_tiny_sam2

    return write_tiny_sam2(tmp_path_factory.mktemp("sam2") / "present", object_present=True)


@pytest.fixture(scope="session")
def sam3_folder(tmp_path_factory) -> Path:
    """A tiny random SAM 3 (phrases) that finds every phrase."""
    from saganet.segment.debug_models import write_tiny_sam3

    return write_tiny_sam3(tmp_path_factory.mktemp("sam3") / "present", object_present=True)


@pytest.fixture
def holders() -> Iterator[list[Holder]]:
    """A list to put :class:`~tests.killed.Holder` processes in; those still running when the
    test ends are killed."""
    started: list[Holder] = []
    yield started
    for holder in started:
        if holder.proc.poll() is None:
            holder.kill()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    outcomes: dict[str, int] = {}
    for outcome in ("passed", "failed", "skipped"):
        for report in terminalreporter.stats.get(outcome, []):
            if "test_golden.py::test_case[" in getattr(report, "nodeid", "") and (
                report.when == "call" or outcome == "skipped"
            ):
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
    if outcomes:
        summary = ", ".join(f"{n} {k}" for k, n in sorted(outcomes.items()))
        terminalreporter.write_line(f"golden cases: {summary}")
