"""Parity fuzz: random torchvision `SwinTransformer3d` configurations, every tensor randomised, saved in a
layout users bring, converted by our converter (which detects embed dim, depths, heads, patch, window and
MLP ratio from the tensors alone), run on random inputs and compared end to end with torchvision at
rtol = atol = 1e-5.

`make test` runs 25 derandomised examples (reproducible in CI) plus the explicit regressions below; the
`slow` variant runs 500 (`VIDEO_SWIN_FUZZ_EXAMPLES` overrides the count). With
`VIDEO_SWIN_RELIABILITY_RESULTS` set, each run records its count and worst errors (tests/reliability.py).
"""

from __future__ import annotations

import os
import re
from functools import partial

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from torch import nn
from torchvision.models.video import swin_transformer as tv

from tests import reference, reliability

RTOL = ATOL = 1e-5
LAYOUTS = ("torchvision_pth", "official_pth", "torchvision_safetensors", "official_safetensors")


@st.composite
def cases(draw):
    """A torchvision configuration, a checkpoint layout and an input of 1 to several windows per axis."""
    stages = draw(st.integers(1, 4))
    # torchvision divides by sum(depths) - 1 for the stochastic depth schedule: at least two blocks.
    depths = draw(st.lists(st.integers(1, 2), min_size=stages, max_size=stages).filter(lambda d: sum(d) >= 2))
    embed_dim = draw(st.integers(8, 48))
    num_heads = [
        draw(st.sampled_from([h for h in range(1, 5) if (embed_dim * 2**i) % h == 0])) for i in range(stages)
    ]
    patch = draw(st.tuples(*[st.integers(1, 4)] * 3))
    window = draw(st.tuples(*[st.integers(1, 5)] * 3))
    sizes = [
        draw(st.integers(1, p * w * 3 + p)) for p, w in zip(patch, window)
    ]  # up to three windows of tokens and a partial one, at the first stage
    return {
        "embed_dim": embed_dim,
        "depths": depths,
        "num_heads": num_heads,
        "patch_size": list(patch),
        "window_size": list(window),
        "mlp_ratio": draw(st.integers(2, 18)) / 4,  # 0.5 to 4.5
        "num_classes": draw(st.one_of(st.none(), st.integers(1, 7))),  # None: a backbone-only checkpoint
        "layout": draw(st.sampled_from(LAYOUTS)),
        "input": [draw(st.integers(1, 3)), *sizes],
        "seed": draw(st.integers(0, 2**31 - 1)),
    }


def _save(module, folder, layout, with_head):
    """The randomised module as a checkpoint in `layout`; without its head for a backbone-only case."""
    from safetensors.torch import save_file

    if layout.startswith("torchvision"):
        state = {k: v.contiguous() for k, v in module.state_dict().items() if with_head or not k.startswith("head.")}
    else:
        state = {
            k: v.contiguous()
            for k, v in reference.official_state_dict(module).items()
            if with_head or not k.startswith("cls_head.")
        }
    path = folder / ("ckpt.pth" if layout.endswith("pth") else "ckpt.safetensors")
    if layout.endswith("pth"):
        torch.save({"state_dict": state} if layout.startswith("official") else state, path)
    else:
        save_file(state, str(path))
    return path


def run_case(case, folder, worst):
    """Converts and compares one case; returns it with `ambiguous_window` set where the window had to be
    named."""
    import keras

    case = {**case, "ambiguous_window": False}

    from video_swin.checkpoints import convert
    from video_swin.models import presets

    module = tv.SwinTransformer3d(
        patch_size=case["patch_size"],
        embed_dim=case["embed_dim"],
        depths=case["depths"],
        num_heads=case["num_heads"],
        window_size=case["window_size"],
        mlp_ratio=case["mlp_ratio"],
        stochastic_depth_prob=0.0,
        num_classes=case["num_classes"] or 1,
        norm_layer=partial(nn.LayerNorm, eps=1e-5),
    )
    module = reference.randomize_(module, case["seed"]).eval()
    with_head = case["num_classes"] is not None
    path = _save(module, folder, case["layout"], with_head)
    try:
        preset = convert.convert_checkpoint(path, folder / "preset", overwrite=True)
    except convert.ConversionError as exc:
        _check_true_ambiguity(str(exc), case["window_size"])
        preset = convert.convert_checkpoint(path, folder / "preset", overwrite=True, window_size=case["window_size"])
        case["ambiguous_window"] = True
    config = presets.load_preset(preset).config
    architecture = config["architecture"]
    assert architecture["window_size"] == case["window_size"] and architecture["patch_size"] == case["patch_size"]
    assert architecture["depths"] == case["depths"] and architecture["num_heads"] == case["num_heads"]
    assert int(case["embed_dim"] * architecture["mlp_ratio"]) == int(case["embed_dim"] * case["mlp_ratio"])
    assert config["num_classes"] == case["num_classes"]

    model = presets.from_preset(preset)
    b, t, h, w = case["input"]
    x = np.random.default_rng(case["seed"]).standard_normal((b, t, h, w, 3)).astype("float32")
    where = dict(case)
    features = np.asarray((model.backbone if with_head else model)(x))
    want = reference.run_reference(module, x, features=True)
    np.testing.assert_allclose(features, want, rtol=RTOL, atol=ATOL, err_msg=f"features of {where}")
    worst.add(features, want, where)
    if with_head:
        logits = np.asarray(model(x))
        want = reference.run_reference(module, x)
        np.testing.assert_allclose(logits, want, rtol=RTOL, atol=ATOL, err_msg=f"logits of {where}")
        worst.add(logits, want, where)
    keras.backend.clear_session()  # hundreds of models in one process
    return case


