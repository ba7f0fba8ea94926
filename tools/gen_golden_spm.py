#!/usr/bin/python3
"""Golden files for textok's SentencePiece Unigram tokenizer (textok_spm_*), from Debian's
python3-sentencepiece and a plain-Python reference written from the description in
shared/reference/textok-paper.md 3.5 and the Hugging Face tokenizer.json semantics.

    /usr/bin/python3 tools/gen_golden_spm.py            # write tests/golden/spm/*, then validate
    /usr/bin/python3 tools/gen_golden_spm.py --check    # regenerate into a temp dir, compare bit for
                                                        # bit with tests/golden/spm, validate
    /usr/bin/python3 tools/gen_golden_spm.py --out DIR  # write elsewhere

How: a small Unigram model (320 pieces, T5's special layout pad 0 / eos 1 / unk 2, no bos,
nmt_nfkc normalisation so the model carries SentencePiece's precompiled charsmap) is trained by
sentencepiece on text generated here from a fixed LCG, then converted the way transformers'
T5Converter does (pieces and scores in proto order, <extra_id_1>, <extra_id_0> appended with
score 0.0) into Hugging Face tokenizer.json files:

  tokenizer.json          T5 as older converters wrote it: normalizer Sequence[Precompiled(the
                          model's charsmap), Replace(Regex " {2,}" -> " ")], pre_tokenizer
                          Metaspace(add_prefix_space), TemplateProcessing($A </s>), added_tokens
                          <pad> </s> <unk> <extra_id_1> <extra_id_0> (special, not normalized).
  tokenizer_ws.json       no normalizer; Sequence[WhitespaceSplit, Metaspace(prepend_scheme
                          always)]; written with ensure_ascii (every non-ASCII character as a
                          \\u escape, surrogate pairs included).
  tokenizer_new.json      newer converters: Sequence[Strip(right), Replace(" {2,}" -> "▁")],
                          Metaspace(prepend_scheme first); <extra_id_0> is an added token with
                          lstrip/rstrip and normalized true.
  tokenizer_nosplit.json  Replace(String "  " -> " "); Metaspace(prepend_scheme never, split
                          false): one Viterbi over a whole segment, "▁" inside pieces' reach.
  cases.tsv               one test case a line: file, name, max_len, the text as UTF-8 hex,
                          n_full (ids before truncation, EOS included), the ids written, the
                          text as JSON (for reading only).

The expected ids come from REFERENCE below, a plain-Python port of the HF pipeline (added tokens
split off the raw text leftmost-longest; normalizers; pre-tokenizers; Unigram Viterbi with
strictly-greater replacement over matches in increasing length, a one-character UNK edge scored
min_score - 10 where no one-character piece exists, consecutive UNKs fused; TemplateProcessing,
truncation to max_len - 1 before EOS). Validation (also in --check):
  - every pre-token (word) of every tokenizer.json case is encoded by sentencepiece too and must
    give the same ids as the Python Viterbi (words that contain an added token's text are skipped:
    sentencepiece never matches control pieces);
  - cases marked spm=True must give sentencepiece's ids for the whole text plus </s>.
Where HF semantics differ from sentencepiece (these cases are not marked spm=True):
  - trailing spaces: SentencePiece strips them; HF's Replace+Metaspace leaves a final "▁" token;
  - special tokens written in the text are split off by HF; sentencepiece reads them as text;
  - HF's Unigram trie holds every vocab piece, control ones included, so text that normalises to
    "</s>" (e.g. full-width "＜/s＞") yields the </s> piece through Viterbi (sentencepiece: never);
  - sums of scores are float64 in HF (and here), float32 in sentencepiece: near-ties may differ
    (none occurs in these cases; validation would catch it).
Scores are read from the JSON as HF reads them: serde_json without float_roundtrip (significand
in a u64, one multiply/divide by a power of ten) is not always correctly rounded; 17 of the 322
scores here land one ulp away from Python's reading. REFERENCE and textok both use serde's.
Cross-check: every case (and 15000 random texts) also gave the same ids with HF tokenizers
0.23.2 itself (its Node.js binding), which CI does not have.
Normalisation note: the Precompiled charsmap is applied as SentencePiece does (longest match at
each position, spm_precompiled's normalize_string). HF's tokenizers crate applies it per extended
grapheme cluster instead (the whole cluster if shorter than 6 bytes and a key is a prefix of it,
taking the SHORTEST such key; else char by char). The two agree except on clusters of several
code points, e.g. decomposed Hangul jamo or a full-width letter followed by a combining mark;
the cases here use only clusters where they agree ("cafe\\u0301" is one key in both).

Deterministic: single-threaded training with a fixed seed; re-running writes byte-identical files.
"""
import argparse
import base64
import io
import json
import os
import shutil
import sys
import tempfile

