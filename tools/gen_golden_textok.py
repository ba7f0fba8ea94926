#!/usr/bin/python3
"""Golden text-aware tokenizers (TexTok, TA-TiTok) and reference outputs for textok, from the
independent PyTorch reference tools/textok_ref.py (written from the issue-5 spec and
/work/shared/reference/architecture.md, not from 1d-tokenizer or any TexTok code).

    /usr/bin/python3 tools/gen_golden_textok.py             # write tests/golden/textok/*, then validate
    /usr/bin/python3 tools/gen_golden_textok.py --check     # regenerate into a temp dir, compare bit
                                                            # for bit with tests/golden/textok, validate
    /usr/bin/python3 tools/gen_golden_textok.py --out DIR   # write elsewhere

Cases (configs: textok_ref.textok_config; the TexTok ones share image 32, patch 8 (P = 16), widths
32, 2 + 2 layers, 2 heads, MLP 64, K = 8, token_size 8, text_dim 24, text_len 7):

    name          arch    text in        quantize               weights .safetensors / .bin
    textok_both   textok  enc + dec      vae (C 8, Cq 16)       F32
    textok_enc    textok  encoder        vq (V 32, l2 norm)     BF16
    textok_dec    textok  decoder        none (Cq = C = 8)      F16
    textok_none   textok  -              vae (text_dim 0)       F32
    tatitok_tiny  titok   decoder        vq (V 32, no l2)       F32 / F16 (.bin)
                  (TA-TiTok, official names: non-legacy TiTok + decoder text guidance;
                   enc 32 x 1 layer, dec 32 x 2 layers, K 6, C 8, text_dim 768, text_len 77)

Files per case <name>:

    <name>.safetensors      parameter names/shapes/order of textok_ref.TextTok (spec section 4; TA-TiTok:
                            the official TATiTok state_dict), metadata only {"format": "pt"}
    <name>.bin              tatitok_tiny only: torch.save(model.state_dict()) (zip + pickle), for
                            build / convert
    <name>_ref.safetensors  F32 tensors, image 0 = ..._00008636, image 1 = ..._00010240:
        image      (2,3,32,32)   as tests/golden/titok (uint8/255, exact 8x8 box mean)
        text       (2,Lt,Dt)     seeded N(0,1) text embeddings (absent without text)
        text_mask  (2,Lt)        1 = real, 0 = padding: TexTok image 0 has 4 real rows then 3 padded,
                                 image 1 all 7 real; tatitok_tiny all 77 real (absent without text)
        tokens     (2,K)         VQ ids as exact floats (vq only), argmin of the float64 distances
        pre_quant  (2,Cq,1,K)    encoder output (vae: mean then logvar; none: = latents)
        latents    (2,C,1,K)     vq: the codebook vectors the decoder sees; vae: mean; none: pre_quant
        decoded    (2,3,32,32)   decode_tokens(tokens) / decode(latents) with the same text; not clamped
        text_alt   (2,Lt,Dt)     TexTok cases with text only: text with image 0's padded rows replaced
                                 by other random values.  Masking invariant: encode + decode of image 0
                                 with text_alt gives the stored tokens / pre_quant / latents / decoded
                                 (bit for bit in the float64 reference; a port within its tolerance).

The reference runs in float64 on float32-representable weights (rounded to the coarser storage type
first) and inputs; outputs are rounded to float32 once.  The _ref metadata holds the config under the
textok_titok_config field names (textok_ref.TextTokConfig.to_meta: the TiTok keys, quantize_mode
"vq" / "vae" / "none", then arch "titok" / "textok", text_dim, text_len, text_in_encoder,
text_in_decoder, text_optional "0"), "textok.model" = "titok", plus model, seed, text_seed, precision.

Weights: textok_ref.init_weights(model, seed) (N(0, 1/fan_in) matrices: O(1) activations in tiny
models); the seed is the first one from the case's base seed whose VQ decisions all have a relative
margin (d_second - d_best) / (|z|^2 + |e_best|^2) >= 1e-3 (as tools/gen_golden_titok.py) and whose
two images get ids that differ in at least 3 of the K positions (so the ids depend on the image).

--check also validates: the files against a fresh model and reference run; the masking invariant;
that the text matters (a real text row changed moves pre_quant when the encoder takes text and the
decoded image at fixed latents when the decoder does); and that textok_ref with arch "titok" and no
text is titok_ref.TiTok (state_dict and outputs bit for bit on tiny_vq), and tatitok_tiny's
state_dict is the non-legacy TiTok one plus the three TA-TiTok tensors at the documented places.

Deterministic (single thread, fixed seeds): re-running writes byte-identical files.
"""
import copy
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_golden_titok import (load_images, save_safetensors, load_safetensors, state_dict_as,  # noqa: E402
                              DTYPES, COARSE)
