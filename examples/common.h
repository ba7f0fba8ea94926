/* common.h - helpers shared by the example programs (tokenize.c, reconstruct.c, encode_text.c,
   train_tokenizer.c, generate.c, train_generator.c).

   These are for programs, not for the library: on a bad input they print a message that names
   the culprit and exit (status 2 for a bad command line, 1 for everything else). ex_die also
   removes every output file this run has already written (ex_wrote), so a failed run never leaves
   a mix of new and stale outputs behind; each single file is written to "<path>.tmp" and renamed.

   Include textok.h (with TEXTOK_IMPLEMENTATION in the one .c file) before this header. It brings
   in stb_image / stb_image_write (Debian libstb-dev; the Makefile adds -isystem /usr/include/stb)
   and defines their implementations, so include it from one .c file only. */
#ifndef TEXTOK_EXAMPLES_COMMON_H
#define TEXTOK_EXAMPLES_COMMON_H

#include "textok.h"
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* stb compiles warning-free as C99 under -Wall -Wextra -Wpedantic; as C++ it trips
   -Wmissing-field-initializers unless included as a system header (-isystem, as the Makefile does). */
/* Only the formats the programs take (PNG, JPEG, BMP: ex_is_image_name's list): fewer decoders for
   hostile files to reach. Debian's stb_image 2.27 has known bugs in others (PNM's size parse
   overflows an int; TGA has no magic number, so it would be tried on any bytes). */
#define STBI_ONLY_PNG
#define STBI_ONLY_JPEG
#define STBI_ONLY_BMP
/* Zeroed allocations: stb_image 2.27 reads a JPEG Huffman table that no DHT defined from its
   uninitialised decoder struct, which ended in an assertion (abort) or not depending on what the
   heap held before (found by tests/fuzz/fuzz_image.c). Zeroed, such a table decodes garbage
   deterministically and never reaches that assertion. */
#define STBI_MALLOC(sz)       calloc(1, (sz) ? (sz) : 1)
#define STBI_REALLOC(p, newsz) realloc(p, newsz)
#define STBI_FREE(p)          free(p)
#define STB_IMAGE_IMPLEMENTATION
#include <stb_image.h>
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb_image_write.h>

/* ---------------------------------------------------------------------------------------------
   Errors and outputs */

/* a program may use only some of these helpers */
#if defined(__GNUC__) || defined(__clang__)
#define EX_STATIC static __attribute__((unused))
#else
#define EX_STATIC static
#endif

static const char *ex_prog = "textok";   /* program name for messages, set by ex_parse_flags */
static const char *ex_written[8];       /* outputs this run has written, removed by ex_die */
static int         ex_n_written;

EX_STATIC void ex_wrote(const char *path)
{
    if (ex_n_written < (int)(sizeof ex_written / sizeof ex_written[0])) ex_written[ex_n_written++] = path;
}

#if defined(__GNUC__) || defined(__clang__)
__attribute__((format(printf, 1, 2), noreturn))
#endif
EX_STATIC void ex_die(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", ex_prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    while (ex_n_written > 0) remove(ex_written[--ex_n_written]);
    exit(1);
}

/* The parsers that tests/fuzz/ calls directly (ex_decode_image, ex_parse_data, ex_parse_captions)
   return -1 / NULL instead of dying; the message is in ex_errbuf, and their ex_load_* wrappers
   pass it to ex_die. */
static char ex_errbuf[1024];

#if defined(__GNUC__) || defined(__clang__)
__attribute__((format(printf, 1, 2)))
#endif
EX_STATIC int ex_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ex_errbuf, sizeof ex_errbuf, fmt, ap);
    va_end(ap);
    return -1;
}

EX_STATIC void *ex_malloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) ex_die("out of memory (%zu bytes)", n);
    return p;
}

/* prefix + ext in a new string, e.g. ("out/cat", ".npy") -> "out/cat.npy" */
EX_STATIC char *ex_join(const char *prefix, const char *ext)
{
    size_t a = strlen(prefix), b = strlen(ext);
    char *s = (char *)ex_malloc(a + b + 1);
    memcpy(s, prefix, a);
    memcpy(s + a, ext, b + 1);
    return s;
}

/* Renames the finished "<path>.tmp" onto path; on failure removes the temp file and dies. */
EX_STATIC void ex_commit(const char *tmp, const char *path)
{
    if (rename(tmp, path) != 0) {
        remove(tmp);
        ex_die("cannot rename '%s' to '%s'", tmp, path);
    }
    ex_wrote(path);
}

/* A text output: ex_create opens "<path>.tmp" (*tmp, freed by ex_finish); ex_finish checks
   every write, closes, and renames it onto path (or removes it and dies). */
EX_STATIC FILE *ex_create(const char *path, char **tmp)
{
    FILE *f;
    *tmp = ex_join(path, ".tmp");
    if (!(f = fopen(*tmp, "wb"))) ex_die("cannot create '%s': %s", *tmp, strerror(errno));
    return f;
}

EX_STATIC void ex_finish(FILE *f, char *tmp, const char *path)
{
    int ok = !ferror(f);
    ok = (fclose(f) == 0) && ok;
    if (!ok) {
        remove(tmp);
        ex_die("cannot write '%s'", tmp);
    }
    ex_commit(tmp, path);
    free(tmp);
}

/* ---------------------------------------------------------------------------------------------
   Command line: "--name VALUE" pairs only. An unknown flag, a flag without its value or a
   missing required flag prints the usage on stderr and exits with status 2; --help prints it on
   stdout and exits 0. */

typedef struct ex_flag {
    const char  *name;       /* "--weights" */
    const char **value;      /* set to the argument that follows it */
    int          required;
} ex_flag;

#if defined(__GNUC__) || defined(__clang__)
__attribute__((format(printf, 2, 3), noreturn))
#endif
EX_STATIC void ex_usage(const char *usage, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", ex_prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nusage: %s %s\n", ex_prog, usage);
    exit(2);
}

