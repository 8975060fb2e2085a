"""Datasets and tf.data input pipelines for training and evaluation.

Inputs
------
* a folder with one sub-folder of videos per class (`root/<class>/*.mp4`; class order = sorted names, or
  the order of `root/labels.txt` when present, which `video-swin make-synthetic` writes);
* a text/CSV list of `path label` lines (`path,label` also accepted; `#` starts a comment; relative
  paths are relative to the list file; a label is a class index or a class name; class names come from
  a `labels.txt` beside the list, from the names used, or from the model);
* a folder of TFRecords written by `video-swin extract-tfrecords` (see `tfrecords.py`);
* in-memory arrays (`ArraySource`: uint8 (N, T, H, W, 3) clips and labels; the synthetic recipe).

Pipelines
---------
* training (`TrainData.epoch_dataset`): per clip, a random start (`sampling.random_clip_indices`: clip_len
  frames every frame_interval frames, looping short videos), decoding of only those frames in parallel
  (`tf.numpy_function` around `video.read_frames`, `num_parallel_calls=workers`), OpenCV short-side resize,
  then in the graph: random resized crop, horizontal flip (switchable off for direction-sensitive classes,
  or with a label permutation: `label_maps`), normalisation. Every random decision is seeded by
  (seed, epoch, position in the epoch), so an epoch is the same whatever the worker count, the number of
  replicas or a restart in the middle of it (`start=`).
* validation (`views_dataset(..., Protocol.validation)`): centre clip, short-side resize, centre crop:
  deterministic, bit-exact with the official numpy/OpenCV path (`preprocess.Protocol`).
* evaluation (`views_dataset(..., protocol)`): all views of the official multi-view protocol per video.
"""

from __future__ import annotations

import csv
import os
import threading
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from video_swin.data.preprocess import DEFAULT_MEAN, DEFAULT_STD, Protocol, resize_short_side
from video_swin.data.sampling import center_clip_indices, random_clip_indices

VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp", ".ogv", ".gif"}
)
LABEL_MAP_KEYS = ("hflip", "vflip", "transpose", "reverse")


def check_counts(minimum=1, **values):
    """Raises one line naming the first of `values` (name=value; None is allowed: a default) that is not
    an integer of at least `minimum`: the counts a user passes (batch sizes, epochs, workers, shards)."""
    for name, value in values.items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
            raise ValueError(f"{name} must be an integer of at least {minimum}, got {value!r}")


class DataError(ValueError):
    """A dataset cannot be used; the message is one line."""


# ----------------------------------------------------------------------------------------- listings


@dataclass
class VideoList:
    """Video paths with integer labels and the class names."""

    paths: list
    labels: np.ndarray
    class_names: list

    def __post_init__(self):
        self.paths = [str(p) for p in self.paths]
        self.labels = np.asarray(self.labels, dtype=np.int64)
        self.class_names = [str(c) for c in self.class_names]

    def __len__(self):
        return len(self.paths)

    def subset(self, indices) -> "VideoList":
        indices = np.asarray(indices, dtype=np.int64)
        return VideoList([self.paths[i] for i in indices], self.labels[indices], self.class_names)

    def split(self, val_fraction: float, seed: int = 0) -> tuple["VideoList", "VideoList"]:
        """A stratified, seeded (train, val) split: about `val_fraction` of every class (at least one
        video of each class with two or more) goes to validation."""
        rng = np.random.default_rng([int(seed), 7])
        train, val = [], []
        for c in range(len(self.class_names)):
            idx = np.flatnonzero(self.labels == c)
            rng.shuffle(idx)
            k = int(round(len(idx) * val_fraction))
            if len(idx) >= 2:
                k = min(max(k, 1), len(idx) - 1)
            else:
                k = 0
            val.extend(idx[:k].tolist())
            train.extend(idx[k:].tolist())
        return self.subset(sorted(train)), self.subset(sorted(val))

    def remap(self, class_names: Sequence[str]) -> "VideoList":
        """The same videos labelled with the indices of `class_names` (matched by name)."""
        class_names = [str(c) for c in class_names]
        if class_names == self.class_names:
            return self
        index = {name: i for i, name in enumerate(class_names)}
        missing = sorted({self.class_names[label] for label in self.labels} - set(index))
        if missing:
            raise DataError(f"class(es) {', '.join(missing[:5])} of the data are not classes of the model")
        labels = np.asarray([index[self.class_names[label]] for label in self.labels], dtype=np.int64)
        return VideoList(self.paths, labels, class_names)


