#!/usr/bin/python3
"""Quantise a GGUF model file in numpy: the independent check of `ncas quantize`.

  /usr/bin/python3 tools/quantize.py IN.gguf OUT.gguf TYPE
      TYPE: q8_0, q4_0, q4_k (= q4_k_s), q4_k_m, q5_k (= q5_k_s), q5_k_m, q6_k

Written from ggml's published reference algorithms (ggml-quants.c,
quantize_row_q8_0_ref and quantize_row_q4_0_ref; Q5_0 / Q5_1 are tools/gguf.py's,
the K-quants tools/kquants.py) and llama.cpp's published recipe (llama-quant.cpp,
llama_tensor_get_type), not from ncas's C++:

  Q8_0, per block of 32 values x:
      amax = max |x|;  d = amax / 127 (f32);  id = 1/d (f32; 0 when d == 0)
      q[j] = roundf(x[j] * id)            x[j]*id in f32, roundf = half away from zero
      block = fp16(d) (round to nearest even), 32 x int8 q
  Q4_0, per block of 32 values x:
      max = the x[j] of largest |x[j]| (the first one on ties)
      d = max / -8 (f32);  id = 1/d (f32; 0 when d == 0)
      q[j] = min(15, (int8_t)(x[j] * id + 8.5f))   both operations in f32, the cast truncates
      block = fp16(d), 16 bytes: byte j = q[j] | q[j + 16] << 4

Which tensors (as `ncas quantize`): names ending in ".weight" with two or more
dimensions, except ffn_gate_inp (the router) and norms, λ and mod_router; the
others are copied. A tensor already quantised is refused unless it is in its
target type already (then copied). Metadata is copied byte for byte in order,
with general.file_type (llama.cpp's LLAMA_FTYPE: Q4_0 2, Q8_0 7, Q4_K_S 14,
Q4_K_M 15, Q5_K_S 16, Q5_K_M 17, Q6_K 18) and general.quantization_version (2)
replaced where they are, else appended.

Which type (llama.cpp's recipe for these file types; `recipe` below):
  output.weight, or token_embd.weight when there is no output.weight:
      Q8_0 if ne[0] is not a multiple of the file type's block, else Q6_K
      (a Q8_0 file keeps Q8_0)
  attn_v, the i-th of n (ordered by layer, then name):
      Q4_K_M, Q5_K_M: Q6_K if more_bits(i, n);  Q4_K_S: Q5_K if i < 4;
      Q4_K -> Q5_K for a llama of 80 layers with head_count_kv < head_count (70B);
      Q8_0 if expert_count == 8 (every file type)
  attn_k: Q8_0 if expert_count == 8
  ffn_down of layer i of n = block_count (i from "blk.i." if expert_count > 1,
      else the number of ffn_down tensors before it):
      Q4_K_M, Q5_K_M: Q6_K if more_bits(i, n);  Q4_K_S: Q5_K if i < n // 8
  attn_output: Q5_K for Q4_K_S and Q4_K_M if expert_count == 8
  more_bits(i, n) = i < n//8 or i >= 7*n//8 or (i - n//8) % 3 == 2
Then a K type whose rows (ne[0]) are not a multiple of 256 falls back as
llama.cpp's tensor_type_fallback does: Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0,
or F16 when ne[0] is not a multiple of 32 either.
"""
import struct
import sys

import numpy as np

import gguf
import kquants

QK = 32
F32, F16, Q4_0, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K, BF16 = 0, 1, 2, 6, 7, 8, 12, 13, 14, 30
# TYPE: (default tensor type, llama.cpp file type name, LLAMA_FTYPE)
TYPES = {"q8_0": (Q8_0, "Q8_0", 7), "q4_0": (Q4_0, "Q4_0", 2),
         "q4_k": (Q4_K, "Q4_K_S", 14), "q4_k_s": (Q4_K, "Q4_K_S", 14), "q4_k_m": (Q4_K, "Q4_K_M", 15),
         "q5_k": (Q5_K, "Q5_K_S", 16), "q5_k_s": (Q5_K, "Q5_K_S", 16), "q5_k_m": (Q5_K, "Q5_K_M", 17),
         "q6_k": (Q6_K, "Q6_K", 18)}
BLOCK_BYTES = {Q8_0: 34, Q4_0: 18, Q5_0: 22, Q5_1: 24, Q4_K: 144, Q5_K: 176, Q6_K: 210}
BLOCK_VALUES = {Q8_0: 32, Q4_0: 32, Q5_0: 32, Q5_1: 32, Q4_K: 256, Q5_K: 256, Q6_K: 256}
QUANTISE = {Q8_0: lambda x: q8_0(x), Q4_0: lambda x: q4_0(x), Q5_0: lambda x: gguf.quantize(x, gguf.GGMLType.Q5_0),
            Q5_1: lambda x: gguf.quantize(x, gguf.GGMLType.Q5_1), Q4_K: kquants.quantize_q4_k,
            Q5_K: kquants.quantize_q5_k, Q6_K: kquants.quantize_q6_k}
