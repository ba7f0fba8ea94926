/* textok_cuda.cu - textok's kernel table on an NVIDIA GPU (CUDA runtime + cuBLAS).

   WHAT IT IS
      One function, textok_cuda_kernels() (textok_cuda.h), fills a textok_kernels table whose every
      entry runs on the GPU: memory is cudaMalloc'ed device memory, GEMMs are cuBLAS (strict FP32
      unless TF32 is asked for), and every other op is a plain CUDA kernel below. Models call only
      through the table, so a model loaded with textok_params.kernels = &table keeps its weights
      and activations on the GPU and only its inputs and outputs cross the bus.

   HOW THE TABLE WORKS
      Each entry is a host function (textok__cuda_<op>) that checks the table's state, launches
      one or more kernels (textok__cuda_<op>_kernel) on the default stream, and checks the launch.
      Kernels cannot return a status (the table's pointers return void): the first CUDA or cuBLAS
      failure is recorded in the state (call + cudaGetErrorString), later launches are skipped,
      and the next to_device / to_host / copy returns it as a textok error - models check those.
      textok_cuda_status() asks directly. Nothing aborts.

   NUMERICS (what to expect against the CPU reference, textok_kernels_compare)
      - Compiled with --fmad=false: no multiply-add contraction, so pointwise ops round as the C
        code does (gcc -std=c99 does not contract either). Transcendentals (expf, erff, tanhf)
        are CUDA's, within 1-2 ulp of glibc's.
      - Row statistics (layernorm, rmsnorm, groupnorm, softmax sums, cross-entropy, l2norm, LPIPS)
        are summed in double as on the CPU, in a fixed tree order (a block reduction): the result
        depends on the shape only, not on timing. Sums over rows (dbias, the norms' dweight) cut
        the rows into TEXTOK__CUDA_RED_BLOCKS chunks summed in double, then add the chunks in order.
      - sum_squares, diff_loss and kl split n into TEXTOK__CUDA_RED_BLOCKS contiguous ranges fixed
        by n (the CPU's split), sum each in double, then add the partials in order on one thread.
      - Attention is one warp per query row (forward and dq: online softmax, lse saved) or per key
        row (dk, dv), recomputing scores from lse: nothing of size Tq x Tk is ever stored. dbias
        is one thread per (head, query, key) summing over the batch in order.
      - atomicAdd (order not fixed, results may differ in the last bits run to run) is used only
        in conv2d's col2im (the dinput of overlapping windows), the embedding backward (repeated
        ids) and the maxpool backward (overlapping windows). Everything else is deterministic.

   DEBUGGING
      $TEXTOK_CUDA_SYNC=1 (read when the table is made) synchronises after every launch, so that a
      fault is reported with the name of the kernel that caused it rather than at the next copy.
      $TEXTOK_CUDA_SMALL_TILES=1 makes conv2d's pixel tiles 7 pixels and the column sums 5 columns
      a pass, so that the compare's small shapes run the multi-tile / multi-pass paths too.

   LIMITS
      Attention head dim <= TEXTOK__CUDA_HD_MAX (256). One device per table; one host thread per
      table at a time (one stream, one scratch buffer). Dims letters as in textok.h.

   CHECKING IT
      tests/test_cuda.c (make cuda; build/test_cuda on a GPU) compares the table with the CPU
      reference kernel by kernel (textok_kernels_compare) and whole model by model. Without a GPU,
      make cuda-emu runs this file's kernels on the CPU (tests/cuda_emu: the launches rewritten,
      every CUDA thread a fiber, __syncthreads and shuffles real barriers, cuBLAS a checked GEMM,
      device memory unreadable from host code), so the same test runs anywhere. Each launch must
      stay on one line, `name<<<grid, block>>>(`, for that rewrite. */
#include "textok_cuda.h"

#include <cuda_runtime.h>
#include <cublas_v2.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TEXTOK__CUDA_THREADS    256   /* threads per block everywhere (a power of two) */
#define TEXTOK__CUDA_RED_BLOCKS 64    /* the CPU's TEXTOK__RED_BLOCKS: same split of n */
#define TEXTOK__CUDA_HD_MAX     256   /* attention head dim: 8 channels per lane of a warp */
#define TEXTOK__CUDA_CB_ROWS    64    /* codebook rows per GEMM block (work holds K + 64 K) */
#define TEXTOK__CUDA_COL_MAX    8192  /* columns per pass of the column sums (scratch: 64 x 8192 doubles) */
#define TEXTOK__LOGVAR_MIN_F    (-30.0f)
#define TEXTOK__LOGVAR_MAX_F    20.0f
#define TEXTOK__LPIPS_EPS_D     1e-10

/* ---------------------------------------------------------------------------------------------
   State, errors, counters */
typedef struct textok__cuda_state {
    int                  device;
    cublasHandle_t       blas;
    double              *partials;   /* TEXTOK__CUDA_RED_BLOCKS doubles: the reductions' scratch */
    double              *colpart;    /* TEXTOK__CUDA_RED_BLOCKS x TEXTOK__CUDA_COL_MAX doubles: column sums' */
    int                  sync_each;  /* $TEXTOK_CUDA_SYNC=1: synchronise after every launch (debugging) */
    int                  small_tiles;/* $TEXTOK_CUDA_SMALL_TILES=1: conv tiles of 7 pixels, column sums 5
                                        columns per pass (tests: the multi-pass paths on small shapes) */
    int                  status;     /* TEXTOK_OK or the first failure's status */
    char                 msg[400];   /* its message */
    textok_cuda_counters cnt;
} textok__cuda_state;

static textok__cuda_state *textok__cuda_st(const textok_kernels *k) { return (textok__cuda_state *)k->state; }

/* Record the first failure; later ones are consequences. Clears CUDA's (non-sticky) last error. */
static void textok__cuda_record(const textok_kernels *k, int status, const char *what, const char *why)
{
    textok__cuda_state *st = textok__cuda_st(k);
    (void)cudaGetLastError();
    if (st->status != TEXTOK_OK) return;
    st->status = status;
    snprintf(st->msg, sizeof st->msg, "cuda table: %s: %s", what, why);
}

static int textok__cuda_ok(const textok_kernels *k, cudaError_t e, const char *what)
{
    if (e == cudaSuccess) return 1;
    textok__cuda_record(k, TEXTOK_ERR_IO, what, cudaGetErrorString(e));
    return 0;
}

static int textok__cublas_ok(const textok_kernels *k, cublasStatus_t s, const char *what)
{
    if (s == CUBLAS_STATUS_SUCCESS) return 1;
    textok__cuda_record(k, TEXTOK_ERR_IO, what, cublasGetStatusString(s));
    return 0;
}

/* Every entry starts with this: nothing runs after a failure. */
static int textok__cuda_failed(const textok_kernels *k) { return textok__cuda_st(k)->status != TEXTOK_OK; }

/* After every <<<...>>>: a bad launch configuration shows here, a fault at the next copy - or
   here too, naming the kernel, with $TEXTOK_CUDA_SYNC=1 (a synchronisation after every launch). */
static int textok__cuda_launched(const textok_kernels *k, const char *what)
{
    textok__cuda_state *st = textok__cuda_st(k);
    st->cnt.launches++;
    if (!textok__cuda_ok(k, cudaGetLastError(), what)) return 0;
    return !st->sync_each || textok__cuda_ok(k, cudaDeviceSynchronize(), what);
}
#define TEXTOK__CUDA_LAUNCHED(k, name) textok__cuda_launched((k), "launching " name)

/* The recorded failure as a textok error, or TEXTOK_OK. */
static int textok__cuda_surface(const textok_kernels *k)
{
    const textok__cuda_state *st = textok__cuda_st(k);
    if (st->status == TEXTOK_OK) return TEXTOK_OK;
    return textok_set_error(st->status, "%s", st->msg);
}

/* Grid for a grid-stride loop over n elements (n > 0). */
static unsigned textok__cuda_grid(size_t n)
{
    size_t b = (n + TEXTOK__CUDA_THREADS - 1) / TEXTOK__CUDA_THREADS;
    return (unsigned)(b > 1048576 ? 1048576 : b);
}
/* Grid for one warp per item (n > 0). */
static unsigned textok__cuda_warp_grid(size_t n)
{
    return (unsigned)((n + TEXTOK__CUDA_THREADS / 32 - 1) / (TEXTOK__CUDA_THREADS / 32));
}
#define TEXTOK__CUDA_FOR(i, n) \
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n); i += (size_t)gridDim.x * blockDim.x)

/* ---------------------------------------------------------------------------------------------
   Device helpers: reductions in a fixed order */

