#!/usr/bin/python3
"""Independent PyTorch reference for textok's DiT generators and their Gaussian diffusion, plain
torch.nn + numpy, torch 1.13.

Written from /work/shared/reference/architecture.md section 7 (DiT, its diffusion, CFG) and section 8
(pitfalls 14-16, 20), textok-paper.md 1.4 (DiT over 1D tokens, patch size 1) and the issue-6 spec
(DiT-T2I: PixArt-alpha style cross-attention); it does not import or translate textok.h, and it
does not import facebookresearch/DiT.

Model (DiT.forward(x, t, y [, text, mask])):
  x_embedder.proj   Conv2d(C -> D, kernel p, stride p) on (B, C, S, S), tokens row-major (i*(S/p)+j);
                    1D tokens (seq_1d): x is (B, C, 1, N), p = 1, so the same conv is a per-token
                    Linear (weight (D, C, 1, 1)).
  pos_embed         fixed sin-cos, (1, T, D), float64 computed then cast to float32:
                    2D: per token (row i, col j), q = D/4, w_k = 10000^(-k/q):
                        [sin(j w), cos(j w), sin(i w), cos(i w)]   (column first: meshgrid(w, h))
                    1D: per position n, q = D/2, w_k = 10000^(-k/q): [sin(n w), cos(n w)]
  t_embedder        freq_k = exp(-ln(10000) k / 128) (float32), args = t * freq (float32),
                    emb = [cos(args), sin(args)] (256), then mlp.0 Linear(256, D), SiLU, mlp.2 Linear(D, D).
  y_embedder        embedding_table (num_classes + 1, D): the last row is the null class (num_classes > 0).
  text (DiT-T2I)    y_embedder.y_proj.fc1 Linear(text_dim, D) -> GELU(tanh) -> fc2 Linear(D, D): context (B, L, D);
                    key padding mask (B, L) 1 = real; the null caption = every key masked.
  c                 t_emb (+ y_emb when num_classes > 0)
  block i           (shift1, scale1, gate1, shift2, scale2, gate2) = chunk6(adaLN_modulation.1(SiLU(c)))
                    x += gate1 * attn(LN(x) * (1 + scale1) + shift1)       LN: no affine, eps 1e-6
                    x += cross_attn(x, ctx, mask)                          (T2I only, no norm, no gate)
                    x += gate2 * mlp(LN(x) * (1 + scale2) + shift2)        mlp: fc1, GELU(tanh), fc2
                    attn: qkv Linear(D, 3D) rows [q; k; v], heads of head_dim = D/H, scale head_dim^-0.5,
                    proj Linear(D, D). cross_attn: q_linear (D, D) on x, kv_linear (2D, D) on ctx rows
                    [k; v], proj (D, D); a query whose keys are all masked gets a zero attention output
                    (so the null caption adds just cross_attn.proj.bias).
  final_layer       (shift, scale) = chunk2(adaLN_modulation.1(SiLU(c))); LN (no affine, 1e-6), modulate,
                    linear (p*p*Cout); unpatchify: out[c, i*p+a, j*p+b] = tok[i*w+j, (a*p+b)*Cout + c].
                    1D: (B, N, Cout) -> (B, Cout, 1, N).
  forward_with_cfg  the cond pass (x, y, text) and the null pass (x, null class, all-masked caption) on
                    the same x; out[:, :g] = u + s (c - u) for g = guide_channels, the rest is the cond
                    pass's own (official DiT-XL/2: g = 3, "only the first 3 of 4 channels").

State-dict order (official DiT names; T2I additions in PixArt-alpha style):
  pos_embed, x_embedder.proj.{weight,bias}, t_embedder.mlp.{0,2}.{weight,bias},
  [y_embedder.embedding_table.weight], [y_embedder.y_proj.fc1.{weight,bias}, y_embedder.y_proj.fc2.{weight,bias}],
  blocks.{i}.attn.qkv.{weight,bias}, blocks.{i}.attn.proj.{weight,bias},
  [blocks.{i}.cross_attn.q_linear.{weight,bias}, .kv_linear.{weight,bias}, .proj.{weight,bias}],
  blocks.{i}.mlp.fc1.{weight,bias}, blocks.{i}.mlp.fc2.{weight,bias}, blocks.{i}.adaLN_modulation.1.{weight,bias},
  final_layer.linear.{weight,bias}, final_layer.adaLN_modulation.1.{weight,bias}.
  pos_embed is a Parameter with requires_grad False (not trained).

Diffusion (GaussianDiffusion / SpacedDiffusion semantics, numpy float64 tables):
  betas = linspace(scale 1e-4, scale 0.02, T) with scale = 1000 / T; alphas_cumprod = cumprod(1 - betas);
  respacing (also "": every step kept, the betas still recomputed as below, as SpacedDiffusion):
  "N[,M...]" sections with an accumulated float stride and Python round (half to even),
  "ddimN" the first integer stride i with len(range(0, T, i)) == N; spaced betas
  1 - acp[tau_i] / acp[tau_{i-1}]; the model sees the original tau_i.
  Every gathered coefficient is cast to float32 (as _extract_into_tensor(...).float()); the
  arithmetic here then runs in the dtype of the inputs (float64 for the goldens).
  loss: mse = mean_flat((eps - eps^)^2); vb (learned sigma) = KL(q(x_{t-1}|x_t,x0) || p) / ln 2 with
  eps^ detached, or at t = 0 the discretised Gaussian NLL / ln 2; loss = mean_b(mse + vb).
  learned range: log var = f log beta_t + (1 - f) log_var_clipped_t, f = (v + 1) / 2;
  without learned sigma: FIXED_LARGE, log var = log(append(post_var[1], betas[1:]))[t].
  p_sample (no clipping): x0^ = sqrt(1/acp) x_t - sqrt(1/acp - 1) eps^, mu = coef1 x0^ + coef2 x_t,
  x_prev = mu + [i != 0] exp(lv / 2) z.  ddim (eta): eps' from x0^, sigma = eta sqrt((1-abp)/(1-ab))
  sqrt(1 - ab/abp), x_prev = x0^ sqrt(abp) + sqrt(1 - abp - sigma^2) eps' + [i != 0] sigma z.
"""
import math
from dataclasses import dataclass, fields

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


