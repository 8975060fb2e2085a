"""Figures saved as PNG files, for every picture the package draws (training curves, timelines, heat maps).

pyplot is never imported: it keeps process-wide state (the backend `matplotlib.use` chose, the current
figure, open windows), and a library must leave a user's matplotlib as it found it. A `Figure` on its own
`FigureCanvasAgg` needs no display and no backend switch. Figures are built and saved under matplotlib's
default style, so a user's matplotlibrc (dark styles, `savefig.bbox: tight`, another dpi) does not change
our pictures' look or pixel size.
"""

from __future__ import annotations

import contextlib

import matplotlib.style
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from video_swin import files


@contextlib.contextmanager
def figure(width_px: int, height_px: int, dpi: int = 100):
    """Yields an empty `Figure` of `width_px` x `height_px` pixels (constrained layout) on an Agg canvas;
    draw on it inside the block, where matplotlib's default style is in force."""
    with matplotlib.style.context("default"):
        fig = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi, layout="constrained")
        FigureCanvasAgg(fig)
        yield fig


def save_png(fig: Figure, path) -> str:
    """Writes `fig` to `path` as a PNG of exactly its pixel size, atomically; returns the path."""
    with matplotlib.style.context("default"), files.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=fig.dpi)
        files.sync_to_disk(tmp)
    return str(path)
