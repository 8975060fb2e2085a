"""Training data: listings, the seeded/resumable training pipeline, the deterministic validation views,
label-mapped flips and TFRecord extraction."""

import numpy as np
import pytest

from video_swin.data import synthetic


@pytest.fixture(scope="module")
def video_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    synthetic.make_synthetic(root, clips=16, seed=5, frames=12, size=32, workers=1)
    return root


def _spec(**kw):
    from video_swin.training.data import ClipSpec

    base = dict(clip_len=8, frame_interval=1, short_side=32, crop_size=24, mean=(127.5,) * 3, std=(64.0,) * 3,
                flip=False, scale=(0.5, 1.0))
    base.update(kw)
    return ClipSpec(**base)


def test_folder_and_list_listings(video_folder, tmp_path):
    from video_swin.training.data import DataError, load_video_list, read_list

    listing = load_video_list(video_folder)
    assert listing.class_names == list(synthetic.CLASSES)  # labels.txt order, not alphabetical
    assert len(listing) == 16 and np.bincount(listing.labels).tolist() == [2] * 8
    # a list with names, indices, a comment, a CSV line and a relative path
    lines = ["# comment", f"{listing.paths[0]} moving_left", f"{listing.paths[3]},1", "rel/clip.mp4 7"]
    lst = tmp_path / "list.txt"
    lst.write_text("\n".join(lines) + "\n")
    got = read_list(lst, class_names=synthetic.CLASSES)
    assert got.labels.tolist() == [0, 1, 7]
    assert got.paths[2] == str(tmp_path / "rel" / "clip.mp4")
    (tmp_path / "bad.txt").write_text(f"{listing.paths[0]} no_such_class\n")
    with pytest.raises(DataError, match="unknown class"):
        read_list(tmp_path / "bad.txt", class_names=synthetic.CLASSES)
    train, val = listing.split(0.5, seed=0)
    assert len(train) == len(val) == 8 and sorted(val.labels.tolist()) == list(range(8))
    assert not set(train.paths) & set(val.paths)


def test_training_epochs_are_seeded_and_resumable(video_folder):
    from video_swin.training.data import TrainData, VideoSource, load_video_list

    source = VideoSource(load_video_list(video_folder))
    data = TrainData(source, _spec(), seed=3, workers=2)
    full = list(data.epoch_dataset(0, 4, 4).as_numpy_iterator())
    again = list(data.epoch_dataset(0, 4, 4).as_numpy_iterator())
    assert len(full) == 4 and full[0][0].shape == (4, 8, 24, 24, 3) and full[0][0].dtype == np.float32
    for (xa, ya), (xb, yb) in zip(full, again):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    tail = list(data.epoch_dataset(0, 4, 4, start=8).as_numpy_iterator())  # resume after two steps
    for (xa, ya), (xb, yb) in zip(full[2:], tail):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    other = list(data.epoch_dataset(1, 4, 4).as_numpy_iterator())
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(full, other))
    # two shards (two workers) together see exactly the clips of the unsharded epoch
    shards = [list(data.epoch_dataset(0, 2, 4, num_shards=2, shard=s).as_numpy_iterator()) for s in (0, 1)]
    for step in range(4):
        merged = np.concatenate([shards[0][step][1], shards[1][step][1]])
        assert sorted(merged.tolist()) == sorted(full[step][1].tolist())


def test_validation_views_are_deterministic_and_exact(video_folder):
    from video_swin.training.data import VideoSource, load_video_list, views_dataset

    source = VideoSource(load_video_list(video_folder))
    protocol = _spec().validation_protocol()
    a = list(views_dataset(source, protocol, workers=2).as_numpy_iterator())
    b = list(views_dataset(source, protocol, workers=1).as_numpy_iterator())
    assert len(a) == 16
    for (va, la, ia), (vb, lb, ib) in zip(a, b):
        np.testing.assert_array_equal(va, vb)
        assert la == lb and ia == ib
    expected = protocol.views_for_video(source.video(5))  # the official numpy/OpenCV path
    np.testing.assert_array_equal(a[5][0], expected)
    assert a[5][0].shape == (1, 8, 24, 24, 3)


def test_flip_off_and_label_maps():
    import tensorflow as tf

    from video_swin.training.data import augment, parse_flip_pairs

    rng = np.random.default_rng(0)
    clip = rng.integers(0, 256, (8, 24, 24, 3)).astype(np.uint8)
    spec = _spec(random_crop=False, crop_size=24, flip=False)
    for s in range(8):  # flip off: the clip is never flipped
        x, y = augment(tf.constant(clip), tf.constant(0, tf.int64), tf.constant([0, s], tf.int64), spec)
        np.testing.assert_allclose(x.numpy(), (clip - 127.5) / 64.0, atol=1e-6)
        assert int(y) == 0
    perm = parse_flip_pairs("moving_left:moving_right,rotating_clockwise:rotating_anticlockwise", synthetic.CLASSES)
    assert perm == (1, 0, 2, 3, 5, 4, 6, 7)
    maps = {"hflip": perm, "reverse": (1, 0, 3, 2, 5, 4, 7, 6)}
    spec = _spec(random_crop=False, crop_size=24, flip=True, label_maps=maps)
    seen = set()
    for s in range(32):
        x, y = augment(tf.constant(clip), tf.constant(0, tf.int64), tf.constant([1, s], tf.int64), spec)
        x = x.numpy() * 64.0 + 127.5
        flipped = np.allclose(x, clip[:, :, ::-1], atol=1e-3) or np.allclose(x, clip[::-1, :, ::-1], atol=1e-3)
        reversed_ = np.allclose(x, clip[::-1], atol=1e-3) or np.allclose(x, clip[::-1, :, ::-1], atol=1e-3)
        expected = 0
        if flipped:
            expected = perm[expected]
        if reversed_:
            expected = maps["reverse"][expected]
        assert int(y) == expected
        seen.add((flipped, reversed_))
    assert len(seen) == 4  # all four combinations occur


def test_tfrecord_extraction_and_reader(video_folder, tmp_path):
    from video_swin import cli
    from video_swin.training.tfrecords import TFRecordTrainData, read_manifest, tfrecord_views_dataset

    out = tmp_path / "records"
    assert cli.main(["extract-tfrecords", "--data", str(video_folder), "--out", str(out), "--shards", "2",
                     "--short-side", "32", "--workers", "1"]) == 0
    manifest = read_manifest(out)
    assert manifest["num_examples"] == 16 and manifest["class_names"] == list(synthetic.CLASSES)
    assert (out / "labels.txt").read_text().split() == list(synthetic.CLASSES)
    data = TFRecordTrainData(out, _spec(), seed=1, workers=2)
    batches = list(data.epoch_dataset(0, 4, 4).as_numpy_iterator())
    assert len(batches) == 4 and batches[0][0].shape == (4, 8, 24, 24, 3)
    assert sorted(np.concatenate([b[1] for b in batches]).tolist()) == sorted([i // 2 for i in range(16)])
    again = list(data.epoch_dataset(0, 4, 4, start=4).as_numpy_iterator())
    np.testing.assert_array_equal(batches[1][0], again[0][0])
    views = list(tfrecord_views_dataset(out, _spec()).as_numpy_iterator())
    assert len(views) == 16 and views[0][0].shape == (1, 8, 24, 24, 3)
