"""Evaluation: the av-benchmark metrics (FD, KL, IS, IB-Score, DeSync) for generated audio.

``metrics`` holds the arithmetic, ``audio`` file reading and preprocessing, ``embedders`` the
pluggable feature extractors, ``av_bench`` the adapter to av-benchmark's extractors and
``runner`` the folder-level evaluation used by ``python -m saganet.evaluation``.
"""

from saganet.evaluation.embedders import AudioEmbedder, build_embedder, register_embedder
from saganet.evaluation.metrics import (
    PairingError,
    desync,
    frechet_distance,
    frechet_distance_from_stats,
    inception_score,
    kl_divergence_softmax,
    mean_cosine_similarity,
)
from saganet.evaluation.runner import AvBenchOptions, EvaluationReport, evaluate_directories

__all__ = [
    "AudioEmbedder",
    "AvBenchOptions",
    "EvaluationReport",
    "PairingError",
    "build_embedder",
    "desync",
    "evaluate_directories",
    "frechet_distance",
    "frechet_distance_from_stats",
    "inception_score",
    "kl_divergence_softmax",
    "mean_cosine_similarity",
    "register_embedder",
]
