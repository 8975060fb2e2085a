"""Checkpoint conversion: official / torchvision `.pth` or `.safetensors` -> a preset folder.

Needs no PyTorch: tensors are read by `checkpoint_io` (restricted unpickler, no code execution).
Format, variant, window and class count are detected from the tensors; arguments may override them.
"""

from __future__ import annotations

import datetime
import re
from pathlib import Path

import numpy as np

from video_swin import files
from video_swin.checkpoints import checkpoint_io, weights
from video_swin.data import labels
from video_swin.models import presets
from video_swin.models import VideoSwinBackbone, VideoSwinClassifier

# Stochastic depth of the released checkpoints (model zoo); only matters for fine-tuning.
DEFAULT_DROP_PATH = {"tiny": 0.1, "small": 0.1, "base": 0.2, "large": 0.2, "custom": 0.1}


class ConversionError(ValueError):
    """A checkpoint cannot be converted; the message names what is wrong."""


def detect_layout(tensors: dict) -> str:
    """'official' (mmaction2: backbone.*, cls_head.*) or 'torchvision' (swin3d_*: features.*, head.*)."""
    keys = list(tensors)
    embed = tensors.get("patch_embed.proj.weight", tensors.get("features.0.0.weight"))
    if embed is not None and embed.ndim == 4:
        raise ConversionError(
            "this is a 2D (image) Swin checkpoint; use `video-swin convert --inflate` to inflate it to 3D"
        )
    if any(k.startswith("backbone.") for k in keys):
        return "official"
    if embed is not None and embed.ndim == 5:
        if any(k.startswith("features.") for k in keys):
            return "torchvision"
        if any(k.startswith("layers.") for k in keys):
            return "official-backbone"
    raise ConversionError(
        f"unrecognised checkpoint layout (first keys: {', '.join(keys[:3]) or 'none'}); expected the official "
        "Video Swin (backbone.*) or torchvision swin3d_* (features.*) naming"
    )


def to_official_names(tensors: dict) -> tuple[dict, str]:
    layout = detect_layout(tensors)
    if layout == "torchvision":
        tensors = {weights.torchvision_to_official(k): v for k, v in tensors.items()}
    elif layout == "official-backbone":  # a bare backbone state dict (keys without `backbone.`)
        tensors = {("backbone." + k): v for k, v in tensors.items()}
        layout = "official"
    return tensors, layout


def infer_window(tensors: dict, table_rows: int) -> tuple[int, int, int]:
    """Window (Wd, Wh, Ww) from the bias-table rows (2Wd-1)(2Wh-1)(2Ww-1) and, when present, the index
    size N = Wd*Wh*Ww. Released windows are square in space; 7 is preferred when ambiguous."""
    index_key = next((k for k in tensors if k.endswith("relative_position_index")), None)
    n = tensors[index_key].shape[0] if index_key else None
    candidates = []
    for wh in range(1, 65):
        spatial = (2 * wh - 1) ** 2
        if table_rows % spatial:
            continue
        temporal = table_rows // spatial
        if temporal % 2 == 0:
            continue
        wd = (temporal + 1) // 2
        if n is None or wd * wh * wh == n:
            candidates.append((wd, wh, wh))
    if len(candidates) == 1:
        return candidates[0]
    preferred = [c for c in candidates if c[1] == 7]
    if len(preferred) == 1:
        return preferred[0]
    raise ConversionError(
        f"cannot infer the window from a bias table of {table_rows} rows; pass --window D H W"
    )


def infer_architecture(tensors: dict) -> dict:
    """Backbone arguments from official-named tensors."""
    proj = tensors.get("backbone.patch_embed.proj.weight")
    if proj is None or proj.ndim != 5:
        raise ConversionError("backbone.patch_embed.proj.weight is missing or not 5-D (C, 3, pt, ph, pw)")
    blocks = {}
    for key in tensors:
        m = re.match(r"^backbone\.layers\.(\d+)\.blocks\.(\d+)\.attn\.relative_position_bias_table$", key)
        if m:
            blocks.setdefault(int(m.group(1)), {})[int(m.group(2))] = tensors[key].shape
    if not blocks or sorted(blocks) != list(range(len(blocks))):
        raise ConversionError(f"stages found: {sorted(blocks)}; expected consecutive stages 0..k")
    depths = [max(blocks[i]) + 1 for i in sorted(blocks)]
    num_heads = [blocks[i][0][1] for i in sorted(blocks)]
    table_rows = blocks[0][0][0]
    return {
        "embed_dim": int(proj.shape[0]),
        "depths": depths,
        "num_heads": num_heads,
        "window_size": list(infer_window(tensors, table_rows)),
        "patch_size": [int(s) for s in proj.shape[2:]],
        "patch_norm": "backbone.patch_embed.norm.weight" in tensors,
        "qkv_bias": "backbone.layers.0.blocks.0.attn.qkv.bias" in tensors,
    }


