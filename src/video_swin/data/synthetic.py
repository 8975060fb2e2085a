"""Synthetic motion-video dataset: one filled shape per clip, eight motion classes.

Classes (index order of :data:`CLASSES`)::

    0 moving_left   1 moving_right   2 moving_up   3 moving_down
    4 rotating_clockwise   5 rotating_anticlockwise   6 growing   7 shrinking

Every clip is ``frames`` RGB frames of ``size`` x ``size`` pixels (default 16 x 64 x 64) showing one filled
polygon of a random colour on a random solid background with per-pixel Gaussian noise.  The class is
defined only by how the shape changes over time:

* ``moving_*``: straight-line translation at 1-3 px/frame, exactly along the class direction (no
  perpendicular component), the centre always at least ``margin`` px inside the frame.
* ``rotating_*``: 5-15 deg/frame about the shape's area centroid.  "Clockwise" is as seen on screen:
  image coordinates have x to the right and y DOWN, so a clockwise turn takes a point at 12 o'clock to
  3 o'clock (up -> right).  With y down the ordinary rotation matrix ``[[cos, -sin], [sin, cos]]`` and a
  positive angle is exactly that, so clockwise clips have a positive angular step.
* ``growing`` / ``shrinking``: the linear size changes geometrically (constant ratio per frame) by a total
  factor ``F`` in 1.5-2.5 over the clip (the area changes by ``F**2``).  ``randomize=True`` also draws
  ``F`` as low as ``sqrt(1.5)`` (a factor of 1.5-2.5 in *area*), because the description leaves open
  whether "size" is linear or areal.

Nothing else changes within a clip (moving shapes do not turn or scale, etc.).

"Size" is the side of the shape's axis-aligned bounding box in its canonical (unrotated) pose, so a
size-16 square has 16 px sides; shapes are drawn at 8-24 px ("size at the anchor frame", see below).

What a single frame tells
-------------------------
Each clip is built around an *anchor frame* ``k`` whose state (centre, size, orientation, shape, colours)
is drawn from one distribution shared by all eight classes; the motion is then laid out forwards and
backwards from it, with the speed / growth factor capped so that the centre stays inside the frame and
the size stays inside ``[8/1.5, 24*1.5]`` px.  With ``randomize=False`` the anchor is the first frame, so
the first frame is distributed identically for every class: it tells nothing about the class.  Every other
frame tells something, because a 15-45 px trajectory has to stay in a 64 px frame (a shape that ends
near the right edge has more often been moving right).  With ``randomize=True`` the anchor is the first
frame half of the time and a uniformly random frame otherwise, which spreads that information over the
clip (``sample_params(anchor_p=...)`` sets the mix).  A nearest-class-centroid classifier on one frame's
mask features (centroid, sqrt(area), bounding box; 400 clips per class, 2-fold; chance 0.125) is right for
``randomize=False`` 0.12 / 0.36 / 0.66 of clips at frames 0 / 7 / 15, ``randomize=True`` 0.24 / 0.24 /
0.49 (a quadratic logistic regression, measured when the generator was written and not re-measured by a
test: 0.11 / 0.36 / 0.67 and 0.23 / 0.29 / 0.57).  So a single frame
is a weak cue, never close to what the motion gives; tests/data/test_synthetic.py checks that the
canonical first frame does not depend on the class and that no frame position lets that classifier
name the class of three clips in four.

Randomisation (``randomize=True``; the values used with ``randomize=False`` in brackets)
-----------------------------------------------------------------------------------------
* shape: square, equilateral triangle, arrow, L (same four), plus rectangle, random triangle,
  parallelogram, trapezoid, T, chevron, kite, random irregular polygon; mirrored with p=0.5 (never).
  All have rotational symmetry of order <= 4 (>= 90 deg), so a 5-15 deg/frame turn is unambiguous.
* colours: background uniform RGB; shape colour uniform RGB, redrawn until the luma difference is
  >= 32 and the RGB distance >= 64 (>= 48 / >= 80).
* noise: Gaussian, std uniform in [0, 12] per clip, per channel or (p=0.3) the same for the three
  channels, independent per frame (std 4, per channel).
* drawing: a coverage mask drawn with cv2.fillPoly (vertices at 1/64 px) and composited as
  ``bg + coverage * (fg - bg)``: LINE_8 supersampled 8x / 4x / 2x and box-averaged (p=0.35/0.2/0.1,
  near-exact area coverage), aliased LINE_8 (p=0.2), or OpenCV LINE_AA (p=0.15; note OpenCV's AA fill
  makes the area flicker by a few % with the vertical sub-pixel position, not with the horizontal one)
  (always LINE_8 supersampled 8x).
* sub-pixel positions: with p=0.25 centres are rounded to whole pixels (always sub-pixel).
* margin (how close to the edge the centre may get): 2-8 px (4 px).
* compression, used by :func:`write_video` / :func:`make_synthetic` and ``generate_arrays(compress=True)``:
  libx264 CRF 14-32 with preset ultrafast/superfast/veryfast/faster (p=0.8) or mpeg4 with fixed
  quantiser 2-12 (libx264 CRF 20, preset veryfast); x264's macroblock tree is off (reproducible bytes).
  Always yuv420p in an .mp4, 8 fps by default.
  If libx264 is missing, mpeg4 is used.

All pixel ranges scale with ``size / 64``.  ``frames`` other than 16 keep the per-frame speeds and the
total growth factor; for long clips the minimum speed is lowered so the path still fits in the frame.

Determinism: clip ``j`` of class ``c`` is drawn from ``np.random.default_rng([seed, c, j])``, so it does not
depend on how many clips are made or on the worker count, and the same seed gives the same files:
byte-identical with the same PyAV/FFmpeg build on one machine, whatever its core count (the encoder runs
one thread, and x264's macroblock tree, whose AVX-512 code was not deterministic, is off: see
``X264_REPRODUCIBLE_PARAMS``). Across machines the decoded frames agree within the codec's noise; the bytes
can differ where x264 picks other SIMD code (SSE2-only CPUs write other bytes than AVX2 / AVX-512 ones).
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import math
import multiprocessing
import os
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

CLASSES = (
    "moving_left",
    "moving_right",
    "moving_up",
    "moving_down",
    "rotating_clockwise",
    "rotating_anticlockwise",
    "growing",
    "shrinking",
)

# (dx, dy) unit direction per moving class, in image coordinates (y down).
_DIRECTIONS = {0: (-1.0, 0.0), 1: (1.0, 0.0), 2: (0.0, -1.0), 3: (0.0, 1.0)}

# Nominal ranges at size 64 (scaled by size/64).
SIZE_RANGE = (8.0, 24.0)  # px, size at the anchor frame
SPEED_RANGE = (1.0, 3.0)  # px / frame
ROTATION_RANGE = (5.0, 15.0)  # deg / frame
GROWTH_RANGE = (1.5, 2.5)  # total linear factor over the clip
NOISE_MAX = 12.0
_SIZE_LIMITS = (SIZE_RANGE[0] / GROWTH_RANGE[0], SIZE_RANGE[1] * GROWTH_RANGE[0])  # any frame

_VERTEX_SHIFT = 6  # fillPoly fixed-point bits: vertices at 1/64 px
_RANDOM_ANCHOR_P = 0.5  # default anchor_p for randomize=True


@functools.lru_cache(maxsize=None)
def _has_libx264() -> bool:
    import av

    return "libx264" in av.codecs_available


# --------------------------------------------------------------------------------------------- shapes


def _normalize(poly) -> np.ndarray:
    """Area centroid to the origin, longer bounding-box side to 1."""
    p = np.asarray(poly, dtype=np.float64)
    x, y = p[:, 0], p[:, 1]
    xn, yn = np.roll(x, -1), np.roll(y, -1)
    cross = x * yn - xn * y
    a = cross.sum() / 2.0
    cx = ((x + xn) * cross).sum() / (6.0 * a)
    cy = ((y + yn) * cross).sum() / (6.0 * a)
    p = p - (cx, cy)
    extent = (p.max(0) - p.min(0)).max()
    return p / extent


def _polygon_area(p: np.ndarray) -> float:
    x, y = p[:, 0], p[:, 1]
    return abs((x * np.roll(y, -1) - np.roll(x, -1) * y).sum()) / 2.0


def _shape_square(rng):
    return [(-0.5, -0.5), (0.5, -0.5), (0.5, 0.5), (-0.5, 0.5)]


def _shape_triangle(rng):
    h = math.sqrt(3) / 2
    return [(0.0, -h / 2), (0.5, h / 2), (-0.5, h / 2)]


def _shape_arrow(rng, shaft=0.18, head=0.45, head_len=0.45):
    # Points along +x (to the right) in the canonical pose.
    return [
        (0.0, -shaft),
        (1.0 - head_len, -shaft),
        (1.0 - head_len, -head),
        (1.0, 0.0),
        (1.0 - head_len, head),
        (1.0 - head_len, shaft),
        (0.0, shaft),
    ]


def _shape_l(rng, w=0.7, t=0.35):
    return [(0.0, 0.0), (t, 0.0), (t, 1.0 - t), (w, 1.0 - t), (w, 1.0), (0.0, 1.0)]


def _shape_rectangle(rng):
    a = rng.uniform(1.5, 2.5)
    return [(0, 0), (1, 0), (1, 1 / a), (0, 1 / a)]


def _shape_random_triangle(rng):
    while True:
        ang = np.sort(rng.uniform(0, 2 * np.pi, 3))
        gaps = np.diff(np.r_[ang, ang[0] + 2 * np.pi])
        if gaps.min() > np.deg2rad(50) and np.ptp(gaps) > np.deg2rad(15):  # not (nearly) equilateral
            return np.c_[np.cos(ang), np.sin(ang)]


def _shape_parallelogram(rng):
    s = rng.uniform(0.25, 0.5)
    h = rng.uniform(0.4, 0.7)
    return [(0, 0), (1 - s, 0), (1, h), (s, h)]


def _shape_trapezoid(rng):
    top = rng.uniform(0.25, 0.6)
    h = rng.uniform(0.5, 0.9)
    off = rng.uniform(0.0, 1.0 - top)
    return [(off, 0), (off + top, 0), (1, h), (0, h)]


def _shape_t(rng):
    t = rng.uniform(0.3, 0.4)
    bar = rng.uniform(0.3, 0.4)
    a, b = 0.5 - t / 2, 0.5 + t / 2
    return [(0, 0), (1, 0), (1, bar), (b, bar), (b, 1), (a, 1), (a, bar), (0, bar)]


def _shape_chevron(rng):
    d = rng.uniform(0.35, 0.5)
    h = rng.uniform(0.6, 1.0)
    return [(0, 0), (1 - d, 0), (1, h / 2), (1 - d, h), (0, h), (d, h / 2)]


def _shape_kite(rng):
    a = rng.uniform(0.2, 0.4)
    w = rng.uniform(0.5, 0.8)
    return [(0, 0), (a, -w / 2), (1, 0), (a, w / 2)]


def _shape_irregular(rng):
    while True:
        n = int(rng.integers(5, 9))
        ang = np.sort(rng.uniform(0, 2 * np.pi, n))
        gaps = np.diff(np.r_[ang, ang[0] + 2 * np.pi])
        if gaps.max() > np.pi * 0.9:
            continue
        r = rng.uniform(0.45, 1.0, n)
        p = np.c_[r * np.cos(ang), r * np.sin(ang)]
        if np.ptp(r) > 0.25 and _polygon_area(_normalize(p)) > 0.3:
            return p


_SHAPES = {
    "square": _shape_square,
    "triangle": _shape_triangle,
    "arrow": _shape_arrow,
    "l": _shape_l,
    "rectangle": _shape_rectangle,
    "random_triangle": _shape_random_triangle,
    "parallelogram": _shape_parallelogram,
    "trapezoid": _shape_trapezoid,
    "t": _shape_t,
    "chevron": _shape_chevron,
    "kite": _shape_kite,
    "irregular": _shape_irregular,
}
BASIC_SHAPES = ("square", "triangle", "arrow", "l")
ALL_SHAPES = tuple(_SHAPES)


def shape_polygon(name: str, rng: np.random.Generator | None = None) -> np.ndarray:
    """Canonical polygon (N, 2) of a named shape: centroid at 0, longer bbox side 1, x right, y down."""
    return _normalize(_SHAPES[name](rng if rng is not None else np.random.default_rng(0)))


# ------------------------------------------------------------------------------------------ sampling


@dataclass(eq=False)
class ClipParams:
    """Everything needed to render (and encode) one clip; see :func:`sample_params`."""

    label: int
    size: int
    shape: str
    polygon: np.ndarray  # (N, 2) canonical, see shape_polygon
    centers: np.ndarray  # (T, 2) x, y in continuous pixel coords (image spans [0, size])
    scales: np.ndarray  # (T,) size in px (bbox side in the canonical pose)
    angles: np.ndarray  # (T,) radians; increasing = clockwise on screen
    fg: tuple
    bg: tuple
    noise_std: float
    noise_mono: bool
    noise_seed: int
    antialias: bool
    supersample: int
    anchor: int
    codec: str = "libx264"
    crf: int | None = 20
    qscale: int | None = None
    preset: str = "veryfast"
    extra: dict = field(default_factory=dict)

    @property
    def frames(self) -> int:
        return len(self.scales)

    def encode_kwargs(self) -> dict:
        return {"codec": self.codec, "crf": self.crf, "qscale": self.qscale, "preset": self.preset}


def label_index(label) -> int:
    """Class index from a name or an int."""
    if isinstance(label, (int, np.integer)):
        if not 0 <= int(label) < len(CLASSES):
            raise ValueError(f"label {label} out of range 0..{len(CLASSES) - 1}")
        return int(label)
    try:
        return CLASSES.index(str(label))
    except ValueError:
        raise ValueError(f"unknown class {label!r}; expected one of {CLASSES}") from None


def _luma(c) -> float:
    r, g, b = c
    return 0.299 * r + 0.587 * g + 0.114 * b


def _colours(rng, randomize):
    min_luma, min_dist = (32.0, 64.0) if randomize else (48.0, 80.0)
    bg = rng.integers(0, 256, 3)
    while True:
        fg = rng.integers(0, 256, 3)
        if abs(_luma(fg) - _luma(bg)) >= min_luma and np.linalg.norm(fg - bg) >= min_dist:
            return tuple(int(v) for v in fg), tuple(int(v) for v in bg)


def sample_params(label, rng: np.random.Generator, frames: int = 16, size: int = 64, randomize: bool = True,
                  anchor_p: float | None = None) -> ClipParams:
    """Draw the parameters of one clip of class ``label``.

    ``anchor_p``: probability that the anchor is a uniformly random frame instead of the first frame
    (default 0.5 with ``randomize=True``, 0 otherwise); see the module docstring.
    """
    c = label_index(label)
    T = int(frames)
    if T < 2:
        raise ValueError("frames must be >= 2")
    S = int(size)
    u = S / 64.0
    span = T - 1

    # Anchor frame: its state is drawn from the same distribution for every class.
    if anchor_p is None:
        anchor_p = _RANDOM_ANCHOR_P if randomize else 0.0
    if anchor_p > 0 and rng.random() < anchor_p:
        k = int(rng.integers(0, T))
    else:
        k = 0
    before, after = k, span - k
    longest = max(before, after)

    # Shape, orientation.
    shape = str(rng.choice(ALL_SHAPES if randomize else BASIC_SHAPES))
    poly = _normalize(_SHAPES[shape](rng))
    if randomize and rng.random() < 0.5:
        poly = _normalize(poly * (-1.0, 1.0))[::-1].copy()  # mirror, keep winding
    theta0 = rng.uniform(0, 2 * np.pi)

    # Size at the anchor frame; every frame stays within _SIZE_LIMITS.
    s_min, s_max = (v * u for v in _SIZE_LIMITS)
    s_anchor = math.exp(rng.uniform(math.log(SIZE_RANGE[0] * u), math.log(SIZE_RANGE[1] * u)))

    # Position at the anchor frame: a box that leaves room for the slowest motion in either direction.
    margin = (rng.uniform(2.0, 8.0) if randomize else 4.0) * u
    v_lo, v_hi = SPEED_RANGE[0] * u, SPEED_RANGE[1] * u
    free = S - 2 * margin
    v_lo = min(v_lo, 0.4 * free / longest) if longest else v_lo  # long clips: let the path fit
    lo, hi = margin + v_lo * longest, S - margin - v_lo * longest
    anchor_xy = rng.uniform(lo, hi, 2)

    t = np.arange(T, dtype=np.float64)
    centers = np.tile(anchor_xy, (T, 1))
    scales = np.full(T, s_anchor)
    angles = np.full(T, theta0)
    extra = {}

    if c in _DIRECTIONS:
        d = np.array(_DIRECTIONS[c])
        axis = 0 if d[0] else 1
        sign = d[axis]
        pos = anchor_xy[axis]
        room_fwd = (S - margin - pos) if sign > 0 else (pos - margin)
        room_back = (pos - margin) if sign > 0 else (S - margin - pos)
        cap = v_hi
        if after:
            cap = min(cap, room_fwd / after)
        if before:
            cap = min(cap, room_back / before)
        v = rng.uniform(v_lo, max(v_lo, cap))
        centers = anchor_xy + np.outer(t - k, d * v)
        extra["speed"] = v
    elif c in (4, 5):
        w = np.deg2rad(rng.uniform(*ROTATION_RANGE))
        w = w if c == 4 else -w  # +: clockwise on screen (y down)
        angles = theta0 + w * (t - k)
        extra["omega_deg"] = float(np.rad2deg(w))
    else:
        g_lo = math.sqrt(GROWTH_RANGE[0]) if randomize else GROWTH_RANGE[0]
        g_hi = GROWTH_RANGE[1]
        grow = c == 6
        # size_t = s_anchor * F ** (sgn * (t - k) / span); cap F so every frame stays in [s_min, s_max].
        up, down = (after, before) if grow else (before, after)  # frames on the larger / smaller side
        cap = g_hi
        if up:
            cap = min(cap, (s_max / s_anchor) ** (span / up))
        if down:
            cap = min(cap, (s_anchor / s_min) ** (span / down))
        F = math.exp(rng.uniform(math.log(g_lo), math.log(max(g_lo, cap))))
        sgn = 1.0 if grow else -1.0
        scales = s_anchor * F ** (sgn * (t - k) / span)
        extra["factor"] = F

    if randomize and rng.random() < 0.25:
        centers = np.round(centers)

    fg, bg = _colours(rng, randomize)
    if randomize:
        noise_std = float(rng.uniform(0.0, NOISE_MAX))
        noise_mono = bool(rng.random() < 0.3)
        modes = ((False, 8), (False, 4), (False, 2), (False, 1), (True, 1))  # (LINE_AA, supersampling)
        antialias, supersample = modes[int(rng.choice(len(modes), p=(0.35, 0.2, 0.1, 0.2, 0.15)))]
    else:
        noise_std, noise_mono, antialias, supersample = 4.0, False, False, 8
    noise_seed = int(rng.integers(0, 2**63))

    codec, crf, qscale, preset = "libx264", 20, None, "veryfast"
    if randomize:
        if rng.random() < 0.8:
            crf = int(rng.integers(14, 33))
            preset = str(rng.choice(("ultrafast", "superfast", "veryfast", "faster")))
        else:
            codec, crf, qscale = "mpeg4", None, int(rng.integers(2, 13))
    if codec == "libx264" and not _has_libx264():
        codec, qscale, crf = "mpeg4", max(2, min(31, round((crf or 20) / 4))), None

    return ClipParams(
        label=c, size=S, shape=shape, polygon=poly, centers=centers, scales=scales, angles=angles,
        fg=fg, bg=bg, noise_std=noise_std, noise_mono=noise_mono, noise_seed=noise_seed,
        antialias=antialias, supersample=supersample, anchor=k, codec=codec, crf=crf, qscale=qscale,
        preset=preset, extra=extra,
    )


# ----------------------------------------------------------------------------------------- rendering


def shape_vertices(p: ClipParams, t: int) -> np.ndarray:
    """Polygon vertices of frame ``t`` in continuous pixel coordinates (x right, y down)."""
    a = p.angles[t]
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return (p.polygon * p.scales[t]) @ rot.T + p.centers[t]


def _coverage_u8(p: ClipParams) -> np.ndarray:
    S, ss, T = p.size, p.supersample, p.frames
    line = cv2.LINE_AA if p.antialias else cv2.LINE_8
    mult = float(1 << _VERTEX_SHIFT)
    cov = np.zeros((T, S, S), np.uint8)
    for t in range(T):
        v = shape_vertices(p, t)
        # Draw only the shape's bounding box (+1 px for LINE_AA), at ss x resolution.
        (x0, y0), (x1, y1) = np.floor(v.min(0)) - 1, np.ceil(v.max(0)) + 1
        x0, y0, x1, y1 = max(0, int(x0)), max(0, int(y0)), min(S, int(x1)), min(S, int(y1))
        if x1 <= x0 or y1 <= y0:
            continue
        # continuous coordinate x -> cv2 pixel-centre coordinate x * ss - 0.5, in 1/64 px fixed point
        pts = np.round(((v - (x0, y0)) * ss - 0.5) * mult).astype(np.int32)
        img = np.zeros(((y1 - y0) * ss, (x1 - x0) * ss), np.uint8)
        cv2.fillPoly(img, [pts], 255, lineType=line, shift=_VERTEX_SHIFT)
        if ss > 1:
            img = cv2.resize(img, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)  # box mean
        cov[t, y0:y1, x0:x1] = img
    return cov


def render_coverage(p: ClipParams) -> np.ndarray:
    """Foreground coverage (T, H, W) float32 in [0, 1] of the clip's shape, as drawn (before colour/noise)."""
    return _coverage_u8(p).astype(np.float32) * np.float32(1.0 / 255.0)


