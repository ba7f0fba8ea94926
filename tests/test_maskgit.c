/* MaskGIT (TiTok's generators): ImageBert and UViTBert, sampling and the training hooks.

   Goldens (tools/gen_golden_maskgit.py from the independent reference tools/maskgit_ref.py,
   tests/golden/maskgit/): for a tiny ImageBert and a tiny UViTBert (official names; bert_tiny also
   carries the legacy position_ids buffer that loaders must ignore):
     - forward logits (3 sequences with masked ids and the null class, run in chunks of 2);
     - the MLM loss of the training hook with the masks and drops it draws from textok_rng (whose
       stream is torch.manual_seed's: the golden stores the uniforms and the resulting masks for
       all three schedules), its accuracy, and the gradient of every parameter;
     - one sampling step for each guidance decay (constant; linear at step 0 - unguided - and
       later; power-cosine mid-way and at the last step): the ids exactly;
     - the unmask counts per step of architecture.md 4.4.
   All of that with both kernel tables (reference and fast). Plus: parameter counts and names
   of the official presets, finite differences of the loss, save/load, generate's determinism
   across thread counts, bad input and hostile files, and a tiny MaskGIT trained on a handful
   of sequences (our own AdamW loop over the hook: the generator trainer shell of section 17 is
   not in this branch). The hooks are static, so this file compiles its own private copy of the
   implementation (TEXTOK_STATIC), as tests/test_nets.c does. */
#define TEXTOK_STATIC
#define TEXTOK_IMPLEMENTATION
#include "textok.h"
#include "check.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MG_TOL 1e-4

static char *mg_path(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "%s/maskgit/%s", tt_golden_dir, name);
    return buf;
}

/* a float tensor of the golden as a malloc'd array (NULL if absent or wrong size) */
static float *mg_get(const textok_safetensors *st, const char *name, size_t numel)
{
    const textok_st_tensor *t = textok_st_find(st, name);
    float *x;
    if (!t || t->numel != numel) return NULL;
    x = (float *)malloc(numel * sizeof(float));
    if (x && textok_st_read_f32(st, t, x, numel) != TEXTOK_OK) { free(x); return NULL; }
    return x;
}

static int32_t *mg_get_ids(const textok_safetensors *st, const char *name, size_t numel)
{
    float *f = mg_get(st, name, numel);
    int32_t *x = f ? (int32_t *)malloc(numel * sizeof(int32_t)) : NULL;
    size_t i;
    if (x) for (i = 0; i < numel; i++) x[i] = (int32_t)f[i];
    free(f);
    return x;
}

static double mg_meta_f(const textok_safetensors *st, const char *key)
{
    const char *v = textok_st_meta(st, key);
    return v ? atof(v) : NAN;
}

static int mg_decay(const char *s)
{
    return !s ? -1 : !strcmp(s, "constant") ? TEXTOK_GUIDANCE_CONSTANT : !strcmp(s, "linear") ? TEXTOK_GUIDANCE_LINEAR
         : !strcmp(s, "power-cosine") ? TEXTOK_GUIDANCE_POWER_COSINE : -1;
}

static int mg_schedule(const char *s)
{
    return !s ? -1 : !strcmp(s, "arccos") ? TEXTOK_MASK_ARCCOS : !strcmp(s, "cosine") ? TEXTOK_MASK_COSINE
         : !strcmp(s, "linear") ? TEXTOK_MASK_LINEAR : -1;
}

static textok_gen_train_config mg_tc_from(const textok_safetensors *st)
{
    textok_gen_train_config tc;
    memset(&tc, 0, sizeof tc);
    tc.batch = 3;
    tc.mask_schedule = mg_schedule(textok_st_meta(st, "train_schedule"));
    tc.label_smoothing = (float)mg_meta_f(st, "label_smoothing");
    tc.unmasked_weight = (float)mg_meta_f(st, "unmasked_weight");
    tc.cond_dropout = (float)mg_meta_f(st, "cond_dropout");
    return tc;
}

/* loss of the hook with the rng seeded at seed; grads (n_params device floats) zeroed first */
static int mg_loss(textok_maskgit *m, textok__maskgit_train *t, float *grads, uint64_t seed,
                   const textok_gen_train_config *tc, const int32_t *tokens, const int32_t *y, textok_gen_train_stats *gs)
{
    textok_rng rng;
    textok_rng_seed(&rng, seed);
    m->k.fill(&m->k, grads, m->n_params, 0.0f);
    return textok__maskgit_train_loss(t, &rng, tc, tokens, y, gs);
}

