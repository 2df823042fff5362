#!/usr/bin/python3
"""Byte-level BPE in GPT-2's style: training (on counted pre-tokenised words)
and encoding/decoding.

  bytes_to_unicode  GPT-2's byte <-> printable-unicode map
  PAT               GPT-2's pre-tokenizer regex (module `regex`)
  train(...)        learn merges; vocabulary = 256 byte tokens (id = byte value,
                    string = bytes_to_unicode()[byte]), then one token per merge
                    in rank order, then the special "<|endoftext|>" (last id)
  Tokenizer         encode(text) -> ids (the literal "<|endoftext|>" becomes the
                    special id), decode(ids) -> text

CLI:
  bpe.py train  --input tools/out/corpus/train.txt --vocab 4096 --out tools/out/bpe.json
  bpe.py encode --bpe tools/out/bpe.json --input X.txt --out X.bin   (uint16 ids)

bpe.json: {"tokens": [...], "merges": ["a b", ...], "eot": id}; token i for
i >= 256 is the concatenation of the two strings of merge i - 256.
"""
import argparse
import collections
import heapq
import json
import sys
import time

import regex

EOT = "<|endoftext|>"
PAT = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def count_words(path, chunk=1 << 24):
    """Pre-tokenise a text file (documents split on EOT) and count the pieces."""
    cnt = collections.Counter()
    with open(path, encoding="utf-8") as f:
        rest = ""
        while True:
            block = f.read(chunk)
            if not block:
                break
            block = rest + block
            cut = block.rfind("\n" + EOT + "\n")
            if cut < 0:
                rest = block
                continue
            rest = block[cut + len(EOT) + 2:]
            for doc in block[:cut].split(EOT):
                cnt.update(PAT.findall(doc))
        for doc in rest.split(EOT):
            cnt.update(PAT.findall(doc))
    return cnt


def train(counts, vocab_size, log=print):
    n_merges = vocab_size - 256 - 1
    words = [list(w.encode("utf-8")) for w in counts]
    freqs = list(counts.values())
    pc = collections.defaultdict(int)
    where = collections.defaultdict(set)
    for i, w in enumerate(words):
        f = freqs[i]
        for a, b in zip(w, w[1:]):
            pc[(a, b)] += f
            where[(a, b)].add(i)
    heap = [(-c, p) for p, c in pc.items()]
    heapq.heapify(heap)
    merges = []
    t0 = time.time()
    while len(merges) < n_merges and heap:
        c, p = heapq.heappop(heap)
        if pc.get(p, 0) != -c or c == 0:
            continue  # stale entry
        new = 256 + len(merges)
        merges.append(p)
        a, b = p
        touched = set()
        for i in list(where[p]):
            w = words[i]
            if len(w) < 2:
                continue
            f = freqs[i]
            has = any(w[j] == a and w[j + 1] == b for j in range(len(w) - 1))
            if not has:
                continue
            for x, y in zip(w, w[1:]):
                pc[(x, y)] -= f
                touched.add((x, y))
            nw, j = [], 0
            while j < len(w):
                if j + 1 < len(w) and w[j] == a and w[j + 1] == b:
                    nw.append(new)
                    j += 2
                else:
                    nw.append(w[j])
                    j += 1
            words[i] = nw
            for x, y in zip(nw, nw[1:]):
                pc[(x, y)] += f
                where[(x, y)].add(i)
                touched.add((x, y))
        del where[p]
        for q in touched:
            v = pc.get(q, 0)
            if v <= 0:
                pc.pop(q, None)
            else:
                heapq.heappush(heap, (-v, q))
        if len(merges) % 500 == 0:
            log(f"  {len(merges)} merges, last count {-c}, {time.time() - t0:.0f}s")
    return merges


def build_vocab(merges):
    b2u = bytes_to_unicode()
    tokens = [b2u[i] for i in range(256)]
    for a, b in merges:
        tokens.append(tokens[a] + tokens[b])
    merge_strs = [tokens[a] + " " + tokens[b] for a, b in merges]
    tokens.append(EOT)
    return tokens, merge_strs


