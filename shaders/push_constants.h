// Push constants of every kernel, one struct each, one uint, int or float a
// line (all 4-byte scalars, so the GLSL push-constant layout and the C++ layout
// agree member for member). The single source: tools/gen_spirv.py writes the
// C++ structs from this file (include/ncas/vk/generated/push_constants.hpp,
// comments included) with each offset and size static_asserted against what
// glslang reports, and fails on a member no shader reads.
//
// Fields named *_at are word indices into the uint control buffer ("ctrl"),
// which holds everything the GPU decides at run time (MoD routes, expert
// lists, KV lengths); NONE means "not used".

struct matmul_pc {    // y[slot, r] (+)= scale[slot] · Σ_c W[r, c] · x[slot, c]
    uint rows;        // output features (weight rows)
    uint cols;        // input features
    uint w_offset;    // bytes from the weight binding's start to row 0
    uint n_max;       // slots dispatched
    uint count_at;    // ctrl word with the number of active slots, or NONE: n_max
    uint x_index_at;  // ctrl list mapping slot -> input row, or NONE: row = slot
    uint y_index_at;  // ctrl list mapping slot -> output row, or NONE
    uint scale_at;    // ctrl list of f32 scales per slot, or NONE: 1
    uint accumulate;  // 0: y = W·x;  1: y += scale · W·x
};

struct rms_norm_pc {  // y[slot] = x[row] / sqrt(mean(x[row]²) + eps) ⊙ w
    uint n;           // row width
    uint n_max;
    uint count_at;
    uint index_at;    // ctrl list slot -> source row, or NONE: row = src_row0 + slot
    uint src_row0;
    float eps;
};

struct embed_pc {     // x[t] = dequant(token_embd[tokens[t]])
    uint n_embd;
    uint n_tokens;
    uint tokens_at;   // ctrl list of token ids
};

struct route_pc {     // Mixture-of-Depths decision and compaction, plus KV bookkeeping
    uint n_embd;
    uint n_tokens;
    uint pos0;        // position of token 0
    uint layer;
    uint has_router;  // 0: every token is routed in with s = 1
    uint scale_mode;  // 0 sigmoid, 1 raw, 2 none
    float threshold;
    uint batch;       // B: length of the lists in the route record
    uint route_at;    // route record: n, kv_base, routed[B], s[B], pos[B]
    uint kv_len_at;   // per-layer cache lengths [L]
    uint kept_at;     // per-layer statistics: tokens kept [L]
};

struct rope_store_pc { // RoPE on q and k of each routed token; k, v appended to the layer's cache
    uint q_dim;
    uint k_dim;
    uint v_dim;
    uint head_k;      // d: the RoPE half-head width
    uint batch;
    uint route_at;
    uint n_ctx;       // rows of the rope table; also the cache capacity
    uint layer;
};

struct kv_quant_pc {  // k (rotated) and v rows of the routed tokens into q8_0 / q4_0 cache blocks
    uint k_dim;
    uint v_dim;
    uint route_at;
};

struct attention_pc {  // both softmax maps in one pass over the layer's cache
    uint n_head;
    uint group;       // H / Hkv
    uint n_maps;      // 2 differential, 1 standard
    uint head_k;
    uint head_v;
    uint q_dim;
    uint k_dim;
    uint v_dim;
    uint route_at;
    uint lambda_at;   // ctrl list of per-token λ_t, or NONE: lambda for all
    uint has_sub_norm;
    float lambda;
    float scale;      // 1/sqrt(d)
    float sub_scale;  // 1 − λ_init
};

struct moe_route_pc {  // gate softmax, top-k, per-expert token lists (or λ_t)
    uint n_expert;
    uint k;
    uint n_max;
    uint count_at;
    uint renorm;
    uint has_gate;    // 0: every token uses expert 0 at weight 1
    uint lambda_mode; // 1: write λ_t = lambda + Σ ĝ·λ_exp instead of expert lists
    uint batch;
    uint moe_at;      // moe record: count[E], rows[E·B], scale[E·B], ids[B·k], weights[B·k], lambda_t[B]
    uint use_at;      // statistics of this layer: tokens per expert [E]
    float lambda;
};

struct ffn_act_pc {   // up = gelu_tanh(up)  or  up = silu(gate) ⊙ up
    uint n_ff;
    uint n_max;
    uint count_at;
    uint swiglu;
};

struct residual_pc {
    uint n_embd;
    uint batch;
    uint route_at;
    uint mode;        // 0: h[i] = x[routed[i]];  1: x[routed[i]] = mix(x, h[i])
    uint lerp;        // mode 1: 0 x = h, 1 x += s·(h − x)
};

struct kv_truncate_pc { // per layer: keep the cached rows at positions < n_past
    uint n_layer;
    uint n_ctx;
    uint kv_len_at;
    uint n_past;
};

struct read_sum_pc {  // total += Σ data (uint words, mod 2^32): the bandwidth probe
    uint n_vec4;      // uvec4s in the binding
};
