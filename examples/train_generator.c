/* train_generator: train a DiT or a MaskGIT generator over a tokenizer's tokens.

     build/train_generator --images DIR --tokenizer W --out DIR --steps N [--model SPEC | --init G] [options]
     build/train_generator --images DIR --tokenizer W --out DIR --steps N --resume DIR/ckpt.safetensors [options]
     build/train_generator --resume CKPT --export G.safetensors

   A small program over textok_gen_trainer_* (run it with --help for every flag). It first
   pre-tokenises the image folder with the tokenizer W into a token file (below), once: a re-run
   whose images, labels, captions, tokenizer and text encoder are byte-identical reads it back
   instead of encoding again. Then each step draws --batch examples uniformly at random (with
   replacement) with the trainer's own RNG (textok_gen_trainer_rng, saved in the checkpoint), so a
   resumed run continues bit for bit (given the same flags), as build/train_tokenizer.

   Generator (--model NAME[,field=value...]; the token space always comes from the tokenizer):
     dit_tiny dit_s dit_b dit_l dit_xl   DiT over the tokenizer's 1D tokens (seq_1d, patch 1,
                 in_channels = token_size, input_size = K; CFG on every channel, latent_scale 1):
                 widths 64/384/768/1024/1152, depths 2/12/12/24/28. Needs a continuous tokenizer
                 (VAE or none: its latents are the posterior means). With --captions: DiT-T2I
                 (the T5 token states, text_len = the longest caption, at least 1); else with
                 labels class-conditional; else unconditional.
     maskgit_tiny maskgit_l32 maskgit_b64   ImageBert (width 64, depth 2 / 768, 24)
     maskgit_uvit_tiny maskgit_s128        UViTBert (width 64, depth 2 / 1024, 20)
                 over a VQ tokenizer's ids (codebook_size, seq_len = K); always class-conditional
                 (without labels: one class, every image 0).
     Fields: hidden, depth, heads, mlp_hidden, learn_sigma, latent_scale, text_len (DiT);
     hidden, depth, heads, mlp_hidden (MaskGIT). --init G starts from a generator file instead
     (its token space must match).
   Labels: --labels FILE, lines 'filename<TAB>class' (class an integer >= 0; num_classes = the
   largest + 1; every image needs one), or --class-folders: the images sit in subfolders of
   --images, class c = the c-th subfolder name in sorted (strcmp) order.

   The token file (--tokens FILE, default OUT/tokens.safetensors), safetensors, F32:
     "tokens" (N, K) the VQ ids (MaskGIT) or "latents" (N, C, 1, K) the posterior means (DiT);
     "labels" (N) class ids (when there are labels); "text" (N, L, D) and "text_mask" (N, L)
     (1 = a real caption token; when there are captions: T5 states, zero-padded to the longest).
     __metadata__: "textok.model" = "gen-tokens", "kind" = "tokens"|"latents", "count",
     "num_classes", "source_hash" (FNV-1a 64 of the tokenizer file, the text encoder file, each
     image's name and pixels, its label and its caption: the cache key), "names" (the image
     names, '\n'-separated).
   Outputs, in --out DIR: ckpt.safetensors (every --ckpt-every steps, at the end, after the
   current step on SIGINT/SIGTERM; temp file + rename), log.csv (one row per logged step; on
   resume the rows after the checkpoint's step are dropped), samples_<step>.png (every
   --grid-every steps: --grid-n samples from the current (not EMA) weights, decoded by the
   tokenizer, seed fixed so grids are comparable across steps; the training RNG is not touched),
   model.safetensors (at the end: EMA weights when kept, a generator file build/generate reads).
   Exit status: 0 done (or stopped by SIGINT/SIGTERM with the checkpoint saved), 1 bad input or a
   failure while training (the last checkpoint is kept), 2 bad command line. */
#define _POSIX_C_SOURCE 200809L   /* opendir, stat, clock_gettime */
#define TEXTOK_IMPLEMENTATION
#define EX_TRAINING
#include "textok.h"
#include "common.h"
#include <limits.h>
#include <stddef.h>

static const char *usage =
    "(--images DIR | --data FILE) --tokenizer W --out DIR --steps N [--model SPEC | --init G] [--resume CKPT] [options]   (--help for all)";

static const char *const help_text[2] = {
    "usage: train_generator (--images DIR | --data FILE) --tokenizer W --out DIR --steps N [options]\n"
    "       train_generator --resume CKPT --export G.safetensors\n"
    "\n"
    "Pre-tokenises a folder of images with the tokenizer W (once; cached in the token file), then\n"
    "trains a DiT (continuous tokenizers) or a MaskGIT (VQ tokenizers) on the tokens. Writes into --out DIR:\n"
    "  tokens.safetensors  the token file (--tokens FILE elsewhere): ids or latents, labels, captions' T5 states\n"
    "  ckpt.safetensors    the training state (every --ckpt-every steps, at the end, on SIGINT/SIGTERM)\n"
    "  log.csv             loss, its parts, gradient norm and learning rate, one row per logged step\n"
    "  samples_<step>.png  --grid-n samples of the current weights, decoded by the tokenizer\n"
    "  model.safetensors   at the end: the weights (EMA if kept) for build/generate\n"
    "\n"
    "Data:\n"
    "  --images DIR        .png .jpg .jpeg .bmp files, all image_size x image_size of the tokenizer\n"
    "  --data FILE         a packed dataset (tools/get_emoji.sh) instead of --images: images and\n"
    "                      captions (used with --text-encoder/--spm)   --split S   train (default), val, all\n"
    "  --tokenizer W       a textok-layout tokenizer (TiTok / TexTok): VQ for MaskGIT, VAE or\n"
    "                      continuous for DiT\n"
    "  --labels FILE       lines 'filename<TAB>class' (integers >= 0) for every image\n"
    "  --class-folders 1   the images are in subfolders of DIR; class = subfolder index (sorted)\n"
    "  --captions FILE     lines 'filename<TAB>caption' (as train_tokenizer): DiT-T2I, and the text\n"
    "                      of tokenizers that read text\n"
    "  --text-encoder F    the frozen T5 encoder (build/convert --t5)    --spm F   its tokenizer.json\n"
    "  --tokens FILE       where the token file lives (default OUT/tokens.safetensors)\n"
    "Model:\n"
    "  --model SPEC        NAME[,field=value...]: dit_tiny dit_s dit_b dit_l dit_xl, maskgit_tiny\n"
    "                      maskgit_l32 maskgit_b64 (ImageBert), maskgit_uvit_tiny maskgit_s128 (UViT).\n"
    "                      Fields: hidden depth heads mlp_hidden, DiT also learn_sigma latent_scale\n"
    "                      text_len. Default dit_tiny or maskgit_tiny as the tokenizer suits\n"
    "  --init G            start from a generator file (its token space must be the tokenizer's)\n"
    "  --resume CKPT       continue from a checkpoint (repeat the training flags of its run)\n"
    "  --export FILE       with --resume only: write the checkpoint's weights (EMA if kept) and stop\n",
    "Training (--preset first, then the flags override it):\n"
    "  --preset NAME       tiny (default), dit (train.py), maskgit (maskgit.yaml)\n"
    "  --steps N           train until N steps are done in all (with --resume: counting its steps)\n"
    "  --batch N           sequences per step         --lr X   peak learning rate\n"
    "  --end-lr X          final learning rate        --warmup N   linear warmup, then cosine\n"
    "  --schedule-steps N  length of the cosine schedule (default --steps)\n"
    "  --ema DECAY         weight EMA, 0 = none       --grad-clip X   0 = none\n"
    "  --cond-dropout P    class / caption dropout for classifier-free guidance\n"
    "  --mask-schedule S   MaskGIT: arccos (default), cosine, linear\n"
    "  --seed N            model init and batch draws (default 1)    --threads N   CPU threads\n"
    "Output:\n"
    "  --out DIR           created if absent; a fresh run refuses a DIR that holds a checkpoint\n"
    "  --ckpt-every N      default 1000; 0 = only at the end and on a signal\n"
    "  --grid-every N      default 1000; 0 = none      --grid-n N   samples per grid (default 8)\n"
    "  --grid-steps N      sampling steps of the grids (default: DiT 50, MaskGIT its preset's)\n"
    "  --log-every N       progress line and CSV row every N steps (default 10; the first step always)\n"
    "SIGINT/SIGTERM: the checkpoint is saved after the current step and the program exits 0.\n"
    "Exit status: 0 done, 1 bad input or a failure while training, 2 bad command line.\n"
};

