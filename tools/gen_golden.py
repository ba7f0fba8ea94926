#!/usr/bin/python3
"""Independent PyTorch reference ("golden") data for the textok C kernels.

Regenerate with:

    /usr/bin/python3 tools/gen_golden.py           # write tests/golden/*, then self-check
    /usr/bin/python3 tools/gen_golden.py --check   # only re-read and validate existing files
    /usr/bin/python3 tools/gen_golden.py --out DIR # write into DIR instead (CI: reproducibility)

Needs Debian's system Python (torch 1.13); uses only torch, torch.nn.functional,
torch.optim.AdamW and the stdlib.  It never reads the C sources: this is an
independent reference.  Every run writes every file and is deterministic
(fixed seeds, single thread), so re-running yields byte-identical files.

Numerics
--------
Inputs are generated as float32 (seeded torch.Generator per op) and stored
exactly as used.  All reference math is done in float64 (inputs converted with
.double()); gradients come from torch.autograd.grad(out, inputs,
grad_outputs=dout.double()) where `dout` is a random-normal float32 tensor with
the output's shape.  Results are rounded to float32 when stored.

File format
-----------
One safetensors file per op: tests/golden/<op>.safetensors

    u64 little-endian N | N bytes of JSON header (space-padded to a multiple of 8) | data

The header is {"__metadata__": {...}, "<name>": {"dtype": "F32", "shape": [...],
"data_offsets": [begin, end]}, ...}; offsets are relative to the start of the
data buffer and the tensors are contiguous, in header order.  Every tensor is
F32 little-endian; integer-valued tensors (indices, targets, masks) are stored
as exact float32 values.

Metadata (all values are strings):
    magic = "textok-golden", version = "1", op = "<op>", n_cases = "<n>",
    torch = torch.__version__, regenerate = "/usr/bin/python3 tools/gen_golden.py",
    c<i>.dims = "key=value,key=value,..."   (ints as ints, floats as Python repr())
Tensor names are "c<i>.<name>", i = 0 .. n_cases-1.

Ops (dims; tensors with shapes).  "(if flag)" tensors are present only when
that flag in dims is 1.
 1. matmul: batch,M,N,K,trans_a,trans_b,has_bias
      a (batch,M,K) [trans_a=0] or (batch,K,M) [trans_a=1]
      b (batch,K,N) [trans_b=0] or (batch,N,K) [trans_b=1]
      bias (N) (if has_bias); out (batch,M,N) = op(a) @ op(b) + bias
      dout (batch,M,N), da (shape of a), db (shape of b), dbias (N) (if has_bias)
 2. layernorm: N,C,eps,affine
      x (N,C), weight (C), bias (C) (if affine), out (N,C), mean (N),
      rstd (N) = 1/sqrt(biased var + eps), dout, dx, dweight, dbias (if affine)
 3. rmsnorm: N,C,eps   out = x * rsqrt(mean(x^2,-1) + eps) * weight
      x (N,C), weight (C), out (N,C), rstd (N), dout, dx, dweight
 4. gelu: n,approx   (0 = exact erf, 1 = tanh approximation)
      x (n), out (n), dout (n), dx (n)
 5. silu: n          x, out, dout, dx (all (n))
 6. softmax: rows,cols (softmax over cols)
      x (rows,cols), out, dout, dx
 7. attention: B,Tq,Tk,C,H,scale,has_bias,has_mask
      q (B,Tq,C), k (B,Tk,C), v (B,Tk,C); head h uses channels
      [h*C/H, (h+1)*C/H); scale = 1/sqrt(C/H);
      bias (H,Tq,Tk) (if has_bias), added to the scaled scores, broadcast over B;
      mask (B,Tk) (if has_mask), 1.0 = key may be attended, 0.0 = masked (-inf);
      out (B,Tq,C), lse (B,H,Tq) = logsumexp over keys of the masked scaled
      scores, dout (B,Tq,C), dq, dk, dv, dbias (H,Tq,Tk) (if has_bias; summed over B)
 8. add: n           a, b, out, dout, da, db (all (n))
 9. modulate: B,T,C  out = x*(1+scale[:,None,:]) + shift[:,None,:]
      x (B,T,C), shift (B,C), scale (B,C), out (B,T,C), dout, dx, dshift, dscale
10. gate: B,T,C      out = resid + gate[:,None,:]*x
      resid (B,T,C), x (B,T,C), gate (B,C), out, dout, dresid, dx, dgate
11. conv2d: B,C,H,W,OC,KH,KW,stride,pad,has_bias
      x (B,C,H,W), weight (OC,C,KH,KW), bias (OC) (if has_bias),
      out (B,OC,OH,OW) = F.conv2d(x, weight, bias, stride, padding=pad),
      dout, dx, dweight, dbias (if has_bias)
12. groupnorm: B,C,H,W,G,eps
      x (B,C,H,W), weight (C), bias (C), out = F.group_norm, mean (B,G),
      rstd (B,G) (biased variance over (C/G)*H*W), dout, dx, dweight, dbias
13. upsample: B,C,H,W,factor (nearest)
      x (B,C,H,W), out (B,C,H*factor,W*factor), dout, dx
14. codebook: N,K,D (no gradients)
      z (N,D), codebook (K,D), idx (N) = argmin_j of the float64 squared distance
      sum(z^2) + sum(e^2) - 2 z@e^T (ties -> lowest index), dist (N) = that
      minimum, margin (N) = second smallest minus smallest distance
15. cross_entropy: N,V,label_smoothing
      logits (N,V), targets (N) (class index, -1 = ignored -> loss 0, grad 0),
      losses (N) = F.cross_entropy(reduction='none', ignore_index=-1,
      label_smoothing=...), dlosses (N), dlogits (N,V) = d sum(losses*dlosses)
16. adamw: n,lr,beta1,beta2,eps,weight_decay,steps
      params0 (n), grads (steps,n) (row s is the gradient of step s+1);
      params (n), m (n) = exp_avg, v (n) = exp_avg_sq after `steps`
      torch.optim.AdamW steps in float64
17. rng: seed,n   uniform (n) = torch.manual_seed(seed); torch.rand(n)
      (float32 CPU generator stream, no float64 here)
18. tanh: n          x, out, dout, dx (all (n))
19. transpose: B,R,C  out = x.transpose(1, 2)
      x (B,R,C), out (B,C,R), dout (B,C,R), dx (B,R,C)
20. l2norm: N,C,eps  out = F.normalize(x, dim=-1, eps=eps) = x / max(|x|_2, eps)
      x (N,C), out, dout, dx (all (N,C)).  Cases 0 and 2 hold an all-zero row and a
      row with norm below eps (the eps branch: dx = dout/eps there), case 0 also a row
      of norm ~1e-6 above eps; in those rows dout is scaled by the row's divisor so
      that every dx row is O(1) and no row dominates the relative L2 error.
21. embedding: N,D,V  out = F.embedding(ids, table)
      table (V,D), ids (N) (float, exact integers in [0,V), with repeats), out (N,D),
      dout (N,D), dtable (V,D) (rows of repeated ids accumulate; unused rows are 0)
22. unpatchify: B,C,H,W,p  einops "b (h w) (p1 p2 c) -> b c (h p1) (w p2)", h = H/p, w = W/p
      x (B,h*w,p*p*C) (channel index (p1*p + p2)*C + c), out (B,C,H,W), dout, dx
23. gaussian_sample: n  z = mean + exp(0.5*clamp(logvar, -30, 20)) * noise
      mean, logvar, noise, z, dz, dmean, dlogvar (all (n)); no gradient to noise.
      dlogvar is 0 where logvar is outside [-30, 20] (torch.clamp passes the gradient
      at the bounds themselves).  Case 0: logvar inside the range; case 1: logvar in
      [-40,-22] and mean = 0 (exercises the lower clamp, which only shows in z when
      mean does not swamp it), exact -30 included; case 2: logvar in [12,28], exact 20.
24. leaky_relu: n,slope  out = F.leaky_relu(x, slope) (slope 0 = ReLU)
      x, out, dout, dx (all (n)).  Every 7th x is exactly 0, where torch's gradient is
      slope * dout (leaky_relu_backward tests x > 0).
25. maxpool: B,C,H,W,OH,OW  out = F.adaptive_max_pool2d(x, (OH, OW))
      x (B,C,H,W), out (B,C,OH,OW), dout, dx.  Windows rows [floor(i*H/OH),
      ceil((i+1)*H/OH)), likewise columns: case 0 is 2x2/2 pooling, case 1 has
      overlapping windows (their gradients add), case 2 upsamples (OH > H), case 3 has
      x rounded to integers, so windows hold ties: the gradient goes to the first
      maximum in row-major order (torch's CPU kernel; asserted here).
26. lpips_layer: B,C,H,W  one LPIPS layer (architecture.md 6):
      n_i = f_i / (sqrt(sum_c f_i^2) + 1e-10), d[b] = mean_hw sum_c w_c (n0 - n1)^2
      f0, f1 (B,C,H,W) ReLU-like features (>= 0, no all-zero pixel: there torch's
      gradient is NaN), w (C) >= 0, d (B), dd (B), df0, df1 (B,C,H,W) = d sum(d * dd).
27. train_vector: n  the trainer's vector kernels on x, y (n):
      sumsq = sum x^2; ema = x - 0.125 (x - y) (ema_update with ema = x, p = y);
      l2 = mean (x - y)^2, dx_l2 = 0.75 d l2/dx; l1 = mean |x - y|, dx_l1 = 0.75 d l1/dx
      (F.mse_loss / F.l1_loss); kl = 0.5 sum(x^2 + exp(lv) - 1 - lv), lv = clamp(3y, -30, 20),
      dmean, dlogvar = 0.75 d kl / d(x, 3y)  (logvar input stored as lv_in = 3y).
"""