def _read_labels_file(path: Path) -> list | None:
    if path.is_file():
        names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        return names or None
    return None


def scan_folder(root) -> VideoList:
    """`root/<class>/<video>`: one sub-folder of videos per class (nested folders are searched too)."""
    root = Path(root)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    ordered = _read_labels_file(root / "labels.txt")
    if ordered is not None:
        extra = [c for c in classes if c not in ordered]
        classes = ordered + extra
    paths, labels = [], []
    for c, name in enumerate(classes):
        folder = root / name
        if not folder.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for f in sorted(filenames):
                if not f.startswith(".") and Path(f).suffix.lower() in VIDEO_EXTENSIONS:
                    paths.append(os.path.join(dirpath, f))
                    labels.append(c)
    if not paths:
        raise DataError(f"{root}: no videos found in class sub-folders ({', '.join(VIDEO_EXTENSIONS)})")
    return VideoList(paths, labels, classes)


def read_list(path, class_names: Sequence[str] | None = None) -> VideoList:
    """A text/CSV list of `path label` lines (see the module docstring)."""
    path = Path(path)
    base = path.parent
    if class_names is None:
        class_names = _read_labels_file(base / "labels.txt")
    rows = []
    with open(path, newline="") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if "," in line:
                parts = next(csv.reader([line]))
                parts = [p.strip() for p in parts if p.strip()]
            else:
                parts = line.rsplit(None, 1)
            if len(parts) != 2:
                raise DataError(f"{path}:{lineno}: expected 'path label', got {line!r}")
            if lineno == 1 and parts[1].lower() in ("label", "class") and parts[0].lower() in ("path", "video"):
                continue  # a CSV header
            rows.append((parts[0], parts[1], lineno))
    if not rows:
        raise DataError(f"{path}: the list has no entries")
    names = list(class_names) if class_names is not None else None
    if names is None:
        if all(r[1].lstrip("-").isdigit() for r in rows):
            n = max(int(r[1]) for r in rows) + 1
            names = [f"class_{i}" for i in range(n)]
        else:
            names = sorted({r[1] for r in rows})
    index = {n: i for i, n in enumerate(names)}
    paths, labels = [], []
    for p, label, lineno in rows:
        if label in index:
            value = index[label]
        elif label.lstrip("-").isdigit():
            value = int(label)
        else:
            raise DataError(f"{path}:{lineno}: unknown class {label!r}")
        if not 0 <= value < len(names):
            raise DataError(f"{path}:{lineno}: label {value} out of range 0..{len(names) - 1}")
        full = Path(p) if os.path.isabs(p) else base / p
        paths.append(str(full))
        labels.append(value)
    return VideoList(paths, labels, names)


def load_video_list(data, class_names: Sequence[str] | None = None) -> VideoList:
    """A class-folder tree or a `path label` list file."""
    data = Path(data)
    if data.is_dir():
        listing = scan_folder(data)
        return listing.remap(class_names) if class_names is not None else listing
    if data.is_file():
        return read_list(data, class_names)
    raise DataError(f"{data}: no such folder or list file")


# ------------------------------------------------------------------------------------------ sources


class VideoSource:
    """Video files: frame counts by `video.probe`, frames by `video.read_frames` (only the sampled ones)."""

    def __init__(self, listing: VideoList):
        self.listing = listing
        self.class_names = listing.class_names
        self.labels = listing.labels
        self._counts: dict[int, int] = {}
        self._lock = threading.Lock()
        self._warned = set()

    def __len__(self):
        return len(self.listing)

    def num_frames(self, i: int) -> int:
        if i not in self._counts:
            from video_swin.data.video import probe

            n = probe(self.listing.paths[i]).num_frames
            with self._lock:
                self._counts[i] = n
        return self._counts[i]

    def read(self, i: int, indices, short_side: int | None) -> np.ndarray:
        from video_swin.data.video import read_frames

        fn = (lambda f: resize_short_side(f, short_side)) if short_side else None
        return read_frames(self.listing.paths[i], indices, frame_fn=fn)

    def video(self, i: int):
        """What `Protocol.views_for_video` takes."""
        return self.listing.paths[i]

    def name(self, i: int) -> str:
        return self.listing.paths[i]

    def warn_once(self, i: int, exc: Exception):
        if i not in self._warned:
            self._warned.add(i)
            warnings.warn(f"skipping unreadable video {self.name(i)}: {exc}", RuntimeWarning, stacklevel=2)


