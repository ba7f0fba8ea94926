#!/usr/bin/python3
"""Golden MaskGIT generators (TiTok's ImageBert and UViTBert) for textok, from the independent
PyTorch reference tools/maskgit_ref.py (written from architecture.md 4 and 8, not from our C code).

    /usr/bin/python3 tools/gen_golden_maskgit.py             # write tests/golden/maskgit/*, then validate
    /usr/bin/python3 tools/gen_golden_maskgit.py --check     # regenerate into a temp dir, compare bit
                                                             # for bit, validate
    /usr/bin/python3 tools/gen_golden_maskgit.py --out DIR   # write elsewhere

Models (V = codebook 16, 5 classes, L = 8, width 16, 2 heads, MLP 32):
    bert_tiny   ImageBert, 2 layers
    uvit_tiny   UViTBert, depth 4 (in_blocks 0-1, mid_block, out_blocks 0-1: out_blocks.0 pairs with
                in_blocks.1, so the LIFO order matters)

Files per model <name>:
    <name>.safetensors      F32 weights, official names in state_dict order, metadata {"format": "pt"};
                            bert_tiny also holds the legacy buffer model.embeddings.position_ids (1, L+1)
                            = arange (as F32: our reader takes float dtypes), first as in old
                            transformers' state_dicts - loaders must ignore it
    <name>_ref.safetensors  F32, metadata = the config (MaskGITConfig.to_meta) plus the cases:
      forward:   ids (3, L) in [0, V] (V = masked), classes (3) (the last = num_classes, the null
                 class), logits (3, L, V)
      training:  seed; train_tokens (3, L) in [0, V), train_classes (3); the uniforms the trainer hook
                 draws from textok_rng seeded with `seed` (= torch.manual_seed's stream): mask_t (3),
                 mask_u (3, L), drop_u (3); masks_arccos / masks_cosine / masks_linear (3, L) 0/1
                 (rank(u) < max(1, round(L ratio(t)))); drops (3) 0/1 (drop_u < cond_dropout); with
                 the metadata's train_schedule, label_smoothing, unmasked_weight, cond_dropout:
                 loss (1), accuracy (1), and grad.<param> for every parameter (d loss / d param)
      sampling:  step cases k = 0..n_steps-1 with metadata step<k>.{s,T,g,decay,pow,tau,anneal}:
                 step<k>.ids_in (3, L), step<k>.classes (3), step<k>.u1 (3, L, V), step<k>.u2 (3, L),
                 step<k>.ids_out (3, L). Every case's Gumbel-argmax margin (top-1 minus top-2 of the noisy
                 logits at masked positions) and cut margin (next confidence minus the cut) is >= 1e-3,
                 so a float32 port must reproduce the ids exactly.
    unmask_counts.safetensors: the tokens decoded per step for (L, T) = (32, 8), (64, 8), (128, 64)
                 (architecture.md 4.4), checked against the values written there.

The reference runs in float64 on float32 weights and inputs; outputs are rounded to float32 once.
Deterministic (single thread, fixed seeds): re-running writes byte-identical files.
"""
import copy
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_golden_titok import save_safetensors, load_safetensors  # noqa: E402
from gen_golden_nets import golden_main, fd_check  # noqa: E402
from maskgit_ref import (MaskGITConfig, make_model, init_weights, forward, sample_step, unmask_counts,  # noqa: E402
                         mask_tokens, mlm_loss)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "golden", "maskgit")
B = 3
MIN_MARGIN = 1e-3
MAX_BYTES = 400 * 1000

MODELS = {
    "bert_tiny": (MaskGITConfig("bert", 16, 5, 8, 16, 2, 2, 32), 31001,
                  dict(train_schedule="arccos", label_smoothing=0.1, unmasked_weight=0.1, cond_dropout=0.5)),
    "uvit_tiny": (MaskGITConfig("uvit", 16, 5, 8, 16, 4, 2, 32), 32001,
                  dict(train_schedule="cosine", label_smoothing=0.2, unmasked_weight=0.3, cond_dropout=0.5)),
}
T_STEPS = 4
# (s, decay, g, tau, anneal): constant; linear at step 0 (no guidance: one pass) and later;
# power-cosine mid-way and at the last step (everything decoded)
STEPS = [(1, "constant", 3.0, 2.0, 0), (0, "linear", 3.0, 2.0, 1), (2, "linear", 3.0, 2.0, 1),
         (1, "power-cosine", 4.0, 1.5, 1), (3, "power-cosine", 4.0, 1.5, 0)]
DOC_COUNTS = {(32, 8): [3, 3, 2, 3, 3, 4, 4, 10], (64, 8): [6, 5, 5, 6, 6, 7, 9, 20]}


def model_for(cfg, seed):
    torch.manual_seed(0)
    m = init_weights(make_model(cfg), seed).float()
    return m.eval()


def f64(m):
    return copy.deepcopy(m).double()


def masked_counts(L, T):
    m, out = L, []
    for c in unmask_counts(L, T):
        out.append(m)
        m -= c
    return out


