/* TiTok end to end against the PyTorch reference (tools/titok_ref.py, written from
   architecture.md, through tools/gen_golden_titok.py). For each tiny config in
   tests/golden/titok/ - legacy VQ with the MaskGIT-VQGAN pixel decoder, non-legacy VQ without
   l2-normalisation, VAE c16 - the official-named weights (stored F16, BF16 and F32 in turn) are
   loaded directly, with the config taken from the reference file's metadata, and:
     - token ids must be identical (the generator checks that no decision is a near-tie);
     - pre-quantisation and quantised latents within 1e-5 relative L2;
     - decoded images (decode_tokens for VQ, decode(mean) for VAE) within 1e-4 relative L2, the
       issue's acceptance bound; we measure ~1e-6 (fp32 against the float64 reference).
   Both kernel tables run it; max_batch 1 and 2 must give the same bits (chunking is exact).
   Bad calls (ids out of range, tokens from a VAE, a config that does not match the file) must
   fail with a message, not crash. */
#include "check.h"
#include "textok.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#define TT_TOL_LATENT 1e-5   /* ~2e-7 measured: a few roundings of O(1) values */
#define TT_TOL_IMAGE  1e-4   /* the bound; ~1e-6 measured */

typedef struct {
    textok_safetensors w, ref;
    textok_titok_config cfg;
    float *image, *tokens_f, *pre_quant, *latents, *decoded;
    int B, K, C, Cq, S;
} tt_case;

static float *tt_read(tt_stats *s, const textok_safetensors *st, const char *name, size_t want)
{
    const textok_st_tensor *t = textok_st_find(st, name);
    float *x;
    if (!t || t->numel != want) {
        tt_check(s, 0, "%s: tensor '%s' with %lu values", st->path, name, (unsigned long)want);
        return NULL;
    }
    x = (float *)malloc(want * sizeof(float));
    if (!x || textok_st_read_f32(st, t, x, want) != TEXTOK_OK) { free(x); return NULL; }
    return x;
}

static int tt_open_case(tt_stats *s, tt_case *c, const char *name)
{
    char path[512];
    memset(c, 0, sizeof *c);
    snprintf(path, sizeof path, "%s/titok/%s.safetensors", tt_golden_dir, name);
    if (textok_st_open(&c->w, path) != TEXTOK_OK) { tt_check(s, 0, "open %s: %s", path, textok_last_error()); return 0; }
    snprintf(path, sizeof path, "%s/titok/%s_ref.safetensors", tt_golden_dir, name);
    if (textok_st_open(&c->ref, path) != TEXTOK_OK) { tt_check(s, 0, "open %s: %s", path, textok_last_error()); return 0; }
    if (textok_titok_config_from_meta(&c->cfg, &c->ref) != TEXTOK_OK) {
        tt_check(s, 0, "%s: config from metadata: %s", path, textok_last_error());
        return 0;
    }
    c->B = 2; c->K = c->cfg.num_latent_tokens; c->C = c->cfg.token_size; c->S = c->cfg.image_size;
    c->Cq = c->cfg.quantize_mode == TEXTOK_QUANT_VAE ? 2 * c->C : c->C;
    c->image = tt_read(s, &c->ref, "image", (size_t)c->B * 3 * c->S * c->S);
    c->pre_quant = tt_read(s, &c->ref, "pre_quant", (size_t)c->B * c->Cq * c->K);
    c->latents = tt_read(s, &c->ref, "latents", (size_t)c->B * c->C * c->K);
    c->decoded = tt_read(s, &c->ref, "decoded", (size_t)c->B * 3 * c->S * c->S);
    if (c->cfg.quantize_mode == TEXTOK_QUANT_VQ) c->tokens_f = tt_read(s, &c->ref, "tokens", (size_t)c->B * c->K);
    return c->image && c->pre_quant && c->latents && c->decoded && (c->cfg.quantize_mode != TEXTOK_QUANT_VQ || c->tokens_f);
}

static void tt_close_case(tt_case *c)
{
    textok_st_close(&c->w);
    textok_st_close(&c->ref);
    free(c->image); free(c->tokens_f); free(c->pre_quant); free(c->latents); free(c->decoded);
}

