/* test_dit.c - DiT and its Gaussian diffusion (textok.h sections 14 and 15):
     1. goldens (tools/gen_golden_dit.py, tests/golden/dit/, from the independent PyTorch
        reference tools/dit_ref.py in float64): forward, backward (every parameter and the
        input), forward_with_cfg and one DDPM / DDIM step with CFG for a 2D class-conditional
        DiT with official names (guide_channels 3), a 1D-token DiT (all channels guided) and a
        DiT-T2I with a padded caption and a null caption; the diffusion's respaced timesteps,
        the training loss (mse + vb, t = 0's discretised NLL included) with its gradient, and a
        FIXED_LARGE step; on the reference and the fast kernel table;
     2. finite differences of the backward (parameters of every kind and the input) and of the
        loss's analytic gradient;
     3. properties: padded and null caption rows cannot change anything, max_batch chunking
        (incl. CFG's two passes at max_batch 1), save/load round trip, create's sin-cos and
        adaLN-Zero, textok_dit_generate deterministic across thread counts;
     4. bad input: classes, timesteps, text shapes, guidance scales, step counts, respacing
        strings, hostile and truncated files -> a clear error, never a crash;
     5. a seeded tiny DiT trained with the hooks the generator trainer uses and AdamW: its loss
        falls clearly.
   The internal calls (textok__dit_train_*) are static in the header, so this file compiles its
   own private copy of the implementation (TEXTOK_STATIC). */
#define TEXTOK_STATIC
#define TEXTOK_IMPLEMENTATION
#include "textok.h"
#include "check.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DT_TOL 1e-4        /* the bound on relative L2 error */
#define DT_FD_H 1e-2       /* float32 forward: a smaller step drowns in rounding */
#define DT_FD_TOL 2e-2

static float *dt_read(tt_stats *s, const textok_safetensors *st, const char *name, size_t *n)
{
    const textok_st_tensor *t = textok_st_find(st, name);
    float *x;
    if (!t) { tt_check(s, 0, "%s: tensor '%s' missing", st->path, name); return NULL; }
    x = (float *)malloc((t->numel ? t->numel : 1) * sizeof(float));
    if (!x || textok_st_read_f32(st, t, x, t->numel) != TEXTOK_OK) { free(x); return NULL; }
    if (n) *n = t->numel;
    return x;
}

static int32_t *dt_ints(const float *f, size_t n)
{
    int32_t *v = (int32_t *)malloc((n ? n : 1) * sizeof(int32_t));
    size_t i;
    for (i = 0; i < n; i++) v[i] = (int32_t)f[i];
    return v;
}

static int dt_same(const float *a, const float *b, size_t n) { return memcmp(a, b, n * sizeof(float)) == 0; }

/* one golden case's inputs */
typedef struct dt_case {
    textok_safetensors ref;
    textok_dit_config cfg;
    float *x, *out, *dout, *text, *mask_f;
    int32_t *t, *y;
    unsigned char *mask;
    textok_text tx;
    size_t nx, nout;
    int B;
} dt_case;

static void dt_case_free(dt_case *c)
{
    textok_st_close(&c->ref);
    free(c->x); free(c->out); free(c->dout); free(c->text); free(c->mask_f); free(c->t); free(c->y); free(c->mask);
    memset(c, 0, sizeof *c);
}

static int dt_case_open(tt_stats *s, dt_case *c, const char *name)
{
    char path[512];
    size_t nt = 0, n;
    float *tf, *yf;
    memset(c, 0, sizeof *c);
    snprintf(path, sizeof path, "%s/dit/%s_ref.safetensors", tt_golden_dir, name);
    if (textok_st_open(&c->ref, path) != TEXTOK_OK) { tt_check(s, 0, "dit golden %s: %s", name, textok_last_error()); return 0; }
    if (textok_dit_config_from_meta(&c->cfg, &c->ref) != TEXTOK_OK) { tt_check(s, 0, "dit golden %s: config: %s", name, textok_last_error()); return 0; }
    c->x = dt_read(s, &c->ref, "x", &c->nx);
    c->out = dt_read(s, &c->ref, "out", &c->nout);
    c->dout = dt_read(s, &c->ref, "dout", NULL);
    tf = dt_read(s, &c->ref, "t", &nt);
    if (!c->x || !c->out || !c->dout || !tf) { free(tf); return 0; }
    c->B = (int)nt;
    c->t = dt_ints(tf, nt);
    free(tf);
    if (c->cfg.num_classes) {
        yf = dt_read(s, &c->ref, "y", NULL);
        if (!yf) return 0;
        c->y = dt_ints(yf, nt);
        free(yf);
    }
    if (c->cfg.text_dim) {
        c->text = dt_read(s, &c->ref, "text", NULL);
        c->mask_f = dt_read(s, &c->ref, "text_mask", &n);
        if (!c->text || !c->mask_f) return 0;
        c->mask = (unsigned char *)malloc(n);
        while (n--) c->mask[n] = c->mask_f[n] > 0.5f;
        c->tx.emb = c->text; c->tx.mask = c->mask; c->tx.L = c->cfg.text_len; c->tx.dim = c->cfg.text_dim;
    }
    return 1;
}

static textok_dit *dt_load(tt_stats *s, const char *name, const textok_kernels *k, int max_batch)
{
    char path[512];
    textok_params p = textok_default_params();
    textok_dit *m = NULL;
    p.kernels = k; p.max_batch = max_batch;
    snprintf(path, sizeof path, "%s/dit/%s.safetensors", tt_golden_dir, name);
    if (textok_dit_load(&m, path, &p) != TEXTOK_OK) tt_check(s, 0, "dit golden %s: load: %s", name, textok_last_error());
    return m;
}

