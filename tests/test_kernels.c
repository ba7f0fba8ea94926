/* test_kernels.c - every kernel, forward and backward:
     1. against the PyTorch goldens in tests/golden/ (tools/gen_golden.py, computed in float64),
        through both CPU tables (the naive reference and the fast one);
     2. by central finite differences (the loss and quotient in double) on the reference table;
     3. fast table against the reference table with textok_kernels_compare.

   Golden tolerance: relative L2 error <= 1e-5 for every tensor (the issue's bound for fp32). The
   figures printed show the actual margins: most tensors land at 1e-7..1e-6. */
#include "textok.h"
#include "check.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GOLD_TOL 1e-5

/* ----- golden files ------------------------------------------------------------------------- */
typedef struct gold {
    textok_safetensors st;
    const char *op;
    int n_cases;
    int ok;
} gold;

static int gold_open(tt_stats *s, gold *g, const char *op)
{
    char path[512];
    const char *magic, *version, *n;
    snprintf(path, sizeof path, "%s/%s.safetensors", tt_golden_dir, op);
    memset(g, 0, sizeof *g);
    g->op = op;
    if (textok_st_open(&g->st, path) != TEXTOK_OK) {
        tt_check(s, 0, "golden %-14s cannot open: %s (HINT: /usr/bin/python3 tools/gen_golden.py)", op, textok_last_error());
        return 0;
    }
    magic = textok_st_meta(&g->st, "magic");
    version = textok_st_meta(&g->st, "version");
    n = textok_st_meta(&g->st, "n_cases");
    if (!magic || strcmp(magic, "textok-golden") || !version || strcmp(version, "1") || !n) {
        tt_check(s, 0, "golden %-14s %s: not a version-1 textok golden file (HINT: regenerate with /usr/bin/python3 tools/gen_golden.py)", op, path);
        textok_st_close(&g->st);
        return 0;
    }
    g->n_cases = atoi(n);
    g->ok = 1;
    return 1;
}

/* Value of key in the case's dims string "k=v,k=v" */
static double gold_dim(gold *g, int c, const char *key)
{
    char mk[32];
    const char *dims, *p;
    size_t kl = strlen(key);
    snprintf(mk, sizeof mk, "c%d.dims", c);
    dims = textok_st_meta(&g->st, mk);
    for (p = dims; p && *p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL)
        if (!strncmp(p, key, kl) && p[kl] == '=') return atof(p + kl + 1);
    fprintf(stderr, "golden %s case %d: no dim '%s'\n", g->op, c, key);
    return 0.0;
}

/* A golden tensor as a fresh float array (NULL if absent: optional tensors) */
static float *gold_get(gold *g, int c, const char *name, size_t *n)
{
    char full[64];
    const textok_st_tensor *t;
    float *x;
    snprintf(full, sizeof full, "c%d.%s", c, name);
    t = textok_st_find(&g->st, full);
    if (!t) return NULL;
    x = (float *)malloc(t->numel * sizeof(float) + 1);
    if (x && textok_st_read_f32(&g->st, t, x, t->numel) != TEXTOK_OK) { free(x); return NULL; }
    if (n) *n = t->numel;
    return x;
}

static float *zeros(size_t n) { return (float *)calloc(n ? n : 1, sizeof(float)); }

/* Compare got with golden tensor `name` of case c */
static void gold_cmp(tt_stats *s, gold *g, const textok_kernels *k, int c, const char *name, const float *got)
{
    char label[96];
    size_t n = 0;
    float *ref = gold_get(g, c, name, &n);
    snprintf(label, sizeof label, "golden %s/%s c%d %s", g->op, k->name, c, name);
    if (!ref) { tt_check(s, 0, "%s: tensor missing from golden file", label); return; }
    tt_compare(s, label, got, ref, n, GOLD_TOL);
    free(ref);
}

/* ----- one golden runner per op ------------------------------------------------------------- */
static void golden_matmul(tt_stats *s, gold *g, const textok_kernels *k, int c)
{
    textok_matmul_dims d;
    size_t na, nb, no;
    int has_bias = (int)gold_dim(g, c, "has_bias");
    float *a = gold_get(g, c, "a", &na), *b = gold_get(g, c, "b", &nb), *bias = gold_get(g, c, "bias", NULL);
    float *dout = gold_get(g, c, "dout", &no), *out = zeros(no), *da = zeros(na), *db = zeros(nb);
    float *dbias = zeros((size_t)gold_dim(g, c, "N"));
    d.batch = (int)gold_dim(g, c, "batch"); d.M = (int)gold_dim(g, c, "M"); d.N = (int)gold_dim(g, c, "N");
    d.K = (int)gold_dim(g, c, "K"); d.trans_a = (int)gold_dim(g, c, "trans_a"); d.trans_b = (int)gold_dim(g, c, "trans_b");
    k->matmul_forward(k, out, a, b, has_bias ? bias : NULL, &d);
    k->matmul_backward(k, da, db, has_bias ? dbias : NULL, dout, a, b, &d);
    gold_cmp(s, g, k, c, "out", out);
    gold_cmp(s, g, k, c, "da", da);
    gold_cmp(s, g, k, c, "db", db);
    if (has_bias) gold_cmp(s, g, k, c, "dbias", dbias);
    free(a); free(b); free(bias); free(dout); free(out); free(da); free(db); free(dbias);
}

static void golden_layernorm(tt_stats *s, gold *g, const textok_kernels *k, int c)
{
    int N = (int)gold_dim(g, c, "N"), C = (int)gold_dim(g, c, "C"), affine = (int)gold_dim(g, c, "affine");
    size_t n;
    float *x = gold_get(g, c, "x", &n), *w = gold_get(g, c, "weight", NULL), *b = gold_get(g, c, "bias", NULL);
    float *dout = gold_get(g, c, "dout", NULL), *out = zeros(n), *mean = zeros((size_t)N), *rstd = zeros((size_t)N);
    float *dx = zeros(n), *dw = zeros((size_t)C), *db = zeros((size_t)C);
    k->layernorm_forward(k, out, mean, rstd, x, affine ? w : NULL, affine ? b : NULL, N, C, (float)gold_dim(g, c, "eps"));
    k->layernorm_backward(k, dx, affine ? dw : NULL, affine ? db : NULL, dout, x, affine ? w : NULL, mean, rstd, N, C);
    gold_cmp(s, g, k, c, "out", out);
    gold_cmp(s, g, k, c, "mean", mean);
    gold_cmp(s, g, k, c, "rstd", rstd);
    gold_cmp(s, g, k, c, "dx", dx);
    if (affine) { gold_cmp(s, g, k, c, "dweight", dw); gold_cmp(s, g, k, c, "dbias", db); }
    free(x); free(w); free(b); free(dout); free(out); free(mean); free(rstd); free(dx); free(dw); free(db);
}

static void golden_rmsnorm(tt_stats *s, gold *g, const textok_kernels *k, int c)
{
    int N = (int)gold_dim(g, c, "N"), C = (int)gold_dim(g, c, "C");
    size_t n;
    float *x = gold_get(g, c, "x", &n), *w = gold_get(g, c, "weight", NULL), *dout = gold_get(g, c, "dout", NULL);
    float *out = zeros(n), *rstd = zeros((size_t)N), *dx = zeros(n), *dw = zeros((size_t)C);
    k->rmsnorm_forward(k, out, rstd, x, w, N, C, (float)gold_dim(g, c, "eps"));
    k->rmsnorm_backward(k, dx, dw, dout, x, w, rstd, N, C);
    gold_cmp(s, g, k, c, "out", out);
    gold_cmp(s, g, k, c, "rstd", rstd);
    gold_cmp(s, g, k, c, "dx", dx);
    gold_cmp(s, g, k, c, "dweight", dw);
    free(x); free(w); free(dout); free(out); free(rstd); free(dx); free(dw);
}

static void golden_gelu(tt_stats *s, gold *g, const textok_kernels *k, int c)
{
    size_t n;
    int approx = (int)gold_dim(g, c, "approx");
    float *x = gold_get(g, c, "x", &n), *dout = gold_get(g, c, "dout", NULL), *out = zeros(n), *dx = zeros(n);
    k->gelu_forward(k, out, x, n, approx);
    k->gelu_backward(k, dx, dout, x, n, approx);
    gold_cmp(s, g, k, c, "out", out);
    gold_cmp(s, g, k, c, "dx", dx);
    free(x); free(dout); free(out); free(dx);
}

static void golden_silu(tt_stats *s, gold *g, const textok_kernels *k, int c)
{
    size_t n;
    float *x = gold_get(g, c, "x", &n), *dout = gold_get(g, c, "dout", NULL), *out = zeros(n), *dx = zeros(n);
    k->silu_forward(k, out, x, n);
    k->silu_backward(k, dx, dout, x, n);
    gold_cmp(s, g, k, c, "out", out);
    gold_cmp(s, g, k, c, "dx", dx);
    free(x); free(dout); free(out); free(dx);
}

static void golden_softmax(tt_stats *s, gold *g, const textok_kernels *k, int c)
{
    size_t n;
    int rows = (int)gold_dim(g, c, "rows"), cols = (int)gold_dim(g, c, "cols");
    float *x = gold_get(g, c, "x", &n), *dout = gold_get(g, c, "dout", NULL), *out = zeros(n), *dx = zeros(n);
    k->softmax_forward(k, out, x, rows, cols);
    k->softmax_backward(k, dx, dout, out, rows, cols);
    gold_cmp(s, g, k, c, "out", out);
    gold_cmp(s, g, k, c, "dx", dx);
    free(x); free(dout); free(out); free(dx);
}

