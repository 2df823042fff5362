#pragma once
// Owned, uninitialised, aligned bytes: weights read from a file (streaming
// load) and the expert arena (page-aligned, so O_DIRECT can read into it).
// Pages are only committed when first written, so the resident size of a
// buffer is what was filled, never more than its size.
#include <cstddef>
#include <cstdint>
#include <new>
#include <span>
#include <utility>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace ncas {

class aligned_buffer {
public:
    aligned_buffer() = default;
    aligned_buffer(size_t bytes, size_t alignment)
        : data_(static_cast<std::byte*>(::operator new[](bytes ? bytes : 1, std::align_val_t(alignment)))),
          size_(bytes), alignment_(alignment) {}
    aligned_buffer(aligned_buffer&& o) noexcept { swap(o); }
    aligned_buffer& operator=(aligned_buffer o) noexcept { swap(o); return *this; }
    ~aligned_buffer() { if (data_) ::operator delete[](data_, std::align_val_t(alignment_)); }

    std::byte* data() const { return data_; }
    size_t size() const { return size_; }
    std::span<std::byte> bytes() const { return {data_, size_}; }

    // Asks the kernel for 2 MiB pages where the buffer covers whole ones (a buffer
    // streamed through on every token: fewer TLB misses; Linux, transparent huge
    // pages in madvise or always mode). A hint: nothing changes when it is refused.
    void advise_huge_pages() const {
#if defined(__linux__)
        constexpr uintptr_t huge = uintptr_t(2) << 20;
        const uintptr_t b = (reinterpret_cast<uintptr_t>(data_) + huge - 1) & ~(huge - 1);
        const uintptr_t e = (reinterpret_cast<uintptr_t>(data_) + size_) & ~(huge - 1);
        if (e > b) ::madvise(reinterpret_cast<void*>(b), e - b, MADV_HUGEPAGE);
#endif
    }

private:
    void swap(aligned_buffer& o) noexcept {
        std::swap(data_, o.data_);
        std::swap(size_, o.size_);
        std::swap(alignment_, o.alignment_);
    }
    std::byte* data_ = nullptr;
    size_t size_ = 0;
    size_t alignment_ = 1;
};

}  // namespace ncas
