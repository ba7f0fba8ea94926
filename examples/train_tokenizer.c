/* train_tokenizer: train a TiTok tokenizer on a folder of images.

     build/train_tokenizer (--images DIR | --data FILE) --out DIR --steps N [--model SPEC | --init FILE] [options]
     build/train_tokenizer --images DIR --out DIR --steps N --resume DIR/ckpt.safetensors [options]
     build/train_tokenizer --resume CKPT --export MODEL.safetensors

   A small program over the training API of textok.h (textok_trainer_*); run it with --help for
   every flag. Each step draws --batch images uniformly at random (with replacement) from the
   folder, using the trainer's own RNG (textok_trainer_rng): the checkpoint carries that RNG, so a
   resumed run draws the same batches and ends bit for bit where an uninterrupted one would
   (given the same flags: the checkpoint holds the model config and the whole training state,
   not the loss weights or learning rates).

   Outputs, in --out DIR:
     ckpt.safetensors   the whole training state: every --ckpt-every steps, at the end, and after
                        the current step on SIGINT/SIGTERM (then exit 0). It is written to a temp
                        file and renamed, so a crash leaves the previous checkpoint or none.
     log.csv            one row per logged step; on resume the rows after the checkpoint's step
                        (from a run that died later) are dropped
     recon_<step>.png   that step's batch (top row) above its reconstructions (bottom row)
     model.safetensors  at the end: the weights (the EMA when one is kept) as a textok-layout
                        model file that build/tokenize and build/reconstruct read
   Errors: a message naming the culprit; exit 1 for bad input or a failure while training (a
   non-finite loss included: what was last saved stays as it is), 2 for a bad command line.

   Data: all images are read into memory as 8-bit RGB, 3*S*S bytes each (the ~3600 64x64 emoji
   take 44 MB; 10,000 256x256 photos 2 GB): there is no streaming, the limit is the memory. */
#define _POSIX_C_SOURCE 200809L   /* opendir, stat, mkdir, clock_gettime */
#define TEXTOK_IMPLEMENTATION
#define EX_TRAINING
#include "textok.h"
#include "common.h"
#include <dirent.h>
#include <limits.h>
#include <signal.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

/* Short form, printed after a command-line error; --help prints help_text. */
static const char *usage =
    "(--images DIR | --data FILE) --out DIR --steps N [--model SPEC | --init FILE] [--resume CKPT] [options]   (--help for all)";

/* in two parts: C99 compilers need only support string literals of up to 4095 characters */
static const char *const help_text[2] = {
    "usage: train_tokenizer (--images DIR | --data FILE) --out DIR --steps N [options]\n"
    "       train_tokenizer --resume CKPT --export MODEL.safetensors\n"
    "\n"
    "Trains a TiTok tokenizer on a folder of images. Writes into --out DIR:\n"
    "  ckpt.safetensors    the training state (every --ckpt-every steps, at the end, on SIGINT/SIGTERM)\n"
    "  log.csv             every loss, gradient norm and learning rate, one row per logged step\n"
    "  recon_<step>.png    that step's batch (top) above its reconstructions (bottom)\n"
    "  model.safetensors   at the end: the weights (EMA if kept) for build/tokenize, build/reconstruct\n"
    "\n"
    "Data:\n"
    "  --images DIR        .png .jpg .jpeg .bmp files, all image_size x image_size (not resized); an\n"
    "                      alpha channel is dropped, gray is copied to RGB (as build/tokenize does).\n"
    "                      All are held in memory, 3*S*S bytes each (3600 64x64 images: 44 MB)\n"
    "  --data FILE         a packed dataset (tools/get_emoji.sh): images and captions in one file;\n"
    "                      instead of --images and --captions\n"
    "  --split S           with --data: train (default), val or all\n"
    "  --captions FILE     lines 'filename<TAB>caption' naming files of --images (TiTok ignores them;\n"
    "                      TexTok reads each through --spm and --text-encoder, once, and caches it)\n"
    "  --text-encoder F    the frozen T5 encoder (build/convert --t5) for the captions\n"
    "  --spm F             its tokenizer.json (SentencePiece Unigram)\n"
    "  --text-dropout P    train each image without its caption with probability P; the model then\n"
    "                      records text_optional and runs without text too. Images without a caption\n"
    "                      need P > 0 (they always train without text)\n"
    "Model (default tiny_vq):\n"
    "  --model SPEC        NAME[,field=value...]. NAME: tiny_vq tiny_vae tiny_legacy (32x32), s128\n"
    "                      b64 l32 bl64_vq8k sl256_vq8k bl64_vae_c16 (256x256). Fields: those of\n"
    "                      textok_titok_config (image_size, patch_size, num_latent_tokens, token_size,\n"
    "                      codebook_size, enc_width, enc_heads, dec_layers, ...), quantize_mode=vq|vae,\n"
    "                      and width=, layers=, heads= for encoder and decoder together (width= also\n"
    "                      sets both MLPs to 4 x width). E.g. tiny_vq,image_size=64,patch_size=8\n"
    "                      TexTok: textok_tiny (32x32), textok_b128 (256x256, ViT-B/8, 128 tokens of\n"
    "                      8, KL); text=both|encoder|decoder|none (the paper's ablation), text_len=N\n"
    "                      (default 64 caption tokens), quantize_mode=vq|vae|none\n"
    "  --init FILE         start from the weights (and config) of a textok-layout model file\n"
    "  --init-std S        a fresh model's weight matrices: truncated normal of std S (default\n"
    "                      0.02, TiTok's), or fan_in: 1/sqrt(fan_in), which narrow models need\n"
    "                      (textok_titok_create_std)\n"
    "  --resume CKPT       continue from a checkpoint; the model config comes from it. Repeat the\n"
    "                      training flags of the run that wrote it for a bit-exact continuation\n"
    "  --export FILE       with --resume only: write the checkpoint's weights (EMA if kept) as a\n"
    "                      model file and stop\n",
    "Training (--preset first, then the flags override it):\n"
    "  --preset NAME       tiny (default), titok-stage2, tatitok, textok (textok_train_preset)\n"
    "  --steps N           train until N steps are done in all (with --resume: counting its steps)\n"
    "  --batch N           images per step\n"
    "  --lr X              peak learning rate (the discriminator's too)\n"
    "  --end-lr X          final learning rate (default: the preset's end/peak ratio times --lr)\n"
    "  --warmup N          linear warmup steps, then cosine decay\n"
    "  --schedule-steps N  length of the cosine schedule (default --steps)\n"
    "  --ema DECAY         weight EMA decay, 0 = none     --grad-clip X   0 = none\n"
    "  --seed N            model init, discriminator init, batch draws (default 1)\n"
    "  --threads N         CPU threads (default: all)\n"
    "Losses (weights):\n"
    "  --recon-l1          L1 reconstruction loss instead of L2 (takes no value)\n"
    "  --quantizer W       VQ codebook + commitment       --kl W   VAE KL\n"
    "  --perceptual W      LPIPS; needs --lpips FILE (a textok-layout LPIPS file). Without --lpips\n"
    "                      a preset's perceptual weight is turned off\n"
    "  --disc W            PatchGAN generator term       --disc-start N   first step with GAN\n"
    "  --disc-arch H,S,G,P discriminator hidden, stages, groups, pool (default 128,3,32,16, made for\n"
    "                      256x256; small images train much faster with e.g. 32,3,8,4)\n"
    "  --lecam W           LeCAM regulariser of the discriminator\n"
    "Output:\n"
    "  --out DIR           created if absent; a fresh run refuses a DIR that holds a checkpoint\n"
    "  --ckpt-every N      default 1000; 0 = only at the end and on a signal\n"
    "  --grid-every N      default 1000; 0 = none\n"
    "  --log-every N       progress line and CSV row every N steps (default 10; the first step always)\n"
    "SIGINT/SIGTERM: the checkpoint is saved after the current step and the program exits 0; a\n"
    "second one stops it at once (the last checkpoint written is intact).\n"
    "Exit status: 0 done (or interrupted by SIGINT/SIGTERM with the checkpoint saved), 1 bad input or\n"
    "a failure while training (a non-finite loss included; the last checkpoint is kept), 2 bad\n"
    "command line.\n"
};

