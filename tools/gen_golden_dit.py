#!/usr/bin/python3
"""Golden DiT generators, their Gaussian diffusion and reference outputs for textok, from the
independent PyTorch reference tools/dit_ref.py (written from architecture.md section 7, not from
facebookresearch/DiT or textok.h).

    /usr/bin/python3 tools/gen_golden_dit.py             # write tests/golden/dit/*, then validate
    /usr/bin/python3 tools/gen_golden_dit.py --check     # regenerate into a temp dir, compare bit
                                                         # for bit with tests/golden/dit, validate
    /usr/bin/python3 tools/gen_golden_dit.py --out DIR   # write elsewhere

Models (official DiT state_dict names, textok metadata "textok.model" = "dit" + the config under
the textok_dit_config field names, so textok_dit_load reads them directly; F32):

    name      layout                    C   size  p  D   depth heads M   classes text      learn_sigma guide
    dit2d     2D (B,4,8,8), official    4   8     2  16  2     2     48  10      -         1           3
    dit1d     1D tokens (B,8,1,12)      8   12    1  16  2     4     48  10      -         1           8
    dit_t2i   1D tokens (B,8,1,8), T2I  8   8     1  16  2     2     48  0       24 x 6    1           8

Weights: dit_ref.init_random (matrices N(0, 1/fan_in), biases 0.1 N(0, 1), tables N(0, 1), the
sin-cos pos_embed), so that every path carries signal; a model made by textok_dit_create would
start with adaLN-Zero and give zero gradients almost everywhere.

Per model, <name>_ref.safetensors (F32; the reference runs in float64 on these float32 values and
rounds each output once):
    x (B,C,H,W), t (B), y (B) [class models], text (B,L,Dt) + text_mask (B,L) [T2I: row 0 has 4
    real rows then 2 padded, row 1 all real, row 2 is the null caption: every row masked]
    out         DiT.forward(x, t, y, text, mask)
    dout        a seeded N(0,1) upstream gradient G; the backward goldens are d sum(out * G):
    grad.x      ... with respect to the input
    grad.<p>    ... with respect to every trainable parameter (pos_embed is not trained: absent)
    out_alt     [T2I] forward with row 0's padded text rows replaced by other values (= out)
    for the sampler steps s in ddpm137 (respacing "250", index 137), ddpm0 ("250", index 0),
    ddim23 ("ddim50", index 23, eta 0.5), ddim0 ("ddim50", index 0, eta 0):
    s.model_out forward_with_cfg(x, tau_i, y, text) with scale 4 (guide_channels of the model)
    s.noise     the step's N(0,1) noise
    s.x_prev    the step's output
    metadata: cfg_scale, and per step s.index, s.timestep, s.eta, s.respacing.

diffusion_ref.safetensors (no model):
    map_250, map_ddim50, map_sections   the kept original timesteps of "250", "ddim50", "10,15,5"
    loss.x0 (4,4,16), loss.noise, loss.t = [0, 1, 500, 999], loss.model_out (4,8,16),
    loss.mse (4), loss.vb (4) per example (bits), loss.dout = d mean_b(mse + vb) / d model_out
    (eps^ detached in vb); loss.dout_fixed, loss.mse_fixed: learn_sigma 0 (C output channels).
    x0 row 0 holds values beyond +-0.999 to reach the discretised NLL's open edges at t = 0.
    fixed.xt, fixed.model_out (4,4,16), fixed.noise, fixed.x_prev: one DDPM step ("250", index 60)
    with learn_sigma 0 (FIXED_LARGE variance).

--check also validates: the respacing lists against architecture.md 7.3 (0, 4, 8, ..., 995, 999;
0, 20, ..., 980), the T2I masking invariant (out_alt == out bit for bit in float64), the null caption
row's independence of its text, and the vb gradient against float64 autograd finite differences.

Deterministic (single thread, fixed seeds): re-running writes byte-identical files.
"""
import copy
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_golden_titok import save_safetensors, load_safetensors  # noqa: E402
from gen_golden_nets import golden_main  # noqa: E402
import dit_ref  # noqa: E402
from dit_ref import DiT, DiTConfig, Diffusion, init_random  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "golden", "dit")
CFG_SCALE = 4.0
MAX_BYTES = 1000 * 1000

CASES = {
    "dit2d": (DiTConfig(in_channels=4, input_size=8, seq_1d=0, patch_size=2, hidden=16, depth=2, heads=2, mlp_hidden=48,
                        num_classes=10, learn_sigma=1, guide_channels=3, latent_scale=0.18215), 61001),
    "dit1d": (DiTConfig(in_channels=8, input_size=12, seq_1d=1, patch_size=1, hidden=16, depth=2, heads=4, mlp_hidden=48,
                        num_classes=10, learn_sigma=1, guide_channels=8, latent_scale=1.0), 62001),
    "dit_t2i": (DiTConfig(in_channels=8, input_size=8, seq_1d=1, patch_size=1, hidden=16, depth=2, heads=2, mlp_hidden=48,
                          num_classes=0, learn_sigma=1, text_dim=24, text_len=6, guide_channels=8, latent_scale=1.0), 63001),
}
# name: (respacing, index, eta or None for DDPM)
STEPS = [("ddpm137", "250", 137, None), ("ddpm0", "250", 0, None), ("ddim23", "ddim50", 23, 0.5), ("ddim0", "ddim50", 0, 0.0)]


