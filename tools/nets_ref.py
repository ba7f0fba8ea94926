#!/usr/bin/python3
"""Independent PyTorch references for textok's loss networks (torch 1.13, plain torch.nn).

Written from /work/shared/reference/architecture.md (sections 5.4 and 6) and the textok training
spec; the discriminator's channel rule, BlurBlock padding and pooling were checked against the
official bytedance/1d-tokenizer modeling/modules/discriminator.py (read, not copied or imported).

  LPIPS                VGG16-shaped LPIPS with any channel widths c0..c4 (official LPIPS(net='vgg')
                       state_dict names: net.slice{1..5}.{idx}.{weight,bias}, lin{k}.model.1.weight).
                       1d-tokenizer convention: inputs in [0, 1] are mapped to 2x - 1 first.
  NLayerDiscriminator  the 1d-tokenizer PatchGAN discriminator with configurable hidden width,
                       stages, GroupNorm groups and output pool size (official names block_in.0,
                       blocks.{i}.0 / .2, to_logits.0 / .2; the BlurBlock kernel is a code constant,
                       not a state_dict entry here).

Both work in any float dtype (the goldens run them in float64).  Both can record how close the
forward pass came to a kink of a piecewise-linear op (ReLU / LeakyReLU pre-activation near 0,
max-pool windows whose two largest values nearly tie): a float32 port evaluated at such a point may
take the other branch, so golden generators pick seeds that keep a margin (KinkMonitor).

Weights: lpips_init / disc_init draw seeded values that keep activations O(1); lpips_file_meta /
disc_file_meta + write_weights write textok-layout safetensors (F32, state_dict order).
"""
import math
import os
import sys
from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_golden_titok import save_safetensors, load_safetensors  # noqa: E402,F401  (re-exported)

# ScalingLayer constants of LPIPS v0.1 (code constants in textok, buffers in the official module)
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)
LPIPS_NORM_EPS = 1e-10
# torchvision VGG16 `features` indices of the convs in each LPIPS slice (ReLU follows each conv at
# idx + 1; slices 2..5 start with a 2x2 max-pool at the slice's first index).
VGG_SLICES = ((0, 2), (5, 7), (10, 12, 14), (17, 19, 21), (24, 26, 28))
VGG16_CHANNELS = (64, 128, 256, 512, 512)


class KinkMonitor:
    """Tracks the smallest |pre-activation| fed to a ReLU / LeakyReLU and the smallest relative gap
    (top1 - top2) / max(|top1|, 1e-30) between the two largest values of a max-pool window.  Only
    windows whose maximum is > 0 count for the pool: an all-ReLU'd-to-zero window ties at 0 but its
    gradient dies in the ReLU anyway (and LeakyReLU outputs are never tied by accident)."""

    def __init__(self):
        self.relu = math.inf
        self.pool = math.inf

    @torch.no_grad()
    def act(self, x):
        self.relu = min(self.relu, float(x.abs().min()))

    @torch.no_grad()
    def maxpool(self, x, OH, OW):
        B, C, H, W = x.shape
        for i in range(OH):
            r0, r1 = (i * H) // OH, -((-(i + 1) * H) // OH)
            for j in range(OW):
                c0, c1 = (j * W) // OW, -((-(j + 1) * W) // OW)
                win = x[:, :, r0:r1, c0:c1].reshape(B, C, -1)
                if win.shape[-1] < 2:
                    continue
                top = torch.topk(win, 2, dim=-1).values
                pos = top[..., 0] > 0
                if pos.any():
                    gap = (top[..., 0] - top[..., 1])[pos] / top[..., 0][pos]
                    self.pool = min(self.pool, float(gap.min()))

    def __repr__(self):
        return f"min |pre-activation| {self.relu:.3g}, min max-pool gap {self.pool:.3g}"


def _relu(x, mon, slope=0.0):
    if mon is not None:
        mon.act(x)
    return F.relu(x) if slope == 0.0 else F.leaky_relu(x, slope)


def _maxpool(x, OH, OW, mon):
    if mon is not None:
        mon.maxpool(x, OH, OW)
    return F.adaptive_max_pool2d(x, (OH, OW))


