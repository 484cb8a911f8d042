"""``train.py`` that dies by SIGKILL right after a given optimiser step, on every rank: the hard
kill of a preempted job, which saves no state and flushes nothing.

    python tests/training/hard_kill.py <step> <train.py overrides...>
    python -m torch.distributed.run --nproc_per_node=2 tests/training/hard_kill.py <step> ...
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
from pathlib import Path

from saganet.training.loop import Trainer

TRAIN = Path(__file__).resolve().parents[2] / "train.py"


def main() -> None:
    kill_at = int(sys.argv.pop(1))
    after_step = Trainer.after_step

    def dies_at_the_step(self: Trainer, *args: object) -> None:
        if self.step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        after_step(self, *args)

    Trainer.after_step = dies_at_the_step
    sys.argv[0] = str(TRAIN)
    runpy.run_path(str(TRAIN), run_name="__main__")


if __name__ == "__main__":
    main()
