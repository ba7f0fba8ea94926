#!/usr/bin/python3
"""Seeded random generator checkpoints with the OFFICIAL parameter names and file formats, and
reference outputs on fixed inputs, for build/convert and build/generate (--forward).

    /usr/bin/python3 tools/make_generator_checkpoints.py --tiny DIR    # tests/cli_gen.sh (~2 s)
    /usr/bin/python3 tools/make_generator_checkpoints.py --full DIR    # tests/check_full.sh

The weights are random (nothing is downloaded); the names, shapes, state_dict order and
containers are those of the published files:
  DiT (facebookresearch/DiT models.py): a plain state_dict written by torch.save, as the released
    DiT-XL-2-256.pt / DiT-XL-2-512.pt; and a train.py checkpoint {"model", "ema", "opt", "args"}
    (args an argparse.Namespace; find_model and convert take "ema").
  MaskGIT (TiTok's generators, 1d-tokenizer): ImageBert (BERT names under "model.") and UViTBert,
    state_dicts written by torch.save (.bin), plus a .safetensors copy of the tiny ones.
The reference outputs come from the independent PyTorch references tools/dit_ref.py (DiT,
forward and forward_with_cfg) and tools/maskgit_ref.py (ImageBert / UViTBert forward), written
from architecture.md, not from textok.h. Each model NAME gets:
  NAME.pt / NAME.bin [/ NAME.safetensors]   the checkpoint
  NAME_in.safetensors    the fixed inputs for build/generate --forward: DiT x (B,C,H,W), t (B),
                         y (B) [, text, mask]; MaskGIT ids (B,L), classes (B) (ids and classes as
                         float values: F32 holds them exactly)
  NAME_ref.safetensors   the same inputs and the reference outputs: DiT "out" (forward) and
                         "out_cfg" (forward_with_cfg, scale CFG_SCALE); MaskGIT "logits". The
                         metadata holds the config (textok_*_config field names) and the precision.

Tiny models (official names, tiny shapes; the published head table does not cover their widths,
so build/convert needs --heads 4):
  dit_tiny        2D, 4 latent channels 8x8, patch 2, width 64, depth 2, 10 classes, learned
                  sigma (an official-style DiT: CFG on 3 channels, scale 0.18215); also
                  dit_tiny.safetensors and dit_tiny_train.pt (train.py form: "model" holds other
                  weights, "ema" these)
  dit_tiny_1d     1D tokens: 16 channels x 6 tokens (the tiny_vae tokenizer's token space),
                  width 64, depth 2, 10 classes (convert --dit-1d --heads 4)
  imagebert_tiny  ImageBert over the tiny_vq tokenizer's space: 5 tokens, codebook 32, 10 classes,
                  width 64, depth 2, MLP 256
  uvit_tiny       UViTBert, same token space, width 64, depth 2 (in, mid, out blocks)
Full size (the published shapes; ~4.5 GB of files, a few minutes on 2 cores):
  DiT-XL-2-256 (B 2, forward and forward_with_cfg), DiT-XL-2-512 (B 1, forward only, float32
  reference by default; the same weights but pos_embed, as the released pair differ only there
  in shape), imagebert_l32 (TiTok-L-32's generator), uvit_s128 (TiTok-S-128's).
"""
import argparse
import os
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from gen_golden import save_safetensors  # noqa: E402

CFG_SCALE = 4.0   # sample.py's default


def refs():
    try:
        import dit_ref
        import maskgit_ref
    except ImportError as e:
        sys.exit(f"make_generator_checkpoints: needs tools/dit_ref.py and tools/maskgit_ref.py ({e})")
    return dit_ref, maskgit_ref


def dit_cfg(dit_ref, **kw):
    c = dit_ref.DiTConfig()
    for k, v in kw.items():
        setattr(c, k, v)
    return c


def dit_inputs(cfg, B, seed):
    g = torch.Generator().manual_seed(seed)
    rows, cols = cfg.grid
    H, W = (1, cfg.input_size) if cfg.seq_1d else (cfg.input_size, cfg.input_size)
    x = torch.randn(B, cfg.in_channels, H, W, generator=g)
    t = torch.tensor([999, 0, 500, 37][:B] if B <= 4 else list(range(B)), dtype=torch.long)
    y = torch.tensor([(3 + 7 * b) % cfg.num_classes for b in range(B)], dtype=torch.long)
    return x, t, y


