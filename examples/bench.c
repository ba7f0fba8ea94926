/* bench: GFLOP/s of the kernels at ViT shapes, naive reference beside the fast table, and the
   fraction of this machine's measured sgemm peak. A benchmark, not a test: numbers depend on the
   machine and its load; compare rows of one run with each other.
     build/bench [--threads N] [--reps R]
     build/bench --titok [--models s128,b64,l32] [--batches 1,8] [--torch] [--threads N]
   --titok times whole TiTok models (official sizes, random weights): encode, and decode split
   into the ViT decoder and the pixel decoder, in ms per image. --torch first runs
   tools/bench_torch.py (the PyTorch reference, same machine, same threads) and prints its time
   next to ours with the ratio.
     build/bench --train [--models tiny-vq,tiny-vae,s128-vq,tiny-vq+gan,s128-vq+gan] [--torch] [--threads N]
   --train times whole training steps (textok_trainer_step) in ms per step for a tiny ViT tokenizer
   (VQ and VAE, batch 8) and a TiTok-S-128-sized one (batch 4) with the L2 loss, and the tiny VQ
   one with LPIPS + the discriminator (s128-vq+gan: ~30 s a step, only when named); --torch
   runs tools/bench_train_torch.py first, the same steps in PyTorch.
     build/bench --compare [--quick | --full] [--no-torch] [--budget S] [--prefix CMD] [--verbose]
   --compare is issue 7's table: every row side by side for ours, PyTorch default (no environment
   variables) and PyTorch tuned (OPENBLAS_CORETYPE=SkylakeX OMP_WAIT_POLICY=passive), with the
   ratios, GFLOP/s, % of the run's measured sgemm peak and the peak RSS of each side, one process
   per unit of work (see compare() below). Ours runs with neither variable set. Rows: sgemm
   2048^3, attention at ViT shapes, TiTok-S-128 / B-64 / L-32 encode and decode at batch 1, the
   pixel decoder alone, a training step (tiny and S-128-sized ViT tokenizers, batch 4) and one
   guided DiT-B sampling step for 8 images (x 250 below the table). --quick: sgemm, attention,
   S-128, tiny training (~3 min); the default run ~10 min on 2 cores; --full adds batch 8 rows.
   --budget: seconds of timed calls per measurement (1.5; quick 1). --prefix: put in front of
   every child's command (e.g. 'flock /tmp/bench.lock' on a shared machine, 'taskset -c 0,1').
   Run it from the repository root (tools/bench_compare_torch.py, /usr/bin/python3).
     build/bench_cuda --cuda [--titok ...] [--train ...] [--torch]     (make cuda)
   --cuda (only in build/bench_cuda, which links textok_cuda.cu) runs --titok and --train on the
   CUDA table (device 0, strict FP32): ms/image from the wall clock around whole calls (they end
   with the copy of their outputs to the host, so the GPU work is inside), GFLOP/s and % of the
   cuBLAS SGEMM peak measured through the table (4096^3); --torch then runs the PyTorch scripts
   with --device cuda (a CUDA build of torch; TF32 off on both sides) and prints the ratio.
   --cuda alone: TiTok-S-128 encode/decode at batch 1 and 64, and the s128-vq training step. */
#define _POSIX_C_SOURCE 200112L   /* clock_gettime, popen, strtok_r */
#define TEXTOK_IMPLEMENTATION
#include "textok.h"
#ifdef TEXTOK_CUDA
#include "textok_cuda.h"
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>   /* getrusage: peak RSS of a --row unit */
#include <unistd.h>         /* readlink: /proc/self/exe for --compare's children */

/* --cuda: the table --titok and --train run on (NULL: the fast CPU table), and torch's device */
static const textok_kernels *g_kernels = NULL;
static const char *g_torch_device = "cpu";

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

/* runs a tools/ script and collects its "torch <model> <batch> <stage> <ms>" lines; '#' lines
   are echoed. show: the command as printed (the full one can be long). */
static int run_torch_cmd(const char *cmd, const char *show, torch_row *rows)
{
    char line[256];
    FILE *f;
    int n = 0;
    printf("running the PyTorch reference first: %s\n", show);
    fflush(stdout);
    if (!(f = popen(cmd, "r"))) { printf("  (could not run it)\n"); return 0; }
    while (fgets(line, sizeof line, f)) {
        torch_row *r = &rows[n];
        if (n < MAX_TORCH_ROWS && sscanf(line, "torch %15s %d %15s %lf", r->model, &r->batch, r->stage, &r->ms) == 4) n++;
        else if (line[0] == '#') printf("  %s", line);
    }
    if (pclose(f) != 0) printf("  (%s failed: is python3-torch installed?)\n", show);
    return n;
}

static int run_torch(const char *models, const char *batches, int threads, torch_row *rows)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 tools/bench_torch.py --models %s --batches %s --threads %d --device %s",
             models, batches, threads, g_torch_device);
    return run_torch_cmd(cmd, cmd, rows);
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
        p.n_threads = threads; p.max_batch = maxb; p.kernels = g_kernels;
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
            if (g_kernels) {   /* GPU: wall clock around whole calls (async kernels), warm-up at this batch */
                double t0, enc_s, dec_s;
                int st = textok_titok_encode(m, img, B, NULL, ids, NULL, NULL, NULL);
                if (st == TEXTOK_OK) st = textok_titok_decode_tokens(m, ids, B, NULL, out);
                t0 = now();
                if (st == TEXTOK_OK) st = textok_titok_encode(m, img, B, NULL, ids, NULL, NULL, NULL);
                enc_s = now() - t0;
                te = textok_titok_last_timing(m);
                t0 = now();
                if (st == TEXTOK_OK) st = textok_titok_decode_tokens(m, ids, B, NULL, out);
                dec_s = now() - t0;
                td = textok_titok_last_timing(m);
                if (st != TEXTOK_OK) { fprintf(stderr, "bench: %s: %s\n", name, textok_last_error()); return 1; }
                titok_row(name, B, "encode", enc_s, te.encoder_flops, peak, torch_ms(rows, n_rows, name, B, "encode"));
                titok_row(name, B, "decode", dec_s, td.decoder_flops + td.pixel_decoder_flops, peak,
                          torch_ms(rows, n_rows, name, B, "decode"));
                free(img); free(out); free(ids);
                continue;
            }
            textok_titok_encode(m, img, 1, NULL, ids, NULL, NULL, NULL);           /* warm-up */
            textok_titok_encode(m, img, B, NULL, ids, NULL, NULL, NULL);
            te = textok_titok_last_timing(m);
            textok_titok_decode_tokens(m, ids, B, NULL, out);
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

