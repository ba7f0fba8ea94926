#!/usr/bin/python3
"""Golden files for textok's trainer: two consecutive training steps per case, from the float64
PyTorch reference tools/train_ref.py (the spec's exact training step; see its docstring).

    /usr/bin/python3 tools/gen_golden_train.py            # write tests/golden/train/*, then validate
    /usr/bin/python3 tools/gen_golden_train.py --check    # regenerate into a temp dir, compare bit
                                                          # for bit with tests/golden/train, validate
    /usr/bin/python3 tools/gen_golden_train.py --out DIR  # write elsewhere
    /usr/bin/python3 tools/gen_golden_train.py --fd N     # validation with N finite-difference
                                                          # entries per tensor (default 2)

Needs tests/golden/nets/lpips_tiny.safetensors (tools/gen_golden_nets.py): the perceptual loss of
every case uses those LPIPS weights (channels 4,8,8,16,16).

Cases (TiTok configs train_ref.train_titok_config: the structure of tiny_vq / tiny_vae /
tiny_legacy at ~40k parameters, so that the 7 stored copies of every parameter stay small):
  vq      non-legacy VQ, use_l2_norm 1, codebook 32: l2 recon, LPIPS, quantizer (weight 1, beta 0.25),
          GAN from step 0, LeCAM 0.1 with initial EMAs 0.3 / -0.2 (both relu terms active), warmup 1
          (so step 0 runs at lr 0: AdamW moments still advance), total 10, EMA 0.999, grad_clip 1
          (clipping active for the tokenizer and the discriminator in both steps).
  vae     VAE with vae_sample 1 (noise from the trainer RNG), kl_weight 0.01, l1 recon (weight 2),
          LPIPS, GAN off (disc_start 100), no clipping, warmup 0, total 4, EMA 0.999.
  legacy  legacy VQ (scrambled reshape, proxy-code head, MaskGIT-VQGAN pixel decoder with GroupNorm
          groups 4), l2 + LPIPS + quantizer 0.5, GAN from step 0 with disc_factor 0.5, LeCAM off,
          warmup 0, total 8, eps 1e-6, beta2 0.95, EMA cap 0.15 (active in step 1), grad_clip 3
          (active for the tokenizer, inactive for the discriminator).
Text-aware cases (train_ref.train_text_config, tools/textok_ref.py TextTok: image 32, patch 4 (P = 64),
widths 16, 1 + 1 layers, 2 heads, MLP 32, K 4, C 4, text Dt 8, Lt 6; ~10k parameters): recon l2 plus
quantizer or KL only (perceptual 0, GAN off: disc_weight 0, a one-stage discriminator hidden 4 whose
dgrad / dparam stay zero / unchanged):
  textok_both  TexTok, text in encoder and decoder, VAE with vae_sample 1 (trainer RNG), kl 0.01,
               warmup 0, total 4, wd 0.01, no clipping, EMA 0.999.
  textok_enc   TexTok, text in the encoder, VQ (V 16, use_l2_norm 1), quantizer 1, warmup 1 (step 0 at
               lr 0), total 10, wd 0.05, grad_clip 0.5 (active in both steps), EMA 0.999.
  textok_dec   TexTok, text in the decoder, quantize_mode none (recon only, weight 1.5), total 10,
               wd 0.02, no EMA.
  tatitok      TA-TiTok (arch titok: cls, mask token, conv_out; text in the decoder), VQ (V 16, no l2),
               quantizer 0.5, beta2 0.95, eps 1e-6, grad_clip 3 (active), EMA cap 0.15.
  Text (s{n}.text, s{n}.text_mask): step 0 seeded N(0,1) (text_seed), image 0 with 3 real rows and
  image 1 with 5 (row 5 is padding in both images: its text positional rows get exactly zero gradient
  and stay unchanged); step 1 swaps the batch like the images.

Files per case, tests/golden/train/<case>_*.safetensors (every tensor F32):
  <case>_model.safetensors  TiTok weights, official names in state_dict order, metadata = the
                            titok_ref.py config (to_meta) + "textok.model" = "titok"; text cases:
                            the textok_ref.py names / order and config (TextTokConfig.to_meta, with
                            arch, quantize_mode "none", text_* fields).
  <case>_disc.safetensors   NLayerDiscriminator hidden 8, stages 3, groups 4, pool 2, image 32
                            (metadata as tests/golden/nets/disc_tiny.safetensors); text cases:
                            hidden 4, stages 1, groups 4, pool 2.
  <case>_ref.safetensors    metadata: "train.<field>" for every TrainConfig field (ints decimal,
                            floats Python repr), "seed" (TiTok init seed), "disc_seed", "rng_seed"
                            (trainer RNG), "lecam_ema_real" / "lecam_ema_fake" (initial, %.9g),
                            "lpips" (the LPIPS file), "case", "precision", "regenerate", margins.
                            Tensors for n = 0, 1 (two consecutive steps, B = 2):
      s{n}.images (B,3,32,32)     step 0: the two test photos (area-resized, as tests/golden/titok);
                                  step 1: the same two, mirrored left-right, in swapped order
      s{n}.text (B,Lt,Dt)         text cases only: the step's text embeddings
      s{n}.text_mask (B,Lt)       text cases only: 1 = real, 0 = padding
      s{n}.ids (B,K)              VQ ids as exact floats (vq, legacy only)
      s{n}.recon_images (B,3,32,32)
      s{n}.loss.{recon,perceptual,quantizer,kl,gen,hinge,lecam,total,d_total} (1)
                                  recon/perceptual/quantizer/kl/gen unweighted (as named in the
                                  spec's formulas); hinge includes disc_factor and lecam includes
                                  lecam_weight (their definitions); 0 when off
      s{n}.grad_norm, s{n}.disc_grad_norm, s{n}.lr (1)   norms before clipping; lr of the tokenizer
      s{n}.logits_real, s{n}.logits_fake (B,1,2,2)      zeros when the GAN is off
      s{n}.grad.<param>           tokenizer gradients after clipping (what AdamW consumed)
      s{n}.param.<param>          after the update
      s{n}.ema.<param>            after the EMA update
      s{n}.dgrad.<disc param>     after clipping (zeros when the GAN is off)
      s{n}.dparam.<disc param>    after the update (unchanged when the GAN is off)
      s{n}.lecam_ema (2)          (ema_real, ema_fake) after the step

Seeds.  Each case starts from a base seed (TiTok init seed; the discriminator uses seed + 100) and
takes the first seed whose two steps keep every discrete decision away from its boundary, so that
a float32 trainer cannot take the other branch:
  * VQ: relative argmin margin (d_2nd - d_best) / (|z|^2 + |e_best|^2) >= 1e-3 for every token
    (as tools/gen_golden_titok.py);
  * hinge: |1 - logits_real| >= 1e-3 and |1 + logits_fake| >= 1e-3 for every logit; LeCAM: both
    relu arguments at least 1e-2 away from 0 (and positive in the vq case, as the spec asks);
  * ReLU / LeakyReLU pre-activations |v| >= 1e-5 and max-pool relative gaps >= 1e-4 in the
    LPIPS trunk of the reconstruction and in every discriminator pass (nets_ref.KinkMonitor);
  * l1 recon: min |x - xr| >= 1e-5; clipping: |grad_clip / (norm + 1e-6) - 1| >= 1e-3; the VAE
    logvar at least 1 away from the clamp bounds -30 / 20.
Text cases are also validated for masking: the loss and every gradient are unchanged (exactly) when
the padded text rows change, a row padded in every image gets zero gradient, and a real row changed
moves the encoder output / the decoded image of the stacks that take text.

Deterministic: single thread, fixed seeds; re-running writes byte-identical files.
"""
import argparse
import math
import os
import shutil
import sys
import tempfile
from collections import OrderedDict

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_golden_titok import load_images  # noqa: E402
from gen_golden_nets import compare_dirs  # noqa: E402
from titok_ref import TiTok, init_weights  # noqa: E402
import textok_ref  # noqa: E402
from nets_ref import (NLayerDiscriminator, DiscConfig, disc_init, disc_file_meta, write_weights,  # noqa: E402
                      save_safetensors, load_safetensors, lpips_from_file, disc_from_file, read_weights)
