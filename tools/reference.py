"""Float64 reference implementation of the NCAS-DiffMoE model (docs/spec.md §1–2).

Independent of the C++ engine: written from docs/spec.md only. Reads a GGUF file
(architecture `ncas-diffmoe` or `llama`) through tools/gguf.py, dequantises
every weight to float64 and runs the tokens one at a time, keeping per layer a
cache of (position, k, v) rows for the tokens routed into that layer.

    from reference import Reference
    ref = Reference("model.gguf")
    logits, diag = ref.forward([1, 2, 3])   # logits: (T, V) float64

diag holds, per layer: "mod_kept" (tokens routed into the layer), "experts"
(per token the chosen expert ids in rank order, None when MoD skipped the token),
plus decision margins used by the test-data generator: "mod_margin" (smallest
|r - threshold|), "gate_margin" (smallest non-zero gap between the k-th and
(k+1)-th expert probability) and "boundary_ties" ((layer, token, winner, loser)
where two experts had exactly equal probability across the top-k boundary).

Reference(path, kv_type="q8_0" or "q4_0") runs with a quantised KV cache: each K row
(after RoPE) and V row, as one vector of k_dim / v_dim values zero-padded to whole
blocks of 32, is rounded through that ggml block format (f16 scale) before it is
stored (docs/spec.md §4).

CLI: /usr/bin/python3 tools/reference.py MODEL.gguf --tokens 1,2,3 [--out logits.f32] [--kv-type q8_0]
(--out writes raw little-endian float32, T rows of V.)
"""

import argparse
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gguf import GGUFFile  # noqa: E402

DEFAULT_EPS = 1e-5
SUB_NORM_EPS = 1e-5        # docs/spec.md §1.1: the attention sub-norm uses a fixed eps
DEFAULT_ROPE_THETA = 10000.0
DEFAULT_MOD_THRESHOLD = 0.0


def rms_norm(v, w, eps):
    """v / sqrt(mean(v^2) + eps) * w over the last axis."""
    return v / np.sqrt(np.mean(v * v, axis=-1, keepdims=True) + eps) * w


def softmax(z):
    e = np.exp(z - np.max(z))
    return e / np.sum(e)


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def silu(x):
    return x / (1.0 + np.exp(-x))