def forward_case(cfg, seed):
    g = torch.Generator().manual_seed(seed + 1)
    V, L = cfg.codebook_size, cfg.seq_len
    ids = torch.randint(0, V, (B, L), generator=g)
    ids[torch.rand(B, L, generator=g) < 0.4] = V
    classes = torch.tensor([1, cfg.num_classes - 1, cfg.num_classes])
    return ids, classes


def train_case(cfg, seed, tc, m64):
    """-> dict of tensors + the seed used for the uniforms (first with one drop and one keep and
    argmax margins >= MIN_MARGIN at masked positions)."""
    V, L = cfg.codebook_size, cfg.seq_len
    g = torch.Generator().manual_seed(seed + 2)
    tokens = torch.randint(0, V, (B, L), generator=g)
    classes = torch.tensor([0, 2, cfg.num_classes - 1])
    for useed in range(seed + 100, seed + 200):
        ug = torch.Generator().manual_seed(useed)
        t = torch.rand(B, generator=ug)
        u = torch.rand(B, L, generator=ug)
        du = torch.rand(B, generator=ug)
        drops = du < tc["cond_dropout"]
        if drops.all() or not drops.any():
            continue
        masks = mask_tokens(tc["train_schedule"], t, u)
        for p in m64.parameters():
            p.grad = None
        loss, acc, logits = mlm_loss(m64, tokens, classes, masks, drops, tc["label_smoothing"], tc["unmasked_weight"])
        top2 = logits.topk(2, dim=-1).values
        if float((top2[..., 0] - top2[..., 1]).min()) < MIN_MARGIN:
            continue
        loss.backward()
        out = {"train_tokens": tokens.float(), "train_classes": classes.float(), "mask_t": t, "mask_u": u, "drop_u": du}
        for sch in ("arccos", "cosine", "linear"):
            out["masks_" + sch] = mask_tokens(sch, t, u).float()
        out["drops"] = drops.float()
        out["loss"] = loss.detach().float().view(1)
        out["accuracy"] = acc.float().view(1)
        for n, p in m64.named_parameters():
            out["grad." + n] = p.grad.float()
        return out, useed
    raise RuntimeError("no uniform seed with a drop, a keep and safe argmax margins")


def step_case(cfg, seed, k, m64):
    s, decay, gs, tau, anneal = STEPS[k]
    V, L = cfg.codebook_size, cfg.seq_len
    g = torch.Generator().manual_seed(seed + 10 + k)
    nm = masked_counts(L, T_STEPS)[s]
    classes = torch.tensor([2, 0, cfg.num_classes - 1])
    for _ in range(100):
        ids = torch.randint(0, V, (B, L), generator=g)
        for b in range(B):
            ids[b, torch.randperm(L, generator=g)[:nm]] = V
        u1 = torch.rand(B, L, V, generator=g)
        u2 = torch.rand(B, L, generator=g)
        new, am, cm = sample_step(m64, ids, classes, s, T_STEPS, gs, decay, 3.0, tau, anneal, u1.double(), u2.double())
        if am >= MIN_MARGIN and cm >= MIN_MARGIN:
            meta = {"s": str(s), "T": str(T_STEPS), "g": repr(gs), "decay": decay, "pow": "3.0",
                    "tau": repr(tau), "anneal": str(anneal)}
            return {"ids_in": ids.float(), "classes": classes.float(), "u1": u1, "u2": u2, "ids_out": new.float()}, meta, am, cm
    raise RuntimeError("no step inputs with safe margins")


def build(name):
    cfg, seed, tc = MODELS[name]
    m = model_for(cfg, seed)
    m64 = f64(m)
    ids, classes = forward_case(cfg, seed)
    with torch.no_grad():
        logits = forward(m64, ids, classes).float()
    ref = {"ids": ids.float(), "classes": classes.float(), "logits": logits}
    tr, useed = train_case(cfg, seed, tc, m64)
    ref.update(tr)
    meta = cfg.to_meta()
    meta["model"] = name
    meta["seed"] = str(useed)
    for key, v in tc.items():
        meta[key] = v if isinstance(v, str) else repr(v)
    meta["n_steps"] = str(len(STEPS))
    margins = []
    for k in range(len(STEPS)):
        t, sm, am, cm = step_case(cfg, seed, k, m64)
        for key, v in t.items():
            ref[f"step{k}.{key}"] = v
        for key, v in sm.items():
            meta[f"step{k}.{key}"] = v
        margins.append((am, cm))
    meta["precision"] = "float64"
    weights = list(m.state_dict().items())
    if cfg.arch == "bert":
        weights = [("model.embeddings.position_ids", torch.arange(cfg.seq_len + 1, dtype=torch.float32).view(1, -1))] + weights
    return weights, ref, meta, margins


