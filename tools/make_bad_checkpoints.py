#!/usr/bin/python3
"""Writes the checkpoints of tests/bad/convert/ that tests/cli_convert.sh feeds to build/convert.

Every file is a small variation of one tiny TiTok state_dict with the official parameter names,
in the agreed tiny_vq configuration (image 32, patch 8, K=5, token_size 8, codebook 32; encoder
width 128 x 1 layer, decoder width 64 x 2 layers; non-legacy VQ). To stay small (the whole folder
is well under 300 KB) every tensor is a view into ONE random storage of 4096 half-precision
values: small tensors are contiguous slices at varying offsets, large ones strided views that
overlap. That is a legal torch.save file and it exercises convert's storage_offset/stride code.

  ok_*.bin      must convert, and all to byte-identical outputs:
                  ok_views.bin           torch.save, pickle protocol 2 (the default)
                  ok_p4_zip64.bin        torch.save with pickle protocol 4 (FRAME, MEMOIZE,
                                         STACK_GLOBAL, SHORT_BINUNICODE) and nn.Parameter values
                                         (_rebuild_parameter), the ZIP rewritten with ZIP64 end
                                         records and ZIP64 extra fields
                  ok_wrapped.bin         {"state_dict": sd, "epoch": 3}, plus an int64
                                         "encoder.position_ids" buffer that convert must skip
  everything else must be refused with a message naming the culprit (see cli_convert.sh).

Run from anywhere with the system Python (torch and numpy):  /usr/bin/python3 tools/make_bad_checkpoints.py
The output is deterministic (seeded values, fixed ZIP timestamps), so the files can be committed.
"""
import collections
import copyreg
import io
import json
import os
import pickle
import struct
import zipfile

import numpy
import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "bad", "convert")

# tiny_vq, the agreed test configuration (heads = width / 64, mlp = 4 * width)
IMAGE, PATCH, K, C, V = 32, 8, 5, 8, 32
ENC_W, ENC_L, DEC_W, DEC_L = 128, 1, 64, 2


def vit_shapes(prefix, d, layers):
    s = collections.OrderedDict()
    s[prefix + ".ln_pre.weight"] = (d,)
    s[prefix + ".ln_pre.bias"] = (d,)
    for i in range(layers):
        b = "%s.transformer.%d." % (prefix, i)
        s[b + "ln_1.weight"] = (d,)
        s[b + "ln_1.bias"] = (d,)
        s[b + "attn.in_proj_weight"] = (3 * d, d)
        s[b + "attn.in_proj_bias"] = (3 * d,)
        s[b + "attn.out_proj.weight"] = (d, d)
        s[b + "attn.out_proj.bias"] = (d,)
        s[b + "ln_2.weight"] = (d,)
        s[b + "ln_2.bias"] = (d,)
        s[b + "mlp.c_fc.weight"] = (4 * d, d)
        s[b + "mlp.c_fc.bias"] = (4 * d,)
        s[b + "mlp.c_proj.weight"] = (d, 4 * d)
        s[b + "mlp.c_proj.bias"] = (d,)
    s[prefix + ".ln_post.weight"] = (d,)
    s[prefix + ".ln_post.bias"] = (d,)
    return s


