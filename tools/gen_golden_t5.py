#!/usr/bin/python3
"""Golden T5 text encoders and reference outputs for textok, from the independent PyTorch reference
tools/t5_ref.py (itself written from /work/shared/reference/textok-paper.md section 3).

    /usr/bin/python3 tools/gen_golden_t5.py            # write tests/golden/t5/*, then validate
    /usr/bin/python3 tools/gen_golden_t5.py --check    # regenerate into a temp dir, compare bit for
                                                       # bit with tests/golden/t5, validate
    /usr/bin/python3 tools/gen_golden_t5.py --out DIR  # write elsewhere

Two tiny encoders, chosen so that the usual porting mistakes change the output:

  t5_gated  v1.1/flan style: d_model 40, 3 heads of d_kv 16 (inner 48 != d_model), d_ff 56,
            3 layers, 100 embedding rows, 32 buckets, max_distance 128, gated tanh-GELU, eps 1e-6
  t5_v10    v1.0 style: d_model 32, 2 heads of d_kv 12 (inner 24), d_ff 48, 2 layers, 64 rows,
            16 buckets, max_distance 40 (not the default: only its config.json says so), ReLU
            `wi`, eps 1e-5

Files per model <name>:

  <name>.safetensors      Hugging Face names, tensors in name order as save_pretrained writes them;
                          metadata only {"format": "pt"}, like a published file.
                            t5_gated: BF16, a full T5ForConditionalGeneration-style file:
                                      shared.weight (no encoder.embed_tokens.weight), the encoder,
                                      decoder block 0 + decoder.final_layer_norm + lm_head.weight
                                      (what a converter must drop)
                            t5_v10:   F32, a T5EncoderModel file holding the embedding only as
                                      encoder.embed_tokens.weight (the other tied name)
  <name>.bin              torch.save of the state_dict (zip), in state_dict order, with
                          encoder.embed_tokens.weight sharing shared.weight's storage (as HF's tied
                          modules give it; t5_gated also decoder.embed_tokens.weight, the decoder
                          tensors and lm_head): t5_gated F32, t5_v10 F16
  <name>_config.json      a Hugging Face config.json for the model (t5_v10: feed_forward_proj
                          "relu", max_distance 40, eps 1e-5, a nested task_specific_params object)
  t5_gated_gelu_config.json  the same model as an old flan-t5-xxl revision described it:
                          feed_forward_proj "gelu", dense_act_fn "gelu", is_gated_act true (gated,
                          exact erf GELU)
  <name>_ref.safetensors  F32, metadata = the config under the textok_t5_config field names (eps as
                          "%.9g"), "textok.model" = "t5" (textok_t5_config_from_meta reads it),
                          model, seed, precision, regenerate; tensors
        ids_pad   (3, Lp)     token ids as exact floats; rows have n_real real tokens (the last is
                              the EOS id 1) then padding id 0. Lp = 100 (t5_gated; the longest
                              row reaches |key - query| = 99, so every bucket of both directions,
                              the log ones included, is used; bucket 16 would be key - query = +0,
                              which is bucket 0), 50 (t5_v10)
        mask_pad  (3, Lp)     1 real / 0 padding
        out_pad   (3, Lp, d)  last_hidden_state with that mask (padding rows included: they are
                              computed, keys masked, as Hugging Face does)
        ids       (2, Ls)     another batch, every position real (no mask)
        out       (2, Ls, d)
        out_gelu_exact (2, Ls, d)   t5_gated only: `out` with the exact erf GELU (gelu_tanh = 0)
      Every row of more than one token uses the last embedding row (vocab - 1) somewhere.

And one encoder for the caption -> embedding path (build/encode_text), whose embedding covers the
ids of the SentencePiece golden tests/golden/spm/tokenizer.json (322 pieces):

  t5_caption  gated tanh-GELU, d_model 32, 2 heads of d_kv 16, d_ff 48, 2 layers, 384 rows,
              32 buckets, max_distance 128, eps 1e-6 (convert --t5's defaults)
    t5_caption.safetensors      BF16, a T5EncoderModel file (shared.weight + the encoder)
    t5_caption_config.json      its config.json
    t5_caption_ref.safetensors  F32, metadata as above plus "tokenizer" (the path, relative to the
                                repository), "tokenizer_sha256", "max_len" (12), "n_captions",
                                "captions" (a JSON list, for reading) and "caption_<k>" (the UTF-8
                                bytes in hex, for shell tests); tensors per caption k:
        ids_<k>   (L_k,)      the ids of gen_golden_spm.Reference (the plain-Python HF pipeline) for
                              the caption at max_len: pieces, EOS 1 last, truncated to max_len with
                              EOS kept; no padding. Caption 2 is longer than max_len.
        out_<k>   (L_k, d)    last_hidden_state of exactly those ids (one row, no mask)
      Validation also encodes the captions with python3-sentencepiece (the model retrained as
      gen_golden_spm.py does) where it is installed.

The weights are rounded to the coarsest storage type of the model's files before anything runs,
so every file holds the same values; the reference runs in float64 on those values and rounds its
outputs to float32 once.  Deterministic: single thread, fixed seeds; re-running writes
byte-identical files.
"""
import json
import math
import os
import sys
from collections import OrderedDict

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_golden_titok import save_safetensors, load_safetensors, DTYPES  # noqa: E402
from gen_golden_nets import golden_main  # noqa: E402
import gen_golden_spm  # noqa: E402  (its Reference is plain Python; sentencepiece is optional)
from t5_ref import (T5Config, T5Encoder, init_weights, encoder_state_dict_shapes, seq2seq_extras,  # noqa: E402
                    relative_position_bucket)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "golden", "t5")
