#!/usr/bin/env bash
# `ncas quantize` against tools/quantize.py (numpy, written from ggml's published
# algorithm) and against the float64 reference.
#
#   bash tests/test_quantize.sh NCAS_BINARY TINY_DATA_DIR
#
# For Q8_0 and Q4_0, of tiny models (tests/data/tiny: ncas-diffmoe F32, F16,
# BF16, swiglu, llama) and the demo F32 file (models/):
#   * the file ncas writes equals the numpy quantiser's byte for byte, and is
#     the same for 1 and 3 threads;
#   * every block's round-trip error is within its bound (Q8_0: d/2, Q4_0: |d|,
#     plus the fp16 rounding of d), and norms, λ and routers are the input's bytes;
#   * the file loads and its logits are within docs/spec.md §4's bound
#     (2e-2 · max|logit|) of tools/reference.py run on the same file;
#   * the demo's Q8_0 tensors equal tools/export.py's (models/demo-q8_0.gguf).
# And the refusals: unknown type, quantised input to another type, rows not a
# multiple of 32.
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

# quantise NAME SRC TYPE: both quantisers, compared.
quantise() {
    local name=$1 src=$2 type=$3
    if ! "$ncas" quantize -t 3 --no-progress "$src" "$tmp/$name.$type.gguf" "$type" 2>"$tmp/err"; then
        bad "$name $type: ncas quantize failed: $(cat "$tmp/err")"; return 1
    fi
    "$ncas" quantize -t 1 --no-progress "$src" "$tmp/$name.$type.t1.gguf" "$type" 2>/dev/null
    cmp -s "$tmp/$name.$type.gguf" "$tmp/$name.$type.t1.gguf" && ok "$name $type: 1 and 3 threads write the same file" \
        || bad "$name $type: the thread count changed the file"
    $py "$root/tools/quantize.py" "$src" "$tmp/$name.$type.np.gguf" "$type" || { bad "$name $type: tools/quantize.py failed"; return 1; }
    if cmp "$tmp/$name.$type.gguf" "$tmp/$name.$type.np.gguf"; then ok "$name $type: equals the numpy quantiser byte for byte"
    else bad "$name $type: differs from the numpy quantiser"; fi
}

# checks NAME SRC TYPE TOKENS: block error bounds, untouched tensors, logits against the reference.
checks() {
    local name=$1 src=$2 type=$3 tokens=$4
    $py - "$src" "$tmp/$name.$type.gguf" "$type" <<'PY' && ok "$name $type: block error bounds, F32 tensors untouched" || bad "$name $type: block check"
import os, sys
import numpy as np
sys.path.insert(0, os.path.join(os.environ["ROOT"], "tools"))
from gguf import GGUFFile, dequantize, GGMLType
a, b, qt = GGUFFile(sys.argv[1]), GGUFFile(sys.argv[2]), sys.argv[3]
want = GGMLType.Q8_0 if qt == "q8_0" else GGMLType.Q4_0
assert b.metadata["general.file_type"] == (7 if qt == "q8_0" else 2), b.metadata["general.file_type"]
assert b.metadata["general.quantization_version"] == 2
n_q = 0
for name, (t, ne, raw) in a.tensors.items():
    t2, ne2, raw2 = b.tensors[name]
    assert ne == ne2, name
    if t2 != want:
        assert t2 == t and raw == raw2, f"{name} changed"
        assert len(ne) < 2 or "ffn_gate_inp" in name, f"{name} not quantised"
        continue
    n_q += 1
    assert not any(k in name for k in ("_norm.", "lambda", "ffn_gate_inp", "mod_router")), name
    n = int(np.prod(ne))
    x = dequantize(raw, t, n).astype(np.float64).reshape(-1, 32)
    y = dequantize(raw2, t2, n).astype(np.float64).reshape(-1, 32)
    amax = np.abs(x).max(axis=1)
    d = amax / (127 if qt == "q8_0" else 8)
    bound = (0.5 if qt == "q8_0" else 1.0) * d + amax * 2.0 ** -10 + 1e-30
    err = np.abs(x - y).max(axis=1)
    worst = (err / bound).max()
    assert worst <= 1, f"{name}: block error {worst:.3f} of its bound"
assert n_q > 0
PY
    if [ -n "$tokens" ]; then
        "$ncas" logits -m "$tmp/$name.$type.gguf" --ids "$tokens" -o "$tmp/ncas.f32" --no-progress 2>/dev/null \
            || { bad "$name $type: ncas logits failed"; return; }
        $py "$root/tools/reference.py" "$tmp/$name.$type.gguf" --tokens "$tokens" --out "$tmp/ref.f32" >/dev/null \
            || { bad "$name $type: reference failed"; return; }
        $py - "$tmp/ncas.f32" "$tmp/ref.f32" <<'PY' && ok "$name $type: logits within 2e-2·max|logit| of the reference ($(cat "$tmp/rel"))" || bad "$name $type: logits off the reference"
import sys, os
import numpy as np
a = np.fromfile(sys.argv[1], "<f4").astype(np.float64)
r = np.fromfile(sys.argv[2], "<f4").astype(np.float64)
assert a.shape == r.shape and a.size > 0
rel = np.abs(a - r).max() / np.abs(r).max()
open(os.path.join(os.path.dirname(sys.argv[1]), "rel"), "w").write(f"{rel:.2e}")
assert rel <= 2e-2, rel
PY
    fi
}
export ROOT=$root

for m in base_f32 base_f16 base_bf16 swiglu_untied llama_dense llama_moe; do
    for type in q8_0 q4_0; do
        quantise "$m" "$tiny/$m.gguf" "$type" && checks "$m" "$tiny/$m.gguf" "$type" "1,5,9,2,33,17,60,4"
    done
done

demo=$root/models/demo-f32.gguf
if [ -f "$demo" ]; then
    for type in q8_0 q4_0; do
        quantise demo "$demo" "$type" && checks demo "$demo" "$type" "4095,1992,306,258,1056,545,3548,742,3531,1211,44"
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
else
    echo "skip demo: $demo not there"
fi

# Refusals.
expect_fail() {
    local what=$1 needle=$2; shift 2
    if "$@" 2>"$tmp/err" >/dev/null; then bad "$what: succeeded"; return; fi
    grep -qF -- "$needle" "$tmp/err" && ok "$what: '$needle'" || bad "$what: got '$(cat "$tmp/err")'"
}
expect_fail "unknown type" "unknown type 'q3_k'" "$ncas" quantize "$tiny/base_f32.gguf" "$tmp/x.gguf" q3_k
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
"$ncas" quantize --no-progress "$tiny/base_q8_0.gguf" "$tmp/same.gguf" q8_0 2>/dev/null \
    && cmp -s <($py -c "import sys;sys.path.insert(0,'$root/tools');from gguf import GGUFFile;f=GGUFFile('$tmp/same.gguf');print([f.tensors[k][2]==GGUFFile('$tiny/base_q8_0.gguf').tensors[k][2] for k in f.tensors])" | grep -c False) <(echo 0) \
    && ok "a Q8_0 input quantised to q8_0 is copied" || bad "a Q8_0 input quantised to q8_0"
[ -e "$tmp/x.gguf" ] || [ -e "$tmp/x.gguf.part" ] && bad "a refused run left a file behind" || ok "refused runs leave no file"

echo "$fails failure(s)"
[ "$fails" -eq 0 ]
