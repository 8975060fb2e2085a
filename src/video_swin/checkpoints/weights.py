"""Name-keyed mapping between the official checkpoint layout and our Keras variables.

The canonical names are the official (mmaction2) ones: `backbone.*` and `cls_head.fc_cls.*`.
torchvision's `swin3d_*` names are renamed into them first (`torchvision_to_official`).
"""

from __future__ import annotations

import re

import numpy as np

from video_swin.models import VideoSwinBackbone, VideoSwinClassifier


class WeightMappingError(ValueError):
    """A checkpoint does not fit the model: missing, unused or mis-shaped tensors."""


# PyTorch layouts -> Keras layouts.
_LINEAR = "linear"  # (out, in) -> (in, out)
_CONV3D = "conv3d"  # (out, in, kT, kH, kW) -> (kT, kH, kW, in, out)
_SAME = "same"


def to_keras(array, kind):
    if kind == _LINEAR:
        return np.ascontiguousarray(array.T)
    if kind == _CONV3D:
        return np.ascontiguousarray(array.transpose(2, 3, 4, 1, 0))
    return array


def to_torch(array, kind):
    if kind == _LINEAR:
        return np.ascontiguousarray(array.T)
    if kind == _CONV3D:
        return np.ascontiguousarray(array.transpose(4, 3, 0, 1, 2))
    return array


def _norm(prefix, layer):
    return {f"{prefix}.weight": (layer.gamma, _SAME), f"{prefix}.bias": (layer.beta, _SAME)}


def _dense(prefix, layer):
    out = {f"{prefix}.weight": (layer.kernel, _LINEAR)}
    if layer.use_bias:
        out[f"{prefix}.bias"] = (layer.bias, _SAME)
    return out


def variable_map(model) -> dict:
    """Official key -> (Keras variable, layout kind) for every variable of a backbone or classifier."""
    if isinstance(model, VideoSwinClassifier):
        backbone = model.backbone
        head = model.get_layer("head")
        mapping = {"cls_head.fc_cls.weight": (head.kernel, _LINEAR), "cls_head.fc_cls.bias": (head.bias, _SAME)}
    elif isinstance(model, VideoSwinBackbone):
        backbone, mapping = model, {}
    else:
        raise TypeError(f"expected a VideoSwinBackbone or VideoSwinClassifier, got {type(model).__name__}")

    patch_embed = backbone.get_layer("patch_embed")
    mapping["backbone.patch_embed.proj.weight"] = (patch_embed.proj.kernel, _CONV3D)
    mapping["backbone.patch_embed.proj.bias"] = (patch_embed.proj.bias, _SAME)
    if patch_embed.norm is not None:
        mapping.update(_norm("backbone.patch_embed.norm", patch_embed.norm))
    for i in range(len(backbone.depths)):
        stage = backbone.get_layer(f"layers_{i}")
        for j, block in enumerate(stage.blocks):
            p = f"backbone.layers.{i}.blocks.{j}"
            mapping.update(_norm(f"{p}.norm1", block.norm1))
            mapping[f"{p}.attn.relative_position_bias_table"] = (block.attn.relative_position_bias_table, _SAME)
            mapping.update(_dense(f"{p}.attn.qkv", block.attn.qkv))
            mapping.update(_dense(f"{p}.attn.proj", block.attn.proj))
            mapping.update(_norm(f"{p}.norm2", block.norm2))
            mapping.update(_dense(f"{p}.mlp.fc1", block.mlp.fc1))
            mapping.update(_dense(f"{p}.mlp.fc2", block.mlp.fc2))
        if stage.merging is not None:
            mapping.update(_dense(f"backbone.layers.{i}.downsample.reduction", stage.merging.reduction))
            mapping.update(_norm(f"backbone.layers.{i}.downsample.norm", stage.merging.norm))
    mapping.update(_norm("backbone.norm", backbone.get_layer("norm")))
    return mapping


_TV_BLOCK = re.compile(r"^features\.(\d+)\.(\d+)\.(.*)$")
_TV_MERGE = re.compile(r"^features\.(\d+)\.(reduction|norm)\.(.*)$")


