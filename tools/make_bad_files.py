#!/usr/bin/python3
"""Writes the hand-made broken .safetensors and .npy files of tests/bad/.

Each file breaks exactly one rule, so that the reader's error for it can be checked: the table
of expected statuses and message substrings is BAD_FILES in tests/test_io.c. Run from anywhere:
    /usr/bin/python3 tools/make_bad_files.py
Standard library only; the output is deterministic, so the files can be committed.
"""
import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "bad")


def st(header, data=b"", hlen=None):
    """A safetensors image: u64 little-endian header length, the header text, the data buffer.
    hlen overrides the stored length (to lie about it)."""
    h = header.encode("utf-8") if isinstance(header, str) else header
    return struct.pack("<Q", len(h) if hlen is None else hlen) + h + data


def npy(header, data, version=(1, 0), hlen=None, magic=b"\x93NUMPY"):
    """An .npy image laid out as numpy writes it (header padded with spaces and a final newline
    to a multiple of 64 bytes). hlen overrides the stored header length."""
    h = header.encode("latin1")
    prefix = 10 if version[0] == 1 else 12
    h += b" " * (64 - (prefix + len(h) + 1) % 64) + b"\n"
    n = len(h) if hlen is None else hlen
    size = struct.pack("<H", n) if version[0] == 1 else struct.pack("<I", n)
    return magic + bytes(version) + size + h + data


def f32(*values):
    return struct.pack("<%df" % len(values), *values)


def tensor(name, dtype, shape, begin, end):
    return '"%s": {"dtype": "%s", "shape": %s, "data_offsets": [%d, %d]}' % (
        name, dtype, "[" + ", ".join(str(d) for d in shape) + "]", begin, end)


FILES = {
    # --- safetensors: the 8-byte length and the header bounds
    "st_truncated.safetensors": b"\x10\x00\x00\x00\x00",
    "st_header_past_end.safetensors": st('{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}',
                                         f32(1.0), hlen=1000),
    "st_header_absurd.safetensors": st("{}", hlen=1 << 40),
    # --- the JSON itself
    "st_invalid_json.safetensors": st('{"w": {"dtype": "F32", "shape": [1] "data_offsets": [0, 4]}}', f32(1.0)),
    "st_not_object.safetensors": st("[1, 2, 3]"),
    "st_bad_escape.safetensors": st('{"a\\qb": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}', f32(1.0)),
    "st_control_char.safetensors": st('{"a\tb": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}', f32(1.0)),
    "st_int_overflow.safetensors": st('{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 99999999999999999999]}}',
                                      f32(1.0)),
    "st_trailing_garbage.safetensors": st('{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}} x', f32(1.0)),
    # --- the schema
    "st_unknown_field.safetensors": st('{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4], "strides": [1]}}',
                                       f32(1.0)),
    "st_missing_field.safetensors": st('{"w": {"dtype": "F32", "data_offsets": [0, 4]}}', f32(1.0)),
    "st_duplicate_tensor.safetensors": st("{" + tensor("w", "F32", [1], 0, 4) + ", " + tensor("w", "F32", [1], 4, 8) + "}",
                                          f32(1.0, 2.0)),
    "st_duplicate_field.safetensors": st('{"w": {"dtype": "F32", "dtype": "F16", "shape": [1], "data_offsets": [0, 4]}}',
                                         f32(1.0)),
    "st_meta_not_string.safetensors": st('{"__metadata__": {"format": "pt", "epoch": 3}, '
                                         + tensor("w", "F32", [1], 0, 4) + "}", f32(1.0)),
    "st_dtype_f64.safetensors": st("{" + tensor("enc.w", "F64", [1], 0, 8) + "}", struct.pack("<d", 1.0)),
    "st_dtype_q4.safetensors": st("{" + tensor("enc.q", "Q4", [2], 0, 1) + "}", b"\x12"),
    "st_too_many_dims.safetensors": st("{" + tensor("w", "F32", [1] * 9, 0, 4) + "}", f32(1.0)),
    "st_negative_dim.safetensors": st("{" + tensor("w", "F32", [2, -3], 0, 24) + "}", bytes(24)),
    # --- sizes and byte ranges
    "st_dims_overflow.safetensors": st("{" + tensor("huge", "F32", [4294967296, 4294967296, 16], 0, 4) + "}", f32(1.0)),
    "st_size_mismatch.safetensors": st("{" + tensor("enc.w", "F32", [5, 6], 0, 100) + "}", bytes(100)),
    "st_offsets_reversed.safetensors": st("{" + tensor("w", "F32", [1], 8, 4) + "}", bytes(8)),
    "st_offsets_out_of_range.safetensors": st("{" + tensor("w", "F32", [4], 0, 16) + "}", f32(1.0, 2.0)),
    "st_overlap.safetensors": st("{" + tensor("a", "F32", [4], 0, 16) + ", " + tensor("b", "F32", [4], 8, 24) + "}",
                                 bytes(24)),
    # --- npy
    "npy_bad_magic.npy": npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", f32(1.0, 2.0),
                             magic=b"\x93NUMPZ"),
    "npy_bad_version.npy": npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", f32(1.0, 2.0),
                               version=(4, 0)),
    "npy_descr_f8.npy": npy("{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }", struct.pack("<2d", 1.0, 2.0)),
    "npy_fortran.npy": npy("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", f32(1.0, 2.0, 3.0, 4.0)),
    "npy_truncated.npy": npy("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }", f32(*range(10))),
    "npy_trailing.npy": npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", f32(1.0, 2.0, 3.0)),
    "npy_header_past_end.npy": npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", f32(1.0, 2.0),
                                   hlen=4000),
    "npy_negative_shape.npy": npy("{'descr': '<f4', 'fortran_order': False, 'shape': (-2,), }", f32(1.0, 2.0)),
    "npy_missing_key.npy": npy("{'descr': '<f4', 'fortran_order': False, }", f32(1.0)),
    "npy_unknown_key.npy": npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'order': 'C', }", f32(1.0)),
}


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, data in sorted(FILES.items()):
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
        print("%-40s %5d bytes" % (name, len(data)))


if __name__ == "__main__":
    main()