def build_model_for(tensors: dict, variant=None, window_size=None, num_classes=None, drop_path_rate=None):
    architecture = infer_architecture(tensors)
    if variant is not None:
        from video_swin.models import variant_config

        architecture.update(variant_config(variant))
    if window_size is not None:
        architecture["window_size"] = [int(w) for w in window_size]
    name = presets.variant_name(architecture)
    architecture["drop_path_rate"] = DEFAULT_DROP_PATH[name] if drop_path_rate is None else drop_path_rate
    backbone = VideoSwinBackbone(**architecture)
    head = tensors.get("cls_head.fc_cls.weight")
    if num_classes is None and head is not None:
        num_classes = int(head.shape[0])
    if num_classes:
        return VideoSwinClassifier(backbone, num_classes=num_classes)
    return backbone


def convert_checkpoint(
    src,
    out_dir,
    *,
    variant=None,
    window_size=None,
    num_classes=None,
    labels_file=None,
    drop_path_rate=None,
    overwrite=False,
    metadata=None,
):
    """Converts an official or torchvision checkpoint (.pth or .safetensors) into a preset folder.

    metadata: extra entries for the preset's metadata.json (the zoo records where a download came from).
    Returns the preset path. Raises `ConversionError` / `checkpoint_io.CheckpointError` with a one-line
    message on any problem; nothing is written then.
    """
    src, out_dir = Path(src), Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise ConversionError(f"{out_dir} already exists (pass --overwrite to replace it)")
    raw = checkpoint_io.read_tensors(src)
    tensors, layout = to_official_names(raw)
    model = build_model_for(tensors, variant, window_size, num_classes, drop_path_rate)
    try:
        weights.load_official_weights(model, tensors)
    except weights.WeightMappingError as exc:
        raise ConversionError(f"{src}: checkpoint does not fit the {_describe(model)}: {exc}") from None

    class_names = None
    if isinstance(model, VideoSwinClassifier):
        if labels_file is not None:
            class_names = labels.read_label_file(labels_file)
        else:
            class_names = labels.labels_for_num_classes(model.num_classes)
        if class_names is None:
            class_names = [f"class_{i}" for i in range(model.num_classes)]
        if len(class_names) != model.num_classes:
            raise ConversionError(
                f"{labels_file}: {len(class_names)} labels for a head with {model.num_classes} classes"
            )
    metadata = {
        "source_checkpoint": src.name,
        "source_sha256": files.sha256_of(src),
        "source_layout": layout,
        "converted": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **(metadata or {}),
    }
    return presets.save_preset(model, out_dir, class_names=class_names, metadata=metadata, overwrite=overwrite)


def _describe(model) -> str:
    backbone = model.backbone if isinstance(model, VideoSwinClassifier) else model
    name = presets.variant_name(presets.architecture_of(model))
    heads = f", {model.num_classes} classes" if isinstance(model, VideoSwinClassifier) else ""
    return f"{name} model (window {tuple(backbone.window_size)}{heads})"


def random_official_state_dict(variant="tiny", num_classes=400, seed=0, window_size=(8, 7, 7)) -> dict:
    """A complete official-layout state dict with seeded random values for every tensor (norms and bias
    tables included): the embedded default for `verify` and the demo."""
    rng = np.random.default_rng(seed)
    model = VideoSwinClassifier(
        VideoSwinBackbone.from_variant(variant, window_size=window_size), num_classes=num_classes
    )
    out = {}
    for key, array in weights.export_official_weights(model).items():
        if key.endswith("relative_position_index"):
            out[key] = array
        elif key.endswith(".weight") and array.ndim == 1:  # LayerNorm scale around 1
            out[key] = (1.0 + 0.1 * rng.standard_normal(array.shape)).astype("float32")
        elif key.endswith(".bias") or key.endswith("relative_position_bias_table"):
            out[key] = (0.1 * rng.standard_normal(array.shape)).astype("float32")
        else:
            fan_in = int(np.prod(array.shape[1:]))
            out[key] = (rng.standard_normal(array.shape) / np.sqrt(fan_in)).astype("float32")
    return out
