"""Presets: a folder with `config.json`, `model.weights.h5` and `metadata.json`.

`config.json` holds the architecture, the class names and the test protocol (preprocessing constants),
so a preset is all that `classify` needs. Presets are written atomically: a failure leaves no folder.
"""

from __future__ import annotations

import contextlib
import datetime
import json
from dataclasses import dataclass, field
from pathlib import Path

from video_swin import files
from video_swin.models.backbone import VARIANTS, VideoSwinBackbone
from video_swin.models.classifier import VideoSwinClassifier

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.weights.h5"
METADATA_FILE = "metadata.json"
FORMAT_VERSION = 1

# The official test protocols (mmaction2 configs of the Video Swin release), on the 0-255 pixel scale.
KINETICS_PROTOCOL = {
    "mean": [123.675, 116.28, 103.53],
    "std": [58.395, 57.12, 57.375],
    "short_side": 224,
    "crop_size": 224,
    "sampling": "dense",
    "clip_len": 32,
    "frame_interval": 2,
    "num_clips": 4,
    "num_crops": 3,
}
SSV2_PROTOCOL = {**KINETICS_PROTOCOL, "sampling": "uniform", "num_clips": 1}

ARCHITECTURE_KEYS = (
    "embed_dim",
    "depths",
    "num_heads",
    "window_size",
    "patch_size",
    "mlp_ratio",
    "qkv_bias",
    "patch_norm",
    "dropout",
    "attn_dropout",
    "drop_path_rate",
    "background_difference",
)


class PresetError(ValueError):
    """A preset folder is missing, incomplete or inconsistent."""


def protocol_for(num_classes, window_size=None):
    """The published test protocol for a checkpoint: SSv2 (174 classes) or Kinetics (everything else)."""
    return dict(SSV2_PROTOCOL if num_classes == 174 else KINETICS_PROTOCOL)


def variant_name(architecture: dict) -> str:
    for name, spec in VARIANTS.items():
        if (
            architecture["embed_dim"] == spec["embed_dim"]
            and tuple(architecture["depths"]) == spec["depths"]
            and tuple(architecture["num_heads"]) == spec["num_heads"]
        ):
            return name
    return "custom"


@dataclass
class Preset:
    path: Path
    config: dict
    metadata: dict = field(default_factory=dict)

    @property
    def class_names(self):
        return self.config.get("class_names")

    @property
    def preprocessing(self):
        return self.config.get("preprocessing") or dict(KINETICS_PROTOCOL)

    def build_model(self):
        return model_from_config(self.config)

    def load_model(self):
        model = self.build_model()
        try:
            model.load_weights(self.path / WEIGHTS_FILE)
        except Exception as exc:  # h5py/Keras raise many types; one clear line for all of them
            raise PresetError(f"{self.path / WEIGHTS_FILE}: cannot load weights: {_one_line(exc)}") from None
        return model


def architecture_of(model) -> dict:
    backbone = model.backbone if isinstance(model, VideoSwinClassifier) else model
    config = backbone.get_config()
    architecture = {key: config[key] for key in ARCHITECTURE_KEYS}
    if not architecture["background_difference"]:  # keeps the official presets' config.json as it was
        del architecture["background_difference"]
    return architecture


def model_from_config(config: dict):
    architecture = {k: v for k, v in config["architecture"].items() if k in ARCHITECTURE_KEYS}
    backbone = VideoSwinBackbone(**architecture)
    if config.get("num_classes"):
        return VideoSwinClassifier(
            backbone, num_classes=config["num_classes"], head_dropout=config.get("head_dropout", 0.5)
        )
    return backbone


def make_config(model, class_names=None, preprocessing=None, name=None) -> dict:
    architecture = architecture_of(model)
    num_classes = model.num_classes if isinstance(model, VideoSwinClassifier) else None
    if class_names is not None and num_classes is not None and len(class_names) != num_classes:
        raise PresetError(f"{len(class_names)} class names for a head with {num_classes} classes")
    return {
        "format_version": FORMAT_VERSION,
        "name": name,
        "variant": variant_name(architecture),
        "architecture": architecture,
        "num_classes": num_classes,
        "head_dropout": model.head_dropout if num_classes else None,
        "class_names": list(class_names) if class_names is not None else None,
        "preprocessing": preprocessing or protocol_for(num_classes, architecture["window_size"]),
    }


def save_preset(model, out_dir, class_names=None, preprocessing=None, metadata=None, name=None, overwrite=False):
    """Writes a preset folder atomically and returns its path."""
    from video_swin import __version__

    out_dir = Path(out_dir)
    config = make_config(model, class_names, preprocessing, name=name or out_dir.name)
    meta = {
        "package_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **(metadata or {}),
    }
    with files.atomic_directory(out_dir, overwrite=overwrite) as tmp:
        model.save_weights(tmp / WEIGHTS_FILE)
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
        (tmp / METADATA_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return out_dir


def load_preset(path) -> Preset:
    path = Path(path)
    if not path.is_dir():
        raise PresetError(f"{path}: preset folder not found")
    for required in (CONFIG_FILE, WEIGHTS_FILE):
        if not (path / required).is_file():
            raise PresetError(f"{path}: not a preset, {required} is missing")
    try:
        config = json.loads((path / CONFIG_FILE).read_text())
        architecture = config["architecture"]
        missing = [k for k in ("embed_dim", "depths", "num_heads", "window_size") if k not in architecture]
        if missing:
            raise KeyError(", ".join(missing))
    except (ValueError, KeyError, TypeError) as exc:
        raise PresetError(f"{path / CONFIG_FILE}: invalid preset config ({_one_line(exc)})") from None
    metadata = {}
    if (path / METADATA_FILE).is_file():
        with contextlib.suppress(ValueError):
            metadata = json.loads((path / METADATA_FILE).read_text())
    return Preset(path, config, metadata)


def from_preset(path):
    """The classifier (or the backbone, for a preset without head) with the preset's weights. It takes
    (B, T, H, W, 3) float32 normalised pixels and returns logits (or features).

    Applies `video_swin.runtime.configure()` first (an entry point of the package; see there to turn
    its settings off)."""
    from video_swin import runtime

    runtime.configure()
    return load_preset(path).load_model()


def _one_line(exc) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
