"""How the metric families are applied to feature sets, shared by every feature source.

Owns the av-benchmark conventions around the arithmetic in :mod:`saganet.evaluation.metrics`:
metric names, which metrics are paired (KL, cosine scores, DeSync) and which use every item
(Fréchet distances, Inception Score), name matching between generated and ground-truth items,
and what happens when a set is too small (FD needs two items per side; IS falls back to one
split below 10 items and says so in the notes).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import numpy as np

from saganet.evaluation.metrics import (
    PairingError,
    frechet_distance,
    inception_score,
    kl_divergence_softmax,
)
from saganet.evaluation.results import MetricResults

log = logging.getLogger(__name__)

IS_SPLITS = 10
IS_SEED = 2020


def match_names(
    reference_names: Iterable[str],
    predicted_names: Iterable[str],
    *,
    cleaner: Callable[[str], str] | None = None,
    what: str = "items",
) -> dict[str, str]:
    """Map each generated item's name to its ground-truth name.

    A prediction matches the reference of the same name; failing that, the reference named
    ``cleaner(name)`` (av-benchmark's ``clean_sample_name`` strips VGGSound-style sample
    suffixes). Reference items without a prediction are allowed and left out of paired
    metrics, as in av-benchmark.

    Args:
        reference_names: ground-truth item names.
        predicted_names: generated item names, in the order the pairs are returned.
        cleaner: optional fallback name mapping.
        what: what is being paired, for the error message.

    Raises:
        PairingError: some predictions have no ground truth (all of them are listed).
    """
    reference = set(reference_names)
    matched: dict[str, str] = {}
    unmatched = []
    for name in predicted_names:
        if name in reference:
            matched[name] = name
        elif cleaner is not None and cleaner(name) in reference:
            matched[name] = cleaner(name)
        else:
            unmatched.append(name)
    if unmatched:
        raise PairingError(unmatched, [], what)
    return matched


def add_frechet_distance(
    results: MetricResults, name: str, predicted: np.ndarray, reference: np.ndarray, source: str
) -> None:
    """Record ``name`` = FD(predicted, reference), or why it cannot be computed.

    Args:
        results: where to record it.
        name: metric name, e.g. ``FD-PANN``.
        predicted: ``(N, D)`` generated-audio embeddings.
        reference: ``(M, D)`` ground-truth embeddings.
        source: the extractor behind the embeddings.
    """
    if predicted.shape[0] < 2 or reference.shape[0] < 2:
        results.skip(name, "needs at least 2 items on each side for a covariance")
        return
    results.add(name, frechet_distance(predicted, reference), source)


def add_kl(
    results: MetricResults,
    name: str,
    reference_logits: np.ndarray,
    predicted_logits: np.ndarray,
    source: str,
) -> None:
    """Record ``name`` = mean KL(softmax(reference) ‖ softmax(predicted)) over aligned rows.

    Args:
        results: where to record it.
        name: metric name, e.g. ``KL-PASST-softmax``.
        reference_logits: ``(N, C)`` ground-truth logits.
        predicted_logits: ``(N, C)`` generated-audio logits, row-aligned with the reference.
        source: the classifier behind the logits.
    """
    results.add(name, kl_divergence_softmax(reference_logits, predicted_logits), source)


def add_inception_score(
    results: MetricResults, prefix: str, logits: np.ndarray, source: str
) -> None:
    """Record ``<prefix>-mean`` and ``<prefix>-std`` of the Inception Score.

    With fewer than 10 items, av-benchmark's 10 splits would leave empty chunks (NaN), so the
    whole set is scored as one split instead (``std`` is then 0) and a note says so.

    Args:
        results: where to record it.
        prefix: metric name prefix, e.g. ``ISC-PANNS``.
        logits: ``(N, C)`` generated-audio logits in the extractor's item order.
        source: the classifier behind the logits.
    """
    n = logits.shape[0]
    splits = IS_SPLITS if n >= IS_SPLITS else 1
    if splits != IS_SPLITS:
        results.notes.append(
            f"{prefix}: only {n} generated items, so one split instead of {IS_SPLITS}"
        )
    mean, std = inception_score(logits, splits=splits, seed=IS_SEED)
    results.add(f"{prefix}-mean", mean, source)
    results.add(f"{prefix}-std", std, source)
