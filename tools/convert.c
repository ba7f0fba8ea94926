/* convert: a TiTok tokenizer checkpoint, a generator (DiT, TiTok's MaskGIT), the LPIPS loss
   network, or a T5 text encoder, as published -> the textok layout (safetensors, F32)

     build/convert IN OUT.safetensors [--l2-norm 0|1] [--quiet]     TiTok
     build/convert IN OUT.safetensors [--heads N] [--dit-1d]        DiT, MaskGIT (see Generators)
     build/convert --lpips VGG16 LIN OUT.safetensors [--quiet]      torchvision vgg16 + LPIPS lin
     build/convert --lpips LPIPS OUT.safetensors [--quiet]          one LPIPS(net='vgg') state_dict
     build/convert --t5 IN OUT.safetensors [--t5-config config.json] [--quiet]
                                                                    Hugging Face T5 / flan-T5: the
                                                                    encoder half (IN may be a shard
                                                                    index .json)

   WHAT IT READS (told by the first bytes, never by the file name)
     safetensors  8-byte little-endian header length, then a JSON header starting with '{'.
                  Parsed by textok_st_open_memory: F32, F16 and BF16 tensors.
     PyTorch zip  what torch.save writes since torch 1.6 (.bin/.pth/.pt), starting "PK\3\4": a ZIP
                  archive whose entries all live under one top-level folder f/:
                     f/data.pkl     a pickle of the state_dict
                     f/data/<key>   the raw little-endian bytes of one storage
                  Entries must be stored (uncompressed), as torch.save writes them; a compressed
                  one is refused by name. Entries are found through the central directory, which
                  is the only place torch records their sizes (its local headers carry zeros and a
                  data descriptor); ZIP64 end records and ZIP64 extra fields are understood.
     PyTorch legacy  what torch.save wrote before torch 1.6 (and later with
                  _use_new_zipfile_serialization=False), starting 80 02: pickles back to back (the
                  magic number, the format version 1001, sys_info, the state_dict, the list of
                  storage keys), then each storage's element count and bytes (cv_load_torch_legacy).
                  torchvision's vgg16-397923af.pth and LPIPS's vgg.pth are in this format.

   THE PICKLE SUBSET
     data.pkl runs on a small stack machine that knows only what a state_dict needs:
        framing     PROTO FRAME MARK STOP
        memo        BINPUT LONG_BINPUT MEMOIZE BINGET LONG_BINGET
        scalars     NONE NEWTRUE NEWFALSE BININT BININT1 BININT2 LONG1 BINFLOAT
                    BINUNICODE SHORT_BINUNICODE BINUNICODE8 SHORT_BINSTRING BINSTRING (Python 2)
        containers  EMPTY_DICT EMPTY_TUPLE EMPTY_LIST TUPLE TUPLE1 TUPLE2 TUPLE3
                    SETITEM SETITEMS APPEND APPENDS
        objects     GLOBAL STACK_GLOBAL REDUCE BUILD BINPERSID
     and only these globals: collections.OrderedDict (empty, or from a list of pairs as Python 2
     wrote it), torch._utils._rebuild_tensor_v2 (and _rebuild_tensor, torch < 0.4),
     torch._utils._rebuild_parameter(_with_state) and torch.<Type>Storage. Nothing is executed: a
     REDUCE of a known global builds the one value it stands for, and BUILD's state (attributes
     such as a state_dict's _metadata) is dropped. Any other opcode or global is an error that
     names it and its offset in data.pkl (legacy: in the file). The persistent id ("storage",
     torch.<Type>Storage, key, location, numel) names the entry f/data/<key>, whose size must be
     numel elements; a legacy one adds a view (None, or a slice of the storage) and its data is
     the record of that key after the pickles, whose count must be numel. A tensor's
     storage_offset, sizes and strides are honoured (non-contiguous tensors are gathered) and its
     largest index must lie inside the storage. Float, Half and BFloat16 storages are converted;
     other dtypes are refused, naming the tensor. The stack, the memo, the number of objects and
     of container elements, and every length read from the file are bounded, so no input can
     crash the reader (the limits are textok.h's TEXTOK_MAX_PICKLE_* and TEXTOK_MAX_ZIP_ENTRIES). A
     view may overlap or repeat its storage's elements (stride 0 can describe a huge tensor with
     a few bytes), so the elements of all tensors together may not exceed 4 per byte of the input
     (+ 4M), and an output of more than CV_MAX_PARAMS parameters is refused (TiTok-L-32 has 641M).
     A dict {"state_dict": sd} or {"model": sd} around the state_dict is unwrapped; a DiT train.py
     checkpoint {"model", "ema", "opt", "args"} gives its "ema" (as DiT's find_model does), and its
     args, an argparse.Namespace (GLOBAL + NEWOBJ + BUILD), is read as an opaque value.

   WHAT IT DOES WITH THE TENSORS
     1. recognises the TiTok family from the parameter names (legacy VQ with the MaskGIT-VQGAN
        pixel decoder, VQ with a pixel head, VAE) and infers every textok_titok_config field
        from the shapes (architecture.md 1.8);
     2. checks the file against textok_titok_tensor_specs(cfg) and reports every missing,
        unexpected, mis-shaped and wrongly typed tensor (all of them), writing nothing if any;
        buffers that are not parameters (*position_ids, *num_batches_tracked) are skipped;
     3. writes OUT as F32 in state_dict order with the config in __metadata__ through
        textok_st_save (OUT.tmp, then rename: a failure never leaves a partial file), and prints
        the family and the parameter count of each component.
   With --lpips the same steps make the textok LPIPS file (see the LPIPS section): the inputs'
   roles are told from their names, the five tap widths inferred from the shapes, every tensor
   checked with the cause of each mismatch spelled out (3x3 kernels, each conv's in-channels =
   the previous conv's out-channels, lin widths = tap widths), the lins.{k} aliases and the
   scaling_layer constants of a full LPIPS state_dict verified and dropped.
   With --t5 likewise for a T5 checkpoint (see the T5 section): the encoder's config from the
   shapes and config.json, every encoder tensor checked, decoder.* and lm_head.* dropped.
   Generators likewise (see the Generators section): a DiT (x_embedder / t_embedder names) or a
   MaskGIT (ImageBert's model.embeddings / model.encoder.layer, UViT's in_blocks / mid_block),
   the config from the shapes (heads from the published table or --heads N), every tensor
   checked against textok_dit_tensor_specs / textok_maskgit_tensor_specs.
   Exit status: 0 written, 1 bad input (the message on stderr says why), 2 bad command line.

   SECTIONS: helpers and files | ZIP | pickle VM | tensor table | family recognition |
             checks | write | LPIPS | T5 | generators | main */

#define TEXTOK_IMPLEMENTATION
#include "textok.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__) || defined(__clang__)
#define CV_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define CV_PRINTF(a, b)
#endif

/* =============================================================================================
   Helpers and files */

static char cv_errbuf[1024];   /* the message of the last failure; main prints it */
static int  cv_quiet;          /* --quiet: no report on stdout (errors still go to stderr) */

CV_PRINTF(1, 2) static int cv_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cv_errbuf, sizeof cv_errbuf, fmt, ap);
    va_end(ap);
    return -1;
}

CV_PRINTF(1, 2) static void cv_info(const char *fmt, ...)
{
    va_list ap;
    if (cv_quiet) return;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
}

/* n bytes (n <= 8) as an unsigned little-endian integer */
static uint64_t cv_le(const unsigned char *p, int n)
{
    uint64_t v = 0;
    while (n-- > 0) v = (v << 8) | p[n];
    return v;
}

static int cv_mul_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    if (a && b > UINT64_MAX / a) return 0;
    *out = a * b;
    return 1;
}

static int cv_add_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    if (b > UINT64_MAX - a) return 0;
    *out = a + b;
    return 1;
}

/* grows *p (an array of elem-byte items, capacity *cap) to hold at least need items */
static int cv_grow(void **p, size_t *cap, size_t need, size_t elem)
{
    size_t nc;
    void *np;
    if (need <= *cap) return 1;
    nc = *cap ? *cap : 16;
    while (nc < need) {
        if (nc > SIZE_MAX / 2) return 0;
        nc *= 2;
    }
    if (nc > SIZE_MAX / elem) return 0;
    if (!(np = realloc(*p, nc * elem))) return 0;
    *p = np;
    *cap = nc;
    return 1;
}

static char *cv_strndup(const char *s, size_t n)
{
    char *d = (char *)malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

static int cv_ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !memcmp(s + n - m, suffix, m);
}

/* "[768, 3, 16, 16]", as the library writes shapes */
static const char *cv_shape_str(char *buf, size_t size, int ndim, const int64_t *shape)
{
    size_t n = 0;
    int i;
    n += (size_t)snprintf(buf, size, "[");
    for (i = 0; i < ndim && n < size; i++)
        n += (size_t)snprintf(buf + n, size - n, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (n < size) snprintf(buf + n, size - n, "]");
    return buf;
}

/* 83674639 -> "83,674,639" */
static const char *cv_commas(char *buf, size_t size, unsigned long long v)
{
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, "%llu", v), i, o = 0;
    for (i = 0; i < n && (size_t)o + 2 < size; i++) {
        if (i && (n - i) % 3 == 0) buf[o++] = ',';
        buf[o++] = tmp[i];
    }
    buf[o] = 0;
    return buf;
}

/* =============================================================================================
   ZIP: the central directory lists the entries; each entry's data follows its local header.
   Only what torch.save produces is needed: one disk, stored entries, optional ZIP64 records. */

typedef struct cv_zip_entry {
    char    *name;
    uint64_t local_offset;   /* of the local file header */
    uint64_t size;           /* compressed size: the bytes in the file */
    uint64_t usize;          /* uncompressed size */
    int      method, flags;
} cv_zip_entry;

typedef struct cv_zip {
    const unsigned char *data;
    size_t               size;
    const char          *path;
    cv_zip_entry        *entries;   /* sorted by name */
    size_t               n;
} cv_zip;

static int cv_cmp_entry(const void *a, const void *b)
{
    return strcmp(((const cv_zip_entry *)a)->name, ((const cv_zip_entry *)b)->name);
}

static void cv_zip_close(cv_zip *z)
{
    size_t i;
    for (i = 0; i < z->n; i++) free(z->entries[i].name);
    free(z->entries);
    memset(z, 0, sizeof *z);
}

static int cv_zip_open(cv_zip *z, const unsigned char *d, size_t n, const char *path)
{
    size_t eocd = 0, lo, i;
    uint64_t n_entries, cd_size, cd_off, cd_limit, p, cd_end;
    int found = 0;
    memset(z, 0, sizeof *z);
    z->data = d;
    z->size = n;
    z->path = path;
    if (n < 22) return cv_fail("%s: truncated: %zu bytes is too short for a ZIP archive", path, n);

    /* end of central directory: 22 bytes plus a comment of up to 64 KiB, so search backwards;
       the comment length must reach exactly to the end of the file */
    lo = n - 22 > 65535 ? n - 22 - 65535 : 0;
    for (i = n - 22 + 1; i-- > lo;)
        if (cv_le(d + i, 4) == 0x06054b50 && i + 22 + cv_le(d + i + 20, 2) == n) {
            eocd = i;
            found = 1;
            break;
        }
    if (!found)
        return cv_fail("%s: truncated or damaged ZIP archive: no end-of-central-directory record "
                       "at the end of the file", path);
    n_entries = cv_le(d + eocd + 10, 2);
    cd_size = cv_le(d + eocd + 12, 4);
    cd_off = cv_le(d + eocd + 16, 4);
    cd_limit = eocd;
    if (eocd >= 20 && cv_le(d + eocd - 20, 4) == 0x07064b50) {
        /* ZIP64 locator, then the ZIP64 end record it points to (56 bytes before any extension) */
        uint64_t z64 = cv_le(d + eocd - 20 + 8, 8);
        if (z64 > eocd - 20 || eocd - 20 - z64 < 56 || cv_le(d + z64, 4) != 0x06064b50)
            return cv_fail("%s: damaged ZIP64 end-of-central-directory record", path);
        if (cv_le(d + z64 + 16, 4) != 0 || cv_le(d + z64 + 20, 4) != 0)
            return cv_fail("%s: multi-disk ZIP archives are not supported", path);
        n_entries = cv_le(d + z64 + 32, 8);
        cd_size = cv_le(d + z64 + 40, 8);
        cd_off = cv_le(d + z64 + 48, 8);
        cd_limit = z64;
    } else if (n_entries == 0xFFFF || cd_size == 0xFFFFFFFFu || cd_off == 0xFFFFFFFFu) {
        return cv_fail("%s: damaged ZIP archive: ZIP64 sizes but no ZIP64 locator", path);
    } else if (cv_le(d + eocd + 4, 2) != 0 || cv_le(d + eocd + 6, 2) != 0) {
        return cv_fail("%s: multi-disk ZIP archives are not supported", path);
    }
    if (cd_off > cd_limit || cd_size > cd_limit - cd_off)
        return cv_fail("%s: truncated or damaged ZIP archive: the central directory (%llu bytes at "
                       "offset %llu) lies outside the file", path, (unsigned long long)cd_size,
                       (unsigned long long)cd_off);
    if (n_entries > cd_size / 46)
        return cv_fail("%s: damaged ZIP archive: %llu entries cannot fit a central directory of %llu "
                       "bytes", path, (unsigned long long)n_entries, (unsigned long long)cd_size);
    if (n_entries > TEXTOK_MAX_ZIP_ENTRIES)
        return cv_fail("%s: a ZIP archive of %llu entries: more than the limit of %d (TEXTOK_MAX_ZIP_ENTRIES)",
                       path, (unsigned long long)n_entries, TEXTOK_MAX_ZIP_ENTRIES);
    if (n_entries && !(z->entries = (cv_zip_entry *)calloc((size_t)n_entries, sizeof *z->entries)))
        return cv_fail("%s: out of memory", path);

    p = cd_off;
    cd_end = cd_off + cd_size;
    for (i = 0; i < (size_t)n_entries; i++) {
        cv_zip_entry *e = &z->entries[i];
        const unsigned char *h = d + p;
        uint64_t nlen, elen, clen, x, xend;
        if (cd_end - p < 46 || cv_le(h, 4) != 0x02014b50)
            return cv_fail("%s: damaged ZIP central directory at entry %zu (offset %llu)", path, i,
                           (unsigned long long)p);
        e->flags = (int)cv_le(h + 8, 2);
        e->method = (int)cv_le(h + 10, 2);
        e->size = cv_le(h + 20, 4);
        e->usize = cv_le(h + 24, 4);
        nlen = cv_le(h + 28, 2);
        elen = cv_le(h + 30, 2);
        clen = cv_le(h + 32, 2);
        e->local_offset = cv_le(h + 42, 4);
        if (cd_end - p - 46 < nlen + elen + clen)
            return cv_fail("%s: damaged ZIP central directory at entry %zu", path, i);
        if (memchr(h + 46, 0, (size_t)nlen))
            return cv_fail("%s: ZIP entry %zu has a NUL byte in its name", path, i);
        if (!(e->name = cv_strndup((const char *)h + 46, (size_t)nlen)))
            return cv_fail("%s: out of memory", path);
        z->n = i + 1;   /* so that cv_zip_close frees the names read so far */
        /* ZIP64 extra field (id 1): 8-byte values for exactly the 32-bit fields that are all ones,
           in the order uncompressed size, compressed size, local header offset */
        x = p + 46 + nlen;
        xend = x + elen;
        while (xend - x >= 4) {
            uint64_t id = cv_le(d + x, 2), sz = cv_le(d + x + 2, 2), q = x + 4;
            if (sz > xend - q) return cv_fail("%s: damaged extra field in ZIP entry '%s'", path, e->name);
            if (id == 1) {
                uint64_t *fields[3];
                int k, nf = 0;
                if (e->usize == 0xFFFFFFFFu) fields[nf++] = &e->usize;
                if (e->size == 0xFFFFFFFFu) fields[nf++] = &e->size;
                if (e->local_offset == 0xFFFFFFFFu) fields[nf++] = &e->local_offset;
                if (sz < 8 * (uint64_t)nf)
                    return cv_fail("%s: ZIP64 extra field of entry '%s' is too short", path, e->name);
                for (k = 0; k < nf; k++) *fields[k] = cv_le(d + q + 8 * k, 8);
            }
            x = q + sz;
        }
        p += 46 + nlen + elen + clen;
    }
    if (z->n) qsort(z->entries, z->n, sizeof *z->entries, cv_cmp_entry);   /* qsort(NULL, 0) is undefined */
    for (i = 1; i < z->n; i++)
        if (!strcmp(z->entries[i - 1].name, z->entries[i].name))
            return cv_fail("%s: duplicate ZIP entry '%s'", path, z->entries[i].name);
    return 0;
}

static const cv_zip_entry *cv_zip_find(const cv_zip *z, const char *name)
{
    cv_zip_entry key;
    key.name = (char *)name;
    if (!z->n) return NULL;
    return (const cv_zip_entry *)bsearch(&key, z->entries, z->n, sizeof key, cv_cmp_entry);
}

/* The bytes of a stored entry: checks its local header and that the data lies inside the file. */
static int cv_zip_data(const cv_zip *z, const cv_zip_entry *e, const unsigned char **out)
{
    const unsigned char *h;
    uint64_t nlen, elen, off;
    if (e->flags & 1) return cv_fail("%s: ZIP entry '%s' is encrypted", z->path, e->name);
    if (e->method != 0)
        return cv_fail("%s: ZIP entry '%s' is compressed (method %d%s); torch.save stores entries "
                       "uncompressed and convert reads only stored entries: save the checkpoint "
                       "again with torch.save (or re-zip it with 'zip -0')", z->path, e->name,
                       e->method, e->method == 8 ? " = deflate" : "");
    if (e->size != e->usize)
        return cv_fail("%s: damaged ZIP entry '%s': stored, but its sizes differ (%llu, %llu)", z->path,
                       e->name, (unsigned long long)e->size, (unsigned long long)e->usize);
    if (e->local_offset > z->size || z->size - e->local_offset < 30 ||
        cv_le(z->data + e->local_offset, 4) != 0x04034b50)
        return cv_fail("%s: truncated or damaged ZIP archive: no local header for entry '%s' at "
                       "offset %llu", z->path, e->name, (unsigned long long)e->local_offset);
    h = z->data + e->local_offset;
    nlen = cv_le(h + 26, 2);
    elen = cv_le(h + 28, 2);
    off = e->local_offset + 30 + nlen + elen;
    if (nlen != strlen(e->name) || off > z->size || memcmp(h + 30, e->name, (size_t)nlen))
        return cv_fail("%s: damaged ZIP archive: the local header of entry '%s' disagrees with the "
                       "central directory", z->path, e->name);
    if (e->size > z->size - off)
        return cv_fail("%s: truncated: ZIP entry '%s' (%llu bytes at offset %llu) runs past the end "
                       "of the file (%zu bytes)", z->path, e->name, (unsigned long long)e->size,
                       (unsigned long long)off, z->size);
    *out = z->data + off;
    return 0;
}

/* =============================================================================================
   Pickle VM: just enough of Python's unpickler to rebuild a state_dict (see the top comment).
   Objects are never freed one by one: every object lives in vm->objs until pk_free. */

enum { PK_NONE, PK_BOOL, PK_INT, PK_FLOAT, PK_STR, PK_TUPLE, PK_LIST, PK_DICT, PK_GLOBAL,
       PK_STORAGE, PK_TENSOR };
static const char *const pk_type_name[] = { "None", "bool", "int", "float", "str", "tuple", "list",
                                            "dict", "global", "storage", "tensor" };

/* the globals a state_dict pickle may name */
enum { PKG_ORDERED_DICT, PKG_REBUILD_TENSOR, PKG_REBUILD_TENSOR_V2, PKG_REBUILD_PARAMETER,
       PKG_REBUILD_PARAMETER_WITH_STATE, PKG_STORAGE, PKG_NAMESPACE };

typedef struct cv_storage_type {
    const char *name;    /* torch.<name> */
    const char *dtype;   /* for messages */
    int         textok_dtype;   /* TEXTOK_DTYPE_*, or -1: refused */
    int         size;    /* bytes per element */
} cv_storage_type;

static const cv_storage_type cv_storage_types[] = {
    { "FloatStorage", "F32", TEXTOK_DTYPE_F32, 4 },
    { "HalfStorage", "F16", TEXTOK_DTYPE_F16, 2 },
    { "BFloat16Storage", "BF16", TEXTOK_DTYPE_BF16, 2 },
    { "DoubleStorage", "float64 (torch.DoubleStorage)", -1, 8 },
    { "LongStorage", "int64 (torch.LongStorage)", -1, 8 },
    { "IntStorage", "int32 (torch.IntStorage)", -1, 4 },
    { "ShortStorage", "int16 (torch.ShortStorage)", -1, 2 },
    { "CharStorage", "int8 (torch.CharStorage)", -1, 1 },
    { "ByteStorage", "uint8 (torch.ByteStorage)", -1, 1 },
    { "BoolStorage", "bool (torch.BoolStorage)", -1, 1 },
    { "ComplexFloatStorage", "complex64 (torch.ComplexFloatStorage)", -1, 8 },
    { "ComplexDoubleStorage", "complex128 (torch.ComplexDoubleStorage)", -1, 16 },
};

typedef struct pk_tensor {
    struct pk_obj *storage;
    int64_t        offset;                        /* storage_offset, in elements */
    int            ndim;
    int64_t        shape[TEXTOK_MAX_DIMS], stride[TEXTOK_MAX_DIMS];
} pk_tensor;

typedef struct pk_obj {
    int                    type;    /* PK_* */
    int64_t                i;       /* int, bool; global: PKG_*; storage: numel */
    double                 f;       /* float */
    char                  *s;       /* str; storage: its key */
    struct pk_obj        **items;   /* tuple, list; dict: key0, value0, key1, value1, ... */
    size_t                 n, cap;
    const cv_storage_type *stype;   /* global PKG_STORAGE, storage */
    const unsigned char   *bytes;   /* storage: its data (ZIP entry, or the legacy record once read) */
    int64_t                view_offset;   /* legacy storage view: first element in the root storage, */
    int64_t                view_numel;    /* and its length; view_numel < 0: the whole storage */
    pk_tensor             *tensor;  /* tensor */
} pk_obj;

/* Bounds: far beyond any real state_dict (TiTok-L-32: 692 tensors, ~10k objects), small enough
   that a hostile data.pkl cannot exhaust memory. */
#define PK_MAX_OBJECTS TEXTOK_MAX_PICKLE_OBJECTS   /* textok.h, LIMITS */
#define PK_MAX_STACK   TEXTOK_MAX_PICKLE_STACK
#define PK_MAX_MARKS   (1u << 16)
#define PK_MAX_MEMO    TEXTOK_MAX_PICKLE_MEMO
#define PK_MAX_ITEMS   TEXTOK_MAX_PICKLE_ITEMS     /* elements of all tuples, lists and dicts together */
#define PK_MAX_LINE    256          /* a GLOBAL's module or name */

typedef struct pk_vm {
    const unsigned char *p;          /* data.pkl */
    size_t               n, pos;
    size_t               op_pos;     /* offset of the opcode being run, for messages */
    int                  op;
    pk_obj             **stack;
    size_t               sp, stack_cap;
    size_t              *marks;      /* stack heights at each MARK */
    size_t               n_marks, marks_cap;
    pk_obj             **memo;
    size_t               memo_cap, memo_len;
    pk_obj             **objs;       /* every object made, for pk_free */
    size_t               n_objs, objs_cap;
    size_t               n_items;    /* container elements so far, against PK_MAX_ITEMS */
    const cv_zip        *zip;        /* torch zip: the archive the storages live in */
    const char          *prefix;     /* "archive/" */
    const char          *path;       /* the input file, for messages */
    const char          *where;      /* "data.pkl offset" (zip), "offset" (legacy: p is the file) */
    int                  legacy;     /* legacy format: 6-item persistent ids, data after the pickles */
} pk_vm;

