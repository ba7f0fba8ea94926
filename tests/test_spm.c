/* test_spm.c - the SentencePiece Unigram tokenizer (textok_spm_*): every case of
   tests/golden/spm/cases.tsv (tools/gen_golden_spm.py: ids from a Python port of HF's pipeline
   that agrees with sentencepiece; also checked against HF tokenizers itself when they were
   made) must come out exactly, then small hand-made models (a Precompiled charsmap built here,
   byte fallback, a template with a prefix, no unk_id: expectations checked against HF
   tokenizers 0.23), then bad input: other model types and unsupported parts, truncated and
   hostile JSON, invalid UTF-8 text, bad max_len. Every failure must be the right status with a
   message that names the file. */
#include "textok.h"
#include "check.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SPM_MAX_IDS 512

static unsigned char *spm_slurp(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf = NULL;
    long n;
    *size = 0;
    if (!f) return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
        buf = (unsigned char *)malloc((size_t)n + 1);
        if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) { free(buf); buf = NULL; }
        if (buf) { buf[n] = 0; *size = (size_t)n; }
    }
    fclose(f);
    return buf;
}

static int has(const char *hay, const char *needle) { return strstr(hay, needle) != NULL; }

static const char *status_str(int s)
{
    switch (s) {
    case TEXTOK_OK: return "OK";
    case TEXTOK_ERR_IO: return "ERR_IO";
    case TEXTOK_ERR_FORMAT: return "ERR_FORMAT";
    case TEXTOK_ERR_NOMEM: return "ERR_NOMEM";
    case TEXTOK_ERR_ARG: return "ERR_ARG";
    case TEXTOK_ERR_UNSUPPORTED: return "ERR_UNSUPPORTED";
    default: return "other";
    }
}

/* Loads json (n bytes) under name; expects status want and, on failure, a message holding the
   name and `word` (NULL = no word needed). */
static void expect_load(tt_stats *s, const char *what, const char *json, size_t n, const char *name, int want,
                        const char *word)
{
    textok_spm *t = NULL;
    int rc = textok_spm_load_mem(&t, json, n, name);
    const char *msg = rc ? textok_last_error() : "";
    int ok = rc == want && (rc == TEXTOK_OK ? t != NULL : t == NULL && has(msg, name) && (!word || has(msg, word)));
    tt_check(s, ok, "spm bad file: %-34s %s (want %s) %s", what, status_str(rc), status_str(want), msg);
    textok_spm_free(t);
}

/* A copy of src with the first `from` replaced by `to` (NULL if absent); free it. */
static char *replaced(const char *src, const char *from, const char *to)
{
    const char *at = strstr(src, from);
    size_t a, nf = strlen(from), nt = strlen(to), n = strlen(src);
    char *out;
    if (!at) return NULL;
    a = (size_t)(at - src);
    out = (char *)malloc(n - nf + nt + 1);
    memcpy(out, src, a);
    memcpy(out + a, to, nt);
    memcpy(out + a + nt, at + nf, n - a - nf + 1);
    return out;
}

/* Encodes text, expects the given ids exactly (n_want of them) and n_full. */
static void expect_ids(tt_stats *s, const char *what, const textok_spm *t, const char *text, int max_len,
                       const int32_t *want, int n_want, int full_want)
{
    int32_t ids[SPM_MAX_IDS];
    int n = -1, full = -1, rc = textok_spm_encode(t, text, ids, max_len, &n, &full), ok, i;
    char got[256] = "";
    ok = rc == TEXTOK_OK && n == n_want && full == full_want;
    for (i = 0; ok && i < n; i++) ok = ids[i] == want[i];
    for (i = 0; rc == TEXTOK_OK && i < n && strlen(got) < 200; i++) snprintf(got + strlen(got), 16, "%d ", (int)ids[i]);
    tt_check(s, ok, "spm %-40s rc %s n %d n_full %d ids [ %s]", what, status_str(rc), n, full, got);
}

/* ---- golden cases ------------------------------------------------------------------------ */

static int hexval(char c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1; }

