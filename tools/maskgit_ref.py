#!/usr/bin/python3
"""Independent PyTorch reference for TiTok's MaskGIT generators (plain torch, torch 1.13).

Written from /work/shared/reference/architecture.md section 4 (token space, ImageBert, UViTBert,
the sampling loop, masking and the MLM loss) and section 8 (pitfalls 2, 3, 4, 5, 7, 8, 17) only. It
does not import the official 1d-tokenizer code, nor Hugging Face transformers: the BERT model is
written out in plain torch with Hugging Face's module names, so that state_dict() has exactly the
official parameter names, shapes and order:

    ImageBert ("bert", TiTok-L-32 / B-64):
        model.embeddings.{word_embeddings,position_embeddings,token_type_embeddings}.weight,
        model.embeddings.LayerNorm.{weight,bias},
        model.encoder.layer.{i}.attention.self.{query,key,value}.{weight,bias},
        model.encoder.layer.{i}.attention.output.dense.{weight,bias},
        model.encoder.layer.{i}.attention.output.LayerNorm.{weight,bias},
        model.encoder.layer.{i}.intermediate.dense.{weight,bias},
        model.encoder.layer.{i}.output.dense.{weight,bias},
        model.encoder.layer.{i}.output.LayerNorm.{weight,bias},
        model.lm_head.{weight,bias}
    UViTBert ("uvit", TiTok-S-128):
        pos_embed, embeddings.weight, {in_blocks.{i},mid_block,out_blocks.{i}}.{norm1,attn.qkv,
        attn.proj,norm2,mlp.fc1,mlp.fc2}[, skip_linear (out_blocks, last)], norm, lm_head

Token space (V = codebook_size): image ids 0..V-1, mask id V, class c -> V+1+c, the null class
V+1+num_classes; the network reads [class id, L image ids] and returns lm_head(h[:, 1:]) (B, L, V).

Entry points: MaskGITConfig, make_model(cfg), forward(model, ids, classes) (classes in [0, num_classes],
num_classes = null), init_weights(model, seed), sample_step(...), unmask_counts(L, T),
mask_tokens(...), mlm_loss(...). Works in any float dtype (the goldens run float64).
"""
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class MaskGITConfig:
    # field names = textok_maskgit_config's (they become the metadata keys)
    arch: str = "bert"          # "bert" (ImageBert) or "uvit" (UViTBert)
    codebook_size: int = 4096
    num_classes: int = 1000
    seq_len: int = 32
    hidden: int = 768
    depth: int = 24
    heads: int = 16
    mlp_hidden: int = 3072

    @property
    def vocab(self):
        return self.codebook_size + self.num_classes + 2

    def to_meta(self):
        return {"textok.model": "maskgit", "arch": self.arch, "codebook_size": str(self.codebook_size),
                "num_classes": str(self.num_classes), "seq_len": str(self.seq_len), "hidden": str(self.hidden),
                "depth": str(self.depth), "heads": str(self.heads), "mlp_hidden": str(self.mlp_hidden)}


def attention(q, k, v, heads):
    """q, k, v (B, T, D); head h takes features h*hd..(h+1)*hd; scale 1/sqrt(hd); no mask."""
    B, T, D = q.shape
    hd = D // heads
    q = q.view(B, T, heads, hd).transpose(1, 2)
    k = k.view(B, T, heads, hd).transpose(1, 2)
    v = v.view(B, T, heads, hd).transpose(1, 2)
    s = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
    o = torch.softmax(s, dim=-1) @ v
    return o.transpose(1, 2).reshape(B, T, D)


# ------------------------------------------------------------------------------------------------
# ImageBert: Hugging Face BertModel (post-norm, eps 1e-12, exact GELU), written out

BERT_EPS = 1e-12


class _SelfAttn(nn.Module):
    def __init__(self, D):
        super().__init__()
        self.query, self.key, self.value = nn.Linear(D, D), nn.Linear(D, D), nn.Linear(D, D)


class _DenseLN(nn.Module):
    def __init__(self, din, D):
        super().__init__()
        self.dense = nn.Linear(din, D)
        self.LayerNorm = nn.LayerNorm(D, eps=BERT_EPS)


