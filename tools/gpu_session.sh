#!/usr/bin/env bash
# The GPU checklist: one device call that ends within ~9 minutes on a fresh H100/H200 (torch
# 2.11+cu130, Python 3.12 that may be externally managed, nvcc 13.0, no registry reachable).
#
#   bash tools/gpu_session.sh                      # on the GPU: the whole device call
#   bash tools/gpu_session.sh --dry-run            # without a GPU: every step, on the CUDA emulator and the CPU
#   bash tools/gpu_session.sh --steps build,bench  # a rerun of some steps (setup and env always run)
#
# Steps, in order, each under a time limit taken from what is left of the budget
# (GPU_SESSION_BUDGET_S, default 540 s of the device's 600 s command limit):
#   setup    the carried wheels (tools/wheels: bitcodes-pytorch, einops; checked against SHA256SUMS)
#            into a scratch pip --target directory put first on PYTHONPATH: no venv, no registry
#   env      the interpreter, torch, the GPU and the Python packages (tools/session_env.py)
#   build    the extension in place: TORCH_CUDA_ARCH_LIST=9.0 FORCE_CUDA=1 MAX_JOBS=16, then a check
#            that its CUDA kernels load (the dry run builds as `make install` does, and the emulator)
#   tests    tests/test_cuda_*.py on the GPU, real_gpu included (dry run: on the emulator, a few)
#   bench    bench_bitcodes.py: the #3 grid in bf16, ours and each CUDA route against the reference
#            eager, and torch.compile(reference) in eval at two points; one JSON rewrite per configuration
#   vq       bench_vq.py on CUDA, one JSON rewrite per size
# A step that fails does not stop the later ones, except that nothing runs after a failed setup,
# env or build. A step that cannot get its minimum time is skipped. The exit status is 0 only if
# every step ran and passed. Everything lands in $OUT (the device returns at most 8 files):
# session.log (all output), summary.txt (the machine, then each step's status and seconds) and the
# benchmarks' results (cuda-<date>-bfloat16.{json,csv}, vq-cuda-<date>.json), which are committed
# under benchmarks/results/ and plotted there (`python benchmarks/results.py FILE.json`).
#
# Environment: OUT (default build/gpu_session/out), GPU_SESSION_BUDGET_S, PYTHON (default python3;
# the dry run: .venv/bin/python where it exists), GPU_SESSION_TESTS (pytest arguments that replace
# the default test selection, e.g. one failing test for a rerun).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

DRY_RUN=0
STEPS=build,tests,bench,vq
while (($#)); do
  case "$1" in
    --dry-run) DRY_RUN=1 ;;
    --steps) STEPS=${2:?--steps needs a list, e.g. build,bench}; shift ;;
    *) echo "usage: bash tools/gpu_session.sh [--dry-run] [--steps build,tests,bench,vq]" >&2; exit 2 ;;
  esac
  shift
done
for step in ${STEPS//,/ }; do
  case "$step" in build | tests | bench | vq) ;; *) echo "unknown step '$step' (build, tests, bench, vq)" >&2; exit 2 ;; esac
done

BUDGET_S=${GPU_SESSION_BUDGET_S:-540}
RESERVE_S=10  # kept back for the summary at the end
OUT=${OUT:-$ROOT/build/gpu_session/out}
mkdir -p "$OUT"
LOG=$OUT/session.log
SUMMARY=$OUT/summary.txt
: >"$LOG"
: >"$SUMMARY"
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/gpu_session.XXXXXX")
trap 'rm -rf "$SCRATCH"' EXIT
SITE=$SCRATCH/site
if ((DRY_RUN)); then
  PY=${PYTHON:-$([ -x .venv/bin/python ] && echo "$ROOT/.venv/bin/python" || echo python3)}
else
  PY=${PYTHON:-python3}
