"""From a video file (or decoded frames) to ranked labels with the preset's published test protocol.

Views are scored in batches (bounded memory); softmax per view, then the mean over views
(mmaction2's `average_clips='prob'`).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from video_swin.models import presets
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


class VideoClassifier:
    """A preset's model and protocol, loaded once, to classify many videos."""

    def __init__(self, preset, views=None, batch_size=1):
        from video_swin import runtime

        runtime.configure()
        self.preset = preset if isinstance(preset, presets.Preset) else presets.load_preset(preset)
        if not self.preset.config.get("num_classes"):
            raise presets.PresetError(f"{self.preset.path}: a backbone-only preset has no classes to rank")
        self.protocol = Protocol.from_dict(self.preset.preprocessing, views=views)
        if int(batch_size) < 1:
            raise ValueError(f"batch size must be at least 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.model = self.preset.load_model()
        # The plain TF graph, not XLA: on 2 CPU cores, Swin-T, 4x3 views of 32x224x224, batch 1, one 10 s
        # 720p file took 61.6 s in the model either way (XLA's compile eats its gain on the first file),
        # and XLA raised the process's peak memory from 1.8 to 2.1 GB (2.9 GB at batch 4, for no gain).
        self.model.inference_jit_compile = False
        names = self.preset.class_names or [f"class_{i}" for i in range(self.preset.config["num_classes"])]
        self.class_names = list(names)

    def views(self, video):
        """(V, T, C, C, 3) normalised views and the decode / preprocess timings."""
        if isinstance(video, np.ndarray):
            start = time.perf_counter()
            views = self.protocol.views_for_video(_check_frames(video))
            return views, {"decode_s": 0.0, "preprocess_s": time.perf_counter() - start}
        from video_swin.data.video import probe, read_frames

        start = time.perf_counter()
        info = probe(video)
        flat = [i for clip in self.protocol.clip_indices(info.num_frames) for i in clip]
        resize_time = 0.0

        def resize(frame):  # each frame is resized as soon as it is decoded: memory stays bounded
            nonlocal resize_time
            t = time.perf_counter()
            out = resize_short_side(frame, self.protocol.short_side)
            resize_time += time.perf_counter() - t
            return out

        frames = read_frames(video, flat, frame_fn=resize)
        decoded = time.perf_counter()
        views = self.protocol.views_from_frames(frames)
        preprocess = resize_time + time.perf_counter() - decoded
        return views, {"decode_s": decoded - start - resize_time, "preprocess_s": preprocess}

    def score_views(self, views):
        """Softmax of each view's logits, averaged over views: (classes,) float64."""
        probs = []
        for start in range(0, len(views), self.batch_size):
            logits = np.asarray(self.model.predict_on_batch(views[start : start + self.batch_size]), "float64")
            logits -= logits.max(axis=-1, keepdims=True)
            exp = np.exp(logits)
            probs.append(exp / exp.sum(axis=-1, keepdims=True))
        return np.concatenate(probs).mean(axis=0)

    def __call__(self, video) -> Result:
        start = time.perf_counter()
        views, timings = self.views(video)
        model_start = time.perf_counter()
        probabilities = self.score_views(views)
        timings["model_s"] = time.perf_counter() - model_start
        timings["total_s"] = time.perf_counter() - start
        timings["views"] = int(len(views))
        return Result(probabilities, self.class_names, timings)


def classify(video, preset, top_k=5, views=None, batch_size=1):
    """Ranked (label, probability) pairs for a video path or a (T, H, W, 3) uint8 array."""
    if int(top_k) < 1:  # before the model is loaded and the video decoded
        raise ValueError(f"top-k must be at least 1, got {top_k}")
    return VideoClassifier(preset, views=views, batch_size=batch_size)(video).top_k(top_k)


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
