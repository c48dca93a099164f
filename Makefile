# Two entry points set up everything on a fresh machine:
#   make bench   the main job: benchmarks against bitcodes-pytorch (BENCH_ARGS=--quick for a
#                one-minute run; see `python benchmarks/bench_bitcodes.py --help`)
#   make test    the test suite (what CI runs, via .ci/run), in this order:
#                  1. install: .venv with torch and the test dependencies, the extension compiled
#                  2. ctest: the CPU ops as a C++ library against LibTorch, checked by a C++ test
#                  3. emulate-cuda: tests/test_cuda_*.py on csrc/cuda/ compiled for a CPU emulation
#                     of CUDA (no GPU needed)
#                  4. pytest: the whole suite (the CUDA tests run there only with a GPU)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SOURCES := setup.py $(wildcard csrc/*.cpp csrc/*.h csrc/cpu/*.cpp csrc/cpu/*.h csrc/cuda/*.cu csrc/cuda/*.cuh)

.PHONY: test bench install cmake ctest emulate-cuda clean

$(VENV)/.deps: requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

# --no-build-isolation: the extension must compile against the torch it will run with.
$(VENV)/.built: $(VENV)/.deps $(SOURCES)
	$(PY) -m pip install --quiet --no-build-isolation -e .
	touch $@

install: $(VENV)/.built

# The C++ test and the CUDA sources on the CUDA emulator first, so that the main pytest
# summary closes the run.
test: install ctest
	$(MAKE) emulate-cuda
	$(PY) -m pytest

# tests/test_cuda_*.py against csrc/cuda/ compiled for a CPU emulation of CUDA (no GPU needed);
# the tests that need a real GPU are left out (-m "not real_gpu") and run where there is one.
emulate-cuda: install
	BITCODES_CUDA_EMULATOR="$$($(PY) tools/cuda_emulator/build.py | tail -n 1)" \
		$(PY) -m pytest -m "not real_gpu" tests/test_cuda_*.py

bench: install
	$(PY) benchmarks/bench_bitcodes.py $(BENCH_ARGS)
	$(PY) benchmarks/bench_vq.py $(BENCH_ARGS)

# The CPU ops as a plain C++ library against LibTorch (TORCH_CUDA_ARCH_LIST skips GPU probing).
cmake: $(VENV)/.deps
	TORCH_CUDA_ARCH_LIST="$${TORCH_CUDA_ARCH_LIST:-9.0}" cmake -S . -B build/cmake $$($(PY) tools/cmake_args.py)
	cmake --build build/cmake -j2

ctest: cmake
	cd build/cmake && ctest --output-on-failure

clean:
	rm -rf build $(VENV) bitcodes_ext/_C*.so *.egg-info
