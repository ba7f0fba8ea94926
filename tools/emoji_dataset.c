/* emoji_dataset: the captioned emoji the shipped default models are trained on, packed into one
   file that build/train_tokenizer, build/train_generator and build/evaluate read (--data FILE).

     tools/get_emoji.sh                       npm pack + this program: data/emoji64.safetensors
     build/emoji_dataset --package DIR[=STYLE] [--package DIR2=STYLE2 ...] --out FILE.safetensors
                         [--sample N SAMPLE.safetensors]

   INPUT: an unpacked npm package of the emoji-datasource family (emoji-datasource-twitter,
   -google, ...): DIR/emoji.json and DIR/img/<vendor>/64/<image>.png, where <vendor> is the package
   name's suffix (found as the one folder under DIR/img). emoji.json is an array of objects; we
   read "name", "category", "subcategory", "unified", "image", "has_img_<vendor>" and
   "skin_variations" ({"1F3FB": {"unified", "image", "has_img_<vendor>"}, ...}).

   WHAT IT WRITES: safetensors, every tensor U8 (textok_st_save with TEXTOK_DTYPE_U8):
      images    (N, 64, 64, 3)   RGB, each RGBA PNG composited on white: c' = (c a + 255 (255 - a)) / 255
      split     (N)              0 train, 1 validation
      captions  (bytes)          N UTF-8 captions, each ended by a NUL
      names     (bytes)          N names "<vendor>/<image>", each ended by a NUL
   and __metadata__ textok.model = "dataset", image_size, n, n_train, n_val, split_rule, sources.
   --sample N writes a second file of the same format with N validation images only (the
   (i * n_val / N)-th for i < N, in file order): weights/emoji/val_sample.safetensors, which the
   demo and the tests read, is this file for N = 16 (the images are CC-BY 4.0, see there).

   CAPTIONS: "<name>, <category>, <subcategory>", lower-cased (emoji.json's name is upper case);
   a skin-tone variation appends ", <tone> skin tone" per person ("light", "medium-light",
   "medium", "medium-dark", "dark"); with several packages each caption ends with ", <style>
   style" (STYLE, default the vendor name) so that the text says which set an image is from.
      e.g. "grinning face, smileys & emotion, face-smiling"

   SPLIT (fixed, documented, independent of the order of the file): an emoji goes to validation
   when the FNV-1a hash of its base "unified" code (e.g. "1F600", upper case) is 0 mod 10; its skin
   variations and its images in every package go with it, so no validation emoji is ever seen in
   training in any tone or style. The twitter set gives about 380 validation images of 3786; fewer
   than 300 is an error.

   Emoji without an image for the vendor are skipped. Output is deterministic: the same packages
   give a byte-identical file (its sha256 is printed by tools/get_emoji.sh). Any bad input (a
   missing file, malformed JSON, a PNG that is not 64x64) stops the program with a message naming
   it, and nothing is written. */
#define TEXTOK_IMPLEMENTATION
#include "textok.h"
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#define STB_IMAGE_IMPLEMENTATION
#include <stb_image.h>

#define S 64              /* the packages' smallest PNG size, and the shipped models' */
#define MAX_PACKAGES 4
#define MAX_JSON (64u << 20)   /* emoji.json is ~1.5 MB; refuse anything absurd */

static void die(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "emoji_dataset: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) die("out of memory (%zu bytes)", n);
    return p;
}

static char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    return (char *)memcpy(xmalloc(n), s, n);
}

/* ---------------------------------------------------------------------------------------------
   A small JSON reader: the whole document becomes a tree of values. Strings are decoded (\uXXXX
   and surrogate pairs into UTF-8). Depth is bounded. */
enum { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ };
typedef struct jval {
    int          type;
    int          b;
    char        *s;        /* J_STR */
    int          n;        /* J_ARR / J_OBJ: element count */
    char       **keys;     /* J_OBJ */
    struct jval *items;    /* J_ARR / J_OBJ */
} jval;

