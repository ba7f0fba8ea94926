#!/usr/bin/python3
"""PyTorch reference for one textok training step (the spec's "The training step (exact)").

Independent of the C sources except where the spec pins behaviour to the header on purpose: the
trainer RNG (textok.h section 2: MT19937 seeded like torch.manual_seed, 24-bit uniforms, Box-Muller
normals) is re-implemented here as TextokRNG and checked against tests/golden/rng.safetensors.

One step (step = completed steps before it, 0 for the first), float64 throughout:
 1. Tokenizer forward (tools/titok_ref.py TiTok, or tools/textok_ref.py TextTok for the text-aware
    models, which also take the step's text (B,Lt,Dt) and text_mask (B,Lt); no dropout anywhere):
    VQ  z (B*K, C) = encoder output rows b*K + k; zn = F.normalize(z) and E = F.normalize(codebook)
        when use_l2_norm (else z, codebook); ids = argmin of the expanded distance; zq = E[ids];
        commitment = beta * mean((sg[zq] - zn)^2), codebook = mean((zq - sg[zn])^2),
        quantizer = commitment + codebook; decoder input zn + sg[zq - zn] (straight-through).
    VAE mean, logvar = chunk(2) of the (B, 2C, 1, K) output; lv = clamp(logvar, -30, 20);
        z = mean + exp(lv / 2) * noise when vae_sample, noise (B,C,1,K) = B*C*K draws of
        textok_rng_fill_normal(rng, ., ., 0, 1) from the trainer RNG (continuing across steps),
        else z = mean; kl = 0.5 * sum(mean^2 + exp(lv) - 1 - lv) / B.
    none (TexTok continuous tokens) z = the encoder output; no quantizer / KL term.
    xr = decode(.) (B,3,S,S), not clamped.
 2. recon = mean((x - xr)^2) (mean |x - xr| when recon_l1); perceptual = mean_b LPIPS(xr, x)[b]
    when perceptual_weight > 0; gan_on = step >= disc_start and disc_weight > 0; gen = -mean(D(xr))
    when gan_on.  total = recon_weight*recon + perceptual_weight*perceptual
    + (quantizer_weight*quantizer | kl_weight*kl | nothing for none) + disc_weight*disc_factor*gen.
 3. Gradients of total w.r.t. the tokenizer parameters only; grad_norm = global L2 norm; when
    grad_clip > 0 every gradient is multiplied by min(1, grad_clip / (grad_norm + 1e-6))
    (torch.nn.utils.clip_grad_norm_, torch 1.13).
 4. lr = schedule(step): base * step / warmup while step < warmup, else
    end + (base - end) * 0.5 * (1 + cos(pi * (step - warmup) / max(1, total - warmup))).
    torch.optim.AdamW (betas, eps, weight_decay), two parameter groups: weight decay only for
    tensors with ndim >= 2 whose name contains none of ln, bias, latent_tokens, mask_token,
    embedding, norm, gamma, embed (1d-tokenizer create_optimizer).
 5. EMA (ema_decay > 0), as EMAModel.get_decay: d = 0 at the first update (step 0: the EMA
    becomes a copy), else min(ema_decay, (1 + step) / (10 + step));
    ema -= float32(1 - d) * (ema - p) after the update; ema starts as the initial parameters.
 6. When gan_on: logits_r = D(x), logits_f = D(sg[xr]) (discriminator before this step);
    hinge = disc_factor * 0.5 * (mean(relu(1 - logits_r)) + mean(relu(1 + logits_f)));
    lecam = lecam_weight * (relu(mean(logits_r) - ema_fake)^2 + relu(ema_real - mean(logits_f))^2)
    with the LeCAM EMAs before this step; d_total = hinge + lecam; discriminator gradients, norm and
    clip as in 3 (same grad_clip); disc lr = schedule(disc_step) with disc_lr / disc_end_lr and the
    same warmup / total; AdamW as in 4 on the discriminator names; then
    when lecam_weight > 0 (as upstream): ema_real = ema_real * lecam_decay + mean(logits_r) *
    (1 - lecam_decay), likewise ema_fake, rounded to float32.  disc_step += 1.
 7. step += 1.
State kept between steps (parameters, AdamW moments, EMA, LeCAM EMAs) is rounded to float32 after
each step, as a float32 trainer holds it: the next step starts exactly from the stored values.
"""
import math
import os
import struct
import sys
from collections import OrderedDict
from dataclasses import dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from titok_ref import TiTok, TiTokConfig  # noqa: E402
from nets_ref import KinkMonitor  # noqa: E402