class Tokenizer:
    def __init__(self, path):
        d = json.load(open(path, encoding="utf-8"))
        self.tokens = d["tokens"]
        self.merges = d["merges"]
        self.eot = d["eot"]
        self.id_of = {t: i for i, t in enumerate(self.tokens)}
        self.ranks = {tuple(m.split(" ")): r for r, m in enumerate(self.merges)}
        self.b2u = bytes_to_unicode()
        self.u2b = {v: k for k, v in self.b2u.items()}
        self.cache = {}

    @property
    def vocab_size(self):
        return len(self.tokens)

    def bpe(self, piece):
        """ids of one pre-token (GPT-2's merge-by-rank loop)."""
        r = self.cache.get(piece)
        if r is not None:
            return r
        word = [self.b2u[b] for b in piece.encode("utf-8")]
        while len(word) > 1:
            best, bi = None, -1
            for i in range(len(word) - 1):
                rk = self.ranks.get((word[i], word[i + 1]))
                if rk is not None and (best is None or rk < best):
                    best, bi = rk, i
            if best is None:
                break
            a, b = word[bi], word[bi + 1]
            nw, i = [], 0
            while i < len(word):  # merge every occurrence of the pair, left to right
                if i + 1 < len(word) and word[i] == a and word[i + 1] == b:
                    nw.append(a + b)
                    i += 2
                else:
                    nw.append(word[i])
                    i += 1
            word = nw
        r = [self.id_of[t] for t in word]
        if len(self.cache) < 500000:
            self.cache[piece] = r
        return r

    def encode(self, text):
        ids = []
        parts = text.split(EOT)
        for k, part in enumerate(parts):
            if k:
                ids.append(self.eot)
            for piece in PAT.findall(part):
                ids.extend(self.bpe(piece))
        return ids

    def decode(self, ids):
        out = bytearray()
        for i in ids:
            t = self.tokens[i]
            if i == self.eot:
                out += t.encode("utf-8")
            else:
                out += bytes(self.u2b[c] for c in t)
        return out.decode("utf-8", "replace")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--input", default="tools/out/corpus/train.txt")
    t.add_argument("--vocab", type=int, default=4096)
    t.add_argument("--out", default="tools/out/bpe.json")
    e = sub.add_parser("encode")
    e.add_argument("--bpe", default="tools/out/bpe.json")
    e.add_argument("--input", required=True)
    e.add_argument("--out", required=True)
    a = ap.parse_args()
    if a.cmd == "train":
        t0 = time.time()
        counts = count_words(a.input)
        print(f"{len(counts)} distinct pre-tokens, {sum(counts.values())} total, {time.time() - t0:.0f}s", flush=True)
        merges = train(counts, a.vocab, log=lambda s: print(s, flush=True))
        tokens, merge_strs = build_vocab(merges)
        json.dump({"tokens": tokens, "merges": merge_strs, "eot": len(tokens) - 1},
                  open(a.out, "w", encoding="utf-8"), ensure_ascii=False)
        print(f"vocab {len(tokens)} written to {a.out}, {time.time() - t0:.0f}s")
    else:
        import numpy as np
        tok = Tokenizer(a.bpe)
        text = open(a.input, encoding="utf-8").read()
        ids = [tok.eot]  # EOT is both BOS and EOS: EOT doc EOT doc ... EOT
        for doc in text.split("\n" + EOT + "\n"):
            doc = doc.strip("\n")
            if doc:
                ids.extend(tok.encode(doc))
                ids.append(tok.eot)
        arr = np.array(ids, dtype=np.uint16)
        arr.tofile(a.out)
        print(f"{len(arr)} tokens ({len(text.encode()) / max(1, len(arr)):.2f} bytes/token) -> {a.out}")


if __name__ == "__main__":
    sys.exit(main())