static void golden_cases(tt_stats *s)
{
    char path[512], loaded[64][64], *line, *next;
    textok_spm *tok[64] = { NULL };
    int n_loaded = 0, n_cases = 0, i;
    size_t size;
    unsigned char *tsv;
    snprintf(path, sizeof path, "%s/spm/cases.tsv", tt_golden_dir);
    tsv = spm_slurp(path, &size);
    tt_check(s, tsv != NULL, "spm golden: read %s", path);
    if (!tsv) return;
    for (line = (char *)tsv; *line; line = next) {
        char *f[7], *p = line, text[2048], *q;
        int32_t want[SPM_MAX_IDS], ids[SPM_MAX_IDS];
        int nf = 0, n_want = 0, max_len, full_want, n = -1, full = -1, rc, ok, k, t = -1;
        size_t hl;
        if ((next = strchr(line, '\n')) != NULL) *next++ = 0;
        else next = line + strlen(line);
        if (line[0] == '#' || !line[0]) continue;
        while (nf < 7) {
            f[nf++] = p;
            if (!(p = strchr(p, '\t'))) break;
            *p++ = 0;
        }
        if (nf < 6) { tt_check(s, 0, "spm golden: malformed line '%.40s'", line); continue; }
        max_len = atoi(f[2]);
        full_want = atoi(f[4]);
        hl = strlen(f[3]);
        for (k = 0; k * 2 + 1 < (int)hl && k < (int)sizeof text - 1; k++)
            text[k] = (char)(hexval(f[3][2 * k]) * 16 + hexval(f[3][2 * k + 1]));
        text[k] = 0;
        for (q = f[5]; *q && n_want < SPM_MAX_IDS;) {
            char *e;
            long v = strtol(q, &e, 10);
            if (e == q) break;
            want[n_want++] = (int32_t)v;
            q = e;
        }
        for (i = 0; i < n_loaded; i++)
            if (strcmp(loaded[i], f[0]) == 0) t = i;
        if (t < 0 && n_loaded < 64) {
            char fp[600];
            snprintf(fp, sizeof fp, "%s/spm/%s", tt_golden_dir, f[0]);
            snprintf(loaded[n_loaded], sizeof loaded[0], "%s", f[0]);
            rc = textok_spm_load(&tok[n_loaded], fp);
            tt_check(s, rc == TEXTOK_OK, "spm golden: load %s %s", fp, rc ? textok_last_error() : "");
            t = n_loaded++;
        }
        if (t < 0 || !tok[t]) continue;
        rc = textok_spm_encode(tok[t], text, ids, max_len, &n, &full);
        ok = rc == TEXTOK_OK && n == n_want && full == full_want;
        for (k = 0; ok && k < n; k++) ok = ids[k] == want[k];
        tt_check(s, ok, "spm golden %-22s %-20s max_len %3d: n %d/%d n_full %d/%d %s", f[0], f[1], max_len, n, n_want,
                 full, full_want, rc ? textok_last_error() : "");
        n_cases++;
    }
    tt_check(s, n_cases >= 40, "spm golden: %d cases run", n_cases);
    /* the accessors, on the T5-layout model (pad 0, </s> 1, <unk> 2, two extra ids at the end) */
    for (i = 0; i < n_loaded; i++)
        if (strcmp(loaded[i], "tokenizer.json") == 0 && tok[i]) {
            textok_spm *t = tok[i];
            int v = textok_spm_vocab_size(t);
            int ok = v == 322 && textok_spm_eos_id(t) == 1 && textok_spm_pad_id(t) == 0 &&
                     textok_spm_piece(t, 0) && strcmp(textok_spm_piece(t, 0), "<pad>") == 0 &&
                     strcmp(textok_spm_piece(t, 2), "<unk>") == 0 && strcmp(textok_spm_piece(t, v - 1), "<extra_id_0>") == 0 &&
                     textok_spm_piece(t, -1) == NULL && textok_spm_piece(t, v) == NULL;
            tt_check(s, ok, "spm accessors: vocab_size %d eos %d pad %d piece(%d) '%s'", v, textok_spm_eos_id(t),
                     textok_spm_pad_id(t), v - 1, textok_spm_piece(t, v - 1) ? textok_spm_piece(t, v - 1) : "(null)");
        }
    for (i = 0; i < n_loaded; i++) textok_spm_free(tok[i]);
    free(tsv);
}

/* ---- hand-made models --------------------------------------------------------------------- */

/* A base64 Precompiled charsmap with one key "a" -> replacement at `value` of the strings
   "x\0" (a darts double array built by hand: root offset 256, 'a' at 256^0x61 = 353 with a
   leaf child at 353^1024 = 1377). */
