"""tools/mutant_catalogue.py stays runnable and complete: every mutant still applies to the
sources (its text occurs exactly once), every category the catalogue must cover has mutants, and
every file with arithmetic has one. (`make mutants` runs the catalogue; `make mutants-quick`,
part of `make test`, its fast subset.)"""

import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

from mutant_catalogue import COVERS, MUTANTS  # noqa: E402
from mutants import check_catalogue  # noqa: E402

# Files whose arithmetic the catalogue must reach (the catalogue's docstring says why the others
# have none).
WITH_ARITHMETIC = [
    "csrc/checks.h", "csrc/codebook_terms.h", "csrc/vq_select.h",
    "csrc/cpu/codebook_grad.h", "csrc/cpu/decode_cpu.cpp", "csrc/cpu/lookup.h", "csrc/cpu/microkernels.h",
    "csrc/cpu/noise.h", "csrc/cpu/panels.h", "csrc/cpu/prepared_codebook.h", "csrc/cpu/tiles.h", "csrc/cpu/vq_cpu.cpp",
    "bitcodes_ext/bits.py", "bitcodes_ext/functional.py", "bitcodes_ext/layers.py", "bitcodes_ext/ops.py",
    "bitcodes_ext/quantizer.py", "bitcodes_ext/reference.py", "bitcodes_ext/_validate.py",
    "bitcodes_ext/code_tables.py", "bitcodes_ext/entropy.py", "bitcodes_ext/lookup_free.py",
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


def test_a_report_reads_back_as_written_for_resume(tmp_path):
    from mutants import git, read_report, report_text, resumable, still_killed

    by_name = {m.name: m for m in MUTANTS}
    results = [(by_name["threshold-tie"], dict(status="killed", by="tests/a.py::t[x | y]", seconds=61.0)),
               (by_name["odd-codebook"], dict(status="survived", by="", seconds=4.0))]
    commit = "0123456789abcdef0123456789abcdef01234567"
    text = report_text(results, mode="whole catalogue, stopped part-way: 2 of 57 run", capability="AVX2",
                       seconds=125.0, problems=[], state=(commit, False))
    (tmp_path / "r.md").write_text(text)
    earlier = read_report(tmp_path / "r.md")
    assert earlier["commit"] == commit and not earlier["dirty"]
    assert earlier["capability"] == "AVX2" and earlier["minutes"] == 2
    assert earlier["cpu"] and earlier["cpu"] in text
    assert earlier["results"] == {"threshold-tie": dict(status="killed", by="tests/a.py::t[x | y]", seconds=61.0),
                                  "odd-codebook": dict(status="survived", by="", seconds=4.0)}
    # Results of another capability, or of a dirty checkout, never stand for this run's.
    assert "AVX512" in resumable(earlier, "AVX512")
    assert "uncommitted" in resumable(dict(earlier, dirty=True), "AVX2")

    (tmp_path / "foreign.md").write_text("# notes\n| a | b |\n")
    with pytest.raises(ValueError, match="not a report"):
        read_report(tmp_path / "foreign.md")

    # At this very commit every kill stands, nothing else: survivors run again, unknown names go.
    head = git("rev-parse", "HEAD").strip()
    results = dict(earlier["results"], gone=dict(status="killed", by="x", seconds=1.0))
    assert still_killed(dict(earlier, commit=head, results=results), MUTANTS) == {
        "threshold-tie": results["threshold-tie"]}
