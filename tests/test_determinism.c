/* test_determinism.c - the same seed gives bit-identical results for any thread count: a tiny VQ
   tokenizer (random init from a seed) encodes images to tokens and decodes them, then trains a
   few steps with every loss on (L2 + LPIPS + VQ + the GAN from step 2, so the discriminator's
   step runs too); and a tiny DiT generator trains a few steps and samples (DDPM with guidance). Each run is repeated
   with the fast kernel table on 1, 2 and 3 threads; tokens, reconstructions, every loss of every
   step, the parameters after training (an FNV-1a hash of their bytes) and the samples must match
   bit for bit. Reductions that cross threads are done in a fixed order (per-thread partials
   summed in thread-index order over a partition that does not depend on the thread count, or
   one thread per output), so they must; the one exception the library documents is a "blas"
   GEMM level, whose summation order is OpenBLAS's own (the check is then reported, not failed). */
#include "check.h"
#include "textok.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DT_STEPS 4
#define DT_B     2

typedef struct dt_result {
    int32_t  tokens[DT_B * 16];
    float   *recon;                          /* (B,3,S,S) */
    double   losses[DT_STEPS][6];           /* total, recon, perceptual, quantizer, gen, d_total */
    uint64_t params_hash;
    double   gen_losses[DT_STEPS];
    uint64_t gen_params_hash, gen_sample_hash;
    int      ok;
} dt_result;

static uint64_t dt_fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = (const unsigned char *)p;
    size_t i;
    for (i = 0; i < n; i++) { h ^= b[i]; h *= 1099511628211ull; }
    return h;
}

static void dt_images(float *img, int B, int S, unsigned seed)
{
    textok_rng r;
    size_t i, n = (size_t)B * 3 * S * S;
    int b, c, y, x;
    textok_rng_seed(&r, seed);
    for (i = 0; i < n; i++) img[i] = 0.5f * textok_rng_uniform(&r);
    for (b = 0; b < B; b++)   /* plus a smooth part, so that the tokens are not noise */
        for (c = 0; c < 3; c++)
            for (y = 0; y < S; y++)
                for (x = 0; x < S; x++)
                    img[(((size_t)b * 3 + c) * S + y) * S + x] += 0.25f + 0.25f * sinf(0.3f * (float)(x + 2 * y + 5 * c + 7 * b));
}

static textok_titok_config dt_config(void)
{
    textok_titok_config c;
    memset(&c, 0, sizeof c);
    c.image_size = 32; c.patch_size = 4; c.num_latent_tokens = 16; c.token_size = 8;
    c.enc_width = 64; c.enc_layers = 2; c.enc_heads = 4; c.enc_mlp = 128;
    c.dec_width = 64; c.dec_layers = 2; c.dec_heads = 4; c.dec_mlp = 128;
    c.quantize_mode = TEXTOK_QUANT_VQ; c.codebook_size = 64; c.use_l2_norm = 1;
    return c;
}

