/* The test runner: one line per check, then "N passed, N failed"; exit status 1 on any failure.
   Run from the repository root (it reads tests/golden/, tests/bad/ and weights/emoji/).
     build/test_runner                  every group, in the order below
     build/test_runner NAME [NAME ...]  only the groups named, e.g. build/test_runner shipped dit
                                        (an unknown name: the list of groups, exit status 2) */
#include "check.h"
#include "textok.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct { const char *name; void (*run)(tt_stats *); } groups[] = {
    { "rng", test_rng },
    { "io", test_io },
    { "kernels_golden", test_kernels_golden },
    { "kernels_fd", test_kernels_fd },
    { "kernels_compare", test_kernels_compare },
    { "titok", test_titok },
    { "t5", test_t5 },
    { "nets", test_nets },
    { "train", test_train },
    { "spm", test_spm },
    { "textok", test_textok },
    { "dit", test_dit },
    { "maskgit", test_maskgit },
    { "gen_train", test_gen_train },
    { "shipped", test_shipped },
};
#define N_GROUPS ((int)(sizeof groups / sizeof groups[0]))

int main(int argc, char **argv)
{
    tt_stats s = { 0, 0 };
    const char *dir = getenv("TEXTOK_GOLDEN_DIR");
    textok_kernels fast = textok_cpu_kernels(0);
    int g, a;
    for (a = 1; a < argc; a++) {
        for (g = 0; g < N_GROUPS && strcmp(argv[a], groups[g].name); g++) {}
        if (g == N_GROUPS) {
            fprintf(stderr, "test_runner: no test group '%s'; the groups are:", argv[a]);
            for (g = 0; g < N_GROUPS; g++) fprintf(stderr, " %s", groups[g].name);
            fprintf(stderr, "\n");
            return 2;
        }
    }
    if (dir && *dir) tt_golden_dir = dir;
    printf("textok %s tests: fast table '%s' with %d threads\n", textok_version(), fast.name, fast.n_threads);
    for (g = 0; g < N_GROUPS; g++) {
        for (a = 1; a < argc && strcmp(argv[a], groups[g].name); a++) {}
        if (argc == 1 || a < argc) groups[g].run(&s);
    }
    printf("%d passed, %d failed\n", s.passed, s.failed);
    return s.failed ? 1 : 0;
}
