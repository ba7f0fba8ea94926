/* Second translation unit: declarations only, linked against compile_check.c's implementation.
   Catches public functions that lost TEXTOKDEF or clash between units. */
#include "textok.h"
#include <stdio.h>

int textok_compile_check_a(void);
int main(void)
{
    textok_kernels ref = textok_cpu_ref_kernels();
    float a[6] = { 1, 2, 3, 4, 5, 6 }, b[6] = { 1, 0, 0, 1, 1, 1 }, out[4];
    textok_matmul_dims d = { 1, 2, 2, 3, 0, 0 };   /* (2,3) . (3,2) */
    ref.matmul_forward(&ref, out, a, b, NULL, &d);
    if (out[0] != 4.0f || out[1] != 5.0f || out[2] != 10.0f || out[3] != 11.0f || textok_compile_check_a() < 1) {
        printf("link check: wrong result\n");
        return 1;
    }
    printf("link check: ok (%s)\n", textok_version());
    return 0;
}