static void golden_attention(tt_stats *s, gold *g, const textok_kernels *k, int c)
{
    textok_attention_dims d;
    size_t nq, nk, nb, i;
    int has_bias = (int)gold_dim(g, c, "has_bias"), has_mask = (int)gold_dim(g, c, "has_mask");
    float *q, *key, *v, *bias, *maskf, *dout, *out, *lse, *dq, *dk, *dv, *dbias, *work;
    unsigned char *mask = NULL;
    d.B = (int)gold_dim(g, c, "B"); d.Tq = (int)gold_dim(g, c, "Tq"); d.Tk = (int)gold_dim(g, c, "Tk");
    d.C = (int)gold_dim(g, c, "C"); d.H = (int)gold_dim(g, c, "H"); d.scale = (float)gold_dim(g, c, "scale");
    q = gold_get(g, c, "q", &nq); key = gold_get(g, c, "k", &nk); v = gold_get(g, c, "v", NULL);
    bias = gold_get(g, c, "bias", NULL); maskf = gold_get(g, c, "mask", NULL); dout = gold_get(g, c, "dout", NULL);
    nb = (size_t)d.H * d.Tq * d.Tk;
    out = zeros(nq); lse = zeros((size_t)d.B * d.H * d.Tq); dq = zeros(nq); dk = zeros(nk); dv = zeros(nk);
    dbias = zeros(nb); work = zeros(textok_attention_work_floats(&d));
    if (has_mask && maskf) {
        mask = (unsigned char *)malloc((size_t)d.B * d.Tk);
        for (i = 0; i < (size_t)d.B * d.Tk; i++) mask[i] = maskf[i] != 0.0f;
    }
    k->attention_forward(k, out, lse, q, key, v, has_bias ? bias : NULL, mask, &d, work);
    k->attention_backward(k, dq, dk, dv, has_bias ? dbias : NULL, dout, q, key, v, has_bias ? bias : NULL,
                          mask, out, lse, &d, work);
    gold_cmp(s, g, k, c, "out", out);
    gold_cmp(s, g, k, c, "lse", lse);
    gold_cmp(s, g, k, c, "dq", dq);
    gold_cmp(s, g, k, c, "dk", dk);
    gold_cmp(s, g, k, c, "dv", dv);
    if (has_bias) gold_cmp(s, g, k, c, "dbias", dbias);
    free(q); free(key); free(v); free(bias); free(maskf); free(dout); free(out); free(lse);
    free(dq); free(dk); free(dv); free(dbias); free(work); free(mask);
}

static void golden_add(tt_stats *s, gold *g, const textok_kernels *k, int c)
{
    size_t n;
    float *a = gold_get(g, c, "a", &n), *b = gold_get(g, c, "b", NULL), *dout = gold_get(g, c, "dout", NULL);
    float *out = zeros(n), *da = zeros(n), *db = zeros(n);
    k->add_forward(k, out, a, b, n);
    k->add_backward(k, da, db, dout, n);
    gold_cmp(s, g, k, c, "out", out);
    gold_cmp(s, g, k, c, "da", da);
    gold_cmp(s, g, k, c, "db", db);
    free(a); free(b); free(dout); free(out); free(da); free(db);
}

static void golden_modulate(tt_stats *s, gold *g, const textok_kernels *k, int c)
{
    int B = (int)gold_dim(g, c, "B"), T = (int)gold_dim(g, c, "T"), C = (int)gold_dim(g, c, "C");
    size_t n, nbc = (size_t)B * C;
    float *x = gold_get(g, c, "x", &n), *shift = gold_get(g, c, "shift", NULL), *scale = gold_get(g, c, "scale", NULL);
    float *dout = gold_get(g, c, "dout", NULL), *out = zeros(n), *dx = zeros(n), *dshift = zeros(nbc), *dscale = zeros(nbc);
    k->modulate_forward(k, out, x, shift, scale, B, T, C);
    k->modulate_backward(k, dx, dshift, dscale, dout, x, scale, B, T, C);
    gold_cmp(s, g, k, c, "out", out);
    gold_cmp(s, g, k, c, "dx", dx);
    gold_cmp(s, g, k, c, "dshift", dshift);
    gold_cmp(s, g, k, c, "dscale", dscale);
    free(x); free(shift); free(scale); free(dout); free(out); free(dx); free(dshift); free(dscale);
}

static void golden_gate(tt_stats *s, gold *g, const textok_kernels *k, int c)
{
    int B = (int)gold_dim(g, c, "B"), T = (int)gold_dim(g, c, "T"), C = (int)gold_dim(g, c, "C");
    size_t n, nbc = (size_t)B * C;
    float *r = gold_get(g, c, "resid", &n), *x = gold_get(g, c, "x", NULL), *gate = gold_get(g, c, "gate", NULL);
    float *dout = gold_get(g, c, "dout", NULL), *out = zeros(n), *dr = zeros(n), *dx = zeros(n), *dgate = zeros(nbc);
    k->gate_forward(k, out, r, x, gate, B, T, C);
    k->gate_backward(k, dr, dx, dgate, dout, x, gate, B, T, C);
    gold_cmp(s, g, k, c, "out", out);
    gold_cmp(s, g, k, c, "dresid", dr);
    gold_cmp(s, g, k, c, "dx", dx);
    gold_cmp(s, g, k, c, "dgate", dgate);
    free(r); free(x); free(gate); free(dout); free(out); free(dr); free(dx); free(dgate);
}

static void golden_conv2d(tt_stats *s, gold *g, const textok_kernels *k, int c)
{
    textok_conv2d_dims d;
    size_t nx, nw, no;
    int has_bias = (int)gold_dim(g, c, "has_bias");
    float *x, *w, *bias, *dout, *out, *dx, *dw, *db, *work;
    d.B = (int)gold_dim(g, c, "B"); d.C = (int)gold_dim(g, c, "C"); d.H = (int)gold_dim(g, c, "H");
    d.W = (int)gold_dim(g, c, "W"); d.OC = (int)gold_dim(g, c, "OC"); d.KH = (int)gold_dim(g, c, "KH");
    d.KW = (int)gold_dim(g, c, "KW"); d.stride = (int)gold_dim(g, c, "stride"); d.pad = (int)gold_dim(g, c, "pad");
    x = gold_get(g, c, "x", &nx); w = gold_get(g, c, "weight", &nw); bias = gold_get(g, c, "bias", NULL);
    dout = gold_get(g, c, "dout", &no);
    out = zeros(no); dx = zeros(nx); dw = zeros(nw); db = zeros((size_t)d.OC); work = zeros(textok_conv2d_work_floats(&d));
    k->conv2d_forward(k, out, x, w, has_bias ? bias : NULL, &d, work);
    k->conv2d_backward(k, dx, dw, has_bias ? db : NULL, dout, x, w, &d, work);
    gold_cmp(s, g, k, c, "out", out);
    gold_cmp(s, g, k, c, "dx", dx);
    gold_cmp(s, g, k, c, "dweight", dw);
    if (has_bias) gold_cmp(s, g, k, c, "dbias", db);
    free(x); free(w); free(bias); free(dout); free(out); free(dx); free(dw); free(db); free(work);
}

static void golden_groupnorm(tt_stats *s, gold *g, const textok_kernels *k, int c)
{
    int B = (int)gold_dim(g, c, "B"), C = (int)gold_dim(g, c, "C"), G = (int)gold_dim(g, c, "G");
    int HW = (int)gold_dim(g, c, "H") * (int)gold_dim(g, c, "W");
    size_t n, ng = (size_t)B * G;
    float *x = gold_get(g, c, "x", &n), *w = gold_get(g, c, "weight", NULL), *b = gold_get(g, c, "bias", NULL);
    float *dout = gold_get(g, c, "dout", NULL), *out = zeros(n), *mean = zeros(ng), *rstd = zeros(ng);
    float *dx = zeros(n), *dw = zeros((size_t)C), *db = zeros((size_t)C);
    k->groupnorm_forward(k, out, mean, rstd, x, w, b, B, C, HW, G, (float)gold_dim(g, c, "eps"));
    k->groupnorm_backward(k, dx, dw, db, dout, x, w, mean, rstd, B, C, HW, G);
    gold_cmp(s, g, k, c, "out", out);
    gold_cmp(s, g, k, c, "mean", mean);
    gold_cmp(s, g, k, c, "rstd", rstd);
    gold_cmp(s, g, k, c, "dx", dx);
    gold_cmp(s, g, k, c, "dweight", dw);
    gold_cmp(s, g, k, c, "dbias", db);
    free(x); free(w); free(b); free(dout); free(out); free(mean); free(rstd); free(dx); free(dw); free(db);
}

static void golden_upsample(tt_stats *s, gold *g, const textok_kernels *k, int c)
{
    int BC = (int)gold_dim(g, c, "B") * (int)gold_dim(g, c, "C"), H = (int)gold_dim(g, c, "H");
    int W = (int)gold_dim(g, c, "W"), f = (int)gold_dim(g, c, "factor");
    size_t nx, no;
    float *x = gold_get(g, c, "x", &nx), *dout = gold_get(g, c, "dout", &no), *out = zeros(no), *dx = zeros(nx);
    k->upsample_forward(k, out, x, BC, H, W, f);
    k->upsample_backward(k, dx, dout, BC, H, W, f);
    gold_cmp(s, g, k, c, "out", out);
    gold_cmp(s, g, k, c, "dx", dx);
    free(x); free(dout); free(out); free(dx);
}

static void golden_codebook(tt_stats *s, gold *g, const textok_kernels *k, int c)
{
    int N = (int)gold_dim(g, c, "N"), K = (int)gold_dim(g, c, "K"), D = (int)gold_dim(g, c, "D"), i, same = 0, close = 0;
    float *z = gold_get(g, c, "z", NULL), *e = gold_get(g, c, "codebook", NULL), *idx_ref = gold_get(g, c, "idx", NULL);
    float *margin = gold_get(g, c, "margin", NULL), *dist = zeros((size_t)N), *work = zeros(textok_codebook_work_floats(N, K, D));
    int32_t *idx = (int32_t *)calloc((size_t)N, sizeof(int32_t));
    k->codebook_search(k, idx, dist, z, e, N, K, D, work);
    /* indices must be identical wherever the golden gap between best and second best is
       above float rounding of the distances (1e-4 here); the margins in the file are >= 8e-3 */
    for (i = 0; i < N; i++) {
        if ((float)idx[i] == idx_ref[i]) same++;
        else if (margin[i] <= 1e-4f) close++;
    }
    tt_check(s, same + close == N, "golden codebook/%s c%d idx: %d/%d identical, %d differ at near-ties", k->name, c, same, N, close);
    gold_cmp(s, g, k, c, "dist", dist);
    free(z); free(e); free(idx_ref); free(margin); free(dist); free(work); free(idx);
}