typedef struct jcur { const char *p, *end, *start, *file; int depth; } jcur;

static void jfail(jcur *c, const char *what)
{
    die("%s: malformed JSON at byte %ld: %s", c->file, (long)(c->p - c->start), what);
}

static void jws(jcur *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) c->p++;
}

static unsigned jhex4(jcur *c)
{
    unsigned v = 0;
    int i;
    if (c->end - c->p < 4) jfail(c, "truncated \\u escape");
    for (i = 0; i < 4; i++) {
        char ch = *c->p++;
        v <<= 4;
        if (ch >= '0' && ch <= '9') v |= (unsigned)(ch - '0');
        else if (ch >= 'a' && ch <= 'f') v |= (unsigned)(ch - 'a' + 10);
        else if (ch >= 'A' && ch <= 'F') v |= (unsigned)(ch - 'A' + 10);
        else jfail(c, "bad hex digit in \\u escape");
    }
    return v;
}

static char *jstr(jcur *c)
{
    size_t cap = 32, n = 0;
    char *s = (char *)xmalloc(cap);
    if (c->p >= c->end || *c->p != '"') jfail(c, "expected a string");
    c->p++;
    for (;;) {
        unsigned cp;
        if (c->p >= c->end) jfail(c, "unterminated string");
        if (n + 8 >= cap) { s = (char *)realloc(s, cap *= 2); if (!s) die("out of memory"); }
        if (*c->p == '"') { c->p++; break; }
        if ((unsigned char)*c->p < 0x20) jfail(c, "control character in a string");
        if (*c->p != '\\') { s[n++] = *c->p++; continue; }
        c->p++;
        if (c->p >= c->end) jfail(c, "truncated escape");
        switch (*c->p++) {
        case '"': s[n++] = '"'; continue;
        case '\\': s[n++] = '\\'; continue;
        case '/': s[n++] = '/'; continue;
        case 'b': s[n++] = '\b'; continue;
        case 'f': s[n++] = '\f'; continue;
        case 'n': s[n++] = '\n'; continue;
        case 'r': s[n++] = '\r'; continue;
        case 't': s[n++] = '\t'; continue;
        case 'u': break;
        default: jfail(c, "unknown escape");
        }
        cp = jhex4(c);
        if (cp >= 0xD800 && cp < 0xDC00) {
            unsigned lo;
            if (c->end - c->p < 6 || c->p[0] != '\\' || c->p[1] != 'u') jfail(c, "lone high surrogate");
            c->p += 2;
            lo = jhex4(c);
            if (lo < 0xDC00 || lo >= 0xE000) jfail(c, "bad low surrogate");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        } else if (cp >= 0xDC00 && cp < 0xE000) jfail(c, "lone low surrogate");
        if (cp < 0x80) s[n++] = (char)cp;
        else if (cp < 0x800) { s[n++] = (char)(0xC0 | cp >> 6); s[n++] = (char)(0x80 | (cp & 63)); }
        else if (cp < 0x10000) {
            s[n++] = (char)(0xE0 | cp >> 12); s[n++] = (char)(0x80 | (cp >> 6 & 63)); s[n++] = (char)(0x80 | (cp & 63));
        } else {
            s[n++] = (char)(0xF0 | cp >> 18); s[n++] = (char)(0x80 | (cp >> 12 & 63));
            s[n++] = (char)(0x80 | (cp >> 6 & 63)); s[n++] = (char)(0x80 | (cp & 63));
        }
    }
    s[n] = 0;
    return s;
}

static void jvalue(jcur *c, jval *v);

static void jpush(jcur *c, jval *v, int *cap)
{
    if (v->n == *cap) {
        *cap = *cap ? 2 * *cap : 8;
        v->items = (jval *)realloc(v->items, (size_t)*cap * sizeof(jval));
        if (v->type == J_OBJ) v->keys = (char **)realloc(v->keys, (size_t)*cap * sizeof(char *));
        if (!v->items || (v->type == J_OBJ && !v->keys)) die("out of memory");
    }
    (void)c;
}

