/* textok.h - v0.1.0 - language-guided 1D image tokenization (TexTok, TiTok) in plain C
                      no warranty implied; use at your own risk. See end of file for license.

   Do this:
      #define TEXTOK_IMPLEMENTATION
   before you include this file in *one* C or C++ file to create the implementation.
   Every other file just does #include "textok.h".

   WHAT IT IS
      A reference implementation of the pieces that TexTok/TiTok tokenizers and their generators
      are built from: a small table of numerical kernels (forward AND backward), a CPU reference
      for every kernel, a fast CPU version beside it, a checker that compares any two kernel tables,
      an explicit RNG, and strict readers/writers for .safetensors and .npy files. Models, losses
      and training are built on top of the kernel table only, so a GPU table (textok_cuda.cu) runs
      the same code.

   QUICK USAGE
      textok_kernels ref  = textok_cpu_ref_kernels();   // naive loops: the reference
      textok_kernels fast = textok_cpu_kernels(0);      // BLAS / blocked / threaded; 0 = default threads
      fast.matmul_forward(&fast, out, a, b, bias, &dims);

      int fails = textok_kernels_compare(&ref, &fast, 1234, print_row, NULL);  // self-check

      textok_safetensors st;
      if (textok_st_open(&st, "model.safetensors") != TEXTOK_OK)
          fprintf(stderr, "%s\n", textok_last_error());
      const textok_st_tensor *t = textok_st_find(&st, "encoder.ln_post.weight");
      textok_st_read_f32(&st, t, dst, n);              // F32/F16/BF16 -> F32
      textok_st_close(&st);

   DATA CONVENTIONS
      Every tensor is a contiguous row-major float32 array; shapes are written as (dim0, dim1, ...)
      with the last dimension fastest. Images are NCHW, convolution weights OIHW, linear weights
      (out, in) as in PyTorch. Letters used in shape comments:
         B batch, T sequence length, C channels, H heads (or height in conv code), W width,
         N rows, K codebook size or inner GEMM dimension, D code dimension, V classes.

   COMPILE-TIME OPTIONS  (set where noted before including the header)
      TEXTOK_STATIC          all functions static to the implementing file (set where the
                             implementation is; the declarations then also become static).
      TEXTOK_USE_BLAS        matmul/conv/attention call cblas_sgemm (implementing file only;
                             link -lopenblas or another CBLAS). Without it a cache-blocked C GEMM
                             is used.
      _OPENMP                set by the compiler under -fopenmp; without it everything runs on one
                             thread and the pragmas are ignored.
      TEXTOK_NO_STDIO        no file functions (textok_st_open, textok_npy_*, writers); the
                             memory-based readers remain (implementing file only).
      TEXTOK_MALLOC(sz) / TEXTOK_REALLOC(p,sz) / TEXTOK_FREE(p)
                             define all three or none (implementing file only).
      TEXTOK_ASSERT(x)       internal invariants only (programmer errors, never bad input);
                             defaults to assert(x).

   ERRORS
      Functions that can fail return an int status: TEXTOK_OK (0) or a negative TEXTOK_ERR_*
      code. The message that goes with the last failure on the calling thread, naming the file,
      tensor and the expectation, is textok_last_error(). The library never calls exit() or
      abort() and never prints; bad input is always an error return, never a crash.

   THREADS
      textok_cpu_kernels(n): n threads for our OpenMP loops and for OpenBLAS; n = 0 picks
      $TEXTOK_THREADS if set, else omp_get_max_threads(). BLAS is never called from inside one of
      our OpenMP parallel regions (Debian's OpenBLAS is the pthreads build; nesting the two pools
      oversubscribes the cores). Results do not depend on the thread count except where BLAS
      chooses its own summation order.

   TABLE OF CONTENTS (implementation, in data-flow order)
      1. Platform: allocator, errors, threads, timer
      2. RNG: MT19937 (torch-compatible uniform) + Box-Muller normal
      3. Files: a strict JSON subset, safetensors read/write, npy read/write
      4. GEMM: naive reference, cache-blocked fallback, BLAS
      5. Kernels, one subsection per op: naive reference, then fast version; forward, then backward
      6. The CPU kernel tables
      7. textok_kernels_compare: checking one table against another

   REVISION HISTORY
      0.1.0 (2026-11-21)  kernel table with CPU reference and fast path, kernels_compare,
                          safetensors/npy I/O, RNG.
*/

