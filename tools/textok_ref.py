#!/usr/bin/python3
"""Independent PyTorch reference for the text-aware tokenizers: TA-TiTok (arch "titok" with text in
the decoder) and TexTok (arch "textok"), plain torch.nn, torch 1.13.

Written from the issue-5 spec (sections 2-4) and /work/shared/reference/architecture.md sections 1,
3 and 8 (textok-paper.md 1.2 for TexTok); it does not import or copy 1d-tokenizer or any TexTok code.
The shared pieces (pre-norm ViT block, VQ search) follow tools/titok_ref.py; a model with arch "titok"
and no text is exactly titok_ref.TiTok (same state_dict, same outputs: checked by
tools/gen_golden_textok.py --check).

Sequences (one pre-norm ViT stack per side; "(text)" = text_guidance_proj(emb) +
text_guidance_positional_embedding, Lt rows, only in a stack that carries text):

    arch    encoder                          read out      decoder                               read out
    titok   [cls, P patches, K latents, (text)]  latent rows   [cls, P mask tokens, K latents, (text)]  P rows after cls
    textok  [P patches, K image tokens, (text)]  image tokens  [P patch tokens, K image tokens, (text)]  first P rows

  titok : patches = patch_embed(img) + positional_embedding[1:], cls = class_embedding + pos[0],
          latents = latent_tokens + latent_token_positional_embedding; decoder mask tokens =
          mask_token + pos[1:], decoder latents = decoder_embed(z) + latent_pos.  Non-legacy head:
          ffn.0 1x1 (Dd -> p*p*3) -> unpatchify (p1 p2 c) -> conv_out 3x3.
  textok: patches = patch_embed(img) + positional_embedding (P rows, no cls); decoder patch tokens =
          decoder.positional_embedding itself (the learnable patch tokens: no mask_token, no
          class_embedding); head ffn.0 1x1 -> unpatchify, no conv_out.  Never legacy.
  Encoder head (both): ln_post on the latent rows, transpose to (B, De, 1, K), conv_out 1x1 -> Cq.
  quantize_mode vq (codebook, optional l2 norm), vae (channels [0,C) mean, [C,2C) logvar), none
  (Cq = C, latents = encoder output).

Masking.  text_mask (B, Lt): 1 = real token, 0 = padding.  In every attention of a stack that carries
text, padded text positions are masked as KEYS (torch key_padding_mask: an additive -inf on their
scores, so a padded row never contributes to any other row); their own query rows are computed and
never read out.  A stack without text runs with no mask at all (the plain TiTok path).  Without text
(text=None, only when text_optional) every text key is masked.

State-dict order (spec section 4; "[E]" only with text_in_encoder, "[D]" only with text_in_decoder):
  titok : the non-legacy TiTok order, plus [E] encoder.text_guidance_positional_embedding after
          encoder.latent_token_positional_embedding and [E] encoder.text_guidance_proj.* after
          encoder.conv_out.*; [D] decoder.text_guidance_positional_embedding after
          decoder.latent_token_positional_embedding and [D] decoder.text_guidance_proj.* after
          decoder.conv_out.* (TA-TiTok: decoder only).
  textok: latent_tokens, encoder.{positional_embedding, latent_token_positional_embedding, [E]
          text_guidance_positional_embedding, patch_embed, ln_pre, transformer, ln_post, conv_out,
          [E] text_guidance_proj}, decoder.{positional_embedding, latent_token_positional_embedding,
          [D] text_guidance_positional_embedding, decoder_embed, ln_pre, transformer, ln_post, ffn.0,
          [D] text_guidance_proj}, quantize.embedding.weight (vq).

Init: init_spec (spec section 4, what textok_titok_create draws: trunc_normal std 0.02 for every
Linear / conv weight incl. text_guidance_proj, zero biases, LN 1 / 0, embeddings incl. the text
positional embedding width^-0.5 * randn, VQ codebook U(-1/V, 1/V)), or init_weights (the goldens:
N(0, 1/fan_in) matrices so that tiny models keep O(1) activations, as titok_ref.init_weights).

Entry points: TextTok(cfg), textok_config(name), init_weights / init_spec, model.encode(x, text, mask),
model.decode(latents, text, mask), model.decode_tokens(ids, text, mask).  Any float dtype.
"""
import math
from collections import OrderedDict
from dataclasses import dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