static void jvalue(jcur *c, jval *v)
{
    memset(v, 0, sizeof *v);
    jws(c);
    if (c->p >= c->end) jfail(c, "unexpected end");
    if (++c->depth > 64) jfail(c, "nested too deeply");
    if (*c->p == '{' || *c->p == '[') {
        const int obj = *c->p == '{';
        const char close = obj ? '}' : ']';
        int cap = 0;
        v->type = obj ? J_OBJ : J_ARR;
        c->p++;
        jws(c);
        if (c->p < c->end && *c->p == close) { c->p++; c->depth--; return; }
        for (;;) {
            jpush(c, v, &cap);
            if (obj) {
                jws(c);
                v->keys[v->n] = jstr(c);
                jws(c);
                if (c->p >= c->end || *c->p != ':') jfail(c, "expected ':'");
                c->p++;
            }
            jvalue(c, &v->items[v->n++]);
            jws(c);
            if (c->p < c->end && *c->p == ',') { c->p++; continue; }
            if (c->p < c->end && *c->p == close) { c->p++; break; }
            jfail(c, obj ? "expected ',' or '}'" : "expected ',' or ']'");
        }
    } else if (*c->p == '"') {
        v->type = J_STR;
        v->s = jstr(c);
    } else if (c->end - c->p >= 4 && !memcmp(c->p, "null", 4)) {
        v->type = J_NULL; c->p += 4;
    } else if (c->end - c->p >= 4 && !memcmp(c->p, "true", 4)) {
        v->type = J_BOOL; v->b = 1; c->p += 4;
    } else if (c->end - c->p >= 5 && !memcmp(c->p, "false", 5)) {
        v->type = J_BOOL; c->p += 5;
    } else if (*c->p == '-' || (*c->p >= '0' && *c->p <= '9')) {
        v->type = J_NUM;
        while (c->p < c->end && strchr("+-0123456789.eE", *c->p)) c->p++;
    } else jfail(c, "expected a value");
    c->depth--;
}

static const jval *jget(const jval *o, const char *key)
{
    int i;
    if (!o || o->type != J_OBJ) return NULL;
    for (i = 0; i < o->n; i++)
        if (!strcmp(o->keys[i], key)) return &o->items[i];
    return NULL;
}

static const char *jgets(const jval *o, const char *key, const char *file, int idx)
{
    const jval *v = jget(o, key);
    if (!v || v->type != J_STR) die("%s: entry %d: \"%s\" is missing or not a string", file, idx, key);
    return v->s;
}

/* ---------------------------------------------------------------------------------------------
   Collecting the images */

typedef struct item {
    char          *name;      /* "<vendor>/<image>" */
    char          *caption;
    unsigned char *rgb;       /* (S, S, 3) */
    int            val;
} item;

static item *items;
static int   n_items, cap_items;

static uint32_t fnv1a(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++) { h ^= (unsigned char)*s; h *= 16777619u; }
    return h;
}

static void lower(char *s)
{
    for (; *s; s++) if (*s >= 'A' && *s <= 'Z') *s = (char)(*s - 'A' + 'a');
}

static const char *tone_name(const char *code)
{
    static const char *const codes[5] = { "1F3FB", "1F3FC", "1F3FD", "1F3FE", "1F3FF" };
    static const char *const names[5] = { "light", "medium-light", "medium", "medium-dark", "dark" };
    int i;
    for (i = 0; i < 5; i++)
        if (!strcmp(code, codes[i])) return names[i];
    return NULL;
}

