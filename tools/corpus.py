#!/usr/bin/python3
"""Assemble the demo model's training corpus from public-domain English prose
that Debian ships as packages.

Usage: /usr/bin/python3 tools/corpus.py [--out tools/out/corpus] [--no-install]

Sources (see tools/corpus_sources.json for package, work and licence):
  * bible-kjv          King James Version (via the `bible` program)
  * sword-text-web     World English Bible (SWORD module, via mod2imp)
  * sword-comm-mhcc    Matthew Henry's Concise Commentary
  * sword-comm-tdavid  C. H. Spurgeon's Treasury of David
  * sword-comm-scofield Scofield Reference Notes (1917)
  * dict-devil         Ambrose Bierce, The Devil's Dictionary
  * r-cran-janeaustenr Jane Austen's six novels (the R data file is parsed
                       here; R itself is not needed, the .deb is only unpacked)

Output (git-ignored):
  OUT/train.txt, OUT/valid.txt  documents separated by a line "<|endoftext|>"
  OUT/stats.json                bytes/documents per source and split

Cleaning: markup removed (SWORD OSIS/ThML tags, footnotes, tables), HTML
entities decoded, whitespace normalised (runs of blanks -> one space,
paragraphs -> one newline), licence/preface boilerplate not included.
Split: a document goes to validation when sha1(source + key) mod 100 == 0
(about 1%), deterministic and independent of order.
"""
import argparse
import gzip
import hashlib
import html
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
EOT = "<|endoftext|>"

APT_INSTALL = ["bible-kjv", "bible-kjv-text", "libsword-utils", "sword-text-web",
               "sword-comm-mhcc", "sword-comm-tdavid", "sword-comm-scofield",
               "dict-devil"]
APT_DOWNLOAD = ["r-cran-janeaustenr"]  # unpacked only (installing would pull in R)


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def install(workdir):
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    missing = [p for p in APT_INSTALL
               if subprocess.run(["dpkg-query", "-W", "-f=${Status}", p],
                                 capture_output=True, text=True).stdout.strip()
               != "install ok installed"]
    if missing:
        sh(sudo + ["apt-get", "update", "-qq"], env=env)
        sh(sudo + ["apt-get", "install", "-y", "-qq", "--no-install-recommends"] + missing, env=env)
    dl = os.path.join(workdir, "debs")
    os.makedirs(dl, exist_ok=True)
    for p in APT_DOWNLOAD:
        if not any(f.startswith(p + "_") for f in os.listdir(dl)):
            try:
                sh(["apt-get", "download", p], cwd=dl)
            except subprocess.CalledProcessError:
                sh(sudo + ["apt-get", "update", "-qq"], env=env)
                sh(["apt-get", "download", p], cwd=dl)
        deb = [f for f in os.listdir(dl) if f.startswith(p + "_")][0]
        sh(["dpkg-deb", "-x", os.path.join(dl, deb), os.path.join(workdir, "root")])


# ---------------------------------------------------------------- cleaning
WS = re.compile(r"[ \t\u00a0]+")


def norm_para(s):
    s = s.replace("\r", "")
    s = WS.sub(" ", s)
    lines = [ln.strip() for ln in s.split("\n")]
    out, prev_blank = [], True
    for ln in lines:
        if not ln:
            prev_blank = True
            continue
        out.append(ln)
        prev_blank = False
    return "\n".join(out)


TAG_DROP = re.compile(r"<(note|table|title|milestone)\b[^>]*?(?:/>|>.*?</\1>)", re.S)
TAG_PARA = re.compile(r"<(?:div|p|lb|l|lg|item|list|br)\b[^>]*?/?>|</(?:div|p|l|lg|item|list)>")
TAG_ANY = re.compile(r"<[^>]*>")


def clean_osis(s, keep_titles=False):
    if keep_titles:
        s = re.sub(r"<title\b[^>]*>(.*?)</title>", r"\n\1\n", s, flags=re.S)
    s = TAG_DROP.sub(" ", s)
    s = TAG_PARA.sub("\n", s)
    s = TAG_ANY.sub("", s)
    s = html.unescape(s)
    return norm_para(s)


# ---------------------------------------------------------------- sources
def imp_entries(module):
    """(key, text) for every entry of a SWORD module, via mod2imp."""
    p = subprocess.run(["mod2imp", module], capture_output=True, check=True)
    txt = p.stdout.decode("utf-8", "replace")
    key, buf = None, []
    for line in txt.split("\n"):
        if line.startswith("$$$"):
            if key is not None:
                yield key, "\n".join(buf)
            key, buf = line[3:].strip(), []
        else:
            buf.append(line)
    if key is not None:
        yield key, "\n".join(buf)


def chapter_of(key):
    m = re.match(r"^(.*?) (\d+):(\d+)$", key)
    return (m.group(1), int(m.group(2))) if m else None


