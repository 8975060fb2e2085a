"""Whole archives: `video-swin classify --out` in this process and on a Ray cluster (`--engine ray`).

The cluster is started here: a head and a second node process on 127.0.0.1 (tests/deploy/ray_cluster.py),
torn down by PID. The reference everywhere is the single-process `video-swin classify --json` on the same
files. The engine's bookkeeping (regrouping views, retries, model failures, resumable parts, settings) is
also tested without Ray or TensorFlow through a small task of the tests' own.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.deploy import batch_helpers
from tests.deploy.batch_helpers import PRESET, VIEWS
from tests.deploy.ray_cluster import REPO, LocalCluster, driver_environment
from video_swin.deploy import batch

GOOD = 44  # + 4 broken files = 48 videos


def _cli(*args, env=None, timeout=900):
    return subprocess.run([sys.executable, "-m", "video_swin.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env or driver_environment(), cwd=REPO)


def _rows(path):
    """{video: row} of a results file, checking that no video appears twice."""
    table = pq.read_table(path)
    videos = table.column("video").to_pylist()
    assert len(videos) == len(set(videos)), "a video appears more than once"
    return {row["video"]: row for row in table.to_pylist()}


def _assert_equals_single_process(rows, reference, broken):
    assert sorted(rows) == sorted(reference)
    for video, row in rows.items():
        expected = reference[video]
        if video in broken:
            assert row["labels"] is None and row["probabilities"] is None
            assert row["error"] == expected["error"], video
            continue
        assert row["error"] is None, (video, row["error"])
        assert row["labels"] == [t["label"] for t in expected["top_k"]], video
        np.testing.assert_allclose(row["probabilities"], [t["probability"] for t in expected["top_k"]], rtol=0, atol=1e-6)
        assert row["timings"]["views"] == 2 and row["timings"]["model_s"] > 0 and row["timings"]["decode_s"] > 0


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    folder = tmp_path_factory.mktemp("archive") / "videos"
    good, broken = batch_helpers.write_videos(folder, GOOD)
    return folder, good, broken


@pytest.fixture(scope="module")
def single_process(archive):
    """The reference: single-process `video-swin classify --json`, one record per file."""
    folder, good, broken = archive
    result = _cli("classify", folder, "--preset", PRESET, "--views", VIEWS, "--json")
    assert "4 of 48 input(s) failed" in result.stderr, result.stderr
    records = {r["file"]: r for r in map(json.loads, result.stdout.splitlines())}
    assert sorted(records) == sorted(good + list(broken))
    assert all("error" in records[b] for b in broken) and not any("error" in records[g] for g in good)
    return records


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(nodes=2, cpus=2, object_store_bytes=200_000_000) as running:
        yield running


def _ray_classify(cluster, folder, out, *extra, address=None):
    return _cli("classify", folder, "--preset", PRESET, "--views", VIEWS, "--engine", "ray", "--address",
                address or cluster.address, "--actors", 2, "--batch", 3, "--out", out, "--json", *extra,
                env=cluster.driver_env)


# ------------------------------------------------------------------------------------------------------------
# on a two-node Ray cluster
# ------------------------------------------------------------------------------------------------------------


def test_ray_cluster_equals_single_process_and_reruns_skip_everything(cluster, archive, single_process, tmp_path):
    """48 videos (4 broken) over a head and a second node: one row per video, top-5 probabilities equal to
    single-process classify within 1e-6, broken files are error rows with the same one-line reason;
    decoding ran in its own tasks, not fused into the model actors; the workers ran the package the driver
    shipped (the nodes' environment has only another checkout's `video_swin`); a rerun does nothing."""
    folder, good, broken = archive
    out = tmp_path / "results.parquet"
    result = _ray_classify(cluster, folder, out)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no Ray or TensorFlow chatter on the terminal
    summary = json.loads(result.stdout)
    assert summary == {"out": str(out), "processed": 48, "errors": 4, "skipped": 0, "engine": "ray", "actors": 2}
    _assert_equals_single_process(_rows(out), single_process, broken)
    assert not out.with_name("results.parquet.parts").exists()
    assert json.loads(pq.read_schema(out).metadata[b"video_swin"]) == {
        "task": "classify", "preset": PRESET, "views": VIEWS, "top_k": 5}

    plans = [line for log in cluster.temp_dir.glob("session_*/logs/ray-data/*.log")
             for line in log.read_text(errors="replace").splitlines() if "Execution plan" in line]
    assert plans and all("TaskPoolMapOperator[FlatMap(decode_video)] -> ActorPoolMapOperator[MapBatches(ModelStage)]"
                         in line for line in plans), plans

    before = out.read_bytes()
    again = _ray_classify(cluster, folder, out)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["processed"] == 0 and json.loads(again.stdout)["skipped"] == 48
    assert out.read_bytes() == before


def _wait_for(condition, timeout_s, what, process=None):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the driver ended before {what}: {process.communicate()}")
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _slow_driver(cluster, folder, out, delay_s, rows_per_part):
    """A driver process of its own running `SlowClassifyTask` (a pause before each model batch)."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.deploy.batch_helpers", str(folder), str(out), "--address", cluster.address,
         "--delay", str(delay_s), "--rows-per-part", str(rows_per_part)],
        env=cluster.driver_env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _parts_rows(parts):
    rows = {}
    for part in sorted(parts.glob("part-*.parquet")):
        for row in pq.read_table(part).to_pylist():
            assert row["video"] not in rows, "a video in two parts"
            rows[row["video"]] = row
    return rows