/* ----- presets: parameter counts and names of the official generators ------------------------ */
static void mg_presets(tt_stats *s)
{
    static const struct { const char *name; size_t params; int tensors; } want[] = {
        { "L-32", 177202432u, 391 }, { "B-64", 177227008u, 391 }, { "S-128", 294990848u, 257 } };
    int i;
    for (i = 0; i < 3; i++) {
        textok_maskgit_config c;
        textok_tensor_spec *sp;
        size_t total = 0;
        int n, j, names_ok = 1;
        textok_maskgit_preset(&c, want[i].name);
        n = textok_maskgit_tensor_specs(&c, NULL, 0);
        sp = (textok_tensor_spec *)calloc((size_t)(n > 0 ? n : 1), sizeof *sp);
        textok_maskgit_tensor_specs(&c, sp, n);
        for (j = 0; j < n; j++) total += textok__spec_numel(&sp[j]);
        if (c.arch == TEXTOK_MASKGIT_BERT) {
            names_ok = !strcmp(sp[0].name, "model.embeddings.word_embeddings.weight") && sp[0].shape[0] == 5098 &&
                       !strcmp(sp[2].name, "model.embeddings.token_type_embeddings.weight") &&
                       !strcmp(sp[5].name, "model.encoder.layer.0.attention.self.query.weight") &&
                       !strcmp(sp[n - 2].name, "model.lm_head.weight") && sp[n - 2].shape[0] == 4096;
        } else {
            int k;
            names_ok = !strcmp(sp[0].name, "pos_embed") && sp[0].ndim == 3 && sp[0].shape[1] == 129 &&
                       !strcmp(sp[1].name, "embeddings.weight") && !strcmp(sp[n - 1].name, "lm_head.bias");
            for (k = 0; k < n - 1 && names_ok; k++)
                if (!strcmp(sp[k].name, "out_blocks.0.skip_linear.weight"))
                    names_ok = !strcmp(sp[k + 1].name, "out_blocks.0.skip_linear.bias") &&
                               !strcmp(sp[k + 2].name, "out_blocks.1.norm1.weight") && sp[k].shape[1] == 2048;
        }
        tt_check(s, n == want[i].tensors && total == want[i].params && names_ok,
                 "MaskGIT %s: %d tensors (want %d), %lu parameters (want %lu), official names", want[i].name, n,
                 want[i].tensors, (unsigned long)total, (unsigned long)want[i].params);
        free(sp);
    }
}

/* ----- the unmask counts of architecture.md 4.4 ------------------------------------------------ */
static void mg_counts(tt_stats *s)
{
    static const int c32[] = { 3, 3, 2, 3, 3, 4, 4, 10 }, c64[] = { 6, 5, 5, 6, 6, 7, 9, 20 };
    const int cases[3][2] = { { 32, 8 }, { 64, 8 }, { 128, 64 } };
    char path[512];
    textok_safetensors st;
    int ci;
    if (textok_st_open(&st, mg_path(path, sizeof path, "unmask_counts.safetensors")) != TEXTOK_OK) {
        tt_check(s, 0, "MaskGIT unmask counts: %s", textok_last_error());
        return;
    }
    for (ci = 0; ci < 3; ci++) {
        const int L = cases[ci][0], T = cases[ci][1];
        char name[32];
        float *g;
        int got[64], sm, ok = 1, step, m = L;
        snprintf(name, sizeof name, "L%d_T%d", L, T);
        g = mg_get(&st, name, (size_t)T);
        for (step = 0; step < T; step++) {
            int n = step < T - 1 ? textok__mg_mask_len(L, T, step, m) : 0;
            got[step] = m - n;
            m = n;
            if (!g || got[step] != (int)g[step]) ok = 0;
            if (L == 32 && got[step] != c32[step]) ok = 0;
            if (L == 64 && got[step] != c64[step]) ok = 0;
        }
        if (L == 128) {
            for (step = 0, sm = 0; step < T; step++) sm += got[step];
            for (step = 0; step < 61; step++) if (got[step] < 1 || got[step] > 4) ok = 0;
            ok = ok && got[61] == 5 && got[62] == 6 && got[63] == 14 && sm == 128;
        }
        tt_check(s, ok, "MaskGIT unmask counts L=%d T=%d: %d, %d, %d, ..., %d (architecture.md 4.4 and the reference)", L, T,
                 got[0], got[1], got[2], got[T - 1]);
        free(g);
    }
    textok_st_close(&st);
}