# ------------------------------------------------------------------------------------------------
# textok_rng (textok.h section 2), bit for bit

MT_N, MT_M = 624, 397


class TextokRNG:
    """MT19937 seeded as torch.manual_seed (textok_rng_seed), tempered u32 draws, uniform = low 24
    bits * 2^-24 as a float32, normal = Box-Muller in double on two such uniforms (cos first, the sin
    value kept as the spare), each returned rounded to float32."""

    def __init__(self, seed):
        mt = [0] * MT_N
        mt[0] = seed & 0xffffffff
        for i in range(1, MT_N):
            mt[i] = (1812433253 * (mt[i - 1] ^ (mt[i - 1] >> 30)) + i) & 0xffffffff
        self.mt, self.index = mt, MT_N
        self.has_spare, self.spare = False, 0.0

    def _twist(self):
        mt = self.mt
        for i in range(MT_N):
            y = (mt[i] & 0x80000000) | (mt[(i + 1) % MT_N] & 0x7fffffff)
            mt[i] = mt[(i + MT_M) % MT_N] ^ (y >> 1) ^ (0x9908b0df if y & 1 else 0)
        self.index = 0

    def u32(self):
        if self.index >= MT_N:
            self._twist()
        y = self.mt[self.index]
        self.index += 1
        y ^= y >> 11
        y ^= (y << 7) & 0x9d2c5680
        y ^= (y << 15) & 0xefc60000
        y ^= y >> 18
        return y & 0xffffffff

    def uniform(self):
        # (float)(u & 0xffffff) * (1.0f / 16777216.0f): exact in float32 (24-bit integer, power of 2)
        return float(self.u32() & 0xffffff) / 16777216.0

    def normal(self):
        if self.has_spare:
            self.has_spare = False
            return f32(self.spare)
        u1 = 1.0 - self.uniform()
        u2 = self.uniform()
        rad = math.sqrt(-2.0 * math.log(u1))
        self.spare = rad * math.sin(6.283185307179586 * u2)
        self.has_spare = True
        return f32(rad * math.cos(6.283185307179586 * u2))

    def fill_normal(self, n, mean=0.0, std=1.0):
        """textok_rng_fill_normal: x[i] = mean + std * normal() in float32 arithmetic."""
        m, s = np.float32(mean), np.float32(std)
        return np.array([m + s * np.float32(self.normal()) for _ in range(n)], dtype=np.float32)

    def fill_uniform(self, n, lo=0.0, hi=1.0):
        lo32, hi32 = np.float32(lo), np.float32(hi)
        return np.array([lo32 + (hi32 - lo32) * np.float32(self.uniform()) for _ in range(n)], dtype=np.float32)


def f32(v):
    return struct.unpack("<f", struct.pack("<f", v))[0]


# ------------------------------------------------------------------------------------------------
# training configuration (the C struct textok_train_config; metadata keys "train.<field>")

@dataclass
class TrainConfig:
    batch: int = 2
    recon_l1: int = 0
    recon_weight: float = 1.0
    perceptual_weight: float = 0.0
    quantizer_weight: float = 1.0
    commitment_cost: float = 0.25
    kl_weight: float = 1e-6
    vae_sample: int = 1
    disc_weight: float = 0.0
    disc_factor: float = 1.0
    disc_start: int = 0
    lecam_weight: float = 0.0
    lecam_decay: float = 0.999
    lr: float = 1e-4
    end_lr: float = 0.0
    disc_lr: float = 1e-4
    disc_end_lr: float = 0.0
    warmup_steps: int = 0
    total_steps: int = 1000
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    grad_clip: float = 0.0
    ema_decay: float = 0.0

    def to_meta(self):
        """"train.<field>": ints in decimal, floats as Python repr (shortest round-trip double)."""
        meta = OrderedDict()
        for f in fields(self):
            v = getattr(self, f.name)
            meta["train." + f.name] = str(int(v)) if f.type in (int, "int") else repr(float(v))
        return meta

    @staticmethod
    def from_meta(meta):
        kw = {}
        for f in fields(TrainConfig):
            s = meta["train." + f.name]
            kw[f.name] = int(s) if f.type in (int, "int") else float(s)
        return TrainConfig(**kw)


