"""`video-swin verify`: the table it prints, on the embedded default and on a user's checkpoint."""

import numpy as np

from tests import reference
from tests.helpers import assert_no_native_lines, assert_refused_in_one_line, run_cli


def _verify(*args):
    """`video-swin verify ARGS` as the executable runs it; a successful run prints nothing on stderr and no
    native library's line anywhere."""
    result = run_cli("verify", *args, timeout=900)
    if result.returncode == 0:
        assert result.stderr == "", result.stderr[-2000:]
        assert_no_native_lines(result.stdout)
    return result


def test_embedded_default_passes_with_a_row_per_component():
    result = _verify("--shapes", "1x8x64x64", "1x5x50x70")
    assert result.returncode == 0, result.stdout + result.stderr
    for row in ["patch embedding", "window attention (shifted)", "block 1 (shifted)", "patch merging", "stage 1", "logits (end to end)"]:
        assert row in result.stdout
    assert "PASS" in result.stdout and "FAIL" not in result.stdout.replace("pass/fail", "")


def test_a_users_checkpoint_is_verified(tmp_path):
    """A user's official-layout checkpoint is loaded into both implementations and compared."""
    import torch

    module = reference.randomized_reference("tiny", seed=5)
    state = reference.official_state_dict(module)
    path = tmp_path / "user.pth"
    torch.save({"state_dict": state}, path)
    result = _verify("--checkpoint", str(path), "--shapes", "1x4x64x64")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "user.pth" in result.stdout


def test_verify_refuses_a_bad_checkpoint_in_one_line(tmp_path):
    path = tmp_path / "junk.pth"
    path.write_bytes(np.random.default_rng(0).bytes(1000))
    assert_refused_in_one_line(_verify("--checkpoint", str(path)), "junk.pth")


def test_verify_reports_a_real_discrepancy(monkeypatch):
    """With the tanh GELU approximation (the classic Keras parity trap) planted in our model, the same
    table must show FAIL rows: the tool can fail."""
    from keras import ops

    from video_swin.checks import verify
    from video_swin.models import activations

    monkeypatch.setattr(activations, "gelu_erf", lambda x: ops.gelu(x, approximate=True))
    lines = []
    assert verify.run(shapes=[(1, 4, 32, 32)], out=lines.append) is False
    assert "FAIL" in "\n".join(lines)
