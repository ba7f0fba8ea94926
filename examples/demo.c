/* demo: the shipped emoji models end to end - reconstruct 16 emoji, generate 8 from captions.

     build/demo [--weights DIR] [--out DIR] [--threads N] [--steps S] [--cfg X] [--seed N]
     make demo      (the same with the defaults)

   DIR (default weights/emoji, committed in the repository) holds:
     textok.safetensors       TexTok tokenizer: a 64x64 image <-> 32 tokens of 8 numbers (a VAE's
                              posterior mean); it reads the caption in its encoder and its decoder
     dit.safetensors          DiT-T2I: generates those 32 tokens from a caption
     word_t5.safetensors      the text encoder both models read captions through (a small T5)
     word_t5_tokenizer.json   its tokenizer (Unigram, Hugging Face tokenizer.json)
     val_sample.safetensors   16 validation emoji with their captions (never trained on)

   1. Reconstruct: image + caption -> tokens -> image, for each validation emoji. Prints the PSNR
      of each and their mean; writes OUT/reconstructions.png (default OUT: demo).
   2. Generate: caption -> DiT -> tokens -> tokenizer decoder (the same caption) -> image, for the
      8 captions below; --steps DDIM steps (default 50), classifier-free guidance --cfg (default 4),
      --seed (default 0): the same flags give the same images. Writes OUT/generated.png.
   A missing or unreadable file: a message naming it, exit 1. A bad command line: exit 2. */
#define _POSIX_C_SOURCE 200809L   /* mkdir, stat, clock_gettime (common.h's EX_TRAINING part) */
#define TEXTOK_IMPLEMENTATION
#define EX_TRAINING               /* common.h's dataset and caption helpers */
#include "textok.h"
#include "common.h"
#include <limits.h>

static const char *usage = "[--weights DIR] [--out DIR] [--threads N] [--steps S] [--cfg X] [--seed N]";

/* What the generator draws: captions in the dataset's style "name, category, subcategory" (each
   of them is the caption of an emoji of the training set). */
static const char *const prompts[8] = {
    "grinning face, smileys & emotion, face-smiling",
    "blue heart, smileys & emotion, heart",
    "dog face, animals & nature, animal-mammal",
    "slice of pizza, food & drink, food-prepared",
    "rocket, travel & places, transport-air",
    "sun with face, travel & places, sky & weather",
    "automobile, travel & places, transport-ground",
    "red apple, food & drink, food-fruit",
};

/* DIR/name, which must exist: the one place that says where the weights come from. */
static char *need(const char *dir, const char *name)
{
    char *path = ex_path_join(dir, name);
    if (!ex_file_exists(path))
        ex_die("missing '%s': the demo's weights are committed in the repository under weights/emoji/ (a fresh "
               "clone has them; 'git checkout -- weights/emoji' restores them), or give --weights DIR", path);
    return path;
}

/* T5 token states of every caption of ds, padded to the longest and masked (common.h). The
   result points into ts and lives until the next call. */
static const textok_text *encode_captions(ex_text_source *ts, ex_dataset *ds, textok_text *tx)
{
    int *idx = (int *)ex_malloc((size_t)ds->n * sizeof(int)), i;
    ts->emb = (float **)calloc((size_t)ds->n, sizeof(float *));
    ts->len = (int *)calloc((size_t)ds->n, sizeof(int));
    if (!ts->emb || !ts->len) ex_die("out of memory");
    for (i = 0; i < ds->n; i++) idx[i] = i;
    ex_text_batch(ts, ds, idx, ds->n, tx);
    for (i = 0; i < ds->n; i++) free(ts->emb[i]);
    free(ts->emb); free(ts->len); free(idx);
    ts->emb = NULL; ts->len = NULL;
    return tx;
}