EX_STATIC void ex_parse_flags(int argc, char **argv, ex_flag *flags, int n_flags, const char *usage)
{
    const char *slash = argc > 0 ? strrchr(argv[0], '/') : NULL;
    int i, f;
    if (argc > 0) ex_prog = slash ? slash + 1 : argv[0];
    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: %s %s\n", ex_prog, usage);
            exit(0);
        }
        for (f = 0; f < n_flags && strcmp(argv[i], flags[f].name); f++) {}
        if (f == n_flags) ex_usage(usage, "unknown argument '%s'", argv[i]);
        if (i + 1 >= argc) ex_usage(usage, "%s needs a value", argv[i]);
        *flags[f].value = argv[++i];
    }
    for (f = 0; f < n_flags; f++)
        if (flags[f].required && !*flags[f].value) ex_usage(usage, "%s is required", flags[f].name);
}

/* An integer flag value in [lo, hi]; NULL (flag absent) gives def. */
EX_STATIC int ex_parse_int(const char *s, const char *name, int lo, int hi, int def, const char *usage)
{
    char *end;
    long v;
    if (!s) return def;
    v = strtol(s, &end, 10);
    if (end == s || *end || v < lo || v > hi)
        ex_usage(usage, "%s must be an integer in [%d, %d], not '%s'", name, lo, hi, s);
    return (int)v;
}

/* A number flag in [lo, hi]; NULL (flag absent) gives def. */
EX_STATIC double ex_parse_num(const char *s, const char *name, double lo, double hi, double def, const char *usage)
{
    char *end;
    double v;
    if (!s) return def;
    v = strtod(s, &end);
    if (end == s || *end || !(v >= lo && v <= hi))   /* NaN fails */
        ex_usage(usage, "%s must be a number in [%g, %g], not '%s'", name, lo, hi, s);
    return v;
}

/* ---------------------------------------------------------------------------------------------
   Images. Memory layout everywhere: float (1,3,S,S) NCHW RGB, values in [0,1] (uint8 / 255),
   which is what textok_titok_encode takes and textok_titok_decode_* returns. */

/* Area (box) filter, as torch F.interpolate(mode='area') = adaptive_avg_pool2d: output pixel
   (i,j) is the plain mean of input rows [floor(i*in/out), ceil((i+1)*in/out)) and the same range
   of columns. For an integer ratio (256 -> 32) this is an exact 8x8 box average. The mean is
   taken in double and rounded to float once: bit for bit what torch gives on a float64 tensor
   (and what tools/gen_golden_titok.py feeds the reference), within 1 ulp of torch on float32. */
EX_STATIC void ex_resize_area(const float *src, int in, float *dst, int out)
{
    int i, j, y, x;
    for (i = 0; i < out; i++) {
        int y0 = (int)((long long)i * in / out), y1 = (int)(((long long)(i + 1) * in + out - 1) / out);
        for (j = 0; j < out; j++) {
            int x0 = (int)((long long)j * in / out), x1 = (int)(((long long)(j + 1) * in + out - 1) / out);
            double sum = 0;
            for (y = y0; y < y1; y++)
                for (x = x0; x < x1; x++) sum += src[(size_t)y * in + x];
            dst[(size_t)i * out + j] = (float)(sum / (y1 - y0) / (x1 - x0));
        }
    }
}

/* Bilinear, as torch F.interpolate(mode='bilinear', align_corners=False, antialias=False): the
   source coordinate of output pixel i is (i + 0.5) * in/out - 0.5, clamped below at 0; the two
   neighbours are floor(src) and the next one (clamped to the edge), weighted by the fraction.
   As in torch 1.13 (CPU), the ratio in/out is a float and the rest runs in double: this matches
   it to float rounding (checked on the test images). Used only to enlarge. */
EX_STATIC void ex_resize_bilinear(const float *src, int in, float *dst, int out)
{
    double scale = (float)in / (float)out;
    int i, j;
    for (i = 0; i < out; i++) {
        double sy = scale * (i + 0.5) - 0.5, ly;
        int y0, y1;
        if (sy < 0) sy = 0;
        y0 = (int)sy;
        y1 = y0 < in - 1 ? y0 + 1 : y0;
        ly = sy - y0;
        for (j = 0; j < out; j++) {
            double sx = scale * (j + 0.5) - 0.5, lx;
            const float *r0 = src + (size_t)y0 * in, *r1 = src + (size_t)y1 * in;
            int x0, x1;
            if (sx < 0) sx = 0;
            x0 = (int)sx;
            x1 = x0 < in - 1 ? x0 + 1 : x0;
            lx = sx - x0;
            dst[(size_t)i * out + j] = (float)((1 - ly) * ((1 - lx) * r0[x0] + lx * r0[x1]) +
                                               ly * ((1 - lx) * r1[x0] + lx * r1[x1]));
        }
    }
}

/* The decoded pixels of an image (stb_image: w x h, n channels, 8 bits) -> a new (1,3,size,size)
   float array, as ex_load_image describes; NULL and ex_errbuf on failure. */
EX_STATIC float *ex_image_square(const unsigned char *pix, int w, int h, int n, const char *path, int size)
{
    int side, ox, oy, c, y, x;
    float *square, *img;
    if (n < 1 || n > 4) {
        ex_fail("image '%s' has %d channels (expected 1 gray, 2 gray+alpha, 3 RGB or 4 RGBA)", path, n);
        return NULL;
    }
    if (size < 1 || size > TEXTOK_MAX_IMAGE_SIDE) {
        ex_fail("image '%s': the model's image size %d is not in [1, %d]", path, size, TEXTOK_MAX_IMAGE_SIDE);
        return NULL;
    }
    side = w < h ? w : h;
    ox = (w - side) / 2;
    oy = (h - side) / 2;
    square = (float *)malloc((size_t)3 * side * side * sizeof(float));
    img = (float *)malloc((size_t)3 * size * size * sizeof(float));
    if (!square || !img) {
        free(square); free(img);
        ex_fail("image '%s' (%dx%d): out of memory", path, w, h);
        return NULL;
    }
    for (c = 0; c < 3; c++)
        for (y = 0; y < side; y++)
            for (x = 0; x < side; x++) {
                const unsigned char *p = pix + ((size_t)(y + oy) * w + (x + ox)) * n;
                square[((size_t)c * side + y) * side + x] = p[n >= 3 ? c : 0] / 255.0f;
            }
    for (c = 0; c < 3; c++) {
        const float *s = square + (size_t)c * side * side;
        float *d = img + (size_t)c * size * size;
        if (side >= size) ex_resize_area(s, side, d, size);   /* equal sizes: an exact copy */
        else ex_resize_bilinear(s, side, d, size);
    }
    free(square);
    return img;
}

