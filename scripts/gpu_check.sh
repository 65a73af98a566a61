#!/usr/bin/env bash
# The GPU checks of issue #4 as one command: the CUDA tests and bench/bench_pipeline.py (LeviTor's ControlNet and
# training-free TTM guidance vs plain SVD time at 16x320x512, peak VRAM of both presets and of TTM beside the
# meta-trace predictions, 25x576x1024 for reference).
#
#   bash scripts/gpu_check.sh --fetch   # here, with PyPI: wheels the GPU machine lacks -> .whl/ (git-ignored)
#   bash scripts/gpu_check.sh           # on the GPU machine: install .whl/ if present, run, logs to $OUT
#   (without a GPU it runs as a CPU-sized dry run: the GPU tests skip, the bench runs its reduced tiny case)
#
# The workplace's GPU image has torch, transformers, accelerate and safetensors but not diffusers; nothing can
# be downloaded there, so the pure-Python wheels travel with the working tree (`carry: [".whl"]`).
set -uo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "--fetch" ]]; then
    python3 -m pip download --no-deps --only-binary=:all: -d .whl "diffusers==0.42.1" "importlib_metadata" \
        || exit 1
    ls -l .whl
    exit 0
fi

OUT="${OUT:-runs/gpu}"
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*.whl || exit 1
    export PYTHONPATH="/tmp/site"
fi
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD" PYTHONUNBUFFERED=1
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
else
    echo "no nvidia-smi: CPU-sized dry run (GPU tests skip; the bench runs its reduced case)" | tee "$OUT/gpu.txt"
fi
python3 -c "import torch, diffusers, transformers; print('torch', torch.__version__, 'diffusers', \
diffusers.__version__, 'transformers', transformers.__version__)" | tee -a "$OUT/gpu.txt" || exit 1

python3 -m pytest -q -p no:cacheprovider -m gpu tests/generation/test_pipeline.py tests/generation/test_ttm.py 2>&1 \
    | tee "$OUT/gpu_tests.log"
tests=${PIPESTATUS[0]}
python3 bench/bench_pipeline.py --json "$OUT/bench_pipeline.json" 2>&1 | tee "$OUT/bench_pipeline.log"
bench=${PIPESTATUS[0]}
echo "gpu tests rc=$tests, bench rc=$bench"
exit $(( tests || bench ))
