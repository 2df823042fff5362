#!/usr/bin/python3
"""ggml's K-quant super-blocks in numpy, written from ggml's published reference
algorithm (ggml-quants.c: make_qx_quants, quantize_row_q6_K_ref,
dequantize_row_q6_K), every operation in float32 in ggml's order so that the
bytes are ggml's. So far Q6_K only; Q4_K and Q5_K (make_qkx2_quants) are to come.

  /usr/bin/python3 tools/kquants.py [--out tests/data/quant]

writes q6_k_cases.bin, the test data of tests/test_quant.cpp (KQuant tests):
  uint32 n_rows, uint32 n (values per row, a multiple of 256), then per row
  n float32 inputs followed by the n/256 Q6_K blocks numpy made of them.

Q6_K block (210 bytes, 256 values): ql[128] (low 4 bits), qh[64] (high 2
bits), int8 scales[16] (one per 16 values), fp16 d. Value = d * scales[j] * (q - 32).
"""
import argparse
import os
import struct

import numpy as np

QK_K = 256
F = np.float32
GROUP_MAX_EPS = F(1e-15)


def nearest_int(v):
    """ggml's nearest_int: add 1.5 * 2^23 in float32 and read the low mantissa bits."""
    s = (np.asarray(v, dtype=F) + F(12582912.0)).astype(F)
    return (s.view(np.int32) & 0x007FFFFF) - 0x00400000


def make_qx_quants(x, nmax):
    """make_qx_quants(n, nmax, x, L, rmse_type=1, qw=NULL) for every row of x (G, n).
    Returns (scale (G,) float32, L (G, n) int)."""
    x = x.astype(F)
    g, n = x.shape
    ax = np.abs(x)
    first = np.argmax(ax, axis=1)  # the first of equal maxima, as `ax > amax`
    amax = ax[np.arange(g), first]
    mx = x[np.arange(g), first]
    zero = amax < GROUP_MAX_EPS
    mx_safe = np.where(zero, F(1), mx).astype(F)
    w = (x * x).astype(F)

    def pass_(iscale):
        lv = np.clip(nearest_int((iscale[:, None] * x).astype(F)), -nmax, nmax - 1)
        lf = lv.astype(F)
        sumlx = np.zeros(g, F)
        suml2 = np.zeros(g, F)
        for i in range(n):  # sequential float32 sums, as the C loop
            sumlx = (sumlx + ((w[:, i] * x[:, i]).astype(F) * lf[:, i]).astype(F)).astype(F)
            suml2 = (suml2 + ((w[:, i] * lf[:, i]).astype(F) * lf[:, i]).astype(F)).astype(F)
        return lv, sumlx, suml2

    iscale = (F(-nmax) / mx_safe).astype(F)
    lv, sumlx, suml2 = pass_(iscale)
    L = lv + nmax
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(suml2 != 0, sumlx / np.where(suml2 != 0, suml2, F(1)), F(0)).astype(F)
    best = (scale * sumlx).astype(F)
    for step in range(-9, 10):
        if step == 0:
            continue
        iscale = (-(F(nmax) + (F(0.1) * F(step)).astype(F)) / mx_safe).astype(F)
        lv, sumlx, suml2 = pass_(iscale)
        better = (suml2 > 0) & ((sumlx * sumlx).astype(F) > (best * suml2).astype(F))
        L = np.where(better[:, None], lv + nmax, L)
        with np.errstate(divide="ignore", invalid="ignore"):
            new_scale = (sumlx / np.where(suml2 > 0, suml2, F(1))).astype(F)
        scale = np.where(better, new_scale, scale).astype(F)
        best = np.where(better, (scale * sumlx).astype(F), best).astype(F)
    L = np.where(zero[:, None], 0, L)
    scale = np.where(zero, F(0), scale).astype(F)
    return scale, L