def make_model(cfg, seed):
    torch.manual_seed(0)   # nn layers draw their default init before init_random overwrites it
    return init_random(DiT(cfg), seed).eval()


def inputs(cfg, seed):
    """-> x, t, y, text, mask (float32 / long / bool) for the case."""
    g = torch.Generator().manual_seed(seed)
    B = 3 if cfg.text_dim else 2
    r, c = cfg.grid
    shape = (B, cfg.in_channels, 1, cfg.input_size) if cfg.seq_1d else (B, cfg.in_channels, cfg.input_size, cfg.input_size)
    x = torch.randn(shape, generator=g)
    t = torch.tensor([0, 999] if B == 2 else [3, 250, 998], dtype=torch.long)
    if cfg.seq_1d and cfg.num_classes:
        t = torch.tensor([500, 1], dtype=torch.long)
    y = torch.tensor([3, cfg.num_classes] if cfg.seq_1d == 0 else [5, 2], dtype=torch.long) if cfg.num_classes else None
    text = mask = None
    if cfg.text_dim:
        text = torch.randn(B, cfg.text_len, cfg.text_dim, generator=g)
        mask = torch.ones(B, cfg.text_len, dtype=torch.bool)
        mask[0, 4:] = False
        mask[2, :] = False
    return x, t, y, text, mask


def f64(t):
    return None if t is None else t.double()


def model_case(name, cfg, seed):
    """-> (model float32, list of (name, tensor) for the _ref file, metadata dict)."""
    model = make_model(cfg, seed)
    m = copy.deepcopy(model).double()
    x, t, y, text, mask = inputs(cfg, seed + 1)
    g = torch.Generator().manual_seed(seed + 2)
    xd = x.double().requires_grad_(True)
    out = m(xd, t, y, f64(text), mask)
    G = torch.randn(out.shape, generator=g)
    (out * G.double()).sum().backward()
    ref = [("x", x), ("t", t.float())]
    if y is not None:
        ref.append(("y", y.float()))
    if text is not None:
        ref += [("text", text), ("text_mask", mask.float())]
    ref += [("out", out.detach().float()), ("dout", G), ("grad.x", xd.grad.float())]
    for pn, p in m.named_parameters():
        if p.requires_grad:
            ref.append(("grad." + pn, p.grad.float()))
    if text is not None:
        alt = text.clone()
        alt[0, 4:] = 5.0 * torch.randn(cfg.text_len - 4, cfg.text_dim, generator=g)
        alt[2] = torch.randn(cfg.text_len, cfg.text_dim, generator=g)
        with torch.no_grad():
            ref.append(("out_alt", m(x.double(), t, y, alt.double(), mask).float()))
    meta = {"cfg_scale": "%g" % CFG_SCALE}
    with torch.no_grad():
        for sname, spacing, i, eta in STEPS:
            d = Diffusion(1000, spacing)
            tau = d.timestep_map[i]
            tt = torch.full((x.shape[0],), tau, dtype=torch.long)
            mo = m.forward_with_cfg(x.double(), tt, y, f64(text), mask, CFG_SCALE)
            noise = torch.randn(x.shape, generator=g)
            if eta is None:
                xp = d.p_step(i, x.double(), mo, noise.double(), cfg.learn_sigma)
            else:
                xp = d.ddim_step(i, x.double(), mo, noise.double(), eta, cfg.learn_sigma)
            ref += [(sname + ".model_out", mo.float()), (sname + ".noise", noise), (sname + ".x_prev", xp.float())]
            meta.update({sname + ".index": str(i), sname + ".timestep": str(tau), sname + ".respacing": spacing,
                         sname + ".eta": "ddpm" if eta is None else "%g" % eta})
    return model, ref, meta


