#!/usr/bin/env bash
# The one command that installs what the tests need and runs every test:
#
#   bash scripts/test.sh            (the README and .ci/run call exactly this)
#
# Stages, each with a header; a failed stage does not stop the later ones, and
# the script exits non-zero when any failed. Build folders are build/release,
# build/asan and build/meson, so a second run only rebuilds what changed.
#
#   deps       scripts/install-deps.sh test (Debian packages; a failure stops here)
#   lists      every test_*.cpp and example source is registered in both CMake and Meson
#   layers     scripts/check_layers.py: no header includes one from a layer above it
#   release    CMake Release build, ctest
#   symbols    nm on the per-ISA kernel objects of build/release: every weak symbol they
#              define names their instruction set's tag (the multi-arch rule; under a second)
#   asan       CMake -DNCAS_SANITIZE=ON (ASan + UBSan, -O1, asserts on): every test but the RSS bound
#   server     tests/server (node:test with the official openai npm client, `npm ci` from its lockfile)
#              against `ncas serve` of the release build, then against the asan build's (a smaller load);
#              about 10-20s (npm ci ~9s, each build's 22 tests ~5s)
#   meson      Meson build (release), meson test
#   install    tests/install/run.sh: install with CMake and with Meson, build and run a consumer against each 3 ways
#              (plus header-only), each running the kernels release's `ncas` CLI chooses
#   reference  /usr/bin/python3 tools/test_reference.py (the float64 reference's self-check)
#   arm64      cross-build for aarch64 (cmake/toolchains/aarch64-linux-gnu.cmake) of test_kernels,
#              test_models, test_tokenizer, test_demo and the CLI only, run under qemu-aarch64: the
#              kernel parity harness at neon, dotprod and i8mm, detection on three CPU models, the
#              tiny-model goldens, the tokenizer, the demo's greedy tokens, the CLI's greedy text
#              at every level against the x86 release CLI's, ncas quantize's bytes against the
#              numpy quantiser (tests/test_quantize.sh through qemu), and nm on the ARM per-ISA objects
#
# Measured from a clean clone (commit 17e95e9, 2026-12-07) on the 2-core development
# machine (AMD EPYC Zen 3, nothing else running), deps already installed: lists 1s,
# layers 0s, release 373s (585 tests), symbols 0s, asan 518s (543), server 10s, meson
# 402s (27 test programs), install 121s, reference 0s, arm64 238s (234 gtests under
# qemu, and the CLI/quantize checks): total 27m43s, most of it compiling. The run
# before (f383f09) took about 38 minutes; the asan stage's Vulkan suites on chosen
# models, meson's shards, the install test's parallel consumers and no fuzz replays
# in the release stage brought it under the 30-minute budget. Later runs: 4d701e2
# 30m09s; 610e884 (test programs at -O2: the release stage's compile CPU time 439s
# against 464s, on a host that compiled the unchanged CLI 15% slower) 32m31s, of which
# asan 715s: the unchanged src/ncas_c.cpp took 55s under ASan against 34s the run before.
#
# Every ctest/meson stage sets the build options it needs (tests and examples on: a
# folder configured before, e.g. by scripts/demo.sh with tests off, is reconfigured)
# and fails when it ran fewer tests than its floor below; the summary gives each
# stage's count of tests, of kernel ISA tables and of Vulkan device configurations.
#
# Environment: NCAS_JOBS = parallel compile jobs (default: the number of cores).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
jobs=${NCAS_JOBS:-$(nproc)}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}

summary=()
failed=()
counts=$(mktemp -d)
trap 'rm -rf "$counts"' EXIT

# The fewest tests each stage may run, a little under the counts of 17e95e9 on the
# AVX2 development machine with lavapipe: release 585 ctest tests (2 kernel ISA tables,
# 4 Vulkan device configurations); asan 543 (ctest tests, cli, and the Vulkan
# executables' gtests that do not skip); meson 27 test programs and shards; arm64 234
# gtest cases passed under qemu (test_kernels without scalar, test_models,
# test_tokenizer, test_demo's greedy/prompt tests). An AVX-512 machine runs more. To
# raise a floor when tests are added: read the stage's count in the summary of a full
# run and set the floor a little under it.
floor_release=570
floor_asan=525
floor_meson=26
floor_arm64=225

