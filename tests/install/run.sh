#!/usr/bin/env bash
# Installs ncas into temporary prefixes, once with CMake and once with Meson,
# and builds tests/install/main.cpp against each install three ways, with the
# compilers' default flags (no -m flags):
#   cmake  find_package(ncas CONFIG REQUIRED) + ncas::ncas
#   meson  dependency('ncas') through pkg-config
#   g++    $(pkg-config --cflags --libs ncas)
# Each consumer runs the tiny model tests/data/tiny/base_f32.gguf and must print
# the argmax of the golden logits, and the CPU kernels it ran: the level the
# repo's own `ncas info` chooses on this CPU (every variant is compiled into
# it), never scalar on a CPU that runs SIMD, with nothing on stderr. A fourth
# consumer, g++ $(pkg-config --cflags --libs ncas-headers) (header-only, default
# flags), must run scalar and say so once on stderr on such a CPU. C consumers of
# libncas (tests/install/main.c through the C API): CMake ncas::c and
# ncas::c_static, Meson dependency('ncas-c'), gcc $(pkg-config ncas-c) shared and
# static; they print what the C++ ones do. Also: both
# installs hold the same headers and the same version. Exits non-zero on any
# failure. Usage: [NCAS_CLI=path/to/ncas] tests/install/run.sh
# (without NCAS_CLI, the CLI is built from this tree first).
set -euo pipefail
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
here=$src/tests/install
work=$(mktemp -d "${TMPDIR:-/tmp}/ncas-install.XXXXXX")
trap 'rm -rf "$work"' EXIT
model=$src/tests/data/tiny/base_f32.gguf
step() { printf '\n-- %s\n' "$*"; }