import json
import math
import os
import struct
import sys

import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOLDEN_DIR = os.path.join(ROOT, "tests", "golden")
REGENERATE = "/usr/bin/python3 tools/gen_golden.py"
MAGIC = "textok-golden"
VERSION = "1"


# --------------------------------------------------------------------------
# safetensors I/O
# --------------------------------------------------------------------------

def save_safetensors(path, tensors, meta):
    """Write `tensors` (name -> float32 tensor, in order) and string metadata."""
    header = {"__metadata__": {k: str(v) for k, v in meta.items()}}
    blobs = []
    offset = 0
    for name, t in tensors.items():
        t = t.detach().to(torch.float32).contiguous()
        vals = t.reshape(-1).tolist()
        blob = struct.pack("<%df" % len(vals), *vals)
        header[name] = {
            "dtype": "F32",
            "shape": list(t.shape),
            "data_offsets": [offset, offset + len(blob)],
        }
        blobs.append(blob)
        offset += len(blob)
    hjson = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hjson += b" " * (-len(hjson) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for blob in blobs:
            f.write(blob)


def load_safetensors(path):
    """Own parser: returns (meta, {name: (shape, [floats])}); validates layout."""
    with open(path, "rb") as f:
        raw = f.read()
    assert len(raw) >= 8, "file too short"
    (n,) = struct.unpack("<Q", raw[:8])
    assert n % 8 == 0, "header length not a multiple of 8"
    assert 8 + n <= len(raw), "header overruns file"
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__")
    assert all(isinstance(v, str) for v in meta.values()), "non-string metadata"
    data = raw[8 + n:]
    tensors = {}
    expect = 0
    for name, info in header.items():
        assert info["dtype"] == "F32", (name, info["dtype"])
        begin, end = info["data_offsets"]
        assert begin == expect, "tensor %s not contiguous" % name
        count = 1
        for s in info["shape"]:
            assert isinstance(s, int) and s >= 0
            count *= s
        assert end - begin == 4 * count, "size/shape mismatch for %s" % name
        vals = struct.unpack("<%df" % count, data[begin:end])
        tensors[name] = (tuple(info["shape"]), vals)
        expect = end
    assert expect == len(data), "trailing or missing data"
    return meta, tensors


# --------------------------------------------------------------------------
# case building helpers
# --------------------------------------------------------------------------

def fmt_dims(dims):
    parts = []
    for k, v in dims.items():
        if isinstance(v, bool):
            v = int(v)
        if isinstance(v, int):
            parts.append("%s=%d" % (k, v))
        elif isinstance(v, float):
            parts.append("%s=%s" % (k, repr(v)))
        else:
            raise TypeError("dim %s has type %s" % (k, type(v)))
    return ",".join(parts)


def parse_dims(s):
    out = {}
    for part in s.split(","):
        k, v = part.split("=")
        out[k] = float(v) if any(c in v for c in ".en") else int(v)
    return out


class Golden:
    """Accumulates the cases of one op and writes <op>.safetensors."""

    def __init__(self, op):
        self.op = op
        self.dims = []
        self.tensors = {}

    def case(self, dims, **tensors):
        i = len(self.dims)
        self.dims.append(dims)
        for name, t in tensors.items():
            if t is None:
                continue
            self.tensors["c%d.%s" % (i, name)] = t.detach().to(torch.float32)

    def save(self, directory):
        meta = {
            "magic": MAGIC,
            "version": VERSION,
            "op": self.op,
            "n_cases": str(len(self.dims)),
            "torch": torch.__version__,
            "regenerate": REGENERATE,
        }
        for i, d in enumerate(self.dims):
            meta["c%d.dims" % i] = fmt_dims(d)
        path = os.path.join(directory, self.op + ".safetensors")
        save_safetensors(path, self.tensors, meta)
        return path


def randn(g, *shape, scale=1.0, offset=0.0):
    """float32 normal samples from generator g (the stored input values)."""
    t = torch.randn(*shape, generator=g, dtype=torch.float32)
    if scale != 1.0:
        t = t * scale
    if offset != 0.0:
        t = t + offset
    return t


def leaf(t):
    """float64 leaf requiring grad, built from a float32 input."""
    return t.double().requires_grad_(True)


def grads(out, inputs, dout):
    return torch.autograd.grad(out, inputs, grad_outputs=dout.double())


def close(a, b, tol=1e-12):
    return torch.allclose(a, b, rtol=tol, atol=tol)


# --------------------------------------------------------------------------
# ops
# --------------------------------------------------------------------------

def gen_matmul(g):
    gf = Golden("matmul")
    for batch, M, N, K, ta, tb, hb in [(1, 7, 5, 3, 0, 0, 1), (2, 33, 17, 65, 0, 1, 1),
                                       (3, 16, 9, 31, 1, 0, 0), (2, 5, 6, 4, 1, 1, 1)]:
        a = randn(g, *((batch, K, M) if ta else (batch, M, K)))
        b = randn(g, *((batch, N, K) if tb else (batch, K, N)))
        bias = randn(g, N) if hb else None
        ad, bd = leaf(a), leaf(b)
        inputs = [ad, bd]
        opa = ad.transpose(1, 2) if ta else ad
        opb = bd.transpose(1, 2) if tb else bd
        out = opa @ opb
        if hb:
            biasd = leaf(bias)
            inputs.append(biasd)
            out = out + biasd
        dout = randn(g, batch, M, N)
        gr = grads(out, inputs, dout)
        gf.case(dict(batch=batch, M=M, N=N, K=K, trans_a=ta, trans_b=tb, has_bias=hb),
                a=a, b=b, bias=bias, out=out, dout=dout, da=gr[0], db=gr[1],
                dbias=gr[2] if hb else None)
    return gf


def gen_layernorm(g):
    gf = Golden("layernorm")
    for N, C, eps, affine in [(6, 32, 1e-5, 1), (5, 77, 1e-6, 0), (3, 768, 1e-5, 1)]:
        x = randn(g, N, C, scale=2.0, offset=0.5)
        w = randn(g, C, scale=0.5, offset=1.0) if affine else None
        b = randn(g, C, scale=0.5) if affine else None
        xd = leaf(x)
        inputs = [xd]
        wd = bd = None
        if affine:
            wd, bd = leaf(w), leaf(b)
            inputs += [wd, bd]
        out = F.layer_norm(xd, (C,), wd, bd, eps)
        with torch.no_grad():
            mean = xd.mean(-1)
            rstd = 1.0 / torch.sqrt(xd.var(-1, unbiased=False) + eps)
            manual = (xd - mean[:, None]) * rstd[:, None]
            if affine:
                manual = manual * wd + bd
            assert close(manual, out, 1e-10)
        dout = randn(g, N, C)
        gr = grads(out, inputs, dout)
        gf.case(dict(N=N, C=C, eps=eps, affine=affine),
                x=x, weight=w, bias=b, out=out, mean=mean, rstd=rstd, dout=dout,
                dx=gr[0], dweight=gr[1] if affine else None,
                dbias=gr[2] if affine else None)
    return gf


def gen_rmsnorm(g):
    gf = Golden("rmsnorm")
    for N, C, eps in [(4, 64, 1e-6), (3, 31, 1e-6), (2, 512, 1e-6)]:
        x = randn(g, N, C, scale=2.0, offset=0.3)
        w = randn(g, C, scale=0.5, offset=1.0)
        xd, wd = leaf(x), leaf(w)
        rstd = torch.rsqrt((xd * xd).mean(-1, keepdim=True) + eps)
        out = xd * rstd * wd
        dout = randn(g, N, C)
        dx, dw = grads(out, [xd, wd], dout)
        gf.case(dict(N=N, C=C, eps=eps), x=x, weight=w, out=out, rstd=rstd[:, 0],
                dout=dout, dx=dx, dweight=dw)
    return gf


def gen_gelu(g):
    gf = Golden("gelu")
    for n, approx in [(1000, 0), (1000, 1), (37, 0)]:
        x = randn(g, n, scale=2.5)
        xd = leaf(x)
        out = F.gelu(xd, approximate="tanh" if approx else "none")
        dout = randn(g, n)
        (dx,) = grads(out, [xd], dout)
        gf.case(dict(n=n, approx=approx), x=x, out=out, dout=dout, dx=dx)
    return gf


def gen_silu(g):
    gf = Golden("silu")
    for n in [1000, 37]:
        x = randn(g, n, scale=2.5)
        xd = leaf(x)
        out = F.silu(xd)
        dout = randn(g, n)
        (dx,) = grads(out, [xd], dout)
        gf.case(dict(n=n), x=x, out=out, dout=dout, dx=dx)
    return gf


def gen_softmax(g):
    gf = Golden("softmax")
    for rows, cols in [(5, 7), (3, 1000), (64, 33)]:
        x = randn(g, rows, cols, scale=3.0)
        xd = leaf(x)
        out = F.softmax(xd, dim=-1)
        dout = randn(g, rows, cols)
        (dx,) = grads(out, [xd], dout)
        gf.case(dict(rows=rows, cols=cols), x=x, out=out, dout=dout, dx=dx)
    return gf


def gen_attention(g):
    gf = Golden("attention")
    for B, Tq, Tk, C, H, hb, hm in [(2, 5, 5, 16, 2, 0, 0), (1, 7, 9, 24, 3, 1, 1),
                                    (2, 33, 17, 64, 4, 1, 1)]:
        hd = C // H
        scale = 1.0 / math.sqrt(hd)
        q, k, v = randn(g, B, Tq, C), randn(g, B, Tk, C), randn(g, B, Tk, C)
        bias = randn(g, H, Tq, Tk) if hb else None
        mask = None
        if hm:
            mask = (torch.rand(B, Tk, generator=g) < 0.7).to(torch.float32)
            keep = torch.randint(0, Tk, (B,), generator=g)
            mask[torch.arange(B), keep] = 1.0  # >= 1 attended key per batch element
        qd, kd, vd = leaf(q), leaf(k), leaf(v)
        inputs = [qd, kd, vd]

        def heads(t, T):
            return t.view(B, T, H, hd).transpose(1, 2)  # (B,H,T,hd)

        s = heads(qd, Tq) @ heads(kd, Tk).transpose(-1, -2) * scale
        if hb:
            biasd = leaf(bias)
            inputs.append(biasd)
            s = s + biasd[None]
        if hm:
            s = s.masked_fill(mask[:, None, None, :] == 0, float("-inf"))
        lse = torch.logsumexp(s, dim=-1)
        p = torch.softmax(s, dim=-1)
        out = (p @ heads(vd, Tk)).transpose(1, 2).reshape(B, Tq, C)
        dout = randn(g, B, Tq, C)
        gr = grads(out, inputs, dout)
        gf.case(dict(B=B, Tq=Tq, Tk=Tk, C=C, H=H, scale=scale, has_bias=hb, has_mask=hm),
                q=q, k=k, v=v, bias=bias, mask=mask, out=out, lse=lse, dout=dout,
                dq=gr[0], dk=gr[1], dv=gr[2], dbias=gr[3] if hb else None)
    return gf


def gen_add(g):
    gf = Golden("add")
    for n in [100, 7]:
        a, b = randn(g, n), randn(g, n)
        ad, bd = leaf(a), leaf(b)
        out = ad + bd
        dout = randn(g, n)
        da, db = grads(out, [ad, bd], dout)
        gf.case(dict(n=n), a=a, b=b, out=out, dout=dout, da=da, db=db)
    return gf


MODGATE_CASES = [(2, 5, 8), (1, 17, 33), (3, 4, 64)]


def gen_modulate(g):
    gf = Golden("modulate")
    for B, T, C in MODGATE_CASES:
        x, shift, scale = randn(g, B, T, C), randn(g, B, C), randn(g, B, C, scale=0.5)
        xd, shd, scd = leaf(x), leaf(shift), leaf(scale)
        out = xd * (1 + scd[:, None, :]) + shd[:, None, :]
        dout = randn(g, B, T, C)
        dx, dsh, dsc = grads(out, [xd, shd, scd], dout)
        gf.case(dict(B=B, T=T, C=C), x=x, shift=shift, scale=scale, out=out,
                dout=dout, dx=dx, dshift=dsh, dscale=dsc)
    return gf


def gen_gate(g):
    gf = Golden("gate")
    for B, T, C in MODGATE_CASES:
        resid, x, gate = randn(g, B, T, C), randn(g, B, T, C), randn(g, B, C)
        rd, xd, gd = leaf(resid), leaf(x), leaf(gate)
        out = rd + gd[:, None, :] * xd
        dout = randn(g, B, T, C)
        dr, dx, dg = grads(out, [rd, xd, gd], dout)
        gf.case(dict(B=B, T=T, C=C), resid=resid, x=x, gate=gate, out=out,
                dout=dout, dresid=dr, dx=dx, dgate=dg)
    return gf


def gen_conv2d(g):
    gf = Golden("conv2d")
    for B, C, H, W, OC, KH, KW, stride, pad, hb in [(2, 3, 8, 8, 4, 3, 3, 1, 1, 1),
                                                    (1, 5, 9, 7, 6, 4, 4, 2, 1, 0),
                                                    (1, 8, 6, 6, 16, 1, 1, 1, 0, 1)]:
        x = randn(g, B, C, H, W)
        w = randn(g, OC, C, KH, KW, scale=1.0 / math.sqrt(C * KH * KW))
        bias = randn(g, OC) if hb else None
        xd, wd = leaf(x), leaf(w)
        inputs = [xd, wd]
        bd = None
        if hb:
            bd = leaf(bias)
            inputs.append(bd)
        out = F.conv2d(xd, wd, bd, stride=stride, padding=pad)
        dout = randn(g, *out.shape)
        gr = grads(out, inputs, dout)
        gf.case(dict(B=B, C=C, H=H, W=W, OC=OC, KH=KH, KW=KW, stride=stride, pad=pad,
                     has_bias=hb),
                x=x, weight=w, bias=bias, out=out, dout=dout, dx=gr[0], dweight=gr[1],
                dbias=gr[2] if hb else None)
    return gf


def gen_groupnorm(g):
    gf = Golden("groupnorm")
    for B, C, H, W, G, eps in [(2, 8, 4, 4, 4, 1e-6), (1, 32, 5, 3, 32, 1e-6),
                               (1, 12, 7, 7, 3, 1e-5)]:
        x = randn(g, B, C, H, W, scale=2.0, offset=1.0)
        w = randn(g, C, scale=0.5, offset=1.0)
        b = randn(g, C, scale=0.5)
        xd, wd, bd = leaf(x), leaf(w), leaf(b)
        out = F.group_norm(xd, G, wd, bd, eps)
        with torch.no_grad():
            xg = xd.reshape(B, G, -1)
            mean = xg.mean(-1)
            rstd = 1.0 / torch.sqrt(xg.var(-1, unbiased=False) + eps)
            manual = ((xg - mean[..., None]) * rstd[..., None]).reshape(B, C, H, W)
            manual = manual * wd[:, None, None] + bd[:, None, None]
            assert close(manual, out, 1e-10)
        dout = randn(g, B, C, H, W)
        dx, dw, db = grads(out, [xd, wd, bd], dout)
        gf.case(dict(B=B, C=C, H=H, W=W, G=G, eps=eps), x=x, weight=w, bias=b, out=out,
                mean=mean, rstd=rstd, dout=dout, dx=dx, dweight=dw, dbias=db)
    return gf


def gen_upsample(g):
    gf = Golden("upsample")
    for B, C, H, W, factor in [(2, 3, 4, 5, 2), (1, 2, 3, 3, 3)]:
        x = randn(g, B, C, H, W)
        xd = leaf(x)
        out = F.interpolate(xd, scale_factor=factor, mode="nearest")
        with torch.no_grad():
            manual = xd.repeat_interleave(factor, 2).repeat_interleave(factor, 3)
            assert torch.equal(manual, out)
        dout = randn(g, *out.shape)
        (dx,) = grads(out, [xd], dout)
        gf.case(dict(B=B, C=C, H=H, W=W, factor=factor), x=x, out=out, dout=dout, dx=dx)
    return gf


def gen_codebook(g):
    gf = Golden("codebook")
    for N, K, D in [(10, 16, 8), (33, 513, 12), (64, 1024, 16)]:
        z, e = randn(g, N, D), randn(g, K, D)
        zd, ed = z.double(), e.double()
        dist2 = (zd * zd).sum(1, keepdim=True) + (ed * ed).sum(1)[None, :] - 2.0 * (zd @ ed.T)
        idx = torch.argmin(dist2, dim=1)
        best = dist2.gather(1, idx[:, None])[:, 0]
        two = torch.topk(dist2, 2, dim=1, largest=False).values
        assert torch.equal(two[:, 0], best)
        margin = two[:, 1] - two[:, 0]
        gf.case(dict(N=N, K=K, D=D), z=z, codebook=e, idx=idx.double(), dist=best,
                margin=margin)
    return gf


def gen_cross_entropy(g):
    gf = Golden("cross_entropy")
    for ci, (N, V, ls) in enumerate([(8, 10, 0.0), (6, 1000, 0.1), (5, 33, 0.1)]):
        logits = randn(g, N, V, scale=2.0)
        targets = torch.randint(0, V, (N,), generator=g)
        if ci > 0:
            targets[torch.randperm(N, generator=g)[:2]] = -1
        ld = leaf(logits)
        losses = F.cross_entropy(ld, targets, reduction="none", ignore_index=-1,
                                 label_smoothing=ls)
        with torch.no_grad():  # cross-check against the textbook formula
            logp = torch.log_softmax(ld, dim=-1)
            valid = targets >= 0
            nll = -logp.gather(1, targets.clamp(min=0)[:, None])[:, 0]
            manual = ((1.0 - ls) * nll - ls * logp.mean(-1)) * valid
            assert close(manual, losses, 1e-10)
        dlosses = randn(g, N)
        (dlogits,) = grads(losses, [ld], dlosses)
        assert torch.all(dlogits[targets < 0] == 0)
        gf.case(dict(N=N, V=V, label_smoothing=ls), logits=logits,
                targets=targets.double(), losses=losses, dlosses=dlosses, dlogits=dlogits)
    return gf


def gen_adamw(g):
    gf = Golden("adamw")
    for n, lr, b1, b2, eps, wd, steps in [(100, 1e-3, 0.9, 0.999, 1e-8, 0.01, 3),
                                          (37, 2e-4, 0.9, 0.96, 1e-8, 0.03, 5)]:
        params0 = randn(g, n)
        gradients = randn(g, steps, n)
        p = params0.double().clone().requires_grad_(True)
        opt = torch.optim.AdamW([p], lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd)
        for s in range(steps):
            p.grad = gradients[s].double().clone()
            opt.step()
        st = opt.state[p]
        with torch.no_grad():  # cross-check against the AdamW update rule
            mp = params0.double()
            m = torch.zeros(n, dtype=torch.float64)
            v = torch.zeros(n, dtype=torch.float64)
            for s in range(1, steps + 1):
                gs = gradients[s - 1].double()
                mp = mp * (1 - lr * wd)
                m = b1 * m + (1 - b1) * gs
                v = b2 * v + (1 - b2) * gs * gs
                mhat, vhat = m / (1 - b1 ** s), v / (1 - b2 ** s)
                mp = mp - lr * mhat / (vhat.sqrt() + eps)
            assert close(mp, p, 1e-9)
            assert close(m, st["exp_avg"]) and close(v, st["exp_avg_sq"])
        gf.case(dict(n=n, lr=lr, beta1=b1, beta2=b2, eps=eps, weight_decay=wd,
                     steps=steps),
                params0=params0, grads=gradients, params=p, m=st["exp_avg"],
                v=st["exp_avg_sq"])
    return gf


def gen_rng(_g):
    gf = Golden("rng")
    for seed in [0, 42, 1234]:
        torch.manual_seed(seed)
        u = torch.rand(1000)  # float32, global CPU generator
        gf.case(dict(seed=seed, n=1000), uniform=u)
    return gf


def gen_tanh(g):
    gf = Golden("tanh")
    for n in [1000, 37]:
        x = randn(g, n, scale=2.0)
        xd = leaf(x)
        out = torch.tanh(xd)
        dout = randn(g, n)
        (dx,) = grads(out, [xd], dout)
        gf.case(dict(n=n), x=x, out=out, dout=dout, dx=dx)
    return gf


def gen_transpose(g):
    gf = Golden("transpose")
    for B, R, C in [(2, 3, 5), (1, 7, 1), (3, 16, 9)]:
        x = randn(g, B, R, C)
        xd = leaf(x)
        out = xd.transpose(1, 2)
        dout = randn(g, B, C, R)
        (dx,) = grads(out, [xd], dout)
        gf.case(dict(B=B, R=R, C=C), x=x, out=out, dout=dout, dx=dx)
    return gf


def gen_l2norm(g):
    gf = Golden("l2norm")
    # (N, C, eps, {row: scale of x in that row}); rows not listed are plain normal
    for N, C, eps, rows in [(5, 12, 1e-12, {1: 0.0, 3: 1e-14, 4: 1e-6}),
                            (7, 3, 1e-12, {}),
                            (4, 16, 1e-4, {0: 0.0, 2: 1e-6})]:
        x = randn(g, N, C, offset=0.2)
        for r, sc in rows.items():
            x[r] *= sc
        xd = leaf(x)
        out = F.normalize(xd, p=2.0, dim=-1, eps=eps)
        divisor = xd.detach().norm(dim=-1).clamp_min(eps)
        with torch.no_grad():
            assert close(out, xd / divisor[:, None], 1e-10)
            for r, sc in rows.items():  # the listed rows sit where intended w.r.t. eps
                assert (divisor[r] == eps) == (sc * math.sqrt(C) * 3 < eps), (N, C, r)
        # dx ~ dout / divisor: scale dout per row so that every dx row is O(1)
        dout = randn(g, N, C) * (divisor[:, None] / divisor.clamp_min(1.0)[:, None]).float()
        (dx,) = grads(out, [xd], dout)
        with torch.no_grad():  # textbook gradient: (dout - out (out . dout)) / |x|, or dout/eps
            od = out.detach()
            dd = dout.double()
            manual = (dd - od * (od * dd).sum(-1, keepdim=True)) / divisor[:, None]
            small = divisor == eps
            manual[small] = dd[small] / eps
            assert close(manual, dx, 1e-9)
        gf.case(dict(N=N, C=C, eps=eps), x=x, out=out, dout=dout, dx=dx)
    return gf


def gen_embedding(g):
    gf = Golden("embedding")
    for N, D, V in [(7, 5, 4), (12, 16, 10), (5, 3, 9)]:
        table = randn(g, V, D)
        ids = torch.randint(0, V, (N,), generator=g)
        ids[N - 1] = ids[0]      # at least one repeated id: backward must accumulate
        ids[N // 2] = ids[0]
        tabled = leaf(table)
        out = F.embedding(ids, tabled)
        dout = randn(g, N, D)
        (dtable,) = grads(out, [tabled], dout)
        with torch.no_grad():
            manual = torch.zeros(V, D, dtype=torch.float64)
            for i in range(N):
                manual[ids[i]] += dout[i].double()
            assert close(manual, dtable)
        gf.case(dict(N=N, D=D, V=V), table=table, ids=ids.double(), out=out, dout=dout,
                dtable=dtable)
    return gf


def gen_unpatchify(g):
    gf = Golden("unpatchify")
    for B, C, H, W, p in [(2, 3, 8, 12, 4), (1, 3, 6, 4, 2), (2, 2, 5, 10, 5), (1, 3, 3, 2, 1)]:
        h, w = H // p, W // p
        x = randn(g, B, h * w, p * p * C)
        xd = leaf(x)
        out = xd.reshape(B, h, w, p, p, C).permute(0, 5, 1, 3, 2, 4).reshape(B, C, H, W)
        with torch.no_grad():  # the index formula of the einops pattern, element by element
            manual = torch.empty(B, C, H, W, dtype=torch.float64)
            for b in range(B):
                for t in range(h * w):
                    for p1 in range(p):
                        for p2 in range(p):
                            for c in range(C):
                                manual[b, c, (t // w) * p + p1, (t % w) * p + p2] = \
                                    xd[b, t, (p1 * p + p2) * C + c]
            assert torch.equal(manual, out)
        dout = randn(g, B, C, H, W)
        (dx,) = grads(out, [xd], dout)
        gf.case(dict(B=B, C=C, H=H, W=W, p=p), x=x, out=out, dout=dout, dx=dx)
    return gf


def gen_gaussian_sample(g):
    gf = Golden("gaussian_sample")
    for n, lo, hi, zero_mean, edge in [(100, None, None, 0, None), (37, -40.0, -22.0, 1, -30.0),
                                       (37, 12.0, 28.0, 0, 20.0)]:
        mean = torch.zeros(n) if zero_mean else randn(g, n)
        if lo is None:
            logvar = randn(g, n, scale=2.0)
        else:
            logvar = lo + (hi - lo) * torch.rand(n, generator=g)
            logvar[n // 3] = edge   # exactly on the bound: torch.clamp passes the gradient
        noise = randn(g, n)
        md, lvd = leaf(mean), leaf(logvar)
        z = md + torch.exp(0.5 * lvd.clamp(-30.0, 20.0)) * noise.double()
        dz = randn(g, n)
        dmean, dlogvar = grads(z, [md, lvd], dz)
        with torch.no_grad():
            inside = (logvar >= -30.0) & (logvar <= 20.0)
            if lo is not None:
                assert 0 < int(inside.sum()) < n
            manual = dz.double() * noise.double() * 0.5 * torch.exp(0.5 * lvd) * inside
            assert close(manual, dlogvar)
        gf.case(dict(n=n), mean=mean, logvar=logvar, noise=noise, z=z, dz=dz, dmean=dmean,
                dlogvar=dlogvar)
    return gf


def gen_leaky_relu(g):
    gf = Golden("leaky_relu")
    for n, slope in [(1000, 0.1), (37, 0.0), (64, 0.2)]:
        x = randn(g, n, scale=2.0)
        x[::7] = 0.0
        xd = leaf(x)
        out = F.leaky_relu(xd, slope)
        dout = randn(g, n)
        (dx,) = grads(out, [xd], dout)
        with torch.no_grad():
            manual = torch.where(xd > 0, dout.double(), slope * dout.double())
            assert close(manual, dx)
        gf.case(dict(n=n, slope=float(slope)), x=x, out=out, dout=dout, dx=dx)
    return gf


def gen_maxpool(g):
    gf = Golden("maxpool")
    for B, C, H, W, OH, OW, ties in [(2, 3, 8, 6, 4, 3, 0), (1, 2, 7, 5, 3, 2, 0),
                                     (1, 2, 3, 3, 5, 4, 0), (2, 2, 6, 6, 3, 2, 1)]:
        x = randn(g, B, C, H, W)
        if ties:
            x = torch.round(x)          # integer values: ties in every window
        xd = leaf(x)
        out = F.adaptive_max_pool2d(xd, (OH, OW))
        dout = randn(g, B, C, OH, OW)
        (dx,) = grads(out, [xd], dout)
        with torch.no_grad():  # the window formula and the first-maximum rule, element by element
            manual = torch.zeros(B, C, H, W, dtype=torch.float64)
            for b in range(B):
                for c in range(C):
                    for i in range(OH):
                        for j in range(OW):
                            y0, y1 = (i * H) // OH, -((-(i + 1) * H) // OH)
                            x0, x1 = (j * W) // OW, -((-(j + 1) * W) // OW)
                            win = x[b, c, y0:y1, x0:x1].reshape(-1)
                            k = int(torch.nonzero(win == win.max())[0])
                            assert out[b, c, i, j] == win[k]
                            ww = x1 - x0
                            manual[b, c, y0 + k // ww, x0 + k % ww] += dout[b, c, i, j].double()
            assert close(manual, dx)
        gf.case(dict(B=B, C=C, H=H, W=W, OH=OH, OW=OW), x=x, out=out, dout=dout, dx=dx)
    return gf


def gen_lpips_layer(g):
    gf = Golden("lpips_layer")
    for B, C, H, W in [(2, 8, 5, 7), (1, 64, 4, 4), (3, 3, 2, 3)]:
        fs = []
        for _ in range(2):
            f = torch.relu(randn(g, B, C, H, W))
            dead = (f == 0).all(dim=1)           # an all-zero pixel: give it one active channel
            f[:, 0][dead] = 0.5
            fs.append(f)
        w = randn(g, C).abs() * 0.1
        dd = randn(g, B)
        f0d, f1d = leaf(fs[0]), leaf(fs[1])
        wd = w.double()

        def norm(f):
            return f / (torch.sqrt((f * f).sum(dim=1, keepdim=True)) + 1e-10)

        d = (wd[None, :, None, None] * (norm(f0d) - norm(f1d)) ** 2).sum(dim=1).mean(dim=(1, 2))
        df0, df1 = grads(d, [f0d, f1d], dd)
        gf.case(dict(B=B, C=C, H=H, W=W), f0=fs[0], f1=fs[1], w=w, d=d, dd=dd, df0=df0,
                df1=df1)
    return gf


def gen_train_vector(g):
    gf = Golden("train_vector")
    for n in [1000, 37]:
        x, y = randn(g, n), randn(g, n)
        lv_in = (3.0 * y).float()
        xd, yd, lvd = leaf(x), leaf(y), leaf(lv_in)
        sumsq = (xd * xd).sum().reshape(1)
        ema = (xd - torch.tensor(0.125, dtype=torch.float64) * (xd - yd)).detach()
        l2 = F.mse_loss(xd, yd)
        (dx_l2,) = grads(l2, [xd], torch.tensor(0.75))
        l1 = F.l1_loss(xd, yd)
        (dx_l1,) = grads(l1, [xd], torch.tensor(0.75))
        lv = lvd.clamp(-30.0, 20.0)
        kl = 0.5 * torch.sum(xd * xd + torch.exp(lv) - 1.0 - lv)
        dmean, dlogvar = grads(kl, [xd, lvd], torch.tensor(0.75))
        gf.case(dict(n=n), x=x, y=y, lv_in=lv_in, sumsq=sumsq.detach(), ema=ema, l2=l2.detach().reshape(1),
                dx_l2=dx_l2, l1=l1.detach().reshape(1), dx_l1=dx_l1, kl=kl.detach().reshape(1),
                dmean=dmean, dlogvar=dlogvar)
    return gf


# (op, generator function, seed of that op's torch.Generator)
OPS = [
    ("matmul", gen_matmul, 1001),
    ("layernorm", gen_layernorm, 1002),
    ("rmsnorm", gen_rmsnorm, 1003),
    ("gelu", gen_gelu, 1004),
    ("silu", gen_silu, 1005),
    ("softmax", gen_softmax, 1006),
    ("attention", gen_attention, 1007),
    ("add", gen_add, 1008),
    ("modulate", gen_modulate, 1009),
    ("gate", gen_gate, 1010),
    ("conv2d", gen_conv2d, 1011),
    ("groupnorm", gen_groupnorm, 1012),
    ("upsample", gen_upsample, 1013),
    ("codebook", gen_codebook, 1014),
    ("cross_entropy", gen_cross_entropy, 1015),
    ("adamw", gen_adamw, 1016),
    ("rng", gen_rng, 1017),
    ("tanh", gen_tanh, 1018),
    ("transpose", gen_transpose, 1019),
    ("l2norm", gen_l2norm, 1020),
    ("embedding", gen_embedding, 1021),
    ("unpatchify", gen_unpatchify, 1022),
    ("gaussian_sample", gen_gaussian_sample, 1023),
    ("leaky_relu", gen_leaky_relu, 1024),
    ("maxpool", gen_maxpool, 1025),
    ("lpips_layer", gen_lpips_layer, 1026),
    ("train_vector", gen_train_vector, 1027),
]


# --------------------------------------------------------------------------
# self-check: expected tensor names and shapes per case
# --------------------------------------------------------------------------

def expected_shapes(op, d):
    """name -> shape for one case, from its dims (the spec the C test reads)."""
    if op == "matmul":
        bt, M, N, K = d["batch"], d["M"], d["N"], d["K"]
        sa = (bt, K, M) if d["trans_a"] else (bt, M, K)
        sb = (bt, N, K) if d["trans_b"] else (bt, K, N)
        e = {"a": sa, "b": sb, "bias": (N,), "out": (bt, M, N), "dout": (bt, M, N),
             "da": sa, "db": sb, "dbias": (N,)}
        if not d["has_bias"]:
            del e["bias"], e["dbias"]
        return e
    if op == "layernorm":
        N, C = d["N"], d["C"]
        e = {"x": (N, C), "weight": (C,), "bias": (C,), "out": (N, C), "mean": (N,),
             "rstd": (N,), "dout": (N, C), "dx": (N, C), "dweight": (C,), "dbias": (C,)}
        if not d["affine"]:
            for k in ("weight", "bias", "dweight", "dbias"):
                del e[k]
        return e
    if op == "rmsnorm":
        N, C = d["N"], d["C"]
        return {"x": (N, C), "weight": (C,), "out": (N, C), "rstd": (N,),
                "dout": (N, C), "dx": (N, C), "dweight": (C,)}
    if op in ("gelu", "silu"):
        n = (d["n"],)
        return {"x": n, "out": n, "dout": n, "dx": n}
    if op == "softmax":
        s = (d["rows"], d["cols"])
        return {"x": s, "out": s, "dout": s, "dx": s}
    if op == "attention":
        B, Tq, Tk, C, H = d["B"], d["Tq"], d["Tk"], d["C"], d["H"]
        e = {"q": (B, Tq, C), "k": (B, Tk, C), "v": (B, Tk, C), "bias": (H, Tq, Tk),
             "mask": (B, Tk), "out": (B, Tq, C), "lse": (B, H, Tq), "dout": (B, Tq, C),
             "dq": (B, Tq, C), "dk": (B, Tk, C), "dv": (B, Tk, C), "dbias": (H, Tq, Tk)}
        if not d["has_bias"]:
            del e["bias"], e["dbias"]
        if not d["has_mask"]:
            del e["mask"]
        return e
    if op == "add":
        n = (d["n"],)
        return {k: n for k in ("a", "b", "out", "dout", "da", "db")}
    if op == "modulate":
        x, c = (d["B"], d["T"], d["C"]), (d["B"], d["C"])
        return {"x": x, "shift": c, "scale": c, "out": x, "dout": x, "dx": x,
                "dshift": c, "dscale": c}
    if op == "gate":
        x, c = (d["B"], d["T"], d["C"]), (d["B"], d["C"])
        return {"resid": x, "x": x, "gate": c, "out": x, "dout": x, "dresid": x,
                "dx": x, "dgate": c}
    if op == "conv2d":
        B, C, H, W, OC = d["B"], d["C"], d["H"], d["W"], d["OC"]
        KH, KW, st, pd = d["KH"], d["KW"], d["stride"], d["pad"]
        o = (B, OC, (H + 2 * pd - KH) // st + 1, (W + 2 * pd - KW) // st + 1)
        wsh = (OC, C, KH, KW)
        e = {"x": (B, C, H, W), "weight": wsh, "bias": (OC,), "out": o, "dout": o,
             "dx": (B, C, H, W), "dweight": wsh, "dbias": (OC,)}
        if not d["has_bias"]:
            del e["bias"], e["dbias"]
        return e
    if op == "groupnorm":
        x, c, bg = (d["B"], d["C"], d["H"], d["W"]), (d["C"],), (d["B"], d["G"])
        return {"x": x, "weight": c, "bias": c, "out": x, "mean": bg, "rstd": bg,
                "dout": x, "dx": x, "dweight": c, "dbias": c}
    if op == "upsample":
        f = d["factor"]
        x = (d["B"], d["C"], d["H"], d["W"])
        o = (d["B"], d["C"], d["H"] * f, d["W"] * f)
        return {"x": x, "out": o, "dout": o, "dx": x}
    if op == "codebook":
        N, K, D = d["N"], d["K"], d["D"]
        return {"z": (N, D), "codebook": (K, D), "idx": (N,), "dist": (N,),
                "margin": (N,)}
    if op == "cross_entropy":
        N, V = d["N"], d["V"]
        return {"logits": (N, V), "targets": (N,), "losses": (N,), "dlosses": (N,),
                "dlogits": (N, V)}
    if op == "adamw":
        n = (d["n"],)
        return {"params0": n, "grads": (d["steps"], d["n"]), "params": n, "m": n, "v": n}
    if op == "rng":
        return {"uniform": (d["n"],)}
    if op == "tanh":
        n = (d["n"],)
        return {"x": n, "out": n, "dout": n, "dx": n}
    if op == "transpose":
        x, o = (d["B"], d["R"], d["C"]), (d["B"], d["C"], d["R"])
        return {"x": x, "out": o, "dout": o, "dx": x}
    if op == "l2norm":
        s = (d["N"], d["C"])
        return {"x": s, "out": s, "dout": s, "dx": s}
    if op == "embedding":
        N, D, V = d["N"], d["D"], d["V"]
        return {"table": (V, D), "ids": (N,), "out": (N, D), "dout": (N, D),
                "dtable": (V, D)}
    if op == "unpatchify":
        B, C, H, W, p = d["B"], d["C"], d["H"], d["W"], d["p"]
        x = (B, (H // p) * (W // p), p * p * C)
        o = (B, C, H, W)
        return {"x": x, "out": o, "dout": o, "dx": x}
    if op == "gaussian_sample":
        n = (d["n"],)
        return {k: n for k in ("mean", "logvar", "noise", "z", "dz", "dmean", "dlogvar")}
    if op == "leaky_relu":
        n = (d["n"],)
        return {"x": n, "out": n, "dout": n, "dx": n}
    if op == "maxpool":
        x, o = (d["B"], d["C"], d["H"], d["W"]), (d["B"], d["C"], d["OH"], d["OW"])
        return {"x": x, "out": o, "dout": o, "dx": x}
    if op == "lpips_layer":
        f, b = (d["B"], d["C"], d["H"], d["W"]), (d["B"],)
        return {"f0": f, "f1": f, "w": (d["C"],), "d": b, "dd": b, "df0": f, "df1": f}
    if op == "train_vector":
        n, one = (d["n"],), (1,)
        return {"x": n, "y": n, "lv_in": n, "sumsq": one, "ema": n, "l2": one, "dx_l2": n, "l1": one,
                "dx_l1": n, "kl": one, "dmean": n, "dlogvar": n}
    raise KeyError(op)


def check_file(op, path):
    meta, tensors = load_safetensors(path)
    assert meta["magic"] == MAGIC and meta["version"] == VERSION, "bad magic/version"
    assert meta["op"] == op, "op mismatch"
    assert meta["regenerate"] == REGENERATE
    n = int(meta["n_cases"])
    seen = set()
    for i in range(n):
        dims = parse_dims(meta["c%d.dims" % i])
        for name, shape in expected_shapes(op, dims).items():
            key = "c%d.%s" % (i, name)
            assert key in tensors, "missing " + key
            assert tensors[key][0] == shape, "%s: shape %s, expected %s" % (
                key, tensors[key][0], shape)
            assert all(math.isfinite(v) for v in tensors[key][1]), key + " not finite"
            seen.add(key)
    extra = set(tensors) - seen
    assert not extra, "unexpected tensors: %s" % sorted(extra)
    return n, len(tensors)


def run_check():
    total = 0
    print("%-28s %6s %8s %10s" % ("file", "cases", "tensors", "bytes"))
    for op, _, _ in OPS:
        path = os.path.join(GOLDEN_DIR, op + ".safetensors")
        n, nt = check_file(op, path)
        size = os.path.getsize(path)
        total += size
        print("%-28s %6d %8d %10d" % (op + ".safetensors", n, nt, size))
    print("%-28s %6s %8s %10d" % ("total", "", "", total))
    assert total < 3 * 1024 * 1024, "golden data exceeds 3 MB"
    print("self-check OK")


def main():
    global GOLDEN_DIR
    args = sys.argv[1:]
    if "--out" in args:   # write elsewhere (CI compares a fresh run with the committed files)
        i = args.index("--out")
        if i + 1 >= len(args):
            sys.exit("usage: gen_golden.py [--check] [--out DIR]")
        GOLDEN_DIR = args[i + 1]
    if "--check" not in args:
        torch.set_num_threads(1)
        os.makedirs(GOLDEN_DIR, exist_ok=True)
        for op, fn, seed in OPS:
            g = torch.Generator().manual_seed(seed)
            fn(g).save(GOLDEN_DIR)
    run_check()


if __name__ == "__main__":
    main()
