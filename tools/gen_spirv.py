#!/usr/bin/python3
"""Compiles shaders/*.comp to SPIR-V and writes include/ncas/vk/generated/.

Every shader's second comment line may say `// variants: subgroup small_storage`;
each listed axis doubles its builds (-DUSE_SUBGROUP, -DSMALL_STORAGE). Output:

  spirv_<shader>.hpp   constexpr uint32_t arrays, one per variant
  push_constants.hpp   the C++ push-constant structs, written from
                       shaders/push_constants.h, with every member's offset and
                       every block's size static_asserted against what glslang
                       reports for the compiled shaders
  shaders.hpp          the registry: shader_id, per shader its bindings,
                       specialization constants and push-constant struct, and
                       the code of each variant

The GLSL struct is the single source: a member no shader reads, a struct no
shader uses, a type other than uint/int/float, a member glslang places or types
differently from the C++ rules, or shaders that disagree about a block fail the
run (exit 1), as does a compiler error, so each fails the build. --check
compiles into a temporary directory and fails when the committed headers differ.
"""
import argparse
import filecmp
import itertools
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHADERS = os.path.join(ROOT, "shaders")
OUT = os.path.join(ROOT, "include", "ncas", "vk", "generated")
AXES = {"subgroup": ("USE_SUBGROUP", "sg"), "small_storage": ("SMALL_STORAGE", "ss")}
TARGET_ENV = "vulkan1.1"  # subgroup operations need SPIR-V 1.3
# GLSL scalar -> (C++ type, the GL type code glslang's reflection prints); all 4 bytes.
SCALARS = {"uint": ("uint32_t", 0x1405), "int": ("int32_t", 0x1404), "float": ("float", 0x1406)}
MAX_PUSH_BYTES = 128  # the smallest maxPushConstantsSize Vulkan guarantees


def fail(msg):
    print("gen_spirv: " + msg, file=sys.stderr)
    sys.exit(1)


def variants_of(source):
    m = re.search(r"^// variants:(.*)$", source, re.M)
    axes = m.group(1).split() if m else []
    for a in axes:
        if a not in AXES:
            fail("unknown variant axis '%s'" % a)
    return [dict(zip(axes, bits)) for bits in itertools.product([False, True], repeat=len(axes))]


def compile_one(glslang, path, flags, spv):
    defines = ["-D" + AXES[a][0] for a, on in flags.items() if on]
    cmd = [glslang, "-V", "--target-env", TARGET_ENV, "-q", "-I" + SHADERS] + defines + [path, "-o", spv]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0 or not os.path.exists(spv):
        fail("%s failed (exit %d):\n%s%s" % (" ".join(cmd), r.returncode, r.stdout, r.stderr))
    with open(spv, "rb") as f:
        data = f.read()
    if len(data) % 4 or data[:4] != b"\x03\x02\x23\x07":
        fail("%s: not a SPIR-V module" % spv)
    return [int.from_bytes(data[i:i + 4], "little") for i in range(0, len(data), 4)], r.stdout


def spec_ids(words):
    """The SpecId decorations of a SPIR-V module (OpDecorate <id> SpecId <n>)."""
    ids, i = set(), 5
    while i < len(words):
        n, op = words[i] >> 16, words[i] & 0xffff
        if n == 0:
            fail("malformed SPIR-V")
        if op == 71 and n >= 4 and words[i + 2] == 1:  # OpDecorate, Decoration SpecId
            ids.add(words[i + 3])
        i += n
    return ids


def with_includes(source):
    """The source with its #include "x" lines replaced by the files (for the searches here)."""
    def expand(m):
        with open(os.path.join(SHADERS, m.group(1))) as f:
            return with_includes(f.read())
    return re.sub(r'^#include "([^"]+)"', expand, source, flags=re.M)