NO_DECAY_SUBSTRINGS = ("ln", "bias", "latent_tokens", "mask_token", "embedding", "norm", "gamma", "embed")


def weight_decay_applies(name, p):
    """1d-tokenizer create_optimizer: decay only ndim >= 2 tensors whose name has none of the
    substrings above."""
    return p.dim() >= 2 and not any(s in name for s in NO_DECAY_SUBSTRINGS)


def lr_schedule(step, base, end, warmup, total):
    """Cosine with linear warmup (1d-tokenizer utils/lr_schedulers.py as used by LambdaLR), double."""
    if step < warmup:
        return base * float(step) / float(max(1, warmup))
    progress = float(step - warmup) / float(max(1, total - warmup))
    return end + (base - end) * 0.5 * (1.0 + math.cos(math.pi * progress))


# ------------------------------------------------------------------------------------------------
# small TiTok configs for the training goldens (the spec's tiny_* configs hold 0.3-0.7M
# parameters; a step golden stores 7 copies of them, so these keep the same structure at ~40k)

def train_titok_config(name):
    nonlegacy = dict(is_legacy=0, pixel_codebook_size=0, pixel_z_channels=0, pixel_hidden=0,
                     pixel_channel_mult=(), pixel_res_blocks=0, pixel_groups=0)
    cfgs = {
        # tiny_vq's structure (patch 8, direct pixel head), use_l2_norm on, 2 heads, 2 decoder layers
        "vq": lambda: TiTokConfig(
            image_size=32, patch_size=8, num_latent_tokens=5, token_size=8,
            enc_width=32, enc_layers=1, enc_heads=2, enc_mlp=64,
            dec_width=32, dec_layers=2, dec_heads=2, dec_mlp=64,
            quantize_mode="vq", codebook_size=32, use_l2_norm=1, **nonlegacy),
        # tiny_vae's structure: mean + logvar from the encoder
        "vae": lambda: TiTokConfig(
            image_size=32, patch_size=8, num_latent_tokens=6, token_size=4,
            enc_width=32, enc_layers=1, enc_heads=1, enc_mlp=64,
            dec_width=32, dec_layers=1, dec_heads=2, dec_mlp=64,
            quantize_mode="vae", codebook_size=0, use_l2_norm=0, **nonlegacy),
        # tiny_legacy's structure: scrambled encoder reshape, proxy-code head, pixel decoder with
        # a channel change (nin_shortcut quirk in up.1.block.0) and two res blocks per level
        "legacy": lambda: TiTokConfig(
            image_size=32, patch_size=4, num_latent_tokens=8, token_size=8,
            enc_width=32, enc_layers=1, enc_heads=1, enc_mlp=64,
            dec_width=32, dec_layers=1, dec_heads=1, dec_mlp=64,
            quantize_mode="vq", codebook_size=16, use_l2_norm=1, is_legacy=1,
            pixel_codebook_size=16, pixel_z_channels=16, pixel_hidden=8, pixel_channel_mult=(1, 1, 2),
            pixel_res_blocks=2, pixel_groups=4),
    }
    if name in cfgs:
        return cfgs[name]().check()
    return train_text_config(name)


