/* ---------------------------------------------------------------------------------------------
   3. Files: a strict JSON subset, safetensors read/write, npy read/write

   Everything that comes from a file is checked before it is used: lengths against the bytes
   that are really there, every size product overflow-checked in size_t. The two header parsers
   are schema-directed (they know what a safetensors header and an npy header dict contain), so
   there is no generic recursion: nesting depth is fixed by the schema (at most 3), and anything
   outside it is an error that says what was expected. Both formats are little-endian. */

#ifndef TEXTOK_NO_STDIO
#include <errno.h>
#endif

/* ---- 3.1 F16 / BF16 <-> F32 ---------------------------------------------------------------- */

/* IEEE binary16 -> binary32. Exact for every input: subnormals, +-inf, NaN (payload kept). */
TEXTOKDEF float textok_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    uint32_t bits;
    float f;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13);           /* inf or NaN */
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (man << 13);   /* rebias 15 -> 127 */
    } else if (man == 0) {
        bits = sign;                                       /* +-0 */
    } else {                                               /* subnormal: normalise */
        uint32_t e = 113;
        while (!(man & 0x400u)) { man <<= 1; e--; }
        bits = sign | (e << 23) | ((man & 0x3ffu) << 13);
    }
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* binary32 -> binary16, round to nearest even. Overflow gives inf; NaN stays a (quiet) NaN. */
TEXTOKDEF uint16_t textok_f32_to_f16(float f)
{
    uint32_t u, sign, man, q, rem, half;
    int e;
    memcpy(&u, &f, sizeof u);
    sign = (u >> 16) & 0x8000u;
    man = u & 0x7fffffu;
    e = (int)((u >> 23) & 0xffu) - 127 + 15;                /* the binary16 exponent field */
    if (e == 0xff - 127 + 15) return (uint16_t)(sign | 0x7c00u | (man ? 0x200u | (man >> 13) : 0));
    if (e >= 31) return (uint16_t)(sign | 0x7c00u);
    if (e >= 1) {                                          /* normal: drop 13 mantissa bits */
        q = ((uint32_t)e << 10) | (man >> 13);
        rem = man & 0x1fffu;
        half = 0x1000u;
    } else {                          /* subnormal: q = (1.man * 2^23) >> shift, in units 2^-24 */
        int shift = 14 - e;
        if (shift > 24) return (uint16_t)sign;             /* below half the smallest subnormal */
        man |= 0x800000u;
        q = man >> shift;
        rem = man & ((1u << shift) - 1);
        half = 1u << (shift - 1);
    }
    if (rem > half || (rem == half && (q & 1u))) q++;      /* a carry into the exponent is right */
    return (uint16_t)(sign | q);
}

/* bfloat16 is the top half of a binary32. */
TEXTOKDEF float textok_bf16_to_f32(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* ---- 3.2 Small helpers shared by both formats ---------------------------------------------- */

#define TEXTOK__SHAPE_STR 192   /* holds "[d0, ..., d7]" with 20-character dims */
#define TEXTOK__ST_MAX_HEADER 100000000u   /* safetensors' own MAX_HEADER_SIZE */

static const size_t textok__dtype_size[3] = { 4, 2, 2 };
static const char  *textok__dtype_name[3] = { "F32", "F16", "BF16" };

static int textok__is_le(void)
{
    const uint32_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
}

/* Unsigned little-endian integer of n <= 8 bytes. */
static uint64_t textok__le(const unsigned char *p, int n)
{
    uint64_t v = 0;
    while (n-- > 0) v = (v << 8) | p[n];
    return v;
}

/* n little-endian F32/F16/BF16 values from possibly unaligned bytes into dst. */
static void textok__load_floats(float *dst, const unsigned char *src, size_t n, int dtype)
{
    size_t i;
    if (dtype == TEXTOK_DTYPE_F32 && textok__is_le()) {
        memcpy(dst, src, n * 4);
    } else if (dtype == TEXTOK_DTYPE_F32) {
        for (i = 0; i < n; i++) {
            uint32_t u = (uint32_t)textok__le(src + 4 * i, 4);
            memcpy(&dst[i], &u, 4);
        }
    } else if (dtype == TEXTOK_DTYPE_F16) {
        for (i = 0; i < n; i++) dst[i] = textok_f16_to_f32((uint16_t)(src[2 * i] | src[2 * i + 1] << 8));
    } else {
        for (i = 0; i < n; i++) dst[i] = textok_bf16_to_f32((uint16_t)(src[2 * i] | src[2 * i + 1] << 8));
    }
}

/* Product of the dims as a size_t; 0 if a dim is negative or the product overflows. */
static int textok__numel(int ndim, const int64_t *shape, size_t *numel)
{
    size_t n = 1;
    int i;
    for (i = 0; i < ndim; i++)
        if (shape[i] < 0 || (uint64_t)(size_t)shape[i] != (uint64_t)shape[i] ||
            !textok__mul_size(n, (size_t)shape[i], &n)) return 0;
    *numel = n;
    return 1;
}

/* "[768, 3]" into buf (TEXTOK__SHAPE_STR bytes); returns buf. */
static const char *textok__shape_str(char *buf, int ndim, const int64_t *shape)
{
    size_t n = 1;
    int i;
    buf[0] = '[';
    for (i = 0; i < ndim && i < TEXTOK_MAX_DIMS; i++)
        n += (size_t)snprintf(buf + n, TEXTOK__SHAPE_STR - n, i ? ", %lld" : "%lld", (long long)shape[i]);
    buf[n] = ']';
    buf[n + 1] = 0;
    return buf;
}

static int textok__cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Sorts names in place and returns a name that occurs twice, or NULL. O(n log n): a header can
   hold millions of names, so a pairwise check would be a denial of service. */
static const char *textok__find_dup(const char **names, size_t n)
{
    size_t i;
    if (n < 2) return NULL;
    qsort(names, n, sizeof *names, textok__cmp_str);
    for (i = 1; i < n; i++)
        if (!strcmp(names[i - 1], names[i])) return names[i];
    return NULL;
}

/* Makes room for one more element in a growable array (capacity doubles). Returns the possibly
   moved array, or NULL when out of memory (the old array is then still valid). */
static void *textok__grow(void *arr, int n, int *cap, size_t elem)
{
    size_t bytes;
    int nc;
    void *p;
    if (n < *cap) return arr;
    if (*cap > INT_MAX / 2) return NULL;
    nc = *cap ? *cap * 2 : 16;
    if (!textok__mul_size((size_t)nc, elem, &bytes)) return NULL;
    p = TEXTOK_REALLOC(arr, bytes);
    if (p) *cap = nc;
    return p;
}

/* ---- 3.3 A cursor over header text, and the scanners both parsers use ---------------------- */

typedef struct textok__cur {
    const char *p, *beg, *end;   /* position, start and end of the header text */
    const char *file;            /* for messages */
    const char *tensor;          /* the tensor being parsed, or NULL */
} textok__cur;

/* Fails with "file: [tensor 'name': ]message". */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((format(printf, 3, 4)))
#endif
static int textok__cfail(const textok__cur *c, int status, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (c->tensor) return textok__fail(status, "%s: tensor '%.120s': %s", c->file, c->tensor, msg);
    return textok__fail(status, "%s: %s", c->file, msg);
}

static size_t textok__pos(const textok__cur *c) { return (size_t)(c->p - c->beg); }

/* A syntax error at the cursor: "header byte 17: expected ':' but found 'x'". */
static int textok__csyntax(const textok__cur *c, const char *expected)
{
    unsigned char ch = c->p < c->end ? (unsigned char)*c->p : 0;
    if (c->p >= c->end)
        return textok__cfail(c, TEXTOK_ERR_FORMAT, "header byte %zu: expected %s but the header ends",
                             textok__pos(c), expected);
    if (ch >= 0x20 && ch < 0x7f)
        return textok__cfail(c, TEXTOK_ERR_FORMAT, "header byte %zu: expected %s but found '%c'",
                             textok__pos(c), expected, ch);
    return textok__cfail(c, TEXTOK_ERR_FORMAT, "header byte %zu: expected %s but found byte 0x%02x",
                         textok__pos(c), expected, ch);
}

static void textok__ws(textok__cur *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) c->p++;
}

