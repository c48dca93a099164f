"""Bitcodes: bitcodes-pytorch (eager and torch.compile), the two-GEMM pure-torch rewrite
(bitcodes_ext.reference) and our fused kernels, side by side in one run.

    python benchmarks/bench_bitcodes.py [--quick] [--device auto|cpu|cuda] [--dtype float32]
        [--sizes 8192x64x8,16384x512x32] [--backends reference,compile,two-gemm,ours,routes]
        [--routes cores] [--compile-at all|none|TxDxB,...] [--compile-modes eval,train] [--threads 2] [--thp] [--reuse-memory]
        [--time-budget SECONDS] [--no-plot] [--out benchmarks/results]

Prints each configuration's rows as soon as they are measured, then the whole table. After every
configuration it rewrites <out>/<device>-<date>.{json,csv} (atomically, so a run stopped at any
point leaves every configuration it finished), and at the end draws <out>/<device>-<date>.png
(not with --no-plot: `python benchmarks/results.py FILE.json` draws it later).

`ours` lets each op choose its CUDA route; `routes` (on by default on CUDA) times our kernels
once per route of csrc/cuda/route.h, each forced with BITCODES_CUDA_ROUTE (a route that does not
support a problem falls back to the op's own choice). --time-budget stops before a configuration
that would not finish in time; the results list the ones not run. --thp turns on torch's
THP_MEM_ALLOC_ENABLE (huge pages for large CPU tensors) for every implementation alike: on VMs
where a page fault is expensive, allocating a fresh 64 MB output costs more than computing it
("out floor ms" shows that cost). --reuse-memory runs the whole benchmark with glibc's allocator
told to keep freed memory (REUSE_MEMORY_TUNABLES, as jemalloc or tcmalloc would), so that
no implementation's fresh outputs pay the OS's page faults and zeroing: the kernels' own speed,
labelled as such in the results. Our CPU ops also reuse their own freed outputs (the output
cache of bitcodes_ext.memory; BITCODES_CPU_OUTPUT_CACHE_MB=0 turns it off), which the results
record as our_output_cache_mb. With BITCODES_CUDA_EMULATOR set (the GPU checklist's dry run),
our kernels run the CUDA sources on the CPU emulator: a check of the script, not a timing.
"""

import argparse
import importlib.util
import os
import sys
import time

# torch reads this once, at its first large allocation: set it before importing torch.
if "--thp" in sys.argv:
    os.environ["THP_MEM_ALLOC_ENABLE"] = "1"
# glibc's malloc without mmap for large blocks and without returning freed memory to the OS:
# a freed output's pages serve the next allocation, so no fault and no kernel zeroing (on this
# kind of VM a fresh 64 MB tensor costs ~20 ms of them, 4 KB pages, against ~2 ms to write it).
REUSE_MEMORY_TUNABLES = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736:glibc.malloc.top_pad=268435456"
# glibc reads its tunables when the process starts: run again with them set (before torch's
# import, which the first process need not pay).
if "--reuse-memory" in sys.argv and os.environ.get("GLIBC_TUNABLES") != REUSE_MEMORY_TUNABLES:
    os.environ["GLIBC_TUNABLES"] = REUSE_MEMORY_TUNABLES
    os.execv(sys.executable, [sys.executable] + sys.argv)

import torch  # noqa: E402
from bitcodes_pytorch import Bitcodes as PackageBitcodes  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))  # the oracle
import harness  # noqa: E402
import results  # noqa: E402

import bitcodes_ext  # noqa: E402
from bitcodes_ext import Bitcodes  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GRID = [(8192, 64, 8), (16384, 512, 32), (16384, 1024, 64)]
QUICK_GRID = [(4096, 64, 8), (4096, 256, 32)]
# The GPU targets of issue #3: 2^20 tokens, D in {256, 512, 1024}, B in {16, 64}.
GPU_GRID = [(1 << 20, features, num_bits) for features in (256, 512, 1024) for num_bits in (16, 64)]
QUICK_GPU_GRID = [(1 << 18, 256, 16), (1 << 18, 1024, 64)]
BACKENDS = {"reference": "reference", "compile": "reference+compile", "two-gemm": "two-GEMM torch", "ours": "bitcodes_ext"}
ROUTES = "routes"  # one implementation per CUDA route, named bitcodes_ext[<route>]
DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16, "float16": torch.float16}


