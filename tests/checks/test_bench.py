"""`video-swin bench` end to end at a small size: it measures both sides on the same converted weights,
and what it reports holds together. (The figures themselves are benchmarks, never asserted here.)"""

import json
import os

import pytest

from tests.helpers import assert_no_native_lines, run_cli
from video_swin.checks import bench


def test_bench_measures_both_sides_on_the_same_weights(tmp_path):
    """Through the `video-swin` executable: its workers are processes of their own, and nothing they or
    TensorFlow print natively reaches the command's stdout or stderr."""
    out = tmp_path / "figures.json"
    args = ["--variants", "tiny", "--frames", "4", "--size", "32", "--batch", "1", "--ours", "default",
            "--torch", "eager", "--runs", "2", "--warmup", "0", "--workdir", str(tmp_path), "--json", str(out)]
    result = run_cli("bench", *args, timeout=900)
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-2000:])
    assert result.stderr == "", result.stderr[-2000:]
    assert_no_native_lines(result.stdout)
    (cell,) = json.loads(out.read_text())["cells"]
    rows = {row["side"]: row for row in cell["rows"]}
    assert set(rows) == {"matmul ceiling", "torch eager", "ours default"}
    for side in ("torch eager", "ours default"):
        row = rows[side]
        assert "error" not in row and row["runs"] == 2
        assert 0 < row["min_s"] <= row["median_s"] <= row["max_s"]
        assert row["first_wall"] > 0 and row["steady_peak_rss_mb"] <= row["peak_rss_mb"]
    assert rows["torch eager"]["ratio_to_torch_eager"] == pytest.approx(1.0)
    assert rows["ours default"]["ratio_to_torch_eager"] > 0
    # The converted seeded torchvision weights give torchvision's logits (4 frames of 32x32: windows
    # shrink to the token grid, so this also passes through the shrink path).
    assert cell["max_abs_logit_diff"]["ours default"] < 1e-5


def test_workers_are_launched_only_when_started(tmp_path):
    """A worker's process starts with `start`, so a group's workers never import or compile at once."""
    with open(tmp_path / "log", "w") as log:
        worker = bench.Worker("ceiling", {"kind": "ceiling"}, log)
        assert worker.proc is None
        worker.stop()  # stopping a worker that never started is harmless
        assert worker.start(timeout=300) and worker.proc is not None
        worker.finish()
        assert worker.proc.poll() is not None and worker.info["peak_rss_mb"] > 0


@pytest.mark.parametrize(
    "variant,frames,expected_g",
    [("tiny", 16, 43.9), ("tiny", 32, 87.8), ("small", 32, 166), ("base", 32, 282)],
)
def test_benchmark_counts_the_published_multiply_adds(variant, frames, expected_g):
    assert bench.multiply_adds(variant, frames, 224, 224) / 1e9 == pytest.approx(expected_g, rel=4e-3)


def test_the_machine_description_names_the_memory_allocator_settings(monkeypatch):
    for name in [k for k in os.environ if k.startswith("MALLOC_")]:
        monkeypatch.delenv(name)  # this test's process may have its own
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "1073741824")
    monkeypatch.setenv("TF_CPU_ALLOCATOR_USE_BFC", "true")
    described = bench.machine_description()
    assert described.endswith("; environment: MALLOC_MMAP_THRESHOLD_=1073741824, TF_CPU_ALLOCATOR_USE_BFC=true")
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_")
    monkeypatch.delenv("TF_CPU_ALLOCATOR_USE_BFC")
    assert "environment" not in bench.machine_description()
