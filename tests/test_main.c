/* The test runner: one line per check, then "N passed, N failed"; exit status 1 on any failure.
   Run from the repository root (it reads tests/golden/ and tests/bad/). */
#include "check.h"
#include "textok.h"
#include <stdio.h>
#include <stdlib.h>

int main(void)
{
    tt_stats s = { 0, 0 };
    const char *dir = getenv("TEXTOK_GOLDEN_DIR");
    textok_kernels fast = textok_cpu_kernels(0);
    if (dir && *dir) tt_golden_dir = dir;
    printf("textok %s tests: fast table '%s' with %d threads\n", textok_version(), fast.name, fast.n_threads);
    test_rng(&s);
    test_io(&s);
    test_kernels_golden(&s);
    test_kernels_fd(&s);
    test_kernels_compare(&s);
    test_titok(&s);
    test_t5(&s);
    test_nets(&s);
    test_train(&s);
    test_spm(&s);
    test_textok(&s);
    test_dit(&s);
    test_maskgit(&s);
    test_gen_train(&s);
    printf("%d passed, %d failed\n", s.passed, s.failed);
    return s.failed ? 1 : 0;
}
