"""The training plot (OUT/training.png): loss and top-1 accuracy per epoch, train and validation."""

from __future__ import annotations

import math

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from video_swin import plotting

WIDTH, HEIGHT = 1000, 400  # pixels
TRAIN_COLOUR, VAL_COLOUR = "#1f77b4", "#ff7f0e"


def _column(history: list, key: str, scale: float = 1.0) -> list[float]:
    """The values of `key`, NaN where an epoch has none (no validation set, a resumed run's older entries):
    matplotlib leaves a gap there instead of drawing a made-up value."""
    out = []
    for entry in history:
        value = entry.get(key)
        out.append(math.nan if value is None else scale * float(value))
    return out


def _panel(ax, epochs, train, val, title, ylabel, better, fmt):
    """`better`: +1 where higher is better, -1 where lower is; the legend names the best validation epoch
    (the first of equals)."""
    ax.plot(epochs, train, "o-", color=TRAIN_COLOUR, markersize=4, label="train")
    if any(math.isfinite(v) for v in val):
        i = max((k for k, v in enumerate(val) if math.isfinite(v)), key=lambda k: better * val[k])
        ax.plot(epochs, val, "o-", color=VAL_COLOUR, markersize=4,
                label=f"validation (best {fmt(val[i])} at epoch {epochs[i]})")
    ax.set_title(title)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best")


def history_figure(history: list) -> Figure:
    """The figure of `plot_history`, for callers that draw on it further."""
    epochs = [int(h["epoch"]) for h in history]
    steps = history[-1].get("step") if history else None
    with plotting.figure(WIDTH, HEIGHT) as fig:
        loss_ax, top1_ax = fig.subplots(1, 2)
        _panel(loss_ax, epochs, _column(history, "train_loss"), _column(history, "val_loss"),
               "Loss", "cross-entropy", -1, "{:.4g}".format)
        _panel(top1_ax, epochs, _column(history, "train_top1", 100), _column(history, "val_top1", 100),
               "Top-1 accuracy", "top-1 (%)", +1, "{:.1f}%".format)
        top1_ax.set_ylim(-2, 102)  # whole markers at 0% and 100%
        top1_ax.set_yticks(range(0, 101, 20))
        n = len(history)
        fig.suptitle(f"Training: {n} epoch{'s' * (n != 1)}" + (f", {steps} steps" if steps is not None else ""))
    return fig


def plot_history(history: list, path) -> str:
    """Writes the two-panel PNG for a list of per-epoch dicts (epoch, train_loss, val_loss, train_top1,
    val_top1; a missing or None value is left out); returns the path."""
    return plotting.save_png(history_figure(history), path)
