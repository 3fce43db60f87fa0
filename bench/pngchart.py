"""A bar chart of the Aerostore / best-peer ratios as a PNG, with no dependency.

Why hand-rolled: the harness must run from a bare checkout with only the
standard library (the smoke test runs it in CI), and a bar chart needs nothing
but filled rectangles, lines and a little text.  This module holds a tiny RGB
canvas, a 5x7 bitmap font (upper case, digits, a few signs) and a PNG encoder
(zlib + struct, RFC 2083: one IHDR, one IDAT, IEND).

Chart: one row per figure, one bar per Aerostore variant, on a log10 axis
centred on 1x; a bar to the left (green) means Aerostore costs less than the
best peer, to the right (red) more.
"""
from __future__ import annotations

import math
import struct
import zlib

# 5x7 glyphs, one string of 7 rows of 5 pixels each ('#' = ink).
_FONT_SRC = {
    " ": "..... ..... ..... ..... ..... ..... .....",
    "0": ".###. #...# #..## #.#.# ##..# #...# .###.",
    "1": "..#.. .##.. ..#.. ..#.. ..#.. ..#.. .###.",
    "2": ".###. #...# ....# ...#. ..#.. .#... #####",
    "3": "##### ...#. ..#.. ...#. ....# #...# .###.",
    "4": "...#. ..##. .#.#. #..#. ##### ...#. ...#.",
    "5": "##### #.... ####. ....# ....# #...# .###.",
    "6": "..##. .#... #.... ####. #...# #...# .###.",
    "7": "##### ....# ...#. ..#.. .#... .#... .#...",
    "8": ".###. #...# #...# .###. #...# #...# .###.",
    "9": ".###. #...# #...# .#### ....# ...#. .##..",
    "A": ".###. #...# #...# ##### #...# #...# #...#",
    "B": "####. #...# #...# ####. #...# #...# ####.",
    "C": ".###. #...# #.... #.... #.... #...# .###.",
    "D": "###.. #..#. #...# #...# #...# #..#. ###..",
    "E": "##### #.... #.... ####. #.... #.... #####",
    "F": "##### #.... #.... ####. #.... #.... #....",
    "G": ".###. #...# #.... #.### #...# #...# .####",
    "H": "#...# #...# #...# ##### #...# #...# #...#",
    "I": ".###. ..#.. ..#.. ..#.. ..#.. ..#.. .###.",
    "J": "..### ...#. ...#. ...#. ...#. #..#. .##..",
    "K": "#...# #..#. #.#.. ##... #.#.. #..#. #...#",
    "L": "#.... #.... #.... #.... #.... #.... #####",
    "M": "#...# ##.## #.#.# #.#.# #...# #...# #...#",
    "N": "#...# #...# ##..# #.#.# #..## #...# #...#",
    "O": ".###. #...# #...# #...# #...# #...# .###.",
    "P": "####. #...# #...# ####. #.... #.... #....",
    "Q": ".###. #...# #...# #...# #.#.# #..#. .##.#",
    "R": "####. #...# #...# ####. #.#.. #..#. #...#",
    "S": ".#### #.... #.... .###. ....# ....# ####.",
    "T": "##### ..#.. ..#.. ..#.. ..#.. ..#.. ..#..",
    "U": "#...# #...# #...# #...# #...# #...# .###.",
    "V": "#...# #...# #...# #...# #...# .#.#. ..#..",
    "W": "#...# #...# #...# #.#.# #.#.# #.#.# .#.#.",
    "X": "#...# #...# .#.#. ..#.. .#.#. #...# #...#",
    "Y": "#...# #...# .#.#. ..#.. ..#.. ..#.. ..#..",
    "Z": "##### ....# ...#. ..#.. .#... #.... #####",
    ".": "..... ..... ..... ..... ..... .##.. .##..",
    ",": "..... ..... ..... ..... .##.. ..#.. .#...",
    ":": "..... .##.. .##.. ..... .##.. .##.. .....",
    "-": "..... ..... ..... ##### ..... ..... .....",
    "+": "..... ..#.. ..#.. ##### ..#.. ..#.. .....",
    "_": "..... ..... ..... ..... ..... ..... #####",
    "/": "....# ...#. ...#. ..#.. .#... .#... #....",
    "(": "...#. ..#.. .#... .#... .#... ..#.. ...#.",
    ")": ".#... ..#.. ...#. ...#. ...#. ..#.. .#...",
    "<": "...#. ..#.. .#... #.... .#... ..#.. ...#.",
    ">": ".#... ..#.. ...#. ....# ...#. ..#.. .#...",
    "=": "..... ..... ##### ..... ##### ..... .....",
    "%": "##..# ##..# ...#. ..#.. .#... #..## #..##",
    "*": "..... ..#.. #.#.# .###. #.#.# ..#.. .....",
    "?": ".###. #...# ....# ...#. ..#.. ..... ..#..",
}
FONT = {c: [row for row in rows.split()] for c, rows in _FONT_SRC.items()}
GLYPH_W, GLYPH_H = 6, 8   # advance, line height (5x7 plus spacing)