/* stb_image 2.27 (Debian's libstb) builds a JPEG Huffman table of any size into a 257-entry array:
   a DHT segment whose 16 code counts add up to more than 256 writes past it (2.28 refuses it).
   stb only reads a DHT right after the bytes FF C4 (its marker), so every FF C4 of a JPEG is
   read here as stb would read a DHT there (length, then tables of a class/id byte, 16 counts and
   the symbols while the length lasts; bytes past the end read as 0, as stb's do), and a table of
   more than 256 codes refuses the image. Conservative: an FF C4 inside other data (an EXIF
   thumbnail's tables are real ones) is read too. 1 = fine (or not a JPEG), 0 = refused. */
EX_STATIC int ex_jpeg_tables_ok(const unsigned char *b, size_t n, const char *path)
{
    size_t p = 0;
    while (p < n && b[p] == 0xFF) p++;   /* stb's SOI test skips fill bytes: FF FF D8 is a JPEG too */
    if (p == 0 || p >= n || b[p] != 0xD8) return 1;
    for (; p + 1 < n; p++) {
        long L;
        size_t q;
        if (b[p] != 0xFF || b[p + 1] != 0xC4) continue;
        q = p + 2;
        L = (long)((q < n ? b[q] : 0) << 8 | (q + 1 < n ? b[q + 1] : 0)) - 2;
        q += 2;
        while (L > 0 && q < n) {
            unsigned total = 0, i;
            for (i = 1; i <= 16; i++) total += q + i < n ? b[q + i] : 0;
            if (total > 256)
                return ex_fail("cannot read image '%s': a JPEG Huffman table of %u codes (at most 256)", path, total) + 1;
            q += 17 + total;
            L -= 17 + (long)total;
        }
    }
    return 1;
}

/* Refuses an image whose header claims more than TEXTOK_MAX_IMAGE_SIDE / _PIXELS, before stb_image
   allocates for it (a few bytes of PNG or BMP header can claim gigapixels). */
EX_STATIC int ex_image_dims_ok(int w, int h, const char *path)
{
    if (w < 1 || h < 1 || w > TEXTOK_MAX_IMAGE_SIDE || h > TEXTOK_MAX_IMAGE_SIDE ||
        (double)w * h > (double)TEXTOK_MAX_IMAGE_PIXELS)
        return ex_fail("image '%s' is %dx%d: larger than the limit of %d pixels a side and %ld pixels "
                       "(TEXTOK_MAX_IMAGE_SIDE, TEXTOK_MAX_IMAGE_PIXELS)", path, w, h, TEXTOK_MAX_IMAGE_SIDE,
                       (long)TEXTOK_MAX_IMAGE_PIXELS) + 1;
    return 1;
}

/* stb_image's reason, and for a file it does not recognise what it starts with. */
EX_STATIC int ex_image_fail(const unsigned char *bytes, size_t len, const char *path)
{
    const char *why = stbi_failure_reason();
    if (why && !strcmp(why, "unknown image type")) {
        char hex[40];
        size_t k, m = 0;
        hex[0] = 0;
        for (k = 0; k < 8 && k < len; k++) m += (size_t)snprintf(hex + m, sizeof hex - m, k ? " %02x" : "%02x", bytes[k]);
        return ex_fail("cannot read image '%s': not a PNG, JPEG or BMP file (%zu bytes%s%s; a PNG starts 89 50 4e 47, "
                       "a JPEG ff d8, a BMP 42 4d)", path, len, len ? ", starting " : "", hex);
    }
    return ex_fail("cannot read image '%s': %s", path, why ? why : "stb_image failed");
}

/* An image file's bytes (PNG, JPEG, BMP, ... as stb_image reads them) -> ex_image_square; NULL and
   ex_errbuf on failure. *alpha (may be NULL) is set when the image has an alpha channel. */
EX_STATIC float *ex_decode_image(const unsigned char *bytes, size_t len, const char *path, int size, int *alpha)
{
    int w, h, n;
    unsigned char *pix;
    float *img;
    if (len > (size_t)INT32_MAX) { ex_fail("cannot read image '%s': larger than 2 GB", path); return NULL; }
    if (!ex_jpeg_tables_ok(bytes, len, path)) return NULL;   /* before stbi_info, which reads them too */
    if (!stbi_info_from_memory(bytes, (int)len, &w, &h, &n)) {
        ex_image_fail(bytes, len, path);
        return NULL;
    }
    if (!ex_image_dims_ok(w, h, path)) return NULL;
    if (!(pix = stbi_load_from_memory(bytes, (int)len, &w, &h, &n, 0))) {
        ex_fail("cannot read image '%s': %s", path, stbi_failure_reason());
        return NULL;
    }
    if (alpha) *alpha = n == 2 || n == 4;
    img = ex_image_square(pix, w, h, n, path, size);
    stbi_image_free(pix);
    return img;
}

/* Loads a PNG, JPEG or BMP image (16-bit PNGs are reduced to 8 bits) and
   returns a new (1,3,size,size) float array. Grayscale is copied to R, G and B; an alpha channel
   is dropped (not composited over any background). The longer side is centre-cropped to a square
   (offset (L-S)/2, rounded down), the pixels are converted to float (/255) and only then resized
   to size x size: area filter to shrink, bilinear to enlarge (both as torch, see above). Images
   over TEXTOK_MAX_IMAGE_SIDE / TEXTOK_MAX_IMAGE_PIXELS are refused before decoding. */
EX_STATIC float *ex_load_image(const char *path, int size)
{
    textok_file f;
    float *img;
    int alpha = 0;
    FILE *probe = fopen(path, "rb");   /* stb_image's own words for a missing file */
    if (!probe) ex_die("cannot read image '%s': can't fopen", path);
    fclose(probe);
    if (textok_file_open(&f, path) != TEXTOK_OK) ex_die("cannot read image: %s", textok_last_error());
    img = ex_decode_image(f.data, f.size, path, size, &alpha);
    textok_file_close(&f);
    if (!img) ex_die("%s", ex_errbuf);
    if (alpha) fprintf(stderr, "%s: note: '%s' has an alpha channel; it is ignored\n", ex_prog, path);
    return img;
}

