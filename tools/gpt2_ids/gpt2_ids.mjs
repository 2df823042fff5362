// Writes the GPT-2 tokenizer test data under tests/data/tokenizer/ from two
// INDEPENDENT JavaScript GPT-2 tokenizers, so that the C++ tokenizer is checked
// against ids it did not produce itself:
//
//   gpt2_tokens.txt   GPT-2's vocabulary, one token per line, line i = id i
//                     (from gpt-3-encoder's encoder.json, OpenAI's file)
//   gpt2_merges.txt   GPT-2's merges in rank order, "a b" per line
//                     (gpt-3-encoder's vocab.bpe without its "#version" line)
//   gpt2_cases.json   texts and the ids js-tiktoken's "gpt2" encoding gives
//                     them; every case is cross-checked against gpt-3-encoder
//                     (a port of OpenAI's encoder.py) where that one can encode
//                     it (it has no special-token parsing).
//
// Usage: cd tools/gpt2_ids && npm ci && node gpt2_ids.mjs
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { getEncoding } from "js-tiktoken";

const require = createRequire(import.meta.url);
const here = path.dirname(fileURLToPath(import.meta.url));
const outDir = path.resolve(here, "../../tests/data/tokenizer");
const g3dir = path.dirname(require.resolve("gpt-3-encoder/package.json"));
const g3 = require("gpt-3-encoder");
const tk = getEncoding("gpt2");
const utf8 = new TextEncoder();

// ---------------------------------------------------------------- vocabulary
const encoderJson = JSON.parse(fs.readFileSync(path.join(g3dir, "encoder.json"), "utf8"));
const tokens = [];
for (const [tok, id] of Object.entries(encoderJson)) {
  if (tokens[id] !== undefined) throw new Error(`duplicate id ${id}`);
  tokens[id] = tok;
}
for (let i = 0; i < tokens.length; i++) {
  if (tokens[i] === undefined) throw new Error(`missing id ${i}`);
  if (/[\s]/u.test(tokens[i])) throw new Error(`token ${i} has whitespace`);
}
const bpeLines = fs.readFileSync(path.join(g3dir, "vocab.bpe"), "utf8").split("\n");
if (!bpeLines[0].startsWith("#version")) throw new Error("vocab.bpe header");
const merges = bpeLines.slice(1).filter((l) => l.length > 0);
for (const [i, m] of merges.entries()) {
  if (m.split(" ").length !== 2) throw new Error(`merge ${i}: ${m}`);
}

// Cross-check the vocabulary against js-tiktoken's byte-level ranks: the
// byte string of token i (through GPT-2's bytes_to_unicode map) has rank i.
function bytesToUnicode() {
  const bs = [];
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  const cs = bs.slice();
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n);
      n++;
    }
  }
  const dec = new Map();
  bs.forEach((b, i) => dec.set(String.fromCodePoint(cs[i]), b));
  return dec;
}
const byteDecoder = bytesToUnicode();
let checked = 0;
for (let i = 0; i < tokens.length; i++) {
  if (tokens[i] === "<|endoftext|>") continue;
  const bytes = [...tokens[i]].map((c) => {
    const b = byteDecoder.get(c);
    if (b === undefined) throw new Error(`token ${i} has non byte-level char`);
    return b;
  });
  const rank = tk.rankMap.get(bytes.join(","));
  if (rank !== i) throw new Error(`token ${i}: js-tiktoken rank ${rank}`);
  checked++;
}

// --------------------------------------------------------------------- cases
// Characters where JavaScript's \s and Python `regex`'s \s (GPT-2's) differ:
// U+0085 is \s only in Python, U+FEFF only in JavaScript. Keep them out of the
// JS-derived cases (tools/gpt2_split_cases.py covers them with Python's regex).
const JS_PY_SPACE_DIFF = /[\u0085\uFEFF]/u;