/* training forward + backward with upstream gradient dout: grads (host, n_params) and dx (host) */
static int dt_backward(textok_dit *m, const dt_case *c, const float *x, const float *dout, float *grads, float *dx)
{
    textok__dit_train *tr = NULL;
    const textok_kernels *k = &m->k;
    float *gdev = (float *)k->alloc(k, m->n_params * sizeof(float)), *dxdev = (float *)k->alloc(k, c->nx * sizeof(float));
    int ok = gdev && dxdev;
    if (ok) {
        k->fill(k, gdev, m->n_params, 0.0f);
        k->fill(k, dxdev, c->nx, 0.0f);
        ok = textok__dit_train_new(&tr, m, gdev, c->B) == TEXTOK_OK
          && textok__dit_train_forward(tr, x, c->t, c->y, c->cfg.text_dim ? &c->tx : NULL, NULL) == TEXTOK_OK
          && textok__dit_train_backward(tr, dout, dxdev) == TEXTOK_OK;
    }
    if (ok) {
        k->to_host(k, grads, gdev, m->n_params * sizeof(float));
        k->to_host(k, dx, dxdev, c->nx * sizeof(float));
    }
    textok__dit_train_delete(tr);
    if (gdev) k->free(k, gdev);
    if (dxdev) k->free(k, dxdev);
    return ok;
}

static void dt_golden(tt_stats *s, const char *name, const textok_kernels *kt, int max_batch)
{
    dt_case c;
    textok_dit *m = NULL;
    textok_diffusion *d = NULL;
    char label[160], what[320];
    float *got = NULL, *grads = NULL, *dx = NULL, *ref = NULL;
    size_t off = 0;
    int i, st, s_i;
    static const char *const steps[] = { "ddpm137", "ddpm0", "ddim23", "ddim0" };
    snprintf(label, sizeof label, "dit golden %s [%s, max_batch %d]", name, kt->name, max_batch);
    if (!dt_case_open(s, &c, name)) goto done;
    if (!(m = dt_load(s, name, kt, max_batch))) goto done;
    tt_check(s, memcmp(textok_dit_get_config(m), &c.cfg, sizeof c.cfg) == 0, "%s: the model file's config is the reference's", label);
    got = (float *)malloc(c.nout * sizeof(float));
    st = textok_dit_forward(m, c.x, c.t, c.y, c.cfg.text_dim ? &c.tx : NULL, c.B, got);
    if (st != TEXTOK_OK) { tt_check(s, 0, "%s: forward: %s", label, textok_last_error()); goto done; }
    snprintf(what, sizeof what, "%s out", label); tt_compare(s, what, got, c.out, c.nout, DT_TOL);
    /* backward: every trainable tensor and the input */
    grads = (float *)malloc(m->n_params * sizeof(float));
    dx = (float *)malloc(c.nx * sizeof(float));
    if (!dt_backward(m, &c, c.x, c.dout, grads, dx)) { tt_check(s, 0, "%s: backward: %s", label, textok_last_error()); goto done; }
    ref = dt_read(s, &c.ref, "grad.x", NULL);
    if (ref) { snprintf(what, sizeof what, "%s grad.x", label); tt_compare(s, what, dx, ref, c.nx, DT_TOL); }
    free(ref); ref = NULL;
    {
        double worst = 0.0;
        int n_ok = 0, n_bad = 0;
        for (i = 0; i < m->n_tensors; i++) {
            const size_t n = textok__spec_numel(&m->specs[i]);
            char gname[128];
            if (textok__dit_frozen(m->specs[i].name)) {
                size_t j;
                int zero = 1;
                for (j = 0; j < n; j++) zero &= grads[off + j] == 0.0f;
                tt_check(s, zero, "%s: %s is not trained: its gradient stays 0", label, m->specs[i].name);
            } else {
                snprintf(gname, sizeof gname, "grad.%s", m->specs[i].name);
                ref = dt_read(s, &c.ref, gname, NULL);
                if (ref) {
                    double se = 0, sr = 0, rel;
                    size_t j;
                    for (j = 0; j < n; j++) { double e = (double)grads[off + j] - ref[j]; se += e * e; sr += (double)ref[j] * ref[j]; }
                    rel = sqrt(se / (sr > 0 ? sr : 1.0));
                    if (rel > worst) worst = rel;
                    if (rel <= DT_TOL) n_ok++;
                    else { n_bad++; snprintf(what, sizeof what, "%s %s", label, gname); tt_compare(s, what, grads + off, ref, n, DT_TOL); }
                }
                free(ref); ref = NULL;
            }
            off += n;
        }
        tt_check(s, n_bad == 0, "%s: gradients of all %d trainable tensors, worst rel_l2 %.3e (tol %.0e)", label, n_ok + n_bad, worst, DT_TOL);
    }
    /* forward_with_cfg and one sampler step each (the step from the golden model output too) */
    for (s_i = 0; s_i < 4; s_i++) {
        char key[64];
        const char *sp, *idx, *eta_s;
        float *mo, *noise, *xp, *xgot;
        int32_t *tt = (int32_t *)malloc((size_t)c.B * sizeof(int32_t));
        int index, b;
        snprintf(key, sizeof key, "%s.respacing", steps[s_i]); sp = textok_st_meta(&c.ref, key);
        snprintf(key, sizeof key, "%s.index", steps[s_i]); idx = textok_st_meta(&c.ref, key);
        snprintf(key, sizeof key, "%s.eta", steps[s_i]); eta_s = textok_st_meta(&c.ref, key);
        snprintf(key, sizeof key, "%s.model_out", steps[s_i]); mo = dt_read(s, &c.ref, key, NULL);
        snprintf(key, sizeof key, "%s.noise", steps[s_i]); noise = dt_read(s, &c.ref, key, NULL);
        snprintf(key, sizeof key, "%s.x_prev", steps[s_i]); xp = dt_read(s, &c.ref, key, NULL);
        xgot = (float *)malloc(c.nx * sizeof(float));
        if (!sp || !idx || !eta_s || !mo || !noise || !xp || textok_diffusion_create(&d, 1000, sp) != TEXTOK_OK) {
            tt_check(s, 0, "%s: step %s: golden incomplete or diffusion: %s", label, steps[s_i], textok_last_error());
            free(mo); free(noise); free(xp); free(xgot); free(tt);
            continue;
        }
        index = atoi(idx);
        for (b = 0; b < c.B; b++) tt[b] = textok_diffusion_timestep(d, index);
        st = textok_dit_forward_cfg(m, c.x, tt, c.y, c.cfg.text_dim ? &c.tx : NULL, c.B, 4.0f, got);
        snprintf(what, sizeof what, "%s %s cfg out", label, steps[s_i]);
        if (st == TEXTOK_OK) tt_compare(s, what, got, mo, c.nout, DT_TOL);
        else tt_check(s, 0, "%s: %s", what, textok_last_error());
        {
            const int C = c.cfg.in_channels, HW = (int)(c.nx / ((size_t)c.B * C));
            if (!strcmp(eta_s, "ddpm")) st = textok_diffusion_p_step(d, index, c.x, mo, noise, c.B, C, HW, c.cfg.learn_sigma, xgot);
            else st = textok_diffusion_ddim_step(d, index, c.x, mo, noise, (float)atof(eta_s), c.B, C, HW, c.cfg.learn_sigma, xgot);
        }
        snprintf(what, sizeof what, "%s %s (%s %s, t %d) x_prev", label, steps[s_i], sp, eta_s, (int)tt[0]);
        if (st == TEXTOK_OK) tt_compare(s, what, xgot, xp, c.nx, DT_TOL);
        else tt_check(s, 0, "%s: %s", what, textok_last_error());
        textok_diffusion_free(d); d = NULL;
        free(mo); free(noise); free(xp); free(xgot); free(tt);
    }
    if (c.cfg.text_dim) {
        /* padded rows of caption 0 and every row of the null caption 2 cannot change anything */
        float *alt = (float *)malloc((size_t)c.B * c.cfg.text_len * c.cfg.text_dim * sizeof(float));
        float *got2 = (float *)malloc(c.nout * sizeof(float));
        const size_t row = (size_t)c.cfg.text_len * c.cfg.text_dim;
        textok_rng r;
        textok_text tx2 = c.tx;
        memcpy(alt, c.text, (size_t)c.B * row * sizeof(float));
        textok_rng_seed(&r, 5);
        textok_rng_fill_normal(&r, alt + 4 * (size_t)c.cfg.text_dim, 2 * (size_t)c.cfg.text_dim, 0.0f, 5.0f);
        textok_rng_fill_normal(&r, alt + 2 * row, row, 0.0f, 1.0f);
        tx2.emb = alt;
        st = textok_dit_forward(m, c.x, c.t, c.y, &tx2, c.B, got2);
        if (st == TEXTOK_OK) st = textok_dit_forward(m, c.x, c.t, c.y, &c.tx, c.B, got);
        tt_check(s, st == TEXTOK_OK && dt_same(got, got2, c.nout),
                 "%s: padded caption rows and the null caption's rows cannot change the output (bit-identical)", label);
        free(alt); free(got2);
    }
done:
    textok_dit_free(m);
    dt_case_free(&c);
    free(got); free(grads); free(dx); free(ref);
}