def diffusion_case(seed=64001):
    g = torch.Generator().manual_seed(seed)
    B, C, HW = 4, 4, 16
    d = Diffusion(1000, "")
    x0 = 0.5 * torch.randn(B, C, HW, generator=g)
    x0[0, 0, :4] = torch.tensor([1.0, -1.0, 0.9995, -0.9995])   # the open edges of the decoder NLL
    x0[0, 1, :2] = torch.tensor([0.5, -0.3])
    noise = torch.randn(B, C, HW, generator=g)
    t = torch.tensor([0, 1, 500, 999], dtype=torch.long)
    eps = noise + 0.3 * torch.randn(B, C, HW, generator=g)
    v = 2.0 * torch.rand(B, C, HW, generator=g) - 1.0
    out = torch.cat([eps, v], 1)
    od = out.double().requires_grad_(True)
    loss, mse, vb = d.loss(x0.double(), noise.double(), t, od, True)
    loss.mean().backward()
    of = eps.double().requires_grad_(True)
    loss0, mse0, _ = d.loss(x0.double(), noise.double(), t, of, False)
    loss0.mean().backward()
    ref = [("map_250", torch.tensor(Diffusion(1000, "250").timestep_map, dtype=torch.float32)),
           ("map_ddim50", torch.tensor(Diffusion(1000, "ddim50").timestep_map, dtype=torch.float32)),
           ("map_sections", torch.tensor(Diffusion(1000, "10,15,5").timestep_map, dtype=torch.float32)),
           ("loss.x0", x0), ("loss.noise", noise), ("loss.t", t.float()), ("loss.model_out", out),
           ("loss.mse", mse.detach().float()), ("loss.vb", vb.detach().float()), ("loss.dout", od.grad.float()),
           ("loss.mse_fixed", mse0.detach().float()), ("loss.dout_fixed", of.grad.float())]
    ds = Diffusion(1000, "250")
    xt = torch.randn(B, C, HW, generator=g)
    mo = torch.randn(B, C, HW, generator=g)
    nz = torch.randn(B, C, HW, generator=g)
    xp = ds.p_step(60, xt.double(), mo.double(), nz.double(), False)
    ref += [("fixed.xt", xt), ("fixed.model_out", mo), ("fixed.noise", nz), ("fixed.x_prev", xp.float())]
    return ref, {"textok.golden": "diffusion", "fixed.index": "60", "fixed.respacing": "250"}


def generate(out_dir, verbose=True):
    os.makedirs(out_dir, exist_ok=True)
    for name, (cfg, seed) in CASES.items():
        model, ref, meta = model_case(name, cfg, seed)
        sd = [(k, v.detach().float().contiguous()) for k, v in model.state_dict().items()]
        save_safetensors(os.path.join(out_dir, name + ".safetensors"), sd, cfg.to_meta())
        m = dict(cfg.to_meta())
        m.update(meta)
        save_safetensors(os.path.join(out_dir, name + "_ref.safetensors"), [(k, v.contiguous()) for k, v in ref], m)
        if verbose:
            n = sum(v.numel() for _, v in sd)
            print(f"{name}: {n} parameters, seed {seed}, out std {dict(ref)['out'].std():.3f}")
    ref, meta = diffusion_case()
    save_safetensors(os.path.join(out_dir, "diffusion_ref.safetensors"), [(k, v.contiguous()) for k, v in ref], meta)
    if verbose:
        print(f"diffusion: vb {dict(ref)['loss.vb'].tolist()}")


def validate(out_dir):
    problems = []
    total = sum(os.path.getsize(os.path.join(out_dir, f)) for f in os.listdir(out_dir))
    if total > MAX_BYTES:
        problems.append(f"{out_dir}: {total} bytes, more than {MAX_BYTES}")
    tens, _ = load_safetensors(os.path.join(out_dir, "diffusion_ref.safetensors"))
    r = dict(tens)
    m250 = r["map_250"].long().tolist()
    if len(m250) != 250 or m250[:4] != [0, 4, 8, 12] or m250[-4:] != [987, 991, 995, 999]:
        problems.append(f"respacing 250: {m250[:4]} ... {m250[-4:]} (architecture.md 7.3: 0,4,8,12,...,987,991,995,999)")
    if r["map_ddim50"].long().tolist() != list(range(0, 1000, 20)):
        problems.append("respacing ddim50 is not range(0, 1000, 20)")
    # the vb gradient: autograd against central differences of the float64 loss
    d = Diffusion(1000, "")
    x0, noise, t, out = (r["loss.x0"].double(), r["loss.noise"].double(), r["loss.t"].long(), r["loss.model_out"].double())
    h, worst = 1e-6, 0.0
    for (b, c, j) in [(0, 4, 0), (0, 5, 0), (0, 4, 2), (1, 6, 3), (3, 7, 9), (2, 1, 5)]:
        op, om = out.clone(), out.clone()
        op[b, c, j] += h
        om[b, c, j] -= h
        fd = (d.loss(x0, noise, t, op, True)[0].mean() - d.loss(x0, noise, t, om, True)[0].mean()) / (2 * h)
        g = float(r["loss.dout"][b, c, j])
        if c < 4:   # eps channels: vb is detached, so only the mse term
            fd = (d.loss(x0, noise, t, op, True)[1].mean() - d.loss(x0, noise, t, om, True)[1].mean()) / (2 * h)
        worst = max(worst, abs(float(fd) - g) / (abs(g) + 1e-6))
    if worst > 1e-4:
        problems.append(f"loss.dout: relative error {worst:.3g} against finite differences")
    for name, (cfg, _) in CASES.items():
        tens, meta = load_safetensors(os.path.join(out_dir, name + "_ref.safetensors"))
        r = dict(tens)
        if cfg.text_dim and not torch.equal(r["out"], r["out_alt"]):
            problems.append(f"{name}: the padded / null caption rows change the output")
        if cfg.to_meta()["textok.model"] != meta.get("textok.model"):
            problems.append(f"{name}: metadata lacks the config")
    return problems


def main():
    return golden_main(__doc__, OUT, "textok_dit_", generate, validate)


if __name__ == "__main__":
    sys.exit(main())