/* ----- goldens ------------------------------------------------------------------------------ */
static void mg_golden(tt_stats *s, const char *name, const textok_kernels *kt)
{
    char path[512], rpath[512], key[128];
    textok_safetensors ws, rs;
    textok_maskgit_config cfg;
    textok_params p = textok_default_params();
    textok_maskgit *m = NULL;
    textok__maskgit_train *tr = NULL;
    float *grads = NULL, *logits = NULL, *ref = NULL, *hg = NULL;
    int32_t *ids = NULL, *cls = NULL, *tok = NULL, *tcls = NULL;
    size_t L, V, i;
    int j, n_steps, ok;
    memset(&ws, 0, sizeof ws); memset(&rs, 0, sizeof rs);
    if (textok_st_open(&ws, mg_path(path, sizeof path, name)) != TEXTOK_OK ||
        (snprintf(key, sizeof key, "%.*s_ref.safetensors", (int)(strlen(name) - 12), name),
         textok_st_open(&rs, mg_path(rpath, sizeof rpath, key)) != TEXTOK_OK) ||
        textok_maskgit_config_from_meta(&cfg, &rs) != TEXTOK_OK) {
        tt_check(s, 0, "MaskGIT golden %s: %s", name, textok_last_error());
        goto done;
    }
    p.max_batch = 2;   /* 3 sequences: two chunks */
    p.kernels = kt;
    if (textok_maskgit_load_st(&m, &ws, &cfg, &p) != TEXTOK_OK) {
        tt_check(s, 0, "MaskGIT golden %s [%s]: load: %s", name, kt->name, textok_last_error());
        goto done;
    }
    L = (size_t)cfg.seq_len; V = (size_t)cfg.codebook_size;
    /* forward */
    ids = mg_get_ids(&rs, "ids", 3 * L);
    cls = mg_get_ids(&rs, "classes", 3);
    ref = mg_get(&rs, "logits", 3 * L * V);
    logits = (float *)malloc(3 * L * V * sizeof(float));
    ok = ids && cls && ref && textok_maskgit_forward(m, ids, cls, 3, logits) == TEXTOK_OK;
    if (ok) tt_compare(s, "MaskGIT forward logits (masked ids, null class, 2 chunks)", logits, ref, 3 * L * V, MG_TOL);
    else tt_check(s, 0, "MaskGIT golden %s: forward: %s", name, textok_last_error());
    printf("    (%s, %s table)\n", name, kt->name);
    /* training hook: masks, loss, accuracy, every gradient */
    {
        textok_gen_train_config tc = mg_tc_from(&rs);
        textok_gen_train_stats gs;
        const uint64_t seed = (uint64_t)atol(textok_st_meta(&rs, "seed") ? textok_st_meta(&rs, "seed") : "0");
        float *mt = mg_get(&rs, "mask_t", 3), *mu = mg_get(&rs, "mask_u", 3 * L), *du = mg_get(&rs, "drop_u", 3);
        float *gl = mg_get(&rs, "loss", 1), *ga = mg_get(&rs, "accuracy", 1);
        textok_rng rng;
        int same = mt && mu && du, sch, worst_i = -1;
        double worst = 0.0;
        size_t off = 0;
        textok_rng_seed(&rng, seed);
        for (i = 0; same && i < 3; i++) same = textok_rng_uniform(&rng) == mt[i];
        for (i = 0; same && i < 3 * L; i++) same = textok_rng_uniform(&rng) == mu[i];
        for (i = 0; same && i < 3; i++) same = textok_rng_uniform(&rng) == du[i];
        tt_check(s, same, "MaskGIT %s: textok_rng seeded %lu draws the golden's uniforms (torch.manual_seed's stream)",
                 name, (unsigned long)seed);
        for (sch = 0; sch < 3 && mt && mu; sch++) {
            static const char *nm[3] = { "masks_arccos", "masks_cosine", "masks_linear" };
            float *gm = mg_get(&rs, nm[sch], 3 * L);
            unsigned char mk[256];
            int b, eq = gm != NULL;
            for (b = 0; b < 3 && eq; b++) {
                textok__mg_mask_row(sch, mt[b], mu + (size_t)b * L, (int)L, mk);
                for (i = 0; i < L; i++) eq = eq && mk[i] == (gm[(size_t)b * L + i] > 0.5f);
            }
            tt_check(s, eq, "MaskGIT %s: %s from the uniforms (round half to even, ranks)", name, nm[sch]);
            free(gm);
        }
        tok = mg_get_ids(&rs, "train_tokens", 3 * L);
        tcls = mg_get_ids(&rs, "train_classes", 3);
        grads = (float *)m->k.alloc(&m->k, m->n_params * sizeof(float));
        hg = (float *)malloc(m->n_params * sizeof(float));
        ok = tok && tcls && grads && hg && gl && ga && textok__maskgit_train_new(&tr, m, grads, 3) == TEXTOK_OK &&
             mg_loss(m, tr, grads, seed, &tc, tok, tcls, &gs) == TEXTOK_OK &&
             m->k.to_host(&m->k, hg, grads, m->n_params * sizeof(float)) == TEXTOK_OK;
        if (!ok) {
            tt_check(s, 0, "MaskGIT %s: training hook: %s", name, textok_last_error());
        } else {
            float lf = (float)gs.loss, af = (float)gs.accuracy;
            tt_compare(s, "MaskGIT MLM loss (label smoothing, unmasked weight, class dropout)", &lf, gl, 1, MG_TOL);
            tt_check(s, fabs(gs.accuracy - ga[0]) < 1e-6, "MaskGIT %s: masked-token accuracy %.6f (reference %.6f)", name, af, (double)ga[0]);
            /* every tensor's gradient against the reference: all at once, then tensor by tensor
               (relative L2 with a floor of 1e-4 of the whole gradient's norm: BERT's key biases have
               an exactly zero gradient - a constant added to every score of a query cancels in its
               softmax - so their reference is rounding noise) */
            float *all = (float *)malloc(m->n_params * sizeof(float));
            double tot = 0.0;
            int have = all != NULL;
            for (j = 0; j < m->n_tensors && have; j++) {
                size_t nn = textok__spec_numel(&m->specs[j]);
                float *gr;
                snprintf(key, sizeof key, "grad.%s", m->specs[j].name);
                gr = mg_get(&rs, key, nn);
                if (!gr) { have = 0; worst_i = j; break; }
                memcpy(all + off, gr, nn * sizeof(float));
                free(gr);
                off += nn;
            }
            if (have) {
                tt_compare(s, "MaskGIT gradient of every parameter (the whole block)", hg, all, m->n_params, MG_TOL);
                for (i = 0; i < m->n_params; i++) tot += (double)all[i] * all[i];
                for (j = 0, off = 0; j < m->n_tensors; j++) {
                    size_t nn = textok__spec_numel(&m->specs[j]);
                    double num = 0, den = 0, r;
                    for (i = 0; i < nn; i++) { double d = hg[off + i] - all[off + i]; num += d * d; den += (double)all[off + i] * all[off + i]; }
                    r = sqrt(num / fmax(den, 1e-8 * tot));
                    if (r > worst) { worst = r; worst_i = j; }
                    off += nn;
                }
            }
            tt_check(s, have && worst <= MG_TOL, "MaskGIT %s [%s]: %d parameter gradients one by one, worst relative L2 %.3g (%s)", name,
                     kt->name, m->n_tensors, have ? worst : 1.0, worst_i >= 0 ? m->specs[worst_i].name : "-");
            free(all);
        }
        free(mt); free(mu); free(du); free(gl); free(ga);
    }
    /* sampling steps */
    n_steps = atoi(textok_st_meta(&rs, "n_steps") ? textok_st_meta(&rs, "n_steps") : "0");
    for (j = 0; j < n_steps; j++) {
        textok_maskgit_sample_config sc;
        int32_t *in, *want, *scls;
        float *u1, *u2;
        int stp, eq = 0, diff = 0;
        memset(&sc, 0, sizeof sc);
#define MG_M(k_) (snprintf(key, sizeof key, "step%d." k_, j), textok_st_meta(&rs, key))
        stp = atoi(MG_M("s") ? MG_M("s") : "-1");
        sc.steps = atoi(MG_M("T") ? MG_M("T") : "0");
        sc.guidance_scale = (float)atof(MG_M("g") ? MG_M("g") : "nan");
        sc.guidance_decay = mg_decay(MG_M("decay"));
        sc.guidance_pow = (float)atof(MG_M("pow") ? MG_M("pow") : "nan");
        sc.temperature = (float)atof(MG_M("tau") ? MG_M("tau") : "nan");
        sc.temperature_annealing = atoi(MG_M("anneal") ? MG_M("anneal") : "0");
#undef MG_M
#define MG_T(k_) (snprintf(key, sizeof key, "step%d." k_, j), key)
        in = mg_get_ids(&rs, MG_T("ids_in"), 3 * L);
        want = mg_get_ids(&rs, MG_T("ids_out"), 3 * L);
        scls = mg_get_ids(&rs, MG_T("classes"), 3);
        u1 = mg_get(&rs, MG_T("u1"), 3 * L * V);
        u2 = mg_get(&rs, MG_T("u2"), 3 * L);
#undef MG_T
        if (in && want && scls && u1 && u2 && textok_maskgit_sample_step(m, &sc, stp, in, scls, 3, u1, u2) == TEXTOK_OK) {
            for (i = 0; i < 3 * L; i++) diff += in[i] != want[i];
            eq = diff == 0;
        }
        tt_check(s, eq, "MaskGIT %s [%s]: sampling step %d of %d, %s guidance %.1f%s: ids %s (%d differ)%s%s", name, kt->name,
                 stp, sc.steps, sc.guidance_decay == 0 ? "constant" : sc.guidance_decay == 1 ? "linear" : "power-cosine",
                 (double)sc.guidance_scale, sc.temperature_annealing ? ", annealed" : "", eq ? "exact" : "DIFFER", diff,
                 eq ? "" : ": ", eq ? "" : textok_last_error());
        free(in); free(want); free(scls); free(u1); free(u2);
    }
done:
    if (tr) textok__maskgit_train_delete(tr);
    if (grads) m->k.free(&m->k, grads);
    textok_maskgit_free(m);
    textok_st_close(&ws); textok_st_close(&rs);
    free(logits); free(ref); free(ids); free(cls); free(tok); free(tcls); free(hg);
}