@torch.no_grad()
def write_dit(dit_ref, out_dir, name, cfg, seed, B, precision, formats=("pt",), train_form=False, model=None,
              with_cfg=True):
    t0 = time.time()
    if model is None:
        model = dit_ref.init_random(dit_ref.DiT(cfg), seed)
    sd = model.state_dict()
    if "pt" in formats:
        torch.save(sd, os.path.join(out_dir, name + ".pt"))
    if "safetensors" in formats:
        save_safetensors(os.path.join(out_dir, name + ".safetensors"), sd, {"format": "pt"})
    if train_form:
        # DiT train.py: {"model": model.module.state_dict(), "ema": ema.state_dict(),
        # "opt": opt.state_dict(), "args": args}; "model" differs from "ema" here so that a
        # converter that took the wrong one is caught
        other = dit_ref.init_random(dit_ref.DiT(cfg), seed + 1000)
        opt = torch.optim.AdamW(other.parameters(), lr=1e-4, weight_decay=0)
        with torch.enable_grad():
            x, t, y = dit_inputs(cfg, 1, seed)
            other(x, t, y).square().mean().backward()
        opt.step()
        args = argparse.Namespace(data_path="/data/imagenet/train", results_dir="results", model="DiT-XL/2",
                                  image_size=cfg.input_size * 8, num_classes=cfg.num_classes, epochs=1400,
                                  global_batch_size=256, global_seed=0, vae="ema", num_workers=4,
                                  log_every=100, ckpt_every=50000)
        torch.save({"model": other.state_dict(), "ema": sd, "opt": opt.state_dict(), "args": args},
                   os.path.join(out_dir, name + "_train.pt"))
    t1 = time.time()
    x, t, y = dit_inputs(cfg, B, seed + 1)
    dt = torch.float64 if precision == "float64" else torch.float32
    m = model.to(dt)
    out = m(x.to(dt), t, y)
    out_cfg = m.forward_with_cfg(x.to(dt), t, y, None, None, CFG_SCALE) if with_cfg else None
    model.float()
    meta = dict(cfg.to_meta())
    meta.update({"precision": precision, "seed": str(seed), "cfg_scale": str(CFG_SCALE), "model": name})
    ins = {"x": x, "t": t.float(), "y": y.float()}
    save_safetensors(os.path.join(out_dir, name + "_in.safetensors"), ins, {"model": name})
    refs_out = dict(ins, out=out.float())
    if with_cfg:
        refs_out["out_cfg"] = out_cfg.float()
    save_safetensors(os.path.join(out_dir, name + "_ref.safetensors"), refs_out, meta)
    print(f"{name}: DiT {cfg.hidden}x{cfg.depth}, {sum(v.numel() for v in sd.values()):,} values; write "
          f"{t1 - t0:.1f}s, {precision} reference (B {B}) {time.time() - t1:.1f}s")
    return model


@torch.no_grad()
def write_maskgit(maskgit_ref, out_dir, name, cfg, seed, B, precision, formats=("bin",)):
    t0 = time.time()
    model = maskgit_ref.init_weights(maskgit_ref.make_model(cfg), seed)
    sd = model.state_dict()
    if "bin" in formats:
        torch.save(sd, os.path.join(out_dir, name + ".bin"))
    if "safetensors" in formats:
        save_safetensors(os.path.join(out_dir, name + ".safetensors"), sd, {"format": "pt"})
    t1 = time.time()
    g = torch.Generator().manual_seed(seed + 1)
    ids = torch.randint(0, cfg.codebook_size, (B, cfg.seq_len), generator=g)
    masked = torch.rand(B, cfg.seq_len, generator=g) < 0.5          # about half masked
    ids[masked] = cfg.codebook_size
    classes = torch.tensor([(5 + 11 * b) % cfg.num_classes for b in range(B)], dtype=torch.long)
    if B > 1:
        classes[-1] = cfg.num_classes                                # the null class
    dt = torch.float64 if precision == "float64" else torch.float32
    logits = maskgit_ref.forward(model.to(dt), ids, classes)
    meta = dict(cfg.to_meta())
    meta.update({"precision": precision, "seed": str(seed), "model": name})
    ins = {"ids": ids.float(), "classes": classes.float()}
    save_safetensors(os.path.join(out_dir, name + "_in.safetensors"), ins, {"model": name})
    save_safetensors(os.path.join(out_dir, name + "_ref.safetensors"), dict(ins, logits=logits.float()), meta)
    print(f"{name}: MaskGIT {cfg.arch} {cfg.hidden}x{cfg.depth}, {sum(v.numel() for v in sd.values()):,} values; "
          f"write {t1 - t0:.1f}s, {precision} reference (B {B}) {time.time() - t1:.1f}s")