fi
export PYTHONUNBUFFERED=1 PYTHONPATH="$SITE:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
# Without ninja on the PATH torch compiles one file at a time; a venv may keep it in its bin.
# (Only then: here another ninja would make `make emulate-cuda`'s build look stale.)
command -v ninja >/dev/null || PATH="$("$PY" -c 'import os, sys; print(os.path.dirname(sys.executable))'):$PATH"
unset BITCODES_CUDA_ROUTE  # the benchmark sets it for each route it times

FAILED=()   # steps that failed, timed out or were skipped
BLOCKED=""  # set when a step the later ones need has failed

note() { printf '%s\n' "$@" | tee -a "$LOG"; }

# run_step NAME MIN_S MAX_S COMMAND...: runs COMMAND with a time limit of MAX_S or what is left of
# the budget, whichever is less ("{budget}" in its arguments becomes that limit less 20 s, for
# scripts that stop themselves in time); skips it when less than MIN_S is left. Its output goes to
# the terminal and session.log, its status to summary.txt. Never exits the script.
run_step() {
  local name=$1 min_s=$2 max_s=$3
  shift 3
  local left=$((BUDGET_S - SECONDS - RESERVE_S)) status rc=0
  if [ -n "$BLOCKED" ]; then
    status="skipped: $BLOCKED failed"
  elif ((left < min_s)); then
    status="skipped: ${left}s left of the budget, needs ${min_s}s"
  else
    local limit=$((left < max_s ? left : max_s)) start=$SECONDS args=() arg
    for arg in "$@"; do args+=("${arg//\{budget\}/$((limit - 20))}"); done
    note "" "=== $name (limit ${limit}s, at ${SECONDS}s of ${BUDGET_S}s): $(printf '%q ' "${args[@]}")"
    timeout --kill-after=10 "$limit" "${args[@]}" </dev/null 2>&1 | tee -a "$LOG" || rc=$?
    case $rc in
      0) status=ok ;;
      124 | 137) status="TIMED OUT after ${limit}s" ;;
      *) status="FAILED (exit $rc)" ;;
    esac
    status="$status in $((SECONDS - start))s"
  fi
  printf '%-8s %s\n' "$name" "$status" | tee -a "$LOG" "$SUMMARY"
  [ "${status%% *}" = ok ] || FAILED+=("$name")
  [ "${status%% *}" = ok ]
}

# A step whose failure leaves nothing for the later ones to run on.
required() { run_step "$@" || BLOCKED=${BLOCKED:-$1}; }

wanted() { [[ ",$STEPS," == *",$1,"* ]]; }