def _check_true_ambiguity(message, window):
    """A refusal is right only where the tensors cannot tell the window: the message names the flag and
    lists the true window among candidates that torchvision itself gives the same bias-table shape and the
    same relative_position_index."""
    assert "pass --window D H W" in message, message
    listed = [tuple(int(v) for v in c.split()) for c in re.search(r"windows \(([^)]*)\)", message).group(1).split(", ")]
    assert tuple(window) in listed and len(listed) > 1, message

    def buffers(w):
        attention = tv.ShiftedWindowAttention3d(8, list(w), [0, 0, 0], num_heads=1)
        return tuple(attention.relative_position_bias_table.shape), attention.relative_position_index.numpy()

    true_shape, true_index = buffers(window)
    for other in listed:
        shape, index = buffers(other)
        assert shape == true_shape and np.array_equal(index, true_index), (message, other)


# The configurations of the issue that were refused before the converter detected them.
REGRESSIONS = [
    dict(embed_dim=16, depths=[1, 1], num_heads=[2, 2], patch_size=[2, 4, 4], window_size=[2, 3, 3],
         mlp_ratio=2.0, num_classes=3, layout="torchvision_pth", input=[1, 5, 20, 24], seed=1),
    dict(embed_dim=24, depths=[2], num_heads=[3], patch_size=[2, 4, 4], window_size=[2, 3, 3],
         mlp_ratio=3.0, num_classes=None, layout="official_safetensors", input=[2, 4, 16, 16], seed=2),
    dict(embed_dim=16, depths=[1, 1], num_heads=[1, 4], patch_size=[1, 2, 2], window_size=[2, 3, 5],
         mlp_ratio=4.0, num_classes=4, layout="official_pth", input=[1, 5, 13, 22], seed=3),
    dict(embed_dim=12, depths=[2, 1], num_heads=[3, 2], patch_size=[3, 3, 3], window_size=[3, 2, 4],
         mlp_ratio=2.5, num_classes=2, layout="torchvision_safetensors", input=[3, 7, 19, 25], seed=4),
]


def _fuzz(tmp_path_factory, max_examples, name):
    worst = reliability.Worst(RTOL, ATOL)
    seen = {"ambiguous_windows_named": 0, "with_head": 0, "stages": {}, "non_cubic_windows": 0, "non_cubic_patches": 0, "layouts": {}}

    def tally(case):
        seen["with_head"] += case["num_classes"] is not None
        seen["ambiguous_windows_named"] += case["ambiguous_window"]
        seen["stages"][len(case["depths"])] = seen["stages"].get(len(case["depths"]), 0) + 1
        seen["non_cubic_windows"] += len(set(case["window_size"])) > 1
        seen["non_cubic_patches"] += len(set(case["patch_size"])) > 1
        seen["layouts"][case["layout"]] = seen["layouts"].get(case["layout"], 0) + 1

    def check(case):
        tally(run_case(case, tmp_path_factory.mktemp("fuzz"), worst))

    for case in REGRESSIONS:
        check(case)
    property_test = settings(
        max_examples=max_examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )(given(case=cases())(check))
    property_test()
    examples = sum(seen["stages"].values())
    reliability.record(
        name,
        {
            "examples": examples,
            "explicit_regressions": len(REGRESSIONS),
            "max_examples": max_examples,
            **worst.as_dict(),
            "covered": {**seen, "stages": {str(k): v for k, v in sorted(seen["stages"].items())}},
        },
    )
    assert examples >= len(REGRESSIONS) + min(max_examples, 10)


def test_parity_fuzz(tmp_path_factory):
    _fuzz(tmp_path_factory, int(os.environ.get("VIDEO_SWIN_FUZZ_EXAMPLES", 25)), "parity_fuzz")


@pytest.mark.slow
def test_parity_fuzz_500(tmp_path_factory):
    _fuzz(tmp_path_factory, int(os.environ.get("VIDEO_SWIN_FUZZ_EXAMPLES", 500)), "parity_fuzz_slow")