def src_sword_bible(module, name):
    """World English Bible: one document per chapter."""
    docs, cur, buf = [], None, []
    for key, raw in imp_entries(module):
        ch = chapter_of(key)
        if ch is None or ch[1] == 0 or key.endswith(":0"):
            continue  # module/testament/book/chapter headings and preface
        t = clean_osis(raw)
        t = t.replace("\n", " ").strip()
        if not t or "Error reading" in t:
            continue
        if ch != cur:
            if buf:
                docs.append((f"{cur[0]} {cur[1]}", f"{cur[0]} {cur[1]}\n" + " ".join(buf)))
            cur, buf = ch, []
        buf.append(t)
    if buf:
        docs.append((f"{cur[0]} {cur[1]}", f"{cur[0]} {cur[1]}\n" + " ".join(buf)))
    return docs


def src_sword_comm(module, name, doc_bytes=8000):
    """Commentaries. The modules' entries overlap heavily (one text attached to
    a verse range is returned for each verse, and some entries run on), so
    every paragraph is kept once, in order of first appearance, and the
    paragraphs are grouped into documents of about doc_bytes bytes."""
    seen, paras = set(), []
    for key, raw in imp_entries(module):
        if "Error reading" in raw or not raw.strip():
            continue
        for p in clean_osis(raw, keep_titles=True).split("\n"):
            h = hashlib.sha1(p.encode()).digest()
            if h in seen:
                continue
            seen.add(h)
            paras.append(p)
    docs, buf, n = [], [], 0
    for p in paras:
        buf.append(p)
        n += len(p) + 1
        if n >= doc_bytes and len(p) > 200:  # cut after a long paragraph, not a heading
            docs.append((buf[0][:64] + "|" + str(len(docs)), "\n".join(buf)))
            buf, n = [], 0
    if buf:
        docs.append((buf[0][:64] + "|" + str(len(docs)), "\n".join(buf)))
    return docs


def src_kjv():
    """King James Version from bible-kjv: one document per chapter."""
    out = subprocess.run(["bible", "-l0", "gen1:1-rev22:21"], capture_output=True,
                         check=True).stdout.decode("utf-8", "replace")
    docs, title, verses = [], None, []
    for line in out.split("\n"):
        if not line.strip():
            continue
        m = re.match(r"^\s+\d+ (.*)$", line)
        if m:
            verses.append(m.group(1).strip())
        else:
            if title and verses:
                docs.append((title, title + "\n" + norm_para(" ".join(verses))))
            title, verses = line.strip(), []
    if title and verses:
        docs.append((title, title + "\n" + norm_para(" ".join(verses))))
    return docs


def src_devil():
    """The Devil's Dictionary (dictd format): entries grouped by first letter."""
    with gzip.open("/usr/share/dictd/devil.dict.dz", "rt", encoding="utf-8",
                   errors="replace") as f:
        txt = f.read()
    idx = open("/usr/share/dictd/devil.index", encoding="utf-8", errors="replace").read()
    b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

    def dec(s):
        v = 0
        for c in s:
            v = v * 64 + b64.index(c)
        return v
    raw = txt.encode("utf-8")
    groups = {}
    for line in idx.split("\n"):
        parts = line.split("\t")
        if len(parts) != 3 or parts[0].startswith("00"):
            continue
        off, ln = dec(parts[1]), dec(parts[2])
        body = raw[off:off + ln].decode("utf-8", "replace")
        # dictd entries: headword line, then an indented body; paragraphs by blank lines
        paras = re.split(r"\n\s*\n", body.strip())
        t = "\n".join(" ".join(p.split()) for p in paras if p.strip())
        if len(t) < 10:
            continue
        groups.setdefault(parts[0][:1].upper(), []).append(t)
    return [(k, "\n".join(v)) for k, v in sorted(groups.items())]


# --- a minimal reader for R's serialisation format (XDR), enough for character vectors
class RReader:
    def __init__(self, b):
        self.b, self.p, self.refs = b, 0, []

    def i(self):
        v = struct.unpack(">i", self.b[self.p:self.p + 4])[0]
        self.p += 4
        return v

    def header(self):
        assert self.b[:2] == b"X\n", self.b[:2]
        self.p = 2
        ver = self.i()
        self.i(); self.i()
        if ver == 3:
            n = self.i(); self.p += n

    def item(self):
        flags = self.i()
        t, has_attr, has_tag = flags & 0xFF, flags & (1 << 9), flags & (1 << 10)
        if t in (254, 242, 253, 251):  # NILVALUE, EMPTYENV, GLOBALENV, MISSINGARG ...
            return None
        if t == 255:  # REFSXP
            idx = flags >> 8
            if idx == 0:
                idx = self.i()
            return self.refs[idx - 1]
        if t == 1:  # SYMSXP
            s = self.item()
            self.refs.append(s)
            return s
        if t in (2, 6):  # LISTSXP, LANGSXP
            attr = self.item() if has_attr else None
            tag = self.item() if has_tag else None
            car = self.item()
            cdr = self.item()
            return [(tag, car)] + (cdr or [])
        if t == 9:  # CHARSXP
            n = self.i()
            if n == -1:
                return None
            s = self.b[self.p:self.p + n].decode("utf-8", "replace")
            self.p += n
            return s
        if t in (16, 19, 10, 13, 14):
            n = self.i()
            if t == 16 or t == 19:
                v = [self.item() for _ in range(n)]
            elif t in (10, 13):
                v = list(struct.unpack(">%di" % n, self.b[self.p:self.p + 4 * n])); self.p += 4 * n
            else:
                v = list(struct.unpack(">%dd" % n, self.b[self.p:self.p + 8 * n])); self.p += 8 * n
            if has_attr:
                self.item()
            return v
        raise ValueError(f"R type {t} not supported")


