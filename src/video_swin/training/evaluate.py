"""Evaluation: top-1 / top-5 and the confusion matrix, with the official multi-view protocol (softmax
per view, mean over the views) or the quick single-view one (centre clip, centre crop)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from video_swin import files


def predict_views(model, dataset, batch_videos: int = 1, max_views_per_call: int = 24, log=None):
    """Runs the model on a views dataset ((V, T, C, C, 3), label, index per video).

    Returns (probabilities (N, classes) averaged over views, labels (N,), indices (N,), loss (N,))
    where loss is the cross-entropy of the averaged probabilities (no label smoothing).
    """
    import tensorflow as tf

    @tf.function(reduce_retracing=True)
    def forward(x):
        logits = tf.cast(model(x, training=False), tf.float32)
        return tf.nn.softmax(logits, axis=-1)

    probs, labels, indices = [], [], []
    t0, done = time.perf_counter(), 0
    for views, label, index in dataset.batch(int(batch_videos)).as_numpy_iterator():
        b, v = views.shape[:2]
        flat = views.reshape((b * v,) + views.shape[2:])
        chunks = [forward(flat[i : i + max_views_per_call]).numpy() for i in range(0, len(flat), max_views_per_call)]
        p = np.concatenate(chunks).reshape(b, v, -1).mean(axis=1)
        probs.append(p)
        labels.append(label)
        indices.append(index)
        done += b
        if log is not None and done % max(1, 50 // b * b) == 0:
            log(f"  {done} videos, {done / (time.perf_counter() - t0):.1f} videos/s")
    if not probs:
        return np.zeros((0, 0), np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    probs = np.concatenate(probs)
    labels = np.concatenate(labels).astype(np.int64)
    loss = -np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, None))
    return probs, labels, np.concatenate(indices), loss


def metrics(probs: np.ndarray, labels: np.ndarray, num_classes: int | None = None) -> dict:
    """top-1, top-5 (top-k with k = min(5, classes)), mean class accuracy and the confusion matrix
    (rows: true class, columns: predicted)."""
    num_classes = int(num_classes or probs.shape[1])
    n = len(labels)
    if n == 0:
        return {"n": 0, "top1": float("nan"), "top5": float("nan"), "mean_class_accuracy": float("nan"),
                "confusion": np.zeros((num_classes, num_classes), np.int64).tolist()}
    pred = probs.argmax(axis=1)
    k = min(5, probs.shape[1])
    topk = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    confusion = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(confusion, (labels, pred), 1)
    support = confusion.sum(axis=1)
    per_class = np.divide(np.diag(confusion), support, out=np.full(num_classes, np.nan), where=support > 0)
    return {
        "n": int(n),
        "top1": float((pred == labels).mean()),
        "top5": float((topk == labels[:, None]).any(axis=1).mean()),
        "top5_k": int(k),
        "mean_class_accuracy": float(np.nanmean(per_class)),
        "per_class_accuracy": [None if np.isnan(a) else float(a) for a in per_class],
        "confusion": confusion.tolist(),
    }


def format_confusion(confusion, class_names, max_classes: int = 30) -> str:
    """The confusion matrix as text (rows: true class, columns: predicted class index)."""
    confusion = np.asarray(confusion)
    n = len(class_names)
    if n > max_classes:
        return f"(confusion matrix of {n} classes: see the JSON output)"
    names = [f"{i:>2} {c[:20]}" for i, c in enumerate(class_names)]
    label_w = max(len(s) for s in names)
    cell = max(3, len(str(int(confusion.max()))) if confusion.size else 3)
    lines = ["confusion (rows: true class, columns: predicted class)",
             " " * label_w + " " + " ".join(f"{i:>{cell}}" for i in range(n))]
    for name, row in zip(names, confusion):
        lines.append(f"{name:<{label_w}} " + " ".join(f"{int(v):>{cell}}" for v in row))
    return "\n".join(lines)


def evaluate(preset, data, views: str | None = None, quick: bool = False, workers: int | None = None,
             batch_videos: int | None = None, out: str | None = None, limit: int | None = None, log=print) -> dict:
    """Scores a classifier preset on a folder / list / TFRecord folder.

    Protocol: the preset's (official multi-view), `views="AxB"` to override, or `quick=True` for one
    centre clip with a centre crop. Returns the metrics dict (and writes it as JSON to `out`).
    """
    from video_swin.data.preprocess import Protocol
    from video_swin.training import data as data_mod
    from video_swin.training import tfrecords
    from video_swin.zoo import resolve as zoo_resolve

    data_mod.check_counts(workers=workers, batch_videos=batch_videos, limit=limit)
    if out:
        files.check_output_path(out)
    preset_obj = zoo_resolve.load_preset(preset)
    class_names = preset_obj.class_names
    if not class_names:
        raise ValueError(f"{preset}: the preset has no classifier head (backbone only); fine-tune it first")
    protocol = Protocol.from_dict(preset_obj.preprocessing)
    if quick:
        protocol = protocol.with_views("1x1")
    elif views:
        protocol = protocol.with_views(views)
    model = preset_obj.load_model()
    t0 = time.perf_counter()
    if tfrecords.is_tfrecord_dir(data):
        spec = data_mod.ClipSpec(clip_len=protocol.clip_len, frame_interval=protocol.frame_interval,
                                 short_side=protocol.short_side, crop_size=protocol.crop_size,
                                 mean=protocol.mean, std=protocol.std)
        manifest = tfrecords.read_manifest(data)
        if list(manifest["class_names"]) != list(class_names):
            raise ValueError(f"{data}: the TFRecords' classes differ from the preset's")
        dataset = tfrecords.tfrecord_views_dataset(data, spec, workers)
        mode = "centre clip, centre crop (TFRecords)"
    else:
        source = data_mod.make_source(data, class_names)
        indices = None if limit is None else np.arange(min(int(limit), len(source)))
        dataset = data_mod.views_dataset(source, protocol, workers, indices=indices)
        mode = f"{protocol.num_clips} clip(s) x {protocol.num_crops} crop(s)"
    log(f"evaluating {preset} on {data}: {mode}, {protocol.clip_len} frames x {protocol.frame_interval}, "
        f"short side {protocol.short_side}, crop {protocol.crop_size}")
    if batch_videos is None:
        batch_videos = max(1, 16 // protocol.num_views)
    probs, labels, indices, loss = predict_views(model, dataset, batch_videos=batch_videos, log=log)
    result = metrics(probs, labels, len(class_names))
    result.update({
        "preset": str(preset), "data": str(data), "views": protocol.views, "loss": float(loss.mean()) if len(loss) else None,
        "class_names": list(class_names), "seconds": round(time.perf_counter() - t0, 2),
    })
    log(f"top-1 {100 * result['top1']:.2f}%  top-{result.get('top5_k', 5)} {100 * result['top5']:.2f}%  "
        f"mean class accuracy {100 * result['mean_class_accuracy']:.2f}%  ({result['n']} videos, "
        f"{result['seconds']:.1f}s)")
    log(format_confusion(result["confusion"], class_names))
    if out:
        files.atomic_write_text(out, json.dumps(result, indent=2) + "\n")
    return result


def add_arguments(parser):
    parser.add_argument("--data", required=True, help="class-folder tree, 'path label' list or TFRecord folder")
    parser.add_argument("--preset", required=True,
                        help="a classifier preset: folder or registered name (`video-swin presets`)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--views", help="override the preset's views, e.g. 4x3 (clips x crops)")
    mode.add_argument("--quick", action="store_true", help="one centre clip, centre crop per video")
    parser.add_argument("--workers", type=int, default=None, help="parallel decoders (default min(4, CPUs))")
    parser.add_argument("--batch-videos", type=int, default=None, help="videos per model call")
    parser.add_argument("--limit", type=int, default=None, help="only the first N videos")
    parser.add_argument("--out", help="write the metrics and confusion matrix as JSON here")
    return parser


def run(args) -> int:
    evaluate(args.preset, args.data, views=args.views, quick=args.quick, workers=args.workers,
             batch_videos=args.batch_videos, out=args.out, limit=args.limit)
    return 0
