#!/usr/bin/python3
"""A SentencePiece (llama-style) vocabulary and the ids the sentencepiece
library gives test texts: the oracle of the C++ SPM tokenizer.

  /usr/bin/python3 tools/spm_vocab.py [--out tests/data/tokenizer]

Needs Debian's python3-sentencepiece (scripts/install-deps.sh). Writes:

  spm_vocab.gguf   a vocabulary-only GGUF (general.architecture "llama", no
                   tensors) with the tokenizer.ggml.* keys as llama.cpp's
                   convert_hf_to_gguf.py writes them for a SentencePiece
                   model: model "llama", tokens, scores, token_type (normal 1,
                   unknown 2, control 3, unused 5, byte 6), bos/eos/unknown
                   ids, add_bos_token true, add_eos_token false,
                   add_space_prefix from the model's add_dummy_prefix.
  spm_cases.json   [{text, utf8 (hex), add_bos, ids, decoded}] where ids is
                   sentencepiece's encode(text, add_bos=add_bos) and decoded
                   its decode(ids); ids and decoded come from the library only.
  spm.model        the trained sentencepiece model itself (for reference).

The model: BPE (model_type=bpe), byte_fallback, 1000 pieces, trained on
models/heldout.txt (the demo corpus's held-out text, in the repository) with
the settings of llama-2's tokenizer that matter at encode time: identity
normalisation (no NFKC), remove_extra_whitespaces false, add_dummy_prefix
true, split_digits true. One thread, so the training is deterministic.
"""
import argparse
import io
import json
import os
import sys

import sentencepiece as spm

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from gguf import GGUFWriter, GGUFValueType  # noqa: E402

# Texts the tests encode: prose, unicode (CJK, emoji, combining marks),
# whitespace runs, characters the vocabulary lacks (byte fallback).
TEXTS = [
    "",
    "a",
    " ",
    "Hello world",
    "In thee, O LORD, do I put my trust: let me never be put to confusion.",
    "And God said, Let there be light: and there was light.",
    "It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife.",
    "The quick brown fox jumps over the lazy dog 1234567890 times.",
    "Mr. Darcy's income was £10,000 a year; Mrs. Bennet's nerves were \"poor\".",
    "  leading spaces",
    "trailing spaces   ",
    "multiple    spaces   between  words",
    "line one\nline two\n\nline four\n",
    "\n\nstarts with newlines",
    "tab\tseparated\tvalues\t\t",
    " \t \n mixed \r\n whitespace ",
    "日本語のテキストと中文文本",
    "Emoji: 😀🎉👍🏽 and 🇫🇷 flags",
    "Combining: e\u0301 a\u0308 n\u0303 (decomposed) vs é ä ñ (composed)",
    "Zalgo: Z\u0351\u036b\u0343a\u0310l\u0357g\u0351o\u0344",
    "Ελληνικά και русский текст",
    "Arabic: مرحبا بالعالم",
    "Math: ∀x ∈ ℝ, x² ≥ 0 ⇒ √(x²) = |x|",
    "Control chars: \x01\x02\x7f and NBSP:\u00a0here",
    "Private use: \ue000\U000f0000 and ␀",
    "▁ literal space markers ▁▁ in text",
    "<s> and </s> and <unk> are plain text here",
    "<0x41> looks like a byte token",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "lll llll Hellllo balll Mississippi sssss eeeee ooooo ththth",  # equal-score pairs overlap: leftmost first
    "thethethethe the the the",
    "1 22 333 4444 55555 3.14159 -42 +7e10",
    "Psalms 71\nIn thee, O LORD, do I put my trust",
    "CamelCaseIdentifiersAndsnake_case_names = foo(bar, baz);",
]


def train(out_dir):
    corpus = os.path.join(ROOT, "models", "heldout.txt")
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        input=corpus, model_writer=model, model_type="bpe", vocab_size=1000,
        byte_fallback=True, normalization_rule_name="identity",
        remove_extra_whitespaces=False, add_dummy_prefix=True, split_digits=True,
        character_coverage=0.9995, num_threads=1, minloglevel=2,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1)
    data = model.getvalue()
    with open(os.path.join(out_dir, "spm.model"), "wb") as f:
        f.write(data)
    return spm.SentencePieceProcessor(model_proto=data)


