"""Runs one benchmark point of our CPU Bitcodes op in a loop, for a profiler to sample.

    perf record -e cpu-clock -F 4000 -o perf.data -- \
        .venv/bin/python tools/profile_point.py eval 16384 512 32 --seconds 10

Same data and module set-up as benchmarks/bench_bitcodes.py (float32, 2 threads); prints the
median time per call so the profile can be read against the benchmark.
"""

import argparse
import statistics
import time

import torch

from bitcodes_ext import Bitcodes


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["eval", "train"])
    parser.add_argument("tokens", type=int)
    parser.add_argument("features", type=int)
    parser.add_argument("num_bits", type=int)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    training = args.mode == "train"
    layer = Bitcodes(args.features, args.num_bits, 1.0).train(training)
    x = torch.randn(args.tokens, args.features, generator=torch.Generator().manual_seed(0))
    x.requires_grad_(training)
    g = torch.randn(args.tokens, args.features, generator=torch.Generator().manual_seed(1))

    def step():
        y = layer(x)[0]  # (y, bits)
        if training:
            y.backward(g)

    step()
    times, stop = [], time.monotonic() + args.seconds
    while time.monotonic() < stop:
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    print(f"{args.mode} {args.tokens}x{args.features}x{args.num_bits}: median {1e3 * statistics.median(times):.2f} ms "
          f"over {len(times)} calls")


if __name__ == "__main__":
    main()
