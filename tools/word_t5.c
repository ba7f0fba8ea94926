/* word_t5: the text encoder of the shipped default models: a small T5-architecture encoder with
   frozen, seeded random weights, and a word-level vocabulary built from a dataset's captions.

     build/word_t5 --data data/emoji64.safetensors --out-t5 weights/word_t5.safetensors \
                   --out-spm weights/word_t5_tokenizer.json [--seed 1] [--d-model 128] [--layers 2]

   WHY: the TexTok paper conditions on a pretrained T5, whose weights cannot be bundled here. A
   frozen random encoder still gives every caption its own embedding sequence, which is all the
   tokenizer and the generator can use at this scale: it is a random-feature encoder, not a
   language model, and says nothing about words it has not seen. Any converted T5 swaps in with
   --text-encoder/--spm (build/convert --t5) after retraining.

   THE VOCABULARY (a Hugging Face tokenizer.json, Unigram, which textok_spm_load reads as it reads
   T5's): <pad> 0, </s> 1, <unk> 2; then "▁" and ","; then one piece "▁word" per distinct word of
   the captions (split on spaces, a trailing comma cut off into its own piece), most frequent
   first (ties by byte order); then every code point of the captions as a piece. Scores: words -3,
   "," -4, single code points and "▁" -10, so a known word is always one piece and an unknown one
   falls back to "▁" + code points (never <unk> unless a code point is new). Pre-tokenizer:
   WhitespaceSplit + Metaspace; post-processor "$A </s>"; no normalizer (the captions are lower
   case already).

   THE ENCODER: textok's T5 layout (textok_t5_tensor_specs), gated-GELU (v1.1 / flan style),
   d_model 128, d_kv 32, 4 heads, d_ff 256, 2 layers, 32 buckets, max distance 128, eps 1e-6,
   initialised as Hugging Face's T5PreTrainedModel._init_weights does with factor 1: shared
   N(0, 1); q N(0, (d_model d_kv)^-1/2); k, v N(0, d_model^-1/2); o N(0, (heads d_kv)^-1/2);
   the relative-position table N(0, d_model^-1/2); wi_0, wi_1 N(0, d_model^-1/2); wo N(0,
   d_ff^-1/2); every RMSNorm weight 1. Drawn with textok_rng from --seed in file order, stored as
   F16 (the training runs read this very file, so nothing is lost to the rounding). */
#define TEXTOK_IMPLEMENTATION
#include "textok.h"
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void die(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "word_t5: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) die("out of memory (%zu bytes)", n);
    return p;
}

typedef struct piece { char *s; int count; } piece;
static piece *words, *chars;
static int n_words, n_chars, cap_words, cap_chars;

static void add(piece **arr, int *n, int *cap, const char *s, size_t len)
{
    int i;
    for (i = 0; i < *n; i++)
        if (strlen((*arr)[i].s) == len && !memcmp((*arr)[i].s, s, len)) { (*arr)[i].count++; return; }
    if (*n == *cap) {
        *cap = *cap ? 2 * *cap : 256;
        *arr = (piece *)realloc(*arr, (size_t)*cap * sizeof(piece));
        if (!*arr) die("out of memory");
    }
    (*arr)[*n].s = (char *)xmalloc(len + 1);
    memcpy((*arr)[*n].s, s, len);
    (*arr)[*n].s[len] = 0;
    (*arr)[*n].count = 1;
    (*n)++;
}

static int by_count(const void *a, const void *b)
{
    const piece *x = (const piece *)a, *y = (const piece *)b;
    return x->count != y->count ? y->count - x->count : strcmp(x->s, y->s);
}
static int by_bytes(const void *a, const void *b) { return strcmp(((const piece *)a)->s, ((const piece *)b)->s); }

