"""An independent second generator of the eight synthetic motion classes, for checking that a model
trained on `video_swin.data.synthetic` learned the motions and not that generator's look.

Nothing is shared with `synthetic.py` except the class names and their definitions (direction, speed
1-3 px/frame, rotation 5-15 deg/frame clockwise on screen, linear size x1.5-2.5 over the clip). Different:

* drawing: plain numpy rasterisation on a 4x supersampled grid (inside-tests per pixel centre, then a
  4x4 box mean), no OpenCV;
* shapes: ellipses (axis ratio 0.35-0.7), five- and six-pointed stars, crosses with unequal arms, and
  "keyholes" (a disc on a bar); none of them is in synthetic.py;
* background: a random solid colour, as the dataset is described, but the foreground must differ from it by
  an L1 distance >= 150 (synthetic.py: luma and RGB-distance thresholds); `background="gradient"`
  instead draws a linear gradient between two random colours in a random direction, which is outside
  the description: a stress test of how far the model carries beyond what it was trained on;
* noise: uniform, per pixel, amplitude 0-20 (synthetic.py: Gaussian), and no video compression;
* positions: the shape's path is centred in the frame (synthetic.py: laid out from an anchor frame).
"""

from __future__ import annotations

import math

import numpy as np

from video_swin.data.synthetic import CLASSES

SUPERSAMPLE = 4


def _star(points, inner):
    ang = np.arange(2 * points) * math.pi / points - math.pi / 2
    r = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return np.stack([r * np.cos(ang), r * np.sin(ang)], axis=1)


def _inside_polygon(px, py, poly):
    """Even-odd rule, vectorised over pixel coordinates."""
    inside = np.zeros(px.shape, bool)
    x0, y0 = poly[-1]
    for x1, y1 in poly:
        crosses = (y1 > py) != (y0 > py)
        with np.errstate(divide="ignore", invalid="ignore"):
            xint = x0 + (py - y0) * (x1 - x0) / (y1 - y0)
        inside ^= crosses & (px < xint)
        x0, y0 = x1, y1
    return inside


def _shape_mask(kind, params, u, v):
    """Inside-test in the shape's own coordinates (u, v), unit size = half the shape's extent."""
    if kind == "ellipse":
        return (u / 1.0) ** 2 + (v / params["ratio"]) ** 2 <= 1.0
    if kind == "star":
        return _inside_polygon(u, v, _star(params["points"], params["inner"]))
    if kind == "cross":
        a, b, w = params["long"], params["short"], params["width"]
        return ((np.abs(u) <= a) & (np.abs(v) <= w)) | ((np.abs(v) <= b) & (np.abs(u) <= w))
    if kind == "keyhole":
        disc = u**2 + (v + 0.45) ** 2 <= 0.55**2
        bar = (np.abs(u) <= 0.22) & (v >= -0.45) & (v <= 1.0)
        return disc | bar
    raise ValueError(kind)


BACKGROUNDS = ("solid", "gradient")


