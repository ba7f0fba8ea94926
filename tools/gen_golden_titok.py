#!/usr/bin/python3
"""Golden TiTok models and reference outputs for textok, from the independent PyTorch reference
tools/titok_ref.py (itself written from /work/shared/reference/architecture.md, not from 1d-tokenizer).

    /usr/bin/python3 tools/gen_golden_titok.py              # write tests/golden/titok/*, then --check
    /usr/bin/python3 tools/gen_golden_titok.py --check      # only re-read and validate
    /usr/bin/python3 tools/gen_golden_titok.py --out DIR    # write elsewhere (reproducibility checks)
    /usr/bin/python3 tools/gen_golden_titok.py --full DIR   # full-size TiTok-S-128, random weights

Files per tiny model <name> (tiny_legacy, tiny_vq, tiny_vae):

    <name>.safetensors      official parameter names/shapes/order; storage dtype per model below
    <name>.bin              torch.save(model.state_dict()) (zip + pickle, keeps the _metadata
                            attribute state_dict() carries, like a real checkpoint)
    <name>_ref.safetensors  F32 reference tensors for both test images, image 0 = ..._00008636,
                            image 1 = ..._00010240 (sorted file names):
        image      (2,3,S,S)  uint8/255 (float32), area-resized 256 -> S (an exact 8x8 box mean for
                              S = 32, computed in float64 and rounded once to float32)
        tokens     (2,K)      VQ ids as exact floats (vq only), argmin of the float64 distances
        pre_quant  (2,Cq,1,K) encoder output before quantisation (vae: Cq = 2C, mean then logvar)
        latents    (2,C,1,K)  vq: the (re-normalised) codebook vectors the decoder sees; vae: mean
        decoded    (2,3,S,S)  vq: decode_tokens(tokens); vae: decode(mean); not clamped

    model        .safetensors  .bin    (every file holds the same values: weights are rounded to
    tiny_legacy  F16           F16      the coarser of the two storage types before anything runs)
    tiny_vq      BF16          F32
    tiny_vae     F32           BF16

The reference runs in float64 on those float32-representable weights and inputs; outputs are rounded
to float32 once.  The weights files carry only {"format": "pt"}, like a published file: the C
side must infer the config from names and shapes (build/convert) or be given it.  The _ref file's
__metadata__ holds the config under the textok_titok_config field names (decimal strings;
quantize_mode "vq"/"vae"; pixel_channel_mult "1,1,2", "" for non-legacy), "textok.model" =
"titok" (so textok_titok_config_from_meta reads it), plus model, seed and precision.  Weights use init_weights(model, seed); the seed is the first one
from the model's base seed whose VQ decisions all have a relative margin
(d_second - d_best) / (|z|^2 + |e_best|^2) >= 1e-3 (tiny) / 2e-4 (full size), so a float32 port
cannot flip a token.

safetensors layout written here: u64 little-endian header length N, N bytes of JSON (space-padded
to a multiple of 8), then the tensors contiguous in header (state_dict) order.

Everything is deterministic: re-running writes byte-identical files.
"""
import argparse
import copy
import json
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from titok_ref import TiTok, titok_config, init_weights, count_params  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGES = [os.path.join(ROOT, "tests", "data", f) for f in
          sorted(["ILSVRC2012_val_00008636.png", "ILSVRC2012_val_00010240.png"])]
MIN_MARGIN = 2e-4        # full-size models (256 decisions against 4096 codes: ~1e-4 is typical)
MIN_MARGIN_TINY = 1e-3   # tiny models: reseeding is free, so keep a 10x wider safety gap

# name: (base seed, safetensors dtype, .bin dtype)
TINY = {
    "tiny_legacy": (1001, "F16", "F16"),
    "tiny_vq": (2001, "BF16", "F32"),
    "tiny_vae": (3001, "F32", "BF16"),
}
FULL = {"titok_s128": ("s128", 4001)}

DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}
DTYPE_SIZE = {"F32": 4, "F16": 2, "BF16": 2}
# rank of coarseness: weights are rounded to the coarsest type any of the model's files uses
COARSE = {"F32": 0, "F16": 1, "BF16": 2}


# ------------------------------------------------------------------------------------------------
# safetensors (own writer / reader)

def tensor_bytes(t):
    t = t.detach().contiguous().cpu()
    # reinterpret as raw bytes: F16/BF16 bit patterns exactly as torch holds them
    return t.view(torch.uint8).numpy().tobytes() if t.numel() else b""