static void golden_cross_entropy(tt_stats *s, gold *g, const textok_kernels *k, int c)
{
    int N = (int)gold_dim(g, c, "N"), V = (int)gold_dim(g, c, "V"), i;
    float ls = (float)gold_dim(g, c, "label_smoothing");
    size_t nl;
    float *logits = gold_get(g, c, "logits", &nl), *tf = gold_get(g, c, "targets", NULL), *dl = gold_get(g, c, "dlosses", NULL);
    float *losses = zeros((size_t)N), *probs = zeros(nl), *dlogits = zeros(nl);
    int32_t *t = (int32_t *)calloc((size_t)N, sizeof(int32_t));
    for (i = 0; i < N; i++) t[i] = (int32_t)tf[i];
    k->cross_entropy_forward(k, losses, probs, logits, t, N, V, ls);
    k->cross_entropy_backward(k, dlogits, dl, probs, t, N, V, ls);
    gold_cmp(s, g, k, c, "losses", losses);
    gold_cmp(s, g, k, c, "dlogits", dlogits);
    free(logits); free(tf); free(dl); free(losses); free(probs); free(dlogits); free(t);
}

static void golden_adamw(tt_stats *s, gold *g, const textok_kernels *k, int c)
{
    textok_adamw_params hp;
    int n = (int)gold_dim(g, c, "n"), steps = (int)gold_dim(g, c, "steps"), t;
    float *p = gold_get(g, c, "params0", NULL), *grads = gold_get(g, c, "grads", NULL), *m = zeros((size_t)n), *v = zeros((size_t)n);
    hp.lr = gold_dim(g, c, "lr"); hp.beta1 = gold_dim(g, c, "beta1"); hp.beta2 = gold_dim(g, c, "beta2");
    hp.eps = gold_dim(g, c, "eps"); hp.weight_decay = gold_dim(g, c, "weight_decay");
    for (t = 1; t <= steps; t++) k->adamw_update(k, p, grads + (size_t)(t - 1) * n, m, v, (size_t)n, &hp, t);
    gold_cmp(s, g, k, c, "params", p);
    gold_cmp(s, g, k, c, "m", m);
    gold_cmp(s, g, k, c, "v", v);
    free(p); free(grads); free(m); free(v);
}

/* ----- the TiTok additions: tanh, transpose, l2norm, embedding, unpatchify, gaussian_sample -----
   Same scheme as above, plus two things the older runners do not do:
   - a table may still lack one of these kernels (NULL): that is one FAIL per op and table,
     "not implemented", instead of a call through a NULL pointer;
   - backward kernels accumulate into their gradient buffers (the table's convention, which
     textok_kernels_compare also relies on): every gradient is compared once from zero, then
     backward runs a second time into the same buffer and must give exactly twice the golden
     (doubling is exact in float, so the figures repeat those of the first comparison). */

/* pure data movement (transpose, unpatchify, embedding lookup and the backward of the first
   two, where every gradient element receives exactly one term): the outputs are copies of
   stored float32 values, so they must match the golden bit for bit */
#define GOLD_EXACT 0.0

static int gold_impl(tt_stats *s, gold *g, const textok_kernels *k, int c, int present)
{
    if (!present && c == 0)
        tt_check(s, 0, "golden %s/%s: kernel not implemented (NULL in the table), %d cases skipped",
                 g->op, k->name, g->n_cases);
    return present;
}

/* Like gold_cmp with an explicit tolerance; scale multiplies the golden (2 = after two
   accumulating backward calls) */
static void gold_cmp_x(tt_stats *s, gold *g, const textok_kernels *k, int c, const char *name,
                       const float *got, double tol, float scale)
{
    char label[96];
    size_t n = 0, i;
    float *ref = gold_get(g, c, name, &n);
    snprintf(label, sizeof label, "golden %s/%s c%d %s%s", g->op, k->name, c, name,
             scale == 1.0f ? "" : " acc x2");
    if (!ref) { tt_check(s, 0, "%s: tensor missing from golden file", label); return; }
    for (i = 0; i < n; i++) ref[i] *= scale;
    tt_compare(s, label, got, ref, n, tol);
    free(ref);
}

static void golden_tanh(tt_stats *s, gold *g, const textok_kernels *k, int c)
{
    size_t n;
    float *x, *dout, *out, *dx;
    if (!gold_impl(s, g, k, c, k->tanh_forward && k->tanh_backward)) return;
    x = gold_get(g, c, "x", &n); dout = gold_get(g, c, "dout", NULL); out = zeros(n); dx = zeros(n);
    k->tanh_forward(k, out, x, n);
    k->tanh_backward(k, dx, dout, out, n);   /* from the saved float output: ~1e-7 from the golden */
    gold_cmp(s, g, k, c, "out", out);
    gold_cmp(s, g, k, c, "dx", dx);
    k->tanh_backward(k, dx, dout, out, n);
    gold_cmp_x(s, g, k, c, "dx", dx, GOLD_TOL, 2.0f);
    free(x); free(dout); free(out); free(dx);
}

static void golden_transpose(tt_stats *s, gold *g, const textok_kernels *k, int c)
{
    int B = (int)gold_dim(g, c, "B"), R = (int)gold_dim(g, c, "R"), C = (int)gold_dim(g, c, "C");
    size_t nx, no;
    float *x, *dout, *out, *dx;
    if (!gold_impl(s, g, k, c, k->transpose_forward && k->transpose_backward)) return;
    x = gold_get(g, c, "x", &nx); dout = gold_get(g, c, "dout", &no); out = zeros(no); dx = zeros(nx);
    k->transpose_forward(k, out, x, B, R, C);
    k->transpose_backward(k, dx, dout, B, R, C);
    gold_cmp_x(s, g, k, c, "out", out, GOLD_EXACT, 1.0f);
    gold_cmp_x(s, g, k, c, "dx", dx, GOLD_EXACT, 1.0f);
    k->transpose_backward(k, dx, dout, B, R, C);
    gold_cmp_x(s, g, k, c, "dx", dx, GOLD_EXACT, 2.0f);
    free(x); free(dout); free(out); free(dx);
}

/* The golden rows include an all-zero row and rows below eps (out = x/eps, dx = dout/eps),
   with dout scaled so that no row dominates the relative L2 error (see gen_golden.py). */
static void golden_l2norm(tt_stats *s, gold *g, const textok_kernels *k, int c)
{
    int N = (int)gold_dim(g, c, "N"), C = (int)gold_dim(g, c, "C");
    float eps = (float)gold_dim(g, c, "eps");
    size_t n;
    float *x, *dout, *out, *dx;
    if (!gold_impl(s, g, k, c, k->l2norm_forward && k->l2norm_backward)) return;
    x = gold_get(g, c, "x", &n); dout = gold_get(g, c, "dout", NULL); out = zeros(n); dx = zeros(n);
    k->l2norm_forward(k, out, x, N, C, eps);
    k->l2norm_backward(k, dx, dout, x, N, C, eps);
    gold_cmp(s, g, k, c, "out", out);
    gold_cmp(s, g, k, c, "dx", dx);
    k->l2norm_backward(k, dx, dout, x, N, C, eps);
    gold_cmp_x(s, g, k, c, "dx", dx, GOLD_TOL, 2.0f);
    free(x); free(dout); free(out); free(dx);
}

/* ids are stored as float; repeated ids make backward sum several rows of dout into one row of
   dtable (float order differs from the float64 golden: GOLD_TOL, not exact) */
static void golden_embedding(tt_stats *s, gold *g, const textok_kernels *k, int c)
{
    int N = (int)gold_dim(g, c, "N"), D = (int)gold_dim(g, c, "D"), V = (int)gold_dim(g, c, "V"), i, bad = 0;
    size_t nt;
    float *table, *idsf, *dout, *out, *dtable;
    int32_t *ids;
    if (!gold_impl(s, g, k, c, k->embedding_forward && k->embedding_backward)) return;
    table = gold_get(g, c, "table", &nt); idsf = gold_get(g, c, "ids", NULL); dout = gold_get(g, c, "dout", NULL);
    out = zeros((size_t)N * D); dtable = zeros(nt);
    ids = (int32_t *)calloc((size_t)N, sizeof(int32_t));
    for (i = 0; i < N; i++) {   /* kernels trust their ids: a bad golden file must not reach them */
        ids[i] = idsf ? (int32_t)idsf[i] : -1;
        bad += ids[i] < 0 || ids[i] >= V;
    }
    if (bad) {
        tt_check(s, 0, "golden embedding/%s c%d: %d ids outside [0,%d) in the golden file", k->name, c, bad, V);
    } else {
        k->embedding_forward(k, out, table, ids, N, D);
        k->embedding_backward(k, dtable, dout, ids, N, D);
        gold_cmp_x(s, g, k, c, "out", out, GOLD_EXACT, 1.0f);
        gold_cmp(s, g, k, c, "dtable", dtable);
        k->embedding_backward(k, dtable, dout, ids, N, D);
        gold_cmp_x(s, g, k, c, "dtable", dtable, GOLD_TOL, 2.0f);
    }
    free(table); free(idsf); free(dout); free(out); free(dtable); free(ids);
}

static void golden_unpatchify(tt_stats *s, gold *g, const textok_kernels *k, int c)
{
    int B = (int)gold_dim(g, c, "B"), C = (int)gold_dim(g, c, "C"), H = (int)gold_dim(g, c, "H");
    int W = (int)gold_dim(g, c, "W"), p = (int)gold_dim(g, c, "p");
    size_t nx, no;
    float *x, *dout, *out, *dx;
    if (!gold_impl(s, g, k, c, k->unpatchify_forward && k->unpatchify_backward)) return;
    x = gold_get(g, c, "x", &nx); dout = gold_get(g, c, "dout", &no); out = zeros(no); dx = zeros(nx);
    k->unpatchify_forward(k, out, x, B, C, H, W, p);
    k->unpatchify_backward(k, dx, dout, B, C, H, W, p);
    gold_cmp_x(s, g, k, c, "out", out, GOLD_EXACT, 1.0f);
    gold_cmp_x(s, g, k, c, "dx", dx, GOLD_EXACT, 1.0f);
    k->unpatchify_backward(k, dx, dout, B, C, H, W, p);
    gold_cmp_x(s, g, k, c, "dx", dx, GOLD_EXACT, 2.0f);
    free(x); free(dout); free(out); free(dx);
}

/* case 0: logvar inside [-30,20]; case 1: below the clamp with mean = 0 (so z shows the clamp);
   case 2: above it. Both bounds appear exactly once and pass the gradient, as torch.clamp does. */