def parse_structs(path):
    """The structs of shaders/push_constants.h: name -> {comment, members: [(type, name, comment)]}."""
    with open(path) as f:
        text = f.read()
    structs = {}
    for m in re.finditer(r"^struct\s+(\w+)\s*\{[ \t]*(?://[ \t]*([^\n]*))?\n(.*?)^\};", text, re.M | re.S):
        name, members = m.group(1), []
        for line in m.group(3).splitlines():
            code, _, comment = line.partition("//")
            if not code.strip():
                if comment.strip() and members:  # a comment continued on the next line
                    t, n, c = members[-1]
                    members[-1] = (t, n, c + " " + comment.strip())
                continue
            d = re.fullmatch(r"\s*(\w+)\s+(\w+)\s*;\s*", code)
            if not d:
                fail("%s: struct %s: cannot read '%s' (one scalar member a line)" % (path, name, code.strip()))
            if d.group(1) not in SCALARS:
                fail("%s: %s.%s has type %s; push constants here are uint, int or float"
                     % (path, name, d.group(2), d.group(1)))
            members.append((d.group(1), d.group(2), comment.strip()))
        if not members:
            fail("%s: struct %s has no members" % (path, name))
        structs[name] = {"comment": (m.group(2) or "").strip(), "members": members}
    if not structs:
        fail("%s: no structs" % path)
    return structs


def reflect(name, source, reflection, structs):
    """What one compiled variant says: its push struct, the members it reads, its block size and bindings."""
    m = re.search(r"uniform\s+pc_block\s*\{\s*(\w+)\s+p\s*;", with_includes(source))
    if not m:
        fail("%s: no push-constant block `uniform pc_block { <struct> p; }`" % name)
    struct = m.group(1)
    if struct not in structs:
        fail("%s: push-constant struct %s is not in shaders/push_constants.h" % (name, struct))
    types = {n: SCALARS[t][1] for t, n, _ in structs[struct]["members"]}
    read = {}
    for member, offset, gltype in re.findall(r"^p\.(\w+): offset (\d+), type ([0-9a-f]+),", reflection, re.M):
        if member not in types:
            fail("%s: glslang reports %s.%s, which push_constants.h lacks" % (name, struct, member))
        if int(gltype, 16) != types[member]:
            fail("%s: %s.%s has GL type 0x%s, expected 0x%x" % (name, struct, member, gltype, types[member]))
        read[member] = int(offset)
    size = re.search(r"^pc_block: .* size (\d+),", reflection, re.M)
    if not size:
        fail("%s: glslang reports no size for pc_block" % name)
    bindings = set()
    block_part = reflection.split("Uniform block reflection:", 1)[1].split("\n\n", 1)[0] if "Uniform block reflection:" in reflection else ""
    for block, binding in re.findall(r"^(\w+): .*, binding (-?\d+),", block_part, re.M):
        if block != "pc_block" and int(binding) >= 0:
            bindings.add(int(binding))
    return struct, read, int(size.group(1)), bindings


def array_text(ident, words):
    lines = ["inline constexpr uint32_t %s[] = {" % ident]
    for i in range(0, len(words), 8):
        lines.append("    " + ", ".join("0x%08x" % w for w in words[i:i + 8]) + ",")
    lines.append("};")
    return "\n".join(lines)


HEADER = "#pragma once\n// Generated by tools/gen_spirv.py from shaders/; do not edit.\n"


def write_push_constants(out, structs, layouts, none):
    """generated/push_constants.hpp: the structs with glslang's offsets and sizes asserted, member by member."""
    lines = [HEADER.rstrip("\n"),
             "// The push constants of every kernel, written from shaders/push_constants.h (the",
             "// single source: edit it there and rerun the script). Every member's offset and",
             "// every block's size is checked against what glslang laid out when the SPIR-V",
             "// in this directory was compiled, so C++ and GLSL cannot disagree and compile.",
             "// Fill them with designated initializers ({.rows = ...}): a member renamed,",
             "// reordered or retyped on the GLSL side then fails to compile at the caller.",
             "#include <cstddef>", "#include <cstdint>", "", "namespace ncas::vk {", "",
             "inline constexpr uint32_t none = 0x%08xu;  // NONE in shaders/common.glsl: \"not used\"" % none]
    for struct, s in structs.items():
        lay = layouts[struct]
        lines.append("")
        lines.append("struct %s {%s" % (struct, ("  // " + s["comment"]) if s["comment"] else ""))
        decls = ["    %s %s;" % (SCALARS[t][0], n) for t, n, _ in s["members"]]
        width = max(len(d) for d in decls) + 2
        for d, (_, _, c) in zip(decls, s["members"]):
            lines.append((d.ljust(width) + "// " + c) if c else d)
        lines.append("};")
        lines.append('static_assert(sizeof(%s) == %d, "%s: glslang\'s block is %d bytes");'
                     % (struct, lay["size"], struct, lay["size"]))
        for _, n, _ in s["members"]:
            off = lay["members"][n]
            lines.append('static_assert(offsetof(%s, %s) == %d, "%s.%s: glslang places it at byte %d");'
                         % (struct, n, off, struct, n, off))
    lines += ["", "}  // namespace ncas::vk", ""]
    with open(os.path.join(out, "push_constants.hpp"), "w") as f:
        f.write("\n".join(lines))


