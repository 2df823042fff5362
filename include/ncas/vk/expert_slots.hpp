#pragma once
// Expert streaming on the device: ONE device buffer of the expert budget cut
// into the expert arena's slots (memory/expert_arena.hpp: slot size, minimum
// budget, eviction policy and statistics are the CPU arena's own), and a
// host-visible staging buffer of n_expert_used slots.
//
//   device buffer  [ slot 0 | slot 1 | ... ]       slot = [ up | gate (swiglu) | down ] of one expert of one layer
//   staging        [ slot | ... ]                  pread from the GGUF file, then vkCmdCopyBuffer into a slot
//
// The arena runs without memory of its own (a slot_loader): acquire(r, l, e)
// asks it for expert e of layer l; on a miss it picks the slot to evict and
// calls the loader, which reads the slabs into the next free staging slot and
// records the copy into r's command buffer, followed by a barrier. Commands run
// in recording order, so a slot evicted while an earlier dispatch in the same
// command buffer still reads it is overwritten only after that dispatch. When
// the staging slots are used up, the command buffer recorded so far is run
// (context::flush) and staging starts over. The MoE binds each slab as a view
// of the slot buffer, as the resident backend binds a slab of its tensor.
//
// The caller must have run its command buffer before the layer's first
// acquire (the session does: it reads the layer's routing back first) and
// calls begin_layer() then.
#include <algorithm>
#include <memory>
#include <string>

#include "ncas/session_params.hpp"
#include "ncas/vk/weights.hpp"

namespace ncas::vk {

class expert_slots {
public:
    // One expert in its slot; gate.rows == 0 for a gelu FFN.
    struct expert {
        gpu_matrix up, gate, down;
    };

    expert_slots(const context& ctx, const model_core& m, const session_params& p) : ctx_(ctx), m_(m) {
        if (p.expert_direct_io)
            throw error(m.path() + ": O_DIRECT expert reads need page-aligned memory; the Vulkan backend reads through "
                                   "its staging buffer with buffered reads (leave out direct I/O)");
        arena_ = make_expert_arena(m, p, [this](int32_t slot, int64_t layer, int32_t e) { load(slot, layer, e); });
        if (!arena_) throw error(m.path() + ": expert streaming needs an expert budget");
        slot_bytes_ = uint64_t(arena_->slot_size());
        slots_ = std::make_unique<buffer>(ctx, uint64_t(arena_->capacity_bytes()));
        staging_slots_ = uint64_t(std::min(arena_->n_slots(), m.config().n_expert_used));
        staging_ = std::make_unique<buffer>(ctx, staging_slots_ * slot_bytes_, buffer::kind::readback);
    }

    // Device bytes the slots take for these parameters (the session's memory check).
    static uint64_t device_bytes(const model_core& m, const session_params& p) {
        const int64_t slot = expert_arena::slot_bytes(m, p.expert_direct_io);
        const int64_t n = std::min(p.expert_budget / slot, m.config().n_layer * m.config().n_expert);
        return uint64_t(std::max<int64_t>(n, 0) * slot);
    }

    // The staging buffer is free again: the caller ran its command buffer.
    void begin_layer() { staged_ = 0; }

    // Expert e of `layer` in a slot; a miss records its upload into r first.
    expert acquire(recorder& r, int64_t layer, int32_t e) {
        rec_ = &r;
        struct done {
            recorder*& r;
            ~done() { r = nullptr; }
        } reset{rec_};
        const uint64_t base = uint64_t(arena_->acquire_slot(layer, e)) * slot_bytes_;
        const expert_arena::slot_offsets at = arena_->offsets(layer, e);
        const layer_weights& w = m_.weights().layers[size_t(layer)];
        const std::string name = "blk." + std::to_string(layer) + " expert " + std::to_string(e);
        auto slab = [&](const expert_tensor& t, int64_t off, const char* part) {
            gpu_matrix g{t.type, t.rows, t.cols, {}, 0};
            if (off >= 0) g.view = bind_range(ctx_, *slots_, base + uint64_t(off), uint64_t(t.slab_bytes()), g.offset, name + part);
            return g;
        };
        return {slab(w.up, at.up, " up"), slab(w.gate, at.gate, " gate"), slab(w.down, at.down, " down")};
    }

    const expert_arena& arena() const { return *arena_; }
    expert_stats stats() const { return arena_->stats(); }
    void reset_stats() { arena_->reset_stats(); }

private:
    // The arena's loader: slabs into staging, a copy into the slot.
    void load(int32_t slot, int64_t layer, int32_t e) {
        if (staged_ == staging_slots_) {  // staging is full: run what is recorded, then reuse it
            ctx_.flush(rec_->command_buffer());
            staged_ = 0;
        }
        const uint64_t from = staged_ * slot_bytes_;
        arena_->read_expert(static_cast<std::byte*>(staging_->mapped()) + from, layer, e);
        const VkBufferCopy copy{from, uint64_t(slot) * slot_bytes_, slot_bytes_};
        vkCmdCopyBuffer(rec_->command_buffer(), staging_->handle(), slots_->handle(), 1, &copy);
        rec_->barrier();
        ++staged_;
    }

    const context& ctx_;
    const model_core& m_;
    std::unique_ptr<expert_arena> arena_;
    uint64_t slot_bytes_ = 0, staging_slots_ = 0, staged_ = 0;
    std::unique_ptr<buffer> slots_, staging_;  // [n_slots, slot_bytes] device-local; [staging_slots, slot_bytes] host-visible
    recorder* rec_ = nullptr;                  // during acquire(): where the loader records
};

}  // namespace ncas::vk
