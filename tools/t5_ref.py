#!/usr/bin/python3
"""Independent PyTorch reference for the T5 text encoder (v1.1 / flan-T5 gated, and v1.0 ReLU).

Written from /work/shared/reference/textok-paper.md section 3 only: it does not import or copy
Hugging Face transformers.  What it guarantees is the *interface* of T5EncoderModel:

  * encoder_state_dict(cfg) lists exactly the Hugging Face parameter names and shapes of the
    encoder half (section 3.1), in the order state_dict() gives them; seq2seq_extras(cfg) the
    decoder / lm_head tensors a full T5ForConditionalGeneration file adds (for converter tests);
  * T5Encoder.forward(ids, mask) is section 3.2: shared[ids] (no scaling, no absolute positions),
    the relative-position bias of block 0 (bucket of key - query, section 3.3, computed with
    float32 logs exactly as the Hugging Face code does) reused by every block, key padding added
    as (1 - mask) * finfo(dtype).min, NO 1/sqrt(d_kv) scaling, RMSNorm without mean subtraction
    or bias, the gated tanh-GELU (gelu_new) or exact-GELU FFN, or v1.0's ReLU FFN `wi`, then the
    final RMSNorm = last_hidden_state.  Padding query rows are computed like any other row.

Works in any float dtype (the goldens run it in float64).  Entry points: T5Config, T5Encoder(cfg),
init_weights(model, seed), relative_position_bucket(rel, num_buckets, max_distance).
"""
import math
from collections import OrderedDict
from dataclasses import dataclass, fields

import numpy as np
import torch
import torch.nn as nn


@dataclass
class T5Config:
    # field names = textok_t5_config in textok.h (they become the metadata keys)
    vocab: int = 32128          # embedding rows
    d_model: int = 512
    d_kv: int = 64
    heads: int = 6
    d_ff: int = 1024
    layers: int = 8
    num_buckets: int = 32
    max_distance: int = 128
    gated: int = 1              # 1: wi_0/wi_1 gated FFN (v1.1, flan); 0: v1.0 `wi` + ReLU
    gelu_tanh: int = 1          # gated only: 1 gelu_new (tanh form), 0 exact erf GELU
    eps: float = 1e-6

    @property
    def inner(self):
        return self.heads * self.d_kv

    def to_meta(self):
        """The textok metadata: every field as a decimal string, eps as C's "%.9g" of the float32."""
        meta = {}
        for f in fields(self):
            v = getattr(self, f.name)
            meta[f.name] = "%.9g" % float(np.float32(v)) if f.name == "eps" else str(int(v))
        return meta


def relative_position_bucket(rel, num_buckets=32, max_distance=128):
    """Bidirectional T5 bucket of rel = key_pos - query_pos (LongTensor), section 3.3. The log
    branch runs in float32 as in the Hugging Face code (the bucket is an integer: computing it in
    float64 could move a boundary)."""
    half = num_buckets // 2
    bucket = (rel > 0).long() * half
    n = rel.abs()
    max_exact = half // 2
    is_small = n < max_exact
    # n = 0 would take log(0); those positions are small anyway, so feed them 1 instead
    nf = torch.where(is_small, torch.ones_like(n), n).float()
    large = max_exact + (torch.log(nf / max_exact) / math.log(max_distance / max_exact)
                         * (half - max_exact)).long()
    large = torch.clamp(large, max=half - 1)
    return bucket + torch.where(is_small, n, large)


def rms_norm(x, w, eps):
    # variance without mean subtraction; no bias
    var = x.pow(2).mean(-1, keepdim=True)
    return w * (x * torch.rsqrt(var + eps))


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


def gelu_exact(x):
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


class T5Encoder(nn.Module):
    """Parameters live in one ParameterDict keyed by the Hugging Face names (dots replaced, as
    nn.ParameterDict keys may not hold dots); state_dict_hf() gives them back under their names."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.names = [n for n, _ in encoder_state_dict_shapes(cfg)]
        self.p = nn.ParameterDict({n.replace(".", "__"): nn.Parameter(torch.zeros(s))
                                   for n, s in encoder_state_dict_shapes(cfg)})

    def w(self, name):
        return self.p[name.replace(".", "__")]

    def state_dict_hf(self):
        return OrderedDict((n, self.w(n).detach()) for n in self.names)

    def position_bias(self, L):
        """(H, L, L): bias[h, q, k] = rab[bucket(k - q), h] from block 0's table."""
        pos = torch.arange(L)
        rel = pos[None, :] - pos[:, None]   # [q, k] = k - q
        b = relative_position_bucket(rel, self.cfg.num_buckets, self.cfg.max_distance)
        rab = self.w("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight")
        return rab[b].permute(2, 0, 1)

    def forward(self, ids, mask=None):
        """ids (B, L) long, mask (B, L) 1 real / 0 padding or None -> (B, L, d_model)."""
        c = self.cfg
        B, L = ids.shape
        h = self.w("shared.weight")[ids]
        dt = h.dtype
        bias = self.position_bias(L).to(dt)[None]                      # (1, H, L, L)
        if mask is not None:
            bias = bias + (1.0 - mask.to(dt))[:, None, None, :] * torch.finfo(dt).min
        for i in range(c.layers):
            pre = f"encoder.block.{i}.layer."
            x = rms_norm(h, self.w(pre + "0.layer_norm.weight"), c.eps)

            def heads(t):
                return t.view(B, L, c.heads, c.d_kv).transpose(1, 2)     # (B, H, L, d_kv)
            q = heads(x @ self.w(pre + "0.SelfAttention.q.weight").t())
            k = heads(x @ self.w(pre + "0.SelfAttention.k.weight").t())
            v = heads(x @ self.w(pre + "0.SelfAttention.v.weight").t())
            scores = q @ k.transpose(-1, -2) + bias                       # no 1/sqrt(d_kv)
            att = torch.softmax(scores, dim=-1) @ v
            att = att.transpose(1, 2).reshape(B, L, c.inner)
            h = h + att @ self.w(pre + "0.SelfAttention.o.weight").t()
            x = rms_norm(h, self.w(pre + "1.layer_norm.weight"), c.eps)
            ff = pre + "1.DenseReluDense."
            if c.gated:
                act = gelu_new if c.gelu_tanh else gelu_exact
                y = act(x @ self.w(ff + "wi_0.weight").t()) * (x @ self.w(ff + "wi_1.weight").t())
            else:
                y = torch.relu(x @ self.w(ff + "wi.weight").t())
            h = h + y @ self.w(ff + "wo.weight").t()
        return rms_norm(h, self.w("encoder.final_layer_norm.weight"), c.eps)