/* Skips whitespace, then consumes ch if it comes next. */
static int textok__eat(textok__cur *c, char ch)
{
    textok__ws(c);
    if (c->p < c->end && *c->p == ch) { c->p++; return 1; }
    return 0;
}

static int textok__isdigit(const textok__cur *c, const char *q) { return q < c->end && *q >= '0' && *q <= '9'; }

/* Scans a non-negative integer literal <= 2^63-1 into *v (JSON rules: no leading zeros, no
   fraction or exponent). Returns NULL, or why the text is not one; on failure the cursor stays
   at the start of the offending text. */
static const char *textok__scan_int(textok__cur *c, int64_t *v)
{
    const char *q;
    uint64_t x = 0;
    textok__ws(c);
    q = c->p;
    if (q < c->end && *q == '-' && textok__isdigit(c, q + 1)) return "a negative value is not allowed";
    if (!textok__isdigit(c, q)) return "expected a non-negative integer";
    if (*q == '0' && textok__isdigit(c, q + 1)) return "leading zeros are not allowed";
    for (; textok__isdigit(c, q); q++) {
        if (x > (uint64_t)(INT64_MAX - (*q - '0')) / 10) return "integer overflow (more than 2^63-1)";
        x = x * 10 + (uint64_t)(*q - '0');
    }
    if (q < c->end && (*q == '.' || *q == 'e' || *q == 'E')) return "expected an integer, found a fraction";
    c->p = q;
    *v = (int64_t)x;
    return NULL;
}

/* Fails for a bad integer in `what`, quoting the offending text. */
static int textok__int_fail(const textok__cur *c, const char *what, const char *why)
{
    int n = 0;
    while (n < 24 && c->p + n < c->end && c->p[n] && strchr("-+.eE0123456789", c->p[n])) n++;
    return textok__cfail(c, TEXTOK_ERR_FORMAT, "%s: %s at header byte %zu ('%.*s')", what, why,
                         textok__pos(c), n, c->p);
}

/* Four hex digits of a \u escape, before lim. */
static int textok__hex4(textok__cur *c, const char *lim, uint32_t *cp)
{
    uint32_t v = 0;
    int i;
    if (lim - c->p < 4) return 0;
    for (i = 0; i < 4; i++) {
        char h = *c->p++;
        if (h >= '0' && h <= '9') v = v << 4 | (uint32_t)(h - '0');
        else if (h >= 'a' && h <= 'f') v = v << 4 | (uint32_t)(h - 'a' + 10);
        else if (h >= 'A' && h <= 'F') v = v << 4 | (uint32_t)(h - 'A' + 10);
        else return 0;
    }
    *cp = v;
    return 1;
}

/* Parses a JSON string into a new NUL-terminated UTF-8 buffer (*out; the caller frees it).
   Escapes are decoded, \uXXXX with surrogate pairs; raw control characters, lone surrogates
   and \u0000 (names are C strings) are errors. */
static int textok__json_str(textok__cur *c, char **out)
{
    const char *q;
    char *s, *o;
    textok__ws(c);
    if (c->p >= c->end || *c->p != '"') return textok__csyntax(c, "a string");
    /* find the closing quote first: the decoded string is never longer than the raw text */
    for (q = c->p + 1; q < c->end && *q != '"'; q++)
        if (*q == '\\' && ++q == c->end) break;
    if (q >= c->end) return textok__cfail(c, TEXTOK_ERR_FORMAT, "header byte %zu: unterminated string", textok__pos(c));
    s = o = (char *)textok__malloc((size_t)(q - c->p));
    if (!s) return textok__cfail(c, TEXTOK_ERR_NOMEM, "out of memory");
    for (c->p++; c->p < q;) {
        const char *at = c->p;
        unsigned char ch = (unsigned char)*c->p++;
        uint32_t cp, lo = 0;
        const char *bad = NULL;
        if (ch < 0x20) bad = "control character in a string (it must be escaped)";
        else if (ch != '\\') { *o++ = (char)ch; continue; }
        else switch (*c->p++) {
            case '"':  *o++ = '"'; break;
            case '\\': *o++ = '\\'; break;
            case '/':  *o++ = '/'; break;
            case 'b':  *o++ = '\b'; break;
            case 'f':  *o++ = '\f'; break;
            case 'n':  *o++ = '\n'; break;
            case 'r':  *o++ = '\r'; break;
            case 't':  *o++ = '\t'; break;
            case 'u':
                if (!textok__hex4(c, q, &cp)) { bad = "bad \\u escape (4 hex digits needed)"; break; }
                if (cp >= 0xd800 && cp < 0xdc00) {   /* a high surrogate: a low one must follow */
                    if (q - c->p >= 6 && c->p[0] == '\\' && c->p[1] == 'u') { c->p += 2; textok__hex4(c, q, &lo); }
                    if (lo < 0xdc00 || lo >= 0xe000) { bad = "unpaired UTF-16 surrogate in a \\u escape"; break; }
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                } else if (cp >= 0xdc00 && cp < 0xe000) { bad = "unpaired UTF-16 surrogate in a \\u escape"; break; }
                if (cp == 0) { bad = "\\u0000 is not allowed in a name"; break; }
                if (cp < 0x80) *o++ = (char)cp;
                else if (cp < 0x800) { *o++ = (char)(0xc0 | cp >> 6); *o++ = (char)(0x80 | (cp & 0x3f)); }
                else if (cp < 0x10000) {
                    *o++ = (char)(0xe0 | cp >> 12); *o++ = (char)(0x80 | ((cp >> 6) & 0x3f));
                    *o++ = (char)(0x80 | (cp & 0x3f));
                } else {
                    *o++ = (char)(0xf0 | cp >> 18); *o++ = (char)(0x80 | ((cp >> 12) & 0x3f));
                    *o++ = (char)(0x80 | ((cp >> 6) & 0x3f)); *o++ = (char)(0x80 | (cp & 0x3f));
                }
                break;
            default: bad = "unknown escape sequence in a string";
        }
        if (bad) {
            TEXTOK_FREE(s);
            return textok__cfail(c, TEXTOK_ERR_FORMAT, "header byte %zu: %s", (size_t)(at - c->beg), bad);
        }
    }
    *o = 0;
    c->p = q + 1;
    *out = s;
    return TEXTOK_OK;
}

