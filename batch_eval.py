"""Generate audio for every clip of an evaluation dataset (URMP or the SMS test split).

    python batch_eval.py dataset=urmp model=saganet_small
    torchrun --nproc_per_node=8 batch_eval.py dataset=urmp paths.data_dir=/data

Hydra composes ``config/eval/batch_eval.yaml`` over the schema
:class:`saganet.evaluation.batch_config.BatchEvalConfig`; the clips go to
``<run_dir>/<dataset>[-<output_name>]/<id>.flac`` with a ``manifest.json``. Running the same
command again generates only the clips that are missing. The reference's spellings
``duration_s=...`` and ``model=small_44k_sa`` are accepted. Exit status: 0 when every metadata
row has its output, 1 when some clips are missing files or failed to load, 2 for a user error
(one line ``batch_eval.py: error: ...``, nothing left behind).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from saganet.evaluation.batch_config import batch_eval_config, register_batch_eval_schema
from saganet.hydra_config import configuration_errors, preflight, rename_overrides, user_errors

PROG = "batch_eval.py"
CONFIG_DIR = Path(__file__).resolve().parent / "config" / "eval"
LOG_FILES = ("batch_eval_rank*.log",)
# The reference's name of an option -> ours.
REFERENCE_NAMES = {"duration_s": "duration"}


def _quiet_console() -> None:
    # Ranks other than 0 keep their log files but print only warnings.
    for handler in logging.getLogger().handlers:
        if type(handler) is logging.StreamHandler:
            handler.setLevel(logging.WARNING)


@hydra.main(version_base="1.3", config_path="config/eval", config_name="batch_eval")
def main(cfg: DictConfig) -> None:
    with user_errors(PROG, LOG_FILES, interrupted="; the clips written so far are kept (run "
                     "the same command again to go on)"):
        with configuration_errors():
            config = batch_eval_config(cfg)
        # Imported once the configuration is valid: torch and the models take seconds.
        import torch

        from saganet import dist
        from saganet.evaluation.batch_eval import run_batch_eval
        from saganet.runtime import configure_runtime

        configure_runtime(config.model)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        try:
            # Named as a Hydra override: this command has no --device flag.
            info = dist.init(config.device, use_cpu="device=cpu")
            if not info.is_main:
                _quiet_console()
            report = run_batch_eval(config, info)
        finally:
            dist.cleanup()
    if not report.complete:
        sys.exit(1)


if __name__ == "__main__":
    # Nothing to clean up yet: Hydra has not started.
    with user_errors(PROG, LOG_FILES), configuration_errors():
        sys.argv[1:] = rename_overrides(sys.argv[1:], REFERENCE_NAMES)
    sys.argv += preflight(PROG, CONFIG_DIR, "batch_eval", register_batch_eval_schema,
                          run_dir_name="run_dir")
    main()