has_module() { "$PY" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$1') is None)" 2>/dev/null; }

{
  echo "bitcodes_ext GPU checklist ($( ((DRY_RUN)) && echo "dry run, no GPU" || echo GPU)), $(date -u +%Y-%m-%dT%H:%M:%SZ), budget ${BUDGET_S}s, steps $STEPS"
  if commit=$(git -C "$ROOT" rev-parse HEAD 2>/dev/null); then
    echo "commit: $commit, $(git -C "$ROOT" status --porcelain | wc -l) paths changed or untracked"
  else
    echo "commit: ${GIT_COMMIT:-unknown (the tree has no git; set GIT_COMMIT)}"
  fi
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader | sed 's/^/gpu: /' || echo "gpu: nvidia-smi failed"
  fi
} | tee -a "$LOG" "$SUMMARY"

# setup and env: carried wheels only, so nothing here depends on reaching a registry.
# (--target: no venv, and pip's refusal to touch an externally managed Python does not apply.)
required setup 5 60 bash -c 'set -e; cd tools/wheels; sha256sum --check --strict SHA256SUMS; wheels=()
  while read -r _ wheel; do wheels+=("$wheel"); done <SHA256SUMS
  "$0" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --target "$1" "${wheels[@]}"' "$PY" "$SITE"
required env 5 60 "$PY" tools/session_env.py packages --site "$SITE" --report "$SUMMARY" $( ((DRY_RUN)) || echo --gpu)

# The extension goes straight into the tree, where the tests and benchmarks import it from
# (ninja keeps its objects in build/temp.*, so a rerun on a warm machine compiles nothing).
BUILD=(setup.py build_ext --build-lib .)
if ((DRY_RUN)); then
  # The build command is checked (setup.py runs, build_ext takes these options) but does not
  # compile: a fresh clone has no ninja state, so it would compile everything a second time,
  # and `make install` has already built the same sources, for sm_80 and sm_90, in the tree.
  # Then the CUDA sources compiled for the emulator (cached by `make emulate-cuda`).
  EMULATOR=$ROOT/build/cuda_emulator/bitcodes_cuda_emulated.so
  if wanted build; then
    required build 10 120 env MAX_JOBS=2 "$PY" "${BUILD[@]}" --help
    required emulator 30 900 "$PY" tools/cuda_emulator/build.py
  fi
  required kernels 5 60 "$PY" tools/session_env.py kernels --emulator "$EMULATOR" --report "$SUMMARY"
  # A few of them: `make test` runs them all on the emulator already.
  TESTS=(-m "not real_gpu" tests/test_cuda_bitcodes.py tests/test_cuda_vq.py -k "3-5-1 or seed_example")
  TEST_ENV=(env BITCODES_CUDA_EMULATOR="$EMULATOR" CI=1)
  BENCH=(env BITCODES_CUDA_EMULATOR="$EMULATOR" "$PY" benchmarks/bench_bitcodes.py --device cpu --sizes 256x16x4,512x32x8
    --compile-at 256x16x4 --compile-modes eval --rounds 1 --min-run-time 0.01)
  VQ=("$PY" benchmarks/bench_vq.py --device cpu --vq-sizes 4096x256x16 --repeats 1)
else
  if wanted build; then
    required build 60 360 env TORCH_CUDA_ARCH_LIST=9.0 FORCE_CUDA=1 MAX_JOBS=16 "$PY" "${BUILD[@]}"
  fi
  required kernels 5 60 "$PY" tools/session_env.py kernels --cuda --report "$SUMMARY"
  TESTS=(tests/test_cuda_bitcodes.py tests/test_cuda_vq.py)  # real_gpu included
  TEST_ENV=(env CI=1)  # a missing build fails, never skips
  BENCH=("$PY" benchmarks/bench_bitcodes.py --device cuda --compile-at 1048576x256x16,1048576x1024x64 --compile-modes eval
    --rounds 2 --min-run-time 0.2)
  VQ=("$PY" benchmarks/bench_vq.py --device cuda --vq-sizes 65536x8192x256,262144x8192x16,1048576x131072x64 --repeats 3)
fi

if wanted tests; then
  if [ -n "${GPU_SESSION_TESTS:-}" ]; then eval "TESTS=($GPU_SESSION_TESTS)"; fi  # shell words, quotes allowed
  PYTEST=("$PY" -m pytest -q -p no:cacheprovider --durations=15)
  if has_module xdist; then PYTEST+=(-n 8); fi
  if has_module pytest_timeout; then PYTEST+=(--timeout=120); fi  # one hung test, not the whole step
  run_step tests 60 200 "${TEST_ENV[@]}" "${PYTEST[@]}" "${TESTS[@]}" || true
fi
if wanted bench; then
  run_step bench 60 270 "${BENCH[@]}" --dtype bfloat16 --backends reference,compile,ours,routes --no-plot \
    --time-budget "{budget}" --out "$OUT" || true
fi
if wanted vq; then
  run_step vq 30 100 "${VQ[@]}" --out "$OUT" || true
fi

if ((${#FAILED[@]})); then
  printf '\nresult: FAILED (%s) after %ss\n' "${FAILED[*]}" "$SECONDS" | tee -a "$LOG" "$SUMMARY"
  exit 1
fi
printf '\nresult: every step passed in %ss\n' "$SECONDS" | tee -a "$LOG" "$SUMMARY"
