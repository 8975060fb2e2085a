"""Backbone features per window of a video, for search, retrieval and temporal localisation.

Windows are :mod:`~video_swin.inference.timeline`'s (same placement, same single decode pass, same
memory bound); each window is the protocol's centre crop (one view) and goes through the backbone only
(a classifier preset's backbone, or a backbone-only preset such as ``convert --inflate`` writes):

* ``pool="mean"``: the mean over the backbone's output positions, ``(C,)`` per window; for a classifier
  preset this is exactly what its head reads (its pooling is the same mean);
* ``pool="none"``: the whole ``(T', H', W', C)`` map per window (``T' = ceil(clip_len / 2)``, ``H' = W' =
  crop / 32`` for the official patch size).

:func:`write_features` writes one ``.npy`` per video, shaped ``(windows,) + feature shape`` (float32),
rows appended as windows are scored (a long video's maps never sit in memory whole), a ``.json`` beside it
with the windows and the settings, and an index of every window of every video (``video``, ``file``,
``row``, ``window``, ``start_s``, ``end_s``, ``center_s``) as CSV or Parquet. A video whose ``.npy`` and
``.json`` are there with the same settings is skipped, so an interrupted run continues where it stopped.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np

from video_swin import files
from video_swin.data.preprocess import Protocol
from video_swin.inference.timeline import (
    DEFAULT_BATCH,
    TIME_DECIMALS,
    StreamStopped,
    _stopped_message,
    _WindowRunner,
    video_id_of,
)

POOLS = ("mean", "none")
INDEX_FORMATS = ("csv", "parquet")
INDEX_COLUMNS = ("video", "file", "row", "window", "start_s", "end_s", "center_s")
FORMAT_VERSION = 1


class FeatureExtractor:
    """A preset's backbone and protocol, loaded once, to extract features from many videos."""

    def __init__(self, preset, batch_size: int = DEFAULT_BATCH, jit_compile="auto"):
        from video_swin import runtime
        from video_swin.models.classifier import VideoSwinClassifier
        from video_swin.zoo.resolve import load_preset

        runtime.configure()
        self.preset = load_preset(preset)  # a Preset, a folder or a registered name
        model = self.preset.load_model()
        self.backbone = model.backbone if isinstance(model, VideoSwinClassifier) else model
        self.protocol = Protocol.from_dict(self.preset.preprocessing, views="1x1")
        self.runner = _WindowRunner(self.protocol, self.backbone, batch_size, jit_compile)

    @property
    def num_features(self) -> int:
        return self.backbone.num_features

    def extract(self, video, *, stride_s: float | None = None, pool: str = "mean", video_id: str | None = None,
                fps: float | None = None, format: str | None = None, on_window=None, keep: bool = True) -> dict:
        """See :func:`extract_features`. ``on_window(record, feature)`` gets each window as it is scored;
        ``keep=False`` does not collect the features (``features`` is then None)."""
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {', '.join(POOLS)}, got {pool!r}")
        kept = []

        def combine(rows):
            feature = np.asarray(rows[0], dtype=np.float32)
            return feature.mean(axis=(0, 1, 2)) if pool == "mean" else feature

        def emit(record, feature):
            if keep:
                kept.append(feature)
            if on_window is not None:
                on_window(record, feature)

        run = self.runner.run(video, combine, stride_s=stride_s, fps=fps, format=format, on_window=emit,
                              keep_outputs=False)
        result = {
            "video": video_id_of(video, video_id),
            "source": run.name,
            "preset": str(self.preset.path),
            "pool": pool,
            "fps": run.fps,
            "frames": run.frames,
            "duration_s": round(run.duration_s, TIME_DECIMALS),
            "window_s": round(run.plan.span_s, TIME_DECIMALS),
            "stride_s": round(run.plan.stride_s, TIME_DECIMALS),
            "windows": run.windows,
            "features": np.stack(kept) if keep and kept else (None if not keep else np.zeros((0,), np.float32)),
            "stopped": None,
            "timings": run.timings,
        }
        if run.stopped:
            result["stopped"] = {"at_s": round(run.duration_s, TIME_DECIMALS), "frame": run.frames, "reason": run.stopped}
            raise StreamStopped(_stopped_message(run), partial=result, at_s=run.duration_s)
        return result


