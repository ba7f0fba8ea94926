/* The one translation unit of the test runner that holds the implementation. */
#define TEXTOK_IMPLEMENTATION
#include "textok.h"
