// The quantised KV cache rows (docs/spec.md §4, format/quant.hpp kv_row_values):
// a row of n values is ceil(n / 32) ggml blocks, zero-padded at its end, blocks
// of 34 bytes (q8_0: f16 d, int8 q[32]) or 18 bytes (q4_0: f16 d, uint8 qs[16],
// value j in the low nibble of qs[j], value j + 16 in the high one). Rows follow
// one another with no padding, so a block (and a row) starts on an even byte.
// KV_TYPE (specialization constant 1): 0 f32, 1 f16, 2 q8_0, 3 q4_0.
const uint KV_Q8_0 = 2u, KV_Q4_0 = 3u;
uint kv_block_bytes(uint type) { return type == KV_Q8_0 ? 34u : 18u; }
uint kv_blocks(uint n) { return (n + 31u) >> 5; }
