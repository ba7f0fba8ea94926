#!/usr/bin/python3
"""Golden files for textok's loss networks (LPIPS, PatchGAN discriminator), from tools/nets_ref.py.

    /usr/bin/python3 tools/gen_golden_nets.py            # write tests/golden/nets/*, then validate
    /usr/bin/python3 tools/gen_golden_nets.py --check    # regenerate into a temp dir, compare bit for
                                                         # bit with tests/golden/nets, validate
    /usr/bin/python3 tools/gen_golden_nets.py --out DIR  # write elsewhere

Files (safetensors, every tensor F32; the reference runs in float64 on the float32 values stored
here and is rounded to float32 once):

  lpips_tiny.safetensors      LPIPS weights, channels 4,8,8,16,16: official LPIPS(net='vgg') names
                              net.slice{1..5}.{idx}.{weight,bias}, lin{0..4}.model.1.weight, in
                              state_dict order.  Metadata textok.model = "lpips",
                              channels = "4,8,8,16,16", format = "pt".
  lpips_tiny_ref.safetensors  x, y      (2,3,32,32) inputs in [0,1] (x = the two test photos
                                        area-resized to 32, y = x + noise clamped to [0,1])
                              d         (2)     LPIPS(x, y)[b] (1d-tokenizer convention: 2x-1 first)
                              d_layers  (5,2)   the per-layer terms (sum over rows = d)
                              dd        (2)     upstream gradient (0.7, -1.3)
                              dx, dy    (2,3,32,32)  d sum_b dd[b] d[b] / d x (and / d y)
  disc_tiny.safetensors       NLayerDiscriminator hidden 8, stages 3, groups 4, pool 2 for 32x32
                              images: block_in.0.*, blocks.{i}.0.*, blocks.{i}.2.*, to_logits.0.*,
                              to_logits.2.* in state_dict order.  Metadata textok.model = "disc",
                              hidden, stages, groups, pool, image_size, format = "pt".
  disc_tiny_ref.safetensors   images    (3,3,32,32) in [0,1] (the two photos + one uniform-random)
                              logits    (3,1,2,2)
                              dlogits   (3,1,2,2)   upstream gradient (random normal)
                              dimg      (3,3,32,32) d sum(dlogits * logits) / d images
                              grad.<param name>     same for every parameter (shape of the param)

Metadata of the _ref files: model, seed, precision = "float64", regenerate = the command above,
and the kink margins of the chosen seed (see below).

Seeds: weights come from nets_ref.lpips_init / disc_init with the first seed (from a base seed) for
which the forward pass keeps away from the kinks of its piecewise-linear ops: every ReLU /
LeakyReLU pre-activation has |v| >= 1e-5 and every max-pool window (with a positive maximum) has a
relative gap (top1 - top2) / top1 >= 1e-4 between its two largest values.  A float32 port then
cannot take the other branch of a kink, so its gradients match this reference to rounding.

Deterministic: single thread, fixed seeds; re-running writes byte-identical files.
"""
import argparse
import math
import os
import shutil
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_golden_titok import load_images  # noqa: E402
from nets_ref import (LPIPS, NLayerDiscriminator, DiscConfig, KinkMonitor, lpips_init, disc_init,  # noqa: E402
                      lpips_file_meta, disc_file_meta, write_weights, save_safetensors, load_safetensors,
                      lpips_from_file, disc_from_file, LPIPS_SHIFT, LPIPS_SCALE, LPIPS_NORM_EPS, VGG_SLICES)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "golden", "nets")
REGENERATE = "/usr/bin/python3 tools/gen_golden_nets.py"
MIN_ACT = 1e-5      # min |pre-activation| of any ReLU / LeakyReLU
MIN_POOL = 1e-4     # min relative gap between the two largest values of a max-pool window

