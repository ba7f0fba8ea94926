/* test_nets.c - the loss networks of textok.h section 10 (LPIPS over VGG16, the PatchGAN
   discriminator), forward and backward:
     1. against the PyTorch goldens in tests/golden/nets/ (tools/nets_ref.py, float64);
     2. the whole backward by central finite differences (the loss in double over float
        forwards), on sampled coordinates and along random directions;
     3. the reference table against the fast table, and repeatability / chunking;
     4. bad files and bad calls: a clear error naming the file, tensor or size; never a crash.
   The internal calls (textok__lpips_*, textok__disc_*) are static in the header, so this file
   compiles its own private copy of the implementation (TEXTOK_STATIC). */
#define TEXTOK_STATIC
#define TEXTOK_IMPLEMENTATION
#include "textok.h"
#include "check.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static float *nz(size_t n) { return (float *)calloc(n ? n : 1, sizeof(float)); }

/* device buffers (the table's memory) and the copies in and out */
static float *dev_new(const textok_kernels *k, const float *host, size_t n)
{
    float *d = (float *)k->alloc(k, (n ? n : 1) * sizeof(float));
    if (d && host) k->to_device(k, d, host, n * sizeof(float));
    return d;
}
static void dev_get(const textok_kernels *k, float *host, const float *dev, size_t n) { k->to_host(k, host, dev, n * sizeof(float)); }
static void dev_put(const textok_kernels *k, float *dev, const float *host, size_t n) { k->to_device(k, dev, host, n * sizeof(float)); }

static void fill_uniform(textok_rng *r, float *x, size_t n, float lo, float hi) { textok_rng_fill_uniform(r, x, n, lo, hi); }

static int contains(const char *s, const char *sub) { return s && sub && strstr(s, sub) != NULL; }

/* ----- LPIPS -------------------------------------------------------------------------------- */
static const int tiny_channels[5] = { 4, 8, 8, 16, 16 };   /* the golden's widths */

/* sum_b dd[b] LPIPS_b(x, y) in double; x from the host (uploaded), y already on the device */
static double lp_loss(textok_lpips *lp, float *xdev, const float *x, const float *ydev, const float *dd, int B, int H, int W)
{
    float d[16];
    double L = 0.0;
    int b;
    dev_put(&lp->k, xdev, x, (size_t)B * 3 * H * W);
    if (textok__lpips_forward(lp, d, xdev, ydev, B, H, W) != TEXTOK_OK) return NAN;
    for (b = 0; b < B; b++) L += (double)dd[b] * d[b];
    return L;
}

/* Finite differences of the whole LPIPS backward (dx).
   LPIPS is discontinuous where a tap pixel's features are all zero (f / (|f| + eps) jumps from
   0 to a unit vector as soon as one channel turns on): with the tiny widths, a few tap-0 pixels
   are dead under random weights, and a finite difference across one is meaningless (we saw
   O(1) quotients). So this test first adds 1 to the biases of the five tap convs, checks that
   every tap pixel's feature norm is then well above 0, and differentiates there; ReLU and
   max-pool kinks elsewhere remain. The goldens test the unmodified random network.
   Steps (inputs in [0, 1], x 4.4 after the ScalingLayer; |L| ~ 0.01 in float, ulp ~ 1e-9):
   - 16 coordinates, one input value each: the largest |dx| among 64 drawn at random, h = 3e-3;
     compared by relative L2 over the 16 values. An h sweep (1e-1 .. 1e-3) gave 1.1e-1, 5e-2,
     2.6e-2 (h 1e-2: kinks and curvature), 3.2e-3 (h 3e-3), 6e-3 (h 1e-3: rounding of L);
     tolerance 2e-2;
   - 3 random directions v ~ N(0,1) over the whole input, h = 1e-4 (the step's norm is ~8e-3),
     <dx, v> against the quotient. The error is divided by |dx|, the typical size of <dx, v>
     for such v (a direction nearly orthogonal to dx would otherwise inflate it). Along a
     direction the quotient wanders by ~1% as h goes from 1e-3 to 1e-5 (many ReLU / max-pool
     kinks are crossed, each a little), without a trend: measured 3e-3 .. 1.3e-2; tolerance 5e-2.
   So this is a coarse check: a wrong formula or a missed path gives O(1). The goldens check the
   backward to ~1e-5. */