/* Sum over the block (blockDim.x = TEXTOK__CUDA_THREADS) in a fixed tree order; all threads get it. */
__device__ static double textok__cuda_block_sum(double v)
{
    __shared__ double sh[TEXTOK__CUDA_THREADS];
    double r;
    sh[threadIdx.x] = v;
    __syncthreads();
    for (int s = TEXTOK__CUDA_THREADS / 2; s > 0; s >>= 1) {
        if ((int)threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
        __syncthreads();
    }
    r = sh[0];
    __syncthreads();   /* sh is reused by the next call */
    return r;
}

/* Max over the block; NaNs are skipped (x > m is false), as the CPU's row max. */
__device__ static float textok__cuda_block_max(float v)
{
    __shared__ float sh[TEXTOK__CUDA_THREADS];
    float r;
    sh[threadIdx.x] = v;
    __syncthreads();
    for (int s = TEXTOK__CUDA_THREADS / 2; s > 0; s >>= 1) {
        if ((int)threadIdx.x < s && sh[threadIdx.x + s] > sh[threadIdx.x]) sh[threadIdx.x] = sh[threadIdx.x + s];
        __syncthreads();
    }
    r = sh[0];
    __syncthreads();
    return r;
}

/* Sum over the 32 lanes of a warp (butterfly: every lane gets the same value). */
__device__ static float textok__cuda_warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* ---------------------------------------------------------------------------------------------
   Memory */
static void *textok__cuda_alloc(const textok_kernels *k, size_t bytes)
{
    void *p = NULL;
    cudaError_t e;
    if (textok__cuda_failed(k)) { textok__cuda_surface(k); return NULL; }
    e = cudaMalloc(&p, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();   /* out of memory is not sticky: the table stays usable */
        textok_set_error(TEXTOK_ERR_NOMEM, "cuda table: cudaMalloc(%zu bytes): %s", bytes, cudaGetErrorString(e));
        return NULL;
    }
    textok__cuda_st(k)->cnt.allocs++;
    return p;
}

static void textok__cuda_free(const textok_kernels *k, void *p)
{
    if (!p) return;
    textok__cuda_st(k)->cnt.frees++;
    textok__cuda_ok(k, cudaFree(p), "cudaFree");
}

static int textok__cuda_to_device(const textok_kernels *k, void *dst, const void *host_src, size_t bytes)
{
    textok__cuda_state *st = textok__cuda_st(k);
    if (textok__cuda_failed(k)) return textok__cuda_surface(k);
    st->cnt.to_device++;
    st->cnt.to_device_bytes += bytes;
    if (bytes) textok__cuda_ok(k, cudaMemcpy(dst, host_src, bytes, cudaMemcpyHostToDevice), "cudaMemcpy host to device");
    return textok__cuda_surface(k);
}

static int textok__cuda_to_host(const textok_kernels *k, void *host_dst, const void *src, size_t bytes)
{
    textok__cuda_state *st = textok__cuda_st(k);
    if (textok__cuda_failed(k)) return textok__cuda_surface(k);
    st->cnt.to_host++;
    st->cnt.to_host_bytes += bytes;
    if (bytes) textok__cuda_ok(k, cudaMemcpy(host_dst, src, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy device to host");
    return textok__cuda_surface(k);
}

static int textok__cuda_copy(const textok_kernels *k, void *dst, const void *src, size_t bytes)
{
    if (textok__cuda_failed(k)) return textok__cuda_surface(k);
    textok__cuda_st(k)->cnt.copies++;
    if (bytes) textok__cuda_ok(k, cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice), "cudaMemcpy device to device");
    return textok__cuda_surface(k);
}

/* ---------------------------------------------------------------------------------------------
   GEMM through cuBLAS. Row-major C (M,N) = alpha op(A) op(B) + beta C, batched with element
   strides sA, sB, sC. cuBLAS is column-major: a row-major (R,S) matrix is its column-major
   transpose, so C^T = op(B)^T op(A)^T is the same call with the operands swapped and M <-> N.
   lda/ldb/ldc are the row-major leading dims (the row length of the stored matrix). */
static void textok__cuda_gemm(const textok_kernels *k, int ta, int tb, int M, int N, int K, float alpha,
                              const float *A, int lda, long long sA, const float *B, int ldb, long long sB,
                              float beta, float *C, int ldc, long long sC, int batch)
{
    if (M <= 0 || N <= 0 || batch <= 0 || textok__cuda_failed(k)) return;
    textok__cuda_st(k)->cnt.launches++;
    if (textok__cublas_ok(k, cublasSgemmStridedBatched(textok__cuda_st(k)->blas,
                                                   tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N,
                                                   N, M, K, &alpha,
                                                   B, ldb > 0 ? ldb : 1, sB, A, lda > 0 ? lda : 1, sA,
                                                   &beta, C, ldc > 0 ? ldc : 1, sC, batch),
                          "cublasSgemmStridedBatched") && textok__cuda_st(k)->sync_each)
        textok__cuda_ok(k, cudaDeviceSynchronize(), "cublasSgemmStridedBatched");
}

/* ----- matmul ------------------------------------------------------------------------------- */
/* out (rows, N): every row = bias (N) */
__global__ static void textok__cuda_rows_set_kernel(float *out, const float *bias, size_t rows, int N)
{
    TEXTOK__CUDA_FOR(i, rows * (size_t)N) out[i] = bias[i % (size_t)N];
}

/* Column sums: acc[c] += sum over the rows r of term(r, c), (rows, cols) row-major, in double, in
   an order fixed by the shape: the rows are cut into TEXTOK__CUDA_RED_BLOCKS contiguous chunks
   (the reductions' split), a thread sums one column of one chunk in row order, then one thread
   per column adds the chunks' partials in chunk order. Terms (the CPU's expressions):
     PLAIN   x[r,c]                              (matmul dbias; layernorm dbias with x = dout)
     LN_W    dout[r,c] ((x[r,c] - mean[r]) rstd[r])   (layernorm dweight)
     RMS_W   dout[r,c] x[r,c] rstd[r]                 (rmsnorm dweight) */
enum { TEXTOK__CUDA_COL_PLAIN, TEXTOK__CUDA_COL_LN_W, TEXTOK__CUDA_COL_RMS_W };

/* part (chunks, TEXTOK__CUDA_COL_MAX): grid (column blocks, chunks), columns [c0, c0 + ncols) */
__global__ static void textok__cuda_colsum_partial_kernel(double *part, int kind, const float *x, const float *dout,
                                                          const float *mean, const float *rstd, size_t rows,
                                                          int cols, int c0, int ncols)
{
    const size_t nb = TEXTOK__CUDA_RED_BLOCKS, k = blockIdx.y;
    const size_t lo = rows / nb * k + (rows % nb < k ? rows % nb : k), len = rows / nb + (k < rows % nb);
    const int cc = blockIdx.x * blockDim.x + threadIdx.x, c = c0 + cc;
    double s = 0.0;
    if (cc >= ncols) return;
    for (size_t r = lo; r < lo + len; r++) {
        const size_t i = r * cols + c;
        if (kind == TEXTOK__CUDA_COL_PLAIN) s += x[i];
        else if (kind == TEXTOK__CUDA_COL_LN_W) s += (double)dout[i] * ((x[i] - mean[r]) * rstd[r]);
        else s += (double)dout[i] * x[i] * rstd[r];
    }
    part[k * TEXTOK__CUDA_COL_MAX + cc] = s;
}

/* acc[c0 + cc] += the chunks' partials of column cc, in chunk order */
__global__ static void textok__cuda_colsum_final_kernel(float *acc, const double *part, int c0, int ncols)
{
    const int cc = blockIdx.x * blockDim.x + threadIdx.x;
    double s = 0.0;
    if (cc >= ncols) return;
    for (int k = 0; k < TEXTOK__CUDA_RED_BLOCKS; k++) s += part[(size_t)k * TEXTOK__CUDA_COL_MAX + cc];
    acc[c0 + cc] += (float)s;
}

static void textok__cuda_colsum(const textok_kernels *k, float *acc, int kind, const float *x, const float *dout,
                                const float *mean, const float *rstd, size_t rows, int cols)
{
    double *part = textok__cuda_st(k)->colpart;
    const int pass = textok__cuda_st(k)->small_tiles ? 5 : TEXTOK__CUDA_COL_MAX;
    if (textok__cuda_failed(k) || cols <= 0) return;
    for (int c0 = 0; c0 < cols; c0 += pass) {
        const int ncols = cols - c0 < pass ? cols - c0 : pass;
        const unsigned gx = (unsigned)((ncols + TEXTOK__CUDA_THREADS - 1) / TEXTOK__CUDA_THREADS);
        textok__cuda_colsum_partial_kernel<<<dim3(gx, TEXTOK__CUDA_RED_BLOCKS), TEXTOK__CUDA_THREADS>>>(
            part, kind, x, dout, mean, rstd, rows, cols, c0, ncols);
        TEXTOK__CUDA_LAUNCHED(k, "column sums (partials)");
        textok__cuda_colsum_final_kernel<<<gx, TEXTOK__CUDA_THREADS>>>(acc, part, c0, ncols);
        TEXTOK__CUDA_LAUNCHED(k, "column sums");
    }
}

static void textok__cuda_matmul_forward(const textok_kernels *k, float *out, const float *a, const float *b,
                                        const float *bias, const textok_matmul_dims *d)
{
    const long long sa = (long long)d->M * d->K, sb = (long long)d->K * d->N, so = (long long)d->M * d->N;
    const size_t rows = (size_t)d->batch * d->M;
    if (textok__cuda_failed(k) || rows == 0 || d->N <= 0) return;
    if (bias) {
        textok__cuda_rows_set_kernel<<<textok__cuda_grid(rows * d->N), TEXTOK__CUDA_THREADS>>>(out, bias, rows, d->N);
        TEXTOK__CUDA_LAUNCHED(k, "matmul bias");
    }
    textok__cuda_gemm(k, d->trans_a, d->trans_b, d->M, d->N, d->K, 1.0f, a, d->trans_a ? d->M : d->K, sa,
                      b, d->trans_b ? d->K : d->N, sb, bias ? 1.0f : 0.0f, out, d->N, so, d->batch);
}

/* dop(A) = dout op(B)^T, dop(B) = op(A)^T dout, accumulated (beta 1) in A's and B's layouts:
     trans_a 0: dA (M,K) += dout (M,N) . op(B)^T        trans_a 1: dA (K,M) += op(B) (K,N) . dout^T
     trans_b 0: dB (K,N) += op(A)^T . dout (M,N)        trans_b 1: dB (N,K) += dout^T (N,M) . op(A)
   where op(B) = B (stored (K,N), ld N) or B^T (stored (N,K), ld K), likewise op(A). */
static void textok__cuda_matmul_backward(const textok_kernels *k, float *da, float *db, float *dbias,
                                         const float *dout, const float *a, const float *b,
                                         const textok_matmul_dims *d)
{
    const int M = d->M, N = d->N, K = d->K, ta = d->trans_a, tb = d->trans_b;
    const int lda = ta ? M : K, ldb = tb ? K : N;
    const long long sa = (long long)M * K, sb = (long long)K * N, so = (long long)M * N;
    if (textok__cuda_failed(k)) return;
    if (da) {
        if (!ta) /* (M,K) = dout (M,N) . op(B)^T: op(B)^T is B^T when B is (K,N), B itself when (N,K) */
            textok__cuda_gemm(k, 0, !tb, M, K, N, 1.0f, dout, N, so, b, ldb, sb, 1.0f, da, K, sa, d->batch);
        else     /* (K,M) = op(B) (K,N) . dout^T (N,M) */
            textok__cuda_gemm(k, tb, 1, K, M, N, 1.0f, b, ldb, sb, dout, N, so, 1.0f, da, M, sa, d->batch);
    }
    if (db) {
        if (!tb) /* (K,N) = op(A)^T (K,M) . dout (M,N): op(A)^T is A^T when A is (M,K), A itself when (K,M) */
            textok__cuda_gemm(k, !ta, 0, K, N, M, 1.0f, a, lda, sa, dout, N, so, 1.0f, db, N, sb, d->batch);
        else     /* (N,K) = dout^T (N,M) . op(A) (M,K) */
            textok__cuda_gemm(k, 1, ta, N, K, M, 1.0f, dout, N, so, a, lda, sa, 1.0f, db, K, sb, d->batch);
    }
    if (dbias) textok__cuda_colsum(k, dbias, TEXTOK__CUDA_COL_PLAIN, dout, NULL, NULL, NULL, (size_t)d->batch * M, N);
}

/* ----- layernorm ---------------------------------------------------------------------------- */
/* one block per row n of inp (N,C); the CPU's expressions, statistics in double */
__global__ static void textok__cuda_layernorm_forward_kernel(float *out, float *mean, float *rstd, const float *inp,
                                                             const float *weight, const float *bias, int C, float eps)
{
    const size_t n = blockIdx.x;
    const float *x = inp + n * C;
    float *o = out + n * C;
    double m = 0.0, v = 0.0;
    float mf, sf;
    for (int c = threadIdx.x; c < C; c += blockDim.x) m += x[c];
    m = textok__cuda_block_sum(m) / C;
    for (int c = threadIdx.x; c < C; c += blockDim.x) v += (x[c] - m) * (x[c] - m);
    v = textok__cuda_block_sum(v) / C;
    mf = (float)m;
    sf = (float)(1.0 / sqrt(v + eps));
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float y = (x[c] - mf) * sf;
        o[c] = weight ? y * weight[c] + (bias ? bias[c] : 0.0f) : y;
    }
    if (threadIdx.x == 0) {
        if (mean) mean[n] = mf;
        if (rstd) rstd[n] = sf;
    }
}

/* dx = rstd (g - mean(g) - xhat mean(g xhat)), g = dout weight; one block per row */
__global__ static void textok__cuda_layernorm_dinp_kernel(float *dinp, const float *dout, const float *inp,
                                                          const float *weight, const float *mean, const float *rstd, int C)
{
    const size_t n = blockIdx.x;
    const float *x = inp + n * C, *dy = dout + n * C;
    float *dx = dinp + n * C;
    double sg = 0.0, sgx = 0.0, mg, mgx;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        double g = (double)dy[c] * (weight ? weight[c] : 1.0f);
        sg += g;
        sgx += g * ((x[c] - mean[n]) * rstd[n]);
    }
    mg = textok__cuda_block_sum(sg) / C;
    mgx = textok__cuda_block_sum(sgx) / C;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        double g = (double)dy[c] * (weight ? weight[c] : 1.0f);
        double xhat = (x[c] - mean[n]) * rstd[n];
        dx[c] += (float)(rstd[n] * (g - mg - xhat * mgx));
    }
}

static void textok__cuda_layernorm_forward(const textok_kernels *k, float *out, float *mean, float *rstd,
                                           const float *inp, const float *weight, const float *bias,
                                           int N, int C, float eps)
{
    if (textok__cuda_failed(k) || N <= 0) return;
    textok__cuda_layernorm_forward_kernel<<<N, TEXTOK__CUDA_THREADS>>>(out, mean, rstd, inp, weight, bias, C, eps);
    TEXTOK__CUDA_LAUNCHED(k, "layernorm_forward");
}

static void textok__cuda_layernorm_backward(const textok_kernels *k, float *dinp, float *dweight, float *dbias,
                                            const float *dout, const float *inp, const float *weight,
                                            const float *mean, const float *rstd, int N, int C)
{
    if (textok__cuda_failed(k) || N <= 0 || C <= 0) return;
    if (dinp) {
        textok__cuda_layernorm_dinp_kernel<<<N, TEXTOK__CUDA_THREADS>>>(dinp, dout, inp, weight, mean, rstd, C);
        TEXTOK__CUDA_LAUNCHED(k, "layernorm_backward dinp");
    }
    if (dweight) textok__cuda_colsum(k, dweight, TEXTOK__CUDA_COL_LN_W, inp, dout, mean, rstd, (size_t)N, C);
    if (dbias) textok__cuda_colsum(k, dbias, TEXTOK__CUDA_COL_PLAIN, dout, NULL, NULL, NULL, (size_t)N, C);
}

/* ----- RMSNorm ------------------------------------------------------------------------------ */
/* out = x rstd weight, rstd = 1/sqrt(mean(x^2) + eps); one block per row of (N,C) */
__global__ static void textok__cuda_rmsnorm_forward_kernel(float *out, float *rstd, const float *inp,
                                                           const float *weight, int C, float eps)
{
    const size_t n = blockIdx.x;
    const float *x = inp + n * C;
    float *o = out + n * C;
    double ss = 0.0;
    float r;
    for (int c = threadIdx.x; c < C; c += blockDim.x) ss += (double)x[c] * x[c];
    ss = textok__cuda_block_sum(ss);
    r = (float)(1.0 / sqrt(ss / C + eps));
    for (int c = threadIdx.x; c < C; c += blockDim.x) o[c] = x[c] * r * (weight ? weight[c] : 1.0f);
    if (threadIdx.x == 0 && rstd) rstd[n] = r;
}

/* dx = rstd (g - x rstd^2 mean(g x)), g = dout weight; one block per row */
__global__ static void textok__cuda_rmsnorm_dinp_kernel(float *dinp, const float *dout, const float *inp,
                                                        const float *weight, const float *rstd, int C)
{
    const size_t n = blockIdx.x;
    const float *x = inp + n * C, *dy = dout + n * C;
    float *dx = dinp + n * C;
    double sgx = 0.0, r = rstd[n], coef;
    for (int c = threadIdx.x; c < C; c += blockDim.x) sgx += (double)dy[c] * (weight ? weight[c] : 1.0f) * x[c];
    sgx = textok__cuda_block_sum(sgx);
    coef = r * r * sgx / C;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        double g = (double)dy[c] * (weight ? weight[c] : 1.0f);
        dx[c] += (float)(r * (g - x[c] * coef));
    }
}

static void textok__cuda_rmsnorm_forward(const textok_kernels *k, float *out, float *rstd, const float *inp,
                                         const float *weight, int N, int C, float eps)
{
    if (textok__cuda_failed(k) || N <= 0) return;
    textok__cuda_rmsnorm_forward_kernel<<<N, TEXTOK__CUDA_THREADS>>>(out, rstd, inp, weight, C, eps);
    TEXTOK__CUDA_LAUNCHED(k, "rmsnorm_forward");
}

static void textok__cuda_rmsnorm_backward(const textok_kernels *k, float *dinp, float *dweight, const float *dout,
                                          const float *inp, const float *weight, const float *rstd, int N, int C)
{
    if (textok__cuda_failed(k) || N <= 0 || C <= 0) return;
    if (dinp) {
        textok__cuda_rmsnorm_dinp_kernel<<<N, TEXTOK__CUDA_THREADS>>>(dinp, dout, inp, weight, rstd, C);
        TEXTOK__CUDA_LAUNCHED(k, "rmsnorm_backward dinp");
    }
    if (dweight) textok__cuda_colsum(k, dweight, TEXTOK__CUDA_COL_RMS_W, inp, dout, NULL, rstd, (size_t)N, C);
}

/* ----- pointwise: GELU, SiLU, tanh, leaky ReLU, add --------------------------------------- */
#define TEXTOK__CUDA_SQRT_2_OVER_PI 0.7978845608028654f
#define TEXTOK__CUDA_INV_SQRT_2     0.7071067811865476f
#define TEXTOK__CUDA_INV_SQRT_2PI   0.3989422804014327f

/* out (n) = gelu(inp); erf form, or the tanh form (as the CPU reference writes it) */
__global__ static void textok__cuda_gelu_forward_kernel(float *out, const float *inp, size_t n, int approx_tanh)
{
    TEXTOK__CUDA_FOR(i, n) {
        float x = inp[i];
        out[i] = approx_tanh
            ? 0.5f * x * (1.0f + tanhf(TEXTOK__CUDA_SQRT_2_OVER_PI * (x + 0.044715f * x * x * x)))
            : 0.5f * x * (1.0f + erff(x * TEXTOK__CUDA_INV_SQRT_2));
    }
}

/* dinp (n) += dout gelu'(inp) */
__global__ static void textok__cuda_gelu_backward_kernel(float *dinp, const float *dout, const float *inp, size_t n,
                                                         int approx_tanh)
{
    TEXTOK__CUDA_FOR(i, n) {
        float x = inp[i], g;
        if (approx_tanh) {
            float u = TEXTOK__CUDA_SQRT_2_OVER_PI * (x + 0.044715f * x * x * x);
            float t = tanhf(u);
            g = 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * TEXTOK__CUDA_SQRT_2_OVER_PI * (1.0f + 3.0f * 0.044715f * x * x);
        } else {
            g = 0.5f * (1.0f + erff(x * TEXTOK__CUDA_INV_SQRT_2)) + x * TEXTOK__CUDA_INV_SQRT_2PI * expf(-0.5f * x * x);
        }
        dinp[i] += dout[i] * g;
    }
}

/* out (n) = x sigmoid(x) */
__global__ static void textok__cuda_silu_forward_kernel(float *out, const float *inp, size_t n)
{
    TEXTOK__CUDA_FOR(i, n) out[i] = inp[i] / (1.0f + expf(-inp[i]));
}