/* ----- the diffusion goldens ------------------------------------------------------------------ */
static void dt_diffusion_golden(tt_stats *s)
{
    char path[512];
    textok_safetensors st;
    textok_diffusion *d = NULL;
    static const char *const maps[3][2] = { { "map_250", "250" }, { "map_ddim50", "ddim50" }, { "map_sections", "10,15,5" } };
    float *x0 = NULL, *noise = NULL, *tf = NULL, *mo = NULL, *mse_r = NULL, *vb_r = NULL, *dout_r = NULL, *mse0_r = NULL, *dout0_r = NULL;
    float *dout = NULL, *v = NULL;
    int32_t *t = NULL;
    int i, b, ok;
    size_t n;
    snprintf(path, sizeof path, "%s/dit/diffusion_ref.safetensors", tt_golden_dir);
    if (textok_st_open(&st, path) != TEXTOK_OK) { tt_check(s, 0, "diffusion golden: %s", textok_last_error()); return; }
    for (i = 0; i < 3; i++) {
        v = dt_read(s, &st, maps[i][0], &n);
        ok = v && textok_diffusion_create(&d, 1000, maps[i][1]) == TEXTOK_OK && (size_t)textok_diffusion_num_steps(d) == n;
        for (b = 0; ok && b < (int)n; b++) ok = textok_diffusion_timestep(d, b) == (int)v[b];
        tt_check(s, ok, "diffusion respacing \"%s\": %d steps, %d ... %d, as the reference", maps[i][1], d ? textok_diffusion_num_steps(d) : -1,
                 d ? textok_diffusion_timestep(d, 0) : -1, d ? textok_diffusion_timestep(d, textok_diffusion_num_steps(d) - 1) : -1);
        textok_diffusion_free(d); d = NULL;
        free(v); v = NULL;
    }
    /* the training loss: B 4, C 4, HW 16, t = 0, 1, 500, 999 */
    x0 = dt_read(s, &st, "loss.x0", NULL); noise = dt_read(s, &st, "loss.noise", NULL); tf = dt_read(s, &st, "loss.t", NULL);
    mo = dt_read(s, &st, "loss.model_out", &n); mse_r = dt_read(s, &st, "loss.mse", NULL); vb_r = dt_read(s, &st, "loss.vb", NULL);
    dout_r = dt_read(s, &st, "loss.dout", NULL); mse0_r = dt_read(s, &st, "loss.mse_fixed", NULL); dout0_r = dt_read(s, &st, "loss.dout_fixed", NULL);
    if (!x0 || !noise || !tf || !mo || !mse_r || !vb_r || !dout_r || !mse0_r || !dout0_r || textok_diffusion_create(&d, 1000, NULL) != TEXTOK_OK) goto done;
    t = dt_ints(tf, 4);
    dout = (float *)malloc(n * sizeof(float));
    {
        const int B = 4, C = 4, HW = 16;
        double mse, vb, rm = 0, rv = 0;
        float got[4], want[4];
        for (b = 0; b < B; b++) { rm += mse_r[b]; rv += vb_r[b]; }
        ok = textok_diffusion_loss(d, x0, noise, t, mo, B, C, HW, 1, &mse, &vb, dout) == TEXTOK_OK;
        tt_check(s, ok && fabs(mse - rm / B) <= 1e-5 * fabs(rm / B) && fabs(vb - rv / B) <= 1e-4 * fabs(rv / B),
                 "diffusion loss: mse %.7g (ref %.7g), vb %.7g bits (ref %.7g)", mse, rm / B, vb, rv / B);
        tt_compare(s, "diffusion loss d(mse + vb)/d model_out (vb: eps detached)", dout, dout_r, n, DT_TOL);
        for (b = 0; b < B; b++) {   /* per example: t = 0 is the discretised NLL */
            double m1, v1;
            textok_diffusion_loss(d, x0 + (size_t)b * C * HW, noise + (size_t)b * C * HW, t + b, mo + (size_t)b * 2 * C * HW, 1, C, HW, 1,
                                  &m1, &v1, NULL);
            got[b] = (float)v1; want[b] = vb_r[b];
        }
        tt_compare(s, "diffusion loss vb per example (t 0, 1, 500, 999)", got, want, 4, DT_TOL);
        /* learn_sigma 0: mse only, dout has C channels */
        {
            float *mo0 = (float *)malloc((size_t)B * C * HW * sizeof(float));
            for (b = 0; b < B; b++) memcpy(mo0 + (size_t)b * C * HW, mo + (size_t)b * 2 * C * HW, (size_t)C * HW * sizeof(float));
            ok = textok_diffusion_loss(d, x0, noise, t, mo0, B, C, HW, 0, &mse, &vb, dout) == TEXTOK_OK;
            tt_check(s, ok && vb == 0.0 && fabs(mse - rm / B) <= 1e-5 * fabs(rm / B), "diffusion loss, learn_sigma 0: mse %.7g, vb %g", mse, vb);
            tt_compare(s, "diffusion loss, learn_sigma 0: d mse / d model_out", dout, dout0_r, (size_t)B * C * HW, DT_TOL);
            free(mo0);
        }
        /* finite differences of the double-precision loss against the analytic gradient */
        {
            static const int probe[6][3] = { { 0, 4, 0 }, { 0, 4, 1 }, { 0, 5, 0 }, { 1, 6, 3 }, { 3, 7, 9 }, { 2, 1, 5 } };
            double worst = 0.0;
            int pi;
            textok_diffusion_loss(d, x0, noise, t, mo, B, C, HW, 1, &mse, &vb, dout);
            for (pi = 0; pi < 6; pi++) {
                const size_t ix = ((size_t)probe[pi][0] * 2 * C + probe[pi][1]) * HW + probe[pi][2];
                const float keep = mo[ix], h = 1e-2f;
                double mp, vp, mm, vm, fd, g = dout[ix];
                mo[ix] = keep + h; textok_diffusion_loss(d, x0, noise, t, mo, B, C, HW, 1, &mp, &vp, NULL);
                mo[ix] = keep - h; textok_diffusion_loss(d, x0, noise, t, mo, B, C, HW, 1, &mm, &vm, NULL);
                mo[ix] = keep;
                /* eps channels: vb holds eps^ detached, so only mse's share is its gradient */
                fd = probe[pi][1] < C ? (mp - mm) / (2.0 * h) : (mp + vp - mm - vm) / (2.0 * h);
                if (fabs(fd - g) / (fabs(g) + 1e-7) > worst) worst = fabs(fd - g) / (fabs(g) + 1e-7);
            }
            tt_check(s, worst <= 1e-3, "diffusion loss gradient against finite differences (t = 0 NLL edges, KL, mse): worst rel %.2e", worst);
        }
    }
    textok_diffusion_free(d); d = NULL;
    /* FIXED_LARGE step */
    {
        float *xt = dt_read(s, &st, "fixed.xt", &n), *fm = dt_read(s, &st, "fixed.model_out", NULL);
        float *fz = dt_read(s, &st, "fixed.noise", NULL), *fx = dt_read(s, &st, "fixed.x_prev", NULL);
        float *got = (float *)malloc((n ? n : 1) * sizeof(float));
        if (xt && fm && fz && fx && textok_diffusion_create(&d, 1000, "250") == TEXTOK_OK &&
            textok_diffusion_p_step(d, 60, xt, fm, fz, 4, 4, 16, 0, got) == TEXTOK_OK)
            tt_compare(s, "diffusion DDPM step, learn_sigma 0 (FIXED_LARGE), \"250\" index 60", got, fx, n, DT_TOL);
        else
            tt_check(s, 0, "diffusion FIXED_LARGE step: %s", textok_last_error());
        free(xt); free(fm); free(fz); free(fx); free(got);
    }
done:
    textok_diffusion_free(d);
    textok_st_close(&st);
    free(x0); free(noise); free(tf); free(mo); free(mse_r); free(vb_r); free(dout_r); free(mse0_r); free(dout0_r); free(dout); free(t);
}

