// Slot addressing shared by matvec and matmul: which rows of x and y a slot
// reads and writes, how many slots are active, and the per-slot scale.
layout(std430, binding = 1) readonly buffer x_buf { float x[]; };
layout(std430, binding = 2) buffer y_buf { float y[]; };
layout(std430, binding = 3) readonly buffer ctrl_buf { uint ctrl[]; };
layout(push_constant) uniform pc_block { matmul_pc p; };

uint active_slots() { return p.count_at == NONE ? p.n_max : ctrl[p.count_at]; }
uint x_row(uint slot) { return p.x_index_at == NONE ? slot : ctrl[p.x_index_at + slot]; }
uint y_row(uint slot) { return p.y_index_at == NONE ? slot : ctrl[p.y_index_at + slot]; }

void store(uint slot, uint r, float acc) {
    const uint at = y_row(slot) * p.rows + r;
    if (p.accumulate == 0u) {
        y[at] = acc;
    } else {
        const float s = p.scale_at == NONE ? 1.0 : uintBitsToFloat(ctrl[p.scale_at + slot]);
        y[at] += s * acc;
    }
}