from train_ref import (Trainer, TrainConfig, train_titok_config, generator_forward, disc_losses,  # noqa: E402
                       lr_schedule, weight_decay_applies, global_norm, f32, TextokRNG)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "golden", "train")
LPIPS_FILE = os.path.join("tests", "golden", "nets", "lpips_tiny.safetensors")
REGENERATE = "/usr/bin/python3 tools/gen_golden_train.py"
DISC_CFG = DiscConfig(hidden=8, stages=3, groups=4, pool=2)
# GAN-off cases (the text ones) still carry a discriminator (its tensors stay zero / unchanged);
# a one-stage one keeps those files small
DISC_CFG_SMALL = DiscConfig(hidden=4, stages=1, groups=4, pool=2)
IMAGE = 32
DISC_SEED_OFFSET = 100

MIN_VQ_MARGIN = 1e-3
MIN_HINGE = 1e-3
MIN_LECAM = 1e-2
MIN_ACT = 1e-5
MIN_POOL = 1e-4
MIN_L1 = 1e-5
MIN_CLIP = 1e-3

CASES = OrderedDict([
    ("vq", dict(base_seed=7001, rng_seed=11, ema_real=0.3, ema_fake=-0.2, lecam_active=True,
                clip_active_step0=True,
                tc=TrainConfig(batch=2, recon_l1=0, recon_weight=1.0, perceptual_weight=0.5,
                               quantizer_weight=1.0, commitment_cost=0.25, kl_weight=0.0, vae_sample=0,
                               disc_weight=0.1, disc_factor=1.0, disc_start=0, lecam_weight=0.1,
                               lecam_decay=0.999, lr=1e-3, end_lr=1e-4, disc_lr=2e-3, disc_end_lr=2e-4,
                               warmup_steps=1, total_steps=10, beta1=0.9, beta2=0.99, eps=1e-8,
                               weight_decay=0.05, grad_clip=1.0, ema_decay=0.999))),
    ("vae", dict(base_seed=8001, rng_seed=12345, ema_real=0.0, ema_fake=0.0, lecam_active=False,
                 clip_active_step0=False,
                 tc=TrainConfig(batch=2, recon_l1=1, recon_weight=2.0, perceptual_weight=0.3,
                                quantizer_weight=0.0, commitment_cost=0.25, kl_weight=0.01, vae_sample=1,
                                disc_weight=0.1, disc_factor=1.0, disc_start=100, lecam_weight=0.0,
                                lecam_decay=0.999, lr=2e-3, end_lr=0.0, disc_lr=1e-4, disc_end_lr=0.0,
                                warmup_steps=0, total_steps=4, beta1=0.9, beta2=0.999, eps=1e-8,
                                weight_decay=0.01, grad_clip=0.0, ema_decay=0.999))),
    ("legacy", dict(base_seed=9001, rng_seed=99, ema_real=0.0, ema_fake=0.0, lecam_active=False,
                    clip_active_step0=True,
                    tc=TrainConfig(batch=2, recon_l1=0, recon_weight=1.0, perceptual_weight=0.2,
                                   quantizer_weight=0.5, commitment_cost=0.25, kl_weight=0.0, vae_sample=0,
                                   disc_weight=0.2, disc_factor=0.5, disc_start=0, lecam_weight=0.0,
                                   lecam_decay=0.999, lr=5e-4, end_lr=1e-5, disc_lr=1e-3, disc_end_lr=1e-4,
                                   warmup_steps=0, total_steps=8, beta1=0.9, beta2=0.95, eps=1e-6,
                                   weight_decay=0.02, grad_clip=3.0, ema_decay=0.15))),
    # text-aware cases (train_ref.train_text_config; text Dt 8, Lt 6): recon l2 + quantizer / KL only,
    # perceptual 0, GAN off (disc_weight 0: the discriminator tensors are stored, zero / unchanged)
    ("textok_both", dict(base_seed=10001, rng_seed=4242, ema_real=0.0, ema_fake=0.0, lecam_active=False,
                         clip_active_step0=False, disc_cfg=DISC_CFG_SMALL, text_seed=10501,
                         tc=TrainConfig(batch=2, recon_l1=0, recon_weight=1.0, perceptual_weight=0.0,
                                        quantizer_weight=0.0, commitment_cost=0.25, kl_weight=0.01, vae_sample=1,
                                        disc_weight=0.0, disc_factor=1.0, disc_start=0, lecam_weight=0.0,
                                        lecam_decay=0.999, lr=2e-3, end_lr=0.0, disc_lr=1e-4, disc_end_lr=0.0,
                                        warmup_steps=0, total_steps=4, beta1=0.9, beta2=0.999, eps=1e-8,
                                        weight_decay=0.01, grad_clip=0.0, ema_decay=0.999))),
    ("textok_enc", dict(base_seed=11001, rng_seed=5, ema_real=0.0, ema_fake=0.0, lecam_active=False,
                        clip_active_step0=True, disc_cfg=DISC_CFG_SMALL, text_seed=11501,
                        tc=TrainConfig(batch=2, recon_l1=0, recon_weight=1.0, perceptual_weight=0.0,
                                       quantizer_weight=1.0, commitment_cost=0.25, kl_weight=0.0, vae_sample=0,
                                       disc_weight=0.0, disc_factor=1.0, disc_start=0, lecam_weight=0.0,
                                       lecam_decay=0.999, lr=1e-3, end_lr=1e-4, disc_lr=1e-4, disc_end_lr=0.0,
                                       warmup_steps=1, total_steps=10, beta1=0.9, beta2=0.99, eps=1e-8,
                                       weight_decay=0.05, grad_clip=0.5, ema_decay=0.999))),
    ("textok_dec", dict(base_seed=12001, rng_seed=6, ema_real=0.0, ema_fake=0.0, lecam_active=False,
                        clip_active_step0=False, disc_cfg=DISC_CFG_SMALL, text_seed=12501,
                        tc=TrainConfig(batch=2, recon_l1=0, recon_weight=1.5, perceptual_weight=0.0,
                                       quantizer_weight=0.0, commitment_cost=0.25, kl_weight=0.0, vae_sample=0,
                                       disc_weight=0.0, disc_factor=1.0, disc_start=0, lecam_weight=0.0,
                                       lecam_decay=0.999, lr=1e-3, end_lr=0.0, disc_lr=1e-4, disc_end_lr=0.0,
                                       warmup_steps=0, total_steps=10, beta1=0.9, beta2=0.999, eps=1e-8,
                                       weight_decay=0.02, grad_clip=0.0, ema_decay=0.0))),
    ("tatitok", dict(base_seed=13001, rng_seed=7, ema_real=0.0, ema_fake=0.0, lecam_active=False,
                     clip_active_step0=False, disc_cfg=DISC_CFG_SMALL, text_seed=13501,
                     tc=TrainConfig(batch=2, recon_l1=0, recon_weight=1.0, perceptual_weight=0.0,
                                    quantizer_weight=0.5, commitment_cost=0.25, kl_weight=0.0, vae_sample=0,
                                    disc_weight=0.0, disc_factor=1.0, disc_start=0, lecam_weight=0.0,
                                    lecam_decay=0.999, lr=5e-4, end_lr=1e-5, disc_lr=1e-4, disc_end_lr=0.0,
                                    warmup_steps=0, total_steps=8, beta1=0.9, beta2=0.95, eps=1e-6,
                                    weight_decay=0.02, grad_clip=3.0, ema_decay=0.15))),
])
TEXT_REAL = (3, 5)          # real text rows of image 0 / image 1 at step 0 (the rest padding)


