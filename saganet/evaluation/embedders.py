"""Pluggable audio embedders for evaluation: the interface, a registry and ``melstats``.

An :class:`AudioEmbedder` turns preprocessed mono waveforms (see
:func:`saganet.evaluation.audio.preprocess`) into per-item arrays. The keys it returns decide
which metrics it feeds: ``"embedding"`` ``(N, D)`` feeds a Fréchet distance and ``"logits"``
``(N, C)`` feeds KL and Inception Score. Register a new one with :func:`register_embedder`
in a module of your own, and name that module where the embedder is chosen
(``python -m saganet.evaluation --plugin MODULE``, ``train.py eval.plugins=[MODULE]``):
:func:`import_plugins` imports it so that its registration runs.

``melstats`` is a deterministic, weight-free embedder (log-mel band means and standard
deviations). It exists to exercise the evaluation path end to end and for quick sanity checks;
its numbers are not comparable to the paper's av-benchmark metrics.
"""

from __future__ import annotations

import importlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

import numpy as np

from saganet.errors import UserInputError

log = logging.getLogger(__name__)

EMBEDDING = "embedding"
LOGITS = "logits"


class AudioEmbedder(ABC):
    """Maps mono waveforms at :attr:`sample_rate` to named per-item arrays.

    Attributes:
        name: registry name, also used in metric names (``FD-<name>``).
        description: one line saying what the features are, shown next to the metrics.
        sample_rate: rate the waveforms must have.
        remove_dc: whether the loader should subtract each clip's mean first.
    """

    name: str
    description: str
    sample_rate: int
    remove_dc: bool = True

    @abstractmethod
    def embed(self, waveforms: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        """Embed a batch of clips.

        Args:
            waveforms: ``(T_i,)`` float32 mono clips; lengths may differ.

        Returns:
            Arrays with ``len(waveforms)`` rows, e.g. ``{"embedding": (N, D),
            "logits": (N, C)}``.
        """


_REGISTRY: dict[str, Callable[[], AudioEmbedder]] = {}


def register_embedder(name: str, factory: Callable[[], AudioEmbedder]) -> None:
    """Make an embedder available to :func:`build_embedder` and the ``--embedder`` option.

    Args:
        name: registry key (must not be taken).
        factory: builds the embedder; called once per evaluation run.
    """
    if name in _REGISTRY:
        raise ValueError(f"an audio embedder named {name!r} is already registered")
    _REGISTRY[name] = factory


def import_plugins(modules: Sequence[str], option: str) -> None:
    """Import the user's modules that register embedders (each once; Python caches modules).

    Args:
        modules: importable module names (``mypkg.metrics``), on ``PYTHONPATH`` or installed.
        option: how the caller's command line names them, for errors (``--plugin``).

    Raises:
        UserInputError: a module (or one it imports) cannot be found or imported. Other
            errors raised by the module's own code keep their traceback: they are its bugs.
    """
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as err:
            raise UserInputError(f"{option} {name!r}: cannot import it: {err}") from None


def embedder_names() -> list[str]:
    """Names of the registered embedders, sorted."""
    return sorted(_REGISTRY)


def build_embedder(name: str) -> AudioEmbedder:
    """Build a registered embedder by name.

    Args:
        name: one of :func:`embedder_names`.
    """
    if name not in _REGISTRY:
        raise KeyError(f"unknown audio embedder {name!r}; known: {', '.join(embedder_names())}")
    return _REGISTRY[name]()


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + hz / 700.0)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float
) -> np.ndarray:
    """Triangular HTK-scale mel filters (peak 1), ``(n_mels, n_fft // 2 + 1)``.

    Args:
        sample_rate: audio rate in Hz.
        n_fft: FFT size.
        n_mels: number of bands.
        f_min, f_max: band edges in Hz.
    """
    bins_hz = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)  # (F,)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(f_min), _hz_to_mel(f_max), n_mels + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]  # (M, 1)
    rising = (bins_hz[None] - lower) / (centre - lower)
    falling = (upper - bins_hz[None]) / (upper - centre)
    return np.clip(np.minimum(rising, falling), 0.0, None)  # (M, F)


class MelStatsEmbedder(AudioEmbedder):
    """Log-mel statistics: per-band time mean and std (embedding), band means (logits).

    The "logits" are the time-averaged log-mel energies, so their softmax is a normalised
    spectral envelope; KL and IS on them compare spectral shapes, not sound classes.

    Args:
        sample_rate: analysis rate in Hz.
        n_fft: FFT and window size (Hann).
        hop: hop size in samples.
        n_mels: number of mel bands.
    """

    name = "melstats"
    description = "built-in log-mel statistics (diagnostic only, not comparable to the paper)"
    remove_dc = True

    def __init__(
        self, sample_rate: int = 16000, n_fft: int = 512, hop: int = 160, n_mels: int = 64
    ) -> None:
        self.sample_rate = sample_rate
        self.n_fft = n_fft
        self.hop = hop
        self.window = np.hanning(n_fft + 1)[:-1]  # periodic Hann
        self.filters = mel_filterbank(sample_rate, n_fft, n_mels, 0.0, sample_rate / 2)

    def log_mel(self, waveform: np.ndarray) -> np.ndarray:
        """Log-mel spectrogram ``(n_mels, frames)`` of one clip (short clips are zero-padded)."""
        x = np.asarray(waveform, dtype=np.float64)
        if x.size < self.n_fft:
            x = np.pad(x, (0, self.n_fft - x.size))
        frames = np.lib.stride_tricks.sliding_window_view(x, self.n_fft)[:: self.hop]  # (T, n)
        power = np.abs(np.fft.rfft(frames * self.window, axis=1)) ** 2  # (T, F)
        return np.log(self.filters @ power.T + 1e-10)  # (M, T)

    def embed(self, waveforms: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        mels = [self.log_mel(w) for w in waveforms]
        means = np.stack([m.mean(axis=1) for m in mels])  # (N, M)
        stds = np.stack([m.std(axis=1) for m in mels])  # (N, M)
        return {
            EMBEDDING: np.concatenate([means, stds], axis=1).astype(np.float32),  # (N, 2M)
            LOGITS: means.astype(np.float32),
        }


register_embedder(MelStatsEmbedder.name, MelStatsEmbedder)
