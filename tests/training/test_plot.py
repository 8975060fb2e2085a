"""OUT/training.png: each epoch's loss and top-1 is drawn where matplotlib's own axes put that value, in
the colour of its series; missing values leave gaps; the legend names the best validation epoch."""

import matplotlib.colors
import matplotlib.image
import numpy as np

from video_swin import plotting
from video_swin.training import plot

# Train is better than validation at every epoch, so the curves never cross and no marker hides another.
TRAIN_LOSS = [2.0, 1.6, 1.3, 1.05, 0.85, 0.7, 0.6, 0.5]
VAL_LOSS = [2.3, 2.0, 1.8, 1.65, 1.55, 1.5, 1.52, 1.6]
TRAIN_TOP1 = [0.30, 0.45, 0.58, 0.68, 0.76, 0.82, 0.87, 0.90]
VAL_TOP1 = [0.20, 0.31, 0.40, 0.47, 0.52, 0.55, 0.55, 0.54]


def _history(validation=True):
    history = []
    for i in range(len(TRAIN_LOSS)):
        entry = {"epoch": i + 1, "step": 25 * (i + 1), "train_loss": TRAIN_LOSS[i], "train_top1": TRAIN_TOP1[i]}
        if validation:
            entry.update(val_loss=VAL_LOSS[i], val_top1=VAL_TOP1[i], val_top5=1.0)
        history.append(entry)
    return history


def _rgb(colour):
    return np.array(matplotlib.colors.to_rgb(colour))


def _pixels_of(image, colour, tol=0.03):
    return np.all(np.abs(image[..., :3] - _rgb(colour)) < tol, axis=-1)


def _saved(fig, path):
    """Saves `fig` (which lays it out, so its transforms are those of the file) and reads the PNG back."""
    plotting.save_png(fig, path)
    return matplotlib.image.imread(path)


def _has_colour_near(image, xy, colour, radius=1):
    col, row = int(round(xy[0])), int(round(image.shape[0] - xy[1]))  # display y grows upwards
    patch = image[row - radius: row + radius + 1, col - radius: col + radius + 1]
    return bool(_pixels_of(patch, colour).any())


def test_each_value_is_drawn_where_the_axes_put_it_in_its_series_colour(tmp_path):
    fig = plot.history_figure(_history())
    image = _saved(fig, tmp_path / "training.png")
    assert image.shape[:2] == (plot.HEIGHT, plot.WIDTH)
    loss_ax, top1_ax = fig.axes[:2]
    checked = 0
    for ax, series in ((loss_ax, [(TRAIN_LOSS, plot.TRAIN_COLOUR), (VAL_LOSS, plot.VAL_COLOUR)]),
                       (top1_ax, [([100 * v for v in TRAIN_TOP1], plot.TRAIN_COLOUR),
                                  ([100 * v for v in VAL_TOP1], plot.VAL_COLOUR)])):
        legend_box = ax.get_legend().get_window_extent()
        for values, colour in series:
            other = plot.VAL_COLOUR if colour == plot.TRAIN_COLOUR else plot.TRAIN_COLOUR
            for epoch, value in enumerate(values, start=1):
                xy = ax.transData.transform((epoch, value))
                if legend_box.contains(*xy):
                    continue  # hidden under the legend
                assert _has_colour_near(image, xy, colour), (ax.get_title(), colour, epoch, value)
                assert not _has_colour_near(image, xy, other, radius=0), (ax.get_title(), colour, epoch)
                checked += 1
    assert checked >= 28  # at most a few markers fall under a legend


def test_panels_are_labelled_and_the_legend_names_the_best_validation_epoch(tmp_path):
    fig = plot.history_figure(_history())
    plotting.save_png(fig, tmp_path / "training.png")
    loss_ax, top1_ax = fig.axes[:2]
    assert (loss_ax.get_title(), loss_ax.get_xlabel(), loss_ax.get_ylabel()) == ("Loss", "epoch", "cross-entropy")
    assert (top1_ax.get_title(), top1_ax.get_xlabel(), top1_ax.get_ylabel()) == \
        ("Top-1 accuracy", "epoch", "top-1 (%)")
    assert [t.get_text() for t in loss_ax.get_legend().get_texts()] == ["train", "validation (best 1.5 at epoch 6)"]
    # 55% at epochs 6 and 7: the first is named
    assert [t.get_text() for t in top1_ax.get_legend().get_texts()] == \
        ["train", "validation (best 55.0% at epoch 6)"]
    assert list(top1_ax.get_yticks()) == [0, 20, 40, 60, 80, 100]
    assert fig.get_suptitle() == "Training: 8 epochs, 200 steps"


def test_without_validation_only_the_train_curves_are_drawn(tmp_path):
    with_val = _saved(plot.history_figure(_history()), tmp_path / "with.png")
    fig = plot.history_figure(_history(validation=False))
    image = _saved(fig, tmp_path / "without.png")
    assert _pixels_of(with_val, plot.VAL_COLOUR).sum() > 500
    assert _pixels_of(image, plot.VAL_COLOUR).sum() == 0
    assert _pixels_of(image, plot.TRAIN_COLOUR).sum() > 500
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["train"]


def test_a_missing_value_leaves_a_gap_instead_of_a_joined_line(tmp_path):
    history = _history(validation=False)
    history[3]["train_loss"] = None  # epoch 4
    fig = plot.history_figure(history)
    image = _saved(fig, tmp_path / "gap.png")
    ax = fig.axes[0]
    # Where a line from epoch 3 to epoch 5 would pass, and where the joined-up epoch-4 value would sit.
    joined = ax.transData.transform((4, (TRAIN_LOSS[2] + TRAIN_LOSS[4]) / 2))
    assert not _has_colour_near(image, joined, plot.TRAIN_COLOUR, radius=2)
    assert _has_colour_near(image, ax.transData.transform((5, TRAIN_LOSS[4])), plot.TRAIN_COLOUR)
    # the same history with the value present does draw there
    history[3]["train_loss"] = (TRAIN_LOSS[2] + TRAIN_LOSS[4]) / 2
    fig = plot.history_figure(history)
    image = _saved(fig, tmp_path / "full.png")
    assert _has_colour_near(image, fig.axes[0].transData.transform((4, history[3]["train_loss"])),
                            plot.TRAIN_COLOUR)


def test_plot_history_writes_the_png_of_a_single_epoch(tmp_path):
    path = tmp_path / "out" / "training.png"
    assert plot.plot_history(_history()[:1], path) == str(path)
    image = matplotlib.image.imread(path)
    assert image.shape[:2] == (plot.HEIGHT, plot.WIDTH)
    assert _pixels_of(image, plot.TRAIN_COLOUR).sum() > 20 and _pixels_of(image, plot.VAL_COLOUR).sum() > 20
    assert sorted(p.name for p in path.parent.iterdir()) == ["training.png"]
