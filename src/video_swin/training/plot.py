"""A small loss / accuracy plot as PNG, written with numpy + zlib only (no matplotlib dependency).

Two panels: loss (train, validation) and top-1 accuracy (train, validation) against the epoch, with
axes, grid lines, tick labels and a legend drawn with a built-in 5x7 pixel font.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

from video_swin import files

# 5x7 glyphs, one string of 7 rows of 5 bits per character.
_FONT = {
    "0": "01110 10001 10011 10101 11001 10001 01110", "1": "00100 01100 00100 00100 00100 00100 01110",
    "2": "01110 10001 00001 00010 00100 01000 11111", "3": "11110 00001 00001 01110 00001 00001 11110",
    "4": "00010 00110 01010 10010 11111 00010 00010", "5": "11111 10000 11110 00001 00001 10001 01110",
    "6": "00110 01000 10000 11110 10001 10001 01110", "7": "11111 00001 00010 00100 01000 01000 01000",
    "8": "01110 10001 10001 01110 10001 10001 01110", "9": "01110 10001 10001 01111 00001 00010 01100",
    ".": "00000 00000 00000 00000 00000 01100 01100", "-": "00000 00000 00000 11111 00000 00000 00000",
    "%": "11001 11010 00010 00100 01000 01011 10011", " ": "00000 00000 00000 00000 00000 00000 00000",
    "a": "00000 00000 01110 00001 01111 10001 01111", "c": "00000 00000 01110 10000 10000 10001 01110",
    "e": "00000 00000 01110 10001 11111 10000 01110", "h": "10000 10000 10110 11001 10001 10001 10001",
    "i": "00100 00000 01100 00100 00100 00100 01110", "l": "01100 00100 00100 00100 00100 00100 01110",
    "n": "00000 00000 10110 11001 10001 10001 10001", "o": "00000 00000 01110 10001 10001 10001 01110",
    "p": "00000 00000 11110 10001 11110 10000 10000", "r": "00000 00000 10110 11001 10000 10000 10000",
    "s": "00000 00000 01111 10000 01110 00001 11110", "t": "01000 01000 11100 01000 01000 01001 00110",
    "v": "00000 00000 10001 10001 10001 01010 00100", "y": "00000 00000 10001 10001 01111 00001 01110",
    "u": "00000 00000 10001 10001 10001 10011 01101",
}
_FONT = {k: np.array([[c == "1" for c in row] for row in v.split()], bool) for k, v in _FONT.items() if v}

WHITE, BLACK, GREY = (255, 255, 255), (40, 40, 40), (225, 225, 225)
BLUE, ORANGE = (31, 119, 180), (255, 127, 14)


def write_png(path, image: np.ndarray) -> None:
    """(H, W, 3) uint8 -> PNG file, written atomically."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    h, w, _ = image.shape
    raw = b"".join(b"\x00" + image[y].tobytes() for y in range(h))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    files.atomic_write_bytes(path, png)


def read_png_size(path) -> tuple[int, int]:
    with open(path, "rb") as f:
        head = f.read(24)
    if head[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path} is not a PNG")
    w, h = struct.unpack(">II", head[16:24])
    return h, w


