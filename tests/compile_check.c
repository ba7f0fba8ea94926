/* Compiles the implementation in whatever language/options the Makefile passes (C99, C11, C++,
   TEXTOK_STATIC, TEXTOK_NO_STDIO, BLAS, OpenMP) with -Werror, and calls a few functions so that
   TEXTOK_STATIC does not leave them unused. With link_b.c it is also the two-TU link test. */
#define TEXTOK_IMPLEMENTATION
#include "textok.h"
#include "textok.h"   /* a second include must be harmless */

int textok_compile_check_a(void);
int textok_compile_check_a(void)
{
    textok_kernels k = textok_cpu_kernels(1);
    textok_rng r;
    textok_rng_seed(&r, 1);
    return (int)(k.n_threads + (int)(textok_rng_uniform(&r) * 0.0f)) + (textok_version()[0] == '0' ? 0 : 1);
}
