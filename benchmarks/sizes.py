"""The model sizes the benchmarks build: the published ones they measure, or tiny ones.

Every benchmark measures at the published sizes (random weights, nothing downloaded). With
``--tiny`` it builds the ``debug`` variant's sizes instead (flow network ``debug``, the debug
Synchformer, VAE and vocoder, a one-layer CLIP) and otherwise runs the same code: the same
stages, both paths, the same tables and JSON, in seconds on a small CPU. The figures of a
tiny run mean nothing; it is a smoke run that catches a library change breaking a benchmark
before a rare GPU machine spends its minutes on it (``tests/test_benchmarks.py``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

# Imported where used: a script's --help, and threads.py's parent process, stay light.
if TYPE_CHECKING:
    import torch

    from saganet.codec import AudioCodecConfig
    from saganet.codec.bigvgan import BigVGANConfig
    from saganet.features import SynchformerConfig

# CLIP ViT-H/14 at 384 px: open_clip's config of DFN5B-CLIP-ViT-H-14-384's architecture.
CLIP_CONFIG = "ViT-H-14-378-quickgelu"
CLIP_IMAGE_SIZE = 384
# The tiny CLIP has saganet.features.tiny_clip's layout (one layer per tower, 64-px patches of
# the same 384-px frames, the real 77-token tokenizer) and the debug network's feature widths.
TINY_PATCH_SIZE = 64
# Euler steps of a tiny run: the sampling loop is the same code at any count.
TINY_STEPS = 2


@dataclasses.dataclass(frozen=True)
class Sizes:
    """Which sizes to build.

    Args:
        tiny: the debug variant's sizes instead of the published ones.
    """

    tiny: bool = False

    @property
    def network(self) -> str:
        """The flow network's variant name (``saganet.model.VARIANTS``)."""
        return "debug" if self.tiny else "small_44k_sa"

    @property
    def vocoder_name(self) -> str:
        """The vocoder's name in ``saganet.codec.VOCODER_CONFIGS``."""
        return "debug" if self.tiny else "bigvgan_v2_44khz_128band_512x"

    def vocoder(self) -> BigVGANConfig:
        """BigVGAN's architecture."""
        from saganet.codec import VOCODER_CONFIGS

        return VOCODER_CONFIGS[self.vocoder_name]

    def codec(self) -> AudioCodecConfig:
        """The 44.1 kHz codec's architecture (VAE and vocoder)."""
        from saganet.codec import AudioCodecConfig

        return AudioCodecConfig.debug() if self.tiny else AudioCodecConfig.for_mode("44k")

    def synchformer(self) -> SynchformerConfig:
        """The Synchformer's architecture (plain and segmentation-aware)."""
        from saganet.features import SynchformerConfig

        return SynchformerConfig.debug() if self.tiny else SynchformerConfig()

    def clip_model_config(self) -> dict:
        """open_clip's model config (``open_clip.model.CLIP(**config)``) at 384 px."""
        import open_clip

        if not self.tiny:
            config = open_clip.get_model_config(CLIP_CONFIG)
            config["vision_cfg"]["image_size"] = CLIP_IMAGE_SIZE
            return config
        from saganet.model import VARIANTS

        network = VARIANTS[self.network]
        return {"embed_dim": network.clip_dim, "quick_gelu": True,
                "vision_cfg": {"layers": 1, "width": 64, "head_width": 32,
                               "patch_size": TINY_PATCH_SIZE, "image_size": CLIP_IMAGE_SIZE},
                "text_cfg": {"context_length": 77, "vocab_size": 49408,
                             "width": network.text_dim, "heads": 2, "layers": 1}}

    def clip(self, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
        """CLIP with random weights (seeded), as ``ClipEncoder`` at 384 px."""
        import open_clip
        import torch

        from saganet.features.clip import ClipEncoder

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(1)
            if self.tiny:
                model = open_clip.model.CLIP(**self.clip_model_config())
            else:
                model = open_clip.create_model(CLIP_CONFIG, pretrained=None,
                                               force_image_size=CLIP_IMAGE_SIZE)
        clip = ClipEncoder.from_model(model, open_clip.get_tokenizer(CLIP_CONFIG),
                                      image_size=CLIP_IMAGE_SIZE)
        return clip.to(device=device, dtype=dtype)


def best_wall_and_cpu(fn: Callable[[], object], repeats: int) -> tuple[float, float, object]:
    """Best wall-clock and best process CPU seconds (all threads) of ``repeats`` calls, no
    warm-up (for I/O, where the first call is the one a user makes), and the last result."""
    best_wall = best_cpu = float("inf")
    result = None
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        result = fn()
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    return best_wall, best_cpu, result


def best_time(fn: Callable[[], object], repeats: int) -> float:
    """Best wall time of ``repeats`` calls after one untimed call.

    The warm-up uses the same shapes: oneDNN sets up its convolution kernels per shape, and
    that first-call cost is as large as the call itself for the vocoder.
    """
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def thread_count(text: str) -> int:
    """``--threads``'s type: a positive count; one above the cores this process may use is
    taken (benchmarks/threads.py measures such runs on purpose) with a warning, because the
    threads then wait for each other and the figures measure the contention."""
    from saganet.cli import positive_int
    from saganet.runtime import available_cores

    count = positive_int(text)
    cores = available_cores()
    if count > cores:
        print(f"warning: --threads {count} is more than the {cores} core(s) this process may "
              "use: the threads will wait for each other", file=sys.stderr)
    return count


def add_threads_flag(parser: argparse.ArgumentParser, default: int | None = None,
                     help: str = "torch CPU threads (default: saganet.runtime's policy)"
                     ) -> None:
    """``--threads N`` on a benchmark's argument parser (see :func:`thread_count`)."""
    parser.add_argument("--threads", type=thread_count, default=default, help=help)


def add_tiny_flag(parser: argparse.ArgumentParser) -> None:
    """``--tiny`` on a benchmark's argument parser."""
    parser.add_argument("--tiny", action="store_true",
                        help="the debug variant's tiny models and short inputs: a smoke run of "
                             "the same code in seconds (its figures mean nothing)")


def add_run_flags(parser: argparse.ArgumentParser, threads: int | None = None,
                  threads_help: str = "torch CPU threads (default: saganet.runtime's policy)"
                  ) -> None:
    """``--json``, ``--tiny`` and ``--threads``: the flags of every benchmark that times torch
    on the CPU (``threads``: the default count, None for the run-time policy)."""
    add_json_flag(parser)
    add_tiny_flag(parser)
    add_threads_flag(parser, threads, threads_help)


def json_output(text: str) -> Path:
    """``--json``'s type: a file that can be written once the benchmark is done. Checked while
    parsing, so that a folder that is missing or read-only, or a path that is a folder, fails at
    once instead of as a traceback after all the timing."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a folder; give a file name in it")
    folder = path.parent
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(f"folder {str(folder)!r} of {text!r} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"folder {str(folder)!r} of {text!r} is not writable")
    return path


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    """``--json FILE`` on a benchmark's argument parser (write it with :func:`write_json`)."""
    parser.add_argument("--json", type=json_output, default=None, metavar="FILE",
                        help="also write results here, when the run is done (an existing "
                             "file is replaced)")


def write_json(path: Path, value: object) -> None:
    """Write ``value`` to ``path`` as indented JSON, whole or not at all (a temporary file
    renamed into place: an interrupted or failed write leaves no half file)."""
    from saganet.fileio import atomic_output

    text = json.dumps(value, indent=2)
    with atomic_output(path, overwrite=True, suffix=".json") as temporary:
        temporary.write_text(text)


def check_device(parser: argparse.ArgumentParser, name: str) -> torch.device:
    """The device ``--device`` names, or the parser's error (exit 2) when it is unknown or this
    machine lacks it: before any model is built, not as a driver traceback inside the run."""
    from saganet.dist import resolve_device
    from saganet.errors import UserInputError

    try:
        return resolve_device(name)
    except UserInputError as error:
        parser.error(f"argument --device: {error}")
