# Entry points (times, and what each step checks: docs/testing.md):
#   make install  .venv with torch, the package editable with its [test,bench] extras, and every
#                 extension compiled; objects stay in build/<module>/, so a rebuild compiles only
#                 what changed
#   make check    the quick path: the CPU suite on the capability the package loads, without the slow
#                 tiers (tests marked slow: processes, training runs, the soak) and the CUDA tests
#   make test     the whole suite (what CI runs, via .ci/run), in this order:
#                   1. install
#                   2. ctest: the CPU ops as a C++ library against LibTorch, checked by a C++ test
#                   3. emulate-cuda: tests/test_cuda_*.py on csrc/cuda/ compiled for a CPU emulation
#                      of CUDA (no GPU needed), the emulator's own instruction tests included
#                   4. cpu-capabilities: the CPU kernel tests again on each capability this CPU
#                      supports but the package does not load by default (step 8 runs that one),
#                      with test_build.py, which
#                      asserts that each run loaded the capability it asked for
#                   5. wheel-test: an sdist holding every file the build reads, a wheel built in
#                      install's build directories (nothing compiled again), installed in a fresh
#                      venv and smoke-tested there on every capability this CPU supports
#                   6. sanitize: the CPU kernel tests on kernels built with ASan and UBSan
#                   7. mutants-quick: a few planted bugs, each of which its tests must catch
#                   8. pytest: the whole suite, with tests/test_gpu_session.py (the GPU checklist's
#                      dry run); without a GPU it deselects what step 3 ran, and says so
#   make bench    the main job: benchmarks against bitcodes-pytorch, nearest-code search, the binary
#                 family's entropy term against vector-quantize-pytorch, and the
#                 rate-distortion study (BENCH_ARGS=--quick for a shorter run; see each script's --help)
#   make mutants  the whole mutation catalogue (long: a rebuild per mutant); writes tests/mutants-report.md
PYTHON ?= python3
VENV ?= .venv
PY := $(abspath $(VENV))/bin/python
SOURCES := setup.py pyproject.toml $(wildcard csrc/*.cpp csrc/*.h csrc/cpu/*.cpp csrc/cpu/*.h csrc/cuda/*.cu csrc/cuda/*.cuh csrc/cuda/*.h)

# The tests of the CPU kernels' arithmetic (against the float64 oracle and bitcodes-pytorch).
CPU_KERNEL_TESTS := tests/test_kernels.py tests/test_reference_package.py tests/test_fuzz.py \
	tests/test_vq.py tests/test_layouts.py tests/test_quantizer.py tests/test_determinism.py \
	tests/test_ops.py

.PHONY: test check bench install cmake ctest emulate-cuda cpu-capabilities wheel-test sanitize mutants mutants-quick clean

$(VENV)/.deps: requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

# --no-build-isolation: the extension must compile against the torch it will run with.
$(VENV)/.built: $(VENV)/.deps $(SOURCES)
	$(PY) -m pip install --quiet --no-build-isolation -e '.[test,bench]'
	touch $@

install: $(VENV)/.built

# The CPU suite without its slow tiers and without the CUDA tests (make emulate-cuda runs those).
check: install
	$(PY) -m pytest -m "not slow and not wheel" --ignore-glob='tests/test_cuda_*.py'

# The C++ test and the CUDA sources on the CUDA emulator first, so that the main pytest
# summary closes the run.
test: install ctest
	$(MAKE) emulate-cuda
	$(MAKE) cpu-capabilities
	$(MAKE) wheel-test
	$(MAKE) sanitize
	$(MAKE) mutants-quick
	$(PY) -m pytest --cuda-emulated-earlier

# tests/test_cuda_*.py against csrc/cuda/ compiled for a CPU emulation of CUDA (no GPU needed);
# the tests that need a real GPU are left out (-m "not real_gpu") and run where there is one.
# The emulator runs a block's threads as fibers on one core: two pytest-xdist workers of one
# thread each keep both cores busy (half the time of one process here).
emulate-cuda: install
	BITCODES_CUDA_EMULATOR="$$($(PY) tools/cuda_emulator/build.py | tail -n 1)" OMP_NUM_THREADS=1 \
		$(PY) -m pytest -n 2 -m "not real_gpu" tests/test_cuda_*.py

# The capabilities this CPU supports, lowest first, from the package's one probe; fails where
# the CPU kernels did not load.
CAPABILITIES = $(PY) tools/cpu_capabilities.py

cpu-capabilities: install
	set -e; capabilities="$$($(CAPABILITIES))"; loaded="$$($(CAPABILITIES) --default)"; \
	echo "== this CPU supports $$capabilities; the main pytest run tests $$loaded, which the package loads here"; \
	for capability in $$capabilities; do \
		if [ "$$capability" = "$$loaded" ]; then continue; fi; \
		echo "== CPU kernel tests on $$capability"; \
		BITCODES_CPU_CAPABILITY=$$capability $(PY) -m pytest -q tests/test_build.py $(CPU_KERNEL_TESTS); \
	done

# An sdist, a wheel built from install's objects and installed in a fresh venv, and what
# `pip install .` says without torch (tests/test_wheel.py).
wheel-test: install
	$(PY) -m pytest -m wheel tests/test_wheel.py

# The CPU kernel tests on a copy of the tree whose kernels (the best capability of this CPU)
# are built with -fsanitize=address,undefined; any report aborts the run. Not the soak test:
# it measures RSS, which ASan's quarantine of freed memory inflates (and it is by far the slowest
# test under ASan). --capture=sys: a report goes to the terminal, not to a capture the abort loses.
# The output cache is off for the kernel tests, so that ASan sees every output freed, and on for
# its own tests.
SANITIZE_DIR := build/sanitize
SOAK_TEST := tests/test_determinism.py::test_soak_10000_training_steps_without_memory_growth
sanitize: install
	set -e; best="$$($(CAPABILITIES) --best)"; \
	rm -rf $(SANITIZE_DIR) && mkdir -p $(SANITIZE_DIR); \
	git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t $(SANITIZE_DIR); \
	cd $(SANITIZE_DIR); \
	BITCODES_SANITIZE=1 BITCODES_CUDA=0 BITCODES_BUILD_CPU_CAPABILITIES=$$best $(PY) setup.py --quiet build_ext --inplace; \
	export LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)"; \
	export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1; \
	export BITCODES_CPU_CAPABILITY=$$best; \
	$(PY) -m tools.check_sanitized $$best; \
	BITCODES_CPU_OUTPUT_CACHE_MB=0 $(PY) -m pytest -q -p no:cacheprovider --capture=sys $(CPU_KERNEL_TESTS) --deselect $(SOAK_TEST); \
	$(PY) -m pytest -q -p no:cacheprovider --capture=sys tests/test_output_cache.py

# Each bug of tools/mutant_catalogue.py planted in turn in a copy of the tree (build/mutants/), the
# CPU kernels (or the CUDA emulator) rebuilt there, and the suite run until a test fails.
mutants: install
	$(PY) tools/mutants.py

# The catalogue's fast subset, each mutant against its own tests only (a few minutes).
mutants-quick: install
	$(PY) tools/mutants.py --quick

bench: install
	$(PY) benchmarks/bench_bitcodes.py $(BENCH_ARGS)
	$(PY) benchmarks/bench_vq.py $(BENCH_ARGS)
	$(PY) benchmarks/bench_binary.py $(BENCH_ARGS)
	$(PY) benchmarks/rate_distortion.py $(BENCH_ARGS)

# The CPU ops as a plain C++ library against LibTorch, for this CPU's best capability (asked of
# the package's probe, hence after install); TORCH_CUDA_ARCH_LIST skips GPU probing.
cmake: install
	TORCH_CUDA_ARCH_LIST="$${TORCH_CUDA_ARCH_LIST:-9.0}" cmake -S . -B build/cmake $$($(PY) tools/cmake_args.py)
	cmake --build build/cmake -j2

ctest: cmake
	cd build/cmake && ctest --output-on-failure

clean:
	rm -rf build $(VENV) bitcodes_ext/_*.so *.egg-info