@pytest.mark.slow
def test_actor_killed_mid_run_every_video_once(cluster, archive, single_process, tmp_path):
    """SIGKILL to a model actor while it runs a batch: Ray restarts it and resubmits its tasks; the run
    completes and every video is in the output exactly once, with the single-process results."""
    folder, good, broken = archive
    out = tmp_path / "actor_killed.parquet"
    parts = out.with_name(out.name + ".parts")
    driver = _slow_driver(cluster, folder, out, delay_s=0.4, rows_per_part=1)
    try:
        def busy_actor():  # an actor inside a batch, once some videos are written
            if not list(parts.glob("part-*.parquet")):
                return None
            return next(iter(cluster.workers("MapBatches(ModelStage)).submit")), None)

        victim = _wait_for(busy_actor, 600, "an actor at work", driver)
        written_before_kill = len(_parts_rows(parts))
        os.kill(victim, signal.SIGKILL)
        stdout, stderr = driver.communicate(timeout=900)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 0, stderr
    assert written_before_kill < 48
    assert json.loads(stdout.splitlines()[-1])["processed"] == 48
    _assert_equals_single_process(_rows(out), single_process, broken)


@pytest.mark.slow
def test_driver_killed_then_rerun_does_only_the_missing(cluster, archive, single_process, tmp_path):
    """SIGKILL to the driver mid-run leaves complete parts; `video-swin classify --engine ray` on the same
    --out then processes exactly the videos not in them, and keeps the first run's rows as they were
    (their timings, which differ from run to run, are unchanged). The rerun connects through Ray Client
    (`--address ray://...`), where the pipeline's driver is an actor on the cluster."""
    folder, good, broken = archive
    out = tmp_path / "driver_killed.parquet"
    parts = out.with_name(out.name + ".parts")
    driver = _slow_driver(cluster, folder, out, delay_s=0.3, rows_per_part=2)
    try:
        _wait_for(lambda: len(list(parts.glob("part-*.parquet"))) >= 3, 600, "three parts", driver)
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=60)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert not out.exists()
    first_run = _parts_rows(parts)
    assert 6 <= len(first_run) < 48

    result = _ray_classify(cluster, folder, out, address=cluster.client_address)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["processed"], summary["skipped"]) == (48 - len(first_run), len(first_run))
    rows = _rows(out)
    _assert_equals_single_process(rows, single_process, broken)
    for video, row in first_run.items():
        assert rows[video] == row
    assert not parts.exists()