/* ---------------------------------------------------------------------------------------------
   Generator configs */

enum { GEN_DIT, GEN_MASKGIT };

typedef struct gen_preset {
    const char *name;
    int kind, arch, hidden, depth, heads;   /* MLP 4 x hidden */
    const char *official;                   /* textok_maskgit_preset name, or NULL */
} gen_preset;

static const gen_preset gen_presets[] = {
    { "dit_tiny", GEN_DIT, 0, 64, 2, 4, NULL },       { "dit_s", GEN_DIT, 0, 384, 12, 6, NULL },
    { "dit_b", GEN_DIT, 0, 768, 12, 12, NULL },       { "dit_l", GEN_DIT, 0, 1024, 24, 16, NULL },
    { "dit_xl", GEN_DIT, 0, 1152, 28, 16, NULL },
    { "maskgit_tiny", GEN_MASKGIT, TEXTOK_MASKGIT_BERT, 64, 2, 4, NULL },
    { "maskgit_l32", GEN_MASKGIT, TEXTOK_MASKGIT_BERT, 0, 0, 0, "L-32" },
    { "maskgit_b64", GEN_MASKGIT, TEXTOK_MASKGIT_BERT, 0, 0, 0, "B-64" },
    { "maskgit_uvit_tiny", GEN_MASKGIT, TEXTOK_MASKGIT_UVIT, 64, 2, 4, NULL },
    { "maskgit_s128", GEN_MASKGIT, TEXTOK_MASKGIT_UVIT, 0, 0, 0, "S-128" },
};
#define N_GEN_PRESETS ((int)(sizeof gen_presets / sizeof gen_presets[0]))

typedef struct gen_config {
    int kind;
    textok_dit_config dit;
    textok_maskgit_config mg;
} gen_config;

/* --model SPEC over the tokenizer's token space. num_classes and the text size come from the data. */
static void model_config(const char *spec, const textok_titok_config *tok, int num_classes, int text_dim,
                         int text_len, gen_config *g)
{
    char *s = ex_strdup(spec), *item, *next;
    const gen_preset *gp = NULL;
    int i;
    next = strchr(s, ',');
    if (next) *next++ = 0;
    for (i = 0; i < N_GEN_PRESETS && !gp; i++)
        if (!strcmp(s, gen_presets[i].name)) gp = &gen_presets[i];
    if (!gp) {
        char names[256] = "";
        for (i = 0; i < N_GEN_PRESETS; i++)
            snprintf(names + strlen(names), sizeof names - strlen(names), " %s", gen_presets[i].name);
        ex_usage(usage, "--model: unknown generator '%s' (one of:%s)", s, names);
    }
    memset(g, 0, sizeof *g);
    g->kind = gp->kind;
    if (gp->kind == GEN_DIT) {
        textok_dit_config *c = &g->dit;
        c->in_channels = tok->token_size;
        c->input_size = tok->num_latent_tokens;
        c->seq_1d = 1;
        c->patch_size = 1;
        c->hidden = gp->hidden; c->depth = gp->depth; c->heads = gp->heads; c->mlp_hidden = 4 * gp->hidden;
        c->num_classes = text_dim ? 0 : num_classes;
        c->learn_sigma = 1;
        c->text_dim = text_dim;
        c->text_len = text_dim ? text_len : 0;
        c->guide_channels = c->in_channels;   /* our 1D tokens: every channel (the official 3-of-4 is SD-VAE's) */
        c->latent_scale = 1.0f;
    } else {
        textok_maskgit_config *c = &g->mg;
        if (gp->official) {
            if (textok_maskgit_preset(c, gp->official) != TEXTOK_OK) ex_die("%s", textok_last_error());
        } else {
            c->arch = gp->arch; c->hidden = gp->hidden; c->depth = gp->depth; c->heads = gp->heads;
            c->mlp_hidden = 4 * gp->hidden;
        }
        c->codebook_size = tok->codebook_size;
        c->seq_len = tok->num_latent_tokens;
        c->num_classes = num_classes > 0 ? num_classes : 1;
    }
    for (item = next; item; item = next) {
        char *eq = strchr(item, '='), *end;
        double v;
        int *field = NULL;
        next = strchr(item, ',');
        if (next) *next++ = 0;
        if (!eq) ex_usage(usage, "--model: '%s' is not field=value", item);
        *eq = 0;
        v = strtod(eq + 1, &end);
        if (end == eq + 1 || *end || !(v >= 0 && v <= 1e6))
            ex_usage(usage, "--model: %s must be a number in [0, 1000000], not '%s'", item, eq + 1);
        if (g->kind == GEN_DIT) {
            if (!strcmp(item, "latent_scale")) { g->dit.latent_scale = (float)v; continue; }
            if (!strcmp(item, "hidden")) field = &g->dit.hidden;
            else if (!strcmp(item, "depth")) field = &g->dit.depth;
            else if (!strcmp(item, "heads")) field = &g->dit.heads;
            else if (!strcmp(item, "mlp_hidden")) field = &g->dit.mlp_hidden;
            else if (!strcmp(item, "learn_sigma")) field = &g->dit.learn_sigma;
            else if (!strcmp(item, "text_len")) {
                if (!text_dim) ex_usage(usage, "--model: text_len: this DiT reads no text (no --captions)");
                if (v < text_len) ex_usage(usage, "--model: text_len=%g is below the longest caption (%d tokens)", v, text_len);
                field = &g->dit.text_len;
            }
        } else {
            if (!strcmp(item, "hidden")) field = &g->mg.hidden;
            else if (!strcmp(item, "depth")) field = &g->mg.depth;
            else if (!strcmp(item, "heads")) field = &g->mg.heads;
            else if (!strcmp(item, "mlp_hidden")) field = &g->mg.mlp_hidden;
        }
        if (!field)
            ex_usage(usage, "--model: unknown field '%s' (hidden, depth, heads, mlp_hidden%s)", item,
                     g->kind == GEN_DIT ? ", learn_sigma, latent_scale, text_len" : "");
        if (v != (int)v) ex_usage(usage, "--model: %s must be an integer, not '%s'", item, eq + 1);
        *field = (int)v;
    }
    if ((g->kind == GEN_DIT ? textok_dit_config_check(&g->dit) : textok_maskgit_config_check(&g->mg)) != TEXTOK_OK)
        ex_usage(usage, "--model %s: %s", spec, textok_last_error());
    free(s);
}

/* ---------------------------------------------------------------------------------------------
   Data: images (flat or in class folders), labels, captions */