/* ---------------------------------------------------------------------------------------------
   Text for the text-conditioned tokenizers (TA-TiTok, TexTok) */

/* Does this model read text anywhere? */
EX_STATIC int ex_model_takes_text(const textok_titok_config *cfg)
{
    return cfg->text_in_encoder || cfg->text_in_decoder;
}

/* Reads --text-emb FILE.npy: one caption's token states, float32 (L, D) or (1, L, D) - what
   build/encode_text writes, or CLIP's 77 x 768 for TA-TiTok. Every row is a real token. Fills tx
   (B = 1) and returns the array to free. A width other than text_dim or more than text_len rows
   is an error naming the file and what the model (who) takes. */
EX_STATIC float *ex_load_text_emb_dims(const char *path, int text_dim, int text_len, const char *who, textok_text *tx)
{
    float *emb = NULL;
    int ndim = 0, L;
    int64_t shape[TEXTOK_MAX_DIMS];
    if (textok_npy_read(path, &emb, &ndim, shape) != TEXTOK_OK)
        ex_die("cannot read --text-emb: %s", textok_last_error());
    if (!(ndim == 2 || (ndim == 3 && shape[0] == 1))) {
        free(emb);
        ex_die("--text-emb '%s': expected the token states of one caption, shape (L, D) or (1, L, D), not %d dims", path, ndim);
    }
    if (shape[ndim - 1] != text_dim || shape[ndim - 2] < 1 || shape[ndim - 2] > text_len) {
        long l = (long)shape[ndim - 2], d = (long)shape[ndim - 1];
        free(emb);
        ex_die("--text-emb '%s' holds %ld tokens x %ld; %s takes 1 to %d tokens of width %d (text_len x text_dim)",
               path, l, d, who, text_len, text_dim);
    }
    L = (int)shape[ndim - 2];
    tx->emb = emb; tx->mask = NULL; tx->L = L; tx->dim = text_dim;
    return emb;
}
EX_STATIC float *ex_load_text_emb(const char *path, const textok_titok_config *cfg, textok_text *tx)
{
    return ex_load_text_emb_dims(path, cfg->text_dim, cfg->text_len, "this model", tx);
}

/* The text flags of tokenize and reconstruct: returns &tx filled from --text-emb, or NULL when
   the model takes no text (a note if text was given anyway) or runs without it (text_optional).
   A model that needs text and got none is a command-line error. *keep is what to free. */
EX_STATIC const textok_text *ex_text_flags(const textok_titok_config *cfg, const char *weights, const char *text_emb,
                                           textok_text *tx, float **keep, const char *usage)
{
    *keep = NULL;
    if (!ex_model_takes_text(cfg)) {
        if (text_emb) fprintf(stderr, "%s: note: '%s' takes no text; --text-emb is ignored\n", ex_prog, weights);
        return NULL;
    }
    if (!text_emb) {
        if (cfg->text_optional) return NULL;
        ex_usage(usage, "'%s' is text-conditioned (%s sees %d x %d text embeddings): give --text-emb FILE.npy",
                 weights, cfg->text_in_encoder && cfg->text_in_decoder ? "its encoder and decoder" : cfg->text_in_encoder ? "its encoder" : "its decoder",
                 cfg->text_len, cfg->text_dim);
    }
    *keep = ex_load_text_emb(text_emb, cfg, tx);
    return tx;
}

/* Writes a (3,H,W) float image (ex_write_png: a square (1,3,S,S) one) as an 8-bit RGB PNG.
   Each value is clamped to [0,1], multiplied by 255 and TRUNCATED (not rounded), exactly as
   the official TiTok demo's (clamp(x, 0, 1) * 255).to(torch.uint8); NaN becomes 0. */
EX_STATIC void ex_write_png_hw(const char *path, const float *img, int H, int W)
{
    unsigned char *rgb = (unsigned char *)ex_malloc((size_t)3 * H * W);
    char *tmp = ex_join(path, ".tmp");
    size_t i, plane = (size_t)H * W;
    int c, ok;
    for (i = 0; i < plane; i++)
        for (c = 0; c < 3; c++) {
            float v = img[c * plane + i];
            v = v > 0 ? (v < 1 ? v : 1) : 0;   /* NaN fails v > 0 */
            rgb[i * 3 + c] = (unsigned char)(v * 255.0f);
        }
    errno = 0;
    ok = stbi_write_png(tmp, W, H, 3, rgb, 3 * W);
    free(rgb);
    if (!ok) {
        const char *why = errno ? strerror(errno) : "stbi_write_png failed";
        remove(tmp);
        ex_die("cannot write '%s': %s", tmp, why);
    }
    ex_commit(tmp, path);
    free(tmp);
}
EX_STATIC void ex_write_png(const char *path, const float *img, int S) { ex_write_png_hw(path, img, S, S); }

/* n square (3,S,S) images (consecutive in imgs) as one PNG grid: cols per row (0: the smallest
   cols with cols*cols >= n), 2-pixel white gutters between and around the tiles. */
EX_STATIC void ex_write_tiles(const char *path, const float *imgs, int n, int S, int cols)
{
    const int g = 2;
    int rows, W, H, c, y, x, i;
    float *img;
    if (cols <= 0) for (cols = 1; cols * cols < n; cols++) {}
    if (cols > n) cols = n > 0 ? n : 1;
    rows = (n + cols - 1) / cols;
    if (rows < 1) rows = 1;
    W = cols * (S + g) + g;
    H = rows * (S + g) + g;
    img = (float *)ex_malloc((size_t)3 * H * W * sizeof(float));
    for (i = 0; i < 3 * H * W; i++) img[i] = 1.0f;
    for (i = 0; i < n; i++) {
        const float *src = imgs + (size_t)i * 3 * S * S;
        const int r = i / cols, k = i % cols;
        for (c = 0; c < 3; c++)
            for (y = 0; y < S; y++)
                for (x = 0; x < S; x++)
                    img[((size_t)c * H + g + r * (S + g) + y) * W + g + k * (S + g) + x] = src[((size_t)c * S + y) * S + x];
    }
    ex_write_png_hw(path, img, H, W);
    free(img);
}

