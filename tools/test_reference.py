"""Self-check of tools/gguf.py, tools/reference.py and the golden test data.

    /usr/bin/python3 tools/test_reference.py      (exit status 0 = all passed)

1. GGUF writer -> reader round trip for every metadata and weight type.
2. Quantisers against blocks derived by hand.
3. The incremental reference against full-sequence implementations written
   here in batched matrix form (causal mask, MoD as a key mask): a plain
   transformer in the dense limit, and a general one run on every golden model.
4. Every formula switch changes the logits.
"""

import json
import math
import os
import struct
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_tiny_models as mtm  # noqa: E402
from gguf import (GGMLType, GGUFFile, GGUFValueType, GGUFWriter,  # noqa: E402
                  dequantize, quantize)
from reference import Reference  # noqa: E402

TINY = os.path.join(HERE, "..", "tests", "data", "tiny")
TMP = tempfile.mkdtemp(prefix="ncas_ref_test_")


# ---------------------------------------------------------------------------
# 1. round trip
# ---------------------------------------------------------------------------

def test_round_trip():
    rng = np.random.default_rng(1)
    for alignment in (32, 64):
        path = os.path.join(TMP, f"rt{alignment}.gguf")
        w = GGUFWriter(path, "test-arch", alignment=alignment)
        scalars = [("u8", GGUFValueType.UINT8, 250), ("i8", GGUFValueType.INT8, -120),
                   ("u16", GGUFValueType.UINT16, 65000), ("i16", GGUFValueType.INT16, -32000),
                   ("u32", GGUFValueType.UINT32, 4_000_000_000), ("i32", GGUFValueType.INT32, -2_000_000_000),
                   ("u64", GGUFValueType.UINT64, 2 ** 63 + 5), ("i64", GGUFValueType.INT64, -2 ** 62),
                   ("f32", GGUFValueType.FLOAT32, 0.25), ("f64", GGUFValueType.FLOAT64, math.pi),
                   ("b", GGUFValueType.BOOL, True), ("s", GGUFValueType.STRING, "héllo Ġ")]
        for key, vtype, value in scalars:
            w.add_value(key, value, vtype)
        w.add_array("a_str", ["x", "", "ÿz"], GGUFValueType.STRING)
        w.add_array("a_i32", [1, -2, 3], GGUFValueType.INT32)
        w.add_array("a_f32", [0.5, -1.5], GGUFValueType.FLOAT32)
        w.add_array("a_bool", [True, False], GGUFValueType.BOOL)
        w.add_array("a_u64", [], GGUFValueType.UINT64)
        arrays = {}
        for ggml_type in (GGMLType.F32, GGMLType.F16, GGMLType.BF16, GGMLType.Q8_0, GGMLType.Q4_0):
            for shape in ((3, 64), (2, 3, 32), (32,)):
                a = rng.standard_normal(shape).astype(np.float32)
                name = f"t{ggml_type}_{len(shape)}.weight"
                arrays[name] = (a, ggml_type)
                w.add_tensor(name, a, ggml_type)
        w.write()

        f = GGUFFile(path)
        assert f.metadata["general.architecture"] == "test-arch"
        assert f.alignment == alignment
        for key, vtype, value in scalars:
            assert f.metadata[key] == value, (key, f.metadata[key])
            assert f.metadata_types[key] == vtype
        assert f.metadata["a_str"] == ["x", "", "ÿz"]
        assert f.metadata["a_i32"] == [1, -2, 3]
        assert f.metadata["a_f32"] == [0.5, -1.5]
        assert f.metadata["a_bool"] == [True, False]
        assert f.metadata["a_u64"] == []
        with open(path, "rb") as fh:
            assert fh.read(4) == b"GGUF" and struct.unpack("<I", fh.read(4))[0] == 3
        assert f.data_offset % alignment == 0
        for name, (a, ggml_type) in arrays.items():
            t, ne, raw = f.tensors[name]
            assert t == ggml_type and ne == list(reversed(a.shape))
            assert bytes(raw) == quantize(a, ggml_type)
            got = f.tensor_f64(name)
            assert got.shape == a.shape and got.dtype == np.float64
            expect = {GGMLType.F32: a, GGMLType.F16: a.astype(np.float16),
                      GGMLType.BF16: bf16_by_hand(a)}.get(ggml_type)
            if expect is not None:
                assert np.array_equal(got, expect.astype(np.float64)), name
            else:
                # blockwise error bound: Q8_0 half a step of amax/127, Q4_0 one step of amax/8
                blocks = a.reshape(-1, 32)
                step = np.abs(blocks).max(axis=1, keepdims=True) / (127 if ggml_type == GGMLType.Q8_0 else 8)
                err = np.abs(got.reshape(-1, 32) - blocks)
                assert np.all(err <= step * (0.51 if ggml_type == GGMLType.Q8_0 else 1.01)), name
    # Q8_0 rounds as C roundf: 0.49999997 (just below one half) gives 0, 2.5 gives 3.
    edge = np.zeros(32, np.float32)
    edge[:5] = [127, np.float32(0.49999997), -np.float32(0.49999997), 2.5, -2.5]
    assert list(np.frombuffer(quantize(edge, GGMLType.Q8_0)[2:7], np.int8)) == [127, 0, 0, 3, -3]
    print("round trip: ok")


