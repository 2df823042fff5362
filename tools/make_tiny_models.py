"""Generate the tiny random GGUF test models and their golden outputs.

    /usr/bin/python3 tools/make_tiny_models.py [--out tests/data/tiny]

For every model NAME it writes NAME.gguf, NAME.logits.f32 (raw little-endian
float32, T rows of V, from tools/reference.py) and NAME.json; index.json lists
the models. Weights are seeded and the seed search is deterministic: a model's
seed is advanced until its golden run has the properties it is meant to test
(MoD skipping some but not all tokens, a top-k tie that decides, decision
margins wide enough that an fp32 backend takes the same routing decisions).
See docs/reference.md for the list of models.
"""

import argparse
import json
import math
import os
import sys
import tempfile
import zlib

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gguf import GGMLType, GGUFValueType, GGUFWriter  # noqa: E402
from reference import Reference  # noqa: E402

V = 64
CTX = 64
TOKENS = [0, 17, 42, 5, 63, 17, 29, 8, 51, 42, 3, 36]   # BOS first, repeats on purpose

TOLERANCE = {"F32": 1e-4, "F16": 1e-3, "BF16": 1e-3, "Q8_0": 2e-2, "Q4_0": 2e-2, "Q5_0": 2e-2, "Q5_1": 2e-2,
             "Q6_K": 2e-2, "Q5_K": 2e-2, "Q4_K": 2e-2, "MIX": 2e-2}
WTYPES = {"F32": GGMLType.F32, "F16": GGMLType.F16, "BF16": GGMLType.BF16,
          "Q8_0": GGMLType.Q8_0, "Q4_0": GGMLType.Q4_0, "Q5_0": GGMLType.Q5_0, "Q5_1": GGMLType.Q5_1,
          "Q6_K": GGMLType.Q6_K, "Q5_K": GGMLType.Q5_K, "Q4_K": GGMLType.Q4_K}
# "MIX": K types chosen by tensor, as llama.cpp's Q4_K_M does (and a Q8_0 one among them).
MIX = {"token_embd.weight": GGMLType.Q6_K, "attn_v.weight": GGMLType.Q6_K,
       "ffn_down_exps.weight": GGMLType.Q5_K, "attn_k.weight": GGMLType.Q8_0}


def tensor_type(wtype, tname):
    """The ggml type a quantisable tensor is stored as in a model of weight type wtype."""
    if wtype != "MIX":
        return WTYPES[wtype]
    return MIX.get(tname.split(".", 2)[-1] if tname.startswith("blk.") else tname, GGMLType.Q4_K)

# Margins an fp32 backend needs to take the reference's routing decisions.
MIN_MOD_MARGIN = 1e-3     # |r - threshold|
MIN_GATE_MARGIN = 1e-4    # gap between the k-th and (k+1)-th expert probability

# Base ncas-diffmoe configuration; variants override some entries.
BASE = dict(
    arch="ncas-diffmoe", D=32, L=3, H=4, Hkv=2, d=8, F=32, E=4, k=2,
    theta=31415.926, eps=1e-5,
    lambda_form="vectors",      # "vectors" (q1,k1,q2,k2) or "scalar" (attn_lambda)
    sub_norm=True, lambda_exp=False, lambda_init_meta=None,
    ffn_kind="gelu", expert_weights_norm=True,
    mod_layers=(1, 2), mod_threshold=0.1, mod_scale="sigmoid",
    tied=True, tie_experts=False, vocab_meta=True,
)


def tokenizer_vocab():
    """64 tokens as llama.cpp's gpt2 tokenizer stores them, and the merges making them."""
    merges = ["Ġ t", "t h", "h e", "i n", "e r", "a n", "Ġ a", "r e", "o n", "a t",
              "e n", "n d", "Ġt h", "Ġth e", "o u", "e s", "o r", "Ġ s", "i s", "i t",
              "Ġ w", "a l", "Ġ o", "Ġ c", "l e", "Ġ b"]
    tokens = (["<|endoftext|>"] + [chr(c) for c in range(ord("a"), ord("z") + 1)] + ["Ġ"]
              + [chr(c) for c in range(ord("0"), ord("9") + 1)]
              + [m.replace(" ", "") for m in merges])
    assert len(tokens) == V and len(set(tokens)) == V
    token_type = [3] + [1] * (V - 1)            # 3 = control, 1 = normal
    return tokens, merges, token_type


