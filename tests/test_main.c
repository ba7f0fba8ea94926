/* The test runner: one line per check, then "N passed, N failed"; exit status 1 on any failure.
   Run from the repository root (it reads tests/golden/, tests/bad/ and weights/emoji/).
     build/test_runner               every group, in the order below
     build/test_runner metrics t5    only the named groups (exit 2 for a name that is not one) */
#include "check.h"
#include "textok.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct tt_group { const char *name; void (*run)(tt_stats *s); } groups[] = {
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
    { "metrics", test_metrics },
    { "shipped", test_shipped },
    { "hostile", test_hostile },
    { "determinism", test_determinism },
};
#define N_GROUPS ((int)(sizeof groups / sizeof groups[0]))

/* Is group g named on the command line? (No names: every group.) */
static int wanted(int argc, char **argv, int g)
{
    int i;
    if (argc < 2) return 1;
    for (i = 1; i < argc; i++)
        if (!strcmp(argv[i], groups[g].name)) return 1;
    return 0;
}

int main(int argc, char **argv)
{
    tt_stats s = { 0, 0 };
    const char *dir = getenv("TEXTOK_GOLDEN_DIR");
    textok_kernels fast = textok_cpu_kernels(0);
    int i, g;
    for (i = 1; i < argc; i++) {
        for (g = 0; g < N_GROUPS && strcmp(argv[i], groups[g].name); g++) {}
        if (g == N_GROUPS) {
            fprintf(stderr, "test_runner: no test group '%s'; the groups:", argv[i]);
            for (g = 0; g < N_GROUPS; g++) fprintf(stderr, " %s", groups[g].name);
            fprintf(stderr, "\n");
            return 2;
        }
    }
    if (dir && *dir) tt_golden_dir = dir;
    printf("textok %s tests: fast table '%s' with %d threads\n", textok_version(), fast.name, fast.n_threads);
    for (g = 0; g < N_GROUPS; g++)
        if (wanted(argc, argv, g)) groups[g].run(&s);
    printf("%d passed, %d failed\n", s.passed, s.failed);
    return s.failed ? 1 : 0;
}
