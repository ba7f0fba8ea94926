/* The captions file of --images folders ("filename<TAB>caption" lines), as ex_parse_captions reads
   it, against a fixed folder of four images. */
#include "fuzz.h"

static int fuzz_captions(const uint8_t *data, size_t size)
{
    static const char *const names[4] = { "a.png", "b b.jpg", "c.png", "\xc3\xa9.bmp" };   /* sorted */
    char **copy = (char **)malloc(4 * sizeof(char *));
    ex_dataset ds;
    int i;
    memset(&ds, 0, sizeof ds);
    ds.n = 4;
    ds.S = 8;
    if (!copy) abort();
    for (i = 0; i < 4; i++) {
        copy[i] = (char *)malloc(strlen(names[i]) + 1);
        if (!copy[i]) abort();
        strcpy(copy[i], names[i]);
    }
    ds.names = copy;
    if (ex_parse_captions(&ds, (const char *)data, size, FUZZ_NAME("fuzz.txt"), "fuzz/")) fuzz_refused(ex_errbuf);
    ex_dataset_free(&ds);   /* names, and captions when the parse succeeded */
    return 0;
}
FUZZ_ENTRY(fuzz_captions)