/* ----- training steps (--train) ----- */
/* Rows: a tiny ViT tokenizer (VQ and VAE) at batch 8, and a TiTok-S-128-sized non-legacy VQ
   tokenizer (direct pixel head: the legacy conv pixel decoder is not a ViT) at batch 4, with the
   L2 loss; then the VQ ones again with LPIPS + the discriminator (the GAN step included). Every
   model and training value is handed to tools/bench_train_torch.py on its command line, so the
   PyTorch step trains the same model with the same settings (the weights differ: both random). */
typedef struct {
    const char *name;
    int batch, warmup, steps;   /* images per step; untimed steps first; timed steps (median) */
    int loss_nets;              /* 1: + LPIPS (VGG16 widths) and the default discriminator */
    int optional;               /* 1: only when named in --models (too slow for the default run) */
    textok_titok_config cfg;
} train_row;

static textok_titok_config vit_tokenizer(int S, int p, int K, int C, int width, int layers, int heads, int mlp,
                                         int vae, int V)
{
    textok_titok_config c;
    memset(&c, 0, sizeof c);   /* is_legacy 0 and no pixel decoder */
    c.image_size = S; c.patch_size = p; c.num_latent_tokens = K; c.token_size = C;
    c.enc_width = c.dec_width = width; c.enc_layers = c.dec_layers = layers;
    c.enc_heads = c.dec_heads = heads; c.enc_mlp = c.dec_mlp = mlp;
    c.quantize_mode = vae ? TEXTOK_QUANT_VAE : TEXTOK_QUANT_VQ;
    c.codebook_size = vae ? 0 : V;
    c.use_l2_norm = !vae;
    return c;
}

static train_row mkrow(const char *name, int batch, int warmup, int steps, textok_titok_config cfg)
{
    train_row r;
    memset(&r, 0, sizeof r);
    r.name = name; r.batch = batch; r.warmup = warmup; r.steps = steps; r.cfg = cfg;
    return r;
}

static int train_rows(train_row *rows)
{
    int n = 0;
    /* tiny: 32x32, patch 8 (16 patches), 16 latent tokens, width 64, 2 layers each side */
    rows[n++] = mkrow("tiny-vq", 8, 3, 20, vit_tokenizer(32, 8, 16, 12, 64, 2, 2, 256, 0, 256));
    rows[n++] = mkrow("tiny-vae", 8, 3, 20, vit_tokenizer(32, 8, 16, 12, 64, 2, 2, 256, 1, 0));
    /* TiTok-S-128 sizes: 256x256, patch 16, K 128, width 512, 8 layers, 8 heads, MLP 2048,
       token_size 12, codebook 4096 (l2-normalised); ~5-8 s a step on 2 cores: few timed steps */
    rows[n++] = mkrow("s128-vq", 4, 1, 5, vit_tokenizer(256, 16, 128, 12, 512, 8, 8, 2048, 0, 4096));
    /* with LPIPS (VGG16 widths, random weights) + the default discriminator: perceptual 0.1,
       GAN 0.1 from step 0 with LeCAM, so every step also runs the discriminator's update.
       Convolutions on small images dominate: seconds a step even at 32x32 */
    rows[n] = rows[0]; rows[n].name = "tiny-vq+gan"; rows[n].loss_nets = 1; rows[n].warmup = 1; rows[n].steps = 3; n++;
    /* ~2.5 TFLOP a step (VGG16 LPIPS on x and x^ at 256, the discriminator on 2B images): 25-35 s
       a step on 2 cores (2 minutes with --torch), so only when asked for: --models s128-vq+gan */
    rows[n] = rows[2]; rows[n].name = "s128-vq+gan"; rows[n].loss_nets = 1; rows[n].steps = 1; rows[n].optional = 1; n++;
    return n;
}

static const int vgg16_channels[5] = { 64, 128, 256, 512, 512 };

/* The training values of every row: the TA-TiTok single-stage preset (VQ quantizer 1.0, KL
   1e-6, AdamW (0.9, 0.99), weight decay 1e-4 by the official name rule, clip 1.0, EMA 0.999),
   no LR warmup so that every timed step moves the weights. */
static textok_train_config train_config(const train_row *r)
{
    textok_train_config tc;
    textok_train_preset(&tc, "tatitok");
    tc.batch = r->batch;
    tc.warmup_steps = 0;
    if (r->loss_nets) { tc.perceptual_weight = 0.1f; tc.disc_weight = 0.1f; tc.disc_start = 0; }
    else { tc.perceptual_weight = 0.0f; tc.disc_weight = 0.0f; }
    return tc;
}

