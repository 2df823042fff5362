#!/usr/bin/python3
"""Plot the demo model's training curve from tools/out/train_log.jsonl.

  /usr/bin/python3 tools/plot_loss.py [--log tools/out/train_log.jsonl] [--out docs/img/train_loss.png]
"""
import argparse
import json
import os

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--log", default="tools/out/train_log.jsonl")
    ap.add_argument("--out", default="docs/img/train_loss.png")
    ap.add_argument("--mod-layers", default="1,3,5", help="layer numbers of the MoD routers, for the legend")
    a = ap.parse_args()
    recs = [json.loads(l) for l in open(a.log) if l.strip()]
    # a resumed run may repeat steps after its last checkpoint: keep the last record per step
    by = {}
    for r in recs:
        by.setdefault(r["step"], {}).update(r)
    recs = [by[s] for s in sorted(by)]
    tr = [(r["tokens"] / 1e6, r["ce"]) for r in recs if "ce" in r]
    va = [(r["tokens"] / 1e6, r["val_ce"]) for r in recs if "val_ce" in r]
    sk = [(r["tokens"] / 1e6, r["skip"]) for r in recs if "skip" in r]
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    ax[0].plot(*zip(*tr), lw=0.8, label="train cross-entropy (batch)")
    if va:
        ax[0].plot(*zip(*va), "o-", label="validation cross-entropy")
    ax[0].set_xlabel("tokens seen (millions)")
    ax[0].set_ylabel("nats / token")
    ax[0].set_ylim(bottom=max(0.0, min(y for _, y in tr) - 0.5), top=min(8.5, max(y for _, y in tr) + 0.2))
    ax[0].grid(alpha=0.3)
    ax[0].legend()
    ax[0].set_title("NCAS-DiffMoE demo: loss")
    if sk:
        n = len(sk[0][1])
        names = a.mod_layers.split(",")
        for i in range(n):
            nm = names[i] if i < len(names) else f"#{i + 1}"
            ax[1].plot([t for t, _ in sk], [s[i] for _, s in sk], lw=0.8, label=f"layer {nm}")
        ax[1].set_xlabel("tokens seen (millions)")
        ax[1].set_ylabel("share of tokens skipped (training batch)")
        ax[1].set_ylim(0, 1)
        ax[1].grid(alpha=0.3)
        ax[1].legend()
        ax[1].set_title("MoD skip rate during training")
    fig.tight_layout()
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    fig.savefig(a.out, dpi=90)
    print("wrote", a.out)


if __name__ == "__main__":
    main()