try:   # only training and the cross-checks need it; Reference (plain Python) does not
    import sentencepiece as spm
except ImportError:
    spm = None

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "golden", "spm")
REGENERATE = "/usr/bin/python3 tools/gen_golden_spm.py"
META = "\u2581"   # "▁"

# ---- training data: words from a fixed list plus syllable compounds, picked by an LCG ----------

WORDS = ("a photo of the dog cat bird car red blue green small large running on grass with two three "
         "Dog Cat New York USA NASA Photo The "
         "café naïve résumé Zürich crème brûlée São Paulo fiancée "
         "猫 犬 東京 写真 の 日本 🐶 "
         "12 345 2024 0 7 hello world , . ! ? ' \" - ( ) : ; & a/b 3.5 %").split()
SYLLABLES = ("ka ta na ma ra sa to mi ko ri ne po lu be de fo gu hi jo ve wa ye zu ch sh th ing er ed "
             "ly on an in st").split()


def corpus():
    state = [12345]

    def rnd():
        state[0] = (state[0] * 1103515245 + 12345) % (1 << 31)
        return state[0] >> 8

    words = list(WORDS)
    for _ in range(300):
        words.append("".join(SYLLABLES[rnd() % len(SYLLABLES)] for _ in range(1 + rnd() % 3)))
    sents = []
    for _ in range(4000):
        n = 3 + rnd() % 8
        sents.append(" ".join(words[rnd() % len(words)] for _ in range(n)))
    return sents


def train():
    spm.set_random_generator_seed(1234)
    f = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus()), model_writer=f, model_type="unigram", vocab_size=320,
        character_coverage=1.0, normalization_rule_name="nmt_nfkc", pad_id=0, eos_id=1, unk_id=2,
        bos_id=-1, num_threads=1, shuffle_input_sentence=False, input_sentence_size=0, minloglevel=2)
    return f.getvalue()


def proto_charsmap(model):
    """ModelProto field 3 (normalizer_spec) -> NormalizerSpec field 2 (precompiled_charsmap),
    read with a minimal protobuf wire-format walker (no protobuf package needed)."""
    def fields(b):
        i = 0
        while i < len(b):
            key, i = varint(b, i)
            num, wt = key >> 3, key & 7
            if wt == 0:
                v, i = varint(b, i)
            elif wt == 1:
                v, i = b[i:i + 8], i + 8
            elif wt == 2:
                n, i = varint(b, i)
                v, i = b[i:i + n], i + n
            elif wt == 5:
                v, i = b[i:i + 4], i + 4
            else:
                raise ValueError(f"wire type {wt}")
            yield num, v

    def varint(b, i):
        x = s = 0
        while True:
            c = b[i]
            i += 1
            x |= (c & 0x7f) << s
            s += 7
            if c < 0x80:
                return x, i

    for num, v in fields(model):
        if num == 3:
            for n2, v2 in fields(v):
                if n2 == 2:
                    return bytes(v2)
    raise ValueError("model has no precompiled_charsmap")


# ---- tokenizer.json files ----------------------------------------------------------------------

EXTRA_IDS = 2


