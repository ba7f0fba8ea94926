#!/usr/bin/python3
"""Writes the LPIPS checkpoints of tests/bad/lpips/ that tests/cli_convert.sh feeds to
`build/convert --lpips`.

Every file is a variation of one tiny LPIPS(net='vgg') with the official names (architecture.md
section 6) and tap widths CH = (2, 3, 4, 5, 6): all different, so that a mix-up of two slices
cannot go unnoticed (the real VGG16 has 64, 128, 256, 512, 512). The values are multiples of
1/256 (lin weights: of 1/1024) with at most 7 significant bits, exact in F16 and BF16, so every
good input converts to the SAME bytes whatever its dtype and container.

  ok_*      must convert; each set below gives byte-identical output:
              ok_vgg16.pth + ok_lin.pth                  torch zip, F32; the VGG16 file has
                                                         torchvision's classifier.* (ignored)
              ok_vgg16_f16.safetensors + ok_lin_bf16.safetensors
              ok_vgg16_legacy.pth + ok_lin_legacy_py2.pth
                  legacy torch.save format (before torch 1.6), hand-made like the published
                  files: the VGG16 one as torchvision's vgg16-397923af.pth (torch < 0.4:
                  torch._utils._rebuild_tensor, one storage sliced by a view), the lin one as
                  LPIPS's vgg.pth (Python 2 strings, OrderedDict([[key, value], ...]), cuda:0
                  storages, _metadata)
              ok_full.pth            one LPIPS state_dict as LPIPS(net='vgg').state_dict() has
                                     it: scaling_layer buffers, net.slice*, lin*, lins.* aliases
              ok_full_bf16.pth       the same in BF16 (the scaling constants rounded to BF16)
              ok_full_legacy.pth     the same, torch.save(..., _use_new_zipfile_serialization=False),
                                     every tensor a view into one storage
  bad_*     must be refused with a message naming the culprit (see cli_convert.sh).
  ok_ref.safetensors   two image pairs x, y (2,3,16,16) in [0,1] and d (2) = LPIPS(x, y) of these
            weights by the float64 PyTorch reference (tools/nets_ref.py): what the converted file
            must give through textok_lpips_distance. Any two same-shaped convs swapped by convert
            (features.12 <-> features.14, say) would pass every shape check and fail this one.

Run with the system Python (torch, numpy):  /usr/bin/python3 tools/make_lpips_checkpoints.py
[--out DIR] (default tests/bad/lpips). The output is deterministic (seeded values; torch.save's
own timestamps are fixed, storage keys renamed), so the files are committed, and writing them
again into another folder must give the same bytes.
"""
import collections
import io
import json
import os
import pickle
import struct
import sys
import types

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nets_ref  # noqa: E402  (tools/nets_ref.py: the LPIPS reference)

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "bad", "lpips")

CH = (2, 3, 4, 5, 6)
# VGG16 features index of each conv and its LPIPS slice (1-based); tap k = slice k+1
CONVS = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
SLICE = (1, 1, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5, 5)
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)


def exact(g, shape, denom=256, lo=-127):
    """values k/denom, k integer in [lo, 127]: exact in F16, BF16 and F32"""
    return torch.randint(lo, 128, shape, generator=g).float() / denom


def weights(ch=CH):
    """(trunk, lins): trunk = [(features index, slice, weight, bias)], lins = [5 tensors (1,c,1,1)]"""
    g = torch.Generator().manual_seed(4242)
    trunk, cin = [], 3
    for idx, s in zip(CONVS, SLICE):
        cout = ch[s - 1]
        trunk.append((idx, s, exact(g, (cout, cin, 3, 3)), exact(g, (cout,))))
        cin = cout
    lins = [exact(g, (1, c, 1, 1), denom=1024, lo=0) for c in ch]
    return trunk, lins


def vgg16_sd(trunk, classifier=True):
    """torchvision vgg16().state_dict() order: features, then the classifier (tiny here)"""
    sd = collections.OrderedDict()
    for idx, _, w, b in trunk:
        sd["features.%d.weight" % idx] = w
        sd["features.%d.bias" % idx] = b
    if classifier:
        g = torch.Generator().manual_seed(7)
        for i, (o, n) in zip((0, 3, 6), ((8, 24), (8, 8), (10, 8))):
            sd["classifier.%d.weight" % i] = torch.randn(o, n, generator=g)
            sd["classifier.%d.bias" % i] = torch.randn(o, generator=g)
    return sd