# ----- configuration (metadata keys = textok_dit_config field names) -----------------------------
@dataclass
class DiTConfig:
    in_channels: int = 4
    input_size: int = 32
    seq_1d: int = 0
    patch_size: int = 2
    hidden: int = 1152
    depth: int = 28
    heads: int = 16
    mlp_hidden: int = 4608
    num_classes: int = 1000
    learn_sigma: int = 1
    text_dim: int = 0
    text_len: int = 0
    guide_channels: int = 3
    latent_scale: float = 0.18215

    @property
    def out_channels(self):
        return 2 * self.in_channels if self.learn_sigma else self.in_channels

    @property
    def grid(self):
        """(rows, cols) of DiT tokens."""
        if self.seq_1d:
            return 1, self.input_size
        return self.input_size // self.patch_size, self.input_size // self.patch_size

    def to_meta(self):
        m = {"textok.model": "dit"}
        for f in fields(self):
            v = getattr(self, f.name)
            m[f.name] = ("%.9g" % v) if isinstance(v, float) else str(int(v))
        return m


SIZES = {"XL": (28, 1152, 16), "L": (24, 1024, 16), "B": (12, 768, 12), "S": (12, 384, 6)}


def dit_preset(name, image_size=256):
    """"XL/2" ... "S/8" over SD-VAE latents (architecture.md 7.1)."""
    size, p = name.split("/")
    depth, D, H = SIZES[size]
    return DiTConfig(in_channels=4, input_size=image_size // 8, seq_1d=0, patch_size=int(p), hidden=D,
                     depth=depth, heads=H, mlp_hidden=4 * D, num_classes=1000, learn_sigma=1,
                     guide_channels=3, latent_scale=0.18215)


