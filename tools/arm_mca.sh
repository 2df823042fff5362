#!/usr/bin/env bash
# llvm-mca cycle estimates of the ARM64 Q4_0 kernels' inner loops (docs/arm.md):
#   bash tools/arm_mca.sh            (needs g++-aarch64-linux-gnu, llvm, libxsimd-dev)
# Compiles tools/arm_mca_loops.cpp per level with that level's flags (those of
# src/cpu/kernels_<level>.cpp in CMakeLists.txt), takes each function's body (one group
# of 4 blocks: the decode tile, rows × 1 token; the prefill tile, rows × 4 tokens) and
# asks llvm-mca for its steady-state cycles on Cortex-A76 (Raspberry Pi 5), Neoverse N1
# and Apple M1. Prints cycles per Q4_0 block (decode: per block of one row; prefill:
# per block and token). The i8mm level is left out: none of these three cores has
# FEAT_I8MM, and its Q4_0 loops are dotprod's.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/inc" && ln -s /usr/include/xsimd "$tmp/inc/xsimd"
declare -A march=([neon]=armv8-a [dotprod]=armv8.2-a+dotprod)
# The value of a `const int` the compiler emitted as `NAME:` followed by `.word N`.
word() { awk -v s="$1:" '$1 == s {getline; print $2; exit}' "$2"; }
printf '%-8s %-12s %-8s %5s %7s %7s %11s %10s\n' level cpu loop rows tokens instr cyc/group cyc/block
for level in neon dotprod; do
    s=$tmp/$level.s
    aarch64-linux-gnu-g++ -std=c++20 -O2 -march="${march[$level]}" -DNCAS_MCA_LEVEL="$level" -Iinclude \
        -isystem "$tmp/inc" -S -o "$s" tools/arm_mca_loops.cpp
    for loop in decode prefill; do
        fn=mca_${loop}_q4
        if [ "$loop" = decode ]; then rows=$(word mca_decode_rows "$s") tokens=1
        else rows=$(word mca_tile_rows "$s") tokens=$(word mca_tokens "$s"); fi
        # The body: the function's instructions from its label to its ret.
        awk -v f="$fn:" '$1 == f {on=1; next} on && /^\t\.size/ {on=0} on && /^\t[a-z]/ && !/^\t\./ && !/\tret/' "$s" \
            >"$tmp/$level.$loop.s"
        for cpu in cortex-a76 neoverse-n1 apple-m1; do
            out=$(llvm-mca -mtriple=aarch64 -mcpu="$cpu" -iterations=1000 "$tmp/$level.$loop.s")
            cycles=$(awk '/^Total Cycles:/ {print $3}' <<<"$out")
            insns=$(wc -l <"$tmp/$level.$loop.s")
            awk -v l="$level" -v c="$cpu" -v p="$loop" -v r="$rows" -v t="$tokens" -v n="$insns" -v y="$cycles" \
                'BEGIN {g = y / 1000; printf "%-8s %-12s %-8s %5d %7d %7d %11.1f %10.2f\n", l, c, p, r, t, n, g, g / (4 * r * t)}'
        done
    done
done
