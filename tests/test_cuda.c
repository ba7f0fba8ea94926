/* test_cuda: the CUDA kernel table (textok_cuda.cu) against the CPU (issue 9).
     build/test_cuda [--quick]     (make cuda)
   Without a CUDA device (or driver) it prints "skipped: no CUDA device" and passes. With one:
     1. the CUDA table has every kernel the CPU reference table has (slot by slot: a NULL where
        the reference has a function is a failure, so a missing kernel cannot pass silently);
     2. textok_kernels_compare(cpu reference, cuda) over every kernel and shape: every row must
        pass (NaN/Inf, canaries, NMSE per kernel);
     3. whole models, the CUDA table against the fast CPU table (the reference loops would take
        minutes at these sizes), same seeds, same host inputs:
        - TiTok-S-128 sized (legacy, VQ 4096, pixel decoder), batch 2: encode token ids identical,
          or the near-tie rule below; decode of the same ids: relative L2 <= 1e-4;
        - host<->device copies of an encode do not grow with the number of layers (debug
          counters of the CUDA table: no hidden copies in the per-layer path);
        - one training step of an S-128-sized ViT tokenizer with LPIPS + discriminator ("tiny"
          preset, batch 2): every gradient, generator and discriminator, relative L2 <= 1e-4;
          then LPIPS distance and discriminator logits alone, and checkpoints across devices
          (each side loads the other's, one more step: the same loss);
        - one guided DiT sampling step (DiT-S/2 at 256, cfg 4.0): relative L2 <= 1e-4;
        - tiny models of the other paths (always tiny): TexTok with text on both sides (VAE:
          sampled latents, decode, a training step with KL), the T5 encoder (relative bias,
          padding), MaskGIT ImageBert and UViT (logits, generate, a training step), a DiT
          training step: outputs and every gradient, relative L2 <= 1e-4.
   Near-tie rule for token ids: the two encoders' pre-quantisation latents must agree to relative
   L2 <= 1e-4, and at most 1 % of the ids (at least 1) may differ: with 4096 l2-normalised codes a
   latent can lie within rounding of two codes, and a 1e-7 change of the latent then flips the
   argmin (textok_kernels_compare checks the codebook kernel itself exactly, at the distances).
   Then (4) the error path: a kernel's failure comes back from the next copy as a textok error.
   --quick: steps 1, 2 and 4 only. --small: the same model checks on tiny configurations (32x32
   images, width 32; DiT 8x8 latents, width 64), for the CPU emulation (make cuda-emu), where the
   full sizes would take hours. Exit status 0 = all passed. */
#define TEXTOK_IMPLEMENTATION
#include "textok.h"
#include "textok_cuda.h"
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

static int n_fail = 0, n_pass = 0;
static int g_small = 0;   /* --small: tiny models */

#define CHECK(cond, ...) do { if (!(cond)) { printf("FAIL: "); printf(__VA_ARGS__); printf("\n"); n_fail++; } else n_pass++; } while (0)
#define TRY(call) do { int st_ = (call); if (st_ != TEXTOK_OK) { printf("FAIL: %s: %s\n", #call, textok_last_error()); n_fail++; goto done; } n_pass++; } while (0)

static double rel_l2(const float *test, const float *ref, size_t n)
{
    double se = 0.0, sr = 0.0;
    size_t i;
    for (i = 0; i < n; i++) {
        double d = (double)test[i] - ref[i];
        se += d * d;
        sr += (double)ref[i] * ref[i];
    }
    return sr > 0.0 ? sqrt(se / sr) : sqrt(se);
}

static double dot_self(const float *x, size_t n)
{
    double s = 0.0;
    size_t i;
    for (i = 0; i < n; i++) s += (double)x[i] * x[i];
    return s;
}

/* 1. every slot of the table after `alloc` is a function pointer; compare them slot by slot */
typedef void (*fnptr)(void);
static int missing_kernels(const textok_kernels *ref, const textok_kernels *k)
{
    const size_t off = offsetof(textok_kernels, alloc), n = (sizeof *ref - off) / sizeof(fnptr);
    size_t i;
    int miss = 0;
    for (i = 0; i < n; i++) {
        fnptr a, b;
        memcpy(&a, (const char *)ref + off + i * sizeof a, sizeof a);
        memcpy(&b, (const char *)k + off + i * sizeof b, sizeof b);
        if (a && !b) { printf("MISSING: the CUDA table has no function in slot %zu (counting from alloc)\n", i); miss++; }
    }
    printf("kernel table: %zu slots, %d missing in the CUDA table\n", n, miss);
    return miss;
}

/* 2. one line per (kernel, output, shape) */
typedef struct { int rows, bad; } cmp_tally;
static void report(const textok_compare_result *r, void *user)
{
    cmp_tally *t = (cmp_tally *)user;
    t->rows++;
    if (!r->ok) t->bad++;
    printf("  %-4s %-20s %-8s %-32s nmse %9.2e (tol %7.1e) max_abs %9.2e%s%s\n", r->ok ? "ok" : "FAIL", r->kernel,
           r->output, r->shape, r->nmse, r->tol_nmse, r->max_abs, r->why[0] ? "  " : "", r->why);
}