def rope(x, pos, theta):
    """Rotate adjacent pairs (2i, 2i+1) of every row of x (n_rows, width) by
    pos * theta^(-2i/width), i in 0..width/2-1."""
    width = x.shape[-1]
    i = np.arange(width // 2)
    angle = pos * theta ** (-2.0 * i / width)          # (width/2,)
    cos, sin = np.cos(angle), np.sin(angle)
    x0, x1 = x[:, 0::2], x[:, 1::2]
    out = np.empty_like(x)
    out[:, 0::2] = x0 * cos - x1 * sin
    out[:, 1::2] = x0 * sin + x1 * cos
    return out


def kv_round(x, kv_type):
    """x (any shape, one cache row) rounded through a ggml block format along its
    flattened values, zero-padded to whole blocks of 32: q8_0 (scale max|x|/127,
    round half away from zero) or q4_0 (scale = the value of largest magnitude / -8,
    nibble min(15, trunc(x/scale + 8.5)) - 8), each scale rounded to f16."""
    if kv_type is None:
        return x
    flat = np.asarray(x, dtype=np.float64).reshape(-1)
    n = flat.size
    padded = np.zeros((n + 31) // 32 * 32)
    padded[:n] = flat
    blocks = padded.reshape(-1, 32)
    out = np.empty_like(blocks)
    for b, v in enumerate(blocks):
        if kv_type == "q8_0":
            d = np.abs(v).max() / 127.0
            inv = 1.0 / d if d else 0.0
            q = np.trunc(v * inv + np.copysign(0.5, v * inv))          # roundf: half away from zero
        elif kv_type == "q4_0":
            m = v[np.argmax(np.abs(v))]                                # first of largest magnitude
            d = m / -8.0
            inv = 1.0 / d if d else 0.0
            q = np.minimum(15, np.trunc(v * inv + 8.5)) - 8
        else:
            raise ValueError(f"KV cache type {kv_type} (expected q8_0 or q4_0)")
        out[b] = q * float(np.float16(d))
    return out.reshape(-1)[:n].reshape(np.shape(x))


class Layer:
    """Weights of one block in numpy (out, in) layout, float64."""


class Reference:
    def __init__(self, path, kv_type=None):
        self.kv_type = kv_type
        f = GGUFFile(path)
        md = f.metadata
        arch = md["general.architecture"]
        if arch not in ("ncas-diffmoe", "llama"):
            raise ValueError(f"unsupported architecture {arch!r}")
        self.arch = arch
        self.differential = arch == "ncas-diffmoe"

        def meta(key, default=None):
            full = f"{arch}.{key}"
            if full in md:
                return md[full]
            if default is None:
                raise KeyError(f"missing metadata {full}")
            return default

        def tensor(name, shape=None, required=True):
            full = name + ".weight"
            if full not in f.tensors:
                if required:
                    raise KeyError(f"missing tensor {full}")
                return None
            t = f.tensor_f64(full)
            # None in shape: any size (it is read from the tensor)
            if shape is not None and (len(t.shape) != len(shape) or any(
                    want is not None and got != want for got, want in zip(t.shape, shape))):
                raise ValueError(f"{full}: numpy shape {t.shape}, expected {tuple(shape)}")
            return t

        D = self.n_embd = int(meta("embedding_length"))
        L = self.n_layer = int(meta("block_count"))
        H = self.n_head = int(meta("attention.head_count"))
        Hkv = self.n_head_kv = int(meta("attention.head_count_kv", H))
        if H % Hkv:
            raise ValueError(f"head_count {H} is not a multiple of head_count_kv {Hkv}")
        # n_maps: attention maps per head (2 = differential, 1 = standard).
        # dk: width of one q/k sub-head (the half-head d, or the llama head width);
        # RoPE and the 1/sqrt(dk) scale act on it. dv: value width per head.
        self.n_maps = 2 if self.differential else 1
        if self.differential:
            self.dk = int(meta("attention.key_length", D // (2 * H)))
            self.dv = int(meta("attention.value_length", 2 * self.dk))
        else:
            self.dk = int(meta("attention.key_length", D // H))
            self.dv = int(meta("attention.value_length", self.dk))
        self.eps = float(meta("attention.layer_norm_rms_epsilon", DEFAULT_EPS))
        self.theta = float(meta("rope.freq_base", DEFAULT_ROPE_THETA))
        E = self.n_expert = int(meta("expert_count", 1))
        self.n_expert_used = int(meta("expert_used_count", 1))
        if not 1 <= self.n_expert_used <= E:
            raise ValueError(f"expert_used_count {self.n_expert_used} with {E} experts")
        self.expert_weights_norm = bool(meta("expert_weights_norm", True))
        self.ffn_kind = meta("ffn_kind", "gelu") if self.differential else "swiglu"
        if self.ffn_kind not in ("gelu", "swiglu"):
            raise ValueError(f"unknown ffn_kind {self.ffn_kind!r}")
        self.mod_threshold = float(meta("mod.threshold", DEFAULT_MOD_THRESHOLD))
        self.mod_scale = meta("mod.scale", "sigmoid")
        if self.mod_scale not in ("sigmoid", "raw", "none"):
            raise ValueError(f"unknown mod.scale {self.mod_scale!r}")
        lambda_init = md.get(f"{arch}.attention.lambda_init")
        if lambda_init is None:
            lambda_init = [0.8 - 0.6 * math.exp(-0.3 * l) for l in range(L)]
        elif len(lambda_init) != L:
            raise ValueError(f"attention.lambda_init has {len(lambda_init)} entries, expected {L}")
        self.lambda_init = [float(v) for v in lambda_init]

        self.token_embd = tensor("token_embd", (None, D))        # (V, D)
        V = self.n_vocab = self.token_embd.shape[0]
        n_vocab_meta = md.get(f"{arch}.vocab_size")
        if n_vocab_meta is None:
            n_vocab_meta = len(md["tokenizer.ggml.tokens"])
        if n_vocab_meta != V:
            raise ValueError(f"vocabulary {n_vocab_meta} differs from token_embd's {V}")
        self.output_norm = tensor("output_norm", (D,))
        out = tensor("output", (V, D), required=False)
        self.output = self.token_embd if out is None else out   # tied when absent

        nm, dk, dv = self.n_maps, self.dk, self.dv
        self.layers = []
        for l in range(L):
            b = f"blk.{l}."
            ly = Layer()
            ly.attn_norm = tensor(b + "attn_norm", (D,))
            ly.wq = tensor(b + "attn_q", (nm * H * dk, D))
            ly.wk = tensor(b + "attn_k", (nm * Hkv * dk, D))
            ly.wv = tensor(b + "attn_v", (Hkv * dv, D))
            ly.wo = tensor(b + "attn_output", (D, H * dv))
            ly.lam = 0.0          # λ_l (differential only)
            ly.sub_norm = None
            ly.lambda_exp = None
            if self.differential:
                lq1 = tensor(b + "attn_lambda_q1", (dk,), required=False)
                if lq1 is not None:
                    lk1 = tensor(b + "attn_lambda_k1", (dk,))
                    lq2 = tensor(b + "attn_lambda_q2", (dk,))
                    lk2 = tensor(b + "attn_lambda_k2", (dk,))
                    ly.lam = (math.exp(np.dot(lq1, lk1)) - math.exp(np.dot(lq2, lk2))
                              + self.lambda_init[l])
                else:
                    ly.lam = float(tensor(b + "attn_lambda", (1,))[0])
                ly.sub_norm = tensor(b + "attn_sub_norm", (dv,), required=False)
                ly.lambda_exp = tensor(b + "attn_lambda_exp", (E,), required=False)
            ly.ffn_norm = tensor(b + "ffn_norm", (D,))
            ly.gate_inp = tensor(b + "ffn_gate_inp", (E, D), required=(E > 1))
            if b + "ffn_up_exps.weight" in f.tensors:
                ly.up = tensor(b + "ffn_up_exps", (E, None, D))    # (E, F, D)
                F = ly.up.shape[1]
                ly.down = tensor(b + "ffn_down_exps", (E, D, F))
                ly.gate = (tensor(b + "ffn_gate_exps", (E, F, D))
                           if self.ffn_kind == "swiglu" else None)
            else:
                if E != 1:
                    raise ValueError(f"layer {l}: {E} experts but no ffn_*_exps tensors")
                ly.up = tensor(b + "ffn_up", (None, D))[None]       # (1, F, D)
                F = ly.up.shape[1]
                ly.down = tensor(b + "ffn_down", (D, F))[None]      # (1, D, F)
                ly.gate = (tensor(b + "ffn_gate", (F, D))[None]
                           if self.ffn_kind == "swiglu" else None)
            ly.mod_router = tensor(b + "mod_router", (D,), required=False)
            self.layers.append(ly)

    # -- pieces -------------------------------------------------------------

    def route(self, gate_inp, xn, normalise, diag, l, t):
        """Top-k expert choice. Returns (expert ids in rank order, weights).

        Ties are won by the lower expert index (stable sort on -p)."""
        k = self.n_expert_used
        if gate_inp is None:                                   # E = 1: dense
            return [0], np.array([1.0])
        p = softmax(gate_inp @ xn)                             # (E,)
        order = np.argsort(-p, kind="stable")
        chosen = order[:k]
        if k < len(p):
            gap = p[order[k - 1]] - p[order[k]]
            if gap == 0.0:
                diag["boundary_ties"].append((l, t, int(order[k - 1]), int(order[k])))
            else:
                diag["gate_margin"] = min(diag["gate_margin"], gap)
        w = p[chosen]
        if normalise:
            w = w / np.sum(w)
        return [int(e) for e in chosen], w

    def ffn(self, ly, e, hn):
        up = ly.up[e] @ hn                                     # (F,)
        if self.ffn_kind == "gelu":
            act = gelu_tanh(up)
        else:
            act = silu(ly.gate[e] @ hn) * up
        return ly.down[e] @ act                                # (D,)

    def attention(self, ly, l, xn, pos, cache, lam_t):
        """One query token against the layer's cache; appends its own row first."""
        H, Hkv, nm, dk, dv = self.n_head, self.n_head_kv, self.n_maps, self.dk, self.dv
        q = rope((ly.wq @ xn).reshape(nm * H, dk), pos, self.theta)     # sub-heads of q
        k = rope((ly.wk @ xn).reshape(nm * Hkv, dk), pos, self.theta)   # sub-heads of k
        v = (ly.wv @ xn).reshape(Hkv, dv)
        k, v = kv_round(k, self.kv_type), kv_round(v, self.kv_type)  # a quantised cache stores rounded rows
        cache.append((pos, k, v))
        assert all(p <= pos for p, _, _ in cache)              # causal by position
        K = np.stack([row[1] for row in cache])                # (n_rows, nm*Hkv, dk)
        Vs = np.stack([row[2] for row in cache])               # (n_rows, Hkv, dv)
        scale = 1.0 / math.sqrt(dk)
        heads = []
        for h in range(H):
            g = h // (H // Hkv)                                # GQA: consecutive heads share g
            if self.differential:
                a1 = softmax(K[:, 2 * g] @ q[2 * h] * scale)           # (n_rows,)
                a2 = softmax(K[:, 2 * g + 1] @ q[2 * h + 1] * scale)
                o = (a1 - lam_t * a2) @ Vs[:, g]                       # (dv,)
                if ly.sub_norm is not None:
                    o = rms_norm(o, ly.sub_norm, SUB_NORM_EPS) * (1.0 - self.lambda_init[l])
            else:
                a = softmax(K[:, g] @ q[h] * scale)
                o = a @ Vs[:, g]
            heads.append(o)
        return ly.wo @ np.concatenate(heads)                   # (D,)

    # -- whole sequence -----------------------------------------------------

    def forward(self, tokens):
        T, L = len(tokens), self.n_layer
        caches = [[] for _ in range(L)]                        # per layer: (pos, k, v) rows
        diag = {"mod_kept": [0] * L, "experts": [[] for _ in range(L)],
                "mod_margin": math.inf, "gate_margin": math.inf, "boundary_ties": []}
        logits = np.empty((T, self.n_vocab))
        for t, token in enumerate(tokens):
            if not 0 <= token < self.n_vocab:
                raise ValueError(f"token {token} outside the vocabulary")
            x = self.token_embd[token].copy()                  # (D,)
            for l, ly in enumerate(self.layers):
                s = 1.0
                if ly.mod_router is not None:
                    r = float(ly.mod_router @ x)
                    diag["mod_margin"] = min(diag["mod_margin"], abs(r - self.mod_threshold))
                    if r <= self.mod_threshold:                # skipped: no K/V row here
                        diag["experts"][l].append(None)
                        continue
                    s = {"sigmoid": 1.0 / (1.0 + math.exp(-r)), "raw": r, "none": 1.0}[self.mod_scale]
                diag["mod_kept"][l] += 1
                xn = rms_norm(x, ly.attn_norm, self.eps)
                lam_t = ly.lam
                if ly.lambda_exp is not None:                  # expert-conditional λ
                    sel, g = self.route(ly.gate_inp, xn, True, diag, l, t)
                    lam_t = ly.lam + float(np.dot(g, ly.lambda_exp[sel]))
                h = x + self.attention(ly, l, xn, t, caches[l], lam_t)
                hn = rms_norm(h, ly.ffn_norm, self.eps)
                sel, g = self.route(ly.gate_inp, hn, self.expert_weights_norm, diag, l, t)
                diag["experts"][l].append(sel)
                y = h + sum(w * self.ffn(ly, e, hn) for e, w in zip(sel, g))
                x = x + s * (y - x)
            logits[t] = self.output @ rms_norm(x, self.output_norm, self.eps)
        return logits, diag


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("--tokens", required=True, help="comma-separated token ids")
    ap.add_argument("--out", help="write logits as raw little-endian float32 (T x V)")
    ap.add_argument("--kv-type", choices=["f32", "q8_0", "q4_0"], default="f32",
                    help="round K and V through this cache format (f32: not at all)")
    args = ap.parse_args()
    tokens = [int(t) for t in args.tokens.split(",") if t.strip()]
    ref = Reference(args.model, None if args.kv_type == "f32" else args.kv_type)
    logits, diag = ref.forward(tokens)
    if args.out:
        logits.astype("<f4").tofile(args.out)
    print(f"arch {ref.arch}  T {len(tokens)}  V {ref.n_vocab}  "
          f"max|logit| {np.abs(logits).max():.6g}")
    print("argmax per position:", logits.argmax(axis=1).tolist())
    print("mod_kept per layer:", diag["mod_kept"])
    for l, ex in enumerate(diag["experts"]):
        print(f"layer {l} experts:", ex)


if __name__ == "__main__":
    main()
