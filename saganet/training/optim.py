"""AdamW with one parameter group per trained module, and the warm-up + step-decay schedule."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from saganet.training.config import OptimConfig, ScheduleConfig

log = logging.getLogger(__name__)

# Group settings that come from the configuration, also when a training state is loaded.
CONFIGURED = ("initial_lr", "betas", "eps", "weight_decay")


def build_optimizer(
    groups: Mapping[str, Sequence[nn.Parameter]],
    cfg: OptimConfig,
    *,
    amp: bool,
    fused: bool = False,
) -> torch.optim.AdamW:
    """AdamW over the trainable parameters, one group per module.

    Args:
        groups: module name -> its trainable parameters; empty groups are left out.
        cfg: learning rate, betas, weight decay, epsilon.
        amp: whether bf16 autocast is active (selects the default epsilon).
        fused: use the fused CUDA kernel.
    """
    eps = cfg.eps if cfg.eps is not None else (1e-6 if amp else 1e-8)
    param_groups = [
        {"name": name, "params": list(params), "lr": cfg.lr, "weight_decay": cfg.weight_decay}
        for name, params in groups.items()
        if len(params) > 0
    ]
    if not param_groups:
        raise ValueError("nothing to train: every parameter group is empty")
    for group in param_groups:
        count = sum(p.numel() for p in group["params"])
        log.info("optimiser group %s: %d tensors, %d parameters", group["name"],
                 len(group["params"]), count)
    return torch.optim.AdamW(param_groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=eps,
                             weight_decay=cfg.weight_decay, fused=fused)


def lr_factor(step: int, cfg: ScheduleConfig) -> float:
    """Multiplier of the peak learning rate used by optimiser step ``step`` (0-based).

    Linear warm-up ``(step + 1) / (warmup + 1)`` for ``step < warmup``, then ``gamma`` to the
    number of milestones already reached. The milestones are global steps: the reference's
    SequentialLR restarted its MultiStepLR at the end of warm-up, so its configured 60k/65k
    decays took effect at 62.5k/67.5k, which is what our recipe names directly.

    Args:
        step: optimiser step index.
        cfg: warm-up length, milestones and decay factor.
    """
    if step < cfg.warmup_steps:
        return (step + 1) / (cfg.warmup_steps + 1)
    return cfg.gamma ** sum(step >= m for m in cfg.milestones)


def build_scheduler(optimizer: torch.optim.Optimizer,
                    cfg: ScheduleConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """A scheduler stepped once per optimiser step, following :func:`lr_factor`.

    Args:
        optimizer: the optimiser whose groups all follow the same schedule.
        cfg: the schedule.
    """
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, cfg))


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple | list) else value


def load_optimizer_state(optimizer: torch.optim.Optimizer,
                         scheduler: torch.optim.lr_scheduler.LambdaLR,
                         optimizer_state: dict[str, Any],
                         scheduler_state: dict[str, Any]) -> list[str]:
    """Load a training state's optimiser and scheduler, keeping the configured settings.

    ``Optimizer.load_state_dict`` takes every group's peak learning rate, betas, epsilon and
    weight decay from the file (and the scheduler its base rates), so a run resumed with, say,
    a lower ``optim.lr`` after a loss spike would go on with the old one, silently. The moments,
    step counts and the schedule's position come from the state; those settings from the
    configuration.

    Args:
        optimizer: built from the configuration (:func:`build_optimizer`).
        scheduler: its scheduler (:func:`build_scheduler`).
        optimizer_state: the saved ``optimizer.state_dict()``.
        scheduler_state: the saved ``scheduler.state_dict()``.

    Returns:
        The settings the configuration changed, as ``"<group> <key> <saved> -> <now>"``.
    """
    configured = [{key: group[key] for key in CONFIGURED} for group in optimizer.param_groups]
    optimizer.load_state_dict(optimizer_state)
    scheduler.load_state_dict(scheduler_state)
    changes = []
    for index, (group, wanted) in enumerate(zip(optimizer.param_groups, configured,
                                                strict=True)):
        for key, value in wanted.items():
            if _plain(group[key]) != _plain(value):
                changes.append(f"{group.get('name', index)} {key} {group[key]} -> {value}")
                group[key] = value
        if scheduler.base_lrs[index] != group["initial_lr"]:
            # The rate of the next step, as the scheduler computes it.
            scheduler.base_lrs[index] = group["initial_lr"]
            group["lr"] = group["initial_lr"] * scheduler.lr_lambdas[index](scheduler.last_epoch)
    return changes
