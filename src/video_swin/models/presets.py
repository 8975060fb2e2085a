"""Presets: a folder with `config.json`, `model.weights.h5` and `metadata.json`.

`config.json` holds the architecture, the class names and the test protocol (preprocessing constants),
so a preset is all that `classify` needs. Presets are written atomically: a failure leaves no folder.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import json
import math
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

    def build_model(self, precision=None):
        from video_swin.models.precision import dtype_policy

        with dtype_policy(precision):
            return model_from_config(self.config)

    def load_model(self, precision=None):
        """The model with the preset's weights, its layers computing in `precision` ('float32', or the mixed
        'bfloat16' / 'float16': float32 weights, see `models.precision`; None: Keras' global dtype policy)."""
        weights = self.path / WEIGHTS_FILE
        needed = 2 * parameter_count(self.config["architecture"], self.config.get("num_classes"))
        if weights.stat().st_size < needed:  # 2 bytes a weight: even half precision would need this much
            raise PresetError(
                f"{self.path / CONFIG_FILE}: the architecture has {needed // 2:,} weights, more than "
                f"{WEIGHTS_FILE} ({weights.stat().st_size:,} bytes) can hold; config and weights do not belong together"
            )
        model = self.build_model(precision)
        try:
            model.load_weights(self.path / WEIGHTS_FILE)
        except Exception as exc:  # h5py/Keras raise many types; one clear line for all of them
            raise PresetError(f"{self.path / WEIGHTS_FILE}: cannot load weights: {_one_line(exc)}") from None
        return model