def lin_sd(lins):
    return collections.OrderedDict(("lin%d.model.1.weight" % k, w) for k, w in enumerate(lins))


def full_sd(trunk, lins, dtype=torch.float32):
    """LPIPS(net='vgg').state_dict(): buffers, trunk, lin0..4, then the lins ModuleList aliases
    (the same tensors, so torch.save stores them once)"""
    sd = collections.OrderedDict()
    sd["scaling_layer.shift"] = torch.tensor(SHIFT).view(1, 3, 1, 1).to(dtype)
    sd["scaling_layer.scale"] = torch.tensor(SCALE).view(1, 3, 1, 1).to(dtype)
    for idx, s, w, b in trunk:
        sd["net.slice%d.%d.weight" % (s, idx)] = w.to(dtype)
        sd["net.slice%d.%d.bias" % (s, idx)] = b.to(dtype)
    lw = [w.to(dtype) for w in lins]
    for k, w in enumerate(lw):
        sd["lin%d.model.1.weight" % k] = w
    for k, w in enumerate(lw):
        sd["lins.%d.model.1.weight" % k] = w
    return sd


# ---------------------------------------------------------------------------------------------
# writers

def packed(sd, dtype=torch.float16):
    """the same state_dict with every F32 tensor a view into ONE storage (F16 by default: the
    values are exact in it): torch.save then writes one small data entry instead of one per
    tensor. Still a legal file; the bad files stay small."""
    floats = [k for k, t in sd.items() if t.dtype == torch.float32]
    flat = torch.cat([sd[k].reshape(-1) for k in floats]).to(dtype)
    out, off = collections.OrderedDict(), 0
    for k, t in sd.items():
        if t.dtype == torch.float32:
            out[k] = flat[off:off + t.numel()].view(t.shape)
            off += t.numel()
        else:
            out[k] = t
    return out


def torch_save_bytes(obj, **kw):
    buf = io.BytesIO()
    torch.save(obj, buf, **kw)
    return buf.getvalue()


def torch_save_legacy_bytes(obj):
    """torch.save(obj, _use_new_zipfile_serialization=False), the legacy format, with its storage
    keys (str(storage._cdata): memory addresses) renamed 0, 1, 2, ...: torch's own writer, given a
    pickle module that renames them on the way out. torch writes the storages in the order of the
    addresses, so the file is the same on every run only when obj has a single storage."""
    names = {}

    def rename(key):
        return names.setdefault(key, str(len(names)))

    class Pickler(pickle._Pickler):   # the pure-Python pickler calls self.persistent_id per object
        @property
        def persistent_id(self):
            def pid(obj):
                r = self._torch_pid(obj)
                if r is not None and r[0] == "storage":
                    r = r[:2] + (rename(r[2]),) + r[3:]
                return r
            return pid

        @persistent_id.setter
        def persistent_id(self, fn):
            self._torch_pid = fn

    def dump(o, f, protocol=2):
        if isinstance(o, list) and o and all(isinstance(k, str) and k in names for k in o):
            o = [names[k] for k in o]   # the list of storage keys, in the order of their data
        pickle.dump(o, f, protocol=protocol)

    module = types.SimpleNamespace(Pickler=Pickler, dump=dump, __name__="renaming_pickle")
    buf = io.BytesIO()
    torch.save(obj, buf, pickle_module=module, _use_new_zipfile_serialization=False)
    return buf.getvalue()


def safetensors_bytes(tensors, dtype):
    """dtype: "F32", "F16" or "BF16" """
    tdt = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}[dtype]
    header, data = {}, bytearray()
    for name, t in tensors.items():
        t = t.to(tdt).contiguous()
        raw = (t.view(torch.int16) if dtype == "BF16" else t).numpy().tobytes()
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + bytes(data)