def render_params(p: ClipParams, noise: bool = True) -> np.ndarray:
    """Render a clip (T, H, W, 3) uint8 RGB from its parameters (``noise=False``: clean frames)."""
    bg = np.asarray(p.bg, np.float32)
    ramp = np.arange(256, dtype=np.float32)[:, None] * np.float32(1.0 / 255.0)
    lut = bg + ramp * (np.asarray(p.fg, np.float32) - bg)  # coverage (0..255) -> RGB
    img = np.take(lut, _coverage_u8(p), axis=0)
    if noise and p.noise_std > 0:
        nrng = np.random.default_rng(p.noise_seed)
        shape = img.shape[:-1] + (1,) if p.noise_mono else img.shape
        n = nrng.standard_normal(shape, dtype=np.float32)
        n *= np.float32(p.noise_std)
        img += n
    np.rint(img, out=img)
    np.clip(img, 0, 255, out=img)
    return img.astype(np.uint8)


def render_clip(label, rng: np.random.Generator, frames: int = 16, size: int = 64,
                randomize: bool = True) -> np.ndarray:
    """One clip of class ``label`` (name or index): (frames, size, size, 3) uint8 RGB, uncompressed."""
    return render_params(sample_params(label, rng, frames=frames, size=size, randomize=randomize))


