/* test_io.c - file I/O: F16/BF16 conversions, safetensors and npy round trips, and a table of
   hand-made broken files (tests/bad/, written by tools/make_bad_files.py) that must each fail
   with the right status and a message that names the problem. Paths are relative to the
   repository root (the runner's cwd); temporary files go to $TMPDIR or /tmp. */
#include "textok.h"
#include "check.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#define IO_PID ((long)getpid())
#else
#define IO_PID 0L
#endif

/* ---- helpers ---------------------------------------------------------------------------- */

static const char *status_name(int s)
{
    switch (s) {
    case TEXTOK_OK: return "OK";
    case TEXTOK_ERR_IO: return "ERR_IO";
    case TEXTOK_ERR_FORMAT: return "ERR_FORMAT";
    case TEXTOK_ERR_SHAPE: return "ERR_SHAPE";
    case TEXTOK_ERR_NOMEM: return "ERR_NOMEM";
    case TEXTOK_ERR_ARG: return "ERR_ARG";
    case TEXTOK_ERR_NOT_FOUND: return "ERR_NOT_FOUND";
    case TEXTOK_ERR_UNSUPPORTED: return "ERR_UNSUPPORTED";
    default: return "?";
    }
}

static uint32_t bits_of(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float float_of(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* "<tmpdir>/textok_io_<pid>_<name>" */
static void tmp_path(char *buf, size_t cap, const char *name)
{
    const char *dir = getenv("TMPDIR");
    snprintf(buf, cap, "%s/textok_io_%ld_%s", dir && *dir ? dir : "/tmp", IO_PID, name);
}

static int file_exists(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f) fclose(f);
    return f != NULL;
}

/* path + ".tmp" must not be left behind by a writer, whether it succeeded or not */
static int no_tmp_left(const char *path)
{
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    return !file_exists(tmp);
}

/* Whole file into a malloc'd buffer (NULL if unreadable). */
static unsigned char *slurp(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf = NULL;
    long n;
    if (!f) return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
        buf = (unsigned char *)malloc((size_t)n + 1);
        if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) { free(buf); buf = NULL; }
        *size = (size_t)n;
    }
    fclose(f);
    return buf;
}

static int contains(const char *hay, const char *needle) { return strstr(hay, needle) != NULL; }

/* ": message" of a failed call, "" after a successful one (the buffer keeps the last failure) */
static const char *err_of(int rc)
{
    static char buf[600];
    if (rc == TEXTOK_OK) return "";
    snprintf(buf, sizeof buf, ": %s", textok_last_error());
    return buf;
}

/* ---- F16 / BF16 --------------------------------------------------------------------------- */

