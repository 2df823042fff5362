#pragma once
// The kernel's page cache for a weights file, for benchmarks that compare warm
// reads (pages cached by an earlier run) with cold ones: drop_page_cache asks
// the kernel to forget the file's clean pages, cached_fraction says how much
// of the file is cached now (mincore over a temporary mapping that touches
// nothing), and direct_read_gbs measures the disk's sequential read rate for the
// file (O_DIRECT, so no page of it comes from the cache).
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "ncas/memory/mapped_file.hpp"

namespace ncas {

inline void drop_page_cache(const std::string& path) {
    const file_handle f(path);
    ::fdatasync(f.fd());
    if (int e = ::posix_fadvise(f.fd(), 0, 0, POSIX_FADV_DONTNEED); e != 0)
        throw error(path + ": cannot drop cached pages: " + std::strerror(e));
}

inline double cached_fraction(const std::string& path) {
    const file_handle f(path);
    if (f.size() == 0) return 0.0;
    void* p = ::mmap(nullptr, f.size(), PROT_READ, MAP_SHARED, f.fd(), 0);
    if (p == MAP_FAILED) throw error(path + ": cannot map: " + errno_text());
    const size_t page = size_t(::sysconf(_SC_PAGESIZE)), pages = (f.size() + page - 1) / page;
    std::vector<unsigned char> in(pages);
    const int rc = ::mincore(p, f.size(), in.data());
    ::munmap(p, f.size());
    if (rc != 0) throw error(path + ": mincore failed: " + errno_text());
    size_t cached = 0;
    for (unsigned char c : in) cached += c & 1;
    return double(cached) / double(pages);
}

// Sequential O_DIRECT reads of up to `bytes` of the file in 4 MiB requests,
// starting at `start` (rounded down to 4 MiB) and wrapping around the end;
// bytes per second / 1e9. A virtual disk may cache what was read recently on
// the host, so a caller measuring repeatedly should vary `start`.
inline double direct_read_gbs(const std::string& path, int64_t bytes = int64_t(1) << 30, int64_t start = 0) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC);
    if (fd < 0) throw error(path + ": cannot open with O_DIRECT: " + errno_text());
    const struct closer { int fd; ~closer() { ::close(fd); } } close_fd{fd};
    constexpr int64_t chunk = int64_t(4) << 20;
    void* raw = nullptr;
    if (::posix_memalign(&raw, 4096, size_t(chunk)) != 0) throw error("out of memory for a 4 MiB read buffer");
    const std::unique_ptr<void, decltype(&std::free)> buf(raw, &std::free);
    const int64_t chunks = int64_t(::lseek(fd, 0, SEEK_END)) / chunk, n = std::min(bytes / chunk, chunks);
    if (n <= 0) throw error(path + ": too small to measure a sequential read (under 4 MiB)");
    const int64_t first = (start / chunk) % chunks;
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < n; ++i) {
        const int64_t off = (first + i) % chunks * chunk;
        if (::pread(fd, buf.get(), size_t(chunk), off_t(off)) != ssize_t(chunk))
            throw error(path + ": O_DIRECT read failed: " + errno_text());
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return double(n * chunk) / s / 1e9;
}

}  // namespace ncas