def write_registry(out, shaders, registry):
    """generated/shaders.hpp: shader_id, what each shader binds and is specialised with, its variants' code."""
    names = sorted(shaders)
    w = [HEADER.rstrip("\n"), "#include <cstddef>", "#include <cstdint>", "#include <span>", "#include <string_view>", "",
         '#include "ncas/vk/generated/push_constants.hpp"']
    w += ['#include "ncas/vk/generated/spirv_%s.hpp"' % n for n in names]
    w += ["", "namespace ncas::vk {", "",
          "// One per shaders/*.comp; the index into spirv::shader_table.",
          "enum class shader_id : uint32_t {"]
    w += ["    %s," % n for n in names]
    w += ["};", "inline constexpr std::size_t shader_count = %d;" % len(names), "",
          "namespace spirv {", "",
          "struct shader_info {",
          "    std::string_view name;",
          "    uint32_t bindings;        // storage buffers at bindings 0 .. bindings - 1",
          "    uint32_t spec_constants;  // specialization constants after the workgroup size (ids 1 ..)",
          "    uint32_t push_bytes;      // sizeof its push-constant struct",
          "};",
          "inline constexpr shader_info shader_table[] = {"]
    for n in names:
        s = shaders[n]
        w.append('    {"%s", %d, %d, %d},  // %s' % (n, s["bindings"], s["spec"], s["size"], s["struct"]))
    w += ["};",
          "inline constexpr uint32_t max_bindings = %d, max_spec_constants = %d;"
          % (max(s["bindings"] for s in shaders.values()), max(s["spec"] for s in shaders.values())),
          "constexpr const shader_info& info(shader_id s) { return shader_table[std::size_t(s)]; }", "",
          "struct shader_code {",
          "    shader_id id;",
          "    bool subgroup;       // built with -DUSE_SUBGROUP",
          "    bool small_storage;  // built with -DSMALL_STORAGE (16- and 8-bit storage)",
          "    std::span<const uint32_t> code;",
          "};", "",
          "inline constexpr shader_code all_shaders[] = {"]
    for name, sg, ss, ident in registry:
        w.append("    {shader_id::%s, %s, %s, %s}," % (name, str(sg).lower(), str(ss).lower(), ident))
    w += ["};", "", "}  // namespace spirv", "",
          "// The push-constant struct of each shader: push_constants_of<shader_id::route> is route_pc.",
          "template <shader_id S>", "struct push_constants_for;"]
    for n in names:
        w.append("template <>\nstruct push_constants_for<shader_id::%s> {\n    using type = %s;\n};" % (n, shaders[n]["struct"]))
    w += ["template <shader_id S>", "using push_constants_of = typename push_constants_for<S>::type;", ""]
    for n in names:
        w.append("static_assert(sizeof(push_constants_of<shader_id::%s>) == spirv::info(shader_id::%s).push_bytes);" % (n, n))
    w += ["", "}  // namespace ncas::vk", ""]
    with open(os.path.join(out, "shaders.hpp"), "w") as f:
        f.write("\n".join(w))


