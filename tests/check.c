#include "check.h"
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

const char *tt_golden_dir = "tests/golden";

void tt_check(tt_stats *s, int ok, const char *fmt, ...)
{
    va_list ap;
    printf("%s ", ok ? "PASS" : "FAIL");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
    if (ok) s->passed++; else s->failed++;
}

int tt_compare(tt_stats *s, const char *name, const float *got, const float *ref, size_t n,
               double tol)
{
    double max_abs = 0, max_rel = 0, se = 0, sr = 0, rel_l2, nmse;
    int finite = 1, ok;
    size_t i;
    for (i = 0; i < n; i++) {
        double g = got[i], r = ref[i], d = fabs(g - r);
        if (!isfinite(g) || !isfinite(r)) { finite = 0; continue; }
        if (d > max_abs) max_abs = d;
        if (d / (fabs(r) + 1e-6) > max_rel) max_rel = d / (fabs(r) + 1e-6);
        se += d * d;
        sr += r * r;
    }
    nmse = sr > 0 ? se / sr : se;
    rel_l2 = sqrt(nmse);
    ok = finite && (rel_l2 <= tol);
    tt_check(s, ok, "%-44s n=%-7zu max_abs=%.3e max_rel=%.3e nmse=%.3e rel_l2=%.3e tol=%.0e%s",
             name, n, max_abs, max_rel, nmse, rel_l2, tol, finite ? "" : " NON-FINITE");
    return ok;
}

/* ---- the counting allocator (check.h) ----------------------------------------------------- */
static int    tt_counting;
static size_t tt_total, tt_largest;

static void tt_note(size_t n)
{
    if (!tt_counting) return;
#if defined(__GNUC__) || defined(__clang__)
    __atomic_fetch_add(&tt_total, n, __ATOMIC_RELAXED);
    {
        size_t cur = __atomic_load_n(&tt_largest, __ATOMIC_RELAXED);
        while (n > cur && !__atomic_compare_exchange_n(&tt_largest, &cur, n, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {}
    }
#else
    tt_total += n;
    if (n > tt_largest) tt_largest = n;
#endif
}
void *tt_alloc_malloc(size_t n) { tt_note(n); return malloc(n); }
void *tt_alloc_realloc(void *p, size_t n) { tt_note(n); return realloc(p, n); }
void  tt_alloc_free(void *p) { free(p); }
void  tt_alloc_count(int on)
{
    if (on) tt_total = tt_largest = 0;
    tt_counting = on;
}
size_t tt_alloc_total(void) { return tt_total; }
size_t tt_alloc_largest(void) { return tt_largest; }