/* dinp (n) += dout s (1 + x (1 - s)) */
__global__ static void textok__cuda_silu_backward_kernel(float *dinp, const float *dout, const float *inp, size_t n)
{
    TEXTOK__CUDA_FOR(i, n) {
        float s = 1.0f / (1.0f + expf(-inp[i]));
        dinp[i] += dout[i] * s * (1.0f + inp[i] * (1.0f - s));
    }
}

/* out (n) = tanh(inp) */
__global__ static void textok__cuda_tanh_forward_kernel(float *out, const float *inp, size_t n)
{
    TEXTOK__CUDA_FOR(i, n) out[i] = tanhf(inp[i]);
}

/* dinp (n) += dout (1 - y^2), y the saved output */
__global__ static void textok__cuda_tanh_backward_kernel(float *dinp, const float *dout, const float *out, size_t n)
{
    TEXTOK__CUDA_FOR(i, n) dinp[i] += dout[i] * (1.0f - out[i] * out[i]);
}

/* out (n) = x > 0 ? x : slope x */
__global__ static void textok__cuda_leaky_relu_forward_kernel(float *out, const float *inp, size_t n, float slope)
{
    TEXTOK__CUDA_FOR(i, n) out[i] = inp[i] > 0.0f ? inp[i] : slope * inp[i];
}

/* dinp (n) += x > 0 ? dout : slope dout */
__global__ static void textok__cuda_leaky_relu_backward_kernel(float *dinp, const float *dout, const float *inp,
                                                               size_t n, float slope)
{
    TEXTOK__CUDA_FOR(i, n) dinp[i] += inp[i] > 0.0f ? dout[i] : slope * dout[i];
}

/* out (n) = a + b */
__global__ static void textok__cuda_add_forward_kernel(float *out, const float *a, const float *b, size_t n)
{
    TEXTOK__CUDA_FOR(i, n) out[i] = a[i] + b[i];
}

/* da (n) += dout, db (n) += dout (either may be NULL) */
__global__ static void textok__cuda_add_backward_kernel(float *da, float *db, const float *dout, size_t n)
{
    TEXTOK__CUDA_FOR(i, n) {
        if (da) da[i] += dout[i];
        if (db) db[i] += dout[i];
    }
}

static void textok__cuda_gelu_forward(const textok_kernels *k, float *out, const float *inp, size_t n, int approx_tanh)
{
    if (textok__cuda_failed(k) || n == 0) return;
    textok__cuda_gelu_forward_kernel<<<textok__cuda_grid(n), TEXTOK__CUDA_THREADS>>>(out, inp, n, approx_tanh);
    TEXTOK__CUDA_LAUNCHED(k, "gelu_forward");
}
static void textok__cuda_gelu_backward(const textok_kernels *k, float *dinp, const float *dout, const float *inp,
                                       size_t n, int approx_tanh)
{
    if (textok__cuda_failed(k) || n == 0 || !dinp) return;
    textok__cuda_gelu_backward_kernel<<<textok__cuda_grid(n), TEXTOK__CUDA_THREADS>>>(dinp, dout, inp, n, approx_tanh);
    TEXTOK__CUDA_LAUNCHED(k, "gelu_backward");
}
static void textok__cuda_silu_forward(const textok_kernels *k, float *out, const float *inp, size_t n)
{
    if (textok__cuda_failed(k) || n == 0) return;
    textok__cuda_silu_forward_kernel<<<textok__cuda_grid(n), TEXTOK__CUDA_THREADS>>>(out, inp, n);
    TEXTOK__CUDA_LAUNCHED(k, "silu_forward");
}
static void textok__cuda_silu_backward(const textok_kernels *k, float *dinp, const float *dout, const float *inp, size_t n)
{
    if (textok__cuda_failed(k) || n == 0 || !dinp) return;
    textok__cuda_silu_backward_kernel<<<textok__cuda_grid(n), TEXTOK__CUDA_THREADS>>>(dinp, dout, inp, n);
    TEXTOK__CUDA_LAUNCHED(k, "silu_backward");
}
static void textok__cuda_tanh_forward(const textok_kernels *k, float *out, const float *inp, size_t n)
{
    if (textok__cuda_failed(k) || n == 0) return;
    textok__cuda_tanh_forward_kernel<<<textok__cuda_grid(n), TEXTOK__CUDA_THREADS>>>(out, inp, n);
    TEXTOK__CUDA_LAUNCHED(k, "tanh_forward");
}
static void textok__cuda_tanh_backward(const textok_kernels *k, float *dinp, const float *dout, const float *out, size_t n)
{
    if (textok__cuda_failed(k) || n == 0 || !dinp) return;
    textok__cuda_tanh_backward_kernel<<<textok__cuda_grid(n), TEXTOK__CUDA_THREADS>>>(dinp, dout, out, n);
    TEXTOK__CUDA_LAUNCHED(k, "tanh_backward");
}
static void textok__cuda_leaky_relu_forward(const textok_kernels *k, float *out, const float *inp, size_t n, float slope)
{
    if (textok__cuda_failed(k) || n == 0) return;
    textok__cuda_leaky_relu_forward_kernel<<<textok__cuda_grid(n), TEXTOK__CUDA_THREADS>>>(out, inp, n, slope);
    TEXTOK__CUDA_LAUNCHED(k, "leaky_relu_forward");
}
static void textok__cuda_leaky_relu_backward(const textok_kernels *k, float *dinp, const float *dout, const float *inp,
                                             size_t n, float slope)
{
    if (textok__cuda_failed(k) || n == 0 || !dinp) return;
    textok__cuda_leaky_relu_backward_kernel<<<textok__cuda_grid(n), TEXTOK__CUDA_THREADS>>>(dinp, dout, inp, n, slope);
    TEXTOK__CUDA_LAUNCHED(k, "leaky_relu_backward");
}
static void textok__cuda_add_forward(const textok_kernels *k, float *out, const float *a, const float *b, size_t n)
{
    if (textok__cuda_failed(k) || n == 0) return;
    textok__cuda_add_forward_kernel<<<textok__cuda_grid(n), TEXTOK__CUDA_THREADS>>>(out, a, b, n);
    TEXTOK__CUDA_LAUNCHED(k, "add_forward");
}
static void textok__cuda_add_backward(const textok_kernels *k, float *da, float *db, const float *dout, size_t n)
{
    if (textok__cuda_failed(k) || n == 0 || (!da && !db)) return;
    textok__cuda_add_backward_kernel<<<textok__cuda_grid(n), TEXTOK__CUDA_THREADS>>>(da, db, dout, n);
    TEXTOK__CUDA_LAUNCHED(k, "add_backward");
}

/* ----- softmax ------------------------------------------------------------------------------ */
/* one block per row of (rows, cols): max, e = expf(x - max), sum in double, e / sum. In place
   (out == inp) is safe: each element is read and written by the same thread, after the max. */
__global__ static void textok__cuda_softmax_forward_kernel(float *out, const float *inp, int cols)
{
    const size_t r = blockIdx.x;
    const float *x = inp + r * cols;
    float *o = out + r * cols, m = -FLT_MAX;
    double s = 0.0;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) m = x[c] > m ? x[c] : m;
    m = textok__cuda_block_max(m);
    for (int c = threadIdx.x; c < cols; c += blockDim.x) { o[c] = expf(x[c] - m); s += o[c]; }
    s = textok__cuda_block_sum(s);
    for (int c = threadIdx.x; c < cols; c += blockDim.x) o[c] = (float)(o[c] / s);
}

/* dx = y (dy - sum(dy y)); one block per row */
__global__ static void textok__cuda_softmax_backward_kernel(float *dinp, const float *dout, const float *out, int cols)
{
    const size_t r = blockIdx.x;
    const float *y = out + r * cols, *dy = dout + r * cols;
    float *dx = dinp + r * cols;
    double s = 0.0;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) s += (double)dy[c] * y[c];
    s = textok__cuda_block_sum(s);
    for (int c = threadIdx.x; c < cols; c += blockDim.x) dx[c] += y[c] * (dy[c] - (float)s);
}

static void textok__cuda_softmax_forward(const textok_kernels *k, float *out, const float *inp, int rows, int cols)
{
    if (textok__cuda_failed(k) || rows <= 0) return;
    textok__cuda_softmax_forward_kernel<<<rows, TEXTOK__CUDA_THREADS>>>(out, inp, cols);
    TEXTOK__CUDA_LAUNCHED(k, "softmax_forward");
}
static void textok__cuda_softmax_backward(const textok_kernels *k, float *dinp, const float *dout, const float *out,
                                          int rows, int cols)
{
    if (textok__cuda_failed(k) || rows <= 0 || !dinp) return;
    textok__cuda_softmax_backward_kernel<<<rows, TEXTOK__CUDA_THREADS>>>(dinp, dout, out, cols);
    TEXTOK__CUDA_LAUNCHED(k, "softmax_backward");
}

/* ----- attention ---------------------------------------------------------------------------- */
/* Layout: q (B,Tq,C), key/v (B,Tk,C), head h = channels [h hd, (h+1) hd), lse (B,H,Tq),
   bias (H,Tq,Tk), key_mask (B,Tk). A warp owns one row; lane l holds channels l, l+32, ...
   (TEXTOK__CUDA_HD_MAX / 32 of them). Scores: s_j = scale q_i.k_j + bias[h,i,j] over keys with
   key_mask[b,j] != 0; a query with no such key has out = 0, lse = 0 and no gradient. */
#define TEXTOK__CUDA_LANE_CH (TEXTOK__CUDA_HD_MAX / 32)

/* forward: one warp per (b, h, i), online softmax over the keys: running max m, running sum l,
   acc = sum_j exp(s_j - m) v_j rescaled whenever m grows; out = acc / l, lse = m + log l */
__global__ static void textok__cuda_attention_forward_kernel(float *out, float *lse, const float *q, const float *key,
                                                             const float *v, const float *bias,
                                                             const unsigned char *key_mask,
                                                             int B, int Tq, int Tk, int C, int H, float scale)
{
    const size_t row = (blockIdx.x * (size_t)blockDim.x + threadIdx.x) / 32;
    const int lane = threadIdx.x % 32, hd = C / H;
    float acc[TEXTOK__CUDA_LANE_CH], m = -INFINITY, l = 0.0f;
    if (row >= (size_t)B * H * Tq) return;   /* the whole warp: row is the same on every lane */
    const int i = (int)(row % Tq), h = (int)(row / Tq % H), b = (int)(row / ((size_t)Tq * H));
    const float *q_i = q + ((size_t)b * Tq + i) * C + h * hd;
    float *o_i = out + ((size_t)b * Tq + i) * C + h * hd;
#pragma unroll
    for (int t = 0; t < TEXTOK__CUDA_LANE_CH; t++) acc[t] = 0.0f;
    for (int j = 0; j < Tk; j++) {
        if (key_mask && !key_mask[(size_t)b * Tk + j]) continue;
        const float *k_j = key + ((size_t)b * Tk + j) * C + h * hd, *v_j = v + ((size_t)b * Tk + j) * C + h * hd;
        float part = 0.0f;
        for (int c = lane; c < hd; c += 32) part += q_i[c] * k_j[c];
        const float s = scale * textok__cuda_warp_sum(part) + (bias ? bias[((size_t)h * Tq + i) * Tk + j] : 0.0f);
        const float m_new = s > m ? s : m;
        if (m_new == -INFINITY) continue;   /* only -inf scores so far (a -inf bias): nothing to add */
        const float corr = expf(m - m_new), p = expf(s - m_new);   /* corr = 0 on the first key (m = -inf) */
        l = l * corr + p;
#pragma unroll
        for (int t = 0; t < TEXTOK__CUDA_LANE_CH; t++) {
            const int c = lane + 32 * t;
            if (c < hd) acc[t] = acc[t] * corr + p * v_j[c];
        }
        m = m_new;
    }
#pragma unroll
    for (int t = 0; t < TEXTOK__CUDA_LANE_CH; t++) {
        const int c = lane + 32 * t;
        if (c < hd) o_i[c] = l > 0.0f ? acc[t] / l : 0.0f;
    }
    if (lane == 0) lse[((size_t)b * H + h) * Tq + i] = l > 0.0f ? m + logf(l) : 0.0f;
}

/* dq: one warp per (b, h, i). D = dout_i.out_i; per key p = exp(s - lse), dp = dout_i.v_j,
   ds = p (dp - D); dq_i += scale sum_j ds k_j */
__global__ static void textok__cuda_attention_dq_kernel(float *dq, const float *dout, const float *q, const float *key,
                                                        const float *v, const float *bias, const unsigned char *key_mask,
                                                        const float *out, const float *lse,
                                                        int B, int Tq, int Tk, int C, int H, float scale)
{
    const size_t row = (blockIdx.x * (size_t)blockDim.x + threadIdx.x) / 32;
    const int lane = threadIdx.x % 32, hd = C / H;
    float acc[TEXTOK__CUDA_LANE_CH], part = 0.0f;
    int any = key_mask == NULL;
    if (row >= (size_t)B * H * Tq) return;
    const int i = (int)(row % Tq), h = (int)(row / Tq % H), b = (int)(row / ((size_t)Tq * H));
    const size_t qi = ((size_t)b * Tq + i) * C + h * hd;
    const float L = lse[((size_t)b * H + h) * Tq + i];
    for (int j = 0; j < Tk && !any; j++) any = key_mask[(size_t)b * Tk + j] != 0;
    if (!any) return;
    for (int c = lane; c < hd; c += 32) part += dout[qi + c] * out[qi + c];
    const float D = textok__cuda_warp_sum(part);
#pragma unroll
    for (int t = 0; t < TEXTOK__CUDA_LANE_CH; t++) acc[t] = 0.0f;
    for (int j = 0; j < Tk; j++) {
        if (key_mask && !key_mask[(size_t)b * Tk + j]) continue;
        const size_t kj = ((size_t)b * Tk + j) * C + h * hd;
        float ps = 0.0f, pd = 0.0f;
        for (int c = lane; c < hd; c += 32) { ps += q[qi + c] * key[kj + c]; pd += dout[qi + c] * v[kj + c]; }
        const float s = scale * textok__cuda_warp_sum(ps) + (bias ? bias[((size_t)h * Tq + i) * Tk + j] : 0.0f);
        const float p = expf(s - L), ds = p * (textok__cuda_warp_sum(pd) - D);
#pragma unroll
        for (int t = 0; t < TEXTOK__CUDA_LANE_CH; t++) {
            const int c = lane + 32 * t;
            if (c < hd) acc[t] += ds * key[kj + c];
        }
    }
#pragma unroll
    for (int t = 0; t < TEXTOK__CUDA_LANE_CH; t++) {
        const int c = lane + 32 * t;
        if (c < hd) dq[qi + c] += scale * acc[t];
    }
}

/* dkey, dv: one warp per (b, h, j) over the queries in order (no atomics). A key that is on
   (mask) makes every query of its batch have a key, so no query here is fully masked.
   dv_j += sum_i p_ij dout_i;  dkey_j += scale sum_i ds_ij q_i */
