"""Command-line pieces shared by the entry points.

``demo.py`` and ``python -m saganet.batch`` take the same model and sampling options with the
same meaning and defaults (those of the reference demo), so they are declared once here; every
command reports a user's mistake the same way (:func:`report_user_error`).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """``--variant --weights_dir --checkpoint --device --full_precision --cpu_bf16
    --offline``."""
    parser.add_argument("--variant", default="saganet_small",
                        help="saganet_small (LoRA, default), saganet_small_no_lora or debug")
    parser.add_argument("--weights_dir", type=Path, default=None,
                        help="weights folder (default: $SAGANET_CACHE or ~/.cache/saganet)")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="a weights file to use instead of the variant's published one")
    parser.add_argument("--device", default="auto", help="auto (cuda, mps, cpu), cuda, mps, cpu")
    parser.add_argument("--full_precision", action="store_true",
                        help="fp32 on CUDA (default there: bf16); CPU and MPS use fp32 unless "
                             "--cpu_bf16")
    parser.add_argument("--cpu_bf16", action="store_true",
                        help="bf16 on the CPU (opt-in; fast only on CPUs with AVX512-BF16 or "
                             "AMX, several times slower elsewhere; see docs/performance.md)")
    parser.add_argument("--offline", action="store_true", default=None,
                        help="never download; report missing files and where they go")


def add_sampling_arguments(parser: argparse.ArgumentParser) -> None:
    """``--duration --cfg_strength --num_steps --seed --skip_video_composite``."""
    parser.add_argument("--duration", type=float, default=5.0,
                        help="seconds to generate (shorter inputs shorten it)")
    parser.add_argument("--cfg_strength", type=float, default=7.0,
                        help="classifier-free guidance strength")
    parser.add_argument("--num_steps", type=int, default=25, help="Euler steps")
    parser.add_argument("--seed", type=int, default=42, help="seed of the initial noise")
    parser.add_argument("--skip_video_composite", action="store_true",
                        help="write only the .flac, not the .mp4")


def device_and_dtype(args: argparse.Namespace) -> tuple[torch.device, torch.dtype]:
    """The device of ``--device`` and the parameter dtype: bf16 on CUDA unless
    ``--full_precision``, fp32 elsewhere (bf16 matmuls are slow on most CPUs) unless
    ``--cpu_bf16`` on a CPU."""
    # Imported here: commands such as `python -m saganet.weights` never need torch.
    import torch

    from saganet import dist
    from saganet.errors import UserInputError
    from saganet.runtime import cpu_has_fast_bf16

    device = dist.default_device() if args.device == "auto" else torch.device(args.device)
    if getattr(args, "cpu_bf16", False):
        if args.full_precision:
            raise UserInputError("--cpu_bf16 and --full_precision contradict each other")
        if device.type == "cpu":
            if not cpu_has_fast_bf16():
                log.warning("--cpu_bf16: this CPU has no bf16 matrix instructions (AVX512-BF16 "
                            "or AMX); bf16 will be several times slower than fp32 here")
            return device, torch.bfloat16
    half = device.type == "cuda" and not args.full_precision
    return device, torch.bfloat16 if half else torch.float32