/* ----- finite differences of the backward ------------------------------------------------------ */
static double dt_objective(textok_dit *m, const dt_case *c, const float *x, float *out)
{
    double sum = 0.0;
    size_t i;
    if (textok_dit_forward(m, x, c->t, c->y, c->cfg.text_dim ? &c->tx : NULL, c->B, out) != TEXTOK_OK) return NAN;
    for (i = 0; i < c->nout; i++) sum += (double)out[i] * c->dout[i];
    return sum;
}

static void dt_fd(tt_stats *s, const char *name, const char *const *probes, int n_probes)
{
    dt_case c;
    textok_kernels ref = textok_cpu_ref_kernels();
    textok_dit *m = NULL;
    float *grads = NULL, *dx = NULL, *out = NULL, *xp = NULL;
    double worst = 0.0;
    int i, pi, n = 0;
    if (!dt_case_open(s, &c, name) || !(m = dt_load(s, name, &ref, 4))) goto done;
    grads = (float *)malloc(m->n_params * sizeof(float));
    dx = (float *)malloc(c.nx * sizeof(float));
    out = (float *)malloc(c.nout * sizeof(float));
    xp = (float *)malloc(c.nx * sizeof(float));
    if (!dt_backward(m, &c, c.x, c.dout, grads, dx)) { tt_check(s, 0, "dit fd %s: backward: %s", name, textok_last_error()); goto done; }
    for (pi = 0; pi < n_probes; pi++) {
        /* "<tensor>@<element>" */
        char tname[96];
        const char *at = strchr(probes[pi], '@');
        size_t el = (size_t)atol(at + 1), off = 0;
        double g, fd, lp, lm;
        float keep;
        memcpy(tname, probes[pi], (size_t)(at - probes[pi])); tname[at - probes[pi]] = 0;
        if (!strcmp(tname, "x")) {
            memcpy(xp, c.x, c.nx * sizeof(float));
            xp[el] += (float)DT_FD_H; lp = dt_objective(m, &c, xp, out);
            xp[el] = c.x[el] - (float)DT_FD_H; lm = dt_objective(m, &c, xp, out);
            g = dx[el];
        } else {
            for (i = 0; i < m->n_tensors && strcmp(m->specs[i].name, tname); i++) off += textok__spec_numel(&m->specs[i]);
            if (i == m->n_tensors) { tt_check(s, 0, "dit fd %s: no tensor %s", name, tname); continue; }
            off += el;
            m->k.to_host(&m->k, &keep, m->params + off, sizeof(float));
            { float v = keep + (float)DT_FD_H; m->k.to_device(&m->k, m->params + off, &v, sizeof(float)); }
            lp = dt_objective(m, &c, c.x, out);
            { float v = keep - (float)DT_FD_H; m->k.to_device(&m->k, m->params + off, &v, sizeof(float)); }
            lm = dt_objective(m, &c, c.x, out);
            m->k.to_device(&m->k, m->params + off, &keep, sizeof(float));
            g = grads[off];
        }
        fd = (lp - lm) / (2.0 * DT_FD_H);
        {
            double err = fabs(fd - g) / (fabs(g) + 1e-2);
            if (err > worst) worst = err;
            if (err > DT_FD_TOL) tt_check(s, 0, "dit fd %s: %s: backward %.6g, finite difference %.6g", name, probes[pi], g, fd);
        }
        n++;
    }
    tt_check(s, worst <= DT_FD_TOL, "dit fd %s: %d parameters / inputs, backward against central differences: worst rel %.2e (tol %.0e)",
             name, n, worst, DT_FD_TOL);
done:
    textok_dit_free(m);
    dt_case_free(&c);
    free(grads); free(dx); free(out); free(xp);
}

