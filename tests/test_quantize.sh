#!/usr/bin/env bash
# `ncas quantize` against tools/quantize.py (numpy, written from ggml's published
# algorithm) and against the float64 reference.
#
#   bash tests/test_quantize.sh NCAS_BINARY TINY_DATA_DIR
#
# For Q8_0 and Q4_0 (and Q4_K_M, its rows falling back to Q5_0 and Q8_0) of tiny models
# (tests/data/tiny: ncas-diffmoe F32, F16, BF16, swiglu, llama), and every type
# (q8_0, q4_0, q4_k, q4_k_m, q5_k, q5_k_m, q6_k) of the demo F32 file (models/:
# D = 256, its ffn_down rows of 384 fall back) and of models made here with rows
# of 256 (an 8-layer llama, an 8-expert ncas-diffmoe; an 80-layer GQA llama, whose
# attn_v llama.cpp raises as a 70B's, types only):
#   * the file ncas writes equals the numpy quantiser's byte for byte, and is
#     the same for 1 and 3 threads;
#   * each tensor has the type llama.cpp's recipe gives it: tables written from
#     llama-quant.cpp's rules (use_more_bits, the 8-expert rules, output and tied
#     token_embd in Q6_K, for rows not whole super-blocks llama.cpp's fallback
#     Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, F16 for rows not whole 32s);
#   * every block's round-trip error is within its bound (Q8_0: d/2, Q4_0 and Q5_0: |d|,
#     Q5_1: d/2, plus the fp16 rounding of d (and m); the K-quants: tests/test_quant.cpp's bounds),
#     and norms, λ and routers are the input's bytes;
#   * the file loads and its logits are within docs/spec.md §4's bound
#     (2e-2 · max|logit|) of tools/reference.py run on the same file (skipped,
#     saying so, while the loader refuses K-quant matrices: no kernel yet);
#   * the demo's Q8_0 tensors equal tools/export.py's (models/demo-q8_0.gguf).
# And the refusals: unknown type, quantised input to another type, rows not a
# multiple of 32.
#
# NCAS_QUANTIZE_QUICK=1 (test.sh's arm64 stage, the CLI under qemu: the bytes are what
# may differ there; its asan and meson stages, the release stage runs everything) leaves out the made models (their recipe is integer logic, checked
# on the host) and the demo's q4_k and q5_k (their blocks are q4_k_m's and q5_k_m's).
set -uo pipefail
ncas=$1
tiny=$2
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
py=/usr/bin/python3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fails=$((fails + 1)); }
# expect_fail WHAT NEEDLE COMMAND...: COMMAND fails and says NEEDLE.
expect_fail() {
    local what=$1 needle=$2; shift 2
    if "$@" 2>"$tmp/err" >/dev/null; then bad "$what: succeeded"; return; fi
    grep -qF -- "$needle" "$tmp/err" && ok "$what: '$needle'" || bad "$what: got '$(cat "$tmp/err")'"
}

# quantise NAME SRC TYPE [THREADS] [NUMPY]: both quantisers, compared (the numpy one
# unless NUMPY is "no"); with THREADS "1,3" a 1-thread run too, compared.
quantise() {
    local name=$1 src=$2 type=$3 threads=${4:-1,3} numpy=${5:-yes}
    if ! "$ncas" quantize -t 3 --no-progress "$src" "$tmp/$name.$type.gguf" "$type" 2>"$tmp/err"; then
        bad "$name $type: ncas quantize failed: $(cat "$tmp/err")"; return 1
    fi
    if [ "$threads" = 1,3 ]; then
        "$ncas" quantize -t 1 --no-progress "$src" "$tmp/$name.$type.t1.gguf" "$type" 2>/dev/null
        cmp -s "$tmp/$name.$type.gguf" "$tmp/$name.$type.t1.gguf" && ok "$name $type: 1 and 3 threads write the same file" \
            || bad "$name $type: the thread count changed the file"
    fi
    [ "$numpy" = no ] && return 0
    $py "$root/tools/quantize.py" "$src" "$tmp/$name.$type.np.gguf" "$type" || { bad "$name $type: tools/quantize.py failed"; return 1; }
    if cmp "$tmp/$name.$type.gguf" "$tmp/$name.$type.np.gguf"; then ok "$name $type: equals the numpy quantiser byte for byte"
    else bad "$name $type: differs from the numpy quantiser"; fi
}

