#!/usr/bin/python3
"""Export a trained NCAS-DiffMoE checkpoint to GGUF (docs/spec.md §2) with tools/gguf.py.

  /usr/bin/python3 tools/export.py [--ckpt tools/out/final.pt] [--bpe tools/out/bpe.json]
        [--out-f32 models/demo-f32.gguf] [--out-q8 models/demo-q8_0.gguf]

Tensors (numpy shape = reversed GGUF ne; PyTorch (out, in) -> GGUF [in, out]):
  token_embd.weight            (V, D)          -> [D, V]     (output tied: no output.weight)
  output_norm.weight           (D)
  blk.N.attn_norm.weight       (D)
  blk.N.attn_q.weight          (2H·d, D)       -> [D, 2H·d]
  blk.N.attn_k.weight          (2Hkv·d, D)     -> [D, 2Hkv·d]
  blk.N.attn_v.weight          (Hkv·2d, D)     -> [D, Hkv·2d]
  blk.N.attn_output.weight     (D, H·2d)       -> [H·2d, D]
  blk.N.attn_lambda_q1/k1/q2/k2.weight (d)     F32
  blk.N.attn_sub_norm.weight   (2d)            F32
  blk.N.attn_lambda_exp.weight (E)             F32
  blk.N.ffn_norm.weight        (D)             F32
  blk.N.ffn_gate_inp.weight    (E, D)          -> [D, E]     F32 (as llama.cpp keeps it)
  blk.N.ffn_up_exps.weight     (E, F, D)       -> [D, F, E]  expert e = contiguous slab e
  blk.N.ffn_down_exps.weight   (E, D, F)       -> [F, D, E]
  blk.N.mod_router.weight      (D)             F32, MoD layers only
The Q8_0 file quantises token_embd, attn_q/k/v/output and the expert matrices;
everything else stays F32.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from gguf import GGUFWriter, GGMLType, GGUFValueType  # noqa: E402
from model import Config  # noqa: E402

ARCH = "ncas-diffmoe"
BIG = ("token_embd", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_up_exps", "ffn_down_exps")


def gguf_tensors(sd, cfg):
    """(name, numpy float32 array) in file order."""
    t = lambda k: sd[k].detach().cpu().float().numpy()  # noqa: E731
    out = [("token_embd.weight", t("tok_embd")), ("output_norm.weight", t("out_norm"))]
    for l in range(cfg.layers):
        p = f"layers.{l}."
        b = f"blk.{l}."
        out += [
            (b + "attn_norm.weight", t(p + "attn_norm")),
            (b + "attn_q.weight", t(p + "wq")),
            (b + "attn_k.weight", t(p + "wk")),
            (b + "attn_v.weight", t(p + "wv")),
            (b + "attn_output.weight", t(p + "wo")),
            (b + "attn_lambda_q1.weight", t(p + "lambda_q1")),
            (b + "attn_lambda_k1.weight", t(p + "lambda_k1")),
            (b + "attn_lambda_q2.weight", t(p + "lambda_q2")),
            (b + "attn_lambda_k2.weight", t(p + "lambda_k2")),
            (b + "attn_sub_norm.weight", t(p + "sub_norm")),
            (b + "attn_lambda_exp.weight", t(p + "lambda_exp")),
            (b + "ffn_norm.weight", t(p + "ffn_norm")),
            (b + "ffn_gate_inp.weight", t(p + "gate")),
            (b + "ffn_up_exps.weight", t(p + "up")),
            (b + "ffn_down_exps.weight", t(p + "down")),
        ]
        if p + "router" in sd and sd[p + "router"] is not None:
            out.append((b + "mod_router.weight", t(p + "router")))
    return out


def write(path, sd, cfg, tok, quant):
    w = GGUFWriter(path, ARCH)
    w.add_string("general.name", "ncas-demo")
    w.add_uint32("general.file_type", 7 if quant else 0)  # llama_ftype: MOSTLY_Q8_0 / ALL_F32
    k = ARCH + "."
    w.add_uint32(k + "context_length", cfg.ctx)
    w.add_uint32(k + "embedding_length", cfg.dim)
    w.add_uint32(k + "block_count", cfg.layers)
    w.add_uint32(k + "vocab_size", cfg.vocab)
    w.add_uint32(k + "feed_forward_length", cfg.ffn)
    w.add_uint32(k + "attention.head_count", cfg.heads)
    w.add_uint32(k + "attention.head_count_kv", cfg.kv_heads)
    w.add_uint32(k + "attention.key_length", cfg.half_dim)
    w.add_uint32(k + "attention.value_length", 2 * cfg.half_dim)
    w.add_float32(k + "attention.layer_norm_rms_epsilon", cfg.eps)
    w.add_float32(k + "rope.freq_base", cfg.rope_theta)
    w.add_uint32(k + "expert_count", cfg.experts)
    w.add_uint32(k + "expert_used_count", cfg.top_k)
    w.add_bool(k + "expert_weights_norm", True)
    w.add_string(k + "ffn_kind", "gelu")
    w.add_float32(k + "mod.threshold", cfg.mod_threshold)
    w.add_string(k + "mod.scale", cfg.mod_scale)
    w.add_array(k + "attention.lambda_init", [float(np.float32(cfg.lambda_init(l))) for l in range(cfg.layers)],
                GGUFValueType.FLOAT32)
    w.add_string("tokenizer.ggml.model", "gpt2")
    w.add_string("tokenizer.ggml.pre", "gpt-2")
    w.add_array("tokenizer.ggml.tokens", tok["tokens"], GGUFValueType.STRING)
    w.add_array("tokenizer.ggml.token_type", [3 if i == tok["eot"] else 1 for i in range(len(tok["tokens"]))],
                GGUFValueType.INT32)
    w.add_array("tokenizer.ggml.merges", tok["merges"], GGUFValueType.STRING)
    w.add_uint32("tokenizer.ggml.bos_token_id", tok["eot"])
    w.add_uint32("tokenizer.ggml.eos_token_id", tok["eot"])
    for name, arr in gguf_tensors(sd, cfg):
        big = name.split(".")[-2] in BIG or name.split(".")[0] in BIG
        typ = GGMLType.Q8_0 if (quant and big) else GGMLType.F32
        w.add_tensor(name, np.ascontiguousarray(arr, dtype=np.float32), typ)
    w.write()
    print(f"wrote {path}: {os.path.getsize(path) / 1e6:.2f} MB")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", default="tools/out/final.pt")
    ap.add_argument("--bpe", default="tools/out/bpe.json")
    ap.add_argument("--out-f32", default="models/demo-f32.gguf")
    ap.add_argument("--out-q8", default="models/demo-q8_0.gguf")
    a = ap.parse_args()
    st = torch.load(a.ckpt, map_location="cpu")
    cfg = Config(**st["config"])
    tok = json.load(open(a.bpe, encoding="utf-8"))
    assert len(tok["tokens"]) == cfg.vocab, (len(tok["tokens"]), cfg.vocab)
    os.makedirs(os.path.dirname(a.out_f32) or ".", exist_ok=True)
    write(a.out_f32, st["model"], cfg, tok, quant=False)
    write(a.out_q8, st["model"], cfg, tok, quant=True)


if __name__ == "__main__":
    main()
