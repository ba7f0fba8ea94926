/* generate: sample images with a generator (DiT or MaskGIT) and decode them with a tokenizer.

     build/generate --tokenizer W --generator G (--class K[,K...] | --caption TEXT --text-encoder T5 --spm
                    tokenizer.json | --text-emb E.npy) [--steps S] [--cfg s] [--seed n] [-n N]
                    --out grid.png [--out-latents F.npy] [sampler flags] [--threads N]
     build/generate --generator G --forward IN.safetensors --out OUT.npy [--cfg s] [--threads N]

   G is a textok-layout generator file (build/convert reads the official DiT and TiTok generator
   checkpoints; build/train_generator writes new ones); its kind comes from its metadata
   ("textok.model" = "dit" or "maskgit"). W is the tokenizer whose token space G generates in:
     MaskGIT  textok_maskgit_generate -> (N, L) ids -> textok_titok_decode_tokens. W must be a VQ
              tokenizer with codebook_size = G's codebook_size and K = G's seq_len.
     DiT      textok_dit_generate -> (N, C, 1, K) latents -> textok_titok_decode_latents. G must
              run over 1D tokens (seq_1d) with in_channels = W's token_size and input_size = W's K.
   A mismatch is refused, naming both configs. The official DiT-XL/2 runs over 2D SD-VAE latents,
   whose decoder textok does not have: run it without --tokenizer and with --out-latents only.
   Conditioning: --class K (a comma list gives one class per sample; N samples cycle through it)
   for class-conditional generators; a caption for DiT-T2I (the same T5 embeddings also go to a
   tokenizer that reads text in its decoder). An unconditional DiT takes neither.
   Samples: -n N (default: as many as classes listed, else 1), in one batch, laid out in a grid
   PNG (clamped to [0,1], truncated to 8 bits as the official demos). --out-latents writes the raw
   sampled latents (DiT: float32 (N, C, H, W), divided by latent_scale) or ids (MaskGIT: (N, L)
   as float32 values).
   Sampling: DiT --steps (default 250, DDPM with DiT's respacing) or --ddim [--eta E], --cfg
   (default 4.0, 1 = no guidance). MaskGIT: the published settings for its seq_len (textok_maskgit_
   sample_preset: 32 -> L-32, 64 -> B-64, 128 -> S-128, any other -> L-32; --maskgit-preset NAME
   picks one, "demo" included), then --steps, --cfg (guidance scale), --temperature,
   --guidance-decay constant|linear|power-cosine, --guidance-pow, --anneal 0|1 override it.
   Deterministic: the same flags and --seed give byte-identical outputs at any thread count.
   --forward runs the network once on fixed inputs (for checks against a reference): IN holds DiT
   "x" (B,C,H,W), "t" (B), "y" (B) [, "text" (B,L,D), "mask" (B,L)] or MaskGIT "ids" (B,L),
   "classes" (B) (integers stored as float values); OUT.npy gets DiT.forward's output (with --cfg:
   forward_with_cfg's) or the MaskGIT logits (B, L, V).
   Errors: bad flags, a class out of range, steps <= 0, a guidance scale that is not a finite
   number >= 0: exit 2; unreadable or mismatched files: exit 1; no output is left behind. */
#define _POSIX_C_SOURCE 200809L   /* clock_gettime, isatty */
#define TEXTOK_IMPLEMENTATION
#include "textok.h"
#include "common.h"
#include <limits.h>
#include <time.h>
#include <unistd.h>

static const char *usage =
    "--tokenizer W --generator G (--class K[,K...] | --caption TEXT --text-encoder T5 --spm tokenizer.json | "
    "--text-emb E.npy) [--steps S] [--cfg s] [--seed n] [-n N] --out grid.png [--out-latents F.npy] "
    "[--ddim] [--eta E] [--maskgit-preset NAME] [--temperature T] [--guidance-decay D] [--guidance-pow P] "
    "[--anneal 0|1] [--threads N]\n"
    "       generate --generator G --forward IN.safetensors --out OUT.npy [--cfg s] [--threads N]";

