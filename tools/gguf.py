"""GGUF v3 reader and writer in pure Python + numpy.

Writer
------
    from gguf import GGUFWriter, GGMLType, GGUFValueType
    w = GGUFWriter("model.gguf", "ncas-diffmoe")   # writes general.architecture
    w.add_uint32("ncas-diffmoe.block_count", 3)     # also add_uint8/int8/uint16/int16/
    w.add_float32("ncas-diffmoe.mod.threshold", 0.) #   int32/uint64/int64/float64
    w.add_bool("ncas-diffmoe.expert_weights_norm", True)
    w.add_string("ncas-diffmoe.ffn_kind", "gelu")
    w.add_array("tokenizer.ggml.tokens", ["a", "b"], GGUFValueType.STRING)
    w.add_array("tokenizer.ggml.token_type", [1, 1], GGUFValueType.INT32)
    w.add_tensor("token_embd.weight", emb, GGMLType.Q8_0)  # emb: numpy (V, D)
    w.write()

Keys are written in the order they were added (general.architecture first).
`add_tensor` takes the array in numpy/C order, outermost dimension first: a
PyTorch Linear weight of shape (out, in) is stored as GGUF ne = [in, out] with
the same element order. The tensor name is written as given (add ".weight"
yourself). The array is converted to float32 and then quantised to the
requested type; quantised types need the innermost dimension (last numpy
axis) to be a multiple of 32. Tensor offsets and the data section are aligned
to `alignment` (constructor argument, default 32; a value other than 32 is
also written as general.alignment).

Reader
------
    f = GGUFFile("model.gguf")
    f.metadata["ncas-diffmoe.block_count"]   # int / float / bool / str / list
    f.metadata_types[key]                    # GGUFValueType of the value
    ggml_type, ne, raw = f.tensors["token_embd.weight"]   # ne in GGUF order
    w = f.tensor_f64("token_embd.weight")    # dequantised, numpy shape = reversed(ne)

Arrays come back as Python lists (strings decoded as UTF-8).

Quantisation (ggml's exact block layouts and reference quantisers)
------------------------------------------------------------------
    raw = quantize(x, ggml_type)             # x: any float array, C order -> bytes
    y   = dequantize(raw, ggml_type, n)      # -> float32 array of n values
    tensor_nbytes(ggml_type, n)

  F32 (0), F16 (1): IEEE, round-to-nearest-even.
  BF16 (30): upper 16 bits of f32, round-to-nearest-even (NaN kept quiet).
  Q8_0 (8): blocks of 32 -> fp16 d, 32 x int8; d = amax/127, q = round(x/d)
            (round half away from zero, as C roundf). 34 bytes per block.
  Q4_0 (2): blocks of 32 -> fp16 d, 16 bytes; byte j = q[j] | q[j+16] << 4,
            value = (q - 8) * d; d = (signed value of largest |x|) / -8,
            q = min(15, trunc(x/d + 8.5)). 18 bytes per block.
  Q5_0 (6): blocks of 32 -> fp16 d, qh[4], qs[16]; q = nibble | bit << 4 with the
            nibbles as Q4_0's and bit j of qh (little-endian uint32) element j's 5th;
            value = (q - 16) * d; d = (signed value of largest |x|) / -16,
            q = min(31, trunc(x/d + 16.5)). 22 bytes per block.
  Q5_1 (7): blocks of 32 -> fp16 d, fp16 m, qh[4], qs[16]; value = q * d + m;
            d = (max - min) / 31, m = min, q = trunc((x - min)/d + 0.5). 24 bytes.
"""

import os
import struct
import sys

import numpy as np

GGUF_MAGIC = b"GGUF"
GGUF_VERSION = 3
DEFAULT_ALIGNMENT = 32
QK = 32  # elements per block of Q8_0 / Q4_0


class GGUFValueType:
    UINT8 = 0
    INT8 = 1
    UINT16 = 2
    INT16 = 3
    UINT32 = 4
    INT32 = 5
    FLOAT32 = 6
    BOOL = 7
    STRING = 8
    ARRAY = 9
    UINT64 = 10
    INT64 = 11
    FLOAT64 = 12


