/* tokenizer.json (Hugging Face, SentencePiece Unigram): the JSON reader, the model, normalizers
   (precompiled charsmap included), pre-tokenizers and templates; then a few strings through
   textok_spm_encode, one of them the input's first bytes (any bytes, invalid UTF-8 included). */
#include "fuzz.h"

static int fuzz_tokenizer(const uint8_t *data, size_t size)
{
    static const char *const texts[] = { "", "a red fox", "  Hello,  World!\tthe END. ",
                                         "\xc3\xa9t\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80 \xef\xbc\xa1" };
    textok_spm *tok = NULL;
    int32_t ids[64];
    char head[65];
    size_t k = size < 64 ? size : 64, i;
    int n, full;
    if (textok_spm_load_mem(&tok, (const char *)data, size, FUZZ_NAME("fuzz.json")) != TEXTOK_OK) return fuzz_refused(textok_last_error());
    for (i = 0; i < sizeof texts / sizeof texts[0]; i++) (void)textok_spm_encode(tok, texts[i], ids, 64, &n, &full);
    memcpy(head, data, k);
    head[k] = 0;
    (void)textok_spm_encode(tok, head, ids, 64, &n, &full);
    (void)textok_spm_encode(tok, texts[1], ids, 1, &n, &full);   /* a buffer shorter than the text */
    textok_spm_free(tok);
    return 0;
}
FUZZ_ENTRY(fuzz_tokenizer)