__global__ static void textok__cuda_attention_dkv_kernel(float *dkey, float *dv, const float *dout, const float *q,
                                                         const float *key, const float *v, const float *bias,
                                                         const unsigned char *key_mask, const float *out,
                                                         const float *lse, int B, int Tq, int Tk, int C, int H,
                                                         float scale)
{
    const size_t row = (blockIdx.x * (size_t)blockDim.x + threadIdx.x) / 32;
    const int lane = threadIdx.x % 32, hd = C / H;
    float acc_v[TEXTOK__CUDA_LANE_CH], acc_k[TEXTOK__CUDA_LANE_CH];
    if (row >= (size_t)B * H * Tk) return;
    const int j = (int)(row % Tk), h = (int)(row / Tk % H), b = (int)(row / ((size_t)Tk * H));
    const size_t kj = ((size_t)b * Tk + j) * C + h * hd;
    if (key_mask && !key_mask[(size_t)b * Tk + j]) return;
#pragma unroll
    for (int t = 0; t < TEXTOK__CUDA_LANE_CH; t++) acc_v[t] = acc_k[t] = 0.0f;
    for (int i = 0; i < Tq; i++) {
        const size_t qi = ((size_t)b * Tq + i) * C + h * hd;
        float ps = 0.0f, pd = 0.0f, pD = 0.0f;
        for (int c = lane; c < hd; c += 32) {
            ps += q[qi + c] * key[kj + c];
            pd += dout[qi + c] * v[kj + c];
            pD += dout[qi + c] * out[qi + c];
        }
        const float s = scale * textok__cuda_warp_sum(ps) + (bias ? bias[((size_t)h * Tq + i) * Tk + j] : 0.0f);
        const float p = expf(s - lse[((size_t)b * H + h) * Tq + i]);
        const float ds = p * (textok__cuda_warp_sum(pd) - textok__cuda_warp_sum(pD));
#pragma unroll
        for (int t = 0; t < TEXTOK__CUDA_LANE_CH; t++) {
            const int c = lane + 32 * t;
            if (c < hd) { acc_v[t] += p * dout[qi + c]; acc_k[t] += ds * q[qi + c]; }
        }
    }
#pragma unroll
    for (int t = 0; t < TEXTOK__CUDA_LANE_CH; t++) {
        const int c = lane + 32 * t;
        if (c >= hd) continue;
        if (dv) dv[kj + c] += acc_v[t];
        if (dkey) dkey[kj + c] += scale * acc_k[t];
    }
}

/* dbias (H,Tq,Tk): one thread per (h, i, j), summing ds over the batch in order */
__global__ static void textok__cuda_attention_dbias_kernel(float *dbias, const float *dout, const float *q,
                                                           const float *key, const float *v, const float *bias,
                                                           const unsigned char *key_mask, const float *out,
                                                           const float *lse, int B, int Tq, int Tk, int C, int H,
                                                           float scale)
{
    const int hd = C / H;
    TEXTOK__CUDA_FOR(e, (size_t)H * Tq * Tk) {
        const int j = (int)(e % Tk), i = (int)(e / Tk % Tq), h = (int)(e / ((size_t)Tk * Tq));
        float acc = 0.0f;
        for (int b = 0; b < B; b++) {
            const size_t qi = ((size_t)b * Tq + i) * C + h * hd, kj = ((size_t)b * Tk + j) * C + h * hd;
            float dot = 0.0f, dp = 0.0f, D = 0.0f;
            if (key_mask && !key_mask[(size_t)b * Tk + j]) continue;
            for (int c = 0; c < hd; c++) {
                dot += q[qi + c] * key[kj + c];
                dp += dout[qi + c] * v[kj + c];
                D += dout[qi + c] * out[qi + c];
            }
            const float p = expf(scale * dot + (bias ? bias[e] : 0.0f) - lse[((size_t)b * H + h) * Tq + i]);
            acc += p * (dp - D);
        }
        dbias[e] += acc;
    }
}

static int textok__cuda_attention_check(const textok_kernels *k, const textok_attention_dims *d)
{
    char why[96];
    if (d->H > 0 && d->C % d->H == 0 && d->C / d->H <= TEXTOK__CUDA_HD_MAX) return 1;
    snprintf(why, sizeof why, "C %d, H %d: the head dim must divide C and be at most %d", d->C, d->H, TEXTOK__CUDA_HD_MAX);
    textok__cuda_record(k, TEXTOK_ERR_UNSUPPORTED, "attention", why);
    return 0;
}

static void textok__cuda_attention_forward(const textok_kernels *k, float *out, float *lse, const float *q,
                                           const float *key, const float *v, const float *bias,
                                           const unsigned char *key_mask, const textok_attention_dims *d, float *work)
{
    const size_t rows = (size_t)d->B * d->H * d->Tq;
    (void)work;
    if (textok__cuda_failed(k) || rows == 0 || !textok__cuda_attention_check(k, d)) return;
    textok__cuda_attention_forward_kernel<<<textok__cuda_warp_grid(rows), TEXTOK__CUDA_THREADS>>>(
        out, lse, q, key, v, bias, key_mask, d->B, d->Tq, d->Tk, d->C, d->H, d->scale);
    TEXTOK__CUDA_LAUNCHED(k, "attention_forward");
}

static void textok__cuda_attention_backward(const textok_kernels *k, float *dq, float *dkey, float *dv, float *dbias,
                                            const float *dout, const float *q, const float *key, const float *v,
                                            const float *bias, const unsigned char *key_mask, const float *out,
                                            const float *lse, const textok_attention_dims *d, float *work)
{
    const size_t qrows = (size_t)d->B * d->H * d->Tq, krows = (size_t)d->B * d->H * d->Tk;
    (void)work;
    if (textok__cuda_failed(k) || qrows == 0 || krows == 0 || !textok__cuda_attention_check(k, d)) return;
    if (dq) {
        textok__cuda_attention_dq_kernel<<<textok__cuda_warp_grid(qrows), TEXTOK__CUDA_THREADS>>>(
            dq, dout, q, key, v, bias, key_mask, out, lse, d->B, d->Tq, d->Tk, d->C, d->H, d->scale);
        TEXTOK__CUDA_LAUNCHED(k, "attention_backward dq");
    }
    if (dkey || dv) {
        textok__cuda_attention_dkv_kernel<<<textok__cuda_warp_grid(krows), TEXTOK__CUDA_THREADS>>>(
            dkey, dv, dout, q, key, v, bias, key_mask, out, lse, d->B, d->Tq, d->Tk, d->C, d->H, d->scale);
        TEXTOK__CUDA_LAUNCHED(k, "attention_backward dkey dv");
    }
    if (dbias) {
        textok__cuda_attention_dbias_kernel<<<textok__cuda_grid((size_t)d->H * d->Tq * d->Tk), TEXTOK__CUDA_THREADS>>>(
            dbias, dout, q, key, v, bias, key_mask, out, lse, d->B, d->Tq, d->Tk, d->C, d->H, d->scale);
        TEXTOK__CUDA_LAUNCHED(k, "attention_backward dbias");
    }
}

/* ----- adaLN modulate and gate -------------------------------------------------------------- */
/* out (B,T,C) = x (1 + scale[b]) + shift[b] */
__global__ static void textok__cuda_modulate_forward_kernel(float *out, const float *inp, const float *shift,
                                                            const float *scale, int T, int C, size_t n)
{
    TEXTOK__CUDA_FOR(i, n) {
        const size_t bc = i / ((size_t)T * C) * C + i % C;
        out[i] = inp[i] * (1.0f + scale[bc]) + shift[bc];
    }
}

/* dinp (B,T,C) += dout (1 + scale[b]) */
__global__ static void textok__cuda_modulate_dinp_kernel(float *dinp, const float *dout, const float *scale,
                                                         int T, int C, size_t n)
{
    TEXTOK__CUDA_FOR(i, n) dinp[i] += dout[i] * (1.0f + scale[i / ((size_t)T * C) * C + i % C]);
}

/* dshift[b,c] += sum_t dout; dscale[b,c] += sum_t dout x: one thread per (b,c), float sums
   in t order starting from the old value, exactly as the CPU loop */
__global__ static void textok__cuda_modulate_dparams_kernel(float *dshift, float *dscale, const float *dout,
                                                            const float *inp, int B, int T, int C)
{
    TEXTOK__CUDA_FOR(bc, (size_t)B * C) {
        const size_t b = bc / C, c = bc % C;
        float ash = dshift ? dshift[bc] : 0.0f, asc = dscale ? dscale[bc] : 0.0f;
        for (int t = 0; t < T; t++) {
            const size_t o = (b * T + t) * C + c;
            ash += dout[o];
            asc += dout[o] * inp[o];
        }
        if (dshift) dshift[bc] = ash;
        if (dscale) dscale[bc] = asc;
    }
}

/* out (B,T,C) = resid + gate[b] x */
__global__ static void textok__cuda_gate_forward_kernel(float *out, const float *resid, const float *inp,
                                                        const float *gate, int T, int C, size_t n)
{
    TEXTOK__CUDA_FOR(i, n) out[i] = resid[i] + gate[i / ((size_t)T * C) * C + i % C] * inp[i];
}

/* dresid += dout; dinp += dout gate[b] */
__global__ static void textok__cuda_gate_dinp_kernel(float *dresid, float *dinp, const float *dout, const float *gate,
                                                     int T, int C, size_t n)
{
    TEXTOK__CUDA_FOR(i, n) {
        if (dresid) dresid[i] += dout[i];
        if (dinp) dinp[i] += dout[i] * gate[i / ((size_t)T * C) * C + i % C];
    }
}

/* dgate[b,c] += sum_t dout x, in t order (as the CPU) */
__global__ static void textok__cuda_gate_dgate_kernel(float *dgate, const float *dout, const float *inp, int B, int T, int C)
{
    TEXTOK__CUDA_FOR(bc, (size_t)B * C) {
        const size_t b = bc / C, c = bc % C;
        float a = dgate[bc];
        for (int t = 0; t < T; t++) a += dout[(b * T + t) * C + c] * inp[(b * T + t) * C + c];
        dgate[bc] = a;
    }
}

static void textok__cuda_modulate_forward(const textok_kernels *k, float *out, const float *inp, const float *shift,
                                          const float *scale, int B, int T, int C)
{
    const size_t n = (size_t)B * T * C;
    if (textok__cuda_failed(k) || n == 0) return;
    textok__cuda_modulate_forward_kernel<<<textok__cuda_grid(n), TEXTOK__CUDA_THREADS>>>(out, inp, shift, scale, T, C, n);
    TEXTOK__CUDA_LAUNCHED(k, "modulate_forward");
}
static void textok__cuda_modulate_backward(const textok_kernels *k, float *dinp, float *dshift, float *dscale,
                                           const float *dout, const float *inp, const float *scale, int B, int T, int C)
{
    const size_t n = (size_t)B * T * C;
    if (textok__cuda_failed(k) || n == 0) return;
    if (dinp) {
        textok__cuda_modulate_dinp_kernel<<<textok__cuda_grid(n), TEXTOK__CUDA_THREADS>>>(dinp, dout, scale, T, C, n);
        TEXTOK__CUDA_LAUNCHED(k, "modulate_backward dinp");
    }
    if (dshift || dscale) {
        textok__cuda_modulate_dparams_kernel<<<textok__cuda_grid((size_t)B * C), TEXTOK__CUDA_THREADS>>>(
            dshift, dscale, dout, inp, B, T, C);
        TEXTOK__CUDA_LAUNCHED(k, "modulate_backward dshift dscale");
    }
}
static void textok__cuda_gate_forward(const textok_kernels *k, float *out, const float *resid, const float *inp,
                                      const float *gate, int B, int T, int C)
{
    const size_t n = (size_t)B * T * C;
    if (textok__cuda_failed(k) || n == 0) return;
    textok__cuda_gate_forward_kernel<<<textok__cuda_grid(n), TEXTOK__CUDA_THREADS>>>(out, resid, inp, gate, T, C, n);
    TEXTOK__CUDA_LAUNCHED(k, "gate_forward");
}
static void textok__cuda_gate_backward(const textok_kernels *k, float *dresid, float *dinp, float *dgate,
                                       const float *dout, const float *inp, const float *gate, int B, int T, int C)
{
    const size_t n = (size_t)B * T * C;
    if (textok__cuda_failed(k) || n == 0) return;
    if (dresid || dinp) {
        textok__cuda_gate_dinp_kernel<<<textok__cuda_grid(n), TEXTOK__CUDA_THREADS>>>(dresid, dinp, dout, gate, T, C, n);
        TEXTOK__CUDA_LAUNCHED(k, "gate_backward dinp");
    }
    if (dgate) {
        textok__cuda_gate_dgate_kernel<<<textok__cuda_grid((size_t)B * C), TEXTOK__CUDA_THREADS>>>(dgate, dout, inp, B, T, C);
        TEXTOK__CUDA_LAUNCHED(k, "gate_backward dgate");
    }
}

/* ----- conv2d: im2col in pixel tiles + cuBLAS ----------------------------------------------
   For image b and a tile of np output pixels [p0, p0+np) of the P = OH*OW:
     col (CKK, np), CKK = C KH KW, row r = (c, ky, kx): the input under each pixel's window
     forward:  out_b[:, tile] (OC, np; ld P)  = W (OC, CKK) . col          (+ bias after)
     dweight:  dW (OC, CKK)                   += dout_b[:, tile] . col^T
     dinput:   dcol (CKK, np)                  = W^T . dout_b[:, tile];  col2im adds it back
   The tile is as many pixels as `work` (textok_conv2d_work_floats(d) floats) holds columns of.
   A 1x1 stride-1 unpadded conv needs no col: the image (C, P) already is it, and work is 0. */
__global__ static void textok__cuda_im2col_kernel(float *col, const float *img, int C, int H, int W, int KH, int KW,
                                                  int stride, int pad, int OW, int p0, int np)
{
    TEXTOK__CUDA_FOR(e, (size_t)C * KH * KW * np) {
        const int pp = (int)(e % np), r = (int)(e / np);
        const int kx = r % KW, ky = r / KW % KH, c = r / (KW * KH);
        const int p = p0 + pp, oy = p / OW, ox = p % OW;
        const int y = oy * stride - pad + ky, x = ox * stride - pad + kx;
        col[e] = (y < 0 || y >= H || x < 0 || x >= W) ? 0.0f : img[((size_t)c * H + y) * W + x];
    }
}

