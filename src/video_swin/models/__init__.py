"""The model: window geometry, attention kernels, layers, backbone and classifier, preset folders.

* `window_ops`  - pure functions of the shifted-window scheme (padding, shift, partition, mask, bias index).
* `attention`   - attention inside windows: the kernels side by side and the one function that picks one.
* `activations` - the exact GELU and its memory-lean training forms; `gradients` - custom-gradient helper.
* `layers`      - the Keras layers (patch embedding, window attention, blocks, stages, patch merging).
* `backbone`    - `VideoSwinBackbone` and the official variants; `classifier` - `VideoSwinClassifier`.
* `inference`   - how `predict` / `compile` execute them (XLA on TensorFlow); never what they compute.
* `presets`     - the preset folder: `config.json` + `model.weights.h5` + `metadata.json`.

Attributes are imported lazily: `import video_swin.models` does not import Keras.
"""

import importlib

_EXPORTS = {
    "VideoSwinBackbone": "video_swin.models.backbone",
    "VARIANTS": "video_swin.models.backbone",
    "variant_config": "video_swin.models.backbone",
    "check_pixels": "video_swin.models.backbone",
    "VideoSwinClassifier": "video_swin.models.classifier",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'video_swin.models' has no attribute {name!r}")
