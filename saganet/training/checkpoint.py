"""What a training run writes to disk and reads back: weights files and full training states.

Two kinds of files live in a run directory:

* **Weights files** (``<run_dir>/<exp_name>_last.pth``, and ``<exp_name>_ema_final.pth`` from
  the EMA synthesis; ``demo.py --checkpoint <file>`` runs them) in the published layout::

      {"network": merged network state dict, "synchformer": vfeat_extractor.* state dict,
       "lora": lora_A/lora_B only (LoRA runs), "config": {"network": ..., "synchformer": ...,
       "variant": ...}}

  The network entry holds ``qkv.weight`` with the LoRA delta merged in, exactly like the
  released ``saganet.pth``; the ``config`` entry lets the file rebuild its own model.
* **Full training states** (``<run_dir>/checkpoints/state_<step>.pth``): every module's full
  state dict as it is during training (LoRA *not* merged, so resuming does not round the base
  weights), the names of the trainable tensors, optimiser, scheduler, step, the data sampler's
  epoch and position, every rank's random-number-generator states and unfinished log window,
  and the EMA state. The last ``keep_last`` states are kept.

Every file is written to a temporary name in the same folder and moved into place with
``os.replace``, so a run killed mid-write never leaves a truncated file under the real name;
the temporary file such a kill (SIGKILL, power loss) leaves behind is removed by the next save
of that kind. All loads are ``weights_only=True``.
"""

from __future__ import annotations

import logging
import os
import random
import re
import shutil
from collections.abc import Iterable
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from saganet.errors import UserInputError
from saganet.state_dict import atomic_save, load_checkpoint_file

log = logging.getLogger(__name__)

STATE_DIR = "checkpoints"
_STATE_NAME = re.compile(r"^state_(\d+)\.pth$")
# saganet.fileio.temporary_sibling names the temporary file of an atomic save
# ".<name>.<owner tag>.tmp" (hex digits and hyphens, see saganet.leftovers).
_TEMPORARY = r"\.(?:{name})\.[0-9a-f-]+\.tmp"