/* ---------------------------------------------------------------------------------------------
   Other outputs */

/* float32 .npy through textok_npy_write (which itself writes "<path>.tmp" and renames). */
EX_STATIC void ex_write_npy(const char *path, const float *data, int ndim, const int64_t *shape)
{
    if (textok_npy_write(path, data, ndim, shape) != TEXTOK_OK) ex_die("%s", textok_last_error());
    ex_wrote(path);
}

/* {"tokens": [id, ...]} for one image (B = 1), {"tokens": [[id, ...], ...]} for B > 1. */
EX_STATIC void ex_write_tokens_json(const char *path, const int32_t *tokens, int B, int K)
{
    char *tmp;
    FILE *f = ex_create(path, &tmp);
    int b, k;
    fprintf(f, "{\"tokens\": %s", B > 1 ? "[" : "");
    for (b = 0; b < B; b++) {
        fprintf(f, "%s[", b ? ", " : "");
        for (k = 0; k < K; k++) fprintf(f, k ? ", %d" : "%d", (int)tokens[(size_t)b * K + k]);
        fputc(']', f);
    }
    fprintf(f, "%s}\n", B > 1 ? "]" : "");
    ex_finish(f, tmp, path);
}


/* =============================================================================================
   Training programs (train_tokenizer.c, train_generator.c): define EX_TRAINING (and
   _POSIX_C_SOURCE 200809L, for opendir, stat, clock_gettime) before including this header. */
#ifdef EX_TRAINING
#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
/* ---------------------------------------------------------------------------------------------
   Small helpers */

EX_STATIC char *ex_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = (char *)ex_malloc(n);
    memcpy(p, s, n);
    return p;
}

/* dir + "/" + name, as a new string */
EX_STATIC char *ex_path_join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = (char *)ex_malloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

EX_STATIC int ex_file_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

EX_STATIC double ex_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}


/* ---------------------------------------------------------------------------------------------
   Images and captions */

typedef struct ex_dataset {
    int            n, S;
    char         **names;    /* file names inside the folder, sorted (strcmp) */
    unsigned char *pixels;   /* (n, 3, S, S) 8-bit RGB, planar */
    char         **captions; /* n entries, NULL where an image has none */
} ex_dataset;

EX_STATIC int ex_is_image_name(const char *name)
{
    static const char *const exts[] = { ".png", ".jpg", ".jpeg", ".bmp" };
    size_t n = strlen(name), i, j;
    for (i = 0; i < sizeof exts / sizeof exts[0]; i++) {
        size_t e = strlen(exts[i]);
        int same = n > e;
        for (j = 0; same && j < e; j++) {
            char ch = name[n - e + j];
            if (ch >= 'A' && ch <= 'Z') ch = (char)(ch - 'A' + 'a');
            same = ch == exts[i][j];
        }
        if (same) return 1;
    }
    return 0;
}

EX_STATIC int ex_cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Every image file of dir, sorted by name so that the batches do not depend on readdir's order.
   Hidden files, directories and other extensions are skipped. */
EX_STATIC void ex_load_images(ex_dataset *ds, const char *dir, int S)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    size_t cap = 64, plane = (size_t)S * S, i;
    int skipped = 0, alpha = 0;
    if (!d) ex_die("cannot open the image folder '%s': %s", dir, strerror(errno));
    ds->n = 0; ds->S = S;
    ds->names = (char **)ex_malloc(cap * sizeof(char *));
    while ((e = readdir(d)) != NULL) {
        char *path;
        struct stat sb;
        int regular;
        if (e->d_name[0] == '.') continue;
        path = ex_path_join(dir, e->d_name);
        regular = stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
        free(path);
        if (!regular) continue;
        if (!ex_is_image_name(e->d_name)) { skipped++; continue; }
        if ((size_t)ds->n == cap) {
            char **grown = (char **)realloc(ds->names, 2 * cap * sizeof(char *));
            if (!grown) ex_die("out of memory listing '%s'", dir);
            ds->names = grown; cap *= 2;
        }
        ds->names[ds->n++] = ex_strdup(e->d_name);
    }
    closedir(d);
    if (ds->n == 0) ex_die("no images (.png .jpg .jpeg .bmp) in '%s'", dir);
    qsort(ds->names, (size_t)ds->n, sizeof(char *), ex_cmp_names);
    if ((size_t)ds->n > ((size_t)-1 / 3) / plane) ex_die("%d images of %dx%d do not fit in memory", ds->n, S, S);
    ds->pixels = (unsigned char *)ex_malloc((size_t)ds->n * 3 * plane);
    for (i = 0; i < (size_t)ds->n; i++) {
        char *path = ex_path_join(dir, ds->names[i]);
        int w, h, n, c;
        size_t p;
        unsigned char *pix, *dst = ds->pixels + i * 3 * plane;
        textok_file f;
        /* the size from the header first (no decoding of an image that cannot fit), the JPEG
           tables checked (ex_jpeg_tables_ok); 3 channels asked: gray is copied to R, G, B and
           alpha is dropped, as ex_load_image */
        if (textok_file_open(&f, path) != TEXTOK_OK) ex_die("cannot read image: %s", textok_last_error());
        if (f.size > (size_t)INT32_MAX) ex_die("cannot read image '%s': larger than 2 GB", path);
        if (!ex_jpeg_tables_ok(f.data, f.size, path)) ex_die("%s", ex_errbuf);
        if (!stbi_info_from_memory(f.data, (int)f.size, &w, &h, &n)) { ex_image_fail(f.data, f.size, path); ex_die("%s", ex_errbuf); }
        pix = w == S && h == S ? stbi_load_from_memory(f.data, (int)f.size, &w, &h, &n, 3) : NULL;
        textok_file_close(&f);
        if (w == S && h == S && !pix) ex_die("cannot read image '%s': %s", path, stbi_failure_reason());
        if (w != S || h != S) {
            stbi_image_free(pix);
            ex_die("image '%s' is %dx%d, but the model takes %dx%d images (every image must be "
                   "image_size x image_size; resize the folder first)", path, w, h, S, S);
        }
        if (n == 2 || n == 4) alpha++;
        for (c = 0; c < 3; c++)
            for (p = 0; p < plane; p++) dst[c * plane + p] = pix[p * 3 + c];
        stbi_image_free(pix);
        free(path);
    }
    printf("images: %d of %dx%d from %s (%.2f MB in memory)", ds->n, S, S, dir, (double)ds->n * 3 * plane / 1e6);
    if (skipped) printf("; %d other files skipped", skipped);
    printf("\n");
    if (alpha) fprintf(stderr, "%s: note: %d of the images have an alpha channel; it is dropped (as build/tokenize does)\n",
                       ex_prog, alpha);
}