/* ----- finite differences of the hook's loss ---------------------------------------------------- */
static void mg_fd(tt_stats *s, const char *name)
{
    char path[512], rpath[512], key[128], wname[128];
    textok_safetensors ws, rs;
    textok_maskgit_config cfg;
    textok_params p = textok_default_params();
    textok_maskgit *m = NULL;
    textok__maskgit_train *tr = NULL;
    textok_gen_train_config tc;
    textok_gen_train_stats gs;
    float *grads = NULL, *hg = NULL, *hp = NULL;
    int32_t *tok = NULL, *tcls = NULL;
    const double h = 3e-3;
    double worst = 0.0, scale = 0.0;
    size_t L, i;
    uint64_t seed;
    int checked = 0, j;
    memset(&ws, 0, sizeof ws); memset(&rs, 0, sizeof rs);
    snprintf(key, sizeof key, "%s_ref.safetensors", name);
    snprintf(wname, sizeof wname, "%s.safetensors", name);
    if (textok_st_open(&ws, mg_path(path, sizeof path, wname)) != TEXTOK_OK || textok_st_open(&rs, mg_path(rpath, sizeof rpath, key)) != TEXTOK_OK ||
        textok_maskgit_config_from_meta(&cfg, &rs) != TEXTOK_OK || textok_maskgit_load_st(&m, &ws, &cfg, &p) != TEXTOK_OK) {
        tt_check(s, 0, "MaskGIT %s finite differences: %s", name, textok_last_error());
        goto done;
    }
    L = (size_t)cfg.seq_len;
    tc = mg_tc_from(&rs);
    seed = (uint64_t)atol(textok_st_meta(&rs, "seed") ? textok_st_meta(&rs, "seed") : "0");
    tok = mg_get_ids(&rs, "train_tokens", 3 * L);
    tcls = mg_get_ids(&rs, "train_classes", 3);
    grads = (float *)m->k.alloc(&m->k, m->n_params * sizeof(float));
    hg = (float *)malloc(m->n_params * sizeof(float));
    hp = (float *)malloc(m->n_params * sizeof(float));
    if (!tok || !tcls || !grads || !hg || !hp || textok__maskgit_train_new(&tr, m, grads, 3) != TEXTOK_OK ||
        mg_loss(m, tr, grads, seed, &tc, tok, tcls, &gs) != TEXTOK_OK) {
        tt_check(s, 0, "MaskGIT %s finite differences: %s", name, textok_last_error());
        goto done;
    }
    m->k.to_host(&m->k, hg, grads, m->n_params * sizeof(float));
    m->k.to_host(&m->k, hp, m->params, m->n_params * sizeof(float));
    for (i = 0; i < m->n_params; i++) if (fabs(hg[i]) > scale) scale = fabs(hg[i]);
    /* a few entries of every 4th tensor (embeddings, q/k/v, norms, skip, head) */
    {
        size_t off = 0;
        for (j = 0; j < m->n_tensors; j++) {
            size_t nn = textok__spec_numel(&m->specs[j]), q;
            if (j % 4 == 0 || strstr(m->specs[j].name, "skip_linear") || strstr(m->specs[j].name, "token_type")) {
                for (q = 0; q < 2; q++) {
                    size_t idx = off + (q * 7919u + (size_t)j * 31u) % nn;
                    float old = hp[idx];
                    double lp, lm, fd;
                    if (!strcmp(m->specs[j].name, "model.embeddings.token_type_embeddings.weight"))
                        idx = off + (q * 7u) % (size_t)cfg.hidden;   /* row 0: the one used */
                    old = hp[idx];
                    hp[idx] = (float)(old + h); m->k.to_device(&m->k, m->params + idx, &hp[idx], sizeof(float));
                    mg_loss(m, tr, grads, seed, &tc, tok, tcls, &gs); lp = gs.loss;
                    hp[idx] = (float)(old - h); m->k.to_device(&m->k, m->params + idx, &hp[idx], sizeof(float));
                    mg_loss(m, tr, grads, seed, &tc, tok, tcls, &gs); lm = gs.loss;
                    hp[idx] = old; m->k.to_device(&m->k, m->params + idx, &hp[idx], sizeof(float));
                    fd = (lp - lm) / (2 * h);
                    {
                        double e = fabs(fd - hg[idx]) / fmax(fabs(hg[idx]), 1e-2 * scale);
                        if (e > worst) worst = e;
                    }
                    checked++;
                }
            }
            off += nn;
        }
    }
    tt_check(s, worst < 2e-2, "MaskGIT %s: central differences (h %.0e) of the MLM loss vs the hook's gradient, %d entries: "
             "worst relative error %.3g", name, h, checked, worst);
done:
    if (tr) textok__maskgit_train_delete(tr);
    if (grads) m->k.free(&m->k, grads);
    textok_maskgit_free(m);
    textok_st_close(&ws); textok_st_close(&rs);
    free(hg); free(hp); free(tok); free(tcls);
}

