"""Shared pytest hooks: the thread policy, and how many golden cases ran."""

from __future__ import annotations

import pytest

from saganet.runtime import configure_runtime


def pytest_configure(config: pytest.Config) -> None:
    # The tests run tiny models: one thread per process (see saganet/runtime.py), so that
    # `pytest -n 2` workers never wait on each other's cores.
    configure_runtime("debug")


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
