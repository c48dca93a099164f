"""The binary family's entropy term: one LFQ training step (forward + backward of the layer with
its entropy loss) of bitcodes_ext's LookupFreeQuantizer against vector-quantize-pytorch's LFQ,
and bitcodes_ext.binary_entropy alone. Median time and peak memory growth, each case in its own
process so that the peak (RSS, or CUDA allocations on the GPU) belongs to it alone.

    python benchmarks/bench_binary.py [--quick] [--device cpu|cuda] [--binary-sizes NxB,...]
        [--threads 2] [--repeats 5] [--out benchmarks/results]

The peer materialises N x 2^B probabilities several times over; where that cannot fit in this
machine's memory the row says so (with the estimate) instead of running it. Rewrites
<out>/binary-<device>-<date>.{json,csv} after every case (atomically) and draws the PNG at the
end; exits 1 if bitcodes_ext failed anywhere.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import results  # noqa: E402

SIZES = [(2048, 12), (2048, 16), (2048, 18), (16384, 12), (16384, 16), (16384, 18), (65536, 20)]
QUICK_SIZES = [(2048, 12), (16384, 18)]
IMPLEMENTATIONS = ("bitcodes_ext LFQ", "binary_entropy", "vector-quantize-pytorch LFQ")
PEER = IMPLEMENTATIONS[-1]
INV_TEMPERATURE = 100.0  # both libraries' default
# N x 2^B float32 tensors the peer keeps alive at its peak, from its measured 3.6 GB at
# (2048, 16) (2048 * 65536 * 4 B = 512 MiB each): its distances, logits, softmax, the clamped
# log and their gradients.
PEER_TENSORS = 7

CHILD = r"""
import json, resource, statistics, sys, time
import torch
impl, device, (n, b, threads, repeats) = sys.argv[1], sys.argv[2], map(int, sys.argv[3:7])
torch.set_num_threads(threads)
sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
if impl == "vector-quantize-pytorch LFQ":
    from vector_quantize_pytorch import LFQ
    make = lambda bits: LFQ(dim=bits, codebook_size=2**bits, entropy_loss_weight=0.1).to(device).train()
    call = lambda layer, z: layer(z.unsqueeze(0), inv_temperature=INV)
elif impl == "bitcodes_ext LFQ":
    from bitcodes_ext import LookupFreeQuantizer
    make = lambda bits: LookupFreeQuantizer(bits, entropy_weight=0.1, inv_temperature=INV).to(device).train()
    call = lambda layer, z: layer(z)
else:
    from bitcodes_ext import binary_entropy
    make = lambda bits: None
    call = lambda layer, z: (None, None, sum(binary_entropy(4 * INV * z)))
def step(layer, z):
    quantized, _, loss = call(layer, z)
    (loss if quantized is None else quantized.sum() * 0 + loss).backward()
g = torch.Generator().manual_seed(0)
small = torch.randn(64, 8, generator=g).to(device).requires_grad_()
step(make(8), small)  # libraries and thread pools loaded before the baseline
sync()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if device == "cuda":
    torch.cuda.reset_peak_memory_stats()
    before_gpu = torch.cuda.memory_allocated()
layer = make(b)
z = (torch.randn(n, b, generator=g) * 0.1).to(device).requires_grad_()
start = time.perf_counter()
step(layer, z)
sync()
first = time.perf_counter() - start
times = []
for _ in range(repeats if first < 5 else 1):  # one more call where a call takes seconds
    z.grad = None
    start = time.perf_counter()
    step(layer, z)
    sync()
    times.append(time.perf_counter() - start)
if device == "cuda":
    peak = (torch.cuda.max_memory_allocated() - before_gpu) / 2**20
else:
    peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
