"""`video-swin extract-tfrecords`: videos pre-extracted to TFRecord files of JPEG frames, and a reader
that samples and decodes clips inside the graph (the TensorFlow Model Garden layout for large datasets).

Each video is one `tf.train.SequenceExample`:

* context: `label` (int64), `class_name` (bytes), `path` (bytes), `num_frames`, `height`, `width` (int64);
* feature list `frames`: one JPEG (RGB, OpenCV-encoded, `quality`) per frame, resized so that the short
  side is `short_side` (OpenCV bilinear; 0 keeps the size).

The output folder holds `shard-XXXXX-of-YYYYY.tfrecord` files, `labels.txt` and `manifest.json`
(class names, example count, short side); `video-swin train --data FOLDER` recognises it.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import time
from pathlib import Path

import numpy as np

from video_swin import files
from video_swin.training.data import ClipSpec, DataError, augment, check_counts, load_video_list

MANIFEST = "manifest.json"
PATTERN = "shard-{:05d}-of-{:05d}.tfrecord"


def _encode_video(job):
    """Worker: decode one video, resize, JPEG-encode every frame. Never touches TensorFlow."""
    path, short_side, quality, max_frames = job
    import cv2

    from video_swin.data.preprocess import resize_short_side
    from video_swin.data.video import VideoError, probe, read_frames

    try:
        info = probe(path)
        n = info.num_frames if not max_frames else min(info.num_frames, int(max_frames))
        fn = (lambda f: resize_short_side(f, short_side)) if short_side else None
        frames = read_frames(path, range(n), frame_fn=fn)
    except (VideoError, OSError, ValueError) as exc:
        return path, None, str(exc)
    params = [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)]
    jpegs = []
    for f in frames:
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(f[..., ::-1]), params)
        if not ok:
            return path, None, "JPEG encoding failed"
        jpegs.append(buf.tobytes())
    return path, (jpegs, frames.shape[1], frames.shape[2]), None


def extract_tfrecords(data, out_dir, shards: int = 4, short_side: int = 256, quality: int = 90,
                      max_frames: int | None = None, workers: int | None = None, overwrite: bool = False,
                      log=print) -> dict:
    """Writes the TFRecord folder for a class-folder tree or list file; returns the manifest."""
    check_counts(shards=shards, quality=quality, max_frames=max_frames, workers=workers)
    check_counts(0, short_side=short_side)
    if quality > 100:
        raise ValueError(f"quality must be at most 100 (JPEG), got {quality}")
    listing = load_video_list(data)
    out = Path(out_dir)
    files.check_output_path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise DataError(f"{out} exists and is not empty (pass --overwrite to replace its shards)")
    out.mkdir(parents=True, exist_ok=True)
    shards = max(1, min(int(shards), len(listing)))
    workers = int(workers or os.cpu_count() or 1)
    jobs = [(p, int(short_side), int(quality), max_frames) for p in listing.paths]
    # The pool is created before TensorFlow is imported: forking a process that runs TF threads is unsafe.
    ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else None)
    pool = ctx.Pool(workers) if workers > 1 and len(jobs) > 1 else None
    import tensorflow as tf

    writers, tmp_paths = [], []
    for s in range(shards):
        tmp = out / f".{PATTERN.format(s, shards)}.tmp"
        tmp_paths.append(tmp)
        writers.append(tf.io.TFRecordWriter(str(tmp)))
    t0, written, skipped, counts = time.perf_counter(), 0, [], [0] * shards
    failed = True
    try:
        results = pool.imap(_encode_video, jobs, chunksize=1) if pool else map(_encode_video, jobs)
        for i, (path, result, error) in enumerate(results):
            if result is None:
                skipped.append(f"{path}: {error}")
                continue
            jpegs, h, w = result
            label = int(listing.labels[i])
            ex = tf.train.SequenceExample()
            ctx_f = ex.context.feature
            ctx_f["label"].int64_list.value.append(label)
            ctx_f["class_name"].bytes_list.value.append(listing.class_names[label].encode())
            ctx_f["path"].bytes_list.value.append(str(path).encode())
            ctx_f["num_frames"].int64_list.value.append(len(jpegs))
            ctx_f["height"].int64_list.value.append(int(h))
            ctx_f["width"].int64_list.value.append(int(w))
            frames = ex.feature_lists.feature_list["frames"]
            for j in jpegs:
                frames.feature.add().bytes_list.value.append(j)
            shard = written % shards
            writers[shard].write(ex.SerializeToString())
            counts[shard] += 1
            written += 1
        for w in writers:  # closing flushes: it can fail too
            w.close()
        failed = False
    except tf.errors.OpError as exc:  # TensorFlow's error for a failed write (a full disk)
        raise OSError(f"cannot write the TFRecord shards in {out}: {' '.join(exc.message.split())}") from None
    finally:
        if pool is not None:
            pool.close()
            pool.join()
        if failed:  # an error (a full disk, an interrupt): no temporary shard left behind
            for w in writers:
                with contextlib.suppress(tf.errors.OpError):
                    w.close()
            for tmp in tmp_paths:
                tmp.unlink(missing_ok=True)
    # The manifest is what makes the folder a dataset: an old one goes before any shard is replaced, so
    # that a crash in between leaves a folder readers refuse, never old counts over new shards.
    (out / MANIFEST).unlink(missing_ok=True)
    for s, tmp in enumerate(tmp_paths):
        os.replace(tmp, out / PATTERN.format(s, shards))
    manifest = {
        "format": "video_swin.tfrecords/1",
        "class_names": listing.class_names,
        "num_examples": written,
        "shards": [PATTERN.format(s, shards) for s in range(shards)],
        "examples_per_shard": counts,
        "short_side": int(short_side),
        "jpeg_quality": int(quality),
        "skipped": skipped,
    }
    files.atomic_write_text(out / "labels.txt", "".join(f"{c}\n" for c in listing.class_names))
    files.atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    log(f"wrote {written} videos into {shards} shard(s) in {out} ({time.perf_counter() - t0:.1f}s"
        + (f", skipped {len(skipped)} unreadable" if skipped else "") + ")")
    return manifest


def is_tfrecord_dir(path) -> bool:
    return Path(path).is_dir() and (Path(path) / MANIFEST).is_file()


def read_manifest(path) -> dict:
    try:
        return json.loads((Path(path) / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable {MANIFEST} ({exc})") from None


def parse_example(serialized):
    """(JPEG frames (n,) string, label int64) of one serialized SequenceExample."""
    import tensorflow as tf

    context, sequence = tf.io.parse_single_sequence_example(
        serialized,
        context_features={"label": tf.io.FixedLenFeature([], tf.int64)},
        sequence_features={"frames": tf.io.FixedLenSequenceFeature([], tf.string)},
    )
    return sequence["frames"], context["label"]


def clip_from_jpegs(frames, spec: ClipSpec, seed=None, short_side_stored: int | None = None):
    """In-graph clip sampling and decoding: a random start (train, `seed` given) or the centre clip
    (seed None), clip_len frames every frame_interval, looping short videos, then JPEG decoding of only
    those frames; resized to spec.short_side unless the records already have it."""
    import tensorflow as tf

    n = tf.cast(tf.shape(frames)[0], tf.int64)
    span = spec.clip_len * spec.frame_interval
    if seed is not None:
        high = tf.maximum(n - span, 0) + 1
        start = tf.random.stateless_uniform([], seed, minval=0, maxval=high, dtype=tf.int64)
    else:  # sampling.center_clip_indices: int((n - span + 1) / 2) when n > span - 1, else 0
        start = tf.where(n > span - 1, (n - span + 1) // 2, tf.zeros_like(n))
    idx = (start + spec.frame_interval * tf.range(spec.clip_len, dtype=tf.int64)) % n
    picked = tf.gather(frames, idx)
    clip = tf.map_fn(lambda b: tf.io.decode_jpeg(b, channels=3), picked, fn_output_signature=tf.uint8)
    if short_side_stored != spec.short_side:
        shape = tf.shape(clip)
        h, w = tf.cast(shape[1], tf.float64), tf.cast(shape[2], tf.float64)
        scale = spec.short_side / tf.minimum(h, w)
        size = tf.cast(tf.floor(tf.stack([h, w]) * scale + 0.5), tf.int32)
        clip = tf.cast(tf.clip_by_value(tf.round(tf.image.resize(tf.cast(clip, tf.float32), size)), 0, 255), tf.uint8)
    return clip


class TFRecordTrainData:
    """Seeded, resumable training epochs over a `extract-tfrecords` folder (same interface as
    `data.TrainData`). Order: shards shuffled per epoch, interleaved, then a seeded shuffle buffer."""

    def __init__(self, path, spec: ClipSpec, seed: int = 0, workers: int | None = None, shuffle_buffer=256):
        self.path = Path(path)
        self.manifest = read_manifest(path)
        self.files = [str(self.path / f) for f in self.manifest["shards"]]
        self.class_names = list(self.manifest["class_names"])
        self.spec = spec
        self.seed = int(seed)
        self.workers = int(workers or min(4, os.cpu_count() or 1))
        self.shuffle_buffer = int(shuffle_buffer)
        self.labels = None

    def __len__(self):
        return int(self.manifest["num_examples"])

    def steps_per_epoch(self, examples_per_step: int) -> int:
        return len(self) // int(examples_per_step)

    def epoch_dataset(self, epoch, batch_size, examples_per_step, start=0, num_shards=1, shard=0):
        import tensorflow as tf

        epoch = int(epoch)
        files = np.asarray(self.files)[np.random.default_rng([self.seed, epoch, 13]).permutation(len(self.files))]
        total = self.steps_per_epoch(examples_per_step) * examples_per_step
        ds = tf.data.Dataset.from_tensor_slices(files.tolist())
        ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=min(4, len(files)), block_length=1)
        ds = ds.shuffle(self.shuffle_buffer, seed=self.seed * 7919 + epoch, reshuffle_each_iteration=False)
        ds = ds.take(total).enumerate().skip(int(start))
        if num_shards > 1:
            ds = ds.shard(int(num_shards), int(shard))
        spec, stored = self.spec, int(self.manifest.get("short_side") or 0) or None

        def load(position, serialized):
            frames, label = parse_example(serialized)
            seed = tf.stack([tf.constant(self.seed * 1000 + epoch, tf.int64), position])
            pick = tf.random.experimental.stateless_fold_in(seed, 5)
            clip = clip_from_jpegs(frames, spec, pick, stored)
            return augment(clip, label, seed, spec)

        ds = ds.map(load, num_parallel_calls=self.workers, deterministic=True)
        return ds.batch(int(batch_size), drop_remainder=True).prefetch(2)


def tfrecord_views_dataset(path, spec: ClipSpec, workers: int | None = None):
    """Validation views from TFRecords: (views (1, T, C, C, 3), label, index): the centre clip, decoded
    and centre-cropped in the graph (tf.image resize, so not bit-exact with the OpenCV path)."""
    import tensorflow as tf

    manifest = read_manifest(path)
    files = [str(Path(path) / f) for f in manifest["shards"]]
    stored = int(manifest.get("short_side") or 0) or None
    c = spec.crop_size
    mean = np.asarray(spec.mean, np.float32)
    std = np.asarray(spec.std, np.float32)

    def load(i, serialized):
        frames, label = parse_example(serialized)
        clip = clip_from_jpegs(frames, spec, None, stored)
        shape = tf.shape(clip)
        top, left = (shape[1] - c) // 2, (shape[2] - c) // 2
        x = (tf.cast(clip[:, top : top + c, left : left + c], tf.float32) - mean) / std
        return tf.ensure_shape(x, (spec.clip_len, c, c, 3))[None], label, i

    ds = tf.data.TFRecordDataset(files).enumerate()
    return ds.map(load, num_parallel_calls=int(workers or 2), deterministic=True).prefetch(2)


# ------------------------------------------------------------------------------------------------ cli


def add_arguments(parser):
    parser.add_argument("--data", required=True, help="class-folder tree or 'path label' list file")
    parser.add_argument("--out", required=True, help="output folder for the shards")
    parser.add_argument("--shards", type=int, default=4, help="number of .tfrecord files (default 4)")
    parser.add_argument("--short-side", type=int, default=256, help="resize frames to this short side (0: keep)")
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality (default 90)")
    parser.add_argument("--max-frames", type=int, default=None, help="keep at most this many frames per video")
    parser.add_argument("--workers", type=int, default=None, help="decoding processes (default: all CPUs)")
    parser.add_argument("--overwrite", action="store_true", help="write into a non-empty folder")
    return parser


def run(args) -> int:
    extract_tfrecords(args.data, args.out, shards=args.shards, short_side=args.short_side, quality=args.quality,
                      max_frames=args.max_frames, workers=args.workers, overwrite=args.overwrite)
    return 0