def quantize_q6_k(x):
    """quantize_row_q6_K_ref: float32 values (a multiple of 256) -> bytes."""
    x = np.ascontiguousarray(x, dtype=F).reshape(-1, QK_K)
    nb = len(x)
    sub = x.reshape(nb * 16, 16)
    scales, L = make_qx_quants(sub, 32)
    scales = scales.reshape(nb, 16)
    L = L.reshape(nb, QK_K).astype(np.int32)
    abs_s = np.abs(scales)
    first = np.argmax(abs_s, axis=1)
    max_abs = abs_s[np.arange(nb), first]
    max_scale = scales[np.arange(nb), first]
    zero = max_abs < GROUP_MAX_EPS
    with np.errstate(divide="ignore", invalid="ignore"):
        iscale = (F(-128.0) / np.where(zero, F(1), max_scale)).astype(F)
        d = (F(1) / iscale).astype(F)
    d16 = d.astype(np.float16)
    sc = np.minimum(127, nearest_int((iscale[:, None] * scales).astype(F))).astype(np.int8)
    dsub = (d16.astype(F)[:, None] * sc.astype(F)).astype(F)  # (nb, 16)
    dd = np.repeat(dsub, 16, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.clip(nearest_int((x / np.where(dd != 0, dd, F(1))).astype(F)), -32, 31) + 32
    L = np.where(dd != 0, q, L).astype(np.uint8)

    ql = np.zeros((nb, 128), np.uint8)
    qh = np.zeros((nb, 64), np.uint8)
    for j in (0, 128):
        a, b, c, e = (L[:, j + k:j + k + 32] for k in (0, 32, 64, 96))
        o = j // 2
        ql[:, o:o + 32] = (a & 0xF) | ((c & 0xF) << 4)
        ql[:, o + 32:o + 64] = (b & 0xF) | ((e & 0xF) << 4)
        qh[:, j // 4:j // 4 + 32] = (a >> 4) | ((b >> 4) << 2) | ((c >> 4) << 4) | ((e >> 4) << 6)

    rec = np.zeros(nb, dtype=[("ql", "u1", (128,)), ("qh", "u1", (64,)), ("sc", "i1", (16,)), ("d", "<f2")])
    rec["ql"], rec["qh"] = ql, qh
    rec["sc"] = np.where(zero[:, None], 0, sc)
    rec["d"] = np.where(zero, np.float16(0), d16)
    rec["ql"] = np.where(zero[:, None], 0, rec["ql"])
    rec["qh"] = np.where(zero[:, None], 0, rec["qh"])
    return rec.tobytes()


def dequantize_q6_k(raw):
    rec = np.frombuffer(raw, dtype=[("ql", "u1", (128,)), ("qh", "u1", (64,)), ("sc", "i1", (16,)), ("d", "<f2")])
    nb = len(rec)
    out = np.zeros((nb, QK_K), F)
    d = rec["d"].astype(F)
    for half in (0, 1):
        ql = rec["ql"][:, 64 * half:64 * half + 64].astype(np.int32)
        qh = rec["qh"][:, 32 * half:32 * half + 32].astype(np.int32)
        sc = rec["sc"][:, 8 * half:8 * half + 8].astype(F)
        q1 = ((ql[:, :32] & 0xF) | (((qh >> 0) & 3) << 4)) - 32
        q2 = ((ql[:, 32:] & 0xF) | (((qh >> 2) & 3) << 4)) - 32
        q3 = ((ql[:, :32] >> 4) | (((qh >> 4) & 3) << 4)) - 32
        q4 = ((ql[:, 32:] >> 4) | (((qh >> 6) & 3) << 4)) - 32
        is_ = np.arange(32) // 16
        base = 128 * half
        for k, q in enumerate((q1, q2, q3, q4)):
            s = sc[:, is_ + 2 * k]
            out[:, base + 32 * k:base + 32 * k + 32] = ((d[:, None] * s).astype(F) * q.astype(F)).astype(F)
    return out.reshape(-1)


def test_rows():
    rng = np.random.default_rng(22)
    rows = [rng.standard_normal(1024) * 0.02,
            rng.standard_normal(1024) * 3.0,
            rng.standard_t(2, 1024),                        # heavy tails
            np.zeros(1024)]
    r = rng.standard_normal(1024)
    r[:16] = 0; r[300:316] = 1e-20; r[600] = 50.0; r[700] = -80.0  # zero and tiny sub-blocks, outliers
    rows.append(r)
    r = rng.uniform(-1, 1, 1024); r[256:512] = 0                   # a whole zero super-block
    rows.append(r)
    r = np.round(rng.standard_normal(1024) * 8) / 8                 # exact ties for the rounding
    rows.append(r)
    return np.array(rows, dtype=F)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                                   "tests", "data", "quant"))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    rows = test_rows()
    with open(os.path.join(a.out, "q6_k_cases.bin"), "wb") as f:
        f.write(struct.pack("<II", len(rows), rows.shape[1]))
        for r in rows:
            q = quantize_q6_k(r)
            y = dequantize_q6_k(q)
            err = np.sqrt(np.mean((y - r) ** 2)) / max(np.sqrt(np.mean(r.astype(np.float64) ** 2)), 1e-30)
            assert err < 0.05, err
            f.write(r.astype("<f4").tobytes() + q)
    print(f"{len(rows)} rows of {rows.shape[1]} -> {a.out}/q6_k_cases.bin")


if __name__ == "__main__":
    main()
