"""From a video file (or decoded frames) to ranked labels with the preset's published test protocol.

Views are scored in batches (bounded memory); softmax per view, then the mean over views
(mmaction2's `average_clips='prob'`). The two halves are also module functions, `video_views` (no
TensorFlow: decoding workers use it) and `view_probabilities`, so that batch engines (`deploy.batch`)
that decode in one process and score in another compute exactly what `VideoClassifier` does.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from video_swin.zoo import resolve as zoo_resolve
from video_swin.data.preprocess import Protocol, resize_short_side

VIDEO_EXTENSIONS = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp", ".ogv"}


@dataclass
class Result:
    """Class probabilities of one video, with the wall time of each stage in seconds."""

    probabilities: np.ndarray
    class_names: list
    timings: dict = field(default_factory=dict)

    def top_k(self, k=5):
        if int(k) < 1:
            raise ValueError(f"top-k must be at least 1, got {k}")
        order = np.argsort(-self.probabilities, kind="stable")[:k]
        return [(self.class_names[i], float(self.probabilities[i])) for i in order]

    def record(self, file, k=5):
        """The JSON object `video-swin classify --json` prints for this result (and the service answers)."""
        timings = {key: round(v, 4) if isinstance(v, float) else v for key, v in self.timings.items()}
        return {"file": file, "top_k": [{"label": l, "probability": p} for l, p in self.top_k(k)], "timings": timings}


class VideoClassifier:
    """A preset's model and protocol, loaded once, to classify many videos.

    precision: 'float32' (default), or 'bfloat16' where the CPU multiplies bfloat16 natively; elsewhere
    float32 runs and `precision_notice` says why in one line (`models.precision.inference_precision`).
    `precision` is what runs."""

    def __init__(self, preset, views=None, batch_size=1, precision="float32"):
        from video_swin import runtime
        from video_swin.models import presets
        from video_swin.models.precision import inference_precision

        runtime.configure()
        self.precision, self.precision_notice = inference_precision(precision)
        self.preset = zoo_resolve.load_preset(preset)  # a Preset, a folder or a registered name
        if not self.preset.config.get("num_classes"):
            raise presets.PresetError(f"{self.preset.path}: a backbone-only preset has no classes to rank")
        self.protocol = Protocol.from_dict(self.preset.preprocessing, views=views)
        if int(batch_size) < 1:
            raise ValueError(f"batch size must be at least 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.model = self.preset.load_model(self.precision)
        # The plain TF graph, not XLA: on 2 CPU cores, Swin-T, 4x3 views of 32x224x224, batch 1, one 10 s
        # 720p file took 61.6 s in the model either way (XLA's compile eats its gain on the first file),
        # and XLA raised the process's peak memory from 1.8 to 2.1 GB (2.9 GB at batch 4, for no gain).
        self.model.inference_jit_compile = False
        names = self.preset.class_names or [f"class_{i}" for i in range(self.preset.config["num_classes"])]
        self.class_names = list(names)

    def views(self, video, protocol=None):
        """(V, T, C, C, 3) normalised views and the decode / preprocess timings.

        protocol: another `Protocol` for this video (e.g. `self.protocol.with_views("1x1")`); the model's
        clip length and crop size are the preset's either way."""
        return video_views(protocol or self.protocol, video)

    def view_probabilities(self, views):
        """Softmax of each view's logits: (V, classes) float64, the model run `batch_size` views at a time."""
        return softmax(self.view_logits(views))

    def view_logits(self, views):
        """(V, classes) float64 logits of views (of one video or of several), `batch_size` views per model
        call."""
        return np.concatenate(
            [
                np.asarray(self.model.predict_on_batch(views[start : start + self.batch_size]), "float64")
                for start in range(0, len(views), self.batch_size)
            ]
        )

    @staticmethod
    def probabilities(logits):
        """One video's class probabilities from its views' logits (V, classes): softmax per view, mean over
        views, (classes,) float64."""
        return softmax(logits).mean(axis=0)

    def score_views(self, views):
        """Softmax of each view's logits, averaged over views: (classes,) float64."""
        return self.probabilities(self.view_logits(views))

    def __call__(self, video) -> Result:
        start = time.perf_counter()
        views, timings = self.views(video)
        model_start = time.perf_counter()
        probabilities = self.score_views(views)
        timings["model_s"] = time.perf_counter() - model_start
        timings["total_s"] = time.perf_counter() - start
        timings["views"] = int(len(views))
        return Result(probabilities, self.class_names, timings)


def softmax(logits):
    """Softmax over the last axis, in float64."""
    logits = np.array(logits, dtype="float64")
    logits -= logits.max(axis=-1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=-1, keepdims=True)


def classify(video, preset, top_k=5, views=None, batch_size=1, precision="float32"):
    """Ranked (label, probability) pairs for a video path or a (T, H, W, 3) uint8 array."""
    if int(top_k) < 1:  # before the model is loaded and the video decoded
        raise ValueError(f"top-k must be at least 1, got {top_k}")
    return VideoClassifier(preset, views=views, batch_size=batch_size, precision=precision)(video).top_k(top_k)


def video_views(protocol, video, normalise=True):
    """The protocol's (V, T, C, C, 3) views of a video path or a (T, H, W, 3) uint8 array, and the decode /
    preprocess timings. float32 normalised views, or with `normalise=False` their uint8 pixels
    (`protocol.normalize_views` turns them into exactly the same float32 views)."""
    if isinstance(video, np.ndarray):
        start = time.perf_counter()
        views = protocol.views_for_video(_check_frames(video), normalise=normalise)
        return views, {"decode_s": 0.0, "preprocess_s": time.perf_counter() - start}
    from video_swin.data.video import probe, read_frames

    start = time.perf_counter()
    info = probe(video)
    flat = [i for clip in protocol.clip_indices(info.num_frames) for i in clip]
    resize_time = 0.0

    def resize(frame):  # each frame is resized as soon as it is decoded: memory stays bounded
        nonlocal resize_time
        t = time.perf_counter()
        out = resize_short_side(frame, protocol.short_side)
        resize_time += time.perf_counter() - t
        return out

    frames = read_frames(video, flat, frame_fn=resize)
    decoded = time.perf_counter()
    views = protocol.views_from_frames(frames, normalise=normalise)
    preprocess = resize_time + time.perf_counter() - decoded
    return views, {"decode_s": decoded - start - resize_time, "preprocess_s": preprocess}


def _check_frames(frames):
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected frames of shape (T, H, W, 3), got {frames.shape}")
    if frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames (0-255), got {frames.dtype}")
    if frames.shape[0] == 0:
        raise ValueError("the video has no frames")
    return frames


def expand_inputs(paths):
    """Files as given, and the videos inside each directory (sorted). Returns (files, errors)."""
    files, errors = [], []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
            if not found:
                errors.append((str(path), "directory contains no video files"))
            files.extend(str(p) for p in found)
        else:
            files.append(os.fspath(path))
    return files, errors
