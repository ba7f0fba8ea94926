#!/usr/bin/python3
"""Time one PyTorch training step of TiTok (tools/titok_ref.py) on CPU, for build/bench --train.

    /usr/bin/python3 tools/bench_train_torch.py [--threads 2] [--device cpu|cuda] --row NAME:BATCH:WARMUP:STEPS:MODEL:TRAIN ...

--device cuda (build/bench_cuda --train --cuda --torch): everything on the GPU, strict FP32 (TF32 off),
each timed step ended by torch.cuda.synchronize().

MODEL: key=value,... with the textok_titok_config field names (= TiTokConfig's); TRAIN: key=value,...
with the textok_train_config field names.  build/bench passes every value, so the two sides train the
same model with the same settings.  The step is textok_trainer_step's (tools/train_ref.py's, in float32
and without its diagnostics): forward in train mode; VQ with F.normalize (use_l2_norm), argmin, the
commitment + codebook loss and the straight-through estimator, or the VAE posterior sample
(torch.randn noise) and KL / B; mean squared error; when perceptual_weight / disc_weight are given,
+ LPIPS and the hinge GAN's generator term (tools/nets_ref.py, random weights); backward; clip_grad_norm_;
torch.optim.AdamW with the official weight-decay rule (two parameter groups); the weight EMA with the
(1+n)/(10+n) warm-up; with the GAN, the discriminator step (hinge + LeCAM, its own clip and AdamW).
Random (seeded) weights and images; torch.set_num_threads(--threads).

Output, one row per line (comments start with '#'):

    torch <name> <batch> step <ms_per_step>      (median of STEPS timed steps after WARMUP)
"""
import argparse
import math
import os
import statistics
import sys
import time
from dataclasses import fields

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from titok_ref import TiTok, TiTokConfig, init_weights, count_params  # noqa: E402
from nets_ref import LPIPS, lpips_init, DiscConfig, NLayerDiscriminator, disc_init  # noqa: E402

DEVICE = torch.device("cpu")

# utils/train_utils.py create_optimizer: no weight decay for 1-D tensors and these names
NO_DECAY = ("ln", "bias", "latent_tokens", "mask_token", "embedding", "norm", "gamma", "embed")


def parse_kv(s):
    out = {}
    for item in s.split(","):
        if item:
            k, v = item.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def make_config(kv):
    known = {f.name for f in fields(TiTokConfig)}
    cfg = {}
    for k, v in kv.items():
        if k not in known:
            raise SystemExit(f"bench_train_torch.py: unknown model field '{k}'")
        if k == "quantize_mode":
            cfg[k] = v
        elif k == "pixel_channel_mult":
            cfg[k] = tuple(int(x) for x in v.split("/") if x)
        else:
            cfg[k] = int(v)
    if not cfg.get("is_legacy", 1):
        cfg.setdefault("pixel_channel_mult", ())
    return TiTokConfig(**cfg).check()


def adamw(named, tc, lr):
    decays = [p.dim() >= 2 and not any(s in n for s in NO_DECAY) for n, p in named]
    return torch.optim.AdamW([{"params": [p for (_, p), d in zip(named, decays) if not d], "weight_decay": 0.0},
                              {"params": [p for (_, p), d in zip(named, decays) if d],
                               "weight_decay": tc["weight_decay"]}],
                             lr=lr, betas=(tc["beta1"], tc["beta2"]), eps=tc["eps"])


