"""Progress bars: in-place redraws on a terminal, whole lines at an interval in a log."""

from __future__ import annotations

import io
import re
import time

import pytest
from tqdm._monitor import TMonitor

from saganet import progress
from saganet.progress import progress_bar
from saganet.training.logger import RunLogger

# tqdm's count: "3/7" (with a total) or "3it" / "3step" (without).
COUNT = re.compile(r"(\d+)/(\d+)")


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def lines_of(stream: io.StringIO) -> list[str]:
    text = stream.getvalue()
    assert "\r" not in text and "\x1b" not in text, repr(text[:300])
    lines = text.split("\n")
    assert lines[-1] == "", "the last line is not finished"
    assert all(line.strip() for line in lines[:-1]), "blank lines"
    return lines[:-1]


def test_a_terminal_gets_tqdms_redraws() -> None:
    stream, total = Terminal(), 5
    for _ in progress_bar(range(total), file=stream, mininterval=0):
        pass
    assert stream.getvalue().count("\r") > total  # every state redrawn over the last


@pytest.mark.parametrize("total", [1, 6])
def test_a_log_gets_one_line_per_state(monkeypatch: pytest.MonkeyPatch, total: int) -> None:
    monkeypatch.setattr(progress, "LOG_INTERVAL_S", 0.0)
    stream = io.StringIO()
    for _ in progress_bar(range(total), file=stream, desc="clips"):
        pass
    lines = lines_of(stream)
    counts = [tuple(map(int, COUNT.search(line).groups())) for line in lines]
    assert all(line.startswith("clips") for line in lines)
    # Every state from the first to the last, in order, and the closing line repeats the last.
    assert [done for done, _ in counts[:-1]] == list(range(total + 1))
    assert counts[-1] == (total, total) and {t for _, t in counts} == {total}


def test_a_log_gets_nothing_from_a_task_shorter_than_the_interval() -> None:
    stream = io.StringIO()
    start = time.monotonic()
    bar = progress_bar(total=50, file=stream, desc="sampling")
    for _ in range(bar.total):
        bar.update(1)
    bar.close()
    assert time.monotonic() - start < progress.LOG_INTERVAL_S  # else the test is moot
    assert stream.getvalue() == ""


def test_a_log_gets_at_most_one_line_per_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    interval, updates = 0.2, 12
    monkeypatch.setattr(progress, "LOG_INTERVAL_S", interval)
    stream = io.StringIO()
    start = time.monotonic()
    with progress_bar(total=updates, file=stream, leave=False) as bar:
        for _ in range(updates):
            time.sleep(interval / 4)
            bar.update(1)
    elapsed = time.monotonic() - start
    lines = lines_of(stream)
    # The first line waits one interval; then one per interval (the bar cleared at the end).
    assert 1 <= len(lines) <= elapsed / interval, (elapsed, lines)


class TimedStream(io.StringIO):
    """A log stream that records when each line was written."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def write(self, text: str) -> int:
        self.times.extend(time.monotonic() for _ in range(text.count("\n")))
        return super().write(text)


def test_tqdms_monitor_adds_no_second_line_within_an_interval(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # tqdm's monitor thread redraws a bar whose steps slowed down; its redraw used to leave
    # the bar's last print time alone, so the next step wrote a second line at once.
    interval = 0.2
    monkeypatch.setattr(progress, "LOG_INTERVAL_S", interval)
    stream = TimedStream()
    with progress_bar(total=20, file=stream, leave=False) as bar:
        monitor = TMonitor(type(bar), interval / 10)
        try:
            for _ in range(12):  # quick steps: tqdm then expects several steps per line
                time.sleep(interval / 6)
                bar.update(1)
            # One slow step, ending as soon as the monitor redraws (if it does).
            written, deadline = len(stream.times), time.monotonic() + 2 * interval
            while len(stream.times) == written and time.monotonic() < deadline:
                time.sleep(interval / 50)
            bar.update(1)
        finally:
            monitor.exit()
    assert len(stream.times) >= 2, lines_of(stream)  # else the test is moot
    gaps = [b - a for a, b in zip(stream.times[:-1], stream.times[1:], strict=True)]
    assert min(gaps) >= 0.9 * interval, (gaps, lines_of(stream))


def test_stacked_bars_in_a_log_do_not_move_the_cursor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress, "LOG_INTERVAL_S", 0.0)
    stream = io.StringIO()
    outer, inner = 2, 3
    for _ in progress_bar(range(outer), file=stream, desc="outer"):
        for _ in progress_bar(range(inner), file=stream, desc="inner", leave=False):
            pass
    lines = lines_of(stream)
    assert {line.split(":")[0] for line in lines} == {"outer", "inner"}
    assert sum(line.startswith("inner") for line in lines) == outer * (inner + 1)


def test_the_training_bar_logs_lines_with_its_metrics(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path) -> None:
    monkeypatch.setattr(progress, "LOG_INTERVAL_S", 0.0)
    steps = 4
    logger = RunLogger(tmp_path, is_main=True, total_steps=steps)
    for step in range(1, steps + 1):
        logger.advance(step, {"loss": 1.0 / step})
    logger.close()
    stream = io.StringIO(capsys.readouterr().err)
    lines = lines_of(stream)
    assert lines[-1].startswith("train") and f"{steps}/{steps}" in lines[-1]
    assert f"loss={1.0 / steps:.4g}" in lines[-1]


def test_the_documented_interval_is_the_one_used() -> None:
    from tests.shared import REPO

    interval = f"{progress.LOG_INTERVAL_S:g} s"
    for doc in ("README.md", "docs/training.md"):
        text = " ".join((REPO / doc).read_text().split())
        assert f"one line per {interval}" in text or f"one per {interval}" in text, doc
