/* Images through the programs' loading path (ex_decode_image: stb_image's header check against
   TEXTOK_MAX_IMAGE_*, decoding, channels, centre crop, area/bilinear resize), at a size that
   shrinks most inputs and one that enlarges them. */
#include "fuzz.h"

static int fuzz_image(const uint8_t *data, size_t size)
{
    int alpha = 0, i;
    for (i = 0; i < 2; i++) {
        const int S = i ? 64 : 5;
        float *img = ex_decode_image(data, size, FUZZ_NAME("fuzz.png"), S, &alpha);
        if (!img) return fuzz_refused(ex_errbuf);
        fuzz_use(img, (size_t)3 * S * S);
        free(img);
    }
    return 0;
}
FUZZ_ENTRY(fuzz_image)