class ArraySource:
    """In-memory clips: uint8 (N, T, H, W, 3) and labels (N,)."""

    def __init__(self, clips: np.ndarray, labels, class_names: Sequence[str]):
        clips = np.asarray(clips)
        if clips.ndim != 5 or clips.shape[-1] != 3 or clips.dtype != np.uint8:
            raise DataError(f"expected uint8 clips (N, T, H, W, 3), got {clips.shape} {clips.dtype}")
        self.clips = clips
        self.labels = np.asarray(labels, dtype=np.int64)
        self.class_names = [str(c) for c in class_names]

    def __len__(self):
        return len(self.clips)

    def num_frames(self, i: int) -> int:
        return self.clips.shape[1]

    def read(self, i: int, indices, short_side: int | None) -> np.ndarray:
        frames = self.clips[i][np.asarray(indices)]
        return resize_short_side(frames, short_side) if short_side else frames

    def video(self, i: int):
        return self.clips[i]

    def name(self, i: int) -> str:
        return f"clip {i}"

    def warn_once(self, i, exc):  # pragma: no cover - arrays cannot be unreadable
        raise exc


def make_source(data, class_names=None):
    """A source for a folder / list file (or a ready source object)."""
    if isinstance(data, (VideoSource, ArraySource)):
        return data
    return VideoSource(load_video_list(data, class_names))


# ------------------------------------------------------------------------------------ augmentation


@dataclass(frozen=True)
class ClipSpec:
    """How training clips are sampled and augmented (values on the 0-255 pixel scale).

    `flip=True` is the usual label-preserving horizontal flip (p = 0.5); `flip=False` turns it off (use it
    for datasets with left/right classes, e.g. the synthetic motion set). `label_maps` makes a
    geometric/temporal transform usable on direction-sensitive classes: for each of 'hflip' (only when
    `flip`), 'vflip', 'transpose' (swap H and W) and 'reverse' (play backwards) that it names, the
    transform is applied with probability 0.5 and the label is replaced by `map[label]`.
    """

    clip_len: int = 32
    frame_interval: int = 2
    short_side: int = 256
    crop_size: int = 224
    mean: tuple = DEFAULT_MEAN
    std: tuple = DEFAULT_STD
    random_crop: bool = True
    scale: tuple = (0.08, 1.0)  # RandomResizedCrop area fraction
    ratio: tuple = (3 / 4, 4 / 3)  # RandomResizedCrop aspect ratio
    flip: bool = True
    label_maps: dict = field(default_factory=dict)

    def __post_init__(self):
        for key, perm in self.label_maps.items():
            if key not in LABEL_MAP_KEYS:
                raise DataError(f"unknown label map {key!r}; expected one of {LABEL_MAP_KEYS}")
            if sorted(perm) != list(range(len(perm))):
                raise DataError(f"label map {key!r} must be a permutation of 0..{len(perm) - 1}")

    def validation_protocol(self) -> Protocol:
        """The deterministic validation view: centre clip, short side, centre crop."""
        return Protocol(
            mean=self.mean, std=self.std, short_side=self.short_side, crop_size=self.crop_size,
            sampling="dense", clip_len=self.clip_len, frame_interval=self.frame_interval,
            num_clips=1, num_crops=1,
        )

    def to_dict(self) -> dict:
        return {
            "clip_len": self.clip_len, "frame_interval": self.frame_interval, "short_side": self.short_side,
            "crop_size": self.crop_size, "mean": list(self.mean), "std": list(self.std),
            "random_crop": self.random_crop, "scale": list(self.scale), "ratio": list(self.ratio),
            "flip": self.flip, "label_maps": {k: list(v) for k, v in self.label_maps.items()},
        }

    @classmethod
    def from_dict(cls, d: dict) -> "ClipSpec":
        d = dict(d)
        for key in ("mean", "std", "scale", "ratio"):
            if key in d:
                d[key] = tuple(d[key])
        if "label_maps" in d:
            d["label_maps"] = {k: tuple(v) for k, v in d["label_maps"].items()}
        return cls(**d)