static char *charsmap_b64(uint32_t value)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n_units = 1378, n = 4 + 4 * n_units + 2, i, o = 0;
    unsigned char *blob = (unsigned char *)calloc(n + 2, 1);
    char *out = (char *)malloc((n + 2) / 3 * 4 + 1);
    uint32_t units[3][2] = { { 0, 256u << 10 }, { 353, (1024u << 10) | (1u << 8) | 0x61u }, { 1377, 0 } };
    units[2][1] = value;
    blob[0] = (unsigned char)(4 * n_units);
    blob[1] = (unsigned char)((4 * n_units) >> 8);
    for (i = 0; i < 3; i++) {
        unsigned char *u = blob + 4 + 4 * units[i][0];
        u[0] = (unsigned char)units[i][1];
        u[1] = (unsigned char)(units[i][1] >> 8);
        u[2] = (unsigned char)(units[i][1] >> 16);
        u[3] = (unsigned char)(units[i][1] >> 24);
    }
    blob[n - 2] = 'x';
    for (i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)blob[i] << 16 | (uint32_t)blob[i + 1] << 8 | blob[i + 2];
        out[o++] = tab[v >> 18];
        out[o++] = tab[(v >> 12) & 63];
        out[o++] = i + 1 < n ? tab[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? tab[v & 63] : '=';
    }
    out[o] = 0;
    free(blob);
    return out;
}

#define SPM_VOCAB "[[\"<unk>\",0],[\"<s>\",0],[\"</s>\",0],[\"\\u2581\",-1],[\"a\",-2],[\"<0xC3>\",-3],[\"<0xA9>\",-3]," \
                  "[\"\\u2581a\",-1.5],[\"b\",-2.5],[\"x\",-2],[\"\\u2581x\",-1.25]]"
#define SPM_META "{\"type\":\"Metaspace\",\"replacement\":\"\\u2581\",\"prepend_scheme\":\"always\",\"split\":true}"
#define SPM_TEMPLATE "{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\",\"type_id\":0}}," \
                     "{\"Sequence\":{\"id\":\"A\",\"type_id\":0}},{\"SpecialToken\":{\"id\":\"</s>\",\"type_id\":0}}]," \
                     "\"special_tokens\":{\"<s>\":{\"id\":\"<s>\",\"ids\":[1],\"tokens\":[\"<s>\"]}," \
                     "\"</s>\":{\"id\":\"</s>\",\"ids\":[2],\"tokens\":[\"</s>\"]}}}"

static char *model_json(const char *normalizer, const char *unk_id, const char *fallback)
{
    static const char fmt[] = "{\"version\":\"1.0\",\"added_tokens\":[],\"normalizer\":%s,\"pre_tokenizer\":" SPM_META
                              ",\"post_processor\":" SPM_TEMPLATE ",\"model\":{\"type\":\"Unigram\",\"unk_id\":%s,"
                              "\"byte_fallback\":%s,\"vocab\":" SPM_VOCAB "}}";
    size_t n = sizeof fmt + strlen(normalizer) + strlen(unk_id) + strlen(fallback);
    char *out = (char *)malloc(n);
    snprintf(out, n, fmt, normalizer, unk_id, fallback);
    return out;
}

