/* The T5 text encoder against the PyTorch reference (tools/t5_ref.py, written from
   textok-paper.md 3, through tools/gen_golden_t5.py). For each tiny model in tests/golden/t5/ -
   t5_gated (v1.1/flan: gated tanh-GELU, inner width 48 != d_model 40) and t5_v10 (v1.0 ReLU,
   16 buckets, max_distance 40) - the Hugging Face file as published (BF16 seq2seq file with
   decoder tensors / F32 encoder file whose embedding is encoder.embed_tokens.weight) is loaded
   with the config from the reference file's metadata, and:
     - a padded batch (mask) and a full batch (no mask) within 1e-4 relative L2 of the float64
       reference (the bound; ~1e-7 measured), on both kernel tables and with max_batch 1
       and 2 (the same bits on the reference table, 1e-6 on the fast one);
     - t5_gated with the exact erf GELU (gelu_tanh = 0) against its own reference output;
     - the real-token rows of the padded batch equal a run of those tokens alone (1e-6);
     - a textok-layout file written with textok_st_save + textok_t5_config_to_meta loads with
       textok_t5_load and gives the same bits as the direct load;
     - bad calls, configs that disagree with the file, broken files and metadata fail with a
       message naming the culprit. */
#include "check.h"
#include "textok.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TT_TOL_T5   1e-4   /* the bound; ~1e-7 measured (fp32 against float64) */
#define TT_TOL_SAME 1e-6   /* padded vs unpadded: the same fp32 model, only the masked keys and
                              the GEMM shapes differ (~1e-7 measured, 0 on the reference table) */

typedef struct {
    textok_safetensors w, ref;
    textok_t5_config cfg;
    const char *name;
    int Bp, Lp, Bs, Ls, d;
    int32_t *ids_pad, *ids;
    unsigned char *mask_pad;
    int *n_real;                 /* (Bp) real tokens per padded row */
    float *out_pad, *out, *out_exact;
} tt_t5case;

static float *tt5_read(tt_stats *s, const textok_safetensors *st, const char *name, int ndim, int64_t *shape)
{
    const textok_st_tensor *t = textok_st_find(st, name);
    float *x;
    int i;
    if (!t || t->ndim != ndim) {
        tt_check(s, 0, "%s: tensor '%s' with %d dims", st->path, name, ndim);
        return NULL;
    }
    for (i = 0; i < ndim; i++) shape[i] = t->shape[i];
    x = (float *)malloc(t->numel * sizeof(float));
    if (!x || textok_st_read_f32(st, t, x, t->numel) != TEXTOK_OK) { free(x); return NULL; }
    return x;
}

static void tt5_close(tt_t5case *c)
{
    textok_st_close(&c->w);
    textok_st_close(&c->ref);
    free(c->ids_pad); free(c->ids); free(c->mask_pad); free(c->n_real);
    free(c->out_pad); free(c->out); free(c->out_exact);
}

