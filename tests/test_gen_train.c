/* The generator trainer (textok.h section 17), through the public API only:
     - a tiny DiT (1D tokens, class-conditional) and a tiny MaskGIT (ImageBert and UViT), each
       trained from a fixed seed on a handful of sequences: the loss must fall clearly (the mean of
       the last 10 steps below a fraction of the first 10's, fractions set from measured runs
       with a wide margin);
     - a DiT-T2I step with a padded caption gives a finite loss;
     - resuming: 3 steps, save, 2 steps == load into a fresh trainer, 2 steps, bit for bit
       (params, EMA and both AdamW moments);
     - frozen tensors: DiT's pos_embed never moves;
     - bad input: a bad config, the wrong data kind, a checkpoint of the other model kind. */
#include "check.h"
#include "textok.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#define GT_B 4

static textok_dit_config gt_dit_cfg(int t2i)
{
    textok_dit_config c;
    memset(&c, 0, sizeof c);
    c.in_channels = 4; c.input_size = 8; c.seq_1d = 1; c.patch_size = 1;
    c.hidden = 32; c.depth = 2; c.heads = 2; c.mlp_hidden = 128;
    c.num_classes = t2i ? 0 : 4; c.learn_sigma = 1; c.guide_channels = 4; c.latent_scale = 1.0f;
    if (t2i) { c.text_dim = 16; c.text_len = 6; }
    return c;
}

static textok_maskgit_config gt_mg_cfg(int arch)
{
    textok_maskgit_config c;
    memset(&c, 0, sizeof c);
    c.arch = arch; c.codebook_size = 16; c.num_classes = 4; c.seq_len = 8;
    c.hidden = 32; c.depth = 2; c.heads = 2; c.mlp_hidden = 64;
    return c;
}

static double gt_mean(const double *x, int n) { double s = 0; int i; for (i = 0; i < n; i++) s += x[i]; return s / n; }

/* n steps; losses[i] the step's loss */
static int gt_train(textok_gen_trainer *t, int n, const float *lat, const int32_t *tok, const int32_t *y,
                    const textok_text *tx, double *losses)
{
    int i;
    for (i = 0; i < n; i++) {
        textok_gen_train_stats st;
        if (textok_gen_trainer_step(t, lat, tok, y, tx, &st) != TEXTOK_OK) return 0;
        if (losses) losses[i] = st.loss;
    }
    return 1;
}

static int gt_same_state(textok_gen_trainer *a, textok_gen_trainer *b, const textok_tensor_spec *specs, int n)
{
    static const char *const pre[] = { "param.", "ema.", "adam_m.", "adam_v." };
    int i, j, same = 1;
    for (i = 0; i < n && same; i++) {
        size_t cnt = 1;
        int d;
        float *x, *z;
        for (d = 0; d < specs[i].ndim; d++) cnt *= (size_t)specs[i].shape[d];
        x = (float *)malloc(cnt * sizeof(float)); z = (float *)malloc(cnt * sizeof(float));
        for (j = 0; j < 4 && same; j++) {
            char name[160];
            snprintf(name, sizeof name, "%s%s", pre[j], specs[i].name);
            same = textok_gen_trainer_get(a, name, x, cnt) == TEXTOK_OK && textok_gen_trainer_get(b, name, z, cnt) == TEXTOK_OK &&
                   memcmp(x, z, cnt * sizeof(float)) == 0;
        }
        free(x); free(z);
    }
    return same;
}