/* Parses a JSON array of at most max non-negative integers into v; *n gets the count. More than
   max entries fails with too_many (the status). */
static int textok__json_ints(textok__cur *c, const char *what, int64_t *v, int max, int *n, int too_many)
{
    const char *why;
    *n = 0;
    if (!textok__eat(c, '[')) return textok__cfail(c, TEXTOK_ERR_FORMAT, "%s must be an array of integers", what);
    if (textok__eat(c, ']')) return TEXTOK_OK;
    do {
        if (*n == max) return textok__cfail(c, too_many, "%s has more than %d entries", what, max);
        if ((why = textok__scan_int(c, &v[*n]))) return textok__int_fail(c, what, why);
        (*n)++;
    } while (textok__eat(c, ','));
    return textok__eat(c, ']') ? TEXTOK_OK : textok__csyntax(c, "',' or ']'");
}

/* ---- 3.4 safetensors: header parsing and validation ---------------------------------------- */

/* "F32" | "F16" | "BF16"; any other dtype is valid safetensors that this reader cannot convert. */
static int textok__st_parse_dtype(textok__cur *c, int *dtype)
{
    char *s;
    int rc = textok__json_str(c, &s);
    if (rc) return rc;
    *dtype = !strcmp(s, "F32") ? TEXTOK_DTYPE_F32 : !strcmp(s, "F16") ? TEXTOK_DTYPE_F16
           : !strcmp(s, "BF16") ? TEXTOK_DTYPE_BF16 : -1;
    if (*dtype < 0) rc = textok__cfail(c, TEXTOK_ERR_UNSUPPORTED, "dtype '%.40s' is not supported (only F32, F16, BF16)", s);
    TEXTOK_FREE(s);
    return rc;
}

/* One tensor's {"dtype", "shape", "data_offsets"} object into t (whose name is set), each field
   exactly once; then the checks that need only this tensor: element and byte counts without
   overflow, and a byte range that matches them and lies inside the data buffer. */
static int textok__st_parse_tensor(textok__cur *c, textok_st_tensor *t, size_t buffer_size)
{
    int64_t off[2] = { 0, 0 };
    int seen = 0, rc = TEXTOK_OK, n_off = 0;
    size_t need;
    char s1[TEXTOK__SHAPE_STR];
    if (!textok__eat(c, '{'))
        return textok__cfail(c, TEXTOK_ERR_FORMAT, "expected an object {\"dtype\", \"shape\", \"data_offsets\"}");
    if (!textok__eat(c, '}')) {
        do {
            char *key;
            int bit;
            if ((rc = textok__json_str(c, &key))) return rc;
            bit = !strcmp(key, "dtype") ? 1 : !strcmp(key, "shape") ? 2 : !strcmp(key, "data_offsets") ? 4 : 0;
            if (!bit) rc = textok__cfail(c, TEXTOK_ERR_FORMAT, "unknown field '%.60s' (only dtype, shape, data_offsets)", key);
            else if (seen & bit) rc = textok__cfail(c, TEXTOK_ERR_FORMAT, "duplicate field '%s'", key);
            TEXTOK_FREE(key);
            if (rc) return rc;
            seen |= bit;
            if (!textok__eat(c, ':')) return textok__csyntax(c, "':'");
            if (bit == 1) {
                rc = textok__st_parse_dtype(c, &t->dtype);
            } else if (bit == 2) {
                rc = textok__json_ints(c, "shape", t->shape, TEXTOK_MAX_DIMS, &t->ndim, TEXTOK_ERR_UNSUPPORTED);
            } else {
                rc = textok__json_ints(c, "data_offsets", off, 2, &n_off, TEXTOK_ERR_FORMAT);
                if (!rc && n_off != 2)
                    rc = textok__cfail(c, TEXTOK_ERR_FORMAT, "data_offsets must be [begin, end], found %d entries", n_off);
            }
            if (rc) return rc;
        } while (textok__eat(c, ','));
        if (!textok__eat(c, '}')) return textok__csyntax(c, "',' or '}'");
    }
    if (seen != 7)
        return textok__cfail(c, TEXTOK_ERR_FORMAT, "missing field '%s'",
                             !(seen & 1) ? "dtype" : !(seen & 2) ? "shape" : "data_offsets");

    textok__shape_str(s1, t->ndim, t->shape);
    if (!textok__numel(t->ndim, t->shape, &t->numel))
        return textok__cfail(c, TEXTOK_ERR_FORMAT, "shape %s has more elements than fit in size_t (overflow)", s1);
    if (!textok__mul_size(t->numel, textok__dtype_size[t->dtype], &need))
        return textok__cfail(c, TEXTOK_ERR_FORMAT, "shape %s %s needs more bytes than fit in size_t (overflow)",
                             s1, textok__dtype_name[t->dtype]);
    if (off[0] > off[1])
        return textok__cfail(c, TEXTOK_ERR_FORMAT, "data_offsets [%lld, %lld]: begin is after end",
                             (long long)off[0], (long long)off[1]);
    if ((uint64_t)(off[1] - off[0]) != (uint64_t)need)
        return textok__cfail(c, TEXTOK_ERR_FORMAT, "data_offsets [%lld, %lld] span %lld bytes but shape %s %s needs %zu",
                             (long long)off[0], (long long)off[1], (long long)(off[1] - off[0]), s1,
                             textok__dtype_name[t->dtype], need);
    if ((uint64_t)off[1] > (uint64_t)buffer_size)
        return textok__cfail(c, TEXTOK_ERR_FORMAT, "data_offsets [%lld, %lld] run past the end of the data buffer (%zu bytes)",
                             (long long)off[0], (long long)off[1], buffer_size);
    t->offset = (size_t)off[0];
    t->nbytes = need;
    return TEXTOK_OK;
}

/* "__metadata__": {"key": "value", ...}, string values only. */
static int textok__st_parse_meta(textok__cur *c, textok_safetensors *st)
{
    int cap_k = 0, cap_v = 0, rc;
    if (!textok__eat(c, '{')) return textok__cfail(c, TEXTOK_ERR_FORMAT, "__metadata__ must be an object of strings");
    if (textok__eat(c, '}')) return TEXTOK_OK;
    do {
        void *k = textok__grow(st->meta_keys, st->n_meta, &cap_k, sizeof(char *)), *v;
        if (k) st->meta_keys = (char **)k;
        v = k ? textok__grow(st->meta_values, st->n_meta, &cap_v, sizeof(char *)) : NULL;
        if (!v) return textok__cfail(c, TEXTOK_ERR_NOMEM, "out of memory reading __metadata__");
        st->meta_values = (char **)v;
        st->meta_keys[st->n_meta] = st->meta_values[st->n_meta] = NULL;   /* owned by st from here */
        st->n_meta++;
        if ((rc = textok__json_str(c, &st->meta_keys[st->n_meta - 1]))) return rc;
        if (!textok__eat(c, ':')) return textok__csyntax(c, "':'");
        textok__ws(c);
        if (c->p < c->end && *c->p != '"')
            return textok__cfail(c, TEXTOK_ERR_FORMAT, "__metadata__ value for key '%.80s' must be a string",
                                 st->meta_keys[st->n_meta - 1]);
        if ((rc = textok__json_str(c, &st->meta_values[st->n_meta - 1]))) return rc;
    } while (textok__eat(c, ','));
    return textok__eat(c, '}') ? TEXTOK_OK : textok__csyntax(c, "',' or '}'");
}

