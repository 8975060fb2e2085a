"""Video Swin Transformer in Keras 3, numerically identical to the PyTorch original.

Attributes are imported lazily: importing the package does not import TensorFlow, so a process can
import torch first when it needs both (the other order crashes with torch 2.14).
"""

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "VideoSwinBackbone": "video_swin.model",
    "VideoSwinClassifier": "video_swin.model",
    "from_preset": "video_swin.presets",
    "load_preset": "video_swin.presets",
    "save_preset": "video_swin.presets",
    "convert_checkpoint": "video_swin.convert",
    "classify": "video_swin.classify",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'video_swin' has no attribute {name!r}")
