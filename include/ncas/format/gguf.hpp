#pragma once
// GGUF v3 reader. Everything is validated before use: magic, version, counts,
// string and array lengths, tensor shapes, types, offsets and sizes against the
// file, integer overflow and overlapping tensors. Every failure is an
// ncas::error naming the file and the key or tensor at fault.
//
// The parser reads through a byte_source, so the same code serves a mapped
// file, a file read with plain reads (expert streaming) and bytes in memory (tests).
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "ncas/error.hpp"
#include "ncas/format/quant.hpp"
#include "ncas/memory/mapped_file.hpp"

namespace ncas {

enum class gguf_type : uint32_t {
    u8 = 0, i8 = 1, u16 = 2, i16 = 3, u32 = 4, i32 = 5, f32 = 6, boolean = 7,
    string = 8, array = 9, u64 = 10, i64 = 11, f64 = 12,
};

inline const char* gguf_type_name(gguf_type t) {
    static constexpr const char* names[] = {"uint8", "int8",  "uint16", "int16",  "uint32", "int32", "float32",
                                            "bool",  "string", "array", "uint64", "int64",  "float64"};
    return uint32_t(t) <= 12 ? names[uint32_t(t)] : "unknown";
}

// One metadata value. Integers keep their signedness; arrays hold scalars
// (nested arrays are rejected, as llama.cpp does).
using gguf_scalar = std::variant<uint64_t, int64_t, double, bool, std::string>;
struct gguf_value {
    gguf_type type = gguf_type::u8;
    gguf_type elem_type = gguf_type::u8;  // for arrays
    gguf_scalar scalar;
    std::vector<gguf_scalar> array;
};

struct tensor_info {
    std::string name;
    weight_type type = weight_type::f32;
    int n_dims = 0;
    int64_t ne[4] = {1, 1, 1, 1};  // ne[0] innermost
    uint64_t offset = 0;           // absolute offset in the file
    uint64_t bytes = 0;

    int64_t elements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
    int64_t rows() const { return ne[1] * ne[2] * ne[3]; }
    std::string shape_string() const {
        std::string s = "[";
        for (int i = 0; i < n_dims; ++i) s += (i ? ", " : "") + std::to_string(ne[i]);
        return s + "]";
    }
};

// Random access to the bytes of a file, bounds-checked by the caller.
using byte_source = std::function<void(uint64_t offset, std::span<std::byte> dst)>;

class gguf_file {
public:
    static constexpr uint32_t magic = 0x46554747;  // "GGUF" little-endian
    static constexpr uint64_t max_dims = 4;

    // Parses the header of a file of `size` bytes read through `src`; `name` is used in errors.
    gguf_file(std::string name, uint64_t size, const byte_source& src) : name_(std::move(name)), size_(size) {
        cursor c{*this, src, 0};
        parse(c);
    }
    static gguf_file from_memory(std::string name, std::span<const std::byte> bytes) {
        return gguf_file(std::move(name), bytes.size(), [bytes](uint64_t off, std::span<std::byte> dst) {
            std::memcpy(dst.data(), bytes.data() + off, dst.size());
        });
    }
    static gguf_file from_file(const file_handle& f) {
        // Header reads are small and sequential: serve them from a read-ahead buffer.
        auto buf = std::make_shared<std::vector<std::byte>>();
        auto buf_off = std::make_shared<uint64_t>(0);
        return gguf_file(f.path(), f.size(), [&f, buf, buf_off](uint64_t off, std::span<std::byte> dst) {
            if (off < *buf_off || off + dst.size() > *buf_off + buf->size()) {
                const uint64_t want = std::max<uint64_t>(dst.size(), 1 << 16);
                buf->resize(size_t(std::min(want, f.size() - off)));
                *buf_off = off;
                f.read_at(off, *buf);
            }
            std::memcpy(dst.data(), buf->data() + (off - *buf_off), dst.size());
        });
    }