/* The header object: "__metadata__" at most once, every other key a tensor. */
static int textok__st_parse_header(textok_safetensors *st, const char *json, size_t len)
{
    textok__cur c;
    int rc = TEXTOK_OK, cap_t = 0, seen_meta = 0;
    c.p = c.beg = json;
    c.end = json + len;
    c.file = st->path;
    c.tensor = NULL;
    if (!textok__eat(&c, '{'))
        return textok__cfail(&c, TEXTOK_ERR_FORMAT, "the header is not a JSON object (it must start with '{')");
    if (!textok__eat(&c, '}')) {
        do {
            char *key;
            if ((rc = textok__json_str(&c, &key))) return rc;
            if (!textok__eat(&c, ':')) { TEXTOK_FREE(key); return textok__csyntax(&c, "':'"); }
            if (!strcmp(key, "__metadata__")) {
                TEXTOK_FREE(key);
                if (seen_meta++) return textok__cfail(&c, TEXTOK_ERR_FORMAT, "duplicate key '__metadata__'");
                rc = textok__st_parse_meta(&c, st);
            } else {
                textok_st_tensor *t;
                void *p = textok__grow(st->tensors, st->n_tensors, &cap_t, sizeof *st->tensors);
                if (!p) { TEXTOK_FREE(key); return textok__cfail(&c, TEXTOK_ERR_NOMEM, "out of memory"); }
                st->tensors = (textok_st_tensor *)p;
                t = &st->tensors[st->n_tensors++];
                memset(t, 0, sizeof *t);
                t->name = key;                                /* owned by st from here */
                c.tensor = key;
                rc = textok__st_parse_tensor(&c, t, st->buffer_size);
                c.tensor = NULL;
            }
            if (rc) return rc;
        } while (textok__eat(&c, ','));
        if (!textok__eat(&c, '}')) return textok__csyntax(&c, "',' or '}'");
    }
    textok__ws(&c);   /* writers pad the header with spaces */
    if (c.p != c.end) return textok__csyntax(&c, "only spaces after the header object");
    return TEXTOK_OK;
}

static int textok__cmp_offset(const void *a, const void *b)
{
    const textok_st_tensor *x = *(const textok_st_tensor *const *)a, *y = *(const textok_st_tensor *const *)b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    return (x->nbytes > y->nbytes) - (x->nbytes < y->nbytes);
}

/* Checks across tensors: unique tensor names and metadata keys, no two byte ranges overlapping.
   Holes (and trailing bytes) are tolerated, unlike the reference reader: they cannot make a read
   go wrong. */
static int textok__st_check_layout(textok_safetensors *st)
{
    size_t n = (size_t)st->n_tensors, m = n > (size_t)st->n_meta ? n : (size_t)st->n_meta, i, end = 0;
    const char **names = (const char **)textok__calloc(m, sizeof *names);
    const textok_st_tensor **order = (const textok_st_tensor **)textok__calloc(n, sizeof *order);
    const textok_st_tensor *last = NULL;
    const char *dup;
    int rc = TEXTOK_OK;
    if (!names || !order) rc = textok__fail(TEXTOK_ERR_NOMEM, "%s: out of memory", st->path);
    if (!rc) {
        for (i = 0; i < n; i++) names[i] = st->tensors[i].name;
        if ((dup = textok__find_dup(names, n)))
            rc = textok__fail(TEXTOK_ERR_FORMAT, "%s: duplicate tensor name '%.120s'", st->path, dup);
    }
    if (!rc) {
        for (i = 0; i < (size_t)st->n_meta; i++) names[i] = st->meta_keys[i];
        if ((dup = textok__find_dup(names, (size_t)st->n_meta)))
            rc = textok__fail(TEXTOK_ERR_FORMAT, "%s: duplicate __metadata__ key '%.120s'", st->path, dup);
    }
    if (!rc) {
        for (i = 0; i < n; i++) order[i] = &st->tensors[i];
        qsort(order, n, sizeof *order, textok__cmp_offset);
        for (i = 0; i < n && !rc; i++) {
            const textok_st_tensor *t = order[i];
            if (t->nbytes == 0) continue;   /* an empty range overlaps nothing */
            if (last && t->offset < end)
                rc = textok__fail(TEXTOK_ERR_FORMAT, "%s: tensors '%.100s' [%zu, %zu] and '%.100s' [%zu, %zu] overlap",
                                  st->path, last->name, last->offset, last->offset + last->nbytes,
                                  t->name, t->offset, t->offset + t->nbytes);
            if (t->offset + t->nbytes > end) { end = t->offset + t->nbytes; last = t; }
        }
    }
    TEXTOK_FREE((void *)names);
    TEXTOK_FREE((void *)order);
    return rc;
}

/* Validates st->data/size (already set) and fills the tensor and metadata tables. */
static int textok__st_parse(textok_safetensors *st)
{
    uint64_t hlen;
    int rc;
    if (st->size < 8)
        return textok__fail(TEXTOK_ERR_FORMAT, "%s: file is %zu bytes, too short for the 8-byte header length",
                            st->path, st->size);
    hlen = textok__le(st->data, 8);
    if (hlen > TEXTOK__ST_MAX_HEADER)
        return textok__fail(TEXTOK_ERR_FORMAT, "%s: header length %llu is over the limit of %u bytes (not a safetensors file?)",
                            st->path, (unsigned long long)hlen, TEXTOK__ST_MAX_HEADER);
    if (hlen > st->size - 8)
        return textok__fail(TEXTOK_ERR_FORMAT, "%s: header length %llu runs past the end of the file (%zu bytes)",
                            st->path, (unsigned long long)hlen, st->size);
    st->buffer = st->data + 8 + (size_t)hlen;
    st->buffer_size = st->size - 8 - (size_t)hlen;
    rc = textok__st_parse_header(st, (const char *)st->data + 8, (size_t)hlen);
    return rc ? rc : textok__st_check_layout(st);
}

/* Copies a name into st->path; a long one keeps its end, where the file name is. */
static void textok__st_set_path(textok_safetensors *st, const char *name)
{
    size_t n = strlen(name), cap = sizeof st->path - 1;
    if (n <= cap) { memcpy(st->path, name, n + 1); return; }
    memcpy(st->path, "...", 3);
    memcpy(st->path + 3, name + n - (cap - 3), cap - 3 + 1);
}

/* ---- 3.5 safetensors: open, close, look up, read -------------------------------------------- */

/* Opens a safetensors image that the caller keeps alive (and unchanged) until textok_st_close. */
TEXTOKDEF int textok_st_open_memory(textok_safetensors *st, const void *data, size_t size, const char *name_for_errors)
{
    int rc;
    if (!st) return textok__fail(TEXTOK_ERR_ARG, "textok_st_open_memory: st is NULL");
    memset(st, 0, sizeof *st);
    textok__st_set_path(st, name_for_errors ? name_for_errors : "<memory>");
    if (!data && size) return textok__fail(TEXTOK_ERR_ARG, "%s: data is NULL", st->path);
    st->data = (const unsigned char *)data;
    st->size = size;
    st->mapped = -1;
    if ((rc = textok__st_parse(st))) textok_st_close(st);
    return rc;
}