static void test_half(tt_stats *s)
{
    /* (half bits, exact float) pairs: zeros, normals, extremes, subnormals, infinities */
    static const struct { uint16_t h; float f; } dec[] = {
        { 0x0000, 0.0f }, { 0x3c00, 1.0f }, { 0xc000, -2.0f }, { 0x3555, 0.333251953125f },
        { 0x7bff, 65504.0f }, { 0x0400, 6.103515625e-05f /* 2^-14, min normal */ },
        { 0x0001, 5.9604644775390625e-08f /* 2^-24, min subnormal */ },
        { 0x03ff, 6.0975551605224609375e-05f /* 1023 * 2^-24, max subnormal */ },
        { 0x8001, -5.9604644775390625e-08f }, { 0x3bff, 0.99951171875f },
    };
    /* (float, expected half) pairs for f32 -> f16: rounding ties go to even */
    static const struct { float f; uint16_t h; const char *what; } enc[] = {
        { 1.0f, 0x3c00, "1" },
        { 1.00048828125f, 0x3c00, "1 + 2^-11 (tie, to even 0x3c00)" },
        { 1.00146484375f, 0x3c02, "1 + 3*2^-11 (tie, to even 0x3c02)" },
        { 1.00048840045928955078125f, 0x3c01, "1 + 2^-11 + 2^-23 (just above the tie)" },
        { 65504.0f, 0x7bff, "max half" },
        { 65519.99f, 0x7bff, "below the overflow tie" },
        { 65520.0f, 0x7c00, "overflow tie rounds to inf" },
        { 1e6f, 0x7c00, "overflow" },
        { -1e6f, 0xfc00, "negative overflow" },
        { 5.9604644775390625e-08f, 0x0001, "2^-24" },
        { 2.98023223876953125e-08f, 0x0000, "2^-25 (tie, to even 0)" },
        { 2.98023259404089909e-08f, 0x0001, "2^-25 + 2^-48 (just above the tie)" },
        { 8.94069671630859375e-08f, 0x0002, "3*2^-25 (tie, to even 2)" },
        { 6.0975551605224609375e-05f, 0x03ff, "max subnormal" },
        { 6.1035156e-05f, 0x0400, "min normal" },
        { 1e-10f, 0x0000, "underflow to +0" },
        { -1e-10f, 0x8000, "underflow to -0" },
        { 1e-45f, 0x0000, "f32 subnormal to 0" },
    };
    int bad = 0, first = -1, n = (int)(sizeof dec / sizeof dec[0]), i;
    uint32_t h;
    for (i = 0; i < n; i++) {
        int ok = bits_of(textok_f16_to_f32(dec[i].h)) == bits_of(dec[i].f);
        if (!ok && first < 0) first = i;
        bad += !ok;
    }
    bad += bits_of(textok_f16_to_f32(0x8000)) != 0x80000000u;                          /* -0 */
    bad += bits_of(textok_f16_to_f32(0x7c00)) != 0x7f800000u;                          /* inf */
    bad += bits_of(textok_f16_to_f32(0xfc00)) != 0xff800000u;                          /* -inf */
    bad += !isnan(textok_f16_to_f32(0x7e00)) || !isnan(textok_f16_to_f32(0xfc01));     /* NaN */
    tt_check(s, bad == 0, "io: f16->f32 exact on %d values incl. subnormals, +-0, +-inf, NaN (%d wrong; first table row %d)",
             n + 4, bad, first);

    bad = 0;
    first = -1;
    n = (int)(sizeof enc / sizeof enc[0]);
    for (i = 0; i < n; i++) {
        int ok = textok_f32_to_f16(enc[i].f) == enc[i].h;
        if (!ok && first < 0) first = i;
        bad += !ok;
    }
    tt_check(s, bad == 0, "io: f32->f16 round-to-nearest-even on %d values incl. ties, overflow, underflow%s%s",
             n, bad ? " - first wrong: " : "", bad ? enc[first].what : "");
    bad = textok_f32_to_f16(-0.0f) != 0x8000 || textok_f32_to_f16(float_of(0x7f800000u)) != 0x7c00 ||
          textok_f32_to_f16(float_of(0xff800000u)) != 0xfc00;
    h = textok_f32_to_f16(float_of(0x7fc00000u));
    bad += (h & 0x7c00) != 0x7c00 || (h & 0x3ff) == 0;
    h = textok_f32_to_f16(float_of(0x7f800001u));   /* signalling NaN with a payload below f16 bits */
    bad += (h & 0x7c00) != 0x7c00 || (h & 0x3ff) == 0;
    tt_check(s, bad == 0, "io: f32->f16 keeps -0, +-inf, and NaN (incl. a low-payload NaN) as NaN");

    /* every half value survives f16 -> f32 -> f16 bit for bit (NaNs stay NaN) */
    bad = 0;
    for (h = 0; h < 0x10000u; h++) {
        float f = textok_f16_to_f32((uint16_t)h);
        uint16_t back = textok_f32_to_f16(f);
        if (isnan(f) ? !((back & 0x7c00) == 0x7c00 && (back & 0x3ff)) : back != h) bad++;
    }
    tt_check(s, bad == 0, "io: all 65536 halves round-trip f16->f32->f16 exactly (%d wrong)", bad);

    bad = bits_of(textok_bf16_to_f32(0x3f80)) != bits_of(1.0f);
    bad += bits_of(textok_bf16_to_f32(0xc040)) != bits_of(-3.0f);
    bad += bits_of(textok_bf16_to_f32(0x7f80)) != 0x7f800000u;
    bad += bits_of(textok_bf16_to_f32(0x0001)) != 0x00010000u;   /* f32 subnormal */
    bad += bits_of(textok_bf16_to_f32(0x8000)) != 0x80000000u;
    bad += !isnan(textok_bf16_to_f32(0x7fc0));
    tt_check(s, bad == 0, "io: bf16->f32 is bits<<16 (1, -3, inf, subnormal, -0, NaN)");
}

/* ---- safetensors ------------------------------------------------------------------------- */

/* Fills x[i] with a deterministic pattern that is exact in F16 when f16_exact. */
static void pattern(float *x, size_t n, float scale, int f16_exact)
{
    size_t i;
    for (i = 0; i < n; i++) {
        x[i] = scale * (float)((int)(i * 37 % 23) - 11) / 8.0f;
        if (!f16_exact) x[i] += 1e-4f * (float)i;
    }
}