def tiny(out_dir):
    dit_ref, maskgit_ref = refs()
    torch.set_num_threads(1)
    os.makedirs(out_dir, exist_ok=True)
    c2 = dit_cfg(dit_ref, in_channels=4, input_size=8, seq_1d=0, patch_size=2, hidden=64, depth=2, heads=4,
                 mlp_hidden=256, num_classes=10, learn_sigma=1, text_dim=0, text_len=0, guide_channels=3,
                 latent_scale=0.18215)
    write_dit(dit_ref, out_dir, "dit_tiny", c2, 11, 2, "float64", formats=("pt", "safetensors"), train_form=True)
    c1 = dit_cfg(dit_ref, in_channels=16, input_size=6, seq_1d=1, patch_size=1, hidden=64, depth=2, heads=4,
                 mlp_hidden=256, num_classes=10, learn_sigma=1, text_dim=0, text_len=0, guide_channels=16,
                 latent_scale=1.0)
    write_dit(dit_ref, out_dir, "dit_tiny_1d", c1, 12, 2, "float64")
    for arch, name in (("bert", "imagebert_tiny"), ("uvit", "uvit_tiny")):
        c = maskgit_ref.MaskGITConfig(arch=arch, codebook_size=32, num_classes=10, seq_len=5, hidden=64, depth=2,
                                      heads=4, mlp_hidden=256)
        write_maskgit(maskgit_ref, out_dir, name, c, 13 if arch == "bert" else 14, 2, "float64",
                      formats=("bin", "safetensors"))


def full(out_dir, precision, threads, full512_f64=False):
    dit_ref, maskgit_ref = refs()
    torch.set_num_threads(threads)
    os.makedirs(out_dir, exist_ok=True)
    c256 = dit_ref.dit_preset("XL/2", 256)
    model = write_dit(dit_ref, out_dir, "DiT-XL-2-256", c256, 21, 2, precision)
    # the 512 file: the same weights, the 64x64 grid's pos_embed (its own sin-cos)
    c512 = dit_ref.dit_preset("XL/2", 512)
    m512 = dit_ref.DiT(c512)
    sd = model.state_dict()
    sd["pos_embed"] = m512.state_dict()["pos_embed"]
    m512.load_state_dict(sd)
    del model, sd
    # float64 at 1024 tokens takes minutes on 2 cores: the forward only (CFG is checked at 256), in
    # float32 unless --precision float64 --full-512-float64
    write_dit(dit_ref, out_dir, "DiT-XL-2-512", c512, 21, 1, precision if full512_f64 else "float32", model=m512,
              with_cfg=False)
    del m512
    for arch, name, L, D, depth, M in (("bert", "imagebert_l32", 32, 768, 24, 3072),
                                       ("uvit", "uvit_s128", 128, 1024, 20, 4096)):
        c = maskgit_ref.MaskGITConfig(arch=arch, codebook_size=4096, num_classes=1000, seq_len=L, hidden=D,
                                      depth=depth, heads=16, mlp_hidden=M)
        write_maskgit(maskgit_ref, out_dir, name, c, 31 if arch == "bert" else 32, 2, precision)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tiny", metavar="DIR", help="the tiny official-named models (CLI tests)")
    ap.add_argument("--full", metavar="DIR", help="the full-size DiT-XL/2 (256, 512), ImageBert-L32, UViT-S128")
    ap.add_argument("--precision", choices=["float64", "float32"], default="float64",
                    help="the reference's arithmetic (default float64)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads for --full")
    ap.add_argument("--full-512-float64", action="store_true",
                    help="the DiT-XL-2-512 reference in --precision too (default float32: ~3 min less)")
    a = ap.parse_args()
    if not a.tiny and not a.full:
        ap.error("give --tiny DIR or --full DIR")
    if a.tiny:
        tiny(a.tiny)
    if a.full:
        full(a.full, a.precision, a.threads, a.full_512_float64)
    return 0


if __name__ == "__main__":
    sys.exit(main())
