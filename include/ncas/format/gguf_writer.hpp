#pragma once
// GGUF v3 writer: metadata of every type, tensors whose bytes come from memory
// or from a callback (so a multi-GB synthetic model is written a tensor at a
// time). Used by the benchmark's synthetic presets and by the tests that build
// broken files on purpose.
#include <cstdio>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "ncas/format/gguf.hpp"

namespace ncas {

class gguf_writer {
public:
    // Fills dst (the tensor's bytes, in order) when the file is written.
    using tensor_fill = std::function<void(std::span<std::byte> dst)>;

    explicit gguf_writer(uint64_t alignment = 32) : alignment_(alignment) {}

    void set(const std::string& key, gguf_value v) {
        for (auto& [k, old] : kv_)
            if (k == key) { old = std::move(v); return; }
        kv_.emplace_back(key, std::move(v));
    }
    void erase(const std::string& key) { std::erase_if(kv_, [&](auto& e) { return e.first == key; }); }
    void set_uint32(const std::string& key, uint32_t v) { set(key, scalar(gguf_type::u32, uint64_t(v))); }
    void set_float32(const std::string& key, float v) { set(key, scalar(gguf_type::f32, double(v))); }
    void set_bool(const std::string& key, bool v) { set(key, scalar(gguf_type::boolean, v)); }
    void set_string(const std::string& key, std::string v) { set(key, scalar(gguf_type::string, std::move(v))); }
    void set_strings(const std::string& key, const std::vector<std::string>& v) {
        gguf_value a{gguf_type::array, gguf_type::string, {}, {}};
        for (const auto& s : v) a.array.emplace_back(s);
        set(key, std::move(a));
    }
    void set_int32s(const std::string& key, const std::vector<int32_t>& v) {
        gguf_value a{gguf_type::array, gguf_type::i32, {}, {}};
        for (int32_t x : v) a.array.emplace_back(int64_t(x));
        set(key, std::move(a));
    }

    // ne in GGUF order (innermost first).
    void add_tensor(const std::string& name, weight_type type, std::vector<int64_t> ne, tensor_fill fill) {
        tensors_.push_back({name, type, std::move(ne), std::move(fill)});
    }
    void add_tensor(const std::string& name, weight_type type, std::vector<int64_t> ne, std::vector<std::byte> bytes) {
        add_tensor(name, type, std::move(ne), [b = std::move(bytes)](std::span<std::byte> dst) {
            std::memcpy(dst.data(), b.data(), std::min(dst.size(), b.size()));
        });
    }
    void erase_tensor(const std::string& name) { std::erase_if(tensors_, [&](auto& t) { return t.name == name; }); }

    static uint64_t tensor_bytes(weight_type type, const std::vector<int64_t>& ne) {
        int64_t rows = 1;
        for (size_t i = 1; i < ne.size(); ++i) rows *= ne[i];
        return uint64_t(rows * row_bytes(type, ne.at(0)));
    }

    // Writes everything through sink(bytes) in file order.
    void write(const std::function<void(std::span<const std::byte>)>& sink) const {
        std::vector<std::byte> h;
        put(h, gguf_file::magic);
        put(h, uint32_t(3));
        put(h, uint64_t(tensors_.size()));
        put(h, uint64_t(kv_.size()));
        for (const auto& [k, v] : kv_) {
            put_string(h, k);
            put(h, uint32_t(v.type));
            if (v.type == gguf_type::array) {
                put(h, uint32_t(v.elem_type));
                put(h, uint64_t(v.array.size()));
                for (const auto& s : v.array) put_scalar(h, v.elem_type, s);
            } else {
                put_scalar(h, v.type, v.scalar);
            }
        }
        uint64_t offset = 0;
        for (const auto& t : tensors_) {
            put_string(h, t.name);
            put(h, uint32_t(t.ne.size()));
            for (int64_t n : t.ne) put(h, uint64_t(n));
            put(h, uint32_t(t.type));
            put(h, offset);
            offset = align(offset + tensor_bytes(t.type, t.ne));
        }
        h.resize(size_t(align(h.size())));
        sink(h);
        std::vector<std::byte> buf;
        for (const auto& t : tensors_) {
            const uint64_t n = tensor_bytes(t.type, t.ne);
            buf.assign(size_t(align(n)), std::byte{0});
            t.fill(std::span<std::byte>(buf.data(), size_t(n)));
            sink(buf);
        }
    }

