"""Numeric precision of a model: the Keras dtype policy its layers are built under.

`float32` is the reference (parity with torchvision at 1e-5). `bfloat16` and `float16` are Keras' mixed
policies: variables stay float32, matmuls and activations run in the half type, while layer norms
(`ops.layer_normalization` computes in float32), the attention's relative position bias, shift mask and
softmax (`models.attention`) stay float32.
"""

from __future__ import annotations

import contextlib

PRECISIONS = ("float32", "bfloat16", "float16")
POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}


def check_precision(precision: str) -> str:
    if precision not in POLICIES:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


@contextlib.contextmanager
def dtype_policy(precision: str | None):
    """The Keras dtype policy of `precision` for the layers built inside the block; None keeps the global
    policy (`keras.config.set_dtype_policy`), whatever it is."""
    import keras

    if precision is None:
        yield
        return
    policy = POLICIES[check_precision(precision)]
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def precision_of(model) -> str:
    """'float32', 'bfloat16' or 'float16': the compute dtype of a model's layers."""
    import keras

    dtype = keras.backend.standardize_dtype(model.compute_dtype)
    return {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}.get(dtype, dtype)


def inference_precision(requested: str) -> tuple[str, str | None]:
    """The precision inference runs in for a requested one, and a one-line notice when they differ:
    bfloat16 on a CPU without native bfloat16 matmuls runs float32 (`runtime.inference_precision`)."""
    from video_swin import runtime
    from video_swin.models.attention import runs_on_cpu

    return runtime.inference_precision(check_precision(requested), on_cpu=runs_on_cpu())
