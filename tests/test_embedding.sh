#!/usr/bin/env bash
# The examples of docs/embedding.md: the doc's code blocks are the files under
# examples/embedding/, and the C++, C and Python programs each print text from
# the demo model, the same text (greedy), ending "[length after 24 tokens]".
#   usage: test_embedding.sh SOURCE_DIR CPP_BINARY C_BINARY LIBNCAS|-     (-: no Python, e.g. under ASan)
set -u
if [ $# -ne 4 ]; then
    echo "usage: $0 SOURCE_DIR CPP_BINARY C_BINARY LIBNCAS|-" >&2
    exit 2
fi
src=$1 cpp=$2 c=$3 lib=$4
model=$src/models/demo-q8_0.gguf
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0
ok() { echo "ok   $1"; }
fail() { failures=$((failures + 1)); echo "FAIL $1"; }

# Each "<!-- file: PATH -->" in the doc is followed by a fenced block equal to PATH.
/usr/bin/python3 - "$src" <<'PY' || failures=$((failures + 1))
import re, sys
src = sys.argv[1]
doc = open(f"{src}/docs/embedding.md", encoding="utf-8").read()
blocks = re.findall(r"<!-- file: (\S+) -->\s*```\w*\n(.*?)```", doc, re.S)
assert len(blocks) >= 3, f"{len(blocks)} file blocks in docs/embedding.md, expected the C++, C and Python examples"
bad = [p for p, body in blocks if open(f"{src}/{p}", encoding="utf-8").read() != body]
for p in bad:
    print(f"FAIL docs/embedding.md's block differs from {p}")
if bad:
    sys.exit(1)
print(f"ok   docs/embedding.md's {len(blocks)} file blocks equal their files")
PY

run() {  # run NAME CMD...: exit 0, text, the finish line
    local name=$1
    shift
    if ! timeout 120 "$@" "$model" >"$tmp/$name.out" 2>"$tmp/$name.err"; then
        fail "$name example: exit code != 0: $(head -c 300 "$tmp/$name.err")"
    elif ! tail -1 "$tmp/$name.out" | grep -Eq '^\[length after 24 tokens\]$' ||
        [ "$(sed '$d' "$tmp/$name.out" | tr -d ' \n' | wc -c)" -lt 20 ]; then
        fail "$name example: unexpected output: $(head -c 300 "$tmp/$name.out")"
    else
        ok "$name example prints text from the demo model: $(head -1 "$tmp/$name.out" | head -c 60)..."
    fi
}
run cpp "$cpp"
run c "$c"
if [ "$lib" != - ]; then
    run python env NCAS_LIB="$lib" PYTHONPATH="$src/python" /usr/bin/python3 "$src/examples/embedding/embed.py"
    cmp -s "$tmp/cpp.out" "$tmp/python.out" && ok "C++ and Python print the same" || fail "C++ and Python differ"
fi
cmp -s "$tmp/cpp.out" "$tmp/c.out" && ok "C++ and C print the same" || fail "C++ and C differ"
[ "$failures" = 0 ] && echo "all passed" || echo "$failures failed"
[ "$failures" = 0 ]
