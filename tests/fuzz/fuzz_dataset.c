/* The packed dataset file (tools/emoji_dataset.c) as the training programs read it
   (ex_parse_data): a U8 safetensors with images (N, S, S, 3), split, captions and names. The
   image size is taken from the file when it is small, so that the checks after it run. */
#include "fuzz.h"

static int fuzz_dataset(const uint8_t *data, size_t size)
{
    static const char *const splits[3] = { "all", "train", "val" };
    textok_safetensors st;
    const textok_st_tensor *ti;
    ex_dataset ds;
    int S = 8;
    if (textok_st_open_memory(&st, data, size, FUZZ_NAME("fuzz.safetensors")) != TEXTOK_OK) return fuzz_refused(textok_last_error());
    ti = textok_st_find(&st, "images");
    if (ti && ti->ndim >= 2 && ti->shape[1] >= 1 && ti->shape[1] <= 512) S = (int)ti->shape[1];
    if (ex_parse_data(&ds, &st, FUZZ_NAME("fuzz.safetensors"), splits[size % 3], S) == 0) ex_dataset_free(&ds);
    else fuzz_refused(ex_errbuf);
    textok_st_close(&st);
    return 0;
}
FUZZ_ENTRY(fuzz_dataset)
