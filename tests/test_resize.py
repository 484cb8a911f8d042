"""saganet.resize against torchvision's tensor resize, which it stands in for: equal bit for bit."""

import zlib

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from saganet.resize import resize

MODES = {"bilinear": TF.InterpolationMode.BILINEAR, "bicubic": TF.InterpolationMode.BICUBIC}


def _image(shape: tuple[int, ...], dtype: torch.dtype, generator: torch.Generator) -> torch.Tensor:
    if dtype.is_floating_point:
        return (torch.rand(shape, generator=generator) * 2 - 1).to(dtype)
    return torch.randint(0, 256, shape, generator=generator).to(dtype)


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float64, torch.bfloat16,
                                   torch.int16])
def test_resize_equals_torchvision(mode: str, dtype: torch.dtype) -> None:
    # A seed per case that is the same in every run (str hashes are salted per process).
    generator = torch.Generator().manual_seed(zlib.crc32(f"{mode} {dtype}".encode()))
    for lead in ((), (3,), (2, 2)):
        channels = int(torch.randint(1, 4, (), generator=generator))
        height, width = (int(v) for v in torch.randint(5, 40, (2,), generator=generator))
        image = _image((*lead, channels, height, width), dtype, generator)
        # Down, up, and down one way while up the other: the antialias filter acts only down.
        for size in ((max(1, height // 3), max(1, width // 2)), (height * 2 + 1, width + 7),
                     (height + 3, max(1, width // 4))):
            expected = TF.resize(image, list(size), interpolation=MODES[mode], antialias=True)
            got = resize(image, size, mode)
            assert got.dtype == expected.dtype and got.shape == expected.shape
            assert torch.equal(got, expected), (lead, image.shape, size)


def test_channels_last_image_keeps_its_layout_and_values() -> None:
    generator = torch.Generator().manual_seed(0)
    image = _image((1, 3, 31, 45), torch.uint8, generator).contiguous(
        memory_format=torch.channels_last)
    size = (image.shape[-2] // 2, image.shape[-1] * 2)
    for mode, interpolation in MODES.items():
        expected = TF.resize(image, list(size), interpolation=interpolation, antialias=True)
        got = resize(image, size, mode)
        assert torch.equal(got, expected)
        assert got.stride() == expected.stride()


def test_same_size_returns_the_input_and_empty_batches_take_the_new_size() -> None:
    image = torch.zeros(2, 3, 8, 6)
    assert resize(image, (8, 6)) is image
    empty = resize(torch.zeros(0, 3, 8, 6), (4, 5))
    assert empty.shape == (0, 3, 4, 5)


def test_uint8_through_float_matches_where_the_kernel_is_not_native(monkeypatch) -> None:
    """On a GPU, or a CPU without AVX2 for bilinear, uint8 goes through float32 and back,
    rounded, and clamped for bicubic (which overshoots): the same as torchvision there."""
    import torchvision.transforms.v2.functional._geometry as geometry

    import saganet.resize as module

    monkeypatch.setattr(geometry, "_do_native_uint8_resize_on_cpu", lambda mode: False)
    monkeypatch.setattr(module, "_native", lambda dtype, device, mode: dtype != torch.uint8)
    generator = torch.Generator().manual_seed(1)
    # Black and white edges make bicubic overshoot below 0 and above 255.
    image = (torch.rand(3, 24, 30, generator=generator) > 0.5).to(torch.uint8) * 255
    for mode, interpolation in MODES.items():
        for size in ((image.shape[-2] * 2, image.shape[-1] + 5), (image.shape[-2] // 3, 11)):
            expected = TF.resize(image, list(size), interpolation=interpolation, antialias=True)
            assert torch.equal(resize(image, size, mode), expected), (mode, size)