# ------------------------------------------------------------------------------------------- video io


def _frame_chunks(frames):
    """(T, H, W, 3) uint8 arrays: ``frames`` itself when it is one array (or a list of frames), else each
    chunk of an iterator of such arrays, checked as it comes."""
    if isinstance(frames, (np.ndarray, list, tuple)):
        frames = [frames]
    for chunk in frames:
        chunk = np.asarray(chunk)
        if chunk.ndim != 4 or chunk.shape[-1] != 3 or chunk.dtype != np.uint8:
            raise ValueError(f"frames must be (T, H, W, 3) uint8, got {chunk.shape} {chunk.dtype}")
        yield chunk


# x264's macroblock-tree rate control is off: with it, single-threaded libx264 wrote different bytes for
# the same frames within one process (30 encodes of one clip: 2-5 distinct streams) on AVX-512 CPUs. The
# variation goes away with x264 limited to AVX2 (`asm=AVX2`) or with `mbtree=0`, and nothing else tried
# removed it (lookahead threads, sliced threads, `threads=1`): x264's AVX-512 macroblock-tree code path is
# not deterministic here. Without it the stream is the same on every run, on AVX-512 and AVX2 (the same
# bytes), on any core count. (x264 limited to SSE2 writes other bytes, so files are reproducible on one
# machine, not necessarily across instruction sets.)
X264_REPRODUCIBLE_PARAMS = "mbtree=0"