def _feature_files(folder):
    """{stem: (features, windows)} of a features folder, and its index rows."""
    found = {npy.stem: (np.load(npy), json.loads(npy.with_suffix(".json").read_text())["windows"])
             for npy in folder.glob("*.npy")}
    return found, (folder / "index.csv").read_text().splitlines()


@pytest.fixture(scope="module")
def long_archive(tmp_path_factory):
    """Ten 3-second clips (five windows each at the preset's default stride) and the four broken files."""
    folder = tmp_path_factory.mktemp("long") / "videos"
    good, broken = batch_helpers.write_videos(folder, 10, frames=48)
    return folder, good, broken


def test_ray_features_equal_single_process_and_rerun_skips(cluster, long_archive, tmp_path):
    """`video-swin features --engine ray` on the two-node cluster writes what single-process `features` writes:
    the same files, each video's windows, features within 1e-5 and the same index; the broken files are listed
    with the same one-line reasons in failed.csv and make the command fail; a rerun redoes only those.

    1e-5 is the model's parity tolerance against torchvision: the backbone's raw outputs (magnitude ~1, float32)
    come here from batches of other sizes, mixing other videos' windows (3 per call), than in the single
    process (4 windows of one video), and oneDNN's kernels for another batch shape round differently in the
    last bits. Classify's probabilities pass a softmax and an average and hold 1e-6."""
    folder, good, broken = long_archive
    local = _cli("features", folder, "--preset", PRESET, "--out", tmp_path / "local")
    assert local.returncode == 1 and "4 of 14 input(s) failed" in local.stderr, local.stderr
    local_errors = dict(line.split(": error: ", 1) for line in local.stderr.splitlines() if ": error: " in line)

    def on_ray(out):
        return _cli("features", folder, "--preset", PRESET, "--engine", "ray", "--address", cluster.address,
                    "--actors", 2, "--batch", 3, "--out", out, env=cluster.driver_env)

    out = tmp_path / "ray"
    result = on_ray(out)
    assert result.returncode == 1, result.stderr
    assert result.stdout.splitlines()[0] == f"{out}: 14 video(s) done by this run (4 failed), 0 already there"
    assert f"4 input(s) failed: {out / 'failed.csv'}" in result.stderr

    expected, expected_index = _feature_files(tmp_path / "local")
    found, index = _feature_files(out)
    assert sorted(found) == sorted(Path(g).stem for g in good) == sorted(expected)
    for stem, (features, windows) in found.items():
        assert features.dtype == np.float32 and features.shape == expected[stem][0].shape == (5, 96)
        np.testing.assert_allclose(features, expected[stem][0], rtol=0, atol=1e-5, err_msg=stem)
        assert windows == expected[stem][1]
    assert sorted(index) == sorted(expected_index)
    failed = (out / "failed.csv").read_text().splitlines()
    assert failed[0] == "video,error" and len(failed) == 5
    for line in failed[1:]:
        video, error = line.split(",", 1)
        assert video in broken and error.strip('"') == local_errors[video], line

    before = {npy.name: npy.read_bytes() for npy in out.glob("*.npy")}
    again = on_ray(out)
    assert again.returncode == 1
    assert again.stdout.splitlines()[0] == f"{out}: 4 video(s) done by this run (4 failed), 10 already there"
    assert {npy.name: npy.read_bytes() for npy in out.glob("*.npy")} == before


# ------------------------------------------------------------------------------------------------------------
# in this process
# ------------------------------------------------------------------------------------------------------------


def test_local_engine_writes_the_same_results(archive, single_process, tmp_path):
    folder, good, broken = archive
    out = tmp_path / "local.parquet"
    result = _cli("classify", folder, "--preset", PRESET, "--views", VIEWS, "--batch", 3, "--out", out)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{out}: 48 video(s) done by this run (4 error row(s)), 0 already there"
    _assert_equals_single_process(_rows(out), single_process, broken)


