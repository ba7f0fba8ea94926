/* tests/cuda_emu/cublas_v2.h - the cuBLAS calls textok_cuda.cu makes, on the CPU (see
   cuda_runtime.h here). The GEMM is the column-major definition, float sums, with cuBLAS's own
   argument checks (leading dimensions, sizes), so a wrong row-major mapping fails here as on a GPU. */
#ifndef TEXTOK_CUBLAS_EMU_H
#define TEXTOK_CUBLAS_EMU_H
#include "cuda_runtime.h"

typedef enum { CUBLAS_STATUS_SUCCESS = 0, CUBLAS_STATUS_NOT_INITIALIZED = 1, CUBLAS_STATUS_INVALID_VALUE = 7 } cublasStatus_t;
typedef enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 } cublasOperation_t;
typedef enum { CUBLAS_DEFAULT_MATH = 0, CUBLAS_PEDANTIC_MATH = 2, CUBLAS_TF32_TENSOR_OP_MATH = 3 } cublasMath_t;
typedef struct emu_cublas { int math; } *cublasHandle_t;

static cublasStatus_t cublasCreate(cublasHandle_t *h)
{
    *h = (cublasHandle_t)calloc(1, sizeof **h);
    return *h ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_INITIALIZED;
}
static cublasStatus_t cublasDestroy(cublasHandle_t h) { free(h); return CUBLAS_STATUS_SUCCESS; }
static cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t m) { h->math = (int)m; return CUBLAS_STATUS_SUCCESS; }
static const char *cublasGetStatusString(cublasStatus_t s)
{
    return s == CUBLAS_STATUS_SUCCESS ? "CUBLAS_STATUS_SUCCESS" : s == CUBLAS_STATUS_INVALID_VALUE
        ? "CUBLAS_STATUS_INVALID_VALUE (emulated)" : "CUBLAS_STATUS_NOT_INITIALIZED (emulated)";
}

/* C (m,n; ldc) = alpha op(A) (m,k) op(B) (k,n) + beta C, column-major, batch times with strides */
static cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb,
                                                int m, int n, int k, const float *alpha,
                                                const float *A, int lda, long long sA,
                                                const float *B, int ldb, long long sB, const float *beta,
                                                float *C, int ldc, long long sC, int batch)
{
    int bt, i, j, p;
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (m < 0 || n < 0 || k < 0 || batch < 0 || lda < (ta == CUBLAS_OP_N ? (m > 1 ? m : 1) : (k > 1 ? k : 1)) ||
        ldb < (tb == CUBLAS_OP_N ? (k > 1 ? k : 1) : (n > 1 ? n : 1)) || ldc < (m > 1 ? m : 1))
        return CUBLAS_STATUS_INVALID_VALUE;
    emu_open();
    for (bt = 0; bt < batch; bt++) {
        const float *a = A + bt * sA, *b = B + bt * sB;
        float *c = C + bt * sC;
        for (j = 0; j < n; j++)
            for (i = 0; i < m; i++) {
                float acc = 0.0f;
                for (p = 0; p < k; p++) {
                    float av = ta == CUBLAS_OP_N ? a[i + (size_t)p * lda] : a[p + (size_t)i * lda];
                    float bv = tb == CUBLAS_OP_N ? b[p + (size_t)j * ldb] : b[j + (size_t)p * ldb];
                    acc += av * bv;
                }
                c[i + (size_t)j * ldc] = *beta == 0.0f ? *alpha * acc : *alpha * acc + *beta * c[i + (size_t)j * ldc];
            }
    }
    emu_close();
    return CUBLAS_STATUS_SUCCESS;
}
#endif
