/* selfcheck: runs textok_kernels_compare on the fast CPU table against the naive reference
   table and prints one row per (kernel, shape, output). Exit status 0 iff everything matches.
     build/selfcheck [--threads N] [--seed S] */
#define TEXTOK_IMPLEMENTATION
#include "textok.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void print_row(const textok_compare_result *r, void *user)
{
    int *rows = (int *)user;
    if ((*rows)++ == 0)
        printf("%-16s %-30s %-7s %10s %10s %10s %8s  %s\n", "kernel", "shape", "output",
               "max_abs", "max_rel", "nmse", "tol", "result");
    printf("%-16s %-30s %-7s %10.2e %10.2e %10.2e %8.0e  %s%s%s\n", r->kernel, r->shape, r->output,
           r->max_abs, r->max_rel, r->nmse, r->tol_nmse, r->ok ? "ok" : "FAIL",
           r->why[0] ? " " : "", r->why);
}

int main(int argc, char **argv)
{
    int threads = 0, i, rows = 0, fails;
    unsigned long long seed = 1234;
    textok_kernels ref, fast;
    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc) seed = strtoull(argv[++i], NULL, 10);
        else {
            fprintf(stderr, "usage: %s [--threads N] [--seed S]\nunknown or incomplete flag '%s'\n", argv[0], argv[i]);
            return 2;
        }
    }
    ref = textok_cpu_ref_kernels();
    fast = textok_cpu_kernels(threads);
    printf("textok %s selfcheck: table '%s' (%d threads) against '%s', seed %llu\n",
           textok_version(), fast.name, fast.n_threads, ref.name, seed);
    fails = textok_kernels_compare(&ref, &fast, seed, print_row, &rows);
    if (fails < 0) {
        fprintf(stderr, "selfcheck: %s\n", textok_last_error());
        return 1;
    }
    printf("%d passed, %d failed\n", rows - fails, fails);
    return fails ? 1 : 0;
}