class LegacyPickle:
    """Emits pickle opcodes by hand, for legacy torch.save files as old torch and Python 2 wrote
    them (Python 3's pickle cannot write Python 2 strings or torch < 0.4's tensor reduction)."""

    def __init__(self, py2):
        self.b = bytearray(b"\x80\x02")   # PROTO 2
        self.py2 = py2

    def str(self, s):
        s = s.encode()
        if self.py2 and len(s) < 256:
            self.b += b"U" + bytes([len(s)]) + s            # SHORT_BINSTRING
        else:
            self.b += b"X" + struct.pack("<I", len(s)) + s  # BINUNICODE

    def int(self, v):
        if 0 <= v < 256:
            self.b += b"K" + bytes([v])
        elif 0 <= v < 65536:
            self.b += b"M" + struct.pack("<H", v)
        else:
            self.b += b"J" + struct.pack("<i", v)

    def glob(self, module, name):
        self.b += b"c" + module.encode() + b"\n" + name.encode() + b"\n"

    def tuple(self, items):
        self.b += b"("
        for emit in items:
            emit()
        self.b += b"t"

    def storage(self, key, numel, location, view=None):
        """BINPERSID ('storage', torch.FloatStorage, key, location, numel, view)"""
        def view_item():
            if view is None:
                self.b += b"N"
            else:
                self.tuple([lambda: self.str(view[0]), lambda: self.int(view[1]), lambda: self.int(view[2])])
        self.tuple([lambda: self.str("storage"), lambda: self.glob("torch", "FloatStorage"),
                    lambda: self.str(key), lambda: self.str(location), lambda: self.int(numel), view_item])
        self.b += b"Q"

    def tensor(self, v2, key, root_numel, location, offset, size, view=None):
        """_rebuild_tensor(storage, offset, size, stride) or _rebuild_tensor_v2(..., False, OrderedDict())"""
        stride, acc = [], 1
        for d in reversed(size):
            stride.insert(0, acc)
            acc *= d
        self.glob("torch._utils", "_rebuild_tensor_v2" if v2 else "_rebuild_tensor")
        items = [lambda: self.storage(key, root_numel, location, view), lambda: self.int(offset),
                 lambda: self.tuple([(lambda d=d: self.int(d)) for d in size]),
                 lambda: self.tuple([(lambda d=d: self.int(d)) for d in stride])]
        if v2:
            items += [lambda: self.b.extend(b"\x89"),                                        # False
                      lambda: (self.glob("collections", "OrderedDict"), self.b.extend(b")R"))]  # OrderedDict()
        self.tuple(items)
        self.b += b"R"

    def stop(self):
        self.b += b"."
        return bytes(self.b)


def legacy_header(py2):
    """magic number, format version 1001, sys_info: as torch.save wrote them"""
    out = pickle.dumps(0x1950a86a20f9469cfc6c, protocol=2) + pickle.dumps(1001, protocol=2)
    p = LegacyPickle(py2)
    p.b += b"}("
    for k, v in (("protocol_version", 1001), ("little_endian", True), ("type_sizes", None)):
        p.str(k)
        if k == "type_sizes":
            p.b += b"}("
            for name, size in (("int", 4), ("short", 2), ("long", 4)):
                p.str(name)
                p.int(size)
            p.b += b"u"
        elif isinstance(v, bool):
            p.b += b"\x88"
        else:
            p.int(v)
    p.b += b"u"
    return out + p.stop()


def legacy_records(keys, datas):
    """the storage-key list pickle, then each storage: int64 element count + little-endian F32"""
    p = LegacyPickle(False)
    p.b += b"]("
    for k in keys:
        p.str(k)
    p.b += b"e"
    out = bytearray(p.stop())
    for d in datas:
        d = d.contiguous().float()
        out += struct.pack("<q", d.numel()) + d.numpy().astype("<f4").tobytes()
    return bytes(out)


def legacy_vgg16(sd):
    """As torchvision's vgg16-397923af.pth (torch < 0.4, Python 3): an OrderedDict filled by
    SETITEMS, tensors by torch._utils._rebuild_tensor. Storage "1" holds two tensors through views
    (a 6-item persistent id whose view is (key, offset, numel)), the others one each."""
    names = list(sd)
    p = LegacyPickle(False)
    p.glob("collections", "OrderedDict")
    p.b += b")R("
    keys, datas, shared = [], [], (names[0], names[1])   # features.0.weight and .bias share "1"
    both = torch.cat([sd[shared[0]].reshape(-1), sd[shared[1]].reshape(-1)])
    for name in names:
        t = sd[name]
        p.str(name)
        if name in shared:
            off = 0 if name == shared[0] else sd[shared[0]].numel()
            p.tensor(False, "1", both.numel(), "cpu", 0, tuple(t.shape), view=("1v%d" % off, off, t.numel()))
            if name == shared[0]:
                keys.append("1")
                datas.append(both)
        else:
            key = str(100 + len(keys))
            p.tensor(False, key, t.numel(), "cpu", 0, tuple(t.shape))
            keys.append(key)
            datas.append(t)
    p.b += b"u"
    return legacy_header(False) + p.stop() + legacy_records(keys, datas)