def test_features_pipeline_in_this_process_equals_write_features(long_archive, tmp_path):
    """The features task (decode to uint8 windows, the backbone per batch of windows, the folder writer) run by
    the local engine writes the whole maps (`pool="none"`) that `write_features` writes (within 1e-5: batches of
    2 windows against 4, see above), and a Parquet index."""
    from video_swin.inference.features import write_features

    folder, good, broken = long_archive
    reference = write_features(good[:3], PRESET, tmp_path / "reference", pool="none", index="parquet")
    assert reference["failed"] == []
    summary = batch.features_archive(good[:3] + [str(folder / "text.mp4")], PRESET, tmp_path / "pipeline",
                                     engine="local", pool="none", index="parquet", batch_size=2)
    assert (summary.processed, summary.errors, summary.skipped) == (4, 1, 0)
    for video in good[:3]:
        name = Path(video).stem + ".npy"
        found, expected = np.load(tmp_path / "pipeline" / name), np.load(tmp_path / "reference" / name)
        assert found.shape == expected.shape == (5, 4, 4, 4, 96)
        np.testing.assert_allclose(found, expected, rtol=0, atol=1e-5)
    assert pq.read_table(tmp_path / "pipeline" / "index.parquet").equals(pq.read_table(tmp_path / "reference" / "index.parquet"))
    assert (tmp_path / "pipeline" / "failed.csv").read_text().startswith(f"video,error\n{folder / 'text.mp4'},")


def test_cli_refuses_options_that_do_not_apply(tmp_path):
    result = _cli("classify", tmp_path, "--preset", PRESET, "--engine", "ray")
    assert result.returncode == 1 and result.stderr.strip() == (
        "video-swin: error: --engine ray writes its results to a file: add --out results.parquet")
    result = _cli("classify", tmp_path, "--preset", PRESET, "--actors", 2)
    assert result.returncode == 1 and "--actors applies to --out / --engine ray runs" in result.stderr
    result = _cli("classify", tmp_path, "--preset", PRESET, "--out", tmp_path / "r.parquet", "--gpus-per-actor", 1)
    assert result.returncode == 1 and "--gpus-per-actor applies to --engine ray" in result.stderr
    assert not (tmp_path / "r.parquet").exists()
    result = _cli("features", tmp_path, "--preset", PRESET, "--out", tmp_path / "f", "--actors", 2)
    assert result.returncode == 1 and "--actors applies to --engine ray" in result.stderr
    assert not (tmp_path / "f").exists()


# ------------------------------------------------------------------------------------------------------------
# the engine's bookkeeping, with a task of our own (no Ray, no TensorFlow)
# ------------------------------------------------------------------------------------------------------------


class CountTask(batch.BatchTask):
    """`dir/N_name.mp4` has N views, each filled with the value N; the model returns (mean, max) of each view
    and fails on any batch holding a pixel 13; `finish` sums the outputs."""

    view_shape = (1, 2, 2, 3)
    output_shape = (2,)
    view_columns = ("start_s",)

    def __init__(self):
        self.model_calls = []

    def settings(self):
        return {"task": "count"}

    def decode(self, path):
        if "broken" in path:
            raise ValueError(f"cannot read\n  {path}")
        n = int(Path(path).name.split("_")[0])
        return batch.DecodedVideo(np.full((n, *self.view_shape), n, np.uint8), {"start_s": np.arange(n) * 0.5},
                                  {"decode_s": 0.01, "preprocess_s": 0.002})

    def load_model(self, threads=None):
        def model(pixels):
            self.model_calls.append(len(pixels))
            if (pixels == 13).any():
                raise RuntimeError("unlucky pixels")
            flat = pixels.reshape(len(pixels), -1).astype(np.float64)
            return np.stack([flat.mean(axis=1), flat.max(axis=1)], axis=1)

        return model

    def finish(self, video, outputs, columns, timings):
        return {"video": video, "total": float(outputs.sum()), "starts": columns["start_s"].tolist(),
                "views": timings["views"], "error": None}

    def error_row(self, video, message, timings):
        return {"video": video, "total": None, "starts": None, "views": timings.get("views"), "error": message}

    def open_writer(self, out, settings, rows_per_part=500, part_interval_s=60.0):
        schema = pa.schema([("video", pa.string()), ("total", pa.float64()), ("starts", pa.list_(pa.float64())),
                            ("views", pa.int32()), ("error", pa.string())])
        return batch.ParquetResults(out, schema, settings, rows_per_part=rows_per_part, part_interval_s=part_interval_s)