enum { GEN_DIT, GEN_MASKGIT };

/* The kind of a generator file from its metadata; dies naming what it is otherwise. */
static int generator_kind(const char *path)
{
    textok_safetensors st;
    const char *kind;
    char what[64];
    if (textok_st_open(&st, path) != TEXTOK_OK) ex_die("cannot load generator '%s': %s", path, textok_last_error());
    kind = textok_st_meta(&st, "textok.model");
    snprintf(what, sizeof what, "%s", kind ? kind : "");
    textok_st_close(&st);
    if (!strcmp(what, "dit")) return GEN_DIT;
    if (!strcmp(what, "maskgit")) return GEN_MASKGIT;
    ex_die("'%s' is not a generator: its __metadata__ textok.model is %s%s%s (expected \"dit\" or \"maskgit\"; "
           "build/convert makes textok-layout files from the official DiT and TiTok generator checkpoints)",
           path, what[0] ? "\"" : "absent", what, what[0] ? "\"" : "");
}

static double wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int progress(int step, int total, void *user)
{
    (void)user;
    fprintf(stderr, "\r%s: step %d/%d", ex_prog, step, total);
    if (step == total) fputc('\n', stderr);
    return 0;
}

/* "K" or "K1,K2,...": each in [0, num_classes) */
static int parse_classes(const char *s, int num_classes, int32_t **out)
{
    int n = 1, i;
    const char *p;
    char *end;
    for (p = s; *p; p++) n += *p == ',';
    *out = (int32_t *)ex_malloc((size_t)n * sizeof(int32_t));
    for (i = 0, p = s; i < n; i++) {
        long v = strtol(p, &end, 10);
        if (end == p || (*end && *end != ',') || v < 0 || v >= num_classes)
            ex_usage(usage, "--class: '%s' is not a list of class ids in [0, %d) (the generator has %d classes)", s,
                     num_classes, num_classes);
        (*out)[i] = (int32_t)v;
        p = end + (*end == ',');
    }
    return n;
}

/* ---------------------------------------------------------------------------------------------
   --forward: the network on fixed inputs */

static float *read_input(const textok_safetensors *st, const char *path, const char *name, int ndim, int64_t *shape,
                         int required)
{
    const textok_st_tensor *t = textok_st_find(st, name);
    float *d;
    int i;
    if (!t) {
        if (required) ex_die("--forward '%s': no tensor '%s'", path, name);
        return NULL;
    }
    if (t->ndim != ndim) ex_die("--forward '%s': tensor '%s' has %d dims, expected %d", path, name, t->ndim, ndim);
    for (i = 0; i < ndim; i++) shape[i] = t->shape[i];
    d = (float *)ex_malloc(t->numel * sizeof(float));
    if (textok_st_read_f32(st, t, d, t->numel) != TEXTOK_OK) ex_die("%s", textok_last_error());
    return d;
}

static int32_t *to_ids(const float *v, size_t n, const char *path, const char *name)
{
    int32_t *r = (int32_t *)ex_malloc(n * sizeof(int32_t));
    size_t i;
    for (i = 0; i < n; i++) {
        if (!(v[i] >= 0 && v[i] < 2147483647.0f) || v[i] != (float)(int32_t)v[i])
            ex_die("--forward '%s': %s[%zu] = %g is not a non-negative integer", path, name, i, (double)v[i]);
        r[i] = (int32_t)v[i];
    }
    return r;
}

