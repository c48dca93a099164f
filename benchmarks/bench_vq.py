"""Nearest-code search: bitcodes_ext.vq against torch.cdist + argmin, scipy.cluster.vq.vq and
faiss-cpu (IndexFlatL2, k=1): median time and peak memory, each implementation in its own
process so that peak memory (RSS, or CUDA allocations on the GPU) belongs to it alone.
On CUDA only bitcodes_ext and cdist + argmin run, plus a size where N x K cannot fit.

    python benchmarks/bench_vq.py [--quick] [--device auto|cpu|cuda] [--vq-sizes NxKxD,...] [--threads 2]
        [--out benchmarks/results]

Rewrites <out>/vq-<device>-<date>.json after every size (atomically), so a run stopped midway
keeps the sizes it finished; exits 1 if bitcodes_ext failed at any size. After timing, each
implementation's codes for 2048 sampled observations are checked against the float64 argmin (a
code counts as wrong where its squared distance exceeds the nearest's by more than float32
rounding): a wrong one is an error, not a time. On CUDA the largest size comes first.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import results  # noqa: E402

SIZES = [(65536, 1024, 64), (65536, 8192, 256), (262144, 8192, 16)]
QUICK_SIZES = [(16384, 1024, 32)]
# The first one needs 512 GiB for cdist's N x K matrix.
GPU_SIZES = [(1 << 20, 1 << 17, 64)] + SIZES
CHECKED = 2048  # observations per size checked against the float64 argmin
IMPLEMENTATIONS = {"cpu": ("bitcodes_ext", "cdist+argmin", "scipy", "faiss"), "cuda": ("bitcodes_ext", "cdist+argmin")}

# Runs in a child: builds the data, warms up, times `repeats` calls, prints JSON.
CHILD = r"""
import json, resource, statistics, sys, time
import torch
impl, device, (n, k, d, threads, repeats, checked) = sys.argv[1], sys.argv[2], map(int, sys.argv[3:9])
torch.set_num_threads(threads)
g = torch.Generator().manual_seed(0)
x, c = torch.randn(n, d, generator=g).to(device), torch.randn(k, d, generator=g).to(device)
sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
if impl == "bitcodes_ext":
    import bitcodes_ext
    run = lambda: bitcodes_ext.vq(x, c, backend="native")
    codes_of = lambda out: out[0]
elif impl == "cdist+argmin":
    run = lambda: torch.cdist(x, c).min(1)
    codes_of = lambda out: out.indices
elif impl == "scipy":
    from scipy.cluster.vq import vq
    xn, cn = x.numpy(), c.numpy()
    run = lambda: vq(xn, cn)
    codes_of = lambda out: torch.from_numpy(out[0])
else:
    import faiss
    faiss.omp_set_num_threads(threads)
    index = faiss.IndexFlatL2(d)
    index.add(c.numpy())
    xn = x.numpy()
    run = lambda: index.search(xn, 1)
    codes_of = lambda out: torch.from_numpy(out[1][:, 0])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if device == "cuda":
    sync()
    torch.cuda.reset_peak_memory_stats()
    before_gpu = torch.cuda.memory_allocated()
run()
sync()
times = []
for _ in range(repeats):
    start = time.perf_counter()
    run()
    sync()
    times.append(time.perf_counter() - start)
if device == "cuda":
    peak = (torch.cuda.max_memory_allocated() - before_gpu) / 2**20
else:
    peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
# The codes of a sample of observations against the float64 argmin, after the timing (so that
# its memory is not counted): wrong where the chosen code is farther than float32 rounding allows.
sample = torch.randperm(n, generator=g)[:checked].to(device)
codes = codes_of(run()).to(device).long()[sample]
exact = torch.cdist(x[sample].double(), c.double()).square()
chosen, best = exact.gather(1, codes[:, None])[:, 0], exact.min(1).values
scale = x[sample].double().square().sum(1) + c.double().square().sum(1).max()
wrong = int(((chosen - best) > 2e-5 * scale).sum())
print(json.dumps(dict(ms=1e3 * statistics.median(times), peak_mb=peak, checked=len(sample), wrong=wrong)))
"""


def measure(impl, device, n, k, d, threads, repeats):
    result = subprocess.run(
        [sys.executable, "-c", CHILD, impl, device, str(n), str(k), str(d), str(threads), str(repeats), str(CHECKED)],
        capture_output=True, text=True,
    )
    if result.returncode != 0:
        return dict(error=result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "failed")
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    if measured["wrong"]:
        return dict(error=f"wrong: {measured['wrong']} of {measured['checked']} sampled codes are not the nearest (float64)")
    return measured


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="auto: the CPU, and CUDA when present")
    # Not --sizes: `make bench` passes its flags to bench_bitcodes.py and to this script alike.
    parser.add_argument("--vq-sizes", default=None, help="NxKxD,... (default: the grid of the device)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    args, _ = parser.parse_known_args()  # `make bench` passes the Bitcodes flags too
    if args.vq_sizes:
        try:
            args.vq_sizes = [tuple(int(v) for v in size.lower().split("x")) for size in args.vq_sizes.split(",")]
        except ValueError:
            parser.error(f"--vq-sizes must look like 65536x1024x64,262144x8192x16, got {args.vq_sizes!r}")
    devices = [args.device] if args.device != "auto" else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    return max(run_device(device, args) for device in devices)


def run_device(device, args):
    sizes = args.vq_sizes or (QUICK_SIZES if args.quick else GPU_SIZES if device == "cuda" else SIZES)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"vq-{device}-{time.strftime('%Y-%m-%d')}{'-quick' if args.quick else ''}.json")
    meta = dict(
        device=torch.cuda.get_device_name() if device == "cuda" else "cpu", torch=torch.__version__,
        threads=args.threads, date=time.strftime("%Y-%m-%d"), planned=[list(s) for s in sizes], complete=False,
    )
    rows = []
    print(f"{device}: {'N':>7} {'K':>6} {'D':>4} | {'implementation':14} {'ms':>10} {'peak MB':>9} {'vs cdist':>8}")
    for n, k, d in sizes:
        measured = {impl: measure(impl, device, n, k, d, args.threads, args.repeats) for impl in IMPLEMENTATIONS[device]}
        for impl, r in measured.items():
            row = dict(tokens=n, codes=k, features=d, implementation=impl, device=device, threads=args.threads, **r)
            if "ms" in r and "ms" in measured["cdist+argmin"]:
                row["speedup_vs_cdist"] = measured["cdist+argmin"]["ms"] / r["ms"]
            rows.append(row)
            if "error" in r:
                print(f"{n:7} {k:6} {d:4} | {impl:14} {'failed: ' + r['error']}")
            else:
                print(f"{n:7} {k:6} {d:4} | {impl:14} {r['ms']:10.1f} {r['peak_mb']:9.0f} {row.get('speedup_vs_cdist', float('nan')):8.2f}")
        print(flush=True)
        meta["complete"] = len(rows) == len(sizes) * len(IMPLEMENTATIONS[device])
        results.write_atomically(path, lambda f: json.dump(dict(meta, results=rows), f, indent=1))
    print(f"wrote {path}")
    # cdist + argmin is expected to fail where N x K cannot fit; ours never.
    return int(any("error" in row for row in rows if row["implementation"] == "bitcodes_ext"))


if __name__ == "__main__":
    sys.exit(main())
