"""Video Swin backbone and classifier (keras-hub style functional models with round-tripping configs)."""

from __future__ import annotations

import concurrent.futures
import contextlib
import copy
import ctypes
import inspect
import os
import threading

import keras

from video_swin.layers import PACKAGE, BackgroundDifference, PatchEmbedding3D, SwinStage3D, _layer_norm, drop_path_rates

# Official configurations (patch (2, 4, 4), mlp_ratio 4, qkv_bias True, patch_norm True everywhere).
VARIANTS = {
    "tiny": {"embed_dim": 96, "depths": (2, 2, 6, 2), "num_heads": (3, 6, 12, 24)},
    "small": {"embed_dim": 96, "depths": (2, 2, 18, 2), "num_heads": (3, 6, 12, 24)},
    "base": {"embed_dim": 128, "depths": (2, 2, 18, 2), "num_heads": (4, 8, 16, 32)},
    "large": {"embed_dim": 192, "depths": (2, 2, 18, 2), "num_heads": (6, 12, 24, 48)},
}


def check_pixels(x):
    """Refuses inputs that cannot be (B, T, H, W, 3) float normalised pixels, with one clear line."""
    shape = tuple(getattr(x, "shape", ()))
    if len(shape) != 5 or (shape[-1] is not None and shape[-1] != 3):
        raise ValueError(f"expected pixels of shape (B, T, H, W, 3), got shape {shape}")
    dtype = keras.backend.standardize_dtype(getattr(x, "dtype", "float32"))
    if "float" not in dtype:
        raise ValueError(
            f"expected float normalised pixels, got {dtype}: normalise uint8 frames first "
            "(video_swin.preprocess.NormalizePixels or the preset's protocol)"
        )


def variant_config(variant, **overrides):
    """Backbone keyword arguments for a named variant, with overrides (window_size, drop_path_rate...)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    return {**copy.deepcopy(VARIANTS[variant]), **overrides}


# XLA's CPU scheduler orders a program for concurrency by default, which starts every block's position
# bias (and more) early and keeps it alive: Swin-T's temporary buffer at 16x224x224 is 206 MiB with that
# order and 92 MiB with the memory-minimising one, at the same speed (benchmarks/RESULTS.md). XLA reads
# XLA_FLAGS once, at its first compilation in the process; a user's own setting of the flag is kept.
MEMORY_MINIMISING_XLA_SCHEDULE = "--xla_cpu_enable_concurrency_optimized_scheduler=false"


def prefer_memory_minimising_xla_schedule():
    """Adds `MEMORY_MINIMISING_XLA_SCHEDULE` to XLA_FLAGS unless the flag is set there already (it then
    takes effect if XLA has not compiled anything in this process yet)."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_enable_concurrency_optimized_scheduler" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {MEMORY_MINIMISING_XLA_SCHEDULE}".strip()


def release_freed_heap():
    """Gives the heap memory that the process has freed back to the OS (glibc's `malloc_trim`).

    XLA's compiler frees what it allocated, but glibc keeps those pages resident (about 220 MiB after
    compiling Swin-T at 16x224x224), which would count in every later peak. A no-op without glibc.
    """
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


# How often `releasing_freed_heap` gives freed memory back while a training step compiles.
FREED_HEAP_RELEASE_PERIOD_S = 0.25


