"""Bitcodes: bitcodes-pytorch (eager and torch.compile), the two-GEMM pure-torch rewrite
(bitcodes_ext.reference) and our fused kernels, side by side in one run.

    python benchmarks/bench_bitcodes.py [--quick] [--threads 2] [--device cpu] [--thp]

--thp turns on torch's THP_MEM_ALLOC_ENABLE (transparent huge pages for large CPU tensors)
for every implementation alike. On VMs where a page fault is expensive, allocating a fresh
64 MB output costs more than computing it; the "out floor" column shows that cost.

Prints a table and writes benchmarks/results/<device>-<date>.{json,md}.
"""

import argparse
import json
import os
import platform
import sys

# torch reads this once, at its first large allocation: set it before importing torch.
if "--thp" in sys.argv:
    os.environ["THP_MEM_ALLOC_ENABLE"] = "1"

import torch  # noqa: E402
from bitcodes_pytorch import Bitcodes as PackageBitcodes

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

import bitcodes_ext  # noqa: E402
from bitcodes_ext import Bitcodes  # noqa: E402

GRID = [(8192, 64, 8), (16384, 512, 32), (16384, 1024, 64)]
QUICK_GRID = [(8192, 64, 8), (4096, 256, 32)]


def implementations(features, num_bits, training, device, compile_reference):
    """name -> module; all share one codebook."""
    package = PackageBitcodes(features, num_bits, 1.0).to(device).train(training)
    impls = {"reference": package}
    if compile_reference:
        impls["reference+compile"] = torch.compile(package)
    for name, backend in (("two-GEMM torch", "torch"), ("bitcodes_ext", "native")):
        layer = Bitcodes(features, num_bits, 1.0, backend=backend).to(device).train(training)
        layer.load_state_dict(package.state_dict())
        impls[name] = layer
    return impls


def step_fn(module, x, training):
    if not training:

        def run():
            with torch.no_grad():
                return module(x)

        return run
    xg = x.detach().requires_grad_()

    def run():
        y, _ = module(xg)
        y.backward(torch.ones_like(y))

    return run


def work(tokens, features, num_bits, training, dtype_bytes=4):
    """(effective flops, floor flops, floor bytes) of one call.

    Effective flops count the reference's formulation as two skinny GEMMs (eval) plus the four
    of the backward (train): the GFLOP/s column. The floor is what any implementation must do:
    the logits GEMM (and in training u = g.W^T, dx = r.W, r^T x), and reading/writing each
    tensor once; the roofline is max(floor flops / sgemm peak, floor bytes / copy bandwidth).
    """
    T, D, B = tokens, features, num_bits
    effective = (12 if training else 4) * T * D * B
    floor_flops = (8 if training else 2) * T * D * B
    x = y = T * D * dtype_bytes
    bits, z = T * B * 8, T * B * 4
    floor_bytes = x + y + bits + ((z + 3 * x) if training else 0)  # + z, g, x again, dx
    return effective, floor_flops, floor_bytes


def bench_config(tokens, features, num_bits, training, device, args):
    x = torch.randn(1, tokens, features, device=device)
    impls = implementations(features, num_bits, training, device, not args.no_compile)
    fns = {name: step_fn(m, x, training) for name, m in impls.items()}
    return harness.interleaved_medians(fns, device, rounds=args.rounds, min_run_time=args.min_run_time)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="a small grid, for a smoke run")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile(reference)")
    parser.add_argument("--thp", action="store_true", help="huge pages for large CPU tensors (all implementations)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--min-run-time", type=float, default=0.5)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    args = parser.parse_args()

    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    grid = QUICK_GRID if args.quick else GRID
    info = bitcodes_ext.backend_info()
    if not info[f"{device.type}_kernels"]:
        sys.exit(f"no compiled {device.type} kernels to benchmark: {info['load_error']}")

    peak = harness.sgemm_peak_gflops(device)
    bandwidth = harness.copy_bandwidth_gbs(device)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    thp = "on" if os.environ.get("THP_MEM_ALLOC_ENABLE") == "1" else "off"
    print(f"device {device_name}, {args.threads} threads, torch {torch.__version__}, THP_MEM_ALLOC_ENABLE {thp}")
    print(f"measured sgemm peak {peak:.1f} GFLOP/s, copy bandwidth {bandwidth:.1f} GB/s\n")

    rows = []
    header = (
        f"{'mode':5} {'T':>6} {'D':>5} {'B':>3} | {'implementation':18} {'ms':>9} {'vs ref':>7} {'vs compile':>10} "
        f"{'GFLOP/s':>8} {'roofline ms':>11} {'% roofline':>10} {'out floor ms':>12}"
    )
    print(header)
    print("-" * len(header))
    for training in (False, True):
        mode = "train" if training else "eval"
        for tokens, features, num_bits in grid:
            times = bench_config(tokens, features, num_bits, training, device, args)
            effective, floor_flops, floor_bytes = work(tokens, features, num_bits, training)
            roofline = max(floor_flops / (peak * 1e9), floor_bytes / (bandwidth * 1e9)) * 1e3
            floor = harness.fresh_output_ms((tokens, features), device)
            for name, ms in times.items():
                row = dict(
                    mode=mode, tokens=tokens, features=features, num_bits=num_bits, implementation=name, ms=ms,
                    speedup_vs_reference=times["reference"] / ms,
                    speedup_vs_compiled_reference=times["reference+compile"] / ms if "reference+compile" in times else None,
                    effective_gflops=effective / (ms * 1e-3) / 1e9, roofline_ms=roofline,
                    fraction_of_roofline=roofline / ms, output_alloc_floor_ms=floor,
                )
                rows.append(row)
                vs_compile = row["speedup_vs_compiled_reference"]
                vs_compile = f"{vs_compile:10.2f}" if vs_compile else f"{'-':>10}"
                print(
                    f"{mode:5} {tokens:6} {features:5} {num_bits:3} | {name:18} {ms:9.3f} {row['speedup_vs_reference']:7.2f} "
                    f"{vs_compile} {row['effective_gflops']:8.1f} {roofline:11.3f} {100 * row['fraction_of_roofline']:10.1f} {floor:12.3f}"
                )
            print(f"{'':22}   at most {times['reference'] / roofline:.1f}x the reference on this machine (reference / roofline)\n")

    os.makedirs(args.out, exist_ok=True)
    suffix = ("-thp" if args.thp else "") + ("-quick" if args.quick else "")
    stem = os.path.join(args.out, f"{device.type}-{harness.now()}{suffix}")
    meta = dict(
        device=device_name, device_type=device.type, threads=args.threads, torch=torch.__version__,
        backend_info=info, sgemm_peak_gflops=peak, copy_bandwidth_gbs=bandwidth, date=harness.now(),
        thp_mem_alloc=os.environ.get("THP_MEM_ALLOC_ENABLE", "0"),
    )
    with open(stem + ".json", "w") as f:
        json.dump(dict(meta=meta, results=rows), f, indent=1)
    print(f"wrote {stem}.json")


if __name__ == "__main__":
    main()