def parameter_count(architecture: dict, num_classes=None) -> int:
    """The number of weights a model of `architecture` (and a head of `num_classes`) has, without building
    it: what a preset's weights file must hold before the model is built (a config that asks for far more
    than the file holds is refused before any memory goes to it)."""
    c = int(architecture["embed_dim"])
    wd, wh, ww = (int(v) for v in architecture["window_size"])
    rows = (2 * wd - 1) * (2 * wh - 1) * (2 * ww - 1)
    qkv_bias = bool(architecture.get("qkv_bias", True))
    total = c * 3 * math.prod(int(v) for v in architecture.get("patch_size", (2, 4, 4))) + c
    total += 2 * c if architecture.get("patch_norm", True) else 0
    depths = [int(d) for d in architecture["depths"]]
    for i, (depth, heads) in enumerate(zip(depths, architecture["num_heads"])):
        d = c * 2**i
        hidden = int(d * float(architecture.get("mlp_ratio", 4.0)))
        block = 2 * d + rows * int(heads) + 3 * d * d + (3 * d if qkv_bias else 0) + d * d + d + 2 * d
        block += d * hidden + hidden + hidden * d + d
        total += depth * block
        if i < len(depths) - 1:
            total += 8 * d + 8 * d * d
    features = c * 2 ** (len(depths) - 1)
    total += 2 * features
    if num_classes:
        total += features * int(num_classes) + int(num_classes)
    return total


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
    data = weights_file_bytes(model)
    with files.atomic_directory(out_dir, overwrite=overwrite) as tmp:
        files.write_bytes(tmp / WEIGHTS_FILE, data)
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
        (tmp / METADATA_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return out_dir


def weights_file_bytes(model) -> bytes:
    """The bytes of the `.weights.h5` file `model.save_weights` would write, made in memory. Written to
    disk as bytes, a full disk is one clean OSError; HDF5 writing to a full disk itself ends the process
    with a segmentation fault (tests/test_faults.py). Keras' own writer, given a buffer (its public
    `save_weights` takes only a path)."""
    from keras.src.saving import saving_lib

    buffer = io.BytesIO()
    store = saving_lib.H5IOStore(buffer, mode="w")
    saving_lib._save_state(model, weights_store=store, assets_store=None, inner_path="", visited_saveables=set())
    store.close()
    return buffer.getvalue()


def load_preset(path) -> Preset:
    path = Path(path)
    if not path.is_dir():
        raise PresetError(f"{path}: preset folder not found")
    for required in (CONFIG_FILE, WEIGHTS_FILE):
        if not (path / required).is_file():
            raise PresetError(f"{path}: not a preset, {required} is missing or not a file")
    try:
        config = json.loads((path / CONFIG_FILE).read_text())
    except (ValueError, OSError) as exc:
        raise PresetError(f"{path / CONFIG_FILE}: invalid preset config ({_one_line(exc)})") from None
    problem = config_problem(config)
    if problem:
        raise PresetError(f"{path / CONFIG_FILE}: invalid preset config: {problem}")
    metadata = {}
    if (path / METADATA_FILE).is_file():
        with contextlib.suppress(ValueError):
            metadata = json.loads((path / METADATA_FILE).read_text())
    return Preset(path, config, metadata)


_REQUIRED_ARCHITECTURE = ("embed_dim", "depths", "num_heads", "window_size")


def config_problem(config) -> str | None:
    """What is wrong with a preset's config.json (None: nothing). Only the architecture's own keys build
    a model: a config naming a class or module (a Keras object's config, a Lambda) is refused, never
    deserialised."""
    if not isinstance(config, dict):
        return f"expected a JSON object, got {type(config).__name__}"
    if "class_name" in config or "module" in config:
        return (f"it describes a Keras object (class_name {config.get('class_name')!r}, module "
                f"{config.get('module')!r}), not a video_swin preset; presets never deserialise Keras objects")
    architecture = config.get("architecture")
    if not isinstance(architecture, dict):
        return "'architecture' is missing or not an object"
    unknown = sorted(set(architecture) - set(ARCHITECTURE_KEYS))
    if unknown:
        return f"unknown architecture key(s) {unknown}; expected a subset of {list(ARCHITECTURE_KEYS)}"
    missing = [k for k in _REQUIRED_ARCHITECTURE if k not in architecture]
    if missing:
        return f"architecture lacks {', '.join(missing)}"

    def positive_ints(key, length=None):
        value = architecture.get(key)
        ok = isinstance(value, list) and value and all(type(v) is int and v >= 1 for v in value)
        if not ok or (length is not None and len(value) != length):
            size = f"{length} " if length else ""
            return f"architecture {key} must be a list of {size}positive integers, got {value!r}"
        return None

    if type(architecture["embed_dim"]) is not int or architecture["embed_dim"] < 1:
        return f"architecture embed_dim must be a positive integer, got {architecture['embed_dim']!r}"
    problem = (positive_ints("depths") or positive_ints("num_heads", len(architecture["depths"]))
               or positive_ints("window_size", 3) or ("patch_size" in architecture and positive_ints("patch_size", 3)))
    if problem:
        return problem
    for i, heads in enumerate(architecture["num_heads"]):
        if (architecture["embed_dim"] * 2**i) % heads:
            return f"architecture num_heads[{i}] = {heads} does not divide stage {i}'s {architecture['embed_dim'] * 2**i} channels"
    ratio = architecture.get("mlp_ratio", 4.0)
    if type(ratio) not in (int, float) or int(architecture["embed_dim"] * ratio) < 1:
        return f"architecture mlp_ratio must be a positive number, got {ratio!r}"
    for key in ("qkv_bias", "patch_norm", "background_difference"):
        if key in architecture and type(architecture[key]) is not bool:
            return f"architecture {key} must be true or false, got {architecture[key]!r}"
    for key in ("dropout", "attn_dropout", "drop_path_rate"):
        if key in architecture and not (type(architecture[key]) in (int, float) and 0 <= architecture[key] < 1):
            return f"architecture {key} must be a number in [0, 1), got {architecture[key]!r}"
    num_classes, names = config.get("num_classes"), config.get("class_names")
    if num_classes is not None and (type(num_classes) is not int or num_classes < 1):
        return f"num_classes must be a positive integer or null, got {num_classes!r}"
    if names is not None:
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            return "class_names must be a list of strings"
        if len(names) != (num_classes or 0):
            return f"{len(names)} class_names for {num_classes or 0} classes"
    dropout = config.get("head_dropout")
    if dropout is not None and not (type(dropout) in (int, float) and 0 <= dropout < 1):
        return f"head_dropout must be a number in [0, 1), got {dropout!r}"
    return None


def from_preset(path, precision=None):
    """The classifier (or the backbone, for a preset without head) with the preset's weights. It takes
    (B, T, H, W, 3) float32 normalised pixels and returns logits (or features).

    precision: None (default): Keras' global dtype policy, float32 unless you set a mixed one
    (`keras.config.set_dtype_policy("mixed_bfloat16")` keeps working as with any Keras model); 'float32'
    (the reference, whatever the global policy), or 'bfloat16' where the CPU multiplies bfloat16 natively
    (else it warns in one line and loads float32; see `models.precision`), or 'float16'.
    Applies `video_swin.runtime.configure()` first (an entry point of the package; see there to turn
    its settings off)."""
    import warnings

    from video_swin import runtime
    from video_swin.models.precision import inference_precision

    runtime.configure()
    if precision is not None:
        precision, notice = inference_precision(precision)
        if notice:
            warnings.warn(notice, RuntimeWarning, stacklevel=2)
    return load_preset(path).load_model(precision)


def _one_line(exc) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
