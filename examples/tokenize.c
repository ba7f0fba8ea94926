/* tokenize: one image -> TiTok tokens / latents.

     build/tokenize --weights W --image IMG --out OUT [--latents PRE.npy] [--text-emb T.npy] [--threads N]

   W is a textok-layout model (build/convert writes one from the official weights). IMG is any
   image stb_image reads; it is centre-cropped to a square and resized to the model resolution
   (see ex_load_image in common.h). OUT is a prefix (a trailing ".json" or ".npy" is stripped):
     VQ models:  OUT.json  {"tokens": [id, id, ...]}, the K codebook ids of the image
                 OUT.npy   the quantised latents the decoder sees, float32 (1,C,1,K)
     VAE models: OUT.npy   the posterior mean, float32 (1,C,1,K); no .json (there are no ids)
     --latents PRE.npy:    the encoder output before quantisation, float32 (1,Cq,1,K)
                           (VAE: Cq = 2C, mean then logvar)
   Text-conditioned models (TexTok with text in its tokenizer; TA-TiTok and decoder-only TexTok
   ignore text here) need the caption: --text-emb T.npy, its token states (L, D) float32 as
   build/encode_text writes them (or CLIP's (77, 768) for TA-TiTok).
   Continuous models (quantize_mode none): OUT.npy holds the encoder output, as for the VAE.
   All arrays are in the official PyTorch memory layout. On any failure: a message naming the
   culprit, exit status 1 (2 for a bad command line), and none of this run's outputs is left. */
#define TEXTOK_IMPLEMENTATION
#include "textok.h"
#include "common.h"

static const char *usage =
    "--weights W --image IMG --out OUT [--latents PRE.npy] [--text-emb T.npy] [--threads N]";

/* OUT without a trailing ".json" / ".npy", as a new string */
static char *out_prefix(const char *out)
{
    size_t n = strlen(out);
    char *p;
    if (n > 5 && !strcmp(out + n - 5, ".json")) n -= 5;
    else if (n > 4 && !strcmp(out + n - 4, ".npy")) n -= 4;
    p = (char *)ex_malloc(n + 1);
    memcpy(p, out, n);
    p[n] = 0;
    return p;
}

int main(int argc, char **argv)
{
    const char *weights = NULL, *image = NULL, *out = NULL, *pre_path = NULL, *threads = NULL, *text_emb = NULL;
    ex_flag flags[] = {
        { "--weights", &weights, 1 }, { "--image", &image, 1 }, { "--out", &out, 1 },
        { "--latents", &pre_path, 0 }, { "--text-emb", &text_emb, 0 }, { "--threads", &threads, 0 },
    };
    textok_text tx;
    const textok_text *text;
    float *text_buf;
    textok_params params = textok_default_params();
    textok_titok *model = NULL;
    const textok_titok_config *cfg;
    char *prefix, *json_path, *npy_path;
    float *img, *latents, *pre;
    int32_t *tokens;
    int K, C, Cq, is_vq;

    ex_parse_flags(argc, argv, flags, (int)(sizeof flags / sizeof flags[0]), usage);
    params.n_threads = ex_parse_int(threads, "--threads", 0, 4096, 0, usage);
    prefix = out_prefix(out);
    json_path = ex_join(prefix, ".json");
    npy_path = ex_join(prefix, ".npy");
    if (pre_path && (!strcmp(pre_path, npy_path) || !strcmp(pre_path, json_path)))
        ex_usage(usage, "--latents '%s' would overwrite an output of --out", pre_path);

    if (textok_titok_load(&model, weights, &params) != TEXTOK_OK)
        ex_die("cannot load model '%s': %s", weights, textok_last_error());
    cfg = textok_titok_get_config(model);
    K = cfg->num_latent_tokens;
    C = cfg->token_size;
    is_vq = cfg->quantize_mode == TEXTOK_QUANT_VQ;
    Cq = cfg->quantize_mode == TEXTOK_QUANT_VAE ? 2 * C : C;
    text = NULL; text_buf = NULL;
    if (cfg->text_in_encoder) text = ex_text_flags(cfg, weights, text_emb, &tx, &text_buf, usage);
    else if (text_emb && cfg->text_in_decoder)
        fprintf(stderr, "%s: note: only the decoder of '%s' sees text; tokenizing ignores --text-emb\n", ex_prog, weights);
    else if (text_emb) fprintf(stderr, "%s: note: '%s' takes no text; --text-emb is ignored\n", ex_prog, weights);
    img = ex_load_image(image, cfg->image_size);

    tokens = (int32_t *)ex_malloc((size_t)K * sizeof(int32_t));
    latents = (float *)ex_malloc((size_t)C * K * sizeof(float));
    pre = (float *)ex_malloc((size_t)Cq * K * sizeof(float));
    /* rng = NULL: the VAE gives its posterior mean, not a sample */
    if (textok_titok_encode(model, img, 1, text, is_vq ? tokens : NULL, latents, pre, NULL) != TEXTOK_OK)
        ex_die("cannot encode '%s' with '%s': %s", image, weights, textok_last_error());

    {
        const int64_t lat_shape[4] = { 1, C, 1, K }, pre_shape[4] = { 1, Cq, 1, K };
        ex_write_npy(npy_path, latents, 4, lat_shape);
        if (is_vq) ex_write_tokens_json(json_path, tokens, 1, K);
        if (pre_path) ex_write_npy(pre_path, pre, 4, pre_shape);
    }
    printf("%s: %s, %d %s tokens -> %s%s%s\n", ex_prog, image, K,
           is_vq ? "VQ" : cfg->quantize_mode == TEXTOK_QUANT_VAE ? "VAE" : "continuous",
           is_vq ? json_path : "", is_vq ? " " : "", npy_path);

    textok_titok_free(model);
    free(img); free(tokens); free(latents); free(pre); free(text_buf);
    free(prefix); free(json_path); free(npy_path);
    return 0;
}