static const char *pk_opname(int op)
{
    switch (op) {
    case '(': return "MARK";          case '.': return "STOP";         case '0': return "POP";
    case '1': return "POP_MARK";      case '2': return "DUP";          case 'F': return "FLOAT";
    case 'I': return "INT";           case 'J': return "BININT";       case 'K': return "BININT1";
    case 'L': return "LONG";          case 'M': return "BININT2";      case 'N': return "NONE";
    case 'P': return "PERSID";        case 'Q': return "BINPERSID";    case 'R': return "REDUCE";
    case 'S': return "STRING";        case 'T': return "BINSTRING";    case 'U': return "SHORT_BINSTRING";
    case 'V': return "UNICODE";       case 'X': return "BINUNICODE";   case 'a': return "APPEND";
    case 'b': return "BUILD";         case 'c': return "GLOBAL";       case 'd': return "DICT";
    case '}': return "EMPTY_DICT";    case 'e': return "APPENDS";      case 'g': return "GET";
    case 'h': return "BINGET";        case 'i': return "INST";         case 'j': return "LONG_BINGET";
    case 'l': return "LIST";          case ']': return "EMPTY_LIST";   case 'o': return "OBJ";
    case 'p': return "PUT";           case 'q': return "BINPUT";       case 'r': return "LONG_BINPUT";
    case 's': return "SETITEM";       case 't': return "TUPLE";        case ')': return "EMPTY_TUPLE";
    case 'u': return "SETITEMS";      case 'G': return "BINFLOAT";     case 'B': return "BINBYTES";
    case 'C': return "SHORT_BINBYTES";
    case 0x80: return "PROTO";        case 0x81: return "NEWOBJ";      case 0x82: return "EXT1";
    case 0x83: return "EXT2";         case 0x84: return "EXT4";        case 0x85: return "TUPLE1";
    case 0x86: return "TUPLE2";       case 0x87: return "TUPLE3";      case 0x88: return "NEWTRUE";
    case 0x89: return "NEWFALSE";     case 0x8a: return "LONG1";       case 0x8b: return "LONG4";
    case 0x8c: return "SHORT_BINUNICODE"; case 0x8d: return "BINUNICODE8"; case 0x8e: return "BINBYTES8";
    case 0x8f: return "EMPTY_SET";    case 0x90: return "ADDITEMS";    case 0x91: return "FROZENSET";
    case 0x92: return "NEWOBJ_EX";    case 0x93: return "STACK_GLOBAL"; case 0x94: return "MEMOIZE";
    case 0x95: return "FRAME";        case 0x96: return "BYTEARRAY8";  case 0x97: return "NEXT_BUFFER";
    case 0x98: return "READONLY_BUFFER";
    default: return "not a pickle opcode";
    }
}

/* a failure inside data.pkl: says where, and which opcode was running */
CV_PRINTF(2, 3) static int pk_fail(const pk_vm *vm, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return cv_fail("%s: %s %zu (opcode 0x%02x %s): %s", vm->path, vm->where, vm->op_pos, vm->op,
                   pk_opname(vm->op), msg);
}

static void pk_free(pk_vm *vm)
{
    size_t i;
    for (i = 0; i < vm->n_objs; i++) {
        free(vm->objs[i]->s);
        free(vm->objs[i]->items);
        free(vm->objs[i]->tensor);
        free(vm->objs[i]);
    }
    free(vm->objs);
    free(vm->stack);
    free(vm->marks);
    free(vm->memo);
    vm->objs = vm->stack = vm->memo = NULL;
    vm->marks = NULL;
    vm->n_objs = vm->sp = vm->n_marks = vm->memo_len = 0;
}

static pk_obj *pk_new(pk_vm *vm, int type)
{
    pk_obj *o;
    void *p = vm->objs;
    if (vm->n_objs >= PK_MAX_OBJECTS) {
        pk_fail(vm, "more than %u objects: not a plain state_dict", PK_MAX_OBJECTS);
        return NULL;
    }
    if (!cv_grow(&p, &vm->objs_cap, vm->n_objs + 1, sizeof *vm->objs) ||
        !(o = (pk_obj *)calloc(1, sizeof *o))) {
        if (p) vm->objs = (pk_obj **)p;
        pk_fail(vm, "out of memory");
        return NULL;
    }
    vm->objs = (pk_obj **)p;
    vm->objs[vm->n_objs++] = o;
    o->type = type;
    return o;
}

static int pk_push(pk_vm *vm, pk_obj *o)
{
    void *p = vm->stack;
    if (!o) return -1;   /* pk_new failed and said why */
    if (vm->sp >= PK_MAX_STACK) return pk_fail(vm, "stack deeper than %u", PK_MAX_STACK);
    if (!cv_grow(&p, &vm->stack_cap, vm->sp + 1, sizeof *vm->stack)) return pk_fail(vm, "out of memory");
    vm->stack = (pk_obj **)p;
    vm->stack[vm->sp++] = o;
    return 0;
}

/* the stack height below which the current MARK frame may not reach */
static size_t pk_base(const pk_vm *vm) { return vm->n_marks ? vm->marks[vm->n_marks - 1] : 0; }

static int pk_pop(pk_vm *vm, pk_obj **o)
{
    if (vm->sp <= pk_base(vm)) return pk_fail(vm, "stack underflow");
    *o = vm->stack[--vm->sp];
    return 0;
}

static int pk_top(pk_vm *vm, pk_obj **o)
{
    if (vm->sp <= pk_base(vm)) return pk_fail(vm, "stack underflow");
    *o = vm->stack[vm->sp - 1];
    return 0;
}

/* the object just below the items of a popped MARK frame that starts at first */
static int pk_below(pk_vm *vm, size_t first, pk_obj **o)
{
    if (first <= pk_base(vm)) return pk_fail(vm, "stack underflow");
    *o = vm->stack[first - 1];
    return 0;
}

/* pops everything above the last MARK: items [*first, vm->sp) stay readable until the next push */
static int pk_pop_mark(pk_vm *vm, size_t *first)
{
    if (!vm->n_marks) return pk_fail(vm, "no MARK to pop to");
    *first = vm->marks[--vm->n_marks];
    return 0;
}

static int pk_append(pk_vm *vm, pk_obj *container, pk_obj *item)
{
    void *p = container->items;
    if (++vm->n_items > PK_MAX_ITEMS)
        return pk_fail(vm, "more than %u container elements: not a plain state_dict", PK_MAX_ITEMS);
    if (!cv_grow(&p, &container->cap, container->n + 1, sizeof *container->items))
        return pk_fail(vm, "out of memory");
    container->items = (pk_obj **)p;
    container->items[container->n++] = item;
    return 0;
}

/* needs k more bytes of data.pkl */
static int pk_need(pk_vm *vm, uint64_t k)
{
    if (k > vm->n - vm->pos)
        return pk_fail(vm, "truncated: needs %llu bytes, %zu remain", (unsigned long long)k,
                       vm->n - vm->pos);
    return 0;
}

static int pk_memo_put(pk_vm *vm, uint64_t idx)
{
    pk_obj *o;
    void *p = vm->memo;
    size_t old = vm->memo_cap, i;
    if (pk_top(vm, &o)) return -1;
    if (idx >= PK_MAX_MEMO) return pk_fail(vm, "memo index %llu is over the limit of %u",
                                           (unsigned long long)idx, PK_MAX_MEMO);
    if (!cv_grow(&p, &vm->memo_cap, (size_t)idx + 1, sizeof *vm->memo)) return pk_fail(vm, "out of memory");
    vm->memo = (pk_obj **)p;
    for (i = old; i < vm->memo_cap; i++) vm->memo[i] = NULL;
    if (!vm->memo[idx]) vm->memo_len++;
    vm->memo[idx] = o;
    return 0;
}

static int pk_memo_get(pk_vm *vm, uint64_t idx)
{
    if (idx >= vm->memo_cap || !vm->memo[idx])
        return pk_fail(vm, "memo index %llu was never stored", (unsigned long long)idx);
    return pk_push(vm, vm->memo[idx]);
}

static int pk_push_str(pk_vm *vm, uint64_t len)
{
    pk_obj *o;
    if (pk_need(vm, len)) return -1;
    if (memchr(vm->p + vm->pos, 0, (size_t)len)) return pk_fail(vm, "a string holds a NUL byte");
    if (!(o = pk_new(vm, PK_STR))) return -1;
    if (!(o->s = cv_strndup((const char *)vm->p + vm->pos, (size_t)len))) return pk_fail(vm, "out of memory");
    vm->pos += (size_t)len;
    return pk_push(vm, o);
}

static int pk_push_int(pk_vm *vm, int64_t v)
{
    pk_obj *o = pk_new(vm, PK_INT);
    if (o) o->i = v;
    return pk_push(vm, o);
}

/* GLOBAL's newline-terminated module or name */
static int pk_read_line(pk_vm *vm, char *buf)
{
    size_t k;
    for (k = 0; vm->pos + k < vm->n && k < PK_MAX_LINE; k++)
        if (vm->p[vm->pos + k] == '\n') {
            memcpy(buf, vm->p + vm->pos, k);
            buf[k] = 0;
            if (memchr(buf, 0, k)) return pk_fail(vm, "a NUL byte in a GLOBAL name");
            vm->pos += k + 1;
            return 0;
        }
    return pk_fail(vm, "GLOBAL name not terminated by a newline within %d bytes", PK_MAX_LINE);
}

/* Turns module.name into a global object, or refuses it: the list below is all a state_dict of
   float tensors needs, and nothing else is ever looked up. */
static int pk_push_global(pk_vm *vm, const char *module, const char *name)
{
    pk_obj *o;
    int id = -1;
    size_t k;
    const cv_storage_type *stype = NULL;
    if (!strcmp(module, "collections") && !strcmp(name, "OrderedDict")) id = PKG_ORDERED_DICT;
    else if (!strcmp(module, "torch._utils") && !strcmp(name, "_rebuild_tensor")) id = PKG_REBUILD_TENSOR;
    else if (!strcmp(module, "torch._utils") && !strcmp(name, "_rebuild_tensor_v2")) id = PKG_REBUILD_TENSOR_V2;
    else if (!strcmp(module, "torch._utils") && !strcmp(name, "_rebuild_parameter")) id = PKG_REBUILD_PARAMETER;
    else if (!strcmp(module, "torch._utils") && !strcmp(name, "_rebuild_parameter_with_state"))
        id = PKG_REBUILD_PARAMETER_WITH_STATE;
    else if (!strcmp(module, "argparse") && !strcmp(name, "Namespace")) id = PKG_NAMESPACE;
    else if (!strcmp(module, "torch"))
        for (k = 0; k < sizeof cv_storage_types / sizeof *cv_storage_types; k++)
            if (!strcmp(name, cv_storage_types[k].name)) {
                id = PKG_STORAGE;
                stype = &cv_storage_types[k];
            }
    if (id < 0)
        return pk_fail(vm, "unsupported global '%s.%s': a state_dict needs only collections.OrderedDict, "
                       "torch._utils._rebuild_tensor(_v2), torch._utils._rebuild_parameter and "
                       "torch.<Type>Storage (and DiT's train.py checkpoints an argparse.Namespace), and "
                       "convert runs nothing else", module, name);
    if (!(o = pk_new(vm, PK_GLOBAL))) return -1;
    o->i = id;
    o->stype = stype;
    if (!(o->s = (char *)malloc(strlen(module) + strlen(name) + 2))) return pk_fail(vm, "out of memory");
    sprintf(o->s, "%s.%s", module, name);
    return pk_push(vm, o);
}

/* BINPERSID: a storage.
     torch zip: ("storage", torch.<Type>Storage, key, location, numel) -> the bytes of data/<key>
     legacy:    ("storage", torch.<Type>Storage, key, location, numel, view) where view is None or
                (view_key, offset, view_numel), a slice of storage key; its bytes follow the
                pickles and are bound later (cv_load_torch_legacy) */
static int pk_persistent_load(pk_vm *vm, const pk_obj *pid)
{
    char entry[2 * PK_MAX_LINE + 16];
    const cv_zip_entry *e;
    const unsigned char *bytes = NULL;
    pk_obj *o;
    uint64_t nbytes;
    pk_obj *const *a = pid->items;
    size_t want = vm->legacy ? 6 : 5;
    if (pid->type != PK_TUPLE || pid->n != want || a[0]->type != PK_STR || strcmp(a[0]->s, "storage") ||
        a[1]->type != PK_GLOBAL || a[1]->i != PKG_STORAGE || a[2]->type != PK_STR ||
        a[3]->type != PK_STR || a[4]->type != PK_INT || a[4]->i < 0)
        return pk_fail(vm, "a persistent id must be ('storage', torch.<Type>Storage, key, location, "
                       "numel%s), not a %s of %zu items", vm->legacy ? ", view" : "", pk_type_name[pid->type],
                       pid->type == PK_TUPLE ? pid->n : 0);
    if (strlen(a[2]->s) > PK_MAX_LINE) return pk_fail(vm, "storage key longer than %d bytes", PK_MAX_LINE);
    if (!vm->legacy) {
        snprintf(entry, sizeof entry, "%sdata/%s", vm->prefix, a[2]->s);
        if (!(e = cv_zip_find(vm->zip, entry)))
            return pk_fail(vm, "storage '%s' is not in the archive (no entry '%s')", a[2]->s, entry);
        if (cv_zip_data(vm->zip, e, &bytes)) return -1;
        if (!cv_mul_u64((uint64_t)a[4]->i, (uint64_t)a[1]->stype->size, &nbytes) || nbytes != e->size)
            return pk_fail(vm, "storage '%s' (%s, %lld elements of %d bytes) does not match its entry '%s' "
                           "of %llu bytes", a[2]->s, a[1]->s, (long long)a[4]->i, a[1]->stype->size, entry,
                           (unsigned long long)e->size);
    }
    if (!(o = pk_new(vm, PK_STORAGE))) return -1;
    if (!(o->s = cv_strndup(a[2]->s, strlen(a[2]->s)))) return pk_fail(vm, "out of memory");
    o->i = a[4]->i;
    o->stype = a[1]->stype;
    o->bytes = bytes;
    o->view_numel = -1;
    if (vm->legacy && a[5]->type != PK_NONE) {
        const pk_obj *v = a[5];
        if (v->type != PK_TUPLE || v->n != 3 || v->items[1]->type != PK_INT || v->items[2]->type != PK_INT ||
            v->items[1]->i < 0 || v->items[2]->i < 0 || v->items[1]->i > a[4]->i ||
            v->items[2]->i > a[4]->i - v->items[1]->i)
            return pk_fail(vm, "storage '%s' (%lld elements): its view must be None or (key, offset, numel) "
                           "inside it", a[2]->s, (long long)a[4]->i);
        o->view_offset = v->items[1]->i;
        o->view_numel = v->items[2]->i;
    }
    return pk_push(vm, o);
}

/* _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks
   [, metadata]), or the legacy _rebuild_tensor(storage, storage_offset, size, stride) of torch
   < 0.4: records the view; the bounds are checked once the tensor has a name. */
static pk_obj *pk_rebuild_tensor(pk_vm *vm, const pk_obj *args, int v2)
{
    pk_obj *const *a = args->items;
    pk_obj *o;
    size_t k;
    if ((v2 ? args->n != 6 && args->n != 7 : args->n != 4) || a[0]->type != PK_STORAGE ||
        a[1]->type != PK_INT || a[2]->type != PK_TUPLE || a[3]->type != PK_TUPLE || a[2]->n != a[3]->n) {
        pk_fail(vm, "%s expects (storage, offset, size tuple, stride tuple of the same length%s)",
                v2 ? "_rebuild_tensor_v2" : "_rebuild_tensor", v2 ? ", requires_grad, hooks" : "");
        return NULL;
    }
    if (a[2]->n > TEXTOK_MAX_DIMS) {
        pk_fail(vm, "a tensor with %zu dims (at most %d)", a[2]->n, TEXTOK_MAX_DIMS);
        return NULL;
    }
    for (k = 0; k < a[2]->n; k++)
        if (a[2]->items[k]->type != PK_INT || a[3]->items[k]->type != PK_INT) {
            pk_fail(vm, "_rebuild_tensor_v2: size and stride must hold ints");
            return NULL;
        }
    if (!(o = pk_new(vm, PK_TENSOR))) return NULL;
    if (!(o->tensor = (pk_tensor *)calloc(1, sizeof *o->tensor))) {
        pk_fail(vm, "out of memory");
        return NULL;
    }
    o->tensor->storage = a[0];
    o->tensor->offset = a[1]->i;
    o->tensor->ndim = (int)a[2]->n;
    for (k = 0; k < a[2]->n; k++) {
        o->tensor->shape[k] = a[2]->items[k]->i;
        o->tensor->stride[k] = a[3]->items[k]->i;
    }
    return o;
}

static int pk_reduce(pk_vm *vm)
{
    pk_obj *args, *fn, *r = NULL;
    if (pk_pop(vm, &args) || pk_pop(vm, &fn)) return -1;
    if (fn->type != PK_GLOBAL) return pk_fail(vm, "REDUCE calls a %s, not a global", pk_type_name[fn->type]);
    if (args->type != PK_TUPLE)
        return pk_fail(vm, "REDUCE arguments of %s are a %s, not a tuple", fn->s, pk_type_name[args->type]);
    switch (fn->i) {
    case PKG_ORDERED_DICT:
        /* OrderedDict() then SETITEMS (Python 3), or OrderedDict([[key, value], ...]) (Python 2) */
        if (args->n > 1 || (args->n == 1 && args->items[0]->type != PK_LIST && args->items[0]->type != PK_TUPLE))
            return pk_fail(vm, "collections.OrderedDict called with arguments other than one list of pairs");
        if (!(r = pk_new(vm, PK_DICT))) return -1;
        if (args->n) {
            const pk_obj *items = args->items[0];
            size_t k;
            for (k = 0; k < items->n; k++) {
                const pk_obj *pair = items->items[k];
                if ((pair->type != PK_LIST && pair->type != PK_TUPLE) || pair->n != 2)
                    return pk_fail(vm, "collections.OrderedDict: item %zu is not a (key, value) pair", k);
                if (pk_append(vm, r, pair->items[0]) || pk_append(vm, r, pair->items[1])) return -1;
            }
        }
        break;
    case PKG_REBUILD_TENSOR:
    case PKG_REBUILD_TENSOR_V2:
        r = pk_rebuild_tensor(vm, args, fn->i == PKG_REBUILD_TENSOR_V2);
        break;
    case PKG_REBUILD_PARAMETER:
    case PKG_REBUILD_PARAMETER_WITH_STATE:
        if (args->n != (fn->i == PKG_REBUILD_PARAMETER ? 3u : 4u) || args->items[0]->type != PK_TENSOR)
            return pk_fail(vm, "%s expects (tensor, requires_grad, hooks%s)", fn->s,
                           fn->i == PKG_REBUILD_PARAMETER ? "" : ", state");
        r = args->items[0];   /* a Parameter is its data, for us */
        break;
    default:
        return pk_fail(vm, "cannot call %s", fn->s);
    }
    return r ? pk_push(vm, r) : -1;
}

static int pk_make_tuple(pk_vm *vm, size_t first)
{
    pk_obj *t = pk_new(vm, PK_TUPLE);
    size_t k, n = vm->sp - first;
    if (!t) return -1;
    if ((vm->n_items += n) > PK_MAX_ITEMS)
        return pk_fail(vm, "more than %u container elements: not a plain state_dict", PK_MAX_ITEMS);
    if (n && !(t->items = (pk_obj **)malloc(n * sizeof *t->items))) return pk_fail(vm, "out of memory");
    for (k = 0; k < n; k++) t->items[k] = vm->stack[first + k];
    t->n = t->cap = n;
    vm->sp = first;
    return pk_push(vm, t);
}

