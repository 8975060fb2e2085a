"""Checkpoint conversion: official / torchvision `.pth` or `.safetensors` -> a preset folder.

Needs no PyTorch: tensors are read by `checkpoint_io` (restricted unpickler, no code execution).
Format, variant, window and class count are detected from the tensors; arguments may override them.
"""

from __future__ import annotations

import datetime
import math
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


def window_candidates(table_rows: int, tokens: int | None = None) -> list[tuple[int, int, int]]:
    """Every window (Wd, Wh, Ww) whose bias table has `table_rows` = (2Wd-1)(2Wh-1)(2Ww-1) rows and, when
    `tokens` is given, Wd*Wh*Ww = `tokens` tokens."""
    small = [a for a in range(1, math.isqrt(table_rows) + 1) if table_rows % a == 0]
    odd_divisors = sorted({d for a in small for d in (a, table_rows // a) if d % 2})
    out = []
    for a in odd_divisors:
        for b in odd_divisors:
            if (table_rows // a) % b:
                continue
            c = table_rows // a // b
            window = ((a + 1) // 2, (b + 1) // 2, (c + 1) // 2)
            if tokens is None or window[0] * window[1] * window[2] == tokens:
                out.append(window)
    return sorted(out, key=lambda w: (max(w), w))  # the likelier, smaller windows first in messages


def infer_window(tensors: dict, table_rows: int) -> tuple[int, int, int]:
    """The window (Wd, Wh, Ww) from the bias-table rows (2Wd-1)(2Wh-1)(2Ww-1) and the
    `relative_position_index` buffers (N x N, N = Wd*Wh*Ww), which every torchvision and official save
    holds: the index's values tell apart windows of equal size and rows, such as (2, 3, 5) and (2, 5, 3).
    Without the buffers, the released convention (square in space, 7 wide) decides between candidates;
    an ambiguity it cannot decide names `--window D H W` and the candidates."""
    from video_swin.models.window_ops import relative_position_index

    index = next((np.asarray(v) for k, v in tensors.items() if weights.is_relative_position_index(k)), None)
    if index is not None and (index.ndim != 2 or index.shape[0] != index.shape[1]):
        raise ConversionError(f"relative_position_index has shape {index.shape}; expected (N, N)")
    candidates = window_candidates(table_rows, None if index is None else index.shape[0])
    if index is not None:
        matching = [w for w in candidates if np.array_equal(index, relative_position_index(w))]
        if len(matching) == 1:
            return matching[0]
        if len(matching) > 1:  # windows that differ only in where their sides of 1 sit
            raise ConversionError(
                f"cannot infer the window: the bias table ({table_rows} rows) and relative_position_index buffers "
                f"fit {_windows(matching)} alike; pass --window D H W"
            )
        # A buffer that fits no window: the rows and size decide, and loading names the buffer.
    if len(candidates) == 1:
        return candidates[0]
    released = [w for w in candidates if w[1] == w[2] == 7]
    if len(released) == 1:
        return released[0]
    what = f"a bias table of {table_rows} rows" + (
        " without relative_position_index buffers" if index is None
        else f" and {index.shape[0]} tokens (relative_position_index fits none of them)"
    )
    if not candidates:
        raise ConversionError(f"cannot infer the window: {what} fits no window; pass --window D H W")
    raise ConversionError(f"cannot infer the window: {what} fits {_windows(candidates)}; pass --window D H W")


def _windows(candidates) -> str:
    shown = ", ".join(" ".join(map(str, w)) for w in candidates[:8]) + (", ..." if len(candidates) > 8 else "")
    return f"{len(candidates)} windows ({shown})"


def infer_mlp_ratio(tensors: dict, embed_dim: int, num_stages: int) -> float:
    """The MLP ratio r from the fc1 widths: each block's hidden width is int(dim * r) (torchvision and the
    official code alike), dim = embed_dim * 2**stage. Returns the smallest ratio that gives every stage's
    width; any ratio that does builds the same model."""
    widths = {}
    for key, value in tensors.items():
        m = re.match(r"^backbone\.layers\.(\d+)\.blocks\.\d+\.mlp\.fc1\.weight$", key)
        if m and np.ndim(value) == 2 and int(m.group(1)) < num_stages:
            widths.setdefault(int(m.group(1)), set()).add(int(np.shape(value)[0]))
    if not widths:
        return 4.0  # no fc1 at all: the missing tensors are reported when the weights are loaded
    if any(len(w) > 1 for w in widths.values()):
        raise ConversionError(f"the blocks of one stage have different MLP widths: {_widths(widths)}")
    dims = {stage: embed_dim * 2**stage for stage in widths}
    for stage in sorted(widths):
        hidden = next(iter(widths[stage]))
        for ratio in (hidden / dims[stage], float(np.nextafter(hidden / dims[stage], np.inf))):
            if all(int(dims[s] * ratio) == next(iter(widths[s])) for s in widths):
                return ratio
    raise ConversionError(
        f"no single MLP ratio gives the fc1 widths {_widths(widths)} of stages with {', '.join(map(str, dims.values()))} "
        "channels (the model takes one ratio for all stages)"
    )


def _widths(widths: dict) -> str:
    return ", ".join(f"stage {s}: {sorted(w)}" for s, w in sorted(widths.items()))


def infer_architecture(tensors: dict, window_size=None) -> dict:
    """Backbone arguments from official-named tensors. A `window_size` given is taken as it is (the
    window is then never inferred, so an ambiguity cannot stop a user who names it)."""
    proj = tensors.get("backbone.patch_embed.proj.weight")
    if proj is None or proj.ndim != 5:
        raise ConversionError("backbone.patch_embed.proj.weight is missing or not 5-D (C, 3, pt, ph, pw)")
    blocks, tables = {}, {}
    for key in tensors:
        m = re.match(r"^backbone\.layers\.(\d+)\.blocks\.(\d+)\.", key)
        if m:
            stage, block = int(m.group(1)), int(m.group(2))
            blocks.setdefault(stage, set()).add(block)
            if key.endswith(".attn.relative_position_bias_table") and np.ndim(tensors[key]) == 2:
                tables.setdefault(stage, {})[block] = tuple(np.shape(tensors[key]))
    if not blocks or sorted(blocks) != list(range(len(blocks))):
        raise ConversionError(f"stages found: {sorted(blocks)}; expected consecutive stages 0..k")
    without = [stage for stage in sorted(blocks) if stage not in tables]
    if without:
        raise ConversionError(
            f"stage {without[0]} has no attn.relative_position_bias_table, which tells its number of heads"
        )
    depths = [max(blocks[i]) + 1 for i in sorted(blocks)]
    num_heads = [tables[i][min(tables[i])][1] for i in sorted(blocks)]
    embed_dim = int(proj.shape[0])
    for stage, heads in enumerate(num_heads):
        if heads < 1 or (embed_dim * 2**stage) % heads:
            raise ConversionError(
                f"stage {stage}'s bias table has {heads} columns (heads), which do not divide its "
                f"{embed_dim * 2**stage} channels"
            )
    if window_size is None:
        window_size = infer_window(tensors, tables[0][min(tables[0])][0])
    return {
        "embed_dim": embed_dim,
        "depths": depths,
        "num_heads": num_heads,
        "window_size": [int(w) for w in window_size],
        "patch_size": [int(s) for s in proj.shape[2:]],
        "mlp_ratio": infer_mlp_ratio(tensors, embed_dim, len(depths)),
        "patch_norm": "backbone.patch_embed.norm.weight" in tensors,
        "qkv_bias": "backbone.layers.0.blocks.0.attn.qkv.bias" in tensors,
    }


def build_model_for(tensors: dict, variant=None, window_size=None, num_classes=None, drop_path_rate=None):
    architecture = infer_architecture(tensors, window_size=window_size)
    if variant is not None:
        from video_swin.models import variant_config

        architecture.update(variant_config(variant))
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
    files.check_output_path(out_dir, overwrite)
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
