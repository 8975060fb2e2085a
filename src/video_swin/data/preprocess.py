"""The Video Swin test-time preprocessing, bit-exact with the official pipeline.

Official test pipeline (Video Swin configs, mmaction2 0.x + mmcv 1.x)::

    DecordInit -> SampleFrames(clip_len=32, frame_interval=2, num_clips=4, test_mode=True)
               -> DecordDecode -> Resize(scale=(-1, 224)) -> ThreeCrop(crop_size=224)
               -> Flip(flip_ratio=0) -> Normalize(mean, std, to_bgr=False)
               -> FormatShape('NCTHW')
    (SSv2: SampleFrames(clip_len=32, frame_interval=2, num_clips=1,
                        frame_uniform=True, test_mode=True); the rest identical)
    (validation during training: 1 clip, Resize(scale=(-1, 256)), CenterCrop(224))

What each step does, with the source it was checked against:

* ``Resize(scale=(-1, S))`` (mmaction ``pipelines/augmentations.py``) turns the
  scale into ``(np.inf, S)`` and calls ``mmcv.rescale_size((w, h), scale)``
  (mmcv ``image/geometric.py``): ``scale_factor = min(inf / max(h, w),
  S / min(h, w))`` and ``new = int(side * float(scale_factor) + 0.5)`` for each
  side; then ``mmcv.imresize`` = ``cv2.resize(img, (new_w, new_h),
  interpolation=cv2.INTER_LINEAR)`` on the uint8 frame.  (Checked: OpenCV
  4.10 and 5.0 give identical INTER_LINEAR uint8 results.)
* ``ThreeCrop`` asserts that one side already equals the crop; along the other
  side ``step = (long - C) // 2`` and the crops are, in this order, offset
  ``0`` (left/top), ``2 * step`` (right/bottom), ``step`` (middle).  Crops are
  concatenated crop-major (all frames of crop 0, then crop 1, ...).
* ``CenterCrop``: ``left = (w - C) // 2``, ``top = (h - C) // 2``.
* ``Normalize``: ``mmcv.imnormalize_`` with float32 ``mean``/``std``:
  ``cv2.subtract(img, float64(mean))`` then ``cv2.multiply(img, 1 /
  float64(std))`` on the float32 image.  For the 256 possible uint8 values (and
  for random float32 inputs) that equals float32 ``(x - mean) / std``, which is
  what :func:`normalize` computes (a test checks all 256 values against cv2).
* ``FormatShape('NCTHW')``: ``imgs.reshape(-1, num_clips, clip_len, H, W, C)``,
  i.e. views are ordered crop-major: view ``v = crop * num_clips + clip``.
  Here views are returned channels-last, ``(V, T, C, C, 3)``.

The exact path is the numpy/OpenCV one (:class:`Protocol`).  The in-graph
TensorFlow path (:func:`make_tf_preprocess`) uses ``tf.image.resize``
(bilinear, half-pixel centres), which is *not* bit-identical to OpenCV's
fixed-point INTER_LINEAR (typically within a couple of grey levels); it is meant
for training input pipelines and serving, not for reproducing published numbers.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, replace
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .sampling import (
    center_clip_indices,
    dense_test_indices,
    uniform_test_indices,
)

__all__ = [
    "DEFAULT_MEAN",
    "DEFAULT_STD",
    "short_side_size",
    "resize_short_side",
    "crop_offsets",
    "three_crops",
    "center_crop",
    "normalize",
    "parse_views",
    "Protocol",
    "make_tf_preprocess",
]
# ``NormalizePixels`` (a keras Layer) is also exported, lazily through the module
# ``__getattr__`` below; it is left out of ``__all__`` so that a star-import does
# not import TensorFlow.

DEFAULT_MEAN = (123.675, 116.28, 103.53)
DEFAULT_STD = (58.395, 57.12, 57.375)


# --------------------------------------------------------------------------- #
# array ops
# --------------------------------------------------------------------------- #


def short_side_size(height: int, width: int, size: int) -> tuple[int, int]:
    """``(new_h, new_w)`` for a short-side resize to ``size`` (mmcv rounding)."""
    h, w = int(height), int(width)
    if h < 1 or w < 1:
        raise ValueError(f"invalid frame size {h}x{w}")
    # mmcv.rescale_size((w, h), (np.inf, size)):
    scale_factor = min(np.inf / max(h, w), int(size) / min(h, w))
    return int(h * float(scale_factor) + 0.5), int(w * float(scale_factor) + 0.5)


def _cv2():
    import cv2  # noqa: PLC0415

    return cv2


def resize_short_side(frames: np.ndarray, size: int) -> np.ndarray:
    """Resize so the short side is ``size``; ``(T, H, W, 3)`` or ``(H, W, 3)``.

    OpenCV bilinear (``cv2.INTER_LINEAR``), frame by frame, sizes rounded as
    mmcv does.  uint8 in, uint8 out.
    """
    frames = np.asarray(frames)
    single = frames.ndim == 3
    if single:
        frames = frames[None]
    if frames.ndim != 4:
        raise ValueError(f"expected frames (T, H, W, C) or (H, W, C), got shape {frames.shape}")
    t, h, w = frames.shape[:3]
    nh, nw = short_side_size(h, w, size)
    if (nh, nw) == (h, w):
        out = frames
    else:
        cv2 = _cv2()
        out = np.empty((t, nh, nw) + frames.shape[3:], dtype=frames.dtype)
        for i in range(t):
            r = cv2.resize(frames[i], (nw, nh), interpolation=cv2.INTER_LINEAR)
            out[i] = r.reshape(out.shape[1:])
    return out[0] if single else out


def _hw(frames: np.ndarray) -> tuple[int, int]:
    if frames.ndim < 3:
        raise ValueError(f"expected frames (..., H, W, C), got shape {frames.shape}")
    return frames.shape[-3], frames.shape[-2]


def crop_offsets(height: int, width: int, crop: int, num_crops: int) -> list[tuple[int, int]]:
    """``(top, left)`` of each crop in the protocol's order: ``num_crops`` 1 is ``CenterCrop``, 3 is
    ``ThreeCrop`` (left/top, right/bottom, centre).  Raises ``ValueError`` when the crops do not fit."""
    h, w, c = int(height), int(width), int(crop)
    if num_crops == 1:
        if h < c or w < c:
            raise ValueError(f"cannot centre-crop {c}x{c} from frames of {h}x{w}")
        return [((h - c) // 2, (w - c) // 2)]
    if num_crops != 3:
        raise ValueError(f"crops must be 1 (centre) or 3 (three-crop), got {num_crops}")
    if h == c and w >= c:
        step = (w - c) // 2
        return [(0, o) for o in (0, 2 * step, step)]
    if w == c and h >= c:
        step = (h - c) // 2
        return [(o, 0) for o in (0, 2 * step, step)]
    raise ValueError(
        f"three_crops needs one side equal to the crop size {c} and the other >= it; "
        f"got frames of {h}x{w} (resize the short side to {c} first)"
    )


def three_crops(frames: np.ndarray, crop: int) -> list[np.ndarray]:
    """mmaction2 ``ThreeCrop``: crops at left/top, right/bottom, centre.

    One side of the frames must already equal ``crop`` (resize first); works
    on ``(..., H, W, C)`` and returns views (no copy).
    """
    frames = np.asarray(frames)
    c = int(crop)
    return [frames[..., t : t + c, l : l + c, :] for t, l in crop_offsets(*_hw(frames), c, 3)]


def center_crop(frames: np.ndarray, crop: int) -> np.ndarray:
    """mmaction2 ``CenterCrop``: ``left = (w - c) // 2``, ``top = (h - c) // 2``."""
    frames = np.asarray(frames)
    c = int(crop)
    ((top, left),) = crop_offsets(*_hw(frames), c, 1)
    return frames[..., top : top + c, left : left + c, :]


