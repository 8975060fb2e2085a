"""End to end against torchvision on the Keras backend chosen by KERAS_BACKEND (tensorflow, jax, torch).

Not collected by a plain `pytest` run (the name does not start with `test_`): `tests/test_backends.py`
imports it on TensorFlow and runs it in one subprocess per other backend, so `make test` covers all three.
Run it alone with e.g. `KERAS_BACKEND=jax python -m pytest tests/models/backend_parity_case.py`.

Two presets, converted by our converter from torchvision models with every tensor randomised:
* a small custom architecture (torchvision's SwinTransformer3d with two stages and window (4, 3, 3), so
  that small clips exercise padding, window shrink, temporal and spatial shifts and masks): four shapes;
* Swin-T (swin3d_t): one shape with a temporal shift in every stage. (TensorFlow runs twelve more Swin-T
  shapes in test_model_parity.py.)
JAX compiles each new input shape (about 10-20 s of CPU for these models), which bounds the shape count.

Environment (set by test_backends.py so that every backend loads the same preset folders; without it
this file converts its own):
    VIDEO_SWIN_SMALL_PRESET, VIDEO_SWIN_TINY_PRESET
"""

import os

import numpy as np
import pytest

import keras
from tests import reference
from video_swin.checkpoints import convert
from video_swin.models import presets

RTOL = ATOL = 1e-5

# Small architecture, tokens after the patch embedding = (ceil(T/2), ceil(H/4), ceil(W/4)).
SMALL_SHAPES = [
    (1, 5, 50, 70),  # odd, non-square: patch padding, odd merge; D = 3 < 4 (no temporal shift)
    (2, 18, 40, 56),  # batch 2, non-square: temporal shift with padding (D = 9 > 4) in both stages
    (1, 3, 33, 33),  # odd and tiny: every window shrinks in D, merges pad
    (1, 10, 24, 24),  # stage 2 is 5 x 3 x 3: H = W = window, shrink by equality, spatial shift off
]
TINY_SHAPE = (1, 18, 40, 56)  # D = 9 > 8: temporal shift and masks in all four stages; non-square


def to_numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def forward(model, x):
    """Inference as a user runs it on this backend. On JAX through `predict` (jax.jit, one XLA compile per
    shape); eager JAX gives the same numbers but compiles every primitive separately, which is slower."""
    if keras.backend.backend() == "jax":
        return model.predict(x, batch_size=len(x), verbose=0)
    return to_numpy(model(x))


def clip(shape, seed):
    return np.random.default_rng(seed).standard_normal(tuple(shape) + (3,)).astype("float32")


def convert_small_preset(folder):
    paths = reference.save_checkpoints(reference.randomized_small_reference(), folder)
    checkpoint = paths["torchvision_safetensors"]
    return convert.convert_checkpoint(checkpoint, folder / "small_preset", drop_path_rate=0.0)


@pytest.fixture(scope="module")
def small_reference():
    return reference.randomized_small_reference()


@pytest.fixture(scope="module")
def small_preset(tmp_path_factory):
    return os.environ.get("VIDEO_SWIN_SMALL_PRESET") or convert_small_preset(tmp_path_factory.mktemp("small"))


@pytest.fixture(scope="module")
def tiny_preset(tiny_reference, tmp_path_factory):
    if os.environ.get("VIDEO_SWIN_TINY_PRESET"):
        return os.environ["VIDEO_SWIN_TINY_PRESET"]
    folder = tmp_path_factory.mktemp("tiny")
    return convert.convert_checkpoint(reference.save_checkpoints(tiny_reference, folder)["official_pth"], folder / "p")


@pytest.fixture(scope="module")
def small_model(small_preset):
    return presets.from_preset(small_preset)


