#pragma once
// A session's state on disk: its KV cache, its position and the tokens it
// holds, so that a prompt run once need not run again in a later process.
//
//   ncas::save_state(session, tokens, "prompt.state");         // tokens: what the cache holds
//   std::vector<int32_t> held = ncas::load_state(session, "prompt.state");
//
// The file (little-endian), version 1:
//   "NCASSTAT"  u32 version
//   u64 model file size   u64 FNV-1a of the model file's header (everything before the tensor data)
//   u32 cache type length, the type's name ("f32", "f16", "q8_0", ...)   i64 n_layer  i64 k row bytes  i64 v row bytes
//   i64 n_ctx   i64 n_past   i64 tokens, i32 ids
//   per layer: i64 rows, i32 positions, rows * k row bytes, rows * v row bytes   (raw cache bytes: any type fits)
//   u64 FNV-1a of every byte before it
// Loading checks each against the session (the same model file, cache type,
// shapes, a context that holds the tokens) and the checksum; a mismatch, a
// truncated or corrupt file is an error that says which. The CPU session's
// cache is saved; a Vulkan session's is not (an error says so).
#include <cstdint>
#include <cstring>
#include <fstream>
#include <span>
#include <string>
#include <vector>

#include "ncas/backend.hpp"
#include "ncas/error.hpp"
#include "ncas/memory/mapped_file.hpp"
#include "ncas/session.hpp"