/* dimg (C,H,W) += the column gradient dcol (CKK, np), each entry to the pixel it was read from */
__global__ static void textok__cuda_col2im_add_kernel(float *dimg, const float *dcol, int C, int H, int W, int KH,
                                                      int KW, int stride, int pad, int OW, int p0, int np)
{
    TEXTOK__CUDA_FOR(e, (size_t)C * KH * KW * np) {
        const int pp = (int)(e % np), r = (int)(e / np);
        const int kx = r % KW, ky = r / KW % KH, c = r / (KW * KH);
        const int p = p0 + pp, oy = p / OW, ox = p % OW;
        const int y = oy * stride - pad + ky, x = ox * stride - pad + kx;
        if (y >= 0 && y < H && x >= 0 && x < W) atomicAdd(&dimg[((size_t)c * H + y) * W + x], dcol[e]);
    }
}

/* out (B,OC,P) += bias[o] */
__global__ static void textok__cuda_conv_bias_kernel(float *out, const float *bias, int OC, int P, size_t n)
{
    TEXTOK__CUDA_FOR(i, n) out[i] += bias[i / P % OC];
}

/* dbias[o] += sum over images and pixels of dout (B,OC,P); one block per o, double */
__global__ static void textok__cuda_conv_dbias_kernel(float *dbias, const float *dout, int B, int OC, int P)
{
    const int o = blockIdx.x;
    double s = 0.0;
    for (int b = 0; b < B; b++)
        for (int p = threadIdx.x; p < P; p += blockDim.x) s += dout[((size_t)b * OC + o) * P + p];
    s = textok__cuda_block_sum(s);
    if (threadIdx.x == 0) dbias[o] += (float)s;
}

static int textok__cuda_conv_pointwise(const textok_conv2d_dims *d)
{
    return d->KH == 1 && d->KW == 1 && d->stride == 1 && d->pad == 0;
}

/* pixels per tile, or 0 (recorded as an error) when work cannot hold one column */
static int textok__cuda_conv_tile(const textok_kernels *k, const textok_conv2d_dims *d, int P)
{
    const size_t CKK = (size_t)d->C * d->KH * d->KW, cap = textok_conv2d_work_floats(d);
    size_t np = CKK ? cap / CKK : (size_t)P;
    if (np > (size_t)P) np = (size_t)P;
    if (textok__cuda_st(k)->small_tiles && np > 7) np = 7;
    if (np == 0) textok__cuda_record(k, TEXTOK_ERR_ARG, "conv2d", "work is smaller than one im2col column");
    return (int)np;
}

static void textok__cuda_conv2d_forward(const textok_kernels *k, float *out, const float *inp, const float *weight,
                                        const float *bias, const textok_conv2d_dims *d, float *work)
{
    const int OH = textok_conv2d_out_h(d), OW = textok_conv2d_out_w(d), P = OH * OW, CKK = d->C * d->KH * d->KW;
    const size_t img_in = (size_t)d->C * d->H * d->W, img_out = (size_t)d->OC * P;
    if (textok__cuda_failed(k) || d->B <= 0 || P <= 0 || d->OC <= 0) return;
    if (textok__cuda_conv_pointwise(d)) {   /* out_b (OC,P) = W (OC,C) . x_b (C,P), all images at once */
        textok__cuda_gemm(k, 0, 0, d->OC, P, d->C, 1.0f, weight, d->C, 0, inp, P, (long long)img_in,
                          0.0f, out, P, (long long)img_out, d->B);
    } else {
        const int np_max = textok__cuda_conv_tile(k, d, P);
        for (int b = 0; b < d->B && np_max > 0; b++)
            for (int p0 = 0; p0 < P; p0 += np_max) {
                const int np = P - p0 < np_max ? P - p0 : np_max;
                textok__cuda_im2col_kernel<<<textok__cuda_grid((size_t)CKK * np), TEXTOK__CUDA_THREADS>>>(
                    work, inp + b * img_in, d->C, d->H, d->W, d->KH, d->KW, d->stride, d->pad, OW, p0, np);
                TEXTOK__CUDA_LAUNCHED(k, "conv2d_forward im2col");
                textok__cuda_gemm(k, 0, 0, d->OC, np, CKK, 1.0f, weight, CKK, 0, work, np, 0,
                                  0.0f, out + b * img_out + p0, P, 0, 1);
            }
    }
    if (bias) {
        const size_t n = (size_t)d->B * img_out;
        textok__cuda_conv_bias_kernel<<<textok__cuda_grid(n), TEXTOK__CUDA_THREADS>>>(out, bias, d->OC, P, n);
        TEXTOK__CUDA_LAUNCHED(k, "conv2d_forward bias");
    }
}

static void textok__cuda_conv2d_backward(const textok_kernels *k, float *dinp, float *dweight, float *dbias,
                                         const float *dout, const float *inp, const float *weight,
                                         const textok_conv2d_dims *d, float *work)
{
    const int OH = textok_conv2d_out_h(d), OW = textok_conv2d_out_w(d), P = OH * OW, CKK = d->C * d->KH * d->KW;
    const size_t img_in = (size_t)d->C * d->H * d->W, img_out = (size_t)d->OC * P;
    if (textok__cuda_failed(k) || d->B <= 0 || P <= 0 || d->OC <= 0) return;
    if (dbias) {
        textok__cuda_conv_dbias_kernel<<<d->OC, TEXTOK__CUDA_THREADS>>>(dbias, dout, d->B, d->OC, P);
        TEXTOK__CUDA_LAUNCHED(k, "conv2d_backward dbias");
    }
    if (textok__cuda_conv_pointwise(d)) {
        if (dinp)   /* dx_b (C,P) += W^T (C,OC) . dout_b (OC,P), all images at once */
            textok__cuda_gemm(k, 1, 0, d->C, P, d->OC, 1.0f, weight, d->C, 0, dout, P, (long long)img_out,
                              1.0f, dinp, P, (long long)img_in, d->B);
        if (dweight)   /* dW (OC,C) += dout_b (OC,P) . x_b^T (P,C), image by image */
            for (int b = 0; b < d->B; b++)
                textok__cuda_gemm(k, 0, 1, d->OC, d->C, P, 1.0f, dout + b * img_out, P, 0, inp + b * img_in, P, 0,
                                  1.0f, dweight, d->C, 0, 1);
        return;
    }
    if (!dinp && !dweight) return;
    const int np_max = textok__cuda_conv_tile(k, d, P);
    for (int b = 0; b < d->B && np_max > 0; b++)
        for (int p0 = 0; p0 < P; p0 += np_max) {
            const int np = P - p0 < np_max ? P - p0 : np_max;
            const size_t ncol = (size_t)CKK * np;
            if (dweight) {
                textok__cuda_im2col_kernel<<<textok__cuda_grid(ncol), TEXTOK__CUDA_THREADS>>>(
                    work, inp + b * img_in, d->C, d->H, d->W, d->KH, d->KW, d->stride, d->pad, OW, p0, np);
                TEXTOK__CUDA_LAUNCHED(k, "conv2d_backward im2col");
                textok__cuda_gemm(k, 0, 1, d->OC, CKK, np, 1.0f, dout + b * img_out + p0, P, 0, work, np, 0,
                                  1.0f, dweight, CKK, 0, 1);
            }
            if (dinp) {   /* work is overwritten only after the dweight GEMM (same stream: in order) */
                textok__cuda_gemm(k, 1, 0, CKK, np, d->OC, 1.0f, weight, CKK, 0, dout + b * img_out + p0, P, 0,
                                  0.0f, work, np, 0, 1);
                textok__cuda_col2im_add_kernel<<<textok__cuda_grid(ncol), TEXTOK__CUDA_THREADS>>>(
                    dinp + b * img_in, work, d->C, d->H, d->W, d->KH, d->KW, d->stride, d->pad, OW, p0, np);
                TEXTOK__CUDA_LAUNCHED(k, "conv2d_backward col2im");
            }
        }
}

/* ----- groupnorm ---------------------------------------------------------------------------- */
/* one block per group (b, g): the contiguous (C/G)*HW values from channel g*C/G of image b */
__global__ static void textok__cuda_groupnorm_forward_kernel(float *out, float *mean, float *rstd, const float *inp,
                                                             const float *weight, const float *bias,
                                                             int C, int HW, int G, float eps)
{
    const size_t bg = blockIdx.x;
    const int cg = C / G;
    const size_t n = (size_t)cg * HW;
    const float *x = inp + bg * n;
    float *o = out + bg * n, mf, sf;
    double m = 0.0, v = 0.0;
    for (size_t i = threadIdx.x; i < n; i += blockDim.x) m += x[i];
    m = textok__cuda_block_sum(m) / (double)n;
    for (size_t i = threadIdx.x; i < n; i += blockDim.x) v += (x[i] - m) * (x[i] - m);
    v = textok__cuda_block_sum(v) / (double)n;
    mf = (float)m;
    sf = (float)(1.0 / sqrt(v + eps));
    for (size_t i = threadIdx.x; i < n; i += blockDim.x) {
        const int c = (int)(bg % G) * cg + (int)(i / HW);
        float y = (x[i] - mf) * sf;
        o[i] = weight ? y * weight[c] + (bias ? bias[c] : 0.0f) : y;
    }
    if (threadIdx.x == 0) {
        if (mean) mean[bg] = mf;
        if (rstd) rstd[bg] = sf;
    }
}

/* dx = rstd (g - mean(g) - xhat mean(g xhat)) over the group, g = dout weight[c]; block per group */
__global__ static void textok__cuda_groupnorm_dinp_kernel(float *dinp, const float *dout, const float *inp,
                                                          const float *weight, const float *mean, const float *rstd,
                                                          int C, int HW, int G)
{
    const size_t bg = blockIdx.x;
    const int cg = C / G;
    const size_t n = (size_t)cg * HW;
    const float *x = inp + bg * n, *dy = dout + bg * n;
    float *dx = dinp + bg * n;
    double sg = 0.0, sgx = 0.0, mg, mgx;
    for (size_t i = threadIdx.x; i < n; i += blockDim.x) {
        double g = (double)dy[i] * (weight ? weight[(bg % G) * cg + (int)(i / HW)] : 1.0f);
        sg += g;
        sgx += g * ((x[i] - mean[bg]) * rstd[bg]);
    }
    mg = textok__cuda_block_sum(sg) / (double)n;
    mgx = textok__cuda_block_sum(sgx) / (double)n;
    for (size_t i = threadIdx.x; i < n; i += blockDim.x) {
        double g = (double)dy[i] * (weight ? weight[(bg % G) * cg + (int)(i / HW)] : 1.0f);
        dx[i] += (float)(rstd[bg] * (g - mg - ((x[i] - mean[bg]) * rstd[bg]) * mgx));
    }
}

/* dweight[c] += sum_{b,hw} dout xhat, dbias[c] += sum dout: one block per channel c */
__global__ static void textok__cuda_groupnorm_dparams_kernel(float *dweight, float *dbias, const float *dout,
                                                             const float *inp, const float *mean, const float *rstd,
                                                             int B, int C, int HW, int G)
{
    const int c = blockIdx.x, cg = C / G;
    double sw = 0.0, sb = 0.0;
    for (int b = 0; b < B; b++) {
        const int bgi = b * G + c / cg;
        const float *x = inp + ((size_t)b * C + c) * HW, *dy = dout + ((size_t)b * C + c) * HW;
        for (int i = threadIdx.x; i < HW; i += blockDim.x) {
            sw += (double)dy[i] * ((x[i] - mean[bgi]) * rstd[bgi]);
            sb += dy[i];
        }
    }
    sw = textok__cuda_block_sum(sw);
    sb = textok__cuda_block_sum(sb);
    if (threadIdx.x == 0) {
        if (dweight) dweight[c] += (float)sw;
        if (dbias) dbias[c] += (float)sb;
    }
}

static void textok__cuda_groupnorm_forward(const textok_kernels *k, float *out, float *mean, float *rstd,
                                           const float *inp, const float *weight, const float *bias,
                                           int B, int C, int HW, int G, float eps)
{
    if (textok__cuda_failed(k) || B * G <= 0) return;
    textok__cuda_groupnorm_forward_kernel<<<B * G, TEXTOK__CUDA_THREADS>>>(out, mean, rstd, inp, weight, bias, C, HW, G, eps);
    TEXTOK__CUDA_LAUNCHED(k, "groupnorm_forward");
}
static void textok__cuda_groupnorm_backward(const textok_kernels *k, float *dinp, float *dweight, float *dbias,
                                            const float *dout, const float *inp, const float *weight,
                                            const float *mean, const float *rstd, int B, int C, int HW, int G)
{
    if (textok__cuda_failed(k) || B * G <= 0) return;
    if (dinp) {
        textok__cuda_groupnorm_dinp_kernel<<<B * G, TEXTOK__CUDA_THREADS>>>(dinp, dout, inp, weight, mean, rstd, C, HW, G);
        TEXTOK__CUDA_LAUNCHED(k, "groupnorm_backward dinp");
    }
    if (dweight || dbias) {
        textok__cuda_groupnorm_dparams_kernel<<<C, TEXTOK__CUDA_THREADS>>>(dweight, dbias, dout, inp, mean, rstd, B, C, HW, G);
        TEXTOK__CUDA_LAUNCHED(k, "groupnorm_backward dweight");
    }
}

/* ----- nearest upsampling ------------------------------------------------------------------- */
/* out (BC, H f, W f) = inp (BC, H, W) at (y/f, x/f); one thread per output */
__global__ static void textok__cuda_upsample_forward_kernel(float *out, const float *inp, int H, int W, int f, size_t n)
{
    TEXTOK__CUDA_FOR(i, n) {
        const size_t Wf = (size_t)W * f, Hf = (size_t)H * f;
        const size_t x = i % Wf, y = i / Wf % Hf, p = i / (Wf * Hf);
        out[i] = inp[(p * H + y / f) * W + x / f];
    }
}

/* dinp (BC,H,W) += the sum of its f x f block of dout, in (dy, dx) order; one thread per input */
__global__ static void textok__cuda_upsample_backward_kernel(float *dinp, const float *dout, int H, int W, int f, size_t n)
{
    TEXTOK__CUDA_FOR(i, n) {
        const size_t x = i % W, y = i / W % H, p = i / ((size_t)W * H);
        float s = 0.0f;
        for (int dy = 0; dy < f; dy++)
            for (int dx = 0; dx < f; dx++) s += dout[(p * H * f + y * f + dy) * W * f + x * f + dx];
        dinp[i] += s;
    }
}

static void textok__cuda_upsample_forward(const textok_kernels *k, float *out, const float *inp, int BC, int H, int W, int f)
{
    const size_t n = (size_t)BC * H * W * f * f;
    if (textok__cuda_failed(k) || n == 0) return;
    textok__cuda_upsample_forward_kernel<<<textok__cuda_grid(n), TEXTOK__CUDA_THREADS>>>(out, inp, H, W, f, n);
    TEXTOK__CUDA_LAUNCHED(k, "upsample_forward");
}
static void textok__cuda_upsample_backward(const textok_kernels *k, float *dinp, const float *dout, int BC, int H, int W, int f)
{
    const size_t n = (size_t)BC * H * W;
    if (textok__cuda_failed(k) || n == 0 || !dinp) return;
    textok__cuda_upsample_backward_kernel<<<textok__cuda_grid(n), TEXTOK__CUDA_THREADS>>>(dinp, dout, H, W, f, n);
    TEXTOK__CUDA_LAUNCHED(k, "upsample_backward");
}