/* ----- create, save / load, chunking, determinism ------------------------------------------------ */
static void dt_create_and_io(tt_stats *s)
{
    dt_case c;
    textok_kernels fast = textok_cpu_kernels(0);
    textok_params p = textok_default_params();
    textok_dit *m = NULL, *g = NULL, *m2 = NULL;
    float *out = NULL, *out2 = NULL, *pe = NULL, *pe_g = NULL;
    const char *path = "build/test_dit_roundtrip.safetensors";
    size_t i, npe;
    int zero = 1;
    if (!dt_case_open(s, &c, "dit2d") || !(g = dt_load(s, "dit2d", &fast, 2))) goto done;
    p.max_batch = 2;
    if (textok_dit_create(&m, &c.cfg, &p, 7) != TEXTOK_OK) { tt_check(s, 0, "dit create: %s", textok_last_error()); goto done; }
    /* the sin-cos pos_embed is the reference's (numpy float64, cast to float32) */
    npe = textok__spec_numel(&m->specs[0]);
    pe = (float *)malloc(npe * sizeof(float)); pe_g = (float *)malloc(npe * sizeof(float));
    m->k.to_host(&m->k, pe, m->params, npe * sizeof(float));
    g->k.to_host(&g->k, pe_g, g->params, npe * sizeof(float));
    tt_compare(s, "dit create: 2D sin-cos pos_embed (column first) vs numpy", pe, pe_g, npe, 1e-7);
    /* adaLN-Zero: the final linear is zero, so a fresh model outputs exactly 0 */
    out = (float *)malloc(c.nout * sizeof(float)); out2 = (float *)malloc(c.nout * sizeof(float));
    if (textok_dit_forward(m, c.x, c.t, c.y, NULL, c.B, out) == TEXTOK_OK)
        for (i = 0; i < c.nout; i++) zero &= out[i] == 0.0f;
    tt_check(s, zero, "dit create: adaLN-Zero init outputs exactly 0");
    textok_dit_free(m); m = NULL;
    {   /* 1D positions */
        dt_case c1;
        textok_dit *g1 = dt_load(s, "dit1d", &fast, 1);
        if (dt_case_open(s, &c1, "dit1d") && g1 && textok_dit_create(&m, &c1.cfg, &p, 7) == TEXTOK_OK) {
            npe = textok__spec_numel(&m->specs[0]);
            free(pe); free(pe_g);
            pe = (float *)malloc(npe * sizeof(float)); pe_g = (float *)malloc(npe * sizeof(float));
            m->k.to_host(&m->k, pe, m->params, npe * sizeof(float));
            g1->k.to_host(&g1->k, pe_g, g1->params, npe * sizeof(float));
            tt_compare(s, "dit create: 1D sin-cos pos_embed vs numpy", pe, pe_g, npe, 1e-7);
        }
        textok_dit_free(m); m = NULL;
        textok_dit_free(g1);
        dt_case_free(&c1);
    }
    /* save / load round trip: the same bits out */
    if (textok_dit_save(g, path) != TEXTOK_OK || textok_dit_load(&m2, path, &p) != TEXTOK_OK) {
        tt_check(s, 0, "dit save / load: %s", textok_last_error());
        goto done;
    }
    textok_dit_forward(g, c.x, c.t, c.y, NULL, c.B, out);
    textok_dit_forward(m2, c.x, c.t, c.y, NULL, c.B, out2);
    tt_check(s, dt_same(out, out2, c.nout) && m2->n_params == g->n_params, "dit save / load round trip: identical outputs");
    remove(path);
done:
    textok_dit_free(m); textok_dit_free(g); textok_dit_free(m2);
    dt_case_free(&c);
    free(out); free(out2); free(pe); free(pe_g);
}

static int dt_cancel(int step, int total, void *user) { (void)total; *(int *)user = step; return step >= 2; }

