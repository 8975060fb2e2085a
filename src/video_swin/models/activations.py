"""The MLP's activation: the exact (erf) GELU, and its training forms whose backward passes keep less memory.

Every form computes the same forward values; the training forms differ only in what their backward pass
keeps alive and recomputes (`layers.Mlp` chooses: `gelu_dense_lean` in training without dropout,
`gelu_erf_lean` in training with dropout, plain `gelu_erf` in inference and in exported graphs).
"""

from __future__ import annotations

import numpy as np
from keras import ops

from video_swin.models.gradients import incoming_gradient


def gelu_erf(x):
    """Exact GELU, 0.5 * x * (1 + erf(x / sqrt(2))), written out so that tf2onnx can export it (TF's own
    exact GELU lowers to Erfc, which it cannot)."""
    return 0.5 * x * (1.0 + ops.erf(x * np.float32(1.0 / np.sqrt(2.0)).item()))


@ops.custom_gradient
def gelu_erf_lean(x):
    """`gelu_erf` with its derivative written out, Phi(x) + x * phi(x), recomputed from x alone.

    Same forward values. Automatic differentiation of the written-out formula keeps three more tensors
    of the MLP's hidden size alive until the backward pass (x / sqrt(2), erf(...) + 1 and 0.5 * x);
    this keeps only x, as PyTorch's GELU does: about 1 GB less peak memory in a Swin-T training step
    at batch 2 x 16x224x224. Used in training; inference and export graphs keep plain `gelu_erf`.
    """

    def grad(*args, upstream=None):
        upstream = incoming_gradient(args, upstream)
        cdf, pdf = _gelu_derivative_terms(x)
        return upstream * (cdf + x * pdf)

    return gelu_erf(x), grad


def _gelu_derivative_terms(x):
    """(Phi(x), phi(x)) for the GELU's derivative Phi(x) + x * phi(x). Phi is computed as
    (1 - erf(-x / sqrt 2)) / 2 (erf is odd): not the forward's expression, which XLA would otherwise merge
    with this one and keep alive from the forward pass (one more tensor of the MLP's hidden size per
    block: XLA's buffers for a Swin-T training step at batch 2 x 16x224x224 were 3.27 GiB, now 2.96)."""
    cdf = 0.5 * (1.0 - ops.erf(x * np.float32(-1.0 / np.sqrt(2.0)).item()))
    pdf = ops.exp(-0.5 * x * x) * np.float32(1.0 / np.sqrt(2.0 * np.pi)).item()
    return cdf, pdf


@ops.custom_gradient
def gelu_dense_lean(x, kernel, bias):
    """`gelu_erf(x) @ kernel + bias` for x (tokens, hidden), keeping only x for the backward pass.

    The MLP's second Linear needs its input, GELU(x), for its weight gradient; PyTorch keeps that tensor
    from the forward pass. Here the backward pass recomputes it from x, which the GELU's own derivative
    needs anyway: one tensor of the hidden size less per block (a Swin-T training step at batch 2 x
    16x224x224 peaked ~370 MB lower). The recomputed GELU, x * Phi(x), equals the forward's bit for bit
    (halving is exact). Used in training; inference and export graphs keep the plain layers.
    """

    def grad(*args, upstream=None):
        upstream = incoming_gradient(args, upstream)
        cdf, pdf = _gelu_derivative_terms(x)
        hidden = x * cdf
        d_kernel = ops.matmul(ops.transpose(hidden), upstream)
        d_bias = ops.sum(upstream, axis=0)
        d_hidden = ops.matmul(upstream, ops.transpose(kernel))
        return d_hidden * (cdf + x * pdf), d_kernel, d_bias

    return ops.matmul(gelu_erf(x), kernel) + bias, grad