static void gt_dit(tt_stats *s)
{
    textok_dit_config c = gt_dit_cfg(0);
    textok_params p = textok_default_params();
    textok_gen_train_config tc;
    textok_dit *m = NULL;
    textok_gen_trainer *t = NULL;
    float lat[GT_B * 4 * 8], pos0[8 * 32], pos1[8 * 32];
    int32_t y[GT_B] = { 0, 1, 2, 3 };
    double losses[80], first, last;
    textok_rng r;
    textok_rng_seed(&r, 11);
    textok_rng_fill_normal(&r, lat, sizeof lat / sizeof lat[0], 0.0f, 1.0f);
    textok_gen_train_preset(&tc, "tiny");
    tc.batch = GT_B; tc.lr = 3e-3; tc.end_lr = 3e-3; tc.warmup_steps = 5; tc.total_steps = 80;
    if (textok_dit_create(&m, &c, &p, 5) != TEXTOK_OK || textok_gen_trainer_create(&t, m, NULL, &tc, 9) != TEXTOK_OK) {
        tt_check(s, 0, "gen trainer: DiT create: %s", textok_last_error());
        textok_dit_free(m);
        return;
    }
    textok_gen_trainer_get(t, "param.pos_embed", pos0, 8 * 32);
    if (!gt_train(t, 80, lat, NULL, y, NULL, losses)) {
        tt_check(s, 0, "gen trainer: DiT steps: %s", textok_last_error());
    } else {
        first = gt_mean(losses, 10); last = gt_mean(losses + 70, 10);
        /* measured ratio 0.286 (the eps-MSE of a tiny DiT memorising 4 sequences) */
        tt_check(s, last < 0.75 * first, "gen trainer: tiny DiT loss falls over 80 steps (first 10 mean %.4f, last 10 mean %.4f, ratio %.3f < 0.75)",
                 first, last, last / first);
        textok_gen_trainer_get(t, "param.pos_embed", pos1, 8 * 32);
        tt_check(s, memcmp(pos0, pos1, sizeof pos0) == 0, "gen trainer: DiT pos_embed is frozen (unchanged after 80 steps)");
    }
    textok_gen_trainer_free(t);
    textok_dit_free(m);
}

static void gt_dit_t2i(tt_stats *s)
{
    textok_dit_config c = gt_dit_cfg(1);
    textok_params p = textok_default_params();
    textok_gen_train_config tc;
    textok_dit *m = NULL;
    textok_gen_trainer *t = NULL;
    float lat[GT_B * 4 * 8], emb[GT_B * 5 * 16];
    unsigned char mask[GT_B * 5];
    textok_text tx;
    textok_gen_train_stats st;
    textok_rng r;
    int i;
    textok_rng_seed(&r, 12);
    textok_rng_fill_normal(&r, lat, sizeof lat / sizeof lat[0], 0.0f, 1.0f);
    textok_rng_fill_normal(&r, emb, sizeof emb / sizeof emb[0], 0.0f, 1.0f);
    for (i = 0; i < GT_B * 5; i++) mask[i] = (unsigned char)(i % 5 < 2 + i / 5);
    tx.emb = emb; tx.mask = mask; tx.L = 5; tx.dim = 16;
    textok_gen_train_preset(&tc, "tiny");
    tc.batch = GT_B;
    if (textok_dit_create(&m, &c, &p, 5) != TEXTOK_OK || textok_gen_trainer_create(&t, m, NULL, &tc, 9) != TEXTOK_OK) {
        tt_check(s, 0, "gen trainer: DiT-T2I create: %s", textok_last_error());
    } else {
        int ok = textok_gen_trainer_step(t, lat, NULL, NULL, &tx, &st) == TEXTOK_OK;
        tt_check(s, ok && st.loss == st.loss && st.loss > 0, "gen trainer: DiT-T2I step with a padded caption (loss %.4f, mse %.4f, vb %.4f) %s",
                 st.loss, st.mse, st.vb, ok ? "" : textok_last_error());
        tt_check(s, textok_gen_trainer_step(t, lat, NULL, NULL, NULL, &st) != TEXTOK_OK,
                 "gen trainer: DiT-T2I without captions refused (%s)", textok_last_error());
    }
    textok_gen_trainer_free(t);
    textok_dit_free(m);
}

