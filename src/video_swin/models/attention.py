"""Attention inside windows: the kernels that compute it, side by side, and the one function that picks one.

`layers.WindowAttention3D` owns the weights and the semantics (the qkv projection, the scale, the relative position
bias for the window's size, the shift mask) and calls `window_attention`, which computes

    softmax(q kT * scale + bias + mask) v        in every window, for every head

with the kernel that `select_kernel` picks from facts about the call: backend, device, dtype, training, attention
dropout, mask, whether the call is traced into a compiled graph, and its static shapes. Every kernel computes the
`plain` kernel's numbers; they differ in speed and memory only (figures are Swin-T's, from benchmarks/HISTORY.md).

The table, one kernel per row (tests in tests/models/test_attention.py unless a file is named):

plain
    taken when  every other call: eager calls, exported graphs (dynamic batch: SavedModel, TFLite, ONNX), training
                with attention dropout or with small probabilities, GPUs (but for `fused`), PyTorch
    measured    the reference: matmul, float32 bias + mask + softmax, matmul
    tested by   test_plain_is_the_softmax_formula_in_float64; the parity suites against torchvision
recomputing
    taken when  training without attention dropout, where the probabilities of the batch exceed
                `settings.recompute_probabilities_above_bytes` (128 MiB: Swin-T at batch 2 x 16x224² in stage 1,
                236 MB per block, not in stage 2, 118 MB), or where the batch or the window size is dynamic
    measured    training step at batch 2 x 16x224² (XLA, 2 CPU cores): steady peak 4353 -> 3940 MiB, median
                step 9.65 -> 10.05 s (judged no measurable cost); in every block 3681 MiB at 1.02-1.08 x the time
    tested by   test_recomputing_gives_the_outputs_and_gradients_of_plain, test_probabilities_are_recomputed_under_xla,
                backend_parity_case.py::test_one_sgd_step_matches_torchvision[recomputed]
bounded_offsets
    taken when  inference of unmasked windows in float32, traced into a compiled graph for the CPU with static
                shapes (`settings.bounded_offsets`)
    measured    forward at 16x224² on the CPU: 0.94-0.96 x the time (two same-process runs); stage 1's attention
                core 169.6 -> 104.6 ms, in groups of 2 windows 89.5 -> 75.0 ms. Masked windows too (a second bound,
                a fallback for rows that would overflow): no faster, compiled ~3 s longer
    tested by   test_bounded_offsets_equals_plain, test_bounded_offsets_is_as_close_to_float64_as_plain,
                test_model_parity.py::test_tiny_predict_as_compiled_for_the_cpu_against_torchvision
window groups (`Choice.windows_per_group`, of plain or bounded_offsets)
    taken when  inference traced into a compiled graph for the CPU with static shapes, where the scores of a clip
                exceed `settings.grouping_above_bytes` (32 MiB: stages 1-2 at 224², not stage 3, 29 MB); a group
                is the most windows (a divisor of the clip's) whose scores fit `settings.group_bytes` (4 MiB)
    measured    stage 1's attention core 169.6 -> 89.5 ms (groups of 2), its memory bounded; each loop ~0.3 s of
                the first call; stage 3 no faster. On an H100 a loop serialised the GPU: 1.09 x torch eager with
                it, 2.24 x without
    tested by   test_window_groups_equal_all_windows_at_once, test_grouped_attention_in_graphs_equals_eager
fused
    taken when  inference in float16 / bfloat16 with the JAX backend off the CPU (`settings.fused_attention`):
                `ops.dot_product_attention`, cuDNN flash attention
    measured    H100, batch 8 x 16x224²: 12.7 -> 7.2 ms per batch in bfloat16, 12.6 -> 7.2 ms in float16 (3.9 x
                torch eager); logits within 3.9e-3 (bfloat16) / 2.4e-4 (float16) of plain's, the same top-1
    tested by   test_fused_equals_plain (through the backend's reference kernel on the CPU)

Every row is a case of `test_select_kernel`. Layout: windows = batch * nW, batch outermost; q, k, v (windows,
heads, n, d) with q already scaled; bias (heads, n, n) and mask (nW, n, n) in float32, the mask repeating over the
batch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools

import keras
from keras import ops

from video_swin.models.gradients import incoming_gradient
from video_swin.models.window_ops import is_static

KERNELS = ("plain", "recomputing", "bounded_offsets", "fused")
HALF_PRECISION = ("float16", "bfloat16")


@dataclasses.dataclass
class Settings:
    """The switches and thresholds of `select_kernel`, read when a call is traced: a compiled function keeps
    the kernels it was traced with. Change them on `settings` (or `with configured(...)`)."""

    # False: never take the kernel (benchmarks compare both; the default takes it where it pays).
    fused_attention: bool = True
    bounded_offsets: bool = True
    # Above this many bytes of probabilities for the batch, a training call recomputes them in the backward
    # pass (stage 1 of Swin-T at batch 2 x 16x224², not stage 2: recomputing stage 2 as well gave 3991
    # instead of 3940 MiB and 1.02 x the time).
    recompute_probabilities_above_bytes: int = 128 * 2**20
    # Each loop over window groups costs tracing and compile time (about 0.3 s per loop in Swin-T's first
    # call), so windows are grouped only where the scores of a whole clip are large.
    grouping_above_bytes: int = 32 * 2**20
    # Scores of one group of windows (heads x n x n float32 each) should stay in the last-level cache between
    # the matmul, the bias/mask add, the softmax passes and the second matmul (1, 4 and 16 MiB measured alike).
    group_bytes: int = 4 * 2**20


settings = Settings()


@contextlib.contextmanager
def configured(**changes):
    """`settings` with `changes` (field=value) inside the block, restored after it."""
    saved = dataclasses.replace(settings)
    try:
        for name, value in changes.items():
            if name not in {field.name for field in dataclasses.fields(Settings)}:
                raise TypeError(f"no attention setting {name!r}")
            setattr(settings, name, value)
        yield settings
    finally:
        for field in dataclasses.fields(Settings):
            setattr(settings, field.name, getattr(saved, field.name))


@dataclasses.dataclass(frozen=True)
class Choice:
    """`kernel` (one of KERNELS), run on all windows at once or, with `windows_per_group`, on that many windows
    at a time (`in_window_groups`)."""

    kernel: str
    windows_per_group: int | None = None


def select_kernel(*, backend, on_cpu, dtype, training, attention_dropout, masked, traced, windows, heads, n,
                  num_windows) -> Choice:
    """The kernel for one call of `window_attention`: the table in this module's docstring, from facts only.

    Args:
        backend: Keras' backend name ("tensorflow", "jax", "torch").
        on_cpu: whether the backend computes on the CPU.
        dtype: the compute dtype of q, k, v ("float32", "float16", "bfloat16").
        training: whether gradients may be taken (a training call).
        attention_dropout: whether dropout applies to the probabilities (a training call with a rate > 0).
        masked: whether a shift mask is added.
        traced: whether the call is traced into a compiled graph (a `tf.function`, a JAX trace).
        windows: the number of windows in the call (batch * nW), or None where dynamic.
        heads: the number of heads.
        n: tokens per window, or None where dynamic.
        num_windows: windows per clip (nW), or None where dynamic or unknown.
    """
    if training:
        if not attention_dropout and _large_probabilities(windows, heads, n):
            return Choice("recomputing")
        return Choice("plain")  # with dropout, the probabilities' dropout mask would have to be kept or replayed
    if settings.fused_attention and backend == "jax" and dtype in HALF_PRECISION and not on_cpu:
        return Choice("fused")
    # The CPU kernels pay in compiled graphs with static shapes only; never in an exported graph, whose batch
    # stays dynamic, nor on a GPU, where a loop over window groups would serialise what runs in parallel.
    compiled_for_cpu = traced and on_cpu and windows is not None and n is not None
    bounded = compiled_for_cpu and settings.bounded_offsets and not masked and dtype == "float32"
    group = _windows_per_group(heads, n, num_windows) if compiled_for_cpu and num_windows is not None else None
    return Choice("bounded_offsets" if bounded else "plain", group)


def _large_probabilities(windows, heads, n):
    if windows is None or n is None:
        return True  # a graph for any batch or size: sized for the large inputs it may get
    return 4 * windows * heads * n**2 > settings.recompute_probabilities_above_bytes


def _windows_per_group(heads, n, num_windows):
    """The most windows per group (a divisor of `num_windows`) whose scores fit `settings.group_bytes`, or
    None to attend to all windows at once."""
    per_window = 4 * heads * n**2
    if per_window * num_windows <= settings.grouping_above_bytes:
        return None
    fitting = max(1, settings.group_bytes // per_window)
    group = max(g for g in range(1, num_windows + 1) if num_windows % g == 0 and g <= fitting)
    return None if group == num_windows else group


def window_attention(qkv, bias, mask=None, *, scale, training=None, num_windows=None, attention_dropout=None,
                     bias_table=None):
    """softmax(q kT * scale + bias + mask) v in every window, by the kernel `select_kernel` picks.

    Args:
        qkv: (windows, n, 3, heads, d), the qkv projection of windows = batch * nW windows of n tokens.
        bias: (heads, n, n) float32.
        mask: (nW, n, n) float32 or None, repeating over the batch.
        scale: the factor of q kT.
        training: whether this is a training call.
        num_windows: nW, windows per clip, if known (taken from the mask where there is one): lets an unmasked
            compiled graph attend to its windows in groups too.
        attention_dropout: a `keras.layers.Dropout` for the probabilities, or None.
        bias_table: the (rows, heads) table that `bias` was gathered from, or None. Its per-head minimum and
            maximum bound the bias for `bounded_offsets` at a fraction of the cost of the bias's own.
    Returns:
        (windows, n, heads, d).
    """
    windows, n, _, heads, _ = ops.shape(qkv)
    if mask is not None:
        num_windows = ops.shape(mask)[0]
    dropout_rate = 0.0 if attention_dropout is None else attention_dropout.rate
    choice = select_kernel(
        backend=keras.backend.backend(),
        on_cpu=runs_on_cpu(),
        dtype=keras.backend.standardize_dtype(qkv.dtype),
        training=bool(training),
        attention_dropout=bool(training) and dropout_rate > 0,
        masked=mask is not None,
        traced=traced(qkv),
        windows=_static_or_none(windows),
        heads=int(heads),
        n=_static_or_none(n),
        num_windows=_static_or_none(num_windows),
    )
    if choice.kernel == "fused":
        return fused(qkv, bias, mask, scale=scale)
    qkv = ops.transpose(qkv, (2, 0, 3, 1, 4))
    q, k, v = qkv[0] * ops.cast(scale, qkv.dtype), qkv[1], qkv[2]
    if choice.kernel == "recomputing":
        attend = recomputing
    elif choice.kernel == "bounded_offsets":
        table = ops.reshape(ops.transpose(bias, (1, 2, 0)), (-1, heads)) if bias_table is None else bias_table
        attend = functools.partial(_bounded_offsets_within, table)
    elif training and dropout_rate > 0:
        attend = functools.partial(plain, dropout=functools.partial(attention_dropout, training=training))
    else:
        attend = plain
    if choice.windows_per_group:
        x = in_window_groups(attend, q, k, v, bias, mask, choice.windows_per_group, num_windows)
    else:
        x = attend(q, k, v, bias, mask)
    return ops.transpose(x, (0, 2, 1, 3))


def _static_or_none(size):
    return int(size) if is_static(size) else None


# The kernels. q, k, v (windows, heads, n, d), q already scaled; bias (heads, n, n) float32; mask (nW, n, n)
# float32 or None -> (windows, heads, n, d), unless said otherwise.


def probabilities(q, k, bias, mask=None):
    """softmax(q kT + bias + mask) over the last axis, in float32 -> (windows, heads, n, n).

    Bias, mask and softmax stay in float32 under mixed precision: -100 and the bias would lose precision (or
    overflow after accumulation) in float16.
    """
    heads, n = ops.shape(q)[1], ops.shape(q)[2]
    scores = ops.cast(ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))), "float32") + bias[None]
    if mask is not None:
        num_windows = ops.shape(mask)[0]
        scores = ops.reshape(scores, (-1, num_windows, heads, n, n)) + mask[None, :, None]
        scores = ops.reshape(scores, (-1, heads, n, n))
    if is_static(n) and n == 1:
        return ops.ones_like(scores)  # a one-token window attends to itself; skips Keras' size-1 warning
    return ops.softmax(scores, axis=-1)


def plain(q, k, v, bias, mask=None, dropout=None):
    """probabilities(q, k, bias, mask) @ v, `dropout` (a function of the probabilities, if any) applied to the
    probabilities in the compute dtype."""
    attn = ops.cast(probabilities(q, k, bias, mask), v.dtype)
    if dropout is not None:
        attn = dropout(attn)
    return ops.matmul(attn, v)


def recomputing(q, k, v, bias, mask=None):
    """`plain` without dropout, keeping q, k, v for the backward pass and recomputing the probabilities there
    instead of keeping them, as flash attention does.

    The probabilities are the largest tensors of a training step (heads x n x n per window: ~1.1 GB for
    Swin-T at batch 2 x 16x224x224, 0.47 GB of it in stage 1). Recomputing costs one more q kT and softmax
    in the backward pass.
    """
    return _attend_recomputing(q, k, v, bias, *([] if mask is None else [mask]))


def _attention_backward(q, k, v, bias, mask, upstream):
    # q made to depend on the incoming gradient (adding 0 * one of its elements; XLA does not fold a
    # float x * 0): otherwise XLA sees the forward's expression again, merges the two and keeps the
    # forward's probabilities alive after all (measured: no memory saved). An optimisation barrier did
    # not help: XLA:CPU's optimized HLO had neither the barriers nor the recomputation. A NaN or inf in
    # that element makes every gradient here NaN, which it would make most of them anyway.
    q = q + ops.zeros((), q.dtype) * upstream[:1, :1, :1, :1]
    probs = probabilities(q, k, bias, mask)
    p = ops.cast(probs, v.dtype)
    d_v = ops.matmul(ops.transpose(p, (0, 1, 3, 2)), upstream)
    d_probs = ops.cast(ops.matmul(upstream, ops.transpose(v, (0, 1, 3, 2))), "float32")
    d_scores = probs * (d_probs - ops.sum(d_probs * probs, axis=-1, keepdims=True))
    d_bias = ops.sum(d_scores, axis=0)
    d_scores = ops.cast(d_scores, q.dtype)
    d_q = ops.matmul(d_scores, k)
    d_k = ops.matmul(ops.transpose(d_scores, (0, 1, 3, 2)), q)
    return d_q, d_k, d_v, ops.cast(d_bias, bias.dtype)


@ops.custom_gradient
def _attend_recomputing(q, k, v, bias, *mask):
    """`recomputing`, the mask (if any) as the last input. A custom gradient gives one gradient per input: the
    mask's are zeros, which XLA and TF graphs drop as unused."""
    probs_mask = mask[0] if mask else None

    def grad(*args, upstream=None):
        upstream = incoming_gradient(args, upstream)
        return (*_attention_backward(q, k, v, bias, probs_mask, upstream), *(ops.zeros_like(m) for m in mask))

    return ops.matmul(ops.cast(probabilities(q, k, bias, probs_mask), v.dtype), v), grad


