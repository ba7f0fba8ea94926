/* Training: the tokenizer backward pass by finite differences, a seeded convergence run,
   resume-equals-uninterrupted bit for bit, and the failure paths (non-finite loss, bad
   checkpoints). The PyTorch comparison of whole training steps (every loss, every gradient,
   AdamW) is in test_train_golden.

   Finite differences: the trainer with lr = 0 computes the loss and its gradient without moving
   the parameters, so each probe is textok_trainer_set + textok_trainer_step. The loss is a float
   reduced in double; with h = 2e-3 the central difference carries ~1e-7 |L| / h rounding and
   O(h^2) curvature error, so the probes are compared as one vector per model by relative L2
   with tolerance 2e-2 (a wrong term or index gives O(1)). The non-smooth parts are handled
   explicitly:
     - VQ: the token ids must not change under a probe (checked), and only the decoder's
       parameters are probed. The encoder and codebook gradients of a VQ model are NOT
       derivatives of the loss (the straight-through estimator passes the decoder's gradient to
       z; the codebook sees only the codebook term), so they are checked against PyTorch's
       autograd of the same STE in the golden step instead;
     - VAE: the posterior mean is decoded (vae_sample = 0) so the loss is smooth in every
       parameter; the sampled path's gradient (reparameterisation) is the gaussian_sample
       kernel's, checked by its own FD test and by the golden step;
     - L1: |x - y| is smooth away from x = y, which random images never hit. */
#include "check.h"
#include "textok.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#define TR_FD_H   2e-3f
#define TR_FD_TOL 5e-3
#define TR_FD_B   3     /* images per probe: more than 2, so per-image offsets are exercised */

static textok_titok_config tr_config(int legacy, int vae)
{
    textok_titok_config c;
    memset(&c, 0, sizeof c);
    c.image_size = 16; c.patch_size = 4; c.num_latent_tokens = 4; c.token_size = 6;
    c.enc_width = 32; c.enc_layers = 2; c.enc_heads = 2; c.enc_mlp = 64;
    c.dec_width = 32; c.dec_layers = 1; c.dec_heads = 2; c.dec_mlp = 48;
    c.quantize_mode = vae ? TEXTOK_QUANT_VAE : TEXTOK_QUANT_VQ;
    c.codebook_size = vae ? 0 : 16;
    c.use_l2_norm = !vae;
    c.is_legacy = legacy;
    if (legacy) {
        c.pixel_codebook_size = 16; c.pixel_z_channels = 8; c.pixel_hidden = 8; c.pixel_num_levels = 3;
        c.pixel_channel_mult[0] = 1; c.pixel_channel_mult[1] = 1; c.pixel_channel_mult[2] = 2;
        c.pixel_res_blocks = 1; c.pixel_groups = 4;
    }
    return c;
}

/* Smooth, seeded images: sums of a few oriented sinusoids and a disc, in [0, 1]. */
static void tr_images(float *img, int B, int S, unsigned seed)
{
    textok_rng r;
    int b, ch, y, x;
    textok_rng_seed(&r, seed);
    for (b = 0; b < B; b++) {
        float fx = 1.0f + 3.0f * textok_rng_uniform(&r), fy = 1.0f + 3.0f * textok_rng_uniform(&r);
        float cx = S * textok_rng_uniform(&r), cy = S * textok_rng_uniform(&r), rad = S * (0.15f + 0.2f * textok_rng_uniform(&r));
        for (ch = 0; ch < 3; ch++) {
            float ph = 6.28f * textok_rng_uniform(&r), amp = 0.2f + 0.2f * textok_rng_uniform(&r), base = textok_rng_uniform(&r);
            for (y = 0; y < S; y++)
                for (x = 0; x < S; x++) {
                    float v = 0.5f + amp * sinf(fx * 6.28f * x / S + fy * 6.28f * y / S + ph);
                    if ((x - cx) * (x - cx) + (y - cy) * (y - cy) < rad * rad) v = base;
                    img[(((size_t)b * 3 + ch) * S + y) * S + x] = v < 0 ? 0 : v > 1 ? 1 : v;
                }
        }
    }
}

/* Linear colour ramps (3 numbers per channel): what a 24-number latent can hold for 16 images */
static void tr_ramps(float *img, int B, int S, unsigned seed)
{
    textok_rng r;
    int b, ch, y, x;
    textok_rng_seed(&r, seed);
    for (b = 0; b < B; b++)
        for (ch = 0; ch < 3; ch++) {
            float base = 0.2f + 0.6f * textok_rng_uniform(&r), gx = textok_rng_uniform(&r) - 0.5f, gy = textok_rng_uniform(&r) - 0.5f;
            for (y = 0; y < S; y++)
                for (x = 0; x < S; x++)
                    img[(((size_t)b * 3 + ch) * S + y) * S + x] = base + 1.5f * gx * ((float)x / S - 0.5f) + 1.5f * gy * ((float)y / S - 0.5f);
        }
}

static int tr_starts(const char *s, const char *p) { return strncmp(s, p, strlen(p)) == 0; }

/* FD of the total loss against the analytical gradient for up to 3 coordinates of every tensor
   accepted by `probe` */
