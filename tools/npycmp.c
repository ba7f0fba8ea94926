/* npycmp: compares two float arrays from .npy, .safetensors or token .json files.

     build/npycmp A B [--tol T] [--exact]
     build/npycmp --extract A OUT.npy      writes A as a float32 .npy (e.g. one row of a golden
                                           tensor, as an input for the examples)

   A and B are each one of
     file.npy                         a float32 .npy array
     file.safetensors:TENSOR          a tensor (F32/F16/BF16) of a safetensors file
     file.safetensors:TENSOR@i        index i of that tensor's first dimension
     file.json                        {"tokens": [...]} as written by build/tokenize (nested lists
                                      are flattened; ids are compared as float values)
   Only the element counts must agree (so (1,K) matches a (K,) slice); both shapes are printed.
   B is the reference. Prints the max abs error, the relative L2 error |A-B|/|B| and the NMSE
   |A-B|^2/|B|^2, then OK or FAIL. Passes when the relative L2 error is <= T (default 1e-4), or
   with --exact when every element is equal. Any NaN in either array fails.
   Exit status: 0 match, 1 mismatch, 2 bad command line or unreadable input. */
#define TEXTOK_IMPLEMENTATION
#include "textok.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct array {
    float  *data;                      /* malloc'd */
    size_t  n;
    int     ndim;
    int64_t shape[TEXTOK_MAX_DIMS];
} array;

/* spec NULL: why comes from textok_last_error(), which already names the file */
static int fail_input(const char *spec, const char *why)
{
    if (spec) fprintf(stderr, "npycmp: %s: %s\n", spec, why);
    else fprintf(stderr, "npycmp: %s\n", why);
    return 2;
}

static int load_npy(const char *path, array *a)
{
    float *d;
    int i;
    if (textok_npy_read(path, &d, &a->ndim, a->shape) != TEXTOK_OK) return fail_input(NULL, textok_last_error());
    for (a->n = 1, i = 0; i < a->ndim; i++) a->n *= (size_t)a->shape[i];
    a->data = (float *)malloc(a->n ? a->n * sizeof(float) : 1);
    if (!a->data) return fail_input(path, "out of memory");
    memcpy(a->data, d, a->n * sizeof(float));
    textok_free(d);
    return 0;
}

/* "file.safetensors:TENSOR" or "...:TENSOR@i"; spec is split in place */
static int load_st(char *spec, char *colon, array *a)
{
    textok_safetensors st;
    const textok_st_tensor *t;
    char *at = strrchr(colon + 1, '@'), *end;
    long idx = -1;
    size_t row;
    int i, rc;
    *colon = 0;
    if (at) {
        *at = 0;
        idx = strtol(at + 1, &end, 10);
        if (end == at + 1 || *end || idx < 0) return fail_input(at + 1, "the index after '@' is not a number >= 0");
    }
    if (textok_st_open(&st, spec) != TEXTOK_OK) return fail_input(NULL, textok_last_error());
    if (!(t = textok_st_find(&st, colon + 1))) {
        textok_st_close(&st);
        fprintf(stderr, "npycmp: %s: no tensor named '%s'\n", spec, colon + 1);
        return 2;
    }
    a->ndim = t->ndim;
    memcpy(a->shape, t->shape, sizeof a->shape);
    a->n = t->numel;
    a->data = (float *)malloc(a->n ? a->n * sizeof(float) : 1);
    rc = a->data ? textok_st_read_f32(&st, t, a->data, a->n) : TEXTOK_ERR_NOMEM;
    textok_st_close(&st);
    if (rc != TEXTOK_OK) return a->data ? fail_input(NULL, textok_last_error()) : fail_input(spec, "out of memory");
    if (idx >= 0) {   /* keep row idx of the first dimension */
        if (a->ndim < 1 || idx >= a->shape[0]) return fail_input(spec, "index after '@' is out of range");
        row = a->n / (size_t)a->shape[0];
        memmove(a->data, a->data + (size_t)idx * row, row * sizeof(float));
        a->n = row;
        for (i = 1; i < a->ndim; i++) a->shape[i - 1] = a->shape[i];
        a->shape[--a->ndim] = 0;
    }
    return 0;
}