/* ----- save / load, generate's determinism ------------------------------------------------------ */
static textok_maskgit_config mg_tiny(int arch)
{
    textok_maskgit_config c;
    memset(&c, 0, sizeof c);
    c.arch = arch; c.codebook_size = 16; c.num_classes = 5; c.seq_len = 8;
    c.hidden = 16; c.depth = arch == TEXTOK_MASKGIT_BERT ? 2 : 4; c.heads = 2; c.mlp_hidden = 32;
    return c;
}

static void mg_save_generate(tt_stats *s, int arch)
{
    const char *an = arch == TEXTOK_MASKGIT_BERT ? "ImageBert" : "UViTBert";
    textok_maskgit_config c = mg_tiny(arch);
    textok_params p = textok_default_params();
    textok_kernels k1 = textok_cpu_kernels(1), k2 = textok_cpu_kernels(2), kr = textok_cpu_ref_kernels();
    textok_maskgit *m = NULL, *m2 = NULL, *m3 = NULL;
    textok_maskgit_sample_config sc;
    const int32_t classes[3] = { 0, 4, 2 };
    int32_t a[24], b[24], r[24], ids[24];
    float la[3 * 8 * 16], lb[3 * 8 * 16];
    textok_rng rng;
    int i, ok;
    const char *path = "build/mg_model.safetensors";
    p.kernels = &k1; p.max_batch = 3;
    if (textok_maskgit_create(&m, &c, &p, 11) != TEXTOK_OK) { tt_check(s, 0, "MaskGIT %s create: %s", an, textok_last_error()); return; }
    /* weights big enough that the logits are not flat */
    {
        float *hp = (float *)malloc(m->n_params * sizeof(float));
        textok_rng_seed(&rng, 5);
        textok_rng_fill_normal(&rng, hp, m->n_params, 0.0f, 0.3f);
        m->k.to_device(&m->k, m->params, hp, m->n_params * sizeof(float));
        free(hp);
    }
    for (i = 0; i < 24; i++) ids[i] = (i * 5) % 17;
    ok = textok_maskgit_save(m, path) == TEXTOK_OK && textok_maskgit_load(&m2, path, &p) == TEXTOK_OK &&
         textok_maskgit_forward(m, ids, classes, 3, la) == TEXTOK_OK && textok_maskgit_forward(m2, ids, classes, 3, lb) == TEXTOK_OK &&
         memcmp(la, lb, sizeof la) == 0;
    tt_check(s, ok, "MaskGIT %s: save, load (config from the metadata), same logits bit for bit%s%s", an, ok ? "" : ": ",
             ok ? "" : textok_last_error());
    textok_maskgit_sample_preset(&sc, "demo");
    sc.steps = 6; sc.temperature = 1.0f;
    for (i = 0; i < 3; i++) {
        textok_maskgit *mm = i == 0 ? m : m2;
        int32_t *out = i == 0 ? a : i == 1 ? b : r;
        if (i == 1) { textok_maskgit_free(m2); m2 = NULL; p.kernels = &k2; textok_maskgit_load(&m2, path, &p); mm = m2; }
        if (i == 2) { p.kernels = &kr; p.max_batch = 1; textok_maskgit_load(&m3, path, &p); mm = m3; }
        textok_rng_seed(&rng, 77);
        if (!mm || textok_maskgit_generate(mm, &sc, classes, 3, &rng, out) != TEXTOK_OK) {
            tt_check(s, 0, "MaskGIT %s generate: %s", an, textok_last_error());
            goto done;
        }
    }
    ok = 1;
    for (i = 0; i < 24; i++) ok = ok && a[i] >= 0 && a[i] < 16;
    tt_check(s, ok && !memcmp(a, b, sizeof a) && !memcmp(a, r, sizeof a),
             "MaskGIT %s: generate (6 steps, constant guidance) is deterministic: 1 thread, 2 threads and the reference table "
             "(max_batch 1) give the same ids, all decoded (%d %d %d %d ...)", an, (int)a[0], (int)a[1], (int)a[2], (int)a[3]);
    {   /* different seeds, different samples; sample_preset values */
        textok_maskgit_sample_config l32;
        textok_rng_seed(&rng, 78);
        textok_maskgit_generate(m, &sc, classes, 3, &rng, b);
        textok_maskgit_sample_preset(&l32, "S-128");
        tt_check(s, memcmp(a, b, sizeof a) != 0 && l32.steps == 64 && l32.guidance_decay == TEXTOK_GUIDANCE_POWER_COSINE &&
                 fabsf(l32.temperature - 2.8f) < 1e-6f, "MaskGIT %s: another seed gives other ids; the S-128 preset", an);
    }
done:
    textok_maskgit_free(m); textok_maskgit_free(m2); textok_maskgit_free(m3);
}