# How far above its largest score a row's offset may lie in `bounded_offsets`: e^-60 leaves the largest term
# 27 powers of e above float32's smallest normal number, so no term that counts in float32 underflows.
OFFSET_GAP = 60.0


def bounded_offsets(q, k, v, bias, bias_min, bias_max):
    """`plain` without a mask in float32, without the pass over the scores that finds each row's maximum.

    softmax(x) = exp(x - c) / sum(exp(x - c)) for any offset c per row. The plain path takes c = max(x): one
    more pass over the n x n scores, after the bias add, so the sum is written out once more as well. Here
    c = max_j (q kT)_ij + min(bias_max, bias_min + OFFSET_GAP), with bias_min and bias_max (heads,) bounding
    the bias from below and above: the raw product's row maximum, so the bias add fuses with the exponential.
    Where a head's bias spans at most OFFSET_GAP, c lies between the row's maximum and OFFSET_GAP above it: no
    term overflows and the largest does not underflow. A wider bias keeps c at most OFFSET_GAP above the
    maximum; the sums can then overflow only where the bias spans more than OFFSET_GAP + 82 (float32's
    exponent range, less log n for n = 392). The sums divide the n x d output instead of the n x n
    probabilities. No mask: a masked score far above every allowed one would lift c far above the row's
    maximum.
    """
    raw = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2)))
    bias_bound = ops.minimum(bias_max, bias_min + OFFSET_GAP)
    offset = ops.max(raw, axis=-1, keepdims=True) + bias_bound[None, :, None, None]
    exponentials = ops.exp(raw + bias[None] - offset)
    return ops.matmul(exponentials, v) / ops.sum(exponentials, axis=-1, keepdims=True)