static void gt_maskgit(tt_stats *s, int arch)
{
    const char *name = arch == TEXTOK_MASKGIT_BERT ? "ImageBert" : "UViT";
    textok_maskgit_config c = gt_mg_cfg(arch);
    textok_params p = textok_default_params();
    textok_gen_train_config tc;
    textok_maskgit *m = NULL;
    textok_gen_trainer *t = NULL;
    int32_t tok[GT_B * 8], y[GT_B] = { 0, 1, 2, 3 };
    double losses[120], first, last;
    int i;
    for (i = 0; i < GT_B * 8; i++) tok[i] = (int32_t)((i * 7 + i / 8) % 16);
    textok_gen_train_preset(&tc, "tiny");
    tc.batch = GT_B; tc.lr = 3e-3; tc.end_lr = 3e-3; tc.warmup_steps = 5; tc.total_steps = 120;
    if (textok_maskgit_create(&m, &c, &p, 5) != TEXTOK_OK || textok_gen_trainer_create(&t, NULL, m, &tc, 9) != TEXTOK_OK) {
        tt_check(s, 0, "gen trainer: %s create: %s", name, textok_last_error());
        textok_maskgit_free(m);
        return;
    }
    if (!gt_train(t, 120, NULL, tok, y, NULL, losses)) {
        tt_check(s, 0, "gen trainer: %s steps: %s", name, textok_last_error());
    } else {
        first = gt_mean(losses, 10); last = gt_mean(losses + 110, 10);
        /* measured ratios: ImageBert 0.435, UViT 0.588 (the random mask ratio makes single steps noisy) */
        tt_check(s, last < 0.75 * first, "gen trainer: tiny %s loss falls over 120 steps (first 10 mean %.4f, last 10 mean %.4f, ratio %.3f < 0.75)",
                 name, first, last, last / first);
        tt_check(s, textok_gen_trainer_step(t, (const float *)tok, NULL, y, NULL, NULL) != TEXTOK_OK,
                 "gen trainer: %s given latents instead of ids refused (%s)", name, textok_last_error());
    }
    textok_gen_trainer_free(t);
    textok_maskgit_free(m);
}

/* 3 steps, save, 2 steps vs load, 2 steps - for both kinds */
static void gt_resume(tt_stats *s)
{
    const char *ck = "build/test_gen_resume.safetensors", *ck2 = "build/test_gen_resume_mg.safetensors";
    textok_params p = textok_default_params();
    textok_gen_train_config tc;
    textok_dit_config dc = gt_dit_cfg(0);
    textok_maskgit_config mc = gt_mg_cfg(TEXTOK_MASKGIT_UVIT);
    textok_dit *a = NULL, *b = NULL;
    textok_maskgit *ma = NULL, *mb = NULL;
    textok_gen_trainer *ta = NULL, *tb = NULL, *tm = NULL;
    textok_tensor_spec specs[64];
    float lat[GT_B * 4 * 8];
    int32_t y[GT_B] = { 3, 2, 1, 0 }, tok[GT_B * 8];
    int n, i, ok;
    textok_rng r;
    textok_rng_seed(&r, 13);
    textok_rng_fill_normal(&r, lat, sizeof lat / sizeof lat[0], 0.0f, 1.0f);
    for (i = 0; i < GT_B * 8; i++) tok[i] = (int32_t)(textok_rng_u32(&r) % 16);
    textok_gen_train_preset(&tc, "tiny");
    tc.batch = GT_B;
    n = textok_dit_tensor_specs(&dc, specs, 64);
    ok = n > 0 && n <= 64 && textok_dit_create(&a, &dc, &p, 1) == TEXTOK_OK && textok_dit_create(&b, &dc, &p, 2) == TEXTOK_OK &&
         textok_gen_trainer_create(&ta, a, NULL, &tc, 4) == TEXTOK_OK && textok_gen_trainer_create(&tb, b, NULL, &tc, 99) == TEXTOK_OK &&
         gt_train(ta, 3, lat, NULL, y, NULL, NULL) && textok_gen_trainer_save(ta, ck) == TEXTOK_OK &&
         gt_train(ta, 2, lat, NULL, y, NULL, NULL) && textok_gen_trainer_load(tb, ck) == TEXTOK_OK &&
         gt_train(tb, 2, lat, NULL, y, NULL, NULL);
    tt_check(s, ok && textok_gen_trainer_steps_done(tb) == 5 && gt_same_state(ta, tb, specs, n),
             "gen trainer: DiT resume (3 + save + 2 == load + 2: params, EMA, moments bit for bit) %s", ok ? "" : textok_last_error());
    /* a DiT checkpoint is refused by a MaskGIT trainer, naming what it is */
    ok = textok_maskgit_create(&ma, &mc, &p, 1) == TEXTOK_OK && textok_gen_trainer_create(&tm, NULL, ma, &tc, 4) == TEXTOK_OK;
    tt_check(s, ok && textok_gen_trainer_load(tm, ck) != TEXTOK_OK && strstr(textok_last_error(), "maskgit"),
             "gen trainer: a DiT checkpoint refused by a MaskGIT trainer (%s)", textok_last_error());
    textok_gen_trainer_free(tb); tb = NULL;
    n = textok_maskgit_tensor_specs(&mc, specs, 64);
    ok = ok && n > 0 && n <= 64 && textok_maskgit_create(&mb, &mc, &p, 2) == TEXTOK_OK && textok_gen_trainer_create(&tb, NULL, mb, &tc, 77) == TEXTOK_OK &&
         gt_train(tm, 3, NULL, tok, y, NULL, NULL) && textok_gen_trainer_save(tm, ck2) == TEXTOK_OK &&
         gt_train(tm, 2, NULL, tok, y, NULL, NULL) && textok_gen_trainer_load(tb, ck2) == TEXTOK_OK &&
         gt_train(tb, 2, NULL, tok, y, NULL, NULL);
    tt_check(s, ok && gt_same_state(tm, tb, specs, n), "gen trainer: MaskGIT (UViT) resume bit for bit %s", ok ? "" : textok_last_error());
    textok_gen_trainer_free(ta); textok_gen_trainer_free(tb); textok_gen_trainer_free(tm);
    textok_dit_free(a); textok_dit_free(b); textok_maskgit_free(ma); textok_maskgit_free(mb);
    remove(ck); remove(ck2);
}

