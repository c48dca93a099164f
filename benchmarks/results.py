"""Rows of a benchmark run, and their table, JSON, CSV and plot."""

import csv
import json
import os
import statistics

BASELINES = (("reference", "vs ref"), ("reference+compile", "vs compile"), ("two-GEMM torch", "vs 2-GEMM"))


def row(mode, tokens, features, num_bits, name, rounds, effective_flops, roofline_ms, out_floor_ms, floor_bytes, bandwidth_gbs):
    """One implementation's result; `rounds` holds every implementation's per-round medians."""
    times = {other: statistics.median(values) for other, values in rounds.items()}
    ms = times[name]
    r = dict(mode=mode, tokens=tokens, features=features, num_bits=num_bits, implementation=name, ms=ms)
    for baseline, _ in BASELINES:
        r[f"speedup_vs_{baseline}"] = times[baseline] / ms if baseline in times else None
    # Each round's median, and the speedup within each round (both timed minutes apart at most):
    # how far the machine's drift moves the ratio.
    r["round_ms"] = rounds[name]
    reference = rounds.get("reference")
    r["speedup_vs_reference_by_round"] = [a / b for a, b in zip(reference, rounds[name])] if reference else None
    r.update(
        effective_gflops=effective_flops / (ms * 1e-3) / 1e9,
        roofline_ms=roofline_ms,
        fraction_of_roofline=roofline_ms / ms,
        output_alloc_floor_ms=out_floor_ms,
        # Bytes every implementation must move (x, y, bits; + z, g, x, dx in training) per second,
        # and the share of the copy bandwidth measured in the same run that this reaches.
        achieved_gbs=floor_bytes / (ms * 1e-3) / 1e9,
        fraction_of_bandwidth_floor=floor_bytes / (bandwidth_gbs * 1e9) / (ms * 1e-3),
    )
    return r


def _ratio(value, width):
    return f"{value:{width}.2f}" if value is not None else f"{'-':>{width}}"


def header_lines(meta):
    """The run's description and the column names of text_table."""
    header = f"{'mode':5} {'T':>6} {'D':>5} {'B':>4} | {'implementation':20} {'ms':>9}"
    header += "".join(f" {label:>10}" for _, label in BASELINES)
    header += f" {'GFLOP/s':>8} {'GB/s':>7} {'% bw':>6} {'roofline':>9} {'% roof':>7} {'out floor':>9}"
    return "\n".join([
        f"{meta['device']} ({meta['device_type']}), {meta['threads']} threads, torch {meta['torch']}, {meta['dtype']}, "
        f"THP_MEM_ALLOC_ENABLE={meta['thp_mem_alloc']}"
        + (f", GLIBC_TUNABLES={meta['glibc_tunables']}" if meta.get('glibc_tunables') else "")
        + (f", ours: output cache {meta['our_output_cache_mb']} MB" if meta.get("our_output_cache_mb") else ""),
        f"measured GEMM peak {meta['gemm_peak_gflops']:.1f} GFLOP/s, copy bandwidth {meta['copy_bandwidth_gbs']:.1f} GB/s",
        "",
        header,
        "-" * len(header),
    ])


def row_line(r):
    line = f"{r['mode']:5} {r['tokens']:6} {r['features']:5} {r['num_bits']:4} | {r['implementation']:20} {r['ms']:9.3f}"
    line += "".join(f" {_ratio(r[f'speedup_vs_{b}'], 10)}" for b, _ in BASELINES)
    line += f" {r['effective_gflops']:8.1f} {r['achieved_gbs']:7.1f} {100 * r['fraction_of_bandwidth_floor']:6.1f}"
    line += f" {r['roofline_ms']:9.3f} {100 * r['fraction_of_roofline']:7.1f} {r['output_alloc_floor_ms']:9.3f}"
    return line


def text_table(meta, rows):
    lines = [header_lines(meta)]
    previous = None
    for r in rows:
        config = (r["mode"], r["tokens"], r["features"], r["num_bits"])
        if previous is not None and config != previous:
            lines.append("")
        previous = config
        lines.append(row_line(r))
    return "\n".join(lines)