/* class folders: every subfolder of dir (sorted) is a class; names become "sub/file" */
static void load_class_folders(ex_dataset *ds, const char *dir, int S, int **labels, int *num_classes)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char **subs = NULL;
    size_t cap = 0;
    int n_sub = 0, i, j;
    if (!d) ex_die("cannot open the image folder '%s': %s", dir, strerror(errno));
    while ((e = readdir(d)) != NULL) {
        char *path;
        struct stat sb;
        if (e->d_name[0] == '.') continue;
        path = ex_path_join(dir, e->d_name);
        if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
            if ((size_t)n_sub == cap) {
                cap = cap ? 2 * cap : 16;
                if (!(subs = (char **)realloc(subs, cap * sizeof(char *)))) ex_die("out of memory");
            }
            subs[n_sub++] = ex_strdup(e->d_name);
        }
        free(path);
    }
    closedir(d);
    if (!n_sub) ex_die("--class-folders: '%s' has no subfolders (one per class)", dir);
    qsort(subs, (size_t)n_sub, sizeof(char *), ex_cmp_names);
    memset(ds, 0, sizeof *ds);
    ds->S = S;
    *labels = NULL;
    for (i = 0; i < n_sub; i++) {
        ex_dataset part;
        char *sub = ex_path_join(dir, subs[i]);
        size_t img = (size_t)3 * S * S;
        ex_load_images(&part, sub, S);
        ds->names = (char **)realloc(ds->names, (size_t)(ds->n + part.n) * sizeof(char *));
        ds->pixels = (unsigned char *)realloc(ds->pixels, (size_t)(ds->n + part.n) * img);
        *labels = (int *)realloc(*labels, (size_t)(ds->n + part.n) * sizeof(int));
        if (!ds->names || !ds->pixels || !*labels) ex_die("out of memory");
        memcpy(ds->pixels + (size_t)ds->n * img, part.pixels, (size_t)part.n * img);
        for (j = 0; j < part.n; j++) {
            ds->names[ds->n + j] = ex_path_join(subs[i], part.names[j]);
            (*labels)[ds->n + j] = i;
            free(part.names[j]);
        }
        ds->n += part.n;
        free(part.names); free(part.pixels); free(sub); free(subs[i]);
    }
    free(subs);
    *num_classes = n_sub;
    printf("classes: %d subfolders of %s (class = index in sorted order)\n", n_sub, dir);
}

/* "filename<TAB>class" for every image */
static int *load_labels(const ex_dataset *ds, const char *path, int *num_classes)
{
    FILE *f = fopen(path, "rb");
    size_t cap = 256;
    char *line = (char *)ex_malloc(cap);
    int *labels = (int *)ex_malloc((size_t)ds->n * sizeof(int));
    int lineno = 0, i, maxc = -1;
    if (!f) ex_die("cannot open labels '%s': %s", path, strerror(errno));
    for (i = 0; i < ds->n; i++) labels[i] = -1;
    while (ex_read_line(f, &line, &cap) >= 0) {
        char *tab, *key = line, **hit, *end;
        long v;
        lineno++;
        if (line[strspn(line, " \t")] == 0) continue;
        if (!(tab = strchr(line, '\t'))) ex_die("%s:%d: expected 'filename<TAB>class', found no tab", path, lineno);
        *tab = 0;
        hit = (char **)bsearch(&key, ds->names, (size_t)ds->n, sizeof(char *), ex_cmp_names);
        if (!hit) ex_die("%s:%d: '%s' is not one of the %d images", path, lineno, line, ds->n);
        v = strtol(tab + 1, &end, 10);
        if (end == tab + 1 || *end || v < 0 || v > 1000000)
            ex_die("%s:%d: class '%s' is not an integer in [0, 1000000]", path, lineno, tab + 1);
        if (labels[hit - ds->names] >= 0) ex_die("%s:%d: a second label for '%s'", path, lineno, line);
        labels[hit - ds->names] = (int)v;
        if (v > maxc) maxc = (int)v;
    }
    fclose(f);
    free(line);
    for (i = 0; i < ds->n; i++)
        if (labels[i] < 0) ex_die("%s: image '%s' has no label (every image needs one)", path, ds->names[i]);
    *num_classes = maxc + 1;
    printf("labels: %d classes (%s)\n", *num_classes, path);
    return labels;
}

/* FNV-1a 64 */
static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = (const unsigned char *)p;
    size_t i;
    for (i = 0; i < n; i++) { h ^= b[i]; h *= 1099511628211ull; }
    return h;
}

static uint64_t fnv_file(uint64_t h, const char *path)
{
    textok_file f;
    if (!path) return fnv(h, "-", 1);
    if (textok_file_open(&f, path) != TEXTOK_OK) ex_die("%s", textok_last_error());
    h = fnv(h, f.data, f.size);
    textok_file_close(&f);
    return h;
}

/* ---------------------------------------------------------------------------------------------
   The token file */

typedef struct tokens {
    int     n, K, C, is_latents;   /* tokens (n, K) or latents (n, C, 1, K) */
    float  *data;
    int32_t *ids;                  /* tokens as ints */
    int32_t *labels;               /* (n) or NULL */
    int     num_classes;
    float  *text;                  /* (n, L, D) or NULL */
    unsigned char *mask;           /* (n, L) */
    int     L, D;
} tokens;

static int read_token_file(const char *path, uint64_t hash, tokens *tk)
{
    textok_safetensors st;
    const char *h, *kind;
    const textok_st_tensor *t;
    char want[32];
    size_t i;
    if (!ex_file_exists(path)) return 0;
    if (textok_st_open(&st, path) != TEXTOK_OK) ex_die("cannot read the token file: %s", textok_last_error());
    kind = textok_st_meta(&st, "textok.model");
    if (!kind || strcmp(kind, "gen-tokens"))
        ex_die("'%s' is not a token file of train_generator (textok.model is '%s'); remove it or pick another --tokens",
               path, kind ? kind : "absent");
    h = textok_st_meta(&st, "source_hash");
    snprintf(want, sizeof want, "%016llx", (unsigned long long)hash);
    kind = textok_st_meta(&st, "kind");
    if (!h || strcmp(h, want) || !kind || strcmp(kind, tk->is_latents ? "latents" : "tokens")) {
        printf("tokens: %s was made from other inputs (or for the other generator kind); encoding again\n", path);
        textok_st_close(&st);
        return 0;
    }
    t = textok_st_find(&st, tk->is_latents ? "latents" : "tokens");
    if (!t || t->numel != (size_t)tk->n * tk->K * (tk->is_latents ? tk->C : 1))
        ex_die("token file '%s': '%s' is missing or has the wrong size", path, tk->is_latents ? "latents" : "tokens");
    tk->data = (float *)ex_malloc(t->numel * sizeof(float));
    if (textok_st_read_f32(&st, t, tk->data, t->numel) != TEXTOK_OK) ex_die("%s", textok_last_error());
    if (tk->labels) {
        float *l = (float *)ex_malloc((size_t)tk->n * sizeof(float));
        if (!(t = textok_st_find(&st, "labels")) || t->numel != (size_t)tk->n ||
            textok_st_read_f32(&st, t, l, (size_t)tk->n) != TEXTOK_OK)
            ex_die("token file '%s': bad 'labels'", path);
        for (i = 0; i < (size_t)tk->n; i++) tk->labels[i] = (int32_t)l[i];
        free(l);
    }
    if (tk->D) {
        float *m;
        if (!(t = textok_st_find(&st, "text")) || t->ndim != 3 || t->shape[0] != tk->n || t->shape[2] != tk->D)
            ex_die("token file '%s': bad 'text'", path);
        tk->L = (int)t->shape[1];
        tk->text = (float *)ex_malloc(t->numel * sizeof(float));
        m = (float *)ex_malloc((size_t)tk->n * tk->L * sizeof(float));
        tk->mask = (unsigned char *)ex_malloc((size_t)tk->n * tk->L);
        if (textok_st_read_f32(&st, t, tk->text, t->numel) != TEXTOK_OK ||
            !(t = textok_st_find(&st, "text_mask")) || t->numel != (size_t)tk->n * tk->L ||
            textok_st_read_f32(&st, t, m, t->numel) != TEXTOK_OK)
            ex_die("token file '%s': bad 'text_mask'", path);
        for (i = 0; i < (size_t)tk->n * tk->L; i++) tk->mask[i] = m[i] != 0;
        free(m);
    }
    textok_st_close(&st);
    printf("tokens: %d %s read from %s (cached; same inputs)\n", tk->n, tk->is_latents ? "latent sequences" : "id sequences", path);
    return 1;
}

