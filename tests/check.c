#include "check.h"
#include <math.h>
#include <stdarg.h>
#include <stdio.h>

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