/* JSON string with the escapes a tokenizer.json needs */
static void jstr(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        const unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

static void write_tokenizer(const char *path)
{
    static const char *const special[3] = { "<pad>", "</s>", "<unk>" };
    char tmp[4096];
    FILE *f;
    int i, bad;
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (!(f = fopen(tmp, "wb"))) die("cannot create '%s'", tmp);
    fputs("{\"version\": \"1.0\", \"truncation\": null, \"padding\": null, \"added_tokens\": [", f);
    for (i = 0; i < 3; i++)
        fprintf(f, "%s{\"id\": %d, \"content\": \"%s\", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, "
                   "\"normalized\": false, \"special\": true}", i ? ", " : "", i, special[i]);
    fputs("], \"normalizer\": null, \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": "
          "\"WhitespaceSplit\"}, {\"type\": \"Metaspace\", \"replacement\": \"\xe2\x96\x81\", \"prepend_scheme\": \"always\", "
          "\"split\": true}]}, \"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": [{\"Sequence\": {\"id\": \"A\", "
          "\"type_id\": 0}}, {\"SpecialToken\": {\"id\": \"</s>\", \"type_id\": 0}}], \"pair\": [{\"Sequence\": {\"id\": \"A\", "
          "\"type_id\": 0}}, {\"SpecialToken\": {\"id\": \"</s>\", \"type_id\": 0}}, {\"Sequence\": {\"id\": \"B\", \"type_id\": 0}}, "
          "{\"SpecialToken\": {\"id\": \"</s>\", \"type_id\": 0}}], \"special_tokens\": {\"</s>\": {\"id\": \"</s>\", \"ids\": [1], "
          "\"tokens\": [\"</s>\"]}}}, \"decoder\": {\"type\": \"Metaspace\", \"replacement\": \"\xe2\x96\x81\", \"prepend_scheme\": "
          "\"always\", \"split\": true}, \"model\": {\"type\": \"Unigram\", \"unk_id\": 2, \"vocab\": [", f);
    fputs("[\"<pad>\", 0.0], [\"</s>\", 0.0], [\"<unk>\", 0.0], [\"\xe2\x96\x81\", -10.0], [\",\", -4.0]", f);
    for (i = 0; i < n_words; i++) { fputs(", [", f); jstr(f, words[i].s); fputs(", -3.0]", f); }
    for (i = 0; i < n_chars; i++) { fputs(", [", f); jstr(f, chars[i].s); fputs(", -10.0]", f); }
    fputs("]}}\n", f);
    bad = ferror(f);
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path) != 0) { remove(tmp); die("cannot write '%s'", path); }
}

int main(int argc, char **argv)
{
    const char *data = NULL, *out_t5 = NULL, *out_spm = NULL;
    uint64_t seed = 1;
    textok_t5_config cfg;
    textok_safetensors st;
    const textok_st_tensor *tc;
    const unsigned char *cap;
    int i, n_specs, n_caps = 0;
    size_t o;
    memset(&cfg, 0, sizeof cfg);
    cfg.d_model = 128; cfg.d_kv = 32; cfg.heads = 4; cfg.d_ff = 256; cfg.layers = 2;
    cfg.num_buckets = 32; cfg.max_distance = 128; cfg.gated = 1; cfg.gelu_tanh = 1; cfg.eps = 1e-6f;
    for (i = 1; i < argc; i += 2) {   /* every flag takes a value */
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) die("'%s' needs a value", a);
        if (!strcmp(a, "--data")) data = v;
        else if (!strcmp(a, "--out-t5")) out_t5 = v;
        else if (!strcmp(a, "--out-spm")) out_spm = v;
        else if (!strcmp(a, "--seed")) seed = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--d-model")) cfg.d_model = atoi(v);
        else if (!strcmp(a, "--layers")) cfg.layers = atoi(v);
        else die("unknown flag '%s' (usage: word_t5 --data FILE --out-t5 T5.safetensors --out-spm tokenizer.json "
                 "[--seed N] [--d-model D] [--layers L])", a);
    }
    if (!data || !out_t5 || !out_spm) die("usage: word_t5 --data FILE --out-t5 T5.safetensors --out-spm tokenizer.json");
    cfg.heads = cfg.d_model / cfg.d_kv > 0 ? cfg.d_model / cfg.d_kv : 1;
    cfg.d_ff = 2 * cfg.d_model;

    /* the captions: every split (the vocabulary is a word list, not training) */
    if (textok_st_open(&st, data) != TEXTOK_OK) die("%s", textok_last_error());
    if (!(tc = textok_st_find(&st, "captions")) || tc->dtype != TEXTOK_DTYPE_U8 || tc->ndim != 1)
        die("'%s' has no U8 'captions' tensor: not a dataset file (tools/get_emoji.sh makes one)", data);
    cap = st.buffer + tc->offset;
    for (o = 0; o < tc->numel;) {
        size_t end = o, w;
        while (end < tc->numel && cap[end]) end++;
        if (end == tc->numel) die("'%s': the last caption has no NUL", data);
        for (w = o; w < end;) {
            size_t e = w, p;
            char buf[512];
            while (e < end && cap[e] != ' ') e++;
            if (e > w) {
                size_t len = e - w, comma = cap[e - 1] == ',';
                if (len - comma > 0 && len - comma + 3 < sizeof buf) {
                    memcpy(buf, "\xe2\x96\x81", 3);
                    memcpy(buf + 3, cap + w, len - comma);
                    add(&words, &n_words, &cap_words, buf, len - comma + 3);
                }
                for (p = w; p < e;) {   /* code points */
                    size_t k = 1;
                    if (cap[p] >= 0xF0) k = 4; else if (cap[p] >= 0xE0) k = 3; else if (cap[p] >= 0xC0) k = 2;
                    if (p + k > e) die("'%s': invalid UTF-8 in a caption at byte %zu", data, p);
                    if (!(k == 1 && (cap[p] == ',' ))) add(&chars, &n_chars, &cap_chars, (const char *)cap + p, k);
                    p += k;
                }
            }
            w = e + 1;
        }
        n_caps++;
        o = end + 1;
    }
    qsort(words, (size_t)n_words, sizeof(piece), by_count);
    qsort(chars, (size_t)n_chars, sizeof(piece), by_bytes);
    cfg.vocab = 5 + n_words + n_chars;
    write_tokenizer(out_spm);
    printf("%s: %d captions, %d words, %d code points -> vocabulary of %d pieces\n", out_spm, n_caps, n_words, n_chars,
           cfg.vocab);

    /* the encoder */
    if (textok_t5_config_check(&cfg) != TEXTOK_OK) die("%s", textok_last_error());
    n_specs = textok_t5_tensor_specs(&cfg, NULL, 0);
    {
        textok_tensor_spec *specs = (textok_tensor_spec *)xmalloc((size_t)n_specs * sizeof *specs);
        textok_st_entry *e = (textok_st_entry *)xmalloc((size_t)n_specs * sizeof *e);
        float **bufs = (float **)xmalloc((size_t)n_specs * sizeof(float *));
        const char *kv[64];
        char mbuf[2048];
        int n_meta, d;
        size_t total = 0;
        textok_rng rng;
        textok_rng_seed(&rng, seed);
        textok_t5_tensor_specs(&cfg, specs, n_specs);
        n_meta = textok_t5_config_to_meta(&cfg, kv, 30, mbuf, sizeof mbuf);
        if (n_meta < 0) die("%s", textok_last_error());
        for (i = 0; i < n_specs; i++) {
            const char *nm = specs[i].name;
            size_t n = 1;
            float std = 1.0f;
            for (d = 0; d < specs[i].ndim; d++) n *= (size_t)specs[i].shape[d];
            bufs[i] = (float *)xmalloc(n * sizeof(float));
            if (strstr(nm, "layer_norm")) {
                size_t k;
                for (k = 0; k < n; k++) bufs[i][k] = 1.0f;
            } else {
                if (!strcmp(nm, "shared.weight")) std = 1.0f;
                else if (strstr(nm, ".q.weight")) std = 1.0f / sqrtf((float)cfg.d_model * cfg.d_kv);
                else if (strstr(nm, ".o.weight")) std = 1.0f / sqrtf((float)cfg.heads * cfg.d_kv);
                else if (strstr(nm, ".wo.weight")) std = 1.0f / sqrtf((float)cfg.d_ff);
                else std = 1.0f / sqrtf((float)cfg.d_model);   /* k, v, relative bias, wi_0, wi_1 */
                textok_rng_fill_normal(&rng, bufs[i], n, 0.0f, std);
            }
            memset(&e[i], 0, sizeof e[i]);
            e[i].name = nm; e[i].data = bufs[i]; e[i].ndim = specs[i].ndim;
            for (d = 0; d < specs[i].ndim; d++) e[i].shape[d] = specs[i].shape[d];
            total += n;
        }
        if (textok_st_save(out_t5, e, n_specs, kv, n_meta, TEXTOK_DTYPE_F16) != TEXTOK_OK) die("%s", textok_last_error());
        printf("%s: frozen random T5 encoder (seed %llu): d_model %d, %d heads of %d, d_ff %d, %d layers, vocab %d, "
               "%zu parameters, F16\n", out_t5, (unsigned long long)seed, cfg.d_model, cfg.heads, cfg.d_kv, cfg.d_ff,
               cfg.layers, cfg.vocab, total);
        for (i = 0; i < n_specs; i++) free(bufs[i]);
        free(bufs); free(e); free(specs);
    }
    textok_st_close(&st);
    for (i = 0; i < n_words; i++) free(words[i].s);
    for (i = 0; i < n_chars; i++) free(chars[i].s);
    free(words); free(chars);
    return 0;
}