static void tr_fd(tt_stats *s, const char *label, int legacy, int vae, int l1, int decoder_only)
{
    textok_titok_config cfg = tr_config(legacy, vae);
    textok_params p = textok_default_params();
    textok_train_config tc;
    textok_titok *m = NULL;
    textok_trainer *t = NULL;
    textok_train_stats st;
    textok_tensor_spec *specs = NULL;
    float *img = NULL, *buf = NULL, *grad = NULL, an[1024], fd[1024];
    int32_t ids0[64], ids1[64];
    int n_specs, i, j, n = 0, ids_stable = 1;
    size_t S = (size_t)cfg.image_size;
    p.max_batch = TR_FD_B;
    textok_train_preset(&tc, "tiny");
    tc.batch = TR_FD_B; tc.perceptual_weight = 0; tc.disc_weight = 0; tc.lr = tc.end_lr = 0; tc.disc_lr = tc.disc_end_lr = 0;
    tc.warmup_steps = 0; tc.grad_clip = 0; tc.ema_decay = 0; tc.recon_l1 = l1; tc.vae_sample = 0;
    tc.kl_weight = 0.05f; tc.quantizer_weight = 0.5f; tc.commitment_cost = 0.25f;
    if (textok_titok_create(&m, &cfg, &p, 77) != TEXTOK_OK || textok_trainer_create(&t, m, NULL, NULL, &tc, 5) != TEXTOK_OK) {
        tt_check(s, 0, "train fd %s: create: %s", label, textok_last_error());
        goto done;
    }
    img = (float *)malloc(TR_FD_B * 3 * S * S * sizeof(float));
    tr_images(img, TR_FD_B, (int)S, 11);
    n_specs = textok_titok_tensor_specs(&cfg, NULL, 0);
    specs = (textok_tensor_spec *)calloc((size_t)n_specs, sizeof *specs);
    textok_titok_tensor_specs(&cfg, specs, n_specs);
    if (legacy) {
        /* TiTok's init leaves the pixel decoder nearly degenerate (0.02-std convs over a
           +-1/16 codebook, so GroupNorm divides by tiny variances and the loss is far from
           linear over a probe); give it unit-scale activations first */
        textok_rng r;
        textok_rng_seed(&r, 8);
        for (i = 0; i < n_specs; i++) {
            size_t numel = 1;
            int d;
            char name[160];
            if (!tr_starts(specs[i].name, "pixel_") || specs[i].ndim < 2) continue;
            for (d = 0; d < specs[i].ndim; d++) numel *= (size_t)specs[i].shape[d];
            buf = (float *)realloc(buf, numel * sizeof(float));
            textok_rng_fill_normal(&r, buf, numel, 0.0f, specs[i].ndim == 4 ? 1.0f / sqrtf((float)(numel / (size_t)specs[i].shape[0])) : 1.0f);
            snprintf(name, sizeof name, "param.%s", specs[i].name);
            textok_trainer_set(t, name, buf, numel);
        }
    }
    if (textok_trainer_step(t, img, NULL, &st) != TEXTOK_OK) { tt_check(s, 0, "train fd %s: step: %s", label, textok_last_error()); goto done; }
    if (!vae) textok_titok_encode(m, img, TR_FD_B, NULL, ids0, NULL, NULL, NULL);
    for (i = 0; i < n_specs && n < 1000; i++) {
        size_t numel = 1;
        char name[160];
        int d;
        if (decoder_only && !(tr_starts(specs[i].name, "decoder.") || tr_starts(specs[i].name, "pixel_"))) continue;
        for (d = 0; d < specs[i].ndim; d++) numel *= (size_t)specs[i].shape[d];
        buf = (float *)realloc(buf, numel * sizeof(float));
        grad = (float *)realloc(grad, numel * sizeof(float));
        snprintf(name, sizeof name, "param.%s", specs[i].name);
        textok_trainer_get(t, name, buf, numel);
        snprintf(name, sizeof name, "grad.%s", specs[i].name);
        if (textok_trainer_step(t, img, NULL, &st) != TEXTOK_OK) break;   /* refresh grads at the base point */
        textok_trainer_get(t, name, grad, numel);
        snprintf(name, sizeof name, "param.%s", specs[i].name);
        for (j = 0; j < 3 && (size_t)j < numel; j++) {
            size_t idx = (size_t)j * 7919 % numel;
            float x0 = buf[idx];
            double lp, lm;
            buf[idx] = x0 + TR_FD_H; textok_trainer_set(t, name, buf, numel);
            textok_trainer_step(t, img, NULL, &st); lp = st.total;
            if (!vae) { textok_titok_encode(m, img, TR_FD_B, NULL, ids1, NULL, NULL, NULL); ids_stable &= !memcmp(ids0, ids1, sizeof(int32_t) * TR_FD_B * cfg.num_latent_tokens); }
            buf[idx] = x0 - TR_FD_H; textok_trainer_set(t, name, buf, numel);
            textok_trainer_step(t, img, NULL, &st); lm = st.total;
            if (!vae) { textok_titok_encode(m, img, TR_FD_B, NULL, ids1, NULL, NULL, NULL); ids_stable &= !memcmp(ids0, ids1, sizeof(int32_t) * TR_FD_B * cfg.num_latent_tokens); }
            buf[idx] = x0; textok_trainer_set(t, name, buf, numel);
            an[n] = grad[idx];
            fd[n] = (float)((lp - lm) / (2.0 * TR_FD_H));
            if (getenv("TR_VERBOSE")) printf("  %s[%lu] an %.6g fd %.6g\n", name, (unsigned long)idx, an[n], fd[n]);
            n++;
        }
    }
    if (!vae) tt_check(s, ids_stable, "train fd %s: token ids unchanged under every probe", label);
    {
        char nm[128];
        snprintf(nm, sizeof nm, "train fd %s (%d probes)", label, n);
        tt_compare(s, nm, an, fd, (size_t)n, TR_FD_TOL);
    }
done:
    free(img); free(buf); free(grad); free(specs);
    textok_trainer_free(t);
    textok_titok_free(m);
}