/* The package's PNG at DIR/img/VENDOR/64/IMAGE, composited on white. */
static unsigned char *load_png(const char *dir, const char *vendor, const char *image)
{
    char path[4096];
    int w, h, n, i;
    unsigned char *px, *rgb;
    snprintf(path, sizeof path, "%s/img/%s/%d/%s", dir, vendor, S, image);
    if (strstr(image, "..") || strchr(image, '/')) die("%s: image name '%s' is not a plain file name", dir, image);
    px = stbi_load(path, &w, &h, &n, 4);
    if (!px) die("cannot read '%s': %s", path, stbi_failure_reason());
    if (w != S || h != S) die("'%s' is %dx%d, expected %dx%d", path, w, h, S, S);
    rgb = (unsigned char *)xmalloc(S * S * 3);
    for (i = 0; i < S * S; i++) {
        const unsigned a = px[4 * i + 3];
        int c;
        for (c = 0; c < 3; c++) rgb[3 * i + c] = (unsigned char)((px[4 * i + c] * a + 255u * (255u - a) + 127u) / 255u);
    }
    stbi_image_free(px);
    return rgb;
}

static void add_item(const char *dir, const char *vendor, const char *image, const char *caption, int val)
{
    char name[512];
    if (n_items == cap_items) {
        cap_items = cap_items ? 2 * cap_items : 1024;
        items = (item *)realloc(items, (size_t)cap_items * sizeof(item));
        if (!items) die("out of memory");
    }
    snprintf(name, sizeof name, "%s/%s", vendor, image);
    items[n_items].name = xstrdup(name);
    items[n_items].caption = xstrdup(caption);
    items[n_items].rgb = load_png(dir, vendor, image);
    items[n_items].val = val;
    n_items++;
}

/* The vendor is the one folder under DIR/img (twitter, google, ...). */
static char *find_vendor(const char *dir)
{
    char path[4096], *found = NULL;
    DIR *d;
    struct dirent *e;
    snprintf(path, sizeof path, "%s/img", dir);
    if (!(d = opendir(path))) die("'%s' is not an emoji-datasource package: cannot open '%s': %s", dir, path, strerror(errno));
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        if (found) die("'%s' holds more than one image set (%s, %s)", path, found, e->d_name);
        found = xstrdup(e->d_name);
    }
    closedir(d);
    if (!found) die("'%s' holds no image set", path);
    return found;
}

static void read_package(const char *dir, const char *style, int several)
{
    char path[4096], has[128], caption[1280], suffix[160];   /* caption: base, tones and suffix always fit */
    char *vendor = find_vendor(dir), *json;
    FILE *f;
    long size = 0;
    jcur c;
    jval root;
    int i, before = n_items;
    snprintf(path, sizeof path, "%s/emoji.json", dir);
    if (!(f = fopen(path, "rb"))) die("cannot open '%s': %s", path, strerror(errno));
    if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) die("cannot size '%s'", path);
    if ((unsigned long)size > MAX_JSON) die("'%s' is %ld bytes (more than %u): not an emoji.json", path, size, MAX_JSON);
    json = (char *)xmalloc((size_t)size + 1);
    if (fread(json, 1, (size_t)size, f) != (size_t)size) die("cannot read '%s'", path);
    fclose(f);
    c.p = c.start = json; c.end = json + size; c.file = path; c.depth = 0;
    jvalue(&c, &root);
    if (root.type != J_ARR) die("%s: expected an array of emoji", path);
    snprintf(has, sizeof has, "has_img_%s", vendor);
    suffix[0] = 0;
    if (several) snprintf(suffix, sizeof suffix, ", %s style", style ? style : vendor);
    for (i = 0; i < root.n; i++) {
        const jval *e = &root.items[i], *hv = jget(e, has), *sk = jget(e, "skin_variations");
        char base[768];
        int val, k;
        if (e->type != J_OBJ) die("%s: entry %d is not an object", path, i);
        val = fnv1a(jgets(e, "unified", path, i)) % 10 == 0;
        snprintf(base, sizeof base, "%s, %s, %s", jgets(e, "name", path, i), jgets(e, "category", path, i),
                 jgets(e, "subcategory", path, i));
        lower(base);
        if (hv && hv->type == J_BOOL && hv->b) {
            snprintf(caption, sizeof caption, "%s%s", base, suffix);
            add_item(dir, vendor, jgets(e, "image", path, i), caption, val);
        }
        if (!sk || sk->type != J_OBJ) continue;
        for (k = 0; k < sk->n; k++) {
            const jval *v = &sk->items[k], *vh = jget(v, has);
            char tones[256] = "", code[64], *tok, *dash;
            int people = 0;
            if (!vh || vh->type != J_BOOL || !vh->b) continue;
            snprintf(code, sizeof code, "%s", sk->keys[k]);
            for (tok = code; tok; tok = dash ? dash + 1 : NULL) {   /* "1F3FB-1F3FC": one tone per person */
                const char *t;
                if ((dash = strchr(tok, '-')) != NULL) *dash = 0;
                t = tone_name(tok);
                if (!t) die("%s: entry %d: unknown skin tone code '%s' in \"%s\"", path, i, tok, sk->keys[k]);
                snprintf(tones + strlen(tones), sizeof tones - strlen(tones), "%s%s skin tone", people++ ? " and " : "", t);
            }
            snprintf(caption, sizeof caption, "%s, %s%s", base, tones, suffix);
            add_item(dir, vendor, jgets(v, "image", path, i), caption, val);
        }
    }
    printf("%s: %d images of %s\n", dir, n_items - before, vendor);
    free(json);
    free(vendor);
    /* the tree is left to the process exit: it lives as long as the program */
}