static void handmade(tt_stats *s)
{
    textok_spm *t = NULL;
    char *j, *cm, *norm;
    int32_t ids[8];
    int n = -1, full = -1, rc;
    const char *name = "handmade.json";
    /* byte fallback and a template with a prefix (HF tokenizers 0.23: "a\u00e9" -> 1 7 5 6 2,
       "ab a" -> 1 7 8 7 2, truncation 3 -> 1 7 2, "\u00e9\u00e8" -> 1 3 0 2) */
    j = model_json("null", "0", "true");
    rc = textok_spm_load_mem(&t, j, strlen(j), name);
    tt_check(s, rc == TEXTOK_OK, "spm handmade: load %s", rc ? textok_last_error() : "");
    if (t) {
        static const int32_t w1[] = { 1, 7, 5, 6, 2 }, w2[] = { 1, 7, 8, 7, 2 }, w3[] = { 1, 7, 2 }, w4[] = { 1, 3, 0, 2 },
                             w5[] = { 1, 2 };
        expect_ids(s, "byte fallback 'a\\u00e9'", t, "a\xc3\xa9", 8, w1, 5, 5);
        expect_ids(s, "prefix template 'ab a'", t, "ab a", 8, w2, 5, 5);
        expect_ids(s, "prefix template truncated to 3", t, "ab a", 3, w3, 3, 5);
        expect_ids(s, "prefix template max_len 2 (no pieces)", t, "ab a", 2, w5, 2, 5);
        expect_ids(s, "byte fallback incomplete -> unk", t, "\xc3\xa9\xc3\xa8", 8, w4, 4, 4);
        rc = textok_spm_encode(t, "ab", ids, 1, &n, &full);
        tt_check(s, rc == TEXTOK_ERR_ARG && has(textok_last_error(), name), "spm handmade: max_len 1 < 2 template ids: %s",
                 textok_last_error());
        tt_check(s, textok_spm_eos_id(t) == 2 && textok_spm_pad_id(t) == -1 && textok_spm_vocab_size(t) == 11,
                 "spm handmade: eos %d pad %d vocab %d", textok_spm_eos_id(t), textok_spm_pad_id(t), textok_spm_vocab_size(t));
        textok_spm_free(t);
        t = NULL;
    }
    free(j);
    j = model_json("null", "0", "false");   /* HF: "a\u00e9" -> 1 7 0 2 */
    if (textok_spm_load_mem(&t, j, strlen(j), name) == TEXTOK_OK) {
        static const int32_t w[] = { 1, 7, 0, 2 };
        expect_ids(s, "no byte fallback 'a\\u00e9'", t, "a\xc3\xa9", 8, w, 4, 4);
        textok_spm_free(t);
        t = NULL;
    }
    free(j);
    j = model_json("null", "null", "false");   /* HF: "Encountered an unknown token but `unk_id` is missing" */
    rc = textok_spm_load_mem(&t, j, strlen(j), name);
    tt_check(s, rc == TEXTOK_OK, "spm handmade: unk_id null loads");
    if (t) {
        static const int32_t w[] = { 1, 7, 8, 2 };
        expect_ids(s, "unk_id null, known text", t, "ab", 8, w, 4, 4);
        rc = textok_spm_encode(t, "a\xc3\xa9", ids, 8, &n, &full);
        tt_check(s, rc == TEXTOK_ERR_ARG && has(textok_last_error(), "unk_id"), "spm handmade: unk_id null, unknown text: %s",
                 textok_last_error());
        textok_spm_free(t);
        t = NULL;
    }
    free(j);
    /* a Precompiled charsmap made here: "a" -> "x" */
    cm = charsmap_b64(0);
    norm = (char *)malloc(strlen(cm) + 64);
    sprintf(norm, "{\"type\":\"Precompiled\",\"precompiled_charsmap\":\"%s\"}", cm);
    j = model_json(norm, "0", "false");
    rc = textok_spm_load_mem(&t, j, strlen(j), name);
    tt_check(s, rc == TEXTOK_OK, "spm handmade charsmap: load %s", rc ? textok_last_error() : "");
    if (t) {
        static const int32_t w2[] = { 1, 10, 8, 10, 2 };   /* "xb x": <s> _x b _x </s> (_ = U+2581) */
        expect_ids(s, "charsmap 'ab a' -> 'xb x'", t, "ab a", 8, w2, 5, 5);
        textok_spm_free(t);
        t = NULL;
    }
    free(j);
    free(norm);
    free(cm);
    cm = charsmap_b64(1000);   /* the entry points past the strings: an error, not a read */
    norm = (char *)malloc(strlen(cm) + 64);
    sprintf(norm, "{\"type\":\"Precompiled\",\"precompiled_charsmap\":\"%s\"}", cm);
    j = model_json(norm, "0", "false");
    rc = textok_spm_load_mem(&t, j, strlen(j), name);
    if (t) {
        static const int32_t w[] = { 1, 3, 8, 2 };   /* no 'a': no lookup reaches the bad entry */
        expect_ids(s, "bad charsmap, text without 'a'", t, "b", 8, w, 4, 4);
        rc = textok_spm_encode(t, "ba", ids, 8, &n, &full);
        tt_check(s, rc == TEXTOK_ERR_FORMAT && has(textok_last_error(), name) && has(textok_last_error(), "charsmap"),
                 "spm handmade: charsmap entry out of range: %s", textok_last_error());
        textok_spm_free(t);
        t = NULL;
    } else {
        tt_check(s, 0, "spm handmade: bad charsmap load %s", textok_last_error());
    }
    free(j);
    free(norm);
    free(cm);
}

/* ---- bad input ----------------------------------------------------------------------------- */