from gen_golden_nets import golden_main  # noqa: E402
from textok_ref import TextTok, TextTokConfig, textok_config, init_weights, count_params  # noqa: E402
import titok_ref  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "golden", "textok")
MIN_MARGIN = 1e-3          # as gen_golden_titok.py's tiny models
MIN_ID_DIFF = 3            # VQ: the two images' ids differ in >= 3 positions (the image matters)
TEXT_SEED_OFFSET = 500     # text embeddings: their own generator, independent of the weight seed
N_REAL0 = 4                # TexTok image 0: real text rows, the rest padding
MAX_BYTES = 2 * 1000 * 1000
MIN_TEXT_EFFECT = 1e-3     # relative change a changed real text row must cause

# name: (base seed, .safetensors dtype, .bin dtype or None)
CASES = {
    "textok_both": (21001, "F32", None),
    "textok_enc": (22001, "BF16", None),
    "textok_dec": (23001, "F16", None),
    "textok_none": (24001, "F32", None),
    "tatitok_tiny": (25001, "F32", "F16"),
}


def has_text(cfg):
    return bool(cfg.text_in_encoder or cfg.text_in_decoder)


def make_text(cfg, seed):
    """-> (text (2,Lt,Dt), mask (2,Lt), text_alt (2,Lt,Dt) or None), float32, or Nones."""
    if not has_text(cfg):
        return None, None, None
    Lt, Dt = cfg.text_len, cfg.text_dim
    g = torch.Generator().manual_seed(seed)
    text = torch.randn(2, Lt, Dt, generator=g, dtype=torch.float32)
    mask = torch.ones(2, Lt, dtype=torch.float32)
    alt = None
    if cfg.arch == "textok":
        mask[0, N_REAL0:] = 0.0
        alt = text.clone()
        alt[0, N_REAL0:] = 3.0 * torch.randn(Lt - N_REAL0, Dt, generator=g, dtype=torch.float32)
    return text, mask, alt


def make_model(cfg, seed, store):
    torch.manual_seed(0)  # nn layers draw their default init before init_weights overwrites it
    m = init_weights(TextTok(cfg), seed).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(p.to(DTYPES[store]).float())
    return m


@torch.no_grad()
def run(m, x, text, mask):
    """float64 model m: encode + decode; dict of float64 tensors (+ margin)."""
    cfg = m.cfg
    enc = m.encode(x, text, mask)
    out = {"pre_quant": enc["pre_quant"], "latents": enc["latents"]}
    if cfg.quantize_mode == "vq":
        out["tokens"] = enc["tokens"]
        out["margin"] = enc["margin"]
        out["decoded"] = m.decode_tokens(enc["tokens"], text, mask)
    else:
        out["decoded"] = m.decode(enc["latents"], text, mask)
    return out


def as64(t):
    return None if t is None else t.double()


@torch.no_grad()
def reference(model, images, text, mask):
    """-> (dict of float32 tensors in file order, min margin or None)."""
    m = copy.deepcopy(model).double()
    r = run(m, images.double(), as64(text), as64(mask))
    out = {"image": images.float()}
    if text is not None:
        out["text"], out["text_mask"] = text.float(), mask.float()
    if "tokens" in r:
        out["tokens"] = r["tokens"].float()
    for k in ("pre_quant", "latents", "decoded"):
        out[k] = r[k].float()
    return out, (float(r["margin"].min()) if "margin" in r else None)


