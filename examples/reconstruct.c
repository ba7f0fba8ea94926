/* reconstruct: image -> TiTok tokens -> image, and how close the round trip came.

     build/reconstruct --weights W --image IMG --out OUT.png [--raw RAW.npy] [--text-emb T.npy] [--threads N]

   W is a textok-layout model (see tokenize.c). The image is centre-cropped and resized to the
   model resolution S (ex_load_image in common.h), encoded, and decoded again:
     VQ models:  from the K token ids (textok_titok_decode_tokens): the tokens are the image
     VAE models: from the posterior mean (textok_titok_decode_latents), no sampling
     continuous models (TexTok "none"): from the encoder output
   Text-conditioned models (TA-TiTok, TexTok) need the caption's token states: --text-emb T.npy,
   float32 (L, D) as build/encode_text writes them; the same text goes to both stacks.
   OUT.png is the reconstruction clamped to [0,1] and truncated to 8 bits, as the official demo
   does. --raw RAW.npy writes the decoder output before any clamping, float32 (1,3,S,S).
   Prints one line on stdout: the PSNR of the clamped float reconstruction against the resized
   input, peak 1.0. On any failure: a message naming the culprit, exit status 1 (2 for a bad
   command line), and none of this run's outputs is left. */
#define TEXTOK_IMPLEMENTATION
#include "textok.h"
#include "common.h"

static const char *usage = "--weights W --image IMG --out OUT.png [--raw RAW.npy] [--text-emb T.npy] [--threads N]";

/* 10 log10(1 / MSE) over n values, the reconstruction clamped to [0,1] first */
static double psnr(const float *recon, const float *ref, size_t n)
{
    double se = 0;
    size_t i;
    for (i = 0; i < n; i++) {
        double v = recon[i] > 0 ? (recon[i] < 1 ? recon[i] : 1) : 0, d = v - ref[i];
        se += d * d;
    }
    return se > 0 ? 10.0 * log10((double)n / se) : INFINITY;
}

int main(int argc, char **argv)
{
    const char *weights = NULL, *image = NULL, *out = NULL, *raw = NULL, *threads = NULL, *text_emb = NULL;
    ex_flag flags[] = {
        { "--weights", &weights, 1 }, { "--image", &image, 1 }, { "--out", &out, 1 },
        { "--raw", &raw, 0 }, { "--text-emb", &text_emb, 0 }, { "--threads", &threads, 0 },
    };
    textok_text tx;
    const textok_text *text;
    float *text_buf;
    textok_params params = textok_default_params();
    textok_titok *model = NULL;
    const textok_titok_config *cfg;
    float *img, *latents, *recon;
    int32_t *tokens;
    int S, K, C, is_vq, rc;

    ex_parse_flags(argc, argv, flags, (int)(sizeof flags / sizeof flags[0]), usage);
    params.n_threads = ex_parse_int(threads, "--threads", 0, 4096, 0, usage);
    if (raw && !strcmp(raw, out)) ex_usage(usage, "--raw and --out are the same file '%s'", out);

    if (textok_titok_load(&model, weights, &params) != TEXTOK_OK)
        ex_die("cannot load model '%s': %s", weights, textok_last_error());
    cfg = textok_titok_get_config(model);
    S = cfg->image_size;
    K = cfg->num_latent_tokens;
    C = cfg->token_size;
    is_vq = cfg->quantize_mode == TEXTOK_QUANT_VQ;
    text = ex_text_flags(cfg, weights, text_emb, &tx, &text_buf, usage);
    img = ex_load_image(image, S);

    tokens = (int32_t *)ex_malloc((size_t)K * sizeof(int32_t));
    latents = (float *)ex_malloc((size_t)C * K * sizeof(float));
    recon = (float *)ex_malloc((size_t)3 * S * S * sizeof(float));
    if (is_vq) {
        /* decode from the ids, the reference path (not the straight-through latents) */
        rc = textok_titok_encode(model, img, 1, text, tokens, NULL, NULL, NULL);
        if (rc == TEXTOK_OK) rc = textok_titok_decode_tokens(model, tokens, 1, text, recon);
    } else {
        rc = textok_titok_encode(model, img, 1, text, NULL, latents, NULL, NULL);   /* posterior mean */
        if (rc == TEXTOK_OK) rc = textok_titok_decode_latents(model, latents, 1, text, recon);
    }
    if (rc != TEXTOK_OK) ex_die("cannot reconstruct '%s' with '%s': %s", image, weights, textok_last_error());

    if (raw) {
        const int64_t shape[4] = { 1, 3, S, S };
        ex_write_npy(raw, recon, 4, shape);
    }
    ex_write_png(out, recon, S);
    printf("PSNR %.2f dB (%s, %dx%d, %d %s tokens)\n", psnr(recon, img, (size_t)3 * S * S), image, S, S,
           K, is_vq ? "VQ" : cfg->quantize_mode == TEXTOK_QUANT_VAE ? "VAE" : "continuous");

    textok_titok_free(model);
    free(img); free(tokens); free(latents); free(recon); free(text_buf);
    return 0;
}
