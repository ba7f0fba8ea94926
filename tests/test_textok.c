/* TexTok and TA-TiTok: the text-conditioned layouts of the 1D tokenizer.

   Self-consistency (no reference needed; each check is a property the spec states):
     - padded text rows cannot change anything (they are masked keys): perturbing them leaves
       every output bit-identical, while perturbing a real row changes the output of every stack
       that sees text, and of no other;
     - a text_optional model run without text equals the same model with every text key masked,
       and a model that needs text refuses to run without it;
     - bad text (wrong width, too long, empty) is refused with a message;
     - finite differences of the trainer's total loss for every text parameter (projection and
       positions, encoder and decoder), with padding in the batch; the padded positions'
       gradients are exactly zero;
     - text dropout 1 gives the step of a model that got no text.
   Goldens (tools/gen_golden_textok.py, tests/golden/textok/): the PyTorch reference's encode and
   decode for one tiny TexTok per text placement and for a TA-TiTok with official names. */
#include "check.h"
#include "textok.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#define TK_B 2
#define TK_LT 7
#define TK_DT 24
#define TK_FD_H 1e-2   /* the loss is a float32 mean near 1: a smaller step drowns in its rounding */
#define TK_FD_TOL 1e-2   /* float32 loss rounding over a 2e-2 step (~6e-6 absolute) against gradients ~1e-3; measured below */

enum { TK_NONE = 0, TK_ENC = 1, TK_DEC = 2, TK_BOTH = 3 };

static textok_titok_config tk_cfg(int arch, int where, int quant)
{
    textok_titok_config c;
    memset(&c, 0, sizeof c);
    c.arch = arch;
    c.image_size = 32; c.patch_size = 8; c.num_latent_tokens = 8; c.token_size = 8;
    c.enc_width = 32; c.enc_layers = 2; c.enc_heads = 2; c.enc_mlp = 64;
    c.dec_width = 32; c.dec_layers = 2; c.dec_heads = 2; c.dec_mlp = 64;
    c.quantize_mode = quant;
    if (quant == TEXTOK_QUANT_VQ) c.codebook_size = 64;
    c.text_in_encoder = (where & TK_ENC) != 0;
    c.text_in_decoder = (where & TK_DEC) != 0;
    if (where) { c.text_dim = TK_DT; c.text_len = TK_LT; }
    return c;
}

static const char *tk_where(int where)
{
    return where == TK_BOTH ? "both" : where == TK_ENC ? "encoder" : where == TK_DEC ? "decoder" : "none";
}

static void tk_fill(float *x, size_t n, uint64_t seed, float scale)
{
    textok_rng r;
    textok_rng_seed(&r, seed);
    textok_rng_fill_normal(&r, x, n, 0.0f, scale);
}

static void tk_images(float *img, int B, int S, uint64_t seed)
{
    textok_rng r;
    textok_rng_seed(&r, seed);
    textok_rng_fill_uniform(&r, img, (size_t)B * 3 * S * S, 0.0f, 1.0f);
}

/* image 0: 4 real tokens then padding; image 1: all real */
static void tk_mask(unsigned char *mask)
{
    int j;
    for (j = 0; j < TK_LT; j++) { mask[j] = j < 4; mask[TK_LT + j] = 1; }
}

/* encode + decode of TK_B images; lat (B, C, K) and rec (B, 3, S, S) */
static int tk_run(textok_titok *m, const float *img, const textok_text *tx, float *lat, float *rec)
{
    if (textok_titok_encode(m, img, TK_B, tx, NULL, lat, NULL, NULL) != TEXTOK_OK) return 0;
    return textok_titok_decode_latents(m, lat, TK_B, tx, rec) == TEXTOK_OK;
}

static int tk_same(const float *a, const float *b, size_t n) { return memcmp(a, b, n * sizeof(float)) == 0; }

