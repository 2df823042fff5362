#!/usr/bin/env python3
"""Write tests/data/tokenizer/gpt2_split_cases.json: how GPT-2's own
pre-tokenizer regex, run by the Python `regex` module exactly as OpenAI's
encoder.py runs it, splits a set of strings into pieces.

This checks the hand-written C++ pre-tokenizer (ncas::gpt2_split) on the
characters where JavaScript's regex differs from Python's (U+0085 is \\s only
in Python, U+FEFF only in JavaScript), so they cannot come from the JS-derived
gpt2_cases.json, plus several hundred random strings over a tricky alphabet.

Needs the `regex` module (pip install regex). Usage: tools/gpt2_split_cases.py
"""
import json
import os
import random

import regex

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

FIXED = [
    "a\x85b", "a \x85 b", "\x85\x85x", "x\x85", "a\x85 b", " \x85",
    "a\ufeffb", "\ufeffhello", " \ufeff x", "\ufeff \ufeff",
    "a\x1cb\x1d \x1e\x1f", "a\u2028\u2029b", "\u00a0\u00a0x", "\u3000 x",
    "a \u0301b", "it's 'S 're", "x  \t\n  y", "   ", "\n \n", "a\r\n\r\nb",
    "\u2160\u2161 \u00bd3 \u0663a", "x\u200by", "\U0001F468\u200d\U0001F469",
    "", "'", "''", "'s's", " 'll", "\t'd", "?'ve",
]

# Characters whose general category has been stable for many Unicode versions,
# so the `regex` module's tables and the UnicodeData.txt the C++ tables were
# generated from agree on them.
ALPHABET = [
    "a", "B", "s", "t", "r", "e", "v", "m", "l", "d", "'", "'", " ", " ", " ", " ",
    "\t", "\n", "\r", "\x0b", "\x0c", "\x1c", "\x1f", "\x85", "\xa0", "\ufeff",
    "\u2028", "\u2029", "\u3000", "\u2003", "\u200b", "0", "5", "\u0663", "\xb2",
    "\u2167", ".", ",", "!", "-", "\u2019", "\xe9", "\u03a9", "\u0431", "\u4e2d",
    "\u0645", "\u0301", "\u0308", "\U0001F600", "\u200d", "\ufe0f", "\x00", "\x7f",
]


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = os.path.join(here, "..", "tests", "data", "tokenizer", "gpt2_split_cases.json")
    rng = random.Random(1234)
    texts = list(FIXED)
    for _ in range(400):
        texts.append("".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 20))))
    pat = regex.compile(GPT2_PATTERN)
    lines = []
    for t in texts:
        pieces = regex.findall(pat, t)
        assert "".join(pieces) == t
        lines.append(json.dumps({
            "text": t,
            "utf8": t.encode("utf-8").hex(),
            "pieces": [p.encode("utf-8").hex() for p in pieces],
        }))
    with open(out, "w", encoding="utf-8") as f:
        f.write("[\n  " + ",\n  ".join(lines) + "\n]\n")
    print(f"wrote {out}: {len(texts)} cases (regex {regex.__version__})")


if __name__ == "__main__":
    main()