class GGMLType:
    F32 = 0
    F16 = 1
    Q4_0 = 2
    Q5_0 = 6
    Q5_1 = 7
    Q8_0 = 8
    Q4_K = 12
    Q5_K = 13
    Q6_K = 14
    BF16 = 30


GGML_TYPE_NAMES = {GGMLType.F32: "F32", GGMLType.F16: "F16", GGMLType.Q4_0: "Q4_0",
                   GGMLType.Q5_0: "Q5_0", GGMLType.Q5_1: "Q5_1",
                   GGMLType.Q8_0: "Q8_0", GGMLType.Q4_K: "Q4_K", GGMLType.Q5_K: "Q5_K",
                   GGMLType.Q6_K: "Q6_K", GGMLType.BF16: "BF16"}

# Q5_0 / Q5_1: blocks of 32 values, bytes per block.
Q5_BLOCK_BYTES = {GGMLType.Q5_0: 22, GGMLType.Q5_1: 24}

# K-quant super-blocks (tools/kquants.py): 256 values, bytes per super-block.
QK_K = 256
K_BLOCK_BYTES = {GGMLType.Q4_K: 144, GGMLType.Q5_K: 176, GGMLType.Q6_K: 210}


def _kquants():
    """tools/kquants.py (beside this file), imported when a K-quant tensor is met."""
    here = os.path.dirname(os.path.abspath(__file__))
    if here not in sys.path:
        sys.path.insert(0, here)
    import kquants
    return kquants

# struct format of each fixed-size scalar value type
_SCALAR_FMT = {
    GGUFValueType.UINT8: "<B", GGUFValueType.INT8: "<b",
    GGUFValueType.UINT16: "<H", GGUFValueType.INT16: "<h",
    GGUFValueType.UINT32: "<I", GGUFValueType.INT32: "<i",
    GGUFValueType.FLOAT32: "<f", GGUFValueType.BOOL: "<?",
    GGUFValueType.UINT64: "<Q", GGUFValueType.INT64: "<q",
    GGUFValueType.FLOAT64: "<d",
}
# numpy dtype of each scalar value type, for reading numeric arrays in one go
_SCALAR_DTYPE = {
    GGUFValueType.UINT8: "<u1", GGUFValueType.INT8: "<i1",
    GGUFValueType.UINT16: "<u2", GGUFValueType.INT16: "<i2",
    GGUFValueType.UINT32: "<u4", GGUFValueType.INT32: "<i4",
    GGUFValueType.FLOAT32: "<f4", GGUFValueType.BOOL: "<u1",
    GGUFValueType.UINT64: "<u8", GGUFValueType.INT64: "<i8",
    GGUFValueType.FLOAT64: "<f8",
}


def _align(n, alignment):
    return (n + alignment - 1) // alignment * alignment


# ---------------------------------------------------------------------------
# Quantisation
# ---------------------------------------------------------------------------

def tensor_nbytes(ggml_type, n):
    """Bytes taken by n elements of ggml_type."""
    if ggml_type == GGMLType.F32:
        return 4 * n
    if ggml_type in (GGMLType.F16, GGMLType.BF16):
        return 2 * n
    if ggml_type in (GGMLType.Q8_0, GGMLType.Q4_0):
        if n % QK:
            raise ValueError(f"{n} elements is not a multiple of the block size {QK}")
        return n // QK * (34 if ggml_type == GGMLType.Q8_0 else 18)
    if ggml_type in Q5_BLOCK_BYTES:
        if n % QK:
            raise ValueError(f"{n} elements is not a multiple of the block size {QK}")
        return n // QK * Q5_BLOCK_BYTES[ggml_type]
    if ggml_type in K_BLOCK_BYTES:
        if n % QK_K:
            raise ValueError(f"{n} elements is not a multiple of the super-block size {QK_K}")
        return n // QK_K * K_BLOCK_BYTES[ggml_type]
    raise ValueError(f"unsupported ggml type {ggml_type}")


def _f32_to_bf16_bits(x):
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    is_nan = np.isnan(np.asarray(x, dtype=np.float32))
    quiet_nan = ((u >> 16) | 64).astype(np.uint16)
    return np.where(is_nan, quiet_nan, rounded)


