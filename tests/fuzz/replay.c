/* tests/fuzz/replay.c - replays the committed fuzz inputs through every target without libFuzzer,
   so that any compiler (gcc in make test, ASan+UBSan in make asan, valgrind in make valgrind)
   checks them:
     build/fuzz_replay                       every target: tests/fuzz/corpus/<t>/ and
                                             tests/fuzz/regressions/<t>/
     build/fuzz_replay TARGET FILE|DIR...    the named inputs through one target
     build/fuzz_replay --messages TARGET FILE|DIR...
                                             one line per input instead: "<file>\t<the message of
                                             its first refusal>" ("accepted" if none); the
                                             tables of tests/README.md are made with it
   A crash is a crash (or a sanitizer report); otherwise one line per target and directory, then
   "N passed, N failed" (a target that is not one, or a missing directory, fails). Run from the
   repository root. */
#define FUZZ_REPLAY
#include "fuzz.h"
#include "fuzz_safetensors.c"
#include "fuzz_torch.c"
#include "fuzz_npy.c"
#include "fuzz_tokenizer.c"
#include "fuzz_dataset.c"
#include "fuzz_captions.c"
#include "fuzz_image.c"
#include <dirent.h>
#include <sys/stat.h>

static const struct fuzz_target { const char *name; int (*run)(const uint8_t *, size_t); } targets[] = {
    { "safetensors", fuzz_safetensors }, { "torch", fuzz_torch }, { "npy", fuzz_npy },
    { "tokenizer", fuzz_tokenizer },     { "dataset", fuzz_dataset }, { "captions", fuzz_captions },
    { "image", fuzz_image },
};
#define N_TARGETS ((int)(sizeof targets / sizeof targets[0]))

static int replay_messages;   /* --messages */

/* One file through the target; -1 if it cannot be read. */
static int replay_file(const struct fuzz_target *t, const char *path)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf;
    long n;
    if (!f) return -1;
    if (fseek(f, 0, SEEK_END) || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET)) { fclose(f); return -1; }
    if (!(buf = (unsigned char *)malloc((size_t)n + 1))) { fclose(f); return -1; }
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) { free(buf); fclose(f); return -1; }
    fclose(f);
    fuzz_msg[0] = 0;
    fuzz_path = path;
    t->run(buf, (size_t)n);
    fuzz_path = NULL;
    free(buf);
    if (replay_messages) printf("%s\t%s\n", path, fuzz_msg[0] ? fuzz_msg : "accepted");
    return 0;
}

/* A file, or every regular file of a directory; the count replayed, -1 on error. */
static int replay_path(const struct fuzz_target *t, const char *path)
{
    struct stat sb;
    DIR *d;
    struct dirent *e;
    int n = 0;
    if (stat(path, &sb) != 0) return -1;
    if (!S_ISDIR(sb.st_mode)) return replay_file(t, path) ? -1 : 1;
    if (!(d = opendir(path))) return -1;
    while ((e = readdir(d)) != NULL) {
        char full[4096];
        if (e->d_name[0] == '.') continue;
        snprintf(full, sizeof full, "%s/%s", path, e->d_name);
        if (stat(full, &sb) != 0 || !S_ISREG(sb.st_mode)) continue;
        if (replay_file(t, full)) { closedir(d); return -1; }
        n++;
    }
    closedir(d);
    return n;
}

static void report(const char *target, const char *path, int n, int *passed, int *failed)
{
    if (n < 0) { printf("FAIL %-11s %s: cannot read\n", target, path); (*failed)++; }
    else { printf("ok   %-11s %s: %d inputs, no crash\n", target, path, n); (*passed)++; }
}

int main(int argc, char **argv)
{
    int passed = 0, failed = 0, i, k;
    if (argc >= 2 && !strcmp(argv[1], "--messages")) {
        replay_messages = 1;
        argv++; argc--;
        if (argc < 2) { fprintf(stderr, "fuzz_replay: --messages TARGET FILE|DIR...\n"); return 2; }
    }
    if (argc >= 2) {
        for (k = 0; k < N_TARGETS && strcmp(argv[1], targets[k].name); k++) {}
        if (k == N_TARGETS) {
            fprintf(stderr, "fuzz_replay: no target '%s'; the targets:", argv[1]);
            for (k = 0; k < N_TARGETS; k++) fprintf(stderr, " %s", targets[k].name);
            fprintf(stderr, "\n");
            return 2;
        }
        for (i = 2; i < argc; i++) {
            int n = replay_path(&targets[k], argv[i]);
            if (!replay_messages) report(targets[k].name, argv[i], n, &passed, &failed);
            else if (n < 0) { fprintf(stderr, "fuzz_replay: cannot read %s\n", argv[i]); failed++; }
        }
        if (replay_messages) return failed ? 1 : 0;
    } else {
        for (k = 0; k < N_TARGETS; k++) {
            static const char *const kinds[2] = { "corpus", "regressions" };
            for (i = 0; i < 2; i++) {
                char dir[256];
                snprintf(dir, sizeof dir, "tests/fuzz/%s/%s", kinds[i], targets[k].name);
                report(targets[k].name, dir, replay_path(&targets[k], dir), &passed, &failed);
            }
        }
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
