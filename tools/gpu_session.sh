#!/usr/bin/env bash
# The GPU checklist: one device call that ends within its 540-s budget on a fresh H100/H200
# (torch 2.11+cu130, Python 3.12 that may be externally managed, nvcc 13.0, no registry reachable).
# Correctness first: the build is checked, every op on every CUDA route is compared with the
# float64 oracle, the CUDA tests run, and only then are vq and Bitcodes timed.
#
#   bash tools/gpu_session.sh                      # on the GPU: the whole device call
#   bash tools/gpu_session.sh --dry-run            # without a GPU: every step, on the CUDA emulator and the CPU
#   bash tools/gpu_session.sh --steps smoke,bench  # a rerun of some steps (setup, env and kernels always run)
#
# Steps, in order, each with its own time limit (min / max seconds below: a step runs only if its
# minimum is left, and never past its maximum or the budget; the maxima sum to <= 480 s):
#   setup    the carried wheels (tools/wheels: bitcodes-pytorch, einops; checked against SHA256SUMS)
#            into a scratch pip --target directory put first on PYTHONPATH: no venv, no registry
#   env      Python, Python.h, pip, ninja, torch, free disk and GPU memory, the packages (tools/session_env.py)
#   kernels  the build in the tree loads, was compiled against this torch and holds this GPU's
#            machine code: a build carried from the development machine (tools/build_for_device.sh)
#            passes, and then nothing is compiled here
#   build    only where `kernels` failed: the extension in place for this GPU and the AVX2 and
#            AVX512 CPU kernels (16 parallel jobs), then `kernels` again
#   smoke    every op on every CUDA route at small sizes against the float64 oracle, each route in
#            its own process (a CUDA fault is sticky): smoke-cores, smoke-gemm, smoke-mma (route mma
#            is timed later only if this passed), smoke-entropy (binary_entropy against float64)
#   tests    tests/test_cuda_*.py, real_gpu included, under pytest-timeout and pytest-xdist
#   vq       bench_vq.py, the largest size first; one JSON rewrite per size
#   bench    bench_bitcodes.py in what is left: the #3 grid in bf16, each configuration checked
#            against float64 before it is timed; one torch.compile(reference) point
# A step that fails does not stop the later ones, except that nothing runs after a failed setup,
# env or kernels (after the build). Statuses: passed; partial (stopped by its time limit, or a
# benchmark that left configurations out, after writing results); failed. The exit status is 0
# if every step passed, 2 if the worst was partial, 1 if any failed or was skipped. Everything
# lands in $OUT (the device returns at most 8 files): session.log, summary.txt and the
# benchmarks' results (cuda-<date>-bfloat16.{json,csv}, vq-cuda-<date>.json), which are
# committed under benchmarks/results/ (`python benchmarks/results.py FILE.json` plots them).
#
# Environment: OUT (default build/gpu_session/out), GPU_SESSION_BUDGET_S, PYTHON (default python3;
# the dry run: .venv/bin/python where it exists), GIT_COMMIT (the tree has no git on the device),
# GPU_SESSION_TESTS (pytest arguments that replace the tests step's selection),
# GPU_SESSION_BENCH_BUDGET_S (the benchmark's own time budget; default: its step's limit less 20 s).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

DRY_RUN=0
STEPS=build,smoke,tests,vq,bench
while (($#)); do
  case "$1" in
    --dry-run) DRY_RUN=1 ;;
    --steps) STEPS=${2:?--steps needs a list, e.g. smoke,bench}; shift ;;
    *) echo "usage: bash tools/gpu_session.sh [--dry-run] [--steps build,smoke,tests,vq,bench]" >&2; exit 2 ;;
  esac
  shift
done
for step in ${STEPS//,/ }; do
  case "$step" in build | smoke | tests | vq | bench) ;; *) echo "unknown step '$step' (build, smoke, tests, vq, bench)" >&2; exit 2 ;; esac
done