static void dt_generate(tt_stats *s)
{
    static const char *const names[2] = { "dit1d", "dit_t2i" };
    int i;
    for (i = 0; i < 2; i++) {
        dt_case c;
        textok_kernels k1 = textok_cpu_kernels(1), k2 = textok_cpu_kernels(2);
        textok_dit *m1 = NULL, *m2 = NULL;
        textok_dit_sample_config sc = textok_dit_sample_default();
        textok_rng r1, r2;
        int32_t y[3] = { 1, 4, 7 };
        float *o1 = NULL, *o2 = NULL;
        int st1, st2, seen = 0;
        if (!dt_case_open(s, &c, names[i]) || !(m1 = dt_load(s, names[i], &k1, 1)) || !(m2 = dt_load(s, names[i], &k2, 4))) goto next;
        o1 = (float *)malloc(c.nx * sizeof(float)); o2 = (float *)malloc(c.nx * sizeof(float));
        sc.steps = 8; sc.cfg_scale = 1.5f; sc.ddim = i; sc.eta = i ? 0.3f : 0.0f;
        textok_rng_seed(&r1, 42); textok_rng_seed(&r2, 42);
        st1 = textok_dit_generate(m1, &sc, c.cfg.num_classes ? y : NULL, c.cfg.text_dim ? &c.tx : NULL, c.B, &r1, o1);
        st2 = textok_dit_generate(m2, &sc, c.cfg.num_classes ? y : NULL, c.cfg.text_dim ? &c.tx : NULL, c.B, &r2, o2);
        tt_check(s, st1 == TEXTOK_OK && st2 == TEXTOK_OK && dt_same(o1, o2, c.nx) && memcmp(&r1, &r2, sizeof r1) == 0,
                 "dit generate %s (%s, 8 steps, cfg 1.5): 1 thread max_batch 1 and 2 threads max_batch 4 give the same bits",
                 names[i], i ? "DDIM eta 0.3" : "DDPM");
        sc.progress = dt_cancel; sc.progress_user = &seen;
        st1 = textok_dit_generate(m1, &sc, c.cfg.num_classes ? y : NULL, c.cfg.text_dim ? &c.tx : NULL, c.B, &r1, o1);
        tt_check(s, st1 == TEXTOK_ERR_ARG && seen == 2, "dit generate %s: the progress callback cancels: %s", names[i], textok_last_error());
    next:
        textok_dit_free(m1); textok_dit_free(m2);
        dt_case_free(&c);
        free(o1); free(o2);
    }
}

/* ----- bad input ---------------------------------------------------------------------------- */
static void dt_write_file(const char *path, const unsigned char *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (f) { fwrite(data, 1, n, f); fclose(f); }
}

