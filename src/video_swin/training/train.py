"""The training loop behind `video-swin train`.

* one code path for a single device, `tf.distribute.MirroredStrategy` (several local devices; on a CPU
  host, logical CPU devices) and `MultiWorkerMirroredStrategy` (several processes/hosts, `TF_CONFIG`):
  a custom loop with `strategy.run`; the loss of every replica is its sum over its examples divided by
  the global batch, gradients are all-reduced (summed) by the optimizer, so a step on R replicas equals
  one single-device step on the same global batch;
* gradient accumulation over k micro-batches inside one compiled step (a sequential `tf.while_loop`):
  the update equals one step on the k-times batch, with the memory of one micro-batch;
* mixed precision (bfloat16, or float16 with dynamic loss scaling), label smoothing, AdamW (no decay on
  norms/biases/bias tables, backbone lr multiplier), warm-up + cosine, frozen stages, recomputation;
* atomic checkpoints (temporary file + os.replace, then a pointer file, also replaced atomically) every
  epoch and every N steps; the same command resumes from the newest one after a crash (`kill -9`),
  mid-epoch included: epochs are seeded permutations and every random augmentation is seeded by the
  example's position, so the resumed run sees exactly the clips the crashed one would have seen;
* a progress line (loss, top-1, clips/s, ETA), validation top-1 per epoch, history.json/.csv and a
  loss/accuracy PNG next to the checkpoints, and a final preset with the class names.

Output folder layout::

    OUT/checkpoints/ckpt-000123.npz, checkpoint.json   model + optimizer state, step, history
    OUT/history.json, OUT/history.csv, OUT/training.png
    OUT/preset/                                       the final preset (config.json, weights, metadata)
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from video_swin import files

CHECKPOINT_DIR = "checkpoints"
POINTER = "checkpoint.json"


@dataclass
class TrainConfig:
    out: str = "runs/train"
    data: str | None = None  # class folders, 'path label' list, or an extract-tfrecords folder
    val_data: str | None = None
    val_split: float = 0.1  # held-out fraction of `data` when there is no val_data (0: no validation)
    preset: str | None = None  # fine-tune: backbone weights from this preset (folder or registered name), fresh head
    arch: str | None = None  # train from scratch: tiny|small|base|large|synthetic-small|test-micro
    epochs: int = 30
    batch_size: int = 8  # global micro-batch: clips per forward pass over all replicas
    accum_steps: int = 1  # micro-batches per optimiser update
    lr: float = 1e-3
    backbone_lr_mult: float | None = None  # default 0.1 with a preset, 1.0 from scratch
    weight_decay: float = 0.05
    warmup_epochs: float = 2.5
    min_lr: float = 0.0
    label_smoothing: float = 0.0
    head_dropout: float = 0.5
    drop_path_rate: float | None = None
    frozen_stages: int = -1
    precision: str = "float32"  # float32 | bfloat16 | float16
    remat: bool = False
    background_difference: bool = False  # --arch only: layers.BackgroundDifference in front (a preset has its own)
    clipnorm: float | None = None
    adam_epsilon: float = 1e-8
    clip_len: int = 32
    frame_interval: int = 2
    short_side: int = 256
    crop_size: int = 224
    mean: tuple = (123.675, 116.28, 103.53)
    std: tuple = (58.395, 57.12, 57.375)
    random_crop: bool = True
    crop_scale: tuple = (0.08, 1.0)
    flip: bool = True
    label_maps: dict = field(default_factory=dict)  # see data.ClipSpec
    flip_pairs: str | None = None  # 'a:b,c:d': flip and swap these classes (the hflip label map)
    test_views: str = "4x3"  # the preset's evaluation protocol (clips x crops)
    workers: int | None = None
    seed: int = 0
    checkpoint_every: int = 0  # also checkpoint every N optimiser steps (0: only at epoch ends)
    keep_checkpoints: int = 2
    strategy: str = "default"  # default | mirrored | multiworker
    devices: int | None = None  # mirrored: number of local devices (CPU hosts: logical CPU devices)
    max_steps: int | None = None  # stop after this global step (the schedule still spans all epochs)
    jit_compile: bool | None = None  # None: XLA on one replica (the faster step for Video Swin, CPU too)
    log_every: int | None = None
    overwrite: bool = False  # start afresh even if OUT has checkpoints

    def __post_init__(self):
        from video_swin.training.data import check_counts

        check_counts(epochs=self.epochs, batch_size=self.batch_size, accum_steps=self.accum_steps,
                     clip_len=self.clip_len, frame_interval=self.frame_interval, short_side=self.short_side,
                     crop_size=self.crop_size, keep_checkpoints=self.keep_checkpoints, workers=self.workers,
                     devices=self.devices, max_steps=self.max_steps, log_every=self.log_every)
        check_counts(0, checkpoint_every=self.checkpoint_every)
        check_counts(-1, frozen_stages=self.frozen_stages)
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr!r}")

    def spec(self):
        from video_swin.training.data import ClipSpec

        return ClipSpec(
            clip_len=self.clip_len, frame_interval=self.frame_interval, short_side=self.short_side,
            crop_size=self.crop_size, mean=tuple(self.mean), std=tuple(self.std), random_crop=self.random_crop,
            scale=tuple(self.crop_scale), flip=self.flip, label_maps={k: tuple(v) for k, v in self.label_maps.items()},
        )

    def fingerprint(self) -> dict:
        """What must not change between a run and its resumption."""
        keys = ("preset", "arch", "batch_size", "accum_steps", "epochs", "lr", "backbone_lr_mult", "weight_decay",
                "warmup_epochs", "min_lr", "frozen_stages", "precision", "clip_len", "frame_interval",
                "crop_size", "seed", "label_smoothing", "drop_path_rate", "head_dropout", "background_difference")
        d = dataclasses.asdict(self)
        return {k: d[k] for k in keys}


class TrainingError(RuntimeError):
    pass


# ------------------------------------------------------------------------------------------ strategy


def configure_devices(num_cpu_devices: int | None):
    """Splits the CPU into `num_cpu_devices` logical devices (before TensorFlow initialises)."""
    import tensorflow as tf

    if not num_cpu_devices or tf.config.list_physical_devices("GPU"):
        return
    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    if current and len(current) == num_cpu_devices:
        return
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * num_cpu_devices)
    except RuntimeError as exc:
        raise TrainingError(
            f"cannot create {num_cpu_devices} logical CPU devices: TensorFlow is already initialised ({exc})"
        ) from None


def make_strategy(name: str, devices: int | None = None):
    import tensorflow as tf

    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        configure_devices(devices)
        gpus = tf.config.list_logical_devices("GPU")
        if gpus:
            names = [d.name for d in gpus][: devices or None]
        else:
            names = [d.name for d in tf.config.list_logical_devices("CPU")][: devices or None]
        return tf.distribute.MirroredStrategy(names)
    if name == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise TrainingError("--strategy multiworker needs TF_CONFIG (cluster and task) in the environment")
        comm = tf.distribute.experimental.CommunicationOptions(
            implementation=tf.distribute.experimental.CommunicationImplementation.RING
        )
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=comm)
    raise TrainingError(f"unknown strategy {name!r}: default, mirrored or multiworker")


def is_chief() -> bool:
    config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    task = config.get("task") or {}
    if not task:
        return True
    if task.get("type") == "chief":
        return True
    return task.get("type") == "worker" and int(task.get("index", 0)) == 0 and "chief" not in config.get("cluster", {})


# ------------------------------------------------------------------------------------ checkpoints


def optimizer_variables(optimizer):
    out, seen = [], set()
    for opt in (optimizer, getattr(optimizer, "inner_optimizer", None)):
        if opt is None:
            continue
        for v in opt.variables:
            if id(v) not in seen:
                seen.add(id(v))
                out.append(v)
    return out


def save_checkpoint(folder: Path, model, optimizer, state: dict, keep: int = 2) -> Path:
    """model + optimizer variables and the loop state in one .npz, written atomically; then the pointer."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {f"model/{i:05d}": np.asarray(v.numpy()) for i, v in enumerate(model.variables)}
    arrays.update({f"opt/{i:05d}": np.asarray(v.numpy()) for i, v in enumerate(optimizer_variables(optimizer))})
    meta = dict(state)
    meta["model_variables"] = [v.path for v in model.variables]
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    name = f"ckpt-{int(state['step']):07d}.npz"
    files.atomic_write_bytes(folder / name, buf.getvalue())
    files.atomic_write_bytes(folder / POINTER, json.dumps({"latest": name, "step": int(state["step"])}).encode())
    ckpts = sorted(folder.glob("ckpt-*.npz"))
    for old in ckpts[: max(0, len(ckpts) - int(keep))]:
        if old.name != name:
            old.unlink(missing_ok=True)
    return folder / name