/* Frees what ex_parse_data / ex_load_images / ex_load_captions filled (any of it may be NULL). */
EX_STATIC void ex_dataset_free(ex_dataset *ds)
{
    int i;
    for (i = 0; i < ds->n; i++) {
        if (ds->names) free(ds->names[i]);
        if (ds->captions) free(ds->captions[i]);
    }
    free(ds->names); free(ds->captions); free(ds->pixels);
    memset(ds, 0, sizeof *ds);
}

/* A packed dataset file (tools/emoji_dataset.c: safetensors with "textok.model" = "dataset",
   U8 tensors images (N, S, S, 3), split (N) 0 train / 1 val, captions and names: N NUL-ended
   strings each). split: "train", "val" or "all". Every size is checked against the others before
   anything is copied (textok_st_open has checked every tensor against the file); names become
   "<name>" and captions are filled (ds->captions[i] non-NULL). ex_parse_data reads an open st and
   returns 0, or -1 with ex_errbuf set and ds empty; ex_load_data opens the file and dies on error. */
EX_STATIC int ex_parse_data(ex_dataset *ds, const textok_safetensors *st, const char *path, const char *split, int S)
{
    const textok_st_tensor *ti, *ts, *tc, *tn;
    const char *model;
    const unsigned char *sp, *cap, *nam;
    size_t plane = (size_t)S * S, i, N, co = 0, no = 0;
    int want = !strcmp(split, "train") ? 0 : !strcmp(split, "val") ? 1 : !strcmp(split, "all") ? 2 : -1, k = 0;
    memset(ds, 0, sizeof *ds);
    if (want < 0) return ex_fail("--split must be train, val or all, not '%s'", split);
    if (S < 1 || S > TEXTOK_MAX_IMAGE_SIDE) return ex_fail("'%s': image size %d not in [1, %d]", path, S, TEXTOK_MAX_IMAGE_SIDE);
    model = textok_st_meta(st, "textok.model");
    if (!model || strcmp(model, "dataset"))
        return ex_fail("'%s' is not a dataset file (its textok.model is '%s', expected 'dataset'; tools/get_emoji.sh makes one)",
                       path, model ? model : "(none)");
    ti = textok_st_find(st, "images"); ts = textok_st_find(st, "split");
    tc = textok_st_find(st, "captions"); tn = textok_st_find(st, "names");
    if (!ti || !ts || !tc || !tn)
        return ex_fail("'%s': a dataset needs the tensors images, split, captions and names; %s is missing", path,
                       !ti ? "images" : !ts ? "split" : !tc ? "captions" : "names");
    if (ti->dtype != TEXTOK_DTYPE_U8 || ts->dtype != TEXTOK_DTYPE_U8 || tc->dtype != TEXTOK_DTYPE_U8 || tn->dtype != TEXTOK_DTYPE_U8) {
        const textok_st_tensor *bad = ti->dtype != TEXTOK_DTYPE_U8 ? ti : ts->dtype != TEXTOK_DTYPE_U8 ? ts
                                    : tc->dtype != TEXTOK_DTYPE_U8 ? tc : tn;
        static const char *const dtypes[4] = { "F32", "F16", "BF16", "U8" };
        return ex_fail("'%s': every dataset tensor must be U8; '%s' is %s", path, bad->name,
                       bad->dtype >= 0 && bad->dtype < 4 ? dtypes[bad->dtype] : "?");
    }
    if (ti->ndim != 4 || ti->shape[3] != 3 || ti->shape[0] < 1)
        return ex_fail("'%s': images must be (N, H, W, 3) with N >= 1; found %d dims%s", path, ti->ndim,
                       ti->ndim == 4 ? (ti->shape[3] != 3 ? " with a last dim other than 3" : " with N = 0") : "");
    if (ti->shape[1] != S || ti->shape[2] != S)
        return ex_fail("'%s': images are %lldx%lld, but the model takes %dx%d", path, (long long)ti->shape[2],
                       (long long)ti->shape[1], S, S);
    N = (size_t)ti->shape[0];
    if (ts->ndim != 1 || (size_t)ts->shape[0] != N)
        return ex_fail("'%s': split must be (%zu), one per image; found %d dims, %lld entries", path, N, ts->ndim,
                       ts->ndim >= 1 ? (long long)ts->shape[0] : 0LL);
    if (tc->ndim != 1 || tn->ndim != 1)
        return ex_fail("'%s': captions and names must be 1-D byte strings; found %d and %d dims", path, tc->ndim, tn->ndim);
    sp = st->buffer + ts->offset; cap = st->buffer + tc->offset; nam = st->buffer + tn->offset;
    ds->S = S;
    for (i = 0; i < N; i++) {
        if (sp[i] > 1) { ds->n = 0; return ex_fail("'%s': split[%zu] is %d (0 train, 1 val)", path, i, sp[i]); }
        ds->n += want == 2 || sp[i] == want;
    }
    if (ds->n == 0) return ex_fail("'%s': the %s split is empty", path, split);
    ds->names = (char **)calloc((size_t)ds->n, sizeof(char *));
    ds->captions = (char **)calloc((size_t)ds->n, sizeof(char *));
    ds->pixels = (unsigned char *)malloc((size_t)ds->n * 3 * plane);
    if (!ds->names || !ds->captions || !ds->pixels) {
        ex_dataset_free(ds);
        return ex_fail("'%s': out of memory", path);
    }
    for (i = 0; i < N; i++) {
        const unsigned char *c0 = cap + co, *n0 = nam + no, *src = st->buffer + ti->offset + i * 3 * plane;
        size_t p;
        int c;
        while (co < tc->numel && cap[co]) co++;
        while (no < tn->numel && nam[no]) no++;
        if (co >= tc->numel || no >= tn->numel) {
            ex_dataset_free(ds);
            return ex_fail("'%s': %s ends after %zu of %zu strings", path, co >= tc->numel ? "captions" : "names", i, N);
        }
        co++; no++;
        if (!(want == 2 || sp[i] == want)) continue;
        ds->captions[k] = (char *)malloc(strlen((const char *)c0) + 1);
        ds->names[k] = (char *)malloc(strlen((const char *)n0) + 1);
        if (!ds->captions[k] || !ds->names[k]) {
            ex_dataset_free(ds);
            return ex_fail("'%s': out of memory", path);
        }
        strcpy(ds->captions[k], (const char *)c0);
        strcpy(ds->names[k], (const char *)n0);
        for (c = 0; c < 3; c++)
            for (p = 0; p < plane; p++) ds->pixels[((size_t)k * 3 + c) * plane + p] = src[p * 3 + c];
        k++;
    }
    if (co != tc->numel || no != tn->numel) {
        ex_dataset_free(ds);
        return ex_fail("'%s': captions or names hold more than %zu strings", path, N);
    }
    return 0;
}

