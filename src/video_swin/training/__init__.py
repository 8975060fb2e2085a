"""Fine-tuning and training Video Swin models on your own videos, on one machine or many.

* `data`      - dataset listings (class folders, `path label` lists, TFRecords, in-memory arrays) and the
                tf.data pipelines: random clips + augmentation for training, a deterministic centre clip /
                centre crop for validation, the official multi-view protocol for evaluation.
* `tfrecords` - `video-swin extract-tfrecords`: videos -> SequenceExamples of JPEG frames, and a reader
                that decodes inside the graph.
* `model`     - a classifier from any preset (fresh head), `frozen_stages`, activation recomputation.
* `optim`     - AdamW with per-variable decay exclusion and a backbone lr multiplier, warm-up + cosine.
* `train`     - the training loop (`video-swin train`): accumulation, mixed precision, tf.distribute,
                atomic checkpoints and resume, progress, history and a PNG plot, the final preset.
* `evaluate`  - `video-swin evaluate`: top-1/top-5 and the confusion matrix.

Importing this package does not import TensorFlow.
"""

import importlib

_EXPORTS = {
    "train": "video_swin.training.train",
    "TrainConfig": "video_swin.training.train",
    "evaluate": "video_swin.training.evaluate",
    "build_classifier": "video_swin.training.model",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'video_swin.training' has no attribute {name!r}")