static void golden_gaussian_sample(tt_stats *s, gold *g, const textok_kernels *k, int c)
{
    size_t n;
    float *mean, *logvar, *noise, *dz, *z, *dmean, *dlogvar;
    if (!gold_impl(s, g, k, c, k->gaussian_sample_forward && k->gaussian_sample_backward)) return;
    mean = gold_get(g, c, "mean", &n); logvar = gold_get(g, c, "logvar", NULL); noise = gold_get(g, c, "noise", NULL);
    dz = gold_get(g, c, "dz", NULL); z = zeros(n); dmean = zeros(n); dlogvar = zeros(n);
    k->gaussian_sample_forward(k, z, mean, logvar, noise, n);
    k->gaussian_sample_backward(k, dmean, dlogvar, dz, logvar, noise, n);
    gold_cmp(s, g, k, c, "z", z);
    gold_cmp(s, g, k, c, "dmean", dmean);
    gold_cmp(s, g, k, c, "dlogvar", dlogvar);
    k->gaussian_sample_backward(k, dmean, dlogvar, dz, logvar, noise, n);
    gold_cmp_x(s, g, k, c, "dmean", dmean, GOLD_TOL, 2.0f);
    gold_cmp_x(s, g, k, c, "dlogvar", dlogvar, GOLD_TOL, 2.0f);
    free(mean); free(logvar); free(noise); free(dz); free(z); free(dmean); free(dlogvar);
}

/* ----- the loss-network kernels: leaky_relu, maxpool, lpips_layer (same scheme as above) ----- */
/* x = 0 exactly in every 7th element: the gradient there is slope * dout (torch). slope is a
   float here and a double in the golden, hence GOLD_TOL rather than exact. */
static void golden_leaky_relu(tt_stats *s, gold *g, const textok_kernels *k, int c)
{
    size_t n;
    float slope = (float)gold_dim(g, c, "slope");
    float *x, *dout, *out, *dx;
    if (!gold_impl(s, g, k, c, k->leaky_relu_forward && k->leaky_relu_backward)) return;
    x = gold_get(g, c, "x", &n); dout = gold_get(g, c, "dout", NULL); out = zeros(n); dx = zeros(n);
    k->leaky_relu_forward(k, out, x, n, slope);
    k->leaky_relu_backward(k, dx, dout, x, n, slope);
    gold_cmp(s, g, k, c, "out", out);
    gold_cmp(s, g, k, c, "dx", dx);
    /* in place, and backward from the saved output (what the networks do) */
    k->leaky_relu_forward(k, x, x, n, slope);
    gold_cmp_x(s, g, k, c, "out", x, GOLD_TOL, 1.0f);
    k->leaky_relu_backward(k, dx, dout, x, n, slope);
    gold_cmp_x(s, g, k, c, "dx", dx, GOLD_TOL, 2.0f);
    free(x); free(dout); free(out); free(dx);
}

/* out is a copy of input values: exact. dx: where windows overlap several dout values add in
   float (the golden in float64), so GOLD_TOL; case 3 has ties (first maximum wins). */
static void golden_maxpool(tt_stats *s, gold *g, const textok_kernels *k, int c)
{
    int BC = (int)gold_dim(g, c, "B") * (int)gold_dim(g, c, "C"), H = (int)gold_dim(g, c, "H");
    int W = (int)gold_dim(g, c, "W"), OH = (int)gold_dim(g, c, "OH"), OW = (int)gold_dim(g, c, "OW");
    size_t nx, no;
    float *x, *dout, *out, *dx;
    if (!gold_impl(s, g, k, c, k->maxpool_forward && k->maxpool_backward)) return;
    x = gold_get(g, c, "x", &nx); dout = gold_get(g, c, "dout", &no); out = zeros(no); dx = zeros(nx);
    k->maxpool_forward(k, out, x, BC, H, W, OH, OW);
    k->maxpool_backward(k, dx, dout, x, BC, H, W, OH, OW);
    gold_cmp_x(s, g, k, c, "out", out, GOLD_EXACT, 1.0f);
    gold_cmp(s, g, k, c, "dx", dx);
    k->maxpool_backward(k, dx, dout, x, BC, H, W, OH, OW);
    gold_cmp_x(s, g, k, c, "dx", dx, GOLD_TOL, 2.0f);
    free(x); free(dout); free(out); free(dx);
}

/* d is overwritten: it starts as garbage here. */
static void golden_lpips_layer(tt_stats *s, gold *g, const textok_kernels *k, int c)
{
    int B = (int)gold_dim(g, c, "B"), C = (int)gold_dim(g, c, "C");
    int HW = (int)gold_dim(g, c, "H") * (int)gold_dim(g, c, "W"), i;
    size_t nf;
    float *f0, *f1, *w, *dd, *d, *df0, *df1;
    if (!gold_impl(s, g, k, c, k->lpips_layer_forward && k->lpips_layer_backward)) return;
    f0 = gold_get(g, c, "f0", &nf); f1 = gold_get(g, c, "f1", NULL); w = gold_get(g, c, "w", NULL);
    dd = gold_get(g, c, "dd", NULL); d = zeros((size_t)B); df0 = zeros(nf); df1 = zeros(nf);
    for (i = 0; i < B; i++) d[i] = 1e3f;
    k->lpips_layer_forward(k, d, f0, f1, w, B, C, HW);
    k->lpips_layer_backward(k, df0, df1, dd, f0, f1, w, B, C, HW);
    gold_cmp(s, g, k, c, "d", d);
    gold_cmp(s, g, k, c, "df0", df0);
    gold_cmp(s, g, k, c, "df1", df1);
    k->lpips_layer_forward(k, d, f0, f1, w, B, C, HW);
    gold_cmp_x(s, g, k, c, "d", d, GOLD_TOL, 1.0f);            /* again: overwritten, not added */
    k->lpips_layer_backward(k, df0, NULL, dd, f0, f1, w, B, C, HW);
    k->lpips_layer_backward(k, NULL, df1, dd, f0, f1, w, B, C, HW);
    gold_cmp_x(s, g, k, c, "df0", df0, GOLD_TOL, 2.0f);
    gold_cmp_x(s, g, k, c, "df1", df1, GOLD_TOL, 2.0f);
    free(f0); free(f1); free(w); free(dd); free(d); free(df0); free(df1);
}

/* the trainer's vector kernels: reductions to one float, EMA, the two reconstruction losses, KL */
static void golden_train_vector(tt_stats *s, gold *g, const textok_kernels *k, int c)
{
    size_t n;
    float *x, *y, *lv, *ema, *dx2, *dx1, *dmean, *dlogvar, one[1];
    if (!gold_impl(s, g, k, c, k->fill && k->scale && k->sum_squares && k->ema_update && k->diff_loss_forward &&
                   k->diff_loss_backward && k->kl_forward && k->kl_backward)) return;
    x = gold_get(g, c, "x", &n); y = gold_get(g, c, "y", NULL); lv = gold_get(g, c, "lv_in", NULL);
    ema = zeros(n); dx2 = zeros(n); dx1 = zeros(n); dmean = zeros(n); dlogvar = zeros(n);
    k->sum_squares(k, one, x, n);
    gold_cmp(s, g, k, c, "sumsq", one);
    memcpy(ema, x, n * sizeof(float));
    k->ema_update(k, ema, y, n, 0.125f);
    gold_cmp(s, g, k, c, "ema", ema);
    k->diff_loss_forward(k, one, x, y, n, 0);
    gold_cmp(s, g, k, c, "l2", one);
    k->diff_loss_backward(k, dx2, x, y, n, 0, 0.75f);
    gold_cmp(s, g, k, c, "dx_l2", dx2);
    k->diff_loss_forward(k, one, x, y, n, 1);
    gold_cmp(s, g, k, c, "l1", one);
    k->diff_loss_backward(k, dx1, x, y, n, 1, 0.75f);
    gold_cmp(s, g, k, c, "dx_l1", dx1);
    k->kl_forward(k, one, x, lv, n);
    gold_cmp(s, g, k, c, "kl", one);
    k->kl_backward(k, dmean, dlogvar, x, lv, n, 0.75f);
    gold_cmp(s, g, k, c, "dmean", dmean);
    gold_cmp(s, g, k, c, "dlogvar", dlogvar);
    k->kl_backward(k, dmean, dlogvar, x, lv, n, 0.75f);   /* accumulates */
    gold_cmp_x(s, g, k, c, "dmean", dmean, GOLD_TOL, 2.0f);
    /* fill and scale: exact */
    k->fill(k, ema, n, 0.375f);
    k->scale(k, ema, n, -2.0f);
    {
        size_t i;
        int ok = 1;
        for (i = 0; i < n; i++) ok &= ema[i] == -0.75f;
        tt_check(s, ok, "golden train_vector fill + scale (%s, n %lu): exact", k->name, (unsigned long)n);
    }
    free(x); free(y); free(lv); free(ema); free(dx2); free(dx1); free(dmean); free(dlogvar);
}

typedef void (*golden_fn)(tt_stats *, gold *, const textok_kernels *, int);
static const struct { const char *op; golden_fn fn; } golden_ops[] = {
    { "matmul", golden_matmul }, { "layernorm", golden_layernorm }, { "rmsnorm", golden_rmsnorm },
    { "gelu", golden_gelu }, { "silu", golden_silu }, { "softmax", golden_softmax },
    { "attention", golden_attention }, { "add", golden_add }, { "modulate", golden_modulate },
    { "gate", golden_gate }, { "conv2d", golden_conv2d }, { "groupnorm", golden_groupnorm },
    { "upsample", golden_upsample }, { "codebook", golden_codebook },
    { "cross_entropy", golden_cross_entropy }, { "adamw", golden_adamw },
    { "tanh", golden_tanh }, { "transpose", golden_transpose }, { "l2norm", golden_l2norm },
    { "embedding", golden_embedding }, { "unpatchify", golden_unpatchify },
    { "gaussian_sample", golden_gaussian_sample },
    { "leaky_relu", golden_leaky_relu }, { "maxpool", golden_maxpool }, { "lpips_layer", golden_lpips_layer },
    { "train_vector", golden_train_vector } };

void test_kernels_golden(tt_stats *s)
{
    textok_kernels tables[2];
    size_t o;
    int t, c;
    tables[0] = textok_cpu_ref_kernels();
    tables[1] = textok_cpu_kernels(0);
    for (o = 0; o < sizeof golden_ops / sizeof golden_ops[0]; o++) {
        gold g;
        if (!gold_open(s, &g, golden_ops[o].op)) continue;
        for (t = 0; t < 2; t++)
            for (c = 0; c < g.n_cases; c++) golden_ops[o].fn(s, &g, &tables[t], c);
        textok_st_close(&g.st);
    }
}