EX_STATIC void ex_load_data(ex_dataset *ds, const char *path, const char *split, int S)
{
    textok_safetensors st;
    if (textok_st_open(&st, path) != TEXTOK_OK) ex_die("%s", textok_last_error());
    if (ex_parse_data(ds, &st, path, split, S)) {
        textok_st_close(&st);
        ex_die("%s", ex_errbuf);
    }
    textok_st_close(&st);
    printf("data: %d images (split %s) of %dx%d from %s (%.2f MB in memory)\n", ds->n, split, S, S, path,
           (double)ds->n * 3 * (size_t)S * S / 1e6);
}

/* "filename<TAB>caption" lines (ending "\n" or "\r\n"); blank lines are skipped. Every filename
   must be one of the loaded images (ds->names, sorted), at most once. ex_parse_captions reads the
   text from memory (n bytes; a NUL byte ends a line's text as the C string it becomes) and
   returns 0 with ds->captions filled (NULL where an image has none), or -1 with ex_errbuf set and
   ds->captions NULL; ex_load_captions reads the file and dies on error. Limits: lines of at
   most TEXTOK_MAX_TEXT_BYTES. */
EX_STATIC int ex_parse_captions(ex_dataset *ds, const char *text, size_t n, const char *path, const char *dir)
{
    int *line_of = (int *)calloc((size_t)(ds->n > 0 ? ds->n : 1), sizeof(int));
    char *line = NULL;
    size_t pos = 0;
    int lineno = 0, count = 0, rc = -1, i;
    ds->captions = (char **)calloc((size_t)(ds->n > 0 ? ds->n : 1), sizeof(char *));
    if (!line_of || !ds->captions) { ex_fail("out of memory"); goto done; }
    while (pos < n) {
        const char *start = text + pos, *nl = (const char *)memchr(start, '\n', n - pos);
        size_t len = nl ? (size_t)(nl - start) : n - pos;
        char *tab, *key, **hit;
        int idx;
        pos += len + (nl != NULL);
        lineno++;
        if (len > 0 && start[len - 1] == '\r') len--;
        if (len > TEXTOK_MAX_TEXT_BYTES) {
            ex_fail("%s:%d: a line of %zu bytes (the limit is %d, TEXTOK_MAX_TEXT_BYTES)", path, lineno, len,
                    TEXTOK_MAX_TEXT_BYTES);
            goto done;
        }
        free(line);
        if (!(line = (char *)malloc(len + 1))) { ex_fail("out of memory reading '%s'", path); goto done; }
        memcpy(line, start, len);
        line[len] = 0;
        key = line;
        if (line[strspn(line, " \t")] == 0) continue;
        if (!(tab = strchr(line, '\t'))) {
            ex_fail("%s:%d: expected 'filename<TAB>caption', found no tab", path, lineno);
            goto done;
        }
        *tab = 0;
        hit = ds->n > 0 ? (char **)bsearch(&key, ds->names, (size_t)ds->n, sizeof(char *), ex_cmp_names) : NULL;
        if (!hit) { ex_fail("%s:%d: '%s' is not one of the %d images in '%s'", path, lineno, line, ds->n, dir); goto done; }
        idx = (int)(hit - ds->names);
        if (ds->captions[idx]) {
            ex_fail("%s:%d: a second caption for '%s' (the first is on line %d)", path, lineno, line, line_of[idx]);
            goto done;
        }
        if (!(ds->captions[idx] = (char *)malloc(strlen(tab + 1) + 1))) { ex_fail("out of memory reading '%s'", path); goto done; }
        strcpy(ds->captions[idx], tab + 1);
        line_of[idx] = lineno;
        count++;
    }
    rc = count;
done:
    if (rc < 0 && ds->captions) {
        for (i = 0; i < ds->n; i++) free(ds->captions[i]);
        free(ds->captions);
        ds->captions = NULL;
    }
    free(line); free(line_of);
    return rc < 0 ? -1 : 0;
}

EX_STATIC void ex_load_captions(ex_dataset *ds, const char *path, const char *dir)
{
    textok_file f;
    int i, count = 0;
    FILE *probe = fopen(path, "rb");
    if (!probe) ex_die("cannot open captions '%s': %s", path, strerror(errno));
    fclose(probe);
    if (textok_file_open(&f, path) != TEXTOK_OK) ex_die("cannot read captions: %s", textok_last_error());
    if (ex_parse_captions(ds, (const char *)f.data, f.size, path, dir)) {
        textok_file_close(&f);
        ex_die("%s", ex_errbuf);
    }
    textok_file_close(&f);
    for (i = 0; i < ds->n; i++) count += ds->captions[i] != NULL;
    printf("captions: %d of %d images have one (%s)\n", count, ds->n, path);
}

