"""Device choice: a device this machine lacks is a one-line error that names the caller's way
of asking for the CPU."""

from __future__ import annotations

import pytest
import torch

from saganet import dist
from saganet.errors import UserInputError


@pytest.fixture
def no_accelerators(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


@pytest.mark.parametrize("device", ["cuda", "cuda:1", "mps"])
def test_a_missing_device_suggests_the_callers_cpu_option(no_accelerators: None,
                                                          device: str) -> None:
    # Python callers are told the argument's value, not a command-line flag.
    with pytest.raises(UserInputError, match=r"; use device 'cpu'$") as info:
        dist.resolve_device(device)
    assert "--device" not in str(info.value)
    with pytest.raises(UserInputError, match=r"; use --device cpu$"):
        dist.resolve_device(device, use_cpu="--device cpu")  # the commands' flag (demo.py)
    # batch_eval.py and train.py take Hydra overrides, not flags.
    with pytest.raises(UserInputError, match=r"; use device=cpu$") as info:
        dist.init(device, use_cpu="device=cpu")
    assert "--device" not in str(info.value)
