"""From frames or files to ranked labels: the published protocol end to end against torchvision."""

import json

import av
import numpy as np
import pytest
import torch

from tests import reference
from tests.helpers import assert_no_native_lines, assert_refused_in_one_line, run_cli
from tests.data.test_preprocess import ref_pipeline, smooth_video
from tests.data.test_video import write_audio_only
from video_swin.inference import classify as classify_module
from video_swin.checkpoints import convert
from video_swin.models import presets
from video_swin.inference.classify import VideoClassifier


def _reference_probabilities(module, views):
    """torchvision swin3d_t on the independently preprocessed views, softmax per view, mean over views."""
    probs = []
    for view in views:
        logits = torch.from_numpy(reference.run_reference(module, view[None]))
        probs.append(torch.softmax(logits.double(), dim=-1)[0].numpy())
    return np.mean(probs, axis=0)


@pytest.fixture(scope="module")
def tiny_preset(tiny_checkpoints, tmp_path_factory):
    return convert.convert_checkpoint(tiny_checkpoints["official_pth"], tmp_path_factory.mktemp("p") / "k400")


def test_published_kinetics_protocol_equals_torchvision(tiny_preset, tiny_reference):
    """4 clips x 3 crops of 32 frames at 224: our probabilities equal torchvision fed the views of an
    independent implementation of the official pipeline, averaged the same way (1e-5)."""
    video = smooth_video(90, 256, 340, seed=1)
    classifier = VideoClassifier(tiny_preset, batch_size=3)
    ours_views, _ = classifier.views(video)
    expected_views = ref_pipeline(video, classifier.preset.preprocessing)
    np.testing.assert_array_equal(ours_views, expected_views)
    result = classifier(video)
    np.testing.assert_allclose(result.probabilities, _reference_probabilities(tiny_reference, expected_views), rtol=0, atol=1e-5)
    assert result.timings["views"] == 12
    top = result.top_k(5)
    assert [p for _, p in top] == sorted((p for _, p in top), reverse=True)
    assert top[0][0] == classifier.class_names[int(np.argmax(result.probabilities))]


def _small_protocol_preset(tiny_preset, tmp_path, **protocol):
    """The same weights with a cheaper protocol (smaller views) for file-level tests."""
    model = presets.from_preset(tiny_preset)
    config = presets.load_preset(tiny_preset).config
    proto = {**config["preprocessing"], "clip_len": 8, "frame_interval": 2, "num_clips": 2, "short_side": 64, "crop_size": 64, **protocol}
    return presets.save_preset(model, tmp_path / "small_protocol", class_names=config["class_names"], preprocessing=proto)


def _write(path, frames, codec="libx264", rate=25):
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_file_and_array_give_the_same_ranking(tiny_preset, tiny_reference, tmp_path):
    preset = _small_protocol_preset(tiny_preset, tmp_path)
    path = _write(tmp_path / "clip.mp4", smooth_video(40, 96, 128, seed=2))
    classifier = VideoClassifier(preset, batch_size=4)
    from video_swin.data.video import decode_all

    decoded = decode_all(path)
    from_file, from_array = classifier(str(path)), classifier(decoded)
    np.testing.assert_allclose(from_file.probabilities, from_array.probabilities, atol=1e-7)
    expected = _reference_probabilities(tiny_reference, ref_pipeline(decoded, classifier.preset.preprocessing))
    np.testing.assert_allclose(from_file.probabilities, expected, atol=1e-5)
    assert classify_module.classify(decoded, preset, top_k=3, views="1x1")[0][0] in classifier.class_names


def test_views_override_and_batches_do_not_change_scores(tiny_preset, tmp_path):
    preset = _small_protocol_preset(tiny_preset, tmp_path)
    video = smooth_video(30, 72, 96, seed=3)
    a = VideoClassifier(preset, batch_size=1)(video)
    b = VideoClassifier(preset, batch_size=6)(video)
    np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-6)
    quick = VideoClassifier(preset, views="1x1")(video)
    assert quick.timings["views"] == 1 and a.timings["views"] == 6


def _cli(*args):
    return run_cli(*args, timeout=600)


def test_cli_reports_each_bad_file_and_classifies_the_rest(tiny_preset, tmp_path):
    preset = _small_protocol_preset(tiny_preset, tmp_path)
    folder = tmp_path / "videos"
    folder.mkdir()
    good = _write(folder / "good.mp4", smooth_video(20, 64, 80, seed=4))
    (folder / "text.mp4").write_text("not a video at all\n")
    (folder / "empty.mp4").write_bytes(b"")
    data = good.read_bytes()
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 3])
    write_audio_only(folder / "audio_only.mp4")
    empty_dir = tmp_path / "nothing_here"
    empty_dir.mkdir()
    result = _cli("classify", str(folder), str(empty_dir), str(tmp_path / "missing.mp4"), "--preset", str(preset), "--json", "--top-k", "3")
    # 4 bad files, the empty folder, the missing file: one JSON record each on stdout, one line on stderr
    assert_refused_in_one_line(result, "6 of 7 input(s) failed")
    records = {r["file"]: r for r in map(json.loads, result.stdout.splitlines())}
    assert len(records[str(good)]["top_k"]) == 3 and "model_s" in records[str(good)]["timings"]
    for bad in ["text.mp4", "empty.mp4", "truncated.mp4", "audio_only.mp4"]:
        assert "error" in records[str(folder / bad)], bad
    assert "no video files" in records[str(empty_dir)]["error"]
    assert "error" in records[str(tmp_path / "missing.mp4")]
    assert "no video stream" in records[str(folder / "audio_only.mp4")]["error"]


def test_cli_text_output_and_info(tiny_preset, tmp_path):
    preset = _small_protocol_preset(tiny_preset, tmp_path)
    good = _write(tmp_path / "good.webm", smooth_video(20, 64, 80, seed=5), codec="libvpx-vp9")
    result = _cli("classify", str(good), "--preset", str(preset), "--views", "1x1")
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr[-2000:]
    assert_no_native_lines(result.stdout)
    assert "1 views" in result.stdout and "  5. " in result.stdout


def test_backbone_preset_cannot_classify(tiny_checkpoints, tmp_path):
    model = presets.from_preset(convert.convert_checkpoint(tiny_checkpoints["official_pth"], tmp_path / "p"))
    backbone_preset = presets.save_preset(model.backbone, tmp_path / "backbone")
    with pytest.raises(presets.PresetError, match="backbone-only"):
        VideoClassifier(backbone_preset)


@pytest.mark.parametrize("bad", [np.zeros((4, 32, 32), np.uint8), np.zeros((4, 32, 32, 3), np.float32), np.zeros((0, 32, 32, 3), np.uint8)])
def test_bad_arrays_are_refused(tiny_preset, bad):
    with pytest.raises(ValueError):
        classify_module.classify(bad, tiny_preset)