#ifndef TEXTOK_NO_STDIO
/* Reads a whole file into a new heap buffer. name is what messages call it. */
static int textok__read_file(const char *path, const char *name, unsigned char **out, size_t *size)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf = NULL;
    size_t n = 0, cap = 0;
    long hint;
    int err;
    if (!f) return textok__fail(TEXTOK_ERR_IO, "%s: cannot open: %s", name, strerror(errno));
    /* the size only sizes the first allocation (at most 1 GiB: a directory can report a huge
       size); the loop reads to EOF whatever it is, so pipes work too */
    if (fseek(f, 0, SEEK_END) == 0 && (hint = ftell(f)) >= 0) cap = (size_t)(hint < (1L << 30) ? hint + 1 : (1L << 30));
    rewind(f);
    for (;;) {
        if (!buf || n == cap) {   /* the first allocation takes the hint */
            size_t nc = !buf && cap ? cap : cap < 4096 ? 4096 : cap * 2;
            unsigned char *nb = cap > SIZE_MAX / 2 ? NULL : (unsigned char *)TEXTOK_REALLOC(buf, nc);
            if (!nb) {
                TEXTOK_FREE(buf);
                fclose(f);
                return textok__fail(TEXTOK_ERR_NOMEM, "%s: out of memory reading %zu bytes", name, nc);
            }
            buf = nb;
            cap = nc;
        }
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) break;   /* a short read is EOF or an error */
    }
    err = ferror(f) ? errno : 0;
    fclose(f);
    if (err) {
        TEXTOK_FREE(buf);
        return textok__fail(TEXTOK_ERR_IO, "%s: read error: %s", name, strerror(err));
    }
    *out = buf;
    *size = n;
    return TEXTOK_OK;
}

/* Opens a file: mmapped where the platform has it (st->mapped = 1), else read into the heap. */
TEXTOKDEF int textok_st_open(textok_safetensors *st, const char *path)
{
    int rc;
    if (!st || !path) return textok__fail(TEXTOK_ERR_ARG, "textok_st_open: st and path must not be NULL");
    memset(st, 0, sizeof *st);
    textok__st_set_path(st, path);
#ifdef TEXTOK__HAVE_MMAP
    {
        struct stat sb;
        int fd = open(path, O_RDONLY);
        if (fd < 0) return textok__fail(TEXTOK_ERR_IO, "%s: cannot open: %s", st->path, strerror(errno));
        if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size > 0 && (off_t)(size_t)sb.st_size == sb.st_size) {
            void *m = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
            if (m != MAP_FAILED) {
                st->data = (const unsigned char *)m;
                st->size = (size_t)sb.st_size;
                st->mapped = 1;
            }
        }
        close(fd);   /* the mapping stays valid */
    }
    if (!st->mapped)   /* empty, not a regular file, or mmap refused: read it instead */
#endif
    {
        unsigned char *buf;
        if ((rc = textok__read_file(path, st->path, &buf, &st->size))) return rc;
        st->data = buf;
    }
    if ((rc = textok__st_parse(st))) textok_st_close(st);
    return rc;
}
#endif /* TEXTOK_NO_STDIO */

/* Frees everything and zeroes st; safe on a zeroed, failed or already closed struct. */
TEXTOKDEF void textok_st_close(textok_safetensors *st)
{
    int i;
    if (!st) return;
    for (i = 0; i < st->n_tensors; i++) TEXTOK_FREE(st->tensors[i].name);
    for (i = 0; i < st->n_meta; i++) {
        TEXTOK_FREE(st->meta_keys[i]);
        TEXTOK_FREE(st->meta_values[i]);
    }
    TEXTOK_FREE(st->tensors);
    TEXTOK_FREE(st->meta_keys);
    TEXTOK_FREE(st->meta_values);
#ifdef TEXTOK__HAVE_MMAP
    if (st->mapped == 1) munmap((void *)st->data, st->size);
#endif
    if (st->mapped == 0) TEXTOK_FREE((void *)st->data);
    memset(st, 0, sizeof *st);
}

/* The tensor with this name, or NULL. A linear scan: lookups happen once per load. */
TEXTOKDEF const textok_st_tensor *textok_st_find(const textok_safetensors *st, const char *name)
{
    int i;
    if (!st || !name) return NULL;
    for (i = 0; i < st->n_tensors; i++)
        if (!strcmp(st->tensors[i].name, name)) return &st->tensors[i];
    return NULL;
}

TEXTOKDEF const char *textok_st_meta(const textok_safetensors *st, const char *key)
{
    int i;
    if (!st || !key) return NULL;
    for (i = 0; i < st->n_meta; i++)
        if (!strcmp(st->meta_keys[i], key)) return st->meta_values[i];
    return NULL;
}

TEXTOKDEF int textok_st_read_f32(const textok_safetensors *st, const textok_st_tensor *t, float *dst, size_t dst_numel)
{
    char s1[TEXTOK__SHAPE_STR];
    size_t end, need;
    if (!st || !t) return textok__fail(TEXTOK_ERR_ARG, "textok_st_read_f32: st and t must not be NULL");
    /* t might come from another (or a closed) file: re-check its range against this buffer */
    if (t->dtype < 0 || t->dtype > TEXTOK_DTYPE_BF16 || !textok__add_size(t->offset, t->nbytes, &end) ||
        end > st->buffer_size || !textok__mul_size(t->numel, textok__dtype_size[t->dtype], &need) || need != t->nbytes)
        return textok__fail(TEXTOK_ERR_ARG, "%s: tensor '%.120s' does not belong to this file", st->path,
                            t->name ? t->name : "?");
    if (dst_numel != t->numel)
        return textok__fail(TEXTOK_ERR_SHAPE, "%s: tensor '%.120s': destination holds %zu floats but shape %s has %zu",
                            st->path, t->name, dst_numel, textok__shape_str(s1, t->ndim, t->shape), t->numel);
    if (t->numel == 0) return TEXTOK_OK;
    if (!dst) return textok__fail(TEXTOK_ERR_ARG, "%s: tensor '%.120s': dst is NULL", st->path, t->name);
    textok__load_floats(dst, st->buffer + t->offset, t->numel, t->dtype);
    return TEXTOK_OK;
}

TEXTOKDEF int textok_st_load(const textok_safetensors *st, const char *name, int ndim, const int64_t *shape, float *dst)
{
    const textok_st_tensor *t;
    char s1[TEXTOK__SHAPE_STR], s2[TEXTOK__SHAPE_STR];
    int i, same;
    if (!st || !name || ndim < 0 || ndim > TEXTOK_MAX_DIMS || (ndim && !shape))
        return textok__fail(TEXTOK_ERR_ARG, "textok_st_load: bad arguments (name NULL, or ndim %d)", ndim);
    if (!(t = textok_st_find(st, name)))
        return textok__fail(TEXTOK_ERR_NOT_FOUND, "%s: tensor '%.120s' not found (the file has %d tensors)",
                            st->path, name, st->n_tensors);
    same = t->ndim == ndim;
    for (i = 0; same && i < ndim; i++) same = t->shape[i] == shape[i];
    if (!same)
        return textok__fail(TEXTOK_ERR_SHAPE, "%s: tensor '%.120s': expected %s but file has %s", st->path, name,
                            textok__shape_str(s1, ndim, shape), textok__shape_str(s2, t->ndim, t->shape));
    return textok_st_read_f32(st, t, dst, t->numel);
}