/* Runs data.pkl to STOP; *result is the unpickled object. */
static int pk_run(pk_vm *vm, pk_obj **result)
{
    char module[PK_MAX_LINE + 1], name[PK_MAX_LINE + 1];
    pk_obj *a, *b, *c;
    size_t first = 0, k;
    uint64_t u;
    for (;;) {
        if (vm->pos >= vm->n) {
            vm->op_pos = vm->pos;
            vm->op = 0;
            return cv_fail(vm->legacy ? "%s: truncated legacy torch.save file: a pickle reaches the end of the "
                                        "file (offset %zu) without a STOP opcode"
                                      : "%s: data.pkl is truncated: it ends at offset %zu without a STOP opcode",
                           vm->path, vm->pos);
        }
        vm->op_pos = vm->pos;
        vm->op = vm->p[vm->pos++];
        switch (vm->op) {
        case 0x80:   /* PROTO */
            if (pk_need(vm, 1)) return -1;
            if (vm->p[vm->pos] > 5) return pk_fail(vm, "pickle protocol %d is newer than 5", vm->p[vm->pos]);
            vm->pos++;
            break;
        case 0x95:   /* FRAME: a length hint only */
            if (pk_need(vm, 8)) return -1;
            vm->pos += 8;
            break;
        case 'c':    /* GLOBAL */
            if (pk_read_line(vm, module) || pk_read_line(vm, name) ||
                pk_push_global(vm, module, name)) return -1;
            break;
        case 0x93:   /* STACK_GLOBAL */
            if (pk_pop(vm, &b) || pk_pop(vm, &a)) return -1;
            if (a->type != PK_STR || b->type != PK_STR) return pk_fail(vm, "module and name must be str");
            if (pk_push_global(vm, a->s, b->s)) return -1;
            break;
        case 'q':    /* BINPUT */
            if (pk_need(vm, 1) || pk_memo_put(vm, vm->p[vm->pos])) return -1;
            vm->pos += 1;
            break;
        case 'r':    /* LONG_BINPUT */
            if (pk_need(vm, 4) || pk_memo_put(vm, cv_le(vm->p + vm->pos, 4))) return -1;
            vm->pos += 4;
            break;
        case 0x94:   /* MEMOIZE: the next key is the memo's length */
            if (pk_memo_put(vm, vm->memo_len)) return -1;
            break;
        case 'h':    /* BINGET */
            if (pk_need(vm, 1) || pk_memo_get(vm, vm->p[vm->pos])) return -1;
            vm->pos += 1;
            break;
        case 'j':    /* LONG_BINGET */
            if (pk_need(vm, 4) || pk_memo_get(vm, cv_le(vm->p + vm->pos, 4))) return -1;
            vm->pos += 4;
            break;
        case '(': {  /* MARK */
            void *p = vm->marks;
            if (vm->n_marks >= PK_MAX_MARKS) return pk_fail(vm, "more than %u nested MARKs", PK_MAX_MARKS);
            if (!cv_grow(&p, &vm->marks_cap, vm->n_marks + 1, sizeof *vm->marks))
                return pk_fail(vm, "out of memory");
            vm->marks = (size_t *)p;
            vm->marks[vm->n_marks++] = vm->sp;
            break;
        }
        case '}': if (pk_push(vm, pk_new(vm, PK_DICT))) return -1; break;    /* EMPTY_DICT */
        case ']': if (pk_push(vm, pk_new(vm, PK_LIST))) return -1; break;    /* EMPTY_LIST */
        case ')': if (pk_make_tuple(vm, vm->sp)) return -1; break;           /* EMPTY_TUPLE */
        case 't':    /* TUPLE */
            if (pk_pop_mark(vm, &first) || pk_make_tuple(vm, first)) return -1;
            break;
        case 0x85: case 0x86: case 0x87:   /* TUPLE1, TUPLE2, TUPLE3 */
            k = (size_t)(vm->op - 0x84);
            if (vm->sp - pk_base(vm) < k) return pk_fail(vm, "stack underflow");
            if (pk_make_tuple(vm, vm->sp - k)) return -1;
            break;
        case 'J':    /* BININT: signed 32-bit */
            if (pk_need(vm, 4)) return -1;
            u = cv_le(vm->p + vm->pos, 4);
            vm->pos += 4;
            if (pk_push_int(vm, u >= 0x80000000u ? (int64_t)u - ((int64_t)1 << 32) : (int64_t)u)) return -1;
            break;
        case 'K':    /* BININT1: unsigned 8-bit */
            if (pk_need(vm, 1) || pk_push_int(vm, vm->p[vm->pos])) return -1;
            vm->pos += 1;
            break;
        case 'M':    /* BININT2: unsigned 16-bit */
            if (pk_need(vm, 2) || pk_push_int(vm, (int64_t)cv_le(vm->p + vm->pos, 2))) return -1;
            vm->pos += 2;
            break;
        case 0x8a: { /* LONG1: n-byte two's complement, little-endian */
            int nb;
            int64_t v;
            if (pk_need(vm, 1)) return -1;
            nb = vm->p[vm->pos++];
            if (nb > 8) return pk_fail(vm, "an integer of %d bytes (at most 8)", nb);
            if (pk_need(vm, (uint64_t)nb)) return -1;
            u = cv_le(vm->p + vm->pos, nb);
            if (nb > 0 && nb < 8 && (u >> (8 * nb - 1)) & 1) u |= ~(uint64_t)0 << (8 * nb);   /* sign */
            memcpy(&v, &u, sizeof v);
            vm->pos += (size_t)nb;
            if (pk_push_int(vm, v)) return -1;
            break;
        }
        case 'X':    /* BINUNICODE */
            if (pk_need(vm, 4)) return -1;
            u = cv_le(vm->p + vm->pos, 4);
            vm->pos += 4;
            if (pk_push_str(vm, u)) return -1;
            break;
        case 0x8c:   /* SHORT_BINUNICODE */
            if (pk_need(vm, 1)) return -1;
            u = vm->p[vm->pos++];
            if (pk_push_str(vm, u)) return -1;
            break;
        case 'U':    /* SHORT_BINSTRING: a Python 2 str (LPIPS's vgg.pth was written by Python 2) */
            if (pk_need(vm, 1)) return -1;
            u = vm->p[vm->pos++];
            if (pk_push_str(vm, u)) return -1;
            break;
        case 'T':    /* BINSTRING: a Python 2 str, signed 32-bit length */
            if (pk_need(vm, 4)) return -1;
            u = cv_le(vm->p + vm->pos, 4);
            vm->pos += 4;
            if (u >= 0x80000000u) return pk_fail(vm, "negative string length");
            if (pk_push_str(vm, u)) return -1;
            break;
        case 0x8d:   /* BINUNICODE8 */
            if (pk_need(vm, 8)) return -1;
            u = cv_le(vm->p + vm->pos, 8);
            vm->pos += 8;
            if (pk_push_str(vm, u)) return -1;
            break;
        case 0x88: case 0x89:   /* NEWTRUE, NEWFALSE */
            if (!(a = pk_new(vm, PK_BOOL))) return -1;
            a->i = vm->op == 0x88;
            if (pk_push(vm, a)) return -1;
            break;
        case 'N':    /* NONE */
            if (pk_push(vm, pk_new(vm, PK_NONE))) return -1;
            break;
        case 'G':    /* BINFLOAT: big-endian double */
            if (pk_need(vm, 8)) return -1;
            if (!(a = pk_new(vm, PK_FLOAT))) return -1;
            for (u = 0, k = 0; k < 8; k++) u = (u << 8) | vm->p[vm->pos + k];
            memcpy(&a->f, &u, sizeof a->f);
            vm->pos += 8;
            if (pk_push(vm, a)) return -1;
            break;
        case 'Q':    /* BINPERSID */
            if (pk_pop(vm, &a) || pk_persistent_load(vm, a)) return -1;
            break;
        case 'R':    /* REDUCE */
            if (pk_reduce(vm)) return -1;
            break;
        case 0x81:   /* NEWOBJ: cls.__new__(cls, *args); only argparse.Namespace (the "args" of a
                        DiT train.py checkpoint), which becomes an opaque None: its attributes
                        (BUILD) are dropped and nothing reads it */
            if (pk_pop(vm, &b) || pk_pop(vm, &a)) return -1;
            if (a->type != PK_GLOBAL || a->i != PKG_NAMESPACE || b->type != PK_TUPLE)
                return pk_fail(vm, "NEWOBJ of %s: only argparse.Namespace() objects are understood",
                               a->type == PK_GLOBAL ? a->s : pk_type_name[a->type]);
            if (pk_push(vm, pk_new(vm, PK_NONE))) return -1;
            break;
        case 'b':    /* BUILD: sets attributes (e.g. a state_dict's _metadata); not needed */
            if (pk_pop(vm, &a) || pk_top(vm, &b)) return -1;
            break;
        case 's':    /* SETITEM */
            if (pk_pop(vm, &c) || pk_pop(vm, &b) || pk_top(vm, &a)) return -1;
            if (a->type != PK_DICT) return pk_fail(vm, "SETITEM on a %s", pk_type_name[a->type]);
            if (pk_append(vm, a, b) || pk_append(vm, a, c)) return -1;
            break;
        case 'u':    /* SETITEMS */
            if (pk_pop_mark(vm, &first) || pk_below(vm, first, &a)) return -1;
            if (a->type != PK_DICT) return pk_fail(vm, "SETITEMS on a %s", pk_type_name[a->type]);
            if ((vm->sp - first) % 2) return pk_fail(vm, "SETITEMS with an odd number of items");
            for (k = first; k < vm->sp; k++)
                if (pk_append(vm, a, vm->stack[k])) return -1;
            vm->sp = first;
            break;
        case 'a':    /* APPEND */
            if (pk_pop(vm, &b) || pk_top(vm, &a)) return -1;
            if (a->type != PK_LIST) return pk_fail(vm, "APPEND to a %s", pk_type_name[a->type]);
            if (pk_append(vm, a, b)) return -1;
            break;
        case 'e':    /* APPENDS */
            if (pk_pop_mark(vm, &first) || pk_below(vm, first, &a)) return -1;
            if (a->type != PK_LIST) return pk_fail(vm, "APPENDS to a %s", pk_type_name[a->type]);
            for (k = first; k < vm->sp; k++)
                if (pk_append(vm, a, vm->stack[k])) return -1;
            vm->sp = first;
            break;
        case '.':    /* STOP */
            return pk_pop(vm, result);
        default:
            return pk_fail(vm, "unsupported pickle opcode: convert runs only the opcodes torch.save "
                           "uses for a state_dict");
        }
    }
}

/* =============================================================================================
   Tensor table: every tensor of the input, whatever the format, with a way to read it as F32. */

enum { CV_FMT_SAFETENSORS, CV_FMT_TORCH_ZIP, CV_FMT_TORCH_LEGACY };

#define CV_MAX_ELEMS_PER_BYTE 4          /* output elements per input byte (cv_input_parse) */
#define CV_MIN_ELEMS          (1 << 22)   /* ... plus these, whatever the file's size */

typedef struct cv_tensor {
    const char             *name;
    const char             *dtype_name;   /* "F32", "F16", "BF16", "int64 (torch.LongStorage)" */
    int                     dtype;        /* TEXTOK_DTYPE_*, or -1: cannot be converted */
    int                     ndim;
    int64_t                 shape[TEXTOK_MAX_DIMS];
    size_t                  numel;
    int                     used;         /* matched by a spec */
    const textok_st_tensor *st;           /* safetensors: the tensor */
    const unsigned char    *bytes;        /* torch zip: storage data, element size, the view */
    int                     esize;
    int64_t                 offset;
    int64_t                 stride[TEXTOK_MAX_DIMS];
} cv_tensor;

typedef struct cv_input {
    const char        *path;
    int                format;
    textok_file        file;       /* the whole input, mmapped (TEXTOK_NO_MMAP: in the heap) */
    textok_safetensors st;
    cv_zip             zip;
    pk_vm              vm;
    char               prefix[PK_MAX_LINE + 2];   /* the zip's top-level folder, with its '/' */
    const char        *wrapper;                   /* "state_dict"/"model" if unwrapped, else NULL */
    cv_tensor         *t;
    int                n;
    int               *by_name;                   /* indices of t sorted by name */
    int                borrowed;                  /* file.data belongs to the caller */
} cv_input;

static const cv_input *cv_sort_ctx;   /* qsort has no user pointer in C99 */
static int cv_cmp_by_name(const void *a, const void *b)
{
    return strcmp(cv_sort_ctx->t[*(const int *)a].name, cv_sort_ctx->t[*(const int *)b].name);
}

static const cv_tensor *cv_find(const cv_input *in, const char *name)
{
    int lo = 0, hi = in->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2, c = strcmp(in->t[in->by_name[mid]].name, name);
        if (!c) return &in->t[in->by_name[mid]];
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return NULL;
}

/* Sorts the names for lookups and refuses duplicates. */
static int cv_index(cv_input *in)
{
    int i;
    if (!(in->by_name = (int *)malloc((size_t)(in->n > 0 ? in->n : 1) * sizeof *in->by_name)))
        return cv_fail("%s: out of memory", in->path);
    for (i = 0; i < in->n; i++) in->by_name[i] = i;
    cv_sort_ctx = in;
    qsort(in->by_name, (size_t)in->n, sizeof *in->by_name, cv_cmp_by_name);
    for (i = 1; i < in->n; i++)
        if (!strcmp(in->t[in->by_name[i - 1]].name, in->t[in->by_name[i]].name))
            return cv_fail("%s: tensor '%s' appears twice", in->path, in->t[in->by_name[i]].name);
    return 0;
}

static int cv_load_safetensors(cv_input *in)
{
    static const char *const names[] = { "F32", "F16", "BF16" };
    int i;
    if (textok_st_open_memory(&in->st, in->file.data, in->file.size, in->path))
        return cv_fail("%s%s", textok_last_error(),
                       strstr(textok_last_error(), "past the end") ? " (truncated file?)" : "");
    if (!(in->t = (cv_tensor *)calloc((size_t)(in->st.n_tensors ? in->st.n_tensors : 1), sizeof *in->t)))
        return cv_fail("%s: out of memory", in->path);
    for (i = 0; i < in->st.n_tensors; i++) {
        const textok_st_tensor *s = &in->st.tensors[i];
        cv_tensor *t = &in->t[i];
        t->name = s->name;
        t->dtype = s->dtype;
        t->dtype_name = s->dtype >= 0 && s->dtype < 3 ? names[s->dtype] : "?";
        t->ndim = s->ndim;
        memcpy(t->shape, s->shape, sizeof t->shape);
        t->numel = s->numel;
        t->st = s;
    }
    in->n = in->st.n_tensors;
    return 0;
}

/* A tensor view of the pickle as a table row, after checking that every index it can reach
   lies inside its storage. */
static int cv_add_pickled(cv_input *in, cv_tensor *t, const char *name, const pk_tensor *pt)
{
    const pk_obj *s = pt->storage;
    uint64_t numel = 1, last = (uint64_t)pt->offset, step;
    char sh[256], st[256];
    int k;
    t->name = name;
    t->dtype = s->stype->textok_dtype;
    t->dtype_name = s->stype->dtype;
    t->ndim = pt->ndim;
    t->bytes = s->bytes;
    t->esize = s->stype->size;
    t->offset = pt->offset;
    memcpy(t->shape, pt->shape, sizeof t->shape);
    memcpy(t->stride, pt->stride, sizeof t->stride);
    cv_shape_str(sh, sizeof sh, pt->ndim, pt->shape);
    cv_shape_str(st, sizeof st, pt->ndim, pt->stride);
    if (pt->offset < 0)
        return cv_fail("%s: tensor '%s': negative storage_offset %lld", in->path, name,
                       (long long)pt->offset);
    for (k = 0; k < pt->ndim; k++) {
        if (pt->shape[k] < 0 || pt->stride[k] < 0)
            return cv_fail("%s: tensor '%s': size %s and stride %s must not be negative", in->path, name,
                           sh, st);
        if (!cv_mul_u64(numel, (uint64_t)pt->shape[k], &numel) || numel > SIZE_MAX / 4)
            return cv_fail("%s: tensor '%s': size %s overflows", in->path, name, sh);
    }
    t->numel = (size_t)numel;
    if (numel) {
        for (k = 0; k < pt->ndim; k++)
            if (!cv_mul_u64((uint64_t)(pt->shape[k] - 1), (uint64_t)pt->stride[k], &step) ||
                !cv_add_u64(last, step, &last))
                return cv_fail("%s: tensor '%s': offset %lld, size %s and stride %s overflow", in->path,
                               name, (long long)pt->offset, sh, st);
        if (last >= (uint64_t)s->i)
            return cv_fail("%s: tensor '%s' (storage_offset %lld, size %s, stride %s) reaches element "
                           "%llu of storage '%s', which holds only %lld elements", in->path, name,
                           (long long)pt->offset, sh, st, (unsigned long long)last, s->s,
                           (long long)s->i);
    }
    return 0;
}

static int cv_state_dict(cv_input *in, const pk_obj *root);

static int cv_load_torch_zip(cv_input *in)
{
    char entry[PK_MAX_LINE + 64];
    const cv_zip_entry *e, *pkl = NULL;
    const unsigned char *bytes;
    pk_obj *root = NULL;
    size_t i, k;
    if (cv_zip_open(&in->zip, in->file.data, in->file.size, in->path)) return -1;

    /* data.pkl sits in the one top-level folder; its name is free (torch uses the file's stem,
       or "archive") */
    for (i = 0; i < in->zip.n; i++) {
        const char *nm = in->zip.entries[i].name, *slash = strchr(nm, '/');
        if (slash && !strcmp(slash, "/data.pkl")) {
            if (pkl) return cv_fail("%s: two data.pkl entries ('%s', '%s'): not a torch.save archive",
                                    in->path, pkl->name, nm);
            pkl = &in->zip.entries[i];
        }
    }
    if (!pkl)
        return cv_fail("%s: a ZIP archive without <folder>/data.pkl: not a torch.save checkpoint", in->path);
    k = strlen(pkl->name) - strlen("data.pkl");
    if (k > PK_MAX_LINE) return cv_fail("%s: archive folder name too long", in->path);
    memcpy(in->prefix, pkl->name, k);
    in->prefix[k] = 0;
    snprintf(entry, sizeof entry, "%sbyteorder", in->prefix);
    if ((e = cv_zip_find(&in->zip, entry))) {
        if (cv_zip_data(&in->zip, e, &bytes)) return -1;
        if (e->size != 6 || memcmp(bytes, "little", 6))
            return cv_fail("%s: the archive's byteorder is not 'little': big-endian checkpoints are "
                           "not supported", in->path);
    }

    if (cv_zip_data(&in->zip, pkl, &bytes)) return -1;
    in->vm.p = bytes;
    in->vm.n = (size_t)pkl->size;
    in->vm.zip = &in->zip;
    in->vm.prefix = in->prefix;
    in->vm.path = in->path;
    in->vm.where = "data.pkl offset";
    if (pk_run(&in->vm, &root)) return -1;
    return cv_state_dict(in, root);
}

/* The tensor table from the unpickled object: a state_dict, or a dict around one. */
static int cv_state_dict(cv_input *in, const pk_obj *root)
{
    const pk_obj *sd;
    size_t i, k, n_tensors = 0;
    if (root->type != PK_DICT)
        return cv_fail("%s: %s holds a %s, not a state_dict (a dict of tensors)", in->path,
                       in->format == CV_FMT_TORCH_ZIP ? "data.pkl" : "the pickle", pk_type_name[root->type]);
    sd = root;
    for (i = 1; i < root->n; i += 2) n_tensors += root->items[i]->type == PK_TENSOR;
    if (!n_tensors) {
        /* "ema" first: DiT's train.py saves {"model", "ema", "opt", "args"} and its find_model
           (sample.py) uses the EMA weights */
        static const char *const wrappers[] = { "ema", "state_dict", "model" };
        for (k = 0; k < 3 && sd == root; k++)
            for (i = 0; i + 1 < root->n; i += 2)
                if (root->items[i]->type == PK_STR && !strcmp(root->items[i]->s, wrappers[k]) &&
                    root->items[i + 1]->type == PK_DICT) {
                    sd = root->items[i + 1];
                    in->wrapper = wrappers[k];
                }
        if (sd == root)
            return cv_fail("%s: %s holds a dict of %zu items, none a tensor, and no 'ema', 'state_dict' "
                           "or 'model' dict inside: not a state_dict", in->path,
                           in->format == CV_FMT_TORCH_ZIP ? "data.pkl" : "the pickle", root->n / 2);
    }
    if (!(in->t = (cv_tensor *)calloc(sd->n / 2 + 1, sizeof *in->t))) return cv_fail("%s: out of memory", in->path);
    for (i = 0; i + 1 < sd->n; i += 2) {
        const pk_obj *key = sd->items[i], *val = sd->items[i + 1];
        if (key->type != PK_STR)
            return cv_fail("%s: a key of the state_dict is a %s, not a str", in->path, pk_type_name[key->type]);
        if (val->type != PK_TENSOR)
            return cv_fail("%s: state_dict entry '%s' is a %s, not a tensor", in->path, key->s,
                           pk_type_name[val->type]);
        if (cv_add_pickled(in, &in->t[in->n], key->s, val->tensor)) return -1;
        in->n++;
    }
    return 0;
}

/* Resets the VM between the pickles of a legacy file: each is a separate pickle.load, with its own
   memo and stack; the objects made so far stay alive. */
static void pk_reset(pk_vm *vm)
{
    size_t i;
    for (i = 0; i < vm->memo_cap; i++) vm->memo[i] = NULL;
    vm->memo_len = vm->sp = vm->n_marks = 0;
}

static int cv_cmp_storage(const void *a, const void *b)
{
    return strcmp((*(pk_obj *const *)a)->s, (*(pk_obj *const *)b)->s);
}

/* The legacy torch.save format (torch < 1.6, or later ones with _use_new_zipfile_serialization=
   False; torchvision's vgg16-397923af.pth and LPIPS's vgg.pth are in it): pickles back to back,
     1. the magic number 0x1950a86a20f9469cfc6c   2. the format version 1001
     3. sys_info {protocol_version, little_endian, type_sizes}
     4. the object (a state_dict), whose storages are 6-item persistent ids
     5. the list of storage keys, in the order their data follows,
   then for each key its element count (8 bytes, little-endian) and its elements. The magic number
   is a 10-byte LONG1, longer than the VM's integers, so it is compared as bytes. */
static int cv_load_torch_legacy(cv_input *in)
{
    static const unsigned char magic[] = { 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8,
                                           0x50, 0x19, '.' };
    pk_vm *vm = &in->vm;
    const unsigned char *d = in->file.data;
    size_t n = in->file.size, pos = 2, i, k, n_st = 0;
    pk_obj *version, *sys, *root, *keys, **st = NULL;
    int rc = -1;
    if (n < pos + sizeof magic || memcmp(d + pos, magic, sizeof magic))
        return cv_fail("%s: a pickle, but not a torch.save file: it does not start with torch's magic "
                       "number (written by pickle.dump?)", in->path);
    vm->p = d;
    vm->n = n;
    vm->pos = pos + sizeof magic;
    vm->path = in->path;
    vm->where = "offset";
    vm->legacy = 1;
    if (pk_run(vm, &version)) return -1;
    if (version->type != PK_INT || version->i != 1001)
        return cv_fail("%s: legacy torch.save file with format version %lld%s; expected 1001", in->path,
                       version->type == PK_INT ? (long long)version->i : -1LL,
                       version->type == PK_INT ? "" : " (not an int)");
    pk_reset(vm);
    if (pk_run(vm, &sys)) return -1;
    if (sys->type != PK_DICT) return cv_fail("%s: legacy torch.save file whose sys_info is a %s, not a dict",
                                             in->path, pk_type_name[sys->type]);
    for (i = 0; i + 1 < sys->n; i += 2)
        if (sys->items[i]->type == PK_STR && !strcmp(sys->items[i]->s, "little_endian") &&
            (sys->items[i + 1]->type != PK_BOOL || !sys->items[i + 1]->i))
            return cv_fail("%s: written on a big-endian machine (sys_info little_endian is not True): "
                           "not supported", in->path);
    pk_reset(vm);
    if (pk_run(vm, &root)) return -1;
    pk_reset(vm);
    if (pk_run(vm, &keys)) return -1;
    if (keys->type != PK_LIST)
        return cv_fail("%s: legacy torch.save file: after the object comes a %s, not the list of storage keys",
                       in->path, pk_type_name[keys->type]);

    /* the storages the object refers to, sorted by key; then the data records, in the listed order */
    for (i = 0; i < vm->n_objs; i++) n_st += vm->objs[i]->type == PK_STORAGE;
    if (!(st = (pk_obj **)malloc((n_st ? n_st : 1) * sizeof *st))) return cv_fail("%s: out of memory", in->path);
    for (i = 0, k = 0; i < vm->n_objs; i++)
        if (vm->objs[i]->type == PK_STORAGE) st[k++] = vm->objs[i];
    qsort(st, n_st, sizeof *st, cv_cmp_storage);
    pos = vm->pos;
    for (k = 0; k < keys->n; k++) {
        const pk_obj *key = keys->items[k];
        uint64_t numel, nbytes;
        size_t lo = 0, hi = n_st, j;
        int esize;
        if (key->type != PK_STR) {
            cv_fail("%s: legacy torch.save file: storage key %zu is a %s, not a str", in->path, k,
                    pk_type_name[key->type]);
            goto done;
        }
        while (lo < hi) {   /* the first storage object with this key */
            size_t mid = lo + (hi - lo) / 2;
            if (strcmp(st[mid]->s, key->s) < 0) lo = mid + 1;
            else hi = mid;
        }
        if (lo == n_st || strcmp(st[lo]->s, key->s)) {
            cv_fail("%s: legacy torch.save file lists storage '%s', which no tensor uses", in->path, key->s);
            goto done;
        }
        if (n - pos < 8) {
            cv_fail("%s: truncated: the data of storage '%s' should start at offset %zu, past the end of "
                    "the file (%zu bytes)", in->path, key->s, pos, n);
            goto done;
        }
        numel = cv_le(d + pos, 8);
        esize = st[lo]->stype->size;
        if (numel != (uint64_t)st[lo]->i) {
            cv_fail("%s: storage '%s': its record at offset %zu holds %llu elements, the pickle says %lld",
                    in->path, key->s, pos, (unsigned long long)numel, (long long)st[lo]->i);
            goto done;
        }
        if (!cv_mul_u64(numel, (uint64_t)esize, &nbytes) || nbytes > n - pos - 8) {
            cv_fail("%s: truncated: storage '%s' (%llu elements of %d bytes at offset %zu) runs past the "
                    "end of the file (%zu bytes)", in->path, key->s, (unsigned long long)numel, esize,
                    pos + 8, n);
            goto done;
        }
        for (j = lo; j < n_st && !strcmp(st[j]->s, key->s); j++) {
            pk_obj *o = st[j];
            if (o->bytes) {
                cv_fail("%s: legacy torch.save file lists storage '%s' twice", in->path, key->s);
                goto done;
            }
            if ((uint64_t)o->i != numel || o->stype->size != esize) {   /* st[lo] was checked above */
                cv_fail("%s: storage '%s' is described twice, differently (%llu elements of %s, %lld of %s)",
                        in->path, key->s, (unsigned long long)numel, st[lo]->stype->dtype, (long long)o->i,
                        o->stype->dtype);
                goto done;
            }
            o->bytes = d + pos + 8;
            if (o->view_numel >= 0) {   /* a slice of the storage (checked inside it when unpickled) */
                o->bytes += (size_t)o->view_offset * (size_t)esize;
                o->i = o->view_numel;
            }
        }
        pos += 8 + (size_t)nbytes;
    }
    for (i = 0; i < n_st; i++)
        if (!st[i]->bytes) {
            cv_fail("%s: storage '%s' has no data: it is not in the list of storage keys", in->path, st[i]->s);
            goto done;
        }
    /* anything after the last record is ignored, as torch.load does */
    rc = cv_state_dict(in, root);
done:
    free(st);
    return rc;
}

