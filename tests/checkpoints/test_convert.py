"""The converter: detection, name-keyed mapping, refusals with one clear line, atomic output."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from tests import reference
from tests.helpers import assert_one_line_error, assert_refused_in_one_line, run_cli
from video_swin import files
from video_swin.checkpoints import checkpoint_io, convert
from video_swin.data import labels
from video_swin.models import presets
from video_swin.cli import main as cli_main


def _official(tiny_reference):
    return {k: v.numpy() for k, v in reference.official_state_dict(tiny_reference).items()}


def _save_official(tensors, path):
    torch.save({"state_dict": {k: torch.from_numpy(np.array(v)) for k, v in tensors.items()}}, path)
    return path


def test_detects_tiny_window_and_classes(tiny_checkpoints, tmp_path):
    for name, path in tiny_checkpoints.items():
        preset = presets.load_preset(convert.convert_checkpoint(path, tmp_path / name))
        config = preset.config
        assert config["variant"] == "tiny" and config["architecture"]["window_size"] == [8, 7, 7]
        assert config["num_classes"] == 400 and config["class_names"] == labels.load_labels("kinetics400")
        assert preset.metadata["source_sha256"] == files.sha256_of(path)
        assert preset.metadata["source_layout"] == name.split("_")[0]
        assert config["preprocessing"]["num_clips"] == 4 and config["preprocessing"]["sampling"] == "dense"


def test_ssv2_window_classes_and_protocol_detected(tmp_path):
    ref = reference.build_reference("tiny", window_size=(16, 7, 7), num_classes=174)
    path = reference.save_checkpoints(ref, tmp_path)["torchvision_safetensors"]
    config = presets.load_preset(convert.convert_checkpoint(path, tmp_path / "p")).config
    assert config["architecture"]["window_size"] == [16, 7, 7]
    assert config["class_names"] == labels.load_labels("ssv2")
    assert config["preprocessing"]["sampling"] == "uniform" and config["preprocessing"]["num_clips"] == 1


def test_window_inferred_without_index_buffers(tiny_reference, tmp_path):
    tensors = {k: v for k, v in _official(tiny_reference).items() if not k.endswith("relative_position_index")}
    path = tmp_path / "no_index.safetensors"
    checkpoint_io.write_safetensors(path, tensors)
    config = presets.load_preset(convert.convert_checkpoint(path, tmp_path / "p")).config
    assert config["architecture"]["window_size"] == [8, 7, 7]


def test_backbone_only_checkpoint_gives_a_backbone_preset(tiny_reference, tmp_path):
    tensors = {k: v for k, v in _official(tiny_reference).items() if not k.startswith("cls_head.")}
    path = _save_official(tensors, tmp_path / "backbone.pth")
    preset = convert.convert_checkpoint(path, tmp_path / "p")
    model = presets.from_preset(preset)
    assert type(model).__name__ == "VideoSwinBackbone"


def test_custom_labels_file(tiny_checkpoints, tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("\n".join(f"mine_{i}" for i in range(400)) + "\n")
    path = convert.convert_checkpoint(tiny_checkpoints["official_pth"], tmp_path / "p", labels_file=names)
    assert presets.load_preset(path).class_names[:2] == ["mine_0", "mine_1"]
    names.write_text("a\nb\n")
    with pytest.raises(convert.ConversionError, match="2 labels for a head with 400 classes"):
        convert.convert_checkpoint(tiny_checkpoints["official_pth"], tmp_path / "q", labels_file=names)
    assert not (tmp_path / "q").exists()


def _refused(tmp_path, path, *extra):
    """Runs the CLI; returns its stderr after checking the failure is clean."""
    out = tmp_path / "out_preset"
    line = assert_refused_in_one_line(run_cli("convert", path, out, *extra, timeout=300))
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out_preset")]
    return line


def test_missing_tensors_are_named(tiny_reference, tmp_path):
    tensors = _official(tiny_reference)
    del tensors["backbone.layers.2.blocks.3.mlp.fc1.weight"]
    line = _refused(tmp_path, _save_official(tensors, tmp_path / "c.pth"))
    assert "missing" in line and "backbone.layers.2.blocks.3.mlp.fc1.weight" in line


def test_extra_tensors_are_named(tiny_reference, tmp_path):
    tensors = _official(tiny_reference)
    tensors["backbone.extra_adapter.weight"] = np.zeros(3, "float32")
    line = _refused(tmp_path, _save_official(tensors, tmp_path / "c.pth"))
    assert "unused" in line and "backbone.extra_adapter.weight" in line


def test_another_variants_shapes_are_refused(tiny_checkpoints, tmp_path):
    line = _refused(tmp_path, tiny_checkpoints["official_pth"], "--variant", "base")
    assert "shape" in line and "backbone.patch_embed.proj.weight" in line


def test_mismatched_relative_position_index_is_refused(tiny_reference, tmp_path):
    tensors = _official(tiny_reference)
    key = "backbone.layers.0.blocks.0.attn.relative_position_index"
    tensors[key] = np.flip(tensors[key], 0).copy()
    line = _refused(tmp_path, _save_official(tensors, tmp_path / "c.pth"))
    assert key in line


def test_truncated_and_foreign_files_are_refused(tiny_checkpoints, tmp_path):
    data = tiny_checkpoints["official_pth"].read_bytes()
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(data[: len(data) // 2])
    assert "video-swin: error:" in _refused(tmp_path, truncated)
    text = tmp_path / "notes.pth"
    text.write_text("hello, this is not a checkpoint\n")
    assert "video-swin: error:" in _refused(tmp_path, text)
    assert "missing.pth" in _refused(tmp_path, tmp_path / "missing.pth")


def test_image_checkpoint_is_pointed_to_inflation(tmp_path):
    from torchvision.models import swin_t

    path = tmp_path / "swin2d.pth"
    torch.save(swin_t().state_dict(), path)
    assert "--inflate" in _refused(tmp_path, path)


def test_existing_output_is_not_overwritten(tiny_checkpoints, tmp_path, capsys):
    out = tmp_path / "p"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert cli_main(["convert", str(tiny_checkpoints["official_pth"]), str(out)]) != 0
    assert_one_line_error(capsys.readouterr().err, "already exists")
    assert (out / "keep.txt").read_text() == "mine"
    assert cli_main(["convert", str(tiny_checkpoints["official_pth"]), str(out), "--overwrite"]) == 0
    assert (out / "config.json").is_file() and not (out / "keep.txt").exists()


def test_info_describes_a_preset(tiny_checkpoints, tmp_path, capsys):
    path = convert.convert_checkpoint(tiny_checkpoints["official_pth"], tmp_path / "p")
    assert cli_main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "28,158,070" in out and "tiny" in out and "swin_official.pth" in out and "4 clips x 3 crops" in out
    config = json.loads((path / "config.json").read_text())
    assert len(config["class_names"]) == 400


def test_verify_without_torch_says_how_to_install(tmp_path):
    """The `video-swin` executable (`console`) in a process where torch cannot be imported."""
    code = "import sys; sys.modules['torch'] = None; sys.argv = ['video-swin', 'verify']; " \
           "from video_swin.cli import console; console()"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert_refused_in_one_line(result, "pip install 'video_swin[torch]'")