/* ---------------------------------------------------------------------------------------------
   Model configs: --model NAME[,field=value...] */

typedef struct model_preset {
    const char *name;
    int S, P, K, C;             /* image_size, patch_size, num_latent_tokens, token_size */
    int ew, el, eh, dw, dl, dh; /* encoder / decoder width, layers, heads (MLP = 4 x width) */
    int vae, V, l2, legacy;     /* quantize_mode vae, codebook_size, use_l2_norm, is_legacy */
    int textok;                 /* arch textok, text in both stacks (text_dim/text_len: from the text) */
} model_preset;

/* tiny_*: the test models of tools/titok_ref.py; then the official configs/infer/TiTok yaml
   files; textok_*: TexTok (textok-paper.md 1.2: ViT-B/8 at 256, d = 8, KL), and a tiny one */
static const model_preset model_presets[] = {
    /* name            S   P    K   C    enc w  l   h   dec w  l   h   vae   V    l2 legacy textok */
    { "tiny_vq",      32,  8,   5,  8,    128,  1,  2,    64,  2,  1,  0,   32,  0, 0, 0 },
    { "tiny_vae",     32,  8,   6, 16,     64,  1,  1,   128,  1,  2,  1,    0,  0, 0, 0 },
    { "tiny_legacy",  32,  4,   8, 12,     64,  2,  1,    64,  2,  1,  0,   64,  1, 1, 0 },
    { "s128",        256, 16, 128, 12,    512,  8,  8,   512,  8,  8,  0, 4096,  1, 1, 0 },
    { "b64",         256, 16,  64, 12,    768, 12, 12,   768, 12, 12,  0, 4096,  1, 1, 0 },
    { "l32",         256, 16,  32, 12,   1024, 24, 16,  1024, 24, 16,  0, 4096,  1, 1, 0 },
    { "bl64_vq8k",   256, 16,  64, 64,    768, 12, 12,  1024, 24, 16,  0, 8192,  0, 0, 0 },
    { "sl256_vq8k",  256, 16, 256, 64,    512,  8,  8,  1024, 24, 16,  0, 8192,  0, 0, 0 },
    { "bl64_vae_c16",256, 16,  64, 16,    768, 12, 12,  1024, 24, 16,  1,    0,  0, 0, 0 },
    { "textok_tiny",  32,  8,   8,  8,     64,  2,  2,    64,  2,  2,  1,    0,  0, 0, 1 },
    { "textok_b128", 256,  8, 128,  8,    768, 12, 12,   768, 12, 12,  1,    0,  0, 0, 1 },
};
#define N_MODEL_PRESETS ((int)(sizeof model_presets / sizeof model_presets[0]))

typedef struct cfg_key { const char *key; size_t offset; } cfg_key;
#define CFG_KEY(f) { #f, offsetof(textok_titok_config, f) }
static const cfg_key cfg_keys[] = {
    CFG_KEY(image_size), CFG_KEY(patch_size), CFG_KEY(num_latent_tokens), CFG_KEY(token_size),
    CFG_KEY(enc_width), CFG_KEY(enc_layers), CFG_KEY(enc_heads), CFG_KEY(enc_mlp),
    CFG_KEY(dec_width), CFG_KEY(dec_layers), CFG_KEY(dec_heads), CFG_KEY(dec_mlp),
    CFG_KEY(codebook_size), CFG_KEY(use_l2_norm), CFG_KEY(is_legacy),
    CFG_KEY(pixel_codebook_size), CFG_KEY(pixel_z_channels), CFG_KEY(pixel_hidden),
    CFG_KEY(pixel_res_blocks), CFG_KEY(pixel_groups),
    CFG_KEY(text_dim), CFG_KEY(text_len), CFG_KEY(text_in_encoder), CFG_KEY(text_in_decoder), CFG_KEY(text_optional),
};
#undef CFG_KEY

