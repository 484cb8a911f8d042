"""Collected metric values with where each came from and why others were skipped."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class MetricResults:
    """Metric values of one evaluation run.

    Attributes:
        values: metric name -> value (av-benchmark's names, e.g. ``FD-PASST``, ``DeSync``).
        sources: metric name -> the extractor/embedder that produced its features.
        skipped: metric name -> why it was not computed.
        notes: remarks on protocol deviations forced by the data (e.g. fewer IS splits).
    """

    values: dict[str, float] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, name: str, value: float, source: str) -> None:
        """Record one metric value and its feature source.

        Args:
            name: metric name; must not be recorded twice.
            value: the value.
            source: the extractor or embedder behind it.
        """
        if name in self.values:
            raise ValueError(f"metric {name!r} computed twice")
        self.values[name] = float(value)
        self.sources[name] = source

    def skip(self, name: str, reason: str) -> None:
        """Record that a metric was not computed, and why.

        Args:
            name: metric name.
            reason: one line for the user.
        """
        self.skipped[name] = reason

    def update(self, other: MetricResults) -> None:
        """Merge another run's results into this one (metric names must not overlap).

        Args:
            other: results to add.
        """
        for name, value in other.values.items():
            self.add(name, value, other.sources[name])
        self.skipped.update(other.skipped)
        self.notes.extend(other.notes)