U32, STRING, ARRAY = 4, 8, 9
SCALAR_SIZE = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def roundf(v):
    """C roundf of f32 values: half away from zero, the +0.5 done exactly (in f64)."""
    a = np.floor(np.abs(v).astype(np.float64) + 0.5)
    return np.copysign(a, v)


def q8_0(x):
    b = x.reshape(-1, QK)
    amax = np.max(np.abs(b), axis=1)
    d = amax / np.float32(127)
    with np.errstate(divide="ignore"):
        idv = np.where(d != 0, np.float32(1) / d, np.float32(0)).astype(np.float32)
    q = roundf((b * idv[:, None]).astype(np.float32)).astype(np.int8)
    out = bytearray()
    dh = d.astype("<f2").view("<u2")
    rec = np.zeros(len(b), dtype=[("d", "<u2"), ("q", "i1", (QK,))])
    rec["d"], rec["q"] = dh, q
    out += rec.tobytes()
    return bytes(out)


def q4_0(x):
    b = x.reshape(-1, QK)
    first = np.argmax(np.abs(b), axis=1)  # argmax gives the first of equal maxima
    mx = b[np.arange(len(b)), first]
    d = mx / np.float32(-8)
    with np.errstate(divide="ignore"):
        idv = np.where(d != 0, np.float32(1) / d, np.float32(0)).astype(np.float32)
    scaled = (b * idv[:, None]).astype(np.float32)
    shifted = (scaled + np.float32(8.5)).astype(np.float32)
    q = np.minimum(15, np.trunc(shifted).astype(np.int32)).astype(np.uint8)
    rec = np.zeros(len(b), dtype=[("d", "<u2"), ("qs", "u1", (QK // 2,))])
    rec["d"] = d.astype("<f2").view("<u2")
    rec["qs"] = q[:, :QK // 2] | (q[:, QK // 2:] << 4)
    return rec.tobytes()


def to_f32(raw, t, n):
    if t == F32:
        return np.frombuffer(raw, "<f4", n)
    if t == F16:
        return np.frombuffer(raw, "<f2", n).astype(np.float32)
    if t == BF16:
        return (np.frombuffer(raw, "<u2", n).astype(np.uint32) << 16).view(np.float32)
    raise ValueError(f"type {t}")


def nbytes(t, ne):
    n = int(np.prod(ne))
    return {F32: 4 * n, F16: 2 * n, BF16: 2 * n}.get(t) or n // BLOCK_VALUES[t] * BLOCK_BYTES[t]


def takes_type(name, ne):
    return (name.endswith(".weight") and len(ne) >= 2 and not name.endswith("ffn_gate_inp.weight")
            and "_norm." not in name and "lambda" not in name and "mod_router" not in name)


def layer(name):
    """N of a "blk.N." name, else -1."""
    parts = name.split(".")
    return int(parts[1]) if len(parts) > 2 and parts[0] == "blk" and parts[1].isdigit() else -1


def more_bits(i, n):
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def recipe(infos, meta, default, fname):
    """{tensor name: type} for the tensors takes_type picks (see the top of this file).
    infos: [(name, ne)]; meta: {key: value} of the scalar metadata used."""
    arch = meta.get("general.architecture", "")
    n_layer = meta.get(arch + ".block_count", 0)
    n_expert = meta.get(arch + ".expert_count", 0)
    heads, heads_kv = meta.get(arch + ".attention.head_count"), meta.get(arch + ".attention.head_count_kv")
    is_70b = arch == "llama" and n_expert != 8 and n_layer == 80 and heads is not None and heads != heads_kv
    names = [(name, ne) for name, ne in infos if takes_type(name, ne)]
    tied = not any(name == "output.weight" for name, _ in infos)
    in_order = sorted(names, key=lambda v: (layer(v[0]), v[0]))   # llama.cpp's weight order
    v_names = [n for n, _ in in_order if "attn_v.weight" in n or "attn_qkv.weight" in n or "attn_kv_b.weight" in n]
    down_names = [n for n, _ in in_order if "ffn_down" in n and n not in v_names]
    out = {}
    for name, ne in names:
        t = default
        if default in (Q8_0, Q4_0, Q4_K, Q5_K, Q6_K):
            if name == "output.weight" or (tied and name == "token_embd.weight"):
                t = Q8_0 if ne[0] % BLOCK_VALUES[default] else (Q6_K if default != Q8_0 else Q8_0)
            elif name == "token_embd.weight":
                pass
            elif name in v_names:
                i, n = v_names.index(name), len(v_names)
                if fname in ("Q4_K_M", "Q5_K_M") and more_bits(i, n):
                    t = Q6_K
                elif fname == "Q4_K_S" and i < 4:
                    t = Q5_K
                if is_70b and t == Q4_K:
                    t = Q5_K
                if n_expert == 8:
                    t = Q8_0
            elif "attn_k.weight" in name:
                if n_expert == 8:
                    t = Q8_0
            elif "attn_q.weight" in name:
                pass
            elif "attn_output.weight" in name:
                if n_expert == 8 and fname in ("Q4_K_S", "Q4_K_M"):
                    t = Q5_K
            elif "ffn_up" in name or "ffn_gate" in name:
                pass
            elif name in down_names:
                i = layer(name) if n_expert > 1 else down_names.index(name)
                if not 0 <= i < n_layer:
                    sys.exit(f"tensor '{name}': no layer in [0, {n_layer}) in its name")
                if fname in ("Q4_K_M", "Q5_K_M") and more_bits(i, n_layer):
                    t = Q6_K
                elif fname == "Q4_K_S" and i < n_layer // 8:
                    t = Q5_K
            if t in (Q4_K, Q5_K, Q6_K) and ne[0] % 256:
                t = {Q4_K: Q5_0, Q5_K: Q5_1, Q6_K: Q8_0}[t] if ne[0] % 32 == 0 else F16
        out[name] = t
    return out


def main():
    if len(sys.argv) != 4 or sys.argv[3].lower() not in TYPES:
        sys.exit(__doc__)
    src, dst, (default, fname, ftype) = sys.argv[1], sys.argv[2], TYPES[sys.argv[3].lower()]
    data = open(src, "rb").read()
    pos = 8
    n_tensors, n_kv = struct.unpack_from("<QQ", data, pos)
    pos += 16

    def skip(vt):
        nonlocal pos
        if vt == STRING:
            (n,) = struct.unpack_from("<Q", data, pos)
            pos += 8 + n
        elif vt == ARRAY:
            et, n = struct.unpack_from("<IQ", data, pos)
            pos += 12
            if et in (STRING, ARRAY):
                for _ in range(n):
                    skip(et)
            else:
                pos += n * SCALAR_SIZE[et]
        else:
            pos += SCALAR_SIZE[vt]

    kvs = []  # (key, raw bytes of the whole entry)
    meta = {}  # the scalar uint and string values the recipe reads
    alignment = 32
    for _ in range(n_kv):
        start = pos
        (n,) = struct.unpack_from("<Q", data, pos)
        key = data[pos + 8:pos + 8 + n].decode()
        pos += 8 + n
        (vt,) = struct.unpack_from("<I", data, pos)
        pos += 4
        if key == "general.alignment":
            (alignment,) = struct.unpack_from("<I", data, pos)
        if vt == U32:
            (meta[key],) = struct.unpack_from("<I", data, pos)
        elif vt == STRING:
            (n,) = struct.unpack_from("<Q", data, pos)
            meta[key] = data[pos + 8:pos + 8 + n].decode()
        skip(vt)
        kvs.append((key, data[start:pos]))

    def u32_entry(key, v):
        k = key.encode()
        return struct.pack("<Q", len(k)) + k + struct.pack("<II", U32, v)

    for key, v in (("general.file_type", ftype), ("general.quantization_version", 2)):
        entry = u32_entry(key, v)
        for i, (k, _) in enumerate(kvs):
            if k == key:
                kvs[i] = (key, entry)
                break
        else:
            kvs.append((key, entry))

    infos = []
    for _ in range(n_tensors):
        (n,) = struct.unpack_from("<Q", data, pos)
        name = data[pos + 8:pos + 8 + n].decode()
        pos += 8 + n
        (nd,) = struct.unpack_from("<I", data, pos)
        ne = list(struct.unpack_from(f"<{nd}Q", data, pos + 4))
        pos += 4 + 8 * nd
        t, off = struct.unpack_from("<IQ", data, pos)
        pos += 12
        infos.append((name, ne, t, off))
    align = lambda v: (v + alignment - 1) // alignment * alignment  # noqa: E731
    base = align(pos)

    target = recipe([(name, ne) for name, ne, _, _ in infos], meta, default, fname)
    out_infos, blobs = [], []
    for name, ne, t, off in infos:
        raw = data[base + off:base + off + nbytes(t, ne)]
        to = target.get(name, t)
        if to != t:
            if t not in (F32, F16, BF16):
                sys.exit(f"{src}: tensor '{name}' is already quantised (type {t})")
            if ne[0] % BLOCK_VALUES.get(to, 1):
                sys.exit(f"{src}: tensor '{name}': rows of {ne[0]} values")
            x = to_f32(raw, t, int(np.prod(ne)))
            raw = x.astype("<f2").tobytes() if to == F16 else QUANTISE[to](x)
            t = to
        out_infos.append((name, ne, t))
        blobs.append(raw)

    head = bytearray(b"GGUF" + struct.pack("<IQQ", 3, len(out_infos), len(kvs)))
    for _, entry in kvs:
        head += entry
    off = 0
    for (name, ne, t), blob in zip(out_infos, blobs):
        k = name.encode()
        head += struct.pack("<Q", len(k)) + k + struct.pack("<I", len(ne))
        head += struct.pack(f"<{len(ne)}Q", *ne) + struct.pack("<IQ", t, off)
        off = align(off + len(blob))
    head += bytes(align(len(head)) - len(head))
    with open(dst, "wb") as f:
        f.write(head)
        for blob in blobs:
            f.write(blob)
            f.write(bytes(align(len(blob)) - len(blob)))


if __name__ == "__main__":
    main()
