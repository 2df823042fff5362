#!/usr/bin/python3
"""NCAS-DiffMoE in PyTorch, exactly as docs/spec.md §1 defines it.

    from model import Config, NCASDiffMoE
    m = NCASDiffMoE(Config())
    logits, aux = m(ids)                   # ids (B, T) int64, positions 0..T-1

The full-sequence forward is the same function as docs/spec.md's token-by-token
inference: MoD routing is a per-token threshold on the raw router score, and a
token skipped in a MoD layer leaves no K/V row there, so it is masked out as a
key for every other query of that layer (it still sees itself, which keeps the
softmax finite; its output is discarded anyway).

Parameter layout follows the GGUF tensors (tools/export.py writes them):
  tok_embd (V, D)                             token_embd        (tied output)
  layers[l].attn_norm (D)                     blk.l.attn_norm
  layers[l].wq (2H·d, D), wk (2Hkv·d, D), wv (Hkv·2d, D), wo (D, H·2d)
  layers[l].lambda_q1/k1/q2/k2 (d)            blk.l.attn_lambda_q1 ...
  layers[l].sub_norm (2d)                     blk.l.attn_sub_norm
  layers[l].lambda_exp (E)                    blk.l.attn_lambda_exp
  layers[l].ffn_norm (D), gate (E, D)         blk.l.ffn_norm, ffn_gate_inp
  layers[l].up (E, F, D), down (E, D, F)      blk.l.ffn_up_exps, ffn_down_exps
  layers[l].router (D)  (MoD layers only)     blk.l.mod_router
  out_norm (D)                                output_norm
"""
import math
from dataclasses import dataclass, field, asdict

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class Config:
    vocab: int = 4096
    dim: int = 256          # D
    layers: int = 6         # L
    heads: int = 4          # H differential heads
    kv_heads: int = 2       # Hkv
    half_dim: int = 32      # d; value width per head is 2d
    experts: int = 4        # E
    top_k: int = 2
    ffn: int = 384          # F
    ctx: int = 256
    rope_theta: float = 31415.926
    eps: float = 1e-5
    mod_layers: list = field(default_factory=lambda: [1, 3, 5])
    mod_threshold: float = 0.0
    mod_scale: str = "sigmoid"

    def lambda_init(self, l):
        return 0.8 - 0.6 * math.exp(-0.3 * l)

    def to_dict(self):
        return asdict(self)


def rmsnorm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def gelu_tanh(x):
    return F.gelu(x, approximate="tanh")


def rope_tables(cfg, T, device=None):
    d = cfg.half_dim
    i = torch.arange(d // 2, dtype=torch.float64)
    inv = cfg.rope_theta ** (-2.0 * i / d)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]
    return torch.cos(ang).float().to(device), torch.sin(ang).float().to(device)


def apply_rope(x, cos, sin):
    """x (B, T, n, d): rotate pairs (2i, 2i+1) by angle pos * theta^(-2i/d)."""
    xe, xo = x[..., 0::2], x[..., 1::2]
    c, s = cos[None, :, None, :], sin[None, :, None, :]
    return torch.stack((xe * c - xo * s, xe * s + xo * c), dim=-1).flatten(-2)


def topk_gate(gate_w, xn, k):
    """docs/spec.md §1.2 gate: softmax over experts, TopK, renormalised.
    Returns probs (N, E), topk idx (N, k), renormalised weights (N, k)."""
    logits = xn @ gate_w.t()
    p = torch.softmax(logits.float(), dim=-1)
    w, idx = torch.topk(p, k, dim=-1)
    w = w / w.sum(-1, keepdim=True)
    return p, idx, w


