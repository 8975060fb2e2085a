"""Inflation of a 2D ImageNet Swin checkpoint into a 3D Video Swin backbone preset (`pretrained2d`).

Accepted inputs (`.pth` zip archives or `.safetensors`, read without PyTorch by `checkpoint_io`):

* the Swin (2D) release layout: `{'model': state_dict}` with `patch_embed.proj.weight` (C, 3, 4, 4),
  `layers.{i}.blocks.{j}.*`, `layers.{i}.downsample.*`, `norm.*`, `head.*` and the
  `relative_position_index` / `attn_mask` buffers;
* torchvision's `swin_t/s/b` layout: `features.0.0` (patch conv), `features.0.2` (patch norm),
  `features.{2i+1}.{j}.*` (blocks, MLP named `mlp.0`/`mlp.3`), `features.{2i+2}.*` (patch merging),
  `norm`, `head`.

The rules are the official ones (Video Swin `SwinTransformer3D.inflate_weights`, checkpoints.md §3):

* drop every `relative_position_index` and `attn_mask` buffer and the 2D `head.*`;
* `patch_embed.proj.weight` (C, 3, 4, 4) -> insert a time axis, repeat it `pt` times, divide by `pt`;
* a bias table of L rows: if L != (2Wh-1)(2Ww-1), resize it bicubically as a square (heads, S, S) image
  exactly like `torch.nn.functional.interpolate(mode='bicubic', align_corners=False)` (implemented here
  in numpy: `bicubic_resize`), then stack (2Wd-1) copies of it along the rows;
* every other tensor maps 1:1. The result is a backbone-only preset: the classifier head is created
  fresh when fine-tuning (`video_swin.training`).

Consequence (tested): on a static clip, the inflated model's pooled features equal the 2D model's pooled
features on one frame.
"""

from __future__ import annotations

import datetime
import math
import re
from pathlib import Path

import numpy as np

from video_swin.checkpoints import checkpoint_io

DEFAULT_WINDOW = (8, 7, 7)
DEFAULT_PATCH = (2, 4, 4)
BICUBIC_A = -0.75  # PyTorch's cubic convolution coefficient


class InflationError(ValueError):
    """A 2D checkpoint cannot be inflated; the message names what is wrong."""


# ------------------------------------------------------------------------------------------ bicubic


def _cubic_weights(t: np.ndarray, a: float = BICUBIC_A) -> np.ndarray:
    """PyTorch's `get_cubic_upsample_coefficients`: weights of the 4 taps for fractional offsets t."""
    def near(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return np.stack([far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)], axis=-1)


def _resize_axis(x: np.ndarray, out_size: int, axis: int) -> np.ndarray:
    in_size = x.shape[axis]
    scale = in_size / out_size  # align_corners=False, no scale_factor given
    real = scale * (np.arange(out_size, dtype=np.float64) + 0.5) - 0.5  # not clamped for cubic
    base = np.floor(real)
    t = real - base
    weights = _cubic_weights(t)  # (out, 4)
    taps = np.clip(base[:, None].astype(np.int64) + np.arange(-1, 3)[None, :], 0, in_size - 1)  # (out, 4)
    moved = np.moveaxis(x, axis, -1)  # (..., in)
    out = (moved[..., taps] * weights).sum(-1)  # (..., out)
    return np.moveaxis(out, -1, axis)