print(json.dumps(dict(ms=1e3 * statistics.median(times), peak_mb=peak, calls=len(times))))
""".replace("INV", repr(INV_TEMPERATURE))


def available_bytes(device):
    if device == "cuda":
        return torch.cuda.mem_get_info()[0]
    with open("/proc/meminfo") as f:
        info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f}
    return info["MemAvailable"]


def peer_bytes(n, b):
    return PEER_TENSORS * n * (1 << b) * 4


def measure(impl, device, n, b, threads, repeats):
    if impl == PEER:
        need, have = peer_bytes(n, b), available_bytes(device)
        if need > 0.8 * have:
            return dict(error=f"not run: needs ~{need / 2**30:.0f} GiB ({PEER_TENSORS} N x 2^B float32 tensors), "
                              f"{have / 2**30:.0f} GiB available")
    result = subprocess.run([sys.executable, "-c", CHILD, impl, device, str(n), str(b), str(threads), str(repeats)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines()
        return dict(error=lines[-1] if lines else f"exit {result.returncode} (killed?)")
    return json.loads(result.stdout.strip().splitlines()[-1])


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({(r["tokens"], r["bits"]) for r in rows})
    labels = [f"N={n}\nB={b}" for n, b in sizes]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    width = 0.8 / len(IMPLEMENTATIONS)
    for i, impl in enumerate(IMPLEMENTATIONS):
        by_size = {(r["tokens"], r["bits"]): r for r in rows if r["implementation"] == impl}
        for ax, key in zip(axes, ("ms", "peak_mb")):
            xs = [j + i * width for j, s in enumerate(sizes) if key in by_size.get(s, {})]
            ys = [by_size[s][key] for s in sizes if key in by_size.get(s, {})]
            ax.bar(xs, [max(y, 1e-2) for y in ys], width, label=impl)
    for ax, title in zip(axes, ("forward + backward, ms (log)", "peak memory growth, MiB (log)")):
        ax.set_yscale("log")
        ax.set_xticks([j + width * (len(IMPLEMENTATIONS) - 1) / 2 for j in range(len(sizes))], labels)
        ax.set_title(title)
    axes[0].legend(fontsize=8)
    fig.suptitle("LFQ entropy term (missing bars: the peer cannot run there)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    # Not --sizes: `make bench` passes its flags to every benchmark script.
    parser.add_argument("--binary-sizes", default=None, help="NxB,... (default: the grid)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    parser.add_argument("--no-plot", action="store_true")
    args, _ = parser.parse_known_args()
    sizes = QUICK_SIZES if args.quick else SIZES
    if args.binary_sizes:
        try:
            sizes = [tuple(int(v) for v in size.lower().split("x")) for size in args.binary_sizes.split(",")]
        except ValueError:
            parser.error(f"--binary-sizes must look like 2048x16,16384x18, got {args.binary_sizes!r}")
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, f"binary-{args.device}-{time.strftime('%Y-%m-%d')}{'-quick' if args.quick else ''}")
    meta = dict(device=torch.cuda.get_device_name() if args.device == "cuda" else harness.cpu_name(),
                torch=torch.__version__, threads=args.threads, date=time.strftime("%Y-%m-%d"),
                inv_temperature=INV_TEMPERATURE, planned=[list(s) for s in sizes], complete=False)
    rows = []
    print(f"{'N':>6} {'B':>3} | {'implementation':28} {'ms':>10} {'peak MiB':>9}")
    for n, b in sizes:
        for impl in IMPLEMENTATIONS:
            r = measure(impl, args.device, n, b, args.threads, args.repeats)
            rows.append(dict(tokens=n, bits=b, implementation=impl, device=args.device, threads=args.threads, **r))
            shown = f"{r['ms']:10.1f} {r['peak_mb']:9.0f}" if "ms" in r else r["error"]
            print(f"{n:6} {b:3} | {impl:28} {shown}", flush=True)
        meta["complete"] = len(rows) == len(sizes) * len(IMPLEMENTATIONS)
        results.write_atomically(stem + ".json", lambda f: json.dump(dict(meta, results=rows), f, indent=1))
        results.write_atomically(stem + ".csv", lambda f: results.write_csv(rows, f))
    if not args.no_plot:
        plot(rows, stem + ".png")
    print(f"wrote {stem}.json")
    return int(any("error" in r for r in rows if r["implementation"] != PEER))


if __name__ == "__main__":
    sys.exit(main())
