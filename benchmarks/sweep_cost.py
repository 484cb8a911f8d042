"""What the sweep of an output folder costs a writer: :func:`saganet.leftovers.remove_dead`
on a folder of N outputs (the listing and one name check per entry; nothing to remove), against
writing one small output through :func:`saganet.fileio.atomic_output` into a fresh folder (its
own sweep there lists an empty folder), measured in alternating rounds in the same run; prints
the best wall time of each and their ratio. A writer pays the sweep once per process and
folder (:func:`saganet.leftovers.remove_dead_once`), not once per file.

    python benchmarks/sweep_cost.py                 # 10000 entries, 7 rounds
    python benchmarks/sweep_cost.py --entries 100000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from saganet.cli import positive_int
from saganet.fileio import atomic_output
from saganet.leftovers import remove_dead

PAYLOAD = bytes(64 * 1024)  # about one second of 16-bit mono FLAC at 44.1 kHz, compressed


def _sweep(folder: Path) -> float:
    start = time.perf_counter()
    remove_dead(folder)
    return time.perf_counter() - start


def _write(scratch: Path, round_: int) -> float:
    folder = scratch / f"write-{round_}"
    start = time.perf_counter()
    with atomic_output(folder / "mix.flac") as tmp:
        tmp.write_bytes(PAYLOAD)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=positive_int, default=10_000,
                        help="files in the swept folder")
    parser.add_argument("--rounds", type=positive_int, default=7,
                        help="alternating rounds (best kept)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sweep-cost-") as name:
        scratch = Path(name)
        outputs = scratch / "outputs"
        outputs.mkdir()
        for index in range(args.entries):
            (outputs / f"clip{index:06d}_mix.flac").touch()
        sweeps, writes = [], []
        for round_ in range(args.rounds):
            sweeps.append(_sweep(outputs))
            writes.append(_write(scratch, round_))
    sweep, write = min(sweeps), min(writes)
    print(f"sweep of a folder of {args.entries} entries: {sweep * 1e3:.2f} ms")
    print(f"one 64 KiB output through atomic_output:   {write * 1e3:.2f} ms")
    print(f"ratio sweep / write: {sweep / write:.2f}")


if __name__ == "__main__":
    main()