def titok_vq_shapes(enc_w=ENC_W, dec_w=DEC_W):
    """name -> shape of a non-legacy VQ TiTok, in state_dict order (architecture.md 1.8)."""
    grid = (IMAGE // PATCH) ** 2
    s = collections.OrderedDict()
    s["latent_tokens"] = (K, enc_w)
    s["encoder.class_embedding"] = (1, enc_w)
    s["encoder.positional_embedding"] = (1 + grid, enc_w)
    s["encoder.latent_token_positional_embedding"] = (K, enc_w)
    s["encoder.patch_embed.weight"] = (enc_w, 3, PATCH, PATCH)
    s["encoder.patch_embed.bias"] = (enc_w,)
    s.update(vit_shapes("encoder", enc_w, ENC_L))
    s["encoder.conv_out.weight"] = (C, enc_w, 1, 1)
    s["encoder.conv_out.bias"] = (C,)
    s["decoder.class_embedding"] = (1, dec_w)
    s["decoder.positional_embedding"] = (1 + grid, dec_w)
    s["decoder.mask_token"] = (1, 1, dec_w)
    s["decoder.latent_token_positional_embedding"] = (K, dec_w)
    s["decoder.decoder_embed.weight"] = (dec_w, C)
    s["decoder.decoder_embed.bias"] = (dec_w,)
    s.update(vit_shapes("decoder", dec_w, DEC_L))
    s["decoder.ffn.0.weight"] = (PATCH * PATCH * 3, dec_w, 1, 1)
    s["decoder.ffn.0.bias"] = (PATCH * PATCH * 3,)
    s["decoder.conv_out.weight"] = (3, 3, 3, 3)
    s["decoder.conv_out.bias"] = (3,)
    s["quantize.embedding.weight"] = (V, C)
    return s


def strided_view(base, shape, k):
    """A view of shape into base: contiguous strides where they fit, else the largest strides
    that keep every index inside base (overlapping rows); offset varies with k."""
    n = base.numel()
    stride, extent, contig = [0] * len(shape), 1, 1
    for i in reversed(range(len(shape))):
        d = shape[i]
        if d == 1:
            stride[i] = contig
        else:
            stride[i] = min(contig, (n - extent) // (d - 1))
            extent += (d - 1) * stride[i]
        contig *= d
    offset = (k * 977) % (n - extent + 1)
    return base.as_strided(shape, stride, offset)


def tiny_state_dict(shapes=None, dtype=torch.float16):
    g = torch.Generator().manual_seed(1234)
    base = (torch.randn(4096, generator=g) * 0.05).to(dtype)
    shapes = shapes or titok_vq_shapes()
    return collections.OrderedDict((name, strided_view(base, shape, k))
                                   for k, (name, shape) in enumerate(shapes.items()))


# ---------------------------------------------------------------------------------------------
# writers

def torch_save_bytes(obj, **kw):
    buf = io.BytesIO()
    torch.save(obj, buf, **kw)
    return buf.getvalue()


def fixed_info(name, method=zipfile.ZIP_STORED):
    zi = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    zi.compress_type = method
    return zi


def zip_bytes(entries, methods=None):
    """A ZIP made by Python's zipfile (local headers carry the sizes, unlike torch's)."""
    methods = methods or {}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in entries:
            z.writestr(fixed_info(name, methods.get(name, zipfile.ZIP_STORED)), data)
    return buf.getvalue()


def zip_entries(data):
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return [(i.filename, z.read(i.filename)) for i in z.infolist()]


def zip64_bytes(entries):
    """Stored entries with ZIP64 everywhere it can be: a ZIP64 extra field in every local header
    and central record (the 32-bit fields set to 0xFFFFFFFF), a ZIP64 end record and locator, and
    a classic end record whose fields are all ones."""
    out, central = bytearray(), bytearray()
    for name, data in entries:
        nm = name.encode()
        crc = zipfile.crc32(data) & 0xFFFFFFFF
        offset = len(out)
        extra = struct.pack("<HHQQ", 1, 16, len(data), len(data))
        out += struct.pack("<IHHHHHIIIHH", 0x04034b50, 45, 0, 0, 0, 0x21, crc, 0xFFFFFFFF, 0xFFFFFFFF,
                           len(nm), len(extra)) + nm + extra + data
        cextra = struct.pack("<HHQQQ", 1, 24, len(data), len(data), offset)
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014b50, 45, 45, 0, 0, 0, 0x21, crc, 0xFFFFFFFF,
                               0xFFFFFFFF, len(nm), len(cextra), 0, 0, 0, 0, 0xFFFFFFFF) + nm + cextra
    cd_off = len(out)
    out += central
    z64 = len(out)
    out += struct.pack("<IQHHIIQQQQ", 0x06064b50, 44, 45, 45, 0, 0, len(entries), len(entries),
                       len(central), cd_off)
    out += struct.pack("<IIQI", 0x07064b50, 0, z64, 1)
    out += struct.pack("<IHHHHIIH", 0x06054b50, 0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    return bytes(out)


class Storage:
    """A storage for the hand-made pickles: becomes the persistent id torch writes."""
    def __init__(self, key, storage_type, numel):
        self.key, self.storage_type, self.numel = key, storage_type, numel


class View:
    """A tensor for the hand-made pickles, reduced exactly as torch reduces one."""
    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2,
                (self.storage, self.offset, self.size, self.stride, False, collections.OrderedDict()))


class StatePickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", obj.storage_type, obj.key, "cpu", obj.numel)
        return None


def hand_made_bin(state, storages, folder="archive", pkl=None):
    """A torch.save-style archive from View objects; storages: key -> bytes. pkl overrides data.pkl."""
    if pkl is None:
        buf = io.BytesIO()
        StatePickler(buf, protocol=2).dump(state)
        pkl = buf.getvalue()
    entries = [(folder + "/data.pkl", pkl)]
    entries += [(folder + "/data/" + key, data) for key, data in storages.items()]
    entries.append((folder + "/version", b"3\n"))
    return zip_bytes(entries)


def safetensors_bytes(tensors):
    header, data = {}, bytearray()
    for name, t in tensors.items():
        raw = t.contiguous().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + bytes(data)


def pickle_only_bin(pkl):
    """An archive whose data.pkl is the given bytes, with one small float storage beside it."""
    return zip_bytes([("archive/data.pkl", pkl), ("archive/data/0", bytes(16)), ("archive/version", b"3\n")])


# ---------------------------------------------------------------------------------------------

def main():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        os.remove(os.path.join(OUT, f))
    files = {}
    sd = tiny_state_dict()

    # --- good files (must convert, all to the same bytes)
    good = torch_save_bytes(sd)
    files["ok_views.bin"] = good
    params = collections.OrderedDict((k, torch.nn.Parameter(v, requires_grad=False)) for k, v in sd.items())
    files["ok_p4_zip64.bin"] = zip64_bytes(zip_entries(torch_save_bytes(params, pickle_protocol=4)))
    wrapped_sd = collections.OrderedDict(sd)
    wrapped_sd["encoder.position_ids"] = torch.arange(17).unsqueeze(0)   # a buffer to skip
    files["ok_wrapped.bin"] = torch_save_bytes({"state_dict": wrapped_sd, "epoch": 3})

    # --- not a checkpoint at all
    files["empty.bin"] = b""
    files["not_a_checkpoint.bin"] = b"\x89PNG\r\n\x1a\n" + b"this is not a checkpoint\n" * 4
    # the start of a pre-1.6 torch.save file: a pickled magic number, the protocol version, ...
    files["bare_pickle.pt"] = (pickle.dumps(0x1950a86a20f9469cfc6c, protocol=2) +
                               pickle.dumps(1001, protocol=2) + pickle.dumps({}, protocol=2))

    # --- damaged containers
    files["truncated.bin"] = good[: len(good) // 2]
    few = collections.OrderedDict((k, sd[k].float()) for k in list(sd)[:4])
    st = safetensors_bytes(few)
    files["truncated.safetensors"] = st[: len(st) * 2 // 3]
    entries = zip_entries(good)
    data0 = [name for name, _ in entries if name.endswith("/data/0")][0]
    files["compressed.bin"] = zip_bytes(entries, {data0: zipfile.ZIP_DEFLATED})

    # --- pickles convert must refuse
    copyreg.add_extension("collections", "OrderedDict", 240)   # pickled as EXT1 240, not GLOBAL
    try:
        files["opcode_ext1.bin"] = torch_save_bytes(sd)
    finally:
        copyreg.remove_extension("collections", "OrderedDict", 240)
    files["opcode_inst.bin"] = pickle_only_bin(b"(i__main__\nEvil\n.")          # INST 0x69
    files["opcode_bad_byte.bin"] = pickle_only_bin(b"\x80\x02}q\x00\xff.")        # 0xff at offset 5
    numpy_sd = collections.OrderedDict(sd)
    numpy_sd["step"] = numpy.float64(1.0)                                         # numpy global
    files["global_numpy.bin"] = torch_save_bytes(numpy_sd)
    files["pickle_truncated.bin"] = pickle_only_bin(pickle.dumps({"a": 1}, protocol=2)[:-3])
    files["pickle_memo_huge.bin"] = pickle_only_bin(b"\x80\x02}r\xff\xff\xff\xff.")   # LONG_BINPUT 2^32-1
    files["pickle_string_huge.bin"] = pickle_only_bin(b"\x80\x02X\xff\xff\xff\x7fabc.")  # 2 GB string
    files["pickle_underflow.bin"] = pickle_only_bin(b"\x80\x02(s.")               # SETITEM after MARK
    files["pickle_not_dict.bin"] = pickle_only_bin(pickle.dumps([1, 2, 3], protocol=2))

    # --- storages and views that do not fit (hand-made pickles)
    half = torch.HalfStorage
    s0 = Storage("0", half, 64)
    raw = bytes(range(128))
    files["storage_past_end.bin"] = hand_made_bin(
        collections.OrderedDict([("encoder.class_embedding", View(s0, 8, (1, 64), (64, 1)))]), {"0": raw})
    files["storage_size_mismatch.bin"] = hand_made_bin(
        collections.OrderedDict([("latent_tokens", View(Storage("0", half, 4096), 0, (4, 4), (4, 1)))]),
        {"0": raw})
    files["storage_missing.bin"] = hand_made_bin(
        collections.OrderedDict([("latent_tokens", View(Storage("7", half, 64), 0, (4, 4), (4, 1)))]),
        {"0": raw})
    files["storage_negative_stride.bin"] = hand_made_bin(
        collections.OrderedDict([("latent_tokens", View(s0, 60, (4, 4), (-4, 1)))]), {"0": raw})

    # --- well-formed checkpoints that are not the model convert infers
    missing = collections.OrderedDict(sd)
    del missing["decoder.ln_post.bias"]
    files["missing_tensor.bin"] = torch_save_bytes(missing)
    extra = collections.OrderedDict(sd)
    extra["decoder.extra_head.weight"] = sd["decoder.conv_out.weight"]
    files["extra_tensor.bin"] = torch_save_bytes(extra)
    shaped = collections.OrderedDict(sd)
    shaped["encoder.transformer.0.attn.out_proj.weight"] = sd["encoder.transformer.0.attn.out_proj.weight"][:, :64]
    files["misshaped_tensor.bin"] = torch_save_bytes(shaped)
    int64 = collections.OrderedDict(sd)
    int64["decoder.mask_token"] = torch.arange(DEC_W).reshape(1, 1, DEC_W)
    files["int64_tensor.bin"] = torch_save_bytes(int64)
    several = collections.OrderedDict(missing)
    several["decoder.extra_head.weight"] = sd["decoder.conv_out.weight"]
    several["encoder.transformer.0.attn.out_proj.weight"] = shaped["encoder.transformer.0.attn.out_proj.weight"]
    files["several_problems.bin"] = torch_save_bytes(several)
    files["width_not_64.bin"] = torch_save_bytes(tiny_state_dict(titok_vq_shapes(enc_w=96)))
    g = torch.Generator().manual_seed(7)
    files["unknown_arch.bin"] = torch_save_bytes(collections.OrderedDict(
        [("fc1.weight", torch.randn(16, 8, generator=g)), ("fc1.bias", torch.randn(16, generator=g)),
         ("fc2.weight", torch.randn(4, 16, generator=g))]))

    total = 0
    for name, data in sorted(files.items()):
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
        total += len(data)
    print("wrote %d files, %d bytes, into %s" % (len(files), total, os.path.normpath(OUT)))


if __name__ == "__main__":
    main()