def latest_checkpoint(folder: Path) -> Path | None:
    """The pointer's checkpoint, else the newest readable one."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    candidates = []
    try:
        pointer = json.loads((folder / POINTER).read_text())
        candidates.append(folder / pointer["latest"])
    except (OSError, ValueError, KeyError):
        pass
    candidates += sorted(folder.glob("ckpt-*.npz"), reverse=True)
    for path in candidates:
        if path.is_file():
            try:
                with np.load(path) as z:
                    json.loads(bytes(z["meta"]).decode())
                return path
            except Exception:  # a truncated file from before atomic writes, or foreign junk  # noqa: BLE001
                continue
    return None


def load_checkpoint(path: Path, model, optimizer) -> dict:
    with np.load(path) as z:
        meta = json.loads(bytes(z["meta"]).decode())
        model_vars = model.variables
        opt_vars = optimizer_variables(optimizer)
        n_model = sum(1 for k in z.files if k.startswith("model/"))
        n_opt = sum(1 for k in z.files if k.startswith("opt/"))
        if n_model != len(model_vars) or n_opt != len(opt_vars):
            raise TrainingError(
                f"{path}: checkpoint has {n_model} model / {n_opt} optimizer variables, the run has "
                f"{len(model_vars)} / {len(opt_vars)} (different architecture or options?)"
            )
        for i, v in enumerate(model_vars):
            value = z[f"model/{i:05d}"]
            if tuple(value.shape) != tuple(v.shape):
                raise TrainingError(f"{path}: {v.path} has shape {value.shape}, expected {tuple(v.shape)}")
            v.assign(value)
        for i, v in enumerate(opt_vars):
            v.assign(z[f"opt/{i:05d}"])
    return meta


# ---------------------------------------------------------------------------------------- progress


class Progress:
    """A one-line progress display on a terminal (or a line every `log_every` steps otherwise)."""

    def __init__(self, total: int, epoch: int, epochs: int, log_every: int | None = None, stream=None):
        self.total, self.epoch, self.epochs = total, epoch, epochs
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.log_every = log_every or max(1, total // 10)
        self.last = 0.0

    def update(self, done: int, loss: float, top1: float, clips_per_s: float, eta_s: float, final=False):
        width = 24
        filled = int(width * done / max(self.total, 1))
        bar = "#" * filled + "." * (width - filled)
        line = (f"epoch {self.epoch}/{self.epochs} [{bar}] {done}/{self.total} loss {loss:.4f} "
                f"top-1 {100 * top1:5.1f}% {clips_per_s:6.1f} clips/s ETA {_duration(eta_s)}")
        now = time.monotonic()
        if self.tty:
            if final or now - self.last > 0.2:
                self.stream.write("\r" + line + ("\n" if final else ""))
                self.stream.flush()
                self.last = now
        elif final or done % self.log_every == 0:
            self.stream.write(line + "\n")
            self.stream.flush()


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else f"{seconds // 60}:{seconds % 60:02d}"


# -------------------------------------------------------------------------------------------- steps


def cross_entropy(labels, logits, num_classes: int, label_smoothing: float = 0.0):
    """Per-example categorical cross-entropy with label smoothing, in float32."""
    import tensorflow as tf

    logits = tf.cast(logits, tf.float32)
    target = tf.one_hot(tf.cast(labels, tf.int32), num_classes, dtype=tf.float32)
    if label_smoothing:
        target = target * (1.0 - label_smoothing) + label_smoothing / num_classes
    return tf.nn.softmax_cross_entropy_with_logits(target, logits)


def make_train_step(model, optimizer, strategy, num_classes: int, examples_per_step: int, accum_steps: int = 1,
                    label_smoothing: float = 0.0, jit_compile: bool | None = None):
    """A compiled step: (x, y) distributed batch -> (sum of losses, correct count) over all replicas.

    Every replica gets (accum_steps * b) examples and runs accum_steps micro-batches sequentially; each
    micro-batch loss is sum(loss) / examples_per_step, so the summed, all-reduced gradient is the
    gradient of the mean loss over the whole step's examples.
    """
    import tensorflow as tf

    k = int(accum_steps)
    denominator = float(examples_per_step)

    def micro(x, y):
        variables = model.trainable_variables
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            per_example = cross_entropy(y, logits, num_classes, label_smoothing)
            loss = tf.reduce_sum(per_example) / denominator
            scaled = optimizer.scale_loss(loss)
        grads = tape.gradient(scaled, variables)
        grads = [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g) for g, v in zip(grads, variables)]
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int64),
                                                 tf.cast(y, tf.int64)), tf.float32))
        return tf.reduce_sum(per_example), correct, grads

    def replica_step(x, y):
        variables = model.trainable_variables
        if k == 1:
            loss_sum, correct, grads = micro(x, y)
        else:
            b = tf.shape(x)[0] // k
            xs = tf.reshape(x, tf.concat([[k, b], tf.shape(x)[1:]], axis=0))
            ys = tf.reshape(y, [k, b])

            def body(i, loss_sum, correct, *acc):
                l, c, g = micro(xs[i], ys[i])
                return (i + 1, loss_sum + l, correct + c) + tuple(a + gi for a, gi in zip(acc, g))

            zeros = tuple(tf.zeros(v.shape, dtype=v.dtype) for v in variables)
            out = tf.while_loop(lambda i, *_: i < k, body, (tf.constant(0), tf.constant(0.0), tf.constant(0.0)) + zeros,
                                parallel_iterations=1)
            loss_sum, correct, grads = out[1], out[2], list(out[3:])
        optimizer.apply(grads, variables)
        return loss_sum, correct

    def step(x, y):
        loss_sum, correct = strategy.run(replica_step, args=(x, y))
        sum_ = tf.distribute.ReduceOp.SUM
        return strategy.reduce(sum_, loss_sum, axis=None), strategy.reduce(sum_, correct, axis=None)

    # XLA only on one replica (as Keras, XLA is off under tf.distribute's multi-replica strategies);
    # None chooses it there, as `model.compile()` does (benchmarks/HISTORY.md: the faster step on CPUs).
    jit = (True if jit_compile is None else bool(jit_compile)) and strategy.num_replicas_in_sync == 1
    # autograph=False: the code above has no Python control flow on tensors, and converting it (and
    # everything it calls) costs seconds of tracing.
    return tf.function(step, jit_compile=jit, autograph=False)


# ------------------------------------------------------------------------------------------- train


def _load_sources(config: TrainConfig, source, val_source, class_names):
    from video_swin.training import data as data_mod
    from video_swin.training import tfrecords

    spec = config.spec()
    if config.flip_pairs:
        names = _class_names_of(config, source, class_names)
        maps = dict(spec.label_maps)
        maps["hflip"] = data_mod.parse_flip_pairs(config.flip_pairs, names)
        spec = dataclasses.replace(spec, flip=True, label_maps=maps)
    if source is None:
        if config.data is None:
            raise TrainingError("no training data: pass --data")
        if tfrecords.is_tfrecord_dir(config.data):
            train_data = tfrecords.TFRecordTrainData(config.data, spec, config.seed, config.workers)
            if val_source is None and config.val_data is None and config.val_split:
                raise TrainingError("TFRecord data cannot be split for validation: pass --val-data (or --val-split 0)")
            source_classes = train_data.class_names
        else:
            listing = data_mod.load_video_list(config.data, class_names)
            if val_source is None and config.val_data is None and config.val_split > 0:
                listing, held_out = listing.split(config.val_split, config.seed)
                val_source = data_mod.VideoSource(held_out) if len(held_out) else None
            train_data = data_mod.TrainData(data_mod.VideoSource(listing), spec, config.seed, config.workers)
            source_classes = listing.class_names
    else:
        train_data = data_mod.TrainData(source, spec, config.seed, config.workers)
        source_classes = source.class_names
    if val_source is None and config.val_data is not None:
        if tfrecords.is_tfrecord_dir(config.val_data):
            val_source = ("tfrecord", config.val_data)
        else:
            val_source = data_mod.VideoSource(data_mod.load_video_list(config.val_data, source_classes))
    return train_data, val_source, list(source_classes)


def _class_names_of(config, source, class_names):
    from video_swin.training import data as data_mod
    from video_swin.training import tfrecords

    if source is not None:
        return source.class_names
    if class_names is not None:
        return list(class_names)
    if tfrecords.is_tfrecord_dir(config.data):
        return tfrecords.read_manifest(config.data)["class_names"]
    return data_mod.load_video_list(config.data).class_names


def _val_dataset(val_source, spec, workers):
    from video_swin.training import data as data_mod
    from video_swin.training import tfrecords

    if val_source is None:
        return None
    if isinstance(val_source, tuple) and val_source[0] == "tfrecord":
        return tfrecords.tfrecord_views_dataset(val_source[1], spec, workers)
    return data_mod.views_dataset(val_source, spec.validation_protocol(), workers)


def preprocessing_for(config: TrainConfig) -> dict:
    """The preset's test protocol: the training sampling, `test_views`; three crops need the crop size
    as short side (the official protocol), a centre crop keeps the training short side."""
    from video_swin.data.preprocess import parse_views

    clips, crops = parse_views(config.test_views)
    return {
        "mean": [float(v) for v in config.mean], "std": [float(v) for v in config.std],
        "short_side": int(config.crop_size if crops == 3 else config.short_side), "crop_size": int(config.crop_size),
        "sampling": "dense", "clip_len": int(config.clip_len), "frame_interval": int(config.frame_interval),
        "num_clips": clips, "num_crops": crops,
    }


def train(config: TrainConfig, source=None, val_source=None, class_names=None, log=print) -> dict:
    """Trains (or resumes) as configured; returns {'history', 'preset', 'step', 'seconds', ...}.

    `source`/`val_source`: ready sources (e.g. `data.ArraySource`) instead of `config.data`/`val_data`.
    """
    from video_swin import runtime

    runtime.configure()  # before TensorFlow makes its first tensor (the allocator) and compiles (XLA's schedule)
    import keras
    import tensorflow as tf

    from video_swin.models import presets
    from video_swin.runtime import releasing_freed_heap
    from video_swin.training import optim
    from video_swin.training.evaluate import metrics, predict_views
    from video_swin.training.model import build_classifier

    t_start = time.perf_counter()
    cpu_start = time.process_time()
    out = Path(config.out)
    ckpt_dir = out / CHECKPOINT_DIR
    strategy = make_strategy(config.strategy, config.devices)
    chief = is_chief()
    replicas = strategy.num_replicas_in_sync
    if config.batch_size % replicas:
        raise TrainingError(f"--batch-size {config.batch_size} is not divisible by the {replicas} replicas")
    if config.preset is None and config.arch is None:
        raise TrainingError("pass --preset DIR_OR_NAME (fine-tune) or --arch NAME (train from scratch)")

    keras.utils.set_random_seed(config.seed)
    train_data, val_source, classes = _load_sources(config, source, val_source, class_names)
    num_classes = len(classes)
    examples_per_step = config.batch_size * config.accum_steps
    steps_per_epoch = train_data.steps_per_epoch(examples_per_step)
    if steps_per_epoch < 1:
        raise TrainingError(f"{len(train_data)} training videos are fewer than one step ({examples_per_step} clips)")
    total_steps = steps_per_epoch * config.epochs
    warmup_steps = int(round(config.warmup_epochs * steps_per_epoch))
    backbone_mult = config.backbone_lr_mult if config.backbone_lr_mult is not None else (0.1 if config.preset else 1.0)

    with strategy.scope():
        model = build_classifier(num_classes, preset=config.preset, arch=config.arch, head_dropout=config.head_dropout,
                                 drop_path_rate=config.drop_path_rate, frozen_stages=config.frozen_stages,
                                 remat=config.remat, precision=config.precision,
                                 background_difference=config.background_difference or None)
        schedule = optim.WarmupCosine(config.lr, total_steps, warmup_steps, config.min_lr)
        optimizer = optim.make_optimizer(model, schedule, config.weight_decay, backbone_mult, config.precision,
                                         config.clipnorm, config.adam_epsilon)
        optimizer.build(model.trainable_variables)

    step, history = 0, []
    fingerprint = config.fingerprint()
    found = None if config.overwrite else latest_checkpoint(ckpt_dir)
    if found is not None:
        meta = load_checkpoint(found, model, optimizer)
        if meta.get("fingerprint") != fingerprint:
            changed = sorted(k for k in fingerprint if meta.get("fingerprint", {}).get(k) != fingerprint[k])
            raise TrainingError(f"{found} was written with different options ({', '.join(changed)}); "
                                "use another --out or --overwrite to start afresh")
        if meta.get("class_names") != classes:
            raise TrainingError(f"{found}: the checkpoint's classes differ from the data's")
        step, history = int(meta["step"]), list(meta.get("history", []))
        log(f"resuming from {found} (step {step}/{total_steps}, epoch {step // steps_per_epoch + 1})")
    elif config.overwrite and ckpt_dir.exists() and chief:
        for old in ckpt_dir.glob("ckpt-*.npz"):
            old.unlink()
        (ckpt_dir / POINTER).unlink(missing_ok=True)

    n_params = int(sum(np.prod(v.shape) for v in model.trainable_variables))
    log(f"training {num_classes} classes on {len(train_data)} videos: {steps_per_epoch} steps/epoch x "
        f"{config.epochs} epochs, {examples_per_step} clips/step ({config.batch_size} x {config.accum_steps} "
        f"accumulated) on {replicas} replica(s) ({config.strategy}), {config.precision}, "
        f"{n_params:,} trainable parameters" + (", recomputation on" if config.remat else ""))

    train_step = make_train_step(model, optimizer, strategy, num_classes, examples_per_step, config.accum_steps,
                                 config.label_smoothing, config.jit_compile)
    val_ds = _val_dataset(val_source, config.spec(), config.workers)
    state_base = {"fingerprint": fingerprint, "class_names": classes, "steps_per_epoch": steps_per_epoch,
                  "total_steps": total_steps}
    stop_at = total_steps if config.max_steps is None else min(total_steps, int(config.max_steps))

    def checkpoint():
        if chief:
            save_checkpoint(ckpt_dir, model, optimizer, {**state_base, "step": step, "history": history},
                            config.keep_checkpoints)

    train_seconds = 0.0
    while step < stop_at:
        epoch = step // steps_per_epoch
        start = (step % steps_per_epoch) * examples_per_step
        per_replica = examples_per_step // replicas

        def dataset_fn(ctx, epoch=epoch, start=start):  # one input pipeline per worker, sharded by example
            return train_data.epoch_dataset(epoch, per_replica, examples_per_step, start,
                                            ctx.num_input_pipelines, ctx.input_pipeline_id)

        dist = strategy.distribute_datasets_from_function(dataset_fn)
        progress = Progress(steps_per_epoch, epoch + 1, config.epochs, config.log_every)
        loss_total = correct_total = seen = 0.0
        t_epoch, t_first = time.perf_counter(), None
        done = step % steps_per_epoch
        for x, y in dist:
            # The run's first step traces and compiles the step function (in later epochs, the last epoch's
            # validation ran): what that frees is given back as it goes, or it stays resident.
            with releasing_freed_heap() if t_first is None else contextlib.nullcontext():
                loss_sum, correct = train_step(x, y)
                loss_sum, correct = float(loss_sum), float(correct)
            if not math.isfinite(loss_sum) and config.precision != "float16":
                raise TrainingError(f"the loss is {loss_sum} at step {step + 1}: lower --lr or check the data")
            step += 1
            done += 1
            loss_total += loss_sum
            correct_total += correct
            seen += examples_per_step
            now = time.perf_counter()
            if t_first is None:
                t_first = now  # the first step includes tracing/compilation
                first_seen = seen
            rate = (seen - first_seen) / (now - t_first) if now > t_first and seen > first_seen else seen / (now - t_epoch)
            eta = (steps_per_epoch - done) * examples_per_step / max(rate, 1e-9)
            progress.update(done, loss_total / seen, correct_total / seen, rate, eta, final=done == steps_per_epoch)
            if config.checkpoint_every and step % config.checkpoint_every == 0 and done != steps_per_epoch:
                checkpoint()
            if step >= stop_at:
                break
        epoch_seconds = time.perf_counter() - t_epoch
        train_seconds += epoch_seconds
        if done < steps_per_epoch:  # stopped early by max_steps
            checkpoint()
            break
        entry = {"epoch": epoch + 1, "step": step, "train_loss": loss_total / max(seen, 1),
                 "train_top1": correct_total / max(seen, 1), "lr": float(schedule(step - 1)),
                 "clips_per_s": seen / max(epoch_seconds, 1e-9), "epoch_seconds": round(epoch_seconds, 2)}
        if val_ds is not None:
            probs, labels, _, losses = predict_views(model, val_ds, batch_videos=max(1, config.batch_size))
            m = metrics(probs, labels, num_classes)
            entry.update({"val_loss": float(losses.mean()) if len(losses) else None, "val_top1": m["top1"],
                          "val_top5": m["top5"], "val_n": m["n"]})
            log(f"epoch {epoch + 1}: train loss {entry['train_loss']:.4f} top-1 {100 * entry['train_top1']:.1f}% | "
                f"val loss {entry['val_loss']:.4f} top-1 {100 * m['top1']:.2f}% top-{m.get('top5_k', 5)} "
                f"{100 * m['top5']:.2f}% ({m['n']} videos)")
        else:
            log(f"epoch {epoch + 1}: train loss {entry['train_loss']:.4f} top-1 {100 * entry['train_top1']:.1f}%")
        history.append(entry)
        checkpoint()
        if chief:
            write_history(out, history)

    result = {"step": step, "total_steps": total_steps, "history": history, "class_names": classes, "replicas": replicas,
              "train_seconds": round(train_seconds, 2), "model": model}
    if step >= total_steps and chief:
        meta = {"training": {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(config).items()},
                "steps": step, "history": history,
                "wall_seconds": round(time.perf_counter() - t_start, 1),
                "cpu_seconds": round(time.process_time() - cpu_start, 1)}
        final = presets.save_preset(_float32_copy(model, config), out / "preset", class_names=classes,
                                    preprocessing=preprocessing_for(config), metadata=meta, overwrite=True)
        result["preset"] = str(final)
        log(f"wrote preset {final}")
    result["seconds"] = round(time.perf_counter() - t_start, 2)
    result["cpu_seconds"] = round(time.process_time() - cpu_start, 2)
    return result


def _float32_copy(model, config):
    """The trained classifier as a plain float32 model (what a preset stores), built outside any
    strategy and without the frozen-stage / recomputation wrappers."""
    if config.precision == "float32" and config.strategy == "default" and not config.remat and config.frozen_stages < 0:
        return model
    from video_swin.models import VideoSwinBackbone, VideoSwinClassifier
    from video_swin.models.presets import architecture_of
    from video_swin.training.model import dtype_policy

    with dtype_policy("float32"):
        backbone = VideoSwinBackbone(**architecture_of(model))
        copy = VideoSwinClassifier(backbone, num_classes=model.num_classes, head_dropout=model.head_dropout)
    copy.set_weights([np.asarray(w) for w in model.get_weights()])
    return copy


def write_history(out: Path, history: list):
    out.mkdir(parents=True, exist_ok=True)
    files.atomic_write_bytes(out / "history.json", (json.dumps(history, indent=2) + "\n").encode())
    keys = ["epoch", "step", "train_loss", "train_top1", "val_loss", "val_top1", "val_top5", "lr", "clips_per_s",
            "epoch_seconds"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore")
    writer.writeheader()
    for h in history:
        writer.writerow(h)
    files.atomic_write_bytes(out / "history.csv", buf.getvalue().encode())
    from video_swin.training.plot import plot_history

    plot_history(history, out / "training.png")