static void dt_bad(tt_stats *s)
{
    dt_case c, ct;
    textok_kernels fast = textok_cpu_kernels(0);
    textok_dit *m = NULL, *mt = NULL;
    textok_diffusion *d = NULL;
    textok_dit_sample_config sc = textok_dit_sample_default();
    textok_rng r;
    float *out = NULL;
    int32_t y[2], t[2];
    int st;
    memset(&ct, 0, sizeof ct);
    textok_rng_seed(&r, 1);
    if (!dt_case_open(s, &c, "dit1d") || !(m = dt_load(s, "dit1d", &fast, 2))) goto done;
    out = (float *)malloc(c.nout * 2 * sizeof(float));
    y[0] = 1; y[1] = 11; t[0] = 5; t[1] = 6;
    st = textok_dit_forward(m, c.x, t, y, NULL, 2, out);
    tt_check(s, st == TEXTOK_ERR_ARG, "dit bad: class 11 of 10 (+ null) refused: %s", textok_last_error());
    y[1] = 10;
    st = textok_dit_generate(m, &sc, y, NULL, 2, &r, out);
    tt_check(s, st == TEXTOK_ERR_ARG, "dit bad: generate with the null class refused: %s", textok_last_error());
    st = textok_dit_forward(m, c.x, t, NULL, NULL, 2, out);
    tt_check(s, st == TEXTOK_ERR_ARG, "dit bad: a class model without classes refused: %s", textok_last_error());
    y[1] = 2; t[1] = 1000;
    st = textok_dit_forward(m, c.x, t, y, NULL, 2, out);
    tt_check(s, st == TEXTOK_ERR_ARG, "dit bad: timestep 1000 refused: %s", textok_last_error());
    t[1] = -1;
    st = textok_dit_forward_cfg(m, c.x, t, y, NULL, 2, 2.0f, out);
    tt_check(s, st == TEXTOK_ERR_ARG, "dit bad: timestep -1 refused: %s", textok_last_error());
    t[1] = 3;
    st = textok_dit_forward_cfg(m, c.x, t, y, NULL, 2, (float)NAN, out);
    tt_check(s, st == TEXTOK_ERR_ARG, "dit bad: NaN guidance scale refused: %s", textok_last_error());
    st = textok_dit_forward(m, c.x, t, y, NULL, 0, out);
    tt_check(s, st == TEXTOK_ERR_ARG, "dit bad: batch 0 refused: %s", textok_last_error());
    textok_rng_seed(&r, 1);
    sc.cfg_scale = (float)INFINITY;
    st = textok_dit_generate(m, &sc, y, NULL, 2, &r, out);
    tt_check(s, st == TEXTOK_ERR_ARG, "dit bad: infinite guidance scale refused: %s", textok_last_error());
    sc.cfg_scale = 1.0f; sc.steps = 0;
    st = textok_dit_generate(m, &sc, y, NULL, 2, &r, out);
    tt_check(s, st == TEXTOK_ERR_ARG, "dit bad: 0 steps refused: %s", textok_last_error());
    sc.steps = 1001;
    st = textok_dit_generate(m, &sc, y, NULL, 2, &r, out);
    tt_check(s, st == TEXTOK_ERR_ARG, "dit bad: 1001 steps refused: %s", textok_last_error());
    sc.steps = 999; sc.ddim = 1;
    st = textok_dit_generate(m, &sc, y, NULL, 2, &r, out);
    tt_check(s, st == TEXTOK_ERR_ARG, "dit bad: DDIM with 999 steps (no integer stride) refused: %s", textok_last_error());
    sc.steps = 10; sc.eta = 2.0f;
    st = textok_dit_generate(m, &sc, y, NULL, 2, &r, out);
    tt_check(s, st == TEXTOK_ERR_ARG, "dit bad: DDIM eta 2 refused: %s", textok_last_error());
    {
        static const char *const bad[] = { "abc", "250,", "0", "ddim", "ddim0", "1001", "10,-3", "ddim1001" };
        int i, all = 1;
        for (i = 0; i < 8; i++) {
            st = textok_diffusion_create(&d, 1000, bad[i]);
            all &= st == TEXTOK_ERR_ARG && d == NULL;
            textok_diffusion_free(d); d = NULL;
        }
        tt_check(s, all, "dit bad: 8 malformed respacing strings refused, e.g. %s", textok_last_error());
        st = textok_diffusion_create(&d, 10, NULL);
        tt_check(s, st == TEXTOK_ERR_ARG, "dit bad: a 10-step linear schedule (beta >= 1) refused: %s", textok_last_error());
        if (textok_diffusion_create(&d, 1000, "250") == TEXTOK_OK) {
            st = textok_diffusion_p_step(d, 250, c.x, c.out, c.x, 1, 8, 12, 1, out);
            tt_check(s, st == TEXTOK_ERR_ARG, "dit bad: step index 250 of 250 refused: %s", textok_last_error());
            st = textok_diffusion_p_step(d, 5, c.x, c.out, NULL, 1, 8, 12, 1, out);
            tt_check(s, st == TEXTOK_ERR_ARG, "dit bad: a noisy step without noise refused: %s", textok_last_error());
        }
        textok_diffusion_free(d); d = NULL;
    }
    /* text */
    if (dt_case_open(s, &ct, "dit_t2i") && (mt = dt_load(s, "dit_t2i", &fast, 2))) {
        textok_text tx = ct.tx;
        float *o = (float *)malloc(ct.nout * sizeof(float));
        tx.dim = ct.cfg.text_dim + 1;
        st = textok_dit_forward(mt, ct.x, ct.t, NULL, &tx, ct.B, o);
        tt_check(s, st == TEXTOK_ERR_SHAPE, "dit bad: caption embeddings of the wrong width refused: %s", textok_last_error());
        tx.dim = ct.cfg.text_dim; tx.L = ct.cfg.text_len + 1;
        st = textok_dit_forward(mt, ct.x, ct.t, NULL, &tx, ct.B, o);
        tt_check(s, st == TEXTOK_ERR_SHAPE, "dit bad: a caption longer than text_len refused: %s", textok_last_error());
        st = textok_dit_forward(mt, ct.x, ct.t, NULL, NULL, ct.B, o);
        tt_check(s, st == TEXTOK_ERR_ARG, "dit bad: a T2I model without text refused: %s", textok_last_error());
        free(o);
    }
    /* files: truncated, wrong kind, a tensor of the wrong shape */
    {
        char path[512];
        textok_file f;
        textok_dit *bad = NULL;
        snprintf(path, sizeof path, "%s/dit/dit1d.safetensors", tt_golden_dir);
        if (textok_file_open(&f, path) == TEXTOK_OK) {
            dt_write_file("build/test_dit_trunc.safetensors", f.data, f.size - 100);
            st = textok_dit_load(&bad, "build/test_dit_trunc.safetensors", NULL);
            tt_check(s, st != TEXTOK_OK && bad == NULL, "dit bad: a truncated file refused: %s", textok_last_error());
            dt_write_file("build/test_dit_trunc.safetensors", f.data, 7);
            st = textok_dit_load(&bad, "build/test_dit_trunc.safetensors", NULL);
            tt_check(s, st != TEXTOK_OK && bad == NULL, "dit bad: a 7-byte file refused: %s", textok_last_error());
            remove("build/test_dit_trunc.safetensors");
            textok_file_close(&f);
        }
        snprintf(path, sizeof path, "%s/dit/diffusion_ref.safetensors", tt_golden_dir);
        st = textok_dit_load(&bad, path, NULL);
        tt_check(s, st == TEXTOK_ERR_FORMAT && bad == NULL, "dit bad: a file that is not a DiT refused: %s", textok_last_error());
        {   /* the 1D model's file read as the T2I config: a missing / unexpected tensor */
            textok_safetensors st1;
            snprintf(path, sizeof path, "%s/dit/dit1d.safetensors", tt_golden_dir);
            if (textok_st_open(&st1, path) == TEXTOK_OK) {
                textok_dit_config cf = c.cfg;
                st = textok_dit_load_st(&bad, &st1, &ct.cfg, NULL);
                tt_check(s, st == TEXTOK_ERR_SHAPE && bad == NULL, "dit bad: a file of another config refused: %s", textok_last_error());
                cf.hidden = 24;
                st = textok_dit_load_st(&bad, &st1, &cf, NULL);
                tt_check(s, st == TEXTOK_ERR_SHAPE && bad == NULL, "dit bad: tensors of the wrong shape refused: %s", textok_last_error());
                cf = c.cfg; cf.heads = 5;
                st = textok_dit_load_st(&bad, &st1, &cf, NULL);
                tt_check(s, st == TEXTOK_ERR_SHAPE && bad == NULL, "dit bad: an inconsistent config refused: %s", textok_last_error());
                textok_st_close(&st1);
            }
        }
    }
    {
        textok_dit_config cf;
        textok_tensor_spec specs[292];
        size_t total = 0;
        int i, n = textok_dit_preset(&cf, "XL/2", 256) == TEXTOK_OK ? textok_dit_tensor_specs(&cf, specs, 292) : -1;
        for (i = 0; i < n && n == 292; i++) total += textok__spec_numel(&specs[i]);
        tt_check(s, n == 292 && cf.input_size == 32 && cf.hidden == 1152 && cf.depth == 28 && cf.guide_channels == 3 && total == 675129632u &&
                 !strcmp(specs[0].name, "pos_embed") && !strcmp(specs[291].name, "final_layer.adaLN_modulation.1.bias"),
                 "dit preset XL/2 at 256: 32x32x4 latents, 28 x 1152, guide 3, %d tensors, %lu values (architecture.md 7.2: 292, 675129632)",
                 n, (unsigned long)total);
        n = textok_dit_preset(&cf, "XL/2", 512) == TEXTOK_OK ? textok_dit_tensor_specs(&cf, specs, 292) : -1;
        tt_check(s, n == 292 && cf.input_size == 64 && specs[0].shape[1] == 1024, "dit preset XL/2 at 512: 64x64 latents, 1024 tokens");
        tt_check(s, textok_dit_preset(&cf, "XL/3", 256) == TEXTOK_ERR_ARG && textok_dit_preset(&cf, "M/2", 256) == TEXTOK_ERR_ARG &&
                 textok_dit_preset(&cf, "XL/2", 100) == TEXTOK_ERR_ARG, "dit preset: unknown sizes and image sizes refused: %s", textok_last_error());
    }
done:
    textok_dit_free(m); textok_dit_free(mt);
    dt_case_free(&c); dt_case_free(&ct);
    free(out);
}