static void test_st_roundtrip(tt_stats *s, int dtype)
{
    const char *dn = dtype == TEXTOK_DTYPE_F32 ? "F32" : "F16";
    char path[512], name[64];
    float w[12], b[4], sc = 3.25f, got[12];
    textok_st_entry e[5];
    const char *meta[] = { "format", "pt", "note", "quote \" back\\slash\nnewline \xc3\xa9" };
    const char *odd = "odd \"name\"\\\t\xe2\x82\xac";
    textok_safetensors st;
    const textok_st_tensor *t;
    int rc, ok, i;

    snprintf(name, sizeof name, "rt_%s.safetensors", dn);
    tmp_path(path, sizeof path, name);
    pattern(w, 12, 1.0f, 0);
    pattern(b, 4, 0.5f, 1);
    memset(e, 0, sizeof e);
    e[0].name = "enc.w"; e[0].data = w; e[0].ndim = 2; e[0].shape[0] = 3; e[0].shape[1] = 4;
    e[1].name = "enc.b"; e[1].data = b; e[1].ndim = 1; e[1].shape[0] = 4;
    e[2].name = "scalar"; e[2].data = &sc; e[2].ndim = 0;
    e[3].name = "empty"; e[3].data = NULL; e[3].ndim = 2; e[3].shape[0] = 0; e[3].shape[1] = 5;
    e[4].name = odd; e[4].data = b; e[4].ndim = 1; e[4].shape[0] = 4;
    rc = textok_st_save(path, e, 5, meta, 2, dtype);
    tt_check(s, rc == TEXTOK_OK && no_tmp_left(path), "io: st_save %s with metadata, a scalar, a zero-size tensor -> %s%s",
             dn, status_name(rc), err_of(rc));

    rc = textok_st_open(&st, path);
    ok = rc == TEXTOK_OK && st.n_tensors == 5 && st.n_meta == 2 && st.mapped == 1 &&
         (size_t)(st.buffer - st.data) % 8 == 0;
    tt_check(s, ok, "io: st_open %s: 5 tensors, 2 metadata, mmapped, data 8-aligned (%s%s)", dn, status_name(rc),
             err_of(rc));
    if (rc != TEXTOK_OK) return;
    ok = textok_st_meta(&st, "format") && !strcmp(textok_st_meta(&st, "format"), "pt") &&
         textok_st_meta(&st, "note") && !strcmp(textok_st_meta(&st, "note"), meta[3]) && !textok_st_meta(&st, "nope");
    tt_check(s, ok, "io: st %s metadata strings with quote, backslash, newline, UTF-8 round-trip", dn);
    ok = 1;
    for (i = 0; i < st.n_tensors; i++) ok &= st.tensors[i].dtype == dtype && !strcmp(st.tensors[i].name, e[i].name);
    t = textok_st_find(&st, odd);
    tt_check(s, ok && t && t->numel == 4, "io: st %s tensors in the given order, dtype %s, escaped name found", dn, dn);

    {
        int64_t sh[2] = { 3, 4 };
        float ref[12];
        for (i = 0; i < 12; i++) ref[i] = dtype == TEXTOK_DTYPE_F32 ? w[i] : textok_f16_to_f32(textok_f32_to_f16(w[i]));
        rc = textok_st_load(&st, "enc.w", 2, sh, got);
        snprintf(name, sizeof name, "io: st %s enc.w [3, 4] (rc %d)", dn, rc);
        tt_compare(s, name, got, ref, 12, 0.0);
        rc = textok_st_load(&st, "enc.b", 1, sh + 1, got);
        snprintf(name, sizeof name, "io: st %s enc.b [4], F16-exact values (rc %d)", dn, rc);
        tt_compare(s, name, got, b, 4, 0.0);
        rc = textok_st_load(&st, "scalar", 0, NULL, got);
        t = textok_st_find(&st, "scalar");
        tt_check(s, rc == TEXTOK_OK && got[0] == sc && t && t->ndim == 0 && t->numel == 1,
                 "io: st %s 0-d scalar reads back 3.25 (got %g)", dn, got[0]);
        t = textok_st_find(&st, "empty");
        rc = t ? textok_st_read_f32(&st, t, NULL, 0) : -100;
        tt_check(s, rc == TEXTOK_OK && t->numel == 0 && t->nbytes == 0 && t->shape[1] == 5,
                 "io: st %s zero-size [0, 5] tensor reads with dst NULL", dn);
    }
    if (dtype == TEXTOK_DTYPE_F32) {
        int64_t sh[2] = { 3, 5 };
        rc = textok_st_load(&st, "enc.w", 2, sh, got);
        tt_check(s, rc == TEXTOK_ERR_SHAPE && contains(textok_last_error(), "expected [3, 5] but file has [3, 4]") &&
                 contains(textok_last_error(), "enc.w"), "io: st_load wrong shape -> %s%s", status_name(rc), err_of(rc));
        rc = textok_st_load(&st, "enc.missing", 2, sh, got);
        tt_check(s, rc == TEXTOK_ERR_NOT_FOUND && contains(textok_last_error(), "'enc.missing'"),
                 "io: st_load missing tensor -> %s%s", status_name(rc), err_of(rc));
        rc = textok_st_read_f32(&st, textok_st_find(&st, "enc.w"), got, 11);
        tt_check(s, rc == TEXTOK_ERR_SHAPE && contains(textok_last_error(), "11"),
                 "io: st_read_f32 with dst_numel 11 for 12 -> %s%s", status_name(rc), err_of(rc));
    }
    textok_st_close(&st);
    ok = st.data == NULL && st.tensors == NULL && st.n_tensors == 0;
    textok_st_close(&st);   /* closing twice is harmless */
    tt_check(s, ok, "io: st_close %s zeroes the struct; a second close is safe", dn);
    remove(path);
}

/* U8 (the dataset files' dtype): stored rounded and clamped to [0, 255] (NaN as 0), read back
   as the byte values; textok_st_load, which fills model weights, refuses it by name. */