REGENERATE = "/usr/bin/python3 tools/gen_golden_t5.py"
COARSE = {"F32": 0, "F16": 1, "BF16": 2}

# name: config, seed, safetensors dtype, .bin dtype, padded batch (L, real lengths), plain L
MODELS = OrderedDict([
    ("t5_gated", dict(cfg=T5Config(vocab=100, d_model=40, d_kv=16, heads=3, d_ff=56, layers=3,
                                   num_buckets=32, max_distance=128, gated=1, gelu_tanh=1, eps=1e-6),
                      seed=5001, st="BF16", bin="F32", pad=(100, [37, 100, 5]), plain=23)),
    ("t5_v10", dict(cfg=T5Config(vocab=64, d_model=32, d_kv=12, heads=2, d_ff=48, layers=2,
                                 num_buckets=16, max_distance=40, gated=0, gelu_tanh=0, eps=1e-5),
                    seed=6001, st="F32", bin="F16", pad=(50, [50, 19, 1]), plain=9)),
])


def hf_config(cfg, name):
    """config.json as Hugging Face writes it for such a model (plus noise a reader must skip)."""
    c = OrderedDict()
    c["architectures"] = ["T5ForConditionalGeneration" if cfg.gated else "T5EncoderModel"]
    c["d_ff"] = cfg.d_ff
    c["d_kv"] = cfg.d_kv
    c["d_model"] = cfg.d_model
    c["decoder_start_token_id"] = 0
    c["dropout_rate"] = 0.1
    c["eos_token_id"] = 1
    c["feed_forward_proj"] = "gated-gelu" if cfg.gated else "relu"
    c["initializer_factor"] = 1.0
    c["is_encoder_decoder"] = True
    c["layer_norm_epsilon"] = cfg.eps
    c["model_type"] = "t5"
    c["num_decoder_layers"] = 1
    c["num_heads"] = cfg.heads
    c["num_layers"] = cfg.layers
    c["pad_token_id"] = 0
    c["relative_attention_max_distance"] = cfg.max_distance
    c["relative_attention_num_buckets"] = cfg.num_buckets
    if not cfg.gated:
        c["task_specific_params"] = {"summarization": {"max_length": 200, "prefix": "summarize: "},
                                     "translation_en_to_de": {"prefix": "translate English to German: "}}
    c["tie_word_embeddings"] = not cfg.gated
    c["torch_dtype"] = "float32"
    c["transformers_version"] = "4.26.0"
    c["use_cache"] = True
    c["vocab_size"] = cfg.vocab
    return c