/* ----- RNG against torch.rand --------------------------------------------------------------- */
void test_rng(tt_stats *s)
{
    gold g;
    int c;
    if (!gold_open(s, &g, "rng")) return;
    for (c = 0; c < g.n_cases; c++) {
        size_t n, i, diff = 0;
        float *u = gold_get(&g, c, "uniform", &n);
        textok_rng r;
        textok_rng_seed(&r, (uint64_t)gold_dim(&g, c, "seed"));
        for (i = 0; i < n; i++) diff += textok_rng_uniform(&r) != u[i];
        tt_check(s, u && diff == 0, "rng: seed %d reproduces torch.rand(%zu) bit for bit (%zu differ)",
                 (int)gold_dim(&g, c, "seed"), n, diff);
        free(u);
    }
    textok_st_close(&g.st);
    {   /* determinism and moments of the normal generator */
        textok_rng a, b;
        double m = 0, v = 0;
        int i, same = 1;
        textok_rng_seed(&a, 7); textok_rng_seed(&b, 7);
        for (i = 0; i < 100000; i++) {
            float x = textok_rng_normal(&a);
            same &= x == textok_rng_normal(&b);
            m += x; v += (double)x * x;
        }
        m /= 100000; v = v / 100000 - m * m;
        tt_check(s, same && fabs(m) < 0.02 && fabs(v - 1.0) < 0.02,
                 "rng: normal is deterministic, mean %.4f var %.4f over 1e5 draws (bounds +-0.02)", m, v);
    }
}

/* ----- finite differences ------------------------------------------------------------------- */
/* For each op: L = sum(out . w) with a fixed random w; the analytic gradient is backward with
   dout = w. For up to FD_POINTS elements of every differentiable input, the central difference
   (L(x+h) - L(x-h)) / 2h is formed in double on the reference table and compared with it.
   Error model for h = 1e-2 on O(1) inputs: truncation h^2 f'''/6 ~ 2e-5 relative; rounding of
   the float outputs ~ sqrt(n) 6e-8 |out| / h ~ 1e-5..1e-4. Measured worst: 2.4e-5 (attention
   dkey, layernorm dx). Tolerance 5e-4 on the relative L2 error; a wrong formula or index gives O(1). */
#define FD_POINTS 24
#define FD_H 1e-2f
#define FD_TOL 5e-4
#define FD_MAXIN 6

typedef struct fd_case fd_case;
struct fd_case {
    const char *name;
    const textok_kernels *k;
    int n_in;
    float *in[FD_MAXIN];
    size_t in_n[FD_MAXIN];
    const char *in_name[FD_MAXIN];
    float *out, *w, *aux[3];      /* output, loss weights (= dout), saved statistics / work */
    size_t out_n;
    int d[10];
    float f;
    unsigned char *mask;
    void (*fwd)(fd_case *c);
    void (*bwd)(fd_case *c, float **din);
    int missing;                  /* the table lacks this kernel (NULL): one FAIL, no call */
};

static double fd_loss(fd_case *c)
{
    double L = 0.0;
    size_t i;
    c->fwd(c);
    for (i = 0; i < c->out_n; i++) L += (double)c->out[i] * c->w[i];
    return L;
}

static void fd_run(tt_stats *s, fd_case *c, textok_rng *r)
{
    float *din[FD_MAXIN];
    int t;
    if (c->missing) {
        tt_check(s, 0, "finite-diff %s: kernel not implemented (NULL in the table)", c->name);
        for (t = 0; t < c->n_in; t++) free(c->in[t]);
        free(c->out); free(c->aux[0]); free(c->aux[1]); free(c->aux[2]); free(c->mask);
        return;
    }
    c->w = zeros(c->out_n);
    textok_rng_fill_normal(r, c->w, c->out_n, 0.0f, 1.0f);
    for (t = 0; t < c->n_in; t++) din[t] = zeros(c->in_n[t]);
    c->fwd(c);
    c->bwd(c, din);
    for (t = 0; t < c->n_in; t++) {
        float an[FD_POINTS], fd[FD_POINTS];
        char label[96];
        size_t n = c->in_n[t], m = n < FD_POINTS ? n : FD_POINTS, j;
        for (j = 0; j < m; j++) {
            size_t i = j * n / m;
            float x0 = c->in[t][i];
            double lp, lm;
            c->in[t][i] = x0 + FD_H; lp = fd_loss(c);
            c->in[t][i] = x0 - FD_H; lm = fd_loss(c);
            c->in[t][i] = x0;
            fd[j] = (float)((lp - lm) / (2.0 * (double)FD_H));
            an[j] = din[t][i];
        }
        snprintf(label, sizeof label, "finite-diff %s d%s (%zu of %zu)", c->name, c->in_name[t], m, n);
        tt_compare(s, label, an, fd, m, FD_TOL);
        free(din[t]);
    }
    for (t = 0; t < c->n_in; t++) free(c->in[t]);
    free(c->out); free(c->w); free(c->aux[0]); free(c->aux[1]); free(c->aux[2]); free(c->mask);
}

static void fd_input(fd_case *c, textok_rng *r, const char *name, size_t n, float mean, float std)
{
    c->in[c->n_in] = zeros(n);
    c->in_n[c->n_in] = n;
    c->in_name[c->n_in] = name;
    textok_rng_fill_normal(r, c->in[c->n_in], n, mean, std);
    c->n_in++;
}

static fd_case *fd_new(fd_case *c, const textok_kernels *k, const char *name, size_t out_n)
{
    memset(c, 0, sizeof *c);
    c->k = k;
    c->name = name;
    c->out_n = out_n;
    c->out = zeros(out_n);
    return c;
}

static textok_matmul_dims fd_mm(fd_case *c)
{
    textok_matmul_dims d;
    d.batch = c->d[0]; d.M = c->d[1]; d.N = c->d[2]; d.K = c->d[3]; d.trans_a = c->d[4]; d.trans_b = c->d[5];
    return d;
}
static void fd_matmul_f(fd_case *c) { textok_matmul_dims d = fd_mm(c); c->k->matmul_forward(c->k, c->out, c->in[0], c->in[1], c->in[2], &d); }
static void fd_matmul_b(fd_case *c, float **g) { textok_matmul_dims d = fd_mm(c); c->k->matmul_backward(c->k, g[0], g[1], g[2], c->w, c->in[0], c->in[1], &d); }

static void fd_layernorm_f(fd_case *c) { c->k->layernorm_forward(c->k, c->out, c->aux[0], c->aux[1], c->in[0], c->in[1], c->in[2], c->d[0], c->d[1], c->f); }
static void fd_layernorm_b(fd_case *c, float **g) { c->k->layernorm_backward(c->k, g[0], g[1], g[2], c->w, c->in[0], c->in[1], c->aux[0], c->aux[1], c->d[0], c->d[1]); }
static void fd_rmsnorm_f(fd_case *c) { c->k->rmsnorm_forward(c->k, c->out, c->aux[0], c->in[0], c->in[1], c->d[0], c->d[1], c->f); }
static void fd_rmsnorm_b(fd_case *c, float **g) { c->k->rmsnorm_backward(c->k, g[0], g[1], c->w, c->in[0], c->in[1], c->aux[0], c->d[0], c->d[1]); }
static void fd_gelu_f(fd_case *c) { c->k->gelu_forward(c->k, c->out, c->in[0], c->out_n, c->d[0]); }
static void fd_gelu_b(fd_case *c, float **g) { c->k->gelu_backward(c->k, g[0], c->w, c->in[0], c->out_n, c->d[0]); }
static void fd_silu_f(fd_case *c) { c->k->silu_forward(c->k, c->out, c->in[0], c->out_n); }
static void fd_silu_b(fd_case *c, float **g) { c->k->silu_backward(c->k, g[0], c->w, c->in[0], c->out_n); }
static void fd_softmax_f(fd_case *c) { c->k->softmax_forward(c->k, c->out, c->in[0], c->d[0], c->d[1]); }
static void fd_softmax_b(fd_case *c, float **g) { c->k->softmax_backward(c->k, g[0], c->w, c->out, c->d[0], c->d[1]); }
static void fd_add_f(fd_case *c) { c->k->add_forward(c->k, c->out, c->in[0], c->in[1], c->out_n); }
static void fd_add_b(fd_case *c, float **g) { c->k->add_backward(c->k, g[0], g[1], c->w, c->out_n); }
static void fd_modulate_f(fd_case *c) { c->k->modulate_forward(c->k, c->out, c->in[0], c->in[1], c->in[2], c->d[0], c->d[1], c->d[2]); }
static void fd_modulate_b(fd_case *c, float **g) { c->k->modulate_backward(c->k, g[0], g[1], g[2], c->w, c->in[0], c->in[2], c->d[0], c->d[1], c->d[2]); }
static void fd_gate_f(fd_case *c) { c->k->gate_forward(c->k, c->out, c->in[0], c->in[1], c->in[2], c->d[0], c->d[1], c->d[2]); }
static void fd_gate_b(fd_case *c, float **g) { c->k->gate_backward(c->k, g[0], g[1], g[2], c->w, c->in[1], c->in[2], c->d[0], c->d[1], c->d[2]); }
static void fd_groupnorm_f(fd_case *c) { c->k->groupnorm_forward(c->k, c->out, c->aux[0], c->aux[1], c->in[0], c->in[1], c->in[2], c->d[0], c->d[1], c->d[2], c->d[3], c->f); }
static void fd_groupnorm_b(fd_case *c, float **g) { c->k->groupnorm_backward(c->k, g[0], g[1], g[2], c->w, c->in[0], c->in[1], c->aux[0], c->aux[1], c->d[0], c->d[1], c->d[2], c->d[3]); }
static void fd_upsample_f(fd_case *c) { c->k->upsample_forward(c->k, c->out, c->in[0], c->d[0], c->d[1], c->d[2], c->d[3]); }
static void fd_upsample_b(fd_case *c, float **g) { c->k->upsample_backward(c->k, g[0], c->w, c->d[0], c->d[1], c->d[2], c->d[3]); }

static textok_attention_dims fd_att(fd_case *c)
{
    textok_attention_dims d;
    d.B = c->d[0]; d.Tq = c->d[1]; d.Tk = c->d[2]; d.C = c->d[3]; d.H = c->d[4];
    d.scale = 1.0f / sqrtf((float)(d.C / d.H));
    return d;
}
static void fd_attention_f(fd_case *c) { textok_attention_dims d = fd_att(c); c->k->attention_forward(c->k, c->out, c->aux[0], c->in[0], c->in[1], c->in[2], c->in[3], c->mask, &d, c->aux[1]); }
static void fd_attention_b(fd_case *c, float **g)
{
    textok_attention_dims d = fd_att(c);
    c->k->attention_backward(c->k, g[0], g[1], g[2], g[3], c->w, c->in[0], c->in[1], c->in[2], c->in[3], c->mask, c->out, c->aux[0], &d, c->aux[1]);
}

