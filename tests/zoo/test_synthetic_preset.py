"""The shipped synthetic-motion preset: it loads, it is small, it carries the 16x64x64 protocol and its
input stem, and it classifies fresh clips (seeds never used in training), of our generator and of the
independent second one, as well as its metadata says.

metadata.json holds what scripts/train_synthetic.py measured on 800 + 200 + 400 held-out clips (~97 %, the
issue's target being >= 95 %); here fresh samples must land within three binomial standard errors of it."""

import json
import math

import numpy as np
import pytest

from video_swin.data import synthetic
from video_swin.zoo.synthetic_motion import PRESET_DIR

pytestmark = pytest.mark.skipif(not (PRESET_DIR / "config.json").is_file(), reason="preset not built yet")


def test_preset_files_and_protocol():
    config = json.loads((PRESET_DIR / "config.json").read_text())
    assert config["class_names"] == list(synthetic.CLASSES)
    pre = config["preprocessing"]
    assert {k: pre[k] for k in ("sampling", "clip_len", "frame_interval", "num_clips", "num_crops", "short_side",
                                "crop_size")} == {"sampling": "dense", "clip_len": 16, "frame_interval": 1,
                                                  "num_clips": 1, "num_crops": 1, "short_side": 64, "crop_size": 64}
    assert len(pre["mean"]) == len(pre["std"]) == 3
    assert (PRESET_DIR / "model.weights.h5").stat().st_size <= 5 * 2**20
    meta = json.loads((PRESET_DIR / "metadata.json").read_text())
    assert set(meta["evaluation"]) == {"heldout_seed_uncompressed", "heldout_seed_compressed",
                                       "second_generator_solid", "second_generator_gradient"}
    assert config["architecture"]["background_difference"] is True
    # The bar the embedded default is shipped against (issue 4): >= 95 % on held-out clips of both
    # generators, trained in under 15 minutes; the tests below check fresh clips against these figures.
    assert meta["evaluation"]["heldout_seed_uncompressed"]["top1"] >= 0.95
    assert meta["evaluation"]["second_generator_solid"]["top1"] >= 0.95
    assert meta["train_wall_seconds"] < 15 * 60


def _within_three_standard_errors(accuracy, claimed, n):
    se = math.sqrt(claimed * (1 - claimed) / n)
    assert accuracy >= claimed - 3 * se, (accuracy, claimed, n)
    assert accuracy > 0.5, accuracy  # far above chance (0.125) in any case


def test_fresh_clips_are_classified_as_well_as_the_metadata_says():
    from video_swin.zoo.synthetic_motion import classify_clips

    claimed = json.loads((PRESET_DIR / "metadata.json").read_text())["evaluation"]["heldout_seed_uncompressed"]["top1"]
    # seeds 0-4, 10 and 11 were used by the script; 9001 never was
    x, y = synthetic.generate_arrays(240, seed=9001, randomize=True)
    _within_three_standard_errors(float((classify_clips(x, PRESET_DIR).argmax(axis=1) == y).mean()), claimed, len(y))


def test_fresh_clips_of_the_second_generator_as_well_as_the_metadata_says():
    """The independent generator (other rasteriser, shapes and noise; solid backgrounds as the issue
    describes): the model learnt the motions, not our generator's look."""
    from video_swin.data import second_generator
    from video_swin.zoo.synthetic_motion import classify_clips

    claimed = json.loads((PRESET_DIR / "metadata.json").read_text())["evaluation"]["second_generator_solid"]["top1"]
    x, y = second_generator.generate(160, seed=9002)
    _within_three_standard_errors(float((classify_clips(x, PRESET_DIR).argmax(axis=1) == y).mean()), claimed, len(y))


def test_demo_synthetic():
    from video_swin.zoo.synthetic_motion import demo_synthetic

    rows = demo_synthetic(n_clips=8)
    assert [r[0] for r in rows] == list(synthetic.CLASSES)
    assert all(r[1] in synthetic.CLASSES and 0.0 < r[2] <= 1.0 for r in rows)
    assert sum(r[0] == r[1] for r in rows) >= 4  # chance would be 1 of 8