def bf16_by_hand(a):
    """Round-to-nearest-even to bf16, one element at a time in Python integers."""
    out = []
    for v in a.reshape(-1):
        u = struct.unpack("<I", struct.pack("<f", v))[0]
        upper, lower = u >> 16, u & 0xFFFF
        if lower > 0x8000 or (lower == 0x8000 and upper & 1):
            upper += 1
        out.append(struct.unpack("<f", struct.pack("<I", upper << 16))[0])
    return np.array(out, dtype=np.float32).reshape(a.shape)


# ---------------------------------------------------------------------------
# 2. quantisers against hand-derived blocks
# ---------------------------------------------------------------------------

def test_hand_blocks():
    # Q8_0: amax 127 -> d = 1, q = roundf(x) (half away from zero)
    x = np.zeros(32, np.float32)
    x[:8] = [127, -127, 0.5, -0.5, 2.5, -2.5, 3.49, 0.51]
    q = [127, -127, 1, -1, 3, -3, 3, 1] + [0] * 24
    expect = struct.pack("<e", 1.0) + struct.pack("<32b", *q)
    assert quantize(x, GGMLType.Q8_0) == expect
    assert np.array_equal(dequantize(expect, GGMLType.Q8_0, 32), np.array(q, np.float32))

    # Q4_0 block 1: largest |x| is -8 -> d = -8/-8 = 1, q = min(15, trunc(x + 8.5))
    b1 = np.zeros(32, np.float32)
    b1[[0, 1, 2, 3, 4, 5, 16, 17, 18, 19]] = [-8, 7, 1, -1, 0.4, 0.6, -0.6, 7.9, -7.6, 0.49]
    q1 = [8] * 32
    q1[:6] = [0, 15, 9, 7, 8, 9]
    q1[16:20] = [7, 15, 0, 8]        # trunc(7.9)=7; trunc(16.4)=16 -> 15; trunc(0.9)=0; trunc(8.99)=8
    # Q4_0 block 2: largest |x| is +8 at index 3 (first of the two) -> d = -1, q = trunc(-x + 8.5)
    b2 = np.zeros(32, np.float32)
    b2[[0, 3, 20, 31]] = [2, 8, -8, -3.2]
    q2 = [8] * 32
    q2[0], q2[3], q2[20], q2[31] = 6, 0, 15, 11   # trunc(6.5), trunc(0.5), min(15, 16), trunc(11.7)
    expect = b""
    for d, qs in ((1.0, q1), (-1.0, q2)):
        expect += struct.pack("<e", d) + bytes(qs[j] | (qs[j + 16] << 4) for j in range(16))
    assert quantize(np.concatenate([b1, b2]), GGMLType.Q4_0) == expect
    deq = dequantize(expect, GGMLType.Q4_0, 64)
    assert np.array_equal(deq[:32], np.array(q1, np.float32) - 8)
    assert np.array_equal(deq[32:], -(np.array(q2, np.float32) - 8))
    # second block round-trips -8 as (15 - 8) * -1 = -7: ggml's asymmetric range
    assert deq[32 + 20] == -7.0

    # BF16: 1 -> 0x3F80; exact halfway rounds to even; above halfway rounds up
    vals = np.array([1.0, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -8 + 2 ** -20, -2.0], np.float32)
    assert quantize(vals, GGMLType.BF16) == struct.pack("<5H", 0x3F80, 0x3F80, 0x3F82, 0x3F81, 0xC000)
    # F16: 1/3 -> 0x3555
    assert quantize(np.array([1 / 3], np.float32), GGMLType.F16) == struct.pack("<H", 0x3555)
    print("hand blocks: ok")


