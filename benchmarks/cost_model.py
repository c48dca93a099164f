"""Prints the CUDA cost model's predictions (csrc/cuda/cost_model.h, through bitcodes_ext.info)
at the #3 grid of issue 11, per route and op, next to the bandwidth floor: the table in
benchmarks/NOTES.md ("CUDA"). Nothing here is measured; the GPU benchmark tests these numbers.

    python benchmarks/cost_model.py [--dtype bfloat16] [--tokens 1048576]
"""

import argparse

import torch

from bitcodes_ext import info

HBM = 3.0e12  # bytes/s, as cost_model.h assumes


def floors(tokens, bits, features, dtype):
    """Eval: x + y + int64 bits; train: the forward's x, y, bits, z and the backward's g, x, z, dx."""
    e = torch.empty((), dtype=dtype).element_size()
    eval_bytes = tokens * (2 * e * features + 8 * bits)
    train_bytes = eval_bytes + tokens * (4 * bits + 3 * e * features + 4 * bits)
    return 1e3 * eval_bytes / HBM, 1e3 * train_bytes / HBM


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32", "float64"])
    parser.add_argument("--tokens", type=int, default=1 << 20)
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    routes = info.cuda_routes()
    ms = lambda route, op, bits, features, **kw: info.predicted_cuda_ms(route, op, dtype, args.tokens, bits, features, **kw)

    print(f"T = {args.tokens}, {args.dtype}; predicted ms on an H100 (cost_model.h); floor at {HBM / 1e12:.0f} TB/s\n")
    head = ["D", "B", "eval floor"] + [f"eval {r}" for r in routes] + ["eval, bool bits (gemm)", "train floor"]
    head += [f"train {r}" for r in routes] + ["chosen"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for features in (256, 512, 1024):
        for bits in (16, 64):
            eval_floor, train_floor = floors(args.tokens, bits, features, dtype)
            row = [str(features), str(bits), f"{eval_floor:.2f}"]
            row += [f"{ms(r, 'forward', bits, features):.2f}" for r in routes]
            row += [f"{ms('gemm', 'forward', bits, features, bits_dtype=torch.bool):.2f}", f"{train_floor:.2f}"]
            row += [f"{ms(r, 'forward', bits, features, training=True) + ms(r, 'backward', bits, features):.2f}" for r in routes]
            row += [info.cuda_route("forward", dtype, args.tokens, bits, features)]
            print("| " + " | ".join(row) + " |")

    print("\nPer op (ms):\n")
    ops = [("forward", False), ("forward", True), ("backward", True), ("decode", False), ("decode_backward", False)]
    head = ["D", "B", "route"] + [op + (" (train)" if training and op == "forward" else "") for op, training in ops]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for features in (256, 512, 1024):
        for bits in (16, 64):
            for route in routes:
                row = [str(features), str(bits), route]
                row += [f"{ms(route, op, bits, features, training=training):.2f}" for op, training in ops]
                print("| " + " | ".join(row) + " |")

    print("\nvq (ms):\n")
    print("| N, K, D | dtype | " + " | ".join(routes) + " | chosen |")
    print("|---|---|" + "---|" * (len(routes) + 1))
    for n, k, d in ((1 << 20, 1 << 17, 64), (1 << 20, 1024, 64), (1 << 16, 8192, 256)):
        for name in ("bfloat16", "float32"):
            vq_dtype = getattr(torch, name)
            row = [f"{n}, {k}, {d}", name]
            row += [f"{info.predicted_cuda_ms(r, 'vq', vq_dtype, n, k, d):.1f}" for r in routes]
            row += [info.cuda_route("vq", vq_dtype, n, k, d)]
            print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
