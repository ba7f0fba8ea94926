/* PyTorch checkpoints as tools/convert.c reads them: the ZIP (central directory, ZIP64), data.pkl
   through the pickle VM, the storages and views (torch.save >= 1.6), and the legacy pickle stream
   (torch.save < 1.6); a safetensors input takes the library path. Every tensor is then read as F32,
   strided views included. */
#include "fuzz.h"

static int fuzz_torch(const uint8_t *data, size_t size)
{
    cv_input in;
    int i;
    if (cv_input_open_memory(&in, data, size, FUZZ_NAME("fuzz.bin")) != 0) fuzz_refused(cv_errbuf);
    else {
        for (i = 0; i < in.n; i++) {
            const cv_tensor *t = &in.t[i];
            float *x;
            if (t->dtype < 0) continue;   /* int64 and the like: listed, never read */
            if (cv_find(&in, t->name) == NULL) abort();
            if ((x = (float *)malloc((t->numel ? t->numel : 1) * sizeof(float))) != NULL &&
                cv_read_f32(&in, t, x) == 0)
                fuzz_use(x, t->numel);
            else fuzz_refused(cv_errbuf);
            free(x);
        }
    }
    cv_input_close(&in);
    return 0;
}
FUZZ_ENTRY(fuzz_torch)