static int run_forward(const char *gen_path, int kind, const char *in_path, const char *out, const char *cfg_s,
                       textok_params *params)
{
    textok_safetensors st;
    int64_t sx[4], st_[4], sy[4], stx[4], sm[4];
    float *x, *tf, *yf = NULL, *tx = NULL, *mf = NULL, *res;
    int32_t *t = NULL, *y = NULL;
    int B, i, rc;
    if (textok_st_open(&st, in_path) != TEXTOK_OK) ex_die("cannot read --forward: %s", textok_last_error());
    if (kind == GEN_MASKGIT) {
        textok_maskgit *m = NULL;
        const textok_maskgit_config *c;
        int32_t *ids, *cls;
        float *idsf, *clsf;
        if (cfg_s) ex_usage(usage, "--cfg: MaskGIT's --forward has no guidance (the sampler applies it)");
        idsf = read_input(&st, in_path, "ids", 2, sx, 1);
        clsf = read_input(&st, in_path, "classes", 1, sy, 1);
        B = (int)sx[0];
        if (sy[0] != B) ex_die("--forward '%s': %d rows of ids, %d classes", in_path, B, (int)sy[0]);
        ids = to_ids(idsf, (size_t)B * sx[1], in_path, "ids");
        cls = to_ids(clsf, (size_t)B, in_path, "classes");
        params->max_batch = B;
        if (textok_maskgit_load(&m, gen_path, params) != TEXTOK_OK)
            ex_die("cannot load generator '%s': %s", gen_path, textok_last_error());
        c = textok_maskgit_get_config(m);
        if (sx[1] != c->seq_len) ex_die("--forward '%s': ids have %d columns, the generator takes %d tokens", in_path,
                                        (int)sx[1], c->seq_len);
        res = (float *)ex_malloc((size_t)B * c->seq_len * c->codebook_size * sizeof(float));
        if ((rc = textok_maskgit_forward(m, ids, cls, B, res)) != TEXTOK_OK)
            ex_die("MaskGIT forward: %s", textok_last_error());
        {
            const int64_t shape[3] = { B, c->seq_len, c->codebook_size };
            ex_write_npy(out, res, 3, shape);
        }
        printf("%s: MaskGIT forward, %d x %d ids -> %s (%d x %d x %d logits)\n", ex_prog, B, c->seq_len, out, B,
               c->seq_len, c->codebook_size);
        textok_maskgit_free(m);
        free(idsf); free(clsf); free(ids); free(cls); free(res);
    } else {
        textok_dit *m = NULL;
        const textok_dit_config *c;
        textok_text text;
        unsigned char *mask = NULL;
        double scale = 0;
        int Cout;
        size_t per;
        if (cfg_s) scale = ex_parse_num(cfg_s, "--cfg", 0, 1e6, 0, usage);
        x = read_input(&st, in_path, "x", 4, sx, 1);
        tf = read_input(&st, in_path, "t", 1, st_, 1);
        yf = read_input(&st, in_path, "y", 1, sy, 0);
        tx = read_input(&st, in_path, "text", 3, stx, 0);
        mf = read_input(&st, in_path, "mask", 2, sm, 0);
        B = (int)sx[0];
        if (st_[0] != B || (yf && sy[0] != B) || (tx && stx[0] != B) || (mf && (!tx || sm[0] != B || sm[1] != stx[1])))
            ex_die("--forward '%s': x, t, y, text and mask must have the same rows (and mask goes with text)", in_path);
        t = to_ids(tf, (size_t)B, in_path, "t");
        if (yf) y = to_ids(yf, (size_t)B, in_path, "y");
        if (mf) {
            mask = (unsigned char *)ex_malloc((size_t)B * stx[1]);
            for (i = 0; i < B * (int)stx[1]; i++) mask[i] = mf[i] != 0;
        }
        params->max_batch = cfg_s ? 2 * B : B;
        if (textok_dit_load(&m, gen_path, params) != TEXTOK_OK)
            ex_die("cannot load generator '%s': %s", gen_path, textok_last_error());
        c = textok_dit_get_config(m);
        Cout = c->learn_sigma ? 2 * c->in_channels : c->in_channels;
        per = (size_t)sx[2] * sx[3];
        if (sx[1] != c->in_channels)
            ex_die("--forward '%s': x has %d channels, the generator takes %d", in_path, (int)sx[1], c->in_channels);
        if (tx) { text.emb = tx; text.mask = mask; text.L = (int)stx[1]; text.dim = (int)stx[2]; }
        res = (float *)ex_malloc((size_t)B * Cout * per * sizeof(float));
        rc = cfg_s ? textok_dit_forward_cfg(m, x, t, y, tx ? &text : NULL, B, (float)scale, res)
                   : textok_dit_forward(m, x, t, y, tx ? &text : NULL, B, res);
        if (rc != TEXTOK_OK) ex_die("DiT forward: %s", textok_last_error());
        {
            const int64_t shape[4] = { B, Cout, sx[2], sx[3] };
            ex_write_npy(out, res, 4, shape);
        }
        printf("%s: DiT forward%s, x %d x %d x %d x %d -> %s (%d channels)\n", ex_prog, cfg_s ? " with CFG" : "", B,
               (int)sx[1], (int)sx[2], (int)sx[3], out, Cout);
        textok_dit_free(m);
        free(x); free(tf); free(yf); free(tx); free(mf); free(mask); free(t); free(y); free(res);
    }
    textok_st_close(&st);
    return 0;
}