static void bad_files(tt_stats *s)
{
    char path[512], *j;
    unsigned char *ws, *big;
    size_t n_ws, n_big, cut;
    int rc, fails = 0, tried = 0;
    textok_spm *t = NULL;
    const char *name = "tokenizer_ws.json";
    snprintf(path, sizeof path, "%s/spm/tokenizer_ws.json", tt_golden_dir);
    ws = spm_slurp(path, &n_ws);
    snprintf(path, sizeof path, "%s/spm/tokenizer.json", tt_golden_dir);
    big = spm_slurp(path, &n_big);
    tt_check(s, ws && big, "spm bad files: read the golden tokenizers");
    if (!ws || !big) { free(ws); free(big); return; }

    /* another model type, or unsupported parts: ERR_UNSUPPORTED naming what was found */
    if ((j = replaced((char *)ws, "\"type\":\"Unigram\"", "\"type\":\"BPE\""))) {
        expect_load(s, "model.type BPE", j, strlen(j), name, TEXTOK_ERR_UNSUPPORTED, "\"BPE\"");
        free(j);
    }
    if ((j = replaced((char *)ws, "\"normalizer\":null", "\"normalizer\":{\"type\":\"NFKC\"}"))) {
        expect_load(s, "normalizer NFKC", j, strlen(j), name, TEXTOK_ERR_UNSUPPORTED, "NFKC");
        free(j);
    }
    if ((j = replaced((char *)ws, "\"normalizer\":null",
                      "\"normalizer\":{\"type\":\"Replace\",\"pattern\":{\"Regex\":\"\\\\s+\"},\"content\":\" \"}"))) {
        expect_load(s, "normalizer Replace regex \\s+", j, strlen(j), name, TEXTOK_ERR_UNSUPPORTED, "regex");
        free(j);
    }
    if ((j = replaced((char *)ws, "{\"type\":\"WhitespaceSplit\"}", "{\"type\":\"ByteLevel\"}"))) {
        expect_load(s, "pre_tokenizer ByteLevel", j, strlen(j), name, TEXTOK_ERR_UNSUPPORTED, "ByteLevel");
        free(j);
    }
    if ((j = replaced((char *)ws, "\"type\":\"TemplateProcessing\"", "\"type\":\"BertProcessing\""))) {
        expect_load(s, "post_processor BertProcessing", j, strlen(j), name, TEXTOK_ERR_UNSUPPORTED, "BertProcessing");
        free(j);
    }
    if ((j = replaced((char *)ws, "\"single_word\":false", "\"single_word\":true"))) {
        expect_load(s, "added token single_word", j, strlen(j), name, TEXTOK_ERR_UNSUPPORTED, "single_word");
        free(j);
    }
    /* malformed fields: ERR_FORMAT */
    if ((j = replaced((char *)ws, "\"unk_id\":2", "\"unk_id\":322"))) {
        expect_load(s, "unk_id out of range", j, strlen(j), name, TEXTOK_ERR_FORMAT, "unk_id");
        free(j);
    }
    if ((j = replaced((char *)ws, "\"unk_id\":2", "\"unk_id\":-1"))) {
        expect_load(s, "unk_id negative", j, strlen(j), name, TEXTOK_ERR_FORMAT, "unk_id");
        free(j);
    }
    if ((j = replaced((char *)ws, "\"unk_id\":2", "\"unk_id\":2.5"))) {
        expect_load(s, "unk_id not an integer", j, strlen(j), name, TEXTOK_ERR_FORMAT, "unk_id");
        free(j);
    }
    if ((j = replaced((char *)ws, "\"ids\":[1]", "\"ids\":[322]"))) {
        expect_load(s, "template id out of range", j, strlen(j), name, TEXTOK_ERR_FORMAT, "special_tokens");
        free(j);
    }
    if ((j = replaced((char *)ws, "[\"<pad>\",0.0]", "[\"<pad>\"]"))) {
        expect_load(s, "vocab entry not a pair", j, strlen(j), name, TEXTOK_ERR_FORMAT, "model.vocab[0]");
        free(j);
    }
    if ((j = replaced((char *)ws, "[\"<pad>\",0.0]", "[\"<pad>\",1e999]"))) {
        expect_load(s, "score out of range", j, strlen(j), name, TEXTOK_ERR_FORMAT, "out of range");
        free(j);
    }
    if ((j = replaced((char *)ws, "[\"<pad>\",0.0]", "[\"<p\\u0000d>\",0.0]"))) {
        expect_load(s, "piece with \\u0000", j, strlen(j), name, TEXTOK_ERR_FORMAT, "u0000");
        free(j);
    }
    if ((j = replaced((char *)ws, "[\"<pad>\",0.0]", "[\"<p\\ud800d>\",0.0]"))) {
        expect_load(s, "lone surrogate", j, strlen(j), name, TEXTOK_ERR_FORMAT, "surrogate");
        free(j);
    }
    if ((j = replaced((char *)ws, "[\"<pad>\",0.0]", "[\"<p\xff>\",0.0]"))) {
        expect_load(s, "invalid UTF-8 in a string", j, strlen(j), name, TEXTOK_ERR_FORMAT, "UTF-8");
        free(j);
    }
    if ((j = replaced((char *)ws, "[\"<pad>\",0.0]", "[\"<p\\qd>\",0.0]"))) {
        expect_load(s, "unknown escape", j, strlen(j), name, TEXTOK_ERR_FORMAT, "escape");
        free(j);
    }
    if ((j = replaced((char *)ws, "[\"<pad>\",0.0]", "[\"<p\td>\",0.0]"))) {
        expect_load(s, "raw control character", j, strlen(j), name, TEXTOK_ERR_FORMAT, "control");
        free(j);
    }
    if ((j = replaced((char *)ws, "[\"<pad>\",0.0]", "[\"<pad>\",00.5]"))) {
        expect_load(s, "leading zero", j, strlen(j), name, TEXTOK_ERR_FORMAT, "leading zeros");
        free(j);
    }
    if ((j = replaced((char *)ws, "[\"<pad>\",0.0]", "[\"<pad>\",0.0],"))) {   /* a trailing comma somewhere inside */
        char *j2 = replaced(j, "]]}}", "],]}}");
        if (j2) { expect_load(s, "trailing comma", j2, strlen(j2), name, TEXTOK_ERR_FORMAT, "byte"); free(j2); }
        free(j);
    }
    if ((j = replaced((char *)ws, "\"model\":{", "\"model\":{\"unk_id\":0,"))) {
        expect_load(s, "duplicate key model.unk_id", j, strlen(j), name, TEXTOK_ERR_FORMAT, "duplicate");
        free(j);
    }
    if ((j = replaced((char *)big, "\"precompiled_charsmap\":\"", "\"precompiled_charsmap\":\"*"))) {
        expect_load(s, "charsmap not base64", j, strlen(j), "tokenizer.json", TEXTOK_ERR_FORMAT, "base64");
        free(j);
    }
    if ((j = replaced((char *)big, "\"precompiled_charsmap\":\"", "\"precompiled_charsmap\":\"AAAA"))) {
        expect_load(s, "charsmap header does not fit", j, strlen(j), "tokenizer.json", TEXTOK_ERR_FORMAT, "trie size");
        free(j);
    }
    expect_load(s, "empty file", "", 0, name, TEXTOK_ERR_FORMAT, "byte 0");
    expect_load(s, "top level an array", "[]", 2, name, TEXTOK_ERR_FORMAT, "object");
    expect_load(s, "no model", "{}", 2, name, TEXTOK_ERR_FORMAT, "model");
    j = (char *)"{\"model\":{\"type\":\"Unigram\",\"vocab\":[]}}";
    expect_load(s, "empty vocab", j, strlen(j), name, TEXTOK_ERR_FORMAT, "empty");
    expect_load(s, "trailing garbage", "{} x", 4, name, TEXTOK_ERR_FORMAT, "byte 3");
    {   /* hostile sizes: 100000 nested arrays, a number with 100000 digits */
        static const char head[] = "{\"model\":{\"vocab\":[[\"a\",-", tail[] = "]],\"unk_id\":0}}";
        size_t n = 200000, k, h = sizeof head - 1;
        char *deep = (char *)malloc(n + 64);
        memcpy(deep, "{\"a\":", 5);
        for (k = 0; k < n / 2; k++) deep[5 + k] = '[';
        for (k = 0; k < n / 2; k++) deep[5 + n / 2 + k] = ']';
        deep[5 + n] = '}';
        expect_load(s, "100000 nested arrays", deep, n + 6, name, TEXTOK_ERR_FORMAT, "nested deeper");
        memcpy(deep, head, h);
        for (k = 0; k < n; k++) deep[h + k] = (char)('1' + k % 9);
        memcpy(deep + h + n, tail, sizeof tail);
        expect_load(s, "score with 200000 digits", deep, strlen(deep), name, TEXTOK_ERR_FORMAT, "out of range");
        deep[h] = '0';
        deep[h + 1] = '.';
        expect_load(s, "score 0.<199998 digits> (as serde_json)", deep, strlen(deep), name, TEXTOK_OK, NULL);
        free(deep);
    }
    rc = textok_spm_load(&t, "tests/golden/spm/does_not_exist.json");
    tt_check(s, rc == TEXTOK_ERR_IO && t == NULL && has(textok_last_error(), "does_not_exist.json"),
             "spm bad file: missing file %s", textok_last_error());

    /* truncated at every cut point of the small file, and at 300 of the large one: always an
       error with the file name and a byte offset, never a crash (ASan runs this too); the
       newline at the end is the only byte that may go */
    for (cut = 0; cut + 1 < n_ws; cut++) {
        rc = textok_spm_load_mem(&t, (const char *)ws, cut, name);
        tried++;
        if (rc != TEXTOK_ERR_FORMAT || t || !has(textok_last_error(), name) || !has(textok_last_error(), "byte")) {
            if (fails++ < 3) printf("  cut %zu: %s %s\n", cut, status_str(rc), textok_last_error());
            textok_spm_free(t);
            t = NULL;
        }
    }
    for (cut = 0; cut + 1 < n_big; cut += n_big / 300 + 1) {
        rc = textok_spm_load_mem(&t, (const char *)big, cut, "tokenizer.json");
        tried++;
        if (rc != TEXTOK_ERR_FORMAT || t || !has(textok_last_error(), "tokenizer.json")) {
            if (fails++ < 3) printf("  cut %zu of tokenizer.json: %s %s\n", cut, status_str(rc), textok_last_error());
            textok_spm_free(t);
            t = NULL;
        }
    }
    rc = textok_spm_load_mem(&t, (const char *)ws, n_ws - 1, name);
    tt_check(s, fails == 0 && rc == TEXTOK_OK, "spm bad file: %d truncations fail with ERR_FORMAT and a byte offset, "
             "%d do not; without the final newline it loads", tried, fails);
    textok_spm_free(t);
    t = NULL;
    free(ws);
    free(big);
}