def write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def make_model(cfg, seed, store):
    m = init_weights(T5Encoder(cfg), seed).double()
    with torch.no_grad():
        for n in m.names:
            p = m.w(n)
            p.copy_(p.float().to(DTYPES[store]).double())
    return m


def make_batch(cfg, L, lengths, seed):
    """ids (B, L) long and mask (B, L): n real tokens (random in [2, vocab), vocab - 1 placed once,
    EOS = 1 last), then padding 0."""
    g = torch.Generator().manual_seed(seed)
    B = len(lengths)
    ids = torch.zeros(B, L, dtype=torch.long)
    mask = torch.zeros(B, L, dtype=torch.long)
    for b, n in enumerate(lengths):
        ids[b, :n] = torch.randint(2, cfg.vocab, (n,), generator=g)
        if n > 1:
            ids[b, int(torch.randint(0, n - 1, (1,), generator=g))] = cfg.vocab - 1
        ids[b, n - 1] = 1
        mask[b, :n] = 1
    return ids, mask


@torch.no_grad()
def reference(model, spec):
    cfg = model.cfg
    Lp, lengths = spec["pad"]
    ids_pad, mask_pad = make_batch(cfg, Lp, lengths, spec["seed"] + 1)
    ids, _ = make_batch(cfg, spec["plain"], [spec["plain"]] * 2, spec["seed"] + 2)
    out = OrderedDict()
    out["ids_pad"] = ids_pad.float()
    out["mask_pad"] = mask_pad.float()
    out["out_pad"] = model(ids_pad, mask_pad).float()
    out["ids"] = ids.float()
    out["out"] = model(ids).float()
    if cfg.gated:
        cfg.gelu_tanh = 0
        out["out_gelu_exact"] = model(ids).float()
        cfg.gelu_tanh = 1
    return out


def write_model(out_dir, name, spec, verbose=True):
    cfg = spec["cfg"]
    store = max(spec["st"], spec["bin"], key=lambda d: COARSE[d])
    model = make_model(cfg, spec["seed"], store)
    sd = model.state_dict_hf()
    g = torch.Generator().manual_seed(spec["seed"] + 3)
    extras = seq2seq_extras(cfg, g) if cfg.gated else []
    extras = [(n, t.to(DTYPES[store]).float()) for n, t in extras]

    # safetensors: as save_pretrained lays a file out, name order
    st = [(n, t.float()) for n, t in sd.items()] + extras
    if not cfg.gated:   # a T5EncoderModel file that kept the other tied name
        st = [("encoder.embed_tokens.weight" if n == "shared.weight" else n, t) for n, t in st]
    st.sort(key=lambda nt: nt[0])
    save_safetensors(os.path.join(out_dir, name + ".safetensors"),
                     [(n, t.to(DTYPES[spec["st"]])) for n, t in st], {"format": "pt"})

    # .bin: torch.save(model.state_dict()), tied embeddings sharing one storage
    bd = DTYPES[spec["bin"]]
    shared = sd["shared.weight"].to(bd).clone()
    bsd = OrderedDict()
    bsd["shared.weight"] = shared
    bsd["encoder.embed_tokens.weight"] = shared
    for n, t in list(sd.items())[1:]:
        bsd[n] = t.to(bd).clone()
    if cfg.gated:
        bsd["decoder.embed_tokens.weight"] = shared
        for n, t in extras:
            bsd[n] = t.to(bd).clone()
    tmp = os.path.join(out_dir, name + ".bin.tmp")
    with open(tmp, "wb") as f:   # a file object: the zip's folder is "archive/"
        torch.save(bsd, f)
    os.replace(tmp, os.path.join(out_dir, name + ".bin"))

    write_json(os.path.join(out_dir, name + "_config.json"), hf_config(cfg, name))
    if cfg.gated:
        c = hf_config(cfg, name)
        c["feed_forward_proj"] = "gelu"
        c["dense_act_fn"] = "gelu"
        c["is_gated_act"] = True
        write_json(os.path.join(out_dir, name + "_gelu_config.json"), c)

    ref = reference(model, spec)
    meta = cfg.to_meta()
    meta.update({"textok.model": "t5", "model": name, "seed": str(spec["seed"]), "precision": "float64",
                 "regenerate": REGENERATE})
    save_safetensors(os.path.join(out_dir, name + "_ref.safetensors"), list(ref.items()), meta)
    if verbose:
        o = ref["out_pad"]
        print(f"{name}: {sum(t.numel() for t in sd.values()):,} encoder params (stored {store}); "
              f"out_pad std {float(o.std()):.3f}, max |.| {float(o.abs().max()):.3f}")


