#!/usr/bin/env python3
"""Training curves of the shipped emoji models: weights/emoji/curves.png.

    /usr/bin/python3 tools/plot_curves.py OUT.png LABEL=RUN_DIR [LABEL=RUN_DIR ...]

Each RUN_DIR is a build/train_tokenizer --out folder (its log.csv: step, recon, ...) or a
build/train_generator one (step, loss, ...). Tokenizer runs are drawn as the training batch's
reconstruction PSNR, 10 log10(1 / recon) (recon is the L2 loss: the mean squared error of images
in [0, 1]), averaged over windows of 5 logged steps, dashed when the label says "no text";
generator runs as their loss on a second panel. Needs Debian's python3-matplotlib; the figure is
a documentation artefact, not a test.
"""
import csv
import math
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read(run_dir):
    with open(run_dir + "/log.csv", newline="") as f:
        return list(csv.DictReader(f))


def smooth(xs, ys, k=5):
    out_x, out_y = [], []
    for i in range(0, len(xs) - k + 1, k):
        out_x.append(xs[i + k - 1])
        out_y.append(sum(ys[i:i + k]) / k)
    return out_x, out_y


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    out = sys.argv[1]
    runs = [a.rsplit("=", 1) for a in sys.argv[2:]]  # the last "=": labels may hold one
    tok = [(label, read(d)) for label, d in runs if "recon" in read(d)[0]]
    gen = [(label, read(d)) for label, d in runs if "recon" not in read(d)[0]]
    panels = 1 + (1 if gen else 0)
    fig, axes = plt.subplots(1, panels, figsize=(6.5 * panels, 4.2), squeeze=False)
    ax = axes[0][0]
    for label, rows in tok:
        xs = [int(r["step"]) for r in rows]
        ys = [10 * math.log10(1 / max(float(r["recon"]), 1e-10)) for r in rows]
        ax.plot(*smooth(xs, ys), label=label, linestyle="--" if "no text" in label else "-")
    ax.set_xlabel("step (batch 32)")
    ax.set_ylabel("training-batch PSNR (dB)")
    ax.set_title("TexTok 64x64 on emoji: reconstruction during training")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if gen:
        ax = axes[0][1]
        for label, rows in gen:
            xs = [int(r["step"]) for r in rows]
            ys = [float(r["loss"]) for r in rows]
            ax.plot(*smooth(xs, ys), label=label)
        ax.set_xlabel("step")
        ax.set_ylabel("diffusion loss")
        ax.set_title("DiT-T2I on the TexTok tokens")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    print("wrote", out)


if __name__ == "__main__":
    main()
