"""The GPU checklist (tools/gpu_session.sh) proven without a GPU: its dry run passes and leaves
what the device returns (at most 8 files, 16 MiB each, 2 folders deep, plain names); a failing
step fails the run without stopping the later steps; the time budget skips what does not fit
and stops a step that overruns."""

import json
import os
import pathlib
import re
import subprocess
import sys
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "gpu_session.sh"
sys.path.insert(0, str(ROOT / "benchmarks"))
import harness  # noqa: E402
import report  # noqa: E402
import results  # noqa: E402


def run_session(tmp_path, *args, **env):
    out = tmp_path / "out"
    started = time.monotonic()
    done = subprocess.run(
        ["bash", str(SCRIPT), "--dry-run", *args],
        env={**os.environ, "OUT": str(out), "PYTHON": sys.executable, **env},
        capture_output=True, text=True, timeout=900,
    )
    summary = (out / "summary.txt").read_text()
    steps = dict(re.findall(r"^(setup|env|build|emulator|kernels|smoke-\w+|tests|vq|bench) +(.*)$", summary, re.M))
    return done, out, summary, steps, time.monotonic() - started


def assert_device_can_return(out):
    """The device tool's limits on what comes back from $OUT."""
    files = [p for p in out.rglob("*") if p.is_file()]
    assert 0 < len(files) <= 8, [p.name for p in files]
    for path in files:
        assert path.stat().st_size <= 16 << 20, path
        assert len(path.relative_to(out).parts) <= 3, path  # $OUT/a/b/file at most
        assert re.fullmatch(r"[A-Za-z0-9._-]+", path.name), path


def test_dry_run_passes_and_fits_what_the_device_returns(tmp_path):
    done, out, summary, steps, _ = run_session(tmp_path)
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-3000:]
    assert list(steps) == ["setup", "env", "build", "emulator", "kernels", "smoke-cores", "smoke-gemm", "smoke-mma",
                           "smoke-entropy", "tests", "vq", "bench"], summary
    assert all(status.startswith("passed in") for status in steps.values()), summary
    assert "result: passed, every step" in summary
    planned = int(re.search(r"^plan: the steps' maxima sum to (\d+)s \(at most 480s\)$", summary, re.M).group(1))
    assert planned <= 480, summary
    assert_device_can_return(out)
    # The reference came from the carried wheels, not from this machine's environment.
    assert re.search(r"bitcodes_pytorch +\S+/site/bitcodes_pytorch/", summary), summary
    log = (out / "session.log").read_text()
    assert re.search(r"\d+ passed", log) and not re.search(r"\d+ failed", log)
    # Each smoke ran tests of its own route (and mma's and the entropy's files) against the oracle.
    for route in ("cores", "gemm"):
        assert re.search(rf"test_eval_matches_oracle\[{route}-130-33-13", log) or re.search(r"smoke-" + route + r" +passed", log)

    (bench_file,) = out.glob("cpu-*-bfloat16-emulated.json")
    meta, rows = results.load(bench_file)
    assert meta["complete"] and meta["cuda_emulator"] and not meta["errors"] and not meta["not_run"] and not meta["wrong"]
    assert {"device", "torch", "date"} <= meta.keys()
    routes = [f"bitcodes_ext[{route}]" for route in harness.cuda_routes()]
    for mode, tokens, features, num_bits in meta["planned"]:
        measured = {r["implementation"] for r in rows if (r["mode"], r["tokens"], r["features"], r["num_bits"]) == (mode, tokens, features, num_bits)}
        compiled = {"reference+compile"} if (mode, tokens, features, num_bits) == ("eval", 256, 16, 4) else set()
        assert measured == {"reference", "bitcodes_ext", *routes} | compiled, (mode, tokens, features, num_bits)
    assert all(r["ms"] > 0 and r["fraction_of_bandwidth_floor"] > 0 for r in rows)
    assert bench_file.with_suffix(".csv").exists() and not bench_file.with_suffix(".png").exists()
    (vq_file,) = out.glob("vq-cpu-*.json")
    vq = json.loads(vq_file.read_text())
    assert vq["complete"] and not any("error" in r for r in vq["results"] if r["implementation"] == "bitcodes_ext")

    # What is done here with the device's results: the plot and the README table.
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "results.py"), str(bench_file)], check=True, capture_output=True)
    assert bench_file.with_suffix(".png").stat().st_size > 1000
    data = json.loads(bench_file.read_text())
    data["meta"]["device_type"] = "cuda"  # as on the device: the table adds the share of the copy
    gpu_file = tmp_path / "gpu.json"
    gpu_file.write_text(json.dumps(data))
    table = report.table(gpu_file)
    assert all(route in table for route in routes) and "% of copy" in table
    # torch.compile ran at one of the two sizes only: the other row shows "-" for it.
    assert re.search(r"\| eval \| 512 \| 32 \| 8 \| [\d.]+ \| - \|", table), table


def test_a_failing_step_fails_the_run_and_the_later_steps_still_run(tmp_path):
    planted = tmp_path / "test_planted.py"
    planted.write_text("def test_planted_failure():\n    assert 1 == 2\n")
    done, out, summary, steps, _ = run_session(tmp_path, "--steps", "tests,vq", GPU_SESSION_TESTS=str(planted))
    assert done.returncode == 1, summary
    assert steps["tests"].startswith("failed (exit 1)"), summary
    assert steps["vq"].startswith("passed"), summary
    assert "result: failed (tests)" in summary
    assert "test_planted_failure" in (out / "session.log").read_text()


def test_the_budget_stops_an_overrunning_step_and_skips_what_does_not_fit(tmp_path):
    planted = tmp_path / "test_hangs.py"
    planted.write_text("import time\n\ndef test_hangs():\n    time.sleep(3600)\n")
    budget = 120
    done, out, summary, steps, seconds = run_session(
        tmp_path, "--steps", "tests,bench,vq", GPU_SESSION_TESTS=str(planted), GPU_SESSION_BUDGET_S=str(budget)
    )
    assert done.returncode == 1, summary
    assert steps["tests"].startswith("failed: stopped at its"), summary
    assert steps["bench"].startswith("skipped:") and steps["vq"].startswith("skipped:"), summary
    assert seconds < budget + 5, f"the session took {seconds:.0f}s of a {budget}s budget"
    assert_device_can_return(out)


@pytest.mark.parametrize("bad", ["-", "1,2"])
def test_unknown_arguments_are_refused(tmp_path, bad):
    done = subprocess.run(["bash", str(SCRIPT), "--steps", bad], capture_output=True, text=True, env={**os.environ, "OUT": str(tmp_path)})
    assert done.returncode == 2 and "unknown step" in done.stderr


def test_a_benchmark_stopped_by_its_budget_is_partial(tmp_path):
    # A cold Inductor cache: the first configuration's torch.compile (which its budget counts,
    # though the stop rule's estimate does not) then outlasts the budget wherever the test runs;
    # with a warm cache the whole dry-run grid fits in seconds and nothing would be stopped.
    done, out, summary, steps, _ = run_session(tmp_path, "--steps", "bench", GPU_SESSION_BENCH_BUDGET_S="8",
                                               TORCHINDUCTOR_CACHE_DIR=str(tmp_path / "inductor-cache"))
    assert done.returncode == 2, summary
    assert steps["bench"].startswith("partial (exit 2)"), summary
    assert "result: partial (bench)" in summary
    (bench_file,) = out.glob("cpu-*-bfloat16-emulated.json")
    meta, rows = results.load(bench_file)
    assert rows and meta["not_run"] and not meta["complete"]
