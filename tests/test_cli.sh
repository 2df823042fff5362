#!/usr/bin/env bash
# Tests of the `ncas` command line against the tiny models in tests/data/tiny.
#   usage: test_cli.sh NCAS_BINARY MINIMAL_BINARY TINY_DATA_DIR
# Every check prints "ok" or "FAIL"; the script exits 1 when any failed.
# Each command runs under a timeout, so a hang fails too.
set -u
if [ $# -ne 3 ]; then
    echo "usage: $0 NCAS_BINARY MINIMAL_BINARY TINY_DATA_DIR" >&2
    exit 2
fi
ncas=$1 minimal=$2 data=$3
model=$data/base_f32.gguf
py=/usr/bin/python3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
unset NCAS_MODEL
failures=0 checks=0

ok() { checks=$((checks + 1)); echo "ok   $1"; }
fail() { checks=$((checks + 1)); failures=$((failures + 1)); echo "FAIL $1"; }
check() { if [ "$2" = 0 ]; then ok "$1"; else fail "$1${3:+: $3}"; fi; }

# run [--in FILE] CMD...: stdout to $tmp/out, stderr to $tmp/err, exit code in $rc.
run() {
    local input=/dev/null
    if [ "$1" = --in ]; then input=$2; shift 2; fi
    timeout 60 "$@" <"$input" >"$tmp/out" 2>"$tmp/err"
    rc=$?
}
err_text() { head -c 400 "$tmp/err" | tr '\n' '|'; }

# expect NAME CODE PATTERN CMD...: exits with CODE, and for a failure prints
# exactly one line on stderr that matches PATTERN (grep -E).
expect() {
    local name=$1 code=$2 pattern=$3
    shift 3
    run "$@"
    if [ "$rc" != "$code" ]; then
        fail "$name: exit code $rc, expected $code; stderr: $(err_text)"
    elif [ "$code" != 0 ] && [ "$(wc -l <"$tmp/err")" != 1 ]; then
        fail "$name: expected one line on stderr, got: $(err_text)"
    elif ! grep -Eq -- "$pattern" "$tmp/err" "$tmp/out"; then
        fail "$name: output does not match /$pattern/; stderr: $(err_text)"
    else
        ok "$name"
    fi
}

# compare_logits GOT REF T V BOUND: same size T*V*4, finite, and
# max|GOT - REF| <= BOUND * max|REF|.
compare_logits() {
    "$py" - "$@" <<'EOF'
import sys
import numpy as np
got, ref, T, V, bound = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
a = np.fromfile(got, dtype="<f4").astype(np.float64)
b = np.fromfile(ref, dtype="<f4").astype(np.float64)
if a.size != T * V or b.size != T * V:
    sys.exit(f"{a.size} and {b.size} values, expected {T}x{V}")
if not np.isfinite(a).all():
    sys.exit("non-finite logits")
err = np.abs(a - b).max() / np.abs(b).max()
if err > bound:
    sys.exit(f"max error {err:.3g} x max|logit| exceeds {bound:g}")
EOF
}

json_field() { "$py" -c 'import json, sys; v = json.load(open(sys.argv[1]))[sys.argv[2]]; print(",".join(map(str, v)) if isinstance(v, list) else v)' "$1" "$2"; }

# ---- top level -----------------------------------------------------------
expect "--version" 0 '^ncas [0-9]+\.[0-9]+' "$ncas" --version
expect "no command is a usage error" 2 "no command given" "$ncas"
expect "--help" 0 'commands:' "$ncas" --help
expect "unknown command" 2 "unknown command 'frobnicate'" "$ncas" frobnicate
expect "help COMMAND" 0 'usage: ncas perplexity' "$ncas" help perplexity

for cmd in generate chat info perplexity tokenize logits bench; do
    run "$ncas" "$cmd" --help
    if [ "$cmd" = bench ] && grep -q 'not built yet' "$tmp/err"; then
        echo "skip bench --help (bench is a placeholder)"
        continue
    fi
    if [ "$rc" = 0 ] && grep -q "usage: ncas $cmd" "$tmp/out"; then ok "$cmd --help"; else fail "$cmd --help: exit $rc"; fi
done

# ---- bad command lines: exit 2, one line naming the problem ----------------
expect "unknown option" 2 "unknown option '--frob'" "$ncas" generate -m "$model" --frob
expect "misspelt option" 2 'did you mean --top-k' "$ncas" generate -m "$model" --top-kk 3
expect "missing value" 2 'option --temp needs a value' "$ncas" generate -m "$model" --temp
expect "not a number" 2 "option --temp: 'hot' is not a number" "$ncas" generate -m "$model" --temp hot
expect "not an integer" 2 "option --n-predict: '1.5' is not an integer" "$ncas" generate -m "$model" -n 1.5
expect "out of range" 2 'option --threads must be' "$ncas" generate -m "$model" -t -3
expect "bad choice" 2 "'bf16' is not one of f32\|f16\|q8_0\|q4_0" "$ncas" generate -m "$model" --kv-type bf16
expect "sampler range" 2 'top_p' "$ncas" generate -m "$model" --top-p 0
expect "stray argument" 2 "unexpected argument 'extra'" "$ncas" generate -m "$model" -p x extra
expect "flag with value" 2 'takes no value' "$ncas" logits -m "$model" --batched=yes --ids 1 -o "$tmp/x"
expect "logits needs --out" 2 'out FILE is required' "$ncas" logits -m "$model" --ids 1,2
expect "logits needs ids" 2 'exactly one of --ids and --prompt' "$ncas" logits -m "$model" -o "$tmp/x"
expect "bad id list" 2 "option --ids: 'x' is not an integer" "$ncas" logits -m "$model" --ids 1,x -o "$tmp/x"
expect "perplexity needs a file" 2 'no text FILE given' "$ncas" perplexity -m "$model"
expect "unknown preset" 2 "unknown preset 'PI-X'" "$ncas" info --preset PI-X
expect "model and preset" 2 'not both' "$ncas" info -m "$model" --preset PI
expect "decode with text" 2 '--decode takes no TEXT' "$ncas" tokenize -m "$model" --decode 1 abc

# ---- failures at run time: exit 1, one line --------------------------------
expect "missing model file" 1 '/nonexistent/model.gguf: cannot open' "$ncas" generate -m /nonexistent/model.gguf -p x
expect "NCAS_MODEL is used" 1 '/nonexistent/env.gguf: cannot open' env NCAS_MODEL=/nonexistent/env.gguf "$ncas" info
expect "not a GGUF file" 1 "$data/base_f32.json" "$ncas" info -m "$data/base_f32.json"
expect "prompt longer than the context" 1 'prompt is [0-9]+ tokens; it must be shorter than the context of 8' \
    "$ncas" generate -m "$model" -t 1 -c 8 -p "the cat sat on the mat and the dog sat on the log"
expect "ids longer than the context" 1 '5 tokens do not fit in the context of 4' \
    "$ncas" logits -m "$model" -t 1 -c 4 --ids 1,2,3,4,5 -o "$tmp/x"
expect "context beyond the model's" 1 'context of 65 tokens: the model supports 1 to 64' \
    "$ncas" logits -m "$model" -t 1 -c 65 --ids 1 -o "$tmp/x"
expect "id outside the vocabulary" 1 'token 64 at index 1 is outside the vocabulary of 64' \
    "$ncas" logits -m "$model" -t 1 --ids 1,64 -o "$tmp/x"
expect "text outside the vocabulary" 1 'no token for byte 0x54' "$ncas" tokenize -m "$model" "The"
expect "unwritable --out" 1 'cannot open for writing' "$ncas" logits -m "$model" -t 1 --ids 1 -o /nonexistent/dir/x
expect "missing text file" 1 '/nonexistent/text: cannot open' "$ncas" perplexity -m "$model" /nonexistent/text

# ---- logits against the float64 reference ---------------------------------
for json in "$data"/*.json; do
    name=$(basename "$json" .json)
    [ "$name" = index ] && continue
    ids=$(json_field "$json" tokens) bound=$(json_field "$json" tolerance) V=$(json_field "$json" n_vocab)
    T=$(echo "$ids" | tr ',' '\n' | wc -l)
    run "$ncas" logits -m "$data/$name.gguf" -t 1 --ids "$ids" -o "$tmp/$name.f32"
    if [ "$rc" != 0 ]; then fail "logits $name: exit $rc: $(err_text)"; continue; fi
    size=$(stat -c %s "$tmp/$name.f32")
    check "logits $name: file is T x V x 4 bytes" "$([ "$size" = $((T * V * 4)) ] && echo 0 || echo 1)" "$size bytes"
    msg=$(compare_logits "$tmp/$name.f32" "$data/$name.logits.f32" "$T" "$V" "$bound" 2>&1)
    check "logits $name: within $bound x max|logit| of the reference" $? "$msg"
done

ids=$(json_field "$data/base_f32.json" tokens)
run "$ncas" logits -m "$model" -t 1 -b 5 --batched --ids "$ids" -o "$tmp/batched.f32"
run "$ncas" logits -m "$model" -t 1 --one-by-one --ids "[${ids//,/, }]" -o "$tmp/single.f32"
msg=$(compare_logits "$tmp/batched.f32" "$tmp/single.f32" 12 64 1e-4 2>&1)
check "logits --batched (batches of 5) and --one-by-one agree" $? "$msg"
run "$ncas" logits -m "$model" -t 2 -b 5 --ids "$ids" -o "$tmp/threads.f32"
msg=$(compare_logits "$tmp/threads.f32" "$tmp/batched.f32" 12 64 0 2>&1)
check "logits with 2 threads are bit-identical" $? "$msg"
run "$ncas" logits -m "$model" -t 1 --kv-type f16 --ids "$ids" -o "$tmp/f16.f32"
msg=$(compare_logits "$tmp/f16.f32" "$data/base_f32.logits.f32" 12 64 5e-3 2>&1)
check "logits with an f16 KV cache stay near the reference" $? "$msg"
for kv in q8_0 q4_0; do
    run "$ncas" logits -m "$model" -t 2 --kv-type $kv --ids "$ids" -o "$tmp/$kv.f32"
    msg=$(compare_logits "$tmp/$kv.f32" "$data/kv/base_f32.$kv.logits.f32" 12 64 2e-2 2>&1)
    check "logits with a $kv KV cache stay near the reference rounded through $kv" $? "$msg"
done

# ---- tokenize --------------------------------------------------------------
text="the cat sat on the mat and then it was in a hat at the end 0123 456"
printf '%s' "$text" >"$tmp/text.txt"
run "$ncas" tokenize -m "$model" "$text"
cp "$tmp/out" "$tmp/ids.json"
"$py" -c 'import json, sys; ids = json.load(open(sys.argv[1])); assert ids and all(0 <= i < 64 for i in ids)' "$tmp/ids.json" 2>/dev/null
check "tokenize prints a JSON array of ids" $?
run --in "$tmp/text.txt" "$ncas" tokenize -m "$model"
cmp -s "$tmp/out" "$tmp/ids.json"
check "tokenize reads stdin" $?
run "$ncas" tokenize -m "$model" --decode "$(cat "$tmp/ids.json")"
cmp -s "$tmp/out" "$tmp/text.txt"
check "tokenize --decode round-trips the text" $? "got '$(cat "$tmp/out")'"
run "$ncas" tokenize -m "$model" --bos --pieces "the"
grep -q '"piece": "<|endoftext|>"' "$tmp/out" && "$py" -c 'import json, sys; json.load(open(sys.argv[1]))' "$tmp/out"
check "tokenize --bos --pieces prints valid JSON" $?
# A SentencePiece vocabulary-only GGUF (tools/spm_vocab.py): the ids the sentencepiece library gave.
spm=$data/../tokenizer/spm_vocab.gguf
run "$ncas" tokenize -m "$spm" "Hello world, 日本"
[ "$(cat "$tmp/out")" = "[432, 288, 932, 621, 948, 929, 233, 154, 168, 233, 159, 175]" ]
check "tokenize on a SentencePiece vocabulary-only file gives sentencepiece's ids" $? "got '$(cat "$tmp/out")'"
run "$ncas" tokenize -m "$spm" --decode "432, 288, 932, 621, 948, 929, 233, 154, 168, 233, 159, 175"
[ "$(cat "$tmp/out")" = "Hello world, 日本" ]
check "tokenize --decode on a SentencePiece vocabulary drops the space prefix" $? "got '$(cat "$tmp/out")'"
# A tiny llama with that vocabulary (tools/spm_model.py): ncas tokenizes its prompt as the library
# did, and the logits of `logits --prompt` (ncas's own tokenisation) match the float64 reference's.
spm_json=$data/../tokenizer/spm_llama.json spm_model=$data/../tokenizer/spm_llama.gguf
spm_text=$("$py" -c 'import json, sys; print(json.load(open(sys.argv[1]))["text"], end="")' "$spm_json")
spm_ids=$(json_field "$spm_json" ids)
spm_T=$(echo "$spm_ids" | tr ',' '\n' | wc -l)
run "$ncas" tokenize -m "$spm_model" --bos "$spm_text"
[ "$(tr -d '[] ' <"$tmp/out")" = "$spm_ids" ]
check "tokenize on a SentencePiece llama model gives sentencepiece's ids" $? "got '$(cat "$tmp/out")'"
run "$ncas" logits -m "$spm_model" --prompt "$spm_text" --bos -o "$tmp/spm.f32" -t 1
msg=$(compare_logits "$tmp/spm.f32" "$data/../tokenizer/spm_llama.logits.f32" "$spm_T" 1000 0.02 2>&1)
check "logits --prompt on a SentencePiece llama model: within 2e-2 x max|logit| of the reference" $? "$msg $(err_text)"

# ---- generate --------------------------------------------------------------
expect "generate --temp 0" 0 'prefill:' "$ncas" generate -m "$model" -t 1 -p "the cat" --temp 0 -n 16
for what in 'decode:' 'MoD: [0-9.]+% of' 'expert use' 'stopped: (token limit|end of text)'; do
    grep -Eq "$what" "$tmp/err"
    check "generate reports /$what/" $? "$(err_text)"
done
grep -q '^the cat' "$tmp/out"
check "generate echoes the prompt" $?
cp "$tmp/out" "$tmp/greedy1"
run "$ncas" generate -m "$model" -t 2 -p "the cat" --temp 0 -n 16
cmp -s "$tmp/out" "$tmp/greedy1"
check "greedy generation is reproducible" $?
run "$ncas" generate -m "$model" -t 1 -p "the cat" --seed 7 -n 16
cp "$tmp/out" "$tmp/seeded1"
run "$ncas" generate -m "$model" -t 1 -p "the cat" --seed 7 -n 16
cmp -s "$tmp/out" "$tmp/seeded1"
check "sampling with --seed is reproducible" $?
run --in "$tmp/text.txt" "$ncas" generate -m "$model" -t 1 --temp 0 -n 4
grep -q "^$text" "$tmp/out"
check "generate reads the prompt from stdin" $? "$(err_text)"
expect "generate stops when the context is full" 0 'stopped: context full \(16 tokens\)' \
    "$ncas" generate -m "$model" -t 1 -c 16 -p "the cat" --ignore-eos -n -1

# minimal.cpp is greedy without a repetition penalty, as generate can be told to be.
run "$minimal" "$model" "the cat"
cp "$tmp/out" "$tmp/minimal"
check "minimal runs" "$rc" "$(err_text)"
run "$ncas" generate -m "$model" -p "the cat" --temp 0 --repeat-penalty 1 -n 32
cmp -s "$tmp/out" "$tmp/minimal"
check "generate --temp 0 --repeat-penalty 1 matches minimal" $?

# ---- perplexity ------------------------------------------------------------
expect "perplexity" 0 '^perplexity: [0-9]+\.[0-9]+$' "$ncas" perplexity -m "$model" -t 1 "$tmp/text.txt"
ppl=$(sed -n 's/^perplexity: //p' "$tmp/out")
bits=$(sed -n 's/^bits\/token: //p' "$tmp/out")
# The same number from the logits of the same tokens (one window: the text fits in the context).
run "$ncas" tokenize -m "$model" --bos "$text"
run "$ncas" logits -m "$model" -t 1 --ids "$(cat "$tmp/out")" -o "$tmp/ppl.f32"
"$py" - "$tmp/ppl.f32" "$(cat "$tmp/ids.json")" "$ppl" "$bits" <<'EOF'
import json, math, sys
import numpy as np
ids = [0] + json.loads(sys.argv[2])
l = np.fromfile(sys.argv[1], dtype="<f4").astype(np.float64).reshape(len(ids), 64)
m = l.max(axis=1)
nll = np.mean([m[i] + math.log(np.exp(l[i] - m[i]).sum()) - l[i, ids[i + 1]] for i in range(len(ids) - 1)])
ppl, bits = float(sys.argv[3]), float(sys.argv[4])
assert math.isfinite(ppl) and abs(ppl - math.exp(nll)) <= 1e-3 * ppl, (ppl, math.exp(nll))
assert abs(bits - nll / math.log(2)) <= 1e-3, (bits, nll / math.log(2))
EOF
check "perplexity and bits/token agree with the logits" $?
expect "perplexity in overlapping windows" 0 'scored in [0-9]+ window' \
    "$ncas" perplexity -m "$model" -t 1 -c 8 --stride 4 "$tmp/text.txt"
expect "perplexity of a text too short" 1 'at least 2 are needed' "$ncas" perplexity -m "$model" --no-bos - 

# ---- chat ------------------------------------------------------------------
# The tiny vocabulary has no newline or capitals: turns are " u <line> b".
chat=("$ncas" chat -m "$model" -t 1 --user-prefix ' u ' --bot-prefix ' b' --temp 0 -n 4 -v)
printf 'the cat\nsat on\n/reset\nthe end\n/frob\n/quit\nnever read\n' >"$tmp/chat.txt"
run --in "$tmp/chat.txt" "${chat[@]}"
check "chat runs" "$rc" "$(err_text)"
grep -q 'conversation reset' "$tmp/out" && grep -q 'unknown command /frob' "$tmp/out" && ! grep -q 'never read' "$tmp/out"
check "chat knows /reset and /quit" $?
# Turn 2 runs only its own tokens on top of turn 1: context after it = before + new + generated.
"$py" - "$tmp/err" <<'EOF'
import re, sys
turns = [tuple(map(int, t)) for t in re.findall(r"\[(\d+) new tokens.*?, (\d+) generated.*?context (\d+) of", open(sys.argv[1]).read())]
assert len(turns) == 3, turns
(n1, g1, c1), (n2, g2, c2), (n3, g3, c3) = turns
assert c1 == n1 + g1 and c2 == c1 + n2 + g2, turns  # the conversation stays in the cache
assert c3 == n3 + g3, turns                           # /reset empties it
EOF
check "chat keeps the conversation in the cache" $?
printf 'the cat\nsat on the mat\nthe end\n' >"$tmp/chat2.txt"
run --in "$tmp/chat2.txt" "${chat[@]}" -c 20 -n 8
grep -q 'context full' "$tmp/out"
check "chat says when the context is full" $? "$(head -c 300 "$tmp/out")"
check "chat exits 0 after a full context" "$rc"

# ---- model options shared by the model-running commands -------------------
for cmd in generate chat perplexity logits bench; do
    run "$ncas" "$cmd" --help
    n=0
    for o in --backend --device --list-devices --expert-budget --expert-policy --direct-io --prefetch --no-prefetch; do
        [ "$(grep -c -- "^  $o " "$tmp/out")" = 1 ] && n=$((n + 1))
    done
    check "$cmd --help lists the backend and streaming options once each" "$([ "$n" = 8 ] && echo 0 || echo 1)"
done
expect "unknown backend" 2 "option --backend: 'nonsense' is not one of cpu\|vulkan" \
    "$ncas" logits -m "$model" --backend nonsense --ids 1 -o "$tmp/x"
expect "--device without --backend vulkan" 2 '--device picks a Vulkan device' "$ncas" generate -m "$model" --device 1 -p x
expect "streaming options without a budget" 2 '--no-prefetch applies to expert streaming' \
    "$ncas" generate -m "$model" --no-prefetch -p x
expect "bad expert policy" 2 "'mru' is not one of lru\|lfu_aged\|lfu_distance" \
    "$ncas" generate -m "$model" --expert-budget min --expert-policy mru -p x
expect "malformed expert budget" 2 "option --expert-budget: expert budget '12X'" \
    "$ncas" generate -m "$model" --expert-budget 12X -p x

# ---- expert streaming (--expert-budget): the same tokens as resident experts ----
gen=("$ncas" generate -m "$model" -t 1 -p "the cat" --temp 0 -n 16)  # as $tmp/greedy1
expect "generate --expert-budget min --stats" 0 'experts: [0-9]+ slots' "${gen[@]}" --expert-budget min --stats
cmp -s "$tmp/out" "$tmp/greedy1"
check "generate --expert-budget min matches resident experts (greedy)" $? "got '$(head -c 100 "$tmp/out")'"
grep -Eq '^layer +requests +hit-rate' "$tmp/err" && grep -Eq '^ +all +[0-9]+ ' "$tmp/err"
check "generate --stats prints the expert report" $? "$(err_text)"
for opts in "--expert-budget 25% --expert-policy lru" "--expert-budget full --expert-policy lfu_aged --no-prefetch" \
            "--expert-budget 20K --expert-policy lfu_distance"; do
    # shellcheck disable=SC2086
    run "${gen[@]}" $opts
    cmp -s "$tmp/out" "$tmp/greedy1"
    check "generate $opts matches resident experts" $? "$(err_text)"
done
for p in on off; do
    run "${gen[@]}" --expert-budget 25% --prefetch $p --stats
    cmp -s "$tmp/out" "$tmp/greedy1" && grep -q "prefetch $p" "$tmp/err"
    check "generate --prefetch $p: prefetch $p in the report, same tokens" $? "$(err_text)"
done
expect "bad --prefetch" 2 "'sometimes' is not one of auto\|on\|off" "${gen[@]}" --expert-budget min --prefetch sometimes
run "${gen[@]}" --expert-budget min --direct-io --stats
if [ "$rc" != 0 ] && grep -q 'O_DIRECT' "$tmp/err"; then
    echo "skip --direct-io (the file system of $data does not support O_DIRECT)"
else
    cmp -s "$tmp/out" "$tmp/greedy1" && grep -q 'O_DIRECT reads' "$tmp/err"
    check "generate --expert-budget min --direct-io matches resident experts" $? "$(err_text)"
fi
expect "expert budget too small" 1 'expert budget of 1024 bytes is too small: .* need at least [0-9]+ bytes' \
    "${gen[@]}" --expert-budget 1K
expect "generate --stats without a budget" 0 'experts: resident' "${gen[@]}" --stats
run "$ncas" perplexity -m "$model" -t 1 --expert-budget min "$tmp/text.txt"
check "perplexity --expert-budget min matches resident experts" \
    "$([ "$rc" = 0 ] && [ "$(sed -n 's/^perplexity: //p' "$tmp/out")" = "$ppl" ] && echo 0 || echo 1)" "$(err_text)"
run --in "$tmp/chat.txt" "${chat[@]}" --expert-budget min
check "chat --expert-budget min runs and reports streaming" \
    "$([ "$rc" = 0 ] && grep -q 'experts: [0-9]* slots' "$tmp/err" && echo 0 || echo 1)" "$(err_text)"
expect "bench --depth with a list of KV types" 0 '^depth 24 +kv Q4_0 +decode +[0-9.]+ tok/s +[0-9.]+ MB/token \(weights [0-9.]+ \+ KV [0-9.]+\)' \
    "$ncas" bench --model "$data/base_q8_0.gguf" --prompt 4 --gen 4 --depth 0,24 --kv-type f16,q8_0,q4_0 --skip-machine -t 1 \
    --json "$tmp/depth.json"
"$py" -c 'import json, sys; r = json.load(open(sys.argv[1])); sys.exit(not (len(r) == 6 and all(x["decode_tps"] > 0 for x in r) and r[1]["kv_bytes_per_token"] > r[3]["kv_bytes_per_token"] > r[5]["kv_bytes_per_token"] > 0 and r[1]["prefill_gflops"] > 0 and all(x["prefill_ref_tps"] > 0 and abs(x["prefill_ratio_paired"] - x["prefill_tps"] / x["prefill_ref_tps"]) < 1e-3 * x["prefill_ratio_paired"] for x in r[1::2]) and all(x["prefill_ratio_paired"] == 0 for x in r[0::2])))' "$tmp/depth.json.depth.json"
check "bench --depth writes one JSON row per type and depth, KV bytes f16 > q8_0 > q4_0, the prefill paired with short ones" $? "$(head -c 600 "$tmp/out")"
expect "bench --depth-fill random: decode at depth without the prefill" 0 'cache filled with random rows \(--depth-fill random\): no prefill' \
    "$ncas" bench --model "$data/base_q8_0.gguf" --prompt 4 --gen 4 --depth 24 --kv-type f16 --skip-machine -t 1 \
    --depth-fill random --json "$tmp/fill.json"
# Its KV bytes a token (rows spread over the layers as a prefill keeps them) near the prefilled run's (MoD routing differs).
"$py" -c 'import json, sys; r = json.load(open(sys.argv[1]))[0]; p = json.load(open(sys.argv[2]))[1]; sys.exit(not (r["depth_fill"] == "random" and r["prefill_tps"] == 0 and r["decode_tps"] > 0 and 0.5 < r["kv_bytes_per_token"] / p["kv_bytes_per_token"] < 2))' "$tmp/fill.json.depth.json" "$tmp/depth.json.depth.json"
check "bench --depth-fill random reads as many KV bytes a token as a prefilled cache, within 2x" $? "$(head -c 600 "$tmp/out")"
expect "bench --depth past the context" 1 'depth 100 \+ --gen exceed the model.s context of 64' \
    "$ncas" bench --model "$data/base_q8_0.gguf" --prompt 4 --gen 4 --depth 100 --skip-machine -t 1
expect "bench --kv-type list with a bad type" 2 "'bf16' is not one of" \
    "$ncas" bench --model "$data/base_q8_0.gguf" --kv-type f16,bf16 --skip-machine
expect "bench --expert-budget min" 0 '^decode +20 tokens' \
    "$ncas" bench --model "$data/base_q8_0.gguf" --prompt 20 --gen 20 --expert-budget min --bw-mib 64 -t 1 --json "$tmp/bench.json"
grep -q '^experts: ' "$tmp/out" && [ "$(json_field "$tmp/bench.json" backend)" = cpu ]
check "bench --expert-budget min prints the expert report and JSON" $? "$(head -c 300 "$tmp/out")"
grep -Eq '^kernels +[a-z0-9]+ \(best of: scalar( [a-z0-9]+)* compiled in; CPU supports up to [a-z0-9]+\)$' "$tmp/out"
check "bench prints the kernels chosen and why" $? "$(grep '^kernels' "$tmp/out")"
grep -qE '^paired +decode at [0-9.]+% \(median of 8 chunks; [0-9.]+–[0-9.]+%\)' "$tmp/out" &&
    [ "$(json_field "$tmp/bench.json" paired_chunks)" = 8 ] &&
    "$py" -c 'import json, sys; j = json.load(open(sys.argv[1])); sys.exit(not (j["decode_pct_paired"] > 0 and 0 < j["paired_read_gbs_min"] <= j["paired_read_gbs_max"]))' "$tmp/bench.json"
check "bench sets each of 8 decode chunks against the read bandwidth measured around it" $? "$(head -c 600 "$tmp/out")"
expect "bench --gen 3: as many chunks as tokens" 0 '^paired +decode at [0-9.]+% \(median of 3 chunks' \
    "$ncas" bench --model "$data/base_q8_0.gguf" --prompt 4 --gen 3 --bw-mib 64 -t 1

# ---- --backend vulkan (Mesa's lavapipe where no GPU driver is chosen) --------
run "$ncas" logits --list-devices
lvp=/usr/share/vulkan/icd.d/lvp_icd.x86_64.json
if grep -q 'built without Vulkan' "$tmp/err"; then
    echo "skip --backend vulkan: this ncas was built without Vulkan"
    expect "--backend vulkan without Vulkan" 1 'this ncas was built without Vulkan' \
        "$ncas" generate -m "$model" --backend vulkan -p x
elif ! command -v vulkaninfo >/dev/null || { [ -z "${VK_ICD_FILENAMES:-}" ] && [ ! -f "$lvp" ]; }; then
    echo "skip --backend vulkan: vulkaninfo or the lavapipe ICD ($lvp) is not installed"
else
    [ -n "${VK_ICD_FILENAMES:-}" ] || export VK_ICD_FILENAMES=$lvp
    expect "--list-devices" 0 '^0: ' "$ncas" logits --list-devices
    for json in "$data"/*.json; do
        name=$(basename "$json" .json)
        [ "$name" = index ] && continue
        ids=$(json_field "$json" tokens) bound=$(json_field "$json" tolerance) V=$(json_field "$json" n_vocab)
        T=$(echo "$ids" | tr ',' '\n' | wc -l)
        run "$ncas" logits -m "$data/$name.gguf" --backend vulkan --ids "$ids" -o "$tmp/vk_$name.f32"
        if [ "$rc" != 0 ]; then fail "logits --backend vulkan $name: exit $rc: $(err_text)"; continue; fi
        msg=$(compare_logits "$tmp/vk_$name.f32" "$data/$name.logits.f32" "$T" "$V" "$bound" 2>&1)
        check "logits --backend vulkan $name: within $bound x max|logit| of the reference" $? "$msg"
    done
    run "$ncas" logits -m "$spm_model" --prompt "$spm_text" --bos -o "$tmp/vk_spm.f32" --backend vulkan
    msg=$(compare_logits "$tmp/vk_spm.f32" "$data/../tokenizer/spm_llama.logits.f32" "$spm_T" 1000 0.02 2>&1)
    check "logits --backend vulkan --prompt on a SentencePiece llama model: within 2e-2 x max|logit| of the reference" $? "$msg $(err_text)"
    expect "generate --backend vulkan" 0 'backend: vulkan on ' "${gen[@]}" --backend vulkan
    cmp -s "$tmp/out" "$tmp/greedy1"
    check "generate --backend vulkan matches the CPU (greedy)" $? "got '$(head -c 100 "$tmp/out")'"
    expect "perplexity --backend vulkan" 0 '^perplexity: ' "$ncas" perplexity -m "$model" --backend vulkan "$tmp/text.txt"
    "$py" -c 'import sys; a, b = map(float, sys.argv[1:]); sys.exit(abs(a - b) > 1e-4 * b)' \
        "$(sed -n 's/^perplexity: //p' "$tmp/out")" "$ppl"
    check "perplexity --backend vulkan agrees with the CPU" $?
    run --in "$tmp/chat.txt" "${chat[@]}" --backend vulkan
    check "chat --backend vulkan" "$([ "$rc" = 0 ] && grep -q 'conversation reset' "$tmp/out" && echo 0 || echo 1)" "$(err_text)"
    expect "bench --backend vulkan" 0 '^decode +20 tokens +[0-9.]+ tok/s .* [0-9.]+ GB/s +[0-9.]+% of measured device bandwidth' \
        "$ncas" bench --model "$data/base_q8_0.gguf" --prompt 20 --gen 20 --backend vulkan --bw-mib 64 --json "$tmp/bench_vk.json"
    grep -Eq '^device +vulkan: ' "$tmp/out" && grep -Eq '^machine +device read [0-9.]+ GB/s$' "$tmp/out" &&
        ! grep -q 'thread' "$tmp/out" && [ "$(json_field "$tmp/bench_vk.json" backend)" = vulkan ] &&
        "$py" -c 'import sys; sys.exit(not float(sys.argv[1]) > 0 < float(sys.argv[2]))' \
            "$(json_field "$tmp/bench_vk.json" device_read_gbs)" "$(json_field "$tmp/bench_vk.json" decode_pct_bandwidth)"
    check "bench --backend vulkan: the device's read bandwidth, decode against it, not the CPU's figures" $? "$(head -c 300 "$tmp/out")"
    expect "vulkan device out of range" 1 'Vulkan device 99 does not exist' \
        "$ncas" logits -m "$model" --backend vulkan --device 99 --ids 1 -o "$tmp/x"
    # expert streaming into device slots: the same tokens as resident experts
    expect "generate --backend vulkan --expert-budget min --stats" 0 'experts: [0-9]+ slots' \
        "${gen[@]}" --backend vulkan --expert-budget min --stats
    cmp -s "$tmp/out" "$tmp/greedy1" && grep -Eq '^ +all +[0-9]+ ' "$tmp/err"
    check "generate --backend vulkan --expert-budget min matches resident experts, prints the report" $? "$(err_text)"
    expect "bench --backend vulkan --expert-budget 50%" 0 '^experts: [0-9]+ slots' \
        "$ncas" bench --model "$data/base_q8_0.gguf" --prompt 20 --gen 20 --backend vulkan --expert-budget 50% --skip-machine
    expect "--backend vulkan --direct-io" 1 'O_DIRECT expert reads need page-aligned memory' \
        "${gen[@]}" --backend vulkan --expert-budget min --direct-io
fi

# ---- info --------------------------------------------------------------------
expect "info on a file" 0 'in the file +45,872' "$ncas" info -m "$model"
grep -q '64 (full)' "$tmp/out"
check "info shows memory at the full context" $?
expect "info --preset PI" 0 "paper's claim +54,000,000,000" "$ncas" info --preset PI
grep -Eq 'total +73,' "$tmp/out" && grep -q '32768 (full)' "$tmp/out" && grep -q '^  2048 ' "$tmp/out"
check "info --preset PI: 73B computed, memory at 2k, 8k and 32k" $?
expect "info --preset pi-p" 0 'preset PI-P' "$ncas" info --preset pi-p --weight-type q8_0
expect "info: PI-P's 8k q8_0 cache within 1.25 GB" 0 'KV cache, Q8_0, 8192 tokens: 1,218,281,472 bytes' \
    "$ncas" info --preset PI-P --ctx 8192 --kv-type q8_0
# The kernels: the best compiled in that the CPU runs (every variant of the architecture is compiled
# into the CLI, so the CPU's best level), or the one NCAS_ISA forces.
best=$(sed -n 's/^kernels .*CPU supports up to \([a-z0-9]*\))$/\1/p' "$tmp/out")
grep -Eq "^kernels +$best \(best of: scalar( [a-z0-9]+)* compiled in; CPU supports up to $best\)\$" "$tmp/out"
check "info prints the kernels chosen, the best this CPU runs${best:+ ($best)}" $? "$(grep '^kernels' "$tmp/out")"
expect "info with NCAS_ISA=scalar" 0 '^kernels +scalar \(forced by NCAS_ISA; compiled in: scalar' \
    env NCAS_ISA=scalar "$ncas" info --preset pi-p
[ ! -s "$tmp/err" ]
check "NCAS_ISA=scalar: no warning on stderr" $? "$(err_text)"
expect "bench --isa scalar says it is forced" 0 '^kernels +scalar \(forced by --isa;' \
    "$ncas" bench --model "$model" --prompt 2 --gen 2 --skip-machine -t 1 --isa scalar

echo "$((checks - failures)) of $checks checks passed"
[ "$failures" = 0 ]