/* text_dim: the text encoder's width, for models that read text (0 when there is none) */
static void model_config(const char *spec, int text_dim, textok_titok_config *c)
{
    static const int mult_official[5] = { 1, 1, 2, 2, 4 }, mult_tiny[3] = { 1, 1, 2 };
    const model_preset *mp = NULL;
    char *s = ex_strdup(spec), *item, *next;
    int i;
    next = strchr(s, ',');
    if (next) *next++ = 0;
    for (i = 0; i < N_MODEL_PRESETS && !mp; i++)
        if (!strcmp(s, model_presets[i].name)) mp = &model_presets[i];
    if (!mp) {
        char names[256] = "";
        for (i = 0; i < N_MODEL_PRESETS; i++)
            snprintf(names + strlen(names), sizeof names - strlen(names), " %s", model_presets[i].name);
        ex_usage(usage, "--model: unknown model '%s' (one of:%s)", s, names);
    }
    memset(c, 0, sizeof *c);
    c->image_size = mp->S; c->patch_size = mp->P; c->num_latent_tokens = mp->K; c->token_size = mp->C;
    c->enc_width = mp->ew; c->enc_layers = mp->el; c->enc_heads = mp->eh; c->enc_mlp = 4 * mp->ew;
    c->dec_width = mp->dw; c->dec_layers = mp->dl; c->dec_heads = mp->dh; c->dec_mlp = 4 * mp->dw;
    c->quantize_mode = mp->vae ? TEXTOK_QUANT_VAE : TEXTOK_QUANT_VQ;
    c->codebook_size = mp->V; c->use_l2_norm = mp->l2; c->is_legacy = mp->legacy;
    if (mp->textok) { c->arch = TEXTOK_ARCH_TEXTOK; c->text_in_encoder = c->text_in_decoder = 1; }
    if (mp->legacy) {   /* the MaskGIT-VQGAN pixel decoder (official), or its tiny test version */
        const int tiny = mp->S == 32;
        c->pixel_codebook_size = tiny ? 64 : 1024; c->pixel_z_channels = tiny ? 32 : 256;
        c->pixel_hidden = tiny ? 32 : 128; c->pixel_num_levels = tiny ? 3 : 5;
        for (i = 0; i < c->pixel_num_levels; i++) c->pixel_channel_mult[i] = tiny ? mult_tiny[i] : mult_official[i];
        c->pixel_res_blocks = 2; c->pixel_groups = 32;
    }
    /* overrides, applied left to right */
    for (item = next; item; item = next) {
        char *eq = strchr(item, '='), *end;
        long v;
        next = strchr(item, ',');
        if (next) *next++ = 0;
        if (!eq) ex_usage(usage, "--model: '%s' is not field=value", item);
        *eq = 0;
        if (!strcmp(item, "quantize_mode")) {
            if (!strcmp(eq + 1, "vq")) c->quantize_mode = TEXTOK_QUANT_VQ;
            else if (!strcmp(eq + 1, "vae")) c->quantize_mode = TEXTOK_QUANT_VAE;
            else if (!strcmp(eq + 1, "none")) c->quantize_mode = TEXTOK_QUANT_NONE;
            else ex_usage(usage, "--model: quantize_mode must be vq, vae or none, not '%s'", eq + 1);
            continue;
        }
        if (!strcmp(item, "text")) {   /* where the text enters: the paper's ablation */
            if (!strcmp(eq + 1, "both")) c->text_in_encoder = c->text_in_decoder = 1;
            else if (!strcmp(eq + 1, "encoder")) { c->text_in_encoder = 1; c->text_in_decoder = 0; }
            else if (!strcmp(eq + 1, "decoder")) { c->text_in_encoder = 0; c->text_in_decoder = 1; }
            else if (!strcmp(eq + 1, "none")) c->text_in_encoder = c->text_in_decoder = 0;
            else ex_usage(usage, "--model: text must be both, encoder, decoder or none, not '%s'", eq + 1);
            continue;
        }
        v = strtol(eq + 1, &end, 10);
        if (end == eq + 1 || *end || v < 0 || v > 1000000)
            ex_usage(usage, "--model: %s must be an integer in [0, 1000000], not '%s'", item, eq + 1);
        if (!strcmp(item, "width")) {
            c->enc_width = c->dec_width = (int)v; c->enc_mlp = c->dec_mlp = 4 * (int)v;
        } else if (!strcmp(item, "layers")) {
            c->enc_layers = c->dec_layers = (int)v;
        } else if (!strcmp(item, "heads")) {
            c->enc_heads = c->dec_heads = (int)v;
        } else {
            for (i = 0; i < (int)(sizeof cfg_keys / sizeof cfg_keys[0]) && strcmp(item, cfg_keys[i].key); i++) {}
            if (i == (int)(sizeof cfg_keys / sizeof cfg_keys[0]))
                ex_usage(usage, "--model: unknown field '%s' (textok_titok_config fields, quantize_mode, width, layers, heads)", item);
            *(int *)((char *)c + cfg_keys[i].offset) = (int)v;
        }
    }
    /* Fields that the mode makes meaningless are zero, as in files written by tools/convert: a
       checkpoint's config is compared field by field on resume. */
    if (c->quantize_mode != TEXTOK_QUANT_VQ) { c->codebook_size = 0; c->use_l2_norm = 0; }
    if (!c->text_in_encoder && !c->text_in_decoder) c->text_dim = c->text_len = c->text_optional = 0;
    else {
        if (!c->text_dim) c->text_dim = text_dim;
        if (!c->text_len) c->text_len = 64;   /* caption tokens, EOS included; longer ones are truncated */
        if (!c->text_dim)
            ex_usage(usage, "--model %s reads text: give --text-encoder T5.safetensors (its width is the text width)", spec);
    }
    if (!c->is_legacy) {
        c->pixel_codebook_size = c->pixel_z_channels = c->pixel_hidden = c->pixel_num_levels = 0;
        c->pixel_res_blocks = c->pixel_groups = 0;
        memset(c->pixel_channel_mult, 0, sizeof c->pixel_channel_mult);
    }
    if (textok_titok_config_check(c) != TEXTOK_OK) ex_usage(usage, "--model %s: %s", spec, textok_last_error());
    free(s);
}