/* the row for tools/bench_train_torch.py: NAME:BATCH:WARMUP:STEPS:model key=value,...:train key=value,... */
static void torch_train_spec(char *buf, size_t size, const train_row *r)
{
    const textok_titok_config *c = &r->cfg;
    textok_train_config tc = train_config(r);
    int len = snprintf(buf, size,
        "%s:%d:%d:%d:image_size=%d,patch_size=%d,num_latent_tokens=%d,token_size=%d,enc_width=%d,enc_layers=%d,"
        "enc_heads=%d,enc_mlp=%d,dec_width=%d,dec_layers=%d,dec_heads=%d,dec_mlp=%d,quantize_mode=%s,"
        "codebook_size=%d,use_l2_norm=%d,is_legacy=0:recon_weight=%g,lr=%g,end_lr=%g,beta1=%g,beta2=%g,eps=%g,weight_decay=%g,"
        "grad_clip=%g,ema_decay=%g,commitment_cost=%g,quantizer_weight=%g,kl_weight=%g,vae_sample=%d",
        r->name, r->batch, r->warmup, r->steps, c->image_size, c->patch_size, c->num_latent_tokens, c->token_size,
        c->enc_width, c->enc_layers, c->enc_heads, c->enc_mlp, c->dec_width, c->dec_layers, c->dec_heads, c->dec_mlp,
        c->quantize_mode == TEXTOK_QUANT_VQ ? "vq" : "vae", c->codebook_size, c->use_l2_norm, (double)tc.recon_weight,
        tc.lr, tc.end_lr, tc.beta1, tc.beta2, tc.eps, tc.weight_decay, (double)tc.grad_clip, tc.ema_decay,
        (double)tc.commitment_cost, (double)tc.quantizer_weight, (double)tc.kl_weight, tc.vae_sample);
    if (r->loss_nets && len > 0 && (size_t)len < size) {
        textok_disc_config dc = textok_disc_default_config();
        snprintf(buf + len, size - (size_t)len,
                 ",perceptual_weight=%g,disc_weight=%g,disc_factor=%g,lecam_weight=%g,lecam_decay=%g,"
                 "disc_lr=%g,lpips_channels=%d/%d/%d/%d/%d,disc_hidden=%d,disc_stages=%d,disc_groups=%d,disc_pool=%d",
                 (double)tc.perceptual_weight, (double)tc.disc_weight, (double)tc.disc_factor, (double)tc.lecam_weight,
                 (double)tc.lecam_decay, tc.disc_lr, vgg16_channels[0], vgg16_channels[1], vgg16_channels[2],
                 vgg16_channels[3], vgg16_channels[4], dc.hidden, dc.stages, dc.groups, dc.pool);
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int in_list(const char *list, const char *name)
{
    char buf[256], *t, *save = NULL;
    snprintf(buf, sizeof buf, "%s", list);
    for (t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) if (!strcmp(t, name)) return 1;
    return 0;
}

/* --models names the rows; without it every row but the optional ones runs */
static int selected(const char *models, const train_row *r)
{
    return models ? in_list(models, r->name) : !r->optional;
}

/* one row: create the model (and loss networks), count the forward FLOPs with one image through
   encode + decode, then warm-up and timed trainer steps. Out: the median and the fastest step in
   seconds, the forward FLOPs of the whole batch and the parameter count. 0 on success. */
static int train_measure(const train_row *r, int threads, double *med_s, double *min_s, double *fwd_flops_out,
                         double *params_out)
{
    const textok_titok_config *c = &r->cfg;
    textok_train_config tc = train_config(r);
    textok_params p = textok_default_params();
    textok_titok *m = NULL;
    textok_trainer *t = NULL;
    textok_lpips *lp = NULL;
    textok_disc *disc = NULL;
    textok_titok_timing te, td;
    textok_tensor_spec *specs = NULL;
    textok_train_stats stats;
    textok_rng rng;
    const size_t img_n = (size_t)3 * c->image_size * c->image_size;
    float *img = NULL, *lat = NULL, *out = NULL;
    double *ts = NULL, fwd_flops, params = 0.0;
    int i, j, n_specs, status = 1;
    p.n_threads = threads; p.max_batch = r->batch; p.kernels = g_kernels;
    if (textok_titok_create(&m, c, &p, 1) != TEXTOK_OK) goto fail;
    if (r->loss_nets) {
        textok_disc_config dc = textok_disc_default_config();
        if (textok_lpips_create(&lp, vgg16_channels, &p, 4) != TEXTOK_OK) goto fail;
        if (textok_disc_create(&disc, &dc, c->image_size, &p, 5) != TEXTOK_OK) goto fail;
    }
    n_specs = textok_titok_tensor_specs(c, NULL, 0);
    specs = (textok_tensor_spec *)malloc((size_t)(n_specs > 0 ? n_specs : 1) * sizeof *specs);
    img = (float *)malloc((size_t)r->batch * img_n * sizeof(float));
    out = (float *)malloc(img_n * sizeof(float));
    lat = (float *)malloc((size_t)c->token_size * c->num_latent_tokens * sizeof(float));
    ts = (double *)malloc((size_t)(r->steps > 0 ? r->steps : 1) * sizeof(double));
    if (!specs || !img || !out || !lat || !ts || n_specs < 0) { fprintf(stderr, "bench: out of memory\n"); goto done; }
    textok_titok_tensor_specs(c, specs, n_specs);
    for (i = 0; i < n_specs; i++) {
        double e = 1.0;
        for (j = 0; j < specs[i].ndim; j++) e *= (double)specs[i].shape[j];
        params += e;
    }
    textok_rng_seed(&rng, 2);
    textok_rng_fill_uniform(&rng, img, (size_t)r->batch * img_n, 0.0f, 1.0f);
    /* forward FLOPs of one image (they scale linearly with the batch); a step is ~3x forward:
       the backward does two products per forward product (dinput and dweight) */
    if (textok_titok_encode(m, img, 1, NULL, NULL, lat, NULL, NULL) != TEXTOK_OK) goto fail;
    te = textok_titok_last_timing(m);
    if (textok_titok_decode_latents(m, lat, 1, NULL, out) != TEXTOK_OK) goto fail;
    td = textok_titok_last_timing(m);
    fwd_flops = r->batch * (te.encoder_flops + td.decoder_flops + td.pixel_decoder_flops);
    if (textok_trainer_create(&t, m, lp, disc, &tc, 3) != TEXTOK_OK) goto fail;
    for (i = 0; i < r->warmup + r->steps; i++) {
        double t0 = now();
        if (textok_trainer_step(t, img, NULL, &stats) != TEXTOK_OK) goto fail;
        if (i >= r->warmup) ts[i - r->warmup] = now() - t0;
    }
    qsort(ts, (size_t)r->steps, sizeof(double), cmp_double);
    *med_s = r->steps % 2 ? ts[r->steps / 2] : 0.5 * (ts[r->steps / 2 - 1] + ts[r->steps / 2]);
    *min_s = ts[0];
    *fwd_flops_out = fwd_flops;
    *params_out = params;
    status = 0;
    goto done;
fail:
    fprintf(stderr, "bench: %s: %s\n", r->name, textok_last_error());
done:
    textok_trainer_free(t);
    textok_lpips_free(lp);
    textok_disc_free(disc);
    textok_titok_free(m);
    free(specs); free(img); free(out); free(lat); free(ts);
    return status;
}

static int train_bench_row(const train_row *r, int threads, double peak, const torch_row *trows, int n_trows)
{
    double med, mn, fwd_flops, params, tms;
    if (train_measure(r, threads, &med, &mn, &fwd_flops, &params)) return 1;
    tms = torch_ms(trows, n_trows, r->name, r->batch, "step");
    printf("%-12s %5d %7.2f %9.1f %9.1f", r->name, r->batch, params * 1e-6, 1e3 * med, 1e3 * mn);
    if (r->loss_nets) printf(" %10s %8s %6s", "-", "-", "-");   /* the loss networks' FLOPs are not counted */
    else printf(" %10.2f %8.1f %5.1f%%", 3.0 * fwd_flops * 1e-9, 3.0 * fwd_flops / med * 1e-9, 100.0 * 3.0 * fwd_flops / med * 1e-9 / peak);
    if (tms > 0.0) printf(" %9.1f %10.2f\n", tms, 1e3 * med / tms);
    else printf(" %9s %10s\n", "-", "-");
    fflush(stdout);
    return 0;
}

static int train_bench(const char *models, int threads, int torch, double peak)
{
    train_row rows[8];
    torch_row trows[MAX_TORCH_ROWS];
    int n = train_rows(rows), n_trows = 0, i, sel = 0, status = 0;
    for (i = 0; i < n; i++) sel += selected(models, &rows[i]);
    if (!sel) {
        fprintf(stderr, "bench: --train rows are");
        for (i = 0; i < n; i++) fprintf(stderr, " %s", rows[i].name);
        fprintf(stderr, "; none matches --models '%s'\n", models);
        return 2;
    }
    if (torch) {
        static char cmd[8192];
        char show[128];
        int len = snprintf(cmd, sizeof cmd, "/usr/bin/python3 tools/bench_train_torch.py --threads %d --device %s", threads,
                           g_torch_device);
        for (i = 0; i < n && len > 0 && (size_t)len < sizeof cmd; i++) {
            char spec[1024];
            if (!selected(models, &rows[i])) continue;
            torch_train_spec(spec, sizeof spec, &rows[i]);
            len += snprintf(cmd + len, sizeof cmd - (size_t)len, " --row '%s'", spec);
        }
        snprintf(show, sizeof show, "tools/bench_train_torch.py --threads %d --row ... (the configs below)", threads);
        if (len > 0 && (size_t)len < sizeof cmd) n_trows = run_torch_cmd(cmd, show, trows);
        else printf("  (the PyTorch command line would be too long: not run)\n");
    }
    printf("\n%-12s %5s %7s %9s %9s %10s %8s %6s %9s %10s\n", "model", "batch", "Mparams", "ms/step", "min ms",
           "GFLOP/step", "GFLOP/s", "%peak", "torch ms", "ours/torch");
    for (i = 0; i < n; i++) {
        if (!selected(models, &rows[i])) continue;
        if (train_bench_row(&rows[i], threads, peak, trows, n_trows)) status = 1;
    }
    printf("\nms/step: median of the timed steps after the warm-up steps (counts below), whole\n"
           "textok_trainer_step (forward, losses, backward, clip, AdamW, EMA; + the discriminator step with the\n"
           "GAN); torch: the same step, median of as many. GFLOP/step ~ 3x the forward FLOPs of the tokenizer\n"
           "(textok_titok_last_timing; %%peak of the sgemm peak above). ours/torch < 1: we are faster.\n"
           "Models (random weights and images; AdamW, clip 1.0, EMA 0.999, no LR warm-up):\n");
    for (i = 0; i < n; i++) {
        const textok_titok_config *c = &rows[i].cfg;
        char q[64];
        if (!selected(models, &rows[i])) continue;
        if (c->quantize_mode == TEXTOK_QUANT_VQ) snprintf(q, sizeof q, "VQ %d codes%s", c->codebook_size, c->use_l2_norm ? " (l2)" : "");
        else snprintf(q, sizeof q, "VAE (sampled)");
        printf("  %-12s %dx%d patch %d, K %d, C %d, width %d, %d+%d layers, %d heads, MLP %d, %s; %s; %d+%d steps\n",
               rows[i].name, c->image_size, c->image_size, c->patch_size, c->num_latent_tokens, c->token_size, c->enc_width,
               c->enc_layers, c->dec_layers, c->enc_heads, c->enc_mlp, q,
               rows[i].loss_nets ? "L2 + LPIPS (VGG16) 0.1 + GAN 0.1 (default discriminator)" : "L2 only",
               rows[i].warmup, rows[i].steps);
    }
    return status;
}

/* ----- --compare: ours and PyTorch side by side, one process per unit of work ----- */
/* Every unit runs in a fresh process so that its peak RSS (getrusage(RUSAGE_SELF).ru_maxrss at the
   end, reported by the child itself; RUSAGE_CHILDREN in the parent would give the largest child
   so far, not this one) belongs to that unit alone. Ours is this program again (--row UNIT), run
   through `env -u OPENBLAS_CORETYPE -u OMP_WAIT_POLICY` so that it never sees the variables (the
   Makefile exports both to the programs make runs). PyTorch (tools/bench_compare_torch.py) runs
   twice: "default" with the same two variables removed, and "tuned" with OPENBLAS_CORETYPE=SkylakeX
   OMP_WAIT_POLICY=passive. Timing, the same rule on both sides: one warm-up call of t_w seconds,
   then n = clamp(floor(budget / t_w), 1, 10) timed calls, median.

   FLOPs (multiply-add = 2), from the shapes:
     sgemm n^3            2 n^3
     attention            4 B T^2 C (Q K^T and P V: 2 B H T T (C/H) each; softmax not counted)
     TiTok encode/decode  textok_titok_last_timing's counts: 2 (in x out) per token for every
                          linear, 4 T^2 width per attention layer, 2 OC C kh kw per output pixel for
                          every conv (the pixel decoder), for the whole batch
     training step        3 x the forward FLOPs of the batch (backward: dinput and dweight)
     DiT CFG step         rows R = 2 B (conditional + null), N tokens, width D, depth L, MLP M,
                          channels Cin / Cout: R [2 N Cin D (x embed) + 2 (256 D + D D) (t embed)
                          + L (2 D 6D (adaLN) + 2 N D 3D (qkv) + 4 N^2 D (attention) + 2 N D D (proj)
                          + 4 N D M (MLP)) + 2 D 2D + 2 N D Cout (final)]; the guidance and the
                          p_sample update (O(B Cin N)) are not counted */
#define CMP_MAX_ROWS 64
typedef struct {
    char key[48], label[64];
    double gflop, ms[3];   /* 0 ours, 1 torch tuned, 2 torch default; < 0 = none */
    long rss_kib[3];
} cmp_row;

static int reps_for(double tw, double budget)
{
    int n = tw > 0.0 ? (int)(budget / tw) : 10;
    return n < 1 ? 1 : n > 10 ? 10 : n;
}

static double median(double *ts, int n)
{
    qsort(ts, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? ts[n / 2] : 0.5 * (ts[n / 2 - 1] + ts[n / 2]);
}

static void emit(const char *key, double s, double flops, const char *label)
{
    printf("row %s %.3f %.6f %s\n", key, 1e3 * s, flops * 1e-9, label);
    fflush(stdout);
}

/* the training rows of --compare: the --train rows of the same name at batch 4 (issue 7's table),
   with fewer steps (the S-128 one is seconds a step, 4x that for PyTorch default) */
static int compare_train_row(const char *name, train_row *out)
{
    train_row rows[8];
    int n = train_rows(rows), i;
    for (i = 0; i < n; i++) {
        if (strcmp(rows[i].name, name)) continue;
        *out = rows[i];
        out->batch = 4;
        if (!strcmp(name, "s128-vq")) { out->warmup = 1; out->steps = 2; }
        else { out->warmup = 2; out->steps = 10; }
        return 1;
    }
    return 0;
}

/* DiT-B/1 over 64 1D tokens of 12 channels (TiTok's token_size), class-conditional, learn_sigma */
static textok_dit_config dit_b64_config(void)
{
    textok_dit_config c;
    textok_dit_preset(&c, "B/2", 256);
    c.in_channels = 12; c.seq_1d = 1; c.patch_size = 1; c.input_size = 64; c.guide_channels = 12; c.latent_scale = 1.0f;
    return c;
}

static double dit_cfg_step_flops(const textok_dit_config *c, int B)
{
    const double R = 2.0 * B, N = c->input_size, D = c->hidden, L = c->depth, M = c->mlp_hidden;
    const double Cin = c->in_channels, Cout = c->learn_sigma ? 2.0 * Cin : Cin;
    return R * (2 * N * Cin * D + 2 * (256 * D + D * D)
                + L * (2 * D * 6 * D + 2 * N * D * 3 * D + 4 * N * N * D + 2 * N * D * D + 4 * N * D * M)
                + 2 * D * 2 * D + 2 * N * D * Cout);
}

/* --row UNIT: one unit of work in this process; prints "row KEY MS GFLOP LABEL" lines, then
   "rss KIB" */
static int row_unit(const char *unit, int threads, double budget)
{
    textok_kernels fast = textok_cpu_kernels(threads);
    textok_rng r;
    double ts[10], tw, t0;
    int i, n, status = 0;
    char key[64], label[64];
    struct rusage ru;
    textok_rng_seed(&r, 7);
    if (!strcmp(unit, "sgemm")) {
        const int sz = 2048;
        job j;
        memset(&j, 0, sizeof j);
        j.k = &fast; j.which = 0;
        j.mm.batch = 1; j.mm.M = sz; j.mm.N = sz; j.mm.K = sz;   /* C = A B, no bias: torch.mm */
        j.a = rnd(&r, (size_t)sz * sz); j.b = rnd(&r, (size_t)sz * sz); j.c = rnd(&r, (size_t)sz * sz);
        t0 = now(); run(&j); tw = now() - t0;
        n = reps_for(tw, budget);
        for (i = 0; i < n; i++) { t0 = now(); run(&j); ts[i] = now() - t0; }
        emit("sgemm", median(ts, n), 2.0 * sz * sz * sz, "sgemm 2048^3");
        /* for the peak: the fastest call (other work on a shared machine only ever slows one down) */
        printf("peak %.3f\n", 2.0 * sz * sz * sz / ts[0] * 1e-9);   /* ts sorted by median() */
        free(j.a); free(j.b); free(j.c);
    } else if (!strncmp(unit, "attn-", 5) && atoi(unit + 5) > 0) {
        const int B = atoi(unit + 5), T = 321, C = 768;
        job j;
        memset(&j, 0, sizeof j);
        j.k = &fast; j.which = 1;
        j.at.B = B; j.at.Tq = T; j.at.Tk = T; j.at.C = C; j.at.H = 12; j.at.scale = 0.125f;
        j.a = rnd(&r, (size_t)B * T * C); j.b = rnd(&r, (size_t)B * T * C); j.c = rnd(&r, (size_t)B * T * C);
        j.d = rnd(&r, (size_t)B * T * C); j.e = rnd(&r, (size_t)B * 12 * T); j.w = rnd(&r, textok_attention_work_floats(&j.at));
        t0 = now(); run(&j); tw = now() - t0;
        n = reps_for(tw, budget);
        for (i = 0; i < n; i++) { t0 = now(); run(&j); ts[i] = now() - t0; }
        snprintf(label, sizeof label, "attention B%d T%d C%d H12", B, T, C);
        emit(unit, median(ts, n), 4.0 * B * T * T * C, label);
        free(j.a); free(j.b); free(j.c); free(j.d); free(j.e); free(j.w);
    } else if (!strncmp(unit, "titok-", 6)) {
        char model[16];
        int B = 0;
        textok_titok_config cfg;
        textok_params p = textok_default_params();
        textok_titok *m = NULL;
        textok_titok_timing tt;
        float *img, *out;
        int32_t *ids;
        double tp[10], fl_enc, fl_dec, fl_pix;
        size_t sz;
        const char *dash = strchr(unit + 6, '-');
        if (!dash || (size_t)(dash - unit - 6) >= sizeof model || (B = atoi(dash + 1)) < 1) goto unknown;
        memcpy(model, unit + 6, (size_t)(dash - unit - 6)); model[dash - unit - 6] = 0;
        if (!titok_preset(model, &cfg)) goto unknown;
        p.n_threads = threads; p.max_batch = B;
        if (textok_titok_create(&m, &cfg, &p, 1) != TEXTOK_OK) { fprintf(stderr, "bench: %s\n", textok_last_error()); return 1; }
        sz = (size_t)B * 3 * 256 * 256;
        img = (float *)malloc(sz * sizeof(float)); out = (float *)malloc(sz * sizeof(float));
        ids = (int32_t *)malloc((size_t)B * cfg.num_latent_tokens * sizeof(int32_t));
        if (!img || !out || !ids) { fprintf(stderr, "bench: out of memory\n"); return 1; }
        textok_rng_seed(&r, 2);
        textok_rng_fill_uniform(&r, img, sz, 0.0f, 1.0f);
        /* encode: the whole call (encoder + quantizer), as torch's m.encode(x) */
        t0 = now(); status |= textok_titok_encode(m, img, B, NULL, ids, NULL, NULL, NULL); tw = now() - t0;
        fl_enc = textok_titok_last_timing(m).encoder_flops;
        n = reps_for(tw, budget);
        for (i = 0; i < n; i++) { t0 = now(); status |= textok_titok_encode(m, img, B, NULL, ids, NULL, NULL, NULL); ts[i] = now() - t0; }
        snprintf(key, sizeof key, "%s-encode", unit);
        snprintf(label, sizeof label, "TiTok-%s encode B%d", model, B);
        emit(key, median(ts, n), fl_enc, label);
        /* decode: decode_tokens (lookup, ViT decoder, pixel decoder); the pixel decoder's own time
           from the same calls (torch times m.decode_pixels as a call of its own) */
        t0 = now(); status |= textok_titok_decode_tokens(m, ids, B, NULL, out); tw = now() - t0;
        tt = textok_titok_last_timing(m);
        fl_dec = tt.decoder_flops + tt.pixel_decoder_flops; fl_pix = tt.pixel_decoder_flops;
        n = reps_for(tw, budget);
        for (i = 0; i < n; i++) {
            t0 = now(); status |= textok_titok_decode_tokens(m, ids, B, NULL, out); ts[i] = now() - t0;
            tp[i] = textok_titok_last_timing(m).pixel_decoder_s;
        }
        snprintf(key, sizeof key, "%s-decode", unit);
        snprintf(label, sizeof label, "TiTok-%s decode B%d", model, B);
        emit(key, median(ts, n), fl_dec, label);
        if (!strcmp(model, "s128")) {
            snprintf(key, sizeof key, "%s-decode_pixel", unit);
            snprintf(label, sizeof label, "pixel decoder B%d", B);
            emit(key, median(tp, n), fl_pix, label);
        }
        if (status) fprintf(stderr, "bench: %s: %s\n", unit, textok_last_error());
        textok_titok_free(m);
        free(img); free(out); free(ids);
    } else if (!strncmp(unit, "train-", 6)) {
        train_row tr;
        double med, mn, fwd, params;
        if (!compare_train_row(unit + 6, &tr)) goto unknown;
        if (train_measure(&tr, threads, &med, &mn, &fwd, &params)) return 1;
        snprintf(label, sizeof label, "train step %s B%d", tr.name, tr.batch);
        emit(unit, med, 3.0 * fwd, label);
    } else if (!strcmp(unit, "dit-b")) {
        /* one guided DDPM step for 8 images: forward_cfg (16 rows in one pass) + p_sample */
        const int B = 8;
        textok_dit_config c = dit_b64_config();
        textok_params p = textok_default_params();
        textok_dit *m = NULL;
        textok_diffusion *d = NULL;
        const size_t xn = (size_t)B * c.in_channels * c.input_size;
        float *x, *noise, *o, *xp;
        int32_t t[8], y[8];
        int si;
        p.n_threads = threads; p.max_batch = 2 * B;
        if (textok_dit_create(&m, &c, &p, 1) != TEXTOK_OK || textok_diffusion_create(&d, 1000, "250") != TEXTOK_OK) {
            fprintf(stderr, "bench: %s\n", textok_last_error());
            return 1;
        }
        x = rnd(&r, xn); noise = rnd(&r, xn); o = rnd(&r, 2 * xn); xp = rnd(&r, xn);
        si = textok_diffusion_num_steps(d) / 2;
        for (i = 0; i < B; i++) { t[i] = textok_diffusion_timestep(d, si); y[i] = 7 * i; }
#define DIT_STEP() (textok_dit_forward_cfg(m, x, t, y, NULL, B, 4.0f, o) | \
                    textok_diffusion_p_step(d, si, x, o, noise, B, c.in_channels, c.input_size, 1, xp))
        t0 = now(); status |= DIT_STEP(); tw = now() - t0;
        n = reps_for(tw, budget);
        for (i = 0; i < n; i++) { t0 = now(); status |= DIT_STEP(); ts[i] = now() - t0; }
#undef DIT_STEP
        if (status) fprintf(stderr, "bench: %s: %s\n", unit, textok_last_error());
        emit(unit, median(ts, n), dit_cfg_step_flops(&c, B), "DiT-B/1 N64 CFG step, 8 img");
        textok_dit_free(m); textok_diffusion_free(d);
        free(x); free(noise); free(o); free(xp);
    } else {
        goto unknown;
    }
    getrusage(RUSAGE_SELF, &ru);
    printf("rss %ld\n", (long)ru.ru_maxrss);   /* KiB on Linux */
    return status != 0;
unknown:
    fprintf(stderr, "bench: unknown --row unit '%s' (sgemm, attn-B, titok-{s128,b64,l32}-B, train-{tiny-vq,s128-vq}, dit-b)\n", unit);
    return 2;
}

/* runs one child, merges its "row" lines into rows[] (side: 0 ours, 1 tuned, 2 default; ours
   adds rows, the torch sides fill in rows of the same key) and its "rss" into those rows */
static int cmp_run(const char *cmd, int side, cmp_row *rows, int first, int *n_rows, double *peak, int verbose)
{
    char line[512];
    FILE *f;
    int i, got = 0;
    long rss = -1;
    if (verbose) { printf("  $ %s\n", cmd); fflush(stdout); }
    if (!(f = popen(cmd, "r"))) return 1;
    while (fgets(line, sizeof line, f)) {
        char key[48];
        double ms, gf = 0.0;
        int pos = 0;
        if (sscanf(line, "row %47s %lf %lf %n", key, &ms, &gf, &pos) >= 2) {
            if (side == 0 && *n_rows < CMP_MAX_ROWS) {
                cmp_row *c = &rows[(*n_rows)++];
                memset(c, 0, sizeof *c);
                snprintf(c->key, sizeof c->key, "%s", key);
                snprintf(c->label, sizeof c->label, "%s", pos > 0 ? line + pos : key);
                c->label[strcspn(c->label, "\r\n")] = 0;
                c->gflop = gf;
                c->ms[0] = ms; c->ms[1] = c->ms[2] = -1.0;
                c->rss_kib[0] = c->rss_kib[1] = c->rss_kib[2] = -1;
                got++;
            } else if (side > 0) {
                for (i = first; i < *n_rows; i++) if (!strcmp(rows[i].key, key)) { rows[i].ms[side] = ms; got++; }
            }
        } else if (sscanf(line, "peak %lf", &gf) == 1) {
            if (gf > *peak) *peak = gf;
        } else if (sscanf(line, "rss %ld", &rss) == 1) {
        } else if (verbose) {
            printf("  | %s", line);
        }
    }
    for (i = first; i < *n_rows; i++) if (rss >= 0 && rows[i].ms[side] >= 0.0) rows[i].rss_kib[side] = rss;
    return pclose(f) != 0 || !got;
}

static void cmp_cell_ratio(double a, double b)
{
    if (a > 0.0 && b > 0.0) printf(" %7.2f", a / b);
    else printf(" %7s", "-");
}

static void cmp_print(const cmp_row *c, double peak)
{
    const double pk = peak > 0.0 ? peak : 1.0;
    int s;
    printf("%-30s %8.2f", c->label, c->gflop);
    for (s = 0; s < 3; s++) {
        if (c->ms[s] >= 0.0) printf(" %9.1f", c->ms[s]);
        else printf(" %9s", "-");
    }
    cmp_cell_ratio(c->ms[0], c->ms[1]);
    cmp_cell_ratio(c->ms[0], c->ms[2]);
    for (s = 0; s < 2; s++) {
        if (c->ms[s] > 0.0) printf(" %7.1f %4.0f%%", c->gflop / c->ms[s] * 1e3, 100.0 * c->gflop / c->ms[s] * 1e3 / pk);
        else printf(" %7s %5s", "-", "-");
    }
    for (s = 0; s < 2; s++) {
        if (c->rss_kib[s] >= 0) printf(" %6.0f", c->rss_kib[s] / 1024.0);
        else printf(" %6s", "-");
    }
    cmp_cell_ratio((double)c->rss_kib[0], (double)c->rss_kib[1]);
    printf("\n");
    fflush(stdout);
}

/* the 1-minute load average: on a shared machine, other work in the run makes every time longer
   (ratios of one run less so); printed at the start and the end */
static double loadavg(void)
{
    double l = -1.0;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) { if (fscanf(f, "%lf", &l) != 1) l = -1.0; fclose(f); }
    return l;
}

static void cpu_name(char *buf, size_t size)
{
    char line[512];
    FILE *f = fopen("/proc/cpuinfo", "r");
    const char *isa = "no AVX2";
    snprintf(buf, size, "unknown CPU");
    if (!f) return;
    while (fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        if (!colon) continue;
        if (!strncmp(line, "model name", 10)) {
            snprintf(buf, size, "%s", colon + 2);
            buf[strcspn(buf, "\r\n")] = 0;
        }
        if (!strncmp(line, "flags", 5)) {
            isa = strstr(line, " avx512f") ? "AVX-512" : strstr(line, " avx2") ? "AVX2" : "no AVX2";
            break;
        }
    }
    fclose(f);
    if (strlen(buf) + 16 < size) { strcat(buf, ", "); strcat(buf, isa); }
}

/* mode: 0 quick, 1 default, 2 full */
static int compare(const char *self, int threads, int mode, int torch, double budget, const char *prefix, int verbose)
{
    static const struct { const char *unit; int min_mode; } units[] = {
        { "sgemm", 0 }, { "attn-1", 0 }, { "attn-8", 2 },
        { "titok-s128-1", 0 }, { "titok-b64-1", 1 }, { "titok-l32-1", 1 },
        { "titok-s128-8", 2 }, { "titok-b64-8", 2 }, { "titok-l32-8", 2 },
        { "train-tiny-vq", 0 }, { "train-s128-vq", 1 }, { "dit-b", 1 },
    };
    static const char *unset = "env -u OPENBLAS_CORETYPE -u OMP_WAIT_POLICY";
    static const char *tuned = "env OPENBLAS_CORETYPE=SkylakeX OMP_WAIT_POLICY=passive";
    cmp_row rows[CMP_MAX_ROWS];
    int n_rows = 0, u, i, status = 0, header = 0;
    double peak = 0.0;
    char cpu[160];
    cpu_name(cpu, sizeof cpu);
    printf("bench --compare (%s): textok %s (%s kernels) vs PyTorch, %d threads, one process per unit\n",
           mode == 0 ? "quick" : mode == 1 ? "default" : "full", textok_version(), textok_cpu_kernels(threads).name, threads);
    printf("  ours: %s build/bench --row UNIT;  torch default: %s;  torch tuned: %s\n", unset, unset, tuned);
    if (loadavg() >= 0.0) printf("  load average at the start: %.2f (other work on the machine slows every row down)\n", loadavg());
    fflush(stdout);
    for (u = 0; u < (int)(sizeof units / sizeof units[0]); u++) {
        char cmd[8192], spec[2048] = "";
        int first = n_rows, side;
        if (units[u].min_mode > mode) continue;
        if (!strncmp(units[u].unit, "train-", 6)) {
            train_row tr;
            if (compare_train_row(units[u].unit + 6, &tr)) {
                char s[1900];
                torch_train_spec(s, sizeof s, &tr);
                snprintf(spec, sizeof spec, " --spec '%s'", s);
            }
        }
        for (side = 0; side < (torch ? 3 : 1); side++) {
            if (side == 0)
                snprintf(cmd, sizeof cmd, "%s%s%s '%s' --row %s --threads %d --budget %g", prefix, *prefix ? " " : "", unset, self,
                         units[u].unit, threads, budget);
            else
                snprintf(cmd, sizeof cmd, "%s%s%s /usr/bin/python3 tools/bench_compare_torch.py --unit %s --threads %d --budget %g%s",
                         prefix, *prefix ? " " : "", side == 1 ? tuned : unset, units[u].unit, threads, budget, spec);
            if (cmp_run(cmd, side, rows, first, &n_rows, &peak, verbose)) {
                printf("  (%s: %s failed%s)\n", units[u].unit, side == 0 ? "ours" : side == 1 ? "torch tuned" : "torch default",
                       side ? ": is python3-torch installed? run from the repository root" : "");
                status = 1;
                if (side == 0) break;
            }
        }
        /* the peak: the fastest single 2048^3 sgemm call of the three sides ("peak" lines of the
           sgemm unit), measured once, at the top of the run */
        if (!header) {
            printf("%s; sgemm peak %.1f GFLOP/s (the fastest 2048^3 sgemm call of this run: ours, torch tuned or default)\n\n", cpu, peak);
            printf("%-30s %8s %9s %9s %9s %7s %7s %7s %5s %7s %5s %6s %6s %7s\n", "work", "GFLOP", "ours ms", "tuned ms", "deflt ms",
                   "o/tuned", "o/deflt", "ours", "%peak", "tuned", "%peak", "RSS MiB", "torch", "o/torch");
            printf("%-30s %8s %9s %9s %9s %7s %7s %7s %5s %7s %5s %6s %6s %7s\n", "", "", "", "", "", "", "", "GFLOP/s", "", "GFLOP/s", "",
                   "ours", "tuned", "RSS");
            header = 1;
        }
        for (i = first; i < n_rows; i++) cmp_print(&rows[i], peak);
    }
    for (i = 0; i < n_rows; i++) {
        if (strcmp(rows[i].key, "dit-b")) continue;
        printf("\nDiT-B/1 over 64 tokens, 250 guided steps for 8 images (the step above x 250): ours %.2f min",
               rows[i].ms[0] * 250 / 60e3);
        if (rows[i].ms[1] > 0.0) printf(", torch tuned %.2f min", rows[i].ms[1] * 250 / 60e3);
        if (rows[i].ms[2] > 0.0) printf(", torch default %.2f min", rows[i].ms[2] * 250 / 60e3);
        printf("\n");
    }
    if (loadavg() >= 0.0) printf("\nload average at the end: %.2f\n", loadavg());
    printf("\nms: median per call for the whole batch (B images; training: one step of 4 images), after one warm-up\n"
           "call, as many calls as fit in %.1f s (1 to 10). o/tuned, o/deflt: ours / PyTorch ms (< 1: we are faster).\n"
           "GFLOP/s: the GFLOP column (counted from the shapes, examples/bench.c) / ms; %%peak: of the sgemm peak above.\n"
           "RSS: peak resident set of the unit's own process in MiB (a TiTok unit encodes and decodes in one\n"
           "process; the torch process includes libtorch itself); o/torch: ours / torch tuned.\n", budget);
    return status;
}

#ifdef TEXTOK_CUDA
/* SGEMM GFLOP/s through the CUDA table: n^3 (4096; --peak-size), best of 3 runs of 10 after a warm-up */
static double peak_gflops_cuda(const textok_kernels *k, int n)
{
    const size_t cnt = (size_t)n * n;
    float *a = (float *)k->alloc(k, cnt * sizeof(float)), *b = (float *)k->alloc(k, cnt * sizeof(float));
    float *c = (float *)k->alloc(k, cnt * sizeof(float));
    textok_matmul_dims d;
    double best = 0.0;
    int rep, i;
    d.batch = 1; d.M = d.N = d.K = n; d.trans_a = d.trans_b = 0;
    if (a && b && c) {
        k->fill(k, a, cnt, 0.5f);
        k->fill(k, b, cnt, 0.25f);
        k->matmul_forward(k, c, a, b, NULL, &d);
        for (rep = 0; rep < 3 && textok_cuda_status(k) == TEXTOK_OK; rep++) {
            double t0 = now(), dt;
            for (i = 0; i < 10; i++) k->matmul_forward(k, c, a, b, NULL, &d);
            if (textok_cuda_status(k) != TEXTOK_OK) break;
            dt = now() - t0;
            if (10.0 * 2.0 * n * (double)n * n / dt * 1e-9 > best) best = 10.0 * 2.0 * n * (double)n * n / dt * 1e-9;
        }
    }
    if (textok_cuda_status(k) != TEXTOK_OK) fprintf(stderr, "bench: %s\n", textok_last_error());
    k->free(k, a); k->free(k, b); k->free(k, c);
    return best > 0.0 ? best : 1.0;
}
#endif

int main(int argc, char **argv)
{
    int threads = 0, reps = 5, i, s, bi, titok = 0, train = 0, torch = 0, cmp = 0, mode = 1, no_torch = 0, verbose = 0;
    int cuda = 0, batches_given = 0, peak_size = 4096;
    const char *models = NULL, *batches = "1,8", *unit = NULL, *prefix = "";
    double budget = -1.0;
    textok_kernels ref = textok_cpu_ref_kernels(), fast;
    textok_rng r;
    double peak;
    static const int lin[3][2] = { { 768, 2304 }, { 768, 3072 }, { 3072, 768 } };   /* in -> out */
    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--titok")) titok = 1;
        else if (!strcmp(argv[i], "--train")) train = 1;
        else if (!strcmp(argv[i], "--torch")) torch = 1;
        else if (!strcmp(argv[i], "--models") && i + 1 < argc) models = argv[++i];
        else if (!strcmp(argv[i], "--batches") && i + 1 < argc) batches = argv[++i], batches_given = 1;
        else if (!strcmp(argv[i], "--compare")) cmp = 1;
        else if (!strcmp(argv[i], "--quick")) mode = 0;
        else if (!strcmp(argv[i], "--full")) mode = 2;
        else if (!strcmp(argv[i], "--no-torch")) no_torch = 1;
        else if (!strcmp(argv[i], "--verbose")) verbose = 1;
        else if (!strcmp(argv[i], "--row") && i + 1 < argc) unit = argv[++i];
        else if (!strcmp(argv[i], "--budget") && i + 1 < argc) budget = atof(argv[++i]);
        else if (!strcmp(argv[i], "--prefix") && i + 1 < argc) prefix = argv[++i];
        else if (!strcmp(argv[i], "--cuda")) cuda = 1;
        else if (!strcmp(argv[i], "--peak-size") && i + 1 < argc) peak_size = atoi(argv[++i]) > 16 ? atoi(argv[i]) : 16;
        else {
            fprintf(stderr, "usage: %s [--threads N] [--reps R] | --titok [--models s128,b64,l32] [--batches 1,8] [--torch]\n"
                    "       | --train [--models tiny-vq,tiny-vae,s128-vq,tiny-vq+gan,s128-vq+gan] [--torch]\n"
                    "       | --compare [--quick | --full] [--no-torch] [--budget S] [--prefix CMD] [--verbose]\n"
                    "       | --row UNIT [--budget S]   (one --compare unit in this process)\n"
                    "       | --cuda [--titok ...] [--train ...] [--torch] [--peak-size N]   (build/bench_cuda)\n"
                    "unknown or incomplete flag '%s'\n", argv[0], argv[i]);
            return 2;
        }
    }
    if (cuda) {
#ifdef TEXTOK_CUDA
        static textok_kernels gpu;
        int st = 0;
        if (textok_cuda_kernels(&gpu, 0, 0) != TEXTOK_OK) { fprintf(stderr, "bench: %s\n", textok_last_error()); return 1; }
        g_kernels = &gpu;
        g_torch_device = "cuda";
        peak = peak_gflops_cuda(&gpu, peak_size);
        printf("textok %s: table %s (device 0, strict FP32); measured cuBLAS SGEMM peak (%d^3 through the table) %.1f GFLOP/s\n",
               textok_version(), gpu.name, peak_size, peak);
        threads = textok_cpu_kernels(threads).n_threads;   /* for torch's CPU side */
        if (!batches_given) batches = "1,64";
        if (!titok && !train) titok = train = 1;
        if (titok) st = titok_bench(models && !train ? models : "s128", batches, threads, torch, peak);
        if (train && !st) st = train_bench(models && !titok ? models : "s128-vq", threads, torch, peak);
        textok_cuda_release(&gpu);
        return st;
#else
        (void)batches_given; (void)peak_size;   /* the CUDA rows' flags */
        fprintf(stderr, "bench: built without CUDA: make cuda builds build/bench_cuda\n");
        return 2;
#endif
    }
    if (unit) return row_unit(unit, threads, budget > 0.0 ? budget : 1.5);
    if (cmp) {
        /* the children run this same program: its path from /proc (argv[0] may be relative to
           a directory we are not in, or found through PATH) */
        static char self[4096];
        ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
        if (len > 0) self[len] = 0;
        else snprintf(self, sizeof self, "%s", argv[0]);
        if (strchr(self, '\'')) { fprintf(stderr, "bench: the program's path must not contain a quote\n"); return 2; }
        return compare(self, textok_cpu_kernels(threads).n_threads, mode, !no_torch,
                       budget > 0.0 ? budget : mode == 0 ? 1.0 : 1.5, prefix, verbose);
    }
    fast = textok_cpu_kernels(threads);
    if (train) {
        peak = peak_gflops(&fast);
        printf("textok %s: table %s, %d threads; measured sgemm peak %.1f GFLOP/s\n", textok_version(), fast.name,
               fast.n_threads, peak);
        return train_bench(models, fast.n_threads, torch, peak);
    }
    if (titok) {
        peak = peak_gflops(&fast);
        printf("textok %s: table %s, %d threads; measured sgemm peak %.1f GFLOP/s\n", textok_version(), fast.name,
               fast.n_threads, peak);
        return titok_bench(models ? models : "s128,b64,l32", batches, fast.n_threads, torch, peak);
    }
    textok_rng_seed(&r, 7);
    printf("textok %s bench: table %s (its GEMM level: $TEXTOK_SIMD picks another), %d threads\n",
           textok_version(), fast.name, fast.n_threads);
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