def parse_sizes(text):
    try:
        return [tuple(int(v) for v in size.lower().split("x")) for size in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"sizes must look like 8192x64x8,16384x512x32, got {text!r}")


def parse_compile_at(text):
    return text if text in ("all", "none") else parse_sizes(text)


def parse_modes(text):
    modes = text.split(",")
    if not modes or any(m not in ("eval", "train") for m in modes):
        raise argparse.ArgumentTypeError(f"modes must be eval, train or eval,train, got {text!r}")
    return modes


def parse_backends(text):
    names = text.split(",")
    unknown = [n for n in names if n not in BACKENDS and n != ROUTES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown backends {unknown}; choose from {list(BACKENDS) + [ROUTES]}")
    return names


def parse_routes(text):
    known = harness.cuda_routes()
    names = text.split(",")
    unknown = [n for n in names if n not in known]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown routes {unknown}; csrc/cuda/route.h has {known}")
    return names


def work(tokens, features, num_bits, training, dtype_bytes):
    """(effective flops, floor flops, floor bytes) of one call.

    Effective flops count the two skinny GEMMs of the forward (and the backward's four in
    training): the GFLOP/s column. The floor is what any implementation must do: the logits
    GEMM (and in training u = g.W^T, dx = r.W, r^T x), and reading or writing each tensor
    once; the roofline is max(floor flops / GEMM peak, floor bytes / copy bandwidth).
    """
    T, D, B = tokens, features, num_bits
    effective = (12 if training else 4) * T * D * B
    floor_flops = (8 if training else 2) * T * D * B
    x = T * D * dtype_bytes
    floor_bytes = 2 * x + 8 * T * B + ((4 * T * B + 3 * x) if training else 0)  # x, y, bits (+ z, g, x, dx)
    return effective, floor_flops, floor_bytes


def make_step(backend, features, num_bits, training, device, dtype, x, route=None):
    """A closure running one forward (eval) or forward + backward (train) of one implementation;
    with `route`, our kernels forced onto that CUDA route."""
    package = PackageBitcodes(features, num_bits, 1.0).to(device).train(training)
    if backend in ("reference", "compile"):
        module = torch.compile(package) if backend == "compile" else package
        # The package keeps float32 weights; low precision runs it the way a user would, under
        # autocast, on the bf16/fp16 activations a low-precision model hands it.
        autocast = dtype in (torch.bfloat16, torch.float16)
        module.to(torch.float32 if autocast else dtype)
        inputs = x.to(dtype)
    else:
        module = Bitcodes(features, num_bits, 1.0, backend="torch" if backend == "two-gemm" else "native")
        module = module.to(device).train(training)
        module.load_state_dict(package.state_dict())
        module.to(dtype)
        inputs, autocast = x.to(dtype), False
    inputs = inputs.detach().requires_grad_(training)
    # The upstream gradient comes from the rest of the model: made once, outside the timed step.
    # Random, not ones, so that no implementation meets a special value. In the benchmark dtype,
    # which y has in every implementation (under autocast too), so no step pays a conversion.
    # Drawn on the device: 2^30 normals from the CPU generator take seconds.
    if training:
        generator = torch.Generator(device).manual_seed(1)
        grad_y = torch.randn(inputs.shape, generator=generator, device=device).to(dtype)

    def step():
        with torch.autocast(device.type, dtype=dtype, enabled=autocast), torch.set_grad_enabled(training):
            y, _ = module(inputs)
        if training:
            # What an optimizer's zero_grad() does: x.grad is set, not accumulated, every step.
            inputs.grad = None
            y.backward(grad_y.to(y.dtype))

    def routed_step():
        # The ops read BITCODES_CUDA_ROUTE at every call; unset (main() checks that it starts so),
        # they choose the route themselves.
        os.environ["BITCODES_CUDA_ROUTE"] = route
        try:
            step()
        finally:
            del os.environ["BITCODES_CUDA_ROUTE"]

    return step if route is None else routed_step


def check_against_float64(device, dtype, tokens, features, num_bits, route):
    """None if our eval forward (on `route`, or the ops' own choice) at this size gives the float64
    oracle's bits, except at certified near-ties, and y within the rounding bound of the sum of
    the chosen codes; else what is wrong. Checked before anything of ours is timed there."""
    from oracle import acc_dtype, assert_within, certify_bits, sum_bound

    generator = torch.Generator(device).manual_seed(2)
    x = torch.randn(tokens, features, generator=generator, device=device).to(dtype)
    codebook = torch.randn(2 * num_bits, features, generator=generator, device=device).to(dtype)
    if route is not None:
        os.environ["BITCODES_CUDA_ROUTE"] = route
    try:
        y, bits = bitcodes_ext.functional.bitcodes(x, codebook, training=False, backend="native")
    finally:
        os.environ.pop("BITCODES_CUDA_ROUTE", None)
    try:
        certify_bits(bits, x, codebook, accumulated_in=acc_dtype(dtype))
        expected = bitcodes_ext.reference.decode(bits, codebook.double())
        assert_within(y, expected, sum_bound(bits, codebook, acc_dtype(dtype)), dtype)
    except AssertionError as error:
        return str(error) or "outside the bounds"
    return None


def sizes_for(device, args):
    if args.sizes:
        return args.sizes
    if device.type == "cuda":
        return QUICK_GPU_GRID if args.quick else GPU_GRID
    return QUICK_GRID if args.quick else GRID


def implementations(device, args, emulated):
    """[(implementation name, backend, route)] in timing order."""
    backends = args.backends or list(BACKENDS) + ([ROUTES] if device.type == "cuda" or emulated else [])
    if ROUTES in backends and device.type != "cuda" and not emulated:
        sys.exit("--backends routes times the CUDA routes: it needs --device cuda (or BITCODES_CUDA_EMULATOR)")
    chosen = []
    for backend in backends:
        if backend == ROUTES:
            chosen += [(f"bitcodes_ext[{route}]", "ours", route) for route in args.routes]
        else:
            chosen.append((BACKENDS[backend], backend, None))
    return chosen


def compiles_at(args, training, size):
    if ("train" if training else "eval") not in args.compile_modes:
        return False
    return args.compile_at == "all" or (args.compile_at != "none" and size in args.compile_at)


class NoProgress:
    """Stands in for tqdm where it is missing or output is not a terminal."""

    def __init__(self, *args, **kwargs):
        pass

    def update(self, n=1):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def progress_bar(**kwargs):
    if not sys.stderr.isatty():
        return NoProgress()
    try:
        from tqdm import tqdm
    except ImportError:
        return NoProgress()
    return tqdm(leave=False, **kwargs)


def bench_device(device, args, impls, emulated, deadline, save):
    """Times every implementation at every configuration; calls save(meta, rows) after each one."""
    dtype = DTYPES[args.dtype]
    # The CPU kernels compute in float32 (float64 for float64); the GPU's peak is the dtype's own.
    peak_dtype = dtype if device.type == "cuda" or dtype == torch.float64 else torch.float32
    peak = harness.gemm_peak_gflops(device, peak_dtype)
    bandwidth = harness.copy_bandwidth_gbs(device)
    meta = harness.describe(device, args.threads, peak, bandwidth, args.dtype)
    plan = [(training, size) for training in (False, True) for size in sizes_for(device, args)]
    meta.update(
        backend_info=bitcodes_ext.backend_info(),
        cuda_emulator=emulated,
        implementations=[name for name, _, _ in impls],
        routes=args.routes,
        compile_at=args.compile_at if isinstance(args.compile_at, str) else [list(s) for s in args.compile_at],
        compile_modes=args.compile_modes,
        rounds=args.rounds,
        min_run_time=args.min_run_time,
        planned=[["train" if t else "eval", *size] for t, size in plan],
        not_run=[],
        skipped=[],
        errors=[],
        wrong=[],
        complete=False,
    )
    print(results.header_lines(meta), flush=True)
    rows, longest = [], 0.0
    total = len(plan) * len(impls) * args.rounds
    with progress_bar(total=total, desc=f"{device.type} {args.dtype}", unit="timing") as progress:
        for index, (training, (tokens, features, num_bits)) in enumerate(plan):
            mode, config = ("train" if training else "eval"), f"{tokens}x{features}x{num_bits}"
            # Stop before a configuration that would overrun: estimated by the longest one so far.
            if deadline is not None and time.monotonic() + 1.2 * longest > deadline:
                meta["not_run"] = meta["planned"][index:]
                print(f"time budget spent: {len(meta['not_run'])} configurations not run", flush=True)
                break
            started, compile_s = time.monotonic(), 0.0
            try:
                config_rows, compile_s = bench_config(device, args, impls, meta, training, tokens, features, num_bits, progress)
            except Exception as error:  # e.g. out of memory: keep going, and fail the run at the end
                meta["errors"].append(f"{mode} {config}: {type(error).__name__}: {error}")
                print(f"error: {meta['errors'][-1]}", flush=True)
                config_rows = []
            # A compilation happens once per size: the next configurations do not repeat it.
            longest = max(longest, time.monotonic() - started - compile_s)
            rows += config_rows
            for r in config_rows:
                print(results.row_line(r), flush=True)
            print(flush=True)
            save(meta, rows)
    meta["complete"] = not meta["not_run"] and not meta["errors"] and not meta["wrong"]
    return meta, rows


def bench_config(device, args, impls, meta, training, tokens, features, num_bits, progress):
    dtype = DTYPES[args.dtype]
    mode, config = ("train" if training else "eval"), f"{tokens}x{features}x{num_bits}"
    x = torch.randn(1, tokens, features, device=device)
    steps, compile_s = {}, 0.0
    for name, backend, route in impls:
        if backend == "compile" and not compiles_at(args, training, (tokens, features, num_bits)):
            continue
        if backend == "ours":
            wrong = check_against_float64(device, dtype, tokens, features, num_bits, route)
            if wrong is not None:  # a wrong result is reported, never timed
                meta["wrong"].append(f"{name} {mode} {config}: {wrong}")
                print(f"WRONG: {meta['wrong'][-1]}", flush=True)
                continue
        step = make_step(backend, features, num_bits, training, device, dtype, x, route)
        started = time.monotonic()
        try:
            step()  # the warm-up; for torch.compile, the compilation
            if backend == "compile":
                compile_s += time.monotonic() - started
        except Exception as error:
            line = f"{name} {mode} {config}: {type(error).__name__}: {error}"
            if backend in ("reference", "compile"):  # the package's limits (its eval runs in float32 only)
                meta["skipped"].append(line)
                print(f"skipped: {line}", flush=True)
                continue
            raise  # our own implementations must run everywhere
        steps[name] = step
    rounds = harness.interleaved_samples(steps, device, rounds=args.rounds, min_run_time=args.min_run_time, progress=progress)
    effective, floor_flops, floor_bytes = work(tokens, features, num_bits, training, torch.finfo(dtype).bits // 8)
    peak, bandwidth = meta["gemm_peak_gflops"], meta["copy_bandwidth_gbs"]
    roofline = max(floor_flops / (peak * 1e9), floor_bytes / (bandwidth * 1e9)) * 1e3
    out_floor = harness.fresh_output_ms((tokens, features), device, dtype)
    del steps, x
    if device.type == "cuda":
        torch.cuda.empty_cache()
    rows = [
        results.row(mode, tokens, features, num_bits, name, rounds, effective, roofline, out_floor, floor_bytes, bandwidth)
        for name in rounds
    ]
    return rows, compile_s


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="cpu, cuda, or auto: the CPU, and CUDA when present")
    parser.add_argument("--dtype", default="float32", choices=list(DTYPES))
    parser.add_argument("--sizes", type=parse_sizes, default=None, help="TxDxB,... (default: the issues' CPU and GPU grids)")
    parser.add_argument("--backends", type=parse_backends, default=None,
                        help=f"from {list(BACKENDS) + [ROUTES]} (default: all; routes only on CUDA)")
    parser.add_argument("--routes", type=parse_routes, default=None, help="the CUDA routes to time (default: all of route.h)")
    parser.add_argument("--compile-at", type=parse_compile_at, default="all",
                        help="all, none, or TxDxB,...: the configurations where torch.compile(reference) runs")
    parser.add_argument("--compile-modes", type=parse_modes, default=["eval", "train"],
                        help="eval, train or eval,train: the modes where it runs")
    parser.add_argument("--quick", action="store_true", help="a small grid and short timings: under a minute")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--thp", action="store_true", help="huge pages for large CPU tensors (all implementations)")
    parser.add_argument("--reuse-memory", action="store_true",
                        help="glibc keeps freed memory, so fresh outputs reuse pages (all implementations)")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--min-run-time", type=float, default=None)
    parser.add_argument("--time-budget", type=float, default=None, help="seconds: skip the configurations that would not fit")
    parser.add_argument("--no-plot", action="store_true", help="write the JSON and CSV only")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
    args = parser.parse_args()
    deadline = None if args.time_budget is None else time.monotonic() + args.time_budget
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.min_run_time = args.min_run_time or (0.1 if args.quick else 0.5)
    args.routes = args.routes or harness.cuda_routes()
    if os.environ.get("BITCODES_CUDA_ROUTE"):
        sys.exit("unset BITCODES_CUDA_ROUTE: the benchmark sets it for each implementation (--routes chooses them)")

    emulator = os.environ.get("BITCODES_CUDA_EMULATOR")
    if emulator:
        spec = importlib.util.spec_from_file_location("emulated", os.path.join(ROOT, "tools", "cuda_emulator", "emulated.py"))
        emulation = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(emulation)
        _registrations = emulation.install(emulator)  # noqa: F841  (they last as long as it does)

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) if args.device == "auto" else [args.device]
    info = bitcodes_ext.backend_info()
    for name in devices:
        if not info[f"{torch.device(name).type}_kernels"]:
            sys.exit(f"no compiled {name} kernels to benchmark: {info['load_error'] or 'not built for ' + name}")

    if isinstance(args.compile_at, list):  # a size off the grid would silently compile nothing
        stray = [s for s in args.compile_at if not any(s in sizes_for(torch.device(name), args) for name in devices)]
        if stray:
            sys.exit(f"--compile-at: {', '.join('x'.join(map(str, s)) for s in stray)} is not among the sizes benchmarked")
    # The emulated kernels stand in for the CPU ones; checked before anything is timed.
    emulated = {name: bool(emulator) and torch.device(name).type == "cpu" for name in devices}
    plans = {name: implementations(torch.device(name), args, emulated[name]) for name in devices}
    failed = partial = False
    for name in devices:
        device = torch.device(name)
        suffix = ("-thp" if args.thp else "") + ("-reuse" if args.reuse_memory else "") + ("-quick" if args.quick else "") + ("" if args.dtype == "float32" else f"-{args.dtype}")
        suffix += "-emulated" if emulated[name] else ""

        def stem(meta):
            return os.path.join(args.out, f"{device.type}-{meta['date']}{suffix}")

        meta, rows = bench_device(
            device, args, plans[name], emulated[name], deadline, lambda meta, rows: results.save(meta, rows, stem(meta), png=False)
        )
        print(results.text_table(meta, rows))
        for line in meta["skipped"] + [f"error: {e}" for e in meta["errors"]] + [f"WRONG: {w}" for w in meta["wrong"]]:
            print(line)
        for path in results.save(meta, rows, stem(meta), png=not args.no_plot and bool(rows)):
            print(f"wrote {path}")
        failed |= bool(meta["errors"]) or bool(meta["wrong"]) or not rows
        partial |= bool(meta["not_run"])
    # 2: everything measured ran, but the time budget left configurations out.
    return 1 if failed else 2 if partial else 0


if __name__ == "__main__":
    sys.exit(main())