def extract_features(video, preset, *, stride_s: float | None = None, pool: str = "mean",
                     batch_size: int = DEFAULT_BATCH, video_id: str | None = None, fps: float | None = None,
                     format: str | None = None, jit_compile="auto") -> dict:
    """Backbone features of each window of ``video``.

    ``video``: a path, ``"-"``, a URL or a binary file-like object (as :func:`~video_swin.timeline` takes).
    ``preset``: a preset folder (a classifier's or a backbone-only one), a loaded ``Preset`` or a
    :class:`FeatureExtractor` (load once, use for many videos). ``pool``: ``"mean"`` -> ``(C,)`` per window,
    ``"none"`` -> ``(T', H', W', C)``.

    Returns a dict of plain data: ``video``, ``fps``, ``frames``, ``duration_s``, ``window_s``, ``stride_s``,
    ``pool``, ``windows`` (``[{"window", "start_s", "end_s", "center_s"}]``), ``features`` (float32 array,
    ``(windows, C)`` or ``(windows, T', H', W', C)``), ``stopped`` (None), ``timings``. Raises
    :class:`~video_swin.inference.timeline.StreamStopped` with the partial result when the video ends early.
    """
    extractor = preset if isinstance(preset, FeatureExtractor) else FeatureExtractor(preset, batch_size, jit_compile)
    return extractor.extract(video, stride_s=stride_s, pool=pool, video_id=video_id, fps=fps, format=format)


# ----------------------------------------------------------------------------------- to a folder


