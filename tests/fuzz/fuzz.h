/* tests/fuzz/fuzz.h - what every fuzz target includes: the library, the example programs' parsers
   (examples/common.h: images, the dataset file, captions) and tools/convert.c's readers (PyTorch zip
   + pickle, legacy torch.save), all in one translation unit.

   Each target defines one static function fuzz_<name>(data, size) and FUZZ_ENTRY(fuzz_<name>).
   Built with clang -fsanitize=fuzzer (make fuzz) FUZZ_ENTRY is libFuzzer's LLVMFuzzerTestOneInput;
   tests/fuzz/replay.c includes every target with FUZZ_REPLAY defined and replays the committed
   corpora and regressions through them with any compiler (make test, make asan, make valgrind).
   A target must never call exit(): every parser it reaches returns its errors. */
#ifndef TEXTOK_FUZZ_H
#define TEXTOK_FUZZ_H

#define _POSIX_C_SOURCE 200809L
/* smaller than the defaults so that a fuzzed image claiming the maximum stays fast (the check
   itself is the same code) */
#ifndef TEXTOK_MAX_IMAGE_PIXELS
#define TEXTOK_MAX_IMAGE_PIXELS (1L << 22)
#endif
#define CV_NO_MAIN
#if defined(__GNUC__) || defined(__clang__)
#pragma GCC diagnostic ignored "-Wunused-function"   /* convert.c's conversion steps, main's helpers */
#endif
#include "tools/convert.c"   /* defines TEXTOK_IMPLEMENTATION and includes textok.h */
#define EX_TRAINING
#include "examples/common.h"
#include <stdint.h>

#ifdef FUZZ_REPLAY
#define FUZZ_ENTRY(f)
#else
#define FUZZ_ENTRY(f) \
    int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size); \
    int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return f(data, size); }
#endif

/* The message of the input's first refusal (the replay driver's --messages prints it: the table
   in tests/README.md). */
static char fuzz_msg[1024];
/* The name the parsers put in their messages: the replayed file's path (replay.c sets it), else
   a fixed one per target. */
static const char *fuzz_path;
#define FUZZ_NAME(fixed) (fuzz_path ? fuzz_path : (fixed))
static int fuzz_refused(const char *msg)
{
    if (!fuzz_msg[0]) snprintf(fuzz_msg, sizeof fuzz_msg, "%s", msg);
    return 0;
}

/* A checksum the optimiser cannot drop: every value read is folded into it. */
static volatile float fuzz_sink;
static void fuzz_use(const float *x, size_t n)
{
    float s = 0;
    size_t i;
    for (i = 0; i < n; i++) s += x[i];
    fuzz_sink = s;
}

#endif