def normal(rng, shape, std):
    return rng.standard_normal(shape) * std


def build_ncas(cfg, rng):
    """Tensors of an ncas-diffmoe model: name -> (numpy array, quantisable)."""
    D, L, H, Hkv, d, F, E = (cfg[k] for k in ("D", "L", "H", "Hkv", "d", "F", "E"))
    es = cfg.get("embd_std", 0.5)
    t = {"token_embd.weight": (normal(rng, (V, D), es), True),
         "output_norm.weight": (1 + normal(rng, D, 0.1), False)}
    if not cfg["tied"]:
        t["output.weight"] = (normal(rng, (V, D), es), True)
    for l in range(L):
        b = f"blk.{l}."
        t[b + "attn_norm.weight"] = (1 + normal(rng, D, 0.1), False)
        # gain 1.5 on q and k: attention clearly not uniform
        t[b + "attn_q.weight"] = (normal(rng, (2 * H * d, D), 1.5 / math.sqrt(D)), True)
        t[b + "attn_k.weight"] = (normal(rng, (2 * Hkv * d, D), 1.5 / math.sqrt(D)), True)
        t[b + "attn_v.weight"] = (normal(rng, (Hkv * 2 * d, D), 1 / math.sqrt(D)), True)
        t[b + "attn_output.weight"] = (normal(rng, (D, H * 2 * d), 1 / math.sqrt(H * 2 * d)), True)
        if cfg["lambda_form"] == "vectors":
            for v in ("q1", "k1", "q2", "k2"):
                t[b + f"attn_lambda_{v}.weight"] = (normal(rng, d, 0.1), False)
        else:
            t[b + "attn_lambda.weight"] = (rng.uniform(0.3, 0.7, 1), False)
        if cfg["sub_norm"]:
            t[b + "attn_sub_norm.weight"] = (1 + normal(rng, 2 * d, 0.1), False)
        if cfg["lambda_exp"]:
            t[b + "attn_lambda_exp.weight"] = (normal(rng, E, 0.3), False)
        t[b + "ffn_norm.weight"] = (1 + normal(rng, D, 0.1), False)
        gate_inp = normal(rng, (E, D), 2 / math.sqrt(D))
        if cfg["tie_experts"]:
            gate_inp[2] = gate_inp[1]           # experts 1 and 2: exactly equal probabilities
        t[b + "ffn_gate_inp.weight"] = (gate_inp, False)
        t[b + "ffn_up_exps.weight"] = (normal(rng, (E, F, D), 1 / math.sqrt(D)), True)
        if cfg["ffn_kind"] == "swiglu":
            t[b + "ffn_gate_exps.weight"] = (normal(rng, (E, F, D), 1 / math.sqrt(D)), True)
        t[b + "ffn_down_exps.weight"] = (normal(rng, (E, D, F), 1 / math.sqrt(F)), True)
        if l in cfg["mod_layers"]:
            t[b + "mod_router.weight"] = (normal(rng, D, 1 / math.sqrt(D)), False)
    return t


def build_llama(cfg, rng):
    D, L, H, Hkv, hd, F, E = (cfg[k] for k in ("D", "L", "H", "Hkv", "hd", "F", "E"))
    t = {"token_embd.weight": (normal(rng, (V, D), 0.5), True),
         "output_norm.weight": (1 + normal(rng, D, 0.1), False)}
    if not cfg["tied"]:
        t["output.weight"] = (normal(rng, (V, D), 0.5), True)
    for l in range(L):
        b = f"blk.{l}."
        t[b + "attn_norm.weight"] = (1 + normal(rng, D, 0.1), False)
        t[b + "attn_q.weight"] = (normal(rng, (H * hd, D), 1.5 / math.sqrt(D)), True)
        t[b + "attn_k.weight"] = (normal(rng, (Hkv * hd, D), 1.5 / math.sqrt(D)), True)
        t[b + "attn_v.weight"] = (normal(rng, (Hkv * hd, D), 1 / math.sqrt(D)), True)
        t[b + "attn_output.weight"] = (normal(rng, (D, H * hd), 1 / math.sqrt(H * hd)), True)
        t[b + "ffn_norm.weight"] = (1 + normal(rng, D, 0.1), False)
        if E == 1:
            t[b + "ffn_gate.weight"] = (normal(rng, (F, D), 1 / math.sqrt(D)), True)
            t[b + "ffn_up.weight"] = (normal(rng, (F, D), 1 / math.sqrt(D)), True)
            t[b + "ffn_down.weight"] = (normal(rng, (D, F), 1 / math.sqrt(F)), True)
        else:
            t[b + "ffn_gate_inp.weight"] = (normal(rng, (E, D), 2 / math.sqrt(D)), False)
            t[b + "ffn_gate_exps.weight"] = (normal(rng, (E, F, D), 1 / math.sqrt(D)), True)
            t[b + "ffn_up_exps.weight"] = (normal(rng, (E, F, D), 1 / math.sqrt(D)), True)
            t[b + "ffn_down_exps.weight"] = (normal(rng, (E, D, F), 1 / math.sqrt(F)), True)
    return t