static void dt_tokenizer(dt_result *r, int threads)
{
    textok_titok_config cfg = dt_config();
    textok_params p = textok_default_params();
    textok_kernels k = textok_cpu_kernels(threads);
    textok_train_config tc;
    textok_titok *m = NULL;
    textok_trainer *t = NULL;
    textok_lpips *lp = NULL;
    textok_disc *disc = NULL;
    textok_disc_config dc;
    static const int lpips_ch[5] = { 8, 8, 16, 16, 16 };
    const int S = cfg.image_size;
    float *img = (float *)malloc((size_t)DT_B * 3 * S * S * sizeof(float)), *buf = NULL;
    textok_tensor_spec *specs = NULL;
    int i, n_specs, step;
    r->ok = 0;
    r->recon = (float *)malloc((size_t)DT_B * 3 * S * S * sizeof(float));
    p.n_threads = threads; p.kernels = &k; p.max_batch = DT_B;
    dt_images(img, DT_B, S, 7);
    if (textok_titok_create(&m, &cfg, &p, 11) != TEXTOK_OK ||
        textok_titok_encode(m, img, DT_B, NULL, r->tokens, NULL, NULL, NULL) != TEXTOK_OK ||
        textok_titok_decode_tokens(m, r->tokens, DT_B, NULL, r->recon) != TEXTOK_OK)
        goto done;
    textok_train_preset(&tc, "tiny");
    tc.batch = DT_B; tc.warmup_steps = 1; tc.disc_start = 1;
    dc = textok_disc_default_config();
    dc.hidden = 8; dc.stages = 2; dc.groups = 4; dc.pool = 2;
    if (textok_lpips_create(&lp, lpips_ch, &p, 31) != TEXTOK_OK || textok_disc_create(&disc, &dc, S, &p, 41) != TEXTOK_OK ||
        textok_trainer_create(&t, m, lp, disc, &tc, 5) != TEXTOK_OK)
        goto done;
    for (step = 0; step < DT_STEPS; step++) {
        textok_train_stats st;
        dt_images(img, DT_B, S, 100u + (unsigned)step);
        if (textok_trainer_step(t, img, NULL, &st) != TEXTOK_OK) goto done;
        r->losses[step][0] = st.total; r->losses[step][1] = st.recon; r->losses[step][2] = st.perceptual;
        r->losses[step][3] = st.quantizer; r->losses[step][4] = st.gen; r->losses[step][5] = st.d_total;
    }
    n_specs = textok_titok_tensor_specs(&cfg, NULL, 0);
    specs = (textok_tensor_spec *)calloc((size_t)n_specs, sizeof *specs);
    textok_titok_tensor_specs(&cfg, specs, n_specs);
    r->params_hash = 14695981039346656037ull;
    for (i = 0; i < n_specs; i++) {
        size_t numel = 1;
        int d;
        char name[200];
        for (d = 0; d < specs[i].ndim; d++) numel *= (size_t)specs[i].shape[d];
        buf = (float *)realloc(buf, numel * sizeof(float));
        snprintf(name, sizeof name, "param.%s", specs[i].name);
        if (textok_trainer_get(t, name, buf, numel) != TEXTOK_OK) goto done;
        r->params_hash = dt_fnv(r->params_hash, buf, numel * sizeof(float));
    }
    r->ok = 1;
done:
    if (!r->ok) printf("determinism: tokenizer on %d threads: %s\n", threads, textok_last_error());
    textok_trainer_free(t); textok_disc_free(disc); textok_lpips_free(lp); textok_titok_free(m);
    free(img); free(buf); free(specs);
}

/* A tiny class-conditional 1D DiT: DT_STEPS generator-trainer steps (losses, parameters after),
   then 10 DDPM steps with classifier-free guidance from a seeded RNG (the samples). */
static void dt_generator(dt_result *r, int threads)
{
    textok_dit_config c;
    textok_params p = textok_default_params();
    textok_kernels k = textok_cpu_kernels(threads);
    textok_gen_train_config tc;
    textok_dit_sample_config sc;
    textok_dit *m = NULL;
    textok_gen_trainer *t = NULL;
    textok_tensor_spec *specs = NULL;
    textok_rng rng;
    float lat[DT_B * 8 * 16], *buf = NULL, out[DT_B * 8 * 16];
    int32_t y[DT_B] = { 1, 3 };
    int i, n_specs, step;
    r->ok = 0;
    memset(&c, 0, sizeof c);
    c.in_channels = 8; c.input_size = 16; c.seq_1d = 1; c.patch_size = 1;
    c.hidden = 64; c.depth = 2; c.heads = 4; c.mlp_hidden = 128;
    c.num_classes = 4; c.learn_sigma = 1; c.guide_channels = 8; c.latent_scale = 1.0f;
    p.n_threads = threads; p.kernels = &k; p.max_batch = 2 * DT_B;
    textok_gen_train_preset(&tc, "tiny");
    tc.batch = DT_B; tc.warmup_steps = 1;
    if (textok_dit_create(&m, &c, &p, 21) != TEXTOK_OK || textok_gen_trainer_create(&t, m, NULL, &tc, 23) != TEXTOK_OK)
        goto done;
    for (step = 0; step < DT_STEPS; step++) {
        textok_gen_train_stats st;
        textok_rng_seed(&rng, 300u + (unsigned)step);
        textok_rng_fill_normal(&rng, lat, sizeof lat / sizeof lat[0], 0.0f, 1.0f);
        if (textok_gen_trainer_step(t, lat, NULL, y, NULL, &st) != TEXTOK_OK) goto done;
        r->gen_losses[step] = st.loss;
    }
    n_specs = textok_dit_tensor_specs(&c, NULL, 0);
    specs = (textok_tensor_spec *)calloc((size_t)n_specs, sizeof *specs);
    textok_dit_tensor_specs(&c, specs, n_specs);
    r->gen_params_hash = 14695981039346656037ull;
    for (i = 0; i < n_specs; i++) {
        size_t numel = 1;
        int d;
        char name[200];
        for (d = 0; d < specs[i].ndim; d++) numel *= (size_t)specs[i].shape[d];
        buf = (float *)realloc(buf, numel * sizeof(float));
        snprintf(name, sizeof name, "param.%s", specs[i].name);
        if (textok_gen_trainer_get(t, name, buf, numel) != TEXTOK_OK) goto done;
        r->gen_params_hash = dt_fnv(r->gen_params_hash, buf, numel * sizeof(float));
    }
    sc = textok_dit_sample_default();
    sc.steps = 10;
    textok_rng_seed(&rng, 77);
    if (textok_dit_generate(m, &sc, y, NULL, DT_B, &rng, out) != TEXTOK_OK) goto done;
    r->gen_sample_hash = dt_fnv(14695981039346656037ull, out, sizeof out);
    r->ok = 1;
done:
    if (!r->ok) printf("determinism: generator on %d threads: %s\n", threads, textok_last_error());
    textok_gen_trainer_free(t); textok_dit_free(m);
    free(buf); free(specs);
}

