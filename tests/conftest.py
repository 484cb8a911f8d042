"""Shared pytest hooks and fixtures: the thread policy (set once, restored after every test),
tiny random SAM 2 / SAM 3 folders, processes to kill with SIGKILL, and how many golden cases
ran."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from saganet.runtime import configure_runtime
from tests.killed import Holder

# The intra-op thread count every test starts with (set by pytest_configure).
_POLICY_THREADS = pytest.StashKey[int]()


def pytest_configure(config: pytest.Config) -> None:
    # The tests run tiny models: one thread per process (see saganet/runtime.py), so that
    # `pytest -n 2` workers never wait on each other's cores.
    config.stash[_POLICY_THREADS] = configure_runtime("debug").intra_op


@pytest.fixture(autouse=True)
def _policy_threads(request: pytest.FixtureRequest) -> Iterator[None]:
    """Put the intra-op thread count back after each test. Entry points called in-process
    (``main([...])``) apply their own model's policy (a full-size or unknown model gets this
    worker's share of the cores), and some tests set a count of their own; the next test on
    the worker would otherwise compute on another count than its module's fixtures did, and
    products and convolutions may round differently with another split."""
    yield
    threads = request.config.stash[_POLICY_THREADS]
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


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