def train_text_config(name):
    """Text-aware training cases (textok_ref.TextTokConfig): the TexTok layout with text in both
    stacks / the encoder / the decoder, and TA-TiTok (TiTok + decoder text), at ~10k parameters with
    small text (Dt 8, Lt 6) so that the stored copies stay small."""
    from textok_ref import TextTokConfig, NONLEGACY
    vit = dict(image_size=32, patch_size=4, num_latent_tokens=4, token_size=4,
               enc_width=16, enc_layers=1, enc_heads=2, enc_mlp=32,
               dec_width=16, dec_layers=1, dec_heads=2, dec_mlp=32, text_dim=8, text_len=6, **NONLEGACY)
    cfgs = {
        "textok_both": lambda: TextTokConfig(arch="textok", quantize_mode="vae", codebook_size=0, use_l2_norm=0,
                                             text_in_encoder=1, text_in_decoder=1, **vit),
        "textok_enc": lambda: TextTokConfig(arch="textok", quantize_mode="vq", codebook_size=16, use_l2_norm=1,
                                            text_in_encoder=1, text_in_decoder=0, **vit),
        "textok_dec": lambda: TextTokConfig(arch="textok", quantize_mode="none", codebook_size=0, use_l2_norm=0,
                                            text_in_encoder=0, text_in_decoder=1, **vit),
        "tatitok": lambda: TextTokConfig(arch="titok", quantize_mode="vq", codebook_size=16, use_l2_norm=0,
                                         text_in_encoder=0, text_in_decoder=1, **vit),
    }
    return cfgs[name]().check()


# ------------------------------------------------------------------------------------------------
# the step

def generator_forward(model, lpips, disc, x, tc, step, noise=None, frozen=None, mon_lpips=None, mon_disc=None,
                      text=None, text_mask=None):
    """Step 1 and 2.  Returns a dict with total (scalar, differentiable w.r.t. the tokenizer
    parameters) and the pieces.  frozen (for finite differences only): the straight-through /
    stop-gradient constants (ids, zq, zn, zq - zn) taken from a previous call, so that perturbing a
    parameter moves exactly what autograd differentiates.  text / text_mask: the text-aware models'
    input (textok_ref.TextTok), None for TiTok."""
    cfg = model.cfg
    B = x.shape[0]
    out = {}
    if text is None:
        pre = model.encoder(x, model.latent_tokens)                     # (B, Cq, 1, K)
        tkw = {}
    else:
        tkw = {"text": text, "text_mask": text_mask}
        pre = model.encode_pre(x, **tkw)
    K, C = cfg.num_latent_tokens, cfg.token_size
    zero = x.new_zeros(())
    out["quantizer"], out["kl"] = zero, zero
    if cfg.quantize_mode == "vq":
        z = pre.permute(0, 2, 3, 1).reshape(B * K, C)                    # row b*K + k
        cb = model.quantize.embedding.weight
        if cfg.use_l2_norm:
            zn, E = F.normalize(z, dim=-1), F.normalize(cb, dim=-1)
        else:
            zn, E = z, cb
        with torch.no_grad():
            d = (zn * zn).sum(1, keepdim=True) + (E * E).sum(1)[None, :] - 2.0 * (zn @ E.t())
            ids = torch.argmin(d, dim=1)
            two = torch.topk(d, 2, dim=1, largest=False).values
            out["margin"] = float(((two[:, 1] - two[:, 0]) / ((zn * zn).sum(1) + (E[ids] ** 2).sum(1))).min())
        if frozen is not None:
            ids = frozen["ids"]
        zq = E[ids]
        sg_zq = zq.detach() if frozen is None else frozen["zq"]
        sg_zn = zn.detach() if frozen is None else frozen["zn"]
        commitment = tc.commitment_cost * torch.mean((sg_zq - zn) ** 2)
        codebook = torch.mean((zq - sg_zn) ** 2)
        out["quantizer"] = commitment + codebook
        st = (zq - zn).detach() if frozen is None else frozen["st"]
        zst = zn + st
        out["frozen"] = {"ids": ids, "zq": zq.detach(), "zn": zn.detach(), "st": st}
        out["ids"] = ids.reshape(B, K)
        latents = zst.reshape(B, K, C).permute(0, 2, 1).reshape(B, C, 1, K)
    elif cfg.quantize_mode == "none":
        latents = pre
    else:
        mean, logvar = pre.chunk(2, dim=1)
        lv = logvar.clamp(-30.0, 20.0)
        out["logvar_range"] = (float(logvar.min()), float(logvar.max()))
        if tc.vae_sample:
            latents = mean + torch.exp(0.5 * lv) * noise
        else:
            latents = mean
        out["kl"] = 0.5 * torch.sum(mean ** 2 + torch.exp(lv) - 1.0 - lv) / B
    xr = model.decode(latents, **tkw)
    out["xr"] = xr
    if tc.recon_l1:
        out["recon"] = torch.mean(torch.abs(x - xr))
        out["l1_margin"] = float((x - xr).abs().min())
    else:
        out["recon"] = torch.mean((x - xr) ** 2)
    out["perceptual"] = lpips.layers(xr, x, mon_lpips, None).sum(0).mean() if tc.perceptual_weight > 0 else zero
    gan_on = step >= tc.disc_start and tc.disc_weight > 0
    out["gan_on"] = gan_on
    if gan_on:
        logits_fake = disc(xr, mon_disc)
        out["gen"] = -torch.mean(logits_fake)
        out["logits_fake"] = logits_fake.detach()
    else:
        out["gen"] = zero
    total = tc.recon_weight * out["recon"] + tc.perceptual_weight * out["perceptual"]
    if cfg.quantize_mode == "vq":
        total = total + tc.quantizer_weight * out["quantizer"]
    elif cfg.quantize_mode == "vae":
        total = total + tc.kl_weight * out["kl"]
    if gan_on:
        total = total + tc.disc_weight * tc.disc_factor * out["gen"]
    out["total"] = total
    return out


