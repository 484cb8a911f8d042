"""Shared pytest hooks: thread count per worker, and how many golden cases ran."""

from __future__ import annotations

import os

import pytest
import torch


def pytest_configure(config: pytest.Config) -> None:
    # Under pytest-xdist every worker gets a core; more torch threads than cores per worker
    # oversubscribes the CPU and makes the suite several times slower.
    if os.environ.get("PYTEST_XDIST_WORKER"):
        torch.set_num_threads(1)


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
