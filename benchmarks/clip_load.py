"""Peak memory and time of loading the official-size CLIP (ViT-H/14, 384 px) from a checkpoint.

Writes a random-weight checkpoint in the layout of the DFN5B hub folder (``open_clip_config.json``
+ ``open_clip_pytorch_model.bin``; nothing is downloaded), then loads it in fresh processes,
alternating: the baseline ``open_clip.create_model_from_pretrained`` (random init, then a copy
of the checkpoint) against saganet's ``ClipEncoder.from_pretrained`` (the checkpoint's tensors
become the parameters). Prints the peak resident set each load adds to the interpreter and
checks that both loads hold the same weights.

    python benchmarks/clip_load.py                   # writes ~3.9 GB to a temporary folder
    python benchmarks/clip_load.py --folder /data/clip --repeats 2   # keep and reuse it
    python benchmarks/clip_load.py --tiny --json clip_load.json   # smoke run: a one-layer CLIP
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pipeline import peak_rss_gib, rss_gib
from sizes import Sizes, add_json_flag, add_tiny_flag, write_json

from saganet.cli import positive_int

LOADERS = ("baseline", "saganet")


def write_checkpoint(folder: Path, tiny: bool = False) -> None:
    """A random ViT-H/14 (``tiny``: a one-layer CLIP) in the hub folder layout (skipped when
    the folder already has one)."""
    import open_clip
    import torch

    if (folder / "open_clip_pytorch_model.bin").is_file():
        return
    folder.mkdir(parents=True, exist_ok=True)
    config = Sizes(tiny).clip_model_config()
    torch.manual_seed(0)
    model = open_clip.model.CLIP(**config)
    torch.save(model.state_dict(), folder / "open_clip_pytorch_model.bin")
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": config}))


def measure(loader: str, folder: str) -> None:
    """In this process: load once, print one JSON line (time, memory, weight checksum)."""
    import torch

    from saganet.features.clip import ClipEncoder, open_clip

    before = rss_gib()
    start = time.perf_counter()
    if loader == "baseline":
        model = open_clip.create_model_from_pretrained(f"local-dir:{folder}",
                                                       return_transform=False)
    else:
        model = ClipEncoder.from_pretrained(f"local-dir:{folder}").model
    seconds = time.perf_counter() - start
    after, peak = rss_gib(), peak_rss_gib()
    with torch.no_grad():
        checksum = sum(float(p.double().sum()) for p in model.state_dict().values())
    weights = sum(p.numel() * p.element_size() for p in model.state_dict().values())
    print(json.dumps({"loader": loader, "seconds": seconds, "peak_gib": peak - before,
                      "held_gib": after - before, "weights_gib": weights / 2**30,
                      "checksum": checksum}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=None,
                        help="checkpoint folder to write or reuse (default: a temporary one)")
    parser.add_argument("--repeats", type=positive_int, default=1,
                        help="loads per loader, alternating")
    add_json_flag(parser)
    add_tiny_flag(parser)
    parser.add_argument("--measure", choices=LOADERS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(args.measure, str(args.folder))
        return

    with tempfile.TemporaryDirectory(prefix="clip-load-") as scratch:
        folder = args.folder or Path(scratch)
        print(f"checkpoint folder {folder}")
        write_checkpoint(folder, args.tiny)
        results: dict[str, list[dict]] = {name: [] for name in LOADERS}
        for round_ in range(args.repeats):
            for loader in LOADERS:
                out = subprocess.run([sys.executable, __file__, "--measure", loader,
                                      "--folder", str(folder)],
                                     check=True, capture_output=True, text=True).stdout
                result = json.loads(out.strip().splitlines()[-1])
                print(f"  round {round_ + 1} {loader:8s} {result['seconds']:6.1f} s  "
                      f"peak +{result['peak_gib']:.2f} GiB  held +{result['held_gib']:.2f} GiB")
                results[loader].append(result)
    base = min(results["baseline"], key=lambda r: r["seconds"])
    ours = min(results["saganet"], key=lambda r: r["seconds"])
    weights = ours["weights_gib"]
    print(f"\nweights {weights:.2f} GiB (fp32); best of {args.repeats}")
    print(f"{'loader':10s} {'seconds':>8s} {'peak GiB':>9s} {'peak/weights':>13s}")
    for name, r in (("baseline", base), ("saganet", ours)):
        print(f"{name:10s} {r['seconds']:8.1f} {r['peak_gib']:9.2f} "
              f"{r['peak_gib'] / weights:13.2f}")
    print(f"ratios (baseline / saganet): time {base['seconds'] / ours['seconds']:.2f}x, "
          f"peak memory {base['peak_gib'] / ours['peak_gib']:.2f}x")
    same = abs(base["checksum"] - ours["checksum"]) <= 1e-9 * abs(base["checksum"])
    print(f"same weights: {'yes' if same else 'NO'} (checksums {base['checksum']:.6e}, "
          f"{ours['checksum']:.6e})")
    if args.json is not None:
        write_json(args.json, {"weights_gib": weights, "same_weights": same,
                               "loaders": {"baseline": base, "saganet": ours},
                               "rounds": results})
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
