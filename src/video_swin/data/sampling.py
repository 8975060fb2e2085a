"""Frame-index sampling, matching the Video Swin Transformer release.

The official Video Swin code (github.com/SwinTransformer/Video-Swin-Transformer)
ships its own copy of mmaction2 0.x; the relevant source is
``mmaction/datasets/pipelines/loading.py`` class ``SampleFrames``:

* test mode (``_get_test_clips``)::

      ori_clip_len = clip_len * frame_interval
      avg_interval = (num_frames - ori_clip_len + 1) / float(num_clips)
      if num_frames > ori_clip_len - 1:
          base_offsets = np.arange(num_clips) * avg_interval
          clip_offsets = (base_offsets + avg_interval / 2.0).astype(np.int)
      else:
          clip_offsets = np.zeros((num_clips,), dtype=np.int)

  then ``frame_inds = clip_offsets[:, None] + np.arange(clip_len) * frame_interval``
  and, with the default ``out_of_bound_opt='loop'``, ``np.mod(frame_inds, num_frames)``.

  NOTE: mmaction2 1.x rewrote ``_get_test_clips`` (evenly spaced offsets
  ``np.round(arange(num_clips) * max_offset / (num_clips - 1))`` with
  ``max_offset = num_frames - ((clip_len - 1) * frame_interval + 1)``; a single
  clip starts at ``max_offset // 2``).  The published Video Swin numbers were
  produced with the 0.x rule above, which is what is implemented here.

* ``frame_uniform=True`` (Something-Something v2 configs), ``get_seq_frames``::

      seg_size = float(num_frames - 1) / clip_len
      for i in range(clip_len):
          start = int(np.round(seg_size * i))
          end = int(np.round(seg_size * (i + 1)))
          seq.append((start + end) // 2)          # test mode
          # train mode: random.randint(start, end)

  ``np.round`` rounds half to even ("banker's rounding").  No modulo is needed:
  every index is in ``[0, num_frames - 1]``.  (The same code is
  ``UniformSample``/``_get_repeat_sample_clips`` in mmaction2 1.x.)  The
  ``frame_interval`` and ``num_clips`` of those configs (2 and 1) are ignored by
  this path.

* train mode (``_get_train_clips``, default ``keep_tail_frames=False``), for
  one clip: ``avg_interval = num_frames - ori_clip_len + 1``; if positive the
  offset is ``randint(avg_interval)`` (uniform in ``[0, num_frames -
  ori_clip_len]``), otherwise 0; then the same loop/modulo as test mode.
"""

from __future__ import annotations

from typing import Union

import numpy as np

__all__ = [
    "dense_test_indices",
    "uniform_test_indices",
    "uniform_train_indices",
    "random_clip_indices",
    "center_clip_indices",
]

RngLike = Union[np.random.Generator, np.random.RandomState, int, None]


def _check(n: int, clip_len: int, interval: int = 1, num_clips: int = 1) -> None:
    if int(n) < 1:
        raise ValueError(f"the video has no frames (n={n})")
    if clip_len < 1 or interval < 1 or num_clips < 1:
        raise ValueError(
            f"clip_len, frame_interval and num_clips must be >= 1 "
            f"(got {clip_len}, {interval}, {num_clips})"
        )


def _clip(start: int, n: int, clip_len: int, interval: int) -> list[int]:
    return [(start + interval * k) % n for k in range(clip_len)]


def dense_test_indices(n: int, clip_len: int, interval: int, num_clips: int) -> list[list[int]]:
    """Indices of ``num_clips`` test clips (mmaction2 0.x ``SampleFrames``, test mode).

    Returns ``num_clips`` lists of ``clip_len`` indices in ``[0, n)``; short
    videos loop (indices taken modulo ``n``).
    """
    n, clip_len, interval, num_clips = int(n), int(clip_len), int(interval), int(num_clips)
    _check(n, clip_len, interval, num_clips)
    span = clip_len * interval
    if n > span - 1:
        avg = (n - span + 1) / float(num_clips)
        # float64 arithmetic in the same order as numpy's
        # ``np.arange(num_clips) * avg + avg / 2.0``; astype(int) truncates (values >= 0).
        starts = [int(i * avg + avg / 2.0) for i in range(num_clips)]
    else:
        starts = [0] * num_clips
    return [_clip(s, n, clip_len, interval) for s in starts]


def center_clip_indices(n: int, clip_len: int, interval: int) -> list[int]:
    """One centred clip: the official single-clip test/validation sampling.

    Identical to ``dense_test_indices(n, clip_len, interval, 1)[0]``: the clip
    starts at ``int((n - span + 1) / 2)`` when ``n >= span`` and at 0 otherwise
    (then loops).
    """
    return dense_test_indices(n, clip_len, interval, 1)[0]


def uniform_test_indices(n: int, clip_len: int) -> list[int]:
    """One clip of ``clip_len`` frames spread uniformly over the video (SSv2 test).

    ``SampleFrames(frame_uniform=True, test_mode=True).get_seq_frames``: the
    middle of each of ``clip_len`` equal segments of ``[0, n - 1]``.
    """
    n, clip_len = int(n), int(clip_len)
    _check(n, clip_len)
    seg = float(n - 1) / clip_len
    out = []
    for i in range(clip_len):
        start = int(np.round(seg * i))
        end = int(np.round(seg * (i + 1)))
        out.append((start + end) // 2)
    return out


def _rng(rng: RngLike) -> np.random.Generator | np.random.RandomState:
    if isinstance(rng, (np.random.Generator, np.random.RandomState)):
        return rng
    return np.random.default_rng(rng)


def _randint(rng, low: int, high_inclusive: int) -> int:
    if isinstance(rng, np.random.RandomState):
        return int(rng.randint(low, high_inclusive + 1))
    return int(rng.integers(low, high_inclusive + 1))


def uniform_train_indices(n: int, clip_len: int, rng: RngLike = None) -> list[int]:
    """SSv2 training sampling: a random frame from each of ``clip_len`` segments."""
    n, clip_len = int(n), int(clip_len)
    _check(n, clip_len)
    g = _rng(rng)
    seg = float(n - 1) / clip_len
    out = []
    for i in range(clip_len):
        start = int(np.round(seg * i))
        end = int(np.round(seg * (i + 1)))
        out.append(_randint(g, start, end))
    return out


def random_clip_indices(n: int, clip_len: int, interval: int, rng: RngLike = None) -> list[int]:
    """One random training clip (mmaction2 ``SampleFrames`` train mode, 1 clip).

    The start is uniform in ``[0, n - clip_len * interval]`` when the video is
    long enough, else 0; indices loop modulo ``n``.  ``rng`` is a
    ``np.random.Generator``, a ``RandomState``, a seed or None.
    """
    n, clip_len, interval = int(n), int(clip_len), int(interval)
    _check(n, clip_len, interval)
    span = clip_len * interval
    avg_interval = n - span + 1
    start = _randint(_rng(rng), 0, avg_interval - 1) if avg_interval > 0 else 0
    return _clip(start, n, clip_len, interval)