static void write_token_file(const char *path, uint64_t hash, const tokens *tk, const ex_dataset *ds)
{
    textok_st_entry e[4];
    const char *kv[12];
    char hs[32], cnt[32], ncls[32], *names;
    float *lab = NULL, *m = NULL;
    size_t len = 1, i;
    int n = 0;
    for (i = 0; i < (size_t)ds->n; i++) len += strlen(ds->names[i]) + 1;
    names = (char *)ex_malloc(len);
    names[0] = 0;
    for (i = 0; i < (size_t)ds->n; i++) { strcat(names, ds->names[i]); if (i + 1 < (size_t)ds->n) strcat(names, "\n"); }
    memset(e, 0, sizeof e);
    e[n].name = tk->is_latents ? "latents" : "tokens";
    e[n].data = tk->data;
    if (tk->is_latents) { e[n].ndim = 4; e[n].shape[0] = tk->n; e[n].shape[1] = tk->C; e[n].shape[2] = 1; e[n].shape[3] = tk->K; }
    else { e[n].ndim = 2; e[n].shape[0] = tk->n; e[n].shape[1] = tk->K; }
    n++;
    if (tk->labels) {
        lab = (float *)ex_malloc((size_t)tk->n * sizeof(float));
        for (i = 0; i < (size_t)tk->n; i++) lab[i] = (float)tk->labels[i];
        e[n].name = "labels"; e[n].data = lab; e[n].ndim = 1; e[n].shape[0] = tk->n; n++;
    }
    if (tk->text) {
        m = (float *)ex_malloc((size_t)tk->n * tk->L * sizeof(float));
        for (i = 0; i < (size_t)tk->n * tk->L; i++) m[i] = tk->mask[i];
        e[n].name = "text"; e[n].data = tk->text; e[n].ndim = 3;
        e[n].shape[0] = tk->n; e[n].shape[1] = tk->L; e[n].shape[2] = tk->D; n++;
        e[n].name = "text_mask"; e[n].data = m; e[n].ndim = 2; e[n].shape[0] = tk->n; e[n].shape[1] = tk->L; n++;
    }
    snprintf(hs, sizeof hs, "%016llx", (unsigned long long)hash);
    snprintf(cnt, sizeof cnt, "%d", tk->n);
    snprintf(ncls, sizeof ncls, "%d", tk->num_classes);
    kv[0] = "textok.model"; kv[1] = "gen-tokens"; kv[2] = "kind"; kv[3] = tk->is_latents ? "latents" : "tokens";
    kv[4] = "count"; kv[5] = cnt; kv[6] = "num_classes"; kv[7] = ncls; kv[8] = "source_hash"; kv[9] = hs;
    kv[10] = "names"; kv[11] = names;
    if (textok_st_save(path, e, n, kv, 6, TEXTOK_DTYPE_F32) != TEXTOK_OK) ex_die("%s", textok_last_error());
    free(lab); free(m); free(names);
}

/* Encodes every image (batches of 8) with the tokenizer; text per image for tokenizers that read it */
static void encode_all(textok_titok *tok, const ex_dataset *ds, tokens *tk)
{
    const int S = ds->S, chunk = 8;
    const size_t img = (size_t)3 * S * S;
    float *batch = (float *)ex_malloc((size_t)chunk * img * sizeof(float));
    int32_t *ids = (int32_t *)ex_malloc((size_t)chunk * tk->K * sizeof(int32_t));
    const textok_titok_config *tc = textok_titok_get_config(tok);
    int i0, b;
    size_t j;
    double t0 = ex_now();
    tk->data = (float *)ex_malloc((size_t)tk->n * tk->K * (tk->is_latents ? tk->C : 1) * sizeof(float));
    for (i0 = 0; i0 < tk->n; i0 += chunk) {
        const int nb = tk->n - i0 < chunk ? tk->n - i0 : chunk;
        textok_text tx, *txp = NULL;
        for (b = 0; b < nb; b++)
            for (j = 0; j < img; j++) batch[(size_t)b * img + j] = ds->pixels[(size_t)(i0 + b) * img + j] / 255.0f;
        if (tc->text_in_encoder && tk->text) {
            tx.emb = tk->text + (size_t)i0 * tk->L * tk->D; tx.mask = tk->mask + (size_t)i0 * tk->L;
            tx.L = tk->L; tx.dim = tk->D;
            if (tk->L > tc->text_len) ex_die("captions of up to %d tokens, but the tokenizer reads %d", tk->L, tc->text_len);
            txp = &tx;
        }
        if (textok_titok_encode(tok, batch, nb, txp, tk->is_latents ? NULL : ids,
                                tk->is_latents ? tk->data + (size_t)i0 * tk->C * tk->K : NULL, NULL, NULL) != TEXTOK_OK)
            ex_die("cannot encode '%s': %s", ds->names[i0], textok_last_error());
        if (!tk->is_latents)
            for (j = 0; j < (size_t)nb * tk->K; j++) tk->data[(size_t)i0 * tk->K + j] = (float)ids[j];
    }
    printf("tokens: %d images encoded in %.1f s\n", tk->n, ex_now() - t0);
    free(batch); free(ids);
}

/* ---------------------------------------------------------------------------------------------
   Checkpoints */

typedef struct ckpt_info {
    gen_config g;
    int step, has_ema;
} ckpt_info;

/* A checkpoint holds the generator's config under the model's own keys and names the kind in
   "textok.trainer" (textok_gen_trainer_save). */
static int config_from_ckpt_meta(const textok_safetensors *st, gen_config *g, char *why, size_t size)
{
    const char *kind = textok_st_meta(st, "textok.trainer");
    if (kind && !strcmp(kind, "dit") && textok_dit_config_from_meta(&g->dit, st) == TEXTOK_OK) { g->kind = GEN_DIT; return 1; }
    if (kind && !strcmp(kind, "maskgit") && textok_maskgit_config_from_meta(&g->mg, st) == TEXTOK_OK) { g->kind = GEN_MASKGIT; return 1; }
    snprintf(why, size, "%s", textok_last_error());
    return 0;
}

static void probe_checkpoint(const char *path, ckpt_info *ci)
{
    textok_safetensors st;
    const char *step, *kind;
    char why[700];
    int i;
    if (textok_st_open(&st, path) != TEXTOK_OK) ex_die("cannot resume from '%s': %s", path, textok_last_error());
    memset(ci, 0, sizeof *ci);
    kind = textok_st_meta(&st, "textok.trainer");
    if (!kind || (strcmp(kind, "dit") && strcmp(kind, "maskgit"))) {
        snprintf(why, sizeof why, "%s", kind ? kind : "absent");
        textok_st_close(&st);
        ex_die("cannot resume from '%s': not a generator training checkpoint (textok.trainer is '%s'; --resume takes the "
               "ckpt.safetensors of an earlier train_generator run, --init a generator file)", path, why);
    }
    if (!config_from_ckpt_meta(&st, &ci->g, why, sizeof why)) {
        textok_st_close(&st);
        ex_die("cannot resume from '%s': no generator config in its metadata (%s)", path, why);
    }
    step = textok_st_meta(&st, "train.step");
    ci->step = step ? atoi(step) : -1;
    for (i = 0; i < st.n_tensors && !ci->has_ema; i++) ci->has_ema = !strncmp(st.tensors[i].name, "ema.", 4);
    textok_st_close(&st);
    if (ci->step < 0) ex_die("cannot resume from '%s': no valid train.step in its metadata", path);
}

static void make_model(const gen_config *g, const textok_params *p, uint64_t seed, textok_dit **dit, textok_maskgit **mg)
{
    *dit = NULL; *mg = NULL;
    if (g->kind == GEN_DIT ? textok_dit_create(dit, &g->dit, p, seed) : textok_maskgit_create(mg, &g->mg, p, seed))
        ex_die("cannot create the generator: %s", textok_last_error());
}

