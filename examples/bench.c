/* bench: GFLOP/s of the kernels at ViT shapes, naive reference beside the fast table, and the
   fraction of this machine's measured sgemm peak. A benchmark, not a test: numbers depend on the
   machine and its load; compare rows of one run with each other.
     build/bench [--threads N] [--reps R] */
#define _POSIX_C_SOURCE 199309L
#define TEXTOK_IMPLEMENTATION
#include "textok.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static float *rnd(textok_rng *r, size_t n)
{
    float *x = (float *)malloc(n * sizeof(float));
    if (!x) { fprintf(stderr, "bench: out of memory (%zu floats)\n", n); exit(1); }
    textok_rng_fill_normal(r, x, n, 0.0f, 1.0f);
    return x;
}

typedef struct { const textok_kernels *k; int which; textok_matmul_dims mm; textok_attention_dims at;
                 textok_conv2d_dims cv; float *a, *b, *c, *d, *e, *w; int N, C; } job;

static void run(job *j)
{
    const textok_kernels *k = j->k;
    switch (j->which) {
    case 0: k->matmul_forward(k, j->c, j->a, j->b, j->d, &j->mm); break;
    case 1: k->attention_forward(k, j->d, j->e, j->a, j->b, j->c, NULL, NULL, &j->at, j->w); break;
    case 2: k->layernorm_forward(k, j->c, NULL, NULL, j->a, j->b, j->d, j->N, j->C, 1e-5f); break;
    case 3: k->conv2d_forward(k, j->c, j->a, j->b, j->d, &j->cv, j->w); break;
    default: break;
    }
}

/* best-of-reps seconds; at least one run, more while under ~0.3 s total */
static double timeit(job *j, int reps)
{
    double best = 1e30, spent = 0.0;
    int r;
    for (r = 0; r < reps || (spent < 0.3 && r < 50); r++) {
        double t0 = now(), dt;
        run(j);
        dt = now() - t0;
        spent += dt;
        if (dt < best) best = dt;
        if (dt > 2.0) break;   /* the naive kernels at large shapes: one run is enough */
    }
    return best;
}

static double peak_gflops(const textok_kernels *fast)
{
    /* the machine's sgemm peak: the best of large square products through the fast table's
       GEMM, both with B as stored and transposed (a shared machine only ever slows it down) */
    int n = 1536, tb;
    textok_rng r;
    job j;
    double t = 1e30;
    memset(&j, 0, sizeof j);
    textok_rng_seed(&r, 1);
    j.k = fast; j.which = 0;
    j.mm.batch = 1; j.mm.M = n; j.mm.N = n; j.mm.K = n;
    j.a = rnd(&r, (size_t)n * n); j.b = rnd(&r, (size_t)n * n); j.c = rnd(&r, (size_t)n * n);
    run(&j);
    for (tb = 0; tb < 2; tb++) {
        double tt;
        j.mm.trans_b = tb;
        tt = timeit(&j, 8);
        if (tt < t) t = tt;
    }
    free(j.a); free(j.b); free(j.c);
    return 2.0 * n * n * n / t * 1e-9;
}

static void row(const char *name, const char *shape, double flops, job *j, const textok_kernels *ref,
                const textok_kernels *fast, int reps, int naive, double peak)
{
    double tn = 0.0, tf;
    j->k = fast;
    tf = timeit(j, reps);
    if (naive) { j->k = ref; tn = timeit(j, 1); }
    if (naive)
        printf("%-10s %-34s %9.2f %10.2f %9.1f %9.1f %6.1fx %6.1f%%\n", name, shape, flops * 1e-9, tf * 1e3,
               flops / tn * 1e-9, flops / tf * 1e-9, tn / tf, 100.0 * flops / tf * 1e-9 / peak);
    else
        printf("%-10s %-34s %9.2f %10.2f %9s %9.1f %7s %6.1f%%\n", name, shape, flops * 1e-9, tf * 1e3,
               "-", flops / tf * 1e-9, "-", 100.0 * flops / tf * 1e-9 / peak);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    int threads = 0, reps = 5, i, s, bi;
    textok_kernels ref = textok_cpu_ref_kernels(), fast;
    textok_rng r;
    double peak;
    static const int lin[3][2] = { { 768, 2304 }, { 768, 3072 }, { 3072, 768 } };   /* in -> out */
    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else { fprintf(stderr, "usage: %s [--threads N] [--reps R]\nunknown or incomplete flag '%s'\n", argv[0], argv[i]); return 2; }
    }
    fast = textok_cpu_kernels(threads);
    textok_rng_seed(&r, 7);
#ifdef TEXTOK_USE_BLAS
    printf("textok %s bench: %d threads, GEMM = cblas_sgemm", textok_version(), fast.n_threads);
    printf(" (OPENBLAS_CORETYPE=%s)\n", getenv("OPENBLAS_CORETYPE") ? getenv("OPENBLAS_CORETYPE") : "unset");