    std::vector<std::byte> to_bytes() const {
        std::vector<std::byte> out;
        write([&](std::span<const std::byte> b) { out.insert(out.end(), b.begin(), b.end()); });
        return out;
    }

    void write_file(const std::string& path) const {
        std::FILE* f = std::fopen(path.c_str(), "wb");
        if (!f) throw error(path + ": cannot create: " + errno_text());
        bool ok = true;
        write([&](std::span<const std::byte> b) { ok = ok && std::fwrite(b.data(), 1, b.size(), f) == b.size(); });
        ok = std::fclose(f) == 0 && ok;
        if (!ok) throw error(path + ": write failed: " + errno_text());
    }

    // A writer holding every key and tensor of a parsed file (tensor bytes from `bytes`),
    // ready to be modified and written again.
    static gguf_writer copy_of(const gguf_file& f, std::span<const std::byte> bytes) {
        gguf_writer w(f.alignment());
        for (const auto& [k, v] : f.metadata()) w.set(k, v);
        for (const auto& t : f.tensors())
            w.add_tensor(t.name, t.type, std::vector<int64_t>(t.ne, t.ne + t.n_dims),
                         std::vector<std::byte>(bytes.begin() + int64_t(t.offset), bytes.begin() + int64_t(t.offset + t.bytes)));
        return w;
    }

private:
    struct tensor {
        std::string name;
        weight_type type;
        std::vector<int64_t> ne;
        tensor_fill fill;
    };
    static gguf_value scalar(gguf_type t, gguf_scalar s) { return {t, gguf_type::u8, std::move(s), {}}; }
    uint64_t align(uint64_t n) const { return (n + alignment_ - 1) / alignment_ * alignment_; }

    template <class T>
    static void put(std::vector<std::byte>& out, T v) {
        const auto* p = reinterpret_cast<const std::byte*>(&v);
        out.insert(out.end(), p, p + sizeof v);
    }
    static void put_string(std::vector<std::byte>& out, const std::string& s) {
        put(out, uint64_t(s.size()));
        const auto* p = reinterpret_cast<const std::byte*>(s.data());
        out.insert(out.end(), p, p + s.size());
    }
    static void put_scalar(std::vector<std::byte>& out, gguf_type t, const gguf_scalar& s) {
        auto u = [&] { return std::holds_alternative<uint64_t>(s) ? std::get<uint64_t>(s) : uint64_t(std::get<int64_t>(s)); };
        switch (t) {
            case gguf_type::u8: case gguf_type::i8: put(out, uint8_t(u())); break;
            case gguf_type::u16: case gguf_type::i16: put(out, uint16_t(u())); break;
            case gguf_type::u32: case gguf_type::i32: put(out, uint32_t(u())); break;
            case gguf_type::u64: case gguf_type::i64: put(out, u()); break;
            case gguf_type::f32: put(out, float(std::get<double>(s))); break;
            case gguf_type::f64: put(out, std::get<double>(s)); break;
            case gguf_type::boolean: put(out, uint8_t(std::get<bool>(s))); break;
            case gguf_type::string: put_string(out, std::get<std::string>(s)); break;
            case gguf_type::array: throw error("gguf_writer: nested arrays are not written");
        }
    }

    uint64_t alignment_;
    std::vector<std::pair<std::string, gguf_value>> kv_;
    std::vector<tensor> tensors_;
};

}  // namespace ncas