/* mean squared reconstruction error of all n images through encode + decode */
static double tr_mse(textok_titok *m, const float *img, int n, int S)
{
    const textok_titok_config *c = textok_titok_get_config(m);
    size_t ni = (size_t)3 * S * S, i;
    float *rec = (float *)malloc((size_t)n * ni * sizeof(float));
    float *lat = (float *)malloc((size_t)n * c->token_size * c->num_latent_tokens * sizeof(float));
    double e = 0.0;
    textok_titok_encode(m, img, n, NULL, NULL, lat, NULL, NULL);
    textok_titok_decode_latents(m, lat, n, NULL, rec);
    for (i = 0; i < (size_t)n * ni; i++) e += ((double)rec[i] - img[i]) * ((double)rec[i] - img[i]);
    free(rec); free(lat);
    return e / ((double)n * ni);
}

/* Re-initialises every matrix as N(0, 1/fan_in), embeddings as N(0, 0.25), as
   tools/titok_ref.py's init_weights. TiTok's own init (trunc-normal 0.02, embeddings D^-1/2) is
   made for 512-1024 wide stacks: on a 32-wide test model the decoder learns the mean image and
   the latents stay unused for the first thousand steps (measured, and the same in PyTorch with
   the same weights), so a few hundred steps would test nothing. */
static void tr_reinit(textok_trainer *t, const textok_titok_config *cfg, unsigned seed)
{
    int n = textok_titok_tensor_specs(cfg, NULL, 0), i, d;
    textok_tensor_spec *specs = (textok_tensor_spec *)calloc((size_t)n, sizeof *specs);
    textok_rng r;
    float *buf = NULL;
    textok_rng_seed(&r, seed);
    textok_titok_tensor_specs(cfg, specs, n);
    for (i = 0; i < n; i++) {
        size_t numel = 1;
        char name[160];
        int embed = strstr(specs[i].name, "embedding") || strstr(specs[i].name, "latent_tokens") || strstr(specs[i].name, "mask_token");
        if (specs[i].ndim < 2) continue;
        for (d = 0; d < specs[i].ndim; d++) numel *= (size_t)specs[i].shape[d];
        buf = (float *)realloc(buf, numel * sizeof(float));
        textok_rng_fill_normal(&r, buf, numel, 0.0f, embed ? 0.5f : 1.0f / sqrtf((float)(numel / (size_t)specs[i].shape[0])));
        snprintf(name, sizeof name, "param.%s", specs[i].name);
        textok_trainer_set(t, name, buf, numel);
    }
    free(buf); free(specs);
}

/* 16 images, a few hundred steps: the reconstruction MSE must fall at least 10x */
static void tr_converge(tt_stats *s, int vae)
{
    textok_titok_config cfg = tr_config(0, vae);
    textok_params p = textok_default_params();
    textok_train_config tc;
    textok_titok *m = NULL;
    textok_trainer *t = NULL;
    textok_train_stats st;
    const int n_img = 16, S = cfg.image_size, steps = vae ? 800 : 400;
    size_t ni = (size_t)3 * S * S;
    float *img = (float *)malloc(n_img * ni * sizeof(float)), *batch = (float *)malloc(4 * ni * sizeof(float));
    double mse0, mse1;
    int i, j, ok = 1;
    cfg.codebook_size = 64;
    p.max_batch = 16;
    textok_train_preset(&tc, "tiny");
    tc.batch = 4; tc.perceptual_weight = 0; tc.disc_weight = 0; tc.lr = 2e-3; tc.end_lr = 1e-3;
    tc.warmup_steps = 10; tc.total_steps = steps; tc.kl_weight = 1e-6f;
    tr_ramps(img, n_img, S, 2024);
    if (textok_titok_create(&m, &cfg, &p, 3) != TEXTOK_OK || textok_trainer_create(&t, m, NULL, NULL, &tc, 9) != TEXTOK_OK) {
        tt_check(s, 0, "train converge: create: %s", textok_last_error());
        goto done;
    }
    tr_reinit(t, &cfg, 4);
    mse0 = tr_mse(m, img, n_img, S);
    for (i = 0; i < steps && ok; i++) {
        for (j = 0; j < 4; j++) {   /* batches drawn from the trainer's RNG: part of its checkpointed state */
            int pick = (int)(textok_rng_u32(textok_trainer_rng(t)) % (uint32_t)n_img);
            memcpy(batch + j * ni, img + pick * ni, ni * sizeof(float));
        }
        ok = textok_trainer_step(t, batch, NULL, &st) == TEXTOK_OK;
    }
    mse1 = tr_mse(m, img, n_img, S);
    {   /* and well below the best constant image (the per-pixel variance over the set), so the
           latents carry the images, not just their mean */
        double var = 0.0, mean;
        size_t q;
        int b2;
        for (q = 0; q < ni; q++) {
            for (mean = 0.0, b2 = 0; b2 < n_img; b2++) mean += img[b2 * ni + q];
            mean /= n_img;
            for (b2 = 0; b2 < n_img; b2++) var += (img[b2 * ni + q] - mean) * (img[b2 * ni + q] - mean);
        }
        var /= (double)n_img * ni;
        const double need = vae ? 1.5 : 0.0;   /* VQ through a 64-entry codebook takes thousands of steps to beat the mean image */
        tt_check(s, ok && mse1 * 10.0 <= mse0 && mse1 * need <= var,
                 "train converge %s: 16 images, %d steps: MSE %.5f -> %.5f (%.1fx, need >= 10x; %.2fx below the mean-image MSE %.5f, need >= %.1fx)",
                 vae ? "vae" : "vq", steps, mse0, mse1, mse0 / mse1, var / mse1, var, need);
    }
done:
    free(img); free(batch);
    textok_trainer_free(t);
    textok_titok_free(m);
}