#ifndef TEXTOK_INCLUDE_TEXTOK_H
#define TEXTOK_INCLUDE_TEXTOK_H

#include <stddef.h>
#include <stdint.h>

#define TEXTOK_VERSION_MAJOR 0
#define TEXTOK_VERSION_MINOR 1
#define TEXTOK_VERSION_PATCH 0
#define TEXTOK_VERSION_STRING "0.1.0"

#ifndef TEXTOKDEF
#ifdef TEXTOK_STATIC
#if defined(__GNUC__) || defined(__clang__)
#define TEXTOKDEF static __attribute__((unused))   /* a file may use only some of them */
#else
#define TEXTOKDEF static
#endif
#else
#define TEXTOKDEF extern
#endif
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------------
   Status codes and errors */
enum {
    TEXTOK_OK = 0,
    TEXTOK_ERR_IO = -1,          /* cannot open/read/write/rename a file */
    TEXTOK_ERR_FORMAT = -2,      /* the bytes are not what the format says they must be */
    TEXTOK_ERR_SHAPE = -3,       /* a shape, dtype or size does not match the expectation */
    TEXTOK_ERR_NOMEM = -4,       /* an allocation failed */
    TEXTOK_ERR_ARG = -5,         /* a bad argument from the caller */
    TEXTOK_ERR_NOT_FOUND = -6,   /* a named tensor or key is absent */
    TEXTOK_ERR_UNSUPPORTED = -7  /* valid input that this build cannot handle (dtype, version) */
};
TEXTOKDEF const char *textok_version(void);
/* Message for the last failure on this thread ("" if none). Valid until the next failing call. */
TEXTOKDEF const char *textok_last_error(void);
TEXTOKDEF void        textok_clear_error(void);

/* ---------------------------------------------------------------------------------------------
   RNG: explicit state, never seeded from time. MT19937 seeded like torch.manual_seed(seed);
   textok_rng_uniform reproduces torch.rand's float stream on the CPU generator. */
typedef struct textok_rng {
    uint32_t mt[624];
    int      index;
    int      has_spare;   /* Box-Muller produces normals in pairs */
    double   spare;
} textok_rng;
TEXTOKDEF void     textok_rng_seed(textok_rng *r, uint64_t seed);
TEXTOKDEF uint32_t textok_rng_u32(textok_rng *r);
TEXTOKDEF float    textok_rng_uniform(textok_rng *r);              /* [0, 1), 24-bit as torch.rand */
TEXTOKDEF float    textok_rng_normal(textok_rng *r);               /* N(0, 1) */
TEXTOKDEF void     textok_rng_fill_uniform(textok_rng *r, float *x, size_t n, float lo, float hi);
TEXTOKDEF void     textok_rng_fill_normal(textok_rng *r, float *x, size_t n, float mean, float std);

/* ---------------------------------------------------------------------------------------------
   Kernel table. A backend is a struct of function pointers (NULL = not provided) plus its own
   state. Every kernel takes the table itself first (for the thread count, a BLAS/cuBLAS handle,
   ...). All pointers passed to kernels point into memory obtained from the same table's alloc.
   Backward kernels ACCUMULATE (+=) into every gradient they are given (weights and inputs alike),
   so a caller zeroes gradients once; a NULL gradient pointer means "not needed". */
typedef struct textok_kernels textok_kernels;

