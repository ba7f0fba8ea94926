/* encode_text: a caption -> its T5 token states, the text embeddings TexTok conditions on.

     build/encode_text --text-encoder T5.safetensors --spm tokenizer.json --caption TEXT --out EMB.npy
                       [--max-len N] [--ids IDS.json] [--threads N]

   T5.safetensors is a textok-layout T5 encoder (build/convert --t5 reads the Hugging Face files);
   tokenizer.json is the same model's Hugging Face tokenizer (SentencePiece Unigram). The caption
   (UTF-8) is split into pieces, EOS appended, truncated to --max-len tokens (default 128, EOS
   kept), and run through the encoder. EMB.npy receives the L real tokens' states, float32
   (L, d_model), no padding: build/tokenize, build/reconstruct (--text-emb) and the library pad
   and mask a shorter text themselves. --ids writes the token ids as {"tokens": [...]}.
   Prints the pieces. Errors: an empty caption or bad flags exit 2; unreadable files, invalid
   UTF-8, ids the encoder's vocabulary lacks exit 1; nothing is left behind on failure. */
#define TEXTOK_IMPLEMENTATION
#include "textok.h"
#include "common.h"

static const char *usage =
    "--text-encoder T5.safetensors --spm tokenizer.json --caption TEXT --out EMB.npy [--max-len N] [--ids IDS.json] [--threads N]";

int main(int argc, char **argv)
{
    const char *t5_path = NULL, *spm_path = NULL, *caption = NULL, *out = NULL, *max_s = NULL, *ids_path = NULL;
    const char *threads = NULL;
    ex_flag flags[] = {
        { "--text-encoder", &t5_path, 1 }, { "--spm", &spm_path, 1 }, { "--caption", &caption, 1 },
        { "--out", &out, 1 }, { "--max-len", &max_s, 0 }, { "--ids", &ids_path, 0 }, { "--threads", &threads, 0 },
    };
    textok_params params = textok_default_params();
    textok_spm *spm = NULL;
    textok_t5 *t5 = NULL;
    int32_t *ids;
    float *emb;
    int max_len, n = 0, full = 0, d, i;

    ex_parse_flags(argc, argv, flags, (int)(sizeof flags / sizeof flags[0]), usage);
    params.n_threads = ex_parse_int(threads, "--threads", 0, 4096, 0, usage);
    max_len = ex_parse_int(max_s, "--max-len", 1, 65536, 128, usage);
    if (!caption[0]) ex_usage(usage, "--caption is empty: there is nothing to condition on");
    if (ids_path && !strcmp(ids_path, out)) ex_usage(usage, "--ids and --out are the same file '%s'", out);

    if (textok_spm_load(&spm, spm_path) != TEXTOK_OK) ex_die("cannot load --spm: %s", textok_last_error());
    ids = (int32_t *)ex_malloc((size_t)max_len * sizeof(int32_t));
    if (textok_spm_encode(spm, caption, ids, max_len, &n, &full) != TEXTOK_OK)
        ex_die("cannot tokenize the caption: %s", textok_last_error());
    if (full > n)
        fprintf(stderr, "%s: note: the caption has %d tokens; truncated to --max-len %d (EOS kept)\n", ex_prog, full, max_len);
    if (textok_t5_load(&t5, t5_path, &params) != TEXTOK_OK) ex_die("cannot load --text-encoder: %s", textok_last_error());
    d = textok_t5_get_config(t5)->d_model;
    emb = (float *)ex_malloc((size_t)n * d * sizeof(float));
    if (textok_t5_encode(t5, ids, NULL, 1, n, emb) != TEXTOK_OK)
        ex_die("cannot encode the caption with '%s': %s (is '%s' this encoder's tokenizer?)", t5_path, textok_last_error(), spm_path);
    {
        const int64_t shape[2] = { n, d };
        ex_write_npy(out, emb, 2, shape);
        if (ids_path) ex_write_tokens_json(ids_path, ids, 1, n);
    }
    printf("%d tokens:", n);
    for (i = 0; i < n; i++) {
        const char *p = textok_spm_piece(spm, ids[i]);
        printf(" %s", p ? p : "?");
    }
    printf("\n-> %s (%d x %d)\n", out, n, d);
    textok_t5_free(t5);
    textok_spm_free(spm);
    free(ids); free(emb);
    return 0;
}