#define LP_FD_H   3e-3f
#define LP_FD_HV  1e-4f
#define LP_FD_TOL_COORD 2e-2
#define LP_FD_TOL 5e-2
static void lpips_fd(tt_stats *s, const textok_kernels *kt)
{
    const int B = 2, H = 32, W = 32;
    const size_t n = (size_t)B * 3 * H * W;
    textok_params p = textok_default_params();
    textok_lpips *lp = NULL;
    textok_rng r;
    float *x = nz(n), *y = nz(n), *dx = nz(n), *v = nz(n), *xp = nz(n), an[16], fd[16];
    float *xdev = NULL, *ydev = NULL, *dxdev = NULL, d[2];
    const float dd[2] = { 0.7f, -1.3f };
    size_t coord[16];
    int i, t;
    p.kernels = kt;
    if (textok_lpips_create(&lp, tiny_channels, &p, 5) != TEXTOK_OK || textok__lpips_reserve(lp, B, H, W) != TEXTOK_OK) {
        tt_check(s, 0, "lpips fd [%s]: create/reserve: %s", kt->name, textok_last_error());
        goto done;
    }
    {   /* +1 on the tap convs' biases (host round trip of the parameter block) */
        float *prm = nz(lp->n_params);
        dev_get(kt, prm, lp->params, lp->n_params);
        for (i = 0; i < TEXTOK__VGG_CONVS; i++)
            if (textok__vgg_is_tap(i))
                for (t = 0; t < lp->channels[textok__vgg_lev[i]]; t++) prm[lp->conv_b[i] - lp->params + t] += 1.0f;
        dev_put(kt, lp->params, prm, lp->n_params);
        free(prm);
    }
    textok_rng_seed(&r, 11);
    fill_uniform(&r, x, n, 0.0f, 1.0f);
    fill_uniform(&r, y, n, 0.0f, 1.0f);
    xdev = dev_new(kt, x, n); ydev = dev_new(kt, y, n); dxdev = dev_new(kt, NULL, n);
    dev_put(kt, dxdev, dx, n);
    if (textok__lpips_forward(lp, d, xdev, ydev, B, H, W) != TEXTOK_OK ||
        textok__lpips_backward(lp, dxdev, dd, B, H, W) != TEXTOK_OK) {
        tt_check(s, 0, "lpips fd [%s]: forward/backward: %s", kt->name, textok_last_error());
        goto done;
    }
    dev_get(kt, dx, dxdev, n);
    {   /* the precondition: no tap pixel near the zero vector, in x or y */
        double mn = 1e30;
        int l, j;
        for (l = 0; l < 5; l++) {
            const int c = lp->channels[l], hw = (H >> l) * (W >> l);
            float *fx = nz((size_t)B * c * hw), *fy = nz((size_t)B * c * hw);
            int b, q, ch;
            for (j = 0; !(textok__vgg_lev[j] == l && textok__vgg_is_tap(j)); j++) {}
            dev_get(kt, fx, lp->act[j], (size_t)B * c * hw);
            dev_get(kt, fy, lp->ytap[l], (size_t)B * c * hw);
            for (b = 0; b < B; b++)
                for (q = 0; q < hw; q++) {
                    double s0 = 0.0, s1 = 0.0;
                    for (ch = 0; ch < c; ch++) {
                        double u = fx[((size_t)b * c + ch) * hw + q], w = fy[((size_t)b * c + ch) * hw + q];
                        s0 += u * u; s1 += w * w;
                    }
                    if (sqrt(s0) < mn) mn = sqrt(s0);
                    if (sqrt(s1) < mn) mn = sqrt(s1);
                }
            free(fx); free(fy);
        }
        tt_check(s, mn > 0.3, "lpips fd [%s]: smallest tap feature norm %.3f (> 0.3: LPIPS is continuous around x)", kt->name, mn);
    }
    {   /* 16 coordinates: the largest |dx| among 64 drawn at random (small entries would only
           measure the float rounding of L) */
        size_t cand[64], a, b2;
        for (a = 0; a < 64; a++) cand[a] = textok_rng_u32(&r) % n;
        for (a = 0; a < 16; a++)
            for (b2 = a + 1; b2 < 64; b2++)
                if (fabsf(dx[cand[b2]]) > fabsf(dx[cand[a]])) { size_t q = cand[a]; cand[a] = cand[b2]; cand[b2] = q; }
        memcpy(coord, cand, sizeof coord);
    }
    for (i = 0; i < 16; i++) {
        size_t j = coord[i];
        memcpy(xp, x, n * sizeof(float));
        xp[j] = x[j] + LP_FD_H;
        fd[i] = (float)lp_loss(lp, xdev, xp, ydev, dd, B, H, W);
        xp[j] = x[j] - LP_FD_H;
        fd[i] = (float)((fd[i] - lp_loss(lp, xdev, xp, ydev, dd, B, H, W)) / (2.0 * LP_FD_H));
        an[i] = dx[j];
    }
    {
        char label[96];
        snprintf(label, sizeof label, "lpips fd [%s] dx (16 coordinates, h %.0e)", kt->name, (double)LP_FD_H);
        tt_compare(s, label, an, fd, 16, LP_FD_TOL_COORD);
    }
    for (t = 0; t < 3; t++) {
        double dot = 0.0, g2 = 0.0, lp1, lm1, q, rel;
        size_t j;
        textok_rng_fill_normal(&r, v, n, 0.0f, 1.0f);
        for (j = 0; j < n; j++) { xp[j] = x[j] + LP_FD_HV * v[j]; dot += (double)dx[j] * v[j]; g2 += (double)dx[j] * dx[j]; }
        lp1 = lp_loss(lp, xdev, xp, ydev, dd, B, H, W);
        for (j = 0; j < n; j++) xp[j] = x[j] - LP_FD_HV * v[j];
        lm1 = lp_loss(lp, xdev, xp, ydev, dd, B, H, W);
        q = (lp1 - lm1) / (2.0 * LP_FD_HV);
        rel = fabs(q - dot) / sqrt(g2);
        tt_check(s, rel <= LP_FD_TOL, "lpips fd [%s] <dx, v> direction %d (h %.0e): backward %.6e, finite difference %.6e, "
                 "|error| / |dx| %.2e (tol %.0e)", kt->name, t, (double)LP_FD_HV, dot, q, rel, LP_FD_TOL);
    }
done:
    if (xdev) kt->free(kt, xdev);
    if (ydev) kt->free(kt, ydev);
    if (dxdev) kt->free(kt, dxdev);
    textok_lpips_free(lp);
    free(x); free(y); free(dx); free(v); free(xp);
}

/* One forward + backward with a table; returns d (B) and dx (B,3,H,W), host, caller frees. */
static int lpips_run(textok_lpips *lp, const float *x, const float *y, const float *dd, int B, int H, int W,
                     float *d, float *dx)
{
    const textok_kernels *k = &lp->k;
    size_t n = (size_t)B * 3 * H * W;
    float *xdev = dev_new(k, x, n), *ydev = dev_new(k, y, n), *dxdev = dev_new(k, NULL, n), *zero = nz(n);
    int st = TEXTOK_ERR_NOMEM;
    if (xdev && ydev && dxdev && zero) {
        dev_put(k, dxdev, zero, n);
        st = textok__lpips_reserve(lp, B, H, W);
        if (st == TEXTOK_OK) st = textok__lpips_forward(lp, d, xdev, ydev, B, H, W);
        if (st == TEXTOK_OK) st = textok__lpips_backward(lp, dxdev, dd, B, H, W);
        if (st == TEXTOK_OK) dev_get(k, dx, dxdev, n);
    }
    if (xdev) k->free(k, xdev);
    if (ydev) k->free(k, ydev);
    if (dxdev) k->free(k, dxdev);
    free(zero);
    return st;
}

/* Reference table against the fast table on the same weights and inputs (rel L2 <= 1e-5: both
   round float convs differently; measured ~1e-7), then repeatability, accumulation and the
   public call's chunking (max_batch 1 and 3 must give the same bits). */
