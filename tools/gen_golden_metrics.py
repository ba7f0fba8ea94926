#!/usr/bin/python3
"""Golden image metrics (MSE, PSNR, SSIM) for textok_image_metrics, computed independently with
PyTorch in float64.

    /usr/bin/python3 tools/gen_golden_metrics.py             # write tests/golden/metrics/metrics.safetensors, then validate
    /usr/bin/python3 tools/gen_golden_metrics.py --check     # regenerate into a temp dir, compare bit
                                                             # for bit with tests/golden/metrics, validate
    /usr/bin/python3 tools/gen_golden_metrics.py --out DIR   # write elsewhere

Definitions (the ones textok.h documents; data range L = 1, nothing clamped):
    mse   mean of (x - y)^2 over all C*H*W values
    psnr  10 log10(1 / max(mse, 1e-10))  (identical images: 100 dB)
    ssim  Wang et al. 2004 with an 11x11 Gaussian window, sigma 1.5 (normalised to sum 1),
          K1 = 0.01, K2 = 0.03, population statistics, per channel over the VALID positions only
          ((H-10) x (W-10): F.conv2d without padding), averaged over channels and positions =
          skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
          use_sample_covariance=False, data_range=1, channel_axis=0)

Cases, one image pair each, planar (C,H,W) float32 (the inputs are float32; the metrics are taken
on their float64 values):
    photo_noise  (3,32,32)  test image 0 (area-resized 256 -> 32) vs itself + N(0, 0.08^2), clamped
    photo_blur   (3,28,40)  a crop of test image 1 (area-resized to 48) vs a 5x5 box blur of it
                            (replicate padding), rounded to 8 bits like a PNG: non-square
    shift        (3,24,24)  test image 0 (resized to 24) vs itself + 0.03 (brightness: luminance term)
    random       (3,16,16)  two independent uniform [0,1) images (SSIM near 0)
    identical    (3,16,16)  an image against itself: mse 0, psnr exactly 100, ssim exactly 1
    gray         (1,23,37)  one channel, odd sizes: a gray version of test image 1 vs 0.8 x + 0.1
    min11        (2,11,11)  the smallest size: one window position per channel

File tests/golden/metrics/metrics.safetensors: F32 tensors "<case>.x" and "<case>.y" (C,H,W);
__metadata__: "cases" = the names, comma-separated, and "<case>.mse", "<case>.psnr", "<case>.ssim"
= the float64 results as Python repr strings (shortest round-trip: strtod reads them back exactly),
plus "textok.model" = "metrics_golden".

--check also validates: the stored results against a fresh torch run on the stored tensors (exact),
against a direct per-window loop in float64 (weighted centred moments, no E[x^2] - mx^2 shortcut;
within 1e-12), the identical case exactly 0 / 100 / 1, and, when python3-skimage is installed,
against skimage.metrics.structural_similarity with the options above (within 1e-12).

Deterministic (single thread, fixed seeds): re-running writes byte-identical files.
"""
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_golden_titok import IMAGES, save_safetensors, load_safetensors  # noqa: E402
from gen_golden_nets import golden_main  # noqa: E402
from PIL import Image  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "golden", "metrics")
FILE = "metrics.safetensors"
MAX_BYTES = 100_000
WIN, SIGMA, K1, K2 = 11, 1.5, 0.01, 0.03
MSE_FLOOR = 1e-10
CASES = ["photo_noise", "photo_blur", "shift", "random", "identical", "gray", "min11"]


# ------------------------------------------------------------------------------------------------
# the metrics, torch float64

def gaussian_window():
    """(11,) float64 taps exp(-k^2 / (2 sigma^2)), k = -5..5, normalised to sum 1."""
    k = torch.arange(WIN, dtype=torch.float64) - WIN // 2
    g = torch.exp(-0.5 * k * k / (SIGMA * SIGMA))
    return g / g.sum()


def metrics(x, y):
    """x, y (C,H,W) float32 -> (mse, psnr, ssim) Python floats, computed in float64."""
    x, y = x.double(), y.double()
    mse = float(((x - y) ** 2).mean())
    psnr = 10.0 * math.log10(1.0 / max(mse, MSE_FLOOR))
    g = gaussian_window()
    w = torch.outer(g, g).view(1, 1, WIN, WIN)
    X, Y = x.unsqueeze(1), y.unsqueeze(1)          # (C,1,H,W): each channel on its own

    def blur(t):                                   # valid positions only: no padding
        return F.conv2d(t, w)
    mx, my = blur(X), blur(Y)
    sxx = blur(X * X) - mx * mx                    # population statistics
    syy = blur(Y * Y) - my * my
    sxy = blur(X * Y) - mx * my
    c1, c2 = K1 ** 2, K2 ** 2
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return mse, psnr, float(s.mean())


def ssim_loop(x, y):
    """The same SSIM by a direct loop over window positions, numpy float64: weighted centred
    moments sum w (x - mx)^2 instead of E[x^2] - mx^2 (a check on the torch version)."""
    x, y = x.double().numpy(), y.double().numpy()
    g = gaussian_window().numpy()
    w = np.outer(g, g)
    c1, c2 = K1 ** 2, K2 ** 2
    C, H, W = x.shape
    total, count = 0.0, 0
    for c in range(C):
        for i in range(H - WIN + 1):
            for j in range(W - WIN + 1):
                a, b = x[c, i:i + WIN, j:j + WIN], y[c, i:i + WIN, j:j + WIN]
                ma, mb = (w * a).sum(), (w * b).sum()
                va, vb = (w * (a - ma) ** 2).sum(), (w * (b - mb) ** 2).sum()
                cab = (w * (a - ma) * (b - mb)).sum()
                total += ((2 * ma * mb + c1) * (2 * cab + c2)) / ((ma * ma + mb * mb + c1) * (va + vb + c2))
                count += 1
    return total / count