static int tt5_open(tt_stats *s, tt_t5case *c, const char *name)
{
    char path[512];
    int64_t sh[3];
    float *f;
    int i, j;
    memset(c, 0, sizeof *c);
    c->name = name;
    snprintf(path, sizeof path, "%s/t5/%s.safetensors", tt_golden_dir, name);
    if (textok_st_open(&c->w, path) != TEXTOK_OK) { tt_check(s, 0, "open %s: %s", path, textok_last_error()); return 0; }
    snprintf(path, sizeof path, "%s/t5/%s_ref.safetensors", tt_golden_dir, name);
    if (textok_st_open(&c->ref, path) != TEXTOK_OK) { tt_check(s, 0, "open %s: %s", path, textok_last_error()); return 0; }
    if (textok_t5_config_from_meta(&c->cfg, &c->ref) != TEXTOK_OK) {
        tt_check(s, 0, "%s: config from metadata: %s", path, textok_last_error());
        return 0;
    }
    c->d = c->cfg.d_model;
    if (!(f = tt5_read(s, &c->ref, "ids_pad", 2, sh))) return 0;
    c->Bp = (int)sh[0]; c->Lp = (int)sh[1];
    c->ids_pad = (int32_t *)malloc((size_t)c->Bp * c->Lp * sizeof(int32_t));
    for (i = 0; i < c->Bp * c->Lp; i++) c->ids_pad[i] = (int32_t)f[i];
    free(f);
    if (!(f = tt5_read(s, &c->ref, "mask_pad", 2, sh))) return 0;
    c->mask_pad = (unsigned char *)malloc((size_t)c->Bp * c->Lp);
    c->n_real = (int *)calloc((size_t)c->Bp, sizeof(int));
    for (i = 0; i < c->Bp; i++)
        for (j = 0; j < c->Lp; j++) {
            c->mask_pad[i * c->Lp + j] = f[i * c->Lp + j] != 0.0f;
            c->n_real[i] += c->mask_pad[i * c->Lp + j];
        }
    free(f);
    if (!(f = tt5_read(s, &c->ref, "ids", 2, sh))) return 0;
    c->Bs = (int)sh[0]; c->Ls = (int)sh[1];
    c->ids = (int32_t *)malloc((size_t)c->Bs * c->Ls * sizeof(int32_t));
    for (i = 0; i < c->Bs * c->Ls; i++) c->ids[i] = (int32_t)f[i];
    free(f);
    c->out_pad = tt5_read(s, &c->ref, "out_pad", 3, sh);
    c->out = tt5_read(s, &c->ref, "out", 3, sh);
    if (c->cfg.gated) c->out_exact = tt5_read(s, &c->ref, "out_gelu_exact", 3, sh);
    return c->out_pad && c->out && (!c->cfg.gated || c->out_exact);
}

/* Runs both batches with one table and max_batch; returns the padded output (caller frees). */
static float *tt5_run(tt_stats *s, tt_t5case *c, const textok_kernels *kt, int max_batch)
{
    textok_params p = textok_default_params();
    textok_t5 *t = NULL;
    size_t np = (size_t)c->Bp * c->Lp * c->d, ns = (size_t)c->Bs * c->Ls * c->d;
    float *pad = (float *)calloc(np, sizeof(float)), *plain = (float *)calloc(ns, sizeof(float));
    float *alone = (float *)calloc((size_t)c->Lp * c->d, sizeof(float));
    char what[160];
    int st, b;
    p.kernels = kt;
    p.max_batch = max_batch;
    st = textok_t5_load_st(&t, &c->w, &c->cfg, &p);
    tt_check(s, st == TEXTOK_OK, "t5 %s [%s, max_batch %d]: load the Hugging Face file (%lu params) %s", c->name, kt->name,
             max_batch, (unsigned long)textok_t5_num_params(t), st == TEXTOK_OK ? "" : textok_last_error());
    if (st != TEXTOK_OK || !pad || !plain || !alone) goto fail;
    /* the short batch first: the padded one (longer L) must then regrow the arena */
    st = textok_t5_encode(t, c->ids, NULL, c->Bs, c->Ls, plain);
    tt_check(s, st == TEXTOK_OK, "t5 %s [%s]: encode without a mask %s", c->name, kt->name, st == TEXTOK_OK ? "" : textok_last_error());
    snprintf(what, sizeof what, "t5 %s [%s, mb %d] out (no mask)", c->name, kt->name, max_batch);
    if (st == TEXTOK_OK) tt_compare(s, what, plain, c->out, ns, TT_TOL_T5);
    st = textok_t5_encode(t, c->ids_pad, c->mask_pad, c->Bp, c->Lp, pad);
    tt_check(s, st == TEXTOK_OK, "t5 %s [%s]: encode a padded batch %s", c->name, kt->name, st == TEXTOK_OK ? "" : textok_last_error());
    if (st != TEXTOK_OK) goto fail;
    snprintf(what, sizeof what, "t5 %s [%s, mb %d] out_pad (mask)", c->name, kt->name, max_batch);
    tt_compare(s, what, pad, c->out_pad, np, TT_TOL_T5);
    /* each padded row's real tokens alone, without a mask, give the same rows */
    for (b = 0; b < c->Bp; b++) {
        st = textok_t5_encode(t, c->ids_pad + (size_t)b * c->Lp, NULL, 1, c->n_real[b], alone);
        snprintf(what, sizeof what, "t5 %s [%s] row %d: %d tokens alone = padded", c->name, kt->name, b, c->n_real[b]);
        if (st == TEXTOK_OK) tt_compare(s, what, alone, pad + (size_t)b * c->Lp * c->d, (size_t)c->n_real[b] * c->d, TT_TOL_SAME);
        else tt_check(s, 0, "%s: %s", what, textok_last_error());
    }
    textok_t5_free(t);
    t = NULL;
    if (c->cfg.gated) {   /* the old flan-t5-xxl configs: gated with the exact erf GELU */
        textok_t5_config ex = c->cfg;
        ex.gelu_tanh = 0;
        st = textok_t5_load_st(&t, &c->w, &ex, &p);
        if (st == TEXTOK_OK) st = textok_t5_encode(t, c->ids, NULL, c->Bs, c->Ls, plain);
        snprintf(what, sizeof what, "t5 %s [%s, mb %d] exact-GELU out", c->name, kt->name, max_batch);
        if (st == TEXTOK_OK) tt_compare(s, what, plain, c->out_exact, ns, TT_TOL_T5);
        else tt_check(s, 0, "%s: %s", what, textok_last_error());
        textok_t5_free(t);
    }
    free(plain); free(alone);
    return pad;
fail:
    textok_t5_free(t);
    free(pad); free(plain); free(alone);
    return NULL;
}