def disc_losses(disc, x, xr, tc, ema_real, ema_fake, mon=None):
    """Step 6's losses (scalar d_total differentiable w.r.t. the discriminator parameters)."""
    logits_r = disc(x, mon)
    logits_f = disc(xr.detach(), mon)
    hinge = tc.disc_factor * 0.5 * (torch.mean(F.relu(1.0 - logits_r)) + torch.mean(F.relu(1.0 + logits_f)))
    if tc.lecam_weight > 0:
        lecam = tc.lecam_weight * (F.relu(torch.mean(logits_r) - ema_fake) ** 2
                                   + F.relu(ema_real - torch.mean(logits_f)) ** 2)
    else:
        lecam = x.new_zeros(())
    return {"logits_real": logits_r, "logits_fake": logits_f, "hinge": hinge, "lecam": lecam,
            "d_total": hinge + lecam}


def global_norm(grads):
    """clip_grad_norm_'s total norm: the 2-norm of the per-tensor 2-norms."""
    return torch.norm(torch.stack([torch.norm(g, 2.0) for g in grads]), 2.0)


def make_adamw(named_params, tc):
    decay = [p for n, p in named_params if weight_decay_applies(n, p)]
    rest = [p for n, p in named_params if not weight_decay_applies(n, p)]
    return torch.optim.AdamW([{"params": rest, "weight_decay": 0.0},
                              {"params": decay, "weight_decay": tc.weight_decay}],
                             lr=tc.lr, betas=(tc.beta1, tc.beta2), eps=tc.eps)


@torch.no_grad()
def round_state_f32(params, opt):
    for p in params:
        p.copy_(p.float().double())
        st = opt.state.get(p)
        if st:
            st["exp_avg"].copy_(st["exp_avg"].float().double())
            st["exp_avg_sq"].copy_(st["exp_avg_sq"].float().double())


