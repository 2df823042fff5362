#!/usr/bin/env python3
"""Plots expert streaming runs of `ncas bench --json`: decode tok/s relative to
the fully resident run, and the expert hit rate, against the expert budget.

    /usr/bin/python3 tools/plot_stream.py --resident docs/bench/pi-p-q4_0-2t.json \
        docs/bench/pi-p-stream-*.json -o docs/img/stream.png
"""
import argparse
import json
import os

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--resident", required=True, help="bench JSON of the same model with every expert resident")
    ap.add_argument("files", nargs="+", help="bench JSON of runs with --expert-budget")
    ap.add_argument("--expert-bytes", type=float, help="the model's expert bytes (default: the largest budget)")
    ap.add_argument("-o", "--out", required=True)
    a = ap.parse_args()
    base = json.load(open(a.resident))
    runs = [json.load(open(f)) for f in a.files]
    total = a.expert_bytes or max(r["expert_budget"] for r in runs)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for direct, marker, name in ((False, "o-", "page cache warm"), (True, "s--", "O_DIRECT (cold)")):
        sel = sorted((r for r in runs if r.get("direct_io", False) == direct), key=lambda r: r["expert_budget"])
        if not sel:
            continue
        xs = [100 * r["expert_budget"] / total for r in sel]
        ax1.plot(xs, [r["decode_tps"] / base["decode_tps"] for r in sel], marker, label=name)
        ax2.plot(xs, [100 * r["expert_hit_rate"] for r in sel], marker, label=name)
    ax1.axhline(1.0, color="grey", lw=0.8)
    ax1.axhline(0.5, color="tab:red", lw=0.8, ls=":", label="target at 25%: 0.5×")
    ax1.set_ylabel("decode tok/s ÷ resident")
    ax2.set_ylabel("expert hit rate (%)")
    for ax in (ax1, ax2):
        ax.set_xlabel("expert budget (% of expert bytes)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    ax1.set_title(f"Decode, resident {base['decode_tps']:.1f} tok/s")
    ax2.set_title("Hit rate")
    fig.tight_layout()
    os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
    fig.savefig(a.out, dpi=110)


if __name__ == "__main__":
    main()