/* ---------------------------------------------------------------------------------------------
   Text: one caption's token states (L, dim) from --text-emb or --caption through T5 */

static float *caption_states(const char *caption, const char *t5_path, const char *spm_path, int max_len,
                             const textok_params *params, int *L, int *dim)
{
    textok_spm *spm = NULL;
    textok_t5 *t5 = NULL;
    int32_t *ids = (int32_t *)ex_malloc((size_t)max_len * sizeof(int32_t));
    int n = 0, full = 0;
    float *emb;
    if (!caption[0]) ex_usage(usage, "--caption is empty: there is nothing to condition on");
    if (textok_spm_load(&spm, spm_path) != TEXTOK_OK) ex_die("cannot load --spm: %s", textok_last_error());
    if (textok_spm_encode(spm, caption, ids, max_len, &n, &full) != TEXTOK_OK)
        ex_die("cannot tokenize the caption: %s", textok_last_error());
    if (full > n) fprintf(stderr, "%s: note: the caption has %d tokens; the first %d are used (text_len)\n", ex_prog, full, n);
    if (textok_t5_load(&t5, t5_path, params) != TEXTOK_OK) ex_die("cannot load --text-encoder: %s", textok_last_error());
    *dim = textok_t5_get_config(t5)->d_model;
    emb = (float *)ex_malloc((size_t)n * *dim * sizeof(float));
    if (textok_t5_encode(t5, ids, NULL, 1, n, emb) != TEXTOK_OK)
        ex_die("cannot encode the caption with '%s': %s", t5_path, textok_last_error());
    *L = n;
    textok_t5_free(t5);
    textok_spm_free(spm);
    free(ids);
    return emb;
}

/* the (L, dim) caption repeated for N rows */
static float *repeat_rows(const float *emb, int L, int dim, int N)
{
    float *r = (float *)ex_malloc((size_t)N * L * dim * sizeof(float));
    int i;
    for (i = 0; i < N; i++) memcpy(r + (size_t)i * L * dim, emb, (size_t)L * dim * sizeof(float));
    return r;
}

static const char *describe_tokenizer(const textok_titok_config *c, char *buf, size_t size)
{
    if (c->quantize_mode == TEXTOK_QUANT_VQ)
        snprintf(buf, size, "VQ, %d tokens, codebook %d, token_size %d", c->num_latent_tokens, c->codebook_size,
                 c->token_size);
    else
        snprintf(buf, size, "%s, %d tokens of %d channels", c->quantize_mode == TEXTOK_QUANT_VAE ? "VAE" : "continuous",
                 c->num_latent_tokens, c->token_size);
    return buf;
}