# ---- t5_caption: the encoder for build/encode_text, with captions tokenized by the spm golden ---

SPM_DIR = os.path.join(ROOT, "tests", "golden", "spm")
CAPTION_TOKENIZER = "tests/golden/spm/tokenizer.json"   # relative to ROOT
CAPTION = dict(name="t5_caption",
               cfg=T5Config(vocab=384, d_model=32, d_kv=16, heads=2, d_ff=48, layers=2,
                            num_buckets=32, max_distance=128, gated=1, gelu_tanh=1, eps=1e-6),
               seed=7001, st="BF16", max_len=12,
               captions=["a photo of a cat on a mat",
                         "2 dogs & 3.5 cats!",
                         "a small red dog running on green grass with two large blue birds near a "
                         "car in New York"])


def caption_tokenizer():
    """(gen_golden_spm.Reference over the committed tokenizer.json, its sha256, its vocab size)."""
    import hashlib
    with open(os.path.join(ROOT, CAPTION_TOKENIZER), "rb") as f:
        data = f.read()
    cfg = json.loads(data.decode("utf-8"), parse_float=gen_golden_spm.serde_f64)
    return gen_golden_spm.Reference(cfg), hashlib.sha256(data).hexdigest(), len(cfg["model"]["vocab"])


def caption_reference(model, ref_tok):
    """[(ids LongTensor (L,), n_full, out (L, d) float32)] per caption."""
    out = []
    with torch.no_grad():
        for text in CAPTION["captions"]:
            ids, n_full = ref_tok.encode(text, CAPTION["max_len"])
            t = torch.tensor(ids, dtype=torch.long)
            out.append((t, n_full, model(t[None])[0].float()))
    return out


def write_caption(out_dir, verbose=True):
    name, cfg = CAPTION["name"], CAPTION["cfg"]
    model = make_model(cfg, CAPTION["seed"], CAPTION["st"])
    sd = model.state_dict_hf()
    st = sorted(((n, t.float()) for n, t in sd.items()), key=lambda nt: nt[0])
    save_safetensors(os.path.join(out_dir, name + ".safetensors"),
                     [(n, t.to(DTYPES[CAPTION["st"]])) for n, t in st], {"format": "pt"})
    c = hf_config(cfg, name)
    c["architectures"] = ["T5EncoderModel"]
    write_json(os.path.join(out_dir, name + "_config.json"), c)

    ref_tok, sha, _ = caption_tokenizer()
    tensors = []
    for k, (ids, _, o) in enumerate(caption_reference(model, ref_tok)):
        tensors += [(f"ids_{k}", ids.float()), (f"out_{k}", o)]
    meta = cfg.to_meta()
    meta.update({"textok.model": "t5", "model": name, "seed": str(CAPTION["seed"]), "precision": "float64",
                 "regenerate": REGENERATE, "tokenizer": CAPTION_TOKENIZER, "tokenizer_sha256": sha,
                 "max_len": str(CAPTION["max_len"]), "n_captions": str(len(CAPTION["captions"])),
                 "captions": json.dumps(CAPTION["captions"], ensure_ascii=True)})
    for k, text in enumerate(CAPTION["captions"]):
        meta[f"caption_{k}"] = text.encode("utf-8").hex()
    save_safetensors(os.path.join(out_dir, name + "_ref.safetensors"), tensors, meta)
    if verbose:
        for k, (n, t) in enumerate(tensors[::2]):
            print(f"{name}: caption {k}: {[int(i) for i in t.tolist()]}")


