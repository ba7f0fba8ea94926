/* .npy: magic, version, the header dict (descr, fortran_order, shape), the data size. */
#include "fuzz.h"

static int fuzz_npy(const uint8_t *data, size_t size)
{
    float *x = NULL;
    int ndim = 0, i;
    int64_t shape[TEXTOK_MAX_DIMS];
    size_t n = 1;
    if (textok_npy_read_memory(data, size, FUZZ_NAME("fuzz.npy"), &x, &ndim, shape) != TEXTOK_OK) return fuzz_refused(textok_last_error());
    for (i = 0; i < ndim; i++) n *= (size_t)shape[i];
    fuzz_use(x, n);
    textok_free(x);
    return 0;
}
FUZZ_ENTRY(fuzz_npy)