def choose_seed(cfg, cfg_name, base, store, images, text, mask, verbose):
    for seed in range(base, base + 100):
        m = make_model(cfg, seed, store)
        if cfg.quantize_mode != "vq":
            return seed, m, None
        r, mg = reference(m, images, text, mask)
        nd = int((r["tokens"][0] != r["tokens"][1]).sum())
        if mg >= MIN_MARGIN and nd >= MIN_ID_DIFF:
            return seed, m, mg
        if verbose:
            print(f"  {cfg_name} seed {seed}: min VQ margin {mg:.3g} (need {MIN_MARGIN:g}), ids of the two "
                  f"images differ in {nd} positions (need {MIN_ID_DIFF}), reseeding")
    raise RuntimeError("no seed with a safe VQ margin")


def file_meta(cfg, name, seed, text_seed):
    meta = cfg.to_meta()
    meta["textok.model"] = "titok"
    meta["model"] = name
    meta["seed"] = str(seed)
    if has_text(cfg):
        meta["text_seed"] = str(text_seed)
    meta["precision"] = "float64"
    return meta


REF_ORDER = ["image", "text", "text_mask", "tokens", "pre_quant", "latents", "decoded", "text_alt"]


def generate(out_dir, verbose=True):
    os.makedirs(out_dir, exist_ok=True)
    for name, (base, st_dtype, bin_dtype) in CASES.items():
        cfg = textok_config(name)
        images = load_images(cfg.image_size)
        text_seed = base + TEXT_SEED_OFFSET
        text, mask, alt = make_text(cfg, text_seed)
        store = max([st_dtype] + ([bin_dtype] if bin_dtype else []), key=lambda d: COARSE[d])
        seed, model, margin = choose_seed(cfg, name, base, store, images, text, mask, verbose)
        ref, _ = reference(model, images, text, mask)
        if alt is not None:
            ref["text_alt"] = alt
        save_safetensors(os.path.join(out_dir, name + ".safetensors"),
                         [(k, v.to(DTYPES[st_dtype])) for k, v in model.state_dict().items()], {"format": "pt"})
        if bin_dtype:
            tmp = os.path.join(out_dir, name + ".bin.tmp")
            with open(tmp, "wb") as f:   # a file object: the zip's record prefix is "archive/"
                torch.save(state_dict_as(model, DTYPES[bin_dtype]), f)
            os.replace(tmp, os.path.join(out_dir, name + ".bin"))
        save_safetensors(os.path.join(out_dir, name + "_ref.safetensors"),
                         [(k, ref[k].contiguous()) for k in REF_ORDER if k in ref],
                         file_meta(cfg, name, seed, text_seed))
        if verbose:
            mg = f"min VQ margin {margin:.3g}, ids {ref['tokens'].long().tolist()}" if margin is not None else \
                f"{cfg.quantize_mode} (no VQ decisions)"
            dec = ref["decoded"]
            print(f"{name}: seed {seed}, {count_params(model):,} params, {mg}; decoded range "
                  f"[{dec.min():.3f}, {dec.max():.3f}]")


# ------------------------------------------------------------------------------------------------
# validation

def expected_shapes(cfg):
    K, C, S = cfg.num_latent_tokens, cfg.token_size, cfg.image_size
    sh = {"image": (2, 3, S, S)}
    if has_text(cfg):
        sh["text"] = (2, cfg.text_len, cfg.text_dim)
        sh["text_mask"] = (2, cfg.text_len)
    if cfg.quantize_mode == "vq":
        sh["tokens"] = (2, K)
    sh["pre_quant"] = (2, cfg.enc_out_channels, 1, K)
    sh["latents"] = (2, C, 1, K)
    sh["decoded"] = (2, 3, S, S)
    if has_text(cfg) and cfg.arch == "textok":
        sh["text_alt"] = (2, cfg.text_len, cfg.text_dim)
    return sh