static void gt_bad(tt_stats *s)
{
    textok_gen_train_config tc;
    textok_gen_trainer *t = NULL;
    textok_params p = textok_default_params();
    textok_dit_config dc = gt_dit_cfg(0);
    textok_dit *m = NULL;
    textok_gen_train_preset(&tc, "tiny");
    tt_check(s, textok_gen_train_preset(&tc, "bogus") != TEXTOK_OK && strstr(textok_last_error(), "bogus"),
             "gen trainer: unknown preset refused (%s)", textok_last_error());
    textok_gen_train_preset(&tc, "tiny");
    tc.ema_decay = 1.5;
    tt_check(s, textok_gen_train_config_check(&tc) != TEXTOK_OK && strstr(textok_last_error(), "ema_decay"),
             "gen trainer: ema_decay 1.5 refused (%s)", textok_last_error());
    textok_gen_train_preset(&tc, "tiny");
    tc.mask_schedule = 7;
    tt_check(s, textok_gen_train_config_check(&tc) != TEXTOK_OK && strstr(textok_last_error(), "mask_schedule"),
             "gen trainer: mask_schedule 7 refused (%s)", textok_last_error());
    textok_gen_train_preset(&tc, "tiny");
    tt_check(s, textok_gen_trainer_create(&t, NULL, NULL, &tc, 1) != TEXTOK_OK, "gen trainer: no model refused (%s)", textok_last_error());
    if (textok_dit_create(&m, &dc, &p, 1) == TEXTOK_OK && textok_gen_trainer_create(&t, m, NULL, &tc, 1) == TEXTOK_OK) {
        int32_t tok[GT_B * 8] = { 0 };
        tt_check(s, textok_gen_trainer_step(t, NULL, tok, NULL, NULL, NULL) != TEXTOK_OK, "gen trainer: a DiT given ids refused (%s)", textok_last_error());
        tt_check(s, textok_gen_trainer_load(t, "tests/data/does_not_exist.safetensors") != TEXTOK_OK,
                 "gen trainer: missing checkpoint refused (%s)", textok_last_error());
    }
    textok_gen_trainer_free(t);
    textok_dit_free(m);
}

void test_gen_train(tt_stats *s)
{
    gt_dit(s);
    gt_dit_t2i(s);
    gt_maskgit(s, TEXTOK_MASKGIT_BERT);
    gt_maskgit(s, TEXTOK_MASKGIT_UVIT);
    gt_resume(s);
    gt_bad(s);
}
