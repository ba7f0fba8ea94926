#!/usr/bin/python3
"""Independent PyTorch reference for the TiTok 1D image tokenizer (plain torch.nn, torch 1.13).

Written from /work/shared/reference/architecture.md sections 1 and 8 only: it does not import or copy
the official 1d-tokenizer code (no einops either).  What it guarantees is the *interface* of the
official model:

  * state_dict() has exactly the official parameter names, shapes and order (section 1.8) for any
    config, so weights made here load into the official classes and vice versa;
  * the forward math is the one described in section 1 (legacy scrambled encoder reshape, VQ with the
    expanded distance and first-index ties, re-normalised lookups, proxy-code soft embedding, the
    MaskGIT-VQGAN pixel decoder with its nin_shortcut quirk, the non-legacy unpatchify head).

Module layout (names = state_dict prefixes):

    latent_tokens                     (K, De)      own parameter, so it comes first
    encoder                           TiTokEncoder
    decoder                           TiTokDecoder
    quantize.embedding.weight         (V, C)       vq only
    pixel_quantize.embedding.weight   (Vp, Z)      legacy only
    pixel_decoder                     PixelDecoder legacy only

Entry points: TiTok(cfg), init_weights(model, seed), model.encode(x), model.decode_tokens(ids),
model.decode(latents).  Works in any float dtype (the goldens run it in float64).
"""
import math
from collections import OrderedDict
from dataclasses import dataclass, fields
from typing import Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class TiTokConfig:
    # The field names are those of textok_titok_config in textok.h (they become the metadata keys).
    image_size: int = 256
    patch_size: int = 16
    num_latent_tokens: int = 128
    token_size: int = 12
    enc_width: int = 512
    enc_layers: int = 8
    enc_heads: int = 8
    enc_mlp: int = 2048
    dec_width: int = 512
    dec_layers: int = 8
    dec_heads: int = 8
    dec_mlp: int = 2048
    quantize_mode: str = "vq"          # "vq" or "vae"
    codebook_size: int = 4096          # 0 for vae
    use_l2_norm: int = 1
    is_legacy: int = 1
    # MaskGIT-VQGAN pixel decoder (legacy only; zeros / empty otherwise)
    pixel_codebook_size: int = 1024
    pixel_z_channels: int = 256
    pixel_hidden: int = 128
    pixel_channel_mult: Tuple[int, ...] = (1, 1, 2, 2, 4)
    pixel_res_blocks: int = 2
    pixel_groups: int = 32

    @property
    def pixel_num_levels(self):
        return len(self.pixel_channel_mult)

    @property
    def grid(self):
        return self.image_size // self.patch_size

    @property
    def enc_out_channels(self):
        # VAE: the encoder emits mean and logvar, so twice token_size channels
        return 2 * self.token_size if self.quantize_mode == "vae" else self.token_size

    def check(self):
        assert self.quantize_mode in ("vq", "vae")
        assert self.image_size % self.patch_size == 0
        assert self.enc_width % self.enc_heads == 0 and self.dec_width % self.dec_heads == 0
        if self.quantize_mode == "vq":
            assert self.codebook_size > 0
        if self.is_legacy:
            # the pixel decoder upsamples the token grid by 2^(levels-1) back to the image size
            assert self.grid << (self.pixel_num_levels - 1) == self.image_size
            for m in self.pixel_channel_mult:
                assert (self.pixel_hidden * m) % self.pixel_groups == 0
        return self

    def to_meta(self):
        """Metadata strings keyed by the textok_titok_config field names (plus pixel_num_levels)."""
        meta = OrderedDict()
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "pixel_channel_mult":
                meta["pixel_num_levels"] = str(len(v) if self.is_legacy else 0)
                meta[f.name] = ",".join(str(m) for m in v) if self.is_legacy else ""
            elif f.name.startswith("pixel_") and not self.is_legacy:
                meta[f.name] = "0"
            elif f.name == "quantize_mode":
                meta[f.name] = v
            elif f.name == "codebook_size" and self.quantize_mode == "vae":
                meta[f.name] = "0"
            elif f.name == "use_l2_norm" and self.quantize_mode == "vae":
                meta[f.name] = "0"
            else:
                meta[f.name] = str(int(v))
        return meta


