/* safetensors: the header (JSON subset, dtypes, shapes, offsets) and the tensor table, then every
   tensor read as F32 through textok_st_read_f32 and a lookup of each by name. */
#include "fuzz.h"

static int fuzz_safetensors(const uint8_t *data, size_t size)
{
    textok_safetensors st;
    int i;
    if (textok_st_open_memory(&st, data, size, FUZZ_NAME("fuzz.safetensors")) != TEXTOK_OK) return fuzz_refused(textok_last_error());
    for (i = 0; i < st.n_tensors; i++) {
        const textok_st_tensor *t = &st.tensors[i];
        float *x = (float *)malloc((t->numel ? t->numel : 1) * sizeof(float));
        if (textok_st_find(&st, t->name) != t) abort();   /* the table must index what it holds */
        if (x && textok_st_read_f32(&st, t, x, t->numel) == TEXTOK_OK) fuzz_use(x, t->numel);
        else fuzz_refused(textok_last_error());
        free(x);
    }
    (void)textok_st_meta(&st, "format");
    textok_st_close(&st);
    return 0;
}
FUZZ_ENTRY(fuzz_safetensors)