@contextlib.contextmanager
def releasing_freed_heap():
    """Runs `release_freed_heap` every `FREED_HEAP_RELEASE_PERIOD_S` seconds on a background thread while
    the block runs, and once after it. For the first training step, which compiles: XLA's compiler frees
    memory as it goes, and what glibc keeps of it would otherwise stay resident under the first run's own
    buffers (Swin-T at batch 2: first-step peak 4456-4599 -> 3887-3987 MiB, for ~3 s more of a ~45 s step;
    benchmarks/RESULTS.md)."""
    stop = threading.Event()

    def release_until_stopped():
        while not stop.wait(FREED_HEAP_RELEASE_PERIOD_S):
            release_freed_heap()

    thread = threading.Thread(target=release_until_stopped, name="release-freed-heap", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        release_freed_heap()


def _chain(layers, check=False):
    """x -> the layers applied in turn, for inference (after `check_pixels` if check)."""

    def forward(x):
        if check:
            check_pixels(x)
        for layer in layers:
            x = layer(x, training=False)
        return x

    return forward


class _FunctionHolder:
    """Keeps compiled functions off Keras' and TensorFlow's attribute tracking (a `tf.function` found
    on a model would otherwise become part of its SavedModel)."""

    def __init__(self, fns):
        self.fns = fns


def _trace_ahead_of_compiling(fns, x):
    """Runs a chain of compiled functions on x for an input shape they have not seen, tracing each
    function on this thread while a worker thread compiles and runs the one before it.

    Tracing is Python, on one core; XLA's compiler and the run release the GIL. On Swin-T at 16x224x224
    (2 cores) the first call took 10.3-10.8 s as one function and 9.0-9.1 s as one function per stage
    traced ahead (benchmarks/RESULTS.md). The functions' outputs are single tensors.
    """
    import tensorflow as tf

    def run(fn, previous):
        return fn(x if previous is None else previous.result())

    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="xla-compile") as worker:
        spec, output = tf.TensorSpec.from_tensor(x), None
        for fn in fns:
            traced = fn.get_concrete_function(spec)
            spec = tf.TensorSpec.from_tensor(traced.structured_outputs)
            output = worker.submit(run, fn, output)
        return output.result()


class XlaInference:
    """`predict` / `predict_on_batch` run the forward pass compiled by XLA on TensorFlow, out of the box
    (`classify.VideoClassifier` turns it off: on one video the compile costs more than it saves).

    Keras resolves `jit_compile="auto"` to False on CPU-only hosts, but for this model XLA is the faster
    inference path on CPU as well (benchmarks/RESULTS.md: about a quarter less CPU time per clip than
    the plain TensorFlow graph), so `predict_step` calls the model through `jit_compile=True` functions,
    one per stage (`_inference_segments`): `predict_on_batch` traces a new input shape's next stage while
    XLA compiles the one before. `model.inference_jit_compile = False` turns this off; `model(x)` stays
    eager. For the same reason `compile()` resolves its default `jit_compile="auto"` to XLA for training
    steps too (see `compile`). The first XLA function in a process also selects XLA's memory-minimising CPU schedule
    (`prefer_memory_minimising_xla_schedule`), and each new input shape's tracing and compilation are
    followed by `release_freed_heap`.
    """

    inference_jit_compile = "auto"

    def compile(self, *args, **kwargs):
        """Keras' `compile`, with its default `jit_compile="auto"` resolved to XLA on TensorFlow on CPUs as
        well (Keras turns XLA off on CPU-only hosts): for this model XLA's training step is the faster
        and smaller one there too (benchmarks/RESULTS.md). Not under a tf.distribute strategy or with
        `run_eagerly=True`, as in Keras. An XLA training step also selects XLA's memory-minimising CPU
        schedule (`prefer_memory_minimising_xla_schedule`)."""
        given = inspect.signature(keras.Model.compile).bind(self, *args, **kwargs).arguments
        if "jit_compile" not in given and not given.get("run_eagerly") and keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            if getattr(self, "_distribute_strategy", None) is None and not tf.distribute.has_strategy():
                kwargs["jit_compile"] = True
        super().compile(*args, **kwargs)
        if self.jit_compile:
            prefer_memory_minimising_xla_schedule()

    def make_train_function(self, force=False):
        """Keras' train function, with the optimizer built before it is traced, and its first call, which
        traces and compiles the step, run under `releasing_freed_heap`.

        Without a tf.distribute strategy, Keras on TensorFlow builds the optimizer while it traces the
        train function; the XLA step of Swin-T at batch 2 x 16x224x224 then took 79 s instead of 49 s to
        compile and peaked ~230 MiB higher. What the compiler freed would otherwise stay resident
        through every later step (another ~0.5 GiB)."""
        if self.optimizer is not None and not self.optimizer.built:
            self.optimizer.build(self.trainable_variables)
        before = self.train_function
        made = super().make_train_function(force)
        train_function = self.train_function
        if train_function is before or self.run_eagerly:
            return made
        compiled = False

        def train_function_releasing_heap(*args, **kwargs):
            nonlocal compiled
            if compiled:
                return train_function(*args, **kwargs)
            with releasing_freed_heap():
                out = train_function(*args, **kwargs)
            compiled = True
            return out

        self.train_function = train_function_releasing_heap
        return made

    def predict_step(self, *args):
        if keras.backend.backend() != "tensorflow":
            return super().predict_step(*args)  # JAX's is predict_step(state, data)
        (data,) = args
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        if self._inference_uses_xla():
            return self._xla_forward(x)
        return self(x, training=False)

    def _inference_uses_xla(self):
        if keras.backend.backend() != "tensorflow" or self.run_eagerly:
            return False
        if self.inference_jit_compile == "auto":
            # XLA is off under tf.distribute strategies, as in Keras.
            return getattr(self, "_distribute_strategy", None) is None
        return bool(self.inference_jit_compile)

    def _inference_segments(self):
        """The inference forward pass as a chain of functions, each compiled by XLA on its own (see
        `predict_on_batch`). Models without stages run as one."""
        return [lambda x: self(x, training=False)]

    def _xla_functions(self):
        import tensorflow as tf

        holder = self.__dict__.get("_xla_forward_holder")
        if holder is None:
            prefer_memory_minimising_xla_schedule()
            # AutoGraph off: the forward pass has no tensor-dependent Python control flow, and converting
            # it would only add to the first call.
            holder = _FunctionHolder(
                [tf.function(segment, jit_compile=True, autograph=False) for segment in self._inference_segments()]
            )
            object.__setattr__(self, "_xla_forward_holder", holder)
        return holder.fns

    def _xla_forward(self, x):
        for fn in self._xla_functions():
            x = fn(x)
        return x

    def predict_on_batch(self, x):
        if not self._inference_uses_xla():
            return super().predict_on_batch(x)
        # Straight to the compiled forward pass: Keras' predict function would wrap it in a second traced
        # function, which adds about a second and some memory to the first call.
        import tensorflow as tf

        x = tf.convert_to_tensor(x)
        fns, traces = self._xla_functions(), self._xla_trace_count()
        fns[0].get_concrete_function(x)
        if self._xla_trace_count() == traces:
            return self._xla_forward(x).numpy()
        # Only after: giving memory back during the compile (`releasing_freed_heap`) lowered this peak by
        # ~20 MiB and lengthened Swin-T's first call by ~0.6 s (benchmarks/RESULTS.md).
        out = _trace_ahead_of_compiling(fns, x).numpy()
        release_freed_heap()
        return out

    def predict(self, *args, **kwargs):
        traces = self._xla_trace_count()
        out = super().predict(*args, **kwargs)
        if self._xla_trace_count() != traces:
            release_freed_heap()  # a new input shape was traced and compiled
        return out

    def _xla_trace_count(self):
        holder = self.__dict__.get("_xla_forward_holder")
        return None if holder is None else sum(fn.experimental_get_tracing_count() for fn in holder.fns)


