/* test_hostile.c - small hostile files that claim huge sizes: each must be refused with a message
   that names the file and the limit, and without a large allocation. The runner's library
   allocator counts (check.h, tt_alloc_*): every check asserts the bytes requested while the
   reader ran (an upper bound of its peak), next to the file's own size. Files are written to
   $TMPDIR or /tmp and removed. */
#include "textok.h"
#include "check.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#define HO_PID ((long)getpid())
#else
#define HO_PID 0L
#endif

#define HO_BUDGET ((size_t)4 << 20)   /* 4 MiB: a model's spec list (up to ~25k names for the largest
                                         configs) and the header; nothing sized by the claimed model */

static void ho_path(char *buf, size_t cap, const char *name)
{
    const char *dir = getenv("TMPDIR");
    snprintf(buf, cap, "%s/textok_hostile_%ld_%s", dir && *dir ? dir : "/tmp", HO_PID, name);
}

/* A safetensors file: the 8-byte length, the JSON header, then n_data bytes of zeros. */
static int ho_write_st(const char *path, const char *json, size_t n_data)
{
    FILE *f = fopen(path, "wb");
    size_t n = strlen(json), i;
    unsigned char len[8];
    int ok;
    if (!f) return 0;
    for (i = 0; i < 8; i++) len[i] = (unsigned char)((uint64_t)n >> (8 * i));
    ok = fwrite(len, 1, 8, f) == 8 && fwrite(json, 1, n, f) == n;
    for (i = 0; i < n_data && ok; i++) ok = fputc(0, f) != EOF;
    return (fclose(f) == 0) && ok;
}

/* Checks one refusal: status not OK, the message contains want, counted bytes under budget. */
static void ho_expect(tt_stats *s, const char *what, int status, const char *want, size_t budget)
{
    const char *msg = textok_last_error();
    size_t total = tt_alloc_total(), largest = tt_alloc_largest();
    tt_check(s, status != TEXTOK_OK && strstr(msg, want) != NULL && total <= budget,
             "hostile %-34s refused, %zu bytes allocated in all (largest %zu, budget %zu): %s", what, total, largest,
             budget, msg);
}

/* A model file whose metadata claims a huge model and holds no tensors. */
static void ho_model(tt_stats *s, const char *what, const char *json, const char *want,
                     int (*load)(const char *path, const textok_params *p))
{
    char path[512];
    textok_params p = textok_default_params();
    int rc;
    ho_path(path, sizeof path, "model.safetensors");
    if (!ho_write_st(path, json, 0)) { tt_check(s, 0, "hostile %s: cannot write %s", what, path); return; }
    p.n_threads = 1;
    tt_alloc_count(1);
    rc = load(path, &p);
    tt_alloc_count(0);
    ho_expect(s, what, rc, want, HO_BUDGET);
    remove(path);
}

static int ho_load_titok(const char *path, const textok_params *p)
{
    textok_titok *m = NULL;
    int rc = textok_titok_load(&m, path, p);
    if (rc == TEXTOK_OK) textok_titok_free(m);
    return rc;
}
static int ho_load_dit(const char *path, const textok_params *p)
{
    textok_dit *m = NULL;
    int rc = textok_dit_load(&m, path, p);
    if (rc == TEXTOK_OK) textok_dit_free(m);
    return rc;
}
static int ho_load_t5(const char *path, const textok_params *p)
{
    textok_t5 *m = NULL;
    int rc = textok_t5_load(&m, path, p);
    if (rc == TEXTOK_OK) textok_t5_free(m);
    return rc;
}
static int ho_load_maskgit(const char *path, const textok_params *p)
{
    textok_maskgit *m = NULL;
    int rc = textok_maskgit_load(&m, path, p);
    if (rc == TEXTOK_OK) textok_maskgit_free(m);
    return rc;
}