class Trainer:
    """The reference trainer: float64 copies of the TiTok model, the discriminator and the (frozen)
    LPIPS network, their AdamW states, the tokenizer EMA, the LeCAM EMAs and the trainer RNG."""

    def __init__(self, model, disc, lpips, tc, rng_seed, ema_real=0.0, ema_fake=0.0):
        self.model = model.double()
        self.disc = disc.double()
        self.lpips = lpips.double().eval()
        for p in self.lpips.parameters():
            p.requires_grad_(False)
        self.tc = tc
        self.rng = TextokRNG(rng_seed)
        self.step_count, self.disc_step = 0, 0
        self.ema_real, self.ema_fake = f32(ema_real), f32(ema_fake)
        self.named = list(self.model.named_parameters())
        self.dnamed = list(self.disc.named_parameters())
        self.opt = make_adamw(self.named, tc)
        self.dopt = make_adamw(self.dnamed, tc)
        self.ema = OrderedDict((n, p.detach().clone()) for n, p in self.named)

    def draw_noise(self, B):
        cfg = self.model.cfg
        if cfg.quantize_mode != "vae" or not self.tc.vae_sample:
            return None
        n = B * cfg.token_size * cfg.num_latent_tokens
        v = self.rng.fill_normal(n, 0.0, 1.0)
        return torch.from_numpy(v.astype(np.float64)).reshape(B, cfg.token_size, 1, cfg.num_latent_tokens)

    def step(self, images, text=None, text_mask=None):
        """One training step on images (B,3,S,S) float32 in [0,1] (text-aware models: with text
        (B,Lt,Dt) and text_mask (B,Lt) float32).  Returns (record, info): record holds the spec's
        per-step tensors (float64) keyed without the "s{n}." prefix; info holds margins and other
        diagnostics."""
        tc, step = self.tc, self.step_count
        x = images.double()
        t64 = None if text is None else text.double()
        m64 = None if text_mask is None else text_mask.double()
        B = x.shape[0]
        params = [p for _, p in self.named]
        dparams = [p for _, p in self.dnamed]
        mon_lp, mon_d = KinkMonitor(), KinkMonitor()
        noise = self.draw_noise(B)
        for p in dparams:
            p.requires_grad_(False)
        g = generator_forward(self.model, self.lpips, self.disc, x, tc, step, noise,
                              mon_lpips=mon_lp, mon_disc=mon_d, text=t64, text_mask=m64)
        for p in dparams:
            p.requires_grad_(True)
        grads = torch.autograd.grad(g["total"], params, allow_unused=True)
        grads = [torch.zeros_like(p) if gr is None else gr for p, gr in zip(params, grads)]
        raw_grads = [gr.clone() for gr in grads]
        for p, gr in zip(params, grads):
            # a copy each: autograd may hand the SAME tensor to two inputs of one sum (latent_tokens
            # and latent_token_positional_embedding), and clip_grad_norm_ scales p.grad in place
            p.grad = gr.clone()
        if tc.grad_clip > 0:
            gnorm = float(torch.nn.utils.clip_grad_norm_(params, tc.grad_clip))
        else:
            gnorm = float(global_norm(grads))
        lr = lr_schedule(step, tc.lr, tc.end_lr, tc.warmup_steps, tc.total_steps)
        for grp in self.opt.param_groups:
            grp["lr"] = lr
        clipped = OrderedDict((n, p.grad.detach().clone()) for n, p in self.named)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            if tc.ema_decay > 0:
                d = 0.0 if step <= 0 else min(tc.ema_decay, (1.0 + step) / (10.0 + step))
                one_minus = f32(1.0 - d)
                for n, p in self.named:
                    self.ema[n].sub_(one_minus * (self.ema[n] - p))
        rec = OrderedDict()
        rec["images"] = images
        if text is not None:
            rec["text"] = text
            rec["text_mask"] = text_mask
        if "ids" in g:
            rec["ids"] = g["ids"].double()
        rec["recon_images"] = g["xr"].detach()
        zero = torch.zeros(1, dtype=torch.float64)
        loss = {k: g[k].detach().reshape(1) for k in ("recon", "perceptual", "quantizer", "kl", "gen")}
        loss["hinge"], loss["lecam"], loss["d_total"] = zero, zero, zero
        loss["total"] = g["total"].detach().reshape(1)
        P = self.disc.cfg.pool
        logits_r = logits_f = torch.zeros(B, 1, P, P, dtype=torch.float64)
        dgrad = OrderedDict((n, torch.zeros_like(p)) for n, p in self.dnamed)
        dnorm, lr_d, info_d = 0.0, 0.0, {}
        if g["gan_on"]:
            dl = disc_losses(self.disc, x, g["xr"].detach(), tc, self.ema_real, self.ema_fake, mon_d)
            dg = torch.autograd.grad(dl["d_total"], dparams, allow_unused=True)
            dg = [torch.zeros_like(p) if gr is None else gr for p, gr in zip(dparams, dg)]
            for p, gr in zip(dparams, dg):
                p.grad = gr.clone()
            if tc.grad_clip > 0:
                dnorm = float(torch.nn.utils.clip_grad_norm_(dparams, tc.grad_clip))
            else:
                dnorm = float(global_norm(dg))
            lr_d = lr_schedule(self.disc_step, tc.disc_lr, tc.disc_end_lr, tc.warmup_steps, tc.total_steps)
            for grp in self.dopt.param_groups:
                grp["lr"] = lr_d
            dgrad = OrderedDict((n, p.grad.detach().clone()) for n, p in self.dnamed)
            self.dopt.step()
            self.dopt.zero_grad(set_to_none=True)
            mr, mf = float(dl["logits_real"].mean()), float(dl["logits_fake"].mean())
            info_d = {"lecam_args": (mr - self.ema_fake, self.ema_real - mf),
                      "hinge_args": (float((1.0 - dl["logits_real"]).abs().min()),
                                     float((1.0 + dl["logits_fake"]).abs().min())),
                      "gen_vs_disc_logits_fake": float((dl["logits_fake"] - g["logits_fake"]).abs().max())}
            if tc.lecam_weight > 0:
                dec = tc.lecam_decay
                self.ema_real = f32(self.ema_real * dec + mr * (1.0 - dec))
                self.ema_fake = f32(self.ema_fake * dec + mf * (1.0 - dec))
            self.disc_step += 1
            logits_r, logits_f = dl["logits_real"].detach(), dl["logits_fake"].detach()
            loss["hinge"], loss["lecam"] = dl["hinge"].detach().reshape(1), dl["lecam"].detach().reshape(1)
            loss["d_total"] = dl["d_total"].detach().reshape(1)
        for k in ("recon", "perceptual", "quantizer", "kl", "gen", "hinge", "lecam", "total", "d_total"):
            rec["loss." + k] = loss[k]
        rec["grad_norm"] = torch.tensor([gnorm], dtype=torch.float64)
        rec["disc_grad_norm"] = torch.tensor([dnorm], dtype=torch.float64)
        rec["lr"] = torch.tensor([lr], dtype=torch.float64)
        rec["logits_real"] = logits_r
        rec["logits_fake"] = logits_f
        # the state a float32 trainer holds from here on
        round_state_f32(params, self.opt)
        round_state_f32(dparams, self.dopt)
        with torch.no_grad():
            for n in self.ema:
                self.ema[n].copy_(self.ema[n].float().double())
        for n, gr in clipped.items():
            rec["grad." + n] = gr
        for n, p in self.named:
            rec["param." + n] = p.detach().clone()
        for n in self.ema:
            rec["ema." + n] = self.ema[n].clone()
        for n, gr in dgrad.items():
            rec["dgrad." + n] = gr
        for n, p in self.dnamed:
            rec["dparam." + n] = p.detach().clone()
        rec["lecam_ema"] = torch.tensor([self.ema_real, self.ema_fake], dtype=torch.float64)
        info = {"step": step, "gan_on": g["gan_on"], "lr": lr, "disc_lr": lr_d, "grad_norm": gnorm,
                "disc_grad_norm": dnorm, "mon_lpips": mon_lp, "mon_disc": mon_d, "noise": noise,
                "raw_grads": raw_grads, "frozen": g.get("frozen"), "x": x, "text": t64, "text_mask": m64}
        for k in ("margin", "l1_margin", "logvar_range"):
            if k in g:
                info[k] = g[k]
        if tc.grad_clip > 0:
            info["clip_coef"] = tc.grad_clip / (gnorm + 1e-6)
            if g["gan_on"]:
                info["disc_clip_coef"] = tc.grad_clip / (dnorm + 1e-6)
        info.update(info_d)
        self.step_count += 1
        return rec, info