def _bounded_offsets_within(bias_table, q, k, v, bias, mask=None):
    """`bounded_offsets` with the bias bounded by the per-head minimum and maximum of the (rows, heads) table it
    was gathered from. Computed here, where the kernel runs (in a group's loop body when grouped)."""
    table = ops.cast(bias_table, "float32")  # every bias value is in the table
    return bounded_offsets(q, k, v, bias, ops.min(table, axis=0), ops.max(table, axis=0))


def fused(qkv, bias, mask=None, *, scale):
    """`plain` as one fused kernel (`ops.dot_product_attention`: cuDNN flash attention on JAX GPUs), on qkv
    (windows, n, 3, heads, d) -> (windows, n, heads, d), the layout the kernel takes.

    The kernel takes one bias broadcast over its batch axis, but the shift mask differs between the nW windows
    of a clip, so the windows are folded into the heads axis: (B, n, nW * heads, d) with a (1, nW * heads, n, n)
    bias + mask. The bias and mask are rounded to the half-precision compute dtype here (`plain` keeps them in
    float32); the scores and the softmax are accumulated in float32 by the kernel. No dropout, no gradient of
    the bias table: inference only.
    """
    _, n, _, heads, d = ops.shape(qkv)
    q = qkv[:, :, 0] * ops.cast(scale, qkv.dtype)
    k, v = qkv[:, :, 1], qkv[:, :, 2]
    if mask is None:
        return ops.dot_product_attention(q, k, v, bias=ops.cast(bias[None], q.dtype), scale=1.0)
    nw = ops.shape(mask)[0]

    def swap_windows_and_tokens(t, windows_first):  # (B*nW, n, h, d) <-> (B, n, nW*h, d)
        t = ops.reshape(t, (-1, nw, n, heads, d) if windows_first else (-1, n, nw, heads, d))
        t = ops.transpose(t, (0, 2, 1, 3, 4))
        return ops.reshape(t, (-1, n, nw * heads, d) if windows_first else (-1, n, heads, d))

    q, k, v = (swap_windows_and_tokens(t, True) for t in (q, k, v))
    bias = ops.reshape(bias[None] + mask[:, None], (1, nw * heads, n, n))
    out = ops.dot_product_attention(q, k, v, bias=ops.cast(bias, q.dtype), scale=1.0)
    return swap_windows_and_tokens(out, False)