/* ---------------------------------------------------------------------------------------------
   Checkpoints: what --resume needs to know before building the trainer */

typedef struct ckpt_info {
    textok_titok_config cfg;
    int step, has_ema, has_disc;
} ckpt_info;

static void probe_checkpoint(const char *path, ckpt_info *ci)
{
    textok_safetensors st;
    const char *kind, *step;
    int i;
    if (textok_st_open(&st, path) != TEXTOK_OK) ex_die("cannot resume from '%s': %s", path, textok_last_error());
    kind = textok_st_meta(&st, "textok.model");
    if (!kind || strcmp(kind, "titok-trainer")) {
        char what[64];
        snprintf(what, sizeof what, "%s", kind ? kind : "absent");   /* the file is closed before the message */
        textok_st_close(&st);
        ex_die("cannot resume from '%s': not a training checkpoint (textok.model is '%s'; --resume takes the "
               "ckpt.safetensors of an earlier run, --init a model file)", path, what);
    }
    if (textok_titok_config_from_meta(&ci->cfg, &st) != TEXTOK_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", textok_last_error());
        textok_st_close(&st);
        ex_die("cannot resume from '%s': %s", path, msg);
    }
    step = textok_st_meta(&st, "train.step");
    ci->step = step ? atoi(step) : -1;
    ci->has_ema = 0;
    for (i = 0; i < st.n_tensors && !ci->has_ema; i++) ci->has_ema = !strncmp(st.tensors[i].name, "ema.", 4);
    ci->has_disc = textok_st_meta(&st, "disc.hidden") != NULL;
    textok_st_close(&st);
    if (ci->step < 0) ex_die("cannot resume from '%s': no valid train.step in its metadata", path);
}

/* ---------------------------------------------------------------------------------------------
   Loss networks (textok.h section 12): the LPIPS weights come from a file and stay frozen; the
   discriminator starts from seed (PyTorch's default init) and its state is in the checkpoint. */

static void make_loss_nets(const textok_train_config *tc, const char *lpips_path, const int arch[4], int S,
                           const textok_params *p, uint64_t seed, textok_lpips **lp, textok_disc **disc)
{
    *lp = NULL;
    *disc = NULL;
    if (tc->perceptual_weight > 0 && textok_lpips_load(lp, lpips_path, p) != TEXTOK_OK)
        ex_die("cannot load the LPIPS network '%s': %s", lpips_path, textok_last_error());
    if (tc->disc_weight > 0) {
        textok_disc_config dc = textok_disc_default_config();
        if (arch[0]) { dc.hidden = arch[0]; dc.stages = arch[1]; dc.groups = arch[2]; dc.pool = arch[3]; }
        if (textok_disc_create(disc, &dc, S, p, seed) != TEXTOK_OK)
            ex_die("cannot create the discriminator (--disc-arch %d,%d,%d,%d) for %dx%d images: %s",
                   dc.hidden, dc.stages, dc.groups, dc.pool, S, S, textok_last_error());
    }
}

/* ---------------------------------------------------------------------------------------------
   Outputs */


/* recon_<step>.png: up to 8 inputs on the top row, their reconstructions below, 2-pixel white
   gutters between and around the tiles. */
static void write_grid(const char *dir, int step, const float *inputs, const float *recon, int B, int S)
{
    const int g = 2, n = B < 8 ? B : 8, W = n * (S + g) + g, H = 2 * (S + g) + g;
    float *img = (float *)ex_malloc((size_t)3 * H * W * sizeof(float));
    char name[64], *path;
    int row, b, c, y, x;
    for (c = 0; c < 3 * H * W; c++) img[c] = 1.0f;
    for (row = 0; row < 2; row++)
        for (b = 0; b < n; b++) {
            const float *src = (row ? recon : inputs) + (size_t)b * 3 * S * S;
            for (c = 0; c < 3; c++)
                for (y = 0; y < S; y++)
                    for (x = 0; x < S; x++)
                        img[((size_t)c * H + g + row * (S + g) + y) * W + g + b * (S + g) + x] = src[((size_t)c * S + y) * S + x];
        }
    snprintf(name, sizeof name, "recon_%d.png", step);
    path = ex_path_join(dir, name);
    ex_write_png_hw(path, img, H, W);
    free(path); free(img);
}

static const char *csv_header =
    "step,recon,perceptual,quantizer,kl,gen,total,hinge,lecam,d_total,grad_norm,disc_grad_norm,"
    "lr,disc_lr,logits_real,logits_fake,gan_on,elapsed_s\n";

static void log_row(FILE *f, const char *path, const textok_train_stats *s, double elapsed)
{
    fprintf(f, "%d,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g,%d,%.3f\n",
            s->step, s->recon, s->perceptual, s->quantizer, s->kl, s->gen, s->total, s->hinge, s->lecam,
            s->d_total, s->grad_norm, s->disc_grad_norm, s->lr, s->disc_lr, s->logits_real, s->logits_fake,
            s->gan_on, elapsed);
    /* flushed every row: a killed run keeps its log */
    if (fflush(f) != 0 || ferror(f)) ex_die("cannot write '%s'", path);
}

