"""Metric arithmetic of the av-benchmark protocol, as pure NumPy/SciPy functions.

Owns: Fréchet distance (from embeddings or from their statistics), mean KL divergence between
paired class distributions, Inception Score, mean cosine similarity of paired embeddings
(ImageBind score) and DeSync (mean absolute Synchformer offset). Nothing here loads models or
files; the embedding extractors live in :mod:`saganet.evaluation.embedders` and
:mod:`saganet.evaluation.av_bench`.

Inputs that pair items (KL, cosine score) are either two aligned arrays or two mappings from
item name to vector; mappings are paired by name and any name present on one side only raises
:class:`PairingError`. Computations run in float64 (av-benchmark runs KL in float32 torch, so
values can differ in the 7th significant digit).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import scipy.linalg
from numpy.typing import ArrayLike
from scipy.special import log_softmax

from saganet.errors import UserInputError

log = logging.getLogger(__name__)

# Imaginary parts of sqrtm's diagonal below this are numerical noise (av-benchmark's threshold).
_MAX_IMAGINARY_DIAGONAL = 1e-3
# av-benchmark reports a Fréchet distance it could not compute as -1.
FD_FAILED = -1.0

# Synchformer's offset classes: 21 offsets from -2 s to +2 s in 0.2 s steps.
SYNC_OFFSET_RANGE_S = (-2.0, 2.0)
SYNC_NUM_OFFSET_CLASSES = 21


class PairingError(UserInputError):
    """Items that should be compared pairwise do not have the same names on both sides.

    Args:
        missing_in_reference: names found only among the predictions (generated items).
        missing_in_predicted: names found only among the references (ground truth).
        what: what was being paired, for the message.
    """

    def __init__(
        self,
        missing_in_reference: Sequence[str],
        missing_in_predicted: Sequence[str],
        what: str = "items",
    ) -> None:
        self.missing_in_reference = sorted(missing_in_reference)
        self.missing_in_predicted = sorted(missing_in_predicted)
        parts = []
        if self.missing_in_reference:
            parts.append(
                f"predicted {what} without a ground-truth match: "
                + _shorten(self.missing_in_reference)
            )
        if self.missing_in_predicted:
            parts.append(
                f"ground-truth {what} without a prediction: " + _shorten(self.missing_in_predicted)
            )
        super().__init__("; ".join(parts))


def _shorten(names: list[str], limit: int = 10) -> str:
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown} (and {len(names) - limit} more)"


def pair_by_name(
    reference: Mapping[str, ArrayLike],
    predicted: Mapping[str, ArrayLike],
    *,
    allow_unused_reference: bool = False,
    what: str = "items",
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Stack two name-keyed collections into aligned arrays.

    Args:
        reference: ground-truth vectors by item name.
        predicted: generated vectors by item name; their order sets the output order.
        allow_unused_reference: accept reference items that have no prediction (they are left
            out), as av-benchmark does when a ground-truth cache covers a larger set.
        what: what is being paired, used in the error message.

    Returns:
        ``(names, reference_rows, predicted_rows)``, rows stacked along axis 0 in the order of
        ``predicted``.

    Raises:
        PairingError: a prediction has no reference or, unless allowed, a reference has no
            prediction. The message lists the offending names.
    """
    only_pred = [name for name in predicted if name not in reference]
    only_ref = [] if allow_unused_reference else [n for n in reference if n not in predicted]
    if only_pred or only_ref:
        raise PairingError(only_pred, only_ref, what)
    names = list(predicted)
    if not names:
        raise ValueError(f"no {what} to pair")
    ref = np.stack([np.asarray(reference[n]) for n in names])
    pred = np.stack([np.asarray(predicted[n]) for n in names])
    return names, ref, pred