LPIPS_CHANNELS = (4, 8, 8, 16, 16)
LPIPS_BASE_SEED = 5001
LPIPS_DD = (0.7, -1.3)
DISC_CFG = DiscConfig(hidden=8, stages=3, groups=4, pool=2)
DISC_IMAGE = 32
DISC_BASE_SEED = 6001


def lpips_inputs():
    x = load_images(32)                                                   # (2,3,32,32) float32
    g = torch.Generator().manual_seed(LPIPS_BASE_SEED)
    noise = torch.randn(x.shape, generator=g) * torch.tensor([0.1, 0.3]).view(2, 1, 1, 1)
    y = (x + noise).clamp(0.0, 1.0)
    return x, y


def disc_inputs():
    x = load_images(DISC_IMAGE)
    g = torch.Generator().manual_seed(DISC_BASE_SEED)
    r = torch.rand((1, 3, DISC_IMAGE, DISC_IMAGE), generator=g)
    dlogits = torch.randn((3, 1, DISC_CFG.pool, DISC_CFG.pool), generator=g)
    return torch.cat([x, r], 0), dlogits


def margins_ok(mon):
    return mon.relu >= MIN_ACT and mon.pool >= MIN_POOL


def choose_lpips(verbose=True):
    x, y = lpips_inputs()
    for seed in range(LPIPS_BASE_SEED, LPIPS_BASE_SEED + 200):
        m = lpips_init(LPIPS(LPIPS_CHANNELS), seed).eval()
        mon = KinkMonitor()
        with torch.no_grad():
            m.double()(x.double(), y.double(), mon)
        if margins_ok(mon):
            return seed, m.float(), mon
        if verbose:
            print(f"  lpips seed {seed}: {mon}: reseeding")
    raise RuntimeError("no LPIPS seed with safe kink margins")


def choose_disc(verbose=True):
    imgs, _ = disc_inputs()
    for seed in range(DISC_BASE_SEED, DISC_BASE_SEED + 200):
        m = disc_init(NLayerDiscriminator(DISC_CFG), seed).eval()
        mon = KinkMonitor()
        with torch.no_grad():
            m.double()(imgs.double(), mon)
        if margins_ok(mon):
            return seed, m.float(), mon
        if verbose:
            print(f"  disc seed {seed}: {mon}: reseeding")
    raise RuntimeError("no discriminator seed with safe kink margins")


def lpips_reference(model, x, y):
    m = model.double()
    xd, yd = x.double().requires_grad_(True), y.double().requires_grad_(True)
    layers = m.layers(xd, yd)
    d = layers.sum(0)
    dd = torch.tensor(LPIPS_DD, dtype=torch.float64)
    dx, dy = torch.autograd.grad((d * dd).sum(), [xd, yd])
    model.float()
    return OrderedDictF(x=x, y=y, d=d, d_layers=layers, dd=dd, dx=dx, dy=dy)


def disc_reference(model, imgs, dlogits):
    m = model.double()
    params = [p for _, p in m.named_parameters()]
    xd = imgs.double().requires_grad_(True)
    logits = m(xd)
    grads = torch.autograd.grad((logits * dlogits.double()).sum(), [xd] + params)
    out = OrderedDictF(images=imgs, logits=logits, dlogits=dlogits, dimg=grads[0])
    for (name, _), gr in zip(m.named_parameters(), grads[1:]):
        out["grad." + name] = gr
    model.float()
    return out


class OrderedDictF(dict):
    """name -> tensor in insertion order, every value detached and rounded to float32 once."""

    def __init__(self, **kw):
        super().__init__()
        for k, v in kw.items():
            self[k] = v

    def __setitem__(self, k, v):
        super().__setitem__(k, v.detach().to(torch.float32).contiguous())


def ref_meta(model_name, seed, mon):
    return {"model": model_name, "seed": str(seed), "precision": "float64", "regenerate": REGENERATE,
            "min_abs_preactivation": f"{mon.relu:.3g}", "min_maxpool_gap": f"{mon.pool:.3g}"}