def is_text_case(case):
    return "text_seed" in CASES[case]


def disc_cfg(case):
    return CASES[case].get("disc_cfg", DISC_CFG)


def step_images():
    x0 = load_images(IMAGE)                                    # (2,3,32,32) float32
    x1 = x0.flip(-1).flip(0).contiguous()                      # mirrored, swapped
    return [x0, x1]


def step_text(case):
    """Per step (text (B,Lt,Dt), text_mask (B,Lt)) float32 for a text case, else (None, None):
    step 0 seeded N(0,1) text, image 0 with TEXT_REAL[0] real rows, image 1 with TEXT_REAL[1] (the
    last row is padding in both, so its positional embedding gets no gradient); step 1 swaps the
    batch like the images (each caption stays with its image)."""
    if not is_text_case(case):
        return [(None, None), (None, None)]
    cfg = train_titok_config(case)
    g = torch.Generator().manual_seed(CASES[case]["text_seed"])
    t0 = torch.randn(2, cfg.text_len, cfg.text_dim, generator=g, dtype=torch.float32)
    m0 = torch.zeros(2, cfg.text_len, dtype=torch.float32)
    for b, n in enumerate(TEXT_REAL):
        m0[b, :n] = 1.0
    return [(t0, m0), (t0.flip(0).contiguous(), m0.flip(0).contiguous())]


