"""The batch evaluation's configuration: :class:`BatchEvalConfig`, the schema of
``config/eval/batch_eval.yaml`` and the one place of its defaults (see :mod:`saganet.hydra_config`).

Kept apart from :mod:`saganet.evaluation.batch_eval` (which runs the models) so that the entry
point validates its command line without importing torch and the model code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig

from saganet.errors import UserInputError, check_cfg_strength, check_seconds
from saganet.hydra_config import PathsConfig, register_schema, to_typed

if TYPE_CHECKING:
    import torch

SCHEMA_NAME = "batch_eval_schema"
GROUND_TRUTH_SUFFIX = "ground_truth"
# Settings that change the generated audio: a folder holds clips of one combination only.
RESULT_SETTINGS = ("dataset", "variant", "duration", "cfg_strength", "num_steps", "seed",
                   "amp", "detail_files")


def variant_aliases() -> dict[str, str]:
    """Network names accepted for ``model=`` (the reference README's spelling) -> variants."""
    from saganet.pipeline import PIPELINES

    return {spec.network: name for name, spec in PIPELINES.items() if spec.network != name}


def resolve_variant(name: str) -> str:
    """A :data:`saganet.pipeline.PIPELINES` key from a variant or network name.

    Args:
        name: ``saganet_small``, ``saganet_small_no_lora``, ``debug``, or the network names
            ``small_44k_sa`` / ``small_44k_sa_no_lora``.
    """
    from saganet.pipeline import PIPELINES

    aliases = variant_aliases()
    if name in PIPELINES:
        return name
    if name in aliases:
        return aliases[name]
    raise UserInputError(f"unknown model {name!r}; choose one of "
                         f"{', '.join([*PIPELINES, *aliases])}")


@dataclass(kw_only=True)
class EvalDatasetConfig:
    """The evaluation dataset (the ``dataset`` group: ``config/eval/dataset/<name>.yaml``).

    Args:
        name: ``urmp`` or ``sms`` (a key of :data:`saganet.evaluation.datasets.EVAL_DATASETS`).
        root: folder with the dataset's clips.
        metadata: the dataset's metadata table.
        gt_cache: av-benchmark features of the dataset's ground truth, extracted beforehand
            (the reference's test cache); used when training evaluates this dataset. None:
            the features are extracted from the ground-truth audio the evaluation writes.
    """

    name: str
    root: str
    metadata: str
    gt_cache: str | None = None


@dataclass(kw_only=True)
class BatchEvalConfig:
    """Everything one batch-evaluation run needs: the schema of ``config/eval/batch_eval.yaml``
    and the one place of its defaults (see :mod:`saganet.hydra_config`).

    Args:
        dataset: the evaluation dataset (a group: no default).
        paths: data, output and weights folders (the ``paths`` group; ``paths.weights_dir`` is
            the weights cache).
        run_dir: parent of the output folders (the YAML wires it to
            ``<paths.output_dir>/eval``).
        model: pipeline variant or network name (see :func:`resolve_variant`).
        checkpoint: a weights file to use instead of the variant's published one.
        output_name: suffix of the output folder (``<dataset>-<output_name>``).
        duration: seconds generated per clip; shorter clips fail.
        batch_size: clips per batch on each process.
        num_workers: data-loader processes per rank (0: decode in the main process).
        compile: ``torch.compile`` the network's ``predict_flow``.
        skip_video_composite: write only ``.flac`` (else also an ``.mp4`` per clip).
        ground_truth: also write each clip's true audio to ``<dataset>-ground_truth``.
        detail_files: use precomputed focal-crop videos when present.
        cfg_strength: classifier-free guidance strength, finite, at most
            :data:`~saganet.errors.MAX_CFG_STRENGTH` in magnitude.
        num_steps: Euler steps.
        seed: base seed of the per-clip noise.
        amp: bf16 autocast on CUDA (weights stay fp32); ignored elsewhere.
        device: ``cuda``, ``cpu``, ... or None for automatic.
        offline: never download weights (None: from the environment).
    """

    dataset: EvalDatasetConfig
    paths: PathsConfig
    run_dir: str
    model: str = "saganet_small"
    checkpoint: str | None = None
    output_name: str | None = None
    duration: float = 5.0
    batch_size: int = 4
    num_workers: int = 8
    compile: bool = False
    skip_video_composite: bool = True
    ground_truth: bool = True
    detail_files: bool = False
    cfg_strength: float = 4.5
    num_steps: int = 25
    seed: int = 14159265
    amp: bool = True
    device: str | None = None
    offline: bool | None = None

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.num_steps < 1 or self.num_workers < 0:
            raise UserInputError("batch_size and num_steps must be >= 1, num_workers >= 0")
        # Non-finite values would run the whole batch and fail only when the NaN audio is
        # written, leaving the manifest and ground truth of a run that cannot succeed.
        check_seconds(self.duration, "duration", positive=True)
        check_cfg_strength(self.cfg_strength)
        if self.output_name is not None and (not self.output_name
                                             or self.output_name == GROUND_TRUTH_SUFFIX
                                             or "/" in self.output_name):
            raise UserInputError(f"output_name {self.output_name!r} is empty, contains '/' or "
                                 f"is reserved for the ground truth")

    @property
    def weights_dir(self) -> str | None:
        return self.paths.weights_dir

    @property
    def output_dir(self) -> Path:
        suffix = f"-{self.output_name}" if self.output_name else ""
        return Path(self.run_dir) / f"{self.dataset.name}{suffix}"

    @property
    def ground_truth_dir(self) -> Path:
        return Path(self.run_dir) / f"{self.dataset.name}-{GROUND_TRUTH_SUFFIX}"

    @property
    def resolved_root(self) -> str:
        """The dataset root, resolved so that two spellings of one folder agree."""
        return str(Path(self.dataset.root).resolve())

    def result_settings(self, device: torch.device) -> dict[str, Any]:
        """The settings that change the audio (checked when resuming into a folder).

        Args:
            device: where the run generates (autocast applies on CUDA only).
        """
        values: dict[str, Any] = {name: getattr(self, name) for name in RESULT_SETTINGS
                                  if name not in ("dataset", "variant")}
        values["dataset"] = self.dataset.name
        # Clips are reused by id, so other videos under the same dataset name must not be
        # taken for done.
        values["dataset_root"] = self.resolved_root
        values["variant"] = resolve_variant(self.model)
        values["amp"] = self.amp and device.type == "cuda"
        return values


def register_batch_eval_schema() -> None:
    """Register :class:`BatchEvalConfig` as :data:`SCHEMA_NAME` (``batch_eval.yaml`` uses it)."""
    register_schema(SCHEMA_NAME, BatchEvalConfig)


def batch_eval_config(cfg: DictConfig | Mapping[str, Any]) -> BatchEvalConfig:
    """Validate a composed config (``hydra`` node excluded) and convert it.

    Args:
        cfg: the composed ``batch_eval`` config, or a plain mapping of the same shape.

    Raises:
        UserInputError: a value is missing, unknown, or has the wrong type.
    """
    return to_typed(cfg, BatchEvalConfig)
