"""What the converter reads from the tensors (MLP ratio, heads, patch, non-square windows) and the flag it
names when the tensors cannot tell: the cases of the issue that were refused before."""

from functools import partial

import numpy as np
import pytest
import torch
from torch import nn
from torchvision.models.video import swin_transformer as tv

from tests import reference
from video_swin.checkpoints import checkpoint_io, convert
from video_swin.cli import main as cli_main
from video_swin.models import presets

RTOL = ATOL = 1e-5


def _module(seed=0, **overrides):
    args = dict(patch_size=[2, 4, 4], embed_dim=16, depths=[1, 1], num_heads=[2, 4], window_size=[2, 3, 5],
                mlp_ratio=4.0, stochastic_depth_prob=0.0, num_classes=3)
    args.update(overrides)
    return reference.randomize_(tv.SwinTransformer3d(norm_layer=partial(nn.LayerNorm, eps=1e-5), **args), seed).eval()


def _official_without_index(module, path):
    tensors = {k: v.numpy() for k, v in reference.official_state_dict(module).items()
               if not k.endswith("relative_position_index")}
    checkpoint_io.write_safetensors(path, tensors)
    return path


def _one_error_line(capsys):
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("video-swin: error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("mlp_ratio", [2.0, 3.0, 1.5])
def test_mlp_ratio_is_read_from_fc1(mlp_ratio, tmp_path):
    module = _module(mlp_ratio=mlp_ratio, window_size=[2, 3, 3])
    path = reference.save_checkpoints(module, tmp_path)["torchvision_pth"]
    config = presets.load_preset(convert.convert_checkpoint(path, tmp_path / "p")).config
    assert config["architecture"]["mlp_ratio"] == mlp_ratio


def test_a_window_the_index_determines_is_detected_and_runs_like_torchvision(tmp_path):
    module = _module(window_size=[2, 3, 5], patch_size=[1, 2, 2])
    path = reference.save_checkpoints(module, tmp_path)["official_safetensors"]
    preset = convert.convert_checkpoint(path, tmp_path / "p")
    assert presets.load_preset(preset).config["architecture"]["window_size"] == [2, 3, 5]
    x = np.random.default_rng(0).standard_normal((1, 5, 14, 23, 3)).astype("float32")
    np.testing.assert_allclose(
        np.asarray(presets.from_preset(preset)(x)), reference.run_reference(module, x), rtol=RTOL, atol=ATOL
    )


def test_window_ambiguity_names_the_flag_and_the_flag_resolves_it(tmp_path, capsys):
    """Without the index buffers a table of 135 rows fits six permutations of (2, 3, 5) and more: the
    error lists them and names --window; the flag, applied before detection, then converts."""
    module = _module(window_size=[2, 3, 5])
    path = _official_without_index(module, tmp_path / "no_index.safetensors")
    assert cli_main(["convert", str(path), str(tmp_path / "p")]) == 1
    line = _one_error_line(capsys)
    assert "pass --window D H W" in line and "2 3 5" in line and "2 5 3" in line and "135 rows" in line
    assert not (tmp_path / "p").exists()

    assert cli_main(["convert", str(path), str(tmp_path / "p"), "--window", "2", "3", "5"]) == 0
    x = np.random.default_rng(1).standard_normal((2, 4, 20, 28, 3)).astype("float32")
    np.testing.assert_allclose(
        np.asarray(presets.from_preset(tmp_path / "p")(x)), reference.run_reference(module, x), rtol=RTOL, atol=ATOL
    )


def test_windows_the_tensors_cannot_tell_apart_are_listed(tmp_path, capsys):
    """(1, 3, 4) and (3, 1, 4) give the same table shape and the same index (torchvision's own buffers),
    so even a complete checkpoint leaves the choice to the user."""
    module = _module(window_size=[1, 3, 4])
    other = tv.ShiftedWindowAttention3d(16, [3, 1, 4], [0, 0, 0], num_heads=2)
    assert torch.equal(module.features[0][0].attn.relative_position_index, other.relative_position_index)
    path = reference.save_checkpoints(module, tmp_path)["torchvision_pth"]
    assert cli_main(["convert", str(path), str(tmp_path / "p")]) == 1
    line = _one_error_line(capsys)
    assert "pass --window D H W" in line and "1 3 4" in line and "3 1 4" in line
    assert cli_main(["convert", str(path), str(tmp_path / "p"), "--window", "1", "3", "4"]) == 0


def test_a_wrong_window_flag_is_refused_by_the_index(tmp_path, capsys):
    path = reference.save_checkpoints(_module(window_size=[2, 3, 5]), tmp_path)["torchvision_pth"]
    assert cli_main(["convert", str(path), str(tmp_path / "p"), "--window", "2", "5", "3"]) == 1
    line = _one_error_line(capsys)
    assert "relative_position_index" in line and "(2, 5, 3)" in line
    assert not (tmp_path / "p").exists()


def test_heads_that_do_not_divide_the_channels_are_refused(tmp_path, capsys):
    tensors = {k: v.numpy() for k, v in reference.official_state_dict(_module(window_size=[2, 3, 3])).items()}
    key = "backbone.layers.1.blocks.0.attn.relative_position_bias_table"
    tensors[key] = np.zeros((tensors[key].shape[0], 5), "float32")
    path = tmp_path / "c.safetensors"
    checkpoint_io.write_safetensors(path, tensors)
    assert cli_main(["convert", str(path), str(tmp_path / "p")]) == 1
    assert "stage 1's bias table has 5 columns (heads), which do not divide its 32 channels" in _one_error_line(capsys)