def r_lazyload_objects(rdb):
    """All objects of an R lazy-load database (.rdb): blobs of 4-byte length + zlib."""
    data, p, objs = open(rdb, "rb").read(), 0, []
    while p < len(data):
        d = zlib.decompressobj()
        out = d.decompress(data[p + 4:])
        r = RReader(out)
        r.header()
        objs.append(r.item())
        p = len(data) - len(d.unused_data)
    return objs


AUSTEN_TITLES = {
    "SENSE AND SENSIBILITY": "Sense and Sensibility",
    "PRIDE AND PREJUDICE": "Pride and Prejudice",
    "MANSFIELD PARK": "Mansfield Park",
    "EMMA": "Emma",
    "NORTHANGER ABBEY": "Northanger Abbey",
    "PERSUASION": "Persuasion",
}


def src_austen(root):
    rdb = os.path.join(root, "usr/lib/R/site-library/janeaustenr/data/Rdata.rdb")
    docs = []
    for obj in r_lazyload_objects(rdb):
        if not isinstance(obj, list) or len(obj) < 1000 or not all(isinstance(x, (str, type(None))) for x in obj[:50]):
            continue
        lines = [x or "" for x in obj]
        head = " ".join(l for l in lines[:20] if l).upper()
        title = next((v for k, v in AUSTEN_TITLES.items() if k in head), "Austen")
        chapters, cur = [], []
        for ln in lines:
            if re.match(r"^\s*(CHAPTER|Chapter)\s+[0-9IVXLC]+\.?\s*$", ln):
                if cur:
                    chapters.append(cur)
                cur = []
                continue
            cur.append(ln)
        if cur:
            chapters.append(cur)
        if len(chapters) > 1:
            chapters = chapters[1:]  # title page / volume line before chapter 1
        for ci, ch in enumerate(chapters):
            paras, p = [], []
            for ln in ch:
                if ln.strip():
                    p.append(ln.strip())
                elif p:
                    paras.append(" ".join(p)); p = []
            if p:
                paras.append(" ".join(p))
            paras = [q for q in paras if not re.match(r"^(VOLUME|Volume) [IVX0-9]+$|^THE END$|^FINIS$", q)]
            t = norm_para("\n".join(paras))
            if len(t) > 200:
                docs.append((f"{title} {ci + 1}", t))
    return docs


def split_of(source, key):
    h = hashlib.sha1(f"{source}\0{key}".encode()).digest()
    return "valid" if int.from_bytes(h[:8], "big") % 100 == 0 else "train"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(HERE, "out", "corpus"))
    ap.add_argument("--no-install", action="store_true")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    work = os.path.join(HERE, "out", "pkgs")
    os.makedirs(work, exist_ok=True)
    if not a.no_install:
        install(work)
    sources = [
        ("kjv", src_kjv),
        ("web", lambda: src_sword_bible("engWEB2015eb", "web")),
        ("mhcc", lambda: src_sword_comm("MHCC", "mhcc")),
        ("tdavid", lambda: src_sword_comm("TDavid", "tdavid")),
        ("scofield", lambda: src_sword_comm("Scofield", "scofield")),
        ("devil", src_devil),
        ("austen", lambda: src_austen(os.path.join(work, "root"))),
    ]
    stats = {}
    files = {s: open(os.path.join(a.out, s + ".txt"), "w", encoding="utf-8") for s in ("train", "valid")}
    for name, fn in sources:
        docs = fn()
        st = stats.setdefault(name, {"train_docs": 0, "valid_docs": 0, "train_bytes": 0, "valid_bytes": 0})
        for key, text in docs:
            text = text.replace(EOT, "")
            if not text.strip():
                continue
            s = split_of(name, key)
            files[s].write(text + "\n" + EOT + "\n")
            st[s + "_docs"] += 1
            st[s + "_bytes"] += len(text.encode("utf-8")) + 1
        print(f"{name:10s} {st}", flush=True)
    for f in files.values():
        f.close()
    tot = {k: sum(v[k] for v in stats.values()) for k in ("train_docs", "valid_docs", "train_bytes", "valid_bytes")}
    stats["total"] = tot
    print("total", tot)
    json.dump(stats, open(os.path.join(a.out, "stats.json"), "w"), indent=1)


if __name__ == "__main__":
    main()