/* a safetensors file at path with every tensor of specs (n) drawn N(0, 0.05^2) from seed */
static int random_weights_file(const char *path, const textok_tensor_spec *specs, int n, uint64_t seed)
{
    textok_st_entry *e = NULL;
    float **data = NULL;
    textok_rng r;
    int i, st = TEXTOK_ERR_NOMEM;
    if (n <= 0) return n < 0 ? n : TEXTOK_ERR_ARG;
    e = (textok_st_entry *)calloc((size_t)n, sizeof *e);
    data = (float **)calloc((size_t)n, sizeof *data);
    if (!e || !data) goto done;
    textok_rng_seed(&r, seed);
    for (i = 0; i < n; i++) {
        size_t cnt = 1;
        int d;
        for (d = 0; d < specs[i].ndim; d++) { cnt *= (size_t)specs[i].shape[d]; e[i].shape[d] = specs[i].shape[d]; }
        if (!(data[i] = (float *)malloc(cnt * sizeof(float)))) goto done;
        textok_rng_fill_normal(&r, data[i], cnt, 0.0f, 0.05f);
        e[i].name = specs[i].name; e[i].data = data[i]; e[i].ndim = specs[i].ndim;
    }
    st = textok_st_save(path, e, n, NULL, 0, TEXTOK_DTYPE_F32);
done:
    for (i = 0; data && i < n; i++) free(data[i]);
    free(e); free(data);
    return st;
}

static void temp_path(char *path, size_t size, const char *what)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(path, size, "%s/textok_test_cuda_%s.safetensors", tmp && *tmp ? tmp : "/tmp", what);
}

static int dit_random_file(const char *path, const textok_dit_config *cfg)
{
    int n = textok_dit_tensor_specs(cfg, NULL, 0), st;
    textok_tensor_spec *specs = n > 0 ? (textok_tensor_spec *)calloc((size_t)n, sizeof *specs) : NULL;
    if (!specs) return n < 0 ? n : TEXTOK_ERR_NOMEM;
    textok_dit_tensor_specs(cfg, specs, n);
    st = random_weights_file(path, specs, n, 5);
    free(specs);
    return st;
}

/* gradients of two trainers */
typedef int (*grad_get_fn)(void *t, const char *name, float *out, size_t n);
static int get_titok(void *t, const char *name, float *out, size_t n) { return textok_trainer_get((textok_trainer *)t, name, out, n); }
static int get_gen(void *t, const char *name, float *out, size_t n) { return textok_gen_trainer_get((textok_gen_trainer *)t, name, out, n); }

/* every "<prefix><name>" of specs from both trainers: relative L2 <= 1e-4, except for gradients
   that are zero up to rounding (reference RMS < 1e-7, e.g. an attention key bias: adding it shifts
   a whole score row, which softmax ignores), which must then agree to an RMS of 1e-7 */
static void compare_grads(const char *what, const char *prefix, grad_get_fn get, void *t0, void *t1,
                          const textok_tensor_spec *specs, int n)
{
    double worst = 0.0;
    int i, worst_i = -1;
    for (i = 0; i < n; i++) {
        char name[128];
        size_t cnt = 1;
        int d;
        float *g0, *g1;
        double e;
        for (d = 0; d < specs[i].ndim; d++) cnt *= (size_t)specs[i].shape[d];
        snprintf(name, sizeof name, "%s%s", prefix, specs[i].name);
        g0 = (float *)malloc(cnt * sizeof(float));
        g1 = (float *)malloc(cnt * sizeof(float));
        if (!g0 || !g1 || get(t0, name, g0, cnt) != TEXTOK_OK || get(t1, name, g1, cnt) != TEXTOK_OK) {
            CHECK(0, "%s: reading %s: %s", what, name, textok_last_error());
            free(g0); free(g1);
            return;
        }
        if (sqrt(dot_self(g0, cnt) / (double)cnt) < 1e-7) {
            double d = 0.0;
            size_t j;
            for (j = 0; j < cnt; j++) d += ((double)g1[j] - g0[j]) * ((double)g1[j] - g0[j]);
            CHECK(sqrt(d / (double)cnt) <= 1e-7, "%s: %s (a zero gradient) differs by RMS %.3e > 1e-7", what, name,
                  sqrt(d / (double)cnt));
            free(g0); free(g1);
            continue;
        }
        e = rel_l2(g1, g0, cnt);
        if (e > worst || worst_i < 0) { worst = e; worst_i = i; }
        CHECK(e <= 1e-4, "%s: %s relative L2 %.3e > 1e-4", what, name, e);
        free(g0); free(g1);
    }
    printf("%s: %d gradients, worst %s rel L2 %.3e\n", what, n, worst_i >= 0 ? specs[worst_i].name : "-", worst);
}

/* 3a. TiTok-S-128 as the official checkpoint (legacy: proxy codes + MaskGIT-VQGAN pixel decoder) */
static textok_titok_config s128_legacy(int layers)
{
    static const int mult[5] = { 1, 1, 2, 2, 4 };
    textok_titok_config c;
    int i;
    memset(&c, 0, sizeof c);
    c.image_size = 256; c.patch_size = 16; c.num_latent_tokens = 128; c.token_size = 12;
    c.enc_width = c.dec_width = 512; c.enc_layers = c.dec_layers = layers; c.enc_heads = c.dec_heads = 8;
    c.enc_mlp = c.dec_mlp = 2048;
    c.quantize_mode = TEXTOK_QUANT_VQ; c.codebook_size = 4096; c.use_l2_norm = 1; c.is_legacy = 1;
    c.pixel_codebook_size = 1024; c.pixel_z_channels = 256; c.pixel_hidden = 128; c.pixel_num_levels = 5;
    for (i = 0; i < 5; i++) c.pixel_channel_mult[i] = mult[i];
    c.pixel_res_blocks = 2; c.pixel_groups = 32;
    if (g_small) {   /* 32x32, patch 4, 8 tokens, width 32, a 3-level pixel decoder (x4) */
        c.image_size = 32; c.patch_size = 4; c.num_latent_tokens = 8; c.token_size = 6;
        c.enc_width = c.dec_width = 32; c.enc_heads = c.dec_heads = 2; c.enc_mlp = c.dec_mlp = 64;
        c.codebook_size = 64;
        c.pixel_codebook_size = 16; c.pixel_z_channels = 8; c.pixel_hidden = 8; c.pixel_num_levels = 3;
        c.pixel_channel_mult[0] = 1; c.pixel_channel_mult[1] = 1; c.pixel_channel_mult[2] = 2;
        c.pixel_res_blocks = 1; c.pixel_groups = 4;
    }
    return c;
}

