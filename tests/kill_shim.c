/* kill_shim.c - an LD_PRELOAD library for tests/cli_kill.sh: it wraps fwrite and SIGKILLs the
   process in the middle of a checkpoint write, at a write chosen by the test, so that "killed
   while the checkpoint was being written" happens every time instead of by luck of timing.
     TEXTOK_KILL_AT_WRITE=n   the n-th fwrite (1-based) to a file whose name contains "ckpt" and
                              ends ".tmp" writes half of its bytes, flushes them to the file and
                              raises SIGKILL
     TEXTOK_COUNT_WRITES=1    print "kill_shim: N checkpoint writes" on stderr at exit
   Linux only (/proc/self/fd); built by cli_kill.sh: cc -shared -fPIC kill_shim.c -ldl. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static long kill_at = -1, n_writes;
static int counting = -1;
static size_t (*real_fwrite)(const void *, size_t, size_t, FILE *);

static void report(void) { fprintf(stderr, "kill_shim: %ld checkpoint writes\n", n_writes); }

static int is_ckpt_tmp(FILE *f)
{
    char link[64], target[4096];
    ssize_t k;
    snprintf(link, sizeof link, "/proc/self/fd/%d", fileno(f));
    k = readlink(link, target, sizeof target - 1);
    if (k < 5) return 0;
    target[k] = 0;
    return strstr(target, "ckpt") != NULL && !strcmp(target + k - 4, ".tmp");
}

size_t fwrite(const void *p, size_t size, size_t n, FILE *f)
{
    if (!real_fwrite) {
        const char *e = getenv("TEXTOK_KILL_AT_WRITE"), *c = getenv("TEXTOK_COUNT_WRITES");
        real_fwrite = (size_t (*)(const void *, size_t, size_t, FILE *))dlsym(RTLD_NEXT, "fwrite");
        kill_at = e ? atol(e) : -1;
        counting = c && *c == '1';
        if (counting) atexit(report);
    }
    if ((kill_at > 0 || counting) && is_ckpt_tmp(f)) {
        n_writes++;
        if (n_writes == kill_at) {
            real_fwrite(p, 1, size * n / 2, f);
            fflush(f);
            raise(SIGKILL);
        }
    }
    return real_fwrite(p, size, n, f);
}
