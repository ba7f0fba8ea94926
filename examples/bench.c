/* bench: GFLOP/s of the kernels at ViT shapes, naive reference beside the fast table, and the
   fraction of this machine's measured sgemm peak. A benchmark, not a test: numbers depend on the
   machine and its load; compare rows of one run with each other.
     build/bench [--threads N] [--reps R]
     build/bench --titok [--models s128,b64,l32] [--batches 1,8] [--torch] [--threads N]
   --titok times whole TiTok models (official sizes, random weights): encode, and decode split
   into the ViT decoder and the pixel decoder, in ms per image. --torch first runs
   tools/bench_torch.py (the PyTorch reference, same machine, same threads) and prints its time
   next to ours with the ratio. */
#define _POSIX_C_SOURCE 200112L   /* clock_gettime, popen, strtok_r */
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

/* ----- whole models ----- */
static int titok_preset(const char *name, textok_titok_config *c)
{
    static const int mult[5] = { 1, 1, 2, 2, 4 };
    int w, l, h, K, i;
    if (!strcmp(name, "s128")) { w = 512; l = 8; h = 8; K = 128; }
    else if (!strcmp(name, "b64")) { w = 768; l = 12; h = 12; K = 64; }
    else if (!strcmp(name, "l32")) { w = 1024; l = 24; h = 16; K = 32; }
    else return 0;
    memset(c, 0, sizeof *c);
    c->image_size = 256; c->patch_size = 16; c->num_latent_tokens = K; c->token_size = 12;
    c->enc_width = c->dec_width = w; c->enc_layers = c->dec_layers = l; c->enc_heads = c->dec_heads = h;
    c->enc_mlp = c->dec_mlp = 4 * w;
    c->quantize_mode = TEXTOK_QUANT_VQ; c->codebook_size = 4096; c->use_l2_norm = 1; c->is_legacy = 1;
    c->pixel_codebook_size = 1024; c->pixel_z_channels = 256; c->pixel_hidden = 128; c->pixel_num_levels = 5;
    for (i = 0; i < 5; i++) c->pixel_channel_mult[i] = mult[i];
    c->pixel_res_blocks = 2; c->pixel_groups = 32;
    return 1;
}

#define MAX_TORCH_ROWS 64
typedef struct { char model[16], stage[16]; int batch; double ms; } torch_row;

static int run_torch(const char *models, const char *batches, int threads, torch_row *rows)
{
    char cmd[512], line[256];
    FILE *f;
    int n = 0;
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 tools/bench_torch.py --models %s --batches %s --threads %d",
             models, batches, threads);
    printf("running the PyTorch reference first: %s\n", cmd);
    fflush(stdout);
    if (!(f = popen(cmd, "r"))) { printf("  (could not run it)\n"); return 0; }
    while (fgets(line, sizeof line, f) && n < MAX_TORCH_ROWS) {
        torch_row *r = &rows[n];
        if (sscanf(line, "torch %15s %d %15s %lf", r->model, &r->batch, r->stage, &r->ms) == 4) n++;
        else if (line[0] == '#') printf("  %s", line);
    }
    if (pclose(f) != 0) printf("  (tools/bench_torch.py failed: is python3-torch installed?)\n");
    return n;
}

static double torch_ms(const torch_row *rows, int n, const char *model, int batch, const char *stage)
{
    int i;
    for (i = 0; i < n; i++)
        if (!strcmp(rows[i].model, model) && rows[i].batch == batch && !strcmp(rows[i].stage, stage)) return rows[i].ms;
    return 0.0;
}

static void titok_row(const char *model, int B, const char *stage, double s, double flops, double peak, double tms)
{
    double ms = 1e3 * s / B;
    printf("%-6s %5d  %-13s %10.1f %9.1f %6.1f%%", model, B, stage, ms, flops / s * 1e-9, 100.0 * flops / s * 1e-9 / peak);
    if (tms > 0.0) printf(" %10.1f %7.2fx\n", tms, tms / ms);
    else printf(" %10s %8s\n", "-", "-");
    fflush(stdout);
}

