"""tools/mutant_catalogue.py stays runnable and complete: every mutant still applies to the
sources (its text occurs exactly once), every category the catalogue must cover has mutants, and
every file with arithmetic has one. (`make mutants` runs the catalogue; `make mutants-quick`,
part of `make test`, its fast subset.)"""

import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

from mutant_catalogue import COVERS, MUTANTS  # noqa: E402
from mutants import check_catalogue  # noqa: E402

# Files whose arithmetic the catalogue must reach (the catalogue's docstring says why the others
# have none).
WITH_ARITHMETIC = [
    "csrc/checks.h", "csrc/codebook_terms.h",
    "csrc/cpu/codebook_grad.h", "csrc/cpu/decode_cpu.cpp", "csrc/cpu/lookup.h", "csrc/cpu/microkernels.h",
    "csrc/cpu/noise.h", "csrc/cpu/panels.h", "csrc/cpu/prepared_codebook.h", "csrc/cpu/tiles.h", "csrc/cpu/vq_cpu.cpp",
    "bitcodes_ext/bits.py", "bitcodes_ext/functional.py", "bitcodes_ext/layers.py", "bitcodes_ext/ops.py",
    "bitcodes_ext/quantizer.py", "bitcodes_ext/reference.py", "bitcodes_ext/_validate.py",
    "csrc/cuda/bitcodes_kernels.cuh", "csrc/cuda/overlapped_sum.cuh",
]


def test_every_mutant_applies_once():
    assert check_catalogue() == []


def test_catalogue_covers_what_it_must():
    assert len(MUTANTS) >= 20
    assert {m.covers for m in MUTANTS} == set(COVERS)
    assert not set(WITH_ARITHMETIC) - {m.path for m in MUTANTS}
    assert sum(m.quick for m in MUTANTS) >= 5 and not any(m.quick and m.kind == "cuda" for m in MUTANTS)
    assert {"threshold-tie", "cuda-threshold-tie", "cuda-overlapped-partial-sum"} <= {m.name for m in MUTANTS}