static textok_conv2d_dims fd_conv(fd_case *c)
{
    textok_conv2d_dims d;
    d.B = c->d[0]; d.C = c->d[1]; d.H = c->d[2]; d.W = c->d[3]; d.OC = c->d[4]; d.KH = c->d[5]; d.KW = c->d[6];
    d.stride = c->d[7]; d.pad = c->d[8];
    return d;
}
static void fd_conv_f(fd_case *c) { textok_conv2d_dims d = fd_conv(c); c->k->conv2d_forward(c->k, c->out, c->in[0], c->in[1], c->in[2], &d, c->aux[0]); }
static void fd_conv_b(fd_case *c, float **g) { textok_conv2d_dims d = fd_conv(c); c->k->conv2d_backward(c->k, g[0], g[1], g[2], c->w, c->in[0], c->in[1], &d, c->aux[0]); }

/* cross-entropy: out = losses; targets live in aux[1] as int32 */
static void fd_ce_f(fd_case *c) { c->k->cross_entropy_forward(c->k, c->out, c->aux[0], c->in[0], (const int32_t *)c->aux[1], c->d[0], c->d[1], c->f); }
static void fd_ce_b(fd_case *c, float **g) { c->k->cross_entropy_backward(c->k, g[0], c->w, c->aux[0], (const int32_t *)c->aux[1], c->d[0], c->d[1], c->f); }

static void fd_diff_f(fd_case *c) { c->k->diff_loss_forward(c->k, c->out, c->in[0], c->in[1], c->in_n[0], c->d[0]); }
static void fd_diff_b(fd_case *c, float **g)
{
    c->k->diff_loss_backward(c->k, g[0], c->in[0], c->in[1], c->in_n[0], c->d[0], c->w[0]);
    c->k->diff_loss_backward(c->k, g[1], c->in[1], c->in[0], c->in_n[0], c->d[0], c->w[0]);
}
static void fd_kl_f(fd_case *c) { c->k->kl_forward(c->k, c->out, c->in[0], c->in[1], c->in_n[0]); }
static void fd_kl_b(fd_case *c, float **g) { c->k->kl_backward(c->k, g[0], g[1], c->in[0], c->in[1], c->in_n[0], c->w[0]); }
static void fd_tanh_f(fd_case *c) { c->k->tanh_forward(c->k, c->out, c->in[0], c->out_n); }
static void fd_tanh_b(fd_case *c, float **g) { c->k->tanh_backward(c->k, g[0], c->w, c->out, c->out_n); }
static void fd_transpose_f(fd_case *c) { c->k->transpose_forward(c->k, c->out, c->in[0], c->d[0], c->d[1], c->d[2]); }
static void fd_transpose_b(fd_case *c, float **g) { c->k->transpose_backward(c->k, g[0], c->w, c->d[0], c->d[1], c->d[2]); }
static void fd_l2norm_f(fd_case *c) { c->k->l2norm_forward(c->k, c->out, c->in[0], c->d[0], c->d[1], c->f); }
static void fd_l2norm_b(fd_case *c, float **g) { c->k->l2norm_backward(c->k, g[0], c->w, c->in[0], c->d[0], c->d[1], c->f); }
/* embedding: ids live in aux[0] as int32; the gradient is w.r.t. the table */
static void fd_embedding_f(fd_case *c) { c->k->embedding_forward(c->k, c->out, c->in[0], (const int32_t *)c->aux[0], c->d[0], c->d[1]); }
static void fd_embedding_b(fd_case *c, float **g) { c->k->embedding_backward(c->k, g[0], c->w, (const int32_t *)c->aux[0], c->d[0], c->d[1]); }
static void fd_unpatchify_f(fd_case *c) { c->k->unpatchify_forward(c->k, c->out, c->in[0], c->d[0], c->d[1], c->d[2], c->d[3], c->d[4]); }
static void fd_unpatchify_b(fd_case *c, float **g) { c->k->unpatchify_backward(c->k, g[0], c->w, c->d[0], c->d[1], c->d[2], c->d[3], c->d[4]); }
/* gaussian_sample: noise lives in aux[0] (no gradient); inputs mean, logvar */
static void fd_gauss_f(fd_case *c) { c->k->gaussian_sample_forward(c->k, c->out, c->in[0], c->in[1], c->aux[0], c->out_n); }
static void fd_gauss_b(fd_case *c, float **g) { c->k->gaussian_sample_backward(c->k, g[0], g[1], c->w, c->in[1], c->aux[0], c->out_n); }

static void fd_leaky_f(fd_case *c) { c->k->leaky_relu_forward(c->k, c->out, c->in[0], c->out_n, c->f); }
static void fd_leaky_b(fd_case *c, float **g) { c->k->leaky_relu_backward(c->k, g[0], c->w, c->in[0], c->out_n, c->f); }
static void fd_maxpool_f(fd_case *c) { c->k->maxpool_forward(c->k, c->out, c->in[0], c->d[0], c->d[1], c->d[2], c->d[3], c->d[4]); }
static void fd_maxpool_b(fd_case *c, float **g) { c->k->maxpool_backward(c->k, g[0], c->w, c->in[0], c->d[0], c->d[1], c->d[2], c->d[3], c->d[4]); }
/* lpips_layer: the lin weights live in aux[0] (no gradient); out = d (B), so dd = w */
static void fd_lpips_f(fd_case *c) { c->k->lpips_layer_forward(c->k, c->out, c->in[0], c->in[1], c->aux[0], c->d[0], c->d[1], c->d[2]); }
static void fd_lpips_b(fd_case *c, float **g) { c->k->lpips_layer_backward(c->k, g[0], g[1], c->w, c->in[0], c->in[1], c->aux[0], c->d[0], c->d[1], c->d[2]); }