import os
import sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from titok_ref import TiTokConfig, ResidualAttentionBlock, Codebook, EMBED_NAMES  # noqa: E402


@dataclass
class TextTokConfig(TiTokConfig):
    # textok_titok_config fields added by issue 5 (metadata keys = field names)
    arch: str = "titok"                # "titok" (TiTok / TA-TiTok) or "textok"
    text_dim: int = 0                  # Dt, width of the text embeddings (0 = no text)
    text_len: int = 0                  # Lt, text positions
    text_in_encoder: int = 0
    text_in_decoder: int = 0
    text_optional: int = 0             # may run without text (then every text key is masked)

    @property
    def num_patches(self):
        return self.grid * self.grid

    @property
    def enc_out_channels(self):
        return 2 * self.token_size if self.quantize_mode == "vae" else self.token_size

    def check(self):
        assert self.arch in ("titok", "textok")
        assert self.quantize_mode in ("vq", "vae", "none")
        assert self.image_size % self.patch_size == 0
        assert self.enc_width % self.enc_heads == 0 and self.dec_width % self.dec_heads == 0
        if self.quantize_mode == "vq":
            assert self.codebook_size > 0
        has_text = self.text_in_encoder or self.text_in_decoder
        assert self.text_in_encoder in (0, 1) and self.text_in_decoder in (0, 1) and self.text_optional in (0, 1)
        # text_dim / text_len are 0 iff neither stack takes text
        assert (self.text_dim > 0 and self.text_len > 0) if has_text else (self.text_dim == 0 and self.text_len == 0)
        assert has_text or not self.text_optional
        # text models are never legacy; TexTok never is
        assert not (self.is_legacy and (has_text or self.arch == "textok"))
        return self

    def to_meta(self):
        """Metadata strings keyed by the textok_titok_config field names: the titok_ref.py keys in
        the same order (pixel_* zero / empty, codebook_size and use_l2_norm "0" unless vq), then arch,
        text_dim, text_len, text_in_encoder, text_in_decoder, text_optional."""
        meta = OrderedDict()
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "pixel_channel_mult":
                meta["pixel_num_levels"] = str(len(v) if self.is_legacy else 0)
                meta[f.name] = ",".join(str(m) for m in v) if self.is_legacy else ""
            elif f.name.startswith("pixel_") and not self.is_legacy:
                meta[f.name] = "0"
            elif f.name in ("quantize_mode", "arch"):
                meta[f.name] = v
            elif f.name in ("codebook_size", "use_l2_norm") and self.quantize_mode != "vq":
                meta[f.name] = "0"
            else:
                meta[f.name] = str(int(v))
        return meta


NONLEGACY = dict(is_legacy=0, pixel_codebook_size=0, pixel_z_channels=0, pixel_hidden=0,
                 pixel_channel_mult=(), pixel_res_blocks=0, pixel_groups=0)