def parse_flip_pairs(text: str, class_names: Sequence[str]) -> tuple:
    """'a:b,c:d' -> the permutation that swaps a<->b and c<->d (names or indices)."""
    names = list(class_names)
    perm = list(range(len(names)))

    def index(token):
        token = token.strip()
        if token in names:
            return names.index(token)
        if token.isdigit() and int(token) < len(names):
            return int(token)
        raise DataError(f"--flip-pairs: unknown class {token!r}")

    for pair in filter(None, (p.strip() for p in text.split(","))):
        if ":" not in pair:
            raise DataError(f"--flip-pairs: expected 'a:b' pairs, got {pair!r}")
        a, b = (index(t) for t in pair.split(":", 1))
        perm[a], perm[b] = b, a
    return tuple(perm)


def augment(clip, label, seed, spec: ClipSpec):
    """In-graph training augmentation of one uint8 clip (T, h, w, 3): random resized crop to
    crop_size, flips/reversal (with label maps), normalisation. `seed`: (2,) int64 stateless seed."""
    import tensorflow as tf

    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=8)
    shape = tf.shape(clip)
    h, w = tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
    c = spec.crop_size
    x = tf.cast(clip, tf.float32)
    if spec.random_crop:
        area = h * w * tf.random.stateless_uniform([], seeds[0], spec.scale[0], spec.scale[1])
        log_ratio = tf.random.stateless_uniform([], seeds[1], np.log(spec.ratio[0]), np.log(spec.ratio[1]))
        ratio = tf.exp(log_ratio)
        cw = tf.minimum(tf.sqrt(area * ratio), w)
        ch = tf.minimum(tf.sqrt(area / ratio), h)
        x0 = tf.random.stateless_uniform([], seeds[2], 0.0, 1.0) * (w - cw)
        y0 = tf.random.stateless_uniform([], seeds[3], 0.0, 1.0) * (h - ch)
        # crop_and_resize samples at y1*(h-1) ... y2*(h-1): box edges in pixel-centre coordinates
        box = tf.stack([y0 / tf.maximum(h - 1, 1), x0 / tf.maximum(w - 1, 1),
                        (y0 + ch - 1) / tf.maximum(h - 1, 1), (x0 + cw - 1) / tf.maximum(w - 1, 1)])
        t = shape[0]
        x = tf.image.crop_and_resize(x, tf.tile(box[None], [t, 1]), tf.range(t), [c, c], method="bilinear")
    else:
        top, left = (shape[1] - c) // 2, (shape[2] - c) // 2
        x = x[:, top : top + c, left : left + c, :]
    label = tf.cast(label, tf.int64)
    transforms = {
        "hflip": lambda a: a[:, :, ::-1],
        "vflip": lambda a: a[:, ::-1],
        "transpose": lambda a: tf.transpose(a, (0, 2, 1, 3)),
        "reverse": lambda a: a[::-1],
    }
    for k, key in enumerate(LABEL_MAP_KEYS):
        perm = spec.label_maps.get(key)
        enabled = spec.flip if key == "hflip" else perm is not None
        if not enabled:
            continue
        apply = tf.random.stateless_uniform([], seeds[4 + k], 0.0, 1.0) < 0.5
        x = tf.cond(apply, lambda x=x, f=transforms[key]: f(x), lambda x=x: x)
        if perm is not None:
            label = tf.where(apply, tf.gather(tf.constant(perm, tf.int64), label), label)
    mean = tf.constant(np.asarray(spec.mean, np.float32))
    std = tf.constant(np.asarray(spec.std, np.float32))
    x = (x - mean) / std
    return tf.ensure_shape(x, (spec.clip_len, c, c, 3)), label


# -------------------------------------------------------------------------------------- pipelines


def sample_seed(seed: int, epoch: int, position: int) -> tuple:
    return (int(seed), int(epoch), int(position))