def generate(out_dir, verbose=True):
    os.makedirs(out_dir, exist_ok=True)
    for name in MODELS:
        weights, ref, meta, margins = build(name)
        save_safetensors(os.path.join(out_dir, name + ".safetensors"), weights, {"format": "pt"})
        save_safetensors(os.path.join(out_dir, name + "_ref.safetensors"),
                         [(k, v.float().contiguous()) for k, v in ref.items()], meta)
        if verbose:
            print(f"{name}: uniform seed {meta['seed']}, loss {float(ref['loss']):.6f}, accuracy "
                  f"{float(ref['accuracy']):.4f}, step margins " + ", ".join(f"{a:.3g}/{c:.3g}" for a, c in margins))
    cases = [(32, 8), (64, 8), (128, 64)]
    save_safetensors(os.path.join(out_dir, "unmask_counts.safetensors"),
                     [(f"L{L}_T{T}", torch.tensor(unmask_counts(L, T), dtype=torch.float32)) for L, T in cases],
                     {"format": "pt"})


def validate(out_dir):
    problems = []
    total = 0
    for f in sorted(os.listdir(out_dir)):
        total += os.path.getsize(os.path.join(out_dir, f))
    if total > MAX_BYTES:
        problems.append(f"{out_dir}: {total} bytes, more than {MAX_BYTES}")
    # the unmask counts against the values architecture.md 4.4 states
    ct = dict(load_safetensors(os.path.join(out_dir, "unmask_counts.safetensors"))[0])
    for (L, T), want in DOC_COUNTS.items():
        if ct[f"L{L}_T{T}"].long().tolist() != want:
            problems.append(f"unmask counts L={L},T={T}: {ct[f'L{L}_T{T}'].long().tolist()} != {want}")
    c128 = ct["L128_T64"].long().tolist()
    if not (all(1 <= c <= 4 for c in c128[:61]) and c128[61:] == [5, 6, 14] and sum(c128) == 128):
        problems.append(f"unmask counts L=128,T=64: {c128}")
    for name in MODELS:
        cfg, seed, tc = MODELS[name]
        m = model_for(cfg, seed)
        w, wmeta = load_safetensors(os.path.join(out_dir, name + ".safetensors"))
        names = [k for k, _ in w]
        want = list(m.state_dict().keys())
        if cfg.arch == "bert":
            want = ["model.embeddings.position_ids"] + want
            n_expect = 5 + 16 * cfg.depth + 2
        else:
            n_expect = 2 + 11 * (cfg.depth + 1) + 2 * (cfg.depth // 2) + 4
        if names != want or len(m.state_dict()) != n_expect:
            problems.append(f"{name}: tensor names/order differ from the official layout")
        if cfg.arch == "uvit":
            ob = [k for k in names if k.startswith("out_blocks.0.")]
            if not ob[-2:] == ["out_blocks.0.skip_linear.weight", "out_blocks.0.skip_linear.bias"]:
                problems.append(f"{name}: skip_linear is not listed last in out_blocks.0")
        ref = dict(load_safetensors(os.path.join(out_dir, name + "_ref.safetensors"))[0])
        # finite differences of the float64 MLM loss against the stored gradients (a few entries)
        m64 = f64(m)
        tokens, classes = ref["train_tokens"].long(), ref["train_classes"].long()
        masks = ref["masks_" + tc["train_schedule"]] > 0.5
        drops = ref["drops"] > 0.5

        def lossf():
            with torch.no_grad():
                return mlm_loss(m64, tokens, classes, masks, drops, tc["label_smoothing"], tc["unmasked_weight"])[0]
        worst = 0.0
        for pn, p in list(m64.named_parameters())[::5]:
            gr = ref["grad." + pn].double()
            idx = list(range(0, p.numel(), max(1, p.numel() // 3)))[:3]
            worst = max(worst, fd_check(lossf, p, idx, gr))
        if not worst < 1e-5:
            problems.append(f"{name}: finite differences of the loss disagree with grad.* by {worst:.3g}")
        # the masks come from the uniforms
        for sch in ("arccos", "cosine", "linear"):
            if not torch.equal(mask_tokens(sch, ref["mask_t"], ref["mask_u"]).float(), ref["masks_" + sch]):
                problems.append(f"{name}: masks_{sch} do not follow from mask_t, mask_u")
        # every step case re-masks exactly the scheduled count (no ties) and keeps decoded tokens
        for k, (s, decay, gs, tau, anneal) in enumerate(STEPS):
            i0, i1 = ref[f"step{k}.ids_in"].long(), ref[f"step{k}.ids_out"].long()
            V, L = cfg.codebook_size, cfg.seq_len
            keep = i0 != V
            if not torch.equal(i1[keep], i0[keep]):
                problems.append(f"{name} step{k}: a decoded token changed")
            nm = int((i0[0] == V).sum())
            want_m = 0 if s == T_STEPS - 1 else max(1, min(nm - 1, math.floor(L * math.acos((s + 1) / T_STEPS) / (math.pi / 2))))
            if [int((i1[b] == V).sum()) for b in range(B)] != [want_m] * B:
                problems.append(f"{name} step{k}: masked counts {[(i1[b] == V).sum().item() for b in range(B)]} != {want_m}")
        print(f"{name}: finite differences vs grad.*: worst relative error {worst:.2e}")
    print(f"{out_dir}: {len(os.listdir(out_dir))} files, {total:,} bytes")
    return problems


def main():
    return golden_main(__doc__, OUT, "textok_maskgit_", generate, validate)


if __name__ == "__main__":
    sys.exit(main())
