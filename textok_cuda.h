/* textok_cuda.h - the CUDA kernel table for textok.h (implemented in textok_cuda.cu).

   Build textok_cuda.cu with nvcc (make cuda), link it with -lcudart -lcublas next to the one
   file that defines TEXTOK_IMPLEMENTATION, and put the table in textok_params.kernels:

      textok_kernels gpu;
      if (textok_cuda_kernels(&gpu, 0, 0) != TEXTOK_OK) fprintf(stderr, "%s\n", textok_last_error());
      p.kernels = &gpu;                        // models now keep every tensor on device 0
      ...
      textok_cuda_release(&gpu);               // after the last model using it is freed

   Every entry of the table is a GPU implementation; memory from its alloc is device memory, so
   the only ways in and out are to_device / to_host / copy. Kernels return void: a CUDA or cuBLAS
   failure inside one is recorded in the table's state (the first one wins) and returned by the
   next to_device / to_host / copy (as TEXTOK_ERR_IO, with textok_last_error() naming the call
   and cudaGetErrorString), which is where every model checks. textok_cuda_status() asks
   directly. Nothing aborts. A table (and every model copy of it) is for one host thread at a
   time: its kernels share one stream and one small scratch buffer. */
#ifndef TEXTOK_CUDA_H
#define TEXTOK_CUDA_H
#include "textok.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Fills *k with the CUDA table on `device` (cudaSetDevice), with its own cuBLAS handle. GEMMs
   are strict FP32 (CUBLAS_PEDANTIC_MATH) unless allow_tf32 is nonzero (TF32 tensor cores: ~10
   bits of mantissa in the products; the golden comparisons are only meant for strict FP32).
   TEXTOK_OK, or TEXTOK_ERR_UNSUPPORTED (no such device / no driver) / TEXTOK_ERR_NOMEM. */
int  textok_cuda_kernels(textok_kernels *k, int device, int allow_tf32);
/* Frees the state (cuBLAS handle, scratch) of a table from textok_cuda_kernels; k->state = NULL. */
void textok_cuda_release(textok_kernels *k);
/* Synchronises and returns TEXTOK_OK or the first recorded CUDA/cuBLAS error (the message is
   then textok_last_error()). The error stays recorded: a table that failed keeps failing. */
int  textok_cuda_status(const textok_kernels *k);
/* Number of CUDA devices, 0 when there is none or no driver (never an error). */
int  textok_cuda_device_count(void);

/* Debug counters: host<->device copies made through the table since creation or the last reset,
   to check that a model's per-layer path makes none (only its inputs and outputs cross). */
typedef struct textok_cuda_counters {
    unsigned long to_device, to_host, copies;      /* calls */
    unsigned long long to_device_bytes, to_host_bytes;
    unsigned long allocs, frees, launches;         /* kernel launches + cuBLAS calls */
} textok_cuda_counters;
textok_cuda_counters textok_cuda_get_counters(const textok_kernels *k);
void                 textok_cuda_reset_counters(const textok_kernels *k);

#ifdef __cplusplus
}
#endif
#endif /* TEXTOK_CUDA_H */