static void lpips_tables(tt_stats *s)
{
    const int B = 3, H = 32, W = 48;
    const size_t n = (size_t)B * 3 * H * W;
    textok_kernels ref = textok_cpu_ref_kernels(), fast = textok_cpu_kernels(0);
    textok_params p = textok_default_params();
    textok_lpips *a = NULL, *b = NULL;
    textok_rng r;
    float *x = nz(n), *y = nz(n), *dxa = nz(n), *dxb = nz(n), *dx2 = nz(n), da[3], db[3], d2[3], dp[3];
    const float dd[3] = { 1.0f, -0.5f, 2.0f };
    int st, i, same;
    textok_rng_seed(&r, 12);
    fill_uniform(&r, x, n, 0.0f, 1.0f);
    fill_uniform(&r, y, n, 0.0f, 1.0f);
    p.kernels = &ref;
    st = textok_lpips_create(&a, tiny_channels, &p, 3);
    p.kernels = &fast;
    if (st == TEXTOK_OK) st = textok_lpips_create(&b, tiny_channels, &p, 3);
    if (st == TEXTOK_OK) st = lpips_run(a, x, y, dd, B, H, W, da, dxa);
    if (st == TEXTOK_OK) st = lpips_run(b, x, y, dd, B, H, W, db, dxb);
    if (st != TEXTOK_OK) { tt_check(s, 0, "lpips tables: %s", textok_last_error()); goto done; }
    tt_compare(s, "lpips fast vs ref table: d", db, da, (size_t)B, 1e-5);
    tt_compare(s, "lpips fast vs ref table: dx", dxb, dxa, n, 1e-5);
    st = lpips_run(b, x, y, dd, B, H, W, d2, dx2);
    tt_check(s, st == TEXTOK_OK && !memcmp(d2, db, sizeof d2) && !memcmp(dx2, dxb, n * sizeof(float)),
             "lpips fast table: a second forward+backward gives the same bits");
    {   /* backward accumulates: twice into the same dx gives 2 dx */
        float *dxdev = dev_new(&fast, dxb, n);
        double err = 0.0;
        if (textok__lpips_backward(b, dxdev, dd, B, H, W) != TEXTOK_OK) err = 1.0;
        dev_get(&fast, dx2, dxdev, n);
        for (i = 0; i < (int)n; i++) if (!(dx2[i] == 2.0f * dxb[i])) err = 1.0;
        tt_check(s, err == 0.0, "lpips backward accumulates into dx (second call gives exactly 2x)");
        fast.free(&fast, dxdev);
    }
    for (i = 1; i <= 3; i += 2) {
        textok_lpips *c = NULL;
        p.max_batch = i;
        st = textok_lpips_create(&c, tiny_channels, &p, 3);
        if (st == TEXTOK_OK) st = textok_lpips_distance(c, x, y, B, H, W, dp);
        same = st == TEXTOK_OK && !memcmp(dp, db, sizeof dp);
        tt_check(s, same, "lpips distance (host API, max_batch %d) equals the internal forward bit for bit: %.7f %.7f %.7f %s",
                 i, (double)dp[0], (double)dp[1], (double)dp[2], st == TEXTOK_OK ? "" : textok_last_error());
        textok_lpips_free(c);
    }
    tt_check(s, da[0] > 0.0f && da[1] > 0.0f && da[2] > 0.0f, "lpips of different images is positive: %.4f %.4f %.4f",
             (double)da[0], (double)da[1], (double)da[2]);
    st = textok_lpips_distance(b, x, x, 1, H, W, dp);
    tt_check(s, st == TEXTOK_OK && dp[0] == 0.0f, "lpips(x, x) = %g (exactly 0)", (double)dp[0]);
done:
    textok_lpips_free(a); textok_lpips_free(b);
    free(x); free(y); free(dxa); free(dxb); free(dx2);
}

/* ----- the discriminator -------------------------------------------------------------------- */
/* image 16, 2 stages (16 -> 8 -> 4), pool 3 from 4 (overlapping max windows), 2 groups */
static textok_disc_config tiny_disc_cfg(void)
{
    textok_disc_config c;
    c.hidden = 4; c.stages = 2; c.groups = 2; c.pool = 3;
    return c;
}

/* sum logits * w in double (logits on the host) */
static double disc_loss(textok_disc *D, float *imgdev, const float *img, float *ldev, float *lhost, const float *w, int B)
{
    size_t nl = (size_t)B * D->cfg.pool * D->cfg.pool, i;
    double L = 0.0;
    dev_put(&D->k, imgdev, img, (size_t)B * 3 * D->image_size * D->image_size);
    textok__disc_forward(D, ldev, imgdev, B);
    dev_get(&D->k, lhost, ldev, nl);
    for (i = 0; i < nl; i++) L += (double)lhost[i] * w[i];
    return L;
}

/* Finite differences of the whole discriminator backward: dimg and every parameter tensor.
   The network is continuous (LeakyReLU and max-pool have kinks, GroupNorm curvature; no jumps),
   |L| ~ 1 in float. Coordinates: the 16 largest |dimg| among 64 random image values, h = 3e-3;
   up to 4 values of every parameter tensor (53), h = 3e-4; each set compared by relative L2.
   Directions v ~ N(0,1) over all image values or all parameters at once, h = 1e-4 (a whole-
   input step of 1e-3 already meets kinks, ~2% off), the error divided by |g| as for LPIPS. h sweeps (1e-2 .. 3e-4) gave for dimg
   4e-3, 1.2e-3 (3e-3), 3.5e-3, 1.6e-2 (3e-4: rounding of L); for the parameters 2.8e-2,
   1.4e-2, 3.9e-3, 1.7e-3 (3e-4; some parameters, e.g. GroupNorm's, have much larger gradients
   and curvature than others); directions <= 2e-3. Tolerance 1e-2 on all. */