def write_atomically(path, write, mode="w"):
    """write(file) into a temporary file beside `path`, then renamed over it: a reader, or a run
    killed midway, sees the old file or the new one, never half of one."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, mode, **({"newline": ""} if mode == "w" else {})) as f:
            write(f)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save(meta, rows, stem, png=True):
    """Writes stem.json, stem.csv and (unless png=False) stem.png, each atomically; returns the paths."""
    os.makedirs(os.path.dirname(stem) or ".", exist_ok=True)
    write_atomically(stem + ".json", lambda f: json.dump(dict(meta=meta, results=rows), f, indent=1))
    write_atomically(stem + ".csv", lambda f: write_csv(rows, f))
    paths = [stem + ".json", stem + ".csv"]
    if png:
        plot(meta, rows, stem + ".png")
        paths.append(stem + ".png")
    return paths


def write_csv(rows, f):
    writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
    writer.writeheader()
    # Lists (the per-round values) as one field each.
    writer.writerows({k: ";".join(f"{x:.4g}" for x in v) if isinstance(v, list) else v for k, v in r.items()} for r in rows)


def plot(meta, rows, path):
    """Speedup over the reference, per configuration, one panel per mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = [m for m in ("eval", "train") if any(r["mode"] == m for r in rows)]
    names = [n for n in dict.fromkeys(r["implementation"] for r in rows) if n != "reference"]
    fig, axes = plt.subplots(1, len(modes), figsize=(6 * len(modes), 4), squeeze=False)
    for ax, mode in zip(axes[0], modes):
        configs = list(dict.fromkeys((r["tokens"], r["features"], r["num_bits"]) for r in rows if r["mode"] == mode))
        width = 0.8 / max(1, len(names))
        for k, name in enumerate(names):
            values = [
                next((r["speedup_vs_reference"] or 0 for r in rows if r["mode"] == mode and r["implementation"] == name
                      and (r["tokens"], r["features"], r["num_bits"]) == c), 0)
                for c in configs
            ]
            bars = ax.bar([i + k * width for i in range(len(configs))], values, width, label=name)
            ax.bar_label(bars, fmt="%.1f", fontsize=7)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_xticks([i + width * (len(names) - 1) / 2 for i in range(len(configs))])
        ax.set_xticklabels([f"T={t}\nD={d}, B={b}" for t, d, b in configs], fontsize=8)
        ax.set_ylabel("speedup over bitcodes-pytorch (eager)")
        ax.set_title(f"{mode} ({'forward' if mode == 'eval' else 'forward + backward'})")
        ax.legend(fontsize=8)
    fig.suptitle(f"{meta['device']} ({meta['device_type']}), {meta['threads']} threads, {meta['dtype']}, torch {meta['torch']}", fontsize=9)
    fig.tight_layout()
    write_atomically(path, lambda f: fig.savefig(f, format="png", dpi=110), mode="wb")
    plt.close(fig)


def load(path):
    """(meta, rows) of a results file, checked for the parts the table and the plot read."""
    with open(path) as f:
        data = json.load(f)
    if not isinstance(data, dict) or not isinstance(data.get("meta"), dict) or not isinstance(data.get("results"), list):
        raise ValueError(f"{path}: expected a bench_bitcodes.py results file ({{'meta': ..., 'results': [...]}})")
    return data["meta"], data["results"]


if __name__ == "__main__":
    # Draws the CSV and the plot of results files written without them (the GPU checklist's
    # benchmark runs with --no-plot, so that a plotting problem cannot fail the device call).
    import sys

    if len(sys.argv) < 2:
        sys.exit("usage: python benchmarks/results.py RESULTS.json [...]  (writes RESULTS.csv and RESULTS.png)")
    for name in sys.argv[1:]:
        meta, rows = load(name)
        for written in save(meta, rows, name[: -len(".json")] if name.endswith(".json") else name):
            print(f"wrote {written}")
