#!/usr/bin/python3
"""Time the PyTorch TiTok reference (tools/titok_ref.py) on CPU, for comparison with textok.

    /usr/bin/python3 tools/bench_torch.py [--models s128,b64,l32] [--batches 1,8] [--reps 3] [--threads 2]
                                          [--device cpu|cuda]

--device cuda (build/bench_cuda --titok --cuda --torch): the same models on the GPU, strict FP32 as
textok's CUDA table (TF32 off for matmuls and cuDNN convolutions), each timed call ended by
torch.cuda.synchronize().

float32, no grad, torch.set_num_threads(--threads), random (seeded) weights and images.  For each model
and batch size: one warm-up run, then the median of --reps runs, reported per image.  Output, one row
per line (comments start with '#'):

    torch <model> <batch> <stage> <ms_per_image>

Stages: encode (encoder + VQ argmin + lookup), decode_vit (ViT decoder: latents -> proxy-code logits),
decode_pixel (softmax, soft code embedding, MaskGIT-VQGAN pixel decoder), decode (decode_tokens:
lookup + decode_vit + decode_pixel, timed as one call).
"""
import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from titok_ref import TiTok, titok_config, init_weights, count_params  # noqa: E402


DEVICE = torch.device("cpu")


def sync():
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, reps):
    fn()                                            # warm-up (allocator, oneDNN primitive caches)
    sync()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


@torch.no_grad()
def bench_model(name, batches, reps):
    cfg = titok_config(name)
    t0 = time.perf_counter()
    m = init_weights(TiTok(cfg), seed=1).eval().to(DEVICE)
    print(f"# {name}: {count_params(m):,} params, built in {time.perf_counter() - t0:.1f}s", flush=True)
    g = torch.Generator().manual_seed(2)
    for B in batches:
        x = torch.rand(B, 3, cfg.image_size, cfg.image_size, generator=g).to(DEVICE)
        ids = m.encode(x)["tokens"]
        lat = m.lookup(ids)
        logits = m.decode_vit(lat)
        stages = [
            ("encode", lambda: m.encode(x)),
            ("decode_vit", lambda: m.decode_vit(lat)),
            ("decode_pixel", lambda: m.decode_pixels(logits)) if cfg.is_legacy else None,
            ("decode", lambda: m.decode_tokens(ids)),
        ]
        for st in stages:
            if st is None:
                continue
            s = timed(st[1], reps)
            print(f"torch {name} {B} {st[0]} {1000.0 * s / B:.2f}", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="s128,b64,l32")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = ap.parse_args()
    global DEVICE
    DEVICE = torch.device(args.device)
    if args.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        print(f"# device {torch.cuda.get_device_name(0)}, strict FP32 (TF32 off)")
    torch.set_num_threads(args.threads)
    print(f"# torch {torch.__version__}, {args.threads} threads, float32, median of {args.reps} "
          f"after 1 warm-up; columns: torch <model> <batch> <stage> <ms_per_image>")
    for name in args.models.split(","):
        bench_model(name.strip(), [int(b) for b in args.batches.split(",")], args.reps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
