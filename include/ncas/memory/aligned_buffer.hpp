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