/* out[b] (M,N) = op(A[b]) (M,K) . op(B[b]) (K,N) + bias (N); b < batch, each operand contiguous.
   op(A) = A (M,K) when trans_a = 0, A^T with A stored (K,M) when trans_a = 1; likewise B is
   stored (K,N) or, when trans_b = 1, (N,K) - the layout of a PyTorch Linear weight. */
typedef struct textok_matmul_dims { int batch, M, N, K, trans_a, trans_b; } textok_matmul_dims;

/* Multi-head scaled-dot-product attention on (B,T,C) activations: head h uses channels
   [h*C/H, (h+1)*C/H). scale is usually 1/sqrt(C/H). */
typedef struct textok_attention_dims { int B, Tq, Tk, C, H; float scale; } textok_attention_dims;

/* conv2d, NCHW input (B,C,H,W), OIHW weight (OC,C,KH,KW), symmetric zero padding. Output
   (B,OC,OH,OW) with OH = (H + 2*pad - KH)/stride + 1, likewise OW. */
typedef struct textok_conv2d_dims { int B, C, H, W, OC, KH, KW, stride, pad; } textok_conv2d_dims;

/* AdamW exactly as torch.optim.AdamW: p -= lr*wd*p; m,v moments; bias-corrected step.
   Hyperparameters are doubles, as Python floats are in PyTorch: 1 - beta2 is then formed in
   double and rounded once, which is what makes the moments agree with torch to the last bits. */
typedef struct textok_adamw_params { double lr, beta1, beta2, eps, weight_decay; } textok_adamw_params;

struct textok_kernels {
    const char *name;
    int   n_threads;       /* threads for CPU loops/BLAS (CPU tables); free for other backends */
    void *state;           /* backend-owned state (e.g. a cuBLAS handle); NULL for the CPU */

    /* memory: a GPU table hands out device memory here; the CPU uses the allocator macros */
    void *(*alloc)(const textok_kernels *k, size_t bytes);           /* NULL on failure */
    void  (*free)(const textok_kernels *k, void *ptr);
    int   (*to_device)(const textok_kernels *k, void *dst, const void *host_src, size_t bytes);
    int   (*to_host)(const textok_kernels *k, void *host_dst, const void *src, size_t bytes);

    /* matmul: see textok_matmul_dims. bias may be NULL. */
    void (*matmul_forward)(const textok_kernels *k, float *out, const float *a, const float *b,
                           const float *bias, const textok_matmul_dims *d);
    void (*matmul_backward)(const textok_kernels *k, float *da, float *db, float *dbias,
                            const float *dout, const float *a, const float *b,
                            const textok_matmul_dims *d);

    /* layernorm over the last dim: inp (N,C); weight, bias (C) or NULL (no affine, as in DiT);
       mean, rstd (N) are saved for backward (may be NULL in inference). Biased variance. */
    void (*layernorm_forward)(const textok_kernels *k, float *out, float *mean, float *rstd,
                              const float *inp, const float *weight, const float *bias,
                              int N, int C, float eps);
    void (*layernorm_backward)(const textok_kernels *k, float *dinp, float *dweight, float *dbias,
                               const float *dout, const float *inp, const float *weight,
                               const float *mean, const float *rstd, int N, int C);

    /* RMSNorm (T5): out = inp * rsqrt(mean(inp^2) + eps) * weight; rstd (N) saved, may be NULL */
    void (*rmsnorm_forward)(const textok_kernels *k, float *out, float *rstd, const float *inp,
                            const float *weight, int N, int C, float eps);
    void (*rmsnorm_backward)(const textok_kernels *k, float *dinp, float *dweight, const float *dout,
                             const float *inp, const float *weight, const float *rstd, int N, int C);