const fixed = [
  // ASCII prose
  ["prose", "Hello world"],
  ["prose", "Hello, world! How are you today?"],
  ["prose", "The quick brown fox jumps over the lazy dog."],
  ["prose", "GPT-2 is a large transformer-based language model with 1.5 billion parameters, trained on a dataset of 8 million web pages."],
  ["prose", "It was the best of times, it was the worst of times,\nit was the age of wisdom, it was the age of foolishness...\n\nChapter 2\n"],
  ["prose", "hello"], ["prose", "Hello"], ["prose", "HELLO"], ["prose", "a"], ["prose", "I"],
  ["prose", "antidisestablishmentarianism supercalifragilisticexpialidocious"],
  // contractions (lowercase only are contractions in GPT-2)
  ["contraction", "it's don't they're we've I'm you'll he'd"],
  ["contraction", "IT'S DON'T THEY'RE WE'VE I'M YOU'LL HE'D"],
  ["contraction", "It'S Don'T They'Re We'Ve I'M You'Ll He'D"],
  ["contraction", "'s't're've'm'll'd"],
  ["contraction", "'S'T'RE'VE'M'LL'D"],
  ["contraction", "''s ''' '"],
  ["contraction", "'sam 'tis 'twas 'rest 'vest 'mall 'llama 'dog"],
  ["contraction", "rock 'n' roll, O'Neil's dogs' bowls"],
  ["contraction", "it\u2019s curly apostrophe"],
  ["contraction", " 's 't ' s"],
  ["contraction", "?'s !'t 5's"],
  // numbers
  ["numbers", "1234567890"],
  ["numbers", "3.14159 2.71828 1,000,000 -42 +1e-10"],
  ["numbers", "2023-10-01T12:34:56Z"],
  ["numbers", "v1.2.3 0x1F 0b1010 abc123def 1st 2nd 3rd"],
  ["numbers", "12 34  56   78"],
  ["numbers", "100% $5.99 \u20ac12,50 \u00a320"],
  ["numbers", "\u0663\u0664\u0665 \u00b2\u00b3 \u00bd \u216b \u2460 \u0968\u0966\u0968\u096a"],
  ["numbers", "31415926535897932384626433832795028841971693993751058209749445923078164062862089986280348253421170679"],
  // punctuation
  ["punct", "!!!???..."],
  ["punct", "Hello!!! Really?! Wait..."],
  ["punct", "--- *** === ___ ~~~"],
  ["punct", "(a)[b]{c}<d>"],
  ["punct", "<html><body><p class=\"x\">Hi</p></body></html>"],
  ["punct", "email@example.com https://example.com/path?q=1&r=2#frag"],
  ["punct", "C++ && C# || F# :: -> => != <= >="],
  ["punct", "\"quoted\" 'single' `backtick` \u201csmart\u201d \u00abguillemets\u00bb"],
  ["punct", "#include <stdio.h>\nint main(void) { printf(\"%d\\n\", 42); return 0; }"],
  // whitespace
  ["space", "a  b"], ["space", "a   b"], ["space", "a    b"],
  ["space", "a\tb"], ["space", "a\t\tb"], ["space", "a\nb"], ["space", "a\n\nb"],
  ["space", "a \n b"], ["space", "a\n \nb"], ["space", "a \t b"],
  ["space", "\n"], ["space", "\n\n\n"], ["space", " "], ["space", "  "], ["space", "   "],
  ["space", "\t"], ["space", " \t \n "], ["space", "end   "], ["space", "x \t"],
  ["space", "   leading"], ["space", " leading"], ["space", "trailing "],
  ["space", "line1\r\nline2\r\n"],
  ["space", "\u00a0nbsp\u00a0 \u00a0x"],
  ["space", "a\u3000b \u3000\u3000c"],
  ["space", "a\u2003b\u2009c\u202fd\u205fe\u1680f"],
  ["space", "a\u2028b\u2029c"],
  ["space", "a\u000bb\u000cc"],
  ["space", "a\u001cb\u001dc\u001ed\u001ff"],
  ["space", "def f(x):\n    return x + 1\n\n\nclass A:\n\tpass\n"],
  ["space", "    "],
  ["space", " ".repeat(33) + "x"],
  // unicode letters
  ["unicode", "caf\u00e9 na\u00efve r\u00e9sum\u00e9 \u00e0 la cr\u00e8me br\u00fbl\u00e9e"],
  ["unicode", "\u03a9\u03bc\u03ad\u03b3\u03b1 \u03b1\u03bb\u03c6\u03ac\u03b2\u03b7\u03c4\u03bf"],
  ["unicode", "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440!"],
  ["unicode", "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8\u3002\u6771\u4eac"],
  ["unicode", "\u4e2d\u6587\u5b57\u7b26\u6d4b\u8bd5\uff0c\u4f60\u597d"],
  ["unicode", "\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8"],
  ["unicode", "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645"],
  ["unicode", "\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd"],
  ["unicode", "\u0939\u093f\u0928\u094d\u0926\u0940 \u092d\u093e\u0937\u093e"],
  ["unicode", "\u0e20\u0e32\u0e29\u0e32\u0e44\u0e17\u0e22"],
  ["unicode", "Stra\u00dfe \ufb01 \u0132 \u01c5"],
  ["unicode", "\uff21\uff22\uff23\uff11\uff12\uff13 full-width"],
  ["unicode", "\ud835\udc00\ud835\udc01 math bold \ud835\udfce\ud835\udfcf"],
  ["unicode", "\u{20000}\u{2A6D6} CJK ext B"],
  // combining marks (Mn is neither \p{L} nor \p{N})
  ["combining", "cafe\u0301 e\u0301"],
  ["combining", "a\u0308\u0304 n\u0303 o\u0302\u0323"],
  ["combining", "Z\u0351\u0357a\u0300l\u0302g\u0303o\u0334"],
  ["combining", " \u0301 \u0301x"],
  ["combining", "\u0915\u094d\u0937"],
  // emoji
  ["emoji", "\u{1F600}"],
  ["emoji", "Hello \u{1F600} world"],
  ["emoji", "\u{1F44D}\u{1F3FD}"],
  ["emoji", "\u{1F468}\u200d\u{1F469}\u200d\u{1F467}\u200d\u{1F466}"],
  ["emoji", "\u{1F3F3}\ufe0f\u200d\u{1F308}"],
  ["emoji", "\u{1F1FA}\u{1F1F8}\u{1F1EC}\u{1F1E7}"],
  ["emoji", "\u2764\ufe0f \u263a \u2603"],
  ["emoji", "\u{1F642}\u{1F643}\u{1F609}"],
  ["emoji", "a\u{1F600}b"],
  ["emoji", " \u{1F600} \u{1F600}  \u{1F600}"],
  ["emoji", "\u{1F9D1}\u{1F3FF}\u200d\u{1F4BB} coding"],
  ["emoji", "1\ufe0f\u20e3 #\ufe0f\u20e3"],
  // odd and invalid (lone surrogates reach the tokenizers as U+FFFD)
  ["odd", ""],
  ["odd", "\u0000"],
  ["odd", "a\u0000b"],
  ["odd", "\u0001\u0002\u007f\u0080\u009f"],
  ["odd", "\ud800"],
  ["odd", "x\udc00abc"],
  ["odd", "\ufffd\ufffd"],
  ["odd", "\uffff \u{10FFFF} \ue000"],
  ["odd", "zero\u200bwidth\u200cjoin\u200dx \u00adsoft"],
  ["odd", "\u200e\u200f rtl marks"],
  ["odd", "a".repeat(300)],
  ["odd", "=".repeat(200)],
  ["odd", "ab".repeat(150)],
  ["odd", "\u{1F600}".repeat(20)],
  ["odd", "<|endoftext|>"],
  ["odd", "Hello<|endoftext|>world"],
  ["odd", "<|endoftext"],
];