static void test_st_u8(tt_stats *s)
{
    char path[512];
    const float x[8] = { 0.0f, 1.0f, 2.6f, 254.5f, 255.0f, 300.0f, -3.0f, NAN };
    const float want[8] = { 0, 1, 3, 255, 255, 255, 0, 0 };
    float got[8] = { 0 };
    textok_st_entry e[1];
    textok_safetensors st;
    const textok_st_tensor *t;
    int64_t sh[1] = { 8 };
    int rc;
    tmp_path(path, sizeof path, "rt_u8.safetensors");
    memset(e, 0, sizeof e);
    e[0].name = "bytes"; e[0].data = x; e[0].ndim = 1; e[0].shape[0] = 8;
    rc = textok_st_save(path, e, 1, NULL, 0, TEXTOK_DTYPE_U8);
    tt_check(s, rc == TEXTOK_OK, "io: st_save U8 -> %s%s", status_name(rc), err_of(rc));
    rc = textok_st_open(&st, path);
    if (rc != TEXTOK_OK) { tt_check(s, 0, "io: st_open U8 -> %s%s", status_name(rc), err_of(rc)); return; }
    t = textok_st_find(&st, "bytes");
    tt_check(s, t && t->dtype == TEXTOK_DTYPE_U8 && t->nbytes == 8, "io: st U8 tensor: dtype U8, 1 byte per value");
    rc = t ? textok_st_read_f32(&st, t, got, 8) : -100;
    tt_compare(s, "io: st U8 reads back rounded, clamped byte values (NaN -> 0)", got, want, 8, 0.0);
    rc = textok_st_load(&st, "bytes", 1, sh, got);
    tt_check(s, rc == TEXTOK_ERR_FORMAT && contains(textok_last_error(), "'bytes' is U8"),
             "io: st_load refuses a U8 tensor as weights -> %s%s", status_name(rc), err_of(rc));
    textok_st_close(&st);
    remove(path);
}

/* A file as other writers make it: header length not a multiple of 8 (so the data is unaligned),
   BF16 and F16 data, a hole between tensors, \u escapes in a name, whitespace in the JSON. */
static void test_st_foreign(tt_stats *s)
{
    static const char json[] =
        "{ \"b\\u00e9\\ud83d\\ude00\" : {\"shape\":[2],\"dtype\":\"BF16\",\"data_offsets\":[0,4]},\n"
        "  \"h\": {\"dtype\": \"F16\", \"shape\": [3], \"data_offsets\": [8, 14]},\n"
        "  \"f\": {\"dtype\": \"F32\", \"shape\": [1, 2], \"data_offsets\": [14, 22]},\n"
        "  \"__metadata__\": {} }";
    static const unsigned char data[22] = {
        0x80, 0x3f, 0x40, 0xc0,                 /* bf16 1.0, -3.0 */
        0xee, 0xee, 0xee, 0xee,                 /* a hole */
        0x00, 0x3c, 0x01, 0x00, 0x00, 0x7c,     /* f16 1.0, 2^-24, inf */
        0x00, 0x00, 0x20, 0x40, 0x00, 0x00, 0x80, 0xbf  /* f32 2.5, -1.0 */
    };
    unsigned char file[512];
    size_t n = sizeof json - 1, i;
    textok_safetensors st;
    float got[3];
    const textok_st_tensor *t;
    int rc, ok;
    for (i = 0; i < 8; i++) file[i] = (unsigned char)(n >> (8 * i));
    memcpy(file + 8, json, n);
    memcpy(file + 8 + n, data, sizeof data);
    rc = textok_st_open_memory(&st, file, 8 + n + sizeof data, "foreign.safetensors");
    tt_check(s, rc == TEXTOK_OK && st.n_tensors == 3 && st.mapped == -1 && (8 + n) % 4 != 0,
             "io: st_open_memory: unaligned data, BF16/F16/F32, a hole, \\u escapes -> %s%s", status_name(rc),
             err_of(rc));
    if (rc != TEXTOK_OK) return;
    t = textok_st_find(&st, "b\xc3\xa9\xf0\x9f\x98\x80");
    ok = t && textok_st_read_f32(&st, t, got, 2) == TEXTOK_OK && got[0] == 1.0f && got[1] == -3.0f;
    tt_check(s, ok, "io: BF16 tensor named with \\u00e9 and a surrogate pair reads [1, -3]");
    t = textok_st_find(&st, "h");
    ok = t && textok_st_read_f32(&st, t, got, 3) == TEXTOK_OK && got[0] == 1.0f && got[1] == 5.9604644775390625e-08f &&
         isinf(got[2]);
    tt_check(s, ok, "io: F16 tensor at an odd file offset reads [1, 2^-24, inf]");
    t = textok_st_find(&st, "f");
    ok = t && textok_st_read_f32(&st, t, got, 2) == TEXTOK_OK && got[0] == 2.5f && got[1] == -1.0f;
    tt_check(s, ok, "io: F32 tensor at an unaligned address reads [2.5, -1]");
    textok_st_close(&st);

    /* every truncation of this valid file must fail cleanly (ASan checks the reads) */
    ok = 1;
    for (i = 0; i < 8 + n + sizeof data; i++) {
        rc = textok_st_open_memory(&st, file, i, "cut");
        ok &= rc < 0 && st.n_tensors == 0 && st.tensors == NULL && textok_last_error()[0];
    }
    tt_check(s, ok, "io: all %zu truncations of a valid file fail with a message and leave st closed",
             8 + n + sizeof data);
    /* flipping any byte to a few values never crashes; count what is still accepted */
    {
        static const unsigned char vals[] = { 0x00, 0x22, 0x2c, 0x5c, 0x7d, 0xff };
        size_t v, accepted = 0, cases = 0;
        for (i = 0; i < 8 + n; i++)
            for (v = 0; v < sizeof vals; v++) {
                unsigned char keep = file[i];
                file[i] = vals[v];
                rc = textok_st_open_memory(&st, file, 8 + n + sizeof data, "flip");
                accepted += rc == TEXTOK_OK;
                cases++;
                textok_st_close(&st);
                file[i] = keep;
            }
        tt_check(s, 1, "io: %zu single-byte corruptions of the header: no crash, %zu still valid", cases, accepted);
    }
}