/* Every item (pick NULL) or the n_pick picked ones, as one dataset file. */
static void write_file(const char *out, const char *const *dirs, int n_dirs, const int *pick, int n_pick)
{
    const int N = pick ? n_pick : n_items;
    int i, n_val = 0;
    size_t cap_bytes = 0, name_bytes = 0, j, o = 0, q = 0;
    /* textok_st_save takes floats; U8 stores them as bytes */
    float *img, *split, *caps, *names;
    char meta_v[4][64], sources[1024] = "";
    const char *meta[14];
    textok_st_entry e[4];
    for (i = 0; i < N; i++) {
        const item *it = &items[pick ? pick[i] : i];
        n_val += it->val;
        cap_bytes += strlen(it->caption) + 1;
        name_bytes += strlen(it->name) + 1;
    }
    img = (float *)xmalloc((size_t)N * S * S * 3 * sizeof(float));
    split = (float *)xmalloc((size_t)N * sizeof(float));
    caps = (float *)xmalloc(cap_bytes * sizeof(float));
    names = (float *)xmalloc(name_bytes * sizeof(float));
    for (i = 0; i < N; i++) {
        const item *it = &items[pick ? pick[i] : i];
        const char *s;
        for (j = 0; j < (size_t)S * S * 3; j++) img[(size_t)i * S * S * 3 + j] = it->rgb[j];
        split[i] = (float)it->val;
        for (s = it->caption; ; s++) { caps[o++] = (float)(unsigned char)*s; if (!*s) break; }
        for (s = it->name; ; s++) { names[q++] = (float)(unsigned char)*s; if (!*s) break; }
    }
    for (i = 0; i < n_dirs; i++) {
        const char *slash = strrchr(dirs[i], '/');
        snprintf(sources + strlen(sources), sizeof sources - strlen(sources), "%s%s", i ? "," : "", slash ? slash + 1 : dirs[i]);
    }
    memset(e, 0, sizeof e);
    e[0].name = "images";   e[0].data = img;   e[0].ndim = 4;
    e[0].shape[0] = N; e[0].shape[1] = S; e[0].shape[2] = S; e[0].shape[3] = 3;
    e[1].name = "split";    e[1].data = split; e[1].ndim = 1; e[1].shape[0] = N;
    e[2].name = "captions"; e[2].data = caps;  e[2].ndim = 1; e[2].shape[0] = (int64_t)cap_bytes;
    e[3].name = "names";    e[3].data = names; e[3].ndim = 1; e[3].shape[0] = (int64_t)name_bytes;
    snprintf(meta_v[0], sizeof meta_v[0], "%d", S);
    snprintf(meta_v[1], sizeof meta_v[1], "%d", N);
    snprintf(meta_v[2], sizeof meta_v[2], "%d", N - n_val);
    snprintf(meta_v[3], sizeof meta_v[3], "%d", n_val);
    meta[0] = "textok.model"; meta[1] = "dataset";
    meta[2] = "image_size";   meta[3] = meta_v[0];
    meta[4] = "n";            meta[5] = meta_v[1];
    meta[6] = "n_train";      meta[7] = meta_v[2];
    meta[8] = "n_val";        meta[9] = meta_v[3];
    meta[10] = "split_rule";  meta[11] = "val iff fnv1a32(base unified code) % 10 == 0";
    meta[12] = "sources";     meta[13] = sources;
    if (textok_st_save(out, e, 4, meta, 7, TEXTOK_DTYPE_U8) != TEXTOK_OK) die("%s", textok_last_error());
    printf("wrote %s: %d images (%d train, %d validation), %dx%d RGB, captions %zu bytes\n", out, N, N - n_val, n_val, S, S,
           cap_bytes);
    free(img); free(split); free(caps); free(names);
}