def make_nets(case, seed):
    cfg = train_titok_config(case)
    torch.manual_seed(0)                                       # nn default init, overwritten below
    if is_text_case(case):
        model = textok_ref.init_weights(textok_ref.TextTok(cfg), seed)
    else:
        model = init_weights(TiTok(cfg), seed)
    disc = disc_init(NLayerDiscriminator(disc_cfg(case)), seed + DISC_SEED_OFFSET)
    return model, disc


def run_case(case, seed, lpips_path):
    """Two steps from seed.  Returns (records, infos, model, disc) with model/disc the float32
    initial networks."""
    spec = CASES[case]
    model, disc = make_nets(case, seed)
    model0 = {k: v.clone() for k, v in model.state_dict().items()}
    disc0 = {k: v.clone() for k, v in disc.state_dict().items()}
    tr = Trainer(model, disc, lpips_from_file(lpips_path), spec["tc"], spec["rng_seed"],
                 spec["ema_real"], spec["ema_fake"])
    recs, infos = [], []
    for x, (t, tm) in zip(step_images(), step_text(case)):
        r, i = tr.step(x, t, tm)
        recs.append(r)
        infos.append(i)
    m, d = make_nets(case, seed)                               # fresh float32 copies for writing
    assert all(torch.equal(v, model0[k]) for k, v in m.state_dict().items())
    assert all(torch.equal(v, disc0[k]) for k, v in d.state_dict().items())
    return recs, infos, m, d


def seed_problems(case, infos):
    spec, tc = CASES[case], CASES[case]["tc"]
    bad = []
    for i in infos:
        s = i["step"]
        if "margin" in i and not i["margin"] >= MIN_VQ_MARGIN:
            bad.append(f"step {s}: VQ margin {i['margin']:.3g}")
        if "l1_margin" in i and not i["l1_margin"] >= MIN_L1:
            bad.append(f"step {s}: min |x - xr| {i['l1_margin']:.3g}")
        if "logvar_range" in i and not (i["logvar_range"][0] > -29 and i["logvar_range"][1] < 19):
            bad.append(f"step {s}: logvar range {i['logvar_range']}")
        for name in ("mon_lpips", "mon_disc"):
            mon = i[name]
            if not (mon.relu >= MIN_ACT and mon.pool >= MIN_POOL):
                bad.append(f"step {s}: {name} {mon}")
        if i["gan_on"]:
            if not min(i["hinge_args"]) >= MIN_HINGE:
                bad.append(f"step {s}: hinge arguments {i['hinge_args']}")
            if tc.lecam_weight > 0:
                a = i["lecam_args"]
                if spec["lecam_active"] and not min(a) >= MIN_LECAM:
                    bad.append(f"step {s}: LeCAM relu arguments {a} not both active")
                if not min(abs(v) for v in a) >= MIN_LECAM:
                    bad.append(f"step {s}: LeCAM relu arguments {a} near 0")
        if i["gan_on"] and i["gen_vs_disc_logits_fake"] != 0.0:
            raise AssertionError(f"{case} step {s}: D(xr) differs between the generator and discriminator passes")
        for k in ("clip_coef", "disc_clip_coef"):
            if k in i and not abs(i[k] - 1.0) >= MIN_CLIP:
                bad.append(f"step {s}: {k} {i[k]:.6g} near 1")
    if spec["clip_active_step0"] and not infos[0].get("clip_coef", 2.0) < 1.0:
        bad.append("step 0: tokenizer clipping not active")
    return bad


def ref_meta(case, seed, infos):
    spec = CASES[case]
    meta = spec["tc"].to_meta()
    meta["seed"] = str(seed)
    meta["disc_seed"] = str(seed + DISC_SEED_OFFSET)
    meta["rng_seed"] = str(spec["rng_seed"])
    meta["lecam_ema_real"] = "%.9g" % f32(spec["ema_real"])
    meta["lecam_ema_fake"] = "%.9g" % f32(spec["ema_fake"])
    meta["lpips"] = LPIPS_FILE
    meta["case"] = case
    meta["precision"] = "float64"
    meta["regenerate"] = REGENERATE
    for i in infos:
        s = i["step"]
        if "margin" in i:
            meta[f"s{s}.min_vq_margin"] = "%.3g" % i["margin"]
        act = min(i["mon_lpips"].relu, i["mon_disc"].relu)
        if math.isfinite(act):        # no LPIPS and no GAN (the text cases): nothing to monitor
            meta[f"s{s}.min_abs_preactivation"] = "%.3g" % act
            meta[f"s{s}.min_maxpool_gap"] = "%.3g" % min(i["mon_lpips"].pool, i["mon_disc"].pool)
    return meta