/* Header edge cases, each opened from memory with 16 zero bytes of data after the header. */
static const struct { const char *json; int status; const char *expect; } JSON_CASES[] = {
    { "{}", TEXTOK_OK, "" },
    { " {\"w\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}} \n\t ", TEXTOK_OK, "" },
    { "{\"a\\/b\\\"c\\\\\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", TEXTOK_OK, "" },
    { "{\"e\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]},"
      "\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", TEXTOK_OK, "" },
    { "   ", TEXTOK_ERR_FORMAT, "not a JSON object" },
    { "{\"a\\ud800\":{}}", TEXTOK_ERR_FORMAT, "unpaired UTF-16 surrogate" },
    { "{\"a\\udc00b\":{}}", TEXTOK_ERR_FORMAT, "unpaired UTF-16 surrogate" },
    { "{\"a\\ud800\\u0041\":{}}", TEXTOK_ERR_FORMAT, "unpaired UTF-16 surrogate" },
    { "{\"\\u0000\":{}}", TEXTOK_ERR_FORMAT, "\\u0000 is not allowed" },
    { "{\"\\u12g4\":{}}", TEXTOK_ERR_FORMAT, "bad \\u escape" },
    { "{\"abc", TEXTOK_ERR_FORMAT, "unterminated string" },
    { "{\"w\":5}", TEXTOK_ERR_FORMAT, "tensor 'w': expected an object" },
    { "{\"w\":{\"dtype\":5}}", TEXTOK_ERR_FORMAT, "expected a string but found '5'" },
    { "{\"w\":{\"dtype\":\"F32\",\"shape\":[01],\"data_offsets\":[0,4]}}", TEXTOK_ERR_FORMAT, "leading zeros" },
    { "{\"w\":{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}", TEXTOK_ERR_FORMAT, "found a fraction" },
    { "{\"w\":{\"dtype\":\"F32\",\"shape\":[true],\"data_offsets\":[0,4]}}", TEXTOK_ERR_FORMAT,
      "expected a non-negative integer at header byte 29 ('true')" },
    { "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", TEXTOK_ERR_FORMAT,
      "data_offsets has more than 2 entries" },
    { "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", TEXTOK_ERR_FORMAT, "found 1 entries" },
    { "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},}", TEXTOK_ERR_FORMAT,
      "expected a string but found '}'" },
    { "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}", TEXTOK_ERR_FORMAT, "but the header ends" },
    { "{\"__metadata__\":{\"a\":\"b\"},\"__metadata__\":{}}", TEXTOK_ERR_FORMAT, "duplicate key '__metadata__'" },
    { "{\"__metadata__\":{\"a\":\"b\",\"a\":\"c\"}}", TEXTOK_ERR_FORMAT, "duplicate __metadata__ key 'a'" },
    { "{\"__metadata__\":[]}", TEXTOK_ERR_FORMAT, "__metadata__ must be an object" },
    { "{\"w\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904,2],\"data_offsets\":[0,4]}}", TEXTOK_ERR_FORMAT,
      "needs more bytes than fit in size_t (overflow)" },
    { "{\"a\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]},"
      "\"b\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[2,4]}}", TEXTOK_ERR_FORMAT, "overlap" },
};

static void test_st_json(tt_stats *s)
{
    size_t i, k, n = sizeof JSON_CASES / sizeof JSON_CASES[0];
    for (i = 0; i < n; i++) {
        unsigned char img[512];
        size_t len = strlen(JSON_CASES[i].json);
        textok_safetensors st;
        int rc, ok;
        for (k = 0; k < 8; k++) img[k] = (unsigned char)(len >> (8 * k));
        memcpy(img + 8, JSON_CASES[i].json, len);
        memset(img + 8 + len, 0, 16);
        textok_clear_error();
        rc = textok_st_open_memory(&st, img, 8 + len + 16, "edge");
        ok = rc == JSON_CASES[i].status && (rc == TEXTOK_OK || contains(textok_last_error(), JSON_CASES[i].expect));
        tt_check(s, ok, "io: header %-2zu -> %s%s", i, status_name(rc), rc ? err_of(rc) : " (valid)");
        textok_st_close(&st);
    }
}