/* element k of a storage (element size esize, dtype) as float */
static float cv_elem(const unsigned char *p, int dtype)
{
    uint32_t u;
    float f;
    switch (dtype) {
    case TEXTOK_DTYPE_F16: return textok_f16_to_f32((uint16_t)cv_le(p, 2));
    case TEXTOK_DTYPE_BF16: return textok_bf16_to_f32((uint16_t)cv_le(p, 2));
    default:
        u = (uint32_t)cv_le(p, 4);
        memcpy(&f, &u, sizeof f);
        return f;
    }
}

/* Reads t (F32/F16/BF16) into dst as F32. */
static int cv_read_f32(const cv_input *in, const cv_tensor *t, float *dst)
{
    int64_t idx[TEXTOK_MAX_DIMS] = { 0 }, pos = t->offset;
    size_t k;
    int d, contiguous = 1;
    int64_t expect = 1;
    if (t->st) {
        if (textok_st_read_f32(&in->st, t->st, dst, t->numel)) return cv_fail("%s", textok_last_error());
        return 0;
    }
    for (d = t->ndim - 1; d >= 0; d--) {   /* size-1 dims may have any stride */
        if (t->shape[d] != 1 && t->stride[d] != expect) contiguous = 0;
        expect *= t->shape[d];
    }
    if (contiguous) {
        const unsigned char *p = t->bytes + (size_t)t->offset * (size_t)t->esize;
        for (k = 0; k < t->numel; k++) dst[k] = cv_elem(p + k * (size_t)t->esize, t->dtype);
        return 0;
    }
    /* a strided view: walk the index like an odometer (bounds were checked in cv_add_pickled) */
    for (k = 0; k < t->numel; k++) {
        dst[k] = cv_elem(t->bytes + (size_t)pos * (size_t)t->esize, t->dtype);
        for (d = t->ndim - 1; d >= 0; d--) {
            pos += t->stride[d];
            if (++idx[d] < t->shape[d]) break;
            pos -= t->stride[d] * t->shape[d];
            idx[d] = 0;
        }
    }
    return 0;
}

static void cv_input_close(cv_input *in)
{
    textok_st_close(&in->st);
    pk_free(&in->vm);
    cv_zip_close(&in->zip);
    if (!in->borrowed) textok_file_close(&in->file);
    free(in->t);
    free(in->by_name);
    memset(in, 0, sizeof *in);
}

/* Fills the tensor table of an input whose bytes are in in->file; the format comes from the magic
   bytes. */
static int cv_input_parse(cv_input *in)
{
    const char *path = in->path;
    const unsigned char *d = in->file.data;
    if (in->file.size == 0) return cv_fail("%s: empty file (0 bytes): not a checkpoint", path);
    if (in->file.size >= 4 && d[0] == 'P' && d[1] == 'K' &&
        ((d[2] == 3 && d[3] == 4) || (d[2] == 5 && d[3] == 6))) {
        in->format = CV_FMT_TORCH_ZIP;
        if (cv_load_torch_zip(in)) return -1;
    } else if (in->file.size >= 9 && d[8] == '{' && cv_le(d, 8) < 100000000u) {
        in->format = CV_FMT_SAFETENSORS;   /* the library bounds the header length the same way */
        if (cv_load_safetensors(in)) return -1;
    } else if (d[0] == 0x80 && in->file.size >= 2 && d[1] <= 5) {
        in->format = CV_FMT_TORCH_LEGACY;   /* a bare pickle: torch.save before torch 1.6 */
        if (cv_load_torch_legacy(in)) return -1;
    } else {
        char hex[64];
        size_t k, n = 0;
        for (k = 0; k < 8 && k < in->file.size; k++)
            n += (size_t)snprintf(hex + n, sizeof hex - n, k ? " %02x" : "%02x", d[k]);
        return cv_fail("%s: not a checkpoint: the file starts with %s; expected a PyTorch zip "
                       "(torch.save: 50 4b 03 04 = \"PK\\3\\4\"), a legacy torch.save pickle (80 02) or "
                       "safetensors (8-byte header length, then '{')", path, hex);
    }
    {   /* views may overlap or repeat their storage's elements (stride 0): a few bytes can describe
           any size, and the output is built in memory, so the elements of all tensors together are
           bounded by the file: CV_MAX_ELEMS_PER_BYTE per byte (a real checkpoint has at most 1:
           F16 with every tensor shared once), plus CV_MIN_ELEMS for tiny files */
        size_t total = 0, cap = in->file.size > (SIZE_MAX - CV_MIN_ELEMS) / CV_MAX_ELEMS_PER_BYTE ? SIZE_MAX
                              : in->file.size * CV_MAX_ELEMS_PER_BYTE + CV_MIN_ELEMS;
        int i;
        for (i = 0; i < in->n; i++) {
            total = in->t[i].numel > SIZE_MAX - total ? SIZE_MAX : total + in->t[i].numel;
            if (total > cap)
                return cv_fail("%s: the tensors up to '%s' hold %zu elements, more than %d per byte of the %zu-byte "
                               "file (+ %d): views that repeat their storage's elements this much are not supported",
                               path, in->t[i].name, total, CV_MAX_ELEMS_PER_BYTE, in->file.size, CV_MIN_ELEMS);
        }
    }
    return cv_index(in);
}

/* Opens the input file and fills the tensor table (cv_input_parse). */
static int cv_input_open(cv_input *in, const char *path)
{
    memset(in, 0, sizeof *in);
    in->path = path;
    if (textok_file_open(&in->file, path) != TEXTOK_OK) return cv_fail("%s", textok_last_error());
    return cv_input_parse(in);
}

/* The same from bytes the caller keeps alive until cv_input_close (for tests/fuzz/): file.mapped
   stays 0 and file.data is not freed; name is used in messages. */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((unused))
#endif
static int cv_input_open_memory(cv_input *in, const unsigned char *data, size_t size, const char *name)
{
    memset(in, 0, sizeof *in);
    in->path = name;
    in->file.data = data;
    in->file.size = size;
    in->borrowed = 1;
    return cv_input_parse(in);
}

/* =============================================================================================
   Family recognition: which TiTok it is, and every config field from the shapes. */

static const char *const cv_titok_markers[] = {
    "latent_tokens", "encoder.patch_embed.weight", "encoder.positional_embedding",
    "encoder.transformer.0.mlp.c_fc.weight", "decoder.decoder_embed.weight",
    "decoder.transformer.0.mlp.c_fc.weight"
};

/* does any tensor name start with prefix (and, when digit, a digit right after it)? */
static int cv_any(const cv_input *in, const char *prefix, int digit)
{
    size_t m = strlen(prefix);
    int i;
    for (i = 0; i < in->n; i++)
        if (!strncmp(in->t[i].name, prefix, m) && (!digit || (in->t[i].name[m] >= '0' && in->t[i].name[m] <= '9')))
            return 1;
    return 0;
}

/* names of the LPIPS inputs (torchvision VGG16 features, LPIPS trunk or lin layers), for a hint */
static int cv_lpips_like(const cv_input *in)
{
    return cv_any(in, "features.", 1) || cv_any(in, "net.slice", 1) || cv_any(in, "lin", 1);
}

/* *out = shape[axis] of tensor name, which must exist with ndim dims; field is for messages */
static int cv_dim(const cv_input *in, const char *name, int ndim, int axis, int *out, const char *field)
{
    const cv_tensor *t = cv_find(in, name);
    char sh[256];
    if (!t) return cv_fail("%s: cannot infer %s: tensor '%s' is missing", in->path, field, name);
    if (t->ndim != ndim)
        return cv_fail("%s: cannot infer %s: tensor '%s' has shape %s, expected %d dims", in->path, field,
                       name, cv_shape_str(sh, sizeof sh, t->ndim, t->shape), ndim);
    if (t->shape[axis] <= 0 || t->shape[axis] > (1 << 24))
        return cv_fail("%s: cannot infer %s: tensor '%s' has shape %s", in->path, field, name,
                       cv_shape_str(sh, sizeof sh, t->ndim, t->shape));
    *out = (int)t->shape[axis];
    return 0;
}

/* 1 + the largest i of names "<prefix><i>.<...>" (0 if none); i must stay below limit */
static int cv_count(const cv_input *in, const char *prefix, int limit, int *count)
{
    size_t m = strlen(prefix);
    int i;
    *count = 0;
    for (i = 0; i < in->n; i++) {
        const char *s = in->t[i].name;
        long v = 0;
        int digits = 0;
        if (strncmp(s, prefix, m)) continue;
        for (s += m; *s >= '0' && *s <= '9' && digits < 9; s++, digits++) v = v * 10 + (*s - '0');
        if (!digits || *s != '.') continue;   /* not an index, e.g. a sibling name */
        if (v >= limit)
            return cv_fail("%s: tensor '%s': index %ld is implausible (at most %d)", in->path,
                           in->t[i].name, v, limit - 1);
        if (v + 1 > *count) *count = (int)v + 1;
    }
    return 0;
}

static int cv_heads(const cv_input *in, const char *which, int width, int *heads)
{
    if (*heads > 0) {   /* --heads */
        if (width % *heads)
            return cv_fail("%s: --heads: %s width %d is not a multiple of %d heads", in->path, which, width, *heads);
        return 0;
    }
    if (width % 64)
        return cv_fail("%s: %s width %d is not a multiple of 64: TiTok heads are 64 channels wide "
                       "(heads = width / 64)", in->path, which, width);
    *heads = width / 64;
    return 0;
}

/* Fills cfg from the names and shapes and describes the family in desc. l2 is --l2-norm (-1:
   the default, which is is_legacy: the published L/B/S use it, the VQ8k models do not). heads
   (--heads; 0 = width / 64) gives the encoder's and the decoder's head counts. */
static int cv_recognise(const cv_input *in, int l2, const int heads[2], textok_titok_config *cfg, char *desc,
                        size_t desc_size)
{
    char absent[512];
    size_t k, n = 0;
    int rows, grid, l, legacy, pixel_head, dim, cq, s;
    memset(cfg, 0, sizeof *cfg);
    cfg->enc_heads = heads[0];
    cfg->dec_heads = heads[1];
    absent[0] = 0;
    for (k = 0; k < sizeof cv_titok_markers / sizeof *cv_titok_markers; k++)
        if (!cv_find(in, cv_titok_markers[k]))
            n += (size_t)snprintf(absent + n, n < sizeof absent ? sizeof absent - n : 0, "%s%s",
                                  n ? ", " : "", cv_titok_markers[k]);
    if (n) {
        char seen[256];
        size_t m = 0;
        int i;
        seen[0] = 0;
        for (i = 0; i < in->n && i < 4; i++)
            m += (size_t)snprintf(seen + m, m < sizeof seen ? sizeof seen - m : 0, "%s%s", i ? ", " : "",
                                  in->t[i].name);
        return cv_fail("%s: unknown architecture: not a TiTok tokenizer; expected keys absent: %s (the "
                       "file holds %d tensors%s%s%s)%s", in->path, absent, in->n, in->n ? ": " : "", seen,
                       in->n > 4 ? ", ..." : "", cv_lpips_like(in) ? "; for LPIPS and VGG16 files use --lpips"
                       : cv_any(in, "encoder.block.", 1) || cv_any(in, "decoder.block.", 1) ? "; for T5 checkpoints use --t5" : "");
    }
    /* TexTok has no class tokens and no mask token: its decoder's patch tokens are learned outright */
    cfg->arch = cv_find(in, "encoder.class_embedding") || cv_find(in, "decoder.mask_token") ? TEXTOK_ARCH_TITOK
                                                                                             : TEXTOK_ARCH_TEXTOK;
    legacy = cv_find(in, "decoder.ffn.2.weight") != NULL;
    pixel_head = cv_find(in, "decoder.conv_out.weight") != NULL || (cfg->arch == TEXTOK_ARCH_TEXTOK && !legacy);
    if (legacy == pixel_head)
        return cv_fail("%s: unknown architecture: a TiTok decoder ends in decoder.ffn.2.weight (legacy: "
                       "proxy codes and the MaskGIT-VQGAN pixel decoder) or decoder.conv_out.weight "
                       "(pixel head), and this file has %s", in->path, legacy ? "both" : "neither");
    cfg->is_legacy = legacy;
    cfg->quantize_mode = (cv_find(in, "quantize.embedding.weight") || legacy) ? TEXTOK_QUANT_VQ
                                                                               : TEXTOK_QUANT_VAE;

    /* text guidance (TA-TiTok: decoder; TexTok: either): a projection (D, Dt) and Lt positions */
    for (s = 0; s < 2; s++) {
        const char *stack = s ? "decoder" : "encoder";
        char wname[96], pname[96];
        int dt, lt;
        snprintf(wname, sizeof wname, "%s.text_guidance_proj.weight", stack);
        snprintf(pname, sizeof pname, "%s.text_guidance_positional_embedding", stack);
        if (!cv_find(in, wname)) continue;
        if (cv_dim(in, wname, 2, 1, &dt, "the text embedding width") ||
            cv_dim(in, pname, 2, 0, &lt, "the text length"))
            return -1;
        if ((cfg->text_dim && cfg->text_dim != dt) || (cfg->text_len && cfg->text_len != lt))
            return cv_fail("%s: the encoder's text guidance takes %d x %d, the decoder's %d x %d; both stacks must "
                           "read the same text", in->path, cfg->text_len, cfg->text_dim, lt, dt);
        cfg->text_dim = dt;
        cfg->text_len = lt;
        if (s) cfg->text_in_decoder = 1; else cfg->text_in_encoder = 1;
    }

    /* encoder: patch_embed (D_e, 3, p, p), positional_embedding (1 + (S/p)^2, D_e) */
    if (cv_dim(in, "encoder.patch_embed.weight", 4, 0, &cfg->enc_width, "the encoder width") ||
        cv_dim(in, "encoder.patch_embed.weight", 4, 2, &cfg->patch_size, "the patch size") ||
        cv_dim(in, "encoder.patch_embed.weight", 4, 3, &dim, "the patch size") ||
        cv_dim(in, "encoder.positional_embedding", 2, 0, &rows, "the image size") ||
        cv_dim(in, "latent_tokens", 2, 0, &cfg->num_latent_tokens, "the number of latent tokens") ||
        cv_count(in, "encoder.transformer.", 4096, &cfg->enc_layers) ||
        cv_dim(in, "encoder.transformer.0.mlp.c_fc.weight", 2, 0, &cfg->enc_mlp, "the encoder MLP width") ||
        cv_heads(in, "encoder", cfg->enc_width, &cfg->enc_heads))
        return -1;
    if (dim != cfg->patch_size)
        return cv_fail("%s: encoder.patch_embed.weight has non-square %dx%d patches", in->path,
                       cfg->patch_size, dim);
    {
        const int ncls = cfg->arch == TEXTOK_ARCH_TITOK;   /* TexTok has no class row */
        for (grid = 1; grid * grid < rows - ncls; grid++) {}
        if (rows < 1 + ncls || grid * grid != rows - ncls)
            return cv_fail("%s: encoder.positional_embedding has %d rows; expected %s(image/patch)^2",
                           in->path, rows, ncls ? "1 + " : "");
    }
    cfg->image_size = grid * cfg->patch_size;

    /* decoder: decoder_embed (D_d, C) */
    if (cv_dim(in, "decoder.decoder_embed.weight", 2, 0, &cfg->dec_width, "the decoder width") ||
        cv_dim(in, "decoder.decoder_embed.weight", 2, 1, &cfg->token_size, "token_size") ||
        cv_count(in, "decoder.transformer.", 4096, &cfg->dec_layers) ||
        cv_dim(in, "decoder.transformer.0.mlp.c_fc.weight", 2, 0, &cfg->dec_mlp, "the decoder MLP width") ||
        cv_heads(in, "decoder", cfg->dec_width, &cfg->dec_heads))
        return -1;

    /* quantiser: without a codebook, the encoder's output width tells a VAE (mean and logvar,
       2C) from plain continuous tokens (C) */
    if (cfg->quantize_mode == TEXTOK_QUANT_VAE) {
        if (cv_dim(in, "encoder.conv_out.weight", 4, 0, &cq, "the encoder's output width")) return -1;
        if (cq == cfg->token_size) cfg->quantize_mode = TEXTOK_QUANT_NONE;
        else if (cq != 2 * cfg->token_size)
            return cv_fail("%s: encoder.conv_out.weight emits %d channels for %d-channel tokens: expected %d (VAE: mean "
                           "and logvar) or %d (continuous)", in->path, cq, cfg->token_size, 2 * cfg->token_size, cfg->token_size);
    }
    if (cfg->quantize_mode == TEXTOK_QUANT_VQ) {
        if (cv_dim(in, "quantize.embedding.weight", 2, 0, &cfg->codebook_size, "the codebook size"))
            return -1;
        cfg->use_l2_norm = l2 >= 0 ? l2 : legacy;
    } else if (l2 == 1) {
        return cv_fail("%s: --l2-norm 1 applies to VQ checkpoints; this one is a VAE (no "
                       "quantize.embedding.weight)", in->path);
    }

    /* MaskGIT-VQGAN pixel decoder */
    if (legacy) {
        char name[96];
        if (cv_dim(in, "pixel_quantize.embedding.weight", 2, 0, &cfg->pixel_codebook_size,
                   "the pixel codebook size") ||
            cv_dim(in, "pixel_quantize.embedding.weight", 2, 1, &cfg->pixel_z_channels,
                   "the pixel decoder's z_channels") ||
            cv_dim(in, "pixel_decoder.conv_out.weight", 4, 1, &cfg->pixel_hidden,
                   "the pixel decoder's hidden channels") ||
            cv_count(in, "pixel_decoder.up.", TEXTOK_MAX_LEVELS, &cfg->pixel_num_levels) ||
            cv_count(in, "pixel_decoder.up.0.block.", 64, &cfg->pixel_res_blocks))
            return -1;
        if (!cfg->pixel_num_levels)
            return cv_fail("%s: cannot infer the pixel decoder's levels: no pixel_decoder.up.{l} tensors",
                           in->path);
        for (l = 0; l < cfg->pixel_num_levels; l++) {
            snprintf(name, sizeof name, "pixel_decoder.up.%d.block.0.conv1.weight", l);
            if (cv_dim(in, name, 4, 0, &dim, "the pixel decoder's channel_mult")) return -1;
            if (dim % cfg->pixel_hidden)
                return cv_fail("%s: %s has %d output channels, not a multiple of the hidden width %d",
                               in->path, name, dim, cfg->pixel_hidden);
            cfg->pixel_channel_mult[l] = dim / cfg->pixel_hidden;
        }
        cfg->pixel_groups = 32;
    }
    if (textok_titok_config_check(cfg))
        return cv_fail("%s: the inferred configuration is not valid: %s", in->path, textok_last_error());

    n = (size_t)snprintf(desc, desc_size, "%s %s, encoder %dx%d (%d head%s), decoder %dx%d (%d head%s), "
                         "K=%d, token_size %d",
                         cfg->arch == TEXTOK_ARCH_TEXTOK ? "TexTok" : cfg->text_in_decoder ? "TA-TiTok" : "TiTok",
                         legacy ? "legacy VQ" : cfg->quantize_mode == TEXTOK_QUANT_VQ ? "VQ"
                         : cfg->quantize_mode == TEXTOK_QUANT_VAE ? "VAE" : "continuous",
                         cfg->enc_width, cfg->enc_layers, cfg->enc_heads, cfg->enc_heads == 1 ? "" : "s",
                         cfg->dec_width, cfg->dec_layers, cfg->dec_heads, cfg->dec_heads == 1 ? "" : "s",
                         cfg->num_latent_tokens, cfg->token_size);
    if (n < desc_size && cfg->quantize_mode == TEXTOK_QUANT_VQ)
        n += (size_t)snprintf(desc + n, desc_size - n, ", codebook %d%s", cfg->codebook_size,
                              cfg->use_l2_norm ? " l2-normalised" : "");
    else if (n < desc_size && cfg->quantize_mode == TEXTOK_QUANT_VAE)
        n += (size_t)snprintf(desc + n, desc_size - n, " (the encoder emits %d: mean and logvar)",
                              2 * cfg->token_size);
    if (n < desc_size && (cfg->text_in_encoder || cfg->text_in_decoder))
        n += (size_t)snprintf(desc + n, desc_size - n, ", text %d x %d into the %s", cfg->text_len, cfg->text_dim,
                              cfg->text_in_encoder && cfg->text_in_decoder ? "encoder and decoder"
                              : cfg->text_in_encoder ? "encoder" : "decoder");
    if (n < desc_size)
        n += (size_t)snprintf(desc + n, desc_size - n, ", %s\n  image %d, patch %d",
                              legacy ? "MaskGIT-VQGAN pixel decoder" : "pixel head",
                              cfg->image_size, cfg->patch_size);
    if (legacy && n < desc_size) {
        n += (size_t)snprintf(desc + n, desc_size - n, "; pixel decoder: %d codes x %d, hidden %d, "
                              "channel_mult ", cfg->pixel_codebook_size, cfg->pixel_z_channels,
                              cfg->pixel_hidden);
        for (l = 0; l < cfg->pixel_num_levels && n < desc_size; l++)
            n += (size_t)snprintf(desc + n, desc_size - n, l ? ",%d" : "%d", cfg->pixel_channel_mult[l]);
        if (n < desc_size)
            snprintf(desc + n, desc_size - n, ", %d res blocks per level, GroupNorm %d",
                     cfg->pixel_res_blocks, cfg->pixel_groups);
    }
    return 0;
}

/* =============================================================================================
   Checks: the file against the full list of tensors the config implies. Every problem is
   printed (not just the first); the return value is how many there were. */

static int cv_ignored(const char *name)
{
    return cv_ends_with(name, "position_ids") || cv_ends_with(name, "num_batches_tracked");
}

static int cv_check(cv_input *in, const textok_tensor_spec *specs, int n_specs)
{
    char s1[256], s2[256];
    int i, problems = 0;
    for (i = 0; i < n_specs; i++) {
        const textok_tensor_spec *sp = &specs[i];
        cv_tensor *t = (cv_tensor *)cv_find(in, sp->name);
        int same = 1, d;
        if (!t) {
            fprintf(stderr, "convert: %s: missing tensor '%s' %s\n", in->path, sp->name,
                    cv_shape_str(s1, sizeof s1, sp->ndim, sp->shape));
            problems++;
            continue;
        }
        t->used = 1;
        if (t->ndim != sp->ndim) same = 0;
        for (d = 0; same && d < sp->ndim; d++) same = t->shape[d] == sp->shape[d];
        if (!same) {
            fprintf(stderr, "convert: %s: tensor '%s' has shape %s, the config needs %s\n", in->path, sp->name,
                    cv_shape_str(s1, sizeof s1, t->ndim, t->shape),
                    cv_shape_str(s2, sizeof s2, sp->ndim, sp->shape));
            problems++;
        }
        if (t->dtype < 0) {
            fprintf(stderr, "convert: %s: tensor '%s' has dtype %s; convert reads F32, F16 and BF16\n",
                    in->path, sp->name, t->dtype_name);
            problems++;
        }
    }
    for (i = 0; i < in->n; i++) {
        const cv_tensor *t = &in->t[in->by_name[i]];
        if (t->used) continue;
        if (cv_ignored(t->name)) {
            cv_info("note: skipping '%s' %s: a buffer, not a model parameter\n", t->name,
                    cv_shape_str(s1, sizeof s1, t->ndim, t->shape));
            continue;
        }
        fprintf(stderr, "convert: %s: unexpected tensor '%s' %s %s\n", in->path, t->name,
                cv_shape_str(s1, sizeof s1, t->ndim, t->shape), t->dtype_name);
        problems++;
    }
    return problems;
}