void test_determinism(tt_stats *s)
{
    static const int threads[3] = { 1, 2, 3 };
    dt_result r[3];
    textok_kernels k1 = textok_cpu_kernels(1);
    const int blas = strstr(k1.name, "blas") != NULL;
    const size_t nrecon = (size_t)DT_B * 3 * 32 * 32;
    int i;
    memset(r, 0, sizeof r);
    for (i = 0; i < 3; i++) dt_tokenizer(&r[i], threads[i]);
    for (i = 1; i < 3; i++) {
        const int same_tok = r[0].ok && r[i].ok && !memcmp(r[0].tokens, r[i].tokens, sizeof r[0].tokens);
        const int same_rec = r[0].ok && r[i].ok && !memcmp(r[0].recon, r[i].recon, nrecon * sizeof(float));
        const int same_loss = r[0].ok && r[i].ok && !memcmp(r[0].losses, r[i].losses, sizeof r[0].losses);
        const int same_par = r[0].ok && r[i].ok && r[0].params_hash == r[i].params_hash;
        const int ok = same_tok && same_rec && same_loss && same_par;
        tt_check(s, ok || blas,
                 "determinism tokenizer ('%s') 1 vs %d threads: tokens %s, reconstructions %s, %d steps' losses %s "
                 "(last total %.9g vs %.9g), params hash %016llx vs %016llx%s", k1.name, threads[i],
                 same_tok ? "same" : "DIFFER", same_rec ? "same" : "DIFFER", DT_STEPS, same_loss ? "same" : "DIFFER",
                 r[0].losses[DT_STEPS - 1][0], r[i].losses[DT_STEPS - 1][0], (unsigned long long)r[0].params_hash,
                 (unsigned long long)r[i].params_hash, !ok && blas ? " (blas level: reported only)" : "");
    }
    for (i = 0; i < 3; i++) dt_generator(&r[i], threads[i]);
    for (i = 1; i < 3; i++) {
        const int same_loss = r[0].ok && r[i].ok && !memcmp(r[0].gen_losses, r[i].gen_losses, sizeof r[0].gen_losses);
        const int same_par = r[0].ok && r[i].ok && r[0].gen_params_hash == r[i].gen_params_hash;
        const int same_smp = r[0].ok && r[i].ok && r[0].gen_sample_hash == r[i].gen_sample_hash;
        const int ok = same_loss && same_par && same_smp;
        tt_check(s, ok || blas,
                 "determinism DiT generator ('%s') 1 vs %d threads: %d steps' losses %s (last %.9g vs %.9g), params hash "
                 "%016llx vs %016llx, 10-step CFG samples %s%s", k1.name, threads[i], DT_STEPS, same_loss ? "same" : "DIFFER",
                 r[0].gen_losses[DT_STEPS - 1], r[i].gen_losses[DT_STEPS - 1], (unsigned long long)r[0].gen_params_hash,
                 (unsigned long long)r[i].gen_params_hash, same_smp ? "same" : "DIFFER", !ok && blas ? " (blas level: reported only)" : "");
    }
    for (i = 0; i < 3; i++) free(r[i].recon);
}