# near_reference GOT REF LABEL: logits files within docs/spec.md's 2e-2·max|logit| of each other.
near_reference() {
    $py - "$1" "$2" <<'PY' && ok "$3: logits within 2e-2·max|logit| of the reference ($(cat "$tmp/rel"))" || bad "$3: logits off the reference"
import sys, os
import numpy as np
a = np.fromfile(sys.argv[1], "<f4").astype(np.float64)
r = np.fromfile(sys.argv[2], "<f4").astype(np.float64)
assert a.shape == r.shape and a.size > 0
rel = np.abs(a - r).max() / np.abs(r).max()
open(os.path.join(os.path.dirname(sys.argv[1]), "rel"), "w").write(f"{rel:.2e}")
assert rel <= 2e-2, rel
PY
}

# checks NAME SRC TYPE TOKENS: block error bounds, untouched tensors, logits against the reference.
checks() {
    local name=$1 src=$2 type=$3 tokens=$4
    $py - "$src" "$tmp/$name.$type.gguf" "$type" <<'PY' && ok "$name $type: block error bounds, F32 tensors untouched" || bad "$name $type: block check"
import os, sys
import numpy as np
sys.path.insert(0, os.path.join(os.environ["ROOT"], "tools"))
from gguf import GGUFFile, dequantize, GGMLType as G
a, b, qt = GGUFFile(sys.argv[1]), GGUFFile(sys.argv[2]), sys.argv[3]
ftype = {"q8_0": 7, "q4_0": 2, "q4_k": 14, "q4_k_m": 15, "q5_k": 16, "q5_k_m": 17, "q6_k": 18}[qt]
assert b.metadata["general.file_type"] == ftype, b.metadata["general.file_type"]
assert b.metadata["general.quantization_version"] == 2
QUANT = (G.Q8_0, G.Q4_0, G.Q5_0, G.Q5_1, G.Q4_K, G.Q5_K, G.Q6_K)
n_q = 0
for name, (t, ne, raw) in a.tensors.items():
    t2, ne2, raw2 = b.tensors[name]
    assert ne == ne2, name
    if t2 == G.F16 and t != G.F16:  # a K type's fallback for rows not whole 32s: fp16 rounding
        assert "ffn_down" in name or qt not in ("q8_0", "q4_0"), name
        x = dequantize(raw, t, int(np.prod(ne))).astype(np.float64)
        y = dequantize(raw2, t2, int(np.prod(ne))).astype(np.float64)
        assert (np.abs(x - y) <= np.abs(x) * 2.0 ** -11 + 2.0 ** -25).all(), name
        n_q += 1
        continue
    if t2 not in QUANT:
        assert t2 == t and raw == raw2, f"{name} changed"
        assert len(ne) < 2 or "ffn_gate_inp" in name, f"{name} not quantised"
        continue
    n_q += 1
    assert not any(k in name for k in ("_norm.", "lambda", "ffn_gate_inp", "mod_router")), name
    n = int(np.prod(ne))
    x = dequantize(raw, t, n).astype(np.float64)
    y = dequantize(raw2, t2, n).astype(np.float64)
    err = np.abs(x - y)
    if t2 in (G.Q8_0, G.Q4_0):
        xb, eb = x.reshape(-1, 32), err.reshape(-1, 32)
        amax = np.abs(xb).max(axis=1)
        d = amax / (127 if t2 == G.Q8_0 else 8)
        bound = (0.5 if t2 == G.Q8_0 else 1.0) * d + amax * 2.0 ** -10 + 1e-30
        worst = (eb.max(axis=1) / bound).max()
    elif t2 in (G.Q5_0, G.Q5_1):
        xb, eb = x.reshape(-1, 32), err.reshape(-1, 32)
        lo, hi, amax = xb.min(axis=1), xb.max(axis=1), np.abs(xb).max(axis=1)
        if t2 == G.Q5_0:  # d = |the largest| / 16: half a step, a whole one where q clips at 31
            bound = amax / 16 + amax * 2.0 ** -10 + 1e-30
        else:             # d = (max - min) / 31: half a step, plus the fp16 rounding of d and m
            bound = (hi - lo) / 31 * 0.5 + (hi - lo) * 2.0 ** -10 + np.abs(lo) * 2.0 ** -11 + 1e-30
        worst = (eb.max(axis=1) / bound).max()
    elif t2 == G.Q6_K:
        # half a step of the 16-value sub-block's scale, or its largest |x| where the 6 bits clip
        rec = np.frombuffer(raw2, dtype=[("ql", "u1", (128,)), ("qh", "u1", (64,)), ("sc", "i1", (16,)), ("d", "<f2")])
        step = np.abs(rec["d"].astype(np.float64)[:, None] * rec["sc"].astype(np.float64)).reshape(-1)
        xs, es = x.reshape(-1, 16), err.reshape(-1, 16)
        amax = np.abs(xs).max(axis=1)
        clipped = np.abs(xs) > 31.5 * step[:, None]
        bound = np.where(clipped, amax[:, None], 0.5 * step[:, None] * 1.0001) + 1e-30
        worst = (es / bound).max()
    else:
        # Q4_K (15 steps), Q5_K (31): 1.5 steps of the 32-value sub-block's range, plus the
        # rounding of the 6-bit scale (d/2 per step) and min (dmin/2)
        steps = 15 if t2 == G.Q4_K else 31
        rec = np.frombuffer(raw2[:n // 256 * (144 if steps == 15 else 176)], dtype=[("d", "<f2"), ("dmin", "<f2")] +
                            [("rest", "u1", (140 if steps == 15 else 172,))])
        d, dmin = rec["d"].astype(np.float64), rec["dmin"].astype(np.float64)
        xs, es = x.reshape(-1, 8, 32), err.reshape(-1, 8, 32)
        rng = np.maximum(xs.max(axis=2), 0) - np.minimum(xs.min(axis=2), 0)
        bound = rng / steps * 1.5 + 0.5 * steps * d[:, None] + 0.5 * dmin[:, None] + 1e-30
        worst = (es / bound[:, :, None]).max()
    assert worst <= 1, f"{name} ({t2}): block error {worst:.3f} of its bound"
    rms = np.sqrt((err ** 2).sum() / max((x ** 2).sum(), 1e-300))
    assert rms < {G.Q8_0: 0.01, G.Q4_0: 0.15, G.Q5_0: 0.08, G.Q5_1: 0.08, G.Q4_K: 0.15, G.Q5_K: 0.08, G.Q6_K: 0.05}[t2], f"{name}: rms {rms:.3f}"
assert n_q > 0
PY
    if [ -n "$tokens" ]; then
        if ! "$ncas" logits -m "$tmp/$name.$type.gguf" --ids "$tokens" -o "$tmp/ncas.f32" --no-progress 2>"$tmp/err"; then
            bad "$name $type: ncas logits failed: $(cat "$tmp/err")"; return
        fi
        $py "$root/tools/reference.py" "$tmp/$name.$type.gguf" --tokens "$tokens" --out "$tmp/ref.f32" >/dev/null \
            || { bad "$name $type: reference failed"; return; }
        cp "$tmp/ref.f32" "$tmp/$name.$type.ref.f32"  # for the Vulkan check below
        near_reference "$tmp/ncas.f32" "$tmp/ref.f32" "$name $type"
    fi
}

# types NAME TYPE: each quantised tensor's type against the table the recipe gives
# (tests/test_quantize.sh's own tables below, written from llama.cpp's rules).
types() {
    local name=$1 type=$2
    $py - "$tmp/$name.$type.gguf" "$name" "$type" <<'PY' && ok "$name $type: every tensor has the type llama.cpp's recipe gives" || bad "$name $type: tensor types"
import os, sys
sys.path.insert(0, os.path.join(os.environ["ROOT"], "tools"))
from gguf import GGUFFile, GGML_TYPE_NAMES
f, model, qt = GGUFFile(sys.argv[1]), sys.argv[2], sys.argv[3]

def more_bits(i, n):  # llama.cpp's use_more_bits
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2

base = {"q8_0": "Q8_0", "q4_0": "Q4_0", "q4_k": "Q4_K", "q4_k_m": "Q4_K", "q5_k": "Q5_K", "q5_k_m": "Q5_K",
        "q6_k": "Q6_K"}[qt]
K = ("Q4_K", "Q5_K", "Q6_K")
FALLBACK = {"Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0"}  # llama.cpp's, for rows not whole super-blocks
want = {}
if model == "demo":
    # ncas-diffmoe, 6 layers, 4 experts, D 256, F 384, tied: token_embd is the output (Q6_K);
    # ffn_down_exps rows of 384 are not whole super-blocks: Q4_K -> Q5_0, Q5_K -> Q5_1,
    # Q6_K (q6_k, and the _M mixes' more_bits layers 2 and 5) -> Q8_0
    want["token_embd.weight"] = "Q8_0" if qt == "q8_0" else "Q6_K"
    for l in range(6):
        b = f"blk.{l}."
        for n in ("attn_q", "attn_k", "attn_output", "ffn_up_exps"):
            want[b + n + ".weight"] = base
        v = base
        if qt in ("q4_k_m", "q5_k_m") and l in (2, 5):   # more_bits(l, 6): 5 (>= 7*6//8), 2 and 5 ((l-0) % 3 == 2)
            v = "Q6_K"
        if qt == "q4_k" and l < 4:                         # Q4_K_S: the first 4 attn_v
            v = "Q5_K"
        want[b + "attn_v.weight"] = v
        d = "Q6_K" if qt in ("q4_k_m", "q5_k_m") and l in (2, 5) else base  # Q4_K_S: layers < 6//8, none
        want[b + "ffn_down_exps.weight"] = FALLBACK.get(d, d)
elif model == "llama8":
    # llama, 8 layers, dense, D 256, F 256, 8 heads sharing 1 KV head, untied
    want["output.weight"] = "Q8_0" if qt == "q8_0" else "Q6_K"
    want["token_embd.weight"] = base
    more = [0, 3, 6, 7]                                    # more_bits(l, 8): l < 1, l >= 7, (l-1) % 3 == 2
    assert more == [l for l in range(8) if more_bits(l, 8)]
    for l in range(8):
        b = f"blk.{l}."
        for n in ("attn_q", "attn_k", "attn_output", "ffn_gate", "ffn_up"):
            want[b + n + ".weight"] = base
        v = d = base
        if qt in ("q4_k_m", "q5_k_m") and l in more:
            v = d = "Q6_K"
        if qt == "q4_k":
            v = "Q5_K" if l < 4 else base                  # Q4_K_S: the first 4 attn_v
            d = "Q5_K" if l < 1 else base                  # and ffn_down of layers < 8/8
        want[b + "attn_v.weight"], want[b + "ffn_down.weight"] = v, d
elif model == "llama80":
    # llama, 80 layers, 8 heads sharing 1 KV head: llama.cpp's LLM_TYPE_70B, whose attn_v
    # go from Q4_K to Q5_K; D 256, F 32 (ffn_down rows of 32: Q4_K -> Q5_0, Q6_K -> Q8_0), untied
    want["output.weight"], want["token_embd.weight"] = "Q6_K", "Q4_K"
    for l in range(80):
        b = f"blk.{l}."
        for n in ("attn_q", "attn_k", "attn_output", "ffn_gate", "ffn_up"):
            want[b + n + ".weight"] = "Q4_K"
        want[b + "ffn_down.weight"] = "Q8_0" if more_bits(l, 80) else "Q5_0"
        want[b + "attn_v.weight"] = "Q6_K" if more_bits(l, 80) else "Q5_K"
elif model == "odd_f":
    # llama, D 32, F 40, untied, q4_k_m: rows of 32 (Q4_K -> Q5_0; the output's Q6_K and
    # attn_v's of layer 1, more_bits(1, 2), -> Q8_0), ffn_down rows of 40 not whole 32s
    # either: F16 (llama.cpp's tensor_type_fallback)
    for n in ["token_embd"] + [f"blk.{l}.{t}" for l in range(2) for t in
                               ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up")]:
        want[n + ".weight"] = "Q5_0"
    want["output.weight"] = want["blk.1.attn_v.weight"] = "Q8_0"
    for l in range(2):
        want[f"blk.{l}.ffn_down.weight"] = "F16"
elif model == "moe8":
    # ncas-diffmoe, 2 layers, 8 experts, D 256, F 256, untied: attn_v and attn_k Q8_0 (every
    # type), attn_output Q5_K (Q4_K_S, Q4_K_M), ffn_down of layer 1 Q6_K in the _M mixes
    # (more_bits(1, 2): 1 >= 7*2//8), layer 0 not
    want["output.weight"] = "Q8_0" if qt == "q8_0" else "Q6_K"
    want["token_embd.weight"] = base
    for l in range(2):
        b = f"blk.{l}."
        want[b + "attn_q.weight"] = want[b + "ffn_up_exps.weight"] = base
        want[b + "attn_v.weight"] = want[b + "attn_k.weight"] = "Q8_0"
        want[b + "attn_output.weight"] = "Q5_K" if qt in ("q4_k", "q4_k_m") else base
        want[b + "ffn_down_exps.weight"] = "Q6_K" if qt in ("q4_k_m", "q5_k_m") and l == 1 else base
else:
    sys.exit(f"no table for {model}")
got = {k: GGML_TYPE_NAMES[v[0]] for k, v in f.tensors.items() if v[0] in GGML_TYPE_NAMES and GGML_TYPE_NAMES[v[0]] not in ("F32",)}
bad = {k: (got.get(k), w) for k, w in want.items() if got.get(k) != w}
extra = set(got) - set(want)
assert not bad and not extra, f"(got, want): {bad}; not in the table: {sorted(extra)}"
PY
}

export ROOT=$root

for m in base_f32 base_f16 base_bf16 swiglu_untied llama_dense llama_moe; do
    for type in q8_0 q4_0; do
        quantise "$m" "$tiny/$m.gguf" "$type" && checks "$m" "$tiny/$m.gguf" "$type" "1,5,9,2,33,17,60,4"
    done
done
# Rows of 32 and 64: Q4_K falls back to Q5_0, the output's Q6_K to Q8_0.
for m in base_f32 llama_moe; do
    quantise "$m" "$tiny/$m.gguf" q4_k_m 1 && checks "$m" "$tiny/$m.gguf" q4_k_m "1,5,9,2,33,17,60,4"
done

# Rows of 256: an 8-layer dense llama (use_more_bits, Q4_K_S's first layers) and an
# 8-expert ncas-diffmoe (the 8-expert rules), untied.
if [ "${NCAS_QUANTIZE_QUICK:-0}" = 1 ]; then
    echo "skip the made models (NCAS_QUANTIZE_QUICK)"
else
$py - "$tmp/llama8.gguf" "$tmp/moe8.gguf" "$tmp/odd_f.gguf" <<'PY'
import os, sys
import numpy as np
sys.path.insert(0, os.path.join(os.environ["ROOT"], "tools"))
import make_tiny_models as mt
cfg = dict(arch="llama", D=256, L=8, H=8, Hkv=1, hd=32, mod_layers=(), F=256, E=1, k=1, theta=None, eps=1e-5,
           tied=False, vocab_meta=True)
mt.write_model(sys.argv[1], "llama8", cfg, mt.build_llama(cfg, np.random.default_rng(16)), "F32")
cfg = dict(mt.BASE, D=256, L=2, H=2, Hkv=1, d=64, F=256, E=8, mod_layers=(1,), tied=False)
mt.write_model(sys.argv[2], "moe8", cfg, mt.build_ncas(cfg, np.random.default_rng(8)), "F32")
cfg = dict(arch="llama", D=32, L=2, H=4, Hkv=2, hd=8, mod_layers=(), F=40, E=1, k=1, theta=None, eps=1e-5,
           tied=False, vocab_meta=True)
mt.write_model(sys.argv[3], "odd_f", cfg, mt.build_llama(cfg, np.random.default_rng(40)), "F32")
PY
# A llama "70B" (80 layers, GQA), small: ncas's types against the table, and
# tools/quantize.py's recipe (not run on the 13.6M values) against ncas's file.
$py - "$tmp/llama80.gguf" <<'PY'
import os, sys
import numpy as np
sys.path.insert(0, os.path.join(os.environ["ROOT"], "tools"))
import make_tiny_models as mt
cfg = dict(arch="llama", D=256, L=80, H=8, Hkv=1, hd=32, mod_layers=(), F=32, E=1, k=1, theta=None, eps=1e-5,
           tied=False, vocab_meta=True)
mt.write_model(sys.argv[1], "llama80", cfg, mt.build_llama(cfg, np.random.default_rng(80)), "F16")
PY
quantise llama80 "$tmp/llama80.gguf" q4_k_m 1 no && types llama80 q4_k_m && $py - "$tmp/llama80.gguf" "$tmp/llama80.q4_k_m.gguf" <<'PY' \
    && ok "llama80 q4_k_m: tools/quantize.py's recipe gives ncas's types" || bad "llama80 q4_k_m: tools/quantize.py's recipe"
import os, sys
sys.path.insert(0, os.path.join(os.environ["ROOT"], "tools"))
import quantize
from gguf import GGUFFile
a, b = GGUFFile(sys.argv[1]), GGUFFile(sys.argv[2])
meta = {k: v for k, v in a.metadata.items() if isinstance(v, (int, str))}
got = quantize.recipe([(k, v[1]) for k, v in a.tensors.items()], meta, quantize.Q4_K, "Q4_K_M")
want = {k: v[0] for k, v in b.tensors.items() if k in got}
assert got == want, {k: (got[k], want[k]) for k in got if got[k] != want[k]}
PY
quantise odd_f "$tmp/odd_f.gguf" q4_k_m 1 && types odd_f q4_k_m && checks odd_f "$tmp/odd_f.gguf" q4_k_m "1,5,9,2,33,17,60,4"
for type in q4_k_m q4_k; do
    quantise llama8 "$tmp/llama8.gguf" $type 1 && types llama8 $type && checks llama8 "$tmp/llama8.gguf" $type "1,5,9,2,33,17,60,4"
done
for type in q5_k_m q6_k q4_0; do
    quantise llama8 "$tmp/llama8.gguf" $type 1 no && types llama8 $type
done
for type in q4_k_m q4_k q5_k_m q5_k q6_k q4_0 q8_0; do
    quantise moe8 "$tmp/moe8.gguf" $type 1 && types moe8 $type && checks moe8 "$tmp/moe8.gguf" $type "1,5,9,2,33,17,60,4"
done
fi

demo=$root/models/demo-f32.gguf
if [ -f "$demo" ]; then
    demo_types="q8_0 q4_0 q4_k q4_k_m q5_k q5_k_m q6_k"
    [ "${NCAS_QUANTIZE_QUICK:-0}" = 1 ] && demo_types="q8_0 q4_0 q4_k_m q5_k_m q6_k"
    for type in $demo_types; do
        threads=1; [ $type = q4_k_m ] || [ $type = q4_0 ] && threads=1,3
        quantise demo "$demo" "$type" $threads && types demo "$type" &&
            checks demo "$demo" "$type" "4095,1992,306,258,1056,545,3548,742,3531,1211,44"
    done
    $py - "$tmp/demo.q8_0.gguf" "$root/models/demo-q8_0.gguf" <<'PY' && ok "demo q8_0: every tensor equals tools/export.py's (models/demo-q8_0.gguf)" || bad "demo q8_0: differs from models/demo-q8_0.gguf"
import os, sys
sys.path.insert(0, os.path.join(os.environ["ROOT"], "tools"))
from gguf import GGUFFile
a, b = GGUFFile(sys.argv[1]), GGUFFile(sys.argv[2])
assert list(a.tensors) == list(b.tensors)
for k in a.tensors:
    assert a.tensors[k][0] == b.tensors[k][0] and a.tensors[k][1] == b.tensors[k][1], k
    assert a.tensors[k][2] == b.tensors[k][2], k
PY
    # A K file quantised again: to its own TYPE it is copied; to another, refused.
    if "$ncas" quantize --no-progress "$tmp/demo.q4_k_m.gguf" "$tmp/again.gguf" q4_k_m 2>"$tmp/err"; then
        cmp -s "$tmp/demo.q4_k_m.gguf" "$tmp/again.gguf" && ok "demo q4_k_m quantised to q4_k_m is the same file" \
            || bad "demo q4_k_m quantised to q4_k_m changed"
        expect_fail "K input to another type" "is already Q4_K" "$ncas" quantize --no-progress "$tmp/demo.q4_k_m.gguf" "$tmp/x.gguf" q6_k
    else
        bad "demo q4_k_m quantised again: $(cat "$tmp/err")"
    fi
    # The K files on Vulkan (Mesa's lavapipe where no GPU driver is chosen): the same reference bound.
    lvp=/usr/share/vulkan/icd.d/lvp_icd.x86_64.json
    if "$ncas" logits --list-devices >/dev/null 2>&1 && { [ -n "${VK_ICD_FILENAMES:-}" ] || [ -f "$lvp" ]; }; then
        for type in q4_k_m q5_k_m q6_k; do  # q4_k_m: Q5_0 ffn_down, q5_k_m: Q5_1
            [ -f "$tmp/demo.$type.ref.f32" ] || continue
            if VK_ICD_FILENAMES=${VK_ICD_FILENAMES:-$lvp} "$ncas" logits -m "$tmp/demo.$type.gguf" --backend vulkan --no-progress \
                --ids "4095,1992,306,258,1056,545,3548,742,3531,1211,44" -o "$tmp/vk.f32" 2>"$tmp/err"; then
                near_reference "$tmp/vk.f32" "$tmp/demo.$type.ref.f32" "demo $type on Vulkan"
            else
                bad "demo $type on Vulkan: ncas logits failed: $(cat "$tmp/err")"
            fi
        done
    else
        echo "skip the K files on Vulkan: no Vulkan in this ncas or no lavapipe ICD"
    fi
else
    echo "skip demo: $demo not there"
fi

# Refusals.
expect_fail "unknown type" "unknown type 'q3_k' (expected q8_0, q4_0, q4_k, q4_k_s, q4_k_m, q5_k, q5_k_s, q5_k_m, q6_k, f16, bf16, f32)" \
    "$ncas" quantize "$tiny/base_f32.gguf" "$tmp/x.gguf" q3_k
expect_fail "quantised input to another type" "is already Q8_0" \
    "$ncas" quantize "$tiny/base_q8_0.gguf" "$tmp/x.gguf" q4_0
expect_fail "same file" "same file" "$ncas" quantize "$tiny/base_f32.gguf" "$tiny/base_f32.gguf" q8_0
# A llama file with D = 40: rows of 40 values, not a whole number of blocks.
$py - "$tmp/odd.gguf" <<'PY'
import os, sys
import numpy as np
sys.path.insert(0, os.path.join(os.environ["ROOT"], "tools"))
import make_tiny_models as mt
cfg = dict(arch="llama", D=40, L=1, H=5, Hkv=5, hd=8, mod_layers=(), F=64, E=1, k=1, theta=None, eps=1e-5,
           tied=True, vocab_meta=True)
mt.write_model(sys.argv[1], "odd", cfg, mt.build_llama(cfg, np.random.default_rng(1)), "F32")
PY
expect_fail "rows not a multiple of 32" "has rows of 40 values, not a multiple of 32" \
    "$ncas" quantize --no-progress "$tmp/odd.gguf" "$tmp/x.gguf" q4_0
# The tied output of a K type falls back to Q8_0, which needs whole 32s (llama.cpp refuses it too).
expect_fail "K type, tied output rows not a multiple of 32" "'token_embd.weight' has rows of 40 values, not a multiple of 32 (the Q8_0 block)" \
    "$ncas" quantize --no-progress "$tmp/odd.gguf" "$tmp/x.gguf" q4_k_m
"$ncas" quantize --no-progress "$tiny/base_q8_0.gguf" "$tmp/same.gguf" q8_0 2>/dev/null \
    && cmp -s <($py -c "import sys;sys.path.insert(0,'$root/tools');from gguf import GGUFFile;f=GGUFFile('$tmp/same.gguf');print([f.tensors[k][2]==GGUFFile('$tiny/base_q8_0.gguf').tensors[k][2] for k in f.tensors])" | grep -c False) <(echo 0) \
    && ok "a Q8_0 input quantised to q8_0 is copied" || bad "a Q8_0 input quantised to q8_0"
[ -e "$tmp/x.gguf" ] || [ -e "$tmp/x.gguf.part" ] && bad "a refused run left a file behind" || ok "refused runs leave no file"

echo "$fails failure(s)"
[ "$fails" -eq 0 ]