/* The file build/convert --t5 would write, made with the library's writer: specs order, F32,
   the config as metadata. Returns 1 if written. */
static int tt5_write_layout(tt_stats *s, tt_t5case *c, const char *path, const char *drop)
{
    textok_tensor_spec *specs;
    textok_st_entry *e;
    float **data;
    const char *kv[64];
    char buf[1024];
    int n, i, j, m = 0, n_meta, ok = 1;
    n = textok_t5_tensor_specs(&c->cfg, NULL, 0);
    specs = (textok_tensor_spec *)calloc((size_t)n, sizeof *specs);
    e = (textok_st_entry *)calloc((size_t)n, sizeof *e);
    data = (float **)calloc((size_t)n, sizeof *data);
    if (!specs || !e || !data || textok_t5_tensor_specs(&c->cfg, specs, n) != n) ok = 0;
    for (i = 0; ok && i < n; i++) {
        const textok_st_tensor *t = textok_st_find(&c->w, specs[i].name);
        if (drop && !strcmp(specs[i].name, drop)) continue;
        if (!t && i == 0) t = textok_st_find(&c->w, "encoder.embed_tokens.weight");
        if (!t || !(data[m] = (float *)malloc(t->numel * sizeof(float))) ||
            textok_st_read_f32(&c->w, t, data[m], t->numel) != TEXTOK_OK) { ok = 0; break; }
        e[m].name = specs[i].name;
        e[m].data = data[m];
        e[m].ndim = specs[i].ndim;
        for (j = 0; j < specs[i].ndim; j++) e[m].shape[j] = specs[i].shape[j];
        m++;
    }
    n_meta = ok ? textok_t5_config_to_meta(&c->cfg, kv, 32, buf, sizeof buf) : -1;
    if (n_meta < 0 || textok_st_save(path, e, m, kv, n_meta, TEXTOK_DTYPE_F32) != TEXTOK_OK) ok = 0;
    if (!ok) tt_check(s, 0, "t5 %s: write %s: %s", c->name, path, textok_last_error());
    for (i = 0; i < m; i++) free(data[i]);
    free(data); free(e); free(specs);
    return ok;
}