#define D_FD_H   3e-3f
#define D_FD_HP  3e-4f
#define D_FD_HV  1e-4f
#define D_FD_TOL 1e-2
static void disc_fd(tt_stats *s, const textok_kernels *kt)
{
    const int B = 2;
    textok_disc_config c = tiny_disc_cfg();
    textok_params p = textok_default_params();
    textok_disc *D = NULL;
    textok_rng r;
    size_t ni, nl, np, i, j;
    float *img = NULL, *dimg = NULL, *w = NULL, *lh = NULL, *prm = NULL, *grd = NULL, *pp = NULL, *v = NULL;
    float *imgdev = NULL, *ldev = NULL, *wdev = NULL, *dimgdev = NULL, an[256], fd[256];
    size_t cand[64];
    int t, m = 0;
    p.kernels = kt;
    if (textok_disc_create(&D, &c, 16, &p, 9) != TEXTOK_OK || textok__disc_reserve(D, B) != TEXTOK_OK) {
        tt_check(s, 0, "disc fd [%s]: create: %s", kt->name, textok_last_error());
        goto done;
    }
    ni = (size_t)B * 3 * 16 * 16; nl = (size_t)B * c.pool * c.pool; np = D->n_params;
    img = nz(ni); dimg = nz(ni); w = nz(nl); lh = nz(nl); prm = nz(np); grd = nz(np); pp = nz(np); v = nz(np > ni ? np : ni);
    textok_rng_seed(&r, 21);
    fill_uniform(&r, img, ni, 0.0f, 1.0f);
    textok_rng_fill_normal(&r, w, nl, 0.0f, 1.0f);
    imgdev = dev_new(kt, img, ni); ldev = dev_new(kt, NULL, nl); wdev = dev_new(kt, w, nl); dimgdev = dev_new(kt, dimg, ni);
    textok__disc_forward(D, ldev, imgdev, B);
    textok__disc_backward(D, dimgdev, 1, wdev, B);
    dev_get(kt, dimg, dimgdev, ni);
    dev_get(kt, grd, D->grads, np);
    dev_get(kt, prm, D->params, np);
    /* images: the largest |dimg| among 64 drawn at random */
    {
        size_t a, b2;
        for (a = 0; a < 64; a++) cand[a] = textok_rng_u32(&r) % ni;
        for (a = 0; a < 16; a++)
            for (b2 = a + 1; b2 < 64; b2++)
                if (fabsf(dimg[cand[b2]]) > fabsf(dimg[cand[a]])) { size_t q = cand[a]; cand[a] = cand[b2]; cand[b2] = q; }
    }
    for (i = 0; i < 16; i++) {
        size_t jj = cand[i];
        float x0 = img[jj];
        double lp1, lm1;
        img[jj] = x0 + D_FD_H; lp1 = disc_loss(D, imgdev, img, ldev, lh, w, B);
        img[jj] = x0 - D_FD_H; lm1 = disc_loss(D, imgdev, img, ldev, lh, w, B);
        img[jj] = x0;
        fd[i] = (float)((lp1 - lm1) / (2.0 * D_FD_H));
        an[i] = dimg[jj];
    }
    {
        char label[96];
        snprintf(label, sizeof label, "disc fd [%s] dimg (16 coordinates, h %.0e)", kt->name, (double)D_FD_H);
        tt_compare(s, label, an, fd, 16, D_FD_TOL);
    }
    /* parameters: up to 4 values of every tensor */
    for (t = 0; t < D->n_tensors; t++) {
        size_t cnt = textok__spec_numel(&D->specs[t]), q = cnt < 4 ? cnt : 4;
        for (j = 0; j < q; j++) {
            size_t o = D->offsets[t] + j * cnt / q;
            double lp1, lm1;
            memcpy(pp, prm, np * sizeof(float));
            pp[o] = prm[o] + D_FD_HP; dev_put(kt, D->params, pp, np); lp1 = disc_loss(D, imgdev, img, ldev, lh, w, B);
            pp[o] = prm[o] - D_FD_HP; dev_put(kt, D->params, pp, np); lm1 = disc_loss(D, imgdev, img, ldev, lh, w, B);
            fd[m] = (float)((lp1 - lm1) / (2.0 * D_FD_HP));
            an[m++] = grd[o];
        }
    }
    dev_put(kt, D->params, prm, np);
    {
        char label[96];
        snprintf(label, sizeof label, "disc fd [%s] dparams (%d coords, all %d tensors, h %.0e)", kt->name, m, D->n_tensors, (double)D_FD_HP);
        tt_compare(s, label, an, fd, (size_t)m, D_FD_TOL);
    }
    for (t = 0; t < 2; t++) {   /* directions: t = 0 over the images, t = 1 over all parameters */
        size_t n = t ? np : ni;
        double dot = 0.0, g2 = 0.0, lp1, lm1, q, rel;
        const float *g = t ? grd : dimg, *base = t ? prm : img;
        float *x = t ? pp : img;
        float *save = nz(n);
        memcpy(save, base, n * sizeof(float));
        textok_rng_fill_normal(&r, v, n, 0.0f, 1.0f);
        for (j = 0; j < n; j++) { dot += (double)g[j] * v[j]; g2 += (double)g[j] * g[j]; }
        for (j = 0; j < n; j++) x[j] = save[j] + D_FD_HV * v[j];
        if (t) dev_put(kt, D->params, pp, np);
        lp1 = disc_loss(D, imgdev, img, ldev, lh, w, B);
        for (j = 0; j < n; j++) x[j] = save[j] - D_FD_HV * v[j];
        if (t) dev_put(kt, D->params, pp, np);
        lm1 = disc_loss(D, imgdev, img, ldev, lh, w, B);
        memcpy(x, save, n * sizeof(float));
        if (t) dev_put(kt, D->params, prm, np);
        q = (lp1 - lm1) / (2.0 * D_FD_HV);
        rel = fabs(q - dot) / sqrt(g2);
        tt_check(s, rel <= D_FD_TOL, "disc fd [%s] <%s, v> (h %.0e): backward %.6e, finite difference %.6e, |error| / |g| %.2e (tol %.0e)",
                 kt->name, t ? "dparams" : "dimg", (double)D_FD_HV, dot, q, rel, D_FD_TOL);
        free(save);
    }
done:
    if (imgdev) kt->free(kt, imgdev);
    if (ldev) kt->free(kt, ldev);
    if (wdev) kt->free(kt, wdev);
    if (dimgdev) kt->free(kt, dimgdev);
    textok_disc_free(D);
    free(img); free(dimg); free(w); free(lh); free(prm); free(grd); free(pp); free(v);
}

/* forward + backward (dimg and param grads) on one table, host results */
static void disc_run(textok_disc *D, const float *img, const float *dl, int B, float *logits, float *dimg, float *grads)
{
    const textok_kernels *k = &D->k;
    size_t ni = (size_t)B * 3 * D->image_size * D->image_size, nl = (size_t)B * D->cfg.pool * D->cfg.pool;
    float *zero = nz(ni > D->n_params ? ni : D->n_params);
    float *imgdev = dev_new(k, img, ni), *ldev = dev_new(k, NULL, nl), *dldev = dev_new(k, dl, nl), *didev = dev_new(k, zero, ni);
    dev_put(k, D->grads, zero, D->n_params);
    textok__disc_reserve(D, B);
    textok__disc_forward(D, ldev, imgdev, B);
    textok__disc_backward(D, didev, 1, dldev, B);
    dev_get(k, logits, ldev, nl);
    dev_get(k, dimg, didev, ni);
    dev_get(k, grads, D->grads, D->n_params);
    k->free(k, imgdev); k->free(k, ldev); k->free(k, dldev); k->free(k, didev);
    free(zero);
}

/* Reference vs fast table (rel L2 <= 1e-5 for logits, dimg, all grads); repeatability; a
   batch of 4 equals two batches of 2 (GroupNorm is per image: the trainer runs real and fake
   as one batch); dimg = NULL with param_grads, and param_grads = 0, each leave the other alone. */