def titok_config(name):
    """Official-sized configs ([1d] configs/infer/TiTok/*.yaml) plus the three agreed tiny test models."""
    size = {"small": (512, 8, 8), "base": (768, 12, 12), "large": (1024, 24, 16)}

    def official(enc, dec, K, **kw):
        (De, Ne, He), (Dd, Nd, Hd) = size[enc], size[dec]
        return TiTokConfig(num_latent_tokens=K, enc_width=De, enc_layers=Ne, enc_heads=He, enc_mlp=4 * De,
                           dec_width=Dd, dec_layers=Nd, dec_heads=Hd, dec_mlp=4 * Dd, **kw)

    nonlegacy = dict(is_legacy=0, pixel_codebook_size=0, pixel_z_channels=0, pixel_hidden=0,
                     pixel_channel_mult=(), pixel_res_blocks=0, pixel_groups=0)
    cfgs = {
        "s128": lambda: official("small", "small", 128),
        "b64": lambda: official("base", "base", 64),
        "l32": lambda: official("large", "large", 32),
        "bl64_vq8k": lambda: official("base", "large", 64, token_size=64, codebook_size=8192,
                                      use_l2_norm=0, **nonlegacy),
        "bl64_vae_c16": lambda: official("base", "large", 64, token_size=16, quantize_mode="vae",
                                         codebook_size=0, use_l2_norm=0, **nonlegacy),
        "tiny_legacy": lambda: TiTokConfig(
            image_size=32, patch_size=4, num_latent_tokens=8, token_size=12,
            enc_width=64, enc_layers=2, enc_heads=1, enc_mlp=256,
            dec_width=64, dec_layers=2, dec_heads=1, dec_mlp=256,
            quantize_mode="vq", codebook_size=64, use_l2_norm=1, is_legacy=1,
            pixel_codebook_size=64, pixel_z_channels=32, pixel_hidden=32, pixel_channel_mult=(1, 1, 2),
            pixel_res_blocks=2, pixel_groups=32),
        "tiny_vq": lambda: TiTokConfig(
            image_size=32, patch_size=8, num_latent_tokens=5, token_size=8,
            enc_width=128, enc_layers=1, enc_heads=2, enc_mlp=512,
            dec_width=64, dec_layers=2, dec_heads=1, dec_mlp=256,
            quantize_mode="vq", codebook_size=32, use_l2_norm=0, **nonlegacy),
        "tiny_vae": lambda: TiTokConfig(
            image_size=32, patch_size=8, num_latent_tokens=6, token_size=16,
            enc_width=64, enc_layers=1, enc_heads=1, enc_mlp=256,
            dec_width=128, dec_layers=1, dec_heads=2, dec_mlp=512,
            quantize_mode="vae", codebook_size=0, use_l2_norm=0, **nonlegacy),
    }
    return cfgs[name]().check()


# ------------------------------------------------------------------------------------------------
# Transformer (shared by encoder and decoder)