    const std::string& name() const { return name_; }
    uint64_t file_size() const { return size_; }
    uint32_t version() const { return version_; }
    uint64_t alignment() const { return alignment_; }
    uint64_t data_offset() const { return data_offset_; }
    const std::map<std::string, gguf_value>& metadata() const { return kv_; }
    // The metadata keys in the order the file has them (metadata() is sorted by key).
    const std::vector<std::string>& key_order() const { return key_order_; }
    const std::vector<tensor_info>& tensors() const { return tensors_; }

    bool has(const std::string& key) const { return kv_.contains(key); }
    const gguf_value* find(const std::string& key) const {
        auto it = kv_.find(key);
        return it == kv_.end() ? nullptr : &it->second;
    }
    const tensor_info* find_tensor(const std::string& name) const {
        auto it = tensor_index_.find(name);
        return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
    }

    // Typed getters: a missing key or a value of the wrong type or range is an error naming the key.
    uint64_t get_uint(const std::string& key) const { return to_uint(key, require(key).scalar, require(key).type); }
    uint64_t get_uint(const std::string& key, uint64_t dflt) const { return has(key) ? get_uint(key) : dflt; }
    double get_float(const std::string& key) const { return to_float(key, require(key).scalar, require(key).type); }
    double get_float(const std::string& key, double dflt) const { return has(key) ? get_float(key) : dflt; }
    bool get_bool(const std::string& key) const {
        const gguf_value& v = require(key);
        if (v.type != gguf_type::boolean) throw wrong_type(key, v.type, "bool");
        return std::get<bool>(v.scalar);
    }
    bool get_bool(const std::string& key, bool dflt) const { return has(key) ? get_bool(key) : dflt; }
    const std::string& get_string(const std::string& key) const {
        const gguf_value& v = require(key);
        if (v.type != gguf_type::string) throw wrong_type(key, v.type, "string");
        return std::get<std::string>(v.scalar);
    }
    std::string get_string(const std::string& key, const std::string& dflt) const {
        return has(key) ? get_string(key) : dflt;
    }
    const std::vector<gguf_scalar>& get_array(const std::string& key) const {
        const gguf_value& v = require(key);
        if (v.type != gguf_type::array) throw wrong_type(key, v.type, "array");
        return v.array;
    }
    std::vector<std::string> get_strings(const std::string& key) const {
        const gguf_value& v = require(key);
        if (v.type != gguf_type::array || v.elem_type != gguf_type::string) throw wrong_type(key, v.type, "array of string");
        std::vector<std::string> out;
        out.reserve(v.array.size());
        for (const auto& s : v.array) out.push_back(std::get<std::string>(s));
        return out;
    }
    std::vector<double> get_floats(const std::string& key) const {
        const auto& a = get_array(key);
        std::vector<double> out;
        for (const auto& s : a) out.push_back(to_float(key, s, find(key)->elem_type));
        return out;
    }
    std::vector<int64_t> get_ints(const std::string& key) const {
        const auto& a = get_array(key);
        std::vector<int64_t> out;
        for (const auto& s : a) {
            if (const auto* i = std::get_if<int64_t>(&s)) out.push_back(*i);
            else out.push_back(int64_t(to_uint(key, s, find(key)->elem_type)));
        }
        return out;
    }

    [[noreturn]] void fail(const std::string& what) const { throw error(name_ + ": " + what); }

private:
    struct cursor {
        const gguf_file& f;
        const byte_source& src;
        uint64_t pos;