#define USAGE "usage: emoji_dataset --package DIR[=STYLE] [--package DIR=STYLE ...] --out FILE.safetensors " \
              "[--sample N SAMPLE.safetensors]\n"

int main(int argc, char **argv)
{
    const char *dirs[MAX_PACKAGES], *styles[MAX_PACKAGES], *out = NULL, *sample_out = NULL;
    int n_dirs = 0, i, n_val = 0, n_sample = 0;
    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--package") && i + 1 < argc) {
            char *eq;
            if (n_dirs == MAX_PACKAGES) die("at most %d --package", MAX_PACKAGES);
            dirs[n_dirs] = argv[++i];
            eq = strchr(argv[i], '=');
            styles[n_dirs] = NULL;
            if (eq) { *eq = 0; styles[n_dirs] = eq + 1; }
            n_dirs++;
        } else if (!strcmp(argv[i], "--out") && i + 1 < argc) out = argv[++i];
        else if (!strcmp(argv[i], "--sample") && i + 2 < argc) {
            n_sample = atoi(argv[++i]);
            sample_out = argv[++i];
            if (n_sample < 1 || n_sample > 300) { fprintf(stderr, "emoji_dataset: --sample N: N must be 1..300\n"); return 2; }
        } else {
            fprintf(stderr, USAGE "(unknown or incomplete argument '%s')\n", argv[i]);
            return 2;
        }
    }
    if (!n_dirs || !out) { fputs(USAGE, stderr); return 2; }
    for (i = 0; i < n_dirs; i++) read_package(dirs[i], styles[i], n_dirs > 1);
    for (i = 0; i < n_items; i++) n_val += items[i].val;
    if (n_val < 300) die("only %d validation images (at least 300 are needed)", n_val);
    write_file(out, dirs, n_dirs, NULL, 0);
    if (sample_out) {
        int *pick = (int *)xmalloc((size_t)n_sample * sizeof(int)), k = 0, v = 0;
        for (i = 0; i < n_items && k < n_sample; i++)
            if (items[i].val) {
                if (v == (int)((long long)k * n_val / n_sample)) pick[k++] = i;
                v++;
            }
        write_file(sample_out, dirs, n_dirs, pick, n_sample);
        free(pick);
    }
    for (i = 0; i < n_items; i++) { free(items[i].name); free(items[i].caption); free(items[i].rgb); }
    free(items);
    return 0;
}