static void titok_checks(const textok_kernels *cpu, const textok_kernels *gpu)
{
    const int B = 2;
    textok_titok_config cfg = s128_legacy(g_small ? 2 : 8);
    const int K = cfg.num_latent_tokens, S = cfg.image_size, Cq = cfg.token_size;
    const size_t n_img = (size_t)B * 3 * S * S, n_pq = (size_t)B * Cq * K;
    textok_titok *mc = NULL, *mg = NULL;
    textok_params pc = textok_default_params(), pg = textok_default_params();
    float *img = (float *)malloc(n_img * sizeof(float)), *out_c = (float *)malloc(n_img * sizeof(float));
    float *out_g = (float *)malloc(n_img * sizeof(float));
    float *pq_c = (float *)malloc(n_pq * sizeof(float)), *pq_g = (float *)malloc(n_pq * sizeof(float));
    int32_t *ids_c = (int32_t *)malloc((size_t)B * K * sizeof(int32_t)), *ids_g = (int32_t *)malloc((size_t)B * K * sizeof(int32_t));
    textok_rng r;
    int i, diff = 0, allowed = B * K / 100 > 1 ? B * K / 100 : 1;
    double e_pq, e_img;
    if (!img || !out_c || !out_g || !pq_c || !pq_g || !ids_c || !ids_g) { CHECK(0, "out of memory"); goto done; }
    pc.kernels = cpu; pc.max_batch = B;
    pg.kernels = gpu; pg.max_batch = B;
    TRY(textok_titok_create(&mc, &cfg, &pc, 1));
    TRY(textok_titok_create(&mg, &cfg, &pg, 1));
    textok_rng_seed(&r, 2);
    textok_rng_fill_uniform(&r, img, n_img, 0.0f, 1.0f);
    TRY(textok_titok_encode(mc, img, B, NULL, ids_c, NULL, pq_c, NULL));
    TRY(textok_titok_encode(mg, img, B, NULL, ids_g, NULL, pq_g, NULL));
    for (i = 0; i < B * K; i++) diff += ids_c[i] != ids_g[i];
    e_pq = rel_l2(pq_g, pq_c, n_pq);
    printf("titok %s encode: pre_quant rel L2 %.3e, %d of %d token ids differ\n", g_small ? "tiny" : "s128", e_pq, diff, B * K);
    CHECK(e_pq <= 1e-4, "titok encode: pre_quant relative L2 %.3e > 1e-4", e_pq);
    CHECK(diff == 0 || (diff <= allowed && e_pq <= 1e-4), "titok encode: %d token ids differ (near-tie rule allows %d)", diff, allowed);
    /* decode the same (CPU) ids on both */
    TRY(textok_titok_decode_tokens(mc, ids_c, B, NULL, out_c));
    TRY(textok_titok_decode_tokens(mg, ids_c, B, NULL, out_g));
    e_img = rel_l2(out_g, out_c, n_img);
    printf("titok %s decode: images rel L2 %.3e\n", g_small ? "tiny" : "s128", e_img);
    CHECK(e_img <= 1e-4, "titok decode: relative L2 %.3e > 1e-4", e_img);
done:
    textok_titok_free(mc); textok_titok_free(mg);
    free(img); free(out_c); free(out_g); free(pq_c); free(pq_g); free(ids_c); free(ids_g);
}

/* 3b. copies per encode for 1 and 3 layers: equal when nothing crosses the bus per layer */
static void copy_count_checks(const textok_kernels *gpu)
{
    unsigned long n_copies[2] = { 0, 0 };
    int li;
    for (li = 0; li < 2; li++) {
        textok_titok_config cfg = s128_legacy(li ? 3 : 1);
        textok_params p = textok_default_params();
        textok_titok *m = NULL;
        const size_t n_img = (size_t)3 * cfg.image_size * cfg.image_size;
        float *img = (float *)calloc(n_img, sizeof(float));
        int32_t ids[128];   /* K <= 128 */
        textok_cuda_counters c;
        p.kernels = gpu;
        if (!img || textok_titok_create(&m, &cfg, &p, 1) != TEXTOK_OK) { CHECK(0, "copy count: %s", textok_last_error()); free(img); return; }
        textok_cuda_reset_counters(gpu);
        if (textok_titok_encode(m, img, 1, NULL, ids, NULL, NULL, NULL) != TEXTOK_OK) CHECK(0, "copy count: %s", textok_last_error());
        c = textok_cuda_get_counters(gpu);
        n_copies[li] = c.to_device + c.to_host;
        printf("titok encode with %d layer(s): %lu to_device (%llu bytes), %lu to_host (%llu bytes), %lu device copies, "
               "%lu launches, %lu allocs\n", cfg.enc_layers, c.to_device, c.to_device_bytes, c.to_host, c.to_host_bytes,
               c.copies, c.launches, c.allocs);
        textok_titok_free(m);
        free(img);
    }
    CHECK(n_copies[0] == n_copies[1], "host<->device copies per encode grow with the layers: %lu (1 layer) vs %lu (3)",
          n_copies[0], n_copies[1]);
}

