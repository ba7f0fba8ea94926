#!/usr/bin/env python3
"""write_pngs.py DIR W H COUNT [FIRST] [--step S] [--rgba I]: the CLI tests' input images.

Writes DIR/img<FIRST>.png ... DIR/img<FIRST+COUNT-1>.png, each W x H, 8-bit: smooth colour ramps
(S grey levels per pixel, default 8) plus seeded noise, so every image differs and every run of
this script writes the same bytes. Image number I (with --rgba) is RGBA with alpha 200, to
exercise the loaders' compositing; the rest are RGB. Standard library only (no PIL, no numpy)."""
import random, struct, sys, zlib


def png(path, w, h, channels, seed, step):
    r = random.Random(seed)
    rows = bytearray()
    for y in range(h):
        rows.append(0)  # filter type 0 for every row
        for x in range(w):
            px = [(x * step + seed * 40) % 256, (y * step + seed * 70) % 256, (x * y + seed * 13) % 256, 200]
            rows += bytes(min(255, max(0, v + r.randint(-8, 8))) for v in px[:channels])

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xffffffff)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, {3: 2, 4: 6}[channels], 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(rows))) + chunk(b"IEND", b""))


def main(argv):
    opts = {"--step": 8, "--rgba": -1}
    pos = []
    it = iter(argv)
    for a in it:
        if a in opts:
            opts[a] = int(next(it))
        else:
            pos.append(a)
    if len(pos) not in (4, 5):
        sys.exit(__doc__.splitlines()[0])
    d, w, h, n = pos[0], int(pos[1]), int(pos[2]), int(pos[3])
    first = int(pos[4]) if len(pos) > 4 else 0
    for i in range(first, first + n):
        png("%s/img%d.png" % (d, i), w, h, 4 if i == opts["--rgba"] else 3, i, opts["--step"])


if __name__ == "__main__":
    main(sys.argv[1:])