/* Runs `steps` steps from a fresh seeded model; when save_at >= 0, saves there, throws the
   trainer and model away, and resumes from the file into a freshly created pair. Returns the
   final parameter, EMA and moment blocks concatenated (caller frees). */
static float *tr_run(tt_stats *s, int legacy, int vae, int gan, int steps, int save_at, size_t *n_out)
{
    textok_titok_config cfg = tr_config(legacy, vae);
    textok_params p = textok_default_params();
    textok_train_config tc;
    textok_titok *m = NULL;
    textok_trainer *t = NULL;
    textok_lpips *lp = NULL;
    textok_disc *disc = NULL;
    textok_disc_config dc;
    static const int lpips_ch[5] = { 4, 8, 8, 16, 16 };
    textok_tensor_spec *specs;
    const char *path = "build/tr_resume.safetensors";
    size_t ni = (size_t)3 * cfg.image_size * cfg.image_size, total = 0, off = 0;
    float *img = (float *)malloc(2 * ni * sizeof(float)), *out = NULL;
    int i, n_specs, b;
    static const char *const blocks[] = { "param.", "ema.", "adam_m.", "adam_v." };
    static const char *const dblocks[] = { "disc.param.", "disc.adam_m.", "disc.adam_v." };
    p.max_batch = 2;
    textok_train_preset(&tc, "tiny");
    tc.batch = 2; tc.warmup_steps = 2; tc.vae_sample = 1;
    if (!gan) { tc.perceptual_weight = 0; tc.disc_weight = 0; }
    tc.disc_start = 1;   /* the GAN switches on mid-run: its state must survive the checkpoint */
    dc = textok_disc_default_config();
    dc.hidden = 8; dc.stages = 2; dc.groups = 4; dc.pool = 2;
    n_specs = textok_titok_tensor_specs(&cfg, NULL, 0);
    specs = (textok_tensor_spec *)calloc((size_t)n_specs, sizeof *specs);
    textok_titok_tensor_specs(&cfg, specs, n_specs);
    for (i = 0; i <= steps; i++) {
        if (i == 0 || i == save_at) {
            if (i == save_at) {
                if (textok_trainer_save(t, path) != TEXTOK_OK) { tt_check(s, 0, "resume: save: %s", textok_last_error()); break; }
                textok_trainer_free(t); textok_titok_free(m); textok_lpips_free(lp); textok_disc_free(disc);
                t = NULL; m = NULL; lp = NULL; disc = NULL;
            }
            if (textok_titok_create(&m, &cfg, &p, 21) != TEXTOK_OK ||
                (gan && (textok_lpips_create(&lp, lpips_ch, &p, 31) != TEXTOK_OK ||
                         textok_disc_create(&disc, &dc, cfg.image_size, &p, 41) != TEXTOK_OK)) ||
                textok_trainer_create(&t, m, lp, disc, &tc, 4) != TEXTOK_OK) {
                tt_check(s, 0, "resume: create: %s", textok_last_error());
                break;
            }
            if (i == save_at && textok_trainer_load(t, path) != TEXTOK_OK) { tt_check(s, 0, "resume: load: %s", textok_last_error()); break; }
        }
        if (i == steps) break;
        tr_images(img, 2, cfg.image_size, 100u + (unsigned)i);
        if (textok_trainer_step(t, img, NULL, NULL) != TEXTOK_OK) { tt_check(s, 0, "resume: step: %s", textok_last_error()); break; }
    }
    if (t) {
        size_t n_params = textok_titok_num_params(m);
        int nd = 0;
        textok_tensor_spec *ds = NULL;
        total = 4 * n_params + 2;
        if (gan) {
            nd = textok_disc_tensor_specs(&dc, NULL, 0);
            ds = (textok_tensor_spec *)calloc((size_t)nd, sizeof *ds);
            textok_disc_tensor_specs(&dc, ds, nd);
            for (i = 0; i < nd; i++) {
                size_t numel = 1;
                int d;
                for (d = 0; d < ds[i].ndim; d++) numel *= (size_t)ds[i].shape[d];
                total += 3 * numel;
            }
        }
        out = (float *)malloc(total * sizeof(float));
        for (b = 0; b < 3 && gan; b++)
            for (i = 0; i < nd; i++) {
                char name[160];
                size_t numel = 1;
                int d;
                for (d = 0; d < ds[i].ndim; d++) numel *= (size_t)ds[i].shape[d];
                snprintf(name, sizeof name, "%s%s", dblocks[b], ds[i].name);
                textok_trainer_get(t, name, out + off, numel);
                off += numel;
            }
        textok_trainer_get(t, "lecam_ema", out + off, 2);
        off += 2;
        free(ds);
        for (b = 0; b < 4; b++)
            for (i = 0; i < n_specs; i++) {
                char name[160];
                size_t numel = 1;
                int d;
                for (d = 0; d < specs[i].ndim; d++) numel *= (size_t)specs[i].shape[d];
                snprintf(name, sizeof name, "%s%s", blocks[b], specs[i].name);
                textok_trainer_get(t, name, out + off, numel);
                off += numel;
            }
    }
    *n_out = total;
    free(img); free(specs);
    textok_trainer_free(t);
    textok_titok_free(m);
    textok_lpips_free(lp);
    textok_disc_free(disc);
    return out;
}