def bicubic_resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(C, H, W) -> (C, size[0], size[1]) as `F.interpolate(image[None], size, mode='bicubic',
    align_corners=False)[0]` (A = -0.75, border taps clamped). Computed in float64, returned float32."""
    x = np.asarray(image, dtype=np.float64)
    if x.ndim != 3:
        raise ValueError(f"expected a (C, H, W) image, got shape {x.shape}")
    out_h, out_w = int(size[0]), int(size[1])
    if x.shape[1] != out_h:
        x = _resize_axis(x, out_h, 1)
    if x.shape[2] != out_w:
        x = _resize_axis(x, out_w, 2)
    return x.astype(np.float32)


def resize_bias_table(table: np.ndarray, window_hw: tuple[int, int]) -> np.ndarray:
    """A 2D bias table (L, heads) resized to ((2Wh-1)(2Ww-1), heads), as the official code does."""
    rows, heads = table.shape
    target = (2 * window_hw[0] - 1, 2 * window_hw[1] - 1)
    if rows == target[0] * target[1]:
        return np.asarray(table, dtype=np.float32)
    side = int(round(math.sqrt(rows)))
    if side * side != rows:
        raise InflationError(f"a 2D bias table of {rows} rows is not a square (2W-1)^2 table")
    image = np.asarray(table, dtype=np.float32).T.reshape(heads, side, side)
    resized = bicubic_resize(image, target)
    return resized.reshape(heads, -1).T.copy()


# ------------------------------------------------------------------------------------------- layouts

_DROPPED = re.compile(r"(relative_position_index|attn_mask)$|^head\.")
_TV_BLOCK = re.compile(r"^features\.(\d+)\.(\d+)\.(.+)$")
_TV_MERGE = re.compile(r"^features\.(\d+)\.(reduction|norm)\.(.+)$")


def detect_2d_layout(tensors: dict) -> str:
    """'swin' (the Swin 2D release) or 'torchvision' (swin_t/s/b)."""
    proj = tensors.get("patch_embed.proj.weight")
    if proj is not None:
        if np.ndim(proj) != 4:
            raise InflationError(
                f"patch_embed.proj.weight has shape {tuple(np.shape(proj))}: not a 2D Swin checkpoint "
                "(a 3D one converts with `video-swin convert` without --inflate)"
            )
        return "swin"
    conv = tensors.get("features.0.0.weight")
    if conv is not None:
        if np.ndim(conv) != 4:
            raise InflationError(f"features.0.0.weight has shape {tuple(np.shape(conv))}: not a 2D swin_t/s/b")
        return "torchvision"
    if any(k.startswith("backbone.") for k in tensors):
        raise InflationError("this is a 3D Video Swin checkpoint; convert it without --inflate")
    keys = ", ".join(list(tensors)[:3]) or "none"
    raise InflationError(
        f"unrecognised 2D checkpoint layout (first keys: {keys}); expected the Swin release "
        "(patch_embed.*, layers.*) or torchvision swin_t/s/b (features.*)"
    )


def torchvision2d_to_swin(key: str) -> str:
    """Renames one torchvision 2D `swin_t/s/b` key into the Swin 2D release naming."""
    if key.startswith("features.0.0."):
        return "patch_embed.proj." + key[len("features.0.0.") :]
    if key.startswith("features.0.2."):
        return "patch_embed.norm." + key[len("features.0.2.") :]
    m = _TV_BLOCK.match(key)
    if m and int(m.group(1)) % 2 == 1:
        stage, block, rest = (int(m.group(1)) - 1) // 2, m.group(2), m.group(3)
        rest = rest.replace("mlp.0.", "mlp.fc1.").replace("mlp.3.", "mlp.fc2.")
        return f"layers.{stage}.blocks.{block}.{rest}"
    m = _TV_MERGE.match(key)
    if m and int(m.group(1)) % 2 == 0 and int(m.group(1)) > 0:
        return f"layers.{int(m.group(1)) // 2 - 1}.downsample.{m.group(2)}.{m.group(3)}"
    return key


def to_swin_names(tensors: dict) -> tuple[dict, str]:
    layout = detect_2d_layout(tensors)
    if layout == "torchvision":
        tensors = {torchvision2d_to_swin(k): v for k, v in tensors.items()}
    return tensors, layout


def infer_2d_architecture(tensors: dict) -> dict:
    """embed_dim, depths and heads of a Swin-named 2D state dict."""
    blocks: dict[int, dict[int, tuple]] = {}
    for key, value in tensors.items():
        m = re.match(r"^layers\.(\d+)\.blocks\.(\d+)\.attn\.relative_position_bias_table$", key)
        if m:
            blocks.setdefault(int(m.group(1)), {})[int(m.group(2))] = np.shape(value)
    if not blocks or sorted(blocks) != list(range(len(blocks))):
        raise InflationError(f"stages found: {sorted(blocks)}; expected consecutive stages 0..k")
    return {
        "embed_dim": int(np.shape(tensors["patch_embed.proj.weight"])[0]),
        "depths": [max(blocks[i]) + 1 for i in sorted(blocks)],
        "num_heads": [int(blocks[i][0][1]) for i in sorted(blocks)],
        "patch_norm": "patch_embed.norm.weight" in tensors,
        "qkv_bias": "layers.0.blocks.0.attn.qkv.bias" in tensors,
    }


# ------------------------------------------------------------------------------------------ inflation


def inflate_state_dict(tensors: dict, window_size=DEFAULT_WINDOW, patch_t: int = DEFAULT_PATCH[0]) -> dict:
    """Swin-named 2D tensors -> official-named 3D backbone tensors (`backbone.*`), numpy float32.

    Buffers and the 2D head are dropped; the patch embedding and the bias tables are inflated.
    """
    wd, wh, ww = (int(w) for w in window_size)
    out = {}
    for key, value in tensors.items():
        if _DROPPED.search(key):
            continue
        value = np.asarray(value)
        if value.dtype != np.float32 and np.issubdtype(value.dtype, np.floating):
            value = value.astype(np.float32)
        if key == "patch_embed.proj.weight":
            value = np.repeat(value[:, :, None], patch_t, axis=2) / np.float32(patch_t)
        elif key.endswith("attn.relative_position_bias_table"):
            value = np.tile(resize_bias_table(value, (wh, ww)), (2 * wd - 1, 1))
        out["backbone." + key] = value.astype(np.float32, copy=False)
    return out


def inflate_checkpoint(src, out_dir, variant=None, window_size=None, overwrite=False, patch_t=None,
                       drop_path_rate=None):
    """Inflates a 2D ImageNet Swin checkpoint into a backbone-only 3D preset folder; returns its path.

    `variant` ('tiny', 'small', 'base', 'large') overrides the architecture read from the shapes (it must
    agree with them); `window_size` is the 3D window (Wd, Wh, Ww), default (8, 7, 7) as in the official
    configs; `patch_t` the temporal patch size (default 2). Nothing is written on failure.
    """
    from video_swin import files
    from video_swin.models import presets
    from video_swin.checkpoints import weights
    from video_swin.checkpoints.convert import DEFAULT_DROP_PATH
    from video_swin.models import VideoSwinBackbone, variant_config

    src, out_dir = Path(src), Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise InflationError(f"{out_dir} already exists (pass --overwrite to replace it)")
    raw = checkpoint_io.read_tensors(src)
    tensors, layout = to_swin_names(raw)
    architecture = infer_2d_architecture(tensors)
    if variant is not None:
        wanted = variant_config(variant)
        for key in ("embed_dim", "depths", "num_heads"):
            if list(np.atleast_1d(wanted[key])) != list(np.atleast_1d(architecture[key])):
                raise InflationError(
                    f"{src}: --variant {variant} has {key} {wanted[key]}, the checkpoint {architecture[key]}"
                )
    window = tuple(int(w) for w in (window_size or DEFAULT_WINDOW))
    if len(window) != 3:
        raise InflationError(f"window_size must be (D, H, W), got {window_size}")
    pt = int(patch_t or DEFAULT_PATCH[0])
    patch_hw = tuple(int(s) for s in np.shape(tensors["patch_embed.proj.weight"])[2:])
    name = presets.variant_name(architecture)
    backbone = VideoSwinBackbone(
        **architecture,
        window_size=window,
        patch_size=(pt,) + patch_hw,
        drop_path_rate=DEFAULT_DROP_PATH[name] if drop_path_rate is None else float(drop_path_rate),
    )
    inflated = inflate_state_dict(tensors, window, pt)
    try:
        weights.load_official_weights(backbone, inflated)
    except weights.WeightMappingError as exc:
        raise InflationError(f"{src}: the inflated checkpoint does not fit a {name} backbone: {exc}") from None
    metadata = {
        "source_checkpoint": src.name,
        "source_sha256": files.sha256_of(src),
        "source_layout": f"2d-{layout}",
        "inflated": True,
        "inflation": {"window_size": list(window), "patch_t": pt},
        "converted": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    return presets.save_preset(backbone, out_dir, metadata=metadata, overwrite=overwrite)