int main(int argc, char **argv)
{
    const char *dir = "weights/emoji", *out = "demo", *threads_s = NULL, *steps_s = NULL, *cfg_s = NULL, *seed_s = NULL;
    ex_flag flags[] = {
        { "--weights", &dir, 0 }, { "--out", &out, 0 }, { "--threads", &threads_s, 0 },
        { "--steps", &steps_s, 0 }, { "--cfg", &cfg_s, 0 }, { "--seed", &seed_s, 0 },
    };
    textok_params params = textok_default_params();
    textok_dit_sample_config sc = textok_dit_sample_default();
    char *tok_path, *dit_path, *t5_path, *spm_path, *data_path, *recon_png, *gen_png;
    textok_titok *tok = NULL;
    textok_dit *dit = NULL;
    const textok_titok_config *tc;
    const textok_dit_config *dc;
    ex_text_source ts;
    ex_dataset val, gen;
    textok_text tx;
    const textok_text *text;
    textok_rng rng;
    float *orig, *lat, *recon, *tiles, *img;
    double t0 = ex_now(), sum = 0;
    size_t plane, i;
    int S, K, C, N, G = (int)(sizeof prompts / sizeof prompts[0]), seed, rows, k;

    /* the command line, checked before anything is read */
    ex_parse_flags(argc, argv, flags, (int)(sizeof flags / sizeof flags[0]), usage);
    params.n_threads = ex_parse_int(threads_s, "--threads", 0, 4096, 0, usage);
    sc.steps = ex_parse_int(steps_s, "--steps", 1, 1000, 50, usage);
    sc.cfg_scale = (float)ex_parse_num(cfg_s, "--cfg", 0, 1000, 4.0, usage);
    sc.ddim = 1;   /* DDIM, eta 0: no noise after the start, good samples in few steps */
    seed = ex_parse_int(seed_s, "--seed", 0, INT_MAX, 0, usage);
    tok_path = need(dir, "textok.safetensors");
    dit_path = need(dir, "dit.safetensors");
    t5_path = need(dir, "word_t5.safetensors");
    spm_path = need(dir, "word_t5_tokenizer.json");
    data_path = need(dir, "val_sample.safetensors");

    /* the models: the tokenizer runs on 16 images at once, the DiT on 8 captions x 2 (guidance
       runs a pass with and one without the caption) */
    params.max_batch = 16;
    if (textok_titok_load(&tok, tok_path, &params) != TEXTOK_OK)
        ex_die("cannot load the tokenizer '%s': %s", tok_path, textok_last_error());
    if (textok_dit_load(&dit, dit_path, &params) != TEXTOK_OK)
        ex_die("cannot load the generator '%s': %s", dit_path, textok_last_error());
    tc = textok_titok_get_config(tok);
    dc = textok_dit_get_config(dit);
    S = tc->image_size; K = tc->num_latent_tokens; C = tc->token_size;
    if (tc->quantize_mode == TEXTOK_QUANT_VQ || !dc->seq_1d || dc->in_channels != C || dc->input_size != K || !dc->text_dim)
        ex_die("'%s' is not a DiT-T2I over the tokens of '%s' (%d tokens of %d channels, continuous)", dit_path,
               tok_path, K, C);

    /* the text encoder: a caption -> its tokenizer ids -> T5 token states (L x D) */
    memset(&ts, 0, sizeof ts);
    if (textok_spm_load(&ts.spm, spm_path) != TEXTOK_OK) ex_die("cannot load '%s': %s", spm_path, textok_last_error());
    if (textok_t5_load(&ts.t5, t5_path, &params) != TEXTOK_OK)
        ex_die("cannot load the text encoder '%s': %s", t5_path, textok_last_error());
    ts.on = 1;
    ts.dim = textok_t5_get_config(ts.t5)->d_model;
    ts.max_len = ex_model_takes_text(tc) ? tc->text_len : dc->text_len;
    if (ts.dim != dc->text_dim || (ex_model_takes_text(tc) && ts.dim != tc->text_dim))
        ex_die("the text encoder '%s' gives %d-wide token states; the models take %d", t5_path, ts.dim, dc->text_dim);

    printf("models: tokenizer %.2fM parameters, DiT %.2fM, text encoder %.2fM (%s)\n", textok_titok_num_params(tok) / 1e6,
           textok_dit_num_params(dit) / 1e6, textok_t5_num_params(ts.t5) / 1e6, dir);

    if (mkdir(out, 0777) != 0 && errno != EEXIST) ex_die("cannot create '%s': %s", out, strerror(errno));
    recon_png = ex_path_join(out, "reconstructions.png");
    gen_png = ex_path_join(out, "generated.png");

    /* ---- 1. reconstruct the validation emoji ------------------------------------------------ */
    memset(&val, 0, sizeof val);
    ex_load_data(&val, data_path, "all", S);
    N = val.n;
    plane = (size_t)3 * S * S;
    orig = (float *)ex_malloc((size_t)N * plane * sizeof(float));
    lat = (float *)ex_malloc((size_t)N * C * K * sizeof(float));
    recon = (float *)ex_malloc((size_t)N * plane * sizeof(float));
    for (i = 0; i < (size_t)N * plane; i++) orig[i] = val.pixels[i] / 255.0f;   /* 8-bit -> [0,1] */
    text = ex_model_takes_text(tc) ? encode_captions(&ts, &val, &tx) : NULL;
    /* encode: the latents are the posterior mean (no sampling); decode them with the same caption */
    if (textok_titok_encode(tok, orig, N, text, NULL, lat, NULL, NULL) != TEXTOK_OK ||
        textok_titok_decode_latents(tok, lat, N, text, recon) != TEXTOK_OK)
        ex_die("cannot reconstruct the images of '%s': %s", data_path, textok_last_error());
    printf("\nreconstructions (%dx%d image -> %d tokens of %d -> image), PSNR of each:\n", S, S, K, C);
    /* PSNR = 10 log10(1 / MSE) over every value of the image clamped to [0,1], as the PNG shows it
       and as build/evaluate measures it (textok_image_metrics) */
    for (i = 0; i < (size_t)N * plane; i++) recon[i] = recon[i] < 0.0f ? 0.0f : recon[i] > 1.0f ? 1.0f : recon[i];
    for (k = 0; k < N; k++) {
        double p = 0;
        textok_image_metrics(recon + k * plane, orig + k * plane, 3, S, S, NULL, &p, NULL);
        sum += p;
        printf("  %2d  %5.2f dB  %s\n", k, p, val.captions[k]);
    }
    printf("  mean PSNR %.2f dB over %d images\n", sum / N, N);
    /* the grid, 8 per row: each row of originals, then a row of their reconstructions */
    rows = (N + 7) / 8;
    tiles = (float *)ex_malloc((size_t)2 * rows * 8 * plane * sizeof(float));
    for (i = 0; i < (size_t)2 * rows * 8 * plane; i++) tiles[i] = 1.0f;   /* white where a row is short */
    for (k = 0; k < N; k++) {
        float *t = tiles + ((size_t)(k / 8) * 16 + k % 8) * plane;   /* row 2 (k / 8), column k % 8 */
        memcpy(t, orig + k * plane, plane * sizeof(float));
        memcpy(t + 8 * plane, recon + k * plane, plane * sizeof(float));   /* the row below */
    }
    ex_write_tiles(recon_png, tiles, 2 * rows * 8, S, 8);
    printf("  %s: rows 1, 3, ...: the originals, 8 per row in this order; under each row, its reconstructions\n",
           recon_png);

    /* ---- 2. generate from captions ---------------------------------------------------------- */
    memset(&gen, 0, sizeof gen);
    gen.n = G;
    gen.captions = (char **)prompts;   /* ex_text_batch reads them (and names, for its messages) */
    gen.names = (char **)prompts;
    text = encode_captions(&ts, &gen, &tx);
    if (text->L > dc->text_len)
        ex_die("a caption has %d tokens; '%s' takes at most %d", text->L, dit_path, dc->text_len);
    img = (float *)ex_malloc((size_t)G * plane * sizeof(float));
    free(lat);
    lat = (float *)ex_malloc((size_t)G * C * K * sizeof(float));
    textok_rng_seed(&rng, (uint64_t)seed);
    /* (G, C, 1, K) tokens from noise, guided towards each caption; then the tokenizer's decoder,
       which reads the same caption */
    if (textok_dit_generate(dit, &sc, NULL, text, G, &rng, lat) != TEXTOK_OK)
        ex_die("sampling failed: %s", textok_last_error());
    if (textok_titok_decode_latents(tok, lat, G, ex_model_takes_text(tc) ? text : NULL, img) != TEXTOK_OK)
        ex_die("cannot decode the samples: %s", textok_last_error());
    ex_write_tiles(gen_png, img, G, S, 4);
    printf("\ngenerated (%d DDIM steps, guidance %g, seed %d), 2 rows of 4:\n", sc.steps, (double)sc.cfg_scale, seed);
    for (k = 0; k < G; k++) printf("  row %d col %d  %s\n", k / 4 + 1, k % 4 + 1, prompts[k]);

    printf("\nwrote %s and %s in %.1f s\n", recon_png, gen_png, ex_now() - t0);

    ex_text_free(&ts, 0);
    textok_titok_free(tok);
    textok_dit_free(dit);
    for (k = 0; k < N; k++) { free(val.names[k]); free(val.captions[k]); }
    free(val.names); free(val.captions); free(val.pixels);
    free(orig); free(lat); free(recon); free(tiles); free(img);
    free(tok_path); free(dit_path); free(t5_path); free(spm_path); free(data_path); free(recon_png); free(gen_png);
    return 0;
}