/* ----- codebook search ---------------------------------------------------------------------- */
/* ee (K) = |e_j|^2, in double rounded once; one thread per codebook row */
__global__ static void textok__cuda_cb_norms_kernel(float *ee, const float *codebook, int K, int D)
{
    TEXTOK__CUDA_FOR(j, (size_t)K) {
        double s = 0.0;
        for (int c = 0; c < D; c++) s += (double)codebook[j * D + c] * codebook[j * D + c];
        ee[j] = (float)s;
    }
}

/* one warp per row r of the block: argmin_j ee[j] + S[r][j] (S = -2 z.e), ties to the lowest j
   (each lane scans its j's upward with a strict <, the lanes' winners are merged by (value, j));
   dist = |z|^2 + that minimum */
__global__ static void textok__cuda_cb_argmin_kernel(int32_t *idx, float *dist, const float *S, const float *ee,
                                                     const float *z, int i0, int rows, int K, int D)
{
    const int r = (int)((blockIdx.x * (size_t)blockDim.x + threadIdx.x) / 32), lane = threadIdx.x % 32;
    float best = FLT_MAX;
    int arg = 0;
    if (r >= rows) return;
    const float *s = S + (size_t)r * K;
    for (int j = lane; j < K; j += 32) {
        const float dj = ee[j] + s[j];
        if (dj < best) { best = dj; arg = j; }
    }
    for (int o = 16; o > 0; o >>= 1) {
        const float ob = __shfl_xor_sync(0xffffffffu, best, o);
        const int oa = __shfl_xor_sync(0xffffffffu, arg, o);
        if (ob < best || (ob == best && oa < arg)) { best = ob; arg = oa; }
    }
    if (lane == 0) {
        const float *zi = z + (size_t)(i0 + r) * D;
        float zz = 0.0f;
        for (int c = 0; c < D; c++) zz += zi[c] * zi[c];
        idx[i0 + r] = arg;
        if (dist) dist[i0 + r] = zz + best;
    }
}

static void textok__cuda_codebook_search(const textok_kernels *k, int32_t *idx, float *dist, const float *z,
                                         const float *codebook, int N, int K, int D, float *work)
{
    float *ee = work, *S = work + K;
    if (textok__cuda_failed(k) || N <= 0 || K <= 0) return;
    textok__cuda_cb_norms_kernel<<<textok__cuda_grid((size_t)K), TEXTOK__CUDA_THREADS>>>(ee, codebook, K, D);
    TEXTOK__CUDA_LAUNCHED(k, "codebook_search norms");
    for (int i0 = 0; i0 < N; i0 += TEXTOK__CUDA_CB_ROWS) {
        const int rows = N - i0 < TEXTOK__CUDA_CB_ROWS ? N - i0 : TEXTOK__CUDA_CB_ROWS;
        /* S (rows, K) = -2 z_blk (rows, D) . codebook^T */
        textok__cuda_gemm(k, 0, 1, rows, K, D, -2.0f, z + (size_t)i0 * D, D, 0, codebook, D, 0, 0.0f, S, K, 0, 1);
        textok__cuda_cb_argmin_kernel<<<textok__cuda_warp_grid((size_t)rows), TEXTOK__CUDA_THREADS>>>(
            idx, dist, S, ee, z, i0, rows, K, D);
        TEXTOK__CUDA_LAUNCHED(k, "codebook_search argmin");
    }
}

/* ----- cross-entropy ------------------------------------------------------------------------ */
/* one block per row of logits (N,V): lse in double; probs (N,V) = exp(x - lse); losses (N) with
   label smoothing ls, 0 for an ignored (negative or out of range) target */
__global__ static void textok__cuda_ce_forward_kernel(float *losses, float *probs, const float *logits,
                                                      const int32_t *targets, int V, float label_smoothing)
{
    const size_t n = blockIdx.x;
    const float *x = logits + n * V;
    float *p = probs + n * V, m = -FLT_MAX;
    double s = 0.0, sum_x = 0.0, lse;
    const int y = targets[n];
    for (int c = threadIdx.x; c < V; c += blockDim.x) m = x[c] > m ? x[c] : m;
    m = textok__cuda_block_max(m);
    for (int c = threadIdx.x; c < V; c += blockDim.x) { s += exp((double)x[c] - m); sum_x += x[c]; }
    s = textok__cuda_block_sum(s);
    sum_x = textok__cuda_block_sum(sum_x);
    lse = m + log(s);
    for (int c = threadIdx.x; c < V; c += blockDim.x) p[c] = (float)exp(x[c] - lse);
    if (threadIdx.x != 0) return;
    if (y < 0 || y >= V) { losses[n] = 0.0f; return; }
    losses[n] = (float)((1.0 - label_smoothing) * (lse - x[y]) + label_smoothing * (lse - sum_x / V));
}

/* dlogits (N,V) += dlosses[n] (p - ls/V - (1 - ls)[c == y]); nothing for an ignored target */
__global__ static void textok__cuda_ce_backward_kernel(float *dlogits, const float *dlosses, const float *probs,
                                                       const int32_t *targets, int V, float label_smoothing, size_t total)
{
    TEXTOK__CUDA_FOR(i, total) {
        const size_t n = i / V;
        const int c = (int)(i % V), y = targets[n];
        const float g = dlosses[n], off = label_smoothing / V;
        if (y < 0 || y >= V) continue;
        dlogits[i] += g * (probs[i] - off - (c == y ? 1.0f - label_smoothing : 0.0f));
    }
}

static void textok__cuda_cross_entropy_forward(const textok_kernels *k, float *losses, float *probs, const float *logits,
                                               const int32_t *targets, int N, int V, float label_smoothing)
{
    if (textok__cuda_failed(k) || N <= 0) return;
    textok__cuda_ce_forward_kernel<<<N, TEXTOK__CUDA_THREADS>>>(losses, probs, logits, targets, V, label_smoothing);
    TEXTOK__CUDA_LAUNCHED(k, "cross_entropy_forward");
}
static void textok__cuda_cross_entropy_backward(const textok_kernels *k, float *dlogits, const float *dlosses,
                                                const float *probs, const int32_t *targets, int N, int V,
                                                float label_smoothing)
{
    const size_t total = (size_t)N * V;
    if (textok__cuda_failed(k) || total == 0 || !dlogits) return;
    textok__cuda_ce_backward_kernel<<<textok__cuda_grid(total), TEXTOK__CUDA_THREADS>>>(
        dlogits, dlosses, probs, targets, V, label_smoothing, total);
    TEXTOK__CUDA_LAUNCHED(k, "cross_entropy_backward");
}

/* ----- AdamW -------------------------------------------------------------------------------- */
/* params, m, v (n): the CPU's float expressions, with the scalars formed on the host as there */
__global__ static void textok__cuda_adamw_kernel(float *params, const float *grads, float *m, float *v, size_t n,
                                                 float b1, float b2, float one_minus_b1, float one_minus_b2,
                                                 float step_size, float bc2_sqrt, float decay, float eps)
{
    TEXTOK__CUDA_FOR(i, n) {
        float g = grads[i];
        params[i] *= decay;
        m[i] = b1 * m[i] + one_minus_b1 * g;
        v[i] = b2 * v[i] + one_minus_b2 * g * g;
        params[i] -= step_size * m[i] / (sqrtf(v[i]) / bc2_sqrt + eps);
    }
}

static void textok__cuda_adamw_update(const textok_kernels *k, float *params, const float *grads, float *m, float *v,
                                      size_t n, const textok_adamw_params *hp, int step)
{
    /* scalars formed in double, each rounded once to float (as torch applies Python floats) */
    const float b1 = (float)hp->beta1, b2 = (float)hp->beta2;
    const float one_minus_b1 = (float)(1.0 - hp->beta1), one_minus_b2 = (float)(1.0 - hp->beta2);
    const float step_size = (float)(hp->lr / (1.0 - pow(hp->beta1, step)));
    const float bc2_sqrt = (float)sqrt(1.0 - pow(hp->beta2, step));
    const float decay = (float)(1.0 - hp->lr * hp->weight_decay), eps = (float)hp->eps;
    if (textok__cuda_failed(k) || n == 0) return;
    textok__cuda_adamw_kernel<<<textok__cuda_grid(n), TEXTOK__CUDA_THREADS>>>(
        params, grads, m, v, n, b1, b2, one_minus_b1, one_minus_b2, step_size, bc2_sqrt, decay, eps);
    TEXTOK__CUDA_LAUNCHED(k, "adamw_update");
}

/* ----- transpose, l2norm, embedding, unpatchify, Gaussian sample --------------------------- */
/* out (B,C,R) = inp (B,R,C) transposed (accumulate = 0), or out += (accumulate = 1); one thread
   per output element */
__global__ static void textok__cuda_transpose_kernel(float *out, const float *inp, int R, int C, size_t n, int accumulate)
{
    TEXTOK__CUDA_FOR(i, n) {
        const size_t r = i % R, c = i / R % C, b = i / ((size_t)R * C);
        const float x = inp[(b * R + r) * C + c];
        if (accumulate) out[i] += x; else out[i] = x;
    }
}

static void textok__cuda_transpose_forward(const textok_kernels *k, float *out, const float *inp, int B, int R, int C)
{
    const size_t n = (size_t)B * R * C;
    if (textok__cuda_failed(k) || n == 0) return;
    textok__cuda_transpose_kernel<<<textok__cuda_grid(n), TEXTOK__CUDA_THREADS>>>(out, inp, R, C, n, 0);
    TEXTOK__CUDA_LAUNCHED(k, "transpose_forward");
}
static void textok__cuda_transpose_backward(const textok_kernels *k, float *dinp, const float *dout, int B, int R, int C)
{
    const size_t n = (size_t)B * R * C;
    if (textok__cuda_failed(k) || n == 0 || !dinp) return;
    /* dout is (B,C,R): its transpose (B,R,C) is added to dinp */
    textok__cuda_transpose_kernel<<<textok__cuda_grid(n), TEXTOK__CUDA_THREADS>>>(dinp, dout, C, R, n, 1);
    TEXTOK__CUDA_LAUNCHED(k, "transpose_backward");
}

/* out = x / max(|x|, eps) per row of (N,C); one block per row, the norm in double */
__global__ static void textok__cuda_l2norm_forward_kernel(float *out, const float *inp, int C, float eps)
{
    const size_t n = blockIdx.x;
    const float *x = inp + n * C;
    float *y = out + n * C;
    double s = 0.0;
    for (int c = threadIdx.x; c < C; c += blockDim.x) s += (double)x[c] * x[c];
    s = textok__cuda_block_sum(s);
    const float nrm = (float)sqrt(s), den = nrm > eps ? nrm : eps;
    for (int c = threadIdx.x; c < C; c += blockDim.x) y[c] = x[c] / den;
}

/* dx += (dy - y (y.dy)) / |x| where |x| > eps, else dy / eps; one block per row */
__global__ static void textok__cuda_l2norm_backward_kernel(float *dinp, const float *dout, const float *inp, int C, float eps)
{
    const size_t n = blockIdx.x;
    const float *x = inp + n * C, *dy = dout + n * C;
    float *dx = dinp + n * C;
    double s = 0.0, ydy = 0.0, nrm;
    for (int c = threadIdx.x; c < C; c += blockDim.x) { s += (double)x[c] * x[c]; ydy += (double)x[c] * dy[c]; }
    nrm = sqrt(textok__cuda_block_sum(s));
    ydy = textok__cuda_block_sum(ydy);
    if (!(nrm > eps)) {
        for (int c = threadIdx.x; c < C; c += blockDim.x) dx[c] += dy[c] / eps;
        return;
    }
    ydy /= nrm;
    for (int c = threadIdx.x; c < C; c += blockDim.x) dx[c] += (float)((dy[c] - (x[c] / nrm) * ydy) / nrm);
}

static void textok__cuda_l2norm_forward(const textok_kernels *k, float *out, const float *inp, int N, int C, float eps)
{
    if (textok__cuda_failed(k) || N <= 0) return;
    textok__cuda_l2norm_forward_kernel<<<N, TEXTOK__CUDA_THREADS>>>(out, inp, C, eps);
    TEXTOK__CUDA_LAUNCHED(k, "l2norm_forward");
}
static void textok__cuda_l2norm_backward(const textok_kernels *k, float *dinp, const float *dout, const float *inp,
                                         int N, int C, float eps)
{
    if (textok__cuda_failed(k) || N <= 0 || !dinp) return;
    textok__cuda_l2norm_backward_kernel<<<N, TEXTOK__CUDA_THREADS>>>(dinp, dout, inp, C, eps);
    TEXTOK__CUDA_LAUNCHED(k, "l2norm_backward");
}

/* out (N,D) = table[ids[i]] */
__global__ static void textok__cuda_embedding_forward_kernel(float *out, const float *table, const int32_t *ids,
                                                             int D, size_t n)
{
    TEXTOK__CUDA_FOR(e, n) out[e] = table[(size_t)ids[e / D] * D + e % D];
}

/* dtable[ids[i]] += dout[i]: atomicAdd, repeated ids collide */
__global__ static void textok__cuda_embedding_backward_kernel(float *dtable, const float *dout, const int32_t *ids,
                                                              int D, size_t n)
{
    TEXTOK__CUDA_FOR(e, n) atomicAdd(&dtable[(size_t)ids[e / D] * D + e % D], dout[e]);
}

static void textok__cuda_embedding_forward(const textok_kernels *k, float *out, const float *table, const int32_t *ids,
                                           int N, int D)
{
    const size_t n = (size_t)N * D;
    if (textok__cuda_failed(k) || n == 0) return;
    textok__cuda_embedding_forward_kernel<<<textok__cuda_grid(n), TEXTOK__CUDA_THREADS>>>(out, table, ids, D, n);
    TEXTOK__CUDA_LAUNCHED(k, "embedding_forward");
}
static void textok__cuda_embedding_backward(const textok_kernels *k, float *dtable, const float *dout, const int32_t *ids,
                                            int N, int D)
{
    const size_t n = (size_t)N * D;
    if (textok__cuda_failed(k) || n == 0 || !dtable) return;
    textok__cuda_embedding_backward_kernel<<<textok__cuda_grid(n), TEXTOK__CUDA_THREADS>>>(dtable, dout, ids, D, n);
    TEXTOK__CUDA_LAUNCHED(k, "embedding_backward");
}

/* image (B,C,H,W) element <-> token (B, (H/p)(W/p), p p C) element: a bijection, so one thread
   per image element either writes the image (to_image) or adds into the token (patchify) */