/* {"tokens": [..]}: every number inside the value of "tokens", nested lists flattened */
static int load_json(const char *path, array *a)
{
    FILE *f = fopen(path, "rb");
    char *text, *p, *end;
    long size;
    size_t cap = 64;
    int depth = 0;
    if (!f) return fail_input(path, "cannot open");
    if (fseek(f, 0, SEEK_END) || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET)) {
        fclose(f);
        return fail_input(path, "cannot read");
    }
    text = (char *)malloc((size_t)size + 1);
    if (!text || fread(text, 1, (size_t)size, f) != (size_t)size) {
        fclose(f);
        free(text);
        return fail_input(path, "cannot read");
    }
    fclose(f);
    text[size] = 0;
    a->n = 0;
    a->data = (float *)malloc(cap * sizeof(float));
    if (!a->data || !(p = strstr(text, "\"tokens\""))) {
        free(text);
        return fail_input(path, "no \"tokens\" key");
    }
    for (p += 8; *p == ' ' || *p == '\n' || *p == '\r' || *p == '\t' || *p == ':'; p++) {}
    if (*p != '[') {
        free(text);
        return fail_input(path, "the value of \"tokens\" is not a list");
    }
    do {
        if (*p == '[') depth++, p++;
        else if (*p == ']') depth--, p++;
        else if (*p == ',' || *p == ' ' || *p == '\n' || *p == '\r' || *p == '\t') p++;
        else {
            double v = strtod(p, &end);
            if (end == p || !depth) {
                free(text);
                return fail_input(path, "the value of \"tokens\" is not a list of numbers");
            }
            if (a->n == cap && !(a->data = (float *)realloc(a->data, (cap *= 2) * sizeof(float)))) {
                free(text);
                return fail_input(path, "out of memory");
            }
            a->data[a->n++] = (float)v;
            p = end;
        }
    } while (depth > 0);
    free(text);
    a->ndim = 1;
    a->shape[0] = (int64_t)a->n;
    return 0;
}

static int load(char *spec, array *a)
{
    size_t n = strlen(spec);
    char *colon = strstr(spec, ".safetensors:");
    if (colon) return load_st(spec, colon + 12, a);
    if (n > 5 && !strcmp(spec + n - 5, ".json")) return load_json(spec, a);
    if (n > 4 && !strcmp(spec + n - 4, ".npy")) return load_npy(spec, a);
    return fail_input(spec, "expected file.npy, file.json or file.safetensors:TENSOR[@i]");
}

static void print_shape(const char *label, const array *a)
{
    int i;
    printf("%s (", label);
    for (i = 0; i < a->ndim; i++) printf(i ? ", %lld" : "%lld", (long long)a->shape[i]);
    printf("%s)", a->ndim == 1 ? "," : "");
}

int main(int argc, char **argv)
{
    char *spec[2] = { NULL, NULL };
    double tol = 1e-4, max_abs = 0, se = 0, ref2 = 0, rel, nmse;
    int exact = 0, n_spec = 0, i, nan = 0, rc = 0, ok;
    size_t k, n_diff = 0;
    array a[2];
    memset(a, 0, sizeof a);
    if (argc == 4 && !strcmp(argv[1], "--extract")) {
        if ((rc = load(argv[2], &a[0]))) return rc;
        rc = textok_npy_write(argv[3], a[0].data, a[0].ndim, a[0].shape) == TEXTOK_OK ? 0 : fail_input(NULL, textok_last_error());
        free(a[0].data);
        return rc;
    }
    for (i = 1; i < argc; i++) {
        char *end;
        if (!strcmp(argv[i], "--exact")) exact = 1;
        else if (!strcmp(argv[i], "--tol") && i + 1 < argc) {
            tol = strtod(argv[++i], &end);
            if (end == argv[i] || *end || !(tol >= 0)) n_spec = 99;
        } else if (argv[i][0] != '-' && n_spec < 2) spec[n_spec++] = argv[i];
        else n_spec = 99;
    }
    if (n_spec != 2) {
        fprintf(stderr, "usage: npycmp A B [--tol T] [--exact]\n"
                        "       npycmp --extract A OUT.npy\n"
                        "  A, B: file.npy | file.json | file.safetensors:TENSOR[@i]\n");
        return 2;
    }
    if ((rc = load(spec[0], &a[0])) || (rc = load(spec[1], &a[1]))) {
        free(a[0].data); free(a[1].data);
        return rc;
    }
    print_shape("A", &a[0]);
    print_shape(" vs B", &a[1]);
    printf("\n");
    if (a[0].n != a[1].n) {
        fprintf(stderr, "npycmp: FAIL: element counts differ: '%s' holds %zu, '%s' %zu\n", spec[0], a[0].n, spec[1], a[1].n);
        free(a[0].data); free(a[1].data);
        return 1;
    }
    for (k = 0; k < a[0].n; k++) {
        double x = a[0].data[k], y = a[1].data[k], d = fabs(x - y);
        if (isnan(x) || isnan(y)) { nan++; continue; }
        if (!(d <= max_abs)) max_abs = d;   /* also picks up inf */
        if (x != y) n_diff++;
        se += d * d;
        ref2 += y * y;
    }
    rel = ref2 > 0 ? sqrt(se / ref2) : (se > 0 ? INFINITY : 0);
    nmse = ref2 > 0 ? se / ref2 : (se > 0 ? INFINITY : 0);
    ok = !nan && (exact ? n_diff == 0 : rel <= tol);
    printf("max_abs %.3e  rel_l2 %.3e  nmse %.3e  differing %zu/%zu", max_abs, rel, nmse, n_diff, a[0].n);
    if (nan) printf("  NaN %d", nan);
    printf("  -> %s (%s)\n", ok ? "OK" : "FAIL", exact ? "--exact" : "rel_l2 <= tol");
    free(a[0].data); free(a[1].data);
    return ok ? 0 : 1;
}