    /* GELU: approx_tanh = 0 is the exact erf form (nn.GELU()), 1 the tanh form (DiT) */
    void (*gelu_forward)(const textok_kernels *k, float *out, const float *inp, size_t n,
                         int approx_tanh);
    void (*gelu_backward)(const textok_kernels *k, float *dinp, const float *dout, const float *inp,
                          size_t n, int approx_tanh);
    void (*silu_forward)(const textok_kernels *k, float *out, const float *inp, size_t n);
    void (*silu_backward)(const textok_kernels *k, float *dinp, const float *dout, const float *inp,
                          size_t n);

    /* softmax over the last dim of (rows, cols); backward uses the saved output */
    void (*softmax_forward)(const textok_kernels *k, float *out, const float *inp, int rows, int cols);
    void (*softmax_backward)(const textok_kernels *k, float *dinp, const float *dout,
                             const float *out, int rows, int cols);

    /* multi-head attention: q (B,Tq,C), key/v (B,Tk,C) -> out (B,Tq,C); lse (B,H,Tq) is the
       row log-sum-exp saved for backward (backward recomputes scores from it; no (T,T) matrix
       is kept). bias (H,Tq,Tk) is added to the scaled scores (broadcast over B) or NULL.
       key_mask (B,Tk): nonzero = this key may be attended, NULL = all; a query whose keys are
       all masked gets a zero output. work: textok_attention_work_floats(d) floats. */
    void (*attention_forward)(const textok_kernels *k, float *out, float *lse, const float *q,
                              const float *key, const float *v, const float *bias,
                              const unsigned char *key_mask, const textok_attention_dims *d,
                              float *work);
    void (*attention_backward)(const textok_kernels *k, float *dq, float *dkey, float *dv,
                               float *dbias, const float *dout, const float *q, const float *key,
                               const float *v, const float *bias, const unsigned char *key_mask,
                               const float *out, const float *lse,
                               const textok_attention_dims *d, float *work);

    /* residual add: out = a + b (n) */
    void (*add_forward)(const textok_kernels *k, float *out, const float *a, const float *b, size_t n);
    void (*add_backward)(const textok_kernels *k, float *da, float *db, const float *dout, size_t n);

    /* adaLN (DiT): modulate out = inp * (1 + scale[b]) + shift[b]; inp (B,T,C), shift/scale (B,C) */
    void (*modulate_forward)(const textok_kernels *k, float *out, const float *inp,
                             const float *shift, const float *scale, int B, int T, int C);
    void (*modulate_backward)(const textok_kernels *k, float *dinp, float *dshift, float *dscale,
                              const float *dout, const float *inp, const float *scale,
                              int B, int T, int C);
    /* adaLN gated residual: out = resid + gate[b] * inp; resid, inp (B,T,C), gate (B,C) */
    void (*gate_forward)(const textok_kernels *k, float *out, const float *resid, const float *inp,
                         const float *gate, int B, int T, int C);
    void (*gate_backward)(const textok_kernels *k, float *dresid, float *dinp, float *dgate,
                          const float *dout, const float *inp, const float *gate,
                          int B, int T, int C);

    /* conv2d, see textok_conv2d_dims; bias (OC) or NULL. work: textok_conv2d_work_floats(d) */
    void (*conv2d_forward)(const textok_kernels *k, float *out, const float *inp, const float *weight,
                           const float *bias, const textok_conv2d_dims *d, float *work);
    void (*conv2d_backward)(const textok_kernels *k, float *dinp, float *dweight, float *dbias,
                            const float *dout, const float *inp, const float *weight,
                            const textok_conv2d_dims *d, float *work);

    /* groupnorm: inp (B,C,HW), G groups, weight/bias (C) or NULL; mean, rstd (B,G) saved */
    void (*groupnorm_forward)(const textok_kernels *k, float *out, float *mean, float *rstd,
                              const float *inp, const float *weight, const float *bias,
                              int B, int C, int HW, int G, float eps);
    void (*groupnorm_backward)(const textok_kernels *k, float *dinp, float *dweight, float *dbias,
                               const float *dout, const float *inp, const float *weight,
                               const float *mean, const float *rstd, int B, int C, int HW, int G);