static int export_model(const char *ckpt, const char *out, const textok_params *p0)
{
    textok_params p = *p0;
    textok_gen_train_config tc;
    textok_dit *dit; textok_maskgit *mg;
    textok_gen_trainer *t = NULL;
    ckpt_info ci;
    probe_checkpoint(ckpt, &ci);
    p.max_batch = 1;
    textok_gen_train_preset(&tc, "tiny");
    tc.batch = 1;
    tc.ema_decay = ci.has_ema ? 0.999 : 0.0;
    make_model(&ci.g, &p, 0, &dit, &mg);
    if (textok_gen_trainer_create(&t, dit, mg, &tc, 0) != TEXTOK_OK) ex_die("cannot build a trainer: %s", textok_last_error());
    if (textok_gen_trainer_load(t, ckpt) != TEXTOK_OK) ex_die("cannot resume from '%s': %s", ckpt, textok_last_error());
    if (textok_gen_trainer_save_model(t, out, ci.has_ema) != TEXTOK_OK) ex_die("cannot write '%s': %s", out, textok_last_error());
    printf("%s: step %d of %s -> %s (%s weights)\n", ex_prog, ci.step, ckpt, out, ci.has_ema ? "EMA" : "raw");
    textok_gen_trainer_free(t);
    textok_dit_free(dit);
    textok_maskgit_free(mg);
    return 0;
}

/* ---------------------------------------------------------------------------------------------
   Outputs */

static const char *csv_header = "step,loss,mse,vb,ce,accuracy,grad_norm,lr,elapsed_s\n";

static void log_row(FILE *f, const char *path, const textok_gen_train_stats *s, double elapsed)
{
    fprintf(f, "%d,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g,%.3f\n", s->step, s->loss, s->mse, s->vb, s->ce, s->accuracy,
            s->grad_norm, s->lr, elapsed);
    if (fflush(f) != 0 || ferror(f)) ex_die("cannot write '%s'", path);
}

static void progress_line(const textok_gen_train_stats *s, int steps, int kind, double rate)
{
    double eta = rate > 0 ? (steps - s->step) / rate : 0;
    long e = (long)(eta + 0.5);
    printf("step %d/%d  loss %.5f", s->step, steps, s->loss);
    if (kind == GEN_DIT) printf("  mse %.5f  vb %.4g", s->mse, s->vb);
    else printf("  ce %.5f  acc %.3f", s->ce, s->accuracy);
    printf("  |g| %.3g  lr %.3g  %.2f it/s  ETA %ld:%02ld:%02ld\n", s->grad_norm, s->lr, rate, e / 3600, e / 60 % 60, e % 60);
    fflush(stdout);
}

/* samples_<step>.png: n samples of the current weights with a fixed seed, decoded */
static void write_samples(const char *dir, int step, textok_dit *dit, textok_maskgit *mg, textok_titok *tok,
                          const tokens *tk, int n, int grid_steps, uint64_t seed)
{
    const textok_titok_config *tc = textok_titok_get_config(tok);
    const int S = tc->image_size;
    float *img = (float *)ex_malloc((size_t)n * 3 * S * S * sizeof(float));
    int32_t *y = NULL;
    textok_rng rng;
    textok_text tx, *txp = NULL;
    char name[64], *path;
    int i, ncls = dit ? textok_dit_get_config(dit)->num_classes : textok_maskgit_get_config(mg)->num_classes;
    if (ncls > 0) {
        y = (int32_t *)ex_malloc((size_t)n * sizeof(int32_t));
        for (i = 0; i < n; i++) y[i] = i % ncls;
    }
    if (tk->text && (tc->text_in_decoder || (dit && textok_dit_get_config(dit)->text_dim))) {
        /* the first n examples' captions */
        tx.emb = tk->text; tx.mask = tk->mask; tx.L = tk->L; tx.dim = tk->D;
        txp = &tx;
        if (n > tk->n) n = tk->n;
    }
    textok_rng_seed(&rng, seed);
    if (dit) {
        const textok_dit_config *c = textok_dit_get_config(dit);
        textok_dit_sample_config sc = textok_dit_sample_default();
        float *lat = (float *)ex_malloc((size_t)n * c->in_channels * c->input_size * sizeof(float));
        sc.steps = grid_steps > 0 ? grid_steps : 50;
        if (!ncls && !c->text_dim) sc.cfg_scale = 1.0f;
        if (textok_dit_generate(dit, &sc, y, c->text_dim ? txp : NULL, n, &rng, lat) != TEXTOK_OK ||
            textok_titok_decode_latents(tok, lat, n, tc->text_in_decoder ? txp : NULL, img) != TEXTOK_OK)
            ex_die("sample grid at step %d: %s", step, textok_last_error());
        free(lat);
    } else {
        const textok_maskgit_config *c = textok_maskgit_get_config(mg);
        textok_maskgit_sample_config sc;
        int32_t *ids = (int32_t *)ex_malloc((size_t)n * c->seq_len * sizeof(int32_t));
        textok_maskgit_sample_preset(&sc, c->seq_len == 128 ? "S-128" : c->seq_len == 64 ? "B-64" : "L-32");
        if (grid_steps > 0) sc.steps = grid_steps;
        if (textok_maskgit_generate(mg, &sc, y, n, &rng, ids) != TEXTOK_OK ||
            textok_titok_decode_tokens(tok, ids, n, tc->text_in_decoder ? txp : NULL, img) != TEXTOK_OK)
            ex_die("sample grid at step %d: %s", step, textok_last_error());
        free(ids);
    }
    snprintf(name, sizeof name, "samples_%d.png", step);
    path = ex_path_join(dir, name);
    ex_write_tiles(path, img, n, S, 0);
    free(path); free(img); free(y);
}

static void save_checkpoint(textok_gen_trainer *t, const char *path)
{
    if (textok_gen_trainer_save(t, path) != TEXTOK_OK) ex_die("cannot save the checkpoint '%s': %s", path, textok_last_error());
}

static const char *describe(const gen_config *g, char *buf, size_t size)
{
    if (g->kind == GEN_DIT) {
        const textok_dit_config *c = &g->dit;
        snprintf(buf, size, "DiT %dx%d (%d heads) over %d tokens of %d, %s%s", c->hidden, c->depth, c->heads,
                 c->input_size, c->in_channels, c->text_dim ? "text-conditioned" : c->num_classes ? "classes " : "unconditional",
                 "");
        if (c->num_classes) snprintf(buf + strlen(buf), size - strlen(buf), "%d", c->num_classes);
    } else {
        const textok_maskgit_config *c = &g->mg;
        snprintf(buf, size, "MaskGIT %s %dx%d (%d heads) over %d ids of %d, %d classes",
                 c->arch == TEXTOK_MASKGIT_UVIT ? "UViT" : "ImageBert", c->hidden, c->depth, c->heads, c->seq_len,
                 c->codebook_size, c->num_classes);
    }
    return buf;
}