def generate(out_dir, verbose=True):
    os.makedirs(out_dir, exist_ok=True)
    seed, lp, mon = choose_lpips(verbose)
    x, y = lpips_inputs()
    ref = lpips_reference(lp, x, y)
    write_weights(os.path.join(out_dir, "lpips_tiny.safetensors"), lp, lpips_file_meta(LPIPS_CHANNELS))
    save_safetensors(os.path.join(out_dir, "lpips_tiny_ref.safetensors"), list(ref.items()),
                     ref_meta("lpips_tiny", seed, mon))
    if verbose:
        print(f"lpips_tiny: seed {seed}, {mon}; d = {ref['d'].tolist()}")

    seed, dm, mon = choose_disc(verbose)
    imgs, dlogits = disc_inputs()
    ref = disc_reference(dm, imgs, dlogits)
    write_weights(os.path.join(out_dir, "disc_tiny.safetensors"), dm, disc_file_meta(DISC_CFG, DISC_IMAGE))
    save_safetensors(os.path.join(out_dir, "disc_tiny_ref.safetensors"), list(ref.items()),
                     ref_meta("disc_tiny", seed, mon))
    if verbose:
        print(f"disc_tiny: seed {seed}, {mon}; logits range [{float(ref['logits'].min()):.3f}, "
              f"{float(ref['logits'].max()):.3f}]")


# ------------------------------------------------------------------------------------------------
# independent checks of the reference itself

def lpips_slow(model, x, y):
    """LPIPS by explicit loops over kernel taps / windows (float64, no torch.nn.functional): the
    shift-and-add 3x3 convolution, max over 2x2 windows, channel norms, lin weights."""
    def conv3x3(h, w, b):                      # h (B,C,H,W), w (O,C,3,3)
        B, C, H, W = h.shape
        hp = torch.zeros(B, C, H + 2, W + 2, dtype=h.dtype)
        hp[:, :, 1:H + 1, 1:W + 1] = h
        out = b.view(1, -1, 1, 1).expand(B, -1, H, W).clone()
        for di in range(3):
            for dj in range(3):
                patch = hp[:, :, di:di + H, dj:dj + W]                         # (B,C,H,W)
                out = out + torch.einsum("bchw,oc->bohw", patch, w[:, :, di, dj])
        return out

    def pool2(h):
        B, C, H, W = h.shape
        a = torch.stack([h[:, :, i::2, j::2] for i in range(2) for j in range(2)], 0)
        return a.max(0).values

    sd = {k: v.double() for k, v in model.state_dict().items()}

    def trunk(img):
        h = torch.empty_like(img)
        for c in range(3):
            h[:, c] = (img[:, c] * 2.0 - 1.0 - LPIPS_SHIFT[c]) / LPIPS_SCALE[c]
        taps = []
        for s, idxs in enumerate(VGG_SLICES):
            if s > 0:
                h = pool2(h)
            for idx in idxs:
                pre = conv3x3(h, sd[f"net.slice{s + 1}.{idx}.weight"], sd[f"net.slice{s + 1}.{idx}.bias"])
                h = torch.where(pre > 0, pre, torch.zeros_like(pre))
            taps.append(h)
        return taps

    tx, ty = trunk(x.double()), trunk(y.double())
    total = torch.zeros(x.shape[0], dtype=torch.float64)
    for k in range(5):
        nx = tx[k] / (tx[k].pow(2).sum(1, keepdim=True).sqrt() + LPIPS_NORM_EPS)
        ny = ty[k] / (ty[k].pow(2).sum(1, keepdim=True).sqrt() + LPIPS_NORM_EPS)
        w = sd[f"lin{k}.model.1.weight"].view(-1)
        for b in range(x.shape[0]):
            acc = 0.0
            for c in range(w.numel()):
                acc += float(w[c]) * float(((nx[b, c] - ny[b, c]) ** 2).mean())
            total[b] += acc
    return total