    /* nearest upsampling by an integer factor: inp (BC,H,W) -> out (BC,H*f,W*f) */
    void (*upsample_forward)(const textok_kernels *k, float *out, const float *inp,
                             int BC, int H, int W, int factor);
    void (*upsample_backward)(const textok_kernels *k, float *dinp, const float *dout,
                              int BC, int H, int W, int factor);

    /* nearest codebook entry: idx[i] = argmin_j |z_i - e_j|^2 for z (N,D), codebook (K,D),
       through the expanded form |z|^2 + |e|^2 - 2 z.e (a GEMM), ties to the lowest index.
       dist (N) receives the minimum squared distance, or NULL. work: textok_codebook_work_floats */
    void (*codebook_search)(const textok_kernels *k, int32_t *idx, float *dist, const float *z,
                            const float *codebook, int N, int K, int D, float *work);

    /* softmax cross-entropy per row, as F.cross_entropy(reduction='none', label_smoothing=ls):
       logits (N,V), targets (N) with a negative target = ignored (loss 0, no gradient);
       losses (N); probs (N,V) saved for backward. backward: dlogits += dlosses[i] * d loss_i. */
    void (*cross_entropy_forward)(const textok_kernels *k, float *losses, float *probs,
                                  const float *logits, const int32_t *targets, int N, int V,
                                  float label_smoothing);
    void (*cross_entropy_backward)(const textok_kernels *k, float *dlogits, const float *dlosses,
                                   const float *probs, const int32_t *targets, int N, int V,
                                   float label_smoothing);

    /* one AdamW step (step counts from 1) on n parameters with moments m, v */
    void (*adamw_update)(const textok_kernels *k, float *params, const float *grads, float *m,
                         float *v, size_t n, const textok_adamw_params *hp, int step);
};

/* Work-buffer sizes (in floats) shared by every backend */
TEXTOKDEF size_t textok_attention_work_floats(const textok_attention_dims *d);
TEXTOKDEF size_t textok_conv2d_work_floats(const textok_conv2d_dims *d);
TEXTOKDEF size_t textok_codebook_work_floats(int N, int K, int D);
TEXTOKDEF int    textok_conv2d_out_h(const textok_conv2d_dims *d);
TEXTOKDEF int    textok_conv2d_out_w(const textok_conv2d_dims *d);

/* The CPU tables. The reference table runs the naive loops, single-threaded: it is what every
   other table (fast CPU, CUDA, yours) is checked against. n_threads = 0 picks the default. */
TEXTOKDEF textok_kernels textok_cpu_ref_kernels(void);
TEXTOKDEF textok_kernels textok_cpu_kernels(int n_threads);
TEXTOKDEF int            textok_default_threads(void);

/* ---------------------------------------------------------------------------------------------
   Comparing two kernel tables. Every kernel both tables provide is run on the same seeded
   random inputs, several shapes each (odd sizes, sizes that are not multiples of any block
   size). Outputs are surrounded by canary regions that must survive; NaN/Inf fail first; then
   max abs error, max relative error and NMSE are compared with a per-kernel threshold.
   report (may be NULL) is called once per (kernel, shape). Returns the number of failed rows,
   or a negative status if the harness itself could not run (e.g. alloc failed). */