# min / max seconds per step. The smoke's four processes share its line. bench's maximum is its
# share when nothing else finishes early; it also gets whatever the steps before it left.
declare -A MIN_S=([setup]=5 [env]=5 [kernels]=5 [build]=60 [smoke]=8 [tests]=60 [vq]=20 [bench]=45)
declare -A MAX_S=([setup]=15 [env]=15 [kernels]=15 [build]=120 [smoke]=80 [tests]=120 [vq]=45 [bench]=50)
PLANNED_MAX_S=480  # the sum of the maxima may not exceed this (of the device's 600-s command limit)
BUDGET_S=${GPU_SESSION_BUDGET_S:-540}
RESERVE_S=10  # kept back for the summary at the end
planned=${MAX_S[kernels]}  # kernels runs twice where the build runs
for step in "${!MAX_S[@]}"; do planned=$((planned + MAX_S[$step])); done
if ((planned > PLANNED_MAX_S)); then
  echo "the steps' maxima sum to ${planned}s, over the ${PLANNED_MAX_S}s plan" >&2
  exit 2
fi

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
unset BITCODES_CUDA_ROUTE  # the smoke and the benchmark set it for each route

FAILED=()   # steps that failed or were skipped
PARTIAL=()  # steps stopped by their limit, or benchmarks that left configurations out, with results
BLOCKED=""  # set when a step the later ones need has failed

note() { printf '%s\n' "$@" | tee -a "$LOG"; }
left_s() { echo $((BUDGET_S - SECONDS - RESERVE_S)); }

# run_step NAME MIN_S MAX_S COMMAND...: runs COMMAND with a time limit of MAX_S or what is left of
# the budget, whichever is less ("{budget}" in its arguments becomes that limit less 20 s, for
# scripts that stop themselves in time); skips it when less than MIN_S is left. Its output goes to
# the terminal and session.log, its status to summary.txt. A command that exits 2, or is stopped
# at its limit after writing results (PARTIAL_IF names a file glob in $OUT), is partial; with
# OPTIONAL=1 a failure is not counted (the caller handles it). Returns 0 only if it passed; never
# exits the script.
run_step() {
  local name=$1 min_s=$2 max_s=$3
  shift 3
  local left status rc=0 kind
  left=$(left_s)
  if [ -n "$BLOCKED" ]; then
    status="skipped: $BLOCKED failed"; kind=failed
  elif ((left < min_s)); then
    status="skipped: ${left}s left of the budget, needs ${min_s}s"; kind=failed
  else
    local limit=$((left < max_s ? left : max_s)) start=$SECONDS args=() arg
    for arg in "$@"; do args+=("${arg//\{budget\}/$((limit - 20))}"); done
    note "" "=== $name (limit ${limit}s, at ${SECONDS}s of ${BUDGET_S}s): $(printf '%q ' "${args[@]}")"
    timeout --kill-after=10 "$limit" "${args[@]}" </dev/null 2>&1 | tee -a "$LOG" || rc=$?
    if ((rc == 0)); then
      kind=passed
    elif { ((rc == 2)) || ((rc == 124 || rc == 137)); } && [ -n "${PARTIAL_IF:-}" ] && compgen -G "$OUT/$PARTIAL_IF" >/dev/null; then
      kind=partial
    elif [ -n "${OPTIONAL:-}" ]; then
      kind=optional
    else
      kind=failed
    fi
    case $rc in
      0) status="passed" ;;
      124 | 137) status="$kind: stopped at its ${limit}s limit" ;;
      *) status="$kind (exit $rc)" ;;
    esac
    if [ "$kind" = optional ]; then status="not usable here (exit $rc)"; fi
    status="$status in $((SECONDS - start))s"
  fi
  printf '%-14s %s\n' "$name" "$status" | tee -a "$LOG" "$SUMMARY"
  case $kind in
    passed) return 0 ;;
    partial) PARTIAL+=("$name"); return 1 ;;
    optional) return 1 ;;
    *) FAILED+=("$name"); return 1 ;;
  esac
}

# A step whose failure leaves nothing for the later ones to run on.
required() { run_step "$@" || BLOCKED=${BLOCKED:-$1}; }

wanted() { [[ ",$STEPS," == *",$1,"* ]]; }