/* ----- training: the hooks + AdamW on a handful of latents ---------------------------------- */
static void dt_train(tt_stats *s)
{
    textok_dit_config cfg;
    textok_params p = textok_default_params();
    textok_kernels fast = textok_cpu_kernels(0);
    textok_gen_train_config tc;
    textok_gen_train_stats st;
    textok_dit *m = NULL;
    textok__dit_train *tr = NULL;
    textok_adamw_params hp;
    textok_rng data, rng;
    float *grads = NULL, *mom = NULL, *vel = NULL, *lat = NULL;
    int32_t y[4] = { 0, 1, 2, 3 };
    double first = 0.0, last = 0.0;
    const int B = 4, steps = 300, win = 40;
    int i, ok = 1;
    memset(&st, 0, sizeof st);
    memset(&cfg, 0, sizeof cfg);
    cfg.in_channels = 4; cfg.input_size = 8; cfg.seq_1d = 1; cfg.patch_size = 1;
    cfg.hidden = 32; cfg.depth = 2; cfg.heads = 2; cfg.mlp_hidden = 64; cfg.num_classes = 4; cfg.learn_sigma = 1;
    cfg.guide_channels = 4; cfg.latent_scale = 1.0f;
    p.kernels = &fast;
    memset(&tc, 0, sizeof tc);
    tc.batch = B; tc.cond_dropout = 0.1f;
    if (textok_dit_create(&m, &cfg, &p, 11) != TEXTOK_OK) { tt_check(s, 0, "dit train: create: %s", textok_last_error()); return; }
    grads = (float *)fast.alloc(&fast, m->n_params * sizeof(float));
    mom = (float *)fast.alloc(&fast, m->n_params * sizeof(float));
    vel = (float *)fast.alloc(&fast, m->n_params * sizeof(float));
    fast.fill(&fast, mom, m->n_params, 0.0f); fast.fill(&fast, vel, m->n_params, 0.0f);
    if (textok__dit_train_new(&tr, m, grads, B) != TEXTOK_OK) { tt_check(s, 0, "dit train: hooks: %s", textok_last_error()); goto done; }
    /* four fixed "token sequences": smooth, class-dependent patterns */
    lat = (float *)malloc((size_t)B * 4 * 8 * sizeof(float));
    textok_rng_seed(&data, 3);
    for (i = 0; i < B * 4 * 8; i++) lat[i] = (float)sin(0.7 * i + i / 32) + 0.1f * textok_rng_normal(&data);
    textok_rng_seed(&rng, 99);
    hp.lr = 2e-3; hp.beta1 = 0.9; hp.beta2 = 0.999; hp.eps = 1e-8; hp.weight_decay = 0.0;
    for (i = 0; i < steps && ok; i++) {
        fast.fill(&fast, grads, m->n_params, 0.0f);
        ok = textok__dit_train_loss(tr, &rng, &tc, lat, y, NULL, &st) == TEXTOK_OK && st.loss == st.loss;
        if (!ok) break;
        fast.adamw_update(&fast, m->params, grads, mom, vel, m->n_params, &hp, i + 1);
        if (i < win) first += st.loss / win;
        if (i >= steps - win) last += st.loss / win;
    }
    tt_check(s, ok && last < 0.6 * first,
             "dit train: a tiny 1D DiT (D 32, depth 2) on 4 sequences, %d AdamW steps through the trainer hooks: mean loss %.4f over the "
             "first %d steps -> %.4f over the last %d (%s)", steps, first, win, last, win, ok ? "" : textok_last_error());
    {   /* pos_embed is frozen: the step left it at its sin-cos values */
        textok_dit *fresh = NULL;
        float *a = (float *)malloc(textok__spec_numel(&m->specs[0]) * sizeof(float)), *b = (float *)malloc(textok__spec_numel(&m->specs[0]) * sizeof(float));
        if (textok_dit_create(&fresh, &cfg, &p, 11) == TEXTOK_OK) {
            fast.to_host(&fast, a, m->params, textok__spec_numel(&m->specs[0]) * sizeof(float));
            fast.to_host(&fast, b, fresh->params, textok__spec_numel(&m->specs[0]) * sizeof(float));
            tt_check(s, dt_same(a, b, textok__spec_numel(&m->specs[0])), "dit train: pos_embed stays fixed");
        }
        textok_dit_free(fresh);
        free(a); free(b);
    }
done:
    textok__dit_train_delete(tr);
    if (grads) fast.free(&fast, grads);
    if (mom) fast.free(&fast, mom);
    if (vel) fast.free(&fast, vel);
    textok_dit_free(m);
    free(lat);
}

void test_dit(tt_stats *s)
{
    static const char *const names[3] = { "dit2d", "dit1d", "dit_t2i" };
    static const char *const fd2d[] = { "x@0", "x@77", "x_embedder.proj.weight@5", "t_embedder.mlp.0.weight@300", "t_embedder.mlp.2.bias@3",
                                        "y_embedder.embedding_table.weight@50", "blocks.0.attn.qkv.weight@600", "blocks.1.attn.qkv.bias@40",
                                        "blocks.1.mlp.fc1.weight@100", "blocks.0.adaLN_modulation.1.weight@1000",
                                        "final_layer.linear.weight@9", "final_layer.adaLN_modulation.1.bias@20" };
    static const char *const fdt2i[] = { "x@3", "y_embedder.y_proj.fc1.weight@30", "y_embedder.y_proj.fc2.weight@100",
                                         "blocks.0.cross_attn.q_linear.weight@17", "blocks.1.cross_attn.kv_linear.weight@300",
                                         "blocks.0.cross_attn.kv_linear.bias@20", "blocks.1.cross_attn.proj.bias@2",
                                         "blocks.1.adaLN_modulation.1.bias@70" };
    textok_kernels ref = textok_cpu_ref_kernels(), fast = textok_cpu_kernels(0);
    int i;
    for (i = 0; i < 3; i++) {
        dt_golden(s, names[i], &ref, 1);
        dt_golden(s, names[i], &fast, 4);
    }
    dt_diffusion_golden(s);
    dt_fd(s, "dit2d", fd2d, (int)(sizeof fd2d / sizeof *fd2d));
    dt_fd(s, "dit_t2i", fdt2i, (int)(sizeof fdt2i / sizeof *fdt2i));
    dt_create_and_io(s);
    dt_generate(s);
    dt_bad(s);
    dt_train(s);
}
