/* textok.h - v0.8.0 - language-guided 1D image tokenization (TexTok, TiTok) in plain C
                      no warranty implied; use at your own risk. See end of file for license.

   Do this:
      #define TEXTOK_IMPLEMENTATION
   before you include this file in *one* C or C++ file to create the implementation.
   Every other file just does #include "textok.h".

   WHAT IT IS
      A reference implementation of the pieces that TexTok/TiTok tokenizers and their generators
      are built from: a small table of numerical kernels (forward AND backward), a CPU reference
      for every kernel, a fast CPU version beside it, a checker that compares any two kernel tables,
      an explicit RNG, and strict readers/writers for .safetensors and .npy files. Models, losses
      and training are built on top of the kernel table only, so a GPU table (textok_cuda.cu) runs
      the same code. Models so far: the TiTok tokenizers (encode images to 1D token ids or VAE
      latents, decode them back), reproducing the official PyTorch checkpoints; the networks
      their training losses use, LPIPS (VGG16) and the PatchGAN discriminator, forward and
      backward; and the trainer: one step of L2/L1 + LPIPS + VQ or KL + hinge GAN with LeCAM,
      backward through every layer, AdamW, clipping, warmup + cosine, EMA, and checkpoints that
      resume bit for bit. Language-guided tokenization: TexTok (caption embeddings in the
      tokenizer, the detokenizer, both or neither) and the official TA-TiTok checkpoints, on the
      same model type; the text side is a T5 encoder and the SentencePiece Unigram tokenizer that
      reads Hugging Face tokenizer.json files. Generators: DiT over 2D latents (the official
      DiT-XL/2 checkpoints) or over a 1D tokenizer's tokens, class- or caption-conditional
      (DiT-T2I), with Gaussian diffusion (training loss, DDPM with respacing, DDIM, classifier-free
      guidance), and TiTok's MaskGIT generators (ImageBert, UViT) with their training loss and
      sampling loop; one trainer for both.

   QUICK USAGE
      textok_kernels ref  = textok_cpu_ref_kernels();   // naive loops: the reference
      textok_kernels fast = textok_cpu_kernels(0);      // SIMD GEMM / threaded; 0 = default threads
      fast.matmul_forward(&fast, out, a, b, bias, &dims);

      int fails = textok_kernels_compare(&ref, &fast, 1234, print_row, NULL);  // self-check

      textok_safetensors st;
      if (textok_st_open(&st, "model.safetensors") != TEXTOK_OK)
          fprintf(stderr, "%s\n", textok_last_error());
      const textok_st_tensor *t = textok_st_find(&st, "encoder.ln_post.weight");
      textok_st_read_f32(&st, t, dst, n);              // F32/F16/BF16 (U8) -> F32
      textok_st_close(&st);

   TITOK
      textok_titok *m;
      textok_params p = textok_default_params();      // threads, max_batch, kernel table
      if (textok_titok_load(&m, "titok_s128.safetensors", &p) != TEXTOK_OK)   // made by build/convert
          fprintf(stderr, "%s\n", textok_last_error());
      textok_titok_encode(m, images, B, tokens, NULL, NULL, NULL);   // (B,3,256,256) in [0,1] -> (B,K) ids
      textok_titok_decode_tokens(m, tokens, B, recon);                // -> (B,3,256,256), not clamped
      textok_image_metrics(images, recon, 3, 256, 256, &mse, &psnr, &ssim);   // one pair (clamp recon first)
      textok_titok_free(m);

   TEXT (TexTok, TA-TiTok)
      textok_spm *tok;  textok_t5 *t5;
      textok_spm_load(&tok, "tokenizer.json");            // Hugging Face, SentencePiece Unigram
      textok_t5_load(&t5, "t5.safetensors", &p);          // made by build/convert --t5
      textok_spm_encode(tok, "a red fox", ids, 128, &L, NULL);   // pieces, </s>
      textok_t5_encode(t5, ids, NULL, 1, L, emb);         // (1,L) -> (1,L,d_model)
      textok_text tx = { emb, NULL, L, d_model };         // emb, mask (NULL: all real), L, dim
      textok_titok_encode(m, images, 1, &tx, NULL, latents, NULL, NULL);   // text_in_encoder
      textok_titok_decode_latents(m, latents, 1, &tx, recon);              // text_in_decoder

   LOSS NETWORKS (for training)
      textok_lpips *lp;                                // textok-layout file made by build/convert
      textok_lpips_load(&lp, "lpips_vgg.safetensors", &p);
      textok_lpips_distance(lp, x, y, B, H, W, d);     // (B,3,H,W) pairs in [0,1] -> d (B); H,W % 16 == 0
      textok_disc_config dc = textok_disc_default_config();
      textok_disc *D;
      textok_disc_create(&D, &dc, 256, &p, seed);      // or textok_disc_load
      textok_disc_logits(D, images, B, logits);        // (B,3,256,256) -> (B,1,16,16)
      The trainer drives both through internal calls on device memory (textok__lpips_reserve /
      _forward / _backward, textok__disc_reserve / _forward / _backward; section 12).

   TRAINING
      textok_train_config tc;
      textok_train_preset(&tc, "tatitok");              // published loss weights; edit any field
      p.max_batch = tc.batch;
      textok_titok_create(&m, &cfg, &p, seed);          // or textok_titok_load
      textok_trainer *t;
      textok_trainer_create(&t, m, lp, D, &tc, seed);   // borrows m, lp, D
      for (;;) textok_trainer_step(t, batch, NULL, &stats);   // (tc.batch,3,S,S) in [0,1]; stats: every loss
                                                              // (a textok_text for models with text)
      textok_trainer_save(t, "ckpt.safetensors");       // resume: textok_trainer_load
      textok_trainer_save_model(t, "model.safetensors", 1);   // EMA weights, a normal model file

   GENERATORS (DiT with Gaussian diffusion; MaskGIT)
      textok_dit *g;                                    // made by build/convert or training
      textok_dit_load(&g, "dit.safetensors", &p);      // 2D SD-VAE latents (official DiT-XL/2) or
                                                        // 1D tokenizer tokens (seq_1d), class or text
      textok_dit_sample_config sc = textok_dit_sample_default();   // 250 DDPM steps, cfg 4.0
      textok_rng rng;  textok_rng_seed(&rng, 0);
      textok_dit_generate(g, &sc, classes, NULL, B, &rng, latents);   // (B,C,1,K) for a tokenizer
      textok_titok_decode_latents(m, latents, B, NULL, images);

      textok_maskgit *mg;                               // TiTok's generators: ImageBert, UViT
      textok_maskgit_load(&mg, "maskgit.safetensors", &p);
      textok_maskgit_sample_config ms;
      textok_maskgit_sample_preset(&ms, "L-32");       // the published sampling settings
      textok_maskgit_generate(mg, &ms, classes, B, &rng, ids);   // (B,K) ids
      textok_titok_decode_tokens(m, ids, B, NULL, images);

      textok_gen_train_config gc;  textok_gen_train_preset(&gc, "dit");   // or "maskgit", "tiny"
      textok_gen_trainer *gt;
      textok_gen_trainer_create(&gt, g, NULL, &gc, seed);           // (NULL, mg, ...) for MaskGIT
      textok_gen_trainer_step(gt, latents, NULL, classes, NULL, &gstats);   // (gt, NULL, ids, ...)

   DATA CONVENTIONS
      Every tensor is a contiguous row-major float32 array; shapes are written as (dim0, dim1, ...)
      with the last dimension fastest. Images are NCHW, convolution weights OIHW, linear weights
      (out, in) as in PyTorch. Letters used in shape comments:
         B batch, T sequence length, C channels, H heads (or height in conv code), W width,
         N rows, K codebook size or inner GEMM dimension, D code dimension, V classes.

   COMPILE-TIME OPTIONS  (set where noted before including the header)
      TEXTOK_STATIC          all functions static to the implementing file (set where the
                             implementation is; the declarations then also become static).
      TEXTOK_USE_BLAS        cblas_sgemm for the fast table's GEMM on CPUs where we have no SIMD
                             micro-kernel (implementing file only; link -lopenblas or another
                             CBLAS). x86-64 with AVX2+FMA or AVX-512 uses our own kernels with or
                             without it (OpenBLAS misdetects some AVX-512 CPUs and then runs 5x
                             slower). Without BLAS and SIMD a cache-blocked C GEMM is used.
      TEXTOK_NO_SIMD         leave out the AVX2/AVX-512 GEMM kernels (they are compiled with
                             __attribute__((target)) under gcc/clang on x86-64, no -march needed,
                             and run only where the CPU reports the instructions).
      _OPENMP                set by the compiler under -fopenmp; without it everything runs on one
                             thread and the pragmas are ignored.
      TEXTOK_NO_MMAP         read files into the heap instead of mapping them (lets
                             AddressSanitizer see every read of file data).
      TEXTOK_NO_STDIO        no file functions (textok_st_open, textok_npy_*, writers); the
                             memory-based readers remain (implementing file only).
      TEXTOK_MALLOC(sz) / TEXTOK_REALLOC(p,sz) / TEXTOK_FREE(p)
                             define all three or none (implementing file only).
      TEXTOK_ASSERT(x)       internal invariants only (a caller breaking a documented contract,
                             never bad input or bad files); defaults to assert(x), which is off
                             under NDEBUG. Define it as ((void)0) or your own handler to rule out
                             abort() entirely.

   LIMITS  (what a file may claim; each is checked, against the file's size too, before anything
           is allocated for it; the ones marked "may be set" can be defined before including)
      TEXTOK_MAX_DIMS          8            dims of a tensor (safetensors, .npy)
      TEXTOK_MAX_TENSORS       1000000      tensors in one safetensors file (may be set)
      TEXTOK_MAX_HEADER_BYTES  100000000    a safetensors JSON header (safetensors' own limit)
      TEXTOK_MAX_NPY_HEADER    65536        a .npy header (numpy writes < 4096)
      TEXTOK_MAX_JSON_BYTES    1 GiB        a tokenizer.json (may be set)
      TEXTOK_MAX_JSON_DEPTH    64           nesting of the JSON reader
      TEXTOK_MAX_TEXT_BYTES    1 MiB        one text given to textok_spm_encode, one caption line
                                            (may be set)
      TEXTOK_MAX_IMAGE_SIDE    16384        an image's width or height (the example programs'
      TEXTOK_MAX_IMAGE_PIXELS  2^26         loader refuses larger images from their header,
                                            before decoding; may be set)
      TEXTOK_MAX_ZIP_ENTRIES   1000000      entries of a PyTorch zip (tools/convert.c; may be set)
      TEXTOK_MAX_PICKLE_STACK  2^20         the pickle VM's stack, memo and objects, and the
      TEXTOK_MAX_PICKLE_MEMO   2^21         elements of all its containers together
      TEXTOK_MAX_PICKLE_OBJECTS 2^21        (tools/convert.c; may be set)
      TEXTOK_MAX_PICKLE_ITEMS  2^24
      A tensor's bytes must lie inside the file, so a tensor can never be larger than the file
      (PyTorch views may repeat elements, so tools/convert.c caps all tensors' elements at 4 per
      byte of the input); a model loader refuses a file that cannot hold the parameters its
      __metadata__ config claims (2 bytes each at least) before allocating for it. The test
      runner's "hostile" group runs the readers and loaders under a counting allocator and
      asserts what they request.

   ERRORS
      Functions that can fail return an int status: TEXTOK_OK (0) or a negative TEXTOK_ERR_*
      code. The message that goes with the last failure on the calling thread, naming the file,
      tensor and the expectation, is textok_last_error(). The library never calls exit() or
      abort() and never prints; bad input is always an error return, never a crash.

   THREADS
      textok_cpu_kernels(n): n threads for our OpenMP loops and for OpenBLAS; n = 0 picks
      $TEXTOK_THREADS if set, else omp_get_max_threads(). BLAS is never called from inside one of
      our OpenMP parallel regions (Debian's OpenBLAS is the pthreads build; nesting the two pools
      oversubscribes the cores). Results do not depend on the thread count except where BLAS
      chooses its own summation order.

   GEMM LEVELS
      The fast table's GEMM is picked at run time: "avx512" (14x32 micro-kernel), "avx2" (6x16,
      AVX2+FMA), "blas" (cblas_sgemm, under TEXTOK_USE_BLAS), "portable" (blocked C). The default
      is the widest SIMD level the CPU has, else BLAS, else portable; $TEXTOK_SIMD=<level> (read
      by textok_cpu_kernels) or textok_cpu_kernels_simd(n, "<level>") asks for another one, a
      level the build or CPU lacks falls back to the next one down, and the table's name says
      what it got ("cpu-avx512"). Kernels that run GEMMs inside their own parallel loops
      (attention, conv2d) use the table's level too, never BLAS there (a "blas" table runs the
      best SIMD level inside them). Results at one level do not
      depend on the thread count; levels differ from each other in the last bits.

   TABLE OF CONTENTS (implementation, in data-flow order)
      1. Platform: allocator, errors, threads, timer
      2. RNG: MT19937 (torch-compatible uniform) + Box-Muller normal
      3. Files: a strict JSON subset, safetensors read/write, npy read/write
      4. GEMM: portable blocked fallback, AVX-512 / AVX2 micro-kernels chosen at run time, BLAS
      5. Kernels, one subsection per op: naive reference, then fast version; forward, then backward
      6. The CPU kernel tables
      7. textok_kernels_compare: checking one table against another; image metrics (MSE, PSNR,
         SSIM) for comparing reconstructions
      8. Layers: linear, the pre-norm ViT stack, the MaskGIT-VQGAN ResnetBlock, the generators'
         transformer block (pre/post-norm, adaLN-Zero, cross-attention, UViT skip; forward and
         backward with a tape), and what every model is built from: the parameter walk, the
         activation arena
      9. Text: the SentencePiece Unigram tokenizer (UTF-8, a JSON reader, tokenizer.json,
         normalizers incl. the precompiled charsmap, pre-tokenizers, Viterbi, templates)
     10. The T5 text encoder: config, walk, loading, relative-position buckets, forward
     11. The 1D tokenizers - TiTok, TA-TiTok, TexTok: config and metadata, the parameter walk,
         loading and init, the token layouts (segments, text, key masks), encoder (+ legacy
         reshape), quantisers (VQ, VAE, none), decoder, pixel heads and pixel decoder
     12. Loss networks: LPIPS (VGG16) and the PatchGAN discriminator, forward and backward over
         a reserved arena (the internal calls the trainer uses), loading and init
     13. Training: the ViT stack and the 1D tokenizers (encoder, VQ straight-through / VAE /
         none, decoder, every pixel head, text segments) forward with a tape and backward into a
         grads block laid out like the params; the step (losses, clipping, AdamW, schedule, EMA,
         text dropout, discriminator step); reading tensors by name; checkpoints
     14. DiT: config, presets and metadata, the official parameter walk, 2D and 1D sin-cos
         positions, the timestep embedding, load/create/save, forward over one reused block
         tape (2D latents, 1D tokens, T2I cross-attention), backward, forward_with_cfg
     15. Gaussian diffusion: float64 tables, respacing, q_sample, the loss (mse + vb with its
         analytic gradient, the discretised NLL at t = 0), DDPM and DDIM steps; DiT sampling
         (textok_dit_generate); the DiT training hooks the generator trainer calls
     16. MaskGIT (TiTok's generators): config, presets and metadata, the walk (ImageBert's BERT
         names, UViTBert's), load/create/save, forward over the generic block (BERT post-norm,
         UViT with LIFO skips), the sampling loop (host-side Gumbel, argmax, confidence sort),
         the training hooks (masking schedules, label dropout, weighted MLM loss, backward)
     17. Training a generator: the trainer shell both generators share (presets, config check,
         clipping, AdamW with frozen tensors, warmup + cosine, EMA, checkpoints that resume
         bit for bit) around the models' training hooks

   REVISION HISTORY
      0.8.0 (2026-11-21)  textok_cuda.cu/.h: every kernel of the table on the GPU (built; checked
                          under a CPU emulation of CUDA, not yet on a GPU); textok_set_error;
                          TEXTOK_MAX_* limits on everything read from a file, model loaders that
                          check the file can hold the claimed model before allocating; fuzzed.
      0.7.0 (2026-11-21)  the shipped emoji models (weights/emoji/, make demo): safetensors U8
                          (data files: read as byte values, refused as weights);
                          textok_titok_create_std (1/sqrt(fan_in) init for narrow models);
                          textok_image_metrics (MSE, PSNR, SSIM).
      0.6.0 (2026-11-21)  CPU speed: our own GEMM (AVX-512 14x32 and AVX2 6x16 micro-kernels with
                          packing, chosen at run time; BLAS only where neither applies), fused
                          attention, tiled conv2d (work is a fixed number of tile slots, no longer
                          an image's im2col), one OpenMP pool; textok_cpu_kernels_simd,
                          textok_cpu_gemm, $TEXTOK_SIMD. No per-step allocation in sampling.
      0.5.0 (2026-11-21)  generators: DiT (2D latents as the official checkpoints, 1D token
                          sequences, DiT-T2I with cross-attention) with Gaussian diffusion (loss
                          with the learned-sigma bound, DDPM with respacing, DDIM, CFG); MaskGIT
                          (ImageBert, UViT) with its training loss and sampling loop; one trainer
                          for both; the generators' transformer block in section 8.
      0.4.0 (2026-11-21)  language-guided tokenization: TexTok and TA-TiTok layouts (text
                          segments with key-padding masks, arch textok, quantize_mode none, text
                          dropout) in inference and training; the T5 encoder; the Unigram
                          tokenizer. API change: encode/decode/trainer_step take a textok_text.
      0.3.0 (2026-11-21)  training: the trainer (all tokenizer losses, AdamW, EMA, checkpoints),
                          LPIPS and the discriminator; kernels fill, scale, sum_squares,
                          ema_update, diff_loss, kl, leaky_relu, maxpool, lpips_layer.
      0.2.0 (2026-11-21)  TiTok inference (VQ/VAE, legacy and direct pixel heads); kernels tanh,
                          transpose, l2norm, embedding, unpatchify, gaussian_sample; table copy.
      0.1.0 (2026-11-21)  kernel table with CPU reference and fast path, kernels_compare,
                          safetensors/npy I/O, RNG.
*/

#ifndef TEXTOK_INCLUDE_TEXTOK_H
#define TEXTOK_INCLUDE_TEXTOK_H

#include <stddef.h>
#include <stdint.h>

#define TEXTOK_VERSION_MAJOR 0
#define TEXTOK_VERSION_MINOR 8
#define TEXTOK_VERSION_PATCH 0
#define TEXTOK_VERSION_STRING "0.8.0"

#ifndef TEXTOKDEF
#ifdef TEXTOK_STATIC
#if defined(__GNUC__) || defined(__clang__)
#define TEXTOKDEF static __attribute__((unused))   /* a file may use only some of them */
#else
#define TEXTOKDEF static
#endif
#else
#define TEXTOKDEF extern
#endif
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------------
   Status codes and errors */
enum {
    TEXTOK_OK = 0,
    TEXTOK_ERR_IO = -1,          /* cannot open/read/write/rename a file */
    TEXTOK_ERR_FORMAT = -2,      /* the bytes are not what the format says they must be */
    TEXTOK_ERR_SHAPE = -3,       /* a shape, dtype or size does not match the expectation */
    TEXTOK_ERR_NOMEM = -4,       /* an allocation failed */
    TEXTOK_ERR_ARG = -5,         /* a bad argument from the caller */
    TEXTOK_ERR_NOT_FOUND = -6,   /* a named tensor or key is absent */
    TEXTOK_ERR_UNSUPPORTED = -7  /* valid input that this build cannot handle (dtype, version) */
};
TEXTOKDEF const char *textok_version(void);
/* Message for the last failure on this thread ("" if none). Valid until the next failing call. */
TEXTOKDEF const char *textok_last_error(void);
TEXTOKDEF void        textok_clear_error(void);
/* Sets this thread's message (printf format) and returns status: for code outside the
   implementing file that reports through the same channel, e.g. a GPU kernel table
   (textok_cuda.cu) turning a CUDA failure into a textok error. */
TEXTOKDEF int         textok_set_error(int status, const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* ---------------------------------------------------------------------------------------------
   RNG: explicit state, never seeded from time. MT19937 seeded like torch.manual_seed(seed);
   textok_rng_uniform reproduces torch.rand's float stream on the CPU generator. */
typedef struct textok_rng {
    uint32_t mt[624];
    int      index;
    int      has_spare;   /* Box-Muller produces normals in pairs */
    double   spare;
} textok_rng;
TEXTOKDEF void     textok_rng_seed(textok_rng *r, uint64_t seed);
TEXTOKDEF uint32_t textok_rng_u32(textok_rng *r);
TEXTOKDEF float    textok_rng_uniform(textok_rng *r);              /* [0, 1), 24-bit as torch.rand */
TEXTOKDEF float    textok_rng_normal(textok_rng *r);               /* N(0, 1) */
TEXTOKDEF void     textok_rng_fill_uniform(textok_rng *r, float *x, size_t n, float lo, float hi);
TEXTOKDEF void     textok_rng_fill_normal(textok_rng *r, float *x, size_t n, float mean, float std);

/* ---------------------------------------------------------------------------------------------
   Kernel table. A backend is a struct of function pointers (NULL = not provided) plus its own
   state. Every kernel takes the table itself first (for the thread count, a BLAS/cuBLAS handle,
   ...). All pointers passed to kernels point into memory obtained from the same table's alloc.
   Backward kernels ACCUMULATE (+=) into every gradient they are given (weights and inputs alike),
   so a caller zeroes gradients once; a NULL gradient pointer means "not needed". The elementwise
   and row-wise forwards (add, gelu, silu, tanh, leaky_relu, softmax) may be called in place
   (out == inp), and the models do so; a backend must allow that. Saved statistics (mean, rstd,
   lse) may be NULL in inference. */
typedef struct textok_kernels textok_kernels;

/* out[b] (M,N) = op(A[b]) (M,K) . op(B[b]) (K,N) + bias (N); b < batch, each operand contiguous.
   op(A) = A (M,K) when trans_a = 0, A^T with A stored (K,M) when trans_a = 1; likewise B is
   stored (K,N) or, when trans_b = 1, (N,K) - the layout of a PyTorch Linear weight. */
typedef struct textok_matmul_dims { int batch, M, N, K, trans_a, trans_b; } textok_matmul_dims;

/* Multi-head scaled-dot-product attention on (B,T,C) activations: head h uses channels
   [h*C/H, (h+1)*C/H). scale is usually 1/sqrt(C/H). */
typedef struct textok_attention_dims { int B, Tq, Tk, C, H; float scale; } textok_attention_dims;

/* conv2d, NCHW input (B,C,H,W), OIHW weight (OC,C,KH,KW), symmetric zero padding. Output
   (B,OC,OH,OW) with OH = (H + 2*pad - KH)/stride + 1, likewise OW. */
typedef struct textok_conv2d_dims { int B, C, H, W, OC, KH, KW, stride, pad; } textok_conv2d_dims;

/* AdamW exactly as torch.optim.AdamW: p -= lr*wd*p; m,v moments; bias-corrected step.
   Hyperparameters are doubles, as Python floats are in PyTorch: 1 - beta2 is then formed in
   double and rounded once, which is what makes the moments agree with torch to the last bits. */
typedef struct textok_adamw_params { double lr, beta1, beta2, eps, weight_decay; } textok_adamw_params;

struct textok_kernels {
    const char *name;
    int   n_threads;       /* threads for CPU loops/BLAS (CPU tables); free for other backends */
    void *state;           /* backend-owned state (e.g. a cuBLAS handle); NULL for the CPU */

    /* memory: a GPU table hands out device memory here; the CPU uses the allocator macros */
    void *(*alloc)(const textok_kernels *k, size_t bytes);           /* NULL on failure */
    void  (*free)(const textok_kernels *k, void *ptr);
    int   (*to_device)(const textok_kernels *k, void *dst, const void *host_src, size_t bytes);
    int   (*to_host)(const textok_kernels *k, void *host_dst, const void *src, size_t bytes);
    int   (*copy)(const textok_kernels *k, void *dst, const void *src, size_t bytes);  /* device to device */

    /* matmul: see textok_matmul_dims. bias may be NULL. */
    void (*matmul_forward)(const textok_kernels *k, float *out, const float *a, const float *b,
                           const float *bias, const textok_matmul_dims *d);
    void (*matmul_backward)(const textok_kernels *k, float *da, float *db, float *dbias,
                            const float *dout, const float *a, const float *b,
                            const textok_matmul_dims *d);

    /* layernorm over the last dim: inp (N,C); weight, bias (C) or NULL (no affine, as in DiT);
       mean, rstd (N) are saved for backward (may be NULL in inference). Biased variance. */
    void (*layernorm_forward)(const textok_kernels *k, float *out, float *mean, float *rstd,
                              const float *inp, const float *weight, const float *bias,
                              int N, int C, float eps);
    void (*layernorm_backward)(const textok_kernels *k, float *dinp, float *dweight, float *dbias,
                               const float *dout, const float *inp, const float *weight,
                               const float *mean, const float *rstd, int N, int C);

    /* RMSNorm (T5): out = inp * rsqrt(mean(inp^2) + eps) * weight; rstd (N) saved, may be NULL */
    void (*rmsnorm_forward)(const textok_kernels *k, float *out, float *rstd, const float *inp,
                            const float *weight, int N, int C, float eps);
    void (*rmsnorm_backward)(const textok_kernels *k, float *dinp, float *dweight, const float *dout,
                             const float *inp, const float *weight, const float *rstd, int N, int C);

    /* GELU: approx_tanh = 0 is the exact erf form (nn.GELU()), 1 the tanh form (DiT) */
    void (*gelu_forward)(const textok_kernels *k, float *out, const float *inp, size_t n,
                         int approx_tanh);
    void (*gelu_backward)(const textok_kernels *k, float *dinp, const float *dout, const float *inp,
                          size_t n, int approx_tanh);
    void (*silu_forward)(const textok_kernels *k, float *out, const float *inp, size_t n);
    void (*silu_backward)(const textok_kernels *k, float *dinp, const float *dout, const float *inp,
                          size_t n);

    /* softmax over the last dim of (rows, cols); backward uses the saved output */
    void (*softmax_forward)(const textok_kernels *k, float *out, const float *inp, int rows, int cols);
    void (*softmax_backward)(const textok_kernels *k, float *dinp, const float *dout,
                             const float *out, int rows, int cols);

    /* multi-head attention: q (B,Tq,C), key/v (B,Tk,C) -> out (B,Tq,C); lse (B,H,Tq) is the
       row log-sum-exp saved for backward (backward recomputes scores from it; no (T,T) matrix
       is kept). bias (H,Tq,Tk) is added to the scaled scores (broadcast over B) or NULL.
       key_mask (B,Tk): nonzero = this key may be attended, NULL = all; a query whose keys are
       all masked gets a zero output. work: textok_attention_work_floats(d) floats. */
    void (*attention_forward)(const textok_kernels *k, float *out, float *lse, const float *q,
                              const float *key, const float *v, const float *bias,
                              const unsigned char *key_mask, const textok_attention_dims *d,
                              float *work);
    void (*attention_backward)(const textok_kernels *k, float *dq, float *dkey, float *dv,
                               float *dbias, const float *dout, const float *q, const float *key,
                               const float *v, const float *bias, const unsigned char *key_mask,
                               const float *out, const float *lse,
                               const textok_attention_dims *d, float *work);

    /* residual add: out = a + b (n) */
    void (*add_forward)(const textok_kernels *k, float *out, const float *a, const float *b, size_t n);
    void (*add_backward)(const textok_kernels *k, float *da, float *db, const float *dout, size_t n);

    /* adaLN (DiT): modulate out = inp * (1 + scale[b]) + shift[b]; inp (B,T,C), shift/scale (B,C) */
    void (*modulate_forward)(const textok_kernels *k, float *out, const float *inp,
                             const float *shift, const float *scale, int B, int T, int C);
    void (*modulate_backward)(const textok_kernels *k, float *dinp, float *dshift, float *dscale,
                              const float *dout, const float *inp, const float *scale,
                              int B, int T, int C);
    /* adaLN gated residual: out = resid + gate[b] * inp; resid, inp (B,T,C), gate (B,C) */
    void (*gate_forward)(const textok_kernels *k, float *out, const float *resid, const float *inp,
                         const float *gate, int B, int T, int C);
    void (*gate_backward)(const textok_kernels *k, float *dresid, float *dinp, float *dgate,
                          const float *dout, const float *inp, const float *gate,
                          int B, int T, int C);

    /* conv2d, see textok_conv2d_dims; bias (OC) or NULL. work: textok_conv2d_work_floats(d),
       which does not depend on d->B nor on the thread count (the CPU table: a column tile of
       640 KiB, or of 96 output pixels when that is more, for each of up to 32 threads, the
       most a conv uses; 0 for 1x1 convs) */
    void (*conv2d_forward)(const textok_kernels *k, float *out, const float *inp, const float *weight,
                           const float *bias, const textok_conv2d_dims *d, float *work);
    void (*conv2d_backward)(const textok_kernels *k, float *dinp, float *dweight, float *dbias,
                            const float *dout, const float *inp, const float *weight,
                            const textok_conv2d_dims *d, float *work);

    /* groupnorm: inp (B,C,HW), G groups, weight/bias (C) or NULL; mean, rstd (B,G) saved (or NULL) */
    void (*groupnorm_forward)(const textok_kernels *k, float *out, float *mean, float *rstd,
                              const float *inp, const float *weight, const float *bias,
                              int B, int C, int HW, int G, float eps);
    void (*groupnorm_backward)(const textok_kernels *k, float *dinp, float *dweight, float *dbias,
                               const float *dout, const float *inp, const float *weight,
                               const float *mean, const float *rstd, int B, int C, int HW, int G);

    /* nearest upsampling by an integer factor: inp (BC,H,W) -> out (BC,H*f,W*f) */
    void (*upsample_forward)(const textok_kernels *k, float *out, const float *inp,
                             int BC, int H, int W, int factor);
    void (*upsample_backward)(const textok_kernels *k, float *dinp, const float *dout,
                              int BC, int H, int W, int factor);

    /* nearest codebook entry: idx[i] = argmin_j |z_i - e_j|^2 for z (N,D), codebook (K,D),
       through the expanded form |z|^2 + |e|^2 - 2 z.e (a GEMM), ties to the lowest index.
       dist (N) receives the minimum squared distance, or NULL. work: textok_codebook_work_floats */
    void (*codebook_search)(const textok_kernels *k, int32_t *idx, float *dist, const float *z,
                            const float *codebook, int N, int K, int D, float *work);

    /* softmax cross-entropy per row, as F.cross_entropy(reduction='none', label_smoothing=ls):
       logits (N,V), targets (N) with a negative target = ignored (loss 0, no gradient);
       losses (N); probs (N,V) saved for backward. backward: dlogits += dlosses[i] * d loss_i. */
    void (*cross_entropy_forward)(const textok_kernels *k, float *losses, float *probs,
                                  const float *logits, const int32_t *targets, int N, int V,
                                  float label_smoothing);
    void (*cross_entropy_backward)(const textok_kernels *k, float *dlogits, const float *dlosses,
                                   const float *probs, const int32_t *targets, int N, int V,
                                   float label_smoothing);

    /* one AdamW step (step counts from 1) on n parameters with moments m, v */
    void (*adamw_update)(const textok_kernels *k, float *params, const float *grads, float *m,
                         float *v, size_t n, const textok_adamw_params *hp, int step);

    /* ----- added for the TiTok models (data movement and small pointwise ops) ----- */
    /* tanh (TiTok's legacy decoder head); backward uses the saved output: dx += dy (1 - y^2) */
    void (*tanh_forward)(const textok_kernels *k, float *out, const float *inp, size_t n);
    void (*tanh_backward)(const textok_kernels *k, float *dinp, const float *dout, const float *out,
                          size_t n);
    /* batched transpose: inp (B,R,C) -> out (B,C,R), e.g. NCHW <-> (B,T,C) tokens */
    void (*transpose_forward)(const textok_kernels *k, float *out, const float *inp, int B, int R, int C);
    void (*transpose_backward)(const textok_kernels *k, float *dinp, const float *dout, int B, int R, int C);
    /* row L2 normalisation as F.normalize: out = x / max(|x|_2, eps); inp (N,C) */
    void (*l2norm_forward)(const textok_kernels *k, float *out, const float *inp, int N, int C, float eps);
    void (*l2norm_backward)(const textok_kernels *k, float *dinp, const float *dout, const float *inp,
                            int N, int C, float eps);
    /* embedding lookup: out (N,D) = table[ids[i]] with table (V,D); ids are in [0,V) (callers
       check ids coming from users before they reach a kernel); backward scatter-adds into dtable */
    void (*embedding_forward)(const textok_kernels *k, float *out, const float *table,
                              const int32_t *ids, int N, int D);
    void (*embedding_backward)(const textok_kernels *k, float *dtable, const float *dout,
                               const int32_t *ids, int N, int D);
    /* unpatchify: inp (B, (H/p)*(W/p), p*p*C), patch-row-major, channel index (p1*p + p2)*C + c
       -> image out (B,C,H,W): einops "b (h w) (p1 p2 c) -> b c (h p1) (w p2)" as in TiTok's
       non-legacy head and DiT's final layer. backward (patchify) accumulates into dinp. */
    void (*unpatchify_forward)(const textok_kernels *k, float *out, const float *inp,
                               int B, int C, int H, int W, int p);
    void (*unpatchify_backward)(const textok_kernels *k, float *dinp, const float *dout,
                                int B, int C, int H, int W, int p);
    /* diagonal Gaussian (VAE) sample: z = mean + exp(0.5 lv) * noise, lv = clamp(logvar, -30, 20);
       mean, logvar, noise, z (n). backward: dmean += dz; dlogvar += dz noise 0.5 exp(0.5 lv)
       where logvar is inside the clamp range, 0 outside (as torch.clamp's gradient). */
    void (*gaussian_sample_forward)(const textok_kernels *k, float *z, const float *mean,
                                    const float *logvar, const float *noise, size_t n);
    void (*gaussian_sample_backward)(const textok_kernels *k, float *dmean, float *dlogvar,
                                     const float *dz, const float *logvar, const float *noise,
                                     size_t n);

    /* ----- added for training: vector helpers and the two pointwise losses ----- */
    void (*fill)(const textok_kernels *k, float *x, size_t n, float value);      /* x = value */
    void (*scale)(const textok_kernels *k, float *x, size_t n, float s);         /* x *= s */
    /* out[0] = sum x^2, one float in device memory, reduced in an order fixed by n alone */
    void (*sum_squares)(const textok_kernels *k, float *out, const float *x, size_t n);
    /* weight EMA: ema -= one_minus_decay * (ema - p) */
    void (*ema_update)(const textok_kernels *k, float *ema, const float *p, size_t n,
                       float one_minus_decay);
    /* reconstruction loss: loss[0] = mean (x - y)^2 (l1 = 0) or mean |x - y| (l1 = 1), as
       F.mse_loss / F.l1_loss; one float in device memory. backward: dx += scale * d loss / dx
       (scale is the host-side upstream gradient; sign(0) = 0 for L1, as torch) */
    void (*diff_loss_forward)(const textok_kernels *k, float *loss, const float *x, const float *y,
                              size_t n, int l1);
    void (*diff_loss_backward)(const textok_kernels *k, float *dx, const float *x, const float *y,
                               size_t n, int l1, float scale);
    /* KL of N(mean, exp(lv)) against N(0, 1), summed over n: loss[0] = 0.5 sum(mean^2 + exp(lv)
       - 1 - lv), lv = clamp(logvar, -30, 20) (DiagonalGaussianDistribution.kl). backward:
       dmean += scale mean; dlogvar += scale 0.5 (exp(lv) - 1) inside the clamp range */
    void (*kl_forward)(const textok_kernels *k, float *loss, const float *mean, const float *logvar,
                       size_t n);
    void (*kl_backward)(const textok_kernels *k, float *dmean, float *dlogvar, const float *mean,
                        const float *logvar, size_t n, float scale);
    /* ----- added for the loss networks (LPIPS, discriminator) ----- */
    /* leaky ReLU: out = x > 0 ? x : slope * x (slope 0 = ReLU); backward from the input:
       dinp += dout * (x > 0 ? 1 : slope)   (torch: gradient at exactly 0 is slope). For
       slope >= 0 the output passes the same test, so the saved output may stand in for inp
       (in-place use, out == inp, is allowed). */
    void (*leaky_relu_forward)(const textok_kernels *k, float *out, const float *inp, size_t n, float slope);
    void (*leaky_relu_backward)(const textok_kernels *k, float *dinp, const float *dout, const float *inp,
                                size_t n, float slope);
    /* adaptive max pooling as nn.AdaptiveMaxPool2d((OH, OW)): inp (BC,H,W) -> out (BC,OH,OW); output cell
       (i,j) takes rows [floor(i*H/OH), ceil((i+1)*H/OH)) and likewise columns; it covers MaxPool2d(2,2)
       on even sizes (OH = H/2) and upsampling-by-repeat when OH > H. Backward routes dout to the first
       maximal element of each window (row-major scan order, as torch's CPU kernel), recomputed from inp. */
    void (*maxpool_forward)(const textok_kernels *k, float *out, const float *inp, int BC, int H, int W, int OH, int OW);
    void (*maxpool_backward)(const textok_kernels *k, float *dinp, const float *dout, const float *inp,
                             int BC, int H, int W, int OH, int OW);
    /* one LPIPS layer (architecture.md 6): f0, f1 (B,C,HW) feature maps; w (C) lin weights.
       n_i = f_i / (sqrt(sum_c f_i^2) + 1e-10) per pixel; d[b] = mean_hw sum_c w[c] (n0 - n1)^2.
       d (B) device memory, OVERWRITTEN (not accumulated).
       backward: df0 += dd[b] * d d[b] / d f0 (df1 likewise, either may be NULL); dd (B) device. */
    void (*lpips_layer_forward)(const textok_kernels *k, float *d, const float *f0, const float *f1,
                                const float *w, int B, int C, int HW);
    void (*lpips_layer_backward)(const textok_kernels *k, float *df0, float *df1, const float *dd,
                                 const float *f0, const float *f1, const float *w, int B, int C, int HW);
};

/* Work-buffer sizes (in floats) shared by every backend (attention's depends on Tq and Tk only) */
TEXTOKDEF size_t textok_attention_work_floats(const textok_attention_dims *d);
TEXTOKDEF size_t textok_conv2d_work_floats(const textok_conv2d_dims *d);
TEXTOKDEF size_t textok_codebook_work_floats(int N, int K, int D);
TEXTOKDEF int    textok_conv2d_out_h(const textok_conv2d_dims *d);
TEXTOKDEF int    textok_conv2d_out_w(const textok_conv2d_dims *d);

/* The CPU tables. The reference table runs the naive loops, single-threaded: it is what every
   other table (fast CPU, CUDA, yours) is checked against. n_threads = 0 picks the default. */
TEXTOKDEF textok_kernels textok_cpu_ref_kernels(void);
TEXTOKDEF textok_kernels textok_cpu_kernels(int n_threads);
TEXTOKDEF int            textok_default_threads(void);
/* The fast CPU table with its GEMM chosen by name: "avx512", "avx2" (our micro-kernels, x86-64),
   "blas" (cblas_sgemm, under TEXTOK_USE_BLAS), "portable" (the blocked C GEMM). A level this
   build or CPU lacks falls back to the next one down; NULL or "" = $TEXTOK_SIMD if set, else the
   best. textok_cpu_kernels(n) is textok_cpu_kernels_simd(n, NULL). The table's name says what
   it got ("cpu-avx512", ...). For tests and benchmarks: every level on one machine. */
TEXTOKDEF textok_kernels textok_cpu_kernels_simd(int n_threads, const char *simd);
/* The CPU tables' GEMM on host arrays, for tests and benchmarks: C (M,N) = alpha op(A) op(B) +
   beta C, row-major with leading dims, BLAS semantics (beta 0 never reads C); k (a CPU table,
   not NULL) gives the level and the threads. */
TEXTOKDEF void textok_cpu_gemm(const textok_kernels *k, int trans_a, int trans_b, int M, int N, int K, float alpha,
                               const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc);

/* ---------------------------------------------------------------------------------------------
   Comparing two kernel tables. Every kernel both tables provide is run on the same seeded
   random inputs, several shapes each (odd sizes, sizes that are not multiples of any block
   size). Outputs are surrounded by canary regions that must survive; NaN/Inf fail first; then
   max abs error, max relative error and NMSE are compared with a per-kernel threshold.
   report (may be NULL) is called once per (kernel, shape). Returns the number of failed rows,
   or a negative status if the harness itself could not run (e.g. alloc failed). */
typedef struct textok_compare_result {
    const char *kernel;      /* e.g. "matmul_backward" */
    const char *output;      /* which output, e.g. "da" */
    char        shape[64];   /* the case, e.g. "b2 M33 N17 K65 tA0 tB1" */
    double      max_abs;     /* max |test - ref| */
    double      max_rel;     /* max |test - ref| / (|ref| + 1e-6) */
    double      nmse;        /* sum (test-ref)^2 / sum ref^2 */
    double      tol_nmse;    /* the threshold nmse is held to */
    int         ok;          /* 1 if within tolerance, canaries intact, no NaN/Inf */
    const char *why;         /* "" or the reason for failure ("NaN", "canary", "index", ...) */
} textok_compare_result;
typedef void (*textok_compare_report_fn)(const textok_compare_result *r, void *user);
TEXTOKDEF int textok_kernels_compare(const textok_kernels *ref, const textok_kernels *test,
                                     uint64_t seed, textok_compare_report_fn report, void *user);

/* ---------------------------------------------------------------------------------------------
   Image metrics: how close a reconstruction y is to its original x. One image each, planar
   (C,H,W) float host memory, values nominally in [0,1] (data range L = 1); nothing is clamped
   here (clamp a decoder's output first, as a saved PNG would be). All sums are in double, in a
   fixed order: the results are deterministic and independent of threads. Any output pointer may
   be NULL; on failure none is written.
     mse   mean of (x - y)^2 over all C*H*W values.
     psnr  10 log10(1 / mse) in dB, with mse floored at 1e-10: identical images give 100 dB,
           never infinity (so that means over images stay finite).
     ssim  Wang et al. 2004 SSIM, (2 mx my + C1)(2 sxy + C2) / ((mx^2 + my^2 + C1)(sx^2 + sy^2 + C2))
           with C1 = (0.01 L)^2, C2 = (0.03 L)^2, the local means, variances and covariance taken
           with an 11x11 Gaussian window, sigma 1.5 (taps exp(-k^2 / 4.5), k = -5..5, normalised
           to sum 1; separable), population statistics (sx^2 = E[x^2] - mx^2, no n/(n-1)). Per
           channel, over the VALID window positions only, (H-10) x (W-10) centres where the whole
           window lies inside the image (no padding), then averaged over channels and positions.
           This is scikit-image's structural_similarity(x, y, gaussian_weights=True, sigma=1.5,
           use_sample_covariance=False, data_range=1, channel_axis=0) (its filter pads, then it
           drops a 5-pixel border: exactly the valid positions).
   TEXTOK_ERR_ARG for NULL x or y, C, H or W < 1, or, when ssim is asked for, an image smaller
   than the 11x11 window. Allocates 5 W doubles (through the library allocator). */
TEXTOKDEF int textok_image_metrics(const float *x, const float *y, int C, int H, int W,
                                   double *mse, double *psnr, double *ssim);

/* ---------------------------------------------------------------------------------------------
   safetensors. The reader validates everything before use: header length against the file size,
   the JSON, every dtype, shape (dims product overflow-checked) and byte range; ranges must lie
   inside the data buffer and must not overlap. F32, F16, BF16 and U8 convert to F32 on read. */
/* U8 (bytes, read as their values 0..255) holds data files' pixels and text (the packed datasets
   the training examples read), never model weights: the model loaders refuse it. */
enum { TEXTOK_DTYPE_F32 = 0, TEXTOK_DTYPE_F16 = 1, TEXTOK_DTYPE_BF16 = 2, TEXTOK_DTYPE_U8 = 3 };
#define TEXTOK_MAX_DIMS 8
/* Limits on what a file may claim: see LIMITS at the top of the file. */
#ifndef TEXTOK_MAX_TENSORS
#define TEXTOK_MAX_TENSORS 1000000
#endif
#define TEXTOK_MAX_HEADER_BYTES 100000000u
#define TEXTOK_MAX_NPY_HEADER 65536u
#ifndef TEXTOK_MAX_JSON_BYTES
#define TEXTOK_MAX_JSON_BYTES ((size_t)1 << 30)
#endif
#define TEXTOK_MAX_JSON_DEPTH 64
#ifndef TEXTOK_MAX_TEXT_BYTES
#define TEXTOK_MAX_TEXT_BYTES (1 << 20)
#endif
#ifndef TEXTOK_MAX_IMAGE_SIDE
#define TEXTOK_MAX_IMAGE_SIDE 16384
#endif
#ifndef TEXTOK_MAX_IMAGE_PIXELS
#define TEXTOK_MAX_IMAGE_PIXELS (1L << 26)
#endif
#ifndef TEXTOK_MAX_ZIP_ENTRIES
#define TEXTOK_MAX_ZIP_ENTRIES 1000000
#endif
#ifndef TEXTOK_MAX_PICKLE_STACK
#define TEXTOK_MAX_PICKLE_STACK (1u << 20)
#endif
#ifndef TEXTOK_MAX_PICKLE_MEMO
#define TEXTOK_MAX_PICKLE_MEMO (1u << 21)
#endif
#ifndef TEXTOK_MAX_PICKLE_OBJECTS
#define TEXTOK_MAX_PICKLE_OBJECTS (1u << 21)
#endif
#ifndef TEXTOK_MAX_PICKLE_ITEMS
#define TEXTOK_MAX_PICKLE_ITEMS (1u << 24)
#endif
typedef struct textok_st_tensor {
    char    *name;
    int      dtype;                   /* TEXTOK_DTYPE_* */
    int      ndim;
    int64_t  shape[TEXTOK_MAX_DIMS];
    size_t   numel;
    size_t   offset;                  /* from the start of the data buffer */
    size_t   nbytes;
} textok_st_tensor;
typedef struct textok_safetensors {
    const unsigned char *data;        /* the whole file */
    size_t               size;
    const unsigned char *buffer;      /* data + 8 + header length */
    size_t               buffer_size;
    textok_st_tensor    *tensors;     /* in file order */
    int                  n_tensors;
    char               **meta_keys;   /* __metadata__, string to string */
    char               **meta_values;
    int                  n_meta;
    char                 path[256];   /* for error messages */
    int                  mapped;      /* 1 if data is an mmap, 0 if owned heap memory, -1 borrowed */
} textok_safetensors;
/* A whole file in memory, read-only: mmapped where the platform allows (mapped = 1), else read
   into the heap (mapped = 0). What textok_st_open reads through; tools that parse other formats
   (tools/convert.c: PyTorch zips) use it too. close is safe on a zeroed or failed struct. */
typedef struct textok_file {
    const unsigned char *data;
    size_t               size;
    int                  mapped;
} textok_file;
TEXTOKDEF int  textok_file_open(textok_file *f, const char *path);
TEXTOKDEF void textok_file_close(textok_file *f);

/* Open from a file (mmap where available) or from memory the caller keeps alive. */
TEXTOKDEF int  textok_st_open(textok_safetensors *st, const char *path);
TEXTOKDEF int  textok_st_open_memory(textok_safetensors *st, const void *data, size_t size,
                                     const char *name_for_errors);
TEXTOKDEF void textok_st_close(textok_safetensors *st);
TEXTOKDEF const textok_st_tensor *textok_st_find(const textok_safetensors *st, const char *name);
TEXTOKDEF const char *textok_st_meta(const textok_safetensors *st, const char *key); /* NULL if absent */
/* Convert to F32 into dst, which holds dst_numel floats (must equal t->numel). */
TEXTOKDEF int  textok_st_read_f32(const textok_safetensors *st, const textok_st_tensor *t,
                                  float *dst, size_t dst_numel);
/* Find by name, check the shape (ndim entries), then read. Errors name the tensor and both shapes. */
TEXTOKDEF int  textok_st_load(const textok_safetensors *st, const char *name, int ndim,
                              const int64_t *shape, float *dst);

/* Writing: tensors given as F32 arrays, stored as F32, F16 or U8 (rounded, clamped to 0..255);
   metadata as string pairs. The file is written to "<path>.tmp" and renamed, so a failure never
   leaves a half-written file. */
typedef struct textok_st_entry {
    const char  *name;
    const float *data;
    int          ndim;
    int64_t      shape[TEXTOK_MAX_DIMS];
} textok_st_entry;
TEXTOKDEF int textok_st_save(const char *path, const textok_st_entry *entries, int n_entries,
                             const char *const *meta_kv, int n_meta, int dtype);

/* .npy float32 arrays (little-endian '<f4', C order; versions 1.0, 2.0, 3.0 read, 1.0 written).
   The reader allocates *data with the library allocator; free it with textok_free. */
TEXTOKDEF int  textok_npy_read(const char *path, float **data, int *ndim, int64_t shape[TEXTOK_MAX_DIMS]);
TEXTOKDEF int  textok_npy_read_memory(const void *bytes, size_t size, const char *name_for_errors,
                                      float **data, int *ndim, int64_t shape[TEXTOK_MAX_DIMS]);
TEXTOKDEF int  textok_npy_write(const char *path, const float *data, int ndim, const int64_t *shape);
TEXTOKDEF void textok_free(void *p);

/* F16/BF16 <-> F32 conversions (round to nearest even) */
TEXTOKDEF float    textok_f16_to_f32(uint16_t h);
TEXTOKDEF uint16_t textok_f32_to_f16(float f);
TEXTOKDEF float    textok_bf16_to_f32(uint16_t h);

/* ---------------------------------------------------------------------------------------------
   Models: common parameters */
typedef struct textok_params {
    int   n_threads;                 /* 0 = textok_default_threads() */
    int   max_batch;                 /* images per internal pass (default 1): the activation arena
                                        is sized for it once; larger calls run in chunks of it */
    const textok_kernels *kernels;   /* NULL = textok_cpu_kernels(n_threads); copied at load */
} textok_params;
TEXTOKDEF textok_params textok_default_params(void);

/* One expected tensor of a model file: what loaders and tools/convert check names and shapes
   against. */
typedef struct textok_tensor_spec {
    char    name[96];
    int     ndim;
    int64_t shape[4];
} textok_tensor_spec;

/* ---------------------------------------------------------------------------------------------
   Text: the SentencePiece Unigram tokenizer of T5 (and other Unigram models), read from a
   Hugging Face tokenizer.json and run as HF's tokenizers library runs it: added/special tokens
   ("<pad>", "</s>", "<extra_id_0>", ...) split off the raw text first, then the normalizers
   (Precompiled charsmap, Replace, Strip), the pre-tokenizers (Metaspace, WhitespaceSplit), the
   Unigram Viterbi per word, and the post-processor's template (T5: "$A </s>"). Anything else in
   a file (another model type, normalizer or pre-tokenizer) is refused with
   TEXTOK_ERR_UNSUPPORTED naming it; a malformed file is TEXTOK_ERR_FORMAT with its byte offset.
   One deviation from HF: the Precompiled charsmap is applied as SentencePiece applies it
   (longest match at every position), where HF works per grapheme cluster; they differ only on
   clusters of several code points such as decomposed Hangul (see section 9, Normalizers,
   in the implementation). And a file without a post_processor gets "</s>" appended when it has
   that piece (HF would append nothing). Added tokens with single_word are refused.

      textok_spm *tok;
      if (textok_spm_load(&tok, "tokenizer.json") != TEXTOK_OK) fprintf(stderr, "%s\n", textok_last_error());
      int32_t ids[128];
      int n, n_full;
      textok_spm_encode(tok, "a photo of a dog", ids, 128, &n, &n_full);  // ids: pieces..., </s>
      for (int i = n; i < 128; i++) ids[i] = textok_spm_pad_id(tok);        // T5: pad 0, mask 0
      textok_spm_free(tok);

   Encoding is const on the model: one model may serve many threads at once. */
typedef struct textok_spm textok_spm;
TEXTOKDEF int  textok_spm_load(textok_spm **out, const char *path);
/* json: n bytes (no NUL needed) that the call only reads; name is what messages call it. */
TEXTOKDEF int  textok_spm_load_mem(textok_spm **out, const char *json, size_t n, const char *name);
TEXTOKDEF void textok_spm_free(textok_spm *s);   /* NULL is fine */
/* text: NUL-terminated UTF-8 (invalid UTF-8 -> TEXTOK_ERR_ARG naming the byte offset). Writes
   at most max_len ids (max_len >= 1): the pieces, truncated to max_len - 1, then EOS (HF's
   truncation, then its template; a template with k special ids keeps max_len - k pieces and
   needs max_len >= k). *n_ids = ids written; *n_full (may be NULL) = the count before
   truncation (EOS included). */
TEXTOKDEF int  textok_spm_encode(const textok_spm *s, const char *text, int32_t *ids, int max_len,
                                 int *n_ids, int *n_full);
TEXTOKDEF int  textok_spm_vocab_size(const textok_spm *s);   /* pieces + added tokens beyond them */
TEXTOKDEF const char *textok_spm_piece(const textok_spm *s, int id);   /* NULL if out of range */
TEXTOKDEF int  textok_spm_eos_id(const textok_spm *s);   /* the template's last id after $A; -1 if none */
TEXTOKDEF int  textok_spm_pad_id(const textok_spm *s);   /* the id of "<pad>"; -1 if none */

/* ---------------------------------------------------------------------------------------------
   T5 text encoder (Raffel et al. 2020; v1.1 and flan-T5, and v1.0): the frozen encoder that
   turns a caption's token ids into the text embeddings TexTok conditions on (textok-paper.md 3).
   Forward only: h = shared[ids] (no scaling, no absolute positions); every block adds
   o(attention(rmsnorm(h))) then wo(ffn(rmsnorm(h))); the output is the final RMSNorm of h, i.e.
   Hugging Face's T5EncoderModel(...).last_hidden_state. Details that differ from a ViT:
     - no biases anywhere; RMSNorm without mean subtraction (w * x / sqrt(mean(x^2) + eps));
     - attention scores are q.k with NO 1/sqrt(d_kv), plus a relative-position bias
       bias[h,q,k] = table[bucket(k - q), h] from block 0's table, shared by every block;
     - the attention's inner width is heads * d_kv, which need not equal d_model;
     - the FFN is gated, act(x wi_0^T) * (x wi_1^T), with the tanh GELU (v1.1, flan) or the exact
       one (old flan-t5-xxl configs), or v1.0's relu(x wi^T);
     - padding (mask 0) is masked as a KEY in every block; padding rows are still computed (they
       are not zeros), as in Hugging Face.
   Buckets (bidirectional): b = (k > q) ? num_buckets/2 : 0, n = |k - q|; n < num_buckets/4 adds n,
   else num_buckets/4 + (int)(logf(n / e) / log(max_distance / e) * e) with e = num_buckets/4,
   capped at num_buckets/2 - 1, computed in float as Hugging Face does.

   File layout ("textok layout", written by build/convert --t5): safetensors, F32 (F16/BF16 also
   read), the Hugging Face names of the encoder only, in state_dict order:
      shared.weight                                                  (vocab, d_model)
      encoder.block.{i}.layer.0.SelfAttention.{q,k,v}.weight         (heads*d_kv, d_model)
      encoder.block.{i}.layer.0.SelfAttention.o.weight               (d_model, heads*d_kv)
      encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight   (num_buckets, heads)
      encoder.block.{i}.layer.0.layer_norm.weight                    (d_model)
      encoder.block.{i}.layer.1.DenseReluDense.wi_0.weight, wi_1     (d_ff, d_model)  gated
      encoder.block.{i}.layer.1.DenseReluDense.wi.weight             (d_ff, d_model)  v1.0
      encoder.block.{i}.layer.1.DenseReluDense.wo.weight             (d_model, d_ff)
      encoder.block.{i}.layer.1.layer_norm.weight                    (d_model)
      encoder.final_layer_norm.weight                                (d_model)
   and __metadata__ "textok.model" = "t5" plus the config fields below as decimal strings (eps
   as "%.9g"). textok_t5_load_st with an explicit config also reads Hugging Face files as
   published: the embedding may be stored as shared.weight or encoder.embed_tokens.weight (both
   present: they must be equal), decoder.* and lm_head.* are ignored.

      textok_t5 *t5;
      textok_t5_load(&t5, "flan_t5_base.safetensors", &p);       // made by build/convert --t5
      textok_t5_encode(t5, ids, mask, B, L, emb);                 // (B,L) ids -> (B,L,d_model) */
typedef struct textok_t5_config {
    int   vocab;          /* V: embedding rows (32128 for T5: more than the tokenizer's 32100) */
    int   d_model;        /* d: 512 small, 768 base, 1024 large, 2048 xl, 4096 xxl */
    int   d_kv;           /* width of one head (64); the attention works at heads * d_kv */
    int   heads;          /* H */
    int   d_ff;           /* F: FFN hidden width */
    int   layers;         /* encoder blocks (>= 1: block 0 holds the relative-position table) */
    int   num_buckets;    /* relative-position buckets, both directions (32) */
    int   max_distance;   /* distance at which the log buckets end (128) */
    int   gated;          /* 1: wi_0/wi_1 gated FFN (v1.1, flan); 0: v1.0's wi with ReLU */
    int   gelu_tanh;      /* gated: 1 tanh GELU (gelu_new, "gated-gelu"), 0 exact erf GELU; 0 when
                             not gated */
    float eps;            /* RMSNorm epsilon (1e-6) */
} textok_t5_config;
typedef struct textok_t5 textok_t5;   /* opaque: params, activations, kernel table */

/* Checks a config (ranges, num_buckets even and >= 4, max_distance > num_buckets/4, flags 0/1);
   the message names the field. */
TEXTOKDEF int  textok_t5_config_check(const textok_t5_config *cfg);
/* Reads the config from a textok-layout file's __metadata__ ("textok.model" must be "t5"). */
TEXTOKDEF int  textok_t5_config_from_meta(textok_t5_config *cfg, const textok_safetensors *st);
/* Writes the config as metadata ("textok.model" = "t5" first): key/value strings into kv
   (2*max_pairs pointers) backed by buf; returns the number of pairs or a negative status. */
TEXTOKDEF int  textok_t5_config_to_meta(const textok_t5_config *cfg, const char **kv, int max_pairs,
                                        char *buf, size_t buf_size);
/* Every tensor of a textok-layout file for cfg, in file order (count returned; max_specs 0 sizes). */
TEXTOKDEF int  textok_t5_tensor_specs(const textok_t5_config *cfg, textok_tensor_spec *specs, int max_specs);

/* Load a textok-layout file (config from its metadata); load_st with cfg != NULL takes that config
   instead and accepts Hugging Face files as published (see above). Unexpected encoder tensors
   (a config with fewer layers than the file, umT5's per-block position tables, ...) are refused,
   named. p may be NULL (defaults); p->max_batch is the rows per internal pass. */
TEXTOKDEF int  textok_t5_load(textok_t5 **out, const char *path, const textok_params *p);
TEXTOKDEF int  textok_t5_load_st(textok_t5 **out, const textok_safetensors *st, const textok_t5_config *cfg,
                                 const textok_params *p);
TEXTOKDEF void textok_t5_free(textok_t5 *t);
TEXTOKDEF const textok_t5_config *textok_t5_get_config(const textok_t5 *t);
TEXTOKDEF size_t textok_t5_num_params(const textok_t5 *t);
/* ids (B, L) int32 in [0, vocab); mask (B, L) 1 = real token, 0 = padding, NULL = all real
   -> out (B, L, d_model) = last_hidden_state; all host memory. B, L >= 1. Rows run in chunks of
   max_batch. Activations live in one arena reserved on the first call for (max_batch, L) and
   grown only when a later call brings a longer L; nothing else is allocated per call. A row with
   no real token at all gets zero attention outputs (Hugging Face would average the padding keys
   there); its outputs carry no text either way. */
TEXTOKDEF int  textok_t5_encode(textok_t5 *t, const int32_t *ids, const unsigned char *mask, int B, int L,
                                float *out);

/* ---------------------------------------------------------------------------------------------
   The 1D tokenizers: TiTok, TA-TiTok and TexTok, one model type (textok_titok) over one ViT.

   TiTok (Yu et al. 2024, bytedance/1d-tokenizer): a ViT encoder reads [cls, patches, K latent
   tokens] and keeps the latents; a quantiser (VQ, or a diagonal Gaussian for the VAE family)
   turns them into K ids or K continuous vectors; a ViT decoder reads [cls, mask tokens, latents]
   and keeps the mask positions, which become the image either through a direct pixel head or
   (legacy L-32/B-64/S-128) through proxy-code logits, a soft lookup in a 1024-entry codebook and
   the MaskGIT-VQGAN convolutional decoder.
   TA-TiTok (architecture.md 3): TiTok whose decoder also reads Lt = 77 CLIP text token states,
   projected to its width, after the latents: [cls, mask tokens, latents, text].
   TexTok (Zha et al. 2024; textok-paper.md): no class tokens; the tokenizer reads [patches, K
   learnable image tokens, text], keeps the image tokens and projects them to d channels (a KL
   bottleneck by default); the detokenizer reads [learnable patch tokens, image tokens, text]
   and maps its patch outputs linearly to pixels. The text (frozen T5 states) may enter both
   stacks, one, or neither (the paper's ablation; "neither" is the no-text baseline).

   Sequences, with the rows each stack reads out:
      arch    encoder                         out      decoder                            out
      titok   [cls, P patches, K latents, T]  latents  [cls, P mask tokens, K latents, T]  P rows
      textok  [P patches, K image tokens, T]  tokens   [P patch tokens, K tokens, T]       P rows
   T = text_guidance_proj(emb) + text_guidance_positional_embedding, Lt rows, in the stacks
   that have text_in_encoder / text_in_decoder.

   File layout ("textok layout"): safetensors whose tensor names and shapes are exactly the
   official PyTorch state_dict names (architecture.md 1.8, 3.1), F32 (F16/BF16 also accepted),
   with the configuration below in __metadata__ as decimal strings under the field names, plus
   "textok.model" = "titok", "arch" = "titok"|"textok", quantize_mode = "vq"|"vae"|"none",
   pixel_channel_mult = "1,1,2,2,4". TexTok files use TiTok's names for the parts they share:
      latent_tokens (K,De); encoder.positional_embedding (P,De) (no cls row);
      encoder.latent_token_positional_embedding (K,De); [encoder.text_guidance_positional_embedding
      (Lt,De)]; encoder.patch_embed.*; encoder.ln_pre/transformer/ln_post as TiTok;
      encoder.conv_out (Cq,De,1,1); [encoder.text_guidance_proj (De,Dt)];
      decoder.positional_embedding (P,Dd) - the learnable patch tokens -;
      decoder.latent_token_positional_embedding (K,Dd); [decoder.text_guidance_positional_embedding
      (Lt,Dd)]; decoder.decoder_embed (Dd,C); decoder.ln_pre/transformer/ln_post;
      decoder.ffn.0 (p*p*3,Dd,1,1); [decoder.text_guidance_proj (Dd,Dt)]; quantize.* (vq). */
enum { TEXTOK_QUANT_VQ = 0, TEXTOK_QUANT_VAE = 1, TEXTOK_QUANT_NONE = 2 };
enum { TEXTOK_ARCH_TITOK = 0, TEXTOK_ARCH_TEXTOK = 1 };
#define TEXTOK_MAX_LEVELS 8
typedef struct textok_titok_config {
    int image_size;            /* 256: square input and output images */
    int patch_size;            /* 16 */
    int num_latent_tokens;     /* K: 32, 64, 128, ... */
    int token_size;            /* C: 12 (L/B/S), 64 (vq8k), 16 (vae c16) */
    int enc_width, enc_layers, enc_heads, enc_mlp;   /* D_e, N_e, H_e, MLP hidden (4 D_e) */
    int dec_width, dec_layers, dec_heads, dec_mlp;
    int quantize_mode;         /* TEXTOK_QUANT_VQ or TEXTOK_QUANT_VAE */
    int codebook_size;         /* V (vq); 0 for vae */
    int use_l2_norm;           /* vq: F.normalize z and the codebook before the search */
    int is_legacy;             /* legacy encoder reshape + proxy-code head + pixel decoder */
    /* MaskGIT-VQGAN pixel decoder, legacy only (else zeros) */
    int pixel_codebook_size;   /* 1024 proxy codes */
    int pixel_z_channels;      /* 256: code dimension */
    int pixel_hidden;          /* 128 */
    int pixel_num_levels;      /* 5 resolutions: the grid is upsampled by 2^(levels-1) */
    int pixel_channel_mult[TEXTOK_MAX_LEVELS];   /* 1,1,2,2,4 */
    int pixel_res_blocks;      /* 2 */
    int pixel_groups;          /* 32 GroupNorm groups */
    /* text conditioning (TA-TiTok, TexTok); all 0 for a model without text */
    int arch;                  /* TEXTOK_ARCH_TITOK or TEXTOK_ARCH_TEXTOK: the token layout, below */
    int text_dim;              /* Dt: width of the text embeddings (768 for CLIP, d_model for T5) */
    int text_len;              /* Lt: text positions (77 for TA-TiTok); shorter text is padded and masked */
    int text_in_encoder;       /* 1: the tokenizer sees the text (TexTok) */
    int text_in_decoder;       /* 1: the detokenizer sees the text (TexTok, TA-TiTok) */
    int text_optional;         /* 1: trained with text dropout, so it may run without text */
} textok_titok_config;

/* Text embeddings for a batch, host memory: emb (B, L, dim) row-major - T5 or CLIP token
   states -, mask (B, L) with 1 = a real token and 0 = padding (NULL = all real). dim must be the
   model's text_dim and 1 <= L <= its text_len; positions L..text_len-1 are padding. Padding is
   masked out of attention as keys in every block of a stack that sees text, so it cannot change
   the output. A model without text ignores it. */
typedef struct textok_text {
    const float         *emb;    /* (B, L, dim) */
    const unsigned char *mask;   /* (B, L) or NULL */
    int                  L, dim;
} textok_text;

typedef struct textok_titok textok_titok;   /* opaque: params, activations, kernel table */

/* Checks a config for consistency (divisibility, ranges); the message names the field. */
TEXTOKDEF int  textok_titok_config_check(const textok_titok_config *cfg);
/* Reads the config from a textok-layout file's __metadata__. */
TEXTOKDEF int  textok_titok_config_from_meta(textok_titok_config *cfg, const textok_safetensors *st);
/* Writes the config as metadata: key/value strings into kv (2*max_pairs pointers) backed by
   buf; returns the number of pairs, or a negative status when buf or max_pairs is too small. */
TEXTOKDEF int  textok_titok_config_to_meta(const textok_titok_config *cfg, const char **kv,
                                           int max_pairs, char *buf, size_t buf_size);
/* Every tensor a file with this config must hold, in state_dict order. Returns the count
   (fills min(count, max_specs) entries; call with max_specs = 0 to size the array). */
TEXTOKDEF int  textok_titok_tensor_specs(const textok_titok_config *cfg, textok_tensor_spec *specs,
                                         int max_specs);

/* Load a textok-layout file (config from its metadata). load_st takes an open file and, when
   cfg != NULL, that config instead of the metadata: official-named files without metadata can be
   loaded directly that way. p may be NULL (defaults). */
TEXTOKDEF int  textok_titok_load(textok_titok **model, const char *path, const textok_params *p);
TEXTOKDEF int  textok_titok_load_st(textok_titok **model, const textok_safetensors *st,
                                    const textok_titok_config *cfg, const textok_params *p);
/* A model with fresh weights drawn from seed as TiTok's own initialisation: for training from
   scratch and for benchmarks. Every weight matrix (linear, conv) is truncated-normal (at 2 sigma)
   with std 0.02, biases 0, norms 1, learned tokens and positions N(0, 1/width), codebooks
   U(-1/V, 1/V).
   create_std takes the matrices' std: 0.02 is create's; 0 means 1/sqrt(fan_in) per matrix
   (fan_in = the product of its dims after the first). Why the choice: 0.02 suits the official
   widths (768: a gain of 0.02 sqrt(768) = 0.55 per layer), but a narrow model (width 128: gain
   0.23) starts with latent tokens that barely depend on the image (0.4 % here) and trains into
   the mean image, its tokens ignored; with 1/sqrt(fan_in) the same 64x64 TexTok leaves that
   plateau within a few hundred steps (weights/README.md, the emoji models). */
TEXTOKDEF int  textok_titok_create(textok_titok **model, const textok_titok_config *cfg,
                                   const textok_params *p, uint64_t seed);
TEXTOKDEF int  textok_titok_create_std(textok_titok **model, const textok_titok_config *cfg,
                                       const textok_params *p, uint64_t seed, float std);
TEXTOKDEF void textok_titok_free(textok_titok *m);
TEXTOKDEF const textok_titok_config *textok_titok_get_config(const textok_titok *m);
TEXTOKDEF size_t textok_titok_num_params(const textok_titok *m);

/* Encode B images (B,3,S,S), float RGB in [0,1] (uint8/255; no mean/std normalisation), host
   memory. text: the batch's text embeddings when the encoder sees text (text_in_encoder), else
   ignored (may be NULL); a model that needs text and does not get it fails, unless it is
   text_optional (then it runs with every text key masked). Any output pointer may be NULL:
     tokens    (B,K) int32 ids (vq only)
     latents   (B,C,1,K): vq - the codebook vectors the decoder would see (re-normalised when
               use_l2_norm); vae - the posterior mean, or a sample mean + std*N(0,1) drawn
               from rng when rng != NULL; none - the encoder output
     pre_quant (B,Cq,1,K): the encoder output before quantisation (vae: Cq = 2C, mean then
               logvar), in the official (B, C, 1, K) memory layout.
   Returns TEXTOK_OK or a negative status (textok_last_error() says why). */
TEXTOKDEF int  textok_titok_encode(textok_titok *m, const float *images, int B, const textok_text *text,
                                   int32_t *tokens, float *latents, float *pre_quant, textok_rng *rng);
/* Decode (B,K) ids (vq; each must be < V) or (B,C,1,K) latents into images (B,3,S,S). text as for
   encode, for models with text_in_decoder. The output is NOT clamped (as TiTok.decode): callers
   clamp to [0,1] for display. */
TEXTOKDEF int  textok_titok_decode_tokens(textok_titok *m, const int32_t *tokens, int B,
                                          const textok_text *text, float *images);
TEXTOKDEF int  textok_titok_decode_latents(textok_titok *m, const float *latents, int B,
                                           const textok_text *text, float *images);

/* Time spent in the last encode/decode call, split by stage (seconds), and the FLOPs it did:
   for benchmarks. */
typedef struct textok_titok_timing {
    double encoder_s, quantize_s, decoder_s, pixel_decoder_s;
    double encoder_flops, decoder_flops, pixel_decoder_flops;
} textok_titok_timing;
TEXTOKDEF textok_titok_timing textok_titok_last_timing(const textok_titok *m);

/* ---------------------------------------------------------------------------------------------
   Loss networks for training the tokenizers (architecture.md 5 and 6).

   LPIPS (Zhang et al. 2018), the VGG16 variant 1d-tokenizer uses as its perceptual loss: images
   in [0,1] are mapped to 2x-1 and through the ScalingLayer (per-channel shift/scale constants,
   in code), then the five VGG16 slices; at each slice's last ReLU (a "tap") both images'
   features are unit-normalised over channels (eps 1e-10 added to the norm), their squared
   difference is weighted by that layer's lin weights and averaged over pixels; the five
   averages add up. H and W must be multiples of 16.
   File (textok layout): safetensors, F32 (F16/BF16 also read), the official LPIPS(net='vgg')
   state_dict names and shapes, trunk then lin layers: net.slice1.0.{weight,bias} (c0,3,3,3),
   net.slice1.2 (c0,c0,3,3), net.slice2.{5,7}, net.slice3.{10,12,14}, net.slice4.{17,19,21},
   net.slice5.{24,26,28} (all 3x3 with bias), lin{0..4}.model.1.weight (1,c_k,1,1) (no bias);
   __metadata__ "textok.model" = "lpips", "channels" = "64,128,256,512,512" (c0..c4). */
typedef struct textok_lpips textok_lpips;
/* Every tensor of a file for these channels, in file order (count returned; max_specs 0 sizes). */
TEXTOKDEF int  textok_lpips_tensor_specs(const int channels[5], textok_tensor_spec *specs, int max_specs);
TEXTOKDEF int  textok_lpips_load(textok_lpips **out, const char *path, const textok_params *p);
TEXTOKDEF int  textok_lpips_load_st(textok_lpips **out, const textok_safetensors *st, const textok_params *p);
/* random weights for tests/benchmarks: convs as PyTorch's default init, lin weights uniform [0, 1/C) */
TEXTOKDEF int  textok_lpips_create(textok_lpips **out, const int channels[5], const textok_params *p, uint64_t seed);
TEXTOKDEF void textok_lpips_free(textok_lpips *lp);
/* d (B) = LPIPS(x, y), x, y (B,3,H,W) in [0,1], HOST memory; runs in chunks of p->max_batch */
TEXTOKDEF int  textok_lpips_distance(textok_lpips *lp, const float *x, const float *y, int B, int H, int W, float *d);

/* The PatchGAN discriminator of 1d-tokenizer (NLayerDiscriminator, architecture.md 5.4): block_in
   (Conv 5x5 3 -> hidden, LeakyReLU 0.1); `stages` stages of Conv 3x3, a fixed [1,3,3,1] blur with
   stride 2, GroupNorm(groups, eps 1e-5), LeakyReLU 0.1, the channels going hidden, hidden,
   2 hidden, 4 hidden, ... (stage i outputs hidden * 2^i); AdaptiveMaxPool2d((pool, pool)); then
   Conv 1x1, LeakyReLU 0.1, Conv 5x5 to one logit per cell: logits (B,1,pool,pool). Images are
   taken in [0,1] as given; image_size must be a multiple of 2^stages.
   File (textok layout): block_in.0.{weight,bias}, blocks.{i}.0.{weight,bias} (conv),
   blocks.{i}.2.{weight,bias} (GroupNorm), to_logits.0.{weight,bias}, to_logits.2.{weight,bias}
   (the blur kernel is a code constant, not a file tensor); __metadata__ "textok.model" = "disc",
   "hidden", "stages", "groups", "pool", "image_size" as decimal strings. */
typedef struct textok_disc textok_disc;
typedef struct textok_disc_config { int hidden, stages, groups, pool; } textok_disc_config;
TEXTOKDEF textok_disc_config textok_disc_default_config(void);   /* 128, 3, 32, 16 */
TEXTOKDEF int  textok_disc_tensor_specs(const textok_disc_config *c, textok_tensor_spec *specs, int max_specs);
TEXTOKDEF int  textok_disc_create(textok_disc **out, const textok_disc_config *c, int image_size,
                                  const textok_params *p, uint64_t seed);   /* PyTorch default init */
TEXTOKDEF int  textok_disc_load(textok_disc **out, const char *path, const textok_params *p);
TEXTOKDEF int  textok_disc_load_st(textok_disc **out, const textok_safetensors *st, const textok_params *p);
TEXTOKDEF void textok_disc_free(textok_disc *d);
/* logits (B,1,pool,pool) host, images (B,3,S,S) host */
TEXTOKDEF int  textok_disc_logits(textok_disc *d, const float *images, int B, float *logits);

/* ---------------------------------------------------------------------------------------------
   Training a tokenizer (architecture.md 2 and 5; textok-paper.md 1.3). One step:
     1. forward the tokenizer in training mode, keeping every activation backward needs;
     2. generator losses: recon (L2 or L1) + perceptual (LPIPS) + VQ codebook/commitment or KL
        + the hinge GAN's generator term -mean D(x^), which switches on at disc_start;
     3. backward into one grads block laid out like the params (llm.c), global-norm clipping,
        AdamW (weight decay only where the official name rule allows it), warmup + cosine LR;
     4. EMA of the weights;
     5. the discriminator step (hinge + LeCAM with EMA anchors) with its own AdamW.
   The loss networks are borrowed: the trainer never frees the model, the LPIPS net or the
   discriminator. A checkpoint (textok_trainer_save) holds everything needed to resume bit for
   bit: params, EMA, both AdamW states, the discriminator, the LeCAM EMAs, step counters and the
   RNG state. */
typedef struct textok_train_config {
    int    batch;              /* images per step (the model's max_batch must be >= batch) */
    int    recon_l1;           /* 0: mean squared error (TiTok, TexTok); 1: mean absolute error */
    float  recon_weight;       /* 1.0 */
    float  perceptual_weight;  /* LPIPS weight (0 = off; else an LPIPS net is required) */
    float  quantizer_weight;   /* VQ: weight of codebook + commitment loss */
    float  commitment_cost;    /* VQ: beta, 0.25 */
    float  kl_weight;          /* VAE: weight of sum(KL) / B, 1e-6 */
    int    vae_sample;         /* VAE: decode a posterior sample (1) or the mean (0) */
    float  disc_weight;        /* generator-side GAN weight (0 = no GAN; else a discriminator) */
    float  disc_factor;        /* 1.0: multiplies both GAN sides once they are on */
    int    disc_start;         /* first step with GAN terms (and discriminator updates) */
    float  lecam_weight;       /* LeCAM regularisation of the discriminator, 0.001 */
    float  lecam_decay;        /* EMA decay of the LeCAM anchors, 0.999 */
    double lr, end_lr;         /* tokenizer: peak and final learning rate */
    double disc_lr, disc_end_lr;
    int    warmup_steps;       /* linear warmup from 0, then cosine to end_lr at total_steps */
    int    total_steps;
    double beta1, beta2, eps, weight_decay;   /* AdamW, both optimisers */
    float  grad_clip;          /* global-norm clip of each model's gradients, 0 = off */
    double ema_decay;          /* weight EMA (0 = none), with the (1+n)/(10+n) warm-up */
    float  text_dropout;       /* probability that an image is trained without its text (every text
                                  key masked); needs a model with text_optional = 1 */
} textok_train_config;

/* Presets with the published values (architecture.md 2, 3.2; textok-paper.md 1.3):
     "titok-stage2"  l2 1.0, perceptual 0.1 (convnext in the original; LPIPS here), GAN 0.01 from
                     20k, LeCAM 0.001, AdamW (0.9, 0.999) lr 1e-4 -> 1e-5, wd 1e-4, warmup 5k, 500k
     "tatitok"       single stage: l2 1.0, perceptual 1.1, GAN 0.1 from 200k, LeCAM 0.001,
                     quantizer 1.0 (VQ) / KL 1e-6 (VAE), AdamW (0.9, 0.99), warmup 10k, 1M
     "textok"        l2 1.0, perceptual 0.1, GAN 0.1 from 80k, LeCAM 1e-4, lr 1e-4, EMA 0.999,
                     KL 1e-6 (the paper's R1 penalty is not implemented: see README)
     "tiny"          for tests and demos: l2 + LPIPS 0.1, GAN 0.1 from step 0, lr 1e-3, no decay
   Every preset clips at 1.0 and keeps an EMA (0.999). Returns TEXTOK_ERR_ARG for another name. */
TEXTOKDEF int textok_train_preset(textok_train_config *tc, const char *name);
TEXTOKDEF int textok_train_config_check(const textok_train_config *tc);

typedef struct textok_train_stats {
    int    step;               /* steps done, this one included */
    int    gan_on;             /* the GAN terms ran in this step */
    double recon, perceptual, quantizer, kl, gen;   /* generator-side losses, unweighted */
    double total;              /* the weighted sum that was differentiated */
    double hinge, lecam, d_total;                   /* discriminator side (lecam weighted) */
    double grad_norm, disc_grad_norm;               /* before clipping */
    double lr, disc_lr;
    double logits_real, logits_fake;                /* mean discriminator logits */
} textok_train_stats;

typedef struct textok_trainer textok_trainer;

/* model: created or loaded with max_batch >= tc->batch; lpips is needed when
   perceptual_weight > 0, disc when disc_weight > 0 (else both may be NULL). All three are
   borrowed and must outlive the trainer; the trainer updates the model's and the
   discriminator's parameters in place. seed seeds the trainer's RNG (VAE noise; examples also
   draw their batches from it, textok_trainer_rng). */
TEXTOKDEF int  textok_trainer_create(textok_trainer **out, textok_titok *model, textok_lpips *lpips,
                                     textok_disc *disc, const textok_train_config *tc, uint64_t seed);
TEXTOKDEF void textok_trainer_free(textok_trainer *t);
/* One step on tc->batch images (B,3,S,S) in [0,1], host memory, with their captions' text
   embeddings (text, B = tc->batch; NULL for a model without text). A non-finite loss or
   gradient stops the step before any parameter changes and returns TEXTOK_ERR_FORMAT. stats may
   be NULL. */
TEXTOKDEF int  textok_trainer_step(textok_trainer *t, const float *images, const textok_text *text,
                                   textok_train_stats *stats);
TEXTOKDEF int  textok_trainer_steps_done(const textok_trainer *t);
TEXTOKDEF textok_rng *textok_trainer_rng(textok_trainer *t);
/* The last step's reconstructions (tc->batch, 3, S, S), unclamped, host memory. */
TEXTOKDEF int  textok_trainer_last_reconstruction(textok_trainer *t, float *images);
/* Reads one named tensor into host memory: "param.<name>", "grad.<name>" (the clipped gradient
   the last update used), "ema.<name>", "adam_m.<name>", "adam_v.<name>", "disc.param.<name>",
   "disc.grad.<name>", "lecam_ema" (2: real, fake). n must equal the tensor's size. */
TEXTOKDEF int  textok_trainer_get(textok_trainer *t, const char *name, float *out, size_t n);
/* Overwrites one named "param.<name>" or "disc.param.<name>" tensor from host memory (to
   freeze-and-probe, for finite differences, or to initialise a part from elsewhere). */
TEXTOKDEF int  textok_trainer_set(textok_trainer *t, const char *name, const float *in, size_t n);
/* LeCAM anchors (real, fake): set them, e.g. to continue from another run. */
TEXTOKDEF void textok_trainer_set_lecam(textok_trainer *t, float ema_real, float ema_fake);
/* Checkpoint: one safetensors file (temp file + rename) with everything needed to resume
   bit-exactly. load checks that the model and discriminator configs match the trainer's. */
TEXTOKDEF int  textok_trainer_save(textok_trainer *t, const char *path);
TEXTOKDEF int  textok_trainer_load(textok_trainer *t, const char *path);
/* A textok-layout TiTok file of the current weights (ema = 1: the EMA weights) that
   textok_titok_load reads. */
TEXTOKDEF int  textok_trainer_save_model(textok_trainer *t, const char *path, int ema);

/* ---------------------------------------------------------------------------------------------
   Generators (architecture.md 4 and 7; textok-paper.md 1.4): DiT with Gaussian diffusion over
   continuous latents - SD-VAE latents (B,4,S,S) as the official DiT, or a 1D tokenizer's tokens
   (B,C,1,K) as TexTok - and MaskGIT over a VQ tokenizer's ids (TiTok). Both: forward AND
   backward, a trainer (textok_gen_trainer) and sampling. Tensor names in textok-layout files are
   the official ones (DiT models.py; TiTok's ImageBert / UViTBert), so tools/convert only checks
   shapes and adds the config as metadata. */

/* ----- DiT ----------------------------------------------------------------------------------- */
typedef struct textok_dit_config {
    int   in_channels;     /* C: 4 (SD-VAE latents) or the tokenizer's token_size */
    int   input_size;      /* 2D: latent side S (32 for 256 images, 64 for 512); 1D: tokens N (= K) */
    int   seq_1d;          /* 0: x is (B,C,S,S), patchified p x p, 2D sin-cos positions;
                              1: x is (B,C,1,N), one DiT token per position (patch 1), 1D sin-cos */
    int   patch_size;      /* p: 2, 4 or 8 (2D); must be 1 when seq_1d */
    int   hidden, depth, heads;   /* D, blocks, heads (head_dim = D / heads) */
    int   mlp_hidden;      /* 4 D */
    int   num_classes;     /* class-conditional: 1000 (the label table has num_classes + 1 rows,
                              the last one is the null class); 0 for DiT-T2I or unconditional */
    int   learn_sigma;     /* 1: the output has 2C channels, eps then v (LEARNED_RANGE variance) */
    int   text_dim;        /* DiT-T2I: width of the caption embeddings (T5 d_model); 0 = no text */
    int   text_len;        /* DiT-T2I: caption rows the model holds a null caption for (max L) */
    int   guide_channels;  /* CFG guides output channels [0, guide_channels): 3 for the official
                              DiT-XL/2 (its quirk, architecture.md 7.3), in_channels for ours */
    float latent_scale;    /* x0 = latent * latent_scale (0.18215 for SD-VAE, 1 for tokens); the
                              samplers return x0 / latent_scale */
} textok_dit_config;

/* Fills cfg for an official size "XL/2", "XL/4", "XL/8", "L/2", ..., "S/8" over 2D SD-VAE
   latents of an image_size x image_size image (256 or 512: input_size image_size/8, 4 channels,
   1000 classes, learn_sigma, guide_channels 3, latent_scale 0.18215). For 1D tokens set seq_1d,
   patch_size 1, in_channels, input_size and guide_channels = in_channels afterwards. */
TEXTOKDEF int  textok_dit_preset(textok_dit_config *cfg, const char *name, int image_size);
TEXTOKDEF int  textok_dit_config_check(const textok_dit_config *cfg);
TEXTOKDEF int  textok_dit_config_from_meta(textok_dit_config *cfg, const textok_safetensors *st);
TEXTOKDEF int  textok_dit_config_to_meta(const textok_dit_config *cfg, const char **kv, int max_pairs,
                                         char *buf, size_t buf_size);
TEXTOKDEF int  textok_dit_tensor_specs(const textok_dit_config *cfg, textok_tensor_spec *specs, int max_specs);

typedef struct textok_dit textok_dit;   /* opaque */
TEXTOKDEF int  textok_dit_load(textok_dit **out, const char *path, const textok_params *p);
TEXTOKDEF int  textok_dit_load_st(textok_dit **out, const textok_safetensors *st, const textok_dit_config *cfg,
                                  const textok_params *p);
/* fresh weights as DiT's initialize_weights (xavier, N(0, 0.02) tables, adaLN-Zero zeros) */
TEXTOKDEF int  textok_dit_create(textok_dit **out, const textok_dit_config *cfg, const textok_params *p,
                                 uint64_t seed);
TEXTOKDEF int  textok_dit_save(const textok_dit *m, const char *path);   /* textok layout, F32 */
TEXTOKDEF void textok_dit_free(textok_dit *m);
TEXTOKDEF const textok_dit_config *textok_dit_get_config(const textok_dit *m);
TEXTOKDEF size_t textok_dit_num_params(const textok_dit *m);

/* The network: x (B,C,S,S) or (B,C,1,N) noisy input, t (B) integer timesteps in [0, 1000),
   y (B) class ids in [0, num_classes] (num_classes = the null class) for class-conditional
   models (NULL otherwise), text (B rows) for DiT-T2I (NULL otherwise; a row whose mask is all 0
   is the null caption). out (B, C or 2C, ...) as DiT.forward. Host memory. */
TEXTOKDEF int  textok_dit_forward(textok_dit *m, const float *x, const int32_t *t, const int32_t *y,
                                  const textok_text *text, int B, float *out);
/* forward_with_cfg: conditional and null passes on the same x, guided = u + s (c - u) on output
   channels [0, guide_channels); the rest (eps channels past guide_channels and all variance
   channels) are the conditional pass's own. out (B, C or 2C, ...). scale must be finite. */
TEXTOKDEF int  textok_dit_forward_cfg(textok_dit *m, const float *x, const int32_t *t, const int32_t *y,
                                      const textok_text *text, int B, float scale, float *out);

/* ----- Gaussian diffusion (DiT diffusion/gaussian_diffusion.py): linear betas, float64 tables --------------- */
typedef struct textok_diffusion textok_diffusion;   /* opaque; immutable once made */
/* train_steps: 1000. respacing: NULL or "" (all steps), "250" (space_timesteps' rounded
   stride), "ddim50" (exact integer stride). */
TEXTOKDEF int  textok_diffusion_create(textok_diffusion **out, int train_steps, const char *respacing);
TEXTOKDEF void textok_diffusion_free(textok_diffusion *d);
TEXTOKDEF int  textok_diffusion_num_steps(const textok_diffusion *d);       /* spaced steps */
TEXTOKDEF int  textok_diffusion_timestep(const textok_diffusion *d, int i); /* original t of index i */
/* x_t = sqrt(acp_t) x0 + sqrt(1 - acp_t) noise; x0, noise, xt (B, n); t (B) original steps */
TEXTOKDEF int  textok_diffusion_q_sample(const textok_diffusion *d, const float *x0, const float *noise,
                                         const int32_t *t, int B, size_t n, float *xt);
/* The training loss of one batch given the model output on x_t (training_losses): mse =
   mean over the batch of mean_flat((eps - eps^)^2); vb (learn_sigma) = mean over the batch of
   the variational bound term in bits with eps^ detached. dout (B, 2C or C, ...) receives
   d(mse + vb)/d model_out (overwritten), or NULL. Host memory; C channels of HW values each. */
TEXTOKDEF int  textok_diffusion_loss(const textok_diffusion *d, const float *x0, const float *noise,
                                     const int32_t *t, const float *model_out, int B, int C, int HW,
                                     int learn_sigma, double *mse, double *vb, float *dout);
/* One reverse step at spaced index i (from num_steps-1 down to 0): DDPM p_sample (noise (B,C,HW)
   N(0,1), unused at i = 0) or DDIM (eta; noise used when eta > 0). model_out as above. */
TEXTOKDEF int  textok_diffusion_p_step(const textok_diffusion *d, int i, const float *xt, const float *model_out,
                                       const float *noise, int B, int C, int HW, int learn_sigma, float *x_prev);
TEXTOKDEF int  textok_diffusion_ddim_step(const textok_diffusion *d, int i, const float *xt,
                                          const float *model_out, const float *noise, float eta, int B, int C,
                                          int HW, int learn_sigma, float *x_prev);

/* Called after each sampling step (step done, of total); nonzero return cancels the run
   (the call then fails with TEXTOK_ERR_ARG "cancelled"). */
typedef int (*textok_progress_fn)(int step, int total, void *user);

typedef struct textok_dit_sample_config {
    int   steps;           /* 250 */
    int   ddim;            /* 0: DDPM (respacing "steps"), 1: DDIM (respacing "ddimN") */
    float eta;             /* DDIM eta, 0 */
    float cfg_scale;       /* 1 = no guidance (one pass); sample.py 4.0, sample_ddp.py 1.5 */
    textok_progress_fn progress; void *progress_user;
} textok_dit_sample_config;
TEXTOKDEF textok_dit_sample_config textok_dit_sample_default(void);   /* 250, DDPM, cfg 4.0 */
/* Samples B latents: z ~ N(0,1) from rng (B,C,...) in one draw, then per step one draw of
   noise; returns x0 / latent_scale (B,C,...). y / text as textok_dit_forward (y in [0,
   num_classes)). Deterministic for a seed at any thread count. */
TEXTOKDEF int  textok_dit_generate(textok_dit *m, const textok_dit_sample_config *sc, const int32_t *y,
                                   const textok_text *text, int B, textok_rng *rng, float *out);

/* ----- MaskGIT (TiTok's generators) ---------------------------------------------------------- */
enum { TEXTOK_MASKGIT_BERT = 0, TEXTOK_MASKGIT_UVIT = 1 };
typedef struct textok_maskgit_config {
    int arch;              /* TEXTOK_MASKGIT_BERT (ImageBert, "ViT": L-32, B-64) or _UVIT (S-128) */
    int codebook_size;     /* V: 4096, the tokenizer's; mask id = V */
    int num_classes;       /* 1000; class c is id V+1+c, the null class V+1+num_classes */
    int seq_len;           /* L: the tokenizer's K (32, 64, 128) */
    int hidden, depth, heads, mlp_hidden;   /* 768, 24, 16, 3072 (BERT); 1024, 20, 16, 4096 (UViT:
                                               depth/2 in-blocks, a mid-block, depth/2 out-blocks) */
} textok_maskgit_config;
TEXTOKDEF int  textok_maskgit_preset(textok_maskgit_config *cfg, const char *name);   /* "L-32", "B-64", "S-128" */
TEXTOKDEF int  textok_maskgit_config_check(const textok_maskgit_config *cfg);
TEXTOKDEF int  textok_maskgit_config_from_meta(textok_maskgit_config *cfg, const textok_safetensors *st);
TEXTOKDEF int  textok_maskgit_config_to_meta(const textok_maskgit_config *cfg, const char **kv, int max_pairs,
                                             char *buf, size_t buf_size);
TEXTOKDEF int  textok_maskgit_tensor_specs(const textok_maskgit_config *cfg, textok_tensor_spec *specs, int max_specs);

typedef struct textok_maskgit textok_maskgit;   /* opaque */
TEXTOKDEF int  textok_maskgit_load(textok_maskgit **out, const char *path, const textok_params *p);
TEXTOKDEF int  textok_maskgit_load_st(textok_maskgit **out, const textok_safetensors *st,
                                      const textok_maskgit_config *cfg, const textok_params *p);
TEXTOKDEF int  textok_maskgit_create(textok_maskgit **out, const textok_maskgit_config *cfg, const textok_params *p,
                                     uint64_t seed);
TEXTOKDEF int  textok_maskgit_save(const textok_maskgit *m, const char *path);
TEXTOKDEF void textok_maskgit_free(textok_maskgit *m);
TEXTOKDEF const textok_maskgit_config *textok_maskgit_get_config(const textok_maskgit *m);
TEXTOKDEF size_t textok_maskgit_num_params(const textok_maskgit *m);

/* logits (B, L, V) for ids (B, L) in [0, V] (V = masked) and classes (B) in [0, num_classes]
   (num_classes = dropped / unconditional). Host memory. */
TEXTOKDEF int  textok_maskgit_forward(textok_maskgit *m, const int32_t *ids, const int32_t *classes, int B,
                                      float *logits);

enum { TEXTOK_GUIDANCE_CONSTANT = 0, TEXTOK_GUIDANCE_LINEAR = 1, TEXTOK_GUIDANCE_POWER_COSINE = 2 };
typedef struct textok_maskgit_sample_config {
    int   steps;                 /* T: 8 (L-32, B-64), 64 (S-128) */
    float guidance_scale;        /* g: 4.5, 3.0, 6.9 */
    int   guidance_decay;        /* TEXTOK_GUIDANCE_*: linear (L-32, B-64), power-cosine (S-128) */
    float guidance_pow;          /* power-cosine exponent, 3.0 */
    float temperature;           /* randomize_temperature tau: 9.5, 11.0, 2.8 */
    int   temperature_annealing; /* softmax_temperature_annealing, 1 in the published settings */
    textok_progress_fn progress; void *progress_user;
} textok_maskgit_sample_config;
/* The published settings (configs/infer/TiTok) for "L-32", "B-64", "S-128", or "demo" (the
   README demo: T 8, g 4.5 constant, tau 1, no annealing). */
TEXTOKDEF int  textok_maskgit_sample_preset(textok_maskgit_sample_config *sc, const char *name);
/* The whole loop of ImageBert.generate: ids (B, L) out, classes (B) in [0, num_classes). Each step
   draws B*L*V then B*L uniforms from rng (in that order) for the two Gumbel noises. */
TEXTOKDEF int  textok_maskgit_generate(textok_maskgit *m, const textok_maskgit_sample_config *sc,
                                       const int32_t *classes, int B, textok_rng *rng, int32_t *ids);
/* One step s of that loop with given uniforms u1 (B, L, V) and u2 (B, L): ids (B, L) updated in
   place. For goldens and for callers with their own noise. */
TEXTOKDEF int  textok_maskgit_sample_step(textok_maskgit *m, const textok_maskgit_sample_config *sc, int s,
                                          int32_t *ids, const int32_t *classes, int B, const float *u1,
                                          const float *u2);

/* ----- training a generator ------------------------------------------------------------------ */
enum { TEXTOK_MASK_ARCCOS = 0, TEXTOK_MASK_COSINE = 1, TEXTOK_MASK_LINEAR = 2 };
typedef struct textok_gen_train_config {
    int    batch;              /* sequences per step (the model's max_batch is not involved) */
    double lr, end_lr;         /* peak and final learning rate */
    int    warmup_steps, total_steps;   /* linear warmup from 0, then cosine to end_lr */
    double beta1, beta2, eps, weight_decay;   /* AdamW (decay only where the name rule allows) */
    float  grad_clip;          /* global-norm clip, 0 = off */
    double ema_decay;          /* weight EMA, 0 = none */
    float  cond_dropout;       /* class / caption dropout for classifier-free guidance, 0.1 */
    /* MaskGIT */
    int    mask_schedule;      /* TEXTOK_MASK_ARCCOS (official), _COSINE, _LINEAR */
    float  label_smoothing;    /* 0.1 */
    float  unmasked_weight;    /* loss weight of unmasked tokens, 0.1 */
} textok_gen_train_config;
/* "dit" (train.py: AdamW lr 1e-4, wd 0, constant, EMA 0.9999, dropout 0.1), "maskgit"
   (maskgit.yaml: lr 2e-4, betas 0.9/0.96, wd 0.03, warmup 10k, cosine, 500k), "tiny" (tests,
   demos: lr 1e-3, short warmup, no weight decay). */
TEXTOKDEF int  textok_gen_train_preset(textok_gen_train_config *tc, const char *name);
TEXTOKDEF int  textok_gen_train_config_check(const textok_gen_train_config *tc);

typedef struct textok_gen_train_stats {
    int    step;
    double loss;               /* what was differentiated */
    double mse, vb;            /* DiT: the eps MSE and the variational term (bits) */
    double ce, accuracy;       /* MaskGIT: weighted CE, argmax accuracy on masked tokens */
    double grad_norm, lr;      /* grad norm before clipping */
} textok_gen_train_stats;

typedef struct textok_gen_trainer textok_gen_trainer;
/* One of dit / maskgit (the other NULL), borrowed and updated in place. seed seeds the
   trainer's RNG (timesteps, noise, masks, dropout; textok_gen_trainer_rng). */
TEXTOKDEF int  textok_gen_trainer_create(textok_gen_trainer **out, textok_dit *dit, textok_maskgit *maskgit,
                                         const textok_gen_train_config *tc, uint64_t seed);
TEXTOKDEF void textok_gen_trainer_free(textok_gen_trainer *t);
/* One step on tc->batch examples, host memory: DiT - latents (B,C,...) (scaled by latent_scale
   inside) and y (B) classes or text; MaskGIT - tokens (B,L) ids < V and y (B) classes. */
TEXTOKDEF int  textok_gen_trainer_step(textok_gen_trainer *t, const float *latents, const int32_t *tokens,
                                       const int32_t *y, const textok_text *text, textok_gen_train_stats *stats);
TEXTOKDEF int  textok_gen_trainer_steps_done(const textok_gen_trainer *t);
TEXTOKDEF textok_rng *textok_gen_trainer_rng(textok_gen_trainer *t);
/* "param.<name>", "grad.<name>", "ema.<name>", "adam_m.<name>", "adam_v.<name>" */
TEXTOKDEF int  textok_gen_trainer_get(textok_gen_trainer *t, const char *name, float *out, size_t n);
TEXTOKDEF int  textok_gen_trainer_set(textok_gen_trainer *t, const char *name, const float *in, size_t n);
TEXTOKDEF int  textok_gen_trainer_save(textok_gen_trainer *t, const char *path);   /* resumes bit for bit */
TEXTOKDEF int  textok_gen_trainer_load(textok_gen_trainer *t, const char *path);
TEXTOKDEF int  textok_gen_trainer_save_model(textok_gen_trainer *t, const char *path, int ema);

#ifdef __cplusplus
}
#endif
#endif /* TEXTOK_INCLUDE_TEXTOK_H */

/* =============================================================================================
   IMPLEMENTATION
   ============================================================================================= */
#ifdef TEXTOK_IMPLEMENTATION
#ifndef TEXTOK_IMPLEMENTATION_DONE
#define TEXTOK_IMPLEMENTATION_DONE

#include <math.h>
#include <string.h>
#include <float.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>   /* vsnprintf is needed for messages even under TEXTOK_NO_STDIO */
#include <stdlib.h>
#include <time.h>    /* clock(): the timer when OpenMP (omp_get_wtime) is absent */
#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef TEXTOK_USE_BLAS
#include <cblas.h>
#endif
#if !defined(TEXTOK_NO_STDIO) && !defined(TEXTOK_NO_MMAP) && (defined(__unix__) || defined(__APPLE__))
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#define TEXTOK__HAVE_MMAP 1
#endif

/* ---------------------------------------------------------------------------------------------
   1. Platform: allocator, errors, threads */

#if defined(TEXTOK_MALLOC) && defined(TEXTOK_FREE) && defined(TEXTOK_REALLOC)
/* user-provided */
#elif !defined(TEXTOK_MALLOC) && !defined(TEXTOK_FREE) && !defined(TEXTOK_REALLOC)
#define TEXTOK_MALLOC(sz)     malloc(sz)
#define TEXTOK_REALLOC(p, sz) realloc(p, sz)
#define TEXTOK_FREE(p)        free(p)
#else
#error "Must define all or none of TEXTOK_MALLOC, TEXTOK_FREE, and TEXTOK_REALLOC."
#endif

#ifndef TEXTOK_ASSERT
#include <assert.h>
#define TEXTOK_ASSERT(x) assert(x)
#endif

/* The last error message lives in thread-local storage: the only state outside the caller's
   structs, and it is per thread. */
#if defined(__cplusplus) && __cplusplus >= 201103L
#define TEXTOK__THREAD_LOCAL thread_local
#elif defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L && !defined(__STDC_NO_THREADS__)
#define TEXTOK__THREAD_LOCAL _Thread_local
#elif defined(__GNUC__) || defined(__clang__)
#define TEXTOK__THREAD_LOCAL __thread
#elif defined(_MSC_VER)
#define TEXTOK__THREAD_LOCAL __declspec(thread)
#else
#define TEXTOK__THREAD_LOCAL
#endif
static TEXTOK__THREAD_LOCAL char textok__errbuf[512];

/* The library's own failures go through the public textok_set_error (declared above with its
   printf format check): one body writes the message, whoever reports. */
TEXTOKDEF int textok_set_error(int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(textok__errbuf, sizeof textok__errbuf, fmt, ap);
    va_end(ap);
    return status;
}
#define textok__fail textok_set_error

/* Fails with "<prefix>: <the previous failure's message>". The message is copied first: it lives
   in the buffer textok__fail writes. */
static int textok__fail_wrap(int status, const char *prefix)
{
    char why[sizeof textok__errbuf];
    memcpy(why, textok__errbuf, sizeof why);
    why[sizeof why - 1] = 0;
    return textok__fail(status, "%s: %s", prefix, why);
}

TEXTOKDEF const char *textok_version(void) { return TEXTOK_VERSION_STRING; }
TEXTOKDEF const char *textok_last_error(void) { return textok__errbuf; }
TEXTOKDEF void textok_clear_error(void) { textok__errbuf[0] = 0; }

TEXTOKDEF void textok_free(void *p) { TEXTOK_FREE(p); }

/* Overflow-checked size arithmetic for everything that comes from a file. */
static int textok__mul_size(size_t a, size_t b, size_t *out)
{
    if (a != 0 && b > SIZE_MAX / a) return 0;
    *out = a * b;
    return 1;
}
static int textok__add_size(size_t a, size_t b, size_t *out)
{
    if (b > SIZE_MAX - a) return 0;
    *out = a + b;
    return 1;
}

static void *textok__malloc(size_t n) { return TEXTOK_MALLOC(n ? n : 1); }
static void *textok__calloc(size_t count, size_t size)
{
    size_t n;
    void *p;
    if (!textok__mul_size(count, size, &n)) return NULL;
    p = textok__malloc(n);
    if (p) memset(p, 0, n);
    return p;
}
TEXTOKDEF int textok_default_threads(void)
{
    const char *env = getenv("TEXTOK_THREADS");
    if (env && *env) {
        long n = strtol(env, NULL, 10);
        if (n >= 1 && n <= 1024) return (int)n;
    }
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

/* ---------------------------------------------------------------------------------------------
   2. RNG. MT19937 seeded exactly as torch's CPU generator (torch.manual_seed), so that
   textok_rng_uniform reproduces torch.rand: the low 24 bits of each 32-bit draw, times 2^-24.
   Normals use Box-Muller on two such draws (not torch's normal_ stream). */

TEXTOKDEF void textok_rng_seed(textok_rng *r, uint64_t seed)
{
    int i;
    r->mt[0] = (uint32_t)(seed & 0xffffffffu);
    for (i = 1; i < 624; i++)
        r->mt[i] = 1812433253u * (r->mt[i - 1] ^ (r->mt[i - 1] >> 30)) + (uint32_t)i;
    r->index = 624;
    r->has_spare = 0;
    r->spare = 0.0;
}

static void textok__mt_twist(textok_rng *r)
{
    int i;
    for (i = 0; i < 624; i++) {
        uint32_t y = (r->mt[i] & 0x80000000u) | (r->mt[(i + 1) % 624] & 0x7fffffffu);
        r->mt[i] = r->mt[(i + 397) % 624] ^ (y >> 1) ^ ((y & 1u) ? 0x9908b0dfu : 0u);
    }
    r->index = 0;
}

TEXTOKDEF uint32_t textok_rng_u32(textok_rng *r)
{
    uint32_t y;
    if (r->index >= 624) textok__mt_twist(r);
    y = r->mt[r->index++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
}

TEXTOKDEF float textok_rng_uniform(textok_rng *r)
{
    return (float)(textok_rng_u32(r) & 0xffffffu) * (1.0f / 16777216.0f);
}

TEXTOKDEF float textok_rng_normal(textok_rng *r)
{
    double u1, u2, rad;
    if (r->has_spare) { r->has_spare = 0; return (float)r->spare; }
    u1 = 1.0 - (double)textok_rng_uniform(r);    /* (0, 1]: log stays finite */
    u2 = (double)textok_rng_uniform(r);
    rad = sqrt(-2.0 * log(u1));
    r->spare = rad * sin(6.283185307179586 * u2);
    r->has_spare = 1;
    return (float)(rad * cos(6.283185307179586 * u2));
}

TEXTOKDEF void textok_rng_fill_uniform(textok_rng *r, float *x, size_t n, float lo, float hi)
{
    size_t i;
    for (i = 0; i < n; i++) x[i] = lo + (hi - lo) * textok_rng_uniform(r);
}

TEXTOKDEF void textok_rng_fill_normal(textok_rng *r, float *x, size_t n, float mean, float std)
{
    size_t i;
    for (i = 0; i < n; i++) x[i] = mean + std * textok_rng_normal(r);
}

/* ---------------------------------------------------------------------------------------------
   3. Files: a strict JSON subset, safetensors read/write, npy read/write

   Everything that comes from a file is checked before it is used: lengths against the bytes
   that are really there, every size product overflow-checked in size_t. The two header parsers
   are schema-directed (they know what a safetensors header and an npy header dict contain), so
   there is no generic recursion: nesting depth is fixed by the schema (at most 3), and anything
   outside it is an error that says what was expected. Both formats are little-endian. */

#ifndef TEXTOK_NO_STDIO
#include <errno.h>
#endif

/* ---- 3.1 F16 / BF16 <-> F32 ---------------------------------------------------------------- */

/* IEEE binary16 -> binary32. Exact for every input: subnormals, +-inf, NaN (payload kept). */
TEXTOKDEF float textok_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    uint32_t bits;
    float f;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13);           /* inf or NaN */
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (man << 13);   /* rebias 15 -> 127 */
    } else if (man == 0) {
        bits = sign;                                       /* +-0 */
    } else {                                               /* subnormal: normalise */
        uint32_t e = 113;
        while (!(man & 0x400u)) { man <<= 1; e--; }
        bits = sign | (e << 23) | ((man & 0x3ffu) << 13);
    }
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* binary32 -> binary16, round to nearest even. Overflow gives inf; NaN stays a (quiet) NaN. */
TEXTOKDEF uint16_t textok_f32_to_f16(float f)
{
    uint32_t u, sign, man, q, rem, half;
    int e;
    memcpy(&u, &f, sizeof u);
    sign = (u >> 16) & 0x8000u;
    man = u & 0x7fffffu;
    e = (int)((u >> 23) & 0xffu) - 127 + 15;                /* the binary16 exponent field */
    if (e == 0xff - 127 + 15) return (uint16_t)(sign | 0x7c00u | (man ? 0x200u | (man >> 13) : 0));
    if (e >= 31) return (uint16_t)(sign | 0x7c00u);
    if (e >= 1) {                                          /* normal: drop 13 mantissa bits */
        q = ((uint32_t)e << 10) | (man >> 13);
        rem = man & 0x1fffu;
        half = 0x1000u;
    } else {                          /* subnormal: q = (1.man * 2^23) >> shift, in units 2^-24 */
        int shift = 14 - e;
        if (shift > 24) return (uint16_t)sign;             /* below half the smallest subnormal */
        man |= 0x800000u;
        q = man >> shift;
        rem = man & ((1u << shift) - 1);
        half = 1u << (shift - 1);
    }
    if (rem > half || (rem == half && (q & 1u))) q++;      /* a carry into the exponent is right */
    return (uint16_t)(sign | q);
}

/* bfloat16 is the top half of a binary32. */
TEXTOKDEF float textok_bf16_to_f32(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* ---- 3.2 Small helpers shared by both formats ---------------------------------------------- */

#define TEXTOK__SHAPE_STR 192   /* holds "[d0, ..., d7]" with 20-character dims */

static const size_t textok__dtype_size[4] = { 4, 2, 2, 1 };
static const char  *textok__dtype_name[4] = { "F32", "F16", "BF16", "U8" };

static int textok__is_le(void)
{
    const uint32_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
}

/* Unsigned little-endian integer of n <= 8 bytes. */
static uint64_t textok__le(const unsigned char *p, int n)
{
    uint64_t v = 0;
    while (n-- > 0) v = (v << 8) | p[n];
    return v;
}

/* n little-endian F32/F16/BF16 values from possibly unaligned bytes into dst. */
static void textok__load_floats(float *dst, const unsigned char *src, size_t n, int dtype)
{
    size_t i;
    if (dtype == TEXTOK_DTYPE_F32 && textok__is_le()) {
        memcpy(dst, src, n * 4);
    } else if (dtype == TEXTOK_DTYPE_F32) {
        for (i = 0; i < n; i++) {
            uint32_t u = (uint32_t)textok__le(src + 4 * i, 4);
            memcpy(&dst[i], &u, 4);
        }
    } else if (dtype == TEXTOK_DTYPE_F16) {
        for (i = 0; i < n; i++) dst[i] = textok_f16_to_f32((uint16_t)(src[2 * i] | src[2 * i + 1] << 8));
    } else if (dtype == TEXTOK_DTYPE_BF16) {
        for (i = 0; i < n; i++) dst[i] = textok_bf16_to_f32((uint16_t)(src[2 * i] | src[2 * i + 1] << 8));
    } else {
        for (i = 0; i < n; i++) dst[i] = (float)src[i];
    }
}

/* Product of the dims as a size_t; 0 if a dim is negative or the product overflows. */
static int textok__numel(int ndim, const int64_t *shape, size_t *numel)
{
    size_t n = 1;
    int i;
    for (i = 0; i < ndim; i++)
        if (shape[i] < 0 || (uint64_t)(size_t)shape[i] != (uint64_t)shape[i] ||
            !textok__mul_size(n, (size_t)shape[i], &n)) return 0;
    *numel = n;
    return 1;
}

/* "[768, 3]" into buf (TEXTOK__SHAPE_STR bytes); returns buf. */
static const char *textok__shape_str(char *buf, int ndim, const int64_t *shape)
{
    size_t n = 1;
    int i;
    buf[0] = '[';
    for (i = 0; i < ndim && i < TEXTOK_MAX_DIMS; i++)
        n += (size_t)snprintf(buf + n, TEXTOK__SHAPE_STR - n, i ? ", %lld" : "%lld", (long long)shape[i]);
    buf[n] = ']';
    buf[n + 1] = 0;
    return buf;
}

static int textok__cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Sorts names in place and returns a name that occurs twice, or NULL. O(n log n): a header can
   hold millions of names, so a pairwise check would be a denial of service. */
static const char *textok__find_dup(const char **names, size_t n)
{
    size_t i;
    if (n < 2) return NULL;
    qsort(names, n, sizeof *names, textok__cmp_str);
    for (i = 1; i < n; i++)
        if (!strcmp(names[i - 1], names[i])) return names[i];
    return NULL;
}

/* Makes room for one more element in a growable array (capacity doubles). Returns the possibly
   moved array, or NULL when out of memory (the old array is then still valid). */
static void *textok__grow(void *arr, int n, int *cap, size_t elem)
{
    size_t bytes;
    int nc;
    void *p;
    if (n < *cap) return arr;
    if (*cap > INT_MAX / 2) return NULL;
    nc = *cap ? *cap * 2 : 16;
    if (!textok__mul_size((size_t)nc, elem, &bytes)) return NULL;
    p = TEXTOK_REALLOC(arr, bytes);
    if (p) *cap = nc;
    return p;
}

/* ---- 3.3 A cursor over header text, and the scanners both parsers use ---------------------- */

typedef struct textok__cur {
    const char *p, *beg, *end;   /* position, start and end of the header text */
    const char *file;            /* for messages */
    const char *tensor;          /* the tensor being parsed, or NULL */
} textok__cur;

/* Fails with "file: [tensor 'name': ]message". */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((format(printf, 3, 4)))
#endif
static int textok__cfail(const textok__cur *c, int status, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (c->tensor) return textok__fail(status, "%s: tensor '%.120s': %s", c->file, c->tensor, msg);
    return textok__fail(status, "%s: %s", c->file, msg);
}

static size_t textok__pos(const textok__cur *c) { return (size_t)(c->p - c->beg); }

/* A syntax error at the cursor: "header byte 17: expected ':' but found 'x'". */
static int textok__csyntax(const textok__cur *c, const char *expected)
{
    char found[32] = "the header ends";
    unsigned char ch = c->p < c->end ? (unsigned char)*c->p : 0;
    if (c->p < c->end)
        snprintf(found, sizeof found, ch >= 0x20 && ch < 0x7f ? "found '%c'" : "found byte 0x%02x", ch);
    return textok__cfail(c, TEXTOK_ERR_FORMAT, "header byte %zu: expected %s but %s", textok__pos(c),
                         expected, found);
}

static void textok__ws(textok__cur *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) c->p++;
}

/* Skips whitespace, then consumes ch if it comes next. */
static int textok__eat(textok__cur *c, char ch)
{
    textok__ws(c);
    if (c->p < c->end && *c->p == ch) { c->p++; return 1; }
    return 0;
}

static int textok__isdigit(const textok__cur *c, const char *q)
{
    return q < c->end && *q >= '0' && *q <= '9';
}

/* Scans a non-negative integer literal <= 2^63-1 into *v (JSON rules: no leading zeros, no
   fraction or exponent). Returns NULL, or why the text is not one; on failure the cursor stays
   at the start of the offending text. */
static const char *textok__scan_int(textok__cur *c, int64_t *v)
{
    const char *q;
    uint64_t x = 0;
    textok__ws(c);
    q = c->p;
    if (q < c->end && *q == '-' && textok__isdigit(c, q + 1)) return "a negative value is not allowed";
    if (!textok__isdigit(c, q)) return "expected a non-negative integer";
    if (*q == '0' && textok__isdigit(c, q + 1)) return "leading zeros are not allowed";
    for (; textok__isdigit(c, q); q++) {
        if (x > (uint64_t)(INT64_MAX - (*q - '0')) / 10) return "integer overflow (more than 2^63-1)";
        x = x * 10 + (uint64_t)(*q - '0');
    }
    if (q < c->end && (*q == '.' || *q == 'e' || *q == 'E'))
        return "expected an integer, found a fraction";
    c->p = q;
    *v = (int64_t)x;
    return NULL;
}

/* Fails for a bad integer in `what`, quoting the offending text. */
static int textok__int_fail(const textok__cur *c, const char *what, const char *why)
{
    int n = 0;
    while (n < 24 && c->p + n < c->end && c->p[n] && !strchr(",]}) \t\r\n", c->p[n])) n++;
    return textok__cfail(c, TEXTOK_ERR_FORMAT, "%s: %s at header byte %zu ('%.*s')", what, why,
                         textok__pos(c), n, c->p);
}

/* Four hex digits of a \u escape, before lim. */
static int textok__hex4(textok__cur *c, const char *lim, uint32_t *cp)
{
    uint32_t v = 0;
    int i;
    if (lim - c->p < 4) return 0;
    for (i = 0; i < 4; i++) {
        char h = *c->p++;
        if (h >= '0' && h <= '9') v = v << 4 | (uint32_t)(h - '0');
        else if (h >= 'a' && h <= 'f') v = v << 4 | (uint32_t)(h - 'a' + 10);
        else if (h >= 'A' && h <= 'F') v = v << 4 | (uint32_t)(h - 'A' + 10);
        else return 0;
    }
    *cp = v;
    return 1;
}

/* The XXXX of a \uXXXX escape (with the low half of a surrogate pair) as UTF-8 at *o, before lim.
   Returns NULL, or what is wrong. */
static const char *textok__json_uescape(textok__cur *c, const char *lim, char **o)
{
    static const unsigned char lead[5] = { 0, 0, 0xc0, 0xe0, 0xf0 };   /* UTF-8 first byte by length */
    uint32_t cp, lo = 0;
    int len, k;
    if (!textok__hex4(c, lim, &cp)) return "bad \\u escape (4 hex digits needed)";
    if (cp >= 0xd800 && cp < 0xdc00 && lim - c->p >= 6 && c->p[0] == '\\' && c->p[1] == 'u') {
        c->p += 2;   /* a high surrogate: the low one must follow */
        if (textok__hex4(c, lim, &lo) && lo >= 0xdc00 && lo < 0xe000)
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
    }
    if (cp >= 0xd800 && cp < 0xe000) return "unpaired UTF-16 surrogate in a \\u escape";
    if (cp == 0) return "\\u0000 is not allowed in a name";
    len = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    for (k = len - 1; k > 0; k--, cp >>= 6) (*o)[k] = (char)(0x80 | (cp & 0x3f));
    (*o)[0] = (char)(lead[len] | cp);
    *o += len;
    return NULL;
}

/* Parses a JSON string into a new NUL-terminated UTF-8 buffer (*out; the caller frees it).
   Escapes are decoded, \uXXXX with surrogate pairs; raw control characters, lone surrogates
   and \u0000 (names are C strings) are errors. */
static int textok__json_str(textok__cur *c, char **out)
{
    const char *q;
    char *s, *o;
    textok__ws(c);
    if (c->p >= c->end || *c->p != '"') return textok__csyntax(c, "a string");
    /* find the closing quote first: the decoded string is never longer than the raw text */
    for (q = c->p + 1; q < c->end && *q != '"'; q++)
        if (*q == '\\' && ++q == c->end) break;
    if (q >= c->end)
        return textok__cfail(c, TEXTOK_ERR_FORMAT, "header byte %zu: unterminated string",
                             textok__pos(c));
    s = o = (char *)textok__malloc((size_t)(q - c->p));
    if (!s) return textok__cfail(c, TEXTOK_ERR_NOMEM, "out of memory");
    for (c->p++; c->p < q;) {
        static const char esc_in[] = "\"\\/bfnrt", esc_out[] = "\"\\/\b\f\n\r\t";
        const char *at = c->p, *bad = NULL, *e;
        unsigned char ch = (unsigned char)*c->p++;
        if (ch < 0x20) bad = "control character in a string (it must be escaped)";
        else if (ch != '\\') *o++ = (char)ch;
        else if (*c->p == 'u') { c->p++; bad = textok__json_uescape(c, q, &o); }
        else if (*c->p && (e = strchr(esc_in, *c->p))) { *o++ = esc_out[e - esc_in]; c->p++; }
        else bad = "unknown escape sequence in a string";
        if (bad) {
            TEXTOK_FREE(s);
            return textok__cfail(c, TEXTOK_ERR_FORMAT, "header byte %zu: %s", (size_t)(at - c->beg), bad);
        }
    }
    *o = 0;
    c->p = q + 1;
    *out = s;
    return TEXTOK_OK;
}

/* Parses a JSON array of at most max non-negative integers into v; *n gets the count. More than
   max entries fails with too_many (the status). */
static int textok__json_ints(textok__cur *c, const char *what, int64_t *v, int max, int *n, int too_many)
{
    const char *why;
    *n = 0;
    if (!textok__eat(c, '['))
        return textok__cfail(c, TEXTOK_ERR_FORMAT, "%s must be an array of integers", what);
    if (textok__eat(c, ']')) return TEXTOK_OK;
    do {
        if (*n == max) return textok__cfail(c, too_many, "%s has more than %d entries", what, max);
        if ((why = textok__scan_int(c, &v[*n]))) return textok__int_fail(c, what, why);
        (*n)++;
    } while (textok__eat(c, ','));
    return textok__eat(c, ']') ? TEXTOK_OK : textok__csyntax(c, "',' or ']'");
}

/* ---- 3.4 safetensors: header parsing and validation ---------------------------------------- */

/* "F32" | "F16" | "BF16" | "U8"; any other dtype is valid safetensors that this reader cannot convert. */
static int textok__st_parse_dtype(textok__cur *c, int *dtype)
{
    char *s;
    int rc = textok__json_str(c, &s);
    if (rc) return rc;
    *dtype = !strcmp(s, "F32") ? TEXTOK_DTYPE_F32 : !strcmp(s, "F16") ? TEXTOK_DTYPE_F16
           : !strcmp(s, "BF16") ? TEXTOK_DTYPE_BF16 : !strcmp(s, "U8") ? TEXTOK_DTYPE_U8 : -1;
    if (*dtype < 0)
        rc = textok__cfail(c, TEXTOK_ERR_UNSUPPORTED, "dtype '%.40s' is not supported (only F32, F16, BF16, U8)",
                           s);
    TEXTOK_FREE(s);
    return rc;
}

/* One tensor's {"dtype", "shape", "data_offsets"} object into t (whose name is set), each field
   exactly once; then the checks that need only this tensor: element and byte counts without
   overflow, and a byte range that matches them and lies inside the data buffer. */
static int textok__st_parse_tensor(textok__cur *c, textok_st_tensor *t, size_t buffer_size)
{
    int64_t off[2] = { 0, 0 };
    int seen = 0, rc = TEXTOK_OK, n_off = 0;
    size_t need;
    char s1[TEXTOK__SHAPE_STR];
    if (!textok__eat(c, '{'))
        return textok__cfail(c, TEXTOK_ERR_FORMAT,
                             "expected an object {\"dtype\", \"shape\", \"data_offsets\"}");
    if (!textok__eat(c, '}')) {
        do {
            char *key;
            int bit;
            if ((rc = textok__json_str(c, &key))) return rc;
            bit = !strcmp(key, "dtype") ? 1 : !strcmp(key, "shape") ? 2
                : !strcmp(key, "data_offsets") ? 4 : 0;
            if (!bit)
                rc = textok__cfail(c, TEXTOK_ERR_FORMAT,
                                   "unknown field '%.60s' (only dtype, shape, data_offsets)", key);
            else if (seen & bit) rc = textok__cfail(c, TEXTOK_ERR_FORMAT, "duplicate field '%s'", key);
            TEXTOK_FREE(key);
            if (rc) return rc;
            seen |= bit;
            if (!textok__eat(c, ':')) return textok__csyntax(c, "':'");
            if (bit == 1) {
                rc = textok__st_parse_dtype(c, &t->dtype);
            } else if (bit == 2) {
                rc = textok__json_ints(c, "shape", t->shape, TEXTOK_MAX_DIMS, &t->ndim,
                                       TEXTOK_ERR_UNSUPPORTED);
            } else {
                rc = textok__json_ints(c, "data_offsets", off, 2, &n_off, TEXTOK_ERR_FORMAT);
                if (!rc && n_off != 2)
                    rc = textok__cfail(c, TEXTOK_ERR_FORMAT,
                                       "data_offsets must be [begin, end], found %d entries", n_off);
            }
            if (rc) return rc;
        } while (textok__eat(c, ','));
        if (!textok__eat(c, '}')) return textok__csyntax(c, "',' or '}'");
    }
    if (seen != 7)
        return textok__cfail(c, TEXTOK_ERR_FORMAT, "missing field '%s'",
                             !(seen & 1) ? "dtype" : !(seen & 2) ? "shape" : "data_offsets");

    textok__shape_str(s1, t->ndim, t->shape);
    if (!textok__numel(t->ndim, t->shape, &t->numel))
        return textok__cfail(c, TEXTOK_ERR_FORMAT,
                             "shape %s has more elements than fit in size_t (overflow)", s1);
    if (!textok__mul_size(t->numel, textok__dtype_size[t->dtype], &need))
        return textok__cfail(c, TEXTOK_ERR_FORMAT,
                             "shape %s %s needs more bytes than fit in size_t (overflow)",
                             s1, textok__dtype_name[t->dtype]);
    if (off[0] > off[1])
        return textok__cfail(c, TEXTOK_ERR_FORMAT, "data_offsets [%lld, %lld]: begin is after end",
                             (long long)off[0], (long long)off[1]);
    if ((uint64_t)(off[1] - off[0]) != (uint64_t)need)
        return textok__cfail(c, TEXTOK_ERR_FORMAT,
                             "data_offsets [%lld, %lld] span %lld bytes but shape %s %s needs %zu",
                             (long long)off[0], (long long)off[1], (long long)(off[1] - off[0]), s1,
                             textok__dtype_name[t->dtype], need);
    if ((uint64_t)off[1] > (uint64_t)buffer_size)
        return textok__cfail(c, TEXTOK_ERR_FORMAT,
                             "data_offsets [%lld, %lld] run past the end of the data buffer (%zu bytes)",
                             (long long)off[0], (long long)off[1], buffer_size);
    t->offset = (size_t)off[0];
    t->nbytes = need;
    return TEXTOK_OK;
}

/* "__metadata__": {"key": "value", ...}, string values only. */
static int textok__st_parse_meta(textok__cur *c, textok_safetensors *st)
{
    int cap_k = 0, cap_v = 0, rc;
    if (!textok__eat(c, '{'))
        return textok__cfail(c, TEXTOK_ERR_FORMAT, "__metadata__ must be an object of strings");
    if (textok__eat(c, '}')) return TEXTOK_OK;
    do {
        void *k = textok__grow(st->meta_keys, st->n_meta, &cap_k, sizeof(char *)), *v;
        if (k) st->meta_keys = (char **)k;
        v = k ? textok__grow(st->meta_values, st->n_meta, &cap_v, sizeof(char *)) : NULL;
        if (!v) return textok__cfail(c, TEXTOK_ERR_NOMEM, "out of memory reading __metadata__");
        st->meta_values = (char **)v;
        st->meta_keys[st->n_meta] = st->meta_values[st->n_meta] = NULL;   /* owned by st from here */
        st->n_meta++;
        if ((rc = textok__json_str(c, &st->meta_keys[st->n_meta - 1]))) return rc;
        if (!textok__eat(c, ':')) return textok__csyntax(c, "':'");
        textok__ws(c);
        if (c->p < c->end && *c->p != '"')
            return textok__cfail(c, TEXTOK_ERR_FORMAT,
                                 "__metadata__ value for key '%.80s' must be a string",
                                 st->meta_keys[st->n_meta - 1]);
        if ((rc = textok__json_str(c, &st->meta_values[st->n_meta - 1]))) return rc;
    } while (textok__eat(c, ','));
    return textok__eat(c, '}') ? TEXTOK_OK : textok__csyntax(c, "',' or '}'");
}

/* The header object: "__metadata__" at most once, every other key a tensor. */
static int textok__st_parse_header(textok_safetensors *st, const char *json, size_t len)
{
    textok__cur c;
    int rc = TEXTOK_OK, cap_t = 0, seen_meta = 0;
    c.p = c.beg = json;
    c.end = json + len;
    c.file = st->path;
    c.tensor = NULL;
    if (!textok__eat(&c, '{'))
        return textok__cfail(&c, TEXTOK_ERR_FORMAT,
                             "the header is not a JSON object (it must start with '{')");
    if (!textok__eat(&c, '}')) {
        do {
            char *key;
            if ((rc = textok__json_str(&c, &key))) return rc;
            if (!textok__eat(&c, ':')) { TEXTOK_FREE(key); return textok__csyntax(&c, "':'"); }
            if (!strcmp(key, "__metadata__")) {
                TEXTOK_FREE(key);
                if (seen_meta++)
                    return textok__cfail(&c, TEXTOK_ERR_FORMAT, "duplicate key '__metadata__'");
                rc = textok__st_parse_meta(&c, st);
            } else {
                textok_st_tensor *t;
                void *p;
                if (st->n_tensors >= TEXTOK_MAX_TENSORS) {
                    TEXTOK_FREE(key);
                    return textok__cfail(&c, TEXTOK_ERR_FORMAT, "more than %d tensors (TEXTOK_MAX_TENSORS)",
                                         TEXTOK_MAX_TENSORS);
                }
                p = textok__grow(st->tensors, st->n_tensors, &cap_t, sizeof *st->tensors);
                if (!p) { TEXTOK_FREE(key); return textok__cfail(&c, TEXTOK_ERR_NOMEM, "out of memory"); }
                st->tensors = (textok_st_tensor *)p;
                t = &st->tensors[st->n_tensors++];
                memset(t, 0, sizeof *t);
                t->name = key;                                /* owned by st from here */
                c.tensor = key;
                rc = textok__st_parse_tensor(&c, t, st->buffer_size);
                c.tensor = NULL;
            }
            if (rc) return rc;
        } while (textok__eat(&c, ','));
        if (!textok__eat(&c, '}')) return textok__csyntax(&c, "',' or '}'");
    }
    textok__ws(&c);   /* writers pad the header with spaces */
    if (c.p != c.end) return textok__csyntax(&c, "only spaces after the header object");
    return TEXTOK_OK;
}

static int textok__cmp_offset(const void *a, const void *b)
{
    const textok_st_tensor *x = *(const textok_st_tensor *const *)a;
    const textok_st_tensor *y = *(const textok_st_tensor *const *)b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    return (x->nbytes > y->nbytes) - (x->nbytes < y->nbytes);
}

/* Checks across tensors: unique tensor names and metadata keys, no two byte ranges overlapping.
   Holes (and trailing bytes) are tolerated, unlike the reference reader: they cannot make a read
   go wrong. */
static int textok__st_check_layout(textok_safetensors *st)
{
    size_t n = (size_t)st->n_tensors, m = n > (size_t)st->n_meta ? n : (size_t)st->n_meta, i, end = 0;
    const char **names = (const char **)textok__calloc(m, sizeof *names);
    const textok_st_tensor **order = (const textok_st_tensor **)textok__calloc(n, sizeof *order);
    const textok_st_tensor *last = NULL;
    const char *dup;
    int rc = TEXTOK_OK;
    if (!names || !order) rc = textok__fail(TEXTOK_ERR_NOMEM, "%s: out of memory", st->path);
    if (!rc) {
        for (i = 0; i < n; i++) names[i] = st->tensors[i].name;
        if ((dup = textok__find_dup(names, n)))
            rc = textok__fail(TEXTOK_ERR_FORMAT, "%s: duplicate tensor name '%.120s'", st->path, dup);
    }
    if (!rc) {
        for (i = 0; i < (size_t)st->n_meta; i++) names[i] = st->meta_keys[i];
        if ((dup = textok__find_dup(names, (size_t)st->n_meta)))
            rc = textok__fail(TEXTOK_ERR_FORMAT, "%s: duplicate __metadata__ key '%.120s'", st->path, dup);
    }
    if (!rc) {
        for (i = 0; i < n; i++) order[i] = &st->tensors[i];
        qsort(order, n, sizeof *order, textok__cmp_offset);
        for (i = 0; i < n && !rc; i++) {
            const textok_st_tensor *t = order[i];
            if (t->nbytes == 0) continue;   /* an empty range overlaps nothing */
            if (last && t->offset < end)
                rc = textok__fail(TEXTOK_ERR_FORMAT,
                                  "%s: tensors '%.100s' [%zu, %zu] and '%.100s' [%zu, %zu] overlap",
                                  st->path, last->name, last->offset, last->offset + last->nbytes,
                                  t->name, t->offset, t->offset + t->nbytes);
            if (t->offset + t->nbytes > end) { end = t->offset + t->nbytes; last = t; }
        }
    }
    TEXTOK_FREE((void *)names);
    TEXTOK_FREE((void *)order);
    return rc;
}

/* Validates st->data/size (already set) and fills the tensor and metadata tables. */
static int textok__st_parse(textok_safetensors *st)
{
    uint64_t hlen;
    int rc;
    if (st->size < 8)
        return textok__fail(TEXTOK_ERR_FORMAT,
                            "%s: file is %zu bytes, too short for the 8-byte header length",
                            st->path, st->size);
    hlen = textok__le(st->data, 8);
    if (hlen > TEXTOK_MAX_HEADER_BYTES)
        return textok__fail(TEXTOK_ERR_FORMAT,
                            "%s: header length %llu is over the limit of %u bytes (not a safetensors file?)",
                            st->path, (unsigned long long)hlen, TEXTOK_MAX_HEADER_BYTES);
    if (hlen > st->size - 8)
        return textok__fail(TEXTOK_ERR_FORMAT,
                            "%s: header length %llu runs past the end of the file (%zu bytes)",
                            st->path, (unsigned long long)hlen, st->size);
    st->buffer = st->data + 8 + (size_t)hlen;
    st->buffer_size = st->size - 8 - (size_t)hlen;
    rc = textok__st_parse_header(st, (const char *)st->data + 8, (size_t)hlen);
    return rc ? rc : textok__st_check_layout(st);
}

/* Copies a name into st->path; a long one keeps its end, where the file name is. */
/* A file name for messages, at most 255 characters: a long path keeps its end, where the file
   name is ("...dir/file.safetensors"). */
static void textok__short_path(char dst[256], const char *name)
{
    size_t n = strlen(name), cap = 255;
    if (n <= cap) { memcpy(dst, name, n + 1); return; }
    memcpy(dst, "...", 3);
    memcpy(dst + 3, name + n - (cap - 3), cap - 3 + 1);
}
static void textok__st_set_path(textok_safetensors *st, const char *name)
{
    textok__short_path(st->path, name);
}

/* ---- 3.5 safetensors: open, close, look up, read -------------------------------------------- */

/* Opens a safetensors image that the caller keeps alive (and unchanged) until textok_st_close. */
TEXTOKDEF int textok_st_open_memory(textok_safetensors *st, const void *data, size_t size,
                                    const char *name_for_errors)
{
    int rc;
    if (!st) return textok__fail(TEXTOK_ERR_ARG, "textok_st_open_memory: st is NULL");
    memset(st, 0, sizeof *st);
    textok__st_set_path(st, name_for_errors ? name_for_errors : "<memory>");
    if (!data && size) return textok__fail(TEXTOK_ERR_ARG, "%s: data is NULL", st->path);
    st->data = (const unsigned char *)data;
    st->size = size;
    st->mapped = -1;
    if ((rc = textok__st_parse(st))) textok_st_close(st);
    return rc;
}

#ifndef TEXTOK_NO_STDIO
/* Reads a whole file into a new heap buffer. name is what messages call it. */
static int textok__read_file(const char *path, const char *name, unsigned char **out, size_t *size)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf = NULL;
    size_t n = 0, cap = 0;
    long hint;
    int err;
    if (!f) return textok__fail(TEXTOK_ERR_IO, "%s: cannot open: %s", name, strerror(errno));
    /* the size only sizes the first allocation (at most 1 GiB: a directory can report a huge
       size); the loop reads to EOF whatever it is, so pipes work too */
    if (fseek(f, 0, SEEK_END) == 0 && (hint = ftell(f)) >= 0)
        cap = (size_t)(hint < (1L << 30) ? hint + 1 : (1L << 30));
    rewind(f);
    for (;;) {
        if (!buf || n == cap) {   /* the first allocation takes the hint */
            size_t nc = !buf && cap ? cap : cap < 4096 ? 4096 : cap * 2;
            unsigned char *nb = cap > SIZE_MAX / 2 ? NULL : (unsigned char *)TEXTOK_REALLOC(buf, nc);
            if (!nb) {
                TEXTOK_FREE(buf);
                fclose(f);
                return textok__fail(TEXTOK_ERR_NOMEM, "%s: out of memory reading %zu bytes", name, nc);
            }
            buf = nb;
            cap = nc;
        }
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) break;   /* a short read is EOF or an error */
    }
    err = ferror(f) ? errno : 0;
    fclose(f);
    if (err) {
        TEXTOK_FREE(buf);
        return textok__fail(TEXTOK_ERR_IO, "%s: read error: %s", name, strerror(err));
    }
    *out = buf;
    *size = n;
    return TEXTOK_OK;
}

TEXTOKDEF int textok_file_open(textok_file *f, const char *path)
{
    unsigned char *buf = NULL;   /* set by textok__read_file; gcc -O2 cannot see that when inlined */
    char name[256];
    int rc;
    if (!f || !path) return textok__fail(TEXTOK_ERR_ARG, "textok_file_open: f and path must not be NULL");
    memset(f, 0, sizeof *f);
    textok__short_path(name, path);
#ifdef TEXTOK__HAVE_MMAP
    {
        struct stat sb;
        int fd = open(path, O_RDONLY);
        if (fd < 0) return textok__fail(TEXTOK_ERR_IO, "%s: cannot open: %s", name, strerror(errno));
        if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size > 0 &&
            (off_t)(size_t)sb.st_size == sb.st_size) {
            void *m = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
            if (m != MAP_FAILED) {
                f->data = (const unsigned char *)m;
                f->size = (size_t)sb.st_size;
                f->mapped = 1;
            }
        }
        close(fd);   /* the mapping stays valid */
        if (f->mapped) return TEXTOK_OK;
    }
#endif
    /* empty, not a regular file, mmap refused or not available: read it instead */
    if ((rc = textok__read_file(path, name, &buf, &f->size))) return rc;
    f->data = buf;
    return TEXTOK_OK;
}

TEXTOKDEF void textok_file_close(textok_file *f)
{
    if (!f) return;
#ifdef TEXTOK__HAVE_MMAP
    if (f->mapped == 1) munmap((void *)f->data, f->size);
#endif
    if (f->mapped == 0) TEXTOK_FREE((void *)f->data);
    memset(f, 0, sizeof *f);
}

/* Opens a file through textok_file_open (st->mapped as there), then parses it. */
TEXTOKDEF int textok_st_open(textok_safetensors *st, const char *path)
{
    textok_file f;
    int rc;
    if (!st || !path) return textok__fail(TEXTOK_ERR_ARG, "textok_st_open: st and path must not be NULL");
    memset(st, 0, sizeof *st);
    textok__st_set_path(st, path);
    if ((rc = textok_file_open(&f, path)) != TEXTOK_OK) return rc;
    st->data = f.data;
    st->size = f.size;
    st->mapped = f.mapped;
    if ((rc = textok__st_parse(st))) textok_st_close(st);
    return rc;
}
#endif /* TEXTOK_NO_STDIO */

/* Frees everything and zeroes st; safe on a zeroed, failed or already closed struct. */
TEXTOKDEF void textok_st_close(textok_safetensors *st)
{
    int i;
    if (!st) return;
    for (i = 0; i < st->n_tensors; i++) TEXTOK_FREE(st->tensors[i].name);
    for (i = 0; i < st->n_meta; i++) {
        TEXTOK_FREE(st->meta_keys[i]);
        TEXTOK_FREE(st->meta_values[i]);
    }
    TEXTOK_FREE(st->tensors);
    TEXTOK_FREE(st->meta_keys);
    TEXTOK_FREE(st->meta_values);
#ifdef TEXTOK__HAVE_MMAP
    if (st->mapped == 1) munmap((void *)st->data, st->size);
#endif
    if (st->mapped == 0) TEXTOK_FREE((void *)st->data);
    memset(st, 0, sizeof *st);
}

/* The tensor with this name, or NULL. A linear scan: lookups happen once per load. */
TEXTOKDEF const textok_st_tensor *textok_st_find(const textok_safetensors *st, const char *name)
{
    int i;
    if (!st || !name) return NULL;
    for (i = 0; i < st->n_tensors; i++)
        if (!strcmp(st->tensors[i].name, name)) return &st->tensors[i];
    return NULL;
}

/* The __metadata__ value for key, or NULL. */
TEXTOKDEF const char *textok_st_meta(const textok_safetensors *st, const char *key)
{
    int i;
    if (!st || !key) return NULL;
    for (i = 0; i < st->n_meta; i++)
        if (!strcmp(st->meta_keys[i], key)) return st->meta_values[i];
    return NULL;
}

/* Converts t's data (F32, F16, BF16 or U8, at any alignment) into dst, which holds dst_numel floats. */
TEXTOKDEF int textok_st_read_f32(const textok_safetensors *st, const textok_st_tensor *t, float *dst,
                                 size_t dst_numel)
{
    char s1[TEXTOK__SHAPE_STR];
    size_t end, need;
    if (!st || !t) return textok__fail(TEXTOK_ERR_ARG, "textok_st_read_f32: st and t must not be NULL");
    /* t might come from another (or a closed) file: re-check its range against this buffer */
    if (t->dtype < 0 || t->dtype > TEXTOK_DTYPE_U8 || !textok__add_size(t->offset, t->nbytes, &end) ||
        end > st->buffer_size || !textok__mul_size(t->numel, textok__dtype_size[t->dtype], &need) ||
        need != t->nbytes)
        return textok__fail(TEXTOK_ERR_ARG, "%s: tensor '%.120s' does not belong to this file", st->path,
                            t->name ? t->name : "?");
    if (dst_numel != t->numel)
        return textok__fail(TEXTOK_ERR_SHAPE,
                            "%s: tensor '%.120s': destination holds %zu floats but shape %s has %zu",
                            st->path, t->name, dst_numel, textok__shape_str(s1, t->ndim, t->shape),
                            t->numel);
    if (t->numel == 0) return TEXTOK_OK;
    if (!dst) return textok__fail(TEXTOK_ERR_ARG, "%s: tensor '%.120s': dst is NULL", st->path, t->name);
    textok__load_floats(dst, st->buffer + t->offset, t->numel, t->dtype);
    return TEXTOK_OK;
}

/* Find + shape check + read: the usual way to fill one weight array. */
TEXTOKDEF int textok_st_load(const textok_safetensors *st, const char *name, int ndim, const int64_t *shape,
                             float *dst)
{
    const textok_st_tensor *t;
    char s1[TEXTOK__SHAPE_STR], s2[TEXTOK__SHAPE_STR];
    int i, same;
    if (!st || !name || ndim < 0 || ndim > TEXTOK_MAX_DIMS || (ndim && !shape))
        return textok__fail(TEXTOK_ERR_ARG, "textok_st_load: bad arguments (NULL, or ndim %d)", ndim);
    if (!(t = textok_st_find(st, name)))
        return textok__fail(TEXTOK_ERR_NOT_FOUND,
                            "%s: tensor '%.120s' not found (the file has %d tensors)",
                            st->path, name, st->n_tensors);
    same = t->ndim == ndim;
    for (i = 0; same && i < ndim; i++) same = t->shape[i] == shape[i];
    if (!same)
        return textok__fail(TEXTOK_ERR_SHAPE, "%s: tensor '%.120s': expected %s but file has %s",
                            st->path, name,
                            textok__shape_str(s1, ndim, shape), textok__shape_str(s2, t->ndim, t->shape));
    if (t->dtype == TEXTOK_DTYPE_U8)
        return textok__fail(TEXTOK_ERR_FORMAT, "%s: tensor '%.120s' is U8 (bytes: a data file's); weights must be F32, F16 or BF16",
                            st->path, name);
    return textok_st_read_f32(st, t, dst, t->numel);
}

/* ---- 3.6 Writing: temp file + rename, and the safetensors writer ---------------------------- */
#ifndef TEXTOK_NO_STDIO

/* A file written as "<path>.tmp" and renamed over path once complete, so that no reader ever
   sees half a file. The first failure is remembered and later writes are skipped. */
typedef struct textok__wfile {
    FILE       *f;
    char       *tmp;
    const char *path;
    int         failed;   /* 0, 1 write/close failed, 2 rename failed */
    int         err;      /* errno of the failure */
} textok__wfile;

static int textok__wopen(textok__wfile *w, const char *path)
{
    size_t n = strlen(path);
    memset(w, 0, sizeof *w);
    w->path = path;
    if (!(w->tmp = (char *)textok__malloc(n + 5)))
        return textok__fail(TEXTOK_ERR_NOMEM, "%s: out of memory", path);
    memcpy(w->tmp, path, n);
    memcpy(w->tmp + n, ".tmp", 5);
    if (!(w->f = fopen(w->tmp, "wb"))) {
        int rc = textok__fail(TEXTOK_ERR_IO, "%s: cannot create '%s': %s", path, w->tmp, strerror(errno));
        TEXTOK_FREE(w->tmp);
        return rc;
    }
    return TEXTOK_OK;
}

static void textok__wbytes(textok__wfile *w, const void *p, size_t n)
{
    if (!w->failed && n && fwrite(p, 1, n, w->f) != n) { w->failed = 1; w->err = errno; }
}

/* n floats as little-endian F32 or F16, or as U8 (rounded, clamped to [0, 255]), converted
   through a fixed-size buffer. */
static void textok__wfloats(textok__wfile *w, const float *x, size_t n, int dtype)
{
    unsigned char buf[4096];
    size_t i, j, k, b, esz = textok__dtype_size[dtype], per = sizeof buf / esz;
    if (dtype == TEXTOK_DTYPE_F32 && textok__is_le()) { textok__wbytes(w, x, n * 4); return; }
    for (i = 0; i < n; i += k) {
        k = n - i < per ? n - i : per;
        for (j = 0; j < k; j++) {
            uint32_t u;
            if (dtype == TEXTOK_DTYPE_F16) u = textok_f32_to_f16(x[i + j]);
            else if (dtype == TEXTOK_DTYPE_U8) u = !(x[i + j] > 0.0f) ? 0u : x[i + j] >= 255.0f ? 255u : (uint32_t)(x[i + j] + 0.5f);
            else memcpy(&u, &x[i + j], 4);
            for (b = 0; b < esz; b++) buf[j * esz + b] = (unsigned char)(u >> (8 * b));
        }
        textok__wbytes(w, buf, k * esz);
    }
}

/* Flushes, closes and renames into place; on any failure removes the temp file instead. */
static int textok__wclose(textok__wfile *w)
{
    int rc = TEXTOK_OK;
    if (!w->failed && fflush(w->f) != 0) { w->failed = 1; w->err = errno; }
    if (fclose(w->f) != 0 && !w->failed) { w->failed = 1; w->err = errno; }
    if (!w->failed) {
#ifdef _WIN32
        remove(w->path);   /* rename does not replace an existing file there */
#endif
        if (rename(w->tmp, w->path) != 0) { w->failed = 2; w->err = errno; }
    }
    if (w->failed) {
        remove(w->tmp);
        rc = textok__fail(TEXTOK_ERR_IO, "%s: %s failed: %s", w->path,
                          w->failed == 2 ? "renaming the .tmp file into place" : "writing",
                          strerror(w->err));
    }
    TEXTOK_FREE(w->tmp);
    return rc;
}

/* A growable byte buffer for building a header; oom is sticky. */
typedef struct textok__sbuf { char *p; size_t n, cap; int oom; } textok__sbuf;

static void textok__sput(textok__sbuf *s, const char *p, size_t n)
{
    if (s->oom) return;
    if (n > s->cap - s->n) {
        size_t nc = s->cap ? s->cap : 256;
        char *q;
        while (nc - s->n < n) {
            if (nc > SIZE_MAX / 2) { s->oom = 1; return; }
            nc *= 2;
        }
        if (!(q = (char *)TEXTOK_REALLOC(s->p, nc))) { s->oom = 1; return; }
        s->p = q;
        s->cap = nc;
    }
    memcpy(s->p + s->n, p, n);
    s->n += n;
}

static void textok__sputs(textok__sbuf *s, const char *str) { textok__sput(s, str, strlen(str)); }

static void textok__sput_int(textok__sbuf *s, unsigned long long v)
{
    char num[24];
    textok__sput(s, num, (size_t)snprintf(num, sizeof num, "%llu", v));
}

/* str as a JSON string literal: quotes, backslashes and control characters escaped; other
   bytes (UTF-8) as they are. */
static void textok__sput_json(textok__sbuf *s, const char *str)
{
    textok__sput(s, "\"", 1);
    for (; *str; str++) {
        unsigned char ch = (unsigned char)*str;
        char esc[8];
        if (ch == '"' || ch == '\\') { esc[0] = '\\'; esc[1] = (char)ch; textok__sput(s, esc, 2); }
        else if (ch < 0x20) textok__sput(s, esc, (size_t)snprintf(esc, sizeof esc, "\\u%04x", ch));
        else textok__sput(s, str, 1);
    }
    textok__sput(s, "\"", 1);
}

/* Writes entries (F32 data) as dtype F32 or F16, in the order given, with metadata first. */
TEXTOKDEF int textok_st_save(const char *path, const textok_st_entry *entries, int n_entries,
                             const char *const *meta_kv, int n_meta, int dtype)
{
    textok__sbuf h;
    textok__wfile w;
    size_t total = 0, off = 0, numel = 0, nbytes, esz, m;
    const char **names, *dup = NULL;
    unsigned char len8[8];
    char s1[TEXTOK__SHAPE_STR];
    int i, j, rc = TEXTOK_OK;
    if (!path || n_entries < 0 || (n_entries && !entries) || n_meta < 0 || (n_meta && !meta_kv))
        return textok__fail(TEXTOK_ERR_ARG,
                            "textok_st_save: bad arguments (path, entries or meta_kv NULL, or a count < 0)");
    if (dtype != TEXTOK_DTYPE_F32 && dtype != TEXTOK_DTYPE_F16 && dtype != TEXTOK_DTYPE_U8)
        return textok__fail(TEXTOK_ERR_ARG, "%s: can only write F32, F16 or U8, not dtype %d", path, dtype);
    esz = textok__dtype_size[dtype];
    for (i = 0; i < n_entries; i++) {
        const textok_st_entry *e = &entries[i];
        if (!e->name || !strcmp(e->name, "__metadata__"))
            return textok__fail(TEXTOK_ERR_ARG,
                                "%s: entry %d has no name or the reserved name __metadata__", path, i);
        if (e->ndim < 0 || e->ndim > TEXTOK_MAX_DIMS)
            return textok__fail(TEXTOK_ERR_ARG, "%s: tensor '%.120s': ndim %d is outside [0, %d]", path,
                                e->name, e->ndim, TEXTOK_MAX_DIMS);
        textok__shape_str(s1, e->ndim, e->shape);
        for (j = 0; j < e->ndim; j++)
            if (e->shape[j] < 0)
                return textok__fail(TEXTOK_ERR_ARG, "%s: tensor '%.120s': shape %s has a negative dim",
                                    path, e->name, s1);
        if (!textok__numel(e->ndim, e->shape, &numel) || !textok__mul_size(numel, esz, &nbytes) ||
            !textok__add_size(total, nbytes, &total))
            return textok__fail(TEXTOK_ERR_ARG,
                                "%s: tensor '%.120s': shape %s: byte size overflows size_t", path,
                                e->name, s1);
        if (!e->data && numel)
            return textok__fail(TEXTOK_ERR_ARG, "%s: tensor '%.120s': data is NULL for shape %s", path,
                                e->name, s1);
    }
    for (i = 0; i < 2 * n_meta; i++)
        if (!meta_kv[i])
            return textok__fail(TEXTOK_ERR_ARG, "%s: metadata %s %d is NULL", path,
                                i % 2 ? "value" : "key", i / 2);
    m = (size_t)(n_entries > n_meta ? n_entries : n_meta);
    if (!(names = (const char **)textok__calloc(m, sizeof *names)))
        return textok__fail(TEXTOK_ERR_NOMEM, "%s: out of memory", path);
    for (i = 0; i < n_entries; i++) names[i] = entries[i].name;
    if ((dup = textok__find_dup(names, (size_t)n_entries)))
        rc = textok__fail(TEXTOK_ERR_ARG, "%s: duplicate tensor name '%.120s'", path, dup);
    for (i = 0; !dup && i < n_meta; i++) names[i] = meta_kv[2 * i];
    if (!dup && (dup = textok__find_dup(names, (size_t)n_meta)))
        rc = textok__fail(TEXTOK_ERR_ARG, "%s: duplicate metadata key '%.120s'", path, dup);
    TEXTOK_FREE((void *)names);
    if (dup) return rc;

    /* header: compact JSON as the reference writer makes it, padded with spaces to a multiple
       of 8 so that data starts 8-aligned in the file */
    memset(&h, 0, sizeof h);
    textok__sputs(&h, "{");
    if (n_meta) {
        textok__sputs(&h, "\"__metadata__\":{");
        for (i = 0; i < n_meta; i++) {
            if (i) textok__sputs(&h, ",");
            textok__sput_json(&h, meta_kv[2 * i]);
            textok__sputs(&h, ":");
            textok__sput_json(&h, meta_kv[2 * i + 1]);
        }
        textok__sputs(&h, n_entries ? "}," : "}");
    }
    for (i = 0; i < n_entries; i++) {
        const textok_st_entry *e = &entries[i];
        textok__numel(e->ndim, e->shape, &numel);
        if (i) textok__sputs(&h, ",");
        textok__sput_json(&h, e->name);
        textok__sputs(&h, ":{\"dtype\":\"");
        textok__sputs(&h, textok__dtype_name[dtype]);
        textok__sputs(&h, "\",\"shape\":[");
        for (j = 0; j < e->ndim; j++) {
            if (j) textok__sputs(&h, ",");
            textok__sput_int(&h, (unsigned long long)e->shape[j]);
        }
        textok__sputs(&h, "],\"data_offsets\":[");
        textok__sput_int(&h, off);
        textok__sputs(&h, ",");
        off += numel * esz;
        textok__sput_int(&h, off);
        textok__sputs(&h, "]}");
    }
    textok__sputs(&h, "}");
    while (!h.oom && h.n % 8) textok__sputs(&h, " ");
    if (h.oom) {
        TEXTOK_FREE(h.p);
        return textok__fail(TEXTOK_ERR_NOMEM, "%s: out of memory building the header", path);
    }
    for (i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)h.n >> (8 * i));

    if ((rc = textok__wopen(&w, path))) { TEXTOK_FREE(h.p); return rc; }
    textok__wbytes(&w, len8, 8);
    textok__wbytes(&w, h.p, h.n);
    TEXTOK_FREE(h.p);
    for (i = 0; i < n_entries; i++) {
        textok__numel(entries[i].ndim, entries[i].shape, &numel);
        textok__wfloats(&w, entries[i].data, numel, dtype);
    }
    return textok__wclose(&w);
}
#endif /* TEXTOK_NO_STDIO */

/* ---- 3.7 npy: float32, C order ------------------------------------------------------------- */

/* A Python string literal without escapes ('...' or "...") into buf, truncated to cap-1 chars
   (a truncated key or descr then fails to match, which is the right error). 0 if none here. */
static int textok__py_str(textok__cur *c, char *buf, size_t cap)
{
    const char *q;
    size_t n = 0;
    textok__ws(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"')) return 0;
    for (q = c->p + 1; q < c->end && *q != *c->p; q++)
        if (n + 1 < cap) buf[n++] = *q;
    if (q >= c->end) return 0;
    buf[n] = 0;
    c->p = q + 1;
    return 1;
}

/* The header dict {'descr': '<f4', 'fortran_order': False, 'shape': (d0, d1), }: these three
   keys exactly once each (as numpy itself requires), in any order, trailing commas allowed. */
static int textok__npy_parse_dict(textok__cur *c, int *ndim, int64_t *shape)
{
    int seen = 0, bit;
    char key[32], val[32];
    const char *why;
    if (!textok__eat(c, '{'))
        return textok__cfail(c, TEXTOK_ERR_FORMAT,
                             "the header is not a Python dict (it must start with '{')");
    while (!textok__eat(c, '}')) {
        if (!textok__py_str(c, key, sizeof key)) return textok__csyntax(c, "a quoted key or '}'");
        bit = !strcmp(key, "descr") ? 1 : !strcmp(key, "fortran_order") ? 2 : !strcmp(key, "shape") ? 4
            : 0;
        if (!bit) return textok__cfail(c, TEXTOK_ERR_FORMAT, "unknown key '%s' in the header dict", key);
        if (seen & bit)
            return textok__cfail(c, TEXTOK_ERR_FORMAT, "duplicate key '%s' in the header dict", key);
        seen |= bit;
        if (!textok__eat(c, ':')) return textok__csyntax(c, "':'");
        textok__ws(c);
        if (bit == 1) {
            if (!textok__py_str(c, val, sizeof val))
                return textok__cfail(c, TEXTOK_ERR_UNSUPPORTED,
                                     "descr is not a type string (structured dtypes are not supported)");
            if (strcmp(val, "<f4"))
                return textok__cfail(c, TEXTOK_ERR_UNSUPPORTED,
                                     "descr '%s' is not supported (only '<f4', little-endian float32)", val);
        } else if (bit == 2) {
            if ((size_t)(c->end - c->p) >= 4 && !memcmp(c->p, "True", 4))
                return textok__cfail(c, TEXTOK_ERR_UNSUPPORTED,
                                     "fortran_order True (column-major data) is not supported");
            if ((size_t)(c->end - c->p) < 5 || memcmp(c->p, "False", 5))
                return textok__csyntax(c, "True or False for fortran_order");
            c->p += 5;
        } else {
            if (!textok__eat(c, '(')) return textok__csyntax(c, "a tuple for shape");
            for (*ndim = 0; !textok__eat(c, ')');) {
                if (*ndim == TEXTOK_MAX_DIMS)
                    return textok__cfail(c, TEXTOK_ERR_UNSUPPORTED, "shape has more than %d dims",
                                         TEXTOK_MAX_DIMS);
                if ((why = textok__scan_int(c, &shape[*ndim]))) return textok__int_fail(c, "shape", why);
                if (c->p < c->end && *c->p == 'L') c->p++;   /* Python 2 long, as old numpy wrote it */
                (*ndim)++;
                if (textok__eat(c, ',')) continue;
                if (textok__eat(c, ')')) break;
                return textok__csyntax(c, "',' or ')' in shape");
            }
        }
        if (textok__eat(c, ',')) continue;
        if (textok__eat(c, '}')) break;
        return textok__csyntax(c, "',' or '}'");
    }
    if (seen != 7)
        return textok__cfail(c, TEXTOK_ERR_FORMAT, "missing key '%s' in the header dict",
                             !(seen & 1) ? "descr" : !(seen & 2) ? "fortran_order" : "shape");
    textok__ws(c);   /* numpy pads with spaces and a final '\n' */
    return c->p == c->end ? TEXTOK_OK : textok__csyntax(c, "only spaces after the header dict");
}

/* Reads a float32 .npy image; *data is allocated with the library allocator (textok_free).
   Outputs are written only on success; shape entries past ndim are set to 0. */
TEXTOKDEF int textok_npy_read_memory(const void *bytes, size_t size, const char *name_for_errors,
                                     float **data, int *ndim, int64_t shape[TEXTOK_MAX_DIMS])
{
    const unsigned char *b = (const unsigned char *)bytes;
    const char *name = name_for_errors ? name_for_errors : "<memory>";
    textok__cur c;
    size_t pre, hlen, numel, nbytes, have;
    int64_t sh[TEXTOK_MAX_DIMS] = { 0 };
    int nd = 0, rc, i;
    char s1[TEXTOK__SHAPE_STR];
    float *out;
    if (!data || !ndim || !shape || (!bytes && size))
        return textok__fail(TEXTOK_ERR_ARG, "textok_npy_read_memory: %s: NULL argument", name);
    if (size < 8 || memcmp(b, "\x93NUMPY", 6))
        return textok__fail(TEXTOK_ERR_FORMAT, "%s: not a .npy file (no \\x93NUMPY magic)", name);
    if ((b[6] != 1 && b[6] != 2 && b[6] != 3) || b[7] != 0)
        return textok__fail(TEXTOK_ERR_UNSUPPORTED,
                            "%s: .npy version %d.%d is not supported (1.0, 2.0, 3.0 are)", name, b[6], b[7]);
    pre = b[6] == 1 ? 10 : 12;   /* magic, version, then a u16 (1.0) or u32 header length */
    if (size < pre)
        return textok__fail(TEXTOK_ERR_FORMAT, "%s: file ends inside the header length", name);
    hlen = (size_t)textok__le(b + 8, (int)pre - 8);
    if (hlen > TEXTOK_MAX_NPY_HEADER)
        return textok__fail(TEXTOK_ERR_FORMAT, "%s: header length %zu is over the limit of %u bytes "
                            "(TEXTOK_MAX_NPY_HEADER; numpy writes less than 4096)", name, hlen, TEXTOK_MAX_NPY_HEADER);
    if (hlen > size - pre)
        return textok__fail(TEXTOK_ERR_FORMAT,
                            "%s: header length %zu runs past the end of the file (%zu bytes)", name, hlen,
                            size);
    c.p = c.beg = (const char *)b + pre;
    c.end = c.p + hlen;
    c.file = name;
    c.tensor = NULL;
    if ((rc = textok__npy_parse_dict(&c, &nd, sh))) return rc;
    textok__shape_str(s1, nd, sh);
    if (!textok__numel(nd, sh, &numel) || !textok__mul_size(numel, 4, &nbytes))
        return textok__fail(TEXTOK_ERR_FORMAT,
                            "%s: shape %s has more bytes than fit in size_t (overflow)", name, s1);
    have = size - pre - hlen;
    if (have < nbytes)
        return textok__fail(TEXTOK_ERR_FORMAT,
                            "%s: data is truncated: shape %s needs %zu bytes but %zu follow the header",
                            name, s1, nbytes, have);
    if (have > nbytes)
        return textok__fail(TEXTOK_ERR_FORMAT, "%s: %zu trailing bytes after the %zu bytes of shape %s",
                            name, have - nbytes, nbytes, s1);
    if (!(out = (float *)textok__malloc(nbytes)))
        return textok__fail(TEXTOK_ERR_NOMEM, "%s: out of memory for %zu bytes", name, nbytes);
    textok__load_floats(out, b + pre + hlen, numel, TEXTOK_DTYPE_F32);
    *data = out;
    *ndim = nd;
    for (i = 0; i < TEXTOK_MAX_DIMS; i++) shape[i] = i < nd ? sh[i] : 0;
    return TEXTOK_OK;
}

#ifndef TEXTOK_NO_STDIO
/* Reads a whole .npy file into memory, then parses it as textok_npy_read_memory does. */
TEXTOKDEF int textok_npy_read(const char *path, float **data, int *ndim, int64_t shape[TEXTOK_MAX_DIMS])
{
    unsigned char *bytes;
    size_t size;
    int rc;
    if (!path) return textok__fail(TEXTOK_ERR_ARG, "textok_npy_read: path is NULL");
    if ((rc = textok__read_file(path, path, &bytes, &size))) return rc;
    rc = textok_npy_read_memory(bytes, size, path, data, ndim, shape);
    TEXTOK_FREE(bytes);
    return rc;
}

/* Writes version 1.0 with numpy's layout: header padded with spaces and a final '\n' so that
   magic + length + header is a multiple of 64 bytes. */
TEXTOKDEF int textok_npy_write(const char *path, const float *data, int ndim, const int64_t *shape)
{
    textok__wfile w;
    char hdr[384], s1[TEXTOK__SHAPE_STR];
    unsigned char pre[10] = { 0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, 0, 0 };
    size_t n, pad, numel, nbytes;
    int i, rc;
    if (!path || ndim < 0 || ndim > TEXTOK_MAX_DIMS || (ndim && !shape))
        return textok__fail(TEXTOK_ERR_ARG, "textok_npy_write: bad arguments (NULL, or ndim %d)", ndim);
    textok__shape_str(s1, ndim, shape);
    for (i = 0; i < ndim; i++)
        if (shape[i] < 0)
            return textok__fail(TEXTOK_ERR_ARG, "%s: shape %s has a negative dim", path, s1);
    if (!textok__numel(ndim, shape, &numel) || !textok__mul_size(numel, 4, &nbytes))
        return textok__fail(TEXTOK_ERR_ARG, "%s: shape %s: byte size overflows size_t", path, s1);
    if (!data && numel) return textok__fail(TEXTOK_ERR_ARG, "%s: data is NULL for shape %s", path, s1);
    /* the dict exactly as numpy writes it: a 1-tuple keeps its trailing comma, "(5,)" */
    n = (size_t)snprintf(hdr, sizeof hdr, "{'descr': '<f4', 'fortran_order': False, 'shape': (");
    for (i = 0; i < ndim; i++)
        n += (size_t)snprintf(hdr + n, sizeof hdr - n, i ? ", %lld" : "%lld", (long long)shape[i]);
    n += (size_t)snprintf(hdr + n, sizeof hdr - n, "%s), }", ndim == 1 ? "," : "");
    pad = 64 - (sizeof pre + n + 1) % 64;   /* 1..64 spaces, as numpy's _wrap_header */
    memset(hdr + n, ' ', pad);
    hdr[n + pad] = '\n';
    n += pad + 1;
    pre[8] = (unsigned char)(n & 0xff);
    pre[9] = (unsigned char)(n >> 8);
    if ((rc = textok__wopen(&w, path))) return rc;
    textok__wbytes(&w, pre, sizeof pre);
    textok__wbytes(&w, hdr, n);
    textok__wfloats(&w, data, numel, TEXTOK_DTYPE_F32);
    return textok__wclose(&w);
}
#endif /* TEXTOK_NO_STDIO */

/* ---------------------------------------------------------------------------------------------
   4. GEMM. Every matrix product of the fast kernels goes through textok__gemm,
      C (M,N) = alpha * op(A) (M,K) . op(B) (K,N) + beta * C,   all row-major with leading dims,
   with op(X) = X or X^T (BLAS semantics). Behind it, one of (the table's GEMM level, see GEMM
   LEVELS at the top; textok__gemm_serial runs the same levels on the calling thread):
     - 4.2 the SIMD GEMM:    packed operands and an AVX-512 (14x32) or AVX2+FMA (6x16)
                             micro-kernel, on x86-64 CPUs that have them (checked at run time).
     - cblas_sgemm:          under TEXTOK_USE_BLAS, where no SIMD kernel applies (or asked for).
     - textok__gemm_blocked: the portable fallback: cache-blocked, op(B) packed into tiles, a
                             4x16 micro-kernel in plain C.
   All of ours thread over blocks of C, so each element of C is summed by one thread in a fixed
   order (deterministic, whatever the thread count).
   The reference kernels (suffix _ref, section 5) do not use it: they are plain loops summing in
   double, which is what both of the above are checked against.
   beta == 0 never reads C (it may hold garbage or NaN), as in BLAS. */

/* OpenMP through _Pragma, so that a build without OpenMP sees no pragma at all (no
   -Wunknown-pragmas) and the loop simply runs on one thread. TEXTOK__PARALLEL_FOR(k, cond) goes
   right before a for loop: threads from the table, and only when cond says the loop is big
   enough to pay for waking them. */
#define TEXTOK__PRAGMA(x) _Pragma(#x)
#ifdef _OPENMP
#define TEXTOK__OMP(x) TEXTOK__PRAGMA(x)
#define TEXTOK__PARALLEL_FOR(k, cond) TEXTOK__PRAGMA(omp parallel for num_threads(textok__nt(k)) if (cond))
#else
#define TEXTOK__OMP(x)
#define TEXTOK__PARALLEL_FOR(k, cond) (void)textok__nt(k);
#endif
static int textok__nt(const textok_kernels *k) { return k->n_threads > 0 ? k->n_threads : 1; }
/* this thread's index in the enclosing parallel loop: kernels that thread their own tiles give each
   thread its slot of the caller's work buffer */
static int textok__thread_num(void)
{
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* ----- 4.1 the portable blocked GEMM (plain C, any compiler and CPU) ------------------------------ */
#define TEXTOK__GEMM_MB 64   /* rows of C per task */
#define TEXTOK__GEMM_NB 128  /* columns of C per task (tile width) */
#define TEXTOK__GEMM_KB 128  /* depth of the packed B tile: KB*NB floats = 64 KiB on the stack */
#define TEXTOK__GEMM_MR 4    /* micro-kernel: MR x NR block of C held in local accumulators */
#define TEXTOK__GEMM_NR 16

/* Tasks are (row block, column block) pairs of C. In each, op(B) is packed k-block by k-block
   into a zero-padded tile, and 4 rows of alpha*op(A) into a small panel; the micro-kernel then
   accumulates a 4 x 16 block of C in a local array with fixed trip counts, which compilers keep
   in vector registers without any intrinsics. */
static void textok__gemm_blocked(int ta, int tb, int M, int N, int K, float alpha,
                                 const float *A, int lda, const float *B, int ldb,
                                 float beta, float *C, int ldc, int n_threads)
{
    int mblocks = (M + TEXTOK__GEMM_MB - 1) / TEXTOK__GEMM_MB;
    int nblocks = (N + TEXTOK__GEMM_NB - 1) / TEXTOK__GEMM_NB;
    int task, ntasks = mblocks * nblocks;
    (void)n_threads;
TEXTOK__OMP(omp parallel for schedule(dynamic, 1) num_threads(n_threads) if (ntasks > 1 && (double)M * N * K > 1e5))
    for (task = 0; task < ntasks; task++) {
        float tile[TEXTOK__GEMM_KB * TEXTOK__GEMM_NB];    /* op(B)[k0:k1, j0:j1], rows of NB */
        float panel[TEXTOK__GEMM_KB * TEXTOK__GEMM_MR];   /* alpha*op(A)[i:i+MR, k0:k1], k-major */
        int i0 = (task / nblocks) * TEXTOK__GEMM_MB, j0 = (task % nblocks) * TEXTOK__GEMM_NB;
        int i1 = i0 + TEXTOK__GEMM_MB < M ? i0 + TEXTOK__GEMM_MB : M;
        int j1 = j0 + TEXTOK__GEMM_NB < N ? j0 + TEXTOK__GEMM_NB : N;
        int nj = j1 - j0, njr = (nj + TEXTOK__GEMM_NR - 1) / TEXTOK__GEMM_NR * TEXTOK__GEMM_NR;
        int i, j, p, r, k0, jb;
        for (i = i0; i < i1; i++) {
            float *c = C + (size_t)i * ldc;
            for (j = j0; j < j1; j++) c[j] = beta == 0.0f ? 0.0f : beta * c[j];
        }
        for (k0 = 0; k0 < K; k0 += TEXTOK__GEMM_KB) {
            int kk = (K - k0 < TEXTOK__GEMM_KB ? K - k0 : TEXTOK__GEMM_KB);
            for (p = 0; p < kk; p++) {
                float *t = tile + (size_t)p * TEXTOK__GEMM_NB;
                if (tb) for (j = 0; j < nj; j++) t[j] = B[(size_t)(j0 + j) * ldb + k0 + p];
                else    memcpy(t, B + (size_t)(k0 + p) * ldb + j0, (size_t)nj * sizeof(float));
                for (j = nj; j < njr; j++) t[j] = 0.0f;
            }
            for (i = i0; i < i1; i += TEXTOK__GEMM_MR) {
                int mr = i1 - i < TEXTOK__GEMM_MR ? i1 - i : TEXTOK__GEMM_MR;
                for (p = 0; p < kk; p++)
                    for (r = 0; r < TEXTOK__GEMM_MR; r++)
                        panel[p * TEXTOK__GEMM_MR + r] = r >= mr ? 0.0f
                            : alpha * (ta ? A[(size_t)(k0 + p) * lda + i + r] : A[(size_t)(i + r) * lda + k0 + p]);
                for (jb = 0; jb < nj; jb += TEXTOK__GEMM_NR) {
                    float acc[TEXTOK__GEMM_MR][TEXTOK__GEMM_NR];
                    int nr = nj - jb < TEXTOK__GEMM_NR ? nj - jb : TEXTOK__GEMM_NR;
                    memset(acc, 0, sizeof acc);
                    for (p = 0; p < kk; p++) {
                        const float *t = tile + (size_t)p * TEXTOK__GEMM_NB + jb, *a = panel + p * TEXTOK__GEMM_MR;
                        for (r = 0; r < TEXTOK__GEMM_MR; r++)
                            for (j = 0; j < TEXTOK__GEMM_NR; j++) acc[r][j] += a[r] * t[j];
                    }
                    for (r = 0; r < mr; r++) {
                        float *c = C + (size_t)(i + r) * ldc + j0 + jb;
                        for (j = 0; j < nr; j++) c[j] += acc[r][j];
                    }
                }
            }
        }
    }
}

/* ----- 4.2 SIMD GEMM (x86-64: AVX-512, AVX2+FMA), chosen at run time ---------------------------
   The default build has no -march flag, so these functions carry __attribute__((target)) and are
   only called after the CPU said it has the instructions (__builtin_cpu_supports). Layout after
   GotoBLAS/BLIS, sized so that every buffer is on the stack (no allocation, ~210 KiB):
     - Work units are (row block of at most MC rows, group of NC-wide column blocks), taken
       dynamically by the threads. A unit runs the KC blocks in order and, inside each, its
       column blocks: op(B)[k0:k0+KC, cols] is packed into panels of NR columns (k-major,
       zero-padded past N; a KC x NC block, 192 KiB, in L2), then op(A) one MR-row panel at a
       time (k-major, zero rows past M; 14 KiB, in L1, and never aliasing in L1 whatever lda is).
       Row-major operands read across their rows (A, and B^T) are packed with in-register 16 x 16
       transposes.
     - The micro-kernel holds an MR x NR block of C in registers (AVX-512: 14 x 32, 28 of the 32
       zmm registers; AVX2: 6 x 16, 12 of the 16 ymm) and, for each k, loads NR values of B and
       broadcasts MR values of A: 2*MR FMAs per MR + 2 loads.
     - alpha is applied once when the block is written (C = alpha*acc + beta*C on the first KC
       block, C += alpha*acc after it); beta == 0 never reads C. Columns past N: masked stores.
   Every element of C is summed over k in KC blocks, in order, by one micro-kernel call each: the
   order depends only on K and the level, never on the thread count or on the tiling, so
   textok__gemm and textok__gemm_serial give the same bits.
   Tuning (Zen 4, 2 threads, 2026-11): 91-97 % of OpenBLAS's own 1536^3 peak at the ViT shapes,
   within 1-5 % of OpenBLAS's SkylakeX kernel; what is left is mostly packing A again for every
   column block (NC is bounded by the stack). */
#define TEXTOK__GEMM_KC 256
#define TEXTOK__GEMM_NC 192        /* a multiple of both NRs */
#define TEXTOK__GEMM_MC 512        /* at most this many rows per unit (MC x NC of C: 384 KiB, in L2) */
#define TEXTOK__GEMM_MR_MAX 14
#define TEXTOK__GEMM_PF 64         /* prefetch distance (floats) along the rows a pack reads */

enum { TEXTOK__GEMM_PORTABLE, TEXTOK__GEMM_BLAS, TEXTOK__GEMM_AVX2, TEXTOK__GEMM_AVX512, TEXTOK__GEMM_NKINDS };
static const char *const textok__gemm_kind_name[TEXTOK__GEMM_NKINDS] = { "portable", "blas", "avx2", "avx512" };

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__) && !defined(TEXTOK_NO_SIMD)
#define TEXTOK__X86_SIMD 1
#include <immintrin.h>
#define TEXTOK__AVX512 __attribute__((target("avx512f")))
#define TEXTOK__AVX2   __attribute__((target("avx2,fma")))

/* a micro-kernel: C[0:mr, 0:nr] (= or +=) alpha * Apanel . Bpanel over kc, with the packed
   panels A[p*MR + r] and B[p*NR + j]; first says whether this is the first KC block (beta
   applies there; after it the kernel adds) */
typedef void (*textok__ukernel)(int kc, const float *a, const float *b, float *c, ptrdiff_t ldc,
                                int mr, int nr, float alpha, float beta, int first);
/* packing: dst[p*R + r] = src[r*ld + p] for r < rows, 0 for rows <= r < R (p < kc) */
typedef void (*textok__packer)(const float *src, ptrdiff_t ld, int rows, int kc, int R, float *dst);

static void textok__pack_rows(const float *src, ptrdiff_t ld, int rows, int kc, int R, float *dst)
{
    int r, p;
    for (r = 0; r < R; r++) {
        const float *s = src + r * ld;
        if (r < rows) for (p = 0; p < kc; p++) dst[p * R + r] = s[p];
        else          for (p = 0; p < kc; p++) dst[p * R + r] = 0.0f;
    }
}
/* the other layout: dst[p*R + c] = src[p*ld + c] for c < cols, 0 past them */
static void textok__pack_cols(const float *src, ptrdiff_t ld, int cols, int kc, int R, float *dst)
{
    int p;
    for (p = 0; p < kc; p++) {   /* memcpy: -O2 leaves the element loop scalar (28 % of a T=64 attention) */
        memcpy(dst + (size_t)p * R, src + p * ld, (size_t)cols * sizeof(float));
        if (cols < R) memset(dst + (size_t)p * R + cols, 0, (size_t)(R - cols) * sizeof(float));
    }
}

/* AVX-512, 14 x 32. Written out with macros (rows 0..13, halves a/b) so the 28 accumulators are
   plain variables that every compiler keeps in registers. */
#define TEXTOK__ROWS14(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13)
#define TEXTOK__Z_DECL(r) __m512 c##r##a = _mm512_setzero_ps(), c##r##b = _mm512_setzero_ps();
#define TEXTOK__Z_FMA(r) { __m512 ar = _mm512_set1_ps(a[r]);                                       \
                           c##r##a = _mm512_fmadd_ps(ar, b0, c##r##a); c##r##b = _mm512_fmadd_ps(ar, b1, c##r##b); }
#define TEXTOK__Z_STORE(r) if ((r) < mr) {                                                          \
        float *cr = c + (r) * ldc;                                                                  \
        __m512 v0 = _mm512_mul_ps(va, c##r##a), v1 = _mm512_mul_ps(va, c##r##b);                    \
        if (!first || beta != 0.0f) {                                                               \
            __m512 o0 = _mm512_maskz_loadu_ps(m0, cr), o1 = _mm512_maskz_loadu_ps(m1, cr + 16);    \
            if (first) { o0 = _mm512_mul_ps(vb, o0); o1 = _mm512_mul_ps(vb, o1); }                 \
            v0 = _mm512_add_ps(o0, v0); v1 = _mm512_add_ps(o1, v1);                                 \
        }                                                                                           \
        _mm512_mask_storeu_ps(cr, m0, v0); _mm512_mask_storeu_ps(cr + 16, m1, v1);                  \
    }
TEXTOK__AVX512 static void textok__uk_avx512(int kc, const float *a, const float *b, float *c, ptrdiff_t ldc,
                                             int mr, int nr, float alpha, float beta, int first)
{
    __mmask16 m0 = (__mmask16)(nr >= 16 ? 0xFFFF : (1u << nr) - 1);
    __mmask16 m1 = (__mmask16)(nr >= 32 ? 0xFFFF : nr > 16 ? (1u << (nr - 16)) - 1 : 0);
    __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    int p;
    TEXTOK__ROWS14(TEXTOK__Z_DECL)
    for (p = 0; p < kc; p++) {
        __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
        TEXTOK__ROWS14(TEXTOK__Z_FMA)
        a += 14;
        b += 32;
    }
    TEXTOK__ROWS14(TEXTOK__Z_STORE)
}

/* textok__pack_rows with 16 x 16 transposes in registers (unpack ps, unpack pd, two rounds of
   128-bit lane shuffles): a row-major operand read along its rows, written k-major. Written out
   in named variables (generated, one statement per line of the classic transpose) so that no
   compiler sends the 32 vectors through the stack. */
#define TEXTOK__T_LD(i) __m512 r##i = (i) < nv ? _mm512_maskz_loadu_ps(mp, src + (rb + (i)) * ld + p0) : _mm512_setzero_ps();
#define TEXTOK__T_UNPS(i, j) __m512 t##i = _mm512_unpacklo_ps(r##i, r##j), t##j = _mm512_unpackhi_ps(r##i, r##j);
#define TEXTOK__T_UNPD(a, b, c, d) __m512 u##a = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t##a), _mm512_castps_pd(t##c))), \
        u##b = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t##a), _mm512_castps_pd(t##c))), \
        u##c = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t##b), _mm512_castps_pd(t##d))), \
        u##d = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t##b), _mm512_castps_pd(t##d)));
#define TEXTOK__T_LANES(e, f, g, h) { __m512 lo0 = _mm512_shuffle_f32x4(u##e, u##f, 0x88), hi0 = _mm512_shuffle_f32x4(u##e, u##f, 0xdd); \
        __m512 lo1 = _mm512_shuffle_f32x4(u##g, u##h, 0x88), hi1 = _mm512_shuffle_f32x4(u##g, u##h, 0xdd);               \
        o[e] = _mm512_shuffle_f32x4(lo0, lo1, 0x88); o[8 + e] = _mm512_shuffle_f32x4(lo0, lo1, 0xdd);                   \
        o[4 + e] = _mm512_shuffle_f32x4(hi0, hi1, 0x88); o[12 + e] = _mm512_shuffle_f32x4(hi0, hi1, 0xdd); }
TEXTOK__AVX512 static void textok__pack_rows_avx512(const float *src, ptrdiff_t ld, int rows, int kc, int R, float *dst)
{
    int rb, p0, i;
    for (rb = 0; rb < R; rb += 16) {
        int nv = rows - rb < 0 ? 0 : rows - rb > 16 ? 16 : rows - rb;   /* rows read in this band */
        int lanes = R - rb < 16 ? R - rb : 16;                            /* rows written */
        __mmask16 ml = (__mmask16)(lanes == 16 ? 0xFFFF : (1u << lanes) - 1);
        for (p0 = 0; p0 < kc; p0 += 16) {
            int np = kc - p0 < 16 ? kc - p0 : 16;
            __mmask16 mp = (__mmask16)(np == 16 ? 0xFFFF : (1u << np) - 1);
            __m512 o[16];   /* o[q] lane r = row rb + r, column p0 + q */
            TEXTOK__T_LD(0) TEXTOK__T_LD(1) TEXTOK__T_LD(2) TEXTOK__T_LD(3) TEXTOK__T_LD(4) TEXTOK__T_LD(5)
            TEXTOK__T_LD(6) TEXTOK__T_LD(7) TEXTOK__T_LD(8) TEXTOK__T_LD(9) TEXTOK__T_LD(10) TEXTOK__T_LD(11)
            TEXTOK__T_LD(12) TEXTOK__T_LD(13) TEXTOK__T_LD(14) TEXTOK__T_LD(15)
            for (i = 0; i < nv && p0 + TEXTOK__GEMM_PF < kc; i++)   /* 16 strided streams: prefetchers miss them */
                _mm_prefetch((const char *)(src + (rb + i) * ld + p0 + TEXTOK__GEMM_PF), _MM_HINT_T0);
            {
                TEXTOK__T_UNPS(0, 1) TEXTOK__T_UNPS(2, 3) TEXTOK__T_UNPS(4, 5) TEXTOK__T_UNPS(6, 7)
                TEXTOK__T_UNPS(8, 9) TEXTOK__T_UNPS(10, 11) TEXTOK__T_UNPS(12, 13) TEXTOK__T_UNPS(14, 15)
                {   /* u[4i + e]: element 4L + e of rows 4i..4i+3, in 128-bit lane L */
                    TEXTOK__T_UNPD(0, 1, 2, 3) TEXTOK__T_UNPD(4, 5, 6, 7) TEXTOK__T_UNPD(8, 9, 10, 11) TEXTOK__T_UNPD(12, 13, 14, 15)
                    TEXTOK__T_LANES(0, 4, 8, 12) TEXTOK__T_LANES(1, 5, 9, 13) TEXTOK__T_LANES(2, 6, 10, 14) TEXTOK__T_LANES(3, 7, 11, 15)
                }
            }
            if (lanes == 16 || p0 + np < kc)   /* whole stores, in order (masked ones are slow on
                                                  some CPUs): each one's spill past the R lanes is
                                                  overwritten by the next; the last block is masked */
                for (i = 0; i < np; i++) _mm512_storeu_ps(dst + (size_t)(p0 + i) * R + rb, o[i]);
            else
                for (i = 0; i < np; i++) _mm512_mask_storeu_ps(dst + (size_t)(p0 + i) * R + rb, ml, o[i]);
        }
    }
}

/* AVX2 + FMA, 6 x 16 (12 of the 16 ymm registers), the same structure. */
#define TEXTOK__ROWS6(X) X(0) X(1) X(2) X(3) X(4) X(5)
#define TEXTOK__Y_DECL(r) __m256 c##r##a = _mm256_setzero_ps(), c##r##b = _mm256_setzero_ps();
#define TEXTOK__Y_FMA(r) { __m256 ar = _mm256_broadcast_ss(a + (r));                              \
                           c##r##a = _mm256_fmadd_ps(ar, b0, c##r##a); c##r##b = _mm256_fmadd_ps(ar, b1, c##r##b); }
#define TEXTOK__Y_STORE(r) if ((r) < mr) {                                                          \
        float *cr = c + (r) * ldc;                                                                  \
        __m256 v0 = _mm256_mul_ps(va, c##r##a), v1 = _mm256_mul_ps(va, c##r##b);                    \
        if (!first || beta != 0.0f) {                                                               \
            __m256 o0 = _mm256_maskload_ps(cr, m0), o1 = _mm256_maskload_ps(cr + 8, m1);            \
            if (first) { o0 = _mm256_mul_ps(vb, o0); o1 = _mm256_mul_ps(vb, o1); }                 \
            v0 = _mm256_add_ps(o0, v0); v1 = _mm256_add_ps(o1, v1);                                 \
        }                                                                                           \
        _mm256_maskstore_ps(cr, m0, v0); _mm256_maskstore_ps(cr + 8, m1, v1);                       \
    }
TEXTOK__AVX2 static void textok__uk_avx2(int kc, const float *a, const float *b, float *c, ptrdiff_t ldc,
                                         int mr, int nr, float alpha, float beta, int first)
{
    __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(nr), lane);        /* lane < nr */
    __m256i m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(nr - 8), lane);
    __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
    int p;
    TEXTOK__ROWS6(TEXTOK__Y_DECL)
    for (p = 0; p < kc; p++) {
        __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
        TEXTOK__ROWS6(TEXTOK__Y_FMA)
        a += 6;
        b += 16;
    }
    TEXTOK__ROWS6(TEXTOK__Y_STORE)
}

typedef struct textok__gemm_level { int mr, nr; textok__ukernel uk; textok__packer pack_rows; } textok__gemm_level;

/* One task, one KC block: C[i0:i1, j0:j1] (j1 - j0 <= NC) gets op(A)[., k0:k0+kc] .
   op(B)[k0:k0+kc, .]. Both operands are packed (A a panel of MR rows at a time, so it sits in L1
   and never aliases in it, whatever lda is). */
static void textok__gemm_simd_tile(const textok__gemm_level *L, int ta, int tb, int i0, int i1, int j0, int j1,
                                   int k0, int K, float alpha, const float *A, int lda, const float *B, int ldb,
                                   float beta, float *C, int ldc)
{
    float bp[TEXTOK__GEMM_KC * TEXTOK__GEMM_NC] __attribute__((aligned(64)));
    float ap[TEXTOK__GEMM_MR_MAX * TEXTOK__GEMM_KC] __attribute__((aligned(64)));
    int MR = L->mr, NR = L->nr, nc = j1 - j0, i, jb;
    int kc = K - k0 < TEXTOK__GEMM_KC ? K - k0 : TEXTOK__GEMM_KC;
    for (jb = 0; jb < nc; jb += NR) {   /* op(B)[k0:k0+kc, j0+jb : +NR] */
        int nr = nc - jb < NR ? nc - jb : NR;
        if (tb) L->pack_rows(B + (size_t)(j0 + jb) * ldb + k0, ldb, nr, kc, NR, bp + (size_t)jb * kc);
        else    textok__pack_cols(B + (size_t)k0 * ldb + j0 + jb, ldb, nr, kc, NR, bp + (size_t)jb * kc);
    }
    for (i = i0; i < i1; i += MR) {   /* op(A)[i : i+MR, k0:k0+kc] */
        int mr = i1 - i < MR ? i1 - i : MR;
        if (ta) textok__pack_cols(A + (size_t)k0 * lda + i, lda, mr, kc, MR, ap);
        else    L->pack_rows(A + (size_t)i * lda + k0, lda, mr, kc, MR, ap);
        if (!ta && i + MR < i1) {   /* the next panel's rows into L2 while this one computes: MR
                                       strided rows are a pattern the hardware prefetchers miss */
            int r, p, rn = i1 - i - MR < MR ? i1 - i - MR : MR;
            for (r = 0; r < rn; r++)
                for (p = 0; p < kc; p += 16)
                    _mm_prefetch((const char *)(A + (size_t)(i + MR + r) * lda + k0 + p), _MM_HINT_T1);
        }
        for (jb = 0; jb < nc; jb += NR)
            L->uk(kc, ap, bp + (size_t)jb * kc, C + (size_t)i * ldc + j0 + jb, ldc, mr,
                  nc - jb < NR ? nc - jb : NR, alpha, beta, k0 == 0);
    }
}

/* Work unit u: row block u / ng (MB rows), column blocks [c0, c1) of group u % ng (gs blocks of
   NC); KC blocks in order, and inside each the unit's column blocks. */
static void textok__gemm_simd_unit(const textok__gemm_level *L, int ta, int tb, int u, int ng, int gs, int nb,
                                   int MB, int M, int N, int K, float alpha, const float *A, int lda,
                                   const float *B, int ldb, float beta, float *C, int ldc)
{
    int i0 = (u / ng) * MB, i1 = i0 + MB < M ? i0 + MB : M;
    int c0 = (u % ng) * gs, c1 = c0 + gs < nb ? c0 + gs : nb, k0, cb;
    for (k0 = 0; k0 < K; k0 += TEXTOK__GEMM_KC)
        for (cb = c0; cb < c1; cb++)
            textok__gemm_simd_tile(L, ta, tb, i0, i1, cb * TEXTOK__GEMM_NC,
                                   (cb + 1) * TEXTOK__GEMM_NC < N ? (cb + 1) * TEXTOK__GEMM_NC : N,
                                   k0, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

static int textok__cpu_has(int kind)
{
    __builtin_cpu_init();
    if (kind == TEXTOK__GEMM_AVX512) return __builtin_cpu_supports("avx512f") != 0;
    if (kind == TEXTOK__GEMM_AVX2) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    return 0;
}
#else
static int textok__cpu_has(int kind) { (void)kind; return 0; }
#endif /* TEXTOK__X86_SIMD */

static int textok__gemm_kind_ok(int kind)
{
    if (kind == TEXTOK__GEMM_PORTABLE) return 1;
#ifdef TEXTOK_USE_BLAS
    if (kind == TEXTOK__GEMM_BLAS) return 1;
#endif
    return textok__cpu_has(kind);
}

/* The GEMM for a kernel table: `want` ("portable", "blas", "avx2", "avx512"; NULL or "" = best)
   if this build and CPU have it, else the next one down; best (also for an unknown name) = the
   widest SIMD, else BLAS, else portable. */
static int textok__gemm_pick(const char *want)
{
    int kind = TEXTOK__GEMM_NKINDS - 1, i;
    for (i = 0; want && i < TEXTOK__GEMM_NKINDS; i++)
        if (!strcmp(want, textok__gemm_kind_name[i])) kind = i;
    while (kind > 0 && !textok__gemm_kind_ok(kind)) kind--;
    return kind;
}

/* C = alpha op(A) op(B) + beta C at level `kind` on up to n_threads threads (1: the calling
   thread only, no OpenMP region at all). */
static void textok__gemm_run(int kind, int n_threads, int ta, int tb, int M, int N, int K, float alpha,
                             const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
    (void)kind;   /* a build with neither SIMD nor BLAS has one level */
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {   /* nothing to multiply: C = beta * C */
        int i, j;
        for (i = 0; i < M; i++)
            for (j = 0; j < N; j++)
                C[(size_t)i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[(size_t)i * ldc + j];
        return;
    }
#ifdef TEXTOK_USE_BLAS
    if (kind == TEXTOK__GEMM_BLAS) {
        cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                    M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
#endif
#ifdef TEXTOK__X86_SIMD
    if (kind == TEXTOK__GEMM_AVX512 || kind == TEXTOK__GEMM_AVX2) {
        static const textok__gemm_level l512 = { 14, 32, textok__uk_avx512, textok__pack_rows_avx512 };
        static const textok__gemm_level l256 = { 6, 16, textok__uk_avx2, textok__pack_rows };
        const textok__gemm_level *L = kind == TEXTOK__GEMM_AVX512 ? &l512 : &l256;
        /* Work units: (row block, group of NC-wide column blocks). A unit runs its KC blocks in
           order and, inside each, its column blocks, so the MB x KC slice of A it packs again for
           every column block is still in L2. Columns are split first (free); rows (multiples of
           MR, at most MC) only as the threads need or the cap says, since every row block packs
           its own copy of op(B). About 2 units per thread, taken dynamically, no barriers. */
        int nb = (N + TEXTOK__GEMM_NC - 1) / TEXTOK__GEMM_NC, mc = TEXTOK__GEMM_MC / L->mr * L->mr;
        int want = n_threads > 1 && (double)M * N * K >= 2e5 ? 2 * n_threads : 1;
        int ng = nb < want ? nb : want, gs, mb = (M + mc - 1) / mc, MB, nunits, u;
        if (mb * ng < want) {
            int most = M / (4 * L->mr) > 1 ? M / (4 * L->mr) : 1;
            mb = (want + ng - 1) / ng < most ? (want + ng - 1) / ng : most;
            if (mb < (M + mc - 1) / mc) mb = (M + mc - 1) / mc;
        }
        MB = ((M + mb - 1) / mb + L->mr - 1) / L->mr * L->mr;
        mb = (M + MB - 1) / MB;
        gs = (nb + ng - 1) / ng;
        ng = (nb + gs - 1) / gs;
        nunits = mb * ng;
        if (want == 1 || nunits == 1) {   /* the calling thread only: no OpenMP region at all */
            for (u = 0; u < nunits; u++)
                textok__gemm_simd_unit(L, ta, tb, u, ng, gs, nb, MB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        } else {
TEXTOK__OMP(omp parallel for schedule(dynamic, 1) num_threads(n_threads))
            for (u = 0; u < nunits; u++)
                textok__gemm_simd_unit(L, ta, tb, u, ng, gs, nb, MB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        }
        return;
    }
#endif
    textok__gemm_blocked(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, n_threads);
}

/* The same product on the calling thread only: safe inside an OpenMP parallel region (fused
   attention and tiled convolutions call it from their own parallel loops), and from several
   threads at once. No allocation: the packing buffers (about 210 KiB) are on the stack.
   Deterministic: the sum for each element of C runs in the same order as in textok__gemm at
   the same level. */
/* The CPU fast tables point k->state at one of these: the table's GEMM level. */
static const int textok__gemm_kinds[TEXTOK__GEMM_NKINDS] = { TEXTOK__GEMM_PORTABLE, TEXTOK__GEMM_BLAS,
                                                             TEXTOK__GEMM_AVX2, TEXTOK__GEMM_AVX512 };
static int textok__gemm_kind_of(const textok_kernels *k)
{
    return k && k->state ? *(const int *)k->state : textok__gemm_pick(NULL);
}

/* The level textok__gemm_serial runs at: the table's, except that a "blas" table runs the best
   SIMD level this CPU has (else portable) there: BLAS brings its own threads, and these calls
   come from inside our parallel loops. */
static int textok__gemm_serial_kind(const textok_kernels *k)
{
    int kind = textok__gemm_kind_of(k);
    if (kind == TEXTOK__GEMM_BLAS) kind = textok__gemm_pick(NULL);
    return kind == TEXTOK__GEMM_BLAS ? TEXTOK__GEMM_PORTABLE : kind;
}

static void textok__gemm_serial(const textok_kernels *k, int ta, int tb, int M, int N, int K, float alpha,
                                const float *A, int lda, const float *B, int ldb,
                                float beta, float *C, int ldc)
{
    textok__gemm_run(textok__gemm_serial_kind(k), 1, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

/* The GEMM the fast kernels use: the table's level and threads. Must not be called from inside
   an OpenMP parallel region (BLAS has its own threads; use textok__gemm_serial there). */
static void textok__gemm(const textok_kernels *k, int ta, int tb, int M, int N, int K, float alpha,
                         const float *A, int lda, const float *B, int ldb,
                         float beta, float *C, int ldc)
{
#ifdef _OPENMP
    TEXTOK_ASSERT(!omp_in_parallel());
#endif
    textok__gemm_run(textok__gemm_kind_of(k), textok__nt(k), ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

TEXTOKDEF void textok_cpu_gemm(const textok_kernels *k, int trans_a, int trans_b, int M, int N, int K, float alpha,
                               const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
    textok__gemm(k, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

/* ---------------------------------------------------------------------------------------------
   5. Kernels. For each op: the naive reference (suffix _ref: plain loops, one thread, sums in
   double) and the fast version beside it (no suffix: GEMM, threads). Where an op is a single
   pass over memory there is nothing to make fast beyond threads, and the one function serves
   both tables (said at the spot). Dims letters: see the top of the file. */


/* ----- matmul ------------------------------------------------------------------------------- */
/* out[b] (M,N) = op(a[b]) . op(b[b]) + bias. Index helpers for the reference: */
/* offset of op(A)[i][p] in A and of op(B)[p][j] in B */
#define TEXTOK__AI(d, i, p) ((d)->trans_a ? (size_t)(p) * (d)->M + (i) : (size_t)(i) * (d)->K + (p))
#define TEXTOK__BI(d, p, j) ((d)->trans_b ? (size_t)(j) * (d)->K + (p) : (size_t)(p) * (d)->N + (j))

static void textok__matmul_forward_ref(const textok_kernels *k, float *out, const float *a,
                                       const float *b, const float *bias, const textok_matmul_dims *d)
{
    size_t sa = (size_t)d->M * d->K, sb = (size_t)d->K * d->N, so = (size_t)d->M * d->N;
    int bt, i, j, p;
    (void)k;
    for (bt = 0; bt < d->batch; bt++) {
        const float *a_b = a + bt * sa, *b_b = b + bt * sb;
        float *out_b = out + bt * so;
        for (i = 0; i < d->M; i++)
            for (j = 0; j < d->N; j++) {
                double acc = bias ? bias[j] : 0.0;
                for (p = 0; p < d->K; p++) acc += (double)a_b[TEXTOK__AI(d, i, p)] * b_b[TEXTOK__BI(d, p, j)];
                out_b[(size_t)i * d->N + j] = (float)acc;
            }
    }
}

static void textok__matmul_forward(const textok_kernels *k, float *out, const float *a,
                                   const float *b, const float *bias, const textok_matmul_dims *d)
{
    size_t sa = (size_t)d->M * d->K, sb = (size_t)d->K * d->N, so = (size_t)d->M * d->N;
    int bt, i;
    int lda = d->trans_a ? d->M : d->K, ldb = d->trans_b ? d->K : d->N;
    for (bt = 0; bt < d->batch; bt++) {
        float *out_b = out + bt * so;
        if (bias) for (i = 0; i < d->M; i++) memcpy(out_b + (size_t)i * d->N, bias, (size_t)d->N * sizeof(float));
        textok__gemm(k, d->trans_a, d->trans_b, d->M, d->N, d->K, 1.0f, a + bt * sa, lda,
                     b + bt * sb, ldb, bias ? 1.0f : 0.0f, out_b, d->N);
    }
}

/* dop(A) = dout . op(B)^T,  dop(B) = op(A)^T . dout,  dbias = sum of dout over batch and rows */
static void textok__matmul_backward_ref(const textok_kernels *k, float *da, float *db, float *dbias,
                                        const float *dout, const float *a, const float *b,
                                        const textok_matmul_dims *d)
{
    size_t sa = (size_t)d->M * d->K, sb = (size_t)d->K * d->N, so = (size_t)d->M * d->N;
    int bt, i, j, p;
    (void)k;
    for (bt = 0; bt < d->batch; bt++) {
        const float *a_b = a + bt * sa, *b_b = b + bt * sb, *dout_b = dout + bt * so;
        if (da) {
            float *da_b = da + bt * sa;
            for (i = 0; i < d->M; i++)
                for (p = 0; p < d->K; p++) {
                    double acc = 0.0;
                    for (j = 0; j < d->N; j++) acc += (double)dout_b[(size_t)i * d->N + j] * b_b[TEXTOK__BI(d, p, j)];
                    da_b[TEXTOK__AI(d, i, p)] += (float)acc;
                }
        }
        if (db) {
            float *db_b = db + bt * sb;
            for (p = 0; p < d->K; p++)
                for (j = 0; j < d->N; j++) {
                    double acc = 0.0;
                    for (i = 0; i < d->M; i++) acc += (double)a_b[TEXTOK__AI(d, i, p)] * dout_b[(size_t)i * d->N + j];
                    db_b[TEXTOK__BI(d, p, j)] += (float)acc;
                }
        }
    }
    if (dbias)
        for (j = 0; j < d->N; j++) {
            double acc = 0.0;
            for (bt = 0; bt < d->batch; bt++)
                for (i = 0; i < d->M; i++) acc += dout[bt * so + (size_t)i * d->N + j];
            dbias[j] += (float)acc;
        }
}

/* Sum the rows of x (rows, cols) into acc (cols), accumulating. Threads over column chunks so
   that each output is summed by one thread, rows in order: deterministic for any thread count. */
static void textok__sum_rows(const textok_kernels *k, float *acc, const float *x, size_t rows, int cols)
{
    int c0;
TEXTOK__PARALLEL_FOR(k, rows * (size_t)cols > 65536)
    for (c0 = 0; c0 < cols; c0 += 64) {
        double s[64];
        int c1 = c0 + 64 < cols ? c0 + 64 : cols, c;
        size_t r;
        for (c = c0; c < c1; c++) s[c - c0] = 0.0;
        for (r = 0; r < rows; r++) {
            const float *xr = x + r * cols;
            for (c = c0; c < c1; c++) s[c - c0] += xr[c];
        }
        for (c = c0; c < c1; c++) acc[c] += (float)s[c - c0];
    }
}

static void textok__matmul_backward(const textok_kernels *k, float *da, float *db, float *dbias,
                                    const float *dout, const float *a, const float *b,
                                    const textok_matmul_dims *d)
{
    size_t sa = (size_t)d->M * d->K, sb = (size_t)d->K * d->N, so = (size_t)d->M * d->N;
    int bt, M = d->M, N = d->N, K = d->K, ta = d->trans_a, tb = d->trans_b;
    int lda = ta ? M : K, ldb = tb ? K : N;
    for (bt = 0; bt < d->batch; bt++) {
        const float *a_b = a + bt * sa, *b_b = b + bt * sb, *dout_b = dout + bt * so;
        if (da) {
            if (!ta) textok__gemm(k, 0, !tb, M, K, N, 1.0f, dout_b, N, b_b, ldb, 1.0f, da + bt * sa, K);   /* (M,K) */
            else     textok__gemm(k, tb, 1, K, M, N, 1.0f, b_b, ldb, dout_b, N, 1.0f, da + bt * sa, M);    /* (K,M) */
        }
        if (db) {
            if (!tb) textok__gemm(k, !ta, 0, K, N, M, 1.0f, a_b, lda, dout_b, N, 1.0f, db + bt * sb, N);   /* (K,N) */
            else     textok__gemm(k, 1, ta, N, K, M, 1.0f, dout_b, N, a_b, lda, 1.0f, db + bt * sb, K);    /* (N,K) */
        }
    }
    if (dbias) textok__sum_rows(k, dbias, dout, (size_t)d->batch * M, N);
}

/* ----- layernorm ---------------------------------------------------------------------------- */
/* out = (x - mean) * rstd * weight + bias over the last dim; rstd = 1/sqrt(biased var + eps).
   The same code serves both tables: one pass per row, rows in parallel (the reference runs it
   with one thread). Statistics in double: matches PyTorch to ~1e-7 even for large means. */
static void textok__layernorm_forward(const textok_kernels *k, float *out, float *mean, float *rstd,
                                      const float *inp, const float *weight, const float *bias,
                                      int N, int C, float eps)
{
    int n;
TEXTOK__PARALLEL_FOR(k, (size_t)N * C > 16384)
    for (n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        float *o = out + (size_t)n * C;
        double m = 0.0, v = 0.0;
        float mf, sf;
        int c;
        for (c = 0; c < C; c++) m += x[c];
        m /= C;
        for (c = 0; c < C; c++) v += (x[c] - m) * (x[c] - m);
        v /= C;
        mf = (float)m;
        sf = (float)(1.0 / sqrt(v + eps));
        for (c = 0; c < C; c++) {
            float y = (x[c] - mf) * sf;
            o[c] = weight ? y * weight[c] + (bias ? bias[c] : 0.0f) : y;
        }
        if (mean) mean[n] = mf;
        if (rstd) rstd[n] = sf;
    }
}

/* dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) with g = dout * weight;
   dweight += sum_n dout * xhat; dbias += sum_n dout. */
static void textok__layernorm_backward(const textok_kernels *k, float *dinp, float *dweight,
                                       float *dbias, const float *dout, const float *inp,
                                       const float *weight, const float *mean, const float *rstd,
                                       int N, int C)
{
    int n, c0;
    if (dinp) {
TEXTOK__PARALLEL_FOR(k, (size_t)N * C > 16384)
        for (n = 0; n < N; n++) {
            const float *x = inp + (size_t)n * C, *dy = dout + (size_t)n * C;
            float *dx = dinp + (size_t)n * C;
            double sg = 0.0, sgx = 0.0, mg, mgx;
            int c;
            for (c = 0; c < C; c++) {
                double g = (double)dy[c] * (weight ? weight[c] : 1.0f);
                sg += g;
                sgx += g * ((x[c] - mean[n]) * rstd[n]);
            }
            mg = sg / C;
            mgx = sgx / C;
            for (c = 0; c < C; c++) {
                double g = (double)dy[c] * (weight ? weight[c] : 1.0f);
                double xhat = (x[c] - mean[n]) * rstd[n];
                dx[c] += (float)(rstd[n] * (g - mg - xhat * mgx));
            }
        }
    }
    if (!dweight && !dbias) return;
TEXTOK__PARALLEL_FOR(k, (size_t)N * C > 16384)
    for (c0 = 0; c0 < C; c0 += 64) {
        double sw[64], sb[64];
        int c1 = c0 + 64 < C ? c0 + 64 : C, c, r;
        for (c = c0; c < c1; c++) sw[c - c0] = sb[c - c0] = 0.0;
        for (r = 0; r < N; r++) {
            const float *x = inp + (size_t)r * C, *dy = dout + (size_t)r * C;
            for (c = c0; c < c1; c++) {
                sw[c - c0] += (double)dy[c] * ((x[c] - mean[r]) * rstd[r]);
                sb[c - c0] += dy[c];
            }
        }
        for (c = c0; c < c1; c++) {
            if (dweight) dweight[c] += (float)sw[c - c0];
            if (dbias) dbias[c] += (float)sb[c - c0];
        }
    }
}

/* ----- RMSNorm (T5) ------------------------------------------------------------------------- */
/* out = x * rstd * weight, rstd = 1/sqrt(mean(x^2) + eps). One function for both tables. */
static void textok__rmsnorm_forward(const textok_kernels *k, float *out, float *rstd, const float *inp,
                                    const float *weight, int N, int C, float eps)
{
    int n;
TEXTOK__PARALLEL_FOR(k, (size_t)N * C > 16384)
    for (n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        float *o = out + (size_t)n * C;
        double ss = 0.0;
        float r;
        int c;
        for (c = 0; c < C; c++) ss += (double)x[c] * x[c];
        r = (float)(1.0 / sqrt(ss / C + eps));
        for (c = 0; c < C; c++) o[c] = x[c] * r * (weight ? weight[c] : 1.0f);
        if (rstd) rstd[n] = r;
    }
}

/* dx = rstd * (g - x * rstd^2 * mean(g * x)) with g = dout * weight; dweight += sum dout*x*rstd */
static void textok__rmsnorm_backward(const textok_kernels *k, float *dinp, float *dweight,
                                     const float *dout, const float *inp, const float *weight,
                                     const float *rstd, int N, int C)
{
    int n, c0;
    if (dinp) {
TEXTOK__PARALLEL_FOR(k, (size_t)N * C > 16384)
        for (n = 0; n < N; n++) {
            const float *x = inp + (size_t)n * C, *dy = dout + (size_t)n * C;
            float *dx = dinp + (size_t)n * C;
            double sgx = 0.0, r = rstd[n], coef;
            int c;
            for (c = 0; c < C; c++) sgx += (double)dy[c] * (weight ? weight[c] : 1.0f) * x[c];
            coef = r * r * sgx / C;
            for (c = 0; c < C; c++) {
                double g = (double)dy[c] * (weight ? weight[c] : 1.0f);
                dx[c] += (float)(r * (g - x[c] * coef));
            }
        }
    }
    if (!dweight) return;
TEXTOK__PARALLEL_FOR(k, (size_t)N * C > 16384)
    for (c0 = 0; c0 < C; c0 += 64) {
        double sw[64];
        int c1 = c0 + 64 < C ? c0 + 64 : C, c, r;
        for (c = c0; c < c1; c++) sw[c - c0] = 0.0;
        for (r = 0; r < N; r++) {
            const float *x = inp + (size_t)r * C, *dy = dout + (size_t)r * C;
            for (c = c0; c < c1; c++) sw[c - c0] += (double)dy[c] * x[c] * rstd[r];
        }
        for (c = c0; c < c1; c++) dweight[c] += (float)sw[c - c0];
    }
}

/* ----- GELU, SiLU --------------------------------------------------------------------------- */
/* Pointwise: one function for both tables. GELU erf: x/2 (1 + erf(x/sqrt2)).
   tanh form: x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). */
#define TEXTOK__SQRT_2_OVER_PI 0.7978845608028654f
#define TEXTOK__INV_SQRT_2     0.7071067811865476f
#define TEXTOK__INV_SQRT_2PI   0.3989422804014327f

static void textok__gelu_forward_ref(const textok_kernels *k, float *out, const float *inp, size_t n,
                                     int approx_tanh)
{
    long i, nn = (long)n;
TEXTOK__PARALLEL_FOR(k, n > 65536)
    for (i = 0; i < nn; i++) {
        float x = inp[i];
        out[i] = approx_tanh
            ? 0.5f * x * (1.0f + tanhf(TEXTOK__SQRT_2_OVER_PI * (x + 0.044715f * x * x * x)))
            : 0.5f * x * (1.0f + erff(x * TEXTOK__INV_SQRT_2));
    }
}

static void textok__gelu_backward_ref(const textok_kernels *k, float *dinp, const float *dout,
                                      const float *inp, size_t n, int approx_tanh)
{
    long i, nn = (long)n;
TEXTOK__PARALLEL_FOR(k, n > 65536)
    for (i = 0; i < nn; i++) {
        float x = inp[i], g;
        if (approx_tanh) {
            float u = TEXTOK__SQRT_2_OVER_PI * (x + 0.044715f * x * x * x);
            float t = tanhf(u);
            g = 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * TEXTOK__SQRT_2_OVER_PI * (1.0f + 3.0f * 0.044715f * x * x);
        } else {
            g = 0.5f * (1.0f + erff(x * TEXTOK__INV_SQRT_2)) + x * TEXTOK__INV_SQRT_2PI * expf(-0.5f * x * x);
        }
        dinp[i] += dout[i] * g;
    }
}

/* Fast: the tanh form through 1/2 (1 + tanh(u)) = sigmoid(2u), so GELU = x / (1 + e^(-2u)): one
   expf instead of tanhf (tanhf was 17 % of a DiT-B sampling step), and no cancellation in
   1 + tanh(u) for negative x. The erf form is as in the reference. */
static void textok__gelu_forward(const textok_kernels *k, float *out, const float *inp, size_t n,
                                 int approx_tanh)
{
    long i, nn = (long)n;
    if (!approx_tanh) { textok__gelu_forward_ref(k, out, inp, n, 0); return; }
TEXTOK__PARALLEL_FOR(k, n > 65536)
    for (i = 0; i < nn; i++) {
        float x = inp[i];
        out[i] = x / (1.0f + expf(-2.0f * TEXTOK__SQRT_2_OVER_PI * (x + 0.044715f * x * x * x)));
    }
}

/* d/dx x s(2u) = s + 2 x s (1 - s) u',  u' = sqrt(2/pi) (1 + 3 0.044715 x^2) */
static void textok__gelu_backward(const textok_kernels *k, float *dinp, const float *dout,
                                  const float *inp, size_t n, int approx_tanh)
{
    long i, nn = (long)n;
    if (!approx_tanh) { textok__gelu_backward_ref(k, dinp, dout, inp, n, 0); return; }
TEXTOK__PARALLEL_FOR(k, n > 65536)
    for (i = 0; i < nn; i++) {
        float x = inp[i];
        float sg = 1.0f / (1.0f + expf(-2.0f * TEXTOK__SQRT_2_OVER_PI * (x + 0.044715f * x * x * x)));
        dinp[i] += dout[i] * (sg + 2.0f * x * sg * (1.0f - sg) * TEXTOK__SQRT_2_OVER_PI * (1.0f + 3.0f * 0.044715f * x * x));
    }
}

/* SiLU: x * sigmoid(x); derivative s * (1 + x (1 - s)). */
static void textok__silu_forward(const textok_kernels *k, float *out, const float *inp, size_t n)
{
    long i, nn = (long)n;
TEXTOK__PARALLEL_FOR(k, n > 65536)
    for (i = 0; i < nn; i++) out[i] = inp[i] / (1.0f + expf(-inp[i]));
}

static void textok__silu_backward(const textok_kernels *k, float *dinp, const float *dout,
                                  const float *inp, size_t n)
{
    long i, nn = (long)n;
TEXTOK__PARALLEL_FOR(k, n > 65536)
    for (i = 0; i < nn; i++) {
        float s = 1.0f / (1.0f + expf(-inp[i]));
        dinp[i] += dout[i] * s * (1.0f + inp[i] * (1.0f - s));
    }
}

/* ----- softmax ------------------------------------------------------------------------------ */
/* Row softmax, max subtracted (as PyTorch). One function for both tables. */
static void textok__softmax_row(float *o, const float *x, int cols)
{
    float m = -FLT_MAX;
    double s = 0.0;
    int c;
    for (c = 0; c < cols; c++) m = x[c] > m ? x[c] : m;
    for (c = 0; c < cols; c++) { o[c] = expf(x[c] - m); s += o[c]; }
    for (c = 0; c < cols; c++) o[c] = (float)(o[c] / s);
}

static void textok__softmax_forward(const textok_kernels *k, float *out, const float *inp, int rows, int cols)
{
    int r;
TEXTOK__PARALLEL_FOR(k, (size_t)rows * cols > 16384)
    for (r = 0; r < rows; r++) textok__softmax_row(out + (size_t)r * cols, inp + (size_t)r * cols, cols);
}

/* dx = y * (dy - sum(dy * y)) */
static void textok__softmax_backward(const textok_kernels *k, float *dinp, const float *dout,
                                     const float *out, int rows, int cols)
{
    int r;
TEXTOK__PARALLEL_FOR(k, (size_t)rows * cols > 16384)
    for (r = 0; r < rows; r++) {
        const float *y = out + (size_t)r * cols, *dy = dout + (size_t)r * cols;
        float *dx = dinp + (size_t)r * cols;
        double s = 0.0;
        int c;
        for (c = 0; c < cols; c++) s += (double)dy[c] * y[c];
        for (c = 0; c < cols; c++) dx[c] += y[c] * (dy[c] - (float)s);
    }
}

/* ----- multi-head attention ----------------------------------------------------------------- */
/* For each batch b, head h and query i:
     s_j   = scale * q_i . key_j + bias[h,i,j]     over keys j with key_mask[b,j] != 0
     lse_i = log sum_j exp(s_j),  p_j = exp(s_j - lse_i),  out_i = sum_j p_j v_j
   Backward recomputes p from lse (nothing of size Tq x Tk is kept between the passes):
     dv_j += p_j dout_i;  dp_j = dout_i . v_j;  ds_j = p_j (dp_j - dout_i . out_i)
     dq_i += scale sum_j ds_j key_j;  dkey_j += scale ds_j q_i;  dbias[h,i,j] += ds_j
   A query with every key masked has out = 0 and lse = 0, and gets no gradient. */

static int textok__any_key(const unsigned char *key_mask, int b, int Tk)
{
    int j;
    if (!key_mask) return 1;
    for (j = 0; j < Tk; j++) if (key_mask[(size_t)b * Tk + j]) return 1;
    return 0;
}

/* Reference: one query row at a time, work holds that row's scores (Tk floats). */
static void textok__attention_forward_ref(const textok_kernels *k, float *out, float *lse,
                                          const float *q, const float *key, const float *v,
                                          const float *bias, const unsigned char *key_mask,
                                          const textok_attention_dims *d, float *work)
{
    int B = d->B, Tq = d->Tq, Tk = d->Tk, C = d->C, H = d->H, hd = C / H, b, h, i, j, c;
    (void)k;
    for (b = 0; b < B; b++)
        for (h = 0; h < H; h++)
            for (i = 0; i < Tq; i++) {
                const float *q_i = q + ((size_t)b * Tq + i) * C + h * hd;
                float *o_i = out + ((size_t)b * Tq + i) * C + h * hd;
                double m = -DBL_MAX, s = 0.0;
                for (c = 0; c < hd; c++) o_i[c] = 0.0f;
                lse[((size_t)b * H + h) * Tq + i] = 0.0f;
                if (!textok__any_key(key_mask, b, Tk)) continue;
                for (j = 0; j < Tk; j++) {
                    const float *k_j = key + ((size_t)b * Tk + j) * C + h * hd;
                    double dot = 0.0;
                    if (key_mask && !key_mask[(size_t)b * Tk + j]) continue;
                    for (c = 0; c < hd; c++) dot += (double)q_i[c] * k_j[c];
                    work[j] = (float)(d->scale * dot + (bias ? bias[((size_t)h * Tq + i) * Tk + j] : 0.0f));
                    if (work[j] > m) m = work[j];
                }
                for (j = 0; j < Tk; j++)
                    if (!key_mask || key_mask[(size_t)b * Tk + j]) s += exp(work[j] - m);
                lse[((size_t)b * H + h) * Tq + i] = (float)(m + log(s));
                for (c = 0; c < hd; c++) {
                    double acc = 0.0;
                    for (j = 0; j < Tk; j++)
                        if (!key_mask || key_mask[(size_t)b * Tk + j])
                            acc += exp(work[j] - m) / s * v[((size_t)b * Tk + j) * C + h * hd + c];
                    o_i[c] = (float)acc;
                }
            }
}

static void textok__attention_backward_ref(const textok_kernels *k, float *dq, float *dkey, float *dv,
                                           float *dbias, const float *dout, const float *q,
                                           const float *key, const float *v, const float *bias,
                                           const unsigned char *key_mask, const float *out,
                                           const float *lse, const textok_attention_dims *d, float *work)
{
    int B = d->B, Tq = d->Tq, Tk = d->Tk, C = d->C, H = d->H, hd = C / H, b, h, i, j, c;
    float *p = work, *ds = work + Tk;   /* one row of probabilities and of score gradients */
    (void)k;
    for (b = 0; b < B; b++)
        for (h = 0; h < H; h++)
            for (i = 0; i < Tq; i++) {
                size_t qi = ((size_t)b * Tq + i) * C + h * hd;
                double D = 0.0;
                if (!textok__any_key(key_mask, b, Tk)) continue;
                for (c = 0; c < hd; c++) D += (double)dout[qi + c] * out[qi + c];
                for (j = 0; j < Tk; j++) {
                    size_t kj = ((size_t)b * Tk + j) * C + h * hd;
                    double dot = 0.0, dp = 0.0;
                    p[j] = ds[j] = 0.0f;
                    if (key_mask && !key_mask[(size_t)b * Tk + j]) continue;
                    for (c = 0; c < hd; c++) dot += (double)q[qi + c] * key[kj + c];
                    dot = d->scale * dot + (bias ? bias[((size_t)h * Tq + i) * Tk + j] : 0.0f);
                    p[j] = (float)exp(dot - lse[((size_t)b * H + h) * Tq + i]);
                    for (c = 0; c < hd; c++) dp += (double)dout[qi + c] * v[kj + c];
                    ds[j] = (float)(p[j] * (dp - D));
                }
                for (j = 0; j < Tk; j++) {
                    size_t kj = ((size_t)b * Tk + j) * C + h * hd;
                    if (dbias) dbias[((size_t)h * Tq + i) * Tk + j] += ds[j];
                    for (c = 0; c < hd; c++) {
                        if (dv) dv[kj + c] += p[j] * dout[qi + c];
                        if (dkey) dkey[kj + c] += d->scale * ds[j] * q[qi + c];
                    }
                }
                if (dq)
                    for (c = 0; c < hd; c++) {
                        double acc = 0.0;
                        for (j = 0; j < Tk; j++) acc += (double)ds[j] * key[((size_t)b * Tk + j) * C + h * hd + c];
                        dq[qi + c] += (float)(d->scale * acc);
                    }
            }
}

/* Fast: fused, in one parallel loop. Nothing of size Tq x Tk exists: a task's scores live in a
   block of at most TEXTOK__ATT_QB rows in its thread's slot of work, and every product is a
   textok__gemm_serial on strided head slices (leading dimension C), so no head is copied out.
     forward:  tasks are (batch, head, block of queries):
               S = scale Q_blk K^T;  per row: + bias, masked keys -> -inf, e = exp(s - max) in
               place, lse;  out_blk = (E V) / row sums (the division on the head-dim product).
     backward: tasks are (batch, head) - (head) when dbias is wanted, since dbias sums over the
               batch - with the query blocks in order inside, so each dK, dV (and dbias) element
               is summed in an order fixed by the shape alone:
               P = exp(scale Q_blk K^T + bias - lse);  dV += P^T dO_blk;  dP = dO_blk V^T;
               dS = P (dP - D) with D_i = dO_i . out_i;  dQ_blk += scale dS K;  dK += scale dS^T Q_blk.
   Results do not depend on the thread count: a task's sums never cross tasks, and a thread's
   slot is only scratch. work holds TEXTOK__ATT_SLOTS slots (its size cannot depend on the
   thread count, which textok_attention_work_floats does not know), so at most that many
   threads run here. */
#define TEXTOK__ATT_QB 112     /* queries per block */
#define TEXTOK__ATT_SLOTS 32   /* per-thread scratch slots in work, hence the most threads used */

/* row stride of a score block: Tk rounded up to 16 floats (the row loops run 16 lanes wide) */
static int textok__att_ld(int Tk) { return (Tk + 15) / 16 * 16; }
static int textok__att_qb(int Tq) { return Tq < TEXTOK__ATT_QB ? (Tq > 0 ? Tq : 1) : TEXTOK__ATT_QB; }
/* one slot: P and dS blocks (qb, ld), D (qb, rounded to 16 floats); a multiple of 16 floats */
static size_t textok__att_slot(int Tq, int Tk)
{
    size_t qb = (size_t)textok__att_qb(Tq);
    return 2 * qb * (size_t)textok__att_ld(Tk) + (qb + 15) / 16 * 16;
}
/* the first slot starts 64-byte aligned: work may be off by up to 15 floats (16 spare) */
static float *textok__att_slots(float *work)
{
    return work + (16 - (size_t)(((uintptr_t)work / sizeof(float)) % 16)) % 16;
}
/* The reference needs 2 Tk floats; the fast kernels TEXTOK__ATT_SLOTS slots. A function of Tq
   and Tk alone, growing with both: callers size work for their largest shape. */
TEXTOKDEF size_t textok_attention_work_floats(const textok_attention_dims *d)
{
    return 16 + TEXTOK__ATT_SLOTS * textok__att_slot(d->Tq, d->Tk);
}
/* The row work between the products (bias, key mask, softmax or exp, dS), over whole blocks.
   Two versions, picked once per call: plain C (any compiler), and 16-lane vectors written with
   the GCC/clang vector extensions, which each target lowers to its own registers (NEON: four of
   them, AVX2: two, AVX-512: one zmm) - on x86-64 compiled twice, for AVX2+FMA and AVX-512F, and
   chosen with the table's GEMM level (textok__att_rows_pick). Both compute the same thing in the same order
   (sums in 16 lanes, then the lanes as a tree), so the result depends on the shape alone. The
   softmax of a row needs its exp'd scores summed, and exp is most of the row work: here it is
   e^x = 2^n e^r with x = n ln2 + r, |r| <= ln2/2, e^r by the Cephes expf polynomial (about
   1 ulp), 2^n built in the exponent bits; x < -87 (below the smallest normal float, and the
   -inf of a masked key) gives exactly 0. What comes in is <= 0 up to rounding (scores minus
   their max, or minus the row's lse); x is clamped at 88 all the same, so 2^n stays finite. */
#define TEXTOK__EXP_MAGIC 12582912.0f   /* 1.5 * 2^23: x + magic - magic rounds x to an integer */
static float textok__att_exp(float x)
{
    float xc = x < -87.0f ? -87.0f : x > 88.0f ? 88.0f : x;
    float n = (xc * 1.44269504088896341f + TEXTOK__EXP_MAGIC) - TEXTOK__EXP_MAGIC;
    float r = (xc - n * 0.693359375f) + n * 2.12194440e-4f, p, two_n;   /* ln2 in two parts: n*hi is exact */
    int32_t bits = ((int32_t)n + 127) * (1 << 23);
    p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    memcpy(&two_n, &bits, sizeof two_n);
    return x < -87.0f ? 0.0f : p * two_n;
}

/* The 16 lanes of a row's max and sum folded as a tree (8 + 8, 4 + 4, ...): four dependent steps
   instead of fifteen, and the same order in both versions. */
static float textok__max16(float *t)
{
    int w, l;
    for (w = 8; w >= 1; w /= 2)
        for (l = 0; l < w; l++) t[l] = t[l + w] > t[l] ? t[l + w] : t[l];
    return t[0];
}
static float textok__sum16(float *t)
{
    int w, l;
    for (w = 8; w >= 1; w /= 2)
        for (l = 0; l < w; l++) t[l] += t[l + w];
    return t[0];
}

/* Plain C. Forward: each of the n rows of S (row stride ld >= Tk, a multiple of 16) gets + bias
   (row stride Tk) and -inf at masked keys, then becomes exp(s - max), with s[Tk:ld] = 0, and
   rsum[i] = 1 / sum, lse[i] = max + log(sum): the softmax is S * rsum, and the caller scales the
   (n, head dim) product P V by rsum rather than the (n, Tk) block. At least one key is on (the
   caller checked). */
static void textok__att_softmax_rows_c(float *S, int n, int Tk, int ld, const float *bias,
                                       const unsigned char *mask, float *lse, float *rsum)
{
    int i, j, l;
    for (i = 0; i < n; i++) {
        float *s = S + (size_t)i * ld, mx[16], sm[16], m, sum;
        const float *b = bias ? bias + (size_t)i * Tk : NULL;
        for (j = 0; j < Tk; j++) s[j] = (mask && !mask[j]) ? -INFINITY : b ? s[j] + b[j] : s[j];
        for (j = Tk; j < ld; j++) s[j] = -INFINITY;
        for (l = 0; l < 16; l++) { mx[l] = -INFINITY; sm[l] = 0.0f; }
        for (j = 0; j < ld; j += 16)
            for (l = 0; l < 16; l++) mx[l] = s[j + l] > mx[l] ? s[j + l] : mx[l];
        m = textok__max16(mx);
        for (j = 0; j < ld; j += 16)
            for (l = 0; l < 16; l++) { s[j + l] = textok__att_exp(s[j + l] - m); sm[l] += s[j + l]; }
        sum = textok__sum16(sm);
        rsum[i] = 1.0f / sum;
        lse[i] = m + logf(sum);
    }
}

/* Backward, probabilities again: P = exp(S + bias - lse), 0 at masked keys and past Tk. */
static void textok__att_prob_rows_c(float *P, int n, int Tk, int ld, const float *bias,
                                    const unsigned char *mask, const float *lse)
{
    int i, j;
    for (i = 0; i < n; i++) {
        float *p = P + (size_t)i * ld;
        const float *b = bias ? bias + (size_t)i * Tk : NULL;
        for (j = 0; j < Tk; j++) p[j] = (mask && !mask[j]) ? 0.0f : textok__att_exp((b ? p[j] + b[j] : p[j]) - lse[i]);
        for (j = Tk; j < ld; j++) p[j] = 0.0f;
    }
}

/* Backward, score gradients in place: dS = P (dP - D) over the n rows, D (n). */
static void textok__att_dscore_rows_c(float *dS, const float *P, int n, int Tk, int ld, const float *D)
{
    int i, j;
    for (i = 0; i < n; i++) {
        float *ds = dS + (size_t)i * ld;
        const float *p = P + (size_t)i * ld;
        for (j = 0; j < Tk; j++) ds[j] = p[j] * (ds[j] - D[i]);
    }
}

/* Backward, D[i] = dO_i . out_i over the n rows (row stride ld, hd long), in 16 lanes. */
static void textok__att_dot_rows_c(const float *dout, const float *out, int n, int hd, int ld, float *D)
{
    int i, c, l;
    for (i = 0; i < n; i++) {
        const float *dy = dout + (size_t)i * ld, *y = out + (size_t)i * ld;
        float acc[16] = { 0 };
        for (c = 0; c + 16 <= hd; c += 16)
            for (l = 0; l < 16; l++) acc[l] += dy[c + l] * y[c + l];
        for (l = 0; c + l < hd; l++) acc[l] += dy[c + l] * y[c + l];
        D[i] = textok__sum16(acc);
    }
}

#if (defined(__GNUC__) || defined(__clang__)) && !defined(TEXTOK_NO_SIMD)
#define TEXTOK__ATT_VEC 1
typedef float         textok__v16f __attribute__((vector_size(64)));
typedef int32_t       textok__v16i __attribute__((vector_size(64)));
typedef unsigned char textok__v16b __attribute__((vector_size(16)));
/* Helpers as macros and pointer arguments: a vector passed by value to a function compiled for
   the base ISA would draw GCC's -Wpsabi note. v16(a) broadcasts a, given the local zero vector
   `z` in scope. */
#define TEXTOK__INLINE static inline __attribute__((always_inline))
#define TEXTOK__V16(a) (z + (a))
#define TEXTOK__V16_LOAD(v, p) memcpy(&(v), (p), sizeof(textok__v16f))
#define TEXTOK__V16_STORE(p, v) memcpy((p), &(v), sizeof(textok__v16f))
#define TEXTOK__V16_SEL(m, a, b) ((textok__v16f)(((m) & (textok__v16i)(a)) | (~(m) & (textok__v16i)(b))))
/* *x = e^*x */
TEXTOK__INLINE void textok__v16_exp(textok__v16f *x)
{
    const textok__v16f z = { 0 }, x0 = *x;
    textok__v16i small = *x < TEXTOK__V16(-87.0f), nan = *x != *x, bits;
    textok__v16f xc = TEXTOK__V16_SEL(small | nan, TEXTOK__V16(-87.0f), *x), n, r, p;   /* NaN: put back at the end */
    xc = TEXTOK__V16_SEL(xc > TEXTOK__V16(88.0f), TEXTOK__V16(88.0f), xc);
    n = (xc * 1.44269504088896341f + TEXTOK__EXP_MAGIC) - TEXTOK__EXP_MAGIC;
    r = (xc - n * 0.693359375f) + n * 2.12194440e-4f;
    bits = (__builtin_convertvector(n, textok__v16i) + 127) * (1 << 23);
    p = TEXTOK__V16(1.9875691500e-4f);
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    *x = TEXTOK__V16_SEL(nan, x0, (textok__v16f)(~small & (textok__v16i)(p * (textok__v16f)bits)));
}
/* *v = s[0:16] + b[0:16] (b may be NULL), -inf at masked keys (mask may be NULL); a chunk inside
   [0, Tk) */
TEXTOK__INLINE void textok__v16_score(textok__v16f *v, const float *s, const float *b, const unsigned char *mask)
{
    const textok__v16f z = { 0 };
    TEXTOK__V16_LOAD(*v, s);
    if (b) { textok__v16f w; TEXTOK__V16_LOAD(w, b); *v += w; }
    if (mask) {
        textok__v16b mb;
        memcpy(&mb, mask, sizeof mb);
        *v = TEXTOK__V16_SEL(__builtin_convertvector(mb, textok__v16i) == 0, TEXTOK__V16(-INFINITY), *v);
    }
}
TEXTOK__INLINE void textok__att_softmax_rows_body(float *S, int n, int Tk, int ld, const float *bias,
                                                  const unsigned char *mask, float *lse, float *rsum)
{
    const textok__v16f z = { 0 };
    const int Tf = Tk / 16 * 16;   /* full chunks; the rest goes through a padded copy */
    int i, j, l;
    for (i = 0; i < n; i++) {
        float *s = S + (size_t)i * ld, t[16], m, sum;
        const float *b = bias ? bias + (size_t)i * Tk : NULL;
        textok__v16f vm = TEXTOK__V16(-INFINITY), vs = z, v;
        for (j = 0; j < Tf; j += 16) {
            textok__v16_score(&v, s + j, b ? b + j : NULL, mask ? mask + j : NULL);
            if (b || mask) TEXTOK__V16_STORE(s + j, v);
            vm = TEXTOK__V16_SEL(v > vm, v, vm);
        }
        if (Tf < Tk) {
            for (l = 0; l < 16; l++)
                t[l] = Tf + l >= Tk || (mask && !mask[Tf + l]) ? -INFINITY : b ? s[Tf + l] + b[Tf + l] : s[Tf + l];
            TEXTOK__V16_LOAD(v, t);
            TEXTOK__V16_STORE(s + Tf, v);
            vm = TEXTOK__V16_SEL(v > vm, v, vm);
        }
        memcpy(t, &vm, sizeof t);
        m = textok__max16(t);
        for (j = 0; j < ld; j += 16) {
            TEXTOK__V16_LOAD(v, s + j);
            v -= m;
            textok__v16_exp(&v);
            TEXTOK__V16_STORE(s + j, v);
            vs += v;
        }
        memcpy(t, &vs, sizeof t);
        sum = textok__sum16(t);
        rsum[i] = 1.0f / sum;
        lse[i] = m + logf(sum);
    }
}
TEXTOK__INLINE void textok__att_prob_rows_body(float *P, int n, int Tk, int ld, const float *bias,
                                               const unsigned char *mask, const float *lse)
{
    const int Tf = Tk / 16 * 16;
    int i, j, l;
    for (i = 0; i < n; i++) {
        float *p = P + (size_t)i * ld, t[16];
        const float *b = bias ? bias + (size_t)i * Tk : NULL;
        textok__v16f v;
        for (j = 0; j < Tf; j += 16) {
            textok__v16_score(&v, p + j, b ? b + j : NULL, mask ? mask + j : NULL);
            v -= lse[i];
            textok__v16_exp(&v);
            TEXTOK__V16_STORE(p + j, v);
        }
        if (Tf < Tk) {
            for (l = 0; l < 16; l++)
                t[l] = Tf + l >= Tk || (mask && !mask[Tf + l]) ? -INFINITY : b ? p[Tf + l] + b[Tf + l] : p[Tf + l];
            TEXTOK__V16_LOAD(v, t);
            v -= lse[i];
            textok__v16_exp(&v);
            TEXTOK__V16_STORE(p + Tf, v);
        }
    }
}
TEXTOK__INLINE void textok__att_dscore_rows_body(float *dS, const float *P, int n, int Tk, int ld, const float *D)
{
    const int Tf = Tk / 16 * 16;
    int i, j;
    for (i = 0; i < n; i++) {
        float *ds = dS + (size_t)i * ld;
        const float *p = P + (size_t)i * ld;
        textok__v16f vp, vd;
        for (j = 0; j < Tf; j += 16) {
            TEXTOK__V16_LOAD(vp, p + j);
            TEXTOK__V16_LOAD(vd, ds + j);
            vd = vp * (vd - D[i]);
            TEXTOK__V16_STORE(ds + j, vd);
        }
        for (; j < Tk; j++) ds[j] = p[j] * (ds[j] - D[i]);
    }
}
TEXTOK__INLINE void textok__att_dot_rows_body(const float *dout, const float *out, int n, int hd, int ld, float *D)
{
    int i, c, l;
    for (i = 0; i < n; i++) {
        const float *dy = dout + (size_t)i * ld, *y = out + (size_t)i * ld;
        textok__v16f acc = { 0 }, a, b;
        float t[16], u[16];
        for (c = 0; c + 16 <= hd; c += 16) {
            TEXTOK__V16_LOAD(a, dy + c);
            TEXTOK__V16_LOAD(b, y + c);
            acc += a * b;
        }
        if (c < hd) {
            for (l = 0; l < 16; l++) { t[l] = c + l < hd ? dy[c + l] : 0.0f; u[l] = c + l < hd ? y[c + l] : 0.0f; }
            TEXTOK__V16_LOAD(a, t);
            TEXTOK__V16_LOAD(b, u);
            acc += a * b;
        }
        memcpy(t, &acc, sizeof t);
        D[i] = textok__sum16(t);
    }
}
/* one instance per target: textok__att_<op>_<isa> */
#define TEXTOK__ATT_ROWS(isa, attr)                                                                  \
    attr static void textok__att_softmax_rows_##isa(float *S, int n, int Tk, int ld, const float *bias, \
                                                    const unsigned char *mask, float *lse, float *rsum) \
    { textok__att_softmax_rows_body(S, n, Tk, ld, bias, mask, lse, rsum); }                           \
    attr static void textok__att_prob_rows_##isa(float *P, int n, int Tk, int ld, const float *bias,   \
                                                 const unsigned char *mask, const float *lse)         \
    { textok__att_prob_rows_body(P, n, Tk, ld, bias, mask, lse); }                                    \
    attr static void textok__att_dscore_rows_##isa(float *dS, const float *P, int n, int Tk, int ld,   \
                                                   const float *D)                                    \
    { textok__att_dscore_rows_body(dS, P, n, Tk, ld, D); }                                            \
    attr static void textok__att_dot_rows_##isa(const float *dout, const float *out, int n, int hd, int ld, \
                                                float *D)                                             \
    { textok__att_dot_rows_body(dout, out, n, hd, ld, D); }
#ifdef TEXTOK__X86_SIMD
TEXTOK__ATT_ROWS(avx2, TEXTOK__AVX2)
TEXTOK__ATT_ROWS(avx512, TEXTOK__AVX512)
#else
TEXTOK__ATT_ROWS(vec, )
#endif
#endif /* TEXTOK__ATT_VEC */

typedef struct textok__att_rows {
    void (*softmax)(float *S, int n, int Tk, int ld, const float *bias, const unsigned char *mask, float *lse,
                    float *rsum);
    void (*prob)(float *P, int n, int Tk, int ld, const float *bias, const unsigned char *mask, const float *lse);
    void (*dscore)(float *dS, const float *P, int n, int Tk, int ld, const float *D);
    void (*dot)(const float *dout, const float *out, int n, int hd, int ld, float *D);
} textok__att_rows;

/* The row code at the table's GEMM level (x86-64): avx512 and avx2 their instances, portable
   the plain C (so that every version is tested on one machine), blas the level
   textok__gemm_serial runs at. Elsewhere the vector version where the compiler has it. */
static textok__att_rows textok__att_rows_pick(const textok_kernels *k)
{
    textok__att_rows r;
    int kind = textok__gemm_kind_of(k);
    r.softmax = textok__att_softmax_rows_c; r.prob = textok__att_prob_rows_c; r.dscore = textok__att_dscore_rows_c;
    r.dot = textok__att_dot_rows_c;
    if (kind == TEXTOK__GEMM_BLAS) kind = textok__gemm_serial_kind(k);
#if defined(TEXTOK__ATT_VEC) && defined(TEXTOK__X86_SIMD)
    if (kind == TEXTOK__GEMM_AVX512) {
        r.softmax = textok__att_softmax_rows_avx512; r.prob = textok__att_prob_rows_avx512; r.dscore = textok__att_dscore_rows_avx512;
        r.dot = textok__att_dot_rows_avx512;
    } else if (kind == TEXTOK__GEMM_AVX2) {
        r.softmax = textok__att_softmax_rows_avx2; r.prob = textok__att_prob_rows_avx2; r.dscore = textok__att_dscore_rows_avx2;
        r.dot = textok__att_dot_rows_avx2;
    }
#elif defined(TEXTOK__ATT_VEC)
    r.softmax = textok__att_softmax_rows_vec; r.prob = textok__att_prob_rows_vec; r.dscore = textok__att_dscore_rows_vec;
    r.dot = textok__att_dot_rows_vec;
#endif
    (void)kind;
    return r;
}

static void textok__attention_forward(const textok_kernels *k, float *out, float *lse,
                                      const float *q, const float *key, const float *v,
                                      const float *bias, const unsigned char *key_mask,
                                      const textok_attention_dims *d, float *work)
{
    const int B = d->B, Tq = d->Tq, Tk = d->Tk, C = d->C, H = d->H, hd = C / H;
    const int qb = textok__att_qb(Tq), nqb = (Tq + qb - 1) / qb, ld = textok__att_ld(Tk);
    const int ntasks = B * H * nqb, nt = textok__nt(k) < TEXTOK__ATT_SLOTS ? textok__nt(k) : TEXTOK__ATT_SLOTS;
    const size_t slot = textok__att_slot(Tq, Tk);
    const textok__att_rows rows = textok__att_rows_pick(k);
    float *slots = textok__att_slots(work);
    int task;
    (void)nt;
TEXTOK__OMP(omp parallel num_threads(nt) if (ntasks > 1 && (double)B * Tq * Tk * C > 2e5))
    {
        /* S (qb, ld), then qb floats of lse when the caller keeps none, then 1 / row sums */
        float *S = slots + (size_t)textok__thread_num() * slot, *rsum = S + 2 * (size_t)qb * ld;
TEXTOK__OMP(omp for schedule(dynamic, 1))
        for (task = 0; task < ntasks; task++) {
            const int b = task / (H * nqb), h = task / nqb % H, i0 = task % nqb * qb;
            const int n = Tq - i0 < qb ? Tq - i0 : qb;
            const size_t oq = ((size_t)b * Tq + i0) * C + h * hd, ok = (size_t)b * Tk * C + h * hd;
            const unsigned char *mask_b = key_mask ? key_mask + (size_t)b * Tk : NULL;
            float *lse_blk = lse ? lse + ((size_t)b * H + h) * Tq + i0 : S + (size_t)qb * ld;
            int i, c;
            if (!textok__any_key(key_mask, b, Tk)) {   /* every key masked: out = 0, lse = 0 */
                for (i = 0; i < n; i++) { memset(out + oq + (size_t)i * C, 0, (size_t)hd * sizeof(float)); lse_blk[i] = 0.0f; }
                continue;
            }
            textok__gemm_serial(k, 0, 1, n, Tk, hd, d->scale, q + oq, C, key + ok, C, 0.0f, S, ld);
            rows.softmax(S, n, Tk, ld, bias ? bias + ((size_t)h * Tq + i0) * Tk : NULL, mask_b, lse_blk, rsum);
            textok__gemm_serial(k, 0, 0, n, hd, Tk, 1.0f, S, ld, v + ok, C, 0.0f, out + oq, C);
            for (i = 0; i < n; i++)
                for (c = 0; c < hd; c++) out[oq + (size_t)i * C + c] *= rsum[i];
        }
    }
}

static void textok__attention_backward(const textok_kernels *k, float *dq, float *dkey, float *dv,
                                       float *dbias, const float *dout, const float *q,
                                       const float *key, const float *v, const float *bias,
                                       const unsigned char *key_mask, const float *out,
                                       const float *lse, const textok_attention_dims *d, float *work)
{
    const int B = d->B, Tq = d->Tq, Tk = d->Tk, C = d->C, H = d->H, hd = C / H;
    const int qb = textok__att_qb(Tq), ld = textok__att_ld(Tk);
    const int nbi = dbias ? B : 1, ntasks = B / nbi * H;   /* batches per task: all when dbias */
    const int nt = textok__nt(k) < TEXTOK__ATT_SLOTS ? textok__nt(k) : TEXTOK__ATT_SLOTS;
    const size_t slot = textok__att_slot(Tq, Tk);
    const textok__att_rows rows = textok__att_rows_pick(k);
    float *slots = textok__att_slots(work);
    int task;
    (void)nt;
TEXTOK__OMP(omp parallel num_threads(nt) if (ntasks > 1 && (double)B * Tq * Tk * C > 1e5))
    {
        float *P = slots + (size_t)textok__thread_num() * slot, *dS = P + (size_t)qb * ld, *D = dS + (size_t)qb * ld;
TEXTOK__OMP(omp for schedule(dynamic, 1))
        for (task = 0; task < ntasks; task++) {
            const int h = task % H;
            int b, i0, i, j;
            for (b = task / H * nbi; b < (task / H + 1) * nbi; b++) {
                const unsigned char *mask_b = key_mask ? key_mask + (size_t)b * Tk : NULL;
                const size_t ok = (size_t)b * Tk * C + h * hd;
                if (!textok__any_key(key_mask, b, Tk)) continue;   /* no gradient at all */
                for (i0 = 0; i0 < Tq; i0 += qb) {
                    const int n = Tq - i0 < qb ? Tq - i0 : qb;
                    const size_t oq = ((size_t)b * Tq + i0) * C + h * hd;
                    const float *lse_blk = lse + ((size_t)b * H + h) * Tq + i0;
                    textok__gemm_serial(k, 0, 1, n, Tk, hd, d->scale, q + oq, C, key + ok, C, 0.0f, P, ld);
                    rows.prob(P, n, Tk, ld, bias ? bias + ((size_t)h * Tq + i0) * Tk : NULL, mask_b, lse_blk);
                    rows.dot(dout + oq, out + oq, n, hd, C, D);
                    if (dv) textok__gemm_serial(k, 1, 0, Tk, hd, n, 1.0f, P, ld, dout + oq, C, 1.0f, dv + ok, C);
                    /* dP = dO_blk V^T, then dS = P (dP - D) in place */
                    textok__gemm_serial(k, 0, 1, n, Tk, hd, 1.0f, dout + oq, C, v + ok, C, 0.0f, dS, ld);
                    rows.dscore(dS, P, n, Tk, ld, D);
                    if (dbias)
                        for (i = 0; i < n; i++) {
                            float *db = dbias + ((size_t)h * Tq + i0 + i) * Tk;
                            for (j = 0; j < Tk; j++) db[j] += dS[(size_t)i * ld + j];
                        }
                    if (dq) textok__gemm_serial(k, 0, 0, n, hd, Tk, d->scale, dS, ld, key + ok, C, 1.0f, dq + oq, C);
                    if (dkey) textok__gemm_serial(k, 1, 0, Tk, hd, n, d->scale, dS, ld, q + oq, C, 1.0f, dkey + ok, C);
                }
            }
        }
    }
}

/* ----- residual add, adaLN modulate and gate ------------------------------------------------ */
/* Pointwise or nearly so: one function per op for both tables. */
static void textok__add_forward(const textok_kernels *k, float *out, const float *a, const float *b, size_t n)
{
    long i, nn = (long)n;
TEXTOK__PARALLEL_FOR(k, n > 65536)
    for (i = 0; i < nn; i++) out[i] = a[i] + b[i];
}

static void textok__add_backward(const textok_kernels *k, float *da, float *db, const float *dout, size_t n)
{
    long i, nn = (long)n;
TEXTOK__PARALLEL_FOR(k, n > 65536)
    for (i = 0; i < nn; i++) {
        if (da) da[i] += dout[i];
        if (db) db[i] += dout[i];
    }
}

/* out[b,t,c] = inp[b,t,c] * (1 + scale[b,c]) + shift[b,c] */
static void textok__modulate_forward(const textok_kernels *k, float *out, const float *inp,
                                     const float *shift, const float *scale, int B, int T, int C)
{
    int bt;
TEXTOK__PARALLEL_FOR(k, (size_t)B * T * C > 65536)
    for (bt = 0; bt < B * T; bt++) {
        const float *x = inp + (size_t)bt * C, *sh = shift + (size_t)(bt / T) * C, *sc = scale + (size_t)(bt / T) * C;
        float *o = out + (size_t)bt * C;
        int c;
        for (c = 0; c < C; c++) o[c] = x[c] * (1.0f + sc[c]) + sh[c];
    }
}

/* dinp += dout * (1 + scale); dshift[b] += sum_t dout; dscale[b] += sum_t dout * inp */
static void textok__modulate_backward(const textok_kernels *k, float *dinp, float *dshift,
                                      float *dscale, const float *dout, const float *inp,
                                      const float *scale, int B, int T, int C)
{
    int b;
TEXTOK__PARALLEL_FOR(k, (size_t)B * T * C > 65536)
    for (b = 0; b < B; b++) {
        int t, c;
        for (t = 0; t < T; t++) {
            size_t o = ((size_t)b * T + t) * C;
            for (c = 0; c < C; c++) {
                if (dinp) dinp[o + c] += dout[o + c] * (1.0f + scale[(size_t)b * C + c]);
                if (dshift) dshift[(size_t)b * C + c] += dout[o + c];
                if (dscale) dscale[(size_t)b * C + c] += dout[o + c] * inp[o + c];
            }
        }
    }
}

/* out[b,t,c] = resid[b,t,c] + gate[b,c] * inp[b,t,c] */
static void textok__gate_forward(const textok_kernels *k, float *out, const float *resid,
                                 const float *inp, const float *gate, int B, int T, int C)
{
    int bt;
TEXTOK__PARALLEL_FOR(k, (size_t)B * T * C > 65536)
    for (bt = 0; bt < B * T; bt++) {
        const float *r = resid + (size_t)bt * C, *x = inp + (size_t)bt * C, *g = gate + (size_t)(bt / T) * C;
        float *o = out + (size_t)bt * C;
        int c;
        for (c = 0; c < C; c++) o[c] = r[c] + g[c] * x[c];
    }
}

static void textok__gate_backward(const textok_kernels *k, float *dresid, float *dinp, float *dgate,
                                  const float *dout, const float *inp, const float *gate,
                                  int B, int T, int C)
{
    int b;
TEXTOK__PARALLEL_FOR(k, (size_t)B * T * C > 65536)
    for (b = 0; b < B; b++) {
        int t, c;
        for (t = 0; t < T; t++) {
            size_t o = ((size_t)b * T + t) * C;
            for (c = 0; c < C; c++) {
                if (dresid) dresid[o + c] += dout[o + c];
                if (dinp) dinp[o + c] += dout[o + c] * gate[(size_t)b * C + c];
                if (dgate) dgate[(size_t)b * C + c] += dout[o + c] * inp[o + c];
            }
        }
    }
}

/* ----- conv2d ------------------------------------------------------------------------------- */
TEXTOKDEF int textok_conv2d_out_h(const textok_conv2d_dims *d) { return (d->H + 2 * d->pad - d->KH) / d->stride + 1; }
TEXTOKDEF int textok_conv2d_out_w(const textok_conv2d_dims *d) { return (d->W + 2 * d->pad - d->KW) / d->stride + 1; }

/* Reference: the direct 7-deep loop. */
static void textok__conv2d_forward_ref(const textok_kernels *k, float *out, const float *inp,
                                       const float *weight, const float *bias,
                                       const textok_conv2d_dims *d, float *work)
{
    int OH = textok_conv2d_out_h(d), OW = textok_conv2d_out_w(d), b, o, oy, ox, c, ky, kx;
    (void)k; (void)work;
    for (b = 0; b < d->B; b++)
        for (o = 0; o < d->OC; o++)
            for (oy = 0; oy < OH; oy++)
                for (ox = 0; ox < OW; ox++) {
                    double acc = bias ? bias[o] : 0.0;
                    for (c = 0; c < d->C; c++)
                        for (ky = 0; ky < d->KH; ky++)
                            for (kx = 0; kx < d->KW; kx++) {
                                int y = oy * d->stride - d->pad + ky, x = ox * d->stride - d->pad + kx;
                                if (y < 0 || y >= d->H || x < 0 || x >= d->W) continue;
                                acc += (double)inp[(((size_t)b * d->C + c) * d->H + y) * d->W + x] *
                                       weight[(((size_t)o * d->C + c) * d->KH + ky) * d->KW + kx];
                            }
                    out[(((size_t)b * d->OC + o) * OH + oy) * OW + ox] = (float)acc;
                }
}

static void textok__conv2d_backward_ref(const textok_kernels *k, float *dinp, float *dweight, float *dbias,
                                        const float *dout, const float *inp, const float *weight,
                                        const textok_conv2d_dims *d, float *work)
{
    int OH = textok_conv2d_out_h(d), OW = textok_conv2d_out_w(d), b, o, oy, ox, c, ky, kx;
    (void)k; (void)work;
    for (b = 0; b < d->B; b++)
        for (o = 0; o < d->OC; o++)
            for (oy = 0; oy < OH; oy++)
                for (ox = 0; ox < OW; ox++) {
                    float g = dout[(((size_t)b * d->OC + o) * OH + oy) * OW + ox];
                    if (dbias) dbias[o] += g;
                    for (c = 0; c < d->C; c++)
                        for (ky = 0; ky < d->KH; ky++)
                            for (kx = 0; kx < d->KW; kx++) {
                                int y = oy * d->stride - d->pad + ky, x = ox * d->stride - d->pad + kx;
                                size_t wi = (((size_t)o * d->C + c) * d->KH + ky) * d->KW + kx;
                                size_t xi = (((size_t)b * d->C + c) * d->H + y) * d->W + x;
                                if (y < 0 || y >= d->H || x < 0 || x >= d->W) continue;
                                if (dinp) dinp[xi] += g * weight[wi];
                                if (dweight) dweight[wi] += g * inp[xi];
                            }
                }
}

/* Fast conv2d: tiled im2col + GEMM, every tile owned by one thread.

   Forward. out_b (OC, OH*OW) = weight (OC, CKK) . col_b (CKK, OH*OW) + bias, CKK = C*KH*KW. The
   column matrix of a whole image is big (128 channels, 3x3 at 256x256: 302 MB), so it is never
   built: ONE parallel loop runs over (image, tile of output pixels) tasks; a task im2cols its
   np pixels (a contiguous range of the flattened output, rows of the image when np >= OW) into
   its thread's slot of `work` (CKK x np floats, sized to stay in L2) and calls
   textok__gemm_serial for out_b[:, p0:p0+np]. Each output element belongs to one task, and the
   GEMM's sum order does not depend on how C is cut, so the result is the same at any thread
   count. A 1x1, stride-1, unpadded conv needs no im2col: the image already is the column matrix.

   dinput (stride 1, square kernel, pad < KH, which is every 3x3 "same" and 1x1 conv here): the
   gradient of a stride-1 conv is itself a stride-1 conv, of dout with the weight transposed
   (C <-> OC) and flipped (ky -> KH-1-ky), padded KH-1-pad:
       dinp[c, y, x] += sum_{o, ky, kx} W[o, c, KH-1-ky, KW-1-kx] . dout_pad[o, y + ky, x + kx]
   so it runs through the same tiled loop (accumulating, beta 1) with the flipped weight built
   once per call at the start of `work`. Each input pixel is one task's: no scatter, no races.
   Other strides fall back to one image at a time: dcol = weight^T . dout_b, then col2im (threads
   over channels); those convs (patch embeddings, the discriminator's blur) are small.

   dweight (OC, CKK) += dout_b . col_b^T, summed over images and pixels. Tasks are blocks of
   (output channels x input channels) of dweight; each sums over every image and pixel tile in
   a fixed order, im2col'ing only its own input channels' rows. The pixel tile depends on the
   dims only and the GEMM's per-element order not on the block, so blocks may follow the thread
   count (for balance) while the bits do not.

   work: TEXTOK__CONV_SLOTS column tiles (threads beyond that many are not used by conv2d), plus
   the flipped weight for dinput, or one image's dcol for the stride != 1 dinput fallback. A
   slot is TEXTOK__CONV_TILE floats at most (or 96 pixels' columns when CKK is larger); only
   the slots of threads that run are touched. */
#define TEXTOK__CONV_SLOTS 32
#define TEXTOK__CONV_TILE  163840   /* floats per column tile (640 KiB) */
#define TEXTOK__CONV_ROWS  256      /* rows of dweight's column tile (input channels x KH*KW) */

static int textok__conv2d_is_pointwise(const textok_conv2d_dims *d)
{
    return d->KH == 1 && d->KW == 1 && d->stride == 1 && d->pad == 0;
}

/* dinput as a stride-1 conv of dout (see above) */
static int textok__conv2d_dinp_as_conv(const textok_conv2d_dims *d)
{
    return d->stride == 1 && d->KH == d->KW && d->pad < d->KH;
}

/* the conv computing dinput: dout (B, OC, OH, OW) -> (B, C, H, W) */
static textok_conv2d_dims textok__conv2d_dinp_dims(const textok_conv2d_dims *d)
{
    textok_conv2d_dims t = *d;
    t.C = d->OC; t.OC = d->C; t.H = textok_conv2d_out_h(d); t.W = textok_conv2d_out_w(d);
    t.pad = d->KH - 1 - d->pad;
    return t;
}

/* pixels per column tile of `rows` rows at most: a multiple of 32 (the GEMM's column panel),
   and not under 96 (narrower tiles lose more to the GEMM's per-call overheads than they gain
   in cache) */
static int textok__conv_tile_px(size_t rows, int P)
{
    size_t t = TEXTOK__CONV_TILE / (rows ? rows : 1) / 32 * 32;
    if (t < 96) t = 96;
    return t < (size_t)P ? (int)t : P;
}

/* input channels per dweight block at most */
static int textok__conv_dw_cb(const textok_conv2d_dims *d)
{
    int cb = TEXTOK__CONV_ROWS / (d->KH * d->KW);
    if (cb < 1) cb = 1;
    return cb < d->C ? cb : d->C;
}

/* The GEMM's register block is 14 rows by 32 columns (AVX-512), so with OC = 64 or 128 output
   channels as its rows a tenth of it is padding, while as its columns none is. A conv whose
   weight is small enough to be repacked for every tile from L2 runs transposed: the tile's
   (pixels, OC) = col^T . weight^T, written back to (OC, pixels) (a pass over a small tile). */
static int textok__conv_transposed(const textok_conv2d_dims *d)
{
    return !textok__conv2d_is_pointwise(d) && d->OC % 32 == 0 && (size_t)d->OC * d->C * d->KH * d->KW <= 2 * TEXTOK__CONV_TILE;
}

/* forward-type loop: pixels per tile at most (a multiple of 14 when transposed), floats per slot */
static int textok__conv_fwd_px(const textok_conv2d_dims *d)
{
    const int P = textok_conv2d_out_h(d) * textok_conv2d_out_w(d);
    int np = textok__conv_tile_px((size_t)d->C * d->KH * d->KW, P);
    if (textok__conv_transposed(d) && np >= 14) np = np / 14 * 14;
    return np;
}
static size_t textok__conv_fwd_slot(const textok_conv2d_dims *d)
{
    const size_t np = (size_t)textok__conv_fwd_px(d);
    return ((size_t)d->C * d->KH * d->KW + (textok__conv_transposed(d) ? (size_t)d->OC : 0)) * np;
}

/* dweight runs transposed (dweight^T blocks, output channels as the GEMM's columns) when the
   output channels fill its 32-wide column panels; its block rows (input channels x KH*KW) are
   then chosen against the 14-row register block. */
static int textok__conv_dw_transposed(const textok_conv2d_dims *d)
{
    return !textok__conv2d_is_pointwise(d) && d->OC % 32 == 0;
}
static size_t textok__conv_dw_slot(const textok_conv2d_dims *d)
{
    const int P = textok_conv2d_out_h(d) * textok_conv2d_out_w(d);
    const size_t rows = (size_t)textok__conv_dw_cb(d) * d->KH * d->KW;
    return rows * ((size_t)textok__conv_tile_px(rows, P) + (textok__conv_dw_transposed(d) ? (d->OC < 256 ? (size_t)d->OC : 256) : 0));
}

static size_t textok__conv_round16(size_t n) { return (n + 15) / 16 * 16; }

/* threads for a loop of `tasks` tasks doing `flops` in all: at most the slots */
static int textok__conv_threads(const textok_kernels *k, size_t tasks, double flops)
{
    int n = textok__nt(k);
    if (n > TEXTOK__CONV_SLOTS) n = TEXTOK__CONV_SLOTS;
    if ((size_t)n > tasks) n = (int)tasks;
    return n < 1 || flops < 1e6 ? 1 : n;
}

TEXTOKDEF size_t textok_conv2d_work_floats(const textok_conv2d_dims *d)
{
    const int P = textok_conv2d_out_h(d) * textok_conv2d_out_w(d), KK = d->KH * d->KW;
    const size_t CKK = (size_t)d->C * KK;
    size_t fwd, dw, din;
    if (textok__conv2d_is_pointwise(d)) return 0;
    fwd = TEXTOK__CONV_SLOTS * textok__conv_fwd_slot(d);
    dw = TEXTOK__CONV_SLOTS * textok__conv_dw_slot(d);
    if (textok__conv2d_dinp_as_conv(d)) {
        const textok_conv2d_dims t = textok__conv2d_dinp_dims(d);
        din = textok__conv_round16((size_t)d->OC * CKK) + TEXTOK__CONV_SLOTS * textok__conv_fwd_slot(&t);
    } else
        din = CKK * (size_t)P;
    if (dw > fwd) fwd = dw;
    return din > fwd ? din : fwd;
}

/* work for a stride-1 "same" conv (ksize 3 pad 1, or 1 pad 0) on side x side images */
static size_t textok__conv_same_work(int C, int side, int OC, int ksize)
{
    textok_conv2d_dims d;
    d.B = 1; d.C = C; d.H = d.W = side; d.OC = OC; d.KH = d.KW = ksize; d.stride = 1; d.pad = ksize / 2;
    return textok_conv2d_work_floats(&d);
}

/* The rows of input channels [c0, c1) of image img's column matrix, for output pixels [p0, p1):
   col ((c1-c0)*KH*KW, p1-p0), row (c, ky, kx), zero where the window is in the padding. */
static void textok__im2col_tile(float *col, const float *img, const textok_conv2d_dims *d, int c0, int c1, int p0, int p1)
{
    const int OW = textok_conv2d_out_w(d), np = p1 - p0, s = d->stride;
    int c, ky, kx;
    for (c = c0; c < c1; c++)
        for (ky = 0; ky < d->KH; ky++)
            for (kx = 0; kx < d->KW; kx++) {
                float *row = col + ((size_t)((c - c0) * d->KH + ky) * d->KW + kx) * np;
                const float *plane = img + (size_t)c * d->H * d->W;
                /* output columns [lo, hi) read an input column x = ox*s - pad + kx inside [0, W) */
                const int lo = kx >= d->pad ? 0 : (d->pad - kx + s - 1) / s;
                const int hi = d->W - 1 + d->pad - kx < 0 ? 0 : (d->W - 1 + d->pad - kx) / s + 1;
                int p = p0;
                while (p < p1) {
                    const int oy = p / OW, ox0 = p - oy * OW, ox1 = ox0 + (p1 - p) < OW ? ox0 + (p1 - p) : OW;
                    const int y = oy * s - d->pad + ky;
                    float *r = row + (p - p0);   /* r[ox - ox0] is pixel (oy, ox) */
                    int a = lo < ox0 ? ox0 : lo > ox1 ? ox1 : lo, e = hi < a ? a : hi > ox1 ? ox1 : hi, ox;
                    if (y < 0 || y >= d->H) a = e = ox1;
                    for (ox = ox0; ox < a; ox++) r[ox - ox0] = 0.0f;
                    if (s == 1) {
                        if (e > a) memcpy(r + (a - ox0), plane + (size_t)y * d->W + (a - d->pad + kx), (size_t)(e - a) * sizeof(float));
                    } else
                        for (ox = a; ox < e; ox++) r[ox - ox0] = plane[(size_t)y * d->W + ox * s - d->pad + kx];
                    for (ox = e; ox < ox1; ox++) r[ox - ox0] = 0.0f;
                    p += ox1 - ox0;
                }
            }
}

/* img += col2im(col) for a whole image's col (CKK, OH*OW); threads over channels, so no two
   threads touch the same pixel. Only the stride != 1 dinput uses it. */
static void textok__col2im(const textok_kernels *k, float *img, const float *col, const textok_conv2d_dims *d)
{
    int OH = textok_conv2d_out_h(d), OW = textok_conv2d_out_w(d), c;
TEXTOK__PARALLEL_FOR(k, (size_t)d->C * d->KH * d->KW * OH * OW > 65536)
    for (c = 0; c < d->C; c++) {
        int ky, kx, oy, ox;
        for (ky = 0; ky < d->KH; ky++)
            for (kx = 0; kx < d->KW; kx++) {
                const float *row = col + (((size_t)c * d->KH + ky) * d->KW + kx) * OH * OW;
                for (oy = 0; oy < OH; oy++) {
                    int y = oy * d->stride - d->pad + ky;
                    if (y < 0 || y >= d->H) continue;
                    for (ox = 0; ox < OW; ox++) {
                        int x = ox * d->stride - d->pad + kx;
                        if (x >= 0 && x < d->W) img[((size_t)c * d->H + y) * d->W + x] += row[(size_t)oy * OW + ox];
                    }
                }
            }
    }
}

/* out = beta*out + conv(inp, op(wm)) (+ bias, only with beta 0), the tiled loop described above.
   op(wm) is (OC, CKK): wm stored that way (ta 0) or as (CKK, OC) (ta 1). slots: the tiles. */
static void textok__conv2d_tiled(const textok_kernels *k, float *out, const float *inp, const float *wm, int ta,
                                 const float *bias, float beta, const textok_conv2d_dims *d, float *slots)
{
    const int P = textok_conv2d_out_h(d) * textok_conv2d_out_w(d), CKK = d->C * d->KH * d->KW;
    const int pointwise = textok__conv2d_is_pointwise(d), tr = textok__conv_transposed(d);
    const int npmax = textok__conv_fwd_px(d);
    const size_t slot = textok__conv_fwd_slot(d);
    const int unit = tr ? 14 : 32;   /* the GEMM's register block along the pixels */
    int ntiles, np = npmax, nth, c;
    long ntasks, best = -1;
    nth = textok__conv_threads(k, (size_t)d->B * ((P + npmax - 1) / (npmax > 0 ? npmax : 1)),
                               2.0 * d->B * d->OC * (double)CKK * P);
    /* The tile width: the fewest rounds of tasks over the threads, times the tile's width padded
       to the GEMM's block, plus ~24 pixels' worth of per-tile cost (the GEMM repacks the weight
       for every tile). Each output element is one GEMM's sum over CKK whatever the tiling, so
       the tiling may follow the thread count without changing the result. */
    for (c = npmax; c > 0; c = c > unit && c % unit ? c / unit * unit : c - unit) {
        const long tiles = (long)d->B * ((P + c - 1) / c), rounds = (tiles + nth - 1) / nth;
        const long cost = rounds * ((c + unit - 1) / unit * unit + 24);
        if (best < 0 || cost < best) { best = cost; np = c; }
    }
    ntiles = np > 0 ? (P + np - 1) / np : 0;
    ntasks = (long)d->B * ntiles;
    (void)slot;
TEXTOK__OMP(omp parallel num_threads(nth) if (nth > 1))
    {
        float *col = pointwise ? NULL : slots + (size_t)textok__thread_num() * slot;
        float *tmp = tr ? col + (size_t)CKK * npmax : NULL;   /* (np, OC) */
        long task;
TEXTOK__OMP(omp for schedule(dynamic, 1))
        for (task = 0; task < ntasks; task++) {
            const int b = (int)(task / ntiles), p0 = (int)(task % ntiles) * np, n = P - p0 < np ? P - p0 : np;
            const float *img = inp + (size_t)b * d->C * d->H * d->W, *colt = img + p0;
            float *ob = out + (size_t)b * d->OC * P + p0, bt = beta;
            int ldb = P, o, j;
            if (!pointwise) { textok__im2col_tile(col, img, d, 0, d->C, p0, p0 + n); colt = col; ldb = n; }
            if (tr) {
                /* tmp (n, OC) = col^T . op(wm)^T, then out_b[:, p0:p0+n] (= or +=) tmp^T (+ bias) */
                textok__gemm_serial(k, 1, !ta, n, d->OC, CKK, 1.0f, colt, ldb, wm, ta ? d->OC : CKK, 0.0f, tmp, d->OC);
                for (o = 0; o < d->OC; o++) {
                    float *r = ob + (size_t)o * P, bo = bias ? bias[o] : 0.0f;
                    if (beta == 0.0f) for (j = 0; j < n; j++) r[j] = tmp[(size_t)j * d->OC + o] + bo;
                    else              for (j = 0; j < n; j++) r[j] = beta * r[j] + tmp[(size_t)j * d->OC + o] + bo;
                }
                continue;
            }
            if (bias) {
                for (o = 0; o < d->OC; o++)
                    for (j = 0; j < n; j++) ob[(size_t)o * P + j] = bias[o];
                bt = 1.0f;
            }
            textok__gemm_serial(k, ta, 0, d->OC, n, CKK, 1.0f, wm, ta ? d->OC : CKK, colt, ldb, bt, ob, P);
        }
    }
}

static void textok__conv2d_forward(const textok_kernels *k, float *out, const float *inp,
                                   const float *weight, const float *bias,
                                   const textok_conv2d_dims *d, float *work)
{
    textok__conv2d_tiled(k, out, inp, weight, 0, bias, 0.0f, d, work);
}

/* dweight += sum over images of dout_b . col_b^T, tasks over blocks of dweight (see above) */
static void textok__conv2d_dweight(const textok_kernels *k, float *dweight, const float *dout, const float *inp,
                                   const textok_conv2d_dims *d, float *work)
{
    const int P = textok_conv2d_out_h(d) * textok_conv2d_out_w(d), KK = d->KH * d->KW, CKK = d->C * KK;
    const int pointwise = textok__conv2d_is_pointwise(d), cbmax = textok__conv_dw_cb(d), tr = textok__conv_dw_transposed(d);
    const int np = textok__conv_tile_px((size_t)cbmax * KK, P), unit = tr ? 14 : 32;
    const size_t slot = textok__conv_dw_slot(d), rows_max = (size_t)cbmax * KK;
    const double flops = 2.0 * d->B * d->OC * (double)CKK * P;
    int nth = textok__conv_threads(k, (size_t)TEXTOK__CONV_SLOTS, flops), nc, cb = cbmax, no, ob, ntasks, c;
    long best = -1;
    /* output-channel blocks: 256 at most (each block repeats the im2col of its input channels);
       when transposed, a multiple of 32 (the GEMM's column panel) */
    no = (d->OC + 255) / 256;
    ob = (d->OC + no - 1) / no;
    if (tr) ob = (ob + 31) / 32 * 32;
    no = (d->OC + ob - 1) / ob;
    /* input-channel blocks: the fewest rounds of tasks over the threads times the block's rows
       padded to the GEMM's register block (+ a per-task cost) */
    for (c = cbmax; c >= 1; c--) {
        const long tasks = (long)((d->C + c - 1) / c) * no, rounds = (tasks + nth - 1) / nth;
        const long cost = rounds * (((long)c * KK + unit - 1) / unit * unit + 16);
        if (best < 0 || cost < best) { best = cost; cb = c; }
    }
    nc = (d->C + cb - 1) / cb;
    ntasks = nc * no;
    if (nth > ntasks) nth = ntasks;
    (void)slot; (void)rows_max;
TEXTOK__OMP(omp parallel num_threads(nth) if (nth > 1))
    {
        float *col = pointwise ? NULL : work + (size_t)textok__thread_num() * slot;
        float *acc = tr ? col + rows_max * np : NULL;   /* (rows, ob): this block of dweight^T */
        int task;
TEXTOK__OMP(omp for schedule(dynamic, 1))
        for (task = 0; task < ntasks; task++) {
            const int c0 = (task % nc) * cb, c1 = c0 + cb < d->C ? c0 + cb : d->C;
            const int o0 = (task / nc) * ob, o1 = o0 + ob < d->OC ? o0 + ob : d->OC;
            const int rows = (c1 - c0) * KK;
            int b, p0, first = 1;
            for (b = 0; b < d->B; b++) {
                const float *img = inp + (size_t)b * d->C * d->H * d->W, *dout_b = dout + (size_t)b * d->OC * P;
                for (p0 = 0; p0 < P; p0 += np) {
                    const int n = P - p0 < np ? P - p0 : np;
                    const float *colt = img + (size_t)c0 * P + p0;
                    int ldb = P;
                    if (!pointwise) { textok__im2col_tile(col, img, d, c0, c1, p0, p0 + n); colt = col; ldb = n; }
                    if (tr)   /* acc (rows, ob) += col . dout_b[o0:o1]^T */
                        textok__gemm_serial(k, 0, 1, rows, o1 - o0, n, 1.0f, colt, ldb, dout_b + (size_t)o0 * P + p0, P,
                                            first ? 0.0f : 1.0f, acc, ob);
                    else
                        textok__gemm_serial(k, 0, 1, o1 - o0, rows, n, 1.0f, dout_b + (size_t)o0 * P + p0, P,
                                            colt, ldb, 1.0f, dweight + (size_t)o0 * CKK + (size_t)c0 * KK, CKK);
                    first = 0;
                }
            }
            if (tr && !first) {
                int o, r;
                for (o = o0; o < o1; o++) {
                    float *dw = dweight + (size_t)o * CKK + (size_t)c0 * KK;
                    for (r = 0; r < rows; r++) dw[r] += acc[(size_t)r * ob + (o - o0)];
                }
            }
        }
    }
}

/* dbias += sum over images and pixels of dout (in double, one channel per thread);
   dweight, dinput: see above. */
static void textok__conv2d_backward(const textok_kernels *k, float *dinp, float *dweight, float *dbias,
                                    const float *dout, const float *inp, const float *weight,
                                    const textok_conv2d_dims *d, float *work)
{
    const int P = textok_conv2d_out_h(d) * textok_conv2d_out_w(d), KK = d->KH * d->KW, CKK = d->C * KK;
    int o;
    if (dbias) {
TEXTOK__PARALLEL_FOR(k, (size_t)d->B * d->OC * P > 65536)
        for (o = 0; o < d->OC; o++) {
            double s = 0.0;
            int b, p;
            for (b = 0; b < d->B; b++) {
                const float *g = dout + ((size_t)b * d->OC + o) * P;
                for (p = 0; p < P; p++) s += g[p];
            }
            dbias[o] += (float)s;
        }
    }
    if (dweight) textok__conv2d_dweight(k, dweight, dout, inp, d, work);
    if (!dinp) return;
    if (textok__conv2d_is_pointwise(d)) {
        textok_conv2d_dims t = textok__conv2d_dinp_dims(d);
        textok__conv2d_tiled(k, dinp, dout, weight, 1, NULL, 1.0f, &t, NULL);
    } else if (textok__conv2d_dinp_as_conv(d)) {
        /* wt (C, OC*KK): wt[c][(o, ky, kx)] = weight[o][c][KH-1-ky][KW-1-kx] */
        textok_conv2d_dims t = textok__conv2d_dinp_dims(d);
        float *wt = work;
        int c;
TEXTOK__PARALLEL_FOR(k, (size_t)d->C * d->OC * KK > 65536)
        for (c = 0; c < d->C; c++) {
            int oc, q;
            for (oc = 0; oc < d->OC; oc++)
                for (q = 0; q < KK; q++)
                    wt[((size_t)c * d->OC + oc) * KK + q] = weight[((size_t)oc * d->C + c) * KK + (KK - 1 - q)];
        }
        textok__conv2d_tiled(k, dinp, dout, wt, 0, NULL, 1.0f, &t, work + textok__conv_round16((size_t)d->OC * CKK));
    } else {
        int b;
        for (b = 0; b < d->B; b++) {
            textok__gemm(k, 1, 0, CKK, P, d->OC, 1.0f, weight, CKK, dout + (size_t)b * d->OC * P, P, 0.0f, work, P);
            textok__col2im(k, dinp + (size_t)b * d->C * d->H * d->W, work, d);
        }
    }
}

/* ----- groupnorm ---------------------------------------------------------------------------- */
/* Group g of image b is the contiguous run of (C/G)*HW values starting at channel g*C/G.
   Statistics as layernorm (biased variance, double sums). One function for both tables. */
static void textok__groupnorm_forward(const textok_kernels *k, float *out, float *mean, float *rstd,
                                      const float *inp, const float *weight, const float *bias,
                                      int B, int C, int HW, int G, float eps)
{
    int bg, cg = C / G;
TEXTOK__PARALLEL_FOR(k, (size_t)B * C * HW > 16384)
    for (bg = 0; bg < B * G; bg++) {
        size_t n = (size_t)cg * HW, i;
        const float *x = inp + (size_t)bg * n;
        float *o = out + (size_t)bg * n, mf, sf;
        double m = 0.0, v = 0.0;
        for (i = 0; i < n; i++) m += x[i];
        m /= (double)n;
        for (i = 0; i < n; i++) v += (x[i] - m) * (x[i] - m);
        v /= (double)n;
        mf = (float)m;
        sf = (float)(1.0 / sqrt(v + eps));
        for (i = 0; i < n; i++) {
            int c = (bg % G) * cg + (int)(i / HW);
            float y = (x[i] - mf) * sf;
            o[i] = weight ? y * weight[c] + (bias ? bias[c] : 0.0f) : y;
        }
        if (mean) mean[bg] = mf;
        if (rstd) rstd[bg] = sf;
    }
}

static void textok__groupnorm_backward(const textok_kernels *k, float *dinp, float *dweight,
                                       float *dbias, const float *dout, const float *inp,
                                       const float *weight, const float *mean, const float *rstd,
                                       int B, int C, int HW, int G)
{
    int bg, c, cg = C / G;
    if (dinp) {
TEXTOK__PARALLEL_FOR(k, (size_t)B * C * HW > 16384)
        for (bg = 0; bg < B * G; bg++) {
            size_t n = (size_t)cg * HW, i;
            const float *x = inp + (size_t)bg * n, *dy = dout + (size_t)bg * n;
            float *dx = dinp + (size_t)bg * n;
            double sg = 0.0, sgx = 0.0, mg, mgx;
            for (i = 0; i < n; i++) {
                double g = (double)dy[i] * (weight ? weight[(bg % G) * cg + (int)(i / HW)] : 1.0f);
                sg += g;
                sgx += g * ((x[i] - mean[bg]) * rstd[bg]);
            }
            mg = sg / (double)n;
            mgx = sgx / (double)n;
            for (i = 0; i < n; i++) {
                double g = (double)dy[i] * (weight ? weight[(bg % G) * cg + (int)(i / HW)] : 1.0f);
                dx[i] += (float)(rstd[bg] * (g - mg - ((x[i] - mean[bg]) * rstd[bg]) * mgx));
            }
        }
    }
    if (!dweight && !dbias) return;
TEXTOK__PARALLEL_FOR(k, (size_t)B * C * HW > 16384)
    for (c = 0; c < C; c++) {
        double sw = 0.0, sb = 0.0;
        int b, i;
        for (b = 0; b < B; b++) {
            int bgi = b * G + c / cg;
            const float *x = inp + ((size_t)b * C + c) * HW, *dy = dout + ((size_t)b * C + c) * HW;
            for (i = 0; i < HW; i++) {
                sw += (double)dy[i] * ((x[i] - mean[bgi]) * rstd[bgi]);
                sb += dy[i];
            }
        }
        if (dweight) dweight[c] += (float)sw;
        if (dbias) dbias[c] += (float)sb;
    }
}

/* ----- nearest upsampling ------------------------------------------------------------------- */
/* out[y][x] = inp[y/f][x/f]; backward sums each f x f block. One function for both tables. */
static void textok__upsample_forward(const textok_kernels *k, float *out, const float *inp,
                                     int BC, int H, int W, int f)
{
    int p;
TEXTOK__PARALLEL_FOR(k, (size_t)BC * H * W * f * f > 65536)
    for (p = 0; p < BC; p++) {
        int y, x;
        for (y = 0; y < H * f; y++)
            for (x = 0; x < W * f; x++)
                out[((size_t)p * H * f + y) * W * f + x] = inp[((size_t)p * H + y / f) * W + x / f];
    }
}

static void textok__upsample_backward(const textok_kernels *k, float *dinp, const float *dout,
                                      int BC, int H, int W, int f)
{
    int p;
TEXTOK__PARALLEL_FOR(k, (size_t)BC * H * W * f * f > 65536)
    for (p = 0; p < BC; p++) {
        int y, x, dy, dx;
        for (y = 0; y < H; y++)
            for (x = 0; x < W; x++) {
                float s = 0.0f;
                for (dy = 0; dy < f; dy++)
                    for (dx = 0; dx < f; dx++)
                        s += dout[((size_t)p * H * f + y * f + dy) * W * f + x * f + dx];
                dinp[((size_t)p * H + y) * W + x] += s;
            }
    }
}

/* ----- nearest-codebook search -------------------------------------------------------------- */
/* d_ij = |z_i|^2 + |e_j|^2 - 2 z_i.e_j, the expanded form PyTorch's quantizers use (it decides
   near-ties the same way); argmin with ties to the lowest j. */
#define TEXTOK__CB_ROWS 64   /* rows of z per GEMM block */

TEXTOKDEF size_t textok_codebook_work_floats(int N, int K, int D)
{
    (void)D;
    return (size_t)K + (size_t)(N < TEXTOK__CB_ROWS ? N : TEXTOK__CB_ROWS) * K;
}

static void textok__codebook_search_ref(const textok_kernels *k, int32_t *idx, float *dist,
                                        const float *z, const float *codebook, int N, int K, int D,
                                        float *work)
{
    int i, j, c;
    (void)k; (void)work;
    for (i = 0; i < N; i++) {
        double best = DBL_MAX, zz = 0.0;
        int arg = 0;
        for (c = 0; c < D; c++) zz += (double)z[(size_t)i * D + c] * z[(size_t)i * D + c];
        for (j = 0; j < K; j++) {
            double ee = 0.0, ze = 0.0, dij;
            for (c = 0; c < D; c++) {
                ee += (double)codebook[(size_t)j * D + c] * codebook[(size_t)j * D + c];
                ze += (double)z[(size_t)i * D + c] * codebook[(size_t)j * D + c];
            }
            dij = zz + ee - 2.0 * ze;
            if (dij < best) { best = dij; arg = j; }
        }
        idx[i] = arg;
        if (dist) dist[i] = (float)best;
    }
}

/* Fast: |e_j|^2 once, then blocks of 64 rows: S = z_blk . E^T by GEMM, argmin per row. */
static void textok__codebook_search(const textok_kernels *k, int32_t *idx, float *dist,
                                    const float *z, const float *codebook, int N, int K, int D,
                                    float *work)
{
    float *ee = work, *S = work + K;
    int j, i0;
TEXTOK__PARALLEL_FOR(k, (size_t)K * D > 65536)
    for (j = 0; j < K; j++) {
        double s = 0.0;
        int c;
        for (c = 0; c < D; c++) s += (double)codebook[(size_t)j * D + c] * codebook[(size_t)j * D + c];
        ee[j] = (float)s;
    }
    for (i0 = 0; i0 < N; i0 += TEXTOK__CB_ROWS) {
        int rows = N - i0 < TEXTOK__CB_ROWS ? N - i0 : TEXTOK__CB_ROWS, r;
        textok__gemm(k, 0, 1, rows, K, D, -2.0f, z + (size_t)i0 * D, D, codebook, D, 0.0f, S, K);
TEXTOK__PARALLEL_FOR(k, (size_t)rows * K > 16384)
        for (r = 0; r < rows; r++) {
            const float *s = S + (size_t)r * K, *zi = z + (size_t)(i0 + r) * D;
            float best = FLT_MAX, zz = 0.0f;
            int arg = 0, jj, c;
            for (c = 0; c < D; c++) zz += zi[c] * zi[c];
            for (jj = 0; jj < K; jj++) {
                float dj = ee[jj] + s[jj];
                if (dj < best) { best = dj; arg = jj; }
            }
            idx[i0 + r] = arg;
            if (dist) dist[i0 + r] = zz + best;
        }
    }
}

/* ----- softmax cross-entropy ---------------------------------------------------------------- */
/* loss_i = (1-ls) (lse - x_y) + ls/V sum_c (lse - x_c), PyTorch's label smoothing;
   d loss_i / d x_c = p_c - (1-ls) [c == y] - ls/V. One function for both tables. */
static void textok__cross_entropy_forward(const textok_kernels *k, float *losses, float *probs,
                                          const float *logits, const int32_t *targets, int N, int V,
                                          float label_smoothing)
{
    int n;
TEXTOK__PARALLEL_FOR(k, (size_t)N * V > 16384)
    for (n = 0; n < N; n++) {
        const float *x = logits + (size_t)n * V;
        float *p = probs + (size_t)n * V, m = -FLT_MAX;
        double s = 0.0, lse, sum_x = 0.0;
        int c, y = targets[n];
        for (c = 0; c < V; c++) m = x[c] > m ? x[c] : m;
        for (c = 0; c < V; c++) { s += exp((double)x[c] - m); sum_x += x[c]; }
        lse = m + log(s);
        for (c = 0; c < V; c++) p[c] = (float)exp(x[c] - lse);
        if (y < 0 || y >= V) { losses[n] = 0.0f; continue; }   /* ignored (negative) target */
        losses[n] = (float)((1.0 - label_smoothing) * (lse - x[y]) + label_smoothing * (lse - sum_x / V));
    }
}

static void textok__cross_entropy_backward(const textok_kernels *k, float *dlogits, const float *dlosses,
                                           const float *probs, const int32_t *targets, int N, int V,
                                           float label_smoothing)
{
    int n;
TEXTOK__PARALLEL_FOR(k, (size_t)N * V > 16384)
    for (n = 0; n < N; n++) {
        const float *p = probs + (size_t)n * V;
        float *dx = dlogits + (size_t)n * V, g = dlosses[n], off = label_smoothing / V;
        int c, y = targets[n];
        if (y < 0 || y >= V) continue;
        for (c = 0; c < V; c++) dx[c] += g * (p[c] - off - (c == y ? 1.0f - label_smoothing : 0.0f));
    }
}

/* ----- AdamW -------------------------------------------------------------------------------- */
/* In the order of torch.optim.AdamW (single-tensor path), so results agree to rounding:
     p *= 1 - lr*wd;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
     p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
   One function for both tables. */
static void textok__adamw_update(const textok_kernels *k, float *params, const float *grads, float *m,
                                 float *v, size_t n, const textok_adamw_params *hp, int step)
{
    long i, nn = (long)n;
    /* scalars formed in double, each rounded once to float, as PyTorch applies Python floats */
    const float b1 = (float)hp->beta1, b2 = (float)hp->beta2;
    const float one_minus_b1 = (float)(1.0 - hp->beta1), one_minus_b2 = (float)(1.0 - hp->beta2);
    const float step_size = (float)(hp->lr / (1.0 - pow(hp->beta1, step)));
    const float bc2_sqrt = (float)sqrt(1.0 - pow(hp->beta2, step));
    const float decay = (float)(1.0 - hp->lr * hp->weight_decay), eps = (float)hp->eps;
TEXTOK__PARALLEL_FOR(k, n > 65536)
    for (i = 0; i < nn; i++) {
        float g = grads[i];
        params[i] *= decay;
        m[i] = b1 * m[i] + one_minus_b1 * g;
        v[i] = b2 * v[i] + one_minus_b2 * g * g;
        params[i] -= step_size * m[i] / (sqrtf(v[i]) / bc2_sqrt + eps);
    }
}

/* ----- tanh, transpose, L2 normalisation, embedding, unpatchify, Gaussian sample ------------ */
/* Small ops the TiTok models need between the big ones. Each is memory-bound, so the naive loop
   is also the fast one: one function serves both tables. */

/* tanh; backward from the saved output: d tanh(x)/dx = 1 - y^2 */
static void textok__tanh_forward(const textok_kernels *k, float *out, const float *inp, size_t n)
{
    long i, nn = (long)n;
TEXTOK__PARALLEL_FOR(k, n > 65536)
    for (i = 0; i < nn; i++) out[i] = tanhf(inp[i]);
}

static void textok__tanh_backward(const textok_kernels *k, float *dinp, const float *dout,
                                  const float *out, size_t n)
{
    long i, nn = (long)n;
TEXTOK__PARALLEL_FOR(k, n > 65536)
    for (i = 0; i < nn; i++) dinp[i] += dout[i] * (1.0f - out[i] * out[i]);
}

/* out[b][c][r] = inp[b][r][c], in 32x32 tiles so that both sides stay in cache. The backward
   of a transpose is the transpose back, accumulated. */
#define TEXTOK__TR_TILE 32
static void textok__transpose_tiles(const textok_kernels *k, float *out, const float *inp,
                                    int B, int R, int C, int accumulate)
{
    int tiles_r = (R + TEXTOK__TR_TILE - 1) / TEXTOK__TR_TILE;
    int tiles_c = (C + TEXTOK__TR_TILE - 1) / TEXTOK__TR_TILE;
    long t, n_tiles = (long)B * tiles_r * tiles_c;
TEXTOK__PARALLEL_FOR(k, (size_t)B * R * C > 65536)
    for (t = 0; t < n_tiles; t++) {
        int b = (int)(t / ((long)tiles_r * tiles_c)), rem = (int)(t % ((long)tiles_r * tiles_c));
        int r0 = (rem / tiles_c) * TEXTOK__TR_TILE, c0 = (rem % tiles_c) * TEXTOK__TR_TILE;
        int r1 = r0 + TEXTOK__TR_TILE < R ? r0 + TEXTOK__TR_TILE : R;
        int c1 = c0 + TEXTOK__TR_TILE < C ? c0 + TEXTOK__TR_TILE : C, r, c;
        const float *src = inp + (size_t)b * R * C;
        float *dst = out + (size_t)b * R * C;
        for (c = c0; c < c1; c++)
            for (r = r0; r < r1; r++) {
                float x = src[(size_t)r * C + c];
                if (accumulate) dst[(size_t)c * R + r] += x; else dst[(size_t)c * R + r] = x;
            }
    }
}

static void textok__transpose_forward(const textok_kernels *k, float *out, const float *inp, int B, int R, int C)
{
    textok__transpose_tiles(k, out, inp, B, R, C, 0);
}

static void textok__transpose_backward(const textok_kernels *k, float *dinp, const float *dout, int B, int R, int C)
{
    textok__transpose_tiles(k, dinp, dout, B, C, R, 1);   /* dout is (B,C,R) */
}

/* F.normalize(x, dim=-1, eps): y = x / max(|x|, eps). Where |x| > eps the Jacobian is
   (I - y y^T) / |x|; below eps the denominator is the constant eps, so dx = dy / eps. */
static double textok__row_norm(const float *x, int C)
{
    double s = 0.0;
    int c;
    for (c = 0; c < C; c++) s += (double)x[c] * x[c];
    return sqrt(s);
}

static void textok__l2norm_forward(const textok_kernels *k, float *out, const float *inp, int N, int C, float eps)
{
    int i;
TEXTOK__PARALLEL_FOR(k, (size_t)N * C > 65536)
    for (i = 0; i < N; i++) {
        const float *x = inp + (size_t)i * C;
        float *y = out + (size_t)i * C;
        float nrm = (float)textok__row_norm(x, C), den = nrm > eps ? nrm : eps;
        int c;
        for (c = 0; c < C; c++) y[c] = x[c] / den;
    }
}

static void textok__l2norm_backward(const textok_kernels *k, float *dinp, const float *dout, const float *inp,
                                    int N, int C, float eps)
{
    int i;
TEXTOK__PARALLEL_FOR(k, (size_t)N * C > 65536)
    for (i = 0; i < N; i++) {
        const float *x = inp + (size_t)i * C, *dy = dout + (size_t)i * C;
        float *dx = dinp + (size_t)i * C;
        double nrm = textok__row_norm(x, C), ydy = 0.0;
        int c;
        if (!(nrm > eps)) {
            for (c = 0; c < C; c++) dx[c] += dy[c] / eps;
            continue;
        }
        for (c = 0; c < C; c++) ydy += (double)x[c] * dy[c];
        ydy /= nrm;                                   /* y . dy */
        for (c = 0; c < C; c++) dx[c] += (float)((dy[c] - (x[c] / nrm) * ydy) / nrm);
    }
}

/* Embedding lookup and its scatter-add. The backward walks the ids in order on one thread per
   column block, so duplicate ids accumulate in a fixed order whatever the thread count. */
static void textok__embedding_forward(const textok_kernels *k, float *out, const float *table,
                                      const int32_t *ids, int N, int D)
{
    int i;
TEXTOK__PARALLEL_FOR(k, (size_t)N * D > 65536)
    for (i = 0; i < N; i++) memcpy(out + (size_t)i * D, table + (size_t)ids[i] * D, (size_t)D * sizeof(float));
}

static void textok__embedding_backward(const textok_kernels *k, float *dtable, const float *dout,
                                       const int32_t *ids, int N, int D)
{
    int c0;
TEXTOK__PARALLEL_FOR(k, (size_t)N * D > 65536)
    for (c0 = 0; c0 < D; c0 += 64) {
        int c1 = c0 + 64 < D ? c0 + 64 : D, i, c;
        for (i = 0; i < N; i++)
            for (c = c0; c < c1; c++) dtable[(size_t)ids[i] * D + c] += dout[(size_t)i * D + c];
    }
}

/* out[b][c][y][x] = inp[b][(y/p)*(W/p) + x/p][((y%p)*p + x%p)*C + c]; the backward is the same
   index map read the other way (patchify), accumulated. */
static void textok__unpatchify(const textok_kernels *k, float *img, float *tok, int B, int C, int H, int W,
                               int p, int to_image)
{
    int gw = W / p, bc;
TEXTOK__PARALLEL_FOR(k, (size_t)B * C * H * W > 65536)
    for (bc = 0; bc < B * C; bc++) {
        int b = bc / C, c = bc % C, y, x;
        float *plane = img + (size_t)bc * H * W;
        const size_t tb = (size_t)b * (H / p) * gw * p * p * C;
        for (y = 0; y < H; y++)
            for (x = 0; x < W; x++) {
                size_t ti = tb + ((size_t)(y / p) * gw + x / p) * p * p * C + ((size_t)(y % p) * p + x % p) * C + c;
                if (to_image) plane[(size_t)y * W + x] = tok[ti];
                else tok[ti] += plane[(size_t)y * W + x];
            }
    }
}

static void textok__unpatchify_forward(const textok_kernels *k, float *out, const float *inp,
                                       int B, int C, int H, int W, int p)
{
    textok__unpatchify(k, out, (float *)inp, B, C, H, W, p, 1);   /* inp is only read */
}

static void textok__unpatchify_backward(const textok_kernels *k, float *dinp, const float *dout,
                                        int B, int C, int H, int W, int p)
{
    textok__unpatchify(k, (float *)dout, dinp, B, C, H, W, p, 0);  /* dout is only read */
}

/* Diagonal Gaussian reparameterisation, as DiagonalGaussianDistribution.sample():
   logvar clamped to [-30, 20], std = exp(0.5 logvar). */
#define TEXTOK__LOGVAR_MIN (-30.0f)
#define TEXTOK__LOGVAR_MAX 20.0f
static void textok__gaussian_sample_forward(const textok_kernels *k, float *z, const float *mean,
                                            const float *logvar, const float *noise, size_t n)
{
    long i, nn = (long)n;
TEXTOK__PARALLEL_FOR(k, n > 65536)
    for (i = 0; i < nn; i++) {
        float lv = logvar[i] < TEXTOK__LOGVAR_MIN ? TEXTOK__LOGVAR_MIN
                 : logvar[i] > TEXTOK__LOGVAR_MAX ? TEXTOK__LOGVAR_MAX : logvar[i];
        z[i] = mean[i] + expf(0.5f * lv) * noise[i];
    }
}

static void textok__gaussian_sample_backward(const textok_kernels *k, float *dmean, float *dlogvar,
                                             const float *dz, const float *logvar, const float *noise,
                                             size_t n)
{
    long i, nn = (long)n;
TEXTOK__PARALLEL_FOR(k, n > 65536)
    for (i = 0; i < nn; i++) {
        float lv = logvar[i];
        if (dmean) dmean[i] += dz[i];
        /* torch.clamp passes the gradient where min <= x <= max */
        if (dlogvar && lv >= TEXTOK__LOGVAR_MIN && lv <= TEXTOK__LOGVAR_MAX)
            dlogvar[i] += dz[i] * noise[i] * 0.5f * expf(0.5f * lv);
    }
}

/* ----- training helpers: fill, scale, sums of squares, EMA, reconstruction loss, KL ----------
   The reductions (sum_squares, diff_loss, kl) return one float in device memory. The naive
   versions sum in double in index order; the fast versions split the n elements into
   TEXTOK__RED_BLOCKS contiguous blocks fixed by n alone, sum each block in double (in
   parallel), then add the block sums in order: the result never depends on the thread count. */
#define TEXTOK__RED_BLOCKS 64

static void textok__fill(const textok_kernels *k, float *x, size_t n, float value)
{
    long i, nn = (long)n;
TEXTOK__PARALLEL_FOR(k, n > 262144)
    for (i = 0; i < nn; i++) x[i] = value;
}

static void textok__scale(const textok_kernels *k, float *x, size_t n, float s)
{
    long i, nn = (long)n;
TEXTOK__PARALLEL_FOR(k, n > 262144)
    for (i = 0; i < nn; i++) x[i] *= s;
}

/* ema -= omd * (ema - p): the form of torch's EMAModel.step (s_param.sub_(one_minus_decay *
   (s_param - param))), rounded the same way */
static void textok__ema_update(const textok_kernels *k, float *ema, const float *p, size_t n,
                               float one_minus_decay)
{
    long i, nn = (long)n;
TEXTOK__PARALLEL_FOR(k, n > 262144)
    for (i = 0; i < nn; i++) ema[i] -= one_minus_decay * (ema[i] - p[i]);
}

/* The per-element terms of the three reductions; kind selects one. */
enum { TEXTOK__RED_SQ, TEXTOK__RED_L2, TEXTOK__RED_L1, TEXTOK__RED_KL };
static double textok__red_term(int kind, const float *x, const float *y, size_t i)
{
    switch (kind) {
    case TEXTOK__RED_SQ: return (double)x[i] * x[i];
    case TEXTOK__RED_L2: { float d = x[i] - y[i]; return (double)d * d; }
    case TEXTOK__RED_L1: { float d = x[i] - y[i]; return fabs((double)d); }
    default: {   /* x = mean, y = logvar: mean^2 + exp(lv) - 1 - lv with lv clamped */
        float lv = y[i] < TEXTOK__LOGVAR_MIN ? TEXTOK__LOGVAR_MIN : y[i] > TEXTOK__LOGVAR_MAX ? TEXTOK__LOGVAR_MAX : y[i];
        return (double)x[i] * x[i] + exp((double)lv) - 1.0 - lv;
    }
    }
}
static double textok__reduce_ref(int kind, const float *x, const float *y, size_t n)
{
    double s = 0.0;
    size_t i;
    for (i = 0; i < n; i++) s += textok__red_term(kind, x, y, i);
    return s;
}
static double textok__reduce_fast(const textok_kernels *k, int kind, const float *x, const float *y, size_t n)
{
    double part[TEXTOK__RED_BLOCKS], s = 0.0;
    int b;
TEXTOK__PARALLEL_FOR(k, n > 65536)
    for (b = 0; b < TEXTOK__RED_BLOCKS; b++) {
        size_t i, lo = n / TEXTOK__RED_BLOCKS * (size_t)b + (n % TEXTOK__RED_BLOCKS < (size_t)b ? n % TEXTOK__RED_BLOCKS : (size_t)b);
        size_t len = n / TEXTOK__RED_BLOCKS + ((size_t)b < n % TEXTOK__RED_BLOCKS);
        double acc = 0.0;
        for (i = lo; i < lo + len; i++) acc += textok__red_term(kind, x, y, i);
        part[b] = acc;
    }
    for (b = 0; b < TEXTOK__RED_BLOCKS; b++) s += part[b];
    return s;
}

/* out[0] = sum x^2 (the squared global gradient norm, one tensor at a time) */
static void textok__sum_squares_ref(const textok_kernels *k, float *out, const float *x, size_t n)
{ (void)k; out[0] = (float)textok__reduce_ref(TEXTOK__RED_SQ, x, NULL, n); }
static void textok__sum_squares(const textok_kernels *k, float *out, const float *x, size_t n)
{ out[0] = (float)textok__reduce_fast(k, TEXTOK__RED_SQ, x, NULL, n); }

/* reconstruction loss, as F.mse_loss / F.l1_loss with reduction='mean' */
static void textok__diff_loss_forward_ref(const textok_kernels *k, float *loss, const float *x, const float *y,
                                          size_t n, int l1)
{ (void)k; loss[0] = n ? (float)(textok__reduce_ref(l1 ? TEXTOK__RED_L1 : TEXTOK__RED_L2, x, y, n) / (double)n) : 0.0f; }
static void textok__diff_loss_forward(const textok_kernels *k, float *loss, const float *x, const float *y,
                                      size_t n, int l1)
{ loss[0] = n ? (float)(textok__reduce_fast(k, l1 ? TEXTOK__RED_L1 : TEXTOK__RED_L2, x, y, n) / (double)n) : 0.0f; }

/* dx += scale * 2 (x - y) / n   or   scale * sign(x - y) / n  (sign(0) = 0, as torch) */
static void textok__diff_loss_backward(const textok_kernels *k, float *dx, const float *x, const float *y,
                                       size_t n, int l1, float scale)
{
    long i, nn = (long)n;
    const float g = n ? (l1 ? scale / (float)n : 2.0f * scale / (float)n) : 0.0f;
TEXTOK__PARALLEL_FOR(k, n > 262144)
    for (i = 0; i < nn; i++) {
        float d = x[i] - y[i];
        dx[i] += l1 ? (d > 0.0f ? g : d < 0.0f ? -g : 0.0f) : g * d;
    }
}

/* KL(N(mean, exp(lv)) || N(0, 1)) summed over n: 0.5 sum(mean^2 + exp(lv) - 1 - lv), lv =
   clamp(logvar, -30, 20), as DiagonalGaussianDistribution.kl() */
static void textok__kl_forward_ref(const textok_kernels *k, float *loss, const float *mean, const float *logvar, size_t n)
{ (void)k; loss[0] = (float)(0.5 * textok__reduce_ref(TEXTOK__RED_KL, mean, logvar, n)); }
static void textok__kl_forward(const textok_kernels *k, float *loss, const float *mean, const float *logvar, size_t n)
{ loss[0] = (float)(0.5 * textok__reduce_fast(k, TEXTOK__RED_KL, mean, logvar, n)); }

/* dmean += scale mean; dlogvar += scale 0.5 (exp(lv) - 1) where logvar is inside the clamp */
static void textok__kl_backward(const textok_kernels *k, float *dmean, float *dlogvar, const float *mean,
                                const float *logvar, size_t n, float scale)
{
    long i, nn = (long)n;
TEXTOK__PARALLEL_FOR(k, n > 262144)
    for (i = 0; i < nn; i++) {
        float lv = logvar[i];
        if (dmean) dmean[i] += scale * mean[i];
        if (dlogvar && lv >= TEXTOK__LOGVAR_MIN && lv <= TEXTOK__LOGVAR_MAX)
            dlogvar[i] += scale * 0.5f * (expf(lv) - 1.0f);
    }
}

/* ----- leaky ReLU, adaptive max pooling, the LPIPS layer (for the loss networks) ------------ */
/* The _ref versions are the plain loops on one thread; the fast ones thread them (and, for the
   LPIPS layer, reorder the loops so that the inner loop runs along contiguous pixels). */

/* Leaky ReLU, slope 0 = ReLU. The backward reads only the sign of `inp`; for slope >= 0 the
   output has the same sign test (out > 0 exactly where inp > 0), so a caller may pass the saved
   output instead: that is what lets the networks apply it in place and keep one buffer. */
static void textok__leaky_relu_forward_ref(const textok_kernels *k, float *out, const float *inp, size_t n,
                                           float slope)
{
    size_t i;
    (void)k;
    for (i = 0; i < n; i++) out[i] = inp[i] > 0.0f ? inp[i] : slope * inp[i];
}

static void textok__leaky_relu_backward_ref(const textok_kernels *k, float *dinp, const float *dout,
                                            const float *inp, size_t n, float slope)
{
    size_t i;
    (void)k;
    for (i = 0; i < n; i++) dinp[i] += inp[i] > 0.0f ? dout[i] : slope * dout[i];
}

static void textok__leaky_relu_forward(const textok_kernels *k, float *out, const float *inp, size_t n,
                                       float slope)
{
    long i, nn = (long)n;
TEXTOK__PARALLEL_FOR(k, n > 65536)
    for (i = 0; i < nn; i++) out[i] = inp[i] > 0.0f ? inp[i] : slope * inp[i];
}

static void textok__leaky_relu_backward(const textok_kernels *k, float *dinp, const float *dout,
                                        const float *inp, size_t n, float slope)
{
    long i, nn = (long)n;
TEXTOK__PARALLEL_FOR(k, n > 65536)
    for (i = 0; i < nn; i++) dinp[i] += inp[i] > 0.0f ? dout[i] : slope * dout[i];
}

/* Adaptive max pooling, nn.AdaptiveMaxPool2d: output row i reads input rows
   [floor(i H / OH), ceil((i+1) H / OH)), likewise columns. The argmax is the first maximal
   element in row-major order, a NaN wins (and the last NaN of a window stays), as torch's CPU
   kernel scans. Backward recomputes that argmax from inp; overlapping windows (H not a multiple
   of OH) add into the same input element, in output order. */
static size_t textok__pool_argmax(const float *plane, int H, int W, int OH, int OW, int i, int j)
{
    int y0 = (int)(((long)i * H) / OH), y1 = (int)(((long)(i + 1) * H + OH - 1) / OH);
    int x0 = (int)(((long)j * W) / OW), x1 = (int)(((long)(j + 1) * W + OW - 1) / OW), y, x;
    size_t best = (size_t)y0 * W + x0;
    float m = plane[best];
    for (y = y0; y < y1; y++)
        for (x = x0; x < x1; x++) {
            float v = plane[(size_t)y * W + x];
            if (v > m || isnan(v)) { m = v; best = (size_t)y * W + x; }
        }
    return best;
}

static void textok__maxpool_forward_ref(const textok_kernels *k, float *out, const float *inp,
                                        int BC, int H, int W, int OH, int OW)
{
    int p, i, j;
    (void)k;
    for (p = 0; p < BC; p++) {
        const float *plane = inp + (size_t)p * H * W;
        for (i = 0; i < OH; i++)
            for (j = 0; j < OW; j++)
                out[((size_t)p * OH + i) * OW + j] = plane[textok__pool_argmax(plane, H, W, OH, OW, i, j)];
    }
}

static void textok__maxpool_backward_ref(const textok_kernels *k, float *dinp, const float *dout,
                                         const float *inp, int BC, int H, int W, int OH, int OW)
{
    int p, i, j;
    (void)k;
    for (p = 0; p < BC; p++) {
        const float *plane = inp + (size_t)p * H * W;
        for (i = 0; i < OH; i++)
            for (j = 0; j < OW; j++)
                dinp[(size_t)p * H * W + textok__pool_argmax(plane, H, W, OH, OW, i, j)] += dout[((size_t)p * OH + i) * OW + j];
    }
}

/* Fast: one plane per thread, so overlapping windows still add in output order. */
static void textok__maxpool_forward(const textok_kernels *k, float *out, const float *inp,
                                    int BC, int H, int W, int OH, int OW)
{
    int p;
TEXTOK__PARALLEL_FOR(k, (size_t)BC * H * W > 65536)
    for (p = 0; p < BC; p++) {
        const float *plane = inp + (size_t)p * H * W;
        int i, j;
        for (i = 0; i < OH; i++)
            for (j = 0; j < OW; j++)
                out[((size_t)p * OH + i) * OW + j] = plane[textok__pool_argmax(plane, H, W, OH, OW, i, j)];
    }
}

static void textok__maxpool_backward(const textok_kernels *k, float *dinp, const float *dout,
                                     const float *inp, int BC, int H, int W, int OH, int OW)
{
    int p;
TEXTOK__PARALLEL_FOR(k, (size_t)BC * H * W > 65536)
    for (p = 0; p < BC; p++) {
        const float *plane = inp + (size_t)p * H * W;
        int i, j;
        for (i = 0; i < OH; i++)
            for (j = 0; j < OW; j++)
                dinp[(size_t)p * H * W + textok__pool_argmax(plane, H, W, OH, OW, i, j)] += dout[((size_t)p * OH + i) * OW + j];
    }
}

/* One LPIPS layer (architecture.md 6). Per pixel, s_i = |f_i| over channels and
   n_i = f_i / (s_i + 1e-10) (the eps is added to the norm, as lpips normalize_tensor);
   d[b] = mean over pixels of sum_c w_c (n0_c - n1_c)^2.
   Backward, per pixel with g_c = dd[b] / HW * 2 w_c (n0_c - n1_c) = dD/dn0_c = -dD/dn1_c:
      df0_j += r0 g_j - f0_j r0^2 / s0 sum_c g_c f0_c,   r0 = 1 / (s0 + 1e-10),
   and df1 the same with f1, r1, s1 and -g. Where a pixel's features are all zero (s = 0) the
   norm has no derivative (torch gives NaN there, which the ReLU before the tap masks out); we
   keep the finite r g term, which that same ReLU then zeroes. */
#define TEXTOK__LPIPS_EPS 1e-10

static void textok__lpips_layer_forward_ref(const textok_kernels *k, float *d, const float *f0, const float *f1,
                                            const float *w, int B, int C, int HW)
{
    int b, p, c;
    (void)k;
    for (b = 0; b < B; b++) {
        const float *x0 = f0 + (size_t)b * C * HW, *x1 = f1 + (size_t)b * C * HW;
        double acc = 0.0;
        for (p = 0; p < HW; p++) {
            double s0 = 0.0, s1 = 0.0, r0, r1, dsum = 0.0;
            for (c = 0; c < C; c++) {
                s0 += (double)x0[(size_t)c * HW + p] * x0[(size_t)c * HW + p];
                s1 += (double)x1[(size_t)c * HW + p] * x1[(size_t)c * HW + p];
            }
            r0 = 1.0 / (sqrt(s0) + TEXTOK__LPIPS_EPS);
            r1 = 1.0 / (sqrt(s1) + TEXTOK__LPIPS_EPS);
            for (c = 0; c < C; c++) {
                double t = x0[(size_t)c * HW + p] * r0 - x1[(size_t)c * HW + p] * r1;
                dsum += w[c] * t * t;
            }
            acc += dsum;
        }
        d[b] = (float)(acc / HW);
    }
}

static void textok__lpips_layer_backward_ref(const textok_kernels *k, float *df0, float *df1, const float *dd,
                                             const float *f0, const float *f1, const float *w,
                                             int B, int C, int HW)
{
    int b, p, c;
    (void)k;
    for (b = 0; b < B; b++) {
        const float *x0 = f0 + (size_t)b * C * HW, *x1 = f1 + (size_t)b * C * HW;
        const double scale = 2.0 * dd[b] / HW;
        for (p = 0; p < HW; p++) {
            double s0 = 0.0, s1 = 0.0, r0, r1, a0 = 0.0, a1 = 0.0, q0, q1;
            for (c = 0; c < C; c++) {
                s0 += (double)x0[(size_t)c * HW + p] * x0[(size_t)c * HW + p];
                s1 += (double)x1[(size_t)c * HW + p] * x1[(size_t)c * HW + p];
            }
            s0 = sqrt(s0); s1 = sqrt(s1);
            r0 = 1.0 / (s0 + TEXTOK__LPIPS_EPS);
            r1 = 1.0 / (s1 + TEXTOK__LPIPS_EPS);
            for (c = 0; c < C; c++) {   /* a_i = sum_c g_c f_i,c */
                size_t o = (size_t)c * HW + p;
                double g = scale * w[c] * (x0[o] * r0 - x1[o] * r1);
                a0 += g * x0[o];
                a1 += g * x1[o];
            }
            q0 = s0 > 0.0 ? a0 * r0 * r0 / s0 : 0.0;
            q1 = s1 > 0.0 ? a1 * r1 * r1 / s1 : 0.0;
            for (c = 0; c < C; c++) {
                size_t o = (size_t)c * HW + p;
                double g = scale * w[c] * (x0[o] * r0 - x1[o] * r1);
                if (df0) df0[(size_t)b * C * HW + o] += (float)(r0 * g - x0[o] * q0);
                if (df1) df1[(size_t)b * C * HW + o] += (float)(-r1 * g + x1[o] * q1);
            }
        }
    }
}

/* Fast: the same per-pixel math on blocks of TEXTOK__LP_PIX pixels, channel loop outside and the
   pixel loop inside (contiguous). The forward's pixel sum is split into TEXTOK__LP_SLICES fixed
   slices summed in order, so the result does not depend on the thread count. */
#define TEXTOK__LP_PIX    64
#define TEXTOK__LP_SLICES 64

/* per-pixel 1 / (|f| + eps) and |f| of pixels [p0, p0+np) of one image */
static void textok__lp_norms(const float *x, int C, int HW, int p0, int np, double *s, double *r)
{
    int c, p;
    for (p = 0; p < np; p++) s[p] = 0.0;
    for (c = 0; c < C; c++) {
        const float *xc = x + (size_t)c * HW + p0;
        for (p = 0; p < np; p++) s[p] += (double)xc[p] * xc[p];
    }
    for (p = 0; p < np; p++) { s[p] = sqrt(s[p]); r[p] = 1.0 / (s[p] + TEXTOK__LPIPS_EPS); }
}

static void textok__lpips_layer_forward(const textok_kernels *k, float *d, const float *f0, const float *f1,
                                        const float *w, int B, int C, int HW)
{
    int b;
    for (b = 0; b < B; b++) {
        const float *x0 = f0 + (size_t)b * C * HW, *x1 = f1 + (size_t)b * C * HW;
        double part[TEXTOK__LP_SLICES], acc = 0.0;
        int sl;
TEXTOK__PARALLEL_FOR(k, (size_t)C * HW > 16384)
        for (sl = 0; sl < TEXTOK__LP_SLICES; sl++) {
            int q0 = (int)((long)HW * sl / TEXTOK__LP_SLICES), q1 = (int)((long)HW * (sl + 1) / TEXTOK__LP_SLICES), p0;
            double sum = 0.0;
            for (p0 = q0; p0 < q1; p0 += TEXTOK__LP_PIX) {
                double s0[TEXTOK__LP_PIX], s1[TEXTOK__LP_PIX], r0[TEXTOK__LP_PIX], r1[TEXTOK__LP_PIX], acc_p[TEXTOK__LP_PIX];
                int np = q1 - p0 < TEXTOK__LP_PIX ? q1 - p0 : TEXTOK__LP_PIX, c, p;
                textok__lp_norms(x0, C, HW, p0, np, s0, r0);
                textok__lp_norms(x1, C, HW, p0, np, s1, r1);
                for (p = 0; p < np; p++) acc_p[p] = 0.0;
                for (c = 0; c < C; c++) {
                    const float *a = x0 + (size_t)c * HW + p0, *bb = x1 + (size_t)c * HW + p0;
                    for (p = 0; p < np; p++) {
                        double t = a[p] * r0[p] - bb[p] * r1[p];
                        acc_p[p] += w[c] * t * t;
                    }
                }
                for (p = 0; p < np; p++) sum += acc_p[p];
            }
            part[sl] = sum;
        }
        for (sl = 0; sl < TEXTOK__LP_SLICES; sl++) acc += part[sl];
        d[b] = (float)(acc / HW);
    }
}

static void textok__lpips_layer_backward(const textok_kernels *k, float *df0, float *df1, const float *dd,
                                         const float *f0, const float *f1, const float *w,
                                         int B, int C, int HW)
{
    const int nblk = (HW + TEXTOK__LP_PIX - 1) / TEXTOK__LP_PIX;
    long t, n_tasks = (long)B * nblk;
TEXTOK__PARALLEL_FOR(k, (size_t)B * C * HW > 16384)
    for (t = 0; t < n_tasks; t++) {   /* tasks write disjoint pixels */
        const int b = (int)(t / nblk), p0 = (int)(t % nblk) * TEXTOK__LP_PIX;
        const int np = HW - p0 < TEXTOK__LP_PIX ? HW - p0 : TEXTOK__LP_PIX;
        const float *x0 = f0 + (size_t)b * C * HW, *x1 = f1 + (size_t)b * C * HW;
        const double scale = 2.0 * dd[b] / HW;
        double s0[TEXTOK__LP_PIX], s1[TEXTOK__LP_PIX], r0[TEXTOK__LP_PIX], r1[TEXTOK__LP_PIX];
        double a0[TEXTOK__LP_PIX], a1[TEXTOK__LP_PIX];
        int c, p;
        textok__lp_norms(x0, C, HW, p0, np, s0, r0);
        textok__lp_norms(x1, C, HW, p0, np, s1, r1);
        for (p = 0; p < np; p++) a0[p] = a1[p] = 0.0;
        for (c = 0; c < C; c++) {
            const float *u = x0 + (size_t)c * HW + p0, *v = x1 + (size_t)c * HW + p0;
            for (p = 0; p < np; p++) {
                double g = scale * w[c] * (u[p] * r0[p] - v[p] * r1[p]);
                a0[p] += g * u[p];
                a1[p] += g * v[p];
            }
        }
        for (p = 0; p < np; p++) {   /* a_i becomes the coefficient r_i^2 / s_i sum_c g_c f_i,c */
            a0[p] = s0[p] > 0.0 ? a0[p] * r0[p] * r0[p] / s0[p] : 0.0;
            a1[p] = s1[p] > 0.0 ? a1[p] * r1[p] * r1[p] / s1[p] : 0.0;
        }
        for (c = 0; c < C; c++) {
            const size_t o = ((size_t)b * C + c) * HW + p0;
            const float *u = f0 + o, *v = f1 + o;
            for (p = 0; p < np; p++) {
                double g = scale * w[c] * (u[p] * r0[p] - v[p] * r1[p]);
                if (df0) df0[o + p] += (float)(r0[p] * g - u[p] * a0[p]);
                if (df1) df1[o + p] += (float)(-r1[p] * g + v[p] * a1[p]);
            }
        }
    }
}

/* ---------------------------------------------------------------------------------------------
   6. The CPU kernel tables */

static void *textok__cpu_alloc(const textok_kernels *k, size_t bytes) { (void)k; return textok__malloc(bytes); }
static void  textok__cpu_free(const textok_kernels *k, void *p) { (void)k; TEXTOK_FREE(p); }
static int   textok__cpu_copy(const textok_kernels *k, void *dst, const void *src, size_t bytes)
{
    (void)k;
    if (bytes) memcpy(dst, src, bytes);
    return TEXTOK_OK;
}

/* Positional initialisers with the field name in a comment keep this valid C89..C++ (ggml). */
TEXTOKDEF textok_kernels textok_cpu_ref_kernels(void)
{
    textok_kernels k = {
        /* .name                   = */ "cpu-ref",
        /* .n_threads              = */ 1,
        /* .state                  = */ NULL,
        /* .alloc                  = */ textok__cpu_alloc,
        /* .free                   = */ textok__cpu_free,
        /* .to_device              = */ textok__cpu_copy,
        /* .to_host                = */ textok__cpu_copy,
        /* .copy                   = */ textok__cpu_copy,
        /* .matmul_forward         = */ textok__matmul_forward_ref,
        /* .matmul_backward        = */ textok__matmul_backward_ref,
        /* .layernorm_forward      = */ textok__layernorm_forward,
        /* .layernorm_backward     = */ textok__layernorm_backward,
        /* .rmsnorm_forward        = */ textok__rmsnorm_forward,
        /* .rmsnorm_backward       = */ textok__rmsnorm_backward,
        /* .gelu_forward           = */ textok__gelu_forward_ref,
        /* .gelu_backward          = */ textok__gelu_backward_ref,
        /* .silu_forward           = */ textok__silu_forward,
        /* .silu_backward          = */ textok__silu_backward,
        /* .softmax_forward        = */ textok__softmax_forward,
        /* .softmax_backward       = */ textok__softmax_backward,
        /* .attention_forward      = */ textok__attention_forward_ref,
        /* .attention_backward     = */ textok__attention_backward_ref,
        /* .add_forward            = */ textok__add_forward,
        /* .add_backward           = */ textok__add_backward,
        /* .modulate_forward       = */ textok__modulate_forward,
        /* .modulate_backward      = */ textok__modulate_backward,
        /* .gate_forward           = */ textok__gate_forward,
        /* .gate_backward          = */ textok__gate_backward,
        /* .conv2d_forward         = */ textok__conv2d_forward_ref,
        /* .conv2d_backward        = */ textok__conv2d_backward_ref,
        /* .groupnorm_forward      = */ textok__groupnorm_forward,
        /* .groupnorm_backward     = */ textok__groupnorm_backward,
        /* .upsample_forward       = */ textok__upsample_forward,
        /* .upsample_backward      = */ textok__upsample_backward,
        /* .codebook_search        = */ textok__codebook_search_ref,
        /* .cross_entropy_forward  = */ textok__cross_entropy_forward,
        /* .cross_entropy_backward = */ textok__cross_entropy_backward,
        /* .adamw_update           = */ textok__adamw_update,
        /* .tanh_forward           = */ textok__tanh_forward,
        /* .tanh_backward          = */ textok__tanh_backward,
        /* .transpose_forward      = */ textok__transpose_forward,
        /* .transpose_backward     = */ textok__transpose_backward,
        /* .l2norm_forward         = */ textok__l2norm_forward,
        /* .l2norm_backward        = */ textok__l2norm_backward,
        /* .embedding_forward      = */ textok__embedding_forward,
        /* .embedding_backward     = */ textok__embedding_backward,
        /* .unpatchify_forward     = */ textok__unpatchify_forward,
        /* .unpatchify_backward    = */ textok__unpatchify_backward,
        /* .gaussian_sample_forward  = */ textok__gaussian_sample_forward,
        /* .gaussian_sample_backward = */ textok__gaussian_sample_backward,
        /* .fill                   = */ textok__fill,
        /* .scale                  = */ textok__scale,
        /* .sum_squares            = */ textok__sum_squares_ref,
        /* .ema_update             = */ textok__ema_update,
        /* .diff_loss_forward      = */ textok__diff_loss_forward_ref,
        /* .diff_loss_backward     = */ textok__diff_loss_backward,
        /* .kl_forward             = */ textok__kl_forward_ref,
        /* .kl_backward            = */ textok__kl_backward,
        /* .leaky_relu_forward     = */ textok__leaky_relu_forward_ref,
        /* .leaky_relu_backward    = */ textok__leaky_relu_backward_ref,
        /* .maxpool_forward        = */ textok__maxpool_forward_ref,
        /* .maxpool_backward       = */ textok__maxpool_backward_ref,
        /* .lpips_layer_forward    = */ textok__lpips_layer_forward_ref,
        /* .lpips_layer_backward   = */ textok__lpips_layer_backward_ref
    };
    return k;
}

/* The fast table: the reference table with GEMM-based (and, for the loss-network kernels,
   threaded) kernels swapped in, and threads on.
   With OpenBLAS the thread count is also handed to OpenBLAS (a process-wide setting of it). */
#if defined(TEXTOK_USE_BLAS) && defined(OPENBLAS_VERSION)
#define TEXTOK__SET_BLAS_THREADS(n) openblas_set_num_threads(n)
#else
#define TEXTOK__SET_BLAS_THREADS(n) ((void)(n))
#endif
TEXTOKDEF textok_kernels textok_cpu_kernels_simd(int n_threads, const char *simd)
{
    static const char *const names[TEXTOK__GEMM_NKINDS] = { "cpu-portable", "cpu-blas", "cpu-avx2", "cpu-avx512" };
    textok_kernels k = textok_cpu_ref_kernels();
    int kind = textok__gemm_pick(simd && *simd ? simd : getenv("TEXTOK_SIMD"));
    k.name = names[kind];
    k.state = (void *)&textok__gemm_kinds[kind];   /* read only: the table's GEMM level */
    k.n_threads = n_threads > 0 ? n_threads : textok_default_threads();
    TEXTOK__SET_BLAS_THREADS(k.n_threads);
    k.matmul_forward = textok__matmul_forward;
    k.matmul_backward = textok__matmul_backward;
    k.gelu_forward = textok__gelu_forward;
    k.gelu_backward = textok__gelu_backward;
    k.attention_forward = textok__attention_forward;
    k.attention_backward = textok__attention_backward;
    k.conv2d_forward = textok__conv2d_forward;
    k.conv2d_backward = textok__conv2d_backward;
    k.codebook_search = textok__codebook_search;
    k.sum_squares = textok__sum_squares;
    k.diff_loss_forward = textok__diff_loss_forward;
    k.kl_forward = textok__kl_forward;
    k.leaky_relu_forward = textok__leaky_relu_forward;
    k.leaky_relu_backward = textok__leaky_relu_backward;
    k.maxpool_forward = textok__maxpool_forward;
    k.maxpool_backward = textok__maxpool_backward;
    k.lpips_layer_forward = textok__lpips_layer_forward;
    k.lpips_layer_backward = textok__lpips_layer_backward;
    return k;
}
TEXTOKDEF textok_kernels textok_cpu_kernels(int n_threads) { return textok_cpu_kernels_simd(n_threads, NULL); }

/* ---------------------------------------------------------------------------------------------
   7. textok_kernels_compare. Each case names a kernel family, a shape, its buffers (inputs,
   then outputs) and a run function that calls the family's forward and backward through a table.
   The harness makes the inputs and the initial contents of every output (random, the same for
   both tables: backward kernels accumulate, and this checks that they do), uploads them into
   buffers with canary bytes on both sides, runs, downloads, and compares the test table's
   outputs with the reference table's. At the end of the section: the image metrics
   (textok_image_metrics), which compare two images rather than two tables. */

enum {
    TEXTOK__IN_F32,    /* random normal input */
    TEXTOK__IN_I32,    /* class targets in [0, range), about 1 in 8 set to -1 (ignored) */
    TEXTOK__IN_IDS,    /* row ids in [0, range), repeats likely (embedding) */
    TEXTOK__IN_MASK,   /* key mask bytes, rows of `range` keys, 3 in 4 on, first key always on */
    TEXTOK__OUT_F32,   /* output compared by error figures; starts random normal (|normal| if range 1) */
    TEXTOK__OUT_IDX,   /* int32 codebook indices: equal, or equally near within rounding */
    TEXTOK__SCRATCH    /* work buffer: only its canaries are checked */
};
#define TEXTOK__CMP_MAXBUF 16
#define TEXTOK__CMP_CANARY 256   /* bytes on each side of every buffer */
#define TEXTOK__CMP_BYTE   0xA5

typedef struct textok__cmp_case textok__cmp_case;
struct textok__cmp_case {
    const char *kernel;
    char        shape[64];
    int         dims[10];
    float       fdim;                        /* eps, label smoothing, ... */
    double      tol;                         /* NMSE threshold for every output of the case */
    int         n_buf;
    const char *name[TEXTOK__CMP_MAXBUF];
    int         kind[TEXTOK__CMP_MAXBUF];
    size_t      count[TEXTOK__CMP_MAXBUF];   /* elements */
    int         range[TEXTOK__CMP_MAXBUF];
    int (*run)(const textok_kernels *k, const textok__cmp_case *c, void **buf);  /* 1 = unsupported */
};

#define TEXTOK__F(p) ((float *)(p))

static int textok__cmp_run_matmul(const textok_kernels *k, const textok__cmp_case *c, void **b)
{
    textok_matmul_dims d;
    int has_bias = c->dims[6];
    if (!k->matmul_forward || !k->matmul_backward) return 1;
    d.batch = c->dims[0]; d.M = c->dims[1]; d.N = c->dims[2]; d.K = c->dims[3];
    d.trans_a = c->dims[4]; d.trans_b = c->dims[5];
    /* buffers: a b bias dout | out da db dbias */
    k->matmul_forward(k, TEXTOK__F(b[4]), TEXTOK__F(b[0]), TEXTOK__F(b[1]), has_bias ? TEXTOK__F(b[2]) : NULL, &d);
    k->matmul_backward(k, TEXTOK__F(b[5]), TEXTOK__F(b[6]), has_bias ? TEXTOK__F(b[7]) : NULL,
                       TEXTOK__F(b[3]), TEXTOK__F(b[0]), TEXTOK__F(b[1]), &d);
    return 0;
}

static int textok__cmp_run_layernorm(const textok_kernels *k, const textok__cmp_case *c, void **b)
{
    int N = c->dims[0], C = c->dims[1], affine = c->dims[2];
    if (!k->layernorm_forward || !k->layernorm_backward) return 1;
    /* x w bias dout | out mean rstd dx dw db */
    k->layernorm_forward(k, TEXTOK__F(b[4]), TEXTOK__F(b[5]), TEXTOK__F(b[6]), TEXTOK__F(b[0]),
                         affine ? TEXTOK__F(b[1]) : NULL, affine ? TEXTOK__F(b[2]) : NULL, N, C, c->fdim);
    k->layernorm_backward(k, TEXTOK__F(b[7]), affine ? TEXTOK__F(b[8]) : NULL, affine ? TEXTOK__F(b[9]) : NULL,
                          TEXTOK__F(b[3]), TEXTOK__F(b[0]), affine ? TEXTOK__F(b[1]) : NULL,
                          TEXTOK__F(b[5]), TEXTOK__F(b[6]), N, C);
    return 0;
}

static int textok__cmp_run_rmsnorm(const textok_kernels *k, const textok__cmp_case *c, void **b)
{
    int N = c->dims[0], C = c->dims[1];
    if (!k->rmsnorm_forward || !k->rmsnorm_backward) return 1;
    /* x w dout | out rstd dx dw */
    k->rmsnorm_forward(k, TEXTOK__F(b[3]), TEXTOK__F(b[4]), TEXTOK__F(b[0]), TEXTOK__F(b[1]), N, C, c->fdim);
    k->rmsnorm_backward(k, TEXTOK__F(b[5]), TEXTOK__F(b[6]), TEXTOK__F(b[2]), TEXTOK__F(b[0]), TEXTOK__F(b[1]),
                        TEXTOK__F(b[4]), N, C);
    return 0;
}

static int textok__cmp_run_gelu(const textok_kernels *k, const textok__cmp_case *c, void **b)
{
    size_t n = (size_t)c->dims[0];
    if (!k->gelu_forward || !k->gelu_backward) return 1;
    /* x dout | out dx */
    k->gelu_forward(k, TEXTOK__F(b[2]), TEXTOK__F(b[0]), n, c->dims[1]);
    k->gelu_backward(k, TEXTOK__F(b[3]), TEXTOK__F(b[1]), TEXTOK__F(b[0]), n, c->dims[1]);
    return 0;
}

static int textok__cmp_run_silu(const textok_kernels *k, const textok__cmp_case *c, void **b)
{
    size_t n = (size_t)c->dims[0];
    if (!k->silu_forward || !k->silu_backward) return 1;
    k->silu_forward(k, TEXTOK__F(b[2]), TEXTOK__F(b[0]), n);
    k->silu_backward(k, TEXTOK__F(b[3]), TEXTOK__F(b[1]), TEXTOK__F(b[0]), n);
    return 0;
}

static int textok__cmp_run_softmax(const textok_kernels *k, const textok__cmp_case *c, void **b)
{
    if (!k->softmax_forward || !k->softmax_backward) return 1;
    k->softmax_forward(k, TEXTOK__F(b[2]), TEXTOK__F(b[0]), c->dims[0], c->dims[1]);
    k->softmax_backward(k, TEXTOK__F(b[3]), TEXTOK__F(b[1]), TEXTOK__F(b[2]), c->dims[0], c->dims[1]);
    return 0;
}

static int textok__cmp_run_attention(const textok_kernels *k, const textok__cmp_case *c, void **b)
{
    textok_attention_dims d;
    int has_bias = c->dims[5], has_mask = c->dims[6];
    if (!k->attention_forward || !k->attention_backward) return 1;
    d.B = c->dims[0]; d.Tq = c->dims[1]; d.Tk = c->dims[2]; d.C = c->dims[3]; d.H = c->dims[4];
    d.scale = 1.0f / sqrtf((float)(d.C / d.H));
    /* q key v bias mask dout | out lse dq dkey dv dbias work */
    k->attention_forward(k, TEXTOK__F(b[6]), TEXTOK__F(b[7]), TEXTOK__F(b[0]), TEXTOK__F(b[1]), TEXTOK__F(b[2]),
                         has_bias ? TEXTOK__F(b[3]) : NULL, has_mask ? (const unsigned char *)b[4] : NULL,
                         &d, TEXTOK__F(b[12]));
    k->attention_backward(k, TEXTOK__F(b[8]), TEXTOK__F(b[9]), TEXTOK__F(b[10]), has_bias ? TEXTOK__F(b[11]) : NULL,
                          TEXTOK__F(b[5]), TEXTOK__F(b[0]), TEXTOK__F(b[1]), TEXTOK__F(b[2]),
                          has_bias ? TEXTOK__F(b[3]) : NULL, has_mask ? (const unsigned char *)b[4] : NULL,
                          TEXTOK__F(b[6]), TEXTOK__F(b[7]), &d, TEXTOK__F(b[12]));
    return 0;
}

static int textok__cmp_run_add(const textok_kernels *k, const textok__cmp_case *c, void **b)
{
    size_t n = (size_t)c->dims[0];
    if (!k->add_forward || !k->add_backward) return 1;
    /* a b dout | out da db */
    k->add_forward(k, TEXTOK__F(b[3]), TEXTOK__F(b[0]), TEXTOK__F(b[1]), n);
    k->add_backward(k, TEXTOK__F(b[4]), TEXTOK__F(b[5]), TEXTOK__F(b[2]), n);
    return 0;
}

static int textok__cmp_run_modulate(const textok_kernels *k, const textok__cmp_case *c, void **b)
{
    int B = c->dims[0], T = c->dims[1], C = c->dims[2];
    if (!k->modulate_forward || !k->modulate_backward) return 1;
    /* x shift scale dout | out dx dshift dscale */
    k->modulate_forward(k, TEXTOK__F(b[4]), TEXTOK__F(b[0]), TEXTOK__F(b[1]), TEXTOK__F(b[2]), B, T, C);
    k->modulate_backward(k, TEXTOK__F(b[5]), TEXTOK__F(b[6]), TEXTOK__F(b[7]), TEXTOK__F(b[3]), TEXTOK__F(b[0]),
                         TEXTOK__F(b[2]), B, T, C);
    return 0;
}

static int textok__cmp_run_gate(const textok_kernels *k, const textok__cmp_case *c, void **b)
{
    int B = c->dims[0], T = c->dims[1], C = c->dims[2];
    if (!k->gate_forward || !k->gate_backward) return 1;
    /* resid x gate dout | out dresid dx dgate */
    k->gate_forward(k, TEXTOK__F(b[4]), TEXTOK__F(b[0]), TEXTOK__F(b[1]), TEXTOK__F(b[2]), B, T, C);
    k->gate_backward(k, TEXTOK__F(b[5]), TEXTOK__F(b[6]), TEXTOK__F(b[7]), TEXTOK__F(b[3]), TEXTOK__F(b[1]),
                     TEXTOK__F(b[2]), B, T, C);
    return 0;
}

static textok_conv2d_dims textok__cmp_conv_dims(const textok__cmp_case *c)
{
    textok_conv2d_dims d;
    d.B = c->dims[0]; d.C = c->dims[1]; d.H = c->dims[2]; d.W = c->dims[3]; d.OC = c->dims[4];
    d.KH = c->dims[5]; d.KW = c->dims[6]; d.stride = c->dims[7]; d.pad = c->dims[8];
    return d;
}

static int textok__cmp_run_conv2d(const textok_kernels *k, const textok__cmp_case *c, void **b)
{
    textok_conv2d_dims d = textok__cmp_conv_dims(c);
    if (!k->conv2d_forward || !k->conv2d_backward) return 1;
    /* x w bias dout | out dx dw dbias work */
    k->conv2d_forward(k, TEXTOK__F(b[4]), TEXTOK__F(b[0]), TEXTOK__F(b[1]), TEXTOK__F(b[2]), &d, TEXTOK__F(b[8]));
    k->conv2d_backward(k, TEXTOK__F(b[5]), TEXTOK__F(b[6]), TEXTOK__F(b[7]), TEXTOK__F(b[3]), TEXTOK__F(b[0]),
                       TEXTOK__F(b[1]), &d, TEXTOK__F(b[8]));
    return 0;
}

static int textok__cmp_run_groupnorm(const textok_kernels *k, const textok__cmp_case *c, void **b)
{
    int B = c->dims[0], C = c->dims[1], HW = c->dims[2], G = c->dims[3];
    if (!k->groupnorm_forward || !k->groupnorm_backward) return 1;
    /* x w bias dout | out mean rstd dx dw db */
    k->groupnorm_forward(k, TEXTOK__F(b[4]), TEXTOK__F(b[5]), TEXTOK__F(b[6]), TEXTOK__F(b[0]), TEXTOK__F(b[1]),
                         TEXTOK__F(b[2]), B, C, HW, G, c->fdim);
    k->groupnorm_backward(k, TEXTOK__F(b[7]), TEXTOK__F(b[8]), TEXTOK__F(b[9]), TEXTOK__F(b[3]), TEXTOK__F(b[0]),
                          TEXTOK__F(b[1]), TEXTOK__F(b[5]), TEXTOK__F(b[6]), B, C, HW, G);
    return 0;
}

static int textok__cmp_run_tanh(const textok_kernels *k, const textok__cmp_case *c, void **b)
{
    size_t n = (size_t)c->dims[0];
    if (!k->tanh_forward || !k->tanh_backward) return 1;
    /* x dout | out dx */
    k->tanh_forward(k, TEXTOK__F(b[2]), TEXTOK__F(b[0]), n);
    k->tanh_backward(k, TEXTOK__F(b[3]), TEXTOK__F(b[1]), TEXTOK__F(b[2]), n);
    return 0;
}
static int textok__cmp_run_transpose(const textok_kernels *k, const textok__cmp_case *c, void **b)
{
    if (!k->transpose_forward || !k->transpose_backward) return 1;
    /* x dout | out dx */
    k->transpose_forward(k, TEXTOK__F(b[2]), TEXTOK__F(b[0]), c->dims[0], c->dims[1], c->dims[2]);
    k->transpose_backward(k, TEXTOK__F(b[3]), TEXTOK__F(b[1]), c->dims[0], c->dims[1], c->dims[2]);
    return 0;
}
static int textok__cmp_run_l2norm(const textok_kernels *k, const textok__cmp_case *c, void **b)
{
    if (!k->l2norm_forward || !k->l2norm_backward) return 1;
    /* x dout | out dx */
    k->l2norm_forward(k, TEXTOK__F(b[2]), TEXTOK__F(b[0]), c->dims[0], c->dims[1], c->fdim);
    k->l2norm_backward(k, TEXTOK__F(b[3]), TEXTOK__F(b[1]), TEXTOK__F(b[0]), c->dims[0], c->dims[1], c->fdim);
    return 0;
}
static int textok__cmp_run_embedding(const textok_kernels *k, const textok__cmp_case *c, void **b)
{
    if (!k->embedding_forward || !k->embedding_backward) return 1;
    /* table ids dout | out dtable */
    k->embedding_forward(k, TEXTOK__F(b[3]), TEXTOK__F(b[0]), (const int32_t *)b[1], c->dims[0], c->dims[1]);
    k->embedding_backward(k, TEXTOK__F(b[4]), TEXTOK__F(b[2]), (const int32_t *)b[1], c->dims[0], c->dims[1]);
    return 0;
}
static int textok__cmp_run_unpatchify(const textok_kernels *k, const textok__cmp_case *c, void **b)
{
    const int *d = c->dims;
    if (!k->unpatchify_forward || !k->unpatchify_backward) return 1;
    /* x dout | out dx */
    k->unpatchify_forward(k, TEXTOK__F(b[2]), TEXTOK__F(b[0]), d[0], d[1], d[2], d[3], d[4]);
    k->unpatchify_backward(k, TEXTOK__F(b[3]), TEXTOK__F(b[1]), d[0], d[1], d[2], d[3], d[4]);
    return 0;
}
static int textok__cmp_run_gaussian(const textok_kernels *k, const textok__cmp_case *c, void **b)
{
    size_t n = (size_t)c->dims[0];
    if (!k->gaussian_sample_forward || !k->gaussian_sample_backward) return 1;
    /* mean logvar noise dz | z dmean dlogvar */
    k->gaussian_sample_forward(k, TEXTOK__F(b[4]), TEXTOK__F(b[0]), TEXTOK__F(b[1]), TEXTOK__F(b[2]), n);
    k->gaussian_sample_backward(k, TEXTOK__F(b[5]), TEXTOK__F(b[6]), TEXTOK__F(b[3]), TEXTOK__F(b[1]),
                                TEXTOK__F(b[2]), n);
    return 0;
}
/* the training helpers, on one set of vectors:
   x y dl | fill scaled sumsq ema l2 dx2 l1 dx1 kl dmean dlogvar */
static int textok__cmp_run_vector(const textok_kernels *k, const textok__cmp_case *c, void **b)
{
    size_t n = (size_t)c->dims[0];
    if (!k->fill || !k->scale || !k->sum_squares || !k->ema_update || !k->diff_loss_forward ||
        !k->diff_loss_backward || !k->kl_forward || !k->kl_backward) return 1;
    k->fill(k, TEXTOK__F(b[2]), n, 0.375f);
    k->scale(k, TEXTOK__F(b[3]), n, -1.75f);
    k->sum_squares(k, TEXTOK__F(b[4]), TEXTOK__F(b[0]), n);
    k->ema_update(k, TEXTOK__F(b[5]), TEXTOK__F(b[0]), n, 0.125f);
    k->diff_loss_forward(k, TEXTOK__F(b[6]), TEXTOK__F(b[0]), TEXTOK__F(b[1]), n, 0);
    k->diff_loss_backward(k, TEXTOK__F(b[7]), TEXTOK__F(b[0]), TEXTOK__F(b[1]), n, 0, 0.75f);
    k->diff_loss_forward(k, TEXTOK__F(b[8]), TEXTOK__F(b[0]), TEXTOK__F(b[1]), n, 1);
    k->diff_loss_backward(k, TEXTOK__F(b[9]), TEXTOK__F(b[0]), TEXTOK__F(b[1]), n, 1, 0.75f);
    k->kl_forward(k, TEXTOK__F(b[10]), TEXTOK__F(b[0]), TEXTOK__F(b[1]), n);
    k->kl_backward(k, TEXTOK__F(b[11]), TEXTOK__F(b[12]), TEXTOK__F(b[0]), TEXTOK__F(b[1]), n, 0.75f);
    return 0;
}
static int textok__cmp_run_upsample(const textok_kernels *k, const textok__cmp_case *c, void **b)
{
    if (!k->upsample_forward || !k->upsample_backward) return 1;
    /* x dout | out dx */
    k->upsample_forward(k, TEXTOK__F(b[2]), TEXTOK__F(b[0]), c->dims[0], c->dims[1], c->dims[2], c->dims[3]);
    k->upsample_backward(k, TEXTOK__F(b[3]), TEXTOK__F(b[1]), c->dims[0], c->dims[1], c->dims[2], c->dims[3]);
    return 0;
}

static int textok__cmp_run_leaky_relu(const textok_kernels *k, const textok__cmp_case *c, void **b)
{
    size_t n = (size_t)c->dims[0];
    if (!k->leaky_relu_forward || !k->leaky_relu_backward) return 1;
    /* x dout | out dx */
    k->leaky_relu_forward(k, TEXTOK__F(b[2]), TEXTOK__F(b[0]), n, c->fdim);
    k->leaky_relu_backward(k, TEXTOK__F(b[3]), TEXTOK__F(b[1]), TEXTOK__F(b[0]), n, c->fdim);
    return 0;
}
static int textok__cmp_run_maxpool(const textok_kernels *k, const textok__cmp_case *c, void **b)
{
    const int *d = c->dims;
    if (!k->maxpool_forward || !k->maxpool_backward) return 1;
    /* x dout | out dx */
    k->maxpool_forward(k, TEXTOK__F(b[2]), TEXTOK__F(b[0]), d[0], d[1], d[2], d[3], d[4]);
    k->maxpool_backward(k, TEXTOK__F(b[3]), TEXTOK__F(b[1]), TEXTOK__F(b[0]), d[0], d[1], d[2], d[3], d[4]);
    return 0;
}
static int textok__cmp_run_lpips_layer(const textok_kernels *k, const textok__cmp_case *c, void **b)
{
    const int *d = c->dims;
    if (!k->lpips_layer_forward || !k->lpips_layer_backward) return 1;
    /* f0 f1 w dd | d df0 df1 */
    k->lpips_layer_forward(k, TEXTOK__F(b[4]), TEXTOK__F(b[0]), TEXTOK__F(b[1]), TEXTOK__F(b[2]), d[0], d[1], d[2]);
    k->lpips_layer_backward(k, TEXTOK__F(b[5]), TEXTOK__F(b[6]), TEXTOK__F(b[3]), TEXTOK__F(b[0]), TEXTOK__F(b[1]),
                            TEXTOK__F(b[2]), d[0], d[1], d[2]);
    return 0;
}

static int textok__cmp_run_codebook(const textok_kernels *k, const textok__cmp_case *c, void **b)
{
    if (!k->codebook_search) return 1;
    /* z codebook | idx dist work */
    k->codebook_search(k, (int32_t *)b[2], TEXTOK__F(b[3]), TEXTOK__F(b[0]), TEXTOK__F(b[1]),
                       c->dims[0], c->dims[1], c->dims[2], TEXTOK__F(b[4]));
    return 0;
}

static int textok__cmp_run_cross_entropy(const textok_kernels *k, const textok__cmp_case *c, void **b)
{
    int N = c->dims[0], V = c->dims[1];
    if (!k->cross_entropy_forward || !k->cross_entropy_backward) return 1;
    /* logits targets dlosses | losses probs dlogits */
    k->cross_entropy_forward(k, TEXTOK__F(b[3]), TEXTOK__F(b[4]), TEXTOK__F(b[0]), (const int32_t *)b[1], N, V, c->fdim);
    k->cross_entropy_backward(k, TEXTOK__F(b[5]), TEXTOK__F(b[2]), TEXTOK__F(b[4]), (const int32_t *)b[1], N, V, c->fdim);
    return 0;
}

static int textok__cmp_run_adamw(const textok_kernels *k, const textok__cmp_case *c, void **b)
{
    textok_adamw_params hp;
    int step;
    if (!k->adamw_update) return 1;
    hp.lr = 1e-2; hp.beta1 = 0.9; hp.beta2 = 0.95; hp.eps = 1e-8; hp.weight_decay = 0.1;
    /* grads | params m v  (m and v start random: any state is a valid state) */
    for (step = 1; step <= c->dims[1]; step++)
        k->adamw_update(k, TEXTOK__F(b[1]), TEXTOK__F(b[0]), TEXTOK__F(b[2]), TEXTOK__F(b[3]), (size_t)c->dims[0], &hp, step);
    return 0;
}

/* --- building the case list --- */
static textok__cmp_case *textok__cmp_new(textok__cmp_case *cs, int *n, const char *kernel, double tol,
                                         int (*run)(const textok_kernels *, const textok__cmp_case *, void **))
{
    textok__cmp_case *c = &cs[(*n)++];
    memset(c, 0, sizeof *c);
    c->kernel = kernel;
    c->tol = tol;
    c->run = run;
    return c;
}
static void textok__cmp_buf(textok__cmp_case *c, const char *name, int kind, size_t count, int range)
{
    TEXTOK_ASSERT(c->n_buf < TEXTOK__CMP_MAXBUF);
    c->name[c->n_buf] = name;
    c->kind[c->n_buf] = kind;
    c->count[c->n_buf] = count;
    c->range[c->n_buf] = range;
    c->n_buf++;
}

/* Tolerances (NMSE). Kernels whose fast version is the reference code run with more threads agree
   to the last bit, but the threshold still allows rounding (1e-12). GEMM-based kernels sum in
   float in another order than the double-accumulating reference: each output then carries
   ~6e-8 sqrt(K) relative error, i.e. NMSE ~4e-15 K, so 1e-10 leaves a 25x margin at K = 1024
   and catches any indexing error (those give NMSE ~1). */
#define TEXTOK__TOL_SAME 1e-12
#define TEXTOK__TOL_GEMM 1e-10

static int textok__cmp_build(textok__cmp_case *cs)
{
    static const int mm[][7] = { /* batch M N K trans_a trans_b bias */
        { 1, 1, 1, 1, 0, 0, 1 }, { 2, 33, 17, 65, 0, 1, 1 }, { 1, 133, 257, 129, 1, 0, 1 }, { 3, 7, 5, 3, 1, 1, 0 } };
    static const int ln[][3] = { { 5, 7, 1 }, { 133, 768, 1 }, { 17, 300, 0 } };
    static const int at[][7] = { /* B Tq Tk C H bias mask */
        { 2, 5, 5, 16, 2, 0, 0 }, { 1, 33, 17, 64, 4, 1, 1 }, { 2, 129, 129, 96, 3, 1, 0 },
        { 2, 7, 9, 144, 2, 1, 1 } };   /* head dim 72 (DiT-XL's): more than 32 channels a GPU lane */
    static const int cv[][9] = { /* B C H W OC KH KW stride pad */
        { 2, 3, 8, 8, 4, 3, 3, 1, 1 }, { 1, 5, 9, 7, 6, 4, 4, 2, 1 }, { 1, 8, 6, 6, 16, 1, 1, 1, 0 }, { 1, 32, 17, 17, 33, 3, 3, 1, 1 },
        /* several pixel tiles (tiles end mid-row) and dweight channel blocks, in every dinput path */
        { 2, 48, 26, 23, 20, 3, 3, 1, 1 }, { 1, 40, 33, 31, 12, 4, 4, 2, 1 }, { 1, 100, 40, 40, 8, 1, 1, 1, 0 },
        { 2, 3, 21, 19, 7, 5, 5, 1, 2 }, { 1, 30, 25, 22, 9, 3, 3, 1, 0 },
        { 1, 32, 40, 30, 64, 3, 3, 1, 1 } };   /* forward and dinput through the transposed GEMM */
    static const int gn[][4] = { { 2, 8, 16, 4 }, { 1, 64, 289, 32 } };
    static const int cb[][3] = { { 10, 16, 8 }, { 133, 1025, 12 }, { 65, 4096, 16 } };
    int n = 0, i;
    textok__cmp_case *c;
    for (i = 0; i < 4; i++) {
        const int *s = mm[i];
        size_t sa = (size_t)s[0] * s[1] * s[3], sb = (size_t)s[0] * s[3] * s[2], so = (size_t)s[0] * s[1] * s[2];
        c = textok__cmp_new(cs, &n, "matmul", TEXTOK__TOL_GEMM, textok__cmp_run_matmul);
        memcpy(c->dims, s, sizeof mm[0]);
        snprintf(c->shape, sizeof c->shape, "b%d M%d N%d K%d tA%d tB%d%s", s[0], s[1], s[2], s[3], s[4], s[5], s[6] ? " bias" : "");
        textok__cmp_buf(c, "a", TEXTOK__IN_F32, sa, 0);
        textok__cmp_buf(c, "b", TEXTOK__IN_F32, sb, 0);
        textok__cmp_buf(c, "bias", TEXTOK__IN_F32, (size_t)s[2], 0);
        textok__cmp_buf(c, "dout", TEXTOK__IN_F32, so, 0);
        textok__cmp_buf(c, "out", TEXTOK__OUT_F32, so, 0);
        textok__cmp_buf(c, "da", TEXTOK__OUT_F32, sa, 0);
        textok__cmp_buf(c, "db", TEXTOK__OUT_F32, sb, 0);
        textok__cmp_buf(c, "dbias", TEXTOK__OUT_F32, (size_t)s[2], 0);
    }
    for (i = 0; i < 3; i++) {
        size_t nc = (size_t)ln[i][0] * ln[i][1];
        c = textok__cmp_new(cs, &n, "layernorm", TEXTOK__TOL_SAME, textok__cmp_run_layernorm);
        memcpy(c->dims, ln[i], sizeof ln[0]);
        c->fdim = 1e-5f;
        snprintf(c->shape, sizeof c->shape, "N%d C%d%s", ln[i][0], ln[i][1], ln[i][2] ? " affine" : "");
        textok__cmp_buf(c, "x", TEXTOK__IN_F32, nc, 0);
        textok__cmp_buf(c, "w", TEXTOK__IN_F32, (size_t)ln[i][1], 0);
        textok__cmp_buf(c, "bias", TEXTOK__IN_F32, (size_t)ln[i][1], 0);
        textok__cmp_buf(c, "dout", TEXTOK__IN_F32, nc, 0);
        textok__cmp_buf(c, "out", TEXTOK__OUT_F32, nc, 0);
        textok__cmp_buf(c, "mean", TEXTOK__OUT_F32, (size_t)ln[i][0], 0);
        textok__cmp_buf(c, "rstd", TEXTOK__OUT_F32, (size_t)ln[i][0], 0);
        textok__cmp_buf(c, "dx", TEXTOK__OUT_F32, nc, 0);
        textok__cmp_buf(c, "dw", TEXTOK__OUT_F32, (size_t)ln[i][1], 0);
        textok__cmp_buf(c, "dbias", TEXTOK__OUT_F32, (size_t)ln[i][1], 0);

        c = textok__cmp_new(cs, &n, "rmsnorm", TEXTOK__TOL_SAME, textok__cmp_run_rmsnorm);
        memcpy(c->dims, ln[i], 2 * sizeof(int));
        c->fdim = 1e-6f;
        snprintf(c->shape, sizeof c->shape, "N%d C%d", ln[i][0], ln[i][1]);
        textok__cmp_buf(c, "x", TEXTOK__IN_F32, nc, 0);
        textok__cmp_buf(c, "w", TEXTOK__IN_F32, (size_t)ln[i][1], 0);
        textok__cmp_buf(c, "dout", TEXTOK__IN_F32, nc, 0);
        textok__cmp_buf(c, "out", TEXTOK__OUT_F32, nc, 0);
        textok__cmp_buf(c, "rstd", TEXTOK__OUT_F32, (size_t)ln[i][0], 0);
        textok__cmp_buf(c, "dx", TEXTOK__OUT_F32, nc, 0);
        textok__cmp_buf(c, "dw", TEXTOK__OUT_F32, (size_t)ln[i][1], 0);
    }
    for (i = 0; i < 4; i++) {   /* gelu erf/tanh and silu, small and threaded sizes */
        int len = i < 2 ? 1001 : 70001, approx = i & 1;
        c = textok__cmp_new(cs, &n, "gelu", TEXTOK__TOL_SAME, textok__cmp_run_gelu);
        c->dims[0] = len; c->dims[1] = approx;
        snprintf(c->shape, sizeof c->shape, "n%d %s", len, approx ? "tanh" : "erf");
        textok__cmp_buf(c, "x", TEXTOK__IN_F32, (size_t)len, 0);
        textok__cmp_buf(c, "dout", TEXTOK__IN_F32, (size_t)len, 0);
        textok__cmp_buf(c, "out", TEXTOK__OUT_F32, (size_t)len, 0);
        textok__cmp_buf(c, "dx", TEXTOK__OUT_F32, (size_t)len, 0);
        if (approx) continue;
        c = textok__cmp_new(cs, &n, "silu", TEXTOK__TOL_SAME, textok__cmp_run_silu);
        c->dims[0] = len;
        snprintf(c->shape, sizeof c->shape, "n%d", len);
        textok__cmp_buf(c, "x", TEXTOK__IN_F32, (size_t)len, 0);
        textok__cmp_buf(c, "dout", TEXTOK__IN_F32, (size_t)len, 0);
        textok__cmp_buf(c, "out", TEXTOK__OUT_F32, (size_t)len, 0);
        textok__cmp_buf(c, "dx", TEXTOK__OUT_F32, (size_t)len, 0);

        c = textok__cmp_new(cs, &n, "add", TEXTOK__TOL_SAME, textok__cmp_run_add);
        c->dims[0] = len;
        snprintf(c->shape, sizeof c->shape, "n%d", len);
        textok__cmp_buf(c, "a", TEXTOK__IN_F32, (size_t)len, 0);
        textok__cmp_buf(c, "b", TEXTOK__IN_F32, (size_t)len, 0);
        textok__cmp_buf(c, "dout", TEXTOK__IN_F32, (size_t)len, 0);
        textok__cmp_buf(c, "out", TEXTOK__OUT_F32, (size_t)len, 0);
        textok__cmp_buf(c, "da", TEXTOK__OUT_F32, (size_t)len, 0);
        textok__cmp_buf(c, "db", TEXTOK__OUT_F32, (size_t)len, 0);
    }
    for (i = 0; i < 3; i++) {
        static const int sm[][2] = { { 5, 7 }, { 129, 257 }, { 3, 4097 } };
        size_t nc = (size_t)sm[i][0] * sm[i][1];
        c = textok__cmp_new(cs, &n, "softmax", TEXTOK__TOL_SAME, textok__cmp_run_softmax);
        c->dims[0] = sm[i][0]; c->dims[1] = sm[i][1];
        snprintf(c->shape, sizeof c->shape, "rows%d cols%d", sm[i][0], sm[i][1]);
        textok__cmp_buf(c, "x", TEXTOK__IN_F32, nc, 0);
        textok__cmp_buf(c, "dout", TEXTOK__IN_F32, nc, 0);
        textok__cmp_buf(c, "out", TEXTOK__OUT_F32, nc, 0);
        textok__cmp_buf(c, "dx", TEXTOK__OUT_F32, nc, 0);
    }
    for (i = 0; i < (int)(sizeof at / sizeof at[0]); i++) {
        const int *s = at[i];
        size_t nq = (size_t)s[0] * s[1] * s[3], nk = (size_t)s[0] * s[2] * s[3], nb = (size_t)s[4] * s[1] * s[2];
        textok_attention_dims d;
        d.B = s[0]; d.Tq = s[1]; d.Tk = s[2]; d.C = s[3]; d.H = s[4];
        c = textok__cmp_new(cs, &n, "attention", TEXTOK__TOL_GEMM, textok__cmp_run_attention);
        memcpy(c->dims, s, sizeof at[0]);
        snprintf(c->shape, sizeof c->shape, "B%d Tq%d Tk%d C%d H%d%s%s", s[0], s[1], s[2], s[3], s[4],
                 s[5] ? " bias" : "", s[6] ? " mask" : "");
        textok__cmp_buf(c, "q", TEXTOK__IN_F32, nq, 0);
        textok__cmp_buf(c, "key", TEXTOK__IN_F32, nk, 0);
        textok__cmp_buf(c, "v", TEXTOK__IN_F32, nk, 0);
        textok__cmp_buf(c, "bias", TEXTOK__IN_F32, nb, 0);
        textok__cmp_buf(c, "mask", TEXTOK__IN_MASK, (size_t)s[0] * s[2], s[2]);
        textok__cmp_buf(c, "dout", TEXTOK__IN_F32, nq, 0);
        textok__cmp_buf(c, "out", TEXTOK__OUT_F32, nq, 0);
        textok__cmp_buf(c, "lse", TEXTOK__OUT_F32, (size_t)s[0] * s[4] * s[1], 0);
        textok__cmp_buf(c, "dq", TEXTOK__OUT_F32, nq, 0);
        textok__cmp_buf(c, "dkey", TEXTOK__OUT_F32, nk, 0);
        textok__cmp_buf(c, "dv", TEXTOK__OUT_F32, nk, 0);
        textok__cmp_buf(c, "dbias", TEXTOK__OUT_F32, nb, 0);
        textok__cmp_buf(c, "work", TEXTOK__SCRATCH, textok_attention_work_floats(&d), 0);
    }
    for (i = 0; i < 2; i++) {
        static const int mo[][3] = { { 2, 5, 8 }, { 3, 129, 65 } };
        size_t nx = (size_t)mo[i][0] * mo[i][1] * mo[i][2], nbc = (size_t)mo[i][0] * mo[i][2];
        c = textok__cmp_new(cs, &n, "modulate", TEXTOK__TOL_SAME, textok__cmp_run_modulate);
        memcpy(c->dims, mo[i], sizeof mo[0]);
        snprintf(c->shape, sizeof c->shape, "B%d T%d C%d", mo[i][0], mo[i][1], mo[i][2]);
        textok__cmp_buf(c, "x", TEXTOK__IN_F32, nx, 0);
        textok__cmp_buf(c, "shift", TEXTOK__IN_F32, nbc, 0);
        textok__cmp_buf(c, "scale", TEXTOK__IN_F32, nbc, 0);
        textok__cmp_buf(c, "dout", TEXTOK__IN_F32, nx, 0);
        textok__cmp_buf(c, "out", TEXTOK__OUT_F32, nx, 0);
        textok__cmp_buf(c, "dx", TEXTOK__OUT_F32, nx, 0);
        textok__cmp_buf(c, "dshift", TEXTOK__OUT_F32, nbc, 0);
        textok__cmp_buf(c, "dscale", TEXTOK__OUT_F32, nbc, 0);

        c = textok__cmp_new(cs, &n, "gate", TEXTOK__TOL_SAME, textok__cmp_run_gate);
        memcpy(c->dims, mo[i], sizeof mo[0]);
        snprintf(c->shape, sizeof c->shape, "B%d T%d C%d", mo[i][0], mo[i][1], mo[i][2]);
        textok__cmp_buf(c, "resid", TEXTOK__IN_F32, nx, 0);
        textok__cmp_buf(c, "x", TEXTOK__IN_F32, nx, 0);
        textok__cmp_buf(c, "gate", TEXTOK__IN_F32, nbc, 0);
        textok__cmp_buf(c, "dout", TEXTOK__IN_F32, nx, 0);
        textok__cmp_buf(c, "out", TEXTOK__OUT_F32, nx, 0);
        textok__cmp_buf(c, "dresid", TEXTOK__OUT_F32, nx, 0);
        textok__cmp_buf(c, "dx", TEXTOK__OUT_F32, nx, 0);
        textok__cmp_buf(c, "dgate", TEXTOK__OUT_F32, nbc, 0);
    }
    for (i = 0; i < (int)(sizeof cv / sizeof cv[0]); i++) {
        const int *s = cv[i];
        textok_conv2d_dims d;
        size_t nx, nw, no;
        c = textok__cmp_new(cs, &n, "conv2d", TEXTOK__TOL_GEMM, textok__cmp_run_conv2d);
        memcpy(c->dims, s, sizeof cv[0]);
        d = textok__cmp_conv_dims(c);
        nx = (size_t)d.B * d.C * d.H * d.W;
        nw = (size_t)d.OC * d.C * d.KH * d.KW;
        no = (size_t)d.B * d.OC * textok_conv2d_out_h(&d) * textok_conv2d_out_w(&d);
        snprintf(c->shape, sizeof c->shape, "B%d C%d %dx%d OC%d k%dx%d s%d p%d", s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[8]);
        textok__cmp_buf(c, "x", TEXTOK__IN_F32, nx, 0);
        textok__cmp_buf(c, "w", TEXTOK__IN_F32, nw, 0);
        textok__cmp_buf(c, "bias", TEXTOK__IN_F32, (size_t)d.OC, 0);
        textok__cmp_buf(c, "dout", TEXTOK__IN_F32, no, 0);
        textok__cmp_buf(c, "out", TEXTOK__OUT_F32, no, 0);
        textok__cmp_buf(c, "dx", TEXTOK__OUT_F32, nx, 0);
        textok__cmp_buf(c, "dw", TEXTOK__OUT_F32, nw, 0);
        textok__cmp_buf(c, "dbias", TEXTOK__OUT_F32, (size_t)d.OC, 0);
        textok__cmp_buf(c, "work", TEXTOK__SCRATCH, textok_conv2d_work_floats(&d), 0);
    }
    for (i = 0; i < 2; i++) {
        const int *s = gn[i];
        size_t nx = (size_t)s[0] * s[1] * s[2], ng = (size_t)s[0] * s[3];
        c = textok__cmp_new(cs, &n, "groupnorm", TEXTOK__TOL_SAME, textok__cmp_run_groupnorm);
        memcpy(c->dims, s, sizeof gn[0]);
        c->fdim = 1e-6f;
        snprintf(c->shape, sizeof c->shape, "B%d C%d HW%d G%d", s[0], s[1], s[2], s[3]);
        textok__cmp_buf(c, "x", TEXTOK__IN_F32, nx, 0);
        textok__cmp_buf(c, "w", TEXTOK__IN_F32, (size_t)s[1], 0);
        textok__cmp_buf(c, "bias", TEXTOK__IN_F32, (size_t)s[1], 0);
        textok__cmp_buf(c, "dout", TEXTOK__IN_F32, nx, 0);
        textok__cmp_buf(c, "out", TEXTOK__OUT_F32, nx, 0);
        textok__cmp_buf(c, "mean", TEXTOK__OUT_F32, ng, 0);
        textok__cmp_buf(c, "rstd", TEXTOK__OUT_F32, ng, 0);
        textok__cmp_buf(c, "dx", TEXTOK__OUT_F32, nx, 0);
        textok__cmp_buf(c, "dw", TEXTOK__OUT_F32, (size_t)s[1], 0);
        textok__cmp_buf(c, "dbias", TEXTOK__OUT_F32, (size_t)s[1], 0);
    }
    for (i = 0; i < 2; i++) {
        static const int up[][4] = { { 6, 4, 5, 2 }, { 2, 3, 3, 3 } };
        size_t nx = (size_t)up[i][0] * up[i][1] * up[i][2], no = nx * up[i][3] * up[i][3];
        c = textok__cmp_new(cs, &n, "upsample", TEXTOK__TOL_SAME, textok__cmp_run_upsample);
        memcpy(c->dims, up[i], sizeof up[0]);
        snprintf(c->shape, sizeof c->shape, "BC%d %dx%d x%d", up[i][0], up[i][1], up[i][2], up[i][3]);
        textok__cmp_buf(c, "x", TEXTOK__IN_F32, nx, 0);
        textok__cmp_buf(c, "dout", TEXTOK__IN_F32, no, 0);
        textok__cmp_buf(c, "out", TEXTOK__OUT_F32, no, 0);
        textok__cmp_buf(c, "dx", TEXTOK__OUT_F32, nx, 0);
    }
    for (i = 0; i < 2; i++) {   /* the small TiTok ops: a small and a threaded size each */
        static const int tr[][3] = { { 2, 33, 17 }, { 3, 257, 129 } };
        static const int l2[][2] = { { 7, 12 }, { 4100, 17 } };
        static const int em[][3] = { { 9, 13, 5 }, { 1100, 70, 64 } };      /* N D V */
        static const int up[][5] = { { 2, 3, 12, 8, 4 }, { 2, 3, 64, 48, 16 } }; /* B C H W p */
        int len = i ? 70001 : 1001;
        size_t nt = (size_t)tr[i][0] * tr[i][1] * tr[i][2];
        size_t nu = (size_t)up[i][0] * up[i][1] * up[i][2] * up[i][3];
        c = textok__cmp_new(cs, &n, "tanh", TEXTOK__TOL_SAME, textok__cmp_run_tanh);
        c->dims[0] = len;
        snprintf(c->shape, sizeof c->shape, "n%d", len);
        textok__cmp_buf(c, "x", TEXTOK__IN_F32, (size_t)len, 0);
        textok__cmp_buf(c, "dout", TEXTOK__IN_F32, (size_t)len, 0);
        textok__cmp_buf(c, "out", TEXTOK__OUT_F32, (size_t)len, 0);
        textok__cmp_buf(c, "dx", TEXTOK__OUT_F32, (size_t)len, 0);

        c = textok__cmp_new(cs, &n, "transpose", TEXTOK__TOL_SAME, textok__cmp_run_transpose);
        memcpy(c->dims, tr[i], sizeof tr[0]);
        snprintf(c->shape, sizeof c->shape, "B%d R%d C%d", tr[i][0], tr[i][1], tr[i][2]);
        textok__cmp_buf(c, "x", TEXTOK__IN_F32, nt, 0);
        textok__cmp_buf(c, "dout", TEXTOK__IN_F32, nt, 0);
        textok__cmp_buf(c, "out", TEXTOK__OUT_F32, nt, 0);
        textok__cmp_buf(c, "dx", TEXTOK__OUT_F32, nt, 0);

        c = textok__cmp_new(cs, &n, "l2norm", TEXTOK__TOL_SAME, textok__cmp_run_l2norm);
        memcpy(c->dims, l2[i], sizeof l2[0]);
        c->fdim = 1e-12f;
        snprintf(c->shape, sizeof c->shape, "N%d C%d", l2[i][0], l2[i][1]);
        textok__cmp_buf(c, "x", TEXTOK__IN_F32, (size_t)l2[i][0] * l2[i][1], 0);
        textok__cmp_buf(c, "dout", TEXTOK__IN_F32, (size_t)l2[i][0] * l2[i][1], 0);
        textok__cmp_buf(c, "out", TEXTOK__OUT_F32, (size_t)l2[i][0] * l2[i][1], 0);
        textok__cmp_buf(c, "dx", TEXTOK__OUT_F32, (size_t)l2[i][0] * l2[i][1], 0);

        c = textok__cmp_new(cs, &n, "embedding", TEXTOK__TOL_SAME, textok__cmp_run_embedding);
        memcpy(c->dims, em[i], sizeof em[0]);
        snprintf(c->shape, sizeof c->shape, "N%d D%d V%d", em[i][0], em[i][1], em[i][2]);
        textok__cmp_buf(c, "table", TEXTOK__IN_F32, (size_t)em[i][2] * em[i][1], 0);
        textok__cmp_buf(c, "ids", TEXTOK__IN_IDS, (size_t)em[i][0], em[i][2]);
        textok__cmp_buf(c, "dout", TEXTOK__IN_F32, (size_t)em[i][0] * em[i][1], 0);
        textok__cmp_buf(c, "out", TEXTOK__OUT_F32, (size_t)em[i][0] * em[i][1], 0);
        textok__cmp_buf(c, "dtable", TEXTOK__OUT_F32, (size_t)em[i][2] * em[i][1], 0);

        c = textok__cmp_new(cs, &n, "unpatchify", TEXTOK__TOL_SAME, textok__cmp_run_unpatchify);
        memcpy(c->dims, up[i], sizeof up[0]);
        snprintf(c->shape, sizeof c->shape, "B%d C%d %dx%d p%d", up[i][0], up[i][1], up[i][2], up[i][3], up[i][4]);
        textok__cmp_buf(c, "x", TEXTOK__IN_F32, nu, 0);
        textok__cmp_buf(c, "dout", TEXTOK__IN_F32, nu, 0);
        textok__cmp_buf(c, "out", TEXTOK__OUT_F32, nu, 0);
        textok__cmp_buf(c, "dx", TEXTOK__OUT_F32, nu, 0);

        c = textok__cmp_new(cs, &n, "gaussian_sample", TEXTOK__TOL_SAME, textok__cmp_run_gaussian);
        c->dims[0] = len;
        snprintf(c->shape, sizeof c->shape, "n%d", len);
        textok__cmp_buf(c, "mean", TEXTOK__IN_F32, (size_t)len, 0);
        textok__cmp_buf(c, "logvar", TEXTOK__IN_F32, (size_t)len, 0);
        textok__cmp_buf(c, "noise", TEXTOK__IN_F32, (size_t)len, 0);
        textok__cmp_buf(c, "dz", TEXTOK__IN_F32, (size_t)len, 0);
        textok__cmp_buf(c, "z", TEXTOK__OUT_F32, (size_t)len, 0);
        textok__cmp_buf(c, "dmean", TEXTOK__OUT_F32, (size_t)len, 0);
        textok__cmp_buf(c, "dlogvar", TEXTOK__OUT_F32, (size_t)len, 0);
    }
    for (i = 0; i < 2; i++) {   /* one case below the threading threshold, one above */
        static const char *const outs[] = { "fill", "scaled", "sumsq", "ema", "l2", "dx_l2", "l1", "dx_l1",
                                            "kl", "dmean", "dlogvar" };
        static const int outn[] = { 0, 0, 1, 0, 1, 0, 1, 0, 1, 0, 0 };
        int len = i ? 300007 : 1003, j;
        /* the reductions differ from the reference only in summation order (double partials) */
        c = textok__cmp_new(cs, &n, "training vector ops", TEXTOK__TOL_SAME, textok__cmp_run_vector);
        c->dims[0] = len;
        snprintf(c->shape, sizeof c->shape, "n%d", len);
        textok__cmp_buf(c, "x", TEXTOK__IN_F32, (size_t)len, 0);
        textok__cmp_buf(c, "y", TEXTOK__IN_F32, (size_t)len, 0);
        for (j = 0; j < 11; j++) textok__cmp_buf(c, outs[j], TEXTOK__OUT_F32, outn[j] ? 1 : (size_t)len, 0);
    }
    for (i = 0; i < 4; i++) {   /* the loss-network kernels: small and threaded sizes each */
        /* maxpool: 2x2 on even sizes, overlapping adaptive windows, upsampling by repeat, threaded */
        static const int mp[][5] = { { 6, 8, 6, 4, 3 }, { 3, 7, 5, 3, 2 }, { 2, 3, 3, 5, 4 }, { 64, 64, 34, 32, 17 } };
        static const int lp[][3] = { { 2, 8, 63 }, { 3, 64, 1024 }, { 1, 5, 4100 }, { 2, 3, 1 } };   /* B C HW */
        int len = i & 1 ? 70001 : 1001;
        size_t nx = (size_t)mp[i][0] * mp[i][1] * mp[i][2], no = (size_t)mp[i][0] * mp[i][3] * mp[i][4];
        size_t nf = (size_t)lp[i][0] * lp[i][1] * lp[i][2];
        c = textok__cmp_new(cs, &n, "leaky_relu", TEXTOK__TOL_SAME, textok__cmp_run_leaky_relu);
        c->dims[0] = len;
        c->fdim = i < 2 ? 0.1f : 0.0f;
        snprintf(c->shape, sizeof c->shape, "n%d slope%.1f", len, (double)c->fdim);
        textok__cmp_buf(c, "x", TEXTOK__IN_F32, (size_t)len, 0);
        textok__cmp_buf(c, "dout", TEXTOK__IN_F32, (size_t)len, 0);
        textok__cmp_buf(c, "out", TEXTOK__OUT_F32, (size_t)len, 0);
        textok__cmp_buf(c, "dx", TEXTOK__OUT_F32, (size_t)len, 0);

        c = textok__cmp_new(cs, &n, "maxpool", TEXTOK__TOL_SAME, textok__cmp_run_maxpool);
        memcpy(c->dims, mp[i], sizeof mp[0]);
        snprintf(c->shape, sizeof c->shape, "BC%d %dx%d -> %dx%d", mp[i][0], mp[i][1], mp[i][2], mp[i][3], mp[i][4]);
        textok__cmp_buf(c, "x", TEXTOK__IN_F32, nx, 0);
        textok__cmp_buf(c, "dout", TEXTOK__IN_F32, no, 0);
        textok__cmp_buf(c, "out", TEXTOK__OUT_F32, no, 0);
        textok__cmp_buf(c, "dx", TEXTOK__OUT_F32, nx, 0);

        /* both sum the same double terms in another order, then round once: last-bit agreement */
        c = textok__cmp_new(cs, &n, "lpips_layer", TEXTOK__TOL_SAME, textok__cmp_run_lpips_layer);
        memcpy(c->dims, lp[i], sizeof lp[0]);
        snprintf(c->shape, sizeof c->shape, "B%d C%d HW%d", lp[i][0], lp[i][1], lp[i][2]);
        textok__cmp_buf(c, "f0", TEXTOK__IN_F32, nf, 0);
        textok__cmp_buf(c, "f1", TEXTOK__IN_F32, nf, 0);
        textok__cmp_buf(c, "w", TEXTOK__IN_F32, (size_t)lp[i][1], 0);
        textok__cmp_buf(c, "dd", TEXTOK__IN_F32, (size_t)lp[i][0], 0);
        textok__cmp_buf(c, "d", TEXTOK__OUT_F32, (size_t)lp[i][0], 0);
        textok__cmp_buf(c, "df0", TEXTOK__OUT_F32, nf, 0);
        textok__cmp_buf(c, "df1", TEXTOK__OUT_F32, nf, 0);
    }
    for (i = 0; i < 3; i++) {
        const int *s = cb[i];
        /* dist is |z|^2 + |e|^2 - 2 z.e in float: cancellation makes its relative error ~1e-6 */
        c = textok__cmp_new(cs, &n, "codebook_search", 1e-9, textok__cmp_run_codebook);
        memcpy(c->dims, s, sizeof cb[0]);
        snprintf(c->shape, sizeof c->shape, "N%d K%d D%d", s[0], s[1], s[2]);
        textok__cmp_buf(c, "z", TEXTOK__IN_F32, (size_t)s[0] * s[2], 0);
        textok__cmp_buf(c, "codebook", TEXTOK__IN_F32, (size_t)s[1] * s[2], 0);
        textok__cmp_buf(c, "idx", TEXTOK__OUT_IDX, (size_t)s[0], 0);
        textok__cmp_buf(c, "dist", TEXTOK__OUT_F32, (size_t)s[0], 0);
        textok__cmp_buf(c, "work", TEXTOK__SCRATCH, textok_codebook_work_floats(s[0], s[1], s[2]), 0);
    }
    for (i = 0; i < 2; i++) {
        static const int ce[][2] = { { 8, 10 }, { 67, 1001 } };
        size_t nl = (size_t)ce[i][0] * ce[i][1];
        c = textok__cmp_new(cs, &n, "cross_entropy", TEXTOK__TOL_SAME, textok__cmp_run_cross_entropy);
        c->dims[0] = ce[i][0]; c->dims[1] = ce[i][1];
        c->fdim = i ? 0.1f : 0.0f;
        snprintf(c->shape, sizeof c->shape, "N%d V%d ls%.1f", ce[i][0], ce[i][1], (double)c->fdim);
        textok__cmp_buf(c, "logits", TEXTOK__IN_F32, nl, 0);
        textok__cmp_buf(c, "targets", TEXTOK__IN_I32, (size_t)ce[i][0], ce[i][1]);
        textok__cmp_buf(c, "dlosses", TEXTOK__IN_F32, (size_t)ce[i][0], 0);
        textok__cmp_buf(c, "losses", TEXTOK__OUT_F32, (size_t)ce[i][0], 0);
        textok__cmp_buf(c, "probs", TEXTOK__OUT_F32, nl, 0);
        textok__cmp_buf(c, "dlogits", TEXTOK__OUT_F32, nl, 0);
    }
    for (i = 0; i < 2; i++) {
        int len = i ? 70001 : 1001;
        c = textok__cmp_new(cs, &n, "adamw", TEXTOK__TOL_SAME, textok__cmp_run_adamw);
        c->dims[0] = len; c->dims[1] = 3;
        snprintf(c->shape, sizeof c->shape, "n%d steps3", len);
        textok__cmp_buf(c, "grads", TEXTOK__IN_F32, (size_t)len, 0);
        textok__cmp_buf(c, "params", TEXTOK__OUT_F32, (size_t)len, 0);
        textok__cmp_buf(c, "m", TEXTOK__OUT_F32, (size_t)len, 0);
        textok__cmp_buf(c, "v", TEXTOK__OUT_F32, (size_t)len, 1);   /* second moments are >= 0 */
    }
    return n;
}
#define TEXTOK__CMP_MAXCASES 96

static size_t textok__cmp_elsize(int kind)
{
    return kind == TEXTOK__IN_MASK ? 1 : 4;
}

/* Allocate, fill canaries, upload; returns the interior pointer or NULL. */
static void *textok__cmp_upload(const textok_kernels *k, const void *host, size_t bytes, unsigned char *stage)
{
    unsigned char *dev = (unsigned char *)k->alloc(k, bytes + 2 * TEXTOK__CMP_CANARY);
    if (!dev) return NULL;
    memset(stage, TEXTOK__CMP_BYTE, TEXTOK__CMP_CANARY);
    memcpy(stage + TEXTOK__CMP_CANARY, host, bytes);
    memset(stage + TEXTOK__CMP_CANARY + bytes, TEXTOK__CMP_BYTE, TEXTOK__CMP_CANARY);
    if (k->to_device(k, dev, stage, bytes + 2 * TEXTOK__CMP_CANARY) != TEXTOK_OK) { k->free(k, dev); return NULL; }
    return dev + TEXTOK__CMP_CANARY;
}

/* Download into host; returns 1 if both canaries are intact, 0 if not, -1 if the copy failed. */
static int textok__cmp_download(const textok_kernels *k, void *interior, void *host, size_t bytes, unsigned char *stage)
{
    size_t i;
    unsigned char *dev = (unsigned char *)interior - TEXTOK__CMP_CANARY;
    if (k->to_host(k, stage, dev, bytes + 2 * TEXTOK__CMP_CANARY) != TEXTOK_OK) return -1;
    memcpy(host, stage + TEXTOK__CMP_CANARY, bytes);
    for (i = 0; i < TEXTOK__CMP_CANARY; i++)
        if (stage[i] != TEXTOK__CMP_BYTE || stage[TEXTOK__CMP_CANARY + bytes + i] != TEXTOK__CMP_BYTE) return 0;
    return 1;
}

/* Run one case on one table: host[] holds inputs and initial outputs, results go to out[]. */
static int textok__cmp_run_on(const textok_kernels *k, const textok__cmp_case *c, void **host, void **out,
                              int *canary_ok, unsigned char *stage)
{
    void *dev[TEXTOK__CMP_MAXBUF];
    int i, st = TEXTOK_OK, unsupported = 0;
    memset(dev, 0, sizeof dev);
    for (i = 0; i < c->n_buf; i++) {
        dev[i] = textok__cmp_upload(k, host[i], c->count[i] * textok__cmp_elsize(c->kind[i]), stage);
        if (!dev[i]) { st = textok__fail(TEXTOK_ERR_NOMEM, "kernels_compare: %s: allocating/uploading buffer '%s' on table '%s' failed", c->kernel, c->name[i], k->name); break; }
    }
    if (st == TEXTOK_OK) unsupported = c->run(k, c, dev);
    for (i = 0; i < c->n_buf && dev[i]; i++) {
        if (st == TEXTOK_OK && !unsupported) {
            int r = textok__cmp_download(k, dev[i], out[i], c->count[i] * textok__cmp_elsize(c->kind[i]), stage);
            if (r < 0) st = textok__fail(TEXTOK_ERR_IO, "kernels_compare: %s: downloading '%s' from table '%s' failed", c->kernel, c->name[i], k->name);
            canary_ok[i] = r == 1;
        }
        k->free(k, (unsigned char *)dev[i] - TEXTOK__CMP_CANARY);
    }
    return st != TEXTOK_OK ? st : unsupported;
}

/* Codebook indices may differ only at near-ties: the distances of both picks, recomputed in
   double from the inputs, must agree to 1e-5 relative. Returns the number of real mismatches. */
static int textok__cmp_index_mismatches(const textok__cmp_case *c, void **host, const int32_t *ri, const int32_t *ti)
{
    const float *z = (const float *)host[0], *e = (const float *)host[1];
    int N = c->dims[0], K = c->dims[1], D = c->dims[2], i, bad = 0, dd;
    for (i = 0; i < N; i++) {
        double dr = 0.0, dt = 0.0;
        if (ri[i] == ti[i]) continue;
        if (ti[i] < 0 || ti[i] >= K) { bad++; continue; }
        for (dd = 0; dd < D; dd++) {
            double a = z[(size_t)i * D + dd] - e[(size_t)ri[i] * D + dd], b = z[(size_t)i * D + dd] - e[(size_t)ti[i] * D + dd];
            dr += a * a;
            dt += b * b;
        }
        if (!(fabs(dt - dr) <= 1e-5 * (1.0 + dr))) bad++;
    }
    return bad;
}

static void textok__cmp_metrics(textok_compare_result *r, const float *ref, const float *test, size_t n)
{
    double se = 0.0, sr = 0.0;
    size_t i;
    r->max_abs = r->max_rel = 0.0;
    for (i = 0; i < n; i++) {
        double a = ref[i], b = test[i], d = fabs(a - b);
        if (!isfinite(b) || !isfinite(a)) { r->why = isnan(b) || isnan(a) ? "NaN" : "Inf"; continue; }
        if (d > r->max_abs) r->max_abs = d;
        if (d / (fabs(a) + 1e-6) > r->max_rel) r->max_rel = d / (fabs(a) + 1e-6);
        se += d * d;
        sr += a * a;
    }
    r->nmse = sr > 0.0 ? se / sr : se;
}

TEXTOKDEF int textok_kernels_compare(const textok_kernels *ref, const textok_kernels *test,
                                     uint64_t seed, textok_compare_report_fn report, void *user)
{
    textok__cmp_case *cs = (textok__cmp_case *)textok__calloc(TEXTOK__CMP_MAXCASES, sizeof *cs);
    int n_cases, ci, fails = 0, st = TEXTOK_OK;
    textok_rng rng;
    if (!cs) return textok__fail(TEXTOK_ERR_NOMEM, "kernels_compare: out of memory");
    if (!ref || !test || !ref->alloc || !test->alloc || !ref->free || !test->free || !ref->to_device ||
        !test->to_device || !ref->to_host || !test->to_host) {
        TEXTOK_FREE(cs);
        return textok__fail(TEXTOK_ERR_ARG, "kernels_compare: both tables need alloc, free, to_device and to_host");
    }
    n_cases = textok__cmp_build(cs);
    TEXTOK_ASSERT(n_cases <= TEXTOK__CMP_MAXCASES);
    textok_rng_seed(&rng, seed);
    for (ci = 0; ci < n_cases && st == TEXTOK_OK; ci++) {
        const textok__cmp_case *c = &cs[ci];
        void *host[TEXTOK__CMP_MAXBUF], *out_ref[TEXTOK__CMP_MAXBUF], *out_test[TEXTOK__CMP_MAXBUF];
        int canary_ref[TEXTOK__CMP_MAXBUF], canary_test[TEXTOK__CMP_MAXBUF], i, r1, r2;
        size_t maxbytes = 0;
        unsigned char *stage;
        memset(host, 0, sizeof host); memset(out_ref, 0, sizeof out_ref); memset(out_test, 0, sizeof out_test);
        for (i = 0; i < c->n_buf; i++) {
            size_t bytes = c->count[i] * textok__cmp_elsize(c->kind[i]), j;
            host[i] = textok__malloc(bytes);
            out_ref[i] = textok__malloc(bytes);
            out_test[i] = textok__malloc(bytes);
            if (!host[i] || !out_ref[i] || !out_test[i]) { st = textok__fail(TEXTOK_ERR_NOMEM, "kernels_compare: out of memory"); break; }
            if (bytes > maxbytes) maxbytes = bytes;
            if (c->kind[i] == TEXTOK__IN_I32) {
                int32_t *t = (int32_t *)host[i];
                for (j = 0; j < c->count[i]; j++)
                    t[j] = (textok_rng_u32(&rng) % 8 == 0) ? -1 : (int32_t)(textok_rng_u32(&rng) % (uint32_t)c->range[i]);
            } else if (c->kind[i] == TEXTOK__IN_IDS) {
                int32_t *t = (int32_t *)host[i];
                for (j = 0; j < c->count[i]; j++) t[j] = (int32_t)(textok_rng_u32(&rng) % (uint32_t)c->range[i]);
            } else if (c->kind[i] == TEXTOK__IN_MASK) {
                unsigned char *m = (unsigned char *)host[i];
                for (j = 0; j < c->count[i]; j++) m[j] = (unsigned char)(j % (size_t)c->range[i] == 0 || textok_rng_uniform(&rng) < 0.75f);
            } else {
                float *x = (float *)host[i];
                textok_rng_fill_normal(&rng, x, c->count[i], 0.0f, 1.0f);
                if (c->range[i] == 1) for (j = 0; j < c->count[i]; j++) x[j] = fabsf(x[j]);
            }
        }
        stage = st == TEXTOK_OK ? (unsigned char *)textok__malloc(maxbytes + 2 * TEXTOK__CMP_CANARY) : NULL;
        if (st == TEXTOK_OK && !stage) st = textok__fail(TEXTOK_ERR_NOMEM, "kernels_compare: out of memory");
        if (st == TEXTOK_OK) {
            r1 = textok__cmp_run_on(ref, c, host, out_ref, canary_ref, stage);
            r2 = r1 == 0 ? textok__cmp_run_on(test, c, host, out_test, canary_test, stage) : r1;
            if (r1 < 0) st = r1;
            else if (r2 < 0) st = r2;
            else if (r1 == 0 && r2 == 0) {
                for (i = 0; i < c->n_buf; i++) {
                    textok_compare_result res;
                    if (c->kind[i] != TEXTOK__OUT_F32 && c->kind[i] != TEXTOK__OUT_IDX && c->kind[i] != TEXTOK__SCRATCH) continue;
                    memset(&res, 0, sizeof res);
                    res.kernel = c->kernel;
                    res.output = c->name[i];
                    res.why = "";
                    res.tol_nmse = c->tol;
                    snprintf(res.shape, sizeof res.shape, "%s", c->shape);
                    if (c->kind[i] == TEXTOK__OUT_F32)
                        textok__cmp_metrics(&res, (const float *)out_ref[i], (const float *)out_test[i], c->count[i]);
                    else if (c->kind[i] == TEXTOK__OUT_IDX) {
                        int bad = textok__cmp_index_mismatches(c, host, (const int32_t *)out_ref[i], (const int32_t *)out_test[i]);
                        res.max_abs = bad;
                        if (bad) res.why = "index";
                    }
                    if (!canary_test[i] || !canary_ref[i]) res.why = "canary";
                    res.ok = !res.why[0] && (c->kind[i] != TEXTOK__OUT_F32 || res.nmse <= c->tol);
                    if (!res.ok && !res.why[0]) res.why = "tolerance";
                    if (!res.ok) fails++;
                    if (c->kind[i] == TEXTOK__SCRATCH && res.ok) continue;   /* report scratch only on failure */
                    if (report) report(&res, user);
                }
            }
        }
        TEXTOK_FREE(stage);
        for (i = 0; i < c->n_buf; i++) { TEXTOK_FREE(host[i]); TEXTOK_FREE(out_ref[i]); TEXTOK_FREE(out_test[i]); }
    }
    TEXTOK_FREE(cs);
    return st != TEXTOK_OK ? st : fails;
}

/* Image metrics (MSE, PSNR, SSIM; see the declaration). SSIM runs one output row at a time: the
   vertical Gaussian pass of that row's 11 input rows goes into 5 rows of W doubles (x, y, x^2,
   y^2, xy), then the horizontal pass gives each position's moments and its SSIM term. */
#define TEXTOK__SSIM_WIN 11
TEXTOKDEF int textok_image_metrics(const float *x, const float *y, int C, int H, int W,
                                   double *mse, double *psnr, double *ssim)
{
    const double C1 = 0.01 * 0.01, C2 = 0.03 * 0.03;   /* (K1 L)^2, (K2 L)^2 with L = 1 */
    const int R = TEXTOK__SSIM_WIN / 2;
    double g[TEXTOK__SSIM_WIN], gsum = 0.0, se = 0.0, ssim_sum = 0.0, m;
    double *v = NULL;   /* 5 rows of W: vertical sums of x, y, x^2, y^2, xy */
    size_t n, plane, i;
    int c, r, col, k;
    if (!x || !y) return textok__fail(TEXTOK_ERR_ARG, "image_metrics: x and y must not be NULL");
    if (C < 1 || H < 1 || W < 1 || !textok__mul_size((size_t)H, (size_t)W, &plane) || !textok__mul_size(plane, (size_t)C, &n))
        return textok__fail(TEXTOK_ERR_ARG, "image_metrics: bad image shape (%d,%d,%d) (C,H,W)", C, H, W);
    if (ssim) {
        if (H < TEXTOK__SSIM_WIN || W < TEXTOK__SSIM_WIN)
            return textok__fail(TEXTOK_ERR_ARG, "image_metrics: SSIM needs images of at least %dx%d (its Gaussian window), "
                                "not %dx%d", TEXTOK__SSIM_WIN, TEXTOK__SSIM_WIN, H, W);
        if (!(v = (double *)textok__calloc((size_t)5 * (size_t)W, sizeof(double))))
            return textok__fail(TEXTOK_ERR_NOMEM, "image_metrics: out of memory (%d x 5 doubles)", W);
        for (k = 0; k < TEXTOK__SSIM_WIN; k++) gsum += g[k] = exp(-0.5 * (double)((k - R) * (k - R)) / (1.5 * 1.5));
        for (k = 0; k < TEXTOK__SSIM_WIN; k++) g[k] /= gsum;
    }
    for (i = 0; i < n; i++) {
        const double d = (double)x[i] - (double)y[i];
        se += d * d;
    }
    for (c = 0; ssim && c < C; c++) {
        const float *xc = x + (size_t)c * plane, *yc = y + (size_t)c * plane;
        double *vx = v, *vy = v + W, *vxx = v + 2 * (size_t)W, *vyy = v + 3 * (size_t)W, *vxy = v + 4 * (size_t)W;
        for (r = 0; r + TEXTOK__SSIM_WIN <= H; r++) {
            for (col = 0; col < W; col++) {
                double sx = 0, sy = 0, sxx = 0, syy = 0, sxy = 0;
                for (k = 0; k < TEXTOK__SSIM_WIN; k++) {
                    const double a = xc[(size_t)(r + k) * W + col], b = yc[(size_t)(r + k) * W + col];
                    sx += g[k] * a; sy += g[k] * b;
                    sxx += g[k] * (a * a); syy += g[k] * (b * b); sxy += g[k] * (a * b);
                }
                vx[col] = sx; vy[col] = sy; vxx[col] = sxx; vyy[col] = syy; vxy[col] = sxy;
            }
            for (col = 0; col + TEXTOK__SSIM_WIN <= W; col++) {
                double mx = 0, my = 0, mxx = 0, myy = 0, mxy = 0, sx2, sy2, sxy;
                for (k = 0; k < TEXTOK__SSIM_WIN; k++) {
                    mx += g[k] * vx[col + k]; my += g[k] * vy[col + k];
                    mxx += g[k] * vxx[col + k]; myy += g[k] * vyy[col + k]; mxy += g[k] * vxy[col + k];
                }
                sx2 = mxx - mx * mx; sy2 = myy - my * my; sxy = mxy - mx * my;
                ssim_sum += ((2 * mx * my + C1) * (2 * sxy + C2)) / ((mx * mx + my * my + C1) * (sx2 + sy2 + C2));
            }
        }
    }
    TEXTOK_FREE(v);
    m = se / (double)n;
    if (mse) *mse = m;
    if (psnr) *psnr = 10.0 * log10(1.0 / (m < 1e-10 ? 1e-10 : m));   /* NaN stays NaN */
    if (ssim) *ssim = ssim_sum / ((double)C * (double)(H - 2 * R) * (double)(W - 2 * R));
    return TEXTOK_OK;
}
#undef TEXTOK__SSIM_WIN

/* ---------------------------------------------------------------------------------------------
   8. Layers. Models are written only in terms of these and the kernel table: they compute
   offsets into buffers the table owns but never read or write those buffers directly, which is
   what lets a GPU table run a whole model. Pointwise kernels (add, silu, gelu, tanh) are used
   in place (out == inp); every backend must allow that. */

static double textok__now(void)
{
#ifdef _OPENMP
    return omp_get_wtime();
#else
    return (double)clock() / CLOCKS_PER_SEC;
#endif
}

/* y (N, out) = x (N, in) . W^T + b: a PyTorch Linear, and also a 1x1 convolution applied to
   token-major data (a Conv2d weight (out, in, 1, 1) has the same memory as a Linear weight). */
static void textok__linear(const textok_kernels *k, float *y, const float *x, const float *w,
                           const float *b, int N, int in, int out)
{
    textok_matmul_dims d;
    d.batch = 1; d.M = N; d.N = out; d.K = in; d.trans_a = 0; d.trans_b = 1;
    k->matmul_forward(k, y, x, w, b, &d);
}

/* 3x3 (pad 1) or 1x1 (pad 0) stride-1 convolution: Conv2dSame with an odd kernel is symmetric */
static void textok__conv_same(const textok_kernels *k, float *out, const float *inp, const float *w,
                              const float *b, int B, int C, int H, int W, int OC, int ksize, float *work)
{
    textok_conv2d_dims d;
    d.B = B; d.C = C; d.H = H; d.W = W; d.OC = OC; d.KH = ksize; d.KW = ksize; d.stride = 1; d.pad = ksize / 2;
    k->conv2d_forward(k, out, inp, w, b, &d, work);
}

/* ----- the pre-norm ViT stack (TiTok's ResidualAttentionBlock, torch nn.MultiheadAttention) ---- */
typedef struct textok__vit_block {
    float *ln1_w, *ln1_b;     /* (D) ln_1 */
    float *qkv_w, *qkv_b;     /* (3D, D), (3D) attn.in_proj_weight / in_proj_bias: rows [Wq; Wk; Wv] */
    float *proj_w, *proj_b;   /* (D, D), (D) attn.out_proj */
    float *ln2_w, *ln2_b;     /* (D) ln_2 */
    float *fc_w, *fc_b;       /* (M, D), (M) mlp.c_fc */
    float *fc2_w, *fc2_b;     /* (D, M), (D) mlp.c_proj */
} textok__vit_block;

typedef struct textok__vit {
    int D, L, H, M;                  /* width, depth, heads, MLP hidden */
    float *ln_pre_w, *ln_pre_b;      /* (D) */
    textok__vit_block *blocks;       /* (L), host array of pointers into the param block */
    float *ln_post_w, *ln_post_b;    /* (D) */
} textok__vit;

typedef struct textok__vit_acts {    /* sized for the larger of encoder and decoder */
    float *seq;      /* (B, T, D) the assembled input sequence, before ln_pre */
    float *x;        /* (B, T, D) residual stream */
    float *ln;       /* (B, T, D) layernorm output, then the branch output */
    float *q, *k, *v, *att;   /* (B, T, D) */
    float *mlp;      /* (B, T, M) */
    float *lse;      /* (B, H, T) attention row log-sum-exp */
    float *work;     /* attention work */
} textok__vit_acts;

/* x = blocks(ln_pre(seq)); the caller applies ln_post to the rows it reads out. LN eps 1e-5,
   exact-erf GELU, scale 1/sqrt(head_dim) (architecture.md 1.3). key_mask (B, T): the keys every
   query may attend (padded text is 0), or NULL for all - TiTok itself never masks. */
static void textok__vit_forward(const textok_kernels *k, const textok__vit *w, textok__vit_acts *a,
                                int B, int T, const unsigned char *key_mask)
{
    const int D = w->D, M = w->M, BT = B * T;
    const size_t n = (size_t)BT * D;
    textok_attention_dims ad;
    int l;
    ad.B = B; ad.Tq = T; ad.Tk = T; ad.C = D; ad.H = w->H; ad.scale = (float)(1.0 / sqrt((double)D / w->H));
    k->layernorm_forward(k, a->x, NULL, NULL, a->seq, w->ln_pre_w, w->ln_pre_b, BT, D, 1e-5f);
    for (l = 0; l < w->L; l++) {
        const textok__vit_block *b = &w->blocks[l];
        k->layernorm_forward(k, a->ln, NULL, NULL, a->x, b->ln1_w, b->ln1_b, BT, D, 1e-5f);
        textok__linear(k, a->q, a->ln, b->qkv_w, b->qkv_b, BT, D, D);
        textok__linear(k, a->k, a->ln, b->qkv_w + (size_t)D * D, b->qkv_b + D, BT, D, D);
        textok__linear(k, a->v, a->ln, b->qkv_w + 2 * (size_t)D * D, b->qkv_b + 2 * D, BT, D, D);
        k->attention_forward(k, a->att, a->lse, a->q, a->k, a->v, NULL, key_mask, &ad, a->work);
        textok__linear(k, a->ln, a->att, b->proj_w, b->proj_b, BT, D, D);
        k->add_forward(k, a->x, a->x, a->ln, n);
        k->layernorm_forward(k, a->ln, NULL, NULL, a->x, b->ln2_w, b->ln2_b, BT, D, 1e-5f);
        textok__linear(k, a->mlp, a->ln, b->fc_w, b->fc_b, BT, D, M);
        k->gelu_forward(k, a->mlp, a->mlp, (size_t)BT * M, 0);
        textok__linear(k, a->ln, a->mlp, b->fc2_w, b->fc2_b, BT, M, D);
        k->add_forward(k, a->x, a->x, a->ln, n);
    }
}

static double textok__vit_flops(const textok__vit *w, int B, int T)
{
    double D = w->D, M = w->M, t = (double)B * T;
    return w->L * (2.0 * t * (4.0 * D * D + 2.0 * D * M) + 4.0 * B * (double)T * T * D);
}

/* ----- MaskGIT-VQGAN ResnetBlock (GroupNorm eps 1e-6, SiLU, 3x3 convs without bias) ----------- */
typedef struct textok__resblock {
    int cin, cout;
    float *norm1_w, *norm1_b;   /* (cin) */
    float *conv1_w;             /* (cout, cin, 3, 3) */
    float *norm2_w, *norm2_b;   /* (cout) */
    float *conv2_w;             /* (cout, cout, 3, 3) */
    float *nin_w;               /* (cout, cout, 1, 1) when cin != cout, else NULL */
} textok__resblock;

typedef struct textok__pix_acts {
    float *x, *t, *h;   /* (B, Cmax, HWmax) each: block input/output, normalised input, branch */
    float *work;        /* conv2d work: textok_conv2d_work_floats of the largest conv */
} textok__pix_acts;

/* x (B, cin, H, W) -> x (B, cout, H, W) in place. When the channel count changes, the upstream
   block returns h + nin_shortcut(h): the 1x1 shortcut is applied to the branch h and the block
   input is dropped (architecture.md 1.7 and 8.10). We reproduce that, since it is what the
   published weights were trained with. */
static void textok__resblock_forward(const textok_kernels *k, const textok__resblock *r, textok__pix_acts *a,
                                     int B, int H, int W, int groups)
{
    const int HW = H * W;
    k->groupnorm_forward(k, a->t, NULL, NULL, a->x, r->norm1_w, r->norm1_b, B, r->cin, HW, groups, 1e-6f);
    k->silu_forward(k, a->t, a->t, (size_t)B * r->cin * HW);
    textok__conv_same(k, a->h, a->t, r->conv1_w, NULL, B, r->cin, H, W, r->cout, 3, a->work);
    k->groupnorm_forward(k, a->t, NULL, NULL, a->h, r->norm2_w, r->norm2_b, B, r->cout, HW, groups, 1e-6f);
    k->silu_forward(k, a->t, a->t, (size_t)B * r->cout * HW);
    textok__conv_same(k, a->h, a->t, r->conv2_w, NULL, B, r->cout, H, W, r->cout, 3, a->work);
    if (r->nin_w) {
        textok__conv_same(k, a->t, a->h, r->nin_w, NULL, B, r->cout, H, W, r->cout, 1, a->work);
        k->add_forward(k, a->x, a->h, a->t, (size_t)B * r->cout * HW);
    } else {
        k->add_forward(k, a->x, a->x, a->h, (size_t)B * r->cout * HW);
    }
}

/* ----- what every model below is built from: the parameter walk (names, shapes, binding), the
   activation arena, and the integer parser of metadata values. ----------------------------- */

/* ----- the parameter walk: one function lists every tensor with its shape, in state_dict order.
   It serves three purposes: the spec list for tools/convert (m == NULL), sizing the parameter
   block, and binding the model's named pointers to their place in that block. */
typedef struct textok__walk {
    textok_tensor_spec *specs;       /* fill up to max_specs entries, or NULL */
    int                 max_specs, n;
    float              *base;        /* bind slots to base + offset, or NULL */
    size_t              offset;      /* floats so far */
    int                 overflow;
} textok__walk;

#if defined(__GNUC__) || defined(__clang__)
__attribute__((format(printf, 8, 9)))
#endif
static void textok__wt(textok__walk *w, float **slot, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3,
                       const char *fmt, ...)
{
    int64_t dims[4];
    size_t numel = 1;
    int i;
    dims[0] = d0; dims[1] = d1; dims[2] = d2; dims[3] = d3;
    for (i = 0; i < ndim; i++)
        if (!textok__mul_size(numel, (size_t)dims[i], &numel)) w->overflow = 1;
    if (w->specs && w->n < w->max_specs) {
        va_list ap;
        textok_tensor_spec *s = &w->specs[w->n];
        va_start(ap, fmt);
        vsnprintf(s->name, sizeof s->name, fmt, ap);
        va_end(ap);
        s->ndim = ndim;
        for (i = 0; i < 4; i++) s->shape[i] = i < ndim ? dims[i] : 0;
    }
    if (slot) *slot = w->base ? w->base + w->offset : NULL;
    if (!textok__add_size(w->offset, numel, &w->offset)) w->overflow = 1;
    w->n++;
}

/* The arena: every activation buffer, carved from one allocation. Run once with base NULL to
   size it, then again to bind. Slices are rounded up to 16 floats (64 bytes). Kernels take
   element counts as int, so no buffer may hold more than INT_MAX floats: a config from a
   hostile file that asks for more is refused here rather than overflowing an int later. */
typedef struct textok__carve { float *base; size_t used; int overflow; } textok__carve;
static float *textok__take(textok__carve *a, size_t n)
{
    float *p = a->base ? a->base + a->used : NULL;
    size_t r;
    if (n > (size_t)INT_MAX) a->overflow = 1;
    if (!textok__add_size(n, 15, &r) || !textok__add_size(a->used, r & ~(size_t)15, &a->used)) a->overflow = 1;
    return p;
}
static size_t textok__max2(size_t a, size_t b) { return a > b ? a : b; }
static size_t textok__mul3(size_t a, size_t b, size_t c, int *overflow)
{
    size_t r;
    if (!textok__mul_size(a, b, &r) || !textok__mul_size(r, c, &r)) { *overflow = 1; return 0; }
    return r;
}

/* ----- the generators' transformer block: one block, four families ------------------------------
   DiT (adaLN-Zero, LayerNorm without affine, tanh GELU), DiT-T2I (plus a cross-attention
   sublayer), UViT (pre-norm, qkv without bias, a skip linear on the out-blocks) and BERT
   (post-norm) differ only in which parts exist and where the norms sit, so they share one
   forward and one backward. Pre-norm (post_norm = 0):
       x0 = has_skip ? skip_linear(cat[xin, skip]) : xin
       h  = LN1(x0), then h*(1 + scale1) + shift1            (has_ada)
       x1 = x0 + [gate1 *] proj(attention(q(h), k(h), v(h)))
       x2 = x1 + ca_proj(attention(ca_q(x1), ca_k(ctx), ca_v(ctx), ctx_mask))   (has_cross)
       h2 = LN2(x2), then h2*(1 + scale2) + shift2          (has_ada)
       xout = x2 + [gate2 *] fc2(GELU(fc1(h2)))
   Post-norm (BERT): x1 = LN1(x0 + proj(attention(x0))); xout = LN2(x1 + fc2(GELU(fc1(x1)))).
   The six adaLN chunks come from Linear(SiLU(c)) (6D, D), applied chunk by chunk (weight rows
   j*D .. (j+1)*D) so that each is a contiguous (B, D) array the modulate/gate kernels take.
   The cross-attention follows PixArt-alpha: no norm and no gate on it. */
typedef struct textok__tblock {      /* one block's weights; NULL = absent */
    float *skip_w, *skip_b;          /* (D, 2D), (D): UViT out-blocks; input columns 0..D-1 act on x */
    float *ln1_w, *ln1_b;            /* (D), or NULL for a LayerNorm without affine (DiT) */
    float *q_w, *k_w, *v_w;          /* (D, D) each; a fused qkv (3D, D) has k_w = q_w + D*D, v_w = q_w + 2D*D */
    float *q_b, *k_b, *v_b;          /* (D) each, or NULL (UViT's qkv has no bias) */
    float *proj_w, *proj_b;          /* (D, D), (D) */
    float *ca_q_w, *ca_q_b;          /* cross-attention: (D, D), (D) queries from x1 */
    float *ca_k_w, *ca_k_b;          /* (D, D), (D) keys from the context (fused kv: v = kv + D*D) */
    float *ca_v_w, *ca_v_b;          /* (D, D), (D) */
    float *ca_proj_w, *ca_proj_b;    /* (D, D), (D) */
    float *ln2_w, *ln2_b;            /* (D) or NULL */
    float *fc1_w, *fc1_b;            /* (M, D), (M) */
    float *fc2_w, *fc2_b;            /* (D, M), (D) */
    float *ada_w, *ada_b;            /* (6D, D), (6D): shift1, scale1, gate1, shift2, scale2, gate2 */
} textok__tblock;

typedef struct textok__tb_shape {
    int B, T, D, H, M;               /* batch, tokens, width, heads, MLP hidden */
    int Tc;                          /* context rows for the cross-attention (has_cross) */
    float eps;                       /* LayerNorm eps: 1e-6 DiT, 1e-5 UViT, 1e-12 BERT */
    int post_norm;                   /* 1: BERT */
    int gelu_tanh;                   /* 1: DiT's tanh approximation; 0: exact erf */
    int has_skip, has_cross, has_ada;
} textok__tb_shape;

typedef struct textok__tb_tape {     /* what backward reads; a pointer is NULL where a part is absent */
    const float *xin, *skip, *ctx, *csilu;   /* the inputs, recorded by forward (not owned) */
    float *cat;                      /* (B, T, 2D) [xin | skip] (has_skip) */
    float *tmp;                      /* (B, T, 2D) transposes for the concatenation (has_skip) */
    float *x0;                       /* (B, T, D) the skip linear's output (has_skip) */
    float *mod;                      /* (6, B, D) the adaLN chunks (has_ada) */
    float *ln1, *ln1_mean, *ln1_rstd;   /* (B, T, D), (B*T) x2; post-norm: x1 itself */
    float *h1;                       /* (B, T, D) modulated LN1 output (has_ada) */
    float *q, *k, *v, *att;          /* (B, T, D) */
    float *lse;                      /* (B, H, T) */
    float *a;                        /* (B, T, D) proj output; post-norm: x0 + proj output */
    float *x1;                       /* (B, T, D) pre-norm residual after attention */
    float *cq, *catt;                /* (B, T, D) (has_cross) */
    float *ck, *cv;                  /* (B, Tc, D) */
    float *clse;                     /* (B, H, T) */
    float *x2;                       /* (B, T, D) after the cross-attention (has_cross) */
    float *ln2, *ln2_mean, *ln2_rstd, *h2;
    float *fc, *gelu;                /* (B, T, M) before and after the GELU */
    float *m;                        /* (B, T, D) fc2 output; post-norm: x1 + fc2 output */
} textok__tb_tape;

typedef struct textok__tb_scratch {  /* backward scratch, shared by every block of a stack */
    float *dm, *dh, *dln, *da, *datt, *dq, *dk, *dv;   /* (B, T, D) */
    float *dck, *dcv;                /* (B, Tc, D) */
    float *dfc, *dgelu;              /* (B, T, M) */
    float *dmod;                     /* (6, B, D) */
    float *dcat, *dtmp;              /* (B, T, 2D) */
} textok__tb_scratch;

static void textok__tb_tape_carve(textok__carve *a, textok__tb_tape *t, const textok__tb_shape *s)
{
    const size_t B = (size_t)s->B, T = (size_t)s->T, D = (size_t)s->D;
    int *o = &a->overflow;
    const size_t n = textok__mul3(B, T, D, o), nm = textok__mul3(B, T, (size_t)s->M, o);
    const size_t nc = textok__mul3(B, (size_t)s->Tc, D, o), nl = textok__mul3(B, (size_t)s->H, T, o);
    memset(t, 0, sizeof *t);
    if (s->has_skip) { t->cat = textok__take(a, 2 * n); t->tmp = textok__take(a, 2 * n); t->x0 = textok__take(a, n); }
    if (s->has_ada) { t->mod = textok__take(a, textok__mul3(6, B, D, o)); t->h1 = textok__take(a, n); t->h2 = textok__take(a, n); }
    t->ln1 = textok__take(a, n); t->ln1_mean = textok__take(a, B * T); t->ln1_rstd = textok__take(a, B * T);
    t->q = textok__take(a, n); t->k = textok__take(a, n); t->v = textok__take(a, n); t->att = textok__take(a, n);
    t->lse = textok__take(a, nl);
    t->a = textok__take(a, n);
    if (!s->post_norm) t->x1 = textok__take(a, n);
    if (s->has_cross) {
        t->cq = textok__take(a, n); t->catt = textok__take(a, n);
        t->ck = textok__take(a, nc); t->cv = textok__take(a, nc);
        t->clse = textok__take(a, nl); t->x2 = textok__take(a, n);
    }
    t->ln2 = textok__take(a, n); t->ln2_mean = textok__take(a, B * T); t->ln2_rstd = textok__take(a, B * T);
    t->fc = textok__take(a, nm); t->gelu = textok__take(a, nm);
    t->m = textok__take(a, n);
}

static void textok__tb_scratch_carve(textok__carve *a, textok__tb_scratch *s, const textok__tb_shape *sh)
{
    const size_t B = (size_t)sh->B, T = (size_t)sh->T, D = (size_t)sh->D;
    int *o = &a->overflow;
    const size_t n = textok__mul3(B, T, D, o), nm = textok__mul3(B, T, (size_t)sh->M, o);
    memset(s, 0, sizeof *s);
    s->dm = textok__take(a, n); s->dh = textok__take(a, n); s->dln = textok__take(a, n); s->da = textok__take(a, n);
    s->datt = textok__take(a, n); s->dq = textok__take(a, n); s->dk = textok__take(a, n); s->dv = textok__take(a, n);
    if (sh->has_cross) {
        s->dck = textok__take(a, textok__mul3(B, (size_t)sh->Tc, D, o));
        s->dcv = textok__take(a, textok__mul3(B, (size_t)sh->Tc, D, o));
    }
    s->dfc = textok__take(a, nm); s->dgelu = textok__take(a, nm);
    if (sh->has_ada) s->dmod = textok__take(a, textok__mul3(6, B, D, o));
    if (sh->has_skip) { s->dcat = textok__take(a, 2 * n); s->dtmp = textok__take(a, 2 * n); }
}

static textok_attention_dims textok__tb_ad(const textok__tb_shape *s, int Tk)
{
    textok_attention_dims ad;
    ad.B = s->B; ad.Tq = s->T; ad.Tk = Tk; ad.C = s->D; ad.H = s->H;
    ad.scale = (float)(1.0 / sqrt((double)s->D / s->H));
    return ad;
}

static size_t textok__tb_work_floats(const textok__tb_shape *s)
{
    textok_attention_dims a = textok__tb_ad(s, s->T), c = textok__tb_ad(s, s->has_cross ? s->Tc : 1);
    return textok__max2(textok_attention_work_floats(&a), textok_attention_work_floats(&c));
}

static void textok__tb_forward(const textok_kernels *k, const textok__tblock *w, const textok__tb_shape *s,
                               textok__tb_tape *t, const float *xin, float *xout, const float *csilu,
                               const float *skip, const float *ctx, const unsigned char *ctx_mask, float *work)
{
    const int B = s->B, D = s->D, M = s->M, BT = s->B * s->T;
    const size_t n = (size_t)BT * D, bd = (size_t)B * D;
    const textok_attention_dims ad = textok__tb_ad(s, s->T);
    const float *x0 = xin, *h, *x2;
    int j;
    t->xin = xin; t->skip = skip; t->ctx = ctx; t->csilu = csilu;
    if (s->has_skip) {
        /* cat[x, skip] along features, as (cat^T)^T: both transposed into one (2D, BT) block */
        k->transpose_forward(k, t->tmp, xin, 1, BT, D);
        k->transpose_forward(k, t->tmp + n, skip, 1, BT, D);
        k->transpose_forward(k, t->cat, t->tmp, 1, 2 * D, BT);
        textok__linear(k, t->x0, t->cat, w->skip_w, w->skip_b, BT, 2 * D, D);
        x0 = t->x0;
    }
    if (s->has_ada)
        for (j = 0; j < 6; j++)
            textok__linear(k, t->mod + j * bd, csilu, w->ada_w + (size_t)j * D * D, w->ada_b + (size_t)j * D, B, D, D);
    /* attention */
    if (s->post_norm) {
        h = x0;
    } else {
        k->layernorm_forward(k, t->ln1, t->ln1_mean, t->ln1_rstd, x0, w->ln1_w, w->ln1_b, BT, D, s->eps);
        h = t->ln1;
        if (s->has_ada) {
            k->modulate_forward(k, t->h1, t->ln1, t->mod, t->mod + bd, B, s->T, D);
            h = t->h1;
        }
    }
    textok__linear(k, t->q, h, w->q_w, w->q_b, BT, D, D);
    textok__linear(k, t->k, h, w->k_w, w->k_b, BT, D, D);
    textok__linear(k, t->v, h, w->v_w, w->v_b, BT, D, D);
    k->attention_forward(k, t->att, t->lse, t->q, t->k, t->v, NULL, NULL, &ad, work);
    textok__linear(k, t->a, t->att, w->proj_w, w->proj_b, BT, D, D);
    if (s->post_norm) {
        k->add_forward(k, t->a, t->a, x0, n);
        k->layernorm_forward(k, t->ln1, t->ln1_mean, t->ln1_rstd, t->a, w->ln1_w, w->ln1_b, BT, D, s->eps);
        /* MLP on x1 = ln1, then LN2 of the sum straight into xout */
        textok__linear(k, t->fc, t->ln1, w->fc1_w, w->fc1_b, BT, D, M);
        k->gelu_forward(k, t->gelu, t->fc, (size_t)BT * M, s->gelu_tanh);
        textok__linear(k, t->m, t->gelu, w->fc2_w, w->fc2_b, BT, M, D);
        k->add_forward(k, t->m, t->m, t->ln1, n);
        k->layernorm_forward(k, xout, t->ln2_mean, t->ln2_rstd, t->m, w->ln2_w, w->ln2_b, BT, D, s->eps);
        return;
    }
    if (s->has_ada) k->gate_forward(k, t->x1, x0, t->a, t->mod + 2 * bd, B, s->T, D);
    else            k->add_forward(k, t->x1, x0, t->a, n);
    x2 = t->x1;
    if (s->has_cross) {
        const textok_attention_dims cd = textok__tb_ad(s, s->Tc);
        const int BTc = B * s->Tc;
        textok__linear(k, t->cq, t->x1, w->ca_q_w, w->ca_q_b, BT, D, D);
        textok__linear(k, t->ck, ctx, w->ca_k_w, w->ca_k_b, BTc, D, D);
        textok__linear(k, t->cv, ctx, w->ca_v_w, w->ca_v_b, BTc, D, D);
        k->attention_forward(k, t->catt, t->clse, t->cq, t->ck, t->cv, NULL, ctx_mask, &cd, work);
        textok__linear(k, t->x2, t->catt, w->ca_proj_w, w->ca_proj_b, BT, D, D);
        k->add_forward(k, t->x2, t->x2, t->x1, n);
        x2 = t->x2;
    }
    /* MLP */
    k->layernorm_forward(k, t->ln2, t->ln2_mean, t->ln2_rstd, x2, w->ln2_w, w->ln2_b, BT, D, s->eps);
    h = t->ln2;
    if (s->has_ada) {
        k->modulate_forward(k, t->h2, t->ln2, t->mod + 3 * bd, t->mod + 4 * bd, B, s->T, D);
        h = t->h2;
    }
    textok__linear(k, t->fc, h, w->fc1_w, w->fc1_b, BT, D, M);
    k->gelu_forward(k, t->gelu, t->fc, (size_t)BT * M, s->gelu_tanh);
    textok__linear(k, t->m, t->gelu, w->fc2_w, w->fc2_b, BT, M, D);
    if (s->has_ada) k->gate_forward(k, xout, x2, t->m, t->mod + 5 * bd, B, s->T, D);
    else            k->add_forward(k, xout, x2, t->m, n);
}

/* y = x W^T + b, backward: dx += dy W, dW += dy^T x, db += sum dy (any of the three may be NULL) */
static void textok__linear_backward(const textok_kernels *k, float *dx, float *dw, float *db, const float *dy,
                                    const float *x, const float *w, int N, int in, int out)
{
    textok_matmul_dims d;
    d.batch = 1; d.M = N; d.N = out; d.K = in; d.trans_a = 0; d.trans_b = 1;
    k->matmul_backward(k, dx, dw, db, dy, x, w, &d);
}

/* q, k, v = three linears of the same input h: dh += the three input gradients */
static void textok__tb_qkv_backward(const textok_kernels *k, const textok__tblock *w, const textok__tblock *g,
                                    float *dh, const float *dq, const float *dk, const float *dv, const float *h,
                                    int BT, int D)
{
    textok__linear_backward(k, dh, g->q_w, g->q_b, dq, h, w->q_w, BT, D, D);
    textok__linear_backward(k, dh, g->k_w, g->k_b, dk, h, w->k_w, BT, D, D);
    textok__linear_backward(k, dh, g->v_w, g->v_b, dv, h, w->v_w, BT, D, D);
}

static void textok__tb_backward(const textok_kernels *k, const textok__tblock *w, const textok__tblock *g,
                                const textok__tb_shape *s, const textok__tb_tape *t, float *dx, float *dcsilu,
                                float *dskip, float *dctx, const unsigned char *ctx_mask,
                                const textok__tb_scratch *sc, float *work)
{
    const int B = s->B, D = s->D, M = s->M, BT = s->B * s->T;
    const size_t n = (size_t)BT * D, nm = (size_t)BT * M, bd = (size_t)B * D;
    const textok_attention_dims ad = textok__tb_ad(s, s->T);
    const float *x0 = s->has_skip ? t->x0 : t->xin;
    const float *x2 = s->has_cross ? t->x2 : t->x1;
    float *dm = dx, *da = dx, *dh1, *dh2;
    int j;
    if (s->has_ada) k->fill(k, sc->dmod, 6 * bd, 0.0f);
    if (s->post_norm) {
        /* xout = LN2(s2), s2 = x1 + m (t->m holds s2); x1 = LN1(s1), s1 = x0 + a (t->a holds s1) */
        k->fill(k, sc->dm, n, 0.0f);
        k->layernorm_backward(k, sc->dm, g->ln2_w, g->ln2_b, dx, t->m, w->ln2_w, t->ln2_mean, t->ln2_rstd, BT, D);
        k->fill(k, sc->dgelu, nm, 0.0f);
        textok__linear_backward(k, sc->dgelu, g->fc2_w, g->fc2_b, sc->dm, t->gelu, w->fc2_w, BT, M, D);
        k->fill(k, sc->dfc, nm, 0.0f);
        k->gelu_backward(k, sc->dfc, sc->dgelu, t->fc, nm, s->gelu_tanh);
        textok__linear_backward(k, sc->dm, g->fc1_w, g->fc1_b, sc->dfc, t->ln1, w->fc1_w, BT, D, M);  /* dm = d x1 */
        k->fill(k, sc->da, n, 0.0f);
        k->layernorm_backward(k, sc->da, g->ln1_w, g->ln1_b, sc->dm, t->a, w->ln1_w, t->ln1_mean, t->ln1_rstd, BT, D);
        /* da = d s1 = d x0's residual share and d(proj output) */
        k->copy(k, dx, sc->da, n * sizeof(float));
        da = sc->da;
        dh1 = dx;   /* the qkv input is x0 itself */
    } else {
        /* xout = x2 + [gate2 *] m */
        if (s->has_ada) {
            k->fill(k, sc->dm, n, 0.0f);
            k->gate_backward(k, NULL, sc->dm, sc->dmod + 5 * bd, dx, t->m, t->mod + 5 * bd, B, s->T, D);
            dm = sc->dm;
        }
        k->fill(k, sc->dgelu, nm, 0.0f);
        textok__linear_backward(k, sc->dgelu, g->fc2_w, g->fc2_b, dm, t->gelu, w->fc2_w, BT, M, D);
        k->fill(k, sc->dfc, nm, 0.0f);
        k->gelu_backward(k, sc->dfc, sc->dgelu, t->fc, nm, s->gelu_tanh);
        k->fill(k, sc->dh, n, 0.0f);
        textok__linear_backward(k, sc->dh, g->fc1_w, g->fc1_b, sc->dfc, s->has_ada ? t->h2 : t->ln2, w->fc1_w, BT, D, M);
        dh2 = sc->dh;
        if (s->has_ada) {
            k->fill(k, sc->dln, n, 0.0f);
            k->modulate_backward(k, sc->dln, sc->dmod + 3 * bd, sc->dmod + 4 * bd, sc->dh, t->ln2, t->mod + 4 * bd, B, s->T, D);
            dh2 = sc->dln;
        }
        k->layernorm_backward(k, dx, g->ln2_w, g->ln2_b, dh2, x2, w->ln2_w, t->ln2_mean, t->ln2_rstd, BT, D);
        /* dx = d x2 */
        if (s->has_cross) {
            const textok_attention_dims cd = textok__tb_ad(s, s->Tc);
            const int BTc = B * s->Tc;
            const size_t nc = (size_t)BTc * D;
            k->fill(k, sc->datt, n, 0.0f);
            textok__linear_backward(k, sc->datt, g->ca_proj_w, g->ca_proj_b, dx, t->catt, w->ca_proj_w, BT, D, D);
            k->fill(k, sc->dq, n, 0.0f); k->fill(k, sc->dck, nc, 0.0f); k->fill(k, sc->dcv, nc, 0.0f);
            k->attention_backward(k, sc->dq, sc->dck, sc->dcv, NULL, sc->datt, t->cq, t->ck, t->cv, NULL, ctx_mask,
                                  t->catt, t->clse, &cd, work);
            textok__linear_backward(k, dx, g->ca_q_w, g->ca_q_b, sc->dq, t->x1, w->ca_q_w, BT, D, D);
            textok__linear_backward(k, dctx, g->ca_k_w, g->ca_k_b, sc->dck, t->ctx, w->ca_k_w, BTc, D, D);
            textok__linear_backward(k, dctx, g->ca_v_w, g->ca_v_b, sc->dcv, t->ctx, w->ca_v_w, BTc, D, D);
        }
        /* dx = d x1; x1 = x0 + [gate1 *] a */
        if (s->has_ada) {
            k->fill(k, sc->da, n, 0.0f);
            k->gate_backward(k, NULL, sc->da, sc->dmod + 2 * bd, dx, t->a, t->mod + 2 * bd, B, s->T, D);
            da = sc->da;
        }
        dh1 = sc->dh;
        k->fill(k, sc->dh, n, 0.0f);
    }
    k->fill(k, sc->datt, n, 0.0f);
    textok__linear_backward(k, sc->datt, g->proj_w, g->proj_b, da, t->att, w->proj_w, BT, D, D);
    k->fill(k, sc->dq, n, 0.0f); k->fill(k, sc->dk, n, 0.0f); k->fill(k, sc->dv, n, 0.0f);
    k->attention_backward(k, sc->dq, sc->dk, sc->dv, NULL, sc->datt, t->q, t->k, t->v, NULL, NULL, t->att, t->lse, &ad, work);
    if (s->post_norm) {
        textok__tb_qkv_backward(k, w, g, dh1, sc->dq, sc->dk, sc->dv, x0, BT, D);   /* dx = d x0 */
    } else {
        textok__tb_qkv_backward(k, w, g, dh1, sc->dq, sc->dk, sc->dv, s->has_ada ? t->h1 : t->ln1, BT, D);
        if (s->has_ada) {
            k->fill(k, sc->dln, n, 0.0f);
            k->modulate_backward(k, sc->dln, sc->dmod, sc->dmod + bd, sc->dh, t->ln1, t->mod + bd, B, s->T, D);
            dh1 = sc->dln;
        }
        k->layernorm_backward(k, dx, g->ln1_w, g->ln1_b, dh1, x0, w->ln1_w, t->ln1_mean, t->ln1_rstd, BT, D);
    }
    /* dx = d x0 */
    if (s->has_ada)
        for (j = 0; j < 6; j++)
            textok__linear_backward(k, dcsilu, g->ada_w + (size_t)j * D * D, g->ada_b + (size_t)j * D, sc->dmod + j * bd,
                                    t->csilu, w->ada_w + (size_t)j * D * D, B, D, D);
    if (s->has_skip) {
        /* d cat (BT, 2D) -> its transpose (2D, BT): rows 0..D-1 are d xin^T, rows D..2D-1 d skip^T */
        k->fill(k, sc->dcat, 2 * n, 0.0f);
        textok__linear_backward(k, sc->dcat, g->skip_w, g->skip_b, dx, t->cat, w->skip_w, BT, 2 * D, D);
        k->transpose_forward(k, sc->dtmp, sc->dcat, 1, BT, 2 * D);
        k->transpose_forward(k, dx, sc->dtmp, 1, D, BT);
        if (dskip) k->transpose_backward(k, dskip, sc->dtmp + n, 1, BT, D);
    }
}

static size_t textok__spec_numel(const textok_tensor_spec *s)
{
    size_t n = 1;
    int d;
    for (d = 0; d < s->ndim; d++) n *= (size_t)s->shape[d];
    return n;
}

/* Before a loader allocates anything that a config read from a file sizes (parameters, the
   activation arena): the file must be able to hold that config's n_required tensors at 2 bytes
   per element at least (F16/BF16; F32 takes 4). So a small file whose __metadata__ claims a huge
   model is refused without allocating for it; only the spec list is made, whose length the
   config checks bound (a few MB at most). Missing or extra tensors are the loader's own checks,
   which name them. */
static int textok__st_precheck(const textok_safetensors *st, int n_required, int (*fill)(const void *cfg, textok_tensor_spec *, int),
                               const void *cfg, const char *what)
{
    textok_tensor_spec *specs;
    size_t total = 0, k;
    int i;
    if (n_required < 0) return TEXTOK_OK;   /* an invalid config: the model's own check says why */
    if (!(specs = (textok_tensor_spec *)textok__calloc((size_t)(n_required ? n_required : 1), sizeof *specs)))
        return textok__fail(TEXTOK_ERR_NOMEM, "%s: out of memory", st->path);
    fill(cfg, specs, n_required);
    for (i = 0; i < n_required; i++) {
        k = textok__spec_numel(&specs[i]);
        total = k > SIZE_MAX / 2 - total ? SIZE_MAX / 2 : total + k;
    }
    TEXTOK_FREE(specs);
    if (total > st->buffer_size / 2)
        return textok__fail(TEXTOK_ERR_SHAPE, "%s: the %s its __metadata__ describes has %zu parameters, more than its "
                            "%zu data bytes can hold (2 bytes each at least): a different or damaged file",
                            st->path, what, total, st->buffer_size);
    return TEXTOK_OK;
}
static int textok__fill_titok(const void *c, textok_tensor_spec *s, int n) { return textok_titok_tensor_specs((const textok_titok_config *)c, s, n); }
static int textok__fill_dit(const void *c, textok_tensor_spec *s, int n) { return textok_dit_tensor_specs((const textok_dit_config *)c, s, n); }
static int textok__fill_maskgit(const void *c, textok_tensor_spec *s, int n) { return textok_maskgit_tensor_specs((const textok_maskgit_config *)c, s, n); }
static int textok__fill_t5(const void *c, textok_tensor_spec *s, int n) { return textok_t5_tensor_specs((const textok_t5_config *)c, s, n); }

static int textok__parse_int(const char *s, int *out)
{
    long v = 0;
    int digits = 0;
    if (*s == '-') return 0;
    for (; *s >= '0' && *s <= '9'; s++, digits++) {
        v = v * 10 + (*s - '0');
        if (v > 1000000000L) return 0;
    }
    if (!digits || *s) return 0;
    *out = (int)v;
    return 1;
}

/* ---------------------------------------------------------------------------------------------
   9. Text: the SentencePiece Unigram tokenizer, read from a Hugging Face tokenizer.json
   (textok-paper.md 3.5). textok_spm_encode runs HF's pipeline in HF's order:
     1. added tokens (<pad>, </s>, <extra_id_0>, ...) are split off the raw text, leftmost-longest
        (lstrip/rstrip take the whitespace beside them along);
     2. each remaining part is normalised (Precompiled charsmap, Replace, Strip, in file order);
        added tokens with normalized = true are then split off the normalised text;
     3. pre-tokenizers cut it into words (Metaspace: ' ' -> U+2581 "lower one eighth block", one
        in front by prepend_scheme, a cut before each; WhitespaceSplit); empty words vanish;
     4. every word goes through the Unigram Viterbi on its own;
     5. the post-processor's template adds </s> after truncation.
   Everything is read into this module's own arrays at load; the JSON is not kept. Encoding
   allocates its scratch per call, so one model serves any number of threads. */

/* ---- 9.1 UTF-8 and White_Space ---------------------------------------------------------------- */

/* Length of the UTF-8 sequence at s (n > 0 bytes available) if it is valid (shortest form, no
   surrogates, at most U+10FFFF), else 0. *cp gets the code point. */
static int textok__utf8_dec(const unsigned char *s, size_t n, uint32_t *cp)
{
    uint32_t c = s[0], min;
    int len, k;
    if (c < 0x80) { *cp = c; return 1; }
    if (c >= 0xc2 && c <= 0xdf) { len = 2; c &= 0x1f; min = 0x80; }
    else if (c >= 0xe0 && c <= 0xef) { len = 3; c &= 0x0f; min = 0x800; }
    else if (c >= 0xf0 && c <= 0xf4) { len = 4; c &= 0x07; min = 0x10000; }
    else return 0;
    if (n < (size_t)len) return 0;
    for (k = 1; k < len; k++) {
        if ((s[k] & 0xc0) != 0x80) return 0;
        c = c << 6 | (s[k] & 0x3fu);
    }
    if (c < min || c > 0x10ffff || (c >= 0xd800 && c < 0xe000)) return 0;
    *cp = c;
    return len;
}

/* Bytes of the (valid) UTF-8 character that starts with byte b. */
static int textok__utf8_len(unsigned char b) { return b < 0xc0 ? 1 : b < 0xe0 ? 2 : b < 0xf0 ? 3 : 4; }

/* Offset of the first invalid byte in s[0, n), or n if it is all valid UTF-8. */
static size_t textok__utf8_check(const char *s, size_t n)
{
    size_t i = 0;
    uint32_t cp;
    int k;
    while (i < n) {
        if ((unsigned char)s[i] < 0x80) { i++; continue; }
        if (!(k = textok__utf8_dec((const unsigned char *)s + i, n - i, &cp))) return i;
        i += (size_t)k;
    }
    return n;
}

/* Unicode White_Space: what Rust's char::is_whitespace (HF's Strip, WhitespaceSplit, and the
   \s of lstrip/rstrip) tests. */
static int textok__is_white_space(uint32_t c)
{
    return (c >= 0x9 && c <= 0xd) || c == 0x20 || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f ||
           c == 0x205f || c == 0x3000;
}

/* Bytes of the White_Space character at s[0, n) (valid UTF-8), or 0 if it is not one. */
static int textok__ws_at(const char *s, size_t n)
{
    uint32_t cp = 0;
    int k = textok__utf8_dec((const unsigned char *)s, n, &cp);
    return k && textok__is_white_space(cp) ? k : 0;
}

/* Bytes of the White_Space character that ends at s[n) (valid UTF-8, n > 0), or 0. */
static int textok__ws_before(const char *s, size_t n)
{
    size_t a = n - 1;
    while (a > 0 && ((unsigned char)s[a] & 0xc0) == 0x80 && n - a < 4) a--;
    return textok__ws_at(s + a, n - a) == (int)(n - a) ? (int)(n - a) : 0;
}

/* arr (capacity *cap elements of elem bytes) with room for need: arr itself, or the moved array
   (capacity doubled as often as needed); NULL when out of memory (arr is then still valid). */
static void *textok__reserve(void *arr, size_t *cap, size_t need, size_t elem)
{
    size_t nc = *cap ? *cap : 64, bytes;
    void *p;
    if (need <= *cap && arr) return arr;
    while (nc < need) {
        if (nc > SIZE_MAX / 2) return NULL;
        nc *= 2;
    }
    if (!textok__mul_size(nc, elem, &bytes) || !(p = TEXTOK_REALLOC(arr, bytes))) return NULL;
    *cap = nc;
    return p;
}

/* A growable byte string. */
typedef struct textok__bytes {
    char  *p;
    size_t n, cap;
} textok__bytes;

static int textok__bytes_put(textok__bytes *b, const char *s, size_t n)
{
    size_t need;
    void *p;
    if (!textok__add_size(b->n, n, &need) || !(p = textok__reserve(b->p, &b->cap, need, 1))) return 0;
    b->p = (char *)p;
    if (n) memcpy(b->p + b->n, s, n);
    b->n = need;
    return 1;
}

/* ---- 9.2 A JSON document for tokenizer.json --------------------------------------------------

   The whole file becomes an array of nodes (one per value) before anything is read from it, so
   the loader can look keys up in any order. It is strict (RFC 8259: no comments, no trailing
   commas, one value, UTF-8 only) and bounded: nesting at most TEXTOK_MAX_JSON_DEPTH deep; every
   node takes at least one byte of input and every decoded string is no longer than its source,
   so memory is linear in the file size, and so is time (keys are looked up by a linear scan of
   one object, which also finds duplicate keys). Numbers are read exactly as serde_json (HF's
   parser, without its float_roundtrip feature) reads them, so a vocab score is the same double
   that HF compares in its Viterbi. */

enum { TEXTOK__J_NULL, TEXTOK__J_FALSE, TEXTOK__J_TRUE, TEXTOK__J_NUM, TEXTOK__J_STR, TEXTOK__J_ARR,
       TEXTOK__J_OBJ };

typedef struct textok__jnode {
    int     type;       /* TEXTOK__J_* */
    int     is_int;     /* NUM: written as an integer (no '.', no exponent) that fits int64 */
    size_t  n;          /* ARR, OBJ: members; STR: bytes */
    size_t  first;      /* ARR, OBJ: the first member (0 = none: node 0 is the root) */
    size_t  next;       /* the next member of the same container (0 = last) */
    size_t  str;        /* STR: offset of the decoded text in the pool (NUL-terminated) */
    size_t  key;        /* a member of an OBJ: offset of its decoded key in the pool */
    size_t  key_len;
    size_t  at;         /* byte offset of the value in the file, for messages */
    int64_t ival;       /* NUM with is_int */
    double  num;        /* NUM */
} textok__jnode;

typedef struct textok__jdoc {
    textok__jnode *nodes;
    size_t         n_nodes, cap_nodes;
    char          *pool;      /* decoded strings and keys; at most the file size + 1 bytes */
    size_t         pool_len;
    const char    *file;      /* for messages */
} textok__jdoc;

static void textok__jdoc_free(textok__jdoc *d)
{
    TEXTOK_FREE(d->nodes);
    TEXTOK_FREE(d->pool);
    memset(d, 0, sizeof *d);
}

/* "file: byte 17: expected ':' but found 'x'" */
static int textok__jsyntax(const textok__cur *c, const char *expected)
{
    char found[32] = "the end of the file";
    unsigned char ch = c->p < c->end ? (unsigned char)*c->p : 0;
    if (c->p < c->end)
        snprintf(found, sizeof found, ch >= 0x20 && ch < 0x7f ? "'%c'" : "byte 0x%02x", ch);
    return textok__cfail(c, TEXTOK_ERR_FORMAT, "byte %zu: expected %s but found %s", textok__pos(c),
                         expected, found);
}

static int textok__jnew(textok__cur *c, textok__jdoc *d, int type, size_t *idx)
{
    textok__jnode *nd;
    void *p = textok__reserve(d->nodes, &d->cap_nodes, d->n_nodes + 1, sizeof *d->nodes);
    if (!p) return textok__cfail(c, TEXTOK_ERR_NOMEM, "out of memory reading the JSON");
    d->nodes = (textok__jnode *)p;
    nd = &d->nodes[d->n_nodes];
    memset(nd, 0, sizeof *nd);
    nd->type = type;
    nd->at = textok__pos(c);
    *idx = d->n_nodes++;
    return TEXTOK_OK;
}

/* A string at the cursor (which is at its '"') into the pool: escapes decoded, \uXXXX with
   surrogate pairs; raw control characters, invalid UTF-8, lone surrogates and \u0000 fail. */
static int textok__jstring(textok__cur *c, textok__jdoc *d, size_t *off, size_t *len)
{
    static const char esc_in[] = "\"\\/bfnrt", esc_out[] = "\"\\/\b\f\n\r\t";
    size_t start = textok__pos(c);
    char *o0 = d->pool + d->pool_len, *o = o0;
    c->p++;
    for (;;) {
        const char *at = c->p, *bad = NULL, *e;
        unsigned char ch;
        if (c->p >= c->end)
            return textok__cfail(c, TEXTOK_ERR_FORMAT, "byte %zu: unterminated string", start);
        ch = (unsigned char)*c->p;
        if (ch == '"') { c->p++; break; }
        if (ch < 0x20) {
            bad = "control character in a string (it must be escaped)";
        } else if (ch == '\\') {
            if (++c->p >= c->end)
                return textok__cfail(c, TEXTOK_ERR_FORMAT, "byte %zu: unterminated string", start);
            if (*c->p == 'u') { c->p++; bad = textok__json_uescape(c, c->end, &o); }
            else if (*c->p && (e = strchr(esc_in, *c->p)) != NULL) { *o++ = esc_out[e - esc_in]; c->p++; }
            else bad = "unknown escape sequence in a string";
        } else if (ch < 0x80) {
            *o++ = (char)ch;
            c->p++;
        } else {
            uint32_t cp;
            int k = textok__utf8_dec((const unsigned char *)c->p, (size_t)(c->end - c->p), &cp);
            if (!k) bad = "invalid UTF-8 in a string";
            else { memcpy(o, c->p, (size_t)k); o += k; c->p += k; }
        }
        if (bad) return textok__cfail(c, TEXTOK_ERR_FORMAT, "byte %zu: %s", (size_t)(at - c->beg), bad);
    }
    *o = 0;
    *off = d->pool_len;
    *len = (size_t)(o - o0);
    d->pool_len += *len + 1;
    return TEXTOK_OK;
}

/* 10^k as the nearest double (serde_json's POW10 table), 0 <= k <= 308. Up to 10^22 every
   product is exact; beyond, strtod on "1eK" (no decimal point, so no locale) rounds it. */
static double textok__pow10(int k)
{
    double p = 1.0;
    char buf[16];
    if (k <= 22) {
        while (k-- > 0) p *= 10.0;
        return p;
    }
    snprintf(buf, sizeof buf, "1e%d", k);
    return strtod(buf, NULL);
}

/* serde_json's f64_from_parts: the significand rounded to a double, then one multiply or divide
   by a power of ten (two roundings: not always the nearest double, but HF's). 0 = out of range. */
static int textok__f64_from_parts(int neg, uint64_t sig, int32_t exp10, double *out)
{
    double f = (double)sig;
    int64_t e = exp10;
    for (;;) {
        int64_t a = e < 0 ? -e : e;
        if (a <= 308) {
            if (e >= 0) {
                f *= textok__pow10((int)a);
                if (f > DBL_MAX) return 0;
            } else {
                f /= textok__pow10((int)a);
            }
            break;
        }
        if (f == 0.0) break;
        if (e >= 0) return 0;
        f /= 1e308;
        e += 308;
    }
    *out = neg ? -f : f;
    return 1;
}

/* A JSON number at the cursor, read as serde_json reads it: digits accumulate in a u64 until the
   next one would overflow it; later integer digits only scale, later fraction digits are
   dropped; the exponent is an i32 (saturating when added). */
static int textok__jnumber(textok__cur *c, textok__jnode *nd)
{
    const uint64_t cut = UINT64_MAX / 10, cut_d = UINT64_MAX % 10;
    const char *q = c->p;
    uint64_t sig = 0;
    int64_t e = 0;
    int neg = 0, is_int = 1, d;
#define TEXTOK__DIGIT(q) ((q) < c->end && *(q) >= '0' && *(q) <= '9')
#define TEXTOK__FITS(s, d) (!((s) >= cut && ((s) > cut || (uint64_t)(d) > cut_d)))
    if (*q == '-') { neg = 1; q++; }
    if (!TEXTOK__DIGIT(q)) { c->p = q; return textok__jsyntax(c, "a digit"); }
    if (*q == '0') {
        q++;
        if (TEXTOK__DIGIT(q)) { c->p = q; return textok__jsyntax(c, "no leading zeros in a number"); }
    } else {
        for (; TEXTOK__DIGIT(q); q++) {
            d = *q - '0';
            if (!TEXTOK__FITS(sig, d)) {   /* the rest of the integer part only scales */
                for (; TEXTOK__DIGIT(q); q++) e++;
                is_int = 0;
                break;
            }
            sig = sig * 10 + (uint64_t)d;
        }
    }
    if (q < c->end && *q == '.') {
        is_int = 0;
        if (!TEXTOK__DIGIT(q + 1)) { c->p = q + 1; return textok__jsyntax(c, "a digit after '.'"); }
        for (q++; TEXTOK__DIGIT(q); q++) {
            d = *q - '0';
            if (!TEXTOK__FITS(sig, d)) {
                while (TEXTOK__DIGIT(q)) q++;
                break;
            }
            sig = sig * 10 + (uint64_t)d;
            e--;
        }
    }
    if (q < c->end && (*q == 'e' || *q == 'E')) {
        int eneg = 0, over = 0;
        int64_t x = 0;
        is_int = 0;
        q++;
        if (q < c->end && (*q == '+' || *q == '-')) eneg = *q++ == '-';
        if (!TEXTOK__DIGIT(q)) { c->p = q; return textok__jsyntax(c, "a digit in the exponent"); }
        for (; TEXTOK__DIGIT(q); q++) {
            if (!over && x * 10 + (*q - '0') > INT32_MAX) over = 1;
            if (!over) x = x * 10 + (*q - '0');
        }
        if (over) {   /* serde_json: huge exponents give 0 or fail */
            if (sig != 0 && !eneg) { c->p = q; return textok__cfail(c, TEXTOK_ERR_FORMAT, "byte %zu: number out of range", nd->at); }
            c->p = q;
            nd->num = neg ? -0.0 : 0.0;
            return TEXTOK_OK;
        }
        e = eneg ? e - x : e + x;
    }
#undef TEXTOK__DIGIT
#undef TEXTOK__FITS
    if (e > INT32_MAX) e = INT32_MAX;
    if (e < INT32_MIN) e = INT32_MIN;
    c->p = q;
    if (!textok__f64_from_parts(neg, sig, (int32_t)e, &nd->num))
        return textok__cfail(c, TEXTOK_ERR_FORMAT, "byte %zu: number out of range", nd->at);
    if (is_int && sig <= (uint64_t)INT64_MAX) {
        nd->is_int = 1;
        nd->ival = neg ? -(int64_t)sig : (int64_t)sig;
    }
    return TEXTOK_OK;
}

static int textok__jvalue(textok__cur *c, textok__jdoc *d, int depth, size_t *out)
{
    static const char *const lit[3] = { "null", "false", "true" };
    size_t idx = 0, prev = 0;
    char ch, close;
    int rc, k;
    textok__ws(c);
    if (c->p >= c->end) return textok__jsyntax(c, "a value");
    ch = *c->p;
    if (ch == '{' || ch == '[') {
        int obj = ch == '{';
        if (depth >= TEXTOK_MAX_JSON_DEPTH)
            return textok__cfail(c, TEXTOK_ERR_FORMAT, "byte %zu: nested deeper than %d levels",
                                 textok__pos(c), TEXTOK_MAX_JSON_DEPTH);
        if ((rc = textok__jnew(c, d, obj ? TEXTOK__J_OBJ : TEXTOK__J_ARR, &idx))) return rc;
        close = obj ? '}' : ']';
        c->p++;
        if (!textok__eat(c, close)) {
            do {
                size_t key = 0, key_len = 0, child = 0;
                if (obj) {
                    textok__ws(c);
                    if (c->p >= c->end || *c->p != '"') return textok__jsyntax(c, "a string (a key)");
                    if ((rc = textok__jstring(c, d, &key, &key_len))) return rc;
                    if (!textok__eat(c, ':')) return textok__jsyntax(c, "':'");
                }
                if ((rc = textok__jvalue(c, d, depth + 1, &child))) return rc;
                d->nodes[child].key = key;
                d->nodes[child].key_len = key_len;
                if (prev) d->nodes[prev].next = child;
                else d->nodes[idx].first = child;
                prev = child;
                d->nodes[idx].n++;
            } while (textok__eat(c, ','));
            if (!textok__eat(c, close)) return textok__jsyntax(c, obj ? "',' or '}'" : "',' or ']'");
        }
    } else if (ch == '"') {
        if ((rc = textok__jnew(c, d, TEXTOK__J_STR, &idx))) return rc;
        if ((rc = textok__jstring(c, d, &d->nodes[idx].str, &d->nodes[idx].n))) return rc;
    } else if (ch == '-' || (ch >= '0' && ch <= '9')) {
        if ((rc = textok__jnew(c, d, TEXTOK__J_NUM, &idx))) return rc;
        if ((rc = textok__jnumber(c, &d->nodes[idx]))) return rc;
    } else {
        for (k = 0; k < 3; k++) {
            size_t n = strlen(lit[k]);
            if ((size_t)(c->end - c->p) >= n && memcmp(c->p, lit[k], n) == 0) break;
        }
        if (k == 3) return textok__jsyntax(c, "a value");
        if ((rc = textok__jnew(c, d, TEXTOK__J_NULL + k, &idx))) return rc;
        c->p += strlen(lit[k]);
    }
    *out = idx;
    return TEXTOK_OK;
}

static int textok__jparse(textok__jdoc *d, const char *text, size_t n, const char *file)
{
    textok__cur c;
    size_t root = 0;
    int rc;
    memset(d, 0, sizeof *d);
    d->file = file;
    c.p = c.beg = text;
    c.end = text + n;
    c.file = file;
    c.tensor = NULL;
    if (!(d->pool = (char *)textok__malloc(n + 1)))
        return textok__cfail(&c, TEXTOK_ERR_NOMEM, "out of memory reading %zu bytes of JSON", n);
    if ((rc = textok__jvalue(&c, d, 0, &root))) return rc;
    textok__ws(&c);
    if (c.p != c.end) return textok__jsyntax(&c, "the end of the file after the top-level value");
    if (d->nodes[root].type != TEXTOK__J_OBJ) return textok__cfail(&c, TEXTOK_ERR_FORMAT, "the top-level value must be an object");
    return TEXTOK_OK;
}

static const char *textok__jtext(const textok__jdoc *d, size_t i) { return d->pool + d->nodes[i].str; }

static const char *textok__jtype_name(int t)
{
    static const char *const names[7] = { "null", "false", "true", "a number", "a string", "an array", "an object" };
    return names[t];
}

/* The member `key` of object obj: *out = its node, 0 if absent. A repeated key fails. */
static int textok__jget(const textok__jdoc *d, size_t obj, const char *key, const char *path, size_t *out)
{
    size_t i, klen = strlen(key);
    *out = 0;
    for (i = d->nodes[obj].first; i; i = d->nodes[i].next)
        if (d->nodes[i].key_len == klen && memcmp(d->pool + d->nodes[i].key, key, klen) == 0) {
            if (*out)
                return textok__fail(TEXTOK_ERR_FORMAT, "%s: %s: duplicate key \"%s\" (byte %zu)", d->file,
                                    path, key, d->nodes[i].at);
            *out = i;
        }
    return TEXTOK_OK;
}

static int textok__jwant(const textok__jdoc *d, size_t i, int type, const char *path)
{
    if (d->nodes[i].type == type) return TEXTOK_OK;
    return textok__fail(TEXTOK_ERR_FORMAT, "%s: %s must be %s, not %s (byte %zu)", d->file, path,
                        textok__jtype_name(type), textok__jtype_name(d->nodes[i].type), d->nodes[i].at);
}

/* Optional boolean member (absent or null = dflt). */
static int textok__jbool(const textok__jdoc *d, size_t obj, const char *key, const char *path, int dflt, int *v)
{
    size_t i;
    int rc = textok__jget(d, obj, key, path, &i);
    *v = dflt;
    if (rc || !i || d->nodes[i].type == TEXTOK__J_NULL) return rc;
    if (d->nodes[i].type != TEXTOK__J_TRUE && d->nodes[i].type != TEXTOK__J_FALSE)
        return textok__fail(TEXTOK_ERR_FORMAT, "%s: %s.%s must be true or false (byte %zu)", d->file, path, key,
                            d->nodes[i].at);
    *v = d->nodes[i].type == TEXTOK__J_TRUE;
    return TEXTOK_OK;
}

/* Required string member; *s points into the pool. */
static int textok__jstr_member(const textok__jdoc *d, size_t obj, const char *key, const char *path,
                               const char **s, size_t *len)
{
    size_t i;
    int rc = textok__jget(d, obj, key, path, &i);
    if (rc) return rc;
    if (!i) return textok__fail(TEXTOK_ERR_FORMAT, "%s: %s has no \"%s\" (byte %zu)", d->file, path, key, d->nodes[obj].at);
    if (d->nodes[i].type != TEXTOK__J_STR)
        return textok__fail(TEXTOK_ERR_FORMAT, "%s: %s.%s must be a string, not %s (byte %zu)", d->file, path, key,
                            textok__jtype_name(d->nodes[i].type), d->nodes[i].at);
    *s = textok__jtext(d, i);
    if (len) *len = d->nodes[i].n;
    return TEXTOK_OK;
}

/* An integer node in [lo, hi]. */
static int textok__jint(const textok__jdoc *d, size_t i, int64_t lo, int64_t hi, const char *path, int64_t *v)
{
    const textok__jnode *nd = &d->nodes[i];
    if (nd->type != TEXTOK__J_NUM || !nd->is_int || nd->ival < lo || nd->ival > hi)
        return textok__fail(TEXTOK_ERR_FORMAT, "%s: %s must be an integer in [%lld, %lld] (byte %zu)", d->file, path,
                            (long long)lo, (long long)hi, nd->at);
    *v = nd->ival;
    return TEXTOK_OK;
}

/* ---- 9.3 A byte trie: nodes numbered from 0 (the root), edges in one hash table ------------- */

typedef struct textok__trie {
    int32_t  *value;       /* (n_nodes) the value of the key that ends at a node, -1 if none */
    size_t    n_nodes, cap_nodes;
    uint64_t *edge_key;    /* (cap) (parent << 8 | byte) + 1 of an edge; 0 = an empty slot */
    uint32_t *edge_child;  /* (cap) the node the edge leads to */
    size_t    cap, n_edges;/* cap: a power of two, at least twice n_edges (linear probing) */
} textok__trie;

static void textok__trie_free(textok__trie *t)
{
    TEXTOK_FREE(t->value);
    TEXTOK_FREE(t->edge_key);
    TEXTOK_FREE(t->edge_child);
    memset(t, 0, sizeof *t);
}

static size_t textok__trie_slot(uint64_t key, size_t cap)
{
    uint64_t h = key * 0x9e3779b97f4a7c15ull;
    return (size_t)(h ^ (h >> 29)) & (cap - 1);
}

/* The child of node along byte b, or -1. */
static int64_t textok__trie_child(const textok__trie *t, size_t node, unsigned char b)
{
    uint64_t key = ((uint64_t)node << 8 | b) + 1;
    size_t i;
    if (!t->cap) return -1;
    for (i = textok__trie_slot(key, t->cap); t->edge_key[i]; i = (i + 1) & (t->cap - 1))
        if (t->edge_key[i] == key) return t->edge_child[i];
    return -1;
}

static int textok__trie_rehash(textok__trie *t, size_t cap)
{
    uint64_t *k = (uint64_t *)textok__calloc(cap, sizeof *k);
    uint32_t *v = (uint32_t *)textok__calloc(cap, sizeof *v);
    size_t i, j;
    if (!k || !v) { TEXTOK_FREE(k); TEXTOK_FREE(v); return 0; }
    for (i = 0; i < t->cap; i++)
        if (t->edge_key[i]) {
            for (j = textok__trie_slot(t->edge_key[i], cap); k[j]; j = (j + 1) & (cap - 1)) {}
            k[j] = t->edge_key[i];
            v[j] = t->edge_child[i];
        }
    TEXTOK_FREE(t->edge_key);
    TEXTOK_FREE(t->edge_child);
    t->edge_key = k;
    t->edge_child = v;
    t->cap = cap;
    return 1;
}

/* Adds key -> value; an existing key gets the new value. 0 = out of memory. */
static int textok__trie_put(textok__trie *t, const char *key, size_t len, int32_t value)
{
    size_t node = 0, i, k;
    void *p;
    if (!t->n_nodes) {
        if (!(p = textok__reserve(t->value, &t->cap_nodes, 1, sizeof *t->value))) return 0;
        t->value = (int32_t *)p;
        t->value[0] = -1;
        t->n_nodes = 1;
    }
    for (k = 0; k < len; k++) {
        int64_t ch = textok__trie_child(t, node, (unsigned char)key[k]);
        uint64_t ek;
        if (ch >= 0) { node = (size_t)ch; continue; }
        if (t->n_nodes >= UINT32_MAX) return 0;
        if ((t->n_edges + 1) * 2 > t->cap && !textok__trie_rehash(t, t->cap ? t->cap * 2 : 1024)) return 0;
        if (!(p = textok__reserve(t->value, &t->cap_nodes, t->n_nodes + 1, sizeof *t->value))) return 0;
        t->value = (int32_t *)p;
        ek = ((uint64_t)node << 8 | (unsigned char)key[k]) + 1;
        for (i = textok__trie_slot(ek, t->cap); t->edge_key[i]; i = (i + 1) & (t->cap - 1)) {}
        t->edge_key[i] = ek;
        t->edge_child[i] = (uint32_t)t->n_nodes;
        t->n_edges++;
        t->value[t->n_nodes] = -1;
        node = t->n_nodes++;
    }
    t->value[node] = value;
    return 1;
}

/* The value of exactly this key, or -1. */
static int32_t textok__trie_get(const textok__trie *t, const char *key, size_t len)
{
    size_t node = 0, k;
    if (!t->n_nodes) return -1;
    for (k = 0; k < len; k++) {
        int64_t ch = textok__trie_child(t, node, (unsigned char)key[k]);
        if (ch < 0) return -1;
        node = (size_t)ch;
    }
    return t->value[node];
}

/* ---- 9.4 The model ---------------------------------------------------------------------------- */

enum { TEXTOK__NORM_CHARSMAP, TEXTOK__NORM_REPLACE, TEXTOK__NORM_REPLACE_RUN, TEXTOK__NORM_STRIP };
enum { TEXTOK__PRE_METASPACE, TEXTOK__PRE_WHITESPACE };
enum { TEXTOK__PREPEND_NEVER, TEXTOK__PREPEND_ALWAYS, TEXTOK__PREPEND_FIRST };

/* Longest key of a Precompiled charsmap that is tried (nmt_nfkc's longest is 10 bytes); it
   bounds the work per text byte whatever the charsmap holds. */
#define TEXTOK__CHARSMAP_MAX_KEY 64
/* At most this many normalizers, pre-tokenizers, template items or ids of one special token
   (real files have a handful); each of them costs a pass over the text. */
#define TEXTOK__SPM_MAX_STEPS 64

typedef struct textok__spm_norm {
    int       type;         /* TEXTOK__NORM_* */
    uint32_t *units;        /* CHARSMAP: (n_units) the double array */
    size_t    n_units;
    char     *strings;      /* CHARSMAP: the replacement strings, NUL-separated (inside blob) */
    size_t    n_strings;
    unsigned char *blob;    /* CHARSMAP: the decoded base64 */
    char     *pattern;      /* REPLACE: what is replaced (never empty) */
    size_t    pattern_len;
    char     *content;      /* REPLACE, REPLACE_RUN: the replacement */
    size_t    content_len;
    int       left, right;  /* STRIP: which ends */
} textok__spm_norm;

typedef struct textok__spm_pre {
    int  type;              /* TEXTOK__PRE_* */
    char rep[5];            /* METASPACE: the replacement character, UTF-8 */
    int  rep_len;
    int  prepend;           /* METASPACE: TEXTOK__PREPEND_* */
    int  split;             /* METASPACE: cut before every replacement character */
} textok__spm_pre;

typedef struct textok__spm_added {
    char   *content;        /* as written in the file */
    size_t  len;
    char   *norm;           /* normalized tokens: the content after the normalizers */
    size_t  norm_len;
    int32_t id;
    int     lstrip, rstrip, normalized;
} textok__spm_added;

struct textok_spm {
    char     name[256];     /* file name for messages */
    int      n_pieces;      /* model.vocab entries: ids [0, n_pieces) */
    int      vocab_size;    /* n_pieces + added tokens that are not pieces */
    char   **piece;         /* (n_pieces) NUL-terminated, into piece_pool */
    char    *piece_pool;
    double  *score;         /* (n_pieces) log-probabilities, as HF reads them */
    double   min_score;     /* over every piece (HF: control pieces included) */
    int      unk_id;        /* -1: none */
    int      byte_fallback; /* unknown text as <0xXX> pieces where they all exist */
    textok__trie vocab;     /* every piece -> id (a repeated piece: the last id, as in HF) */
    textok__spm_added *added;
    int      n_added;
    textok__trie added_raw, added_norm;   /* content (or normalised content) -> index in added */
    textok__spm_norm *norm; /* the normalizers in order (a Sequence flattened) */
    int      n_norm;
    textok__spm_pre *pre;   /* the pre-tokenizers in order */
    int      n_pre;
    int32_t *prefix, *suffix; /* ids the template puts before / after the pieces */
    int      n_prefix, n_suffix;
    int      eos_id, pad_id;  /* -1: none */
};

TEXTOKDEF void textok_spm_free(textok_spm *s)
{
    int i;
    if (!s) return;
    TEXTOK_FREE(s->piece);
    TEXTOK_FREE(s->piece_pool);
    TEXTOK_FREE(s->score);
    textok__trie_free(&s->vocab);
    for (i = 0; i < s->n_added; i++) {
        TEXTOK_FREE(s->added[i].content);
        TEXTOK_FREE(s->added[i].norm);
    }
    TEXTOK_FREE(s->added);
    textok__trie_free(&s->added_raw);
    textok__trie_free(&s->added_norm);
    for (i = 0; i < s->n_norm; i++) {
        TEXTOK_FREE(s->norm[i].units);
        TEXTOK_FREE(s->norm[i].blob);
        TEXTOK_FREE(s->norm[i].pattern);
        TEXTOK_FREE(s->norm[i].content);
    }
    TEXTOK_FREE(s->norm);
    TEXTOK_FREE(s->pre);
    TEXTOK_FREE(s->prefix);
    TEXTOK_FREE(s->suffix);
    TEXTOK_FREE(s);
}

static char *textok__strndup(const char *s, size_t n)
{
    char *p = (char *)textok__malloc(n + 1);
    if (p) { memcpy(p, s, n); p[n] = 0; }
    return p;
}

/* model: {"type": "Unigram", "unk_id": 2, "vocab": [[piece, score], ...], "byte_fallback": false} */
static int textok__spm_read_model(textok_spm *s, const textok__jdoc *d, size_t model)
{
    size_t type, vocab, unk, e, pool_len = 0, at = 0;
    const char *tname;
    int rc, i;
    int64_t v = 0;
    if ((rc = textok__jwant(d, model, TEXTOK__J_OBJ, "model"))) return rc;
    if ((rc = textok__jget(d, model, "type", "model", &type)) || (rc = textok__jget(d, model, "vocab", "model", &vocab)))
        return rc;
    if (type) {
        if ((rc = textok__jwant(d, type, TEXTOK__J_STR, "model.type"))) return rc;
        tname = textok__jtext(d, type);
        if (strcmp(tname, "Unigram") != 0)
            return textok__fail(TEXTOK_ERR_UNSUPPORTED, "%s: model.type is \"%.60s\"; only \"Unigram\" (SentencePiece) "
                                "models are supported", d->file, tname);
    } else if (!vocab || d->nodes[vocab].type != TEXTOK__J_ARR) {   /* HF may omit the type */
        return textok__fail(TEXTOK_ERR_UNSUPPORTED, "%s: the model has no type and is not a Unigram model (its vocab is "
                            "not a list of [piece, score] pairs)", d->file);
    }
    if (!vocab) return textok__fail(TEXTOK_ERR_FORMAT, "%s: model has no \"vocab\"", d->file);
    if ((rc = textok__jwant(d, vocab, TEXTOK__J_ARR, "model.vocab"))) return rc;
    if (d->nodes[vocab].n == 0) return textok__fail(TEXTOK_ERR_FORMAT, "%s: model.vocab is empty", d->file);
    if (d->nodes[vocab].n > INT32_MAX / 2)
        return textok__fail(TEXTOK_ERR_FORMAT, "%s: model.vocab has %zu pieces (at most %d)", d->file,
                            d->nodes[vocab].n, INT32_MAX / 2);
    s->n_pieces = (int)d->nodes[vocab].n;
    /* pass 1: shapes, and the pool size */
    for (e = d->nodes[vocab].first, i = 0; e; e = d->nodes[e].next, i++) {
        size_t p = d->nodes[e].first;
        if (d->nodes[e].type != TEXTOK__J_ARR || d->nodes[e].n != 2 || d->nodes[p].type != TEXTOK__J_STR ||
            d->nodes[d->nodes[p].next].type != TEXTOK__J_NUM)
            return textok__fail(TEXTOK_ERR_FORMAT, "%s: model.vocab[%d] must be a [piece, score] pair (byte %zu)",
                                d->file, i, d->nodes[e].at);
        if (strlen(textok__jtext(d, p)) != d->nodes[p].n)
            return textok__fail(TEXTOK_ERR_FORMAT, "%s: model.vocab[%d]: a piece must not contain U+0000", d->file, i);
        pool_len += d->nodes[p].n + 1;
    }
    s->piece = (char **)textok__calloc((size_t)s->n_pieces, sizeof *s->piece);
    s->score = (double *)textok__calloc((size_t)s->n_pieces, sizeof *s->score);
    s->piece_pool = (char *)textok__malloc(pool_len);
    if (!s->piece || !s->score || !s->piece_pool) return textok__fail(TEXTOK_ERR_NOMEM, "%s: out of memory", d->file);
    s->min_score = HUGE_VAL;
    for (e = d->nodes[vocab].first, i = 0; e; e = d->nodes[e].next, i++) {
        size_t p = d->nodes[e].first, sc = d->nodes[p].next;
        s->piece[i] = s->piece_pool + at;
        memcpy(s->piece[i], textok__jtext(d, p), d->nodes[p].n + 1);
        at += d->nodes[p].n + 1;
        s->score[i] = d->nodes[sc].num;
        if (s->score[i] < s->min_score) s->min_score = s->score[i];
        if (!textok__trie_put(&s->vocab, s->piece[i], d->nodes[p].n, i))
            return textok__fail(TEXTOK_ERR_NOMEM, "%s: out of memory", d->file);
    }
    s->unk_id = -1;
    if ((rc = textok__jget(d, model, "unk_id", "model", &unk))) return rc;
    if (unk && d->nodes[unk].type != TEXTOK__J_NULL) {
        if ((rc = textok__jint(d, unk, 0, s->n_pieces - 1, "model.unk_id (an index into model.vocab)", &v))) return rc;
        s->unk_id = (int)v;
    }
    return textok__jbool(d, model, "byte_fallback", "model", 0, &s->byte_fallback);
}

/* The id of a token's text as HF's token_to_id gives it: an added token, else a piece; -1. */
static int textok__spm_token_id(const textok_spm *s, const char *t, size_t len)
{
    int i;
    for (i = 0; i < s->n_added; i++)
        if (s->added[i].len == len && memcmp(s->added[i].content, t, len) == 0) return s->added[i].id;
    return textok__trie_get(&s->vocab, t, len);
}

/* added_tokens: [{"id", "content", "single_word", "lstrip", "rstrip", "normalized", "special"}].
   Ids as HF assigns them on load: the piece's id if the content is a piece, else the next id
   after the vocab (the file's "id" is only a hint there too). */
static int textok__spm_read_added(textok_spm *s, const textok__jdoc *d, size_t arr)
{
    textok__trie seen;   /* content -> index in s->added, to find a repeated token */
    size_t e;
    int rc = TEXTOK_OK, i = 0, next_id = s->n_pieces;
    char path[64];
    if (!arr || d->nodes[arr].type == TEXTOK__J_NULL) return TEXTOK_OK;
    if ((rc = textok__jwant(d, arr, TEXTOK__J_ARR, "added_tokens"))) return rc;
    if (d->nodes[arr].n > (size_t)(INT32_MAX / 2 - s->n_pieces))
        return textok__fail(TEXTOK_ERR_FORMAT, "%s: too many added_tokens", d->file);
    s->added = (textok__spm_added *)textok__calloc(d->nodes[arr].n, sizeof *s->added);
    if (!s->added) return textok__fail(TEXTOK_ERR_NOMEM, "%s: out of memory", d->file);
    memset(&seen, 0, sizeof seen);
    for (e = d->nodes[arr].first; e && !rc; e = d->nodes[e].next, i++) {
        textok__spm_added *a;
        const char *content;
        size_t len;
        int single_word, special, found;
        snprintf(path, sizeof path, "added_tokens[%d]", i);
        if ((rc = textok__jwant(d, e, TEXTOK__J_OBJ, path)) ||
            (rc = textok__jstr_member(d, e, "content", path, &content, &len)) ||
            (rc = textok__jbool(d, e, "single_word", path, 0, &single_word)) ||
            (rc = textok__jbool(d, e, "special", path, 0, &special)))
            break;
        if (len == 0) continue;   /* HF ignores empty tokens */
        if (strlen(content) != len) {
            rc = textok__fail(TEXTOK_ERR_FORMAT, "%s: %s.content must not contain U+0000", d->file, path);
            break;
        }
        if (single_word) {
            rc = textok__fail(TEXTOK_ERR_UNSUPPORTED, "%s: %s (\"%.60s\"): single_word is not supported", d->file,
                              path, content);
            break;
        }
        if ((found = textok__trie_get(&seen, content, len)) >= 0) {
            a = &s->added[found];   /* the same text again: HF keeps the id, takes the new flags */
        } else {
            a = &s->added[s->n_added];
            if (!(a->content = textok__strndup(content, len)) || !textok__trie_put(&seen, content, len, s->n_added)) {
                rc = textok__fail(TEXTOK_ERR_NOMEM, "%s: out of memory", d->file);
                break;
            }
            a->len = len;
            a->id = textok__trie_get(&s->vocab, content, len);
            if (a->id < 0) a->id = next_id++;
            s->n_added++;
        }
        if ((rc = textok__jbool(d, e, "lstrip", path, 0, &a->lstrip)) ||
            (rc = textok__jbool(d, e, "rstrip", path, 0, &a->rstrip)))
            break;
        rc = textok__jbool(d, e, "normalized", path, !special, &a->normalized);
    }
    textok__trie_free(&seen);
    s->vocab_size = next_id;
    return rc;
}

/* Standard base64 with padding (what HF writes and reads) into a new buffer. */
static int textok__base64(const char *in, size_t n, unsigned char **out, size_t *out_len, const char *file,
                          const char *path)
{
    size_t i, o = 0;
    unsigned char *b;
    *out = NULL;
    if (n % 4) return textok__fail(TEXTOK_ERR_FORMAT, "%s: %s: base64 length %zu is not a multiple of 4", file, path, n);
    if (!(b = (unsigned char *)textok__malloc(n / 4 * 3))) return textok__fail(TEXTOK_ERR_NOMEM, "%s: out of memory", file);
    for (i = 0; i < n; i += 4) {
        uint32_t acc = 0;
        int k, pad = 0;
        for (k = 0; k < 4; k++) {
            char ch = in[i + k];
            uint32_t v;
            if (ch >= 'A' && ch <= 'Z') v = (uint32_t)(ch - 'A');
            else if (ch >= 'a' && ch <= 'z') v = (uint32_t)(ch - 'a' + 26);
            else if (ch >= '0' && ch <= '9') v = (uint32_t)(ch - '0' + 52);
            else if (ch == '+') v = 62;
            else if (ch == '/') v = 63;
            else if (ch == '=' && i + 4 == n && k >= 2 && (k == 3 || in[i + 3] == '=')) { v = 0; pad++; }
            else {
                TEXTOK_FREE(b);
                return textok__fail(TEXTOK_ERR_FORMAT, "%s: %s: invalid base64 at character %zu", file, path, i + k);
            }
            if (pad && ch != '=') {
                TEXTOK_FREE(b);
                return textok__fail(TEXTOK_ERR_FORMAT, "%s: %s: invalid base64 at character %zu", file, path, i + k);
            }
            acc = acc << 6 | v;
        }
        b[o++] = (unsigned char)(acc >> 16);
        if (pad < 2) b[o++] = (unsigned char)(acc >> 8);
        if (pad < 1) b[o++] = (unsigned char)acc;
    }
    *out = b;
    *out_len = o;
    return TEXTOK_OK;
}

/* SentencePiece's precompiled charsmap: u32 LE trie size in bytes, the darts-clone double
   array (u32 LE units), then the replacement strings, each ended by NUL. The strings must be
   UTF-8 (HF refuses the blob otherwise). A unit: bits 0-7 the label (bit 31 set on non-label
   units so they never match), bit 8 "has a leaf child", bit 9 "offset scaled by 256",
   bits 10-31 the offset; a leaf's value (unit & 0x7fffffff) is where its string starts. */
static int textok__spm_charsmap(textok__spm_norm *nm, const char *b64, size_t n, const char *file)
{
    const char *path = "normalizer Precompiled.precompiled_charsmap";
    size_t len = 0, i, bad;
    uint32_t trie;
    int rc = textok__base64(b64, n, &nm->blob, &len, file, path);
    if (rc) return rc;
    if (len < 4) return textok__fail(TEXTOK_ERR_FORMAT, "%s: %s: %zu bytes, too short for its header", file, path, len);
    trie = (uint32_t)nm->blob[0] | (uint32_t)nm->blob[1] << 8 | (uint32_t)nm->blob[2] << 16 | (uint32_t)nm->blob[3] << 24;
    if (trie % 4 || trie < 4 || trie > len - 4)
        return textok__fail(TEXTOK_ERR_FORMAT, "%s: %s: trie size %u does not fit the %zu bytes (or is not a "
                            "positive multiple of 4)", file, path, (unsigned)trie, len);
    nm->n_units = trie / 4;
    if (!(nm->units = (uint32_t *)textok__malloc(trie))) return textok__fail(TEXTOK_ERR_NOMEM, "%s: out of memory", file);
    for (i = 0; i < nm->n_units; i++) {
        const unsigned char *u = nm->blob + 4 + 4 * i;
        nm->units[i] = (uint32_t)u[0] | (uint32_t)u[1] << 8 | (uint32_t)u[2] << 16 | (uint32_t)u[3] << 24;
    }
    nm->strings = (char *)nm->blob + 4 + trie;
    nm->n_strings = len - 4 - trie;
    if ((bad = textok__utf8_check(nm->strings, nm->n_strings)) != nm->n_strings)
        return textok__fail(TEXTOK_ERR_FORMAT, "%s: %s: the replacement strings are not UTF-8 (byte %zu)", file, path, bad);
    return TEXTOK_OK;
}

static int textok__spm_read_normalizer(textok_spm *s, const textok__jdoc *d, size_t nd, int *cap)
{
    const char *type;
    size_t sub;
    int rc;
    textok__spm_norm *nm;
    if (!nd || d->nodes[nd].type == TEXTOK__J_NULL) return TEXTOK_OK;
    if ((rc = textok__jwant(d, nd, TEXTOK__J_OBJ, "normalizer")) ||
        (rc = textok__jstr_member(d, nd, "type", "normalizer", &type, NULL)))
        return rc;
    if (strcmp(type, "Sequence") == 0) {
        size_t e;
        if ((rc = textok__jget(d, nd, "normalizers", "normalizer", &sub))) return rc;
        if (!sub) return textok__fail(TEXTOK_ERR_FORMAT, "%s: normalizer Sequence has no \"normalizers\"", d->file);
        if ((rc = textok__jwant(d, sub, TEXTOK__J_ARR, "normalizer Sequence.normalizers"))) return rc;
        for (e = d->nodes[sub].first; e; e = d->nodes[e].next)
            if ((rc = textok__spm_read_normalizer(s, d, e, cap))) return rc;
        return TEXTOK_OK;
    }
    if (s->n_norm >= TEXTOK__SPM_MAX_STEPS)
        return textok__fail(TEXTOK_ERR_FORMAT, "%s: more than %d normalizers", d->file, TEXTOK__SPM_MAX_STEPS);
    if (s->n_norm == *cap) {
        void *p = textok__grow(s->norm, s->n_norm, cap, sizeof *s->norm);
        if (!p) return textok__fail(TEXTOK_ERR_NOMEM, "%s: out of memory", d->file);
        s->norm = (textok__spm_norm *)p;
    }
    nm = &s->norm[s->n_norm++];
    memset(nm, 0, sizeof *nm);
    if (strcmp(type, "Precompiled") == 0) {
        const char *b64;
        size_t n;
        nm->type = TEXTOK__NORM_CHARSMAP;
        if ((rc = textok__jstr_member(d, nd, "precompiled_charsmap", "normalizer Precompiled", &b64, &n))) return rc;
        return textok__spm_charsmap(nm, b64, n, d->file);
    }
    if (strcmp(type, "Replace") == 0) {
        const char *content, *pat;
        size_t n, pat_n, ps, rx;
        if ((rc = textok__jstr_member(d, nd, "content", "normalizer Replace", &content, &n)) ||
            (rc = textok__jget(d, nd, "pattern", "normalizer Replace", &sub)))
            return rc;
        if (!sub) return textok__fail(TEXTOK_ERR_FORMAT, "%s: normalizer Replace has no \"pattern\"", d->file);
        if ((rc = textok__jwant(d, sub, TEXTOK__J_OBJ, "normalizer Replace.pattern")) ||
            (rc = textok__jget(d, sub, "String", "normalizer Replace.pattern", &ps)) ||
            (rc = textok__jget(d, sub, "Regex", "normalizer Replace.pattern", &rx)))
            return rc;
        if (d->nodes[sub].n != 1 || (!ps && !rx))
            return textok__fail(TEXTOK_ERR_FORMAT, "%s: normalizer Replace.pattern must be {\"String\": ...} or "
                                "{\"Regex\": ...} (byte %zu)", d->file, d->nodes[sub].at);
        if ((rc = textok__jstr_member(d, sub, ps ? "String" : "Regex", "normalizer Replace.pattern", &pat, &pat_n)))
            return rc;
        if (ps) {
            if (!pat_n) return textok__fail(TEXTOK_ERR_UNSUPPORTED, "%s: normalizer Replace: an empty pattern is not supported", d->file);
            nm->type = TEXTOK__NORM_REPLACE;
            if (!(nm->pattern = textok__strndup(pat, pat_n))) return textok__fail(TEXTOK_ERR_NOMEM, "%s: out of memory", d->file);
            nm->pattern_len = pat_n;
        } else if (strcmp(pat, " {2,}") == 0) {
            nm->type = TEXTOK__NORM_REPLACE_RUN;
        } else {
            return textok__fail(TEXTOK_ERR_UNSUPPORTED, "%s: normalizer Replace: regex \"%.60s\" is not supported (only "
                                "\" {2,}\", runs of spaces)", d->file, pat);
        }
        if (!(nm->content = textok__strndup(content, n))) return textok__fail(TEXTOK_ERR_NOMEM, "%s: out of memory", d->file);
        nm->content_len = n;
        return TEXTOK_OK;
    }
    if (strcmp(type, "Strip") == 0) {
        nm->type = TEXTOK__NORM_STRIP;
        if ((rc = textok__jbool(d, nd, "strip_left", "normalizer Strip", 0, &nm->left))) return rc;
        return textok__jbool(d, nd, "strip_right", "normalizer Strip", 0, &nm->right);
    }
    return textok__fail(TEXTOK_ERR_UNSUPPORTED, "%s: normalizer type \"%.60s\" is not supported (only Sequence, "
                        "Precompiled, Replace, Strip)", d->file, type);
}

static int textok__spm_read_pre(textok_spm *s, const textok__jdoc *d, size_t nd, int *cap)
{
    const char *type;
    size_t sub;
    int rc;
    textok__spm_pre *pt;
    if (!nd || d->nodes[nd].type == TEXTOK__J_NULL) return TEXTOK_OK;
    if ((rc = textok__jwant(d, nd, TEXTOK__J_OBJ, "pre_tokenizer")) ||
        (rc = textok__jstr_member(d, nd, "type", "pre_tokenizer", &type, NULL)))
        return rc;
    if (strcmp(type, "Sequence") == 0) {
        size_t e;
        if ((rc = textok__jget(d, nd, "pretokenizers", "pre_tokenizer", &sub))) return rc;
        if (!sub) return textok__fail(TEXTOK_ERR_FORMAT, "%s: pre_tokenizer Sequence has no \"pretokenizers\"", d->file);
        if ((rc = textok__jwant(d, sub, TEXTOK__J_ARR, "pre_tokenizer Sequence.pretokenizers"))) return rc;
        for (e = d->nodes[sub].first; e; e = d->nodes[e].next)
            if ((rc = textok__spm_read_pre(s, d, e, cap))) return rc;
        return TEXTOK_OK;
    }
    if (s->n_pre >= TEXTOK__SPM_MAX_STEPS)
        return textok__fail(TEXTOK_ERR_FORMAT, "%s: more than %d pre-tokenizers", d->file, TEXTOK__SPM_MAX_STEPS);
    if (s->n_pre == *cap) {
        void *p = textok__grow(s->pre, s->n_pre, cap, sizeof *s->pre);
        if (!p) return textok__fail(TEXTOK_ERR_NOMEM, "%s: out of memory", d->file);
        s->pre = (textok__spm_pre *)p;
    }
    pt = &s->pre[s->n_pre++];
    memset(pt, 0, sizeof *pt);
    if (strcmp(type, "WhitespaceSplit") == 0) {
        pt->type = TEXTOK__PRE_WHITESPACE;
        return TEXTOK_OK;
    }
    if (strcmp(type, "Metaspace") == 0) {
        const char *rep, *scheme = NULL;
        size_t n, ps;
        uint32_t cp;
        int add_prefix = 1, has_add, split;
        pt->type = TEXTOK__PRE_METASPACE;
        if ((rc = textok__jstr_member(d, nd, "replacement", "pre_tokenizer Metaspace", &rep, &n))) return rc;
        if (n == 0 || textok__utf8_dec((const unsigned char *)rep, n, &cp) != (int)n)
            return textok__fail(TEXTOK_ERR_FORMAT, "%s: pre_tokenizer Metaspace.replacement must be one character", d->file);
        memcpy(pt->rep, rep, n);
        pt->rep_len = (int)n;
        if ((rc = textok__jget(d, nd, "prepend_scheme", "pre_tokenizer Metaspace", &ps)) ||
            (rc = textok__jbool(d, nd, "add_prefix_space", "pre_tokenizer Metaspace", -1, &has_add)) ||
            (rc = textok__jbool(d, nd, "split", "pre_tokenizer Metaspace", 1, &split)))
            return rc;
        pt->split = split;
        if (ps && d->nodes[ps].type != TEXTOK__J_NULL) {
            if ((rc = textok__jstr_member(d, nd, "prepend_scheme", "pre_tokenizer Metaspace", &scheme, NULL))) return rc;
            if (strcmp(scheme, "always") == 0) pt->prepend = TEXTOK__PREPEND_ALWAYS;
            else if (strcmp(scheme, "first") == 0) pt->prepend = TEXTOK__PREPEND_FIRST;
            else if (strcmp(scheme, "never") == 0) pt->prepend = TEXTOK__PREPEND_NEVER;
            else return textok__fail(TEXTOK_ERR_FORMAT, "%s: pre_tokenizer Metaspace.prepend_scheme \"%.40s\" is not "
                                     "always, first or never", d->file, scheme);
        } else {
            pt->prepend = TEXTOK__PREPEND_ALWAYS;
        }
        add_prefix = has_add;
        if (add_prefix == 0) {   /* the older key; HF refuses a contradiction */
            if (scheme && pt->prepend != TEXTOK__PREPEND_NEVER)
                return textok__fail(TEXTOK_ERR_FORMAT, "%s: pre_tokenizer Metaspace: add_prefix_space false contradicts "
                                    "prepend_scheme \"%s\"", d->file, scheme);
            pt->prepend = TEXTOK__PREPEND_NEVER;
        }
        return TEXTOK_OK;
    }
    return textok__fail(TEXTOK_ERR_UNSUPPORTED, "%s: pre_tokenizer type \"%.60s\" is not supported (only Sequence, "
                        "Metaspace, WhitespaceSplit)", d->file, type);
}

static int textok__spm_push_id(int32_t **arr, int *n, int32_t id)
{
    int32_t *p = (int32_t *)TEXTOK_REALLOC(*arr, ((size_t)*n + 1) * sizeof **arr);   /* a few ids */
    if (!p) return 0;
    *arr = p;
    p[(*n)++] = id;
    return 1;
}

/* post_processor: TemplateProcessing's "single" template, [SpecialToken...] $A [SpecialToken...]
   (T5: [$A, </s>]); absent or null: </s> after the pieces if the vocab has it. */
static int textok__spm_read_post(textok_spm *s, const textok__jdoc *d, size_t nd)
{
    const char *type;
    size_t single, specials, e;
    int rc, seen_a = 0, i = 0;
    if (!nd || d->nodes[nd].type == TEXTOK__J_NULL) {
        int eos = textok__spm_token_id(s, "</s>", 4);
        if (eos >= 0 && !textok__spm_push_id(&s->suffix, &s->n_suffix, eos))
            return textok__fail(TEXTOK_ERR_NOMEM, "%s: out of memory", d->file);
        return TEXTOK_OK;
    }
    if ((rc = textok__jwant(d, nd, TEXTOK__J_OBJ, "post_processor")) ||
        (rc = textok__jstr_member(d, nd, "type", "post_processor", &type, NULL)))
        return rc;
    if (strcmp(type, "TemplateProcessing") != 0)
        return textok__fail(TEXTOK_ERR_UNSUPPORTED, "%s: post_processor type \"%.60s\" is not supported (only "
                            "TemplateProcessing)", d->file, type);
    if ((rc = textok__jget(d, nd, "single", "post_processor", &single)) ||
        (rc = textok__jget(d, nd, "special_tokens", "post_processor", &specials)))
        return rc;
    if (!single || !specials)
        return textok__fail(TEXTOK_ERR_FORMAT, "%s: post_processor TemplateProcessing needs \"single\" and "
                            "\"special_tokens\"", d->file);
    if ((rc = textok__jwant(d, single, TEXTOK__J_ARR, "post_processor.single")) ||
        (rc = textok__jwant(d, specials, TEXTOK__J_OBJ, "post_processor.special_tokens")))
        return rc;
    if (d->nodes[single].n > TEXTOK__SPM_MAX_STEPS)
        return textok__fail(TEXTOK_ERR_FORMAT, "%s: post_processor.single has more than %d items", d->file,
                            TEXTOK__SPM_MAX_STEPS);
    for (e = d->nodes[single].first; e; e = d->nodes[e].next, i++) {
        size_t seq, sp, tok, ids, x;
        const char *name;
        char path[96];
        snprintf(path, sizeof path, "post_processor.single[%d]", i);
        if ((rc = textok__jwant(d, e, TEXTOK__J_OBJ, path)) || (rc = textok__jget(d, e, "Sequence", path, &seq)) ||
            (rc = textok__jget(d, e, "SpecialToken", path, &sp)))
            return rc;
        if (d->nodes[e].n != 1 || (!seq && !sp))
            return textok__fail(TEXTOK_ERR_FORMAT, "%s: %s must be {\"Sequence\": ...} or {\"SpecialToken\": ...}",
                                d->file, path);
        if (seq) {
            const char *sid;
            if ((rc = textok__jwant(d, seq, TEXTOK__J_OBJ, path)) || (rc = textok__jstr_member(d, seq, "id", path, &sid, NULL)))
                return rc;
            if (strcmp(sid, "A") != 0 || seen_a)
                return textok__fail(TEXTOK_ERR_UNSUPPORTED, "%s: post_processor.single must hold the sequence $A once",
                                    d->file);
            seen_a = 1;
            continue;
        }
        if ((rc = textok__jwant(d, sp, TEXTOK__J_OBJ, path)) || (rc = textok__jstr_member(d, sp, "id", path, &name, NULL)) ||
            (rc = textok__jget(d, specials, name, "post_processor.special_tokens", &tok)))
            return rc;
        if (!tok)
            return textok__fail(TEXTOK_ERR_FORMAT, "%s: post_processor.special_tokens has no \"%.60s\"", d->file, name);
        snprintf(path, sizeof path, "post_processor.special_tokens[\"%.40s\"]", name);
        if ((rc = textok__jwant(d, tok, TEXTOK__J_OBJ, path)) || (rc = textok__jget(d, tok, "ids", path, &ids))) return rc;
        if (!ids) return textok__fail(TEXTOK_ERR_FORMAT, "%s: %s has no \"ids\"", d->file, path);
        if ((rc = textok__jwant(d, ids, TEXTOK__J_ARR, path))) return rc;
        if (d->nodes[ids].n > TEXTOK__SPM_MAX_STEPS)
            return textok__fail(TEXTOK_ERR_FORMAT, "%s: %s has more than %d ids", d->file, path, TEXTOK__SPM_MAX_STEPS);
        for (x = d->nodes[ids].first; x; x = d->nodes[x].next) {
            int64_t v = 0;
            if ((rc = textok__jint(d, x, 0, s->vocab_size - 1, path, &v))) return rc;
            if (!textok__spm_push_id(seen_a ? &s->suffix : &s->prefix, seen_a ? &s->n_suffix : &s->n_prefix, (int32_t)v))
                return textok__fail(TEXTOK_ERR_NOMEM, "%s: out of memory", d->file);
        }
    }
    if (!seen_a) return textok__fail(TEXTOK_ERR_FORMAT, "%s: post_processor.single has no $A", d->file);
    return TEXTOK_OK;
}

static int textok__spm_normalize(const textok_spm *s, const char *in, size_t n, textok__bytes *out,
                                 textok__bytes *tmp);

static int textok__spm_build(textok_spm *s, const textok__jdoc *d)
{
    size_t model, added, norm, pre, post;
    int rc, i, cap_norm = 0, cap_pre = 0;
    if ((rc = textok__jget(d, 0, "model", "the top level", &model)) ||
        (rc = textok__jget(d, 0, "added_tokens", "the top level", &added)) ||
        (rc = textok__jget(d, 0, "normalizer", "the top level", &norm)) ||
        (rc = textok__jget(d, 0, "pre_tokenizer", "the top level", &pre)) ||
        (rc = textok__jget(d, 0, "post_processor", "the top level", &post)))
        return rc;
    if (!model) return textok__fail(TEXTOK_ERR_FORMAT, "%s: no \"model\" at the top level", d->file);
    if ((rc = textok__spm_read_model(s, d, model))) return rc;
    s->vocab_size = s->n_pieces;
    if ((rc = textok__spm_read_added(s, d, added)) || (rc = textok__spm_read_normalizer(s, d, norm, &cap_norm)) ||
        (rc = textok__spm_read_pre(s, d, pre, &cap_pre)) || (rc = textok__spm_read_post(s, d, post)))
        return rc;
    /* the two tries of added tokens; normalized ones are matched in normalised text */
    for (i = 0; i < s->n_added; i++) {
        textok__spm_added *a = &s->added[i];
        textok__bytes out = { NULL, 0, 0 }, tmp = { NULL, 0, 0 };
        if (!a->normalized) {
            if (!textok__trie_put(&s->added_raw, a->content, a->len, i)) return textok__fail(TEXTOK_ERR_NOMEM, "%s: out of memory", d->file);
            continue;
        }
        rc = textok__spm_normalize(s, a->content, a->len, &out, &tmp);
        TEXTOK_FREE(tmp.p);
        if (rc) { TEXTOK_FREE(out.p); return rc; }
        a->norm = textok__strndup(out.p ? out.p : "", out.n);
        a->norm_len = out.n;
        TEXTOK_FREE(out.p);
        if (!a->norm) return textok__fail(TEXTOK_ERR_NOMEM, "%s: out of memory", d->file);
        if (a->norm_len && !textok__trie_put(&s->added_norm, a->norm, a->norm_len, i))
            return textok__fail(TEXTOK_ERR_NOMEM, "%s: out of memory", d->file);
    }
    s->eos_id = s->n_suffix ? s->suffix[s->n_suffix - 1] : -1;
    s->pad_id = textok__spm_token_id(s, "<pad>", 5);
    return TEXTOK_OK;
}

TEXTOKDEF int textok_spm_load_mem(textok_spm **out, const char *json, size_t n, const char *name)
{
    textok__jdoc d;
    textok_spm *s;
    int rc;
    if (!out) return textok__fail(TEXTOK_ERR_ARG, "textok_spm_load_mem: out is NULL");
    *out = NULL;
    if (!json && n) return textok__fail(TEXTOK_ERR_ARG, "textok_spm_load_mem: json is NULL");
    if (!(s = (textok_spm *)textok__calloc(1, sizeof *s))) return textok__fail(TEXTOK_ERR_NOMEM, "textok_spm_load_mem: out of memory");
    textok__short_path(s->name, name ? name : "<memory>");
    if (n > TEXTOK_MAX_JSON_BYTES) {
        rc = textok__fail(TEXTOK_ERR_FORMAT, "%s: %zu bytes, larger than a tokenizer.json may be (%zu)", s->name, n,
                          TEXTOK_MAX_JSON_BYTES);
    } else {
        rc = textok__jparse(&d, json ? json : "", n, s->name);
        if (!rc) rc = textok__spm_build(s, &d);
        textok__jdoc_free(&d);
    }
    if (rc) { textok_spm_free(s); return rc; }
    *out = s;
    return TEXTOK_OK;
}

#ifndef TEXTOK_NO_STDIO
TEXTOKDEF int textok_spm_load(textok_spm **out, const char *path)
{
    textok_file f;
    int rc;
    if (!out || !path) return textok__fail(TEXTOK_ERR_ARG, "textok_spm_load: out and path must not be NULL");
    *out = NULL;
    if ((rc = textok_file_open(&f, path))) return rc;
    rc = textok_spm_load_mem(out, (const char *)f.data, f.size, path);
    textok_file_close(&f);
    return rc;
}
#endif

/* ---- 9.5 Normalizers --------------------------------------------------------------------------

   Precompiled (SentencePiece's nmt_nfkc and friends): at every position the LONGEST key of the
   charsmap that prefixes the rest is replaced, else one character is copied. That is
   SentencePiece's normalizer.cc and spm_precompiled's normalize_string. DEVIATION: HF's
   tokenizers crate (0.23) walks extended grapheme clusters instead: a cluster shorter than 6
   bytes that some key prefixes is replaced WHOLE by the SHORTEST such key's string, any other
   cluster char by char. The two agree on text whose clusters are single code points or exactly
   one key (precomposed text, "e" + U+0301, full-width letters, ligatures, CJK, emoji), which
   is what the goldens and 15000 random texts checked against HF cover. They differ on, e.g.,
   "e" U+0301 U+0323 (HF: U+00E9, the U+0323 dropped; here U+00E9 U+0323), full-width U+FF45
   U+0301 (HF: "e"; here U+00E9), decomposed Hangul jamo U+1100 U+1161 (HF keeps them; here
   U+AC00).
   Matching HF there needs Unicode's grapheme-break tables. Replace: a String pattern (every
   non-overlapping occurrence, left to right) or the Regex " {2,}" only. Strip: White_Space. */

/* The longest charsmap key that prefixes s[0, n) and ends on a character boundary: its length
   (0 = none) and replacement. A unit index outside the array ends the walk (no match), so a
   damaged blob cannot read out of bounds; a replacement that starts outside the strings or
   inside a character fails. */
static int textok__charsmap_match(const textok_spm *s, const textok__spm_norm *nm, const char *str, size_t n,
                                  size_t *key_len, const char **rep, size_t *rep_len)
{
    const uint32_t *u = nm->units;
    size_t pos, k, best = 0, value = 0;
#define TEXTOK__DA_OFFSET(x) ((size_t)((x) >> 10) << (((x) & (1u << 9)) >> 6))
    pos = TEXTOK__DA_OFFSET(u[0]);
    for (k = 0; k < n && k < TEXTOK__CHARSMAP_MAX_KEY; k++) {
        unsigned char c = (unsigned char)str[k];
        uint32_t unit;
        if (c == 0) break;
        pos ^= c;
        if (pos >= nm->n_units) break;
        unit = u[pos];
        if ((unit & (0x80000000u | 0xffu)) != c) break;
        pos ^= TEXTOK__DA_OFFSET(unit);
        if ((unit >> 8) & 1u) {
            if (pos >= nm->n_units) break;
            if (k + 1 == n || ((unsigned char)str[k + 1] & 0xc0) != 0x80) {
                best = k + 1;
                value = u[pos] & 0x7fffffffu;
            }
        }
    }
#undef TEXTOK__DA_OFFSET
    *key_len = best;
    if (!best) return TEXTOK_OK;
    if (value > nm->n_strings || (value < nm->n_strings && ((unsigned char)nm->strings[value] & 0xc0) == 0x80))
        return textok__fail(TEXTOK_ERR_FORMAT, "%s: Precompiled charsmap: an entry points outside its strings (%zu of %zu)",
                            s->name, value, nm->n_strings);
    *rep = nm->strings + value;
    for (k = value; k < nm->n_strings && nm->strings[k]; k++) {}
    *rep_len = k - value;
    return TEXTOK_OK;
}

/* One normalizer: in[0, n) -> out (cleared first). */
static int textok__spm_norm_step(const textok_spm *s, const textok__spm_norm *nm, const char *in, size_t n,
                                 textok__bytes *out)
{
    size_t i = 0, a, b;
    int rc, ok = 1;
    out->n = 0;
    switch (nm->type) {
    case TEXTOK__NORM_CHARSMAP:
        while (i < n && ok) {
            size_t kl, rl = 0;
            const char *rep = NULL;
            if ((rc = textok__charsmap_match(s, nm, in + i, n - i, &kl, &rep, &rl))) return rc;
            if (kl) { ok = textok__bytes_put(out, rep, rl); i += kl; }
            else { size_t cl = (size_t)textok__utf8_len((unsigned char)in[i]); ok = textok__bytes_put(out, in + i, cl); i += cl; }
        }
        break;
    case TEXTOK__NORM_REPLACE:
        while (i < n && ok) {
            if (n - i >= nm->pattern_len && memcmp(in + i, nm->pattern, nm->pattern_len) == 0) {
                ok = textok__bytes_put(out, nm->content, nm->content_len);
                i += nm->pattern_len;
            } else {
                ok = textok__bytes_put(out, in + i, 1);
                i++;
            }
        }
        break;
    case TEXTOK__NORM_REPLACE_RUN:   /* " {2,}": every run of two or more spaces */
        while (i < n && ok) {
            for (b = i; b < n && in[b] == ' '; b++) {}
            if (b - i >= 2) { ok = textok__bytes_put(out, nm->content, nm->content_len); i = b; }
            else { ok = textok__bytes_put(out, in + i, 1); i++; }
        }
        break;
    default: {   /* TEXTOK__NORM_STRIP */
        int k;
        a = 0;
        b = n;
        if (nm->left) while (a < b && (k = textok__ws_at(in + a, b - a)) > 0) a += (size_t)k;
        if (nm->right) while (b > a && (k = textok__ws_before(in, b)) > 0) b -= (size_t)k;
        ok = textok__bytes_put(out, in + a, b - a);
    }
    }
    return ok ? TEXTOK_OK : textok__fail(TEXTOK_ERR_NOMEM, "%s: out of memory normalising", s->name);
}

/* Every normalizer in order: in[0, n) -> out; tmp is scratch. */
static int textok__spm_normalize(const textok_spm *s, const char *in, size_t n, textok__bytes *out, textok__bytes *tmp)
{
    int i, rc;
    out->n = 0;
    if (!textok__bytes_put(out, in, n)) return textok__fail(TEXTOK_ERR_NOMEM, "%s: out of memory normalising", s->name);
    for (i = 0; i < s->n_norm; i++) {
        textok__bytes t;
        if ((rc = textok__spm_norm_step(s, &s->norm[i], out->p, out->n, tmp))) return rc;
        t = *out; *out = *tmp; *tmp = t;
    }
    return TEXTOK_OK;
}

/* ---- 9.6 Added tokens, pre-tokenizers --------------------------------------------------------- */

/* The leftmost-longest added token of trie t in txt[from, n): its index (-1 = none) and span
   [*a, *b) with the whitespace lstrip/rstrip take (never reaching before lo). */
static int textok__spm_find_added(const textok_spm *s, const textok__trie *t, const char *txt, size_t n,
                                  size_t from, size_t lo, size_t *a, size_t *b)
{
    size_t pos, k;
    int k2;
    if (!t->n_nodes) return -1;
    for (pos = from; pos < n; pos++) {
        size_t node = 0, len = 0;
        int best = -1;
        for (k = pos; k < n; k++) {
            int64_t ch = textok__trie_child(t, node, (unsigned char)txt[k]);
            if (ch < 0) break;
            node = (size_t)ch;
            if (t->value[node] >= 0) { best = t->value[node]; len = k + 1 - pos; }
        }
        if (best < 0) continue;
        *a = pos;
        *b = pos + len;
        if (s->added[best].lstrip)
            while (*a > lo && (k2 = textok__ws_before(txt, *a)) > 0) *a -= (size_t)k2;
        if (s->added[best].rstrip)
            while (*b < n && (k2 = textok__ws_at(txt + *b, n - *b)) > 0) *b += (size_t)k2;
        return best;
    }
    return -1;
}

/* Words: spans of one buffer, each with whether it starts at the start of the text (what
   Metaspace's prepend_scheme "first" asks). */
typedef struct textok__span {
    size_t off, len;
    int    first;
} textok__span;

typedef struct textok__words {
    textok__bytes text;
    textok__span *span;
    size_t        n, cap;
} textok__words;

static int textok__words_add(textok__words *w, size_t off, size_t len, int first)
{
    void *p;
    if (!len) return 1;   /* HF drops empty splits */
    if (!(p = textok__reserve(w->span, &w->cap, w->n + 1, sizeof *w->span))) return 0;
    w->span = (textok__span *)p;
    w->span[w->n].off = off;
    w->span[w->n].len = len;
    w->span[w->n].first = first;
    w->n++;
    return 1;
}

/* One pre-tokenizer: in -> out (cleared first). */
static int textok__spm_pre_step(const textok__spm_pre *pt, const textok__words *in, textok__words *out)
{
    size_t i, k;
    int ok = 1;
    out->text.n = 0;
    out->n = 0;
    for (i = 0; i < in->n && ok; i++) {
        const char *w = in->text.p + in->span[i].off;
        size_t n = in->span[i].len, start = out->text.n, cut;
        int first = in->span[i].first;
        if (pt->type == TEXTOK__PRE_WHITESPACE) {
            size_t a = 0;
            for (k = 0; k < n && ok;) {
                int ws = textok__ws_at(w + k, n - k);
                if (!ws) { k += (size_t)textok__utf8_len((unsigned char)w[k]); continue; }
                ok = textok__words_add(out, out->text.n, k - a, first && a == 0) && textok__bytes_put(&out->text, w + a, k - a);
                k += (size_t)ws;
                a = k;
            }
            if (ok) ok = textok__words_add(out, out->text.n, n - a, first && a == 0) && textok__bytes_put(&out->text, w + a, n - a);
            continue;
        }
        /* Metaspace: ' ' -> replacement, maybe one in front, then cut before each one */
        if (n && w[0] != ' ' && !((size_t)pt->rep_len <= n && memcmp(w, pt->rep, (size_t)pt->rep_len) == 0) &&
            (pt->prepend == TEXTOK__PREPEND_ALWAYS || (pt->prepend == TEXTOK__PREPEND_FIRST && first)))
            ok = textok__bytes_put(&out->text, pt->rep, (size_t)pt->rep_len);
        for (k = 0; k < n && ok; k++)
            ok = w[k] == ' ' ? textok__bytes_put(&out->text, pt->rep, (size_t)pt->rep_len) : textok__bytes_put(&out->text, w + k, 1);
        if (!ok) break;
        if (!pt->split) { ok = textok__words_add(out, start, out->text.n - start, first); continue; }
        cut = start;
        for (k = start; k < out->text.n;) {
            if (k > cut && out->text.n - k >= (size_t)pt->rep_len && memcmp(out->text.p + k, pt->rep, (size_t)pt->rep_len) == 0) {
                if (!(ok = textok__words_add(out, cut, k - cut, first && cut == start))) break;
                cut = k;
            }
            k += (size_t)textok__utf8_len((unsigned char)out->text.p[k]);
        }
        if (ok) ok = textok__words_add(out, cut, out->text.n - cut, first && cut == start);
    }
    return ok;
}

/* ---- 9.7 Unigram Viterbi ---------------------------------------------------------------------- */

/* Scratch of one textok_spm_encode call. */
typedef struct textok__spm_work {
    textok__bytes norm, tmp;      /* a normalised part of the text, normalizer scratch */
    textok__words wa, wb;         /* pre-tokenizer ping-pong */
    double  *best;                /* (m + 1) best score of a path ending at byte i of a word */
    int32_t *from, *id;           /* (m + 1) where that path's last piece starts, and its id */
    int32_t *path;                /* (m + 1) the ends of the best path's pieces, last first */
    size_t   cap;                 /* of best, from, id, path */
    int32_t *ids;                 /* the ids so far (the template's prefix included) */
    size_t   n_ids, cap_ids;
} textok__spm_work;

static void textok__spm_work_free(textok__spm_work *w)
{
    TEXTOK_FREE(w->norm.p);
    TEXTOK_FREE(w->tmp.p);
    TEXTOK_FREE(w->wa.text.p);
    TEXTOK_FREE(w->wa.span);
    TEXTOK_FREE(w->wb.text.p);
    TEXTOK_FREE(w->wb.span);
    TEXTOK_FREE(w->best);
    TEXTOK_FREE(w->from);
    TEXTOK_FREE(w->id);
    TEXTOK_FREE(w->path);
    TEXTOK_FREE(w->ids);
}

static int textok__spm_emit(const textok_spm *s, textok__spm_work *w, int32_t id)
{
    void *p = textok__reserve(w->ids, &w->cap_ids, w->n_ids + 1, sizeof *w->ids);
    if (!p) return textok__fail(TEXTOK_ERR_NOMEM, "%s: out of memory encoding", s->name);
    w->ids = (int32_t *)p;
    w->ids[w->n_ids++] = id;
    return TEXTOK_OK;
}

/* Ids of the UNK run t[a, b): the piece with exactly that text if there is one (HF maps every
   string through its vocab), else <0xXX> pieces (byte_fallback, where all of them exist), else
   unk_id. */
static int textok__spm_emit_unk(const textok_spm *s, textok__spm_work *w, const char *t, size_t a, size_t b)
{
    static const char hex[] = "0123456789ABCDEF";
    int32_t id = textok__trie_get(&s->vocab, t + a, b - a);
    char name[7] = "<0x00>";
    size_t k;
    int rc, pass;
    if (id >= 0) return textok__spm_emit(s, w, id);
    if (s->byte_fallback) {
        for (pass = 0; pass < 2; pass++) {   /* 0: do they all exist? 1: emit them */
            for (k = a; k < b; k++) {
                name[3] = hex[(unsigned char)t[k] >> 4];
                name[4] = hex[(unsigned char)t[k] & 15];
                id = textok__trie_get(&s->vocab, name, 6);
                if (id < 0) break;
                if (pass && (rc = textok__spm_emit(s, w, id))) return rc;
            }
            if (k < b) break;
            if (pass) return TEXTOK_OK;
        }
    }
    return textok__spm_emit(s, w, s->unk_id);
}

/* The best segmentation of one word t[0, m) (valid UTF-8) into pieces (textok-paper.md 3.5, HF
   Unigram::encode_optimized, itself SentencePiece's). At each character boundary every piece
   that prefixes the rest is found by walking the trie, so in increasing length; a path replaces
   the best one that ends at the same byte only if its score is strictly greater, so the first
   found wins ties. Where no piece is exactly the next character, an UNK edge of that one
   character scores min_score - 10. Scores add in double, as in HF. Consecutive UNKs become one. */
static int textok__spm_viterbi(const textok_spm *s, textok__spm_work *w, const char *t, size_t m)
{
    const double unk_score = s->min_score - 10.0;
    size_t pos, k, np = 0, end;
    int rc;
    if (m >= (size_t)INT32_MAX) return textok__fail(TEXTOK_ERR_ARG, "%s: a word of %zu bytes is too long", s->name, m);
    if (m + 1 > w->cap) {
        size_t nc = m + 1 + m / 2;
        void *p;
        if (nc > SIZE_MAX / sizeof(double)) goto nomem;
        if (!(p = TEXTOK_REALLOC(w->best, nc * sizeof *w->best))) goto nomem;
        w->best = (double *)p;
        if (!(p = TEXTOK_REALLOC(w->from, nc * sizeof *w->from))) goto nomem;
        w->from = (int32_t *)p;
        if (!(p = TEXTOK_REALLOC(w->id, nc * sizeof *w->id))) goto nomem;
        w->id = (int32_t *)p;
        if (!(p = TEXTOK_REALLOC(w->path, nc * sizeof *w->path))) goto nomem;
        w->path = (int32_t *)p;
        w->cap = nc;
    }
    for (k = 0; k <= m; k++) {
        w->best[k] = 0.0;
        w->from[k] = -1;
        w->id[k] = -1;
    }
    for (pos = 0; pos < m;) {
        size_t node = 0, clen = (size_t)textok__utf8_len((unsigned char)t[pos]);
        double here = w->best[pos];
        int single = 0;
        for (k = pos; k < m; k++) {
            int64_t ch = textok__trie_child(&s->vocab, node, (unsigned char)t[k]);
            int32_t id;
            if (ch < 0) break;
            node = (size_t)ch;
            if ((id = s->vocab.value[node]) >= 0) {
                double cand = here + s->score[id];
                if (w->from[k + 1] < 0 || cand > w->best[k + 1]) {
                    w->best[k + 1] = cand;
                    w->from[k + 1] = (int32_t)pos;
                    w->id[k + 1] = id;
                }
                if (k + 1 - pos == clen) single = 1;
            }
        }
        if (!single) {
            double cand = here + unk_score;
            if (s->unk_id < 0)
                return textok__fail(TEXTOK_ERR_ARG, "%s: no piece covers the character '%.*s' and the model has no "
                                    "unk_id", s->name, (int)clen, t + pos);
            if (w->from[pos + clen] < 0 || cand > w->best[pos + clen]) {
                w->best[pos + clen] = cand;
                w->from[pos + clen] = (int32_t)pos;
                w->id[pos + clen] = s->unk_id;
            }
        }
        pos += clen;
    }
    for (end = m; end > 0; end = (size_t)w->from[end]) w->path[np++] = (int32_t)end;
    while (np > 0) {
        size_t e = (size_t)w->path[--np], a = (size_t)w->from[e];
        if (w->id[e] == s->unk_id) {
            while (np > 0 && w->id[w->path[np - 1]] == s->unk_id) e = (size_t)w->path[--np];
            rc = textok__spm_emit_unk(s, w, t, a, e);
        } else {
            rc = textok__spm_emit(s, w, w->id[e]);
        }
        if (rc) return rc;
    }
    return TEXTOK_OK;
nomem:
    return textok__fail(TEXTOK_ERR_NOMEM, "%s: out of memory encoding", s->name);
}

/* ---- 9.8 Encoding ----------------------------------------------------------------------------- */

/* A part of the normalised text between added tokens: pre-tokenize, then Viterbi each word. */
static int textok__spm_words(const textok_spm *s, textok__spm_work *w, const char *t, size_t n, int first)
{
    textok__words *in = &w->wa, *out = &w->wb, *x;
    size_t i;
    int p, rc;
    in->text.n = 0;
    in->n = 0;
    if (!textok__bytes_put(&in->text, t, n) || !textok__words_add(in, 0, n, first)) goto nomem;
    for (p = 0; p < s->n_pre; p++) {
        if (!textok__spm_pre_step(&s->pre[p], in, out)) goto nomem;
        x = in; in = out; out = x;
    }
    for (i = 0; i < in->n; i++)
        if ((rc = textok__spm_viterbi(s, w, in->text.p + in->span[i].off, in->span[i].len))) return rc;
    return TEXTOK_OK;
nomem:
    return textok__fail(TEXTOK_ERR_NOMEM, "%s: out of memory encoding", s->name);
}

/* A part of the raw text between added tokens: normalise, split off normalized added tokens,
   then words. */
static int textok__spm_part(const textok_spm *s, textok__spm_work *w, const char *t, size_t n, int first)
{
    size_t from = 0, a, b;
    int k, rc;
    if ((rc = textok__spm_normalize(s, t, n, &w->norm, &w->tmp))) return rc;
    for (;;) {
        k = textok__spm_find_added(s, &s->added_norm, w->norm.p, w->norm.n, from, from, &a, &b);
        if (k < 0) a = b = w->norm.n;
        if (a > from && (rc = textok__spm_words(s, w, w->norm.p + from, a - from, first && from == 0))) return rc;
        if (k < 0) return TEXTOK_OK;
        if ((rc = textok__spm_emit(s, w, s->added[k].id))) return rc;
        from = b;
    }
}

TEXTOKDEF int textok_spm_encode(const textok_spm *s, const char *text, int32_t *ids, int max_len, int *n_ids,
                                int *n_full)
{
    textok__spm_work w;
    size_t n, bad, from = 0, a, b, keep, total;
    int k, rc = TEXTOK_OK, i;
    if (n_ids) *n_ids = 0;
    if (n_full) *n_full = 0;
    if (!s || !text || !ids || !n_ids) return textok__fail(TEXTOK_ERR_ARG, "textok_spm_encode: s, text, ids and n_ids must not be NULL");
    if (max_len < 1 || max_len < s->n_prefix + s->n_suffix)
        return textok__fail(TEXTOK_ERR_ARG, "%s: textok_spm_encode: max_len %d leaves no room (at least 1, and at "
                            "least the template's %d special ids)", s->name, max_len, s->n_prefix + s->n_suffix);
    n = strlen(text);
    if (n > (size_t)TEXTOK_MAX_TEXT_BYTES)
        return textok__fail(TEXTOK_ERR_ARG, "%s: textok_spm_encode: the text has %zu bytes; the limit is %d "
                            "(TEXTOK_MAX_TEXT_BYTES)", s->name, n, TEXTOK_MAX_TEXT_BYTES);
    if ((bad = textok__utf8_check(text, n)) != n)
        return textok__fail(TEXTOK_ERR_ARG, "%s: textok_spm_encode: the text is not valid UTF-8 at byte %zu (0x%02x)",
                            s->name, bad, (unsigned char)text[bad]);
    memset(&w, 0, sizeof w);
    for (i = 0; i < s->n_prefix && !rc; i++) rc = textok__spm_emit(s, &w, s->prefix[i]);
    /* HF: an empty text is one empty part; it yields no words */
    while (!rc) {
        k = textok__spm_find_added(s, &s->added_raw, text, n, from, from, &a, &b);
        if (k < 0) a = b = n;
        if (a > from && (rc = textok__spm_part(s, &w, text + from, a - from, from == 0))) break;
        if (k < 0) break;
        if ((rc = textok__spm_emit(s, &w, s->added[k].id))) break;
        from = b;
    }
    if (!rc) {
        total = w.n_ids + (size_t)s->n_suffix;
        if (total > (size_t)INT_MAX) {
            rc = textok__fail(TEXTOK_ERR_ARG, "%s: textok_spm_encode: the text gives more than %d ids", s->name, INT_MAX);
        } else {
            keep = w.n_ids < (size_t)(max_len - s->n_suffix) ? w.n_ids : (size_t)(max_len - s->n_suffix);
            if (keep) memcpy(ids, w.ids, keep * sizeof *ids);
            for (i = 0; i < s->n_suffix; i++) ids[keep + (size_t)i] = s->suffix[i];
            *n_ids = (int)keep + s->n_suffix;
            if (n_full) *n_full = (int)total;
        }
    }
    textok__spm_work_free(&w);
    return rc;
}

TEXTOKDEF int textok_spm_vocab_size(const textok_spm *s) { return s ? s->vocab_size : 0; }
TEXTOKDEF int textok_spm_eos_id(const textok_spm *s) { return s ? s->eos_id : -1; }
TEXTOKDEF int textok_spm_pad_id(const textok_spm *s) { return s ? s->pad_id : -1; }

TEXTOKDEF const char *textok_spm_piece(const textok_spm *s, int id)
{
    int i;
    if (!s || id < 0 || id >= s->vocab_size) return NULL;
    if (id < s->n_pieces) return s->piece[id];
    for (i = 0; i < s->n_added; i++)
        if (s->added[i].id == id) return s->added[i].content;
    return NULL;
}

/* ---------------------------------------------------------------------------------------------
   10. The T5 text encoder (textok-paper.md 3). Built like the TiTok model below: one walk
   lists the tensors, one parameter block from the table holds them, activations live in one
   arena from the table, and the forward pass is kernel calls only (so a GPU table runs it). */

typedef struct textok__t5_block {
    float *ln0;          /* (d) layer.0.layer_norm.weight */
    float *q, *k, *v;    /* (DI, d) layer.0.SelfAttention.{q,k,v}.weight, DI = heads * d_kv */
    float *o;            /* (d, DI) layer.0.SelfAttention.o.weight */
    float *ln1;          /* (d) layer.1.layer_norm.weight */
    float *wi0;          /* (F, d) gated: DenseReluDense.wi_0 (through the GELU); v1.0: .wi */
    float *wi1;          /* (F, d) gated: DenseReluDense.wi_1 (the linear branch); v1.0: NULL */
    float *wo;           /* (d, F) DenseReluDense.wo */
} textok__t5_block;

struct textok_t5 {
    textok_t5_config  cfg;
    textok_kernels    k;           /* the table every buffer below belongs to */
    int               max_batch;   /* rows per internal pass */

    /* parameters: one block from k.alloc, in file order (textok__t5_walk) */
    float            *params;
    size_t            n_params;
    float            *embed;       /* (V, d) shared.weight */
    float            *rel_table;   /* (num_buckets, H) block 0's relative_attention_bias */
    textok__t5_block *blocks;      /* (layers), a host array of pointers into params */
    float            *final_ln;    /* (d) encoder.final_layer_norm.weight */

    /* activations for max_batch rows of up to L_cap positions (textok__t5_reserve); a call with
       a shorter L uses the front of each buffer with its own, tighter strides */
    int            L_cap;
    float         *arena;
    size_t         arena_floats;
    int32_t       *host_buckets;   /* (L_cap, L_cap) host: bucket(k - q), staged for the device */
    int32_t       *buckets;        /* (L, L) the same on the device */
    int32_t       *ids;            /* (B, L) */
    unsigned char *mask;           /* (B, L) */
    float *bias_qk;                /* (L, L, H) table rows gathered per (query, key) */
    float *bias;                   /* (H, L, L) what attention_forward adds to the scores */
    float *h;                      /* (B, L, d) residual stream */
    float *x;                      /* (B, L, d) RMSNorm output, then a branch output; the result */
    float *q, *key, *v, *att;      /* (B, L, DI) */
    float *f0, *f1, *f2;           /* (B, L, F) FFN: act(x wi_0), x wi_1, their product (gated) */
    float *zeros;                  /* (B, L, F) gated only: zeros, gate_forward's residual input */
    float *lse;                    /* (B, H, L) attention row log-sum-exp (not used after) */
    float *work;                   /* attention work for (L, L) */
};

/* ----- configuration ------------------------------------------------------------------------ */
TEXTOKDEF int textok_t5_config_check(const textok_t5_config *c)
{
#define TEXTOK__CHK(cond, ...) do { if (!(cond)) return textok__fail(TEXTOK_ERR_SHAPE, "T5 config: " __VA_ARGS__); } while (0)
    if (!c) return textok__fail(TEXTOK_ERR_ARG, "textok_t5_config_check: NULL config");
    TEXTOK__CHK(c->vocab >= 1 && c->vocab <= (1 << 24), "vocab %d not in [1, 2^24]", c->vocab);
    TEXTOK__CHK(c->d_model >= 1 && c->d_model <= 65536, "d_model %d not in [1, 65536]", c->d_model);
    TEXTOK__CHK(c->d_kv >= 1 && c->d_kv <= 65536, "d_kv %d not in [1, 65536]", c->d_kv);
    TEXTOK__CHK(c->heads >= 1 && c->heads <= 4096, "heads %d not in [1, 4096]", c->heads);
    TEXTOK__CHK((long)c->heads * c->d_kv <= 65536, "heads * d_kv = %ld exceeds 65536", (long)c->heads * c->d_kv);
    TEXTOK__CHK(c->d_ff >= 1 && c->d_ff <= 262144, "d_ff %d not in [1, 262144]", c->d_ff);
    TEXTOK__CHK(c->layers >= 1 && c->layers <= 1024, "layers %d not in [1, 1024] (block 0 holds the position table)", c->layers);
    TEXTOK__CHK(c->num_buckets >= 4 && c->num_buckets <= 4096 && c->num_buckets % 2 == 0,
                "num_buckets %d must be even and in [4, 4096] (half of them per direction)", c->num_buckets);
    TEXTOK__CHK(c->max_distance > c->num_buckets / 4 && c->max_distance <= (1 << 24),
                "max_distance %d must exceed num_buckets/4 = %d (where the log buckets start) and be <= 2^24",
                c->max_distance, c->num_buckets / 4);
    TEXTOK__CHK(c->gated == 0 || c->gated == 1, "gated %d is not 0 or 1", c->gated);
    TEXTOK__CHK(c->gelu_tanh == 0 || c->gelu_tanh == 1, "gelu_tanh %d is not 0 or 1", c->gelu_tanh);
    TEXTOK__CHK(c->gated || !c->gelu_tanh, "gelu_tanh 1 without gated: v1.0's FFN is ReLU and has no GELU (set 0)");
    TEXTOK__CHK(c->eps > 0.0f && c->eps < 1.0f, "eps %g not in (0, 1)", (double)c->eps);
#undef TEXTOK__CHK
    return TEXTOK_OK;
}

/* the integer metadata fields; eps is written on its own */
static const struct { const char *key; size_t offset; } textok__t5_fields[] = {
    { "vocab", offsetof(textok_t5_config, vocab) }, { "d_model", offsetof(textok_t5_config, d_model) },
    { "d_kv", offsetof(textok_t5_config, d_kv) }, { "heads", offsetof(textok_t5_config, heads) },
    { "d_ff", offsetof(textok_t5_config, d_ff) }, { "layers", offsetof(textok_t5_config, layers) },
    { "num_buckets", offsetof(textok_t5_config, num_buckets) },
    { "max_distance", offsetof(textok_t5_config, max_distance) },
    { "gated", offsetof(textok_t5_config, gated) }, { "gelu_tanh", offsetof(textok_t5_config, gelu_tanh) }
};
#define TEXTOK__T5_N_FIELDS ((int)(sizeof textok__t5_fields / sizeof textok__t5_fields[0]))

/* A decimal number as "%.9g" writes it: [digits][.digits][e[+-]digits], no sign (a config value
   is positive). Parsed by hand, not strtod: strtod follows the caller's locale (a decimal comma). */
static int textok__parse_float(const char *s, float *out)
{
    double m = 0.0;
    int e = 0, digits = 0, ex = 0, esign = 1, exd = 0;
    for (; *s >= '0' && *s <= '9'; s++, digits++) m = m * 10.0 + (*s - '0');
    if (*s == '.')
        for (s++; *s >= '0' && *s <= '9'; s++, digits++, e--) m = m * 10.0 + (*s - '0');
    if (!digits || digits > 40) return 0;
    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '+' || *s == '-') esign = *s++ == '-' ? -1 : 1;
        for (; *s >= '0' && *s <= '9' && exd < 4; s++, exd++) ex = ex * 10 + (*s - '0');
        if (!exd) return 0;
    }
    if (*s) return 0;
    e += esign * ex;
    /* m is exact below 2^53 (the 9-17 digits %.9g writes), and so is 10^|e| for |e| <= 22: the
       one division or product then rounds once */
    m = e < 0 ? m / pow(10.0, -e) : m * pow(10.0, e);
    if (!(m <= FLT_MAX)) return 0;
    *out = (float)m;
    return 1;
}

TEXTOKDEF int textok_t5_config_from_meta(textok_t5_config *cfg, const textok_safetensors *st)
{
    const char *v;
    int i;
    if (!cfg || !st) return textok__fail(TEXTOK_ERR_ARG, "textok_t5_config_from_meta: NULL argument");
    memset(cfg, 0, sizeof *cfg);
    v = textok_st_meta(st, "textok.model");
    if (!v || strcmp(v, "t5") != 0)
        return textok__fail(TEXTOK_ERR_FORMAT, "%s: not a textok-layout T5 file (__metadata__ 'textok.model' is %s%s%s, "
                            "expected \"t5\"); convert Hugging Face checkpoints with build/convert --t5",
                            st->path, v ? "\"" : "absent", v ? v : "", v ? "\"" : "");
    for (i = 0; i < TEXTOK__T5_N_FIELDS; i++) {
        int *dst = (int *)((char *)cfg + textok__t5_fields[i].offset);
        v = textok_st_meta(st, textok__t5_fields[i].key);
        if (!v) return textok__fail(TEXTOK_ERR_FORMAT, "%s: __metadata__ lacks '%s'", st->path, textok__t5_fields[i].key);
        if (!textok__parse_int(v, dst))
            return textok__fail(TEXTOK_ERR_FORMAT, "%s: __metadata__ '%s' = \"%.40s\" is not a non-negative integer",
                                st->path, textok__t5_fields[i].key, v);
    }
    v = textok_st_meta(st, "eps");
    if (!v) return textok__fail(TEXTOK_ERR_FORMAT, "%s: __metadata__ lacks 'eps'", st->path);
    if (!textok__parse_float(v, &cfg->eps))
        return textok__fail(TEXTOK_ERR_FORMAT, "%s: __metadata__ 'eps' = \"%.40s\" is not a positive decimal number", st->path, v);
    if (textok_t5_config_check(cfg) != TEXTOK_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", textok_last_error());
        return textok__fail(TEXTOK_ERR_SHAPE, "%s: %s", st->path, msg);
    }
    return TEXTOK_OK;
}

TEXTOKDEF int textok_t5_config_to_meta(const textok_t5_config *cfg, const char **kv, int max_pairs,
                                       char *buf, size_t buf_size)
{
    int n = 0, i;
    size_t used = 0;
    char *p;
#define TEXTOK__PUT(key, ...) do {                                                       \
        int w_;                                                                          \
        if (n >= max_pairs) return textok__fail(TEXTOK_ERR_ARG, "textok_t5_config_to_meta: more than %d pairs", max_pairs); \
        w_ = snprintf(buf + used, buf_size - used, __VA_ARGS__);                          \
        if (w_ < 0 || (size_t)w_ + 1 > buf_size - used)                                  \
            return textok__fail(TEXTOK_ERR_ARG, "textok_t5_config_to_meta: buffer of %lu bytes too small", (unsigned long)buf_size); \
        kv[2 * n] = (key); kv[2 * n + 1] = buf + used; used += (size_t)w_ + 1; n++;       \
    } while (0)
    if (!cfg || !kv || !buf) return textok__fail(TEXTOK_ERR_ARG, "textok_t5_config_to_meta: NULL argument");
    TEXTOK__PUT("textok.model", "%s", "t5");
    for (i = 0; i < TEXTOK__T5_N_FIELDS; i++)
        TEXTOK__PUT(textok__t5_fields[i].key, "%d", *(const int *)((const char *)cfg + textok__t5_fields[i].offset));
    TEXTOK__PUT("eps", "%.9g", (double)cfg->eps);
    for (p = (char *)kv[2 * n - 1]; *p; p++) if (*p == ',') *p = '.';   /* a caller's LC_NUMERIC */
#undef TEXTOK__PUT
    return n;
}

/* ----- the parameter walk (file order = T5EncoderModel.state_dict() order) ---------------------- */
static void textok__t5_walk(const textok_t5_config *c, textok_t5 *t, textok__walk *w)
{
    const int64_t d = c->d_model, DI = (int64_t)c->heads * c->d_kv, F = c->d_ff;
    int i;
    textok__wt(w, t ? &t->embed : NULL, 2, c->vocab, d, 0, 0, "shared.weight");
    for (i = 0; i < c->layers; i++) {
        textok__t5_block *b = t ? &t->blocks[i] : NULL;
        textok__wt(w, b ? &b->q : NULL, 2, DI, d, 0, 0, "encoder.block.%d.layer.0.SelfAttention.q.weight", i);
        textok__wt(w, b ? &b->k : NULL, 2, DI, d, 0, 0, "encoder.block.%d.layer.0.SelfAttention.k.weight", i);
        textok__wt(w, b ? &b->v : NULL, 2, DI, d, 0, 0, "encoder.block.%d.layer.0.SelfAttention.v.weight", i);
        textok__wt(w, b ? &b->o : NULL, 2, d, DI, 0, 0, "encoder.block.%d.layer.0.SelfAttention.o.weight", i);
        if (i == 0)   /* has_relative_attention_bias = (i == 0): the one table every block uses */
            textok__wt(w, t ? &t->rel_table : NULL, 2, c->num_buckets, c->heads, 0, 0,
                       "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight");
        textok__wt(w, b ? &b->ln0 : NULL, 1, d, 0, 0, 0, "encoder.block.%d.layer.0.layer_norm.weight", i);
        if (c->gated) {
            textok__wt(w, b ? &b->wi0 : NULL, 2, F, d, 0, 0, "encoder.block.%d.layer.1.DenseReluDense.wi_0.weight", i);
            textok__wt(w, b ? &b->wi1 : NULL, 2, F, d, 0, 0, "encoder.block.%d.layer.1.DenseReluDense.wi_1.weight", i);
        } else {
            textok__wt(w, b ? &b->wi0 : NULL, 2, F, d, 0, 0, "encoder.block.%d.layer.1.DenseReluDense.wi.weight", i);
            if (b) b->wi1 = NULL;
        }
        textok__wt(w, b ? &b->wo : NULL, 2, d, F, 0, 0, "encoder.block.%d.layer.1.DenseReluDense.wo.weight", i);
        textok__wt(w, b ? &b->ln1 : NULL, 1, d, 0, 0, 0, "encoder.block.%d.layer.1.layer_norm.weight", i);
    }
    textok__wt(w, t ? &t->final_ln : NULL, 1, d, 0, 0, 0, "encoder.final_layer_norm.weight");
}

TEXTOKDEF int textok_t5_tensor_specs(const textok_t5_config *cfg, textok_tensor_spec *specs, int max_specs)
{
    textok__walk w;
    int st;
    if ((st = textok_t5_config_check(cfg)) != TEXTOK_OK) return st;
    memset(&w, 0, sizeof w);
    w.specs = specs;
    w.max_specs = specs ? max_specs : 0;
    textok__t5_walk(cfg, NULL, &w);
    if (w.overflow) return textok__fail(TEXTOK_ERR_SHAPE, "T5 config: parameter count overflows size_t");
    return w.n;
}

/* ----- the relative-position bucket (textok-paper.md 3.3) -------------------------------------- */
/* rel = key - query. The log branch runs in float, one rounding per step as the Hugging Face
   code's float32 tensors do (each step is stored to a float so that no excess precision can move
   a bucket boundary); truncation toward zero. */
static int textok__t5_bucket(int rel, int num_buckets, int max_distance)
{
    const int half = num_buckets / 2, exact = half / 2;
    const int b = rel > 0 ? half : 0, n = rel < 0 ? -rel : rel;
    float r, lg, f;
    int v;
    if (n < exact) return b + n;
    r = (float)n / (float)exact;
    lg = logf(r);
    f = lg / (float)log((double)max_distance / exact);
    f = f * (float)(half - exact);
    v = exact + (int)f;
    return b + (v < half - 1 ? v : half - 1);
}

/* ----- loading -------------------------------------------------------------------------------- */
TEXTOKDEF void textok_t5_free(textok_t5 *t)
{
    if (!t) return;
    if (t->params) t->k.free(&t->k, t->params);
    if (t->arena) t->k.free(&t->k, t->arena);
    TEXTOK_FREE(t->host_buckets);
    TEXTOK_FREE(t->blocks);
    TEXTOK_FREE(t);
}

/* Allocates the model for cfg with its parameter block bound (not filled) and the tensor specs. */
static int textok__t5_new(textok_t5 **out, const textok_t5_config *cfg, const textok_params *params,
                          textok_tensor_spec **specs_out, int *n_specs_out)
{
    textok_params prm = params ? *params : textok_default_params();
    textok_t5 *t;
    textok__walk w;
    int n_specs;
    *out = NULL;
    if (prm.max_batch < 1 || prm.max_batch > 4096)
        return textok__fail(TEXTOK_ERR_ARG, "T5: max_batch %d not in [1, 4096]", prm.max_batch);
    if ((n_specs = textok_t5_tensor_specs(cfg, NULL, 0)) < 0) return n_specs;
    t = (textok_t5 *)textok__calloc(1, sizeof *t);
    if (!t) return textok__fail(TEXTOK_ERR_NOMEM, "T5: out of memory");
    t->cfg = *cfg;
    t->k = prm.kernels ? *prm.kernels : textok_cpu_kernels(prm.n_threads);
    t->max_batch = prm.max_batch;
    {   /* a table that lacks a kernel the encoder calls is refused here, not at the first call */
        const textok_kernels *k = &t->k;
        const char *missing = !k->alloc || !k->free || !k->to_device || !k->to_host ? "alloc/free/to_device/to_host"
                            : !k->matmul_forward ? "matmul_forward" : !k->rmsnorm_forward ? "rmsnorm_forward"
                            : !k->attention_forward ? "attention_forward" : !k->add_forward ? "add_forward"
                            : !k->embedding_forward ? "embedding_forward" : !k->transpose_forward ? "transpose_forward"
                            : !k->fill ? "fill" : cfg->gated && (!k->gelu_forward || !k->gate_forward) ? "gelu_forward/gate_forward"
                            : !cfg->gated && !k->leaky_relu_forward ? "leaky_relu_forward" : NULL;
        if (missing) {
            textok_t5_free(t);
            return textok__fail(TEXTOK_ERR_UNSUPPORTED, "T5: the kernel table '%s' has no %s", prm.kernels && prm.kernels->name ? prm.kernels->name : "?", missing);
        }
    }
    t->blocks = (textok__t5_block *)textok__calloc((size_t)cfg->layers, sizeof *t->blocks);
    *specs_out = (textok_tensor_spec *)textok__calloc((size_t)n_specs, sizeof **specs_out);
    if (!t->blocks || !*specs_out) {
        TEXTOK_FREE(*specs_out); *specs_out = NULL;
        textok_t5_free(t);
        return textok__fail(TEXTOK_ERR_NOMEM, "T5: out of memory");
    }
    textok_t5_tensor_specs(cfg, *specs_out, n_specs);
    *n_specs_out = n_specs;
    memset(&w, 0, sizeof w);
    textok__t5_walk(&t->cfg, t, &w);
    t->n_params = w.offset;
    t->params = (float *)t->k.alloc(&t->k, w.offset * sizeof(float));
    if (!t->params) {
        TEXTOK_FREE(*specs_out); *specs_out = NULL;
        textok_t5_free(t);
        return textok__fail(TEXTOK_ERR_NOMEM, "T5: cannot allocate %lu parameters", (unsigned long)w.offset);
    }
    memset(&w, 0, sizeof w);
    w.base = t->params;
    textok__t5_walk(&t->cfg, t, &w);
    *out = t;
    return TEXTOK_OK;
}

/* Is a tensor of a Hugging Face file one the encoder does not need? The decoder and the LM head
   of a seq2seq file, and the embedding's other tied name (checked separately). */
static int textok__t5_ignorable(const char *name)
{
    return !strncmp(name, "decoder.", 8) || !strncmp(name, "lm_head.", 8) || !strcmp(name, "encoder.embed_tokens.weight");
}

TEXTOKDEF int textok_t5_load_st(textok_t5 **out, const textok_safetensors *st, const textok_t5_config *cfg,
                                const textok_params *params)
{
    textok_t5_config file_cfg;
    textok_t5 *t = NULL;
    textok_tensor_spec *specs = NULL;
    float *stage = NULL, *stage2 = NULL;
    size_t max_numel = 0, offset = 0;
    int i, n_specs = 0, status;
    if (!out || !st) return textok__fail(TEXTOK_ERR_ARG, "textok_t5_load: NULL argument");
    *out = NULL;
    if (!cfg) {
        if ((status = textok_t5_config_from_meta(&file_cfg, st)) != TEXTOK_OK) return status;
        cfg = &file_cfg;
    }
    if (cfg == &file_cfg &&   /* a config the file claims; the caller's own is trusted */
        (status = textok__st_precheck(st, textok_t5_tensor_specs(cfg, NULL, 0), textok__fill_t5, cfg, "T5 encoder")) != TEXTOK_OK) return status;
    if ((status = textok__t5_new(&t, cfg, params, &specs, &n_specs)) != TEXTOK_OK) return status;
    /* an encoder tensor this config does not expect means another model (more layers, umT5's
       per-block position tables, ...): refuse rather than run something else */
    for (i = 0; i < st->n_tensors; i++) {
        const textok_st_tensor *x = &st->tensors[i];
        int j, found = textok__t5_ignorable(x->name);
        char s1[TEXTOK__SHAPE_STR];
        for (j = 0; j < n_specs && !found; j++) found = strcmp(x->name, specs[j].name) == 0;
        if (!found) {
            status = textok__fail(TEXTOK_ERR_SHAPE, "%s: unexpected tensor '%.120s' %s for this T5 config (%d layers, %s)",
                                  st->path, x->name, textok__shape_str(s1, x->ndim, x->shape), cfg->layers,
                                  cfg->gated ? "gated wi_0/wi_1" : "v1.0 wi");
            goto fail;
        }
    }
    for (i = 0; i < n_specs; i++)
        if (textok__spec_numel(&specs[i]) > max_numel) max_numel = textok__spec_numel(&specs[i]);
    stage = (float *)textok__malloc(max_numel * sizeof(float));
    if (!stage) { status = textok__fail(TEXTOK_ERR_NOMEM, "textok_t5_load: out of memory"); goto fail; }
    /* through a host staging buffer: the parameter block belongs to the table (maybe a GPU) */
    for (i = 0; i < n_specs; i++) {
        const char *name = specs[i].name;
        size_t numel = textok__spec_numel(&specs[i]);
        if (i == 0) {
            /* the embedding: shared.weight, or the encoder's tied alias when a file kept only that */
            const textok_st_tensor *a = textok_st_find(st, "shared.weight"), *b = textok_st_find(st, "encoder.embed_tokens.weight");
            char s1[TEXTOK__SHAPE_STR];
            if (!a && !b) {
                status = textok__fail(TEXTOK_ERR_NOT_FOUND, "%s: tensor 'shared.weight' %s not found, nor its tied name "
                                      "'encoder.embed_tokens.weight' (the file has %d tensors)", st->path,
                                      textok__shape_str(s1, specs[0].ndim, specs[0].shape), st->n_tensors);
                goto fail;
            }
            if (!a) name = "encoder.embed_tokens.weight";
            if (a && b) {   /* both kept: they must be one tensor, else the embedding is ambiguous */
                int same = a->ndim == b->ndim && a->numel == b->numel;
                if (same && a->dtype == b->dtype) {
                    same = memcmp(st->buffer + a->offset, st->buffer + b->offset, a->nbytes) == 0;
                } else if (same) {
                    if (!(stage2 = (float *)textok__malloc(numel * sizeof(float)))) { status = textok__fail(TEXTOK_ERR_NOMEM, "textok_t5_load: out of memory"); goto fail; }
                    if ((status = textok_st_load(st, "encoder.embed_tokens.weight", specs[0].ndim, specs[0].shape, stage2)) != TEXTOK_OK ||
                        (status = textok_st_load(st, "shared.weight", specs[0].ndim, specs[0].shape, stage)) != TEXTOK_OK) goto fail;
                    same = memcmp(stage, stage2, numel * sizeof(float)) == 0;
                }
                if (!same) {
                    status = textok__fail(TEXTOK_ERR_FORMAT, "%s: 'shared.weight' and 'encoder.embed_tokens.weight' are both present "
                                          "and differ; T5 ties them, so which one the encoder uses is ambiguous", st->path);
                    goto fail;
                }
            }
        }
        if ((status = textok_st_load(st, name, specs[i].ndim, specs[i].shape, stage)) != TEXTOK_OK) goto fail;
        if ((status = t->k.to_device(&t->k, t->params + offset, stage, numel * sizeof(float))) != TEXTOK_OK) goto fail;
        offset += numel;
    }
    TEXTOK_FREE(stage);
    TEXTOK_FREE(stage2);
    TEXTOK_FREE(specs);
    *out = t;
    return TEXTOK_OK;
fail:
    TEXTOK_FREE(stage);
    TEXTOK_FREE(stage2);
    TEXTOK_FREE(specs);
    textok_t5_free(t);
    return status;
}

#ifndef TEXTOK_NO_STDIO
TEXTOKDEF int textok_t5_load(textok_t5 **out, const char *path, const textok_params *p)
{
    textok_safetensors st;
    int status;
    if (!out || !path) return textok__fail(TEXTOK_ERR_ARG, "textok_t5_load: NULL argument");
    *out = NULL;
    if ((status = textok_st_open(&st, path)) != TEXTOK_OK) return status;
    status = textok_t5_load_st(out, &st, NULL, p);
    textok_st_close(&st);
    return status;
}
#endif

TEXTOKDEF const textok_t5_config *textok_t5_get_config(const textok_t5 *t) { return t ? &t->cfg : NULL; }
TEXTOKDEF size_t textok_t5_num_params(const textok_t5 *t) { return t ? t->n_params : 0; }

/* ----- the activation arena ----------------------------------------------------------------- */
static void textok__t5_carve(textok_t5 *t, textok__carve *a, int L)
{
    const textok_t5_config *c = &t->cfg;
    const size_t B = (size_t)t->max_batch, Ls = (size_t)L, d = (size_t)c->d_model, H = (size_t)c->heads;
    const size_t DI = H * (size_t)c->d_kv, F = (size_t)c->d_ff;
    int *o = &a->overflow;
    textok_attention_dims ad;
    ad.B = (int)B; ad.Tq = ad.Tk = L; ad.C = (int)DI; ad.H = (int)H; ad.scale = 1.0f;
    t->buckets = (int32_t *)(void *)textok__take(a, textok__mul3(Ls, Ls, 1, o));   /* int32: one float slot each */
    t->ids     = (int32_t *)(void *)textok__take(a, textok__mul3(B, Ls, 1, o));
    t->mask    = (unsigned char *)(void *)textok__take(a, textok__mul3(B, Ls, 1, o) / 4 + 1);
    t->bias_qk = textok__take(a, textok__mul3(Ls, Ls, H, o));
    t->bias    = textok__take(a, textok__mul3(H, Ls, Ls, o));
    t->h       = textok__take(a, textok__mul3(B, Ls, d, o));
    t->x       = textok__take(a, textok__mul3(B, Ls, d, o));
    t->q       = textok__take(a, textok__mul3(B, Ls, DI, o));
    t->key     = textok__take(a, textok__mul3(B, Ls, DI, o));
    t->v       = textok__take(a, textok__mul3(B, Ls, DI, o));
    t->att     = textok__take(a, textok__mul3(B, Ls, DI, o));
    t->f0      = textok__take(a, textok__mul3(B, Ls, F, o));
    t->f1      = c->gated ? textok__take(a, textok__mul3(B, Ls, F, o)) : NULL;
    t->f2      = c->gated ? textok__take(a, textok__mul3(B, Ls, F, o)) : NULL;
    t->zeros   = c->gated ? textok__take(a, textok__mul3(B, Ls, F, o)) : NULL;
    t->lse     = textok__take(a, textok__mul3(B, H, Ls, o));
    t->work    = textok__take(a, textok_attention_work_floats(&ad));
}

/* Makes the arena serve L positions: kept when it already does, else replaced by one for L. */
static int textok__t5_reserve(textok_t5 *t, int L)
{
    textok__carve a;
    if (t->arena && L <= t->L_cap) return TEXTOK_OK;
    memset(&a, 0, sizeof a);
    textok__t5_carve(t, &a, L);
    if (a.overflow)
        return textok__fail(TEXTOK_ERR_SHAPE, "textok_t5_encode: length %d: an activation buffer would exceed INT_MAX values "
                            "(max_batch %d, d_ff %d, heads %d)", L, t->max_batch, t->cfg.d_ff, t->cfg.heads);
    if (t->arena) t->k.free(&t->k, t->arena);
    TEXTOK_FREE(t->host_buckets);
    t->L_cap = 0;
    t->arena_floats = a.used;
    t->arena = (float *)t->k.alloc(&t->k, a.used * sizeof(float));
    t->host_buckets = (int32_t *)textok__malloc((size_t)L * (size_t)L * sizeof(int32_t));
    if (!t->arena || !t->host_buckets) {
        if (t->arena) t->k.free(&t->k, t->arena);
        TEXTOK_FREE(t->host_buckets);
        t->arena = NULL; t->host_buckets = NULL;
        return textok__fail(TEXTOK_ERR_NOMEM, "textok_t5_encode: cannot allocate %lu MB of activations for %d rows of %d tokens",
                            (unsigned long)(a.used * sizeof(float) >> 20), t->max_batch, L);
    }
    memset(&a, 0, sizeof a);
    a.base = t->arena;
    textok__t5_carve(t, &a, L);
    if (t->zeros) t->k.fill(&t->k, t->zeros, (size_t)t->max_batch * L * t->cfg.d_ff, 0.0f);
    t->L_cap = L;
    return TEXTOK_OK;
}

/* ----- encode ------------------------------------------------------------------------------- */
/* B <= max_batch rows of L ids in t->ids -> t->x (B, L, d), the last hidden state. t->bias holds
   the position bias for L; key_mask (B, L) on the device, or NULL. */
static void textok__t5_forward(textok_t5 *t, int B, int L, const unsigned char *key_mask)
{
    const textok_kernels *k = &t->k;
    const textok_t5_config *c = &t->cfg;
    const int d = c->d_model, DI = c->heads * c->d_kv, F = c->d_ff, N = B * L;
    const size_t nd = (size_t)N * d, nf = (size_t)N * F;
    textok_attention_dims ad;
    int l;
    /* scale 1: T5 has no 1/sqrt(d_kv) (its initialisation folds it into q) */
    ad.B = B; ad.Tq = ad.Tk = L; ad.C = DI; ad.H = c->heads; ad.scale = 1.0f;
    k->embedding_forward(k, t->h, t->embed, t->ids, N, d);
    for (l = 0; l < c->layers; l++) {
        const textok__t5_block *b = &t->blocks[l];
        k->rmsnorm_forward(k, t->x, NULL, t->h, b->ln0, N, d, c->eps);
        textok__linear(k, t->q, t->x, b->q, NULL, N, d, DI);
        textok__linear(k, t->key, t->x, b->k, NULL, N, d, DI);
        textok__linear(k, t->v, t->x, b->v, NULL, N, d, DI);
        k->attention_forward(k, t->att, t->lse, t->q, t->key, t->v, t->bias, key_mask, &ad, t->work);
        textok__linear(k, t->x, t->att, b->o, NULL, N, DI, d);
        k->add_forward(k, t->h, t->h, t->x, nd);
        k->rmsnorm_forward(k, t->x, NULL, t->h, b->ln1, N, d, c->eps);
        textok__linear(k, t->f0, t->x, b->wi0, NULL, N, d, F);
        if (c->gated) {
            k->gelu_forward(k, t->f0, t->f0, nf, c->gelu_tanh);
            textok__linear(k, t->f1, t->x, b->wi1, NULL, N, d, F);
            /* act(x wi_0) * (x wi_1): the table has no plain elementwise product, so it is
               gate_forward's resid + gate * inp with resid = 0 and (N, 1, F) shapes (exact) */
            k->gate_forward(k, t->f2, t->zeros, t->f1, t->f0, N, 1, F);
            textok__linear(k, t->x, t->f2, b->wo, NULL, N, F, d);
        } else {
            k->leaky_relu_forward(k, t->f0, t->f0, nf, 0.0f);
            textok__linear(k, t->x, t->f0, b->wo, NULL, N, F, d);
        }
        k->add_forward(k, t->h, t->h, t->x, nd);
    }
    k->rmsnorm_forward(k, t->x, NULL, t->h, t->final_ln, N, d, c->eps);
}

/* A failed transfer: the table's own message, copied first (it lives in the buffer we write). */
static int textok__t5_xfer_fail(int st)
{
    char msg[512];
    snprintf(msg, sizeof msg, "%s", textok_last_error());
    return textok__fail(st, "T5: a memory transfer failed: %s", msg);
}

TEXTOKDEF int textok_t5_encode(textok_t5 *t, const int32_t *ids, const unsigned char *mask, int B, int L, float *out)
{
    const textok_kernels *k;
    const textok_t5_config *c;
    size_t n, i, d;
    int b0, q, j, st;
    if (!t || !ids || !out) return textok__fail(TEXTOK_ERR_ARG, "textok_t5_encode: NULL model, ids or out");
    if (B < 1 || L < 1) return textok__fail(TEXTOK_ERR_ARG, "textok_t5_encode: batch %d and length %d must both be >= 1", B, L);
    k = &t->k; c = &t->cfg; d = (size_t)c->d_model;
    if (!textok__mul_size((size_t)B, (size_t)L, &n))
        return textok__fail(TEXTOK_ERR_ARG, "textok_t5_encode: batch %d x length %d overflows", B, L);
    /* ids and mask come from users: checked before any kernel indexes with them */
    for (i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= c->vocab)
            return textok__fail(TEXTOK_ERR_ARG, "textok_t5_encode: id %ld at row %lu, position %lu is outside [0, %d)",
                                (long)ids[i], (unsigned long)(i / (size_t)L), (unsigned long)(i % (size_t)L), c->vocab);
    if (mask)
        for (i = 0; i < n; i++)
            if (mask[i] > 1)
                return textok__fail(TEXTOK_ERR_ARG, "textok_t5_encode: mask value %u at row %lu, position %lu is not 0 (padding) or 1 (token)",
                                    (unsigned)mask[i], (unsigned long)(i / (size_t)L), (unsigned long)(i % (size_t)L));
    if ((st = textok__t5_reserve(t, L)) != TEXTOK_OK) return st;
    /* the relative-position bias (H, L, L), once per call: bucket ids on the host, then block 0's
       table rows gathered per (query, key) and moved heads-first */
    for (q = 0; q < L; q++)
        for (j = 0; j < L; j++) t->host_buckets[(size_t)q * L + j] = textok__t5_bucket(j - q, c->num_buckets, c->max_distance);
    if ((st = k->to_device(k, t->buckets, t->host_buckets, (size_t)L * L * sizeof(int32_t))) != TEXTOK_OK)
        return textok__t5_xfer_fail(st);
    k->embedding_forward(k, t->bias_qk, t->rel_table, t->buckets, L * L, c->heads);
    k->transpose_forward(k, t->bias, t->bias_qk, 1, L * L, c->heads);
    for (b0 = 0; b0 < B; b0 += t->max_batch) {
        const int nb = B - b0 < t->max_batch ? B - b0 : t->max_batch;
        const size_t rows = (size_t)nb * L;
        if ((st = k->to_device(k, t->ids, ids + (size_t)b0 * L, rows * sizeof(int32_t))) != TEXTOK_OK ||
            (mask && (st = k->to_device(k, t->mask, mask + (size_t)b0 * L, rows)) != TEXTOK_OK))
            return textok__t5_xfer_fail(st);
        textok__t5_forward(t, nb, L, mask ? t->mask : NULL);
        if ((st = k->to_host(k, out + (size_t)b0 * L * d, t->x, rows * d * sizeof(float))) != TEXTOK_OK)
            return textok__t5_xfer_fail(st);
    }
    return TEXTOK_OK;
}

/* ---------------------------------------------------------------------------------------------
   11. The 1D tokenizers (TiTok, TA-TiTok, TexTok): configuration, parameters, loading, encode and
   decode (architecture.md 1, 3; textok-paper.md 1.2) */

typedef struct textok__pixel_decoder {
    float *codebook;                 /* (Vp, Z) pixel_quantize.embedding.weight */
    float *conv_in_w, *conv_in_b;    /* (C_top, Z, 3, 3), (C_top) */
    textok__resblock *mid;           /* (res_blocks) at C_top */
    textok__resblock *up;            /* (levels * res_blocks): up.l.block.j at [l*res_blocks + j] */
    float **upsample_w, **upsample_b;/* (levels): level l >= 1: (c, c, 3, 3), (c) upsample_conv */
    float *norm_out_w, *norm_out_b;  /* (C_0) */
    float *conv_out_w, *conv_out_b;  /* (3, C_0, 3, 3), (3) */
} textok__pixel_decoder;

struct textok_titok {
    textok_titok_config cfg;
    textok_kernels      k;           /* the table every buffer below belongs to */
    int                 max_batch;
    int P;                           /* patches (S/p)^2 */
    int ncls;                        /* 1 when a class token leads both sequences (titok), else 0 */
    int Lte, Ltd;                    /* text rows in the encoder / decoder sequence: text_len or 0 */
    int Te, Td;                      /* sequence lengths ncls + P + K + Lte (encoder), + Ltd (decoder) */
    int Cq;                          /* encoder output channels: C (vq, none), 2C (vae) */

    /* parameters: one block from k.alloc, in state_dict order (textok__titok_walk) */
    float  *params;
    size_t  n_params;
    float  *latent_tokens;                        /* (K, De) */
    struct {
        float *cls, *pos, *latent_pos;            /* (1, De), (1+P, De), (K, De) */
        float *patch_w, *patch_b;                 /* (De, 3, p, p), (De) */
        textok__vit vit;
        float *out_w, *out_b;                     /* (Cq, De, 1, 1), (Cq) conv_out */
        float *text_w, *text_b, *text_pos;        /* (De, Dt), (De), (Lt, De) text_in_encoder only */
    } enc;                                        /* textok: no cls, pos (P, De) */
    struct {
        float *cls, *pos, *mask_token, *latent_pos; /* (1, Dd), (1+P, Dd), (1, 1, Dd), (K, Dd) */
        float *text_w, *text_b, *text_pos;        /* (Dd, Dt), (Dd), (Lt, Dd) text_in_decoder only */
        float *embed_w, *embed_b;                 /* (Dd, C), (Dd) decoder_embed */
        textok__vit vit;
        float *ffn0_w, *ffn0_b;                   /* legacy (2Dd, Dd, 1, 1); else (p*p*3, Dd, 1, 1) */
        float *ffn2_w, *ffn2_b;                   /* legacy only: (Vp, 2Dd, 1, 1), (Vp) */
        float *out_w, *out_b;                     /* non-legacy titok only: (3, 3, 3, 3), (3) conv_out */
    } dec;                                        /* textok: no cls or mask_token; pos (P, Dd) are the patch tokens */
    float *codebook;                              /* (V, C) quantize.embedding.weight (vq) */
    textok__pixel_decoder pix;                    /* legacy only */
    void  *host_arrays;                           /* the block/level arrays above (host memory) */

    /* derived from the parameters once after loading (they are constants at inference) */
    float *derived;
    float *dec_mask_seq;       /* (P, Dd) mask_token + pos[1 + p] (titok); the patch tokens pos (textok) */
    float *codebook_lookup;    /* (V, C) the codebook as searched and looked up: l2-normalised rows
                                  when use_l2_norm (get_codebook_entry re-normalises), else codebook */

    /* activations: one arena sized for max_batch images at load; nothing is allocated per call */
    float *arena;
    size_t arena_floats;
    textok__vit_acts vit;
    float *text;               /* (B, Lt, Dt) text embeddings, zero-padded (models with text) */
    unsigned char *kmask_e, *kmask_d;   /* (B, Te), (B, Td) attention key masks, NULL for a stack without text */
    unsigned char *hmask;      /* (B, max(Te, Td)) host staging for the masks (inside host_arrays) */
    float *img;                /* (B, 3, S, S) input or output images */
    float *img2;               /* (B, 3, S, S) non-legacy head before its conv_out */
    float *patches;            /* (B, De, P) patch_embed output, NCHW */
    float *conv_work;          /* conv2d work: textok_conv2d_work_floats of the largest conv */
    float *lat;                /* (B, K, max(De, Dd)) ln_post output at the latent / decoder rows */
    float *zt;                 /* (B, K, Cq) encoder output, token-major */
    float *zq;                 /* (B, K, C) what the quantiser searches (normalised if l2) */
    float *zoff;               /* (B, Cq, K) encoder output in the official layout */
    float *noise;              /* (B, C, K) VAE sampling noise */
    int32_t *ids;              /* (B, K) token ids */
    float *cb_work;            /* codebook search work */
    float *dec_out;            /* (B, P, Dd) decoder ln_post at the mask positions */
    float *head1;              /* (B, P, 2Dd) legacy ffn hidden; non-legacy (B, P, p*p*3) */
    float *logits;             /* (B, P, Vp) legacy proxy-code logits, then their softmax */
    float *codes;              /* (B, P, Z) soft pixel codes, token-major */
    textok__pix_acts pixa;

    textok_titok_timing timing;
};

/* ----- configuration ------------------------------------------------------------------------ */
static int textok__pow2(int e) { return e >= 0 && e < 30 ? 1 << e : 0; }

/* The pixel decoder's channel count at level l (C_l = hidden * mult[l]); the top of the stack
   (conv_in, mid) runs at the last level's count. */
static int textok__pix_ch(const textok_titok_config *c, int l) { return c->pixel_hidden * c->pixel_channel_mult[l]; }

TEXTOKDEF int textok_titok_config_check(const textok_titok_config *c)
{
    int l;
#define TEXTOK__CHK(cond, ...) do { if (!(cond)) return textok__fail(TEXTOK_ERR_SHAPE, "TiTok config: " __VA_ARGS__); } while (0)
    if (!c) return textok__fail(TEXTOK_ERR_ARG, "textok_titok_config_check: NULL config");
    TEXTOK__CHK(c->image_size >= 1 && c->image_size <= 8192, "image_size %d not in [1, 8192]", c->image_size);
    TEXTOK__CHK(c->patch_size >= 1 && c->image_size % c->patch_size == 0,
                "patch_size %d must divide image_size %d", c->patch_size, c->image_size);
    TEXTOK__CHK(c->num_latent_tokens >= 1 && c->num_latent_tokens <= 65536, "num_latent_tokens %d not in [1, 65536]", c->num_latent_tokens);
    TEXTOK__CHK(c->token_size >= 1 && c->token_size <= 65536, "token_size %d not in [1, 65536]", c->token_size);
    TEXTOK__CHK(c->enc_width >= 1 && c->enc_width <= 65536 && c->dec_width >= 1 && c->dec_width <= 65536,
                "widths %d/%d not in [1, 65536]", c->enc_width, c->dec_width);
    TEXTOK__CHK(c->enc_layers >= 0 && c->enc_layers <= 1024 && c->dec_layers >= 0 && c->dec_layers <= 1024,
                "layers %d/%d not in [0, 1024]", c->enc_layers, c->dec_layers);
    TEXTOK__CHK(c->enc_heads >= 1 && c->enc_width % c->enc_heads == 0, "enc_heads %d must divide enc_width %d", c->enc_heads, c->enc_width);
    TEXTOK__CHK(c->dec_heads >= 1 && c->dec_width % c->dec_heads == 0, "dec_heads %d must divide dec_width %d", c->dec_heads, c->dec_width);
    TEXTOK__CHK(c->enc_mlp >= 1 && c->enc_mlp <= 262144 && c->dec_mlp >= 1 && c->dec_mlp <= 262144,
                "mlp sizes %d/%d not in [1, 262144]", c->enc_mlp, c->dec_mlp);
    TEXTOK__CHK(c->quantize_mode == TEXTOK_QUANT_VQ || c->quantize_mode == TEXTOK_QUANT_VAE || c->quantize_mode == TEXTOK_QUANT_NONE,
                "quantize_mode %d is not vq, vae or none", c->quantize_mode);
    TEXTOK__CHK(c->arch == TEXTOK_ARCH_TITOK || c->arch == TEXTOK_ARCH_TEXTOK, "arch %d is neither titok (0) nor textok (1)", c->arch);
    TEXTOK__CHK(c->arch == TEXTOK_ARCH_TITOK || !c->is_legacy, "a textok-arch model cannot be legacy");
    TEXTOK__CHK((c->text_in_encoder == 0 || c->text_in_encoder == 1) && (c->text_in_decoder == 0 || c->text_in_decoder == 1)
                && (c->text_optional == 0 || c->text_optional == 1), "text_in_encoder/text_in_decoder/text_optional must be 0 or 1");
    TEXTOK__CHK(!c->is_legacy || !c->text_in_encoder, "legacy models take no text in the encoder");
    if (c->text_in_encoder || c->text_in_decoder)
        TEXTOK__CHK(c->text_dim >= 1 && c->text_dim <= 65536 && c->text_len >= 1 && c->text_len <= 65536,
                    "text_dim %d and text_len %d must be in [1, 65536] when a stack sees text", c->text_dim, c->text_len);
    else
        TEXTOK__CHK(c->text_dim == 0 && c->text_len == 0 && c->text_optional == 0,
                    "text_dim %d, text_len %d and text_optional %d must be 0 when no stack sees text", c->text_dim, c->text_len, c->text_optional);
    if (c->quantize_mode == TEXTOK_QUANT_VQ)
        TEXTOK__CHK(c->codebook_size >= 1 && c->codebook_size <= (1 << 24), "codebook_size %d not in [1, 2^24]", c->codebook_size);
    TEXTOK__CHK(c->use_l2_norm == 0 || c->use_l2_norm == 1, "use_l2_norm %d is not 0 or 1", c->use_l2_norm);
    TEXTOK__CHK(c->is_legacy == 0 || c->is_legacy == 1, "is_legacy %d is not 0 or 1", c->is_legacy);
    if (c->is_legacy) {
        TEXTOK__CHK(c->pixel_num_levels >= 1 && c->pixel_num_levels <= TEXTOK_MAX_LEVELS,
                    "pixel_num_levels %d not in [1, %d]", c->pixel_num_levels, TEXTOK_MAX_LEVELS);
        TEXTOK__CHK(c->patch_size == textok__pow2(c->pixel_num_levels - 1),
                    "the pixel decoder upsamples by 2^(levels-1) = %d, which must equal patch_size %d",
                    textok__pow2(c->pixel_num_levels - 1), c->patch_size);
        TEXTOK__CHK(c->pixel_codebook_size >= 1 && c->pixel_codebook_size <= 65536, "pixel_codebook_size %d not in [1, 65536]", c->pixel_codebook_size);
        TEXTOK__CHK(c->pixel_z_channels >= 1 && c->pixel_z_channels <= 65536, "pixel_z_channels %d not in [1, 65536]", c->pixel_z_channels);
        TEXTOK__CHK(c->pixel_res_blocks >= 1 && c->pixel_res_blocks <= 64, "pixel_res_blocks %d not in [1, 64]", c->pixel_res_blocks);
        TEXTOK__CHK(c->pixel_groups >= 1, "pixel_groups %d < 1", c->pixel_groups);
        TEXTOK__CHK(c->pixel_hidden >= 1 && c->pixel_hidden <= 65536, "pixel_hidden %d not in [1, 65536]", c->pixel_hidden);
        for (l = 0; l < c->pixel_num_levels; l++) {
            TEXTOK__CHK(c->pixel_channel_mult[l] >= 1 && c->pixel_channel_mult[l] <= 64, "pixel_channel_mult[%d] = %d not in [1, 64]", l, c->pixel_channel_mult[l]);
            TEXTOK__CHK(textok__pix_ch(c, l) % c->pixel_groups == 0, "pixel decoder level %d has %d channels, not a multiple of %d groups",
                        l, textok__pix_ch(c, l), c->pixel_groups);
        }
    }
#undef TEXTOK__CHK
    return TEXTOK_OK;
}

/* The metadata fields, in one table so that reading and writing cannot drift apart. */
typedef struct textok__cfg_field { const char *key; size_t offset; int optional; } textok__cfg_field;
#define TEXTOK__CF(f) { #f, offsetof(textok_titok_config, f), 0 }
#define TEXTOK__CF_OPT(f) { #f, offsetof(textok_titok_config, f), 1 }   /* absent (files from 0.3) = 0 */
static const textok__cfg_field textok__cfg_fields[] = {
    TEXTOK__CF(image_size), TEXTOK__CF(patch_size), TEXTOK__CF(num_latent_tokens), TEXTOK__CF(token_size),
    TEXTOK__CF(enc_width), TEXTOK__CF(enc_layers), TEXTOK__CF(enc_heads), TEXTOK__CF(enc_mlp),
    TEXTOK__CF(dec_width), TEXTOK__CF(dec_layers), TEXTOK__CF(dec_heads), TEXTOK__CF(dec_mlp),
    TEXTOK__CF(codebook_size), TEXTOK__CF(use_l2_norm), TEXTOK__CF(is_legacy),
    TEXTOK__CF(pixel_codebook_size), TEXTOK__CF(pixel_z_channels), TEXTOK__CF(pixel_hidden),
    TEXTOK__CF(pixel_num_levels), TEXTOK__CF(pixel_res_blocks), TEXTOK__CF(pixel_groups),
    TEXTOK__CF_OPT(text_dim), TEXTOK__CF_OPT(text_len), TEXTOK__CF_OPT(text_in_encoder),
    TEXTOK__CF_OPT(text_in_decoder), TEXTOK__CF_OPT(text_optional)
};
#undef TEXTOK__CF
#undef TEXTOK__CF_OPT
#define TEXTOK__N_CFG_FIELDS ((int)(sizeof textok__cfg_fields / sizeof textok__cfg_fields[0]))

TEXTOKDEF int textok_titok_config_from_meta(textok_titok_config *cfg, const textok_safetensors *st)
{
    const char *v;
    int i;
    if (!cfg || !st) return textok__fail(TEXTOK_ERR_ARG, "textok_titok_config_from_meta: NULL argument");
    memset(cfg, 0, sizeof *cfg);
    v = textok_st_meta(st, "textok.model");
    if (!v || (strcmp(v, "titok") != 0 && strcmp(v, "titok-trainer") != 0))   /* a checkpoint has the same config */
        return textok__fail(TEXTOK_ERR_FORMAT, "%s: not a textok-layout TiTok file (__metadata__ 'textok.model' is %s%s%s, "
                            "expected \"titok\"); convert official checkpoints with build/convert",
                            st->path, v ? "\"" : "absent", v ? v : "", v ? "\"" : "");
    for (i = 0; i < TEXTOK__N_CFG_FIELDS; i++) {
        int *dst = (int *)((char *)cfg + textok__cfg_fields[i].offset);
        v = textok_st_meta(st, textok__cfg_fields[i].key);
        if (!v && textok__cfg_fields[i].optional) continue;
        if (!v) return textok__fail(TEXTOK_ERR_FORMAT, "%s: __metadata__ lacks '%s'", st->path, textok__cfg_fields[i].key);
        if (!textok__parse_int(v, dst))
            return textok__fail(TEXTOK_ERR_FORMAT, "%s: __metadata__ '%s' = \"%.40s\" is not a non-negative integer",
                                st->path, textok__cfg_fields[i].key, v);
    }
    v = textok_st_meta(st, "quantize_mode");
    if (v && strcmp(v, "vq") == 0) cfg->quantize_mode = TEXTOK_QUANT_VQ;
    else if (v && strcmp(v, "vae") == 0) cfg->quantize_mode = TEXTOK_QUANT_VAE;
    else if (v && strcmp(v, "none") == 0) cfg->quantize_mode = TEXTOK_QUANT_NONE;
    else return textok__fail(TEXTOK_ERR_FORMAT, "%s: __metadata__ 'quantize_mode' must be \"vq\", \"vae\" or \"none\"", st->path);
    v = textok_st_meta(st, "arch");   /* absent in files from 0.3: TiTok */
    if (!v || strcmp(v, "titok") == 0) cfg->arch = TEXTOK_ARCH_TITOK;
    else if (strcmp(v, "textok") == 0) cfg->arch = TEXTOK_ARCH_TEXTOK;
    else return textok__fail(TEXTOK_ERR_FORMAT, "%s: __metadata__ 'arch' = \"%.40s\" is neither \"titok\" nor \"textok\"", st->path, v);
    if (cfg->is_legacy) {
        const char *p = textok_st_meta(st, "pixel_channel_mult");
        int l = 0;
        if (!p) return textok__fail(TEXTOK_ERR_FORMAT, "%s: __metadata__ lacks 'pixel_channel_mult'", st->path);
        while (*p) {
            char num[16];
            size_t len = strcspn(p, ",");
            if (l >= TEXTOK_MAX_LEVELS || len == 0 || len >= sizeof num)
                return textok__fail(TEXTOK_ERR_FORMAT, "%s: __metadata__ 'pixel_channel_mult' is not a list of at most %d integers",
                                    st->path, TEXTOK_MAX_LEVELS);
            memcpy(num, p, len); num[len] = 0;
            if (!textok__parse_int(num, &cfg->pixel_channel_mult[l++]))
                return textok__fail(TEXTOK_ERR_FORMAT, "%s: __metadata__ 'pixel_channel_mult' entry \"%s\" is not an integer", st->path, num);
            p += len;
            if (*p == ',') p++;
        }
        if (l != cfg->pixel_num_levels)
            return textok__fail(TEXTOK_ERR_FORMAT, "%s: __metadata__ 'pixel_channel_mult' has %d entries but pixel_num_levels is %d",
                                st->path, l, cfg->pixel_num_levels);
    }
    if (textok_titok_config_check(cfg) != TEXTOK_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", textok_last_error());
        return textok__fail(TEXTOK_ERR_SHAPE, "%s: %s", st->path, msg);
    }
    return TEXTOK_OK;
}

TEXTOKDEF int textok_titok_config_to_meta(const textok_titok_config *cfg, const char **kv, int max_pairs,
                                          char *buf, size_t buf_size)
{
    int n = 0, i, l;
    size_t used = 0;
#define TEXTOK__PUT(key, ...) do {                                                       \
        int w_;                                                                          \
        if (n >= max_pairs) return textok__fail(TEXTOK_ERR_ARG, "textok_titok_config_to_meta: more than %d pairs", max_pairs); \
        w_ = snprintf(buf + used, buf_size - used, __VA_ARGS__);                          \
        if (w_ < 0 || (size_t)w_ + 1 > buf_size - used)                                  \
            return textok__fail(TEXTOK_ERR_ARG, "textok_titok_config_to_meta: buffer of %lu bytes too small", (unsigned long)buf_size); \
        kv[2 * n] = (key); kv[2 * n + 1] = buf + used; used += (size_t)w_ + 1; n++;       \
    } while (0)
    if (!cfg || !kv || !buf) return textok__fail(TEXTOK_ERR_ARG, "textok_titok_config_to_meta: NULL argument");
    TEXTOK__PUT("textok.model", "titok");
    for (i = 0; i < TEXTOK__N_CFG_FIELDS; i++)
        TEXTOK__PUT(textok__cfg_fields[i].key, "%d", *(const int *)((const char *)cfg + textok__cfg_fields[i].offset));
    TEXTOK__PUT("quantize_mode", "%s", cfg->quantize_mode == TEXTOK_QUANT_VAE ? "vae" : cfg->quantize_mode == TEXTOK_QUANT_NONE ? "none" : "vq");
    TEXTOK__PUT("arch", "%s", cfg->arch == TEXTOK_ARCH_TEXTOK ? "textok" : "titok");
    if (cfg->is_legacy) {
        char list[TEXTOK_MAX_LEVELS * 12] = "";
        size_t len = 0;
        for (l = 0; l < cfg->pixel_num_levels && l < TEXTOK_MAX_LEVELS; l++)
            len += (size_t)snprintf(list + len, sizeof list - len, l ? ",%d" : "%d", cfg->pixel_channel_mult[l]);
        TEXTOK__PUT("pixel_channel_mult", "%s", list);
    }
#undef TEXTOK__PUT
    return n;
}

#define TEXTOK__SLOT(m, field) ((m) ? &(m)->field : (float **)NULL)

static void textok__walk_vit(textok__walk *w, textok__vit *v, const char *pre, int D, int L, int M)
{
    int i;
    textok__wt(w, v ? &v->ln_pre_w : NULL, 1, D, 0, 0, 0, "%s.ln_pre.weight", pre);
    textok__wt(w, v ? &v->ln_pre_b : NULL, 1, D, 0, 0, 0, "%s.ln_pre.bias", pre);
    for (i = 0; i < L; i++) {
        textok__vit_block *b = v ? &v->blocks[i] : NULL;
        textok__wt(w, b ? &b->ln1_w : NULL, 1, D, 0, 0, 0, "%s.transformer.%d.ln_1.weight", pre, i);
        textok__wt(w, b ? &b->ln1_b : NULL, 1, D, 0, 0, 0, "%s.transformer.%d.ln_1.bias", pre, i);
        textok__wt(w, b ? &b->qkv_w : NULL, 2, 3 * (int64_t)D, D, 0, 0, "%s.transformer.%d.attn.in_proj_weight", pre, i);
        textok__wt(w, b ? &b->qkv_b : NULL, 1, 3 * (int64_t)D, 0, 0, 0, "%s.transformer.%d.attn.in_proj_bias", pre, i);
        textok__wt(w, b ? &b->proj_w : NULL, 2, D, D, 0, 0, "%s.transformer.%d.attn.out_proj.weight", pre, i);
        textok__wt(w, b ? &b->proj_b : NULL, 1, D, 0, 0, 0, "%s.transformer.%d.attn.out_proj.bias", pre, i);
        textok__wt(w, b ? &b->ln2_w : NULL, 1, D, 0, 0, 0, "%s.transformer.%d.ln_2.weight", pre, i);
        textok__wt(w, b ? &b->ln2_b : NULL, 1, D, 0, 0, 0, "%s.transformer.%d.ln_2.bias", pre, i);
        textok__wt(w, b ? &b->fc_w : NULL, 2, M, D, 0, 0, "%s.transformer.%d.mlp.c_fc.weight", pre, i);
        textok__wt(w, b ? &b->fc_b : NULL, 1, M, 0, 0, 0, "%s.transformer.%d.mlp.c_fc.bias", pre, i);
        textok__wt(w, b ? &b->fc2_w : NULL, 2, D, M, 0, 0, "%s.transformer.%d.mlp.c_proj.weight", pre, i);
        textok__wt(w, b ? &b->fc2_b : NULL, 1, D, 0, 0, 0, "%s.transformer.%d.mlp.c_proj.bias", pre, i);
    }
    textok__wt(w, v ? &v->ln_post_w : NULL, 1, D, 0, 0, 0, "%s.ln_post.weight", pre);
    textok__wt(w, v ? &v->ln_post_b : NULL, 1, D, 0, 0, 0, "%s.ln_post.bias", pre);
}

static void textok__walk_resblock(textok__walk *w, textok__resblock *r, const char *name, int cin, int cout)
{
    if (r) { r->cin = cin; r->cout = cout; r->nin_w = NULL; }
    textok__wt(w, r ? &r->norm1_w : NULL, 1, cin, 0, 0, 0, "pixel_decoder.%s.norm1.weight", name);
    textok__wt(w, r ? &r->norm1_b : NULL, 1, cin, 0, 0, 0, "pixel_decoder.%s.norm1.bias", name);
    textok__wt(w, r ? &r->conv1_w : NULL, 4, cout, cin, 3, 3, "pixel_decoder.%s.conv1.weight", name);
    textok__wt(w, r ? &r->norm2_w : NULL, 1, cout, 0, 0, 0, "pixel_decoder.%s.norm2.weight", name);
    textok__wt(w, r ? &r->norm2_b : NULL, 1, cout, 0, 0, 0, "pixel_decoder.%s.norm2.bias", name);
    textok__wt(w, r ? &r->conv2_w : NULL, 4, cout, cout, 3, 3, "pixel_decoder.%s.conv2.weight", name);
    if (cin != cout)
        textok__wt(w, r ? &r->nin_w : NULL, 4, cout, cout, 1, 1, "pixel_decoder.%s.nin_shortcut.weight", name);
}

static void textok__titok_walk(const textok_titok_config *c, textok_titok *m, textok__walk *w)
{
    const int K = c->num_latent_tokens, C = c->token_size, p = c->patch_size;
    const int P = (c->image_size / p) * (c->image_size / p), De = c->enc_width, Dd = c->dec_width;
    const int Cq = c->quantize_mode == TEXTOK_QUANT_VAE ? 2 * C : C, Dt = c->text_dim, Lt = c->text_len;
    const int titok = c->arch == TEXTOK_ARCH_TITOK;   /* textok: no class tokens, mask token or 3x3 conv_out */
    textok__wt(w, TEXTOK__SLOT(m, latent_tokens), 2, K, De, 0, 0, "latent_tokens");
    if (titok) textok__wt(w, TEXTOK__SLOT(m, enc.cls), 2, 1, De, 0, 0, "encoder.class_embedding");
    textok__wt(w, TEXTOK__SLOT(m, enc.pos), 2, titok + (int64_t)P, De, 0, 0, "encoder.positional_embedding");
    textok__wt(w, TEXTOK__SLOT(m, enc.latent_pos), 2, K, De, 0, 0, "encoder.latent_token_positional_embedding");
    if (c->text_in_encoder)
        textok__wt(w, TEXTOK__SLOT(m, enc.text_pos), 2, Lt, De, 0, 0, "encoder.text_guidance_positional_embedding");
    textok__wt(w, TEXTOK__SLOT(m, enc.patch_w), 4, De, 3, p, p, "encoder.patch_embed.weight");
    textok__wt(w, TEXTOK__SLOT(m, enc.patch_b), 1, De, 0, 0, 0, "encoder.patch_embed.bias");
    textok__walk_vit(w, m ? &m->enc.vit : NULL, "encoder", De, c->enc_layers, c->enc_mlp);
    textok__wt(w, TEXTOK__SLOT(m, enc.out_w), 4, Cq, De, 1, 1, "encoder.conv_out.weight");
    textok__wt(w, TEXTOK__SLOT(m, enc.out_b), 1, Cq, 0, 0, 0, "encoder.conv_out.bias");
    if (c->text_in_encoder) {
        textok__wt(w, TEXTOK__SLOT(m, enc.text_w), 2, De, Dt, 0, 0, "encoder.text_guidance_proj.weight");
        textok__wt(w, TEXTOK__SLOT(m, enc.text_b), 1, De, 0, 0, 0, "encoder.text_guidance_proj.bias");
    }

    if (titok) textok__wt(w, TEXTOK__SLOT(m, dec.cls), 2, 1, Dd, 0, 0, "decoder.class_embedding");
    textok__wt(w, TEXTOK__SLOT(m, dec.pos), 2, titok + (int64_t)P, Dd, 0, 0, "decoder.positional_embedding");
    if (titok) textok__wt(w, TEXTOK__SLOT(m, dec.mask_token), 3, 1, 1, Dd, 0, "decoder.mask_token");
    textok__wt(w, TEXTOK__SLOT(m, dec.latent_pos), 2, K, Dd, 0, 0, "decoder.latent_token_positional_embedding");
    if (c->text_in_decoder)
        textok__wt(w, TEXTOK__SLOT(m, dec.text_pos), 2, Lt, Dd, 0, 0, "decoder.text_guidance_positional_embedding");
    textok__wt(w, TEXTOK__SLOT(m, dec.embed_w), 2, Dd, C, 0, 0, "decoder.decoder_embed.weight");
    textok__wt(w, TEXTOK__SLOT(m, dec.embed_b), 1, Dd, 0, 0, 0, "decoder.decoder_embed.bias");
    textok__walk_vit(w, m ? &m->dec.vit : NULL, "decoder", Dd, c->dec_layers, c->dec_mlp);
    if (c->is_legacy) {
        textok__wt(w, TEXTOK__SLOT(m, dec.ffn0_w), 4, 2 * (int64_t)Dd, Dd, 1, 1, "decoder.ffn.0.weight");
        textok__wt(w, TEXTOK__SLOT(m, dec.ffn0_b), 1, 2 * (int64_t)Dd, 0, 0, 0, "decoder.ffn.0.bias");
        textok__wt(w, TEXTOK__SLOT(m, dec.ffn2_w), 4, c->pixel_codebook_size, 2 * (int64_t)Dd, 1, 1, "decoder.ffn.2.weight");
        textok__wt(w, TEXTOK__SLOT(m, dec.ffn2_b), 1, c->pixel_codebook_size, 0, 0, 0, "decoder.ffn.2.bias");
    } else {
        textok__wt(w, TEXTOK__SLOT(m, dec.ffn0_w), 4, (int64_t)p * p * 3, Dd, 1, 1, "decoder.ffn.0.weight");
        textok__wt(w, TEXTOK__SLOT(m, dec.ffn0_b), 1, (int64_t)p * p * 3, 0, 0, 0, "decoder.ffn.0.bias");
        if (titok) {
            textok__wt(w, TEXTOK__SLOT(m, dec.out_w), 4, 3, 3, 3, 3, "decoder.conv_out.weight");
            textok__wt(w, TEXTOK__SLOT(m, dec.out_b), 1, 3, 0, 0, 0, "decoder.conv_out.bias");
        }
    }
    if (c->text_in_decoder) {   /* TA-TiTok registers these last in its decoder */
        textok__wt(w, TEXTOK__SLOT(m, dec.text_w), 2, Dd, Dt, 0, 0, "decoder.text_guidance_proj.weight");
        textok__wt(w, TEXTOK__SLOT(m, dec.text_b), 1, Dd, 0, 0, 0, "decoder.text_guidance_proj.bias");
    }
    if (c->quantize_mode == TEXTOK_QUANT_VQ)
        textok__wt(w, TEXTOK__SLOT(m, codebook), 2, c->codebook_size, C, 0, 0, "quantize.embedding.weight");
    if (c->is_legacy) {
        const int levels = c->pixel_num_levels, nb = c->pixel_res_blocks, top = textok__pix_ch(c, levels - 1);
        textok__pixel_decoder *px = m ? &m->pix : NULL;
        char name[48];
        int l, j, cin;
        textok__wt(w, TEXTOK__SLOT(m, pix.codebook), 2, c->pixel_codebook_size, c->pixel_z_channels, 0, 0, "pixel_quantize.embedding.weight");
        textok__wt(w, TEXTOK__SLOT(m, pix.conv_in_w), 4, top, c->pixel_z_channels, 3, 3, "pixel_decoder.conv_in.weight");
        textok__wt(w, TEXTOK__SLOT(m, pix.conv_in_b), 1, top, 0, 0, 0, "pixel_decoder.conv_in.bias");
        /* mid holds pixel_res_blocks blocks (2 in every published config) */
        for (j = 0; j < nb; j++) {
            snprintf(name, sizeof name, "mid.%d", j);
            textok__walk_resblock(w, px ? &px->mid[j] : NULL, name, top, top);
        }
        cin = top;
        for (l = levels - 1; l >= 0; l--) {   /* forward order; names keep the index l */
            int cout = textok__pix_ch(c, l);
            for (j = 0; j < nb; j++) {
                snprintf(name, sizeof name, "up.%d.block.%d", l, j);
                textok__walk_resblock(w, px ? &px->up[l * nb + j] : NULL, name, cin, cout);
                cin = cout;
            }
            if (l > 0) {
                textok__wt(w, px ? &px->upsample_w[l] : NULL, 4, cout, cout, 3, 3, "pixel_decoder.up.%d.upsample_conv.weight", l);
                textok__wt(w, px ? &px->upsample_b[l] : NULL, 1, cout, 0, 0, 0, "pixel_decoder.up.%d.upsample_conv.bias", l);
            }
        }
        textok__wt(w, TEXTOK__SLOT(m, pix.norm_out_w), 1, cin, 0, 0, 0, "pixel_decoder.norm_out.weight");
        textok__wt(w, TEXTOK__SLOT(m, pix.norm_out_b), 1, cin, 0, 0, 0, "pixel_decoder.norm_out.bias");
        textok__wt(w, TEXTOK__SLOT(m, pix.conv_out_w), 4, 3, cin, 3, 3, "pixel_decoder.conv_out.weight");
        textok__wt(w, TEXTOK__SLOT(m, pix.conv_out_b), 1, 3, 0, 0, 0, "pixel_decoder.conv_out.bias");
    }
}
#undef TEXTOK__SLOT

TEXTOKDEF int textok_titok_tensor_specs(const textok_titok_config *cfg, textok_tensor_spec *specs, int max_specs)
{
    textok__walk w;
    int st;
    if ((st = textok_titok_config_check(cfg)) != TEXTOK_OK) return st;
    memset(&w, 0, sizeof w);
    w.specs = specs;
    w.max_specs = specs ? max_specs : 0;
    textok__titok_walk(cfg, NULL, &w);
    if (w.overflow) return textok__fail(TEXTOK_ERR_SHAPE, "TiTok config: parameter count overflows size_t");
    return w.n;
}

/* ----- loading ------------------------------------------------------------------------------ */
TEXTOKDEF textok_params textok_default_params(void)
{
    textok_params p;
    p.n_threads = 0;
    p.max_batch = 1;
    p.kernels = NULL;
    return p;
}

/* Host arrays of the per-block pointer structs (sizes from the config). */
static int textok__titok_host_arrays(textok_titok *m)
{
    const textok_titok_config *c = &m->cfg;
    size_t nb_levels = c->is_legacy ? (size_t)c->pixel_num_levels : 0, nb = c->is_legacy ? (size_t)c->pixel_res_blocks : 0;
    size_t bytes = (size_t)(c->enc_layers + c->dec_layers) * sizeof(textok__vit_block)
                 + (nb + nb_levels * nb) * sizeof(textok__resblock) + 2 * nb_levels * sizeof(float *)
                 + (size_t)m->max_batch * (size_t)(m->Te > m->Td ? m->Te : m->Td);
    unsigned char *p = (unsigned char *)textok__calloc(1, bytes);
    if (!p) return textok__fail(TEXTOK_ERR_NOMEM, "TiTok: out of memory for %lu bytes of layer tables", (unsigned long)bytes);
    m->host_arrays = p;
    m->enc.vit.blocks = (textok__vit_block *)p;            p += (size_t)c->enc_layers * sizeof(textok__vit_block);
    m->dec.vit.blocks = (textok__vit_block *)p;            p += (size_t)c->dec_layers * sizeof(textok__vit_block);
    m->pix.mid = (textok__resblock *)p;                    p += nb * sizeof(textok__resblock);
    m->pix.up = (textok__resblock *)p;                     p += nb_levels * nb * sizeof(textok__resblock);
    m->pix.upsample_w = (float **)p;                       p += nb_levels * sizeof(float *);
    m->pix.upsample_b = (float **)p;                       p += nb_levels * sizeof(float *);
    m->hmask = p;
    m->enc.vit.D = c->enc_width; m->enc.vit.L = c->enc_layers; m->enc.vit.H = c->enc_heads; m->enc.vit.M = c->enc_mlp;
    m->dec.vit.D = c->dec_width; m->dec.vit.L = c->dec_layers; m->dec.vit.H = c->dec_heads; m->dec.vit.M = c->dec_mlp;
    return TEXTOK_OK;
}

static void textok__titok_carve(textok_titok *m, textok__carve *a)
{
    const textok_titok_config *c = &m->cfg;
    const size_t B = (size_t)m->max_batch, T = (size_t)(m->Te > m->Td ? m->Te : m->Td), P = (size_t)m->P;
    const size_t K = (size_t)c->num_latent_tokens;
    const size_t S = (size_t)c->image_size, p = (size_t)c->patch_size, C = (size_t)c->token_size;
    const size_t Dmax = textok__max2((size_t)c->enc_width, (size_t)c->dec_width);
    const size_t Mmax = textok__max2((size_t)c->enc_mlp, (size_t)c->dec_mlp);
    const size_t Hmax = textok__max2((size_t)c->enc_heads, (size_t)c->dec_heads);
    textok_attention_dims ad;
    textok_conv2d_dims cd;
    size_t conv_work, head1;
    int *o = &a->overflow;
    ad.B = (int)B; ad.Tq = ad.Tk = (int)T; ad.C = (int)Dmax; ad.H = (int)Hmax; ad.scale = 1.0f;
    m->text = c->text_len ? textok__take(a, textok__mul3(B, (size_t)c->text_len, (size_t)c->text_dim, o)) : NULL;
    m->kmask_e = m->Lte ? (unsigned char *)(void *)textok__take(a, (B * (size_t)m->Te + 3) / 4) : NULL;
    m->kmask_d = m->Ltd ? (unsigned char *)(void *)textok__take(a, (B * (size_t)m->Td + 3) / 4) : NULL;
    m->vit.seq = textok__take(a, textok__mul3(B, T, Dmax, o));
    m->vit.x   = textok__take(a, textok__mul3(B, T, Dmax, o));
    m->vit.ln  = textok__take(a, textok__mul3(B, T, Dmax, o));
    m->vit.q   = textok__take(a, textok__mul3(B, T, Dmax, o));
    m->vit.k   = textok__take(a, textok__mul3(B, T, Dmax, o));
    m->vit.v   = textok__take(a, textok__mul3(B, T, Dmax, o));
    m->vit.att = textok__take(a, textok__mul3(B, T, Dmax, o));
    m->vit.mlp = textok__take(a, textok__mul3(B, T, Mmax, o));
    m->vit.lse = textok__take(a, textok__mul3(B, Hmax, T, o));
    m->vit.work = textok__take(a, textok_attention_work_floats(&ad));
    m->img     = textok__take(a, textok__mul3(B, 3, S * S, o));
    m->img2    = c->is_legacy || c->arch == TEXTOK_ARCH_TEXTOK ? NULL : textok__take(a, textok__mul3(B, 3, S * S, o));
    m->patches = textok__take(a, textok__mul3(B, (size_t)c->enc_width, P, o));
    m->lat     = textok__take(a, textok__mul3(B, K, Dmax, o));
    m->zt      = textok__take(a, textok__mul3(B, K, 2 * C, o));
    m->zq      = textok__take(a, textok__mul3(B, K, C, o));
    m->zoff    = textok__take(a, textok__mul3(B, K, 2 * C, o));
    m->noise   = textok__take(a, textok__mul3(B, K, C, o));
    m->ids     = (int32_t *)(void *)textok__take(a, B * K);
    m->cb_work = c->quantize_mode == TEXTOK_QUANT_VQ
               ? textok__take(a, textok_codebook_work_floats((int)(B * K), c->codebook_size, (int)C)) : NULL;
    m->dec_out = textok__take(a, textok__mul3(B, P, (size_t)c->dec_width, o));
    head1 = c->is_legacy ? 2 * (size_t)c->dec_width : p * p * 3;
    m->head1   = textok__take(a, textok__mul3(B, P, head1, o));
    /* the patch embedding is a stride-p conv; the non-legacy head ends with a 3x3 conv at S x S */
    cd.B = 1; cd.C = 3; cd.H = cd.W = (int)S; cd.OC = c->enc_width; cd.KH = cd.KW = (int)p; cd.stride = (int)p; cd.pad = 0;
    conv_work = textok_conv2d_work_floats(&cd);
    cd.OC = 3; cd.KH = cd.KW = 3; cd.stride = 1; cd.pad = 1;
    conv_work = textok__max2(conv_work, textok_conv2d_work_floats(&cd));
    if (c->is_legacy) {
        /* walk the pixel decoder's stages for its largest activation and largest conv */
        size_t act = 0, hw = P;
        int l, top = textok__pix_ch(c, c->pixel_num_levels - 1), cin = top;
        m->logits = textok__take(a, textok__mul3(B, P, (size_t)c->pixel_codebook_size, o));
        m->codes  = textok__take(a, textok__mul3(B, P, (size_t)c->pixel_z_channels, o));
        int g = (int)(S / p);
        act = textok__max2((size_t)c->pixel_z_channels, (size_t)top) * hw;
        conv_work = textok__max2(conv_work, textok__conv_same_work(c->pixel_z_channels, g, top, 3));
        conv_work = textok__max2(conv_work, textok__conv_same_work(top, g, top, 3));   /* mid blocks */
        for (l = c->pixel_num_levels - 1; l >= 0; l--) {
            int cout = textok__pix_ch(c, l);
            act = textok__max2(act, textok__max2((size_t)cin, (size_t)cout) * hw);
            conv_work = textok__max2(conv_work, textok__conv_same_work(cin, g, cout, 3));
            conv_work = textok__max2(conv_work, textok__conv_same_work(cout, g, cout, 3));
            cin = cout;
            if (l > 0) {
                hw *= 4; g *= 2;
                act = textok__max2(act, (size_t)cout * hw);
                conv_work = textok__max2(conv_work, textok__conv_same_work(cout, g, cout, 3));
            }
        }
        conv_work = textok__max2(conv_work, textok__conv_same_work(cin, g, 3, 3));   /* conv_out */
        m->pixa.x = textok__take(a, textok__mul3(B, act, 1, o));
        m->pixa.t = textok__take(a, textok__mul3(B, act, 1, o));
        m->pixa.h = textok__take(a, textok__mul3(B, act, 1, o));
    }
    m->conv_work = m->pixa.work = textok__take(a, conv_work);
}

/* Constants computed from the parameters (after loading; again after any parameter update). */
static int textok__titok_derive(textok_titok *m)
{
    const textok_kernels *k = &m->k;
    const textok_titok_config *c = &m->cfg;
    const int Dd = c->dec_width;
    int p;
    /* titok: the single learned mask token, repeated over the P mask positions, plus their
       positions; textok: the learnable patch tokens themselves */
    if (c->arch == TEXTOK_ARCH_TEXTOK)
        k->copy(k, m->dec_mask_seq, m->dec.pos, (size_t)m->P * Dd * sizeof(float));
    else
        for (p = 0; p < m->P; p++)
            k->add_forward(k, m->dec_mask_seq + (size_t)p * Dd, m->dec.mask_token, m->dec.pos + (size_t)(1 + p) * Dd, (size_t)Dd);
    if (c->quantize_mode == TEXTOK_QUANT_VQ) {
        if (c->use_l2_norm)
            k->l2norm_forward(k, m->codebook_lookup, m->codebook, c->codebook_size, c->token_size, 1e-12f);
        else
            m->codebook_lookup = m->codebook;
    }
    return TEXTOK_OK;
}

TEXTOKDEF void textok_titok_free(textok_titok *m)
{
    if (!m) return;
    if (m->params) m->k.free(&m->k, m->params);
    if (m->derived) m->k.free(&m->k, m->derived);
    if (m->arena) m->k.free(&m->k, m->arena);
    TEXTOK_FREE(m->host_arrays);
    TEXTOK_FREE(m);
}

/* Allocate a model for cfg: host tables, the parameter block (bound, not filled) and the tensor
   specs. The caller fills the parameters, then calls textok__titok_finish. */
static int textok__titok_new(textok_titok **out, const textok_titok_config *cfg, const textok_params *params,
                             textok_tensor_spec **specs_out, int *n_specs_out)
{
    textok_params prm = params ? *params : textok_default_params();
    textok_titok *m;
    textok__walk w;
    int n_specs, status;
    *out = NULL;
    if (prm.max_batch < 1 || prm.max_batch > 4096)
        return textok__fail(TEXTOK_ERR_ARG, "TiTok: max_batch %d not in [1, 4096]", prm.max_batch);
    if ((n_specs = textok_titok_tensor_specs(cfg, NULL, 0)) < 0) return n_specs;
    m = (textok_titok *)textok__calloc(1, sizeof *m);
    if (!m) return textok__fail(TEXTOK_ERR_NOMEM, "TiTok: out of memory");
    m->cfg = *cfg;
    m->k = prm.kernels ? *prm.kernels : textok_cpu_kernels(prm.n_threads);
    m->max_batch = prm.max_batch;
    m->P = (cfg->image_size / cfg->patch_size) * (cfg->image_size / cfg->patch_size);
    m->ncls = cfg->arch == TEXTOK_ARCH_TITOK;
    m->Lte = cfg->text_in_encoder ? cfg->text_len : 0;
    m->Ltd = cfg->text_in_decoder ? cfg->text_len : 0;
    m->Te = m->ncls + m->P + cfg->num_latent_tokens + m->Lte;
    m->Td = m->ncls + m->P + cfg->num_latent_tokens + m->Ltd;
    m->Cq = cfg->quantize_mode == TEXTOK_QUANT_VAE ? 2 * cfg->token_size : cfg->token_size;
    if ((status = textok__titok_host_arrays(m)) != TEXTOK_OK) { textok_titok_free(m); return status; }
    {   /* size the activation arena first: a config it cannot serve fails before any loading */
        textok__carve a;
        memset(&a, 0, sizeof a);
        textok__titok_carve(m, &a);
        if (a.overflow) {
            textok_titok_free(m);
            return textok__fail(TEXTOK_ERR_SHAPE, "TiTok: an activation buffer would exceed INT_MAX floats (image_size %d, patch_size %d, max_batch %d)",
                                cfg->image_size, cfg->patch_size, prm.max_batch);
        }
        m->arena_floats = a.used;
    }
    *specs_out = (textok_tensor_spec *)textok__calloc((size_t)n_specs, sizeof **specs_out);
    if (!*specs_out) { textok_titok_free(m); return textok__fail(TEXTOK_ERR_NOMEM, "TiTok: out of memory"); }
    textok_titok_tensor_specs(cfg, *specs_out, n_specs);
    *n_specs_out = n_specs;
    memset(&w, 0, sizeof w);
    textok__titok_walk(&m->cfg, m, &w);
    m->n_params = w.offset;
    m->params = (float *)m->k.alloc(&m->k, w.offset * sizeof(float));
    if (!m->params) {
        TEXTOK_FREE(*specs_out); *specs_out = NULL;
        textok_titok_free(m);
        return textok__fail(TEXTOK_ERR_NOMEM, "TiTok: cannot allocate %lu parameters", (unsigned long)w.offset);
    }
    memset(&w, 0, sizeof w);
    w.base = m->params;
    textok__titok_walk(&m->cfg, m, &w);
    *out = m;
    return TEXTOK_OK;
}

/* Derived constants and the activation arena, once the parameters are in place. */
static int textok__titok_finish(textok_titok *m)
{
    textok__carve a;
    size_t n_derived = (size_t)m->cfg.dec_width * m->P
                     + (m->cfg.quantize_mode == TEXTOK_QUANT_VQ && m->cfg.use_l2_norm ? (size_t)m->cfg.codebook_size * m->cfg.token_size : 0);
    m->derived = (float *)m->k.alloc(&m->k, n_derived * sizeof(float));
    if (!m->derived) return textok__fail(TEXTOK_ERR_NOMEM, "TiTok: out of memory");
    m->dec_mask_seq = m->derived;
    m->codebook_lookup = m->dec_mask_seq + (size_t)m->P * m->cfg.dec_width;
    textok__titok_derive(m);
    m->arena = (float *)m->k.alloc(&m->k, m->arena_floats * sizeof(float));
    if (!m->arena)
        return textok__fail(TEXTOK_ERR_NOMEM, "TiTok: cannot allocate %lu MB of activations for max_batch %d",
                            (unsigned long)(m->arena_floats * sizeof(float) >> 20), m->max_batch);
    memset(&a, 0, sizeof a);
    a.base = m->arena;
    textok__titok_carve(m, &a);
    return TEXTOK_OK;
}

TEXTOKDEF int textok_titok_load_st(textok_titok **out, const textok_safetensors *st,
                                  const textok_titok_config *cfg, const textok_params *params)
{
    textok_titok_config file_cfg;
    textok_titok *m = NULL;
    textok_tensor_spec *specs = NULL;
    float *stage = NULL;
    size_t max_numel = 0, offset = 0;
    int i, n_specs = 0, status;
    if (!out || !st) return textok__fail(TEXTOK_ERR_ARG, "textok_titok_load: NULL argument");
    *out = NULL;
    if (!cfg) {
        const char *kind = textok_st_meta(st, "textok.model");
        if (kind && !strcmp(kind, "titok-trainer"))
            return textok__fail(TEXTOK_ERR_FORMAT, "%s: a training checkpoint, not a model file; export the weights with "
                                "textok_trainer_save_model (build/train_tokenizer --export)", st->path);
        if ((status = textok_titok_config_from_meta(&file_cfg, st)) != TEXTOK_OK) return status;
        cfg = &file_cfg;
    }
    if (cfg == &file_cfg &&   /* a config the file claims; the caller's own is trusted */
        (status = textok__st_precheck(st, textok_titok_tensor_specs(cfg, NULL, 0), textok__fill_titok, cfg, "TiTok")) != TEXTOK_OK) return status;
    if ((status = textok__titok_new(&m, cfg, params, &specs, &n_specs)) != TEXTOK_OK) return status;
    /* the file must hold exactly the expected tensors: an extra one means a different model */
    for (i = 0; i < st->n_tensors; i++) {
        int j, found = 0;
        for (j = 0; j < n_specs && !found; j++) found = strcmp(st->tensors[i].name, specs[j].name) == 0;
        if (!found) { status = textok__fail(TEXTOK_ERR_SHAPE, "%s: unexpected tensor '%.120s' for this TiTok config", st->path, st->tensors[i].name); goto fail; }
    }
    for (i = 0; i < n_specs; i++)
        if (textok__spec_numel(&specs[i]) > max_numel) max_numel = textok__spec_numel(&specs[i]);
    stage = (float *)textok__malloc(max_numel * sizeof(float));
    if (!stage) { status = textok__fail(TEXTOK_ERR_NOMEM, "textok_titok_load: out of memory"); goto fail; }
    /* through a host staging buffer: the parameter block belongs to the table (maybe a GPU) */
    for (i = 0; i < n_specs; i++) {
        size_t numel = textok__spec_numel(&specs[i]);
        if ((status = textok_st_load(st, specs[i].name, specs[i].ndim, specs[i].shape, stage)) != TEXTOK_OK) goto fail;
        if ((status = m->k.to_device(&m->k, m->params + offset, stage, numel * sizeof(float))) != TEXTOK_OK) goto fail;
        offset += numel;
    }
    if ((status = textok__titok_finish(m)) != TEXTOK_OK) goto fail;
    TEXTOK_FREE(stage);
    TEXTOK_FREE(specs);
    *out = m;
    return TEXTOK_OK;
fail:
    TEXTOK_FREE(stage);
    TEXTOK_FREE(specs);
    textok_titok_free(m);
    return status;
}

/* Fresh weights as TiTok._init_weights (architecture.md 1.2): Linear/Conv weights N(0, 0.02)
   (torch truncates at +-2 std, i.e. +-0.04; we redraw beyond that), biases 0, LN/GN weight 1,
   class/positional/latent/mask embeddings D^-0.5 N(0,1), codebooks U(-1/V, 1/V). */
static int textok__ends(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

TEXTOKDEF int textok_titok_create(textok_titok **out, const textok_titok_config *cfg, const textok_params *params,
                                  uint64_t seed)
{
    return textok_titok_create_std(out, cfg, params, seed, 0.02f);
}

TEXTOKDEF int textok_titok_create_std(textok_titok **out, const textok_titok_config *cfg, const textok_params *params,
                                      uint64_t seed, float std)
{
    textok_titok *m = NULL;
    textok_tensor_spec *specs = NULL;
    textok_rng rng;
    float *stage = NULL;
    size_t max_numel = 0, offset = 0, j;
    int i, n_specs = 0, status;
    if (!out || !cfg) return textok__fail(TEXTOK_ERR_ARG, "textok_titok_create: NULL argument");
    if (!(std >= 0.0f && std <= 10.0f)) return textok__fail(TEXTOK_ERR_ARG, "textok_titok_create_std: std %g not in [0, 10]", (double)std);
    *out = NULL;
    if ((status = textok__titok_new(&m, cfg, params, &specs, &n_specs)) != TEXTOK_OK) return status;
    for (i = 0; i < n_specs; i++)
        if (textok__spec_numel(&specs[i]) > max_numel) max_numel = textok__spec_numel(&specs[i]);
    stage = (float *)textok__malloc(max_numel * sizeof(float));
    if (!stage) { status = textok__fail(TEXTOK_ERR_NOMEM, "textok_titok_create: out of memory"); goto fail; }
    textok_rng_seed(&rng, seed);
    for (i = 0; i < n_specs; i++) {
        const char *nm = specs[i].name;
        size_t numel = textok__spec_numel(&specs[i]);
        int64_t last = specs[i].shape[specs[i].ndim - 1];
        if (textok__ends(nm, "embedding.weight")) {                 /* quantize, pixel_quantize */
            float v = 1.0f / (float)specs[i].shape[0];
            textok_rng_fill_uniform(&rng, stage, numel, -v, v);
        } else if (textok__ends(nm, "latent_tokens") || textok__ends(nm, "class_embedding") ||
                   textok__ends(nm, "positional_embedding") || textok__ends(nm, "mask_token")) {
            textok_rng_fill_normal(&rng, stage, numel, 0.0f, (float)(1.0 / sqrt((double)last)));
        } else if (textok__ends(nm, ".bias") || textok__ends(nm, "in_proj_bias")) {
            memset(stage, 0, numel * sizeof(float));
        } else if (specs[i].ndim == 1) {                             /* LayerNorm / GroupNorm weight */
            for (j = 0; j < numel; j++) stage[j] = 1.0f;
        } else {
            double fan_in = 1.0;
            float sd;
            int d;
            for (d = 1; d < specs[i].ndim; d++) fan_in *= (double)specs[i].shape[d];
            sd = std > 0.0f ? std : (float)(1.0 / sqrt(fan_in));
            for (j = 0; j < numel; j++) {
                float x;
                do x = textok_rng_normal(&rng); while (x < -2.0f || x > 2.0f);
                stage[j] = sd * x;
            }
        }
        if ((status = m->k.to_device(&m->k, m->params + offset, stage, numel * sizeof(float))) != TEXTOK_OK) goto fail;
        offset += numel;
    }
    if ((status = textok__titok_finish(m)) != TEXTOK_OK) goto fail;
    TEXTOK_FREE(stage);
    TEXTOK_FREE(specs);
    *out = m;
    return TEXTOK_OK;
fail:
    TEXTOK_FREE(stage);
    TEXTOK_FREE(specs);
    textok_titok_free(m);
    return status;
}

#ifndef TEXTOK_NO_STDIO
TEXTOKDEF int textok_titok_load(textok_titok **model, const char *path, const textok_params *p)
{
    textok_safetensors st;
    int status;
    if (!model || !path) return textok__fail(TEXTOK_ERR_ARG, "textok_titok_load: NULL argument");
    *model = NULL;
    if ((status = textok_st_open(&st, path)) != TEXTOK_OK) return status;
    status = textok_titok_load_st(model, &st, NULL, p);
    textok_st_close(&st);
    return status;
}
#endif

TEXTOKDEF const textok_titok_config *textok_titok_get_config(const textok_titok *m) { return m ? &m->cfg : NULL; }
TEXTOKDEF size_t textok_titok_num_params(const textok_titok *m) { return m ? m->n_params : 0; }
TEXTOKDEF textok_titok_timing textok_titok_last_timing(const textok_titok *m)
{
    textok_titok_timing t;
    memset(&t, 0, sizeof t);
    return m ? m->timing : t;
}

/* ----- encode ------------------------------------------------------------------------------- */
/* B <= max_batch images in m->img (B, 3, S, S) -> m->zt (B, K, Cq) token-major and m->zoff
   (B, Cq, K), the official (B, Cq, 1, K) layout. Returns the FLOPs done. */
/* ----- the token layouts: each stack's input sequence, segment by segment --------------------
   Rows: [cls (titok)] [P patches or patch/mask tokens] [K latent/image tokens] [Lt text (when the
   stack sees text)]. The same functions assemble the sequence for inference and for training. */

/* A text segment: Lt rows = text_guidance_proj(text) + text_guidance_positional_embedding. */
static void textok__text_seg_forward(const textok_kernels *k, float *rows, const float *text, const float *w,
                                     const float *b, const float *pos, int Lt, int Dt, int D)
{
    textok__linear(k, rows, text, w, b, Lt, Dt, D);
    k->add_forward(k, rows, rows, pos, (size_t)Lt * D);
}

/* seq (B, Te, De) from the patch tokens tok (B, P, De) (patch_embed output, token-major) and
   text (B, Lt, Dt) */
static void textok__enc_seq_forward(const textok_titok *m, float *seq, const float *tok, const float *text, int B)
{
    const textok_kernels *k = &m->k;
    const int D = m->cfg.enc_width, P = m->P, K = m->cfg.num_latent_tokens, T = m->Te, c0 = m->ncls;
    int b;
    for (b = 0; b < B; b++) {
        float *s = seq + (size_t)b * T * D;
        if (c0) k->add_forward(k, s, m->enc.cls, m->enc.pos, (size_t)D);
        k->add_forward(k, s + (size_t)c0 * D, tok + (size_t)b * P * D, m->enc.pos + (size_t)c0 * D, (size_t)P * D);
        k->add_forward(k, s + (size_t)(c0 + P) * D, m->latent_tokens, m->enc.latent_pos, (size_t)K * D);
        if (m->Lte)
            textok__text_seg_forward(k, s + (size_t)(c0 + P + K) * D, text + (size_t)b * m->Lte * m->cfg.text_dim,
                                     m->enc.text_w, m->enc.text_b, m->enc.text_pos, m->Lte, m->cfg.text_dim, D);
    }
}

/* seq (B, Td, Dd) from the embedded tokens lat (B, K, Dd) = decoder_embed(z) and text */
static void textok__dec_seq_forward(const textok_titok *m, float *seq, const float *lat, const float *text, int B)
{
    const textok_kernels *k = &m->k;
    const int D = m->cfg.dec_width, P = m->P, K = m->cfg.num_latent_tokens, T = m->Td, c0 = m->ncls;
    int b;
    for (b = 0; b < B; b++) {
        float *s = seq + (size_t)b * T * D;
        if (c0) k->add_forward(k, s, m->dec.cls, m->dec.pos, (size_t)D);
        k->copy(k, s + (size_t)c0 * D, m->dec_mask_seq, (size_t)P * D * sizeof(float));
        k->add_forward(k, s + (size_t)(c0 + P) * D, lat + (size_t)b * K * D, m->dec.latent_pos, (size_t)K * D);
        if (m->Ltd)
            textok__text_seg_forward(k, s + (size_t)(c0 + P + K) * D, text + (size_t)b * m->Ltd * m->cfg.text_dim,
                                     m->dec.text_w, m->dec.text_b, m->dec.text_pos, m->Ltd, m->cfg.text_dim, D);
    }
}

/* The caller's text for images b0 .. b0+nb-1 -> dtext (nb, Lt, Dt) on the device, zero-padded
   past each caption's L rows, and the key masks (nb, T) of the stacks that see text: 1 for
   every non-text row, the caller's mask for the first L text rows, 0 for padding and for the
   images whose drop[b] is set (text dropout in training; drop may be NULL). need_e / need_d say
   which stacks run. A model that needs text and gets none fails, unless it is text_optional:
   then every text key is masked, which is exactly the sequence without its text segment. */
static int textok__titok_set_text(const textok_titok *m, float *dtext, unsigned char *kmask_e, unsigned char *kmask_d,
                                  const textok_text *text, int b0, int nb, const unsigned char *drop,
                                  int need_e, int need_d, const char *who)
{
    const textok_kernels *k = &m->k;
    const textok_titok_config *c = &m->cfg;
    const int Lt = c->text_len, Dt = c->text_dim, K = c->num_latent_tokens;
    const int have = text && text->emb;
    int b, j, s, st;
    need_e = need_e && m->Lte;
    need_d = need_d && m->Ltd;
    if (!need_e && !need_d) return TEXTOK_OK;
    if (!have && !c->text_optional)
        return textok__fail(TEXTOK_ERR_ARG, "%s: this model's %s was trained with text (text_dim %d, up to %d tokens) and it was "
                            "given none; pass the caption's embeddings (textok_text), e.g. from build/encode_text or --text-emb",
                            who, need_e ? "encoder" : "decoder", Dt, Lt);
    if (have && text->dim != Dt)
        return textok__fail(TEXTOK_ERR_SHAPE, "%s: the text embeddings are %d wide; this model was trained on %d-wide "
                            "embeddings (text_dim; e.g. 768 for CLIP ViT-L/14 and T5-base, 512 for T5-small)", who, text->dim, Dt);
    if (have && (text->L < 1 || text->L > Lt))
        return textok__fail(TEXTOK_ERR_SHAPE, "%s: the text has %d tokens; this model takes 1 to %d (text_len)", who, text->L, Lt);
    for (b = 0; b < nb; b++) {
        float *row = dtext + (size_t)b * Lt * Dt;
        int L = have ? text->L : 0;
        if (L) {
            st = k->to_device(k, row, text->emb + ((size_t)(b0 + b) * L) * Dt, (size_t)L * Dt * sizeof(float));
            if (st != TEXTOK_OK) return textok__fail_wrap(st, "a memory transfer failed");
        }
        if (L < Lt) k->fill(k, row + (size_t)L * Dt, (size_t)(Lt - L) * Dt, 0.0f);
    }
    for (s = 0; s < 2; s++) {
        const int T = s == 0 ? m->Te : m->Td, off = m->ncls + m->P + K;
        unsigned char *dst = s == 0 ? kmask_e : kmask_d;
        if (!(s == 0 ? need_e : need_d)) continue;
        for (b = 0; b < nb; b++) {
            unsigned char *h = m->hmask + (size_t)b * T;
            memset(h, 1, (size_t)off);
            for (j = 0; j < Lt; j++) {
                int real = have && j < text->L && !(drop && drop[b]);
                if (real && text->mask) real = text->mask[(size_t)(b0 + b) * text->L + j] != 0;
                h[off + j] = (unsigned char)real;
            }
        }
        st = k->to_device(k, dst, m->hmask, (size_t)nb * T);
        if (st != TEXTOK_OK) return textok__fail_wrap(st, "a memory transfer failed");
    }
    return TEXTOK_OK;
}

/* m->img (B, 3, S, S) and m->text -> m->zt (B, K, Cq) token-major and m->zoff (B, Cq, K) */
static double textok__titok_encoder(textok_titok *m, int B)
{
    const textok_kernels *k = &m->k;
    const textok_titok_config *c = &m->cfg;
    const int K = c->num_latent_tokens, D = c->enc_width, P = m->P, T = m->Te, Cq = m->Cq, p = c->patch_size;
    const int c0 = m->ncls;
    textok_conv2d_dims cd;
    int b;
    /* 1. patch_embed, a stride-p conv: (B, D, S/p, S/p), then tokens (B, P, D), patch index row*gs+col */
    cd.B = B; cd.C = 3; cd.H = cd.W = c->image_size; cd.OC = D; cd.KH = cd.KW = cd.stride = p; cd.pad = 0;
    k->conv2d_forward(k, m->patches, m->img, m->enc.patch_w, m->enc.patch_b, &cd, m->conv_work);
    k->transpose_forward(k, m->vit.ln, m->patches, B, D, P);
    /* 2. the sequence: [cls,] P patches, K latent tokens[, text], each segment with its positions */
    textok__enc_seq_forward(m, m->vit.seq, m->vit.ln, m->text, B);
    /* 3. ln_pre, the blocks, then ln_post on the K latent rows only */
    textok__vit_forward(k, &m->enc.vit, &m->vit, B, T, m->kmask_e);
    for (b = 0; b < B; b++)
        k->layernorm_forward(k, m->lat + (size_t)b * K * D, NULL, NULL, m->vit.x + ((size_t)b * T + c0 + P) * D,
                             m->enc.vit.ln_post_w, m->enc.vit.ln_post_b, K, D, 1e-5f);
    /* 4. conv_out (1x1, D -> Cq). Legacy checkpoints reshape the (K, D) ln_post output to (D, K)
       by REINTERPRETING its memory, not by transposing it (architecture.md 1.3 step 7): z'[c][k] =
       flat[c*K + k]. As a matmul, out^T (K, Cq) = z'^T . W^T, where z'^T is A with trans_a = 1
       over the flat buffer read as (D, K). Non-legacy models transpose for real, which is just
       the token-major Linear. */
    if (c->is_legacy) {
        textok_matmul_dims d;
        d.batch = 1; d.M = K; d.N = Cq; d.K = D; d.trans_a = 1; d.trans_b = 1;
        for (b = 0; b < B; b++)
            k->matmul_forward(k, m->zt + (size_t)b * K * Cq, m->lat + (size_t)b * K * D, m->enc.out_w, m->enc.out_b, &d);
    } else {
        textok__linear(k, m->zt, m->lat, m->enc.out_w, m->enc.out_b, B * K, D, Cq);
    }
    k->transpose_forward(k, m->zoff, m->zt, B, K, Cq);
    return 2.0 * B * P * D * 3.0 * p * p + textok__vit_flops(&m->enc.vit, B, T) + 2.0 * B * K * D * Cq
         + 2.0 * B * m->Lte * (double)c->text_dim * D;
}

/* ----- decode ------------------------------------------------------------------------------- */
/* MaskGIT-VQGAN decoder: m->pixa.x (B, Z, g, g) -> m->img (B, 3, S, S). Returns the FLOPs. */
static double textok__pixel_decoder_forward(textok_titok *m, int B)
{
    const textok_kernels *k = &m->k;
    const textok_titok_config *c = &m->cfg;
    const textok__pixel_decoder *px = &m->pix;
    const int nb = c->pixel_res_blocks, G = c->pixel_groups, top = textok__pix_ch(c, c->pixel_num_levels - 1);
    textok__pix_acts a = m->pixa;
    int H = c->image_size / c->patch_size, W = H, l, j, cin = top;
    double flops = 2.0 * B * top * c->pixel_z_channels * 9.0 * H * W;
    float *tmp;
    textok__conv_same(k, a.t, a.x, px->conv_in_w, px->conv_in_b, B, c->pixel_z_channels, H, W, top, 3, a.work);
    tmp = a.x; a.x = a.t; a.t = tmp;
    for (j = 0; j < nb; j++) textok__resblock_forward(k, &px->mid[j], &a, B, H, W, G);
    flops += nb * 2.0 * (2.0 * B * top * top * 9.0 * H * W);
    for (l = c->pixel_num_levels - 1; l >= 0; l--) {   /* self.up is run reversed: coarse to fine */
        int cout = textok__pix_ch(c, l);
        for (j = 0; j < nb; j++) {
            const textok__resblock *r = &px->up[l * nb + j];
            textok__resblock_forward(k, r, &a, B, H, W, G);
            flops += 2.0 * B * H * W * 9.0 * ((double)r->cin * r->cout + (double)r->cout * r->cout)
                   + (r->nin_w ? 2.0 * B * H * W * (double)r->cout * r->cout : 0.0);
            cin = cout;
        }
        if (l > 0) {   /* nearest x2, then a 3x3 conv */
            k->upsample_forward(k, a.t, a.x, B * cout, H, W, 2);
            H *= 2; W *= 2;
            textok__conv_same(k, a.x, a.t, px->upsample_w[l], px->upsample_b[l], B, cout, H, W, cout, 3, a.work);
            flops += 2.0 * B * H * W * 9.0 * (double)cout * cout;
        }
    }
    k->groupnorm_forward(k, a.t, NULL, NULL, a.x, px->norm_out_w, px->norm_out_b, B, cin, H * W, G, 1e-6f);
    k->silu_forward(k, a.t, a.t, (size_t)B * cin * H * W);
    textok__conv_same(k, m->img, a.t, px->conv_out_w, px->conv_out_b, B, cin, H, W, 3, 3, a.work);
    return flops + 2.0 * B * H * W * 9.0 * 3.0 * cin;
}

/* zt (B, K, C) token-major and m->text -> m->img (B, 3, S, S), unclamped. */
static void textok__titok_decoder(textok_titok *m, const float *zt, int B)
{
    const textok_kernels *k = &m->k;
    const textok_titok_config *c = &m->cfg;
    const int K = c->num_latent_tokens, C = c->token_size, D = c->dec_width, P = m->P, T = m->Td;
    const int S = c->image_size, p = c->patch_size;
    double t0 = textok__now(), flops;
    int b;
    /* 1. decoder_embed on the K tokens; the sequence [cls,] P mask/patch tokens, K tokens[, text] */
    textok__linear(k, m->lat, zt, m->dec.embed_w, m->dec.embed_b, B * K, C, D);
    textok__dec_seq_forward(m, m->vit.seq, m->lat, m->text, B);
    /* 2. the blocks; ln_post on the P mask positions, which become the (S/p, S/p) grid */
    textok__vit_forward(k, &m->dec.vit, &m->vit, B, T, m->kmask_d);
    for (b = 0; b < B; b++)
        k->layernorm_forward(k, m->dec_out + (size_t)b * P * D, NULL, NULL, m->vit.x + ((size_t)b * T + m->ncls) * D,
                             m->dec.vit.ln_post_w, m->dec.vit.ln_post_b, P, D, 1e-5f);
    flops = 2.0 * B * K * C * D + textok__vit_flops(&m->dec.vit, B, T) + 2.0 * B * m->Ltd * (double)c->text_dim * D;
    if (c->is_legacy) {
        /* 3a. ffn: 1x1 conv, tanh, 1x1 conv -> logits over the Vp proxy codes at each grid cell;
           their softmax weights a convex combination of pixel-codebook rows (a soft lookup, not
           an argmax), which the conv decoder turns into pixels */
        const int Vp = c->pixel_codebook_size, Z = c->pixel_z_channels;
        textok_matmul_dims d;
        textok__linear(k, m->head1, m->dec_out, m->dec.ffn0_w, m->dec.ffn0_b, B * P, D, 2 * D);
        k->tanh_forward(k, m->head1, m->head1, (size_t)B * P * 2 * D);
        textok__linear(k, m->logits, m->head1, m->dec.ffn2_w, m->dec.ffn2_b, B * P, 2 * D, Vp);
        k->softmax_forward(k, m->logits, m->logits, B * P, Vp);
        d.batch = 1; d.M = B * P; d.N = Z; d.K = Vp; d.trans_a = 0; d.trans_b = 0;
        k->matmul_forward(k, m->codes, m->logits, m->pix.codebook, NULL, &d);
        k->transpose_forward(k, m->pixa.x, m->codes, B, P, Z);
        flops += 2.0 * B * P * (2.0 * D * D + 2.0 * D * Vp + (double)Vp * Z);
        m->timing.decoder_s += textok__now() - t0;
        m->timing.decoder_flops += flops;
        t0 = textok__now();
        m->timing.pixel_decoder_flops += textok__pixel_decoder_forward(m, B);
        m->timing.pixel_decoder_s += textok__now() - t0;
    } else {
        /* 3b. ffn: 1x1 conv to p*p*3 values per cell, rearranged to pixels (c fastest), then
           (titok) a 3x3 conv_out; TexTok maps patches linearly to pixels and stops there */
        textok__linear(k, m->head1, m->dec_out, m->dec.ffn0_w, m->dec.ffn0_b, B * P, D, p * p * 3);
        flops += 2.0 * B * P * D * p * p * 3.0;
        if (c->arch == TEXTOK_ARCH_TEXTOK) {
            k->unpatchify_forward(k, m->img, m->head1, B, 3, S, S, p);
        } else {
            k->unpatchify_forward(k, m->img2, m->head1, B, 3, S, S, p);
            textok__conv_same(k, m->img, m->img2, m->dec.out_w, m->dec.out_b, B, 3, S, S, 3, 3, m->conv_work);
            flops += 2.0 * B * S * S * 81.0;
        }
        m->timing.decoder_s += textok__now() - t0;
        m->timing.decoder_flops += flops;
    }
}

/* ----- the public calls --------------------------------------------------------------------- */
#define TEXTOK__CHECKED(x) do { int st_ = (x); if (st_ != TEXTOK_OK) return textok__fail_wrap(st_, "TiTok: a memory transfer failed"); } while (0)

TEXTOKDEF int textok_titok_encode(textok_titok *m, const float *images, int B, const textok_text *text,
                                  int32_t *tokens, float *latents, float *pre_quant, textok_rng *rng)
{
    const textok_kernels *k;
    const textok_titok_config *c;
    size_t img_n, K, C, Cq;
    int b0;
    if (!m || (!images && B > 0) || B < 0)
        return textok__fail(TEXTOK_ERR_ARG, "textok_titok_encode: NULL model or images, or batch %d < 0", B);
    k = &m->k; c = &m->cfg;
    if (tokens && c->quantize_mode != TEXTOK_QUANT_VQ)
        return textok__fail(TEXTOK_ERR_ARG, "textok_titok_encode: token ids requested from a VAE model (it has no codebook); ask for latents");
    img_n = (size_t)3 * c->image_size * c->image_size;
    K = (size_t)c->num_latent_tokens; C = (size_t)c->token_size; Cq = (size_t)m->Cq;
    memset(&m->timing, 0, sizeof m->timing);
    for (b0 = 0; b0 < B; b0 += m->max_batch) {
        const int nb = B - b0 < m->max_batch ? B - b0 : m->max_batch;
        const int N = nb * (int)K;
        double t0 = textok__now(), t1;
        int b, st;
        TEXTOK__CHECKED(k->to_device(k, m->img, images + (size_t)b0 * img_n, (size_t)nb * img_n * sizeof(float)));
        if ((st = textok__titok_set_text(m, m->text, m->kmask_e, NULL, text, b0, nb, NULL, 1, 0, "textok_titok_encode")) != TEXTOK_OK)
            return st;
        m->timing.encoder_flops += textok__titok_encoder(m, nb);
        t1 = textok__now();
        m->timing.encoder_s += t1 - t0;
        if (pre_quant)
            TEXTOK__CHECKED(k->to_host(k, pre_quant + (size_t)b0 * Cq * K, m->zoff, (size_t)nb * Cq * K * sizeof(float)));
        if (c->quantize_mode == TEXTOK_QUANT_VQ) {
            /* VectorQuantizer: F.normalize z and the codebook (when use_l2_norm), expanded-form
               distances, first index on ties; the decoder gets the re-normalised entries */
            if (c->use_l2_norm) k->l2norm_forward(k, m->zq, m->zt, N, (int)C, 1e-12f);
            else k->copy(k, m->zq, m->zt, (size_t)N * C * sizeof(float));
            k->codebook_search(k, m->ids, NULL, m->zq, m->codebook_lookup, N, c->codebook_size, (int)C, m->cb_work);
            if (tokens) TEXTOK__CHECKED(k->to_host(k, tokens + (size_t)b0 * K, m->ids, (size_t)N * sizeof(int32_t)));
            if (latents) {
                k->embedding_forward(k, m->zq, m->codebook_lookup, m->ids, N, (int)C);
                k->transpose_forward(k, m->zoff, m->zq, nb, (int)K, (int)C);
                TEXTOK__CHECKED(k->to_host(k, latents + (size_t)b0 * C * K, m->zoff, (size_t)N * C * sizeof(float)));
            }
        } else if (latents && c->quantize_mode == TEXTOK_QUANT_NONE) {
            TEXTOK__CHECKED(k->to_host(k, latents + (size_t)b0 * C * K, m->zoff, (size_t)N * C * sizeof(float)));
        } else if (latents) {
            /* DiagonalGaussianDistribution over (B, 2C, 1, K): mean = channels [0, C), logvar =
               [C, 2C). mode() by default; with an rng, mean + std * N(0, 1) with the noise in
               (B, C, K) order (torch.randn's order; the normal stream itself is ours). The
               caller's latents array holds the noise on its way to the device. */
            float *out = latents + (size_t)b0 * C * K;
            if (rng) {
                textok_rng_fill_normal(rng, out, (size_t)N * C, 0.0f, 1.0f);
                TEXTOK__CHECKED(k->to_device(k, m->noise, out, (size_t)N * C * sizeof(float)));
                for (b = 0; b < nb; b++)
                    k->gaussian_sample_forward(k, m->zq + (size_t)b * C * K, m->zoff + (size_t)b * Cq * K,
                                               m->zoff + (size_t)b * Cq * K + C * K, m->noise + (size_t)b * C * K, C * K);
                TEXTOK__CHECKED(k->to_host(k, out, m->zq, (size_t)N * C * sizeof(float)));
            } else {
                for (b = 0; b < nb; b++)
                    TEXTOK__CHECKED(k->to_host(k, out + (size_t)b * C * K, m->zoff + (size_t)b * Cq * K, C * K * sizeof(float)));
            }
        }
        m->timing.quantize_s += textok__now() - t1;
    }
    return TEXTOK_OK;
}

TEXTOKDEF int textok_titok_decode_tokens(textok_titok *m, const int32_t *tokens, int B, const textok_text *text,
                                         float *images)
{
    const textok_kernels *k;
    const textok_titok_config *c;
    size_t img_n, K, i;
    int b0;
    if (!m || (B > 0 && (!tokens || !images)) || B < 0)
        return textok__fail(TEXTOK_ERR_ARG, "textok_titok_decode_tokens: NULL argument or batch %d < 0", B);
    k = &m->k; c = &m->cfg;
    if (c->quantize_mode != TEXTOK_QUANT_VQ)
        return textok__fail(TEXTOK_ERR_ARG, "textok_titok_decode_tokens: a VAE model has no codebook; use textok_titok_decode_latents");
    img_n = (size_t)3 * c->image_size * c->image_size;
    K = (size_t)c->num_latent_tokens;
    for (i = 0; i < (size_t)B * K; i++)   /* ids from users are checked before a kernel indexes with them */
        if (tokens[i] < 0 || tokens[i] >= c->codebook_size)
            return textok__fail(TEXTOK_ERR_ARG, "textok_titok_decode_tokens: token %lu of image %lu is %ld, outside [0, %d)",
                                (unsigned long)(i % K), (unsigned long)(i / K), (long)tokens[i], c->codebook_size);
    memset(&m->timing, 0, sizeof m->timing);
    for (b0 = 0; b0 < B; b0 += m->max_batch) {
        const int nb = B - b0 < m->max_batch ? B - b0 : m->max_batch, N = nb * (int)K;
        int st = textok__titok_set_text(m, m->text, NULL, m->kmask_d, text, b0, nb, NULL, 0, 1, "textok_titok_decode_tokens");
        if (st != TEXTOK_OK) return st;
        TEXTOK__CHECKED(k->to_device(k, m->ids, tokens + (size_t)b0 * K, (size_t)N * sizeof(int32_t)));
        k->embedding_forward(k, m->zq, m->codebook_lookup, m->ids, N, c->token_size);
        textok__titok_decoder(m, m->zq, nb);
        TEXTOK__CHECKED(k->to_host(k, images + (size_t)b0 * img_n, m->img, (size_t)nb * img_n * sizeof(float)));
    }
    return TEXTOK_OK;
}

TEXTOKDEF int textok_titok_decode_latents(textok_titok *m, const float *latents, int B, const textok_text *text,
                                          float *images)
{
    const textok_kernels *k;
    const textok_titok_config *c;
    size_t img_n, K, C;
    int b0;
    if (!m || (B > 0 && (!latents || !images)) || B < 0)
        return textok__fail(TEXTOK_ERR_ARG, "textok_titok_decode_latents: NULL argument or batch %d < 0", B);
    k = &m->k; c = &m->cfg;
    img_n = (size_t)3 * c->image_size * c->image_size;
    K = (size_t)c->num_latent_tokens; C = (size_t)c->token_size;
    memset(&m->timing, 0, sizeof m->timing);
    for (b0 = 0; b0 < B; b0 += m->max_batch) {
        const int nb = B - b0 < m->max_batch ? B - b0 : m->max_batch;
        int st = textok__titok_set_text(m, m->text, NULL, m->kmask_d, text, b0, nb, NULL, 0, 1, "textok_titok_decode_latents");
        if (st != TEXTOK_OK) return st;
        /* (B, C, 1, K) -> (B, K, C): the decoder's real transpose (architecture.md 1.6 step 2) */
        TEXTOK__CHECKED(k->to_device(k, m->zoff, latents + (size_t)b0 * C * K, (size_t)nb * C * K * sizeof(float)));
        k->transpose_forward(k, m->zq, m->zoff, nb, (int)C, (int)K);
        textok__titok_decoder(m, m->zq, nb);
        TEXTOK__CHECKED(k->to_host(k, images + (size_t)b0 * img_n, m->img, (size_t)nb * img_n * sizeof(float)));
    }
    return TEXTOK_OK;
}
#undef TEXTOK__CHECKED

/* ---------------------------------------------------------------------------------------------
   12. Loss networks: LPIPS (VGG16) and the PatchGAN discriminator (architecture.md 5.4, 6)

   The two networks a tokenizer's training losses run through. LPIPS is frozen: its backward
   gives the gradient with respect to the first image only (the reconstruction; the second is
   the target), and no weight gradients. The discriminator is trained: its backward gives the
   gradient with respect to the images and, on request, accumulates every parameter gradient
   into one block laid out like the parameters.
   Both follow the TiTok pattern: one walk lists every tensor (name, shape, in state_dict order)
   and serves the spec list, the sizing and the binding of the named pointers; the parameters
   are one block from the table's alloc; every activation lives in one arena that _reserve
   allocates, and a forward/backward after that allocates nothing. The backward kernels
   accumulate, so each gradient buffer is cleared right before the kernel that fills it. */

/* ----- shared pieces ------------------------------------------------------------------------ */

static textok_conv2d_dims textok__cdims(int B, int C, int H, int W, int OC, int ks, int stride, int pad)
{
    textok_conv2d_dims d;
    d.B = B; d.C = C; d.H = H; d.W = W; d.OC = OC; d.KH = ks; d.KW = ks; d.stride = stride; d.pad = pad;
    return d;
}

/* Fill a parameter block from a file. The file must hold exactly the spec'd tensors (an extra
   one means another model or another config), each with its spec's shape; the values go through
   a host staging buffer because the block belongs to the table (maybe a GPU). */
static int textok__nets_load_params(const textok_kernels *k, const textok_safetensors *st,
                                    const textok_tensor_spec *specs, int n_specs, float *params,
                                    const char *what)
{
    size_t max_numel = 0, offset = 0;
    float *stage;
    int i, status = TEXTOK_OK;
    for (i = 0; i < st->n_tensors; i++) {
        int j, found = 0;
        for (j = 0; j < n_specs && !found; j++) found = strcmp(st->tensors[i].name, specs[j].name) == 0;
        if (!found)
            return textok__fail(TEXTOK_ERR_SHAPE, "%s: unexpected tensor '%.120s' for this %s config", st->path,
                                st->tensors[i].name, what);
    }
    for (i = 0; i < n_specs; i++)
        if (textok__spec_numel(&specs[i]) > max_numel) max_numel = textok__spec_numel(&specs[i]);
    stage = (float *)textok__malloc(max_numel * sizeof(float));
    if (!stage) return textok__fail(TEXTOK_ERR_NOMEM, "%s: out of memory loading %s", st->path, what);
    for (i = 0; i < n_specs && status == TEXTOK_OK; i++) {
        size_t numel = textok__spec_numel(&specs[i]);
        status = textok_st_load(st, specs[i].name, specs[i].ndim, specs[i].shape, stage);
        if (status == TEXTOK_OK) status = k->to_device(k, params + offset, stage, numel * sizeof(float));
        offset += numel;
    }
    TEXTOK_FREE(stage);
    return status;
}

/* PyTorch's default initialisation, as far as these networks use it: Conv2d weight
   (kaiming_uniform_ with a = sqrt(5)) and bias both uniform in +-1/sqrt(fan_in), fan_in =
   in_channels * kh * kw; GroupNorm weight 1, bias 0. `bound` carries a conv weight's fan-in over
   to the bias that follows it in the walk. */
static void textok__torch_init(textok_rng *r, const textok_tensor_spec *s, float *x, float *bound)
{
    size_t n = textok__spec_numel(s), i;
    if (s->ndim == 4) {
        *bound = (float)(1.0 / sqrt((double)(s->shape[1] * s->shape[2] * s->shape[3])));
        textok_rng_fill_uniform(r, x, n, -*bound, *bound);
    } else if (*bound > 0.0f) {                                  /* the conv's bias */
        textok_rng_fill_uniform(r, x, n, -*bound, *bound);
        *bound = 0.0f;
    } else {                                                     /* GroupNorm weight, then bias */
        for (i = 0; i < n; i++) x[i] = textok__ends(s->name, ".weight") ? 1.0f : 0.0f;
    }
}

/* "a,b,c" into at most max ints; returns the count or -1 */
static int textok__parse_int_list(const char *p, int *out, int max)
{
    int n = 0;
    while (*p) {
        char num[16];
        size_t len = strcspn(p, ",");
        if (n >= max || len == 0 || len >= sizeof num) return -1;
        memcpy(num, p, len); num[len] = 0;
        if (!textok__parse_int(num, &out[n++])) return -1;
        p += len;
        if (*p == ',' && !*++p) return -1;   /* a trailing comma */
    }
    return n;
}

static int textok__meta_model(const textok_safetensors *st, const char *model, const char *what)
{
    const char *v = textok_st_meta(st, "textok.model");
    if (!v || strcmp(v, model) != 0)
        return textok__fail(TEXTOK_ERR_FORMAT, "%s: not a textok-layout %s file (__metadata__ 'textok.model' is %s%s%s, "
                            "expected \"%s\")", st->path, what, v ? "\"" : "absent", v ? v : "", v ? "\"" : "", model);
    return TEXTOK_OK;
}

static int textok__meta_int(const textok_safetensors *st, const char *key, int *out)
{
    const char *v = textok_st_meta(st, key);
    if (!v) return textok__fail(TEXTOK_ERR_FORMAT, "%s: __metadata__ lacks '%s'", st->path, key);
    if (!textok__parse_int(v, out))
        return textok__fail(TEXTOK_ERR_FORMAT, "%s: __metadata__ '%s' = \"%.40s\" is not a non-negative integer", st->path, key, v);
    return TEXTOK_OK;
}

/* ----- LPIPS -------------------------------------------------------------------------------- */
/* VGG16 `features` as LPIPS slices it: conv j is features[idx[j]] of slice lev[j] + 1 and runs
   at level lev[j] (channels c_lev, spatial size H >> lev); a 2x2 max-pool precedes the first
   conv of levels 1..4; the last conv of each level (after its ReLU) is that level's tap. */
#define TEXTOK__VGG_CONVS 13
static const int textok__vgg_idx[TEXTOK__VGG_CONVS] = { 0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28 };
static const int textok__vgg_lev[TEXTOK__VGG_CONVS] = { 0, 0, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4 };
static int textok__vgg_is_tap(int j) { return j == TEXTOK__VGG_CONVS - 1 || textok__vgg_lev[j + 1] != textok__vgg_lev[j]; }
static int textok__vgg_after_pool(int j) { return j > 0 && textok__vgg_lev[j - 1] != textok__vgg_lev[j]; }
/* ScalingLayer (lpips v0.1) constants, per RGB channel */
static const double textok__lpips_shift[3] = { -0.030, -0.088, -0.188 };
static const double textok__lpips_scale[3] = { 0.458, 0.448, 0.450 };

struct textok_lpips {
    int            channels[5];       /* c0..c4: 64,128,256,512,512 for VGG16 */
    textok_kernels k;                 /* the table every buffer below belongs to */
    int            max_batch;         /* pairs per pass of textok_lpips_distance */
    float         *params;            /* one block from k.alloc, in file order (textok__lpips_walk) */
    size_t         n_params;
    float *conv_w[TEXTOK__VGG_CONVS]; /* (c_out, c_in, 3, 3) net.slice*.*.weight */
    float *conv_b[TEXTOK__VGG_CONVS]; /* (c_out) */
    float *lin[5];                    /* (1, c_l, 1, 1) lin*.model.1.weight */
    float *consts;                    /* k.alloc: the ScalingLayer of 2x-1 as a 1x1 conv: */
    float *scale_w, *scale_b;         /*   (3, 3, 1, 1) diag(2/scale), (3) (-1 - shift)/scale */

    /* activations: one arena for up to res_B pairs of res_H x res_W (textok__lpips_reserve) */
    float *arena;
    size_t arena_floats;
    int    res_B, res_H, res_W;
    int    fwd_B;                     /* batch of the last forward; 0 = none (backward needs one) */
    float *xin, *yin;                 /* (B, 3, H, W) staging for textok_lpips_distance */
    float *xs;                        /* (B, 3, H, W) scaled input */
    float *act[TEXTOK__VGG_CONVS];    /* x: conv j output after its ReLU, (B, c_l, H>>l, W>>l) */
    float *ytap[5];                   /* y: the five taps, (B, c_l, H>>l, W>>l) */
    float *pool;                      /* a slice's max-pooled input (the largest of them) */
    float *ga, *gb;                   /* backward: gradient ping-pong, the largest activation */
    float *d5;                        /* (5, B) the per-layer distances */
    float *dd;                        /* (B) upstream gradient of each distance */
    float *work;                      /* conv2d work: textok_conv2d_work_floats of the largest conv */
    float *host_d;                    /* host (5, B): the per-layer distances on their way out */
};

static int textok__lpips_cin(const int *ch, int j) { return j ? ch[textok__vgg_lev[j - 1]] : 3; }

static void textok__lpips_walk(const int ch[5], textok_lpips *lp, textok__walk *w)
{
    int j, l;
    for (j = 0; j < TEXTOK__VGG_CONVS; j++) {
        int cin = textok__lpips_cin(ch, j), cout = ch[textok__vgg_lev[j]];
        textok__wt(w, lp ? &lp->conv_w[j] : NULL, 4, cout, cin, 3, 3, "net.slice%d.%d.weight", textok__vgg_lev[j] + 1, textok__vgg_idx[j]);
        textok__wt(w, lp ? &lp->conv_b[j] : NULL, 1, cout, 0, 0, 0, "net.slice%d.%d.bias", textok__vgg_lev[j] + 1, textok__vgg_idx[j]);
    }
    for (l = 0; l < 5; l++)
        textok__wt(w, lp ? &lp->lin[l] : NULL, 4, 1, ch[l], 1, 1, "lin%d.model.1.weight", l);
}

TEXTOKDEF int textok_lpips_tensor_specs(const int channels[5], textok_tensor_spec *specs, int max_specs)
{
    textok__walk w;
    int l;
    if (!channels) return textok__fail(TEXTOK_ERR_ARG, "textok_lpips_tensor_specs: NULL channels");
    for (l = 0; l < 5; l++)
        if (channels[l] < 1 || channels[l] > 65536)
            return textok__fail(TEXTOK_ERR_SHAPE, "LPIPS config: channels[%d] = %d not in [1, 65536]", l, channels[l]);
    memset(&w, 0, sizeof w);
    w.specs = specs;
    w.max_specs = specs ? max_specs : 0;
    textok__lpips_walk(channels, NULL, &w);
    return w.n;
}

/* The arena for B pairs of H x W, in one place for sizing (base NULL) and binding. */
static void textok__lpips_carve(textok_lpips *lp, textok__carve *a, int B, int H, int W)
{
    const int *ch = lp->channels;
    const size_t img = textok__mul3((size_t)B, 3, (size_t)H * W, &a->overflow);
    size_t pool = 0, grad = img, work;
    textok_conv2d_dims cd = textok__cdims(1, 3, H, W, 3, 1, 1, 0);
    int j, l;
    work = textok_conv2d_work_floats(&cd);
    lp->xin = textok__take(a, img);
    lp->yin = textok__take(a, img);
    lp->xs = textok__take(a, img);
    for (j = 0; j < TEXTOK__VGG_CONVS; j++) {
        const int lev = textok__vgg_lev[j], h = H >> lev, w = W >> lev, cin = textok__lpips_cin(ch, j);
        const size_t hw = (size_t)h * w;
        lp->act[j] = textok__take(a, textok__mul3((size_t)B, (size_t)ch[lev], hw, &a->overflow));
        grad = textok__max2(grad, textok__mul3((size_t)B, textok__max2((size_t)cin, (size_t)ch[lev]), hw, &a->overflow));
        if (textok__vgg_after_pool(j)) {   /* the pool's input (2h x 2w) is a gradient buffer too */
            pool = textok__max2(pool, textok__mul3((size_t)B, (size_t)cin, hw, &a->overflow));
            grad = textok__max2(grad, textok__mul3((size_t)B, (size_t)cin, 4 * hw, &a->overflow));
        }
        cd = textok__cdims(1, cin, h, w, ch[lev], 3, 1, 1);
        work = textok__max2(work, textok_conv2d_work_floats(&cd));
    }
    for (l = 0; l < 5; l++)
        lp->ytap[l] = textok__take(a, textok__mul3((size_t)B, (size_t)ch[l], (size_t)(H >> l) * (W >> l), &a->overflow));
    lp->pool = textok__take(a, pool);
    lp->ga = textok__take(a, grad);
    lp->gb = textok__take(a, grad);
    lp->d5 = textok__take(a, 5 * (size_t)B);
    lp->dd = textok__take(a, (size_t)B);
    lp->work = textok__take(a, work);
}

/* Allocate the activation arena for up to B image pairs of H x W (once, outside the step). A
   smaller batch of the same size reuses it; another size replaces it. */
static int textok__lpips_reserve(textok_lpips *lp, int B, int H, int W)
{
    textok__carve a;
    if (!lp) return textok__fail(TEXTOK_ERR_ARG, "LPIPS reserve: NULL model");
    if (B < 1 || B > 4096) return textok__fail(TEXTOK_ERR_ARG, "LPIPS: batch %d not in [1, 4096]", B);
    if (H < 16 || W < 16 || H % 16 || W % 16 || H > 16384 || W > 16384)
        return textok__fail(TEXTOK_ERR_ARG, "LPIPS: images are %d x %d; H and W must be multiples of 16 in [16, 16384] "
                            "(four 2x2 max-pools)", H, W);
    if (lp->arena && H == lp->res_H && W == lp->res_W && B <= lp->res_B) return TEXTOK_OK;
    if (lp->arena) lp->k.free(&lp->k, lp->arena);
    TEXTOK_FREE(lp->host_d);
    lp->arena = NULL; lp->host_d = NULL; lp->res_B = lp->res_H = lp->res_W = lp->fwd_B = 0;
    memset(&a, 0, sizeof a);
    textok__lpips_carve(lp, &a, B, H, W);
    if (a.overflow)
        return textok__fail(TEXTOK_ERR_SHAPE, "LPIPS: an activation buffer for %d pairs of %d x %d would exceed INT_MAX floats", B, H, W);
    lp->arena = (float *)lp->k.alloc(&lp->k, a.used * sizeof(float));
    lp->host_d = (float *)textok__malloc(5 * (size_t)B * sizeof(float));
    if (!lp->arena || !lp->host_d) {
        if (lp->arena) lp->k.free(&lp->k, lp->arena);
        TEXTOK_FREE(lp->host_d);
        lp->arena = NULL; lp->host_d = NULL;
        return textok__fail(TEXTOK_ERR_NOMEM, "LPIPS: cannot allocate %lu MB of activations for %d pairs of %d x %d",
                            (unsigned long)(a.used * sizeof(float) >> 20), B, H, W);
    }
    lp->arena_floats = a.used;
    memset(&a, 0, sizeof a);
    a.base = lp->arena;
    textok__lpips_carve(lp, &a, B, H, W);
    lp->res_B = B; lp->res_H = H; lp->res_W = W;
    return TEXTOK_OK;
}

/* The VGG trunk on B images: scaling, then the 13 convs with their ReLUs (in place) and the four
   pools. keep = 1 (x): every conv output stays in act[] for backward. keep = 0 (y): act[] is
   scratch (the x pass comes after) and only the taps are kept, in ytap[]. */
static void textok__lpips_trunk(textok_lpips *lp, const float *img, int B, int keep)
{
    const textok_kernels *k = &lp->k;
    const int H = lp->res_H, W = lp->res_W;
    textok_conv2d_dims cd = textok__cdims(B, 3, H, W, 3, 1, 1, 0);
    const float *in = lp->xs;
    int j;
    k->conv2d_forward(k, lp->xs, img, lp->scale_w, lp->scale_b, &cd, lp->work);
    for (j = 0; j < TEXTOK__VGG_CONVS; j++) {
        const int lev = textok__vgg_lev[j], h = H >> lev, w = W >> lev, cin = textok__lpips_cin(lp->channels, j);
        const int cout = lp->channels[lev];
        float *out = !keep && textok__vgg_is_tap(j) ? lp->ytap[lev] : lp->act[j];
        if (textok__vgg_after_pool(j)) {
            k->maxpool_forward(k, lp->pool, in, B * cin, 2 * h, 2 * w, h, w);
            in = lp->pool;
        }
        textok__conv_same(k, out, in, lp->conv_w[j], lp->conv_b[j], B, cin, h, w, cout, 3, lp->work);
        k->leaky_relu_forward(k, out, out, (size_t)B * cout * h * w, 0.0f);
        in = out;
    }
}

/* d_host (B) = LPIPS(x[b], y[b]) for x, y (B, 3, H, W) in [0, 1], DEVICE memory, B <= the
   reserved batch and H x W the reserved size. Keeps x's activations for backward (y is a
   constant target: only its five taps are kept). */
static int textok__lpips_forward(textok_lpips *lp, float *d_host, const float *x, const float *y, int B, int H, int W)
{
    const textok_kernels *k;
    int l, b, st;
    if (!lp || !d_host || !x || !y) return textok__fail(TEXTOK_ERR_ARG, "LPIPS forward: NULL argument");
    if (!lp->arena || B < 1 || B > lp->res_B || H != lp->res_H || W != lp->res_W)
        return textok__fail(TEXTOK_ERR_ARG, "LPIPS forward: %d pairs of %d x %d but the reserved arena is for %d pairs of %d x %d",
                            B, H, W, lp->res_B, lp->res_H, lp->res_W);
    k = &lp->k;
    lp->fwd_B = 0;
    textok__lpips_trunk(lp, y, B, 0);
    textok__lpips_trunk(lp, x, B, 1);
    for (l = 0; l < 5; l++) {
        int j = 0;
        while (textok__vgg_lev[j] != l || !textok__vgg_is_tap(j)) j++;
        k->lpips_layer_forward(k, lp->d5 + (size_t)l * B, lp->act[j], lp->ytap[l], lp->lin[l], B, lp->channels[l],
                               (H >> l) * (W >> l));
    }
    if ((st = k->to_host(k, lp->host_d, lp->d5, 5 * (size_t)B * sizeof(float))) != TEXTOK_OK)
        return textok__fail(st, "LPIPS forward: copying the distances to the host failed");
    for (b = 0; b < B; b++) {   /* res[0] + res[1] + ... in float, in layer order (lpips.py) */
        float v = lp->host_d[b];
        for (l = 1; l < 5; l++) v += lp->host_d[(size_t)l * B + b];
        d_host[b] = v;
    }
    lp->fwd_B = B;
    return TEXTOK_OK;
}

/* dx (B, 3, H, W) += sum_b dd_host[b] d LPIPS_b / d x_b, after a forward with the same x, y, B,
   H, W. Runs the trunk backwards from conv 12, adding each tap's LPIPS-layer gradient where the
   gradient arrives at that tap (ga and gb take turns as source and destination). */
static int textok__lpips_backward(textok_lpips *lp, float *dx, const float *dd_host, int B, int H, int W)
{
    const textok_kernels *k;
    float *P, *Q, *tmp;
    int j, st;
    if (!lp || !dx || !dd_host) return textok__fail(TEXTOK_ERR_ARG, "LPIPS backward: NULL argument");
    if (!lp->fwd_B || B != lp->fwd_B || H != lp->res_H || W != lp->res_W)
        return textok__fail(TEXTOK_ERR_ARG, "LPIPS backward: %d pairs of %d x %d, but the last forward was %d pairs of %d x %d",
                            B, H, W, lp->fwd_B, lp->res_H, lp->res_W);
    k = &lp->k;
    if ((st = k->to_device(k, lp->dd, dd_host, (size_t)B * sizeof(float))) != TEXTOK_OK)
        return textok__fail(st, "LPIPS backward: copying dd to the device failed");
    P = lp->ga; Q = lp->gb;
    {   /* the gradient at the last tap: LPIPS layer 4 only */
        const int h = H >> 4, w = W >> 4, c = lp->channels[4];
        k->fill(k, P, (size_t)B * c * h * w, 0.0f);
        k->lpips_layer_backward(k, P, NULL, lp->dd, lp->act[TEXTOK__VGG_CONVS - 1], lp->ytap[4], lp->lin[4], B, c, h * w);
    }
    for (j = TEXTOK__VGG_CONVS - 1; j >= 0; j--) {
        /* P: gradient with respect to act[j] (conv j after its ReLU) */
        const int lev = textok__vgg_lev[j], h = H >> lev, w = W >> lev, cin = textok__lpips_cin(lp->channels, j);
        const int cout = lp->channels[lev];
        const size_t nout = (size_t)B * cout * h * w, nin = (size_t)B * cin * h * w;
        textok_conv2d_dims cd = textok__cdims(B, cin, h, w, cout, 3, 1, 1);
        k->fill(k, Q, nout, 0.0f);
        k->leaky_relu_backward(k, Q, P, lp->act[j], nout, 0.0f);    /* the ReLU's mask from its output */
        /* the weights are frozen, so the conv's input (which only dweight reads) is not needed:
           after a pool it is no longer in lp->pool, and that stale buffer is passed */
        k->fill(k, P, nin, 0.0f);
        k->conv2d_backward(k, P, NULL, NULL, Q, j == 0 ? lp->xs : textok__vgg_after_pool(j) ? lp->pool : lp->act[j - 1],
                           lp->conv_w[j], &cd, lp->work);
        if (j == 0) {   /* through the ScalingLayer into the caller's dx */
            cd = textok__cdims(B, 3, H, W, 3, 1, 1, 0);
            k->conv2d_backward(k, dx, NULL, NULL, P, lp->xs, lp->scale_w, &cd, lp->work);
        } else if (textok__vgg_after_pool(j)) {
            /* P is the gradient at the pool's output: route it to the pool's input act[j-1],
               the previous level's tap, and add that tap's own LPIPS-layer gradient */
            const int pl = textok__vgg_lev[j - 1];
            k->fill(k, Q, (size_t)B * cin * 4 * h * w, 0.0f);
            k->maxpool_backward(k, Q, P, lp->act[j - 1], B * cin, 2 * h, 2 * w, h, w);
            k->lpips_layer_backward(k, Q, NULL, lp->dd, lp->act[j - 1], lp->ytap[pl], lp->lin[pl], B, cin, 4 * h * w);
            tmp = P; P = Q; Q = tmp;
        }
    }
    return TEXTOK_OK;
}

TEXTOKDEF void textok_lpips_free(textok_lpips *lp)
{
    if (!lp) return;
    if (lp->params) lp->k.free(&lp->k, lp->params);
    if (lp->consts) lp->k.free(&lp->k, lp->consts);
    if (lp->arena) lp->k.free(&lp->k, lp->arena);
    TEXTOK_FREE(lp->host_d);
    TEXTOK_FREE(lp);
}

/* A model for channels: the parameter block (bound, not filled), the specs (caller frees) and
   the ScalingLayer constants. */
static int textok__lpips_new(textok_lpips **out, const int channels[5], const textok_params *params,
                             textok_tensor_spec **specs_out, int *n_specs_out)
{
    textok_params prm = params ? *params : textok_default_params();
    textok_lpips *lp;
    textok__walk w;
    float host[12];
    int n_specs, c, st;
    *out = NULL;
    if (prm.max_batch < 1 || prm.max_batch > 4096)
        return textok__fail(TEXTOK_ERR_ARG, "LPIPS: max_batch %d not in [1, 4096]", prm.max_batch);
    if ((n_specs = textok_lpips_tensor_specs(channels, NULL, 0)) < 0) return n_specs;
    lp = (textok_lpips *)textok__calloc(1, sizeof *lp);
    *specs_out = (textok_tensor_spec *)textok__calloc((size_t)n_specs, sizeof **specs_out);
    if (!lp || !*specs_out) {
        TEXTOK_FREE(lp); TEXTOK_FREE(*specs_out); *specs_out = NULL;
        return textok__fail(TEXTOK_ERR_NOMEM, "LPIPS: out of memory");
    }
    memcpy(lp->channels, channels, sizeof lp->channels);
    lp->k = prm.kernels ? *prm.kernels : textok_cpu_kernels(prm.n_threads);
    lp->max_batch = prm.max_batch;
    textok_lpips_tensor_specs(channels, *specs_out, n_specs);
    *n_specs_out = n_specs;
    memset(&w, 0, sizeof w);
    textok__lpips_walk(channels, lp, &w);
    lp->n_params = w.offset;
    lp->params = (float *)lp->k.alloc(&lp->k, w.offset * sizeof(float));
    lp->consts = (float *)lp->k.alloc(&lp->k, 12 * sizeof(float));
    if (!lp->params || !lp->consts) {
        st = textok__fail(TEXTOK_ERR_NOMEM, "LPIPS: cannot allocate %lu parameters", (unsigned long)w.offset);
        goto fail;
    }
    memset(&w, 0, sizeof w);
    w.base = lp->params;
    textok__lpips_walk(channels, lp, &w);
    /* (2x - 1 - shift) / scale = (2/scale) x + (-1 - shift)/scale, per channel */
    memset(host, 0, sizeof host);
    for (c = 0; c < 3; c++) {
        host[c * 3 + c] = (float)(2.0 / textok__lpips_scale[c]);
        host[9 + c] = (float)((-1.0 - textok__lpips_shift[c]) / textok__lpips_scale[c]);
    }
    lp->scale_w = lp->consts;
    lp->scale_b = lp->consts + 9;
    if ((st = lp->k.to_device(&lp->k, lp->consts, host, sizeof host)) != TEXTOK_OK) goto fail;
    *out = lp;
    return TEXTOK_OK;
fail:
    TEXTOK_FREE(*specs_out); *specs_out = NULL;
    textok_lpips_free(lp);
    return st;
}

TEXTOKDEF int textok_lpips_load_st(textok_lpips **out, const textok_safetensors *st, const textok_params *p)
{
    textok_lpips *lp = NULL;
    textok_tensor_spec *specs = NULL;
    const char *v;
    int channels[5], n_specs = 0, status;
    if (!out || !st) return textok__fail(TEXTOK_ERR_ARG, "textok_lpips_load: NULL argument");
    *out = NULL;
    if ((status = textok__meta_model(st, "lpips", "LPIPS")) != TEXTOK_OK) return status;
    v = textok_st_meta(st, "channels");
    if (!v) return textok__fail(TEXTOK_ERR_FORMAT, "%s: __metadata__ lacks 'channels' (e.g. \"64,128,256,512,512\")", st->path);
    if (textok__parse_int_list(v, channels, 5) != 5)
        return textok__fail(TEXTOK_ERR_FORMAT, "%s: __metadata__ 'channels' = \"%.60s\" is not a list of 5 integers", st->path, v);
    if ((status = textok__lpips_new(&lp, channels, p, &specs, &n_specs)) != TEXTOK_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", textok_last_error());
        return textok__fail(status, "%s: %s", st->path, msg);
    }
    status = textok__nets_load_params(&lp->k, st, specs, n_specs, lp->params, "LPIPS");
    TEXTOK_FREE(specs);
    if (status != TEXTOK_OK) { textok_lpips_free(lp); return status; }
    *out = lp;
    return TEXTOK_OK;
}

TEXTOKDEF int textok_lpips_create(textok_lpips **out, const int channels[5], const textok_params *p, uint64_t seed)
{
    textok_lpips *lp = NULL;
    textok_tensor_spec *specs = NULL;
    textok_rng rng;
    float *stage = NULL, bound = 0.0f;
    size_t max_numel = 0, offset = 0, j;
    int i, n_specs = 0, status;
    if (!out || !channels) return textok__fail(TEXTOK_ERR_ARG, "textok_lpips_create: NULL argument");
    *out = NULL;
    if ((status = textok__lpips_new(&lp, channels, p, &specs, &n_specs)) != TEXTOK_OK) return status;
    for (i = 0; i < n_specs; i++)
        if (textok__spec_numel(&specs[i]) > max_numel) max_numel = textok__spec_numel(&specs[i]);
    stage = (float *)textok__malloc(max_numel * sizeof(float));
    if (!stage) { status = textok__fail(TEXTOK_ERR_NOMEM, "textok_lpips_create: out of memory"); goto done; }
    textok_rng_seed(&rng, seed);
    for (i = 0; i < n_specs && status == TEXTOK_OK; i++) {
        size_t numel = textok__spec_numel(&specs[i]);
        if (!strncmp(specs[i].name, "lin", 3)) {       /* lin weights >= 0 as the published ones */
            float top = 1.0f / (float)specs[i].shape[1];
            textok_rng_fill_uniform(&rng, stage, numel, 0.0f, top);
            for (j = 0; j < numel; j++) if (stage[j] >= top) stage[j] = 0.0f;   /* [0, top) after rounding */
        } else {
            textok__torch_init(&rng, &specs[i], stage, &bound);
        }
        status = lp->k.to_device(&lp->k, lp->params + offset, stage, numel * sizeof(float));
        offset += numel;
    }
done:
    TEXTOK_FREE(stage);
    TEXTOK_FREE(specs);
    if (status != TEXTOK_OK) { textok_lpips_free(lp); return status; }
    *out = lp;
    return TEXTOK_OK;
}

#ifndef TEXTOK_NO_STDIO
TEXTOKDEF int textok_lpips_load(textok_lpips **out, const char *path, const textok_params *p)
{
    textok_safetensors st;
    int status;
    if (!out || !path) return textok__fail(TEXTOK_ERR_ARG, "textok_lpips_load: NULL argument");
    *out = NULL;
    if ((status = textok_st_open(&st, path)) != TEXTOK_OK) return status;
    status = textok_lpips_load_st(out, &st, p);
    textok_st_close(&st);
    return status;
}
#endif

TEXTOKDEF int textok_lpips_distance(textok_lpips *lp, const float *x, const float *y, int B, int H, int W, float *d)
{
    const textok_kernels *k;
    size_t img;
    int b0, st;
    if (!lp || B < 0 || (B > 0 && (!x || !y || !d)))
        return textok__fail(TEXTOK_ERR_ARG, "textok_lpips_distance: NULL argument or batch %d < 0", B);
    if (H < 16 || W < 16 || H % 16 || W % 16)
        return textok__fail(TEXTOK_ERR_ARG, "textok_lpips_distance: images are %d x %d; H and W must be multiples of 16 "
                            "(LPIPS max-pools four times by 2)", H, W);
    if (B == 0) return TEXTOK_OK;
    if ((st = textok__lpips_reserve(lp, B < lp->max_batch ? B : lp->max_batch, H, W)) != TEXTOK_OK) return st;
    k = &lp->k;
    img = (size_t)3 * H * W;
    for (b0 = 0; b0 < B; b0 += lp->res_B) {
        const int nb = B - b0 < lp->res_B ? B - b0 : lp->res_B;
        if ((st = k->to_device(k, lp->xin, x + (size_t)b0 * img, (size_t)nb * img * sizeof(float))) != TEXTOK_OK ||
            (st = k->to_device(k, lp->yin, y + (size_t)b0 * img, (size_t)nb * img * sizeof(float))) != TEXTOK_OK)
            return textok__fail(st, "textok_lpips_distance: copying images to the device failed");
        if ((st = textok__lpips_forward(lp, d + b0, lp->xin, lp->yin, nb, H, W)) != TEXTOK_OK) return st;
    }
    return TEXTOK_OK;
}

/* ----- the discriminator: 1d-tokenizer's NLayerDiscriminator ------------------------------- */
/* block_in: Conv2dSame 5x5 3 -> hidden, LeakyReLU(0.1). Stage i: Conv2dSame 3x3 c_in -> c_out,
   BlurBlock (depthwise outer([1,3,3,1])/64, stride 2, pad 1), GroupNorm(groups, eps 1e-5),
   LeakyReLU(0.1), with c_out = hidden 2^i and c_in = hidden 2^(i-1) (hidden for i = 0), as the
   official in_channel_mult = (1, 1, 2, 4, ...). Then AdaptiveMaxPool2d((pool, pool)) and
   to_logits: Conv 1x1 C -> C, LeakyReLU(0.1), Conv 5x5 C -> 1, C = hidden 2^(stages-1).
   The official BlurBlock pads 1/2 for an odd input; we require image_size to be a multiple of
   2^stages, so every blur input is even and the padding is the symmetric 1/1 that conv2d does. */
#define TEXTOK__DISC_SLOPE 0.1f
#define TEXTOK__DISC_GN_EPS 1e-5f

TEXTOKDEF textok_disc_config textok_disc_default_config(void)
{
    textok_disc_config c;
    c.hidden = 128; c.stages = 3; c.groups = 32; c.pool = 16;
    return c;
}

typedef struct textok__disc_stage {
    int    cin, cout, S;              /* channels in and out; input size S x S (output S/2) */
    float *conv_w, *conv_b;           /* (cout, cin, 3, 3), (cout) blocks.i.0 */
    float *gn_w, *gn_b;               /* (cout) blocks.i.2 */
    float *blur;                      /* (B, cout, S/2, S/2) blur output = the GroupNorm's input */
    float *mean, *rstd;               /* (B, groups) GroupNorm statistics */
    float *act;                       /* (B, cout, S/2, S/2) stage output after its LeakyReLU */
} textok__disc_stage;

struct textok_disc {
    textok_disc_config cfg;
    int                image_size;    /* S: the images it takes are (B, 3, S, S) */
    textok_kernels     k;             /* the table every buffer below belongs to */
    float  *params;                   /* one block from k.alloc, in state_dict order */
    size_t  n_params;
    float  *grads;                    /* same layout, zeroed at create; backward accumulates here */
    textok_tensor_spec *specs;        /* host arrays: tensor i is at params + offsets[i] */
    size_t *offsets;
    int     n_tensors;
    int     max_batch;                /* images per pass of textok_disc_logits */

    float *in_w, *in_b;               /* (hidden, 3, 5, 5), (hidden) block_in.0 */
    textok__disc_stage *stage;        /* (stages) host array */
    float *l0_w, *l0_b;               /* (C, C, 1, 1), (C) to_logits.0 */
    float *l2_w, *l2_b;               /* (1, C, 5, 5), (1) to_logits.2 */
    float *blur_k;                    /* k.alloc (1, 1, 4, 4): outer([1,3,3,1]) / 64 */

    /* activations: one arena for up to res_B images (textok__disc_reserve) */
    float *arena;
    size_t arena_floats;
    int    res_B, fwd_B;              /* reserved batch; batch of the last forward (0 = none) */
    float *img;                       /* (B, 3, S, S) the forward's input (block_in's dweight reads it) */
    float *a_in;                      /* (B, hidden, S, S) block_in output after its LeakyReLU */
    float *pooled;                    /* (B, C, pool, pool) */
    float *t0;                        /* (B, C, pool, pool) to_logits.0 output after its LeakyReLU */
    float *logits;                    /* (B, 1, pool, pool) for textok_disc_logits */
    float *ga, *gb;                   /* the stage conv's output in forward; gradients in backward */
    float *work;                      /* conv2d work: textok_conv2d_work_floats of the largest conv */
};

#define TEXTOK__DG(d, p) ((d)->grads + ((p) - (d)->params))   /* p's gradient, at the same offset */

static int textok__disc_config_check(const textok_disc_config *c)
{
#define TEXTOK__CHK(cond, ...) do { if (!(cond)) return textok__fail(TEXTOK_ERR_SHAPE, "discriminator config: " __VA_ARGS__); } while (0)
    if (!c) return textok__fail(TEXTOK_ERR_ARG, "discriminator: NULL config");
    TEXTOK__CHK(c->stages >= 1 && c->stages <= 16, "stages %d not in [1, 16]", c->stages);
    TEXTOK__CHK(c->hidden >= 1 && ((long)c->hidden << (c->stages - 1)) <= 65536,
                "hidden %d not in [1, 65536 / 2^(stages-1)] (the last stage has hidden * 2^(stages-1) channels)", c->hidden);
    TEXTOK__CHK(c->groups >= 1 && c->hidden % c->groups == 0, "groups %d must divide hidden %d", c->groups, c->hidden);
    TEXTOK__CHK(c->pool >= 1 && c->pool <= 4096, "pool %d not in [1, 4096]", c->pool);
#undef TEXTOK__CHK
    return TEXTOK_OK;
}

static int textok__disc_size_check(const textok_disc_config *c, int S)
{
    if (S < (1 << c->stages) || S > 8192 || S % (1 << c->stages))
        return textok__fail(TEXTOK_ERR_SHAPE, "discriminator config: image_size %d must be a multiple of 2^stages = %d in [%d, 8192] "
                            "(each stage halves it; odd sizes would need the official asymmetric blur padding)",
                            S, 1 << c->stages, 1 << c->stages);
    return TEXTOK_OK;
}

static void textok__disc_walk(const textok_disc_config *c, textok_disc *d, textok__walk *w)
{
    const int h = c->hidden, C = h << (c->stages - 1);
    int i;
    textok__wt(w, d ? &d->in_w : NULL, 4, h, 3, 5, 5, "block_in.0.weight");
    textok__wt(w, d ? &d->in_b : NULL, 1, h, 0, 0, 0, "block_in.0.bias");
    for (i = 0; i < c->stages; i++) {
        textok__disc_stage *s = d ? &d->stage[i] : NULL;
        int cin = i ? h << (i - 1) : h, cout = h << i;
        if (s) { s->cin = cin; s->cout = cout; }
        textok__wt(w, s ? &s->conv_w : NULL, 4, cout, cin, 3, 3, "blocks.%d.0.weight", i);
        textok__wt(w, s ? &s->conv_b : NULL, 1, cout, 0, 0, 0, "blocks.%d.0.bias", i);
        textok__wt(w, s ? &s->gn_w : NULL, 1, cout, 0, 0, 0, "blocks.%d.2.weight", i);
        textok__wt(w, s ? &s->gn_b : NULL, 1, cout, 0, 0, 0, "blocks.%d.2.bias", i);
    }
    textok__wt(w, d ? &d->l0_w : NULL, 4, C, C, 1, 1, "to_logits.0.weight");
    textok__wt(w, d ? &d->l0_b : NULL, 1, C, 0, 0, 0, "to_logits.0.bias");
    textok__wt(w, d ? &d->l2_w : NULL, 4, 1, C, 5, 5, "to_logits.2.weight");
    textok__wt(w, d ? &d->l2_b : NULL, 1, 1, 0, 0, 0, "to_logits.2.bias");
}

TEXTOKDEF int textok_disc_tensor_specs(const textok_disc_config *c, textok_tensor_spec *specs, int max_specs)
{
    textok__walk w;
    int st;
    if ((st = textok__disc_config_check(c)) != TEXTOK_OK) return st;
    memset(&w, 0, sizeof w);
    w.specs = specs;
    w.max_specs = specs ? max_specs : 0;
    textok__disc_walk(c, NULL, &w);
    return w.n;
}

static void textok__disc_carve(textok_disc *d, textok__carve *a, int B)
{
    const textok_disc_config *c = &d->cfg;
    const size_t b = (size_t)B, S = (size_t)d->image_size, h = (size_t)c->hidden, p = (size_t)c->pool;
    const size_t C = h << (c->stages - 1);
    int *o = &a->overflow, i;
    size_t grad, work, s = S;
    textok_conv2d_dims cd = textok__cdims(1, 3, (int)S, (int)S, (int)h, 5, 1, 2);
    work = textok_conv2d_work_floats(&cd);
    d->img    = textok__take(a, textok__mul3(b, 3, S * S, o));
    d->a_in   = textok__take(a, textok__mul3(b, h, S * S, o));
    grad = textok__mul3(b, h, S * S, o);
    for (i = 0; i < c->stages; i++) {
        textok__disc_stage *st = &d->stage[i];
        const size_t half = (s / 2) * (s / 2);
        st->blur = textok__take(a, textok__mul3(b, (size_t)st->cout, half, o));
        st->act  = textok__take(a, textok__mul3(b, (size_t)st->cout, half, o));
        st->mean = textok__take(a, textok__mul3(b, (size_t)c->groups, 1, o));
        st->rstd = textok__take(a, textok__mul3(b, (size_t)c->groups, 1, o));
        grad = textok__max2(grad, textok__mul3(b, textok__max2((size_t)st->cin, (size_t)st->cout), s * s, o));
        cd = textok__cdims(1, st->cin, (int)s, (int)s, st->cout, 3, 1, 1);
        work = textok__max2(work, textok_conv2d_work_floats(&cd));
        cd = textok__cdims(1, 1, (int)s, (int)s, 1, 4, 2, 1);
        work = textok__max2(work, textok_conv2d_work_floats(&cd));
        s /= 2;
    }
    grad = textok__max2(grad, textok__mul3(b, C, p * p, o));
    cd = textok__cdims(1, (int)C, (int)p, (int)p, 1, 5, 1, 2);
    work = textok__max2(work, textok_conv2d_work_floats(&cd));
    d->pooled = textok__take(a, textok__mul3(b, C, p * p, o));
    d->t0     = textok__take(a, textok__mul3(b, C, p * p, o));
    d->logits = textok__take(a, textok__mul3(b, 1, p * p, o));
    d->ga     = textok__take(a, grad);
    d->gb     = textok__take(a, grad);
    d->work   = textok__take(a, work);
}

/* Activations for up to B images (once, outside the step; a smaller batch reuses them). */
static int textok__disc_reserve(textok_disc *d, int B)
{
    textok__carve a;
    if (!d) return textok__fail(TEXTOK_ERR_ARG, "discriminator reserve: NULL model");
    if (B < 1 || B > 4096) return textok__fail(TEXTOK_ERR_ARG, "discriminator: batch %d not in [1, 4096]", B);
    if (d->arena && B <= d->res_B) return TEXTOK_OK;
    if (d->arena) d->k.free(&d->k, d->arena);
    d->arena = NULL; d->res_B = d->fwd_B = 0;
    memset(&a, 0, sizeof a);
    textok__disc_carve(d, &a, B);
    if (a.overflow)
        return textok__fail(TEXTOK_ERR_SHAPE, "discriminator: an activation buffer for %d images of %d x %d would exceed INT_MAX floats",
                            B, d->image_size, d->image_size);
    d->arena = (float *)d->k.alloc(&d->k, a.used * sizeof(float));
    if (!d->arena)
        return textok__fail(TEXTOK_ERR_NOMEM, "discriminator: cannot allocate %lu MB of activations for %d images",
                            (unsigned long)(a.used * sizeof(float) >> 20), B);
    d->arena_floats = a.used;
    memset(&a, 0, sizeof a);
    a.base = d->arena;
    textok__disc_carve(d, &a, B);
    d->res_B = B;
    return TEXTOK_OK;
}

/* logits (B, 1, pool, pool) = D(img), img (B, 3, S, S) in [0, 1] as given (no rescale), both
   DEVICE memory, B <= the reserved batch. Keeps the activations for backward. */
static void textok__disc_forward(textok_disc *d, float *logits, const float *img, int B)
{
    const textok_kernels *k = &d->k;
    const textok_disc_config *c = &d->cfg;
    const int S = d->image_size, P = c->pool, C = c->hidden << (c->stages - 1);
    const float *in;
    int i, s = S;
    TEXTOK_ASSERT(d->arena && B >= 1 && B <= d->res_B);
    if (!d->arena || B < 1 || B > d->res_B) {   /* a caller's bug: refuse rather than overrun */
        (void)textok__fail(TEXTOK_ERR_ARG, "discriminator forward: batch %d, reserved %d", B, d->res_B);
        return;
    }
    if (img != d->img) (void)k->copy(k, d->img, img, (size_t)B * 3 * S * S * sizeof(float));
    textok__conv_same(k, d->a_in, d->img, d->in_w, d->in_b, B, 3, S, S, c->hidden, 5, d->work);
    k->leaky_relu_forward(k, d->a_in, d->a_in, (size_t)B * c->hidden * S * S, TEXTOK__DISC_SLOPE);
    in = d->a_in;
    for (i = 0; i < c->stages; i++) {
        textok__disc_stage *st = &d->stage[i];
        const int half = s / 2;
        const size_t n = (size_t)B * st->cout * half * half;
        textok_conv2d_dims bd = textok__cdims(B * st->cout, 1, s, s, 1, 4, 2, 1);
        textok__conv_same(k, d->ga, in, st->conv_w, st->conv_b, B, st->cin, s, s, st->cout, 3, d->work);
        k->conv2d_forward(k, st->blur, d->ga, d->blur_k, NULL, &bd, d->work);   /* depthwise: channels as images */
        k->groupnorm_forward(k, st->act, st->mean, st->rstd, st->blur, st->gn_w, st->gn_b, B, st->cout, half * half,
                             c->groups, TEXTOK__DISC_GN_EPS);
        k->leaky_relu_forward(k, st->act, st->act, n, TEXTOK__DISC_SLOPE);
        in = st->act;
        s = half;
    }
    k->maxpool_forward(k, d->pooled, in, B * C, s, s, P, P);
    textok__conv_same(k, d->t0, d->pooled, d->l0_w, d->l0_b, B, C, P, P, C, 1, d->work);
    k->leaky_relu_forward(k, d->t0, d->t0, (size_t)B * C * P * P, TEXTOK__DISC_SLOPE);
    textok__conv_same(k, logits, d->t0, d->l2_w, d->l2_b, B, C, P, P, 1, 5, d->work);
    d->fwd_B = B;
}

/* dimg (B, 3, S, S; may be NULL) += d/dimg of sum(logits * dlogits); when param_grads != 0 also
   d->grads += d/dparams. After a forward with the same B; dlogits (B, 1, pool, pool). DEVICE
   memory. ga and gb take turns as source and destination of each step's gradient. */
static void textok__disc_backward(textok_disc *d, float *dimg, int param_grads, const float *dlogits, int B)
{
    const textok_kernels *k = &d->k;
    const textok_disc_config *c = &d->cfg;
    const int S = d->image_size, P = c->pool, C = c->hidden << (c->stages - 1), sL = S >> c->stages;
    const size_t npool = (size_t)B * C * P * P;
    float *ga = d->ga, *gb = d->gb, *tmp;
    textok_conv2d_dims cd;
    int i;
    TEXTOK_ASSERT(d->fwd_B == B);
    if (d->fwd_B != B || B < 1) {
        (void)textok__fail(TEXTOK_ERR_ARG, "discriminator backward: batch %d, but the last forward had %d", B, d->fwd_B);
        return;
    }
#define TEXTOK__PG(p) (param_grads ? TEXTOK__DG(d, p) : (float *)NULL)
    if (!dimg && !param_grads) return;
    /* to_logits.2 (5x5), its LeakyReLU, to_logits.0 (1x1): ga = gradient at the pooled map */
    cd = textok__cdims(B, C, P, P, 1, 5, 1, 2);
    k->fill(k, ga, npool, 0.0f);
    k->conv2d_backward(k, ga, TEXTOK__PG(d->l2_w), TEXTOK__PG(d->l2_b), dlogits, d->t0, d->l2_w, &cd, d->work);
    k->fill(k, gb, npool, 0.0f);
    k->leaky_relu_backward(k, gb, ga, d->t0, npool, TEXTOK__DISC_SLOPE);   /* the mask from the output */
    cd = textok__cdims(B, C, P, P, C, 1, 1, 0);
    k->fill(k, ga, npool, 0.0f);
    k->conv2d_backward(k, ga, TEXTOK__PG(d->l0_w), TEXTOK__PG(d->l0_b), gb, d->pooled, d->l0_w, &cd, d->work);
    /* the pool: gb = gradient at the last stage's output */
    k->fill(k, gb, (size_t)B * C * sL * sL, 0.0f);
    k->maxpool_backward(k, gb, ga, d->stage[c->stages - 1].act, B * C, sL, sL, P, P);
    for (i = c->stages - 1; i >= 0; i--) {
        /* gb: gradient at stage i's output */
        textok__disc_stage *st = &d->stage[i];
        const int s = st->S, half = s / 2;
        const size_t nh = (size_t)B * st->cout * half * half;
        k->fill(k, ga, nh, 0.0f);
        k->leaky_relu_backward(k, ga, gb, st->act, nh, TEXTOK__DISC_SLOPE);
        k->fill(k, gb, nh, 0.0f);
        k->groupnorm_backward(k, gb, TEXTOK__PG(st->gn_w), TEXTOK__PG(st->gn_b), ga, st->blur, st->gn_w, st->mean, st->rstd,
                              B, st->cout, half * half, c->groups);
        /* the blur has no weight gradient, so its input (not kept) is never read: ga, of that
           shape, stands in for it */
        cd = textok__cdims(B * st->cout, 1, s, s, 1, 4, 2, 1);
        k->fill(k, ga, (size_t)B * st->cout * s * s, 0.0f);
        k->conv2d_backward(k, ga, NULL, NULL, gb, ga, d->blur_k, &cd, d->work);
        cd = textok__cdims(B, st->cin, s, s, st->cout, 3, 1, 1);
        k->fill(k, gb, (size_t)B * st->cin * s * s, 0.0f);
        k->conv2d_backward(k, gb, TEXTOK__PG(st->conv_w), TEXTOK__PG(st->conv_b), ga, i ? d->stage[i - 1].act : d->a_in,
                           st->conv_w, &cd, d->work);
    }
    /* gb: gradient at block_in's output; its LeakyReLU, then the 5x5 conv into dimg */
    k->fill(k, ga, (size_t)B * c->hidden * S * S, 0.0f);
    k->leaky_relu_backward(k, ga, gb, d->a_in, (size_t)B * c->hidden * S * S, TEXTOK__DISC_SLOPE);
    tmp = ga; ga = gb; gb = tmp;
    cd = textok__cdims(B, 3, S, S, c->hidden, 5, 1, 2);
    k->conv2d_backward(k, dimg, TEXTOK__PG(d->in_w), TEXTOK__PG(d->in_b), gb, d->img, d->in_w, &cd, d->work);
#undef TEXTOK__PG
}

TEXTOKDEF void textok_disc_free(textok_disc *d)
{
    if (!d) return;
    if (d->params) d->k.free(&d->k, d->params);
    if (d->grads) d->k.free(&d->k, d->grads);
    if (d->blur_k) d->k.free(&d->k, d->blur_k);
    if (d->arena) d->k.free(&d->k, d->arena);
    TEXTOK_FREE(d->specs);
    TEXTOK_FREE(d->offsets);
    TEXTOK_FREE(d->stage);
    TEXTOK_FREE(d);
}

/* A model for (c, S): specs and offsets, the parameter block (bound, not filled), the gradient
   block (zeroed) and the blur kernel. */
static int textok__disc_new(textok_disc **out, const textok_disc_config *c, int S, const textok_params *params)
{
    textok_params prm = params ? *params : textok_default_params();
    textok_disc *d;
    textok__walk w;
    float *host = NULL, blur[16];
    int n, i, st;
    static const float taps[4] = { 1.0f, 3.0f, 3.0f, 1.0f };
    *out = NULL;
    if ((st = textok__disc_config_check(c)) != TEXTOK_OK || (st = textok__disc_size_check(c, S)) != TEXTOK_OK) return st;
    if (prm.max_batch < 1 || prm.max_batch > 4096)
        return textok__fail(TEXTOK_ERR_ARG, "discriminator: max_batch %d not in [1, 4096]", prm.max_batch);
    n = textok_disc_tensor_specs(c, NULL, 0);
    d = (textok_disc *)textok__calloc(1, sizeof *d);
    if (!d) return textok__fail(TEXTOK_ERR_NOMEM, "discriminator: out of memory");
    d->cfg = *c;
    d->image_size = S;
    d->k = prm.kernels ? *prm.kernels : textok_cpu_kernels(prm.n_threads);
    d->max_batch = prm.max_batch;
    d->n_tensors = n;
    d->specs = (textok_tensor_spec *)textok__calloc((size_t)n, sizeof *d->specs);
    d->offsets = (size_t *)textok__calloc((size_t)n, sizeof *d->offsets);
    d->stage = (textok__disc_stage *)textok__calloc((size_t)c->stages, sizeof *d->stage);
    if (!d->specs || !d->offsets || !d->stage) { st = textok__fail(TEXTOK_ERR_NOMEM, "discriminator: out of memory"); goto fail; }
    textok_disc_tensor_specs(c, d->specs, n);
    memset(&w, 0, sizeof w);
    textok__disc_walk(c, d, &w);
    d->n_params = w.offset;
    for (i = 0; i < c->stages; i++) d->stage[i].S = S >> i;
    for (i = 1; i < n; i++) d->offsets[i] = d->offsets[i - 1] + textok__spec_numel(&d->specs[i - 1]);
    d->params = (float *)d->k.alloc(&d->k, d->n_params * sizeof(float));
    d->grads = (float *)d->k.alloc(&d->k, d->n_params * sizeof(float));
    d->blur_k = (float *)d->k.alloc(&d->k, sizeof blur);
    host = (float *)textok__calloc(d->n_params, sizeof(float));
    if (!d->params || !d->grads || !d->blur_k || !host) {
        st = textok__fail(TEXTOK_ERR_NOMEM, "discriminator: cannot allocate %lu parameters", (unsigned long)d->n_params);
        goto fail;
    }
    memset(&w, 0, sizeof w);
    w.base = d->params;
    textok__disc_walk(c, d, &w);
    for (i = 0; i < 16; i++) blur[i] = taps[i / 4] * taps[i % 4] / 64.0f;   /* exact in float */
    if ((st = d->k.to_device(&d->k, d->grads, host, d->n_params * sizeof(float))) != TEXTOK_OK ||
        (st = d->k.to_device(&d->k, d->blur_k, blur, sizeof blur)) != TEXTOK_OK) goto fail;
    TEXTOK_FREE(host);
    *out = d;
    return TEXTOK_OK;
fail:
    TEXTOK_FREE(host);
    textok_disc_free(d);
    return st;
}

TEXTOKDEF int textok_disc_create(textok_disc **out, const textok_disc_config *c, int image_size,
                                 const textok_params *p, uint64_t seed)
{
    textok_disc *d = NULL;
    textok_rng rng;
    float *stage = NULL, bound = 0.0f;
    int i, status;
    if (!out || !c) return textok__fail(TEXTOK_ERR_ARG, "textok_disc_create: NULL argument");
    *out = NULL;
    if ((status = textok__disc_new(&d, c, image_size, p)) != TEXTOK_OK) return status;
    stage = (float *)textok__malloc(d->n_params * sizeof(float));
    if (!stage) { textok_disc_free(d); return textok__fail(TEXTOK_ERR_NOMEM, "textok_disc_create: out of memory"); }
    textok_rng_seed(&rng, seed);
    for (i = 0; i < d->n_tensors; i++) textok__torch_init(&rng, &d->specs[i], stage + d->offsets[i], &bound);
    status = d->k.to_device(&d->k, d->params, stage, d->n_params * sizeof(float));
    TEXTOK_FREE(stage);
    if (status != TEXTOK_OK) { textok_disc_free(d); return status; }
    *out = d;
    return TEXTOK_OK;
}

TEXTOKDEF int textok_disc_load_st(textok_disc **out, const textok_safetensors *st, const textok_params *p)
{
    textok_disc_config c;
    textok_disc *d = NULL;
    int S, status;
    if (!out || !st) return textok__fail(TEXTOK_ERR_ARG, "textok_disc_load: NULL argument");
    *out = NULL;
    if ((status = textok__meta_model(st, "disc", "discriminator")) != TEXTOK_OK ||
        (status = textok__meta_int(st, "hidden", &c.hidden)) != TEXTOK_OK ||
        (status = textok__meta_int(st, "stages", &c.stages)) != TEXTOK_OK ||
        (status = textok__meta_int(st, "groups", &c.groups)) != TEXTOK_OK ||
        (status = textok__meta_int(st, "pool", &c.pool)) != TEXTOK_OK ||
        (status = textok__meta_int(st, "image_size", &S)) != TEXTOK_OK)
        return status;
    if ((status = textok__disc_new(&d, &c, S, p)) != TEXTOK_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", textok_last_error());
        return textok__fail(status, "%s: %s", st->path, msg);
    }
    if ((status = textok__nets_load_params(&d->k, st, d->specs, d->n_tensors, d->params, "discriminator")) != TEXTOK_OK) {
        textok_disc_free(d);
        return status;
    }
    *out = d;
    return TEXTOK_OK;
}

#ifndef TEXTOK_NO_STDIO
TEXTOKDEF int textok_disc_load(textok_disc **out, const char *path, const textok_params *p)
{
    textok_safetensors st;
    int status;
    if (!out || !path) return textok__fail(TEXTOK_ERR_ARG, "textok_disc_load: NULL argument");
    *out = NULL;
    if ((status = textok_st_open(&st, path)) != TEXTOK_OK) return status;
    status = textok_disc_load_st(out, &st, p);
    textok_st_close(&st);
    return status;
}
#endif

TEXTOKDEF int textok_disc_logits(textok_disc *d, const float *images, int B, float *logits)
{
    const textok_kernels *k;
    size_t img, nl;
    int b0, st;
    if (!d || B < 0 || (B > 0 && (!images || !logits)))
        return textok__fail(TEXTOK_ERR_ARG, "textok_disc_logits: NULL argument or batch %d < 0", B);
    if (B == 0) return TEXTOK_OK;
    if ((st = textok__disc_reserve(d, B < d->max_batch ? B : d->max_batch)) != TEXTOK_OK) return st;
    k = &d->k;
    img = (size_t)3 * d->image_size * d->image_size;
    nl = (size_t)d->cfg.pool * d->cfg.pool;
    for (b0 = 0; b0 < B; b0 += d->res_B) {
        const int nb = B - b0 < d->res_B ? B - b0 : d->res_B;
        if ((st = k->to_device(k, d->img, images + (size_t)b0 * img, (size_t)nb * img * sizeof(float))) != TEXTOK_OK)
            return textok__fail(st, "textok_disc_logits: copying images to the device failed");
        textok__disc_forward(d, d->logits, d->img, nb);
        if ((st = k->to_host(k, logits + (size_t)b0 * nl, d->logits, (size_t)nb * nl * sizeof(float))) != TEXTOK_OK)
            return textok__fail(st, "textok_disc_logits: copying logits to the host failed");
    }
    return TEXTOK_OK;
}
#undef TEXTOK__DG

/* ---------------------------------------------------------------------------------------------
   13. Training: the ViT and TiTok backward passes, losses, AdamW, EMA, checkpoints.
   The inference path (section 11) overwrites its activations in place; training keeps every
   activation that a backward pass reads, in a "tape" carved from one arena when the trainer
   is created. Backward kernels accumulate, so each gradient scratch buffer is zeroed with
   k->fill right before the kernel that writes it. */

/* ----- the ViT stack with its tape ---------------------------------------------------------- */
typedef struct textok__vit_layer_tape {
    float *xin;                  /* (B, T, D) block input (layer 0: ln_pre output) */
    float *ln1, *ln1_mean, *ln1_rstd;   /* (B, T, D), (B*T), (B*T) */
    float *q, *k, *v, *att;      /* (B, T, D) */
    float *lse;                  /* (B, H, T) */
    float *xmid;                 /* (B, T, D) xin + attention branch */
    float *ln2, *ln2_mean, *ln2_rstd;
    float *fc, *gelu;            /* (B, T, M) before and after the GELU */
} textok__vit_layer_tape;

typedef struct textok__vit_tape {
    textok__vit_layer_tape *layers;     /* (L) host array */
    float *pre_mean, *pre_rstd;         /* (B*T) ln_pre statistics */
    float *xout;                        /* (B, T, D) output of the last block */
} textok__vit_tape;

/* gradient scratch shared by both stacks (sized for the wider one) */
typedef struct textok__vit_grad_scratch {
    float *dx, *dln, *dq, *dk, *dv, *datt;   /* (B, T, Dmax) */
    float *dmlp, *dfc;                       /* (B, T, Mmax) */
    float *work;                             /* attention work */
} textok__vit_grad_scratch;

static void textok__vit_tape_carve(textok__carve *a, textok__vit_tape *t, int L, size_t B, size_t T, size_t D,
                                   size_t M, size_t H)
{
    int l, *o = &a->overflow;
    for (l = 0; l < L; l++) {
        textok__vit_layer_tape *y = &t->layers[l];
        y->xin = textok__take(a, textok__mul3(B, T, D, o));
        y->ln1 = textok__take(a, textok__mul3(B, T, D, o));
        y->ln1_mean = textok__take(a, B * T); y->ln1_rstd = textok__take(a, B * T);
        y->q = textok__take(a, textok__mul3(B, T, D, o));
        y->k = textok__take(a, textok__mul3(B, T, D, o));
        y->v = textok__take(a, textok__mul3(B, T, D, o));
        y->att = textok__take(a, textok__mul3(B, T, D, o));
        y->lse = textok__take(a, textok__mul3(B, H, T, o));
        y->xmid = textok__take(a, textok__mul3(B, T, D, o));
        y->ln2 = textok__take(a, textok__mul3(B, T, D, o));
        y->ln2_mean = textok__take(a, B * T); y->ln2_rstd = textok__take(a, B * T);
        y->fc = textok__take(a, textok__mul3(B, T, M, o));
        y->gelu = textok__take(a, textok__mul3(B, T, M, o));
    }
    t->pre_mean = textok__take(a, B * T);
    t->pre_rstd = textok__take(a, B * T);
    t->xout = textok__take(a, textok__mul3(B, T, D, o));
}

static textok_attention_dims textok__vit_ad(const textok__vit *w, int B, int T)
{
    textok_attention_dims ad;
    ad.B = B; ad.Tq = T; ad.Tk = T; ad.C = w->D; ad.H = w->H; ad.scale = (float)(1.0 / sqrt((double)w->D / w->H));
    return ad;
}

/* The same computation as textok__vit_forward, keeping the tape: seq (B, T, D) -> t->xout. */
static void textok__vit_train_forward(const textok_kernels *k, const textok__vit *w, textok__vit_tape *t,
                                      const float *seq, float *att_work, int B, int T, const unsigned char *key_mask)
{
    const int D = w->D, M = w->M, BT = B * T;
    const size_t n = (size_t)BT * D;
    textok_attention_dims ad = textok__vit_ad(w, B, T);
    int l;
    k->layernorm_forward(k, w->L ? t->layers[0].xin : t->xout, t->pre_mean, t->pre_rstd, seq,
                         w->ln_pre_w, w->ln_pre_b, BT, D, 1e-5f);
    for (l = 0; l < w->L; l++) {
        const textok__vit_block *b = &w->blocks[l];
        textok__vit_layer_tape *y = &t->layers[l];
        float *xnext = l + 1 < w->L ? t->layers[l + 1].xin : t->xout;
        k->layernorm_forward(k, y->ln1, y->ln1_mean, y->ln1_rstd, y->xin, b->ln1_w, b->ln1_b, BT, D, 1e-5f);
        textok__linear(k, y->q, y->ln1, b->qkv_w, b->qkv_b, BT, D, D);
        textok__linear(k, y->k, y->ln1, b->qkv_w + (size_t)D * D, b->qkv_b + D, BT, D, D);
        textok__linear(k, y->v, y->ln1, b->qkv_w + 2 * (size_t)D * D, b->qkv_b + 2 * D, BT, D, D);
        k->attention_forward(k, y->att, y->lse, y->q, y->k, y->v, NULL, key_mask, &ad, att_work);
        textok__linear(k, y->xmid, y->att, b->proj_w, b->proj_b, BT, D, D);
        k->add_forward(k, y->xmid, y->xmid, y->xin, n);
        k->layernorm_forward(k, y->ln2, y->ln2_mean, y->ln2_rstd, y->xmid, b->ln2_w, b->ln2_b, BT, D, 1e-5f);
        textok__linear(k, y->fc, y->ln2, b->fc_w, b->fc_b, BT, D, M);
        k->gelu_forward(k, y->gelu, y->fc, (size_t)BT * M, 0);
        textok__linear(k, xnext, y->gelu, b->fc2_w, b->fc2_b, BT, M, D);
        k->add_forward(k, xnext, xnext, y->xmid, n);
    }
}

/* dxout (B, T, D): the gradient at the stack's output, consumed (it becomes the running residual
   gradient). dseq (B, T, D) += the gradient at the input sequence. g: the grads with the
   layout of w. */
static void textok__vit_train_backward(const textok_kernels *k, const textok__vit *w, const textok__vit *g,
                                       const textok__vit_tape *t, const float *seq, float *dseq, float *dxout,
                                       const textok__vit_grad_scratch *s, int B, int T, const unsigned char *key_mask)
{
    const int D = w->D, M = w->M, BT = B * T;
    const size_t n = (size_t)BT * D, nm = (size_t)BT * M;
    textok_attention_dims ad = textok__vit_ad(w, B, T);
    float *dx = dxout;
    int l, j;
    for (l = w->L - 1; l >= 0; l--) {
        const textok__vit_block *b = &w->blocks[l], *gb = &g->blocks[l];
        const textok__vit_layer_tape *y = &t->layers[l];
        /* xnext = xmid + fc2(gelu(fc(ln2(xmid)))): dx already is d xmid's residual share */
        k->fill(k, s->dmlp, nm, 0.0f);
        textok__linear_backward(k, s->dmlp, gb->fc2_w, gb->fc2_b, dx, y->gelu, b->fc2_w, BT, M, D);
        k->fill(k, s->dfc, nm, 0.0f);
        k->gelu_backward(k, s->dfc, s->dmlp, y->fc, nm, 0);
        k->fill(k, s->dln, n, 0.0f);
        textok__linear_backward(k, s->dln, gb->fc_w, gb->fc_b, s->dfc, y->ln2, b->fc_w, BT, D, M);
        k->layernorm_backward(k, dx, gb->ln2_w, gb->ln2_b, s->dln, y->xmid, b->ln2_w, y->ln2_mean, y->ln2_rstd, BT, D);
        /* xmid = xin + proj(attention(q, k, v)) with q, k, v = rows of in_proj applied to ln1 */
        k->fill(k, s->datt, n, 0.0f);
        textok__linear_backward(k, s->datt, gb->proj_w, gb->proj_b, dx, y->att, b->proj_w, BT, D, D);
        k->fill(k, s->dq, n, 0.0f); k->fill(k, s->dk, n, 0.0f); k->fill(k, s->dv, n, 0.0f);
        k->attention_backward(k, s->dq, s->dk, s->dv, NULL, s->datt, y->q, y->k, y->v, NULL, key_mask,
                              y->att, y->lse, &ad, s->work);
        k->fill(k, s->dln, n, 0.0f);
        for (j = 0; j < 3; j++) {
            const float *dy = j == 0 ? s->dq : j == 1 ? s->dk : s->dv;
            textok__linear_backward(k, s->dln, gb->qkv_w + (size_t)j * D * D, gb->qkv_b + (size_t)j * D, dy,
                                    y->ln1, b->qkv_w + (size_t)j * D * D, BT, D, D);
        }
        k->layernorm_backward(k, dx, gb->ln1_w, gb->ln1_b, s->dln, y->xin, b->ln1_w, y->ln1_mean, y->ln1_rstd, BT, D);
    }
    k->layernorm_backward(k, dseq, g->ln_pre_w, g->ln_pre_b, dx, seq, w->ln_pre_w, t->pre_mean, t->pre_rstd, BT, D);
}

/* ----- the MaskGIT-VQGAN pixel decoder with its tape: a list of stages run in order ---------- */
enum { TEXTOK__PX_CONV, TEXTOK__PX_RES, TEXTOK__PX_UP, TEXTOK__PX_OUT };
typedef struct textok__px_stage {
    int kind, cin, cout, H, W;          /* H, W: the stage's input size */
    const float *w, *b;                 /* conv weight/bias (CONV, UP, OUT) */
    float *gw, *gb;                     /* their gradients */
    const textok__resblock *r;          /* RES: the block and its gradient twin */
    const textok__resblock *gr;
    const float *nw, *nb;               /* OUT: norm_out */
    float *gnw, *gnb;
    float *in, *out;                    /* (B, cin, H, W), (B, cout, H', W') */
    float *t1, *m1, *r1, *s1, *h1, *t2, *m2, *r2, *s2, *h2;   /* RES internals; OUT: t1 m1 r1 s1; UP: t1 */
} textok__px_stage;

/* ----- the trainer --------------------------------------------------------------------------- */
struct textok_trainer {
    textok_train_config tc;
    textok_titok       *m;              /* borrowed */
    textok_lpips       *lpips;          /* borrowed, may be NULL */
    textok_disc        *disc;           /* borrowed, may be NULL */
    textok_kernels      k;
    textok_rng          rng;
    int                 step, disc_step;
    float               lecam_real, lecam_fake;

    /* tokenizer parameter-shaped blocks, each n_params floats in the model's layout */
    textok_titok        g;              /* grads: a shadow model whose named pointers point into grads */
    float              *grads, *adam_m, *adam_v, *ema;
    textok_tensor_spec *specs;          /* (n_tensors) names/shapes; offsets below */
    size_t             *offsets;
    int                 n_tensors;
    float              *disc_m, *disc_v;   /* discriminator AdamW moments */
    size_t             *disc_offsets;   /* (n_tensors + 1) the discriminator's tensor offsets and end */

    /* the tape and gradient scratch: one arena */
    float  *arena;
    size_t  arena_floats;
    int     B, S, P, Te, Td, K, C, Cq;
    float  *img, *recon;                /* (B, 3, S, S) input x, reconstruction x^ */
    float  *text;                       /* (B, Lt, Dt) text embeddings, zero-padded (models with text) */
    unsigned char *kmask_e, *kmask_d;   /* (B, Te), (B, Td) attention key masks, NULL for a stack without text */
    unsigned char *h_drop;              /* (B) host: text dropped for this image in this step */
    float  *patches, *tok;              /* (B, De, P), (B, P, De) */
    float  *seq_e, *seq_d;              /* (B, Te, De), (B, Td, Dd) */
    textok__vit_tape enc, dec;
    float  *lat_e, *lat_e_mean, *lat_e_rstd;   /* (B, K, De), (B*K) encoder ln_post */
    float  *zt;                         /* (B, K, Cq) encoder output, token-major */
    float  *zn, *zq;                    /* VQ: (B*K, C) searched vectors, their codebook entries */
    int32_t *ids;                       /* (B*K) */
    float  *cb_work;
    float  *zoff, *noise, *zs;          /* VAE: (B, 2C, K) official layout, (B, C, K) noise, sample */
    float  *zdec;                       /* (B, K, C) the decoder's input */
    float  *lat_d;                      /* (B, K, Dd) decoder_embed output */
    float  *dec_out, *dec_mean, *dec_rstd;   /* (B, P, Dd), (B*P) decoder ln_post */
    float  *head1;                      /* (B, P, p*p*3) or legacy (B, P, 2Dd) after tanh */
    float  *img2;                       /* non-legacy: (B, 3, S, S) before conv_out */
    float  *logits, *probs, *codes;     /* legacy: (B, P, Vp), (B, P, Vp), (B, P, Z) */
    float  *px_in;                      /* legacy: (B, Z, g, g) */
    textok__px_stage *px;               /* legacy: the pixel decoder's stages (host array) */
    int     n_px;
    float  *conv_work;
    float  *scal;                       /* (16) device scalars: losses, norms */
    /* gradient scratch */
    textok__vit_grad_scratch vs;
    float  *dseq, *dxout;               /* (B, max(Te, Td), Dmax) */
    float  *drecon, *dimg2, *dhead1, *dhead1b, *ddec_out, *dlogits, *dprobs, *dcodes, *dpx_in;
    float  *dpa, *dpb, *dpc, *dpd, *dpe, *dpf;   /* pixel-decoder gradient scratch (B * act) each */
    float  *dlat, *dzt, *dzdec, *dzn, *dzq, *dzoff, *dzs, *dms, *dcb;
    float  *dpatches, *dtok;
    float  *dlogit_disc;                /* (2B * pool^2) */
    float  *disc_in;                    /* (2B, 3, S, S) real then fake */
    /* host staging */
    float  *h_logits;                   /* (2B * pool^2) */
    float  *h_noise;                    /* (B * C * K) */
};

static textok_conv2d_dims textok__same_dims(int B, int C, int H, int W, int OC, int ksize)
{
    textok_conv2d_dims d;
    d.B = B; d.C = C; d.H = H; d.W = W; d.OC = OC; d.KH = ksize; d.KW = ksize; d.stride = 1; d.pad = ksize / 2;
    return d;
}

/* The pixel decoder as a list of stages (count with st == NULL), buffers carved from a. */
static int textok__px_build(textok_trainer *t, textok__carve *a, textok__px_stage *st, size_t *conv_work, size_t *act)
{
    const textok_titok_config *c = &t->m->cfg;
    const textok__pixel_decoder *px = &t->m->pix, *gx = &t->g.pix;
    const size_t B = (size_t)t->B, G = (size_t)c->pixel_groups;
    const int nb = c->pixel_res_blocks, top = textok__pix_ch(c, c->pixel_num_levels - 1);
    int n = 0, H = c->image_size / c->patch_size, l, j, *o = &a->overflow;
    float *prev = t->px_in;
#define TEXTOK__PX_NEW(kind_, cin_, cout_) do { \
        textok__px_stage *s_ = st ? &st[n] : NULL; \
        if (s_) { memset(s_, 0, sizeof *s_); s_->kind = (kind_); s_->cin = (cin_); s_->cout = (cout_); s_->H = H; s_->W = H; s_->in = prev; } \
        cur = s_; n++; } while (0)
    textok__px_stage tmp, *cur;
    size_t hw = (size_t)H * H;
    memset(&tmp, 0, sizeof tmp);
    /* conv_in */
    TEXTOK__PX_NEW(TEXTOK__PX_CONV, c->pixel_z_channels, top);
    if (!cur) cur = &tmp;
    cur->w = px->conv_in_w; cur->b = px->conv_in_b; cur->gw = gx->conv_in_w; cur->gb = gx->conv_in_b;
    cur->out = prev = textok__take(a, textok__mul3(B, (size_t)top, hw, o));
    *conv_work = textok__max2(*conv_work, textok__conv_same_work(c->pixel_z_channels, H, top, 3));
    *act = textok__max2(*act, textok__max2((size_t)c->pixel_z_channels, (size_t)top) * hw);
    for (l = c->pixel_num_levels; l >= 0; l--) {   /* l == levels: the mid blocks */
        for (j = 0; j < nb; j++) {
            const textok__resblock *r = l == c->pixel_num_levels ? &px->mid[j] : &px->up[l * nb + j];
            const textok__resblock *gr = l == c->pixel_num_levels ? &gx->mid[j] : &gx->up[l * nb + j];
            int cin = l == c->pixel_num_levels ? top : r->cin, cout = l == c->pixel_num_levels ? top : r->cout;
            TEXTOK__PX_NEW(TEXTOK__PX_RES, cin, cout);
            if (!cur) cur = &tmp;
            cur->r = r; cur->gr = gr;
            cur->t1 = textok__take(a, textok__mul3(B, (size_t)cin, hw, o));
            cur->m1 = textok__take(a, B * G); cur->r1 = textok__take(a, B * G);
            cur->s1 = textok__take(a, textok__mul3(B, (size_t)cin, hw, o));
            cur->h1 = textok__take(a, textok__mul3(B, (size_t)cout, hw, o));
            cur->t2 = textok__take(a, textok__mul3(B, (size_t)cout, hw, o));
            cur->m2 = textok__take(a, B * G); cur->r2 = textok__take(a, B * G);
            cur->s2 = textok__take(a, textok__mul3(B, (size_t)cout, hw, o));
            cur->h2 = textok__take(a, textok__mul3(B, (size_t)cout, hw, o));
            cur->out = prev = textok__take(a, textok__mul3(B, (size_t)cout, hw, o));
            *conv_work = textok__max2(*conv_work, textok__conv_same_work(cin, H, cout, 3));
            *conv_work = textok__max2(*conv_work, textok__conv_same_work(cout, H, cout, 3));
            *act = textok__max2(*act, textok__max2((size_t)cin, (size_t)cout) * hw);
        }
        if (l > 0 && l < c->pixel_num_levels) {   /* nearest x2 then a 3x3 conv */
            int ch = textok__pix_ch(c, l);
            TEXTOK__PX_NEW(TEXTOK__PX_UP, ch, ch);
            if (!cur) cur = &tmp;
            cur->w = px->upsample_w[l]; cur->b = px->upsample_b[l]; cur->gw = gx->upsample_w[l]; cur->gb = gx->upsample_b[l];
            hw *= 4;
            cur->t1 = textok__take(a, textok__mul3(B, (size_t)ch, hw, o));
            cur->out = prev = textok__take(a, textok__mul3(B, (size_t)ch, hw, o));
            *conv_work = textok__max2(*conv_work, textok__conv_same_work(ch, 2 * H, ch, 3));
            *act = textok__max2(*act, (size_t)ch * hw);
            H *= 2;
        }
    }
    {   /* norm_out, SiLU, conv_out -> the reconstruction */
        int ch = textok__pix_ch(c, 0);
        TEXTOK__PX_NEW(TEXTOK__PX_OUT, ch, 3);
        if (!cur) cur = &tmp;
        cur->w = px->conv_out_w; cur->b = px->conv_out_b; cur->gw = gx->conv_out_w; cur->gb = gx->conv_out_b;
        cur->nw = px->norm_out_w; cur->nb = px->norm_out_b; cur->gnw = gx->norm_out_w; cur->gnb = gx->norm_out_b;
        cur->t1 = textok__take(a, textok__mul3(B, (size_t)ch, hw, o));
        cur->m1 = textok__take(a, B * G); cur->r1 = textok__take(a, B * G);
        cur->s1 = textok__take(a, textok__mul3(B, (size_t)ch, hw, o));
        cur->out = t->recon;
        *conv_work = textok__max2(*conv_work, textok__conv_same_work(ch, H, 3, 3));
    }
#undef TEXTOK__PX_NEW
    return n;
}

/* Every tape and scratch buffer of the trainer (run once to size, once to bind). */
static void textok__trainer_carve(textok_trainer *t, textok__carve *a)
{
    const textok_titok *m = t->m;
    const textok_titok_config *c = &m->cfg;
    const size_t B = (size_t)t->B, Te = (size_t)t->Te, Td = (size_t)t->Td, T = Te > Td ? Te : Td;
    const size_t P = (size_t)t->P, K = (size_t)t->K, C = (size_t)t->C;
    const size_t Cq = (size_t)t->Cq, S = (size_t)t->S, p = (size_t)c->patch_size;
    const size_t De = (size_t)c->enc_width, Dd = (size_t)c->dec_width;
    const size_t Dmax = textok__max2(De, Dd), Mmax = textok__max2((size_t)c->enc_mlp, (size_t)c->dec_mlp);
    const size_t img = textok__mul3(B, 3, S * S, &a->overflow);
    size_t conv_work, act = 0, head1, hd;
    textok_attention_dims ad;
    textok_conv2d_dims cd;
    int *o = &a->overflow;
    t->img = textok__take(a, img);
    t->recon = textok__take(a, img);
    t->text = c->text_len ? textok__take(a, textok__mul3(B, (size_t)c->text_len, (size_t)c->text_dim, o)) : NULL;
    t->kmask_e = m->Lte ? (unsigned char *)(void *)textok__take(a, (B * Te + 3) / 4) : NULL;
    t->kmask_d = m->Ltd ? (unsigned char *)(void *)textok__take(a, (B * Td + 3) / 4) : NULL;
    t->patches = textok__take(a, textok__mul3(B, De, P, o));
    t->tok = textok__take(a, textok__mul3(B, P, De, o));
    t->seq_e = textok__take(a, textok__mul3(B, Te, De, o));
    t->seq_d = textok__take(a, textok__mul3(B, Td, Dd, o));
    textok__vit_tape_carve(a, &t->enc, c->enc_layers, B, Te, De, (size_t)c->enc_mlp, (size_t)c->enc_heads);
    textok__vit_tape_carve(a, &t->dec, c->dec_layers, B, Td, Dd, (size_t)c->dec_mlp, (size_t)c->dec_heads);
    t->lat_e = textok__take(a, textok__mul3(B, K, De, o));
    t->lat_e_mean = textok__take(a, B * K); t->lat_e_rstd = textok__take(a, B * K);
    t->zt = textok__take(a, textok__mul3(B, K, Cq, o));
    t->zn = textok__take(a, textok__mul3(B, K, C, o));
    t->zq = textok__take(a, textok__mul3(B, K, C, o));
    t->ids = (int32_t *)(void *)textok__take(a, B * K);
    t->cb_work = c->quantize_mode == TEXTOK_QUANT_VQ
               ? textok__take(a, textok_codebook_work_floats((int)(B * K), c->codebook_size, (int)C)) : NULL;
    t->zoff = textok__take(a, textok__mul3(B, K, Cq, o));
    t->noise = textok__take(a, textok__mul3(B, K, C, o));
    t->zs = textok__take(a, textok__mul3(B, K, C, o));
    t->zdec = textok__take(a, textok__mul3(B, K, C, o));
    t->lat_d = textok__take(a, textok__mul3(B, K, Dd, o));
    t->dec_out = textok__take(a, textok__mul3(B, P, Dd, o));
    t->dec_mean = textok__take(a, B * P); t->dec_rstd = textok__take(a, B * P);
    head1 = c->is_legacy ? 2 * Dd : p * p * 3;
    t->head1 = textok__take(a, textok__mul3(B, P, head1, o));
    cd.B = 1; cd.C = 3; cd.H = cd.W = (int)S; cd.OC = (int)De; cd.KH = cd.KW = (int)p; cd.stride = (int)p; cd.pad = 0;
    conv_work = textok_conv2d_work_floats(&cd);
    if (c->is_legacy) {
        const size_t Vp = (size_t)c->pixel_codebook_size, Z = (size_t)c->pixel_z_channels;
        t->img2 = NULL;
        t->logits = textok__take(a, textok__mul3(B, P, Vp, o));
        t->probs = textok__take(a, textok__mul3(B, P, Vp, o));
        t->codes = textok__take(a, textok__mul3(B, P, Z, o));
        t->px_in = textok__take(a, textok__mul3(B, P, Z, o));
        t->n_px = textok__px_build(t, a, t->px, &conv_work, &act);
    } else {
        t->img2 = c->arch == TEXTOK_ARCH_TEXTOK ? NULL : textok__take(a, img);
        cd.OC = 3; cd.KH = cd.KW = 3; cd.stride = 1; cd.pad = 1;
        conv_work = textok__max2(conv_work, textok_conv2d_work_floats(&cd));
        t->logits = t->probs = t->codes = t->px_in = NULL;
    }
    t->conv_work = textok__take(a, conv_work);
    t->scal = textok__take(a, 16);
    /* gradient scratch */
    ad.B = (int)B; ad.Tq = ad.Tk = (int)T; ad.C = (int)Dmax; ad.H = 1; ad.scale = 1.0f;
    t->vs.dx = textok__take(a, textok__mul3(B, T, Dmax, o));
    t->vs.dln = textok__take(a, textok__mul3(B, T, Dmax, o));
    t->vs.dq = textok__take(a, textok__mul3(B, T, Dmax, o));
    t->vs.dk = textok__take(a, textok__mul3(B, T, Dmax, o));
    t->vs.dv = textok__take(a, textok__mul3(B, T, Dmax, o));
    t->vs.datt = textok__take(a, textok__mul3(B, T, Dmax, o));
    t->vs.dmlp = textok__take(a, textok__mul3(B, T, Mmax, o));
    t->vs.dfc = textok__take(a, textok__mul3(B, T, Mmax, o));
    t->vs.work = textok__take(a, textok_attention_work_floats(&ad));
    t->dseq = textok__take(a, textok__mul3(B, T, Dmax, o));
    t->dxout = textok__take(a, textok__mul3(B, T, Dmax, o));
    t->drecon = textok__take(a, img);
    t->dimg2 = c->is_legacy || c->arch == TEXTOK_ARCH_TEXTOK ? NULL : textok__take(a, img);
    hd = head1;
    t->dhead1 = textok__take(a, textok__mul3(B, P, hd, o));
    t->dhead1b = textok__take(a, textok__mul3(B, P, hd, o));
    t->ddec_out = textok__take(a, textok__mul3(B, P, Dd, o));
    if (c->is_legacy) {
        t->dcodes = textok__take(a, textok__mul3(B, P, (size_t)c->pixel_z_channels, o));
        t->dpx_in = textok__take(a, textok__mul3(B, P, (size_t)c->pixel_z_channels, o));
        t->dpa = textok__take(a, textok__mul3(B, act, 1, o));
        t->dpb = textok__take(a, textok__mul3(B, act, 1, o));
        t->dpc = textok__take(a, textok__mul3(B, act, 1, o));
        t->dpd = textok__take(a, textok__mul3(B, act, 1, o));
        t->dpe = textok__take(a, textok__mul3(B, act, 1, o));   /* the two rotating stage gradients */
        t->dpf = textok__take(a, textok__mul3(B, act, 1, o));
        t->dlogits = textok__take(a, textok__mul3(B, P, (size_t)c->pixel_codebook_size, o));
        t->dprobs = textok__take(a, textok__mul3(B, P, (size_t)c->pixel_codebook_size, o));
    }
    t->dlat = textok__take(a, textok__mul3(B, K, Dmax, o));
    t->dzt = textok__take(a, textok__mul3(B, K, Cq, o));
    t->dzdec = textok__take(a, textok__mul3(B, K, C, o));
    t->dzn = textok__take(a, textok__mul3(B, K, C, o));
    t->dzq = textok__take(a, textok__mul3(B, K, C, o));
    t->dzoff = textok__take(a, textok__mul3(B, K, Cq, o));
    t->dzs = textok__take(a, textok__mul3(B, K, C, o));
    t->dms = textok__take(a, textok__mul3(P, Dd, 1, o));
    t->dcb = c->quantize_mode == TEXTOK_QUANT_VQ ? textok__take(a, textok__mul3((size_t)c->codebook_size, C, 1, o)) : NULL;
    t->dpatches = textok__take(a, textok__mul3(B, De, P, o));
    t->dtok = textok__take(a, textok__mul3(B, P, De, o));
    if (t->disc) {
        size_t pl = (size_t)t->disc->cfg.pool * (size_t)t->disc->cfg.pool;
        t->dlogit_disc = textok__take(a, textok__mul3(2 * B, pl, 1, o));
        t->disc_in = textok__take(a, textok__mul3(2, img, 1, o));
    }
}

/* ----- TiTok forward in training mode (the same math as section 11, keeping the tape) -------- */
static void textok__px_train_forward(textok_trainer *t)
{
    const textok_kernels *k = &t->k;
    const int B = t->B, G = t->m->cfg.pixel_groups;
    int i;
    for (i = 0; i < t->n_px; i++) {
        const textok__px_stage *s = &t->px[i];
        const int HW = s->H * s->W;
        switch (s->kind) {
        case TEXTOK__PX_CONV:
            textok__conv_same(k, s->out, s->in, s->w, s->b, B, s->cin, s->H, s->W, s->cout, 3, t->conv_work);
            break;
        case TEXTOK__PX_RES: {   /* GN SiLU conv GN SiLU conv, then the nin_shortcut quirk (8.10) */
            const textok__resblock *r = s->r;
            k->groupnorm_forward(k, s->t1, s->m1, s->r1, s->in, r->norm1_w, r->norm1_b, B, s->cin, HW, G, 1e-6f);
            k->silu_forward(k, s->s1, s->t1, (size_t)B * s->cin * HW);
            textok__conv_same(k, s->h1, s->s1, r->conv1_w, NULL, B, s->cin, s->H, s->W, s->cout, 3, t->conv_work);
            k->groupnorm_forward(k, s->t2, s->m2, s->r2, s->h1, r->norm2_w, r->norm2_b, B, s->cout, HW, G, 1e-6f);
            k->silu_forward(k, s->s2, s->t2, (size_t)B * s->cout * HW);
            textok__conv_same(k, s->h2, s->s2, r->conv2_w, NULL, B, s->cout, s->H, s->W, s->cout, 3, t->conv_work);
            if (r->nin_w) {
                textok__conv_same(k, s->out, s->h2, r->nin_w, NULL, B, s->cout, s->H, s->W, s->cout, 1, t->conv_work);
                k->add_forward(k, s->out, s->out, s->h2, (size_t)B * s->cout * HW);
            } else {
                k->add_forward(k, s->out, s->in, s->h2, (size_t)B * s->cout * HW);
            }
            break;
        }
        case TEXTOK__PX_UP:
            k->upsample_forward(k, s->t1, s->in, B * s->cin, s->H, s->W, 2);
            textok__conv_same(k, s->out, s->t1, s->w, s->b, B, s->cin, 2 * s->H, 2 * s->W, s->cout, 3, t->conv_work);
            break;
        default:   /* OUT */
            k->groupnorm_forward(k, s->t1, s->m1, s->r1, s->in, s->nw, s->nb, B, s->cin, HW, G, 1e-6f);
            k->silu_forward(k, s->s1, s->t1, (size_t)B * s->cin * HW);
            textok__conv_same(k, s->out, s->s1, s->w, s->b, B, s->cin, s->H, s->W, 3, 3, t->conv_work);
        }
    }
}

/* img (B, 3, S, S) -> zt (B, K, Cq) */
static void textok__titok_train_encoder(textok_trainer *t)
{
    const textok_kernels *k = &t->k;
    const textok_titok *m = t->m;
    const textok_titok_config *c = &m->cfg;
    const int B = t->B, K = t->K, D = c->enc_width, P = t->P, T = t->Te, Cq = t->Cq, p = c->patch_size, c0 = m->ncls;
    textok_conv2d_dims cd;
    int b;
    cd.B = B; cd.C = 3; cd.H = cd.W = c->image_size; cd.OC = D; cd.KH = cd.KW = cd.stride = p; cd.pad = 0;
    k->conv2d_forward(k, t->patches, t->img, m->enc.patch_w, m->enc.patch_b, &cd, t->conv_work);
    k->transpose_forward(k, t->tok, t->patches, B, D, P);
    textok__enc_seq_forward(m, t->seq_e, t->tok, t->text, B);
    textok__vit_train_forward(k, &m->enc.vit, &t->enc, t->seq_e, t->vs.work, B, T, t->kmask_e);
    for (b = 0; b < B; b++)
        k->layernorm_forward(k, t->lat_e + (size_t)b * K * D, t->lat_e_mean + (size_t)b * K, t->lat_e_rstd + (size_t)b * K,
                             t->enc.xout + ((size_t)b * T + c0 + P) * D, m->enc.vit.ln_post_w, m->enc.vit.ln_post_b, K, D, 1e-5f);
    if (c->is_legacy) {   /* the reinterpreting reshape, see textok__titok_encoder */
        textok_matmul_dims d;
        d.batch = 1; d.M = K; d.N = Cq; d.K = D; d.trans_a = 1; d.trans_b = 1;
        for (b = 0; b < B; b++)
            k->matmul_forward(k, t->zt + (size_t)b * K * Cq, t->lat_e + (size_t)b * K * D, m->enc.out_w, m->enc.out_b, &d);
    } else {
        textok__linear(k, t->zt, t->lat_e, m->enc.out_w, m->enc.out_b, B * K, D, Cq);
    }
}

/* zdec (B, K, C) -> recon (B, 3, S, S) */
static void textok__titok_train_decoder(textok_trainer *t)
{
    const textok_kernels *k = &t->k;
    const textok_titok *m = t->m;
    const textok_titok_config *c = &m->cfg;
    const int B = t->B, K = t->K, C = t->C, D = c->dec_width, P = t->P, T = t->Td, S = t->S, p = c->patch_size, c0 = m->ncls;
    int b;
    textok__linear(k, t->lat_d, t->zdec, m->dec.embed_w, m->dec.embed_b, B * K, C, D);
    textok__dec_seq_forward(m, t->seq_d, t->lat_d, t->text, B);
    textok__vit_train_forward(k, &m->dec.vit, &t->dec, t->seq_d, t->vs.work, B, T, t->kmask_d);
    for (b = 0; b < B; b++)
        k->layernorm_forward(k, t->dec_out + (size_t)b * P * D, t->dec_mean + (size_t)b * P, t->dec_rstd + (size_t)b * P,
                             t->dec.xout + ((size_t)b * T + c0) * D, m->dec.vit.ln_post_w, m->dec.vit.ln_post_b, P, D, 1e-5f);
    if (c->is_legacy) {
        const int Vp = c->pixel_codebook_size, Z = c->pixel_z_channels;
        textok_matmul_dims d;
        textok__linear(k, t->head1, t->dec_out, m->dec.ffn0_w, m->dec.ffn0_b, B * P, D, 2 * D);
        k->tanh_forward(k, t->head1, t->head1, (size_t)B * P * 2 * D);
        textok__linear(k, t->logits, t->head1, m->dec.ffn2_w, m->dec.ffn2_b, B * P, 2 * D, Vp);
        k->softmax_forward(k, t->probs, t->logits, B * P, Vp);
        d.batch = 1; d.M = B * P; d.N = Z; d.K = Vp; d.trans_a = 0; d.trans_b = 0;
        k->matmul_forward(k, t->codes, t->probs, m->pix.codebook, NULL, &d);
        k->transpose_forward(k, t->px_in, t->codes, B, P, Z);
        textok__px_train_forward(t);
    } else {
        textok__linear(k, t->head1, t->dec_out, m->dec.ffn0_w, m->dec.ffn0_b, B * P, D, p * p * 3);
        if (c->arch == TEXTOK_ARCH_TEXTOK) {   /* linear to pixels, no conv_out */
            k->unpatchify_forward(k, t->recon, t->head1, B, 3, S, S, p);
        } else {
            k->unpatchify_forward(k, t->img2, t->head1, B, 3, S, S, p);
            textok__conv_same(k, t->recon, t->img2, m->dec.out_w, m->dec.out_b, B, 3, S, S, 3, 3, t->conv_work);
        }
    }
}

/* ----- backward ------------------------------------------------------------------------------ */
static void textok__conv_same_backward(const textok_kernels *k, float *dinp, float *dw, float *db, const float *dout,
                                       const float *inp, const float *w, int B, int C, int H, int W, int OC,
                                       int ksize, float *work)
{
    textok_conv2d_dims d = textok__same_dims(B, C, H, W, OC, ksize);
    k->conv2d_backward(k, dinp, dw, db, dout, inp, w, &d, work);
}

/* drecon -> dpx_in (B, Z, g, g), every pixel-decoder gradient */
static void textok__px_train_backward(textok_trainer *t)
{
    const textok_kernels *k = &t->k;
    const int B = t->B, G = t->m->cfg.pixel_groups;
    float *dcur = t->drecon, *dprev = NULL;
    int i;
    for (i = t->n_px - 1; i >= 0; i--) {
        const textok__px_stage *s = &t->px[i];
        const int HW = s->H * s->W;
        const size_t nin = (size_t)B * s->cin * HW, nout = (size_t)B * s->cout * HW;
        dprev = i == 0 ? t->dpx_in : (dcur == t->dpe ? t->dpf : t->dpe);
        k->fill(k, dprev, nin, 0.0f);
        switch (s->kind) {
        case TEXTOK__PX_CONV:
            textok__conv_same_backward(k, dprev, s->gw, s->gb, dcur, s->in, s->w, B, s->cin, s->H, s->W, s->cout, 3, t->conv_work);
            break;
        case TEXTOK__PX_RES: {
            const textok__resblock *r = s->r, *gr = s->gr;
            const float *dh2 = dcur;
            if (r->nin_w) {   /* out = h2 + nin(h2): the block input gets nothing from the skip */
                k->fill(k, t->dpa, nout, 0.0f);
                k->add_backward(k, t->dpa, NULL, dcur, nout);
                textok__conv_same_backward(k, t->dpa, gr->nin_w, NULL, dcur, s->h2, r->nin_w, B, s->cout, s->H, s->W, s->cout, 1, t->conv_work);
                dh2 = t->dpa;
            } else {
                k->add_backward(k, dprev, NULL, dcur, nout);
            }
            k->fill(k, t->dpb, nout, 0.0f);
            textok__conv_same_backward(k, t->dpb, gr->conv2_w, NULL, dh2, s->s2, r->conv2_w, B, s->cout, s->H, s->W, s->cout, 3, t->conv_work);
            k->fill(k, t->dpc, nout, 0.0f);
            k->silu_backward(k, t->dpc, t->dpb, s->t2, nout);
            k->fill(k, t->dpd, nout, 0.0f);
            k->groupnorm_backward(k, t->dpd, gr->norm2_w, gr->norm2_b, t->dpc, s->h1, r->norm2_w, s->m2, s->r2, B, s->cout, HW, G);
            k->fill(k, t->dpb, nin, 0.0f);
            textok__conv_same_backward(k, t->dpb, gr->conv1_w, NULL, t->dpd, s->s1, r->conv1_w, B, s->cin, s->H, s->W, s->cout, 3, t->conv_work);
            k->fill(k, t->dpc, nin, 0.0f);
            k->silu_backward(k, t->dpc, t->dpb, s->t1, nin);
            k->groupnorm_backward(k, dprev, gr->norm1_w, gr->norm1_b, t->dpc, s->in, r->norm1_w, s->m1, s->r1, B, s->cin, HW, G);
            break;
        }
        case TEXTOK__PX_UP:
            k->fill(k, t->dpa, 4 * nin, 0.0f);
            textok__conv_same_backward(k, t->dpa, s->gw, s->gb, dcur, s->t1, s->w, B, s->cin, 2 * s->H, 2 * s->W, s->cout, 3, t->conv_work);
            k->upsample_backward(k, dprev, t->dpa, B * s->cin, s->H, s->W, 2);
            break;
        default:   /* OUT */
            k->fill(k, t->dpa, nin, 0.0f);
            textok__conv_same_backward(k, t->dpa, s->gw, s->gb, dcur, s->s1, s->w, B, s->cin, s->H, s->W, 3, 3, t->conv_work);
            k->fill(k, t->dpb, nin, 0.0f);
            k->silu_backward(k, t->dpb, t->dpa, s->t1, nin);
            k->groupnorm_backward(k, dprev, s->gnw, s->gnb, t->dpb, s->in, s->nw, s->m1, s->r1, B, s->cin, HW, G);
        }
        dcur = dprev;
    }
}

/* The sequences' backward (textok__enc_seq_forward / _dec_seq_forward): dseq -> the segment
   parameters' gradients in the shadow model t->g, and the gradient of the segment that came
   from below (dtok (B, P, De) the patch tokens; dlat (B, K, Dd) the embedded tokens). */
static void textok__text_seg_backward(const textok_kernels *k, float *gw, float *gb, float *gpos, const float *drows,
                                      const float *text, const float *w, int Lt, int Dt, int D)
{
    k->add_backward(k, NULL, gpos, drows, (size_t)Lt * D);
    textok__linear_backward(k, NULL, gw, gb, drows, text, w, Lt, Dt, D);   /* the text itself is frozen */
}

static void textok__enc_seq_backward(textok_trainer *t, float *dtok, const float *dseq)
{
    const textok_kernels *k = &t->k;
    const textok_titok *m = t->m;
    textok_titok *g = &t->g;
    const int D = m->cfg.enc_width, P = m->P, K = m->cfg.num_latent_tokens, T = m->Te, c0 = m->ncls;
    int b;
    for (b = 0; b < t->B; b++) {
        const float *ds = dseq + (size_t)b * T * D;
        if (c0) k->add_backward(k, g->enc.cls, g->enc.pos, ds, (size_t)D);
        k->add_backward(k, dtok + (size_t)b * P * D, g->enc.pos + (size_t)c0 * D, ds + (size_t)c0 * D, (size_t)P * D);
        k->add_backward(k, g->latent_tokens, g->enc.latent_pos, ds + (size_t)(c0 + P) * D, (size_t)K * D);
        if (m->Lte)
            textok__text_seg_backward(k, g->enc.text_w, g->enc.text_b, g->enc.text_pos, ds + (size_t)(c0 + P + K) * D,
                                      t->text + (size_t)b * m->Lte * m->cfg.text_dim, m->enc.text_w, m->Lte, m->cfg.text_dim, D);
    }
}

static void textok__dec_seq_backward(textok_trainer *t, float *dlat, const float *dseq)
{
    const textok_kernels *k = &t->k;
    const textok_titok *m = t->m;
    textok_titok *g = &t->g;
    const int D = m->cfg.dec_width, P = m->P, K = m->cfg.num_latent_tokens, T = m->Td, c0 = m->ncls;
    int b, i;
    k->fill(k, t->dms, (size_t)P * D, 0.0f);   /* the P mask/patch-token rows, summed over the batch */
    for (b = 0; b < t->B; b++) {
        const float *ds = dseq + (size_t)b * T * D;
        if (c0) k->add_backward(k, g->dec.cls, g->dec.pos, ds, (size_t)D);
        k->add_backward(k, t->dms, NULL, ds + (size_t)c0 * D, (size_t)P * D);
        k->add_backward(k, dlat + (size_t)b * K * D, g->dec.latent_pos, ds + (size_t)(c0 + P) * D, (size_t)K * D);
        if (m->Ltd)
            textok__text_seg_backward(k, g->dec.text_w, g->dec.text_b, g->dec.text_pos, ds + (size_t)(c0 + P + K) * D,
                                      t->text + (size_t)b * m->Ltd * m->cfg.text_dim, m->dec.text_w, m->Ltd, m->cfg.text_dim, D);
    }
    /* titok: mask_token + pos[1 + p]; textok: the patch tokens are pos itself */
    k->add_backward(k, g->dec.pos + (size_t)c0 * D, NULL, t->dms, (size_t)P * D);
    if (c0)
        for (i = 0; i < P; i++) k->add_backward(k, g->dec.mask_token, NULL, t->dms + (size_t)i * D, (size_t)D);
}

/* drecon -> dzdec (B, K, C) and the decoder's gradients */
static void textok__titok_train_decoder_backward(textok_trainer *t)
{
    const textok_kernels *k = &t->k;
    const textok_titok *m = t->m;
    textok_titok *g = &t->g;
    const textok_titok_config *c = &m->cfg;
    const int B = t->B, K = t->K, C = t->C, D = c->dec_width, P = t->P, T = t->Td, S = t->S, p = c->patch_size, c0 = m->ncls;
    int b;
    k->fill(k, t->ddec_out, (size_t)B * P * D, 0.0f);
    if (c->is_legacy) {
        const int Vp = c->pixel_codebook_size, Z = c->pixel_z_channels;
        textok_matmul_dims d;
        textok__px_train_backward(t);
        k->fill(k, t->dcodes, (size_t)B * P * Z, 0.0f);
        k->transpose_backward(k, t->dcodes, t->dpx_in, B, P, Z);
        d.batch = 1; d.M = B * P; d.N = Z; d.K = Vp; d.trans_a = 0; d.trans_b = 0;
        k->fill(k, t->dprobs, (size_t)B * P * Vp, 0.0f);
        k->matmul_backward(k, t->dprobs, g->pix.codebook, NULL, t->dcodes, t->probs, m->pix.codebook, &d);
        k->fill(k, t->dlogits, (size_t)B * P * Vp, 0.0f);
        k->softmax_backward(k, t->dlogits, t->dprobs, t->probs, B * P, Vp);
        k->fill(k, t->dhead1, (size_t)B * P * 2 * D, 0.0f);
        textok__linear_backward(k, t->dhead1, g->dec.ffn2_w, g->dec.ffn2_b, t->dlogits, t->head1, m->dec.ffn2_w, B * P, 2 * D, Vp);
        k->fill(k, t->dhead1b, (size_t)B * P * 2 * D, 0.0f);
        k->tanh_backward(k, t->dhead1b, t->dhead1, t->head1, (size_t)B * P * 2 * D);
        textok__linear_backward(k, t->ddec_out, g->dec.ffn0_w, g->dec.ffn0_b, t->dhead1b, t->dec_out, m->dec.ffn0_w, B * P, D, 2 * D);
    } else {
        const size_t n1 = (size_t)B * P * p * p * 3;
        const float *dimg = t->drecon;
        if (c->arch == TEXTOK_ARCH_TITOK) {
            k->fill(k, t->dimg2, (size_t)B * 3 * S * S, 0.0f);
            textok__conv_same_backward(k, t->dimg2, g->dec.out_w, g->dec.out_b, t->drecon, t->img2, m->dec.out_w, B, 3, S, S, 3, 3, t->conv_work);
            dimg = t->dimg2;
        }
        k->fill(k, t->dhead1, n1, 0.0f);
        k->unpatchify_backward(k, t->dhead1, dimg, B, 3, S, S, p);
        textok__linear_backward(k, t->ddec_out, g->dec.ffn0_w, g->dec.ffn0_b, t->dhead1, t->dec_out, m->dec.ffn0_w, B * P, D, p * p * 3);
    }
    /* ln_post on the mask rows, then the stack */
    k->fill(k, t->dxout, (size_t)B * T * D, 0.0f);
    for (b = 0; b < B; b++)
        k->layernorm_backward(k, t->dxout + ((size_t)b * T + c0) * D, g->dec.vit.ln_post_w, g->dec.vit.ln_post_b,
                              t->ddec_out + (size_t)b * P * D, t->dec.xout + ((size_t)b * T + c0) * D,
                              m->dec.vit.ln_post_w, t->dec_mean + (size_t)b * P, t->dec_rstd + (size_t)b * P, P, D);
    k->fill(k, t->dseq, (size_t)B * T * D, 0.0f);
    textok__vit_train_backward(k, &m->dec.vit, &g->dec.vit, &t->dec, t->seq_d, t->dseq, t->dxout, &t->vs, B, T, t->kmask_d);
    k->fill(k, t->dlat, (size_t)B * K * D, 0.0f);
    textok__dec_seq_backward(t, t->dlat, t->dseq);
    k->fill(k, t->dzdec, (size_t)B * K * C, 0.0f);
    textok__linear_backward(k, t->dzdec, g->dec.embed_w, g->dec.embed_b, t->dlat, t->zdec, m->dec.embed_w, B * K, C, D);
}

/* dzt (B, K, Cq) -> the encoder's gradients (the image needs none) */
static void textok__titok_train_encoder_backward(textok_trainer *t)
{
    const textok_kernels *k = &t->k;
    const textok_titok *m = t->m;
    textok_titok *g = &t->g;
    const textok_titok_config *c = &m->cfg;
    const int B = t->B, K = t->K, D = c->enc_width, P = t->P, T = t->Te, Cq = t->Cq, p = c->patch_size, c0 = m->ncls;
    textok_conv2d_dims cd;
    int b;
    k->fill(k, t->dlat, (size_t)B * K * D, 0.0f);
    if (c->is_legacy) {
        textok_matmul_dims d;
        d.batch = 1; d.M = K; d.N = Cq; d.K = D; d.trans_a = 1; d.trans_b = 1;
        for (b = 0; b < B; b++)
            k->matmul_backward(k, t->dlat + (size_t)b * K * D, g->enc.out_w, g->enc.out_b, t->dzt + (size_t)b * K * Cq,
                               t->lat_e + (size_t)b * K * D, m->enc.out_w, &d);
    } else {
        textok__linear_backward(k, t->dlat, g->enc.out_w, g->enc.out_b, t->dzt, t->lat_e, m->enc.out_w, B * K, D, Cq);
    }
    k->fill(k, t->dxout, (size_t)B * T * D, 0.0f);
    for (b = 0; b < B; b++)
        k->layernorm_backward(k, t->dxout + ((size_t)b * T + c0 + P) * D, g->enc.vit.ln_post_w, g->enc.vit.ln_post_b,
                              t->dlat + (size_t)b * K * D, t->enc.xout + ((size_t)b * T + c0 + P) * D, m->enc.vit.ln_post_w,
                              t->lat_e_mean + (size_t)b * K, t->lat_e_rstd + (size_t)b * K, K, D);
    k->fill(k, t->dseq, (size_t)B * T * D, 0.0f);
    textok__vit_train_backward(k, &m->enc.vit, &g->enc.vit, &t->enc, t->seq_e, t->dseq, t->dxout, &t->vs, B, T, t->kmask_e);
    k->fill(k, t->dtok, (size_t)B * P * D, 0.0f);
    textok__enc_seq_backward(t, t->dtok, t->dseq);
    k->fill(k, t->dpatches, (size_t)B * D * P, 0.0f);
    k->transpose_backward(k, t->dpatches, t->dtok, B, D, P);
    cd.B = B; cd.C = 3; cd.H = cd.W = c->image_size; cd.OC = D; cd.KH = cd.KW = cd.stride = p; cd.pad = 0;
    k->conv2d_backward(k, NULL, g->enc.patch_w, g->enc.patch_b, t->dpatches, t->img, m->enc.patch_w, &cd, t->conv_work);
}

/* ----- presets and config ------------------------------------------------------------------ */
TEXTOKDEF int textok_train_preset(textok_train_config *tc, const char *name)
{
    if (!tc || !name) return textok__fail(TEXTOK_ERR_ARG, "textok_train_preset: NULL argument");
    memset(tc, 0, sizeof *tc);
    tc->batch = 8; tc->recon_weight = 1.0f; tc->commitment_cost = 0.25f; tc->quantizer_weight = 1.0f;
    tc->kl_weight = 1e-6f; tc->vae_sample = 1; tc->disc_factor = 1.0f; tc->lecam_weight = 0.001f;
    tc->lecam_decay = 0.999f; tc->lr = 1e-4; tc->end_lr = 1e-5; tc->beta1 = 0.9; tc->beta2 = 0.999;
    tc->eps = 1e-8; tc->weight_decay = 1e-4; tc->grad_clip = 1.0f; tc->ema_decay = 0.999;
    if (!strcmp(name, "titok-stage2")) {          /* configs/training/TiTok/stage2 */
        tc->perceptual_weight = 0.1f; tc->quantizer_weight = 0.0f; tc->commitment_cost = 0.0f;
        tc->disc_weight = 0.01f; tc->disc_start = 20000; tc->warmup_steps = 5000; tc->total_steps = 500000;
    } else if (!strcmp(name, "tatitok")) {        /* configs/training/TA-TiTok */
        tc->perceptual_weight = 1.1f; tc->disc_weight = 0.1f; tc->disc_start = 200000; tc->beta2 = 0.99;
        tc->warmup_steps = 10000; tc->total_steps = 1000000;
    } else if (!strcmp(name, "textok")) {         /* textok-paper.md 1.3 */
        tc->perceptual_weight = 0.1f; tc->disc_weight = 0.1f; tc->disc_start = 80000; tc->lecam_weight = 1e-4f;
        tc->warmup_steps = 10000; tc->total_steps = 1000000;
    } else if (!strcmp(name, "tiny")) {
        tc->perceptual_weight = 0.1f; tc->disc_weight = 0.1f; tc->disc_start = 0; tc->lr = 1e-3; tc->end_lr = 1e-4;
        tc->weight_decay = 0.0; tc->warmup_steps = 20; tc->total_steps = 1000;
    } else {
        return textok__fail(TEXTOK_ERR_ARG, "textok_train_preset: unknown preset '%.64s' (titok-stage2, tatitok, textok, tiny)", name);
    }
    tc->disc_lr = tc->lr; tc->disc_end_lr = tc->end_lr;
    return TEXTOK_OK;
}

TEXTOKDEF int textok_train_config_check(const textok_train_config *tc)
{
#define TEXTOK__TC(cond, ...) do { if (!(cond)) return textok__fail(TEXTOK_ERR_ARG, "training config: " __VA_ARGS__); } while (0)
    if (!tc) return textok__fail(TEXTOK_ERR_ARG, "training config: NULL");
    TEXTOK__TC(tc->batch >= 1 && tc->batch <= 4096, "batch %d not in [1, 4096]", tc->batch);
    TEXTOK__TC(tc->recon_l1 == 0 || tc->recon_l1 == 1, "recon_l1 must be 0 or 1");
    TEXTOK__TC(tc->recon_weight >= 0 && tc->perceptual_weight >= 0 && tc->quantizer_weight >= 0 &&
               tc->commitment_cost >= 0 && tc->kl_weight >= 0 && tc->disc_weight >= 0 && tc->disc_factor >= 0 &&
               tc->lecam_weight >= 0, "loss weights must be finite and >= 0");
    TEXTOK__TC(tc->lecam_decay >= 0 && tc->lecam_decay <= 1, "lecam_decay %g not in [0, 1]", tc->lecam_decay);
    TEXTOK__TC(tc->lr >= 0 && tc->end_lr >= 0 && tc->disc_lr >= 0 && tc->disc_end_lr >= 0, "learning rates must be >= 0");
    TEXTOK__TC(tc->warmup_steps >= 0 && tc->total_steps >= 1 && tc->disc_start >= 0, "warmup_steps/total_steps/disc_start out of range");
    TEXTOK__TC(tc->beta1 >= 0 && tc->beta1 < 1 && tc->beta2 >= 0 && tc->beta2 < 1 && tc->eps > 0, "AdamW betas must be in [0, 1), eps > 0");
    TEXTOK__TC(tc->weight_decay >= 0 && tc->grad_clip >= 0, "weight_decay and grad_clip must be >= 0");
    TEXTOK__TC(tc->ema_decay >= 0 && tc->ema_decay < 1, "ema_decay %g not in [0, 1)", tc->ema_decay);
    TEXTOK__TC(tc->text_dropout >= 0 && tc->text_dropout <= 1, "text_dropout %g not in [0, 1]", tc->text_dropout);
#undef TEXTOK__TC
    return TEXTOK_OK;
}

/* Linear warmup from 0, then cosine from base to end (utils/lr_schedulers.py), in double. */
static double textok__lr_at(double base, double end, int step, int warmup, int total)
{
    double progress;
    if (step < warmup) return base * (double)step / (double)warmup;
    progress = (double)(step - warmup) / (double)(total - warmup > 1 ? total - warmup : 1);
    if (progress > 1.0) progress = 1.0;
    return end + (base - end) * 0.5 * (1.0 + cos(3.14159265358979323846 * progress));
}

/* The official weight-decay rule (utils/train_utils.py create_optimizer): no decay for 1-D
   tensors and for any name that contains one of these words. */
static int textok__decays(const textok_tensor_spec *s)
{
    static const char *const skip[] = { "ln", "bias", "latent_tokens", "mask_token", "embedding", "norm",
                                        "gamma", "embed" };
    size_t i;
    if (s->ndim < 2) return 0;
    for (i = 0; i < sizeof skip / sizeof skip[0]; i++) if (strstr(s->name, skip[i])) return 0;
    return 1;
}

/* ----- create / free ------------------------------------------------------------------------ */
TEXTOKDEF void textok_trainer_free(textok_trainer *t)
{
    if (!t) return;
    if (t->grads) t->k.free(&t->k, t->grads);
    if (t->adam_m) t->k.free(&t->k, t->adam_m);
    if (t->adam_v) t->k.free(&t->k, t->adam_v);
    if (t->ema) t->k.free(&t->k, t->ema);
    if (t->disc_m) t->k.free(&t->k, t->disc_m);
    if (t->disc_v) t->k.free(&t->k, t->disc_v);
    if (t->arena) t->k.free(&t->k, t->arena);
    TEXTOK_FREE(t->g.host_arrays);
    TEXTOK_FREE(t->enc.layers);
    TEXTOK_FREE(t->dec.layers);
    TEXTOK_FREE(t->px);
    TEXTOK_FREE(t->specs);
    TEXTOK_FREE(t->offsets);
    TEXTOK_FREE(t->disc_offsets);
    TEXTOK_FREE(t->h_logits);
    TEXTOK_FREE(t->h_noise);
    TEXTOK_FREE(t->h_drop);
    TEXTOK_FREE(t);
}

static float *textok__alloc_zero(const textok_kernels *k, size_t n)
{
    float *p = (float *)k->alloc(k, (n ? n : 1) * sizeof(float));
    if (p) k->fill(k, p, n, 0.0f);
    return p;
}

TEXTOKDEF int textok_trainer_create(textok_trainer **out, textok_titok *model, textok_lpips *lpips,
                                    textok_disc *disc, const textok_train_config *tc, uint64_t seed)
{
    textok_trainer *t;
    const textok_titok_config *c;
    textok__walk w;
    textok__carve a;
    size_t off = 0;
    int i, st;
    if (!out || !model || !tc) return textok__fail(TEXTOK_ERR_ARG, "textok_trainer_create: NULL argument");
    *out = NULL;
    if ((st = textok_train_config_check(tc)) != TEXTOK_OK) return st;
    c = &model->cfg;
    if (tc->batch > model->max_batch)
        return textok__fail(TEXTOK_ERR_ARG, "textok_trainer_create: batch %d exceeds the model's max_batch %d (textok_params.max_batch)",
                            tc->batch, model->max_batch);
    if (tc->perceptual_weight > 0 && !lpips)
        return textok__fail(TEXTOK_ERR_ARG, "textok_trainer_create: perceptual_weight %g needs an LPIPS network", tc->perceptual_weight);
    if (tc->disc_weight > 0 && !disc)
        return textok__fail(TEXTOK_ERR_ARG, "textok_trainer_create: disc_weight %g needs a discriminator", tc->disc_weight);
    if (tc->text_dropout > 0 && !c->text_optional)
        return textok__fail(TEXTOK_ERR_ARG, "textok_trainer_create: text_dropout %g needs a model that may run without text "
                            "(text_optional = 1 in its config), which is what it records for inference", tc->text_dropout);
    if (disc && disc->image_size != c->image_size)
        return textok__fail(TEXTOK_ERR_SHAPE, "textok_trainer_create: the discriminator is for %dx%d images, the model makes %dx%d",
                            disc->image_size, disc->image_size, c->image_size, c->image_size);
    t = (textok_trainer *)textok__calloc(1, sizeof *t);
    if (!t) return textok__fail(TEXTOK_ERR_NOMEM, "textok_trainer_create: out of memory");
    t->tc = *tc; t->m = model; t->lpips = tc->perceptual_weight > 0 ? lpips : NULL;
    t->disc = tc->disc_weight > 0 ? disc : NULL;
    t->k = model->k;
    textok_rng_seed(&t->rng, seed);
    t->B = tc->batch; t->S = c->image_size; t->P = model->P; t->Te = model->Te; t->Td = model->Td; t->K = c->num_latent_tokens;
    t->C = c->token_size; t->Cq = model->Cq;
    /* the shadow model whose named pointers point into the grads block */
    t->g.cfg = *c;
    if ((st = textok__titok_host_arrays(&t->g)) != TEXTOK_OK) goto fail;
    st = TEXTOK_ERR_NOMEM;
    if (!(t->grads = textok__alloc_zero(&t->k, model->n_params)) || !(t->adam_m = textok__alloc_zero(&t->k, model->n_params)) ||
        !(t->adam_v = textok__alloc_zero(&t->k, model->n_params))) goto nomem;
    if (tc->ema_decay > 0) {
        if (!(t->ema = (float *)t->k.alloc(&t->k, model->n_params * sizeof(float)))) goto nomem;
        if ((st = t->k.copy(&t->k, t->ema, model->params, model->n_params * sizeof(float))) != TEXTOK_OK) goto fail;
    }
    memset(&w, 0, sizeof w);
    w.base = t->grads;
    textok__titok_walk(c, &t->g, &w);
    /* names and offsets of every tensor, for AdamW's decay rule, get() and checkpoints */
    t->n_tensors = textok_titok_tensor_specs(c, NULL, 0);
    t->specs = (textok_tensor_spec *)textok__calloc((size_t)t->n_tensors, sizeof *t->specs);
    t->offsets = (size_t *)textok__calloc((size_t)t->n_tensors + 1, sizeof *t->offsets);
    if (!t->specs || !t->offsets) goto nomem;
    textok_titok_tensor_specs(c, t->specs, t->n_tensors);
    for (i = 0; i < t->n_tensors; i++) { t->offsets[i] = off; off += textok__spec_numel(&t->specs[i]); }
    t->offsets[t->n_tensors] = off;
    if (t->disc) {
        if (!(t->disc_m = textok__alloc_zero(&t->k, t->disc->n_params)) || !(t->disc_v = textok__alloc_zero(&t->k, t->disc->n_params)))
            goto nomem;
        if ((st = textok__disc_reserve(t->disc, 2 * t->B)) != TEXTOK_OK) goto fail;
        if (!(t->disc_offsets = (size_t *)textok__calloc((size_t)t->disc->n_tensors + 1, sizeof *t->disc_offsets))) goto nomem;
        for (i = 0; i < t->disc->n_tensors; i++) t->disc_offsets[i] = t->disc->offsets[i];
        t->disc_offsets[t->disc->n_tensors] = t->disc->n_params;
        t->h_logits = (float *)textok__malloc((size_t)2 * t->B * t->disc->cfg.pool * t->disc->cfg.pool * sizeof(float));
        if (!t->h_logits) goto nomem;
    }
    if (t->lpips && (st = textok__lpips_reserve(t->lpips, t->B, t->S, t->S)) != TEXTOK_OK) goto fail;
    t->h_noise = (float *)textok__malloc((size_t)t->B * t->K * t->C * sizeof(float));
    t->h_drop = (unsigned char *)textok__calloc((size_t)t->B, 1);
    t->enc.layers = (textok__vit_layer_tape *)textok__calloc((size_t)c->enc_layers + 1, sizeof *t->enc.layers);
    t->dec.layers = (textok__vit_layer_tape *)textok__calloc((size_t)c->dec_layers + 1, sizeof *t->dec.layers);
    if (!t->h_noise || !t->h_drop || !t->enc.layers || !t->dec.layers) goto nomem;
    if (c->is_legacy) {
        memset(&a, 0, sizeof a);
        {
            size_t cw = 0, act = 0;
            t->n_px = textok__px_build(t, &a, NULL, &cw, &act);
        }
        t->px = (textok__px_stage *)textok__calloc((size_t)t->n_px, sizeof *t->px);
        if (!t->px) goto nomem;
    }
    memset(&a, 0, sizeof a);
    textok__trainer_carve(t, &a);
    if (a.overflow) {
        st = textok__fail(TEXTOK_ERR_SHAPE, "textok_trainer_create: a training buffer would exceed INT_MAX floats (batch %d)", t->B);
        goto fail;
    }
    t->arena_floats = a.used;
    if (!(t->arena = (float *)t->k.alloc(&t->k, a.used * sizeof(float)))) goto nomem;
    memset(&a, 0, sizeof a);
    a.base = t->arena;
    textok__trainer_carve(t, &a);
    *out = t;
    return TEXTOK_OK;
nomem:
    st = textok__fail(TEXTOK_ERR_NOMEM, "textok_trainer_create: out of memory (the model has %lu parameters, batch %d)",
                      (unsigned long)model->n_params, tc->batch);
fail:
    textok_trainer_free(t);
    return st;
}

TEXTOKDEF int textok_trainer_steps_done(const textok_trainer *t) { return t ? t->step : 0; }
TEXTOKDEF textok_rng *textok_trainer_rng(textok_trainer *t) { return t ? &t->rng : NULL; }
TEXTOKDEF void textok_trainer_set_lecam(textok_trainer *t, float ema_real, float ema_fake)
{
    if (t) { t->lecam_real = ema_real; t->lecam_fake = ema_fake; }
}

/* ----- one step ----------------------------------------------------------------------------- */
static int textok__finite(double x) { return x == x && x - x == 0.0; }

/* Reads device scalar i of t->scal. */
static int textok__scalar(textok_trainer *t, int i, double *out)
{
    float v;
    int st = t->k.to_host(&t->k, &v, t->scal + i, sizeof v);
    *out = v;
    return st;
}

/* Global L2 norm of n gradients, then clip_grad_norm_: g *= min(1, max_norm / (norm + 1e-6)). */
static int textok__clip(textok_trainer *t, float *grads, size_t n, double *norm)
{
    double ss;
    int st;
    t->k.sum_squares(&t->k, t->scal + 15, grads, n);
    if ((st = textok__scalar(t, 15, &ss)) != TEXTOK_OK) return st;
    *norm = sqrt(ss);
    if (t->tc.grad_clip > 0) {
        float coef = (float)t->tc.grad_clip / (float)(*norm + 1e-6);
        if (coef < 1.0f) t->k.scale(&t->k, grads, n, coef);
    }
    return TEXTOK_OK;
}

static void textok__adamw_tensors(textok_trainer *t, float *params, const float *grads, float *m, float *v,
                                  const textok_tensor_spec *specs, const size_t *offsets, int n_tensors,
                                  double lr, int step)
{
    textok_adamw_params hp;
    int i;
    hp.lr = lr; hp.beta1 = t->tc.beta1; hp.beta2 = t->tc.beta2; hp.eps = t->tc.eps;
    for (i = 0; i < n_tensors; i++) {
        size_t o = offsets[i], n = offsets[i + 1] - offsets[i];
        hp.weight_decay = textok__decays(&specs[i]) ? t->tc.weight_decay : 0.0;
        t->k.adamw_update(&t->k, params + o, grads + o, m + o, v + o, n, &hp, step);
    }
}

#define TEXTOK__TRY(x) do { if ((st = (x)) != TEXTOK_OK) return st; } while (0)

TEXTOKDEF int textok_trainer_step(textok_trainer *t, const float *images, const textok_text *text,
                                  textok_train_stats *stats)
{
    const textok_kernels *k;
    const textok_train_config *tc;
    const textok_titok_config *c;
    textok_titok *m;
    textok_train_stats s;
    size_t img_n, N, i;
    double lr, sum;
    int st, b, gan_on;
    float qscale = 0.0f;
    if (!t || !images) return textok__fail(TEXTOK_ERR_ARG, "textok_trainer_step: NULL argument");
    k = &t->k; tc = &t->tc; m = t->m; c = &m->cfg;
    memset(&s, 0, sizeof s);
    img_n = (size_t)t->B * 3 * t->S * t->S;
    N = (size_t)t->B * t->K;
    gan_on = t->disc && t->step >= tc->disc_start && tc->disc_weight > 0;
    s.gan_on = gan_on;
    TEXTOK__TRY(k->to_device(k, t->img, images, img_n * sizeof(float)));
    if (m->Lte || m->Ltd) {
        /* text dropout: one uniform per image, drawn first, only when it is on (so that runs
           without it keep the RNG stream of models without text) */
        for (b = 0; b < t->B; b++)
            t->h_drop[b] = (unsigned char)(tc->text_dropout > 0 && textok_rng_uniform(&t->rng) < tc->text_dropout);
        if ((st = textok__titok_set_text(m, t->text, t->kmask_e, t->kmask_d, text, 0, t->B, t->h_drop, 1, 1,
                                         "textok_trainer_step")) != TEXTOK_OK)
            return st;
    }
    k->fill(k, t->grads, m->n_params, 0.0f);

    /* 1. forward */
    textok__titok_train_encoder(t);
    if (c->quantize_mode == TEXTOK_QUANT_VQ) {
        /* VectorQuantizer.forward: search with normalised z (use_l2_norm), decode the codebook
           entry; the decoder's input carries the straight-through gradient to zn */
        if (c->use_l2_norm) k->l2norm_forward(k, t->zn, t->zt, (int)N, t->C, 1e-12f);
        else k->copy(k, t->zn, t->zt, N * t->C * sizeof(float));
        k->codebook_search(k, t->ids, NULL, t->zn, m->codebook_lookup, (int)N, c->codebook_size, t->C, t->cb_work);
        k->embedding_forward(k, t->zq, m->codebook_lookup, t->ids, (int)N, t->C);
        k->copy(k, t->zdec, t->zq, N * t->C * sizeof(float));
        k->diff_loss_forward(k, t->scal + 2, t->zq, t->zn, N * t->C, 0);
        TEXTOK__TRY(textok__scalar(t, 2, &sum));
        s.quantizer = (1.0 + tc->commitment_cost) * (double)(float)sum;   /* commitment + codebook */
    } else if (c->quantize_mode == TEXTOK_QUANT_NONE) {
        k->copy(k, t->zdec, t->zt, N * t->C * sizeof(float));   /* plain continuous tokens */
    } else {
        /* DiagonalGaussianDistribution on the official (B, 2C, 1, K) layout */
        const size_t CK = (size_t)t->C * t->K;
        k->transpose_forward(k, t->zoff, t->zt, t->B, t->K, t->Cq);
        if (tc->vae_sample) {
            textok_rng_fill_normal(&t->rng, t->h_noise, N * t->C, 0.0f, 1.0f);
            TEXTOK__TRY(k->to_device(k, t->noise, t->h_noise, N * t->C * sizeof(float)));
        }
        s.kl = 0.0;
        for (b = 0; b < t->B; b++) {
            const float *mean = t->zoff + (size_t)b * 2 * CK, *lv = mean + CK;
            if (tc->vae_sample) k->gaussian_sample_forward(k, t->zs + (size_t)b * CK, mean, lv, t->noise + (size_t)b * CK, CK);
            else k->copy(k, t->zs + (size_t)b * CK, mean, CK * sizeof(float));
            k->kl_forward(k, t->scal + 3, mean, lv, CK);
            TEXTOK__TRY(textok__scalar(t, 3, &sum));
            s.kl += sum;
        }
        s.kl /= t->B;
        k->transpose_forward(k, t->zdec, t->zs, t->B, t->C, t->K);
    }
    textok__titok_train_decoder(t);

    /* 2. generator losses and their gradient at the reconstruction */
    k->diff_loss_forward(k, t->scal + 0, t->recon, t->img, img_n, tc->recon_l1);
    TEXTOK__TRY(textok__scalar(t, 0, &s.recon));
    k->fill(k, t->drecon, img_n, 0.0f);
    k->diff_loss_backward(k, t->drecon, t->recon, t->img, img_n, tc->recon_l1, tc->recon_weight);
    if (t->lpips) {
        float d[4096], dd[4096];
        TEXTOK__TRY(textok__lpips_forward(t->lpips, d, t->recon, t->img, t->B, t->S, t->S));
        for (sum = 0.0, b = 0; b < t->B; b++) { sum += d[b]; dd[b] = tc->perceptual_weight / (float)t->B; }
        s.perceptual = sum / t->B;
        TEXTOK__TRY(textok__lpips_backward(t->lpips, t->drecon, dd, t->B, t->S, t->S));
    }
    if (gan_on) {   /* generator side of the hinge GAN: -mean D(x^); no gradient into D here */
        const size_t nl = (size_t)t->B * t->disc->cfg.pool * t->disc->cfg.pool;
        const float g = -(float)(tc->disc_weight * tc->disc_factor) / (float)nl;
        textok__disc_forward(t->disc, t->dlogit_disc, t->recon, t->B);
        TEXTOK__TRY(k->to_host(k, t->h_logits, t->dlogit_disc, nl * sizeof(float)));
        for (sum = 0.0, i = 0; i < nl; i++) sum += t->h_logits[i];
        s.gen = -sum / (double)nl;
        for (i = 0; i < nl; i++) t->h_logits[i] = g;
        TEXTOK__TRY(k->to_device(k, t->dlogit_disc, t->h_logits, nl * sizeof(float)));
        textok__disc_backward(t->disc, t->drecon, 0, t->dlogit_disc, t->B);
    }
    s.total = tc->recon_weight * s.recon + tc->perceptual_weight * s.perceptual
            + (c->quantize_mode == TEXTOK_QUANT_VQ ? tc->quantizer_weight * s.quantizer
               : c->quantize_mode == TEXTOK_QUANT_VAE ? tc->kl_weight * s.kl : 0.0)
            + (gan_on ? tc->disc_weight * tc->disc_factor * s.gen : 0.0);
    if (!textok__finite(s.total))
        return textok__fail(TEXTOK_ERR_FORMAT, "training step %d: the loss is not finite (recon %g, perceptual %g, quantizer %g, kl %g, gan %g); parameters left unchanged",
                            t->step, s.recon, s.perceptual, s.quantizer, s.kl, s.gen);

    /* 3. backward through the decoder, the bottleneck and the encoder */
    textok__titok_train_decoder_backward(t);
    k->fill(k, t->dzt, N * t->Cq, 0.0f);
    if (c->quantize_mode == TEXTOK_QUANT_VQ) {
        const size_t n = N * t->C;
        /* d/dzn: the straight-through gradient plus commitment beta*mse(zn, sg(zq)); the codebook
           gets only codebook_loss = mse(zq, sg(zn)), through the lookup (and the l2norm) */
        qscale = tc->quantizer_weight;
        k->fill(k, t->dzn, n, 0.0f);
        k->add_backward(k, t->dzn, NULL, t->dzdec, n);
        k->diff_loss_backward(k, t->dzn, t->zn, t->zq, n, 0, qscale * tc->commitment_cost);
        k->fill(k, t->dzq, n, 0.0f);
        k->diff_loss_backward(k, t->dzq, t->zq, t->zn, n, 0, qscale);
        if (c->use_l2_norm) {
            k->fill(k, t->dcb, (size_t)c->codebook_size * t->C, 0.0f);
            k->embedding_backward(k, t->dcb, t->dzq, t->ids, (int)N, t->C);
            k->l2norm_backward(k, t->g.codebook, t->dcb, m->codebook, c->codebook_size, t->C, 1e-12f);
            k->l2norm_backward(k, t->dzt, t->dzn, t->zt, (int)N, t->C, 1e-12f);
        } else {
            k->embedding_backward(k, t->g.codebook, t->dzq, t->ids, (int)N, t->C);
            k->add_backward(k, t->dzt, NULL, t->dzn, n);
        }
    } else if (c->quantize_mode == TEXTOK_QUANT_NONE) {
        k->add_backward(k, t->dzt, NULL, t->dzdec, N * t->C);
    } else {
        const size_t CK = (size_t)t->C * t->K;
        const float klw = tc->kl_weight / (float)t->B;
        k->fill(k, t->dzs, N * t->C, 0.0f);
        k->transpose_backward(k, t->dzs, t->dzdec, t->B, t->C, t->K);
        k->fill(k, t->dzoff, N * t->Cq, 0.0f);
        for (b = 0; b < t->B; b++) {
            float *dmean = t->dzoff + (size_t)b * 2 * CK, *dlv = dmean + CK;
            const float *mean = t->zoff + (size_t)b * 2 * CK, *lv = mean + CK;
            if (tc->vae_sample)
                k->gaussian_sample_backward(k, dmean, dlv, t->dzs + (size_t)b * CK, lv, t->noise + (size_t)b * CK, CK);
            else
                k->add_backward(k, dmean, NULL, t->dzs + (size_t)b * CK, CK);
            if (klw > 0) k->kl_backward(k, dmean, dlv, mean, lv, CK, klw);
        }
        k->transpose_backward(k, t->dzt, t->dzoff, t->B, t->K, t->Cq);
    }
    textok__titok_train_encoder_backward(t);

    /* 4. clip, AdamW, the derived constants, EMA */
    TEXTOK__TRY(textok__clip(t, t->grads, m->n_params, &s.grad_norm));
    if (!textok__finite(s.grad_norm))
        return textok__fail(TEXTOK_ERR_FORMAT, "training step %d: the gradient norm is not finite; parameters left unchanged", t->step);
    s.lr = lr = textok__lr_at(tc->lr, tc->end_lr, t->step, tc->warmup_steps, tc->total_steps);
    textok__adamw_tensors(t, m->params, t->grads, t->adam_m, t->adam_v, t->specs, t->offsets, t->n_tensors, lr, t->step + 1);
    TEXTOK__TRY(textok__titok_derive(m));
    if (t->ema) {
        /* EMAModel.get_decay: 0 at the first update (the EMA becomes a copy), then
           (1 + s) / (10 + s) capped at ema_decay, s = updates done before this one */
        double d = t->step <= 0 ? 0.0 : (1.0 + t->step) / (10.0 + t->step);
        if (d > tc->ema_decay) d = tc->ema_decay;
        k->ema_update(k, t->ema, m->params, m->n_params, (float)(1.0 - d));
    }

    /* 5. the discriminator: hinge on [x; sg(x^)] plus LeCAM against the EMA anchors */
    if (gan_on) {
        textok_disc *d = t->disc;
        const size_t pl = (size_t)d->cfg.pool * d->cfg.pool, nl = (size_t)t->B * pl;
        double mr = 0.0, mf = 0.0, hr = 0.0, hf = 0.0;
        const float f = tc->disc_factor;
        TEXTOK__TRY(k->copy(k, t->disc_in, t->img, img_n * sizeof(float)));
        TEXTOK__TRY(k->copy(k, t->disc_in + img_n, t->recon, img_n * sizeof(float)));
        k->fill(k, d->grads, d->n_params, 0.0f);
        textok__disc_forward(d, t->dlogit_disc, t->disc_in, 2 * t->B);
        TEXTOK__TRY(k->to_host(k, t->h_logits, t->dlogit_disc, 2 * nl * sizeof(float)));
        for (i = 0; i < nl; i++) {
            float r = t->h_logits[i], q = t->h_logits[nl + i];
            mr += r; mf += q;
            hr += 1.0f - r > 0.0f ? 1.0f - r : 0.0f;
            hf += 1.0f + q > 0.0f ? 1.0f + q : 0.0f;
        }
        mr /= (double)nl; mf /= (double)nl; hr /= (double)nl; hf /= (double)nl;
        s.logits_real = mr; s.logits_fake = mf;
        s.hinge = f * 0.5 * (hr + hf);
        {
            /* lecam = w (relu(mean(D(x)) - ema_fake)^2 + relu(ema_real - mean(D(x^)))^2) */
            double a1 = mr - t->lecam_fake, a2 = t->lecam_real - mf;
            double ga = a1 > 0 ? 2.0 * tc->lecam_weight * a1 : 0.0, gb = a2 > 0 ? 2.0 * tc->lecam_weight * a2 : 0.0;
            s.lecam = tc->lecam_weight * ((a1 > 0 ? a1 * a1 : 0.0) + (a2 > 0 ? a2 * a2 : 0.0));
            for (i = 0; i < nl; i++) {
                float r = t->h_logits[i], q = t->h_logits[nl + i];
                t->h_logits[i] = (float)((1.0f - r > 0.0f ? -0.5 * f : 0.0) / (double)nl + ga / (double)nl);
                t->h_logits[nl + i] = (float)((1.0f + q > 0.0f ? 0.5 * f : 0.0) / (double)nl - gb / (double)nl);
            }
        }
        s.d_total = s.hinge + s.lecam;
        if (!textok__finite(s.d_total))
            return textok__fail(TEXTOK_ERR_FORMAT, "training step %d: the discriminator loss is not finite; the discriminator is left unchanged", t->step);
        TEXTOK__TRY(k->to_device(k, t->dlogit_disc, t->h_logits, 2 * nl * sizeof(float)));
        textok__disc_backward(d, NULL, 1, t->dlogit_disc, 2 * t->B);
        TEXTOK__TRY(textok__clip(t, d->grads, d->n_params, &s.disc_grad_norm));
        s.disc_lr = textok__lr_at(tc->disc_lr, tc->disc_end_lr, t->disc_step, tc->warmup_steps, tc->total_steps);
        textok__adamw_tensors(t, d->params, d->grads, t->disc_m, t->disc_v, d->specs, t->disc_offsets, d->n_tensors,
                              s.disc_lr, t->disc_step + 1);
        t->disc_step++;
        /* the anchors move after the loss used them, in float32 as the torch buffers, and
           only when LeCAM is on (as upstream) */
        if (tc->lecam_weight > 0) {
            t->lecam_real = t->lecam_real * tc->lecam_decay + (float)mr * (1.0f - tc->lecam_decay);
            t->lecam_fake = t->lecam_fake * tc->lecam_decay + (float)mf * (1.0f - tc->lecam_decay);
        }
    }
    t->step++;
    s.step = t->step;
    if (stats) *stats = s;
    return TEXTOK_OK;
}

TEXTOKDEF int textok_trainer_last_reconstruction(textok_trainer *t, float *images)
{
    if (!t || !images) return textok__fail(TEXTOK_ERR_ARG, "textok_trainer_last_reconstruction: NULL argument");
    return t->k.to_host(&t->k, images, t->recon, (size_t)t->B * 3 * t->S * t->S * sizeof(float));
}

/* ----- reading tensors, checkpoints -------------------------------------------------------- */
/* The block and tensor a name like "grad.encoder.ln_pre.weight" refers to. */
static int textok__trainer_find(textok_trainer *t, const char *name, float **block, size_t *off, size_t *n)
{
    static const char *const pre[] = { "param.", "grad.", "ema.", "adam_m.", "adam_v.",
                                       "disc.param.", "disc.grad.", "disc.adam_m.", "disc.adam_v." };
    size_t p, len;
    int i, disc;
    for (p = 0; p < sizeof pre / sizeof pre[0]; p++) {
        len = strlen(pre[p]);
        if (strncmp(name, pre[p], len)) continue;
        disc = p >= 5;
        if (disc && !t->disc) return TEXTOK_ERR_NOT_FOUND;
        switch (p) {
        case 0: *block = t->m->params; break;
        case 1: *block = t->grads; break;
        case 2: *block = t->ema; break;
        case 3: *block = t->adam_m; break;
        case 4: *block = t->adam_v; break;
        case 5: *block = t->disc->params; break;
        case 6: *block = t->disc->grads; break;
        case 7: *block = t->disc_m; break;
        default: *block = t->disc_v;
        }
        if (!*block) return TEXTOK_ERR_NOT_FOUND;
        if (disc) {
            for (i = 0; i < t->disc->n_tensors; i++)
                if (!strcmp(t->disc->specs[i].name, name + len)) {
                    *off = t->disc_offsets[i]; *n = t->disc_offsets[i + 1] - *off; return TEXTOK_OK;
                }
        } else {
            for (i = 0; i < t->n_tensors; i++)
                if (!strcmp(t->specs[i].name, name + len)) {
                    *off = t->offsets[i]; *n = t->offsets[i + 1] - *off; return TEXTOK_OK;
                }
        }
        return TEXTOK_ERR_NOT_FOUND;
    }
    return TEXTOK_ERR_NOT_FOUND;
}

TEXTOKDEF int textok_trainer_get(textok_trainer *t, const char *name, float *out, size_t n)
{
    float *block;
    size_t off = 0, cnt = 0;
    if (!t || !name || !out) return textok__fail(TEXTOK_ERR_ARG, "textok_trainer_get: NULL argument");
    if (!strcmp(name, "lecam_ema")) {
        if (n != 2) return textok__fail(TEXTOK_ERR_SHAPE, "textok_trainer_get: lecam_ema has 2 values, not %lu", (unsigned long)n);
        out[0] = t->lecam_real; out[1] = t->lecam_fake;
        return TEXTOK_OK;
    }
    if (textok__trainer_find(t, name, &block, &off, &cnt) != TEXTOK_OK)
        return textok__fail(TEXTOK_ERR_NOT_FOUND, "textok_trainer_get: no tensor '%.120s' (prefixes param. grad. ema. adam_m. adam_v. disc.param. disc.grad. disc.adam_m. disc.adam_v., or lecam_ema)", name);
    if (cnt != n)
        return textok__fail(TEXTOK_ERR_SHAPE, "textok_trainer_get: '%.120s' has %lu values, not %lu", name, (unsigned long)cnt, (unsigned long)n);
    return t->k.to_host(&t->k, out, block + off, n * sizeof(float));
}

TEXTOKDEF int textok_trainer_set(textok_trainer *t, const char *name, const float *in, size_t n)
{
    float *block;
    size_t off = 0, cnt = 0;
    int st;
    if (!t || !name || !in) return textok__fail(TEXTOK_ERR_ARG, "textok_trainer_set: NULL argument");
    if ((strncmp(name, "param.", 6) && strncmp(name, "disc.param.", 11)) ||
        textok__trainer_find(t, name, &block, &off, &cnt) != TEXTOK_OK)
        return textok__fail(TEXTOK_ERR_NOT_FOUND, "textok_trainer_set: no parameter '%.120s' (param.<name> or disc.param.<name>)", name);
    if (cnt != n)
        return textok__fail(TEXTOK_ERR_SHAPE, "textok_trainer_set: '%.120s' has %lu values, not %lu", name, (unsigned long)cnt, (unsigned long)n);
    if ((st = t->k.to_device(&t->k, block + off, in, n * sizeof(float))) != TEXTOK_OK) return st;
    return textok__titok_derive(t->m);
}

/* Metadata: the model config, the discriminator config, counters, the LeCAM anchors (as exact
   float bit patterns) and the RNG state (hex). */
#define TEXTOK__CKPT_META 160
static int textok__ckpt_meta(textok_trainer *t, const char **kv, char *cfgbuf, size_t cfgsz, char *buf, size_t bufsz,
                             char *rng_hex)
{
    int n = textok_titok_config_to_meta(&t->m->cfg, kv, TEXTOK__CKPT_META / 2 - 16, cfgbuf, cfgsz);
    char *p = buf;
    uint32_t u;
    if (n < 0) return n;
    kv[1] = "titok-trainer";   /* pair 0 is textok.model: a checkpoint is not a model file */
#define TEXTOK__KV(key, ...) do { \
        int w_ = snprintf(p, bufsz - (size_t)(p - buf), __VA_ARGS__); \
        if (w_ < 0 || (size_t)w_ >= bufsz - (size_t)(p - buf)) return TEXTOK_ERR_ARG; \
        kv[2 * n] = key; kv[2 * n + 1] = p; p += w_ + 1; n++; } while (0)
    TEXTOK__KV("train.step", "%d", t->step);
    TEXTOK__KV("train.disc_step", "%d", t->disc_step);
    memcpy(&u, &t->lecam_real, 4); TEXTOK__KV("train.lecam_real", "%08lx", (unsigned long)u);
    memcpy(&u, &t->lecam_fake, 4); TEXTOK__KV("train.lecam_fake", "%08lx", (unsigned long)u);
    if (t->disc) {
        TEXTOK__KV("disc.hidden", "%d", t->disc->cfg.hidden);
        TEXTOK__KV("disc.stages", "%d", t->disc->cfg.stages);
        TEXTOK__KV("disc.groups", "%d", t->disc->cfg.groups);
        TEXTOK__KV("disc.pool", "%d", t->disc->cfg.pool);
    }
    {   /* the training config, for the record (load keeps the trainer's own: a resumed run may
           change e.g. total_steps) */
        const textok_train_config *c = &t->tc;
        TEXTOK__KV("train.batch", "%d", c->batch);
        TEXTOK__KV("train.recon_l1", "%d", c->recon_l1);
        TEXTOK__KV("train.recon_weight", "%.9g", c->recon_weight);
        TEXTOK__KV("train.perceptual_weight", "%.9g", c->perceptual_weight);
        TEXTOK__KV("train.quantizer_weight", "%.9g", c->quantizer_weight);
        TEXTOK__KV("train.commitment_cost", "%.9g", c->commitment_cost);
        TEXTOK__KV("train.kl_weight", "%.9g", c->kl_weight);
        TEXTOK__KV("train.vae_sample", "%d", c->vae_sample);
        TEXTOK__KV("train.disc_weight", "%.9g", c->disc_weight);
        TEXTOK__KV("train.disc_factor", "%.9g", c->disc_factor);
        TEXTOK__KV("train.disc_start", "%d", c->disc_start);
        TEXTOK__KV("train.lecam_weight", "%.9g", c->lecam_weight);
        TEXTOK__KV("train.lecam_decay", "%.9g", c->lecam_decay);
        TEXTOK__KV("train.lr", "%.17g", c->lr);
        TEXTOK__KV("train.end_lr", "%.17g", c->end_lr);
        TEXTOK__KV("train.disc_lr", "%.17g", c->disc_lr);
        TEXTOK__KV("train.disc_end_lr", "%.17g", c->disc_end_lr);
        TEXTOK__KV("train.warmup_steps", "%d", c->warmup_steps);
        TEXTOK__KV("train.total_steps", "%d", c->total_steps);
        TEXTOK__KV("train.beta1", "%.17g", c->beta1);
        TEXTOK__KV("train.beta2", "%.17g", c->beta2);
        TEXTOK__KV("train.eps", "%.17g", c->eps);
        TEXTOK__KV("train.weight_decay", "%.17g", c->weight_decay);
        TEXTOK__KV("train.grad_clip", "%.9g", c->grad_clip);
        TEXTOK__KV("train.ema_decay", "%.17g", c->ema_decay);
        TEXTOK__KV("train.text_dropout", "%.9g", c->text_dropout);
    }
    kv[2 * n] = "train.rng"; kv[2 * n + 1] = rng_hex; n++;
#undef TEXTOK__KV
    return n;
}

/* 624 words + index + has_spare + the spare double's bits, as hex */
static void textok__rng_to_hex(const textok_rng *r, char *hex)
{
    uint64_t sp;
    int i;
    for (i = 0; i < 624; i++) sprintf(hex + 8 * i, "%08lx", (unsigned long)r->mt[i]);
    memcpy(&sp, &r->spare, 8);
    sprintf(hex + 8 * 624, "%08lx%08lx%08lx%08lx", (unsigned long)(unsigned)r->index, (unsigned long)(unsigned)r->has_spare,
            (unsigned long)(sp >> 32), (unsigned long)(sp & 0xffffffffu));
}
static int textok__rng_from_hex(textok_rng *r, const char *hex)
{
    uint32_t w[628];
    uint64_t sp;
    int i, j;
    if (!hex || strlen(hex) != 8 * 628) return 0;
    for (i = 0; i < 628; i++) {
        uint32_t v = 0;
        for (j = 0; j < 8; j++) {
            char ch = hex[8 * i + j];
            int d = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
            if (d < 0) return 0;
            v = v << 4 | (uint32_t)d;
        }
        w[i] = v;
    }
    if (w[624] > 624 || w[625] > 1) return 0;
    for (i = 0; i < 624; i++) r->mt[i] = w[i];
    r->index = (int)w[624]; r->has_spare = (int)w[625];
    sp = (uint64_t)w[626] << 32 | w[627];
    memcpy(&r->spare, &sp, 8);
    return 1;
}

TEXTOKDEF int textok_trainer_save(textok_trainer *t, const char *path)
{
    static const char *const blocks[] = { "param.", "ema.", "adam_m.", "adam_v.", "disc.param.", "disc.adam_m.", "disc.adam_v." };
    const char *kv[2 * TEXTOK__CKPT_META];
    char cfgmeta[4096], meta[4096], rng_hex[8 * 628 + 1], (*names)[112] = NULL;
    textok_st_entry *e = NULL;
    float *host = NULL;
    size_t total = 0, off = 0;
    int n_meta, n = 0, bl, i, st, nt;
    if (!t || !path) return textok__fail(TEXTOK_ERR_ARG, "textok_trainer_save: NULL argument");
    textok__rng_to_hex(&t->rng, rng_hex);
    if ((n_meta = textok__ckpt_meta(t, kv, cfgmeta, sizeof cfgmeta, meta, sizeof meta, rng_hex)) < 0)
        return textok__fail(TEXTOK_ERR_ARG, "textok_trainer_save: metadata does not fit");
    nt = 7 * (t->n_tensors + (t->disc ? t->disc->n_tensors : 0));
    e = (textok_st_entry *)textok__calloc((size_t)nt, sizeof *e);
    names = (char (*)[112])textok__calloc((size_t)nt, sizeof *names);
    total = 4 * t->m->n_params + (t->disc ? 3 * t->disc->n_params : 0);
    host = (float *)textok__malloc(total * sizeof(float));
    if (!e || !names || !host) { st = textok__fail(TEXTOK_ERR_NOMEM, "textok_trainer_save: out of memory"); goto done; }
    for (bl = 0; bl < 7; bl++) {
        const int disc = bl >= 4;
        const textok_tensor_spec *specs = disc ? (t->disc ? t->disc->specs : NULL) : t->specs;
        const int cnt = disc ? (t->disc ? t->disc->n_tensors : 0) : t->n_tensors;
        const size_t np = disc ? (t->disc ? t->disc->n_params : 0) : t->m->n_params;
        float *src = bl == 0 ? t->m->params : bl == 1 ? t->ema : bl == 2 ? t->adam_m : bl == 3 ? t->adam_v
                   : bl == 4 ? (t->disc ? t->disc->params : NULL) : bl == 5 ? t->disc_m : t->disc_v;
        if (!src || !cnt) continue;
        if ((st = t->k.to_host(&t->k, host + off, src, np * sizeof(float))) != TEXTOK_OK) goto done;
        for (i = 0; i < cnt; i++) {
            const size_t o = disc ? t->disc_offsets[i] : t->offsets[i];
            int d;
            snprintf(names[n], sizeof names[n], "%s%s", blocks[bl], specs[i].name);
            e[n].name = names[n];
            e[n].data = host + off + o;
            e[n].ndim = specs[i].ndim;
            for (d = 0; d < specs[i].ndim; d++) e[n].shape[d] = specs[i].shape[d];
            n++;
        }
        off += np;
    }
    st = textok_st_save(path, e, n, kv, n_meta, TEXTOK_DTYPE_F32);
done:
    TEXTOK_FREE(e); TEXTOK_FREE(names); TEXTOK_FREE(host);
    return st;
}

static int textok__meta_hexf(const textok_safetensors *st, const char *key, float *v)
{
    const char *s = textok_st_meta(st, key);
    unsigned long u = 0;
    int j;
    if (!s || strlen(s) != 8) return 0;
    for (j = 0; j < 8; j++) {
        int d = s[j] >= '0' && s[j] <= '9' ? s[j] - '0' : s[j] >= 'a' && s[j] <= 'f' ? s[j] - 'a' + 10 : -1;
        if (d < 0) return 0;
        u = u << 4 | (unsigned long)d;
    }
    { uint32_t w = (uint32_t)u; memcpy(v, &w, 4); }
    return 1;
}

TEXTOKDEF int textok_trainer_load(textok_trainer *t, const char *path)
{
    static const char *const blocks[] = { "param.", "ema.", "adam_m.", "adam_v.", "disc.param.", "disc.adam_m.", "disc.adam_v." };
    textok_safetensors st;
    textok_titok_config cfg;
    textok_rng rng;
    float *host = NULL, lr_, lf_;
    const char *model;
    char name[160];
    int s, bl, i, step, dstep;
    if (!t || !path) return textok__fail(TEXTOK_ERR_ARG, "textok_trainer_load: NULL argument");
    if ((s = textok_st_open(&st, path)) != TEXTOK_OK) return s;
    model = textok_st_meta(&st, "textok.model");
    if (!model || strcmp(model, "titok-trainer")) {
        s = textok__fail(TEXTOK_ERR_FORMAT, "%s: not a training checkpoint (textok.model is '%s', expected 'titok-trainer')",
                         st.path, model ? model : "(absent)");
        goto done;
    }
    if ((s = textok_titok_config_from_meta(&cfg, &st)) != TEXTOK_OK) goto done;
    if (memcmp(&cfg, &t->m->cfg, sizeof cfg)) {
        s = textok__fail(TEXTOK_ERR_SHAPE, "%s: the checkpoint's model config differs from this trainer's model (image_size %d/%d, widths %d,%d/%d,%d, tokens %d/%d ...)",
                         st.path, cfg.image_size, t->m->cfg.image_size, cfg.enc_width, cfg.dec_width, t->m->cfg.enc_width,
                         t->m->cfg.dec_width, cfg.num_latent_tokens, t->m->cfg.num_latent_tokens);
        goto done;
    }
    if (t->disc) {
        int h, sg, gr, pl;
        if (TEXTOK_OK != textok__meta_int(&st, "disc.hidden", &h) || TEXTOK_OK != textok__meta_int(&st, "disc.stages", &sg) ||
            TEXTOK_OK != textok__meta_int(&st, "disc.groups", &gr) || TEXTOK_OK != textok__meta_int(&st, "disc.pool", &pl) ||
            h != t->disc->cfg.hidden || sg != t->disc->cfg.stages || gr != t->disc->cfg.groups || pl != t->disc->cfg.pool) {
            s = textok__fail(TEXTOK_ERR_SHAPE, "%s: the checkpoint has no discriminator or one with another config (hidden/stages/groups/pool must be %d/%d/%d/%d)",
                             st.path, t->disc->cfg.hidden, t->disc->cfg.stages, t->disc->cfg.groups, t->disc->cfg.pool);
            goto done;
        }
    }
    if (TEXTOK_OK != textok__meta_int(&st, "train.step", &step) || TEXTOK_OK != textok__meta_int(&st, "train.disc_step", &dstep) || step < 0 || dstep < 0 ||
        !textok__meta_hexf(&st, "train.lecam_real", &lr_) || !textok__meta_hexf(&st, "train.lecam_fake", &lf_) ||
        !textok__rng_from_hex(&rng, textok_st_meta(&st, "train.rng"))) {
        s = textok__fail(TEXTOK_ERR_FORMAT, "%s: missing or malformed train.step / train.disc_step / train.lecam_* / train.rng metadata", st.path);
        goto done;
    }
    /* check every tensor before changing anything */
    for (bl = 0; bl < 7; bl++) {
        const int disc = bl >= 4;
        const int cnt = disc ? (t->disc ? t->disc->n_tensors : 0) : t->n_tensors;
        if ((bl == 1 && !t->ema) || (disc && !t->disc)) continue;
        for (i = 0; i < cnt; i++) {
            const textok_tensor_spec *sp = disc ? &t->disc->specs[i] : &t->specs[i];
            const textok_st_tensor *tt;
            int d, same;
            snprintf(name, sizeof name, "%s%s", blocks[bl], sp->name);
            if (!(tt = textok_st_find(&st, name))) {
                s = textok__fail(TEXTOK_ERR_NOT_FOUND, "%s: tensor '%s' missing", st.path, name);
                goto done;
            }
            same = tt->ndim == sp->ndim;
            for (d = 0; same && d < sp->ndim; d++) same = tt->shape[d] == sp->shape[d];
            if (!same) { s = textok__fail(TEXTOK_ERR_SHAPE, "%s: tensor '%s' has the wrong shape", st.path, name); goto done; }
        }
    }
    for (bl = 0; bl < 7; bl++) {
        const int disc = bl >= 4;
        const int cnt = disc ? (t->disc ? t->disc->n_tensors : 0) : t->n_tensors;
        const size_t np = disc ? (t->disc ? t->disc->n_params : 0) : t->m->n_params;
        float *dst = bl == 0 ? t->m->params : bl == 1 ? t->ema : bl == 2 ? t->adam_m : bl == 3 ? t->adam_v
                   : bl == 4 ? (t->disc ? t->disc->params : NULL) : bl == 5 ? t->disc_m : t->disc_v;
        if (!dst || !cnt) continue;
        if (!(host = (float *)textok__malloc(np * sizeof(float)))) { s = textok__fail(TEXTOK_ERR_NOMEM, "textok_trainer_load: out of memory"); goto done; }
        for (i = 0; i < cnt; i++) {
            const textok_tensor_spec *sp = disc ? &t->disc->specs[i] : &t->specs[i];
            const size_t o = disc ? t->disc_offsets[i] : t->offsets[i];
            snprintf(name, sizeof name, "%s%s", blocks[bl], sp->name);
            if ((s = textok_st_read_f32(&st, textok_st_find(&st, name), host + o, textok__spec_numel(sp))) != TEXTOK_OK) goto done;
        }
        if ((s = t->k.to_device(&t->k, dst, host, np * sizeof(float))) != TEXTOK_OK) goto done;
        TEXTOK_FREE(host); host = NULL;
    }
    t->step = step; t->disc_step = dstep; t->lecam_real = lr_; t->lecam_fake = lf_; t->rng = rng;
    s = textok__titok_derive(t->m);
done:
    TEXTOK_FREE(host);
    textok_st_close(&st);
    return s;
}

TEXTOKDEF int textok_trainer_save_model(textok_trainer *t, const char *path, int ema)
{
    const char *kv[2 * TEXTOK__CKPT_META];
    char meta[4096];
    textok_st_entry *e = NULL;
    float *host = NULL;
    int n_meta, i, d, st;
    if (!t || !path) return textok__fail(TEXTOK_ERR_ARG, "textok_trainer_save_model: NULL argument");
    if (ema && !t->ema) return textok__fail(TEXTOK_ERR_ARG, "textok_trainer_save_model: this trainer keeps no EMA (ema_decay 0)");
    if ((n_meta = textok_titok_config_to_meta(&t->m->cfg, kv, TEXTOK__CKPT_META - 1, meta, sizeof meta)) < 0) return n_meta;
    e = (textok_st_entry *)textok__calloc((size_t)t->n_tensors, sizeof *e);
    host = (float *)textok__malloc(t->m->n_params * sizeof(float));
    if (!e || !host) { st = textok__fail(TEXTOK_ERR_NOMEM, "textok_trainer_save_model: out of memory"); goto done; }
    if ((st = t->k.to_host(&t->k, host, ema ? t->ema : t->m->params, t->m->n_params * sizeof(float))) != TEXTOK_OK) goto done;
    for (i = 0; i < t->n_tensors; i++) {
        e[i].name = t->specs[i].name;
        e[i].data = host + t->offsets[i];
        e[i].ndim = t->specs[i].ndim;
        for (d = 0; d < t->specs[i].ndim; d++) e[i].shape[d] = t->specs[i].shape[d];
    }
    st = textok_st_save(path, e, t->n_tensors, kv, n_meta, TEXTOK_DTYPE_F32);
done:
    TEXTOK_FREE(e); TEXTOK_FREE(host);
    return st;
}
#undef TEXTOK__TRY


/* ---------------------------------------------------------------------------------------------
   14. DiT (architecture.md 7.1; textok-paper.md 1.4): the official DiT over 2D SD-VAE latents, the
   same network over 1D token sequences (TexTok's K x d tokens: patch 1, 1D sin-cos positions),
   and DiT-T2I (our design, the paper leaves it open): PixArt-alpha style cross-attention to the
   caption in every block.

   Forward (x (B,C,S,S) or (B,C,1,N), t (B) original timesteps, y (B) classes, text):
     1. x_embedder.proj: a stride-p conv (D, C, p, p) -> tokens (B, T, D), token = row*(S/p) + col
        (1D: p = 1 on a (C, 1, N) "image": the same conv, a per-token Linear (D, C, 1, 1));
        plus pos_embed (1, T, D), fixed sin-cos, stored in the file (computed at create):
        2D [sin(col w), cos(col w), sin(row w), cos(row w)], w_k = 10000^(-k/(D/4)) (the column
        first: MAE's meshgrid(w, h)); 1D [sin(n w), cos(n w)], w_k = 10000^(-k/(D/2)).
     2. c = t_embedder.mlp(features(t)) (+ y_embedder.embedding_table[y] when num_classes > 0);
        features = [cos(t f), sin(t f)], f_k = exp(-ln(10000) k / 128), k < 128, float32 as the
        official code (the COSINE first, unlike the positions: pitfall 14). Row num_classes of
        the label table is the null class (CFG).
     3. depth blocks of section 8's generic block (adaLN-Zero, LayerNorm without affine eps 1e-6,
        tanh GELU, timm's fused qkv with rows [q; k; v]); DiT-T2I adds after the self-attention
        x += cross_attn.proj(attention(q_linear(x), kv_linear(ctx) [k; v], key mask)), where
        ctx = y_embedder.y_proj.fc2(GELU_tanh(y_proj.fc1(text))) (B, L, D) and the key mask is the
        caption's padding mask. The null caption (CFG, caption dropout) has every key masked: the
        attention then outputs 0 (section 5's convention), so it adds cross_attn.proj.bias only
        and needs no extra parameters. A T2I model has no label table when num_classes = 0
        (c = t_emb); a model may have both.
     4. final_layer: (shift, scale) = adaLN_modulation.1(SiLU(c)) chunked; LN (no affine, 1e-6),
        modulate, linear (p*p*Cout, D), unpatchify to (B, Cout, S, S) (1D: (B, Cout, 1, N)).
   File (textok layout): the official state_dict names and order (architecture.md 7.2), so an
   official DiT-XL/2 .pt converts by a shape check:
      pos_embed (1,T,D); x_embedder.proj.{weight (D,C,p,p), bias}; t_embedder.mlp.{0,2}.{weight,bias};
      [y_embedder.embedding_table.weight (num_classes+1, D)];
      [y_embedder.y_proj.fc1.{weight (D,text_dim), bias}, y_embedder.y_proj.fc2.{weight (D,D), bias}];
      blocks.{i}.attn.qkv.{weight (3D,D), bias}, blocks.{i}.attn.proj.*,
      [blocks.{i}.cross_attn.q_linear.* (D,D), .kv_linear.* (2D,D), .proj.* (D,D)],
      blocks.{i}.mlp.fc1.* (M,D), blocks.{i}.mlp.fc2.* (D,M), blocks.{i}.adaLN_modulation.1.* (6D,D);
      final_layer.linear.* (p*p*Cout, D), final_layer.adaLN_modulation.1.* (2D, D);
   __metadata__ "textok.model" = "dit" plus the config fields (decimal; latent_scale "%.9g").
   pos_embed is not trained (requires_grad False upstream): backward leaves its gradient 0.

   Memory: inference runs in chunks of max_batch rows over ONE block tape reused by every block
   (activations do not grow with depth); forward_cfg runs the conditional and the null rows of
   max_batch/2 examples in one pass (two passes of one row when max_batch is 1). Training
   (textok__dit_train_*) keeps one tape per block for its own batch size. */


typedef struct textok__dit_w {       /* the parameter pointers; the same walk binds params and grads */
    float *pos, *xe_w, *xe_b, *t0_w, *t0_b, *t2_w, *t2_b, *ytab;
    float *yp1_w, *yp1_b, *yp2_w, *yp2_b;      /* DiT-T2I caption projection */
    textok__tblock *blocks;                    /* (depth), host */
    float *fl_w, *fl_b, *fada_w, *fada_b;
} textok__dit_w;

/* one forward's activations: the inference arena (one residual buffer, one tape) and the training
   tape (depth + 1 residual buffers, depth tapes) have the same fields */
typedef struct textok__dit_acts {
    float *xin;                      /* (B, C, H, W) the network input */
    float *patch;                    /* (B, D, T) the patch conv's output */
    float *tfeat;                    /* (B, 256) timestep features */
    float *th, *ths;                 /* (B, D) t-MLP hidden before / after SiLU */
    float *c, *csilu, *yemb;         /* (B, D) */
    int32_t *ids;                    /* (B) class ids */
    float *text;                     /* (B, L, text_dim) */
    float *ctx1, *ctx1g, *ctx;       /* (B, L, D) fc1 output, after GELU, the context */
    unsigned char *kmask;            /* (B, L) caption key mask */
    float **xs;                      /* residual streams: xs[0] in inference; xs[0..depth] in training */
    int n_xs;
    textok__tb_tape *tapes;          /* 1 (inference) or depth (training) */
    int n_tapes;
    float *ln, *ln_mean, *ln_rstd;   /* (B, T, D), (B*T) x2: the final LayerNorm */
    float *shift, *scale;            /* (B, D) */
    float *mod;                      /* (B, T, D) modulated */
    float *fin;                      /* (B, T, p*p*Cout) */
    float *out;                      /* (B, Cout, H, W) */
    float *work;                     /* attention and conv work */
} textok__dit_acts;

struct textok_dit {
    textok_kernels k;                /* the table (copied at load) */
    float *params;                   /* device block, n_params floats, walk order */
    size_t n_params;
    textok_tensor_spec *specs;       /* (n_tensors) host, walk order */
    int n_tensors;
    textok_dit_config cfg;
    int max_batch;
    int H, W, gh, gw, T, Cout, P;    /* input H x W (S x S or 1 x N), token grid, tokens, out channels, p*p*Cout */
    textok__dit_w w;
    textok__tblock *blocks_host;
    textok__tb_tape tape;            /* the one inference tape */
    float *xs0;
    textok__dit_acts a;
    float *arena;
    size_t arena_floats;
    /* host staging for one pass */
    float *h_feat;                   /* (max_batch, 256) */
    float *h_cfg;                    /* (max_batch + max(max_batch/2, 1), Cout*H*W) forward_cfg's
                                        model outputs: so a sampling step allocates nothing */
    int32_t *h_y;                    /* (max_batch) */
    int *h_row;                      /* (max_batch) the caller's row of each pass row (its text) */
    unsigned char *h_null;           /* (max_batch) 1 = null condition (CFG's unconditional rows) */
    unsigned char *h_mask;           /* (max_batch, text_len) */
    void *host_block;
};

/* ----- configuration ------------------------------------------------------------------------ */
TEXTOKDEF int textok_dit_config_check(const textok_dit_config *c)
{
#define TEXTOK__CHK(cond, ...) do { if (!(cond)) return textok__fail(TEXTOK_ERR_SHAPE, "DiT config: " __VA_ARGS__); } while (0)
    if (!c) return textok__fail(TEXTOK_ERR_ARG, "textok_dit_config_check: NULL config");
    TEXTOK__CHK(c->in_channels >= 1 && c->in_channels <= 4096, "in_channels %d not in [1, 4096]", c->in_channels);
    TEXTOK__CHK(c->seq_1d == 0 || c->seq_1d == 1, "seq_1d %d is not 0 or 1", c->seq_1d);
    TEXTOK__CHK(c->input_size >= 1 && c->input_size <= 65536, "input_size %d not in [1, 65536]", c->input_size);
    if (c->seq_1d) {
        TEXTOK__CHK(c->patch_size == 1, "patch_size %d must be 1 for a 1D token sequence (seq_1d)", c->patch_size);
    } else {
        TEXTOK__CHK(c->patch_size >= 1 && c->patch_size <= 64 && c->input_size % c->patch_size == 0,
                    "patch_size %d must divide input_size %d", c->patch_size, c->input_size);
        TEXTOK__CHK((int64_t)c->input_size * c->input_size <= 16777216, "input_size %d is too large for a 2D latent", c->input_size);
    }
    TEXTOK__CHK(c->hidden >= 4 && c->hidden <= 65536, "hidden %d not in [4, 65536]", c->hidden);
    TEXTOK__CHK(c->hidden % (c->seq_1d ? 2 : 4) == 0, "hidden %d must be a multiple of %d for the %s sin-cos positions",
                c->hidden, c->seq_1d ? 2 : 4, c->seq_1d ? "1D" : "2D");
    TEXTOK__CHK(c->depth >= 0 && c->depth <= 1024, "depth %d not in [0, 1024]", c->depth);
    TEXTOK__CHK(c->heads >= 1 && c->hidden % c->heads == 0, "heads %d must divide hidden %d", c->heads, c->hidden);
    TEXTOK__CHK(c->mlp_hidden >= 1 && c->mlp_hidden <= 262144, "mlp_hidden %d not in [1, 262144]", c->mlp_hidden);
    TEXTOK__CHK(c->num_classes >= 0 && c->num_classes <= (1 << 24), "num_classes %d not in [0, 2^24]", c->num_classes);
    TEXTOK__CHK(c->learn_sigma == 0 || c->learn_sigma == 1, "learn_sigma %d is not 0 or 1", c->learn_sigma);
    if (c->text_dim || c->text_len)
        TEXTOK__CHK(c->text_dim >= 1 && c->text_dim <= 65536 && c->text_len >= 1 && c->text_len <= 65536,
                    "text_dim %d and text_len %d must both be in [1, 65536] (DiT-T2I) or both 0", c->text_dim, c->text_len);
    TEXTOK__CHK(c->guide_channels >= 1 && c->guide_channels <= c->in_channels,
                "guide_channels %d not in [1, in_channels %d]", c->guide_channels, c->in_channels);
    TEXTOK__CHK(c->latent_scale > 0.0f && c->latent_scale <= 1e6f, "latent_scale %g must be positive and finite", (double)c->latent_scale);
#undef TEXTOK__CHK
    return TEXTOK_OK;
}

TEXTOKDEF int textok_dit_preset(textok_dit_config *cfg, const char *name, int image_size)
{
    static const struct { const char *size; int depth, hidden, heads; } sizes[] = {
        { "XL", 28, 1152, 16 }, { "L", 24, 1024, 16 }, { "B", 12, 768, 12 }, { "S", 12, 384, 6 }
    };
    const char *slash = name ? strchr(name, '/') : NULL;
    int i, p;
    if (!cfg || !name) return textok__fail(TEXTOK_ERR_ARG, "textok_dit_preset: NULL argument");
    if (!slash || !textok__parse_int(slash + 1, &p) || (p != 2 && p != 4 && p != 8))
        return textok__fail(TEXTOK_ERR_ARG, "textok_dit_preset: \"%.40s\" is not a DiT size: XL/2, XL/4, XL/8, L/2, ..., B/..., S/8", name);
    for (i = 0; i < 4; i++)
        if ((size_t)(slash - name) == strlen(sizes[i].size) && !strncmp(name, sizes[i].size, (size_t)(slash - name))) break;
    if (i == 4) return textok__fail(TEXTOK_ERR_ARG, "textok_dit_preset: \"%.40s\" is not a DiT size: XL/2, XL/4, XL/8, L/2, ..., B/..., S/8", name);
    if (image_size < 8 * p || image_size > 8192 || image_size % (8 * p) != 0)
        return textok__fail(TEXTOK_ERR_ARG, "textok_dit_preset: image_size %d must be a multiple of %d (8 x patch %d; 256 or 512 for "
                            "the published models)", image_size, 8 * p, p);
    memset(cfg, 0, sizeof *cfg);
    cfg->in_channels = 4; cfg->input_size = image_size / 8; cfg->seq_1d = 0; cfg->patch_size = p;
    cfg->hidden = sizes[i].hidden; cfg->depth = sizes[i].depth; cfg->heads = sizes[i].heads; cfg->mlp_hidden = 4 * sizes[i].hidden;
    cfg->num_classes = 1000; cfg->learn_sigma = 1; cfg->guide_channels = 3; cfg->latent_scale = 0.18215f;
    return TEXTOK_OK;
}

typedef struct textok__dit_field { const char *key; size_t offset; } textok__dit_field;
#define TEXTOK__DF(f) { #f, offsetof(textok_dit_config, f) }
static const textok__dit_field textok__dit_fields[] = {
    TEXTOK__DF(in_channels), TEXTOK__DF(input_size), TEXTOK__DF(seq_1d), TEXTOK__DF(patch_size), TEXTOK__DF(hidden),
    TEXTOK__DF(depth), TEXTOK__DF(heads), TEXTOK__DF(mlp_hidden), TEXTOK__DF(num_classes), TEXTOK__DF(learn_sigma),
    TEXTOK__DF(text_dim), TEXTOK__DF(text_len), TEXTOK__DF(guide_channels)
};
#undef TEXTOK__DF
#define TEXTOK__DIT_N_FIELDS ((int)(sizeof textok__dit_fields / sizeof textok__dit_fields[0]))

TEXTOKDEF int textok_dit_config_from_meta(textok_dit_config *cfg, const textok_safetensors *st)
{
    const char *v;
    int i;
    if (!cfg || !st) return textok__fail(TEXTOK_ERR_ARG, "textok_dit_config_from_meta: NULL argument");
    memset(cfg, 0, sizeof *cfg);
    v = textok_st_meta(st, "textok.model");
    if (!v || strcmp(v, "dit") != 0)
        return textok__fail(TEXTOK_ERR_FORMAT, "%s: not a textok-layout DiT file (__metadata__ 'textok.model' is %s%s%s, expected "
                            "\"dit\"); convert official checkpoints with build/convert, or load them with textok_dit_load_st "
                            "and an explicit config", st->path, v ? "\"" : "absent", v ? v : "", v ? "\"" : "");
    for (i = 0; i < TEXTOK__DIT_N_FIELDS; i++) {
        int *dst = (int *)((char *)cfg + textok__dit_fields[i].offset);
        v = textok_st_meta(st, textok__dit_fields[i].key);
        if (!v) return textok__fail(TEXTOK_ERR_FORMAT, "%s: __metadata__ lacks '%s'", st->path, textok__dit_fields[i].key);
        if (!textok__parse_int(v, dst))
            return textok__fail(TEXTOK_ERR_FORMAT, "%s: __metadata__ '%s' = \"%.40s\" is not a non-negative integer",
                                st->path, textok__dit_fields[i].key, v);
    }
    v = textok_st_meta(st, "latent_scale");
    if (!v) return textok__fail(TEXTOK_ERR_FORMAT, "%s: __metadata__ lacks 'latent_scale'", st->path);
    if (!textok__parse_float(v, &cfg->latent_scale))
        return textok__fail(TEXTOK_ERR_FORMAT, "%s: __metadata__ 'latent_scale' = \"%.40s\" is not a positive decimal number", st->path, v);
    if (textok_dit_config_check(cfg) != TEXTOK_OK) return textok__fail_wrap(TEXTOK_ERR_SHAPE, st->path);
    return TEXTOK_OK;
}

TEXTOKDEF int textok_dit_config_to_meta(const textok_dit_config *cfg, const char **kv, int max_pairs, char *buf, size_t buf_size)
{
    int n = 0, i;
    size_t used = 0;
#define TEXTOK__PUT(key, ...) do {                                                       \
        int w_;                                                                          \
        if (n >= max_pairs) return textok__fail(TEXTOK_ERR_ARG, "textok_dit_config_to_meta: more than %d pairs", max_pairs); \
        w_ = snprintf(buf + used, buf_size - used, __VA_ARGS__);                          \
        if (w_ < 0 || (size_t)w_ + 1 > buf_size - used)                                  \
            return textok__fail(TEXTOK_ERR_ARG, "textok_dit_config_to_meta: buffer of %lu bytes too small", (unsigned long)buf_size); \
        kv[2 * n] = (key); kv[2 * n + 1] = buf + used; used += (size_t)w_ + 1; n++;       \
    } while (0)
    if (!cfg || !kv || !buf) return textok__fail(TEXTOK_ERR_ARG, "textok_dit_config_to_meta: NULL argument");
    TEXTOK__PUT("textok.model", "dit");
    for (i = 0; i < TEXTOK__DIT_N_FIELDS; i++)
        TEXTOK__PUT(textok__dit_fields[i].key, "%d", *(const int *)((const char *)cfg + textok__dit_fields[i].offset));
    TEXTOK__PUT("latent_scale", "%.9g", (double)cfg->latent_scale);
#undef TEXTOK__PUT
    return n;
}

/* ----- the parameter walk (official state_dict order) ----------------------------------------- */
static void textok__dit_walk(const textok_dit_config *c, textok__dit_w *m, textok__walk *w)
{
    const int64_t D = c->hidden, C = c->in_channels, p = c->patch_size, M = c->mlp_hidden;
    const int64_t Co = c->learn_sigma ? 2 * C : C;
    const int64_t T = c->seq_1d ? c->input_size : (int64_t)(c->input_size / c->patch_size) * (c->input_size / c->patch_size);
    int i;
#define TEXTOK__S(f) (m ? &m->f : (float **)NULL)
    textok__wt(w, TEXTOK__S(pos), 3, 1, T, D, 0, "pos_embed");
    textok__wt(w, TEXTOK__S(xe_w), 4, D, C, p, p, "x_embedder.proj.weight");
    textok__wt(w, TEXTOK__S(xe_b), 1, D, 0, 0, 0, "x_embedder.proj.bias");
    textok__wt(w, TEXTOK__S(t0_w), 2, D, 256, 0, 0, "t_embedder.mlp.0.weight");
    textok__wt(w, TEXTOK__S(t0_b), 1, D, 0, 0, 0, "t_embedder.mlp.0.bias");
    textok__wt(w, TEXTOK__S(t2_w), 2, D, D, 0, 0, "t_embedder.mlp.2.weight");
    textok__wt(w, TEXTOK__S(t2_b), 1, D, 0, 0, 0, "t_embedder.mlp.2.bias");
    if (c->num_classes > 0)
        textok__wt(w, TEXTOK__S(ytab), 2, (int64_t)c->num_classes + 1, D, 0, 0, "y_embedder.embedding_table.weight");
    if (c->text_dim > 0) {
        textok__wt(w, TEXTOK__S(yp1_w), 2, D, c->text_dim, 0, 0, "y_embedder.y_proj.fc1.weight");
        textok__wt(w, TEXTOK__S(yp1_b), 1, D, 0, 0, 0, "y_embedder.y_proj.fc1.bias");
        textok__wt(w, TEXTOK__S(yp2_w), 2, D, D, 0, 0, "y_embedder.y_proj.fc2.weight");
        textok__wt(w, TEXTOK__S(yp2_b), 1, D, 0, 0, 0, "y_embedder.y_proj.fc2.bias");
    }
    for (i = 0; i < c->depth; i++) {
        textok__tblock *b = m ? &m->blocks[i] : NULL;
#define TEXTOK__B(f) (b ? &b->f : (float **)NULL)
        textok__wt(w, TEXTOK__B(q_w), 2, 3 * D, D, 0, 0, "blocks.%d.attn.qkv.weight", i);
        textok__wt(w, TEXTOK__B(q_b), 1, 3 * D, 0, 0, 0, "blocks.%d.attn.qkv.bias", i);
        textok__wt(w, TEXTOK__B(proj_w), 2, D, D, 0, 0, "blocks.%d.attn.proj.weight", i);
        textok__wt(w, TEXTOK__B(proj_b), 1, D, 0, 0, 0, "blocks.%d.attn.proj.bias", i);
        if (c->text_dim > 0) {
            textok__wt(w, TEXTOK__B(ca_q_w), 2, D, D, 0, 0, "blocks.%d.cross_attn.q_linear.weight", i);
            textok__wt(w, TEXTOK__B(ca_q_b), 1, D, 0, 0, 0, "blocks.%d.cross_attn.q_linear.bias", i);
            textok__wt(w, TEXTOK__B(ca_k_w), 2, 2 * D, D, 0, 0, "blocks.%d.cross_attn.kv_linear.weight", i);
            textok__wt(w, TEXTOK__B(ca_k_b), 1, 2 * D, 0, 0, 0, "blocks.%d.cross_attn.kv_linear.bias", i);
            textok__wt(w, TEXTOK__B(ca_proj_w), 2, D, D, 0, 0, "blocks.%d.cross_attn.proj.weight", i);
            textok__wt(w, TEXTOK__B(ca_proj_b), 1, D, 0, 0, 0, "blocks.%d.cross_attn.proj.bias", i);
        }
        textok__wt(w, TEXTOK__B(fc1_w), 2, M, D, 0, 0, "blocks.%d.mlp.fc1.weight", i);
        textok__wt(w, TEXTOK__B(fc1_b), 1, M, 0, 0, 0, "blocks.%d.mlp.fc1.bias", i);
        textok__wt(w, TEXTOK__B(fc2_w), 2, D, M, 0, 0, "blocks.%d.mlp.fc2.weight", i);
        textok__wt(w, TEXTOK__B(fc2_b), 1, D, 0, 0, 0, "blocks.%d.mlp.fc2.bias", i);
        textok__wt(w, TEXTOK__B(ada_w), 2, 6 * D, D, 0, 0, "blocks.%d.adaLN_modulation.1.weight", i);
        textok__wt(w, TEXTOK__B(ada_b), 1, 6 * D, 0, 0, 0, "blocks.%d.adaLN_modulation.1.bias", i);
#undef TEXTOK__B
        if (b && w->base) {   /* the fused qkv / kv: k and v are row blocks of the same tensor */
            b->k_w = b->q_w + D * D; b->v_w = b->q_w + 2 * D * D;
            b->k_b = b->q_b + D;     b->v_b = b->q_b + 2 * D;
            if (c->text_dim > 0) { b->ca_v_w = b->ca_k_w + D * D; b->ca_v_b = b->ca_k_b + D; }
        }
    }
    textok__wt(w, TEXTOK__S(fl_w), 2, p * p * Co, D, 0, 0, "final_layer.linear.weight");
    textok__wt(w, TEXTOK__S(fl_b), 1, p * p * Co, 0, 0, 0, "final_layer.linear.bias");
    textok__wt(w, TEXTOK__S(fada_w), 2, 2 * D, D, 0, 0, "final_layer.adaLN_modulation.1.weight");
    textok__wt(w, TEXTOK__S(fada_b), 1, 2 * D, 0, 0, 0, "final_layer.adaLN_modulation.1.bias");
#undef TEXTOK__S
}

TEXTOKDEF int textok_dit_tensor_specs(const textok_dit_config *cfg, textok_tensor_spec *specs, int max_specs)
{
    textok__walk w;
    int st;
    if ((st = textok_dit_config_check(cfg)) != TEXTOK_OK) return st;
    memset(&w, 0, sizeof w);
    w.specs = specs;
    w.max_specs = specs ? max_specs : 0;
    textok__dit_walk(cfg, NULL, &w);
    if (w.overflow) return textok__fail(TEXTOK_ERR_SHAPE, "DiT config: parameter count overflows size_t");
    return w.n;
}

/* Binds w (its blocks array: cfg->depth entries, zeroed) to the block at base. */
static void textok__dit_bind(const textok_dit_config *c, textok__dit_w *w, float *base)
{
    textok__walk wk;
    textok__tblock *blocks = w->blocks;
    memset(w, 0, sizeof *w);
    w->blocks = blocks;
    memset(blocks, 0, (size_t)c->depth * sizeof *blocks);
    memset(&wk, 0, sizeof wk);
    wk.base = base;
    textok__dit_walk(c, w, &wk);
}

static int textok__dit_frozen(const char *name) { return name && strcmp(name, "pos_embed") == 0; }

/* ----- fixed embeddings (host, computed in double as MAE's numpy code, then rounded) --------- */
static void textok__dit_pos_embed(const textok_dit_config *c, int gh, int gw, float *pe)
{
    const int D = c->hidden;
    int i, j, k;
    if (c->seq_1d) {
        const int q = D / 2;
        for (j = 0; j < gw; j++)
            for (k = 0; k < q; k++) {
                double a = (double)j * (1.0 / pow(10000.0, (double)k / (D / 2.0)));
                pe[(size_t)j * D + k] = (float)sin(a);
                pe[(size_t)j * D + q + k] = (float)cos(a);
            }
        return;
    }
    {
        const int q = D / 4;
        for (i = 0; i < gh; i++)
            for (j = 0; j < gw; j++) {
                float *row = pe + ((size_t)i * gw + j) * D;
                for (k = 0; k < q; k++) {
                    double om = 1.0 / pow(10000.0, (double)k / (D / 4.0)), aj = (double)j * om, ai = (double)i * om;
                    row[k] = (float)sin(aj); row[q + k] = (float)cos(aj);
                    row[2 * q + k] = (float)sin(ai); row[3 * q + k] = (float)cos(ai);
                }
            }
    }
}

/* [cos(t f), sin(t f)], f_k = exp(-ln(10000) k / 128) in float32 as the official code: the
   product k * (float)-ln(10000), then / 128 (exact), then exp; args = (float)t * f. exp and
   cos/sin run in double and round once (torch's float32 versions are within an ulp). */
static void textok__dit_tfeat(float *dst, int32_t t)
{
    const float nl = (float)(-log(10000.0));
    int k;
    for (k = 0; k < 128; k++) {
        float e = (float)k * nl;
        float f = (float)exp((double)(e / 128.0f));
        float a = (float)t * f;
        dst[k] = (float)cos((double)a);
        dst[128 + k] = (float)sin((double)a);
    }
}

/* ----- the activations ------------------------------------------------------------------------ */
static textok__tb_shape textok__dit_shape(const textok_dit *m, int B, int Tc)
{
    textok__tb_shape s;
    memset(&s, 0, sizeof s);
    s.B = B; s.T = m->T; s.D = m->cfg.hidden; s.H = m->cfg.heads; s.M = m->cfg.mlp_hidden;
    s.Tc = m->cfg.text_dim > 0 ? Tc : 0;
    s.eps = 1e-6f; s.post_norm = 0; s.gelu_tanh = 1;
    s.has_skip = 0; s.has_cross = m->cfg.text_dim > 0; s.has_ada = 1;
    return s;
}

static textok_conv2d_dims textok__dit_conv(const textok_dit *m, int B)
{
    textok_conv2d_dims cd;
    cd.B = B; cd.C = m->cfg.in_channels; cd.H = m->H; cd.W = m->W; cd.OC = m->cfg.hidden;
    cd.KH = cd.KW = cd.stride = m->cfg.patch_size; cd.pad = 0;
    return cd;
}

/* Carves a's buffers for B rows; xs (n_xs) and tapes (n_tapes) are host arrays set by the caller. */
static void textok__dit_carve(const textok_dit *m, textok__carve *a, textok__dit_acts *x, size_t B)
{
    const textok_dit_config *c = &m->cfg;
    const size_t D = (size_t)c->hidden, T = (size_t)m->T, HW = (size_t)m->H * m->W, Lt = (size_t)c->text_len;
    const textok__tb_shape sh = textok__dit_shape(m, (int)B, c->text_len);
    const textok_conv2d_dims cd = textok__dit_conv(m, 1);
    int *o = &a->overflow, l;
    x->xin = textok__take(a, textok__mul3(B, (size_t)c->in_channels, HW, o));
    x->patch = textok__take(a, textok__mul3(B, D, T, o));
    x->tfeat = textok__take(a, B * 256);
    x->th = textok__take(a, B * D); x->ths = textok__take(a, B * D);
    x->c = textok__take(a, B * D); x->csilu = textok__take(a, B * D); x->yemb = textok__take(a, B * D);
    x->ids = (int32_t *)(void *)textok__take(a, B);
    if (c->text_dim > 0) {
        x->text = textok__take(a, textok__mul3(B, Lt, (size_t)c->text_dim, o));
        x->ctx1 = textok__take(a, textok__mul3(B, Lt, D, o));
        x->ctx1g = textok__take(a, textok__mul3(B, Lt, D, o));
        x->ctx = textok__take(a, textok__mul3(B, Lt, D, o));
        x->kmask = (unsigned char *)(void *)textok__take(a, (B * Lt + 3) / 4);
    }
    for (l = 0; l < x->n_xs; l++) x->xs[l] = textok__take(a, textok__mul3(B, T, D, o));
    for (l = 0; l < x->n_tapes; l++) textok__tb_tape_carve(a, &x->tapes[l], &sh);
    x->ln = textok__take(a, textok__mul3(B, T, D, o));
    x->ln_mean = textok__take(a, B * T); x->ln_rstd = textok__take(a, B * T);
    x->shift = textok__take(a, B * D); x->scale = textok__take(a, B * D);
    x->mod = textok__take(a, textok__mul3(B, T, D, o));
    x->fin = textok__take(a, textok__mul3(B, T, (size_t)m->P, o));
    x->out = textok__take(a, textok__mul3(B, (size_t)m->Cout, HW, o));
    x->work = textok__take(a, textok__max2(textok__tb_work_floats(&sh), textok_conv2d_work_floats(&cd)));
}

/* ----- forward -------------------------------------------------------------------------------- */
/* a->xin, tfeat, ids, text (B, L, text_dim) and kmask (B, L) on the device -> a->out. Inference
   (one residual buffer, one tape) runs every block in place; training keeps each block's input. */
static void textok__dit_forward_acts(const textok_dit *m, const textok__dit_w *w, textok__dit_acts *a, int B, int L)
{
    const textok_kernels *k = &m->k;
    const textok_dit_config *c = &m->cfg;
    const int D = c->hidden, T = m->T;
    const textok__tb_shape sh = textok__dit_shape(m, B, L);
    const textok_conv2d_dims cd = textok__dit_conv(m, B);
    const size_t bd = (size_t)B * D;
    int b, l;
    /* 1. patches + positions */
    k->conv2d_forward(k, a->patch, a->xin, w->xe_w, w->xe_b, &cd, a->work);
    k->transpose_forward(k, a->xs[0], a->patch, B, D, T);
    for (b = 0; b < B; b++) k->add_forward(k, a->xs[0] + (size_t)b * T * D, a->xs[0] + (size_t)b * T * D, w->pos, (size_t)T * D);
    /* 2. the condition c and SiLU(c) */
    textok__linear(k, a->th, a->tfeat, w->t0_w, w->t0_b, B, 256, D);
    k->silu_forward(k, a->ths, a->th, bd);
    textok__linear(k, a->c, a->ths, w->t2_w, w->t2_b, B, D, D);
    if (c->num_classes > 0) {
        k->embedding_forward(k, a->yemb, w->ytab, a->ids, B, D);
        k->add_forward(k, a->c, a->c, a->yemb, bd);
    }
    k->silu_forward(k, a->csilu, a->c, bd);
    if (c->text_dim > 0) {
        textok__linear(k, a->ctx1, a->text, w->yp1_w, w->yp1_b, B * L, c->text_dim, D);
        k->gelu_forward(k, a->ctx1g, a->ctx1, (size_t)B * L * D, 1);
        textok__linear(k, a->ctx, a->ctx1g, w->yp2_w, w->yp2_b, B * L, D, D);
    }
    /* 3. the blocks */
    for (l = 0; l < c->depth; l++) {
        float *xi = a->xs[l < a->n_xs ? l : a->n_xs - 1], *xo = a->xs[l + 1 < a->n_xs ? l + 1 : a->n_xs - 1];
        textok__tb_forward(k, &w->blocks[l], &sh, &a->tapes[l < a->n_tapes ? l : a->n_tapes - 1], xi, xo, a->csilu, NULL,
                           a->ctx, a->kmask, a->work);
    }
    /* 4. the final layer and unpatchify */
    {
        const float *xl = a->xs[c->depth < a->n_xs ? c->depth : a->n_xs - 1];
        textok__linear(k, a->shift, a->csilu, w->fada_w, w->fada_b, B, D, D);
        textok__linear(k, a->scale, a->csilu, w->fada_w + (size_t)D * D, w->fada_b + D, B, D, D);
        k->layernorm_forward(k, a->ln, a->ln_mean, a->ln_rstd, xl, NULL, NULL, B * T, D, 1e-6f);
        k->modulate_forward(k, a->mod, a->ln, a->shift, a->scale, B, T, D);
        textok__linear(k, a->fin, a->mod, w->fl_w, w->fl_b, B * T, D, m->P);
        k->unpatchify_forward(k, a->out, a->fin, B, m->Cout, m->H, m->W, c->patch_size);
    }
}

/* Gradient scratch of the training tape. */
typedef struct textok__dit_grad_acts {
    float *dout, *dfin, *dmod, *dln, *dx, *dshift, *dscale, *dcsilu, *dc, *dths, *dth, *dctx, *dctx1g, *dctx1, *dpatch;
    textok__tb_scratch sc;
} textok__dit_grad_acts;

static void textok__dit_grad_carve(const textok_dit *m, textok__carve *a, textok__dit_grad_acts *g, size_t B)
{
    const textok_dit_config *c = &m->cfg;
    const size_t D = (size_t)c->hidden, T = (size_t)m->T, HW = (size_t)m->H * m->W, Lt = (size_t)c->text_len;
    const textok__tb_shape sh = textok__dit_shape(m, (int)B, c->text_len);
    int *o = &a->overflow;
    g->dout = textok__take(a, textok__mul3(B, (size_t)m->Cout, HW, o));
    g->dfin = textok__take(a, textok__mul3(B, T, (size_t)m->P, o));
    g->dmod = textok__take(a, textok__mul3(B, T, D, o));
    g->dln = textok__take(a, textok__mul3(B, T, D, o));
    g->dx = textok__take(a, textok__mul3(B, T, D, o));
    g->dshift = textok__take(a, B * D); g->dscale = textok__take(a, B * D);
    g->dcsilu = textok__take(a, B * D); g->dc = textok__take(a, B * D);
    g->dths = textok__take(a, B * D); g->dth = textok__take(a, B * D);
    if (c->text_dim > 0) {
        g->dctx = textok__take(a, textok__mul3(B, Lt, D, o));
        g->dctx1g = textok__take(a, textok__mul3(B, Lt, D, o));
        g->dctx1 = textok__take(a, textok__mul3(B, Lt, D, o));
    }
    g->dpatch = textok__take(a, textok__mul3(B, D, T, o));
    textok__tb_scratch_carve(a, &g->sc, &sh);
}

/* g->dout (B, Cout, H, W) on the device -> gradients ACCUMULATED into gw (pos_embed excluded: not
   trained) and into dxin (B, C, H, W) when not NULL. */
static void textok__dit_backward_acts(const textok_dit *m, const textok__dit_w *w, const textok__dit_w *gw,
                                      const textok__dit_acts *a, textok__dit_grad_acts *g, int B, int L, float *dxin)
{
    const textok_kernels *k = &m->k;
    const textok_dit_config *c = &m->cfg;
    const int D = c->hidden, T = m->T;
    const textok__tb_shape sh = textok__dit_shape(m, B, L);
    const textok_conv2d_dims cd = textok__dit_conv(m, B);
    const size_t bd = (size_t)B * D, n = (size_t)B * T * D, nc = (size_t)B * L * D;
    int l;
    /* final layer */
    k->fill(k, g->dfin, (size_t)B * T * m->P, 0.0f);
    k->unpatchify_backward(k, g->dfin, g->dout, B, m->Cout, m->H, m->W, c->patch_size);
    k->fill(k, g->dmod, n, 0.0f);
    textok__linear_backward(k, g->dmod, gw->fl_w, gw->fl_b, g->dfin, a->mod, w->fl_w, B * T, D, m->P);
    k->fill(k, g->dln, n, 0.0f); k->fill(k, g->dshift, bd, 0.0f); k->fill(k, g->dscale, bd, 0.0f);
    k->modulate_backward(k, g->dln, g->dshift, g->dscale, g->dmod, a->ln, a->scale, B, T, D);
    k->fill(k, g->dx, n, 0.0f);
    k->layernorm_backward(k, g->dx, NULL, NULL, g->dln, a->xs[c->depth], NULL, a->ln_mean, a->ln_rstd, B * T, D);
    k->fill(k, g->dcsilu, bd, 0.0f);
    textok__linear_backward(k, g->dcsilu, gw->fada_w, gw->fada_b, g->dshift, a->csilu, w->fada_w, B, D, D);
    textok__linear_backward(k, g->dcsilu, gw->fada_w + (size_t)D * D, gw->fada_b + D, g->dscale, a->csilu,
                            w->fada_w + (size_t)D * D, B, D, D);
    /* the blocks, last first */
    if (c->text_dim > 0) k->fill(k, g->dctx, nc, 0.0f);
    for (l = c->depth - 1; l >= 0; l--)
        textok__tb_backward(k, &w->blocks[l], &gw->blocks[l], &sh, &a->tapes[l], g->dx, g->dcsilu, NULL,
                            c->text_dim > 0 ? g->dctx : NULL, a->kmask, &g->sc, a->work);
    /* the caption projection */
    if (c->text_dim > 0) {
        k->fill(k, g->dctx1g, nc, 0.0f);
        textok__linear_backward(k, g->dctx1g, gw->yp2_w, gw->yp2_b, g->dctx, a->ctx1g, w->yp2_w, B * L, D, D);
        k->fill(k, g->dctx1, nc, 0.0f);
        k->gelu_backward(k, g->dctx1, g->dctx1g, a->ctx1, nc, 1);
        textok__linear_backward(k, NULL, gw->yp1_w, gw->yp1_b, g->dctx1, a->text, w->yp1_w, B * L, c->text_dim, D);
    }
    /* c = t_mlp(features) + y_emb */
    k->fill(k, g->dc, bd, 0.0f);
    k->silu_backward(k, g->dc, g->dcsilu, a->c, bd);
    if (c->num_classes > 0) k->embedding_backward(k, gw->ytab, g->dc, a->ids, B, D);
    k->fill(k, g->dths, bd, 0.0f);
    textok__linear_backward(k, g->dths, gw->t2_w, gw->t2_b, g->dc, a->ths, w->t2_w, B, D, D);
    k->fill(k, g->dth, bd, 0.0f);
    k->silu_backward(k, g->dth, g->dths, a->th, bd);
    textok__linear_backward(k, NULL, gw->t0_w, gw->t0_b, g->dth, a->tfeat, w->t0_w, B, 256, D);
    /* tokens -> the patch conv (pos_embed is fixed) */
    k->fill(k, g->dpatch, n, 0.0f);
    k->transpose_backward(k, g->dpatch, g->dx, B, D, T);
    k->conv2d_backward(k, dxin, gw->xe_w, gw->xe_b, g->dpatch, a->xin, w->xe_w, &cd, a->work);
}

/* ----- staging one pass's inputs -------------------------------------------------------------- */
static int textok__dit_check_cond(const textok_dit *m, const int32_t *t, const int32_t *y, const textok_text *text, int B,
                                  int allow_null_class, const char *who)
{
    const textok_dit_config *c = &m->cfg;
    int b;
    if (B < 1) return textok__fail(TEXTOK_ERR_ARG, "%s: batch %d < 1", who, B);
    if (t)
        for (b = 0; b < B; b++)
            if (t[b] < 0 || t[b] >= 1000)
                return textok__fail(TEXTOK_ERR_ARG, "%s: timestep t[%d] = %d not in [0, 1000)", who, b, (int)t[b]);
    if (c->num_classes > 0) {
        const int hi = c->num_classes + (allow_null_class ? 1 : 0);
        if (!y) return textok__fail(TEXTOK_ERR_ARG, "%s: this DiT is class-conditional (%d classes) and was given no class ids (y)",
                                    who, c->num_classes);
        for (b = 0; b < B; b++)
            if (y[b] < 0 || y[b] >= hi)
                return textok__fail(TEXTOK_ERR_ARG, "%s: class y[%d] = %d not in [0, %d)%s", who, b, (int)y[b], hi,
                                    allow_null_class ? " (the last one is the null class)" : "");
    }
    if (c->text_dim > 0) {
        if (!text || !text->emb)
            return textok__fail(TEXTOK_ERR_ARG, "%s: this DiT-T2I (text_dim %d) needs caption embeddings (textok_text); "
                                "a row whose mask is all 0 is the null caption", who, c->text_dim);
        if (text->dim != c->text_dim)
            return textok__fail(TEXTOK_ERR_SHAPE, "%s: the caption embeddings are %d wide; this DiT takes %d (text_dim)",
                                who, text->dim, c->text_dim);
        if (text->L < 1 || text->L > c->text_len)
            return textok__fail(TEXTOK_ERR_SHAPE, "%s: the caption has %d rows; this DiT takes 1 to %d (text_len)", who, text->L, c->text_len);
    }
    return TEXTOK_OK;
}

/* Uploads nb rows' timestep features, class ids and captions into a (B = nb). Row r is the
   caller's row rows[r] (its t, y and caption); null[r] = 1 replaces its class by the null class
   and masks every caption key. drop (may be NULL) likewise, by the caller's row. */
static int textok__dit_stage(const textok_dit *m, textok__dit_acts *a, int nb, const int32_t *t, const int32_t *y,
                             const textok_text *text, const int *rows, const unsigned char *null, float *h_feat,
                             int32_t *h_y, unsigned char *h_mask)
{
    const textok_kernels *k = &m->k;
    const textok_dit_config *c = &m->cfg;
    int r, j, st;
    for (r = 0; r < nb; r++) textok__dit_tfeat(h_feat + (size_t)r * 256, t[rows[r]]);
    if ((st = k->to_device(k, a->tfeat, h_feat, (size_t)nb * 256 * sizeof(float))) != TEXTOK_OK)
        return textok__fail_wrap(st, "DiT: a memory transfer failed");
    if (c->num_classes > 0) {
        for (r = 0; r < nb; r++) h_y[r] = null[r] ? c->num_classes : y[rows[r]];
        if ((st = k->to_device(k, a->ids, h_y, (size_t)nb * sizeof(int32_t))) != TEXTOK_OK)
            return textok__fail_wrap(st, "DiT: a memory transfer failed");
    }
    if (c->text_dim > 0) {
        const int L = text->L, Dt = c->text_dim;
        for (r = 0; r < nb; r++) {
            st = k->to_device(k, a->text + (size_t)r * L * Dt, text->emb + (size_t)rows[r] * L * Dt, (size_t)L * Dt * sizeof(float));
            if (st != TEXTOK_OK) return textok__fail_wrap(st, "DiT: a memory transfer failed");
            for (j = 0; j < L; j++)
                h_mask[(size_t)r * L + j] = (unsigned char)(!null[r] && (!text->mask || text->mask[(size_t)rows[r] * L + j] != 0));
        }
        if ((st = k->to_device(k, a->kmask, h_mask, (size_t)nb * L)) != TEXTOK_OK)
            return textok__fail_wrap(st, "DiT: a memory transfer failed");
    }
    return TEXTOK_OK;
}

/* One inference pass over nb <= max_batch rows: x rows (host, the caller's row rows[r]) -> out rows
   (host, nb consecutive (Cout, H, W) blocks). */
static int textok__dit_pass(textok_dit *m, const float *x, const int32_t *t, const int32_t *y, const textok_text *text,
                            int nb, float *out)
{
    const textok_kernels *k = &m->k;
    const size_t in = (size_t)m->cfg.in_channels * m->H * m->W, on = (size_t)m->Cout * m->H * m->W;
    int r, st;
    for (r = 0; r < nb; r++)
        if ((st = k->to_device(k, m->a.xin + (size_t)r * in, x + (size_t)m->h_row[r] * in, in * sizeof(float))) != TEXTOK_OK)
            return textok__fail_wrap(st, "DiT: a memory transfer failed");
    if ((st = textok__dit_stage(m, &m->a, nb, t, y, text, m->h_row, m->h_null, m->h_feat, m->h_y, m->h_mask)) != TEXTOK_OK) return st;
    textok__dit_forward_acts(m, &m->w, &m->a, nb, m->cfg.text_dim > 0 ? text->L : 0);
    if ((st = k->to_host(k, out, m->a.out, (size_t)nb * on * sizeof(float))) != TEXTOK_OK)
        return textok__fail_wrap(st, "DiT: a memory transfer failed");
    return TEXTOK_OK;
}

TEXTOKDEF int textok_dit_forward(textok_dit *m, const float *x, const int32_t *t, const int32_t *y,
                                 const textok_text *text, int B, float *out)
{
    const size_t on = m ? (size_t)m->Cout * m->H * m->W : 0;
    int b0, r, st;
    if (!m || !x || !t || !out) return textok__fail(TEXTOK_ERR_ARG, "textok_dit_forward: NULL argument");
    if ((st = textok__dit_check_cond(m, t, y, text, B, 1, "textok_dit_forward")) != TEXTOK_OK) return st;
    for (b0 = 0; b0 < B; b0 += m->max_batch) {
        const int nb = B - b0 < m->max_batch ? B - b0 : m->max_batch;
        for (r = 0; r < nb; r++) { m->h_row[r] = b0 + r; m->h_null[r] = 0; }
        if ((st = textok__dit_pass(m, x, t, y, text, nb, out + (size_t)b0 * on)) != TEXTOK_OK) return st;
    }
    return TEXTOK_OK;
}

/* forward_with_cfg: for each example the conditional and the null pass on the same x; guided =
   u + s (c - u) on channels [0, guide_channels), computed in float as the official code; the
   rest of the output is the conditional pass's own. */
TEXTOKDEF int textok_dit_forward_cfg(textok_dit *m, const float *x, const int32_t *t, const int32_t *y,
                                     const textok_text *text, int B, float scale, float *out)
{
    const size_t HW = m ? (size_t)m->H * m->W : 0, on = m ? (size_t)m->Cout * HW : 0;
    const int cb = m && m->max_batch >= 2 ? m->max_batch / 2 : 1;
    float *unc;
    int b0, r, st = TEXTOK_OK;
    size_t i, b;
    if (!m || !x || !t || !out) return textok__fail(TEXTOK_ERR_ARG, "textok_dit_forward_cfg: NULL argument");
    if (!(scale == scale) || scale > FLT_MAX || scale < -FLT_MAX)
        return textok__fail(TEXTOK_ERR_ARG, "textok_dit_forward_cfg: the guidance scale %g is not a finite number", (double)scale);
    if (m->cfg.num_classes == 0 && m->cfg.text_dim == 0)
        return textok__fail(TEXTOK_ERR_ARG, "textok_dit_forward_cfg: this DiT is unconditional (no classes, no text): there is "
                            "nothing to guide; use textok_dit_forward");
    if ((st = textok__dit_check_cond(m, t, y, text, B, 1, "textok_dit_forward_cfg")) != TEXTOK_OK) return st;
    unc = m->h_cfg;   /* (cb, on); the pass writing both halves uses the (max_batch, on) after it */
    for (b0 = 0; b0 < B; b0 += cb) {
        const int nb = B - b0 < cb ? B - b0 : cb;
        float *cond = out + (size_t)b0 * on;
        if (m->max_batch >= 2) {
            /* rows [cond 0..nb-1, null 0..nb-1] in one pass: the pass writes 2 nb rows, the
               conditional ones into out, the null ones into unc */
            float *both = m->h_cfg + (size_t)cb * on;
            for (r = 0; r < nb; r++) {
                m->h_row[r] = m->h_row[nb + r] = b0 + r;
                m->h_null[r] = 0; m->h_null[nb + r] = 1;
            }
            st = textok__dit_pass(m, x, t, y, text, 2 * nb, both);
            if (st == TEXTOK_OK) {
                memcpy(cond, both, (size_t)nb * on * sizeof(float));
                memcpy(unc, both + (size_t)nb * on, (size_t)nb * on * sizeof(float));
            }
        } else {
            m->h_row[0] = b0; m->h_null[0] = 0;
            st = textok__dit_pass(m, x, t, y, text, 1, cond);
            if (st == TEXTOK_OK) { m->h_null[0] = 1; st = textok__dit_pass(m, x, t, y, text, 1, unc); }
        }
        if (st != TEXTOK_OK) break;
        for (b = 0; b < (size_t)nb; b++)
            for (i = 0; i < (size_t)m->cfg.guide_channels * HW; i++) {
                float cv = cond[b * on + i], uv = unc[b * on + i];
                cond[b * on + i] = uv + scale * (cv - uv);
            }
    }
    return st;
}

/* ----- create / load / save ------------------------------------------------------------------- */
TEXTOKDEF void textok_dit_free(textok_dit *m)
{
    if (!m) return;
    if (m->params) m->k.free(&m->k, m->params);
    if (m->arena) m->k.free(&m->k, m->arena);
    TEXTOK_FREE(m->specs);
    TEXTOK_FREE(m->host_block);
    TEXTOK_FREE(m);
}

/* A model for cfg: host tables, the bound parameter block (not filled), the activation arena. */
static int textok__dit_new(textok_dit **out, const textok_dit_config *cfg, const textok_params *params)
{
    textok_params prm = params ? *params : textok_default_params();
    textok_dit *m;
    textok__walk w;
    textok__carve a;
    const textok_dit_config *c;
    size_t mb, hb, Lt, cfg_floats;   /* cfg_floats: h_cfg (see the struct) */
    unsigned char *p;
    int n_specs;
    *out = NULL;
    if (prm.max_batch < 1 || prm.max_batch > 4096)
        return textok__fail(TEXTOK_ERR_ARG, "DiT: max_batch %d not in [1, 4096]", prm.max_batch);
    if ((n_specs = textok_dit_tensor_specs(cfg, NULL, 0)) < 0) return n_specs;
    m = (textok_dit *)textok__calloc(1, sizeof *m);
    if (!m) return textok__fail(TEXTOK_ERR_NOMEM, "DiT: out of memory");
    m->cfg = *cfg;
    c = &m->cfg;
    m->k = prm.kernels ? *prm.kernels : textok_cpu_kernels(prm.n_threads);
    m->max_batch = prm.max_batch;
    m->H = c->seq_1d ? 1 : c->input_size;
    m->W = c->input_size;
    m->gh = m->H / c->patch_size; m->gw = m->W / c->patch_size;
    m->T = m->gh * m->gw;
    m->Cout = c->learn_sigma ? 2 * c->in_channels : c->in_channels;
    m->P = c->patch_size * c->patch_size * m->Cout;
    mb = (size_t)m->max_batch; Lt = (size_t)c->text_len;
    cfg_floats = (mb + (mb >= 2 ? mb / 2 : 1)) * (size_t)m->Cout * m->H * m->W;
    hb = (size_t)c->depth * sizeof(textok__tblock) + mb * 256 * sizeof(float) + mb * sizeof(int32_t)
       + cfg_floats * sizeof(float)
       + mb * sizeof(int) + mb + mb * Lt + 16;
    p = (unsigned char *)textok__calloc(1, hb);
    m->specs = (textok_tensor_spec *)textok__calloc((size_t)n_specs, sizeof *m->specs);
    if (!p || !m->specs) { TEXTOK_FREE(p); textok_dit_free(m); return textok__fail(TEXTOK_ERR_NOMEM, "DiT: out of memory"); }
    m->host_block = p;
    m->blocks_host = (textok__tblock *)(void *)p;      p += (size_t)c->depth * sizeof(textok__tblock);
    m->h_feat = (float *)(void *)p;                    p += mb * 256 * sizeof(float);
    m->h_cfg = (float *)(void *)p;                     p += cfg_floats * sizeof(float);
    m->h_y = (int32_t *)(void *)p;                     p += mb * sizeof(int32_t);
    m->h_row = (int *)(void *)p;                       p += mb * sizeof(int);
    m->h_null = p;                                     p += mb;
    m->h_mask = p;
    textok_dit_tensor_specs(cfg, m->specs, n_specs);
    m->n_tensors = n_specs;
    /* the arena: sized first, so a config it cannot serve fails before any loading */
    m->a.xs = &m->xs0; m->a.n_xs = 1; m->a.tapes = &m->tape; m->a.n_tapes = 1;
    memset(&a, 0, sizeof a);
    textok__dit_carve(m, &a, &m->a, mb);
    if (a.overflow) {   /* the message first: c may point into m */
        const int st = textok__fail(TEXTOK_ERR_SHAPE, "DiT: an activation buffer would exceed INT_MAX floats (input_size %d, max_batch %d)",
                                    c->input_size, prm.max_batch);
        textok_dit_free(m);
        return st;
    }
    m->arena_floats = a.used;
    memset(&w, 0, sizeof w);
    textok__dit_walk(c, NULL, &w);
    m->n_params = w.offset;
    m->params = (float *)m->k.alloc(&m->k, m->n_params * sizeof(float));
    m->arena = (float *)m->k.alloc(&m->k, m->arena_floats * sizeof(float));
    if (!m->params || !m->arena) {
        textok_dit_free(m);
        return textok__fail(TEXTOK_ERR_NOMEM, "DiT: cannot allocate %lu parameters and %lu MB of activations for max_batch %d",
                            (unsigned long)w.offset, (unsigned long)(a.used * sizeof(float) >> 20), prm.max_batch);
    }
    m->w.blocks = m->blocks_host;
    textok__dit_bind(c, &m->w, m->params);
    memset(&a, 0, sizeof a);
    a.base = m->arena;
    textok__dit_carve(m, &a, &m->a, mb);
    *out = m;
    return TEXTOK_OK;
}

TEXTOKDEF int textok_dit_load_st(textok_dit **out, const textok_safetensors *st, const textok_dit_config *cfg,
                                 const textok_params *params)
{
    textok_dit_config file_cfg;
    textok_dit *m = NULL;
    float *stage = NULL;
    size_t max_numel = 0, offset = 0;
    int i, status;
    if (!out || !st) return textok__fail(TEXTOK_ERR_ARG, "textok_dit_load: NULL argument");
    *out = NULL;
    if (!cfg) {
        if ((status = textok_dit_config_from_meta(&file_cfg, st)) != TEXTOK_OK) return status;
        cfg = &file_cfg;
    }
    if (cfg == &file_cfg &&   /* a config the file claims; the caller's own is trusted */
        (status = textok__st_precheck(st, textok_dit_tensor_specs(cfg, NULL, 0), textok__fill_dit, cfg, "DiT")) != TEXTOK_OK) return status;
    if ((status = textok__dit_new(&m, cfg, params)) != TEXTOK_OK) return status;
    /* exactly the expected tensors: an extra one means another model */
    for (i = 0; i < st->n_tensors; i++) {
        int j, found = 0;
        for (j = 0; j < m->n_tensors && !found; j++) found = strcmp(st->tensors[i].name, m->specs[j].name) == 0;
        if (!found) { status = textok__fail(TEXTOK_ERR_SHAPE, "%s: unexpected tensor '%.120s' for this DiT config", st->path, st->tensors[i].name); goto fail; }
    }
    for (i = 0; i < m->n_tensors; i++)
        if (textok__spec_numel(&m->specs[i]) > max_numel) max_numel = textok__spec_numel(&m->specs[i]);
    stage = (float *)textok__malloc(max_numel * sizeof(float));
    if (!stage) { status = textok__fail(TEXTOK_ERR_NOMEM, "textok_dit_load: out of memory"); goto fail; }
    for (i = 0; i < m->n_tensors; i++) {
        size_t numel = textok__spec_numel(&m->specs[i]);
        if ((status = textok_st_load(st, m->specs[i].name, m->specs[i].ndim, m->specs[i].shape, stage)) != TEXTOK_OK) goto fail;
        if ((status = m->k.to_device(&m->k, m->params + offset, stage, numel * sizeof(float))) != TEXTOK_OK) goto fail;
        offset += numel;
    }
    TEXTOK_FREE(stage);
    *out = m;
    return TEXTOK_OK;
fail:
    TEXTOK_FREE(stage);
    textok_dit_free(m);
    return status;
}

#ifndef TEXTOK_NO_STDIO
TEXTOKDEF int textok_dit_load(textok_dit **out, const char *path, const textok_params *p)
{
    textok_safetensors st;
    int status;
    if (!out || !path) return textok__fail(TEXTOK_ERR_ARG, "textok_dit_load: NULL argument");
    *out = NULL;
    if ((status = textok_st_open(&st, path)) != TEXTOK_OK) return status;
    status = textok_dit_load_st(out, &st, NULL, p);
    textok_st_close(&st);
    return status;
}
#endif

/* DiT.initialize_weights: xavier_uniform for every Linear (the patch conv on its (D, C p p) view),
   zero biases, t-MLP weights and the label table N(0, 0.02), adaLN-Zero (every adaLN Linear and
   the final linear zero), the sin-cos pos_embed. DiT-T2I: q_linear, kv_linear and y_proj xavier,
   cross_attn.proj zero, so a fresh T2I DiT starts as the plain DiT (the cross-attention adds 0). */
TEXTOKDEF int textok_dit_create(textok_dit **out, const textok_dit_config *cfg, const textok_params *params, uint64_t seed)
{
    textok_dit *m = NULL;
    textok_rng rng;
    float *stage = NULL;
    size_t max_numel = 0, offset = 0;
    int i, status;
    if (!out || !cfg) return textok__fail(TEXTOK_ERR_ARG, "textok_dit_create: NULL argument");
    *out = NULL;
    if ((status = textok__dit_new(&m, cfg, params)) != TEXTOK_OK) return status;
    for (i = 0; i < m->n_tensors; i++)
        if (textok__spec_numel(&m->specs[i]) > max_numel) max_numel = textok__spec_numel(&m->specs[i]);
    stage = (float *)textok__malloc(max_numel * sizeof(float));
    if (!stage) { status = textok__fail(TEXTOK_ERR_NOMEM, "textok_dit_create: out of memory"); goto fail; }
    textok_rng_seed(&rng, seed);
    for (i = 0; i < m->n_tensors; i++) {
        const textok_tensor_spec *sp = &m->specs[i];
        const char *nm = sp->name;
        size_t numel = textok__spec_numel(sp);
        if (!strcmp(nm, "pos_embed")) {
            textok__dit_pos_embed(&m->cfg, m->gh, m->gw, stage);
        } else if (textok__ends(nm, ".bias") || strstr(nm, "adaLN_modulation") || !strcmp(nm, "final_layer.linear.weight") ||
                   strstr(nm, "cross_attn.proj.")) {
            memset(stage, 0, numel * sizeof(float));
        } else if (!strncmp(nm, "t_embedder.mlp.", 15) || strstr(nm, "embedding_table")) {
            textok_rng_fill_normal(&rng, stage, numel, 0.0f, 0.02f);
        } else {
            double fan_out = (double)sp->shape[0], fan_in = (double)numel / fan_out;
            float a = (float)sqrt(6.0 / (fan_in + fan_out));
            textok_rng_fill_uniform(&rng, stage, numel, -a, a);
        }
        if ((status = m->k.to_device(&m->k, m->params + offset, stage, numel * sizeof(float))) != TEXTOK_OK) goto fail;
        offset += numel;
    }
    TEXTOK_FREE(stage);
    *out = m;
    return TEXTOK_OK;
fail:
    TEXTOK_FREE(stage);
    textok_dit_free(m);
    return status;
}

/* A textok-layout file of the parameter block params (device memory laid out like m->params:
   the model's own, or a trainer's EMA). */
static int textok__dit_save_params(const textok_dit *m, const char *path, const float *params)
{
#ifdef TEXTOK_NO_STDIO
    (void)m; (void)path; (void)params;
    return textok__fail(TEXTOK_ERR_UNSUPPORTED, "textok_dit_save: built with TEXTOK_NO_STDIO");
#else
    const char *kv[2 * 32];
    char meta[2048];
    textok_st_entry *e = NULL;
    float *host = NULL;
    size_t off = 0;
    int n_meta, i, d, st;
    if ((n_meta = textok_dit_config_to_meta(&m->cfg, kv, 32, meta, sizeof meta)) < 0) return n_meta;
    e = (textok_st_entry *)textok__calloc((size_t)m->n_tensors, sizeof *e);
    host = (float *)textok__malloc(m->n_params * sizeof(float));
    if (!e || !host) { st = textok__fail(TEXTOK_ERR_NOMEM, "textok_dit_save: out of memory"); goto done; }
    if ((st = m->k.to_host(&m->k, host, params, m->n_params * sizeof(float))) != TEXTOK_OK) goto done;
    for (i = 0; i < m->n_tensors; i++) {
        e[i].name = m->specs[i].name;
        e[i].data = host + off;
        e[i].ndim = m->specs[i].ndim;
        for (d = 0; d < m->specs[i].ndim; d++) e[i].shape[d] = m->specs[i].shape[d];
        off += textok__spec_numel(&m->specs[i]);
    }
    st = textok_st_save(path, e, m->n_tensors, kv, n_meta, TEXTOK_DTYPE_F32);
done:
    TEXTOK_FREE(e); TEXTOK_FREE(host);
    return st;
#endif
}

TEXTOKDEF int textok_dit_save(const textok_dit *m, const char *path)
{
    if (!m || !path) return textok__fail(TEXTOK_ERR_ARG, "textok_dit_save: NULL argument");
    return textok__dit_save_params(m, path, m->params);
}

TEXTOKDEF const textok_dit_config *textok_dit_get_config(const textok_dit *m) { return m ? &m->cfg : NULL; }
TEXTOKDEF size_t textok_dit_num_params(const textok_dit *m) { return m ? m->n_params : 0; }

/* ---------------------------------------------------------------------------------------------
   15. Gaussian diffusion (DiT diffusion/gaussian_diffusion.py, respace.py; architecture.md 7.3),
   DiT sampling and the DiT training step.

   The tables are float64 as upstream: betas = linspace(s 1e-4, s 0.02, T) with s = 1000/T
   (numpy's linspace: i*step + start, the last value exactly the end), alphas_cumprod a running
   product; respacing keeps a subset tau of the steps and recomputes every table from
   beta'_i = 1 - acp[tau_i] / acp[tau_{i-1}]. Upstream gathers each coefficient and casts it to
   float32 (_extract_into_tensor(...).float()), so we round every coefficient to float before use;
   the arithmetic on top then runs in double (upstream: float32; the difference is a few float
   roundings, far inside the goldens' tolerance).
   All of this is host-side math on host arrays: it costs a few flops per latent value per step,
   next to the network's millions, and keeping it off the kernel table keeps every backend small
   (a GPU table only moves the (B, C, H, W) tensors in and out, which the model call does anyway).

   Conventions: t of q_sample/loss and i of the steps index THIS diffusion's steps (for an
   unspaced diffusion they are the original timesteps); the model is always called with the
   original timestep textok_diffusion_timestep(d, i) (upstream's _WrappedModel, no rescaling).
   Variance: learn_sigma = 1 is LEARNED_RANGE (log var = f log beta_t + (1 - f) log_var_clipped_t,
   f = (v + 1)/2 from the second half of the output channels); learn_sigma = 0 is FIXED_LARGE
   (log(append(post_var[1], betas[1:]))), as create_diffusion picks. No clipping of x0 anywhere
   (sample.py's clip_denoised=False). */

struct textok_diffusion {
    int T, n;                /* training steps, kept steps */
    int *map;                /* (n) original timestep of each kept step */
    double *betas, *acp, *acp_prev, *sqrt_acp, *sqrt_1m_acp, *sqrt_recip_acp, *sqrt_recipm1_acp;
    double *post_lv_clipped, *coef1, *coef2, *log_betas, *fixed_large_lv;
};

TEXTOKDEF void textok_diffusion_free(textok_diffusion *d)
{
    if (!d) return;
    TEXTOK_FREE(d->map);
    TEXTOK_FREE(d->betas);
    TEXTOK_FREE(d);
}

/* space_timesteps(T, spec) into keep (T flags). "N[,M...]": the steps split into sections of
   T/len (the first T%len one longer); section k keeps its count at an accumulated float stride
   (size-1)/(count-1), each rounded half-to-even (Python's round; rint under the default rounding
   mode). "ddimN": the first integer stride s with len(range(0, T, s)) == N. */
static int textok__space_timesteps(int T, const char *spec, unsigned char *keep)
{
    int counts[64], nsec = 0, i, s;
    memset(keep, 0, (size_t)T);
    if (!spec || !*spec) { memset(keep, 1, (size_t)T); return TEXTOK_OK; }
    if (!strncmp(spec, "ddim", 4)) {
        int want;
        if (!textok__parse_int(spec + 4, &want) || want < 1)
            return textok__fail(TEXTOK_ERR_ARG, "diffusion respacing \"%.40s\": expected ddimN with N >= 1", spec);
        for (s = 1; s < T; s++)
            if ((T + s - 1) / s == want) {
                for (i = 0; i < T; i += s) keep[i] = 1;
                return TEXTOK_OK;
            }
        return textok__fail(TEXTOK_ERR_ARG, "diffusion respacing \"%.40s\": no integer stride gives exactly %d of %d steps", spec, want, T);
    }
    {
        const char *p = spec;
        while (*p) {
            char num[16];
            size_t len = strcspn(p, ",");
            if (nsec >= 64 || len == 0 || len >= sizeof num)
                return textok__fail(TEXTOK_ERR_ARG, "diffusion respacing \"%.40s\": expected \"\", a step count \"250\", counts per "
                                    "section \"10,20,30\" or \"ddimN\"", spec);
            memcpy(num, p, len); num[len] = 0;
            if (!textok__parse_int(num, &counts[nsec]) || counts[nsec] < 1)
                return textok__fail(TEXTOK_ERR_ARG, "diffusion respacing \"%.40s\": \"%s\" is not a step count >= 1", spec, num);
            nsec++;
            p += len;
            if (*p == ',' && !*++p)
                return textok__fail(TEXTOK_ERR_ARG, "diffusion respacing \"%.40s\": trailing comma", spec);
        }
    }
    {
        const int size_per = T / nsec, extra = T % nsec;
        int start = 0, k;
        for (k = 0; k < nsec; k++) {
            const int size = size_per + (k < extra ? 1 : 0);
            double stride, cur = 0.0;
            if (size < counts[k])
                return textok__fail(TEXTOK_ERR_ARG, "diffusion respacing \"%.40s\": cannot take %d steps out of a section of %d",
                                    spec, counts[k], size);
            stride = counts[k] <= 1 ? 1.0 : (double)(size - 1) / (double)(counts[k] - 1);
            for (i = 0; i < counts[k]; i++) {
                keep[start + (int)rint(cur)] = 1;
                cur += stride;
            }
            start += size;
        }
    }
    return TEXTOK_OK;
}

TEXTOKDEF int textok_diffusion_create(textok_diffusion **out, int T, const char *respacing)
{
    textok_diffusion *d = NULL;
    unsigned char *keep = NULL;
    double *base = NULL, scale, b0, b1, step, last = 1.0;
    int i, n = 0, st;
    if (!out) return textok__fail(TEXTOK_ERR_ARG, "textok_diffusion_create: NULL argument");
    *out = NULL;
    if (T < 2 || T > 1000000) return textok__fail(TEXTOK_ERR_ARG, "textok_diffusion_create: train_steps %d not in [2, 1000000]", T);
    scale = 1000.0 / T;
    b0 = scale * 0.0001; b1 = scale * 0.02;
    if (!(b1 < 1.0))
        return textok__fail(TEXTOK_ERR_ARG, "textok_diffusion_create: %d steps make the linear schedule's last beta %g >= 1 "
                            "(the schedule scales by 1000/steps)", T, b1);
    keep = (unsigned char *)textok__malloc((size_t)T);
    base = (double *)textok__malloc((size_t)T * sizeof(double));
    d = (textok_diffusion *)textok__calloc(1, sizeof *d);
    if (!keep || !base || !d) { st = textok__fail(TEXTOK_ERR_NOMEM, "textok_diffusion_create: out of memory"); goto fail; }
    if ((st = textok__space_timesteps(T, respacing, keep)) != TEXTOK_OK) goto fail;
    for (i = 0; i < T; i++) n += keep[i];
    d->T = T; d->n = n;
    d->map = (int *)textok__malloc((size_t)n * sizeof(int));
    d->betas = (double *)textok__malloc((size_t)n * 13 * sizeof(double));
    if (!d->map || !d->betas) { st = textok__fail(TEXTOK_ERR_NOMEM, "textok_diffusion_create: out of memory"); goto fail; }
    d->acp = d->betas + n; d->acp_prev = d->acp + n; d->sqrt_acp = d->acp_prev + n; d->sqrt_1m_acp = d->sqrt_acp + n;
    d->sqrt_recip_acp = d->sqrt_1m_acp + n; d->sqrt_recipm1_acp = d->sqrt_recip_acp + n; d->post_lv_clipped = d->sqrt_recipm1_acp + n;
    d->coef1 = d->post_lv_clipped + n; d->coef2 = d->coef1 + n; d->log_betas = d->coef2 + n; d->fixed_large_lv = d->log_betas + n;
    /* the base schedule (np.linspace), its cumulative product, then the kept steps' betas */
    step = (b1 - b0) / (double)(T - 1);
    for (i = 0; i < T; i++) {
        double beta = i == T - 1 ? b1 : (double)i * step + b0;
        base[i] = (i ? base[i - 1] : 1.0) * (1.0 - beta);
    }
    /* every table from the kept steps' betas 1 - acp[tau_i] / acp[tau_{i-1}]: upstream's
       SpacedDiffusion does this for the unspaced diffusion too (respacing "" keeps all steps),
       so its betas are the ratios of the cumulative product, not the linspace values */
    for (i = 0, n = 0; i < T; i++)
        if (keep[i]) {
            d->betas[n] = 1.0 - base[i] / last;
            last = base[i];
            d->map[n++] = i;
        }
    for (i = 0; i < n; i++) {
        const double beta = d->betas[i], alpha = 1.0 - beta;
        const double acp = (i ? d->acp[i - 1] : 1.0) * alpha, prev = i ? d->acp[i - 1] : 1.0;
        d->acp[i] = acp; d->acp_prev[i] = prev;
        d->sqrt_acp[i] = sqrt(acp); d->sqrt_1m_acp[i] = sqrt(1.0 - acp);
        d->sqrt_recip_acp[i] = sqrt(1.0 / acp); d->sqrt_recipm1_acp[i] = sqrt(1.0 / acp - 1.0);
        d->coef1[i] = beta * sqrt(prev) / (1.0 - acp);
        d->coef2[i] = (1.0 - prev) * sqrt(alpha) / (1.0 - acp);
        d->log_betas[i] = log(beta);
    }
    /* log(append(post_var[1], post_var[1:])) and FIXED_LARGE log(append(post_var[1], betas[1:])).
       One kept step has no post_var[1]: upstream leaves the table empty; we use log beta_0 (it
       only scales the noise, which the last step does not add). */
    for (i = 0; i < n; i++) {
        const int j = i ? i : 1;
        if (n == 1) { d->post_lv_clipped[i] = d->fixed_large_lv[i] = d->log_betas[0]; continue; }
        d->post_lv_clipped[i] = log(d->betas[j] * (1.0 - d->acp_prev[j]) / (1.0 - d->acp[j]));
        d->fixed_large_lv[i] = i ? d->log_betas[i] : d->post_lv_clipped[0];
    }
    TEXTOK_FREE(keep); TEXTOK_FREE(base);
    *out = d;
    return TEXTOK_OK;
fail:
    TEXTOK_FREE(keep); TEXTOK_FREE(base);
    textok_diffusion_free(d);
    return st;
}

TEXTOKDEF int textok_diffusion_num_steps(const textok_diffusion *d) { return d ? d->n : 0; }
TEXTOKDEF int textok_diffusion_timestep(const textok_diffusion *d, int i) { return d && i >= 0 && i < d->n ? d->map[i] : -1; }

static float textok__df(double v) { return (float)v; }   /* upstream's .float() of a gathered coefficient */

TEXTOKDEF int textok_diffusion_q_sample(const textok_diffusion *d, const float *x0, const float *noise, const int32_t *t, int B,
                                        size_t n, float *xt)
{
    int b;
    size_t j;
    if (!d || !x0 || !noise || !t || !xt) return textok__fail(TEXTOK_ERR_ARG, "textok_diffusion_q_sample: NULL argument");
    for (b = 0; b < B; b++)
        if (t[b] < 0 || t[b] >= d->n) return textok__fail(TEXTOK_ERR_ARG, "textok_diffusion_q_sample: t[%d] = %d not in [0, %d)", b, (int)t[b], d->n);
    for (b = 0; b < B; b++) {
        const double a = textok__df(d->sqrt_acp[t[b]]), s = textok__df(d->sqrt_1m_acp[t[b]]);
        for (j = 0; j < n; j++) xt[(size_t)b * n + j] = (float)(a * x0[(size_t)b * n + j] + s * noise[(size_t)b * n + j]);
    }
    return TEXTOK_OK;
}

/* 0.5 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) and its derivative */
static double textok__ncdf(double x, double *deriv)
{
    const double c = sqrt(2.0 / 3.14159265358979323846), u = c * (x + 0.044715 * x * x * x), th = tanh(u);
    if (deriv) *deriv = 0.5 * (1.0 - th * th) * c * (1.0 + 3.0 * 0.044715 * x * x);
    return 0.5 * (1.0 + th);
}

/* -log p(x | N(mean, exp(lv))) discretised into bins of +-1/255 with open edges beyond +-0.999
   (upstream's discretized_gaussian_log_likelihood, logs clamped at 1e-12), and d/d lv. */
static double textok__disc_nll(double x, double mean, double lv, double *dlv)
{
    const double inv = exp(-0.5 * lv), cx = x - mean;
    const double pin = inv * (cx + 1.0 / 255.0), min_in = inv * (cx - 1.0 / 255.0);
    double dp, dm, cp = textok__ncdf(pin, &dp), cm = textok__ncdf(min_in, &dm);
    /* d pin / d lv = -0.5 pin (likewise min_in) */
    const double dcp = dp * -0.5 * pin, dcm = dm * -0.5 * min_in;
    if (x < -0.999) {
        if (cp < 1e-12) { *dlv = 0.0; return -log(1e-12); }
        *dlv = -dcp / cp;
        return -log(cp);
    }
    if (x > 0.999) {
        const double q = 1.0 - cm;
        if (q < 1e-12) { *dlv = 0.0; return -log(1e-12); }
        *dlv = dcm / q;
        return -log(q);
    }
    {
        const double delta = cp - cm;
        if (delta < 1e-12) { *dlv = 0.0; return -log(1e-12); }
        *dlv = -(dcp - dcm) / delta;
        return -log(delta);
    }
}

TEXTOKDEF int textok_diffusion_loss(const textok_diffusion *d, const float *x0, const float *noise, const int32_t *t,
                                    const float *model_out, int B, int C, int HW, int learn_sigma, double *mse, double *vb,
                                    float *dout)
{
    const double ln2 = log(2.0);
    const int Co = learn_sigma ? 2 * C : C;
    double smse = 0.0, svb = 0.0;
    int b, c, j;
    if (!d || !x0 || !noise || !t || !model_out) return textok__fail(TEXTOK_ERR_ARG, "textok_diffusion_loss: NULL argument");
    if (B < 1 || C < 1 || HW < 1) return textok__fail(TEXTOK_ERR_ARG, "textok_diffusion_loss: B %d, C %d, HW %d must be >= 1", B, C, HW);
    if (learn_sigma != 0 && learn_sigma != 1) return textok__fail(TEXTOK_ERR_ARG, "textok_diffusion_loss: learn_sigma %d is not 0 or 1", learn_sigma);
    for (b = 0; b < B; b++)
        if (t[b] < 0 || t[b] >= d->n) return textok__fail(TEXTOK_ERR_ARG, "textok_diffusion_loss: t[%d] = %d not in [0, %d)", b, (int)t[b], d->n);
    for (b = 0; b < B; b++) {
        const int tb = t[b];
        const double sa = textok__df(d->sqrt_acp[tb]), s1 = textok__df(d->sqrt_1m_acp[tb]);
        const double c1 = textok__df(d->coef1[tb]), c2 = textok__df(d->coef2[tb]);
        const double sra = textok__df(d->sqrt_recip_acp[tb]), srm1 = textok__df(d->sqrt_recipm1_acp[tb]);
        const double mn = textok__df(d->post_lv_clipped[tb]), mx = textok__df(d->log_betas[tb]);
        const double n_el = (double)C * HW;
        double bm = 0.0, bv = 0.0;
        for (c = 0; c < C; c++)
            for (j = 0; j < HW; j++) {
                const size_t ix = ((size_t)b * C + c) * HW + j;
                const size_t ie = ((size_t)b * Co + c) * HW + j, iv = ie + (size_t)C * HW;
                const double x = x0[ix], z = noise[ix], e = model_out[ie];
                bm += (z - e) * (z - e);
                if (dout) dout[ie] = (float)(2.0 * (e - z) / n_el / B);
                if (learn_sigma) {
                    const double xt = sa * x + s1 * z;
                    const double frac = (model_out[iv] + 1.0) / 2.0, lv = frac * mx + (1.0 - frac) * mn;
                    const double mean = c1 * (sra * xt - srm1 * e) + c2 * xt;
                    double term, dlv;
                    if (tb == 0) {
                        term = textok__disc_nll(x, mean, lv, &dlv);
                    } else {
                        const double tmean = c1 * x + c2 * xt, dm = tmean - mean;
                        term = 0.5 * (-1.0 + lv - mn + exp(mn - lv) + dm * dm * exp(-lv));
                        dlv = 0.5 * (1.0 - exp(mn - lv) - dm * dm * exp(-lv));
                    }
                    bv += term;
                    if (dout) dout[iv] = (float)(dlv * 0.5 * (mx - mn) / n_el / ln2 / B);
                }
            }
        smse += bm / n_el;
        svb += bv / n_el / ln2;
    }
    if (mse) *mse = smse / B;
    if (vb) *vb = svb / B;
    return TEXTOK_OK;
}

static int textok__diffusion_step_check(const textok_diffusion *d, int i, const float *xt, const float *model_out,
                                        const float *noise, int need_noise, int B, int C, int HW, int learn_sigma, const float *x_prev,
                                        const char *who)
{
    if (!d || !xt || !model_out || !x_prev) return textok__fail(TEXTOK_ERR_ARG, "%s: NULL argument", who);
    if (i < 0 || i >= d->n) return textok__fail(TEXTOK_ERR_ARG, "%s: step %d not in [0, %d)", who, i, d->n);
    if (B < 1 || C < 1 || HW < 1) return textok__fail(TEXTOK_ERR_ARG, "%s: B %d, C %d, HW %d must be >= 1", who, B, C, HW);
    if (learn_sigma != 0 && learn_sigma != 1) return textok__fail(TEXTOK_ERR_ARG, "%s: learn_sigma %d is not 0 or 1", who, learn_sigma);
    if (need_noise && !noise) return textok__fail(TEXTOK_ERR_ARG, "%s: step %d adds noise and noise is NULL", who, i);
    return TEXTOK_OK;
}

TEXTOKDEF int textok_diffusion_p_step(const textok_diffusion *d, int i, const float *xt, const float *model_out,
                                      const float *noise, int B, int C, int HW, int learn_sigma, float *x_prev)
{
    const int Co = learn_sigma ? 2 * C : C;
    int b, c, j, st;
    if ((st = textok__diffusion_step_check(d, i, xt, model_out, noise, i != 0, B, C, HW, learn_sigma, x_prev,
                                           "textok_diffusion_p_step")) != TEXTOK_OK) return st;
    {
        const double sra = textok__df(d->sqrt_recip_acp[i]), srm1 = textok__df(d->sqrt_recipm1_acp[i]);
        const double c1 = textok__df(d->coef1[i]), c2 = textok__df(d->coef2[i]);
        const double mn = textok__df(d->post_lv_clipped[i]), mx = textok__df(d->log_betas[i]), fl = textok__df(d->fixed_large_lv[i]);
        for (b = 0; b < B; b++)
            for (c = 0; c < C; c++)
                for (j = 0; j < HW; j++) {
                    const size_t ix = ((size_t)b * C + c) * HW + j, ie = ((size_t)b * Co + c) * HW + j;
                    const double x = xt[ix], e = model_out[ie];
                    const double mean = c1 * (sra * x - srm1 * e) + c2 * x;
                    double lv = fl;
                    if (learn_sigma) {
                        const double frac = (model_out[ie + (size_t)C * HW] + 1.0) / 2.0;
                        lv = frac * mx + (1.0 - frac) * mn;
                    }
                    x_prev[ix] = (float)(i != 0 ? mean + exp(0.5 * lv) * noise[ix] : mean);
                }
    }
    return TEXTOK_OK;
}

TEXTOKDEF int textok_diffusion_ddim_step(const textok_diffusion *d, int i, const float *xt, const float *model_out,
                                         const float *noise, float eta, int B, int C, int HW, int learn_sigma, float *x_prev)
{
    const int Co = learn_sigma ? 2 * C : C;
    int b, c, j, st;
    if (!(eta >= 0.0f && eta <= 1.0f))
        return textok__fail(TEXTOK_ERR_ARG, "textok_diffusion_ddim_step: eta %g not in [0, 1]", (double)eta);
    if ((st = textok__diffusion_step_check(d, i, xt, model_out, noise, i != 0 && eta > 0.0f, B, C, HW, learn_sigma, x_prev,
                                           "textok_diffusion_ddim_step")) != TEXTOK_OK) return st;
    {
        const double sra = textok__df(d->sqrt_recip_acp[i]), srm1 = textok__df(d->sqrt_recipm1_acp[i]);
        const double ab = textok__df(d->acp[i]), abp = textok__df(d->acp_prev[i]);
        const double sigma = eta * sqrt((1.0 - abp) / (1.0 - ab)) * sqrt(1.0 - ab / abp);
        const double cx = sqrt(abp), ce = sqrt(1.0 - abp - sigma * sigma);
        for (b = 0; b < B; b++)
            for (c = 0; c < C; c++)
                for (j = 0; j < HW; j++) {
                    const size_t ix = ((size_t)b * C + c) * HW + j, ie = ((size_t)b * Co + c) * HW + j;
                    const double x = xt[ix];
                    const double x0 = sra * x - srm1 * model_out[ie];
                    const double eps = (sra * x - x0) / srm1;   /* _predict_eps_from_xstart */
                    const double mean = x0 * cx + ce * eps;
                    x_prev[ix] = (float)(i != 0 && sigma > 0.0 ? mean + sigma * noise[ix] : mean);
                }
    }
    return TEXTOK_OK;
}

/* ----- DiT sampling --------------------------------------------------------------------------- */
TEXTOKDEF textok_dit_sample_config textok_dit_sample_default(void)
{
    textok_dit_sample_config sc;
    memset(&sc, 0, sizeof sc);
    sc.steps = 250; sc.ddim = 0; sc.eta = 0.0f; sc.cfg_scale = 4.0f;
    sc.progress = NULL; sc.progress_user = NULL;
    return sc;
}

/* p_sample_loop / ddim_sample_loop: z ~ N(0, 1) (one draw of B*C*H*W normals from rng), then for
   i = n-1 .. 0: the model (forward_cfg when cfg_scale != 1, else forward) at the original
   timestep of i, one draw of B*C*H*W normals (every step, also the last, as upstream's
   randn_like), the step. Returns x0 / latent_scale. */
TEXTOKDEF int textok_dit_generate(textok_dit *m, const textok_dit_sample_config *sc_in, const int32_t *y,
                                  const textok_text *text, int B, textok_rng *rng, float *out)
{
    textok_dit_sample_config sc = sc_in ? *sc_in : textok_dit_sample_default();
    textok_diffusion *d = NULL;
    char spacing[32];
    float *x = NULL, *mo = NULL, *noise = NULL, *xp = NULL;
    int32_t *tt = NULL;
    size_t n, i;
    int st, C, HW, s, b;
    if (!m || !rng || !out) return textok__fail(TEXTOK_ERR_ARG, "textok_dit_generate: NULL argument");
    if (sc.steps < 1 || sc.steps > 1000)
        return textok__fail(TEXTOK_ERR_ARG, "textok_dit_generate: steps %d not in [1, 1000] (the model was trained on 1000)", sc.steps);
    if (sc.ddim != 0 && sc.ddim != 1) return textok__fail(TEXTOK_ERR_ARG, "textok_dit_generate: ddim %d is not 0 or 1", sc.ddim);
    if (!(sc.cfg_scale == sc.cfg_scale) || sc.cfg_scale > 1e6f || sc.cfg_scale < -1e6f)
        return textok__fail(TEXTOK_ERR_ARG, "textok_dit_generate: the guidance scale %g is not a finite number", (double)sc.cfg_scale);
    if (sc.ddim && !(sc.eta >= 0.0f && sc.eta <= 1.0f))
        return textok__fail(TEXTOK_ERR_ARG, "textok_dit_generate: DDIM eta %g not in [0, 1]", (double)sc.eta);
    if ((st = textok__dit_check_cond(m, NULL, y, text, B, 0, "textok_dit_generate")) != TEXTOK_OK) return st;
    if (sc.cfg_scale != 1.0f && m->cfg.num_classes == 0 && m->cfg.text_dim == 0)
        return textok__fail(TEXTOK_ERR_ARG, "textok_dit_generate: guidance scale %g on an unconditional DiT (no classes, no text); "
                            "use 1", (double)sc.cfg_scale);
    snprintf(spacing, sizeof spacing, sc.ddim ? "ddim%d" : "%d", sc.steps);
    if ((st = textok_diffusion_create(&d, 1000, spacing)) != TEXTOK_OK) return st;
    C = m->cfg.in_channels; HW = m->H * m->W;
    n = (size_t)B * C * HW;
    x = (float *)textok__malloc(n * sizeof(float));
    xp = (float *)textok__malloc(n * sizeof(float));
    noise = (float *)textok__malloc(n * sizeof(float));
    mo = (float *)textok__malloc((size_t)B * m->Cout * HW * sizeof(float));
    tt = (int32_t *)textok__malloc((size_t)B * sizeof(int32_t));
    if (!x || !xp || !noise || !mo || !tt) { st = textok__fail(TEXTOK_ERR_NOMEM, "textok_dit_generate: out of memory"); goto done; }
    textok_rng_fill_normal(rng, x, n, 0.0f, 1.0f);
    for (s = d->n - 1; s >= 0; s--) {
        for (b = 0; b < B; b++) tt[b] = d->map[s];
        st = sc.cfg_scale != 1.0f ? textok_dit_forward_cfg(m, x, tt, y, text, B, sc.cfg_scale, mo)
                                  : textok_dit_forward(m, x, tt, y, text, B, mo);
        if (st != TEXTOK_OK) goto done;
        textok_rng_fill_normal(rng, noise, n, 0.0f, 1.0f);
        st = sc.ddim ? textok_diffusion_ddim_step(d, s, x, mo, noise, sc.eta, B, C, HW, m->cfg.learn_sigma, xp)
                     : textok_diffusion_p_step(d, s, x, mo, noise, B, C, HW, m->cfg.learn_sigma, xp);
        if (st != TEXTOK_OK) goto done;
        memcpy(x, xp, n * sizeof(float));
        if (sc.progress && sc.progress(d->n - s, d->n, sc.progress_user)) {
            st = textok__fail(TEXTOK_ERR_ARG, "textok_dit_generate: cancelled by the progress callback after %d of %d steps", d->n - s, d->n);
            goto done;
        }
    }
    for (i = 0; i < n; i++) out[i] = x[i] / m->cfg.latent_scale;
    st = TEXTOK_OK;
done:
    textok_diffusion_free(d);
    TEXTOK_FREE(x); TEXTOK_FREE(xp); TEXTOK_FREE(noise); TEXTOK_FREE(mo); TEXTOK_FREE(tt);
    return st;
}

/* ----- the DiT training step: the hooks the generator trainer (section 17) calls -------------- */
struct textok__dit_train {
    textok_dit *m;                   /* borrowed */
    int B;
    textok__dit_w g;                 /* grads, bound into the caller's block */
    textok__dit_acts a;              /* the tape: depth + 1 residual buffers, depth block tapes */
    textok__dit_grad_acts ga;
    float *arena;
    textok_diffusion *diff;          /* 1000 steps, unspaced */
    void *host;                      /* one host allocation for everything below */
    textok__tblock *gblocks;
    textok__tb_tape *tapes;
    float **xs;
    float *h_x0, *h_noise, *h_xt, *h_out, *h_dout, *h_feat;
    int32_t *h_t, *h_y;
    int *h_row;
    unsigned char *h_null, *h_drop, *h_mask;
    int L;                           /* caption rows of the last forward */
};
typedef struct textok__dit_train textok__dit_train;

static void textok__dit_train_delete(textok__dit_train *s)
{
    if (!s) return;
    if (s->arena) s->m->k.free(&s->m->k, s->arena);
    textok_diffusion_free(s->diff);
    TEXTOK_FREE(s->host);
    TEXTOK_FREE(s);
}

static int textok__dit_train_new(textok__dit_train **out, textok_dit *m, float *grads, int B)
{
    textok__dit_train *s;
    const textok_dit_config *c = &m->cfg;
    const size_t b = (size_t)B, in = b * c->in_channels * m->H * m->W, on = b * m->Cout * m->H * m->W;
    size_t hb;
    unsigned char *p;
    textok__carve a;
    int st;
    *out = NULL;
    if (B < 1 || B > 65536) return textok__fail(TEXTOK_ERR_ARG, "DiT training: batch %d not in [1, 65536]", B);
    s = (textok__dit_train *)textok__calloc(1, sizeof *s);
    if (!s) return textok__fail(TEXTOK_ERR_NOMEM, "DiT training: out of memory");
    s->m = m; s->B = B;
    hb = (size_t)c->depth * (sizeof(textok__tblock) + sizeof(textok__tb_tape)) + ((size_t)c->depth + 1) * sizeof(float *)
       + (3 * in + 2 * on + b * 256) * sizeof(float) + 2 * b * sizeof(int32_t) + b * sizeof(int) + 2 * b + b * c->text_len + 64;
    s->host = p = (unsigned char *)textok__calloc(1, hb);
    if (!p) { textok__dit_train_delete(s); return textok__fail(TEXTOK_ERR_NOMEM, "DiT training: out of memory"); }
    s->gblocks = (textok__tblock *)(void *)p;   p += (size_t)c->depth * sizeof(textok__tblock);
    s->tapes = (textok__tb_tape *)(void *)p;    p += (size_t)c->depth * sizeof(textok__tb_tape);
    s->xs = (float **)(void *)p;                p += ((size_t)c->depth + 1) * sizeof(float *);
    s->h_x0 = (float *)(void *)p;               p += in * sizeof(float);
    s->h_noise = (float *)(void *)p;            p += in * sizeof(float);
    s->h_xt = (float *)(void *)p;               p += in * sizeof(float);
    s->h_out = (float *)(void *)p;              p += on * sizeof(float);
    s->h_dout = (float *)(void *)p;             p += on * sizeof(float);
    s->h_feat = (float *)(void *)p;             p += b * 256 * sizeof(float);
    s->h_t = (int32_t *)(void *)p;              p += b * sizeof(int32_t);
    s->h_y = (int32_t *)(void *)p;              p += b * sizeof(int32_t);
    s->h_row = (int *)(void *)p;                p += b * sizeof(int);
    s->h_null = p;                              p += b;
    s->h_drop = p;                              p += b;
    s->h_mask = p;
    s->a.xs = s->xs; s->a.n_xs = c->depth + 1; s->a.tapes = s->tapes; s->a.n_tapes = c->depth;
    memset(&a, 0, sizeof a);
    textok__dit_carve(m, &a, &s->a, b);
    textok__dit_grad_carve(m, &a, &s->ga, b);
    if (a.overflow) { textok__dit_train_delete(s); return textok__fail(TEXTOK_ERR_SHAPE, "DiT training: batch %d makes a buffer exceed INT_MAX floats", B); }
    s->arena = (float *)m->k.alloc(&m->k, a.used * sizeof(float));
    if (!s->arena) {
        textok__dit_train_delete(s);
        return textok__fail(TEXTOK_ERR_NOMEM, "DiT training: cannot allocate %lu MB of activations for batch %d",
                            (unsigned long)(a.used * sizeof(float) >> 20), B);
    }
    memset(&a, 0, sizeof a);
    a.base = s->arena;
    textok__dit_carve(m, &a, &s->a, b);
    textok__dit_grad_carve(m, &a, &s->ga, b);
    s->g.blocks = s->gblocks;
    textok__dit_bind(c, &s->g, grads);
    if ((st = textok_diffusion_create(&s->diff, 1000, NULL)) != TEXTOK_OK) { textok__dit_train_delete(s); return st; }
    *out = s;
    return TEXTOK_OK;
}

/* The training forward on B = s->B rows: xt (B, C, H, W) host, t/y host, text, null (B) flags
   (dropped conditions) or NULL -> s->a.out on the device. */
static int textok__dit_train_forward(textok__dit_train *s, const float *xt, const int32_t *t, const int32_t *y,
                                     const textok_text *text, const unsigned char *null)
{
    textok_dit *m = s->m;
    const textok_kernels *k = &m->k;
    const int B = s->B;
    int r, st;
    if ((st = textok__dit_check_cond(m, t, y, text, B, 1, "DiT training")) != TEXTOK_OK) return st;
    for (r = 0; r < B; r++) { s->h_row[r] = r; s->h_null[r] = (unsigned char)(null ? null[r] : 0); }
    if ((st = k->to_device(k, s->a.xin, xt, (size_t)B * m->cfg.in_channels * m->H * m->W * sizeof(float))) != TEXTOK_OK)
        return textok__fail_wrap(st, "DiT training: a memory transfer failed");
    if ((st = textok__dit_stage(m, &s->a, B, t, y, text, s->h_row, s->h_null, s->h_feat, s->h_y, s->h_mask)) != TEXTOK_OK) return st;
    s->L = m->cfg.text_dim > 0 ? text->L : 0;
    textok__dit_forward_acts(m, &m->w, &s->a, B, s->L);
    return TEXTOK_OK;
}

/* dout (B, Cout, H, W) host -> gradients accumulated into the grads block; dx (B, C, H, W) device
   (accumulated) or NULL. */
static int textok__dit_train_backward(textok__dit_train *s, const float *dout, float *dx)
{
    textok_dit *m = s->m;
    const textok_kernels *k = &m->k;
    int st;
    if ((st = k->to_device(k, s->ga.dout, dout, (size_t)s->B * m->Cout * m->H * m->W * sizeof(float))) != TEXTOK_OK)
        return textok__fail_wrap(st, "DiT training: a memory transfer failed");
    textok__dit_backward_acts(m, &m->w, &s->g, &s->a, &s->ga, s->B, s->L, dx);
    return TEXTOK_OK;
}

/* One step's forward, loss and backward (gradients ACCUMULATED into the grads block). RNG order:
   t (B values, textok_rng_u32 % 1000), noise (B*C*H*W normals), then, only when cond_dropout > 0,
   B uniforms (u < cond_dropout: that example trains with the null class / the null caption). */
static int textok__dit_train_loss(textok__dit_train *s, textok_rng *rng, const textok_gen_train_config *tc,
                                  const float *latents, const int32_t *y, const textok_text *text, textok_gen_train_stats *stt)
{
    textok_dit *m = s->m;
    const int B = s->B, C = m->cfg.in_channels, HW = m->H * m->W;
    const size_t n = (size_t)B * C * HW;
    double mse = 0.0, vb = 0.0;
    size_t i;
    int b, st, dropping = tc && tc->cond_dropout > 0.0f;
    if (!latents) return textok__fail(TEXTOK_ERR_ARG, "DiT training: NULL latents");
    if (m->cfg.num_classes > 0 && y)
        for (b = 0; b < B; b++)
            if (y[b] < 0 || y[b] >= m->cfg.num_classes)
                return textok__fail(TEXTOK_ERR_ARG, "DiT training: class y[%d] = %d not in [0, %d)", b, (int)y[b], m->cfg.num_classes);
    for (b = 0; b < B; b++) s->h_t[b] = (int32_t)(textok_rng_u32(rng) % 1000u);
    textok_rng_fill_normal(rng, s->h_noise, n, 0.0f, 1.0f);
    for (b = 0; b < B; b++) s->h_drop[b] = (unsigned char)(dropping && textok_rng_uniform(rng) < tc->cond_dropout);
    for (i = 0; i < n; i++) s->h_x0[i] = latents[i] * m->cfg.latent_scale;
    if ((st = textok_diffusion_q_sample(s->diff, s->h_x0, s->h_noise, s->h_t, B, (size_t)C * HW, s->h_xt)) != TEXTOK_OK) return st;
    if ((st = textok__dit_train_forward(s, s->h_xt, s->h_t, y, text, s->h_drop)) != TEXTOK_OK) return st;
    if ((st = m->k.to_host(&m->k, s->h_out, s->a.out, (size_t)B * m->Cout * HW * sizeof(float))) != TEXTOK_OK)
        return textok__fail_wrap(st, "DiT training: a memory transfer failed");
    if ((st = textok_diffusion_loss(s->diff, s->h_x0, s->h_noise, s->h_t, s->h_out, B, C, HW, m->cfg.learn_sigma, &mse, &vb,
                                    s->h_dout)) != TEXTOK_OK) return st;
    if (stt) { stt->mse = mse; stt->vb = vb; stt->loss = mse + vb; }
    return textok__dit_train_backward(s, s->h_dout, NULL);
}



/* =============================================================================================
   16. MaskGIT: TiTok's generators (architecture.md 4). ImageBert (Hugging Face BertModel: post-
   norm blocks with separate q/k/v, LayerNorm eps 1e-12, an embedding LayerNorm, no final norm)
   and UViTBert (pre-norm blocks with a fused bias-free qkv, eps 1e-5, long skips from the
   in-blocks to the out-blocks popped LIFO, a final norm), both over the generic block of
   section 8, both reading [class id, L image ids] and returning lm_head(h[:, 1:]) over the V
   image ids. Parameters in one block (walk order = the official state_dict order); inference
   activations in one arena (BERT: one tape slot reused by every block; UViT: the same plus the
   in-blocks' outputs for the skips); training keeps one tape per block (textok__maskgit_train).
   Sampling (ImageBert.generate) runs its per-logit math on the host, see textok__mg_step. */

typedef struct textok__mg_weights {   /* named pointers into a parameter block (or its grads twin) */
    float *word;                      /* (vocab, D) BERT word_embeddings / UViT embeddings */
    float *pos;                       /* (L+1, D) BERT position_embeddings / UViT pos_embed (1, L+1, D) */
    float *type;                      /* (2, D) BERT token_type_embeddings (row 0 is the one used) */
    float *eln_w, *eln_b;             /* (D) BERT embeddings.LayerNorm */
    textok__tblock *blocks;           /* host array: BERT depth; UViT depth/2 in, 1 mid, depth/2 out */
    float *norm_w, *norm_b;           /* (D) UViT final norm */
    float *lm_w, *lm_b;               /* (V, D), (V) */
} textok__mg_weights;

struct textok_maskgit {
    textok_maskgit_config cfg;
    textok_kernels k;                 /* the table (copied at load) */
    int max_batch;
    float *params;                    /* device block, n_params floats, walk order */
    size_t n_params;
    textok_tensor_spec *specs;        /* (n_tensors) host, walk order */
    int n_tensors;
    textok__mg_weights w;
    int T, vocab, n_blocks;           /* L + 1; V + num_classes + 2; blocks */
    /* the inference arena (max_batch sequences) */
    float *arena;
    size_t arena_floats;
    int32_t *ids, *zeros, *posids;    /* (max_batch, T): the input, token types (0), positions 0..T-1 */
    float *x, *e;                     /* (max_batch, T, D) residual stream; embedding / final-norm scratch */
    float **skips;                    /* UViT: (depth/2) host array of (max_batch, T, D) in-block outputs */
    float *h;                         /* (max_batch * L, D) rows 1..L of each sequence */
    float *logits;                    /* (max_batch * L, V) */
    textok__tb_tape tape;             /* one slot, reused by every block */
    float *work;                      /* attention work */
    int32_t *host_ids;                /* (max_batch, T) host staging */
};

/* ----- configuration ------------------------------------------------------------------------ */
TEXTOKDEF int textok_maskgit_preset(textok_maskgit_config *cfg, const char *name)
{
    if (!cfg || !name) return textok__fail(TEXTOK_ERR_ARG, "textok_maskgit_preset: NULL argument");
    memset(cfg, 0, sizeof *cfg);
    cfg->codebook_size = 4096; cfg->num_classes = 1000; cfg->heads = 16;
    if (!strcmp(name, "L-32") || !strcmp(name, "B-64")) {
        cfg->arch = TEXTOK_MASKGIT_BERT;
        cfg->seq_len = name[0] == 'L' ? 32 : 64;
        cfg->hidden = 768; cfg->depth = 24; cfg->mlp_hidden = 3072;
    } else if (!strcmp(name, "S-128")) {
        cfg->arch = TEXTOK_MASKGIT_UVIT;
        cfg->seq_len = 128;
        cfg->hidden = 1024; cfg->depth = 20; cfg->mlp_hidden = 4096;
    } else {
        return textok__fail(TEXTOK_ERR_ARG, "textok_maskgit_preset: unknown preset '%.40s' (L-32, B-64, S-128)", name);
    }
    return TEXTOK_OK;
}

TEXTOKDEF int textok_maskgit_config_check(const textok_maskgit_config *c)
{
#define TEXTOK__CHK(cond, ...) do { if (!(cond)) return textok__fail(TEXTOK_ERR_SHAPE, "MaskGIT config: " __VA_ARGS__); } while (0)
    if (!c) return textok__fail(TEXTOK_ERR_ARG, "textok_maskgit_config_check: NULL config");
    TEXTOK__CHK(c->arch == TEXTOK_MASKGIT_BERT || c->arch == TEXTOK_MASKGIT_UVIT,
                "arch %d is not TEXTOK_MASKGIT_BERT (0) or TEXTOK_MASKGIT_UVIT (1)", c->arch);
    TEXTOK__CHK(c->codebook_size >= 2 && c->codebook_size <= (1 << 20), "codebook_size %d not in [2, 2^20]", c->codebook_size);
    TEXTOK__CHK(c->num_classes >= 1 && c->num_classes <= (1 << 20), "num_classes %d not in [1, 2^20]", c->num_classes);
    TEXTOK__CHK(c->seq_len >= 2 && c->seq_len <= 65536, "seq_len %d not in [2, 65536]", c->seq_len);
    TEXTOK__CHK(c->hidden >= 1 && c->hidden <= 65536, "hidden %d not in [1, 65536]", c->hidden);
    TEXTOK__CHK(c->heads >= 1 && c->hidden % c->heads == 0, "heads %d must divide hidden %d", c->heads, c->hidden);
    TEXTOK__CHK(c->mlp_hidden >= 1 && c->mlp_hidden <= 262144, "mlp_hidden %d not in [1, 262144]", c->mlp_hidden);
    TEXTOK__CHK(c->depth >= 1 && c->depth <= 1024, "depth %d not in [1, 1024]", c->depth);
    TEXTOK__CHK(c->arch != TEXTOK_MASKGIT_UVIT || c->depth % 2 == 0,
                "UViT depth %d must be even (depth/2 in-blocks, a mid-block, depth/2 out-blocks)", c->depth);
#undef TEXTOK__CHK
    return TEXTOK_OK;
}

static const struct { const char *key; size_t offset; } textok__mg_fields[] = {
    { "codebook_size", offsetof(textok_maskgit_config, codebook_size) },
    { "num_classes", offsetof(textok_maskgit_config, num_classes) },
    { "seq_len", offsetof(textok_maskgit_config, seq_len) }, { "hidden", offsetof(textok_maskgit_config, hidden) },
    { "depth", offsetof(textok_maskgit_config, depth) }, { "heads", offsetof(textok_maskgit_config, heads) },
    { "mlp_hidden", offsetof(textok_maskgit_config, mlp_hidden) }
};
#define TEXTOK__MG_N_FIELDS ((int)(sizeof textok__mg_fields / sizeof textok__mg_fields[0]))

TEXTOKDEF int textok_maskgit_config_from_meta(textok_maskgit_config *cfg, const textok_safetensors *st)
{
    const char *v;
    int i;
    if (!cfg || !st) return textok__fail(TEXTOK_ERR_ARG, "textok_maskgit_config_from_meta: NULL argument");
    memset(cfg, 0, sizeof *cfg);
    v = textok_st_meta(st, "textok.model");
    if (!v || strcmp(v, "maskgit") != 0)
        return textok__fail(TEXTOK_ERR_FORMAT, "%s: not a textok-layout MaskGIT file (__metadata__ 'textok.model' is %s%s%s, "
                            "expected \"maskgit\"); convert official TiTok generator checkpoints with build/convert, or "
                            "load them with textok_maskgit_load_st and an explicit config",
                            st->path, v ? "\"" : "absent", v ? v : "", v ? "\"" : "");
    v = textok_st_meta(st, "arch");
    if (!v) return textok__fail(TEXTOK_ERR_FORMAT, "%s: __metadata__ lacks 'arch'", st->path);
    if (!strcmp(v, "bert")) cfg->arch = TEXTOK_MASKGIT_BERT;
    else if (!strcmp(v, "uvit")) cfg->arch = TEXTOK_MASKGIT_UVIT;
    else return textok__fail(TEXTOK_ERR_FORMAT, "%s: __metadata__ 'arch' = \"%.40s\" is not \"bert\" or \"uvit\"", st->path, v);
    for (i = 0; i < TEXTOK__MG_N_FIELDS; i++) {
        int *dst = (int *)((char *)cfg + textok__mg_fields[i].offset);
        v = textok_st_meta(st, textok__mg_fields[i].key);
        if (!v) return textok__fail(TEXTOK_ERR_FORMAT, "%s: __metadata__ lacks '%s'", st->path, textok__mg_fields[i].key);
        if (!textok__parse_int(v, dst))
            return textok__fail(TEXTOK_ERR_FORMAT, "%s: __metadata__ '%s' = \"%.40s\" is not a non-negative integer",
                                st->path, textok__mg_fields[i].key, v);
    }
    if (textok_maskgit_config_check(cfg) != TEXTOK_OK) return textok__fail_wrap(TEXTOK_ERR_SHAPE, st->path);
    return TEXTOK_OK;
}

TEXTOKDEF int textok_maskgit_config_to_meta(const textok_maskgit_config *cfg, const char **kv, int max_pairs,
                                            char *buf, size_t buf_size)
{
    int n = 0, i, st;
    size_t used = 0;
#define TEXTOK__PUT(key, ...) do {                                                       \
        int w_;                                                                          \
        if (n >= max_pairs) return textok__fail(TEXTOK_ERR_ARG, "textok_maskgit_config_to_meta: more than %d pairs", max_pairs); \
        w_ = snprintf(buf + used, buf_size - used, __VA_ARGS__);                          \
        if (w_ < 0 || (size_t)w_ + 1 > buf_size - used)                                  \
            return textok__fail(TEXTOK_ERR_ARG, "textok_maskgit_config_to_meta: buffer of %lu bytes too small", (unsigned long)buf_size); \
        kv[2 * n] = (key); kv[2 * n + 1] = buf + used; used += (size_t)w_ + 1; n++;       \
    } while (0)
    if (!cfg || !kv || !buf) return textok__fail(TEXTOK_ERR_ARG, "textok_maskgit_config_to_meta: NULL argument");
    if ((st = textok_maskgit_config_check(cfg)) != TEXTOK_OK) return st;
    TEXTOK__PUT("textok.model", "%s", "maskgit");
    TEXTOK__PUT("arch", "%s", cfg->arch == TEXTOK_MASKGIT_BERT ? "bert" : "uvit");
    for (i = 0; i < TEXTOK__MG_N_FIELDS; i++)
        TEXTOK__PUT(textok__mg_fields[i].key, "%d", *(const int *)((const char *)cfg + textok__mg_fields[i].offset));
#undef TEXTOK__PUT
    return n;
}

/* ----- the parameter walk (official state_dict order) ------------------------------------------ */
static int textok__mg_n_blocks(const textok_maskgit_config *c)
{
    return c->arch == TEXTOK_MASKGIT_BERT ? c->depth : c->depth + 1;
}

/* wt may be NULL (specs only); wt->blocks then holds n_blocks entries */
static void textok__mg_walk(const textok_maskgit_config *c, textok__mg_weights *wt, textok__walk *w)
{
    const int64_t D = c->hidden, M = c->mlp_hidden, V = c->codebook_size, L1 = c->seq_len + 1;
    const int64_t vocab = (int64_t)c->codebook_size + c->num_classes + 2;
    const int nb = textok__mg_n_blocks(c), half = c->depth / 2;
    int i;
    if (c->arch == TEXTOK_MASKGIT_BERT) {
        textok__wt(w, wt ? &wt->word : NULL, 2, vocab, D, 0, 0, "model.embeddings.word_embeddings.weight");
        textok__wt(w, wt ? &wt->pos : NULL, 2, L1, D, 0, 0, "model.embeddings.position_embeddings.weight");
        textok__wt(w, wt ? &wt->type : NULL, 2, 2, D, 0, 0, "model.embeddings.token_type_embeddings.weight");
        textok__wt(w, wt ? &wt->eln_w : NULL, 1, D, 0, 0, 0, "model.embeddings.LayerNorm.weight");
        textok__wt(w, wt ? &wt->eln_b : NULL, 1, D, 0, 0, 0, "model.embeddings.LayerNorm.bias");
        for (i = 0; i < nb; i++) {
            textok__tblock *b = wt ? &wt->blocks[i] : NULL;
            if (b) memset(b, 0, sizeof *b);
#define TEXTOK__L(slot, nd, d0, d1, leaf) textok__wt(w, b ? &b->slot : NULL, nd, d0, d1, 0, 0, "model.encoder.layer.%d." leaf, i)
            TEXTOK__L(q_w, 2, D, D, "attention.self.query.weight"); TEXTOK__L(q_b, 1, D, 0, "attention.self.query.bias");
            TEXTOK__L(k_w, 2, D, D, "attention.self.key.weight");   TEXTOK__L(k_b, 1, D, 0, "attention.self.key.bias");
            TEXTOK__L(v_w, 2, D, D, "attention.self.value.weight"); TEXTOK__L(v_b, 1, D, 0, "attention.self.value.bias");
            TEXTOK__L(proj_w, 2, D, D, "attention.output.dense.weight"); TEXTOK__L(proj_b, 1, D, 0, "attention.output.dense.bias");
            TEXTOK__L(ln1_w, 1, D, 0, "attention.output.LayerNorm.weight"); TEXTOK__L(ln1_b, 1, D, 0, "attention.output.LayerNorm.bias");
            TEXTOK__L(fc1_w, 2, M, D, "intermediate.dense.weight"); TEXTOK__L(fc1_b, 1, M, 0, "intermediate.dense.bias");
            TEXTOK__L(fc2_w, 2, D, M, "output.dense.weight"); TEXTOK__L(fc2_b, 1, D, 0, "output.dense.bias");
            TEXTOK__L(ln2_w, 1, D, 0, "output.LayerNorm.weight"); TEXTOK__L(ln2_b, 1, D, 0, "output.LayerNorm.bias");
#undef TEXTOK__L
        }
        textok__wt(w, wt ? &wt->lm_w : NULL, 2, V, D, 0, 0, "model.lm_head.weight");
        textok__wt(w, wt ? &wt->lm_b : NULL, 1, V, 0, 0, 0, "model.lm_head.bias");
        return;
    }
    textok__wt(w, wt ? &wt->pos : NULL, 3, 1, L1, D, 0, "pos_embed");
    textok__wt(w, wt ? &wt->word : NULL, 2, vocab, D, 0, 0, "embeddings.weight");
    for (i = 0; i < nb; i++) {
        textok__tblock *b = wt ? &wt->blocks[i] : NULL;
        char pre[32];
        if (i < half) snprintf(pre, sizeof pre, "in_blocks.%d", i);
        else if (i == half) snprintf(pre, sizeof pre, "mid_block");
        else snprintf(pre, sizeof pre, "out_blocks.%d", i - half - 1);
        if (b) memset(b, 0, sizeof *b);
#define TEXTOK__U(slot, nd, d0, d1, leaf) textok__wt(w, b ? &b->slot : NULL, nd, d0, d1, 0, 0, "%s." leaf, pre)
        TEXTOK__U(ln1_w, 1, D, 0, "norm1.weight"); TEXTOK__U(ln1_b, 1, D, 0, "norm1.bias");
        TEXTOK__U(q_w, 2, 3 * D, D, "attn.qkv.weight");
        TEXTOK__U(proj_w, 2, D, D, "attn.proj.weight"); TEXTOK__U(proj_b, 1, D, 0, "attn.proj.bias");
        TEXTOK__U(ln2_w, 1, D, 0, "norm2.weight"); TEXTOK__U(ln2_b, 1, D, 0, "norm2.bias");
        TEXTOK__U(fc1_w, 2, M, D, "mlp.fc1.weight"); TEXTOK__U(fc1_b, 1, M, 0, "mlp.fc1.bias");
        TEXTOK__U(fc2_w, 2, D, M, "mlp.fc2.weight"); TEXTOK__U(fc2_b, 1, D, 0, "mlp.fc2.bias");
        if (i > half) { TEXTOK__U(skip_w, 2, D, 2 * D, "skip_linear.weight"); TEXTOK__U(skip_b, 1, D, 0, "skip_linear.bias"); }
#undef TEXTOK__U
        if (b && b->q_w) { b->k_w = b->q_w + (size_t)D * D; b->v_w = b->q_w + 2 * (size_t)D * D; }   /* fused 'B L (K H D)' */
    }
    textok__wt(w, wt ? &wt->norm_w : NULL, 1, D, 0, 0, 0, "norm.weight");
    textok__wt(w, wt ? &wt->norm_b : NULL, 1, D, 0, 0, 0, "norm.bias");
    textok__wt(w, wt ? &wt->lm_w : NULL, 2, V, D, 0, 0, "lm_head.weight");
    textok__wt(w, wt ? &wt->lm_b : NULL, 1, V, 0, 0, 0, "lm_head.bias");
}

TEXTOKDEF int textok_maskgit_tensor_specs(const textok_maskgit_config *cfg, textok_tensor_spec *specs, int max_specs)
{
    textok__walk w;
    int st;
    if ((st = textok_maskgit_config_check(cfg)) != TEXTOK_OK) return st;
    memset(&w, 0, sizeof w);
    w.specs = specs;
    w.max_specs = specs ? max_specs : 0;
    textok__mg_walk(cfg, NULL, &w);
    if (w.overflow) return textok__fail(TEXTOK_ERR_SHAPE, "MaskGIT config: parameter count overflows size_t");
    return w.n;
}

/* Binds a weights struct (blocks: a host array of n_blocks) to a block of n_params floats. */
static void textok__mg_bind(const textok_maskgit_config *c, textok__mg_weights *wt, float *base)
{
    textok__walk w;
    memset(&w, 0, sizeof w);
    w.base = base;
    textok__mg_walk(c, wt, &w);
}

/* the shape every block of this model runs with (has_skip set per block by the caller) */
static textok__tb_shape textok__mg_shape(const textok_maskgit_config *c, int B)
{
    textok__tb_shape s;
    memset(&s, 0, sizeof s);
    s.B = B; s.T = c->seq_len + 1; s.D = c->hidden; s.H = c->heads; s.M = c->mlp_hidden;
    s.post_norm = c->arch == TEXTOK_MASKGIT_BERT;
    s.eps = c->arch == TEXTOK_MASKGIT_BERT ? 1e-12f : 1e-5f;
    s.has_skip = c->arch == TEXTOK_MASKGIT_UVIT;   /* carving: the superset; forward sets it per block */
    return s;
}

/* ----- the inference arena ---------------------------------------------------------------- */
static void textok__mg_carve(textok_maskgit *m, textok__carve *a)
{
    const textok_maskgit_config *c = &m->cfg;
    const size_t B = (size_t)m->max_batch, T = (size_t)m->T, D = (size_t)c->hidden, L = (size_t)c->seq_len;
    const textok__tb_shape s = textok__mg_shape(c, m->max_batch);
    int *o = &a->overflow, i;
    m->ids = (int32_t *)(void *)textok__take(a, B * T);
    m->zeros = (int32_t *)(void *)textok__take(a, B * T);
    m->posids = (int32_t *)(void *)textok__take(a, B * T);
    m->x = textok__take(a, textok__mul3(B, T, D, o));
    m->e = textok__take(a, textok__mul3(B, T, D, o));
    if (c->arch == TEXTOK_MASKGIT_UVIT)
        for (i = 0; i < c->depth / 2; i++) {
            float *p = textok__take(a, textok__mul3(B, T, D, o));
            if (m->skips) m->skips[i] = p;
        }
    m->h = textok__take(a, textok__mul3(B, L, D, o));
    m->logits = textok__take(a, textok__mul3(B, L, (size_t)c->codebook_size, o));
    textok__tb_tape_carve(a, &m->tape, &s);
    m->work = textok__take(a, textok__tb_work_floats(&s));
}

TEXTOKDEF void textok_maskgit_free(textok_maskgit *m)
{
    if (!m) return;
    if (m->params) m->k.free(&m->k, m->params);
    if (m->arena) m->k.free(&m->k, m->arena);
    TEXTOK_FREE(m->w.blocks);
    TEXTOK_FREE(m->skips);
    TEXTOK_FREE(m->specs);
    TEXTOK_FREE(m->host_ids);
    TEXTOK_FREE(m);
}

/* int32 id arrays for the embedding kernels: zeros (token types) and positions 0..T-1 per row */
static int textok__mg_fill_ids(const textok_kernels *k, int32_t *zeros, int32_t *posids, int B, int T)
{
    size_t n = (size_t)B * T, i = 0;   /* B, T >= 1 */
    int32_t *h = (int32_t *)textok__malloc(n * sizeof(int32_t));
    int st;
    if (!h) return textok__fail(TEXTOK_ERR_NOMEM, "MaskGIT: out of memory");
    do h[i] = (int32_t)(i % (size_t)T); while (++i < n);
    st = k->to_device(k, posids, h, n * sizeof(int32_t));
    i = 0;
    do h[i] = 0; while (++i < n);
    if (st == TEXTOK_OK) st = k->to_device(k, zeros, h, n * sizeof(int32_t));
    TEXTOK_FREE(h);
    return st;
}

/* Allocates the model for cfg: specs, host tables, the parameter block (bound, not filled) and the
   activation arena. */
static int textok__mg_new(textok_maskgit **out, const textok_maskgit_config *cfg, const textok_params *params)
{
    textok_params prm = params ? *params : textok_default_params();
    textok_maskgit *m;
    textok__walk w;
    textok__carve a;
    int n_specs, st;
    *out = NULL;
    if (prm.max_batch < 1 || prm.max_batch > 4096)
        return textok__fail(TEXTOK_ERR_ARG, "MaskGIT: max_batch %d not in [1, 4096]", prm.max_batch);
    if ((n_specs = textok_maskgit_tensor_specs(cfg, NULL, 0)) < 0) return n_specs;
    m = (textok_maskgit *)textok__calloc(1, sizeof *m);
    if (!m) return textok__fail(TEXTOK_ERR_NOMEM, "MaskGIT: out of memory");
    m->cfg = *cfg;
    m->k = prm.kernels ? *prm.kernels : textok_cpu_kernels(prm.n_threads);
    m->max_batch = prm.max_batch;
    m->T = cfg->seq_len + 1;
    m->vocab = cfg->codebook_size + cfg->num_classes + 2;
    m->n_blocks = textok__mg_n_blocks(cfg);
    {
        const textok_kernels *k = &m->k;
        const char *missing = !k->alloc || !k->free || !k->to_device || !k->to_host || !k->copy ? "alloc/free/to_device/to_host/copy"
                            : !k->matmul_forward ? "matmul_forward" : !k->layernorm_forward ? "layernorm_forward"
                            : !k->attention_forward ? "attention_forward" : !k->add_forward ? "add_forward"
                            : !k->embedding_forward ? "embedding_forward" : !k->gelu_forward ? "gelu_forward"
                            : !k->transpose_forward ? "transpose_forward" : NULL;
        if (missing) {   /* the message first: k points into m */
            const int st = textok__fail(TEXTOK_ERR_UNSUPPORTED, "MaskGIT: the kernel table '%s' lacks %s", k->name ? k->name : "?", missing);
            textok_maskgit_free(m);
            return st;
        }
    }
    m->n_tensors = n_specs;
    m->specs = (textok_tensor_spec *)textok__calloc((size_t)n_specs, sizeof *m->specs);
    m->w.blocks = (textok__tblock *)textok__calloc((size_t)m->n_blocks, sizeof *m->w.blocks);
    m->skips = (float **)textok__calloc((size_t)(cfg->depth / 2 + 1), sizeof *m->skips);
    m->host_ids = (int32_t *)textok__calloc((size_t)m->max_batch * m->T, sizeof(int32_t));
    if (!m->specs || !m->w.blocks || !m->skips || !m->host_ids) {
        textok_maskgit_free(m);
        return textok__fail(TEXTOK_ERR_NOMEM, "MaskGIT: out of memory");
    }
    textok_maskgit_tensor_specs(cfg, m->specs, n_specs);
    memset(&w, 0, sizeof w);
    textok__mg_walk(cfg, NULL, &w);
    m->n_params = w.offset;
    memset(&a, 0, sizeof a);
    textok__mg_carve(m, &a);
    if (a.overflow) {
        textok_maskgit_free(m);
        return textok__fail(TEXTOK_ERR_SHAPE, "MaskGIT: an activation buffer would exceed INT_MAX floats (seq_len %d, hidden %d, "
                            "codebook_size %d, max_batch %d)", cfg->seq_len, cfg->hidden, cfg->codebook_size, prm.max_batch);
    }
    m->arena_floats = a.used;
    m->params = (float *)m->k.alloc(&m->k, m->n_params * sizeof(float));
    m->arena = (float *)m->k.alloc(&m->k, m->arena_floats * sizeof(float));
    if (!m->params || !m->arena) {
        size_t mb = (m->n_params + m->arena_floats) * sizeof(float) >> 20;
        textok_maskgit_free(m);
        return textok__fail(TEXTOK_ERR_NOMEM, "MaskGIT: cannot allocate %lu MB of parameters and activations", (unsigned long)mb);
    }
    textok__mg_bind(cfg, &m->w, m->params);
    memset(&a, 0, sizeof a);
    a.base = m->arena;
    textok__mg_carve(m, &a);
    if ((st = textok__mg_fill_ids(&m->k, m->zeros, m->posids, m->max_batch, m->T)) != TEXTOK_OK) {
        textok_maskgit_free(m);
        return st;
    }
    *out = m;
    return TEXTOK_OK;
}

/* The legacy buffer old transformers versions saved with BertEmbeddings: not a parameter. */
static int textok__mg_ignorable(const char *name)
{
    return !strcmp(name, "model.embeddings.position_ids");
}

TEXTOKDEF int textok_maskgit_load_st(textok_maskgit **out, const textok_safetensors *st,
                                     const textok_maskgit_config *cfg, const textok_params *params)
{
    textok_maskgit_config file_cfg;
    textok_maskgit *m = NULL;
    float *stage = NULL;
    size_t max_numel = 0, offset = 0;
    int i, status;
    if (!out || !st) return textok__fail(TEXTOK_ERR_ARG, "textok_maskgit_load: NULL argument");
    *out = NULL;
    if (!cfg) {
        if ((status = textok_maskgit_config_from_meta(&file_cfg, st)) != TEXTOK_OK) return status;
        cfg = &file_cfg;
    }
    if (cfg == &file_cfg &&   /* a config the file claims; the caller's own is trusted */
        (status = textok__st_precheck(st, textok_maskgit_tensor_specs(cfg, NULL, 0), textok__fill_maskgit, cfg, "MaskGIT")) != TEXTOK_OK) return status;
    if ((status = textok__mg_new(&m, cfg, params)) != TEXTOK_OK) return status;
    /* exactly the expected tensors (plus the ignorable buffer): an extra one is another model */
    for (i = 0; i < st->n_tensors; i++) {
        int j, found = textok__mg_ignorable(st->tensors[i].name);
        for (j = 0; j < m->n_tensors && !found; j++) found = strcmp(st->tensors[i].name, m->specs[j].name) == 0;
        if (!found) {
            status = textok__fail(TEXTOK_ERR_SHAPE, "%s: unexpected tensor '%.120s' for this MaskGIT config (%s, depth %d, "
                                  "hidden %d)", st->path, st->tensors[i].name,
                                  cfg->arch == TEXTOK_MASKGIT_BERT ? "ImageBert" : "UViTBert", cfg->depth, cfg->hidden);
            goto fail;
        }
    }
    for (i = 0; i < m->n_tensors; i++)
        if (textok__spec_numel(&m->specs[i]) > max_numel) max_numel = textok__spec_numel(&m->specs[i]);
    stage = (float *)textok__malloc(max_numel * sizeof(float));
    if (!stage) { status = textok__fail(TEXTOK_ERR_NOMEM, "textok_maskgit_load: out of memory"); goto fail; }
    for (i = 0; i < m->n_tensors; i++) {   /* through a host staging buffer: the block belongs to the table */
        size_t numel = textok__spec_numel(&m->specs[i]);
        if ((status = textok_st_load(st, m->specs[i].name, m->specs[i].ndim, m->specs[i].shape, stage)) != TEXTOK_OK) goto fail;
        if ((status = m->k.to_device(&m->k, m->params + offset, stage, numel * sizeof(float))) != TEXTOK_OK) goto fail;
        offset += numel;
    }
    TEXTOK_FREE(stage);
    *out = m;
    return TEXTOK_OK;
fail:
    TEXTOK_FREE(stage);
    textok_maskgit_free(m);
    return status;
}

#ifndef TEXTOK_NO_STDIO
TEXTOKDEF int textok_maskgit_load(textok_maskgit **out, const char *path, const textok_params *p)
{
    textok_safetensors st;
    int status;
    if (!out || !path) return textok__fail(TEXTOK_ERR_ARG, "textok_maskgit_load: NULL argument");
    *out = NULL;
    if ((status = textok_st_open(&st, path)) != TEXTOK_OK) return status;
    status = textok_maskgit_load_st(out, &st, NULL, p);
    textok_st_close(&st);
    return status;
}
#endif

/* Fresh weights as ImageBert / UViTBert._init_weights: Linear and Embedding weights and pos_embed
   trunc_normal_(std 0.02) (its bounds are +-2 absolute, i.e. 100 std: a plain normal), biases 0,
   LayerNorm weight 1 and bias 0. */
TEXTOKDEF int textok_maskgit_create(textok_maskgit **out, const textok_maskgit_config *cfg, const textok_params *params,
                                    uint64_t seed)
{
    textok_maskgit *m = NULL;
    textok_rng rng;
    float *stage = NULL;
    size_t max_numel = 0, offset = 0, j;
    int i, status;
    if (!out || !cfg) return textok__fail(TEXTOK_ERR_ARG, "textok_maskgit_create: NULL argument");
    *out = NULL;
    if ((status = textok__mg_new(&m, cfg, params)) != TEXTOK_OK) return status;
    for (i = 0; i < m->n_tensors; i++)
        if (textok__spec_numel(&m->specs[i]) > max_numel) max_numel = textok__spec_numel(&m->specs[i]);
    stage = (float *)textok__malloc(max_numel * sizeof(float));
    if (!stage) { status = textok__fail(TEXTOK_ERR_NOMEM, "textok_maskgit_create: out of memory"); goto fail; }
    textok_rng_seed(&rng, seed);
    for (i = 0; i < m->n_tensors; i++) {
        const textok_tensor_spec *s = &m->specs[i];
        size_t numel = textok__spec_numel(s);
        if (s->ndim >= 2) textok_rng_fill_normal(&rng, stage, numel, 0.0f, 0.02f);
        else for (j = 0; j < numel; j++) stage[j] = textok__ends(s->name, ".weight") ? 1.0f : 0.0f;   /* LN weight; biases */
        if ((status = m->k.to_device(&m->k, m->params + offset, stage, numel * sizeof(float))) != TEXTOK_OK) goto fail;
        offset += numel;
    }
    TEXTOK_FREE(stage);
    *out = m;
    return TEXTOK_OK;
fail:
    TEXTOK_FREE(stage);
    textok_maskgit_free(m);
    return status;
}

/* Writes a textok-layout file (official names, the config as metadata) of a parameter block laid
   out like m's (m->params, or a trainer's EMA copy). */
static int textok__maskgit_save_params(const textok_maskgit *m, const char *path, const float *params)
{
    const char *kv[2 * 16];
    char meta[1024];
    textok_st_entry *e = NULL;
    float *host = NULL;
    size_t offset = 0;
    int n_meta, i, d, st;
    if (!m || !path || !params) return textok__fail(TEXTOK_ERR_ARG, "textok_maskgit_save: NULL argument");
    if ((n_meta = textok_maskgit_config_to_meta(&m->cfg, kv, 16, meta, sizeof meta)) < 0) return n_meta;
    e = (textok_st_entry *)textok__calloc((size_t)m->n_tensors, sizeof *e);
    host = (float *)textok__malloc(m->n_params * sizeof(float));
    if (!e || !host) { st = textok__fail(TEXTOK_ERR_NOMEM, "textok_maskgit_save: out of memory"); goto done; }
    if ((st = m->k.to_host(&m->k, host, params, m->n_params * sizeof(float))) != TEXTOK_OK) goto done;
    for (i = 0; i < m->n_tensors; i++) {
        e[i].name = m->specs[i].name;
        e[i].data = host + offset;
        e[i].ndim = m->specs[i].ndim;
        for (d = 0; d < m->specs[i].ndim; d++) e[i].shape[d] = m->specs[i].shape[d];
        offset += textok__spec_numel(&m->specs[i]);
    }
    st = textok_st_save(path, e, m->n_tensors, kv, n_meta, TEXTOK_DTYPE_F32);
done:
    TEXTOK_FREE(e);
    TEXTOK_FREE(host);
    return st;
}

TEXTOKDEF int textok_maskgit_save(const textok_maskgit *m, const char *path)
{
    if (!m) return textok__fail(TEXTOK_ERR_ARG, "textok_maskgit_save: NULL model");
    return textok__maskgit_save_params(m, path, m->params);
}

TEXTOKDEF const textok_maskgit_config *textok_maskgit_get_config(const textok_maskgit *m) { return m ? &m->cfg : NULL; }
TEXTOKDEF size_t textok_maskgit_num_params(const textok_maskgit *m) { return m ? m->n_params : 0; }

/* ----- forward ------------------------------------------------------------------------------ */
/* Embeddings of ids (B, T) on the device -> x (B, T, D). BERT: LN((word[ids] + type[0]) + pos)
   (the HF order of the sums), LN statistics into mean/rstd when given; UViT: word[ids] + pos.
   e and tmp are (B, T, D) scratch, tmp may be x (it is consumed before x is written; add_forward
   runs in place); for BERT e keeps the sum before the norm (backward reads it). */
static void textok__mg_embed(const textok_kernels *k, const textok_maskgit_config *c, const textok__mg_weights *w,
                             const int32_t *ids, const int32_t *zeros, const int32_t *posids, int B,
                             float *x, float *e, float *tmp, float *mean, float *rstd)
{
    const int T = c->seq_len + 1, D = c->hidden, BT = B * T;
    const size_t n = (size_t)BT * D;
    k->embedding_forward(k, e, w->word, ids, BT, D);
    if (c->arch == TEXTOK_MASKGIT_BERT) {
        k->embedding_forward(k, tmp, w->type, zeros, BT, D);    /* token_type_ids default to 0 */
        k->add_forward(k, e, e, tmp, n);
        k->embedding_forward(k, tmp, w->pos, posids, BT, D);
        k->add_forward(k, e, e, tmp, n);
        k->layernorm_forward(k, x, mean, rstd, e, w->eln_w, w->eln_b, BT, D, 1e-12f);
    } else {
        k->embedding_forward(k, tmp, w->pos, posids, BT, D);
        k->add_forward(k, x, e, tmp, n);
    }
}

/* rows 1..L of every sequence of fin (B, T, D) -> h (B*L, D) -> logits (B*L, V) */
static void textok__mg_head(const textok_kernels *k, const textok_maskgit_config *c, const textok__mg_weights *w,
                            const float *fin, float *h, float *logits, int B)
{
    const size_t T = (size_t)c->seq_len + 1, L = (size_t)c->seq_len, D = (size_t)c->hidden;
    int b;
    for (b = 0; b < B; b++) k->copy(k, h + (size_t)b * L * D, fin + ((size_t)b * T + 1) * D, L * D * sizeof(float));
    textok__linear(k, logits, h, w->lm_w, w->lm_b, B * c->seq_len, c->hidden, c->codebook_size);
}

/* m->ids (B <= max_batch sequences of [class id, L ids]) -> m->logits (B*L, V) */
static void textok__mg_forward(textok_maskgit *m, int B)
{
    const textok_kernels *k = &m->k;
    const textok_maskgit_config *c = &m->cfg;
    textok__tb_shape s = textok__mg_shape(c, B);
    const float *fin = m->x;
    int l;
    textok__mg_embed(k, c, &m->w, m->ids, m->zeros, m->posids, B, m->x, m->e, m->x, NULL, NULL);
    if (c->arch == TEXTOK_MASKGIT_BERT) {
        for (l = 0; l < m->n_blocks; l++)
            textok__tb_forward(k, &m->w.blocks[l], &s, &m->tape, m->x, m->x, NULL, NULL, NULL, NULL, m->work);
    } else {
        const int half = c->depth / 2;
        const float *cur = m->x;
        s.has_skip = 0;
        for (l = 0; l < half; l++) {      /* in-blocks: each output is kept for its out-block */
            textok__tb_forward(k, &m->w.blocks[l], &s, &m->tape, cur, m->skips[l], NULL, NULL, NULL, NULL, m->work);
            cur = m->skips[l];
        }
        textok__tb_forward(k, &m->w.blocks[half], &s, &m->tape, cur, m->x, NULL, NULL, NULL, NULL, m->work);
        s.has_skip = 1;
        for (l = 0; l < half; l++)        /* out-blocks pop the skips: out_blocks[0] takes in_blocks[half-1] */
            textok__tb_forward(k, &m->w.blocks[half + 1 + l], &s, &m->tape, m->x, m->x, NULL, m->skips[half - 1 - l],
                               NULL, NULL, m->work);
        k->layernorm_forward(k, m->e, NULL, NULL, m->x, m->w.norm_w, m->w.norm_b, B * m->T, c->hidden, 1e-5f);
        fin = m->e;
    }
    textok__mg_head(k, c, &m->w, fin, m->h, m->logits, B);
}

static int textok__mg_xfer_fail(int st)
{
    return textok__fail_wrap(st, "MaskGIT: a memory transfer failed");
}

/* logits (B, L, V) host for ids (B, L) and classes (B), both already checked */
static int textok__mg_logits(textok_maskgit *m, const int32_t *ids, const int32_t *classes, int B, float *logits)
{
    const textok_maskgit_config *c = &m->cfg;
    const size_t L = (size_t)c->seq_len, T = (size_t)m->T, V = (size_t)c->codebook_size;
    int b0, b, st;
    size_t i;
    for (b0 = 0; b0 < B; b0 += m->max_batch) {
        const int nb = B - b0 < m->max_batch ? B - b0 : m->max_batch;
        for (b = 0; b < nb; b++) {
            m->host_ids[(size_t)b * T] = c->codebook_size + 1 + classes[b0 + b];   /* V+1+c; null = V+1+num_classes */
            for (i = 0; i < L; i++) m->host_ids[(size_t)b * T + 1 + i] = ids[(size_t)(b0 + b) * L + i];
        }
        if ((st = m->k.to_device(&m->k, m->ids, m->host_ids, (size_t)nb * T * sizeof(int32_t))) != TEXTOK_OK)
            return textok__mg_xfer_fail(st);
        textok__mg_forward(m, nb);
        if ((st = m->k.to_host(&m->k, logits + (size_t)b0 * L * V, m->logits, (size_t)nb * L * V * sizeof(float))) != TEXTOK_OK)
            return textok__mg_xfer_fail(st);
    }
    return TEXTOK_OK;
}

/* ids in [0, max_id], classes in [0, max_class]: user input, checked before any kernel indexes with it */
static int textok__mg_check_input(const textok_maskgit *m, const char *fn, const int32_t *ids, int max_id,
                                  const int32_t *classes, int max_class, int B)
{
    const size_t L = (size_t)m->cfg.seq_len;
    size_t i;
    int b;
    if (B < 1) return textok__fail(TEXTOK_ERR_ARG, "%s: batch %d must be >= 1", fn, B);
    if ((size_t)B > (size_t)INT_MAX / L) return textok__fail(TEXTOK_ERR_ARG, "%s: batch %d x seq_len %lu overflows", fn, B, (unsigned long)L);
    if (ids)
        for (i = 0; i < (size_t)B * L; i++)
            if (ids[i] < 0 || ids[i] > max_id)
                return textok__fail(TEXTOK_ERR_ARG, "%s: id %ld at row %lu, position %lu is outside [0, %d] (codebook %d%s)",
                                    fn, (long)ids[i], (unsigned long)(i / L), (unsigned long)(i % L), max_id,
                                    m->cfg.codebook_size, max_id == m->cfg.codebook_size ? ", the mask id" : "");
    for (b = 0; b < B; b++)
        if (classes[b] < 0 || classes[b] > max_class)
            return textok__fail(TEXTOK_ERR_ARG, "%s: class %ld of row %d is outside [0, %d]%s", fn, (long)classes[b], b,
                                max_class, max_class == m->cfg.num_classes ? " (num_classes = the null class)" : "");
    return TEXTOK_OK;
}

TEXTOKDEF int textok_maskgit_forward(textok_maskgit *m, const int32_t *ids, const int32_t *classes, int B, float *logits)
{
    int st;
    if (!m || !ids || !classes || !logits) return textok__fail(TEXTOK_ERR_ARG, "textok_maskgit_forward: NULL argument");
    if ((st = textok__mg_check_input(m, "textok_maskgit_forward", ids, m->cfg.codebook_size, classes, m->cfg.num_classes, B)) != TEXTOK_OK)
        return st;
    return textok__mg_logits(m, ids, classes, B, logits);
}

/* ----- sampling (architecture.md 4.4) -------------------------------------------------------- */
TEXTOKDEF int textok_maskgit_sample_preset(textok_maskgit_sample_config *sc, const char *name)
{
    if (!sc || !name) return textok__fail(TEXTOK_ERR_ARG, "textok_maskgit_sample_preset: NULL argument");
    memset(sc, 0, sizeof *sc);
    sc->guidance_pow = 3.0f;
    sc->temperature_annealing = 1;
    if (!strcmp(name, "L-32")) {
        sc->steps = 8; sc->guidance_scale = 4.5f; sc->guidance_decay = TEXTOK_GUIDANCE_LINEAR; sc->temperature = 9.5f;
    } else if (!strcmp(name, "B-64")) {
        sc->steps = 8; sc->guidance_scale = 3.0f; sc->guidance_decay = TEXTOK_GUIDANCE_LINEAR; sc->temperature = 11.0f;
    } else if (!strcmp(name, "S-128")) {
        sc->steps = 64; sc->guidance_scale = 6.9f; sc->guidance_decay = TEXTOK_GUIDANCE_POWER_COSINE; sc->temperature = 2.8f;
    } else if (!strcmp(name, "demo")) {
        sc->steps = 8; sc->guidance_scale = 4.5f; sc->guidance_decay = TEXTOK_GUIDANCE_CONSTANT; sc->temperature = 1.0f;
        sc->temperature_annealing = 0;
    } else {
        return textok__fail(TEXTOK_ERR_ARG, "textok_maskgit_sample_preset: unknown preset '%.40s' (L-32, B-64, S-128, demo)", name);
    }
    return TEXTOK_OK;
}

static int textok__mg_check_sample(const textok_maskgit_sample_config *sc, const char *fn)
{
    if (sc->steps < 1 || sc->steps > 100000) return textok__fail(TEXTOK_ERR_ARG, "%s: steps %d not in [1, 100000]", fn, sc->steps);
    if (!(sc->guidance_scale >= 0.0f && sc->guidance_scale <= 1e4f))
        return textok__fail(TEXTOK_ERR_ARG, "%s: guidance_scale %g is not a finite value in [0, 1e4]", fn, (double)sc->guidance_scale);
    if (sc->guidance_decay < TEXTOK_GUIDANCE_CONSTANT || sc->guidance_decay > TEXTOK_GUIDANCE_POWER_COSINE)
        return textok__fail(TEXTOK_ERR_ARG, "%s: guidance_decay %d is not TEXTOK_GUIDANCE_CONSTANT, _LINEAR or _POWER_COSINE",
                            fn, sc->guidance_decay);
    if (sc->guidance_decay == TEXTOK_GUIDANCE_POWER_COSINE && !(sc->guidance_pow > 0.0f && sc->guidance_pow <= 1e3f))
        return textok__fail(TEXTOK_ERR_ARG, "%s: guidance_pow %g is not a finite value in (0, 1e3]", fn, (double)sc->guidance_pow);
    if (!(sc->temperature >= 0.0f && sc->temperature <= 1e4f))
        return textok__fail(TEXTOK_ERR_ARG, "%s: temperature %g is not a finite value in [0, 1e4]", fn, (double)sc->temperature);
    if (sc->temperature_annealing != 0 && sc->temperature_annealing != 1)
        return textok__fail(TEXTOK_ERR_ARG, "%s: temperature_annealing %d is not 0 or 1", fn, sc->temperature_annealing);
    return TEXTOK_OK;
}

/* The guidance scale step s uses (0: no guidance, one pass): constant g; linear (s/T) g (the loop
   sets r g at the end of step s-1, so step 0 runs unguided); power-cosine (g-1)(1 - cos(pi
   (s/T)^pow))/2 + 1, in float as the official float32 tensor arithmetic. */
static float textok__mg_cfg(const textok_maskgit_sample_config *sc, int s)
{
    const int T = sc->steps;
    if (sc->guidance_decay == TEXTOK_GUIDANCE_CONSTANT) return sc->guidance_scale;
    if (sc->guidance_decay == TEXTOK_GUIDANCE_LINEAR) return (float)((double)s / T * (double)sc->guidance_scale);
    {
        float base = (float)((double)s / T), p = powf(base, sc->guidance_pow);
        float step = (1.0f - cosf(p * 3.14159265358979323846f)) * 0.5f;
        return (float)((double)sc->guidance_scale - 1.0) * step + 1.0f;
    }
}

/* tokens that stay masked after step s < T-1: n = floor(L arccos(r) / (pi/2)), r = (s+1)/T,
   clamped to [1, masked0 - 1] with masked0 = batch element 0's masked count (as official) */
static int textok__mg_mask_len(int L, int T, int s, int masked0)
{
    double r = (double)(s + 1) / T, ratio = acos(r) / (3.14159265358979323846 * 0.5);
    double n = floor(L * ratio);
    if (n > masked0 - 1) n = masked0 - 1;
    if (n < 1) n = 1;
    return (int)n;
}

static float textok__mg_gumbel(float u)
{
    float a = -logf(u > 1e-20f ? u : 1e-20f);
    return -logf(a > 1e-20f ? a : 1e-20f);
}

static int textok__mg_cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y ? 1 : 0;
}

/* One step of ImageBert.generate. The per-logit work (guidance mix, annealing, Gumbel noise,
   argmax over V, the confidence sort) runs here on the host, on logits copied back once per step:
   it is a few flops per logit next to the network that produced them, it keeps the kernel table
   free of sampling-only kernels, and it makes the noise a host-RNG stream (B*L*V then B*L
   uniforms) that does not depend on the backend. Host scratch from the caller (allocated once per
   generate, so a step allocates nothing): hc, hu (B, L, V); conf (L) x 2; sampled, sl (B, L). */
static int textok__mg_step(textok_maskgit *m, const textok_maskgit_sample_config *sc, int s, int32_t *ids,
                           const int32_t *classes, int B, const float *u1, const float *u2, float *hc, float *hu,
                           int32_t *null_cls, float *conf, int32_t *sampled, float *sl)
{
    const textok_maskgit_config *c = &m->cfg;
    const int L = c->seq_len, V = c->codebook_size, T = sc->steps;
    const double r = (double)(s + 1) / T;
    const float temp = (float)((double)sc->temperature * (1.0 - r));
    const float anneal = (float)(0.5 + 0.8 * (1.0 - r));
    const float cfg = textok__mg_cfg(sc, s);
    float *sorted = conf + L;
    int b, i, v, st, n = 0, masked0 = 0;
    if ((st = textok__mg_logits(m, ids, classes, B, hc)) != TEXTOK_OK) return st;
    if (cfg != 0.0f) {
        for (b = 0; b < B; b++) null_cls[b] = c->num_classes;
        if ((st = textok__mg_logits(m, ids, null_cls, B, hu)) != TEXTOK_OK) return st;
    }
    for (i = 0; i < L; i++) masked0 += ids[i] == V;
    for (b = 0; b < B; b++)
        for (i = 0; i < L; i++) {
            const size_t row = (size_t)b * L + i;
            float *lg = hc + row * V;
            const float *ul = hu + row * V, *nz = u1 + row * V;
            float best = 0.0f;
            int arg = 0;
            for (v = 0; v < V; v++) {
                float x = lg[v], y;
                if (cfg != 0.0f)   /* the official order: u + (c - u) s (power-cosine), c + (c - u) s */
                    x = sc->guidance_decay == TEXTOK_GUIDANCE_POWER_COSINE ? ul[v] + (x - ul[v]) * cfg : x + (x - ul[v]) * cfg;
                if (sc->temperature_annealing) x = x / anneal;
                lg[v] = x;
                y = x + temp * textok__mg_gumbel(nz[v]);
                if (y != y) return textok__fail(TEXTOK_ERR_FORMAT, "MaskGIT sampling: non-finite logits at row %d, position %d (the weights?)", b, i);
                if (v == 0 || y > best) { best = y; arg = v; }   /* first maximum, as torch.argmax */
            }
            if (ids[row] == V) { sampled[row] = arg; sl[row] = lg[arg]; }
            else               { sampled[row] = ids[row]; sl[row] = INFINITY; }
        }
    if (s < T - 1) n = textok__mg_mask_len(L, T, s, masked0);
    for (b = 0; b < B; b++) {
        int32_t *row_ids = ids + (size_t)b * L;
        if (s == T - 1) {
            for (i = 0; i < L; i++) row_ids[i] = sampled[(size_t)b * L + i];
            continue;
        }
        for (i = 0; i < L; i++) conf[i] = sl[(size_t)b * L + i] + temp * textok__mg_gumbel(u2[(size_t)b * L + i]);
        memcpy(sorted, conf, (size_t)L * sizeof(float));
        qsort(sorted, (size_t)L, sizeof(float), textok__mg_cmp_float);
        for (i = 0; i < L; i++) row_ids[i] = conf[i] <= sorted[n - 1] ? V : sampled[(size_t)b * L + i];
    }
    return TEXTOK_OK;
}

/* host scratch for sampling B sequences */
typedef struct textok__mg_sample_buf { float *hc, *hu, *conf, *sl; int32_t *null_cls, *sampled; } textok__mg_sample_buf;
static void textok__mg_sample_buf_free(textok__mg_sample_buf *sb)
{
    TEXTOK_FREE(sb->hc); TEXTOK_FREE(sb->hu); TEXTOK_FREE(sb->conf); TEXTOK_FREE(sb->null_cls);
    TEXTOK_FREE(sb->sampled); TEXTOK_FREE(sb->sl);
}
static int textok__mg_sample_buf_new(textok__mg_sample_buf *sb, const textok_maskgit *m, int B)
{
    const size_t n = (size_t)B * m->cfg.seq_len * m->cfg.codebook_size;
    memset(sb, 0, sizeof *sb);
    if (n / (size_t)B / (size_t)m->cfg.seq_len != (size_t)m->cfg.codebook_size)
        return textok__fail(TEXTOK_ERR_ARG, "MaskGIT sampling: batch %d x seq_len x codebook overflows", B);
    sb->hc = (float *)textok__malloc(n * sizeof(float));
    sb->hu = (float *)textok__malloc(n * sizeof(float));
    sb->conf = (float *)textok__malloc(2 * (size_t)m->cfg.seq_len * sizeof(float));
    sb->null_cls = (int32_t *)textok__malloc((size_t)B * sizeof(int32_t));
    sb->sampled = (int32_t *)textok__malloc((size_t)B * m->cfg.seq_len * sizeof(int32_t));
    sb->sl = (float *)textok__malloc((size_t)B * m->cfg.seq_len * sizeof(float));
    if (!sb->hc || !sb->hu || !sb->conf || !sb->null_cls || !sb->sampled || !sb->sl) {
        textok__mg_sample_buf_free(sb);
        return textok__fail(TEXTOK_ERR_NOMEM, "MaskGIT sampling: cannot allocate %lu MB of host logits",
                            (unsigned long)(2 * n * sizeof(float) >> 20));
    }
    return TEXTOK_OK;
}

TEXTOKDEF int textok_maskgit_sample_step(textok_maskgit *m, const textok_maskgit_sample_config *sc, int s,
                                         int32_t *ids, const int32_t *classes, int B, const float *u1,
                                         const float *u2)
{
    const char *fn = "textok_maskgit_sample_step";
    textok__mg_sample_buf sb;
    int st;
    if (!m || !sc || !ids || !classes || !u1 || !u2) return textok__fail(TEXTOK_ERR_ARG, "%s: NULL argument", fn);
    if ((st = textok__mg_check_sample(sc, fn)) != TEXTOK_OK) return st;
    if (s < 0 || s >= sc->steps) return textok__fail(TEXTOK_ERR_ARG, "%s: step %d not in [0, steps %d)", fn, s, sc->steps);
    if ((st = textok__mg_check_input(m, fn, ids, m->cfg.codebook_size, classes, m->cfg.num_classes - 1, B)) != TEXTOK_OK) return st;
    if ((st = textok__mg_sample_buf_new(&sb, m, B)) != TEXTOK_OK) return st;
    st = textok__mg_step(m, sc, s, ids, classes, B, u1, u2, sb.hc, sb.hu, sb.null_cls, sb.conf, sb.sampled, sb.sl);
    textok__mg_sample_buf_free(&sb);
    return st;
}

TEXTOKDEF int textok_maskgit_generate(textok_maskgit *m, const textok_maskgit_sample_config *sc,
                                      const int32_t *classes, int B, textok_rng *rng, int32_t *ids)
{
    const char *fn = "textok_maskgit_generate";
    textok__mg_sample_buf sb;
    float *u1 = NULL, *u2 = NULL;
    size_t n, i;
    int s, st;
    if (!m || !sc || !classes || !rng || !ids) return textok__fail(TEXTOK_ERR_ARG, "%s: NULL argument", fn);
    if ((st = textok__mg_check_sample(sc, fn)) != TEXTOK_OK) return st;
    if ((st = textok__mg_check_input(m, fn, NULL, 0, classes, m->cfg.num_classes - 1, B)) != TEXTOK_OK) return st;
    if ((st = textok__mg_sample_buf_new(&sb, m, B)) != TEXTOK_OK) return st;
    n = (size_t)B * m->cfg.seq_len;
    u1 = (float *)textok__malloc(n * (size_t)m->cfg.codebook_size * sizeof(float));
    u2 = (float *)textok__malloc(n * sizeof(float));
    if (!u1 || !u2) { st = textok__fail(TEXTOK_ERR_NOMEM, "%s: out of memory", fn); goto done; }
    for (i = 0; i < n; i++) ids[i] = m->cfg.codebook_size;   /* all masked */
    for (s = 0; s < sc->steps; s++) {
        textok_rng_fill_uniform(rng, u1, n * (size_t)m->cfg.codebook_size, 0.0f, 1.0f);
        textok_rng_fill_uniform(rng, u2, n, 0.0f, 1.0f);
        if ((st = textok__mg_step(m, sc, s, ids, classes, B, u1, u2, sb.hc, sb.hu, sb.null_cls, sb.conf, sb.sampled, sb.sl)) != TEXTOK_OK) goto done;
        if (sc->progress && sc->progress(s + 1, sc->steps, sc->progress_user)) {
            st = textok__fail(TEXTOK_ERR_ARG, "%s: cancelled at step %d of %d", fn, s + 1, sc->steps);
            goto done;
        }
    }
done:
    TEXTOK_FREE(u1);
    TEXTOK_FREE(u2);
    textok__mg_sample_buf_free(&sb);
    return st;
}

/* ----- training (architecture.md 4.5): the hooks section 17's trainer calls ------------------ */
typedef struct textok__maskgit_train textok__maskgit_train;
struct textok__maskgit_train {
    textok_maskgit *m;                /* borrowed */
    int B;
    textok__mg_weights g;             /* the grads twin of m->w */
    float *arena;
    int32_t *ids, *zeros, *posids, *tgt;   /* (B, T), (B, T), (B, T), (B, L) */
    float *e, *emb_mean, *emb_rstd;   /* (B, T, D) BERT pre-norm sum; its LN statistics */
    float *x0;                        /* (B, T, D) block 0's input */
    float **xs;                       /* (n_blocks) host array of (B, T, D) block outputs */
    textok__tb_tape *tapes;           /* (n_blocks) host */
    textok__tb_scratch sc;
    float *work;
    float *fin, *fin_mean, *fin_rstd; /* UViT: the final norm's output and statistics */
    float *h, *logits, *probs;        /* (B*L, D), (B*L, V), (B*L, V) */
    float *losses, *dlosses;          /* (B*L) */
    float *dlogits, *dh;              /* (B*L, V), (B*L, D) */
    float *dx, *dtmp;                 /* (B, T, D) */
    float **dskips;                   /* UViT: (depth/2) (B, T, D) gradients of the in-blocks' outputs via the skips */
    /* host */
    int32_t *h_ids, *h_tgt;
    float *h_u, *h_losses, *h_w, *h_logits;
    unsigned char *h_mask;
};

static void textok__mg_train_carve(textok__maskgit_train *t, textok__carve *a)
{
    const textok_maskgit_config *c = &t->m->cfg;
    const size_t B = (size_t)t->B, T = (size_t)t->m->T, D = (size_t)c->hidden, L = (size_t)c->seq_len;
    const size_t V = (size_t)c->codebook_size;
    textok__tb_shape s = textok__mg_shape(c, t->B);
    int *o = &a->overflow, l;
    const size_t n = textok__mul3(B, T, D, o);
    t->ids = (int32_t *)(void *)textok__take(a, B * T);
    t->zeros = (int32_t *)(void *)textok__take(a, B * T);
    t->posids = (int32_t *)(void *)textok__take(a, B * T);
    t->tgt = (int32_t *)(void *)textok__take(a, B * L);
    t->e = textok__take(a, n);
    t->emb_mean = textok__take(a, B * T); t->emb_rstd = textok__take(a, B * T);
    t->x0 = textok__take(a, n);
    for (l = 0; l < t->m->n_blocks; l++) {
        float *p = textok__take(a, n);
        if (t->xs) t->xs[l] = p;
        s.has_skip = c->arch == TEXTOK_MASKGIT_UVIT && l > c->depth / 2;
        if (t->tapes) textok__tb_tape_carve(a, &t->tapes[l], &s);
        else { textok__tb_tape tmp; textok__tb_tape_carve(a, &tmp, &s); }
    }
    s.has_skip = c->arch == TEXTOK_MASKGIT_UVIT;
    textok__tb_scratch_carve(a, &t->sc, &s);
    t->work = textok__take(a, textok__tb_work_floats(&s));
    t->fin = textok__take(a, n);
    t->fin_mean = textok__take(a, B * T); t->fin_rstd = textok__take(a, B * T);
    t->h = textok__take(a, textok__mul3(B, L, D, o));
    t->logits = textok__take(a, textok__mul3(B, L, V, o));
    t->probs = textok__take(a, textok__mul3(B, L, V, o));
    t->losses = textok__take(a, B * L);
    t->dlosses = textok__take(a, B * L);
    t->dlogits = textok__take(a, textok__mul3(B, L, V, o));
    t->dh = textok__take(a, textok__mul3(B, L, D, o));
    t->dx = textok__take(a, n);
    t->dtmp = textok__take(a, n);
    if (c->arch == TEXTOK_MASKGIT_UVIT)
        for (l = 0; l < c->depth / 2; l++) {
            float *p = textok__take(a, n);
            if (t->dskips) t->dskips[l] = p;
        }
}

static void textok__maskgit_train_delete(textok__maskgit_train *t)
{
    if (!t) return;
    if (t->arena) t->m->k.free(&t->m->k, t->arena);
    TEXTOK_FREE(t->g.blocks); TEXTOK_FREE(t->xs); TEXTOK_FREE(t->tapes); TEXTOK_FREE(t->dskips);
    TEXTOK_FREE(t->h_ids); TEXTOK_FREE(t->h_tgt); TEXTOK_FREE(t->h_u); TEXTOK_FREE(t->h_losses);
    TEXTOK_FREE(t->h_w); TEXTOK_FREE(t->h_logits); TEXTOK_FREE(t->h_mask);
    TEXTOK_FREE(t);
}

/* A tape for B sequences; binds a grads twin of the model's parameters into grads (n_params floats). */
static int textok__maskgit_train_new(textok__maskgit_train **out, textok_maskgit *m, float *grads, int B)
{
    const textok_kernels *k;
    textok__maskgit_train *t;
    textok__carve a;
    size_t BL, BLV;
    int st;
    *out = NULL;
    if (!m || !grads) return textok__fail(TEXTOK_ERR_ARG, "MaskGIT training: NULL model or grads");
    if (B < 1 || B > 65536) return textok__fail(TEXTOK_ERR_ARG, "MaskGIT training: batch %d not in [1, 65536]", B);
    k = &m->k;
    if (!k->matmul_backward || !k->layernorm_backward || !k->attention_backward || !k->gelu_backward ||
        !k->embedding_backward || !k->cross_entropy_forward || !k->cross_entropy_backward || !k->fill ||
        !k->transpose_backward)
        return textok__fail(TEXTOK_ERR_UNSUPPORTED, "MaskGIT training: the kernel table '%s' lacks a backward kernel "
                            "(matmul, layernorm, attention, gelu, embedding, cross_entropy, fill, transpose)", k->name ? k->name : "?");
    t = (textok__maskgit_train *)textok__calloc(1, sizeof *t);
    if (!t) return textok__fail(TEXTOK_ERR_NOMEM, "MaskGIT training: out of memory");
    t->m = m; t->B = B;
    BL = (size_t)B * m->cfg.seq_len; BLV = BL * (size_t)m->cfg.codebook_size;
    t->g.blocks = (textok__tblock *)textok__calloc((size_t)m->n_blocks, sizeof *t->g.blocks);
    t->xs = (float **)textok__calloc((size_t)m->n_blocks, sizeof *t->xs);
    t->tapes = (textok__tb_tape *)textok__calloc((size_t)m->n_blocks, sizeof *t->tapes);
    t->dskips = (float **)textok__calloc((size_t)(m->cfg.depth / 2 + 1), sizeof *t->dskips);
    t->h_ids = (int32_t *)textok__calloc((size_t)B * m->T, sizeof(int32_t));
    t->h_tgt = (int32_t *)textok__calloc(BL, sizeof(int32_t));
    t->h_u = (float *)textok__calloc(BL, sizeof(float));
    t->h_losses = (float *)textok__calloc(BL, sizeof(float));
    t->h_w = (float *)textok__calloc(BL, sizeof(float));
    t->h_logits = (float *)textok__calloc(BLV, sizeof(float));
    t->h_mask = (unsigned char *)textok__calloc(BL, 1);
    if (!t->g.blocks || !t->xs || !t->tapes || !t->dskips || !t->h_ids || !t->h_tgt || !t->h_u || !t->h_losses ||
        !t->h_w || !t->h_logits || !t->h_mask) {
        textok__maskgit_train_delete(t);
        return textok__fail(TEXTOK_ERR_NOMEM, "MaskGIT training: out of memory");
    }
    textok__mg_bind(&m->cfg, &t->g, grads);
    {   /* size, then carve */
        float **xs = t->xs, **ds = t->dskips;
        textok__tb_tape *tp = t->tapes;
        t->xs = NULL; t->dskips = NULL; t->tapes = NULL;
        memset(&a, 0, sizeof a);
        textok__mg_train_carve(t, &a);
        t->xs = xs; t->dskips = ds; t->tapes = tp;
    }
    if (a.overflow) {
        textok__maskgit_train_delete(t);
        return textok__fail(TEXTOK_ERR_SHAPE, "MaskGIT training: an activation buffer would exceed INT_MAX floats (batch %d)", B);
    }
    t->arena = (float *)k->alloc(k, a.used * sizeof(float));
    if (!t->arena) {
        textok__maskgit_train_delete(t);
        return textok__fail(TEXTOK_ERR_NOMEM, "MaskGIT training: cannot allocate %lu MB of activations for batch %d",
                            (unsigned long)(a.used * sizeof(float) >> 20), B);
    }
    a.base = t->arena; a.used = 0; a.overflow = 0;
    textok__mg_train_carve(t, &a);
    if ((st = textok__mg_fill_ids(k, t->zeros, t->posids, B, m->T)) != TEXTOK_OK) { textok__maskgit_train_delete(t); return st; }
    *out = t;
    return TEXTOK_OK;
}

/* The masking ratio of a schedule at t in [0, 1), in float as torch's float32 tensors, clamped to
   [1e-6, 1] (architecture.md 4.5; cosine and linear as MaskGen's get_masking_ratio). */
static float textok__mg_mask_ratio(int schedule, float t)
{
    float r = schedule == TEXTOK_MASK_ARCCOS ? acosf(t) / (float)(3.14159265358979323846 * 0.5)
            : schedule == TEXTOK_MASK_COSINE ? cosf(t * (float)(3.14159265358979323846 * 0.5)) : 1.0f - t;
    return r < 1e-6f ? 1e-6f : r > 1.0f ? 1.0f : r;
}

/* masks (L) from one draw: n = max(1, round-half-even(L ratio(t))) positions, those whose
   uniform ranks below n. rank(i) = #{j: u_j < u_i} + #{j < i: u_j == u_i} (architecture.md 4.5;
   the official code masks argsort(u) < n, the inverse permutation, with the same distribution). */
static void textok__mg_mask_row(int schedule, float t, const float *u, int L, unsigned char *mask)
{
    float nf = rintf((float)L * textok__mg_mask_ratio(schedule, t));   /* the default rounding: half to even */
    int n = nf < 1.0f ? 1 : (int)nf, i, j;
    for (i = 0; i < L; i++) {
        int rank = 0;
        for (j = 0; j < L; j++) rank += u[j] < u[i] || (u[j] == u[i] && j < i);
        mask[i] = rank < n;
    }
}

/* One forward + loss + backward on B sequences: gradients ACCUMULATED into the grads block. RNG
   order: t (B uniforms), the rank uniforms (B*L), then the drops (B, only when cond_dropout > 0). */
static int textok__maskgit_train_loss(textok__maskgit_train *t, textok_rng *rng, const textok_gen_train_config *tc,
                                      const int32_t *tokens, const int32_t *y, textok_gen_train_stats *stats)
{
    textok_maskgit *m;
    const textok_kernels *k;
    const textok_maskgit_config *c;
    const textok__mg_weights *w, *g;
    int B, L, T, D, V, BT, BL, half, b, i, l, st;
    size_t n;
    textok__tb_shape s;
    const float *fin;
    double sw = 0.0, sl = 0.0, acc = 0.0;
    if (!t || !rng || !tc || !tokens || !y) return textok__fail(TEXTOK_ERR_ARG, "MaskGIT training: NULL argument");
    m = t->m; k = &m->k; c = &m->cfg; w = &m->w; g = &t->g;
    B = t->B; L = c->seq_len; T = m->T; D = c->hidden; V = c->codebook_size; BT = B * T; BL = B * L;
    half = c->depth / 2;
    n = (size_t)BT * D;
    s = textok__mg_shape(c, B);
    if ((st = textok__mg_check_input(m, "MaskGIT training", tokens, V - 1, y, c->num_classes, B)) != TEXTOK_OK) return st;
    if (tc->mask_schedule < TEXTOK_MASK_ARCCOS || tc->mask_schedule > TEXTOK_MASK_LINEAR)
        return textok__fail(TEXTOK_ERR_ARG, "MaskGIT training: mask_schedule %d is not TEXTOK_MASK_ARCCOS, _COSINE or _LINEAR", tc->mask_schedule);
    if (!(tc->label_smoothing >= 0.0f && tc->label_smoothing < 1.0f) || !(tc->unmasked_weight >= 0.0f && tc->unmasked_weight <= 1e3f) ||
        !(tc->cond_dropout >= 0.0f && tc->cond_dropout <= 1.0f))
        return textok__fail(TEXTOK_ERR_ARG, "MaskGIT training: label_smoothing %g must be in [0, 1), unmasked_weight %g in [0, 1e3], "
                            "cond_dropout %g in [0, 1]", (double)tc->label_smoothing, (double)tc->unmasked_weight, (double)tc->cond_dropout);
    /* masks and classes on the host */
    for (b = 0; b < B; b++) t->h_u[b] = textok_rng_uniform(rng);   /* t, kept in h_u[0..B) until used */
    {
        float *tt = t->h_w;   /* (B*L) >= B: hold the B t values while h_u takes the ranks */
        for (b = 0; b < B; b++) tt[b] = t->h_u[b];
        textok_rng_fill_uniform(rng, t->h_u, (size_t)BL, 0.0f, 1.0f);
        for (b = 0; b < B; b++) textok__mg_mask_row(tc->mask_schedule, tt[b], t->h_u + (size_t)b * L, L, t->h_mask + (size_t)b * L);
    }
    for (b = 0; b < B; b++) {
        int cls = y[b];
        if (tc->cond_dropout > 0.0f && textok_rng_uniform(rng) < tc->cond_dropout) cls = c->num_classes;
        t->h_ids[(size_t)b * T] = V + 1 + cls;
        for (i = 0; i < L; i++) {
            const size_t r = (size_t)b * L + i;
            t->h_ids[(size_t)b * T + 1 + i] = t->h_mask[r] ? V : tokens[r];
            t->h_tgt[r] = tokens[r];
        }
    }
    if ((st = k->to_device(k, t->ids, t->h_ids, (size_t)BT * sizeof(int32_t))) != TEXTOK_OK ||
        (st = k->to_device(k, t->tgt, t->h_tgt, (size_t)BL * sizeof(int32_t))) != TEXTOK_OK)
        return textok__mg_xfer_fail(st);
    /* forward with a tape per block */
    textok__mg_embed(k, c, w, t->ids, t->zeros, t->posids, B, t->x0, t->e, t->dtmp, t->emb_mean, t->emb_rstd);
    for (l = 0; l < m->n_blocks; l++) {
        const float *xin = l == 0 ? t->x0 : t->xs[l - 1], *skip = NULL;
        s.has_skip = 0;
        if (c->arch == TEXTOK_MASKGIT_UVIT && l > half) { s.has_skip = 1; skip = t->xs[half - 1 - (l - half - 1)]; }
        textok__tb_forward(k, &w->blocks[l], &s, &t->tapes[l], xin, t->xs[l], NULL, skip, NULL, NULL, t->work);
    }
    fin = t->xs[m->n_blocks - 1];
    if (c->arch == TEXTOK_MASKGIT_UVIT) {
        k->layernorm_forward(k, t->fin, t->fin_mean, t->fin_rstd, fin, w->norm_w, w->norm_b, BT, D, 1e-5f);
        fin = t->fin;
    }
    textok__mg_head(k, c, w, fin, t->h, t->logits, B);
    k->cross_entropy_forward(k, t->losses, t->probs, t->logits, t->tgt, BL, V, tc->label_smoothing);
    if ((st = k->to_host(k, t->h_losses, t->losses, (size_t)BL * sizeof(float))) != TEXTOK_OK ||
        (st = k->to_host(k, t->h_logits, t->logits, (size_t)BL * V * sizeof(float))) != TEXTOK_OK)
        return textok__mg_xfer_fail(st);
    /* loss = sum(l w) / (sum w + 1e-8), w = 1 masked, unmasked_weight else (MLMLoss) */
    for (i = 0; i < BL; i++) {
        t->h_w[i] = t->h_mask[i] ? 1.0f : tc->unmasked_weight;
        sw += t->h_w[i];
        sl += (double)t->h_losses[i] * t->h_w[i];
    }
    for (b = 0; b < B; b++) {   /* argmax hits among the masked tokens, per sequence, then the batch mean */
        double hit = 0.0, cnt = 0.0;
        for (i = 0; i < L; i++) {
            const size_t r = (size_t)b * L + i;
            const float *lg = t->h_logits + r * V;
            int v, arg = 0;
            if (!t->h_mask[r]) continue;
            for (v = 1; v < V; v++) if (lg[v] > lg[arg]) arg = v;
            hit += arg == t->h_tgt[r];
            cnt += 1.0;
        }
        acc += hit / (cnt + 1e-8);
    }
    if (!(sl == sl) || sl > 1e300)
        return textok__fail(TEXTOK_ERR_FORMAT, "MaskGIT training: the loss is not finite (diverged weights or a bad learning rate?)");
    for (i = 0; i < BL; i++) t->h_w[i] = (float)(t->h_w[i] / (sw + 1e-8));
    if ((st = k->to_device(k, t->dlosses, t->h_w, (size_t)BL * sizeof(float))) != TEXTOK_OK) return textok__mg_xfer_fail(st);
    if (stats) {
        stats->loss = stats->ce = sl / (sw + 1e-8);
        stats->accuracy = acc / B;
    }
    /* backward */
    k->fill(k, t->dlogits, (size_t)BL * V, 0.0f);
    k->cross_entropy_backward(k, t->dlogits, t->dlosses, t->probs, t->tgt, BL, V, tc->label_smoothing);
    k->fill(k, t->dh, (size_t)BL * D, 0.0f);
    textok__linear_backward(k, t->dh, g->lm_w, g->lm_b, t->dlogits, t->h, w->lm_w, BL, D, V);
    k->fill(k, t->dx, n, 0.0f);   /* position 0 (the class token) gets no gradient from the head */
    for (b = 0; b < B; b++)
        k->copy(k, t->dx + ((size_t)b * T + 1) * D, t->dh + (size_t)b * L * D, (size_t)L * D * sizeof(float));
    if (c->arch == TEXTOK_MASKGIT_UVIT) {
        float *tmp;
        k->fill(k, t->dtmp, n, 0.0f);
        k->layernorm_backward(k, t->dtmp, g->norm_w, g->norm_b, t->dx, t->xs[m->n_blocks - 1], w->norm_w,
                              t->fin_mean, t->fin_rstd, BT, D);
        tmp = t->dx; t->dx = t->dtmp; t->dtmp = tmp;
        for (l = 0; l < half; l++) k->fill(k, t->dskips[l], n, 0.0f);
    }
    for (l = m->n_blocks - 1; l >= 0; l--) {
        float *dskip = NULL;
        s.has_skip = 0;
        if (c->arch == TEXTOK_MASKGIT_UVIT) {
            if (l > half) { s.has_skip = 1; dskip = t->dskips[half - 1 - (l - half - 1)]; }
            else if (l < half) k->add_forward(k, t->dx, t->dx, t->dskips[l], n);   /* its output also fed an out-block */
        }
        textok__tb_backward(k, &w->blocks[l], &g->blocks[l], &s, &t->tapes[l], t->dx, NULL, dskip, NULL, NULL, &t->sc, t->work);
    }
    if (c->arch == TEXTOK_MASKGIT_BERT) {
        k->fill(k, t->dtmp, n, 0.0f);
        k->layernorm_backward(k, t->dtmp, g->eln_w, g->eln_b, t->dx, t->e, w->eln_w, t->emb_mean, t->emb_rstd, BT, D);
        k->embedding_backward(k, g->word, t->dtmp, t->ids, BT, D);
        k->embedding_backward(k, g->type, t->dtmp, t->zeros, BT, D);
        k->embedding_backward(k, g->pos, t->dtmp, t->posids, BT, D);
    } else {
        k->embedding_backward(k, g->word, t->dx, t->ids, BT, D);
        k->embedding_backward(k, g->pos, t->dx, t->posids, BT, D);
    }
    return TEXTOK_OK;
}


/* ---------------------------------------------------------------------------------------------
   17. Training a generator: one trainer for DiT and MaskGIT. The model sections provide the
   forward + loss + backward of one batch (textok__dit_train_loss, textok__maskgit_train_loss,
   each accumulating into a grads block laid out like the params); this shell owns what is the
   same for both: zeroing, global-norm clipping, AdamW per tensor (frozen tensors skipped, weight
   decay by the official name rule), warmup + cosine, the weight EMA, and checkpoints that
   resume bit for bit (params, EMA, both moments, step, RNG state). */
struct textok_gen_trainer {
    textok_gen_train_config tc;
    textok_dit         *dit;            /* borrowed; exactly one of dit, maskgit */
    textok_maskgit     *mg;
    textok_kernels      k;
    textok_rng          rng;
    int                 step;
    float              *params;         /* the model's block (device) */
    size_t              n_params;
    const textok_tensor_spec *specs;    /* the model's (n_tensors) */
    int                 n_tensors;
    size_t             *offsets;        /* (n_tensors + 1) host */
    unsigned char      *frozen;         /* (n_tensors) host: 1 = not trained (DiT's pos_embed) */
    float              *grads, *adam_m, *adam_v, *ema;   /* (n_params) device; ema NULL without EMA */
    float              *scal;           /* (16) device scalars */
    textok__dit_train     *dit_state;
    textok__maskgit_train *mg_state;
};

TEXTOKDEF int textok_gen_train_preset(textok_gen_train_config *tc, const char *name)
{
    if (!tc || !name) return textok__fail(TEXTOK_ERR_ARG, "textok_gen_train_preset: NULL argument");
    memset(tc, 0, sizeof *tc);
    tc->batch = 8; tc->beta1 = 0.9; tc->beta2 = 0.999; tc->eps = 1e-8; tc->cond_dropout = 0.1f;
    tc->mask_schedule = TEXTOK_MASK_ARCCOS; tc->label_smoothing = 0.1f; tc->unmasked_weight = 0.1f;
    if (!strcmp(name, "dit")) {                 /* DiT train.py: AdamW(lr 1e-4, wd 0), constant, EMA 0.9999 */
        tc->batch = 256; tc->lr = tc->end_lr = 1e-4; tc->total_steps = 400000; tc->ema_decay = 0.9999;
    } else if (!strcmp(name, "maskgit")) {      /* 1d-tokenizer configs/training/generator/maskgit.yaml */
        tc->batch = 2048; tc->lr = 2e-4; tc->end_lr = 1e-5; tc->beta2 = 0.96; tc->weight_decay = 0.03;
        tc->warmup_steps = 10000; tc->total_steps = 500000; tc->ema_decay = 0.9999; tc->grad_clip = 1.0f;
    } else if (!strcmp(name, "tiny")) {         /* tests and demos */
        tc->lr = 1e-3; tc->end_lr = 1e-4; tc->warmup_steps = 10; tc->total_steps = 1000; tc->ema_decay = 0.99;
        tc->grad_clip = 1.0f;
    } else {
        return textok__fail(TEXTOK_ERR_ARG, "textok_gen_train_preset: unknown preset '%.64s' (dit, maskgit, tiny)", name);
    }
    return TEXTOK_OK;
}

TEXTOKDEF int textok_gen_train_config_check(const textok_gen_train_config *tc)
{
#define TEXTOK__GC(cond, ...) do { if (!(cond)) return textok__fail(TEXTOK_ERR_ARG, "generator training config: " __VA_ARGS__); } while (0)
    if (!tc) return textok__fail(TEXTOK_ERR_ARG, "generator training config: NULL");
    TEXTOK__GC(tc->batch >= 1 && tc->batch <= 65536, "batch %d not in [1, 65536]", tc->batch);
    TEXTOK__GC(tc->lr >= 0 && tc->end_lr >= 0, "learning rates must be >= 0");
    TEXTOK__GC(tc->warmup_steps >= 0 && tc->total_steps >= 1, "warmup_steps must be >= 0 and total_steps >= 1");
    TEXTOK__GC(tc->beta1 >= 0 && tc->beta1 < 1 && tc->beta2 >= 0 && tc->beta2 < 1 && tc->eps > 0, "AdamW betas must be in [0, 1), eps > 0");
    TEXTOK__GC(tc->weight_decay >= 0 && tc->grad_clip >= 0, "weight_decay and grad_clip must be >= 0");
    TEXTOK__GC(tc->ema_decay >= 0 && tc->ema_decay < 1, "ema_decay %g not in [0, 1)", tc->ema_decay);
    TEXTOK__GC(tc->cond_dropout >= 0 && tc->cond_dropout <= 1, "cond_dropout %g not in [0, 1]", tc->cond_dropout);
    TEXTOK__GC(tc->mask_schedule == TEXTOK_MASK_ARCCOS || tc->mask_schedule == TEXTOK_MASK_COSINE ||
               tc->mask_schedule == TEXTOK_MASK_LINEAR, "mask_schedule %d is not arccos (0), cosine (1) or linear (2)", tc->mask_schedule);
    TEXTOK__GC(tc->label_smoothing >= 0 && tc->label_smoothing < 1, "label_smoothing %g not in [0, 1)", tc->label_smoothing);
    TEXTOK__GC(tc->unmasked_weight >= 0 && tc->unmasked_weight <= 1, "unmasked_weight %g not in [0, 1]", tc->unmasked_weight);
#undef TEXTOK__GC
    return TEXTOK_OK;
}

TEXTOKDEF void textok_gen_trainer_free(textok_gen_trainer *t)
{
    if (!t) return;
    if (t->dit_state) textok__dit_train_delete(t->dit_state);
    if (t->mg_state) textok__maskgit_train_delete(t->mg_state);
    if (t->grads) t->k.free(&t->k, t->grads);
    if (t->adam_m) t->k.free(&t->k, t->adam_m);
    if (t->adam_v) t->k.free(&t->k, t->adam_v);
    if (t->ema) t->k.free(&t->k, t->ema);
    if (t->scal) t->k.free(&t->k, t->scal);
    TEXTOK_FREE(t->offsets);
    TEXTOK_FREE(t->frozen);
    TEXTOK_FREE(t);
}

TEXTOKDEF int textok_gen_trainer_create(textok_gen_trainer **out, textok_dit *dit, textok_maskgit *maskgit,
                                        const textok_gen_train_config *tc, uint64_t seed)
{
    textok_gen_trainer *t;
    const size_t bytes_of = sizeof(float);
    int st, i;
    if (!out) return textok__fail(TEXTOK_ERR_ARG, "textok_gen_trainer_create: NULL argument");
    *out = NULL;
    if (!dit == !maskgit) return textok__fail(TEXTOK_ERR_ARG, "textok_gen_trainer_create: give exactly one of a DiT and a MaskGIT");
    if ((st = textok_gen_train_config_check(tc)) != TEXTOK_OK) return st;
    if (!(t = (textok_gen_trainer *)textok__calloc(1, sizeof *t))) return textok__fail(TEXTOK_ERR_NOMEM, "textok_gen_trainer_create: out of memory");
    t->tc = *tc; t->dit = dit; t->mg = maskgit;
    textok_rng_seed(&t->rng, seed);
    if (dit) { t->k = dit->k; t->params = dit->params; t->n_params = dit->n_params; t->specs = dit->specs; t->n_tensors = dit->n_tensors; }
    else     { t->k = maskgit->k; t->params = maskgit->params; t->n_params = maskgit->n_params; t->specs = maskgit->specs; t->n_tensors = maskgit->n_tensors; }
    t->offsets = (size_t *)textok__calloc((size_t)t->n_tensors + 1, sizeof *t->offsets);
    t->frozen = (unsigned char *)textok__calloc((size_t)t->n_tensors + 1, 1);
    if (!t->offsets || !t->frozen) { st = textok__fail(TEXTOK_ERR_NOMEM, "textok_gen_trainer_create: out of memory"); goto fail; }
    for (i = 0; i < t->n_tensors; i++) {
        t->offsets[i + 1] = t->offsets[i] + textok__spec_numel(&t->specs[i]);
        t->frozen[i] = (unsigned char)(dit && textok__dit_frozen(t->specs[i].name));
    }
    if (t->offsets[t->n_tensors] != t->n_params) { st = textok__fail(TEXTOK_ERR_ARG, "textok_gen_trainer_create: the model's specs do not cover its parameters"); goto fail; }
    t->grads = (float *)t->k.alloc(&t->k, t->n_params * bytes_of);
    t->adam_m = (float *)t->k.alloc(&t->k, t->n_params * bytes_of);
    t->adam_v = (float *)t->k.alloc(&t->k, t->n_params * bytes_of);
    t->scal = (float *)t->k.alloc(&t->k, 16 * bytes_of);
    if (tc->ema_decay > 0) t->ema = (float *)t->k.alloc(&t->k, t->n_params * bytes_of);
    if (!t->grads || !t->adam_m || !t->adam_v || !t->scal || (tc->ema_decay > 0 && !t->ema)) {
        st = textok__fail(TEXTOK_ERR_NOMEM, "textok_gen_trainer_create: out of memory for %zu parameters' state", t->n_params);
        goto fail;
    }
    t->k.fill(&t->k, t->grads, t->n_params, 0.0f);
    t->k.fill(&t->k, t->adam_m, t->n_params, 0.0f);
    t->k.fill(&t->k, t->adam_v, t->n_params, 0.0f);
    if (t->ema && (st = t->k.copy(&t->k, t->ema, t->params, t->n_params * bytes_of)) != TEXTOK_OK) goto fail;
    st = dit ? textok__dit_train_new(&t->dit_state, dit, t->grads, tc->batch)
             : textok__maskgit_train_new(&t->mg_state, maskgit, t->grads, tc->batch);
    if (st != TEXTOK_OK) goto fail;
    *out = t;
    return TEXTOK_OK;
fail:
    textok_gen_trainer_free(t);
    return st;
}

TEXTOKDEF int textok_gen_trainer_steps_done(const textok_gen_trainer *t) { return t ? t->step : 0; }
TEXTOKDEF textok_rng *textok_gen_trainer_rng(textok_gen_trainer *t) { return t ? &t->rng : NULL; }

TEXTOKDEF int textok_gen_trainer_step(textok_gen_trainer *t, const float *latents, const int32_t *tokens,
                                      const int32_t *y, const textok_text *text, textok_gen_train_stats *stats)
{
    const textok_kernels *k;
    textok_gen_train_stats s;
    textok_adamw_params hp;
    double ss;
    float v;
    int st, i;
    if (!t) return textok__fail(TEXTOK_ERR_ARG, "textok_gen_trainer_step: NULL trainer");
    k = &t->k;
    memset(&s, 0, sizeof s);
    k->fill(k, t->grads, t->n_params, 0.0f);
    if (t->dit) {
        if (!latents) return textok__fail(TEXTOK_ERR_ARG, "textok_gen_trainer_step: a DiT trains on latents (NULL given)");
        st = textok__dit_train_loss(t->dit_state, &t->rng, &t->tc, latents, y, text, &s);
    } else {
        if (!tokens) return textok__fail(TEXTOK_ERR_ARG, "textok_gen_trainer_step: a MaskGIT trains on token ids (NULL given)");
        st = textok__maskgit_train_loss(t->mg_state, &t->rng, &t->tc, tokens, y, &s);
    }
    if (st != TEXTOK_OK) return st;
    if (!textok__finite(s.loss))
        return textok__fail(TEXTOK_ERR_FORMAT, "generator training step %d: the loss is not finite; parameters left unchanged", t->step);
    for (i = 0; i < t->n_tensors; i++)
        if (t->frozen[i]) k->fill(k, t->grads + t->offsets[i], t->offsets[i + 1] - t->offsets[i], 0.0f);
    /* global-norm clipping as torch.nn.utils.clip_grad_norm_ */
    k->sum_squares(k, t->scal, t->grads, t->n_params);
    if ((st = k->to_host(k, &v, t->scal, sizeof v)) != TEXTOK_OK) return st;
    ss = v;
    s.grad_norm = sqrt(ss);
    if (!textok__finite(s.grad_norm))
        return textok__fail(TEXTOK_ERR_FORMAT, "generator training step %d: the gradient norm is not finite; parameters left unchanged", t->step);
    if (t->tc.grad_clip > 0) {
        float coef = t->tc.grad_clip / (float)(s.grad_norm + 1e-6);
        if (coef < 1.0f) k->scale(k, t->grads, t->n_params, coef);
    }
    s.lr = textok__lr_at(t->tc.lr, t->tc.end_lr, t->step, t->tc.warmup_steps, t->tc.total_steps);
    hp.lr = s.lr; hp.beta1 = t->tc.beta1; hp.beta2 = t->tc.beta2; hp.eps = t->tc.eps;
    for (i = 0; i < t->n_tensors; i++) {
        size_t o = t->offsets[i], n = t->offsets[i + 1] - o;
        if (t->frozen[i]) continue;
        hp.weight_decay = textok__decays(&t->specs[i]) ? t->tc.weight_decay : 0.0;
        k->adamw_update(k, t->params + o, t->grads + o, t->adam_m + o, t->adam_v + o, n, &hp, t->step + 1);
    }
    if (t->ema) {   /* the same warm-up as the tokenizer trainer: (1 + s) / (10 + s) capped at ema_decay */
        double d = t->step <= 0 ? 0.0 : (1.0 + t->step) / (10.0 + t->step);
        if (d > t->tc.ema_decay) d = t->tc.ema_decay;
        k->ema_update(k, t->ema, t->params, t->n_params, (float)(1.0 - d));
    }
    t->step++;
    s.step = t->step;
    if (stats) *stats = s;
    return TEXTOK_OK;
}

/* "param.<name>" and friends: the block and the tensor's place in it */
static int textok__gen_find(textok_gen_trainer *t, const char *name, float **block, size_t *off, size_t *n)
{
    static const char *const pre[] = { "param.", "grad.", "ema.", "adam_m.", "adam_v." };
    int b, i;
    for (b = 0; b < 5; b++) {
        size_t len = strlen(pre[b]);
        if (strncmp(name, pre[b], len)) continue;
        *block = b == 0 ? t->params : b == 1 ? t->grads : b == 2 ? t->ema : b == 3 ? t->adam_m : t->adam_v;
        if (!*block) return textok__fail(TEXTOK_ERR_NOT_FOUND, "'%s': this trainer keeps no EMA", name);
        for (i = 0; i < t->n_tensors; i++)
            if (!strcmp(name + len, t->specs[i].name)) {
                *off = t->offsets[i]; *n = t->offsets[i + 1] - t->offsets[i];
                return TEXTOK_OK;
            }
        return textok__fail(TEXTOK_ERR_NOT_FOUND, "'%s': the model has no tensor '%s'", name, name + len);
    }
    return textok__fail(TEXTOK_ERR_NOT_FOUND, "'%s': expected a param./grad./ema./adam_m./adam_v. name", name);
}

TEXTOKDEF int textok_gen_trainer_get(textok_gen_trainer *t, const char *name, float *out, size_t n)
{
    float *b; size_t o, cnt;
    int st;
    if (!t || !name || !out) return textok__fail(TEXTOK_ERR_ARG, "textok_gen_trainer_get: NULL argument");
    if ((st = textok__gen_find(t, name, &b, &o, &cnt)) != TEXTOK_OK) return st;
    if (n != cnt) return textok__fail(TEXTOK_ERR_SHAPE, "textok_gen_trainer_get: '%s' has %zu values, not %zu", name, cnt, n);
    return t->k.to_host(&t->k, out, b + o, n * sizeof(float));
}

TEXTOKDEF int textok_gen_trainer_set(textok_gen_trainer *t, const char *name, const float *in, size_t n)
{
    float *b; size_t o, cnt;
    int st;
    if (!t || !name || !in) return textok__fail(TEXTOK_ERR_ARG, "textok_gen_trainer_set: NULL argument");
    if (strncmp(name, "param.", 6)) return textok__fail(TEXTOK_ERR_ARG, "textok_gen_trainer_set: only param.<name> tensors can be set, not '%s'", name);
    if ((st = textok__gen_find(t, name, &b, &o, &cnt)) != TEXTOK_OK) return st;
    if (n != cnt) return textok__fail(TEXTOK_ERR_SHAPE, "textok_gen_trainer_set: '%s' has %zu values, not %zu", name, cnt, n);
    return t->k.to_device(&t->k, b + o, in, n * sizeof(float));
}

/* Checkpoint metadata: the model's config (as its own files have it), then the trainer's. */
static int textok__gen_ckpt_meta(textok_gen_trainer *t, const char **kv, char *cfgbuf, size_t cfgsz, char *buf,
                                 size_t bufsz, const char *rng_hex)
{
    const int room = TEXTOK__CKPT_META - 24;
    int n = t->dit ? textok_dit_config_to_meta(textok_dit_get_config(t->dit), kv, room, cfgbuf, cfgsz)
                   : textok_maskgit_config_to_meta(textok_maskgit_get_config(t->mg), kv, room, cfgbuf, cfgsz);
    char *p = buf;
    const textok_gen_train_config *c = &t->tc;
    if (n < 0) return n;
#define TEXTOK__KV(key, ...) do { \
        int w_ = snprintf(p, bufsz - (size_t)(p - buf), __VA_ARGS__); \
        if (w_ < 0 || (size_t)w_ >= bufsz - (size_t)(p - buf)) return TEXTOK_ERR_ARG; \
        kv[2 * n] = key; kv[2 * n + 1] = p; p += w_ + 1; n++; } while (0)
    TEXTOK__KV("textok.trainer", "%s", t->dit ? "dit" : "maskgit");   /* a checkpoint, not a model file */
    TEXTOK__KV("train.step", "%d", t->step);
    TEXTOK__KV("train.batch", "%d", c->batch);
    TEXTOK__KV("train.lr", "%.17g", c->lr);
    TEXTOK__KV("train.end_lr", "%.17g", c->end_lr);
    TEXTOK__KV("train.warmup_steps", "%d", c->warmup_steps);
    TEXTOK__KV("train.total_steps", "%d", c->total_steps);
    TEXTOK__KV("train.beta1", "%.17g", c->beta1);
    TEXTOK__KV("train.beta2", "%.17g", c->beta2);
    TEXTOK__KV("train.eps", "%.17g", c->eps);
    TEXTOK__KV("train.weight_decay", "%.17g", c->weight_decay);
    TEXTOK__KV("train.grad_clip", "%.9g", c->grad_clip);
    TEXTOK__KV("train.ema_decay", "%.17g", c->ema_decay);
    TEXTOK__KV("train.cond_dropout", "%.9g", c->cond_dropout);
    TEXTOK__KV("train.mask_schedule", "%d", c->mask_schedule);
    TEXTOK__KV("train.label_smoothing", "%.9g", c->label_smoothing);
    TEXTOK__KV("train.unmasked_weight", "%.9g", c->unmasked_weight);
#undef TEXTOK__KV
    kv[2 * n] = "train.rng"; kv[2 * n + 1] = rng_hex; n++;
    return n;
}

TEXTOKDEF int textok_gen_trainer_save(textok_gen_trainer *t, const char *path)
{
    static const char *const blocks[] = { "param.", "ema.", "adam_m.", "adam_v." };
    const char *kv[2 * TEXTOK__CKPT_META];
    char cfgmeta[4096], meta[4096], rng_hex[8 * 628 + 1], (*names)[112] = NULL;
    textok_st_entry *e = NULL;
    float *host = NULL;
    int n_meta, n = 0, bl, i, d, st;
    if (!t || !path) return textok__fail(TEXTOK_ERR_ARG, "textok_gen_trainer_save: NULL argument");
    textok__rng_to_hex(&t->rng, rng_hex);
    if ((n_meta = textok__gen_ckpt_meta(t, kv, cfgmeta, sizeof cfgmeta, meta, sizeof meta, rng_hex)) < 0)
        return textok__fail(TEXTOK_ERR_ARG, "textok_gen_trainer_save: metadata does not fit");
    e = (textok_st_entry *)textok__calloc((size_t)4 * t->n_tensors, sizeof *e);
    names = (char (*)[112])textok__calloc((size_t)4 * t->n_tensors, sizeof *names);
    host = (float *)textok__malloc(4 * t->n_params * sizeof(float));
    if (!e || !names || !host) { st = textok__fail(TEXTOK_ERR_NOMEM, "textok_gen_trainer_save: out of memory"); goto done; }
    for (bl = 0; bl < 4; bl++) {
        const float *src = bl == 0 ? t->params : bl == 1 ? t->ema : bl == 2 ? t->adam_m : t->adam_v;
        float *h = host + (size_t)bl * t->n_params;
        if (!src) continue;
        if ((st = t->k.to_host(&t->k, h, src, t->n_params * sizeof(float))) != TEXTOK_OK) goto done;
        for (i = 0; i < t->n_tensors; i++) {
            snprintf(names[n], sizeof names[n], "%s%s", blocks[bl], t->specs[i].name);
            e[n].name = names[n];
            e[n].data = h + t->offsets[i];
            e[n].ndim = t->specs[i].ndim;
            for (d = 0; d < t->specs[i].ndim; d++) e[n].shape[d] = t->specs[i].shape[d];
            n++;
        }
    }
    st = textok_st_save(path, e, n, kv, n_meta, TEXTOK_DTYPE_F32);
done:
    TEXTOK_FREE(e); TEXTOK_FREE(names); TEXTOK_FREE(host);
    return st;
}

TEXTOKDEF int textok_gen_trainer_load(textok_gen_trainer *t, const char *path)
{
    static const char *const blocks[] = { "param.", "ema.", "adam_m.", "adam_v." };
    const char *kv_have[2 * TEXTOK__CKPT_META], *kv_file[2 * TEXTOK__CKPT_META];
    char buf_have[4096], buf_file[4096], name[160];
    const char *want = t && t->dit ? "dit" : "maskgit", *model;
    textok_safetensors st;
    textok_rng rng;
    float *host = NULL;
    int s, bl, i, d, step, n_have, n_file;
    if (!t || !path) return textok__fail(TEXTOK_ERR_ARG, "textok_gen_trainer_load: NULL argument");
    if ((s = textok_st_open(&st, path)) != TEXTOK_OK) return s;
    model = textok_st_meta(&st, "textok.trainer");
    if (!model || strcmp(model, want)) {
        s = textok__fail(TEXTOK_ERR_FORMAT, "%s: not a %s training checkpoint (textok.trainer is '%s')", st.path, want, model ? model : "(absent)");
        goto done;
    }
    /* the model config must be the trainer's: compare the metadata each writes */
    if (t->dit) {
        textok_dit_config c;
        if ((s = textok_dit_config_from_meta(&c, &st)) != TEXTOK_OK) goto done;
        n_file = textok_dit_config_to_meta(&c, kv_file, TEXTOK__CKPT_META, buf_file, sizeof buf_file);
        n_have = textok_dit_config_to_meta(textok_dit_get_config(t->dit), kv_have, TEXTOK__CKPT_META, buf_have, sizeof buf_have);
    } else {
        textok_maskgit_config c;
        if ((s = textok_maskgit_config_from_meta(&c, &st)) != TEXTOK_OK) goto done;
        n_file = textok_maskgit_config_to_meta(&c, kv_file, TEXTOK__CKPT_META, buf_file, sizeof buf_file);
        n_have = textok_maskgit_config_to_meta(textok_maskgit_get_config(t->mg), kv_have, TEXTOK__CKPT_META, buf_have, sizeof buf_have);
    }
    if (n_file < 0 || n_have < 0) { s = textok__fail(TEXTOK_ERR_ARG, "%s: model metadata does not fit", st.path); goto done; }
    for (i = 0; i < 2 * n_have; i += 2) {
        if (i >= 2 * n_file || strcmp(kv_file[i], kv_have[i]) || strcmp(kv_file[i + 1], kv_have[i + 1])) {
            s = textok__fail(TEXTOK_ERR_SHAPE, "%s: the checkpoint's model config differs from this trainer's model at '%s' (checkpoint '%s', model '%s')",
                             st.path, kv_have[i], i < 2 * n_file ? kv_file[i + 1] : "(absent)", kv_have[i + 1]);
            goto done;
        }
    }
    if (TEXTOK_OK != textok__meta_int(&st, "train.step", &step) || step < 0 || !textok__rng_from_hex(&rng, textok_st_meta(&st, "train.rng"))) {
        s = textok__fail(TEXTOK_ERR_FORMAT, "%s: missing or malformed train.step / train.rng metadata", st.path);
        goto done;
    }
    for (bl = 0; bl < 4; bl++) {   /* check every tensor before changing anything */
        if (bl == 1 && !t->ema) continue;
        for (i = 0; i < t->n_tensors; i++) {
            const textok_st_tensor *tt;
            int same;
            snprintf(name, sizeof name, "%s%s", blocks[bl], t->specs[i].name);
            if (!(tt = textok_st_find(&st, name))) { s = textok__fail(TEXTOK_ERR_NOT_FOUND, "%s: tensor '%s' missing", st.path, name); goto done; }
            same = tt->ndim == t->specs[i].ndim;
            for (d = 0; same && d < tt->ndim; d++) same = tt->shape[d] == t->specs[i].shape[d];
            if (!same) { s = textok__fail(TEXTOK_ERR_SHAPE, "%s: tensor '%s' has the wrong shape", st.path, name); goto done; }
        }
    }
    if (!(host = (float *)textok__malloc(t->n_params * sizeof(float)))) { s = textok__fail(TEXTOK_ERR_NOMEM, "textok_gen_trainer_load: out of memory"); goto done; }
    for (bl = 0; bl < 4; bl++) {
        float *dst = bl == 0 ? t->params : bl == 1 ? t->ema : bl == 2 ? t->adam_m : t->adam_v;
        if (!dst) continue;
        for (i = 0; i < t->n_tensors; i++) {
            snprintf(name, sizeof name, "%s%s", blocks[bl], t->specs[i].name);
            if ((s = textok_st_read_f32(&st, textok_st_find(&st, name), host + t->offsets[i], t->offsets[i + 1] - t->offsets[i])) != TEXTOK_OK) goto done;
        }
        if ((s = t->k.to_device(&t->k, dst, host, t->n_params * sizeof(float))) != TEXTOK_OK) goto done;
    }
    t->step = step; t->rng = rng;
done:
    TEXTOK_FREE(host);
    textok_st_close(&st);
    return s;
}

TEXTOKDEF int textok_gen_trainer_save_model(textok_gen_trainer *t, const char *path, int ema)
{
    if (!t || !path) return textok__fail(TEXTOK_ERR_ARG, "textok_gen_trainer_save_model: NULL argument");
    if (ema && !t->ema) return textok__fail(TEXTOK_ERR_ARG, "textok_gen_trainer_save_model: this trainer keeps no EMA (ema_decay 0)");
    return t->dit ? textok__dit_save_params(t->dit, path, ema ? t->ema : t->params)
                  : textok__maskgit_save_params(t->mg, path, ema ? t->ema : t->params);
}


#endif /* TEXTOK_IMPLEMENTATION_DONE */
#endif /* TEXTOK_IMPLEMENTATION */

/*
------------------------------------------------------------------------------
This software is available under 2 licenses -- choose whichever you prefer.
------------------------------------------------------------------------------
ALTERNATIVE A - MIT License
Copyright (c) 2026 the textok authors
Permission is hereby granted, free of charge, to any person obtaining a copy of
this software and associated documentation files (the "Software"), to deal in
the Software without restriction, including without limitation the rights to
use, copy, modify, merge, publish, distribute, sublicense, and/or sell copies
of the Software, and to permit persons to whom the Software is furnished to do
so, subject to the following conditions:
The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.
THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
------------------------------------------------------------------------------
ALTERNATIVE B - Public Domain (www.unlicense.org)
This is free and unencumbered software released into the public domain.
Anyone is free to copy, modify, publish, use, compile, sell, or distribute this
software, either in source code form or as a compiled binary, for any purpose,
commercial or non-commercial, and by any means.
In jurisdictions that recognize copyright laws, the author or authors of this
software dedicate any and all copyright interest in the software to the public
domain. We make this dedication for the benefit of the public at large and to
the detriment of our heirs and successors. We intend this dedication to be an
overt act of relinquishment in perpetuity of all present and future rights to
this software under copyright law.
THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN AN
ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION
WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
------------------------------------------------------------------------------
*/
