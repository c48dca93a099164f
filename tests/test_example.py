"""The end-to-end example learns, and the benchmark's main job runs."""

import json
import pathlib
import sys

from conftest import load_module

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_digits_autoencoder_learns(native, tmp_path):
    example = load_module(ROOT / "examples" / "digits_autoencoder.py", "digits_autoencoder")
    report = example.main(["--fast", "--bits", "24", "--out", str(tmp_path / "grid.png")])
    assert report["test_mse"] < 0.5 * report["mean_image_mse"]
    assert report["distinct_codes"] > 50  # the codes tell images apart
    assert (tmp_path / "grid.png").stat().st_size > 1000


def test_benchmark_runs_and_writes_results(native, tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    bench = load_module(ROOT / "benchmarks" / "bench_bitcodes.py", "bench_bitcodes")
    monkeypatch.setattr(
        sys, "argv",
        ["bench", "--device", "cpu", "--sizes", "256x16x4", "--backends", "reference,two-gemm,ours",
         "--rounds", "1", "--min-run-time", "0.01", "--out", str(tmp_path)],
    )
    bench.main()
    (result,) = tmp_path.glob("cpu-*.json")
    rows = json.loads(result.read_text())["results"]
    assert {r["implementation"] for r in rows} == {"reference", "two-GEMM torch", "bitcodes_ext"}
    assert all(r["ms"] > 0 and r["speedup_vs_reference"] > 0 for r in rows)
    assert result.with_suffix(".csv").exists() and result.with_suffix(".png").stat().st_size > 1000