def render(label: int, rng: np.random.Generator, frames: int = 16, size: int = 64,
           background: str = "solid", return_mask: bool = False):
    """One clip (frames, size, size, 3) uint8 of class `label` (an index into CLASSES).

    `return_mask=True` also returns the shape's mask (frames, size, size) bool: the pixels at least half
    covered by the shape. The clip's pixels are the same either way (the mask draws no random numbers).
    """
    if background not in BACKGROUNDS:
        raise ValueError(f"background must be one of {BACKGROUNDS}, not {background!r}")
    s = size / 64.0
    kind = rng.choice(["ellipse", "star", "cross", "keyhole"])
    params = {"ratio": rng.uniform(0.35, 0.7), "points": int(rng.choice([5, 6])), "inner": rng.uniform(0.4, 0.55),
              "long": 1.0, "short": rng.uniform(0.45, 0.75), "width": rng.uniform(0.2, 0.32)}
    t = np.arange(frames, dtype=np.float64) - (frames - 1) / 2.0  # centred time
    half = rng.uniform(5.0, 11.0) * s  # half extent in px (size 10-22 px)
    theta0 = rng.uniform(0, 2 * math.pi)
    centre = np.array([size / 2.0, size / 2.0]) + rng.uniform(-6, 6, 2) * s
    scales = np.full(frames, half)
    angles = np.full(frames, theta0)
    centres = np.tile(centre, (frames, 1))
    if label < 4:
        direction = {0: (-1, 0), 1: (1, 0), 2: (0, -1), 3: (0, 1)}[label]
        speed = rng.uniform(1.0, 3.0) * s
        room = (size / 2.0 - 8 * s) / ((frames - 1) / 2.0)  # keep the centre 8 px inside at both ends
        speed = min(speed, max(room, 1.0 * s))
        centres = np.array([size / 2.0, size / 2.0]) + np.outer(t, np.asarray(direction) * speed)
        # a random offset across the motion only
        perp = 1 - np.abs(np.asarray(direction))
        centres = centres + perp * rng.uniform(-10, 10) * s
    elif label < 6:
        omega = math.radians(rng.uniform(5.0, 15.0)) * (1 if label == 4 else -1)  # + = clockwise (y down)
        angles = theta0 + omega * t
    else:
        factor = rng.uniform(1.5, 2.5)
        small = rng.uniform(4.0, 7.0) * s
        ratio = factor ** (np.arange(frames) / (frames - 1))
        scales = small * (ratio if label == 6 else ratio[::-1])
    # background (gradient from c0 to c1, or c0 alone), foreground colour with contrast
    c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    if background == "solid":
        c1 = c0
    while True:
        fg = rng.integers(0, 256, 3)
        if min(np.abs(fg - c0).sum(), np.abs(fg - c1).sum()) >= 150:
            break
    gdir = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    g = ((xx - size / 2) * math.cos(gdir) + (yy - size / 2) * math.sin(gdir)) / size + 0.5
    background = c0 + np.clip(g, 0, 1)[..., None] * (c1 - c0)
    ss = SUPERSAMPLE
    sy, sx = (np.mgrid[0 : size * ss, 0 : size * ss] + 0.5) / ss
    noise_amp = rng.uniform(0, 20)
    out = np.empty((frames, size, size, 3), np.uint8)
    mask = np.empty((frames, size, size), bool)
    for f in range(frames):
        dx, dy = sx - centres[f, 0], sy - centres[f, 1]
        ca, sa = math.cos(angles[f]), math.sin(angles[f])
        # inverse rotation into the shape's frame (screen rotation by +angle is clockwise with y down)
        u = (ca * dx + sa * dy) / scales[f]
        v = (-sa * dx + ca * dy) / scales[f]
        cover = _shape_mask(kind, params, u, v).reshape(size, ss, size, ss).mean(axis=(1, 3))
        mask[f] = cover >= 0.5
        img = background + cover[..., None] * (fg - background)
        img = img + rng.uniform(-noise_amp, noise_amp, img.shape)
        out[f] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return (out, mask) if return_mask else out


def generate(n: int, seed: int, frames: int = 16, size: int = 64,
             background: str = "solid", return_masks: bool = False):
    """n clips with interleaved labels y[i] = i % 8 (the same shapes and motions for either background):
    (x, y), or (x, y, masks) with `return_masks=True` (masks (n, frames, size, size) bool, see `render`;
    x is the same either way)."""
    x = np.empty((n, frames, size, size, 3), np.uint8)
    y = np.arange(n, dtype=np.int64) % len(CLASSES)
    masks = np.empty((n, frames, size, size), bool)
    for i in range(n):
        x[i], masks[i] = render(int(y[i]), np.random.default_rng([int(seed), i, 77]), frames, size, background,
                                return_mask=True)
    return (x, y, masks) if return_masks else (x, y)