@keras.saving.register_keras_serializable(package=PACKAGE)
class VideoSwinBackbone(XlaInference, keras.Model):
    """(B, T, H, W, 3) normalised pixels -> (B, ceil(T/2), H/32, W/32, 8C) features after the final norm.

    T, H and W are `None` in the model's input, so one built model runs on any clip size; no variable
    depends on the input size. `background_difference=True` puts `layers.BackgroundDifference` in front
    of the patch embedding (for models trained from scratch on flat-background clips; never in the
    official models, which the parity tests hold to torchvision).
    """

    def __init__(
        self,
        embed_dim=96,
        depths=(2, 2, 6, 2),
        num_heads=(3, 6, 12, 24),
        window_size=(8, 7, 7),
        patch_size=(2, 4, 4),
        mlp_ratio=4.0,
        qkv_bias=True,
        patch_norm=True,
        dropout=0.0,
        attn_dropout=0.0,
        drop_path_rate=0.2,
        background_difference=False,
        **kwargs,
    ):
        depths = tuple(int(d) for d in depths)
        num_heads = tuple(int(h) for h in num_heads)
        window_size = tuple(int(w) for w in window_size)
        patch_size = tuple(int(p) for p in patch_size)
        rates = drop_path_rates(depths, drop_path_rate)

        inputs = keras.Input(shape=(None, None, None, 3), name="pixels")
        x = BackgroundDifference(name="background_difference")(inputs) if background_difference else inputs
        x = PatchEmbedding3D(patch_size, embed_dim, patch_norm=patch_norm, name="patch_embed")(x)
        x = keras.layers.Dropout(dropout, name="pos_drop")(x)
        for i, (depth, heads) in enumerate(zip(depths, num_heads)):
            x = SwinStage3D(
                embed_dim * 2**i,
                depth,
                heads,
                window_size,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                dropout=dropout,
                attn_dropout=attn_dropout,
                drop_path=rates[i],
                downsample=i < len(depths) - 1,
                name=f"layers_{i}",
            )(x)
        x = _layer_norm("norm")(x)
        super().__init__(inputs=inputs, outputs=x, **kwargs)

        self.embed_dim = int(embed_dim)
        self.depths = depths
        self.num_heads = num_heads
        self.window_size = window_size
        self.patch_size = patch_size
        self.mlp_ratio = float(mlp_ratio)
        self.qkv_bias = bool(qkv_bias)
        self.patch_norm = bool(patch_norm)
        self.dropout = float(dropout)
        self.attn_dropout = float(attn_dropout)
        self.drop_path_rate = float(drop_path_rate)
        self.background_difference = bool(background_difference)

    def __call__(self, x, *args, **kwargs):
        check_pixels(x)
        return super().__call__(x, *args, **kwargs)

    def _inference_segments(self):
        """One function per stage: the first begins with the patch embedding, the last ends with the final
        norm (each compiled by XLA on its own; see `predict_on_batch`)."""
        stages = [[self.get_layer(f"layers_{i}")] for i in range(len(self.depths))]
        entry = [self.get_layer("background_difference")] if self.background_difference else []
        stages[0][:0] = entry + [self.get_layer("patch_embed"), self.get_layer("pos_drop")]
        stages[-1].append(self.get_layer("norm"))
        return [_chain(layers, check=i == 0) for i, layers in enumerate(stages)]

    @property
    def num_features(self):
        return self.embed_dim * 2 ** (len(self.depths) - 1)

    @classmethod
    def from_variant(cls, variant, **overrides):
        return cls(**variant_config(variant, **overrides))

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "embed_dim": self.embed_dim,
            "depths": list(self.depths),
            "num_heads": list(self.num_heads),
            "window_size": list(self.window_size),
            "patch_size": list(self.patch_size),
            "mlp_ratio": self.mlp_ratio,
            "qkv_bias": self.qkv_bias,
            "patch_norm": self.patch_norm,
            "dropout": self.dropout,
            "attn_dropout": self.attn_dropout,
            "drop_path_rate": self.drop_path_rate,
            "background_difference": self.background_difference,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras.saving.register_keras_serializable(package=PACKAGE)
