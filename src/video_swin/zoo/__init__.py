"""Presets by name: the released checkpoints, fetched, checked, converted and cached on first use, and the
synthetic-motion model shipped inside the package (`builtin/`).

* `registry`         - the names and their facts (URLs, variant, window, classes, published accuracy): data.
* `download`         - one file over HTTP: resumable, timed out, checked, atomic; the cross-process lock.
* `resolve`          - `resolve_preset(name_or_path) -> Path`, the one resolver every entry point uses, and
                       `load_preset` / `from_preset` / `download_preset` / `list_presets` over it.
* `synthetic_motion` - the shipped preset at work on generated clips.

Attributes are imported lazily: `import video_swin.zoo` imports neither Keras nor the network code.
"""

import importlib

_EXPORTS = {
    "resolve_preset": "video_swin.zoo.resolve",
    "load_preset": "video_swin.zoo.resolve",
    "from_preset": "video_swin.zoo.resolve",
    "download_preset": "video_swin.zoo.resolve",
    "list_presets": "video_swin.zoo.resolve",
    "is_cached": "video_swin.zoo.resolve",
    "zoo_home": "video_swin.zoo.resolve",
    "ZooError": "video_swin.zoo.resolve",
    "DownloadError": "video_swin.zoo.download",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'video_swin.zoo' has no attribute {name!r}")