/* =============================================================================================
   Write: F32 in state_dict order, the config as metadata; and the report. */

#define CV_MAX_PARAMS ((size_t)1 << 31)   /* 8 GiB of F32 output; the largest TiTok has 641M */
/* T5 encoders are larger: flan-t5-xxl's has 4.76G parameters (19 GB as F32, written from memory) */
#define CV_MAX_PARAMS_T5 (SIZE_MAX / 4 > ((size_t)1 << 33) ? ((size_t)1 << 33) : CV_MAX_PARAMS)
static size_t cv_max_params = CV_MAX_PARAMS;   /* the cap of this run */

/* the components of architecture.md 1.8's table, by name prefix */
#define CV_N_COMPONENTS 8
static const char *const cv_titok_components[CV_N_COMPONENTS] = { "latent_tokens", "encoder.", "decoder.", "quantize.",
                                                                  "pixel_quantize.", "pixel_decoder." };

/* parameters per component (name prefix; at most CV_N_COMPONENTS), and the total */
static void cv_report_counts(const textok_tensor_spec *specs, int n_specs, const char *const *cv_components)
{
    unsigned long long count[CV_N_COMPONENTS] = { 0 }, transformer[CV_N_COMPONENTS] = { 0 }, total = 0;
    char a[32], b[32], c[32];
    int i, j, d;
    for (i = 0; i < n_specs; i++) {
        unsigned long long numel = 1;
        for (d = 0; d < specs[i].ndim; d++) numel *= (unsigned long long)specs[i].shape[d];
        total += numel;
        for (j = 0; j < CV_N_COMPONENTS && cv_components[j]; j++)
            if (!strncmp(specs[i].name, cv_components[j], strlen(cv_components[j]))) {
                count[j] += numel;
                if (!strncmp(specs[i].name + strlen(cv_components[j]), "transformer.", 12))
                    transformer[j] += numel;
                break;
            }
    }
    cv_info("parameters:\n");
    for (j = 0; j < CV_N_COMPONENTS && cv_components[j]; j++) {
        int len = (int)strlen(cv_components[j]);
        if (!count[j]) continue;
        if (cv_components[j][len - 1] == '.') len--;
        cv_info("  %-15.*s %15s", len, cv_components[j], cv_commas(a, sizeof a, count[j]));
        if (transformer[j])
            cv_info("  (transformer %s + rest %s)", cv_commas(b, sizeof b, transformer[j]),
                    cv_commas(c, sizeof c, count[j] - transformer[j]));
        cv_info("\n");
    }
    cv_info("  %-15s %15s\n", "total", cv_commas(a, sizeof a, total));
}

/* where output tensor i comes from: tensor t of input in (found and checked) */
typedef struct cv_src {
    const cv_input  *in;
    const cv_tensor *t;
} cv_src;

/* Writes specs[i] from src[i] as F32, in order, with n_meta key/value pairs of metadata. */
static int cv_write(const char *out, const textok_tensor_spec *specs, const cv_src *src, int n_specs,
                    const char *const *kv, int n_meta)
{
    char count[32];
    textok_st_entry *entries = NULL;
    float *data = NULL;
    size_t total = 0, off = 0, numel;
    int i, d, rc = -1;
    for (i = 0; i < n_specs; i++) {   /* all present (checked); each numel < SIZE_MAX / 4 */
        numel = src[i].t->numel;
        if (numel > cv_max_params || total > cv_max_params - numel)
            return cv_fail("%s: more than %s parameters: refusing to build an output that large",
                           src[i].in->path, cv_commas(count, sizeof count, cv_max_params));
        total += numel;
    }
    if (total > SIZE_MAX / sizeof(float) ||
        !(data = (float *)malloc((total ? total : 1) * sizeof *data)) ||
        !(entries = (textok_st_entry *)calloc((size_t)n_specs + 1, sizeof *entries))) {
        cv_fail("out of memory for %zu parameters", total);
        goto done;
    }
    for (i = 0; i < n_specs; i++) {
        const cv_tensor *t = src[i].t;
        numel = t->numel;
        if (cv_read_f32(src[i].in, t, data + off)) goto done;
        entries[i].name = specs[i].name;
        entries[i].data = data + off;
        entries[i].ndim = specs[i].ndim;
        for (d = 0; d < specs[i].ndim; d++) entries[i].shape[d] = specs[i].shape[d];
        off += numel;
    }
    if (textok_st_save(out, entries, n_specs, kv, n_meta, TEXTOK_DTYPE_F32)) {
        cv_fail("%s", textok_last_error());
        goto done;
    }
    rc = 0;
    cv_info("wrote %s: %d tensors, F32, %s parameters, config in __metadata__ (%d key%s)\n", out,
            n_specs, cv_commas(count, sizeof count, total), n_meta, n_meta == 1 ? "" : "s");
done:
    free(entries);
    free(data);
    return rc;
}

/* The tail every single-file conversion shares: the parameter counts by component, then the
   tensors in spec order, all from one input, with the config (n_meta pairs, or a negative status
   from *_config_to_meta) as metadata. Returns 0 or -1 (reported). */
static int cv_write_single(cv_input *in, const textok_tensor_spec *specs, cv_src *src, int n_specs,
                           const char *const *components, const char *const *kv, int n_meta, const char *out_path)
{
    int i;
    if (n_meta < 0) {
        fprintf(stderr, "convert: cannot write the config as metadata: %s\n", textok_last_error());
        return -1;
    }
    cv_report_counts(specs, n_specs, components);
    for (i = 0; i < n_specs; i++) {
        src[i].in = in;
        src[i].t = cv_find(in, specs[i].name);
    }
    if (cv_write(out_path, specs, src, n_specs, kv, n_meta)) {
        fflush(stdout);
        fprintf(stderr, "convert: %s\n", cv_errbuf);
        return -1;
    }
    return 0;
}

/* =============================================================================================
   LPIPS (architecture.md 6): the VGG16 trunk and the five lin layers -> the textok LPIPS file
   (textok.h section 10: F32, official LPIPS(net='vgg') names, metadata "textok.model" = "lpips"
   and "channels" = "c0,c1,c2,c3,c4"). Two ways in:
     --lpips VGG16 LIN OUT   torchvision's vgg16 state_dict (features.N.*; the classifier.* head is
                             ignored) and the LPIPS lin weights (lin{k}.model.1.weight, vgg.pth)
     --lpips LPIPS OUT       one LPIPS(net='vgg') state_dict (net.sliceS.N.*, lin{k}.*); its
                             lins.{k} ModuleList aliases and scaling_layer buffers are checked and
                             dropped. A textok LPIPS file is such a state_dict too.
   The tap widths c0..c4 are read from the shapes (any widths: the tests use tiny ones); then every
   tensor is checked against the library's list and each mismatch is explained (3x3 kernels, in-
   channels = the previous conv's out-channels, lin widths = tap widths). */

#define CV_LPIPS_CONVS 13
/* the VGG16 features index of each conv, and the LPIPS slice it belongs to; tap k is slice k+1
   (the tensor list itself is textok_lpips_tensor_specs') */
static const int cv_vgg_conv[CV_LPIPS_CONVS]  = { 0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28 };
static const int cv_vgg_slice[CV_LPIPS_CONVS] = { 1, 1, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5, 5 };
/* LPIPS v0.1's ScalingLayer (lpips.py): buffers of a full state_dict, constants in the library */
static const double cv_lpips_shift[3] = { -0.030, -0.088, -0.188 };
static const double cv_lpips_scale[3] = { 0.458, 0.448, 0.450 };
#define CV_LPIPS_MAX_WIDTH 65536   /* the library's limit; VGG16's widest is 512 */

typedef struct cv_lpips {
    cv_input *trunk;        /* features.* (two files) or net.slice*.* (one) */
    cv_input *lin;          /* lin{k}.model.1.weight: the second file, or the same one */
    int       full;         /* one LPIPS state_dict: trunk == lin */
    int       channels[5];  /* c0..c4 */
    char      from[5][96];  /* the tensor each width was read from, for messages */
} cv_lpips;

/* the input's name of conv j's weight (b = 0) or bias (b = 1) */
static void cv_lpips_conv_name(const cv_lpips *lp, int j, int b, char *buf, size_t size)
{
    if (lp->full) snprintf(buf, size, "net.slice%d.%d.%s", cv_vgg_slice[j], cv_vgg_conv[j], b ? "bias" : "weight");
    else snprintf(buf, size, "features.%d.%s", cv_vgg_conv[j], b ? "bias" : "weight");
}

/* "it holds 31 tensors: a, b, c, d, ..." */
static void cv_first_names(const cv_input *in, char *buf, size_t size)
{
    size_t m = 0;
    int i;
    buf[0] = 0;
    m += (size_t)snprintf(buf, size, "it holds %d tensor%s%s", in->n, in->n == 1 ? "" : "s", in->n ? ": " : "");
    for (i = 0; i < in->n && i < 4 && m < size; i++)
        m += (size_t)snprintf(buf + m, size - m, "%s%s", i ? ", " : "", in->t[i].name);
    if (in->n > 4 && m < size) snprintf(buf + m, size - m, ", ...");
}

/* Which file is what: the checks of the command line's shape against the files' contents. */
static int cv_lpips_roles(cv_lpips *lp, cv_input *ins, int n_in)
{
    char names[512];
    cv_input *a = &ins[0], *b = n_in == 2 ? &ins[1] : NULL;
    int a_vgg = cv_any(a, "features.", 1), a_full = cv_any(a, "net.slice", 1), a_lin = cv_any(a, "lin", 1);
    memset(lp, 0, sizeof *lp);
    if (a_vgg && cv_find(a, "features.1.running_mean"))
        return cv_fail("%s: a VGG with BatchNorm (features.1.running_mean: torchvision's vgg16_bn); LPIPS "
                       "uses the plain vgg16 (vgg16-397923af.pth)", a->path);
    if (!b) {
        if (a_full) {
            lp->trunk = lp->lin = a;
            lp->full = 1;
            return 0;
        }
        if (a_vgg)
            return cv_fail("%s: a VGG16 trunk (features.*) alone; LPIPS also needs its lin weights: "
                           "convert --lpips VGG16 LIN OUT (LIN: LPIPS's weights/v0.1/vgg.pth)", a->path);
        if (a_lin)
            return cv_fail("%s: only the LPIPS lin weights (lin{k}.*); give the VGG16 trunk first: convert "
                           "--lpips VGG16 %s OUT", a->path, a->path);
        cv_first_names(a, names, sizeof names);
        return cv_fail("%s: not an LPIPS(net='vgg') state_dict: no net.slice{1-5}.* tensors (%s)", a->path, names);
    }
    if (a_full || cv_any(b, "net.slice", 1))
        return cv_fail("%s: a full LPIPS state_dict (net.slice*): convert it alone: convert --lpips %s OUT",
                       a_full ? a->path : b->path, a_full ? a->path : b->path);
    if (!a_vgg && a_lin && cv_any(b, "features.", 1))
        return cv_fail("%s holds the LPIPS lin weights and %s the VGG16 features: the order is "
                       "convert --lpips VGG16 LIN OUT", a->path, b->path);
    if (!a_vgg) {
        cv_first_names(a, names, sizeof names);
        return cv_fail("%s: not a torchvision VGG16 state_dict: no features.{N}.* tensors (%s)", a->path, names);
    }
    if (!cv_any(b, "lin", 1)) {
        cv_first_names(b, names, sizeof names);
        return cv_fail("%s: not the LPIPS lin weights: no lin{k}.model.1.weight tensors (%s)", b->path, names);
    }
    lp->trunk = a;
    lp->lin = b;
    return 0;
}

/* c0..c4 from the shapes: for slice s, the first of its convs' weights (dim 0) and biases, then
   lin{s-1} (dim 1), that is present with the right number of dims. Any disagreement among them is
   reported by the checks, against this width. */
static int cv_lpips_channels(cv_lpips *lp)
{
    char name[96];
    int k, j, b;
    for (k = 0; k < 5; k++) {
        const cv_tensor *t = NULL;
        int axis = 0;
        for (j = 0; j < CV_LPIPS_CONVS && !t; j++) {
            if (cv_vgg_slice[j] != k + 1) continue;
            for (b = 0; b < 2 && !t; b++) {
                cv_lpips_conv_name(lp, j, b, name, sizeof name);
                if ((t = cv_find(lp->trunk, name)) && t->ndim != (b ? 1 : 4)) t = NULL;
            }
        }
        if (!t) {
            snprintf(name, sizeof name, "lin%d.model.1.weight", k);
            if ((t = cv_find(lp->lin, name)) && t->ndim != 4) t = NULL;
            axis = 1;
        }
        if (!t)
            return cv_fail("%s: cannot infer the width of LPIPS slice %d: none of its conv weights or biases, "
                           "nor lin%d.model.1.weight, is there with a conv's shape", lp->trunk->path, k + 1, k);
        if (t->shape[axis] <= 0 || t->shape[axis] > CV_LPIPS_MAX_WIDTH)
            return cv_fail("%s: tensor '%s' has shape %s: %lld channels is not a plausible width for LPIPS "
                           "slice %d", axis ? lp->lin->path : lp->trunk->path, t->name,
                           cv_shape_str(name, sizeof name, t->ndim, t->shape), (long long)t->shape[axis], k + 1);
        lp->channels[k] = (int)t->shape[axis];
        snprintf(lp->from[k], sizeof lp->from[k], "%s", t->name);
    }
    return 0;
}

/* Why tensor t does not have spec i's shape, in words ("" when there is nothing to add). */
static void cv_lpips_explain(const cv_lpips *lp, int i, const cv_tensor *t, char *buf, size_t size)
{
    char prev[96];
    size_t m = 0;
    buf[0] = 0;
#define CV_SAY(...) (m += (size_t)snprintf(buf + m, m < size ? size - m : 0, __VA_ARGS__))
    if (i < 2 * CV_LPIPS_CONVS) {
        int j = i / 2, s = cv_vgg_slice[j], cout = lp->channels[s - 1];
        if (i % 2) {
            if (t->ndim == 1 && t->shape[0] != cout)
                CV_SAY(": %lld values, but slice %d is %d wide (from %s)", (long long)t->shape[0], s, cout,
                       lp->from[s - 1]);
            return;
        }
        if (t->ndim != 4) {
            CV_SAY(": a conv weight has 4 dims (out, in, 3, 3)");
            return;
        }
        if (t->shape[2] != 3 || t->shape[3] != 3)
            CV_SAY("%s a %lldx%lld kernel, but VGG16's convs are 3x3", m ? ";" : ":", (long long)t->shape[2],
                   (long long)t->shape[3]);
        if (t->shape[0] != cout)
            CV_SAY("%s %lld output channels, but slice %d is %d wide (from %s)", m ? ";" : ":",
                   (long long)t->shape[0], s, cout, lp->from[s - 1]);
        if (j == 0 && t->shape[1] != 3)
            CV_SAY("%s %lld input channels, but the image has 3 (RGB)", m ? ";" : ":", (long long)t->shape[1]);
        if (j > 0 && t->shape[1] != lp->channels[cv_vgg_slice[j - 1] - 1]) {
            cv_lpips_conv_name(lp, j - 1, 0, prev, sizeof prev);
            CV_SAY("%s %lld input channels, but the conv before it (%s) has %d outputs", m ? ";" : ":",
                   (long long)t->shape[1], prev, lp->channels[cv_vgg_slice[j - 1] - 1]);
        }
    } else {
        int k = i - 2 * CV_LPIPS_CONVS;
        if (t->ndim != 4 || t->shape[0] != 1 || t->shape[2] != 1 || t->shape[3] != 1)
            CV_SAY(": a lin layer is a 1x1 conv from the tap's channels to 1, without bias: (1, C, 1, 1)");
        else if (t->shape[1] != lp->channels[k])
            CV_SAY(": %lld channels, but tap %d (the output of slice %d) has %d (from %s)", (long long)t->shape[1],
                   k, k + 1, lp->channels[k], lp->from[k]);
    }
#undef CV_SAY
}

/* Reads t as F32 into a new buffer (NULL: out of memory or unreadable; cv_errbuf says why). */
static float *cv_read_new(const cv_input *in, const cv_tensor *t)
{
    float *v = (float *)malloc((t->numel ? t->numel : 1) * sizeof *v);
    if (!v) {
        cv_fail("%s: out of memory", in->path);
        return NULL;
    }
    if (cv_read_f32(in, t, v)) {
        free(v);
        return NULL;
    }
    return v;
}

/* lins.{k}.model.1.weight must equal lin{k}.model.1.weight (a ModuleList alias of the same
   module); returns the number of problems (0 or 1). */
static int cv_lpips_alias(const cv_lpips *lp, const cv_tensor *alias, int k)
{
    char name[96], s1[256], s2[256];
    const cv_tensor *t;
    float *a = NULL, *b = NULL;
    size_t e;
    int d, same = 1, problems = 0;
    snprintf(name, sizeof name, "lin%d.model.1.weight", k);
    if (!(t = cv_find(lp->lin, name))) return 0;   /* reported as missing */
    if (alias->ndim != t->ndim) same = 0;
    for (d = 0; same && d < t->ndim; d++) same = alias->shape[d] == t->shape[d];
    if (!same) {
        fprintf(stderr, "convert: %s: tensor '%s' has shape %s, but it is the ModuleList alias of '%s', which "
                "has %s\n", lp->lin->path, alias->name, cv_shape_str(s1, sizeof s1, alias->ndim, alias->shape),
                name, cv_shape_str(s2, sizeof s2, t->ndim, t->shape));
        return 1;
    }
    if (alias->dtype < 0 || t->dtype < 0) return alias->dtype < 0;   /* the lin's own dtype is reported */
    if (!(a = cv_read_new(lp->lin, alias)) || !(b = cv_read_new(lp->lin, t))) {
        fprintf(stderr, "convert: %s\n", cv_errbuf);
        problems = 1;
    } else {
        for (e = 0; e < t->numel; e++)
            if (!(a[e] == b[e])) {
                fprintf(stderr, "convert: %s: tensor '%s' differs from '%s' at element %zu (%.9g vs %.9g); in an "
                        "LPIPS state_dict it is the ModuleList alias of that lin layer and must be equal\n",
                        lp->lin->path, alias->name, name, e, (double)a[e], (double)b[e]);
                problems = 1;
                break;
            }
    }
    free(a);
    free(b);
    return problems;
}

/* scaling_layer.shift / .scale must be LPIPS v0.1's constants, which the library hard-codes. The
   tolerance is 1e-6 plus half a unit in the last place of the file's dtype (an F16 or BF16 file
   cannot hold -0.030 closer than that). Returns the number of problems (0 or 1). */
static int cv_lpips_scaling(const cv_input *in, const cv_tensor *t, const double *want)
{
    char s1[256];
    float *v;
    int k, bad = 0;
    double half_ulp = t->dtype == TEXTOK_DTYPE_F16 ? 1.0 / 2048 : t->dtype == TEXTOK_DTYPE_BF16 ? 1.0 / 256 : 0;
    if (t->ndim != 4 || t->shape[0] != 1 || t->shape[1] != 3 || t->shape[2] != 1 || t->shape[3] != 1) {
        fprintf(stderr, "convert: %s: tensor '%s' has shape %s, expected [1, 3, 1, 1] (LPIPS's ScalingLayer)\n",
                in->path, t->name, cv_shape_str(s1, sizeof s1, t->ndim, t->shape));
        return 1;
    }
    if (t->dtype < 0) {
        fprintf(stderr, "convert: %s: tensor '%s' has dtype %s; convert reads F32, F16 and BF16\n", in->path,
                t->name, t->dtype_name);
        return 1;
    }
    if (!(v = cv_read_new(in, t))) {
        fprintf(stderr, "convert: %s\n", cv_errbuf);
        return 1;
    }
    for (k = 0; k < 3; k++)
        if (!(fabs((double)v[k] - want[k]) <= 1e-6 + fabs(want[k]) * half_ulp)) bad = 1;
    if (bad)
        fprintf(stderr, "convert: %s: tensor '%s' is (%.9g, %.9g, %.9g), not LPIPS v0.1's (%.3f, %.3f, %.3f) "
                "(within 1e-6%s): the library hard-codes those constants\n", in->path, t->name, (double)v[0],
                (double)v[1], (double)v[2], want[0], want[1], want[2],
                half_ulp > 0 ? ", plus the rounding of the file's dtype" : "");
    free(v);
    return bad;
}

/* Every spec against the inputs (src[i] filled for the ones found), then every tensor no spec
   took; prints each problem and returns how many there were. */