void test_hostile(tt_stats *s)
{
    char path[512];
    textok_safetensors st;
    int rc;

    /* safetensors: a header length of 2^40 in a 10-byte file */
    {
        static const unsigned char b[10] = { 0, 0, 0, 0, 0, 1, 0, 0, '{', '}' };
        tt_alloc_count(1);
        rc = textok_st_open_memory(&st, b, sizeof b, "huge_header.safetensors");
        tt_alloc_count(0);
        ho_expect(s, "safetensors header 2^40 bytes", rc, "huge_header.safetensors", 4096);
    }
    /* a tensor of 65536 x 65536 F32 (16 GiB) in a 120-byte file */
    ho_path(path, sizeof path, "huge_tensor.safetensors");
    if (ho_write_st(path, "{\"w\":{\"dtype\":\"F32\",\"shape\":[65536,65536],\"data_offsets\":[0,17179869184]}}", 16)) {
        tt_alloc_count(1);
        rc = textok_st_open(&st, path);
        tt_alloc_count(0);
        ho_expect(s, "safetensors tensor 16 GiB", rc, "'w'", 4096);
        if (rc == TEXTOK_OK) textok_st_close(&st);
        remove(path);
    }
    /* .npy: shape (100000, 100000) float32 (40 GB) in 128 bytes */
    {
        unsigned char b[128];
        const char *hdr = "{'descr': '<f4', 'fortran_order': False, 'shape': (100000, 100000), }";
        float *data = NULL;
        int ndim;
        int64_t shape[TEXTOK_MAX_DIMS];
        memset(b, ' ', sizeof b);
        memcpy(b, "\x93NUMPY\x01\x00", 8);
        b[8] = 118; b[9] = 0;   /* header length: the rest of the 128 bytes */
        memcpy(b + 10, hdr, strlen(hdr));
        b[127] = '\n';
        tt_alloc_count(1);
        rc = textok_npy_read_memory(b, sizeof b, "huge.npy", &data, &ndim, shape);
        tt_alloc_count(0);
        ho_expect(s, ".npy shape 100000 x 100000", rc, "huge.npy", 4096);
        if (rc == TEXTOK_OK) textok_free(data);
    }
    /* .npy: a header length of 4 GB (format 2.0) */
    {
        static const unsigned char b[16] = { 0x93, 'N', 'U', 'M', 'P', 'Y', 2, 0, 0xff, 0xff, 0xff, 0xff, '{', '}', ' ', '\n' };
        float *data = NULL;
        int ndim;
        int64_t shape[TEXTOK_MAX_DIMS];
        tt_alloc_count(1);
        rc = textok_npy_read_memory(b, sizeof b, "huge_header.npy", &data, &ndim, shape);
        tt_alloc_count(0);
        ho_expect(s, ".npy header 4 GB", rc, "TEXTOK_MAX_NPY_HEADER", 4096);
        if (rc == TEXTOK_OK) textok_free(data);
    }
    /* a text over TEXTOK_MAX_TEXT_BYTES through the tokenizer */
    {
        textok_spm *tok = NULL;
        char tpath[512];
        snprintf(tpath, sizeof tpath, "%s/spm/tokenizer_ws.json", tt_golden_dir);
        if (textok_spm_load(&tok, tpath) != TEXTOK_OK) {
            tt_check(s, 0, "hostile: cannot load %s: %s", tpath, textok_last_error());
        } else {
            char *text = (char *)malloc((size_t)TEXTOK_MAX_TEXT_BYTES + 2);
            int32_t ids[8];
            int n = 0;
            if (text) {
                memset(text, 'a', (size_t)TEXTOK_MAX_TEXT_BYTES + 1);
                text[TEXTOK_MAX_TEXT_BYTES + 1] = 0;
                tt_alloc_count(1);
                rc = textok_spm_encode(tok, text, ids, 8, &n, NULL);
                tt_alloc_count(0);
                ho_expect(s, "text of TEXTOK_MAX_TEXT_BYTES + 1", rc, "TEXTOK_MAX_TEXT_BYTES", 4096);
                free(text);
            }
            textok_spm_free(tok);
        }
    }
    /* model files whose metadata claims the largest model the config checks allow (10^13
       parameters and more) and that hold no tensors: refused from the tensor table before the
       parameters or the activations are allocated (the spec list of names is what they cost) */
    ho_model(s, "TiTok of 65536 wide, 1024 layers",
             "{\"__metadata__\":{\"textok.model\":\"titok\",\"image_size\":\"8192\",\"patch_size\":\"8\","
             "\"num_latent_tokens\":\"65536\",\"token_size\":\"65536\",\"enc_width\":\"65536\",\"enc_layers\":\"1024\","
             "\"enc_heads\":\"4\",\"enc_mlp\":\"262144\",\"dec_width\":\"65536\",\"dec_layers\":\"1024\",\"dec_heads\":\"4\","
             "\"dec_mlp\":\"262144\",\"codebook_size\":\"16777216\",\"use_l2_norm\":\"0\",\"is_legacy\":\"0\","
             "\"pixel_codebook_size\":\"0\",\"pixel_z_channels\":\"0\",\"pixel_hidden\":\"0\",\"pixel_num_levels\":\"0\","
             "\"pixel_res_blocks\":\"0\",\"pixel_groups\":\"0\",\"text_dim\":\"65536\",\"text_len\":\"65536\",\"text_in_encoder\":\"1\","
             "\"text_in_decoder\":\"1\",\"text_optional\":\"0\",\"quantize_mode\":\"vq\",\"arch\":\"textok\"}}",
             "model.safetensors", ho_load_titok);
    ho_model(s, "DiT of 65536 hidden, 1024 blocks",
             "{\"__metadata__\":{\"textok.model\":\"dit\",\"in_channels\":\"4096\",\"input_size\":\"65536\",\"seq_1d\":\"1\","
             "\"patch_size\":\"1\",\"hidden\":\"65536\",\"depth\":\"1024\",\"heads\":\"4\",\"mlp_hidden\":\"262144\","
             "\"num_classes\":\"16777216\",\"learn_sigma\":\"1\",\"text_dim\":\"0\",\"text_len\":\"0\",\"guide_channels\":\"8\","
             "\"latent_scale\":\"1\"}}",
             "model.safetensors", ho_load_dit);
    /* the right number of tensors, but 2 bytes each: the file cannot hold the parameters */
    {
        textok_dit_config c;
        int n, i;
        size_t len = 0, cap;
        char *json;
        memset(&c, 0, sizeof c);
        c.in_channels = 8; c.input_size = 65536; c.seq_1d = 1; c.patch_size = 1; c.hidden = 65536; c.depth = 2;
        c.heads = 4; c.mlp_hidden = 262144; c.num_classes = 1000; c.learn_sigma = 1; c.guide_channels = 8;
        c.latent_scale = 1.0f;
        n = textok_dit_tensor_specs(&c, NULL, 0);
        cap = 1024 + (size_t)n * 96;
        json = (char *)malloc(cap);
        if (json && n > 0) {
            len += (size_t)snprintf(json + len, cap - len,
                                    "{\"__metadata__\":{\"textok.model\":\"dit\",\"in_channels\":\"8\",\"input_size\":\"65536\","
                                    "\"seq_1d\":\"1\",\"patch_size\":\"1\",\"hidden\":\"65536\",\"depth\":\"2\",\"heads\":\"4\","
                                    "\"mlp_hidden\":\"262144\",\"num_classes\":\"1000\",\"learn_sigma\":\"1\",\"text_dim\":\"0\","
                                    "\"text_len\":\"0\",\"guide_channels\":\"8\",\"latent_scale\":\"1\"}");
            for (i = 0; i < n; i++)
                len += (size_t)snprintf(json + len, cap - len, ",\"t%d\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[%d,%d]}",
                                        i, 2 * i, 2 * i + 2);
            snprintf(json + len, cap - len, "}");
            ho_path(path, sizeof path, "model.safetensors");
            if (ho_write_st(path, json, (size_t)2 * n)) {
                textok_dit *m = NULL;
                textok_params p = textok_default_params();
                p.n_threads = 1;
                tt_alloc_count(1);
                rc = textok_dit_load(&m, path, &p);
                tt_alloc_count(0);
                ho_expect(s, "DiT: enough tensors, 2 bytes each", rc, "data bytes can hold", HO_BUDGET);
                if (rc == TEXTOK_OK) textok_dit_free(m);
                remove(path);
            }
        }
        free(json);
    }
    ho_model(s, "T5 of 65536 wide, 1024 layers",
             "{\"__metadata__\":{\"textok.model\":\"t5\",\"vocab\":\"16777216\",\"d_model\":\"65536\",\"d_kv\":\"65536\","
             "\"heads\":\"4096\",\"d_ff\":\"262144\",\"layers\":\"1024\",\"num_buckets\":\"32\",\"max_distance\":\"128\","
             "\"gated\":\"1\",\"gelu_tanh\":\"1\",\"eps\":\"1e-6\"}}",
             "model.safetensors", ho_load_t5);
    ho_model(s, "MaskGIT of 65536 hidden, 1024 blocks",
             "{\"__metadata__\":{\"textok.model\":\"maskgit\",\"arch\":\"uvit\",\"codebook_size\":\"1048576\","
             "\"num_classes\":\"1048576\",\"seq_len\":\"65536\",\"hidden\":\"65536\",\"depth\":\"1024\",\"heads\":\"4\","
             "\"mlp_hidden\":\"262144\"}}",
             "model.safetensors", ho_load_maskgit);
}