def spec_order(cfg):
    """The spec section 4 state_dict names, built from the TiTok / block layout independently of
    textok_ref's module tree."""
    def stack(pre, n):
        names = [pre + "ln_pre.weight", pre + "ln_pre.bias"]
        for i in range(n):
            b = f"{pre}transformer.{i}."
            names += [b + s for s in ("ln_1.weight", "ln_1.bias", "attn.in_proj_weight", "attn.in_proj_bias",
                                      "attn.out_proj.weight", "attn.out_proj.bias", "ln_2.weight", "ln_2.bias",
                                      "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias")]
        return names + [pre + "ln_post.weight", pre + "ln_post.bias"]
    E, D = cfg.text_in_encoder, cfg.text_in_decoder
    tp, tproj = "text_guidance_positional_embedding", ["text_guidance_proj.weight", "text_guidance_proj.bias"]
    n = ["latent_tokens"]
    if cfg.arch == "titok":
        n += ["encoder.class_embedding"]
    n += ["encoder.positional_embedding", "encoder.latent_token_positional_embedding"]
    n += ["encoder." + tp] if E else []
    n += ["encoder.patch_embed.weight", "encoder.patch_embed.bias"] + stack("encoder.", cfg.enc_layers)
    n += ["encoder.conv_out.weight", "encoder.conv_out.bias"]
    n += ["encoder." + t for t in tproj] if E else []
    if cfg.arch == "titok":
        n += ["decoder.class_embedding", "decoder.positional_embedding", "decoder.mask_token"]
    else:
        n += ["decoder.positional_embedding"]
    n += ["decoder.latent_token_positional_embedding"]
    n += ["decoder." + tp] if D else []
    n += ["decoder.decoder_embed.weight", "decoder.decoder_embed.bias"] + stack("decoder.", cfg.dec_layers)
    n += ["decoder.ffn.0.weight", "decoder.ffn.0.bias"]
    if cfg.arch == "titok":
        n += ["decoder.conv_out.weight", "decoder.conv_out.bias"]
    n += ["decoder." + t for t in tproj] if D else []
    if cfg.quantize_mode == "vq":
        n += ["quantize.embedding.weight"]
    return n


def spec_shape(cfg, name):
    De, Dd, K, C, P, p = (cfg.enc_width, cfg.dec_width, cfg.num_latent_tokens, cfg.token_size,
                          cfg.num_patches, cfg.patch_size)
    Pp = P + 1 if cfg.arch == "titok" else P
    fixed = {
        "latent_tokens": (K, De), "encoder.class_embedding": (1, De), "encoder.positional_embedding": (Pp, De),
        "encoder.latent_token_positional_embedding": (K, De),
        "encoder.text_guidance_positional_embedding": (cfg.text_len, De),
        "encoder.patch_embed.weight": (De, 3, p, p), "encoder.patch_embed.bias": (De,),
        "encoder.conv_out.weight": (cfg.enc_out_channels, De, 1, 1), "encoder.conv_out.bias": (cfg.enc_out_channels,),
        "encoder.text_guidance_proj.weight": (De, cfg.text_dim), "encoder.text_guidance_proj.bias": (De,),
        "decoder.class_embedding": (1, Dd), "decoder.positional_embedding": (Pp, Dd), "decoder.mask_token": (1, 1, Dd),
        "decoder.latent_token_positional_embedding": (K, Dd),
        "decoder.text_guidance_positional_embedding": (cfg.text_len, Dd),
        "decoder.decoder_embed.weight": (Dd, C), "decoder.decoder_embed.bias": (Dd,),
        "decoder.ffn.0.weight": (p * p * 3, Dd, 1, 1), "decoder.ffn.0.bias": (p * p * 3,),
        "decoder.conv_out.weight": (3, 3, 3, 3), "decoder.conv_out.bias": (3,),
        "decoder.text_guidance_proj.weight": (Dd, cfg.text_dim), "decoder.text_guidance_proj.bias": (Dd,),
        "quantize.embedding.weight": (cfg.codebook_size, C),
    }
    if name in fixed:
        return fixed[name]
    side, rest = name.split(".", 1)
    D, mlp = (De, cfg.enc_mlp) if side == "encoder" else (Dd, cfg.dec_mlp)
    leaf = rest.split(".", 2)[-1] if rest.startswith("transformer.") else rest
    return {"attn.in_proj_weight": (3 * D, D), "attn.in_proj_bias": (3 * D,), "attn.out_proj.weight": (D, D),
            "mlp.c_fc.weight": (mlp, D), "mlp.c_fc.bias": (mlp,), "mlp.c_proj.weight": (D, mlp)}.get(leaf, (D,))


