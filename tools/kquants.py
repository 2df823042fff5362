#!/usr/bin/python3
"""ggml's K-quant super-blocks in numpy, written from ggml's published reference
algorithm (ggml-quants.c: make_qx_quants, quantize_row_q6_K_ref,
dequantize_row_q6_K), every operation in float32 in ggml's order so that the
bytes are ggml's: Q6_K (make_qx_quants), Q4_K and Q5_K (make_qkx2_quants).

  /usr/bin/python3 tools/kquants.py [--out tests/data/quant]

writes q6_k_cases.bin, q4_k_cases.bin and q5_k_cases.bin, the test data of tests/test_quant.cpp:
  uint32 n_rows, uint32 n (values per row, a multiple of 256), then per row
  n float32 inputs followed by the n/256 blocks numpy made of them;
and q5_0_cases.bin, q5_1_cases.bin the same way from tools/gguf.py's Q5_0 / Q5_1
quantisers (blocks of 32).

Q4_K block (144 bytes, 256 values): fp16 d, fp16 dmin, scales[12] (eight 6-bit
scales and eight 6-bit mins, one pair per 32 values), qs[128] (4-bit quants).
Value = d * sc[j] * q - dmin * m[j]. Q5_K block (176 bytes): the same with
qh[32] before qs (the 5th bit of each quant).

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


def seqsum(terms):
    """Sum over the last axis one term at a time in float32, as a C loop does."""
    acc = np.zeros(terms.shape[:-1], F)
    for i in range(terms.shape[-1]):
        acc = (acc + terms[..., i]).astype(F)
    return acc


def make_qkx2_quants(x, w, nmax, rmin, rdelta, nstep):
    """make_qkx2_quants(n, nmax, x, weights, L, &the_min, Laux, rmin, rdelta, nstep, use_mad=false)
    for every row. Returns (scale, the_min, L)."""
    x = x.astype(F)
    w = w.astype(F)
    g, n = x.shape
    mn = x[:, 0].copy()
    mx = x[:, 0].copy()
    sum_w = w[:, 0].copy()
    sum_x = (sum_w * x[:, 0]).astype(F)
    for i in range(1, n):
        mn = np.where(x[:, i] < mn, x[:, i], mn)
        mx = np.where(x[:, i] > mx, x[:, i], mx)
        sum_w = (sum_w + w[:, i]).astype(F)
        sum_x = (sum_x + (w[:, i] * x[:, i]).astype(F)).astype(F)
    mn = np.where(mn > 0, F(0), mn).astype(F)
    flat = mx == mn
    rng_ = np.where(flat, F(1), (mx - mn).astype(F)).astype(F)
    iscale = (F(nmax) / rng_).astype(F)
    scale = (F(1) / iscale).astype(F)
    xm = (x - mn[:, None]).astype(F)
    L = np.clip(nearest_int((iscale[:, None] * xm).astype(F)), 0, nmax)
    Lf = L.astype(F)
    diff = (((scale[:, None] * Lf).astype(F) + mn[:, None]).astype(F) - x).astype(F)
    best_mad = seqsum((w * (diff * diff).astype(F)).astype(F))
    for step in range(nstep + 1):
        # min (and so max - min) is the best one found so far, as in the C loop
        rng_ = np.where(flat, F(1), (mx - mn).astype(F)).astype(F)
        xm = (x - mn[:, None]).astype(F)
        iscale = ((F(rmin) + (F(rdelta) * F(step)).astype(F)).astype(F) + F(nmax)).astype(F) / rng_
        iscale = iscale.astype(F)
        la = np.clip(nearest_int((iscale[:, None] * xm).astype(F)), 0, nmax)
        lf = la.astype(F)
        wl = (w * lf).astype(F)
        sum_l = seqsum(wl)
        sum_l2 = seqsum((wl * lf).astype(F))
        sum_xl = seqsum((wl * x).astype(F))
        D = ((sum_w * sum_l2).astype(F) - (sum_l * sum_l).astype(F)).astype(F)
        ok = D > 0
        Ds = np.where(ok, D, F(1)).astype(F)
        this_scale = (((sum_w * sum_xl).astype(F) - (sum_x * sum_l).astype(F)).astype(F) / Ds).astype(F)
        this_min = (((sum_l2 * sum_x).astype(F) - (sum_l * sum_xl).astype(F)).astype(F) / Ds).astype(F)
        pos = this_min > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            alt = (sum_xl / np.where(sum_l2 != 0, sum_l2, F(1))).astype(F)
        this_scale = np.where(pos, alt, this_scale).astype(F)
        this_min = np.where(pos, F(0), this_min).astype(F)
        d2 = (((this_scale[:, None] * lf).astype(F) + this_min[:, None]).astype(F) - x).astype(F)
        mad = seqsum((w * (d2 * d2).astype(F)).astype(F))
        better = ok & (mad < best_mad)
        L = np.where(better[:, None], la, L)
        best_mad = np.where(better, mad, best_mad).astype(F)
        scale = np.where(better, this_scale, scale).astype(F)
        mn = np.where(better, this_min, mn).astype(F)
    L = np.where(flat[:, None], 0, L)
    scale = np.where(flat, F(0), scale).astype(F)
    return scale, (-mn).astype(F), L


def quantize_q4_k(x):
    """quantize_row_q4_K_ref: float32 values (a multiple of 256) -> bytes."""
    return _quantize_qk_min(x, 15, -1.0, 0.1, 20)


def quantize_q5_k(x):
    """quantize_row_q5_K_ref: as Q4_K with 5-bit quants (nmax 31, rmin -0.5, 15 steps), the 5th bit in qh."""
    return _quantize_qk_min(x, 31, -0.5, 0.1, 15)


def _quantize_qk_min(x, nmax, rmin, rdelta, nstep):
    x = np.ascontiguousarray(x, dtype=F).reshape(-1, QK_K)
    nb = len(x)
    sub = x.reshape(nb * 8, 32)
    sum_x2 = seqsum((sub * sub).astype(F))
    av_x = np.sqrt((sum_x2 / F(32)).astype(F)).astype(F)
    weights = (av_x[:, None] + np.abs(sub)).astype(F)
    scales, mins, L = make_qkx2_quants(sub, weights, nmax, rmin, rdelta, nstep)
    scales, mins = scales.reshape(nb, 8), mins.reshape(nb, 8)
    L = L.reshape(nb, QK_K)
    max_scale = np.zeros(nb, F)
    max_min = np.zeros(nb, F)
    for j in range(8):
        max_scale = np.where(scales[:, j] > max_scale, scales[:, j], max_scale)
        max_min = np.where(mins[:, j] > max_min, mins[:, j], max_min)
    with np.errstate(divide="ignore"):
        inv_scale = np.where(max_scale > 0, F(63) / np.where(max_scale > 0, max_scale, F(1)), F(0)).astype(F)
        inv_min = np.where(max_min > 0, F(63) / np.where(max_min > 0, max_min, F(1)), F(0)).astype(F)
    ls = np.minimum(63, nearest_int((inv_scale[:, None] * scales).astype(F)) & 0xFF)  # (uint8_t) cast
    lm = np.minimum(63, nearest_int((inv_min[:, None] * mins).astype(F)) & 0xFF)
    sc = np.zeros((nb, 12), np.int64)
    for j in range(8):
        if j < 4:
            sc[:, j] = ls[:, j]
            sc[:, j + 4] = lm[:, j]
        else:
            sc[:, j + 4] = (ls[:, j] & 0xF) | ((lm[:, j] & 0xF) << 4)
            sc[:, j - 4] |= (ls[:, j] >> 4) << 6
            sc[:, j] |= (lm[:, j] >> 4) << 6
    d16 = (max_scale / F(63)).astype(F).astype(np.float16)
    dmin16 = (max_min / F(63)).astype(F).astype(np.float16)
    for j in range(8):
        if j < 4:
            s_, m_ = sc[:, j] & 63, sc[:, j + 4] & 63
        else:
            s_ = (sc[:, j + 4] & 0xF) | ((sc[:, j - 4] >> 6) << 4)
            m_ = (sc[:, j + 4] >> 4) | ((sc[:, j] >> 6) << 4)
        d = (d16.astype(F) * s_.astype(F)).astype(F)
        dm = (dmin16.astype(F) * m_.astype(F)).astype(F)
        xs = x[:, 32 * j:32 * j + 32]
        with np.errstate(divide="ignore", invalid="ignore"):
            q = np.clip(nearest_int(((xs + dm[:, None]).astype(F) / np.where(d != 0, d, F(1))[:, None]).astype(F)), 0, nmax)
        L[:, 32 * j:32 * j + 32] = np.where((d != 0)[:, None], q, L[:, 32 * j:32 * j + 32])
    L = L.astype(np.uint8)
    qs = np.zeros((nb, 128), np.uint8)
    qh = np.zeros((nb, 32), np.uint8)
    for k, j in enumerate(range(0, QK_K, 64)):
        l1, l2 = L[:, j:j + 32], L[:, j + 32:j + 64]
        if nmax == 31:  # Q5_K: the 5th bit of value n + j goes to bit 2k of qh[j], of n + j + 32 to bit 2k + 1
            qh |= ((l1 > 15).astype(np.uint8) << (2 * k)) | ((l2 > 15).astype(np.uint8) << (2 * k + 1))
            l1, l2 = l1 & 0xF, l2 & 0xF
        qs[:, 32 * k:32 * k + 32] = l1 | (l2 << 4)
    if nmax == 15:
        rec = np.zeros(nb, dtype=[("d", "<f2"), ("dmin", "<f2"), ("sc", "u1", (12,)), ("qs", "u1", (128,))])
    else:
        rec = np.zeros(nb, dtype=[("d", "<f2"), ("dmin", "<f2"), ("sc", "u1", (12,)), ("qh", "u1", (32,)),
                                  ("qs", "u1", (128,))])
        rec["qh"] = qh
    rec["d"], rec["dmin"], rec["sc"], rec["qs"] = d16, dmin16, sc.astype(np.uint8), qs
    return rec.tobytes()


def dequantize_q5_k(raw):
    return dequantize_q4_k(raw, five_bit=True)


def dequantize_q4_k(raw, five_bit=False):
    if five_bit:
        rec = np.frombuffer(raw, dtype=[("d", "<f2"), ("dmin", "<f2"), ("sc", "u1", (12,)), ("qh", "u1", (32,)),
                                        ("qs", "u1", (128,))])
    else:
        rec = np.frombuffer(raw, dtype=[("d", "<f2"), ("dmin", "<f2"), ("sc", "u1", (12,)), ("qs", "u1", (128,))])
    nb = len(rec)
    out = np.zeros((nb, QK_K), F)
    d, dmin = rec["d"].astype(F), rec["dmin"].astype(F)
    sc = rec["sc"].astype(np.int64)
    for j in range(8):
        if j < 4:
            s_, m_ = sc[:, j] & 63, sc[:, j + 4] & 63
        else:
            s_ = (sc[:, j + 4] & 0xF) | ((sc[:, j - 4] >> 6) << 4)
            m_ = (sc[:, j + 4] >> 4) | ((sc[:, j] >> 6) << 4)
        q = rec["qs"][:, 32 * (j // 2):32 * (j // 2) + 32].astype(np.int64)
        q = (q & 0xF) if j % 2 == 0 else (q >> 4)
        if five_bit:
            q = q + ((rec["qh"].astype(np.int64) >> j) & 1) * 16
        d1 = (d * s_.astype(F)).astype(F)
        m1 = (dmin * m_.astype(F)).astype(F)
        out[:, 32 * j:32 * j + 32] = ((d1[:, None] * q.astype(F)).astype(F) - m1[:, None]).astype(F)
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
    for name, quant, dequant, bound in (("q6_k", quantize_q6_k, dequantize_q6_k, 0.05),
                                        ("q4_k", quantize_q4_k, dequantize_q4_k, 0.15),
                                        ("q5_k", quantize_q5_k, dequantize_q5_k, 0.08)):
        with open(os.path.join(a.out, f"{name}_cases.bin"), "wb") as f:
            f.write(struct.pack("<II", len(rows), rows.shape[1]))
            for r in rows:
                q = quant(r)
                y = dequant(q)
                err = np.sqrt(np.mean((y - r) ** 2)) / max(np.sqrt(np.mean(r.astype(np.float64) ** 2)), 1e-30)
                assert err < bound, (name, err)
                f.write(r.astype("<f4").tobytes() + q)
        print(f"{len(rows)} rows of {rows.shape[1]} -> {a.out}/{name}_cases.bin")
    import gguf  # tools/gguf.py: Q5_0 / Q5_1 (blocks of 32)
    for name, t, bound in (("q5_0", gguf.GGMLType.Q5_0, 0.1), ("q5_1", gguf.GGMLType.Q5_1, 0.1)):
        with open(os.path.join(a.out, f"{name}_cases.bin"), "wb") as f:
            f.write(struct.pack("<II", len(rows), rows.shape[1]))
            for r in rows:
                q = gguf.quantize(r, t)
                y = gguf.dequantize(q, t, r.size)
                err = np.sqrt(np.mean((y - r) ** 2)) / max(np.sqrt(np.mean(r.astype(np.float64) ** 2)), 1e-30)
                assert err < bound, (name, err)
                f.write(r.astype("<f4").tobytes() + q)
        print(f"{len(rows)} rows of {rows.shape[1]} -> {a.out}/{name}_cases.bin")


if __name__ == "__main__":
    main()