int main(int argc, char **argv)
{
    const char *tok_path = NULL, *gen_path = NULL, *class_s = NULL, *caption = NULL, *t5_path = NULL, *spm_path = NULL;
    const char *text_emb = NULL, *steps_s = NULL, *cfg_s = NULL, *seed_s = NULL, *n_s = NULL, *out = NULL;
    const char *out_lat = NULL, *eta_s = NULL, *mg_preset = NULL, *temp_s = NULL, *decay_s = NULL, *pow_s = NULL;
    const char *anneal_s = NULL, *threads_s = NULL, *forward = NULL;
    ex_flag flags[] = {
        { "--tokenizer", &tok_path, 0 }, { "--generator", &gen_path, 1 }, { "--class", &class_s, 0 },
        { "--caption", &caption, 0 }, { "--text-encoder", &t5_path, 0 }, { "--spm", &spm_path, 0 },
        { "--text-emb", &text_emb, 0 }, { "--steps", &steps_s, 0 }, { "--cfg", &cfg_s, 0 }, { "--seed", &seed_s, 0 },
        { "-n", &n_s, 0 }, { "--out", &out, 0 }, { "--out-latents", &out_lat, 0 }, { "--eta", &eta_s, 0 },
        { "--maskgit-preset", &mg_preset, 0 }, { "--temperature", &temp_s, 0 }, { "--guidance-decay", &decay_s, 0 },
        { "--guidance-pow", &pow_s, 0 }, { "--anneal", &anneal_s, 0 }, { "--threads", &threads_s, 0 },
        { "--forward", &forward, 0 },
    };
    char **args = (char **)ex_malloc((size_t)(argc + 1) * sizeof(char *));
    textok_params params = textok_default_params();
    textok_titok *tok = NULL;
    const textok_titok_config *tc = NULL;
    textok_dit *dit = NULL;
    textok_maskgit *mg = NULL;
    textok_text gtext, ttext;
    const textok_text *gtp = NULL, *ttp = NULL;
    textok_rng rng;
    int32_t *classes = NULL, *y = NULL, *ids = NULL;
    float *cap = NULL, *cap_rows = NULL, *lat = NULL, *img = NULL;
    int nargs = 0, ddim = 0, i, kind, n_classes = 0, N, cap_L = 0, cap_dim = 0, rc, S = 0, num_classes = 0;
    int text_dim = 0, text_len = 0;
    uint64_t seed;
    double t0;
    char d1[160], d2[200];

    /* --ddim takes no value: take it out before the "--name VALUE" parser (skipping values) */
    for (i = 0; i < argc; i++) {
        if (i > 0 && !strcmp(argv[i], "--ddim")) { ddim = 1; continue; }
        args[nargs++] = argv[i];
        if (i > 0 && argv[i][0] == '-' && i + 1 < argc && strcmp(argv[i], "--help") && strcmp(argv[i], "-h"))
            args[nargs++] = argv[++i];
    }
    args[nargs] = NULL;
    ex_parse_flags(nargs, args, flags, (int)(sizeof flags / sizeof flags[0]), usage);
    params.n_threads = ex_parse_int(threads_s, "--threads", 0, 4096, 0, usage);
    kind = generator_kind(gen_path);

    if (forward) {
        if (!out) ex_usage(usage, "--forward needs --out OUT.npy");
        if (tok_path || class_s || caption || text_emb || steps_s || seed_s || n_s || out_lat || ddim)
            ex_usage(usage, "--forward takes only --generator, --out, --cfg and --threads (its inputs are in the file)");
        rc = run_forward(gen_path, kind, forward, out, cfg_s, &params);
        free(args);
        return rc;
    }

    /* flags that do not depend on the files */
    if (!out && !out_lat) ex_usage(usage, "--out grid.png (or --out-latents F.npy) is required");
    if (out && !tok_path) ex_usage(usage, "--out grid.png needs --tokenizer W to decode the samples (or write only --out-latents)");
    if (out && out_lat && !strcmp(out, out_lat)) ex_usage(usage, "--out and --out-latents are the same file '%s'", out);
    if (!t5_path != !spm_path) ex_usage(usage, "--text-encoder and --spm go together (the T5 encoder and its tokenizer)");
    if (caption && text_emb) ex_usage(usage, "--caption and --text-emb both give the text: pick one");
    if (caption && !t5_path) ex_usage(usage, "--caption needs --text-encoder T5.safetensors and --spm tokenizer.json");
    if (kind == GEN_MASKGIT && (ddim || eta_s))
        ex_usage(usage, "--ddim and --eta are DiT sampler flags; '%s' is a MaskGIT generator", gen_path);
    if (kind == GEN_DIT && (mg_preset || temp_s || decay_s || pow_s || anneal_s))
        ex_usage(usage, "--maskgit-preset, --temperature, --guidance-decay, --guidance-pow and --anneal are MaskGIT "
                 "sampler flags; '%s' is a DiT", gen_path);
    if (eta_s && !ddim) ex_usage(usage, "--eta goes with --ddim");
    seed = (uint64_t)ex_parse_int(seed_s, "--seed", 0, INT_MAX, 0, usage);
    N = ex_parse_int(n_s, "-n", 1, 4096, 1, usage);   /* checked now; the default comes with --class */
    params.max_batch = 2 * N;   /* the conditional and the unconditional pass of guidance together */

    /* the generator */
    if (kind == GEN_DIT) {
        if (textok_dit_load(&dit, gen_path, &params) != TEXTOK_OK)
            ex_die("cannot load generator '%s': %s", gen_path, textok_last_error());
        num_classes = textok_dit_get_config(dit)->num_classes;
        text_dim = textok_dit_get_config(dit)->text_dim;
        text_len = textok_dit_get_config(dit)->text_len;
    } else {
        if (textok_maskgit_load(&mg, gen_path, &params) != TEXTOK_OK)
            ex_die("cannot load generator '%s': %s", gen_path, textok_last_error());
        num_classes = textok_maskgit_get_config(mg)->num_classes;
    }
    if (num_classes > 0) {
        if (!class_s) ex_usage(usage, "'%s' is class-conditional (%d classes): give --class K", gen_path, num_classes);
        n_classes = parse_classes(class_s, num_classes, &classes);
    } else if (class_s) {
        ex_usage(usage, "--class: '%s' is not class-conditional (%s)", gen_path, text_dim ? "it takes a caption" : "unconditional");
    }
    if (text_dim && !caption && !text_emb)
        ex_usage(usage, "'%s' is text-conditioned (%d x %d caption embeddings): give --caption TEXT (with --text-encoder "
                 "and --spm) or --text-emb E.npy", gen_path, text_len, text_dim);
    if (!n_s && n_classes > 0) N = n_classes;

    /* the tokenizer, and whether its token space is the generator's */
    if (tok_path) {
        textok_params tp = params;
        tp.max_batch = N;
        if (textok_titok_load(&tok, tok_path, &tp) != TEXTOK_OK)
            ex_die("cannot load tokenizer '%s': %s", tok_path, textok_last_error());
        tc = textok_titok_get_config(tok);
        S = tc->image_size;
        describe_tokenizer(tc, d1, sizeof d1);
        if (kind == GEN_MASKGIT) {
            const textok_maskgit_config *c = textok_maskgit_get_config(mg);
            if (tc->quantize_mode != TEXTOK_QUANT_VQ || tc->codebook_size != c->codebook_size ||
                tc->num_latent_tokens != c->seq_len)
                ex_die("generator '%s' (MaskGIT over %d tokens of a %d-code codebook) does not match tokenizer '%s' (%s): "
                       "a MaskGIT generates a VQ tokenizer's ids, so its seq_len and codebook_size must be the "
                       "tokenizer's K and codebook_size", gen_path, c->seq_len, c->codebook_size, tok_path, d1);
        } else {
            const textok_dit_config *c = textok_dit_get_config(dit);
            if (!c->seq_1d)
                ex_die("generator '%s' is a DiT over 2D latents (%d x %d x %d, SD-VAE's space): tokenizer '%s' (%s) "
                       "cannot decode them; run without --tokenizer and with --out-latents only", gen_path,
                       c->in_channels, c->input_size, c->input_size, tok_path, d1);
            if (c->in_channels != tc->token_size || c->input_size != tc->num_latent_tokens)
                ex_die("generator '%s' (DiT over %d tokens of %d channels) does not match tokenizer '%s' (%s): the "
                       "DiT's input_size and in_channels must be the tokenizer's K and token_size", gen_path,
                       c->input_size, c->in_channels, tok_path, d1);
        }
    }

    /* text: for a DiT-T2I, and for a tokenizer that reads text in its decoder */
    if (caption || text_emb) {
        int want_dim = text_dim ? text_dim : (tc && tc->text_in_decoder ? tc->text_dim : 0);
        int want_len = text_dim ? text_len : (tc && tc->text_in_decoder ? tc->text_len : 0);
        if (!want_dim) {
            fprintf(stderr, "%s: note: neither the generator nor the tokenizer reads text; the caption is ignored\n", ex_prog);
        } else if (text_emb) {
            ex_load_text_emb_dims(text_emb, want_dim, want_len, text_dim ? "the generator" : "the tokenizer", &gtext);
            cap = (float *)gtext.emb;
            cap_L = gtext.L;
            cap_dim = gtext.dim;
        } else {
            cap = caption_states(caption, t5_path, spm_path, want_len, &params, &cap_L, &cap_dim);
            if (cap_dim != want_dim)
                ex_die("--text-encoder '%s' has width %d; %s takes text of width %d", t5_path, cap_dim,
                       text_dim ? "the generator" : "the tokenizer", want_dim);
        }
        if (cap) {
            cap_rows = repeat_rows(cap, cap_L, cap_dim, N);
            if (text_dim) {
                gtext.emb = cap_rows; gtext.mask = NULL; gtext.L = cap_L; gtext.dim = cap_dim;
                gtp = &gtext;
            }
            if (tc && tc->text_in_decoder) {
                if (cap_dim != tc->text_dim || cap_L > tc->text_len)
                    ex_die("tokenizer '%s' reads %d x %d text in its decoder; the caption gives %d x %d", tok_path,
                           tc->text_len, tc->text_dim, cap_L, cap_dim);
                ttext.emb = cap_rows; ttext.mask = NULL; ttext.L = cap_L; ttext.dim = cap_dim;
                ttp = &ttext;
            }
        }
    }
    if (tc && tc->text_in_decoder && !ttp && !tc->text_optional)
        ex_usage(usage, "tokenizer '%s' reads %d x %d text in its decoder: give --caption or --text-emb", tok_path,
                 tc->text_len, tc->text_dim);
    if (n_classes) {
        y = (int32_t *)ex_malloc((size_t)N * sizeof(int32_t));
        for (i = 0; i < N; i++) y[i] = classes[i % n_classes];
    }

    /* sample */
    textok_rng_seed(&rng, seed);
    t0 = wall();
    if (kind == GEN_DIT) {
        const textok_dit_config *c = textok_dit_get_config(dit);
        textok_dit_sample_config sc = textok_dit_sample_default();
        const int H = c->seq_1d ? 1 : c->input_size, W = c->input_size;
        sc.steps = ex_parse_int(steps_s, "--steps", 1, 1000, sc.steps, usage);
        sc.cfg_scale = (float)ex_parse_num(cfg_s, "--cfg", 0, 1e6, sc.cfg_scale, usage);
        sc.ddim = ddim;
        sc.eta = (float)ex_parse_num(eta_s, "--eta", 0, 1, 0.0, usage);
        if (!n_classes && !text_dim && sc.cfg_scale != 1.0f) {
            if (cfg_s) fprintf(stderr, "%s: note: an unconditional DiT has nothing to guide; --cfg %s is ignored\n", ex_prog, cfg_s);
            sc.cfg_scale = 1.0f;
        }
        if (isatty(2)) { sc.progress = progress; sc.progress_user = NULL; }
        lat = (float *)ex_malloc((size_t)N * c->in_channels * H * W * sizeof(float));
        snprintf(d2, sizeof d2, "DiT, %d %s steps%s, cfg %g, seed %lu", sc.steps, ddim ? "DDIM" : "DDPM",
                 ddim && sc.eta > 0 ? " (eta > 0)" : "", (double)sc.cfg_scale, (unsigned long)seed);
        if (textok_dit_generate(dit, &sc, y, gtp, N, &rng, lat) != TEXTOK_OK)
            ex_die("sampling failed: %s", textok_last_error());
        if (out_lat) {
            const int64_t shape[4] = { N, c->in_channels, H, W };
            ex_write_npy(out_lat, lat, 4, shape);
        }
        if (tok) {
            img = (float *)ex_malloc((size_t)N * 3 * S * S * sizeof(float));
            if (textok_titok_decode_latents(tok, lat, N, ttp, img) != TEXTOK_OK)
                ex_die("cannot decode the samples with '%s': %s", tok_path, textok_last_error());
        }
    } else {
        const textok_maskgit_config *c = textok_maskgit_get_config(mg);
        textok_maskgit_sample_config sc;
        const char *pname = mg_preset ? mg_preset : c->seq_len == 128 ? "S-128" : c->seq_len == 64 ? "B-64" : "L-32";
        if (textok_maskgit_sample_preset(&sc, pname) != TEXTOK_OK)
            ex_usage(usage, "--maskgit-preset: %s", textok_last_error());
        sc.steps = ex_parse_int(steps_s, "--steps", 1, 1000, sc.steps, usage);
        sc.guidance_scale = (float)ex_parse_num(cfg_s, "--cfg", 0, 1e6, sc.guidance_scale, usage);
        sc.temperature = (float)ex_parse_num(temp_s, "--temperature", 0, 1e6, sc.temperature, usage);
        sc.guidance_pow = (float)ex_parse_num(pow_s, "--guidance-pow", 0, 1e3, sc.guidance_pow, usage);
        sc.temperature_annealing = ex_parse_int(anneal_s, "--anneal", 0, 1, sc.temperature_annealing, usage);
        if (decay_s) {
            if (!strcmp(decay_s, "constant")) sc.guidance_decay = TEXTOK_GUIDANCE_CONSTANT;
            else if (!strcmp(decay_s, "linear")) sc.guidance_decay = TEXTOK_GUIDANCE_LINEAR;
            else if (!strcmp(decay_s, "power-cosine")) sc.guidance_decay = TEXTOK_GUIDANCE_POWER_COSINE;
            else ex_usage(usage, "--guidance-decay must be constant, linear or power-cosine, not '%s'", decay_s);
        }
        if (isatty(2)) { sc.progress = progress; sc.progress_user = NULL; }
        ids = (int32_t *)ex_malloc((size_t)N * c->seq_len * sizeof(int32_t));
        snprintf(d2, sizeof d2, "MaskGIT, %s settings: %d steps, guidance %g %s, temperature %g%s, seed %lu", pname,
                 sc.steps, (double)sc.guidance_scale,
                 sc.guidance_decay == TEXTOK_GUIDANCE_LINEAR ? "linear" : sc.guidance_decay == TEXTOK_GUIDANCE_CONSTANT
                 ? "constant" : "power-cosine", (double)sc.temperature, sc.temperature_annealing ? " annealed" : "",
                 (unsigned long)seed);
        if (textok_maskgit_generate(mg, &sc, y, N, &rng, ids) != TEXTOK_OK)
            ex_die("sampling failed: %s", textok_last_error());
        if (out_lat) {
            const int64_t shape[2] = { N, c->seq_len };
            float *f = (float *)ex_malloc((size_t)N * c->seq_len * sizeof(float));
            for (i = 0; i < N * c->seq_len; i++) f[i] = (float)ids[i];
            ex_write_npy(out_lat, f, 2, shape);
            free(f);
        }
        if (tok) {
            img = (float *)ex_malloc((size_t)N * 3 * S * S * sizeof(float));
            if (textok_titok_decode_tokens(tok, ids, N, ttp, img) != TEXTOK_OK)
                ex_die("cannot decode the samples with '%s': %s", tok_path, textok_last_error());
        }
    }
    if (out) ex_write_tiles(out, img, N, S, 0);
    printf("%s: %d sample%s (%s) in %.2f s%s%s%s%s\n", ex_prog, N, N == 1 ? "" : "s", d2, wall() - t0,
           out ? " -> " : "", out ? out : "", out_lat ? (out ? ", " : " -> ") : "", out_lat ? out_lat : "");

    textok_dit_free(dit);
    textok_maskgit_free(mg);
    textok_titok_free(tok);
    free(args); free(classes); free(y); free(ids); free(cap); free(cap_rows); free(lat); free(img);
    return 0;
}
