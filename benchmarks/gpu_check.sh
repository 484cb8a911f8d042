#!/usr/bin/env bash
# One-GPU check of saganet, about 8 minutes at most on a machine with one NVIDIA GPU:
#
#   1. the official-size demo path with random weights (benchmarks/pipeline.py): per-stage
#      times and peak GPU memory, bf16 default path against the fp32 baseline: a 5 s clip
#      (after an untimed warm-up clip, so one-off CUDA set-up is not counted), a 30 s
#      two-object video the way demo.py runs it (--soundtrack: 5 s windows, joint sampling,
#      files written), then sampling, VAE and vocoder of the 5 s default path with
#      torch.compile (compile time reported apart);
#   2. a 30 s two-object long-form run of demo.py (debug variant, synthetic video, two mask
#      videos, one --object group each);
#   3. python train.py experiment=debug device=cuda;
#   4. python batch_eval.py model=debug compile=true on a synthetic URMP-format set;
#   5. the CPU thread policy on this machine's cores (benchmarks/threads.py).
#
# Every step runs under its own time limit and within an overall deadline; a failed or timed-out
# step is recorded and the next one runs. One results file (JSON) holds each step's status,
# exit code, seconds, the tail of its log and the benchmark tables.
#
#   bash benchmarks/gpu_check.sh [results.json]     # default: gpu_check_results.json
#
# Environment: PYTHON (default python3, else python: the interpreter that the documented
# `python3 -m pip install --target` filled); GPU_CHECK_DEADLINE_S (default 480);
# GPU_CHECK_DEVICE (default cuda; cpu runs the same steps as a dry run of the script itself);
# GPU_CHECK_STEPS (comma-separated step names to run, default all: to run again what failed;
# demo_30s_two_objects needs inputs_duet, batch_eval_compile needs inputs_urmp);
# GPU_CHECK_TINY (default 0; 1: a smoke run of this script in a few minutes on a CPU, the same
# steps with the debug variant's sizes (benchmarks' --tiny), 1 s clips instead of 5 s, 6 s
# videos instead of 30 s, 2 sampling steps, 2 training iterations, 2 one-second URMP clips, and
# no torch.compile, which takes minutes on a CPU even for tiny models); GPU_CHECK_LIMIT_SCALE
# (default 1: each step's time limit, sized for a GPU, times this; for a dry run on a busy CPU).
set -u

cd "$(dirname "$0")/.." || exit 2
RESULTS=$(realpath -m "${1:-gpu_check_results.json}")
PYTHON=${PYTHON:-$(command -v python3 || command -v python)}
DEADLINE_S=${GPU_CHECK_DEADLINE_S:-480}
DEVICE=${GPU_CHECK_DEVICE:-cuda}
ONLY=${GPU_CHECK_STEPS:-}
TINY=${GPU_CHECK_TINY:-0}
LIMIT_SCALE=${GPU_CHECK_LIMIT_SCALE:-1}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/saganet-gpu-check.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export SAGANET_OFFLINE=1 HF_HUB_OFFLINE=1   # nothing is downloaded: random or debug weights
STEPS="$WORK/steps.tsv"
: > "$STEPS"
START=$(date +%s)

# run_step NAME LIMIT_S COMMAND...: run with a time limit (cut to the time left before the
# deadline), log to $WORK/NAME.log, record "name status rc milliseconds limit" in $STEPS.
run_step() {
    local name=$1 limit=$(( $2 * LIMIT_SCALE ))
    shift 2
    if [[ -n $ONLY && ",$ONLY," != *",$name,"* ]]; then
        printf '%s\tskipped (not selected)\t-\t0\t0\n' "$name" >> "$STEPS"
        return
    fi
    local left=$(( DEADLINE_S - ($(date +%s) - START) ))
    if (( left < 20 )); then
        printf '%s\tskipped (deadline)\t-\t0\t0\n' "$name" >> "$STEPS"
        echo "== $name: skipped, the ${DEADLINE_S} s deadline is near"
        return
    fi
    (( limit > left )) && limit=$left
    echo "== $name (at most ${limit} s)"
    local t0 rc status
    t0=$(date +%s%N)
    timeout --kill-after=10 "$limit" "$@" > "$WORK/$name.log" 2>&1
    rc=$?
    case $rc in
        0) status=ok ;;
        124|137) status=timeout ;;
        *) status=failed ;;
    esac
    printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$status" "$rc" \
        "$(( ($(date +%s%N) - t0) / 1000000 ))" "$limit" >> "$STEPS"
    echo "   $status (exit $rc); log tail:"
    tail -n 5 "$WORK/$name.log" | sed 's/^/   | /'
}