__global__ static void textok__cuda_unpatchify_kernel(float *img, float *tok, int C, int H, int W, int p, size_t n,
                                                      int to_image)
{
    TEXTOK__CUDA_FOR(i, n) {
        const size_t x = i % W, y = i / W % H, c = i / ((size_t)W * H) % C, b = i / ((size_t)W * H * C);
        const size_t gw = (size_t)W / p;
        const size_t ti = b * (H / p) * gw * p * p * C + ((y / p) * gw + x / p) * p * p * C + ((y % p) * p + x % p) * C + c;
        if (to_image) img[i] = tok[ti];
        else tok[ti] += img[i];
    }
}

static void textok__cuda_unpatchify_forward(const textok_kernels *k, float *out, const float *inp, int B, int C, int H,
                                            int W, int p)
{
    const size_t n = (size_t)B * C * H * W;
    if (textok__cuda_failed(k) || n == 0) return;
    textok__cuda_unpatchify_kernel<<<textok__cuda_grid(n), TEXTOK__CUDA_THREADS>>>(out, (float *)inp, C, H, W, p, n, 1);
    TEXTOK__CUDA_LAUNCHED(k, "unpatchify_forward");
}
static void textok__cuda_unpatchify_backward(const textok_kernels *k, float *dinp, const float *dout, int B, int C, int H,
                                             int W, int p)
{
    const size_t n = (size_t)B * C * H * W;
    if (textok__cuda_failed(k) || n == 0 || !dinp) return;
    textok__cuda_unpatchify_kernel<<<textok__cuda_grid(n), TEXTOK__CUDA_THREADS>>>((float *)dout, dinp, C, H, W, p, n, 0);
    TEXTOK__CUDA_LAUNCHED(k, "unpatchify_backward");
}

/* z = mean + exp(0.5 lv) noise, lv = clamp(logvar, -30, 20) */
__global__ static void textok__cuda_gaussian_forward_kernel(float *z, const float *mean, const float *logvar,
                                                            const float *noise, size_t n)
{
    TEXTOK__CUDA_FOR(i, n) {
        float lv = logvar[i] < TEXTOK__LOGVAR_MIN_F ? TEXTOK__LOGVAR_MIN_F
                 : logvar[i] > TEXTOK__LOGVAR_MAX_F ? TEXTOK__LOGVAR_MAX_F : logvar[i];
        z[i] = mean[i] + expf(0.5f * lv) * noise[i];
    }
}

/* dmean += dz; dlogvar += dz noise 0.5 exp(0.5 lv) inside the clamp range */
__global__ static void textok__cuda_gaussian_backward_kernel(float *dmean, float *dlogvar, const float *dz,
                                                             const float *logvar, const float *noise, size_t n)
{
    TEXTOK__CUDA_FOR(i, n) {
        float lv = logvar[i];
        if (dmean) dmean[i] += dz[i];
        if (dlogvar && lv >= TEXTOK__LOGVAR_MIN_F && lv <= TEXTOK__LOGVAR_MAX_F)
            dlogvar[i] += dz[i] * noise[i] * 0.5f * expf(0.5f * lv);
    }
}

static void textok__cuda_gaussian_sample_forward(const textok_kernels *k, float *z, const float *mean,
                                                 const float *logvar, const float *noise, size_t n)
{
    if (textok__cuda_failed(k) || n == 0) return;
    textok__cuda_gaussian_forward_kernel<<<textok__cuda_grid(n), TEXTOK__CUDA_THREADS>>>(z, mean, logvar, noise, n);
    TEXTOK__CUDA_LAUNCHED(k, "gaussian_sample_forward");
}
static void textok__cuda_gaussian_sample_backward(const textok_kernels *k, float *dmean, float *dlogvar, const float *dz,
                                                  const float *logvar, const float *noise, size_t n)
{
    if (textok__cuda_failed(k) || n == 0 || (!dmean && !dlogvar)) return;
    textok__cuda_gaussian_backward_kernel<<<textok__cuda_grid(n), TEXTOK__CUDA_THREADS>>>(dmean, dlogvar, dz, logvar, noise, n);
    TEXTOK__CUDA_LAUNCHED(k, "gaussian_sample_backward");
}

/* ----- training helpers: fill, scale, EMA, the three reductions, their backwards ------------ */
/* x (n) = value */
__global__ static void textok__cuda_fill_kernel(float *x, size_t n, float value) { TEXTOK__CUDA_FOR(i, n) x[i] = value; }
/* x (n) *= s */
__global__ static void textok__cuda_scale_kernel(float *x, size_t n, float s) { TEXTOK__CUDA_FOR(i, n) x[i] *= s; }
/* ema (n) -= omd (ema - p) */
__global__ static void textok__cuda_ema_kernel(float *ema, const float *p, size_t n, float omd)
{
    TEXTOK__CUDA_FOR(i, n) ema[i] -= omd * (ema[i] - p[i]);
}

/* The per-element terms of the reductions, as the CPU's textok__red_term */
enum { TEXTOK__CUDA_RED_SQ, TEXTOK__CUDA_RED_L2, TEXTOK__CUDA_RED_L1, TEXTOK__CUDA_RED_KL };
__device__ static double textok__cuda_red_term(int kind, const float *x, const float *y, size_t i)
{
    switch (kind) {
    case TEXTOK__CUDA_RED_SQ: return (double)x[i] * x[i];
    case TEXTOK__CUDA_RED_L2: { float d = x[i] - y[i]; return (double)d * d; }
    case TEXTOK__CUDA_RED_L1: { float d = x[i] - y[i]; return fabs((double)d); }
    default: {
        float lv = y[i] < TEXTOK__LOGVAR_MIN_F ? TEXTOK__LOGVAR_MIN_F : y[i] > TEXTOK__LOGVAR_MAX_F ? TEXTOK__LOGVAR_MAX_F : y[i];
        return (double)x[i] * x[i] + exp((double)lv) - 1.0 - lv;
    }
    }
}

/* part[b] (TEXTOK__CUDA_RED_BLOCKS) = sum of the terms of block b's contiguous range of n (the
   CPU's split: the first n % blocks ranges one longer); one CUDA block per range, double */
__global__ static void textok__cuda_reduce_partial_kernel(double *part, int kind, const float *x, const float *y, size_t n)
{
    const size_t nb = TEXTOK__CUDA_RED_BLOCKS, b = blockIdx.x;
    const size_t lo = n / nb * b + (n % nb < b ? n % nb : b), len = n / nb + (b < n % nb);
    double acc = 0.0;
    for (size_t i = lo + threadIdx.x; i < lo + len; i += blockDim.x) acc += textok__cuda_red_term(kind, x, y, i);
    acc = textok__cuda_block_sum(acc);
    if (threadIdx.x == 0) part[b] = acc;
}

/* out[0] = (float)(sum of the partials in order * mul / div); one thread */
__global__ static void textok__cuda_reduce_final_kernel(float *out, const double *part, double mul, double div)
{
    double s = 0.0;
    for (int b = 0; b < TEXTOK__CUDA_RED_BLOCKS; b++) s += part[b];
    out[0] = (float)(s * mul / div);
}

static void textok__cuda_reduce(const textok_kernels *k, float *out, int kind, const float *x, const float *y, size_t n,
                                double mul, double div, const char *name)
{
    double *part = textok__cuda_st(k)->partials;
    if (textok__cuda_failed(k)) return;
    textok__cuda_reduce_partial_kernel<<<TEXTOK__CUDA_RED_BLOCKS, TEXTOK__CUDA_THREADS>>>(part, kind, x, y, n);
    TEXTOK__CUDA_LAUNCHED(k, "reduction partials");
    textok__cuda_reduce_final_kernel<<<1, 1>>>(out, part, mul, div);
    textok__cuda_launched(k, name);
}

/* dx (n) += g (x - y) (L2, g = 2 scale / n) or g sign(x - y) (L1, g = scale / n, sign(0) = 0) */
__global__ static void textok__cuda_diff_loss_backward_kernel(float *dx, const float *x, const float *y, size_t n,
                                                              int l1, float g)
{
    TEXTOK__CUDA_FOR(i, n) {
        float d = x[i] - y[i];
        dx[i] += l1 ? (d > 0.0f ? g : d < 0.0f ? -g : 0.0f) : g * d;
    }
}

/* dmean += scale mean; dlogvar += scale 0.5 (exp(lv) - 1) inside the clamp range */
__global__ static void textok__cuda_kl_backward_kernel(float *dmean, float *dlogvar, const float *mean,
                                                       const float *logvar, size_t n, float scale)
{
    TEXTOK__CUDA_FOR(i, n) {
        float lv = logvar[i];
        if (dmean) dmean[i] += scale * mean[i];
        if (dlogvar && lv >= TEXTOK__LOGVAR_MIN_F && lv <= TEXTOK__LOGVAR_MAX_F)
            dlogvar[i] += scale * 0.5f * (expf(lv) - 1.0f);
    }
}

static void textok__cuda_fill(const textok_kernels *k, float *x, size_t n, float value)
{
    if (textok__cuda_failed(k) || n == 0) return;
    textok__cuda_fill_kernel<<<textok__cuda_grid(n), TEXTOK__CUDA_THREADS>>>(x, n, value);
    TEXTOK__CUDA_LAUNCHED(k, "fill");
}
static void textok__cuda_scale(const textok_kernels *k, float *x, size_t n, float s)
{
    if (textok__cuda_failed(k) || n == 0) return;
    textok__cuda_scale_kernel<<<textok__cuda_grid(n), TEXTOK__CUDA_THREADS>>>(x, n, s);
    TEXTOK__CUDA_LAUNCHED(k, "scale");
}
static void textok__cuda_sum_squares(const textok_kernels *k, float *out, const float *x, size_t n)
{
    textok__cuda_reduce(k, out, TEXTOK__CUDA_RED_SQ, x, NULL, n, 1.0, 1.0, "launching sum_squares");
}
static void textok__cuda_ema_update(const textok_kernels *k, float *ema, const float *p, size_t n, float one_minus_decay)
{
    if (textok__cuda_failed(k) || n == 0) return;
    textok__cuda_ema_kernel<<<textok__cuda_grid(n), TEXTOK__CUDA_THREADS>>>(ema, p, n, one_minus_decay);
    TEXTOK__CUDA_LAUNCHED(k, "ema_update");
}
static void textok__cuda_diff_loss_forward(const textok_kernels *k, float *loss, const float *x, const float *y,
                                           size_t n, int l1)
{
    if (n == 0) { textok__cuda_fill(k, loss, 1, 0.0f); return; }   /* the CPU's 0 for an empty mean */
    textok__cuda_reduce(k, loss, l1 ? TEXTOK__CUDA_RED_L1 : TEXTOK__CUDA_RED_L2, x, y, n, 1.0, (double)n,
                        "launching diff_loss_forward");
}
static void textok__cuda_diff_loss_backward(const textok_kernels *k, float *dx, const float *x, const float *y, size_t n,
                                            int l1, float scale)
{
    const float g = n ? (l1 ? scale / (float)n : 2.0f * scale / (float)n) : 0.0f;
    if (textok__cuda_failed(k) || n == 0 || !dx) return;
    textok__cuda_diff_loss_backward_kernel<<<textok__cuda_grid(n), TEXTOK__CUDA_THREADS>>>(dx, x, y, n, l1, g);
    TEXTOK__CUDA_LAUNCHED(k, "diff_loss_backward");
}
static void textok__cuda_kl_forward(const textok_kernels *k, float *loss, const float *mean, const float *logvar, size_t n)
{
    textok__cuda_reduce(k, loss, TEXTOK__CUDA_RED_KL, mean, logvar, n, 0.5, 1.0, "launching kl_forward");
}
static void textok__cuda_kl_backward(const textok_kernels *k, float *dmean, float *dlogvar, const float *mean,
                                     const float *logvar, size_t n, float scale)
{
    if (textok__cuda_failed(k) || n == 0 || (!dmean && !dlogvar)) return;
    textok__cuda_kl_backward_kernel<<<textok__cuda_grid(n), TEXTOK__CUDA_THREADS>>>(dmean, dlogvar, mean, logvar, n, scale);
    TEXTOK__CUDA_LAUNCHED(k, "kl_backward");
}

/* ----- adaptive max pooling ----------------------------------------------------------------- */
/* the index in plane (H,W) of output cell (i,j)'s first maximum in row-major order (a NaN wins,
   the last NaN stays): the CPU's textok__pool_argmax */
__device__ static size_t textok__cuda_pool_argmax(const float *plane, int H, int W, int OH, int OW, int i, int j)
{
    const int y0 = (int)(((long long)i * H) / OH), y1 = (int)(((long long)(i + 1) * H + OH - 1) / OH);
    const int x0 = (int)(((long long)j * W) / OW), x1 = (int)(((long long)(j + 1) * W + OW - 1) / OW);
    size_t best = (size_t)y0 * W + x0;
    float m = plane[best];
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++) {
            float v = plane[(size_t)y * W + x];
            if (v > m || isnan(v)) { m = v; best = (size_t)y * W + x; }
        }
    return best;
}

/* out (BC,OH,OW) = the window max of inp (BC,H,W); one thread per output */
__global__ static void textok__cuda_maxpool_forward_kernel(float *out, const float *inp, int H, int W, int OH, int OW, size_t n)
{
    TEXTOK__CUDA_FOR(o, n) {
        const int j = (int)(o % OW), i = (int)(o / OW % OH);
        const float *plane = inp + o / ((size_t)OW * OH) * H * W;
        out[o] = plane[textok__cuda_pool_argmax(plane, H, W, OH, OW, i, j)];
    }
}

/* dinp at each window's argmax += dout; atomicAdd (overlapping windows share an input) */
__global__ static void textok__cuda_maxpool_backward_kernel(float *dinp, const float *dout, const float *inp,
                                                            int H, int W, int OH, int OW, size_t n)
{
    TEXTOK__CUDA_FOR(o, n) {
        const int j = (int)(o % OW), i = (int)(o / OW % OH);
        const size_t base = o / ((size_t)OW * OH) * H * W;
        atomicAdd(&dinp[base + textok__cuda_pool_argmax(inp + base, H, W, OH, OW, i, j)], dout[o]);
    }
}

static void textok__cuda_maxpool_forward(const textok_kernels *k, float *out, const float *inp, int BC, int H, int W,
                                         int OH, int OW)
{
    const size_t n = (size_t)BC * OH * OW;
    if (textok__cuda_failed(k) || n == 0) return;
    textok__cuda_maxpool_forward_kernel<<<textok__cuda_grid(n), TEXTOK__CUDA_THREADS>>>(out, inp, H, W, OH, OW, n);
    TEXTOK__CUDA_LAUNCHED(k, "maxpool_forward");
}
static void textok__cuda_maxpool_backward(const textok_kernels *k, float *dinp, const float *dout, const float *inp,
                                          int BC, int H, int W, int OH, int OW)
{
    const size_t n = (size_t)BC * OH * OW;
    if (textok__cuda_failed(k) || n == 0 || !dinp) return;
    textok__cuda_maxpool_backward_kernel<<<textok__cuda_grid(n), TEXTOK__CUDA_THREADS>>>(dinp, dout, inp, H, W, OH, OW, n);
    TEXTOK__CUDA_LAUNCHED(k, "maxpool_backward");
}

