"""A model over a whole video archive: in this process or on a Ray cluster, into a resumable output.

    video-swin classify ARCHIVE/ --preset NAME --engine ray --out results.parquet [--address auto]

The pipeline is generic over a per-video *task* (`BatchTask`; `ClassifyTask` is the one here)::

    paths --> decode + preprocess --> model --> regroup per video --> writer
              (CPU tasks:              (actor pool: each   (the driver: rows of one video
               task.decode, uint8       actor loads the     gathered, task.finish, parts
               views, one row per       model once; a       written atomically as they
               view)                    batch mixes the     complete)
                                        views of several
                                        videos)

On Ray (`engine="ray"`) the first two stages are Ray Data operators (`flat_map`, then `map_batches` over
a callable class in an `ActorPoolStrategy`; `build_dataset`); Ray Data streams blocks through them with backpressure,
so memory holds the blocks in flight, never the archive. The third stage runs in the driver, which is also
the only writer: it iterates the dataset's output as it is produced. Through Ray Client (`ray://`), where
Ray Data cannot drive a pipeline, an actor on the cluster (`Coordinator`) iterates and regroups, and this
process takes the finished rows and writes them. `engine="local"` runs the same three functions one video
after another in this process.

Views travel between the stages as uint8 pixels (the protocol's resized crops), normalised in the model
actor (`Protocol.normalize_views`, element-wise, so bit-identical to `VideoClassifier`'s float32 views):
a quarter of the object-store bytes and network traffic of float32.

Failure handling:

* a video that cannot be decoded becomes one row with `error` (one line); the run goes on;
* a model batch that raises is retried video by video inside the actor, so only the videos that fail on
  their own get an error row;
* a dead actor or decode worker: Ray restarts the actor and resubmits its tasks (Ray Data's defaults:
  `max_restarts=-1`, `max_task_retries=-1`, `max_retries=-1`); rows delivered twice by a retry are dropped by the driver,
  which keys views by (video, view index), so every video is written exactly once;
* a dead driver: the writer has kept complete videos in part files (`OUT.parts/part-RUN-SEQ.parquet`,
  each written atomically); a rerun with the same output skips every video found there or in OUT.

Output (`ParquetResults`): OUT is assembled from the parts (and the previous OUT, when a rerun adds to it)
atomically at the end of a run, one row per video, then the parts folder is removed. The settings of the
run (task, preset, views, top-k) are stored in the file's metadata; a rerun with other settings is refused
instead of mixing results.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from video_swin import files

EXTRA_HINT = "pip install 'video_swin[ray]'"
DEFAULT_ROWS_PER_PART = 500
DEFAULT_RAY_BATCH = 4  # views per model call on Ray when --batch is not given
DEFAULT_PART_INTERVAL_S = 60.0
# Videos per input block of the Ray dataset: a block is the unit a decode task takes (and retries). One
# video per block up to this many blocks, so small archives spread over every CPU; larger archives share.
MAX_INPUT_BLOCKS = 10_000
METADATA_KEY = b"video_swin"
TIMING_KEYS = ("decode_s", "preprocess_s", "model_s")


class BatchError(ValueError):
    """A batch run that cannot start or continue, explained in one line."""


def _one_line(exc) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _require(module, what):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise BatchError(f"{what} needs {module.split('.')[0]}: {EXTRA_HINT}") from None


# --------------------------------------------------------------------------------------------------------
# tasks
# --------------------------------------------------------------------------------------------------------


@dataclass
class DecodedVideo:
    """What `BatchTask.decode` returns for one video.

    views:   (N, *task.view_shape) uint8, the model's inputs before normalisation, N >= 1;
    columns: per-view values the task wants back in `finish` (name -> (N,) float64), e.g. each window's
             start_s / end_s; the names must be `task.view_columns`;
    timings: decode_s and preprocess_s of this video.
    """

    views: np.ndarray
    columns: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)


class BatchTask:
    """The per-video work of a batch run. Instances are pickled to Ray workers: hold plain data (no model,
    no TensorFlow objects); `load_model` builds the heavy part where it runs.

    Runs in the decode workers (must not import TensorFlow):
        view_shape: tuple             (T, C, C, 3) of one view
        view_columns: tuple[str]      per-view float columns that `decode` fills
        decode(path) -> DecodedVideo  raises for a video that cannot be used (its message is the row's error)

    Runs in each model actor, once:
        load_model(threads) -> callable(uint8 views (B, *view_shape)) -> (B, *output_shape) float64
        output_shape: tuple

    Runs in the driver:
        on_cluster()                  once connected to Ray, before the pipeline starts (e.g. put the
                                      model's files in the object store for the actors)
        settings() -> dict            recorded in the output; a rerun with different settings is refused
        finish(video, outputs, columns, timings) -> dict   one output row; outputs (N, *output_shape) and
                                      columns in view order
        error_row(video, message, timings) -> dict
        open_writer(out, settings, rows_per_part, part_interval_s) -> the writer: a context manager with
                                      done(retry_failed) -> videos to skip, add(row) for each row `finish`
                                      or `error_row` made, finalize(); `ParquetResults`, or a subclass
                                      whose add() expands a row (e.g. saves a video's features as .npy and
                                      adds one index row per window with `ParquetResults.add(*rows)`)
    """

    view_columns: tuple = ()

    def on_cluster(self):
        pass

    def settings(self) -> dict:
        raise NotImplementedError

    def decode(self, path) -> DecodedVideo:
        raise NotImplementedError

    def load_model(self, threads=None):
        raise NotImplementedError

    def finish(self, video, outputs, columns, timings) -> dict:
        raise NotImplementedError

    def error_row(self, video, message, timings) -> dict:
        raise NotImplementedError

    def open_writer(self, out, settings, rows_per_part=DEFAULT_ROWS_PER_PART, part_interval_s=DEFAULT_PART_INTERVAL_S):
        raise NotImplementedError


class ClassifyTask(BatchTask):
    """`VideoClassifier`'s work split in two: the protocol's views (decode workers) and the softmax of each
    view (model actors); `finish` averages the views' probabilities and keeps the top k, as
    `VideoClassifier.__call__` and `Result.top_k` do."""

    def __init__(self, preset, views=None, top_k=5, batch_size=1):
        from video_swin.data.preprocess import Protocol
        from video_swin.zoo import resolve as zoo_resolve

        loaded = zoo_resolve.load_preset(preset)
        if not loaded.config.get("num_classes"):
            raise BatchError(f"{loaded.path}: a backbone-only preset has no classes to rank")
        if int(top_k) < 1:
            raise BatchError(f"--top-k must be at least 1, got {top_k}")
        if int(batch_size) < 1:
            raise BatchError(f"batch size must be at least 1, got {batch_size}")
        protocol = Protocol.from_dict(loaded.preprocessing, views=views)
        self.preset_arg = str(preset)
        self.preset_path = str(loaded.path)
        self.protocol = protocol.to_dict()
        names = loaded.class_names or [f"class_{i}" for i in range(loaded.config["num_classes"])]
        self.class_names = list(names)
        self.top_k = int(top_k)
        self.batch_size = int(batch_size)
        self.view_shape = (protocol.clip_len, protocol.crop_size, protocol.crop_size, 3)
        self.output_shape = (len(self.class_names),)
        self.views = protocol.views
        self.preset_files = None  # on a cluster: the preset folder's files in the object store

    def _protocol(self):
        from video_swin.data.preprocess import Protocol

        return Protocol.from_dict(self.protocol)

    def on_cluster(self):
        # The preset's files travel through the object store, so nodes need neither a shared filesystem
        # nor the zoo's cache (a registered name would otherwise be downloaded on every node).
        self.preset_files = _put_preset_files(self.preset_path)

    def settings(self):
        return {"task": "classify", "preset": self.preset_arg, "views": self.views, "top_k": self.top_k}

    def decode(self, path):
        from video_swin.inference.classify import video_views

        views, timings = video_views(self._protocol(), path, normalise=False)
        return DecodedVideo(views, {}, timings)

    def load_model(self, threads=None):
        from video_swin.inference.classify import VideoClassifier

        if threads:
            _limit_tensorflow_threads(threads)
        with _materialised(self.preset_files, self.preset_path) as preset:
            classifier = VideoClassifier(preset, views=self.views, batch_size=self.batch_size)
        protocol = classifier.protocol

        def probabilities(pixels):
            return classifier.view_probabilities(protocol.normalize_views(pixels))

        return probabilities

    def finish(self, video, outputs, columns, timings):
        from video_swin.inference.classify import Result

        top = Result(outputs.mean(axis=0), self.class_names).top_k(self.top_k)
        return {
            "video": video,
            "labels": [label for label, _ in top],
            "probabilities": [p for _, p in top],
            "timings": timings,
            "error": None,
        }

    def error_row(self, video, message, timings):
        return {"video": video, "labels": None, "probabilities": None, "timings": timings, "error": message}

    def open_writer(self, out, settings, rows_per_part=DEFAULT_ROWS_PER_PART, part_interval_s=DEFAULT_PART_INTERVAL_S):
        pa = _require("pyarrow", "writing Parquet")
        timings = pa.struct([(k, pa.float64()) for k in TIMING_KEYS] + [("views", pa.int32())])
        schema = pa.schema([
            ("video", pa.string()),
            ("labels", pa.list_(pa.string())),
            ("probabilities", pa.list_(pa.float64())),
            ("timings", timings),
            ("error", pa.string()),
        ])
        return ParquetResults(out, schema, settings, rows_per_part=rows_per_part, part_interval_s=part_interval_s)


class FeaturesTask(BatchTask):
    """`FeatureExtractor`'s work split in two: the windows of a video (decode workers: the timeline's window
    placement, each window's centre crop as uint8) and the backbone over each window (model actors), pooled
    as `extract_features` pools; the writer (`FeaturesFolder`) writes what `write_features` writes.

    A video's windows travel together from its decode task (memory per decode task: windows x clip x crop²
    x 3 bytes, e.g. 300 windows of 32x224² = 1.4 GB); the archive still streams video by video."""

    view_columns = ("start_s", "end_s", "center_s", "fps", "frames")

    def __init__(self, preset, stride_s=None, pool="mean", batch_size=1, index="csv"):
        from video_swin.data.preprocess import Protocol
        from video_swin.inference import features
        from video_swin.zoo import resolve as zoo_resolve

        if pool not in features.POOLS:
            raise BatchError(f"pool must be one of {', '.join(features.POOLS)}, got {pool!r}")
        if index not in features.INDEX_FORMATS:
            raise BatchError(f"index must be one of {', '.join(features.INDEX_FORMATS)}, got {index!r}")
        if stride_s is not None and not (math.isfinite(stride_s) and stride_s > 0):
            raise BatchError(f"the stride must be a positive number of seconds, got {stride_s}")
        if int(batch_size) < 1:
            raise BatchError(f"batch size must be at least 1, got {batch_size}")
        loaded = zoo_resolve.load_preset(preset)
        protocol = Protocol.from_dict(loaded.preprocessing, views="1x1")
        self.preset_arg = str(preset)
        self.preset_path = str(loaded.path)
        self.protocol = protocol.to_dict()
        self.stride_s = stride_s
        self.pool = pool
        self.index = index
        self.batch_size = int(batch_size)
        self.view_shape = (protocol.clip_len, protocol.crop_size, protocol.crop_size, 3)
        self.output_shape = None  # known once an actor has the model (see load_model)
        self.preset_files = None
        self.names = {}  # video -> its files' name in the folder (set by `features_archive`)

    def _protocol(self):
        from video_swin.data.preprocess import Protocol

        return Protocol.from_dict(self.protocol)

    def on_cluster(self):
        self.preset_files = _put_preset_files(self.preset_path)

    def settings(self):
        return {"task": "features", "preset": self.preset_arg, "pool": self.pool, "stride_s": self.stride_s}

    def decode(self, path):
        from video_swin.data.preprocess import resize_short_side
        from video_swin.data.video import VideoError, open_stream
        from video_swin.inference.timeline import WindowPlan, iter_windows, stopped_message

        protocol = self._protocol()
        stream = open_stream(path, frame_fn=lambda frame: resize_short_side(frame, protocol.short_side))
        views, records, preprocess_s = [], [], 0.0
        try:
            plan = WindowPlan.for_protocol(protocol, stream.fps, self.stride_s)
            for window, sampled in iter_windows(stream, plan):
                t = time.perf_counter()
                views.append(protocol.views_from_frames(sampled, normalise=False)[0])
                preprocess_s += time.perf_counter() - t
                records.append(window.record())
        finally:
            stream.close()
        if stream.stopped:  # as `write_features`: a video that ends early is a failure, not a short result
            raise VideoError(stopped_message(stream.name, stream.frames, plan.fps, len(views), stream.stopped))
        if not views:
            raise VideoError(f"no decodable video frames: {stream.name}")
        n = len(views)
        columns = {key: [r[key] for r in records] for key in ("start_s", "end_s", "center_s")}
        columns.update(fps=[plan.fps] * n, frames=[stream.frames] * n)
        timings = {"decode_s": stream.decode_s, "preprocess_s": stream.frame_fn_s + preprocess_s}
        return DecodedVideo(np.stack(views), columns, timings)

    def load_model(self, threads=None):
        from video_swin import runtime
        from video_swin.models.classifier import VideoSwinClassifier
        from video_swin.models.presets import load_preset

        if threads:
            _limit_tensorflow_threads(threads)
        runtime.configure()
        with _materialised(self.preset_files, self.preset_path) as folder:
            model = load_preset(folder).load_model()
        backbone = model.backbone if isinstance(model, VideoSwinClassifier) else model
        # Batches mix the windows of several videos, so their sizes vary: the TF graph, not one XLA
        # compile per batch size.
        backbone.inference_jit_compile = False
        protocol = self._protocol()

        def features(pixels):
            maps = np.asarray(backbone.predict_on_batch(protocol.normalize_views(pixels)), dtype=np.float32)
            return maps.mean(axis=(1, 2, 3)) if self.pool == "mean" else maps

        self.output_shape = features(np.zeros((1, *self.view_shape), np.uint8)).shape[1:]
        return features

    def finish(self, video, outputs, columns, timings):
        return {"video": video, "features": outputs.astype(np.float32), "columns": columns, "timings": timings,
                "error": None}

    def error_row(self, video, message, timings):
        return {"video": video, "features": None, "columns": None, "timings": timings, "error": message}

    def open_writer(self, out, settings, rows_per_part=DEFAULT_ROWS_PER_PART, part_interval_s=DEFAULT_PART_INTERVAL_S):
        return FeaturesFolder(out, self)


class FeaturesFolder:
    """The writer of a features run: `write_features`' folder (`<name>.npy`, `<name>.json`, the index), each
    video's two files written atomically as it completes, so a rerun skips the videos done (same per-video
    settings as `write_features`: video size and time, preset, pool, stride). The index (every video of
    the run, done now or before) is written at the end; the videos that failed are listed in
    `failed.csv` (video, error), which a run without failures removes."""

    def __init__(self, out, task):
        self.out = Path(out)
        if self.out.exists() and not self.out.is_dir():
            raise BatchError(f"--out {self.out} is a file; features are written to a folder")
        self.task = task
        self.failed = {}
        self._lock = None

    def __enter__(self):
        from video_swin.zoo.download import file_lock

        def busy():
            raise BatchError(f"another run is writing {self.out} (lock {self.out / '.lock'})")

        self.out.mkdir(parents=True, exist_ok=True)
        self._lock = file_lock(self.out / ".lock", on_wait=busy)
        self._lock.__enter__()
        return self

    def __exit__(self, *exc_info):
        if self._lock is not None:
            self._lock.__exit__(*exc_info)
            self._lock = None
            with contextlib.suppress(OSError):
                (self.out / ".lock").unlink()
        return False

    def _files(self, video):
        name = self.task.names.get(video) or Path(video).stem
        return self.out / f"{name}.npy", self.out / f"{name}.json"

    def _saved(self, video):
        from video_swin.inference import features

        try:
            settings = features.video_settings(video, self.task.preset_path, self.task.stride_s, self.task.pool)
        except OSError:
            return None
        return features.saved_features(*self._files(video), settings)

    def done(self, retry_failed=False):
        return {video for video in self.task.names if self._saved(video) is not None}

    def add(self, row):
        from video_swin.inference import features
        from video_swin.inference.timeline import TIME_DECIMALS, WindowPlan, video_id_of

        video = row["video"]
        if row["error"] is not None:
            self.failed[video] = row["error"]
            return
        npy, meta = self._files(video)
        values, columns = row["features"], row["columns"]
        fps, frames = float(columns["fps"][0]), int(columns["frames"][0])
        plan = WindowPlan.for_protocol(self.task._protocol(), fps, self.task.stride_s)
        # The window records `Window.record()` made in the decode task (rounded there), as `write_features` saves them.
        windows = [{"window": i, **{key: float(columns[key][i]) for key in ("start_s", "end_s", "center_s")}}
                   for i in range(len(values))]
        saved = {"video": video_id_of(video), "fps": fps, "frames": frames,
                 "duration_s": round(frames / fps, TIME_DECIMALS), "window_s": round(plan.span_s, TIME_DECIMALS),
                 "stride_s": round(plan.stride_s, TIME_DECIMALS), "pool": self.task.pool, "windows": windows,
                 "shape": list(values.shape),
                 "settings": features.video_settings(video, self.task.preset_path, self.task.stride_s, self.task.pool)}
        with files.atomic_path(npy) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, np.ascontiguousarray(values, dtype=np.float32))
            files.sync_to_disk(tmp)
        files.atomic_write_text(meta, json.dumps(saved, indent=1) + "\n")

    def finalize(self):
        from video_swin.inference import features

        rows = []
        for video in self.task.names:
            saved = self._saved(video)
            if saved is not None:
                rows.extend(features.index_rows(video, self._files(video)[0].name, saved))
        self.index = features.write_index(rows, self.out, self.task.index)
        failed = self.out / "failed.csv"
        if self.failed:
            import csv
            import io

            text = io.StringIO()
            writer = csv.writer(text, lineterminator="\n")
            writer.writerow(["video", "error"])
            writer.writerows(sorted(self.failed.items()))
            files.atomic_write_text(failed, text.getvalue())
        else:
            failed.unlink(missing_ok=True)


def _put_preset_files(folder):
    import ray

    return [ray.put({p.name: p.read_bytes() for p in Path(folder).iterdir() if p.is_file()})]


@contextlib.contextmanager
def _materialised(preset_files, preset_path):
    """The preset folder to load: the driver's path, or the shipped files written to a temporary folder
    (removed once the model is loaded)."""
    if preset_files is None:
        yield preset_path
        return
    import ray

    contents = ray.get(preset_files[0])
    with tempfile.TemporaryDirectory(prefix="video_swin_preset_") as tmp:
        folder = Path(tmp) / Path(preset_path).name
        folder.mkdir()
        for name, data in contents.items():
            (folder / name).write_bytes(data)
        yield str(folder)


def _limit_tensorflow_threads(threads):
    """An actor uses the CPUs Ray reserved for it, not every core of the node (several actors and the
    decode tasks share a node). Must run before TensorFlow makes its first tensor."""
    import tensorflow as tf

    n = max(1, int(math.ceil(threads)))
    with contextlib.suppress(RuntimeError):  # already initialised: keep what it has
        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(n)


# --------------------------------------------------------------------------------------------------------
# the stages, shared by both engines
# --------------------------------------------------------------------------------------------------------


def decode_video(item, task):
    """Stage 1 (a CPU task): {"video": path} -> one row per view of the video, its uint8 pixels in "view".

    A video that fails is one row with `num_views` 0, its error and a zero view (the tensor column has one
    shape); it passes the model stage untouched."""
    video = str(item["video"])
    try:
        decoded = task.decode(video)
        views = np.asarray(decoded.views)
        if views.dtype != np.uint8 or views.shape[1:] != tuple(task.view_shape) or len(views) == 0:
            raise ValueError(f"the task produced views {views.dtype}{views.shape}, expected uint8 (N, "
                             f"{', '.join(map(str, task.view_shape))})")
        n, error, columns, timings = len(views), "", decoded.columns, decoded.timings
    except Exception as exc:  # the one-line reason becomes the video's row; the run goes on
        views = np.zeros((1, *task.view_shape), np.uint8)
        n, error, columns, timings = 0, _one_line(exc), {}, {}
    columns = {name: np.asarray(columns.get(name, np.full(len(views), np.nan)), np.float64) for name in task.view_columns}
    return [
        {"video": video, "view_index": i, "num_views": n, "view": view, "error": error,
         "decode_s": float(timings.get("decode_s", np.nan)), "preprocess_s": float(timings.get("preprocess_s", np.nan)),
         **{name: float(values[i]) for name, values in columns.items()}}
        for i, view in enumerate(views)
    ]


def _as_batch(rows):
    """Rows (dicts) -> a batch of columns, as Ray Data hands them to `ModelStage`."""
    batch = {key: [row[key] for row in rows] for key in rows[0]}
    return {key: np.stack(values) if key == "view" else np.asarray(values, dtype=object if key in ("video", "error") else None)
            for key, values in batch.items()}


class ModelStage:
    """Stage 2 (an actor on Ray): the task's model, loaded once, over batches of view rows (from any
    number of videos). Drops the pixels and adds `output` (the model's result per view) and `model_s`
    (the batch's model time shared equally among its rows)."""

    def __init__(self, task, threads=None):
        self.task = task
        self.run = task.load_model(threads)

    def __call__(self, batch):
        video = np.asarray(batch["video"], dtype=object)
        error = np.array([str(e) for e in batch["error"]], dtype=object)
        output = np.zeros((len(video), *self.task.output_shape), np.float64)
        model_s = np.zeros(len(video), np.float64)
        todo = np.flatnonzero(error == "")
        if len(todo):
            start = time.perf_counter()
            try:
                output[todo] = self.run(batch["view"][todo])
            except Exception:  # one video's failure must not cost the others: retry video by video
                for name in dict.fromkeys(video[todo]):
                    rows = todo[video[todo] == name]
                    try:
                        output[rows] = self.run(batch["view"][rows])
                    except Exception as exc:
                        error[rows] = f"model failed: {_one_line(exc)}"
            model_s[todo] = (time.perf_counter() - start) / len(todo)
        out = {k: v for k, v in batch.items() if k != "view"}
        out.update(video=video, error=error, output=output, model_s=model_s)
        return out


def _number(value):
    value = float(value)
    return None if math.isnan(value) else value


class Regroup:
    """Stage 3 (the driver): view rows, in any order and possibly repeated by retries, back into videos.
    `add(batch)` returns the output rows of the videos it completed."""

    def __init__(self, task):
        self.task = task
        self.pending = {}
        self.finished = set()

    def add(self, batch):
        done = []
        for i in range(len(batch["video"])):
            video = str(batch["video"][i])
            if video in self.finished:  # a retried task's rows for a video already written
                continue
            n = int(batch["num_views"][i])
            timings = {k: _number(batch[k][i]) for k in ("decode_s", "preprocess_s")}
            if n == 0:
                done.append(self._close(video, self.task.error_row(video, str(batch["error"][i]), timings)))
                continue
            views = self.pending.setdefault(video, {})
            views.setdefault(int(batch["view_index"][i]), (
                batch["output"][i], str(batch["error"][i]), float(batch["model_s"][i]),
                {name: float(batch[name][i]) for name in self.task.view_columns}, timings))
            if len(views) == n:
                done.append(self._close(video, self._finish(video, [views[j] for j in range(n)])))
        return done

    def _finish(self, video, views):
        timings = {**views[0][4], "model_s": sum(v[2] for v in views), "views": len(views)}
        errors = [v[1] for v in views if v[1]]
        if errors:
            return self.task.error_row(video, errors[0], timings)
        outputs = np.stack([v[0] for v in views])
        columns = {name: np.array([v[3][name] for v in views]) for name in self.task.view_columns}
        return self.task.finish(video, outputs, columns, timings)

    def _close(self, video, row):
        self.pending.pop(video, None)
        self.finished.add(video)
        return row


# --------------------------------------------------------------------------------------------------------
# the writer
# --------------------------------------------------------------------------------------------------------


class ParquetResults:
    """One row per video in a Parquet file, resumable.

    Complete videos are written in parts (`OUT.parts/part-RUN-SEQ.parquet`, each atomic) every
    `rows_per_part` rows or `part_interval_s` seconds; `finalize()` assembles OUT atomically (a video's rows
    come from the newest file holding it) and removes the parts. `done()` lists the videos already in OUT or in parts,
    for a rerun to skip. One run at a time per OUT (a lock file in the parts folder)."""

    def __init__(self, out, schema, settings, rows_per_part=DEFAULT_ROWS_PER_PART, part_interval_s=DEFAULT_PART_INTERVAL_S):
        self.pa = _require("pyarrow", "writing Parquet")
        self.pq = _require("pyarrow.parquet", "writing Parquet")
        self.out = Path(out)
        if self.out.is_dir():
            raise BatchError(f"--out {self.out} is a folder; give a file name such as results.parquet")
        self.parts = self.out.with_name(self.out.name + ".parts")
        self.settings = dict(settings)
        self.schema = schema.with_metadata({METADATA_KEY: json.dumps(self.settings, sort_keys=True).encode()})
        self.rows_per_part = max(1, int(rows_per_part))
        self.part_interval_s = float(part_interval_s)
        # Part names sort in the order runs started (the newest row of a video wins) and never collide,
        # even for two runs of one process within a second.
        now = time.time_ns()
        self.run = f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime(now // 10**9))}.{now % 10**9:09d}-{os.getpid()}"
        self.buffer, self.sequence, self.last_flush = [], 0, time.monotonic()
        self.written = 0
        self._lock = None

    # -- lifetime ---------------------------------------------------------------------------------------

    def __enter__(self):
        from video_swin.zoo.download import file_lock

        def busy():
            raise BatchError(f"another run is writing {self.out} (lock {self.parts / '.lock'})")

        self.parts.mkdir(parents=True, exist_ok=True)
        self._lock = file_lock(self.parts / ".lock", on_wait=busy)
        self._lock.__enter__()
        for leftover in self.parts.glob(".part-*"):  # temporary files of a run killed mid-write
            shutil.rmtree(leftover, ignore_errors=True)
        return self

    def __exit__(self, *exc_info):
        if self._lock is not None:
            self._lock.__exit__(*exc_info)
            self._lock = None
        with contextlib.suppress(OSError):  # only an empty parts folder (a run that wrote nothing) goes
            (self.parts / ".lock").unlink()
            self.parts.rmdir()
        return False

    # -- reading what exists ----------------------------------------------------------------------------

    def _sources(self):
        """The files holding results, oldest first: OUT, then the parts in the order they were written."""
        found = [self.out] if self.out.is_file() else []
        return found + sorted(self.parts.glob("part-*.parquet")) if self.parts.is_dir() else found

    def _check_settings(self, path):
        try:
            metadata = self.pq.read_schema(path).metadata or {}
        except Exception as exc:
            raise BatchError(f"{path}: not a readable Parquet file ({_one_line(exc)})") from None
        found = json.loads(metadata.get(METADATA_KEY, b"null"))
        if found != self.settings:
            raise BatchError(f"{path} holds results of other settings ({found}, this run: {self.settings}); "
                             "write to another --out or rerun with the same settings")

    def done(self, retry_failed=False):
        """Videos already in OUT or in its parts (with `retry_failed`, only those without an error)."""
        done = set()
        for path in self._sources():
            self._check_settings(path)
            table = self.pq.read_table(path, columns=["video", "error"])
            videos, errors = table.column("video").to_pylist(), table.column("error").to_pylist()
            done.update(v for v, e in zip(videos, errors) if not (retry_failed and e is not None))
        return done

    # -- writing ----------------------------------------------------------------------------------------

    def add(self, *rows):
        """The rows of one video (one for classify; a writer may give a video several, e.g. one per window):
        they always land in the same part."""
        self.buffer.extend(rows)
        if len(self.buffer) >= self.rows_per_part or time.monotonic() - self.last_flush >= self.part_interval_s:
            self.flush()

    def flush(self):
        self.last_flush = time.monotonic()
        if not self.buffer:
            return
        table = self.pa.Table.from_pylist(self.buffer, schema=self.schema)
        self.sequence += 1
        with files.atomic_path(self.parts / f"part-{self.run}-{self.sequence:06d}.parquet", overwrite=False) as tmp:
            self.pq.write_table(table, tmp)
            files.sync_to_disk(tmp)
        self.written += len(self.buffer)
        self.buffer = []

    def finalize(self):
        """Writes OUT from OUT and the parts, atomically, then removes the parts. A video's rows come from the
        newest file that has it (a writer may give a video several rows, e.g. one per window; a run writes a
        video once, so they are all in one file). Rows are in the order they were completed; sort by `video`
        if you need an order."""
        self.flush()
        sources = self._sources()
        parts = [p for p in sources if p != self.out]
        if not parts:
            return
        newest = {}
        for index, path in enumerate(sources):
            for video in self.pq.read_table(path, columns=["video"]).column("video").to_pylist():
                newest[video] = index
        with files.atomic_path(self.out) as tmp:
            with self.pq.ParquetWriter(tmp, self.schema) as writer:
                for index, path in enumerate(sources):
                    for batch in self.pq.ParquetFile(path).iter_batches(batch_size=4096):
                        keep = [newest[video] == index for video in batch.column("video").to_pylist()]
                        if any(keep):
                            writer.write_table(self.pa.Table.from_batches([batch]).filter(self.pa.array(keep)).cast(self.schema))
            files.sync_to_disk(tmp)
        for part in parts:
            part.unlink()


# --------------------------------------------------------------------------------------------------------
# the engines
# --------------------------------------------------------------------------------------------------------


@dataclass
class BatchSummary:
    """What a run did: `processed` videos written by this run (`errors` of them error rows), `skipped`
    already in the output before it started, `out` the output."""

    out: str
    processed: int = 0
    errors: int = 0
    skipped: int = 0
    engine: str = "local"
    actors: int = 0

    def as_dict(self):
        return dict(self.__dict__)


def run_task(task, paths, out, *, engine="local", address=None, num_actors=None, cpus_per_actor=1,
             gpus_per_actor=0, batch_size=None, retry_failed=False, rows_per_part=DEFAULT_ROWS_PER_PART,
             part_interval_s=DEFAULT_PART_INTERVAL_S, input_errors=(), progress=None, ray_init=None):
    """Runs `task` over `paths` into `out` and returns a `BatchSummary`. See `classify_archive`."""
    if engine not in ("local", "ray"):
        raise BatchError(f"engine must be 'local' or 'ray', got {engine!r}")
    paths = list(dict.fromkeys(os.fspath(p) for p in paths))  # a video given twice is one row
    writer = task.open_writer(out, task.settings(), rows_per_part=rows_per_part, part_interval_s=part_interval_s)
    summary = BatchSummary(str(out), engine=engine)
    with writer:
        done = writer.done(retry_failed=retry_failed)
        todo = [p for p in paths if p not in done]
        summary.skipped = len(paths) - len(todo)
        regroup = Regroup(task)
        bar = _progress_bar(len(todo) + len(input_errors), progress)

        def write(rows):
            for row in rows:
                writer.add(row)
                summary.processed += 1
                summary.errors += row.get("error") is not None
                bar.update(1)

        write(task.error_row(name, message, {}) for name, message in input_errors if name not in done)
        if todo and engine == "local":
            _run_local(task, todo, regroup, write, batch_size)
        elif todo:
            summary.actors = _run_ray(task, todo, regroup, write, address=address, num_actors=num_actors,
                                      cpus_per_actor=cpus_per_actor, gpus_per_actor=gpus_per_actor,
                                      batch_size=batch_size, ray_init=ray_init)
        bar.close()
        if regroup.pending:  # never expected: Ray delivers every row of a finished dataset
            raise BatchError(f"{len(regroup.pending)} video(s) came back incomplete; rerun to finish them")
        writer.finalize()
    return summary


def _progress_bar(total, progress):
    from tqdm import tqdm

    enabled = sys.stderr.isatty() if progress is None else bool(progress)
    return tqdm(total=total, unit="video", disable=not enabled or total < 2, file=sys.stderr)


def _run_local(task, todo, regroup, write, batch_size):
    model = ModelStage(task)
    for path in todo:
        rows = decode_video({"video": path}, task)
        step = batch_size or len(rows)
        for start in range(0, len(rows), step):
            write(regroup.add(model(_as_batch(rows[start : start + step]))))


def _run_ray(task, todo, regroup, write, *, address, num_actors, cpus_per_actor, gpus_per_actor, batch_size, ray_init):
    ray = _require("ray", "the Ray engine")
    _require("ray.data", "the Ray engine")
    connected_here = _connect(ray, address, ray_init)
    try:
        num_actors = _pool_size(ray, num_actors, cpus_per_actor, gpus_per_actor)
        task.on_cluster()
        pipeline = {"num_actors": num_actors, "cpus_per_actor": cpus_per_actor, "gpus_per_actor": gpus_per_actor,
                    "batch_size": batch_size or DEFAULT_RAY_BATCH}
        if ray.util.client.ray.is_connected():
            _run_through_coordinator(ray, task, todo, write, pipeline)
        else:
            for batch in build_dataset(ray, task, todo, **pipeline).iter_batches(batch_size=None, batch_format="numpy"):
                write(regroup.add(batch))
    finally:
        if connected_here:  # a cluster started here stops; a connection made here closes
            ray.shutdown()
    return num_actors


class Coordinator:
    """The Ray Data driver of a run whose own process is a Ray Client (`ray://`): Ray Data's streaming
    executor needs a process of the cluster, so this actor runs the pipeline and `Regroup`, and the client
    takes the finished rows (small: top-k lists, or per-window features) and writes them where it runs."""

    def __init__(self, task, todo, pipeline):
        import threading

        self.rows, self.finished, self.error = [], False, None
        self.lock = threading.Condition()
        threading.Thread(target=self._run, args=(task, todo, pipeline), daemon=True).start()

    def _run(self, task, todo, pipeline):
        import ray

        try:
            regroup = Regroup(task)
            for batch in build_dataset(ray, task, todo, **pipeline).iter_batches(batch_size=None, batch_format="numpy"):
                rows = regroup.add(batch)
                with self.lock:
                    self.rows += rows
                    self.lock.notify_all()
            if regroup.pending:
                raise BatchError(f"{len(regroup.pending)} video(s) came back incomplete; rerun to finish them")
        except Exception as exc:
            self.error = _one_line(exc)
        with self.lock:
            self.finished = True
            self.lock.notify_all()

    def take(self, wait_s=2.0):
        """(rows finished since the last call, whether the run is over, its error or None)."""
        with self.lock:
            self.lock.wait_for(lambda: self.rows or self.finished, timeout=wait_s)
            rows, self.rows = self.rows, []
            return rows, self.finished, self.error


def _run_through_coordinator(ray, task, todo, write, pipeline):
    coordinator = ray.remote(num_cpus=0, max_restarts=0)(Coordinator).remote(task, todo, pipeline)
    try:
        while True:
            rows, finished, error = ray.get(coordinator.take.remote())
            write(rows)
            if error:
                raise BatchError(f"the run on the cluster failed: {error}")
            if finished and not rows:
                return
    finally:
        ray.kill(coordinator)


def build_dataset(ray, task, todo, *, num_actors, cpus_per_actor, gpus_per_actor, batch_size):
    """The Ray Data pipeline: paths -> `decode_video` (CPU tasks) -> `ModelStage` (actor pool).

    Decoding is a `flat_map` (one video, many view rows): Ray Data does not fuse it into the actors' batched
    `map_batches`, so decoding runs in its own tasks and never waits on the model. Ray Data's defaults
    already restart dead actors (`max_restarts=-1`), resubmit their tasks (`max_task_retries=-1`) and
    retry tasks whose worker died (`max_retries=-1`)."""
    for handler in logging.getLogger("ray.data").handlers:  # its log file keeps everything; the terminal, errors
        if "File" not in type(handler).__name__:
            handler.setLevel(logging.ERROR)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.execution_options.preserve_order = False
    ds = ray.data.from_items([{"video": p} for p in todo], override_num_blocks=min(len(todo), MAX_INPUT_BLOCKS))
    ds = ds.flat_map(decode_video, fn_kwargs={"task": task}, num_cpus=1)
    return ds.map_batches(
        ModelStage,
        fn_constructor_kwargs={"task": task, "threads": cpus_per_actor},
        batch_size=batch_size,
        compute=ray.data.ActorPoolStrategy(size=num_actors),
        num_cpus=cpus_per_actor,
        num_gpus=gpus_per_actor or None,
    )


def _connect(ray, address, ray_init):
    """Connects this process to Ray unless it already is; True when it connected here."""
    if ray.is_initialized():
        return False
    import video_swin

    # The workers run this driver's own `video_swin` (Ray ships the package folder, a few MB): the code on
    # the nodes is the code that planned the run, whatever version, if any, the nodes have installed.
    if address and address != "auto":
        _check_reachable(address)
    settings = {"log_to_driver": False, "logging_level": logging.ERROR,
                "runtime_env": {"py_modules": [str(Path(video_swin.__file__).parent)]}, **(ray_init or {})}
    if address:
        ray.init(address=address, **settings)
    else:  # a new local cluster sized to this machine, never somebody's running one
        ray.init(address="local", include_dashboard=False, **settings)
    return True


def _check_reachable(address, timeout_s=10.0):
    """`ray.init` keeps retrying an address nobody listens on for minutes; a TCP connection says at once."""
    import socket
    import urllib.parse

    parsed = urllib.parse.urlsplit(address if "://" in address else f"gcs://{address}")
    try:
        host, port = parsed.hostname, parsed.port
    except ValueError:
        host = port = None
    if not host or not port:
        raise BatchError(f"--address {address}: expected auto, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as exc:
        raise BatchError(f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}") from None


def _pool_size(ray, num_actors, cpus_per_actor, gpus_per_actor):
    resources = ray.cluster_resources()
    cpus, gpus = float(resources.get("CPU", 0)), float(resources.get("GPU", 0))
    if gpus_per_actor and gpus < gpus_per_actor:
        raise BatchError(f"--gpus-per-actor {gpus_per_actor}: the cluster has {gpus:g} GPU(s)")
    if num_actors is None:
        if gpus_per_actor:
            num_actors = int(gpus // gpus_per_actor)
        else:  # leave a quarter of the CPUs (at least one) to the decode tasks
            num_actors = int((cpus - max(1.0, cpus // 4)) // cpus_per_actor)
        num_actors = max(1, num_actors)
    if num_actors < 1:
        raise BatchError(f"--actors must be at least 1, got {num_actors}")
    if num_actors * cpus_per_actor > cpus - 1:
        raise BatchError(f"{num_actors} actor(s) x {cpus_per_actor:g} CPU leave no CPU to decode on a cluster of "
                         f"{cpus:g} CPUs; lower --actors or --cpus-per-actor")
    return int(num_actors)


def classify_archive(paths, preset, out, *, address=None, engine="ray", views=None, top_k=5, batch_size=DEFAULT_RAY_BATCH,
                     num_actors=None, cpus_per_actor=1, gpus_per_actor=0, retry_failed=False,
                     rows_per_part=DEFAULT_ROWS_PER_PART, part_interval_s=DEFAULT_PART_INTERVAL_S,
                     progress=None, ray_init=None):
    """Classifies every video of `paths` (files, or folders of videos) into the Parquet file `out`: one
    row per video with `video` (the path as given), `labels` and `probabilities` (top `top_k`, best
    first), `timings` (decode_s, preprocess_s, model_s, views) and `error` (None, or the one-line reason).

    engine="ray": decoding in Ray tasks, the model in `num_actors` actors (default: a quarter of the
    cluster's CPUs left to decoding, or one actor per `gpus_per_actor` GPUs), `batch_size` views per model
    call; `address` is "auto", "HOST:PORT" or "ray://HOST:PORT" (default: a new local cluster sized to this
    machine; a process already connected to Ray keeps its connection). engine="local": this process.

    Resumable: videos already in `out` (or in the parts a killed run left) are skipped; `retry_failed`
    redoes those whose row is an error. The probabilities equal `VideoClassifier`'s (same protocol, softmax
    per view, mean over views).
    """
    from video_swin.inference.classify import expand_inputs

    files_, input_errors = expand_inputs(paths)
    task = ClassifyTask(preset, views=views, top_k=top_k, batch_size=batch_size)
    return run_task(task, files_, out, engine=engine, address=address, num_actors=num_actors,
                    cpus_per_actor=cpus_per_actor, gpus_per_actor=gpus_per_actor, batch_size=batch_size,
                    retry_failed=retry_failed, rows_per_part=rows_per_part, part_interval_s=part_interval_s,
                    input_errors=input_errors, progress=progress, ray_init=ray_init)


def features_archive(paths, preset, out, *, address=None, engine="ray", stride_s=None, pool="mean", index="csv",
                     batch_size=DEFAULT_RAY_BATCH, num_actors=None, cpus_per_actor=1, gpus_per_actor=0,
                     progress=None, ray_init=None):
    """Backbone features of each window of every video of `paths` into the folder `out`, as
    `inference.features.write_features` writes them (`<name>.npy` (windows, ...) float32, `<name>.json`,
    `index.csv|parquet`), with decoding in Ray tasks and the backbone in an actor pool (engine="ray", the
    options as in `classify_archive`), or in this process (engine="local"). Videos already in `out` with the
    same settings are skipped; those that fail are listed in `out/failed.csv` and retried by a rerun.
    Returns a `BatchSummary`."""
    from video_swin.inference.classify import expand_inputs
    from video_swin.inference.features import output_names

    files_, input_errors = expand_inputs(paths)
    files_ = list(dict.fromkeys(files_))
    task = FeaturesTask(preset, stride_s=stride_s, pool=pool, batch_size=batch_size, index=index)
    task.names = dict(zip(files_, output_names(files_)))
    return run_task(task, files_, out, engine=engine, address=address, num_actors=num_actors,
                    cpus_per_actor=cpus_per_actor, gpus_per_actor=gpus_per_actor, batch_size=batch_size,
                    retry_failed=True, input_errors=input_errors, progress=progress, ray_init=ray_init)