static void tt5_layout(tt_stats *s, tt_t5case *c, const float *want)
{
    char path[256];
    textok_t5 *t = NULL;
    const textok_t5_config *got;
    size_t np = (size_t)c->Bp * c->Lp * c->d;
    float *pad = (float *)calloc(np, sizeof(float));
    int st;
    textok_params p = textok_default_params();
    textok_kernels fast = textok_cpu_kernels(0);
    p.kernels = &fast;
    p.max_batch = 2;
    snprintf(path, sizeof path, "build/tt_t5_%s.safetensors", c->name);
    if (!pad || !tt5_write_layout(s, c, path, NULL)) { free(pad); return; }
    st = textok_t5_load(&t, path, &p);
    tt_check(s, st == TEXTOK_OK, "t5 %s: textok_t5_load of the textok-layout file %s", c->name, st == TEXTOK_OK ? "" : textok_last_error());
    if (st == TEXTOK_OK) {
        got = textok_t5_get_config(t);
        tt_check(s, memcmp(got, &c->cfg, sizeof *got) == 0, "t5 %s: config round trip through the metadata (eps %.9g)",
                 c->name, (double)got->eps);
        st = textok_t5_encode(t, c->ids_pad, c->mask_pad, c->Bp, c->Lp, pad);
        tt_check(s, st == TEXTOK_OK && memcmp(pad, want, np * sizeof(float)) == 0,
                 "t5 %s: the textok-layout file gives the same bits as the Hugging Face file %s", c->name,
                 st == TEXTOK_OK ? "" : textok_last_error());
    }
    textok_t5_free(t);
    /* a file without one tensor: refused, naming it */
    if (tt5_write_layout(s, c, path, "encoder.final_layer_norm.weight")) {
        st = textok_t5_load(&t, path, NULL);
        tt_check(s, st == TEXTOK_ERR_NOT_FOUND && !t && strstr(textok_last_error(), "encoder.final_layer_norm.weight"),
                 "t5 %s: a file without encoder.final_layer_norm.weight is refused (%s)", c->name, textok_last_error());
    }
    remove(path);
    free(pad);
}

static void tt5_bad_calls(tt_stats *s, tt_t5case *c)
{
    textok_t5 *t = NULL;
    textok_t5_config bad;
    int32_t ids[8] = { 1, 2, 3, 4, 5, 6, 7, 1 };
    unsigned char mask[8] = { 1, 1, 1, 1, 1, 1, 0, 0 };
    float out[8 * 64];
    int st;
    if (c->d > 64) return;
    /* configs that disagree with the file */
    bad = c->cfg; bad.layers += 1;
    st = textok_t5_load_st(&t, &c->w, &bad, NULL);
    tt_check(s, st == TEXTOK_ERR_NOT_FOUND && !t && strstr(textok_last_error(), "encoder.block.") && strstr(textok_last_error(), "not found"),
             "t5 %s: one layer too many: refused (%s)", c->name, textok_last_error());
    bad = c->cfg; bad.layers -= 1;
    st = textok_t5_load_st(&t, &c->w, &bad, NULL);
    tt_check(s, st == TEXTOK_ERR_SHAPE && !t && strstr(textok_last_error(), "unexpected tensor 'encoder.block."),
             "t5 %s: one layer too few: the extra block is named (%s)", c->name, textok_last_error());
    bad = c->cfg; bad.d_ff += 1;
    st = textok_t5_load_st(&t, &c->w, &bad, NULL);
    tt_check(s, st == TEXTOK_ERR_SHAPE && !t && strstr(textok_last_error(), "DenseReluDense") && strstr(textok_last_error(), "expected"),
             "t5 %s: a wrong d_ff names the tensor and both shapes (%s)", c->name, textok_last_error());
    bad = c->cfg; bad.gated = !bad.gated; bad.gelu_tanh = bad.gated;
    st = textok_t5_load_st(&t, &c->w, &bad, NULL);
    tt_check(s, st != TEXTOK_OK && !t && strstr(textok_last_error(), c->cfg.gated ? "wi_0" : "wi."),
             "t5 %s: gated/v1.0 swapped is refused (%s)", c->name, textok_last_error());
    bad = c->cfg; bad.num_buckets = 31;
    st = textok_t5_load_st(&t, &c->w, &bad, NULL);
    tt_check(s, st == TEXTOK_ERR_SHAPE && !t && strstr(textok_last_error(), "num_buckets"),
             "t5 %s: an odd num_buckets is refused (%s)", c->name, textok_last_error());
    st = textok_t5_load_st(&t, &c->w, NULL, NULL);
    tt_check(s, st == TEXTOK_ERR_FORMAT && !t && strstr(textok_last_error(), "textok.model"),
             "t5 %s: a Hugging Face file without an explicit config is refused (%s)", c->name, textok_last_error());

    /* bad encode calls */
    if (textok_t5_load_st(&t, &c->w, &c->cfg, NULL) != TEXTOK_OK) { tt_check(s, 0, "t5 %s: reload: %s", c->name, textok_last_error()); return; }
    ids[5] = c->cfg.vocab;
    st = textok_t5_encode(t, ids, NULL, 2, 4, out);
    tt_check(s, st == TEXTOK_ERR_ARG && strstr(textok_last_error(), "row 1, position 1") && strstr(textok_last_error(), "outside"),
             "t5 %s: id = vocab is refused with its place (%s)", c->name, textok_last_error());
    ids[5] = -1;
    st = textok_t5_encode(t, ids, NULL, 2, 4, out);
    tt_check(s, st == TEXTOK_ERR_ARG, "t5 %s: id -1 is refused", c->name);
    ids[5] = 5;
    mask[2] = 2;
    st = textok_t5_encode(t, ids, mask, 2, 4, out);
    tt_check(s, st == TEXTOK_ERR_ARG && strstr(textok_last_error(), "mask value 2"), "t5 %s: mask value 2 is refused (%s)", c->name, textok_last_error());
    mask[2] = 1;
    st = textok_t5_encode(t, ids, mask, 0, 4, out);
    tt_check(s, st == TEXTOK_ERR_ARG, "t5 %s: batch 0 is refused (%s)", c->name, textok_last_error());
    st = textok_t5_encode(t, ids, mask, 2, 0, out);
    tt_check(s, st == TEXTOK_ERR_ARG, "t5 %s: length 0 is refused", c->name);
    st = textok_t5_encode(t, NULL, mask, 2, 4, out);
    tt_check(s, st == TEXTOK_ERR_ARG, "t5 %s: NULL ids are refused", c->name);
    st = textok_t5_encode(t, ids, mask, 2, 4, out);
    tt_check(s, st == TEXTOK_OK, "t5 %s: the same call with good arguments then works %s", c->name, st == TEXTOK_OK ? "" : textok_last_error());
    textok_t5_free(t);
}