def save_safetensors(path, tensors, meta):
    """tensors: list of (name, tensor) in file order; meta: dict of str -> str."""
    header = {"__metadata__": {k: str(v) for k, v in meta.items()}}
    offset, blobs = 0, []
    for name, t in tensors:
        b = tensor_bytes(t)
        header[name] = {"dtype": DTYPE_NAMES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(b)]}
        offset += len(b)
        blobs.append(b)
    hjson = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hjson += b" " * (-len(hjson) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def load_safetensors(path):
    """-> (list of (name, tensor) in header order, metadata dict); validates the layout."""
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    assert n % 8 == 0 and 8 + n <= len(raw), f"{path}: bad header length {n}"
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {})
    data = raw[8 + n:]
    out, expect = [], 0
    for name, info in header.items():
        b, e = info["data_offsets"]
        dt = info["dtype"]
        numel = int(np.prod(info["shape"])) if info["shape"] else 1
        assert b == expect and e - b == numel * DTYPE_SIZE[dt], f"{path}: {name}: bad offsets"
        expect = e
        t = torch.frombuffer(bytearray(data[b:e]), dtype=torch.uint8).view(DTYPES[dt]).reshape(info["shape"])
        out.append((name, t))
    assert expect == len(data), f"{path}: {len(data) - expect} trailing bytes"
    return out, meta


# ------------------------------------------------------------------------------------------------
# inputs, model, reference

def load_images(size):
    """(2,3,size,size) float32: uint8/255, area-resized (exact box mean when 256 % size == 0)."""
    xs = []
    for p in IMAGES:
        a = np.asarray(Image.open(p).convert("RGB"), dtype=np.uint8)
        x = torch.from_numpy(a.copy()).permute(2, 0, 1).unsqueeze(0).float() / 255.0
        if x.shape[-1] != size or x.shape[-2] != size:
            x = F.interpolate(x.double(), size=(size, size), mode="area").float()
        xs.append(x)
    return torch.cat(xs, 0)


def make_model(cfg, seed, store):
    """float32 model with init_weights(seed), values rounded to the storage dtype `store`."""
    torch.manual_seed(0)  # nn layers draw their default init before init_weights overwrites it
    m = init_weights(TiTok(cfg), seed).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(p.to(DTYPES[store]).float())
    return m


@torch.no_grad()
def reference(model, images, precision="float64"):
    """Run the reference on float32 weights/images in `precision`; returns (dict of float32
    tensors, margins or None)."""
    cfg = model.cfg
    dt = torch.float64 if precision == "float64" else torch.float32
    m = copy.deepcopy(model).to(dt)
    x = images.to(dt)
    enc = m.encode(x)
    out = {"image": images.float()}
    if cfg.quantize_mode == "vq":
        out["tokens"] = enc["tokens"].float()
        margins = enc["margin"]
        out["pre_quant"] = enc["pre_quant"].float()
        out["latents"] = enc["latents"].float()
        out["decoded"] = m.decode_tokens(enc["tokens"]).float()
    else:
        margins = None
        out["pre_quant"] = enc["pre_quant"].float()
        out["latents"] = enc["latents"].float()
        out["decoded"] = m.decode(enc["latents"]).float()
    return out, margins


@torch.no_grad()
def vq_margin(model, images, precision="float64"):
    dt = torch.float64 if precision == "float64" else torch.float32
    m = copy.deepcopy(model).to(dt)
    return float(m.encode(images.to(dt))["margin"].min())


def choose_seed(cfg, base, store, images, precision="float64", min_margin=MIN_MARGIN):
    """First seed >= base whose VQ decisions all have margin >= min_margin (vae: base)."""
    for seed in range(base, base + 100):
        m = make_model(cfg, seed, store)
        if cfg.quantize_mode != "vq":
            return seed, m, None
        mg = vq_margin(m, images, precision)
        if mg >= min_margin:
            return seed, m, mg
        print(f"  seed {seed}: min VQ margin {mg:.3g} < {min_margin:g}, reseeding")
    raise RuntimeError("no seed with a safe VQ margin")


def file_meta(cfg, name, seed, precision):
    meta = cfg.to_meta()
    meta["textok.model"] = "titok"    # so textok_titok_config_from_meta reads the _ref file
    meta["model"] = name
    meta["seed"] = str(seed)
    meta["precision"] = precision
    return meta


def state_dict_as(model, dtype):
    """model.state_dict() (an OrderedDict carrying _metadata, as torch.save of a real checkpoint)
    with every tensor converted to `dtype`."""
    sd = model.state_dict()
    for k in list(sd.keys()):
        sd[k] = sd[k].detach().to(dtype).clone()
    return sd