void test_kernels_fd(tt_stats *s)
{
    textok_kernels ref = textok_cpu_ref_kernels();
    const textok_kernels *k = &ref;
    textok_rng r;
    fd_case c;
    int i;
    textok_rng_seed(&r, 99);
    for (i = 0; i < 2; i++) {   /* matmul: plain with bias, and both transposed */
        static const int mm[2][6] = { { 2, 5, 4, 3, 0, 0 }, { 1, 4, 6, 5, 1, 1 } };
        fd_new(&c, k, i ? "matmul(tA,tB)" : "matmul", (size_t)mm[i][0] * mm[i][1] * mm[i][2]);
        memcpy(c.d, mm[i], sizeof mm[i]);
        fd_input(&c, &r, "a", (size_t)mm[i][0] * mm[i][1] * mm[i][3], 0, 1);
        fd_input(&c, &r, "b", (size_t)mm[i][0] * mm[i][3] * mm[i][2], 0, 1);
        fd_input(&c, &r, "bias", (size_t)mm[i][2], 0, 1);
        c.fwd = fd_matmul_f; c.bwd = fd_matmul_b;
        fd_run(s, &c, &r);
    }
    fd_new(&c, k, "layernorm", 4 * 9);
    c.d[0] = 4; c.d[1] = 9; c.f = 1e-5f;
    fd_input(&c, &r, "x", 36, 0.5f, 1); fd_input(&c, &r, "w", 9, 1, 0.5f); fd_input(&c, &r, "b", 9, 0, 0.5f);
    c.aux[0] = zeros(4); c.aux[1] = zeros(4);
    c.fwd = fd_layernorm_f; c.bwd = fd_layernorm_b;
    fd_run(s, &c, &r);

    fd_new(&c, k, "rmsnorm", 3 * 10);
    c.d[0] = 3; c.d[1] = 10; c.f = 1e-6f;
    fd_input(&c, &r, "x", 30, 0.3f, 1); fd_input(&c, &r, "w", 10, 1, 0.5f);
    c.aux[0] = zeros(3);
    c.fwd = fd_rmsnorm_f; c.bwd = fd_rmsnorm_b;
    fd_run(s, &c, &r);

    for (i = 0; i < 2; i++) {
        fd_new(&c, k, i ? "gelu(tanh)" : "gelu(erf)", 40);
        c.d[0] = i;
        fd_input(&c, &r, "x", 40, 0, 2);
        c.fwd = fd_gelu_f; c.bwd = fd_gelu_b;
        fd_run(s, &c, &r);
    }
    fd_new(&c, k, "silu", 40);
    fd_input(&c, &r, "x", 40, 0, 2);
    c.fwd = fd_silu_f; c.bwd = fd_silu_b;
    fd_run(s, &c, &r);

    fd_new(&c, k, "softmax", 3 * 7);
    c.d[0] = 3; c.d[1] = 7;
    fd_input(&c, &r, "x", 21, 0, 2);
    c.fwd = fd_softmax_f; c.bwd = fd_softmax_b;
    fd_run(s, &c, &r);

    fd_new(&c, k, "attention(bias,mask)", 2 * 4 * 8);
    c.d[0] = 2; c.d[1] = 4; c.d[2] = 5; c.d[3] = 8; c.d[4] = 2;
    fd_input(&c, &r, "q", 2 * 4 * 8, 0, 1); fd_input(&c, &r, "key", 2 * 5 * 8, 0, 1);
    fd_input(&c, &r, "v", 2 * 5 * 8, 0, 1); fd_input(&c, &r, "bias", 2 * 4 * 5, 0, 1);
    c.mask = (unsigned char *)calloc(10, 1);
    for (i = 0; i < 10; i++) c.mask[i] = (unsigned char)(i != 2 && i != 8);   /* one key masked per batch */
    { textok_attention_dims d = fd_att(&c); c.aux[0] = zeros(2 * 2 * 4); c.aux[1] = zeros(textok_attention_work_floats(&d)); }
    c.fwd = fd_attention_f; c.bwd = fd_attention_b;
    fd_run(s, &c, &r);

    fd_new(&c, k, "add", 30);
    fd_input(&c, &r, "a", 30, 0, 1); fd_input(&c, &r, "b", 30, 0, 1);
    c.fwd = fd_add_f; c.bwd = fd_add_b;
    fd_run(s, &c, &r);

    fd_new(&c, k, "modulate", 2 * 3 * 5);
    c.d[0] = 2; c.d[1] = 3; c.d[2] = 5;
    fd_input(&c, &r, "x", 30, 0, 1); fd_input(&c, &r, "shift", 10, 0, 1); fd_input(&c, &r, "scale", 10, 0, 0.5f);
    c.fwd = fd_modulate_f; c.bwd = fd_modulate_b;
    fd_run(s, &c, &r);

    fd_new(&c, k, "gate", 2 * 3 * 5);
    c.d[0] = 2; c.d[1] = 3; c.d[2] = 5;
    fd_input(&c, &r, "resid", 30, 0, 1); fd_input(&c, &r, "x", 30, 0, 1); fd_input(&c, &r, "gate", 10, 0, 1);
    c.fwd = fd_gate_f; c.bwd = fd_gate_b;
    fd_run(s, &c, &r);

    for (i = 0; i < 2; i++) {   /* 3x3 pad 1, and the 4x4 stride-2 blur shape */
        static const int cv[2][9] = { { 1, 2, 5, 4, 3, 3, 3, 1, 1 }, { 2, 2, 6, 5, 2, 4, 4, 2, 1 } };
        textok_conv2d_dims d;
        memset(&c, 0, sizeof c);
        memcpy(c.d, cv[i], sizeof cv[i]);
        d = fd_conv(&c);
        fd_new(&c, k, i ? "conv2d(k4 s2)" : "conv2d(k3 p1)", (size_t)d.B * d.OC * textok_conv2d_out_h(&d) * textok_conv2d_out_w(&d));
        memcpy(c.d, cv[i], sizeof cv[i]);
        fd_input(&c, &r, "x", (size_t)d.B * d.C * d.H * d.W, 0, 1);
        fd_input(&c, &r, "w", (size_t)d.OC * d.C * d.KH * d.KW, 0, 0.5f);
        fd_input(&c, &r, "bias", (size_t)d.OC, 0, 1);
        c.aux[0] = zeros(textok_conv2d_work_floats(&d));
        c.fwd = fd_conv_f; c.bwd = fd_conv_b;
        fd_run(s, &c, &r);
    }

    fd_new(&c, k, "groupnorm", 2 * 6 * 4);
    c.d[0] = 2; c.d[1] = 6; c.d[2] = 4; c.d[3] = 3; c.f = 1e-6f;
    fd_input(&c, &r, "x", 48, 1, 2); fd_input(&c, &r, "w", 6, 1, 0.5f); fd_input(&c, &r, "b", 6, 0, 0.5f);
    c.aux[0] = zeros(6); c.aux[1] = zeros(6);
    c.fwd = fd_groupnorm_f; c.bwd = fd_groupnorm_b;
    fd_run(s, &c, &r);

    fd_new(&c, k, "upsample", 2 * 3 * 2 * 4);
    c.d[0] = 2; c.d[1] = 3; c.d[2] = 2; c.d[3] = 2;
    fd_input(&c, &r, "x", 12, 0, 1);
    c.fwd = fd_upsample_f; c.bwd = fd_upsample_b;
    fd_run(s, &c, &r);

    fd_new(&c, k, "cross_entropy(ls=0.1)", 5);
    c.d[0] = 5; c.d[1] = 7; c.f = 0.1f;
    fd_input(&c, &r, "logits", 35, 0, 2);
    c.aux[0] = zeros(35);
    c.aux[1] = zeros(5);
    { int32_t t[5] = { 3, 0, -1, 6, 2 }; memcpy(c.aux[1], t, sizeof t); }   /* one ignored row */
    c.fwd = fd_ce_f; c.bwd = fd_ce_b;
    fd_run(s, &c, &r);

    fd_new(&c, k, "tanh", 40);
    fd_input(&c, &r, "x", 40, 0, 1.5f);
    c.missing = !k->tanh_forward || !k->tanh_backward;
    c.fwd = fd_tanh_f; c.bwd = fd_tanh_b;
    fd_run(s, &c, &r);

    fd_new(&c, k, "transpose", 2 * 3 * 4);
    c.d[0] = 2; c.d[1] = 3; c.d[2] = 4;
    fd_input(&c, &r, "x", 24, 0, 1);
    c.missing = !k->transpose_forward || !k->transpose_backward;
    c.fwd = fd_transpose_f; c.bwd = fd_transpose_b;
    fd_run(s, &c, &r);

    /* rows of norm O(1), far from eps: the eps branch (|x| < eps) is the golden test's */
    fd_new(&c, k, "l2norm", 3 * 5);
    c.d[0] = 3; c.d[1] = 5; c.f = 1e-12f;
    fd_input(&c, &r, "x", 15, 0.2f, 1);
    c.missing = !k->l2norm_forward || !k->l2norm_backward;
    c.fwd = fd_l2norm_f; c.bwd = fd_l2norm_b;
    fd_run(s, &c, &r);

    fd_new(&c, k, "embedding", 6 * 4);
    c.d[0] = 6; c.d[1] = 4;
    fd_input(&c, &r, "table", 5 * 4, 0, 1);
    c.aux[0] = zeros(6);
    { int32_t ids[6] = { 1, 3, 1, 0, 3, 1 }; memcpy(c.aux[0], ids, sizeof ids); }   /* repeats; rows 2, 4 unused */
    c.missing = !k->embedding_forward || !k->embedding_backward;
    c.fwd = fd_embedding_f; c.bwd = fd_embedding_b;
    fd_run(s, &c, &r);

    fd_new(&c, k, "unpatchify", 2 * 3 * 4 * 6);
    c.d[0] = 2; c.d[1] = 3; c.d[2] = 4; c.d[3] = 6; c.d[4] = 2;
    fd_input(&c, &r, "x", 2 * 6 * 12, 0, 1);
    c.missing = !k->unpatchify_forward || !k->unpatchify_backward;
    c.fwd = fd_unpatchify_f; c.bwd = fd_unpatchify_b;
    fd_run(s, &c, &r);

    /* logvar N(0, 1.5), except every 8th at -36, deep below the clamp (gradient 0 on both
       sides): no point within h of -30 or 20, where the central difference straddles the kink */
    fd_new(&c, k, "gaussian_sample", 30);
    fd_input(&c, &r, "mean", 30, 0, 1); fd_input(&c, &r, "logvar", 30, 0, 1.5f);
    for (i = 0; i < 30; i += 8) c.in[1][i] = -36.0f;
    c.aux[0] = zeros(30);
    textok_rng_fill_normal(&r, c.aux[0], 30, 0.0f, 1.0f);
    c.missing = !k->gaussian_sample_forward || !k->gaussian_sample_backward;
    c.fwd = fd_gauss_f; c.bwd = fd_gauss_b;
    fd_run(s, &c, &r);

    /* leaky ReLU is linear on each side of 0: inputs are kept >= 0.05 = 5h away from the kink */
    for (i = 0; i < 2; i++) {
        int j;
        fd_new(&c, k, i ? "leaky_relu(slope 0)" : "leaky_relu(slope 0.1)", 40);
        c.f = i ? 0.0f : 0.1f;
        fd_input(&c, &r, "x", 40, 0, 1);
        for (j = 0; j < 40; j++) c.in[0][j] = c.in[0][j] < 0 ? c.in[0][j] - 0.05f : c.in[0][j] + 0.05f;
        c.missing = !k->leaky_relu_forward || !k->leaky_relu_backward;
        c.fwd = fd_leaky_f; c.bwd = fd_leaky_b;
        fd_run(s, &c, &r);
    }

    /* maxpool with overlapping windows (7x5 -> 3x2): the values are a shuffled grid 0.1 apart,
       so a step of h = 0.01 never changes a window's argmax */
    {
        int j, n = 2 * 7 * 5;
        fd_new(&c, k, "maxpool(7x5->3x2)", 2 * 3 * 2);
        c.d[0] = 2; c.d[1] = 7; c.d[2] = 5; c.d[3] = 3; c.d[4] = 2;
        fd_input(&c, &r, "x", (size_t)n, 0, 1);
        for (j = 0; j < n; j++) c.in[0][j] = 0.1f * (float)j;
        for (j = n - 1; j > 0; j--) {
            int o = (int)(textok_rng_u32(&r) % (uint32_t)(j + 1));
            float t = c.in[0][j]; c.in[0][j] = c.in[0][o]; c.in[0][o] = t;
        }
        c.missing = !k->maxpool_forward || !k->maxpool_backward;
        c.fwd = fd_maxpool_f; c.bwd = fd_maxpool_b;
        fd_run(s, &c, &r);
    }

    /* lpips_layer on positive features (norms away from 0, where it is smooth), w >= 0 */
    {
        int j;
        fd_new(&c, k, "lpips_layer", 2);
        c.d[0] = 2; c.d[1] = 5; c.d[2] = 6;
        fd_input(&c, &r, "f0", 60, 0, 1); fd_input(&c, &r, "f1", 60, 0, 1);
        for (j = 0; j < 60; j++) { c.in[0][j] = fabsf(c.in[0][j]) + 0.1f; c.in[1][j] = fabsf(c.in[1][j]) + 0.1f; }
        c.aux[0] = zeros(5);
        for (j = 0; j < 5; j++) c.aux[0][j] = 0.2f + 0.1f * (float)j;
        c.missing = !k->lpips_layer_forward || !k->lpips_layer_backward;
        c.fwd = fd_lpips_f; c.bwd = fd_lpips_b;
        fd_run(s, &c, &r);
    }

    /* the reconstruction losses (x and y both inputs: d/dy is the same kernel with the
       arguments swapped) and KL; L1 away from its kink (|x - y| >= 0.2 > FD_H) */
    {
        int l1, j;
        for (l1 = 0; l1 < 2; l1++) {
            fd_new(&c, k, l1 ? "diff_loss l1" : "diff_loss l2", 1);
            fd_input(&c, &r, "x", 30, 0, 1); fd_input(&c, &r, "y", 30, 0, 1);
            for (j = 0; j < 30; j++) if (fabsf(c.in[0][j] - c.in[1][j]) < 0.2f) c.in[1][j] = c.in[0][j] + (j & 1 ? 0.3f : -0.3f);
            c.d[0] = l1;
            c.missing = !k->diff_loss_forward || !k->diff_loss_backward;
            c.fwd = fd_diff_f; c.bwd = fd_diff_b;
            fd_run(s, &c, &r);
        }
        fd_new(&c, k, "kl", 1);
        fd_input(&c, &r, "mean", 30, 0, 1); fd_input(&c, &r, "logvar", 30, 0, 2);
        c.missing = !k->kl_forward || !k->kl_backward;
        c.fwd = fd_kl_f; c.bwd = fd_kl_b;
        fd_run(s, &c, &r);
    }
}