def test_runs_on_the_requested_backend():
    """...and computes on the CPU, where the 1e-5 parity holds (a GPU's TF32 would not; see conftest)."""
    backend = keras.backend.backend()
    assert backend == os.environ.get("KERAS_BACKEND", "tensorflow")
    x = keras.ops.ones((2,))
    if backend == "jax":
        assert {d.platform for d in x.devices()} == {"cpu"}, x.devices()
    elif backend == "torch":
        assert x.device.type == "cpu", x.device
    else:
        assert x.device.endswith("CPU:0"), x.device


@pytest.mark.parametrize("shape", SMALL_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_small_preset_matches_torchvision(shape, small_model, small_reference):
    x = clip(shape, sum(shape))
    np.testing.assert_allclose(
        forward(small_model, x), reference.run_reference(small_reference, x), rtol=RTOL, atol=ATOL, err_msg=str(shape)
    )


def test_swin_t_preset_matches_torchvision(tiny_preset, tiny_reference):
    x = clip(TINY_SHAPE, 1)
    np.testing.assert_allclose(
        forward(presets.from_preset(tiny_preset), x), reference.run_reference(tiny_reference, x), rtol=RTOL, atol=ATOL
    )


@pytest.mark.parametrize("probabilities", ["kept", "recomputed"])
def test_one_sgd_step_matches_torchvision(small_preset, probabilities, monkeypatch):
    """Training on this backend: forward in training mode, backward, one SGD update; the loss and the
    updated model's logits equal torchvision's after the same step (autograd on both sides; ours with the
    attention probabilities kept for the backward pass, or recomputed there as large inputs do)."""
    import torch

    from video_swin.models import attention

    threshold = {"kept": 2**62, "recomputed": 0}[probabilities]
    monkeypatch.setattr(attention.settings, "recompute_probabilities_above_bytes", threshold)

    lr = 0.1
    ref = reference.randomized_small_reference()
    preset = presets.load_preset(small_preset)
    model = presets.model_from_config({**preset.config, "head_dropout": 0.0})  # deterministic training step
    model.load_weights(preset.path / presets.WEIGHTS_FILE)

    x = clip(SMALL_SHAPES[1], 21)  # batch 2, shifted windows and masks in both stages
    y = np.array([0, 4])
    ref.train()
    optimizer = torch.optim.SGD(ref.parameters(), lr=lr)
    optimizer.zero_grad()
    ref_loss = torch.nn.functional.cross_entropy(ref(torch.from_numpy(x.transpose(0, 4, 1, 2, 3).copy())), torch.from_numpy(y))
    ref_loss.backward()
    optimizer.step()
    ref.eval()

    model.compile(optimizer=keras.optimizers.SGD(lr), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    loss = model.train_on_batch(x, y)
    np.testing.assert_allclose(loss, ref_loss.item(), rtol=1e-5, atol=1e-6)
    probe = clip(SMALL_SHAPES[1], 22)
    np.testing.assert_allclose(
        forward(model, probe), reference.run_reference(ref, probe), rtol=RTOL, atol=ATOL, err_msg="after one step"
    )


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_inference(policy, small_preset, small_model):
    """The preset under a mixed policy (float32 variables, bfloat16/float16 compute; bias, mask and
    softmax in float32): finite, close to float32, same top-1."""
    x = clip(SMALL_SHAPES[1], 3)
    expected = forward(small_model, x)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        model = presets.from_preset(small_preset)
        got = forward(model, x).astype("float32")
    finally:
        keras.config.set_dtype_policy(previous)
    assert model.compute_dtype == policy.split("_")[1]
    assert np.isfinite(got).all()
    error = np.abs(got - expected).max() / np.abs(expected).max()
    assert error <= (0.05 if policy == "mixed_bfloat16" else 0.01), error
    np.testing.assert_array_equal(got.argmax(-1), expected.argmax(-1))


if keras.backend.backend() != "tensorflow":  # on TensorFlow, exports are tested in tests/test_export.py

    def test_export_refuses_other_backends_with_one_line(small_preset, tmp_path):
        from video_swin.deploy import export

        with pytest.raises(export.ExportError, match="KERAS_BACKEND=tensorflow"):
            export.export(small_preset, tmp_path / "sm", "savedmodel")