/* ---- 3.6 Writing: temp file + rename, and the safetensors writer ---------------------------- */
#ifndef TEXTOK_NO_STDIO

/* A file written as "<path>.tmp" and renamed over path once complete, so that no reader ever
   sees half a file. The first failure is remembered and later writes are skipped. */
typedef struct textok__wfile {
    FILE       *f;
    char       *tmp;
    const char *path;
    int         failed;   /* 0, 1 write/close failed, 2 rename failed */
    int         err;      /* errno of the failure */
} textok__wfile;

static int textok__wopen(textok__wfile *w, const char *path)
{
    size_t n = strlen(path);
    memset(w, 0, sizeof *w);
    w->path = path;
    if (!(w->tmp = (char *)textok__malloc(n + 5))) return textok__fail(TEXTOK_ERR_NOMEM, "%s: out of memory", path);
    memcpy(w->tmp, path, n);
    memcpy(w->tmp + n, ".tmp", 5);
    if (!(w->f = fopen(w->tmp, "wb"))) {
        int rc = textok__fail(TEXTOK_ERR_IO, "%s: cannot create '%s': %s", path, w->tmp, strerror(errno));
        TEXTOK_FREE(w->tmp);
        return rc;
    }
    return TEXTOK_OK;
}

static void textok__wbytes(textok__wfile *w, const void *p, size_t n)
{
    if (!w->failed && n && fwrite(p, 1, n, w->f) != n) { w->failed = 1; w->err = errno; }
}

/* n floats as little-endian F32 or F16, converted through a fixed-size buffer. */
static void textok__wfloats(textok__wfile *w, const float *x, size_t n, int dtype)
{
    unsigned char buf[4096];
    size_t i, j, k, b, esz = textok__dtype_size[dtype], per = sizeof buf / esz;
    if (dtype == TEXTOK_DTYPE_F32 && textok__is_le()) { textok__wbytes(w, x, n * 4); return; }
    for (i = 0; i < n; i += k) {
        k = n - i < per ? n - i : per;
        for (j = 0; j < k; j++) {
            uint32_t u;
            if (dtype == TEXTOK_DTYPE_F16) u = textok_f32_to_f16(x[i + j]);
            else memcpy(&u, &x[i + j], 4);
            for (b = 0; b < esz; b++) buf[j * esz + b] = (unsigned char)(u >> (8 * b));
        }
        textok__wbytes(w, buf, k * esz);
    }
}

/* Flushes, closes and renames into place; on any failure removes the temp file instead. */
static int textok__wclose(textok__wfile *w)
{
    int rc = TEXTOK_OK;
    if (!w->failed && fflush(w->f) != 0) { w->failed = 1; w->err = errno; }
    if (fclose(w->f) != 0 && !w->failed) { w->failed = 1; w->err = errno; }
    if (!w->failed) {
#ifdef _WIN32
        remove(w->path);   /* rename does not replace an existing file there */
#endif
        if (rename(w->tmp, w->path) != 0) { w->failed = 2; w->err = errno; }
    }
    if (w->failed) {
        remove(w->tmp);
        rc = textok__fail(TEXTOK_ERR_IO, "%s: %s failed: %s", w->path,
                          w->failed == 2 ? "renaming the .tmp file into place" : "writing", strerror(w->err));
    }
    TEXTOK_FREE(w->tmp);
    return rc;
}

/* A growable byte buffer for building a header; oom is sticky. */
typedef struct textok__sbuf { char *p; size_t n, cap; int oom; } textok__sbuf;

static void textok__sput(textok__sbuf *s, const char *p, size_t n)
{
    if (s->oom) return;
    if (n > s->cap - s->n) {
        size_t nc = s->cap ? s->cap : 256;
        char *q;
        while (nc - s->n < n) {
            if (nc > SIZE_MAX / 2) { s->oom = 1; return; }
            nc *= 2;
        }
        if (!(q = (char *)TEXTOK_REALLOC(s->p, nc))) { s->oom = 1; return; }
        s->p = q;
        s->cap = nc;
    }
    memcpy(s->p + s->n, p, n);
    s->n += n;
}

static void textok__sputs(textok__sbuf *s, const char *str) { textok__sput(s, str, strlen(str)); }

static void textok__sput_int(textok__sbuf *s, unsigned long long v)
{
    char num[24];
    textok__sput(s, num, (size_t)snprintf(num, sizeof num, "%llu", v));
}

/* str as a JSON string literal: quotes, backslashes and control characters escaped; other
   bytes (UTF-8) as they are. */
static void textok__sput_json(textok__sbuf *s, const char *str)
{
    textok__sput(s, "\"", 1);
    for (; *str; str++) {
        unsigned char ch = (unsigned char)*str;
        char esc[8];
        if (ch == '"' || ch == '\\') { esc[0] = '\\'; esc[1] = (char)ch; textok__sput(s, esc, 2); }
        else if (ch < 0x20) textok__sput(s, esc, (size_t)snprintf(esc, sizeof esc, "\\u%04x", ch));
        else textok__sput(s, str, 1);
    }
    textok__sput(s, "\"", 1);
}