# ---------------------------------------------------------------------------
# 3. full-sequence implementations, batched with masks
# ---------------------------------------------------------------------------

def norm_rows(x, w, eps):
    return x / np.sqrt((x ** 2).mean(-1, keepdims=True) + eps) * w


def softmax_rows(s):
    s = s - s.max(-1, keepdims=True)
    e = np.exp(s)
    return e / e.sum(-1, keepdims=True)


def rope_batched(x, theta):
    """x (T, n, w): pairs (2i, 2i+1) as complex numbers times e^{i p theta^(-2i/w)}."""
    T, _, width = x.shape
    freq = theta ** (-np.arange(0, width, 2) / width)               # (w/2,)
    rot = np.exp(1j * np.arange(T)[:, None] * freq)[:, None, :]     # (T, 1, w/2)
    z = (x[..., 0::2] + 1j * x[..., 1::2]) * rot
    out = np.empty_like(x)
    out[..., 0::2], out[..., 1::2] = z.real, z.imag
    return out


def gelu(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def plain_transformer(path, tokens):
    """Dense limit of an ncas-diffmoe file (E=1, no MoD, λ=0, no sub-norm):
    a textbook pre-norm transformer whose attention uses only the first map."""
    f = GGUFFile(path)
    md = {k.split(".", 1)[1]: v for k, v in f.metadata.items() if k.startswith("ncas-diffmoe.")}
    W = lambda n: f.tensor_f64(n + ".weight")  # noqa: E731
    D, H, L = md["embedding_length"], md["attention.head_count"], md["block_count"]
    d = D // (2 * H)
    T = len(tokens)
    mask = np.tril(np.ones((T, T), bool))
    x = W("token_embd")[tokens]                                      # (T, D)
    for l in range(L):
        b = f"blk.{l}."
        assert float(W(b + "attn_lambda")[0]) == 0.0
        xn = norm_rows(x, W(b + "attn_norm"), 1e-5)
        q = rope_batched((xn @ W(b + "attn_q").T).reshape(T, 2 * H, d), 10000.0)
        k = rope_batched((xn @ W(b + "attn_k").T).reshape(T, 2 * H, d), 10000.0)
        v = (xn @ W(b + "attn_v").T).reshape(T, H, 2 * d)
        heads = []
        for h in range(H):
            s = np.where(mask, q[:, 2 * h] @ k[:, 2 * h].T / np.sqrt(d), -np.inf)
            heads.append(softmax_rows(s) @ v[:, h])
        x = x + np.concatenate(heads, axis=1) @ W(b + "attn_output").T
        hn = norm_rows(x, W(b + "ffn_norm"), 1e-5)
        x = x + gelu(hn @ W(b + "ffn_up_exps")[0].T) @ W(b + "ffn_down_exps")[0].T
    return norm_rows(x, W("output_norm"), 1e-5) @ W("token_embd").T


def batched_forward(path, tokens):
    """General full-sequence forward for both architectures, written apart from
    reference.py. Returns (logits (T, V), mod_kept, experts)."""
    f = GGUFFile(path)
    arch = f.metadata["general.architecture"]
    md = {k[len(arch) + 1:]: v for k, v in f.metadata.items() if k.startswith(arch + ".")}
    W = lambda n: f.tensor_f64(n + ".weight")  # noqa: E731
    has = lambda n: n + ".weight" in f.tensors  # noqa: E731
    diff = arch == "ncas-diffmoe"
    D, L, H = md["embedding_length"], md["block_count"], md["attention.head_count"]
    Hkv = md.get("attention.head_count_kv", H)
    maps = 2 if diff else 1
    dk = md.get("attention.key_length", D // (maps * H))
    eps = md.get("attention.layer_norm_rms_epsilon", 1e-5)
    theta = md.get("rope.freq_base", 10000.0)
    k_used = md.get("expert_used_count", 1)
    ewn = md.get("expert_weights_norm", True)
    swiglu = md.get("ffn_kind", "gelu") == "swiglu" or not diff
    lam_init = md.get("attention.lambda_init", [0.8 - 0.6 * np.exp(-0.3 * l) for l in range(L)])
    T = len(tokens)
    causal = np.tril(np.ones((T, T), bool))                          # [query, key]
    x = W("token_embd")[tokens]                                      # (T, D)
    mod_kept, experts = [], []

    def topk_gates(logits, normalise):                               # logits (T, E)
        p = softmax_rows(logits)
        idx = np.argsort(-p, axis=1, kind="stable")[:, :k_used]      # ties: lower index first
        g = np.take_along_axis(p, idx, axis=1)
        return idx, (g / g.sum(1, keepdims=True) if normalise else g)

    for l in range(L):
        b = f"blk.{l}."
        routed, s = np.ones(T, bool), np.ones(T)
        if has(b + "mod_router"):
            r = x @ W(b + "mod_router")
            routed = r > md.get("mod.threshold", 0.0)
            s = {"sigmoid": 1 / (1 + np.exp(-r)), "raw": r, "none": np.ones(T)}[md.get("mod.scale", "sigmoid")]
        mod_kept.append(int(routed.sum()))
        # keys: earlier-or-same positions routed into this layer (own row kept so
        # skipped query rows stay finite; their result is discarded below)
        mask = (causal & routed[None, :]) | np.eye(T, dtype=bool)
        xn = norm_rows(x, W(b + "attn_norm"), eps)
        q = rope_batched((xn @ W(b + "attn_q").T).reshape(T, maps * H, dk), theta)
        k = rope_batched((xn @ W(b + "attn_k").T).reshape(T, maps * Hkv, dk), theta)
        v = (xn @ W(b + "attn_v").T).reshape(T, Hkv, -1)
        lam = np.zeros(T)
        if diff:
            if has(b + "attn_lambda"):
                lam += W(b + "attn_lambda")[0]
            else:
                q1, k1, q2, k2 = (W(b + "attn_lambda_" + n) for n in ("q1", "k1", "q2", "k2"))
                lam += np.exp(q1 @ k1) - np.exp(q2 @ k2) + lam_init[l]
            if has(b + "attn_lambda_exp"):
                idx, g = topk_gates(xn @ W(b + "ffn_gate_inp").T, True)
                lam += (g * W(b + "attn_lambda_exp")[idx]).sum(1)
        heads = []
        for h in range(H):
            g = h * Hkv // H
            maps_out = [softmax_rows(np.where(mask, q[:, maps * h + m] @ k[:, maps * g + m].T / np.sqrt(dk), -np.inf))
                        for m in range(maps)]
            a = maps_out[0] - lam[:, None] * maps_out[1] if diff else maps_out[0]
            o = a @ v[:, g]                                          # (T, dv)
            if has(b + "attn_sub_norm"):
                o = norm_rows(o, W(b + "attn_sub_norm"), 1e-5) * (1 - lam_init[l])
            heads.append(o)
        hres = x + np.concatenate(heads, axis=1) @ W(b + "attn_output").T
        hn = norm_rows(hres, W(b + "ffn_norm"), eps)
        if has(b + "ffn_up_exps"):
            up, down = W(b + "ffn_up_exps"), W(b + "ffn_down_exps")          # (E,F,D), (E,D,F)
            gate = W(b + "ffn_gate_exps") if swiglu else None
        else:
            up, down = W(b + "ffn_up")[None], W(b + "ffn_down")[None]
            gate = W(b + "ffn_gate")[None] if swiglu else None
        if has(b + "ffn_gate_inp"):
            idx, gw = topk_gates(hn @ W(b + "ffn_gate_inp").T, ewn)
        else:
            idx, gw = np.zeros((T, 1), int), np.ones((T, 1))
        # every expert on every token, then pick: (E, T, D)
        pre = np.einsum("efd,td->etf", up, hn)
        if swiglu:
            gpre = np.einsum("efd,td->etf", gate, hn)
            act = gpre / (1 + np.exp(-gpre)) * pre
        else:
            act = gelu(pre)
        ffn_all = np.einsum("edf,etf->etd", down, act)
        moe = sum(gw[:, j:j + 1] * ffn_all[idx[:, j], np.arange(T)] for j in range(idx.shape[1]))
        y = hres + moe
        x = np.where(routed[:, None], x + s[:, None] * (y - x), x)
        experts.append([[int(e) for e in idx[t]] if routed[t] else None for t in range(T)])
    out = W("output") if has("output") else W("token_embd")
    return norm_rows(x, W("output_norm"), eps) @ out.T, mod_kept, experts


def write_dense_limit(path):
    """ncas-diffmoe file with E=1 and k=1 by default (keys absent), no MoD,
    scalar λ = 0, no sub-norm, default key_length, rope base and eps."""
    rng = np.random.default_rng(7)
    D, H, F, L, V = 32, 2, 32, 2, 64
    d = D // (2 * H)
    w = GGUFWriter(path, "ncas-diffmoe")
    for key, val in (("embedding_length", D), ("block_count", L), ("feed_forward_length", F),
                     ("attention.head_count", H), ("vocab_size", V), ("context_length", 64)):
        w.add_uint32("ncas-diffmoe." + key, val)
    w.add_tensor("token_embd.weight", rng.standard_normal((V, D)) * 0.5, GGMLType.F32)
    w.add_tensor("output_norm.weight", 1 + 0.1 * rng.standard_normal(D), GGMLType.F32)
    for l in range(L):
        b = f"blk.{l}."
        for name, shape in (("attn_norm", (D,)), ("attn_q", (2 * H * d, D)), ("attn_k", (2 * H * d, D)),
                            ("attn_v", (H * 2 * d, D)), ("attn_output", (D, H * 2 * d)), ("ffn_norm", (D,)),
                            ("ffn_up_exps", (1, F, D)), ("ffn_down_exps", (1, D, F))):
            base = 1.0 if len(shape) == 1 else 0.0
            w.add_tensor(b + name + ".weight", base + rng.standard_normal(shape) * (
                0.1 if len(shape) == 1 else 1.5 / np.sqrt(shape[-1])), GGMLType.F32)
        w.add_tensor(b + "attn_lambda.weight", np.zeros(1), GGMLType.F32)
    w.write()


def close(a, b, rel):
    return np.abs(a - b).max() <= rel * np.abs(b).max()


def test_dense_limit():
    path = os.path.join(TMP, "dense_limit.gguf")
    write_dense_limit(path)
    tokens = [0, 5, 9, 5, 33, 63, 1, 2, 9]
    logits, diag = Reference(path).forward(tokens)
    assert close(logits, plain_transformer(path, tokens), 1e-12)
    assert close(logits, batched_forward(path, tokens)[0], 1e-12)
    assert diag["mod_kept"] == [len(tokens)] * 2
    print("dense limit: ok")


def test_goldens():
    with open(os.path.join(TINY, "index.json")) as fh:
        names = json.load(fh)["models"]
    assert len(names) >= 15
    for name in names:
        with open(os.path.join(TINY, name + ".json")) as fh:
            golden = json.load(fh)
        path = os.path.join(TINY, golden["model"])
        tokens = golden["tokens"]
        stored = np.fromfile(os.path.join(TINY, name + ".logits.f32"), dtype="<f4")
        stored = stored.reshape(len(tokens), golden["n_vocab"]).astype(np.float64)
        logits, diag = Reference(path).forward(tokens)
        b_logits, b_kept, b_experts = batched_forward(path, tokens)
        assert close(logits, b_logits, 1e-10), name
        assert diag["mod_kept"] == b_kept == golden["mod_kept"], name
        assert diag["experts"] == b_experts == golden["experts"], name
        assert close(stored, logits, 1e-6), name          # stored as float32
        assert abs(golden["max_abs_logit"] - np.abs(logits).max()) < 1e-9 * golden["max_abs_logit"]
        assert golden["tolerance"] == mtm.TOLERANCE[golden["weight_type"]]
    print(f"goldens: {len(names)} models agree with the batched implementation: ok")


# ---------------------------------------------------------------------------
# 4. every switch matters
# ---------------------------------------------------------------------------

def test_switches():
    cfg = dict(mtm.BASE)
    tensors = mtm.build_ncas(cfg, np.random.default_rng(11))

    def run(tag, c=cfg, t=tensors):
        path = os.path.join(TMP, tag + ".gguf")
        mtm.write_model(path, tag, c, t, "F32")
        return Reference(path).forward(mtm.TOKENS)

    base, base_diag = run("sw_base")
    assert 0 < base_diag["mod_kept"][1] < len(mtm.TOKENS)

    def variant_cfg(**kw):
        c = dict(cfg)
        c.update(kw)
        return c

    def edit(drop=(), add=None):
        t = {n: v for n, v in tensors.items() if not any(s in n for s in drop)}
        t.update(add or {})
        return t

    rng = np.random.default_rng(12)
    L, D, F, E, d = cfg["L"], cfg["D"], cfg["F"], cfg["E"], cfg["d"]
    changes = {
        "mod_scale_raw": (variant_cfg(mod_scale="raw"), tensors),
        "mod_scale_none": (variant_cfg(mod_scale="none"), tensors),
        "mod_threshold": (variant_cfg(mod_threshold=0.6), tensors),
        "no_mod": (cfg, edit(drop=["mod_router"])),
        "ewn_false": (variant_cfg(expert_weights_norm=False), tensors),
        "k1": (variant_cfg(k=1), tensors),
        "swiglu": (variant_cfg(ffn_kind="swiglu"), edit(add={
            f"blk.{l}.ffn_gate_exps.weight": (rng.standard_normal((E, F, D)) / np.sqrt(D), True)
            for l in range(L)})),
        "lambda_init_meta": (variant_cfg(lambda_init_meta=[0.1, 0.2, 0.3]), tensors),
        "no_sub_norm": (cfg, edit(drop=["attn_sub_norm"])),
        "lambda_exp": (cfg, edit(add={f"blk.{l}.attn_lambda_exp.weight": (rng.standard_normal(E) * 0.3, False)
                                      for l in range(L)})),
        "scalar_lambda": (cfg, edit(drop=["attn_lambda_"], add={
            f"blk.{l}.attn_lambda.weight": (np.full(1, 0.5), False) for l in range(L)})),
        "untied": (variant_cfg(tied=False), edit(add={
            "output.weight": (rng.standard_normal((mtm.V, D)) * 0.5, True)})),
        "theta": (variant_cfg(theta=10000.0), tensors),
        "eps": (variant_cfg(eps=1e-2), tensors),
        "lambda_vec": (cfg, edit(add={"blk.0.attn_lambda_q1.weight": (np.full(d, 0.2), False)})),
    }
    for tag, (c, t) in changes.items():
        logits, _ = run("sw_" + tag, c, t)
        assert not close(logits, base, 1e-6), f"switch {tag} does not change the logits"
    print(f"switches: {len(changes)} switches each change the logits: ok")


def permuted_logits(name, golden_name, perm):
    """Logits of golden model golden_name (from model_list entry name) with its experts reordered by perm (gate rows,
    expert slabs and λ_exp together), and of the model itself."""
    with open(os.path.join(TINY, golden_name + ".json")) as fh:
        golden = json.load(fh)
    cfg = {n: c for n, c, _, _ in mtm.model_list()}[name]
    f = GGUFFile(os.path.join(TINY, golden["model"]))
    per_expert = ("_exps", "ffn_gate_inp", "attn_lambda_exp")
    tensors = {n: (f.tensor_f64(n)[perm] if any(p in n for p in per_expert) else f.tensor_f64(n), True)
               for n in f.tensors}
    path = os.path.join(TMP, name + "_permuted.gguf")
    mtm.write_model(path, name, cfg, tensors, "F32")
    permuted, _ = Reference(path).forward(golden["tokens"])
    logits, diag = Reference(os.path.join(TINY, golden["model"])).forward(golden["tokens"])
    return permuted, logits, diag


def test_tie_rule():
    """Reordering experts leaves a tie-free model's logits unchanged but changes
    the tie model's: there the lower expert index decides."""
    permuted, logits, diag = permuted_logits("base", "base_f32", [0, 2, 1, 3])
    assert not diag["boundary_ties"] and close(permuted, logits, 1e-12)
    permuted, logits, diag = permuted_logits("topk_tie", "topk_tie", [0, 2, 1, 3])
    assert diag["boundary_ties"] and not close(permuted, logits, 1e-3)
    print("tie rule: ok")


if __name__ == "__main__":
    test_round_trip()
    test_hand_blocks()
    test_dense_limit()
    test_goldens()
    test_switches()
    test_tie_rule()
    print("all reference checks passed")