/* One line of any length into *buf (grown as needed), without the "\n" or "\r\n"; -1 at EOF. */
EX_STATIC long ex_read_line(FILE *f, char **buf, size_t *cap)
{
    size_t n = 0;
    int ch;
    while ((ch = fgetc(f)) != EOF && ch != '\n') {
        if (n + 1 >= *cap) {
            char *grown = (char *)realloc(*buf, *cap * 2);
            if (!grown) ex_die("out of memory reading a line");
            *buf = grown; *cap *= 2;
        }
        (*buf)[n++] = (char)ch;
    }
    if (ch == EOF && n == 0) return -1;
    if (n > 0 && (*buf)[n - 1] == '\r') n--;
    (*buf)[n] = 0;
    return (long)n;
}

/* Opens log.csv for appending, header its first line. A fresh run starts it over; a resumed run keeps the rows up to
   the checkpoint's step (a run that died after its last checkpoint logged steps that will be
   trained again). The rewrite goes through a temp file and a rename. */
EX_STATIC FILE *ex_open_log(const char *path, const char *header, int resumed, int keep_upto)
{
    char *tmp = ex_join(path, ".tmp");
    FILE *out = fopen(tmp, "wb"), *in, *f;
    if (!out) ex_die("cannot create '%s': %s", tmp, strerror(errno));
    fputs(header, out);
    if (resumed && (in = fopen(path, "rb")) != NULL) {
        size_t cap = 256;
        char *line = (char *)ex_malloc(cap);
        while (ex_read_line(in, &line, &cap) >= 0) {
            char *end;
            long step = strtol(line, &end, 10);
            if (end != line && *end == ',' && step >= 1 && step <= keep_upto) fprintf(out, "%s\n", line);
        }
        fclose(in);
        free(line);
    }
    {
        int bad = ferror(out);
        bad |= fclose(out) != 0;
        if (bad) { remove(tmp); ex_die("cannot write '%s'", tmp); }
    }
    if (rename(tmp, path) != 0) { remove(tmp); ex_die("cannot rename '%s' to '%s'", tmp, path); }
    free(tmp);
    if (!(f = fopen(path, "ab"))) ex_die("cannot open '%s': %s", path, strerror(errno));
    return f;
}

/* ---------------------------------------------------------------------------------------------
   Signals: the handler only sets a flag; the loop saves a checkpoint after the current step. It
   also restores the default action, so that a second Ctrl-C stops the program at once (the
   checkpoint on disk is then the last one written, never a partial file). */
static volatile sig_atomic_t ex_stop_signal = 0;
EX_STATIC void ex_on_signal(int sig)
{
    ex_stop_signal = sig;
    signal(sig, SIG_DFL);
}

/* ---------------------------------------------------------------------------------------------
   Captions for text-conditioned models (TexTok, DiT-T2I): each caption goes through the Unigram
   tokenizer and the frozen T5 encoder
   once, and its token states (L_i x D, no padding) are kept for the rest of the run. A batch
   pads them to its longest caption and masks the padding; an image without a caption gets an
   all-masked row (trained as if its text were dropped). */
typedef struct ex_text_source {
    textok_spm *spm;
    textok_t5  *t5;
    int         on;            /* the model reads text */
    int         max_len;       /* the model's text_len */
    int         dim;
    float     **emb;           /* (n) per image: (len[i], dim), computed on first use */
    int        *len;           /* (n) 0 = no caption (or not computed yet) */
    float      *buf;           /* (B, max_len, dim) the batch */
    unsigned char *mask;       /* (B, max_len) */
} ex_text_source;

EX_STATIC const textok_text *ex_text_batch(ex_text_source *ts, ex_dataset *ds, const int *idx, int B, textok_text *tx)
{
    int b, Lb = 1;
    if (!ts->on) return NULL;
    for (b = 0; b < B; b++) {
        const int i = idx[b];
        if (ds->captions[i] && !ts->emb[i]) {
            int32_t *ids = (int32_t *)ex_malloc((size_t)ts->max_len * sizeof(int32_t));
            int n = 0, full = 0;
            if (textok_spm_encode(ts->spm, ds->captions[i], ids, ts->max_len, &n, &full) != TEXTOK_OK)
                ex_die("caption of '%s': %s", ds->names[i], textok_last_error());
            if (full > n)
                fprintf(stderr, "%s: note: the caption of '%s' has %d tokens; the first %d are used (text_len)\n", ex_prog,
                        ds->names[i], full, n);
            ts->emb[i] = (float *)ex_malloc((size_t)n * ts->dim * sizeof(float));
            if (textok_t5_encode(ts->t5, ids, NULL, 1, n, ts->emb[i]) != TEXTOK_OK)
                ex_die("T5 on the caption of '%s': %s", ds->names[i], textok_last_error());
            ts->len[i] = n;
            free(ids);
        }
        if (ts->len[i] > Lb) Lb = ts->len[i];
    }
    free(ts->buf);
    ts->buf = (float *)ex_malloc((size_t)B * Lb * ts->dim * sizeof(float));
    free(ts->mask);
    ts->mask = (unsigned char *)ex_malloc((size_t)B * Lb);
    memset(ts->buf, 0, (size_t)B * Lb * ts->dim * sizeof(float));
    memset(ts->mask, 0, (size_t)B * Lb);
    for (b = 0; b < B; b++) {
        const int i = idx[b];
        if (!ts->len[i]) continue;
        memcpy(ts->buf + (size_t)b * Lb * ts->dim, ts->emb[i], (size_t)ts->len[i] * ts->dim * sizeof(float));
        memset(ts->mask + (size_t)b * Lb, 1, (size_t)ts->len[i]);
    }
    tx->emb = ts->buf; tx->mask = ts->mask; tx->L = Lb; tx->dim = ts->dim;
    return tx;
}

EX_STATIC void ex_text_free(ex_text_source *ts, int n)
{
    int i;
    if (ts->emb) for (i = 0; i < n; i++) free(ts->emb[i]);
    free(ts->emb); free(ts->len); free(ts->buf); free(ts->mask);
    textok_t5_free(ts->t5);
    textok_spm_free(ts->spm);
}
#endif /* EX_TRAINING */

#endif /* TEXTOK_EXAMPLES_COMMON_H */