def textok_config(name):
    """The golden configs (tests/golden/textok) and official-sized TA-TiTok / TexTok ones."""
    tiny = dict(image_size=32, patch_size=8, num_latent_tokens=8, token_size=8,
                enc_width=32, enc_layers=2, enc_heads=2, enc_mlp=64,
                dec_width=32, dec_layers=2, dec_heads=2, dec_mlp=64, arch="textok", **NONLEGACY)
    txt = dict(text_dim=24, text_len=7)
    cfgs = {
        # text in both stacks, VAE bottleneck (the paper's "KL" tokenizer)
        "textok_both": lambda: TextTokConfig(quantize_mode="vae", codebook_size=0, use_l2_norm=0,
                                             text_in_encoder=1, text_in_decoder=1, **txt, **tiny),
        # text in the encoder only, VQ with l2-normalised search
        "textok_enc": lambda: TextTokConfig(quantize_mode="vq", codebook_size=32, use_l2_norm=1,
                                            text_in_encoder=1, text_in_decoder=0, **txt, **tiny),
        # text in the decoder only, plain continuous tokens
        "textok_dec": lambda: TextTokConfig(quantize_mode="none", codebook_size=0, use_l2_norm=0,
                                            text_in_encoder=0, text_in_decoder=1, **txt, **tiny),
        # no text at all (the no-text TexTok ablation), VAE
        "textok_none": lambda: TextTokConfig(quantize_mode="vae", codebook_size=0, use_l2_norm=0,
                                             text_in_encoder=0, text_in_decoder=0, text_dim=0, text_len=0,
                                             **tiny),
        # TA-TiTok layout (official names): non-legacy TiTok VQ + decoder text guidance, CLIP-L text
        # (77 x 768); small ViTs so that the 768-wide projection stays the largest tensor
        "tatitok_tiny": lambda: TextTokConfig(
            image_size=32, patch_size=8, num_latent_tokens=6, token_size=8,
            enc_width=32, enc_layers=1, enc_heads=2, enc_mlp=64,
            dec_width=32, dec_layers=2, dec_heads=2, dec_mlp=64,
            quantize_mode="vq", codebook_size=32, use_l2_norm=0, arch="titok",
            text_dim=768, text_len=77, text_in_encoder=0, text_in_decoder=1, **NONLEGACY),
        # official-sized, for parameter counts (architecture.md 3.1: 462 entries, 390,800,532 params)
        "tatitok_bl32_vq": lambda: TextTokConfig(
            num_latent_tokens=32, token_size=64, enc_width=768, enc_layers=12, enc_heads=12, enc_mlp=3072,
            dec_width=1024, dec_layers=24, dec_heads=16, dec_mlp=4096, quantize_mode="vq", codebook_size=8192,
            use_l2_norm=0, arch="titok", text_dim=768, text_len=77, text_in_decoder=1, **NONLEGACY),
        "tatitok_bl32_vae": lambda: TextTokConfig(
            num_latent_tokens=32, token_size=16, enc_width=768, enc_layers=12, enc_heads=12, enc_mlp=3072,
            dec_width=1024, dec_layers=24, dec_heads=16, dec_mlp=4096, quantize_mode="vae", codebook_size=0,
            use_l2_norm=0, arch="titok", text_dim=768, text_len=77, text_in_decoder=1, **NONLEGACY),
        # TexTok-B at 256 px (textok-paper.md 1.2): ViT-B both sides, patch 8, N = 128, d = 8, T5 text
        "textok_b128": lambda: TextTokConfig(
            image_size=256, patch_size=8, num_latent_tokens=128, token_size=8,
            enc_width=768, enc_layers=12, enc_heads=12, enc_mlp=3072,
            dec_width=768, dec_layers=12, dec_heads=12, dec_mlp=3072, quantize_mode="vae", codebook_size=0,
            use_l2_norm=0, arch="textok", text_dim=768, text_len=128, text_in_encoder=1, text_in_decoder=1,
            **NONLEGACY),
    }
    return cfgs[name]().check()


# ------------------------------------------------------------------------------------------------
# Transformer with key padding

class MaskedBlock(ResidualAttentionBlock):
    """titok_ref.ResidualAttentionBlock (same parameter names) with a key padding mask: kpm (B, L)
    bool, True = a padded key.  torch turns it into an additive -inf on those keys' scores for every
    query row and head; None = no mask (the plain TiTok block, bit for bit)."""

    def forward(self, x, kpm=None):  # x: (L, N, D)
        y = self.ln_1(x)
        x = x + self.attn(y, y, y, need_weights=False, key_padding_mask=kpm)[0]
        return x + self.mlp(self.ln_2(x))


