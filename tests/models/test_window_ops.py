"""The window functions against torchvision's helpers and against their plain formulations (roll,
8-D transpose, the mask as tensor ops); and the exact GELU against torch's."""

import itertools

import numpy as np
import pytest
import torch
from torchvision.models.video import swin_transformer as tv

from keras import ops
from tests.helpers import assert_within_float32_ulps
from video_swin.models import activations, window_ops


@pytest.mark.parametrize("sizes", [(16, 56, 56), (8, 7, 7), (9, 8, 6), (1, 1, 1), (4, 14, 3)])
def test_effective_window_matches_torchvision(sizes):
    window, shift = window_ops.effective_window_and_shift(sizes, (8, 7, 7), (4, 3, 3))
    tv_window, tv_shift = tv._get_window_and_shift_size([4, 3, 3], list(sizes), [8, 7, 7])
    assert list(window) == list(tv_window) and list(shift) == list(tv_shift)


def test_equal_size_shrinks_and_stops_shifting():
    window, shift = window_ops.effective_window_and_shift((8, 7, 9), (8, 7, 7), (4, 3, 3))
    assert window == (8, 7, 7) and shift == (0, 0, 3)


@pytest.mark.parametrize("shifts", [(4, 3, 3), (0, 3, 0), (1, 0, 2)])
def test_cyclic_shift_equals_roll(shifts):
    x = np.random.default_rng(0).standard_normal((2, 8, 7, 9, 3)).astype("float32")
    expected = np.roll(x, [-s for s in shifts], axis=(1, 2, 3))
    np.testing.assert_array_equal(np.asarray(window_ops.cyclic_shift(x, shifts)), expected)
    back = window_ops.reverse_cyclic_shift(window_ops.cyclic_shift(x, shifts), shifts)
    np.testing.assert_array_equal(np.asarray(back), x)


def _plain_partition(x, window):
    b, d, h, w, c = x.shape
    wd, wh, ww = window
    x = x.reshape(b, d // wd, wd, h // wh, wh, w // ww, ww, c)
    return x.transpose(0, 1, 3, 5, 2, 4, 6, 7).reshape(-1, wd * wh * ww, c)


@pytest.mark.parametrize("window", [(2, 7, 7), (4, 2, 3), (1, 1, 1)])
def test_window_partition_equals_8d_formulation(window):
    x = np.random.default_rng(1).standard_normal((2, 4, 14, 21, 5)).astype("float32")
    windows = np.asarray(window_ops.window_partition(x, window))
    np.testing.assert_array_equal(windows, _plain_partition(x, window))
    np.testing.assert_array_equal(np.asarray(window_ops.window_reverse(windows, window, (4, 14, 21))), x)


@pytest.mark.parametrize(
    "padded,window,shift",
    [((16, 56, 56), (8, 7, 7), (4, 3, 3)), ((8, 14, 21), (8, 7, 7), (0, 3, 3)), ((6, 12, 9), (2, 4, 3), (1, 2, 0))],
)
def test_mask_matches_torchvision(padded, window, shift):
    x = torch.zeros(1)
    expected = tv._compute_attention_mask_3d(x, padded, window, shift).squeeze(1).squeeze(2).numpy()
    ours = np.asarray(window_ops.shifted_window_mask(padded, window, shift))
    np.testing.assert_array_equal(ours.reshape(expected.shape), expected)
    assert set(np.unique(ours)) <= {0.0, -100.0}


@pytest.mark.parametrize(
    "padded,window,shift",
    [((16, 56, 56), (8, 7, 7), (4, 3, 3)), ((8, 14, 21), (8, 7, 7), (0, 3, 3)), ((6, 12, 9), (2, 4, 3), (1, 2, 0))],
)
def test_cached_static_mask_equals_the_tensor_formulation(padded, window, shift):
    static = np.asarray(window_ops.shifted_window_mask(padded, window, shift))
    dynamic = window_ops.shifted_window_mask(tuple(ops.convert_to_tensor(v) for v in padded), window, shift)
    np.testing.assert_array_equal(static, np.asarray(dynamic))
    assert window_ops.shifted_window_mask(padded, window, shift) is window_ops.shifted_window_mask(padded, window, shift)


@pytest.mark.parametrize("window", [(8, 7, 7), (16, 7, 7), (2, 3, 4)])
def test_relative_position_index_matches_torchvision(window):
    module = tv.ShiftedWindowAttention3d(12, list(window), [0, 0, 0], 3)
    np.testing.assert_array_equal(
        window_ops.relative_position_index(window), module.relative_position_index.numpy().reshape(
            (np.prod(window),) * 2
        )
    )


def test_gelu_is_the_exact_erf_form():
    """Against the exact GELU, 0.5 x (1 + erf(x / sqrt 2)), in float64 (math.erf).

    Tolerance: 4 float32 ulps of |x|. GELU is computed as 0.5 * x * (1 + erf(x * c)) in float32; every
    error is relative to x or to 1 + erf <= 2, so it is bounded in ulps of |x|, not of the result (for
    x < 0 the result is a cancellation 1 + erf ~ 0, far smaller than its error bound). The terms: the
    rounding of c = 1/sqrt 2 and of x * c moves erf by at most 0.5 ulp(x) in the result; float32 erf
    (Eigen's rational approximation in TensorFlow and XLA) is within ~2.5 * 2^-23 of the true erf, which
    the factor 0.5 |x| turns into <= 2.5 ulp(x) (ulp(x) >= |x| * 2^-24); rounding 1 + erf costs <= 0.5
    ulp(x), and the final product 0.5 ulp(result) <= 0.5 ulp(x): 4 in all, with either oneDNN mode
    (element-wise ops do not go through oneDNN). torch's own float32 GELU is up to 4.5 ulps from the exact
    value, so it is not the reference here. The tanh approximation misses by more than 1e-4: the test
    tells the two forms apart."""
    import math

    x = np.linspace(-8, 8, 20001, dtype="float32")
    exact = np.array([0.5 * v * (1.0 + math.erf(v / math.sqrt(2.0))) for v in x.astype(np.float64)])
    assert_within_float32_ulps(np.asarray(activations.gelu_erf(x)), exact, ulps=4, magnitude=x)
    tanh_form = torch.nn.functional.gelu(torch.from_numpy(x), approximate="tanh").numpy()
    assert np.max(np.abs(tanh_form - exact)) > 1e-4


def test_pad_amount():
    for size, multiple in itertools.product(range(1, 20), (1, 2, 4, 7, 8)):
        assert (size + window_ops.pad_amount(size, multiple)) % multiple == 0
        assert 0 <= window_ops.pad_amount(size, multiple) < multiple
