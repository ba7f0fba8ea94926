/* evaluate: how well one or more tokenizers reconstruct a dataset - PSNR, SSIM, MSE, LPIPS.

     build/evaluate --data FILE --weights A.safetensors[=LABEL] [--weights B...] [options]

   FILE is a packed dataset (tools/get_emoji.sh; ex_load_data in common.h). Every image of the
   split (--split, default val; --limit N: its first N) goes through each tokenizer, encoded and
   decoded as build/reconstruct does it:
     VQ models:          encode to token ids, decode the ids
     VAE models:         decode the posterior mean (no sampling)
     continuous models:  (TexTok quantize_mode none) decode the encoder output
   Text-conditioned models (TexTok, TA-TiTok) get each image's caption from the dataset, through
   the tokenizer.json --spm and the frozen T5 --text-encoder (each caption is encoded once and
   cached, as build/train_tokenizer does); the same text goes to both stacks. A model trained with
   text dropout (text_optional) runs without text when no --text-encoder is given.

   Each reconstruction is clamped to [0,1] (what a saved PNG holds, before its 8-bit rounding) and
   compared with its original by textok_image_metrics (MSE, PSNR with peak 1, SSIM with the 11x11
   Gaussian window) and, with --lpips, textok_lpips_distance.

   Output: one markdown table on stdout, a row per model, then a line naming the split, the number
   of images and the clamping. PSNR is the mean of the per-image PSNRs (± their standard deviation
   over the images); SSIM, MSE and LPIPS are means over the images. Progress goes to stderr.
     --grid OUT.png   the first 8 images (top row) above each model's reconstructions (a row each)
     --csv OUT.csv    one row per model and image: model,index,name,psnr,ssim,mse[,lpips]
   Models are loaded one at a time; all of them must take the dataset's image size.
   Errors: a message naming the culprit; exit 1 for bad input (a missing file, a model for another
   image size, a T5 of the wrong width), 2 for a bad command line (a text model without
   --text-encoder included); no output file is left behind. */
#define _POSIX_C_SOURCE 200809L   /* clock_gettime (ex_now), stat, isatty */
#define TEXTOK_IMPLEMENTATION
#define EX_TRAINING               /* ex_load_data, ex_text_source */
#include "textok.h"
#include "common.h"
#include <unistd.h>

static const char *usage =
    "--data FILE --weights A.safetensors[=LABEL] [--weights B...] [--split val|train|all] "
    "[--text-encoder T5 --spm tokenizer.json] [--lpips LPIPS.safetensors] [--limit N] [--batch N] "
    "[--grid OUT.png] [--csv OUT.csv] [--threads N]   (--help for more)";

static const char *help_text =
    "usage: evaluate --data FILE --weights A.safetensors[=LABEL] [--weights B...] [options]\n"
    "\n"
    "Reconstructs every image of a dataset split with each tokenizer (encode, then decode: VQ from\n"
    "the token ids, VAE from the posterior mean) and prints one markdown table: PSNR (mean and std\n"
    "of the per-image values), SSIM, MSE and, with --lpips, LPIPS. Reconstructions are CLAMPED to\n"
    "[0,1] before the metrics (as a saved PNG would be). PSNR = 10 log10(1/MSE), peak 1 (100 dB for\n"
    "an exact copy); SSIM: 11x11 Gaussian window, sigma 1.5, valid positions (scikit-image's\n"
    "gaussian_weights=True, use_sample_covariance=False, data_range=1).\n"
    "\n"
    "  --data FILE            a packed dataset (tools/get_emoji.sh)\n"
    "  --split S              val (default), train or all\n"
    "  --weights W[=LABEL]    a tokenizer (textok layout); repeat for more models, one row each.\n"
    "                         LABEL names its row (default: the file name without .safetensors)\n"
    "  --text-encoder T5      the frozen T5 encoder, for models that read text (TexTok, TA-TiTok)\n"
    "  --spm F                its tokenizer.json; each caption of the dataset goes through both\n"
    "  --lpips F              a textok-layout LPIPS file (build/convert): adds an LPIPS column\n"
    "                         (image sizes must be multiples of 16)\n"
    "  --limit N              only the first N images of the split\n"
    "  --batch N              images per encode/decode call (default 16)\n"
    "  --grid OUT.png         the first 8 images (top row) above each model's reconstructions\n"
    "  --csv OUT.csv          per-image rows: model,index,name,psnr,ssim,mse[,lpips]\n"
    "  --threads N            CPU threads (default: all)\n"
    "\n"
    "Exit status: 0 done, 1 bad input (missing or unreadable file, a model for another image size,\n"
    "a text encoder of the wrong width), 2 bad command line.\n";

