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


# The held-out sets of the README's table for the shipped preset: how each is generated. Seeds and clip
# counts are the caller's (scripts/train_synthetic.py: seeds 2, 3, 4 and 800 / 200 / 400 / 400 clips;
# the tests: fresh seeds and fewer clips).
HELD_OUT_SETS = {
    "heldout_seed_uncompressed": "our generator, uncompressed",
    "heldout_seed_compressed": "our generator, through the video codec as make-synthetic writes them",
    "second_generator_solid": "the independent second generator, solid backgrounds",
    "second_generator_gradient": "the second generator with colour-gradient backgrounds (a stress test)",
}


def held_out_clips(name: str, n: int, seed: int, workers: int | None = 1):
    """(clips uint8 (n, 16, 64, 64, 3), labels (n,)) of the held-out set `name` (see HELD_OUT_SETS)."""
    from video_swin.data import second_generator, synthetic

    if name == "heldout_seed_uncompressed":
        return synthetic.generate_arrays(n, seed=seed, randomize=True, workers=workers)
    if name == "heldout_seed_compressed":
        return synthetic.generate_arrays(n, seed=seed, randomize=True, compress=True, workers=workers)
    if name.startswith("second_generator_"):
        return second_generator.generate(n, seed=seed, background=name[len("second_generator_"):])
    raise ValueError(f"unknown held-out set {name!r}; expected one of {sorted(HELD_OUT_SETS)}")


def held_out_accuracy(name: str, n: int, seed: int, preset_dir=PRESET_DIR, workers: int | None = 1) -> dict:
    """Top-1 of the preset on `n` clips of the held-out set `name`: {"top1", "correct", "clips", "seed"}."""
    x, y = held_out_clips(name, n, seed, workers)
    correct = int((classify_clips(x, preset_dir).argmax(axis=1) == y).sum())
    return {"top1": correct / len(y), "correct": correct, "clips": int(len(y)), "seed": int(seed)}


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
