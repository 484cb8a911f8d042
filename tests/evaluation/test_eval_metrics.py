"""Metric arithmetic against closed forms and hand-computed distributions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg

from saganet.evaluation.metrics import (
    PairingError,
    desync,
    embedding_statistics,
    frechet_distance,
    frechet_distance_from_stats,
    inception_score,
    kl_divergence_softmax,
    mean_cosine_similarity,
    pair_by_name,
    sync_offset_grid,
)


def _random_spd(rng: np.random.Generator, d: int) -> np.ndarray:
    a = rng.standard_normal((d, d))
    return a @ a.T + 0.1 * np.eye(d)


def _fd_eigh(mu1, s1, mu2, s2) -> float:
    # Independent route: tr sqrt(S1 S2) = sum sqrt(eig(S1^1/2 S2 S1^1/2)), via symmetric eigh.
    w, v = np.linalg.eigh(s1)
    root = v @ np.diag(np.sqrt(w)) @ v.T
    inner = np.linalg.eigvalsh(root @ s2 @ root)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(inner.clip(0)).sum())


def test_fd_commuting_covariances_closed_form():
    rng = np.random.default_rng(0)
    d = 6
    a, b = rng.uniform(0.5, 3.0, d), rng.uniform(0.5, 3.0, d)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(a + b - 2 * np.sqrt(a * b))
    assert frechet_distance_from_stats(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(
        expected, rel=1e-10
    )
    # The same spectra in a shared rotated basis still commute and give the same distance.
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    s1, s2 = q @ np.diag(a) @ q.T, q @ np.diag(b) @ q.T
    assert frechet_distance_from_stats(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)


def test_fd_random_spd_matches_eigh_route():
    rng = np.random.default_rng(1)
    for d in (1, 3, 16):
        mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
        s1, s2 = _random_spd(rng, d), _random_spd(rng, d)
        got = frechet_distance_from_stats(mu1, s1, mu2, s2)
        assert got == pytest.approx(_fd_eigh(mu1, s1, mu2, s2), rel=1e-7, abs=1e-9)
        # Symmetric in its two arguments.
        assert frechet_distance_from_stats(mu2, s2, mu1, s1) == pytest.approx(got, rel=1e-7)


def test_fd_from_samples_approaches_gaussian_distance():
    rng = np.random.default_rng(2)
    d, n = 3, 40000
    a, b = np.array([1.0, 2.0, 0.5]), np.array([0.25, 2.0, 4.0])
    mu1, mu2 = np.array([0.0, 1.0, -1.0]), np.array([0.5, 1.0, 0.0])
    x = mu1 + rng.standard_normal((n, d)) * np.sqrt(a)
    y = mu2 + rng.standard_normal((n, d)) * np.sqrt(b)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(a + b - 2 * np.sqrt(a * b))
    assert frechet_distance(x, y) == pytest.approx(expected, rel=0.03)
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-8)


def test_embedding_statistics_is_unbiased_and_needs_two_items():
    x = np.array([[0.0, 1.0], [2.0, 5.0]])
    mu, sigma = embedding_statistics(x)
    np.testing.assert_allclose(mu, [1.0, 3.0])
    np.testing.assert_allclose(sigma, [[2.0, 4.0], [4.0, 8.0]])  # divides by N - 1 = 1
    with pytest.raises(ValueError, match="N >= 2"):
        frechet_distance(x[:1], x)


def test_fd_mapping_input_equals_array_input():
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((5, 2)), rng.standard_normal((7, 2))
    as_dict = {f"p{i}": row for i, row in enumerate(x)}
    assert frechet_distance(as_dict, y) == pytest.approx(frechet_distance(x, y))


def test_fd_nonfinite_sqrt_retries_with_offset(monkeypatch):
    calls = []
    real = scipy.linalg.sqrtm

    def flaky(matrix):
        calls.append(matrix.copy())
        return np.full_like(matrix, np.inf) if len(calls) == 1 else real(matrix)

    monkeypatch.setattr(scipy.linalg, "sqrtm", flaky)
    s = np.diag([1.0, 4.0])
    got = frechet_distance_from_stats(np.zeros(2), s, np.zeros(2), s, eps=1e-3)
    np.testing.assert_allclose(calls[1], (s + 1e-3 * np.eye(2)) @ (s + 1e-3 * np.eye(2)))
    assert got == pytest.approx(-2 * 2e-3, abs=1e-9)  # tr terms 2·tr s, sqrt term tr s + 2e-3


def test_fd_complex_sqrt_kept_or_failed(monkeypatch):
    s = np.eye(2)
    small = np.eye(2) + 1e-5j * np.eye(2)
    monkeypatch.setattr(scipy.linalg, "sqrtm", lambda m: small)
    assert frechet_distance_from_stats(np.zeros(2), s, np.zeros(2), s) == pytest.approx(0.0)
    large = np.eye(2) + 0.1j * np.eye(2)
    monkeypatch.setattr(scipy.linalg, "sqrtm", lambda m: large)
    assert frechet_distance_from_stats(np.zeros(2), s, np.zeros(2), s) == -1.0
    failed = frechet_distance_from_stats(np.zeros(2), s, np.zeros(2), s, on_failure=math.nan)
    assert math.isnan(failed)


def test_kl_hand_computed():
    c, big = 5, 3.0
    uniform = np.zeros((1, c))
    peaked = np.zeros((1, c))
    peaked[0, 0] = big
    z = math.exp(big) + c - 1
    # KL(uniform ‖ softmax(peaked)) = -log C - L/C + log Z
    expected = -math.log(c) - big / c + math.log(z)
    assert kl_divergence_softmax(uniform, peaked) == pytest.approx(expected, rel=1e-12)
    # A (numerically) one-hot reference against a uniform prediction gives log C.
    one_hot = np.zeros((1, c))
    one_hot[0, 2] = 60.0
    assert kl_divergence_softmax(one_hot, uniform) == pytest.approx(math.log(c), rel=1e-9)
    assert kl_divergence_softmax(peaked, peaked) == pytest.approx(0.0, abs=1e-14)
    # The mean over items.
    both_ref = np.concatenate([uniform, one_hot])
    both_pred = np.concatenate([peaked, uniform])
    mean = (expected + math.log(c)) / 2
    assert kl_divergence_softmax(both_ref, both_pred) == pytest.approx(mean, rel=1e-9)


def test_kl_pairs_mappings_by_name():
    rng = np.random.default_rng(4)
    ref = {n: rng.standard_normal(4) for n in ("a", "b", "c")}
    pred = {n: rng.standard_normal(4) for n in ("c", "a", "b")}
    aligned = kl_divergence_softmax(
        np.stack([ref[n] for n in "abc"]), np.stack([pred[n] for n in "abc"])
    )
    assert kl_divergence_softmax(ref, pred) == pytest.approx(aligned, rel=1e-12)


def test_pairing_errors_list_names():
    ref = {"a": np.zeros(3), "b": np.zeros(3)}
    pred = {"a": np.zeros(3), "x": np.zeros(3), "y": np.zeros(3)}
    with pytest.raises(PairingError) as info:
        kl_divergence_softmax(ref, pred)
    message = str(info.value)
    assert "x, y" in message and "without a ground-truth match" in message
    assert "b" in info.value.missing_in_predicted
    names, _, _ = pair_by_name(ref, {"a": np.ones(3)}, allow_unused_reference=True)
    assert names == ["a"]
    with pytest.raises(TypeError):
        kl_divergence_softmax(ref, np.zeros((2, 3)))


def test_inception_score_identical_rows_is_one():
    logits = np.tile(np.array([[0.3, -1.0, 2.0, 0.0]]), (20, 1))
    mean, std = inception_score(logits)
    assert mean == pytest.approx(1.0, abs=1e-12)
    assert std == pytest.approx(0.0, abs=1e-12)


def test_inception_score_one_hot_distinct_classes_counts_classes_per_split():
    n = 20
    logits = np.full((n, n), -50.0)
    logits[np.arange(n), np.arange(n)] = 50.0
    mean, std = inception_score(logits, splits=10)  # 2 distinct classes per split
    assert mean == pytest.approx(2.0, rel=1e-9) and std == pytest.approx(0.0, abs=1e-9)
    assert inception_score(logits, splits=1)[0] == pytest.approx(float(n), rel=1e-9)
    assert inception_score(logits, splits=4)[0] == pytest.approx(5.0, rel=1e-9)


def test_inception_score_follows_the_seeded_shuffle():
    # Two classes, five items each; with 5 splits of 2 items a split scores 2 when its pair
    # mixes the classes and 1 otherwise, so the result depends on the permutation.
    labels = np.array([0] * 5 + [1] * 5)
    logits = np.where(np.eye(2)[labels] > 0, 50.0, -50.0)
    order = np.random.RandomState(2020).permutation(10)
    pairs = labels[order].reshape(5, 2)
    per_split = np.where(pairs[:, 0] != pairs[:, 1], 2.0, 1.0)
    mean, std = inception_score(logits, splits=5, seed=2020)
    assert mean == pytest.approx(per_split.mean(), rel=1e-9)
    assert std == pytest.approx(per_split.std(), abs=1e-9)
    unshuffled = inception_score(logits, splits=5, seed=None)
    assert unshuffled == pytest.approx((1.2, 0.4), rel=1e-9)  # splits score 1, 1, 2, 1, 1


def test_inception_score_rejects_more_splits_than_items():
    with pytest.raises(ValueError, match="splits"):
        inception_score(np.zeros((3, 4)), splits=10)


def test_mean_cosine_similarity():
    rng = np.random.default_rng(5)
    a = rng.standard_normal((4, 8))
    assert mean_cosine_similarity(a, 3.0 * a) == pytest.approx(1.0)
    assert mean_cosine_similarity(a, -a) == pytest.approx(-1.0)
    x = np.array([[1.0, 0.0], [0.0, 2.0]])
    y = np.array([[0.0, 5.0], [0.0, 1.0]])
    assert mean_cosine_similarity(x, y) == pytest.approx(0.5)  # (0 + 1) / 2
    as_dicts = mean_cosine_similarity({"u": x[0], "v": x[1]}, {"v": y[1], "u": y[0]})
    assert as_dicts == pytest.approx(0.5)
    with pytest.raises(PairingError, match="w"):
        mean_cosine_similarity({"u": x[0]}, {"w": y[0]})
    # Per-item stacks of vectors (N, K, D): every vector pair counts once.
    stacked_x = np.stack([x, x[::-1]], axis=1)  # (2, 2, 2)
    stacked_y = np.stack([y, y], axis=1)
    assert mean_cosine_similarity(stacked_x, stacked_y) == pytest.approx((0 + 1 + 1 + 0) / 4)


def test_desync_hand_made_logits():
    grid = sync_offset_grid()
    assert grid.shape == (21,)
    np.testing.assert_allclose(grid[[0, 10, 20]], [-2.0, 0.0, 2.0])
    classes = np.array([[10, 0], [15, 13]])  # offsets 0, -2, +1, +0.6 s
    logits = np.full((2, 2, 21), -1.0)
    for i in range(2):
        for w in range(2):
            logits[i, w, classes[i, w]] = 3.0
    assert desync(logits) == pytest.approx((0 + 2 + 1 + 0.6) / 4, abs=1e-6)
    assert desync(logits[0, 0]) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="21 classes"):
        desync(np.zeros((2, 20)))