static int cv_lpips_check(const cv_lpips *lp, const textok_tensor_spec *specs, int n_specs, cv_src *src)
{
    char name[96], s1[256], s2[256], why[512];
    int i, f, problems = 0, classifier = 0, aliases = 0, scaling = 0;
    for (i = 0; i < n_specs; i++) {
        const textok_tensor_spec *sp = &specs[i];
        cv_input *in = i < 2 * CV_LPIPS_CONVS ? lp->trunk : lp->lin;
        cv_tensor *t;
        int same = 1, d;
        /* the list is 13 x (weight, bias) then lin0..4 (textok.h section 10); the mapping and the
           explanations rely on that order, so a change there must not go unnoticed */
        if (i < 2 * CV_LPIPS_CONVS)
            snprintf(name, sizeof name, "net.slice%d.%d.%s", cv_vgg_slice[i / 2], cv_vgg_conv[i / 2],
                     i % 2 ? "bias" : "weight");
        else
            snprintf(name, sizeof name, "lin%d.model.1.weight", i - 2 * CV_LPIPS_CONVS);
        if (n_specs != 2 * CV_LPIPS_CONVS + 5 || strcmp(name, sp->name)) {
            fprintf(stderr, "convert: internal error: textok_lpips_tensor_specs lists '%s' (of %d) where "
                    "convert expects '%s'\n", sp->name, n_specs, name);
            return problems + 1;
        }
        if (i < 2 * CV_LPIPS_CONVS) cv_lpips_conv_name(lp, i / 2, i % 2, name, sizeof name);
        if (!(t = (cv_tensor *)cv_find(in, name))) {
            fprintf(stderr, "convert: %s: missing tensor '%s' %s\n", in->path, name,
                    cv_shape_str(s1, sizeof s1, sp->ndim, sp->shape));
            problems++;
            continue;
        }
        t->used = 1;
        src[i].in = in;
        src[i].t = t;
        if (t->ndim != sp->ndim) same = 0;
        for (d = 0; same && d < sp->ndim; d++) same = t->shape[d] == sp->shape[d];
        if (!same) {
            cv_lpips_explain(lp, i, t, why, sizeof why);
            fprintf(stderr, "convert: %s: tensor '%s' has shape %s, expected %s%s\n", in->path, name,
                    cv_shape_str(s1, sizeof s1, t->ndim, t->shape), cv_shape_str(s2, sizeof s2, sp->ndim, sp->shape),
                    why);
            problems++;
        }
        if (t->dtype < 0) {
            fprintf(stderr, "convert: %s: tensor '%s' has dtype %s; convert reads F32, F16 and BF16\n",
                    in->path, name, t->dtype_name);
            problems++;
        }
    }
    for (f = 0; f < (lp->full ? 1 : 2); f++) {
        cv_input *in = f ? lp->lin : lp->trunk;
        for (i = 0; i < in->n; i++) {
            const cv_tensor *t = &in->t[in->by_name[i]];
            int k;
            if (t->used) continue;
            if (!lp->full && !f && !strncmp(t->name, "classifier.", 11)) {
                classifier++;
                continue;
            }
            for (k = 0; lp->full && k < 5; k++) {
                snprintf(name, sizeof name, "lins.%d.model.1.weight", k);
                if (!strcmp(name, t->name)) break;
            }
            if (lp->full && k < 5) {
                problems += cv_lpips_alias(lp, t, k);
                aliases++;
                continue;
            }
            if (lp->full && (!strcmp(t->name, "scaling_layer.shift") || !strcmp(t->name, "scaling_layer.scale"))) {
                problems += cv_lpips_scaling(in, t, strcmp(t->name, "scaling_layer.shift") ? cv_lpips_scale
                                                                                          : cv_lpips_shift);
                scaling++;
                continue;
            }
            if (cv_ignored(t->name)) {
                cv_info("note: skipping '%s' %s: a buffer, not a model parameter\n", t->name,
                        cv_shape_str(s1, sizeof s1, t->ndim, t->shape));
                continue;
            }
            fprintf(stderr, "convert: %s: unexpected tensor '%s' %s %s\n", in->path, t->name,
                    cv_shape_str(s1, sizeof s1, t->ndim, t->shape), t->dtype_name);
            problems++;
        }
    }
    if (problems) return problems;
    if (classifier)
        cv_info("note: ignoring the %d classifier.* tensors of %s: LPIPS uses VGG16's features only\n", classifier,
                lp->trunk->path);
    if (aliases)
        cv_info("note: dropping %d lins.{k}.model.1.weight tensor%s: ModuleList aliases, equal to lin{k}.model.1.weight\n",
                aliases, aliases == 1 ? "" : "s");
    if (scaling)
        cv_info("note: dropping scaling_layer.shift/scale: LPIPS v0.1's constants, which the library hard-codes\n");
    return 0;
}

static const char *const cv_lpips_components[CV_N_COMPONENTS] = { "net.slice1.", "net.slice2.", "net.slice3.", "net.slice4.",
                                                   "net.slice5.", "lin" };

/* --lpips: ins[0..n_in-1] are open; checks them and writes out. Returns 0 or -1 (reported). */
static int cv_lpips_convert(cv_input *ins, int n_in, const char *out)
{
    cv_lpips lp;
    textok_tensor_spec *specs = NULL;
    cv_src *src = NULL;
    char chan[64];
    const char *kv[4];
    int n_specs, problems, rc = -1;
    if (cv_lpips_roles(&lp, ins, n_in) || cv_lpips_channels(&lp)) {
        fflush(stdout);
        fprintf(stderr, "convert: %s\n", cv_errbuf);
        return -1;
    }
    snprintf(chan, sizeof chan, "%d,%d,%d,%d,%d", lp.channels[0], lp.channels[1], lp.channels[2],
             lp.channels[3], lp.channels[4]);
    if (lp.full)
        cv_info("LPIPS(net='vgg') state_dict: VGG16 trunk (13 convs in 5 slices) + 5 lin layers, channels %s\n", chan);
    else
        cv_info("LPIPS from torchvision's vgg16 features (%s) and the lin weights (%s): channels %s\n",
                lp.trunk->path, lp.lin->path, chan);
    n_specs = textok_lpips_tensor_specs(lp.channels, NULL, 0);
    if (n_specs <= 0 || !(specs = (textok_tensor_spec *)calloc((size_t)n_specs, sizeof *specs)) ||
        !(src = (cv_src *)calloc((size_t)n_specs, sizeof *src)) ||
        textok_lpips_tensor_specs(lp.channels, specs, n_specs) != n_specs) {
        fflush(stdout);
        fprintf(stderr, "convert: cannot list the LPIPS tensors for channels %s: %s\n", chan,
                n_specs <= 0 ? textok_last_error() : "out of memory");
        goto done;
    }
    fflush(stdout);
    if ((problems = cv_lpips_check(&lp, specs, n_specs, src))) {
        if (lp.full)
            fprintf(stderr, "convert: %s: %d problem%s against an LPIPS with channels %s (inferred from its "
                    "shapes; listed above); nothing written\n", lp.trunk->path, problems, problems == 1 ? "" : "s", chan);
        else
            fprintf(stderr, "convert: %s + %s: %d problem%s against an LPIPS with channels %s (inferred from "
                    "their shapes; listed above); nothing written\n", lp.trunk->path, lp.lin->path, problems,
                    problems == 1 ? "" : "s", chan);
        goto done;
    }
    cv_report_counts(specs, n_specs, cv_lpips_components);
    kv[0] = "textok.model";
    kv[1] = "lpips";
    kv[2] = "channels";
    kv[3] = chan;
    if (cv_write(out, specs, src, n_specs, kv, 2)) {
        fflush(stdout);
        fprintf(stderr, "convert: %s\n", cv_errbuf);
        goto done;
    }
    rc = 0;
done:
    free(specs);
    free(src);
    return rc;
}

/* =============================================================================================
   T5 (textok-paper.md 3): a Hugging Face T5 checkpoint -> the textok T5 file (textok.h, the T5
   encoder: F32, the encoder's Hugging Face names in state_dict order, the textok_t5_config in
   __metadata__).
     --t5 IN OUT [--t5-config config.json]
   IN is a T5ForConditionalGeneration / T5EncoderModel checkpoint: model.safetensors, a
   pytorch_model.bin (zip or legacy torch.save), or the model.safetensors.index.json of a sharded
   checkpoint (its shards are found beside it). Only the encoder is kept: decoder.* and lm_head.*
   are dropped; the embedding is shared.weight or its tied alias encoder.embed_tokens.weight (a
   file that holds both must hold the same values). From the shapes: vocab and d_model (the
   embedding), heads and num_buckets (block 0's relative_attention_bias, (num_buckets, heads)),
   d_kv (q.weight's rows / heads), d_ff and gated (wi_0/wi_1 vs wi), layers (the block indices).
   max_distance (128) and eps (1e-6) are not in the tensors: config.json gives them, and decides
   the activation (feed_forward_proj, or an explicit dense_act_fn / is_gated_act, as transformers'
   T5Config reads them: "gated-gelu" = tanh GELU, "gelu" = exact GELU, "relu" for v1.0); its
   dimensions must agree with the tensors. */

#define CV_MAX_T5_SHARDS 256

static void cv_describe_input(const cv_input *in);

/* ----- a small JSON reader for config.json and the shard index: objects are walked key by key,
   values of no interest are skipped whole (nested objects and arrays included) */
typedef struct cj {
    const char *beg, *p, *end;
    const char *path;
} cj;

static void cj_ws(cj *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')) j->p++;
}

static int cj_fail(cj *j, const char *what)
{
    return cv_fail("%s: not valid JSON at byte %ld: %s", j->path, (long)(j->p - j->beg), what);
}

static int cj_eat(cj *j, char c)
{
    cj_ws(j);
    if (j->p < j->end && *j->p == c) { j->p++; return 1; }
    return 0;
}

/* a string into buf (size bytes); \uXXXX outside ASCII becomes '?' (no name or value we read
   has one) */
static int cj_string(cj *j, char *buf, size_t size)
{
    size_t n = 0;
    cj_ws(j);
    if (j->p >= j->end || *j->p != '"') return cj_fail(j, "expected a string");
    for (j->p++; j->p < j->end && *j->p != '"'; j->p++) {
        char c = *j->p;
        if ((unsigned char)c < 0x20) return cj_fail(j, "control character in a string");
        if (c == '\\') {
            if (++j->p >= j->end) break;
            switch (*j->p) {
            case '"': case '\\': case '/': c = *j->p; break;
            case 'b': c = '\b'; break;
            case 'f': c = '\f'; break;
            case 'n': c = '\n'; break;
            case 'r': c = '\r'; break;
            case 't': c = '\t'; break;
            case 'u': {
                unsigned v = 0;
                int k;
                for (k = 0; k < 4; k++) {
                    char h = ++j->p < j->end ? *j->p : 0;
                    v = v << 4 | (unsigned)(h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10
                                            : h >= 'A' && h <= 'F' ? h - 'A' + 10 : 99);
                    if (v > 0xffff) return cj_fail(j, "bad \\u escape");
                }
                c = v && v < 0x80 ? (char)v : '?';
                break;
            }
            default: return cj_fail(j, "unknown escape in a string");
            }
        }
        if (n + 1 >= size) return cj_fail(j, "string too long");
        buf[n++] = c;
    }
    if (j->p >= j->end) return cj_fail(j, "unterminated string");
    j->p++;
    buf[n] = 0;
    return 0;
}

/* a number, true, false or null: its text into buf */
static int cj_scalar(cj *j, char *buf, size_t size)
{
    size_t n = 0;
    cj_ws(j);
    while (j->p < j->end && ((*j->p >= '0' && *j->p <= '9') || (*j->p >= 'a' && *j->p <= 'z') ||
                             (*j->p >= 'A' && *j->p <= 'Z') || *j->p == '-' || *j->p == '+' || *j->p == '.')) {
        if (n + 1 >= size) return cj_fail(j, "value too long");
        buf[n++] = *j->p++;
    }
    if (!n) return cj_fail(j, "expected a value");
    buf[n] = 0;
    return 0;
}

static int cj_skip(cj *j, int depth)
{
    char tmp[4096];
    if (depth > 64) return cj_fail(j, "nested more than 64 deep");
    cj_ws(j);
    if (j->p >= j->end) return cj_fail(j, "unexpected end");
    if (*j->p == '"') return cj_string(j, tmp, sizeof tmp);
    if (*j->p == '{' || *j->p == '[') {
        char close = *j->p == '{' ? '}' : ']';
        j->p++;
        if (cj_eat(j, close)) return 0;
        do {
            if (close == '}' && (cj_string(j, tmp, sizeof tmp) || (!cj_eat(j, ':') && cj_fail(j, "expected ':'"))))
                return -1;
            if (cj_skip(j, depth + 1)) return -1;
        } while (cj_eat(j, ','));
        return cj_eat(j, close) ? 0 : cj_fail(j, close == '}' ? "expected ',' or '}'" : "expected ',' or ']'");
    }
    return cj_scalar(j, tmp, sizeof tmp);
}

static int cj_open(cj *j, textok_file *f, const char *path)
{
    memset(j, 0, sizeof *j);
    if (textok_file_open(f, path) != TEXTOK_OK) return cv_fail("%s", textok_last_error());
    j->beg = j->p = (const char *)f->data;
    j->end = j->p + f->size;
    j->path = path;
    return 0;
}

/* ----- config.json ---------------------------------------------------------------------------- */
typedef struct cv_t5_json {
    const char *path;                 /* NULL: no config.json given */
    /* -1 = absent */
    int d_model, d_kv, num_heads, d_ff, num_layers, num_buckets, max_distance, vocab_size, is_gated_act;
    double eps;                       /* < 0: absent */
    char feed_forward_proj[64], dense_act_fn[64], model_type[64];   /* "" = absent */
} cv_t5_json;

static int cv_t5_json_int(cj *j, const char *key, int *out)
{
    char v[64], *end;
    long x;
    if (cj_scalar(j, v, sizeof v)) return -1;
    errno = 0;
    x = strtol(v, &end, 10);
    if (*end || errno || x < 0 || x > INT_MAX)
        return cv_fail("%s: \"%s\" is %s, expected a non-negative integer", j->path, key, v);
    *out = (int)x;
    return 0;
}

static int cv_t5_read_config(cv_t5_json *c, const char *path)
{
    static const struct { const char *key; size_t off; } ints[] = {
        { "d_model", offsetof(cv_t5_json, d_model) }, { "d_kv", offsetof(cv_t5_json, d_kv) },
        { "num_heads", offsetof(cv_t5_json, num_heads) }, { "d_ff", offsetof(cv_t5_json, d_ff) },
        { "num_layers", offsetof(cv_t5_json, num_layers) },
        { "relative_attention_num_buckets", offsetof(cv_t5_json, num_buckets) },
        { "relative_attention_max_distance", offsetof(cv_t5_json, max_distance) },
        { "vocab_size", offsetof(cv_t5_json, vocab_size) }
    };
    textok_file f;
    cj j;
    char key[256], v[64];
    int rc = -1;
    size_t k;
    memset(c, 0, sizeof *c);
    c->d_model = c->d_kv = c->num_heads = c->d_ff = c->num_layers = c->num_buckets = c->max_distance = -1;
    c->vocab_size = c->is_gated_act = -1;
    c->eps = -1.0;
    c->path = path;
    memset(&f, 0, sizeof f);
    if (cj_open(&j, &f, path)) return -1;
    if (!cj_eat(&j, '{')) { cj_fail(&j, "a config.json is one object"); goto done; }
    if (!cj_eat(&j, '}')) {
        do {
            if (cj_string(&j, key, sizeof key)) goto done;
            if (!cj_eat(&j, ':')) { cj_fail(&j, "expected ':'"); goto done; }
            for (k = 0; k < sizeof ints / sizeof *ints && strcmp(key, ints[k].key); k++) {}
            if (k < sizeof ints / sizeof *ints) {
                if (cv_t5_json_int(&j, key, (int *)((char *)c + ints[k].off))) goto done;
            } else if (!strcmp(key, "layer_norm_epsilon")) {
                char *end;
                if (cj_scalar(&j, v, sizeof v)) goto done;
                c->eps = strtod(v, &end);   /* convert never sets a locale: '.' is the point */
                if (*end || !(c->eps > 0.0 && c->eps < 1.0)) {
                    cv_fail("%s: \"layer_norm_epsilon\" is %s, expected a number in (0, 1)", path, v);
                    goto done;
                }
            } else if (!strcmp(key, "feed_forward_proj") || !strcmp(key, "dense_act_fn") || !strcmp(key, "model_type")) {
                char *dst = key[0] == 'f' ? c->feed_forward_proj : key[0] == 'd' ? c->dense_act_fn : c->model_type;
                if (cj_string(&j, dst, 64)) goto done;
            } else if (!strcmp(key, "is_gated_act")) {
                if (cj_scalar(&j, v, sizeof v)) goto done;
                if (strcmp(v, "true") && strcmp(v, "false")) {
                    cv_fail("%s: \"is_gated_act\" is %s, expected true or false", path, v);
                    goto done;
                }
                c->is_gated_act = v[0] == 't';
            } else if (cj_skip(&j, 0)) {
                goto done;
            }
        } while (cj_eat(&j, ','));
        if (!cj_eat(&j, '}')) { cj_fail(&j, "expected ',' or '}'"); goto done; }
    }
    cj_ws(&j);
    if (j.p != j.end) { cj_fail(&j, "text after the object"); goto done; }
    rc = 0;
done:
    textok_file_close(&f);
    return rc;
}

/* ----- the inputs: one checkpoint, or the shards of an index ----------------------------------- */
typedef struct cv_t5_inputs {
    cv_input *in;          /* (n) */
    int       n;
    char    **paths;       /* (n) shard paths (index), else NULL */
} cv_t5_inputs;

static void cv_t5_inputs_close(cv_t5_inputs *s)
{
    int i;
    for (i = 0; i < s->n; i++) cv_input_close(&s->in[i]);
    for (i = 0; s->paths && i < s->n; i++) free(s->paths[i]);
    free(s->in);
    free(s->paths);
    memset(s, 0, sizeof *s);
}

static const cv_tensor *cv_t5_find(const cv_t5_inputs *s, const char *name, int *which)
{
    int i;
    for (i = 0; i < s->n; i++) {
        const cv_tensor *t = cv_find(&s->in[i], name);
        if (t) { if (which) *which = i; return t; }
    }
    return NULL;
}

/* model.safetensors.index.json: {"metadata": {...}, "weight_map": {"<tensor>": "<shard file>"}}.
   Opens every shard named (relative to the index's folder) and checks that each holds the tensors
   the map gives it, and that no tensor is in two shards. */
static int cv_t5_open_index(cv_t5_inputs *s, const char *path)
{
    textok_file f;
    cj j;
    char key[512], file[512], dir[4096];
    struct cv_t5_entry { char *name, *file; } *map = NULL;   /* weight_map, in file order */
    size_t n_map = 0, cap = 0, k, dl;
    const char *slash = strrchr(path, '/');
    int rc = -1, i, seen_map = 0;
    dl = slash ? (size_t)(slash - path + 1) : 0;
    if (dl >= sizeof dir) return cv_fail("%s: path too long", path);
    memcpy(dir, path, dl);
    dir[dl] = 0;
    memset(&f, 0, sizeof f);
    if (cj_open(&j, &f, path)) return -1;
    if (!cj_eat(&j, '{')) { cj_fail(&j, "an index is one object"); goto done; }
    if (!cj_eat(&j, '}')) {
        do {
            if (cj_string(&j, key, sizeof key)) goto done;
            if (!cj_eat(&j, ':')) { cj_fail(&j, "expected ':'"); goto done; }
            if (strcmp(key, "weight_map")) { if (cj_skip(&j, 0)) goto done; continue; }
            seen_map = 1;
            if (!cj_eat(&j, '{')) { cj_fail(&j, "\"weight_map\" must be an object"); goto done; }
            if (cj_eat(&j, '}')) continue;
            do {
                void *p = map;
                if (cj_string(&j, key, sizeof key) || (!cj_eat(&j, ':') && cj_fail(&j, "expected ':'")) ||
                    cj_string(&j, file, sizeof file))
                    goto done;
                if (strchr(file, '/') || strchr(file, '\\') || !strcmp(file, "..") || !file[0]) {
                    cv_fail("%s: shard name '%s' is not a plain file name beside the index", path, file);
                    goto done;
                }
                if (!cv_grow(&p, &cap, n_map + 1, sizeof *map)) { cv_fail("out of memory"); goto done; }
                map = (struct cv_t5_entry *)p;
                map[n_map].name = cv_strndup(key, strlen(key));
                map[n_map].file = cv_strndup(file, strlen(file));
                n_map++;
                if (!map[n_map - 1].name || !map[n_map - 1].file) { cv_fail("out of memory"); goto done; }
            } while (cj_eat(&j, ','));
            if (!cj_eat(&j, '}')) { cj_fail(&j, "expected ',' or '}' in \"weight_map\""); goto done; }
        } while (cj_eat(&j, ','));
        if (!cj_eat(&j, '}')) { cj_fail(&j, "expected ',' or '}'"); goto done; }
    }
    if (!seen_map || !n_map) { cv_fail("%s: a shard index without a \"weight_map\" of tensors", path); goto done; }
    /* the distinct shards, in order of first mention */
    if (!(s->in = (cv_input *)calloc(CV_MAX_T5_SHARDS, sizeof *s->in)) ||
        !(s->paths = (char **)calloc(CV_MAX_T5_SHARDS, sizeof *s->paths))) { cv_fail("out of memory"); goto done; }
    for (k = 0; k < n_map; k++) {
        for (i = 0; i < s->n && strcmp(s->paths[i] + dl, map[k].file); i++) {}
        if (i < s->n) continue;
        if (s->n == CV_MAX_T5_SHARDS) { cv_fail("%s: more than %d shards", path, CV_MAX_T5_SHARDS); goto done; }
        if (!(s->paths[s->n] = (char *)malloc(dl + strlen(map[k].file) + 1))) { cv_fail("out of memory"); goto done; }
        sprintf(s->paths[s->n], "%s%s", dir, map[k].file);
        s->n++;
        if (cv_input_open(&s->in[s->n - 1], s->paths[s->n - 1])) goto done;
        cv_describe_input(&s->in[s->n - 1]);
    }
    for (k = 0; k < n_map; k++) {
        int which = -1;
        const cv_tensor *t = cv_t5_find(s, map[k].name, &which);
        if (!t || strcmp(s->paths[which] + dl, map[k].file)) {
            cv_fail("%s: the index puts '%s' in %s, but %s", path, map[k].name, map[k].file,
                    t ? "another shard holds it" : "no shard holds it");
            goto done;
        }
    }
    for (i = 0; i < s->n; i++) {
        int m;
        for (m = 0; m < s->in[i].n; m++) {
            int which = -1;
            cv_t5_find(s, s->in[i].t[m].name, &which);
            if (which != i) {
                cv_fail("%s: tensor '%s' is in two shards (%s and %s)", path, s->in[i].t[m].name,
                        s->paths[which], s->paths[i]);
                goto done;
            }
        }
    }
    rc = 0;
done:
    for (k = 0; k < n_map; k++) { free(map[k].name); free(map[k].file); }
    free(map);
    textok_file_close(&f);
    return rc;
}

static int cv_t5_open(cv_t5_inputs *s, const char *path)
{
    textok_file f;
    int index;
    memset(s, 0, sizeof *s);
    memset(&f, 0, sizeof f);
    /* an index is JSON text: '{' first (safetensors starts with its 8-byte header length) */
    if (textok_file_open(&f, path) != TEXTOK_OK) return cv_fail("%s", textok_last_error());
    {
        size_t k = 0;
        while (k < f.size && (f.data[k] == ' ' || f.data[k] == '\n' || f.data[k] == '\r' || f.data[k] == '\t')) k++;
        index = k < f.size && f.data[k] == '{';
    }
    textok_file_close(&f);
    if (index) return cv_t5_open_index(s, path);
    if (!(s->in = (cv_input *)calloc(1, sizeof *s->in))) return cv_fail("out of memory");
    s->n = 1;
    if (cv_input_open(&s->in[0], path)) return -1;
    cv_describe_input(&s->in[0]);
    return 0;
}

/* ----- the configuration from the tensors (and config.json) ------------------------------------ */
static int cv_t5_dim(const cv_t5_inputs *s, const char *name, int ndim, int axis, int *out, const char *field)
{
    int which = 0;
    const cv_tensor *t = cv_t5_find(s, name, &which);
    char sh[256];
    if (!t) return cv_fail("cannot infer %s: tensor '%s' is missing", field, name);
    if (t->ndim != ndim || t->shape[axis] <= 0 || t->shape[axis] > (1 << 24))
        return cv_fail("%s: cannot infer %s: tensor '%s' has shape %s, expected %d dims", s->in[which].path, field,
                       name, cv_shape_str(sh, sizeof sh, t->ndim, t->shape), ndim);
    *out = (int)t->shape[axis];
    return 0;
}

/* a config.json value against the one read from the tensors */
static int cv_t5_agree(const cv_t5_json *j, const char *key, int json, int tensors, const char *from)
{
    if (json >= 0 && json != tensors)
        return cv_fail("%s: \"%s\" is %d, but the tensors say %d (%s)", j->path, key, json, tensors, from);
    return 0;
}

static const char *const cv_t5_rab = "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight";

