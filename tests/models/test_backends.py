"""Every Keras backend runs the same presets: tests/models/backend_parity_case.py (end to end against torchvision
at rtol = atol = 1e-5 on five shapes, one SGD step against torchvision's, mixed-precision inference) runs
once per backend, each in its own process with KERAS_BACKEND set: TensorFlow here (the case's tests are
imported into this module), JAX and PyTorch in subprocesses. All three load the same preset folders,
converted here."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.models import backend_parity_case as case
from tests.models.backend_parity_case import *  # noqa: F401,F403  (the case on TensorFlow, in this process)
from video_swin.checkpoints import convert

ROOT = Path(__file__).resolve().parents[2]
# JAX compiles every new (model, input shape) pair with XLA: ~10-25 s of CPU each on two cores. To keep
# `make test` within its time budget the JAX process runs the small preset's four shapes and the SGD step,
# not the Swin-T shape nor mixed precision; `test_jax_runs_the_whole_case` (slow: ~4 CPU-minutes, run by
# `make test PYTEST_ARGS='-m slow'`) runs everything on JAX.
SELECTION = {"jax": ["-k", "not swin_t and not mixed_precision"], "torch": []}


@pytest.fixture(scope="module")
def small_preset(tmp_path_factory):  # noqa: F811  (one preset folder for every backend)
    return case.convert_small_preset(tmp_path_factory.mktemp("backends_small"))


@pytest.fixture(scope="module")
def tiny_preset(tiny_checkpoints, tmp_path_factory):  # noqa: F811
    return convert.convert_checkpoint(tiny_checkpoints["official_pth"], tmp_path_factory.mktemp("backends_tiny") / "p")


def _run_case(backend, selection, small_preset, tiny_preset):
    """backend_parity_case.py in a process of its own with KERAS_BACKEND=backend; its pytest output."""
    env = {
        **os.environ,
        "KERAS_BACKEND": backend,
        "VIDEO_SWIN_SMALL_PRESET": str(small_preset),
        "VIDEO_SWIN_TINY_PRESET": str(tiny_preset),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        # Every backend on the CPU, on a GPU host too: torch's CUDA build would otherwise put the Keras
        # model on the GPU (TF32 convolutions: ~1e-3 errors), JAX likewise.
        "JAX_PLATFORMS": "cpu",
        "CUDA_VISIBLE_DEVICES": "",
        "NVIDIA_TF32_OVERRIDE": "0",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA", "tests/models/backend_parity_case.py",
         *selection],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{backend} backend:\n{output[-5000:]}"
    assert "skipped" not in proc.stdout and " passed" in proc.stdout, output[-3000:]
    assert "PASSED tests/models/backend_parity_case.py::test_runs_on_the_requested_backend" in proc.stdout
    assert proc.stdout.count("PASSED tests/models/backend_parity_case.py::test_one_sgd_step_matches_torchvision[") == 2
    assert proc.stdout.count("PASSED tests/models/backend_parity_case.py::test_small_preset_matches_torchvision[") == 4
    return proc.stdout


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_backend_in_its_own_process(backend, small_preset, tiny_preset):
    _run_case(backend, SELECTION[backend], small_preset, tiny_preset)


@pytest.mark.slow
def test_jax_runs_the_whole_case(small_preset, tiny_preset):
    """What the default run leaves out on JAX for time: Swin-T end to end and mixed-precision inference."""
    out = _run_case("jax", [], small_preset, tiny_preset)
    assert "PASSED tests/models/backend_parity_case.py::test_swin_t_preset_matches_torchvision" in out
    assert out.count("PASSED tests/models/backend_parity_case.py::test_mixed_precision_inference[") == 2