/* ----- bad input and hostile files ----------------------------------------------------------------- */
static int mg_msg_has(const char *needle) { return strstr(textok_last_error(), needle) != NULL; }

static void mg_bad(tt_stats *s)
{
    textok_maskgit_config c = mg_tiny(TEXTOK_MASKGIT_BERT), c2;
    textok_params p = textok_default_params();
    textok_maskgit *m = NULL, *m2 = NULL;
    textok_maskgit_sample_config sc;
    int32_t ids[8 * 2], cls[2] = { 0, 1 };
    float lg[2 * 8 * 16], u1[2 * 8 * 16], u2[16];
    textok_rng rng;
    textok_safetensors st;
    char path[512];
    int i, rc;
    p.max_batch = 2;
    if (textok_maskgit_create(&m, &c, &p, 1) != TEXTOK_OK) { tt_check(s, 0, "MaskGIT bad input: create: %s", textok_last_error()); return; }
    for (i = 0; i < 16; i++) { ids[i] = i % 16; u1[i] = u2[i] = 0.5f; }
    for (i = 0; i < 2 * 8 * 16; i++) u1[i] = 0.5f;
    ids[5] = 17;
    rc = textok_maskgit_forward(m, ids, cls, 2, lg);
    tt_check(s, rc == TEXTOK_ERR_ARG && mg_msg_has("id 17"), "MaskGIT: id > V refused: %s", textok_last_error());
    ids[5] = 16; cls[1] = 6;
    rc = textok_maskgit_forward(m, ids, cls, 2, lg);
    tt_check(s, rc == TEXTOK_ERR_ARG && mg_msg_has("class 6"), "MaskGIT: class > num_classes refused: %s", textok_last_error());
    cls[1] = 5;
    rc = textok_maskgit_forward(m, ids, cls, 2, lg);
    tt_check(s, rc == TEXTOK_OK, "MaskGIT: forward accepts the mask id and the null class");
    textok_maskgit_sample_preset(&sc, "demo");
    textok_rng_seed(&rng, 1);
    rc = textok_maskgit_generate(m, &sc, cls, 2, &rng, ids);
    tt_check(s, rc == TEXTOK_ERR_ARG && mg_msg_has("class 5"), "MaskGIT: generate refuses the null class as a condition: %s", textok_last_error());
    cls[1] = 1;
    sc.guidance_scale = NAN;
    rc = textok_maskgit_generate(m, &sc, cls, 2, &rng, ids);
    tt_check(s, rc == TEXTOK_ERR_ARG && mg_msg_has("guidance_scale"), "MaskGIT: NaN guidance refused: %s", textok_last_error());
    textok_maskgit_sample_preset(&sc, "demo");
    sc.steps = 0;
    rc = textok_maskgit_generate(m, &sc, cls, 2, &rng, ids);
    tt_check(s, rc == TEXTOK_ERR_ARG && mg_msg_has("steps 0"), "MaskGIT: steps 0 refused: %s", textok_last_error());
    textok_maskgit_sample_preset(&sc, "demo");
    sc.temperature = -1.0f;
    rc = textok_maskgit_generate(m, &sc, cls, 2, &rng, ids);
    tt_check(s, rc == TEXTOK_ERR_ARG && mg_msg_has("temperature"), "MaskGIT: negative temperature refused: %s", textok_last_error());
    textok_maskgit_sample_preset(&sc, "demo");
    for (i = 0; i < 16; i++) ids[i] = 16;
    rc = textok_maskgit_sample_step(m, &sc, 8, ids, cls, 2, u1, u2);
    tt_check(s, rc == TEXTOK_ERR_ARG && mg_msg_has("step 8"), "MaskGIT: sample_step past the last step refused: %s", textok_last_error());
    rc = textok_maskgit_generate(m, &sc, cls, 0, &rng, ids);
    tt_check(s, rc == TEXTOK_ERR_ARG, "MaskGIT: batch 0 refused: %s", textok_last_error());
    rc = textok_maskgit_preset(&c2, "XL-16");
    tt_check(s, rc == TEXTOK_ERR_ARG, "MaskGIT: unknown preset refused: %s", textok_last_error());
    c2 = c; c2.depth = 3; c2.arch = TEXTOK_MASKGIT_UVIT;
    rc = textok_maskgit_config_check(&c2);
    tt_check(s, rc == TEXTOK_ERR_SHAPE && mg_msg_has("even"), "MaskGIT: odd UViT depth refused: %s", textok_last_error());
    c2 = c; c2.heads = 3;
    rc = textok_maskgit_config_check(&c2);
    tt_check(s, rc == TEXTOK_ERR_SHAPE && mg_msg_has("heads"), "MaskGIT: heads not dividing hidden refused: %s", textok_last_error());
    /* files: a config whose seq_len does not match the file; the wrong architecture; a truncated file;
       a file missing a tensor or holding an extra one */
    if (textok_st_open(&st, mg_path(path, sizeof path, "bert_tiny.safetensors")) == TEXTOK_OK) {
        c2 = c; c2.seq_len = 9;
        rc = textok_maskgit_load_st(&m2, &st, &c2, &p);
        tt_check(s, rc == TEXTOK_ERR_SHAPE && mg_msg_has("position_embeddings"),
                 "MaskGIT: seq_len 9 against an L=8 file refused, naming the tensor: %s", textok_last_error());
        c2 = mg_tiny(TEXTOK_MASKGIT_UVIT);
        rc = textok_maskgit_load_st(&m2, &st, &c2, &p);
        tt_check(s, rc != TEXTOK_OK && m2 == NULL, "MaskGIT: an ImageBert file as UViTBert refused: %s", textok_last_error());
        rc = textok_maskgit_load_st(&m2, &st, NULL, &p);
        tt_check(s, rc == TEXTOK_ERR_FORMAT && mg_msg_has("textok.model"),
                 "MaskGIT: an official file without a config is refused with a hint: %s", textok_last_error());
        {   /* truncated copies: the reader refuses before anything is loaded */
            FILE *f = fopen(path, "rb");
            unsigned char *buf = NULL;
            long sz = 0;
            textok_safetensors t2;
            if (f) {
                fseek(f, 0, SEEK_END); sz = ftell(f); fseek(f, 0, SEEK_SET);
                buf = (unsigned char *)malloc((size_t)sz);
                if (buf && fread(buf, 1, (size_t)sz, f) != (size_t)sz) sz = 0;
                fclose(f);
            }
            rc = buf && sz > 100 ? textok_st_open_memory(&t2, buf, (size_t)sz - 64, "truncated.safetensors") : -99;
            if (rc == TEXTOK_OK) textok_st_close(&t2);
            tt_check(s, rc == TEXTOK_ERR_FORMAT, "MaskGIT: a truncated file refused: %s", textok_last_error());
            free(buf);
        }
        textok_st_close(&st);
    }
    {   /* hostile: the last tensor missing, and one tensor too many */
        textok_st_entry e[64];
        float *host = (float *)malloc(m->n_params * sizeof(float));
        static float extra[4];
        size_t off = 0;
        int n = m->n_tensors, d;
        m->k.to_host(&m->k, host, m->params, m->n_params * sizeof(float));
        for (i = 0; i < n && i < 63; i++) {
            e[i].name = m->specs[i].name; e[i].data = host + off; e[i].ndim = m->specs[i].ndim;
            for (d = 0; d < e[i].ndim; d++) e[i].shape[d] = m->specs[i].shape[d];
            off += textok__spec_numel(&m->specs[i]);
        }
        textok_st_save("build/mg_missing.safetensors", e, n - 1, NULL, 0, TEXTOK_DTYPE_F32);
        rc = textok_st_open(&st, "build/mg_missing.safetensors");
        if (rc == TEXTOK_OK) { rc = textok_maskgit_load_st(&m2, &st, &c, &p); textok_st_close(&st); }
        tt_check(s, rc == TEXTOK_ERR_NOT_FOUND && mg_msg_has("model.lm_head.bias"),
                 "MaskGIT: a missing tensor refused, named: %s", textok_last_error());
        e[n].name = "model.encoder.layer.2.output.dense.bias"; e[n].data = extra; e[n].ndim = 1; e[n].shape[0] = 4;
        textok_st_save("build/mg_extra.safetensors", e, n + 1, NULL, 0, TEXTOK_DTYPE_F32);
        rc = textok_st_open(&st, "build/mg_extra.safetensors");
        if (rc == TEXTOK_OK) { rc = textok_maskgit_load_st(&m2, &st, &c, &p); textok_st_close(&st); }
        tt_check(s, rc == TEXTOK_ERR_SHAPE && mg_msg_has("layer.2"), "MaskGIT: an unexpected tensor (a deeper model) refused, named: %s",
                 textok_last_error());
        free(host);
    }
    textok_maskgit_free(m2);
    textok_maskgit_free(m);
}