static void tk_masking(tt_stats *s, int arch, int where)
{
    textok_titok_config cfg = tk_cfg(arch, where, TEXTOK_QUANT_VAE);
    textok_params p = textok_default_params();
    textok_titok *m = NULL;
    const size_t S = 32, ni = TK_B * 3 * S * S, nl = (size_t)TK_B * 8 * 8, ne = (size_t)TK_B * TK_LT * TK_DT;
    float *img = (float *)malloc(ni * sizeof(float)), *emb = (float *)malloc(ne * sizeof(float));
    float *lat0 = (float *)malloc(nl * sizeof(float)), *lat1 = (float *)malloc(nl * sizeof(float));
    float *rec0 = (float *)malloc(ni * sizeof(float)), *rec1 = (float *)malloc(ni * sizeof(float));
    float *latd = (float *)malloc(nl * sizeof(float));
    unsigned char mask[TK_B * TK_LT];
    textok_text tx;
    const char *arch_name = arch == TEXTOK_ARCH_TEXTOK ? "textok" : "titok";
    int ok;
    p.max_batch = TK_B;
    if (textok_titok_create(&m, &cfg, &p, 3) != TEXTOK_OK) {
        tt_check(s, 0, "%s text %s: create: %s", arch_name, tk_where(where), textok_last_error());
        goto done;
    }
    tk_images(img, TK_B, (int)S, 1);
    tk_fill(emb, ne, 2, 1.0f);
    tk_mask(mask);
    tx.emb = emb; tx.mask = mask; tx.L = TK_LT; tx.dim = TK_DT;
    ok = tk_run(m, img, &tx, lat0, rec0);
    tt_check(s, ok, "%s text %s: encode + decode with padded text", arch_name, tk_where(where));
    if (!ok) goto done;
    /* the padded rows of image 0 carry other values: nothing may change */
    tk_fill(emb + 4 * TK_DT, 3 * TK_DT, 9, 5.0f);
    ok = tk_run(m, img, &tx, lat1, rec1);
    tt_check(s, ok && tk_same(lat0, lat1, nl) && tk_same(rec0, rec1, ni),
             "%s text %s: padded text rows cannot change the latents or the image (bit-identical)", arch_name, tk_where(where));
    /* a real row of image 1 changes: the encoder's output moves iff it sees text; the decoder's
       (given the same latents) iff it sees text */
    tk_fill(emb + TK_LT * TK_DT, TK_DT, 10, 1.0f);
    ok = tk_run(m, img, &tx, lat1, rec1);
    if (ok) ok = textok_titok_decode_latents(m, lat0, TK_B, &tx, rec1) == TEXTOK_OK;
    if (ok) {
        const size_t half_l = nl / 2, half_i = ni / 2;
        int enc_moved = !tk_same(lat0 + half_l, lat1 + half_l, half_l), dec_moved = !tk_same(rec0 + half_i, rec1 + half_i, half_i);
        int img0_same = tk_same(lat0, lat1, half_l) && tk_same(rec0, rec1, half_i);
        ok = enc_moved == ((where & TK_ENC) != 0) && dec_moved == ((where & TK_DEC) != 0) && img0_same;
        tt_check(s, ok, "%s text %s: a real token of image 1 moves the encoder %s and the decoder %s, image 0 not at all",
                 arch_name, tk_where(where), enc_moved ? "yes" : "no", dec_moved ? "yes" : "no");
    } else {
        tt_check(s, 0, "%s text %s: run: %s", arch_name, tk_where(where), textok_last_error());
    }
    if (where) {
        /* no text for a model that needs it; bad shapes */
        int st = textok_titok_encode(m, img, TK_B, NULL, NULL, lat1, NULL, NULL);
        int st2 = textok_titok_decode_latents(m, lat0, TK_B, NULL, rec1);
        tt_check(s, (where & TK_ENC ? st : st2) == TEXTOK_ERR_ARG,
                 "%s text %s: no text refused: %s", arch_name, tk_where(where), textok_last_error());
        tx.dim = TK_DT + 1;
        st = textok_titok_decode_latents(m, lat0, TK_B, &tx, rec1);
        st2 = textok_titok_encode(m, img, TK_B, &tx, NULL, lat1, NULL, NULL);
        tt_check(s, (where & TK_DEC ? st : st2) == TEXTOK_ERR_SHAPE,
                 "%s text %s: embeddings of the wrong width refused: %s", arch_name, tk_where(where), textok_last_error());
        tx.dim = TK_DT; tx.L = TK_LT + 1;
        st = textok_titok_decode_latents(m, lat0, TK_B, &tx, rec1);
        st2 = textok_titok_encode(m, img, TK_B, &tx, NULL, lat1, NULL, NULL);
        tt_check(s, (where & TK_DEC ? st : st2) == TEXTOK_ERR_SHAPE,
                 "%s text %s: more tokens than text_len refused: %s", arch_name, tk_where(where), textok_last_error());
        tx.L = 0;
        st = textok_titok_decode_latents(m, lat0, TK_B, &tx, rec1);
        st2 = textok_titok_encode(m, img, TK_B, &tx, NULL, lat1, NULL, NULL);
        tt_check(s, (where & TK_DEC ? st : st2) == TEXTOK_ERR_SHAPE,
                 "%s text %s: empty text refused: %s", arch_name, tk_where(where), textok_last_error());
        tx.L = TK_LT;
    } else {
        ok = tk_run(m, img, NULL, lat1, rec1);
        tt_check(s, ok && tk_same(lat0, lat1, nl) && tk_same(rec0, rec1, ni),
                 "%s text none: the no-text baseline ignores text (same bits with and without)", arch_name);
    }
    (void)latd;
done:
    textok_titok_free(m);
    free(img); free(emb); free(lat0); free(lat1); free(rec0); free(rec1); free(latd);
}