def torchvision_to_official(key: str) -> str:
    """Renames one torchvision `swin3d_*` key to the official layout (see checkpoints.md §2)."""
    if key.startswith("patch_embed."):
        return "backbone." + key
    if key.startswith("norm."):
        return "backbone." + key
    if key.startswith("head."):
        return "cls_head.fc_cls." + key[len("head.") :]
    m = _TV_BLOCK.match(key)
    if m and int(m.group(1)) % 2 == 0:
        stage, block, rest = int(m.group(1)) // 2, m.group(2), m.group(3)
        rest = rest.replace("mlp.0.", "mlp.fc1.").replace("mlp.3.", "mlp.fc2.")
        return f"backbone.layers.{stage}.blocks.{block}.{rest}"
    m = _TV_MERGE.match(key)
    if m and int(m.group(1)) % 2 == 1:
        return f"backbone.layers.{int(m.group(1)) // 2}.downsample.{m.group(2)}.{m.group(3)}"
    return key


def official_to_torchvision(key: str) -> str:
    """Inverse of `torchvision_to_official`."""
    if key.startswith("cls_head.fc_cls."):
        return "head." + key[len("cls_head.fc_cls.") :]
    if not key.startswith("backbone."):
        return key
    key = key[len("backbone.") :]
    m = re.match(r"^layers\.(\d+)\.blocks\.(\d+)\.(.*)$", key)
    if m:
        rest = m.group(3).replace("mlp.fc1.", "mlp.0.").replace("mlp.fc2.", "mlp.3.")
        return f"features.{2 * int(m.group(1))}.{m.group(2)}.{rest}"
    m = re.match(r"^layers\.(\d+)\.downsample\.(.*)$", key)
    if m:
        return f"features.{2 * int(m.group(1)) + 1}.{m.group(2)}"
    return key


def is_relative_position_index(key: str) -> bool:
    return key.endswith("relative_position_index")


def load_official_weights(model, tensors: dict) -> None:
    """Sets every variable of `model` from official-named arrays; fails on anything missing, unused or
    mis-shaped (all problems are collected into one message). `relative_position_index` buffers are
    checked against the index we compute and otherwise ignored."""
    from video_swin.models.window_ops import relative_position_index

    mapping = variable_map(model)
    backbone = model.backbone if isinstance(model, VideoSwinClassifier) else model
    expected_index = relative_position_index(backbone.window_size)
    problems, misshaped, bad_index, assignments = [], [], [], []
    for key, array in tensors.items():
        if is_relative_position_index(key):
            if np.shape(array) != expected_index.shape or not np.array_equal(array, expected_index):
                bad_index.append(key)
            continue
        if key not in mapping:
            continue
        variable, kind = mapping[key]
        value = to_keras(np.asarray(array), kind)
        if tuple(value.shape) != tuple(variable.shape):
            torch_shape = tuple(np.shape(array))
            wanted = tuple(to_torch(np.zeros(variable.shape, dtype="uint8"), kind).shape)
            misshaped.append(f"{key} has shape {torch_shape}, model expects {wanted}")
            continue
        assignments.append((variable, value))
    unused = sorted(k for k in tensors if k not in mapping and not is_relative_position_index(k))
    missing = sorted(k for k in mapping if k not in tensors)
    if bad_index:
        window = tuple(backbone.window_size)
        problems.append(f"{len(bad_index)} relative_position_index buffer(s) do not match window {window}: {_preview(bad_index, 2)}")
    if misshaped:
        problems.append(f"{len(misshaped)} mis-shaped tensor(s): {_preview(misshaped, limit=2)}")
    if unused:
        problems.append(f"{len(unused)} unused tensor(s): {_preview(unused)}")
    if missing:
        problems.append(f"{len(missing)} missing tensor(s): {_preview(missing)}")
    if problems:
        raise WeightMappingError("; ".join(problems))
    for variable, value in assignments:
        variable.assign(value.astype(variable.dtype))


def export_official_weights(model) -> dict:
    """The model's variables as an official-layout state dict of numpy arrays (with the index buffers)."""
    from video_swin.models.window_ops import relative_position_index

    out = {key: to_torch(np.asarray(var.numpy()), kind) for key, (var, kind) in variable_map(model).items()}
    backbone = model.backbone if isinstance(model, VideoSwinClassifier) else model
    index = relative_position_index(backbone.window_size).astype("int64")
    for key in list(out):
        if key.endswith("attn.relative_position_bias_table"):
            out[key.replace("relative_position_bias_table", "relative_position_index")] = index
    return out


def _preview(keys, limit=4):
    shown = ", ".join(keys[:limit])
    return shown + (f", ... (+{len(keys) - limit} more)" if len(keys) > limit else "")