/* ----- a tiny MaskGIT learns a handful of sequences ------------------------------------------- */
static void mg_train(tt_stats *s, int arch)
{
    const char *an = arch == TEXTOK_MASKGIT_BERT ? "ImageBert" : "UViTBert";
    textok_maskgit_config c = mg_tiny(arch);
    textok_params p = textok_default_params();
    textok_maskgit *m = NULL;
    textok__maskgit_train *tr = NULL;
    textok_gen_train_config tc;
    textok_gen_train_stats gs;
    textok_adamw_params hp;
    textok_rng rng;
    float *g = NULL, *am = NULL, *av = NULL;
    int32_t tok[4 * 8], y[4] = { 0, 1, 2, 3 };
    double first = 0, last = 0;
    int i, step, ok = 1;
    const int steps = 150;
    c.hidden = 32; c.mlp_hidden = 64;
    if (textok_maskgit_create(&m, &c, &p, 3) != TEXTOK_OK) { tt_check(s, 0, "MaskGIT train: %s", textok_last_error()); return; }
    for (i = 0; i < 32; i++) tok[i] = (i * 7 + (i / 8) * 3) % 16;   /* 4 fixed sequences, one per class */
    g = (float *)m->k.alloc(&m->k, m->n_params * sizeof(float));
    am = (float *)m->k.alloc(&m->k, m->n_params * sizeof(float));
    av = (float *)m->k.alloc(&m->k, m->n_params * sizeof(float));
    if (!g || !am || !av || textok__maskgit_train_new(&tr, m, g, 4) != TEXTOK_OK) { ok = 0; goto done; }
    m->k.fill(&m->k, am, m->n_params, 0.0f);
    m->k.fill(&m->k, av, m->n_params, 0.0f);
    memset(&tc, 0, sizeof tc);
    tc.batch = 4; tc.mask_schedule = TEXTOK_MASK_ARCCOS; tc.label_smoothing = 0.1f; tc.unmasked_weight = 0.1f; tc.cond_dropout = 0.1f;
    hp.lr = 3e-3; hp.beta1 = 0.9; hp.beta2 = 0.96; hp.eps = 1e-8; hp.weight_decay = 0.0;
    textok_rng_seed(&rng, 2024);
    for (step = 1; step <= steps && ok; step++) {
        m->k.fill(&m->k, g, m->n_params, 0.0f);
        if (textok__maskgit_train_loss(tr, &rng, &tc, tok, y, &gs) != TEXTOK_OK) { ok = 0; break; }
        m->k.adamw_update(&m->k, m->params, g, am, av, m->n_params, &hp, step);
        if (step <= 10) first += gs.loss / 10;
        if (step > steps - 10) last += gs.loss / 10;
    }
done:
    tt_check(s, ok && last < 0.5 * first, "MaskGIT %s: %d AdamW steps over the hook on 4 sequences: loss %.3f -> %.3f "
             "(mean of the first / last 10 steps; must halve)%s%s", an, steps, first, last, ok ? "" : ": ", ok ? "" : textok_last_error());
    if (tr) textok__maskgit_train_delete(tr);
    if (g) m->k.free(&m->k, g);
    if (am) m->k.free(&m->k, am);
    if (av) m->k.free(&m->k, av);
    textok_maskgit_free(m);
}

void test_maskgit(tt_stats *s)
{
    textok_kernels ref = textok_cpu_ref_kernels(), fast = textok_cpu_kernels(0);
    printf("== MaskGIT: ImageBert, UViTBert, sampling, training hooks ==\n");
    mg_presets(s);
    mg_counts(s);
    mg_golden(s, "bert_tiny.safetensors", &ref);
    mg_golden(s, "bert_tiny.safetensors", &fast);
    mg_golden(s, "uvit_tiny.safetensors", &ref);
    mg_golden(s, "uvit_tiny.safetensors", &fast);
    mg_fd(s, "bert_tiny");
    mg_fd(s, "uvit_tiny");
    mg_save_generate(s, TEXTOK_MASKGIT_BERT);
    mg_save_generate(s, TEXTOK_MASKGIT_UVIT);
    mg_bad(s);
    mg_train(s, TEXTOK_MASKGIT_BERT);
    mg_train(s, TEXTOK_MASKGIT_UVIT);
}
