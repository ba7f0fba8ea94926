/* test_metrics.c - textok_image_metrics (MSE, PSNR, SSIM) against tests/golden/metrics/
   metrics.safetensors: tools/gen_golden_metrics.py computes the three metrics in float64 with
   PyTorch (F.conv2d with the 11x11 Gaussian, valid positions), cross-checked there against a
   direct per-window loop and scikit-image. Each case's x and y are stored as float32 and the
   expected results as float64 strings in the metadata.

   Tolerances: both sides sum in double, in different orders (a separable filter here, a 2-D
   convolution there), so the results differ by rounding only, ~1e-15 measured. SSIM takes
   variances as E[x^2] - mx^2, a cancellation that can amplify that rounding by at most ~1/C2
   (~1e3), hence 1e-10 absolute; PSNR 1e-9 dB (10 log10 turns a relative error e of the MSE into
   4.3 e dB); MSE 1e-12 relative. A wrong window, constant, padding or variance normalisation moves
   SSIM by more than 1e-4 on these images. The identical pair must give exactly 0, 100 and 1.

   Then properties and bad input: symmetry, NULL outputs, a NaN input (PSNR NaN, not 100 dB),
   too-small images (refused only when SSIM is asked for), NULL images and bad shapes. */
#include "check.h"
#include "textok.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MT_TOL_MSE_REL 1e-12
#define MT_TOL_PSNR 1e-9
#define MT_TOL_SSIM 1e-10

static double mt_meta(const textok_safetensors *st, const char *cs, const char *what, int *ok)
{
    char key[128];
    const char *v;
    char *end;
    double d;
    snprintf(key, sizeof key, "%s.%s", cs, what);
    v = textok_st_meta(st, key);
    if (!v) { *ok = 0; return 0; }
    d = strtod(v, &end);
    if (end == v || *end) *ok = 0;
    return d;
}

/* reads "<cs>.x" or "<cs>.y" into a new array; shape into chw */
static float *mt_tensor(const textok_safetensors *st, const char *cs, const char *which, int chw[3])
{
    char key[128];
    const textok_st_tensor *t;
    float *p;
    snprintf(key, sizeof key, "%s.%s", cs, which);
    t = textok_st_find(st, key);
    if (!t || t->ndim != 3) return NULL;
    chw[0] = (int)t->shape[0]; chw[1] = (int)t->shape[1]; chw[2] = (int)t->shape[2];
    p = (float *)malloc(t->numel * sizeof(float));
    if (p && textok_st_read_f32(st, t, p, t->numel) != TEXTOK_OK) { free(p); p = NULL; }
    return p;
}

static void mt_golden(tt_stats *s)
{
    char path[512], names[512], *cs, *next;
    textok_safetensors st;
    const char *list;
    double worst[3] = { 0, 0, 0 };
    int n_cases = 0;
    snprintf(path, sizeof path, "%s/metrics/metrics.safetensors", tt_golden_dir);
    if (textok_st_open(&st, path) != TEXTOK_OK) {
        tt_check(s, 0, "metrics golden: open %s: %s", path, textok_last_error());
        return;
    }
    list = textok_st_meta(&st, "cases");
    if (!list || strlen(list) >= sizeof names) {
        tt_check(s, 0, "metrics golden: %s has no \"cases\" metadata", path);
        textok_st_close(&st);
        return;
    }
    strcpy(names, list);
    for (cs = names; cs && *cs; cs = next) {
        int xs[3] = { 0, 0, 0 }, ys[3] = { 0, 0, 0 }, ok = 1, rc;
        float *x, *y;
        double want_mse, want_psnr, want_ssim, mse = -1, psnr = -1, ssim = -1, e_mse, e_psnr, e_ssim;
        if ((next = strchr(cs, ',')) != NULL) *next++ = 0;
        x = mt_tensor(&st, cs, "x", xs);
        y = mt_tensor(&st, cs, "y", ys);
        want_mse = mt_meta(&st, cs, "mse", &ok);
        want_psnr = mt_meta(&st, cs, "psnr", &ok);
        want_ssim = mt_meta(&st, cs, "ssim", &ok);
        if (!x || !y || !ok || memcmp(xs, ys, sizeof xs)) {
            tt_check(s, 0, "metrics golden %s: tensors or metadata missing or malformed", cs);
            free(x); free(y);
            continue;
        }
        n_cases++;
        rc = textok_image_metrics(x, y, xs[0], xs[1], xs[2], &mse, &psnr, &ssim);
        e_mse = fabs(mse - want_mse) / (want_mse > 0 ? want_mse : 1.0);
        e_psnr = fabs(psnr - want_psnr);
        e_ssim = fabs(ssim - want_ssim);
        if (e_mse > worst[0]) worst[0] = e_mse;
        if (e_psnr > worst[1]) worst[1] = e_psnr;
        if (e_ssim > worst[2]) worst[2] = e_ssim;
        tt_check(s, rc == TEXTOK_OK && e_mse <= MT_TOL_MSE_REL && e_psnr <= MT_TOL_PSNR && e_ssim <= MT_TOL_SSIM,
                 "metrics golden %-12s (%d,%d,%d)  mse %.6e (rel err %.1e)  psnr %.4f dB (err %.1e)  ssim %.6f (err %.1e)%s",
                 cs, xs[0], xs[1], xs[2], mse, e_mse, psnr, e_psnr, ssim, e_ssim, rc ? textok_last_error() : "");
        if (!strcmp(cs, "identical"))
            tt_check(s, rc == TEXTOK_OK && mse == 0.0 && psnr == 100.0 && ssim == 1.0,
                     "metrics identical images: mse %g, psnr %.17g dB (floor 1e-10), ssim %.17g (exactly 0, 100, 1)", mse, psnr, ssim);
        if (!strcmp(cs, "photo_noise")) {
            double m2 = -1, p2 = -1, s2 = -1;
            rc = textok_image_metrics(y, x, xs[0], xs[1], xs[2], &m2, &p2, &s2);
            tt_check(s, rc == TEXTOK_OK && m2 == mse && p2 == psnr && s2 == ssim, "metrics symmetric: (y, x) gives (x, y)'s values exactly");
        }
        free(x); free(y);
    }
    textok_st_close(&st);
    tt_check(s, n_cases >= 7, "metrics golden: %d cases; max errors: mse rel %.2e (tol %.0e), psnr %.2e dB (tol %.0e), "
             "ssim %.2e (tol %.0e)", n_cases, worst[0], MT_TOL_MSE_REL, worst[1], MT_TOL_PSNR, worst[2], MT_TOL_SSIM);
}