#define GRID_COLS 8

/* One tokenizer: its file, its row label, its config (read before loading) and its results. */
typedef struct model_entry {
    char  *path, *label;
    textok_titok_config cfg;
    int    use_text;                   /* captions go in */
    double *psnr, *ssim, *mse, *lpips; /* per image */
} model_entry;

/* "W[=LABEL]": the label is what follows the last '=' (unless W as a whole is an existing file);
   default: the file name without its directory and ".safetensors". */
static void parse_weights_arg(const char *arg, model_entry *e)
{
    const char *eq = strrchr(arg, '='), *base, *end;
    size_t n;
    memset(e, 0, sizeof *e);
    if (eq && eq > arg && eq[1] && !ex_file_exists(arg)) {
        n = (size_t)(eq - arg);
        e->path = (char *)ex_malloc(n + 1);
        memcpy(e->path, arg, n);
        e->path[n] = 0;
        e->label = ex_strdup(eq + 1);
        return;
    }
    e->path = ex_strdup(arg);
    base = strrchr(arg, '/') ? strrchr(arg, '/') + 1 : arg;
    n = strlen(base);
    end = n > 12 && !strcmp(base + n - 12, ".safetensors") ? base + n - 12 : base + n;
    e->label = (char *)ex_malloc((size_t)(end - base) + 1);
    memcpy(e->label, base, (size_t)(end - base));
    e->label[end - base] = 0;
}

/* The config from the file's metadata, without loading the weights: every model is checked
   (image size, text) before the first one runs. */
static void probe_model(model_entry *e)
{
    textok_safetensors st;
    if (textok_st_open(&st, e->path) != TEXTOK_OK) ex_die("--weights: %s", textok_last_error());
    if (textok_titok_config_from_meta(&e->cfg, &st) != TEXTOK_OK) ex_die("--weights: %s", textok_last_error());
    textok_st_close(&st);
}

/* The dataset's image size (from the shape of its "images" tensor, (N, S, S, 3)); 0 if the file
   does not look like a dataset: ex_load_data then says what is wrong with it. */
static int data_image_size(const char *path)
{
    textok_safetensors st;
    const textok_st_tensor *t;
    int S = 0;
    if (textok_st_open(&st, path) != TEXTOK_OK) ex_die("--data: %s", textok_last_error());
    t = textok_st_find(&st, "images");
    if (t && t->ndim == 4 && t->shape[1] == t->shape[2] && t->shape[1] > 0 && t->shape[1] <= 65536) S = (int)t->shape[1];
    textok_st_close(&st);
    return S;
}

static const char *quant_name(int mode)
{
    return mode == TEXTOK_QUANT_VQ ? "VQ" : mode == TEXTOK_QUANT_VAE ? "VAE" : "continuous";
}

/* where the text goes: "enc+dec", "encoder", "decoder" or "-" */
static const char *text_place(const textok_titok_config *c)
{
    return c->text_in_encoder && c->text_in_decoder ? "enc+dec" : c->text_in_encoder ? "encoder" :
           c->text_in_decoder ? "decoder" : "-";
}

/* Captions are cached per image at the model's text_len (longer ones are truncated to it): a
   model with another text_len starts the cache over. */
static void text_source_for(ex_text_source *ts, int n, const textok_titok_config *cfg)
{
    int i;
    if (ts->max_len != cfg->text_len)
        for (i = 0; i < n; i++) { free(ts->emb[i]); ts->emb[i] = NULL; ts->len[i] = 0; }
    ts->on = 1;
    ts->max_len = cfg->text_len;
    ts->dim = cfg->text_dim;
}

