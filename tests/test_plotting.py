"""`video_swin.plotting`: figures of an exact pixel size, saved atomically, without pyplot, untouched by a
user's matplotlib settings and leaving them as they were."""

import subprocess
import sys
import textwrap

import matplotlib.figure
import matplotlib.image
import numpy as np
import pytest

from video_swin import plotting


def _figure():
    with plotting.figure(320, 200) as fig:
        fig.subplots().plot([0, 1, 2], [0, 1, 0], color="red")
    return fig


def test_save_png_writes_the_figure_at_its_pixel_size(tmp_path):
    path = plotting.save_png(_figure(), tmp_path / "sub" / "f.png")
    image = matplotlib.image.imread(path)
    assert image.shape == (200, 320, 4)
    red = np.all(np.abs(image[..., :3] - [1, 0, 0]) < 0.05, axis=-1)
    assert red.sum() > 100


def test_a_failed_save_leaves_the_old_file_and_no_debris(tmp_path, monkeypatch):
    path = tmp_path / "f.png"
    plotting.save_png(_figure(), path)
    before = path.read_bytes()

    def half_written(self, fname, **kwargs):
        with open(fname, "wb") as f:
            f.write(b"\x89PNG half")
        raise OSError("disk full")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", half_written)
    with pytest.raises(OSError, match="disk full"):
        plotting.save_png(_figure(), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["f.png"]


def test_user_settings_neither_change_our_pictures_nor_are_changed(tmp_path):
    """In a fresh process whose user chose the SVG backend, transparent 30-dpi saves and a black style."""
    code = textwrap.dedent(f"""
        import sys
        import matplotlib
        matplotlib.use("svg")
        matplotlib.rcParams.update({{"savefig.transparent": True, "savefig.dpi": 30, "savefig.bbox": "tight",
                                    "figure.facecolor": "black"}})
        before = dict(matplotlib.rcParams)
        import matplotlib.image
        from video_swin import plotting
        from video_swin.training.plot import plot_history
        plot_history([{{"epoch": 1, "train_loss": 1.0, "train_top1": 0.5}}], {str(tmp_path / "t.png")!r})
        image = matplotlib.image.imread({str(tmp_path / "t.png")!r})
        assert image.shape[:2] == (400, 1000), image.shape
        assert image[..., 3].min() == 1.0 and image[0, 0, :3].tolist() == [1.0, 1.0, 1.0]
        assert matplotlib.get_backend() == "svg"
        assert dict(matplotlib.rcParams) == before
        assert "matplotlib.pyplot" not in sys.modules
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
