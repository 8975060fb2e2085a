"""Frame sampling vs. transcriptions of the official (mmaction2 0.x, Video Swin) code."""

from __future__ import annotations

import numpy as np
import pytest

from video_swin.data.sampling import (
    center_clip_indices,
    dense_test_indices,
    random_clip_indices,
    uniform_test_indices,
    uniform_train_indices,
)


def official_test_clips(num_frames, clip_len, frame_interval, num_clips):
    """SampleFrames._get_test_clips + the 'loop' out-of-bound option, with numpy."""
    ori_clip_len = clip_len * frame_interval
    avg_interval = (num_frames - ori_clip_len + 1) / float(num_clips)
    if num_frames > ori_clip_len - 1:
        base_offsets = np.arange(num_clips) * avg_interval
        clip_offsets = (base_offsets + avg_interval / 2.0).astype(np.int64)
    else:
        clip_offsets = np.zeros((num_clips,), dtype=np.int64)
    frame_inds = clip_offsets[:, None] + np.arange(clip_len)[None, :] * frame_interval
    return np.mod(frame_inds, num_frames)


def official_seq_frames(num_frames, clip_len):
    """SampleFrames.get_seq_frames (frame_uniform=True), test mode."""
    seg_size = float(num_frames - 1) / clip_len
    seq = []
    for i in range(clip_len):
        start = int(np.round(seg_size * i))
        end = int(np.round(seg_size * (i + 1)))
        seq.append((start + end) // 2)
    return np.array(seq)


@pytest.mark.parametrize(
    "clip_len,interval,num_clips",
    [(32, 2, 4), (32, 2, 1), (16, 4, 5), (8, 8, 2), (4, 1, 10), (1, 1, 32)],
)
def test_dense_matches_official(clip_len, interval, num_clips):
    for n in list(range(1, 260)) + [299, 300, 301, 1000, 17999]:
        ours = np.array(dense_test_indices(n, clip_len, interval, num_clips))
        assert ours.shape == (num_clips, clip_len)
        assert np.array_equal(ours, official_test_clips(n, clip_len, interval, num_clips)), n


def test_dense_known_values():
    # span 64, avg = (300 - 64 + 1) / 4 = 59.25 -> starts int(29.625), int(88.875), ...
    clips = dense_test_indices(300, 32, 2, 4)
    assert [c[0] for c in clips] == [29, 88, 148, 207]
    assert clips[3][-1] == 207 + 62
    # n == span - 1: "n > span - 1" is false -> every clip starts at 0 (no wrap yet)
    clips = dense_test_indices(63, 32, 2, 4)
    assert all(c == list(range(0, 63, 2)) for c in clips)
    # n == span: avg = 0.25 -> starts int(0.125 + 0.25 i) = 0
    clips = dense_test_indices(64, 32, 2, 4)
    assert all(c[0] == 0 for c in clips)
    # short video loops
    assert dense_test_indices(10, 8, 2, 1)[0] == [0, 2, 4, 6, 8, 0, 2, 4]
    assert dense_test_indices(1, 4, 2, 2) == [[0, 0, 0, 0], [0, 0, 0, 0]]


def test_center_clip():
    # 1 clip: start int((n - span + 1) / 2)
    assert center_clip_indices(300, 32, 2)[0] == int((300 - 64 + 1) / 2) == 118
    assert center_clip_indices(300, 32, 2) == dense_test_indices(300, 32, 2, 1)[0]
    assert center_clip_indices(20, 32, 2)[:3] == [0, 2, 4]
    assert all(0 <= i < 20 for i in center_clip_indices(20, 32, 2))


def test_uniform_matches_official():
    for n in list(range(1, 400)) + [1000, 12345]:
        for clip_len in (32, 16, 8):
            ours = uniform_test_indices(n, clip_len)
            assert len(ours) == clip_len
            assert np.array_equal(ours, official_seq_frames(n, clip_len)), (n, clip_len)
            assert all(0 <= i < n for i in ours)
            assert ours == sorted(ours)


def test_uniform_rounds_half_to_even():
    # n = 17, clip_len = 32: seg = 0.5, so seg * i hits .5 exactly for odd i.
    # np.round: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, 3.5 -> 4 (half to even).
    ours = uniform_test_indices(17, 32)
    half_up = []
    for i in range(32):
        s, e = int(np.floor(0.5 * i + 0.5)), int(np.floor(0.5 * (i + 1) + 0.5))
        half_up.append((s + e) // 2)
    assert ours != half_up
    assert ours[:6] == [0, 0, 1, 2, 2, 2]
    assert ours[-1] == 16


def test_random_clip():
    n, clip_len, interval = 100, 32, 2  # span 64 -> start in [0, 36]
    starts = {random_clip_indices(n, clip_len, interval, rng=seed)[0] for seed in range(2000)}
    assert min(starts) == 0 and max(starts) == 36 and len(starts) == 37
    rng = np.random.default_rng(5)
    clip = random_clip_indices(n, clip_len, interval, rng)
    assert np.all(np.diff(clip) == interval)
    assert random_clip_indices(n, clip_len, interval, 7) == random_clip_indices(n, clip_len, interval, 7)
    # RandomState works too
    clip = random_clip_indices(n, clip_len, interval, np.random.RandomState(0))
    assert 0 <= clip[0] <= 36
    # too short: starts at 0 and loops
    assert random_clip_indices(40, 32, 2, 0) == [(2 * k) % 40 for k in range(32)]
    assert random_clip_indices(64, 32, 2, 0)[0] == 0  # exactly one position
    assert random_clip_indices(63, 32, 2, 0)[0] == 0


def test_uniform_train():
    n = 100
    seg = (n - 1) / 32
    for seed in range(20):
        ours = uniform_train_indices(n, 32, seed)
        for i, v in enumerate(ours):
            assert int(np.round(seg * i)) <= v <= int(np.round(seg * (i + 1)))


@pytest.mark.parametrize(
    "fn,args",
    [
        (dense_test_indices, (0, 32, 2, 4)),
        (dense_test_indices, (10, 0, 2, 4)),
        (dense_test_indices, (10, 32, 2, 0)),
        (uniform_test_indices, (0, 32)),
        (center_clip_indices, (0, 32, 2)),
        (random_clip_indices, (0, 32, 2, None)),
    ],
)
def test_invalid(fn, args):
    with pytest.raises(ValueError):
        fn(*args)
