"""Inference and training execution for the Video Swin models: XLA on TensorFlow out of the box.

`XlaInference` is mixed into `VideoSwinBackbone` and `VideoSwinClassifier`. It changes how `predict`,
`predict_on_batch` and `compile` execute the model, never what they compute.
"""

from __future__ import annotations

import concurrent.futures
import inspect

import keras

from video_swin import runtime


def chain(layers, check=None):
    """x -> the layers applied in turn, for inference (after `check(x)` if given)."""

    def forward(x):
        if check is not None:
            check(x)
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
    traced ahead (benchmarks/HISTORY.md). The functions' outputs are single tensors.
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
    inference path on CPU as well (benchmarks/HISTORY.md: about a quarter less CPU time per clip than
    the plain TensorFlow graph), so `predict_step` calls the model through `jit_compile=True` functions,
    one per stage (`_inference_segments`): `predict_on_batch` traces a new input shape's next stage while
    XLA compiles the one before. `model.inference_jit_compile = False` turns this off; `model(x)` stays
    eager. For the same reason `compile()` resolves its default `jit_compile="auto"` to XLA for training
    steps too (see `compile`). Each new input shape's tracing and compilation are followed by
    `runtime.release_freed_heap` (a no-op unless `runtime.configure()` turned it on).
    """

    inference_jit_compile = "auto"

    def compile(self, *args, **kwargs):
        """Keras' `compile`, with its default `jit_compile="auto"` resolved to XLA on TensorFlow on CPUs as
        well (Keras turns XLA off on CPU-only hosts): for this model XLA's training step is the faster
        and smaller one there too (benchmarks/HISTORY.md). Not under a tf.distribute strategy or with
        `run_eagerly=True`, as in Keras."""
        given = inspect.signature(keras.Model.compile).bind(self, *args, **kwargs).arguments
        if "jit_compile" not in given and not given.get("run_eagerly") and keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            if getattr(self, "_distribute_strategy", None) is None and not tf.distribute.has_strategy():
                kwargs["jit_compile"] = True
        super().compile(*args, **kwargs)

    def make_train_function(self, force=False):
        """Keras' train function, with the optimizer built before it is traced, and its first call, which
        traces and compiles the step, run under `runtime.releasing_freed_heap`.

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
            with runtime.releasing_freed_heap():
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
            return getattr(self, "_distribute_strategy", None) is None and self.xla_pays_for_inference()
        return bool(self.inference_jit_compile)

    def xla_pays_for_inference(self):
        """Whether XLA is the faster inference path for this model here. Not for bfloat16 on a CPU: XLA's CPU
        backend multiplies bfloat16 no faster than float32 (2048² matmul: 203 GFLOP/s against the TF graph's
        419 with oneDNN on an AVX512_BF16 CPU), so the TF graph, where oneDNN runs them natively, is taken."""
        from video_swin.models import attention

        dtype = keras.backend.standardize_dtype(self.compute_dtype)
        return not (dtype == "bfloat16" and attention.runs_on_cpu())

    def _inference_segments(self):
        """The inference forward pass as a chain of functions, each compiled by XLA on its own (see
        `predict_on_batch`). Models without stages run as one."""
        return [lambda x: self(x, training=False)]

    def _xla_functions(self):
        import tensorflow as tf

        holder = self.__dict__.get("_xla_forward_holder")
        if holder is None:
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
        # ~20 MiB and lengthened Swin-T's first call by ~0.6 s (benchmarks/HISTORY.md).
        out = _trace_ahead_of_compiling(fns, x).numpy()
        runtime.release_freed_heap()
        return out

    def predict(self, *args, **kwargs):
        traces = self._xla_trace_count()
        out = super().predict(*args, **kwargs)
        if self._xla_trace_count() != traces:
            runtime.release_freed_heap()  # a new input shape was traced and compiled
        return out

    def _xla_trace_count(self):
        holder = self.__dict__.get("_xla_forward_holder")
        return None if holder is None else sum(fn.experimental_get_tracing_count() for fn in holder.fns)


