#pragma once
// Read-only access to a weights file: a whole-file mapping whose bytes are used
// in place (no copy at load), and positioned reads for code that must not map
// the file (expert streaming keeps resident memory bounded that way).
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <utility>

#include "ncas/error.hpp"

namespace ncas {

inline std::string errno_text() { return std::strerror(errno); }

// An open file descriptor, closed on destruction.
class file_handle {
public:
    file_handle() = default;
    explicit file_handle(const std::string& path, int flags = O_RDONLY) : path_(path) {
        fd_ = ::open(path.c_str(), flags | O_CLOEXEC);
        if (fd_ < 0) throw error(path + ": cannot open: " + errno_text());
        struct stat st{};
        if (::fstat(fd_, &st) != 0) throw error(path + ": cannot stat: " + errno_text());
        if (!S_ISREG(st.st_mode)) { ::close(fd_); fd_ = -1; throw error(path + ": not a regular file"); }
        size_ = uint64_t(st.st_size);
    }
    file_handle(file_handle&& o) noexcept { swap(o); }
    file_handle& operator=(file_handle o) noexcept { swap(o); return *this; }
    ~file_handle() { if (fd_ >= 0) ::close(fd_); }

    int fd() const { return fd_; }
    uint64_t size() const { return size_; }
    const std::string& path() const { return path_; }

    // Reads exactly dst.size() bytes at offset, retrying short reads.
    void read_at(uint64_t offset, std::span<std::byte> dst) const {
        if (offset > size_ || dst.size() > size_ - offset)
            throw error(path_ + ": read of " + std::to_string(dst.size()) + " bytes at offset " +
                        std::to_string(offset) + " is past the end of the file (" + std::to_string(size_) + " bytes)");
        size_t done = 0;
        while (done < dst.size()) {
            const ssize_t n = ::pread(fd_, dst.data() + done, dst.size() - done, off_t(offset + done));
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) throw error(path_ + ": read failed at offset " + std::to_string(offset + done) + ": " +
                                    (n == 0 ? std::string("unexpected end of file") : errno_text()));
            done += size_t(n);
        }
    }

private:
    void swap(file_handle& o) noexcept {
        std::swap(fd_, o.fd_);
        std::swap(size_, o.size_);
        std::swap(path_, o.path_);
    }
    int fd_ = -1;
    uint64_t size_ = 0;
    std::string path_;
};

// The whole file mapped read-only. Pages are faulted in on first touch, so
// "loading" costs no copy and no read of weights that are never used.
class mapped_file {
public:
    mapped_file() = default;
    explicit mapped_file(const std::string& path) : file_(path) {
        if (file_.size() == 0) throw error(path + ": file is empty");
        void* p = ::mmap(nullptr, file_.size(), PROT_READ, MAP_SHARED, file_.fd(), 0);
        if (p == MAP_FAILED) throw error(path + ": cannot map: " + errno_text());
        data_ = static_cast<const std::byte*>(p);
    }
    mapped_file(mapped_file&& o) noexcept { swap(o); }
    mapped_file& operator=(mapped_file o) noexcept { swap(o); return *this; }
    ~mapped_file() { if (data_) ::munmap(const_cast<std::byte*>(data_), file_.size()); }

    std::span<const std::byte> bytes() const { return {data_, size_t(file_.size())}; }
    const file_handle& file() const { return file_; }
    const std::string& path() const { return file_.path(); }

    // Tells the kernel the range will be read soon / sequentially.
    void advise_willneed(uint64_t offset, uint64_t n) const {
        const uint64_t page = uint64_t(::sysconf(_SC_PAGESIZE)), start = offset / page * page;
        ::madvise(const_cast<std::byte*>(data_) + start, size_t(offset + n - start), MADV_WILLNEED);
    }

private:
    void swap(mapped_file& o) noexcept {
        std::swap(file_, o.file_);
        std::swap(data_, o.data_);
    }
    file_handle file_;
    const std::byte* data_ = nullptr;
};

}  // namespace ncas
