"""Training metrics: accumulation between log points, averaging over ranks, TensorBoard, tqdm.

:class:`LossStats` sums per-sample losses (overall and per bin of the flow time t), gradient
norms and failed samples on every rank; :meth:`LossStats.reduce` adds them up over all ranks
(one collective) and returns averages. The sums of an unfinished window travel in training
states (:meth:`LossStats.state_dict`), so the first log point after a resume averages the same
steps as in an uninterrupted run. :class:`RunLogger` writes them to TensorBoard and to a tqdm
progress bar on rank 0 only; on other ranks it does nothing.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.distributed as torch_dist
from torch.utils.tensorboard import SummaryWriter

from saganet.progress import progress_bar

log = logging.getLogger(__name__)


class LossStats:
    """Running sums of per-sample losses, by time-step bin, plus grad norms and failures.

    Args:
        t_bins: number of equal-width bins of t in [0, 1].
    """

    def __init__(self, t_bins: int) -> None:
        self.t_bins = t_bins
        self.reset()

    def reset(self) -> None:
        self.loss_sum = 0.0
        self.samples = 0
        self.grad_norm_sum = 0.0
        self.steps = 0
        self.failed = 0
        self.bin_sum = torch.zeros(self.t_bins, dtype=torch.float64)
        self.bin_count = torch.zeros(self.t_bins, dtype=torch.float64)

    def add(self, per_sample: torch.Tensor, t: torch.Tensor,
            grad_norm: torch.Tensor | None = None) -> None:
        """Record one batch.

        Args:
            per_sample: ``(B,)`` losses.
            t: ``(B,)`` flow times of those samples.
            grad_norm: the step's total gradient norm (training only).
        """
        per_sample = per_sample.detach().double().cpu()
        t = t.detach().double().cpu()
        self.loss_sum += per_sample.sum().item()
        self.samples += per_sample.numel()
        bins = (t * self.t_bins).long().clamp(0, self.t_bins - 1)
        self.bin_sum.index_add_(0, bins, per_sample)
        self.bin_count.index_add_(0, bins, torch.ones_like(per_sample))
        if grad_norm is not None:
            self.grad_norm_sum += float(grad_norm)
            self.steps += 1

    def state_dict(self) -> dict[str, Any]:
        """This rank's sums since the last reset, as plain data (for a training state)."""
        return {"loss_sum": self.loss_sum, "samples": self.samples,
                "grad_norm_sum": self.grad_norm_sum, "steps": self.steps, "failed": self.failed,
                "bin_sum": self.bin_sum.clone(), "bin_count": self.bin_count.clone()}

    def load_windows(self, windows: Sequence[Mapping[str, Any]]) -> None:
        """Replace the sums by those of saved windows, added up.

        Args:
            windows: :meth:`state_dict` results (one per rank of the run that saved them; a
                rank resuming with another number of ranks takes all of them, or none).

        Raises:
            ValueError: a window has another number of time-step bins.
        """
        for window in windows:
            if window["bin_sum"].numel() != self.t_bins:
                raise ValueError(f"the saved log window has {window['bin_sum'].numel()} "
                                 f"time-step bins, log.t_bins is {self.t_bins}")
        self.reset()
        for window in windows:
            self.loss_sum += window["loss_sum"]
            self.samples += window["samples"]
            self.grad_norm_sum += window["grad_norm_sum"]
            self.steps += window["steps"]
            self.failed += window["failed"]
            self.bin_sum += window["bin_sum"]
            self.bin_count += window["bin_count"]

    def reduce(self, device: torch.device) -> dict[str, float]:
        """Averages over every rank's records since the last reset (a collective call).

        Args:
            device: device for the collective (the process group's device).

        Returns:
            ``loss`` (NaN without samples), ``grad_norm`` (if steps were recorded),
            ``failed`` (sum) and ``loss_t<lo>-<hi>`` per non-empty bin.
        """
        packed = torch.cat([
            torch.tensor([self.loss_sum, self.samples, self.grad_norm_sum, self.steps,
                          self.failed], dtype=torch.float64),
            self.bin_sum, self.bin_count]).to(device)
        if torch_dist.is_initialized():
            torch_dist.all_reduce(packed)
        packed = packed.cpu()
        loss_sum, samples, gn_sum, steps, failed = packed[:5].tolist()
        k = self.t_bins
        bin_sum, bin_count = packed[5:5 + k], packed[5 + k:]
        # No sample, no loss: NaN, not a plausible-looking 0.
        out = {"loss": loss_sum / samples if samples else math.nan, "failed": failed,
               "samples": samples}
        if steps:
            out["grad_norm"] = gn_sum / steps
        for i in range(k):
            if bin_count[i] > 0:
                out[f"loss_t{i / k:.1f}-{(i + 1) / k:.1f}"] = (bin_sum[i] / bin_count[i]).item()
        return out


class RunLogger:
    """TensorBoard scalars and a progress bar, on rank 0 only.

    Every invocation of a run writes a new event file that starts with a purge mark after
    ``initial_step``: TensorBoard then hides what earlier invocations logged after that step.
    Those steps are taken (and logged) again: a run hard-killed after its last training state
    would otherwise show every point between that state and the kill twice.

    Args:
        run_dir: TensorBoard event files go here.
        is_main: whether this process is rank 0.
        total_steps: progress-bar length.
        initial_step: the step this invocation starts at (resumed runs).
    """

    def __init__(self, run_dir: str | os.PathLike[str], is_main: bool, total_steps: int,
                 initial_step: int = 0) -> None:
        self.is_main = is_main
        self.writer = (SummaryWriter(os.fspath(run_dir), purge_step=initial_step + 1)
                       if is_main else None)
        self.bar = (progress_bar(total=total_steps, initial=initial_step, desc="train",
                                 unit="step", dynamic_ncols=True) if is_main else None)

    def scalars(self, prefix: str, values: Mapping[str, float], step: int) -> None:
        """Write ``<prefix>/<name>`` scalars.

        Args:
            prefix: ``train``, ``val``...
            values: name -> value.
            step: global step.
        """
        if self.writer is None:
            return
        for name, value in values.items():
            self.writer.add_scalar(f"{prefix}/{name}", value, step)
        self.writer.flush()

    def advance(self, step: int, postfix: Mapping[str, float] | None = None) -> None:
        """Move the progress bar to ``step`` (with an optional postfix)."""
        if self.bar is None:
            return
        self.bar.update(step - self.bar.n)
        if postfix:
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()}, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.close()