def generate(out_dir, lpips_path, verbose=True):
    os.makedirs(out_dir, exist_ok=True)
    for case, spec in CASES.items():
        for seed in range(spec["base_seed"], spec["base_seed"] + 300):
            recs, infos, model, disc = run_case(case, seed, lpips_path)
            bad = seed_problems(case, infos)
            if not bad:
                break
            if verbose:
                print(f"  {case} seed {seed}: {bad[0]}{' (+%d more)' % (len(bad) - 1) if len(bad) > 1 else ''}")
        else:
            raise RuntimeError(f"{case}: no seed with safe margins")
        cfg = model.cfg
        mmeta = cfg.to_meta()
        mmeta["textok.model"] = "titok"
        write_weights(os.path.join(out_dir, f"{case}_model.safetensors"), model, mmeta)
        write_weights(os.path.join(out_dir, f"{case}_disc.safetensors"), disc, disc_file_meta(disc_cfg(case), IMAGE))
        tensors = []
        for n, r in enumerate(recs):
            tensors += [(f"s{n}.{k}", v.detach().to(torch.float32).contiguous()) for k, v in r.items()]
        save_safetensors(os.path.join(out_dir, f"{case}_ref.safetensors"), tensors, ref_meta(case, seed, infos))
        if verbose:
            i0, i1 = infos
            print(f"{case}: seed {seed}; loss.total {float(recs[0]['loss.total']):.4f} -> "
                  f"{float(recs[1]['loss.total']):.4f}, grad_norm {i0['grad_norm']:.3f} / {i1['grad_norm']:.3f}, "
                  f"lr {i0['lr']:.3g} / {i1['lr']:.3g}" +
                  (f", disc_grad_norm {i0['disc_grad_norm']:.3f} / {i1['disc_grad_norm']:.3f}" if i0["gan_on"] else ""))


# ------------------------------------------------------------------------------------------------
# validation: the stored tensors against each other (a manual replay of the spec's formulas with
# numpy, independent of torch.optim / clip_grad_norm_), and the autograd gradients against finite
# differences of the loss