static void disc_tables(tt_stats *s)
{
    const int B = 4;
    textok_disc_config c = tiny_disc_cfg();
    textok_kernels ref = textok_cpu_ref_kernels(), fast = textok_cpu_kernels(0);
    textok_params p = textok_default_params();
    textok_disc *a = NULL, *b = NULL;
    textok_rng r;
    size_t ni = (size_t)B * 3 * 16 * 16, nl = (size_t)B * c.pool * c.pool, np, i;
    float *img = nz(ni), *dl = nz(nl), *la = nz(nl), *lb = nz(nl), *l2 = nz(nl), *dia = nz(ni), *dib = nz(ni), *di2 = nz(ni);
    float *ga = NULL, *gb = NULL, *g2 = NULL;
    int ok;
    textok_rng_seed(&r, 31);
    fill_uniform(&r, img, ni, 0.0f, 1.0f);
    textok_rng_fill_normal(&r, dl, nl, 0.0f, 1.0f);
    p.kernels = &ref;
    if (textok_disc_create(&a, &c, 16, &p, 4) != TEXTOK_OK) { tt_check(s, 0, "disc tables: %s", textok_last_error()); goto done; }
    p.kernels = &fast;
    if (textok_disc_create(&b, &c, 16, &p, 4) != TEXTOK_OK) { tt_check(s, 0, "disc tables: %s", textok_last_error()); goto done; }
    np = a->n_params;
    ga = nz(np); gb = nz(np); g2 = nz(np);
    disc_run(a, img, dl, B, la, dia, ga);
    disc_run(b, img, dl, B, lb, dib, gb);
    tt_compare(s, "disc fast vs ref table: logits", lb, la, nl, 1e-5);
    tt_compare(s, "disc fast vs ref table: dimg", dib, dia, ni, 1e-5);
    for (i = 0; i < (size_t)a->n_tensors; i++) {
        char label[160];
        snprintf(label, sizeof label, "disc fast vs ref table: grad %s", a->specs[i].name);
        tt_compare(s, label, gb + a->offsets[i], ga + a->offsets[i], textok__spec_numel(&a->specs[i]), 1e-5);
    }
    disc_run(b, img, dl, B, l2, di2, g2);
    tt_check(s, !memcmp(l2, lb, nl * sizeof(float)) && !memcmp(di2, dib, ni * sizeof(float)) && !memcmp(g2, gb, np * sizeof(float)),
             "disc fast table: a second forward+backward gives the same bits");
    /* two halves */
    {
        size_t hi = ni / 2, hl = nl / 2;
        float *h0 = nz(nl), *h1 = nz(nl), *hd = nz(ni);
        disc_run(b, img, dl, 2, h0, hd, g2);
        disc_run(b, img + hi, dl + hl, 2, h1, hd + hi, g2);
        ok = !memcmp(h0, lb, hl * sizeof(float)) && !memcmp(h1, lb + hl, hl * sizeof(float)) && !memcmp(hd, dib, ni * sizeof(float));
        tt_check(s, ok, "disc: one batch of 4 gives the same logits and dimg bits as two batches of 2");
        free(h0); free(h1); free(hd);
    }
    /* public host call */
    ok = textok_disc_logits(b, img, B, l2) == TEXTOK_OK && !memcmp(l2, lb, nl * sizeof(float));
    tt_check(s, ok, "disc logits (host API) equal the internal forward bit for bit");
    /* the two switches of backward */
    {
        float *imgdev = dev_new(&fast, img, ni), *ldev = dev_new(&fast, NULL, nl), *dldev = dev_new(&fast, dl, nl);
        float *zero = nz(np > ni ? np : ni), *didev = dev_new(&fast, zero, ni);
        textok__disc_forward(b, ldev, imgdev, B);
        dev_put(&fast, b->grads, zero, np);
        textok__disc_backward(b, NULL, 1, dldev, B);
        dev_get(&fast, g2, b->grads, np);
        tt_check(s, !memcmp(g2, gb, np * sizeof(float)), "disc backward with dimg = NULL gives the same parameter gradients");
        dev_put(&fast, b->grads, zero, np);
        textok__disc_backward(b, didev, 0, dldev, B);
        dev_get(&fast, g2, b->grads, np);
        dev_get(&fast, di2, didev, ni);
        for (ok = 1, i = 0; i < np; i++) ok &= g2[i] == 0.0f;
        tt_check(s, ok && !memcmp(di2, dib, ni * sizeof(float)), "disc backward with param_grads = 0: the same dimg, grads stay 0");
        textok__disc_backward(b, didev, 0, dldev, B);
        dev_get(&fast, di2, didev, ni);
        for (i = 0; i < ni; i++) dia[i] = 2.0f * dib[i];
        /* the last conv adds its 25 taps one by one into dimg, so x + (a + b + ...) is not
           bitwise 2x: float rounding only */
        tt_compare(s, "disc backward accumulates into dimg (second call: 2x)", di2, dia, ni, 1e-6);
        fast.free(&fast, imgdev); fast.free(&fast, ldev); fast.free(&fast, dldev); fast.free(&fast, didev);
        free(zero);
    }
done:
    textok_disc_free(a); textok_disc_free(b);
    free(img); free(dl); free(la); free(lb); free(l2); free(dia); free(dib); free(di2); free(ga); free(gb); free(g2);
}

/* ----- files: a round trip, and bad ones ---------------------------------------------------- */
/* Write a model's parameters as a textok-layout file; skip = a tensor to leave out, bad_shape
   = a tensor written with its first dim + 1 (a wrong shape), extra = one more tensor. */
static int write_model(const char *path, const textok_kernels *k, const float *params, const textok_tensor_spec *specs,
                       int n, const char *const *kv, int n_meta, const char *skip, const char *bad_shape, const char *extra)
{
    textok_st_entry *e = (textok_st_entry *)calloc((size_t)n + 1, sizeof *e);
    size_t total = 0, off = 0, maxn = 1;
    float *host, *big;
    int i, m = 0, st, d;
    for (i = 0; i < n; i++) { size_t c = textok__spec_numel(&specs[i]); total += c; if (c > maxn) maxn = c; }
    host = nz(total);
    big = nz(2 * maxn + 16);
    k->to_host(k, host, params, total * sizeof(float));
    for (i = 0; i < n; i++) {
        size_t c = textok__spec_numel(&specs[i]);
        if (!(skip && !strcmp(skip, specs[i].name))) {
            e[m].name = specs[i].name;
            e[m].data = host + off;
            e[m].ndim = specs[i].ndim;
            for (d = 0; d < specs[i].ndim; d++) e[m].shape[d] = specs[i].shape[d];
            if (bad_shape && !strcmp(bad_shape, specs[i].name)) { e[m].shape[0] += 1; e[m].data = big; }
            m++;
        }
        off += c;
    }
    if (extra) { e[m].name = extra; e[m].data = big; e[m].ndim = 1; e[m].shape[0] = 3; m++; }
    st = textok_st_save(path, e, m, kv, n_meta, TEXTOK_DTYPE_F32);
    free(e); free(host); free(big);
    return st;
}