/* 3c. one training step: S-128-sized ViT tokenizer (non-legacy), small LPIPS and discriminator */
static void train_checks(const textok_kernels *cpu, const textok_kernels *gpu)
{
    static const int lp_ch[5] = { 16, 32, 64, 64, 64 }, lp_small[5] = { 4, 8, 8, 8, 8 };
    const int B = 2;
    const textok_kernels *tabs[2];
    textok_titok *m[2] = { NULL, NULL };
    textok_lpips *lp[2] = { NULL, NULL };
    textok_disc *dc[2] = { NULL, NULL };
    textok_trainer *t[2] = { NULL, NULL };
    textok_train_stats stats[2];
    textok_titok_config cfg;
    textok_train_config tc;
    textok_disc_config dcfg = textok_disc_default_config();
    textok_tensor_spec *specs = NULL;
    float *img = NULL;
    textok_rng r;
    int side, n_specs, n_dspecs, S;
    tabs[0] = cpu; tabs[1] = gpu;
    memset(&cfg, 0, sizeof cfg);
    cfg.image_size = 256; cfg.patch_size = 16; cfg.num_latent_tokens = 128; cfg.token_size = 12;
    cfg.enc_width = cfg.dec_width = 512; cfg.enc_layers = cfg.dec_layers = 8; cfg.enc_heads = cfg.dec_heads = 8;
    cfg.enc_mlp = cfg.dec_mlp = 2048; cfg.quantize_mode = TEXTOK_QUANT_VQ; cfg.codebook_size = 4096; cfg.use_l2_norm = 1;
    dcfg.hidden = 32;
    if (g_small) {   /* 32x32, patch 8, 8 tokens, width 32; discriminator 16 wide, 4x4 logits */
        cfg.image_size = 32; cfg.patch_size = 8; cfg.num_latent_tokens = 8; cfg.token_size = 6;
        cfg.enc_width = cfg.dec_width = 32; cfg.enc_layers = cfg.dec_layers = 2; cfg.enc_heads = cfg.dec_heads = 2;
        cfg.enc_mlp = cfg.dec_mlp = 64; cfg.codebook_size = 64;
        dcfg.hidden = 16; dcfg.groups = 4; dcfg.pool = 4;
    }
    textok_train_preset(&tc, "tiny");
    tc.batch = B;
    S = cfg.image_size;
    img = (float *)malloc((size_t)B * 3 * S * S * sizeof(float));
    if (!img) { CHECK(0, "out of memory"); goto done; }
    textok_rng_seed(&r, 3);
    textok_rng_fill_uniform(&r, img, (size_t)B * 3 * S * S, 0.0f, 1.0f);
    for (side = 0; side < 2; side++) {
        textok_params p = textok_default_params();
        p.kernels = tabs[side]; p.max_batch = B;
        TRY(textok_titok_create(&m[side], &cfg, &p, 1));
        TRY(textok_lpips_create(&lp[side], g_small ? lp_small : lp_ch, &p, 2));
        TRY(textok_disc_create(&dc[side], &dcfg, S, &p, 3));
        TRY(textok_trainer_create(&t[side], m[side], lp[side], dc[side], &tc, 4));
        TRY(textok_trainer_step(t[side], img, NULL, &stats[side]));
    }
    printf("train step: total loss cpu %.8g cuda %.8g; recon %.8g / %.8g; grad_norm %.8g / %.8g; d_total %.8g / %.8g\n",
           stats[0].total, stats[1].total, stats[0].recon, stats[1].recon, stats[0].grad_norm, stats[1].grad_norm,
           stats[0].d_total, stats[1].d_total);
    CHECK(fabs(stats[1].total - stats[0].total) <= 1e-4 * fabs(stats[0].total), "train step: total loss differs");
    /* every generator gradient, then every discriminator gradient */
    n_specs = textok_titok_tensor_specs(&cfg, NULL, 0);
    n_dspecs = textok_disc_tensor_specs(&dcfg, NULL, 0);
    specs = (textok_tensor_spec *)malloc((size_t)(n_specs + n_dspecs) * sizeof *specs);
    if (!specs) { CHECK(0, "out of memory"); goto done; }
    textok_titok_tensor_specs(&cfg, specs, n_specs);
    textok_disc_tensor_specs(&dcfg, specs + n_specs, n_dspecs);
    compare_grads("train step (tokenizer)", "grad.", get_titok, t[0], t[1], specs, n_specs);
    compare_grads("train step (discriminator)", "disc.grad.", get_titok, t[0], t[1], specs + n_specs, n_dspecs);
    /* the loss networks on their own, then checkpoints across devices: each side saves, loads the
       other's, and both take one more step from the same state */
    {
        float dist[2][B], logits[2][B * 16 * 16];
        const int cells = dcfg.pool * dcfg.pool;
        char path0[512], path1[512];
        for (side = 0; side < 2; side++) {
            TRY(textok_lpips_distance(lp[side], img, img + (size_t)3 * S * S, 1, S, S, dist[side]));
            TRY(textok_disc_logits(dc[side], img, B, logits[side]));
        }
        printf("lpips distance cpu %.8g cuda %.8g; disc logits rel L2 %.3e\n", dist[0][0], dist[1][0],
               rel_l2(logits[1], logits[0], (size_t)B * cells));
        CHECK(fabs(dist[1][0] - dist[0][0]) <= 1e-4 * fabs(dist[0][0]), "lpips distance differs");
        CHECK(rel_l2(logits[1], logits[0], (size_t)B * cells) <= 1e-4, "discriminator logits differ");
        temp_path(path0, sizeof path0, "ckpt_cpu");
        temp_path(path1, sizeof path1, "ckpt_cuda");
        TRY(textok_trainer_save(t[0], path0));
        TRY(textok_trainer_save(t[1], path1));
        TRY(textok_trainer_load(t[0], path1));
        TRY(textok_trainer_load(t[1], path0));
        remove(path0); remove(path1);
        for (side = 0; side < 2; side++) TRY(textok_trainer_step(t[side], img, NULL, &stats[side]));
        printf("after swapping checkpoints, one more step: total loss cpu %.8g cuda %.8g\n", stats[0].total, stats[1].total);
        CHECK(fabs(stats[1].total - stats[0].total) <= 1e-4 * fabs(stats[0].total), "train step after the checkpoint swap differs");
    }
done:
    for (side = 0; side < 2; side++) {
        textok_trainer_free(t[side]); textok_titok_free(m[side]); textok_lpips_free(lp[side]); textok_disc_free(dc[side]);
    }
    free(specs); free(img);
}

