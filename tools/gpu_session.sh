#!/usr/bin/env bash
# The GPU checklist in two device calls of under 10 minutes each (a GPU is lent to only some
# sessions, for 30 minutes): build for the GPU there, run the whole test suite with CUDA, run
# the GPU benchmarks; logs and results land in $OUT to be committed under benchmarks/results/.
#
#   bash tools/gpu_session.sh test    # build (sm_90), CUDA tests, then the whole suite
#   bash tools/gpu_session.sh bench   # bench_bitcodes.py (bf16 GPU grid) and bench_vq.py on CUDA
#
# The device's image has torch, pytest, hypothesis, einops, scipy and tqdm but not
# bitcodes-pytorch (a test and benchmark dependency); carry it as a wheel in .whl/ (ignored via
# .git/info/exclude, named in the call's `carry`):
#   python3 -m pip download --no-deps --only-binary=:all: -d .whl bitcodes-pytorch==0.0.1
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_session}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=python3
if compgen -G ".whl/*.whl" >/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi

build() {
  if ! $PY -c "import bitcodes_ext, sys; sys.exit(not bitcodes_ext.backend_info()['cuda_kernels'])" 2>/dev/null; then
    TORCH_CUDA_ARCH_LIST=9.0 FORCE_CUDA=1 MAX_JOBS=16 $PY -m pip install -q --no-build-isolation --no-deps -e . 2>&1 | tail -20
  fi
  { nvidia-smi -L; $PY -c "import bitcodes_ext, torch; print(torch.__version__, bitcodes_ext.backend_info())"; } | tee "$OUT/device.txt"
}

case "${1:-}" in
  test)
    build
    $PY -m pytest -q tests/test_cuda_bitcodes.py tests/test_cuda_vq.py 2>&1 | tee "$OUT/cuda_tests.log" | tail -40
    $PY -m pytest -q -n 8 2>&1 | tee "$OUT/all_tests.log" | tail -25
    ;;
  bench)
    build
    $PY benchmarks/bench_bitcodes.py --device cuda --dtype bfloat16 --out "$OUT" 2>&1 | tee "$OUT/bench_bitcodes.log"
    $PY benchmarks/bench_vq.py --device cuda --out "$OUT" 2>&1 | tee "$OUT/bench_vq.log"
    ;;
  *)
    echo "usage: bash tools/gpu_session.sh test|bench" >&2
    exit 2
    ;;
esac