static void test_st_errors(tt_stats *s)
{
    char path[512], bad[600];
    float x[4] = { 1, 2, 3, 4 };
    textok_st_entry e[2];
    textok_safetensors st;
    int rc;

    tmp_path(path, sizeof path, "no_such_dir/model.safetensors");
    memset(e, 0, sizeof e);
    e[0].name = "w"; e[0].data = x; e[0].ndim = 1; e[0].shape[0] = 4;
    rc = textok_st_save(path, e, 1, NULL, 0, TEXTOK_DTYPE_F32);
    tt_check(s, rc == TEXTOK_ERR_IO && contains(textok_last_error(), path) && !file_exists(path) && no_tmp_left(path),
             "io: st_save into a missing directory -> %s, nothing left%s", status_name(rc), err_of(rc));

    tmp_path(path, sizeof path, "args.safetensors");
    e[1] = e[0];
    rc = textok_st_save(path, e, 2, NULL, 0, TEXTOK_DTYPE_F32);
    tt_check(s, rc == TEXTOK_ERR_ARG && contains(textok_last_error(), "duplicate") && !file_exists(path),
             "io: st_save duplicate names -> %s%s", status_name(rc), err_of(rc));
    e[1].name = "v"; e[1].shape[0] = -1;
    rc = textok_st_save(path, e, 2, NULL, 0, TEXTOK_DTYPE_F32);
    tt_check(s, rc == TEXTOK_ERR_ARG && contains(textok_last_error(), "negative") && !file_exists(path),
             "io: st_save negative dim -> %s%s", status_name(rc), err_of(rc));
    e[1].shape[0] = 4; e[1].data = NULL;
    rc = textok_st_save(path, e, 2, NULL, 0, TEXTOK_DTYPE_F32);
    tt_check(s, rc == TEXTOK_ERR_ARG && contains(textok_last_error(), "NULL") && !file_exists(path),
             "io: st_save NULL data for 4 elements -> %s%s", status_name(rc), err_of(rc));
    e[1].data = x; e[1].ndim = TEXTOK_MAX_DIMS + 1;
    rc = textok_st_save(path, e, 2, NULL, 0, TEXTOK_DTYPE_F32);
    tt_check(s, rc == TEXTOK_ERR_ARG && contains(textok_last_error(), "ndim 9") && !file_exists(path),
             "io: st_save ndim 9 -> %s%s", status_name(rc), err_of(rc));
    rc = textok_st_save(path, e, 1, NULL, 0, TEXTOK_DTYPE_BF16);
    tt_check(s, rc == TEXTOK_ERR_ARG && !file_exists(path), "io: st_save dtype BF16 -> %s%s", status_name(rc),
             err_of(rc));

    tmp_path(bad, sizeof bad, "does_not_exist.safetensors");
    rc = textok_st_open(&st, bad);
    tt_check(s, rc == TEXTOK_ERR_IO && contains(textok_last_error(), bad) && st.tensors == NULL,
             "io: st_open missing file -> %s%s", status_name(rc), err_of(rc));
    {
        /* a long path is kept by its end, where the file name is */
        char longp[400];
        const char *msg;
        memset(longp, 'd', sizeof longp);
        memcpy(longp, "/nonexistent/", 13);
        memcpy(longp + sizeof longp - 17, "/end.safetensors", 17);
        rc = textok_st_open(&st, longp);
        msg = textok_last_error();
        tt_check(s, rc == TEXTOK_ERR_IO && !strncmp(msg, "...d", 4) && contains(msg, "/end.safetensors"),
                 "io: st_open on a 399-character path keeps its end -> %s: ...%s", status_name(rc),
                 msg + (strlen(msg) > 60 ? strlen(msg) - 60 : 0));
    }
    memset(&st, 0, sizeof st);
    textok_st_close(&st);
    tt_check(s, 1, "io: st_close on a zeroed struct is safe");
}

/* ---- npy --------------------------------------------------------------------------------- */

