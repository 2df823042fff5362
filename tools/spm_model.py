#!/usr/bin/python3
"""A tiny llama model with the SentencePiece vocabulary of tools/spm_vocab.py, and
its golden logits: the model-level check that a SentencePiece GGUF runs.

  /usr/bin/python3 tools/spm_model.py [--out tests/data/tokenizer]

Reads spm_vocab.gguf (the tokenizer.* keys are copied as they are) and
spm_cases.json (the sentencepiece library's ids) from --out; writes there:

  spm_llama.gguf         llama, D 32, 2 layers, GQA H 4 Hkv 2, head 8, dense SwiGLU
                         F 64, untied output, vocabulary 1000 (the SPM pieces), F32
                         except the Q8_0 attention and FFN matrices; random weights
                         from a fixed seed
  spm_llama.json         the prompt (a case of spm_cases.json with BOS), its ids as
                         the sentencepiece library gave them, max |logit|
  spm_llama.logits.f32   tools/reference.py's float64 logits for those ids (as f32)

tests/test_cli.sh runs `ncas tokenize` and `ncas logits --prompt` on it, on the CPU
and on Vulkan, against these: the text is tokenised by ncas, so a wrong
SentencePiece encode fails the logits as well as the ids.
"""
import argparse
import json
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gguf import GGMLType, GGUFFile, GGUFWriter  # noqa: E402
from reference import Reference  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
D, L, H, HKV, HD, F = 32, 2, 4, 2, 8, 64
PROMPT_CASE = "Mr. Darcy's income was £10,000 a year; Mrs. Bennet's nerves were \"poor\"."  # a case of spm_cases.json


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "data", "tokenizer"))
    args = ap.parse_args()
    vocab = GGUFFile(os.path.join(args.out, "spm_vocab.gguf"))
    cases = json.load(open(os.path.join(args.out, "spm_cases.json"), encoding="utf-8"))
    case = next((c for c in cases if c.get("text") == PROMPT_CASE and c.get("add_bos")), None)
    if case is None:
        sys.exit(f"spm_model.py: no case {PROMPT_CASE!r} with BOS in spm_cases.json")
    ids = case["ids"]
    V = len(vocab.metadata["tokenizer.ggml.tokens"])

    rng = np.random.default_rng(20261207)
    def normal(shape, std):
        return rng.normal(0.0, std, shape)
    t = {"token_embd.weight": (normal((V, D), 0.5), GGMLType.F32),
         "output_norm.weight": (1 + normal(D, 0.1), GGMLType.F32),
         "output.weight": (normal((V, D), 0.5), GGMLType.F32)}
    for l in range(L):
        b = f"blk.{l}."
        t[b + "attn_norm.weight"] = (1 + normal(D, 0.1), GGMLType.F32)
        t[b + "attn_q.weight"] = (normal((H * HD, D), 1.5 / math.sqrt(D)), GGMLType.Q8_0)
        t[b + "attn_k.weight"] = (normal((HKV * HD, D), 1.5 / math.sqrt(D)), GGMLType.Q8_0)
        t[b + "attn_v.weight"] = (normal((HKV * HD, D), 1 / math.sqrt(D)), GGMLType.Q8_0)
        t[b + "attn_output.weight"] = (normal((D, H * HD), 1 / math.sqrt(H * HD)), GGMLType.Q8_0)
        t[b + "ffn_norm.weight"] = (1 + normal(D, 0.1), GGMLType.F32)
        t[b + "ffn_gate.weight"] = (normal((F, D), 1 / math.sqrt(D)), GGMLType.Q8_0)
        t[b + "ffn_up.weight"] = (normal((F, D), 1 / math.sqrt(D)), GGMLType.Q8_0)
        t[b + "ffn_down.weight"] = (normal((D, F), 1 / math.sqrt(F)), GGMLType.Q8_0)

    path = os.path.join(args.out, "spm_llama.gguf")
    w = GGUFWriter(path, "llama")
    w.add_string("general.name", "spm-llama-tiny")
    w.add_uint32("llama.context_length", 128)
    w.add_uint32("llama.embedding_length", D)
    w.add_uint32("llama.block_count", L)
    w.add_uint32("llama.feed_forward_length", F)
    w.add_uint32("llama.attention.head_count", H)
    w.add_uint32("llama.attention.head_count_kv", HKV)
    w.add_uint32("llama.rope.dimension_count", HD)
    w.add_float32("llama.rope.freq_base", 10000.0)
    w.add_float32("llama.attention.layer_norm_rms_epsilon", 1e-5)
    for key, value in vocab.metadata.items():
        if key.startswith("tokenizer."):
            vtype = vocab.metadata_types[key]
            if isinstance(value, list):
                w.add_array(key, value, _elem_type(key))
            else:
                w.add_value(key, value, vtype)
    for name, (arr, ty) in t.items():
        w.add_tensor(name, arr.astype(np.float32), ty)
    w.write()

    logits, _ = Reference(path).forward(ids)
    logits.astype("<f4").tofile(os.path.join(args.out, "spm_llama.logits.f32"))
    with open(os.path.join(args.out, "spm_llama.json"), "w", encoding="utf-8") as f:
        json.dump({"model": "spm_llama.gguf", "text": case["text"], "add_bos": True, "ids": ids,
                   "n_vocab": V, "max_abs_logit": float(np.abs(logits).max())}, f, ensure_ascii=False, indent=1)
    print(f"{path}: {V} tokens, prompt of {len(ids)} ids, max|logit| {np.abs(logits).max():.3f}")


def _elem_type(key):
    from gguf import GGUFValueType
    return {"tokenizer.ggml.tokens": GGUFValueType.STRING, "tokenizer.ggml.scores": GGUFValueType.FLOAT32,
            "tokenizer.ggml.token_type": GGUFValueType.INT32}[key]


if __name__ == "__main__":
    main()