static void mt_bad_input(tt_stats *s)
{
    float a[3 * 12 * 12], b[3 * 12 * 12];
    double mse = -1, psnr = -1, ssim = -1;
    int i, rc;
    for (i = 0; i < 3 * 12 * 12; i++) { a[i] = (float)(i % 7) / 7.0f; b[i] = (float)(i % 5) / 5.0f; }

    rc = textok_image_metrics(a, b, 3, 12, 12, NULL, NULL, NULL);
    tt_check(s, rc == TEXTOK_OK, "metrics: every output NULL is allowed");
    rc = textok_image_metrics(a, b, 3, 12, 12, NULL, NULL, &ssim);
    tt_check(s, rc == TEXTOK_OK && ssim > -1 && ssim < 1, "metrics: SSIM alone (%.4f)", ssim);

    ssim = -7;
    rc = textok_image_metrics(a, b, 3, 10, 14, &mse, &psnr, &ssim);
    tt_check(s, rc == TEXTOK_ERR_ARG && ssim == -7 && mse == -1 && strstr(textok_last_error(), "11x11") &&
             strstr(textok_last_error(), "10x14"),
             "metrics: 10x14 with SSIM refused, nothing written: %s", textok_last_error());
    rc = textok_image_metrics(a, b, 3, 14, 10, NULL, NULL, &ssim);
    tt_check(s, rc == TEXTOK_ERR_ARG, "metrics: 14x10 with SSIM refused: %s", textok_last_error());
    rc = textok_image_metrics(a, b, 1, 4, 4, &mse, &psnr, NULL);
    tt_check(s, rc == TEXTOK_OK && mse > 0 && isfinite(psnr), "metrics: a 4x4 image without SSIM: mse %.4f, psnr %.2f dB", mse, psnr);

    mse = psnr = ssim = -1;
    rc = textok_image_metrics(NULL, b, 3, 12, 12, &mse, &psnr, &ssim);
    tt_check(s, rc == TEXTOK_ERR_ARG && mse == -1, "metrics: NULL x refused: %s", textok_last_error());
    rc = textok_image_metrics(a, NULL, 3, 12, 12, &mse, &psnr, &ssim);
    tt_check(s, rc == TEXTOK_ERR_ARG && mse == -1, "metrics: NULL y refused: %s", textok_last_error());
    rc = textok_image_metrics(a, b, 0, 12, 12, &mse, &psnr, &ssim);
    tt_check(s, rc == TEXTOK_ERR_ARG && mse == -1, "metrics: C = 0 refused: %s", textok_last_error());
    rc = textok_image_metrics(a, b, 3, -12, 12, &mse, &psnr, NULL);
    tt_check(s, rc == TEXTOK_ERR_ARG && mse == -1, "metrics: H < 0 refused: %s", textok_last_error());

    b[5] = NAN;
    rc = textok_image_metrics(a, b, 3, 12, 12, &mse, &psnr, &ssim);
    tt_check(s, rc == TEXTOK_OK && isnan(mse) && isnan(psnr) && isnan(ssim),
             "metrics: a NaN input gives NaN (psnr %g, not the 100 dB floor)", psnr);
}

void test_metrics(tt_stats *s)
{
    mt_golden(s);
    mt_bad_input(s);
}