int main(int argc, char **argv)
{
    const char *images = NULL, *data = NULL, *split = NULL, *tok_path = NULL, *labels_path = NULL, *class_folders = NULL, *captions = NULL;
    const char *t5_path = NULL, *spm_path = NULL, *tokens_path = NULL, *model_spec = NULL, *init = NULL;
    const char *resume = NULL, *export_path = NULL, *preset = NULL, *steps_s = NULL, *batch_s = NULL, *lr_s = NULL;
    const char *end_lr_s = NULL, *warmup_s = NULL, *sched_s = NULL, *ema_s = NULL, *clip_s = NULL, *drop_s = NULL;
    const char *mask_s = NULL, *seed_s = NULL, *threads_s = NULL, *out = NULL, *ckpt_s = NULL, *grid_s = NULL;
    const char *gridn_s = NULL, *grids_s = NULL, *logk_s = NULL;
    ex_flag flags[] = {
        { "--images", &images, 0 }, { "--data", &data, 0 }, { "--split", &split, 0 }, { "--tokenizer", &tok_path, 0 }, { "--labels", &labels_path, 0 },
        { "--class-folders", &class_folders, 0 }, { "--captions", &captions, 0 }, { "--text-encoder", &t5_path, 0 },
        { "--spm", &spm_path, 0 }, { "--tokens", &tokens_path, 0 }, { "--model", &model_spec, 0 }, { "--init", &init, 0 },
        { "--resume", &resume, 0 }, { "--export", &export_path, 0 }, { "--preset", &preset, 0 }, { "--steps", &steps_s, 0 },
        { "--batch", &batch_s, 0 }, { "--lr", &lr_s, 0 }, { "--end-lr", &end_lr_s, 0 }, { "--warmup", &warmup_s, 0 },
        { "--schedule-steps", &sched_s, 0 }, { "--ema", &ema_s, 0 }, { "--grad-clip", &clip_s, 0 },
        { "--cond-dropout", &drop_s, 0 }, { "--mask-schedule", &mask_s, 0 }, { "--seed", &seed_s, 0 },
        { "--threads", &threads_s, 0 }, { "--out", &out, 0 }, { "--ckpt-every", &ckpt_s, 0 },
        { "--grid-every", &grid_s, 0 }, { "--grid-n", &gridn_s, 0 }, { "--grid-steps", &grids_s, 0 },
        { "--log-every", &logk_s, 0 },
    };
    textok_params params = textok_default_params();
    textok_gen_train_config tc;
    textok_titok *tok = NULL;
    const textok_titok_config *tcfg;
    textok_dit *dit = NULL;
    textok_maskgit *mg = NULL;
    textok_gen_trainer *t = NULL;
    textok_gen_train_stats s;
    ex_text_source ts;
    ex_dataset ds;
    tokens tk;
    gen_config g;
    ckpt_info ci;
    int *labels = NULL, num_classes = 0, i, b, steps, ckpt_every, grid_every, grid_n, grid_steps, log_every, status;
    int step0, done, final_step, last_ckpt = -1, last_grid = -1, want_dit, *picked;
    char *ckpt_path, *log_path, *model_path, *tk_path, desc[256];
    float *lat_b = NULL, *text_b = NULL;
    unsigned char *mask_b = NULL;
    int32_t *ids_b = NULL, *y_b = NULL;
    FILE *logf;
    uint64_t seed, hash;
    double lr_ratio, t_start;

    for (i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(help_text[0], stdout);
            fputs(help_text[1], stdout);
            return 0;
        } else if (!strncmp(argv[i], "--", 2)) {
            i++;   /* skip the value, which may look like a flag */
        }
    ex_parse_flags(argc, argv, flags, (int)(sizeof flags / sizeof flags[0]), usage);
    params.n_threads = ex_parse_int(threads_s, "--threads", 0, 4096, 0, usage);
    if (export_path) {
        if (!resume) ex_usage(usage, "--export needs --resume CKPT (the checkpoint to export)");
        return export_model(resume, export_path, &params);
    }
    if (!images == !data) ex_usage(usage, "give --images DIR or --data FILE (one of them)");
    if (split && !data) ex_usage(usage, "--split needs --data");
    if (data && (captions || labels_path || class_folders))
        ex_usage(usage, "--data holds the images and captions; --captions, --labels and --class-folders are for --images");
    if (!tok_path) ex_usage(usage, "--tokenizer is required (it turns the images into the tokens the generator learns)");
    if (!out) ex_usage(usage, "--out is required");
    if (!steps_s) ex_usage(usage, "--steps is required");
    if (model_spec && init) ex_usage(usage, "--model and --init both give the generator: pick one");
    if (labels_path && class_folders) ex_usage(usage, "--labels and --class-folders both give the classes: pick one");
    if (class_folders && strcmp(class_folders, "1") && strcmp(class_folders, "0"))
        ex_usage(usage, "--class-folders takes 1 (or 0)");
    if (class_folders && !strcmp(class_folders, "0")) class_folders = NULL;
    if (!t5_path != !spm_path) ex_usage(usage, "--text-encoder and --spm go together (the T5 encoder and its tokenizer)");
    if (captions && !t5_path) ex_usage(usage, "--captions needs --text-encoder T5.safetensors and --spm tokenizer.json");

    /* the training config */
    if (textok_gen_train_preset(&tc, preset ? preset : "tiny") != TEXTOK_OK) ex_usage(usage, "--preset: %s", textok_last_error());
    lr_ratio = tc.lr > 0 ? tc.end_lr / tc.lr : 0.0;
    steps = ex_parse_int(steps_s, "--steps", 1, INT_MAX - 1, 0, usage);
    tc.total_steps = ex_parse_int(sched_s, "--schedule-steps", 1, INT_MAX - 1, steps, usage);
    tc.batch = ex_parse_int(batch_s, "--batch", 1, 4096, tc.batch, usage);
    tc.lr = ex_parse_num(lr_s, "--lr", 0, 1e30, tc.lr, usage);
    tc.end_lr = ex_parse_num(end_lr_s, "--end-lr", 0, 1e30, lr_s ? tc.lr * lr_ratio : tc.end_lr, usage);
    tc.warmup_steps = ex_parse_int(warmup_s, "--warmup", 0, INT_MAX - 1, tc.warmup_steps, usage);
    tc.ema_decay = ex_parse_num(ema_s, "--ema", 0, 0.999999, tc.ema_decay, usage);
    tc.grad_clip = (float)ex_parse_num(clip_s, "--grad-clip", 0, 1e30, tc.grad_clip, usage);
    tc.cond_dropout = (float)ex_parse_num(drop_s, "--cond-dropout", 0, 1, tc.cond_dropout, usage);
    if (mask_s) {
        if (!strcmp(mask_s, "arccos")) tc.mask_schedule = TEXTOK_MASK_ARCCOS;
        else if (!strcmp(mask_s, "cosine")) tc.mask_schedule = TEXTOK_MASK_COSINE;
        else if (!strcmp(mask_s, "linear")) tc.mask_schedule = TEXTOK_MASK_LINEAR;
        else ex_usage(usage, "--mask-schedule must be arccos, cosine or linear, not '%s'", mask_s);
    }
    if (textok_gen_train_config_check(&tc) != TEXTOK_OK) ex_usage(usage, "%s", textok_last_error());
    seed = (uint64_t)ex_parse_int(seed_s, "--seed", 0, INT_MAX, 1, usage);
    ckpt_every = ex_parse_int(ckpt_s, "--ckpt-every", 0, INT_MAX, 1000, usage);
    grid_every = ex_parse_int(grid_s, "--grid-every", 0, INT_MAX, 1000, usage);
    grid_n = ex_parse_int(gridn_s, "--grid-n", 1, 64, 8, usage);
    grid_steps = ex_parse_int(grids_s, "--grid-steps", 1, 1000, 0, usage);
    log_every = ex_parse_int(logk_s, "--log-every", 1, INT_MAX, 10, usage);

    ckpt_path = ex_path_join(out, "ckpt.safetensors");
    log_path = ex_path_join(out, "log.csv");
    model_path = ex_path_join(out, "model.safetensors");
    tk_path = tokens_path ? ex_strdup(tokens_path) : ex_path_join(out, "tokens.safetensors");
    if (!resume && ex_file_exists(ckpt_path))
        ex_die("'%s' already holds a checkpoint: continue it with --resume %s, or pick another --out", out, ckpt_path);

    /* the tokenizer */
    {
        textok_params tp = params;
        tp.max_batch = 8;
        if (textok_titok_load(&tok, tok_path, &tp) != TEXTOK_OK) ex_die("cannot load tokenizer '%s': %s", tok_path, textok_last_error());
    }
    tcfg = textok_titok_get_config(tok);

    /* which generator: --resume's checkpoint, --init's file, --model, or the tokenizer's default */
    memset(&g, 0, sizeof g);
    if (resume) {
        probe_checkpoint(resume, &ci);
        if (ci.step > steps) ex_usage(usage, "--steps %d is below the checkpoint's step %d (%s)", steps, ci.step, resume);
        if (ci.has_ema != (tc.ema_decay > 0))
            ex_die("cannot resume from '%s': it was written %s an EMA of the weights and this run has %s (--ema)", resume,
                   ci.has_ema ? "with" : "without", ci.has_ema ? "none" : "one");
        want_dit = ci.g.kind == GEN_DIT;
    } else if (init) {
        textok_safetensors st;
        const char *k;
        if (textok_st_open(&st, init) != TEXTOK_OK) ex_die("cannot load --init: %s", textok_last_error());
        k = textok_st_meta(&st, "textok.model");
        want_dit = k && !strcmp(k, "dit");
        if (!k || (strcmp(k, "dit") && strcmp(k, "maskgit"))) {
            textok_st_close(&st);
            ex_die("--init '%s' is not a generator file (textok.model is not \"dit\" or \"maskgit\")", init);
        }
        textok_st_close(&st);
    } else if (model_spec) {
        want_dit = !strncmp(model_spec, "dit", 3);
    } else {
        want_dit = tcfg->quantize_mode != TEXTOK_QUANT_VQ;
    }
    if (want_dit && tcfg->quantize_mode == TEXTOK_QUANT_VQ)
        ex_die("a DiT learns continuous tokens; tokenizer '%s' is VQ (its ids are MaskGIT's: --model maskgit_tiny)", tok_path);
    if (!want_dit && tcfg->quantize_mode != TEXTOK_QUANT_VQ)
        ex_die("a MaskGIT learns VQ ids; tokenizer '%s' is %s (its latents are a DiT's: --model dit_tiny)", tok_path,
               tcfg->quantize_mode == TEXTOK_QUANT_VAE ? "a VAE" : "continuous");

    /* data */
    memset(&ds, 0, sizeof ds);
    if (data) {
        ex_load_data(&ds, data, split ? split : "train", tcfg->image_size);
        if (t5_path) captions = data;
    } else if (class_folders) load_class_folders(&ds, images, tcfg->image_size, &labels, &num_classes);
    else ex_load_images(&ds, images, tcfg->image_size);
    if (labels_path) labels = load_labels(&ds, labels_path, &num_classes);
    if (captions && !data) ex_load_captions(&ds, captions, images);
    memset(&ts, 0, sizeof ts);
    memset(&tk, 0, sizeof tk);
    tk.n = ds.n; tk.K = tcfg->num_latent_tokens; tk.C = tcfg->token_size; tk.is_latents = want_dit;
    tk.num_classes = num_classes;
    if ((tcfg->text_in_encoder || tcfg->text_in_decoder) && !captions && !tcfg->text_optional)
        ex_usage(usage, "tokenizer '%s' reads text: give --captions FILE --text-encoder T5 --spm tokenizer.json", tok_path);
    if (captions && !want_dit && !tcfg->text_in_encoder && !tcfg->text_in_decoder)
        fprintf(stderr, "%s: note: a MaskGIT is class-conditional; the captions are not used\n", ex_prog);
    if (captions && (want_dit || tcfg->text_in_encoder || tcfg->text_in_decoder)) {
        int missing = 0;
        if (textok_spm_load(&ts.spm, spm_path) != TEXTOK_OK) ex_die("cannot load --spm: %s", textok_last_error());
        if (textok_t5_load(&ts.t5, t5_path, &params) != TEXTOK_OK) ex_die("cannot load --text-encoder: %s", textok_last_error());
        ts.on = 1;
        ts.dim = textok_t5_get_config(ts.t5)->d_model;
        ts.max_len = (tcfg->text_in_encoder || tcfg->text_in_decoder) ? tcfg->text_len : 128;
        ts.emb = (float **)calloc((size_t)ds.n, sizeof(float *));
        ts.len = (int *)calloc((size_t)ds.n, sizeof(int));
        if (!ts.emb || !ts.len) ex_die("out of memory");
        for (i = 0; i < ds.n; i++) missing += !ds.captions[i];
        if (missing) ex_die("%d of %d images have no caption (every image needs one here)", missing, ds.n);
        tk.D = ts.dim;
    }
    if (labels) {
        tk.labels = (int32_t *)ex_malloc((size_t)ds.n * sizeof(int32_t));
        for (i = 0; i < ds.n; i++) tk.labels[i] = labels[i];
    }

    /* the token file: cached when every input is byte-identical */
    hash = 14695981039346656037ull;
    hash = fnv_file(hash, tok_path);
    hash = fnv_file(hash, tk.D ? t5_path : NULL);
    hash = fnv(hash, tk.is_latents ? "latents" : "tokens", tk.is_latents ? 7 : 6);
    for (i = 0; i < ds.n; i++) {
        hash = fnv(hash, ds.names[i], strlen(ds.names[i]) + 1);
        hash = fnv(hash, ds.pixels + (size_t)i * 3 * ds.S * ds.S, (size_t)3 * ds.S * ds.S);
        if (labels) hash = fnv(hash, &labels[i], sizeof labels[i]);
        if (tk.D) hash = fnv(hash, ds.captions[i], strlen(ds.captions[i]) + 1);
    }
    if (mkdir(out, 0777) != 0 && errno != EEXIST) ex_die("cannot create '%s': %s", out, strerror(errno));
    if (!read_token_file(tk_path, hash, &tk)) {
        if (tk.D) {   /* every caption's T5 states, padded to the longest */
            int *all = (int *)ex_malloc((size_t)ds.n * sizeof(int));
            textok_text tx;
            for (i = 0; i < ds.n; i++) all[i] = i;
            memset(&tx, 0, sizeof tx);
            if (!ex_text_batch(&ts, &ds, all, ds.n, &tx)) ex_die("captions were given but no text encoder is loaded");
            tk.L = tx.L;
            tk.text = (float *)ex_malloc((size_t)ds.n * tk.L * tk.D * sizeof(float));
            tk.mask = (unsigned char *)ex_malloc((size_t)ds.n * tk.L);
            memcpy(tk.text, tx.emb, (size_t)ds.n * tk.L * tk.D * sizeof(float));
            memcpy(tk.mask, tx.mask, (size_t)ds.n * tk.L);
            free(all);
        }
        encode_all(tok, &ds, &tk);
        write_token_file(tk_path, hash, &tk, &ds);
        printf("tokens: written to %s\n", tk_path);
    }
    ex_text_free(&ts, ds.n);

    /* the generator */
    params.max_batch = tc.batch > grid_n ? tc.batch : grid_n;
    params.max_batch *= 2;   /* guidance runs the conditional and unconditional passes together */
    if (resume) {
        g = ci.g;
    } else if (init) {
        if (want_dit ? textok_dit_load(&dit, init, &params) : textok_maskgit_load(&mg, init, &params))
            ex_die("cannot load --init '%s': %s", init, textok_last_error());
        g.kind = want_dit ? GEN_DIT : GEN_MASKGIT;
        if (dit) g.dit = *textok_dit_get_config(dit); else g.mg = *textok_maskgit_get_config(mg);
    } else {
        model_config(model_spec ? model_spec : want_dit ? "dit_tiny" : "maskgit_tiny", tcfg, num_classes, tk.D, tk.L, &g);
    }
    /* the generator must fit the data it is given */
    if (g.kind == GEN_DIT) {
        const textok_dit_config *c = &g.dit;
        if (!c->seq_1d || c->in_channels != tk.C || c->input_size != tk.K)
            ex_die("the DiT (%s: %d tokens of %d) does not match tokenizer '%s' (%d tokens of %d)", describe(&g, desc, sizeof desc),
                   c->input_size, c->in_channels, tok_path, tk.K, tk.C);
        if (c->num_classes && (!labels || num_classes > c->num_classes))
            ex_die("the DiT is class-conditional with %d classes; the data has %s", c->num_classes,
                   labels ? "more classes" : "no labels (--labels or --class-folders)");
        if (c->text_dim && (!tk.D || tk.D != c->text_dim || tk.L > c->text_len))
            ex_die("the DiT reads %d x %d captions; the data has %s", c->text_len, c->text_dim, tk.D ? "other text" : "no captions");
        if (!c->text_dim && tk.D) tk.D = 0;   /* a class DiT on a captioned set: captions only for the tokenizer */
    } else {
        const textok_maskgit_config *c = &g.mg;
        if (c->codebook_size != tcfg->codebook_size || c->seq_len != tk.K)
            ex_die("the MaskGIT (%d ids of a %d-code codebook) does not match tokenizer '%s' (%d ids, codebook %d)",
                   c->seq_len, c->codebook_size, tok_path, tk.K, tcfg->codebook_size);
        if (labels && num_classes > c->num_classes)
            ex_die("the MaskGIT has %d classes; the labels have %d", c->num_classes, num_classes);
    }
    if (!dit && !mg) make_model(&g, &params, seed, &dit, &mg);
    if (textok_gen_trainer_create(&t, dit, mg, &tc, seed + 2) != TEXTOK_OK)
        ex_die("cannot create the trainer: %s", textok_last_error());
    if (resume && textok_gen_trainer_load(t, resume) != TEXTOK_OK)
        ex_die("cannot resume from '%s': %s", resume, textok_last_error());
    step0 = textok_gen_trainer_steps_done(t);
    printf("model: %s, %lu parameters%s\n", describe(&g, desc, sizeof desc),
           (unsigned long)(dit ? textok_dit_num_params(dit) : textok_maskgit_num_params(mg)), init ? " (from --init)" : "");
    printf("training: %d sequences, batch %d, lr %g -> %g (warmup %d, cosine to %d), clip %g, EMA %g, cond dropout %g, "
           "seed %lu\n", tk.n, tc.batch, tc.lr, tc.end_lr, tc.warmup_steps, tc.total_steps, tc.grad_clip, tc.ema_decay,
           (double)tc.cond_dropout, (unsigned long)seed);
    if (resume) printf("resumed: step %d of %s\n", step0, resume);
    fflush(stdout);

    logf = ex_open_log(log_path, csv_header, resume != NULL, step0);
    picked = (int *)ex_malloc((size_t)tc.batch * sizeof(int));
    if (tk.is_latents) lat_b = (float *)ex_malloc((size_t)tc.batch * tk.C * tk.K * sizeof(float));
    else ids_b = (int32_t *)ex_malloc((size_t)tc.batch * tk.K * sizeof(int32_t));
    if (tk.labels) y_b = (int32_t *)ex_malloc((size_t)tc.batch * sizeof(int32_t));
    if (tk.D) {
        text_b = (float *)ex_malloc((size_t)tc.batch * tk.L * tk.D * sizeof(float));
        mask_b = (unsigned char *)ex_malloc((size_t)tc.batch * tk.L);
    }
    signal(SIGINT, ex_on_signal);
    signal(SIGTERM, ex_on_signal);

    t_start = ex_now();
    memset(&s, 0, sizeof s);
    for (done = 0; textok_gen_trainer_steps_done(t) < steps && !ex_stop_signal; done++) {
        textok_rng *rng = textok_gen_trainer_rng(t);
        textok_text tx;
        int step;
        double elapsed;
        size_t j;
        for (b = 0; b < tc.batch; b++) {
            const int k = (int)(((uint64_t)textok_rng_u32(rng) * (uint64_t)tk.n) >> 32);
            picked[b] = k;
            if (lat_b) memcpy(lat_b + (size_t)b * tk.C * tk.K, tk.data + (size_t)k * tk.C * tk.K, (size_t)tk.C * tk.K * sizeof(float));
            else for (j = 0; j < (size_t)tk.K; j++) ids_b[(size_t)b * tk.K + j] = (int32_t)tk.data[(size_t)k * tk.K + j];
            if (tk.labels) y_b[b] = tk.labels[k];
            if (text_b) {
                memcpy(text_b + (size_t)b * tk.L * tk.D, tk.text + (size_t)k * tk.L * tk.D, (size_t)tk.L * tk.D * sizeof(float));
                memcpy(mask_b + (size_t)b * tk.L, tk.mask + (size_t)k * tk.L, (size_t)tk.L);
            }
        }
        if (g.kind == GEN_MASKGIT && !y_b) {   /* one class: every image 0 */
            y_b = (int32_t *)ex_malloc((size_t)tc.batch * sizeof(int32_t));
            memset(y_b, 0, (size_t)tc.batch * sizeof(int32_t));
        }
        tx.emb = text_b; tx.mask = mask_b; tx.L = tk.L; tx.dim = tk.D;
        status = textok_gen_trainer_step(t, lat_b, ids_b, (g.kind == GEN_DIT && !g.dit.num_classes) ? NULL : y_b,
                                         text_b ? &tx : NULL, &s);
        if (status != TEXTOK_OK) {
            char why[600];
            snprintf(why, sizeof why, "%s", textok_last_error());
            fclose(logf);
            if (last_ckpt >= 0) ex_die("training stopped: %s\n  the last checkpoint, step %d, is kept: %s", why, last_ckpt, ckpt_path);
            ex_die("training stopped: %s\n  no checkpoint was written by this run", why);
        }
        step = s.step;
        elapsed = ex_now() - t_start;
        if (done == 0 || step % log_every == 0 || step == steps) {
            log_row(logf, log_path, &s, elapsed);
            progress_line(&s, steps, g.kind, (done + 1) / (elapsed > 0 ? elapsed : 1e-9));
        }
        if (grid_every > 0 && step % grid_every == 0) {
            write_samples(out, step, dit, mg, tok, &tk, grid_n, grid_steps, seed + 3);
            last_grid = step;
        }
        if (ckpt_every > 0 && step % ckpt_every == 0) {
            save_checkpoint(t, ckpt_path);
            last_ckpt = step;
        }
    }
    fclose(logf);

    final_step = textok_gen_trainer_steps_done(t);
    if (ex_stop_signal && final_step < steps) {
        const char *name = ex_stop_signal == SIGINT ? "SIGINT" : "SIGTERM";
        if (done == 0) printf("%s: %s before the first step: nothing saved\n", ex_prog, name);
        else {
            if (last_ckpt != final_step) save_checkpoint(t, ckpt_path);
            printf("%s: %s: stopped after step %d; checkpoint %s (continue with --resume %s)\n", ex_prog, name, final_step,
                   ckpt_path, ckpt_path);
        }
    } else {
        if (done > 0 && last_ckpt != final_step) save_checkpoint(t, ckpt_path);
        if (done > 0 && grid_every > 0 && last_grid != final_step)
            write_samples(out, final_step, dit, mg, tok, &tk, grid_n, grid_steps, seed + 3);
        if (textok_gen_trainer_save_model(t, model_path, tc.ema_decay > 0) != TEXTOK_OK)
            ex_die("cannot write '%s': %s", model_path, textok_last_error());
        printf("%s: done, %d steps (%d in this run, %.1f s): %s (%s weights), %s\n", ex_prog, final_step, done,
               ex_now() - t_start, model_path, tc.ema_decay > 0 ? "EMA" : "raw", ckpt_path);
    }

    textok_gen_trainer_free(t);
    textok_dit_free(dit);
    textok_maskgit_free(mg);
    textok_titok_free(tok);
    for (i = 0; i < ds.n; i++) { free(ds.names[i]); if (ds.captions) free(ds.captions[i]); }
    free(ds.names); free(ds.captions); free(ds.pixels); free(labels);
    free(tk.data); free(tk.labels); free(tk.text); free(tk.mask);
    free(picked); free(lat_b); free(ids_b); free(y_b); free(text_b); free(mask_b);
    free(ckpt_path); free(log_path); free(model_path); free(tk_path);
    return 0;
}