def _encode(target, frames, fps, codec, crf, qscale, bitrate, preset) -> None:
    import av

    chunks = _frame_chunks(frames)
    first = next(chunks, None)
    if first is None:
        raise ValueError("no frames to write")
    T, H, W, _ = first.shape
    if H % 2 or W % 2:
        raise ValueError("yuv420p needs even height and width")
    if codec is None:
        codec = "libx264" if _has_libx264() else "mpeg4"
    # A file gets its index (moov) before the data (faststart): it then decodes as a stream, e.g. over HTTP
    # from a server without Range requests. The muxer rewrites the file for that, which a memory buffer
    # cannot take.
    options = {"movflags": "faststart"} if isinstance(target, (str, os.PathLike)) else {}
    with av.open(target, mode="w", format="mp4", options=options) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        cc = stream.codec_context
        cc.thread_count = 1  # frame/slice threads would make the bytes depend on the core count
        opts = {}
        if codec == "libx264":
            if bitrate is None:
                opts["crf"] = str(20 if crf is None else crf)
            opts["preset"] = preset or "veryfast"
            opts["x264-params"] = X264_REPRODUCIBLE_PARAMS
        elif bitrate is None:
            q = 4 if qscale is None else int(qscale)
            opts["qmin"] = opts["qmax"] = str(q)
        if bitrate is not None:
            cc.bit_rate = int(bitrate)
        cc.options = opts
        conv = _reformatter()
        chunk = first
        while chunk is not None:
            if chunk.shape[1:] != (H, W, 3):
                raise ValueError(f"frame size changes from {H}x{W} to {chunk.shape[1]}x{chunk.shape[2]}")
            for f in chunk:
                frame = conv.reformat(av.VideoFrame.from_ndarray(f, format="rgb24"), format="yuv420p", threads=1)
                for packet in stream.encode(frame):
                    container.mux(packet)
            chunk = next(chunks, None)
        for packet in stream.encode():
            container.mux(packet)


