/* check.h - the test runner's tiny assertion API, shared by every tests/test_*.c file.
   Each check prints one line: PASS/FAIL, its name, and its error figures. */
#ifndef TEXTOK_TESTS_CHECK_H
#define TEXTOK_TESTS_CHECK_H
#include <stddef.h>

typedef struct tt_stats { int passed, failed; } tt_stats;

/* Record one check; fmt describes it (name and figures). */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((format(printf, 3, 4)))
#endif
void tt_check(tt_stats *s, int ok, const char *fmt, ...);

/* Compare got against ref (n floats): prints max abs error, max relative error, NMSE and the
   relative L2 error ||got-ref|| / ||ref||, and passes when rel_l2 <= tol. NaN-safe: any NaN or
   Inf in got fails. Returns 1 if ok. */
int tt_compare(tt_stats *s, const char *name, const float *got, const float *ref, size_t n,
               double tol);

/* Path helpers: tests find data relative to the repository root (the runner's cwd). */
extern const char *tt_golden_dir;   /* "tests/golden" unless $TEXTOK_GOLDEN_DIR */

/* The library's allocator in the test runner (tests/textok_impl.c defines TEXTOK_MALLOC & co. to
   these): while counting is on, every request is added up, so the total is an upper bound of the
   peak the library's heap reached (tests/test_hostile.c asserts it). No header: the blocks are
   plain malloc blocks, free() and textok_free() both take them. */
void  *tt_alloc_malloc(size_t n);
void  *tt_alloc_realloc(void *p, size_t n);
void   tt_alloc_free(void *p);
void   tt_alloc_count(int on);     /* on: reset the counters and start counting; 0: stop */
size_t tt_alloc_total(void);       /* bytes requested while counting */
size_t tt_alloc_largest(void);     /* the largest single request */

void test_kernels_golden(tt_stats *s);
void test_kernels_fd(tt_stats *s);
void test_kernels_compare(tt_stats *s);
void test_io(tt_stats *s);
void test_rng(tt_stats *s);
void test_titok(tt_stats *s);
void test_t5(tt_stats *s);
void test_nets(tt_stats *s);
void test_train(tt_stats *s);
void test_spm(tt_stats *s);
void test_textok(tt_stats *s);
void test_dit(tt_stats *s);
void test_maskgit(tt_stats *s);
void test_gen_train(tt_stats *s);
void test_metrics(tt_stats *s);
void test_shipped(tt_stats *s);
void test_hostile(tt_stats *s);
void test_determinism(tt_stats *s);
#endif