/* ----- one LPIPS layer ---------------------------------------------------------------------- */
/* d[b] = mean_p sum_c w_c (f0/(|f0|+eps) - f1/(|f1|+eps))^2, f (B,C,HW). Grid (chunks, B): block
   (k, b) sums chunk k of image b's pixels (the reductions' split of HW), each pixel's sums in
   double on one thread, into part[b * chunks + k]; then one thread per image adds its chunks in
   order: the order depends on the shape only */
__global__ static void textok__cuda_lpips_partial_kernel(double *part, const float *f0, const float *f1, const float *w,
                                                         int C, int HW)
{
    const size_t nb = TEXTOK__CUDA_RED_BLOCKS, k = blockIdx.x, b = blockIdx.y, n = (size_t)HW;
    const size_t lo = n / nb * k + (n % nb < k ? n % nb : k), len = n / nb + (k < n % nb);
    const float *x0 = f0 + b * C * HW, *x1 = f1 + b * C * HW;
    double acc = 0.0;
    for (size_t p = lo + threadIdx.x; p < lo + len; p += blockDim.x) {
        double s0 = 0.0, s1 = 0.0, r0, r1, dsum = 0.0;
        for (int c = 0; c < C; c++) {
            s0 += (double)x0[(size_t)c * HW + p] * x0[(size_t)c * HW + p];
            s1 += (double)x1[(size_t)c * HW + p] * x1[(size_t)c * HW + p];
        }
        r0 = 1.0 / (sqrt(s0) + TEXTOK__LPIPS_EPS_D);
        r1 = 1.0 / (sqrt(s1) + TEXTOK__LPIPS_EPS_D);
        for (int c = 0; c < C; c++) {
            double t = x0[(size_t)c * HW + p] * r0 - x1[(size_t)c * HW + p] * r1;
            dsum += w[c] * t * t;
        }
        acc += dsum;
    }
    acc = textok__cuda_block_sum(acc);
    if (threadIdx.x == 0) part[b * nb + k] = acc;
}

/* d (B) = (float)(the chunks of image b in order / HW) */
__global__ static void textok__cuda_lpips_final_kernel(float *d, const double *part, int B, int HW)
{
    const int b = blockIdx.x * blockDim.x + threadIdx.x;
    double acc = 0.0;
    if (b >= B) return;
    for (int k = 0; k < TEXTOK__CUDA_RED_BLOCKS; k++) acc += part[(size_t)b * TEXTOK__CUDA_RED_BLOCKS + k];
    d[b] = (float)(acc / HW);
}

/* the CPU reference's per-pixel backward; one thread per (b, pixel) */
__global__ static void textok__cuda_lpips_backward_kernel(float *df0, float *df1, const float *dd, const float *f0,
                                                          const float *f1, const float *w, int C, int HW, size_t n)
{
    TEXTOK__CUDA_FOR(bp, n) {
        const size_t b = bp / HW, p = bp % HW;
        const float *x0 = f0 + b * C * HW, *x1 = f1 + b * C * HW;
        const double scale = 2.0 * dd[b] / HW;
        double s0 = 0.0, s1 = 0.0, r0, r1, a0 = 0.0, a1 = 0.0, q0, q1;
        for (int c = 0; c < C; c++) {
            s0 += (double)x0[(size_t)c * HW + p] * x0[(size_t)c * HW + p];
            s1 += (double)x1[(size_t)c * HW + p] * x1[(size_t)c * HW + p];
        }
        s0 = sqrt(s0); s1 = sqrt(s1);
        r0 = 1.0 / (s0 + TEXTOK__LPIPS_EPS_D);
        r1 = 1.0 / (s1 + TEXTOK__LPIPS_EPS_D);
        for (int c = 0; c < C; c++) {
            const size_t o = (size_t)c * HW + p;
            double g = scale * w[c] * (x0[o] * r0 - x1[o] * r1);
            a0 += g * x0[o];
            a1 += g * x1[o];
        }
        q0 = s0 > 0.0 ? a0 * r0 * r0 / s0 : 0.0;
        q1 = s1 > 0.0 ? a1 * r1 * r1 / s1 : 0.0;
        for (int c = 0; c < C; c++) {
            const size_t o = (size_t)c * HW + p;
            double g = scale * w[c] * (x0[o] * r0 - x1[o] * r1);
            if (df0) df0[b * C * HW + o] += (float)(r0 * g - x0[o] * q0);
            if (df1) df1[b * C * HW + o] += (float)(-r1 * g + x1[o] * q1);
        }
    }
}

static void textok__cuda_lpips_layer_forward(const textok_kernels *k, float *d, const float *f0, const float *f1,
                                             const float *w, int B, int C, int HW)
{
    double *part = textok__cuda_st(k)->colpart;   /* B x chunks doubles */
    if (textok__cuda_failed(k) || B <= 0) return;
    if (B > TEXTOK__CUDA_COL_MAX || B > 65535) {
        textok__cuda_record(k, TEXTOK_ERR_UNSUPPORTED, "lpips_layer_forward", "more than 8192 images in one call");
        return;
    }
    textok__cuda_lpips_partial_kernel<<<dim3(TEXTOK__CUDA_RED_BLOCKS, (unsigned)B), TEXTOK__CUDA_THREADS>>>(part, f0, f1, w, C, HW);
    TEXTOK__CUDA_LAUNCHED(k, "lpips_layer_forward (partials)");
    textok__cuda_lpips_final_kernel<<<(B + TEXTOK__CUDA_THREADS - 1) / TEXTOK__CUDA_THREADS, TEXTOK__CUDA_THREADS>>>(d, part, B, HW);
    TEXTOK__CUDA_LAUNCHED(k, "lpips_layer_forward");
}
static void textok__cuda_lpips_layer_backward(const textok_kernels *k, float *df0, float *df1, const float *dd,
                                              const float *f0, const float *f1, const float *w, int B, int C, int HW)
{
    const size_t n = (size_t)B * HW;
    if (textok__cuda_failed(k) || n == 0 || (!df0 && !df1)) return;
    textok__cuda_lpips_backward_kernel<<<textok__cuda_grid(n), TEXTOK__CUDA_THREADS>>>(df0, df1, dd, f0, f1, w, C, HW, n);
    TEXTOK__CUDA_LAUNCHED(k, "lpips_layer_backward");
}

/* ---------------------------------------------------------------------------------------------
   The table */
extern "C" int textok_cuda_device_count(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) { (void)cudaGetLastError(); return 0; }
    return n;
}

extern "C" int textok_cuda_kernels(textok_kernels *k, int device, int allow_tf32)
{
    textok__cuda_state *st;
    cudaError_t e;
    cublasStatus_t s;
    int n = 0;
    if (!k) return textok_set_error(TEXTOK_ERR_ARG, "textok_cuda_kernels: k is NULL");
    memset(k, 0, sizeof *k);
    if ((e = cudaGetDeviceCount(&n)) != cudaSuccess) {
        (void)cudaGetLastError();
        return textok_set_error(TEXTOK_ERR_UNSUPPORTED, "textok_cuda_kernels: cudaGetDeviceCount: %s", cudaGetErrorString(e));
    }
    if (device < 0 || device >= n)
        return textok_set_error(TEXTOK_ERR_UNSUPPORTED, "textok_cuda_kernels: no CUDA device %d (%d present)", device, n);
    if ((e = cudaSetDevice(device)) != cudaSuccess) {
        (void)cudaGetLastError();
        return textok_set_error(TEXTOK_ERR_UNSUPPORTED, "textok_cuda_kernels: cudaSetDevice(%d): %s", device, cudaGetErrorString(e));
    }
    if (!(st = (textok__cuda_state *)calloc(1, sizeof *st)))
        return textok_set_error(TEXTOK_ERR_NOMEM, "textok_cuda_kernels: out of memory");
    st->device = device;
    st->sync_each = getenv("TEXTOK_CUDA_SYNC") && getenv("TEXTOK_CUDA_SYNC")[0] == '1';
    st->small_tiles = getenv("TEXTOK_CUDA_SMALL_TILES") && getenv("TEXTOK_CUDA_SMALL_TILES")[0] == '1';
    if ((s = cublasCreate(&st->blas)) != CUBLAS_STATUS_SUCCESS) {
        free(st);
        return textok_set_error(TEXTOK_ERR_UNSUPPORTED, "textok_cuda_kernels: cublasCreate: %s", cublasGetStatusString(s));
    }
    /* strict FP32: no TF32 or reduced-precision reductions unless asked */
    s = cublasSetMathMode(st->blas, allow_tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_PEDANTIC_MATH);
    if (s == CUBLAS_STATUS_SUCCESS &&
        ((e = cudaMalloc((void **)&st->partials, TEXTOK__CUDA_RED_BLOCKS * sizeof(double))) != cudaSuccess ||
         (e = cudaMalloc((void **)&st->colpart, (size_t)TEXTOK__CUDA_RED_BLOCKS * TEXTOK__CUDA_COL_MAX * sizeof(double))) != cudaSuccess)) {
        (void)cudaGetLastError();
        cudaFree(st->partials);
        cublasDestroy(st->blas);
        free(st);
        return textok_set_error(TEXTOK_ERR_NOMEM, "textok_cuda_kernels: cudaMalloc: %s", cudaGetErrorString(e));
    }
    if (s != CUBLAS_STATUS_SUCCESS) {
        cublasDestroy(st->blas);
        free(st);
        return textok_set_error(TEXTOK_ERR_UNSUPPORTED, "textok_cuda_kernels: cublasSetMathMode: %s", cublasGetStatusString(s));
    }
    k->name = allow_tf32 ? "cuda-tf32" : "cuda";
    k->n_threads = 1;
    k->state = st;
    k->alloc = textok__cuda_alloc;
    k->free = textok__cuda_free;
    k->to_device = textok__cuda_to_device;
    k->to_host = textok__cuda_to_host;
    k->copy = textok__cuda_copy;
    k->matmul_forward = textok__cuda_matmul_forward;
    k->matmul_backward = textok__cuda_matmul_backward;
    k->layernorm_forward = textok__cuda_layernorm_forward;
    k->layernorm_backward = textok__cuda_layernorm_backward;
    k->rmsnorm_forward = textok__cuda_rmsnorm_forward;
    k->rmsnorm_backward = textok__cuda_rmsnorm_backward;
    k->gelu_forward = textok__cuda_gelu_forward;
    k->gelu_backward = textok__cuda_gelu_backward;
    k->silu_forward = textok__cuda_silu_forward;
    k->silu_backward = textok__cuda_silu_backward;
    k->softmax_forward = textok__cuda_softmax_forward;
    k->softmax_backward = textok__cuda_softmax_backward;
    k->attention_forward = textok__cuda_attention_forward;
    k->attention_backward = textok__cuda_attention_backward;
    k->add_forward = textok__cuda_add_forward;
    k->add_backward = textok__cuda_add_backward;
    k->modulate_forward = textok__cuda_modulate_forward;
    k->modulate_backward = textok__cuda_modulate_backward;
    k->gate_forward = textok__cuda_gate_forward;
    k->gate_backward = textok__cuda_gate_backward;
    k->conv2d_forward = textok__cuda_conv2d_forward;
    k->conv2d_backward = textok__cuda_conv2d_backward;
    k->groupnorm_forward = textok__cuda_groupnorm_forward;
    k->groupnorm_backward = textok__cuda_groupnorm_backward;
    k->upsample_forward = textok__cuda_upsample_forward;
    k->upsample_backward = textok__cuda_upsample_backward;
    k->codebook_search = textok__cuda_codebook_search;
    k->cross_entropy_forward = textok__cuda_cross_entropy_forward;
    k->cross_entropy_backward = textok__cuda_cross_entropy_backward;
    k->adamw_update = textok__cuda_adamw_update;
    k->tanh_forward = textok__cuda_tanh_forward;
    k->tanh_backward = textok__cuda_tanh_backward;
    k->transpose_forward = textok__cuda_transpose_forward;
    k->transpose_backward = textok__cuda_transpose_backward;
    k->l2norm_forward = textok__cuda_l2norm_forward;
    k->l2norm_backward = textok__cuda_l2norm_backward;
    k->embedding_forward = textok__cuda_embedding_forward;
    k->embedding_backward = textok__cuda_embedding_backward;
    k->unpatchify_forward = textok__cuda_unpatchify_forward;
    k->unpatchify_backward = textok__cuda_unpatchify_backward;
    k->gaussian_sample_forward = textok__cuda_gaussian_sample_forward;
    k->gaussian_sample_backward = textok__cuda_gaussian_sample_backward;
    k->fill = textok__cuda_fill;
    k->scale = textok__cuda_scale;
    k->sum_squares = textok__cuda_sum_squares;
    k->ema_update = textok__cuda_ema_update;
    k->diff_loss_forward = textok__cuda_diff_loss_forward;
    k->diff_loss_backward = textok__cuda_diff_loss_backward;
    k->kl_forward = textok__cuda_kl_forward;
    k->kl_backward = textok__cuda_kl_backward;
    k->leaky_relu_forward = textok__cuda_leaky_relu_forward;
    k->leaky_relu_backward = textok__cuda_leaky_relu_backward;
    k->maxpool_forward = textok__cuda_maxpool_forward;
    k->maxpool_backward = textok__cuda_maxpool_backward;
    k->lpips_layer_forward = textok__cuda_lpips_layer_forward;
    k->lpips_layer_backward = textok__cuda_lpips_layer_backward;
    return TEXTOK_OK;
}

extern "C" void textok_cuda_release(textok_kernels *k)
{
    textok__cuda_state *st;
    if (!k || !(st = (textok__cuda_state *)k->state)) return;
    cudaFree(st->partials);
    cudaFree(st->colpart);
    cublasDestroy(st->blas);
    (void)cudaGetLastError();
    free(st);
    k->state = NULL;
}

extern "C" int textok_cuda_status(const textok_kernels *k)
{
    if (!k || !k->state) return textok_set_error(TEXTOK_ERR_ARG, "textok_cuda_status: not a CUDA table");
    if (!textok__cuda_failed(k)) textok__cuda_ok(k, cudaDeviceSynchronize(), "cudaDeviceSynchronize");
    return textok__cuda_surface(k);
}

extern "C" textok_cuda_counters textok_cuda_get_counters(const textok_kernels *k)
{
    textok_cuda_counters c;
    memset(&c, 0, sizeof c);
    if (k && k->state) c = textok__cuda_st(k)->cnt;
    return c;
}

extern "C" void textok_cuda_reset_counters(const textok_kernels *k)
{
    if (k && k->state) memset(&textok__cuda_st(k)->cnt, 0, sizeof textok__cuda_st(k)->cnt);
}
