"""The one-line error contract of every `video-swin` command, run as the executable runs
(`video_swin.cli:console` in a fresh process): a refusal is exactly one line on stderr,
`video-swin: error: ...`, with a non-zero status; nothing TensorFlow, absl, XLA or oneDNN print reaches
stdout or stderr, in the oneDNN mode the process runs in (CI runs this file in both modes).

Each case fails after TensorFlow has been imported where the command imports it, so the native libraries'
start-up lines would be there to leak. `convert` and `verify` refusals are in their own test files."""

import pytest

from tests.helpers import assert_refused_in_one_line, run_cli
from video_swin.zoo.synthetic_motion import PRESET_DIR

MISSING = "/nonexistent/video_swin_test"


@pytest.mark.parametrize(
    "args,fragments",
    [
        pytest.param(["info", MISSING], ["preset folder not found"], id="info"),
        pytest.param(["export", MISSING, "{tmp}/out", "--format", "onnx"], ["preset folder not found"], id="export"),
        pytest.param(["train", "--data", MISSING, "--arch", "test-nano", "--out", "{tmp}/run"], [MISSING], id="train"),
        pytest.param(["extract-tfrecords", "--data", MISSING, "--out", "{tmp}/records"], [MISSING],
                     id="extract-tfrecords"),
        pytest.param(["make-synthetic", "{tmp}/synthetic", "--clips", "0"], ["clips must be >= 1"], id="make-synthetic"),
        # argparse's own refusals: no usage block, one line that says where the usage is
        pytest.param(["bench", "--variants", "huge"], ["unknown huge", "video-swin bench --help"], id="bench-usage"),
        pytest.param(["classify", "clip.mp4"], ["--preset", "video-swin classify --help"], id="missing-option"),
        pytest.param(["no-such-command"], ["invalid choice", "video-swin --help"], id="unknown-command"),
    ],
)
def test_every_refusal_is_one_line(args, fragments, tmp_path):
    result = run_cli(*[a.format(tmp=tmp_path) for a in args], timeout=300)
    assert_refused_in_one_line(result, *fragments)
    assert not any(tmp_path.iterdir()), list(tmp_path.iterdir())  # nothing half-written


def test_one_bad_video_is_one_line_naming_it(tmp_path):
    """One input that cannot be read: the command's one error line names the file and the reason."""
    notes = tmp_path / "notes.mp4"
    notes.write_text("not a video at all\n")
    result = run_cli("classify", notes, "--preset", PRESET_DIR, timeout=300)
    assert_refused_in_one_line(result, str(notes))
    assert result.stdout == ""