# The argmax per position of the float64 reference's logits for the golden tokens.
want=$(/usr/bin/python3 - "$src/tests/data/tiny/base_f32" <<'PY'
import json, struct, sys
g = json.load(open(sys.argv[1] + ".json"))
V, raw = g["n_vocab"], open(sys.argv[1] + ".logits.f32", "rb").read()
x = struct.unpack("<%df" % (len(raw) // 4), raw)
print("argmax: " + " ".join(str(max(range(V), key=lambda v: x[t * V + v])) for t in range(len(x) // V)))
PY
)
tokens=$(/usr/bin/python3 -c 'import json,sys; print(*json.load(open(sys.argv[1]))["tokens"])' "$src/tests/data/tiny/base_f32.json")

check_run() {  # check_run LABEL EXE [KERNELS]: argmax as the reference, the kernels given (default: $best)
    local got kernels=${3:-$best} err=$work/${1//\//-}.err
    got=$("$2" "$model" $tokens 2>"$err")
    if [ "$got" != "$want"$'\n'"kernels: $kernels" ]; then
        printf 'FAIL %s: printed "%s", expected "%s" and "kernels: %s"\n' "$1" "$got" "$want" "$kernels" >&2
        exit 1
    fi
    if [ -s "$err" ] && [ -z "${3:-}" ]; then
        printf 'FAIL %s: wrote on stderr: %s\n' "$1" "$(cat "$err")" >&2
        exit 1
    fi
    printf 'ok   %s: %s\n' "$1" "$(echo $got)"
}

consume() {  # consume NAME PREFIX: the three consumer builds against one install
    local name=$1 prefix=$2 pcdir
    pcdir=$(dirname "$(find "$prefix" -name ncas.pc -print -quit)")
    [ -f "$pcdir/ncas.pc" ] || { echo "FAIL $name: no ncas.pc under $prefix" >&2; exit 1; }
    # Only this install is visible to pkg-config.
    export PKG_CONFIG_LIBDIR=$pcdir PKG_CONFIG_PATH=

    step "$name install, consumer (a): CMake find_package(ncas) with CMAKE_PREFIX_PATH=$prefix"
    cmake -S "$here" -B "$work/$name-cmake" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix" >"$work/$name.log" \
        || { cat "$work/$name.log"; exit 1; }
    local found
    found=$(sed -n 's/^ncas_DIR:PATH=//p' "$work/$name-cmake/CMakeCache.txt")
    case "$found" in "$prefix"/*) echo "found $found" ;; *) echo "FAIL $name: CMake found ncas at '$found'" >&2; exit 1 ;; esac
    cmake --build "$work/$name-cmake"
    check_run "$name/cmake" "$work/$name-cmake/consumer"
    check_run "$name/cmake C ncas::c" "$work/$name-cmake/consumer_c"
    check_run "$name/cmake C ncas::c_static" "$work/$name-cmake/consumer_c_static"

    step "$name install, consumer (b): Meson dependency('ncas') with PKG_CONFIG_LIBDIR=$pcdir"
    meson setup "$work/$name-meson" "$here" >"$work/$name.log" || { cat "$work/$name.log"; exit 1; }
    grep -F 'Run-time dependency ncas found' "$work/$name.log"
    meson compile -C "$work/$name-meson"
    check_run "$name/meson" "$work/$name-meson/consumer"
    check_run "$name/meson C ncas-c" "$work/$name-meson/consumer_c"

    step "$name install, consumer (c): g++ \$(pkg-config --cflags --libs ncas)"
    local flags
    flags=$(pkg-config --cflags --libs ncas)
    echo "g++ -O2 main.cpp $flags"
    g++ -O2 "$here/main.cpp" $flags -o "$work/$name-gxx"
    check_run "$name/g++" "$work/$name-gxx"

    step "$name install, consumer (e): gcc main.c \$(pkg-config --cflags --libs ncas-c), and --static"
    flags=$(pkg-config --cflags --libs ncas-c)
    echo "gcc -O2 main.c $flags"
    gcc -O2 "$here/main.c" $flags -Wl,-rpath,"$(pkg-config --variable=libdir ncas-c)" -o "$work/$name-gcc"
    check_run "$name/gcc" "$work/$name-gcc"
    # libncas.a by path (a plain -lncas takes the shared one), then its private libraries
    local libdir
    libdir=$(pkg-config --variable=libdir ncas-c)
    flags="$(pkg-config --cflags ncas-c) $libdir/libncas.a $(pkg-config --static --libs ncas-c | sed 's/ -lncas\( \|$\)/ /')"
    echo "gcc -O2 main.c $flags"
    gcc -O2 "$here/main.c" $flags -o "$work/$name-gcc-static"
    check_run "$name/gcc static" "$work/$name-gcc-static"

    step "$name install, consumer (d): header-only, g++ \$(pkg-config --cflags --libs ncas-headers)"
    flags=$(pkg-config --cflags --libs ncas-headers)
    echo "g++ -O2 main.cpp $flags"
    g++ -O2 "$here/main.cpp" $flags -o "$work/$name-headers"
    check_run "$name/headers" "$work/$name-headers" scalar
    local warnings
    local err=$work/$name-headers.err
    warnings=$(grep -c "^ncas: this CPU supports $best but only the scalar kernels" "$err" || true)
    if [ "$best" = scalar ]; then
        [ ! -s "$err" ] || { echo "FAIL $name/headers: stderr on a scalar CPU: $(cat "$err")" >&2; exit 1; }
    elif [ "$(wc -l <"$err")" != 1 ] || [ "$warnings" != 1 ]; then
        printf 'FAIL %s/headers: expected one warning line on stderr, got: %s\n' "$name" "$(cat "$err")" >&2
        exit 1
    fi
    echo "ok   $name/headers: ${best} CPU, scalar kernels, warned once: $(cat "$err")"
    unset PKG_CONFIG_LIBDIR PKG_CONFIG_PATH
}

step "CMake install into $work/cmake-prefix"
cmake -S "$src" -B "$work/cmake-build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DNCAS_BUILD_TESTS=OFF -DNCAS_BUILD_EXAMPLES=OFF \
    -DCMAKE_INSTALL_PREFIX="$work/cmake-prefix" >"$work/log" || { cat "$work/log"; exit 1; }
cmake --build "$work/cmake-build"
cmake --install "$work/cmake-build" | grep -v '/include/ncas/'

step "Meson install into $work/meson-prefix"
meson setup "$work/meson-build" "$src" --prefix="$work/meson-prefix" -Dtests=disabled -Dexamples=disabled >"$work/log" \
    || { cat "$work/log"; exit 1; }
meson install -C "$work/meson-build" | grep -v '/include/ncas/'

step "Both installs hold the same headers and version"
diff -r "$work/cmake-prefix/include" "$work/meson-prefix/include"
echo "headers: $(find "$work/cmake-prefix/include" -type f | wc -l) files, identical"
v_cmake=$(PKG_CONFIG_LIBDIR=$(dirname "$(find "$work/cmake-prefix" -name ncas.pc)") pkg-config --modversion ncas)
v_meson=$(PKG_CONFIG_LIBDIR=$(dirname "$(find "$work/meson-prefix" -name ncas.pc)") pkg-config --modversion ncas)
[ "$v_cmake" = "$v_meson" ] || { echo "FAIL: version $v_cmake (CMake) != $v_meson (Meson)" >&2; exit 1; }
echo "version: $v_cmake"

step "The kernels the repo's own CLI chooses here: the best level this CPU runs"
cli=${NCAS_CLI:-}
if [ -z "$cli" ]; then
    echo "building the CLI (NCAS_CLI not given)"
    cmake -S "$src" -B "$work/cli-build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DNCAS_BUILD_TESTS=OFF \
        -DNCAS_BUILD_EXAMPLES=ON >"$work/log" || { cat "$work/log"; exit 1; }
    cmake --build "$work/cli-build" --target ncas_cli >"$work/log" || { cat "$work/log"; exit 1; }
    cli=$work/cli-build/examples/ncas
fi
best=$(env -u NCAS_ISA "$cli" info --preset pi-p | sed -n 's/^kernels  *\([a-z0-9]*\) (best of: .*/\1/p')
[ -n "$best" ] || { echo "FAIL: '$cli info' printed no kernels line" >&2; exit 1; }
echo "kernels: $best (the CLI: $(env -u NCAS_ISA "$cli" info --preset pi-p | sed -n 's/^kernels  *//p'))"
unset NCAS_ISA

# The two installs' consumers build at once (one core each: most of this script's time),
# each into its own log, printed in order.
( consume cmake "$work/cmake-prefix" ) >"$work/cmake.out" 2>&1 &
cmake_pid=$!
( consume meson "$work/meson-prefix" ) >"$work/meson.out" 2>&1 &
meson_pid=$!
rc=0
wait $cmake_pid || rc=1
wait $meson_pid || rc=1
cat "$work/cmake.out" "$work/meson.out"
[ $rc = 0 ] || { echo "FAIL: a consumer failed (above)" >&2; exit 1; }
printf '\ninstall tests passed: 2 installs x 9 consumers (C++: 3 dispatching, kernels %s, and 1 header-only; C: 5 through libncas)\n' "$best"