typedef struct textok_compare_result {
    const char *kernel;      /* e.g. "matmul_backward" */
    const char *output;      /* which output, e.g. "da" */
    char        shape[64];   /* the case, e.g. "b2 M33 N17 K65 tA0 tB1" */
    double      max_abs;     /* max |test - ref| */
    double      max_rel;     /* max |test - ref| / (|ref| + 1e-6) */
    double      nmse;        /* sum (test-ref)^2 / sum ref^2 */
    double      tol_nmse;    /* the threshold nmse is held to */
    int         ok;          /* 1 if within tolerance, canaries intact, no NaN/Inf */
    const char *why;         /* "" or the reason for failure ("NaN", "canary", "index", ...) */
} textok_compare_result;
typedef void (*textok_compare_report_fn)(const textok_compare_result *r, void *user);
TEXTOKDEF int textok_kernels_compare(const textok_kernels *ref, const textok_kernels *test,
                                     uint64_t seed, textok_compare_report_fn report, void *user);

/* ---------------------------------------------------------------------------------------------
   safetensors. The reader validates everything before use: header length against the file size,
   the JSON, every dtype, shape (dims product overflow-checked) and byte range; ranges must lie
   inside the data buffer and must not overlap. F32, F16 and BF16 convert to F32 on read. */
enum { TEXTOK_DTYPE_F32 = 0, TEXTOK_DTYPE_F16 = 1, TEXTOK_DTYPE_BF16 = 2 };
#define TEXTOK_MAX_DIMS 8
typedef struct textok_st_tensor {
    char    *name;
    int      dtype;                   /* TEXTOK_DTYPE_* */
    int      ndim;
    int64_t  shape[TEXTOK_MAX_DIMS];
    size_t   numel;
    size_t   offset;                  /* from the start of the data buffer */
    size_t   nbytes;
} textok_st_tensor;
typedef struct textok_safetensors {
    const unsigned char *data;        /* the whole file */
    size_t               size;
    const unsigned char *buffer;      /* data + 8 + header length */
    size_t               buffer_size;
    textok_st_tensor    *tensors;     /* in file order */
    int                  n_tensors;
    char               **meta_keys;   /* __metadata__, string to string */
    char               **meta_values;
    int                  n_meta;
    char                 path[256];   /* for error messages */
    int                  mapped;      /* 1 if data is an mmap, 0 if owned heap memory, -1 borrowed */
} textok_safetensors;
/* Open from a file (mmap where available) or from memory the caller keeps alive. */
TEXTOKDEF int  textok_st_open(textok_safetensors *st, const char *path);
TEXTOKDEF int  textok_st_open_memory(textok_safetensors *st, const void *data, size_t size,
                                     const char *name_for_errors);
TEXTOKDEF void textok_st_close(textok_safetensors *st);
TEXTOKDEF const textok_st_tensor *textok_st_find(const textok_safetensors *st, const char *name);
TEXTOKDEF const char *textok_st_meta(const textok_safetensors *st, const char *key); /* NULL if absent */
/* Convert to F32 into dst, which holds dst_numel floats (must equal t->numel). */
TEXTOKDEF int  textok_st_read_f32(const textok_safetensors *st, const textok_st_tensor *t,
                                  float *dst, size_t dst_numel);
/* Find by name, check the shape (ndim entries), then read. Errors name the tensor and both shapes. */
TEXTOKDEF int  textok_st_load(const textok_safetensors *st, const char *name, int ndim,
                              const int64_t *shape, float *dst);

/* Writing: tensors given as F32 arrays, stored as F32 or F16; metadata as string pairs. The file
   is written to "<path>.tmp" and renamed, so a failure never leaves a half-written file. */
typedef struct textok_st_entry {
    const char  *name;
    const float *data;
    int          ndim;
    int64_t      shape[TEXTOK_MAX_DIMS];
} textok_st_entry;
TEXTOKDEF int textok_st_save(const char *path, const textok_st_entry *entries, int n_entries,
                             const char *const *meta_kv, int n_meta, int dtype);

/* .npy float32 arrays (little-endian '<f4', C order; versions 1.0, 2.0, 3.0 read, 1.0 written).
   The reader allocates *data with the library allocator; free it with textok_free. */