def legacy_lin_py2(sd):
    """As LPIPS's weights/v0.1/vgg.pth (Python 2, torch 0.4-1.x): OrderedDict([[key, tensor], ...])
    built by REDUCE, Python 2 strings, cuda:0 storages, then BUILD with a _metadata dict."""
    p = LegacyPickle(True)
    p.glob("collections", "OrderedDict")
    p.b += b"(]("
    keys, datas = [], []
    for name, t in sd.items():
        key = str(1867776752 + 11 * len(keys))
        p.b += b"]("
        p.str(name)
        p.tensor(True, key, t.numel(), "cuda:0", 0, tuple(t.shape))
        p.b += b"e"
        keys.append(key)
        datas.append(t)
    p.b += b"etR"          # the list of pairs, the 1-tuple of arguments, REDUCE
    p.b += b"}("           # BUILD state {'_metadata': OrderedDict([[u'', {'version': 1}]])}
    p.str("_metadata")
    p.glob("collections", "OrderedDict")
    p.b += b"(]("
    p.b += b"]("
    p.str("")
    p.b += b"}("
    p.str("version")
    p.int(1)
    p.b += b"ue"
    p.b += b"etR"
    p.b += b"ub"
    return legacy_header(True) + p.stop() + legacy_records(keys, datas)


# ---------------------------------------------------------------------------------------------

def reference(full):
    """ok_ref.safetensors: images and LPIPS(x, y) in float64 by tools/nets_ref.py"""
    model = nets_ref.LPIPS(CH).double().eval()
    sd = model.state_dict()
    assert list(sd) == [k for k in full if not k.startswith(("lins.", "scaling_layer."))]
    with torch.no_grad():
        for k in sd:
            sd[k].copy_(full[k].double())
        g = torch.Generator().manual_seed(99)
        x = torch.rand(2, 3, 16, 16, generator=g)
        y = (x + 0.25 * torch.randn(2, 3, 16, 16, generator=g)).clamp(0, 1)
        d = model(x.double(), y.double())
    assert (d > 1e-3).all(), d   # far from 0, so a relative tolerance means something
    return ([("x", x), ("y", y), ("d", d.float())],
            {"textok.model": "lpips_ref", "channels": ",".join(map(str, CH)),
             "d_float64": ",".join("%.17g" % v for v in d.tolist())})