def write_gguf(sp, path):
    tokens, scores, types = [], [], []
    for i in range(sp.vocab_size()):
        tokens.append(sp.id_to_piece(i))
        scores.append(sp.get_score(i))
        t = 1  # normal
        if sp.is_unknown(i):
            t = 2
        elif sp.is_control(i):
            t = 3
        elif sp.is_unused(i):
            t = 5
        elif sp.is_byte(i):
            t = 6
        types.append(t)
    w = GGUFWriter(path, "llama")
    w.add_string("general.name", "spm-test-vocab")
    w.add_string("tokenizer.ggml.model", "llama")
    w.add_string("tokenizer.ggml.pre", "default")
    w.add_array("tokenizer.ggml.tokens", tokens, GGUFValueType.STRING)
    w.add_array("tokenizer.ggml.scores", scores, GGUFValueType.FLOAT32)
    w.add_array("tokenizer.ggml.token_type", types, GGUFValueType.INT32)
    w.add_uint32("tokenizer.ggml.bos_token_id", sp.bos_id())
    w.add_uint32("tokenizer.ggml.eos_token_id", sp.eos_id())
    w.add_uint32("tokenizer.ggml.unknown_token_id", sp.unk_id())
    w.add_bool("tokenizer.ggml.add_bos_token", True)
    w.add_bool("tokenizer.ggml.add_eos_token", False)
    # The trainer's add_dummy_prefix (read without protobuf: the library puts "▁" first).
    dummy_prefix = sp.encode("a", out_type=str)[0].startswith("\u2581")
    w.add_bool("tokenizer.ggml.add_space_prefix", dummy_prefix)
    w.write()
    return len(tokens)


def cases(sp):
    out = []
    texts = list(TEXTS)
    # Every paragraph of the held-out text's first 6 KB, and one long case.
    held = open(os.path.join(ROOT, "models", "heldout.txt"), encoding="utf-8").read()
    texts += [p for p in held[:6000].split("\n") if p]
    texts.append(held[:8000])
    for k, text in enumerate(texts):
        for add_bos in ((False, True) if k < len(TEXTS) else (False,)):
            ids = sp.encode(text, add_bos=add_bos)
            out.append({"text": text, "utf8": text.encode("utf-8").hex(), "add_bos": add_bos,
                        "ids": ids, "decoded": sp.decode(ids)})
    # Decoding alone: control, unknown and byte tokens, a byte sequence that is not UTF-8.
    for ids in ([1, 2], [0], [1, 300, 2], [sp.piece_to_id("<0xE6>"), sp.piece_to_id("<0x97>"),
                                          sp.piece_to_id("<0xA5>")],
                [sp.piece_to_id("<0xFF>")], [sp.piece_to_id("▁the"), 0, sp.piece_to_id("▁the")],
                [sp.piece_to_id("<0xE6>"), sp.piece_to_id("▁the"), sp.piece_to_id("<0x97>")],
                [sp.piece_to_id("<0xF0>"), sp.piece_to_id("<0x9F>"), sp.piece_to_id("<0x98>")],
                [sp.piece_to_id("<0x20>"), sp.piece_to_id("▁the")], [sp.piece_to_id("he"), sp.piece_to_id("▁the")],
                [0, sp.piece_to_id("▁the")], [1, 1, sp.piece_to_id("▁"), sp.piece_to_id("▁the")],
                [sp.piece_to_id("▁")], [sp.piece_to_id("▁"), sp.piece_to_id("▁")],
                [sp.piece_to_id("he"), sp.piece_to_id("▁"), sp.piece_to_id("▁the")]):
        out.append({"decode_only": True, "ids": ids, "decoded": sp.decode(ids)})
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "data", "tokenizer"))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    sp = train(a.out)
    n = write_gguf(sp, os.path.join(a.out, "spm_vocab.gguf"))
    c = cases(sp)
    with open(os.path.join(a.out, "spm_cases.json"), "w", encoding="utf-8") as f:
        json.dump(c, f, ensure_ascii=False, indent=0)
        f.write("\n")
    print(f"{n} tokens, {len(c)} cases -> {a.out}")


if __name__ == "__main__":
    main()
