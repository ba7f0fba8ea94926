/* The one translation unit of the test runner that holds the implementation. Its allocator is
   the counting one of check.c (tests/test_hostile.c asserts what hostile files make it allocate). */
#include "check.h"
#define TEXTOK_MALLOC(sz)     tt_alloc_malloc(sz)
#define TEXTOK_REALLOC(p, sz) tt_alloc_realloc(p, sz)
#define TEXTOK_FREE(p)        tt_alloc_free(p)
#define TEXTOK_IMPLEMENTATION
#include "textok.h"