TEXTOKDEF int  textok_npy_read(const char *path, float **data, int *ndim, int64_t shape[TEXTOK_MAX_DIMS]);
TEXTOKDEF int  textok_npy_read_memory(const void *bytes, size_t size, const char *name_for_errors,
                                      float **data, int *ndim, int64_t shape[TEXTOK_MAX_DIMS]);
TEXTOKDEF int  textok_npy_write(const char *path, const float *data, int ndim, const int64_t *shape);
TEXTOKDEF void textok_free(void *p);

/* F16/BF16 <-> F32 conversions (round to nearest even) */
TEXTOKDEF float    textok_f16_to_f32(uint16_t h);
TEXTOKDEF uint16_t textok_f32_to_f16(float f);
TEXTOKDEF float    textok_bf16_to_f32(uint16_t h);

#ifdef __cplusplus
}
#endif
#endif /* TEXTOK_INCLUDE_TEXTOK_H */

/* =============================================================================================
   IMPLEMENTATION
   ============================================================================================= */
#ifdef TEXTOK_IMPLEMENTATION
#ifndef TEXTOK_IMPLEMENTATION_DONE
#define TEXTOK_IMPLEMENTATION_DONE

#include <math.h>
#include <string.h>
#include <float.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>   /* vsnprintf is needed for messages even under TEXTOK_NO_STDIO */
#include <stdlib.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef TEXTOK_USE_BLAS
#include <cblas.h>
#endif
#if !defined(TEXTOK_NO_STDIO) && (defined(__unix__) || defined(__APPLE__))
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#define TEXTOK__HAVE_MMAP 1
#endif

/* ---------------------------------------------------------------------------------------------
   1. Platform: allocator, errors, threads */

#if defined(TEXTOK_MALLOC) && defined(TEXTOK_FREE) && defined(TEXTOK_REALLOC)
/* user-provided */
#elif !defined(TEXTOK_MALLOC) && !defined(TEXTOK_FREE) && !defined(TEXTOK_REALLOC)
#define TEXTOK_MALLOC(sz)     malloc(sz)
#define TEXTOK_REALLOC(p, sz) realloc(p, sz)
#define TEXTOK_FREE(p)        free(p)
#else
#error "Must define all or none of TEXTOK_MALLOC, TEXTOK_FREE, and TEXTOK_REALLOC."
#endif

#ifndef TEXTOK_ASSERT
#include <assert.h>
#define TEXTOK_ASSERT(x) assert(x)
#endif

/* The last error message lives in thread-local storage: the only state outside the caller's
   structs, and it is per thread. */
#if defined(__cplusplus) && __cplusplus >= 201103L
#define TEXTOK__THREAD_LOCAL thread_local
#elif defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L && !defined(__STDC_NO_THREADS__)
#define TEXTOK__THREAD_LOCAL _Thread_local
#elif defined(__GNUC__) || defined(__clang__)
#define TEXTOK__THREAD_LOCAL __thread
#elif defined(_MSC_VER)
#define TEXTOK__THREAD_LOCAL __declspec(thread)
#else
#define TEXTOK__THREAD_LOCAL
#endif
static TEXTOK__THREAD_LOCAL char textok__errbuf[512];

#if defined(__GNUC__) || defined(__clang__)
__attribute__((format(printf, 2, 3)))
#endif
static int textok__fail(int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(textok__errbuf, sizeof textok__errbuf, fmt, ap);
    va_end(ap);
    return status;
}

TEXTOKDEF const char *textok_version(void) { return TEXTOK_VERSION_STRING; }
TEXTOKDEF const char *textok_last_error(void) { return textok__errbuf; }
TEXTOKDEF void textok_clear_error(void) { textok__errbuf[0] = 0; }
TEXTOKDEF void textok_free(void *p) { TEXTOK_FREE(p); }