class ResidualAttentionBlock(nn.Module):
    """Pre-norm block: x += out_proj(MHA(ln_1 x)); x += c_proj(GELU(c_fc(ln_2 x))).  LN eps 1e-5,
    exact-erf GELU, no attention mask.  nn.MultiheadAttention gives the official fused
    in_proj_weight [Wq; Wk; Wv] and scales q by 1/sqrt(head_dim) before q.k."""

    def __init__(self, width, heads, mlp):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width, eps=1e-5)
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_2 = nn.LayerNorm(width, eps=1e-5)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(width, mlp)),
            ("gelu", nn.GELU()),
            ("c_proj", nn.Linear(mlp, width)),
        ]))

    def forward(self, x):  # x: (L, N, D), the LND layout nn.MultiheadAttention expects
        y = self.ln_1(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


def run_blocks(blocks, x):
    """(B, L, D) -> (B, L, D) through the blocks in LND layout (only a transpose)."""
    x = x.permute(1, 0, 2)
    for blk in blocks:
        x = blk(x)
    return x.permute(1, 0, 2)


# ------------------------------------------------------------------------------------------------
# Encoder: image -> (B, Cq, 1, K)

class TiTokEncoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        D, G = cfg.enc_width, cfg.grid
        # Parameter registration order = state_dict order (own parameters before submodules).
        self.class_embedding = nn.Parameter(torch.empty(1, D))
        self.positional_embedding = nn.Parameter(torch.empty(G * G + 1, D))
        self.latent_token_positional_embedding = nn.Parameter(torch.empty(cfg.num_latent_tokens, D))
        self.patch_embed = nn.Conv2d(3, D, cfg.patch_size, stride=cfg.patch_size, bias=True)
        self.ln_pre = nn.LayerNorm(D, eps=1e-5)
        self.transformer = nn.ModuleList(
            [ResidualAttentionBlock(D, cfg.enc_heads, cfg.enc_mlp) for _ in range(cfg.enc_layers)])
        self.ln_post = nn.LayerNorm(D, eps=1e-5)
        self.conv_out = nn.Conv2d(D, cfg.enc_out_channels, 1, bias=True)

    def forward(self, x, latent_tokens):
        cfg, B = self.cfg, x.shape[0]
        D, K, P = cfg.enc_width, cfg.num_latent_tokens, cfg.grid * cfg.grid
        x = self.patch_embed(x).reshape(B, D, P).permute(0, 2, 1)           # token = row*G + col
        x = torch.cat([self.class_embedding.unsqueeze(0).expand(B, 1, D), x], dim=1)
        x = x + self.positional_embedding
        lat = (latent_tokens + self.latent_token_positional_embedding).unsqueeze(0).expand(B, K, D)
        x = torch.cat([x, lat], dim=1)                                     # [cls, patches, latents]
        x = run_blocks(self.transformer, self.ln_pre(x))
        lat = self.ln_post(x[:, 1 + P:]).contiguous()                      # (B, K, D)
        if cfg.is_legacy:
            # Legacy: the row-major (K, D) buffer is *reinterpreted* as (D, K): z[c][k] = flat[c*K+k].
            # Not a transpose (architecture.md 1.3 step 7, pitfall 8.1).
            z = lat.reshape(B, D, 1, K)
        else:
            z = lat.permute(0, 2, 1).reshape(B, D, 1, K)                   # z[c][k] = lat[k][c]
        return self.conv_out(z)                                            # (B, Cq, 1, K)


# ------------------------------------------------------------------------------------------------
# Decoder: (B, C, 1, K) -> proxy-code logits (legacy) or RGB (non-legacy)

class TiTokDecoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        D, G, p = cfg.dec_width, cfg.grid, cfg.patch_size
        self.class_embedding = nn.Parameter(torch.empty(1, D))
        self.positional_embedding = nn.Parameter(torch.empty(G * G + 1, D))
        self.mask_token = nn.Parameter(torch.empty(1, 1, D))
        self.latent_token_positional_embedding = nn.Parameter(torch.empty(cfg.num_latent_tokens, D))
        self.decoder_embed = nn.Linear(cfg.token_size, D, bias=True)
        self.ln_pre = nn.LayerNorm(D, eps=1e-5)
        self.transformer = nn.ModuleList(
            [ResidualAttentionBlock(D, cfg.dec_heads, cfg.dec_mlp) for _ in range(cfg.dec_layers)])
        self.ln_post = nn.LayerNorm(D, eps=1e-5)
        if cfg.is_legacy:
            # Conv1x1 -> tanh -> Conv1x1: logits over the pixel (proxy) codebook; tanh sits at index 1
            self.ffn = nn.Sequential(nn.Conv2d(D, 2 * D, 1, bias=True), nn.Tanh(),
                                     nn.Conv2d(2 * D, cfg.pixel_codebook_size, 1, bias=True))
        else:
            # Conv1x1 to p*p*3 channels, then (in forward) b (p1 p2 c) h w -> b c (h p1) (w p2)
            self.ffn = nn.Sequential(nn.Conv2d(D, p * p * 3, 1, bias=True))
            self.conv_out = nn.Conv2d(3, 3, 3, padding=1, bias=True)

    def forward(self, z):
        cfg, B = self.cfg, z.shape[0]
        D, K, G, p = cfg.dec_width, cfg.num_latent_tokens, cfg.grid, cfg.patch_size
        x = z.reshape(B, cfg.token_size, K).permute(0, 2, 1)               # real transpose -> (B,K,C)
        x = self.decoder_embed(x) + self.latent_token_positional_embedding[:K]
        masks = self.mask_token.expand(B, G * G, D)                        # one token, repeated
        masks = torch.cat([self.class_embedding.unsqueeze(0).expand(B, 1, D), masks], dim=1)
        masks = masks + self.positional_embedding
        x = torch.cat([masks, x], dim=1)                                   # [cls, masks, latents]
        x = run_blocks(self.transformer, self.ln_pre(x))
        x = self.ln_post(x[:, 1:1 + G * G])                                # (B, G*G, D)
        x = x.permute(0, 2, 1).reshape(B, D, G, G)
        if cfg.is_legacy:
            return self.ffn(x)                                             # (B, Vp, G, G) logits
        y = self.ffn(x)                                                    # (B, p*p*3, G, G)
        y = y.reshape(B, p, p, 3, G, G).permute(0, 3, 4, 1, 5, 2).reshape(B, 3, G * p, G * p)
        return self.conv_out(y)


# ------------------------------------------------------------------------------------------------
# MaskGIT-VQGAN pixel decoder (legacy only)

class ResnetBlock(nn.Module):
    """GN(eps 1e-6) -> SiLU -> conv3x3 (no bias), twice.  Output h + x when cin == cout, otherwise
    h + nin_shortcut(h): the upstream quirk applies the 1x1 shortcut to h and drops x."""

    def __init__(self, cin, cout, groups):
        super().__init__()
        self.cin, self.cout = cin, cout
        self.norm1 = nn.GroupNorm(groups, cin, eps=1e-6, affine=True)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.norm2 = nn.GroupNorm(groups, cout, eps=1e-6, affine=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        if cin != cout:
            self.nin_shortcut = nn.Conv2d(cout, cout, 1, bias=False)

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        if self.cin != self.cout:
            return h + self.nin_shortcut(h)
        return h + x


class UpLevel(nn.Module):
    def __init__(self, cin, cout, n_blocks, groups, upsample):
        super().__init__()
        self.block = nn.ModuleList(
            [ResnetBlock(cin if j == 0 else cout, cout, groups) for j in range(n_blocks)])
        if upsample:
            self.upsample_conv = nn.Conv2d(cout, cout, 3, padding=1, bias=True)
        self.upsample = upsample

    def forward(self, x):
        for blk in self.block:
            x = blk(x)
        if self.upsample:
            x = self.upsample_conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        return x


class PixelDecoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        hid, mult, L, gr = cfg.pixel_hidden, cfg.pixel_channel_mult, cfg.pixel_num_levels, cfg.pixel_groups
        top = hid * mult[L - 1]
        self.conv_in = nn.Conv2d(cfg.pixel_z_channels, top, 3, padding=1, bias=True)
        self.mid = nn.ModuleList([ResnetBlock(top, top, gr) for _ in range(cfg.pixel_res_blocks)])
        # up.l for l = 0..L-1 in index order; level l takes hid*mult[l+1] (top for the last level)
        # channels to hid*mult[l], and every level but 0 ends with nearest x2 + conv.
        self.up = nn.ModuleList([
            UpLevel(hid * mult[min(l + 1, L - 1)], hid * mult[l], cfg.pixel_res_blocks, gr, upsample=l != 0)
            for l in range(L)])
        self.norm_out = nn.GroupNorm(gr, hid * mult[0], eps=1e-6, affine=True)
        self.conv_out = nn.Conv2d(hid * mult[0], 3, 3, padding=1, bias=True)

    def forward(self, z):
        h = self.conv_in(z)
        for blk in self.mid:
            h = blk(h)
        for lvl in reversed(self.up):                                      # up[L-1] first
            h = lvl(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Codebook(nn.Module):
    """Holds `embedding.weight` (V, dim): the official quantize / pixel_quantize modules."""

    def __init__(self, n, dim):
        super().__init__()
        self.embedding = nn.Embedding(n, dim)


# ------------------------------------------------------------------------------------------------
# TiTok

class TiTok(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        cfg.check()
        self.cfg = cfg
        self.latent_tokens = nn.Parameter(torch.empty(cfg.num_latent_tokens, cfg.enc_width))
        self.encoder = TiTokEncoder(cfg)
        self.decoder = TiTokDecoder(cfg)
        if cfg.quantize_mode == "vq":
            self.quantize = Codebook(cfg.codebook_size, cfg.token_size)
        if cfg.is_legacy:
            self.pixel_quantize = Codebook(cfg.pixel_codebook_size, cfg.pixel_z_channels)
            self.pixel_decoder = PixelDecoder(cfg)

    # -- quantiser ---------------------------------------------------------------------------

    def _codebook(self):
        e = self.quantize.embedding.weight
        return F.normalize(e, dim=-1, eps=1e-12) if self.cfg.use_l2_norm else e

    def vq_distances(self, pre_quant):
        """pre_quant (B, C, 1, K) -> (z (B*K, C), d (B*K, V)); row i = b*K + k.  The expanded form
        sum z^2 + sum e^2 - 2 z.e, after F.normalize of both sides when use_l2_norm."""
        C = self.cfg.token_size
        z = pre_quant.permute(0, 2, 3, 1).reshape(-1, C)
        if self.cfg.use_l2_norm:
            z = F.normalize(z, dim=-1, eps=1e-12)
        e = self._codebook()
        d = (z * z).sum(1, keepdim=True) + (e * e).sum(1)[None, :] - 2.0 * (z @ e.t())
        return z, d

    def lookup(self, ids):
        """ids (B, K) -> (B, C, 1, K) codebook vectors, re-normalised when use_l2_norm."""
        B, K = ids.shape
        v = F.embedding(ids.reshape(-1), self._codebook()).reshape(B, K, self.cfg.token_size)
        return v.permute(0, 2, 1).reshape(B, self.cfg.token_size, 1, K)

    # -- public API --------------------------------------------------------------------------

    def encode(self, x):
        """x (B, 3, S, S) in [0, 1].  Returns dict:
             pre_quant (B, Cq, 1, K); latents (B, C, 1, K) (vq: looked-up codes, vae: posterior mean);
             tokens (B, K) int64 (vq only); margin (B*K) VQ decision margins (vq only):
             (second-best - best distance) / (|z|^2 + |e_best|^2)."""
        pre = self.encoder(x, self.latent_tokens)
        out = {"pre_quant": pre}
        if self.cfg.quantize_mode == "vq":
            z, d = self.vq_distances(pre)
            ids = torch.argmin(d, dim=1)                                   # first index on ties
            two = torch.topk(d, 2, dim=1, largest=False).values
            e = self._codebook()
            scale = (z * z).sum(1) + (e[ids] * e[ids]).sum(1)
            out["margin"] = (two[:, 1] - two[:, 0]) / scale.clamp_min(1e-30)
            out["tokens"] = ids.reshape(pre.shape[0], -1)
            out["latents"] = self.lookup(out["tokens"])
        else:
            mean, logvar = pre.chunk(2, dim=1)                             # first C = mean
            out["latents"] = mean
            out["logvar"] = logvar.clamp(-30.0, 20.0)
        return out

    def decode_vit(self, latents):
        """The ViT decoder alone: proxy-code logits (legacy) or the image (non-legacy)."""
        return self.decoder(latents)

    def decode_pixels(self, logits):
        """Legacy: softmax over the proxy codes, soft code embedding, MaskGIT-VQGAN pixel decoder."""
        p = torch.softmax(logits, dim=1)
        q = torch.einsum("nchw,cd->ndhw", p, self.pixel_quantize.embedding.weight)
        return self.pixel_decoder(q)

    def decode(self, latents):
        """latents (B, C, 1, K) -> image (B, 3, S, S), not clamped."""
        y = self.decode_vit(latents)
        return self.decode_pixels(y) if self.cfg.is_legacy else y

    def decode_tokens(self, ids):
        """ids (B, K) or (B, 1, K) -> image (B, 3, S, S), not clamped."""
        if ids.dim() == 3:
            ids = ids.squeeze(1)
        return self.decode(self.lookup(ids))


# ------------------------------------------------------------------------------------------------
# Deterministic init

EMBED_NAMES = ("latent_tokens", "class_embedding", "positional_embedding",
               "latent_token_positional_embedding", "mask_token")


@torch.no_grad()
def init_weights(model, seed, embed_std=0.5):
    """Seeded init that keeps activations O(1) so every code path matters numerically:
    matrices / conv kernels N(0, 1/fan_in); biases N(0, 0.1^2); norm weights 1 + N(0, 0.1^2);
    embeddings N(0, embed_std^2); codebooks N(0, 1).  Draws go in state_dict order from one
    torch.Generator, in float32, so a config + seed pins every value."""
    g = torch.Generator().manual_seed(seed)
    for name, p in model.state_dict(keep_vars=True).items():
        leaf = name.rsplit(".", 1)[-1]
        r = torch.randn(p.shape, generator=g, dtype=torch.float32)
        if name.endswith("embedding.weight") and ("quantize." in name):
            v = r                                                          # codebooks
        elif leaf in EMBED_NAMES:
            v = embed_std * r
        elif p.dim() >= 2:
            fan_in = p[0].numel()
            v = r / math.sqrt(fan_in)
        elif leaf.endswith("bias"):
            v = 0.1 * r
        else:                                                              # LayerNorm / GroupNorm weight
            v = 1.0 + 0.1 * r
        p.copy_(v.to(p.dtype))
    return model


def count_params(model):
    return sum(v.numel() for v in model.state_dict().values())


if __name__ == "__main__":
    import sys
    for name in sys.argv[1:] or ["tiny_legacy", "tiny_vq", "tiny_vae", "s128"]:
        m = TiTok(titok_config(name))
        sd = m.state_dict()
        print(f"{name}: {len(sd)} entries, {count_params(m):,} params")