# Sizes of the steps: official (what the check measures) or, with GPU_CHECK_TINY=1, tiny.
if [[ $TINY == 1 ]]; then
    SHORT_S=1 LONG_S=6 URMP=(--clips 2 --seconds 1) COMPILE=false
    BENCH=(--tiny) DEMO=(--num_steps 2) EVAL=(duration=1.0 num_steps=2)
    TRAIN=(num_iterations=2 log.interval=1 log.val_interval=2 log.val_batches=1
           log.eval_interval=2 checkpoint.weights_interval=2 checkpoint.state_interval=2
           eval.num_clips=2 eval.num_steps=2 schedule.warmup_steps=1 "schedule.milestones=[1]")
    THREADS=(--tiny --threads 1 --processes 1 --vocoder-seconds 0.25)
else
    SHORT_S=5 LONG_S=30 URMP=(--clips 4) COMPILE=true
    BENCH=() DEMO=() EVAL=() TRAIN=() THREADS=(--vocoder-seconds 0.25)
fi
PIPELINE_COMPILE=()
[[ $COMPILE == true ]] && PIPELINE_COMPILE=(--compile)

if [[ $DEVICE == cpu ]]; then  # a dry run: there is no GPU to ask about
    printf '%s\tskipped (no GPU)\t-\t0\t0\n' nvidia_smi >> "$STEPS"
else
    run_step nvidia_smi 20 nvidia-smi
fi
# torch.compile on CUDA runs Triton, which builds its launchers with a C compiler against
# Python.h when first used: a machine without them fails both compile steps, said here first.
run_step environment 30 "$PYTHON" -c "import os, shutil, sys, sysconfig, torch
from importlib import metadata
print(sys.executable, sys.version)
print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())
if torch.cuda.is_available():
    print(torch.cuda.get_device_name(0), 'free/total bytes', torch.cuda.mem_get_info())
try:
    print('triton', metadata.version('triton'))
except metadata.PackageNotFoundError:
    print('triton missing')
cc = os.environ.get('CC') or next(filter(None, map(shutil.which, ('cc', 'gcc', 'clang'))), None)
header = os.path.join(sysconfig.get_paths()['include'], 'Python.h')
print('C compiler', cc or 'missing', '| Python.h', header if os.path.exists(header) else 'missing')"

# Inputs: a 30 s video with two moving objects and their masks; a 4-clip URMP-format set.
run_step inputs_duet 60 "$PYTHON" benchmarks/synthetic_media.py clip "$WORK/duet" \
    --seconds "$LONG_S" --objects 2
run_step inputs_urmp 60 "$PYTHON" benchmarks/synthetic_media.py urmp "$WORK/data/urmp/data" \
    "${URMP[@]}"

run_step pipeline_5s 120 "$PYTHON" benchmarks/pipeline.py --device "$DEVICE" \
    --duration "$SHORT_S" --warmup --json "$WORK/pipeline_5s.json" "${BENCH[@]}"
run_step demo_30s_two_objects 75 "$PYTHON" demo.py --variant debug --device "$DEVICE" \
    --weights_dir "$WORK/weights" --video "$WORK/duet/video.mp4" --duration "$LONG_S" \
    --object trumpet --mask_video "$WORK/duet/mask_0.mp4" --prompt trumpet \
    --object violin --mask_video "$WORK/duet/mask_1.mp4" --prompt violin \
    --output "$WORK/demo" "${DEMO[@]}"