def write_model(out_dir, name, cfg, seed, model, st_dtype, bin_dtype, ref, precision):
    meta = file_meta(cfg, name, seed, precision)
    sd = model.state_dict()
    # the weights file looks like a published one: official names, no textok config
    save_safetensors(os.path.join(out_dir, name + ".safetensors"),
                     [(k, v.to(DTYPES[st_dtype])) for k, v in sd.items()], {"format": "pt"})
    tmp = os.path.join(out_dir, name + ".bin.tmp")
    with open(tmp, "wb") as f:    # a file object: the zip's record prefix is "archive/", not the path
        torch.save(state_dict_as(model, DTYPES[bin_dtype]), f)
    os.replace(tmp, os.path.join(out_dir, name + ".bin"))
    order = ["image", "tokens", "pre_quant", "latents", "decoded"]
    save_safetensors(os.path.join(out_dir, name + "_ref.safetensors"),
                     [(k, ref[k].contiguous()) for k in order if k in ref], meta)


def describe(name, cfg, seed, margin, ref):
    tok = ""
    if "tokens" in ref:
        t = ref["tokens"].long()
        tok = f", {len(torch.unique(t))} distinct ids of {t.numel()}: {t.tolist()}"
    mg = f"min VQ margin {margin:.3g}" if margin is not None else "vae (no VQ decisions)"
    dec = ref["decoded"]
    print(f"{name}: seed {seed}, {mg}{tok}; decoded range [{dec.min():.3f}, {dec.max():.3f}]")