def run_blocks(blocks, x, kpm):
    """(B, L, D) -> (B, L, D) through the blocks in LND layout (only a transpose)."""
    x = x.permute(1, 0, 2)
    for blk in blocks:
        x = blk(x, kpm)
    return x.permute(1, 0, 2)


def text_rows(proj, pos, text):
    """text (B, Lt, Dt) -> (B, Lt, D): projection, then the position add (no LN of its own)."""
    return proj(text) + pos


def key_padding(B, n_front, text_mask, device):
    """kpm (B, n_front + Lt) bool: False for the n_front image-side rows, ~mask for the text rows."""
    front = torch.zeros(B, n_front, dtype=torch.bool, device=device)
    return torch.cat([front, text_mask <= 0.5], dim=1)


# ------------------------------------------------------------------------------------------------
# Encoder: image (+ text) -> (B, Cq, 1, K)

class TextEncoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        D, P = cfg.enc_width, cfg.num_patches
        # own parameters first in state_dict order, in registration order
        if cfg.arch == "titok":
            self.class_embedding = nn.Parameter(torch.empty(1, D))
            self.positional_embedding = nn.Parameter(torch.empty(P + 1, D))
        else:
            self.positional_embedding = nn.Parameter(torch.empty(P, D))
        self.latent_token_positional_embedding = nn.Parameter(torch.empty(cfg.num_latent_tokens, D))
        if cfg.text_in_encoder:
            self.text_guidance_positional_embedding = nn.Parameter(torch.empty(cfg.text_len, D))
        self.patch_embed = nn.Conv2d(3, D, cfg.patch_size, stride=cfg.patch_size, bias=True)
        self.ln_pre = nn.LayerNorm(D, eps=1e-5)
        self.transformer = nn.ModuleList(
            [MaskedBlock(D, cfg.enc_heads, cfg.enc_mlp) for _ in range(cfg.enc_layers)])
        self.ln_post = nn.LayerNorm(D, eps=1e-5)
        self.conv_out = nn.Conv2d(D, cfg.enc_out_channels, 1, bias=True)
        if cfg.text_in_encoder:
            self.text_guidance_proj = nn.Linear(cfg.text_dim, D, bias=True)

    def forward(self, x, latent_tokens, text=None, text_mask=None):
        cfg, B = self.cfg, x.shape[0]
        D, K, P = cfg.enc_width, cfg.num_latent_tokens, cfg.num_patches
        x = self.patch_embed(x).reshape(B, D, P).permute(0, 2, 1)           # token = row*G + col
        if cfg.arch == "titok":
            x = torch.cat([self.class_embedding.unsqueeze(0).expand(B, 1, D), x], dim=1)
        x = x + self.positional_embedding
        front = x.shape[1]                                                 # 1 + P (titok) or P
        lat = (latent_tokens + self.latent_token_positional_embedding).unsqueeze(0).expand(B, K, D)
        parts, kpm = [x, lat], None
        if cfg.text_in_encoder:
            parts.append(text_rows(self.text_guidance_proj, self.text_guidance_positional_embedding, text))
            kpm = key_padding(B, front + K, text_mask, x.device)
        x = torch.cat(parts, dim=1)
        x = run_blocks(self.transformer, self.ln_pre(x), kpm)
        lat = self.ln_post(x[:, front:front + K]).contiguous()             # (B, K, D)
        z = lat.permute(0, 2, 1).reshape(B, D, 1, K)                       # z[c][k] = lat[k][c]
        return self.conv_out(z)                                            # (B, Cq, 1, K)


# ------------------------------------------------------------------------------------------------
# Decoder: (B, C, 1, K) (+ text) -> RGB

class TextDecoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        D, P, p = cfg.dec_width, cfg.num_patches, cfg.patch_size
        if cfg.arch == "titok":
            self.class_embedding = nn.Parameter(torch.empty(1, D))
            self.positional_embedding = nn.Parameter(torch.empty(P + 1, D))
            self.mask_token = nn.Parameter(torch.empty(1, 1, D))
        else:
            self.positional_embedding = nn.Parameter(torch.empty(P, D))    # the learnable patch tokens
        self.latent_token_positional_embedding = nn.Parameter(torch.empty(cfg.num_latent_tokens, D))
        if cfg.text_in_decoder:
            self.text_guidance_positional_embedding = nn.Parameter(torch.empty(cfg.text_len, D))
        self.decoder_embed = nn.Linear(cfg.token_size, D, bias=True)
        self.ln_pre = nn.LayerNorm(D, eps=1e-5)
        self.transformer = nn.ModuleList(
            [MaskedBlock(D, cfg.dec_heads, cfg.dec_mlp) for _ in range(cfg.dec_layers)])
        self.ln_post = nn.LayerNorm(D, eps=1e-5)
        self.ffn = nn.Sequential(nn.Conv2d(D, p * p * 3, 1, bias=True))
        if cfg.arch == "titok":
            self.conv_out = nn.Conv2d(3, 3, 3, padding=1, bias=True)
        if cfg.text_in_decoder:
            self.text_guidance_proj = nn.Linear(cfg.text_dim, D, bias=True)

    def forward(self, z, text=None, text_mask=None):
        cfg, B = self.cfg, z.shape[0]
        D, K, G, p, P = cfg.dec_width, cfg.num_latent_tokens, cfg.grid, cfg.patch_size, cfg.num_patches
        x = z.reshape(B, cfg.token_size, K).permute(0, 2, 1)               # real transpose -> (B,K,C)
        x = self.decoder_embed(x) + self.latent_token_positional_embedding[:K]
        if cfg.arch == "titok":
            masks = self.mask_token.expand(B, P, D)                        # one token, repeated
            masks = torch.cat([self.class_embedding.unsqueeze(0).expand(B, 1, D), masks], dim=1)
            front = masks + self.positional_embedding                      # [cls, P mask tokens]
        else:
            front = self.positional_embedding.unsqueeze(0).expand(B, P, D)  # the patch tokens
        n_front = front.shape[1]
        parts, kpm = [front, x], None
        if cfg.text_in_decoder:
            parts.append(text_rows(self.text_guidance_proj, self.text_guidance_positional_embedding, text))
            kpm = key_padding(B, n_front + K, text_mask, z.device)
        x = torch.cat(parts, dim=1)
        x = run_blocks(self.transformer, self.ln_pre(x), kpm)
        first = 1 if cfg.arch == "titok" else 0
        x = self.ln_post(x[:, first:first + P])                            # (B, P, D)
        x = x.permute(0, 2, 1).reshape(B, D, G, G)
        y = self.ffn(x)                                                    # (B, p*p*3, G, G)
        # b (p1 p2 c) h w -> b c (h p1) (w p2): channel index (p1*p + p2)*3 + c
        y = y.reshape(B, p, p, 3, G, G).permute(0, 3, 4, 1, 5, 2).reshape(B, 3, G * p, G * p)
        return self.conv_out(y) if cfg.arch == "titok" else y


# ------------------------------------------------------------------------------------------------
# The tokenizer