def encoder_state_dict_shapes(cfg):
    """(name, shape) of every encoder parameter, in T5EncoderModel.state_dict() order, with the
    embedding under its tied name shared.weight (encoder.embed_tokens.weight is the same tensor)."""
    d, I, F = cfg.d_model, cfg.inner, cfg.d_ff
    out = [("shared.weight", (cfg.vocab, d))]
    for i in range(cfg.layers):
        p = f"encoder.block.{i}.layer."
        out += [(p + "0.SelfAttention.q.weight", (I, d)), (p + "0.SelfAttention.k.weight", (I, d)),
                (p + "0.SelfAttention.v.weight", (I, d)), (p + "0.SelfAttention.o.weight", (d, I))]
        if i == 0:
            out.append((p + "0.SelfAttention.relative_attention_bias.weight", (cfg.num_buckets, cfg.heads)))
        out.append((p + "0.layer_norm.weight", (d,)))
        if cfg.gated:
            out += [(p + "1.DenseReluDense.wi_0.weight", (F, d)), (p + "1.DenseReluDense.wi_1.weight", (F, d))]
        else:
            out.append((p + "1.DenseReluDense.wi.weight", (F, d)))
        out += [(p + "1.DenseReluDense.wo.weight", (d, F)), (p + "1.layer_norm.weight", (d,))]
    out.append(("encoder.final_layer_norm.weight", (d,)))
    return out


def seq2seq_extras(cfg, gen, dtype=torch.float32):
    """A few decoder-side tensors of a T5ForConditionalGeneration file (decoder block 0 with its
    cross-attention, the decoder's final norm, the untied lm_head of v1.1): what a converter must
    drop. Values are random; nothing reads them."""
    d, I, F = cfg.d_model, cfg.inner, cfg.d_ff
    p = "decoder.block.0.layer."
    shapes = [(p + "0.SelfAttention.q.weight", (I, d)), (p + "0.SelfAttention.k.weight", (I, d)),
              (p + "0.SelfAttention.v.weight", (I, d)), (p + "0.SelfAttention.o.weight", (d, I)),
              (p + "0.SelfAttention.relative_attention_bias.weight", (cfg.num_buckets, cfg.heads)),
              (p + "0.layer_norm.weight", (d,)),
              (p + "1.EncDecAttention.q.weight", (I, d)), (p + "1.EncDecAttention.k.weight", (I, d)),
              (p + "1.EncDecAttention.v.weight", (I, d)), (p + "1.EncDecAttention.o.weight", (d, I)),
              (p + "1.layer_norm.weight", (d,)),
              (p + "2.DenseReluDense.wo.weight", (d, F)), (p + "2.layer_norm.weight", (d,)),
              ("decoder.final_layer_norm.weight", (d,)), ("lm_head.weight", (cfg.vocab, d))]
    return [(n, torch.randn(s, generator=gen, dtype=torch.float64).to(dtype)) for n, s in shapes]


def init_weights(model, seed):
    """Seeded weights that keep every activation O(1) and make each part of the forward matter:
    the Hugging Face T5 init scales (q: (d_model d_kv)^-1/2, k/v/wi: d_model^-1/2, o: inner^-1/2,
    wo: d_ff^-1/2, embedding N(0,1)) so scores are O(1) without 1/sqrt(d_kv); relative-bias
    entries N(0, 1) (HF draws them smaller) so a wrong bucket moves a score by O(1); norm weights
    1 + 0.2 N(0,1) so a norm that ignores its weight is caught."""
    c = model.cfg
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n in model.names:
            p = model.w(n)
            z = torch.randn(p.shape, generator=g, dtype=torch.float64)
            if n == "shared.weight":
                s = 1.0
            elif n.endswith("relative_attention_bias.weight"):
                s = 1.0
            elif n.endswith("layer_norm.weight"):
                z, s = 1.0 + 0.2 * z, 1.0
            elif n.endswith("q.weight"):
                s = (c.d_model * c.d_kv) ** -0.5
            elif n.endswith("o.weight"):
                s = c.inner ** -0.5
            elif n.endswith("wo.weight"):
                s = c.d_ff ** -0.5
            else:                               # k, v, wi, wi_0, wi_1
                s = c.d_model ** -0.5
            p.copy_((z * s).to(p.dtype))
    return model
