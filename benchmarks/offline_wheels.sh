#!/usr/bin/env bash
# Wheels for running benchmarks/gpu_check.sh on a GPU machine that has no package index but a
# PyTorch image (torch, torchvision, numpy, scipy, scikit-learn, numba, timm, transformers,
# huggingface_hub, PyYAML, ...), as clusters' compute nodes and lent machines often do.
#
#   bash benchmarks/offline_wheels.sh DIR [PYTHON_VERSION]    # PYTHON_VERSION of the GPU machine,
#                                                              # default 3.12
# then, on the GPU machine, with DIR copied beside the checkout:
#
#   python3 -m pip install --no-index --no-deps --target /tmp/site DIR/*.whl
#   PYTHONPATH=/tmp/site bash benchmarks/gpu_check.sh results.json
#
# The list is what the check's commands import beyond such an image (found with
# PYTHONPROFILEIMPORTTIME=1 on each of them), closed over their requirements that the image
# lacks; each is pinned to the version installed where this script runs, so the GPU machine
# runs what the test suite ran here. Wheels only, without dependencies (about 38 MB).
set -eu

DIR=${1:?usage: offline_wheels.sh DIR [PYTHON_VERSION]}
PY_VERSION=${2:-3.12}
PYTHON=${PYTHON:-python}

PACKAGES=(
    av                      # all video and audio I/O
    open_clip_torch ftfy wcwidth   # CLIP ViT-H/14 and its tokenizer
    hydra-core omegaconf    # train.py, batch_eval.py
    tensordict pyvers       # latent shards
    librosa decorator pooch platformdirs  # mel filters, evaluation
    ema-pytorch             # training
)
# antlr4-python3-runtime (omegaconf's grammar) has no wheel on PyPI: built here, pure Python.
SDIST_ONLY=(antlr4-python3-runtime)

pinned() {  # NAME -> NAME==VERSION installed here, or NAME alone
    local version
    version=$("$PYTHON" -c "import importlib.metadata as m, sys
try:
    print(m.version(sys.argv[1]))
except m.PackageNotFoundError:
    pass" "$1")
    echo "$1${version:+==$version}"
}

# Wheels left from an earlier run (another version of a package) would make pip refuse the
# whole install on the GPU machine, so the folder holds this run's wheels only.
mkdir -p "$DIR"
rm -f "$DIR"/*.whl
specs=()
for name in "${PACKAGES[@]}"; do specs+=("$(pinned "$name")"); done
platforms=()
for tag in manylinux_2_17 manylinux_2_24 manylinux_2_27 manylinux_2_28 manylinux_2_31 \
           manylinux_2_34 manylinux_2_35 manylinux2014 manylinux1; do
    platforms+=(--platform "${tag}_x86_64")
done
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --implementation cp \
    --python-version "$PY_VERSION" "${platforms[@]}" --dest "$DIR" "${specs[@]}"
for name in "${SDIST_ONLY[@]}"; do
    "$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$DIR" "$(pinned "$name")"
done
ls -1 "$DIR"
du -sh "$DIR"