# ------------------------------------------------------------------------------------------------
# LPIPS

class NetLinLayer(nn.Module):
    """Dropout (identity in eval; no parameters, but it shifts the index to model.1) + 1x1 conv
    C -> 1 without bias."""

    def __init__(self, c):
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(c, 1, 1, bias=False))


class VGGTrunk(nn.Module):
    """slice1..slice5 as in LPIPS's vgg16 wrapper: nn.Sequential keyed by the torchvision feature
    index, so parameters are named net.slice{s}.{idx}.{weight,bias}."""

    def __init__(self, channels):
        super().__init__()
        cin = 3
        for s, idxs in enumerate(VGG_SLICES):
            mods = OrderedDict()
            if s > 0:
                mods[str(idxs[0] - 1)] = nn.MaxPool2d(2, 2)
            for idx in idxs:
                mods[str(idx)] = nn.Conv2d(cin, channels[s], 3, padding=1, bias=True)
                mods[str(idx + 1)] = nn.ReLU()
                cin = channels[s]
            setattr(self, f"slice{s + 1}", nn.Sequential(mods))

    def forward(self, x, mon=None):
        taps = []
        h = x
        for s, idxs in enumerate(VGG_SLICES):
            sl = getattr(self, f"slice{s + 1}")
            if s > 0:
                h = _maxpool(h, h.shape[-2] // 2, h.shape[-1] // 2, mon)
            for idx in idxs:
                conv = getattr(sl, str(idx))
                h = _relu(F.conv2d(h, conv.weight, conv.bias, padding=1), mon)
            taps.append(h)
        return taps


class LPIPS(nn.Module):
    """LPIPS(x, y)[b] = sum_k mean_hw sum_c w_k[c] (n(f_k(x)) - n(f_k(y)))^2, n(f) = f / (|f|_c + 1e-10),
    f_k = VGG tap k of (2*img - 1 - shift) / scale.  x, y (B,3,H,W) in [0,1], H, W multiples of 16."""

    def __init__(self, channels=VGG16_CHANNELS):
        super().__init__()
        assert len(channels) == 5
        self.channels = tuple(int(c) for c in channels)
        self.net = VGGTrunk(self.channels)
        for k, c in enumerate(self.channels):
            setattr(self, f"lin{k}", NetLinLayer(c))

    def scale(self, x):
        shift = torch.tensor(LPIPS_SHIFT, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        scale = torch.tensor(LPIPS_SCALE, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x * 2.0 - 1.0 - shift) / scale

    @staticmethod
    def normalize(f):
        return f / (torch.sqrt((f * f).sum(dim=1, keepdim=True)) + LPIPS_NORM_EPS)

    def layers(self, x, y, mon_x=None, mon_y=None):
        """-> (5, B): the per-layer terms res_k (their sum over k is LPIPS).  mon_x / mon_y record the
        kink margins of x's / y's trunk (a constant target's trunk never carries a gradient)."""
        assert x.shape[-1] % 16 == 0 and x.shape[-2] % 16 == 0, "H, W must be multiples of 16"
        fx, fy = self.net(self.scale(x), mon_x), self.net(self.scale(y), mon_y)
        out = []
        for k in range(5):
            d = (self.normalize(fx[k]) - self.normalize(fy[k])) ** 2
            w = getattr(self, f"lin{k}").model[1].weight                     # (1, C, 1, 1)
            out.append(F.conv2d(d, w).mean(dim=(1, 2, 3)))                  # (B)
        return torch.stack(out, 0)

    def forward(self, x, y, mon=None):
        return self.layers(x, y, mon, mon).sum(0)                           # (B)


@torch.no_grad()
def lpips_init(model, seed):
    """Seeded weights in state_dict order from one torch.Generator (float32 draws):
    convs N(0, 2/fan_in) (He: keeps a ReLU stack O(1)), biases N(0, 0.1^2), lin weights U[0, 1)
    (non-negative like the published ones)."""
    g = torch.Generator().manual_seed(seed)
    for name, p in model.state_dict(keep_vars=True).items():
        if name.startswith("lin"):
            v = torch.rand(p.shape, generator=g, dtype=torch.float32)
        elif name.endswith("weight"):
            v = torch.randn(p.shape, generator=g, dtype=torch.float32) * math.sqrt(2.0 / p[0].numel())
        else:
            v = 0.1 * torch.randn(p.shape, generator=g, dtype=torch.float32)
        p.copy_(v.to(p.dtype))
    return model


def lpips_file_meta(channels):
    return OrderedDict([("format", "pt"), ("textok.model", "lpips"),
                        ("channels", ",".join(str(int(c)) for c in channels))])


# ------------------------------------------------------------------------------------------------
# Discriminator

@dataclass
class DiscConfig:
    hidden: int = 128
    stages: int = 3
    groups: int = 32
    pool: int = 16

    def channels(self, i):
        """(c_in, c_out) of stage i: official in_channel_mult = (1,) + (2^t for t < stages)."""
        mult = (1,) + tuple(2 ** t for t in range(self.stages))
        return self.hidden * mult[i], self.hidden * mult[i + 1]

    @property
    def out_channels(self):
        return self.channels(self.stages - 1)[1]


def same_pad(i, k, s, d=1):
    """Conv2dSame / BlurBlock padding: total, split left = total // 2, right = the rest."""
    p = max((-(-i // s) - 1) * s + (k - 1) * d + 1 - i, 0)
    return p // 2, p - p // 2


def conv_same(x, w, b, stride=1):
    kh, kw = w.shape[-2:]
    pt, pb = same_pad(x.shape[-2], kh, stride)
    pl, pr = same_pad(x.shape[-1], kw, stride)
    if pt or pb or pl or pr:
        x = F.pad(x, [pl, pr, pt, pb])
    return F.conv2d(x, w, b, stride=stride)


BLUR_1D = (1.0, 3.0, 3.0, 1.0)


def blur_kernel(dtype):
    k = torch.tensor(BLUR_1D, dtype=dtype)
    k = k[None, :] * k[:, None]
    return (k / k.sum()).view(1, 1, 4, 4)


def blur_downsample(x):
    """BlurBlock: depthwise outer([1,3,3,1])/64 stride 2 with same-padding (1/1 for even sizes;
    the official code pads 1/2 for odd sizes)."""
    C = x.shape[1]
    pt, pb = same_pad(x.shape[-2], 4, 2)
    pl, pr = same_pad(x.shape[-1], 4, 2)
    x = F.pad(x, [pl, pr, pt, pb])
    return F.conv2d(x, blur_kernel(x.dtype).to(x.device).expand(C, 1, 4, 4), stride=2, groups=C)


class BlurBlock(nn.Module):
    """Parameter-free (the official module holds the kernel as a buffer; here it is a constant)."""

    def forward(self, x):
        return blur_downsample(x)


class NLayerDiscriminator(nn.Module):
    """block_in: Conv2dSame 5x5 3->h, LeakyReLU(0.1).  Stage i: Conv2dSame 3x3 c_in->c_out,
    BlurBlock (stride 2), GroupNorm(groups, c_out, eps 1e-5, affine), LeakyReLU(0.1).  Then
    AdaptiveMaxPool2d((pool, pool)), to_logits: Conv 1x1 C->C, LeakyReLU(0.1), Conv 5x5 C->1.
    Input images in [0,1] as given; output logits (B, 1, pool, pool)."""

    SLOPE = 0.1
    GN_EPS = 1e-5

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        h = cfg.hidden
        self.block_in = nn.Sequential(nn.Conv2d(3, h, 5, bias=True), nn.LeakyReLU(self.SLOPE))
        blocks = []
        for i in range(cfg.stages):
            ci, co = cfg.channels(i)
            assert co % cfg.groups == 0, f"GroupNorm: {co} channels not divisible by {cfg.groups} groups"
            blocks.append(nn.Sequential(nn.Conv2d(ci, co, 3, bias=True), BlurBlock(),
                                        nn.GroupNorm(cfg.groups, co, eps=self.GN_EPS, affine=True),
                                        nn.LeakyReLU(self.SLOPE)))
        self.blocks = nn.ModuleList(blocks)
        C = cfg.out_channels
        self.to_logits = nn.Sequential(nn.Conv2d(C, C, 1, bias=True), nn.LeakyReLU(self.SLOPE),
                                       nn.Conv2d(C, 1, 5, bias=True))

    def forward(self, x, mon=None):
        c = self.block_in[0]
        h = _relu(conv_same(x, c.weight, c.bias), mon, self.SLOPE)
        for blk in self.blocks:
            conv, gn = blk[0], blk[2]
            h = conv_same(h, conv.weight, conv.bias)
            h = blur_downsample(h)
            h = F.group_norm(h, gn.num_groups, gn.weight, gn.bias, gn.eps)
            h = _relu(h, mon, self.SLOPE)
        h = _maxpool(h, self.cfg.pool, self.cfg.pool, mon)
        c0, c2 = self.to_logits[0], self.to_logits[2]
        h = _relu(conv_same(h, c0.weight, c0.bias), mon, self.SLOPE)
        return conv_same(h, c2.weight, c2.bias)


@torch.no_grad()
def disc_init(model, seed):
    """Seeded weights in state_dict order (float32 draws): conv weights N(0, 1/fan_in), conv biases
    N(0, 0.1^2), GroupNorm weight 1 + N(0, 0.1^2), GroupNorm bias N(0, 0.1^2)."""
    g = torch.Generator().manual_seed(seed)
    for name, p in model.state_dict(keep_vars=True).items():
        r = torch.randn(p.shape, generator=g, dtype=torch.float32)
        if p.dim() >= 2:
            v = r / math.sqrt(p[0].numel())
        elif name.endswith("bias"):
            v = 0.1 * r
        else:
            v = 1.0 + 0.1 * r
        p.copy_(v.to(p.dtype))
    return model


def disc_file_meta(cfg, image_size):
    return OrderedDict([("format", "pt"), ("textok.model", "disc"), ("hidden", str(cfg.hidden)),
                        ("stages", str(cfg.stages)), ("groups", str(cfg.groups)), ("pool", str(cfg.pool)),
                        ("image_size", str(int(image_size)))])


# ------------------------------------------------------------------------------------------------
# files

def write_weights(path, model, meta):
    """state_dict (order kept) as F32 safetensors with string metadata `meta`."""
    save_safetensors(path, [(k, v.detach().float().contiguous()) for k, v in model.state_dict().items()], meta)


def read_weights(path, model):
    """Loads a file written by write_weights into `model` (strict: same names, order and shapes)."""
    tensors, meta = load_safetensors(path)
    sd = model.state_dict()
    got = [(k, tuple(v.shape)) for k, v in tensors]
    want = [(k, tuple(v.shape)) for k, v in sd.items()]
    assert got == want, f"{path}: names/shapes/order differ from the model's state_dict"
    with torch.no_grad():
        for k, v in tensors:
            sd[k].copy_(v.to(sd[k].dtype))
    return meta


def lpips_from_file(path, dtype=torch.float64):
    _, meta = load_safetensors(path)
    assert meta.get("textok.model") == "lpips", f"{path}: not an LPIPS file"
    m = LPIPS([int(c) for c in meta["channels"].split(",")]).to(dtype).eval()
    read_weights(path, m)
    return m


def disc_from_file(path, dtype=torch.float64):
    _, meta = load_safetensors(path)
    assert meta.get("textok.model") == "disc", f"{path}: not a discriminator file"
    cfg = DiscConfig(int(meta["hidden"]), int(meta["stages"]), int(meta["groups"]), int(meta["pool"]))
    m = NLayerDiscriminator(cfg).to(dtype).eval()
    read_weights(path, m)
    return m, int(meta["image_size"])


if __name__ == "__main__":
    lp = LPIPS()
    n = sum(v.numel() for v in lp.state_dict().values())
    print(f"LPIPS(vgg): {len(lp.state_dict())} tensors, {n:,} values")
    d = NLayerDiscriminator(DiscConfig())
    n = sum(v.numel() for v in d.state_dict().values())
    print(f"NLayerDiscriminator(default): {len(d.state_dict())} tensors, {n:,} values")
    for k, v in d.state_dict().items():
        print(f"  {k} {tuple(v.shape)}")