static void progress_line(const textok_train_stats *s, int steps, int is_vq, double rate)
{
    double eta = rate > 0 ? (steps - s->step) / rate : 0;
    long e = (long)(eta + 0.5);
    printf("step %d/%d  recon %.5f", s->step, steps, s->recon);
    if (s->perceptual != 0) printf("  lpips %.4f", s->perceptual);
    if (is_vq) printf("  quant %.5f", s->quantizer);
    else printf("  kl %.4g", s->kl);
    if (s->gan_on) printf("  gen %.4f  disc %.4f  lecam %.3g", s->gen, s->hinge, s->lecam);
    printf("  total %.5f  |g| %.3g  lr %.3g  %.2f it/s  ETA %ld:%02ld:%02ld\n", s->total, s->grad_norm, s->lr,
           rate, e / 3600, e / 60 % 60, e % 60);
    fflush(stdout);
}

static void save_checkpoint(textok_trainer *t, const char *path)
{
    if (textok_trainer_save(t, path) != TEXTOK_OK) ex_die("cannot save the checkpoint '%s': %s", path, textok_last_error());
}

/* --resume CKPT --export FILE: the checkpoint's weights as a model file (EMA when kept). */
static int export_model(const char *ckpt, const char *out, const textok_params *p0)
{
    textok_params p = *p0;
    textok_train_config tc;
    textok_titok *m = NULL;
    textok_trainer *t = NULL;
    ckpt_info ci;
    probe_checkpoint(ckpt, &ci);
    p.max_batch = 1;
    textok_train_preset(&tc, "tiny");
    tc.batch = 1; tc.perceptual_weight = 0; tc.disc_weight = 0;
    tc.ema_decay = ci.has_ema ? 0.999 : 0.0;   /* any decay > 0 makes the trainer load the EMA */
    if (textok_titok_create(&m, &ci.cfg, &p, 0) != TEXTOK_OK || textok_trainer_create(&t, m, NULL, NULL, &tc, 0) != TEXTOK_OK)
        ex_die("cannot build a trainer for '%s': %s", ckpt, textok_last_error());
    if (textok_trainer_load(t, ckpt) != TEXTOK_OK) ex_die("cannot resume from '%s': %s", ckpt, textok_last_error());
    if (textok_trainer_save_model(t, out, ci.has_ema) != TEXTOK_OK) ex_die("cannot write '%s': %s", out, textok_last_error());
    printf("%s: step %d of %s -> %s (%s weights)\n", ex_prog, ci.step, ckpt, out, ci.has_ema ? "EMA" : "raw");
    textok_trainer_free(t);
    textok_titok_free(m);
    return 0;
}

static void text_check(ex_text_source *ts, ex_dataset *ds, const textok_titok_config *cfg, const char *captions,
                       const char *t5_path, float dropout)
{
    int i, missing = 0;
    ts->on = cfg->text_in_encoder || cfg->text_in_decoder;
    if (!ts->on) {
        if (t5_path) fprintf(stderr, "%s: note: this model reads no text; --text-encoder and --spm are not used\n", ex_prog);
        if (dropout > 0) ex_usage(usage, "--text-dropout: this model reads no text");
        return;
    }
    if (!t5_path) ex_usage(usage, "this model reads text (%d x %d): give --captions FILE --text-encoder T5 --spm tokenizer.json",
                           cfg->text_len, cfg->text_dim);
    if (!captions) ex_usage(usage, "this model reads text: give --captions FILE (or --data FILE, which holds captions)");
    if (textok_t5_get_config(ts->t5)->d_model != cfg->text_dim)
        ex_die("--text-encoder: its width is %d, the model's text width is %d (text_dim)", textok_t5_get_config(ts->t5)->d_model,
               cfg->text_dim);
    for (i = 0; i < ds->n; i++) missing += !ds->captions[i];
    if (missing && dropout == 0)
        ex_die("%d of %d images have no caption; caption them or train with --text-dropout P > 0 (then they train without text)",
               missing, ds->n);
    ts->max_len = cfg->text_len;
    ts->dim = cfg->text_dim;
    ts->emb = (float **)calloc((size_t)ds->n, sizeof(float *));
    ts->len = (int *)calloc((size_t)ds->n, sizeof(int));
    if (!ts->emb || !ts->len) ex_die("out of memory");
}

/* ---------------------------------------------------------------------------------------------
   main */