/* Encode and decode with one table and one max_batch; returns the decoded image (caller frees). */
static float *tt_run(tt_stats *s, tt_case *c, const char *name, const textok_kernels *kt, int max_batch)
{
    textok_params p = textok_default_params();
    textok_titok *m = NULL;
    size_t nimg = (size_t)c->B * 3 * c->S * c->S;
    int32_t *tokens = (int32_t *)calloc((size_t)c->B * c->K, sizeof(int32_t));
    float *pre = (float *)calloc((size_t)c->B * c->Cq * c->K, sizeof(float));
    float *lat = (float *)calloc((size_t)c->B * c->C * c->K, sizeof(float));
    float *img = (float *)calloc(nimg, sizeof(float));
    char what[160];
    int st, i, same = 1, vq = c->cfg.quantize_mode == TEXTOK_QUANT_VQ;
    p.kernels = kt;
    p.max_batch = max_batch;
    st = textok_titok_load_st(&m, &c->w, &c->cfg, &p);
    tt_check(s, st == TEXTOK_OK, "titok %s [%s, max_batch %d]: load (%lu params) %s", name, kt->name, max_batch,
             (unsigned long)textok_titok_num_params(m), st == TEXTOK_OK ? "" : textok_last_error());
    if (st != TEXTOK_OK || !tokens || !pre || !lat || !img) goto done;
    st = textok_titok_encode(m, c->image, c->B, NULL, vq ? tokens : NULL, lat, pre, NULL);
    tt_check(s, st == TEXTOK_OK, "titok %s [%s]: encode %s", name, kt->name, st == TEXTOK_OK ? "" : textok_last_error());
    if (st != TEXTOK_OK) goto done;
    if (vq) {
        for (i = 0; i < c->B * c->K; i++) same &= tokens[i] == (int32_t)c->tokens_f[i];
        tt_check(s, same, "titok %s [%s, max_batch %d]: %d token ids identical to the reference", name, kt->name, max_batch, c->B * c->K);
    }
    snprintf(what, sizeof what, "titok %s [%s, mb %d] pre_quant", name, kt->name, max_batch);
    tt_compare(s, what, pre, c->pre_quant, (size_t)c->B * c->Cq * c->K, TT_TOL_LATENT);
    snprintf(what, sizeof what, "titok %s [%s, mb %d] latents", name, kt->name, max_batch);
    tt_compare(s, what, lat, c->latents, (size_t)c->B * c->C * c->K, TT_TOL_LATENT);
    /* decode from the reference's own ids / mean so a decoder error is not masked by the encoder */
    if (vq) {
        for (i = 0; i < c->B * c->K; i++) tokens[i] = (int32_t)c->tokens_f[i];
        st = textok_titok_decode_tokens(m, tokens, c->B, NULL, img);
    } else {
        st = textok_titok_decode_latents(m, c->latents, c->B, NULL, img);
    }
    tt_check(s, st == TEXTOK_OK, "titok %s [%s]: decode %s", name, kt->name, st == TEXTOK_OK ? "" : textok_last_error());
    snprintf(what, sizeof what, "titok %s [%s, mb %d] decoded image", name, kt->name, max_batch);
    if (st == TEXTOK_OK) tt_compare(s, what, img, c->decoded, nimg, TT_TOL_IMAGE);
done:
    textok_titok_free(m);
    free(tokens); free(pre); free(lat);
    if (st != TEXTOK_OK) { free(img); return NULL; }
    return img;
}