        void read(void* dst, uint64_t n, const char* what) {
            if (n > f.size_ - pos)
                f.fail(std::string("truncated: ") + what + " at offset " + std::to_string(pos) + " needs " +
                       std::to_string(n) + " bytes, file has " + std::to_string(f.size_ - pos) + " left");
            src(pos, {static_cast<std::byte*>(dst), size_t(n)});
            pos += n;
        }
        template <class T>
        T get(const char* what) {
            T v;
            read(&v, sizeof v, what);
            return v;
        }
        std::string string(const char* what) {
            const uint64_t n = get<uint64_t>(what);
            if (n > f.size_ - pos)
                f.fail(std::string(what) + " at offset " + std::to_string(pos - 8) + " claims " + std::to_string(n) +
                       " bytes, more than the file holds");
            std::string s(size_t(n), '\0');
            read(s.data(), n, what);
            return s;
        }
    };

    const gguf_value& require(const std::string& key) const {
        const gguf_value* v = find(key);
        if (!v) fail("missing metadata key '" + key + "'");
        return *v;
    }
    error wrong_type(const std::string& key, gguf_type got, const char* want) const {
        return error(name_ + ": metadata key '" + key + "' is " + gguf_type_name(got) + ", expected " + want);
    }
    uint64_t to_uint(const std::string& key, const gguf_scalar& s, gguf_type t) const {
        if (const auto* u = std::get_if<uint64_t>(&s)) return *u;
        if (const auto* i = std::get_if<int64_t>(&s); i && *i >= 0) return uint64_t(*i);
        if (std::holds_alternative<int64_t>(s)) fail("metadata key '" + key + "' is negative");
        throw wrong_type(key, t, "an integer");
    }
    double to_float(const std::string& key, const gguf_scalar& s, gguf_type t) const {
        if (const auto* d = std::get_if<double>(&s)) return *d;
        throw wrong_type(key, t, "a float");
    }

    gguf_scalar read_scalar(cursor& c, gguf_type t, const std::string& key) {
        switch (t) {
            case gguf_type::u8: return uint64_t(c.get<uint8_t>("value"));
            case gguf_type::i8: return int64_t(c.get<int8_t>("value"));
            case gguf_type::u16: return uint64_t(c.get<uint16_t>("value"));
            case gguf_type::i16: return int64_t(c.get<int16_t>("value"));
            case gguf_type::u32: return uint64_t(c.get<uint32_t>("value"));
            case gguf_type::i32: return int64_t(c.get<int32_t>("value"));
            case gguf_type::u64: return c.get<uint64_t>("value");
            case gguf_type::i64: return c.get<int64_t>("value");
            case gguf_type::f32: return double(c.get<float>("value"));
            case gguf_type::f64: return c.get<double>("value");
            case gguf_type::boolean: {
                const uint8_t b = c.get<uint8_t>("value");
                if (b > 1) fail("metadata key '" + key + "' has bool value " + std::to_string(b));
                return b == 1;
            }
            case gguf_type::string: return c.string("string value");
            case gguf_type::array: break;
        }
        fail("metadata key '" + key + "' has unknown value type " + std::to_string(uint32_t(t)));
    }

    static uint64_t min_encoded_size(gguf_type t) {
        switch (t) {
            case gguf_type::u8: case gguf_type::i8: case gguf_type::boolean: return 1;
            case gguf_type::u16: case gguf_type::i16: return 2;
            case gguf_type::u32: case gguf_type::i32: case gguf_type::f32: return 4;
            default: return 8;  // 64-bit scalars, and a string's length prefix
        }
    }