def in_window_groups(attend, q, k, v, bias, mask, windows_per_group, num_windows):
    """`attend` (a kernel above) over groups of `windows_per_group` windows, one group at a time (`ops.map`):
    the scores of a group stay in the cache, and at most one group's are alive at a time. `num_windows` (nW,
    a multiple of `windows_per_group`) says which mask a group's windows take."""
    _, heads, n, d = ops.shape(q)
    group = windows_per_group
    groups_per_clip = int(num_windows) // group
    split = lambda t: ops.reshape(t, (-1, group, heads, n, d))  # noqa: E731
    q, k, v = split(q), split(k), split(v)
    if mask is None:
        out = ops.map(_without_autograph(lambda qkv: attend(*qkv, bias)), (q, k, v))
    else:
        mask = ops.reshape(mask, (groups_per_clip, group, n, n))
        index = ops.arange(ops.shape(q)[0], dtype="int32") % groups_per_clip

        def attend_group(args):
            qg, kg, vg, i = args
            return attend(qg, kg, vg, bias, ops.take(mask, i, axis=0))

        out = ops.map(_without_autograph(attend_group), (q, k, v, index))
    return ops.reshape(out, (-1, heads, n, d))


def _without_autograph(fn):
    """`fn` marked for TensorFlow's AutoGraph not to convert: a loop body (`ops.map`) of plain tensor
    ops, which AutoGraph would otherwise parse and convert again in every trace (a fifth of the time of
    tracing Swin-T in a function with AutoGraph on, measured with cProfile)."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.autograph.experimental.do_not_convert(fn)
    return fn


# Facts about the call that `select_kernel` takes and the layer cannot know.


def traced(x) -> bool:
    """Whether `x` is being traced into a compiled graph (a `tf.function`, a JAX trace), where a loop
    (`ops.map`) becomes one graph loop instead of running op by op as it would eagerly."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return not tf.executing_eagerly()
    if backend == "jax":
        import jax

        return isinstance(x, jax.core.Tracer)
    return False


@functools.lru_cache(maxsize=None)
def runs_on_cpu() -> bool:
    """Whether the backend computes on the CPU (no GPU/TPU visible to TensorFlow, JAX's default backend)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return not (tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"))
    if backend == "jax":
        import jax

        return jax.default_backend() == "cpu"
    return True