#else
    printf("textok %s bench: %d threads, GEMM = portable blocked (built without BLAS)\n", textok_version(), fast.n_threads);
#endif
    peak = peak_gflops(&fast);
    printf("measured sgemm peak (1536^3 through the fast table): %.1f GFLOP/s\n\n", peak);
    printf("%-10s %-34s %9s %10s %9s %9s %7s %7s\n", "kernel", "shape", "GFLOP", "fast ms", "naive GF/s", "fast GF/s", "speedup", "%peak");

    for (bi = 0; bi < 2; bi++) {
        int B = bi ? 8 : 1, T = 321;
        for (s = 0; s < 3; s++) {
            job j;
            char shape[64];
            memset(&j, 0, sizeof j);
            j.which = 0;
            j.mm.batch = 1; j.mm.M = B * T; j.mm.K = lin[s][0]; j.mm.N = lin[s][1]; j.mm.trans_b = 1;
            j.a = rnd(&r, (size_t)B * T * lin[s][0]); j.b = rnd(&r, (size_t)lin[s][0] * lin[s][1]);
            j.c = rnd(&r, (size_t)B * T * lin[s][1]); j.d = rnd(&r, (size_t)lin[s][1]);
            snprintf(shape, sizeof shape, "%dx%dx%d -> %d (linear)", B, T, lin[s][0], lin[s][1]);
            row("matmul", shape, 2.0 * B * T * lin[s][0] * lin[s][1], &j, &ref, &fast, reps, B == 1, peak);
            free(j.a); free(j.b); free(j.c); free(j.d);
        }
    }
    for (bi = 0; bi < 2; bi++) {
        int B = bi ? 8 : 1, T = 321, C = 768;
        job j;
        char shape[64];
        memset(&j, 0, sizeof j);
        j.which = 1;
        j.at.B = B; j.at.Tq = T; j.at.Tk = T; j.at.C = C; j.at.H = 12; j.at.scale = 0.125f;
        j.a = rnd(&r, (size_t)B * T * C); j.b = rnd(&r, (size_t)B * T * C); j.c = rnd(&r, (size_t)B * T * C);
        j.d = rnd(&r, (size_t)B * T * C); j.e = rnd(&r, (size_t)B * 12 * T); j.w = rnd(&r, textok_attention_work_floats(&j.at));
        snprintf(shape, sizeof shape, "B%d T%d C%d H12", B, T, C);
        row("attention", shape, 4.0 * B * T * T * C, &j, &ref, &fast, reps, B == 1, peak);
        free(j.a); free(j.b); free(j.c); free(j.d); free(j.e); free(j.w);
    }
    {
        job j;
        memset(&j, 0, sizeof j);
        j.which = 2; j.N = 8 * 321; j.C = 768;
        j.a = rnd(&r, (size_t)j.N * j.C); j.c = rnd(&r, (size_t)j.N * j.C); j.b = rnd(&r, 768); j.d = rnd(&r, 768);
        row("layernorm", "8x321x768", 8.0 * j.N * j.C, &j, &ref, &fast, reps, 1, peak);
        free(j.a); free(j.b); free(j.c); free(j.d);
    }
    {
        static const int cv[2][5] = { { 128, 64, 128, 3, 1 }, { 256, 32, 256, 3, 1 } };   /* C HW OC k pad */
        for (s = 0; s < 2; s++) {
            job j;
            char shape[64];
            size_t oh;
            memset(&j, 0, sizeof j);
            j.which = 3;
            j.cv.B = 1; j.cv.C = cv[s][0]; j.cv.H = j.cv.W = cv[s][1]; j.cv.OC = cv[s][2];
            j.cv.KH = j.cv.KW = cv[s][3]; j.cv.stride = 1; j.cv.pad = cv[s][4];
            oh = (size_t)textok_conv2d_out_h(&j.cv);
            j.a = rnd(&r, (size_t)j.cv.C * j.cv.H * j.cv.W); j.b = rnd(&r, (size_t)j.cv.OC * j.cv.C * 9);
            j.c = rnd(&r, (size_t)j.cv.OC * oh * oh); j.d = rnd(&r, (size_t)j.cv.OC); j.w = rnd(&r, textok_conv2d_work_floats(&j.cv));
            snprintf(shape, sizeof shape, "C%d %dx%d -> OC%d k3 p1", j.cv.C, j.cv.H, j.cv.W, j.cv.OC);
            row("conv2d", shape, 2.0 * j.cv.OC * oh * oh * j.cv.C * 9, &j, &ref, &fast, reps, 1, peak);
            free(j.a); free(j.b); free(j.c); free(j.d); free(j.w);
        }
    }
    printf("\nnaive = the reference table (one thread, sums in double); '-' = not timed (would take minutes).\n");
    return 0;
}