/* text_optional: no text = every text key masked */
static void tk_optional(tt_stats *s)
{
    textok_titok_config cfg = tk_cfg(TEXTOK_ARCH_TEXTOK, TK_BOTH, TEXTOK_QUANT_NONE);
    textok_params p = textok_default_params();
    textok_titok *m = NULL;
    const size_t S = 32, ni = TK_B * 3 * S * S, nl = (size_t)TK_B * 8 * 8, ne = (size_t)TK_B * TK_LT * TK_DT;
    float *img = (float *)malloc(ni * sizeof(float)), *emb = (float *)malloc(ne * sizeof(float));
    float *lat0 = (float *)malloc(nl * sizeof(float)), *lat1 = (float *)malloc(nl * sizeof(float));
    float *rec0 = (float *)malloc(ni * sizeof(float)), *rec1 = (float *)malloc(ni * sizeof(float));
    unsigned char mask[TK_B * TK_LT];
    textok_text tx;
    int ok;
    cfg.text_optional = 1;
    p.max_batch = TK_B;
    if (textok_titok_create(&m, &cfg, &p, 4) != TEXTOK_OK) { tt_check(s, 0, "text_optional: create: %s", textok_last_error()); goto done; }
    tk_images(img, TK_B, (int)S, 5);
    tk_fill(emb, ne, 6, 1.0f);
    memset(mask, 0, sizeof mask);
    tx.emb = emb; tx.mask = mask; tx.L = TK_LT; tx.dim = TK_DT;
    ok = tk_run(m, img, &tx, lat0, rec0) && tk_run(m, img, NULL, lat1, rec1);
    tt_check(s, ok && tk_same(lat0, lat1, nl) && tk_same(rec0, rec1, ni),
             "text_optional TexTok: no text equals fully masked text (bit-identical)");
done:
    textok_titok_free(m);
    free(img); free(emb); free(lat0); free(lat1); free(rec0); free(rec1);
}

static int tk_starts(const char *s, const char *p) { return strncmp(s, p, strlen(p)) == 0; }