class Step:
    def __init__(self, model, tc):
        self.m, self.tc, self.n = model, tc, 0
        named = list(model.named_parameters())
        self.params = [p for _, p in named]
        self.opt = adamw(named, tc, tc["lr"])
        self.ema = [p.detach().clone() for p in self.params] if tc["ema_decay"] > 0 else None
        self.lpips = self.disc = None
        if tc.get("perceptual_weight", 0) > 0 or tc.get("disc_weight", 0) > 0:
            if tc.get("perceptual_weight", 0) > 0:
                ch = [int(c) for c in tc["lpips_channels"].split("/")]
                self.lpips = lpips_init(LPIPS(ch), seed=4).float().eval().to(DEVICE)
                for p in self.lpips.parameters():
                    p.requires_grad_(False)
            if tc.get("disc_weight", 0) > 0:
                dc = DiscConfig(hidden=int(tc["disc_hidden"]), stages=int(tc["disc_stages"]),
                                groups=int(tc["disc_groups"]), pool=int(tc["disc_pool"]))
                self.disc = disc_init(NLayerDiscriminator(dc), seed=5).float().to(DEVICE)
                dnamed = list(self.disc.named_parameters())
                self.dparams = [p for _, p in dnamed]
                self.dopt = adamw(dnamed, tc, tc["disc_lr"])
                self.ema_real = self.ema_fake = 0.0

    def loss(self, x):
        m, cfg, tc = self.m, self.m.cfg, self.tc
        B, K, C = x.shape[0], cfg.num_latent_tokens, cfg.token_size
        pre = m.encoder(x, m.latent_tokens)                                 # (B, Cq, 1, K)
        if cfg.quantize_mode == "vq":
            z = pre.permute(0, 2, 3, 1).reshape(B * K, C)
            cb = m.quantize.embedding.weight
            zn, E = (F.normalize(z, dim=-1), F.normalize(cb, dim=-1)) if cfg.use_l2_norm else (z, cb)
            with torch.no_grad():
                d = (zn * zn).sum(1, keepdim=True) + (E * E).sum(1)[None, :] - 2.0 * (zn @ E.t())
                ids = torch.argmin(d, dim=1)
            zq = E[ids]
            q = tc["commitment_cost"] * torch.mean((zq.detach() - zn) ** 2) + torch.mean((zq - zn.detach()) ** 2)
            zst = zn + (zq - zn).detach()                                   # straight-through
            lat = zst.reshape(B, K, C).permute(0, 2, 1).reshape(B, C, 1, K)
            total = tc["quantizer_weight"] * q
        else:
            mean, logvar = pre.chunk(2, dim=1)
            lv = logvar.clamp(-30.0, 20.0)
            lat = mean + torch.exp(0.5 * lv) * torch.randn_like(mean) if tc["vae_sample"] else mean
            total = tc["kl_weight"] * 0.5 * torch.sum(mean ** 2 + torch.exp(lv) - 1.0 - lv) / B
        xr = m.decode(lat)
        total = total + tc["recon_weight"] * torch.mean((x - xr) ** 2)
        if self.lpips is not None:
            total = total + tc["perceptual_weight"] * self.lpips(xr, x).mean()
        if self.disc is not None:                                           # disc_start 0: always on
            for p in self.dparams:
                p.requires_grad_(False)
            total = total - tc["disc_weight"] * tc["disc_factor"] * torch.mean(self.disc(xr))
            for p in self.dparams:
                p.requires_grad_(True)
        return total, xr

    def disc_step(self, x, xr):
        tc = self.tc
        self.dopt.zero_grad(set_to_none=True)
        lr_, lf_ = self.disc(x), self.disc(xr.detach())
        mr, mf = torch.mean(lr_), torch.mean(lf_)
        loss = tc["disc_factor"] * 0.5 * (torch.mean(F.relu(1.0 - lr_)) + torch.mean(F.relu(1.0 + lf_)))
        if tc["lecam_weight"] > 0:
            loss = loss + tc["lecam_weight"] * (F.relu(mr - self.ema_fake) ** 2 + F.relu(self.ema_real - mf) ** 2)
        loss.backward()
        if tc["grad_clip"] > 0:
            torch.nn.utils.clip_grad_norm_(self.dparams, tc["grad_clip"])
        self.dopt.step()
        if tc["lecam_weight"] > 0:
            self.ema_real = self.ema_real * tc["lecam_decay"] + float(mr) * (1.0 - tc["lecam_decay"])
            self.ema_fake = self.ema_fake * tc["lecam_decay"] + float(mf) * (1.0 - tc["lecam_decay"])

    def __call__(self, x):
        tc = self.tc
        self.opt.zero_grad(set_to_none=True)
        loss, xr = self.loss(x)
        loss.backward()
        if tc["grad_clip"] > 0:
            torch.nn.utils.clip_grad_norm_(self.params, tc["grad_clip"])
        self.opt.step()
        if self.ema is not None:
            with torch.no_grad():
                d = 0.0 if self.n == 0 else min(tc["ema_decay"], (1.0 + self.n) / (10.0 + self.n))
                for e, p in zip(self.ema, self.params):
                    e.sub_((1.0 - d) * (e - p))                             # EMAModel.step
        if self.disc is not None:
            self.disc_step(x, xr)
        self.n += 1
        return loss


def bench_row(spec):
    """runs one row, prints its line and returns the median ms per step"""
    name, batch, warmup, steps, model_kv, train_kv = spec.split(":", 5)
    B, warmup, steps = int(batch), int(warmup), int(steps)
    cfg = make_config(parse_kv(model_kv))
    tc = {k: (v if k == "lpips_channels" else float(v)) for k, v in parse_kv(train_kv).items()}
    tc.setdefault("recon_weight", 1.0)
    torch.manual_seed(3)
    t0 = time.perf_counter()
    model = init_weights(TiTok(cfg), seed=1).train().to(DEVICE)
    step = Step(model, tc)
    print(f"# {name}: {count_params(model):,} params, built in {time.perf_counter() - t0:.1f}s", flush=True)
    x = torch.rand(B, 3, cfg.image_size, cfg.image_size, generator=torch.Generator().manual_seed(2)).to(DEVICE)
    ts, loss = [], float("nan")
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        loss = step(x)
        if DEVICE.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            ts.append(time.perf_counter() - t0)
    if not math.isfinite(float(loss)):
        print(f"# {name}: the loss is not finite ({float(loss)})", flush=True)
    ms = 1000.0 * statistics.median(ts)
    print(f"torch {name} {B} step {ms:.2f}", flush=True)
    return ms


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--row", action="append", required=True, help="NAME:BATCH:WARMUP:STEPS:MODEL:TRAIN")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = ap.parse_args()
    global DEVICE
    DEVICE = torch.device(args.device)
    if args.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        print(f"# device {torch.cuda.get_device_name(0)}, strict FP32 (TF32 off)", flush=True)
    torch.set_num_threads(args.threads)
    print(f"# torch {torch.__version__}, {args.threads} threads, float32; "
          f"columns: torch <name> <batch> step <ms_per_step>", flush=True)
    for spec in args.row:
        bench_row(spec)
    return 0


if __name__ == "__main__":
    sys.exit(main())