/* Overflow-checked size arithmetic for everything that comes from a file. */
static int textok__mul_size(size_t a, size_t b, size_t *out)
{
    if (a != 0 && b > SIZE_MAX / a) return 0;
    *out = a * b;
    return 1;
}
static int textok__add_size(size_t a, size_t b, size_t *out)
{
    if (b > SIZE_MAX - a) return 0;
    *out = a + b;
    return 1;
}

static void *textok__malloc(size_t n) { return TEXTOK_MALLOC(n ? n : 1); }
static void *textok__calloc(size_t count, size_t size)
{
    size_t n;
    void *p;
    if (!textok__mul_size(count, size, &n)) return NULL;
    p = textok__malloc(n);
    if (p) memset(p, 0, n);
    return p;
}
TEXTOKDEF int textok_default_threads(void)
{
    const char *env = getenv("TEXTOK_THREADS");
    if (env && *env) {
        long n = strtol(env, NULL, 10);
        if (n >= 1 && n <= 1024) return (int)n;
    }
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

/* ---------------------------------------------------------------------------------------------
   2. RNG. MT19937 seeded exactly as torch's CPU generator (torch.manual_seed), so that
   textok_rng_uniform reproduces torch.rand: the low 24 bits of each 32-bit draw, times 2^-24.
   Normals use Box-Muller on two such draws (not torch's normal_ stream). */

TEXTOKDEF void textok_rng_seed(textok_rng *r, uint64_t seed)
{
    int i;
    r->mt[0] = (uint32_t)(seed & 0xffffffffu);
    for (i = 1; i < 624; i++)
        r->mt[i] = 1812433253u * (r->mt[i - 1] ^ (r->mt[i - 1] >> 30)) + (uint32_t)i;
    r->index = 624;
    r->has_spare = 0;
    r->spare = 0.0;
}

static void textok__mt_twist(textok_rng *r)
{
    int i;
    for (i = 0; i < 624; i++) {
        uint32_t y = (r->mt[i] & 0x80000000u) | (r->mt[(i + 1) % 624] & 0x7fffffffu);
        r->mt[i] = r->mt[(i + 397) % 624] ^ (y >> 1) ^ ((y & 1u) ? 0x9908b0dfu : 0u);
    }
    r->index = 0;
}

TEXTOKDEF uint32_t textok_rng_u32(textok_rng *r)
{
    uint32_t y;
    if (r->index >= 624) textok__mt_twist(r);
    y = r->mt[r->index++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
}

TEXTOKDEF float textok_rng_uniform(textok_rng *r)
{
    return (float)(textok_rng_u32(r) & 0xffffffu) * (1.0f / 16777216.0f);
}

TEXTOKDEF float textok_rng_normal(textok_rng *r)
{
    double u1, u2, rad;
    if (r->has_spare) { r->has_spare = 0; return (float)r->spare; }
    u1 = 1.0 - (double)textok_rng_uniform(r);    /* (0, 1]: log stays finite */
    u2 = (double)textok_rng_uniform(r);
    rad = sqrt(-2.0 * log(u1));
    r->spare = rad * sin(6.283185307179586 * u2);
    r->has_spare = 1;
    return (float)(rad * cos(6.283185307179586 * u2));
}

TEXTOKDEF void textok_rng_fill_uniform(textok_rng *r, float *x, size_t n, float lo, float hi)
{
    size_t i;
    for (i = 0; i < n; i++) x[i] = lo + (hi - lo) * textok_rng_uniform(r);
}

TEXTOKDEF void textok_rng_fill_normal(textok_rng *r, float *x, size_t n, float mean, float std)
{
    size_t i;
    for (i = 0; i < n; i++) x[i] = mean + std * textok_rng_normal(r);
}

/* ---------------------------------------------------------------------------------------------
   3. Files (temporary include while developed in parallel; spliced in before commit) */
#include "textok_io_part.h"
#include "textok_kern_part.h"

#endif /* TEXTOK_IMPLEMENTATION_DONE */
#endif /* TEXTOK_IMPLEMENTATION */