class VideoSwinClassifier(XlaInference, keras.Model):
    """Backbone, mean over all positions, dropout, linear head: (B, T, H, W, 3) -> (B, classes) logits."""

    def __init__(self, backbone, num_classes=400, head_dropout=0.5, **kwargs):
        if isinstance(backbone, dict):
            backbone = keras.saving.deserialize_keras_object(backbone)
        inputs = keras.Input(shape=(None, None, None, 3), name="pixels")
        x = backbone(inputs)
        x = keras.layers.GlobalAveragePooling3D(name="pool")(x)
        x = keras.layers.Dropout(head_dropout, name="head_dropout")(x)
        logits = keras.layers.Dense(num_classes, name="head")(x)
        super().__init__(inputs=inputs, outputs=logits, **kwargs)
        self.backbone = backbone
        self.num_classes = int(num_classes)
        self.head_dropout = float(head_dropout)

    def __call__(self, x, *args, **kwargs):
        check_pixels(x)
        return super().__call__(x, *args, **kwargs)

    def _inference_segments(self):
        """The backbone's segments, the last followed by the pooling and the head."""
        if not isinstance(self.backbone, VideoSwinBackbone):
            return super()._inference_segments()
        segments = self.backbone._inference_segments()
        head = _chain([self.get_layer("pool"), self.get_layer("head_dropout"), self.get_layer("head")])
        last = segments[-1]
        segments[-1] = lambda x: head(last(x))
        return segments

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "num_classes": self.num_classes,
            "head_dropout": self.head_dropout,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
