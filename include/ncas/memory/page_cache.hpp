#pragma once
// The kernel's page cache for a weights file, for benchmarks that compare warm
// reads (pages cached by an earlier run) with cold ones: drop_page_cache asks
// the kernel to forget the file's clean pages, cached_fraction says how much
// of the file is cached now (mincore over a temporary mapping that touches nothing).
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

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

}  // namespace ncas