def _view_rows(task, videos):
    return [row for video in videos for row in batch.decode_video({"video": video}, task)]


def test_regroup_waits_for_every_view_and_drops_repeats():
    """Views of several videos, shuffled and partly delivered twice (a retried task): each video is finished
    once, when its last view arrives, from its own views in view order."""
    task = CountTask()
    model = batch.ModelStage(task)
    rows = _view_rows(task, ["a/3_x.mp4", "a/1_y.mp4", "a/broken.mp4", "a/4_z.mp4"])
    order = np.random.default_rng(0).permutation(len(rows))
    shuffled = [rows[i] for i in order] + [rows[i] for i in order[:5]]  # the first five again
    regroup, finished = batch.Regroup(task), []
    for start in range(0, len(shuffled), 3):  # batches mixing videos
        finished += regroup.add(model(batch._as_batch(shuffled[start : start + 3])))
    by_video = {row["video"]: row for row in finished}
    assert len(finished) == len(by_video) == 4 and not regroup.pending
    assert by_video["a/3_x.mp4"]["total"] == 3 * (3 + 3) and by_video["a/3_x.mp4"]["starts"] == [0.0, 0.5, 1.0]
    assert by_video["a/4_z.mp4"]["total"] == 4 * (4 + 4) and by_video["a/4_z.mp4"]["views"] == 4
    assert by_video["a/broken.mp4"]["error"] == "cannot read a/broken.mp4"


def test_a_failing_model_batch_costs_only_the_failing_video():
    """A batch holding views of three videos raises (one video's pixels are 13): the actor retries video by
    video; the other two get their results, the failing one an error row."""
    task = CountTask()
    model = batch.ModelStage(task)
    rows = _view_rows(task, ["b/2_p.mp4", "b/13_q.mp4", "b/1_r.mp4"])
    out = model(batch._as_batch(rows))
    assert task.model_calls == [16, 2, 13, 1]
    finished = {row["video"]: row for row in batch.Regroup(task).add(out)}
    assert finished["b/2_p.mp4"]["total"] == 2 * (2 + 2) and finished["b/1_r.mp4"]["total"] == 2
    assert finished["b/13_q.mp4"]["error"] == "model failed: unlucky pixels"
    assert finished["b/13_q.mp4"]["views"] == 13


def test_local_run_is_resumable_from_parts_and_refuses_other_settings(tmp_path):
    task = CountTask()
    folder = tmp_path / "in"
    videos = [str(folder / f"{n}_v{i}.mp4") for i, n in enumerate([1, 2, 3, 1, 2, 13, 1])] + [str(folder / "broken.mp4")]
    out = tmp_path / "out.parquet"
    parts = tmp_path / "out.parquet.parts"

    # A run killed after writing two parts: simulated by a writer that flushes but never finalises.
    with task.open_writer(out, task.settings(), rows_per_part=2) as writer:
        regroup = batch.Regroup(task)
        model = batch.ModelStage(task)
        for video in videos[:4]:
            for row in regroup.add(model(batch._as_batch(batch.decode_video({"video": video}, task)))):
                writer.add(row)
    assert not out.exists() and len(list(parts.glob("part-*.parquet"))) == 2

    summary = batch.run_task(task, videos, out, engine="local", batch_size=2, progress=False)
    assert (summary.processed, summary.skipped, summary.errors) == (4, 4, 2)
    rows = _rows(out)
    assert sorted(rows) == sorted(videos) and not parts.exists()
    assert rows[str(folder / "broken.mp4")]["error"].startswith("cannot read")
    assert rows[str(folder / "13_v5.mp4")]["error"] == "model failed: unlucky pixels"

    # retry_failed redoes the error rows only; the newest row of a video wins.
    again = batch.run_task(task, videos + videos[:1], out, engine="local", retry_failed=True, progress=False)
    assert (again.processed, again.skipped) == (2, 6)
    assert _rows(out) == rows

    class OtherTask(CountTask):
        def settings(self):
            return {"task": "count", "variant": 2}

    with pytest.raises(batch.BatchError, match="holds results of other settings"):
        batch.run_task(OtherTask(), videos, out, engine="local", progress=False)


