#!/usr/bin/env bash
# Coverage-guided fuzzing of every input surface with libFuzzer, under ASan + UBSan.
#
#   bash scripts/fuzz.sh [SECONDS] [RUNS] [HARNESS...]   (default: 60 seconds each, every harness)
#
# Each harness runs until SECONDS have passed or RUNS inputs were executed, whichever
# comes first; SECONDS 0 means no time limit, RUNS absent or 0 no limit on executions.
# The long runs of docs/reliability.md, one harness at a time:
#   bash scripts/fuzz.sh 0 1000000 gguf; bash scripts/fuzz.sh 0 1000000 tokenizer
#   bash scripts/fuzz.sh 0 100000 sampler
#
# Builds tests/fuzz/fuzz_NAME.cpp with clang-14 -fsanitize=fuzzer,address,undefined
# into build/fuzz/, seeds each corpus (build/fuzz/corpus/NAME/) from the committed
# inputs tests/data/fuzz/NAME/ and the test data, and runs each harness for SECONDS
# with -print_final_stats=1. The corpus grows across runs and is written as the run goes:
# a run that was stopped resumes from it (its executions are then counted afresh). A crash, a sanitizer
# report, a leak or a timeout is a finding: its input is kept in build/fuzz/findings/NAME/,
# the log in build/fuzz/NAME.log, and the script exits non-zero. Fix it, then copy the
# input into tests/data/fuzz/NAME/, where the ordinary test suite replays it.
# The summary table (executions, coverage, corpus) is appended to build/fuzz/summary.txt;
# docs/reliability.md records the figures of the long runs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seconds=${1:-60}
shift || true
runs=0
if [[ "${1:-}" =~ ^[0-9]+$ ]]; then runs=$1; shift; fi
all=(gguf tokenizer sampler state server_request)
harnesses=("$@")
[ "$#" -gt 0 ] || harnesses=("${all[@]}")
clangxx=${CLANGXX:-clang++-14}
if ! command -v "$clangxx" >/dev/null || ! ls /usr/lib/llvm-14/lib/clang/*/lib/linux/libclang_rt.fuzzer-*.a >/dev/null 2>&1; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends clang-14 libclang-rt-14-dev libxsimd-dev
fi

out=build/fuzz
mkdir -p "$out"
data=$PWD/tests/data

# Seeds that come from the test data rather than from tests/data/fuzz.
seed_extra() {
    local name=$1 dir=$2
    case "$name" in
        gguf) cp tests/data/tiny/*.gguf "$dir/" ;;
        tokenizer)
            /usr/bin/python3 - "$dir" <<'PY'
import json, sys, os, glob
out = sys.argv[1]
n = 0
for path in glob.glob("tests/data/tokenizer/*cases.json"):
    for case in json.load(open(path, encoding="utf-8")):
        if not isinstance(case, dict) or "utf8" not in case:
            continue
        text = bytes.fromhex(case["utf8"])  # the exact bytes, invalid UTF-8 included
        for mode in (0, 1, 4, 5, 8, 12):  # gpt2 / demo / SentencePiece vocabulary, special tokens off / on
            with open(os.path.join(out, f"case{n:04d}_{mode}"), "wb") as f:
                f.write(bytes([mode]) + text)
        n += 1
PY
            ;;
    esac
}

# One line per harness run, appended: runs of one harness at a time add up to a table.
[ -f "$out/summary.txt" ] || printf '%-10s %10s %8s %6s %8s %7s %s\n' harness execs exec/s cov features corpus result > "$out/summary.txt"
status=0
for name in "${harnesses[@]}"; do
    src=tests/fuzz/fuzz_$name.cpp
    [ -f "$src" ] || { echo "fuzz.sh: no harness $src" >&2; exit 2; }
    echo "== $name: building"
    "$clangxx" -std=c++20 -O1 -g -fno-omit-frame-pointer \
        -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
        -Iinclude -DNCAS_FUZZ_DATA="\"$data\"" "$src" -o "$out/fuzz_$name" -pthread
    corpus=$out/corpus/$name findings=$out/findings/$name
    mkdir -p "$corpus" "$findings"
    cp -n tests/data/fuzz/"$name"/* "$corpus/" 2>/dev/null || true
    seed_extra "$name" "$corpus"
    limits="-max_total_time=$seconds"
    [ "$runs" = 0 ] || limits="$limits -runs=$runs"
    echo "== $name: fuzzing ($limits)"
    set +e
    ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=0 UBSAN_OPTIONS=print_stacktrace=1 \
        "$out/fuzz_$name" "$corpus" $limits -print_final_stats=1 -max_len=262144 \
        -rss_limit_mb=3072 -timeout=20 -artifact_prefix="$findings/" > "$out/$name.log" 2>&1
    rc=$?
    set -e
    execs=$(awk '/stat::number_of_executed_units/ {print $2}' "$out/$name.log")
    rate=$(awk '/stat::average_exec_per_sec/ {print $2}' "$out/$name.log")
    last=$(grep -E '^#[0-9]+' "$out/$name.log" | tail -1)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    units=$(find "$corpus" -type f | wc -l)
    result=ok
    if [ "$rc" != 0 ]; then result="FINDING (exit $rc; $findings, $out/$name.log)"; status=1; fi
    printf '%-10s %10s %8s %6s %8s %7s %s\n' "$name" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "$units" "$result" \
        | tee -a "$out/summary.txt"
done
echo
cat "$out/summary.txt"
exit "$status"
