/* ---------------------------------------------------------------------------------------------
   4. GEMM. Every matrix product in the library goes through textok__gemm, which is
      C (M,N) = alpha * op(A) (M,K) . op(B) (K,N) + beta * C,   all row-major with leading dims,
   with op(X) = X or X^T (BLAS semantics, row-major). Two versions behind it:
     - the reference is not here: it is matmul_forward_ref (the triple loop, summing in double).
     - textok__gemm_blocked: cache-blocked, B packed into a tile, vectorisable inner loop; used when
                             the library is built without BLAS. Threads over blocks of C, so each
                             element of C is summed by one thread in a fixed order (deterministic).
     - cblas_sgemm:          under TEXTOK_USE_BLAS.
   beta == 0 never reads C (it may hold garbage or NaN), as in BLAS. */

/* OpenMP through _Pragma, so that a build without OpenMP sees no pragma at all (no
   -Wunknown-pragmas) and the loop simply runs on one thread. TEXTOK__PARALLEL_FOR(k, cond) goes
   right before a for loop: threads from the table, and only when cond says the loop is big
   enough to pay for waking them. */
#define TEXTOK__PRAGMA(x) _Pragma(#x)
#ifdef _OPENMP
#define TEXTOK__OMP(x) TEXTOK__PRAGMA(x)
#define TEXTOK__PARALLEL_FOR(k, cond) TEXTOK__PRAGMA(omp parallel for num_threads(textok__nt(k)) if (cond))
#else
#define TEXTOK__OMP(x)
#define TEXTOK__PARALLEL_FOR(k, cond) (void)textok__nt(k);
#endif
static int textok__nt(const textok_kernels *k) { return k->n_threads > 0 ? k->n_threads : 1; }

#ifndef TEXTOK_USE_BLAS
#define TEXTOK__GEMM_MB 32   /* rows of C per task */
#define TEXTOK__GEMM_NB 128  /* columns of C per task (tile width) */
#define TEXTOK__GEMM_KB 128  /* depth of the packed B tile: KB*NB floats = 64 KiB on the stack */

static void textok__gemm_blocked(int ta, int tb, int M, int N, int K, float alpha,
                                 const float *A, int lda, const float *B, int ldb,
                                 float beta, float *C, int ldc, int n_threads)
{
    int mblocks = (M + TEXTOK__GEMM_MB - 1) / TEXTOK__GEMM_MB;
    int nblocks = (N + TEXTOK__GEMM_NB - 1) / TEXTOK__GEMM_NB;
    int task, ntasks = mblocks * nblocks;
    (void)n_threads;
TEXTOK__OMP(omp parallel for schedule(dynamic, 1) num_threads(n_threads) if (ntasks > 1 && (double)M * N * K > 1e5))
    for (task = 0; task < ntasks; task++) {
        float tile[TEXTOK__GEMM_KB * TEXTOK__GEMM_NB];   /* op(B)[k0:k1, j0:j1], row-major */
        int i0 = (task / nblocks) * TEXTOK__GEMM_MB, j0 = (task % nblocks) * TEXTOK__GEMM_NB;
        int i1 = i0 + TEXTOK__GEMM_MB < M ? i0 + TEXTOK__GEMM_MB : M;
        int j1 = j0 + TEXTOK__GEMM_NB < N ? j0 + TEXTOK__GEMM_NB : N;
        int nj = j1 - j0, i, j, p, k0;
        for (i = i0; i < i1; i++) {
            float *c = C + (size_t)i * ldc;
            for (j = j0; j < j1; j++) c[j] = beta == 0.0f ? 0.0f : beta * c[j];
        }
        for (k0 = 0; k0 < K; k0 += TEXTOK__GEMM_KB) {
            int k1 = k0 + TEXTOK__GEMM_KB < K ? k0 + TEXTOK__GEMM_KB : K;
            for (p = k0; p < k1; p++) {
                float *t = tile + (size_t)(p - k0) * nj;
                if (tb) for (j = 0; j < nj; j++) t[j] = B[(size_t)(j0 + j) * ldb + p];
                else    memcpy(t, B + (size_t)p * ldb + j0, (size_t)nj * sizeof(float));
            }
            for (i = i0; i < i1; i++) {
                float *c = C + (size_t)i * ldc + j0;
                for (p = k0; p < k1; p++) {
                    const float a = alpha * (ta ? A[(size_t)p * lda + i] : A[(size_t)i * lda + p]);
                    const float *t = tile + (size_t)(p - k0) * nj;
                    for (j = 0; j < nj; j++) c[j] += a * t[j];
                }
            }
        }
    }
}

#endif /* !TEXTOK_USE_BLAS */