static void nets_files(tt_stats *s)
{
    const char *path = "build/tt_nets_bad.safetensors";
    textok_kernels fast = textok_cpu_kernels(0);
    textok_params p = textok_default_params();
    textok_lpips *lp = NULL, *lq = NULL;
    textok_disc *D = NULL, *E = NULL;
    textok_tensor_spec specs[64];
    textok_disc_config dc = tiny_disc_cfg();
    textok_rng r;
    float x[2 * 3 * 32 * 32], y[2 * 3 * 32 * 32], d1[2], d2[2], l1[2 * 9], l2[2 * 9];
    int n, st, i;
    p.kernels = &fast;
    textok_rng_seed(&r, 41);
    fill_uniform(&r, x, sizeof x / sizeof x[0], 0.0f, 1.0f);
    fill_uniform(&r, y, sizeof y / sizeof y[0], 0.0f, 1.0f);

    /* LPIPS: round trip */
    if (textok_lpips_create(&lp, tiny_channels, &p, 8) != TEXTOK_OK) { tt_check(s, 0, "lpips create: %s", textok_last_error()); return; }
    n = textok_lpips_tensor_specs(tiny_channels, specs, 64);
    tt_check(s, n == 31 && !strcmp(specs[0].name, "net.slice1.0.weight") && !strcmp(specs[25].name, "net.slice5.28.bias") &&
             !strcmp(specs[30].name, "lin4.model.1.weight") && specs[30].shape[1] == 16 && specs[4].shape[1] == 4,
             "lpips tensor specs: %d tensors, net.slice1.0.weight .. net.slice5.28.bias, lin0..lin4.model.1.weight", n);
    {
        static const char *kv[] = { "textok.model", "lpips", "channels", "4,8,8,16,16" };
        st = write_model(path, &fast, lp->params, specs, n, kv, 2, NULL, NULL, NULL);
        if (st == TEXTOK_OK) st = textok_lpips_load(&lq, path, &p);
        if (st == TEXTOK_OK) st = textok_lpips_distance(lp, x, y, 2, 32, 32, d1);
        if (st == TEXTOK_OK) st = textok_lpips_distance(lq, x, y, 2, 32, 32, d2);
        tt_check(s, st == TEXTOK_OK && !memcmp(d1, d2, sizeof d1), "lpips: saved and reloaded model gives the same bits %s",
                 st == TEXTOK_OK ? "" : textok_last_error());
        textok_lpips_free(lq); lq = NULL;
    }
    {
        static const struct { const char *model, *channels, *skip, *bad, *extra, *mention; int st; } bad[] = {
            { "disc", "4,8,8,16,16", NULL, NULL, NULL, "textok.model", TEXTOK_ERR_FORMAT },
            { "lpips", NULL, NULL, NULL, NULL, "channels", TEXTOK_ERR_FORMAT },
            { "lpips", "4,8,8,16", NULL, NULL, NULL, "channels", TEXTOK_ERR_FORMAT },
            { "lpips", "4,8,8,16,16,", NULL, NULL, NULL, "channels", TEXTOK_ERR_FORMAT },
            { "lpips", "4,8,x,16,16", NULL, NULL, NULL, "channels", TEXTOK_ERR_FORMAT },
            { "lpips", "4,8,0,16,16", NULL, NULL, NULL, "channels[2]", TEXTOK_ERR_SHAPE },
            { "lpips", "4,8,8,16,16", "lin4.model.1.weight", NULL, NULL, "lin4.model.1.weight", TEXTOK_ERR_NOT_FOUND },
            { "lpips", "4,8,8,16,16", NULL, "net.slice3.12.weight", NULL, "net.slice3.12.weight", TEXTOK_ERR_SHAPE },
            { "lpips", "4,8,8,16,16", NULL, NULL, "scaling_layer.shift", "scaling_layer.shift", TEXTOK_ERR_SHAPE },
            { "lpips", "4,8,8,16,32", NULL, NULL, NULL, "net.slice5.24.weight", TEXTOK_ERR_SHAPE }   /* metadata disagrees with the tensors */
        };
        for (i = 0; i < (int)(sizeof bad / sizeof bad[0]); i++) {
            const char *kv[4];
            int nm = 0;
            kv[nm++] = "textok.model"; kv[nm++] = bad[i].model;
            if (bad[i].channels) { kv[nm++] = "channels"; kv[nm++] = bad[i].channels; }
            st = write_model(path, &fast, lp->params, specs, n, kv, nm / 2, bad[i].skip, bad[i].bad, bad[i].extra);
            if (st != TEXTOK_OK) { tt_check(s, 0, "write %s: %s", path, textok_last_error()); continue; }
            st = textok_lpips_load(&lq, path, &p);
            tt_check(s, st == bad[i].st && lq == NULL && contains(textok_last_error(), path) && contains(textok_last_error(), bad[i].mention),
                     "lpips bad file %d refused (status %d), naming the file and '%s': %s", i, st, bad[i].mention, textok_last_error());
            textok_lpips_free(lq); lq = NULL;
        }
    }
    st = textok_lpips_distance(lp, x, y, 1, 24, 32, d1);
    tt_check(s, st == TEXTOK_ERR_ARG && contains(textok_last_error(), "multiples of 16"),
             "lpips distance on 24 x 32 images refused: %s", textok_last_error());
    st = textok_lpips_distance(lp, x, y, 1, 32, 8, d1);
    tt_check(s, st == TEXTOK_ERR_ARG, "lpips distance on 32 x 8 images refused");
    st = textok__lpips_forward(lp, d1, x, y, 1, 64, 64);
    tt_check(s, st == TEXTOK_ERR_ARG && contains(textok_last_error(), "reserved"), "lpips forward beyond the reserved size refused: %s",
             textok_last_error());
    st = textok_lpips_distance(lp, NULL, y, 1, 32, 32, d1);
    tt_check(s, st == TEXTOK_ERR_ARG, "lpips distance with NULL images refused");
    {
        int badc[5] = { 4, 8, -1, 16, 16 };
        st = textok_lpips_create(&lq, badc, &p, 1);
        tt_check(s, st == TEXTOK_ERR_SHAPE && lq == NULL && contains(textok_last_error(), "channels[2]"),
                 "lpips create with channels[2] = -1 refused: %s", textok_last_error());
    }
    {   /* a fresh model cannot run backward before a forward */
        float *dx = nz(3 * 32 * 32), dd = 1.0f;
        st = textok_lpips_create(&lq, tiny_channels, &p, 1);
        if (st == TEXTOK_OK) st = textok__lpips_reserve(lq, 1, 32, 32);
        st = st == TEXTOK_OK ? textok__lpips_backward(lq, dx, &dd, 1, 32, 32) : TEXTOK_OK;
        tt_check(s, st == TEXTOK_ERR_ARG, "lpips backward without a forward refused: %s", textok_last_error());
        textok_lpips_free(lq); lq = NULL;
        free(dx);
    }

    /* discriminator: round trip */
    if (textok_disc_create(&D, &dc, 16, &p, 2) != TEXTOK_OK) { tt_check(s, 0, "disc create: %s", textok_last_error()); goto done; }
    n = textok_disc_tensor_specs(&dc, specs, 64);
    tt_check(s, n == 14 && n == D->n_tensors && !strcmp(specs[0].name, "block_in.0.weight") && !strcmp(specs[5].name, "blocks.0.2.bias") &&
             !strcmp(specs[7].name, "blocks.1.0.bias") && specs[6].shape[0] == 8 && specs[6].shape[1] == 4 &&
             !strcmp(specs[13].name, "to_logits.2.bias") && D->offsets[13] == D->n_params - 1,
             "disc tensor specs: %d tensors, block_in.0.weight .. to_logits.2.bias, blocks.1.0.weight (8,4,3,3), offsets", n);
    {
        static const char *kv[] = { "textok.model", "disc", "hidden", "4", "stages", "2", "groups", "2", "pool", "3", "image_size", "16" };
        st = write_model(path, &fast, D->params, specs, n, kv, 6, NULL, NULL, NULL);
        if (st == TEXTOK_OK) st = textok_disc_load(&E, path, &p);
        if (st == TEXTOK_OK) st = textok_disc_logits(D, x, 2, l1);
        if (st == TEXTOK_OK) st = textok_disc_logits(E, x, 2, l2);
        tt_check(s, st == TEXTOK_OK && !memcmp(l1, l2, sizeof l1), "disc: saved and reloaded model gives the same bits %s",
                 st == TEXTOK_OK ? "" : textok_last_error());
        textok_disc_free(E); E = NULL;
    }
    {
        static const struct { const char *key, *value, *skip, *bad, *extra, *mention; int st; } bad[] = {
            { "textok.model", "lpips", NULL, NULL, NULL, "textok.model", TEXTOK_ERR_FORMAT },
            { "pool", NULL, NULL, NULL, NULL, "pool", TEXTOK_ERR_FORMAT },
            { "hidden", "four", NULL, NULL, NULL, "hidden", TEXTOK_ERR_FORMAT },
            { "image_size", "18", NULL, NULL, NULL, "image_size", TEXTOK_ERR_SHAPE },
            { "groups", "3", NULL, NULL, NULL, "groups", TEXTOK_ERR_SHAPE },
            { "stages", "3", NULL, NULL, NULL, "blocks.2.0.weight", TEXTOK_ERR_NOT_FOUND },   /* metadata disagrees with the tensors */
            { NULL, NULL, "blocks.1.2.bias", NULL, NULL, "blocks.1.2.bias", TEXTOK_ERR_NOT_FOUND },
            { NULL, NULL, NULL, "to_logits.0.weight", NULL, "to_logits.0.weight", TEXTOK_ERR_SHAPE },
            { NULL, NULL, NULL, NULL, "blocks.0.1.kernel", "blocks.0.1.kernel", TEXTOK_ERR_SHAPE }
        };
        static const char *base[] = { "textok.model", "disc", "hidden", "4", "stages", "2", "groups", "2", "pool", "3", "image_size", "16" };
        for (i = 0; i < (int)(sizeof bad / sizeof bad[0]); i++) {
            const char *kv[12];
            int nm = 0, j;
            for (j = 0; j < 12; j += 2) {
                if (bad[i].key && !strcmp(base[j], bad[i].key) && !bad[i].value) continue;   /* key left out */
                kv[nm++] = base[j];
                kv[nm++] = bad[i].key && !strcmp(base[j], bad[i].key) ? bad[i].value : base[j + 1];
            }
            st = write_model(path, &fast, D->params, specs, n, kv, nm / 2, bad[i].skip, bad[i].bad, bad[i].extra);
            if (st != TEXTOK_OK) { tt_check(s, 0, "write %s: %s", path, textok_last_error()); continue; }
            st = textok_disc_load(&E, path, &p);
            tt_check(s, st == bad[i].st && E == NULL && contains(textok_last_error(), path) && contains(textok_last_error(), bad[i].mention),
                     "disc bad file %d refused (status %d), naming the file and '%s': %s", i, st, bad[i].mention, textok_last_error());
            textok_disc_free(E); E = NULL;
        }
    }
    {
        textok_disc_config bc = dc;
        st = textok_disc_create(&E, &bc, 18, &p, 1);
        tt_check(s, st == TEXTOK_ERR_SHAPE && E == NULL && contains(textok_last_error(), "image_size 18"),
                 "disc create with image_size 18 (2 stages: not a multiple of 4) refused: %s", textok_last_error());
        bc.stages = 0;
        st = textok_disc_create(&E, &bc, 16, &p, 1);
        tt_check(s, st == TEXTOK_ERR_SHAPE && E == NULL && contains(textok_last_error(), "stages"),
                 "disc create with 0 stages refused: %s", textok_last_error());
        st = textok_disc_logits(D, NULL, 1, l1);
        tt_check(s, st == TEXTOK_ERR_ARG, "disc logits with NULL images refused");
        bc = textok_disc_default_config();
        tt_check(s, bc.hidden == 128 && bc.stages == 3 && bc.groups == 32 && bc.pool == 16, "disc default config 128, 3, 32, 16");
        n = textok_disc_tensor_specs(&bc, specs, 64);
        {
            size_t total = 0;
            for (i = 0; i < n; i++) total += textok__spec_numel(&specs[i]);
            tt_check(s, total == 1909889, "disc default config: %lu parameters (architecture.md 5.4: 1,909,889)", (unsigned long)total);
        }
    }
done:
    remove(path);
    textok_lpips_free(lp);
    textok_disc_free(D);
}