    void parse(cursor& c) {
        if (c.get<uint32_t>("magic") != magic) fail("not a GGUF file (bad magic)");
        version_ = c.get<uint32_t>("version");
        if (version_ != 3) fail("unsupported GGUF version " + std::to_string(version_) + " (ncas reads version 3)");
        const uint64_t n_tensors = c.get<uint64_t>("tensor count");
        const uint64_t n_kv = c.get<uint64_t>("metadata count");
        // Each entry takes at least 8 + 4 bytes (key length, type) / 8 + 4 + 8 + 4 + 8 (tensor info):
        // a count that cannot fit in the file is rejected before anything is allocated.
        if (n_kv > size_ / 13) fail("metadata count " + std::to_string(n_kv) + " cannot fit in the file");
        if (n_tensors > size_ / 32) fail("tensor count " + std::to_string(n_tensors) + " cannot fit in the file");

        for (uint64_t i = 0; i < n_kv; ++i) {
            std::string key = c.string("metadata key");
            if (key.empty()) fail("metadata entry " + std::to_string(i) + " has an empty key");
            if (kv_.contains(key)) fail("duplicate metadata key '" + key + "'");
            gguf_value v;
            v.type = gguf_type(c.get<uint32_t>("metadata type"));
            if (v.type == gguf_type::array) {
                v.elem_type = gguf_type(c.get<uint32_t>("array type"));
                if (v.elem_type == gguf_type::array) fail("metadata key '" + key + "' is a nested array");
                if (uint32_t(v.elem_type) > 12)
                    fail("metadata key '" + key + "' has unknown array type " + std::to_string(uint32_t(v.elem_type)));
                const uint64_t n = c.get<uint64_t>("array length");
                if (n > (size_ - c.pos) / min_encoded_size(v.elem_type))
                    fail("metadata key '" + key + "' claims " + std::to_string(n) + " elements, more than the file holds");
                v.array.reserve(size_t(n));
                for (uint64_t j = 0; j < n; ++j) v.array.push_back(read_scalar(c, v.elem_type, key));
            } else {
                v.scalar = read_scalar(c, v.type, key);
            }
            key_order_.push_back(key);
            kv_.emplace(std::move(key), std::move(v));
        }

        check_spec_types();
        alignment_ = get_uint("general.alignment", 32);
        // At least 8 so that every tensor is aligned for the f32 and f16 loads that read it in place.
        if (alignment_ < 8 || (alignment_ & (alignment_ - 1)) || alignment_ > (1u << 20))
            fail("general.alignment " + std::to_string(alignment_) + " is not a power of two from 8 to 1 MiB");

        tensors_.reserve(size_t(n_tensors));
        for (uint64_t i = 0; i < n_tensors; ++i) tensors_.push_back(read_tensor_info(c));

        data_offset_ = (c.pos + alignment_ - 1) / alignment_ * alignment_;
        check_tensor_extents();
    }

    // The GGUF specification fixes the type of these keys: a value stored in another
    // type (general.alignment as int32, a token id as uint64) is rejected, not converted.
    void check_spec_types() const {
        struct fixed {
            std::string_view key;
            gguf_type type, elem = gguf_type::u8;  // elem: for arrays
        };
        static constexpr fixed table[] = {
            {"general.alignment", gguf_type::u32},
            {"general.architecture", gguf_type::string},
            {"general.name", gguf_type::string},
            {"general.file_type", gguf_type::u32},
            {"general.quantization_version", gguf_type::u32},
            {"tokenizer.ggml.model", gguf_type::string},
            {"tokenizer.ggml.tokens", gguf_type::array, gguf_type::string},
            {"tokenizer.ggml.scores", gguf_type::array, gguf_type::f32},
            {"tokenizer.ggml.token_type", gguf_type::array, gguf_type::i32},
            {"tokenizer.ggml.merges", gguf_type::array, gguf_type::string},
            {"tokenizer.ggml.added_tokens", gguf_type::array, gguf_type::string},
            {"tokenizer.ggml.add_bos_token", gguf_type::boolean},
            {"tokenizer.ggml.add_eos_token", gguf_type::boolean},
            {"tokenizer.chat_template", gguf_type::string},
        };
        auto type_string = [](gguf_type t, gguf_type elem) {
            return t == gguf_type::array ? std::string("array of ") + gguf_type_name(elem) : std::string(gguf_type_name(t));
        };
        auto check = [&](const std::string& key, const gguf_value& v, gguf_type t, gguf_type elem) {
            if (v.type != t || (t == gguf_type::array && v.elem_type != elem))
                fail("metadata key '" + key + "' is " + type_string(v.type, v.elem_type) + "; the GGUF specification makes it " +
                     type_string(t, elem));
        };
        for (const fixed& f : table)
            if (const gguf_value* v = find(std::string(f.key))) check(std::string(f.key), *v, f.type, f.elem);
        for (const auto& [key, v] : kv_)  // bos, eos, unknown, padding, separator ... ids
            if (key.starts_with("tokenizer.ggml.") && key.ends_with("_token_id")) check(key, v, gguf_type::u32, gguf_type::u8);
    }

