"""The benchmark scripts' bookkeeping: results rewritten after every configuration (a run killed
midway keeps what it finished), the time budget, the CUDA routes (bitcodes_ext.info.cuda_routes())
forced one by one, and the files read back for the plot and the README table."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest
import torch

from bitcodes_ext import info

ROOT = pathlib.Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks" / "bench_bitcodes.py"
sys.path.insert(0, str(ROOT / "benchmarks"))
import bench_bitcodes  # noqa: E402
import harness  # noqa: E402
import results  # noqa: E402


def bench(tmp_path, *args):
    return [sys.executable, str(BENCH), "--device", "cpu", "--threads", "1", "--rounds", "1", "--out", str(tmp_path), *args]


def test_each_route_is_forced_during_its_own_step(native, monkeypatch):
    seen = []
    forward = bench_bitcodes.Bitcodes.forward

    def spy(self, *args, **kwargs):
        seen.append(os.environ.get("BITCODES_CUDA_ROUTE"))
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(bench_bitcodes.Bitcodes, "forward", spy)
    x = torch.randn(1, 64, 16)
    routes = [None, *info.cuda_routes()]
    assert harness.cuda_routes() == routes[1:]
    for route in routes:
        bench_bitcodes.make_step("ours", 16, 4, False, torch.device("cpu"), torch.float32, x, route)()
    assert seen == routes


def test_routes_need_cuda_or_the_emulator(native, tmp_path):
    done = subprocess.run(bench(tmp_path, "--sizes", "64x8x2", "--backends", "ours,routes"), capture_output=True, text=True)
    assert done.returncode != 0 and "needs --device cuda" in done.stderr


def test_compile_points_must_be_benchmarked_sizes(native, tmp_path):
    done = subprocess.run(bench(tmp_path, "--sizes", "64x8x2", "--compile-at", "64x8x2,999x8x2"), capture_output=True, text=True)
    assert done.returncode != 0 and "999x8x2 is not among the sizes" in done.stderr


def test_results_are_rewritten_after_every_configuration(native, tmp_path):
    sizes = ",".join(["2048x32x8"] * 8)
    process = subprocess.Popen(
        bench(tmp_path, "--sizes", sizes, "--backends", "reference,ours", "--rounds", "2", "--min-run-time", "0.3"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while not list(tmp_path.glob("cpu-*.json")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)  # as a device call that runs out of time
    process.wait()
    (path,) = tmp_path.glob("cpu-*.json")
    meta, rows = results.load(path)
    assert not meta["complete"]
    configs = {(r["mode"], r["tokens"], r["features"], r["num_bits"]) for r in rows}
    assert 1 <= len(configs) < len(meta["planned"])
    assert len(rows) == 2 * len(configs)  # every configuration written holds both implementations
    assert not list(tmp_path.glob("*.tmp*")), "a half-written file was left behind"


def test_a_spent_time_budget_leaves_the_rest_not_run(native, tmp_path):
    done = subprocess.run(bench(tmp_path, "--sizes", "64x8x2,128x8x2", "--backends", "ours", "--time-budget", "0"), capture_output=True, text=True)
    assert done.returncode == 1, done.stderr  # nothing measured
    (path,) = tmp_path.glob("cpu-*.json")
    meta, rows = results.load(path)
    assert rows == [] and meta["not_run"] == meta["planned"] and len(meta["planned"]) == 4 and not meta["complete"]


def test_a_failure_of_ours_fails_the_run_and_keeps_the_other_configurations(native, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", bench(tmp_path, "--sizes", "64x8x2,64x16x3", "--backends", "reference,ours", "--min-run-time", "0.01")[1:])
    forward = bench_bitcodes.Bitcodes.forward

    def fails_at_16_features(self, x, *args, **kwargs):
        if x.shape[-1] == 16:
            raise RuntimeError("planted")
        return forward(self, x, *args, **kwargs)

    monkeypatch.setattr(bench_bitcodes.Bitcodes, "forward", fails_at_16_features)
    assert bench_bitcodes.main() == 1
    (path,) = tmp_path.glob("cpu-*.json")
    meta, rows = results.load(path)
    assert len(meta["errors"]) == 2 and all("planted" in e for e in meta["errors"])  # eval and train
    assert {(r["features"], r["implementation"]) for r in rows} == {(8, "reference"), (8, "bitcodes_ext")}


def test_a_wrong_result_of_ours_is_reported_and_not_timed(native, tmp_path, monkeypatch):
    """Before timing, ours is checked against float64 at each configuration's size: a planted
    flipped bit at 16 features is caught there, and that implementation is never timed."""
    monkeypatch.setattr(sys, "argv", bench(tmp_path, "--sizes", "64x8x2,64x16x3", "--backends", "reference,ours", "--min-run-time", "0.01")[1:])
    bitcodes = bench_bitcodes.bitcodes_ext.functional.bitcodes

    def flips_a_bit_at_16_features(x, codebook, **kwargs):
        y, bits = bitcodes(x, codebook, **kwargs)
        if x.shape[-1] == 16:
            bits = bits.clone()
            bits.view(-1)[0] ^= 1
        return y, bits

    monkeypatch.setattr(bench_bitcodes.bitcodes_ext.functional, "bitcodes", flips_a_bit_at_16_features)
    assert bench_bitcodes.main() == 1
    (path,) = tmp_path.glob("cpu-*.json")
    meta, rows = results.load(path)
    assert len(meta["wrong"]) == 2 and all("bits differ from the float64 oracle" in w for w in meta["wrong"])
    assert not meta["complete"] and not meta["errors"]
    assert {(r["features"], r["implementation"]) for r in rows} == {(8, "reference"), (8, "bitcodes_ext"), (16, "reference")}


def test_results_files_are_validated(tmp_path):
    path = tmp_path / "not-results.json"
    path.write_text(json.dumps([1, 2]))
    with pytest.raises(ValueError, match="bench_bitcodes.py results file"):
        results.load(path)


def test_reuse_memory_runs_everything_under_the_allocator_tunables_and_says_so(native, tmp_path):
    done = subprocess.run(bench(tmp_path, "--sizes", "64x8x2", "--backends", "reference,ours", "--no-plot", "--reuse-memory"),
                          capture_output=True, text=True, env={k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"})
    assert done.returncode == 0, done.stderr
    (path,) = tmp_path.glob("cpu-*-reuse.json")
    meta, rows = results.load(path)
    assert meta["glibc_tunables"] == bench_bitcodes.REUSE_MEMORY_TUNABLES
    assert {r["implementation"] for r in rows} == {"reference", "bitcodes_ext"}
    assert "memory reused" in subprocess.run([sys.executable, str(ROOT / "benchmarks" / "report.py"), str(path)],
                                             capture_output=True, text=True, check=True).stdout