def write_model(path, name, cfg, tensors, wtype):
    arch = cfg["arch"]
    w = GGUFWriter(path, arch)
    w.add_string("general.name", name)
    a = arch + "."
    w.add_uint32(a + "context_length", CTX)
    w.add_uint32(a + "embedding_length", cfg["D"])
    w.add_uint32(a + "block_count", cfg["L"])
    if cfg["vocab_meta"]:
        w.add_uint32(a + "vocab_size", V)
    w.add_uint32(a + "feed_forward_length", cfg["F"])
    w.add_uint32(a + "attention.head_count", cfg["H"])
    w.add_uint32(a + "attention.head_count_kv", cfg["Hkv"])
    if cfg["theta"] is not None:
        w.add_float32(a + "rope.freq_base", cfg["theta"])
    w.add_float32(a + "attention.layer_norm_rms_epsilon", cfg["eps"])
    if arch == "llama":
        w.add_uint32(a + "rope.dimension_count", cfg["hd"])
        if cfg["E"] > 1:
            w.add_uint32(a + "expert_count", cfg["E"])
            w.add_uint32(a + "expert_used_count", cfg["k"])
    else:
        w.add_uint32(a + "attention.key_length", cfg["d"])
        w.add_uint32(a + "attention.value_length", 2 * cfg["d"])
        w.add_uint32(a + "expert_count", cfg["E"])
        w.add_uint32(a + "expert_used_count", cfg["k"])
        w.add_bool(a + "expert_weights_norm", cfg["expert_weights_norm"])
        w.add_string(a + "ffn_kind", cfg["ffn_kind"])
        w.add_float32(a + "mod.threshold", cfg["mod_threshold"])
        w.add_string(a + "mod.scale", cfg["mod_scale"])
        if cfg["lambda_init_meta"] is not None:
            w.add_array(a + "attention.lambda_init", cfg["lambda_init_meta"], GGUFValueType.FLOAT32)
    tokens, merges, token_type = tokenizer_vocab()
    w.add_string("tokenizer.ggml.model", "gpt2")
    w.add_array("tokenizer.ggml.tokens", tokens, GGUFValueType.STRING)
    w.add_array("tokenizer.ggml.merges", merges, GGUFValueType.STRING)
    w.add_array("tokenizer.ggml.token_type", token_type, GGUFValueType.INT32)
    w.add_uint32("tokenizer.ggml.bos_token_id", 0)
    w.add_uint32("tokenizer.ggml.eos_token_id", 0)
    for tname, (arr, quantisable) in tensors.items():
        w.add_tensor(tname, arr, tensor_type(wtype, tname) if quantisable else GGMLType.F32)
    w.write()


def compact_json(obj):
    """One top-level key per line, values on one line (ASCII)."""
    lines = [f" {json.dumps(k)}: {json.dumps(v)}" for k, v in obj.items()]
    return "{\n" + ",\n".join(lines) + "\n}\n"


def check_golden(cfg, logits, diag):
    """None when the run tests what the model is meant to test, else the reason."""
    T = len(TOKENS)
    for l in range(cfg["L"]):
        kept = diag["mod_kept"][l]
        if l in cfg.get("mod_layers", ()):
            if not 0 < kept < T:
                return f"MoD layer {l} keeps {kept} of {T} tokens"
        elif kept != T:
            return f"layer {l} without router keeps {kept}"
    if diag["mod_margin"] < MIN_MOD_MARGIN:
        return f"MoD margin {diag['mod_margin']:.3g}"
    if diag["gate_margin"] < MIN_GATE_MARGIN:
        return f"gate margin {diag['gate_margin']:.3g}"
    ties = diag["boundary_ties"]
    if cfg.get("tie_experts"):
        if not ties or any(sorted((a, b)) != [1, 2] for _, _, a, b in ties):
            return f"boundary ties {ties}"
    elif ties:
        return f"unexpected ties {ties}"
    m = float(np.abs(logits).max())
    if not 1.0 <= m <= 30.0:
        return f"max |logit| {m:.3g}"
    return None