class _NpyRows:
    """An .npy file written a row at a time: the header is written first with room for any row count and
    rewritten with the real count at the end."""

    def __init__(self, path):
        self.file = open(path, "wb")
        self.count = 0
        self.row_shape = None
        self.header_len = None

    def _header(self, count):
        header = repr({"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False,
                       "shape": (count,) + self.row_shape})
        return header

    def append(self, row):
        row = np.ascontiguousarray(row, dtype=np.float32)
        if self.row_shape is None:
            self.row_shape = tuple(int(d) for d in row.shape)
            longest = len(self._header(10**15))
            self.header_len = -(-(10 + longest + 1) // 64) * 64  # magic, version, length, dict, newline
            self.file.write(b"\0" * self.header_len)
        elif row.shape != self.row_shape:
            raise ValueError(f"feature shape changes from {self.row_shape} to {row.shape}")
        self.file.write(row.tobytes())
        self.count += 1

    def close(self):
        if self.row_shape is None:
            raise ValueError("no features to write")
        text = self._header(self.count).encode("latin1")
        text = text + b" " * (self.header_len - 10 - len(text) - 1) + b"\n"
        self.file.seek(0)
        self.file.write(b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text)
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()


def output_names(videos) -> list[str]:
    """The name of each video's files: its stem, with a short hash of its path when stems repeat."""
    stems = [Path(v).stem for v in videos]
    repeated = {s for s in stems if stems.count(s) > 1}
    return [
        f"{s}-{hashlib.sha1(os.path.abspath(v).encode()).hexdigest()[:8]}" if s in repeated else s
        for s, v in zip(stems, videos)
    ]


def video_settings(video, preset_path, stride_s, pool) -> dict:
    """What a video's features depend on, stored in its .json: a rerun with other values redoes it."""
    stat = os.stat(video)
    return {
        "format_version": FORMAT_VERSION,
        "video": os.fspath(video),
        "video_bytes": stat.st_size,
        "video_mtime_ns": stat.st_mtime_ns,
        "preset": os.path.realpath(preset_path),
        "pool": pool,
        "stride_s": stride_s,
    }


def saved_features(npy, meta, settings) -> dict | None:
    """The .json of a video's features written with these settings, or None (absent, unreadable, other)."""
    if not (npy.is_file() and meta.is_file()):
        return None
    try:
        saved = json.loads(meta.read_text())
    except ValueError:
        return None
    return saved if saved.get("settings") == settings else None


def write_features(videos, preset, out_dir, *, stride_s: float | None = None, pool: str = "mean",
                   batch_size: int = DEFAULT_BATCH, index: str = "csv", jit_compile="auto", on_video=None) -> dict:
    """Features of each video (paths) into ``out_dir``: ``<name>.npy``, ``<name>.json`` and the index
    (``index.csv`` or ``index.parquet``); see the module docstring. Videos already done with the same
    settings are skipped. A video that fails is reported and the others go on.

    ``on_video(video, status, detail)`` is called per video with status ``"written"``, ``"skipped"`` or
    ``"failed"``. Returns ``{"written": [...], "skipped": [...], "failed": [(video, message)], "index":
    path}``.
    """
    if pool not in POOLS:
        raise ValueError(f"pool must be one of {', '.join(POOLS)}, got {pool!r}")
    if index not in INDEX_FORMATS:
        raise ValueError(f"index must be one of {', '.join(INDEX_FORMATS)}, got {index!r}")
    if index == "parquet":
        _pyarrow()  # refuse before any work
    videos = [os.fspath(v) for v in videos]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    extractor = preset if isinstance(preset, FeatureExtractor) else FeatureExtractor(preset, batch_size, jit_compile)
    summary = {"written": [], "skipped": [], "failed": []}
    rows = []
    for video, name in zip(videos, output_names(videos)):
        npy, meta = out_dir / f"{name}.npy", out_dir / f"{name}.json"
        try:
            settings = video_settings(video, extractor.preset.path, stride_s, pool)
            saved = saved_features(npy, meta, settings)
            if saved is not None:
                status = "skipped"
            else:
                saved = _write_one(extractor, video, npy, meta, settings, stride_s, pool)
                status = "written"
        except Exception as exc:  # one failing video does not stop the others
            if os.environ.get("VIDEO_SWIN_DEBUG"):
                raise
            message = " ".join(str(exc).split()) or type(exc).__name__
            summary["failed"].append((video, message))
            if on_video is not None:
                on_video(video, "failed", message)
            continue
        summary[status].append(video)
        rows.extend(index_rows(video, npy.name, saved))
        if on_video is not None:
            on_video(video, status, saved)
    summary["index"] = str(write_index(rows, out_dir, index))
    return summary


def _write_one(extractor, video, npy, meta, settings, stride_s, pool) -> dict:
    with files.atomic_path(npy) as tmp:
        writer = _NpyRows(tmp)
        try:
            result = extractor.extract(video, stride_s=stride_s, pool=pool, keep=False,
                                       on_window=lambda record, feature: writer.append(feature))
            writer.close()
        except BaseException:
            writer.file.close()
            raise
    saved = {key: result[key] for key in ("video", "fps", "frames", "duration_s", "window_s", "stride_s", "pool", "windows")}
    saved["shape"] = [writer.count, *writer.row_shape]
    saved["settings"] = settings
    files.atomic_write_text(meta, json.dumps(saved, indent=1) + "\n")
    return saved


def _pyarrow():
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise RuntimeError("a Parquet index needs pyarrow: pip install 'video_swin[parquet]' (or use --index csv)") from None
    return pyarrow


def index_rows(video, file_name, saved) -> list[dict]:
    """The index's rows of one video: one per window of its saved .json."""
    return [{"video": video, "file": file_name, "row": i, **{k: w[k] for k in ("window", "start_s", "end_s", "center_s")}}
            for i, w in enumerate(saved["windows"])]


def write_index(rows, out_dir, index) -> Path:
    path = out_dir / f"index.{index}"
    if index == "csv":
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=INDEX_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        files.atomic_write_text(path, text.getvalue())
        return path
    pa = _pyarrow()
    table = pa.table({column: [row[column] for row in rows] for column in INDEX_COLUMNS},
                     schema=pa.schema([("video", pa.string()), ("file", pa.string()), ("row", pa.int64()),
                                       ("window", pa.int64()), ("start_s", pa.float64()), ("end_s", pa.float64()),
                                       ("center_s", pa.float64())]))
    with files.atomic_path(path) as tmp:
        pa.parquet.write_table(table, tmp)
    return path