/* Finite differences of the trainer's total loss (lr 0) for every text parameter. */
static void tk_fd(tt_stats *s, int arch, int where, int quant)
{
    textok_titok_config cfg = tk_cfg(arch, where, quant);
    textok_params p = textok_default_params();
    textok_train_config tc;
    textok_titok *m = NULL;
    textok_trainer *t = NULL;
    textok_train_stats st;
    textok_tensor_spec *specs = NULL;
    const size_t S = 32, ni = TK_B * 3 * S * S, ne = (size_t)TK_B * TK_LT * TK_DT;
    float *img = (float *)malloc(ni * sizeof(float)), *emb = (float *)malloc(ne * sizeof(float));
    float *buf = NULL, *grad = NULL, an[256], fd[256];
    unsigned char mask[TK_B * TK_LT];
    textok_text tx;
    int n_specs, i, j, n = 0, zero_pad = 1;
    const char *label = arch == TEXTOK_ARCH_TEXTOK ? "textok" : "titok";
    p.max_batch = TK_B;
    textok_train_preset(&tc, "tiny");
    tc.batch = TK_B; tc.perceptual_weight = 0; tc.disc_weight = 0; tc.lr = tc.end_lr = 0;
    tc.warmup_steps = 0; tc.grad_clip = 0; tc.ema_decay = 0; tc.vae_sample = 0; tc.kl_weight = 0.05f;
    if (textok_titok_create(&m, &cfg, &p, 21) != TEXTOK_OK || textok_trainer_create(&t, m, NULL, NULL, &tc, 5) != TEXTOK_OK) {
        tt_check(s, 0, "%s text %s fd: create: %s", label, tk_where(where), textok_last_error());
        goto done;
    }
    tk_images(img, TK_B, (int)S, 12);
    tk_fill(emb, ne, 13, 1.0f);
    tk_mask(mask);
    tx.emb = emb; tx.mask = mask; tx.L = TK_LT; tx.dim = TK_DT;
    /* every matrix N(0, 1/fan_in), every embedding N(0, 0.25) (as tests/test_train.c): with
       TiTok's 0.02 init a 32-wide model barely depends on its text, and the gradients would
       sink below the float32 resolution of the loss that the probes difference */
    n_specs = textok_titok_tensor_specs(&cfg, NULL, 0);
    specs = (textok_tensor_spec *)calloc((size_t)n_specs, sizeof *specs);
    textok_titok_tensor_specs(&cfg, specs, n_specs);
    for (i = 0; i < n_specs; i++) {
        size_t numel = 1;
        int d, emb_like = strstr(specs[i].name, "embedding") || tk_starts(specs[i].name, "latent_tokens");
        char name[160];
        if (specs[i].ndim < 2) continue;
        for (d = 0; d < specs[i].ndim; d++) numel *= (size_t)specs[i].shape[d];
        buf = (float *)realloc(buf, numel * sizeof(float));
        tk_fill(buf, numel, 30 + (uint64_t)i, emb_like ? 0.5f : 1.0f / sqrtf((float)(numel / (size_t)specs[i].shape[0])));
        snprintf(name, sizeof name, "param.%s", specs[i].name);
        textok_trainer_set(t, name, buf, numel);
    }
    for (i = 0; i < n_specs && n < 200; i++) {
        size_t numel = 1;
        char name[160];
        int d;
        if (!strstr(specs[i].name, "text_guidance")) continue;
        for (d = 0; d < specs[i].ndim; d++) numel *= (size_t)specs[i].shape[d];
        buf = (float *)realloc(buf, numel * sizeof(float));
        grad = (float *)realloc(grad, numel * sizeof(float));
        snprintf(name, sizeof name, "param.%s", specs[i].name);
        textok_trainer_get(t, name, buf, numel);
        if (textok_trainer_step(t, img, &tx, &st) != TEXTOK_OK) { tt_check(s, 0, "%s fd: step: %s", label, textok_last_error()); goto done; }
        snprintf(name, sizeof name, "grad.%s", specs[i].name);
        textok_trainer_get(t, name, grad, numel);
        snprintf(name, sizeof name, "param.%s", specs[i].name);
        for (j = 0; j < 4 && (size_t)j < numel; j++) {
            size_t idx = (size_t)j * 7919 % numel;
            float x0 = buf[idx];
            double lp, lm;
            buf[idx] = x0 + (float)TK_FD_H; textok_trainer_set(t, name, buf, numel);
            textok_trainer_step(t, img, &tx, &st); lp = st.total;
            buf[idx] = x0 - (float)TK_FD_H; textok_trainer_set(t, name, buf, numel);
            textok_trainer_step(t, img, &tx, &st); lm = st.total;
            buf[idx] = x0; textok_trainer_set(t, name, buf, numel);
            an[n] = grad[idx];
            fd[n] = (float)((lp - lm) / (2.0 * TK_FD_H));
            if (getenv("TR_VERBOSE")) printf("  %s[%lu] an %.6g fd %.6g\n", name, (unsigned long)idx, an[n], fd[n]);
            n++;
        }
    }
    {
        char nm[160];
        snprintf(nm, sizeof nm, "%s text %s fd: text projection and positions (%d probes, padded batch)", label, tk_where(where), n);
        tt_compare(s, nm, an, fd, (size_t)n, TK_FD_TOL);
    }
    /* a 5-token text: positions 5 and 6 are padding in every image, so their gradients are 0 */
    tx.L = 5;
    {
        unsigned char m5[TK_B * 5];
        float e5[TK_B * 5 * TK_DT];
        memset(m5, 1, sizeof m5);
        for (i = 0; i < TK_B; i++) memcpy(e5 + (size_t)i * 5 * TK_DT, emb + (size_t)i * TK_LT * TK_DT, 5 * TK_DT * sizeof(float));
        tx.emb = e5; tx.mask = m5;
        textok_trainer_step(t, img, &tx, &st);
        for (i = 0; i < n_specs; i++) {
            char name[160];
            float g[TK_LT * 32];
            if (!strstr(specs[i].name, "text_guidance_positional_embedding")) continue;
            snprintf(name, sizeof name, "grad.%s", specs[i].name);
            textok_trainer_get(t, name, g, (size_t)TK_LT * 32);
            for (j = 5 * 32; j < TK_LT * 32; j++) zero_pad &= g[j] == 0.0f;
        }
        tt_check(s, zero_pad, "%s text %s: the positions past the text get exactly zero gradient", label, tk_where(where));
    }
done:
    free(img); free(emb); free(buf); free(grad); free(specs);
    textok_trainer_free(t);
    textok_titok_free(m);
}