def swapped_experts_differ(name, cfg, tensors, logits):
    """Tie model: swapping the tied experts' FFN weights must change the logits,
    so the tie rule (lower index wins) really decides the output."""
    swapped = dict(tensors)
    for tname, (arr, q) in tensors.items():
        if "_exps" in tname:
            arr = arr.copy()
            arr[[1, 2]] = arr[[2, 1]]
            swapped[tname] = (arr, q)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "swapped.gguf")
        write_model(path, name, cfg, swapped, "F32")
        other, _ = Reference(path).forward(TOKENS)
    return np.abs(other - logits).max() > 1e-3 * np.abs(logits).max()


def model_list():
    """(name, config, weight types written from the same weights, description)."""
    def variant(**kw):
        cfg = dict(BASE)
        cfg.update(kw)
        return cfg

    llama = dict(arch="llama", D=32, L=3, H=4, Hkv=2, hd=8, mod_layers=())
    return [
        ("base", BASE, ["F32", "F16", "BF16", "Q8_0", "Q4_0"],
         "lambda from four vectors, attn_sub_norm, GQA H=4 Hkv=2 (H*2d=64 != D=32), gelu experts E=4 k=2, "
         "MoD routers on layers 1,2 (threshold 0.1) skipping some tokens, mod.scale sigmoid, "
         "tied output, lambda_init by formula"),
        ("base5", BASE, ["Q5_0", "Q5_1"],
         "base's configuration (its own seed) in the 5-bit block types Q5_0 and Q5_1, the types "
         "llama.cpp's K-quant mixes fall back to where rows are not whole super-blocks"),
        ("k256", variant(D=256, L=2, H=4, Hkv=2, d=32, F=256, mod_layers=(1,), embd_std=0.5 * math.sqrt(32 / 256)), ["Q6_K", "Q5_K", "Q4_K", "MIX"],
         "every matrix's rows a multiple of 256 (D 256, H*2d 256, F 256) for the K-quant weight types; "
         "MIX: token_embd and attn_v Q6_K, ffn_down_exps Q5_K, attn_k Q8_0, the rest Q4_K (as Q4_K_M mixes); "
         "L=2, MoD router on layer 1, token_embd std scaled by sqrt(32/D) (logits as the D=32 models')"),
        ("scalar_lambda", variant(lambda_form="scalar", sub_norm=False), ["F32"],
         "scalar attn_lambda, no attn_sub_norm"),
        ("lambda_exp", variant(lambda_exp=True), ["F32"],
         "expert-conditional lambda (attn_lambda_exp, gate applied to the attention input)"),
        ("swiglu_untied", variant(ffn_kind="swiglu", tied=False), ["F32"],
         "swiglu experts (ffn_gate_exps), separate output tensor"),
        ("ewn_false_raw", variant(expert_weights_norm=False, mod_scale="raw"), ["F32"],
         "expert_weights_norm false, mod.scale raw"),
        ("mod_none", variant(mod_scale="none", mod_threshold=-0.2), ["F32"],
         "mod.scale none, negative threshold"),
        ("lambda_init_meta", variant(lambda_init_meta=[0.35, 0.05, 0.6]), ["F32"],
         "attention.lambda_init array in the metadata"),
        ("mha", variant(H=2, Hkv=2), ["F32"],
         "Hkv = H = 2 (no GQA), H*2d = D"),
        ("topk_tie", variant(tie_experts=True, mod_layers=()), ["F32"],
         "experts 1 and 2 have identical gate rows: exact probability ties at the "
         "top-2 boundary, lower index must win; no MoD"),
        ("llama_dense", dict(llama, F=64, E=1, k=1, theta=500000.0, eps=1e-6, tied=False,
                             vocab_meta=True), ["F32"],
         "llama dense SwiGLU (ffn_gate/up/down), GQA H=4 Hkv=2, head 8, rope.freq_base 5e5, "
         "eps 1e-6, untied output"),
        ("llama_moe", dict(llama, F=32, E=4, k=2, theta=None, eps=1e-5, tied=True,
                           vocab_meta=False), ["F32"],
         "llama Mixtral-style MoE E=4 k=2, GQA H=4 Hkv=2, no rope.freq_base (default 1e4), "
         "no vocab_size (from tokenizer.ggml.tokens), tied output"),
    ]


