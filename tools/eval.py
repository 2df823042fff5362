#!/usr/bin/python3
"""Evaluate the trained demo model (PyTorch) and write the data the C++ engine is
checked against.

  /usr/bin/python3 tools/eval.py [--ckpt tools/out/final.pt | --gguf models/demo-f32.gguf]
        [--write]        also write models/heldout.txt, models/heldout.ids,
                         tests/data/demo_greedy.json, models/demo_stats.json
        [--golden PATH]  write this model's greedy golden data to PATH, e.g.
                         --gguf models/demo-q8_0.gguf --golden tests/data/demo_greedy_q8_0.json

Held-out perplexity protocol (the C++ figure must use the same one):
  ids = tokenizer(models/heldout.txt) with no BOS added (models/heldout.ids holds
  them, whitespace-separated); cut into consecutive windows of `ctx` (256)
  tokens, the last one shorter; each window is run from position 0 with empty
  caches; every token of a window but its first is predicted from the ones
  before it; PPL = exp(mean negative log-likelihood over all predicted tokens).

Greedy golden data: prompt_ids = [<|endoftext|>] + tokenizer(prompt) (BOS
prepended), then 32 greedy tokens (argmax, lower id on ties), no stop at EOS.

Also checks that the full-sequence forward equals a token-by-token run that
follows docs/spec.md §1 literally (per-layer K/V caches holding only the tokens
routed into that layer), and measures MoD skip rate and expert usage per layer
on the held-out windows (expert usage counts only tokens that run the layer).
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

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from model import Config, NCASDiffMoE, rmsnorm, gelu_tanh, rope_tables  # noqa: E402
from bpe import Tokenizer, EOT  # noqa: E402

PROMPTS = ["It is a truth universally acknowledged,",
           "In the beginning God created",
           "The Lord is my shepherd; I shall not want. He"]


def load_ckpt(path):
    st = torch.load(path, map_location="cpu")
    cfg = Config(**st["config"])
    m = NCASDiffMoE(cfg)
    m.load_state_dict(st["model"])
    return m.eval(), st


def load_gguf(path):
    """Model with weights read back (dequantised) from a GGUF file written by export.py."""
    from gguf import GGUFFile
    f = GGUFFile(path)
    md = f.metadata
    k = "ncas-diffmoe."
    L = md[k + "block_count"]
    mods = [l for l in range(L) if f"blk.{l}.mod_router.weight" in f.tensors]
    cfg = Config(vocab=md[k + "vocab_size"], dim=md[k + "embedding_length"], layers=L,
                 heads=md[k + "attention.head_count"], kv_heads=md[k + "attention.head_count_kv"],
                 half_dim=md[k + "attention.key_length"], experts=md[k + "expert_count"],
                 top_k=md[k + "expert_used_count"], ffn=md[k + "feed_forward_length"],
                 ctx=md[k + "context_length"], rope_theta=md[k + "rope.freq_base"],
                 eps=md[k + "attention.layer_norm_rms_epsilon"], mod_layers=mods,
                 mod_threshold=md[k + "mod.threshold"], mod_scale=md[k + "mod.scale"])
    m = NCASDiffMoE(cfg)
    g = lambda n: torch.from_numpy(np.ascontiguousarray(f.tensor_f64(n), dtype=np.float32))  # noqa: E731
    sd = {"tok_embd": g("token_embd.weight"), "out_norm": g("output_norm.weight")}
    names = {"attn_norm": "attn_norm", "wq": "attn_q", "wk": "attn_k", "wv": "attn_v", "wo": "attn_output",
             "lambda_q1": "attn_lambda_q1", "lambda_k1": "attn_lambda_k1", "lambda_q2": "attn_lambda_q2",
             "lambda_k2": "attn_lambda_k2", "sub_norm": "attn_sub_norm", "lambda_exp": "attn_lambda_exp",
             "ffn_norm": "ffn_norm", "gate": "ffn_gate_inp", "up": "ffn_up_exps", "down": "ffn_down_exps"}
    for l in range(L):
        for a, b in names.items():
            sd[f"layers.{l}.{a}"] = g(f"blk.{l}.{b}.weight")
        if l in mods:
            sd[f"layers.{l}.router"] = g(f"blk.{l}.mod_router.weight")
    m.load_state_dict(sd)
    return m.eval(), {"step": None}


# ------------------------------------------------------- docs/spec.md §1, literally
@torch.no_grad()
def reference_logits(model, ids, dtype=torch.float64):
    """Token-by-token inference exactly as docs/spec.md §1 writes it (float64)."""
    cfg = model.cfg
    D, H, Hkv, d, E, K = cfg.dim, cfg.heads, cfg.kv_heads, cfg.half_dim, cfg.experts, cfg.top_k
    P = {n: p.detach().to(dtype) for n, p in model.named_parameters()}
    cos, sin = rope_tables(cfg, len(ids))
    cos, sin = cos.to(dtype), sin.to(dtype)
    # rope tables in float64 directly
    i = torch.arange(d // 2, dtype=torch.float64)
    inv = cfg.rope_theta ** (-2.0 * i / d)

    def rope(vec, p):  # vec (n, d)
        ang = p * inv
        c, s = torch.cos(ang), torch.sin(ang)
        e, o = vec[:, 0::2], vec[:, 1::2]
        return torch.stack((e * c - o * s, e * s + o * c), -1).flatten(-2)

    def rms(v, w, eps):
        return v / torch.sqrt((v * v).mean() + eps) * w

    def gate(gw, xn):
        p = torch.softmax(gw @ xn, 0)
        order = sorted(range(E), key=lambda e: (-p[e].item(), e))[:K]  # ties: lower index
        w = p[order]
        return order, w / w.sum()

    caches = [[] for _ in range(cfg.layers)]  # rows (k (2Hkv,d), v (Hkv,2d))
    out, skipped = [], []
    for pos, t in enumerate(ids):
        x = P["tok_embd"][t].clone()
        sk = []
        for l in range(cfg.layers):
            pre = f"layers.{l}."
            s = 1.0
            if l in cfg.mod_layers:
                r = torch.dot(P[pre + "router"], x)
                if r.item() <= cfg.mod_threshold:
                    sk.append(l)
                    continue
                s = torch.sigmoid(r) if cfg.mod_scale == "sigmoid" else (r if cfg.mod_scale == "raw" else 1.0)
            xn = rms(x, P[pre + "attn_norm"], cfg.eps)
            q = rope((P[pre + "wq"] @ xn).view(2 * H, d), pos)
            k = rope((P[pre + "wk"] @ xn).view(2 * Hkv, d), pos)
            v = (P[pre + "wv"] @ xn).view(Hkv, 2 * d)
            caches[l].append((k, v))
            Kc = torch.stack([c[0] for c in caches[l]])  # n,2Hkv,d
            Vc = torch.stack([c[1] for c in caches[l]])  # n,Hkv,2d
            lam_init = cfg.lambda_init(l)
            lam = (torch.exp(torch.dot(P[pre + "lambda_q1"], P[pre + "lambda_k1"]))
                   - torch.exp(torch.dot(P[pre + "lambda_q2"], P[pre + "lambda_k2"])) + lam_init)
            order, gw = gate(P[pre + "gate"], xn)
            lam_t = lam + sum(gw[j] * P[pre + "lambda_exp"][e] for j, e in enumerate(order))
            heads = []
            for h in range(H):
                g = h // (H // Hkv)
                a1 = torch.softmax(Kc[:, 2 * g] @ q[2 * h] / math.sqrt(d), 0)
                a2 = torch.softmax(Kc[:, 2 * g + 1] @ q[2 * h + 1] / math.sqrt(d), 0)
                o = (a1 - lam_t * a2) @ Vc[:, g]
                o = rms(o, P[pre + "sub_norm"], 1e-5) * (1 - lam_init)
                heads.append(o)
            hh = x + P[pre + "wo"] @ torch.cat(heads)
            hn = rms(hh, P[pre + "ffn_norm"], cfg.eps)
            order, gw = gate(P[pre + "gate"], hn)
            moe = sum(gw[j] * (P[pre + "down"][e] @ gelu_tanh(P[pre + "up"][e] @ hn)) for j, e in enumerate(order))
            y = hh + moe
            x = x + s * (y - x)
        x = rms(x, P["out_norm"], cfg.eps)
        out.append(P["tok_embd"] @ x)
        skipped.append(sk)
    return torch.stack(out), skipped


@torch.no_grad()
def window_nll(model, ids, ctx):
    nll, n = 0.0, 0
    for s in range(0, len(ids), ctx):
        w = ids[s:s + ctx]
        if len(w) < 2:
            continue
        x = torch.tensor(w, dtype=torch.long)[None]
        logits, _ = model(x)
        nll += F.cross_entropy(logits[0, :-1], x[0, 1:], reduction="sum").item()
        n += len(w) - 1
    return nll, n


@torch.no_grad()
def layer_stats(model, ids, ctx):
    cfg = model.cfg
    routed = np.zeros(cfg.layers)
    total = np.zeros(cfg.layers)
    usage = np.zeros((cfg.layers, cfg.experts))
    for s in range(0, len(ids), ctx):
        w = ids[s:s + ctx]
        st = []
        model(torch.tensor(w, dtype=torch.long)[None], stats=st)
        for l, rec in enumerate(st):
            idx = rec["experts"].view(len(w), -1)
            keep = torch.ones(len(w), dtype=torch.bool) if rec["routed"] is None else rec["routed"][0]
            routed[l] += keep.sum().item()
            total[l] += len(w)
            for e in idx[keep].flatten().tolist():
                usage[l, e] += 1
    return {
        "skip_rate": {str(l): round(1 - routed[l] / total[l], 4) for l in cfg.mod_layers},
        "expert_usage": [[round(u / max(1, usage[l].sum()), 4) for u in usage[l]] for l in range(cfg.layers)],
        "tokens": int(total[0]),
    }


@torch.no_grad()
def greedy(model, ids, n, gaps=None):
    """n greedy tokens; gaps (list) receives (top1 - top2) / max|logit| per step."""
    ids = list(ids)
    out = []
    for _ in range(n):
        logits, _ = model(torch.tensor(ids[-model.cfg.ctx:], dtype=torch.long)[None])
        lg = logits[0, -1]
        nxt = int(torch.argmax(lg).item())  # first max = lower id on ties
        if gaps is not None:
            v = torch.topk(lg, 2).values
            gaps.append(((v[0] - v[1]) / lg.abs().max()).item())
        out.append(nxt)
        ids.append(nxt)
    return out


@torch.no_grad()
def sample(model, ids, n, temp=0.8, top_k=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = list(ids)
    start = len(ids)
    for _ in range(n):
        logits, _ = model(torch.tensor(ids[-model.cfg.ctx:], dtype=torch.long)[None])
        lg = logits[0, -1] / temp
        v, ix = torch.topk(lg, top_k)
        p = torch.softmax(v, 0)
        ids.append(int(ix[torch.multinomial(p, 1, generator=g)].item()))
    return ids[start:]


def make_heldout(valid_txt, per_doc=2500, total=40000):
    """First paragraphs (up to ~per_doc bytes) of every validation document."""
    docs = [d.strip("\n") for d in open(valid_txt, encoding="utf-8").read().split("\n" + EOT + "\n")]
    parts, size = [], 0
    for d in docs:
        if not d.strip():
            continue
        chunk = ""
        for para in d.split("\n"):
            if chunk and len(chunk) + len(para) > per_doc:
                break
            chunk += para + "\n"
        chunk = chunk[:4 * per_doc].strip()
        parts.append(chunk)
        size += len(chunk.encode())
        if size >= total:
            break
    return "\n\n".join(parts) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", default="tools/out/final.pt")
    ap.add_argument("--gguf", default=None, help="evaluate weights read back from this GGUF instead")
    ap.add_argument("--bpe", default="tools/out/bpe.json")
    ap.add_argument("--valid", default="tools/out/valid.bin")
    ap.add_argument("--valid-txt", default="tools/out/corpus/valid.txt")
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--golden", default=None, help="write the greedy golden data of this model here")
    ap.add_argument("--json", default=None, help="also dump the results to this file")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--check-len", type=int, default=48, help="tokens for the docs/spec.md §1 reference check (0: skip)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    tok = Tokenizer(a.bpe)
    model, st = load_gguf(a.gguf) if a.gguf else load_ckpt(a.ckpt)
    cfg = model.cfg
    res = {"source": a.gguf or a.ckpt}
    tot, act = model.param_counts()
    res["params_total"], res["params_active"] = tot, act

    heldout_path = os.path.join(ROOT, "models", "heldout.txt")
    if a.write or not os.path.exists(heldout_path):
        text = make_heldout(a.valid_txt)
        os.makedirs(os.path.dirname(heldout_path), exist_ok=True)
        open(heldout_path, "w", encoding="utf-8").write(text)
    text = open(heldout_path, encoding="utf-8").read()
    hids = tok.encode(text)
    if a.write:
        with open(os.path.join(ROOT, "models", "heldout.ids"), "w") as f:
            f.write(" ".join(map(str, hids)) + "\n")

    t0 = time.time()
    nll, n = window_nll(model, hids, cfg.ctx)
    res["heldout"] = {"bytes": len(text.encode()), "tokens": len(hids), "predicted": n,
                      "nll": round(nll / n, 5), "ppl": round(math.exp(nll / n), 4)}
    print("heldout", res["heldout"], f"{time.time() - t0:.0f}s", flush=True)
    if os.path.exists(a.valid):
        v = np.fromfile(a.valid, dtype=np.uint16).astype(np.int64).tolist()
        nll, n = window_nll(model, v, cfg.ctx)
        res["valid_all"] = {"tokens": len(v), "predicted": n, "nll": round(nll / n, 5),
                            "ppl": round(math.exp(nll / n), 4)}
        print("valid (all)", res["valid_all"], flush=True)

    res.update(layer_stats(model, hids, cfg.ctx))
    print("skip rate", res["skip_rate"], flush=True)
    print("expert usage", res["expert_usage"], flush=True)

    if a.check_len:
        ids = hids[:a.check_len]
        full, _ = model(torch.tensor(ids)[None])
        ref, _ = reference_logits(model, ids)
        err = (full[0].double() - ref).abs().max().item() / ref.abs().max().item()
        res["reference_check"] = {"tokens": len(ids), "max_rel_err": err}
        print(f"full forward vs docs/spec.md §1 token-by-token float64: max err {err:.2e} of max|logit|", flush=True)

    golden = []
    for p in PROMPTS:
        pids = [tok.eot] + tok.encode(p)
        gaps = []
        cont = greedy(model, pids, 32, gaps)
        golden.append({"prompt": p, "prompt_ids": pids, "continuation_ids": cont,
                       "continuation": tok.decode(cont), "min_rel_gap": float("%.3g" % min(gaps))})
        print(repr(p), "->", repr(tok.decode(cont)), flush=True)
    res["greedy"] = golden
    samples = []
    for i, p in enumerate(PROMPTS[:2]):
        pids = [tok.eot] + tok.encode(p)
        samples.append(p + tok.decode(sample(model, pids, 120, seed=i)))
        print("sample:", samples[-1], flush=True)
    res["samples"] = {"temperature": 0.8, "top_k": 40, "texts": samples}

    golden_path = a.golden or (os.path.join(ROOT, "tests", "data", "demo_greedy.json") if a.write else None)
    if golden_path:
        gd = {"model": a.gguf or "models/demo-f32.gguf (PyTorch checkpoint it was exported from)",
              "bos_prepended": True, "n_predict": 32,
              "note": ("greedy = argmax, lower token id on ties; prompt_ids include the BOS <|endoftext|>; "
                       "min_rel_gap = smallest (top1 - top2 logit) / max|logit| over the 32 steps"),
              "cases": [{k: g[k] for k in ("prompt", "prompt_ids", "continuation_ids", "continuation", "min_rel_gap")}
                        for g in golden]}
        os.makedirs(os.path.dirname(golden_path), exist_ok=True)
        json.dump(gd, open(golden_path, "w"), indent=1)
        print("wrote", golden_path)
    if a.write:
        res["heldout_protocol"] = ("tokenize models/heldout.txt without BOS (= models/heldout.ids); consecutive "
                                   f"windows of {cfg.ctx} tokens, each from position 0 with empty caches; predict "
                                   "every token of a window but the first; PPL = exp(mean NLL)")
        json.dump(res, open(os.path.join(ROOT, "models", "demo_stats.json"), "w"), indent=1)
        print("wrote models/heldout.txt, models/heldout.ids, models/demo_stats.json")
    if a.json:
        json.dump(res, open(a.json, "w"), indent=1)
    return res


if __name__ == "__main__":
    main()