/* Files with two embeddings that disagree, and hostile or broken metadata: a clear error. */
static void tt5_bad_files(tt_stats *s)
{
    static const char *base[] = {
        "textok.model", "t5", "vocab", "4", "d_model", "2", "d_kv", "2", "heads", "1", "d_ff", "2",
        "layers", "1", "num_buckets", "8", "max_distance", "20", "gated", "0", "gelu_tanh", "0", "eps", "9.99999997e-07"
    };
    static const struct { const char *key, *value, *mention; int st; } cases[] = {
        { "textok.model", "titok", "textok.model", TEXTOK_ERR_FORMAT },
        { "d_model", "two", "d_model", TEXTOK_ERR_FORMAT },
        { "eps", "1e-6x", "eps", TEXTOK_ERR_FORMAT },
        { "eps", "0", "eps", TEXTOK_ERR_SHAPE },
        { "num_buckets", "7", "num_buckets", TEXTOK_ERR_SHAPE },
        { "max_distance", "2", "max_distance", TEXTOK_ERR_SHAPE },
        { "gelu_tanh", "1", "gelu_tanh", TEXTOK_ERR_SHAPE },
        { "layers", "0", "layers", TEXTOK_ERR_SHAPE },
        { NULL, NULL, "heads", TEXTOK_ERR_FORMAT }                     /* a key missing */
    };
    const char *path = "build/tt_t5_bad.safetensors";
    float emb[8] = { 1, 2, 3, 4, 5, 6, 7, 8 }, emb2[8] = { 1, 2, 3, 4, 5, 6, 7, 9 };
    textok_st_entry e[2];
    textok_safetensors st;
    textok_t5_config cfg;
    textok_t5 *t = NULL;
    int i, j, rc;
    memset(e, 0, sizeof e);
    e[0].name = "shared.weight"; e[0].data = emb; e[0].ndim = 2; e[0].shape[0] = 4; e[0].shape[1] = 2;
    for (i = 0; i < (int)(sizeof cases / sizeof cases[0]); i++) {
        const char *kv[32];
        int n = 0;
        for (j = 0; j < (int)(sizeof base / sizeof base[0]); j += 2) {
            if (!cases[i].key && !strcmp(base[j], "heads")) continue;
            kv[n++] = base[j];
            kv[n++] = cases[i].key && !strcmp(base[j], cases[i].key) ? cases[i].value : base[j + 1];
        }
        if (textok_st_save(path, e, 1, kv, n / 2, TEXTOK_DTYPE_F32) != TEXTOK_OK) { tt_check(s, 0, "write %s: %s", path, textok_last_error()); return; }
        rc = textok_t5_load(&t, path, NULL);
        tt_check(s, rc == cases[i].st && !t && strstr(textok_last_error(), cases[i].mention),
                 "t5 metadata %s = %s refused (status %d): %s", cases[i].key ? cases[i].key : "(heads missing)",
                 cases[i].value ? cases[i].value : "-", rc, textok_last_error());
        textok_t5_free(t);
        t = NULL;
    }
    /* both tied names present: equal is fine, different is ambiguous */
    e[1] = e[0];
    e[1].name = "encoder.embed_tokens.weight";
    memset(&cfg, 0, sizeof cfg);
    cfg.vocab = 4; cfg.d_model = 2; cfg.d_kv = 2; cfg.heads = 1; cfg.d_ff = 2; cfg.layers = 1;
    cfg.num_buckets = 8; cfg.max_distance = 20; cfg.eps = 1e-6f;
    for (j = 0; j < 2; j++) {
        e[1].data = j ? emb2 : emb;
        if (textok_st_save(path, e, 2, NULL, 0, TEXTOK_DTYPE_F32) != TEXTOK_OK || textok_st_open(&st, path) != TEXTOK_OK) {
            tt_check(s, 0, "write %s: %s", path, textok_last_error());
            return;
        }
        rc = textok_t5_load_st(&t, &st, &cfg, NULL);
        if (j == 0)   /* equal: it gets past the embedding, then misses block 0 */
            tt_check(s, rc == TEXTOK_ERR_NOT_FOUND && strstr(textok_last_error(), "encoder.block.0"),
                     "t5: equal shared.weight and encoder.embed_tokens.weight are accepted (%s)", textok_last_error());
        else
            tt_check(s, rc == TEXTOK_ERR_FORMAT && !t && strstr(textok_last_error(), "differ"),
                     "t5: different shared.weight and encoder.embed_tokens.weight are refused (%s)", textok_last_error());
        textok_st_close(&st);
        textok_t5_free(t);
        t = NULL;
    }
    remove(path);
}