/* 3d. one guided DiT sampling step (DiT-S/2, 256 px: 4x32x32 latents), the same rng on both.
   Fresh DiT weights are adaLN-Zero (the blocks' gates and the final layer are 0: the output
   would be 0 on both sides), so every tensor is drawn N(0, 0.05^2) instead, written to a
   temporary file and loaded by both. */

static void dit_checks(const textok_kernels *cpu, const textok_kernels *gpu)
{
    const int B = 2;
    textok_dit_config cfg;
    textok_dit *m[2] = { NULL, NULL };
    textok_dit_sample_config sc = textok_dit_sample_default();
    int32_t y[2] = { 3, 207 };
    float *out[2] = { NULL, NULL };
    char path[512];
    textok_safetensors stf;
    size_t n;
    int side, have_file = 0;
    double e;
    TRY(textok_dit_preset(&cfg, "S/2", g_small ? 64 : 256));
    if (g_small) { cfg.hidden = 64; cfg.depth = 2; cfg.heads = 4; cfg.mlp_hidden = 256; }   /* 4x8x8 latents */
    n = (size_t)B * cfg.in_channels * cfg.input_size * cfg.input_size;
    sc.steps = 1;
    temp_path(path, sizeof path, "dit");
    TRY(dit_random_file(path, &cfg));
    TRY(textok_st_open(&stf, path));
    have_file = 1;
    for (side = 0; side < 2; side++) {
        textok_params p = textok_default_params();
        textok_rng r;
        p.kernels = side ? gpu : cpu; p.max_batch = 2 * B;   /* cfg runs the conditional and null halves together */
        out[side] = (float *)malloc(n * sizeof(float));
        if (!out[side]) { CHECK(0, "out of memory"); goto done; }
        TRY(textok_dit_load_st(&m[side], &stf, &cfg, &p));
        textok_rng_seed(&r, 6);
        TRY(textok_dit_generate(m[side], &sc, y, NULL, B, &r, out[side]));
    }
    e = rel_l2(out[1], out[0], n);
    printf("dit %s one guided sampling step: rel L2 %.3e\n", g_small ? "tiny" : "S/2", e);
    CHECK(e <= 1e-4, "dit sampling step: relative L2 %.3e > 1e-4", e);
    printf("dit: output rms %.4g (nonzero: the check compares something)\n", sqrt(dot_self(out[0], n) / (double)n));
    CHECK(dot_self(out[0], n) > 0.0, "dit sampling step: the output is all zeros");
done:
    if (have_file) { textok_st_close(&stf); remove(path); }
    for (side = 0; side < 2; side++) { textok_dit_free(m[side]); free(out[side]); }
}

/* ----- 3e. more model paths, tiny on every machine: TexTok with text (VAE), T5, MaskGIT, the
   generator trainer (DiT and MaskGIT). What matters most here is that they RUN on the GPU table
   unchanged (cuda-emu faults on any host access to device memory); results as above. */