static int titok_bench(const char *models, const char *batches, int threads, int torch, double peak)
{
    torch_row rows[MAX_TORCH_ROWS];
    int n_rows = torch ? run_torch(models, batches, threads, rows) : 0;
    char list[256], *name, *save = NULL;
    snprintf(list, sizeof list, "%s", models);
    printf("\n%-6s %5s  %-13s %10s %9s %7s %10s %8s\n", "model", "batch", "stage", "ms/image", "GFLOP/s",
           "%peak", "torch ms", "speedup");
    for (name = strtok_r(list, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
        textok_titok_config cfg;
        textok_params p = textok_default_params();
        textok_titok *m = NULL;
        char bl[64], *bs, *save2 = NULL;
        int maxb = 1;
        if (!titok_preset(name, &cfg)) { fprintf(stderr, "bench: unknown model '%s' (s128, b64, l32)\n", name); return 2; }
        snprintf(bl, sizeof bl, "%s", batches);
        for (bs = strtok_r(bl, ",", &save2); bs; bs = strtok_r(NULL, ",", &save2)) if (atoi(bs) > maxb) maxb = atoi(bs);
        p.n_threads = threads; p.max_batch = maxb;
        if (textok_titok_create(&m, &cfg, &p, 1) != TEXTOK_OK) { fprintf(stderr, "bench: %s\n", textok_last_error()); return 1; }
        snprintf(bl, sizeof bl, "%s", batches);
        for (bs = strtok_r(bl, ",", &save2); bs; bs = strtok_r(NULL, ",", &save2)) {
            int B = atoi(bs);
            size_t n = (size_t)B * 3 * 256 * 256;
            float *img = (float *)malloc(n * sizeof(float)), *out = (float *)malloc(n * sizeof(float));
            int32_t *ids = (int32_t *)malloc((size_t)B * cfg.num_latent_tokens * sizeof(int32_t));
            textok_titok_timing te, td;
            textok_rng r;
            if (!img || !out || !ids || B < 1) { fprintf(stderr, "bench: bad batch or out of memory\n"); return 1; }
            textok_rng_seed(&r, 2);
            textok_rng_fill_uniform(&r, img, n, 0.0f, 1.0f);
            textok_titok_encode(m, img, 1, ids, NULL, NULL, NULL);           /* warm-up */
            textok_titok_encode(m, img, B, ids, NULL, NULL, NULL);
            te = textok_titok_last_timing(m);
            textok_titok_decode_tokens(m, ids, B, out);
            td = textok_titok_last_timing(m);
            titok_row(name, B, "encode", te.encoder_s + te.quantize_s, te.encoder_flops, peak, torch_ms(rows, n_rows, name, B, "encode"));
            titok_row(name, B, "decode_vit", td.decoder_s, td.decoder_flops, peak, torch_ms(rows, n_rows, name, B, "decode_vit"));
            titok_row(name, B, "decode_pixel", td.pixel_decoder_s, td.pixel_decoder_flops, peak, torch_ms(rows, n_rows, name, B, "decode_pixel"));
            titok_row(name, B, "decode", td.decoder_s + td.pixel_decoder_s, td.decoder_flops + td.pixel_decoder_flops, peak,
                      torch_ms(rows, n_rows, name, B, "decode"));
            free(img); free(out); free(ids);
        }
        textok_titok_free(m);
    }
    printf("\nOne timed run after a warm-up (ours); torch: median of 3. decode_vit includes, on our side, the\n"
           "softmax and soft code lookup that torch's row counts under decode_pixel (<1%% of the work).\n");
    return 0;
}

int main(int argc, char **argv)
{
    int threads = 0, reps = 5, i, s, bi, titok = 0, torch = 0;
    const char *models = "s128,b64,l32", *batches = "1,8";
    textok_kernels ref = textok_cpu_ref_kernels(), fast;
    textok_rng r;
    double peak;
    static const int lin[3][2] = { { 768, 2304 }, { 768, 3072 }, { 3072, 768 } };   /* in -> out */
    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--titok")) titok = 1;
        else if (!strcmp(argv[i], "--torch")) torch = 1;
        else if (!strcmp(argv[i], "--models") && i + 1 < argc) models = argv[++i];
        else if (!strcmp(argv[i], "--batches") && i + 1 < argc) batches = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--threads N] [--reps R] | --titok [--models s128,b64,l32] [--batches 1,8] [--torch]\n"
                    "unknown or incomplete flag '%s'\n", argv[0], argv[i]);
            return 2;
        }
    }
    fast = textok_cpu_kernels(threads);
    if (titok) {
        peak = peak_gflops(&fast);
        printf("textok %s: %d threads; measured sgemm peak %.1f GFLOP/s\n", textok_version(), fast.n_threads, peak);
        return titok_bench(models, batches, fast.n_threads, torch, peak);
    }
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