static int cv_t5_recognise(const cv_t5_inputs *s, const cv_t5_json *j, textok_t5_config *c, char *desc, size_t size)
{
    const cv_tensor *emb = cv_t5_find(s, "shared.weight", NULL);
    int inner, i, gated_json = -1, has_wi0, has_wi;
    const char *act;
    memset(c, 0, sizeof *c);
    if (!emb) emb = cv_t5_find(s, "encoder.embed_tokens.weight", NULL);
    if (!cv_t5_find(s, "encoder.block.0.layer.0.SelfAttention.q.weight", NULL) || !emb) {
        char seen[256];
        size_t n = 0;
        int dec = 0, enc = 0, m;
        seen[0] = 0;
        for (i = 0; i < s->n; i++)
            for (m = 0; m < s->in[i].n; m++) {
                dec += !strncmp(s->in[i].t[m].name, "decoder.block.", 14);
                enc += !strncmp(s->in[i].t[m].name, "encoder.", 8);
            }
        for (m = 0; m < s->in[0].n && m < 3; m++)
            n += (size_t)snprintf(seen + n, n < sizeof seen ? sizeof seen - n : 0, "%s%s", m ? ", " : "", s->in[0].t[m].name);
        return cv_fail("%s: not a T5 encoder: expected keys absent: %s%s%s (the file holds %d tensor%s%s%s%s)%s",
                       s->in[0].path, emb ? "" : "shared.weight (or encoder.embed_tokens.weight)",
                       emb ? "" : ", ", "encoder.block.0.layer.0.SelfAttention.q.weight", s->in[0].n,
                       s->in[0].n == 1 ? "" : "s", s->n > 1 ? " in its first shard" : "", s->in[0].n ? ": " : "", seen,
                       dec && !enc ? "; it has a T5 decoder but no encoder: a text encoder needs the encoder half" : "");
    }
    if (emb->ndim != 2)
        return cv_fail("%s: the embedding '%s' has %d dims, expected 2 (vocab, d_model)", s->in[0].path, emb->name, emb->ndim);
    c->vocab = (int)(emb->shape[0] > INT_MAX ? INT_MAX : emb->shape[0]);
    c->d_model = (int)(emb->shape[1] > INT_MAX ? INT_MAX : emb->shape[1]);
    if (cv_t5_dim(s, cv_t5_rab, 2, 0, &c->num_buckets, "num_buckets") ||
        cv_t5_dim(s, cv_t5_rab, 2, 1, &c->heads, "the number of heads") ||
        cv_t5_dim(s, "encoder.block.0.layer.0.SelfAttention.q.weight", 2, 0, &inner, "the attention width"))
        return -1;
    if (inner % c->heads)
        return cv_fail("%s: q.weight has %d rows, not a multiple of the %d heads of relative_attention_bias",
                       s->in[0].path, inner, c->heads);
    c->d_kv = inner / c->heads;
    for (i = 0; i < s->n; i++) {
        int n;
        if (cv_count(&s->in[i], "encoder.block.", 1024, &n)) return -1;
        if (n > c->layers) c->layers = n;
    }
    has_wi0 = cv_t5_find(s, "encoder.block.0.layer.1.DenseReluDense.wi_0.weight", NULL) != NULL;
    has_wi = cv_t5_find(s, "encoder.block.0.layer.1.DenseReluDense.wi.weight", NULL) != NULL;
    if (has_wi0 == has_wi)
        return cv_fail("%s: encoder block 0's FFN has %s: a T5 FFN is gated (wi_0, wi_1: v1.1, flan) or not (wi: v1.0)",
                       s->in[0].path, has_wi0 ? "both wi_0 and wi" : "neither wi_0 nor wi");
    c->gated = has_wi0;
    if (cv_t5_dim(s, c->gated ? "encoder.block.0.layer.1.DenseReluDense.wi_0.weight"
                              : "encoder.block.0.layer.1.DenseReluDense.wi.weight", 2, 0, &c->d_ff, "d_ff"))
        return -1;
    c->max_distance = 128;
    c->eps = 1e-6f;
    c->gelu_tanh = c->gated;
    act = c->gated ? "gelu_new" : "relu";
    if (j->path) {
        char ff[64];
        const char *a;
        if (j->model_type[0] && strcmp(j->model_type, "t5") && strcmp(j->model_type, "mt5"))
            return cv_fail("%s: \"model_type\" is \"%s\"%s; convert --t5 reads t5 and mt5", j->path, j->model_type,
                           !strcmp(j->model_type, "umt5") ? " (umT5 has a position table in every block, which textok does not implement)" : "");
        if (cv_t5_agree(j, "d_model", j->d_model, c->d_model, "the embedding's columns") ||
            cv_t5_agree(j, "num_heads", j->num_heads, c->heads, "relative_attention_bias's columns") ||
            cv_t5_agree(j, "d_kv", j->d_kv, c->d_kv, "q.weight's rows / heads") ||
            cv_t5_agree(j, "d_ff", j->d_ff, c->d_ff, "the FFN's wi rows") ||
            cv_t5_agree(j, "num_layers", j->num_layers, c->layers, "the encoder.block.{i} indices") ||
            cv_t5_agree(j, "relative_attention_num_buckets", j->num_buckets, c->num_buckets, "relative_attention_bias's rows"))
            return -1;
        if (j->vocab_size >= 0 && j->vocab_size != c->vocab)
            cv_info("note: %s: \"vocab_size\" is %d, the embedding has %d rows; ids must be < %d\n", j->path,
                    j->vocab_size, c->vocab, c->vocab);
        if (j->max_distance >= 0) c->max_distance = j->max_distance;
        if (j->eps >= 0.0) c->eps = (float)j->eps;
        /* as transformers' T5Config: feed_forward_proj "[gated-]act" sets the activation and
           gating ("gated-gelu" means gelu_new, for backward compatibility); explicit dense_act_fn
           and is_gated_act keys override both */
        snprintf(ff, sizeof ff, "%s", j->feed_forward_proj[0] ? j->feed_forward_proj : "relu");
        a = strncmp(ff, "gated-", 6) ? ff : ff + 6;
        gated_json = a != ff;
        act = !strcmp(ff, "gated-gelu") ? "gelu_new" : a;
        if (j->dense_act_fn[0]) act = j->dense_act_fn;
        if (j->is_gated_act >= 0) gated_json = j->is_gated_act;
        if (gated_json != c->gated)
            return cv_fail("%s: the config says a %s FFN (feed_forward_proj \"%s\"%s), but the tensors hold %s", j->path,
                           gated_json ? "gated" : "non-gated", j->feed_forward_proj, j->is_gated_act >= 0 ? ", is_gated_act" : "",
                           c->gated ? "wi_0/wi_1 (gated)" : "wi (not gated)");
        if (c->gated && (!strcmp(act, "gelu_new") || !strcmp(act, "gelu_pytorch_tanh") || !strcmp(act, "gelu_fast")))
            c->gelu_tanh = 1;
        else if (c->gated && !strcmp(act, "gelu"))
            c->gelu_tanh = 0;
        else if (c->gated || strcmp(act, "relu"))
            return cv_fail("%s: activation \"%s\" with a %s FFN is not supported: textok's T5 has the gated GELU (tanh "
                           "\"gelu_new\" or exact \"gelu\") and v1.0's non-gated ReLU", j->path, act, c->gated ? "gated" : "non-gated");
    } else {
        cv_info("note: no --t5-config: max_distance 128, eps 1e-06 and the %s FFN assumed (what every published T5 "
                "uses); pass the model's config.json to read them\n", c->gated ? "tanh-GELU gated" : "ReLU");
    }
    if (textok_t5_config_check(c))
        return cv_fail("%s: the inferred configuration is not valid: %s", s->in[0].path, textok_last_error());
    snprintf(desc, size, "T5 encoder, %s: d_model %d, %d head%s x d_kv %d, d_ff %d, %d layer%s, vocab %d, %d buckets, "
             "max_distance %d, eps %g", c->gated ? (c->gelu_tanh ? "gated tanh-GELU (v1.1/flan)" : "gated exact GELU")
             : "ReLU (v1.0)", c->d_model, c->heads, c->heads == 1 ? "" : "s", c->d_kv, c->d_ff, c->layers,
             c->layers == 1 ? "" : "s", c->vocab, c->num_buckets, c->max_distance, (double)c->eps);
    return 0;
}

/* ----- checks: every tensor of the config, the embedding's alias, what is dropped -------------- */
/* 1 if two tensors hold the same values (a tied pair is usually one storage: compared by view) */
static int cv_t5_same(const cv_t5_inputs *s, int ia, const cv_tensor *a, int ib, const cv_tensor *b, int *err)
{
    float *x, *y;
    int same, d;
    *err = 0;
    if (a->ndim != b->ndim || a->numel != b->numel) return 0;
    for (d = 0; d < a->ndim; d++) if (a->shape[d] != b->shape[d]) return 0;
    if (a->bytes && a->bytes == b->bytes && a->offset == b->offset && a->dtype == b->dtype &&
        !memcmp(a->stride, b->stride, sizeof a->stride))
        return 1;
    x = cv_read_new(&s->in[ia], a);
    y = x ? cv_read_new(&s->in[ib], b) : NULL;
    if (!x || !y) { free(x); *err = 1; return 0; }
    same = !memcmp(x, y, a->numel * sizeof *x);
    free(x);
    free(y);
    return same;
}

static int cv_t5_check(cv_t5_inputs *s, const textok_tensor_spec *specs, int n_specs, cv_src *src)
{
    char s1[256], s2[256];
    unsigned long long dropped_vals = 0;
    int i, m, problems = 0, dropped = 0;
    for (i = 0; i < n_specs; i++) {
        const textok_tensor_spec *sp = &specs[i];
        int which = 0, same = 1, d;
        cv_tensor *t = (cv_tensor *)cv_t5_find(s, sp->name, &which);
        if (i == 0) {   /* shared.weight, or its tied alias */
            int wb = 0, err = 0;
            cv_tensor *b = (cv_tensor *)cv_t5_find(s, "encoder.embed_tokens.weight", &wb);
            if (b) b->used = 1;
            if (t && b && !cv_t5_same(s, which, t, wb, b, &err)) {
                if (err) { fprintf(stderr, "convert: %s\n", cv_errbuf); problems++; continue; }
                fprintf(stderr, "convert: %s: 'shared.weight' and 'encoder.embed_tokens.weight' are both present and differ; "
                        "T5 ties them, so the encoder's embedding is ambiguous\n", s->in[which].path);
                problems++;
            }
            if (!t) { t = b; which = wb; }
            if (t && b && t != b) cv_info("note: 'encoder.embed_tokens.weight' is the tied alias of 'shared.weight' (equal): dropped\n");
            if (!t) {
                fprintf(stderr, "convert: %s: missing tensor 'shared.weight' (or 'encoder.embed_tokens.weight') %s\n",
                        s->in[0].path, cv_shape_str(s1, sizeof s1, sp->ndim, sp->shape));
                problems++;
                continue;
            }
        }
        if (!t) {
            fprintf(stderr, "convert: %s: missing tensor '%s' %s\n", s->n > 1 ? "the shards" : s->in[0].path, sp->name,
                    cv_shape_str(s1, sizeof s1, sp->ndim, sp->shape));
            problems++;
            continue;
        }
        t->used = 1;
        src[i].in = &s->in[which];
        src[i].t = t;
        if (t->ndim != sp->ndim) same = 0;
        for (d = 0; same && d < sp->ndim; d++) same = t->shape[d] == sp->shape[d];
        if (!same) {
            fprintf(stderr, "convert: %s: tensor '%s' has shape %s, the config needs %s\n", s->in[which].path, t->name,
                    cv_shape_str(s1, sizeof s1, t->ndim, t->shape), cv_shape_str(s2, sizeof s2, sp->ndim, sp->shape));
            problems++;
        }
        if (t->dtype < 0) {
            fprintf(stderr, "convert: %s: tensor '%s' has dtype %s; convert reads F32, F16 and BF16\n", s->in[which].path,
                    t->name, t->dtype_name);
            problems++;
        }
    }
    for (i = 0; i < s->n; i++)
        for (m = 0; m < s->in[i].n; m++) {
            const cv_tensor *t = &s->in[i].t[s->in[i].by_name[m]];
            if (t->used) continue;
            if (!strncmp(t->name, "decoder.", 8) || !strncmp(t->name, "lm_head.", 8)) {
                dropped++;
                dropped_vals += t->numel;
                continue;
            }
            if (cv_ignored(t->name)) {
                cv_info("note: skipping '%s' %s: a buffer, not a model parameter\n", t->name,
                        cv_shape_str(s1, sizeof s1, t->ndim, t->shape));
                continue;
            }
            fprintf(stderr, "convert: %s: unexpected tensor '%s' %s %s%s\n", s->in[i].path, t->name,
                    cv_shape_str(s1, sizeof s1, t->ndim, t->shape), t->dtype_name,
                    strstr(t->name, "relative_attention_bias") ? " (a position table beyond block 0: umT5, which textok does not implement)" : "");
            problems++;
        }
    if (dropped && !problems)
        cv_info("dropping %d decoder.*/lm_head.* tensor%s (%s values): the text encoder is the encoder half\n", dropped,
                dropped == 1 ? "" : "s", cv_commas(s1, sizeof s1, dropped_vals));
    return problems;
}

static const char *const cv_t5_components[CV_N_COMPONENTS] = { "shared.", "encoder." };

static int cv_t5_convert(const char *in_path, const char *out_path, const char *config_path)
{
    const char *kv[2 * 32];
    char desc[512], meta[1024];
    cv_t5_inputs s;
    cv_t5_json j;
    textok_t5_config cfg;
    textok_tensor_spec *specs = NULL;
    cv_src *src = NULL;
    int n_specs, n_meta, problems, rc = -1;
    memset(&j, 0, sizeof j);
    if (config_path && cv_t5_read_config(&j, config_path)) {
        fprintf(stderr, "convert: %s\n", cv_errbuf);
        return -1;
    }
    if (cv_t5_open(&s, in_path) || cv_t5_recognise(&s, &j, &cfg, desc, sizeof desc)) {
        fflush(stdout);
        fprintf(stderr, "convert: %s\n", cv_errbuf);
        goto done;
    }
    cv_info("%s\n", desc);
    n_specs = textok_t5_tensor_specs(&cfg, NULL, 0);
    if (n_specs <= 0 || !(specs = (textok_tensor_spec *)calloc((size_t)n_specs, sizeof *specs)) ||
        !(src = (cv_src *)calloc((size_t)n_specs, sizeof *src)) || textok_t5_tensor_specs(&cfg, specs, n_specs) != n_specs) {
        fflush(stdout);
        fprintf(stderr, "convert: cannot list the tensors of this config: %s\n", n_specs <= 0 ? textok_last_error() : "out of memory");
        goto done;
    }
    fflush(stdout);
    problems = cv_t5_check(&s, specs, n_specs, src);
    if (problems) {
        fprintf(stderr, "convert: %s: %d problem%s against the configuration inferred from it (listed above); nothing written\n",
                in_path, problems, problems == 1 ? "" : "s");
        goto done;
    }
    cv_report_counts(specs, n_specs, cv_t5_components);
    if ((n_meta = textok_t5_config_to_meta(&cfg, kv, 32, meta, sizeof meta)) < 0) {
        fprintf(stderr, "convert: cannot write the config as metadata: %s\n", textok_last_error());
        goto done;
    }
    cv_max_params = CV_MAX_PARAMS_T5;
    if (cv_write(out_path, specs, src, n_specs, kv, n_meta)) {
        fflush(stdout);
        fprintf(stderr, "convert: %s\n", cv_errbuf);
        goto done;
    }
    rc = 0;
done:
    free(specs);
    free(src);
    cv_t5_inputs_close(&s);
    return rc;
}

/* =============================================================================================
   Generators (architecture.md 4 and 7): the official DiT (models.py) and TiTok's MaskGIT
   generators (ImageBert: BERT names under "model."; UViTBert). The tensor names ARE the textok
   layout's, so this only recognises the family, infers the config from the shapes, checks every
   tensor against textok_dit_tensor_specs / textok_maskgit_tensor_specs and adds the config as
   metadata. A textok-layout file (safetensors with "textok.model" = "dit" / "maskgit" in its
   __metadata__, e.g. a DiT-T2I or a 1D-token DiT that train_generator wrote) keeps its config. */

enum { CV_GEN_NONE, CV_GEN_DIT, CV_GEN_BERT, CV_GEN_UVIT };

static int cv_gen_kind(const cv_input *in)
{
    if (cv_find(in, "x_embedder.proj.weight") || cv_find(in, "t_embedder.mlp.0.weight")) return CV_GEN_DIT;
    if (cv_find(in, "model.embeddings.word_embeddings.weight") || cv_any(in, "model.encoder.layer.", 1))
        return CV_GEN_BERT;
    if (cv_any(in, "in_blocks.", 1) || cv_find(in, "mid_block.attn.qkv.weight")) return CV_GEN_UVIT;
    return CV_GEN_NONE;
}

/* the published head counts (the files do not record them): DiT-XL/L 16, B 12, S 6; ImageBert
   768 and UViT 1024 both 16; any other width needs --heads */
static int cv_gen_heads(const cv_input *in, const char *family, int width, int given, const int *table, int *heads)
{
    int k;
    if (given > 0) {
        if (width % given)
            return cv_fail("%s: --heads %d does not divide the %s width %d", in->path, given, family, width);
        *heads = given;
        return 0;
    }
    for (k = 0; table[k]; k += 2)
        if (table[k] == width) {
            *heads = table[k + 1];
            return 0;
        }
    return cv_fail("%s: a %s of width %d is not a published size, so the number of attention heads is unknown "
                   "(the file does not record it): give --heads N", in->path, family, width);
}

/* config from a textok-layout file's metadata, if it has one for this kind; 1 = taken, 0 = none */
static int cv_gen_meta(const cv_input *in, const char *kind)
{
    const char *v;
    if (in->format != CV_FMT_SAFETENSORS) return 0;
    v = textok_st_meta(&in->st, "textok.model");
    return v && !strcmp(v, kind);
}

static int cv_dit_recognise(const cv_input *in, int heads, int seq_1d, textok_dit_config *c, char *desc, size_t size)
{
    static const int table[] = { 1152, 16, 1024, 16, 768, 12, 384, 6, 0, 0 };
    const cv_tensor *xe = cv_find(in, "x_embedder.proj.weight"), *pe = cv_find(in, "pos_embed");
    char sh[256];
    int T, side, out_rows, pp, rows;
    memset(c, 0, sizeof *c);
    if (cv_gen_meta(in, "dit")) {
        if (textok_dit_config_from_meta(c, &in->st))
            return cv_fail("%s: bad DiT metadata: %s", in->path, textok_last_error());
        snprintf(desc, size, "DiT (textok layout, config from its metadata)");
        goto describe;
    }
    if (!xe) return cv_fail("%s: a DiT without x_embedder.proj.weight: cannot infer its width", in->path);
    if (xe->ndim != 4 || xe->shape[2] != xe->shape[3] || xe->shape[0] <= 0 || xe->shape[1] <= 0 ||
        xe->shape[2] <= 0 || xe->shape[0] > (1 << 20) || xe->shape[1] > 4096 || xe->shape[2] > 64)
        return cv_fail("%s: tensor 'x_embedder.proj.weight' has shape %s; expected (hidden, in_channels, p, p)",
                       in->path, cv_shape_str(sh, sizeof sh, xe->ndim, xe->shape));
    c->hidden = (int)xe->shape[0];
    c->in_channels = (int)xe->shape[1];
    c->patch_size = (int)xe->shape[2];
    if (!pe) return cv_fail("%s: cannot infer the input size: tensor 'pos_embed' is missing", in->path);
    if (pe->ndim != 3 || pe->shape[0] != 1 || pe->shape[2] != c->hidden || pe->shape[1] <= 0 || pe->shape[1] > (1 << 24))
        return cv_fail("%s: tensor 'pos_embed' has shape %s; expected (1, tokens, %d) for hidden %d (from "
                       "x_embedder.proj.weight)", in->path, cv_shape_str(sh, sizeof sh, pe->ndim, pe->shape), c->hidden,
                       c->hidden);
    T = (int)pe->shape[1];
    if (seq_1d) {
        if (c->patch_size != 1)
            return cv_fail("%s: --dit-1d: a DiT over 1D tokens has patch size 1; x_embedder.proj.weight has %dx%d patches",
                           in->path, c->patch_size, c->patch_size);
        c->seq_1d = 1;
        c->input_size = T;
    } else {
        for (side = 1; side * side < T; side++) {}
        if (side * side != T)
            return cv_fail("%s: pos_embed has %d tokens, not a square number: not a DiT over 2D latents (a DiT over "
                           "1D tokens: --dit-1d)", in->path, T);
        c->input_size = side * c->patch_size;
    }
    if (cv_count(in, "blocks.", 4096, &c->depth) ||
        cv_dim(in, "blocks.0.mlp.fc1.weight", 2, 0, &c->mlp_hidden, "the MLP width") ||
        cv_dim(in, "final_layer.linear.weight", 2, 0, &out_rows, "the output channels") ||
        cv_gen_heads(in, "DiT", c->hidden, heads, table, &c->heads))
        return -1;
    if (!c->depth) return cv_fail("%s: a DiT without blocks.{i} tensors", in->path);
    pp = c->patch_size * c->patch_size;
    if (out_rows == pp * 2 * c->in_channels) c->learn_sigma = 1;
    else if (out_rows != pp * c->in_channels)
        return cv_fail("%s: final_layer.linear.weight has %d rows; expected p*p*C = %d or p*p*2C = %d (learned "
                       "sigma) for patch %d and %d input channels", in->path, out_rows, pp * c->in_channels,
                       2 * pp * c->in_channels, c->patch_size, c->in_channels);
    if (cv_find(in, "y_embedder.embedding_table.weight")) {
        if (cv_dim(in, "y_embedder.embedding_table.weight", 2, 0, &rows, "the number of classes")) return -1;
        if (rows < 2)
            return cv_fail("%s: y_embedder.embedding_table.weight has %d rows: expected num_classes + 1 (the "
                           "last is the null class)", in->path, rows);
        c->num_classes = rows - 1;
    } else if (cv_any(in, "y_embedder.y_proj.", 0) || cv_any(in, "blocks.0.cross_attn.", 0)) {
        return cv_fail("%s: a text-conditioned DiT (y_embedder.y_proj, cross_attn) without textok metadata: "
                       "its caption length is not in the tensors; DiT-T2I files come from textok "
                       "(build/train_generator) with their config", in->path);
    }
    /* the official 2D DiT runs on SD-VAE latents: its CFG guides 3 of the 4 channels (7.3) */
    if (!c->seq_1d && c->in_channels == 4) {
        c->guide_channels = 3;
        c->latent_scale = 0.18215f;
    } else {
        c->guide_channels = c->in_channels;
        c->latent_scale = 1.0f;
    }
    snprintf(desc, size, "DiT (official names)");
describe:
    if (textok_dit_config_check(c))
        return cv_fail("%s: the inferred DiT configuration is not valid: %s", in->path, textok_last_error());
    {
        size_t n = strlen(desc);
        n += (size_t)snprintf(desc + n, size - n, ", hidden %d, depth %d, %d heads, MLP %d, ", c->hidden, c->depth,
                              c->heads, c->mlp_hidden);
        if (c->seq_1d)
            n += (size_t)snprintf(desc + n, size - n, "1D: %d tokens x %d channels, ", c->input_size, c->in_channels);
        else
            n += (size_t)snprintf(desc + n, size - n, "2D latents %dx%d x %d channels, patch %d, ", c->input_size,
                                  c->input_size, c->in_channels, c->patch_size);
        if (c->num_classes) n += (size_t)snprintf(desc + n, size - n, "%d classes (+ null)", c->num_classes);
        else if (c->text_dim) n += (size_t)snprintf(desc + n, size - n, "text %d x %d", c->text_len, c->text_dim);
        else n += (size_t)snprintf(desc + n, size - n, "unconditional");
        if (n < size)
            snprintf(desc + n, size - n, ", %s, CFG on %d channel%s, latent scale %g",
                     c->learn_sigma ? "learned sigma" : "fixed sigma", c->guide_channels, c->guide_channels == 1 ? "" : "s",
                     (double)c->latent_scale);
    }
    return 0;
}