def write_video(path, frames: np.ndarray, fps: int = 8, codec: str | None = None, crf: int | None = None,
                qscale: int | None = None, bitrate: int | None = None, preset: str | None = None) -> Path:
    """Write RGB frames (T, H, W, 3) uint8 to an .mp4 (yuv420p), atomically.

    ``frames`` may also be an iterator of such arrays (chunks), encoded as they come, so a long video never
    sits in memory whole.

    ``codec``: 'libx264' (default if available) or 'mpeg4' (default otherwise).  Quality: ``crf`` for libx264
    (default 20), ``qscale`` (fixed quantiser 1-31, default 4) for mpeg4, or ``bitrate`` (bits/s) for either,
    which then overrides crf/qscale.  ``preset``: x264 preset (default 'veryfast').
    Frames are converted to yuv420p (BT.601, limited range) by FFmpeg's swscale, as ``read_video`` inverts.
    The file is written under a temporary name in the same folder and renamed into place.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        _encode(str(tmp), frames, fps, codec, crf, qscale, bitrate, preset)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def encode_video(frames: np.ndarray, fps: int = 8, codec: str | None = None, crf: int | None = None,
                 qscale: int | None = None, bitrate: int | None = None, preset: str | None = None) -> bytes:
    """Like :func:`write_video` but returns the mp4 bytes."""
    buf = io.BytesIO()
    _encode(buf, frames, fps, codec, crf, qscale, bitrate, preset)
    return buf.getvalue()


def read_video(source) -> np.ndarray:
    """Decode a video file path or mp4 bytes to (T, H, W, 3) uint8 RGB."""
    import av

    if isinstance(source, (bytes, bytearray, memoryview)):
        source = io.BytesIO(bytes(source))
    else:
        source = str(source)
    conv = _reformatter()
    with av.open(source) as container:
        frames = [conv.reformat(f, format="rgb24", threads=1).to_ndarray() for f in container.decode(video=0)]
    return np.stack(frames)


_local = threading.local()


def _reformatter():
    # A cached swscale context per thread: the same conversion as VideoFrame.reformat / to_ndarray(format=...),
    # which otherwise set up a new context for every frame (about 10x slower on 64x64 frames).  Callers pass
    # threads=1: a context with its own worker threads would hang a forked child (worker pools) that uses it.
    conv = getattr(_local, "reformatter", None)
    if conv is None:
        from av.video.reformatter import VideoReformatter

        conv = _local.reformatter = VideoReformatter()
    return conv


# ------------------------------------------------------------------------------------------- datasets


def _clip_rng(seed: int, label: int, index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(label), int(index)])


def _write_job(job):
    path, label, j, seed, frames, size, randomize, fps = job
    p = sample_params(label, _clip_rng(seed, label, j), frames=frames, size=size, randomize=randomize)
    write_video(path, render_params(p), fps=fps, **p.encode_kwargs())
    return str(path), label


def _array_job(job):
    i, seed, frames, size, randomize, compress = job
    label, j = i % len(CLASSES), i // len(CLASSES)
    p = sample_params(label, _clip_rng(seed, label, j), frames=frames, size=size, randomize=randomize)
    x = render_params(p)
    if compress:
        x = read_video(encode_video(x, **p.encode_kwargs()))
    return x


def _pool_map(fn, jobs, workers):
    if workers is None:
        workers = os.cpu_count() or 1
    workers = max(1, min(int(workers), len(jobs) // 8))  # >= 8 jobs per process
    if workers == 1:
        return [fn(j) for j in jobs]
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else None)
    with ctx.Pool(workers) as pool:
        return pool.map(fn, jobs, chunksize=max(1, len(jobs) // (workers * 8)))


def make_synthetic(out_dir, clips: int, seed: int, frames: int = 16, size: int = 64, randomize: bool = True,
                   fps: int = 8, workers: int | None = None) -> list[tuple[str, int]]:
    """Write a dataset of mp4 clips: ``out_dir/{class}/{class}_{j:05d}.mp4`` and ``out_dir/labels.txt``.

    ``clips`` is the requested total; every class gets ``ceil(clips / 8)`` clips (so the total is ``clips``
    rounded up to a multiple of 8 and the classes are exactly balanced).  Returns ``[(path, label_index)]``
    ordered by class then clip number.  Deterministic for a given ``seed`` (>= 0); existing files with the
    same names are overwritten.  ``workers``: processes (default: all CPUs; small jobs run in-process).
    """
    if clips < 1:
        raise ValueError("clips must be >= 1")
    out = Path(out_dir)
    per_class = -(-int(clips) // len(CLASSES))
    jobs = []
    for c, name in enumerate(CLASSES):
        (out / name).mkdir(parents=True, exist_ok=True)
        for j in range(per_class):
            jobs.append((str(out / name / f"{name}_{j:05d}.mp4"), c, j, seed, frames, size, randomize, fps))
    result = _pool_map(_write_job, jobs, workers)
    tmp = out / ".labels.txt.tmp"
    tmp.write_text("".join(f"{n}\n" for n in CLASSES))
    os.replace(tmp, out / "labels.txt")
    return result


def generate_arrays(n: int, seed: int, frames: int = 16, size: int = 64, randomize: bool = True,
                    compress: bool = False, workers: int | None = 1) -> tuple[np.ndarray, np.ndarray]:
    """``n`` clips in memory: ``x`` (n, frames, size, size, 3) uint8 RGB and ``y`` (n,) int64.

    Labels are interleaved, ``y[i] = i % 8``, so every prefix is balanced.  Clip ``i`` is the same clip as
    ``make_synthetic``'s clip ``i // 8`` of class ``i % 8`` with the same seed (before compression).
    ``compress=True`` round-trips each clip through its own codec settings in memory (PyAV), which
    reproduces the decoded content of the files ``make_synthetic`` writes; it is ~10x slower.
    Memory: 196 KiB per 16x64x64 clip.
    """
    jobs = [(i, seed, frames, size, randomize, compress) for i in range(int(n))]
    x = np.empty((int(n), int(frames), int(size), int(size), 3), np.uint8)
    for i, clip in enumerate(_pool_map(_array_job, jobs, workers)):
        x[i] = clip
    y = np.arange(int(n), dtype=np.int64) % len(CLASSES)
    return x, y


# ---------------------------------------------------------------------------------------- long videos

LONG_SEGMENT_S = (4.0, 20.0)  # the length of one motion segment, seconds
LONG_VIDEO_VERSION = "video_swin synthetic long video 1"
_LONG_STREAM = 1_000_000  # keeps the long-video random streams apart from the clips' [seed, label, j]


def long_video_segments(minutes: float, seed: int, fps: int = 8) -> list[tuple[int, int, int]]:
    """The layout of a long video: ``[(label, start_frame, end_frame), ...]`` (end exclusive), consecutive,
    covering exactly ``round(minutes * 60 * fps)`` frames.

    Lengths are uniform in whole frames between 4 and 20 s (:data:`LONG_SEGMENT_S`); the last segment takes
    what remains, which the draws keep inside the same range. Each label is uniform over the classes other
    than the previous segment's, so two neighbouring segments never share a label (they would be one
    segment to anyone watching).
    """
    total = int(round(float(minutes) * 60 * int(fps)))
    lo, hi = (int(round(s * int(fps))) for s in LONG_SEGMENT_S)
    if total < lo:
        raise ValueError(f"a long video needs at least {LONG_SEGMENT_S[0]:g} s, got {minutes} minutes")
    rng = np.random.default_rng([int(seed), _LONG_STREAM])
    lengths, remaining = [], total
    while remaining > hi:
        length = int(rng.integers(lo, min(hi, remaining - lo) + 1))
        lengths.append(length)
        remaining -= length
    lengths.append(remaining)
    segments, start, label = [], 0, None
    for length in lengths:
        choices = [c for c in range(len(CLASSES)) if c != label]
        label = int(choices[int(rng.integers(len(choices)))])
        segments.append((label, start, start + length))
        start += length
    return segments


def _wrap(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return lo + np.mod(x - lo, hi - lo)


def segment_params(label, frames: int, rng: np.random.Generator, size: int = 64) -> ClipParams:
    """One motion segment of ``frames`` frames: a clip's appearance and motion (:func:`sample_params`,
    randomised) carried on for the whole segment.

    A moving shape cannot go on for 20 s inside the frame at the clips' speeds, so it wraps around: when it
    reaches the frame's margin it re-enters at the opposite one. Growth and shrinking stay within the
    clips' size limits: the rate, from the clips' range, is capped so that the segment fits, as
    :func:`sample_params` caps a clip's factor; a segment too long for the slowest rate wraps from the
    largest size to the smallest (growing) or back. Rotation needs no limit. Shape, colours, background,
    noise, speed, turn rate and growth rate stay the same in a segment.
    """
    c = label_index(label)
    base = sample_params(c, rng, frames=16, size=size, randomize=True)
    u = size / 64.0
    t = np.arange(int(frames), dtype=np.float64)
    k = base.anchor
    centers = np.tile(base.centers[k], (len(t), 1))
    scales = np.full(len(t), base.scales[k])
    angles = np.full(len(t), base.angles[k])
    if c in _DIRECTIONS:
        d = np.array(_DIRECTIONS[c])
        axis = 0 if d[0] else 1
        margin = 4.0 * u
        centers[:, axis] = _wrap(centers[0, axis] + d[axis] * base.extra["speed"] * t, margin, size - margin)
    elif c in (4, 5):
        angles = base.angles[k] + np.deg2rad(base.extra["omega_deg"]) * t
    else:
        # As sample_params caps a clip's growth factor so that every frame stays within the size limits, the
        # rate (drawn from the clips' range) is capped so that the whole segment does; only segments too long
        # for even the slowest rate (about 18 s at 8 fps) wrap.
        grow = c == 6
        s_min, s_max = (v * u for v in _SIZE_LIMITS)
        room = math.log(s_max / s_min)
        span = base.frames - 1
        lo, hi = math.log(math.sqrt(GROWTH_RANGE[0])) / span, math.log(GROWTH_RANGE[1]) / span
        cap = room / max(1, len(t) - 1)
        rate = math.exp(rng.uniform(math.log(lo), math.log(max(lo, min(hi, cap)))))
        spare = max(0.0, room - rate * (len(t) - 1))
        offset = rng.uniform(0.0, spare)
        if grow:
            log_scales = math.log(s_min) + offset + rate * t
        else:
            log_scales = math.log(s_max) - offset - rate * t
        scales = np.exp(_wrap(log_scales, math.log(s_min), math.log(s_max)))
    if np.array_equal(base.centers, np.round(base.centers)):  # the clip drew whole-pixel positions
        centers = np.round(centers)
    return replace(base, centers=centers, scales=scales, angles=angles)


def long_video_chunks(segments, seed: int, size: int = 64):
    """The frames of each segment of ``segments`` (from :func:`long_video_segments`), one array per segment."""
    for k, (label, start, end) in enumerate(segments):
        rng = np.random.default_rng([int(seed), _LONG_STREAM, k + 1])
        yield render_params(segment_params(label, end - start, rng, size=size))


def long_video_truth(segments, fps: int, video_id: str, **generator) -> dict:
    """The ground truth in ActivityNet's annotation format (``database``), segments in seconds."""
    total = segments[-1][2]
    return {
        "version": LONG_VIDEO_VERSION,
        "database": {
            video_id: {
                "subset": "testing",
                "duration": total / fps,
                "fps": fps,
                "frames": total,
                "annotations": [
                    {"label": CLASSES[label], "segment": [start / fps, end / fps], "frames": [start, end]}
                    for label, start, end in segments
                ],
            }
        },
        "generator": {"fps": fps, **generator},
    }