def _aligned(
    reference: Mapping[str, ArrayLike] | ArrayLike,
    predicted: Mapping[str, ArrayLike] | ArrayLike,
    what: str,
    *,
    any_rank: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(reference, Mapping) != isinstance(predicted, Mapping):
        raise TypeError("pass either two name->vector mappings or two aligned arrays")
    if isinstance(reference, Mapping):
        _, ref, pred = pair_by_name(reference, predicted, what=what)  # type: ignore[arg-type]
    else:
        ref, pred = np.asarray(reference), np.asarray(predicted)
    if ref.shape != pred.shape or ref.ndim < 2 or (ref.ndim != 2 and not any_rank):
        shape = "(N, ..., C)" if any_rank else "(N, C)"
        raise ValueError(
            f"paired {what} must both be {shape} with equal shapes, got {ref.shape} and "
            f"{pred.shape}"
        )
    return ref.astype(np.float64), pred.astype(np.float64)


def _as_matrix(values: Mapping[str, ArrayLike] | ArrayLike) -> np.ndarray:
    if isinstance(values, Mapping):
        values = np.stack([np.asarray(v) for v in values.values()])
    return np.asarray(values)


def embedding_statistics(embeddings: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance of an embedding set.

    Args:
        embeddings: ``(N, D)`` array, one row per item (``N >= 2``).

    Returns:
        ``(mu (D,), sigma (D, D))`` in float64; ``sigma`` is ``np.cov(rowvar=False)``.
    """
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"need an (N, D) embedding array with N >= 2, got shape {x.shape}")
    return x.mean(axis=0), np.atleast_2d(np.cov(x, rowvar=False))


def frechet_distance_from_stats(
    mu_pred: ArrayLike,
    sigma_pred: ArrayLike,
    mu_ref: ArrayLike,
    sigma_ref: ArrayLike,
    *,
    eps: float = 1e-6,
    on_failure: float = FD_FAILED,
) -> float:
    """Fréchet distance between two Gaussians ``N(mu_pred, sigma_pred)``, ``N(mu_ref, sigma_ref)``.

    ``FD = |mu_p - mu_r|² + tr Σp + tr Σr - 2 tr sqrtm(Σp Σr)``, with ``scipy.linalg.sqrtm``.
    If the square root of the product is not finite, ``eps·I`` is added to both covariances and
    it is taken again. A complex square root is accepted (real part kept) when every imaginary
    part on its diagonal is below 1e-3.

    Args:
        mu_pred, sigma_pred: mean ``(D,)`` and covariance ``(D, D)`` of the generated set.
        mu_ref, sigma_ref: the same for the reference (ground-truth) set.
        eps: diagonal offset used when the product is too close to singular.
        on_failure: value returned when the square root keeps a real imaginary part. The
            default ``-1.0`` is what av-benchmark reports in that case, so tables stay
            comparable; pass ``float("nan")`` to make a failure propagate.

    Returns:
        The distance as a Python float (or ``on_failure``).
    """
    mu1, mu2 = np.atleast_1d(mu_pred).astype(np.float64), np.atleast_1d(mu_ref).astype(np.float64)
    s1 = np.atleast_2d(sigma_pred).astype(np.float64)
    s2 = np.atleast_2d(sigma_ref).astype(np.float64)
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise ValueError(
            f"mismatched statistics: mu {mu1.shape} vs {mu2.shape}, sigma {s1.shape} vs {s2.shape}"
        )
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        log.warning("FD: product of covariances is singular; adding %g to their diagonals", eps)
        offset = np.eye(s1.shape[0]) * eps
        covmean = scipy.linalg.sqrtm((s1 + offset) @ (s2 + offset))
    if np.iscomplexobj(covmean):
        max_imag = float(np.max(np.abs(np.diagonal(covmean).imag)))
        if max_imag >= _MAX_IMAGINARY_DIAGONAL:
            log.warning("FD: matrix square root has imaginary part %g; reporting failure", max_imag)
            return on_failure
        covmean = covmean.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))


def frechet_distance(
    predicted: Mapping[str, ArrayLike] | ArrayLike,
    reference: Mapping[str, ArrayLike] | ArrayLike,
    *,
    eps: float = 1e-6,
    on_failure: float = FD_FAILED,
) -> float:
    """Fréchet distance between two embedding sets (they need not pair item by item).

    Args:
        predicted: ``(N, D)`` embeddings of generated audio (or a name->vector mapping).
        reference: ``(M, D)`` embeddings of reference audio (or a mapping).
        eps, on_failure: see :func:`frechet_distance_from_stats`.
    """
    mu_p, sigma_p = embedding_statistics(_as_matrix(predicted))
    mu_r, sigma_r = embedding_statistics(_as_matrix(reference))
    return frechet_distance_from_stats(mu_p, sigma_p, mu_r, sigma_r, eps=eps, on_failure=on_failure)


def kl_divergence_softmax(
    reference_logits: Mapping[str, ArrayLike] | ArrayLike,
    predicted_logits: Mapping[str, ArrayLike] | ArrayLike,
) -> float:
    """Mean over items of ``KL(softmax(ref) ‖ softmax(pred)) = Σ_c p (log p − log q)``.

    Args:
        reference_logits: ground-truth class logits, ``(N, C)`` or name->``(C,)``.
        predicted_logits: generated-audio class logits, aligned with (or keyed like) the
            reference.

    Raises:
        PairingError: mappings whose names do not match one to one.
    """
    ref, pred = _aligned(reference_logits, predicted_logits, "class logits")
    log_p = log_softmax(ref, axis=1)
    log_q = log_softmax(pred, axis=1)
    per_item = np.sum(np.exp(log_p) * (log_p - log_q), axis=1)  # (N,)
    return float(per_item.mean())


def inception_score(
    logits: Mapping[str, ArrayLike] | ArrayLike,
    *,
    splits: int = 10,
    seed: int | None = 2020,
) -> tuple[float, float]:
    """Inception Score of generated audio from its class logits, av-benchmark's protocol.

    Rows are shuffled with ``np.random.RandomState(seed).permutation(N)`` (no shuffle when
    ``seed`` is None) and cut into ``splits`` chunks ``[i·N//splits, (i+1)·N//splits)``; each
    chunk scores ``exp(mean_i KL(p_i ‖ mean_j p_j))`` with float64 softmax.

    Args:
        logits: ``(N, C)`` class logits of the generated items (a mapping is taken in its
            iteration order, which the shuffle then permutes).
        splits: number of chunks; must not exceed ``N``.
        seed: permutation seed (2020 in av-benchmark).

    Returns:
        ``(mean, std)`` over the chunks; the std is the population std (``ddof=0``).
    """
    x = _as_matrix(logits).astype(np.float64)
    if x.ndim != 2:
        raise ValueError(f"logits must be (N, C), got shape {x.shape}")
    n = x.shape[0]
    if not 1 <= splits <= n:
        raise ValueError(f"inception score needs 1 <= splits <= N items, got {splits} and {n}")
    if seed is not None:
        x = x[np.random.RandomState(seed).permutation(n)]
    log_p = log_softmax(x, axis=1)  # (N, C)
    p = np.exp(log_p)
    scores = []
    for i in range(splits):
        rows = slice(i * n // splits, (i + 1) * n // splits)
        marginal = p[rows].mean(axis=0, keepdims=True)  # (1, C)
        kl = np.sum(p[rows] * (log_p[rows] - np.log(marginal)), axis=1)  # (n_chunk,)
        scores.append(float(np.exp(kl.mean())))
    return float(np.mean(scores)), float(np.std(scores))


def mean_cosine_similarity(
    a: Mapping[str, ArrayLike] | ArrayLike,
    b: Mapping[str, ArrayLike] | ArrayLike,
    *,
    eps: float = 1e-8,
) -> float:
    """Mean cosine similarity of paired embeddings (the ImageBind score, IB-Score).

    Args:
        a: ``(N, D)`` embeddings, e.g. of the ground-truth videos (or name->vector); extra
            middle axes ``(N, ..., D)`` are allowed and every vector counts once in the mean.
        b: embeddings paired with ``a`` (same shape), e.g. of the generated audio.
        eps: lower bound on each norm, as in ``torch.cosine_similarity``.

    Raises:
        PairingError: mappings whose names do not match one to one.
    """
    x, y = _aligned(a, b, "embeddings", any_rank=True)
    norms = np.maximum(np.linalg.norm(x, axis=-1), eps) * np.maximum(
        np.linalg.norm(y, axis=-1), eps
    )
    return float(np.mean(np.sum(x * y, axis=-1) / norms))


def sync_offset_grid(
    low: float = SYNC_OFFSET_RANGE_S[0],
    high: float = SYNC_OFFSET_RANGE_S[1],
    num_classes: int = SYNC_NUM_OFFSET_CLASSES,
) -> np.ndarray:
    """Offsets in seconds of Synchformer's classes, ``linspace(low, high, num_classes)``.

    The values are rounded to float32 as in the reference (where the grid is a float32 tensor),
    so e.g. the 0.2 s class counts as 0.2000000030 s.
    """
    return np.linspace(low, high, num_classes).astype(np.float32)


def desync(offset_logits: ArrayLike, grid: ArrayLike | None = None) -> float:
    """DeSync: mean absolute audio-visual offset predicted by Synchformer, in seconds.

    Args:
        offset_logits: ``(..., K)`` logits over the ``K`` offset classes, any leading shape
            (e.g. ``(N items, 2 windows, 21)``); every leading entry counts once in the mean.
        grid: offset of each class in seconds; default :func:`sync_offset_grid`.
    """
    logits = np.asarray(offset_logits)
    offsets = sync_offset_grid() if grid is None else np.asarray(grid)
    if logits.ndim < 1 or logits.shape[-1] != offsets.shape[0]:
        raise ValueError(
            f"offset logits must end in {offsets.shape[0]} classes, got shape {logits.shape}"
        )
    if logits.size == 0:
        raise ValueError("no offset logits given")
    predicted = offsets[np.argmax(logits, axis=-1)]  # (...,) seconds
    return float(np.mean(np.abs(predicted.astype(np.float64))))