def fd_check(fn, tensor, idxs, grad, h=1e-6):
    """Central differences of the scalar fn() w.r.t. tensor.view(-1)[i] (float64, in place) against
    grad.view(-1)[i]; returns the worst relative error max|fd - g| / max(|g|, 1e-3 * scale)."""
    flat, g = tensor.data.view(-1), grad.reshape(-1)
    scale = float(g.abs().max())
    worst = 0.0
    for i in idxs:
        old = float(flat[i])
        flat[i] = old + h
        fp = float(fn())
        flat[i] = old - h
        fm = float(fn())
        flat[i] = old
        fd = (fp - fm) / (2 * h)
        worst = max(worst, abs(fd - float(g[i])) / max(abs(float(g[i])), 1e-3 * scale))
    return worst


def validate(out_dir):
    """Re-read the files, check names/shapes/metadata, and check the reference against an explicit
    slow LPIPS and against finite differences (float64)."""
    problems = []
    g = torch.Generator().manual_seed(99)

    # LPIPS
    lp = lpips_from_file(os.path.join(out_dir, "lpips_tiny.safetensors"))
    rt, rmeta = load_safetensors(os.path.join(out_dir, "lpips_tiny_ref.safetensors"))
    ref = dict(rt)
    shapes = {"x": (2, 3, 32, 32), "y": (2, 3, 32, 32), "d": (2,), "d_layers": (5, 2), "dd": (2,),
              "dx": (2, 3, 32, 32), "dy": (2, 3, 32, 32)}
    if {k: tuple(v.shape) for k, v in rt} != shapes or any(v.dtype != torch.float32 for _, v in rt):
        problems.append(f"lpips_tiny_ref: tensors {[(k, tuple(v.shape)) for k, v in rt]}, expected F32 {shapes}")
    if lp.channels != LPIPS_CHANNELS:
        problems.append(f"lpips_tiny: channels {lp.channels}")
    x, y = ref["x"].double(), ref["y"].double()
    d_fast = lp(x, y)
    d_slow = lpips_slow(lp, x, y)
    e_slow = float((d_fast - d_slow).abs().max() / d_slow.abs().max())
    e_ref = float((d_fast.float() - ref["d"]).abs().max())
    xr = x.clone().requires_grad_(True)
    dd = ref["dd"].double()
    dx = torch.autograd.grad((lp(xr, y) * dd).sum(), [xr])[0]
    idx = torch.randint(0, x.numel(), (12,), generator=g).tolist()
    xv = x.clone()
    e_fd = fd_check(lambda: (lp(xv, y) * dd).sum(), xv, idx, dx)
    yv = y.clone()
    yr = y.clone().requires_grad_(True)
    dy = torch.autograd.grad((lp(x, yr) * dd).sum(), [yr])[0]
    e_fdy = fd_check(lambda: (lp(x, yv) * dd).sum(), yv, idx, dy)
    e_dx = float((dx.float() - ref["dx"]).abs().max() / ref["dx"].abs().max())
    print(f"lpips_tiny: |fast - slow|/|d| {e_slow:.2e}, |stored d - fresh| {e_ref:.2e}, "
          f"FD rel err dx {e_fd:.2e} dy {e_fdy:.2e}, stored dx rel {e_dx:.2e}; {rmeta['min_abs_preactivation']} "
          f"min |pre|, {rmeta['min_maxpool_gap']} min pool gap")
    if not (e_slow < 1e-12 and e_ref < 1e-6 and e_fd < 1e-6 and e_fdy < 1e-6 and e_dx < 1e-6):
        problems.append("lpips_tiny: reference self-consistency failed")

    # discriminator
    dm, image_size = disc_from_file(os.path.join(out_dir, "disc_tiny.safetensors"))
    if dm.cfg != DISC_CFG or image_size != DISC_IMAGE:
        problems.append(f"disc_tiny: config {dm.cfg} image {image_size}")
    rt, rmeta = load_safetensors(os.path.join(out_dir, "disc_tiny_ref.safetensors"))
    ref = dict(rt)
    P = DISC_CFG.pool
    shapes = {"images": (3, 3, 32, 32), "logits": (3, 1, P, P), "dlogits": (3, 1, P, P),
              "dimg": (3, 3, 32, 32)}
    shapes.update({"grad." + k: tuple(v.shape) for k, v in dm.state_dict().items()})
    if {k: tuple(v.shape) for k, v in rt} != shapes or any(v.dtype != torch.float32 for _, v in rt):
        problems.append("disc_tiny_ref: tensor names/shapes/dtypes differ from the spec")
    imgs, dl = ref["images"].double(), ref["dlogits"].double()
    worst = 0.0
    params = dict(dm.named_parameters())
    xr = imgs.clone().requires_grad_(True)
    grads = torch.autograd.grad((dm(xr) * dl).sum(), [xr] + list(params.values()))
    with torch.no_grad():
        xv = imgs.clone()
        idx = torch.randint(0, xv.numel(), (8,), generator=g).tolist()
        worst = max(worst, fd_check(lambda: (dm(xv) * dl).sum(), xv, idx, grads[0]))
        for (name, p), gr in zip(params.items(), grads[1:]):
            idx = torch.randint(0, p.numel(), (3,), generator=g).tolist()
            worst = max(worst, fd_check(lambda: (dm(imgs) * dl).sum(), p, idx, gr))
    e_ref = float((dm(imgs).float() - ref["logits"]).abs().max())
    print(f"disc_tiny: |stored logits - fresh| {e_ref:.2e}, FD rel err (images + every param) {worst:.2e}; "
          f"{rmeta['min_abs_preactivation']} min |pre|, {rmeta['min_maxpool_gap']} min pool gap")
    if not (e_ref < 1e-6 and worst < 1e-6):
        problems.append("disc_tiny: reference self-consistency failed")
    total = sum(os.path.getsize(os.path.join(out_dir, f)) for f in os.listdir(out_dir))
    print(f"{out_dir}: {len(os.listdir(out_dir))} files, {total:,} bytes")
    return problems