/* B images -> B reconstructions, as build/reconstruct (not clamped yet) */
static void reconstruct(textok_titok *m, const model_entry *e, const float *imgs, int B, const textok_text *text,
                        int32_t *tokens, float *latents, float *recon, int first)
{
    int rc;
    if (e->cfg.quantize_mode == TEXTOK_QUANT_VQ) {
        rc = textok_titok_encode(m, imgs, B, text, tokens, NULL, NULL, NULL);
        if (rc == TEXTOK_OK) rc = textok_titok_decode_tokens(m, tokens, B, text, recon);
    } else {   /* VAE: no rng, so the posterior mean; none: the encoder output */
        rc = textok_titok_encode(m, imgs, B, text, NULL, latents, NULL, NULL);
        if (rc == TEXTOK_OK) rc = textok_titok_decode_latents(m, latents, B, text, recon);
    }
    if (rc != TEXTOK_OK)
        ex_die("'%s' cannot reconstruct images %d..%d: %s", e->path, first, first + B - 1, textok_last_error());
}

/* Runs one model over the first n images of ds and fills e's per-image results; the first
   images' reconstructions go into grid_row (GRID_COLS images, or NULL). */
static void evaluate_model(model_entry *e, ex_dataset *ds, int n, int batch, ex_text_source *ts,
                           textok_lpips *lpips, const textok_params *params, float *grid_row)
{
    const int S = ds->S, K = e->cfg.num_latent_tokens;
    const size_t img = (size_t)3 * S * S;
    textok_titok *m = NULL;
    textok_text tx;
    float *imgs = (float *)ex_malloc((size_t)batch * img * sizeof(float));
    float *recon = (float *)ex_malloc((size_t)batch * img * sizeof(float));
    float *latents = (float *)ex_malloc((size_t)batch * e->cfg.token_size * K * sizeof(float));
    float *dist = (float *)ex_malloc((size_t)batch * sizeof(float));
    int32_t *tokens = (int32_t *)ex_malloc((size_t)batch * K * sizeof(int32_t));
    int *idx = (int *)ex_malloc((size_t)batch * sizeof(int));
    double t0 = ex_now();
    size_t j;
    int b0, b;

    if (textok_titok_load(&m, e->path, params) != TEXTOK_OK) ex_die("cannot load model '%s': %s", e->path, textok_last_error());
    if (e->use_text) text_source_for(ts, ds->n, &e->cfg);
    else ts->on = 0;
    for (b0 = 0; b0 < n; b0 += batch) {
        const int B = n - b0 < batch ? n - b0 : batch;
        for (b = 0; b < B; b++) {
            const unsigned char *src = ds->pixels + (size_t)(b0 + b) * img;
            for (j = 0; j < img; j++) imgs[(size_t)b * img + j] = src[j] / 255.0f;
            idx[b] = b0 + b;
        }
        /* NULL for a model without text (or running without it) */
        reconstruct(m, e, imgs, B, ex_text_batch(ts, ds, idx, B, &tx), tokens, latents, recon, b0);
        for (j = 0; j < (size_t)B * img; j++) {
            const float v = recon[j];
            recon[j] = v > 0 ? (v < 1 ? v : 1) : 0;   /* clamp to [0,1]; NaN becomes 0, as in a PNG */
        }
        for (b = 0; b < B; b++)
            if (textok_image_metrics(imgs + b * img, recon + b * img, 3, S, S, &e->mse[b0 + b], &e->psnr[b0 + b],
                                     &e->ssim[b0 + b]) != TEXTOK_OK)
                ex_die("metrics of image %d: %s", b0 + b, textok_last_error());
        if (lpips) {
            if (textok_lpips_distance(lpips, imgs, recon, B, S, S, dist) != TEXTOK_OK) ex_die("LPIPS: %s", textok_last_error());
            for (b = 0; b < B; b++) e->lpips[b0 + b] = dist[b];
        }
        for (b = 0; grid_row && b < B && b0 + b < GRID_COLS; b++)
            memcpy(grid_row + (size_t)(b0 + b) * img, recon + b * img, img * sizeof(float));
        if (isatty(2)) fprintf(stderr, "\r%s: %s: %d/%d images", ex_prog, e->label, b0 + B, n);
    }
    fprintf(stderr, "%s%s: %s: %d images in %.1f s\n", isatty(2) ? "\r" : "", ex_prog, e->label, n, ex_now() - t0);
    textok_titok_free(m);
    free(imgs); free(recon); free(latents); free(dist); free(tokens); free(idx);
}