def added_token(i, content, **kw):
    d = {"id": i, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": True}
    d.update(kw)
    return d


def template(eos_id):
    return {"type": "TemplateProcessing",
            "single": [{"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}}],
            "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}}],
            "special_tokens": {"</s>": {"id": "</s>", "ids": [eos_id], "tokens": ["</s>"]}}}


def tokenizer_files(sp, charsmap):
    vocab = [[sp.id_to_piece(i), float(sp.get_score(i))] for i in range(sp.get_piece_size())]
    vocab += [[f"<extra_id_{i}>", 0.0] for i in range(EXTRA_IDS - 1, -1, -1)]
    n = sp.get_piece_size()
    added = [added_token(0, "<pad>"), added_token(1, "</s>"), added_token(2, "<unk>")]
    added += [added_token(n + k, f"<extra_id_{EXTRA_IDS - 1 - k}>") for k in range(EXTRA_IDS)]
    model = {"type": "Unigram", "unk_id": 2, "vocab": vocab}
    meta_dec = {"type": "Metaspace", "replacement": META, "add_prefix_space": True}

    def tok(normalizer, pre, added_tokens=added, **extra):
        d = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added_tokens,
             "normalizer": normalizer, "pre_tokenizer": pre, "post_processor": template(1),
             "decoder": meta_dec, "model": model}
        d.update(extra)
        return d

    files = {}
    files["tokenizer.json"] = (tok(
        {"type": "Sequence", "normalizers": [
            {"type": "Precompiled", "precompiled_charsmap": base64.b64encode(charsmap).decode("ascii")},
            {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "}]},
        {"type": "Metaspace", "replacement": META, "add_prefix_space": True}), False)
    files["tokenizer_ws.json"] = (tok(
        None,
        {"type": "Sequence", "pretokenizers": [
            {"type": "WhitespaceSplit"},
            {"type": "Metaspace", "replacement": META, "prepend_scheme": "always", "split": True}]}), True)
    added_new = [dict(t) for t in added]
    added_new[-1].update(lstrip=True, rstrip=True, normalized=True)   # <extra_id_0>
    files["tokenizer_new.json"] = (tok(
        {"type": "Sequence", "normalizers": [
            {"type": "Strip", "strip_left": False, "strip_right": True},
            {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": META}]},
        {"type": "Metaspace", "replacement": META, "prepend_scheme": "first", "split": True},
        added_new), False)
    files["tokenizer_nosplit.json"] = (tok(
        {"type": "Replace", "pattern": {"String": "  "}, "content": " "},
        {"type": "Metaspace", "replacement": META, "prepend_scheme": "never", "split": False}), False)
    out = {}
    for name, (d, ascii_only) in files.items():
        out[name] = (json.dumps(d, ensure_ascii=ascii_only, separators=(",", ":")) + "\n").encode("utf-8")
    return out


# ---- REFERENCE: the HF tokenizer.json pipeline in plain Python ---------------------------------

def serde_f64(text):
    """A JSON number as serde_json 1.x reads it without float_roundtrip: digits go into a u64
    significand until one more would overflow it (later integer digits then only scale, later
    fraction digits are dropped), then f = float(significand) times or divided by 10^|exp|."""
    neg = text.startswith("-")
    body = text.lstrip("-")
    mant, _, exp = body.replace("E", "e").partition("e")
    ip, _, fp = mant.partition(".")
    u64 = (1 << 64) - 1
    sig, e, over = 0, 0, False
    for ch in ip:
        if over or sig * 10 + int(ch) > u64:
            over = True
            e += 1
        else:
            sig = sig * 10 + int(ch)
    for ch in fp:
        if sig * 10 + int(ch) > u64:
            break
        sig = sig * 10 + int(ch)
        e -= 1
    e += int(exp) if exp else 0
    f = float(sig)
    while True:
        if abs(e) <= 308:
            f = f * float(f"1e{abs(e)}") if e >= 0 else f / float(f"1e{abs(e)}")
            break
        if f == 0.0:
            break
        assert e < 0, "out of range"
        f /= 1e308
        e += 308
    return -f if neg else f


# Unicode White_Space (what Rust's char::is_whitespace tests; Python's str.isspace differs)
WHITE_SPACE = set([0x9, 0xA, 0xB, 0xC, 0xD, 0x20, 0x85, 0xA0, 0x1680, 0x2028, 0x2029, 0x202F, 0x205F,
                   0x3000] + list(range(0x2000, 0x200B)))


def is_ws(ch):
    return ord(ch) in WHITE_SPACE


class Charsmap:
    """SentencePiece's precompiled charsmap: u32 LE trie size in bytes, the darts double array
    (u32 LE units), then the pool of NUL-terminated replacement strings. Unit layout: bit 8 =
    has a leaf child, bits 0-7 = label (bit 31 kept in the label check), offset = (unit >> 10)
    << (8 if bit 9 else 0), a leaf's value = unit & 0x7fffffff = offset into the pool."""

    def __init__(self, blob):
        size = int.from_bytes(blob[:4], "little")
        self.units = [int.from_bytes(blob[4 + 4 * i:8 + 4 * i], "little") for i in range(size // 4)]
        self.pool = blob[4 + size:]

    @staticmethod
    def offset(u):
        return (u >> 10) << ((u & (1 << 9)) >> 6)

    def longest(self, key):
        """(length, replacement bytes) of the longest key that prefixes `key` (bytes), or None."""
        pos = self.offset(self.units[0])
        best = None
        for i, c in enumerate(key):
            if c == 0:
                break
            pos ^= c
            u = self.units[pos]
            if (u & ((1 << 31) | 0xFF)) != c:
                break
            pos ^= self.offset(u)
            if (u >> 8) & 1:
                v = self.units[pos] & 0x7FFFFFFF
                end = self.pool.index(b"\0", v) if b"\0" in self.pool[v:] else len(self.pool)
                best = (i + 1, self.pool[v:end])
        return best

    def normalize(self, s):
        b, out, i = s.encode("utf-8"), bytearray(), 0
        while i < len(b):
            m = self.longest(b[i:])
            if m:
                out += m[1]
                i += m[0]
            else:
                n = len(b[i:].decode("utf-8", "ignore")[:1].encode("utf-8"))
                out += b[i:i + n]
                i += n
        return out.decode("utf-8")


class Reference:
    def __init__(self, cfg):
        self.cfg = cfg
        m = cfg["model"]
        self.vocab = [(p, float(s)) for p, s in m["vocab"]]
        self.unk_id = m["unk_id"]
        self.token_to_id = {}
        for i, (p, _) in enumerate(self.vocab):
            self.token_to_id[p] = i          # a repeated piece: the last id wins, as in HF
        self.pieces = set(self.token_to_id)
        self.max_piece = max(len(p.encode("utf-8")) for p in self.pieces)
        self.min_score = min(s for _, s in self.vocab)
        self.added = []
        for t in cfg["added_tokens"]:
            tid = self.token_to_id.get(t["content"], t["id"])
            self.added.append(dict(t, id=tid))
        pp = cfg["post_processor"]
        self.suffix = []
        seen_a = False
        for item in pp["single"]:
            if "Sequence" in item:
                seen_a = True
            else:
                assert seen_a
                self.suffix += pp["special_tokens"][item["SpecialToken"]["id"]]["ids"]
        self.eos_id = self.suffix[-1]

    # normalizers
    def normalize(self, s, spec=None):
        spec = self.cfg["normalizer"] if spec is None else spec
        if spec is None:
            return s
        t = spec["type"]
        if t == "Sequence":
            for sub in spec["normalizers"]:
                s = self.normalize(s, sub)
            return s
        if t == "Precompiled":
            return Charsmap(base64.b64decode(spec["precompiled_charsmap"])).normalize(s)
        if t == "Replace":
            pat = spec["pattern"]
            if "String" in pat:
                return s.replace(pat["String"], spec["content"])
            assert pat["Regex"] == " {2,}"
            out, i = [], 0
            while i < len(s):
                j = i
                while j < len(s) and s[j] == " ":
                    j += 1
                if j - i >= 2:
                    out.append(spec["content"])
                    i = j
                else:
                    out.append(s[i])
                    i += 1
            return "".join(out)
        if t == "Strip":
            a, b = 0, len(s)
            if spec["strip_left"]:
                while a < b and is_ws(s[a]):
                    a += 1
            if spec["strip_right"]:
                while b > a and is_ws(s[b - 1]):
                    b -= 1
            return s[a:b]
        raise ValueError(t)

    # added tokens: leftmost-longest over the given tokens, whitespace stripped by lstrip/rstrip
    @staticmethod
    def split_added(s, tokens):
        """[(text, id or None)]: None parts are text, empty ones dropped."""
        out, start, i = [], 0, 0
        while i < len(s):
            best = None
            for t in tokens:
                c = t["content"]
                if c and s.startswith(c, i) and (best is None or len(c) > len(best["content"])):
                    best = t
            if best is None:
                i += 1
                continue
            a, b = i, i + len(best["content"])
            if best["lstrip"]:
                while a > start and is_ws(s[a - 1]):
                    a -= 1
            if best["rstrip"]:
                while b < len(s) and is_ws(s[b]):
                    b += 1
            if start < a:
                out.append((s[start:a], None))
            out.append((s[a:b], best["id"]))
            start = i = b
        if start < len(s) or not out:
            out.append((s[start:], None))
        return out

    # pre-tokenizers: on a list of (text, starts_at_original_0)
    def pre_tokenize(self, segs, spec=None):
        spec = self.cfg["pre_tokenizer"] if spec is None else spec
        if spec is None:
            return segs
        t = spec["type"]
        if t == "Sequence":
            for sub in spec["pretokenizers"]:
                segs = self.pre_tokenize(segs, sub)
            return segs
        out = []
        if t == "WhitespaceSplit":
            for s, first in segs:
                cur, at0 = "", first
                for ch in s:
                    if is_ws(ch):
                        if cur:
                            out.append((cur, at0))
                        cur, at0 = "", False
                    else:
                        cur += ch
                if cur:
                    out.append((cur, at0))
            return out
        assert t == "Metaspace"
        rep = spec["replacement"]
        scheme = spec.get("prepend_scheme", "always")
        if spec.get("add_prefix_space") is False:
            scheme = "never"
        for s, first in segs:
            s = s.replace(" ", rep)
            if s and not s.startswith(rep) and (scheme == "always" or (scheme == "first" and first)):
                s = rep + s
            if not spec.get("split", True):
                parts = [s]
            else:
                parts, cur = [], ""
                for ch in s:
                    if ch == rep and cur:
                        parts.append(cur)
                        cur = ""
                    cur += ch
                parts.append(cur)
            out += [(p, first and k == 0) for k, p in enumerate(parts) if p]
        return out

    # Unigram Viterbi over one pre-token
    def viterbi(self, w):
        b = w.encode("utf-8")
        n = len(b)
        unk_score = self.min_score - 10.0
        score = [0.0] * (n + 1)
        start = [None] * (n + 1)
        ident = [None] * (n + 1)
        pos = 0
        while pos < n:
            ch_len = len(b[pos:].decode("utf-8")[:1].encode("utf-8"))
            single = False
            for ln in range(1, min(self.max_piece, n - pos) + 1):   # matches in increasing length
                piece = b[pos:pos + ln]
                try:
                    key = piece.decode("utf-8")
                except UnicodeDecodeError:
                    continue
                if key not in self.pieces:
                    continue
                pid = self.token_to_id[key]
                cand = score[pos] + self.vocab[pid][1]
                if start[pos + ln] is None or cand > score[pos + ln]:
                    score[pos + ln], start[pos + ln], ident[pos + ln] = cand, pos, pid
                if ln == ch_len:
                    single = True
            if not single:
                cand = score[pos] + unk_score
                e = pos + ch_len
                if start[e] is None or cand > score[e]:
                    score[e], start[e], ident[e] = cand, pos, self.unk_id
            pos += ch_len
        pieces, end, unk = [], n, b""
        while end > 0:
            s = start[end]
            if ident[end] == self.unk_id:
                unk = b[s:end] + unk
            else:
                if unk:
                    pieces.append(unk)
                    unk = b""
                pieces.append(b[s:end])
            end = s
        if unk:
            pieces.append(unk)
        pieces.reverse()
        return [self.token_to_id.get(p.decode("utf-8"), self.unk_id) for p in pieces]

    def words(self, text):
        """[(pre-token text, None) | (None, added token id)] in order."""
        raw_tokens = [t for t in self.added if not t["normalized"]]
        norm_tokens = [t for t in self.added if t["normalized"]]
        out = []
        for k, (part, tid) in enumerate(self.split_added(text, raw_tokens)):
            if tid is not None:
                out.append((None, tid))
                continue
            first = k == 0
            norm = self.normalize(part)
            for k2, (p2, tid2) in enumerate(self.split_added(norm, norm_tokens)):
                if tid2 is not None:
                    out.append((None, tid2))
                elif p2:
                    out += [(w, None) for w, _ in self.pre_tokenize([(p2, first and k2 == 0)])]
        return out

    def encode(self, text, max_len):
        ids = []
        for w, tid in self.words(text):
            ids += [tid] if tid is not None else self.viterbi(w)
        n_full = len(ids) + len(self.suffix)
        keep = max(0, max_len - len(self.suffix))
        return ids[:keep] + self.suffix, n_full


# ---- the cases ---------------------------------------------------------------------------------

LONG = ("a photo of a small red dog running on green grass with two large blue birds and three "
        "cats near a car in New York")

# (file, name, text, max_len, spm): spm = the whole text must also match sentencepiece + </s>
CASES = [
    ("tokenizer.json", "plain", "a photo of a dog", 32, True),
    ("tokenizer.json", "capitals", "A Photo of The Dog in NASA USA", 32, True),
    ("tokenizer.json", "syllables", "katana mikori tashing zuwaye", 32, True),
    ("tokenizer.json", "leading_spaces", "   a dog", 32, True),
    ("tokenizer.json", "inner_spaces", "a    dog  cat", 32, True),
    ("tokenizer.json", "trailing_space", "a dog ", 32, False),
    ("tokenizer.json", "trailing_spaces", "a dog    ", 32, False),
    ("tokenizer.json", "only_spaces", "     ", 32, False),
    ("tokenizer.json", "tabs_newlines", "a\tdog\n\ncat\r\nbird", 32, True),
    ("tokenizer.json", "punctuation", "hello, world! (two) dogs: red & blue? \"yes\" - 'no'; a/b", 48, True),
    ("tokenizer.json", "digits", "12 345 2024 1234567890 3.5% 007", 48, True),
    ("tokenizer.json", "accents", "café naïve résumé fiancée", 32, True),
    ("tokenizer.json", "accents_2", "Zürich crème brûlée São Paulo", 32, True),
    ("tokenizer.json", "cjk", "東京の猫の写真 日本の犬", 32, True),
    ("tokenizer.json", "emoji", "🐶 dog🐶🐶", 32, True),
    ("tokenizer.json", "fullwidth", "ＤＯＧ ｃａｔ １２３ ａ　ｐｈｏｔｏ", 32, True),
    ("tokenizer.json", "ligature_circled", "ﬁsh ① ② ⑫ ½", 32, True),
    ("tokenizer.json", "decomposed", "cafe\u0301 nai\u0308ve", 32, True),
    ("tokenizer.json", "nbsp_zwsp_control", "a\u00a0dog a\u200bcat a\u0007bird a\u3000car", 32, True),
    ("tokenizer.json", "unknown", "Ωmega dog ж", 32, True),
    ("tokenizer.json", "unknown_run", "жжж ΩжΩ caжжt 🦜🦜 dog", 32, True),
    ("tokenizer.json", "unknown_mixed", "€ ∑x ¿qué? ø", 32, True),
    ("tokenizer.json", "meta_char", "a\u2581dog \u2581\u2581cat", 32, False),
    ("tokenizer.json", "empty", "", 32, True),
    ("tokenizer.json", "long", LONG, 256, True),
    ("tokenizer.json", "long_trunc8", LONG, 8, True),
    ("tokenizer.json", "long_trunc2", LONG, 2, True),
    ("tokenizer.json", "long_trunc1", LONG, 1, True),
    ("tokenizer.json", "exact_fit", "a dog", 3, True),
    ("tokenizer.json", "eos_in_text", "a dog</s>", 32, False),
    ("tokenizer.json", "eos_mid", "a </s> dog</s>cat", 32, False),
    ("tokenizer.json", "eos_start", "</s> a dog", 32, False),
    ("tokenizer.json", "specials", "<pad><unk></s>", 32, False),
    ("tokenizer.json", "extra_ids", "<extra_id_0> dog <extra_id_1>cat<extra_id_2>", 32, False),
    ("tokenizer.json", "special_partial", "</s <//s> <pad </s>>", 32, False),
    ("tokenizer.json", "special_fullwidth", "a ＜/s＞ dog", 32, False),
    ("tokenizer.json", "special_trunc", "a dog </s> cat", 4, False),
    ("tokenizer_ws.json", "ws_plain", "a photo of a dog", 32, True),
    ("tokenizer_ws.json", "ws_spaces", "  a \t dog\n cat   ", 32, True),
    ("tokenizer_ws.json", "ws_unicode", "café 東京の猫 🐶 ж", 32, True),
    ("tokenizer_ws.json", "ws_specials", "a</s>dog <pad> cat", 32, False),
    ("tokenizer_ws.json", "ws_empty", " \t ", 32, False),
    ("tokenizer_new.json", "new_plain", "a photo of a dog", 32, True),
    ("tokenizer_new.json", "new_spaces", "  a   dog   ", 32, False),
    ("tokenizer_new.json", "new_first", "</s>dog a</s>cat", 32, False),
    ("tokenizer_new.json", "new_extra_strip", "a dog   <extra_id_0>   cat", 32, False),
    ("tokenizer_new.json", "new_extra_start", "<extra_id_0>dog", 32, False),
    ("tokenizer_nosplit.json", "nosplit_plain", "a photo of a dog", 32, False),
    ("tokenizer_nosplit.json", "nosplit_spaces", " a     dog ", 32, False),
]


def check_spm(sp, ref, text, spm_whole):
    """Problems (strings) where the Python reference disagrees with sentencepiece."""
    problems = []
    for w, tid in ref.words(text):
        if tid is not None or not w.startswith(META) or len(w) == 1:
            continue
        if any(t["content"] in w for t in ref.added):
            continue
        got, want = ref.viterbi(w), sp.encode(w[1:])
        if got != want:
            problems.append(f"word {w!r}: reference {got} vs sentencepiece {want}")
    if spm_whole:
        got, want = ref.encode(text, 1 << 30)[0], sp.encode(text) + [ref.eos_id]
        if got != want:
            problems.append(f"text {text!r}: reference {got} vs sentencepiece {want}")
    return problems


def generate(out, verbose=True):
    model = train()
    sp = spm.SentencePieceProcessor(model_proto=model)
    files = tokenizer_files(sp, proto_charsmap(model))
    os.makedirs(out, exist_ok=True)
    for name, data in files.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    refs = {name: Reference(json.loads(data, parse_float=serde_f64)) for name, data in files.items()}
    lines = ["# tests/golden/spm/cases.tsv, written by tools/gen_golden_spm.py (do not edit).\n",
             "# file\tname\tmax_len\ttext as UTF-8 hex\tn_full\tids\ttext as JSON (for reading)\n"]
    problems = []
    for fname, name, text, max_len, spm_whole in CASES:
        ids, n_full = refs[fname].encode(text, max_len)
        lines.append(f"{fname}\t{name}\t{max_len}\t{text.encode('utf-8').hex()}\t{n_full}\t"
                     f"{' '.join(map(str, ids))}\t{json.dumps(text, ensure_ascii=True)}\n")
        if fname == "tokenizer.json" or spm_whole:
            problems += [f"{fname} {name}: {p}" for p in check_spm(sp, refs[fname], text, spm_whole)]
        if verbose:
            pieces = [refs[fname].vocab[i][0] if i < len(refs[fname].vocab) else "?" for i in ids]
            print(f"{fname:24s} {name:20s} n_full={n_full:3d} {pieces}")
    with open(os.path.join(out, "cases.tsv"), "w", encoding="utf-8", newline="\n") as f:
        f.writelines(lines)
    return problems


def compare_dirs(a, b):
    problems = []
    names = sorted(os.listdir(a))
    if not os.path.isdir(b) or names != sorted(os.listdir(b)):
        return [f"{b}: file list differs from a fresh regeneration ({names})"]
    for n in names:
        with open(os.path.join(a, n), "rb") as fa, open(os.path.join(b, n), "rb") as fb:
            if fa.read() != fb.read():
                problems.append(f"{os.path.join(b, n)}: differs from a fresh regeneration")
    return problems


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=OUT)
    ap.add_argument("--check", action="store_true",
                    help="regenerate into a temp dir and compare bit for bit with --out, then validate")
    args = ap.parse_args()
    if spm is None:
        sys.exit("gen_golden_spm.py: needs python3-sentencepiece (apt-get install python3-sentencepiece)")
    if args.check:
        tmp = tempfile.mkdtemp(prefix="textok_spm_")
        try:
            problems = generate(tmp, verbose=False)
            problems += compare_dirs(tmp, args.out)
        finally:
            shutil.rmtree(tmp)
    else:
        problems = generate(args.out)
    for p in problems:
        print("PROBLEM:", p)
    if problems:
        sys.exit(1)
    print(f"{args.out}: {'bit-identical to a fresh regeneration; ' if args.check else ''}"
          f"{len(CASES)} cases, reference agrees with sentencepiece")


if __name__ == "__main__":
    main()