def maxdiff(a, b):
    return float((a.double() - b.double()).abs().max())


@torch.no_grad()
def check_case(out_dir, name):
    problems = []
    base, st_dtype, bin_dtype = CASES[name]
    cfg = textok_config(name)
    wpath = os.path.join(out_dir, name + ".safetensors")
    rpath = os.path.join(out_dir, name + "_ref.safetensors")
    tensors, wmeta = load_safetensors(wpath)
    if wmeta != {"format": "pt"}:
        problems.append(f"{wpath}: metadata {wmeta!r}, expected only format=pt")
    names = spec_order(cfg)
    got = [(k, tuple(v.shape)) for k, v in tensors]
    want = [(k, spec_shape(cfg, k)) for k in names]
    if got != want:
        problems.append(f"{wpath}: names/shapes/order differ from the spec section 4 layout")
    model_sd = [(k, tuple(v.shape)) for k, v in TextTok(cfg).state_dict().items()]
    if model_sd != want:
        problems.append(f"{name}: textok_ref.TextTok state_dict differs from the spec section 4 layout")
    if any(v.dtype != DTYPES[st_dtype] for _, v in tensors):
        problems.append(f"{wpath}: expected every tensor {st_dtype}")
    rt, meta = load_safetensors(rpath)
    ref = dict(rt)
    want_meta = file_meta(cfg, name, int(meta.get("seed", -1)), base + TEXT_SEED_OFFSET)
    if meta != dict(want_meta):
        problems.append(f"{rpath}: metadata {meta} differs from {dict(want_meta)}")
    seed = int(meta["seed"])
    if bin_dtype:
        bpath = os.path.join(out_dir, name + ".bin")
        sd = torch.load(bpath, map_location="cpu")
        if list(sd.keys()) != names:
            problems.append(f"{bpath}: keys differ from the state_dict order")
        for k, v in tensors:
            b = sd.get(k)
            if b is None or b.dtype != DTYPES[bin_dtype] or not torch.equal(b.float(), v.float()):
                problems.append(f"{bpath}: {k} differs from {wpath} (or is not {bin_dtype})")
                break
    store = max([st_dtype] + ([bin_dtype] if bin_dtype else []), key=lambda d: COARSE[d])
    model = make_model(cfg, seed, store)
    for k, v in tensors:
        if not torch.equal(model.state_dict()[k], v.float()):
            problems.append(f"{wpath}: {k} differs from init_weights(seed {seed})")
            break
    images = load_images(cfg.image_size)
    text, mask, alt = make_text(cfg, base + TEXT_SEED_OFFSET)
    fresh, mg = reference(model, images, text, mask)
    shapes = expected_shapes(cfg)
    if list(ref.keys()) != list(shapes.keys()):
        problems.append(f"{rpath}: tensors {list(ref.keys())}, expected {list(shapes.keys())}")
    if alt is not None:
        fresh["text_alt"] = alt
    worst = 0.0
    for k, shp in shapes.items():
        t = ref.get(k)
        if t is None:
            continue
        if t.dtype != torch.float32 or tuple(t.shape) != shp:
            problems.append(f"{rpath}: {k} is {t.dtype} {tuple(t.shape)}, expected F32 {shp}")
            continue
        if not torch.isfinite(t).all():
            problems.append(f"{rpath}: {k} has non-finite values")
        d = maxdiff(t, fresh[k])
        worst = max(worst, d)
        if not d == 0.0:
            problems.append(f"{rpath}: {k} differs from a fresh reference run by {d:.3g}")
    if "tokens" in ref:
        t = ref["tokens"]
        if not torch.equal(t, t.round()) or t.min() < 0 or t.max() >= cfg.codebook_size:
            problems.append(f"{rpath}: tokens are not ids in [0, {cfg.codebook_size})")
    if mg is not None and not mg >= MIN_MARGIN:
        problems.append(f"{name}: min VQ margin {mg:.3g} < {MIN_MARGIN:g}")
    if "tokens" in ref and not int((ref["tokens"][0] != ref["tokens"][1]).sum()) >= MIN_ID_DIFF:
        problems.append(f"{name}: the two images' ids differ in fewer than {MIN_ID_DIFF} positions")
    if "text_mask" in ref:
        tm = ref["text_mask"]
        if not torch.equal(tm, (tm > 0.5).float()) or tm[1].min() != 1.0 or tm[0, 0] != 1.0:
            problems.append(f"{rpath}: text_mask is not 0/1 with image 1 all real")
        if cfg.arch == "textok" and float(tm[0].sum()) != N_REAL0:
            problems.append(f"{rpath}: image 0 should have {N_REAL0} real text rows")

    extra = []
    m64 = copy.deepcopy(model).double()
    x64 = images.double()
    if alt is not None:
        # masking invariant: image 0's outputs do not depend on its padded text rows ...
        r_alt = run(m64, x64, as64(alt), as64(mask))
        base_r = run(m64, x64, as64(text), as64(mask))
        d_alt = max(maxdiff(r_alt[k][0], base_r[k][0]) for k in ("pre_quant", "latents", "decoded"))
        if "tokens" in base_r and not torch.equal(r_alt["tokens"][0], base_r["tokens"][0]):
            d_alt = float("inf")
        extra.append(f"padded rows changed: image 0 moves by {d_alt:.3g}")
        if not d_alt == 0.0:
            problems.append(f"{name}: image 0 output changes by {d_alt:.3g} when only padded text rows change")
        # ... and the padded rows did differ
        if not maxdiff(alt[0, N_REAL0:], text[0, N_REAL0:]) > 0.1:
            problems.append(f"{name}: text_alt does not change the padded rows")
        # negative control: without the mask the same change does move image 0 (so the invariant
        # tests the masking, not an insensitive model)
        ones = torch.ones_like(mask).double()
        u_alt, u_base = run(m64, x64, as64(alt), ones), run(m64, x64, as64(text), ones)
        d_un = maxdiff(u_alt["decoded"][0], u_base["decoded"][0]) / max(float(u_base["decoded"].abs().max()), 1e-30)
        extra.append(f"unmasked control {d_un:.3g}")
        if not d_un >= MIN_TEXT_EFFECT:
            problems.append(f"{name}: without the mask, changing the padded rows moves decoded only by {d_un:.3g}")
    if text is not None:
        # the text matters: change one real row of image 0 (row 0) and of image 1 (last row)
        t2 = text.clone()
        t2[0, 0] += 1.0
        t2[1, -1] += 1.0
        base_r = run(m64, x64, as64(text), as64(mask))
        enc2 = m64.encode(x64, as64(t2), as64(mask))
        d_enc = maxdiff(enc2["pre_quant"], base_r["pre_quant"]) / max(float(base_r["pre_quant"].abs().max()), 1e-30)
        dec2 = m64.decode(base_r["latents"], as64(t2), as64(mask))
        dec1 = m64.decode(base_r["latents"], as64(text), as64(mask))
        d_dec = maxdiff(dec2, dec1) / max(float(dec1.abs().max()), 1e-30)
        extra.append(f"real row changed: pre_quant {d_enc:.3g}, decoded at fixed latents {d_dec:.3g}")
        for on, d, what in ((cfg.text_in_encoder, d_enc, "pre_quant"), (cfg.text_in_decoder, d_dec, "decoded")):
            if on and not d >= MIN_TEXT_EFFECT:
                problems.append(f"{name}: changing a real text row moves {what} only by {d:.3g}")
            if not on and not d == 0.0:
                problems.append(f"{name}: {what} depends on the text although that stack takes none")
    mgs = f", min VQ margin {mg:.3g}" if mg is not None else ""
    print(f"check {name}: {'ok' if not problems else 'FAILED'} (max |stored - fresh| {worst:.3g}{mgs}"
          + "".join("; " + e for e in extra) + ")")
    return problems


