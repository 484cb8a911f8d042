"""Post-hoc EMA (Karras et al. 2024, "Analyzing and improving the training dynamics of diffusion
models") of the trainable parameters, through ``ema-pytorch``'s ``PostHocEMA``.

During training (rank 0, when enabled) two power-function EMAs with different relative widths
``sigma_rels`` track the trainable tensors, and a snapshot of each is written every
``snapshot_every`` steps to ``<run_dir>/ema_snapshots/<k>.<step>.pt``. Afterwards the snapshots
are combined by least squares (the paper's Algorithm 3, done by the library) into an EMA of any
width, which replaces the trainable tensors of the last weights file::

    python -m saganet.training.ema synthesize <run_dir> --sigma_rel 0.05

writes ``<run_dir>/<exp_name>_ema_final.pth`` in the published weights layout.

The synthesis combines every snapshot in the folder, so the folder must hold one course of
training. The EMA's running state travels in the training states, so a resumed run snapshots
what an uninterrupted one would, under the same names; what an invocation killed after its last
state snapshotted later belongs to a course the resumed run does not take, and
:func:`~saganet.training.checkpoint.remove_after` removes it when the run starts.

Only trainable tensors are tracked (frozen ones are constant, so their EMA is themselves);
this keeps snapshots small (the LoRA factors and the Synchformer's context layers). For LoRA
the EMA is taken over the factors, and the merged ``qkv.weight`` of the output is rebuilt from
the averaged factors.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from ema_pytorch import PostHocEMA
from torch import nn

from saganet.errors import UserInputError, report_user_error
from saganet.state_dict import atomic_save
from saganet.training.config import SIGMA_REL_RULE, sigma_rel_ok

# Named, not __name__: run with -m, the module is __main__ and its lines said so.
log = logging.getLogger("saganet.training.ema")

SNAPSHOT_DIR = "ema_snapshots"
EMA_INFO_FILE = "ema.json"
_SEP = "/"  # module paths never contain "/", and parameter names may not contain "."


class TrainableView(nn.Module):
    """A module whose parameters ARE the given (trainable) parameters, under stable names.

    ``PostHocEMA`` averages every parameter of the module it is given; handing it this view
    restricts it to the trainable tensors without copying the frozen ones.

    Args:
        modules: name -> module; the view takes each module's ``requires_grad`` parameters,
            named ``<module name>/<parameter path with / for .>``.
    """

    def __init__(self, modules: dict[str, nn.Module]) -> None:
        super().__init__()
        for prefix, module in modules.items():
            for name, param in module.named_parameters():
                if param.requires_grad:
                    self.register_parameter(encode_name(prefix, name), param)


def encode_name(prefix: str, name: str) -> str:
    """View name of parameter ``name`` of module ``prefix``."""
    return _SEP.join([prefix, *name.split(".")])


def decode_name(view_name: str) -> tuple[str, str]:
    """``(module name, parameter name)`` of a view name."""
    prefix, *parts = view_name.split(_SEP)
    return prefix, ".".join(parts)


def build_post_hoc_ema(view: TrainableView, run_dir: str | os.PathLike[str],
                       sigma_rels: Sequence[float], snapshot_every: int | str,
                       exp_name: str | None = None) -> PostHocEMA:
    """A ``PostHocEMA`` over ``view`` writing snapshots under ``<run_dir>/ema_snapshots``.

    Args:
        view: the trainable tensors.
        run_dir: the run directory.
        sigma_rels: relative widths of the tracked EMAs (at least two, distinct).
        snapshot_every: steps between snapshots (or ``"manual"``).
        exp_name: recorded next to the snapshots for the synthesis (None: not recorded).
    """
    folder = Path(run_dir) / SNAPSHOT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    if exp_name is not None:
        info = {"sigma_rels": list(sigma_rels), "exp_name": exp_name}
        (folder / EMA_INFO_FILE).write_text(json.dumps(info, indent=1))
    # update_every=1: every optimiser step updates the EMAs (the reference's setting);
    # fp32 snapshots: the synthesis is a least-squares combination that fp16 would perturb.
    return PostHocEMA(view, sigma_rels=tuple(sigma_rels), update_every=1,
                      checkpoint_every_num_steps=snapshot_every,
                      checkpoint_folder=str(folder), checkpoint_dtype=torch.float32)


def snapshot_steps(run_dir: str | os.PathLike[str]) -> list[tuple[int, Path]]:
    """``(step, file)`` of every EMA snapshot of a run (``ema_snapshots/<k>.<step>.pt``)."""
    folder = Path(run_dir) / SNAPSHOT_DIR
    if not folder.is_dir():
        return []
    found = []
    for path in folder.glob("*.pt"):
        parts = path.stem.split(".")
        if len(parts) == 2 and all(part.isdigit() for part in parts):
            found.append((int(parts[1]), path))
    return sorted(found)


def tracked_ema_parameters(ema: PostHocEMA, sigma_rels: Sequence[float], target: float
                           ) -> tuple[dict[str, torch.Tensor], float]:
    """The tracked EMA whose width is closest to ``target``, as view name -> tensor.

    During training only the tracked profiles exist (the synthesis needs the snapshots of the
    whole run), so evaluations use the nearest one.

    Args:
        ema: the run's post-hoc EMA (in the order of ``sigma_rels``).
        sigma_rels: the tracked widths.
        target: the wanted width (``ema.output_sigma_rel``).

    Returns:
        The tensors and the width they have.
    """
    index = min(range(len(sigma_rels)), key=lambda i: abs(sigma_rels[i] - target))
    model = ema.ema_models[index].ema_model
    return ({name: param.detach() for name, param in model.named_parameters()},
            float(sigma_rels[index]))


def weights_file_parameters(path: str | os.PathLike[str], names: Iterable[str]
                            ) -> dict[str, torch.Tensor]:
    """Tensors of a weights file (e.g. the synthesised EMA) under view names.

    Args:
        path: a weights file written by the trainer.
        names: the view names wanted (:func:`encode_name`).
    """
    from saganet.training.models import build_from_weights_file

    models = build_from_weights_file(path)
    modules = {"network": models.network, "synchformer": models.synchformer}
    out = {}
    for view_name in names:
        prefix, name = decode_name(view_name)
        out[view_name] = modules[prefix].get_parameter(name).detach()
    return out


def synthesize(run_dir: str | os.PathLike[str], sigma_rel: float,
               output: str | os.PathLike[str] | None = None,
               step: int | None = None, overwrite: bool = False) -> Path:
    """Combine a run's EMA snapshots into one EMA and write it as a weights file.

    Args:
        run_dir: the run directory (with ``ema_snapshots/`` and ``<exp_name>_last.pth``).
        sigma_rel: relative width of the EMA to synthesise.
        output: destination; default ``<run_dir>/<exp_name>_ema_final.pth``.
        step: synthesise the EMA as of this step (default: the last snapshot).
        overwrite: replace an existing ``output`` (the run's own final weights, which its
            evaluations were made with, are otherwise kept).

    Raises:
        UserInputError: a width no EMA can have, no snapshots, snapshots that do not fit
            the model, or an existing output without ``overwrite``.
    """
    from saganet.training.models import build_from_weights_file

    if not sigma_rel_ok(sigma_rel):
        raise UserInputError(f"sigma_rel={sigma_rel} (must be {SIGMA_REL_RULE})")
    run_dir = Path(run_dir)
    folder = run_dir / SNAPSHOT_DIR
    info_path = folder / EMA_INFO_FILE
    if not info_path.is_file():
        raise UserInputError("no EMA snapshots (was the run trained with ema.enabled=true?)",
                             info_path)
    info = json.loads(info_path.read_text())
    output = Path(output) if output else run_dir / f"{info['exp_name']}_ema_final.pth"
    if output.exists() and not overwrite:
        raise UserInputError("exists (pass --overwrite or overwrite=True to replace it, or "
                             "--output or output= to write elsewhere)", output)
    snapshots = sorted(folder.glob("*.pt"))
    if not snapshots:
        raise UserInputError("no EMA snapshot files", folder)
    weights_file = run_dir / f"{info['exp_name']}_last.pth"
    models = build_from_weights_file(weights_file)
    modules = {"network": models.network, "synchformer": models.synchformer}

    # The snapshot keys name the tracked tensors: make exactly those trainable in the view.
    tracked = {k.removeprefix("ema_model.") for k in
               torch.load(snapshots[0], map_location="cpu", weights_only=True)
               if k.startswith("ema_model.")}
    for prefix, module in modules.items():
        for name, param in module.named_parameters():
            param.requires_grad_(encode_name(prefix, name) in tracked)
    view = TrainableView(modules)
    missing = tracked - {n for n, _ in view.named_parameters()}
    if missing:
        raise UserInputError(f"snapshots track tensors the model lacks: {sorted(missing)[:5]}",
                             folder)
    ema = build_post_hoc_ema(view, run_dir, info["sigma_rels"], "manual")
    synthesized = ema.synthesize_ema_model(sigma_rel=sigma_rel, step=step)
    synthesized.copy_params_from_ema_to_model()  # writes into the live network/synchformer
    atomic_save(models.weights_file(), output)
    log.info("synthesised EMA sigma_rel=%g from %d snapshots -> %s", sigma_rel,
             len(snapshots), output)
    return output


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m saganet.training.ema synthesize <run_dir> --sigma_rel 0.05``."""
    parser = argparse.ArgumentParser(prog="python -m saganet.training.ema",
                                     description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    syn = sub.add_parser("synthesize", help="combine EMA snapshots into a weights file")
    syn.add_argument("run_dir", help="training run directory")
    syn.add_argument("--sigma_rel", type=float, default=0.05,
                     help="EMA width to synthesise (default: %(default)s)")
    syn.add_argument("--step", type=int, default=None, help="as of this step (default: last)")
    syn.add_argument("--output", default=None,
                     help="output file (default: <run_dir>/<exp_name>_ema_final.pth)")
    syn.add_argument("--overwrite", action="store_true", help="replace an existing output")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        path = synthesize(args.run_dir, args.sigma_rel, args.output, args.step,
                          overwrite=args.overwrite)
    except UserInputError as err:
        return report_user_error("python -m saganet.training.ema", err)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