/* Writes entries (F32 data) as dtype F32 or F16, in the order given, with metadata first. */
TEXTOKDEF int textok_st_save(const char *path, const textok_st_entry *entries, int n_entries,
                             const char *const *meta_kv, int n_meta, int dtype)
{
    textok__sbuf h;
    textok__wfile w;
    size_t total = 0, off = 0, numel = 0, nbytes, esz, m;
    const char **names, *dup = NULL;
    unsigned char len8[8];
    char s1[TEXTOK__SHAPE_STR];
    int i, j, rc = TEXTOK_OK;
    if (!path || n_entries < 0 || (n_entries && !entries) || n_meta < 0 || (n_meta && !meta_kv))
        return textok__fail(TEXTOK_ERR_ARG, "textok_st_save: bad arguments (path, entries or meta_kv NULL, or a negative count)");
    if (dtype != TEXTOK_DTYPE_F32 && dtype != TEXTOK_DTYPE_F16)
        return textok__fail(TEXTOK_ERR_ARG, "%s: can only write F32 or F16, not dtype %d", path, dtype);
    esz = textok__dtype_size[dtype];
    for (i = 0; i < n_entries; i++) {
        const textok_st_entry *e = &entries[i];
        if (!e->name || !strcmp(e->name, "__metadata__"))
            return textok__fail(TEXTOK_ERR_ARG, "%s: entry %d has no name or the reserved name __metadata__", path, i);
        if (e->ndim < 0 || e->ndim > TEXTOK_MAX_DIMS)
            return textok__fail(TEXTOK_ERR_ARG, "%s: tensor '%.120s': ndim %d is outside [0, %d]", path, e->name,
                                e->ndim, TEXTOK_MAX_DIMS);
        textok__shape_str(s1, e->ndim, e->shape);
        for (j = 0; j < e->ndim; j++)
            if (e->shape[j] < 0)
                return textok__fail(TEXTOK_ERR_ARG, "%s: tensor '%.120s': shape %s has a negative dim", path, e->name, s1);
        if (!textok__numel(e->ndim, e->shape, &numel) || !textok__mul_size(numel, esz, &nbytes) ||
            !textok__add_size(total, nbytes, &total))
            return textok__fail(TEXTOK_ERR_ARG, "%s: tensor '%.120s': shape %s: byte size overflows size_t", path, e->name, s1);
        if (!e->data && numel)
            return textok__fail(TEXTOK_ERR_ARG, "%s: tensor '%.120s': data is NULL for shape %s", path, e->name, s1);
    }
    for (i = 0; i < 2 * n_meta; i++)
        if (!meta_kv[i]) return textok__fail(TEXTOK_ERR_ARG, "%s: metadata %s %d is NULL", path, i % 2 ? "value" : "key", i / 2);
    m = (size_t)(n_entries > n_meta ? n_entries : n_meta);
    if (!(names = (const char **)textok__calloc(m, sizeof *names))) return textok__fail(TEXTOK_ERR_NOMEM, "%s: out of memory", path);
    for (i = 0; i < n_entries; i++) names[i] = entries[i].name;
    if ((dup = textok__find_dup(names, (size_t)n_entries)))
        rc = textok__fail(TEXTOK_ERR_ARG, "%s: duplicate tensor name '%.120s'", path, dup);
    for (i = 0; !dup && i < n_meta; i++) names[i] = meta_kv[2 * i];
    if (!dup && (dup = textok__find_dup(names, (size_t)n_meta)))
        rc = textok__fail(TEXTOK_ERR_ARG, "%s: duplicate metadata key '%.120s'", path, dup);
    TEXTOK_FREE((void *)names);
    if (dup) return rc;

    /* header: compact JSON as the reference writer makes it, padded with spaces to a multiple
       of 8 so that data starts 8-aligned in the file */
    memset(&h, 0, sizeof h);
    textok__sputs(&h, "{");
    if (n_meta) {
        textok__sputs(&h, "\"__metadata__\":{");
        for (i = 0; i < n_meta; i++) {
            if (i) textok__sputs(&h, ",");
            textok__sput_json(&h, meta_kv[2 * i]);
            textok__sputs(&h, ":");
            textok__sput_json(&h, meta_kv[2 * i + 1]);
        }
        textok__sputs(&h, n_entries ? "}," : "}");
    }
    for (i = 0; i < n_entries; i++) {
        const textok_st_entry *e = &entries[i];
        textok__numel(e->ndim, e->shape, &numel);
        if (i) textok__sputs(&h, ",");
        textok__sput_json(&h, e->name);
        textok__sputs(&h, ":{\"dtype\":\"");
        textok__sputs(&h, textok__dtype_name[dtype]);
        textok__sputs(&h, "\",\"shape\":[");
        for (j = 0; j < e->ndim; j++) {
            if (j) textok__sputs(&h, ",");
            textok__sput_int(&h, (unsigned long long)e->shape[j]);
        }
        textok__sputs(&h, "],\"data_offsets\":[");
        textok__sput_int(&h, off);
        textok__sputs(&h, ",");
        off += numel * esz;
        textok__sput_int(&h, off);
        textok__sputs(&h, "]}");
    }
    textok__sputs(&h, "}");
    while (!h.oom && h.n % 8) textok__sputs(&h, " ");
    if (h.oom) {
        TEXTOK_FREE(h.p);
        return textok__fail(TEXTOK_ERR_NOMEM, "%s: out of memory building the header", path);
    }
    for (i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)h.n >> (8 * i));

    if ((rc = textok__wopen(&w, path))) { TEXTOK_FREE(h.p); return rc; }
    textok__wbytes(&w, len8, 8);
    textok__wbytes(&w, h.p, h.n);
    TEXTOK_FREE(h.p);
    for (i = 0; i < n_entries; i++) {
        textok__numel(entries[i].ndim, entries[i].shape, &numel);
        textok__wfloats(&w, entries[i].data, numel, dtype);
    }
    return textok__wclose(&w);
}
#endif /* TEXTOK_NO_STDIO */

/* ---- 3.7 npy: float32, C order ------------------------------------------------------------- */

/* A Python string literal without escapes ('...' or "...") into buf, truncated to cap-1 chars
   (a truncated key or descr then fails to match, which is the right error). 0 if none here. */