class _Attention(nn.Module):
    def __init__(self, D):
        super().__init__()
        self.self = _SelfAttn(D)
        self.output = _DenseLN(D, D)


class _Intermediate(nn.Module):
    def __init__(self, D, M):
        super().__init__()
        self.dense = nn.Linear(D, M)


class BertLayer(nn.Module):
    def __init__(self, D, M, heads):
        super().__init__()
        self.heads = heads
        self.attention = _Attention(D)
        self.intermediate = _Intermediate(D, M)
        self.output = _DenseLN(M, D)

    def forward(self, x):
        sa = self.attention.self
        a = attention(sa.query(x), sa.key(x), sa.value(x), self.heads)
        o = self.attention.output
        a = o.LayerNorm(x + o.dense(a))                      # post-norm
        h = F.gelu(self.intermediate.dense(a))              # exact erf GELU
        return self.output.LayerNorm(a + self.output.dense(h))


class _Embeddings(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        D = cfg.hidden
        self.word_embeddings = nn.Embedding(cfg.vocab, D)
        self.position_embeddings = nn.Embedding(cfg.seq_len + 1, D)
        self.token_type_embeddings = nn.Embedding(2, D)
        self.LayerNorm = nn.LayerNorm(D, eps=BERT_EPS)

    def forward(self, ids):
        T = ids.shape[1]
        # token_type_ids default to zeros: row 0 is added at every position; positions 0..T-1
        e = self.word_embeddings(ids) + self.token_type_embeddings.weight[0]
        e = e + self.position_embeddings.weight[:T]
        return self.LayerNorm(e)


class _Encoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.layer = nn.ModuleList([BertLayer(cfg.hidden, cfg.mlp_hidden, cfg.heads) for _ in range(cfg.depth)])


class _BertModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.embeddings = _Embeddings(cfg)
        self.encoder = _Encoder(cfg)
        self.lm_head = nn.Linear(cfg.hidden, cfg.codebook_size)   # attached after the encoder, as official


class ImageBert(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.model = _BertModel(cfg)

    def hidden(self, full_ids):
        x = self.model.embeddings(full_ids)
        for layer in self.model.encoder.layer:
            x = layer(x)
        return x

    def head(self, x):
        return self.model.lm_head(x[:, 1:])


# ------------------------------------------------------------------------------------------------
# UViTBert: pre-norm blocks, fused qkv without bias, long skips (LIFO), final LN; eps 1e-5

class _UAttn(nn.Module):
    def __init__(self, D, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(D, 3 * D, bias=False)
        self.proj = nn.Linear(D, D)

    def forward(self, x):
        D = x.shape[-1]
        qkv = self.qkv(x)     # (B, T, 3D): 'B L (K H D)' with K = 3 outermost
        return self.proj(attention(qkv[..., :D], qkv[..., D:2 * D], qkv[..., 2 * D:], self.heads))


class _Mlp(nn.Module):
    def __init__(self, D, M):
        super().__init__()
        self.fc1 = nn.Linear(D, M)
        self.fc2 = nn.Linear(M, D)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class UViTBlock(nn.Module):
    def __init__(self, D, M, heads, skip):
        super().__init__()
        self.norm1 = nn.LayerNorm(D, eps=1e-5)
        self.attn = _UAttn(D, heads)
        self.norm2 = nn.LayerNorm(D, eps=1e-5)
        self.mlp = _Mlp(D, M)
        self.skip_linear = nn.Linear(2 * D, D) if skip else None   # registered last

    def forward(self, x, skip=None):
        if self.skip_linear is not None:
            x = self.skip_linear(torch.cat([x, skip], dim=-1))
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class UViTBert(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        assert cfg.depth % 2 == 0
        self.cfg = cfg
        D, M, H, n = cfg.hidden, cfg.mlp_hidden, cfg.heads, cfg.depth // 2
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.seq_len + 1, D))   # own parameter: first
        self.embeddings = nn.Embedding(cfg.vocab, D)
        self.in_blocks = nn.ModuleList([UViTBlock(D, M, H, False) for _ in range(n)])
        self.mid_block = UViTBlock(D, M, H, False)
        self.out_blocks = nn.ModuleList([UViTBlock(D, M, H, True) for _ in range(n)])
        self.norm = nn.LayerNorm(D, eps=1e-5)
        self.lm_head = nn.Linear(D, cfg.codebook_size)

    def hidden(self, full_ids):
        x = self.embeddings(full_ids) + self.pos_embed[:, :full_ids.shape[1]]
        skips = []
        for b in self.in_blocks:
            x = b(x)
            skips.append(x)
        x = self.mid_block(x)
        for b in self.out_blocks:
            x = b(x, skips.pop())          # out_blocks[0] pairs with the last in_block
        return self.norm(x)

    def head(self, x):
        return self.lm_head(x[:, 1:])


def make_model(cfg):
    """ImageBert or UViTBert for cfg (state_dict: the official names, no extra prefix)."""
    return ImageBert(cfg) if cfg.arch == "bert" else UViTBert(cfg)


def full_ids(cfg, ids, classes):
    """[V+1+class, ids]; classes in [0, num_classes] (num_classes = the null class)."""
    cond = (classes.long() + cfg.codebook_size + 1).view(-1, 1)
    return torch.cat([cond, ids.long()], dim=1)


def forward(model, ids, classes):
    """logits (B, L, V) for ids (B, L) in [0, V] and classes (B) in [0, num_classes]."""
    return model.head(model.hidden(full_ids(model.cfg, ids, classes)))


def init_weights(model, seed):
    """Seeded N(0, 1/fan_in) matrices and tables (O(1) activations in a tiny model), small random
    biases and LayerNorm affines (so every parameter's gradient is exercised)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                base = 1.0 if (name.endswith("LayerNorm.weight") or ".norm" in name or name.startswith("norm")) \
                    and name.endswith("weight") else 0.0
                p.copy_(base + 0.1 * torch.randn(p.shape, generator=g, dtype=torch.float64).to(p.dtype))
            else:
                fan_in = p.shape[-1]
                p.copy_((torch.randn(p.shape, generator=g, dtype=torch.float64) / math.sqrt(fan_in)).to(p.dtype))
    return model


# ------------------------------------------------------------------------------------------------
# sampling (architecture.md 4.4): one step of ImageBert.generate with given uniforms

def gumbel(u):
    """G = -log(max(-log(max(U, 1e-20)), 1e-20))"""
    return -torch.log(torch.clamp(-torch.log(torch.clamp(u, min=1e-20)), min=1e-20))


def guidance_at(decay, g, s, T, pw):
    """the cfg value step s uses (0 = no guidance pass)"""
    if decay == "constant":
        return g
    if decay == "linear":
        return s / T * g          # set to r*g at the end of step s-1; 0 at step 0
    return (g - 1.0) * (1.0 - math.cos(math.pi * (s / T) ** pw)) / 2.0 + 1.0


def mask_len(L, T, s, n_masked0):
    r = (s + 1) / T
    n = math.floor(L * (math.acos(r) / (math.pi * 0.5)))
    return max(1, min(n_masked0 - 1, n))


def unmask_counts(L, T):
    """tokens decoded per step when no confidences tie"""
    m, out = L, []
    for s in range(T):
        n = mask_len(L, T, s, m) if s < T - 1 else 0
        out.append(m - n)
        m = n
    return out


def sample_step(model, ids, classes, s, T, g, decay, pw, tau, anneal, u1, u2):
    """-> (new ids (B, L) long, argmax margin, cut margin). u1 (B, L, V), u2 (B, L) uniforms in
    [0, 1). Margins: the smallest top-1 minus top-2 gap of the noisy logits over masked positions,
    and the smallest gap between the cut and the next confidence (inf when nothing is re-masked)."""
    cfg_m = model.cfg
    V, L = cfg_m.codebook_size, cfg_m.seq_len
    B = ids.shape[0]
    r = (s + 1) / T
    temp = tau * (1.0 - r)
    is_mask = ids == V
    cfg = guidance_at(decay, g, s, T, pw)
    with torch.no_grad():
        if cfg != 0:
            c = forward(model, ids, classes)
            u = forward(model, ids, torch.full_like(classes, cfg_m.num_classes))
            logits = u + cfg * (c - u) if decay == "power-cosine" else c + cfg * (c - u)
        else:
            logits = forward(model, ids, classes)
        if anneal:
            logits = logits / (0.5 + 0.8 * (1.0 - r))
        noisy = logits + temp * gumbel(u1.to(logits.dtype))
        sampled = noisy.argmax(dim=-1)
        top2 = noisy.topk(2, dim=-1).values
        gaps = (top2[..., 0] - top2[..., 1])[is_mask]
        amargin = float(gaps.min()) if gaps.numel() else math.inf
        sl = logits.gather(-1, sampled.unsqueeze(-1)).squeeze(-1)
        sampled = torch.where(is_mask, sampled, ids.long())
        sl = torch.where(is_mask, sl, torch.full_like(sl, math.inf))
        if s == T - 1:
            return sampled, amargin, math.inf
        n = mask_len(L, T, s, int(is_mask[0].sum()))
        conf = sl + temp * gumbel(u2.to(logits.dtype))
        srt = conf.sort(dim=-1).values
        cut = srt[:, n - 1:n]
        cmargin = math.inf
        for b in range(B):
            if n < L and math.isfinite(float(srt[b, n])):
                cmargin = min(cmargin, float(srt[b, n] - srt[b, n - 1]))
        new = torch.where(conf <= cut, torch.full_like(sampled, V), sampled)
        return new, amargin, cmargin


# ------------------------------------------------------------------------------------------------
# training (architecture.md 4.5): masking and the MLM loss

def mask_ratio(schedule, t):
    """float32 t (B) -> float32 ratio, clamped to [1e-6, 1]"""
    if schedule == "arccos":
        r = torch.acos(t) / (math.pi * 0.5)
    elif schedule == "cosine":
        r = torch.cos(t * (math.pi * 0.5))
    else:
        r = 1.0 - t
    return torch.clamp(r, min=1e-6, max=1.0)


def mask_tokens(schedule, t, u):
    """t (B) and u (B, L) float32 uniforms -> masks (B, L) bool: n = max(1, round(L * ratio)) (half
    to even), the positions whose uniform ranks below n (ties by position) are masked."""
    B, L = u.shape
    n = (L * mask_ratio(schedule, t)).round().clamp(min=1)
    # rank[i] = #{j: u_j < u_i} + #{j < i: u_j == u_i}
    less = (u.unsqueeze(1) < u.unsqueeze(2)).sum(-1)
    idx = torch.arange(L)
    eq_before = ((u.unsqueeze(1) == u.unsqueeze(2)) & (idx.view(1, 1, L) < idx.view(1, L, 1))).sum(-1)
    rank = less + eq_before
    return rank < n.view(B, 1)


def mlm_loss(model, tokens, classes, masks, drops, label_smoothing, unmasked_weight):
    """-> (loss, accuracy). tokens (B, L) in [0, V), classes (B), masks (B, L) bool, drops (B) bool
    (dropped -> the null class). loss = sum(l * w) / (sum w + 1e-8), w = 1 masked, unmasked_weight
    else; l = CE with label smoothing over the V classes. accuracy: mean over the batch of the
    argmax hits among the masked tokens (/ (count + 1e-8))."""
    cfg = model.cfg
    V = cfg.codebook_size
    inp = torch.where(masks, torch.full_like(tokens, V), tokens)
    cls = torch.where(drops, torch.full_like(classes, cfg.num_classes), classes)
    logits = forward(model, inp, cls)
    l = F.cross_entropy(logits.reshape(-1, V), tokens.reshape(-1), reduction="none",
                        label_smoothing=label_smoothing).view(tokens.shape)
    w = masks.to(logits.dtype) + (~masks).to(logits.dtype) * unmasked_weight
    loss = (l * w).sum() / (w.sum() + 1e-8)
    mf = masks.to(logits.dtype)
    hit = (logits.argmax(-1) == tokens).to(logits.dtype)
    acc = ((hit * mf).sum(1) / (mf.sum(1) + 1e-8)).mean()
    return loss, acc, logits
