#!/usr/bin/env python3
"""Plots `ncas bench --json` results: decode GB/s against the measured read
bandwidth, and prefill GFLOP/s against the peak rates.

    /usr/bin/python3 tools/plot_bench.py docs/bench/*.json -o docs/img/bench.png

With --depth, plots `ncas bench --depth N,... --kv-type f16,q8_0,... --json F` results
(F.depth.json): decode tok/s against the context depth, one line per KV cache type,
and prefill tok/s of the N-token prompts beside it.

    /usr/bin/python3 tools/plot_bench.py --depth docs/bench/depth.json.depth.json -o docs/img/depth.png
"""
import argparse
import json
import os

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt


def label(r):
    name = os.path.basename(r["model"]).replace(".gguf", "").replace("-v32000", "")
    budget = f", experts {r['expert_budget'] / 2**30:.2f} GiB" if r.get("expert_budget") else ""
    return f"{name}\n{r['threads']} thr{budget}"


def plot_depth(files, out):
    rows = [r for f in files for r in json.load(open(f))]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.8))
    # One decode line per cache type and way of filling the cache (a prefill, or
    # --depth-fill random, which has no prefill figure); prefill from the prefilled rows.
    for kv in sorted({r["kv_type"] for r in rows}):
        for fill in ("prefill", "random"):
            mine = sorted((r for r in rows if r["kv_type"] == kv and r.get("depth_fill", "prefill") == fill),
                          key=lambda r: r["depth"])
            if not mine:
                continue
            tag = f"KV {kv}" + (" (random fill)" if fill == "random" else "")
            ax1.plot([r["depth"] for r in mine], [r["decode_tps"] for r in mine], marker="o" if fill == "prefill" else "s",
                     linestyle="-" if fill == "prefill" else "--", label=tag)
            long = [r for r in mine if r["depth"] > 0 and r["prefill_tps"] > 0]
            if long:
                ax2.plot([r["depth"] for r in long], [r["prefill_tps"] for r in long], marker="o", label=f"KV {kv}")
    ax1.set_xlabel("context depth (tokens)")
    ax1.set_ylabel("decode tok/s")
    ax1.set_title("Decode after N tokens of context")
    ax2.set_xlabel("prompt tokens")
    ax2.set_ylabel("prefill tok/s")
    ax2.set_title("Prefill of an N-token prompt")
    for ax in (ax1, ax2):
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        ax.set_ylim(bottom=0)
    fig.tight_layout()
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    fig.savefig(out, dpi=110)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("files", nargs="+")
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--depth", action="store_true", help="the files are `ncas bench --depth` results (.depth.json)")
    a = ap.parse_args()
    if a.depth:
        return plot_depth(a.files, a.out)
    runs = [json.load(open(f)) for f in a.files]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.8))
    xs = range(len(runs))
    ax1.bar([x - 0.27 for x in xs], [r["decode_gbs"] for r in runs], 0.27, label="decode: weight bytes read / s")
    ax1.bar([x for x in xs], [r["read_gbs_n"] for r in runs], 0.27, label="read measured at the start of the run", alpha=0.6)
    # The read the paired median implies: decode GB/s over the median chunk's share of the read around it.
    paired = [r["decode_gbs"] * 100 / r["decode_pct_paired"] if r.get("decode_pct_paired") else 0 for r in runs]
    ax1.bar([x + 0.27 for x in xs], paired, 0.27, label="read around the decode chunks (paired median)", alpha=0.6)
    ax1.set_ylabel("GB/s")
    ax1.set_title("Decode")
    ax2.bar([x - 0.27 for x in xs], [r["prefill_gflops"] for r in runs], 0.27, label="prefill: model GFLOP/s")
    ax2.bar([x for x in xs], [r["peak_fma_gflops"] for r in runs], 0.27, label="peak f32 FMA", alpha=0.6)
    # The integer kernels' own rate (Q8_0 / Q4_0 models; runs before 2026-12-03 mis-measured it, see docs/benchmarks.md).
    ax2.bar([x + 0.27 for x in xs], [r.get("peak_madd_gops") or 0 for r in runs], 0.27,
            label="peak 16-bit integer multiply-add (Gop/s)", alpha=0.6)
    ax2.set_ylabel("GFLOP/s, Gop/s")
    ax2.set_title("Prefill")
    for ax in (ax1, ax2):
        ax.set_xticks(list(xs))
        ax.set_xticklabels([label(r) for r in runs], fontsize=7, rotation=35, ha="right")
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
    fig.savefig(a.out, dpi=110)


if __name__ == "__main__":
    main()