def make_long_video(out, minutes: float, seed: int, size: int = 64, fps: int = 8) -> tuple[Path, Path]:
    """Write a video of consecutive motion segments and its ground truth beside it.

    ``out`` (an .mp4) holds :func:`long_video_segments`'s segments rendered by :func:`segment_params`,
    encoded as they are rendered (libx264 CRF 20); ``out`` with the suffix ``.json`` holds the truth in
    ActivityNet's annotation format, keyed by the file's stem (:func:`long_video_truth`). Both written
    atomically; deterministic for a seed. Returns ``(video_path, truth_path)``.
    """
    from video_swin import files

    out = Path(out)
    if out.suffix.lower() != ".mp4":
        raise ValueError(f"the long video is an .mp4 file, got {out}")
    if size % 2 or size < 16:
        raise ValueError(f"size must be even and at least 16, got {size}")
    segments = long_video_segments(minutes, seed, fps)
    truth = long_video_truth(segments, fps, out.stem, seed=int(seed), minutes=float(minutes), size=int(size))
    write_video(out, long_video_chunks(segments, seed, size), fps=fps)
    truth_path = out.with_suffix(".json")
    files.atomic_write_text(truth_path, json.dumps(truth, indent=1) + "\n")
    return out, truth_path


# ------------------------------------------------------------------------------------------------ cli


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("out", nargs="?", help="output folder (one sub-folder per class, plus labels.txt)")
    parser.add_argument("--clips", type=int, default=800,
                        help="total clips, rounded up to a multiple of 8 (default 800)")
    parser.add_argument("--seed", type=int, default=0, help="random seed, >= 0 (default 0)")
    parser.add_argument("--frames", type=int, default=16, help="frames per clip (default 16)")
    parser.add_argument("--size", type=int, default=64, help="frame height and width, even (default 64)")
    parser.add_argument("--fps", type=int, default=8, help="frame rate written to the files (default 8)")
    parser.add_argument("--no-randomize", dest="randomize", action="store_false",
                        help="canonical mode: 4 basic shapes, fixed noise/antialiasing/CRF 20")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all CPUs)")
    long = parser.add_argument_group("a long video instead of clips")
    long.add_argument("--long", metavar="OUT.mp4",
                      help="write one video of consecutive motion segments (4-20 s each) and its ground truth "
                           "(ActivityNet annotation format) as OUT.json beside it")
    long.add_argument("--minutes", type=float, default=3.0, help="length of the --long video (default 3)")
    return parser


def run(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    if (args.out is None) == (args.long is None):
        raise ValueError("give an output folder for clips, or --long OUT.mp4 for one long video (not both)")
    if args.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {args.seed}")
    if args.long:
        video, truth = make_long_video(args.long, minutes=args.minutes, seed=args.seed, size=args.size, fps=args.fps)
        segments = json.loads(truth.read_text())["database"][video.stem]["annotations"]
        print(f"wrote {video} ({args.minutes:g} min, {len(segments)} segments) and its ground truth {truth} "
              f"in {time.perf_counter() - t0:.1f}s")
        return 0
    items = make_synthetic(args.out, clips=args.clips, seed=args.seed, frames=args.frames, size=args.size,
                           randomize=args.randomize, fps=args.fps, workers=args.workers)
    print(f"wrote {len(items)} clips ({len(items) // len(CLASSES)} per class) to {args.out} "
          f"in {time.perf_counter() - t0:.1f}s")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="video-swin make-synthetic",
                                     description="Write a synthetic 8-class motion video dataset.")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