int main(int argc, char **argv)
{
    const char *images = NULL, *captions = NULL, *model_spec = NULL, *init = NULL, *resume = NULL, *export_path = NULL;
    const char *preset = NULL, *batch_s = NULL, *steps_s = NULL, *lr_s = NULL, *end_lr_s = NULL, *warmup_s = NULL;
    const char *sched_s = NULL, *ema_s = NULL, *clip_s = NULL, *seed_s = NULL, *threads_s = NULL;
    const char *perc_s = NULL, *lpips_path = NULL, *disc_s = NULL, *disc_start_s = NULL, *arch_s = NULL;
    const char *lecam_s = NULL, *kl_s = NULL, *quant_s = NULL, *out = NULL, *ckpt_s = NULL, *grid_s = NULL, *logk_s = NULL;
    const char *t5_path = NULL, *spm_path = NULL, *tdrop_s = NULL, *data = NULL, *split = NULL, *init_std_s = NULL;
    ex_flag flags[] = {
        { "--images", &images, 0 }, { "--data", &data, 0 }, { "--split", &split, 0 }, { "--captions", &captions, 0 }, { "--model", &model_spec, 0 },
        { "--init", &init, 0 }, { "--resume", &resume, 0 }, { "--export", &export_path, 0 },
        { "--preset", &preset, 0 }, { "--batch", &batch_s, 0 }, { "--steps", &steps_s, 0 },
        { "--lr", &lr_s, 0 }, { "--end-lr", &end_lr_s, 0 }, { "--warmup", &warmup_s, 0 },
        { "--schedule-steps", &sched_s, 0 }, { "--ema", &ema_s, 0 }, { "--grad-clip", &clip_s, 0 },
        { "--seed", &seed_s, 0 }, { "--threads", &threads_s, 0 }, { "--perceptual", &perc_s, 0 },
        { "--lpips", &lpips_path, 0 }, { "--disc", &disc_s, 0 }, { "--disc-start", &disc_start_s, 0 },
        { "--disc-arch", &arch_s, 0 }, { "--lecam", &lecam_s, 0 }, { "--kl", &kl_s, 0 },
        { "--quantizer", &quant_s, 0 }, { "--out", &out, 0 }, { "--ckpt-every", &ckpt_s, 0 },
        { "--grid-every", &grid_s, 0 }, { "--log-every", &logk_s, 0 }, { "--text-encoder", &t5_path, 0 },
        { "--spm", &spm_path, 0 }, { "--text-dropout", &tdrop_s, 0 }, { "--init-std", &init_std_s, 0 },
    };
    ex_text_source ts;
    textok_text tx;
    int *picked;
    textok_params params = textok_default_params();
    textok_train_config tc;
    textok_titok_config cfg;
    textok_titok *model = NULL;
    textok_lpips *lpips = NULL;
    textok_disc *disc = NULL;
    textok_trainer *t = NULL;
    textok_train_stats s;
    ckpt_info ci;
    ex_dataset ds;
    char **args = (char **)ex_malloc((size_t)(argc + 1) * sizeof(char *));
    char *ckpt_path, *log_path, *model_path;
    float *batch, *recon;
    FILE *logf;
    int nargs = 0, recon_l1 = 0, arch[4] = { 0, 0, 0, 0 }, i, b, steps, sched, ckpt_every, grid_every, log_every;
    int step0, done, final_step, last_ckpt = -1, last_grid = -1, is_vq, status;
    float init_std = 0.02f;
    uint64_t seed;
    double lr_ratio, t_start;

    /* --help prints the long text; --recon-l1 is the one flag without a value: take both out
       before the "--name VALUE" parser of common.h (skipping values, which may look like flags) */
    for (i = 0; i < argc; i++) {
        if (i > 0 && (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))) {
            fputs(help_text[0], stdout);
            fputs(help_text[1], stdout);
            free(args);
            return 0;
        }
        if (i > 0 && !strcmp(argv[i], "--recon-l1")) { recon_l1 = 1; continue; }
        args[nargs++] = argv[i];
        if (i > 0 && !strncmp(argv[i], "--", 2) && i + 1 < argc) args[nargs++] = argv[++i];
    }
    args[nargs] = NULL;
    ex_parse_flags(nargs, args, flags, (int)(sizeof flags / sizeof flags[0]), usage);
    params.n_threads = ex_parse_int(threads_s, "--threads", 0, 4096, 0, usage);
    if (export_path) {
        if (!resume) ex_usage(usage, "--export needs --resume CKPT (the checkpoint to export)");
        status = export_model(resume, export_path, &params);
        free(args);
        return status;
    }
    if (!images == !data) ex_usage(usage, "give --images DIR or --data FILE (one of them)");
    if (split && !data) ex_usage(usage, "--split needs --data");
    if (data && captions) ex_usage(usage, "--data holds the captions; --captions is for --images");
    if (!out) ex_usage(usage, "--out is required");
    if (init_std_s) {
        if (resume || init) ex_usage(usage, "--init-std applies to a fresh model (not --resume or --init)");
        init_std = !strcmp(init_std_s, "fan_in") ? 0.0f : (float)ex_parse_num(init_std_s, "--init-std", 1e-6, 10, 0.02, usage);
    }
    if (!steps_s) ex_usage(usage, "--steps is required");
    if (model_spec && init) ex_usage(usage, "--model and --init both give the model: pick one");

    /* the training config: the preset, then each flag given */
    if (textok_train_preset(&tc, preset ? preset : "tiny") != TEXTOK_OK) ex_usage(usage, "--preset: %s", textok_last_error());
    lr_ratio = tc.lr > 0 ? tc.end_lr / tc.lr : 0.0;
    steps = ex_parse_int(steps_s, "--steps", 1, INT_MAX - 1, 0, usage);
    sched = ex_parse_int(sched_s, "--schedule-steps", 1, INT_MAX - 1, steps, usage);
    tc.total_steps = sched;
    tc.batch = ex_parse_int(batch_s, "--batch", 1, 4096, tc.batch, usage);
    tc.lr = tc.disc_lr = ex_parse_num(lr_s, "--lr", 0, 1e30, tc.lr, usage);
    tc.end_lr = tc.disc_end_lr = ex_parse_num(end_lr_s, "--end-lr", 0, 1e30, lr_s ? tc.lr * lr_ratio : tc.end_lr, usage);
    tc.warmup_steps = ex_parse_int(warmup_s, "--warmup", 0, INT_MAX - 1, tc.warmup_steps, usage);
    tc.ema_decay = ex_parse_num(ema_s, "--ema", 0, 0.999999, tc.ema_decay, usage);
    tc.grad_clip = (float)ex_parse_num(clip_s, "--grad-clip", 0, 1e30, tc.grad_clip, usage);
    tc.recon_l1 = recon_l1;
    tc.quantizer_weight = (float)ex_parse_num(quant_s, "--quantizer", 0, 1e6, tc.quantizer_weight, usage);
    tc.kl_weight = (float)ex_parse_num(kl_s, "--kl", 0, 1e6, tc.kl_weight, usage);
    tc.perceptual_weight = (float)ex_parse_num(perc_s, "--perceptual", 0, 1e6, tc.perceptual_weight, usage);
    tc.disc_weight = (float)ex_parse_num(disc_s, "--disc", 0, 1e6, tc.disc_weight, usage);
    tc.disc_start = ex_parse_int(disc_start_s, "--disc-start", 0, INT_MAX - 1, tc.disc_start, usage);
    tc.lecam_weight = (float)ex_parse_num(lecam_s, "--lecam", 0, 1e6, tc.lecam_weight, usage);
    tc.text_dropout = (float)ex_parse_num(tdrop_s, "--text-dropout", 0, 1, 0.0, usage);
    if (!t5_path != !spm_path) ex_usage(usage, "--text-encoder and --spm go together (the T5 encoder and its tokenizer)");
    if (arch_s) {
        char extra;
        if (sscanf(arch_s, "%d,%d,%d,%d%c", &arch[0], &arch[1], &arch[2], &arch[3], &extra) != 4 ||
            arch[0] < 1 || arch[1] < 1 || arch[2] < 1 || arch[3] < 1)
            ex_usage(usage, "--disc-arch must be HIDDEN,STAGES,GROUPS,POOL (four positive integers), not '%s'", arch_s);
    }
    if (perc_s && tc.perceptual_weight > 0 && !lpips_path)
        ex_usage(usage, "--perceptual %s needs --lpips FILE (the LPIPS weights)", perc_s);
    if (!lpips_path && tc.perceptual_weight > 0) {
        fprintf(stderr, "%s: note: no --lpips: the preset's perceptual loss (weight %g) is off\n", ex_prog, tc.perceptual_weight);
        tc.perceptual_weight = 0;
    }
    if (lpips_path && tc.perceptual_weight == 0)
        ex_usage(usage, "--lpips is given but the perceptual weight is 0 (--perceptual W)");
    if (textok_train_config_check(&tc) != TEXTOK_OK) ex_usage(usage, "%s", textok_last_error());
    if (tc.warmup_steps >= tc.total_steps)
        fprintf(stderr, "%s: note: warmup %d >= schedule %d steps: the learning rate stays below its peak %g "
                "(--warmup, --schedule-steps)\n", ex_prog, tc.warmup_steps, tc.total_steps, tc.lr);
    seed = (uint64_t)ex_parse_int(seed_s, "--seed", 0, INT_MAX, 1, usage);
    ckpt_every = ex_parse_int(ckpt_s, "--ckpt-every", 0, INT_MAX, 1000, usage);
    grid_every = ex_parse_int(grid_s, "--grid-every", 0, INT_MAX, 1000, usage);
    log_every = ex_parse_int(logk_s, "--log-every", 1, INT_MAX, 10, usage);
    params.max_batch = tc.batch;

    /* never overwrite another run's checkpoint by accident */
    ckpt_path = ex_path_join(out, "ckpt.safetensors");
    log_path = ex_path_join(out, "log.csv");
    model_path = ex_path_join(out, "model.safetensors");
    if (!resume && ex_file_exists(ckpt_path))
        ex_die("'%s' already holds a checkpoint: continue it with --resume %s, or pick another --out", out, ckpt_path);

    /* the text encoder first: its width is the model's text width */
    memset(&ts, 0, sizeof ts);
    if (t5_path) {
        if (textok_spm_load(&ts.spm, spm_path) != TEXTOK_OK) ex_die("cannot load --spm: %s", textok_last_error());
        if (textok_t5_load(&ts.t5, t5_path, &params) != TEXTOK_OK) ex_die("cannot load --text-encoder: %s", textok_last_error());
    }

    /* the model config: from the checkpoint, the --init file or --model */
    if (resume) {
        probe_checkpoint(resume, &ci);
        if (ci.step > steps) ex_usage(usage, "--steps %d is below the checkpoint's step %d (%s)", steps, ci.step, resume);
        if (ci.has_ema != (tc.ema_decay > 0))
            ex_die("cannot resume from '%s': it was written %s an EMA of the weights and this run has %s "
                   "(repeat the flags of the run that wrote it: --ema %s)", resume, ci.has_ema ? "with" : "without",
                   ci.has_ema ? "none" : "one", ci.has_ema ? "DECAY" : "0");
        if (ci.has_disc && tc.disc_weight == 0)
            fprintf(stderr, "%s: note: '%s' holds a discriminator; this run has no GAN loss and drops it\n", ex_prog, resume);
    }
    if (init) {
        if (textok_titok_load(&model, init, &params) != TEXTOK_OK) ex_die("cannot load model '%s': %s", init, textok_last_error());
        cfg = *textok_titok_get_config(model);
    } else if (model_spec || !resume) {
        model_config(model_spec ? model_spec : "tiny_vq", ts.t5 ? textok_t5_get_config(ts.t5)->d_model : 0, &cfg);
        if (tc.text_dropout > 0 && (cfg.text_in_encoder || cfg.text_in_decoder)) cfg.text_optional = 1;
    } else {
        cfg = ci.cfg;
    }
    is_vq = cfg.quantize_mode == TEXTOK_QUANT_VQ;

    /* data: everything is checked before the (possibly long) model set-up */
    memset(&ds, 0, sizeof ds);
    if (data) {
        ex_load_data(&ds, data, split ? split : "train", cfg.image_size);
        captions = data;
    } else {
        ex_load_images(&ds, images, cfg.image_size);
        if (captions) ex_load_captions(&ds, captions, images);
    }
    text_check(&ts, &ds, &cfg, captions, t5_path, tc.text_dropout);

    if (!model && textok_titok_create_std(&model, &cfg, &params, seed, init_std) != TEXTOK_OK)
        ex_die("cannot create the model: %s", textok_last_error());
    make_loss_nets(&tc, lpips_path, arch, cfg.image_size, &params, seed + 1, &lpips, &disc);
    if (textok_trainer_create(&t, model, lpips, disc, &tc, seed + 2) != TEXTOK_OK)
        ex_die("cannot create the trainer: %s", textok_last_error());
    if (resume && textok_trainer_load(t, resume) != TEXTOK_OK)
        ex_die("cannot resume from '%s': %s", resume, textok_last_error());
    step0 = textok_trainer_steps_done(t);

    printf("model: %s %dx%d, patch %d, %d tokens of %d, enc %d/%d/%d dec %d/%d/%d, %lu parameters%s%s\n",
           is_vq ? "VQ" : "VAE", cfg.image_size, cfg.image_size, cfg.patch_size, cfg.num_latent_tokens, cfg.token_size,
           cfg.enc_width, cfg.enc_layers, cfg.enc_heads, cfg.dec_width, cfg.dec_layers, cfg.dec_heads,
           (unsigned long)textok_titok_num_params(model), cfg.is_legacy ? ", legacy pixel decoder" : "",
           init ? " (from --init)" : "");
    printf("training: batch %d, lr %g -> %g (warmup %d, cosine to %d), %s x%g, perceptual x%g, %s x%g, "
           "GAN x%g from %d, LeCAM x%g, clip %g, EMA %g, seed %lu\n",
           tc.batch, tc.lr, tc.end_lr, tc.warmup_steps, tc.total_steps, tc.recon_l1 ? "L1" : "L2", tc.recon_weight,
           tc.perceptual_weight, is_vq ? "quantizer" : "KL", is_vq ? tc.quantizer_weight : tc.kl_weight, tc.disc_weight,
           tc.disc_start, tc.lecam_weight, tc.grad_clip, tc.ema_decay, (unsigned long)seed);
    if (resume) printf("resumed: step %d of %s\n", step0, resume);
    fflush(stdout);

    /* outputs */
    if (mkdir(out, 0777) != 0 && errno != EEXIST) ex_die("cannot create '%s': %s", out, strerror(errno));
    logf = ex_open_log(log_path, csv_header, resume != NULL, step0);
    batch = (float *)ex_malloc((size_t)tc.batch * 3 * cfg.image_size * cfg.image_size * sizeof(float));
    picked = (int *)ex_malloc((size_t)tc.batch * sizeof(int));
    recon = (float *)ex_malloc((size_t)tc.batch * 3 * cfg.image_size * cfg.image_size * sizeof(float));
    signal(SIGINT, ex_on_signal);
    signal(SIGTERM, ex_on_signal);

    t_start = ex_now();
    memset(&s, 0, sizeof s);
    for (done = 0; textok_trainer_steps_done(t) < steps && !ex_stop_signal; done++) {
        const size_t img = (size_t)3 * cfg.image_size * cfg.image_size;
        textok_rng *rng = textok_trainer_rng(t);
        int step;
        double elapsed;
        /* the batch: uniform draws with replacement from the trainer's RNG (saved in checkpoints) */
        for (b = 0; b < tc.batch; b++) {
            const size_t k = (size_t)(((uint64_t)textok_rng_u32(rng) * (uint64_t)ds.n) >> 32);
            const unsigned char *src = ds.pixels + k * img;
            size_t j;
            for (j = 0; j < img; j++) batch[(size_t)b * img + j] = src[j] / 255.0f;
            picked[b] = (int)k;
        }
        if ((status = textok_trainer_step(t, batch, ex_text_batch(&ts, &ds, picked, tc.batch, &tx), &s)) != TEXTOK_OK) {
            char why[600];
            snprintf(why, sizeof why, "%s", textok_last_error());
            fclose(logf);
            if (last_ckpt >= 0)
                ex_die("training stopped: %s\n  the last checkpoint, step %d, is kept: %s", why, last_ckpt, ckpt_path);
            if (resume)
                ex_die("training stopped: %s\n  nothing was saved; the checkpoint resumed from (%s, step %d) is unchanged",
                       why, resume, step0);
            ex_die("training stopped: %s\n  no checkpoint was written yet (--ckpt-every %d)", why, ckpt_every);
        }
        step = s.step;
        elapsed = ex_now() - t_start;
        if (done == 0 || step % log_every == 0 || step == steps) {
            log_row(logf, log_path, &s, elapsed);
            progress_line(&s, steps, is_vq, (done + 1) / (elapsed > 0 ? elapsed : 1e-9));
        }
        if (grid_every > 0 && step % grid_every == 0) {
            if (textok_trainer_last_reconstruction(t, recon) != TEXTOK_OK) ex_die("%s", textok_last_error());
            write_grid(out, step, batch, recon, tc.batch, cfg.image_size);
            last_grid = step;
        }
        if (ckpt_every > 0 && step % ckpt_every == 0) {
            save_checkpoint(t, ckpt_path);
            last_ckpt = step;
        }
    }
    fclose(logf);

    final_step = textok_trainer_steps_done(t);
    if (ex_stop_signal && final_step < steps) {
        const char *name = ex_stop_signal == SIGINT ? "SIGINT" : "SIGTERM";
        if (done == 0) {
            printf("%s: %s before the first step: nothing saved\n", ex_prog, name);
        } else {
            if (last_ckpt != final_step) save_checkpoint(t, ckpt_path);
            printf("%s: %s: stopped after step %d; checkpoint %s (continue with --resume %s)\n", ex_prog, name, final_step,
                   ckpt_path, ckpt_path);
        }
    } else {
        if (done > 0 && last_ckpt != final_step) save_checkpoint(t, ckpt_path);
        if (done > 0 && grid_every > 0 && last_grid != final_step) {
            if (textok_trainer_last_reconstruction(t, recon) != TEXTOK_OK) ex_die("%s", textok_last_error());
            write_grid(out, final_step, batch, recon, tc.batch, cfg.image_size);
        }
        if (textok_trainer_save_model(t, model_path, tc.ema_decay > 0) != TEXTOK_OK)
            ex_die("cannot write '%s': %s", model_path, textok_last_error());
        printf("%s: done, %d steps (%d in this run, %.1f s): %s (%s weights), %s\n", ex_prog, final_step, done,
               ex_now() - t_start, model_path, tc.ema_decay > 0 ? "EMA" : "raw", ckpt_path);
    }

    textok_trainer_free(t);
    textok_lpips_free(lpips);
    textok_disc_free(disc);
    textok_titok_free(model);
    for (i = 0; i < ds.n; i++) { free(ds.names[i]); if (ds.captions) free(ds.captions[i]); }
    free(ds.names); free(ds.captions); free(ds.pixels);
    ex_text_free(&ts, ds.n);
    free(batch); free(recon); free(picked); free(args); free(ckpt_path); free(log_path); free(model_path);
    return 0;
}