def rel(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def expected_names(case, model, disc):
    K = model.cfg.num_latent_tokens
    P = disc_cfg(case).pool
    shapes = OrderedDict()
    for n in range(2):
        s = f"s{n}."
        shapes[s + "images"] = (2, 3, IMAGE, IMAGE)
        if is_text_case(case):
            shapes[s + "text"] = (2, model.cfg.text_len, model.cfg.text_dim)
            shapes[s + "text_mask"] = (2, model.cfg.text_len)
        if model.cfg.quantize_mode == "vq":
            shapes[s + "ids"] = (2, K)
        shapes[s + "recon_images"] = (2, 3, IMAGE, IMAGE)
        for k in ("recon", "perceptual", "quantizer", "kl", "gen", "hinge", "lecam", "total", "d_total"):
            shapes[s + "loss." + k] = (1,)
        for k in ("grad_norm", "disc_grad_norm", "lr"):
            shapes[s + k] = (1,)
        shapes[s + "logits_real"] = (2, 1, P, P)
        shapes[s + "logits_fake"] = (2, 1, P, P)
        for pre, net in (("grad.", model), ("param.", model), ("ema.", model), ("dgrad.", disc), ("dparam.", disc)):
            for k, v in net.state_dict().items():
                shapes[s + pre + k] = tuple(v.shape)
        shapes[s + "lecam_ema"] = (2,)
    return shapes


def adamw_replay(p0, grads, lrs, tc, decay):
    """Manual AdamW (torch 1.13 formula) over consecutive steps, float64, with the moments rounded to
    float32 between steps like the reference.  Returns the parameters after each step."""
    p, m, v, out = p0.copy(), np.zeros_like(p0), np.zeros_like(p0), []
    for t, (g, lr) in enumerate(zip(grads, lrs), start=1):
        wd = tc.weight_decay if decay else 0.0
        p = p * (1.0 - lr * wd)
        m = tc.beta1 * m + (1.0 - tc.beta1) * g
        v = tc.beta2 * v + (1.0 - tc.beta2) * g * g
        denom = np.sqrt(v) / math.sqrt(1.0 - tc.beta2 ** t) + tc.eps
        p = p - (lr / (1.0 - tc.beta1 ** t)) * m / denom
        p = p.astype(np.float32).astype(np.float64)
        m = m.astype(np.float32).astype(np.float64)
        v = v.astype(np.float32).astype(np.float64)
        out.append(p)
    return out


def validate_case(case, out_dir, lpips_path, n_fd, g):
    spec, tc_spec = CASES[case], CASES[case]["tc"]
    problems = []
    rt, meta = load_safetensors(os.path.join(out_dir, f"{case}_ref.safetensors"))
    ref = OrderedDict((k, v.double().numpy()) for k, v in rt)
    tc = TrainConfig.from_meta(meta)
    if tc != tc_spec:
        problems.append(f"{case}: train.* metadata does not round-trip to the case's config")
    seed = int(meta["seed"])
    model, disc = make_nets(case, seed)
    read_weights(os.path.join(out_dir, f"{case}_model.safetensors"), model)
    dm, image_size = disc_from_file(os.path.join(out_dir, f"{case}_disc.safetensors"), torch.float32)
    _, mmeta = load_safetensors(os.path.join(out_dir, f"{case}_model.safetensors"))
    want = model.cfg.to_meta()
    want["textok.model"] = "titok"
    if mmeta != dict(want):
        problems.append(f"{case}_model: metadata {mmeta}")
    if dm.cfg != disc_cfg(case) or image_size != IMAGE:
        problems.append(f"{case}_disc: config {dm.cfg} image {image_size}")
    shapes = expected_names(case, model, disc)
    got = [(k, tuple(v.shape)) for k, v in rt]
    if got != list(shapes.items()) or any(v.dtype != torch.float32 for _, v in rt):
        problems.append(f"{case}_ref: tensor names/shapes/order/dtypes differ from the spec")
        return problems
    if not all(np.all(np.isfinite(v)) for v in ref.values()):
        problems.append(f"{case}_ref: non-finite values")
    names = [k for k, _ in model.named_parameters()]
    dnames = [k for k, _ in disc.named_parameters()]
    p0 = {k: v.double().numpy() for k, v in model.state_dict().items()}
    d0 = {k: v.double().numpy() for k, v in dm.state_dict().items()}
    worst = {}

    def note(what, err, tol):
        worst[what] = max(worst.get(what, 0.0), err)
        if not err <= tol:
            problems.append(f"{case}: {what}: relative error {err:.3g} > {tol:g}")

    ema = {k: p0[k].copy() for k in names}
    er, ef = f32(spec["ema_real"]), f32(spec["ema_fake"])
    disc_step = 0
    for n in range(2):
        s = f"s{n}."
        x, xr = ref[s + "images"], ref[s + "recon_images"]
        gan_on = n >= tc.disc_start and tc.disc_weight > 0
        # losses from the stored tensors
        recon = np.mean(np.abs(x - xr)) if tc.recon_l1 else np.mean((x - xr) ** 2)
        note("loss.recon", rel(ref[s + "loss.recon"], recon), 1e-6)
        lr_ = ref[s + "logits_real"]
        lf = ref[s + "logits_fake"]
        gen = -np.mean(lf) if gan_on else 0.0
        note("loss.gen", abs(float(ref[s + "loss.gen"][0]) - gen), 1e-6)
        total = (tc.recon_weight * recon + tc.perceptual_weight * ref[s + "loss.perceptual"][0]
                 + (tc.quantizer_weight * ref[s + "loss.quantizer"][0] if model.cfg.quantize_mode == "vq"
                    else tc.kl_weight * ref[s + "loss.kl"][0])
                 + (tc.disc_weight * tc.disc_factor * gen if gan_on else 0.0))
        note("loss.total", rel(ref[s + "loss.total"], total), 1e-6)
        if gan_on:
            hinge = tc.disc_factor * 0.5 * (np.mean(np.maximum(1 - lr_, 0)) + np.mean(np.maximum(1 + lf, 0)))
            lecam = tc.lecam_weight * (max(np.mean(lr_) - ef, 0) ** 2 + max(er - np.mean(lf), 0) ** 2)
            note("loss.hinge", rel(ref[s + "loss.hinge"], hinge), 1e-6)
            note("loss.lecam", abs(float(ref[s + "loss.lecam"][0]) - lecam), 1e-7)
            note("loss.d_total", rel(ref[s + "loss.d_total"], hinge + lecam), 1e-6)
            if tc.lecam_weight > 0:   # the anchors move only when LeCAM is on (upstream)
                er = f32(er * tc.lecam_decay + np.mean(lr_) * (1 - tc.lecam_decay))
                ef = f32(ef * tc.lecam_decay + np.mean(lf) * (1 - tc.lecam_decay))
        note("lecam_ema", rel(ref[s + "lecam_ema"], [er, ef]), 1e-6)
        # clipping: the stored (clipped) gradients have norm min(norm, clip * norm / (norm + 1e-6))
        for pre, nm, key in (("grad.", names, "grad_norm"), ("dgrad.", dnames, "disc_grad_norm")):
            if pre == "dgrad." and not gan_on:
                if any(np.any(ref[s + pre + k] != 0) for k in nm) or ref[s + key][0] != 0:
                    problems.append(f"{case}: s{n}: discriminator gradients without a GAN step")
                continue
            norm = float(ref[s + key][0])
            stored = math.sqrt(sum(float(np.sum(ref[s + pre + k] ** 2)) for k in nm))
            coef = min(1.0, tc.grad_clip / (norm + 1e-6)) if tc.grad_clip > 0 else 1.0
            note("clip / " + key, abs(stored - coef * norm) / norm, 1e-6)
        # lr schedules
        lr = lr_schedule(n, tc.lr, tc.end_lr, tc.warmup_steps, tc.total_steps)
        note("lr", abs(float(ref[s + "lr"][0]) - lr) / max(tc.lr, 1e-30), 1e-7)
    # AdamW + EMA replay, tokenizer
    lrs = [lr_schedule(n, tc.lr, tc.end_lr, tc.warmup_steps, tc.total_steps) for n in range(2)]
    for k, p in model.named_parameters():
        after = adamw_replay(p0[k], [ref[f"s{n}.grad." + k] for n in range(2)], lrs, tc,
                             weight_decay_applies(k, p))
        for n in range(2):
            scale = max(np.max(np.abs(p0[k])), 1e-3)
            note("AdamW replay (param)", float(np.max(np.abs(after[n] - ref[f"s{n}.param." + k]))) / scale, 1e-6)
            if tc.ema_decay > 0:
                d = 0.0 if n <= 0 else min(tc.ema_decay, (1.0 + n) / (10.0 + n))
                ema[k] = ema[k] - f32(1.0 - d) * (ema[k] - ref[f"s{n}.param." + k])
                ema[k] = ema[k].astype(np.float32).astype(np.float64)
                note("EMA replay", float(np.max(np.abs(ema[k] - ref[f"s{n}.ema." + k]))) / scale, 1e-6)
    # AdamW replay, discriminator
    steps = [n for n in range(2) if n >= tc.disc_start and tc.disc_weight > 0]
    dlrs = [lr_schedule(i, tc.disc_lr, tc.disc_end_lr, tc.warmup_steps, tc.total_steps) for i in range(len(steps))]
    for k, p in disc.named_parameters():
        after = adamw_replay(d0[k], [ref[f"s{n}.dgrad." + k] for n in steps], dlrs, tc, weight_decay_applies(k, p))
        scale = max(np.max(np.abs(d0[k])), 1e-3)
        for j, n in enumerate(steps):
            note("AdamW replay (disc)", float(np.max(np.abs(after[j] - ref[f"s{n}.dparam." + k]))) / scale, 1e-6)
        for n in range(2):
            if n not in steps and not np.array_equal(ref[f"s{n}.dparam." + k], d0[k] if n == 0 or not steps else
                                                     ref[f"s{n - 1}.dparam." + k]):
                problems.append(f"{case}: s{n}.dparam.{k} changed without a GAN step")

    # finite differences of the step-0 losses (float64), against a fresh autograd run
    lp = lpips_from_file(lpips_path)
    tr = Trainer(model, dm, lp, tc, int(meta["rng_seed"]), spec["ema_real"], spec["ema_fake"])
    x = torch.from_numpy(ref["s0.images"]).double()
    tkw = {}
    if is_text_case(case):
        tkw = {"text": torch.from_numpy(ref["s0.text"]).double(),
               "text_mask": torch.from_numpy(ref["s0.text_mask"]).double()}
    noise = tr.draw_noise(2)
    mdl, D = tr.model, tr.disc
    for p in D.parameters():
        p.requires_grad_(False)
    gout = generator_forward(mdl, tr.lpips, D, x, tc, 0, noise, **tkw)
    params = [p for _, p in mdl.named_parameters()]
    grads = torch.autograd.grad(gout["total"], params, allow_unused=True)
    grads = [torch.zeros_like(p) if gr is None else gr for p, gr in zip(params, grads)]
    note("fresh recon_images", rel(gout["xr"].detach().float().numpy(), ref["s0.recon_images"]), 1e-6)
    frozen = gout.get("frozen")

    def total():
        with torch.no_grad():
            return float(generator_forward(mdl, tr.lpips, D, x, tc, 0, noise, frozen=frozen, **tkw)["total"])

    fd_worst = 0.0
    floor = 1e-3 * max(float(gr.abs().max()) for gr in grads)
    for (k, p), gr in zip(mdl.named_parameters(), grads):
        idx = torch.randint(0, p.numel(), (n_fd,), generator=g).tolist()
        fd_worst = max(fd_worst, fd_rel(total, p, idx, gr, floor))
    note("FD total vs autograd (tokenizer)", fd_worst, 1e-5)
    # the stored gradients = these autograd gradients times the clip coefficient
    gnorm = float(global_norm(grads))
    coef = min(1.0, tc.grad_clip / (gnorm + 1e-6)) if tc.grad_clip > 0 else 1.0
    for (k, _), gr in zip(mdl.named_parameters(), grads):
        a = (gr * coef).float().numpy()
        note("stored grad vs fresh autograd", float(np.max(np.abs(a - ref["s0.grad." + k])))
             / max(float(np.max(np.abs(ref["s0.grad." + k]))), 1e-3 * gnorm * coef), 1e-5)
    if gan_on_at(tc, 0):
        for p in D.parameters():
            p.requires_grad_(True)
        dpar = [p for _, p in D.named_parameters()]
        xr = gout["xr"].detach()
        dl = disc_losses(D, x, xr, tc, f32(spec["ema_real"]), f32(spec["ema_fake"]))
        dg = torch.autograd.grad(dl["d_total"], dpar)
        fd_worst = 0.0
        floor = 1e-3 * max(float(gr.abs().max()) for gr in dg)
        for p, gr in zip(dpar, dg):
            idx = torch.randint(0, p.numel(), (n_fd,), generator=g).tolist()
            fd_worst = max(fd_worst, fd_rel(lambda: float(disc_losses(D, x, xr, tc, f32(spec["ema_real"]),
                                                                      f32(spec["ema_fake"]))["d_total"]),
                                            p, idx, gr, floor))
        note("FD d_total vs autograd (disc)", fd_worst, 1e-5)
    if is_text_case(case):
        problems += validate_text(case, ref, p0, mdl, tr, x, tc, noise, tkw, grads, note)
    print(f"{case}: seed {seed}, " + ", ".join(f"{k} {v:.2e}" for k, v in worst.items()))
    return problems


def validate_text(case, ref, p0, mdl, tr, x, tc, noise, tkw, grads, note):
    """Text cases: the stored text is step_text's; the text parameters get gradient from the real
    rows and none from a row padded in every image (exactly 0, and the row stays unchanged); the
    loss and every gradient are unchanged when the padded text rows change (masking); the text
    matters (changing a real row moves the loss)."""
    problems = []
    cfg = mdl.cfg
    for n, (t, tm) in enumerate(step_text(case)):
        if not (np.array_equal(ref[f"s{n}.text"], t.numpy()) and np.array_equal(ref[f"s{n}.text_mask"], tm.numpy())):
            problems.append(f"{case}: s{n}.text / text_mask differ from step_text")
    stacks = [s for s, on in (("encoder.", cfg.text_in_encoder), ("decoder.", cfg.text_in_decoder)) if on]
    for n in range(2):
        pad_all = np.all(ref[f"s{n}.text_mask"] == 0, axis=0)            # (Lt,) padded in every image
        if not pad_all.any() or pad_all.all():
            problems.append(f"{case}: s{n}: need a text row padded in every image and real rows")
        for st in stacks:
            gpos = ref[f"s{n}.grad.{st}text_guidance_positional_embedding"]
            if np.any(gpos[pad_all] != 0):
                problems.append(f"{case}: s{n}: {st}text_guidance_positional_embedding has gradient on a "
                                f"row padded in every image")
            if not np.all(np.any(gpos[~pad_all] != 0, axis=1)):
                problems.append(f"{case}: s{n}: a real text row of {st}text_guidance_positional_embedding "
                                f"has no gradient")
            for k in ("text_guidance_proj.weight", "text_guidance_proj.bias"):
                if not np.any(ref[f"s{n}.grad.{st}{k}"] != 0):
                    problems.append(f"{case}: s{n}: no gradient for {st}{k}")
            ppos = ref[f"s{n}.param.{st}text_guidance_positional_embedding"]
            if not np.array_equal(ppos[pad_all], p0[f"{st}text_guidance_positional_embedding"][pad_all]):
                problems.append(f"{case}: s{n}: a text positional row padded everywhere was updated")
    # masking: padded rows replaced by large random values change nothing (exactly, in float64)
    g = torch.Generator().manual_seed(99)
    params = [p for _, p in mdl.named_parameters()]
    t, tm = tkw["text"], tkw["text_mask"]
    t_alt = torch.where(tm[..., None] > 0.5, t, 5.0 * torch.randn(t.shape, generator=g, dtype=torch.float64))
    alt = generator_forward(mdl, tr.lpips, tr.disc, x, tc, 0, noise, text=t_alt, text_mask=tm)
    base = generator_forward(mdl, tr.lpips, tr.disc, x, tc, 0, noise, **tkw)
    ga = torch.autograd.grad(alt["total"], params, allow_unused=True)
    ga = [torch.zeros_like(p) if gr is None else gr for p, gr in zip(params, ga)]
    d = max(float((a - b).abs().max()) for a, b in zip(ga, grads))
    d = max(d, abs(float(alt["total"]) - float(base["total"])))
    note("padded text rows changed: loss / gradient change", d, 0.0)
    # the text matters: one real row changed moves the encoder output (text in the encoder) and the
    # reconstruction from fixed latents (text in the decoder)
    t2 = t.clone()
    t2[0, 0] += 1.0
    with torch.no_grad():
        pre1, pre2 = mdl.encode_pre(x, t, tm), mdl.encode_pre(x, t2, tm)
        lat = pre1[:, :cfg.token_size]
        xr1, xr2 = mdl.decode(lat, t, tm), mdl.decode(lat, t2, tm)
    for on, a, b, what in ((cfg.text_in_encoder, pre1, pre2, "the encoder output"),
                           (cfg.text_in_decoder, xr1, xr2, "the decoded image")):
        moved = float((a - b).abs().max()) / float(a.abs().max())
        if on and not moved >= 1e-3:
            problems.append(f"{case}: a real text row changed moves {what} only by {moved:.3g} (relative)")
        if not on and moved != 0.0:
            problems.append(f"{case}: {what} depends on the text although that stack takes none")
    return problems


def gan_on_at(tc, step):
    return step >= tc.disc_start and tc.disc_weight > 0


@torch.no_grad()
def fd_rel(fn, p, idxs, grad, floor, h=1e-6):
    """Central differences of fn() w.r.t. p.view(-1)[i] against grad; error relative to
    max(|g_i|, floor) (floor: 1e-3 of the largest gradient entry of the whole network, so that
    exact zeros, e.g. the hinge gradient of the last bias, do not divide roundoff by 0)."""
    flat, gflat = p.data.view(-1), grad.reshape(-1)
    worst = 0.0
    for i in idxs:
        old = float(flat[i])
        flat[i] = old + h
        fp = fn()
        flat[i] = old - h
        fm = fn()
        flat[i] = old
        fd = (fp - fm) / (2 * h)
        worst = max(worst, abs(fd - float(gflat[i])) / max(abs(float(gflat[i])), floor))
    return worst


def validate(out_dir, lpips_path, n_fd):
    g = torch.Generator().manual_seed(1234)
    problems = []
    for case in CASES:
        problems += validate_case(case, out_dir, lpips_path, n_fd, g)
    total = sum(os.path.getsize(os.path.join(out_dir, f)) for f in os.listdir(out_dir))
    print(f"{out_dir}: {len(os.listdir(out_dir))} files, {total:,} bytes")
    if total > 6500 * 1000:    # 4.6 MB for vq / vae / legacy, ~1.7 MB for the four text cases
        problems.append(f"{out_dir}: {total:,} bytes, over the 6.5 MB budget")
    return problems


def check_rng():
    """TextokRNG against tests/golden/rng.safetensors (= torch.rand's float stream)."""
    t, meta = load_safetensors(os.path.join(ROOT, "tests", "golden", "rng.safetensors"))
    t = dict(t)
    for i in range(int(meta["n_cases"])):
        dims = dict(kv.split("=") for kv in meta[f"c{i}.dims"].split(","))
        r = TextokRNG(int(dims["seed"]))
        u = np.array([r.uniform() for _ in range(int(dims["n"]))], dtype=np.float32)
        if not np.array_equal(u, t[f"c{i}.uniform"].numpy()):
            return [f"TextokRNG uniform stream differs from tests/golden/rng.safetensors (seed {dims['seed']})"]
    print("TextokRNG: uniform streams identical to tests/golden/rng.safetensors")
    return []


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=OUT)
    ap.add_argument("--check", action="store_true",
                    help="regenerate into a temp dir and compare bit for bit with --out, then validate")
    ap.add_argument("--fd", type=int, default=2, help="finite-difference entries per tensor")
    args = ap.parse_args()
    torch.set_num_threads(1)
    lpips_path = os.path.join(ROOT, LPIPS_FILE)
    problems = check_rng()
    if args.check:
        tmp = tempfile.mkdtemp(prefix="textok_train_")
        try:
            generate(tmp, lpips_path, verbose=False)
            problems += compare_dirs(tmp, args.out)
        finally:
            shutil.rmtree(tmp)
        if not problems:
            print(f"{args.out}: bit-identical to a fresh regeneration")
    else:
        generate(args.out, lpips_path)
    problems += validate(args.out, lpips_path, args.fd)
    for p in problems:
        print("  " + p)
    print("FAILED" if problems else "ok")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