def main():
    global OUT
    if len(sys.argv) == 3 and sys.argv[1] == "--out":
        OUT = sys.argv[2]
    elif len(sys.argv) != 1:
        sys.exit("usage: make_lpips_checkpoints.py [--out DIR]")
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        os.remove(os.path.join(OUT, f))
    files = {}
    trunk, lins = weights()
    vgg, lin, full = vgg16_sd(trunk), lin_sd(lins), full_sd(trunk, lins)

    # --- good inputs (every set converts to the same bytes)
    files["ok_vgg16.pth"] = torch_save_bytes(vgg)
    files["ok_lin.pth"] = torch_save_bytes(lin)
    files["ok_vgg16_f16.safetensors"] = safetensors_bytes(vgg, "F16")
    files["ok_lin_bf16.safetensors"] = safetensors_bytes(lin, "BF16")
    files["ok_vgg16_legacy.pth"] = legacy_vgg16(vgg)
    files["ok_lin_legacy_py2.pth"] = legacy_lin_py2(lin)
    files["ok_full.pth"] = torch_save_bytes(full)
    files["ok_full_bf16.pth"] = torch_save_bytes(full_sd(trunk, lins, torch.bfloat16))
    files["ok_full_legacy.pth"] = torch_save_legacy_bytes(packed(full, torch.float32))
    for name in ("ok_full.pth", "ok_full_legacy.pth", "ok_lin_legacy_py2.pth", "ok_vgg16_legacy.pth"):
        back = torch.load(io.BytesIO(files[name]), map_location="cpu")   # what torch makes of them
        want = full if "full" in name else lin if "lin" in name else vgg
        assert list(back) == list(want) and all(torch.equal(back[k], want[k]) for k in want), name

    # --- a VGG16 trunk convert must refuse
    missing = collections.OrderedDict(vgg)
    del missing["features.12.bias"]
    files["bad_vgg16_missing.pth"] = torch_save_bytes(packed(missing))
    kernel = collections.OrderedDict(vgg)
    kernel["features.14.weight"] = torch.zeros(CH[2], CH[2], 5, 5)
    files["bad_vgg16_kernel.pth"] = torch_save_bytes(packed(kernel))
    cin = collections.OrderedDict(vgg)
    cin["features.10.weight"] = torch.zeros(CH[2], CH[1] + 1, 3, 3)        # slice 3 reads c1 + 1
    files["bad_vgg16_in_channels.pth"] = torch_save_bytes(packed(cin))
    cout = collections.OrderedDict(vgg)
    cout["features.19.weight"] = torch.zeros(CH[3] + 2, CH[3], 3, 3)       # slice 4's middle conv
    cout["features.19.bias"] = torch.zeros(CH[3] + 2)
    files["bad_vgg16_out_channels.pth"] = torch_save_bytes(packed(cout))
    several = collections.OrderedDict(missing)
    several["features.14.weight"] = kernel["features.14.weight"]
    several["features.26.bias"] = torch.arange(CH[4])                     # int64
    several["features.31.weight"] = torch.zeros(4)                         # not a VGG16 conv
    files["bad_vgg16_several.pth"] = torch_save_bytes(packed(several))
    files["bad_vgg16_bn.pth"] = torch_save_bytes(collections.OrderedDict(
        [("features.0.weight", torch.zeros(CH[0], 3, 3, 3)), ("features.0.bias", torch.zeros(CH[0])),
         ("features.1.weight", torch.ones(CH[0])), ("features.1.bias", torch.zeros(CH[0])),
         ("features.1.running_mean", torch.zeros(CH[0])), ("features.1.running_var", torch.ones(CH[0]))]))
    good = torch_save_bytes(packed(vgg))
    files["bad_vgg16_truncated.pth"] = good[: len(good) // 2]

    # --- lin weights convert must refuse
    width = collections.OrderedDict(lin)
    width["lin2.model.1.weight"] = torch.zeros(1, CH[2] + 2, 1, 1)
    files["bad_lin_width.pth"] = torch_save_bytes(packed(width))
    extra = collections.OrderedDict(lin)
    extra["lin5.model.1.weight"] = torch.zeros(1, 7, 1, 1)
    files["bad_lin_extra.pth"] = torch_save_bytes(packed(extra))
    bias = collections.OrderedDict(lin)
    bias["lin0.model.1.weight"] = torch.zeros(CH[0], 1, 1, 1)              # transposed
    files["bad_lin_shape.pth"] = torch_save_bytes(packed(bias))

    # --- full LPIPS state_dicts convert must refuse
    scaling = collections.OrderedDict(full)
    scaling["scaling_layer.shift"] = torch.tensor([-0.030, -0.088, -0.1]).view(1, 3, 1, 1)
    files["bad_full_scaling.pth"] = torch_save_bytes(packed(scaling))
    alias = collections.OrderedDict(full)
    alias["lins.3.model.1.weight"] = full["lin3.model.1.weight"].clone()
    alias["lins.3.model.1.weight"][0, 2, 0, 0] += 0.5
    files["bad_full_alias.pth"] = torch_save_bytes(packed(alias))
    legacy = files["ok_full_legacy.pth"]
    files["bad_full_legacy_truncated.pth"] = legacy[: len(legacy) - 100]
    files["bad_not_torch.pth"] = pickle.dumps({"lin0.model.1.weight": [0.0, 1.0]}, protocol=2)

    total = 0
    for name, data in sorted(files.items()):
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
        total += len(data)
    nets_ref.save_safetensors(os.path.join(OUT, "ok_ref.safetensors"), *reference(full))
    total += os.path.getsize(os.path.join(OUT, "ok_ref.safetensors"))
    print("wrote %d files, %d bytes, into %s" % (len(files) + 1, total, os.path.normpath(OUT)))


if __name__ == "__main__":
    main()
