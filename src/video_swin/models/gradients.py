"""What every `ops.custom_gradient` function of the model needs, written once for every Keras backend."""

from __future__ import annotations


def incoming_gradient(args, upstream):
    """The gradient arriving at an `ops.custom_gradient` function's backward: TensorFlow and JAX pass it as
    the only positional argument, PyTorch as `upstream=` after the forward's inputs."""
    return args[0] if upstream is None else upstream