/* Damaged files that still parse: random bytes flipped in the small file, random base64 digits
   changed in the charsmap of the large one (so its double array and strings are garbage).
   Loading and encoding must each end in OK or an error status, never a crash or a read out of
   bounds (the ASan build runs this too). Deterministic: a fixed xorshift stream. */
static void damaged(tt_stats *s)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    static const char *texts[] = { "a photo of a dog", "\xef\xbc\xa4\xef\xbc\xaf\xef\xbc\xa7 \xe2\x91\xa0\xc2\xbd\xef\xac\x81",
                                   "cafe\xcc\x81 \xe6\x9d\xb1\xe4\xba\xac </s> <pad>x", "  a\t\nb  ", "",
                                   "\xf0\x9f\x90\xb6\xf0\x9f\xa6\x9c\xd0\xb6 e\xcc\x81\xcc\xa3" };
    uint64_t x = 0x9e3779b97f4a7c15ull;
    char path[512], *m, *b64;
    unsigned char *src[2];
    size_t n[2], b0 = 0, b1 = 0;
    int f, it, k, t, loaded = 0, refused = 0, bad = 0, enc_err = 0;
    snprintf(path, sizeof path, "%s/spm/tokenizer_ws.json", tt_golden_dir);
    src[0] = spm_slurp(path, &n[0]);
    snprintf(path, sizeof path, "%s/spm/tokenizer.json", tt_golden_dir);
    src[1] = spm_slurp(path, &n[1]);
    if (src[1] && (b64 = strstr((char *)src[1], "\"precompiled_charsmap\":\"")) != NULL) {
        b0 = (size_t)(b64 - (char *)src[1]) + 24 + 8;   /* keep the trie size intact */
        b1 = (size_t)(strchr((char *)src[1] + b0, '"') - (char *)src[1]);
    }
    for (f = 0; f < 2; f++) {
        if (!src[f] || (f == 1 && b1 <= b0)) { bad++; continue; }
        m = (char *)malloc(n[f]);
        for (it = 0; it < (f ? 40 : 600); it++) {
            textok_spm *tok = NULL;
            int rc, edits = 1 + (int)(x % 8);
            memcpy(m, src[f], n[f]);
            for (k = 0; k < edits; k++) {
                size_t at;
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                if (f == 0) { at = (size_t)(x % n[f]); m[at] = (char)(m[at] ^ (1 << (x >> 40) % 8)); }
                else { at = b0 + (size_t)(x % (b1 - b0)); m[at] = tab[(x >> 40) % 64]; }
            }
            rc = textok_spm_load_mem(&tok, m, n[f], "damaged.json");
            if (rc == TEXTOK_OK) {
                loaded++;
                for (t = 0; t < (int)(sizeof texts / sizeof texts[0]); t++) {
                    int32_t ids[64];
                    int nn, nf, rc2 = textok_spm_encode(tok, texts[t], ids, 64, &nn, &nf);
                    if (rc2 == TEXTOK_ERR_FORMAT || rc2 == TEXTOK_ERR_ARG) enc_err++;
                    else if (rc2 != TEXTOK_OK) bad++;
                }
                textok_spm_free(tok);
            } else if (rc == TEXTOK_ERR_FORMAT || rc == TEXTOK_ERR_UNSUPPORTED) {
                if (!has(textok_last_error(), "damaged.json")) bad++;
                refused++;
            } else {
                bad++;
            }
        }
        free(m);
    }
    tt_check(s, bad == 0 && loaded > 0 && refused > 0, "spm damaged files: %d loaded, %d refused, %d encode errors, "
             "%d unexpected", loaded, refused, enc_err, bad);
    free(src[0]);
    free(src[1]);
}

