"""Tracking memory and time against video length: ``track_objects`` on 10, 30 and 60 s of a
synthetic 1080p video, with a tiny random SAM 2 model at a 256-pixel input.

Each case runs in a fresh process and reports its peak resident memory (``ru_maxrss``) and
wall/CPU time. The baseline, in the same run, is transformers' own whole-video session (the
decoded video handed to ``init_video_session``, then ``propagate_in_video_iterator``) on the
shortest length: it holds every frame, so its memory grows with the video. ``track_objects``
streams the frames and prunes the session (``saganet.segment.session``), so its peak should not
grow with length beyond the masks it returns (run-length coded, listed as "masks": random
masks are noisy and cost ~75 KB a 1080p slot, a real object's outline a few KB); the printed
ratios show it. Time does not depend on what the masks show.

    python benchmarks/tracking.py [--lengths 10 30 60] [--input_size 256] [--threads 1]
    python benchmarks/tracking.py --tiny --json tracking.json   # smoke run: 2 and 3 s at 180p
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
from sizes import add_json_flag, add_tiny_flag, write_json

from saganet.cli import positive_float, positive_int

HEIGHT, WIDTH, FPS = 1080, 1920, 25
# --tiny: a 180p video (the layout scaled by 1/6), 2 and 3 s (the click is at 1 s), SAM 2 at
# a 64-pixel input.
TINY_SCALE, TINY_LENGTHS, TINY_INPUT_SIZE = 6, [2.0, 3.0], 64


def _write_video(path: Path, seconds: float, scale: int = 1) -> None:
    """A gradient with a moving disc (the object), H.264 at 1080p25 (divided by ``scale``)."""
    height, width = HEIGHT // scale, WIDTH // scale
    yy, xx = np.mgrid[:height, :width]
    background = np.stack([xx * 255 // width, yy * 255 // height,
                           np.full_like(xx, 96)], axis=-1).astype(np.uint8)
    side, margin = 150 // scale, 300 // scale
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=FPS, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(round(seconds * FPS)):
            image = background.copy()
            cx = int(margin + (width - 2 * margin) * (i % 250) / 250)
            image[height // 2 - side:height // 2 + side, cx - side:cx + side] = (240, 240, 240)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def _child(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    start, cpu = time.perf_counter(), time.process_time()
    slots, stored = 0, 0
    if args.mode == "streamed":
        from saganet.segment import object_prompt, track_objects

        click = f"{450 // args.scale},{540 // args.scale}@1"
        tracking = track_objects(args.video, [object_prompt("disc", clicks=[click])],
                                 model=args.model, offline=True)
        slots = len(tracking.objects["disc"])
        stored = tracking.objects["disc"].stored_bytes()
    else:
        from saganet.segment.grid import VideoGrid
        from saganet.segment.models import load_sam2

        segmenter = load_sam2(Path(args.model))
        grid = VideoGrid(args.video)
        info = grid.scan().info
        frames = torch.from_numpy(np.stack([f for _, f in grid.forward(0, grid.index.num_slots)]))
        session = segmenter.processor.init_video_session(video=frames.permute(0, 3, 1, 2))
        del frames
        segmenter.processor.add_inputs_to_inference_session(
            session, frame_idx=FPS, obj_ids=0,
            input_points=[[[[450 // args.scale, 540 // args.scale]]]],
            input_labels=[[[1]]], original_size=(info.height, info.width))
        model = segmenter.model
        model(inference_session=session, frame_idx=FPS)
        for run in (model.propagate_in_video_iterator(session),
                    model.propagate_in_video_iterator(session, start_frame_idx=FPS - 1,
                                                      reverse=True)):
            for out in run:
                segmenter.processor.post_process_masks(
                    [out.pred_masks], original_sizes=[[info.height, info.width]])
                slots += 1
    print(json.dumps({"peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "wall_s": time.perf_counter() - start, "cpu_s": time.process_time() - cpu,
                      "slots": slots, "masks_mib": stored / 2**20}))


def _measure(mode: str, video: Path, model: Path, threads: int, scale: int) -> dict:
    result = subprocess.run([sys.executable, __file__, "--child", mode, "--video", str(video),
                             "--model", str(model), "--threads", str(threads),
                             "--scale", str(scale)],
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", type=positive_float, nargs="+", default=[10, 30, 60])
    parser.add_argument("--input_size", type=positive_int, default=256,
                        help="model input side of the tiny SAM 2 (the real models use 1024)")
    parser.add_argument("--threads", type=positive_int, default=1)
    parser.add_argument("--no_baseline", action="store_true")
    add_json_flag(parser)
    add_tiny_flag(parser)
    parser.add_argument("--scale", type=positive_int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--child", choices=["streamed", "whole"], help=argparse.SUPPRESS)
    parser.add_argument("--video", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.mode = args.child
        _child(args)
        return
    if args.tiny:
        args.scale, args.lengths, args.input_size = TINY_SCALE, TINY_LENGTHS, TINY_INPUT_SIZE

    from saganet.segment.debug_models import write_tiny_sam2

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = write_tiny_sam2(folder / "sam2", image_size=args.input_size)
        rows = []
        for seconds in sorted(args.lengths):
            video = folder / f"clip_{seconds:g}s.mp4"
            _write_video(video, seconds, args.scale)
            rows.append((f"track_objects {seconds:g} s", seconds,
                         _measure("streamed", video, model, args.threads, args.scale)))
            if not args.no_baseline and seconds == min(args.lengths):
                rows.append((f"whole-video session {seconds:g} s (baseline)", seconds,
                             _measure("whole", video, model, args.threads, args.scale)))
    print(f"{HEIGHT // args.scale}p25 synthetic video, tiny random SAM 2 at "
          f"{args.input_size}px input, "
          f"{args.threads} torch thread(s), one object clicked at 1 s")
    print(f"{'case':<42} {'slots':>6} {'peak RSS':>10} {'masks':>9} {'wall':>8} {'cpu':>8} "
          f"{'ms/slot':>8}")
    for name, _, r in rows:
        print(f"{name:<42} {r['slots']:>6} {r['peak_mib']:>7.0f} MiB {r['masks_mib']:>5.1f} MiB "
              f"{r['wall_s']:>7.1f}s {r['cpu_s']:>7.1f}s "
              f"{1000 * r['wall_s'] / max(r['slots'], 1):>8.1f}")
    streamed = [(s, r) for name, s, r in rows if name.startswith("track_objects")]
    (short, first), (long, last) = streamed[0], streamed[-1]
    state = [r["peak_mib"] - r["masks_mib"] for r in (first, last)]
    print(f"peak RSS {long:g} s / {short:g} s: {last['peak_mib'] / first['peak_mib']:.2f}x "
          f"for {long / short:g}x the frames; without the stored masks (the output): "
          f"{state[1] / state[0]:.2f}x")
    baseline = [r for name, _, r in rows if "baseline" in name]
    if baseline:
        print(f"whole-video session / track_objects at {short:g} s: "
              f"{baseline[0]['peak_mib'] / first['peak_mib']:.2f}x peak RSS")
    if args.json is not None:
        write_json(args.json, {
            "height": HEIGHT // args.scale, "input_size": args.input_size,
            "cases": [{"case": name, "seconds": seconds, **r} for name, seconds, r in rows]})


if __name__ == "__main__":
    main()
