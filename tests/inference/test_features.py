"""`features`: backbone features per window that place windows of the same motion together across videos,
equal what the classifier's head reads, and a folder writer that skips what is done."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from video_swin.data import synthetic
from video_swin.inference import features as ft
from video_swin.inference import timeline as tl
from video_swin.models import presets
from video_swin.zoo.synthetic_motion import PRESET_DIR

NN_SEEDS = range(20261300, 20261308)  # fresh: never used to choose anything


@pytest.fixture(scope="module")
def extractor():
    return ft.FeatureExtractor(PRESET_DIR, jit_compile=False)


@pytest.fixture(scope="module")
def short_video(tmp_path_factory):
    path, _ = synthetic.make_long_video(tmp_path_factory.mktemp("v") / "short.mp4", minutes=0.5, seed=21)
    return path


def _inside(window, truth):
    """The label of the truth segment that holds the whole window, or None."""
    for segment in truth:
        if segment["segment"][0] <= window["start_s"] and window["end_s"] <= segment["segment"][1]:
            return segment["label"]
    return None


def test_nearest_neighbour_finds_the_same_motion_in_other_videos(extractor, tmp_path):
    """Eight new 3-minute videos through `write_features`; every window that lies inside one truth segment
    is labelled by its nearest neighbour (cosine) among the windows of the seven OTHER videos (neighbours in
    the same video would share the segment's shape and colours): >= 90 % carry the same motion class."""
    folder = tmp_path / "videos"
    truths = {}
    for seed in NN_SEEDS:
        path, truth = synthetic.make_long_video(folder / f"v{seed}.mp4", minutes=3, seed=seed)
        truths[path.stem] = json.loads(truth.read_text())["database"][path.stem]["annotations"]
    videos = sorted(folder.glob("*.mp4"))
    summary = ft.write_features(videos, extractor, tmp_path / "features")
    assert summary["failed"] == [] and len(summary["written"]) == 8

    rows = list(csv.DictReader(open(summary["index"])))
    assert len(rows) == 8 * 179
    features, labels, owner = [], [], []
    for path in videos:
        data = np.load(tmp_path / "features" / f"{path.stem}.npy")
        windows = [r for r in rows if r["file"] == f"{path.stem}.npy"]
        assert data.shape == (len(windows), 96) and [int(r["row"]) for r in windows] == list(range(len(windows)))
        for r in windows:
            label = _inside({"start_s": float(r["start_s"]), "end_s": float(r["end_s"])}, truths[path.stem])
            if label is not None:
                features.append(data[int(r["row"])])
                labels.append(label)
                owner.append(path.stem)
    features = np.stack(features)
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    labels, owner = np.array(labels), np.array(owner)
    similarity = features @ features.T
    similarity[owner[:, None] == owner[None, :]] = -np.inf
    accuracy = float(np.mean(labels[similarity.argmax(axis=1)] == labels))
    print(f"{len(labels)} windows inside segments, nearest-neighbour class accuracy {accuracy:.3f}")
    assert accuracy >= 0.9


def test_pooled_features_are_what_the_head_reads(extractor, short_video):
    """softmax(head(mean-pooled features)) of each window = the timeline's probabilities (1x1 views)."""
    result = ft.extract_features(str(short_video), extractor)
    timeline = tl.timeline(str(short_video), tl.TimelineModel(PRESET_DIR, jit_compile=False))
    assert result["windows"] == [{k: w[k] for k in ("window", "start_s", "end_s", "center_s")} for w in timeline["windows"]]
    kernel, bias = (np.asarray(v, np.float64) for v in presets.from_preset(PRESET_DIR).get_layer("head").get_weights())
    logits = result["features"].astype(np.float64) @ kernel + bias
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(probabilities, timeline["probabilities"], atol=1e-5)


def test_maps_keep_time_and_space(extractor, short_video, tmp_path):
    """pool="none": the (T', H', W', C) map per window, whose mean is the pooled feature; the folder's .npy
    (written a row at a time) holds the same array."""
    pooled = ft.extract_features(str(short_video), extractor)["features"]
    maps = ft.extract_features(str(short_video), extractor, pool="none")
    assert maps["features"].shape == (len(pooled), 4, 4, 4, 96) and maps["features"].dtype == np.float32
    np.testing.assert_allclose(maps["features"].mean(axis=(1, 2, 3)), pooled, atol=1e-5)
    ft.write_features([short_video], extractor, tmp_path, pool="none")
    np.testing.assert_array_equal(np.load(tmp_path / "short.npy"), maps["features"])
    saved = json.loads((tmp_path / "short.json").read_text())
    assert saved["shape"] == list(maps["features"].shape) and saved["windows"] == maps["windows"]


def test_rerun_skips_what_is_done(extractor, short_video, tmp_path):
    out = tmp_path / "out"
    statuses = []
    report = lambda video, status, detail: statuses.append(status)  # noqa: E731
    ft.write_features([short_video], extractor, out, on_video=report)
    first = (out / "short.npy").stat().st_mtime_ns
    ft.write_features([short_video], extractor, out, on_video=report)
    assert statuses == ["written", "skipped"] and (out / "short.npy").stat().st_mtime_ns == first
    ft.write_features([short_video], extractor, out, stride_s=2.0, on_video=report)  # other settings: redone
    assert statuses[-1] == "written" and np.load(out / "short.npy").shape == (15, 96)
    rows = list(csv.DictReader(open(out / "index.csv")))
    assert [float(r["start_s"]) for r in rows] == [2.0 * k for k in range(15)]


def test_a_bad_video_fails_alone(extractor, short_video, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    data = short_video.read_bytes()
    summary = ft.write_features([bad, short_video], extractor, tmp_path / "out", index="parquet")
    assert [v for v, _ in summary["failed"]] == [str(bad)] and summary["written"] == [str(short_video)]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["index.parquet", "short.json", "short.npy"]
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "out" / "index.parquet").to_pylist()
    assert len(table) == 29 and table[3] == {"video": str(short_video), "file": "short.npy", "row": 3, "window": 3,
                                             "start_s": 3.0, "end_s": 5.0, "center_s": 4.0}
    assert short_video.read_bytes() == data


def test_backbone_only_preset(extractor, short_video, tmp_path):
    preset = presets.load_preset(PRESET_DIR)
    backbone = presets.save_preset(presets.from_preset(PRESET_DIR).backbone, tmp_path / "backbone",
                                   preprocessing=preset.preprocessing)
    assert presets.load_preset(backbone).config["num_classes"] is None
    np.testing.assert_allclose(ft.extract_features(str(short_video), backbone, jit_compile=False)["features"],
                               ft.extract_features(str(short_video), extractor)["features"], atol=1e-6)


def test_cli(short_video, tmp_path, capsys):
    from video_swin.cli.app import main

    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.mp4").write_bytes(short_video.read_bytes())
    (folder / "broken.mp4").write_bytes(short_video.read_bytes()[:2000])
    args = ["features", str(folder), "--preset", str(PRESET_DIR), "--out", str(tmp_path / "out")]
    assert main(args) == 1
    out, err = capsys.readouterr()
    assert "a.mp4: 29 windows -> [29, 96]" in out and "index: " in out
    assert err.splitlines()[0].startswith(f"{folder / 'broken.mp4'}: error: ")
    assert err.splitlines()[-1] == "video-swin: error: 1 of 2 input(s) failed"
    assert main(["features", str(folder / "a.mp4")] + args[2:]) == 0
    assert "already done (29 windows), skipped" in capsys.readouterr().out