static void tt_bad_calls(tt_stats *s, tt_case *c, const char *name)
{
    textok_titok *m = NULL;
    textok_titok_config bad = c->cfg;
    int32_t ids[4096];
    float img[3 * 64 * 64];
    int st, i;
    /* a config that disagrees with the file: K + 1 latent tokens */
    bad.num_latent_tokens += 1;
    st = textok_titok_load_st(&m, &c->w, &bad, NULL);
    tt_check(s, st == TEXTOK_ERR_SHAPE && m == NULL && strstr(textok_last_error(), "latent_tokens"),
             "titok %s: a config with K+1 refuses the file, naming latent_tokens (%s)", name, textok_last_error());
    if (textok_titok_load_st(&m, &c->w, &c->cfg, NULL) != TEXTOK_OK) { tt_check(s, 0, "titok %s: reload", name); return; }
    if (c->cfg.quantize_mode == TEXTOK_QUANT_VQ && c->K <= 4096 && c->S <= 64) {
        for (i = 0; i < c->K; i++) ids[i] = 0;
        ids[c->K - 1] = c->cfg.codebook_size;
        st = textok_titok_decode_tokens(m, ids, 1, NULL, img);
        tt_check(s, st == TEXTOK_ERR_ARG && strstr(textok_last_error(), "outside"),
                 "titok %s: token id = V is refused (%s)", name, textok_last_error());
        ids[c->K - 1] = -1;
        st = textok_titok_decode_tokens(m, ids, 1, NULL, img);
        tt_check(s, st == TEXTOK_ERR_ARG, "titok %s: token id -1 is refused", name);
    } else if (c->cfg.quantize_mode == TEXTOK_QUANT_VAE) {
        st = textok_titok_encode(m, c->image, 1, NULL, ids, NULL, NULL, NULL);
        tt_check(s, st == TEXTOK_ERR_ARG, "titok %s: token ids from a VAE are refused (%s)", name, textok_last_error());
    }
    st = textok_titok_encode(m, NULL, 1, NULL, NULL, NULL, NULL, NULL);
    tt_check(s, st == TEXTOK_ERR_ARG, "titok %s: NULL images refused", name);
    textok_titok_free(m);
}

/* VAE sampling: the same seed gives the same bits, another seed another sample, and the sample
   is mean + std * noise with std = exp(logvar / 2). */
static void tt_vae_sample(tt_stats *s, tt_case *c, const char *name)
{
    textok_titok *m = NULL;
    textok_rng r1, r2, r3;
    size_t n = (size_t)c->B * c->C * c->K, i;
    float *a = (float *)malloc(n * sizeof(float)), *b = (float *)malloc(n * sizeof(float)), *d = (float *)malloc(n * sizeof(float));
    double z2 = 0.0;
    if (!a || !b || !d || textok_titok_load_st(&m, &c->w, &c->cfg, NULL) != TEXTOK_OK) { tt_check(s, 0, "titok %s: vae sample setup", name); goto done; }
    textok_rng_seed(&r1, 7); textok_rng_seed(&r2, 7); textok_rng_seed(&r3, 8);
    textok_titok_encode(m, c->image, c->B, NULL, NULL, a, NULL, &r1);
    textok_titok_encode(m, c->image, c->B, NULL, NULL, b, NULL, &r2);
    tt_check(s, memcmp(a, b, n * sizeof(float)) == 0, "titok %s: VAE sample, same seed -> same bits", name);
    textok_titok_encode(m, c->image, c->B, NULL, NULL, b, NULL, &r3);
    tt_check(s, memcmp(a, b, n * sizeof(float)) != 0, "titok %s: VAE sample, another seed -> another sample", name);
    /* standardised noise (a - mean) / std should look N(0,1): its mean square within a loose band */
    for (i = 0; i < n; i++) {
        size_t bi = i / ((size_t)c->C * c->K), r = i % ((size_t)c->C * c->K);
        float lv = c->pre_quant[bi * c->Cq * c->K + (size_t)c->C * c->K + r];
        lv = lv < -30.0f ? -30.0f : lv > 20.0f ? 20.0f : lv;
        d[i] = (a[i] - c->latents[i]) / expf(0.5f * lv);
        z2 += (double)d[i] * d[i];
    }
    z2 /= (double)n;
    tt_check(s, z2 > 0.5 && z2 < 1.6, "titok %s: VAE sample noise has mean square %.3f (N(0,1): 1; %lu values)", name, z2, (unsigned long)n);
done:
    textok_titok_free(m);
    free(a); free(b); free(d);
}

/* Hostile or broken metadata in a textok-layout file: a clear error, never a crash. The file
   holds one dummy tensor; what matters is how the config is read and checked. */