def validate_caption(out_dir):
    problems = []
    name, cfg = CAPTION["name"], CAPTION["cfg"]
    ref_tok, sha, n_vocab = caption_tokenizer()
    if not n_vocab <= cfg.vocab < n_vocab + 128:
        problems.append(f"{name}: vocab {cfg.vocab} does not cover the tokenizer's {n_vocab} ids tightly")
    model = make_model(cfg, CAPTION["seed"], CAPTION["st"])
    sd = model.state_dict_hf()
    tensors, meta = load_safetensors(os.path.join(out_dir, name + ".safetensors"))
    st = OrderedDict(tensors)
    if meta != {"format": "pt"} or list(st.keys()) != sorted(st.keys()) or set(st) != set(sd):
        problems.append(f"{name}.safetensors: metadata {meta}, tensor order or names")
    for n, shape in encoder_state_dict_shapes(cfg):
        t = st.get(n)
        if t is None or tuple(t.shape) != shape or t.dtype != DTYPES[CAPTION["st"]] or \
                not torch.equal(t.double(), sd[n]):
            problems.append(f"{name}.safetensors: {n} missing, misshaped or unlike the seeded model")
    rt, rmeta = load_safetensors(os.path.join(out_dir, name + "_ref.safetensors"))
    ref = OrderedDict(rt)
    for k, v in cfg.to_meta().items():
        if rmeta.get(k) != v:
            problems.append(f"{name}_ref: metadata {k} = {rmeta.get(k)!r}, expected {v!r}")
    caps = CAPTION["captions"]
    if rmeta.get("textok.model") != "t5" or rmeta.get("tokenizer_sha256") != sha or \
            rmeta.get("max_len") != str(CAPTION["max_len"]) or json.loads(rmeta.get("captions", "null")) != caps or \
            any(bytes.fromhex(rmeta.get(f"caption_{k}", "")).decode("utf-8") != c for k, c in enumerate(caps)):
        problems.append(f"{name}_ref: metadata (textok.model, tokenizer_sha256, max_len, captions)")
    want = [f"{p}_{k}" for k in range(len(caps)) for p in ("ids", "out")]
    if list(ref.keys()) != want:
        problems.append(f"{name}_ref: tensors {list(ref.keys())}, expected {want}")
    max_len = CAPTION["max_len"]
    for k, (ids, n_full, o) in enumerate(caption_reference(model, ref_tok)):
        got_ids, got_out = ref.get(f"ids_{k}"), ref.get(f"out_{k}")
        if got_ids is None or got_out is None or not torch.equal(got_ids, ids.float()) or \
                got_out.dtype != torch.float32 or not torch.equal(got_out, o):
            problems.append(f"{name}_ref: caption {k} differs from a fresh run")
            continue
        L = len(ids)
        if int(ids[-1]) != 1 or int(ids.max()) >= n_vocab or (1 in ids[:-1].tolist()) or 2 in ids.tolist():
            problems.append(f"{name}: caption {k} ids {ids.tolist()}: not pieces + EOS 1 (or an UNK)")
        truncated = n_full > max_len
        if truncated != (k == len(caps) - 1) or L != min(n_full, max_len) or L < 6:
            problems.append(f"{name}: caption {k}: {L} of {n_full} tokens at max_len {max_len}; "
                            "only the last caption is to be truncated")
        if not (0.3 < float(o.std()) < 3.0 and float(o.abs().max()) < 20.0):
            problems.append(f"{name}: caption {k} output scale std {float(o.std()):.3g}")
        if gen_golden_spm.spm is not None:   # the same ids from sentencepiece itself
            if k == 0:
                sp = gen_golden_spm.spm.SentencePieceProcessor(model_proto=gen_golden_spm.train())
            sp_ids = sp.encode(caps[k])[:max_len - 1] + [1]
            if sp_ids != ids.tolist():
                problems.append(f"{name}: caption {k}: sentencepiece gives {sp_ids}, the reference {ids.tolist()}")
    print(f"{name}: files ok, reference reproduces, {len(caps)} captions, ids "
          f"{'= sentencepiece' if gen_golden_spm.spm is not None else 'not cross-checked (no sentencepiece)'}")
    return problems