/* ----- fast table against the reference ----------------------------------------------------- */
static void cmp_row(const textok_compare_result *r, void *user)
{
    tt_check((tt_stats *)user, r->ok, "compare %-15s %-30s %-6s max_abs=%.2e max_rel=%.2e nmse=%.2e tol=%.0e %s",
             r->kernel, r->shape, r->output, r->max_abs, r->max_rel, r->nmse, r->tol_nmse, r->why);
}
static void cmp_row_failures(const textok_compare_result *r, void *user)   /* prints only what fails */
{
    if (!r->ok) cmp_row(r, user);
}

/* Deliberately wrong kernels: the checker must catch each one. */
static void bad_add_forward(const textok_kernels *k, float *out, const float *a, const float *b, size_t n)
{
    size_t i;
    (void)k;
    for (i = 0; i < n; i++) out[i] = a[i] - b[i];                  /* wrong sign */
}
static void overflowing_add_forward(const textok_kernels *k, float *out, const float *a, const float *b, size_t n)
{
    size_t i;
    (void)k;
    for (i = 0; i <= n; i++) out[i] = (i < n) ? a[i] + b[i] : 0.0f;   /* one past the end: hits the canary */
}
static void nan_silu_forward(const textok_kernels *k, float *out, const float *inp, size_t n)
{
    size_t i;
    (void)k;
    for (i = 0; i < n; i++) out[i] = i == n / 2 ? (float)NAN : inp[i] / (1.0f + expf(-inp[i]));
}

typedef struct { int rows, failed; const char *why; } why_count;
static void count_row(const textok_compare_result *r, void *user)
{
    why_count *w = (why_count *)user;
    w->rows++;
    if (!r->ok && !strcmp(r->why, w->why)) w->failed++;
}

/* ----- the GEMM levels --------------------------------------------------------------------------
   textok_cpu_kernels_simd gives the fast table at every GEMM level this build and CPU have
   (avx512, avx2, blas, portable); textok_cpu_gemm runs that table's GEMM on host arrays. Each
   level is checked against a float64 loop over all four transposes, sizes that are not multiples
   of any block (micro-tile rows/columns, the KC depth, the NC task width), alpha != 1, beta 0
   over a C full of NaN (BLAS: never read), beta 1 and 0.5, and leading dims wider than the
   matrices (the gap columns of C must stay untouched). Then 1 and 2 threads must agree bit for
   bit, and the whole table passes textok_kernels_compare at that level. */
static float gemm_rand(unsigned *st)
{
    *st = *st * 1664525u + 1013904223u;
    return (float)((*st >> 8) & 0xFFFF) / 32768.0f - 1.0f;
}

static int gemm_case(tt_stats *s, const textok_kernels *k, int ta, int tb, int M, int N, int K,
                     float alpha, float beta, double *worst)
{
    int lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 5, ldc = N + 7, i, j, p, ok = 1;
    size_t na = (size_t)(ta ? K : M) * lda, nb = (size_t)(tb ? N : K) * ldb, nc = (size_t)M * ldc;
    float *A = (float *)malloc(na * sizeof(float)), *B = (float *)malloc(nb * sizeof(float));
    float *C = (float *)malloc(nc * sizeof(float)), *C0 = (float *)malloc(nc * sizeof(float));
    double se = 0.0, sr = 0.0;
    unsigned st = (unsigned)(M * 7919 + N * 104729 + K * 13 + ta * 2 + tb);
    (void)s;
    for (i = 0; i < (int)na; i++) A[i] = gemm_rand(&st);
    for (i = 0; i < (int)nb; i++) B[i] = gemm_rand(&st);
    for (i = 0; i < (int)nc; i++) C0[i] = (i % ldc) >= N ? 1234.5f : beta == 0.0f ? (float)NAN : gemm_rand(&st);
    memcpy(C, C0, nc * sizeof(float));
    textok_cpu_gemm(k, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    for (i = 0; i < M; i++)
        for (j = 0; j < ldc; j++) {
            double acc = 0.0, d;
            if (j >= N) { if (C[(size_t)i * ldc + j] != 1234.5f) ok = 0; continue; }   /* the gap */
            for (p = 0; p < K; p++)
                acc += (double)(ta ? A[(size_t)p * lda + i] : A[(size_t)i * lda + p]) *
                       (double)(tb ? B[(size_t)j * ldb + p] : B[(size_t)p * ldb + j]);
            acc *= alpha;
            if (beta != 0.0f) acc += (double)beta * C0[(size_t)i * ldc + j];
            d = C[(size_t)i * ldc + j] - acc;
            if (!(d == d)) ok = 0;   /* NaN: beta 0 read C */
            se += d * d;
            sr += acc * acc;
        }
    if (sr > 0.0 && sqrt(se / sr) > *worst) *worst = sqrt(se / sr);
    if (!(sqrt(se / (sr > 0.0 ? sr : 1.0)) <= GOLD_TOL)) ok = 0;
    free(A); free(B); free(C); free(C0);
    return ok;
}

static void gemm_levels(tt_stats *s)
{
    static const char *const levels[] = { "avx512", "avx2", "blas", "portable" };
    static const int shapes[][3] = {   /* M, N, K */
        { 1, 1, 1 }, { 3, 5, 2 }, { 13, 31, 17 }, { 14, 32, 16 }, { 15, 33, 255 }, { 6, 16, 256 },
        { 29, 65, 257 }, { 43, 200, 300 }, { 100, 193, 513 }, { 7, 385, 64 }, { 321, 70, 40 }
    };
    static const float ab[][2] = { { 1.0f, 0.0f }, { -0.75f, 1.0f }, { 1.5f, 0.5f } };
    char want[32];
    int l;
    for (l = 0; l < 4; l++) {
        textok_kernels k = textok_cpu_kernels_simd(1, levels[l]), k2 = textok_cpu_kernels_simd(2, levels[l]);
        textok_kernels ref = textok_cpu_ref_kernels();
        int t, sh, c, ok, fails;
        double worst;
        snprintf(want, sizeof want, "cpu-%s", levels[l]);
        if (strcmp(k.name, want)) {
            printf("SKIP gemm level %s: not in this build or CPU (the table falls back to %s)\n", levels[l], k.name);
            continue;
        }
        for (t = 0; t < 4; t++) {
            ok = 1; worst = 0.0;
            for (sh = 0; sh < (int)(sizeof shapes / sizeof shapes[0]); sh++)
                for (c = 0; c < 3; c++)
                    ok &= gemm_case(s, &k, t >> 1, t & 1, shapes[sh][0], shapes[sh][1], shapes[sh][2], ab[c][0], ab[c][1], &worst);
            tt_check(s, ok, "gemm %-8s op(A)=%s op(B)=%s: %d shapes x 3 (alpha, beta), worst rel_l2 %.2e, gaps untouched, no NaN",
                     levels[l], t >> 1 ? "A^T" : "A  ", t & 1 ? "B^T" : "B  ", (int)(sizeof shapes / sizeof shapes[0]), worst);
        }
        {   /* 1 and 2 threads, bit for bit (BLAS picks its own order: not required of it) */
            int M = 333, N = 450, K = 700;
            float *A = (float *)malloc((size_t)M * K * sizeof(float)), *B = (float *)malloc((size_t)K * N * sizeof(float));
            float *C1 = (float *)malloc((size_t)M * N * sizeof(float)), *C2 = (float *)malloc((size_t)M * N * sizeof(float));
            unsigned st = 5;
            for (t = 0; t < M * K; t++) A[t] = gemm_rand(&st);
            for (t = 0; t < K * N; t++) B[t] = gemm_rand(&st);
            textok_cpu_gemm(&k, 0, 1, M, N, K, 0.5f, A, K, B, K, 0.0f, C1, N);
            textok_cpu_gemm(&k2, 0, 1, M, N, K, 0.5f, A, K, B, K, 0.0f, C2, N);
            if (l != 2) tt_check(s, !memcmp(C1, C2, (size_t)M * N * sizeof(float)), "gemm %-8s 1 and 2 threads give the same bits (%dx%dx%d)", levels[l], M, N, K);
            free(A); free(B); free(C1); free(C2);
        }
        fails = textok_kernels_compare(&ref, &k2, 1234, cmp_row_failures, s);
        tt_check(s, fails == 0, "compare: table %s (2 threads) against the reference: %d failing rows", k2.name, fails);
    }
}

void test_kernels_compare(tt_stats *s)
{
    textok_kernels ref = textok_cpu_ref_kernels(), fast = textok_cpu_kernels(0), t;
    int fails = textok_kernels_compare(&ref, &fast, 1234, cmp_row, s);
    why_count w;
    tt_check(s, fails == 0, "compare: fast CPU table (%d threads) against the reference: %d failing rows", fast.n_threads, fails);

    t = ref; t.name = "wrong-sign add"; t.add_forward = bad_add_forward;
    memset(&w, 0, sizeof w); w.why = "tolerance";
    fails = textok_kernels_compare(&ref, &t, 1, count_row, &w);
    tt_check(s, fails > 0 && w.failed == fails, "compare catches a wrong kernel: %d rows fail on tolerance", w.failed);

    t = ref; t.name = "overflowing add"; t.add_forward = overflowing_add_forward;
    memset(&w, 0, sizeof w); w.why = "canary";
    fails = textok_kernels_compare(&ref, &t, 1, count_row, &w);
    tt_check(s, fails > 0 && w.failed == fails, "compare catches a write past the end: %d rows fail on the canary", w.failed);

    t = ref; t.name = "nan silu"; t.silu_forward = nan_silu_forward;
    memset(&w, 0, sizeof w); w.why = "NaN";
    fails = textok_kernels_compare(&ref, &t, 1, count_row, &w);
    tt_check(s, fails > 0 && w.failed == fails, "compare catches a NaN: %d rows fail on NaN", w.failed);

    t = ref; t.name = "partial"; t.softmax_forward = NULL; t.conv2d_backward = NULL;
    memset(&w, 0, sizeof w); w.why = "";
    fails = textok_kernels_compare(&ref, &t, 1, count_row, &w);
    {
        why_count all;
        memset(&all, 0, sizeof all); all.why = "";
        textok_kernels_compare(&ref, &ref, 1, count_row, &all);
        tt_check(s, fails == 0 && w.rows > 0 && w.rows < all.rows,
                 "compare skips kernels a table lacks (NULL): %d of %d rows run, %d fail", w.rows, all.rows, fails);
    }
    gemm_levels(s);
}
