"""`precision="bfloat16"`: taken only where the CPU multiplies bfloat16 natively (else float32 and one line
saying why), computed in the mixed policy (bfloat16 matmuls; layer norms, attention bias, mask and softmax in
float32), run as a TF graph on the CPU (XLA's CPU backend has no bfloat16 gain), and close enough to float32
that the shipped model's top-1 agrees on at least 99 % of 400 fresh clips."""

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

from video_swin import runtime
from video_swin.models import precision as precision_mod

WITH_BF16 = frozenset({"avx512f", "avx512_vnni", "avx512_bf16"})
AMX = frozenset({"amx_tile", "amx_bf16"})
WITHOUT = frozenset({"avx2", "fma"})
WITHOUT_BF16_BUT_VNNI = frozenset({"avx512f", "avx512_vnni"})


@pytest.mark.parametrize(
    "flags, onednn_env, on_cpu, expected, reason",
    [
        (WITH_BF16, None, True, "bfloat16", None),  # oneDNN's default on such a CPU
        (AMX, None, True, "bfloat16", None),
        (WITH_BF16, "1", True, "bfloat16", None),
        (WITH_BF16, "0", True, "float32", "oneDNN kernels are off"),
        (WITHOUT, None, True, "float32", "no bfloat16 instructions"),
        (WITHOUT, "1", True, "float32", "no bfloat16 instructions"),
        (WITHOUT_BF16_BUT_VNNI, None, True, "float32", "no bfloat16 instructions"),
        (WITHOUT, None, False, "bfloat16", None),  # a GPU: taken as asked
    ],
)
def test_bfloat16_is_taken_only_where_it_runs_natively(monkeypatch, flags, onednn_env, on_cpu, expected, reason):
    if onednn_env is None:
        monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    else:
        monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", onednn_env)
    got, notice = runtime.inference_precision("bfloat16", on_cpu=on_cpu, flags=flags)
    assert got == expected
    if reason is None:
        assert notice is None
    else:
        assert reason in notice and "\n" not in notice and notice.startswith("bfloat16 requested, running float32")
    assert runtime.inference_precision("float32", flags=flags) == ("float32", None)


def test_onednn_default_follows_tensorflows_rule(monkeypatch):
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    assert runtime.onednn_enabled(WITH_BF16) and runtime.onednn_enabled(frozenset({"avx_vnni"}))
    assert not runtime.onednn_enabled(WITHOUT)
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
    assert not runtime.onednn_enabled(WITH_BF16)


def test_an_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="precision must be one of float32, bfloat16, float16"):
        precision_mod.check_precision("int8")


@pytest.fixture(scope="module")
def synthetic_preset():
    from video_swin.zoo.resolve import load_preset

    return load_preset("synthetic-motion")


def test_a_bfloat16_model_runs_the_mixed_policy_as_a_tf_graph(synthetic_preset):
    from video_swin.models import attention

    model = synthetic_preset.load_model("bfloat16")
    assert model.compute_dtype == "bfloat16" and model.dtype_policy.variable_dtype == "float32"
    norm = model.backbone.get_layer("norm")
    assert norm.dtype_policy.name == "mixed_bfloat16"  # computes in float32 inside (ops.layer_normalization)
    assert model._inference_uses_xla() is (not attention.runs_on_cpu())
    reference = synthetic_preset.load_model("float32")
    assert reference._inference_uses_xla() is True
    x = np.random.default_rng(3).standard_normal((2, 16, 64, 64, 3)).astype("float32")
    half = np.asarray(model.predict_on_batch(x), "float32")
    full = np.asarray(reference.predict_on_batch(x))
    # bfloat16 keeps 8 significant bits: logits of magnitude ~10 move by a few hundredths, not more
    assert 0 < np.abs(half - full).max() < 0.25 * max(1.0, np.abs(full).max() / 10)


def test_bfloat16_agrees_with_float32_on_400_fresh_clips(synthetic_preset):
    """The issue's bar: top-1 agreement with float32 >= 99 % on 400 synthetic clips (seed never used in
    training). Runs bfloat16 whatever the CPU (emulated where it must be): the numbers, not the speed."""
    from video_swin.data import synthetic
    from video_swin.data.preprocess import Protocol

    x, _ = synthetic.generate_arrays(400, seed=20261204, randomize=True, workers=1)
    protocol = Protocol.from_dict(synthetic_preset.preprocessing)
    views = np.stack([protocol.views_for_video(c)[0] for c in x])
    predictions = {}
    for name in ("float32", "bfloat16"):
        model = synthetic_preset.load_model(name)
        model.inference_jit_compile = False
        logits = np.concatenate([np.asarray(model.predict_on_batch(views[i:i + 50]), "float32")
                                 for i in range(0, len(views), 50)])
        predictions[name] = logits.argmax(axis=1)
    agreement = (predictions["float32"] == predictions["bfloat16"]).mean()
    assert agreement >= 0.99, agreement


def test_from_preset_warns_once_and_loads_float32_where_bfloat16_would_be_emulated(monkeypatch):
    import video_swin

    monkeypatch.setattr(runtime, "cpu_flags", lambda: WITHOUT)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = video_swin.from_preset("synthetic-motion", precision="bfloat16")
    assert model.compute_dtype == "float32"
    assert [str(w.message) for w in caught if w.category is RuntimeWarning] == [
        "bfloat16 requested, running float32: this CPU has no bfloat16 instructions (AVX512_BF16 or AMX)"
    ]


def test_classify_says_in_one_line_that_it_runs_float32(tmp_path):
    """With oneDNN off bfloat16 cannot run natively on any CPU: the command says so in one stderr line and
    classifies in float32 (the same answer as without the option)."""
    from video_swin.data import synthetic

    video = synthetic.write_video(tmp_path / "clip.mp4", synthetic.render_clip("growing", np.random.default_rng(5)))
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "0", "VIDEO_SWIN_OFFLINE": "1"}
    runs = [subprocess.run([sys.executable, "-m", "video_swin.cli", "classify", str(video), "--preset",
                            "synthetic-motion", "--json", *extra], capture_output=True, text=True, env=env, timeout=300)
            for extra in (["--precision", "bfloat16"], [])]
    assert [r.returncode for r in runs] == [0, 0]
    assert runs[0].stderr.splitlines() == [
        "video-swin: note: bfloat16 requested, running float32: TensorFlow's oneDNN kernels are off "
        "(TF_ENABLE_ONEDNN_OPTS=0), so bfloat16 would be emulated"
    ]
    assert runs[1].stderr == ""
    import json

    a, b = (json.loads(r.stdout) for r in runs)
    assert a["top_k"] == b["top_k"]