static int cv_maskgit_recognise(const cv_input *in, int kind, int heads, textok_maskgit_config *c, char *desc,
                                size_t size)
{
    static const int bert_table[] = { 768, 16, 0, 0 }, uvit_table[] = { 1024, 16, 0, 0 };
    int vocab, rows, n_in = 0, n_out = 0;
    memset(c, 0, sizeof *c);
    if (cv_gen_meta(in, "maskgit")) {
        if (textok_maskgit_config_from_meta(c, &in->st))
            return cv_fail("%s: bad MaskGIT metadata: %s", in->path, textok_last_error());
        snprintf(desc, size, "MaskGIT (textok layout, config from its metadata)");
    } else if (kind == CV_GEN_BERT) {
        c->arch = TEXTOK_MASKGIT_BERT;
        if (cv_dim(in, "model.embeddings.word_embeddings.weight", 2, 0, &vocab, "the vocabulary") ||
            cv_dim(in, "model.embeddings.word_embeddings.weight", 2, 1, &c->hidden, "the width") ||
            cv_dim(in, "model.embeddings.position_embeddings.weight", 2, 0, &rows, "the sequence length") ||
            cv_dim(in, "model.lm_head.weight", 2, 0, &c->codebook_size, "the codebook size") ||
            cv_count(in, "model.encoder.layer.", 4096, &c->depth) ||
            cv_dim(in, "model.encoder.layer.0.intermediate.dense.weight", 2, 0, &c->mlp_hidden, "the MLP width") ||
            cv_gen_heads(in, "ImageBert", c->hidden, heads, bert_table, &c->heads))
            return -1;
        c->seq_len = rows - 1;
        snprintf(desc, size, "MaskGIT ImageBert (TiTok's L-32/B-64 generator, BERT names under 'model.')");
    } else {
        c->arch = TEXTOK_MASKGIT_UVIT;
        if (cv_dim(in, "embeddings.weight", 2, 0, &vocab, "the vocabulary") ||
            cv_dim(in, "embeddings.weight", 2, 1, &c->hidden, "the width") ||
            cv_dim(in, "pos_embed", 3, 1, &rows, "the sequence length") ||
            cv_dim(in, "lm_head.weight", 2, 0, &c->codebook_size, "the codebook size") ||
            cv_count(in, "in_blocks.", 4096, &n_in) || cv_count(in, "out_blocks.", 4096, &n_out) ||
            cv_dim(in, "in_blocks.0.mlp.fc1.weight", 2, 0, &c->mlp_hidden, "the MLP width") ||
            cv_gen_heads(in, "UViT", c->hidden, heads, uvit_table, &c->heads))
            return -1;
        if (n_in != n_out || !n_in)
            return cv_fail("%s: a UViT has as many out_blocks as in_blocks (their outputs pair up as skips); this "
                           "file has %d in_blocks and %d out_blocks", in->path, n_in, n_out);
        if (!cv_find(in, "mid_block.attn.qkv.weight"))
            return cv_fail("%s: a UViT without mid_block (tensor 'mid_block.attn.qkv.weight' is missing)", in->path);
        c->depth = n_in + n_out;
        c->seq_len = rows - 1;
        snprintf(desc, size, "MaskGIT UViT (TiTok's S-128 generator)");
    }
    if (!cv_gen_meta(in, "maskgit")) {
        /* vocab = V (image tokens) + 1 (mask) + classes + 1 (null class) */
        c->num_classes = vocab - c->codebook_size - 2;
        if (c->seq_len < 1)
            return cv_fail("%s: the position table has %d rows; expected 1 + the token count (the class token "
                           "comes first)", in->path, rows);
        if (c->num_classes < 1)
            return cv_fail("%s: the token table has %d rows and lm_head predicts %d codes: expected codes + 1 (mask) + "
                           "classes + 1 (null class) rows, so at least %d", in->path, vocab, c->codebook_size,
                           c->codebook_size + 3);
    }
    if (textok_maskgit_config_check(c))
        return cv_fail("%s: the inferred MaskGIT configuration is not valid: %s", in->path, textok_last_error());
    {
        size_t n = strlen(desc);
        snprintf(desc + n, size - n, "\n  hidden %d, depth %d%s, %d heads, MLP %d, %d tokens over a codebook of %d, "
                 "%d classes (+ mask and null ids: vocabulary %d)", c->hidden, c->depth,
                 c->arch == TEXTOK_MASKGIT_UVIT ? " (+ mid block)" : "", c->heads, c->mlp_hidden, c->seq_len,
                 c->codebook_size, c->num_classes, c->codebook_size + c->num_classes + 2);
    }
    return 0;
}

static const char *const cv_dit_components[CV_N_COMPONENTS] = { "pos_embed", "x_embedder.", "t_embedder.",
                                                                 "y_embedder.", "blocks.", "final_layer." };
static const char *const cv_bert_components[CV_N_COMPONENTS] = { "model.embeddings.", "model.encoder.",
                                                                  "model.lm_head." };
static const char *const cv_uvit_components[CV_N_COMPONENTS] = { "pos_embed", "embeddings.", "in_blocks.",
                                                                  "mid_block.", "out_blocks.", "norm.", "lm_head." };

/* A DiT or MaskGIT checkpoint: recognise, check, write. Returns 0 or -1 (reported). */
static int cv_gen_convert(cv_input *in, int kind, const char *out_path, int heads, int seq_1d)
{
    const char *kv[2 * 64];
    char desc[1024], meta[4096];
    int n_specs, n_meta, problems, rc = -1;
    textok_dit_config dc;
    textok_maskgit_config mc;
    textok_tensor_spec *specs = NULL;
    cv_src *src = NULL;
    if (kind == CV_GEN_DIT ? cv_dit_recognise(in, heads, seq_1d, &dc, desc, sizeof desc)
                           : cv_maskgit_recognise(in, kind, heads, &mc, desc, sizeof desc)) {
        fflush(stdout);
        fprintf(stderr, "convert: %s\n", cv_errbuf);
        return -1;
    }
    if (seq_1d && kind != CV_GEN_DIT) {
        fflush(stdout);
        fprintf(stderr, "convert: %s: --dit-1d applies to DiT checkpoints; this is a MaskGIT generator\n", in->path);
        return -1;
    }
    cv_info("%s\n", desc);
    n_specs = kind == CV_GEN_DIT ? textok_dit_tensor_specs(&dc, NULL, 0) : textok_maskgit_tensor_specs(&mc, NULL, 0);
    if (n_specs <= 0 || !(specs = (textok_tensor_spec *)calloc((size_t)n_specs, sizeof *specs)) ||
        !(src = (cv_src *)calloc((size_t)n_specs, sizeof *src)) ||
        (kind == CV_GEN_DIT ? textok_dit_tensor_specs(&dc, specs, n_specs)
                            : textok_maskgit_tensor_specs(&mc, specs, n_specs)) != n_specs) {
        fflush(stdout);
        fprintf(stderr, "convert: cannot list the tensors of this config: %s\n",
                n_specs <= 0 ? textok_last_error() : "out of memory");
        goto done;
    }
    fflush(stdout);
    problems = cv_check(in, specs, n_specs);
    if (problems) {
        fprintf(stderr, "convert: %s: %d problem%s against the configuration inferred from it "
                "(listed above); nothing written\n", in->path, problems, problems == 1 ? "" : "s");
        goto done;
    }
    n_meta = kind == CV_GEN_DIT ? textok_dit_config_to_meta(&dc, kv, 64, meta, sizeof meta)
                                : textok_maskgit_config_to_meta(&mc, kv, 64, meta, sizeof meta);
    rc = cv_write_single(in, specs, src, n_specs, kind == CV_GEN_DIT ? cv_dit_components
                         : kind == CV_GEN_BERT ? cv_bert_components : cv_uvit_components, kv, n_meta, out_path);
done:
    free(specs);
    free(src);
    return rc;
}

/* =============================================================================================
   main */

/* --f16: a textok-layout file (any model: its __metadata__ has "textok.model") with every tensor
   stored as F16 and the metadata unchanged: how the shipped weights (weights/emoji/) are made from
   the F32 files the trainers export. Values beyond F16's range are refused, naming the tensor. */
static int cv_to_f16(const char *in_path, const char *out_path)
{
    textok_safetensors st;
    textok_st_entry *e = NULL;
    float **buf = NULL;
    const char **kv = NULL;
    size_t total = 0, j;
    int i, rc = 1;
    if (textok_st_open(&st, in_path) != TEXTOK_OK) { fprintf(stderr, "convert: %s\n", textok_last_error()); return 1; }
    if (!textok_st_meta(&st, "textok.model")) {
        fprintf(stderr, "convert: %s: no \"textok.model\" in __metadata__: --f16 takes a textok-layout file (convert it first)\n",
                in_path);
        goto done;
    }
    e = (textok_st_entry *)calloc((size_t)st.n_tensors + 1, sizeof *e);
    buf = (float **)calloc((size_t)st.n_tensors + 1, sizeof *buf);
    kv = (const char **)calloc(2 * (size_t)st.n_meta + 1, sizeof *kv);
    if (!e || !buf || !kv) { fprintf(stderr, "convert: out of memory\n"); goto done; }
    for (i = 0; i < st.n_tensors; i++) {
        const textok_st_tensor *t = &st.tensors[i];
        int d;
        if (t->dtype == TEXTOK_DTYPE_U8) { fprintf(stderr, "convert: %s: tensor '%s' is U8 (data, not weights)\n", in_path, t->name); goto done; }
        if (!(buf[i] = (float *)malloc(t->numel ? t->numel * sizeof(float) : 1))) { fprintf(stderr, "convert: out of memory\n"); goto done; }
        if (textok_st_read_f32(&st, t, buf[i], t->numel) != TEXTOK_OK) { fprintf(stderr, "convert: %s\n", textok_last_error()); goto done; }
        for (j = 0; j < t->numel; j++)
            if (!(fabsf(buf[i][j]) <= 65504.0f)) {
                fprintf(stderr, "convert: %s: tensor '%s' holds %g at index %zu, outside F16's range\n", in_path, t->name,
                        (double)buf[i][j], j);
                goto done;
            }
        e[i].name = t->name; e[i].data = buf[i]; e[i].ndim = t->ndim;
        for (d = 0; d < t->ndim; d++) e[i].shape[d] = t->shape[d];
        total += t->numel;
    }
    for (i = 0; i < st.n_meta; i++) { kv[2 * i] = st.meta_keys[i]; kv[2 * i + 1] = st.meta_values[i]; }
    if (textok_st_save(out_path, e, st.n_tensors, kv, st.n_meta, TEXTOK_DTYPE_F16) != TEXTOK_OK) {
        fprintf(stderr, "convert: %s\n", textok_last_error());
        goto done;
    }
    if (!cv_quiet)
        printf("wrote %s: %d tensors, F16, %zu parameters, __metadata__ of %s (%d keys)\n", out_path, st.n_tensors, total,
               in_path, st.n_meta);
    rc = 0;
done:
    if (buf) for (i = 0; i < st.n_tensors; i++) free(buf[i]);
    free(buf); free(e); free((void *)kv);
    textok_st_close(&st);
    return rc;
}

static void cv_usage(FILE *f)
{
    fprintf(f,
            "usage: convert IN OUT.safetensors [--l2-norm 0|1] [--heads E,D] [--quiet]\n"
            "       convert GENERATOR OUT.safetensors [--heads N] [--dit-1d] [--quiet]\n"
            "       convert --lpips VGG16 LIN OUT.safetensors [--quiet]\n"
            "       convert --lpips LPIPS OUT.safetensors [--quiet]\n"
            "       convert --t5 IN OUT.safetensors [--t5-config config.json] [--quiet]\n"
            "       convert --f16 IN.safetensors OUT.safetensors [--quiet]\n"
            "  Reads checkpoints as published (PyTorch files written by torch.save, zip or the legacy\n"
            "  format before torch 1.6, or .safetensors; F32/F16/BF16), checks every tensor and writes\n"
            "  the textok layout: F32 safetensors with the config in __metadata__. Nothing is written\n"
            "  if anything is wrong; every problem is listed.\n"
            "  IN             a TiTok, TA-TiTok or TexTok tokenizer: the family is recognised from the\n"
            "                 tensor names (text guidance tensors: TA-TiTok / TexTok with text)\n"
            "  --heads E,D    attention heads of the encoder and decoder (default: width / 64, as\n"
            "                 every published TiTok; the file does not record them)\n"
            "  GENERATOR      a DiT (the official DiT-XL-2-256.pt / -512.pt state_dicts, or a train.py\n"
            "                 checkpoint: its 'ema' weights are taken) or one of TiTok's MaskGIT\n"
            "                 generators (ImageBert L-32/B-64 with 'model.' BERT names, UViT S-128),\n"
            "                 recognised from the names; the config comes from the shapes\n"
            "  --heads N      a generator's attention heads (default: the published count for the\n"
            "                 width: DiT 1152/1024 16, 768 12, 384 6; ImageBert 768 16; UViT 1024 16)\n"
            "  --dit-1d       a DiT over 1D token sequences (patch 1, 1D positions) without textok\n"
            "                 metadata; otherwise a DiT runs over 2D latents, and a 4-channel one is\n"
            "                 taken as SD-VAE latents (CFG on 3 channels, scale 0.18215, as official)\n"
            "  --l2-norm 0|1  TiTok VQ only: L2-normalise codes before the search (default: on for\n"
            "                 the legacy L-32/B-64/S-128 family, off otherwise)\n"
            "  --lpips        the LPIPS perceptual loss (VGG16): either torchvision's vgg16 state_dict\n"
            "                 (vgg16-397923af.pth; its classifier is ignored) and LPIPS's lin weights\n"
            "                 (lpips/weights/v0.1/vgg.pth), or one LPIPS(net='vgg') state_dict\n"
            "  --t5           a Hugging Face T5 / flan-T5 checkpoint (model.safetensors, pytorch_model.bin,\n"
            "                 or model.safetensors.index.json with its shards beside it); only the\n"
            "                 encoder is kept (the text encoder): decoder.* and lm_head.* are dropped\n"
            "  --t5-config F  the model's config.json: max_distance, eps and the activation (otherwise\n"
            "                 128, 1e-6 and tanh GELU / ReLU as the tensors say); its sizes must agree\n"
            "  --quiet        print nothing on success\n"
            "  Exit status: 0 written, 1 bad input, 2 bad command line.\n");
}

static void cv_describe_input(const cv_input *in)
{
    const char *seen[16];
    int counts[16] = { 0 }, n_seen = 0, i, j;
    char a[32];
    size_t total = 0;
    for (i = 0; i < in->n; i++) {
        for (j = 0; j < n_seen && strcmp(seen[j], in->t[i].dtype_name); j++) {}
        if (j == n_seen && n_seen < 16) seen[n_seen++] = in->t[i].dtype_name;
        if (j < 16) counts[j]++;
        total += in->t[i].numel;
    }
    cv_info("read %s: %s", in->path,
            in->format == CV_FMT_SAFETENSORS ? "safetensors"
            : in->format == CV_FMT_TORCH_ZIP ? "PyTorch zip (torch.save)"
                                             : "PyTorch legacy pickle (torch.save before torch 1.6)");
    if (in->format == CV_FMT_TORCH_ZIP) cv_info(", folder '%.*s'", (int)strlen(in->prefix) - 1, in->prefix);
    if (in->wrapper) cv_info(", state_dict under '%s'", in->wrapper);
    cv_info(", %d tensors, %s values, dtype", in->n, cv_commas(a, sizeof a, total));
    for (j = 0; j < n_seen; j++) {
        if (n_seen == 1) cv_info(" %s", seen[j]);
        else cv_info("%s %s x%d", j ? "," : "", seen[j], counts[j]);
    }
    cv_info("\n");
}

/* A TiTok checkpoint: recognise, check, write. Returns 0 or -1 (reported). */
static int cv_titok_convert(cv_input *in, const char *out_path, int l2, const int heads[2])
{
    const char *kv[2 * 64];
    char desc[1024], meta[8192];
    int n_specs, n_meta, problems, rc = -1;
    textok_titok_config cfg;
    textok_tensor_spec *specs = NULL;
    cv_src *src = NULL;
    if (cv_recognise(in, l2, heads, &cfg, desc, sizeof desc)) {
        fflush(stdout);
        fprintf(stderr, "convert: %s\n", cv_errbuf);
        return -1;
    }
    cv_info("%s\n", desc);
    n_specs = textok_titok_tensor_specs(&cfg, NULL, 0);
    if (n_specs <= 0 || !(specs = (textok_tensor_spec *)calloc((size_t)n_specs, sizeof *specs)) ||
        !(src = (cv_src *)calloc((size_t)n_specs, sizeof *src)) ||
        textok_titok_tensor_specs(&cfg, specs, n_specs) != n_specs) {
        fflush(stdout);
        fprintf(stderr, "convert: cannot list the tensors of this config: %s\n",
                n_specs <= 0 ? textok_last_error() : "out of memory");
        goto done;
    }
    fflush(stdout);   /* the report so far, before any problem lines on stderr */
    problems = cv_check(in, specs, n_specs);
    if (problems) {
        fprintf(stderr, "convert: %s: %d problem%s against the configuration inferred from it "
                "(listed above); nothing written\n", in->path, problems, problems == 1 ? "" : "s");
        goto done;
    }
    n_meta = textok_titok_config_to_meta(&cfg, kv, 64, meta, sizeof meta);
    rc = cv_write_single(in, specs, src, n_specs, cv_titok_components, kv, n_meta, out_path);
done:
    free(specs);
    free(src);
    return rc;
}

#ifndef CV_NO_MAIN   /* tests/fuzz/ includes this file for its readers */
int main(int argc, char **argv)
{
    const char *pos[3] = { NULL, NULL, NULL }, *t5_config = NULL;
    int n_pos = 0, l2 = -1, lpips = 0, t5 = 0, f16 = 0, i, n_in, rc = 1, heads[2] = { 0, 0 }, n_heads = 0, dit_1d = 0, kind;
    cv_input in[2];

    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--l2-norm")) {
            if (i + 1 >= argc || (strcmp(argv[i + 1], "0") && strcmp(argv[i + 1], "1"))) {
                fprintf(stderr, "convert: --l2-norm takes 0 or 1\n");
                cv_usage(stderr);
                return 2;
            }
            l2 = argv[++i][0] - '0';
        } else if (!strcmp(a, "--heads")) {
            char tail = 0;
            if (i + 1 < argc && sscanf(argv[i + 1], "%d%c", &heads[0], &tail) == 1) {
                heads[1] = heads[0];   /* one count: a generator's, or both TiTok stacks' */
                n_heads = 1;
            } else if (i + 1 < argc && sscanf(argv[i + 1], "%d,%d%c", &heads[0], &heads[1], &tail) == 2) {
                n_heads = 2;
            }
            if (!n_heads || heads[0] < 1 || heads[1] < 1 || heads[0] > 4096 || heads[1] > 4096) {
                fprintf(stderr, "convert: --heads takes N (a generator) or E,D (a TiTok encoder and decoder): head "
                        "counts in [1, 4096], e.g. 16 or 12,16\n");
                cv_usage(stderr);
                return 2;
            }
            i++;
        } else if (!strcmp(a, "--dit-1d")) {
            dit_1d = 1;
        } else if (!strcmp(a, "--lpips")) {
            lpips = 1;
        } else if (!strcmp(a, "--t5")) {
            t5 = 1;
        } else if (!strcmp(a, "--f16")) {
            f16 = 1;
        } else if (!strcmp(a, "--t5-config")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "convert: --t5-config takes the model's config.json\n");
                cv_usage(stderr);
                return 2;
            }
            t5_config = argv[++i];
        } else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
            cv_quiet = 1;
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            cv_usage(stdout);
            return 0;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "convert: unknown option '%s'\n", a);
            cv_usage(stderr);
            return 2;
        } else if (n_pos < 3) {
            pos[n_pos++] = a;
        } else {
            fprintf(stderr, "convert: too many arguments ('%s')\n", a);
            cv_usage(stderr);
            return 2;
        }
    }
    if (f16) {
        if (n_pos != 2 || t5 || lpips || l2 >= 0 || n_heads || dit_1d) {
            fprintf(stderr, "convert: --f16 takes IN and OUT only (a textok-layout file to store as F16)\n");
            cv_usage(stderr);
            return 2;
        }
        return cv_to_f16(pos[0], pos[1]) ? 1 : 0;
    }
    if (t5_config && !t5) {
        fprintf(stderr, "convert: --t5-config goes with --t5\n");
        cv_usage(stderr);
        return 2;
    }
    if (t5 && (lpips || l2 >= 0)) {
        fprintf(stderr, "convert: --t5 converts a T5 checkpoint; %s does not apply\n", lpips ? "--lpips" : "--l2-norm");
        cv_usage(stderr);
        return 2;
    }
    if (t5) {
        if (n_pos != 2) {
            fprintf(stderr, "convert: --t5 expects IN and OUT, got %d file argument%s\n", n_pos, n_pos == 1 ? "" : "s");
            cv_usage(stderr);
            return 2;
        }
        return cv_t5_convert(pos[0], pos[1], t5_config) ? 1 : 0;
    }
    if (lpips && l2 >= 0) {
        fprintf(stderr, "convert: --l2-norm applies to TiTok checkpoints, not to --lpips\n");
        cv_usage(stderr);
        return 2;
    }
    if (!lpips && n_pos != 2) {
        if (n_pos == 3)
            fprintf(stderr, "convert: too many arguments ('%s'): IN and OUT, or --lpips VGG16 LIN OUT\n", pos[2]);
        else
            fprintf(stderr, "convert: expected IN and OUT, got %d file argument%s\n", n_pos, n_pos == 1 ? "" : "s");
        cv_usage(stderr);
        return 2;
    }
    if (lpips && n_pos < 2) {
        fprintf(stderr, "convert: --lpips expects VGG16 LIN OUT or LPIPS OUT, got %d file argument%s\n", n_pos,
                n_pos == 1 ? "" : "s");
        cv_usage(stderr);
        return 2;
    }
    n_in = n_pos - 1;
    memset(in, 0, sizeof in);
    for (i = 0; i < n_in; i++) {
        if (cv_input_open(&in[i], pos[i])) {
            fflush(stdout);
            fprintf(stderr, "convert: %s\n", cv_errbuf);
            goto done;
        }
        cv_describe_input(&in[i]);
    }
    kind = lpips ? CV_GEN_NONE : cv_gen_kind(&in[0]);
    if (kind != CV_GEN_NONE && (l2 >= 0 || n_heads == 2)) {
        fprintf(stderr, "convert: %s is a %s generator: %s applies to TiTok tokenizers\n", pos[0],
                kind == CV_GEN_DIT ? "DiT" : "MaskGIT", l2 >= 0 ? "--l2-norm" : "--heads E,D (two counts)");
        goto done;
    }
    if (dit_1d && kind != CV_GEN_DIT) {
        fprintf(stderr, "convert: --dit-1d applies to DiT checkpoints; %s is not one\n", pos[0]);
        goto done;
    }
    if (lpips) rc = cv_lpips_convert(in, n_in, pos[n_in]) ? 1 : 0;
    else if (kind != CV_GEN_NONE) rc = cv_gen_convert(&in[0], kind, pos[1], n_heads ? heads[0] : 0, dit_1d) ? 1 : 0;
    else rc = cv_titok_convert(&in[0], pos[1], l2, heads) ? 1 : 0;
done:
    for (i = 0; i < n_in; i++) cv_input_close(&in[i]);
    return rc;
}
#endif /* CV_NO_MAIN */