# Hydra paths group: data, outputs and weights all under $WORK, nothing in the checkout.
PATHS=("paths.data_dir=$WORK/data" "paths.output_dir=$WORK/output" "paths.weights_dir=$WORK/weights")
run_step train_debug 75 "$PYTHON" train.py experiment=debug "device=$DEVICE" "${PATHS[@]}" \
    "hydra.run.dir=$WORK/train" "${TRAIN[@]}"
run_step batch_eval_compile 90 "$PYTHON" batch_eval.py model=debug "compile=$COMPILE" \
    "device=$DEVICE" "${PATHS[@]}" dataset=urmp \
    "dataset.metadata=$WORK/data/urmp/data/metadata.tsv" "run_dir=$WORK/eval" num_workers=2 \
    "${EVAL[@]}"
run_step pipeline_30s_soundtrack 130 "$PYTHON" benchmarks/pipeline.py --device "$DEVICE" \
    --soundtrack --duration "$LONG_S" --objects 2 --json "$WORK/pipeline_30s_soundtrack.json" \
    "${BENCH[@]}"
# torch.compile covers sampling and the vocoder; the stages before them are left out (the 5 s
# step above has their times) so that the compilation itself gets the time.
run_step pipeline_5s_compile 120 "$PYTHON" benchmarks/pipeline.py --device "$DEVICE" \
    --duration "$SHORT_S" --paths default --stages sampling,vae,vocoder "${PIPELINE_COMPILE[@]}" \
    --json "$WORK/pipeline_5s_compile.json" "${BENCH[@]}"
# The machine's CPU cores: the thread policy against the fastest count, 1 and 2 processes.
run_step cpu_threads 100 "$PYTHON" benchmarks/threads.py --repeats 1 "${THREADS[@]}" \
    --json "$WORK/threads.json"

# One results file: steps, log tails, benchmark tables and the files the runs wrote.
"$PYTHON" - "$WORK" "$RESULTS" "$(( $(date +%s) - START ))" "$DEVICE" "$TINY" <<'EOF'
import json, sys
from pathlib import Path

work, results, elapsed = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
steps = []
for line in (work / "steps.tsv").read_text().splitlines():
    name, status, rc, milliseconds, limit = line.split("\t")
    log = work / f"{name}.log"
    steps.append({"name": name, "status": status, "exit_code": rc,
                  "seconds": int(milliseconds) / 1000, "limit_s": int(limit),
                  "log_tail": log.read_text(errors="replace")[-12000:] if log.exists() else ""})
# batch_eval.py exits 1 when clips fail; a run that says ok must also have written clips and
# listed no failure in its manifest (the results file then says why).
for step in steps:
    if step["name"] == "batch_eval_compile" and step["status"] == "ok":
        manifests = [json.loads(p.read_text()) for p in (work / "eval").rglob("manifest.json")]
        failed = sum(len(m.get("failed", [])) for m in manifests)
        if failed or not any(m.get("clips") for m in manifests):
            step["status"] = f"failed ({failed} clip(s) failed)"
benchmarks = {p.stem: json.loads(p.read_text())
              for p in sorted([*work.glob("pipeline_*.json"), *work.glob("threads.json")])}
outputs = {folder: sorted(str(p.relative_to(work)) for p in (work / folder).rglob("*")
                          if p.suffix in {".flac", ".mp4", ".pth", ".json"})
           for folder in ("demo", "train", "eval") if (work / folder).exists()}
ran = [s for s in steps if s["status"] not in ("skipped (not selected)", "skipped (no GPU)")]
summary = {"device": sys.argv[4], "tiny": sys.argv[5] == "1", "elapsed_s": elapsed,
           "all_ok": all(s["status"] == "ok" for s in ran),
           "steps": steps, "benchmarks": benchmarks, "outputs": outputs}
results.write_text(json.dumps(summary, indent=2))
print(f"{sum(s['status'] == 'ok' for s in ran)}/{len(ran)} steps ok in {elapsed} s; "
      f"results in {results}")
EOF
