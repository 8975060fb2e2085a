"""The shipped synthetic-motion preset at work on freshly generated clips."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

PRESET_DIR = Path(__file__).resolve().parent / "builtin" / "synthetic_motion"
DEMO_SEED = 20261127  # never used for training (scripts/train_synthetic.py trains on seed 0)


@functools.lru_cache(maxsize=2)
def _load(preset_dir: str):
    from video_swin.models import presets

    preset = presets.load_preset(preset_dir)
    return preset, preset.load_model()


def classify_clips(clips: np.ndarray, preset_dir=PRESET_DIR, batch: int = 16) -> np.ndarray:
    """uint8 clips (N, T, H, W, 3) -> class probabilities (N, classes) with the preset's protocol (softmax
    per view, mean over views)."""
    from video_swin.data.preprocess import Protocol

    preset, model = _load(str(preset_dir))
    protocol = Protocol.from_dict(preset.preprocessing)
    views = np.stack([protocol.views_for_video(np.asarray(c)) for c in clips])  # (N, V, T, C, C, 3)
    n, v = views.shape[:2]
    flat = views.reshape((n * v,) + views.shape[2:])
    logits = np.concatenate([np.asarray(model(flat[i : i + batch], training=False)) for i in range(0, len(flat), batch)])
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).reshape(n, v, -1).mean(axis=1)


def demo_synthetic(n_clips: int = 8, seed: int | None = DEMO_SEED, compress: bool = False, preset_dir=PRESET_DIR):
    """Generates `n_clips` NEW synthetic clips (labels cycle through the 8 classes), classifies them with
    the shipped preset and returns [(true_label, predicted_label, probability)].

    seed: the generator seed (default: a fixed seed never used in training; None: a random one);
    compress: round-trip every clip through the video codec as `make-synthetic` files are.
    """
    from video_swin.data import synthetic

    if seed is None:
        seed = int(np.random.SeedSequence().entropy % (2**31))
    x, y = synthetic.generate_arrays(int(n_clips), seed=int(seed), randomize=True, compress=compress)
    probs = classify_clips(x, preset_dir)
    preset, _ = _load(str(preset_dir))
    names = preset.class_names
    pred = probs.argmax(axis=1)
    return [(names[int(t)], names[int(p)], float(probs[i, p])) for i, (t, p) in enumerate(zip(y, pred))]


def format_demo(rows) -> str:
    lines = [f"{'true':<24} {'predicted':<24} prob"]
    for true, pred, prob in rows:
        mark = "" if true == pred else "   <- wrong"
        lines.append(f"{true:<24} {pred:<24} {prob:.3f}{mark}")
    correct = sum(t == p for t, p, _ in rows)
    lines.append(f"{correct}/{len(rows)} correct")
    return "\n".join(lines)