namespace ncas {

namespace state_detail {

inline constexpr char magic[8] = {'N', 'C', 'A', 'S', 'S', 'T', 'A', 'T'};
inline constexpr uint32_t version = 1;

struct fnv {
    uint64_t h = 0xcbf29ce484222325ull;
    void add(const void* p, size_t n) {
        const auto* b = static_cast<const unsigned char*>(p);
        for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 0x100000001b3ull;
    }
};

// FNV-1a of the model file's bytes before its tensor data (header, metadata, tensor table).
inline uint64_t model_hash(const model_core& m) {
    file_handle f(m.path());
    std::vector<std::byte> head(size_t(std::min<uint64_t>(m.file().data_offset(), f.size())));
    f.read_at(0, head);
    fnv h;
    h.add(head.data(), head.size());
    return h.h;
}

class writer {
public:
    explicit writer(const std::string& path) : path_(path), out_(path, std::ios::binary | std::ios::trunc) {
        if (!out_) throw error(path + ": cannot open for writing");
    }
    void bytes(const void* p, size_t n) {
        sum_.add(p, n);
        out_.write(static_cast<const char*>(p), std::streamsize(n));
    }
    template <class T>
    void put(T v) { bytes(&v, sizeof v); }
    void finish() {
        const uint64_t s = sum_.h;
        out_.write(reinterpret_cast<const char*>(&s), sizeof s);
        out_.close();
        if (!out_) throw error(path_ + ": write failed");
    }

private:
    std::string path_;
    std::ofstream out_;
    fnv sum_;
};

class reader {
public:
    explicit reader(const std::string& path) : path_(path), in_(path, std::ios::binary) {
        if (!in_) throw error(path + ": cannot open for reading");
        in_.seekg(0, std::ios::end);
        size_ = uint64_t(in_.tellg());
        in_.seekg(0);
    }
    void bytes(void* p, size_t n, const char* what) {
        if (n > size_ - pos_ || !in_.read(static_cast<char*>(p), std::streamsize(n)))
            fail(std::string("truncated: the file ends in ") + what);
        pos_ += n;
        sum_.add(p, n);
    }
    template <class T>
    T get(const char* what) {
        T v;
        bytes(&v, sizeof v, what);
        return v;
    }
    uint64_t left() const { return size_ - pos_; }
    void check_sum() {
        const uint64_t want = sum_.h;
        uint64_t got;
        if (left() != sizeof got) fail(left() < sizeof got ? "truncated: no checksum at the end" : "trailing bytes after the cache");
        in_.read(reinterpret_cast<char*>(&got), sizeof got);
        if (got != want) fail("checksum mismatch: the file is corrupt");
    }
    [[noreturn]] void fail(const std::string& why) const { throw error(path_ + ": not a usable session state: " + why); }

private:
    std::string path_;
    std::ifstream in_;
    uint64_t size_ = 0, pos_ = 0;
    fnv sum_;
};

}  // namespace state_detail

// Writes the CPU session's cache and position, with the tokens the cache holds (tokens.size() == n_past).
inline void save_state(const session& s, std::span<const int32_t> tokens, const std::string& path) {
    using namespace state_detail;
    if (int64_t(tokens.size()) != s.n_past())
        throw error("save_state: " + std::to_string(tokens.size()) + " tokens given for a session that holds " +
                    std::to_string(s.n_past()));
    const kv_cache& c = s.cache();
    writer w(path);
    w.bytes(magic, sizeof magic);
    w.put(version);
    w.put(uint64_t(s.model().file().file_size()));
    w.put(model_hash(s.model()));
    const std::string_view type = type_name(c.type());
    w.put(uint32_t(type.size()));
    w.bytes(type.data(), type.size());
    w.put(c.n_layer());
    w.put(c.k_row_bytes());
    w.put(c.v_row_bytes());
    w.put(s.n_ctx());
    w.put(s.n_past());
    w.put(int64_t(tokens.size()));
    w.bytes(tokens.data(), tokens.size_bytes());
    for (int64_t l = 0; l < c.n_layer(); ++l) {
        const int64_t rows = c.rows(l);
        w.put(rows);
        for (int64_t r = 0; r < rows; ++r) w.put(c.position(l, r));
        if (rows) w.bytes(c.k_row(l, 0), size_t(rows * c.k_row_bytes()));
        if (rows) w.bytes(c.v_row(l, 0), size_t(rows * c.v_row_bytes()));
    }
    w.finish();
}

namespace state_detail {
inline std::vector<int32_t> load(session& s, const std::string& path) {
    reader r(path);
    char m[8];
    r.bytes(m, sizeof m, "the magic");
    if (std::memcmp(m, magic, sizeof m) != 0) r.fail("bad magic (not an ncas session state file)");
    const uint32_t v = r.get<uint32_t>("the version");
    if (v != version) r.fail("version " + std::to_string(v) + ", this ncas reads version " + std::to_string(version));
    const uint64_t size = r.get<uint64_t>("the model size"), hash = r.get<uint64_t>("the model hash");
    if (size != s.model().file().file_size() || hash != model_hash(s.model()))
        r.fail("it was saved with another model file (" + std::to_string(size) + " bytes, not " + s.model().path() + ")");
    const kv_cache& c = s.cache();
    const uint32_t type_len = r.get<uint32_t>("the cache type");
    if (type_len > 32) r.fail("bad cache type length " + std::to_string(type_len));
    std::string type(type_len, '\0');
    r.bytes(type.data(), type.size(), "the cache type");
    if (type != type_name(c.type()))
        r.fail("its KV cache is " + type + ", the session's " + std::string(type_name(c.type())));
    const int64_t n_layer = r.get<int64_t>("the shape"), kb = r.get<int64_t>("the shape"), vb = r.get<int64_t>("the shape");
    if (n_layer != c.n_layer() || kb != c.k_row_bytes() || vb != c.v_row_bytes()) r.fail("its cache shape differs from the session's");
    r.get<int64_t>("the context");
    const int64_t n_past = r.get<int64_t>("the position"), n_tokens = r.get<int64_t>("the tokens");
    if (n_past < 0 || n_tokens != n_past) r.fail("bad position " + std::to_string(n_past));
    if (n_past > s.n_ctx())
        r.fail("it holds " + std::to_string(n_past) + " tokens, more than the session's context of " + std::to_string(s.n_ctx()));
    std::vector<int32_t> tokens(static_cast<size_t>(n_tokens));
    r.bytes(tokens.data(), tokens.size() * sizeof(int32_t), "the tokens");
    for (int32_t t : tokens)
        if (t < 0 || t >= s.n_vocab()) r.fail("token " + std::to_string(t) + " is outside the vocabulary");
    s.restore(n_past, [&](kv_cache& cache) {
        std::vector<int32_t> pos;
        std::vector<std::byte> k, vv;
        for (int64_t l = 0; l < n_layer; ++l) {
            const int64_t rows = r.get<int64_t>("a layer");
            if (rows < 0 || rows > n_past) r.fail("layer " + std::to_string(l) + " claims " + std::to_string(rows) + " rows");
            pos.resize(size_t(rows));
            k.resize(size_t(rows * kb));
            vv.resize(size_t(rows * vb));
            r.bytes(pos.data(), pos.size() * sizeof(int32_t), "a layer's positions");
            for (int64_t i = 0; i < rows; ++i)
                if (pos[size_t(i)] < 0 || pos[size_t(i)] >= n_past || (i && pos[size_t(i)] <= pos[size_t(i - 1)]))
                    r.fail("layer " + std::to_string(l) + " has bad positions");
            r.bytes(k.data(), k.size(), "a layer's keys");
            r.bytes(vv.data(), vv.size(), "a layer's values");
            cache.set_layer(l, rows, k.data(), vv.data(), pos.data());
        }
        r.check_sum();
    });
    return tokens;
}
}  // namespace state_detail

// Replaces the session's cache with the saved one; returns the tokens it holds.
// On an error the session is left empty.
inline std::vector<int32_t> load_state(session& s, const std::string& path) {
    try {
        return state_detail::load(s, path);
    } catch (...) {
        s.rewind(0);
        throw;
    }
}

// The same for a session of any backend: the CPU's; another is an error.
inline session& cpu_session_of(any_session& s, const char* what) {
    if (auto* a = dynamic_cast<session_adapter<session>*>(&s)) return a->get();
    throw error(std::string(what) + ": saving and loading a session's state is not supported on " + s.backend());
}
inline void save_state(any_session& s, std::span<const int32_t> tokens, const std::string& path) {
    save_state(cpu_session_of(s, "save_state"), tokens, path);
}
inline std::vector<int32_t> load_state(any_session& s, const std::string& path) {
    return load_state(cpu_session_of(s, "load_state"), path);
}

}  // namespace ncas