// parse_special cases: the special token becomes its id.
const special = [
  "<|endoftext|>",
  "Hello<|endoftext|>world",
  "x <|endoftext|> y",
  "<|endoftext|><|endoftext|>",
  "<|endoftext|",
  "<|endoftext|>\n\nNext document",
  "  <|endoftext|>  ",
  "it's<|endoftext|>'s",
  "<|<|endoftext|>|>",
];

// Random strings over a tricky alphabet (deterministic PRNG: mulberry32).
function mulberry32(a) {
  return () => {
    a |= 0;
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const alphabet = [
  "a", "b", "Z", "e", "s", "t", "d", "m", "l", "r", "v", "'", "'", " ", " ", " ", " ",
  "\t", "\n", "\r", "0", "7", "9", ".", ",", "!", "?", "-", "_", "(", ")", "\"", "#",
  "\u00e9", "\u00df", "\u03b1", "\u0416", "\u4e2d", "\u3042", "\u0645", "\u0301",
  "\u00a0", "\u3000", "\u2028", "\u0663", "\u00bd", "\u{1F600}", "\u{1F3FD}", "\u200d",
  "\u2019", "\u20ac", "\u000b", "\u001c", "\u{1F468}", "\ufe0f",
];
const rnd = mulberry32(20240229);
const randomCases = [];
for (let i = 0; i < 120; i++) {
  const len = 1 + Math.floor(rnd() * 24);
  let s = "";
  for (let j = 0; j < len; j++) s += alphabet[Math.floor(rnd() * alphabet.length)];
  randomCases.push(["random", s]);
}

function hex(s) {
  return Buffer.from(utf8.encode(s)).toString("hex");
}

const cases = [];
let g3checked = 0;
for (const [kind, text] of [...fixed, ...randomCases]) {
  if (JS_PY_SPACE_DIFF.test(text)) throw new Error(`case uses U+0085/U+FEFF: ${kind}`);
  const ids = tk.encode(text, [], []);
  // gpt-3-encoder follows OpenAI's encoder.py (same regex, bpe() by rank).
  const g3ids = g3.encode(text);
  if (JSON.stringify(g3ids) !== JSON.stringify(ids)) {
    throw new Error(`js-tiktoken and gpt-3-encoder disagree on ${JSON.stringify(text)}: ` +
      `${JSON.stringify(ids)} vs ${JSON.stringify(g3ids)}`);
  }
  g3checked++;
  cases.push({ kind, text, utf8: hex(text), parse_special: false, ids });
}
for (const text of special) {
  const ids = tk.encode(text, "all");
  cases.push({ kind: "special", text, utf8: hex(text), parse_special: true, ids });
}

// One case per line keeps the file diffable.
const body = cases.map((c) => "  " + JSON.stringify(c)).join(",\n");
fs.writeFileSync(path.join(outDir, "gpt2_cases.json"), "[\n" + body + "\n]\n");
fs.writeFileSync(path.join(outDir, "gpt2_tokens.txt"), tokens.join("\n") + "\n");
fs.writeFileSync(path.join(outDir, "gpt2_merges.txt"), merges.join("\n") + "\n");
console.log(`vocab ${tokens.length} (${checked} checked against js-tiktoken), merges ${merges.length}, ` +
  `cases ${cases.length} (${g3checked} cross-checked with gpt-3-encoder)`);