class Layer(nn.Module):
    def __init__(self, cfg, l):
        super().__init__()
        D, H, Hkv, d, E, Fw = cfg.dim, cfg.heads, cfg.kv_heads, cfg.half_dim, cfg.experts, cfg.ffn
        self.cfg, self.l = cfg, l
        self.lambda_init = cfg.lambda_init(l)
        std, ostd = 0.02, 0.02 / math.sqrt(2 * cfg.layers)
        self.attn_norm = nn.Parameter(torch.ones(D))
        self.wq = nn.Parameter(torch.randn(2 * H * d, D) * std)
        self.wk = nn.Parameter(torch.randn(2 * Hkv * d, D) * std)
        self.wv = nn.Parameter(torch.randn(Hkv * 2 * d, D) * std)
        self.wo = nn.Parameter(torch.randn(D, H * 2 * d) * ostd)
        self.lambda_q1 = nn.Parameter(torch.randn(d) * 0.1)
        self.lambda_k1 = nn.Parameter(torch.randn(d) * 0.1)
        self.lambda_q2 = nn.Parameter(torch.randn(d) * 0.1)
        self.lambda_k2 = nn.Parameter(torch.randn(d) * 0.1)
        self.sub_norm = nn.Parameter(torch.ones(2 * d))
        self.lambda_exp = nn.Parameter(torch.zeros(E))
        self.ffn_norm = nn.Parameter(torch.ones(D))
        self.gate = nn.Parameter(torch.randn(E, D) * std)
        self.up = nn.Parameter(torch.randn(E, Fw, D) * std)
        self.down = nn.Parameter(torch.randn(E, D, Fw) * ostd)
        self.router = nn.Parameter(torch.randn(D) * 0.1) if l in cfg.mod_layers else None

    def lam(self):
        return (torch.exp(torch.dot(self.lambda_q1, self.lambda_k1))
                - torch.exp(torch.dot(self.lambda_q2, self.lambda_k2)) + self.lambda_init)

    def attention(self, xn, cos, sin, key_ok):
        """xn (B,T,D); key_ok (B,T) bool: token wrote K/V in this layer (None: all)."""
        cfg = self.cfg
        B, T, D = xn.shape
        H, Hkv, d = cfg.heads, cfg.kv_heads, cfg.half_dim
        q = apply_rope((xn @ self.wq.t()).view(B, T, 2 * H, d), cos, sin)
        k = apply_rope((xn @ self.wk.t()).view(B, T, 2 * Hkv, d), cos, sin)
        v = (xn @ self.wv.t()).view(B, T, Hkv, 2 * d)
        rep = H // Hkv
        # head h uses kv pair g = h // rep: half-heads 2g, 2g+1
        q = q.view(B, T, H, 2, d).permute(0, 2, 3, 1, 4)            # B,H,2,T,d
        k = k.view(B, T, Hkv, 2, d).permute(0, 2, 3, 1, 4)          # B,Hkv,2,T,d
        k = k.repeat_interleave(rep, dim=1)                          # B,H,2,T,d
        v = v.permute(0, 2, 1, 3).repeat_interleave(rep, dim=1)      # B,H,T,2d
        s = torch.einsum("bhctd,bhcsd->bhcts", q * (1.0 / math.sqrt(d)), k)  # B,H,2,T,T
        causal = torch.ones(T, T, dtype=torch.bool, device=xn.device).tril()
        if key_ok is None:
            allowed = causal[None]
        else:
            eye = torch.eye(T, dtype=torch.bool, device=xn.device)
            allowed = causal[None] & (key_ok[:, None, :] | eye[None])  # B,T,T
        s = s.masked_fill(~allowed[:, None, None], float("-inf"))
        a = torch.softmax(s, dim=-1)
        # lambda_t: layer lambda + expert-conditional term from the layer's own gate on xn
        lam = self.lam()
        _, idx, w = topk_gate(self.gate, xn.reshape(-1, D), cfg.top_k)
        lam_t = lam + (w * self.lambda_exp[idx]).sum(-1).view(B, 1, T, 1)
        # (a1 - lam_t a2) V  ==  a1 V - lam_t (a2 V)   (lam_t is per query row)
        av = a @ v.unsqueeze(2)                                      # B,H,2,T,2d
        o = av[:, :, 0] - lam_t * av[:, :, 1]                        # B,H,T,2d
        o = rmsnorm(o, self.sub_norm, 1e-5) * (1.0 - self.lambda_init)
        o = o.permute(0, 2, 1, 3).reshape(B, T, H * 2 * d)
        return o @ self.wo.t()

    def moe(self, hn):
        cfg = self.cfg
        B, T, D = hn.shape
        x = hn.reshape(-1, D)
        p, idx, w = topk_gate(self.gate, x, cfg.top_k)
        out = torch.zeros_like(x)
        for e in range(cfg.experts):
            tok, slot = (idx == e).nonzero(as_tuple=True)
            if tok.numel() == 0:
                continue
            xe = x.index_select(0, tok)
            ye = gelu_tanh(xe @ self.up[e].t()) @ self.down[e].t()
            out.index_add_(0, tok, ye * w[tok, slot, None])
        # Switch-style balance loss: E * sum_e f_e * P_e (f: share of top-k assignments)
        E = cfg.experts
        f = torch.bincount(idx.flatten(), minlength=E).float() / idx.numel()
        P = p.mean(0)
        bal = E * (f * P).sum()
        return out.view(B, T, D), bal, idx

    def forward(self, x, cos, sin, stats=None):
        cfg = self.cfg
        aux = {}
        if self.router is not None:
            r = x @ self.router                                      # B,T raw score
            routed = r > cfg.mod_threshold
            s = torch.sigmoid(r) if cfg.mod_scale == "sigmoid" else (r if cfg.mod_scale == "raw" else torch.ones_like(r))
            key_ok = routed
            aux["router_logits"] = r
            aux["router_in"] = x.detach()
        else:
            routed, s, key_ok = None, None, None
        h = x + self.attention(rmsnorm(x, self.attn_norm, cfg.eps), cos, sin, key_ok)
        m, bal, idx = self.moe(rmsnorm(h, self.ffn_norm, cfg.eps))
        y = h + m
        aux["balance"] = bal
        if stats is not None:
            stats.append({"routed": routed, "experts": idx})
        if routed is None:
            return y, aux
        g = (routed.float() * s).unsqueeze(-1)
        return x + g * (y - x), aux


class NCASDiffMoE(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.tok_embd = nn.Parameter(torch.randn(cfg.vocab, cfg.dim) * 0.02)
        self.layers = nn.ModuleList([Layer(cfg, l) for l in range(cfg.layers)])
        self.out_norm = nn.Parameter(torch.ones(cfg.dim))
        self._rope = None

    def rope(self, T, device):
        if self._rope is None or self._rope[0].shape[0] < T:
            self._rope = rope_tables(self.cfg, max(T, self.cfg.ctx), device)
        return self._rope[0][:T], self._rope[1][:T]

    def forward(self, ids, stats=None):
        B, T = ids.shape
        cos, sin = self.rope(T, ids.device)
        x = self.tok_embd[ids]
        auxes = []
        for layer in self.layers:
            x, aux = layer(x, cos, sin, stats)
            auxes.append(aux)
        x = rmsnorm(x, self.out_norm, self.cfg.eps)
        return x @ self.tok_embd.t(), auxes

    def param_counts(self):
        cfg = self.cfg
        total = sum(p.numel() for p in self.parameters())
        expert = sum(l.up.numel() + l.down.numel() for l in self.layers)
        active = total - expert + expert * cfg.top_k // cfg.experts
        return total, active
