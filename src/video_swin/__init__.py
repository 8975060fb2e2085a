"""Video Swin Transformer in Keras 3, numerically identical to the PyTorch original.

Attributes are imported lazily: importing the package does not import TensorFlow, so a process can
import torch first when it needs both (the other order crashes with torch 2.14).
"""

import importlib
import os

# TensorFlow's default CPU allocator returns every large buffer to the OS when it is freed, so XLA's
# buffers are mapped, page-faulted and zeroed afresh on every call: about 2.2 GiB of pages per training
# step of Swin-T at batch 2 x 16x224x224 (1.9-2.3 s of system CPU time per step) and 74 MiB (one compiled
# function) to 233 MiB (one per stage, as `predict_on_batch` runs it) per inference call at batch 1.
# TensorFlow's BFC allocator keeps freed memory for reuse (benchmarks/RESULTS.md). TensorFlow picks
# its CPU allocator when it makes its first tensor, so this takes effect where video_swin is imported
# before anything runs on TensorFlow; a user's own setting of the variable is kept.
POOLED_CPU_ALLOCATOR = ("TF_CPU_ALLOCATOR_USE_BFC", "true")
os.environ.setdefault(*POOLED_CPU_ALLOCATOR)

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