static void test_npy(tt_stats *s)
{
    char path[512], what[96];
    float x[12], *got = NULL;
    int64_t sh[TEXTOK_MAX_DIMS], shapes[3][2] = { { 3, 4 }, { 5, 0 }, { 0, 0 } };
    int nds[3] = { 2, 1, 0 }, k, nd, rc;
    size_t size, pre, numel[3] = { 12, 5, 1 };
    unsigned char *bytes;

    pattern(x, 12, 1.0f, 0);
    for (k = 0; k < 3; k++) {
        snprintf(what, sizeof what, "rt_%dd.npy", nds[k]);
        tmp_path(path, sizeof path, what);
        rc = textok_npy_write(path, x, nds[k], shapes[k]);
        bytes = slurp(path, &size);
        /* numpy's layout: magic, v1.0, u16 length, header ending in '\n', data at a multiple of 64 */
        pre = bytes && size >= 4 * numel[k] ? size - 4 * numel[k] : 1;
        tt_check(s, rc == TEXTOK_OK && no_tmp_left(path) && bytes && pre % 64 == 0 && bytes[pre - 1] == '\n' &&
                 bytes[6] == 1 && bytes[7] == 0 && bytes[8] + 256 * bytes[9] + 10 == (int)pre,
                 "io: npy_write %d-d -> %s%s, v1.0, preamble %zu bytes ending in newline", nds[k], status_name(rc),
                 err_of(rc), pre);
        got = NULL;
        rc = textok_npy_read(path, &got, &nd, sh);
        tt_check(s, rc == TEXTOK_OK && nd == nds[k] && (nd < 1 || sh[0] == shapes[k][0]) && (nd < 2 || sh[1] == shapes[k][1]) &&
                 sh[TEXTOK_MAX_DIMS - 1] == 0, "io: npy_read %d-d shape -> %s%s", nds[k], status_name(rc), err_of(rc));
        snprintf(what, sizeof what, "io: npy %d-d data round trip", nds[k]);
        if (got) tt_compare(s, what, got, x, numel[k], 0.0);
        textok_free(got);
        free(bytes);
        remove(path);
    }

    /* byte-exact against numpy: np.save of a (2, 3) float32 array of 0..5 */
    {
        unsigned char want[128 + 24];
        static const char dict[] = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
        int64_t s23[2] = { 2, 3 };
        float v[6] = { 0, 1, 2, 3, 4, 5 };
        memcpy(want, "\x93NUMPY\x01\x00\x76\x00", 10);
        memset(want + 10, ' ', 118);
        memcpy(want + 10, dict, sizeof dict - 1);
        want[127] = '\n';
        for (k = 0; k < 6; k++) {
            uint32_t u = bits_of(v[k]);
            int b;
            for (b = 0; b < 4; b++) want[128 + 4 * k + b] = (unsigned char)(u >> (8 * b));
        }
        tmp_path(path, sizeof path, "numpy23.npy");
        rc = textok_npy_write(path, v, 2, s23);
        bytes = slurp(path, &size);
        tt_check(s, rc == TEXTOK_OK && bytes && size == sizeof want && !memcmp(bytes, want, sizeof want),
                 "io: npy_write (2, 3) is byte-identical to numpy's np.save (%zu bytes)", bytes ? size : 0);
        free(bytes);
        remove(path);
    }

    /* version 2.0 (u32 header length), Python-2 style 3L, double-quoted keys, keys reordered */
    {
        static const char dict[] = "{\"shape\": (1L, 2L), 'fortran_order': False, 'descr': '<f4'}\n";
        unsigned char img[128];
        size_t hl = sizeof dict - 1;
        memcpy(img, "\x93NUMPY\x02\x00", 8);
        img[8] = (unsigned char)hl; img[9] = img[10] = img[11] = 0;
        memcpy(img + 12, dict, hl);
        memcpy(img + 12 + hl, "\x00\x00\x80\x3f\x00\x00\x00\xc0", 8);   /* 1.0, -2.0 */
        got = NULL;
        rc = textok_npy_read_memory(img, 12 + hl + 8, "v2.npy", &got, &nd, sh);
        tt_check(s, rc == TEXTOK_OK && nd == 2 && sh[0] == 1 && sh[1] == 2 && got && got[0] == 1.0f && got[1] == -2.0f,
                 "io: npy_read_memory v2.0 header, 1L-style ints, reordered keys -> %s%s", status_name(rc),
                 err_of(rc));
        textok_free(got);
        for (size = 0, k = 1; size < 12 + hl + 8; size++) k &= textok_npy_read_memory(img, size, "cut", &got, &nd, sh) < 0;
        tt_check(s, k, "io: all %zu truncations of a valid .npy fail", 12 + hl + 8);
    }
    tmp_path(path, sizeof path, "no_such_dir/x.npy");
    rc = textok_npy_write(path, x, 1, shapes[0]);
    tt_check(s, rc == TEXTOK_ERR_IO && contains(textok_last_error(), path) && no_tmp_left(path) && !file_exists(path),
             "io: npy_write into a missing directory -> %s%s", status_name(rc), err_of(rc));
    tmp_path(path, sizeof path, "does_not_exist.npy");
    rc = textok_npy_read(path, &got, &nd, sh);
    tt_check(s, rc == TEXTOK_ERR_IO && contains(textok_last_error(), path), "io: npy_read missing file -> %s%s",
             status_name(rc), err_of(rc));
}

/* ---- broken files ------------------------------------------------------------------------ */

/* Each file of tests/bad/ (tools/make_bad_files.py), the status it must fail with and a piece
   of the message that shows the reader found the actual problem. */