static void tr_resume(tt_stats *s, int legacy, int vae, int gan)
{
    size_t n1 = 0, n2 = 0;
    float *a = tr_run(s, legacy, vae, gan, 6, -1, &n1), *b = tr_run(s, legacy, vae, gan, 6, 3, &n2);
    tt_check(s, a && b && n1 == n2 && n1 > 0 && !memcmp(a, b, n1 * sizeof(float)),
             "resume %s %s%s: 6 steps uninterrupted == 3 steps, checkpoint, fresh objects, load, 3 steps: params, EMA, both moments%s bit-identical (%lu values)",
             legacy ? "legacy" : "direct-head", vae ? "vae" : "vq", gan ? " + LPIPS + GAN from step 1" : "",
             gan ? ", discriminator and its moments, LeCAM anchors" : "", (unsigned long)n1);
    free(a); free(b);
}

/* Bad input: a non-finite batch, checkpoints of another config or another kind, a truncated one */
static void tr_bad(tt_stats *s)
{
    textok_titok_config cfg = tr_config(0, 1), other = tr_config(0, 1);
    textok_params p = textok_default_params();
    textok_train_config tc;
    textok_titok *m = NULL, *m2 = NULL;
    textok_trainer *t = NULL, *t2 = NULL;
    size_t ni = (size_t)3 * cfg.image_size * cfg.image_size, np;
    float *img = (float *)malloc(2 * ni * sizeof(float)), *before, *after;
    int st;
    FILE *f;
    p.max_batch = 2;
    textok_train_preset(&tc, "tiny");
    tc.batch = 2; tc.perceptual_weight = 0; tc.disc_weight = 0;
    if (textok_titok_create(&m, &cfg, &p, 1) != TEXTOK_OK || textok_trainer_create(&t, m, NULL, NULL, &tc, 1) != TEXTOK_OK) {
        tt_check(s, 0, "train bad: create: %s", textok_last_error());
        goto done;
    }
    np = textok_titok_num_params(m);
    before = (float *)malloc(np * sizeof(float)); after = (float *)malloc(np * sizeof(float));
    tr_images(img, 2, cfg.image_size, 5);
    textok_trainer_save(t, "build/tr_good.safetensors");
    textok_trainer_get(t, "param.decoder.ln_post.weight", before, (size_t)cfg.dec_width);
    img[17] = (float)NAN;
    st = textok_trainer_step(t, img, NULL, NULL);
    textok_trainer_get(t, "param.decoder.ln_post.weight", after, (size_t)cfg.dec_width);
    tt_check(s, st == TEXTOK_ERR_FORMAT && !memcmp(before, after, (size_t)cfg.dec_width * sizeof(float)) && textok_trainer_steps_done(t) == 0,
             "train bad: NaN in the batch stops the step, parameters unchanged (status %d): %s", st, textok_last_error());
    free(before); free(after);
    other.dec_width = 48; other.dec_mlp = 96;
    textok_titok_create(&m2, &other, &p, 1);
    textok_trainer_create(&t2, m2, NULL, NULL, &tc, 1);
    st = t2 ? textok_trainer_load(t2, "build/tr_good.safetensors") : -99;
    tt_check(s, st == TEXTOK_ERR_SHAPE && strstr(textok_last_error(), "tr_good.safetensors"),
             "train bad: resume into another config refused (status %d): %s", st, textok_last_error());
    textok_trainer_save_model(t, "build/tr_model.safetensors", 1);
    st = textok_trainer_load(t, "build/tr_model.safetensors");
    tt_check(s, st == TEXTOK_ERR_FORMAT, "train bad: a model file is not a checkpoint (status %d): %s", st, textok_last_error());
    st = textok_trainer_load(t, "build/does_not_exist.safetensors");
    tt_check(s, st == TEXTOK_ERR_IO, "train bad: missing checkpoint (status %d): %s", st, textok_last_error());
    f = fopen("build/tr_good.safetensors", "rb");
    if (f) {
        long size;
        char *bytes;
        fseek(f, 0, SEEK_END); size = ftell(f); fseek(f, 0, SEEK_SET);
        bytes = (char *)malloc((size_t)size);
        if (fread(bytes, 1, (size_t)size, f) != (size_t)size) size = 0;
        fclose(f);
        f = fopen("build/tr_trunc.safetensors", "wb");
        if (f) { fwrite(bytes, 1, (size_t)size / 2, f); fclose(f); }
        free(bytes);
    }
    st = textok_trainer_load(t, "build/tr_trunc.safetensors");
    tt_check(s, st == TEXTOK_ERR_FORMAT, "train bad: a checkpoint cut in half is refused (status %d): %s", st, textok_last_error());
    {   /* the model file written from the trainer loads as a model */
        textok_titok *m3 = NULL;
        st = textok_titok_load(&m3, "build/tr_model.safetensors", &p);
        tt_check(s, st == TEXTOK_OK, "train: textok_trainer_save_model output loads with textok_titok_load (status %d)", st);
        textok_titok_free(m3);
    }
    {
        textok_trainer *t3 = NULL;
        textok_train_config bad = tc;
        bad.batch = 3;
        st = textok_trainer_create(&t3, m, NULL, NULL, &bad, 1);
        tt_check(s, st == TEXTOK_ERR_ARG && !t3, "train bad: batch above max_batch refused: %s", textok_last_error());
        bad = tc; bad.perceptual_weight = 0.1f;
        st = textok_trainer_create(&t3, m, NULL, NULL, &bad, 1);
        tt_check(s, st == TEXTOK_ERR_ARG && !t3, "train bad: perceptual loss without an LPIPS net refused: %s", textok_last_error());
        bad = tc; bad.ema_decay = 1.5;
        st = textok_trainer_create(&t3, m, NULL, NULL, &bad, 1);
        tt_check(s, st == TEXTOK_ERR_ARG && !t3, "train bad: ema_decay 1.5 refused: %s", textok_last_error());
    }
done:
    free(img);
    textok_trainer_free(t); textok_trainer_free(t2);
    textok_titok_free(m); textok_titok_free(m2);
}