/* ----- against the PyTorch goldens (tools/gen_golden_nets.py, float64) ----------------------- */
/* The golden seeds keep every ReLU/LeakyReLU input >= 1e-5 from 0 and every max-pool window's
   two largest values apart (metadata min_abs_preactivation, min_maxpool_gap), so float32 takes
   the same branch of every kink and the comparison measures rounding only. */
#define NETS_GOLD_TOL_FWD 1e-5   /* d, d_layers, logits: measured <= 3e-7 (rel L2) */
#define NETS_GOLD_TOL_BWD 1e-5   /* dx, dimg, every parameter grad: measured <= 1.7e-6 (fast dx) */

static float *gold_read(tt_stats *s, const textok_safetensors *st, const char *name, size_t want)
{
    const textok_st_tensor *t = textok_st_find(st, name);
    float *x;
    if (!t || t->numel != want) {
        tt_check(s, 0, "%s: tensor '%s' with %lu values%s", st->path, name, (unsigned long)want, t ? " (wrong size)" : " (missing)");
        return NULL;
    }
    x = nz(want);
    if (textok_st_read_f32(st, t, x, want) != TEXTOK_OK) { free(x); return NULL; }
    return x;
}

static void nets_golden_lpips(tt_stats *s, const textok_kernels *kt)
{
    const int B = 2, H = 32, W = 32;
    const size_t n = (size_t)B * 3 * H * W;
    char path[512], label[128];
    textok_safetensors ref;
    textok_params p = textok_default_params();
    textok_lpips *lp = NULL;
    float *x = NULL, *y = NULL, *d = NULL, *dl = NULL, *dd = NULL, *dx = NULL, *got = nz(n), dg[2], dp[2];
    float *xdev = NULL, *ydev = NULL, *dxdev = NULL;
    int st;
    memset(&ref, 0, sizeof ref);
    p.kernels = kt;
    p.max_batch = 2;
    snprintf(path, sizeof path, "%s/nets/lpips_tiny.safetensors", tt_golden_dir);
    st = textok_lpips_load(&lp, path, &p);
    tt_check(s, st == TEXTOK_OK, "lpips golden [%s]: load %s %s", kt->name, path, st == TEXTOK_OK ? "" : textok_last_error());
    snprintf(path, sizeof path, "%s/nets/lpips_tiny_ref.safetensors", tt_golden_dir);
    if (st != TEXTOK_OK || textok_st_open(&ref, path) != TEXTOK_OK) {
        tt_check(s, 0, "lpips golden [%s]: %s (HINT: /usr/bin/python3 tools/gen_golden_nets.py)", kt->name, textok_last_error());
        goto done;
    }
    x = gold_read(s, &ref, "x", n); y = gold_read(s, &ref, "y", n); d = gold_read(s, &ref, "d", (size_t)B);
    dl = gold_read(s, &ref, "d_layers", 5 * (size_t)B); dd = gold_read(s, &ref, "dd", (size_t)B); dx = gold_read(s, &ref, "dx", n);
    if (!x || !y || !d || !dl || !dd || !dx) goto done;
    xdev = dev_new(kt, x, n); ydev = dev_new(kt, y, n); dxdev = dev_new(kt, got, n);
    st = textok__lpips_reserve(lp, B, H, W);
    if (st == TEXTOK_OK) st = textok__lpips_forward(lp, dg, xdev, ydev, B, H, W);
    if (st == TEXTOK_OK) {
        snprintf(label, sizeof label, "lpips golden [%s] d", kt->name);
        tt_compare(s, label, dg, d, (size_t)B, NETS_GOLD_TOL_FWD);
        snprintf(label, sizeof label, "lpips golden [%s] d_layers (5 x 2)", kt->name);
        tt_compare(s, label, lp->host_d, dl, 5 * (size_t)B, NETS_GOLD_TOL_FWD);
        st = textok__lpips_backward(lp, dxdev, dd, B, H, W);
    }
    if (st == TEXTOK_OK) {
        dev_get(kt, got, dxdev, n);
        snprintf(label, sizeof label, "lpips golden [%s] dx", kt->name);
        tt_compare(s, label, got, dx, n, NETS_GOLD_TOL_BWD);
        st = textok_lpips_distance(lp, x, y, B, H, W, dp);
        tt_check(s, st == TEXTOK_OK && !memcmp(dp, dg, sizeof dp), "lpips golden [%s]: textok_lpips_distance gives the same d", kt->name);
    }
    if (st != TEXTOK_OK) tt_check(s, 0, "lpips golden [%s]: %s", kt->name, textok_last_error());
done:
    if (xdev) kt->free(kt, xdev);
    if (ydev) kt->free(kt, ydev);
    if (dxdev) kt->free(kt, dxdev);
    textok_st_close(&ref);
    textok_lpips_free(lp);
    free(x); free(y); free(d); free(dl); free(dd); free(dx); free(got);
}