static void mean_std(const double *v, int n, double *mean, double *std)
{
    double s = 0, ss = 0;
    int i;
    for (i = 0; i < n; i++) s += v[i];
    *mean = s / n;
    for (i = 0; i < n; i++) ss += (v[i] - *mean) * (v[i] - *mean);
    *std = sqrt(ss / n);   /* over the images: population std */
}

/* a CSV field: quoted when it holds a comma, a quote or a line break */
static void csv_field(FILE *f, const char *s)
{
    if (!strpbrk(s, ",\"\r\n")) { fputs(s, f); return; }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static void write_csv(const char *path, const model_entry *models, int n_models, const ex_dataset *ds, int n, int has_lpips)
{
    char *tmp;
    FILE *f = ex_create(path, &tmp);
    int m, i;
    fprintf(f, "model,index,name,psnr,ssim,mse%s\n", has_lpips ? ",lpips" : "");
    for (m = 0; m < n_models; m++)
        for (i = 0; i < n; i++) {
            const model_entry *e = &models[m];
            csv_field(f, e->label);
            fprintf(f, ",%d,", i);
            csv_field(f, ds->names[i]);
            fprintf(f, ",%.6f,%.6f,%.8g", e->psnr[i], e->ssim[i], e->mse[i]);
            if (has_lpips) fprintf(f, ",%.6f", e->lpips[i]);
            fputc('\n', f);
        }
    ex_finish(f, tmp, path);
}

static void print_table(const model_entry *models, int n_models, int n, int has_lpips, const char *split,
                        const char *data, int S)
{
    int m;
    printf("\n| model | tokens (N x d) | text | images | PSNR dB (mean ± std) | SSIM | MSE |%s\n", has_lpips ? " LPIPS |" : "");
    printf("|---|---|---|---:|---:|---:|---:|%s\n", has_lpips ? "---:|" : "");
    for (m = 0; m < n_models; m++) {
        const model_entry *e = &models[m];
        double psnr, psnr_std, ssim, ssim_std, mse, mse_std, lp, lp_std;
        char tok[64], text[64];
        mean_std(e->psnr, n, &psnr, &psnr_std);
        mean_std(e->ssim, n, &ssim, &ssim_std);
        mean_std(e->mse, n, &mse, &mse_std);
        if (e->cfg.quantize_mode == TEXTOK_QUANT_VQ)
            snprintf(tok, sizeof tok, "%d x %d (VQ, %d codes)", e->cfg.num_latent_tokens, e->cfg.token_size, e->cfg.codebook_size);
        else
            snprintf(tok, sizeof tok, "%d x %d (%s)", e->cfg.num_latent_tokens, e->cfg.token_size, quant_name(e->cfg.quantize_mode));
        if (ex_model_takes_text(&e->cfg) && !e->use_text) snprintf(text, sizeof text, "none (optional)");
        else snprintf(text, sizeof text, "%s", text_place(&e->cfg));
        printf("| %s | %s | %s | %d | %.2f ± %.2f | %.4f | %.5f |", e->label, tok, text, n, psnr, psnr_std, ssim, mse);
        if (has_lpips) {
            mean_std(e->lpips, n, &lp, &lp_std);
            printf(" %.4f |", lp);
        }
        printf("\n");
    }
    printf("\n%s split of %s: %d images of %dx%d. Reconstructions clamped to [0,1] before the metrics; "
           "PSNR peak 1 (mean ± std over images), SSIM 11x11 Gaussian (sigma 1.5), means over images.\n",
           split, data, n, S, S);
}

int main(int argc, char **argv)
{
    const char *data = NULL, *split = NULL, *t5_path = NULL, *spm_path = NULL, *lpips_path = NULL, *limit_s = NULL;
    const char *batch_s = NULL, *grid = NULL, *csv = NULL, *threads_s = NULL, *weights_flag = NULL;
    ex_flag flags[] = {
        { "--data", &data, 1 }, { "--split", &split, 0 }, { "--weights", &weights_flag, 0 },
        { "--text-encoder", &t5_path, 0 }, { "--spm", &spm_path, 0 }, { "--lpips", &lpips_path, 0 },
        { "--limit", &limit_s, 0 }, { "--batch", &batch_s, 0 }, { "--grid", &grid, 0 }, { "--csv", &csv, 0 },
        { "--threads", &threads_s, 0 },
    };
    char **args;
    model_entry *models;
    textok_params params = textok_default_params();
    textok_lpips *lpips = NULL;
    ex_text_source ts;
    ex_dataset ds;
    float *grid_imgs = NULL;
    int nargs = 0, n_models = 0, n_all, n, batch, S, S_data, i, m, cols = 0, needs_text = 0;

    for (i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(help_text, stdout);
            return 0;
        }
    /* --weights may be given several times: collect those before the "--name VALUE" parser of
       common.h (which keeps one value per flag), skipping the other flags' values */
    args = (char **)ex_malloc((size_t)(argc + 1) * sizeof(char *));
    models = (model_entry *)ex_malloc((size_t)argc * sizeof(model_entry));
    for (i = 0; i < argc; i++) {
        if (i > 0 && !strcmp(argv[i], "--weights") && i + 1 < argc) {
            parse_weights_arg(argv[++i], &models[n_models++]);
            continue;
        }
        args[nargs++] = argv[i];
        if (i > 0 && !strncmp(argv[i], "--", 2) && i + 1 < argc) args[nargs++] = argv[++i];
    }
    args[nargs] = NULL;
    ex_parse_flags(nargs, args, flags, (int)(sizeof flags / sizeof flags[0]), usage);
    if (n_models == 0) ex_usage(usage, "--weights is required (a tokenizer to evaluate)");
    if (!split) split = "val";
    if (strcmp(split, "val") && strcmp(split, "train") && strcmp(split, "all"))
        ex_usage(usage, "--split must be val, train or all, not '%s'", split);
    n = ex_parse_int(limit_s, "--limit", 1, 1 << 30, 1 << 30, usage);
    batch = ex_parse_int(batch_s, "--batch", 1, 4096, 16, usage);
    params.n_threads = ex_parse_int(threads_s, "--threads", 0, 4096, 0, usage);
    params.max_batch = batch;
    if (!t5_path != !spm_path) ex_usage(usage, "--text-encoder and --spm go together (the T5 encoder and its tokenizer)");
    if (grid && csv && !strcmp(grid, csv)) ex_usage(usage, "--grid and --csv are the same file '%s'", grid);

    /* every model's config first: one image size, text where it is needed */
    S_data = data_image_size(data);
    for (m = 0; m < n_models; m++) {
        model_entry *e = &models[m];
        probe_model(e);
        if (S_data && e->cfg.image_size != S_data)
            ex_die("'%s' takes %dx%d images, but the images of '%s' are %dx%d", e->path, e->cfg.image_size,
                   e->cfg.image_size, data, S_data, S_data);
        if (e->cfg.image_size != models[0].cfg.image_size)
            ex_die("'%s' takes %dx%d images and '%s' %dx%d: the models must share one image size", models[0].path,
                   models[0].cfg.image_size, models[0].cfg.image_size, e->path, e->cfg.image_size, e->cfg.image_size);
        if (ex_model_takes_text(&e->cfg) && !t5_path && !e->cfg.text_optional)
            ex_usage(usage, "'%s' is text-conditioned (%s %d x %d caption states): give --text-encoder T5 "
                     "--spm tokenizer.json", e->path, e->cfg.text_in_encoder && e->cfg.text_in_decoder ?
                     "its encoder and decoder read" : e->cfg.text_in_encoder ? "its encoder reads" : "its decoder reads",
                     e->cfg.text_len, e->cfg.text_dim);
        e->use_text = ex_model_takes_text(&e->cfg) && t5_path;
        needs_text |= e->use_text;
    }
    S = models[0].cfg.image_size;

    memset(&ts, 0, sizeof ts);
    if (t5_path && !needs_text)
        fprintf(stderr, "%s: note: no model reads text; --text-encoder and --spm are not used\n", ex_prog);
    if (needs_text) {
        textok_params tp = textok_default_params();
        tp.n_threads = params.n_threads;
        if (textok_spm_load(&ts.spm, spm_path) != TEXTOK_OK) ex_die("cannot load --spm: %s", textok_last_error());
        if (textok_t5_load(&ts.t5, t5_path, &tp) != TEXTOK_OK) ex_die("cannot load --text-encoder: %s", textok_last_error());
        for (m = 0; m < n_models; m++)
            if (models[m].use_text && models[m].cfg.text_dim != textok_t5_get_config(ts.t5)->d_model)
                ex_die("--text-encoder '%s' gives states of width %d, but '%s' reads text of width %d (text_dim)", t5_path,
                       textok_t5_get_config(ts.t5)->d_model, models[m].path, models[m].cfg.text_dim);
    }
    if (lpips_path) {
        if (S % 16) ex_die("--lpips needs an image size that is a multiple of 16, not %d", S);
        if (textok_lpips_load(&lpips, lpips_path, &params) != TEXTOK_OK) ex_die("cannot load --lpips: %s", textok_last_error());
    }

    /* the data: the whole split is loaded, the first --limit images are used */
    memset(&ds, 0, sizeof ds);
    ex_load_data(&ds, data, split, S);
    n_all = ds.n;
    if (n > ds.n) n = ds.n;
    ts.emb = (float **)calloc((size_t)ds.n, sizeof(float *));
    ts.len = (int *)calloc((size_t)ds.n, sizeof(int));
    if (!ts.emb || !ts.len) ex_die("out of memory");
    ts.max_len = -1;
    for (m = 0; m < n_models; m++) {
        model_entry *e = &models[m];
        e->psnr = (double *)ex_malloc((size_t)n * sizeof(double));
        e->ssim = (double *)ex_malloc((size_t)n * sizeof(double));
        e->mse = (double *)ex_malloc((size_t)n * sizeof(double));
        e->lpips = (double *)ex_malloc((size_t)n * sizeof(double));
    }

    /* the grid: row 0 the originals, row 1 + m model m's reconstructions */
    if (grid) {
        const size_t img = (size_t)3 * S * S;
        size_t j;
        cols = n < GRID_COLS ? n : GRID_COLS;
        grid_imgs = (float *)ex_malloc((size_t)(n_models + 1) * cols * img * sizeof(float));
        for (j = 0; j < (size_t)cols * img; j++) grid_imgs[j] = ds.pixels[j] / 255.0f;
    }

    for (m = 0; m < n_models; m++)
        evaluate_model(&models[m], &ds, n, batch, &ts, lpips, &params,
                       grid ? grid_imgs + (size_t)(m + 1) * cols * 3 * S * S : NULL);

    if (csv) write_csv(csv, models, n_models, &ds, n, lpips != NULL);
    if (grid) ex_write_tiles(grid, grid_imgs, (n_models + 1) * cols, S, cols);
    print_table(models, n_models, n, lpips != NULL, split, data, S);
    if (csv) printf("per-image values: %s\n", csv);
    if (grid) printf("grid: %s (top row: the first %d images; then one row per model, in table order)\n", grid, cols);

    for (m = 0; m < n_models; m++) {
        model_entry *e = &models[m];
        free(e->path); free(e->label); free(e->psnr); free(e->ssim); free(e->mse); free(e->lpips);
    }
    for (i = 0; i < n_all; i++) { free(ds.names[i]); free(ds.captions[i]); }
    free(ds.names); free(ds.captions); free(ds.pixels);
    ex_text_free(&ts, n_all);
    textok_lpips_free(lpips);
    free(grid_imgs); free(models); free(args);
    return 0;
}