class TextTok(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        cfg.check()
        self.cfg = cfg
        self.latent_tokens = nn.Parameter(torch.empty(cfg.num_latent_tokens, cfg.enc_width))
        self.encoder = TextEncoder(cfg)
        self.decoder = TextDecoder(cfg)
        if cfg.quantize_mode == "vq":
            self.quantize = Codebook(cfg.codebook_size, cfg.token_size)

    # -- text ---------------------------------------------------------------------------------

    def prepare_text(self, text, text_mask, B, dtype):
        """-> (text (B, Lt, Dt), mask (B, Lt) float 0/1) or (None, None) for a model without text.
        text (B, L, Dt) with L <= Lt: rows L..Lt-1 are padding; mask None = all L rows real;
        text None (text_optional models only) = every text key masked."""
        cfg = self.cfg
        if not (cfg.text_in_encoder or cfg.text_in_decoder):
            assert text is None, "this model takes no text"
            return None, None
        Lt, Dt = cfg.text_len, cfg.text_dim
        if text is None:
            assert cfg.text_optional, "text required (text_optional = 0)"
            return torch.zeros(B, Lt, Dt, dtype=dtype), torch.zeros(B, Lt, dtype=dtype)
        L = text.shape[1]
        assert text.shape[0] == B and text.shape[2] == Dt and 1 <= L <= Lt
        mask = torch.ones(B, L, dtype=dtype) if text_mask is None else text_mask.to(dtype)
        if L < Lt:
            text = torch.cat([text, text.new_zeros(B, Lt - L, Dt)], dim=1)
            mask = torch.cat([mask, mask.new_zeros(B, Lt - L)], dim=1)
        return text.to(dtype), mask

    # -- quantiser (as titok_ref.TiTok) ------------------------------------------------------

    def _codebook(self):
        e = self.quantize.embedding.weight
        return F.normalize(e, dim=-1, eps=1e-12) if self.cfg.use_l2_norm else e

    def vq_distances(self, pre_quant):
        C = self.cfg.token_size
        z = pre_quant.permute(0, 2, 3, 1).reshape(-1, C)                   # row b*K + k
        if self.cfg.use_l2_norm:
            z = F.normalize(z, dim=-1, eps=1e-12)
        e = self._codebook()
        d = (z * z).sum(1, keepdim=True) + (e * e).sum(1)[None, :] - 2.0 * (z @ e.t())
        return z, d

    def lookup(self, ids):
        B, K = ids.shape
        v = F.embedding(ids.reshape(-1), self._codebook()).reshape(B, K, self.cfg.token_size)
        return v.permute(0, 2, 1).reshape(B, self.cfg.token_size, 1, K)

    # -- public API --------------------------------------------------------------------------

    def encode_pre(self, x, text=None, text_mask=None):
        """The encoder output before quantisation, (B, Cq, 1, K) (the training step's entry)."""
        text, mask = self.prepare_text(text, text_mask, x.shape[0], x.dtype)
        if self.cfg.text_in_encoder:
            return self.encoder(x, self.latent_tokens, text, mask)
        return self.encoder(x, self.latent_tokens)

    def encode(self, x, text=None, text_mask=None):
        """x (B,3,S,S) in [0,1]; text (B, L, Dt), text_mask (B, L) (1 real / 0 pad).  Returns dict:
        pre_quant (B,Cq,1,K); latents (B,C,1,K) (vq: looked-up codes, vae: mean, none: pre_quant);
        tokens (B,K) and margin (B*K) (vq only); logvar (vae only)."""
        B = x.shape[0]
        pre = self.encode_pre(x, text, text_mask)
        out = {"pre_quant": pre}
        mode = self.cfg.quantize_mode
        if mode == "vq":
            z, d = self.vq_distances(pre)
            ids = torch.argmin(d, dim=1)                                   # first index on ties
            two = torch.topk(d, 2, dim=1, largest=False).values
            e = self._codebook()
            scale = (z * z).sum(1) + (e[ids] * e[ids]).sum(1)
            out["margin"] = (two[:, 1] - two[:, 0]) / scale.clamp_min(1e-30)
            out["tokens"] = ids.reshape(B, -1)
            out["latents"] = self.lookup(out["tokens"])
        elif mode == "vae":
            mean, logvar = pre.chunk(2, dim=1)                             # first C = mean
            out["latents"] = mean
            out["logvar"] = logvar.clamp(-30.0, 20.0)
        else:
            out["latents"] = pre
        return out

    def decode(self, latents, text=None, text_mask=None):
        """latents (B,C,1,K) -> image (B,3,S,S), not clamped."""
        B = latents.shape[0]
        text, mask = self.prepare_text(text, text_mask, B, latents.dtype)
        if self.cfg.text_in_decoder:
            return self.decoder(latents, text, mask)
        return self.decoder(latents)

    def decode_tokens(self, ids, text=None, text_mask=None):
        if ids.dim() == 3:
            ids = ids.squeeze(1)
        return self.decode(self.lookup(ids), text, text_mask)


# ------------------------------------------------------------------------------------------------
# Init

TEXT_EMBED_NAMES = EMBED_NAMES + ("text_guidance_positional_embedding",)


@torch.no_grad()
def init_weights(model, seed, embed_std=0.5):
    """titok_ref.init_weights extended to the text tensors (same draws, same order rules):
    matrices / conv kernels (text_guidance_proj included) N(0, 1/fan_in); biases N(0, 0.1^2); LN
    weights 1 + N(0, 0.1^2); embeddings (text positional included) N(0, embed_std^2); codebooks
    N(0, 1).  One float32 torch.Generator, draws in state_dict order."""
    g = torch.Generator().manual_seed(seed)
    for name, p in model.state_dict(keep_vars=True).items():
        leaf = name.rsplit(".", 1)[-1]
        r = torch.randn(p.shape, generator=g, dtype=torch.float32)
        if name.endswith("embedding.weight") and ("quantize." in name):
            v = r
        elif leaf in TEXT_EMBED_NAMES:
            v = embed_std * r
        elif p.dim() >= 2:
            v = r / math.sqrt(p[0].numel())
        elif leaf.endswith("bias"):
            v = 0.1 * r
        else:
            v = 1.0 + 0.1 * r
        p.copy_(v.to(p.dtype))
    return model


@torch.no_grad()
def init_spec(model, seed):
    """Spec section 4 (TiTok._init_weights extended): Linear / conv weights (patch_embed, attention,
    MLP, conv_out, decoder_embed, ffn, text_guidance_proj) trunc_normal(0, 0.02) with torch's
    default absolute bounds [-2, 2] (so, at std 0.02, in effect untruncated); every bias 0; LN
    weight 1, bias 0; embeddings (latent_tokens, class, positional, latent positional, mask_token,
    text positional) width^-0.5 * randn with the width of their stack (latent_tokens: encoder);
    VQ codebook U(-1/V, 1/V).  Statistical only: the C init draws from its own RNG.
    Where this (the spec) departs from upstream TiTok._init_weights, which applies trunc_normal only
    to nn.Linear / Conv / Embedding modules: attn.in_proj_weight is a bare nn.MultiheadAttention
    parameter there, so upstream keeps torch's xavier_uniform_ for it (bias 0); and TA-TiTok's
    decoder, built after _init_weights ran, keeps torch's default Linear / conv init
    (architecture.md 3.1)."""
    torch.manual_seed(seed)
    cfg = model.cfg
    for name, p in model.state_dict(keep_vars=True).items():
        leaf = name.rsplit(".", 1)[-1]
        if name == "quantize.embedding.weight":
            p.uniform_(-1.0 / cfg.codebook_size, 1.0 / cfg.codebook_size)
        elif leaf in TEXT_EMBED_NAMES:
            width = cfg.dec_width if name.startswith("decoder.") else cfg.enc_width
            p.copy_(width ** -0.5 * torch.randn(p.shape, dtype=p.dtype))
        elif leaf.endswith("bias"):
            p.zero_()
        elif p.dim() >= 2:
            nn.init.trunc_normal_(p, mean=0.0, std=0.02)
        else:                                                              # LayerNorm weight
            p.fill_(1.0)
    return model


def count_params(model):
    return sum(v.numel() for v in model.state_dict().values())


if __name__ == "__main__":
    for name in sys.argv[1:] or ["textok_both", "textok_enc", "textok_dec", "textok_none", "tatitok_tiny",
                                 "tatitok_bl32_vq", "tatitok_bl32_vae", "textok_b128"]:
        m = TextTok(textok_config(name))
        print(f"{name}: {len(m.state_dict())} entries, {count_params(m):,} params")