def generate(out_dir, verbose=True):
    os.makedirs(out_dir, exist_ok=True)
    for name, spec in MODELS.items():
        write_model(out_dir, name, spec, verbose)
    write_caption(out_dir, verbose)


# ------------------------------------------------------------------------------------------------
# validation: the files against the spec, and the reference against independent formulations

# |rel| -> bucket for 32 buckets / max_distance 128, as textok-paper.md 3.3 tabulates it
PAPER_TABLE = [(0, 7, None), (8, 11, 8), (12, 15, 9), (16, 22, 10), (23, 31, 11), (32, 45, 12),
               (46, 63, 13), (64, 90, 14), (91, 100000, 15)]


def bucket_slow(rel, num_buckets, max_distance):
    """One bucket with scalar float32 arithmetic (numpy), written from the paper's pseudo-code."""
    f32 = np.float32
    half = num_buckets // 2
    b = half if rel > 0 else 0
    n = abs(rel)
    max_exact = half // 2
    if n < max_exact:
        return b + n
    v = f32(np.log(f32(f32(n) / f32(max_exact)))) / f32(math.log(max_distance / max_exact)) * f32(half - max_exact)
    return b + min(half - 1, max_exact + int(f32(v)))


def validate(out_dir):
    problems = []
    # 1. the bucket function: the paper's table, and a scalar float32 formulation
    rel = torch.arange(-3000, 3001)
    b = relative_position_bucket(rel, 32, 128)
    for lo, hi, want in PAPER_TABLE:
        for r in range(lo, min(hi, 3000) + 1):
            w = r if want is None else want
            if int(b[3000 - r]) != w or int(b[3000 + r]) != w + (16 if r > 0 else 0):
                problems.append(f"bucket(+-{r}) = {int(b[3000 - r])}/{int(b[3000 + r])}, the paper says {w}")
                break
    for nb, md in ((32, 128), (16, 40), (64, 256), (8, 20)):
        bb = relative_position_bucket(rel, nb, md).tolist()
        slow = [bucket_slow(r, nb, md) for r in range(-3000, 3001)]
        if bb != slow:
            problems.append(f"buckets ({nb}, {md}): vectorised and scalar float32 forms differ")

    for name, spec in MODELS.items():
        cfg = spec["cfg"]
        store = max(spec["st"], spec["bin"], key=lambda d: COARSE[d])
        want = encoder_state_dict_shapes(cfg)
        # 2. the weights files: names, shapes, dtypes, values = a fresh seeded model
        model = make_model(cfg, spec["seed"], store)
        sd = model.state_dict_hf()
        tensors, meta = load_safetensors(os.path.join(out_dir, name + ".safetensors"))
        st = OrderedDict(tensors)
        emb = "shared.weight" if cfg.gated else "encoder.embed_tokens.weight"
        names = [emb if n == "shared.weight" else n for n, _ in want]
        if meta != {"format": "pt"} or list(st.keys()) != sorted(st.keys()):
            problems.append(f"{name}.safetensors: metadata {meta} or tensor order")
        for n, (wn, shape) in zip(names, want):
            t = st.get(n)
            if t is None or tuple(t.shape) != shape or t.dtype != DTYPES[spec["st"]] or \
                    not torch.equal(t.double(), sd[wn]):
                problems.append(f"{name}.safetensors: {n} missing, misshaped or unlike the seeded model")
        extra = sorted(set(st) - set(names))
        if cfg.gated and not (extra and all(n.startswith("decoder.") or n == "lm_head.weight" for n in extra)):
            problems.append(f"{name}.safetensors: the decoder-side extras are {extra}")
        if not cfg.gated and extra:
            problems.append(f"{name}.safetensors: unexpected {extra}")
        bsd = torch.load(os.path.join(out_dir, name + ".bin"), map_location="cpu")
        if list(bsd.keys())[:2] != ["shared.weight", "encoder.embed_tokens.weight"] or \
                bsd["shared.weight"].data_ptr() != bsd["encoder.embed_tokens.weight"].data_ptr():
            problems.append(f"{name}.bin: the tied embedding is not shared.weight + encoder.embed_tokens.weight "
                            "on one storage")
        for n, shape in want:
            t = bsd.get(n)
            if t is None or t.dtype != DTYPES[spec["bin"]] or not torch.equal(t.double(), sd[n]):
                problems.append(f"{name}.bin: {n} missing or unlike the seeded model")
        # 3. the reference: stored = fresh; padding rows of real tokens = the unpadded run
        rt, rmeta = load_safetensors(os.path.join(out_dir, name + "_ref.safetensors"))
        ref = OrderedDict(rt)
        for k, v in cfg.to_meta().items():
            if rmeta.get(k) != v:
                problems.append(f"{name}_ref: metadata {k} = {rmeta.get(k)!r}, expected {v!r}")
        if rmeta.get("textok.model") != "t5":
            problems.append(f"{name}_ref: textok.model is not t5")
        fresh = reference(model, spec)
        if list(fresh.keys()) != list(ref.keys()):
            problems.append(f"{name}_ref: tensors {list(ref.keys())}, expected {list(fresh.keys())}")
        for k, v in fresh.items():
            if k in ref and (ref[k].dtype != torch.float32 or not torch.equal(ref[k], v)):
                problems.append(f"{name}_ref: {k} differs from a fresh reference run")
        ids_pad, mask_pad = ref["ids_pad"].long(), ref["mask_pad"].long()
        worst = 0.0
        with torch.no_grad():
            full = model(ids_pad, mask_pad)
            for bi, n in enumerate(spec["pad"][1]):
                alone = model(ids_pad[bi:bi + 1, :n])
                worst = max(worst, float((full[bi, :n] - alone[0]).abs().max()))
        if not worst < 1e-12:
            problems.append(f"{name}: padded rows differ from the unpadded run by {worst:.3g}")
        # the activations are O(1): a comparison at 1e-4 relative means something
        o = ref["out_pad"]
        if not (0.3 < float(o.std()) < 3.0 and float(o.abs().max()) < 20.0):
            problems.append(f"{name}: output scale std {float(o.std()):.3g} max {float(o.abs().max()):.3g}")
        # every bucket of both directions occurs in the longest padded row
        Lp = spec["pad"][0]
        pos = torch.arange(Lp)
        used = set(relative_position_bucket(pos[None, :] - pos[:, None], cfg.num_buckets, cfg.max_distance)
                   .flatten().tolist())
        # (bucket num_buckets/2 would be key - query = +0, which is bucket 0: it never occurs)
        if used != set(range(cfg.num_buckets)) - {cfg.num_buckets // 2}:
            problems.append(f"{name}: L = {Lp} uses buckets {sorted(used)}, not all {cfg.num_buckets} but one")
        print(f"{name}: files ok, reference reproduces, |padded - unpadded| {worst:.1e}, "
              f"buckets used {len(used)} (all {cfg.num_buckets} but +0)")
    problems += validate_caption(out_dir)
    total = sum(os.path.getsize(os.path.join(out_dir, f)) for f in os.listdir(out_dir))
    print(f"{out_dir}: {len(os.listdir(out_dir))} files, {total:,} bytes")
    if total > 1000000:
        problems.append(f"{out_dir}: {total} bytes, more than the 1 MB budget")
    return problems


def main():
    return golden_main(__doc__, OUT, "textok_t5_", generate, validate)


if __name__ == "__main__":
    sys.exit(main())
