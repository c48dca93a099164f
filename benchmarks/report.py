"""Markdown table of a bench_bitcodes.py result file, for the README.

    python benchmarks/report.py benchmarks/results/cpu-<date>.json

Implementations a run did not time show as "-" (the GPU checklist compiles bitcodes-pytorch at a
few points only); runs with CUDA routes get a column per route, and GPU runs one for the share of
the copy bandwidth (issue #11's targets are stated that way).
"""

import json
import sys
from collections import defaultdict

# (implementation in the results files, column title), in table order; bitcodes_ext[<route>]
# columns go before ours. "reference" in the files is the package bitcodes-pytorch, and
# "two-GEMM torch" our oracle, bitcodes_ext.reference.
BASELINES = (("reference", "bitcodes-pytorch"), ("reference+compile", "torch.compile(bitcodes-pytorch)"),
             ("two-GEMM torch", "oracle (two GEMMs)"))
OURS = "bitcodes_ext"


def round_range(row):
    """Lowest and highest speedup over bitcodes-pytorch within one round (files from before
    2026-11-23's last runs do not have them)."""
    by_round = row.get("speedup_vs_reference_by_round")
    if not by_round:
        return "-"
    low, high = min(by_round), max(by_round)
    return f"{low:.1f}" if len(by_round) == 1 else f"{low:.1f}–{high:.1f}"


def _ms(row):
    return f"{row['ms']:.2f}" if row else "-"


def _ratio(value):
    return f"{value:.2f}" if value is not None else "-"


def table(path):
    with open(path) as f:
        data = json.load(f)
    meta, groups = data["meta"], defaultdict(dict)
    for row in data["results"]:
        groups[(row["mode"], row["tokens"], row["features"], row["num_bits"])][row["implementation"]] = row
    names = dict.fromkeys(row["implementation"] for row in data["results"])
    routes = [name for name in names if name.startswith(OURS + "[")]
    gpu = meta["device_type"] == "cuda"
    lines = [
        f"{meta['device']} ({meta['device_type']}), {meta['threads']} threads, torch {meta['torch']}, {meta['dtype']}, "
        f"{meta['date']}; GEMM peak {meta['gemm_peak_gflops']:.0f} GFLOP/s, copy {meta['copy_bandwidth_gbs']:.1f} GB/s, "
        f"THP_MEM_ALLOC_ENABLE={meta['thp_mem_alloc']}"
        + (" and memory reused (GLIBC_TUNABLES, --reuse-memory)" if meta.get("glibc_tunables") else "")
        + (f"; ours reuses its own freed outputs (output cache of {meta['our_output_cache_mb']} MB)"
           + ("" if meta.get("glibc_tunables") else ", the others do not") if meta.get("our_output_cache_mb") else "")
        + ". Median ms."
    ]
    if meta.get("not_run") or meta.get("errors"):
        lines[0] += f" Partial: {len(meta.get('not_run', []))} configurations not run, {len(meta.get('errors', []))} failed."
    titles = [title for _, title in BASELINES] + routes + [OURS, "× bitcodes-pytorch", "(each round)", "× compiled", "% of roofline"]
    titles += ["% of copy"] if gpu else []
    lines += ["", "| mode | T | D | B | " + " | ".join(titles) + " |", "|---|" + "---:|" * (3 + len(titles))]
    for (mode, T, D, B), impls in groups.items():
        ours = impls.get(OURS)
        cells = [_ms(impls.get(name)) for name, _ in BASELINES] + [_ms(impls.get(name)) for name in routes]
        if ours is None:
            cells += ["-"] * (5 + gpu)
        else:
            cells += [
                f"**{ours['ms']:.2f}**", _ratio(ours["speedup_vs_reference"]), round_range(ours),
                _ratio(ours["speedup_vs_reference+compile"]), f"{100 * ours['fraction_of_roofline']:.0f}",
            ]
            cells += [f"{100 * ours['fraction_of_bandwidth_floor']:.0f}"] if gpu else []
        lines.append(f"| {mode} | {T} | {D} | {B} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    for path in sys.argv[1:]:
        print(table(path))
        print()