class TrainData:
    """Seeded, resumable training epochs over a source (video files or arrays)."""

    def __init__(self, source, spec: ClipSpec, seed: int = 0, workers: int | None = None):
        self.source = source
        self.spec = spec
        self.seed = int(seed)
        self.workers = int(workers or min(4, os.cpu_count() or 1))
        self.class_names = source.class_names

    def __len__(self):
        return len(self.source)

    def steps_per_epoch(self, examples_per_step: int) -> int:
        return len(self.source) // int(examples_per_step)

    def epoch_order(self, epoch: int, examples_per_step: int) -> np.ndarray:
        """The video order of an epoch (a seeded permutation, trimmed to whole steps)."""
        order = np.random.default_rng([self.seed, int(epoch), 11]).permutation(len(self.source))
        return order[: self.steps_per_epoch(examples_per_step) * examples_per_step]

    def _load(self, index, epoch, position):
        """numpy side: (clip uint8 (T, h, w, 3) after the short-side resize, label)."""
        spec, src = self.spec, self.source
        i = int(index)
        rng = np.random.default_rng([self.seed, int(epoch), int(position), 3])
        for attempt in range(len(src)):
            j = (i + attempt) % len(src)
            try:
                idx = random_clip_indices(src.num_frames(j), spec.clip_len, spec.frame_interval, rng)
                clip = src.read(j, idx, spec.short_side)
                return np.ascontiguousarray(clip, dtype=np.uint8), np.int64(src.labels[j])
            except (OSError, ValueError) as exc:
                src.warn_once(j, exc)
        raise DataError("no readable video in the dataset")

    def epoch_dataset(self, epoch: int, batch_size: int, examples_per_step: int, start: int = 0,
                      num_shards: int = 1, shard: int = 0):
        """Batches of (x float32 (B, T, C, C, 3), y int64) for `epoch` from example `start` (a multiple of
        examples_per_step when resuming). With `num_shards` > 1 (one input pipeline per worker), this
        shard takes every num_shards-th example; `batch_size` is then the per-pipeline batch."""
        import tensorflow as tf

        order = self.epoch_order(epoch, examples_per_step)
        positions = np.arange(len(order), dtype=np.int64)[int(start):]
        positions = positions[int(shard):: int(num_shards)]
        indices = order[positions]
        spec, epoch = self.spec, int(epoch)
        t = spec.clip_len

        def load(index, position):
            clip, label = tf.numpy_function(
                lambda i, p: self._load(i, epoch, p), [index, position], [tf.uint8, tf.int64], stateful=False
            )
            clip = tf.ensure_shape(clip, (t, None, None, 3))
            label = tf.ensure_shape(label, ())
            seed = tf.stack([tf.constant(self.seed * 1000 + epoch, tf.int64), position])
            return augment(clip, label, seed, spec)

        ds = tf.data.Dataset.from_tensor_slices((indices, positions))
        ds = ds.map(load, num_parallel_calls=self.workers, deterministic=True)
        ds = ds.batch(int(batch_size), drop_remainder=True)
        return ds.prefetch(2)


def views_dataset(source, protocol: Protocol, workers: int | None = None, indices=None):
    """(views float32 (V, T, C, C, 3), label int64, index int64) per video, in order, deterministic.
    Unreadable videos are skipped with a warning (their index does not appear)."""
    import tensorflow as tf

    workers = int(workers or min(4, os.cpu_count() or 1))
    indices = np.arange(len(source), dtype=np.int64) if indices is None else np.asarray(indices, np.int64)
    v, t, c = protocol.num_views, protocol.clip_len, protocol.crop_size

    def load(i):
        i = int(i)
        try:
            return protocol.views_for_video(source.video(i)).astype(np.float32), np.int64(source.labels[i]), True
        except (OSError, ValueError) as exc:
            source.warn_once(i, exc)
            return np.zeros((v, t, c, c, 3), np.float32), np.int64(-1), False

    def tf_load(i):
        views, label, ok = tf.numpy_function(load, [i], [tf.float32, tf.int64, tf.bool], stateful=False)
        return tf.ensure_shape(views, (v, t, c, c, 3)), tf.ensure_shape(label, ()), i, tf.ensure_shape(ok, ())

    ds = tf.data.Dataset.from_tensor_slices(indices)
    ds = ds.map(tf_load, num_parallel_calls=workers, deterministic=True)
    def readable(views, label, i, ok):
        return ok

    def drop_flag(views, label, i, ok):
        return views, label, i

    ds = ds.filter(readable).map(drop_flag)
    return ds.prefetch(2)


def center_clip(source, i: int, spec: ClipSpec) -> np.ndarray:
    """The validation clip of video i as uint8 (T, h, w, 3) (centre clip, short-side resize)."""
    idx = center_clip_indices(source.num_frames(i), spec.clip_len, spec.frame_interval)
    return source.read(i, idx, spec.short_side)


__all__ = [
    "DataError", "VideoList", "scan_folder", "read_list", "load_video_list", "VideoSource", "ArraySource",
    "make_source", "ClipSpec", "parse_flip_pairs", "augment", "TrainData", "views_dataset", "replace",
]
