#version 450
#extension GL_GOOGLE_include_directive : require
// MoE routing for the n routed tokens of a layer (docs/spec.md §1.2), one workgroup:
// softmax of the gate logits, top-k (ties: lower expert index), renormalised
// weights. Then either λ_t = λ + Σ ĝ_e · λ_exp[e] (lambda_mode), or per expert
// the list of (token, weight) in token order, as the CPU groups them.
#include "common.glsl"

const uint MAX_E = 64, MAX_K = 8;  // checked by the host

layout(std430, binding = 0) readonly buffer logits_buf { float logits[]; };  // [n, E]
layout(std430, binding = 1) readonly buffer lexp_buf { float lambda_exp[]; };
layout(std430, binding = 2) buffer ctrl_buf { uint ctrl[]; };
layout(push_constant) uniform pc_block { moe_route_pc p; };

void main() {
    const uint E = p.n_expert, K = p.k, B = p.batch;
    const uint count_at = p.moe_at, rows_at = count_at + E, scale_at = rows_at + E * B;
    const uint ids_at = scale_at + E * B, w_at = ids_at + B * K, lambda_at = w_at + B * K;
    const uint n = p.count_at == NONE ? p.n_max : ctrl[p.count_at];

    for (uint i = gl_LocalInvocationIndex; i < n; i += WG) {
        if (p.has_gate == 0u) {
            ctrl[ids_at + i * K] = 0u;
            ctrl[w_at + i * K] = floatBitsToUint(1.0);
            continue;
        }
        float pr[MAX_E];
        float mx = -1.0 / 0.0;
        for (uint e = 0; e < E; ++e) mx = max(mx, logits[i * E + e]);
        float sum = 0.0;
        for (uint e = 0; e < E; ++e) sum += (pr[e] = exp(logits[i * E + e] - mx));
        const float inv = 1.0 / sum;
        for (uint e = 0; e < E; ++e) pr[e] *= inv;
        uint ids[MAX_K];
        float wsum = 0.0;
        for (uint j = 0; j < K; ++j) {
            int best = -1;
            for (uint e = 0; e < E; ++e) {
                bool taken = false;
                for (uint t = 0; t < j; ++t) taken = taken || ids[t] == e;
                if (!taken && (best < 0 || pr[e] > pr[uint(best)])) best = int(e);  // strict: lower index wins ties
            }
            ids[j] = uint(best);
            wsum += pr[best];
        }
        float lt = p.lambda;
        for (uint j = 0; j < K; ++j) {
            const float w = p.renorm != 0u ? pr[ids[j]] / wsum : pr[ids[j]];
            ctrl[ids_at + i * K + j] = ids[j];
            ctrl[w_at + i * K + j] = floatBitsToUint(w);
            lt += w * (p.lambda_mode != 0u ? lambda_exp[ids[j]] : 0.0);
        }
        if (p.lambda_mode != 0u) ctrl[lambda_at + i] = floatBitsToUint(lt);
    }
    if (p.lambda_mode != 0u) return;
    memoryBarrierBuffer();
    barrier();
    const uint KK = p.has_gate == 0u ? 1u : K;
    for (uint e = gl_LocalInvocationIndex; e < E; e += WG) {
        uint m = 0;
        for (uint i = 0; i < n; ++i)
            for (uint j = 0; j < KK; ++j)
                if (ctrl[ids_at + i * K + j] == e) {
                    ctrl[rows_at + e * B + m] = i;
                    ctrl[scale_at + e * B + m] = ctrl[w_at + i * K + j];
                    ++m;
                }
        ctrl[count_at + e] = m;
        ctrl[p.use_at + e] += m;
    }
}
