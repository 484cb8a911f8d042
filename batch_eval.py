"""Generate audio for every clip of an evaluation dataset (URMP or the SMS test split).

    python batch_eval.py dataset=urmp model=saganet_small
    torchrun --nproc_per_node=8 batch_eval.py dataset=urmp dataset.root=/data/urmp/data

Hydra composes ``config/eval/batch_eval.yaml``; the clips go to
``<run_dir>/<dataset>[-<output_name>]/<id>.flac`` with a ``manifest.json``. Running the same
command again generates only the clips that are missing. Exit status: 0 when every metadata
row has its output, 1 when some clips are missing files or failed to load, 2 for a user error.
Every step lives in :mod:`saganet.evaluation.batch_eval`.
"""

from __future__ import annotations

import logging
import sys

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from saganet import dist
from saganet.errors import UserInputError
from saganet.evaluation.batch_eval import BatchEvalConfig, run_batch_eval
from saganet.runtime import configure_runtime

log = logging.getLogger("batch_eval")


def _config(cfg: DictConfig) -> BatchEvalConfig:
    values = OmegaConf.to_container(cfg, resolve=True)
    dataset = values.pop("dataset")
    values["variant"] = values.pop("model")
    return BatchEvalConfig.from_dict({**values, "dataset": dataset["name"],
                                      "root": dataset["root"], "metadata": dataset["metadata"]})


def _quiet_console() -> None:
    # Ranks other than 0 keep their log files but print only warnings.
    for handler in logging.getLogger().handlers:
        if type(handler) is logging.StreamHandler:
            handler.setLevel(logging.WARNING)


@hydra.main(version_base="1.3", config_path="config/eval", config_name="batch_eval")
def main(cfg: DictConfig) -> None:
    configure_runtime(cfg.model)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    try:
        config = _config(cfg)
        info = dist.init(config.device)
        if not info.is_main:
            _quiet_console()
        report = run_batch_eval(config, info)
    except UserInputError as err:
        log.error("%s", err)
        sys.exit(2)
    finally:
        dist.cleanup()
    if not report.complete:
        sys.exit(1)


if __name__ == "__main__":
    main()