def generate_tiny(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    for name, (base, st_dtype, bin_dtype) in TINY.items():
        cfg = titok_config(name)
        images = load_images(cfg.image_size)
        store = max(st_dtype, bin_dtype, key=lambda d: COARSE[d])
        seed, model, margin = choose_seed(cfg, base, store, images, min_margin=MIN_MARGIN_TINY)
        ref, _ = reference(model, images)
        write_model(out_dir, name, cfg, seed, model, st_dtype, bin_dtype, ref, "float64")
        describe(name, cfg, seed, margin, ref)


def generate_full(out_dir, precision, threads):
    os.makedirs(out_dir, exist_ok=True)
    torch.set_num_threads(threads)
    for name, (cfg_name, base) in FULL.items():
        t0 = time.time()
        cfg = titok_config(cfg_name)
        images = load_images(cfg.image_size)
        seed, model, margin = choose_seed(cfg, base, "F32", images, precision)
        t1 = time.time()
        ref, _ = reference(model, images, precision)
        t2 = time.time()
        write_model(out_dir, name, cfg, seed, model, "F32", "F32", ref, precision)
        t3 = time.time()
        describe(name, cfg, seed, margin, ref)
        print(f"{name}: {count_params(model):,} params; seed search {t1 - t0:.1f}s, {precision} reference "
              f"{t2 - t1:.1f}s ({threads} threads), write {t3 - t2:.1f}s")
        for suf in (".safetensors", ".bin", "_ref.safetensors"):
            p = os.path.join(out_dir, name + suf)
            print(f"  {p}: {os.path.getsize(p):,} bytes")


# ------------------------------------------------------------------------------------------------
# --check

def check_model(out_dir, name, cfg, st_dtype, bin_dtype, precision="float64", min_margin=MIN_MARGIN_TINY):
    """Re-read the three files and validate them against the config and a fresh reference run."""
    problems = []
    wpath = os.path.join(out_dir, name + ".safetensors")
    tensors, wmeta = load_safetensors(wpath)
    if wmeta != {"format": "pt"}:
        problems.append(f"{wpath}: metadata {wmeta!r}, expected only format=pt (like a published file)")
    _, meta = load_safetensors(os.path.join(out_dir, name + "_ref.safetensors"))   # the config lives here
    spec = [(k, tuple(v.shape)) for k, v in TiTok(cfg).state_dict().items()]
    got = [(k, tuple(v.shape)) for k, v in tensors]
    if got != spec:
        problems.append(f"{wpath}: names/shapes/order differ from TiTok({name}).state_dict()")
    if any(v.dtype != DTYPES[st_dtype] for _, v in tensors):
        problems.append(f"{wpath}: expected every tensor {st_dtype}")
    want_meta = cfg.to_meta()
    for k, v in want_meta.items():
        if meta.get(k) != v:
            problems.append(f"{wpath}: metadata {k} = {meta.get(k)!r}, expected {v!r}")
    if meta.get("model") != name:
        problems.append(f"{wpath}: metadata model = {meta.get('model')!r}")
    seed = int(meta["seed"])

    bpath = os.path.join(out_dir, name + ".bin")
    sd = torch.load(bpath, map_location="cpu")
    if list(sd.keys()) != [k for k, _ in spec]:
        problems.append(f"{bpath}: keys differ from the official state_dict order")
    for (k, v) in tensors:
        b = sd.get(k)
        if b is None or b.dtype != DTYPES[bin_dtype] or not torch.equal(b.float(), v.float()):
            problems.append(f"{bpath}: {k} differs from {wpath} (or is not {bin_dtype})")
            break

    # The values must equal a fresh seeded model, and the stored reference must reproduce.
    store = max(st_dtype, bin_dtype, key=lambda d: COARSE[d])
    model = make_model(cfg, seed, store)
    for (k, v) in tensors:
        if not torch.equal(model.state_dict()[k], v.float()):
            problems.append(f"{wpath}: {k} differs from init_weights(seed {seed})")
            break
    rpath = os.path.join(out_dir, name + "_ref.safetensors")
    rt, rmeta = load_safetensors(rpath)
    ref = dict(rt)
    images = load_images(cfg.image_size)
    fresh, margins = reference(model, images, precision)
    names = ["image"] + (["tokens"] if cfg.quantize_mode == "vq" else []) + ["pre_quant", "latents", "decoded"]
    if list(ref.keys()) != names:
        problems.append(f"{rpath}: tensors {list(ref.keys())}, expected {names}")
    K, C = cfg.num_latent_tokens, cfg.token_size
    shapes = {"image": (2, 3, cfg.image_size, cfg.image_size), "tokens": (2, K),
              "pre_quant": (2, cfg.enc_out_channels, 1, K), "latents": (2, C, 1, K),
              "decoded": (2, 3, cfg.image_size, cfg.image_size)}
    worst = 0.0
    for k in names:
        if k not in ref:
            continue
        t = ref[k]
        if t.dtype != torch.float32 or tuple(t.shape) != shapes[k]:
            problems.append(f"{rpath}: {k} is {t.dtype} {tuple(t.shape)}, expected F32 {shapes[k]}")
            continue
        d = float((t - fresh[k]).abs().max())
        worst = max(worst, d)
        if (k == "tokens" and d != 0) or d > 1e-6:
            problems.append(f"{rpath}: {k} differs from a fresh reference run by {d:.3g}")
    if "tokens" in ref:
        t = ref["tokens"]
        if not torch.equal(t, t.round()) or t.min() < 0 or t.max() >= cfg.codebook_size:
            problems.append(f"{rpath}: tokens are not ids in [0, {cfg.codebook_size})")
    mg = float(margins.min()) if margins is not None else None
    if mg is not None and mg < min_margin:
        problems.append(f"{name}: min VQ margin {mg:.3g} < {min_margin:g}")
    status = "ok" if not problems else "FAILED"
    mgs = f", min VQ margin {mg:.3g}" if mg is not None else ""
    print(f"check {name}: {status} (max |stored - fresh| {worst:.3g}{mgs})")
    return problems


def run_check(out_dir, full_dir=None):
    problems = []
    for name, (_, st_dtype, bin_dtype) in TINY.items():
        problems += check_model(out_dir, name, titok_config(name), st_dtype, bin_dtype)
    total = sum(os.path.getsize(os.path.join(out_dir, f)) for f in os.listdir(out_dir))
    print(f"{out_dir}: {len(os.listdir(out_dir))} files, {total:,} bytes")
    if full_dir:
        for name, (cfg_name, _) in FULL.items():
            _, meta = load_safetensors(os.path.join(full_dir, name + "_ref.safetensors"))
            problems += check_model(full_dir, name, titok_config(cfg_name), "F32", "F32", meta["precision"],
                                    MIN_MARGIN)
    for p in problems:
        print("  " + p)
    return not problems


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "golden", "titok"))
    ap.add_argument("--check", action="store_true", help="only re-read and validate --out")
    ap.add_argument("--full", metavar="DIR", help="write the full-size TiTok-S-128 into DIR instead")
    ap.add_argument("--full-precision", choices=["float64", "float32"], default="float64")
    ap.add_argument("--threads", type=int, default=2, help="torch threads for --full")
    args = ap.parse_args()
    if args.full:
        if not args.check:
            generate_full(args.full, args.full_precision, args.threads)
        torch.set_num_threads(args.threads)
        ok = True
        for name, (cfg_name, _) in FULL.items():
            _, meta = load_safetensors(os.path.join(args.full, name + "_ref.safetensors"))
            probs = check_model(args.full, name, titok_config(cfg_name), "F32", "F32", meta["precision"],
                                MIN_MARGIN)
            for p in probs:
                print("  " + p)
            ok = ok and not probs
        return 0 if ok else 1
    torch.set_num_threads(1)   # tiny models: single thread, fully deterministic reductions
    if not args.check:
        generate_tiny(args.out)
    return 0 if run_check(args.out) else 1


if __name__ == "__main__":
    sys.exit(main())