/* The GEMM the fast kernels use. Must not be called from inside an OpenMP parallel region. */
static void textok__gemm(const textok_kernels *k, int ta, int tb, int M, int N, int K, float alpha,
                         const float *A, int lda, const float *B, int ldb,
                         float beta, float *C, int ldc)
{
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {   /* nothing to multiply: C = beta * C */
        int i, j;
        for (i = 0; i < M; i++)
            for (j = 0; j < N; j++)
                C[(size_t)i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[(size_t)i * ldc + j];
        return;
    }
#ifdef _OPENMP
    TEXTOK_ASSERT(!omp_in_parallel());
#endif
#ifdef TEXTOK_USE_BLAS
    (void)k;
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
#else
    textok__gemm_blocked(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, k->n_threads);
#endif
}

/* ---------------------------------------------------------------------------------------------
   5. Kernels. For each op: the naive reference (suffix _ref: plain loops, one thread, sums in
   double) and the fast version beside it (no suffix: GEMM, threads). Where an op is a single
   pass over memory there is nothing to make fast beyond threads, and the one function serves
   both tables (said at the spot). Dims letters: see the top of the file. */


/* ----- matmul ------------------------------------------------------------------------------- */
/* out[b] (M,N) = op(a[b]) . op(b[b]) + bias. Index helpers for the reference: */
/* offset of op(A)[i][p] in A and of op(B)[p][j] in B */
#define TEXTOK__AI(d, i, p) ((d)->trans_a ? (size_t)(p) * (d)->M + (i) : (size_t)(i) * (d)->K + (p))
#define TEXTOK__BI(d, p, j) ((d)->trans_b ? (size_t)(j) * (d)->K + (p) : (size_t)(p) * (d)->N + (j))

static void textok__matmul_forward_ref(const textok_kernels *k, float *out, const float *a,
                                       const float *b, const float *bias, const textok_matmul_dims *d)
{
    size_t sa = (size_t)d->M * d->K, sb = (size_t)d->K * d->N, so = (size_t)d->M * d->N;
    int bt, i, j, p;
    (void)k;
    for (bt = 0; bt < d->batch; bt++) {
        const float *a_b = a + bt * sa, *b_b = b + bt * sb;
        float *out_b = out + bt * so;
        for (i = 0; i < d->M; i++)
            for (j = 0; j < d->N; j++) {
                double acc = bias ? bias[j] : 0.0;
                for (p = 0; p < d->K; p++) acc += (double)a_b[TEXTOK__AI(d, i, p)] * b_b[TEXTOK__BI(d, p, j)];
                out_b[(size_t)i * d->N + j] = (float)acc;
            }
    }
}

static void textok__matmul_forward(const textok_kernels *k, float *out, const float *a,
                                   const float *b, const float *bias, const textok_matmul_dims *d)
{
    size_t sa = (size_t)d->M * d->K, sb = (size_t)d->K * d->N, so = (size_t)d->M * d->N;
    int bt, i;
    int lda = d->trans_a ? d->M : d->K, ldb = d->trans_b ? d->K : d->N;
    for (bt = 0; bt < d->batch; bt++) {
        float *out_b = out + bt * so;
        if (bias) for (i = 0; i < d->M; i++) memcpy(out_b + (size_t)i * d->N, bias, (size_t)d->N * sizeof(float));
        textok__gemm(k, d->trans_a, d->trans_b, d->M, d->N, d->K, 1.0f, a + bt * sa, lda,
                     b + bt * sb, ldb, bias ? 1.0f : 0.0f, out_b, d->N);
    }
}

/* dop(A) = dout . op(B)^T,  dop(B) = op(A)^T . dout,  dbias = sum of dout over batch and rows */
static void textok__matmul_backward_ref(const textok_kernels *k, float *da, float *db, float *dbias,
                                        const float *dout, const float *a, const float *b,
                                        const textok_matmul_dims *d)
{
    size_t sa = (size_t)d->M * d->K, sb = (size_t)d->K * d->N, so = (size_t)d->M * d->N;
    int bt, i, j, p;
    (void)k;
    for (bt = 0; bt < d->batch; bt++) {
        const float *a_b = a + bt * sa, *b_b = b + bt * sb, *dout_b = dout + bt * so;
        if (da) {
            float *da_b = da + bt * sa;
            for (i = 0; i < d->M; i++)
                for (p = 0; p < d->K; p++) {
                    double acc = 0.0;
                    for (j = 0; j < d->N; j++) acc += (double)dout_b[(size_t)i * d->N + j] * b_b[TEXTOK__BI(d, p, j)];
                    da_b[TEXTOK__AI(d, i, p)] += (float)acc;
                }
        }
        if (db) {
            float *db_b = db + bt * sb;
            for (p = 0; p < d->K; p++)
                for (j = 0; j < d->N; j++) {
                    double acc = 0.0;
                    for (i = 0; i < d->M; i++) acc += (double)a_b[TEXTOK__AI(d, i, p)] * dout_b[(size_t)i * d->N + j];
                    db_b[TEXTOK__BI(d, p, j)] += (float)acc;
                }
        }
    }
    if (dbias)
        for (j = 0; j < d->N; j++) {
            double acc = 0.0;
            for (bt = 0; bt < d->batch; bt++)
                for (i = 0; i < d->M; i++) acc += dout[bt * so + (size_t)i * d->N + j];
            dbias[j] += (float)acc;
        }
}

/* Sum the rows of x (rows, cols) into acc (cols), accumulating. Threads over column chunks so
   that each output is summed by one thread, rows in order: deterministic for any thread count. */
static void textok__sum_rows(const textok_kernels *k, float *acc, const float *x, size_t rows, int cols)
{
    int c0;
TEXTOK__PARALLEL_FOR(k, rows * (size_t)cols > 65536)
    for (c0 = 0; c0 < cols; c0 += 64) {
        double s[64];
        int c1 = c0 + 64 < cols ? c0 + 64 : cols, c;
        size_t r;
        for (c = c0; c < c1; c++) s[c - c0] = 0.0;
        for (r = 0; r < rows; r++) {
            const float *xr = x + r * cols;
            for (c = c0; c < c1; c++) s[c - c0] += xr[c];
        }
        for (c = c0; c < c1; c++) acc[c] += (float)s[c - c0];
    }
}

static void textok__matmul_backward(const textok_kernels *k, float *da, float *db, float *dbias,
                                    const float *dout, const float *a, const float *b,
                                    const textok_matmul_dims *d)
{
    size_t sa = (size_t)d->M * d->K, sb = (size_t)d->K * d->N, so = (size_t)d->M * d->N;
    int bt, M = d->M, N = d->N, K = d->K, ta = d->trans_a, tb = d->trans_b;
    int lda = ta ? M : K, ldb = tb ? K : N;
    for (bt = 0; bt < d->batch; bt++) {
        const float *a_b = a + bt * sa, *b_b = b + bt * sb, *dout_b = dout + bt * so;
        if (da) {
            if (!ta) textok__gemm(k, 0, !tb, M, K, N, 1.0f, dout_b, N, b_b, ldb, 1.0f, da + bt * sa, K);   /* (M,K) */
            else     textok__gemm(k, tb, 1, K, M, N, 1.0f, b_b, ldb, dout_b, N, 1.0f, da + bt * sa, M);    /* (K,M) */
        }
        if (db) {
            if (!tb) textok__gemm(k, !ta, 0, K, N, M, 1.0f, a_b, lda, dout_b, N, 1.0f, db + bt * sb, N);   /* (K,N) */
            else     textok__gemm(k, 1, ta, N, K, M, 1.0f, dout_b, N, a_b, lda, 1.0f, db + bt * sb, K);    /* (N,K) */
        }
    }
    if (dbias) textok__sum_rows(k, dbias, dout, (size_t)d->batch * M, N);
}

/* ----- layernorm ---------------------------------------------------------------------------- */
/* out = (x - mean) * rstd * weight + bias over the last dim; rstd = 1/sqrt(biased var + eps).
   The same code serves both tables: one pass per row, rows in parallel (the reference runs it
   with one thread). Statistics in double: matches PyTorch to ~1e-7 even for large means. */
static void textok__layernorm_forward(const textok_kernels *k, float *out, float *mean, float *rstd,
                                      const float *inp, const float *weight, const float *bias,
                                      int N, int C, float eps)
{
    int n;
TEXTOK__PARALLEL_FOR(k, (size_t)N * C > 16384)
    for (n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        float *o = out + (size_t)n * C;
        double m = 0.0, v = 0.0;
        float mf, sf;
        int c;
        for (c = 0; c < C; c++) m += x[c];
        m /= C;
        for (c = 0; c < C; c++) v += (x[c] - m) * (x[c] - m);
        v /= C;
        mf = (float)m;
        sf = (float)(1.0 / sqrt(v + eps));
        for (c = 0; c < C; c++) {
            float y = (x[c] - mf) * sf;
            o[c] = weight ? y * weight[c] + (bias ? bias[c] : 0.0f) : y;
        }
        if (mean) mean[n] = mf;
        if (rstd) rstd[n] = sf;
    }
}

/* dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) with g = dout * weight;
   dweight += sum_n dout * xhat; dbias += sum_n dout. */
static void textok__layernorm_backward(const textok_kernels *k, float *dinp, float *dweight,
                                       float *dbias, const float *dout, const float *inp,
                                       const float *weight, const float *mean, const float *rstd,
                                       int N, int C)
{
    int n, c0;
    if (dinp) {
TEXTOK__PARALLEL_FOR(k, (size_t)N * C > 16384)
        for (n = 0; n < N; n++) {
            const float *x = inp + (size_t)n * C, *dy = dout + (size_t)n * C;
            float *dx = dinp + (size_t)n * C;
            double sg = 0.0, sgx = 0.0, mg, mgx;
            int c;
            for (c = 0; c < C; c++) {
                double g = (double)dy[c] * (weight ? weight[c] : 1.0f);
                sg += g;
                sgx += g * ((x[c] - mean[n]) * rstd[n]);
            }
            mg = sg / C;
            mgx = sgx / C;
            for (c = 0; c < C; c++) {
                double g = (double)dy[c] * (weight ? weight[c] : 1.0f);
                double xhat = (x[c] - mean[n]) * rstd[n];
                dx[c] += (float)(rstd[n] * (g - mg - xhat * mgx));
            }
        }
    }
    if (!dweight && !dbias) return;
TEXTOK__PARALLEL_FOR(k, (size_t)N * C > 16384)
    for (c0 = 0; c0 < C; c0 += 64) {
        double sw[64], sb[64];
        int c1 = c0 + 64 < C ? c0 + 64 : C, c, r;
        for (c = c0; c < c1; c++) sw[c - c0] = sb[c - c0] = 0.0;
        for (r = 0; r < N; r++) {
            const float *x = inp + (size_t)r * C, *dy = dout + (size_t)r * C;
            for (c = c0; c < c1; c++) {
                sw[c - c0] += (double)dy[c] * ((x[c] - mean[r]) * rstd[r]);
                sb[c - c0] += dy[c];
            }
        }
        for (c = c0; c < c1; c++) {
            if (dweight) dweight[c] += (float)sw[c - c0];
            if (dbias) dbias[c] += (float)sb[c - c0];
        }
    }
}

/* ----- RMSNorm (T5) ------------------------------------------------------------------------- */
/* out = x * rstd * weight, rstd = 1/sqrt(mean(x^2) + eps). One function for both tables. */
static void textok__rmsnorm_forward(const textok_kernels *k, float *out, float *rstd, const float *inp,
                                    const float *weight, int N, int C, float eps)
{
    int n;
TEXTOK__PARALLEL_FOR(k, (size_t)N * C > 16384)
    for (n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        float *o = out + (size_t)n * C;
        double ss = 0.0;
        float r;
        int c;
        for (c = 0; c < C; c++) ss += (double)x[c] * x[c];
        r = (float)(1.0 / sqrt(ss / C + eps));
        for (c = 0; c < C; c++) o[c] = x[c] * r * (weight ? weight[c] : 1.0f);
        if (rstd) rstd[n] = r;
    }
}

/* dx = rstd * (g - x * rstd^2 * mean(g * x)) with g = dout * weight; dweight += sum dout*x*rstd */
static void textok__rmsnorm_backward(const textok_kernels *k, float *dinp, float *dweight,
                                     const float *dout, const float *inp, const float *weight,
                                     const float *rstd, int N, int C)
{
    int n, c0;
    if (dinp) {
TEXTOK__PARALLEL_FOR(k, (size_t)N * C > 16384)
        for (n = 0; n < N; n++) {
            const float *x = inp + (size_t)n * C, *dy = dout + (size_t)n * C;
            float *dx = dinp + (size_t)n * C;
            double sgx = 0.0, r = rstd[n], coef;
            int c;
            for (c = 0; c < C; c++) sgx += (double)dy[c] * (weight ? weight[c] : 1.0f) * x[c];
            coef = r * r * sgx / C;
            for (c = 0; c < C; c++) {
                double g = (double)dy[c] * (weight ? weight[c] : 1.0f);
                dx[c] += (float)(r * (g - x[c] * coef));
            }
        }
    }
    if (!dweight) return;
TEXTOK__PARALLEL_FOR(k, (size_t)N * C > 16384)
    for (c0 = 0; c0 < C; c0 += 64) {
        double sw[64];
        int c1 = c0 + 64 < C ? c0 + 64 : C, c, r;
        for (c = c0; c < c1; c++) sw[c - c0] = 0.0;
        for (r = 0; r < N; r++) {
            const float *x = inp + (size_t)r * C, *dy = dout + (size_t)r * C;
            for (c = c0; c < c1; c++) sw[c - c0] += (double)dy[c] * x[c] * rstd[r];
        }
        for (c = c0; c < c1; c++) dweight[c] += (float)sw[c - c0];
    }
}

/* ----- GELU, SiLU --------------------------------------------------------------------------- */
/* Pointwise: one function for both tables. GELU erf: x/2 (1 + erf(x/sqrt2)).
   tanh form: x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). */
#define TEXTOK__SQRT_2_OVER_PI 0.7978845608028654f
#define TEXTOK__INV_SQRT_2     0.7071067811865476f
#define TEXTOK__INV_SQRT_2PI   0.3989422804014327f

static void textok__gelu_forward(const textok_kernels *k, float *out, const float *inp, size_t n,
                                 int approx_tanh)
{
    long i, nn = (long)n;
TEXTOK__PARALLEL_FOR(k, n > 65536)
    for (i = 0; i < nn; i++) {
        float x = inp[i];
        out[i] = approx_tanh
            ? 0.5f * x * (1.0f + tanhf(TEXTOK__SQRT_2_OVER_PI * (x + 0.044715f * x * x * x)))
            : 0.5f * x * (1.0f + erff(x * TEXTOK__INV_SQRT_2));
    }
}

static void textok__gelu_backward(const textok_kernels *k, float *dinp, const float *dout,
                                  const float *inp, size_t n, int approx_tanh)
{
    long i, nn = (long)n;
TEXTOK__PARALLEL_FOR(k, n > 65536)
    for (i = 0; i < nn; i++) {
        float x = inp[i], g;
        if (approx_tanh) {
            float u = TEXTOK__SQRT_2_OVER_PI * (x + 0.044715f * x * x * x);
            float t = tanhf(u);
            g = 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * TEXTOK__SQRT_2_OVER_PI * (1.0f + 3.0f * 0.044715f * x * x);
        } else {
            g = 0.5f * (1.0f + erff(x * TEXTOK__INV_SQRT_2)) + x * TEXTOK__INV_SQRT_2PI * expf(-0.5f * x * x);
        }
        dinp[i] += dout[i] * g;
    }
}

/* SiLU: x * sigmoid(x); derivative s * (1 + x (1 - s)). */
static void textok__silu_forward(const textok_kernels *k, float *out, const float *inp, size_t n)
{
    long i, nn = (long)n;
TEXTOK__PARALLEL_FOR(k, n > 65536)
    for (i = 0; i < nn; i++) out[i] = inp[i] / (1.0f + expf(-inp[i]));
}

static void textok__silu_backward(const textok_kernels *k, float *dinp, const float *dout,
                                  const float *inp, size_t n)
{
    long i, nn = (long)n;
TEXTOK__PARALLEL_FOR(k, n > 65536)
    for (i = 0; i < nn; i++) {
        float s = 1.0f / (1.0f + expf(-inp[i]));
        dinp[i] += dout[i] * s * (1.0f + inp[i] * (1.0f - s));
    }
}

/* ----- softmax ------------------------------------------------------------------------------ */
/* Row softmax, max subtracted (as PyTorch). One function for both tables. */
static void textok__softmax_row(float *o, const float *x, int cols)
{
    float m = -FLT_MAX;
    double s = 0.0;
    int c;
    for (c = 0; c < cols; c++) m = x[c] > m ? x[c] : m;
    for (c = 0; c < cols; c++) { o[c] = expf(x[c] - m); s += o[c]; }
    for (c = 0; c < cols; c++) o[c] = (float)(o[c] / s);
}

static void textok__softmax_forward(const textok_kernels *k, float *out, const float *inp, int rows, int cols)
{
    int r;
TEXTOK__PARALLEL_FOR(k, (size_t)rows * cols > 16384)
    for (r = 0; r < rows; r++) textok__softmax_row(out + (size_t)r * cols, inp + (size_t)r * cols, cols);
}

/* dx = y * (dy - sum(dy * y)) */
static void textok__softmax_backward(const textok_kernels *k, float *dinp, const float *dout,
                                     const float *out, int rows, int cols)
{
    int r;
TEXTOK__PARALLEL_FOR(k, (size_t)rows * cols > 16384)
    for (r = 0; r < rows; r++) {
        const float *y = out + (size_t)r * cols, *dy = dout + (size_t)r * cols;
        float *dx = dinp + (size_t)r * cols;
        double s = 0.0;
        int c;
        for (c = 0; c < cols; c++) s += (double)dy[c] * y[c];
        for (c = 0; c < cols; c++) dx[c] += y[c] * (dy[c] - (float)s);
    }
}

/* ----- multi-head attention ----------------------------------------------------------------- */
/* For each batch b, head h and query i:
     s_j   = scale * q_i . key_j + bias[h,i,j]     over keys j with key_mask[b,j] != 0
     lse_i = log sum_j exp(s_j),  p_j = exp(s_j - lse_i),  out_i = sum_j p_j v_j
   Backward recomputes p from lse (nothing of size Tq x Tk is kept between the passes):
     dv_j += p_j dout_i;  dp_j = dout_i . v_j;  ds_j = p_j (dp_j - dout_i . out_i)
     dq_i += scale sum_j ds_j key_j;  dkey_j += scale ds_j q_i;  dbias[h,i,j] += ds_j
   A query with every key masked has out = 0 and lse = 0, and gets no gradient. */

TEXTOKDEF size_t textok_attention_work_floats(const textok_attention_dims *d)
{
    return 2 * (size_t)d->Tq * (size_t)d->Tk + (size_t)d->Tq;  /* scores, dscores, row sums */
}

static int textok__any_key(const unsigned char *key_mask, int b, int Tk)
{
    int j;
    if (!key_mask) return 1;
    for (j = 0; j < Tk; j++) if (key_mask[(size_t)b * Tk + j]) return 1;
    return 0;
}

/* Reference: one query row at a time, work holds that row's scores (Tk floats). */
static void textok__attention_forward_ref(const textok_kernels *k, float *out, float *lse,
                                          const float *q, const float *key, const float *v,
                                          const float *bias, const unsigned char *key_mask,
                                          const textok_attention_dims *d, float *work)
{
    int B = d->B, Tq = d->Tq, Tk = d->Tk, C = d->C, H = d->H, hd = C / H, b, h, i, j, c;
    (void)k;
    for (b = 0; b < B; b++)
        for (h = 0; h < H; h++)
            for (i = 0; i < Tq; i++) {
                const float *q_i = q + ((size_t)b * Tq + i) * C + h * hd;
                float *o_i = out + ((size_t)b * Tq + i) * C + h * hd;
                double m = -DBL_MAX, s = 0.0;
                for (c = 0; c < hd; c++) o_i[c] = 0.0f;
                lse[((size_t)b * H + h) * Tq + i] = 0.0f;
                if (!textok__any_key(key_mask, b, Tk)) continue;
                for (j = 0; j < Tk; j++) {
                    const float *k_j = key + ((size_t)b * Tk + j) * C + h * hd;
                    double dot = 0.0;
                    if (key_mask && !key_mask[(size_t)b * Tk + j]) continue;
                    for (c = 0; c < hd; c++) dot += (double)q_i[c] * k_j[c];
                    work[j] = (float)(d->scale * dot + (bias ? bias[((size_t)h * Tq + i) * Tk + j] : 0.0f));
                    if (work[j] > m) m = work[j];
                }
                for (j = 0; j < Tk; j++)
                    if (!key_mask || key_mask[(size_t)b * Tk + j]) s += exp(work[j] - m);
                lse[((size_t)b * H + h) * Tq + i] = (float)(m + log(s));
                for (c = 0; c < hd; c++) {
                    double acc = 0.0;
                    for (j = 0; j < Tk; j++)
                        if (!key_mask || key_mask[(size_t)b * Tk + j])
                            acc += exp(work[j] - m) / s * v[((size_t)b * Tk + j) * C + h * hd + c];
                    o_i[c] = (float)acc;
                }
            }
}

static void textok__attention_backward_ref(const textok_kernels *k, float *dq, float *dkey, float *dv,
                                           float *dbias, const float *dout, const float *q,
                                           const float *key, const float *v, const float *bias,
                                           const unsigned char *key_mask, const float *out,
                                           const float *lse, const textok_attention_dims *d, float *work)
{
    int B = d->B, Tq = d->Tq, Tk = d->Tk, C = d->C, H = d->H, hd = C / H, b, h, i, j, c;
    float *p = work, *ds = work + Tk;   /* one row of probabilities and of score gradients */
    (void)k;
    for (b = 0; b < B; b++)
        for (h = 0; h < H; h++)
            for (i = 0; i < Tq; i++) {
                size_t qi = ((size_t)b * Tq + i) * C + h * hd;
                double D = 0.0;
                if (!textok__any_key(key_mask, b, Tk)) continue;
                for (c = 0; c < hd; c++) D += (double)dout[qi + c] * out[qi + c];
                for (j = 0; j < Tk; j++) {
                    size_t kj = ((size_t)b * Tk + j) * C + h * hd;
                    double dot = 0.0, dp = 0.0;
                    p[j] = ds[j] = 0.0f;
                    if (key_mask && !key_mask[(size_t)b * Tk + j]) continue;
                    for (c = 0; c < hd; c++) dot += (double)q[qi + c] * key[kj + c];
                    dot = d->scale * dot + (bias ? bias[((size_t)h * Tq + i) * Tk + j] : 0.0f);
                    p[j] = (float)exp(dot - lse[((size_t)b * H + h) * Tq + i]);
                    for (c = 0; c < hd; c++) dp += (double)dout[qi + c] * v[kj + c];
                    ds[j] = (float)(p[j] * (dp - D));
                }
                for (j = 0; j < Tk; j++) {
                    size_t kj = ((size_t)b * Tk + j) * C + h * hd;
                    if (dbias) dbias[((size_t)h * Tq + i) * Tk + j] += ds[j];
                    for (c = 0; c < hd; c++) {
                        if (dv) dv[kj + c] += p[j] * dout[qi + c];
                        if (dkey) dkey[kj + c] += d->scale * ds[j] * q[qi + c];
                    }
                }
                if (dq)
                    for (c = 0; c < hd; c++) {
                        double acc = 0.0;
                        for (j = 0; j < Tk; j++) acc += (double)ds[j] * key[((size_t)b * Tk + j) * C + h * hd + c];
                        dq[qi + c] += (float)(d->scale * acc);
                    }
            }
}

/* Fast: one (batch, head) at a time, its score block S (Tq,Tk) in work. The products are GEMMs
   on strided head slices (leading dimension C), so no head is ever copied out; the row-wise
   softmax runs in parallel between them. */
static void textok__attention_scores(const textok_kernels *k, float *S, const float *q_bh,
                                     const float *k_bh, const float *bias_h,
                                     const unsigned char *mask_b, const textok_attention_dims *d)
{
    int i, Tq = d->Tq, Tk = d->Tk;
    textok__gemm(k, 0, 1, Tq, Tk, d->C / d->H, d->scale, q_bh, d->C, k_bh, d->C, 0.0f, S, Tk);
    if (!bias_h && !mask_b) return;
TEXTOK__PARALLEL_FOR(k, (size_t)Tq * Tk > 16384)
    for (i = 0; i < Tq; i++) {
        float *s = S + (size_t)i * Tk;
        int j;
        for (j = 0; j < Tk; j++) {
            if (bias_h) s[j] += bias_h[(size_t)i * Tk + j];
            if (mask_b && !mask_b[j]) s[j] = -INFINITY;
        }
    }
}

static void textok__attention_forward(const textok_kernels *k, float *out, float *lse,
                                      const float *q, const float *key, const float *v,
                                      const float *bias, const unsigned char *key_mask,
                                      const textok_attention_dims *d, float *work)
{
    int B = d->B, Tq = d->Tq, Tk = d->Tk, C = d->C, H = d->H, hd = C / H, b, h, i;
    float *S = work;
    for (b = 0; b < B; b++) {
        const unsigned char *mask_b = key_mask ? key_mask + (size_t)b * Tk : NULL;
        int any = textok__any_key(key_mask, b, Tk);
        for (h = 0; h < H; h++) {
            float *out_bh = out + (size_t)b * Tq * C + h * hd, *lse_bh = lse + ((size_t)b * H + h) * Tq;
            if (!any) {
                for (i = 0; i < Tq; i++) { memset(out_bh + (size_t)i * C, 0, (size_t)hd * sizeof(float)); lse_bh[i] = 0.0f; }
                continue;
            }
            textok__attention_scores(k, S, q + (size_t)b * Tq * C + h * hd, key + (size_t)b * Tk * C + h * hd,
                                     bias ? bias + (size_t)h * Tq * Tk : NULL, mask_b, d);
TEXTOK__PARALLEL_FOR(k, (size_t)Tq * Tk > 16384)
            for (i = 0; i < Tq; i++) {
                float *s = S + (size_t)i * Tk, m = -INFINITY;
                double sum = 0.0;
                int j;
                for (j = 0; j < Tk; j++) m = s[j] > m ? s[j] : m;
                for (j = 0; j < Tk; j++) { s[j] = expf(s[j] - m); sum += s[j]; }
                for (j = 0; j < Tk; j++) s[j] = (float)(s[j] / sum);
                lse_bh[i] = m + (float)log(sum);
            }
            textok__gemm(k, 0, 0, Tq, hd, Tk, 1.0f, S, Tk, v + (size_t)b * Tk * C + h * hd, C, 0.0f, out_bh, C);
        }
    }
}

static void textok__attention_backward(const textok_kernels *k, float *dq, float *dkey, float *dv,
                                       float *dbias, const float *dout, const float *q,
                                       const float *key, const float *v, const float *bias,
                                       const unsigned char *key_mask, const float *out,
                                       const float *lse, const textok_attention_dims *d, float *work)
{
    int B = d->B, Tq = d->Tq, Tk = d->Tk, C = d->C, H = d->H, hd = C / H, b, h, i;
    float *P = work, *dS = work + (size_t)Tq * Tk, *D = work + 2 * (size_t)Tq * Tk;
    for (b = 0; b < B; b++) {
        const unsigned char *mask_b = key_mask ? key_mask + (size_t)b * Tk : NULL;
        if (!textok__any_key(key_mask, b, Tk)) continue;
        for (h = 0; h < H; h++) {
            size_t oq = (size_t)b * Tq * C + h * hd, ok = (size_t)b * Tk * C + h * hd;
            const float *lse_bh = lse + ((size_t)b * H + h) * Tq;
            textok__attention_scores(k, P, q + oq, key + ok, bias ? bias + (size_t)h * Tq * Tk : NULL, mask_b, d);
TEXTOK__PARALLEL_FOR(k, (size_t)Tq * Tk > 16384)
            for (i = 0; i < Tq; i++) {
                float *p = P + (size_t)i * Tk;
                const float *dy = dout + oq + (size_t)i * C, *y = out + oq + (size_t)i * C;
                double s = 0.0;
                int j, c;
                for (j = 0; j < Tk; j++) p[j] = expf(p[j] - lse_bh[i]);
                for (c = 0; c < hd; c++) s += (double)dy[c] * y[c];
                D[i] = (float)s;
            }
            if (dv) textok__gemm(k, 1, 0, Tk, hd, Tq, 1.0f, P, Tk, dout + oq, C, 1.0f, dv + ok, C);
            /* dP = dout_h . v_h^T, then dS = P * (dP - D) */
            textok__gemm(k, 0, 1, Tq, Tk, hd, 1.0f, dout + oq, C, v + ok, C, 0.0f, dS, Tk);
TEXTOK__PARALLEL_FOR(k, (size_t)Tq * Tk > 16384)
            for (i = 0; i < Tq; i++) {
                float *ds = dS + (size_t)i * Tk;
                const float *p = P + (size_t)i * Tk;
                int j;
                for (j = 0; j < Tk; j++) ds[j] = p[j] * (ds[j] - D[i]);
                if (dbias) {
                    float *db = dbias + ((size_t)h * Tq + i) * Tk;
                    for (j = 0; j < Tk; j++) db[j] += ds[j];
                }
            }
            if (dq) textok__gemm(k, 0, 0, Tq, hd, Tk, d->scale, dS, Tk, key + ok, C, 1.0f, dq + oq, C);
            if (dkey) textok__gemm(k, 1, 0, Tk, hd, Tq, d->scale, dS, Tk, q + oq, C, 1.0f, dkey + ok, C);
        }
    }
}

/* ----- residual add, adaLN modulate and gate ------------------------------------------------ */
/* Pointwise or nearly so: one function per op for both tables. */
static void textok__add_forward(const textok_kernels *k, float *out, const float *a, const float *b, size_t n)
{
    long i, nn = (long)n;
TEXTOK__PARALLEL_FOR(k, n > 65536)
    for (i = 0; i < nn; i++) out[i] = a[i] + b[i];
}

static void textok__add_backward(const textok_kernels *k, float *da, float *db, const float *dout, size_t n)
{
    long i, nn = (long)n;
TEXTOK__PARALLEL_FOR(k, n > 65536)
    for (i = 0; i < nn; i++) {
        if (da) da[i] += dout[i];
        if (db) db[i] += dout[i];
    }
}

/* out[b,t,c] = inp[b,t,c] * (1 + scale[b,c]) + shift[b,c] */
static void textok__modulate_forward(const textok_kernels *k, float *out, const float *inp,
                                     const float *shift, const float *scale, int B, int T, int C)
{
    int bt;
TEXTOK__PARALLEL_FOR(k, (size_t)B * T * C > 65536)
    for (bt = 0; bt < B * T; bt++) {
        const float *x = inp + (size_t)bt * C, *sh = shift + (size_t)(bt / T) * C, *sc = scale + (size_t)(bt / T) * C;
        float *o = out + (size_t)bt * C;
        int c;
        for (c = 0; c < C; c++) o[c] = x[c] * (1.0f + sc[c]) + sh[c];
    }
}

/* dinp += dout * (1 + scale); dshift[b] += sum_t dout; dscale[b] += sum_t dout * inp */
static void textok__modulate_backward(const textok_kernels *k, float *dinp, float *dshift,
                                      float *dscale, const float *dout, const float *inp,
                                      const float *scale, int B, int T, int C)
{
    int b;
TEXTOK__PARALLEL_FOR(k, (size_t)B * T * C > 65536)
    for (b = 0; b < B; b++) {
        int t, c;
        for (t = 0; t < T; t++) {
            size_t o = ((size_t)b * T + t) * C;
            for (c = 0; c < C; c++) {
                if (dinp) dinp[o + c] += dout[o + c] * (1.0f + scale[(size_t)b * C + c]);
                if (dshift) dshift[(size_t)b * C + c] += dout[o + c];
                if (dscale) dscale[(size_t)b * C + c] += dout[o + c] * inp[o + c];
            }
        }
    }
}

/* out[b,t,c] = resid[b,t,c] + gate[b,c] * inp[b,t,c] */
static void textok__gate_forward(const textok_kernels *k, float *out, const float *resid,
                                 const float *inp, const float *gate, int B, int T, int C)
{
    int bt;
TEXTOK__PARALLEL_FOR(k, (size_t)B * T * C > 65536)
    for (bt = 0; bt < B * T; bt++) {
        const float *r = resid + (size_t)bt * C, *x = inp + (size_t)bt * C, *g = gate + (size_t)(bt / T) * C;
        float *o = out + (size_t)bt * C;
        int c;
        for (c = 0; c < C; c++) o[c] = r[c] + g[c] * x[c];
    }
}

static void textok__gate_backward(const textok_kernels *k, float *dresid, float *dinp, float *dgate,
                                  const float *dout, const float *inp, const float *gate,
                                  int B, int T, int C)
{
    int b;
TEXTOK__PARALLEL_FOR(k, (size_t)B * T * C > 65536)
    for (b = 0; b < B; b++) {
        int t, c;
        for (t = 0; t < T; t++) {
            size_t o = ((size_t)b * T + t) * C;
            for (c = 0; c < C; c++) {
                if (dresid) dresid[o + c] += dout[o + c];
                if (dinp) dinp[o + c] += dout[o + c] * gate[(size_t)b * C + c];
                if (dgate) dgate[(size_t)b * C + c] += dout[o + c] * inp[o + c];
            }
        }
    }
}

/* ----- conv2d ------------------------------------------------------------------------------- */
TEXTOKDEF int textok_conv2d_out_h(const textok_conv2d_dims *d) { return (d->H + 2 * d->pad - d->KH) / d->stride + 1; }
TEXTOKDEF int textok_conv2d_out_w(const textok_conv2d_dims *d) { return (d->W + 2 * d->pad - d->KW) / d->stride + 1; }
TEXTOKDEF size_t textok_conv2d_work_floats(const textok_conv2d_dims *d)
{
    /* one image's im2col matrix: (C*KH*KW, OH*OW) */
    return (size_t)d->C * d->KH * d->KW * (size_t)textok_conv2d_out_h(d) * textok_conv2d_out_w(d);
}

/* Reference: the direct 7-deep loop. */
static void textok__conv2d_forward_ref(const textok_kernels *k, float *out, const float *inp,
                                       const float *weight, const float *bias,
                                       const textok_conv2d_dims *d, float *work)
{
    int OH = textok_conv2d_out_h(d), OW = textok_conv2d_out_w(d), b, o, oy, ox, c, ky, kx;
    (void)k; (void)work;
    for (b = 0; b < d->B; b++)
        for (o = 0; o < d->OC; o++)
            for (oy = 0; oy < OH; oy++)
                for (ox = 0; ox < OW; ox++) {
                    double acc = bias ? bias[o] : 0.0;
                    for (c = 0; c < d->C; c++)
                        for (ky = 0; ky < d->KH; ky++)
                            for (kx = 0; kx < d->KW; kx++) {
                                int y = oy * d->stride - d->pad + ky, x = ox * d->stride - d->pad + kx;
                                if (y < 0 || y >= d->H || x < 0 || x >= d->W) continue;
                                acc += (double)inp[(((size_t)b * d->C + c) * d->H + y) * d->W + x] *
                                       weight[(((size_t)o * d->C + c) * d->KH + ky) * d->KW + kx];
                            }
                    out[(((size_t)b * d->OC + o) * OH + oy) * OW + ox] = (float)acc;
                }
}

static void textok__conv2d_backward_ref(const textok_kernels *k, float *dinp, float *dweight, float *dbias,
                                        const float *dout, const float *inp, const float *weight,
                                        const textok_conv2d_dims *d, float *work)
{
    int OH = textok_conv2d_out_h(d), OW = textok_conv2d_out_w(d), b, o, oy, ox, c, ky, kx;
    (void)k; (void)work;
    for (b = 0; b < d->B; b++)
        for (o = 0; o < d->OC; o++)
            for (oy = 0; oy < OH; oy++)
                for (ox = 0; ox < OW; ox++) {
                    float g = dout[(((size_t)b * d->OC + o) * OH + oy) * OW + ox];
                    if (dbias) dbias[o] += g;
                    for (c = 0; c < d->C; c++)
                        for (ky = 0; ky < d->KH; ky++)
                            for (kx = 0; kx < d->KW; kx++) {
                                int y = oy * d->stride - d->pad + ky, x = ox * d->stride - d->pad + kx;
                                size_t wi = (((size_t)o * d->C + c) * d->KH + ky) * d->KW + kx;
                                size_t xi = (((size_t)b * d->C + c) * d->H + y) * d->W + x;
                                if (y < 0 || y >= d->H || x < 0 || x >= d->W) continue;
                                if (dinp) dinp[xi] += g * weight[wi];
                                if (dweight) dweight[wi] += g * inp[xi];
                            }
                }
}

/* Fast: im2col, then out_b (OC, OH*OW) = weight (OC, C*KH*KW) . col + bias. A 1x1, stride-1,
   unpadded conv needs no im2col: the image already is the column matrix. */
static int textok__conv2d_is_pointwise(const textok_conv2d_dims *d)
{
    return d->KH == 1 && d->KW == 1 && d->stride == 1 && d->pad == 0;
}

static void textok__im2col(const textok_kernels *k, float *col, const float *img, const textok_conv2d_dims *d)
{
    int OH = textok_conv2d_out_h(d), OW = textok_conv2d_out_w(d), c;
TEXTOK__PARALLEL_FOR(k, (size_t)d->C * d->KH * d->KW * OH * OW > 65536)
    for (c = 0; c < d->C; c++) {
        int ky, kx, oy, ox;
        for (ky = 0; ky < d->KH; ky++)
            for (kx = 0; kx < d->KW; kx++) {
                float *row = col + (((size_t)c * d->KH + ky) * d->KW + kx) * OH * OW;
                for (oy = 0; oy < OH; oy++) {
                    int y = oy * d->stride - d->pad + ky;
                    for (ox = 0; ox < OW; ox++) {
                        int x = ox * d->stride - d->pad + kx;
                        row[(size_t)oy * OW + ox] = (y < 0 || y >= d->H || x < 0 || x >= d->W)
                                                    ? 0.0f : img[((size_t)c * d->H + y) * d->W + x];
                    }
                }
            }
    }
}

/* img += col2im(col); threads over channels, so no two threads touch the same pixel */
static void textok__col2im(const textok_kernels *k, float *img, const float *col, const textok_conv2d_dims *d)
{
    int OH = textok_conv2d_out_h(d), OW = textok_conv2d_out_w(d), c;
TEXTOK__PARALLEL_FOR(k, (size_t)d->C * d->KH * d->KW * OH * OW > 65536)
    for (c = 0; c < d->C; c++) {
        int ky, kx, oy, ox;
        for (ky = 0; ky < d->KH; ky++)
            for (kx = 0; kx < d->KW; kx++) {
                const float *row = col + (((size_t)c * d->KH + ky) * d->KW + kx) * OH * OW;
                for (oy = 0; oy < OH; oy++) {
                    int y = oy * d->stride - d->pad + ky;
                    if (y < 0 || y >= d->H) continue;
                    for (ox = 0; ox < OW; ox++) {
                        int x = ox * d->stride - d->pad + kx;
                        if (x >= 0 && x < d->W) img[((size_t)c * d->H + y) * d->W + x] += row[(size_t)oy * OW + ox];
                    }
                }
            }
    }
}

static void textok__conv2d_forward(const textok_kernels *k, float *out, const float *inp,
                                   const float *weight, const float *bias,
                                   const textok_conv2d_dims *d, float *work)
{
    int P = textok_conv2d_out_h(d) * textok_conv2d_out_w(d), CKK = d->C * d->KH * d->KW, b, o;
    for (b = 0; b < d->B; b++) {
        const float *img = inp + (size_t)b * d->C * d->H * d->W, *col = img;
        float *out_b = out + (size_t)b * d->OC * P;
        if (!textok__conv2d_is_pointwise(d)) { textok__im2col(k, work, img, d); col = work; }
        if (bias) for (o = 0; o < d->OC; o++) { int p; for (p = 0; p < P; p++) out_b[(size_t)o * P + p] = bias[o]; }
        textok__gemm(k, 0, 0, d->OC, P, CKK, 1.0f, weight, CKK, col, P, bias ? 1.0f : 0.0f, out_b, P);
    }
}

/* dweight += dout_b . col^T;  dcol = weight^T . dout_b, scattered back by col2im;
   dbias += sum over pixels of dout. */
static void textok__conv2d_backward(const textok_kernels *k, float *dinp, float *dweight, float *dbias,
                                    const float *dout, const float *inp, const float *weight,
                                    const textok_conv2d_dims *d, float *work)
{
    int P = textok_conv2d_out_h(d) * textok_conv2d_out_w(d), CKK = d->C * d->KH * d->KW, b, o;
    int pointwise = textok__conv2d_is_pointwise(d);
    for (b = 0; b < d->B; b++) {
        const float *img = inp + (size_t)b * d->C * d->H * d->W, *dout_b = dout + (size_t)b * d->OC * P;
        float *dimg = dinp ? dinp + (size_t)b * d->C * d->H * d->W : NULL;
        if (dweight) {
            const float *col = img;
            if (!pointwise) { textok__im2col(k, work, img, d); col = work; }
            textok__gemm(k, 0, 1, d->OC, CKK, P, 1.0f, dout_b, P, col, P, 1.0f, dweight, CKK);
        }
        if (dimg) {
            if (pointwise) textok__gemm(k, 1, 0, CKK, P, d->OC, 1.0f, weight, CKK, dout_b, P, 1.0f, dimg, P);
            else {
                textok__gemm(k, 1, 0, CKK, P, d->OC, 1.0f, weight, CKK, dout_b, P, 0.0f, work, P);
                textok__col2im(k, dimg, work, d);
            }
        }
        if (dbias)
            for (o = 0; o < d->OC; o++) {
                double s = 0.0;
                int p;
                for (p = 0; p < P; p++) s += dout_b[(size_t)o * P + p];
                dbias[o] += (float)s;
            }
    }
}

/* ----- groupnorm ---------------------------------------------------------------------------- */
/* Group g of image b is the contiguous run of (C/G)*HW values starting at channel g*C/G.
   Statistics as layernorm (biased variance, double sums). One function for both tables. */
static void textok__groupnorm_forward(const textok_kernels *k, float *out, float *mean, float *rstd,
                                      const float *inp, const float *weight, const float *bias,
                                      int B, int C, int HW, int G, float eps)
{
    int bg, cg = C / G;
TEXTOK__PARALLEL_FOR(k, (size_t)B * C * HW > 16384)
    for (bg = 0; bg < B * G; bg++) {
        size_t n = (size_t)cg * HW, i;
        const float *x = inp + (size_t)bg * n;
        float *o = out + (size_t)bg * n, mf, sf;
        double m = 0.0, v = 0.0;
        for (i = 0; i < n; i++) m += x[i];
        m /= (double)n;
        for (i = 0; i < n; i++) v += (x[i] - m) * (x[i] - m);
        v /= (double)n;
        mf = (float)m;
        sf = (float)(1.0 / sqrt(v + eps));
        for (i = 0; i < n; i++) {
            int c = (bg % G) * cg + (int)(i / HW);
            float y = (x[i] - mf) * sf;
            o[i] = weight ? y * weight[c] + (bias ? bias[c] : 0.0f) : y;
        }
        if (mean) mean[bg] = mf;
        if (rstd) rstd[bg] = sf;
    }
}

static void textok__groupnorm_backward(const textok_kernels *k, float *dinp, float *dweight,
                                       float *dbias, const float *dout, const float *inp,
                                       const float *weight, const float *mean, const float *rstd,
                                       int B, int C, int HW, int G)
{
    int bg, c, cg = C / G;
    if (dinp) {
TEXTOK__PARALLEL_FOR(k, (size_t)B * C * HW > 16384)
        for (bg = 0; bg < B * G; bg++) {
            size_t n = (size_t)cg * HW, i;
            const float *x = inp + (size_t)bg * n, *dy = dout + (size_t)bg * n;
            float *dx = dinp + (size_t)bg * n;
            double sg = 0.0, sgx = 0.0, mg, mgx;
            for (i = 0; i < n; i++) {
                double g = (double)dy[i] * (weight ? weight[(bg % G) * cg + (int)(i / HW)] : 1.0f);
                sg += g;
                sgx += g * ((x[i] - mean[bg]) * rstd[bg]);
            }
            mg = sg / (double)n;
            mgx = sgx / (double)n;
            for (i = 0; i < n; i++) {
                double g = (double)dy[i] * (weight ? weight[(bg % G) * cg + (int)(i / HW)] : 1.0f);
                dx[i] += (float)(rstd[bg] * (g - mg - ((x[i] - mean[bg]) * rstd[bg]) * mgx));
            }
        }
    }
    if (!dweight && !dbias) return;
TEXTOK__PARALLEL_FOR(k, (size_t)B * C * HW > 16384)
    for (c = 0; c < C; c++) {
        double sw = 0.0, sb = 0.0;
        int b, i;
        for (b = 0; b < B; b++) {
            int bgi = b * G + c / cg;
            const float *x = inp + ((size_t)b * C + c) * HW, *dy = dout + ((size_t)b * C + c) * HW;
            for (i = 0; i < HW; i++) {
                sw += (double)dy[i] * ((x[i] - mean[bgi]) * rstd[bgi]);
                sb += dy[i];
            }
        }
        if (dweight) dweight[c] += (float)sw;
        if (dbias) dbias[c] += (float)sb;
    }
}

/* ----- nearest upsampling ------------------------------------------------------------------- */
/* out[y][x] = inp[y/f][x/f]; backward sums each f x f block. One function for both tables. */
static void textok__upsample_forward(const textok_kernels *k, float *out, const float *inp,
                                     int BC, int H, int W, int f)
{
    int p;
TEXTOK__PARALLEL_FOR(k, (size_t)BC * H * W * f * f > 65536)
    for (p = 0; p < BC; p++) {
        int y, x;
        for (y = 0; y < H * f; y++)
            for (x = 0; x < W * f; x++)
                out[((size_t)p * H * f + y) * W * f + x] = inp[((size_t)p * H + y / f) * W + x / f];
    }
}

static void textok__upsample_backward(const textok_kernels *k, float *dinp, const float *dout,
                                      int BC, int H, int W, int f)
{
    int p;
TEXTOK__PARALLEL_FOR(k, (size_t)BC * H * W * f * f > 65536)
    for (p = 0; p < BC; p++) {
        int y, x, dy, dx;
        for (y = 0; y < H; y++)
            for (x = 0; x < W; x++) {
                float s = 0.0f;
                for (dy = 0; dy < f; dy++)
                    for (dx = 0; dx < f; dx++)
                        s += dout[((size_t)p * H * f + y * f + dy) * W * f + x * f + dx];
                dinp[((size_t)p * H + y) * W + x] += s;
            }
    }
}

/* ----- nearest-codebook search -------------------------------------------------------------- */
/* d_ij = |z_i|^2 + |e_j|^2 - 2 z_i.e_j, the expanded form PyTorch's quantizers use (it decides
   near-ties the same way); argmin with ties to the lowest j. */
#define TEXTOK__CB_ROWS 64   /* rows of z per GEMM block */

TEXTOKDEF size_t textok_codebook_work_floats(int N, int K, int D)
{
    (void)D;
    return (size_t)K + (size_t)(N < TEXTOK__CB_ROWS ? N : TEXTOK__CB_ROWS) * K;
}

static void textok__codebook_search_ref(const textok_kernels *k, int32_t *idx, float *dist,
                                        const float *z, const float *codebook, int N, int K, int D,
                                        float *work)
{
    int i, j, c;
    (void)k; (void)work;
    for (i = 0; i < N; i++) {
        double best = DBL_MAX, zz = 0.0;
        int arg = 0;
        for (c = 0; c < D; c++) zz += (double)z[(size_t)i * D + c] * z[(size_t)i * D + c];
        for (j = 0; j < K; j++) {
            double ee = 0.0, ze = 0.0, dij;
            for (c = 0; c < D; c++) {
                ee += (double)codebook[(size_t)j * D + c] * codebook[(size_t)j * D + c];
                ze += (double)z[(size_t)i * D + c] * codebook[(size_t)j * D + c];
            }
            dij = zz + ee - 2.0 * ze;
            if (dij < best) { best = dij; arg = j; }
        }
        idx[i] = arg;
        if (dist) dist[i] = (float)best;
    }
}

/* Fast: |e_j|^2 once, then blocks of 64 rows: S = z_blk . E^T by GEMM, argmin per row. */
static void textok__codebook_search(const textok_kernels *k, int32_t *idx, float *dist,
                                    const float *z, const float *codebook, int N, int K, int D,
                                    float *work)
{
    float *ee = work, *S = work + K;
    int j, i0;
TEXTOK__PARALLEL_FOR(k, (size_t)K * D > 65536)
    for (j = 0; j < K; j++) {
        double s = 0.0;
        int c;
        for (c = 0; c < D; c++) s += (double)codebook[(size_t)j * D + c] * codebook[(size_t)j * D + c];
        ee[j] = (float)s;
    }
    for (i0 = 0; i0 < N; i0 += TEXTOK__CB_ROWS) {
        int rows = N - i0 < TEXTOK__CB_ROWS ? N - i0 : TEXTOK__CB_ROWS, r;
        textok__gemm(k, 0, 1, rows, K, D, -2.0f, z + (size_t)i0 * D, D, codebook, D, 0.0f, S, K);
TEXTOK__PARALLEL_FOR(k, (size_t)rows * K > 16384)
        for (r = 0; r < rows; r++) {
            const float *s = S + (size_t)r * K, *zi = z + (size_t)(i0 + r) * D;
            float best = FLT_MAX, zz = 0.0f;
            int arg = 0, jj, c;
            for (c = 0; c < D; c++) zz += zi[c] * zi[c];
            for (jj = 0; jj < K; jj++) {
                float dj = ee[jj] + s[jj];
                if (dj < best) { best = dj; arg = jj; }
            }
            idx[i0 + r] = arg;
            if (dist) dist[i0 + r] = zz + best;
        }
    }
}

/* ----- softmax cross-entropy ---------------------------------------------------------------- */
/* loss_i = (1-ls) (lse - x_y) + ls/V sum_c (lse - x_c), PyTorch's label smoothing;
   d loss_i / d x_c = p_c - (1-ls) [c == y] - ls/V. One function for both tables. */
static void textok__cross_entropy_forward(const textok_kernels *k, float *losses, float *probs,
                                          const float *logits, const int32_t *targets, int N, int V,
                                          float label_smoothing)
{
    int n;
TEXTOK__PARALLEL_FOR(k, (size_t)N * V > 16384)
    for (n = 0; n < N; n++) {
        const float *x = logits + (size_t)n * V;
        float *p = probs + (size_t)n * V, m = -FLT_MAX;
        double s = 0.0, lse, sum_x = 0.0;
        int c, y = targets[n];
        for (c = 0; c < V; c++) m = x[c] > m ? x[c] : m;
        for (c = 0; c < V; c++) { s += exp((double)x[c] - m); sum_x += x[c]; }
        lse = m + log(s);
        for (c = 0; c < V; c++) p[c] = (float)exp(x[c] - lse);
        if (y < 0 || y >= V) { losses[n] = 0.0f; continue; }   /* ignored (negative) target */
        losses[n] = (float)((1.0 - label_smoothing) * (lse - x[y]) + label_smoothing * (lse - sum_x / V));
    }
}

static void textok__cross_entropy_backward(const textok_kernels *k, float *dlogits, const float *dlosses,
                                           const float *probs, const int32_t *targets, int N, int V,
                                           float label_smoothing)
{
    int n;
TEXTOK__PARALLEL_FOR(k, (size_t)N * V > 16384)
    for (n = 0; n < N; n++) {
        const float *p = probs + (size_t)n * V;
        float *dx = dlogits + (size_t)n * V, g = dlosses[n], off = label_smoothing / V;
        int c, y = targets[n];
        if (y < 0 || y >= V) continue;
        for (c = 0; c < V; c++) dx[c] += g * (p[c] - off - (c == y ? 1.0f - label_smoothing : 0.0f));
    }
}

/* ----- AdamW -------------------------------------------------------------------------------- */
/* In the order of torch.optim.AdamW (single-tensor path), so results agree to rounding:
     p *= 1 - lr*wd;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
     p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
   One function for both tables. */
static void textok__adamw_update(const textok_kernels *k, float *params, const float *grads, float *m,
                                 float *v, size_t n, const textok_adamw_params *hp, int step)
{
    long i, nn = (long)n;
    /* scalars formed in double, each rounded once to float, as PyTorch applies Python floats */
    const float b1 = (float)hp->beta1, b2 = (float)hp->beta2;
    const float one_minus_b1 = (float)(1.0 - hp->beta1), one_minus_b2 = (float)(1.0 - hp->beta2);
    const float step_size = (float)(hp->lr / (1.0 - pow(hp->beta1, step)));
    const float bc2_sqrt = (float)sqrt(1.0 - pow(hp->beta2, step));
    const float decay = (float)(1.0 - hp->lr * hp->weight_decay), eps = (float)hp->eps;
TEXTOK__PARALLEL_FOR(k, n > 65536)
    for (i = 0; i < nn; i++) {
        float g = grads[i];
        params[i] *= decay;
        m[i] = b1 * m[i] + one_minus_b1 * g;
        v[i] = b2 * v[i] + one_minus_b2 * g * g;
        params[i] -= step_size * m[i] / (sqrtf(v[i]) / bc2_sqrt + eps);
    }
}

/* ---------------------------------------------------------------------------------------------
   6. The CPU kernel tables */

static void *textok__cpu_alloc(const textok_kernels *k, size_t bytes) { (void)k; return textok__malloc(bytes); }
static void  textok__cpu_free(const textok_kernels *k, void *p) { (void)k; TEXTOK_FREE(p); }
static int   textok__cpu_copy(const textok_kernels *k, void *dst, const void *src, size_t bytes)
{
    (void)k;
    if (bytes) memcpy(dst, src, bytes);
    return TEXTOK_OK;
}

/* Positional initialisers with the field name in a comment keep this valid C89..C++ (ggml). */
TEXTOKDEF textok_kernels textok_cpu_ref_kernels(void)
{
    textok_kernels k = {
        /* .name                   = */ "cpu-ref",
        /* .n_threads              = */ 1,
        /* .state                  = */ NULL,
        /* .alloc                  = */ textok__cpu_alloc,
        /* .free                   = */ textok__cpu_free,
        /* .to_device              = */ textok__cpu_copy,
        /* .to_host                = */ textok__cpu_copy,
        /* .matmul_forward         = */ textok__matmul_forward_ref,
        /* .matmul_backward        = */ textok__matmul_backward_ref,
        /* .layernorm_forward      = */ textok__layernorm_forward,
        /* .layernorm_backward     = */ textok__layernorm_backward,
        /* .rmsnorm_forward        = */ textok__rmsnorm_forward,
        /* .rmsnorm_backward       = */ textok__rmsnorm_backward,
        /* .gelu_forward           = */ textok__gelu_forward,
        /* .gelu_backward          = */ textok__gelu_backward,
        /* .silu_forward           = */ textok__silu_forward,
        /* .silu_backward          = */ textok__silu_backward,
        /* .softmax_forward        = */ textok__softmax_forward,
        /* .softmax_backward       = */ textok__softmax_backward,
        /* .attention_forward      = */ textok__attention_forward_ref,
        /* .attention_backward     = */ textok__attention_backward_ref,
        /* .add_forward            = */ textok__add_forward,
        /* .add_backward           = */ textok__add_backward,
        /* .modulate_forward       = */ textok__modulate_forward,
        /* .modulate_backward      = */ textok__modulate_backward,
        /* .gate_forward           = */ textok__gate_forward,
        /* .gate_backward          = */ textok__gate_backward,
        /* .conv2d_forward         = */ textok__conv2d_forward_ref,
        /* .conv2d_backward        = */ textok__conv2d_backward_ref,
        /* .groupnorm_forward      = */ textok__groupnorm_forward,
        /* .groupnorm_backward     = */ textok__groupnorm_backward,
        /* .upsample_forward       = */ textok__upsample_forward,
        /* .upsample_backward      = */ textok__upsample_backward,
        /* .codebook_search        = */ textok__codebook_search_ref,
        /* .cross_entropy_forward  = */ textok__cross_entropy_forward,
        /* .cross_entropy_backward = */ textok__cross_entropy_backward,
        /* .adamw_update           = */ textok__adamw_update
    };
    return k;
}

/* The fast table: the reference table with GEMM-based kernels swapped in and threads on.
   With OpenBLAS the thread count is also handed to OpenBLAS (a process-wide setting of it). */
#if defined(TEXTOK_USE_BLAS) && defined(OPENBLAS_VERSION)
#define TEXTOK__SET_BLAS_THREADS(n) openblas_set_num_threads(n)
#else
#define TEXTOK__SET_BLAS_THREADS(n) ((void)(n))
#endif
TEXTOKDEF textok_kernels textok_cpu_kernels(int n_threads)
{
    textok_kernels k = textok_cpu_ref_kernels();
    k.name = "cpu";
    k.n_threads = n_threads > 0 ? n_threads : textok_default_threads();
    TEXTOK__SET_BLAS_THREADS(k.n_threads);
    k.matmul_forward = textok__matmul_forward;
    k.matmul_backward = textok__matmul_backward;
    k.attention_forward = textok__attention_forward;
    k.attention_backward = textok__attention_backward;
    k.conv2d_forward = textok__conv2d_forward;
    k.conv2d_backward = textok__conv2d_backward;
    k.codebook_search = textok__codebook_search;
    return k;
}

/* ---------------------------------------------------------------------------------------------
   7. textok_kernels_compare. Each case names a kernel family, a shape, its buffers (inputs,
   then outputs) and a run function that calls the family's forward and backward through a table.
   The harness makes the inputs and the initial contents of every output (random, the same for
   both tables: backward kernels accumulate, and this checks that they do), uploads them into
   buffers with canary bytes on both sides, runs, downloads, and compares the test table's
   outputs with the reference table's. */

enum {
    TEXTOK__IN_F32,    /* random normal input */
    TEXTOK__IN_I32,    /* class targets in [0, range), about 1 in 8 set to -1 (ignored) */
    TEXTOK__IN_MASK,   /* key mask bytes, rows of `range` keys, 3 in 4 on, first key always on */
    TEXTOK__OUT_F32,   /* output compared by error figures; starts random normal (|normal| if range 1) */
    TEXTOK__OUT_IDX,   /* int32 codebook indices: equal, or equally near within rounding */
    TEXTOK__SCRATCH    /* work buffer: only its canaries are checked */
};
#define TEXTOK__CMP_MAXBUF 16
#define TEXTOK__CMP_CANARY 256   /* bytes on each side of every buffer */
#define TEXTOK__CMP_BYTE   0xA5

typedef struct textok__cmp_case textok__cmp_case;
struct textok__cmp_case {
    const char *kernel;
    char        shape[64];
    int         dims[10];
    float       fdim;                        /* eps, label smoothing, ... */
    double      tol;                         /* NMSE threshold for every output of the case */
    int         n_buf;
    const char *name[TEXTOK__CMP_MAXBUF];
    int         kind[TEXTOK__CMP_MAXBUF];
    size_t      count[TEXTOK__CMP_MAXBUF];   /* elements */
    int         range[TEXTOK__CMP_MAXBUF];
    int (*run)(const textok_kernels *k, const textok__cmp_case *c, void **buf);  /* 1 = unsupported */
};

#define TEXTOK__F(p) ((float *)(p))

static int textok__cmp_run_matmul(const textok_kernels *k, const textok__cmp_case *c, void **b)
{
    textok_matmul_dims d;
    int has_bias = c->dims[6];
    if (!k->matmul_forward || !k->matmul_backward) return 1;
    d.batch = c->dims[0]; d.M = c->dims[1]; d.N = c->dims[2]; d.K = c->dims[3];
    d.trans_a = c->dims[4]; d.trans_b = c->dims[5];
    /* buffers: a b bias dout | out da db dbias */
    k->matmul_forward(k, TEXTOK__F(b[4]), TEXTOK__F(b[0]), TEXTOK__F(b[1]), has_bias ? TEXTOK__F(b[2]) : NULL, &d);
    k->matmul_backward(k, TEXTOK__F(b[5]), TEXTOK__F(b[6]), has_bias ? TEXTOK__F(b[7]) : NULL,
                       TEXTOK__F(b[3]), TEXTOK__F(b[0]), TEXTOK__F(b[1]), &d);
    return 0;
}

static int textok__cmp_run_layernorm(const textok_kernels *k, const textok__cmp_case *c, void **b)
{
    int N = c->dims[0], C = c->dims[1], affine = c->dims[2];
    if (!k->layernorm_forward || !k->layernorm_backward) return 1;
    /* x w bias dout | out mean rstd dx dw db */
    k->layernorm_forward(k, TEXTOK__F(b[4]), TEXTOK__F(b[5]), TEXTOK__F(b[6]), TEXTOK__F(b[0]),
                         affine ? TEXTOK__F(b[1]) : NULL, affine ? TEXTOK__F(b[2]) : NULL, N, C, c->fdim);
    k->layernorm_backward(k, TEXTOK__F(b[7]), affine ? TEXTOK__F(b[8]) : NULL, affine ? TEXTOK__F(b[9]) : NULL,
                          TEXTOK__F(b[3]), TEXTOK__F(b[0]), affine ? TEXTOK__F(b[1]) : NULL,
                          TEXTOK__F(b[5]), TEXTOK__F(b[6]), N, C);
    return 0;
}

static int textok__cmp_run_rmsnorm(const textok_kernels *k, const textok__cmp_case *c, void **b)
{
    int N = c->dims[0], C = c->dims[1];
    if (!k->rmsnorm_forward || !k->rmsnorm_backward) return 1;
    /* x w dout | out rstd dx dw */
    k->rmsnorm_forward(k, TEXTOK__F(b[3]), TEXTOK__F(b[4]), TEXTOK__F(b[0]), TEXTOK__F(b[1]), N, C, c->fdim);
    k->rmsnorm_backward(k, TEXTOK__F(b[5]), TEXTOK__F(b[6]), TEXTOK__F(b[2]), TEXTOK__F(b[0]), TEXTOK__F(b[1]),
                        TEXTOK__F(b[4]), N, C);
    return 0;
}

static int textok__cmp_run_gelu(const textok_kernels *k, const textok__cmp_case *c, void **b)
{
    size_t n = (size_t)c->dims[0];
    if (!k->gelu_forward || !k->gelu_backward) return 1;
    /* x dout | out dx */
    k->gelu_forward(k, TEXTOK__F(b[2]), TEXTOK__F(b[0]), n, c->dims[1]);
    k->gelu_backward(k, TEXTOK__F(b[3]), TEXTOK__F(b[1]), TEXTOK__F(b[0]), n, c->dims[1]);
    return 0;
}

static int textok__cmp_run_silu(const textok_kernels *k, const textok__cmp_case *c, void **b)
{
    size_t n = (size_t)c->dims[0];
    if (!k->silu_forward || !k->silu_backward) return 1;
    k->silu_forward(k, TEXTOK__F(b[2]), TEXTOK__F(b[0]), n);
    k->silu_backward(k, TEXTOK__F(b[3]), TEXTOK__F(b[1]), TEXTOK__F(b[0]), n);
    return 0;
}

static int textok__cmp_run_softmax(const textok_kernels *k, const textok__cmp_case *c, void **b)
{
    if (!k->softmax_forward || !k->softmax_backward) return 1;
    k->softmax_forward(k, TEXTOK__F(b[2]), TEXTOK__F(b[0]), c->dims[0], c->dims[1]);
    k->softmax_backward(k, TEXTOK__F(b[3]), TEXTOK__F(b[1]), TEXTOK__F(b[2]), c->dims[0], c->dims[1]);
    return 0;
}

static int textok__cmp_run_attention(const textok_kernels *k, const textok__cmp_case *c, void **b)
{
    textok_attention_dims d;
    int has_bias = c->dims[5], has_mask = c->dims[6];
    if (!k->attention_forward || !k->attention_backward) return 1;
    d.B = c->dims[0]; d.Tq = c->dims[1]; d.Tk = c->dims[2]; d.C = c->dims[3]; d.H = c->dims[4];
    d.scale = 1.0f / sqrtf((float)(d.C / d.H));
    /* q key v bias mask dout | out lse dq dkey dv dbias work */
    k->attention_forward(k, TEXTOK__F(b[6]), TEXTOK__F(b[7]), TEXTOK__F(b[0]), TEXTOK__F(b[1]), TEXTOK__F(b[2]),
                         has_bias ? TEXTOK__F(b[3]) : NULL, has_mask ? (const unsigned char *)b[4] : NULL,
                         &d, TEXTOK__F(b[12]));
    k->attention_backward(k, TEXTOK__F(b[8]), TEXTOK__F(b[9]), TEXTOK__F(b[10]), has_bias ? TEXTOK__F(b[11]) : NULL,
                          TEXTOK__F(b[5]), TEXTOK__F(b[0]), TEXTOK__F(b[1]), TEXTOK__F(b[2]),
                          has_bias ? TEXTOK__F(b[3]) : NULL, has_mask ? (const unsigned char *)b[4] : NULL,
                          TEXTOK__F(b[6]), TEXTOK__F(b[7]), &d, TEXTOK__F(b[12]));
    return 0;
}

static int textok__cmp_run_add(const textok_kernels *k, const textok__cmp_case *c, void **b)
{
    size_t n = (size_t)c->dims[0];
    if (!k->add_forward || !k->add_backward) return 1;
    /* a b dout | out da db */
    k->add_forward(k, TEXTOK__F(b[3]), TEXTOK__F(b[0]), TEXTOK__F(b[1]), n);
    k->add_backward(k, TEXTOK__F(b[4]), TEXTOK__F(b[5]), TEXTOK__F(b[2]), n);
    return 0;
}

static int textok__cmp_run_modulate(const textok_kernels *k, const textok__cmp_case *c, void **b)
{
    int B = c->dims[0], T = c->dims[1], C = c->dims[2];
    if (!k->modulate_forward || !k->modulate_backward) return 1;
    /* x shift scale dout | out dx dshift dscale */
    k->modulate_forward(k, TEXTOK__F(b[4]), TEXTOK__F(b[0]), TEXTOK__F(b[1]), TEXTOK__F(b[2]), B, T, C);
    k->modulate_backward(k, TEXTOK__F(b[5]), TEXTOK__F(b[6]), TEXTOK__F(b[7]), TEXTOK__F(b[3]), TEXTOK__F(b[0]),
                         TEXTOK__F(b[2]), B, T, C);
    return 0;
}

static int textok__cmp_run_gate(const textok_kernels *k, const textok__cmp_case *c, void **b)
{
    int B = c->dims[0], T = c->dims[1], C = c->dims[2];
    if (!k->gate_forward || !k->gate_backward) return 1;
    /* resid x gate dout | out dresid dx dgate */
    k->gate_forward(k, TEXTOK__F(b[4]), TEXTOK__F(b[0]), TEXTOK__F(b[1]), TEXTOK__F(b[2]), B, T, C);
    k->gate_backward(k, TEXTOK__F(b[5]), TEXTOK__F(b[6]), TEXTOK__F(b[7]), TEXTOK__F(b[3]), TEXTOK__F(b[1]),
                     TEXTOK__F(b[2]), B, T, C);
    return 0;
}

static textok_conv2d_dims textok__cmp_conv_dims(const textok__cmp_case *c)
{
    textok_conv2d_dims d;
    d.B = c->dims[0]; d.C = c->dims[1]; d.H = c->dims[2]; d.W = c->dims[3]; d.OC = c->dims[4];
    d.KH = c->dims[5]; d.KW = c->dims[6]; d.stride = c->dims[7]; d.pad = c->dims[8];
    return d;
}

static int textok__cmp_run_conv2d(const textok_kernels *k, const textok__cmp_case *c, void **b)
{
    textok_conv2d_dims d = textok__cmp_conv_dims(c);
    if (!k->conv2d_forward || !k->conv2d_backward) return 1;
    /* x w bias dout | out dx dw dbias work */
    k->conv2d_forward(k, TEXTOK__F(b[4]), TEXTOK__F(b[0]), TEXTOK__F(b[1]), TEXTOK__F(b[2]), &d, TEXTOK__F(b[8]));
    k->conv2d_backward(k, TEXTOK__F(b[5]), TEXTOK__F(b[6]), TEXTOK__F(b[7]), TEXTOK__F(b[3]), TEXTOK__F(b[0]),
                       TEXTOK__F(b[1]), &d, TEXTOK__F(b[8]));
    return 0;
}

static int textok__cmp_run_groupnorm(const textok_kernels *k, const textok__cmp_case *c, void **b)
{
    int B = c->dims[0], C = c->dims[1], HW = c->dims[2], G = c->dims[3];
    if (!k->groupnorm_forward || !k->groupnorm_backward) return 1;
    /* x w bias dout | out mean rstd dx dw db */
    k->groupnorm_forward(k, TEXTOK__F(b[4]), TEXTOK__F(b[5]), TEXTOK__F(b[6]), TEXTOK__F(b[0]), TEXTOK__F(b[1]),
                         TEXTOK__F(b[2]), B, C, HW, G, c->fdim);
    k->groupnorm_backward(k, TEXTOK__F(b[7]), TEXTOK__F(b[8]), TEXTOK__F(b[9]), TEXTOK__F(b[3]), TEXTOK__F(b[0]),
                          TEXTOK__F(b[1]), TEXTOK__F(b[5]), TEXTOK__F(b[6]), B, C, HW, G);
    return 0;
}

static int textok__cmp_run_upsample(const textok_kernels *k, const textok__cmp_case *c, void **b)
{
    if (!k->upsample_forward || !k->upsample_backward) return 1;
    /* x dout | out dx */
    k->upsample_forward(k, TEXTOK__F(b[2]), TEXTOK__F(b[0]), c->dims[0], c->dims[1], c->dims[2], c->dims[3]);
    k->upsample_backward(k, TEXTOK__F(b[3]), TEXTOK__F(b[1]), c->dims[0], c->dims[1], c->dims[2], c->dims[3]);
    return 0;
}

static int textok__cmp_run_codebook(const textok_kernels *k, const textok__cmp_case *c, void **b)
{
    if (!k->codebook_search) return 1;
    /* z codebook | idx dist work */
    k->codebook_search(k, (int32_t *)b[2], TEXTOK__F(b[3]), TEXTOK__F(b[0]), TEXTOK__F(b[1]),
                       c->dims[0], c->dims[1], c->dims[2], TEXTOK__F(b[4]));
    return 0;
}

static int textok__cmp_run_cross_entropy(const textok_kernels *k, const textok__cmp_case *c, void **b)
{
    int N = c->dims[0], V = c->dims[1];
    if (!k->cross_entropy_forward || !k->cross_entropy_backward) return 1;
    /* logits targets dlosses | losses probs dlogits */
    k->cross_entropy_forward(k, TEXTOK__F(b[3]), TEXTOK__F(b[4]), TEXTOK__F(b[0]), (const int32_t *)b[1], N, V, c->fdim);
    k->cross_entropy_backward(k, TEXTOK__F(b[5]), TEXTOK__F(b[2]), TEXTOK__F(b[4]), (const int32_t *)b[1], N, V, c->fdim);
    return 0;
}

static int textok__cmp_run_adamw(const textok_kernels *k, const textok__cmp_case *c, void **b)
{
    textok_adamw_params hp;
    int step;
    if (!k->adamw_update) return 1;
    hp.lr = 1e-2; hp.beta1 = 0.9; hp.beta2 = 0.95; hp.eps = 1e-8; hp.weight_decay = 0.1;
    /* grads | params m v  (m and v start random: any state is a valid state) */
    for (step = 1; step <= c->dims[1]; step++)
        k->adamw_update(k, TEXTOK__F(b[1]), TEXTOK__F(b[0]), TEXTOK__F(b[2]), TEXTOK__F(b[3]), (size_t)c->dims[0], &hp, step);
    return 0;
}

/* --- building the case list --- */
static textok__cmp_case *textok__cmp_new(textok__cmp_case *cs, int *n, const char *kernel, double tol,
                                         int (*run)(const textok_kernels *, const textok__cmp_case *, void **))
{
    textok__cmp_case *c = &cs[(*n)++];
    memset(c, 0, sizeof *c);
    c->kernel = kernel;
    c->tol = tol;
    c->run = run;
    return c;
}
static void textok__cmp_buf(textok__cmp_case *c, const char *name, int kind, size_t count, int range)
{
    TEXTOK_ASSERT(c->n_buf < TEXTOK__CMP_MAXBUF);
    c->name[c->n_buf] = name;
    c->kind[c->n_buf] = kind;
    c->count[c->n_buf] = count;
    c->range[c->n_buf] = range;
    c->n_buf++;
}

/* Tolerances (NMSE). Kernels whose fast version is the reference code run with more threads agree
   to the last bit, but the threshold still allows rounding (1e-12). GEMM-based kernels sum in
   float in another order than the double-accumulating reference: each output then carries
   ~6e-8 sqrt(K) relative error, i.e. NMSE ~4e-15 K, so 1e-10 leaves a 25x margin at K = 1024
   and catches any indexing error (those give NMSE ~1). */
#define TEXTOK__TOL_SAME 1e-12
#define TEXTOK__TOL_GEMM 1e-10

static int textok__cmp_build(textok__cmp_case *cs)
{
    static const int mm[][7] = { /* batch M N K trans_a trans_b bias */
        { 1, 1, 1, 1, 0, 0, 1 }, { 2, 33, 17, 65, 0, 1, 1 }, { 1, 133, 257, 129, 1, 0, 1 }, { 3, 7, 5, 3, 1, 1, 0 } };
    static const int ln[][3] = { { 5, 7, 1 }, { 133, 768, 1 }, { 17, 300, 0 } };
    static const int at[][7] = { /* B Tq Tk C H bias mask */
        { 2, 5, 5, 16, 2, 0, 0 }, { 1, 33, 17, 64, 4, 1, 1 }, { 2, 129, 129, 96, 3, 1, 0 } };
    static const int cv[][9] = { /* B C H W OC KH KW stride pad */
        { 2, 3, 8, 8, 4, 3, 3, 1, 1 }, { 1, 5, 9, 7, 6, 4, 4, 2, 1 }, { 1, 8, 6, 6, 16, 1, 1, 1, 0 }, { 1, 32, 17, 17, 33, 3, 3, 1, 1 } };
    static const int gn[][4] = { { 2, 8, 16, 4 }, { 1, 64, 289, 32 } };
    static const int cb[][3] = { { 10, 16, 8 }, { 133, 1025, 12 }, { 65, 4096, 16 } };
    int n = 0, i;
    textok__cmp_case *c;
    for (i = 0; i < 4; i++) {
        const int *s = mm[i];
        size_t sa = (size_t)s[0] * s[1] * s[3], sb = (size_t)s[0] * s[3] * s[2], so = (size_t)s[0] * s[1] * s[2];
        c = textok__cmp_new(cs, &n, "matmul", TEXTOK__TOL_GEMM, textok__cmp_run_matmul);
        memcpy(c->dims, s, sizeof mm[0]);
        snprintf(c->shape, sizeof c->shape, "b%d M%d N%d K%d tA%d tB%d%s", s[0], s[1], s[2], s[3], s[4], s[5], s[6] ? " bias" : "");
        textok__cmp_buf(c, "a", TEXTOK__IN_F32, sa, 0);
        textok__cmp_buf(c, "b", TEXTOK__IN_F32, sb, 0);
        textok__cmp_buf(c, "bias", TEXTOK__IN_F32, (size_t)s[2], 0);
        textok__cmp_buf(c, "dout", TEXTOK__IN_F32, so, 0);
        textok__cmp_buf(c, "out", TEXTOK__OUT_F32, so, 0);
        textok__cmp_buf(c, "da", TEXTOK__OUT_F32, sa, 0);
        textok__cmp_buf(c, "db", TEXTOK__OUT_F32, sb, 0);
        textok__cmp_buf(c, "dbias", TEXTOK__OUT_F32, (size_t)s[2], 0);
    }
    for (i = 0; i < 3; i++) {
        size_t nc = (size_t)ln[i][0] * ln[i][1];
        c = textok__cmp_new(cs, &n, "layernorm", TEXTOK__TOL_SAME, textok__cmp_run_layernorm);
        memcpy(c->dims, ln[i], sizeof ln[0]);
        c->fdim = 1e-5f;
        snprintf(c->shape, sizeof c->shape, "N%d C%d%s", ln[i][0], ln[i][1], ln[i][2] ? " affine" : "");
        textok__cmp_buf(c, "x", TEXTOK__IN_F32, nc, 0);
        textok__cmp_buf(c, "w", TEXTOK__IN_F32, (size_t)ln[i][1], 0);
        textok__cmp_buf(c, "bias", TEXTOK__IN_F32, (size_t)ln[i][1], 0);
        textok__cmp_buf(c, "dout", TEXTOK__IN_F32, nc, 0);
        textok__cmp_buf(c, "out", TEXTOK__OUT_F32, nc, 0);
        textok__cmp_buf(c, "mean", TEXTOK__OUT_F32, (size_t)ln[i][0], 0);
        textok__cmp_buf(c, "rstd", TEXTOK__OUT_F32, (size_t)ln[i][0], 0);
        textok__cmp_buf(c, "dx", TEXTOK__OUT_F32, nc, 0);
        textok__cmp_buf(c, "dw", TEXTOK__OUT_F32, (size_t)ln[i][1], 0);
        textok__cmp_buf(c, "dbias", TEXTOK__OUT_F32, (size_t)ln[i][1], 0);

        c = textok__cmp_new(cs, &n, "rmsnorm", TEXTOK__TOL_SAME, textok__cmp_run_rmsnorm);
        memcpy(c->dims, ln[i], 2 * sizeof(int));
        c->fdim = 1e-6f;
        snprintf(c->shape, sizeof c->shape, "N%d C%d", ln[i][0], ln[i][1]);
        textok__cmp_buf(c, "x", TEXTOK__IN_F32, nc, 0);
        textok__cmp_buf(c, "w", TEXTOK__IN_F32, (size_t)ln[i][1], 0);
        textok__cmp_buf(c, "dout", TEXTOK__IN_F32, nc, 0);
        textok__cmp_buf(c, "out", TEXTOK__OUT_F32, nc, 0);
        textok__cmp_buf(c, "rstd", TEXTOK__OUT_F32, (size_t)ln[i][0], 0);
        textok__cmp_buf(c, "dx", TEXTOK__OUT_F32, nc, 0);
        textok__cmp_buf(c, "dw", TEXTOK__OUT_F32, (size_t)ln[i][1], 0);
    }
    for (i = 0; i < 4; i++) {   /* gelu erf/tanh and silu, small and threaded sizes */
        int len = i < 2 ? 1001 : 70001, approx = i & 1;
        c = textok__cmp_new(cs, &n, "gelu", TEXTOK__TOL_SAME, textok__cmp_run_gelu);
        c->dims[0] = len; c->dims[1] = approx;
        snprintf(c->shape, sizeof c->shape, "n%d %s", len, approx ? "tanh" : "erf");
        textok__cmp_buf(c, "x", TEXTOK__IN_F32, (size_t)len, 0);
        textok__cmp_buf(c, "dout", TEXTOK__IN_F32, (size_t)len, 0);
        textok__cmp_buf(c, "out", TEXTOK__OUT_F32, (size_t)len, 0);
        textok__cmp_buf(c, "dx", TEXTOK__OUT_F32, (size_t)len, 0);
        if (approx) continue;
        c = textok__cmp_new(cs, &n, "silu", TEXTOK__TOL_SAME, textok__cmp_run_silu);
        c->dims[0] = len;
        snprintf(c->shape, sizeof c->shape, "n%d", len);
        textok__cmp_buf(c, "x", TEXTOK__IN_F32, (size_t)len, 0);
        textok__cmp_buf(c, "dout", TEXTOK__IN_F32, (size_t)len, 0);
        textok__cmp_buf(c, "out", TEXTOK__OUT_F32, (size_t)len, 0);
        textok__cmp_buf(c, "dx", TEXTOK__OUT_F32, (size_t)len, 0);

        c = textok__cmp_new(cs, &n, "add", TEXTOK__TOL_SAME, textok__cmp_run_add);
        c->dims[0] = len;
        snprintf(c->shape, sizeof c->shape, "n%d", len);
        textok__cmp_buf(c, "a", TEXTOK__IN_F32, (size_t)len, 0);
        textok__cmp_buf(c, "b", TEXTOK__IN_F32, (size_t)len, 0);
        textok__cmp_buf(c, "dout", TEXTOK__IN_F32, (size_t)len, 0);
        textok__cmp_buf(c, "out", TEXTOK__OUT_F32, (size_t)len, 0);
        textok__cmp_buf(c, "da", TEXTOK__OUT_F32, (size_t)len, 0);
        textok__cmp_buf(c, "db", TEXTOK__OUT_F32, (size_t)len, 0);
    }
    for (i = 0; i < 3; i++) {
        static const int sm[][2] = { { 5, 7 }, { 129, 257 }, { 3, 4097 } };
        size_t nc = (size_t)sm[i][0] * sm[i][1];
        c = textok__cmp_new(cs, &n, "softmax", TEXTOK__TOL_SAME, textok__cmp_run_softmax);
        c->dims[0] = sm[i][0]; c->dims[1] = sm[i][1];
        snprintf(c->shape, sizeof c->shape, "rows%d cols%d", sm[i][0], sm[i][1]);
        textok__cmp_buf(c, "x", TEXTOK__IN_F32, nc, 0);
        textok__cmp_buf(c, "dout", TEXTOK__IN_F32, nc, 0);
        textok__cmp_buf(c, "out", TEXTOK__OUT_F32, nc, 0);
        textok__cmp_buf(c, "dx", TEXTOK__OUT_F32, nc, 0);
    }
    for (i = 0; i < 3; i++) {
        const int *s = at[i];
        size_t nq = (size_t)s[0] * s[1] * s[3], nk = (size_t)s[0] * s[2] * s[3], nb = (size_t)s[4] * s[1] * s[2];
        textok_attention_dims d;
        d.B = s[0]; d.Tq = s[1]; d.Tk = s[2]; d.C = s[3]; d.H = s[4];
        c = textok__cmp_new(cs, &n, "attention", TEXTOK__TOL_GEMM, textok__cmp_run_attention);
        memcpy(c->dims, s, sizeof at[0]);
        snprintf(c->shape, sizeof c->shape, "B%d Tq%d Tk%d C%d H%d%s%s", s[0], s[1], s[2], s[3], s[4],
                 s[5] ? " bias" : "", s[6] ? " mask" : "");
        textok__cmp_buf(c, "q", TEXTOK__IN_F32, nq, 0);
        textok__cmp_buf(c, "key", TEXTOK__IN_F32, nk, 0);
        textok__cmp_buf(c, "v", TEXTOK__IN_F32, nk, 0);
        textok__cmp_buf(c, "bias", TEXTOK__IN_F32, nb, 0);
        textok__cmp_buf(c, "mask", TEXTOK__IN_MASK, (size_t)s[0] * s[2], s[2]);
        textok__cmp_buf(c, "dout", TEXTOK__IN_F32, nq, 0);
        textok__cmp_buf(c, "out", TEXTOK__OUT_F32, nq, 0);
        textok__cmp_buf(c, "lse", TEXTOK__OUT_F32, (size_t)s[0] * s[4] * s[1], 0);
        textok__cmp_buf(c, "dq", TEXTOK__OUT_F32, nq, 0);
        textok__cmp_buf(c, "dkey", TEXTOK__OUT_F32, nk, 0);
        textok__cmp_buf(c, "dv", TEXTOK__OUT_F32, nk, 0);
        textok__cmp_buf(c, "dbias", TEXTOK__OUT_F32, nb, 0);
        textok__cmp_buf(c, "work", TEXTOK__SCRATCH, textok_attention_work_floats(&d), 0);
    }
    for (i = 0; i < 2; i++) {
        static const int mo[][3] = { { 2, 5, 8 }, { 3, 129, 65 } };
        size_t nx = (size_t)mo[i][0] * mo[i][1] * mo[i][2], nbc = (size_t)mo[i][0] * mo[i][2];
        c = textok__cmp_new(cs, &n, "modulate", TEXTOK__TOL_SAME, textok__cmp_run_modulate);
        memcpy(c->dims, mo[i], sizeof mo[0]);
        snprintf(c->shape, sizeof c->shape, "B%d T%d C%d", mo[i][0], mo[i][1], mo[i][2]);
        textok__cmp_buf(c, "x", TEXTOK__IN_F32, nx, 0);
        textok__cmp_buf(c, "shift", TEXTOK__IN_F32, nbc, 0);
        textok__cmp_buf(c, "scale", TEXTOK__IN_F32, nbc, 0);
        textok__cmp_buf(c, "dout", TEXTOK__IN_F32, nx, 0);
        textok__cmp_buf(c, "out", TEXTOK__OUT_F32, nx, 0);
        textok__cmp_buf(c, "dx", TEXTOK__OUT_F32, nx, 0);
        textok__cmp_buf(c, "dshift", TEXTOK__OUT_F32, nbc, 0);
        textok__cmp_buf(c, "dscale", TEXTOK__OUT_F32, nbc, 0);

        c = textok__cmp_new(cs, &n, "gate", TEXTOK__TOL_SAME, textok__cmp_run_gate);
        memcpy(c->dims, mo[i], sizeof mo[0]);
        snprintf(c->shape, sizeof c->shape, "B%d T%d C%d", mo[i][0], mo[i][1], mo[i][2]);
        textok__cmp_buf(c, "resid", TEXTOK__IN_F32, nx, 0);
        textok__cmp_buf(c, "x", TEXTOK__IN_F32, nx, 0);
        textok__cmp_buf(c, "gate", TEXTOK__IN_F32, nbc, 0);
        textok__cmp_buf(c, "dout", TEXTOK__IN_F32, nx, 0);
        textok__cmp_buf(c, "out", TEXTOK__OUT_F32, nx, 0);
        textok__cmp_buf(c, "dresid", TEXTOK__OUT_F32, nx, 0);
        textok__cmp_buf(c, "dx", TEXTOK__OUT_F32, nx, 0);
        textok__cmp_buf(c, "dgate", TEXTOK__OUT_F32, nbc, 0);
    }
    for (i = 0; i < 4; i++) {
        const int *s = cv[i];
        textok_conv2d_dims d;
        size_t nx, nw, no;
        c = textok__cmp_new(cs, &n, "conv2d", TEXTOK__TOL_GEMM, textok__cmp_run_conv2d);
        memcpy(c->dims, s, sizeof cv[0]);
        d = textok__cmp_conv_dims(c);
        nx = (size_t)d.B * d.C * d.H * d.W;
        nw = (size_t)d.OC * d.C * d.KH * d.KW;
        no = (size_t)d.B * d.OC * textok_conv2d_out_h(&d) * textok_conv2d_out_w(&d);
        snprintf(c->shape, sizeof c->shape, "B%d C%d %dx%d OC%d k%dx%d s%d p%d", s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[8]);
        textok__cmp_buf(c, "x", TEXTOK__IN_F32, nx, 0);
        textok__cmp_buf(c, "w", TEXTOK__IN_F32, nw, 0);
        textok__cmp_buf(c, "bias", TEXTOK__IN_F32, (size_t)d.OC, 0);
        textok__cmp_buf(c, "dout", TEXTOK__IN_F32, no, 0);
        textok__cmp_buf(c, "out", TEXTOK__OUT_F32, no, 0);
        textok__cmp_buf(c, "dx", TEXTOK__OUT_F32, nx, 0);
        textok__cmp_buf(c, "dw", TEXTOK__OUT_F32, nw, 0);
        textok__cmp_buf(c, "dbias", TEXTOK__OUT_F32, (size_t)d.OC, 0);
        textok__cmp_buf(c, "work", TEXTOK__SCRATCH, textok_conv2d_work_floats(&d), 0);
    }
    for (i = 0; i < 2; i++) {
        const int *s = gn[i];
        size_t nx = (size_t)s[0] * s[1] * s[2], ng = (size_t)s[0] * s[3];
        c = textok__cmp_new(cs, &n, "groupnorm", TEXTOK__TOL_SAME, textok__cmp_run_groupnorm);
        memcpy(c->dims, s, sizeof gn[0]);
        c->fdim = 1e-6f;
        snprintf(c->shape, sizeof c->shape, "B%d C%d HW%d G%d", s[0], s[1], s[2], s[3]);
        textok__cmp_buf(c, "x", TEXTOK__IN_F32, nx, 0);
        textok__cmp_buf(c, "w", TEXTOK__IN_F32, (size_t)s[1], 0);
        textok__cmp_buf(c, "bias", TEXTOK__IN_F32, (size_t)s[1], 0);
        textok__cmp_buf(c, "dout", TEXTOK__IN_F32, nx, 0);
        textok__cmp_buf(c, "out", TEXTOK__OUT_F32, nx, 0);
        textok__cmp_buf(c, "mean", TEXTOK__OUT_F32, ng, 0);
        textok__cmp_buf(c, "rstd", TEXTOK__OUT_F32, ng, 0);
        textok__cmp_buf(c, "dx", TEXTOK__OUT_F32, nx, 0);
        textok__cmp_buf(c, "dw", TEXTOK__OUT_F32, (size_t)s[1], 0);
        textok__cmp_buf(c, "dbias", TEXTOK__OUT_F32, (size_t)s[1], 0);
    }
    for (i = 0; i < 2; i++) {
        static const int up[][4] = { { 6, 4, 5, 2 }, { 2, 3, 3, 3 } };
        size_t nx = (size_t)up[i][0] * up[i][1] * up[i][2], no = nx * up[i][3] * up[i][3];
        c = textok__cmp_new(cs, &n, "upsample", TEXTOK__TOL_SAME, textok__cmp_run_upsample);
        memcpy(c->dims, up[i], sizeof up[0]);
        snprintf(c->shape, sizeof c->shape, "BC%d %dx%d x%d", up[i][0], up[i][1], up[i][2], up[i][3]);
        textok__cmp_buf(c, "x", TEXTOK__IN_F32, nx, 0);
        textok__cmp_buf(c, "dout", TEXTOK__IN_F32, no, 0);
        textok__cmp_buf(c, "out", TEXTOK__OUT_F32, no, 0);
        textok__cmp_buf(c, "dx", TEXTOK__OUT_F32, nx, 0);
    }
    for (i = 0; i < 3; i++) {
        const int *s = cb[i];
        /* dist is |z|^2 + |e|^2 - 2 z.e in float: cancellation makes its relative error ~1e-6 */
        c = textok__cmp_new(cs, &n, "codebook_search", 1e-9, textok__cmp_run_codebook);
        memcpy(c->dims, s, sizeof cb[0]);
        snprintf(c->shape, sizeof c->shape, "N%d K%d D%d", s[0], s[1], s[2]);
        textok__cmp_buf(c, "z", TEXTOK__IN_F32, (size_t)s[0] * s[2], 0);
        textok__cmp_buf(c, "codebook", TEXTOK__IN_F32, (size_t)s[1] * s[2], 0);
        textok__cmp_buf(c, "idx", TEXTOK__OUT_IDX, (size_t)s[0], 0);
        textok__cmp_buf(c, "dist", TEXTOK__OUT_F32, (size_t)s[0], 0);
        textok__cmp_buf(c, "work", TEXTOK__SCRATCH, textok_codebook_work_floats(s[0], s[1], s[2]), 0);
    }
    for (i = 0; i < 2; i++) {
        static const int ce[][2] = { { 8, 10 }, { 67, 1001 } };
        size_t nl = (size_t)ce[i][0] * ce[i][1];
        c = textok__cmp_new(cs, &n, "cross_entropy", TEXTOK__TOL_SAME, textok__cmp_run_cross_entropy);
        c->dims[0] = ce[i][0]; c->dims[1] = ce[i][1];
        c->fdim = i ? 0.1f : 0.0f;
        snprintf(c->shape, sizeof c->shape, "N%d V%d ls%.1f", ce[i][0], ce[i][1], (double)c->fdim);
        textok__cmp_buf(c, "logits", TEXTOK__IN_F32, nl, 0);
        textok__cmp_buf(c, "targets", TEXTOK__IN_I32, (size_t)ce[i][0], ce[i][1]);
        textok__cmp_buf(c, "dlosses", TEXTOK__IN_F32, (size_t)ce[i][0], 0);
        textok__cmp_buf(c, "losses", TEXTOK__OUT_F32, (size_t)ce[i][0], 0);
        textok__cmp_buf(c, "probs", TEXTOK__OUT_F32, nl, 0);
        textok__cmp_buf(c, "dlogits", TEXTOK__OUT_F32, nl, 0);
    }
    for (i = 0; i < 2; i++) {
        int len = i ? 70001 : 1001;
        c = textok__cmp_new(cs, &n, "adamw", TEXTOK__TOL_SAME, textok__cmp_run_adamw);
        c->dims[0] = len; c->dims[1] = 3;
        snprintf(c->shape, sizeof c->shape, "n%d steps3", len);
        textok__cmp_buf(c, "grads", TEXTOK__IN_F32, (size_t)len, 0);
        textok__cmp_buf(c, "params", TEXTOK__OUT_F32, (size_t)len, 0);
        textok__cmp_buf(c, "m", TEXTOK__OUT_F32, (size_t)len, 0);
        textok__cmp_buf(c, "v", TEXTOK__OUT_F32, (size_t)len, 1);   /* second moments are >= 0 */
    }
    return n;
}
#define TEXTOK__CMP_MAXCASES 64

static size_t textok__cmp_elsize(int kind)
{
    return kind == TEXTOK__IN_MASK ? 1 : 4;
}

/* Allocate, fill canaries, upload; returns the interior pointer or NULL. */
static void *textok__cmp_upload(const textok_kernels *k, const void *host, size_t bytes, unsigned char *stage)
{
    unsigned char *dev = (unsigned char *)k->alloc(k, bytes + 2 * TEXTOK__CMP_CANARY);
    if (!dev) return NULL;
    memset(stage, TEXTOK__CMP_BYTE, TEXTOK__CMP_CANARY);
    memcpy(stage + TEXTOK__CMP_CANARY, host, bytes);
    memset(stage + TEXTOK__CMP_CANARY + bytes, TEXTOK__CMP_BYTE, TEXTOK__CMP_CANARY);
    if (k->to_device(k, dev, stage, bytes + 2 * TEXTOK__CMP_CANARY) != TEXTOK_OK) { k->free(k, dev); return NULL; }
    return dev + TEXTOK__CMP_CANARY;
}

/* Download into host; returns 1 if both canaries are intact, 0 if not, -1 if the copy failed. */
static int textok__cmp_download(const textok_kernels *k, void *interior, void *host, size_t bytes, unsigned char *stage)
{
    size_t i;
    unsigned char *dev = (unsigned char *)interior - TEXTOK__CMP_CANARY;
    if (k->to_host(k, stage, dev, bytes + 2 * TEXTOK__CMP_CANARY) != TEXTOK_OK) return -1;
    memcpy(host, stage + TEXTOK__CMP_CANARY, bytes);
    for (i = 0; i < TEXTOK__CMP_CANARY; i++)
        if (stage[i] != TEXTOK__CMP_BYTE || stage[TEXTOK__CMP_CANARY + bytes + i] != TEXTOK__CMP_BYTE) return 0;
    return 1;
}

/* Run one case on one table: host[] holds inputs and initial outputs, results go to out[]. */
static int textok__cmp_run_on(const textok_kernels *k, const textok__cmp_case *c, void **host, void **out,
                              int *canary_ok, unsigned char *stage)
{
    void *dev[TEXTOK__CMP_MAXBUF];
    int i, st = TEXTOK_OK, unsupported = 0;
    memset(dev, 0, sizeof dev);
    for (i = 0; i < c->n_buf; i++) {
        dev[i] = textok__cmp_upload(k, host[i], c->count[i] * textok__cmp_elsize(c->kind[i]), stage);
        if (!dev[i]) { st = textok__fail(TEXTOK_ERR_NOMEM, "kernels_compare: %s: allocating/uploading buffer '%s' on table '%s' failed", c->kernel, c->name[i], k->name); break; }
    }
    if (st == TEXTOK_OK) unsupported = c->run(k, c, dev);
    for (i = 0; i < c->n_buf && dev[i]; i++) {
        if (st == TEXTOK_OK && !unsupported) {
            int r = textok__cmp_download(k, dev[i], out[i], c->count[i] * textok__cmp_elsize(c->kind[i]), stage);
            if (r < 0) st = textok__fail(TEXTOK_ERR_IO, "kernels_compare: %s: downloading '%s' from table '%s' failed", c->kernel, c->name[i], k->name);
            canary_ok[i] = r == 1;
        }
        k->free(k, (unsigned char *)dev[i] - TEXTOK__CMP_CANARY);
    }
    return st != TEXTOK_OK ? st : unsupported;
}

/* Codebook indices may differ only at near-ties: the distances of both picks, recomputed in
   double from the inputs, must agree to 1e-5 relative. Returns the number of real mismatches. */
static int textok__cmp_index_mismatches(const textok__cmp_case *c, void **host, const int32_t *ri, const int32_t *ti)
{
    const float *z = (const float *)host[0], *e = (const float *)host[1];
    int N = c->dims[0], K = c->dims[1], D = c->dims[2], i, bad = 0, dd;
    for (i = 0; i < N; i++) {
        double dr = 0.0, dt = 0.0;
        if (ri[i] == ti[i]) continue;
        if (ti[i] < 0 || ti[i] >= K) { bad++; continue; }
        for (dd = 0; dd < D; dd++) {
            double a = z[(size_t)i * D + dd] - e[(size_t)ri[i] * D + dd], b = z[(size_t)i * D + dd] - e[(size_t)ti[i] * D + dd];
            dr += a * a;
            dt += b * b;
        }
        if (!(fabs(dt - dr) <= 1e-5 * (1.0 + dr))) bad++;
    }
    return bad;
}

static void textok__cmp_metrics(textok_compare_result *r, const float *ref, const float *test, size_t n)
{
    double se = 0.0, sr = 0.0;
    size_t i;
    r->max_abs = r->max_rel = 0.0;
    for (i = 0; i < n; i++) {
        double a = ref[i], b = test[i], d = fabs(a - b);
        if (!isfinite(b) || !isfinite(a)) { r->why = isnan(b) || isnan(a) ? "NaN" : "Inf"; continue; }
        if (d > r->max_abs) r->max_abs = d;
        if (d / (fabs(a) + 1e-6) > r->max_rel) r->max_rel = d / (fabs(a) + 1e-6);
        se += d * d;
        sr += a * a;
    }
    r->nmse = sr > 0.0 ? se / sr : se;
}

TEXTOKDEF int textok_kernels_compare(const textok_kernels *ref, const textok_kernels *test,
                                     uint64_t seed, textok_compare_report_fn report, void *user)
{
    textok__cmp_case *cs = (textok__cmp_case *)textok__calloc(TEXTOK__CMP_MAXCASES, sizeof *cs);
    int n_cases, ci, fails = 0, st = TEXTOK_OK;
    textok_rng rng;
    if (!cs) return textok__fail(TEXTOK_ERR_NOMEM, "kernels_compare: out of memory");
    if (!ref || !test || !ref->alloc || !test->alloc || !ref->free || !test->free || !ref->to_device ||
        !test->to_device || !ref->to_host || !test->to_host) {
        TEXTOK_FREE(cs);
        return textok__fail(TEXTOK_ERR_ARG, "kernels_compare: both tables need alloc, free, to_device and to_host");
    }
    n_cases = textok__cmp_build(cs);
    TEXTOK_ASSERT(n_cases <= TEXTOK__CMP_MAXCASES);
    textok_rng_seed(&rng, seed);
    for (ci = 0; ci < n_cases && st == TEXTOK_OK; ci++) {
        const textok__cmp_case *c = &cs[ci];
        void *host[TEXTOK__CMP_MAXBUF], *out_ref[TEXTOK__CMP_MAXBUF], *out_test[TEXTOK__CMP_MAXBUF];
        int canary_ref[TEXTOK__CMP_MAXBUF], canary_test[TEXTOK__CMP_MAXBUF], i, r1, r2;
        size_t maxbytes = 0;
        unsigned char *stage;
        memset(host, 0, sizeof host); memset(out_ref, 0, sizeof out_ref); memset(out_test, 0, sizeof out_test);
        for (i = 0; i < c->n_buf; i++) {
            size_t bytes = c->count[i] * textok__cmp_elsize(c->kind[i]), j;
            host[i] = textok__malloc(bytes);
            out_ref[i] = textok__malloc(bytes);
            out_test[i] = textok__malloc(bytes);
            if (!host[i] || !out_ref[i] || !out_test[i]) { st = textok__fail(TEXTOK_ERR_NOMEM, "kernels_compare: out of memory"); break; }
            if (bytes > maxbytes) maxbytes = bytes;
            if (c->kind[i] == TEXTOK__IN_I32) {
                int32_t *t = (int32_t *)host[i];
                for (j = 0; j < c->count[i]; j++)
                    t[j] = (textok_rng_u32(&rng) % 8 == 0) ? -1 : (int32_t)(textok_rng_u32(&rng) % (uint32_t)c->range[i]);
            } else if (c->kind[i] == TEXTOK__IN_MASK) {
                unsigned char *m = (unsigned char *)host[i];
                for (j = 0; j < c->count[i]; j++) m[j] = (unsigned char)(j % (size_t)c->range[i] == 0 || textok_rng_uniform(&rng) < 0.75f);
            } else {
                float *x = (float *)host[i];
                textok_rng_fill_normal(&rng, x, c->count[i], 0.0f, 1.0f);
                if (c->range[i] == 1) for (j = 0; j < c->count[i]; j++) x[j] = fabsf(x[j]);
            }
        }
        stage = st == TEXTOK_OK ? (unsigned char *)textok__malloc(maxbytes + 2 * TEXTOK__CMP_CANARY) : NULL;
        if (st == TEXTOK_OK && !stage) st = textok__fail(TEXTOK_ERR_NOMEM, "kernels_compare: out of memory");
        if (st == TEXTOK_OK) {
            r1 = textok__cmp_run_on(ref, c, host, out_ref, canary_ref, stage);
            r2 = r1 == 0 ? textok__cmp_run_on(test, c, host, out_test, canary_test, stage) : r1;
            if (r1 < 0) st = r1;
            else if (r2 < 0) st = r2;
            else if (r1 == 0 && r2 == 0) {
                for (i = 0; i < c->n_buf; i++) {
                    textok_compare_result res;
                    if (c->kind[i] != TEXTOK__OUT_F32 && c->kind[i] != TEXTOK__OUT_IDX && c->kind[i] != TEXTOK__SCRATCH) continue;
                    memset(&res, 0, sizeof res);
                    res.kernel = c->kernel;
                    res.output = c->name[i];
                    res.why = "";
                    res.tol_nmse = c->tol;
                    snprintf(res.shape, sizeof res.shape, "%s", c->shape);
                    if (c->kind[i] == TEXTOK__OUT_F32)
                        textok__cmp_metrics(&res, (const float *)out_ref[i], (const float *)out_test[i], c->count[i]);
                    else if (c->kind[i] == TEXTOK__OUT_IDX) {
                        int bad = textok__cmp_index_mismatches(c, host, (const int32_t *)out_ref[i], (const int32_t *)out_test[i]);
                        res.max_abs = bad;
                        if (bad) res.why = "index";
                    }
                    if (!canary_test[i] || !canary_ref[i]) res.why = "canary";
                    res.ok = !res.why[0] && (c->kind[i] != TEXTOK__OUT_F32 || res.nmse <= c->tol);
                    if (!res.ok && !res.why[0]) res.why = "tolerance";
                    if (!res.ok) fails++;
                    if (c->kind[i] == TEXTOK__SCRATCH && res.ok) continue;   /* report scratch only on failure */
                    if (report) report(&res, user);
                }
            }
        }
        TEXTOK_FREE(stage);
        for (i = 0; i < c->n_buf; i++) { TEXTOK_FREE(host[i]); TEXTOK_FREE(out_ref[i]); TEXTOK_FREE(out_test[i]); }
    }
    TEXTOK_FREE(cs);
    return st != TEXTOK_OK ? st : fails;
}