{
  echo "bitcodes_ext GPU checklist ($( ((DRY_RUN)) && echo "dry run, no GPU" || echo GPU)), $(date -u +%Y-%m-%dT%H:%M:%SZ), budget ${BUDGET_S}s, steps $STEPS"
  echo "plan: the steps' maxima sum to ${planned}s (at most ${PLANNED_MAX_S}s)"
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
required setup "${MIN_S[setup]}" "${MAX_S[setup]}" bash -c 'set -e; cd tools/wheels; sha256sum --check --strict SHA256SUMS; wheels=()
  while read -r _ wheel; do wheels+=("$wheel"); done <SHA256SUMS
  "$0" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --target "$1" "${wheels[@]}"' "$PY" "$SITE"
required env "${MIN_S[env]}" "${MAX_S[env]}" "$PY" tools/session_env.py packages --site "$SITE" --report "$SUMMARY" $( ((DRY_RUN)) || echo --gpu)

# Per-worker limits for the tests: 8 workers of 2 threads on the device's 16 cores, and one
# Inductor compile process each (its default pool is one per core, per worker).
TEST_LIMITS=(env OMP_NUM_THREADS=2 TORCHINDUCTOR_COMPILE_THREADS=1)
PYTEST=("$PY" -m pytest -q -p no:cacheprovider)
if "$PY" -c "import pytest_timeout" 2>/dev/null; then PYTEST+=(--timeout=60); fi  # one hung test, not the whole step
SMOKE_ROUTES=(cores gemm)
if ((DRY_RUN)); then
  # The build command is checked (setup.py runs, build_ext takes these options) but does not
  # compile: `make install` has built the same sources in the tree. Then the CUDA sources
  # compiled for the emulator (cached by `make emulate-cuda`), which stands in for the GPU.
  EMULATOR=$ROOT/build/cuda_emulator/bitcodes_cuda_emulated.so
  if wanted build; then
    required build "${MIN_S[build]}" "${MAX_S[build]}" env MAX_JOBS=2 "$PY" setup.py build_ext --build-lib . --help
    required emulator 30 900 "$PY" tools/cuda_emulator/build.py
  fi
  required kernels "${MIN_S[kernels]}" "${MAX_S[kernels]}" "$PY" tools/session_env.py kernels --emulator "$EMULATOR" --report "$SUMMARY"
  TEST_ENV=(env BITCODES_CUDA_EMULATOR="$EMULATOR" CI=1)
  # What `make emulate-cuda` does not already cover here: the new files' selection, briefly.
  TESTS=(-m "not real_gpu" tests/test_cuda_mma.py tests/test_cuda_routes.py tests/test_cuda_tiles.py tests/test_cuda_entropy.py
    -k "route_rule or every_route_is_tested or unknown_route or 130-40-13 or entropy or float64_on_the_device or width_does_not_change")
  VQ=("$PY" benchmarks/bench_vq.py --device cpu --vq-sizes 4096x256x16 --repeats 1)
  BENCH=(env BITCODES_CUDA_EMULATOR="$EMULATOR" "$PY" benchmarks/bench_bitcodes.py --device cpu --sizes 256x16x4,512x32x8
    --compile-at 256x16x4 --compile-modes eval --rounds 1 --min-run-time 0.01)
else
  # A carried build that does not fit this machine is rebuilt here, not a failure.
  if ! OPTIONAL=1 run_step kernels "${MIN_S[kernels]}" "${MAX_S[kernels]}" "$PY" tools/session_env.py kernels --cuda --report "$SUMMARY"; then
    note "the build in the tree does not fit this machine: building it here"
    # The capabilities the carried build has; the import loads the fastest this CPU supports (bitcodes_ext/_extension.py).
    required build "${MIN_S[build]}" "${MAX_S[build]}" env TORCH_CUDA_ARCH_LIST=9.0 FORCE_CUDA=1 MAX_JOBS=16 \
      BITCODES_BUILD_CPU_CAPABILITIES=avx2,avx512 "$PY" setup.py build_ext --build-lib .
    required kernels-built "${MIN_S[kernels]}" "${MAX_S[kernels]}" "$PY" tools/session_env.py kernels --cuda --report "$SUMMARY"
  fi
  TEST_ENV=(env CI=1)  # a missing build fails, never skips
  # test_cuda_emulator.py tests the CPU emulator of CUDA, which the GPU does not use.
  TESTS=(-n 8 --durations=15 tests/test_cuda_bitcodes.py tests/test_cuda_vq.py tests/test_cuda_mma.py
    tests/test_cuda_routes.py tests/test_cuda_tiles.py tests/test_cuda_entropy.py)
  VQ=("$PY" benchmarks/bench_vq.py --device cuda --vq-sizes 1048576x131072x64,262144x8192x16,65536x8192x256 --repeats 3)
  BENCH=("$PY" benchmarks/bench_bitcodes.py --device cuda --compile-at 1048576x1024x64 --compile-modes eval
    --rounds 2 --min-run-time 0.2)
fi

# The smoke: each route's forward (eval and training), backward, decode and vq at small sizes,
# from the same tests and float64 oracle as the full run, one process per route.
SMOKE_OPS="(matches_oracle and (130-33-13 or 130-40-13)) or from_bits_reproduces_y or eval_codebook_gradient or (exact_search and 333-300-17) or vq_matches_exact_search"
MMA_PASSED=0
if wanted smoke; then
  per_route=$((MAX_S[smoke] / 4))
  for route in "${SMOKE_ROUTES[@]}"; do
    run_step "smoke-$route" "${MIN_S[smoke]}" "$per_route" "${TEST_LIMITS[@]}" "${TEST_ENV[@]}" "${PYTEST[@]}" -x \
      -m "not real_gpu" tests/test_cuda_bitcodes.py tests/test_cuda_vq.py -k "$route- and not chunked and ($SMOKE_OPS)" || true
  done
  run_step smoke-mma "${MIN_S[smoke]}" "$per_route" "${TEST_LIMITS[@]}" "${TEST_ENV[@]}" "${PYTEST[@]}" -x \
    -m "not real_gpu" tests/test_cuda_mma.py -k "$SMOKE_OPS" && MMA_PASSED=1
  run_step smoke-entropy "${MIN_S[smoke]}" "$per_route" "${TEST_LIMITS[@]}" "${TEST_ENV[@]}" "${PYTEST[@]}" -x \
    tests/test_cuda_entropy.py || true
fi

if wanted tests; then
  if [ -n "${GPU_SESSION_TESTS:-}" ]; then eval "TESTS=($GPU_SESSION_TESTS)"; fi  # shell words, quotes allowed
  run_step tests "${MIN_S[tests]}" "${MAX_S[tests]}" "${TEST_LIMITS[@]}" "${TEST_ENV[@]}" "${PYTEST[@]}" "${TESTS[@]}" || true
fi
if wanted vq; then
  PARTIAL_IF="vq-*.json" run_step vq "${MIN_S[vq]}" "${MAX_S[vq]}" "${VQ[@]}" --out "$OUT" || true
fi
if wanted bench; then
  # Route mma is timed only once its smoke has passed (or where the smoke did not run).
  routes=cores,gemm
  if ((MMA_PASSED)) || ! wanted smoke; then routes=cores,gemm,mma; fi
  bench_s=$(left_s)  # what the steps before left, and at least its own share
  bench_budget="{budget}"
  if [ -n "${GPU_SESSION_BENCH_BUDGET_S:-}" ]; then bench_budget=$GPU_SESSION_BENCH_BUDGET_S; fi
  PARTIAL_IF="*-bfloat16*.json" run_step bench "${MIN_S[bench]}" $((bench_s > MAX_S[bench] ? bench_s : MAX_S[bench])) \
    "${BENCH[@]}" --dtype bfloat16 --backends reference,compile,ours,routes --routes "$routes" --no-plot \
    --time-budget "$bench_budget" --out "$OUT" || true
fi

if ((${#FAILED[@]})); then
  printf '\nresult: failed (%s) after %ss\n' "${FAILED[*]}" "$SECONDS" | tee -a "$LOG" "$SUMMARY"
  exit 1
fi
if ((${#PARTIAL[@]})); then
  printf '\nresult: partial (%s) after %ss\n' "${PARTIAL[*]}" "$SECONDS" | tee -a "$LOG" "$SUMMARY"
  exit 2
fi
printf '\nresult: passed, every step, in %ss\n' "$SECONDS" | tee -a "$LOG" "$SUMMARY"
