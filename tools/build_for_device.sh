#!/usr/bin/env bash
# Builds bitcodes_ext for the lent GPU machine here, so that the device call spends no time
# compiling: Python 3.12 and the registry's torch 2.11.0 (2.11.0+cu130, the device's), CUDA
# kernels for sm_90 only, CPU kernels for AVX2 and AVX512, with torch 2.11's own extension flags
# (C++17). Not part of `make test`: it installs a second torch (~4 GB) in its own venv.
#
#   bash tools/build_for_device.sh          # writes bitcodes_ext/*.cpython-312-*.so and a log
#
# The modules land in bitcodes_ext/ beside the development build's (other Python version, other
# file names), ignored by git; the device call carries them (`carry`), and the checklist
# (tools/gpu_session.sh, step kernels) uses them only if they load, were built against the
# device's torch and hold sm_90 machine code; else it builds there. The log and the sizes go to
# build/device/build.log (benchmarks/NOTES.md, "The GPU checklist", records a run).
#
# Environment: DEVICE_PYTHON (default: pyenv's 3.12), DEVICE_TORCH (default 2.11.0),
# DEVICE_VENV (default build/device/venv), MAX_JOBS (default 2).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
OUT=$ROOT/build/device
VENV=${DEVICE_VENV:-$OUT/venv}
TORCH_VERSION=${DEVICE_TORCH:-2.11.0}
PYTHON=${DEVICE_PYTHON:-$(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python 2>/dev/null | tail -n 1)}
[ -x "${PYTHON:-}" ] || { echo "no Python 3.12 found: set DEVICE_PYTHON" >&2; exit 1; }
mkdir -p "$OUT"
LOG=$OUT/build.log
exec > >(tee "$LOG") 2>&1

echo "== $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -m), $(nproc) cores; $("$PYTHON" --version)"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet "torch==$TORCH_VERSION" ninja pybind11 setuptools numpy
"$VENV/bin/python" -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda)"

STAGE=$OUT/lib
rm -rf "$STAGE"
start=$SECONDS
PATH=$VENV/bin:$PATH TORCH_CUDA_ARCH_LIST=9.0 FORCE_CUDA=1 MAX_JOBS=${MAX_JOBS:-2} BITCODES_BUILD_CPU_CAPABILITIES=avx2,avx512 \
  "$VENV/bin/python" setup.py build_ext --build-lib "$STAGE" --build-temp "$OUT/temp"
echo "== compiled in $((SECONDS - start)) s (ninja recompiles only what changed since the last run)"
cp "$STAGE"/bitcodes_ext/*.so bitcodes_ext/
# Without their debug sections (-g of torch's flags) the three modules are less than half the size.
strip --strip-debug bitcodes_ext/*cpython-312*.so
ls -l bitcodes_ext/*cpython-312*.so

# What the checklist checks on the device, checked here already: the modules load under this
# torch (the CPU kernels where this CPU runs them), name it, and hold sm_90 machine code.
"$VENV/bin/python" - <<'EOF'
import glob, os, subprocess, torch
import bitcodes_ext
info = bitcodes_ext.backend_info()
print(info)
assert info["built_with_torch"] == torch.__version__, info
assert info["cuda_archs"] == "9.0" and info["cpu_kernels"], info
cuobjdump = os.path.join(os.path.dirname(__import__("triton").__file__), "backends", "nvidia", "bin", "cuobjdump")
(library,) = glob.glob(os.path.join(os.path.dirname(bitcodes_ext.__file__), "_C.cpython-312*.so"))
elves = subprocess.run([cuobjdump, "--list-elf", library], capture_output=True, text=True, check=True).stdout
print("machine code:", sorted({line.rsplit(".", 2)[-2] for line in elves.split() if ".sm_" in line}))
assert ".sm_90." in elves
EOF
du -ch bitcodes_ext/*cpython-312*.so | tail -n 1
echo "== carry: $(cd "$ROOT" && ls bitcodes_ext/*cpython-312*.so | tr '\n' ' ')"