/* text dropout 1: every image trains without its text, as a model given none */
static void tk_dropout(tt_stats *s)
{
    textok_titok_config cfg = tk_cfg(TEXTOK_ARCH_TEXTOK, TK_BOTH, TEXTOK_QUANT_VAE);
    textok_params p = textok_default_params();
    textok_train_config tc;
    textok_titok *m1 = NULL, *m2 = NULL;
    textok_trainer *t1 = NULL, *t2 = NULL;
    textok_train_stats a, b;
    const size_t S = 32, ni = TK_B * 3 * S * S, ne = (size_t)TK_B * TK_LT * TK_DT;
    float *img = (float *)malloc(ni * sizeof(float)), *emb = (float *)malloc(ne * sizeof(float));
    textok_text tx;
    int ok;
    cfg.text_optional = 0;
    p.max_batch = TK_B;
    textok_train_preset(&tc, "tiny");
    tc.batch = TK_B; tc.perceptual_weight = 0; tc.disc_weight = 0; tc.text_dropout = 1.0f;
    ok = textok_titok_create(&m1, &cfg, &p, 8) == TEXTOK_OK;
    tt_check(s, ok && textok_trainer_create(&t1, m1, NULL, NULL, &tc, 5) == TEXTOK_ERR_ARG,
             "text dropout on a model without text_optional refused: %s", textok_last_error());
    textok_titok_free(m1); m1 = NULL;
    cfg.text_optional = 1;
    tk_images(img, TK_B, (int)S, 14);
    tk_fill(emb, ne, 15, 1.0f);
    tx.emb = emb; tx.mask = NULL; tx.L = TK_LT; tx.dim = TK_DT;
    ok = textok_titok_create(&m1, &cfg, &p, 8) == TEXTOK_OK && textok_titok_create(&m2, &cfg, &p, 8) == TEXTOK_OK &&
         textok_trainer_create(&t1, m1, NULL, NULL, &tc, 5) == TEXTOK_OK;
    tc.text_dropout = 0.0f;
    ok = ok && textok_trainer_create(&t2, m2, NULL, NULL, &tc, 5) == TEXTOK_OK;
    if (ok) {
        /* the dropout draws come first from the trainer's RNG; the no-text run draws the same
           number so that the VAE noise matches */
        textok_rng *r2 = textok_trainer_rng(t2);
        int i;
        for (i = 0; i < TK_B; i++) textok_rng_uniform(r2);
        ok = textok_trainer_step(t1, img, &tx, &a) == TEXTOK_OK && textok_trainer_step(t2, img, NULL, &b) == TEXTOK_OK;
    }
    tt_check(s, ok && a.total == b.total && a.grad_norm == b.grad_norm,
             "text dropout 1 trains exactly as no text (total %.9g vs %.9g)", ok ? a.total : 0.0, ok ? b.total : 0.0);
    textok_trainer_free(t1); textok_trainer_free(t2);
    textok_titok_free(m1); textok_titok_free(m2);
    free(img); free(emb);
}