class _Canvas:
    def __init__(self, h, w):
        self.img = np.full((h, w, 3), 255, np.uint8)

    def text(self, x, y, s, colour=BLACK, scale=1):
        for ch in str(s):
            glyph = _FONT.get(ch, _FONT.get(ch.lower(), _FONT[" "]))
            g = np.kron(glyph, np.ones((scale, scale), bool))
            hh, ww = g.shape
            if 0 <= y and y + hh <= self.img.shape[0] and 0 <= x and x + ww <= self.img.shape[1]:
                self.img[y : y + hh, x : x + ww][g] = colour
            x += (5 + 1) * scale

    def hline(self, x0, x1, y, colour):
        self.img[y, max(0, x0) : x1 + 1] = colour

    def vline(self, x, y0, y1, colour):
        self.img[max(0, y0) : y1 + 1, x] = colour

    def line(self, x0, y0, x1, y1, colour, width=2):
        n = int(max(abs(x1 - x0), abs(y1 - y0), 1)) * 2
        xs = np.linspace(x0, x1, n + 1)
        ys = np.linspace(y0, y1, n + 1)
        for dx in range(-(width // 2), width - width // 2):
            for dy in range(-(width // 2), width - width // 2):
                xi = np.clip(np.round(xs).astype(int) + dx, 0, self.img.shape[1] - 1)
                yi = np.clip(np.round(ys).astype(int) + dy, 0, self.img.shape[0] - 1)
                self.img[yi, xi] = colour

    def dot(self, x, y, colour, r=2):
        y0, x0 = int(round(y)), int(round(x))
        self.img[max(0, y0 - r) : y0 + r + 1, max(0, x0 - r) : x0 + r + 1] = colour


def _fmt(v):
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def _panel(canvas, box, title, series, y_range=None):
    """series: list of (label, colour, xs, ys); NaNs are skipped."""
    x0, y0, x1, y1 = box
    canvas.text(x0, y0 - 22, title, BLACK, scale=2)
    xs_all = np.concatenate([np.asarray(s[2], float) for s in series if len(s[2])] or [np.zeros(1)])
    ys_all = np.concatenate([np.asarray(s[3], float) for s in series if len(s[3])] or [np.zeros(1)])
    ys_all = ys_all[np.isfinite(ys_all)]
    xmin, xmax = float(xs_all.min()), float(xs_all.max())
    if xmax <= xmin:
        xmin, xmax = xmin - 1, xmax + 1
    if y_range is not None:
        ymin, ymax = y_range
    elif ys_all.size:
        ymin, ymax = float(ys_all.min()), float(ys_all.max())
        pad = 0.05 * (ymax - ymin or 1.0)
        ymin, ymax = max(0.0, ymin - pad), ymax + pad
    else:
        ymin, ymax = 0.0, 1.0

    def px(x):
        return x0 + (x - xmin) / (xmax - xmin) * (x1 - x0)

    def py(y):
        return y1 - (y - ymin) / (ymax - ymin) * (y1 - y0)

    for k in range(6):
        yv = ymin + (ymax - ymin) * k / 5
        yy = int(round(py(yv)))
        canvas.hline(x0, x1, yy, GREY)
        canvas.text(x0 - 6 * len(_fmt(yv)) - 4, yy - 3, _fmt(yv))
    ticks = np.unique(np.round(np.linspace(xmin, xmax, min(6, int(xmax - xmin) + 1))).astype(int))
    for t in ticks:
        xx = int(round(px(t)))
        canvas.vline(xx, y0, y1, GREY)
        canvas.text(xx - 3 * len(str(t)), y1 + 6, str(t))
    canvas.vline(x0, y0, y1, BLACK)
    canvas.hline(x0, x1, y1, BLACK)
    canvas.text((x0 + x1) // 2 - 15, y1 + 18, "epoch")
    for k, (label, colour, xs, ys) in enumerate(series):
        pts = [(px(x), py(y)) for x, y in zip(xs, ys) if y is not None and np.isfinite(y)]
        for (xa, ya), (xb, yb) in zip(pts, pts[1:]):
            canvas.line(xa, ya, xb, yb, colour)
        for xa, ya in pts:
            canvas.dot(xa, ya, colour)
        ly = y0 + 6 + 12 * k
        canvas.line(x1 - 110, ly + 3, x1 - 92, ly + 3, colour)
        canvas.text(x1 - 86, ly, label)


def plot_history(history: list, path) -> str:
    """Writes the two-panel PNG for a list of per-epoch dicts (epoch, train_loss, val_loss, train_top1,
    val_top1); returns the path."""
    canvas = _Canvas(300, 760)
    ep = [h["epoch"] for h in history]

    def col(key, scale=1.0):
        return [None if h.get(key) is None else scale * float(h[key]) for h in history]

    _panel(canvas, (60, 40, 360, 250), "loss",
           [("train", BLUE, ep, col("train_loss")), ("val", ORANGE, ep, col("val_loss"))])
    _panel(canvas, (440, 40, 740, 250), "top-1 %",
           [("train", BLUE, ep, col("train_top1", 100)), ("val", ORANGE, ep, col("val_top1", 100))],
           y_range=(0.0, 100.0))
    write_png(path, canvas.img)
    return str(path)