static void textok_text_checks(const textok_kernels *cpu, const textok_kernels *gpu)
{
    enum { B = 2, L = 5, DT = 16 };
    textok_titok_config cfg;
    textok_train_config tc;
    textok_titok *m[2] = { NULL, NULL };
    textok_trainer *t[2] = { NULL, NULL };
    textok_train_stats stats[2];
    textok_tensor_spec *specs = NULL;
    float emb[B * L * DT], *img = NULL, *lat[2] = { NULL, NULL }, *out[2] = { NULL, NULL };
    unsigned char mask[B * L] = { 1, 1, 1, 1, 1, 1, 1, 1, 0, 0 };   /* image 1: 3 real tokens */
    textok_text text;
    textok_rng r;
    size_t n_img, n_lat;
    int side, n_specs;
    memset(&cfg, 0, sizeof cfg);
    cfg.arch = TEXTOK_ARCH_TEXTOK;
    cfg.image_size = 32; cfg.patch_size = 8; cfg.num_latent_tokens = 8; cfg.token_size = 8;
    cfg.enc_width = cfg.dec_width = 32; cfg.enc_layers = cfg.dec_layers = 2; cfg.enc_heads = cfg.dec_heads = 2;
    cfg.enc_mlp = cfg.dec_mlp = 64; cfg.quantize_mode = TEXTOK_QUANT_VAE;
    cfg.text_dim = DT; cfg.text_len = 6; cfg.text_in_encoder = cfg.text_in_decoder = 1;
    n_img = (size_t)B * 3 * 32 * 32;
    n_lat = (size_t)B * cfg.token_size * cfg.num_latent_tokens;
    textok_rng_seed(&r, 7);
    textok_rng_fill_normal(&r, emb, (size_t)B * L * DT, 0.0f, 1.0f);
    text.emb = emb; text.mask = mask; text.L = L; text.dim = DT;
    img = (float *)malloc(n_img * sizeof(float));
    if (!img) { CHECK(0, "out of memory"); goto done; }
    textok_rng_fill_uniform(&r, img, n_img, 0.0f, 1.0f);
    textok_train_preset(&tc, "tiny");
    tc.batch = B; tc.perceptual_weight = 0.0f; tc.disc_weight = 0.0f; tc.vae_sample = 1;
    for (side = 0; side < 2; side++) {
        textok_params p = textok_default_params();
        textok_rng rs;
        p.kernels = side ? gpu : cpu; p.max_batch = B;
        lat[side] = (float *)malloc(n_lat * sizeof(float));
        out[side] = (float *)malloc(n_img * sizeof(float));
        if (!lat[side] || !out[side]) { CHECK(0, "out of memory"); goto done; }
        TRY(textok_titok_create_std(&m[side], &cfg, &p, 1, 0.0f));
        textok_rng_seed(&rs, 8);
        TRY(textok_titok_encode(m[side], img, B, &text, NULL, lat[side], NULL, &rs));   /* a posterior sample */
        TRY(textok_titok_decode_latents(m[side], lat[side], B, &text, out[side]));
        TRY(textok_trainer_create(&t[side], m[side], NULL, NULL, &tc, 9));
        TRY(textok_trainer_step(t[side], img, &text, &stats[side]));
    }
    printf("textok (VAE, text both sides): latents rel L2 %.3e, decode rel L2 %.3e, train loss %.8g / %.8g (kl %.6g / %.6g)\n",
           rel_l2(lat[1], lat[0], n_lat), rel_l2(out[1], out[0], n_img), stats[0].total, stats[1].total, stats[0].kl, stats[1].kl);
    CHECK(rel_l2(lat[1], lat[0], n_lat) <= 1e-4, "textok: latents differ");
    CHECK(rel_l2(out[1], out[0], n_img) <= 1e-4, "textok: decoded images differ");
    CHECK(fabs(stats[1].total - stats[0].total) <= 1e-4 * fabs(stats[0].total), "textok: train loss differs");
    n_specs = textok_titok_tensor_specs(&cfg, NULL, 0);
    specs = (textok_tensor_spec *)malloc((size_t)n_specs * sizeof *specs);
    if (!specs) { CHECK(0, "out of memory"); goto done; }
    textok_titok_tensor_specs(&cfg, specs, n_specs);
    compare_grads("textok train step", "grad.", get_titok, t[0], t[1], specs, n_specs);
done:
    for (side = 0; side < 2; side++) { textok_trainer_free(t[side]); textok_titok_free(m[side]); free(lat[side]); free(out[side]); }
    free(img); free(specs);
}

static void t5_checks(const textok_kernels *cpu, const textok_kernels *gpu)
{
    enum { B = 3, L = 7 };   /* row 2 is all padding: attention's all-masked rule (zero outputs) */
    textok_t5_config cfg;
    textok_t5 *t5[2] = { NULL, NULL };
    textok_tensor_spec *specs = NULL;
    textok_safetensors stf;
    char path[512];
    int32_t ids[B * L] = { 5, 9, 3, 60, 1, 0, 0, 7, 8, 2, 33, 4, 19, 1, 0, 0, 0, 0, 0, 0, 0 };
    unsigned char mask[B * L] = { 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0 };
    float out[2][B * L * 32];
    int side, n, have_file = 0;
    memset(&cfg, 0, sizeof cfg);
    cfg.vocab = 64; cfg.d_model = 32; cfg.d_kv = 8; cfg.heads = 4; cfg.d_ff = 64; cfg.layers = 2;
    cfg.num_buckets = 8; cfg.max_distance = 16; cfg.gated = 1; cfg.gelu_tanh = 1; cfg.eps = 1e-6f;
    n = textok_t5_tensor_specs(&cfg, NULL, 0);
    specs = n > 0 ? (textok_tensor_spec *)calloc((size_t)n, sizeof *specs) : NULL;
    if (!specs) { CHECK(0, "t5 specs: %s", textok_last_error()); goto done; }
    textok_t5_tensor_specs(&cfg, specs, n);
    temp_path(path, sizeof path, "t5");
    TRY(random_weights_file(path, specs, n, 10));
    TRY(textok_st_open(&stf, path));
    have_file = 1;
    for (side = 0; side < 2; side++) {
        textok_params p = textok_default_params();
        p.kernels = side ? gpu : cpu; p.max_batch = B;
        TRY(textok_t5_load_st(&t5[side], &stf, &cfg, &p));
        TRY(textok_t5_encode(t5[side], ids, mask, B, L, out[side]));
    }
    printf("t5 (gated tanh-GELU, relative bias, padding, an all-padding row): rel L2 %.3e\n", rel_l2(out[1], out[0], (size_t)B * L * 32));
    CHECK(rel_l2(out[1], out[0], (size_t)B * L * 32) <= 1e-4, "t5: encoder outputs differ");
done:
    if (have_file) { textok_st_close(&stf); remove(path); }
    for (side = 0; side < 2; side++) textok_t5_free(t5[side]);
    free(specs);
}

