#!/usr/bin/python3
"""The PyTorch side of `build/bench --compare`: one unit of work per process, so that the peak RSS
it reports belongs to that unit alone.

    /usr/bin/python3 tools/bench_compare_torch.py --unit UNIT [--threads 2] [--budget 1.5] [--spec S]

build/bench --compare starts this twice per unit, once with OPENBLAS_CORETYPE and OMP_WAIT_POLICY
removed from the environment ("default", what a user gets) and once with OPENBLAS_CORETYPE=SkylakeX
OMP_WAIT_POLICY=passive ("tuned"); both are read when the libraries load, so they cannot be set
from in here.  Units (the same work as build/bench --row UNIT, the C side):

    sgemm               torch.mm of two 2048 x 2048 float32 matrices
    attn-B              attention at ViT shapes, batch B (1 or 8), T 321, C 768, 12 heads: q @ k^T
                        * scale, softmax, @ v, with the head split / merge reshapes (torch 1.13 has
                        no F.scaled_dot_product_attention; this is tools/dit_ref.py's mha)
    titok-MODEL-B       TiTok MODEL (s128, b64, l32; tools/titok_ref.py, legacy VQ with the conv
                        pixel decoder, 256 x 256) at batch B: encode, decode (decode_tokens) and,
                        for s128, decode_pixel (the MaskGIT-VQGAN pixel decoder alone)
    train-NAME          one training step; --spec is build/bench --train's row spec, run by
                        tools/bench_train_torch.py (warm-up and timed steps come from the spec)
    dit-b               DiT-B/1 over 64 1D tokens of 12 channels (tools/dit_ref.py, 1000 classes,
                        learn_sigma), one classifier-free-guided DDPM step for 8 images: the
                        conditional and null halves as one batch of 16 (forward_with_cfg) and the
                        p_sample update of a 250-step respaced diffusion

float32, no grad (except training), torch.set_num_threads(--threads), seeded random weights and
inputs.  Timing (the same rule as the C side): one warm-up call of t_w seconds, then
n = clamp(floor(budget / t_w), 1, 10) timed calls, median.  Output lines:

    row <key> <ms>          (ms per call, for the whole batch)
    peak <gflops>           (sgemm only: the fastest call, for the run's sgemm peak)
    rss <kib>               (resource.getrusage(RUSAGE_SELF).ru_maxrss at the end: the peak)
    # ...                   (comments)
"""
import argparse
import os
import resource
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def timed(fn, budget, best=None):
    """median seconds of n calls after one warm-up; best: a list that receives the fastest call"""
    t0 = time.perf_counter()
    fn()                                            # warm-up (allocator, oneDNN primitive caches)
    tw = time.perf_counter() - t0
    n = max(1, min(10, int(budget / max(tw, 1e-9))))
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    if best is not None:
        best.append(min(ts))
    return statistics.median(ts)


def row(key, s):
    print(f"row {key} {1000.0 * s:.3f}", flush=True)


@torch.no_grad()
def unit_sgemm(budget):
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(2048, 2048, generator=g), torch.randn(2048, 2048, generator=g)
    c = torch.empty(2048, 2048)
    best = []
    row("sgemm", timed(lambda: torch.mm(a, b, out=c), budget, best))
    print(f"peak {2.0 * 2048 ** 3 / best[0] * 1e-9:.3f}", flush=True)   # for the run's sgemm peak


@torch.no_grad()
def unit_attn(B, budget):
    from dit_ref import mha
    T, C, H = 321, 768, 12
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(B, T, C, generator=g) for _ in range(3))
    row(f"attn-{B}", timed(lambda: mha(q, k, v, H), budget))


@torch.no_grad()
def unit_titok(name, B, budget):
    from titok_ref import TiTok, titok_config, init_weights
    cfg = titok_config(name)
    m = init_weights(TiTok(cfg), seed=1).eval()
    x = torch.rand(B, 3, cfg.image_size, cfg.image_size, generator=torch.Generator().manual_seed(2))
    ids = m.encode(x)["tokens"]
    lat = m.lookup(ids)
    logits = m.decode_vit(lat)
    key = f"titok-{name}-{B}"
    row(f"{key}-encode", timed(lambda: m.encode(x), budget))
    row(f"{key}-decode", timed(lambda: m.decode_tokens(ids), budget))
    if name == "s128":                              # the pixel decoder is the same in every model
        row(f"{key}-decode_pixel", timed(lambda: m.decode_pixels(logits), budget))


def unit_train(spec):
    from bench_train_torch import bench_row
    name = spec.split(":", 1)[0]
    row(f"train-{name}", bench_row(spec) / 1000.0)


@torch.no_grad()
def unit_dit(budget):
    from dit_ref import DiT, DiTConfig, Diffusion, initialize_weights
    cfg = DiTConfig(in_channels=12, input_size=64, seq_1d=1, patch_size=1, hidden=768, depth=12, heads=12,
                    mlp_hidden=3072, num_classes=1000, learn_sigma=1, guide_channels=12, latent_scale=1.0)
    m = initialize_weights(DiT(cfg), seed=1).eval()
    diff = Diffusion(1000, "250")
    B = 8
    g = torch.Generator().manual_seed(2)
    x = torch.randn(B, cfg.in_channels, 1, cfg.input_size, generator=g)
    noise = torch.randn(B, cfg.in_channels, 1, cfg.input_size, generator=g)
    y = torch.arange(B, dtype=torch.long) * 7
    i = diff.n // 2
    t = torch.full((B,), diff.timestep_map[i], dtype=torch.long)

    def step():
        out = m.forward_with_cfg(x, t, y, None, None, 4.0)
        return diff.p_step(i, x, out, noise, True)
    row("dit-b", timed(step, budget))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--unit", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--budget", type=float, default=1.5, help="seconds of timed calls per measurement")
    ap.add_argument("--spec", default="", help="train-*: the build/bench --train row spec")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    u = args.unit
    print(f"# torch {torch.__version__}, {args.threads} threads, unit {u}, OPENBLAS_CORETYPE="
          f"{os.environ.get('OPENBLAS_CORETYPE', 'unset')} OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}",
          flush=True)
    if u == "sgemm":
        unit_sgemm(args.budget)
    elif u.startswith("attn-"):
        unit_attn(int(u[5:]), args.budget)
    elif u.startswith("titok-"):
        _, name, B = u.split("-")
        unit_titok(name, int(B), args.budget)
    elif u.startswith("train-"):
        if not args.spec:
            raise SystemExit("bench_compare_torch.py: train units need --spec")
        unit_train(args.spec)
    elif u == "dit-b":
        unit_dit(args.budget)
    else:
        raise SystemExit(f"bench_compare_torch.py: unknown unit '{u}'")
    print(f"rss {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