class Canvas:
    def __init__(self, width: int, height: int, bg=(255, 255, 255)):
        self.w, self.h = width, height
        self.px = bytearray(bytes(bg) * (width * height))

    def rect(self, x0, y0, x1, y1, color):
        """Fill [x0, x1) x [y0, y1), clipped."""
        x0, x1 = max(0, int(x0)), min(self.w, int(x1))
        y0, y1 = max(0, int(y0)), min(self.h, int(y1))
        if x1 <= x0:
            return
        row = bytes(color) * (x1 - x0)
        for y in range(y0, y1):
            i = (y * self.w + x0) * 3
            self.px[i:i + len(row)] = row

    def text(self, x, y, s, color=(0, 0, 0), scale=1):
        for ch in s.upper():
            glyph = FONT.get(ch, FONT["?"])
            for gy, row in enumerate(glyph):
                for gx, bit in enumerate(row):
                    if bit == "#":
                        self.rect(x + gx * scale, y + gy * scale,
                                  x + (gx + 1) * scale, y + (gy + 1) * scale, color)
            x += GLYPH_W * scale
        return x

    def png(self) -> bytes:
        raw = bytearray()
        stride = self.w * 3
        for y in range(self.h):
            raw.append(0)                     # filter type 0 (None) per scanline
            raw += self.px[y * stride:(y + 1) * stride]

        def chunk(tag, data):
            return (struct.pack(">I", len(data)) + tag + data
                    + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))
        ihdr = struct.pack(">IIBBBBB", self.w, self.h, 8, 2, 0, 0, 0)  # 8-bit RGB
        return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                + chunk(b"IDAT", zlib.compress(bytes(raw), 9)) + chunk(b"IEND", b""))


def text_width(s, scale=1):
    return len(s) * GLYPH_W * scale


def _fmt_num(x):
    return f"{x:.0f}" if x >= 100 else f"{x:.3g}"


def _fmt_ratio(r):
    return f"{_fmt_num(r)}X" if r >= 1 else f"1/{_fmt_num(1 / r)}X"


def ratio_chart(rows, series, title: str, subtitle: str = "") -> bytes:
    """rows: list of (label, {series_name: ratio or None}); series: [(name, rgb)]."""
    label_w = max([text_width(lbl) for lbl, _ in rows] + [60]) + 16
    plot_w, bar_h, gap = 560, 10, 10
    row_h = bar_h * len(series) + gap
    top, bottom = 56, 40
    width = label_w + plot_w + 90
    height = top + row_h * max(1, len(rows)) + bottom
    vals = [math.log10(r) for _, d in rows for r in d.values() if r]
    span = max([1.0] + [abs(v) for v in vals])
    span = math.ceil(span)                       # whole decades each side of 1x
    cx = label_w + plot_w / 2

    def xpos(lg):
        return cx + lg / span * (plot_w / 2)

    c = Canvas(width, height)
    c.text(10, 8, title, scale=2)
    if subtitle:
        c.text(10, 30, subtitle, color=(90, 90, 90))
    # decade grid and axis labels
    for d in range(-span, span + 1):
        x = xpos(d)
        c.rect(x, top - 4, x + 1, height - bottom + 4, (215, 215, 215) if d else (0, 0, 0))
        lbl = _fmt_ratio(10.0 ** d)
        c.text(x - text_width(lbl) / 2, height - bottom + 10, lbl, color=(60, 60, 60))
    c.text(label_w, height - 14, "<- AEROSTORE AHEAD", color=(0, 120, 0))
    behind = "AEROSTORE BEHIND ->"
    c.text(label_w + plot_w - text_width(behind), height - 14, behind, color=(170, 0, 0))
    for i, (label, d) in enumerate(rows):
        y = top + i * row_h
        c.text(8, y + (row_h - gap) / 2 - 4, label)
        for j, (name, color) in enumerate(series):
            r = d.get(name)
            by = y + j * bar_h
            if not r:
                c.text(cx + 4, by + 1, "N/A", color=(120, 120, 120))
                continue
            lg = max(-span, min(span, math.log10(r)))
            x0, x1 = sorted((cx, xpos(lg)))
            tint = (0, 150, 0) if r < 1 else (200, 30, 30)
            # the series' own colour only sets the lightness: first series full
            # strength, later ones blended towards white like their legend swatch
            light = sum(color) / (3 * 255)
            shade = tuple(int(t + (255 - t) * light * 0.8) for t in tint)
            c.rect(x0, by + 1, max(x1, x0 + 1), by + bar_h - 1, shade)
            lbl = _fmt_ratio(r)
            tx = x1 + 4 if r >= 1 else x0 - text_width(lbl) - 4
            c.text(tx, by + 1, lbl, color=(40, 40, 40))
    if not series:
        c.text(cx + 8, top + 4, "NO AEROSTORE FIGURES IN THIS RUN", color=(120, 120, 120))
    # legend
    lx = width - 14 - max((text_width(n) for n, _ in series), default=0) - 14
    for j, (name, color) in enumerate(series):
        c.rect(lx, 8 + j * 12, lx + 10, 8 + j * 12 + 8, color)
        c.text(lx + 14, 8 + j * 12, name)
    return c.png()