static int textok__py_str(textok__cur *c, char *buf, size_t cap)
{
    const char *q;
    size_t n = 0;
    textok__ws(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"')) return 0;
    for (q = c->p + 1; q < c->end && *q != *c->p; q++)
        if (n + 1 < cap) buf[n++] = *q;
    if (q >= c->end) return 0;
    buf[n] = 0;
    c->p = q + 1;
    return 1;
}

/* The header dict {'descr': '<f4', 'fortran_order': False, 'shape': (d0, d1), }: these three
   keys exactly once each (as numpy itself requires), in any order, trailing commas allowed. */
static int textok__npy_parse_dict(textok__cur *c, int *ndim, int64_t *shape)
{
    int seen = 0, bit;
    char key[32], val[32];
    const char *why;
    if (!textok__eat(c, '{')) return textok__cfail(c, TEXTOK_ERR_FORMAT, "the header is not a Python dict (it must start with '{')");
    while (!textok__eat(c, '}')) {
        if (!textok__py_str(c, key, sizeof key)) return textok__csyntax(c, "a quoted key or '}'");
        bit = !strcmp(key, "descr") ? 1 : !strcmp(key, "fortran_order") ? 2 : !strcmp(key, "shape") ? 4 : 0;
        if (!bit) return textok__cfail(c, TEXTOK_ERR_FORMAT, "unknown key '%s' in the header dict", key);
        if (seen & bit) return textok__cfail(c, TEXTOK_ERR_FORMAT, "duplicate key '%s' in the header dict", key);
        seen |= bit;
        if (!textok__eat(c, ':')) return textok__csyntax(c, "':'");
        textok__ws(c);
        if (bit == 1) {
            if (!textok__py_str(c, val, sizeof val))
                return textok__cfail(c, TEXTOK_ERR_UNSUPPORTED, "descr is not a simple type string (structured dtypes are not supported)");
            if (strcmp(val, "<f4"))
                return textok__cfail(c, TEXTOK_ERR_UNSUPPORTED, "descr '%s' is not supported (only '<f4', little-endian float32)", val);
        } else if (bit == 2) {
            if ((size_t)(c->end - c->p) >= 4 && !memcmp(c->p, "True", 4))
                return textok__cfail(c, TEXTOK_ERR_UNSUPPORTED, "fortran_order True (column-major data) is not supported");
            if ((size_t)(c->end - c->p) < 5 || memcmp(c->p, "False", 5)) return textok__csyntax(c, "True or False for fortran_order");
            c->p += 5;
        } else {
            if (!textok__eat(c, '(')) return textok__csyntax(c, "a tuple for shape");
            for (*ndim = 0; !textok__eat(c, ')');) {
                if (*ndim == TEXTOK_MAX_DIMS)
                    return textok__cfail(c, TEXTOK_ERR_UNSUPPORTED, "shape has more than %d dims", TEXTOK_MAX_DIMS);
                if ((why = textok__scan_int(c, &shape[*ndim]))) return textok__int_fail(c, "shape", why);
                if (c->p < c->end && *c->p == 'L') c->p++;   /* Python 2 long, as old numpy wrote it */
                (*ndim)++;
                if (textok__eat(c, ',')) continue;
                if (textok__eat(c, ')')) break;
                return textok__csyntax(c, "',' or ')' in shape");
            }
        }
        if (textok__eat(c, ',')) continue;
        if (textok__eat(c, '}')) break;
        return textok__csyntax(c, "',' or '}'");
    }
    if (seen != 7)
        return textok__cfail(c, TEXTOK_ERR_FORMAT, "missing key '%s' in the header dict",
                             !(seen & 1) ? "descr" : !(seen & 2) ? "fortran_order" : "shape");
    textok__ws(c);   /* numpy pads with spaces and a final '\n' */
    return c->p == c->end ? TEXTOK_OK : textok__csyntax(c, "only spaces after the header dict");
}

/* Reads a float32 .npy image; *data is allocated with the library allocator (textok_free).
   Outputs are written only on success; shape entries past ndim are set to 0. */
TEXTOKDEF int textok_npy_read_memory(const void *bytes, size_t size, const char *name_for_errors,
                                     float **data, int *ndim, int64_t shape[TEXTOK_MAX_DIMS])
{
    const unsigned char *b = (const unsigned char *)bytes;
    const char *name = name_for_errors ? name_for_errors : "<memory>";
    textok__cur c;
    size_t pre, hlen, numel, nbytes, have;
    int64_t sh[TEXTOK_MAX_DIMS] = { 0 };
    int nd = 0, rc, i;
    char s1[TEXTOK__SHAPE_STR];
    float *out;
    if (!data || !ndim || !shape || (!bytes && size))
        return textok__fail(TEXTOK_ERR_ARG, "textok_npy_read_memory: %s: NULL argument", name);
    if (size < 8 || memcmp(b, "\x93NUMPY", 6))
        return textok__fail(TEXTOK_ERR_FORMAT, "%s: not a .npy file (no \\x93NUMPY magic)", name);
    if ((b[6] != 1 && b[6] != 2 && b[6] != 3) || b[7] != 0)
        return textok__fail(TEXTOK_ERR_UNSUPPORTED, "%s: .npy version %d.%d is not supported (1.0, 2.0, 3.0 are)", name, b[6], b[7]);
    pre = b[6] == 1 ? 10 : 12;   /* magic, version, then a u16 (1.0) or u32 header length */
    if (size < pre) return textok__fail(TEXTOK_ERR_FORMAT, "%s: file ends inside the header length", name);
    hlen = (size_t)textok__le(b + 8, (int)pre - 8);
    if (hlen > size - pre)
        return textok__fail(TEXTOK_ERR_FORMAT, "%s: header length %zu runs past the end of the file (%zu bytes)", name, hlen, size);
    c.p = c.beg = (const char *)b + pre;
    c.end = c.p + hlen;
    c.file = name;
    c.tensor = NULL;
    if ((rc = textok__npy_parse_dict(&c, &nd, sh))) return rc;
    textok__shape_str(s1, nd, sh);
    if (!textok__numel(nd, sh, &numel) || !textok__mul_size(numel, 4, &nbytes))
        return textok__fail(TEXTOK_ERR_FORMAT, "%s: shape %s has more bytes than fit in size_t (overflow)", name, s1);
    have = size - pre - hlen;
    if (have < nbytes)
        return textok__fail(TEXTOK_ERR_FORMAT, "%s: data is truncated: shape %s needs %zu bytes but %zu follow the header",
                            name, s1, nbytes, have);
    if (have > nbytes)
        return textok__fail(TEXTOK_ERR_FORMAT, "%s: %zu trailing bytes after the %zu bytes of shape %s", name,
                            have - nbytes, nbytes, s1);
    if (!(out = (float *)textok__malloc(nbytes)))
        return textok__fail(TEXTOK_ERR_NOMEM, "%s: out of memory for %zu bytes", name, nbytes);
    textok__load_floats(out, b + pre + hlen, numel, TEXTOK_DTYPE_F32);
    *data = out;
    *ndim = nd;
    for (i = 0; i < TEXTOK_MAX_DIMS; i++) shape[i] = i < nd ? sh[i] : 0;
    return TEXTOK_OK;
}

#ifndef TEXTOK_NO_STDIO
TEXTOKDEF int textok_npy_read(const char *path, float **data, int *ndim, int64_t shape[TEXTOK_MAX_DIMS])
{
    unsigned char *bytes;
    size_t size;
    int rc;
    if (!path) return textok__fail(TEXTOK_ERR_ARG, "textok_npy_read: path is NULL");
    if ((rc = textok__read_file(path, path, &bytes, &size))) return rc;
    rc = textok_npy_read_memory(bytes, size, path, data, ndim, shape);
    TEXTOK_FREE(bytes);
    return rc;
}

/* Writes version 1.0 with numpy's layout: header padded with spaces and a final '\n' so that
   magic + length + header is a multiple of 64 bytes. */
TEXTOKDEF int textok_npy_write(const char *path, const float *data, int ndim, const int64_t *shape)
{
    textok__wfile w;
    char hdr[384], s1[TEXTOK__SHAPE_STR];
    unsigned char pre[10] = { 0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, 0, 0 };
    size_t n, pad, numel, nbytes;
    int i, rc;
    if (!path || ndim < 0 || ndim > TEXTOK_MAX_DIMS || (ndim && !shape))
        return textok__fail(TEXTOK_ERR_ARG, "textok_npy_write: bad arguments (path NULL, or ndim %d)", ndim);
    textok__shape_str(s1, ndim, shape);
    for (i = 0; i < ndim; i++)
        if (shape[i] < 0) return textok__fail(TEXTOK_ERR_ARG, "%s: shape %s has a negative dim", path, s1);
    if (!textok__numel(ndim, shape, &numel) || !textok__mul_size(numel, 4, &nbytes))
        return textok__fail(TEXTOK_ERR_ARG, "%s: shape %s: byte size overflows size_t", path, s1);
    if (!data && numel) return textok__fail(TEXTOK_ERR_ARG, "%s: data is NULL for shape %s", path, s1);
    /* the dict exactly as numpy writes it: a 1-tuple keeps its trailing comma, "(5,)" */
    n = (size_t)snprintf(hdr, sizeof hdr, "{'descr': '<f4', 'fortran_order': False, 'shape': (");
    for (i = 0; i < ndim; i++) n += (size_t)snprintf(hdr + n, sizeof hdr - n, i ? ", %lld" : "%lld", (long long)shape[i]);
    n += (size_t)snprintf(hdr + n, sizeof hdr - n, "%s), }", ndim == 1 ? "," : "");
    pad = 64 - (sizeof pre + n + 1) % 64;   /* 1..64 spaces, as numpy's _wrap_header */
    memset(hdr + n, ' ', pad);
    hdr[n + pad] = '\n';
    n += pad + 1;
    pre[8] = (unsigned char)(n & 0xff);
    pre[9] = (unsigned char)(n >> 8);
    if ((rc = textok__wopen(&w, path))) return rc;
    textok__wbytes(&w, pre, sizeof pre);
    textok__wbytes(&w, hdr, n);
    textok__wfloats(&w, data, numel, TEXTOK_DTYPE_F32);
    return textok__wclose(&w);
}
#endif /* TEXTOK_NO_STDIO */
