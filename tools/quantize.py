#!/usr/bin/python3
"""Quantise a GGUF model file in numpy: the independent check of `ncas quantize`.

  /usr/bin/python3 tools/quantize.py IN.gguf OUT.gguf TYPE     (TYPE: q8_0, q4_0)

Written from ggml's published reference algorithms (ggml-quants.c,
quantize_row_q8_0_ref and quantize_row_q4_0_ref), not from ncas's C++:

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
others are copied. A tensor already quantised is refused unless it is in TYPE
already (then copied). Metadata is copied byte for byte in order, with
general.file_type (llama.cpp's LLAMA_FTYPE: Q8_0 7, Q4_0 2) and
general.quantization_version (2) replaced where they are, else appended.
"""
import struct
import sys

import numpy as np

QK = 32
F32, F16, Q4_0, Q8_0, BF16 = 0, 1, 2, 8, 30
TYPES = {"q8_0": (Q8_0, 7), "q4_0": (Q4_0, 2)}
BLOCK_BYTES = {Q8_0: 34, Q4_0: 18}
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
    return {F32: 4 * n, F16: 2 * n, BF16: 2 * n}.get(t) or n // QK * BLOCK_BYTES[t]


def takes_type(name, ne):
    return (name.endswith(".weight") and len(ne) >= 2 and not name.endswith("ffn_gate_inp.weight")
            and "_norm." not in name and "lambda" not in name and "mod_router" not in name)


def main():
    if len(sys.argv) != 4 or sys.argv[3].lower() not in TYPES:
        sys.exit(__doc__)
    src, dst, (qtype, ftype) = sys.argv[1], sys.argv[2], TYPES[sys.argv[3].lower()]
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

    out_infos, blobs = [], []
    for name, ne, t, off in infos:
        raw = data[base + off:base + off + nbytes(t, ne)]
        if takes_type(name, ne) and t != qtype:
            if t not in (F32, F16, BF16):
                sys.exit(f"{src}: tensor '{name}' is already quantised (type {t})")
            if ne[0] % QK:
                sys.exit(f"{src}: tensor '{name}': rows of {ne[0]} values")
            x = to_f32(raw, t, int(np.prod(ne)))
            raw = (q8_0 if qtype == Q8_0 else q4_0)(x)
            t = qtype
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