def generate(glslang, out):
    os.makedirs(out, exist_ok=True)
    structs = parse_structs(os.path.join(SHADERS, "push_constants.h"))
    with open(os.path.join(SHADERS, "common.glsl")) as f:
        m = re.search(r"^const uint NONE = (0x[0-9a-fA-F]+)u;", f.read(), re.M)
    if not m:
        fail("shaders/common.glsl: no `const uint NONE = 0x...u;`")
    none = int(m.group(1), 16)
    registry, layouts, shaders = [], {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for fname in sorted(os.listdir(SHADERS)):
            if not fname.endswith(".comp"):
                continue
            name = fname[:-5]
            if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
                fail("%s: a shader's name must be a C++ identifier" % fname)
            path = os.path.join(SHADERS, fname)
            with open(path) as f:
                source = f.read()
            arrays = []
            for flags in variants_of(source):
                suffix = "".join("_" + AXES[a][1] for a, on in flags.items() if on)
                where = name + suffix
                words, reflection = compile_one(glslang, path, flags, os.path.join(tmp, where + ".spv"))
                struct, read, size, bindings = reflect(where, source, reflection, structs)
                lay = layouts.setdefault(struct, {"members": {}, "size": size, "by": where})
                if lay["size"] != size:
                    fail("%s: %s is %d bytes, in %s %d" % (where, struct, size, lay["by"], lay["size"]))
                for member, off in read.items():
                    if lay["members"].setdefault(member, off) != off:
                        fail("%s: %s.%s at offset %d, elsewhere %d" % (where, struct, member, off, lay["members"][member]))
                ids = spec_ids(words)
                if 0 not in ids or ids != set(range(max(ids) + 1)):
                    fail("%s: specialization constant ids %s; expected 0 (the workgroup size) .. n-1" % (where, sorted(ids)))
                if bindings != set(range(len(bindings))):
                    fail("%s: bindings %s are not 0 .. n-1 (a binding the shader does not use?)" % (where, sorted(bindings)))
                info = {"struct": struct, "size": size, "bindings": len(bindings), "spec": max(ids)}
                old = shaders.setdefault(name, info)
                if old["struct"] != struct or old["bindings"] != info["bindings"]:
                    fail("%s: variants differ in push-constant struct or bindings" % name)
                old["spec"] = max(old["spec"], info["spec"])
                arrays.append(array_text(where, words))
                registry.append((name, flags.get("subgroup", False), flags.get("small_storage", False), where))
            with open(os.path.join(out, "spirv_%s.hpp" % name), "w") as f:
                f.write(HEADER + "// shaders/%s\n#include <cstdint>\n\nnamespace ncas::vk::spirv {\n\n" % fname)
                f.write("\n\n".join(arrays) + "\n\n}  // namespace ncas::vk::spirv\n")

    unused = [s for s in structs if s not in layouts]
    if unused:
        fail("push_constants.h: no shader uses %s; remove it" % ", ".join(unused))
    unread = ["%s.%s" % (struct, n) for struct, s in structs.items() for _, n, _ in s["members"]
              if n not in layouts[struct]["members"]]
    if unread:
        fail("push_constants.h: no shader reads %s; remove each from the struct and from its callers in "
             "include/ncas/vk/ops.hpp" % ", ".join(unread))
    for struct, s in structs.items():
        lay = layouts[struct]
        if lay["size"] != 4 * len(s["members"]) or lay["size"] > MAX_PUSH_BYTES:
            fail("%s: glslang's block is %d bytes for %d members (at most %d bytes)"
                 % (struct, lay["size"], len(s["members"]), MAX_PUSH_BYTES))
    write_push_constants(out, structs, layouts, none)
    write_registry(out, shaders, registry)
    written = {"push_constants.hpp", "shaders.hpp"} | {"spirv_%s.hpp" % n for n in shaders}
    for fname in os.listdir(out):  # what an earlier version wrote and this one no longer does
        path = os.path.join(out, fname)
        if fname not in written and os.path.isfile(path):
            with open(path, errors="replace") as f:
                if HEADER in f.read(len(HEADER)):
                    os.remove(path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--glslang", default="glslangValidator", help="glslangValidator executable")
    ap.add_argument("--out", default=OUT, help="output directory (default: the committed headers)")
    ap.add_argument("--check", action="store_true", help="fail when the committed headers are stale")
    args = ap.parse_args()
    if not args.check:
        generate(args.glslang, args.out)
        return
    with tempfile.TemporaryDirectory() as tmp:
        generate(args.glslang, tmp)
        fresh, committed = sorted(os.listdir(tmp)), sorted(os.listdir(args.out)) if os.path.isdir(args.out) else []
        stale = sorted(set(fresh) ^ set(committed))
        stale += [n for n in fresh if n in committed and not filecmp.cmp(os.path.join(tmp, n), os.path.join(args.out, n), False)]
        if stale:
            fail("generated headers are stale (%s); run tools/gen_spirv.py" % ", ".join(sorted(set(stale))))
    print("gen_spirv: %s is up to date" % os.path.relpath(args.out, ROOT))


if __name__ == "__main__":
    main()
