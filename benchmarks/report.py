"""Markdown table of a bench_bitcodes.py result file, for the README.

    python benchmarks/report.py benchmarks/results/cpu-<date>.json
"""

import json
import sys
from collections import defaultdict


def round_range(row):
    """Lowest and highest speedup over the reference within one round (files from before
    2026-11-23's last runs do not have them)."""
    by_round = row.get("speedup_vs_reference_by_round")
    if not by_round:
        return "-"
    low, high = min(by_round), max(by_round)
    return f"{low:.1f}" if len(by_round) == 1 else f"{low:.1f}–{high:.1f}"


def table(path):
    with open(path) as f:
        data = json.load(f)
    meta, groups = data["meta"], defaultdict(dict)
    for row in data["results"]:
        groups[(row["mode"], row["tokens"], row["features"], row["num_bits"])][row["implementation"]] = row
    lines = [
        f"{meta['device']} ({meta['device_type']}), {meta['threads']} threads, torch {meta['torch']}, {meta['dtype']}, "
        f"{meta['date']}; GEMM peak {meta['gemm_peak_gflops']:.0f} GFLOP/s, copy {meta['copy_bandwidth_gbs']:.1f} GB/s, "
        f"THP_MEM_ALLOC_ENABLE={meta['thp_mem_alloc']}. Median ms.",
        "",
        "| mode | T | D | B | reference | torch.compile(ref) | two-GEMM torch | bitcodes_ext | × reference | (each round) | × compiled | % of roofline |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (mode, T, D, B), impls in groups.items():
        ours = impls["bitcodes_ext"]
        compiled = impls.get("reference+compile")
        lines.append(
            f"| {mode} | {T} | {D} | {B} | {impls['reference']['ms']:.2f} | "
            f"{compiled['ms']:.2f} | " if compiled else f"| {mode} | {T} | {D} | {B} | {impls['reference']['ms']:.2f} | - | "
        )
        lines[-1] += (
            f"{impls['two-GEMM torch']['ms']:.2f} | **{ours['ms']:.2f}** | {ours['speedup_vs_reference']:.2f} | "
            f"{round_range(ours)} | "
            f"{ours['speedup_vs_reference+compile'] or float('nan'):.2f} | {100 * ours['fraction_of_roofline']:.0f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    for path in sys.argv[1:]:
        print(table(path))
        print()