def compare_dirs(a, b):
    problems = []
    names = sorted(os.listdir(a))
    if names != sorted(os.listdir(b)):
        problems.append(f"file lists differ: {names} vs {sorted(os.listdir(b))}")
    for n in names:
        pa, pb = os.path.join(a, n), os.path.join(b, n)
        if os.path.exists(pb) and open(pa, "rb").read() != open(pb, "rb").read():
            problems.append(f"{pb}: differs from a fresh regeneration")
    return problems


def golden_main(doc, out_default, prefix, generate, validate):
    """The command line every golden generator shares: write (or, with --check, regenerate into
    a temp dir and compare bit for bit), then validate. generate(dir, verbose), validate(dir) ->
    a list of problems. Returns the exit status."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--out", default=out_default)
    ap.add_argument("--check", action="store_true",
                    help="regenerate into a temp dir and compare bit for bit with --out, then validate")
    args = ap.parse_args()
    torch.set_num_threads(1)   # tiny models: single thread, fixed reduction order
    problems = []
    if args.check:
        tmp = tempfile.mkdtemp(prefix=prefix)
        try:
            generate(tmp, verbose=False)
            problems += compare_dirs(tmp, args.out)
        finally:
            shutil.rmtree(tmp)
        if not problems:
            print(f"{args.out}: bit-identical to a fresh regeneration")
    else:
        generate(args.out)
    problems += validate(args.out)
    for p in problems:
        print("  " + p)
    print("FAILED" if problems else "ok")
    return 1 if problems else 0


def main():
    return golden_main(__doc__, OUT, "textok_nets_", generate, validate)


if __name__ == "__main__":
    sys.exit(main())