static void tt_bad_meta(tt_stats *s)
{
    static const char *base[] = {
        "textok.model", "titok", "image_size", "32", "patch_size", "8", "num_latent_tokens", "5",
        "token_size", "8", "enc_width", "64", "enc_layers", "1", "enc_heads", "1", "enc_mlp", "256",
        "dec_width", "64", "dec_layers", "1", "dec_heads", "1", "dec_mlp", "256", "codebook_size", "32",
        "use_l2_norm", "0", "is_legacy", "0", "pixel_codebook_size", "0", "pixel_z_channels", "0",
        "pixel_hidden", "0", "pixel_num_levels", "0", "pixel_res_blocks", "0", "pixel_groups", "0",
        "quantize_mode", "vq"
    };
    static const struct { const char *key, *value, *mention; int st; } cases[] = {
        { "textok.model", "dit", "textok.model", TEXTOK_ERR_FORMAT },
        { "enc_width", "sixty-four", "enc_width", TEXTOK_ERR_FORMAT },
        { "enc_width", "-64", "enc_width", TEXTOK_ERR_FORMAT },
        { "enc_heads", "3", "enc_heads", TEXTOK_ERR_SHAPE },
        { "patch_size", "7", "patch_size", TEXTOK_ERR_SHAPE },
        { "quantize_mode", "fsq", "quantize_mode", TEXTOK_ERR_FORMAT },
        { "is_legacy", "1", "pixel_channel_mult", TEXTOK_ERR_FORMAT },      /* legacy without its decoder config */
        { "num_latent_tokens", "99999999999", "num_latent_tokens", TEXTOK_ERR_FORMAT },
        { "image_size", "8192", "data bytes can hold", TEXTOK_ERR_SHAPE },  /* with patch 8: 1M patches, whose
                                                                               position table the file cannot hold:
                                                                               refused before any allocation */
        { NULL, NULL, "enc_mlp", TEXTOK_ERR_FORMAT }                         /* a key missing */
    };
    const char *path = "build/tt_bad_meta.safetensors";
    float dummy[4] = { 0, 0, 0, 0 };
    textok_st_entry e;
    int i, j;
    memset(&e, 0, sizeof e);
    e.name = "latent_tokens"; e.data = dummy; e.ndim = 1; e.shape[0] = 4;
    for (i = 0; i < (int)(sizeof cases / sizeof cases[0]); i++) {
        const char *kv[64];
        int n = 0, st;
        textok_titok *m = NULL;
        textok_params p = textok_default_params();
        for (j = 0; j < (int)(sizeof base / sizeof base[0]); j += 2) {
            if (!cases[i].key && !strcmp(base[j], "enc_mlp")) continue;
            kv[n++] = base[j];
            kv[n++] = cases[i].key && !strcmp(base[j], cases[i].key) ? cases[i].value : base[j + 1];
        }
        if (cases[i].key && !strcmp(cases[i].key, "image_size")) p.max_batch = 4096;   /* ... times 4096 images */
        if (textok_st_save(path, &e, 1, kv, n / 2, TEXTOK_DTYPE_F32) != TEXTOK_OK) { tt_check(s, 0, "write %s: %s", path, textok_last_error()); return; }
        st = textok_titok_load(&m, path, &p);
        tt_check(s, st == cases[i].st && m == NULL && strstr(textok_last_error(), cases[i].mention) != NULL,
                 "titok metadata %s = %s refused (status %d): %s", cases[i].key ? cases[i].key : "(enc_mlp missing)",
                 cases[i].value ? cases[i].value : "-", st, textok_last_error());
        textok_titok_free(m);
    }
    remove(path);
}

void test_titok(tt_stats *s)
{
    static const char *names[] = { "tiny_legacy", "tiny_vq", "tiny_vae" };
    textok_kernels ref = textok_cpu_ref_kernels(), fast = textok_cpu_kernels(0);
    int i;
    for (i = 0; i < 3; i++) {
        tt_case c;
        float *a, *b, *d;
        if (!tt_open_case(s, &c, names[i])) { tt_close_case(&c); continue; }
        a = tt_run(s, &c, names[i], &ref, 2);
        b = tt_run(s, &c, names[i], &fast, 2);
        d = tt_run(s, &c, names[i], &fast, 1);
        if (b && d)
            tt_check(s, memcmp(b, d, (size_t)c.B * 3 * c.S * c.S * sizeof(float)) == 0,
                     "titok %s: max_batch 1 and 2 decode to the same bits", names[i]);
        free(a); free(b); free(d);
        tt_bad_calls(s, &c, names[i]);
        if (c.cfg.quantize_mode == TEXTOK_QUANT_VAE) tt_vae_sample(s, &c, names[i]);
        tt_close_case(&c);
    }
    tt_bad_meta(s);
}