static void bad_text(tt_stats *s)
{
    static const struct { const char *text, *what; int at; } bad[] = {
        { "\xff", "0xff", 0 }, { "ab\xc3", "truncated 2-byte", 2 }, { "a\xc0\xaf", "overlong '/'", 1 },
        { "a b\xed\xa0\x80", "UTF-16 surrogate", 3 }, { "\xf4\x90\x80\x80", "above U+10FFFF", 0 },
        { "dog \xf0\x9f\x90", "truncated 4-byte", 4 }, { "caf\xc3\xa9\x80", "stray continuation", 5 },
    };
    char path[512];
    textok_spm *t = NULL;
    int32_t ids[8];
    int n, full, rc, i;
    snprintf(path, sizeof path, "%s/spm/tokenizer.json", tt_golden_dir);
    if (textok_spm_load(&t, path) != TEXTOK_OK) { tt_check(s, 0, "spm bad text: load %s", textok_last_error()); return; }
    for (i = 0; i < (int)(sizeof bad / sizeof bad[0]); i++) {
        char at[32];
        n = full = -7;
        rc = textok_spm_encode(t, bad[i].text, ids, 8, &n, &full);
        snprintf(at, sizeof at, "byte %d", bad[i].at);
        tt_check(s, rc == TEXTOK_ERR_ARG && n == 0 && full == 0 && has(textok_last_error(), at) &&
                 has(textok_last_error(), "tokenizer.json"), "spm bad text: %-18s %s", bad[i].what, textok_last_error());
    }
    rc = textok_spm_encode(t, "a dog", ids, 0, &n, &full);
    tt_check(s, rc == TEXTOK_ERR_ARG && has(textok_last_error(), "max_len"), "spm bad text: max_len 0: %s", textok_last_error());
    rc = textok_spm_encode(t, "a dog", ids, -5, &n, &full);
    tt_check(s, rc == TEXTOK_ERR_ARG, "spm bad text: max_len -5: %s", textok_last_error());
    rc = textok_spm_encode(t, NULL, ids, 8, &n, &full);
    tt_check(s, rc == TEXTOK_ERR_ARG, "spm bad text: text NULL: %s", textok_last_error());
    rc = textok_spm_encode(t, "a", NULL, 8, &n, &full);
    tt_check(s, rc == TEXTOK_ERR_ARG, "spm bad text: ids NULL: %s", textok_last_error());
    rc = textok_spm_encode(t, "a dog", ids, 1, &n, NULL);
    tt_check(s, rc == TEXTOK_OK && n == 1 && ids[0] == 1, "spm bad text: max_len 1, n_full NULL: just </s>");
    {   /* a long text of unknown characters and a long word: one id each way, no blowup */
        size_t k, len = 300000;
        char *big = (char *)malloc(len + 1);
        for (k = 0; k < len; k += 2) { big[k] = '\xd0'; big[k + 1] = '\xb6'; }   /* 150000 x U+0436 */
        big[len] = 0;
        rc = textok_spm_encode(t, big, ids, 8, &n, &full);
        tt_check(s, rc == TEXTOK_OK && n == 3 && full == 3 && ids[1] == 2,
                 "spm long text: 150000 unknown characters -> [U+2581, <unk>, </s>] (n %d n_full %d)", n, full);
        for (k = 0; k < len; k++) big[k] = "abcdefgh "[k % 9];
        rc = textok_spm_encode(t, big, ids, 8, &n, &full);
        tt_check(s, rc == TEXTOK_OK && n == 8 && full > 30000, "spm long text: 300000 bytes, n_full %d", full);
        free(big);
    }
    textok_spm_free(t);
    textok_spm_free(NULL);
}

void test_spm(tt_stats *s)
{
    golden_cases(s);
    handmade(s);
    bad_files(s);
    damaged(s);
    bad_text(s);
}