def normalize(
    frames: np.ndarray,
    mean: Sequence[float] = DEFAULT_MEAN,
    std: Sequence[float] = DEFAULT_STD,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """``(x - mean) / std`` per channel in float32, values on the 0-255 scale.

    Bit-identical to mmcv ``imnormalize_`` (the official ``Normalize``).
    """
    m = np.asarray(mean, dtype=np.float32)
    s = np.asarray(std, dtype=np.float32)
    frames = np.asarray(frames)
    if frames.shape[-1] != m.shape[0] or s.shape != m.shape:
        raise ValueError(
            f"mean/std have {m.shape[0]}/{s.shape[0]} channels but frames have {frames.shape[-1]}"
        )
    if out is None:
        out = np.empty(frames.shape, dtype=np.float32)
    elif out.shape != frames.shape or out.dtype != np.float32:
        raise ValueError(f"out must be float32 of shape {frames.shape}")
    out[...] = frames
    if out.ndim >= 2 and out.flags.c_contiguous:
        # Same element-wise float32 ops, but with the per-channel constants tiled
        # along the row: numpy's inner loop then runs over W*C values, not 3.
        rows = out.reshape(out.shape[:-2] + (-1,))
        rows -= np.tile(m, out.shape[-2])
        rows /= np.tile(s, out.shape[-2])
    else:
        out -= m
        out /= s
    return out


# --------------------------------------------------------------------------- #
# protocol
# --------------------------------------------------------------------------- #

_VIEWS_RE = re.compile(r"^\s*(\d+)\s*[xX\u00d7]\s*(\d+)\s*$")


def parse_views(views: str) -> tuple[int, int]:
    """``"4x3"`` -> ``(num_clips, num_crops)``; crops must be 1 (centre) or 3."""
    m = _VIEWS_RE.match(str(views))
    if not m:
        raise ValueError(f"views must look like '4x3' (clips x crops), got {views!r}")
    clips, crops = int(m.group(1)), int(m.group(2))
    if clips < 1:
        raise ValueError(f"views {views!r}: need at least one clip")
    if crops not in (1, 3):
        raise ValueError(f"views {views!r}: crops must be 1 (centre) or 3 (three-crop)")
    return clips, crops


_KEYS = (
    "mean",
    "std",
    "short_side",
    "crop_size",
    "sampling",
    "clip_len",
    "frame_interval",
    "num_clips",
    "num_crops",
)


@dataclass(frozen=True)
class Protocol:
    """A test protocol (the preset ``config.json`` "preprocessing" section).

    Defaults are the Kinetics protocol: 4 clips x 3 crops of 32x224x224
    frames, every 2nd frame.
    """

    mean: tuple[float, ...] = DEFAULT_MEAN
    std: tuple[float, ...] = DEFAULT_STD
    short_side: int = 224
    crop_size: int = 224
    sampling: str = "dense"  # "dense" (SampleFrames) or "uniform" (SSv2 frame_uniform)
    clip_len: int = 32
    frame_interval: int = 2
    num_clips: int = 4
    num_crops: int = 3

    def __post_init__(self):
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        for name in ("short_side", "crop_size", "clip_len", "frame_interval", "num_clips", "num_crops"):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or int(value) < 1:
                raise ValueError(f"preprocessing {name} must be a positive integer, got {value!r}")
            object.__setattr__(self, name, int(value))
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError("preprocessing mean and std need 3 values (RGB)")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"preprocessing std must be positive, got {self.std}")
        if self.sampling not in ("dense", "uniform"):
            raise ValueError(f"preprocessing sampling must be 'dense' or 'uniform', got {self.sampling!r}")
        if self.num_crops not in (1, 3):
            raise ValueError(f"preprocessing num_crops must be 1 or 3, got {self.num_crops}")
        if self.num_crops == 3 and self.short_side != self.crop_size:
            raise ValueError(
                "three-crop testing needs short_side == crop_size "
                f"(got {self.short_side} and {self.crop_size})"
            )
        if self.crop_size > self.short_side:
            raise ValueError(
                f"crop_size {self.crop_size} is larger than short_side {self.short_side}"
            )
        if self.sampling == "uniform" and self.num_clips != 1:
            raise ValueError("uniform (SSv2) sampling takes exactly one clip per crop")

    # -- construction ------------------------------------------------------ #

    @classmethod
    def from_dict(cls, config: Mapping[str, Any], views: str | None = None) -> "Protocol":
        """Build from the preset's "preprocessing" dict; optional views override."""
        unknown = sorted(set(config) - set(_KEYS))
        if unknown:
            raise ValueError(f"unknown preprocessing key(s) {unknown}; expected a subset of {list(_KEYS)}")
        proto = cls(**{k: config[k] for k in _KEYS if k in config})
        return proto.with_views(views) if views is not None else proto

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        return d

    def with_views(self, views: str | tuple[int, int]) -> "Protocol":
        """Same protocol with ``views`` = ``"AxB"`` (A clips x B crops)."""
        clips, crops = parse_views(views) if isinstance(views, str) else (int(views[0]), int(views[1]))
        return replace(self, num_clips=clips, num_crops=crops)

    def validation(self, short_side: int = 256) -> "Protocol":
        """The validation-during-training variant: 1 clip, short side 256, centre crop."""
        return replace(self, short_side=short_side, num_clips=1, num_crops=1)

    # -- indices and views --------------------------------------------------- #

    @property
    def views(self) -> str:
        return f"{self.num_clips}x{self.num_crops}"

    @property
    def num_views(self) -> int:
        return self.num_clips * self.num_crops

    def clip_indices(self, num_frames: int) -> list[list[int]]:
        """Frame indices of each clip for a video of ``num_frames`` frames."""
        if self.sampling == "uniform":
            return [uniform_test_indices(num_frames, self.clip_len)]
        if self.num_clips == 1:
            return [center_clip_indices(num_frames, self.clip_len, self.frame_interval)]
        return dense_test_indices(num_frames, self.clip_len, self.frame_interval, self.num_clips)

    def views_from_frames(self, frames: np.ndarray, normalise: bool = True) -> np.ndarray:
        """Views from the sampled frames ``(num_clips * clip_len, H, W, 3)`` uint8.

        ``frames`` may already be resized to the short side (then it is not
        resized again).  Returns ``(V, T, C, C, 3)`` float32, crop-major; with
        ``normalise=False`` the uint8 pixels of the same views (a quarter of the
        bytes, for shipping between processes), which :meth:`normalize_views`
        turns into exactly the float32 views.
        """
        frames = np.asarray(frames)
        expected = self.num_clips * self.clip_len
        if frames.ndim != 4 or frames.shape[0] != expected:
            raise ValueError(
                f"expected {expected} sampled frames (T, H, W, 3), got shape {frames.shape}"
            )
        frames = resize_short_side(frames, self.short_side)
        if self.num_crops == 3:
            crops = three_crops(frames, self.crop_size)
        else:
            crops = [center_crop(frames, self.crop_size)]
        c = self.crop_size
        pixels = np.empty(
            (self.num_crops, self.num_clips, self.clip_len, c, c, frames.shape[-1]), dtype=frames.dtype
        )
        for k, cropped in enumerate(crops):
            pixels[k] = cropped.reshape((self.num_clips, self.clip_len) + cropped.shape[1:])
        pixels = pixels.reshape((self.num_views, self.clip_len, c, c, frames.shape[-1]))
        return self.normalize_views(pixels) if normalise else pixels

    def normalize_views(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 views (from ``normalise=False``) -> the float32 normalised views, bit-identical
        (normalisation is element-wise)."""
        return normalize(pixels, self.mean, self.std)

    def views_for_video(self, video: str | os.PathLike | np.ndarray, normalise: bool = True) -> np.ndarray:
        """All test views of a video file or of a decoded video ``(n, H, W, 3)`` uint8.

        Returns ``(V, T, C, C, 3)`` float32 normalised views, ``V = num_crops *
        num_clips`` in the official (crop-major) order (their uint8 pixels with
        ``normalise=False``).  For a file, only the
        sampled frames are decoded and each is resized as soon as it is
        decoded, so memory does not grow with the video's length or resolution.
        """
        if isinstance(video, np.ndarray):
            if video.ndim != 4 or video.shape[-1] != 3:
                raise ValueError(f"expected a decoded video (n, H, W, 3), got shape {video.shape}")
            flat = [i for clip in self.clip_indices(video.shape[0]) for i in clip]
            unique, inverse = np.unique(np.asarray(flat), return_inverse=True)
            resized = resize_short_side(video[unique], self.short_side)
            return self.views_from_frames(resized[inverse], normalise)
        from .video import probe, read_frames  # noqa: PLC0415

        info = probe(video)
        flat = [i for clip in self.clip_indices(info.num_frames) for i in clip]
        size = self.short_side
        frames = read_frames(video, flat, frame_fn=lambda f: resize_short_side(f, size))
        return self.views_from_frames(frames, normalise)


# --------------------------------------------------------------------------- #
# TensorFlow / Keras
# --------------------------------------------------------------------------- #


def make_tf_preprocess(protocol: Protocol | Mapping[str, Any] | None = None) -> Callable:
    """A TensorFlow function: uint8 clip ``(T, H, W, 3)`` -> ``(T, C, C, 3)`` float32.

    Short-side resize to ``protocol.short_side`` (``tf.image.resize``, bilinear,
    sizes rounded like mmcv), centre crop of ``protocol.crop_size``, then
    ``(x - mean) / std``.  Usable eagerly, inside ``tf.function`` and in
    ``tf.data.Dataset.map``.  NOT bit-identical to the OpenCV path: use
    :meth:`Protocol.views_for_video` to reproduce published numbers.
    """
    import tensorflow as tf  # noqa: PLC0415

    if protocol is None:
        protocol = Protocol()
    elif not isinstance(protocol, Protocol):
        protocol = Protocol.from_dict(protocol)
    size = protocol.short_side
    crop = protocol.crop_size
    mean = tf.constant(np.asarray(protocol.mean, dtype=np.float32))
    std = tf.constant(np.asarray(protocol.std, dtype=np.float32))

    def preprocess(clip):
        clip = tf.convert_to_tensor(clip)
        shape = tf.shape(clip)
        h, w = shape[-3], shape[-2]
        scale = tf.cast(size, tf.float64) / tf.cast(tf.minimum(h, w), tf.float64)
        nh = tf.cast(tf.floor(tf.cast(h, tf.float64) * scale + 0.5), tf.int32)
        nw = tf.cast(tf.floor(tf.cast(w, tf.float64) * scale + 0.5), tf.int32)
        x = tf.image.resize(tf.cast(clip, tf.float32), tf.stack([nh, nw]), method="bilinear")
        # OpenCV returns uint8 after resizing; mirror the rounding/saturation.
        x = tf.clip_by_value(tf.round(x), 0.0, 255.0)
        top = (nh - crop) // 2
        left = (nw - crop) // 2
        x = x[..., top : top + crop, left : left + crop, :]
        x = (x - mean) / std
        static = clip.shape[:-3].concatenate([crop, crop, 3])
        return tf.ensure_shape(x, static)

    return preprocess


_NORMALIZE_PIXELS = None


def _build_normalize_pixels():
    """Define (once) and register the Keras layer; keras is imported lazily so that
    the numpy/OpenCV path does not pay for importing TensorFlow."""
    global _NORMALIZE_PIXELS
    if _NORMALIZE_PIXELS is not None:
        return _NORMALIZE_PIXELS
    import keras  # noqa: PLC0415

    @keras.saving.register_keras_serializable(package="video_swin")
    class NormalizePixels(keras.layers.Layer):
        """Maps uint8 or float pixels on the 0-255 scale to ``(x - mean) / std`` (float32).

        Channels-last; ``mean``/``std`` have one value per channel.  Output is
        always float32 (whatever the dtype policy), matching :func:`normalize`.
        """

        def __init__(self, mean=DEFAULT_MEAN, std=DEFAULT_STD, **kwargs):
            super().__init__(**kwargs)
            self.mean = tuple(float(v) for v in mean)
            self.std = tuple(float(v) for v in std)
            if len(self.mean) != len(self.std):
                raise ValueError("mean and std must have the same length")
            self._mean_np = np.asarray(self.mean, dtype=np.float32)
            self._std_np = np.asarray(self.std, dtype=np.float32)

        def call(self, inputs):
            x = keras.ops.cast(inputs, "float32")
            return (x - self._mean_np) / self._std_np

        def compute_output_shape(self, input_shape):
            return input_shape

        def compute_output_spec(self, inputs):
            return keras.KerasTensor(inputs.shape, dtype="float32")

        def get_config(self):
            config = super().get_config()
            config.update({"mean": list(self.mean), "std": list(self.std)})
            return config

    NormalizePixels.__module__ = __name__
    NormalizePixels.__qualname__ = "NormalizePixels"
    _NORMALIZE_PIXELS = NormalizePixels
    return NormalizePixels


def __getattr__(name: str):
    # ``from video_swin.data.preprocess import NormalizePixels`` imports keras on demand.
    if name == "NormalizePixels":
        return _build_normalize_pixels()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
