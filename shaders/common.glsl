// Included first by every kernel: workgroup size, NONE, the control buffer
// helpers and workgroup reductions (subgroup arithmetic when the variant has
// it, a shared-memory tree otherwise).
#ifdef USE_SUBGROUP
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#endif

#include "push_constants.h"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 64;  // a power of two

const uint NONE = 0xffffffffu;

shared float red_[WG];

float wg_sum(float v) {
#ifdef USE_SUBGROUP
    v = subgroupAdd(v);
    if (subgroupElect()) red_[gl_SubgroupID] = v;
    barrier();
    float s = 0.0;
    for (uint i = 0; i < gl_NumSubgroups; ++i) s += red_[i];
    barrier();
    return s;
#else
    const uint lid = gl_LocalInvocationIndex;
    red_[lid] = v;
    barrier();
    for (uint s = WG / 2; s > 0; s >>= 1) {
        if (lid < s) red_[lid] += red_[lid + s];
        barrier();
    }
    const float r = red_[0];
    barrier();
    return r;
#endif
}

float wg_max(float v) {
#ifdef USE_SUBGROUP
    v = subgroupMax(v);
    if (subgroupElect()) red_[gl_SubgroupID] = v;
    barrier();
    float m = red_[0];
    for (uint i = 1; i < gl_NumSubgroups; ++i) m = max(m, red_[i]);
    barrier();
    return m;
#else
    const uint lid = gl_LocalInvocationIndex;
    red_[lid] = v;
    barrier();
    for (uint s = WG / 2; s > 0; s >>= 1) {
        if (lid < s) red_[lid] = max(red_[lid], red_[lid + s]);
        barrier();
    }
    const float r = red_[0];
    barrier();
    return r;
#endif
}