# ------------------------------------------------------------------------------------------------
# the image pairs

def test_image(i, size):
    """test image i as (3,size,size) float32: uint8/255, area-resized in float64 (exact box means
    where size divides 256), rounded to float32 once."""
    a = np.asarray(Image.open(IMAGES[i]).convert("RGB"), dtype=np.uint8)
    x = torch.from_numpy(a.copy()).permute(2, 0, 1).unsqueeze(0).double() / 255.0
    return F.interpolate(x, size=(size, size), mode="area")[0].float()


def make_cases():
    gen = torch.Generator().manual_seed(8)
    cases = {}
    x = test_image(0, 32)
    noise = torch.randn(x.shape, generator=gen, dtype=torch.float64)
    cases["photo_noise"] = (x, (x.double() + 0.08 * noise).clamp(0, 1).float())

    x = test_image(1, 48)[:, 10:38, 4:44].contiguous()
    xp = F.pad(x.double().unsqueeze(0), (2, 2, 2, 2), mode="replicate")
    box = torch.full((3, 1, 5, 5), 1.0 / 25, dtype=torch.float64)
    y = F.conv2d(xp, box, groups=3)[0]
    cases["photo_blur"] = (x, (torch.floor(y * 255.0 + 0.5) / 255.0).float())

    x = test_image(0, 24)
    cases["shift"] = (x, (x.double() + 0.03).float())

    cases["random"] = (torch.rand((3, 16, 16), generator=gen), torch.rand((3, 16, 16), generator=gen))

    x = test_image(1, 16)
    cases["identical"] = (x, x.clone())

    rgb = test_image(1, 64)[:, 20:43, 10:47].double()
    gray = (0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]).unsqueeze(0)
    cases["gray"] = (gray.float(), (0.8 * gray + 0.1).float())

    cases["min11"] = (torch.rand((2, 11, 11), generator=gen), torch.rand((2, 11, 11), generator=gen))
    assert list(cases) == CASES
    return cases


def generate(out_dir, verbose=True):
    os.makedirs(out_dir, exist_ok=True)
    tensors, meta = [], {"textok.model": "metrics_golden", "cases": ",".join(CASES)}
    for name, (x, y) in make_cases().items():
        assert x.dtype == torch.float32 and y.dtype == torch.float32 and x.shape == y.shape
        mse, psnr, ssim = metrics(x, y)
        tensors += [(name + ".x", x.contiguous()), (name + ".y", y.contiguous())]
        meta[name + ".mse"], meta[name + ".psnr"], meta[name + ".ssim"] = repr(mse), repr(psnr), repr(ssim)
        if verbose:
            print(f"{name:12s} {str(tuple(x.shape)):12s} mse {mse:.6e}  psnr {psnr:8.4f} dB  ssim {ssim:.6f}")
    save_safetensors(os.path.join(out_dir, FILE), tensors, meta)


# ------------------------------------------------------------------------------------------------
# validation

def validate(out_dir):
    problems = []
    path = os.path.join(out_dir, FILE)
    tensors, meta = load_safetensors(path)
    t = dict(tensors)
    if meta.get("cases") != ",".join(CASES):
        problems.append(f"{path}: cases {meta.get('cases')!r}, expected {','.join(CASES)!r}")
    try:
        from skimage.metrics import structural_similarity
    except ImportError:
        structural_similarity = None
        print("skimage not installed (python3-skimage): the scikit-image cross-check is skipped")
    worst_loop = worst_sk = 0.0
    for name in CASES:
        x, y = t[name + ".x"], t[name + ".y"]
        got = metrics(x, y)
        stored = tuple(float(meta[name + "." + k]) for k in ("mse", "psnr", "ssim"))
        if got != stored:
            problems.append(f"{name}: stored {stored} != recomputed {got}")
        d = abs(ssim_loop(x, y) - stored[2])
        worst_loop = max(worst_loop, d)
        if not d <= 1e-12:
            problems.append(f"{name}: ssim {stored[2]!r} vs the direct loop: |diff| {d:.3e} > 1e-12")
        if structural_similarity is not None:
            sk = structural_similarity(x.double().numpy(), y.double().numpy(), gaussian_weights=True, sigma=SIGMA,
                                       use_sample_covariance=False, data_range=1.0, channel_axis=0)
            d = abs(float(sk) - stored[2])
            worst_sk = max(worst_sk, d)
            if not d <= 1e-12:
                problems.append(f"{name}: ssim {stored[2]!r} vs skimage {float(sk)!r}: |diff| {d:.3e} > 1e-12")
    if tuple(float(meta["identical." + k]) for k in ("mse", "psnr", "ssim")) != (0.0, 100.0, 1.0):
        problems.append("identical: expected mse 0, psnr 100, ssim 1 exactly")
    print(f"ssim vs the direct loop: max |diff| {worst_loop:.3e}" +
          (f"; vs skimage: max |diff| {worst_sk:.3e}" if structural_similarity is not None else ""))
    files = sorted(os.listdir(out_dir))
    if files != [FILE]:
        problems.append(f"{out_dir}: files {files}, expected [{FILE}]")
    size = os.path.getsize(path)
    print(f"{path}: {size:,} bytes")
    if size > MAX_BYTES:
        problems.append(f"{path}: {size:,} bytes, over the {MAX_BYTES:,} budget")
    return problems


def main():
    return golden_main(__doc__, OUT, "textok_metrics_", generate, validate)


if __name__ == "__main__":
    sys.exit(main())