    tensor_info read_tensor_info(cursor& c) {
        tensor_info t;
        t.name = c.string("tensor name");
        if (t.name.empty()) fail("tensor " + std::to_string(tensors_.size()) + " has an empty name");
        if (tensor_index_.contains(t.name)) fail("duplicate tensor '" + t.name + "'");
        const uint32_t n_dims = c.get<uint32_t>("tensor dims");
        if (n_dims == 0 || n_dims > max_dims)
            fail("tensor '" + t.name + "' has " + std::to_string(n_dims) + " dimensions (1 to 4 allowed)");
        t.n_dims = int(n_dims);
        uint64_t elements = 1;
        for (uint32_t d = 0; d < n_dims; ++d) {
            const uint64_t ne = c.get<uint64_t>("tensor shape");
            if (ne == 0 || ne > (uint64_t(1) << 40) || elements > (uint64_t(1) << 50) / ne)
                fail("tensor '" + t.name + "' has an invalid dimension " + std::to_string(ne));
            t.ne[d] = int64_t(ne);
            elements *= ne;
        }
        const uint32_t type = c.get<uint32_t>("tensor type");
        const auto tr = traits_of(type);
        if (!tr) fail("tensor '" + t.name + "' has unsupported type " + std::to_string(type) +
                      " (ncas reads F32, F16, BF16, Q8_0, Q4_0, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K)");
        t.type = weight_type(type);
        if (t.ne[0] % tr->block_values)
            fail("tensor '" + t.name + "' of type " + std::string(tr->name) + " has row length " +
                 std::to_string(t.ne[0]) + ", not a multiple of its block of " + std::to_string(tr->block_values));
        t.bytes = elements / uint64_t(tr->block_values) * uint64_t(tr->block_bytes);
        t.offset = c.get<uint64_t>("tensor offset");  // relative for now
        if (t.offset % alignment_) fail("tensor '" + t.name + "' offset " + std::to_string(t.offset) + " is not aligned");
        tensor_index_.emplace(t.name, tensors_.size());
        return t;
    }

    void check_tensor_extents() {
        std::vector<const tensor_info*> by_offset;
        for (tensor_info& t : tensors_) {
            if (t.offset > size_ || data_offset_ > size_ - t.offset || t.bytes > size_ - data_offset_ - t.offset)
                fail("tensor '" + t.name + "' (" + std::to_string(t.bytes) + " bytes at data offset " +
                     std::to_string(t.offset) + ") extends past the end of the file (" + std::to_string(size_) +
                     " bytes): truncated?");
            t.offset += data_offset_;
            by_offset.push_back(&t);
        }
        std::sort(by_offset.begin(), by_offset.end(), [](auto* a, auto* b) { return a->offset < b->offset; });
        for (size_t i = 1; i < by_offset.size(); ++i)
            if (by_offset[i - 1]->offset + by_offset[i - 1]->bytes > by_offset[i]->offset)
                fail("tensors '" + by_offset[i - 1]->name + "' and '" + by_offset[i]->name + "' overlap");
    }

    std::string name_;
    uint64_t size_ = 0;
    uint32_t version_ = 0;
    uint64_t alignment_ = 32;
    uint64_t data_offset_ = 0;
    std::map<std::string, gguf_value> kv_;
    std::vector<std::string> key_order_;
    std::vector<tensor_info> tensors_;
    std::map<std::string, size_t> tensor_index_;
};

}  // namespace ncas