# ----- fixed sin-cos positions (numpy float64, then float32) -------------------------------------
def sincos_1d(dim, pos):
    """[sin(pos w), cos(pos w)] with w_k = 10000^(-k/(dim/2)), pos a float64 array -> (len, dim)."""
    assert dim % 2 == 0
    omega = np.arange(dim // 2, dtype=np.float64) / (dim / 2.0)
    omega = 1.0 / 10000 ** omega
    out = np.einsum("m,d->md", pos.reshape(-1).astype(np.float64), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def pos_embed_2d(dim, rows, cols):
    """token (i, j): [1D(dim/2) of the column j, 1D(dim/2) of the row i]."""
    assert dim % 4 == 0
    i, j = np.meshgrid(np.arange(rows, dtype=np.float64), np.arange(cols, dtype=np.float64), indexing="ij")
    return np.concatenate([sincos_1d(dim // 2, j), sincos_1d(dim // 2, i)], axis=1)


def pos_embed(cfg):
    r, c = cfg.grid
    pe = sincos_1d(cfg.hidden, np.arange(c, dtype=np.float64)) if cfg.seq_1d else pos_embed_2d(cfg.hidden, r, c)
    return torch.from_numpy(pe).float().unsqueeze(0)


def timestep_features(t):
    """(B,) integer steps -> (B, 256) float32 [cos, sin] exactly as the official float32 code."""
    half = 128
    freqs = torch.exp(-math.log(10000) * torch.arange(0, half, dtype=torch.float32) / half)
    args = t.to(torch.float32)[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


# ----- modules -----------------------------------------------------------------------------------
def gelu_tanh(x):
    return F.gelu(x, approximate="tanh")


def mha(q, k, v, heads, key_mask=None):
    """q (B,Tq,D), k/v (B,Tk,D); key_mask (B,Tk) bool (True = attend) or None. All-masked rows -> 0."""
    B, Tq, D = q.shape
    Tk = k.shape[1]
    hd = D // heads
    qh = q.reshape(B, Tq, heads, hd).transpose(1, 2)
    kh = k.reshape(B, Tk, heads, hd).transpose(1, 2)
    vh = v.reshape(B, Tk, heads, hd).transpose(1, 2)
    s = (qh @ kh.transpose(-1, -2)) * (hd ** -0.5)
    if key_mask is not None:
        m = key_mask[:, None, None, :]
        # a finite fill (exp underflows to exactly 0) keeps all-masked rows free of NaN, also in
        # backward; those rows then get exactly zero weights
        s = s.masked_fill(~m, -1e30)
        a = torch.softmax(s, dim=-1)
        a = torch.where(m.expand_as(a), a, torch.zeros_like(a))
    else:
        a = torch.softmax(s, dim=-1)
    o = a @ vh
    return o.transpose(1, 2).reshape(B, Tq, D)


class Attention(nn.Module):
    def __init__(self, D, H):
        super().__init__()
        self.heads = H
        self.qkv = nn.Linear(D, 3 * D)
        self.proj = nn.Linear(D, D)

    def forward(self, x):
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        return self.proj(mha(q, k, v, self.heads))


class CrossAttention(nn.Module):
    def __init__(self, D, H):
        super().__init__()
        self.heads = H
        self.q_linear = nn.Linear(D, D)
        self.kv_linear = nn.Linear(D, 2 * D)
        self.proj = nn.Linear(D, D)

    def forward(self, x, ctx, key_mask):
        k, v = self.kv_linear(ctx).chunk(2, dim=-1)
        return self.proj(mha(self.q_linear(x), k, v, self.heads, key_mask))


class Mlp(nn.Module):
    def __init__(self, D, M, out=None):
        super().__init__()
        self.fc1 = nn.Linear(D, M)
        self.fc2 = nn.Linear(M, out or D)

    def forward(self, x):
        return self.fc2(gelu_tanh(self.fc1(x)))


def layer_norm(x):
    return F.layer_norm(x, x.shape[-1:], eps=1e-6)


def modulate(x, shift, scale):
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class DiTBlock(nn.Module):
    def __init__(self, D, H, M, cross):
        super().__init__()
        self.attn = Attention(D, H)
        self.cross_attn = CrossAttention(D, H) if cross else None
        self.mlp = Mlp(D, M)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(D, 6 * D))

    def forward(self, x, c, ctx=None, key_mask=None):
        sh1, sc1, g1, sh2, sc2, g2 = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + g1.unsqueeze(1) * self.attn(modulate(layer_norm(x), sh1, sc1))
        if self.cross_attn is not None:
            x = x + self.cross_attn(x, ctx, key_mask)
        x = x + g2.unsqueeze(1) * self.mlp(modulate(layer_norm(x), sh2, sc2))
        return x


class FinalLayer(nn.Module):
    def __init__(self, D, n_out):
        super().__init__()
        self.linear = nn.Linear(D, n_out)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(D, 2 * D))

    def forward(self, x, c):
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(layer_norm(x), shift, scale))


class PatchEmbed(nn.Module):
    def __init__(self, C, D, p):
        super().__init__()
        self.proj = nn.Conv2d(C, D, kernel_size=p, stride=p)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class TimestepEmbedder(nn.Module):
    def __init__(self, D):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(256, D), nn.SiLU(), nn.Linear(D, D))

    def forward(self, t):
        return self.mlp(timestep_features(t).to(self.mlp[0].weight.dtype))


class LabelEmbedder(nn.Module):
    def __init__(self, n, D):
        super().__init__()
        self.embedding_table = nn.Embedding(n + 1, D)

    def forward(self, y):
        return self.embedding_table(y)


class CaptionEmbedder(nn.Module):
    def __init__(self, text_dim, D):
        super().__init__()
        self.y_proj = Mlp(text_dim, D, D)   # fc1 (D, text_dim), fc2 (D, D)

    def forward(self, emb):
        return self.y_proj(emb)


class DiT(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        D, p = cfg.hidden, cfg.patch_size
        r, c = cfg.grid
        self.x_embedder = PatchEmbed(cfg.in_channels, D, p)
        self.t_embedder = TimestepEmbedder(D)
        if cfg.num_classes > 0:
            self.y_embedder = LabelEmbedder(cfg.num_classes, D)
        elif cfg.text_dim > 0:
            self.y_embedder = CaptionEmbedder(cfg.text_dim, D)
        self.pos_embed = nn.Parameter(torch.zeros(1, r * c, D), requires_grad=False)
        self.blocks = nn.ModuleList([DiTBlock(D, cfg.heads, cfg.mlp_hidden, cfg.text_dim > 0)
                                     for _ in range(cfg.depth)])
        self.final_layer = FinalLayer(D, p * p * cfg.out_channels)
        with torch.no_grad():
            self.pos_embed.copy_(pos_embed(cfg))

    def caption(self, text):
        """text embeddings (B, L, text_dim) -> context (B, L, D)."""
        return self.y_embedder(text)

    def unpatchify(self, x):
        cfg, p, Co = self.cfg, self.cfg.patch_size, self.cfg.out_channels
        r, c = cfg.grid
        B = x.shape[0]
        x = x.reshape(B, r, c, p, p, Co)
        x = torch.einsum("nhwpqc->nchpwq", x)
        return x.reshape(B, Co, r * p, c * p)

    def forward(self, x, t, y=None, text=None, mask=None):
        """x (B,C,S,S) / (B,C,1,N); t (B,) long; y (B,) long or None; text (B,L,Dt), mask (B,L) bool."""
        cfg = self.cfg
        h = self.x_embedder(x) + self.pos_embed
        c = self.t_embedder(t)
        if cfg.num_classes > 0:
            c = c + self.y_embedder(y)
        ctx = None
        if cfg.text_dim > 0:
            ctx = self.caption(text)
            if mask is None:
                mask = torch.ones(text.shape[:2], dtype=torch.bool)
        for blk in self.blocks:
            h = blk(h, c, ctx, mask)
        return self.unpatchify(self.final_layer(h, c))

    def forward_with_cfg(self, x, t, y, text, mask, scale):
        """guided output for the batch x (B rows): the official half-batch trick written out."""
        cfg = self.cfg
        B = x.shape[0]
        x2 = torch.cat([x, x], 0)
        t2 = torch.cat([t, t], 0)
        y2 = torch.cat([y, torch.full_like(y, cfg.num_classes)], 0) if cfg.num_classes > 0 else None
        text2 = mask2 = None
        if cfg.text_dim > 0:
            text2 = torch.cat([text, text], 0)
            m = mask if mask is not None else torch.ones(text.shape[:2], dtype=torch.bool)
            mask2 = torch.cat([m, torch.zeros_like(m)], 0)   # the null caption: every key masked
        out = self.forward(x2, t2, y2, text2, mask2)
        cond, unc = out[:B], out[B:]
        g = cfg.guide_channels
        guided = unc[:, :g] + scale * (cond[:, :g] - unc[:, :g])
        return torch.cat([guided, cond[:, g:]], 1)


# ----- initialisation ----------------------------------------------------------------------------
@torch.no_grad()
def initialize_weights(model, seed):
    """DiT.initialize_weights (architecture.md 7.1), statistically: xavier_uniform Linears (the patch
    conv on its flattened (D, C p p) view), zero biases, label table N(0, 0.02), t-MLP weights
    N(0, 0.02), adaLN-Zero (every adaLN Linear and the final linear zero); T2I: q/kv xavier,
    cross_attn.proj zero (a fresh T2I DiT starts as a plain DiT), y_proj xavier."""
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        if name == "pos_embed":
            continue
        if name.endswith("bias"):
            p.zero_()
        elif "adaLN_modulation" in name or name.startswith("final_layer.linear") or "cross_attn.proj" in name:
            p.zero_()
        elif name.startswith("t_embedder.mlp") or "embedding_table" in name:
            p.copy_(0.02 * torch.randn(p.shape, generator=g))
        else:
            fan_out, fan_in = p.shape[0], p[0].numel()
            a = math.sqrt(6.0 / (fan_in + fan_out))
            p.copy_((torch.rand(p.shape, generator=g) * 2 - 1) * a)
    return model


@torch.no_grad()
def init_random(model, seed):
    """The goldens: every trainable tensor random so that every path carries signal (adaLN-Zero would
    zero most gradients): matrices N(0, 1/fan_in), biases N(0, 0.1^2), tables N(0, 1); pos_embed
    keeps its sin-cos values. One float32 generator, draws in state_dict order."""
    g = torch.Generator().manual_seed(seed)
    for name, p in model.state_dict(keep_vars=True).items():
        if name == "pos_embed":
            continue
        r = torch.randn(p.shape, generator=g, dtype=torch.float32)
        if "embedding_table" in name:
            v = r
        elif p.dim() >= 2:
            v = r / math.sqrt(p[0].numel())
        else:
            v = 0.1 * r
        p.copy_(v.to(p.dtype))
    return model


# ----- Gaussian diffusion ------------------------------------------------------------------------
def linear_betas(T):
    scale = 1000 / T
    return np.linspace(scale * 0.0001, scale * 0.02, T, dtype=np.float64)


def space_timesteps(T, spec):
    """The set of kept steps for "" (all), "N[,M...]" or "ddimN"; returned sorted."""
    if spec is None or spec == "":
        return list(range(T))
    if spec.startswith("ddim"):
        want = int(spec[4:])
        for i in range(1, T):
            if len(range(0, T, i)) == want:
                return list(range(0, T, i))
        raise ValueError(f"cannot make {want} equally spaced steps out of {T}")
    counts = [int(x) for x in spec.split(",")]
    size_per, extra = T // len(counts), T % len(counts)
    start, steps = 0, []
    for i, n in enumerate(counts):
        size = size_per + (1 if i < extra else 0)
        if size < n:
            raise ValueError(f"cannot divide section of {size} steps into {n}")
        stride = 1 if n <= 1 else (size - 1) / (n - 1)
        cur = 0.0
        for _ in range(n):
            steps.append(start + round(cur))
            cur += stride
        start += size
    return sorted(set(steps))


class Diffusion:
    """float64 tables of one (possibly respaced) diffusion; every gathered value goes through float32."""

    def __init__(self, T=1000, respacing=""):
        base = np.cumprod(1.0 - linear_betas(T))
        keep = space_timesteps(T, respacing)
        self.timestep_map = keep
        # SpacedDiffusion semantics, also for "" (all steps kept): betas from acp ratios
        last, nb, ks = 1.0, [], set(keep)
        for i, a in enumerate(base):
            if i in ks:
                nb.append(1 - a / last)
                last = a
        betas = np.array(nb, dtype=np.float64)
        self.betas = betas
        self.n = len(betas)
        alphas = 1.0 - betas
        acp = np.cumprod(alphas)
        acp_prev = np.append(1.0, acp[:-1])
        self.acp, self.acp_prev = acp, acp_prev
        self.sqrt_acp = np.sqrt(acp)
        self.sqrt_1m_acp = np.sqrt(1.0 - acp)
        self.sqrt_recip_acp = np.sqrt(1.0 / acp)
        self.sqrt_recipm1_acp = np.sqrt(1.0 / acp - 1)
        self.post_var = betas * (1.0 - acp_prev) / (1.0 - acp)
        self.post_logvar_clipped = np.log(np.append(self.post_var[1], self.post_var[1:]))
        self.coef1 = betas * np.sqrt(acp_prev) / (1.0 - acp)
        self.coef2 = (1.0 - acp_prev) * np.sqrt(alphas) / (1.0 - acp)
        self.log_betas = np.log(betas)
        self.fixed_large_logvar = np.log(np.append(self.post_var[1], betas[1:]))

    def g(self, arr, t, like):
        """arr[t] as float32, then like's dtype, shaped (B, 1, 1, ...) to broadcast over like."""
        v = torch.from_numpy(np.asarray(arr))[t].float().to(like.dtype)
        return v.reshape(-1, *([1] * (like.dim() - 1)))

    def q_sample(self, x0, noise, t):
        return self.g(self.sqrt_acp, t, x0) * x0 + self.g(self.sqrt_1m_acp, t, x0) * noise

    def q_posterior(self, x0, xt, t):
        mean = self.g(self.coef1, t, xt) * x0 + self.g(self.coef2, t, xt) * xt
        return mean, self.g(self.post_logvar_clipped, t, xt)

    def p_mean_variance(self, out, xt, t, learn_sigma):
        C = xt.shape[1]
        if learn_sigma:
            eps, v = out[:, :C], out[:, C:]
            mn, mx = self.g(self.post_logvar_clipped, t, xt), self.g(self.log_betas, t, xt)
            frac = (v + 1) / 2
            logvar = frac * mx + (1 - frac) * mn
        else:
            eps = out
            logvar = self.g(self.fixed_large_logvar, t, xt) * torch.ones_like(xt)
        x0 = self.g(self.sqrt_recip_acp, t, xt) * xt - self.g(self.sqrt_recipm1_acp, t, xt) * eps
        mean, _ = self.q_posterior(x0, xt, t)
        return mean, logvar, x0

    def loss(self, x0, noise, t, out, learn_sigma):
        """-> (loss (B,), mse (B,), vb (B,)): training_losses with loss type MSE."""
        C = x0.shape[1]
        xt = self.q_sample(x0, noise, t)
        eps = out[:, :C]
        dims = list(range(1, x0.dim()))
        mse = ((noise - eps) ** 2).mean(dim=dims)
        if not learn_sigma:
            return mse, mse, torch.zeros_like(mse)
        frozen = torch.cat([eps.detach(), out[:, C:]], 1)
        true_mean, true_lv = self.q_posterior(x0, xt, t)
        mean, lv, _ = self.p_mean_variance(frozen, xt, t, True)
        kl = 0.5 * (-1.0 + lv - true_lv + torch.exp(true_lv - lv) + (true_mean - mean) ** 2 * torch.exp(-lv))
        kl = kl.mean(dim=dims) / math.log(2.0)
        nll = -discretized_gaussian_log_likelihood(x0, mean, 0.5 * lv)
        nll = nll.mean(dim=dims) / math.log(2.0)
        vb = torch.where(t == 0, nll, kl)
        return mse + vb, mse, vb

    def p_step(self, i, xt, out, noise, learn_sigma):
        t = torch.full((xt.shape[0],), i, dtype=torch.long)
        mean, lv, _ = self.p_mean_variance(out, xt, t, learn_sigma)
        return mean + (1.0 if i != 0 else 0.0) * torch.exp(0.5 * lv) * noise

    def ddim_step(self, i, xt, out, noise, eta, learn_sigma):
        t = torch.full((xt.shape[0],), i, dtype=torch.long)
        _, _, x0 = self.p_mean_variance(out, xt, t, learn_sigma)
        eps = (self.g(self.sqrt_recip_acp, t, xt) * xt - x0) / self.g(self.sqrt_recipm1_acp, t, xt)
        ab, abp = self.g(self.acp, t, xt), self.g(self.acp_prev, t, xt)
        sigma = eta * torch.sqrt((1 - abp) / (1 - ab)) * torch.sqrt(1 - ab / abp)
        mean = x0 * torch.sqrt(abp) + torch.sqrt(1 - abp - sigma ** 2) * eps
        return mean + (1.0 if i != 0 else 0.0) * sigma * noise


def approx_std_normal_cdf(x):
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def discretized_gaussian_log_likelihood(x, means, log_scales):
    cx = x - means
    inv = torch.exp(-log_scales)
    cdf_plus = approx_std_normal_cdf(inv * (cx + 1.0 / 255.0))
    cdf_min = approx_std_normal_cdf(inv * (cx - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_1m_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    delta = cdf_plus - cdf_min
    return torch.where(x < -0.999, log_cdf_plus,
                       torch.where(x > 0.999, log_1m_cdf_min, torch.log(delta.clamp(min=1e-12))))