@torch.no_grad()
def check_titok_equivalence():
    """textok_ref with arch titok and no text = titok_ref.TiTok (non-legacy tiny_vq and tiny_vae):
    same state_dict names/shapes/order, same outputs bit for bit."""
    problems = []
    for tname in ("tiny_vq", "tiny_vae"):
        tcfg = titok_ref.titok_config(tname)
        kw = {f: getattr(tcfg, f) for f in tcfg.__dataclass_fields__}
        cfg = TextTokConfig(**kw, arch="titok").check()
        torch.manual_seed(0)
        a = titok_ref.init_weights(titok_ref.TiTok(tcfg), 77).double()
        b = TextTok(cfg).double()
        if [(k, v.shape) for k, v in a.state_dict().items()] != [(k, v.shape) for k, v in b.state_dict().items()]:
            problems.append(f"{tname}: TextTok(arch titok) state_dict differs from titok_ref.TiTok")
            continue
        b.load_state_dict(a.state_dict())
        x = load_images(cfg.image_size).double()
        ea, eb = a.encode(x), b.encode(x)
        da, db = a.decode(ea["latents"]), b.decode(eb["latents"])
        same = torch.equal(ea["pre_quant"], eb["pre_quant"]) and torch.equal(da, db)
        if "tokens" in ea:
            same = same and torch.equal(ea["tokens"], eb["tokens"])
        if not same:
            problems.append(f"{tname}: TextTok(arch titok, no text) outputs differ from titok_ref.TiTok")
    # TA-TiTok = the non-legacy TiTok state_dict plus the three text tensors at the documented places
    cfg = textok_config("tatitok_tiny")
    kw = {f: getattr(cfg, f) for f in titok_ref.TiTokConfig.__dataclass_fields__}
    plain = list(titok_ref.TiTok(titok_ref.TiTokConfig(**kw)).state_dict().keys())
    i = plain.index("decoder.latent_token_positional_embedding") + 1
    j = plain.index("decoder.conv_out.bias") + 1
    want = plain[:i] + ["decoder.text_guidance_positional_embedding"] + plain[i:j] + \
        ["decoder.text_guidance_proj.weight", "decoder.text_guidance_proj.bias"] + plain[j:]
    if list(TextTok(cfg).state_dict().keys()) != want:
        problems.append("tatitok_tiny: state_dict is not TiTok's plus the TA-TiTok text tensors")
    print(f"textok_ref vs titok_ref (tiny_vq, tiny_vae, TA-TiTok names): {'ok' if not problems else 'FAILED'}")
    return problems


def validate(out_dir):
    problems = check_titok_equivalence()
    for name in CASES:
        problems += check_case(out_dir, name)
    files = sorted(os.listdir(out_dir))
    want = sorted([n + s for n in CASES for s in (".safetensors", "_ref.safetensors")] +
                  [n + ".bin" for n, c in CASES.items() if c[2]])
    if files != want:
        problems.append(f"{out_dir}: files {files}, expected {want}")
    total = sum(os.path.getsize(os.path.join(out_dir, f)) for f in files)
    print(f"{out_dir}: {len(files)} files, {total:,} bytes")
    if total > MAX_BYTES:
        problems.append(f"{out_dir}: {total:,} bytes, over the {MAX_BYTES:,} budget")
    return problems


def main():
    return golden_main(__doc__, OUT, "textok_textok_", generate, validate)


if __name__ == "__main__":
    sys.exit(main())