static void nets_golden_disc(tt_stats *s, const textok_kernels *kt)
{
    char path[512], label[160];
    textok_safetensors ref;
    textok_params p = textok_default_params();
    textok_disc *D = NULL;
    float *img = NULL, *lg = NULL, *dl = NULL, *di = NULL, *got = NULL, *gotl = NULL, *grads = NULL, *want, *zero = NULL;
    float *imgdev = NULL, *ldev = NULL, *dldev = NULL, *didev = NULL;
    size_t ni, nl;
    int st, B = 3, i, S;
    memset(&ref, 0, sizeof ref);
    p.kernels = kt;
    p.max_batch = 2;   /* the host call then runs 2 + 1 */
    snprintf(path, sizeof path, "%s/nets/disc_tiny.safetensors", tt_golden_dir);
    st = textok_disc_load(&D, path, &p);
    tt_check(s, st == TEXTOK_OK, "disc golden [%s]: load %s %s", kt->name, path, st == TEXTOK_OK ? "" : textok_last_error());
    snprintf(path, sizeof path, "%s/nets/disc_tiny_ref.safetensors", tt_golden_dir);
    if (st != TEXTOK_OK || textok_st_open(&ref, path) != TEXTOK_OK) {
        tt_check(s, 0, "disc golden [%s]: %s (HINT: /usr/bin/python3 tools/gen_golden_nets.py)", kt->name, textok_last_error());
        goto done;
    }
    S = D->image_size;
    ni = (size_t)B * 3 * S * S; nl = (size_t)B * D->cfg.pool * D->cfg.pool;
    img = gold_read(s, &ref, "images", ni); lg = gold_read(s, &ref, "logits", nl); dl = gold_read(s, &ref, "dlogits", nl);
    di = gold_read(s, &ref, "dimg", ni);
    if (!img || !lg || !dl || !di) goto done;
    got = nz(ni); gotl = nz(nl); grads = nz(D->n_params); zero = nz(ni > D->n_params ? ni : D->n_params);
    imgdev = dev_new(kt, img, ni); ldev = dev_new(kt, NULL, nl); dldev = dev_new(kt, dl, nl); didev = dev_new(kt, zero, ni);
    if ((st = textok__disc_reserve(D, B)) != TEXTOK_OK) { tt_check(s, 0, "disc golden: reserve: %s", textok_last_error()); goto done; }
    textok__disc_forward(D, ldev, imgdev, B);
    textok__disc_backward(D, didev, 1, dldev, B);
    dev_get(kt, gotl, ldev, nl);
    dev_get(kt, got, didev, ni);
    dev_get(kt, grads, D->grads, D->n_params);
    snprintf(label, sizeof label, "disc golden [%s] logits", kt->name);
    tt_compare(s, label, gotl, lg, nl, NETS_GOLD_TOL_FWD);
    snprintf(label, sizeof label, "disc golden [%s] dimg", kt->name);
    tt_compare(s, label, got, di, ni, NETS_GOLD_TOL_BWD);
    for (i = 0; i < D->n_tensors; i++) {
        char name[128];
        size_t cnt = textok__spec_numel(&D->specs[i]);
        snprintf(name, sizeof name, "grad.%s", D->specs[i].name);
        if (!(want = gold_read(s, &ref, name, cnt))) continue;
        snprintf(label, sizeof label, "disc golden [%s] %s", kt->name, name);
        tt_compare(s, label, grads + D->offsets[i], want, cnt, NETS_GOLD_TOL_BWD);
        free(want);
    }
    st = textok_disc_logits(D, img, B, gotl);
    snprintf(label, sizeof label, "disc golden [%s] logits via textok_disc_logits (chunks 2 + 1)", kt->name);
    if (st == TEXTOK_OK) tt_compare(s, label, gotl, lg, nl, NETS_GOLD_TOL_FWD);
    else tt_check(s, 0, "%s: %s", label, textok_last_error());
done:
    if (imgdev) kt->free(kt, imgdev);
    if (ldev) kt->free(kt, ldev);
    if (dldev) kt->free(kt, dldev);
    if (didev) kt->free(kt, didev);
    textok_st_close(&ref);
    textok_disc_free(D);
    free(img); free(lg); free(dl); free(di); free(got); free(gotl); free(grads); free(zero);
}

void test_nets(tt_stats *s)
{
    textok_kernels ref = textok_cpu_ref_kernels(), fast = textok_cpu_kernels(0);
    nets_golden_lpips(s, &ref);
    nets_golden_lpips(s, &fast);
    nets_golden_disc(s, &ref);
    nets_golden_disc(s, &fast);
    lpips_fd(s, &ref);
    lpips_fd(s, &fast);
    lpips_tables(s);
    disc_fd(s, &ref);
    disc_fd(s, &fast);
    disc_tables(s);
    nets_files(s);
}