# stage NAME FUNCTION: runs FUNCTION with errexit in a subshell; records the outcome and time.
stage() {
    local name=$1 t0=$SECONDS rc
    printf '\n==================== %s ====================\n' "$name"
    set +e
    ( set -e; "$2" )
    rc=$?
    set -e
    local took=$((SECONDS - t0))
    local what=""
    [ -f "$counts/$name" ] && what="  $(cat "$counts/$name")"
    if [ "$rc" = 0 ]; then
        summary+=("$(printf '  %-10s ok      %4ds%s' "$name" "$took" "$what")")
    else
        summary+=("$(printf '  %-10s FAILED  %4ds  (exit %d)%s' "$name" "$took" "$rc" "$what")")
        failed+=("$name")
    fi
    printf -- '---- %s: %s in %ds\n' "$name" "$([ "$rc" = 0 ] && echo ok || echo FAILED)" "$took"
}

# ran STAGE FLOOR N LOG...: records for the summary that STAGE ran N tests, and the kernel
# ISA tables and Vulkan device configurations they exercised: the distinct last parts
# of the passed parameterised tests isa/kernels_on.TEST/ISA and vk/SUITE.TEST/CONFIG
# in the gtest output of the LOGs. Fails when N is under FLOOR.
ran() {
    local stage=$1 floor=$2 n=$3 logs isas configs
    shift 3
    logs=$(cat -- "$@" 2>/dev/null || true)
    isas=$(sed -n 's,^\[       OK \] isa/kernels_on\.[A-Za-z0-9_]*/\([A-Za-z0-9_]*\) .*,\1,p' <<<"$logs" | sort -u | wc -l)
    configs=$(sed -n 's,^\[       OK \] vk/[A-Za-z0-9_]*\.[A-Za-z0-9_]*/\([A-Za-z0-9_]*\) .*,\1,p' <<<"$logs" | sort -u | wc -l)
    echo "$n tests, $isas kernel ISA tables, $configs Vulkan device configurations" > "$counts/$stage"
    echo "$stage: $(cat "$counts/$stage") (floor: $floor tests)"
    if [ "$n" -lt "$floor" ]; then
        echo "FAIL: $stage ran $n tests, fewer than its floor of $floor"
        return 1
    fi
}
# ctest_count LOG: the N of ctest's "... tests failed out of N" (0 when it found none).
ctest_count() { sed -n 's/.* tests failed out of \([0-9]*\)$/\1/p' "$1" | tail -1 | grep . || echo 0; }

