#!/usr/bin/python3
"""Train the NCAS-DiffMoE demo model on CPU (2 threads).

Start (in the background; resumes from tools/out/ckpt.pt when it exists; pass
the same arguments again when resuming):
  nohup setsid /usr/bin/python3 tools/train.py --time-budget 95 >> tools/out/train.log 2>&1 &
Smoke test (separate checkpoint, a few steps):
  /usr/bin/python3 tools/train.py --smoke

Needs tools/out/train.bin and valid.bin (uint16 ids, from tools/bpe.py encode).
Writes tools/out/ckpt.pt (every --ckpt-every seconds, atomically), the metrics
log tools/out/train_log.jsonl (one JSON object per logged step) and, when the
last step is done, tools/out/final.pt.

Loss = cross-entropy
     + bal_w * mean over layers of the Switch balance loss E·Σ f_e·P_e
     + mod_w * mean over MoD layers of BCE(router score, top-k target): per
       sequence the top `capacity`·T scores are the targets 1, the others 0, so
       the raw score learns to cross the threshold 0 for about `capacity` of the
       tokens; the causal threshold rule (r > 0 routes) is what the forward
       uses, in training as at inference, and σ(r) scales the routed update so
       the LM loss reaches the router too. The aux loss sees the router input
       detached, so it trains the router only. After every optimizer step the
       routers are re-centred (see recenter_routers) so that the skip rate
       stays near 1 − capacity.
Batches are a pure function of (seed, step), so a resumed run sees the same data.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model import Config, NCASDiffMoE  # noqa: E402


def get_batch(data, step, B, T, seed):
    rng = np.random.default_rng(seed * 1000003 + step)
    st = rng.integers(0, len(data) - T - 1, size=B)
    x = np.stack([data[s:s + T] for s in st]).astype(np.int64)
    y = np.stack([data[s + 1:s + T + 1] for s in st]).astype(np.int64)
    return torch.from_numpy(x), torch.from_numpy(y)


def progress(step, elapsed, a):
    """Fraction of the run done: by steps, or by training time when --time-budget
    is set (the machine is shared, so a fixed step count has no fixed duration)."""
    p = step / a.steps
    if a.time_budget > 0:
        p = max(p, elapsed / (a.time_budget * 60.0))
    return min(1.0, p)


def lr_at(step, elapsed, a):
    if step < a.warmup:
        return a.lr * (step + 1) / a.warmup
    p0 = a.warmup / a.steps
    t = (progress(step, elapsed, a) - p0) / max(1e-9, 1 - p0)
    return a.lr * (a.min_lr_frac + (1 - a.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def losses(model, x, y, a):
    logits, auxes = model(x)
    ce = F.cross_entropy(logits.view(-1, logits.shape[-1]), y.view(-1))
    bal = torch.stack([au["balance"] for au in auxes]).mean()
    mods, skips, recenter = [], [], []
    for l, au in enumerate(auxes):
        if "router_logits" not in au:
            continue
        xin = au["router_in"]                              # detached: aux loss trains the router only
        router = model.layers[l].router
        r = xin @ router
        T = r.shape[1]
        k = max(1, int(round(a.capacity * T)))
        thr = torch.topk(r.detach(), k, dim=1).values[:, -1:]
        target = (r.detach() >= thr).float()
        mods.append(F.binary_cross_entropy_with_logits(r, target))
        skips.append((r.detach() <= model.cfg.mod_threshold).float().mean().item())
        recenter.append((l, xin, r.detach()))
    mod = torch.stack(mods).mean() if mods else torch.zeros(())
    total = ce + a.bal_w * bal + a.mod_w * mod
    return total, ce, bal, mod, skips, recenter


@torch.no_grad()
def recenter_routers(model, recenter, a):
    """Hold the MoD skip rate at 1 - capacity: move each router along the batch
    mean m of its input so that the scores' (1 - capacity) quantile q lands on
    the threshold (r_t -> r_t - damp·q·(m·x_t)/|m|², whose batch mean moves by
    exactly damp·q). The LM gradient alone pushes every score up (σ(r) larger
    means more of the layer), and the common component of the residual stream
    drifts during training, so a gradient penalty on q oscillates; this
    projection step does not."""
    for l, xin, _ in recenter:
        router = model.layers[l].router
        flat = (xin @ router).flatten()             # scores with the router as just updated
        q = torch.kthvalue(flat, max(1, int(round((1 - a.capacity) * flat.numel())))).values \
            - model.cfg.mod_threshold
        m = xin.reshape(-1, xin.shape[-1]).mean(0)
        router.sub_(a.recenter_damp * q * m / m.dot(m).clamp_min(1e-12))


@torch.no_grad()
def evaluate(model, valid, a, n=16):
    model.eval()
    T = model.cfg.ctx
    tot, cnt = 0.0, 0
    stride = max(T, (len(valid) - T - 1) // n)
    for i in range(n):
        s = i * stride
        if s + T + 1 > len(valid):
            break
        x = torch.from_numpy(valid[s:s + T].astype(np.int64))[None]
        y = torch.from_numpy(valid[s + 1:s + T + 1].astype(np.int64))[None]
        logits, _ = model(x)
        tot += F.cross_entropy(logits.view(-1, logits.shape[-1]), y.view(-1), reduction="sum").item()
        cnt += T
    model.train()
    return tot / cnt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="tools/out")
    ap.add_argument("--out", default="tools/out")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=900)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--time-budget", type=float, default=0.0,
                    help="minutes of training time; the cosine runs over min(steps, this)")
    ap.add_argument("--min-lr-frac", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--wd", type=float, default=0.1)
    ap.add_argument("--bal-w", type=float, default=0.01)
    ap.add_argument("--mod-w", type=float, default=0.3)
    ap.add_argument("--router-lr-mult", type=float, default=0.3)
    ap.add_argument("--recenter-damp", type=float, default=1.0)
    ap.add_argument("--capacity", type=float, default=0.625, help="target share of tokens routed into a MoD layer")
    ap.add_argument("--ckpt-every", type=float, default=180.0, help="seconds")
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--log-every", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=1,
                    help="1 is much faster than 2 on a 2-core machine that others are using too")
    ap.add_argument("--smoke", action="store_true", help="few steps, tools/out/smoke/ checkpoint")
    a = ap.parse_args()
    if a.smoke:
        a.out = os.path.join(a.out, "smoke")
        a.steps, a.warmup, a.eval_every, a.ckpt_every, a.log_every = 12, 4, 6, 20.0, 2
        a.time_budget = 0.0
    os.makedirs(a.out, exist_ok=True)
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    train = np.memmap(os.path.join(a.data, "train.bin"), dtype=np.uint16, mode="r")
    valid = np.memmap(os.path.join(a.data, "valid.bin"), dtype=np.uint16, mode="r")
    ckpt_path = os.path.join(a.out, "ckpt.pt")

    cfg = Config()
    step, elapsed, tokens = 0, 0.0, 0
    state = None
    if os.path.exists(ckpt_path):
        state = torch.load(ckpt_path, map_location="cpu")
        cfg = Config(**state["config"])
    model = NCASDiffMoE(cfg)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    nodecay = [p for n, p in model.named_parameters() if p.dim() < 2 and not n.endswith("router")]
    routers = [p for n, p in model.named_parameters() if n.endswith("router")]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.wd, "lr_mult": 1.0},
                             {"params": nodecay, "weight_decay": 0.0, "lr_mult": 1.0},
                             {"params": routers, "weight_decay": 0.0, "lr_mult": a.router_lr_mult}],
                            lr=a.lr, betas=(0.9, 0.95), eps=1e-8)
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step, elapsed, tokens = state["step"], state["elapsed"], state["tokens"]
        print(f"resumed from {ckpt_path} at step {step}, {tokens} tokens, {elapsed:.0f}s", flush=True)
    else:
        tot, act = model.param_counts()
        print(f"new model {cfg.to_dict()} params total {tot} active {act}", flush=True)

    def save(final=False):
        st = {"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
              "elapsed": elapsed, "tokens": tokens, "config": cfg.to_dict(),
              "args": vars(a), "done": final}
        torch.save(st, ckpt_path + ".tmp")
        os.replace(ckpt_path + ".tmp", ckpt_path)
        if final:
            torch.save({"model": model.state_dict(), "config": cfg.to_dict(), "step": step,
                        "elapsed": elapsed, "tokens": tokens, "args": vars(a)},
                       os.path.join(a.out, "final.pt"))

    logf = open(os.path.join(a.out, "train_log.jsonl"), "a")
    last_save = time.time()
    t_log, tok_log = time.time(), 0
    model.train()
    while step < a.steps and progress(step, elapsed, a) < 1.0:
        t0 = time.time()
        lr = lr_at(step, elapsed, a)
        for g in opt.param_groups:
            g["lr"] = lr * g.get("lr_mult", 1.0)
        x, y = get_batch(train, step, a.batch, cfg.ctx, a.seed)
        total, ce, bal, mod, skips, recenter = losses(model, x, y, a)
        opt.zero_grad(set_to_none=True)
        total.backward()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0).item()
        opt.step()
        recenter_routers(model, recenter, a)
        step += 1
        tokens += x.numel()
        tok_log += x.numel()
        elapsed += time.time() - t0
        rec = None
        if step % a.log_every == 0 or step == a.steps:
            tps = tok_log / max(1e-9, time.time() - t_log)
            t_log, tok_log = time.time(), 0
            rec = {"step": step, "tokens": tokens, "elapsed": round(elapsed, 1), "lr": lr,
                   "loss": round(total.item(), 4), "ce": round(ce.item(), 4),
                   "bal": round(bal.item(), 4), "mod_bce": round(mod.item(), 4),
                   "skip": [round(s, 3) for s in skips], "gnorm": round(gn, 3), "tok_s": round(tps)}
        if step % a.eval_every == 0 or step == a.steps:
            rec = rec or {"step": step, "tokens": tokens, "elapsed": round(elapsed, 1)}
            rec["val_ce"] = round(evaluate(model, valid, a), 4)
        if rec:
            logf.write(json.dumps(rec) + "\n")
            logf.flush()
            pr = progress(step, elapsed, a)
            eta = elapsed * (1 - pr) / max(1e-9, pr)
            print(" ".join(f"{k}={v}" for k, v in rec.items()) + f" eta={eta / 60:.1f}min", flush=True)
        if time.time() - last_save > a.ckpt_every:
            save()
            last_save = time.time()
    save(final=True)
    print(f"done: {step} steps, {tokens} tokens, {elapsed / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()