void test_t5(tt_stats *s)
{
    static const char *names[] = { "t5_gated", "t5_v10" };
    textok_kernels ref = textok_cpu_ref_kernels(), fast = textok_cpu_kernels(0);
    int i;
    for (i = 0; i < 2; i++) {
        tt_t5case c;
        float *a = NULL, *a1 = NULL, *b = NULL, *d = NULL;
        char what[96];
        if (!tt5_open(s, &c, names[i])) { tt5_close(&c); continue; }
        a = tt5_run(s, &c, &ref, 2);
        a1 = tt5_run(s, &c, &ref, 1);
        b = tt5_run(s, &c, &fast, 2);
        d = tt5_run(s, &c, &fast, 1);
        /* chunking changes only the GEMM shapes: the reference table computes every element the
           same way whatever M is; BLAS may not (OpenBLAS picks kernels by size) */
        if (a && a1)
            tt_check(s, memcmp(a, a1, (size_t)c.Bp * c.Lp * c.d * sizeof(float)) == 0,
                     "t5 %s [cpu-ref]: max_batch 1 and 2 give the same bits", names[i]);
        snprintf(what, sizeof what, "t5 %s [%s]: max_batch 1 = max_batch 2", names[i], fast.name);
        if (b && d) tt_compare(s, what, d, b, (size_t)c.Bp * c.Lp * c.d, TT_TOL_SAME);
        if (b) tt5_layout(s, &c, b);
        free(a); free(a1); free(b); free(d);
        tt5_bad_calls(s, &c);
        tt5_close(&c);
    }
    tt5_bad_files(s);
}