/* ----- the golden training steps (tools/gen_golden_train.py, float64 PyTorch) --------------
   Two consecutive steps of a tiny tokenizer per case with every loss of the case on: each loss,
   the gradient norms, the learning rates, the reconstructions, every tokenizer and
   discriminator gradient by name (after clipping: what AdamW consumed), the parameters and EMA
   after the update, and the LeCAM anchors. The bound is relative 1e-4 per tensor (L2);
   fp32 against float64 measures ~1e-6..1e-5. Scalars (losses) are held to 1e-4 relative too. */
#define TR_GOLD_TOL 1e-4

static double tr_meta_d(const textok_safetensors *st, const char *key, double dflt)
{
    const char *v = textok_st_meta(st, key);
    return v ? strtod(v, NULL) : dflt;
}

static void tr_golden_case(tt_stats *s, const char *name)
{
    char path[512], key[256];
    textok_safetensors ref;
    textok_params p = textok_default_params();
    textok_train_config tc;
    textok_titok *m = NULL;
    textok_disc *disc = NULL;
    textok_lpips *lp = NULL;
    textok_trainer *t = NULL;
    const textok_titok_config *cfg;
    int step, i;
    memset(&ref, 0, sizeof ref);
    snprintf(path, sizeof path, "%s/train/%s_ref.safetensors", tt_golden_dir, name);
    if (textok_st_open(&ref, path) != TEXTOK_OK) { tt_check(s, 0, "train golden %s: %s", name, textok_last_error()); return; }
    memset(&tc, 0, sizeof tc);
#define TR_F(f) tc.f = tr_meta_d(&ref, "train." #f, 0)
    TR_F(batch); TR_F(recon_l1); TR_F(recon_weight); TR_F(perceptual_weight); TR_F(quantizer_weight);
    TR_F(commitment_cost); TR_F(kl_weight); TR_F(vae_sample); TR_F(disc_weight); TR_F(disc_factor);
    TR_F(disc_start); TR_F(lecam_weight); TR_F(lecam_decay); TR_F(lr); TR_F(end_lr); TR_F(disc_lr);
    TR_F(disc_end_lr); TR_F(warmup_steps); TR_F(total_steps); TR_F(beta1); TR_F(beta2); TR_F(eps);
    TR_F(weight_decay); TR_F(grad_clip); TR_F(ema_decay);
#undef TR_F
    p.max_batch = tc.batch;
    snprintf(path, sizeof path, "%s/train/%s_model.safetensors", tt_golden_dir, name);
    if (textok_titok_load(&m, path, &p) != TEXTOK_OK) { tt_check(s, 0, "train golden %s: %s", name, textok_last_error()); goto done; }
    cfg = textok_titok_get_config(m);
    snprintf(path, sizeof path, "%s/train/%s_disc.safetensors", tt_golden_dir, name);
    if (textok_disc_load(&disc, path, &p) != TEXTOK_OK) { tt_check(s, 0, "train golden %s: %s", name, textok_last_error()); goto done; }
    snprintf(path, sizeof path, "%s/nets/lpips_tiny.safetensors", tt_golden_dir);
    if (tc.perceptual_weight > 0 && textok_lpips_load(&lp, path, &p) != TEXTOK_OK) { tt_check(s, 0, "train golden %s: %s", name, textok_last_error()); goto done; }
    if (textok_trainer_create(&t, m, lp, disc, &tc, (uint64_t)tr_meta_d(&ref, "rng_seed", 0)) != TEXTOK_OK) {
        tt_check(s, 0, "train golden %s: trainer: %s", name, textok_last_error());
        goto done;
    }
    textok_trainer_set_lecam(t, (float)tr_meta_d(&ref, "lecam_ema_real", 0), (float)tr_meta_d(&ref, "lecam_ema_fake", 0));
    for (step = 0; step < 2; step++) {
        static const char *const losses[] = { "recon", "perceptual", "quantizer", "kl", "gen", "hinge", "lecam", "total", "d_total" };
        textok_train_stats st;
        const textok_st_tensor *tt;
        float *img;
        double got[9];
        size_t nimg = (size_t)tc.batch * 3 * cfg->image_size * cfg->image_size;
        int ok;
        snprintf(key, sizeof key, "s%d.images", step);
        if (!(tt = textok_st_find(&ref, key)) || tt->numel != nimg) { tt_check(s, 0, "train golden %s: %s", name, key); break; }
        img = (float *)malloc(nimg * sizeof(float));
        textok_st_read_f32(&ref, tt, img, nimg);
        {   /* the text cases: s{n}.text (B, Lt, Dt) and s{n}.text_mask (B, Lt) as 0/1 floats */
            const textok_st_tensor *te, *tm;
            float *emb = NULL, *mf = NULL;
            unsigned char *mask = NULL;
            textok_text tx;
            snprintf(key, sizeof key, "s%d.text", step);
            te = textok_st_find(&ref, key);
            snprintf(key, sizeof key, "s%d.text_mask", step);
            tm = textok_st_find(&ref, key);
            memset(&tx, 0, sizeof tx);
            if (te && tm && te->ndim == 3 && tm->numel == (size_t)(te->shape[0] * te->shape[1])) {
                size_t j;
                emb = (float *)malloc(te->numel * sizeof(float));
                mf = (float *)malloc(tm->numel * sizeof(float));
                mask = (unsigned char *)malloc(tm->numel);
                textok_st_read_f32(&ref, te, emb, te->numel);
                textok_st_read_f32(&ref, tm, mf, tm->numel);
                for (j = 0; j < tm->numel; j++) mask[j] = mf[j] > 0.5f;
                tx.emb = emb; tx.mask = mask; tx.L = (int)te->shape[1]; tx.dim = (int)te->shape[2];
            }
            ok = textok_trainer_step(t, img, emb ? &tx : NULL, &st) == TEXTOK_OK;
            free(emb); free(mf); free(mask);
        }
        tt_check(s, ok, "train golden %s step %d runs: %s", name, step, ok ? "" : textok_last_error());
        free(img);
        if (!ok) break;
        got[0] = st.recon; got[1] = st.perceptual; got[2] = st.quantizer; got[3] = st.kl; got[4] = st.gen;
        got[5] = st.hinge; got[6] = st.lecam; got[7] = st.total; got[8] = st.d_total;
        for (i = 0; i < 9; i++) {
            float want = 0.0f;
            double err;
            snprintf(key, sizeof key, "s%d.loss.%s", step, losses[i]);
            if (!(tt = textok_st_find(&ref, key)) || textok_st_read_f32(&ref, tt, &want, 1) != TEXTOK_OK) { tt_check(s, 0, "train golden %s: no %s", name, key); continue; }
            err = fabs(got[i] - want) / (fabs(want) + 1e-12);
            if (want == 0.0f) err = fabs(got[i]);
            tt_check(s, err <= TR_GOLD_TOL, "train golden %s %-24s got %.9g want %.9g rel %.2e", name, key, got[i], want, err);
        }
        {   /* scalars: gradient norms, learning rates */
            const char *names[4] = { "grad_norm", "disc_grad_norm", "lr", NULL };
            double vals[3];
            vals[0] = st.grad_norm; vals[1] = st.disc_grad_norm; vals[2] = st.lr;
            for (i = 0; names[i]; i++) {
                float want = 0.0f;
                double err;
                snprintf(key, sizeof key, "s%d.%s", step, names[i]);
                if (!(tt = textok_st_find(&ref, key)) || textok_st_read_f32(&ref, tt, &want, 1) != TEXTOK_OK) continue;
                err = want == 0.0f ? fabs(vals[i]) : fabs(vals[i] - want) / fabs(want);
                tt_check(s, err <= TR_GOLD_TOL, "train golden %s %-24s got %.9g want %.9g rel %.2e", name, key, vals[i], want, err);
            }
        }
        snprintf(key, sizeof key, "s%d.recon_images", step);
        if ((tt = textok_st_find(&ref, key)) && tt->numel == nimg) {
            float *want = (float *)malloc(nimg * sizeof(float)), *gotr = (float *)malloc(nimg * sizeof(float));
            textok_st_read_f32(&ref, tt, want, nimg);
            textok_trainer_last_reconstruction(t, gotr);
            snprintf(path, sizeof path, "train golden %s %s", name, key);
            tt_compare(s, path, gotr, want, nimg, TR_GOLD_TOL);
            free(want); free(gotr);
        }
        /* every named tensor of the step: grad./param./ema./dgrad./dparam. and lecam_ema */
        {
            char prefix[16];
            int n_grad = 0, n_ok = 0, key_ok = 1;
            double worst = 0.0;
            /* step 1 starts from parameters that already carry step 0's fp32 rounding (~3e-5
               relative), and the legacy encoder's gradient reaches it through the l2-normalised
               STE and the pixel decoder, which amplifies that ~4x: step 1 is held to 5e-4 */
            const double tol = step == 0 ? TR_GOLD_TOL : 5e-4;
            char worst_name[160] = "";
            snprintf(prefix, sizeof prefix, "s%d.", step);
            for (i = 0; i < ref.n_tensors; i++) {
                const textok_st_tensor *x = &ref.tensors[i];
                const char *rest = x->name + strlen(prefix);
                char tname[200];
                float *want, *gotv;
                double num = 0.0, den = 0.0, rel;
                size_t j, skip_lo, skip_hi;
                if (strncmp(x->name, prefix, strlen(prefix))) continue;
                /* with the GAN off the trainer holds no discriminator (the file's are zeros and
                   the initial weights) */
                if (tc.disc_weight == 0 && (!strncmp(rest, "dgrad.", 6) || !strncmp(rest, "dparam.", 7))) continue;
                if (tc.ema_decay == 0 && !strncmp(rest, "ema.", 4)) continue;   /* no EMA kept (the file's copies the params) */
                if (!strncmp(rest, "grad.", 5) || !strncmp(rest, "param.", 6) || !strncmp(rest, "ema.", 4))
                    snprintf(tname, sizeof tname, "%s", rest);
                else if (!strncmp(rest, "dgrad.", 6)) snprintf(tname, sizeof tname, "disc.grad.%s", rest + 6);
                else if (!strncmp(rest, "dparam.", 7)) snprintf(tname, sizeof tname, "disc.param.%s", rest + 7);
                else if (!strcmp(rest, "lecam_ema")) snprintf(tname, sizeof tname, "lecam_ema");
                else continue;
                want = (float *)malloc(x->numel * sizeof(float)); gotv = (float *)malloc(x->numel * sizeof(float));
                textok_st_read_f32(&ref, x, want, x->numel);
                if (textok_trainer_get(t, tname, gotv, x->numel) != TEXTOK_OK) {
                    tt_check(s, 0, "train golden %s: %s: %s", name, x->name, textok_last_error());
                    free(want); free(gotv);
                    continue;
                }
                /* The key third of attn.in_proj_bias gets an exactly zero gradient (softmax is
                   shift-invariant per query), so what it holds is rounding noise, and AdamW
                   turns noise into steps of up to lr: fp32 and float64 noise then move those
                   values by different amounts <= lr per step. They are held to that bound
                   instead, and the q and v thirds to the usual one. */
                skip_lo = skip_hi = 0;
                if ((!strncmp(tname, "param.", 6) || !strncmp(tname, "ema.", 4)) && strstr(tname, "attn.in_proj_bias")) {
                    skip_lo = x->numel / 3; skip_hi = 2 * x->numel / 3;
                }
                for (j = 0; j < x->numel; j++) {
                    double d = (double)gotv[j] - want[j];
                    if (j >= skip_lo && j < skip_hi) {
                        if (!(fabs(d) <= 1.01 * tc.lr * (step + 1))) key_ok = 0;
                        continue;
                    }
                    num += d * d; den += (double)want[j] * want[j];
                }
                /* an all-zero reference (a gradient the case switches off) must be matched exactly */
                rel = den > 0 ? sqrt(num / den) : sqrt(num);
                if (!(rel <= tol)) tt_check(s, 0, "train golden %s %s: relative L2 %.2e > %.0e", name, x->name, rel, tol);
                else n_ok++;
                if (!(rel <= worst)) { worst = rel; snprintf(worst_name, sizeof worst_name, "%s", x->name); }
                n_grad++;
                free(want); free(gotv);
            }
            tt_check(s, n_grad > 0 && n_ok == n_grad && key_ok, "train golden %s step %d: %d/%d tensors (grads, params, EMA, discriminator, LeCAM) within relative L2 %.0e; worst %.2e (%s); key-bias thirds within lr per step: %s",
                     name, step, n_ok, n_grad, tol, worst, worst_name, key_ok ? "yes" : "NO");
        }
    }
done:
    textok_trainer_free(t);
    textok_titok_free(m);
    textok_disc_free(disc);
    textok_lpips_free(lp);
    textok_st_close(&ref);
}

void test_train(tt_stats *s)
{
    tr_golden_case(s, "vq");
    tr_golden_case(s, "vae");
    tr_golden_case(s, "legacy");
    tr_golden_case(s, "textok_both");   /* TexTok, text in both stacks, VAE sample + KL */
    tr_golden_case(s, "textok_enc");    /* text in the tokenizer only, VQ */
    tr_golden_case(s, "textok_dec");    /* text in the detokenizer only, continuous tokens */
    tr_golden_case(s, "tatitok");       /* TA-TiTok: titok layout, text after the decoder's latents */
    tr_fd(s, "direct-head vae (l2, kl)", 0, 1, 0, 0);
    tr_fd(s, "direct-head vae (l1, kl)", 0, 1, 1, 0);
    tr_fd(s, "direct-head vq decoder", 0, 0, 0, 1);
    tr_fd(s, "legacy vq decoder + pixel decoder", 1, 0, 0, 1);
    tr_converge(s, 0);
    tr_converge(s, 1);
    tr_resume(s, 0, 1, 0);
    tr_resume(s, 1, 0, 0);
    tr_resume(s, 0, 1, 1);
    tr_resume(s, 0, 0, 1);
    tr_bad(s);
}