def test_several_rows_per_video_come_from_the_newest_file(tmp_path):
    """A writer may give a video several rows (features: one per window). Assembling keeps all the rows of
    a video from the newest file holding it, and none from older ones."""
    schema = pa.schema([("video", pa.string()), ("window", pa.int32()), ("error", pa.string())])
    out = tmp_path / "index.parquet"

    def run(videos):
        with batch.ParquetResults(out, schema, {"task": "windows"}, rows_per_part=2) as writer:
            for video, windows, error in videos:
                writer.add(*({"video": video, "window": w, "error": error} for w in range(windows)))
            writer.finalize()

    run([("a", 3, None), ("b", 1, "x")])  # parts of 2 rows: a's three rows stay together
    run([("b", 2, None), ("c", 1, None)])
    table = pq.read_table(out).to_pylist()
    assert sorted((r["video"], r["window"], r["error"]) for r in table) == [
        ("a", 0, None), ("a", 1, None), ("a", 2, None), ("b", 0, None), ("b", 1, None), ("c", 0, None)]


def test_one_run_at_a_time_per_output(tmp_path):
    task = CountTask()
    out = tmp_path / "out.parquet"
    with task.open_writer(out, task.settings()):
        with pytest.raises(batch.BatchError, match="another run is writing"):
            batch.run_task(task, [str(tmp_path / "1_a.mp4")], out, engine="local", progress=False)


def test_missing_ray_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(batch.BatchError, match=r"the Ray engine needs ray: pip install 'video_swin\[ray\]'"):
        batch.run_task(CountTask(), [str(tmp_path / "1_a.mp4")], tmp_path / "out.parquet", engine="ray", progress=False)
    assert not (tmp_path / "out.parquet").exists() and not (tmp_path / "out.parquet.parts").exists()


def test_pool_size_defaults_and_limits():
    """The default pool (docs/ray.md): one actor per --gpus-per-actor GPUs, or three quarters of the CPUs
    (at least one CPU left to decoding); pools that leave decoding no CPU, or ask for GPUs the cluster does
    not have, are refused in one line."""

    class Cluster:
        def __init__(self, **resources):
            self.resources = resources

        def cluster_resources(self):
            return self.resources

    assert batch._pool_size(Cluster(CPU=16), None, 1, 0) == 12
    assert batch._pool_size(Cluster(CPU=16), None, 2, 0) == 6
    assert batch._pool_size(Cluster(CPU=2), None, 1, 0) == 1
    assert batch._pool_size(Cluster(CPU=32, GPU=4), None, 1, 1) == 4
    assert batch._pool_size(Cluster(CPU=32, GPU=4), None, 1, 0.5) == 8
    assert batch._pool_size(Cluster(CPU=4), 2, 1, 0) == 2
    with pytest.raises(batch.BatchError, match="leave no CPU to decode"):
        batch._pool_size(Cluster(CPU=4), 4, 1, 0)
    with pytest.raises(batch.BatchError, match="the cluster has 0 GPU"):
        batch._pool_size(Cluster(CPU=4), None, 1, 1)


def test_an_address_nobody_listens_on_is_one_line_at_once(tmp_path):
    """`ray.init` would retry such an address for minutes."""
    from tests.deploy.ray_cluster import free_port

    out = tmp_path / "out.parquet"
    for address, message in ((f"127.0.0.1:{free_port()}", "cannot reach the Ray cluster at 127.0.0.1:"),
                             ("ray://host:port", "expected auto, HOST:PORT or ray://HOST:PORT")):
        start = time.monotonic()
        with pytest.raises(batch.BatchError, match=message):
            batch.run_task(CountTask(), [str(tmp_path / "1_a.mp4")], out, engine="ray", address=address, progress=False)
        assert time.monotonic() - start < 30
    assert not out.exists() and not (tmp_path / "out.parquet.parts").exists()