static void maskgit_checks(const textok_kernels *cpu, const textok_kernels *gpu, int arch)
{
    enum { B = 2, LEN = 8 };
    const char *an = arch == TEXTOK_MASKGIT_BERT ? "maskgit ImageBert" : "maskgit UViT";
    textok_maskgit_config cfg;
    textok_maskgit_sample_config sc;
    textok_gen_train_config tc;
    textok_maskgit *m[2] = { NULL, NULL };
    textok_gen_trainer *t[2] = { NULL, NULL };
    textok_gen_train_stats stats[2];
    textok_tensor_spec *specs = NULL;
    int32_t in_ids[B * LEN] = { 16, 3, 16, 16, 7, 1, 16, 0, 2, 16, 16, 9, 16, 4, 16, 16 }, cls[B] = { 1, 4 };
    int32_t tok[B * LEN] = { 1, 3, 5, 7, 9, 11, 13, 15, 0, 2, 4, 6, 8, 10, 12, 14 }, gen_ids[2][B * LEN];
    float logits[2][B * LEN * 16];
    int side, n, i, diff = 0;
    memset(&cfg, 0, sizeof cfg);
    cfg.arch = arch; cfg.codebook_size = 16; cfg.num_classes = 5; cfg.seq_len = LEN;
    cfg.hidden = 32; cfg.depth = arch == TEXTOK_MASKGIT_BERT ? 2 : 4; cfg.heads = 2; cfg.mlp_hidden = 64;
    textok_maskgit_sample_preset(&sc, "demo");
    sc.steps = 3;
    textok_gen_train_preset(&tc, "tiny");
    tc.batch = B;
    for (side = 0; side < 2; side++) {
        textok_params p = textok_default_params();
        textok_rng r;
        p.kernels = side ? gpu : cpu; p.max_batch = 2 * B;
        TRY(textok_maskgit_create(&m[side], &cfg, &p, 11));
        TRY(textok_maskgit_forward(m[side], in_ids, cls, B, logits[side]));
        textok_rng_seed(&r, 12);
        TRY(textok_maskgit_generate(m[side], &sc, cls, B, &r, gen_ids[side]));
        TRY(textok_gen_trainer_create(&t[side], NULL, m[side], &tc, 13));
        TRY(textok_gen_trainer_step(t[side], NULL, tok, cls, NULL, &stats[side]));
    }
    for (i = 0; i < B * LEN; i++) diff += gen_ids[0][i] != gen_ids[1][i];
    printf("%s: logits rel L2 %.3e, generated ids differing %d of %d, train loss %.8g / %.8g\n", an,
           rel_l2(logits[1], logits[0], (size_t)B * LEN * 16), diff, B * LEN, stats[0].loss, stats[1].loss);
    CHECK(rel_l2(logits[1], logits[0], (size_t)B * LEN * 16) <= 1e-4, "%s: logits differ", an);
    CHECK(diff == 0, "%s: generated ids differ (%d): a near-tie in the Gumbel argmax, or a bug", an, diff);
    CHECK(fabs(stats[1].loss - stats[0].loss) <= 1e-4 * fabs(stats[0].loss), "%s: train loss differs", an);
    n = textok_maskgit_tensor_specs(&cfg, NULL, 0);
    specs = n > 0 ? (textok_tensor_spec *)calloc((size_t)n, sizeof *specs) : NULL;
    if (!specs) { CHECK(0, "out of memory"); goto done; }
    textok_maskgit_tensor_specs(&cfg, specs, n);
    compare_grads(arch == TEXTOK_MASKGIT_BERT ? "maskgit ImageBert train step" : "maskgit UViT train step", "grad.", get_gen,
                  t[0], t[1], specs, n);
done:
    for (side = 0; side < 2; side++) { textok_gen_trainer_free(t[side]); textok_maskgit_free(m[side]); }
    free(specs);
}

static void dit_train_checks(const textok_kernels *cpu, const textok_kernels *gpu)
{
    enum { B = 2 };
    textok_dit_config cfg;
    textok_gen_train_config tc;
    textok_dit *m[2] = { NULL, NULL };
    textok_gen_trainer *t[2] = { NULL, NULL };
    textok_gen_train_stats stats[2];
    textok_tensor_spec *specs = NULL;
    textok_safetensors stf;
    char path[512];
    int32_t y[B] = { 4, 1 };
    float *lat = NULL;
    size_t n_lat;
    int side, n = 0, have_file = 0;
    TRY(textok_dit_preset(&cfg, "S/2", 64));
    cfg.hidden = 64; cfg.depth = 2; cfg.heads = 4; cfg.mlp_hidden = 256;
    n_lat = (size_t)B * cfg.in_channels * cfg.input_size * cfg.input_size;
    lat = (float *)malloc(n_lat * sizeof(float));
    if (!lat) { CHECK(0, "out of memory"); goto done; }
    {
        textok_rng r;
        textok_rng_seed(&r, 14);
        textok_rng_fill_normal(&r, lat, n_lat, 0.0f, 1.0f);
    }
    temp_path(path, sizeof path, "dit_train");
    TRY(dit_random_file(path, &cfg));
    TRY(textok_st_open(&stf, path));
    have_file = 1;
    textok_gen_train_preset(&tc, "tiny");
    tc.batch = B;
    for (side = 0; side < 2; side++) {
        textok_params p = textok_default_params();
        p.kernels = side ? gpu : cpu; p.max_batch = 2 * B;
        TRY(textok_dit_load_st(&m[side], &stf, &cfg, &p));
        TRY(textok_gen_trainer_create(&t[side], m[side], NULL, &tc, 15));
        TRY(textok_gen_trainer_step(t[side], lat, NULL, y, NULL, &stats[side]));
    }
    printf("dit train step: loss %.8g / %.8g (mse %.8g / %.8g, vb %.6g / %.6g)\n", stats[0].loss, stats[1].loss,
           stats[0].mse, stats[1].mse, stats[0].vb, stats[1].vb);
    CHECK(fabs(stats[1].loss - stats[0].loss) <= 1e-4 * fabs(stats[0].loss), "dit train step: loss differs");
    n = textok_dit_tensor_specs(&cfg, NULL, 0);
    specs = n > 0 ? (textok_tensor_spec *)calloc((size_t)n, sizeof *specs) : NULL;
    if (!specs) { CHECK(0, "out of memory"); goto done; }
    textok_dit_tensor_specs(&cfg, specs, n);
    compare_grads("dit train step", "grad.", get_gen, t[0], t[1], specs, n);
done:
    if (have_file) { textok_st_close(&stf); remove(path); }
    for (side = 0; side < 2; side++) { textok_gen_trainer_free(t[side]); textok_dit_free(m[side]); }
    free(specs); free(lat);
}

