"""Antialiased image resize with the results of torchvision's tensor ``resize``, bit for bit.

torchvision is not imported for it: importing torchvision imports ``torch._dynamo`` (through
``torchvision.ops``), 2-4 s of the start of every process that reads a video or cuts a focal
crop, for two resizes (the trainer among them; open_clip imports torchvision itself, so the
processes that build CLIP pay it anyway).
What torchvision does, and this repeats: images of a dtype that the CPU kernels take natively
(float32 and float64; uint8 for bicubic, and for bilinear where the CPU has AVX2, AVX-512 or is
an ARM) go to ``torch.nn.functional.interpolate`` as they are; other dtypes go through float32
and back, rounded (and clamped to 0..255 for bicubic, which overshoots). ``tests/test_resize.py``
compares the two over dtypes, modes, sizes and memory layouts.
"""

from __future__ import annotations

import platform
from typing import Literal

import torch
from torch.nn.functional import interpolate

Mode = Literal["bilinear", "bicubic"]
_INTEGER = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def _native(dtype: torch.dtype, device: torch.device, mode: Mode) -> bool:
    """Whether ``interpolate`` takes ``dtype`` as it is (else float32 in between)."""
    if dtype in (torch.float32, torch.float64):
        return True
    if dtype != torch.uint8 or device.type != "cpu":
        return False
    if mode == "bicubic":
        return True
    # The uint8 bilinear kernel is vectorised for these CPUs only; elsewhere float32 is faster,
    # and its rounding differs, so the choice must be the same as torchvision's.
    return (torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")
            or platform.machine() in ("aarch64", "arm64"))


def resize(image: torch.Tensor, size: tuple[int, int] | list[int], mode: Mode = "bilinear"
           ) -> torch.Tensor:
    """Resize the last two dimensions of ``(..., C, H, W)`` ``image`` to ``size`` ``(h, w)``.

    The aspect ratio is not kept (a squash). The output has the input's dtype; an input already
    of that size is returned as it is.
    """
    height, width = (int(s) for s in size)
    *lead, channels, old_height, old_width = image.shape
    if (height, width) == (old_height, old_width):
        return image
    if image.numel() == 0:
        return image.new_empty(*lead, channels, height, width)
    dtype = image.dtype
    flat = image.reshape(-1, channels, old_height, old_width)
    if (flat.shape[0] == 1 and flat.is_contiguous(memory_format=torch.channels_last)
            and flat.stride(0) != flat.numel()):
        # One channels-last image: interpolate would allocate a contiguous output (PyTorch issue
        # 68430) and the uint8 kernel repack it; a batch stride of numel keeps it channels-last.
        flat = flat.as_strided(flat.shape, (flat.numel(), *flat.stride()[1:]))
    cast = not _native(dtype, flat.device, mode)
    if cast:
        flat = flat.to(torch.float32)
    out = interpolate(flat, size=[height, width], mode=mode, align_corners=False,
                      antialias=True)
    if cast:
        if mode == "bicubic" and dtype == torch.uint8:
            out = out.clamp_(0, 255)
        if dtype in _INTEGER:
            out = out.round_()
        out = out.to(dtype)
    return out.reshape(*lead, channels, height, width)
