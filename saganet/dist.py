"""Process-group helpers: rank, world size, init and teardown.

Everything runs with world size 1 without ``torchrun``; under ``torchrun`` the environment it
sets (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``) is read when :func:`init` is called, never at
import. NCCL is used on CUDA and gloo on CPU, so tests can cover the distributed paths with two
CPU processes.
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as torch_dist

from saganet.errors import CPU_ARGUMENT, UserInputError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job."""

    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """True when the torchrun/torch.distributed launcher environment is present."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def init(device: str | torch.device | None = None, timeout_minutes: int = 120, *,
         use_cpu: str = CPU_ARGUMENT) -> DistInfo:
    """Join the process group if launched by torchrun; otherwise describe a single process.

    Args:
        device: ``"cuda"``, ``"cpu"``, ``"mps"``, ``"auto"`` or None for automatic choice
            (checked by :func:`resolve_device`). Under torchrun with CUDA, each process takes
            the GPU of its local rank.
        timeout_minutes: collective timeout (long, because rank 0 may download weights while
            the others wait).
        use_cpu: how the caller's user asks for the CPU, named in the error for a missing
            device (see :func:`resolve_device`).
    """
    device = resolve_device(device, use_cpu=use_cpu)
    if not launched_by_torchrun():
        return DistInfo(0, 0, 1, device)
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not torch_dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch_dist.init_process_group(backend, timeout=datetime.timedelta(minutes=timeout_minutes))
        log.info("rank %d/%d joined the %s process group", rank, world, backend)
    return DistInfo(rank, local_rank, world, device)


def resolve_device(name: str | torch.device | None, *,
                   use_cpu: str = CPU_ARGUMENT) -> torch.device:
    """The device a user named, checked: ``auto``/None (CUDA, then MPS, then CPU), ``cpu``,
    ``cuda``, ``cuda:N`` or ``mps``.

    Args:
        name: the device name.
        use_cpu: how the caller's user asks for the CPU, suggested when the device is missing:
            the argument's value for Python callers (the default), a command's flag
            (:data:`saganet.errors.CPU_FLAG`) or a Hydra override (``device=cpu``).

    Raises:
        UserInputError: an unknown name, or a device this machine does not have.
    """
    if name is None or name == "auto":
        return default_device()
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise UserInputError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or "
                             "mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserInputError(f"device {name!r}: CUDA is not available here (no NVIDIA GPU, "
                                 f"or a PyTorch build without CUDA); use {use_cpu}")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserInputError(f"device {name!r}: this machine has "
                                 f"{torch.cuda.device_count()} CUDA device(s)")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise UserInputError(f"device {name!r}: Apple MPS is not available here; use "
                                 f"{use_cpu}")
    elif device.type != "cpu":
        raise UserInputError(f"unsupported device {name!r}; use auto, cpu, cuda, cuda:N or mps")
    return device


def default_device() -> torch.device:
    """CUDA if available, then Apple MPS, then CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def rank() -> int:
    return torch_dist.get_rank() if torch_dist.is_initialized() else 0


def world_size() -> int:
    return torch_dist.get_world_size() if torch_dist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if torch_dist.is_initialized():
        torch_dist.barrier()


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """Mean of ``value`` over all ranks (identity in a single process)."""
    if not torch_dist.is_initialized():
        return value
    value = value.clone()
    torch_dist.all_reduce(value, op=torch_dist.ReduceOp.SUM)
    return value / torch_dist.get_world_size()


def broadcast_object(value: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``value`` on every rank (``value`` itself in a single process).

    Args:
        value: a picklable object (ignored on ranks other than ``src``).
        src: the rank whose value is sent.
    """
    if not torch_dist.is_initialized():
        return value
    box = [value]
    torch_dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_objects(value: Any) -> list[Any]:
    """``value`` of every rank, in rank order (``[value]`` in a single process).

    Args:
        value: a picklable object.
    """
    if not torch_dist.is_initialized():
        return [value]
    gathered: list[Any] = [None] * torch_dist.get_world_size()
    torch_dist.all_gather_object(gathered, value)
    return gathered


def cleanup() -> None:
    if torch_dist.is_initialized():
        torch_dist.destroy_process_group()