/* 4. errors: a failure inside a kernel (here an unsupported attention head dim, 600 > 256) is
   recorded and returned by the next copy as a textok error naming it, on a table of its own
   (the error is sticky: that table keeps failing) */
static void error_checks(void)
{
    textok_kernels bad;
    textok_attention_dims d;
    float *buf, host[4];
    int st;
    if (textok_cuda_kernels(&bad, 0, 0) != TEXTOK_OK) { CHECK(0, "error check: %s", textok_last_error()); return; }
    d.B = 1; d.Tq = d.Tk = 1; d.C = 600; d.H = 1; d.scale = 1.0f;
    buf = (float *)bad.alloc(&bad, 4 * 600 * sizeof(float));
    CHECK(buf != NULL, "error check: alloc: %s", textok_last_error());
    if (buf) {
        bad.fill(&bad, buf, 4 * 600, 0.0f);
        bad.attention_forward(&bad, buf, buf + 600, buf + 1200, buf + 1800, buf + 2400, NULL, NULL, &d, NULL);
        st = bad.to_host(&bad, host, buf, sizeof host);
        printf("error path: to_host after a failed kernel returns %d: %s\n", st, textok_last_error());
        CHECK(st == TEXTOK_ERR_UNSUPPORTED && strstr(textok_last_error(), "attention"), "error check: the failure was not returned");
        CHECK(textok_cuda_status(&bad) != TEXTOK_OK, "error check: textok_cuda_status forgot the failure");
        bad.free(&bad, buf);
    }
    textok_cuda_release(&bad);
}

int main(int argc, char **argv)
{
    textok_kernels ref = textok_cpu_ref_kernels(), fast = textok_cpu_kernels(0), gpu;
    cmp_tally tally = { 0, 0 };
    int quick = 0, st, i, n_dev = textok_cuda_device_count();
    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) quick = 1;
        else if (!strcmp(argv[i], "--small")) g_small = 1;
        else { fprintf(stderr, "usage: %s [--quick] [--small]\n", argv[0]); return 2; }
    }
    if (n_dev == 0) {
        /* the one CPU-side path: asking for a table without a device is a clean error */
        st = textok_cuda_kernels(&gpu, 0, 0);
        if (st == TEXTOK_OK) { printf("FAIL: textok_cuda_kernels succeeded without a device\n"); return 1; }
        printf("textok_cuda_kernels without a device: %s\n", textok_last_error());
        printf("skipped: no CUDA device\n");
        return 0;
    }
    if (textok_cuda_kernels(&gpu, 0, 0) != TEXTOK_OK) { printf("FAIL: %s\n", textok_last_error()); return 1; }
    printf("CUDA devices: %d; table '%s'\n", n_dev, gpu.name);

    CHECK(missing_kernels(&ref, &gpu) == 0, "the CUDA table lacks kernels the CPU table has");
    st = textok_kernels_compare(&ref, &gpu, 1234, report, &tally);
    printf("kernels_compare: %d rows, %d failed (status %d)\n", tally.rows, tally.bad, st);
    CHECK(st == 0, "kernels_compare(cpu-ref, cuda) returned %d: %s", st, st < 0 ? textok_last_error() : "rows failed");
    CHECK(textok_cuda_status(&gpu) == TEXTOK_OK, "CUDA error after the kernel comparison: %s", textok_last_error());
    error_checks();

    if (!quick) {
        titok_checks(&fast, &gpu);
        copy_count_checks(&gpu);
        train_checks(&fast, &gpu);
        dit_checks(&fast, &gpu);
        textok_text_checks(&fast, &gpu);
        t5_checks(&fast, &gpu);
        maskgit_checks(&fast, &gpu, TEXTOK_MASKGIT_BERT);
        maskgit_checks(&fast, &gpu, TEXTOK_MASKGIT_UVIT);
        dit_train_checks(&fast, &gpu);
        CHECK(textok_cuda_status(&gpu) == TEXTOK_OK, "CUDA error after the model checks: %s", textok_last_error());
    }
    textok_cuda_release(&gpu);
    printf("test_cuda: %d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