def cpu_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached CPU copies, so a saved state no longer aliases live parameters."""
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}


# ----------------------------------------------------------------------------------------------
# random number generators


@dataclass
class RNGState:
    """Every random source one rank uses, captured so a resumed run draws the same numbers.

    Args:
        torch_cpu: the global CPU generator.
        torch_cuda: the global CUDA generators (empty without CUDA).
        numpy: ``np.random.get_state()`` as plain data.
        python: ``random.getstate()`` as plain data.
        generators: named ``torch.Generator`` states owned by the training loop.
    """

    torch_cpu: torch.Tensor
    torch_cuda: list[torch.Tensor]
    numpy: dict[str, Any]
    python: list[Any]
    generators: dict[str, torch.Tensor] = field(default_factory=dict)

    @classmethod
    def capture(cls, generators: dict[str, torch.Generator]) -> RNGState:
        """Snapshot the global generators and the loop's own ones.

        Args:
            generators: the loop's named generators.
        """
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        version, internal, gauss_next = random.getstate()
        return cls(
            torch_cpu=torch.get_rng_state(),
            torch_cuda=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            numpy={"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                   "has_gauss": int(has_gauss), "gauss": float(gauss)},
            python=[version, list(internal), gauss_next],
            generators={name: g.get_state() for name, g in generators.items()},
        )

    def restore(self, generators: dict[str, torch.Generator]) -> None:
        """Put every captured state back.

        Args:
            generators: the loop's named generators; each must have a saved state.
        """
        torch.set_rng_state(self.torch_cpu)
        if self.torch_cuda and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(self.torch_cuda)
        n = self.numpy
        np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"],
                             n["has_gauss"], n["gauss"]))
        version, internal, gauss_next = self.python
        random.setstate((version, tuple(internal), gauss_next))
        missing = sorted(set(generators) - set(self.generators))
        if missing:
            raise KeyError(f"training state has no RNG state for generator(s) {missing}")
        for name, gen in generators.items():
            gen.set_state(self.generators[name])

    def to_dict(self) -> dict[str, Any]:
        return {"torch_cpu": self.torch_cpu, "torch_cuda": list(self.torch_cuda),
                "numpy": dict(self.numpy), "python": list(self.python),
                "generators": dict(self.generators)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RNGState:
        """Rebuild a captured state.

        Raises:
            MalformedStateError: ``data`` is not a dict or lacks one of the sources.
        """
        _check_parts(data, cls, "")
        return cls(**data)


class MalformedStateError(ValueError):
    """A training state whose layout is not the one :func:`save_state` writes."""


def _check_parts(data: object, cls: type, where: str) -> None:
    """Refuse ``data`` unless it is a dict holding every field of the dataclass ``cls``
    without a default, and no other key (``cls(**data)`` would raise a bare TypeError)."""
    if not isinstance(data, dict):
        raise MalformedStateError(f"{where or 'the state'} is a {type(data).__name__}, not a dict")
    known = {f.name for f in fields(cls)}
    required = [f.name for f in fields(cls)
                if f.default is MISSING and f.default_factory is MISSING]
    missing = [name for name in required if name not in data]
    unknown = sorted(str(key) for key in data if key not in known)
    def named(key: str) -> str:
        return f"{where}[{key!r}]" if where else repr(key)

    problems = ([f"no {', '.join(map(named, missing))}"] if missing else []) \
        + ([f"unknown part(s) {', '.join(map(named, unknown))}"] if unknown else [])
    if problems:
        raise MalformedStateError("; ".join(problems))


# ----------------------------------------------------------------------------------------------
# full training states


@dataclass
class TrainingState:
    """A resumable snapshot of a run after ``step`` optimiser steps.

    Args:
        step: optimiser steps done.
        modules: module name -> full state dict (as during training).
        trainable: module name -> names of its trainable parameters.
        optimizer: ``optimizer.state_dict()``.
        scheduler: ``scheduler.state_dict()``.
        epoch: the data sampler's epoch.
        batches_in_epoch: batches of that epoch already consumed.
        samples_in_epoch: samples of that epoch already consumed, by all ranks together (where
            a resume with another batch size or number of ranks goes on); None in older states.
        rng: one :class:`RNGState` dict per global rank (index = rank).
        ema: the EMA's state dict (empty when EMA is off).
        failed_samples: samples that failed to load so far (all ranks).
        log_window: one dict per global rank: the training-loss sums since the last log point
            (:meth:`saganet.training.logger.LossStats.state_dict`); empty in older states.
        config: the run's configuration as plain data (for the record).
    """

    step: int
    modules: dict[str, dict[str, torch.Tensor]]
    trainable: dict[str, list[str]]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    epoch: int
    batches_in_epoch: int
    rng: list[dict[str, Any]]
    ema: dict[str, Any] = field(default_factory=dict)
    failed_samples: int = 0
    log_window: list[dict[str, Any]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    samples_in_epoch: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"format": "saganet-training-state-v1", **self.__dict__}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingState:
        """Rebuild a state read from a file, checking its layout (a hand-edited or foreign
        file would otherwise fail deep in the resume with a KeyError or TypeError).

        Raises:
            ValueError: ``data`` is not a training state at all (no or another format).
            MalformedStateError: it is one, but a part is missing or of the wrong kind.
        """
        data = dict(data)
        fmt = data.pop("format", None)
        if fmt != "saganet-training-state-v1":
            raise ValueError(f"not a saganet training state (format {fmt!r})")
        _check_parts(data, cls, "")
        kinds = {"step": int, "epoch": int, "batches_in_epoch": int, "failed_samples": int,
                 "modules": dict, "trainable": dict, "optimizer": dict, "scheduler": dict,
                 "rng": list, "ema": dict, "log_window": list, "config": dict}
        for name, kind in kinds.items():
            value = data.get(name, kind())
            if not isinstance(value, kind) or isinstance(value, bool):
                raise MalformedStateError(f"{name!r} is a {type(value).__name__}, not a "
                                          f"{kind.__name__}")
        samples = data.get("samples_in_epoch")
        if samples is not None and (not isinstance(samples, int) or isinstance(samples, bool)
                                    or samples < 0):
            raise MalformedStateError(f"'samples_in_epoch' is {samples!r}, not a count")
        for name, module in data["modules"].items():
            if not isinstance(module, dict):
                raise MalformedStateError(f"modules[{name!r}] is a {type(module).__name__}, "
                                          f"not a state dict")
        # What Optimizer.load_state_dict and LRScheduler.load_state_dict index.
        for part, keys in (("optimizer", ("state", "param_groups")),
                           ("scheduler", ("last_epoch", "base_lrs"))):
            missing = [key for key in keys if key not in data[part]]
            if missing:
                raise MalformedStateError(
                    f"no {', '.join(f'{part}[{key!r}]' for key in missing)}")
        if not data["rng"]:
            raise MalformedStateError("'rng' holds no rank's random generator states")
        for rank, rng in enumerate(data["rng"]):
            _check_parts(rng, RNGState, f"rng[{rank}]")
        return cls(**data)


# Configuration keys (and sections) a resume changes without a warning: how long the run goes
# and what it logs, saves and evaluates (extending a run with a higher ``num_iterations`` is the
# usual resume), where things are, and speed or memory knobs that do not change the trained
# numbers. The base weights are replaced by the state's. The optimiser's group settings are
# reported by ``load_optimizer_state`` from the groups themselves, which also catches an
# epsilon that the device changed.
UNWATCHED = ("run_dir", "paths", "num_iterations", "stop_after", "val_batch_size", "sync_chunk",
             "cudnn_benchmark", "data.num_workers", "data.pin_memory", "model.network_init",
             "model.synchformer_init", "optim.lr", "optim.betas", "optim.eps",
             "optim.weight_decay", "log", "eval", "checkpoint")


def _flat(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted key -> value, with tuples as lists (``asdict`` keeps tuples, a reload may not)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flat(value, f"{name}."))
        else:
            flat[name] = list(value) if isinstance(value, tuple) else value
    return flat


# Mappings whose keys the user chooses rather than the schema: ``model.architecture`` holds
# only the fields that differ from the named size, so an entry set on one side only is a
# change of the network (one that keeps every shape, such as ``lora_alpha``, loads silently).
USER_MAPPINGS = ("model.architecture",)
UNSET = "(unset)"


def config_changes(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """The settings a resume changes, as ``"<key> <saved> -> <now>"``, outside
    :data:`UNWATCHED`.

    Keys only one side has are left out (a state written by another version of the code),
    except inside :data:`USER_MAPPINGS`, where they are listed with ``(unset)`` on the other
    side.

    Args:
        saved: the state's ``config`` entry.
        current: this run's configuration as plain data (``dataclasses.asdict``).
    """
    before, now = _flat(saved), _flat(current)
    changes = []
    for key in [*before, *(key for key in now if key not in before)]:
        if any(key == skip or key.startswith(f"{skip}.") for skip in UNWATCHED):
            continue
        if key in before and key in now:
            if before[key] != now[key]:
                changes.append(f"{key} {before[key]} -> {now[key]}")
        elif any(key.startswith(f"{mapping}.") for mapping in USER_MAPPINGS):
            changes.append(f"{key} {before.get(key, UNSET)} -> {now.get(key, UNSET)}")
    return changes


def state_dir(run_dir: str | os.PathLike[str]) -> Path:
    """Folder of the full training states of a run."""
    return Path(run_dir) / STATE_DIR


def list_states(run_dir: str | os.PathLike[str]) -> list[tuple[int, Path]]:
    """``(step, path)`` of every full training state of a run, oldest first."""
    folder = state_dir(run_dir)
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = _STATE_NAME.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def remove_after(found: Iterable[tuple[int, Path]], step: int) -> list[Path]:
    """Remove the files and folders of ``found`` (``(step, path)`` pairs) of steps after
    ``step``; return them in step order.

    A run that starts at ``step`` (the state it resumes from, or 0) takes the later steps
    again: what an invocation killed after that state wrote for them (evaluations, EMA
    snapshots) belongs to a course of training this run does not follow.
    """
    later = sorted((found_step, path) for found_step, path in found if found_step > step)
    for _, path in later:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    return [path for _, path in later]


def latest_state(run_dir: str | os.PathLike[str]) -> Path | None:
    """The newest full training state of a run, or None."""
    states = list_states(run_dir)
    return states[-1][1] if states else None


def remove_killed_saves(folder: Path, name: str) -> None:
    """Delete the temporary files of atomic saves that were killed mid-write.

    Only the rank-0 process of the run writes these names, one save at a time, so when it is
    about to save, every such file is stale (each can be as large as a training state).

    Args:
        folder: where the saves go.
        name: regular expression of the final file names.
    """
    if not folder.is_dir():
        return
    temporary = re.compile(_TEMPORARY.format(name=name))
    for path in folder.iterdir():
        if temporary.fullmatch(path.name):
            log.info("removing %s, left by a save that was killed mid-write", path)
            path.unlink(missing_ok=True)


def save_weights_file(weights: dict[str, Any], path: Path) -> Path:
    """Write a weights file atomically (see the module docstring).

    Args:
        weights: the published layout (``SAGANetModels.weights_file()``).
        path: the file.
    """
    remove_killed_saves(path.parent, re.escape(path.name))
    return atomic_save(weights, path)


def save_state(state: TrainingState, run_dir: str | os.PathLike[str], keep_last: int) -> Path:
    """Write a full training state atomically and delete all but the newest ``keep_last``.

    Args:
        state: the snapshot.
        run_dir: the run directory.
        keep_last: how many states to keep (at least 1).
    """
    remove_killed_saves(state_dir(run_dir), r"state_\d+\.pth")
    path = atomic_save(state.to_dict(), state_dir(run_dir) / f"state_{state.step:09d}.pth")
    for _, old in list_states(run_dir)[: -max(1, keep_last)]:
        old.unlink(missing_ok=True)
        log.info("deleted old training state %s", old)
    return path


def load_state(path: str | os.PathLike[str]) -> TrainingState:
    """Read a full training state (weights only).

    Args:
        path: a file written by :func:`save_state`.

    Raises:
        UserInputError: the file is unreadable or is not a training state (e.g. a weights
            file, which holds no optimiser or data position to resume from).
    """
    data = load_checkpoint_file(str(path))
    try:
        if not isinstance(data, dict):
            raise ValueError(f"not a saganet training state (a {type(data).__name__})")
        return TrainingState.from_dict(data)
    except MalformedStateError as err:
        raise UserInputError(f"malformed training state: {err}", path) from None
    except ValueError as err:
        raise UserInputError(f"{err}; training resumes from the full states in "
                             f"<run_dir>/{STATE_DIR}/state_<step>.pth, not from weights files",
                             path) from None