static const struct { const char *file; int status; const char *expect; } BAD_FILES[] = {
    { "st_truncated.safetensors",            TEXTOK_ERR_FORMAT,      "file is 5 bytes, too short" },
    { "st_header_past_end.safetensors",      TEXTOK_ERR_FORMAT,      "header length 1000 runs past the end of the file (73 bytes)" },
    { "st_header_absurd.safetensors",        TEXTOK_ERR_FORMAT,      "header length 1099511627776 is over the limit" },
    { "st_invalid_json.safetensors",         TEXTOK_ERR_FORMAT,      "expected ',' or '}' but found '\"'" },
    { "st_not_object.safetensors",           TEXTOK_ERR_FORMAT,      "not a JSON object" },
    { "st_bad_escape.safetensors",           TEXTOK_ERR_FORMAT,      "unknown escape" },
    { "st_control_char.safetensors",         TEXTOK_ERR_FORMAT,      "control character" },
    { "st_int_overflow.safetensors",         TEXTOK_ERR_FORMAT,      "overflow" },
    { "st_trailing_garbage.safetensors",     TEXTOK_ERR_FORMAT,      "only spaces after the header object" },
    { "st_unknown_field.safetensors",        TEXTOK_ERR_FORMAT,      "tensor 'w': unknown field 'strides'" },
    { "st_missing_field.safetensors",        TEXTOK_ERR_FORMAT,      "tensor 'w': missing field 'shape'" },
    { "st_duplicate_tensor.safetensors",     TEXTOK_ERR_FORMAT,      "duplicate tensor name 'w'" },
    { "st_duplicate_field.safetensors",      TEXTOK_ERR_FORMAT,      "tensor 'w': duplicate field 'dtype'" },
    { "st_meta_not_string.safetensors",      TEXTOK_ERR_FORMAT,      "value for key 'epoch' must be a string" },
    { "st_dtype_f64.safetensors",            TEXTOK_ERR_UNSUPPORTED, "tensor 'enc.w': dtype 'F64'" },
    { "st_dtype_q4.safetensors",             TEXTOK_ERR_UNSUPPORTED, "tensor 'enc.q': dtype 'Q4'" },
    { "st_too_many_dims.safetensors",        TEXTOK_ERR_UNSUPPORTED, "shape has more than 8" },
    { "st_negative_dim.safetensors",         TEXTOK_ERR_FORMAT,      "tensor 'w': shape: a negative value" },
    { "st_dims_overflow.safetensors",        TEXTOK_ERR_FORMAT,      "shape [4294967296, 4294967296, 16] has more elements than fit in size_t (overflow)" },
    { "st_size_mismatch.safetensors",        TEXTOK_ERR_FORMAT,      "tensor 'enc.w': data_offsets [0, 100] span 100 bytes but shape [5, 6] F32 needs 120" },
    { "st_offsets_reversed.safetensors",     TEXTOK_ERR_FORMAT,      "begin is after end" },
    { "st_offsets_out_of_range.safetensors", TEXTOK_ERR_FORMAT,      "[0, 16] run past the end of the data buffer (8 bytes)" },
    { "st_overlap.safetensors",              TEXTOK_ERR_FORMAT,      "'a' [0, 16] and 'b' [8, 24] overlap" },
    { "npy_bad_magic.npy",                   TEXTOK_ERR_FORMAT,      "magic" },
    { "npy_bad_version.npy",                 TEXTOK_ERR_UNSUPPORTED, "version 4.0" },
    { "npy_descr_f8.npy",                    TEXTOK_ERR_UNSUPPORTED, "descr '<f8'" },
    { "npy_fortran.npy",                     TEXTOK_ERR_UNSUPPORTED, "fortran_order True" },
    { "npy_truncated.npy",                   TEXTOK_ERR_FORMAT,      "truncated: shape [3, 4] needs 48 bytes but 40" },
    { "npy_trailing.npy",                    TEXTOK_ERR_FORMAT,      "4 trailing bytes" },
    { "npy_header_past_end.npy",             TEXTOK_ERR_FORMAT,      "header length 4000 runs past the end" },
    { "npy_negative_shape.npy",              TEXTOK_ERR_FORMAT,      "shape: a negative value" },
    { "npy_missing_key.npy",                 TEXTOK_ERR_FORMAT,      "missing key 'shape'" },
    { "npy_unknown_key.npy",                 TEXTOK_ERR_FORMAT,      "unknown key 'order'" },
};

static void test_bad_files(tt_stats *s)
{
    size_t i, n = sizeof BAD_FILES / sizeof BAD_FILES[0];
    for (i = 0; i < n; i++) {
        char path[256], msg[600];
        size_t size = 0;
        unsigned char *bytes;
        int is_npy = contains(BAD_FILES[i].file, ".npy"), rc, rc_mem, closed = 1, nd = -1;
        textok_safetensors st;
        float *data = NULL;
        int64_t sh[TEXTOK_MAX_DIMS];

        snprintf(path, sizeof path, "tests/bad/%s", BAD_FILES[i].file);
        if (!(bytes = slurp(path, &size))) {
            tt_check(s, 0, "io: bad file %s is missing (run /usr/bin/python3 tools/make_bad_files.py)", path);
            continue;
        }
        textok_clear_error();
        if (is_npy) {
            rc = textok_npy_read(path, &data, &nd, sh);
            closed = data == NULL && nd == -1;   /* outputs untouched on failure */
        } else {
            rc = textok_st_open(&st, path);
            closed = st.tensors == NULL && st.data == NULL && st.n_tensors == 0 && st.n_meta == 0;
        }
        snprintf(msg, sizeof msg, "%s", textok_last_error());
        if (rc == TEXTOK_OK && is_npy) textok_free(data);
        if (rc == TEXTOK_OK && !is_npy) textok_st_close(&st);
        /* the memory reader must agree with the file reader */
        rc_mem = is_npy ? textok_npy_read_memory(bytes, size, path, &data, &nd, sh)
                        : textok_st_open_memory(&st, bytes, size, path);
        if (rc_mem == TEXTOK_OK && is_npy) textok_free(data);
        if (rc_mem == TEXTOK_OK && !is_npy) textok_st_close(&st);
        free(bytes);
        tt_check(s, rc == BAD_FILES[i].status && rc_mem == rc && closed && msg[0] && contains(msg, path) &&
                 contains(msg, BAD_FILES[i].expect), "io: bad %-36s -> %s (want %s): %s", BAD_FILES[i].file,
                 status_name(rc), status_name(BAD_FILES[i].status), msg);
    }
}

void test_io(tt_stats *s)
{
    test_half(s);
    test_st_roundtrip(s, TEXTOK_DTYPE_F32);
    test_st_roundtrip(s, TEXTOK_DTYPE_F16);
    test_st_u8(s);
    test_st_foreign(s);
    test_st_json(s);
    test_st_errors(s);
    test_npy(s);
    test_bad_files(s);
}