# A source listed in only one of the two builds would be tested by only one.
check_lists() {
    local bad=0 f dir rel build
    while IFS= read -r f; do
        dir=$(dirname "$f")
        for build in "$dir/CMakeLists.txt" "$dir/meson.build"; do
            if ! grep -qw -- "$(basename "$f" .cpp)" "$build" 2>/dev/null; then
                echo "FAIL: $f is not registered in $build"
                bad=1
            fi
        done
    done < <(find tests -name 'test_*.cpp' -not -path 'tests/install/*' | sort)
    while IFS= read -r f; do
        rel=${f#examples/}
        for build in examples/CMakeLists.txt examples/meson.build; do
            if ! grep -qF -- "$rel" "$build" 2>/dev/null; then
                echo "FAIL: $f is not registered in $build"
                bad=1
            fi
        done
    done < <(find examples -name '*.cpp' 2>/dev/null | sort)
    [ "$bad" = 0 ] && echo "every test and example source is in both tests|examples/CMakeLists.txt and meson.build"
    return "$bad"
}

release() {
    # The fuzz replays are the asan and meson stages' (a fault in them shows under the
    # sanitizers; 80 s of compiling here).
    cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release -DNCAS_BUILD_TESTS=ON -DNCAS_BUILD_EXAMPLES=ON \
        -DNCAS_BUILD_FUZZ_REPLAY=OFF
    cmake --build build/release -j "$jobs"
    ctest --test-dir build/release --output-on-failure -j2 | tee build/release/ctest.log
    ran release "$floor_release" "$(ctest_count build/release/ctest.log)" build/release/Testing/Temporary/LastTest.log
}

# The multi-arch rule (include/ncas/cpu/kernels/tags.hpp). src/cpu/kernels_<isa>.cpp
# is compiled with its instruction set's flags; a weak (COMDAT) definition in it that
# another translation unit could also emit -- a shared non-template inline function,
# or a template instantiation whose arguments do not name the instruction set -- may
# be the one copy the linker keeps for the whole program, and then a CPU without that
# instruction set faults in code that never asked for it. So every weak symbol these
# objects define (nm types W, V, u, i) must name the object's tag. std:: instantiations
# get no exemption, since they are exactly the hazard: std::vector<float>::
# _M_default_append or std::min<long> emitted out of line from AVX-512 code, VEX- or
# EVEX-encoded, is the copy every other caller could end up with. Those that name the
# tag (std::vector<packed_prefill<x86_tag<...>>::q4_packed>::~vector) pass: no other
# translation unit can produce that name. Allowed by name: DW.ref.__gxx_personality_v0,
# a pointer-sized data word holding the C++ runtime's personality routine, the same
# in every object compiled with exceptions, no code. The objects are Release ones: at
# -O0 every inline helper (xsimd's, std::'s) is emitted out of line and the rule cannot
# hold; -O1 (the asan build) was checked clean by hand.
symbols() {
    if [ "$(uname -m)" != x86_64 ]; then
        echo "not x86-64: no per-ISA objects to check"
        return 0
    fi
    local -A tag=(
        [avx2]='ncas::cpu::detail::x86_tag<xsimd::fma3<xsimd::avx2>, (ncas::cpu::isa)1>'
        [avx512]='ncas::cpu::detail::x86_tag<xsimd::avx512bw, (ncas::cpu::isa)2>'
        [avx512vnni]='ncas::cpu::detail::x86_tag<xsimd::avx512bw, (ncas::cpu::isa)3>'
    )
    local isa obj syms weak bad_syms n bad=0
    for isa in avx2 avx512 avx512vnni; do
        obj=build/release/CMakeFiles/ncas_kernels.dir/src/cpu/kernels_$isa.cpp.o
        if [ ! -f "$obj" ]; then
            echo "FAIL: $obj is missing (the release stage builds it)"
            bad=1
            continue
        fi
        # nm's output is read whole first: `nm | grep -q` under pipefail fails when grep
        # stops at the first match and nm dies of SIGPIPE.
        syms=$(nm -C --defined-only "$obj")
        if ! grep -qF " T ncas::cpu::detail::table_$isa()" <<<"$syms"; then
            echo "FAIL $obj: defines no table_$isa()"
            bad=1
            continue
        fi
        weak=$(awk '$2 ~ /^[WVui]$/' <<<"$syms" | cut -d' ' -f3-)
        n=$(grep -c . <<<"$weak" || true)
        bad_syms=$(grep -vF -e "${tag[$isa]}" <<<"$weak" | grep -vxF 'DW.ref.__gxx_personality_v0' || true)
        if [ -n "$bad_syms" ]; then
            echo "FAIL $obj: weak symbols that do not name ${tag[$isa]}:"
            sed 's/^/    /' <<<"$bad_syms"
            bad=1
        else
            echo "ok   kernels_$isa: $n weak symbols, each names ${tag[$isa]} (or is DW.ref.__gxx_personality_v0)"
        fi
    done
    return "$bad"
}

asan() {
    # -g1: line tables for the sanitizers' stack traces, at a fraction of -g's compile and link time.
    cmake -S . -B build/asan -G Ninja -DNCAS_SANITIZE=ON -DCMAKE_BUILD_TYPE= -DCMAKE_CXX_FLAGS="-O1 -g1" \
        -DNCAS_BUILD_TESTS=ON -DNCAS_BUILD_EXAMPLES=ON -DNCAS_BUILD_FUZZ_REPLAY=ON
    cmake --build build/asan -j "$jobs"
    # Left out: streaming_memory measures the process's resident memory against the
    # expert budget, and ASan's shadow memory and quarantine count in it (the
    # release and meson stages run it).
    #
    # Whatever loads a Vulkan driver (the vk tests, the command line's --backend
    # vulkan checks in `cli`) runs without leak detection: Mesa's lavapipe leaks
    # 128-byte blocks (a realloc at libvulkan_lvp.so+0x78451, Mesa 22.3) and
    # is unloaded before LeakSanitizer runs, so no suppression can name it.
    # Address and UB checks stay on there; every other test runs with all three.
    # NCAS_QUANTIZE_QUICK: the quantize test's demo types only (the release stage runs them all).
    NCAS_QUANTIZE_QUICK=1 ctest --test-dir build/asan --output-on-failure -j2 -E '^streaming_memory\.|vk|^cli$' | tee build/asan/ctest.log
    cp build/asan/Testing/Temporary/LastTest.log build/asan/ctest-detail.log
    ASAN_OPTIONS=detect_leaks=0 ctest --test-dir build/asan --output-on-failure -R '^cli$' | tee build/asan/ctest-cli.log
    local n=$(($(ctest_count build/asan/ctest.log) + $(ctest_count build/asan/ctest-cli.log)))
    # The vk tests two processes per executable (gtest's shards), not one per test (each
    # starts an instance): test_vk_models alone is minutes under ASan and validation.
    # What ASan checks there is the host code (buffers, uploads, streaming, the cache's
    # bookkeeping), the same for every model: the quantised-cache and streamed-budget
    # suites, which repeat it per tiny model and configuration, run on a few models
    # chosen for their paths (staged uploads, plain shaders, MoE, the K-quant slabs),
    # and the demo's quantised-cache greedy run is left to the release and meson
    # stages (97 s under ASan). Everything else runs on every model.
    local qc=golden/vk_model.quantised_cache_matches_the_rounded_reference/ st=golden/vk_streamed.any_budget_gives_the_resident_bits/
    # gtest's filter cannot keep a few of the tests it leaves out: a third process per
    # executable runs those few.
    local rest="*-${qc}*:${st}*:vk_api.demo_quantised_kv_cache_greedy_equals_the_rounded_reference"
    local few="${qc}base_bf16_staged:${qc}base_q8_0_plain:${qc}llama_moe_best:${st}base_q4_0:${st}k256_mix:${st}swiglu_untied"
    local exe pids=() rc=0 i log shard
    for exe in build/asan/tests/vk/test_vk_*; do
        [ -x "$exe" ] && [ "${exe%.log}" = "$exe" ] || continue
        for shard in 0 1 few; do
            if [ $shard = few ]; then
                GTEST_FILTER=$few NCAS_VK_VALIDATION=1 ASAN_OPTIONS=detect_leaks=0 "$exe" >"$exe.$shard.log" 2>&1 &
            else
                GTEST_TOTAL_SHARDS=2 GTEST_SHARD_INDEX=$shard GTEST_FILTER=$rest NCAS_VK_VALIDATION=1 \
                    ASAN_OPTIONS=detect_leaks=0 "$exe" >"$exe.$shard.log" 2>&1 &
            fi
            pids+=("$!:$exe.$shard.log")
        done
    done
    for i in "${pids[@]}"; do
        log=${i#*:}
        if wait "${i%%:*}"; then
            echo "ok   ${log%.log}: $(grep -E '^\[  PASSED  \]' "$log")"
            n=$((n + $(sed -n 's/^\[  PASSED  \] \([0-9]*\) tests\{0,1\}\.$/\1/p' "$log" | grep . || echo 0)))
        else
            cat "$log"
            echo "FAIL ${log%.log} (log: $log)"
            rc=1
        fi
    done
    local few_ran few_n
    few_ran=$(cat build/asan/tests/vk/test_vk_*.few.log | sed -n 's/^\[       OK \] \([^ ]*\).*/\1/p' | sort -u | wc -l)
    few_n=$(tr : '\n' <<<"$few" | wc -l)
    if [ "$few_ran" != "$few_n" ]; then
        echo "FAIL: of the $few_n Vulkan tests chosen for ASan, $few_ran passed (a test renamed? see \$few)"
        rc=1
    fi
    ran asan "$floor_asan" "$n" build/asan/ctest-detail.log build/asan/tests/vk/test_vk_*.log || rc=1
    return "$rc"
}

# `ncas serve` driven by the openai npm package. Node and npm come from the machine
# (apt-get nodejs npm when missing), the client from tests/server/package-lock.json.
server_stage() {
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        local sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends nodejs npm
    fi
    (cd tests/server && npm ci --no-audit --no-fund --loglevel=error)
    [ -x build/release/examples/ncas ] || cmake --build build/release -j "$jobs" --target ncas_cli
    local cli
    for cli in build/release/examples/ncas build/asan/examples/ncas; do
        if ! "$cli" serve --help >/dev/null 2>&1; then
            echo "FAIL: $cli has no serve command (cpp-httplib or nlohmann-json missing when it was configured?)"
            return 1
        fi
    done
    echo "-- release build"
    NCAS_CLI=$PWD/build/release/examples/ncas node --test --test-reporter=spec tests/server/*.test.js
    # Under ASan (and UBSan, leaks checked at the server's exit) everything is
    # slower: the waits are scaled and the load test is 40 requests.
    echo "-- asan build"
    NCAS_CLI=$PWD/build/asan/examples/ncas NCAS_SERVER_SLOW=6 NCAS_SERVER_LOAD=40 \
        node --test --test-reporter=spec tests/server/*.test.js
}

meson_stage() {
    local reconfigure=""
    [ -f build/meson/meson-private/coredata.dat ] && reconfigure=--reconfigure
    meson setup $reconfigure build/meson -Dtests=enabled -Dexamples=enabled
    meson compile -C build/meson -j "$jobs"
    # The Vulkan model suite (test_vk_models: 181 tests, two shards of 76 s on lavapipe)
    # runs whole in the release stage, from the same sources; what meson built runs here on
    # four models chosen for their paths (plain shaders, staged uploads, MoE, K-quant
    # slabs), and every other test program runs whole. The count of its tests is checked.
    local names=() name vk=build/meson/tests/vk/test_vk_models vk_pid="" rc=0 n
    local vk_filter='vk_api.*:golden/vk_model.*/base_q8_0_plain:golden/vk_model.*/base_bf16_staged:golden/vk_model.*/llama_moe_best:golden/vk_model.*/k256_mix_best'
    while IFS= read -r name; do [[ $name == test_vk_models* ]] || names+=("$name"); done < <(meson test -C build/meson --list 2>/dev/null)
    if [ -x "$vk" ]; then
        GTEST_FILTER=$vk_filter NCAS_VK_VALIDATION=1 "$vk" >build/meson/vk_models.log 2>&1 &
        vk_pid=$!
    fi
    NCAS_QUANTIZE_QUICK=1 meson test -C build/meson --print-errorlogs --num-processes 2 "${names[@]}" | tee build/meson/test.log
    n=$(sed -n 's/^Ok: *\([0-9]*\).*/\1/p' build/meson/test.log | grep . || echo 0)
    if [ -n "$vk_pid" ]; then
        if wait "$vk_pid" && grep -qE '^\[  PASSED  \] ([2-9][0-9]) tests' build/meson/vk_models.log; then
            echo "ok   $vk (four models): $(grep -E '^\[  PASSED  \]' build/meson/vk_models.log)"
            n=$((n + 1))
        else
            cat build/meson/vk_models.log
            echo "FAIL $vk (four models; fewer than 20 tests passed, or a failure: build/meson/vk_models.log)"
            rc=1
        fi
    fi
    # meson runs each test program as one test; its log holds their gtest output.
    ran meson "$floor_meson" "$n" build/meson/meson-logs/testlog.txt build/meson/vk_models.log || rc=1
    return "$rc"
}

# The multi-arch rule for the ARM64 per-ISA objects (as symbols() for x86; names from aarch64 nm).
# Allowed by name besides: xsimd::kernel::wrap::vreinterpretq_*, xsimd 8.1's wrappers of
# the NEON reinterpret casts, emitted out of line because its dispatch tables take their
# addresses; a reinterpret is no instruction (each body is a lone `ret`), the same at every level.
arm64_symbols() {
    local isa obj syms weak bad_syms n bad=0 level
    local -A level_of=([neon]=4 [dotprod]=5 [i8mm]=6)
    for isa in neon dotprod i8mm; do
        obj=build/arm64/CMakeFiles/ncas_kernels.dir/src/cpu/kernels_$isa.cpp.o
        level="ncas::cpu::detail::arm_tag<(ncas::cpu::isa)${level_of[$isa]}>"
        syms=$(aarch64-linux-gnu-nm -C --defined-only "$obj")
        if ! grep -qF " T ncas::cpu::detail::table_$isa()" <<<"$syms"; then
            echo "FAIL $obj: defines no table_$isa()"
            bad=1
            continue
        fi
        weak=$(awk '$2 ~ /^[WVui]$/' <<<"$syms" | cut -d' ' -f3-)
        n=$(grep -c . <<<"$weak" || true)
        bad_syms=$(grep -vF -e "$level" <<<"$weak" | grep -vxF 'DW.ref.__gxx_personality_v0' |
            grep -vE '^xsimd::kernel::wrap::vreinterpretq_[a-z0-9]+_[a-z0-9]+\(__[A-Za-z0-9]+_t\)$' || true)
        if [ -n "$bad_syms" ]; then
            echo "FAIL $obj: weak symbols that do not name $level:"
            sed 's/^/    /' <<<"$bad_syms"
            bad=1
        else
            echo "ok   kernels_$isa: $n weak symbols, each names $level (or is DW.ref.__gxx_personality_v0 or a reinterpret)"
        fi
    done
    return "$bad"
}

# ARM64 under qemu-aarch64 (docs/arm.md). Only the targets it runs are built; the scalar
# kernels and the slow tests that exercise no ARM code (the demo's held-out perplexity)
# are left to the x86 stages. Fails when a level ran no parity test.
arm64() {
    local b=build/arm64 rc=0 cpu level want out ref got n
    local qemu=(qemu-aarch64 -L /usr/aarch64-linux-gnu)
    cmake -S . -B "$b" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/aarch64-linux-gnu.cmake \
        -DNCAS_BUILD_TESTS=ON -DNCAS_BUILD_EXAMPLES=ON >/dev/null
    cmake --build "$b" -j "$jobs" --target test_kernels test_models test_tokenizer test_demo ncas_cli
    arm64_symbols || rc=1
    # The parity harness: every ARM level -cpu max runs (it has dotprod and i8mm).
    # One qemu process a level (qemu runs one guest thread at a time), the tests that
    # take no level (the ARM levels' bit-identity) in a fourth.
    local pids=()
    for level in neon dotprod i8mm; do
        "${qemu[@]}" -cpu max "$b/tests/test_kernels" --gtest_filter="*/$level" >"$b/kernels_$level.log" 2>&1 &
        pids+=("$!:$level")
    done
    "${qemu[@]}" -cpu max "$b/tests/test_kernels" --gtest_filter='-*/scalar:*/neon:*/dotprod:*/i8mm' \
        >"$b/kernels_any.log" 2>&1 || { grep -E '^\[  FAILED  \]|Failure' "$b/kernels_any.log" | head -40; rc=1; }
    for level in "${pids[@]}"; do
        wait "${level%%:*}" || {
            grep -E '^\[  FAILED  \]|Failure' "$b/kernels_${level#*:}.log" | head -40
            echo "FAIL: test_kernels at ${level#*:} under qemu (log: $b/kernels_${level#*:}.log)"
            rc=1
        }
    done
    cat "$b"/kernels_*.log >"$b/kernels.log"
    for level in neon dotprod i8mm; do
        n=$(grep -c "^\[       OK \] isa/kernels_on\.[A-Za-z0-9_]*/$level " "$b/kernels.log" || true)
        echo "kernel parity at $level: $n tests passed"
        [ "$n" -gt 0 ] || { echo "FAIL: no kernel test ran at $level"; rc=1; }
    done
    # Detection: each CPU model's best level, and a level above it refused (NCAS_ISA).
    for cpu in cortex-a53:neon:dotprod cortex-a76:dotprod:i8mm max:i8mm:; do
        IFS=: read -r cpu level above <<<"$cpu"
        out=$("${qemu[@]}" -cpu "$cpu" "$b/examples/ncas" info -m models/demo-q8_0.gguf 2>&1 | grep '^kernels' || true)
        echo "-cpu $cpu: $out"
        grep -qE "^kernels +$level \(best of: scalar neon dotprod i8mm compiled in; CPU supports up to $level\)" <<<"$out" ||
            { echo "FAIL: -cpu $cpu should run $level"; rc=1; }
        [ -z "$above" ] && continue
        out=$(NCAS_ISA=$above "${qemu[@]}" -cpu "$cpu" "$b/examples/ncas" info -m models/demo-q8_0.gguf 2>&1) &&
            { echo "FAIL: NCAS_ISA=$above ran on -cpu $cpu"; rc=1; }
        grep -q "NCAS_ISA=$above: instruction set not supported by this CPU (best: $level)" <<<"$out" ||
            { echo "FAIL: NCAS_ISA=$above on -cpu $cpu: $out"; rc=1; }
    done
    # Goldens of the tiny models, the tokenizer, the demo's greedy tokens (best level).
    for t in test_models test_tokenizer "test_demo --gtest_filter=demo_model.greedy*:demo_model.prompts*"; do
        # shellcheck disable=SC2086
        "${qemu[@]}" -cpu max "$b/tests/"$t >"$b/${t%% *}.log" 2>&1 || { tail -30 "$b/${t%% *}.log"; rc=1; }
        echo "${t%% *}: $(grep -E '^\[  (PASSED|FAILED)  \]' "$b/${t%% *}.log" | head -1)"
    done
    # The CLI's greedy text at every level equals the x86 release CLI's.
    [ -x build/release/examples/ncas ] || {
        cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
        cmake --build build/release -j "$jobs" --target ncas_cli
    }
    for m in models/demo-q8_0.gguf models/demo-f32.gguf; do
        ref=$(build/release/examples/ncas generate -m "$m" -p "the cat" --temp 0 -n 24 --no-echo 2>/dev/null)
        for level in neon dotprod i8mm; do
            got=$(NCAS_ISA=$level "${qemu[@]}" -cpu max "$b/examples/ncas" generate -m "$m" -p "the cat" --temp 0 -n 24 \
                --no-echo 2>/dev/null) || true
            if [ -n "$ref" ] && [ "$got" = "$ref" ]; then
                echo "ok   $m greedy at $level equals x86's"
            else
                printf 'FAIL %s greedy at %s:\n  arm64: %s\n  x86:   %s\n' "$m" "$level" "$got" "$ref"
                rc=1
            fi
        done
    done
    # ncas quantize on ARM64 writes the numpy quantiser's bytes (GCC fuses x·id + 8.5 into an
    # FMA there unless told not to): tests/test_quantize.sh with the aarch64 CLI through qemu.
    printf '#!/bin/sh\nexec %s -cpu max %s "$@"\n' "${qemu[*]}" "$PWD/$b/examples/ncas" >"$b/ncas-qemu"
    chmod +x "$b/ncas-qemu"
    if NCAS_QUANTIZE_QUICK=1 bash tests/test_quantize.sh "$b/ncas-qemu" tests/data/tiny >"$b/quantize.log" 2>&1; then
        echo "ok   ncas quantize under qemu: $(grep -c '^ok' "$b/quantize.log") checks (tests/test_quantize.sh)"
    else
        grep -E '^FAIL' "$b/quantize.log"
        echo "FAIL: ncas quantize under qemu (log: $b/quantize.log)"
        rc=1
    fi
    n=$(cat "$b"/test_*.log "$b"/kernels_*.log | grep -cE '^\[       OK \]' || true)
    ran arm64 "$floor_arm64" "$n" "$b/kernels.log"
    return "$rc"
}

check_layers() { /usr/bin/python3 scripts/check_layers.py; }
# The release stage's CLI gives the reference kernel level (run.sh builds one when it is missing).
install_stage() {
    if [ -x build/release/examples/ncas ]; then
        NCAS_CLI=$PWD/build/release/examples/ncas bash tests/install/run.sh
    else
        bash tests/install/run.sh
    fi
}
reference() { /usr/bin/python3 tools/test_reference.py; }

t_start=$SECONDS
printf '==================== deps ====================\n'
bash scripts/install-deps.sh test
echo "test dependencies installed"

stage lists check_lists
stage layers check_layers
stage release release
stage symbols symbols
stage asan asan
stage server server_stage
stage meson meson_stage
stage install install_stage
stage reference reference
stage arm64 arm64

total=$((SECONDS - t_start))
printf '\n==================== summary ====================\n'
printf '%s\n' "${summary[@]}"
if [ "${#failed[@]}" = 0 ]; then
    printf 'test.sh: all %d stages passed in %dm%02ds\n' "${#summary[@]}" $((total / 60)) $((total % 60))
else
    printf 'test.sh: FAILED: %s (%d of %d stages) in %dm%02ds\n' "${failed[*]}" "${#failed[@]}" "${#summary[@]}" \
        $((total / 60)) $((total % 60))
    exit 1
fi