def generate(name, cfg, wtypes, out_dir):
    """Search seeds from a name-derived start; write every weight type's files."""
    first_seed = zlib.crc32(name.encode()) % 100000
    for seed in range(first_seed, first_seed + 200):
        rng = np.random.default_rng(seed)
        tensors = (build_llama if cfg["arch"] == "llama" else build_ncas)(cfg, rng)
        results = []
        for wt in wtypes:
            fname = name if len(wtypes) == 1 else f"{name}_{wt.lower()}"
            path = os.path.join(out_dir, fname + ".gguf")
            write_model(path, fname, cfg, tensors, wt)
            logits, diag = Reference(path).forward(TOKENS)
            reason = check_golden(cfg, logits, diag)
            if reason:
                break
            results.append((fname, wt, logits, diag))
        else:
            if cfg.get("tie_experts") and not swapped_experts_differ(name, cfg, tensors, results[0][2]):
                continue
            return seed, results
    raise RuntimeError(f"{name}: no seed gives a usable model")


KV_TYPES = ("q8_0", "q4_0")


def write_kv_goldens(out_dir, fname):
    """kv/NAME.q8_0.logits.f32 / .json, kv/NAME.q4_0.logits.f32 / .json: the reference with
    K and V rounded through the cache's block format (docs/spec.md §4, quantised KV cache),
    and the MoD counts it routed."""
    kv_dir = os.path.join(out_dir, "kv")
    os.makedirs(kv_dir, exist_ok=True)
    for kv in KV_TYPES:
        logits, diag = Reference(os.path.join(out_dir, fname + ".gguf"), kv).forward(TOKENS)
        logits.astype("<f4").tofile(os.path.join(kv_dir, f"{fname}.{kv}.logits.f32"))
        with open(os.path.join(kv_dir, f"{fname}.{kv}.json"), "w") as f:  # MoD routes on the rounded cache's outputs
            f.write(compact_json({"kv_type": kv, "mod_kept": diag["mod_kept"],
                                  "max_abs_logit": float(np.abs(logits).max())}))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description="tiny GGUF models and golden outputs")
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "data", "tiny"))
    ap.add_argument("--kv-only", action="store_true",
                    help="only (re)write the quantised-KV goldens of the models in index.json")
    ap.add_argument("--only", metavar="NAME",
                    help="generate only the model NAME of the list (its weight types) and add it to index.json")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    if args.kv_only:
        with open(os.path.join(args.out, "index.json")) as f:
            for fname in json.load(f)["models"]:
                write_kv_goldens(args.out, fname)
        return
    index = []
    models = model_list()
    if args.only:
        models = [m for m in models if m[0] == args.only]
        if not models:
            sys.exit(f"no model {args.only} in the list")
    for name, cfg, wtypes, description in models:
        seed, results = generate(name, cfg, wtypes, args.out)
        for fname, wt, logits, diag in results:
            logits.astype("<f4").tofile(os.path.join(args.out, fname + ".logits.f32"))
            golden = {
                "model": fname + ".gguf",
                "arch": cfg["arch"],
                "description": description,
                "tokens": TOKENS,
                "n_vocab": V,
                "mod_kept": diag["mod_kept"],
                "experts": diag["experts"],
                "weight_type": wt,
                "max_abs_logit": float(np.abs(logits).max()),
                "tolerance": TOLERANCE[wt],
            }
            with open(os.path.join(args.out, fname + ".json"), "w") as f:
                f.write(compact_json(golden))
            write_kv_goldens(args.out, fname)
            index.append(fname)
            print(f"{fname:18s} seed {seed}  max|logit| {golden['max_abs_logit']:6.2f}  "
                  f"mod_kept {diag['mod_kept']}  ties {len(diag['boundary_ties'])}")
    if args.only:  # into the list's order among the models index.json already has
        with open(os.path.join(args.out, "index.json")) as f:
            have = [m for m in json.load(f)["models"] if m not in index]
        order = [f"{n}_{wt.lower()}" if len(w) > 1 else n for n, _, w, _ in model_list() for wt in w]
        index = sorted(have + index, key=lambda m: order.index(m) if m in order else len(order))
    with open(os.path.join(args.out, "index.json"), "w") as f:
        f.write(compact_json({"models": index}))


if __name__ == "__main__":
    main()