def _quantize_q8_0(x):
    blocks = x.reshape(-1, QK)                                   # (nb, 32) f32
    amax = np.abs(blocks).max(axis=1)                            # (nb,)
    d = (amax / np.float32(127)).astype(np.float32)
    with np.errstate(divide="ignore"):
        inv_d = np.where(d != 0, np.float32(1) / d, np.float32(0)).astype(np.float32)
    scaled = blocks * inv_d[:, None]                             # f32 product, as ggml
    # C roundf: half away from zero. The + 0.5 is done in float64, where it is
    # exact: in float32, 0.49999997 + 0.5 rounds up to 1.0 (roundf gives 0).
    q = np.copysign(np.floor(np.abs(scaled).astype(np.float64) + 0.5), scaled)
    out = np.empty(len(blocks), dtype=[("d", "<f2"), ("qs", "i1", (QK,))])
    out["d"] = d.astype(np.float16)
    out["qs"] = q.astype(np.int8)
    return out.tobytes()


def _quantize_q4_0(x):
    blocks = x.reshape(-1, QK)                                   # (nb, 32) f32
    idx = np.argmax(np.abs(blocks), axis=1)                      # first largest |x|
    signed_max = blocks[np.arange(len(blocks)), idx]
    d = (signed_max / np.float32(-8)).astype(np.float32)
    with np.errstate(divide="ignore"):
        inv_d = np.where(d != 0, np.float32(1) / d, np.float32(0)).astype(np.float32)
    q = np.trunc(blocks * inv_d[:, None] + np.float32(8.5))     # C (int8_t) cast
    q = np.minimum(q, 15).astype(np.uint8)
    out = np.empty(len(blocks), dtype=[("d", "<f2"), ("qs", "u1", (QK // 2,))])
    out["d"] = d.astype(np.float16)
    out["qs"] = q[:, :QK // 2] | (q[:, QK // 2:] << 4)
    return out.tobytes()


def _q5_bits(q):
    """The 5th bits of (nb, 32) quants as qh (nb, 4) bytes: bit j of a little-endian uint32 for element j."""
    bits = ((q.astype(np.uint32) >> 4) & 1) << np.arange(QK, dtype=np.uint32)
    return np.bitwise_or.reduce(bits, axis=1).astype("<u4").view(np.uint8).reshape(-1, 4)


def _quantize_q5_0(x):
    blocks = x.reshape(-1, QK)                                   # (nb, 32) f32
    idx = np.argmax(np.abs(blocks), axis=1)                      # first largest |x|
    signed_max = blocks[np.arange(len(blocks)), idx]
    d = (signed_max / np.float32(-16)).astype(np.float32)
    with np.errstate(divide="ignore"):
        inv_d = np.where(d != 0, np.float32(1) / d, np.float32(0)).astype(np.float32)
    q = np.trunc(blocks * inv_d[:, None] + np.float32(16.5))    # f32 product, f32 sum, C (int8_t) cast
    q = np.minimum(q, 31).astype(np.uint8)
    out = np.empty(len(blocks), dtype=[("d", "<f2"), ("qh", "u1", (4,)), ("qs", "u1", (QK // 2,))])
    out["d"] = d.astype(np.float16)
    out["qh"] = _q5_bits(q)
    out["qs"] = (q[:, :QK // 2] & 0x0F) | ((q[:, QK // 2:] & 0x0F) << 4)
    return out.tobytes()


def _quantize_q5_1(x):
    blocks = x.reshape(-1, QK)                                   # (nb, 32) f32
    lo, hi = blocks.min(axis=1), blocks.max(axis=1)
    d = ((hi - lo) / np.float32(31)).astype(np.float32)
    with np.errstate(divide="ignore"):
        inv_d = np.where(d != 0, np.float32(1) / d, np.float32(0)).astype(np.float32)
    q = np.trunc((blocks - lo[:, None]) * inv_d[:, None] + np.float32(0.5))  # each step in f32
    q = np.minimum(q, 31).astype(np.uint8)
    out = np.empty(len(blocks), dtype=[("d", "<f2"), ("m", "<f2"), ("qh", "u1", (4,)), ("qs", "u1", (QK // 2,))])
    out["d"] = d.astype(np.float16)
    out["m"] = lo.astype(np.float16)
    out["qh"] = _q5_bits(q)
    out["qs"] = (q[:, :QK // 2] & 0x0F) | ((q[:, QK // 2:] & 0x0F) << 4)
    return out.tobytes()


def _dequantize_q5(raw, ggml_type):
    fields = [("d", "<f2")] + ([("m", "<f2")] if ggml_type == GGMLType.Q5_1 else []) + \
             [("qh", "<u4"), ("qs", "u1", (QK // 2,))]
    b = np.frombuffer(raw, dtype=fields)
    nib = np.concatenate([b["qs"] & 0x0F, b["qs"] >> 4], axis=1).astype(np.int32)
    bit = ((b["qh"][:, None] >> np.arange(QK, dtype=np.uint32)) & 1).astype(np.int32)
    q = nib | (bit << 4)
    d = b["d"].astype(np.float32)[:, None]
    if ggml_type == GGMLType.Q5_0:
        return ((q - 16).astype(np.float32) * d).astype(np.float32).reshape(-1)
    return ((q.astype(np.float32) * d).astype(np.float32) + b["m"].astype(np.float32)[:, None]).reshape(-1)


def quantize(x, ggml_type):
    """Encode the values of x (C order) as ggml_type; returns bytes."""
    x = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    if ggml_type == GGMLType.F32:
        return x.astype("<f4").tobytes()
    if ggml_type == GGMLType.F16:
        return x.astype("<f2").tobytes()
    if ggml_type == GGMLType.BF16:
        return _f32_to_bf16_bits(x).astype("<u2").tobytes()
    if ggml_type == GGMLType.Q8_0:
        tensor_nbytes(ggml_type, x.size)
        return _quantize_q8_0(x)
    if ggml_type == GGMLType.Q4_0:
        tensor_nbytes(ggml_type, x.size)
        return _quantize_q4_0(x)
    if ggml_type in Q5_BLOCK_BYTES:
        tensor_nbytes(ggml_type, x.size)
        return _quantize_q5_0(x) if ggml_type == GGMLType.Q5_0 else _quantize_q5_1(x)
    if ggml_type in K_BLOCK_BYTES:
        tensor_nbytes(ggml_type, x.size)
        kq = _kquants()
        return {GGMLType.Q4_K: kq.quantize_q4_k, GGMLType.Q5_K: kq.quantize_q5_k,
                GGMLType.Q6_K: kq.quantize_q6_k}[ggml_type](x)
    raise ValueError(f"unsupported ggml type {ggml_type}")


def dequantize(raw, ggml_type, n):
    """Decode n values of ggml_type from raw bytes; returns float32 (exact)."""
    raw = bytes(raw[:tensor_nbytes(ggml_type, n)])
    if ggml_type == GGMLType.F32:
        return np.frombuffer(raw, dtype="<f4").astype(np.float32)
    if ggml_type == GGMLType.F16:
        return np.frombuffer(raw, dtype="<f2").astype(np.float32)
    if ggml_type == GGMLType.BF16:
        bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
        return bits.view(np.float32)
    if ggml_type == GGMLType.Q8_0:
        b = np.frombuffer(raw, dtype=[("d", "<f2"), ("qs", "i1", (QK,))])
        return (b["d"].astype(np.float32)[:, None] * b["qs"].astype(np.float32)).reshape(-1)
    if ggml_type == GGMLType.Q4_0:
        b = np.frombuffer(raw, dtype=[("d", "<f2"), ("qs", "u1", (QK // 2,))])
        q = np.concatenate([b["qs"] & 0x0F, b["qs"] >> 4], axis=1).astype(np.float32) - 8
        return (b["d"].astype(np.float32)[:, None] * q).reshape(-1)
    if ggml_type in Q5_BLOCK_BYTES:
        return _dequantize_q5(raw, ggml_type)
    if ggml_type in K_BLOCK_BYTES:
        kq = _kquants()
        return {GGMLType.Q4_K: kq.dequantize_q4_k, GGMLType.Q5_K: kq.dequantize_q5_k,
                GGMLType.Q6_K: kq.dequantize_q6_k}[ggml_type](raw).astype(np.float32)
    raise ValueError(f"unsupported ggml type {ggml_type}")


# ---------------------------------------------------------------------------
# Writer
# ---------------------------------------------------------------------------

def _pack_string(s):
    b = s.encode("utf-8") if isinstance(s, str) else bytes(s)
    return struct.pack("<Q", len(b)) + b


def _pack_scalar(value, vtype):
    if vtype == GGUFValueType.STRING:
        return _pack_string(value)
    return struct.pack(_SCALAR_FMT[vtype], value)


class GGUFWriter:
    def __init__(self, path, arch, alignment=DEFAULT_ALIGNMENT):
        self.path = path
        self.alignment = alignment
        self._kv = []        # (key, packed type + value bytes)
        self._tensors = []   # (name, ne list, ggml_type, raw bytes)
        self.add_string("general.architecture", arch)
        if alignment != DEFAULT_ALIGNMENT:
            self.add_uint32("general.alignment", alignment)

    def _add(self, key, vtype, payload):
        if any(k == key for k, _ in self._kv):
            raise ValueError(f"duplicate key {key}")
        self._kv.append((key, struct.pack("<I", vtype) + payload))

    def add_value(self, key, value, vtype):
        """Any scalar value type (GGUFValueType)."""
        self._add(key, vtype, _pack_scalar(value, vtype))

    def add_uint8(self, key, v): self.add_value(key, v, GGUFValueType.UINT8)
    def add_int8(self, key, v): self.add_value(key, v, GGUFValueType.INT8)
    def add_uint16(self, key, v): self.add_value(key, v, GGUFValueType.UINT16)
    def add_int16(self, key, v): self.add_value(key, v, GGUFValueType.INT16)
    def add_uint32(self, key, v): self.add_value(key, v, GGUFValueType.UINT32)
    def add_int32(self, key, v): self.add_value(key, v, GGUFValueType.INT32)
    def add_uint64(self, key, v): self.add_value(key, v, GGUFValueType.UINT64)
    def add_int64(self, key, v): self.add_value(key, v, GGUFValueType.INT64)
    def add_float32(self, key, v): self.add_value(key, v, GGUFValueType.FLOAT32)
    def add_float64(self, key, v): self.add_value(key, v, GGUFValueType.FLOAT64)
    def add_bool(self, key, v): self.add_value(key, bool(v), GGUFValueType.BOOL)
    def add_string(self, key, v): self.add_value(key, v, GGUFValueType.STRING)

    def add_array(self, key, values, elem_type):
        """Array of scalars or strings (elem_type: a GGUFValueType other than ARRAY)."""
        values = list(values)
        if elem_type == GGUFValueType.STRING:
            body = b"".join(_pack_string(v) for v in values)
        elif elem_type == GGUFValueType.BOOL:
            body = np.asarray(values, dtype=bool).astype("u1").tobytes()
        else:
            body = np.asarray(values).astype(_SCALAR_DTYPE[elem_type]).tobytes()
        self._add(key, GGUFValueType.ARRAY,
                  struct.pack("<IQ", elem_type, len(values)) + body)

    def add_tensor(self, name, array, ggml_type):
        """array in numpy order (outermost first); stored with ne = reversed(shape)."""
        if any(n == name for n, *_ in self._tensors):
            raise ValueError(f"duplicate tensor {name}")
        array = np.asarray(array)
        ne = list(reversed(array.shape)) or [1]
        if ggml_type in (GGMLType.Q8_0, GGMLType.Q4_0, GGMLType.Q5_0, GGMLType.Q5_1) and ne[0] % QK:
            raise ValueError(f"{name}: innermost dimension {ne[0]} is not a multiple of {QK}")
        if ggml_type in K_BLOCK_BYTES and ne[0] % QK_K:
            raise ValueError(f"{name}: innermost dimension {ne[0]} is not a multiple of {QK_K}")
        self._tensors.append((name, ne, ggml_type, quantize(array, ggml_type)))

    def write(self):
        out = bytearray()
        out += GGUF_MAGIC + struct.pack("<IQQ", GGUF_VERSION, len(self._tensors), len(self._kv))
        for key, payload in self._kv:
            out += _pack_string(key) + payload
        offset = 0
        for name, ne, ggml_type, raw in self._tensors:
            out += _pack_string(name) + struct.pack("<I", len(ne))
            out += struct.pack(f"<{len(ne)}Q", *ne)
            out += struct.pack("<IQ", ggml_type, offset)
            offset = _align(offset + len(raw), self.alignment)
        out += bytes(_align(len(out), self.alignment) - len(out))
        for _, _, _, raw in self._tensors:
            out += raw
            out += bytes(_align(len(raw), self.alignment) - len(raw))
        with open(self.path, "wb") as f:
            f.write(out)


# ---------------------------------------------------------------------------
# Reader
# ---------------------------------------------------------------------------

class _Cursor:
    def __init__(self, data):
        self.data = data
        self.pos = 0

    def unpack(self, fmt):
        vals = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return vals if len(vals) > 1 else vals[0]

    def string(self):
        n = self.unpack("<Q")
        s = bytes(self.data[self.pos:self.pos + n]).decode("utf-8")
        self.pos += n
        return s

    def value(self, vtype):
        if vtype == GGUFValueType.STRING:
            return self.string()
        if vtype == GGUFValueType.ARRAY:
            elem_type, n = self.unpack("<IQ")
            if elem_type == GGUFValueType.STRING:
                return [self.string() for _ in range(n)]
            if elem_type == GGUFValueType.ARRAY:
                return [self.value(GGUFValueType.ARRAY) for _ in range(n)]
            dtype = np.dtype(_SCALAR_DTYPE[elem_type])
            arr = np.frombuffer(self.data, dtype=dtype, count=n, offset=self.pos)
            self.pos += n * dtype.itemsize
            return [bool(v) for v in arr] if elem_type == GGUFValueType.BOOL else arr.tolist()
        return self.unpack(_SCALAR_FMT[vtype])


class GGUFFile:
    def __init__(self, path):
        with open(path, "rb") as f:
            data = f.read()
        c = _Cursor(data)
        if data[:4] != GGUF_MAGIC:
            raise ValueError(f"{path}: not a GGUF file")
        c.pos = 4
        version, n_tensors, n_kv = c.unpack("<IQQ")
        if version != GGUF_VERSION:
            raise ValueError(f"{path}: GGUF version {version}, expected {GGUF_VERSION}")
        self.version = version
        self.metadata = {}
        self.metadata_types = {}
        for _ in range(n_kv):
            key = c.string()
            vtype = c.unpack("<I")
            self.metadata[key] = c.value(vtype)
            self.metadata_types[key] = vtype
        self.alignment = self.metadata.get("general.alignment", DEFAULT_ALIGNMENT)
        infos = []
        for _ in range(n_tensors):
            name = c.string()
            n_dims = c.unpack("<I")
            ne = list(struct.unpack_from(f"<{n_dims}Q", data, c.pos))
            c.pos += 8 * n_dims
            ggml_type, offset = c.unpack("<IQ")
            if offset % self.alignment:
                raise ValueError(f"{path}: tensor {name} offset {offset} is not aligned")
            infos.append((name, ggml_type, ne, offset))
        self.data_offset = _align(c.pos, self.alignment)
        self.tensors = {}
        for name, ggml_type, ne, offset in infos:
            start = self.data_offset + offset
            nbytes = tensor_nbytes(ggml_type, int(np.prod(ne)))
            if start + nbytes > len(data):
                raise ValueError(f"{path}: tensor {name} runs past the end of the file")
            self.tensors[name] = (ggml_type, ne, data[start:start + nbytes])

    def tensor_f64(self, name):
        """Dequantised tensor as float64, numpy shape = reversed(ne)."""
        ggml_type, ne, raw = self.tensors[name]
        n = int(np.prod(ne))
        return dequantize(raw, ggml_type, n).astype(np.float64).reshape(list(reversed(ne)))