/* ----- goldens: tests/golden/textok (tools/gen_golden_textok.py) ---------------------------- */
#define TK_TOL_LATENT 1e-5   /* as tests/test_titok.c: a few roundings of O(1) values; ~1e-7 measured */
#define TK_TOL_IMAGE  1e-4   /* the bound; ~1e-6 measured */

static float *tk_read(tt_stats *s, const textok_safetensors *st, const char *name, size_t *n)
{
    const textok_st_tensor *t = textok_st_find(st, name);
    float *x;
    if (!t) { tt_check(s, 0, "%s: tensor '%s' missing", st->path, name); return NULL; }
    x = (float *)malloc((t->numel ? t->numel : 1) * sizeof(float));
    if (!x || textok_st_read_f32(st, t, x, t->numel) != TEXTOK_OK) { free(x); return NULL; }
    if (n) *n = t->numel;
    return x;
}

static void tk_golden(tt_stats *s, const char *name, const textok_kernels *kt)
{
    char path[512], label[160];
    textok_safetensors w, ref;
    textok_titok_config cfg;
    textok_params p = textok_default_params();
    textok_titok *m = NULL;
    float *image = NULL, *text = NULL, *mask_f = NULL, *tokens_f = NULL, *pre = NULL, *lat = NULL, *dec = NULL, *alt = NULL;
    float *got_pre = NULL, *got_lat = NULL, *got_img = NULL, *got_img2 = NULL;
    int32_t *ids = NULL;
    unsigned char *mask = NULL;
    size_t n_img = 0, n_pre = 0, n_lat = 0, n_text = 0, n_mask = 0, j;
    textok_text tx;
    int st, K, vq, B = 2;
    memset(&w, 0, sizeof w); memset(&ref, 0, sizeof ref); memset(&tx, 0, sizeof tx);
    snprintf(label, sizeof label, "textok golden %s [%s]", name, kt->name);
    snprintf(path, sizeof path, "%s/textok/%s.safetensors", tt_golden_dir, name);
    if (textok_st_open(&w, path) != TEXTOK_OK) { tt_check(s, 0, "%s: %s", label, textok_last_error()); return; }
    snprintf(path, sizeof path, "%s/textok/%s_ref.safetensors", tt_golden_dir, name);
    if (textok_st_open(&ref, path) != TEXTOK_OK) { tt_check(s, 0, "%s: %s", label, textok_last_error()); goto done; }
    if (textok_titok_config_from_meta(&cfg, &ref) != TEXTOK_OK) { tt_check(s, 0, "%s: config: %s", label, textok_last_error()); goto done; }
    p.max_batch = 1;   /* two chunks of one: the text of image 1 must follow it */
    p.kernels = kt;
    if (textok_titok_load_st(&m, &w, &cfg, &p) != TEXTOK_OK) { tt_check(s, 0, "%s: load: %s", label, textok_last_error()); goto done; }
    K = cfg.num_latent_tokens; vq = cfg.quantize_mode == TEXTOK_QUANT_VQ;
    image = tk_read(s, &ref, "image", &n_img);
    pre = tk_read(s, &ref, "pre_quant", &n_pre);
    lat = tk_read(s, &ref, "latents", &n_lat);
    dec = tk_read(s, &ref, "decoded", NULL);
    if (vq) tokens_f = tk_read(s, &ref, "tokens", NULL);
    if (cfg.text_dim) {
        text = tk_read(s, &ref, "text", &n_text);
        mask_f = tk_read(s, &ref, "text_mask", &n_mask);
        if (textok_st_find(&ref, "text_alt")) alt = tk_read(s, &ref, "text_alt", NULL);
        if (!text || !mask_f || n_mask != (size_t)B * cfg.text_len || n_text != n_mask * cfg.text_dim) {
            tt_check(s, 0, "%s: text tensors missing or misshaped", label);
            goto done;
        }
        mask = (unsigned char *)malloc(n_mask);
        for (j = 0; j < n_mask; j++) mask[j] = mask_f[j] > 0.5f;
        tx.emb = text; tx.mask = mask; tx.L = cfg.text_len; tx.dim = cfg.text_dim;
    }
    if (!image || !pre || !lat || !dec || (vq && !tokens_f)) goto done;
    got_pre = (float *)malloc(n_pre * sizeof(float)); got_lat = (float *)malloc(n_lat * sizeof(float));
    got_img = (float *)malloc(n_img * sizeof(float)); got_img2 = (float *)malloc(n_img * sizeof(float));
    ids = (int32_t *)malloc((size_t)B * K * sizeof(int32_t));
    st = textok_titok_encode(m, image, B, cfg.text_dim ? &tx : NULL, vq ? ids : NULL, got_lat, got_pre, NULL);
    if (st != TEXTOK_OK) { tt_check(s, 0, "%s: encode: %s", label, textok_last_error()); goto done; }
    if (vq) {
        int same = 1;
        for (j = 0; j < (size_t)B * K; j++) same &= ids[j] == (int32_t)tokens_f[j];
        tt_check(s, same, "%s: %d token ids identical", label, B * K);
    }
    snprintf(path, sizeof path, "%s pre_quant", label);   tt_compare(s, path, got_pre, pre, n_pre, TK_TOL_LATENT);
    snprintf(path, sizeof path, "%s latents", label);     tt_compare(s, path, got_lat, lat, n_lat, TK_TOL_LATENT);
    /* decode the reference's latents (or its ids) with the same text */
    if (vq) {
        for (j = 0; j < (size_t)B * K; j++) ids[j] = (int32_t)tokens_f[j];
        st = textok_titok_decode_tokens(m, ids, B, cfg.text_dim ? &tx : NULL, got_img);
    } else {
        st = textok_titok_decode_latents(m, lat, B, cfg.text_dim ? &tx : NULL, got_img);
    }
    if (st != TEXTOK_OK) { tt_check(s, 0, "%s: decode: %s", label, textok_last_error()); goto done; }
    snprintf(path, sizeof path, "%s decoded", label);     tt_compare(s, path, got_img, dec, n_img, TK_TOL_IMAGE);
    if (alt) {   /* the same run with image 0's padded rows replaced: the same bits */
        float *lat2 = (float *)malloc(n_lat * sizeof(float));
        tx.emb = alt;
        st = textok_titok_encode(m, image, B, &tx, NULL, lat2, NULL, NULL);
        if (st == TEXTOK_OK)
            st = vq ? textok_titok_decode_tokens(m, ids, B, &tx, got_img2) : textok_titok_decode_latents(m, lat, B, &tx, got_img2);
        tt_check(s, st == TEXTOK_OK && tk_same(lat2, got_lat, n_lat) && tk_same(got_img, got_img2, n_img),
                 "%s: other values in the padded text rows (text_alt) give the same bits", label);
        free(lat2);
    }
done:
    textok_titok_free(m);
    textok_st_close(&w); textok_st_close(&ref);
    free(image); free(text); free(mask_f); free(tokens_f); free(pre); free(lat); free(dec); free(alt);
    free(got_pre); free(got_lat); free(got_img); free(got_img2); free(ids); free(mask);
}

void test_textok(tt_stats *s)
{
    static const char *const goldens[] = { "textok_both", "textok_enc", "textok_dec", "textok_none", "tatitok_tiny" };
    textok_kernels ref = textok_cpu_ref_kernels(), fast = textok_cpu_kernels(0);
    size_t g;
    for (g = 0; g < sizeof goldens / sizeof *goldens; g++) {
        tk_golden(s, goldens[g], &ref);
        tk_golden(s, goldens[g], &fast);
    }
    int w;
    for (w = 0; w < 4; w++) tk_masking(s, TEXTOK_ARCH_TEXTOK, w);
    tk_masking(s, TEXTOK_ARCH_TITOK, TK_DEC);   /* TA-TiTok's layout */
    tk_optional(s);
    tk_fd(s, TEXTOK_ARCH_TEXTOK, TK_BOTH, TEXTOK_QUANT_VAE);
    tk_fd(s, TEXTOK_ARCH_TEXTOK, TK_ENC, TEXTOK_QUANT_NONE);
    tk_fd(s, TEXTOK_ARCH_TITOK, TK_DEC, TEXTOK_QUANT_VAE);
    tk_dropout(s);
}
