"""Video Swin Transformer in Keras 3, numerically identical to the PyTorch original.

The package, one folder per concern (docs/architecture.md has the map and the data flow):

* `models`      - window ops, attention kernels, layers, backbone, classifier, preset folders
* `checkpoints` - reading .pth / .safetensors without PyTorch, name mapping, convert, inflate
* `data`        - decoding, sampling, preprocessing, class names, synthetic motion data
* `inference`   - classify, timeline (long videos, live streams), features per window, explain
* `training`    - fine-tuning and training, tf.data pipelines, evaluation
* `deploy`      - exports (SavedModel, TFLite, ONNX) and the HTTP service with its web page (`deploy.serve`)
* `zoo`         - presets by name: the released checkpoints fetched, checked, converted and cached on
                  first use (`resolve_preset`), and the synthetic-motion model shipped in the package
* `checks`      - our model against torchvision: `verify` (numbers) and `bench` (speed, memory)
* `cli`         - the `video-swin` command
* `runtime`     - process-wide settings, applied by `runtime.configure()` (never on import)
* `files`       - atomic writes
* `plotting`    - matplotlib figures saved as PNG (no pyplot, the user's settings untouched)

Attributes are imported lazily: importing the package does not import TensorFlow, so a process can
import torch first when it needs both (the other order crashes with torch 2.14). Importing changes
nothing in the process.
"""

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "VideoSwinBackbone": "video_swin.models.backbone",
    "VideoSwinClassifier": "video_swin.models.classifier",
    "from_preset": "video_swin.zoo.resolve",
    "load_preset": "video_swin.zoo.resolve",
    "resolve_preset": "video_swin.zoo.resolve",
    "download_preset": "video_swin.zoo.resolve",
    "list_presets": "video_swin.zoo.resolve",
    "save_preset": "video_swin.models.presets",
    "convert_checkpoint": "video_swin.checkpoints.convert",
    "classify": "video_swin.inference.classify",
    "VideoClassifier": "video_swin.inference.classify",
    "explain": "video_swin.inference.explain",
    "Explainer": "video_swin.inference.explain",
    "timeline": "video_swin.inference.timeline",
    "TimelineModel": "video_swin.inference.timeline",
    "extract_features": "video_swin.inference.features",
    "FeatureExtractor": "video_swin.inference.features",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'video_swin' has no attribute {name!r}")
