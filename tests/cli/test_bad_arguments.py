"""The bad-argument catalogue: counts of 0 or below (top-k, views, batch, epochs, workers, shards...),
malformed values, outputs whose folder is a file or that exist already. Each gives one error line naming
the argument, a non-zero exit status (2 for what argparse refuses, 1 for what the API refuses), no
traceback, and nothing written; all are refused before a model is loaded or a video decoded."""

import pytest

from video_swin.cli import main as cli_main
from video_swin.zoo.synthetic_motion import PRESET_DIR

PRESET = str(PRESET_DIR)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from video_swin.data import synthetic

    root = tmp_path_factory.mktemp("syn")
    synthetic.make_synthetic(root / "clips", clips=8, seed=1)
    return root / "clips"


# name: (argv with {tmp}, {data}, {file} (an existing file) placeholders, expected text, exit status)
CASES = {
    "classify_top_k_0": (["classify", "{tmp}/v.mp4", "--preset", PRESET, "--top-k", "0"],
                         "argument --top-k: expected a positive integer, got 0", 2),
    "classify_top_k_negative": (["classify", "{tmp}/v.mp4", "--preset", PRESET, "--top-k", "-3"],
                                "argument --top-k: expected a positive integer, got -3", 2),
    "classify_top_k_not_a_number": (["classify", "{tmp}/v.mp4", "--preset", PRESET, "--top-k", "five"],
                                    "argument --top-k: expected a positive integer, got 'five'", 2),
    "classify_views_0_clips": (["classify", "{tmp}/v.mp4", "--preset", PRESET, "--views", "0x3"],
                               "views '0x3': need at least one clip", 1),
    "classify_views_0_crops": (["classify", "{tmp}/v.mp4", "--preset", PRESET, "--views", "2x0"],
                               "views '2x0': crops must be 1 (centre) or 3", 1),
    "classify_views_negative": (["classify", "{tmp}/v.mp4", "--preset", PRESET, "--views", "-1x1"],
                                "argument --views: expected one argument", 2),
    "classify_views_malformed": (["classify", "{tmp}/v.mp4", "--preset", PRESET, "--views", "axb"],
                                 "views must look like '4x3'", 1),
    "classify_batch_0": (["classify", "{tmp}/v.mp4", "--preset", PRESET, "--batch", "0"],
                         "argument --batch: expected a positive integer, got 0", 2),
    "classify_batch_negative": (["classify", "{tmp}/v.mp4", "--preset", PRESET, "--batch", "-2"],
                                "argument --batch: expected a positive integer, got -2", 2),
    "classify_without_preset": (["classify", "{tmp}/v.mp4"], "the following arguments are required: --preset", 2),
    "unknown_command": (["classify-everything"], "invalid choice: 'classify-everything'", 2),
    "export_frames_0": (["export", PRESET, "{tmp}/m.tflite", "--format", "tflite", "--frames", "0"],
                        "--frames must be positive, got 0", 1),
    "export_size_negative": (["export", PRESET, "{tmp}/m.tflite", "--format", "tflite", "--size", "64", "-5"],
                             "--size W must be positive, got -5", 1),
    "export_into_a_file": (["export", PRESET, "{file}/m.onnx", "--format", "onnx"],
                           "cannot write {file}/m.onnx: {file} is a file, not a folder", 1),
    "export_over_an_existing_file": (["export", PRESET, "{file}", "--format", "savedmodel"],
                                     "{file} already exists (pass --overwrite to replace it)", 1),
    "convert_into_a_file": (["convert", "{file}", "{file}/preset"],
                            "cannot write {file}/preset: {file} is a file, not a folder", 1),
    "train_batch_size_0": (["train", "--data", "{data}", "--out", "{tmp}/run", "--arch", "test-nano", "--batch-size", "0"],
                           "batch_size must be an integer of at least 1, got 0", 1),
    "train_epochs_0": (["train", "--data", "{data}", "--out", "{tmp}/run", "--arch", "test-nano", "--epochs", "0"],
                       "epochs must be an integer of at least 1, got 0", 1),
    "train_accum_steps_0": (["train", "--data", "{data}", "--out", "{tmp}/run", "--arch", "test-nano", "--accum-steps", "0"],
                            "accum_steps must be an integer of at least 1, got 0", 1),
    "train_clip_len_negative": (["train", "--data", "{data}", "--out", "{tmp}/run", "--arch", "test-nano", "--clip-len", "-1"],
                                "clip_len must be an integer of at least 1, got -1", 1),
    "train_lr_negative": (["train", "--data", "{data}", "--out", "{tmp}/run", "--arch", "test-nano", "--lr", "-1"],
                          "lr must be positive, got -1.0", 1),
    "evaluate_batch_videos_0": (["evaluate", "--data", "{data}", "--preset", PRESET, "--batch-videos", "0"],
                                "batch_videos must be an integer of at least 1, got 0", 1),
    "evaluate_workers_negative": (["evaluate", "--data", "{data}", "--preset", PRESET, "--workers", "-1"],
                                  "workers must be an integer of at least 1, got -1", 1),
    "evaluate_out_into_a_file": (["evaluate", "--data", "{data}", "--preset", PRESET, "--out", "{file}/m.json"],
                                 "cannot write {file}/m.json: {file} is a file, not a folder", 1),
    "extract_shards_0": (["extract-tfrecords", "--data", "{data}", "--out", "{tmp}/tfr", "--shards", "0"],
                         "shards must be an integer of at least 1, got 0", 1),
    "extract_quality_over_100": (["extract-tfrecords", "--data", "{data}", "--out", "{tmp}/tfr", "--quality", "101"],
                                 "quality must be at most 100", 1),
    "extract_into_a_file": (["extract-tfrecords", "--data", "{data}", "--out", "{file}/tfr"],
                            "cannot write {file}/tfr: {file} is a file, not a folder", 1),
    "make_synthetic_0_clips": (["make-synthetic", "{tmp}/syn", "--clips", "0"], "clips must be >= 1", 1),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_argument_is_refused(name, data, tmp_path, capsys):
    argv, expect, status = CASES[name]
    existing = tmp_path / "a_file"
    existing.write_text("mine\n")
    fill = {"tmp": str(tmp_path), "data": str(data), "file": str(existing)}
    argv = [a.format(**fill) for a in argv]
    expect = expect.format(**fill)
    before = sorted(p.name for p in tmp_path.iterdir())
    capsys.readouterr()
    try:
        code = cli_main(argv)
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert code == status, err
    assert len(lines) == 1 and lines[0].startswith("video-swin: error: ") and expect in lines[0], err
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written, no temporary left
    assert existing.read_text() == "mine\n"
