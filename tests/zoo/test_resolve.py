"""Presets by name, end to end against a checkpoint server on 127.0.0.1 that serves generated checkpoints
under the registry's paths (`VIDEO_SWIN_ZOO_URL_BASE`); nothing reaches the internet.

The served Swin-T is torchvision's swin3d_t with random weights in the official (mmaction) layout, so the
converted model is checked against torchvision itself. Command-line failures are asserted as exactly one
stderr line from `python -m video_swin.cli` in a subprocess."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import urllib.parse
from pathlib import Path

import numpy as np
import pytest
import torch

from tests import reference
from tests.zoo.checkpoint_server import Behaviour, CheckpointServer
from video_swin.zoo import registry, resolve

SRC = Path(__file__).resolve().parents[2] / "src"
TINY = "kinetics400-swin-tiny"


def url_path(name):
    return urllib.parse.urlsplit(registry.get(name).url).path


def body_requests(server, name):
    """The requests that received bytes (or an error) for `name`'s file, redirects left out."""
    return [(r.range, r.status, r.body_bytes) for r in server.get_requests(url_path(name)) if r.status != 302]


@pytest.fixture
def server():
    with CheckpointServer() as srv:
        yield srv


@pytest.fixture
def home(tmp_path, monkeypatch, server):
    """An empty cache, and every registry URL pointed at the test server (this process and its children)."""
    home = tmp_path / "zoo-home"
    monkeypatch.setenv("VIDEO_SWIN_HOME", str(home))
    monkeypatch.setenv("VIDEO_SWIN_ZOO_URL_BASE", server.base)
    monkeypatch.delenv("VIDEO_SWIN_OFFLINE", raising=False)
    monkeypatch.delenv("VIDEO_SWIN_DEBUG", raising=False)
    return home


@pytest.fixture
def random_file(tmp_path):
    path = tmp_path / "random.bin"
    path.write_bytes(np.random.default_rng(3).integers(0, 256, 200_000, dtype=np.uint8).tobytes())
    return path


def run_cli(*args, cwd, **env):
    environment = {**os.environ, "PYTHONPATH": str(SRC), **env}
    return subprocess.run([sys.executable, "-m", "video_swin.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env=environment, timeout=600)


def one_error_line(result) -> str:
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("video-swin: error: ")
    return lines[0]


def files_under(folder):
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*") if p.is_file())


def test_first_use_downloads_checks_converts_and_caches_then_second_use_makes_no_request(
        server, home, tiny_checkpoints, tiny_reference, monkeypatch):
    import video_swin

    checkpoint = tiny_checkpoints["official_pth"]
    server.serve(url_path(TINY), checkpoint)
    model = video_swin.from_preset(TINY)

    size = checkpoint.stat().st_size
    assert body_requests(server, TINY) == [(None, 200, size)]  # one whole download (through GitHub's redirect)
    x = np.random.default_rng(0).standard_normal((1, 4, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(model(x)), reference.run_reference(tiny_reference, x), rtol=1e-5, atol=1e-5)

    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    preset = video_swin.load_preset(TINY)
    assert preset.path == home / "presets" / TINY
    assert preset.config["variant"] == "tiny" and preset.config["num_classes"] == 400
    zoo = preset.metadata["zoo"]
    assert zoo["sha256"] == digest and "trust on first use" in zoo["sha256_check"]
    assert zoo["url"] == server.base + url_path(TINY) and zoo["registry_url"] == registry.get(TINY).url
    record = json.loads((home / "records" / f"{TINY}.json").read_text())
    assert (record["sha256"], record["bytes"]) == (digest, size)
    assert files_under(home / "downloads") == []  # no part file, no leftover checkpoint

    monkeypatch.setenv("VIDEO_SWIN_OFFLINE", "1")
    assert resolve.resolve_preset(TINY) == home / "presets" / TINY
    assert body_requests(server, TINY) == [(None, 200, size)]  # the second use made no request


def test_two_processes_asking_at_once_download_once_and_both_get_the_preset(server, home, tiny_checkpoints, tmp_path):
    checkpoint = tiny_checkpoints["official_pth"]
    # the body waits a second: the second process reaches the lock while the first one downloads
    server.serve(url_path(TINY), checkpoint, Behaviour(delay_s=1.0))
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    processes = [
        subprocess.Popen([sys.executable, "-m", "video_swin.cli", "download", TINY], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=600) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    assert body_requests(server, TINY) == [(None, 200, checkpoint.stat().st_size)]
    target = home / "presets" / TINY
    assert all(out.strip().splitlines()[-1] == f"{TINY}: {target}" for out, _ in outputs)
    assert sum("waiting for another process fetching" in out for out, _ in outputs) == 1
    assert all(err == "" for _, err in outputs)
    assert sorted(files_under(target)) == ["config.json", "metadata.json", "model.weights.h5"]

    # the machine goes offline later: `presets` lists the name as cached (resolved offline: the test above)
    listed = run_cli("presets", "--json", cwd=tmp_path, VIDEO_SWIN_OFFLINE="1")
    rows = {row["name"]: row for row in map(json.loads, listed.stdout.splitlines())}
    assert rows[TINY]["cached"] is True and rows[TINY]["size"] == "downloaded"
    assert rows["kinetics400-swin-small"]["cached"] is False and rows["synthetic-motion"]["cached"] == "package"
    assert len(body_requests(server, TINY)) == 1


def test_a_file_that_does_not_match_the_published_hash_prefix_is_refused_and_removed(server, home, random_file, tmp_path):
    name = "torchvision-swin3d-t"
    server.serve(url_path(name), random_file)
    line = one_error_line(run_cli("download", name, cwd=tmp_path))
    digest = hashlib.sha256(random_file.read_bytes()).hexdigest()
    assert line == (f"video-swin: error: {name}: swin3d_t-7615ae03.pth from {server.base}/models/swin3d_t-7615ae03.pth "
                    f"is not the published file: its sha256 is {digest}, expected a sha256 starting with 7615ae03; "
                    "the file was deleted")
    assert files_under(home) == ["locks/torchvision-swin3d-t.lock"]  # nothing downloaded, converted or recorded


def test_a_download_that_differs_from_the_recorded_first_download_is_refused(server, home, random_file, tmp_path):
    recorded = hashlib.sha256(b"what the first download was").hexdigest()
    (home / "records").mkdir(parents=True)
    (home / "records" / f"{TINY}.json").write_text(json.dumps({"sha256": recorded, "first_downloaded": "2026-01-02"}))
    server.serve(url_path(TINY), random_file)
    line = one_error_line(run_cli("download", TINY, cwd=tmp_path))
    assert f"its sha256 is {hashlib.sha256(random_file.read_bytes()).hexdigest()}, expected sha256 {recorded}" in line
    assert f"recorded at the first download, 2026-01-02, in {home / 'records' / f'{TINY}.json'}" in line
    assert files_under(home / "downloads") == [] and not (home / "presets").exists()


def test_404_is_one_line_naming_the_url_and_the_convert_command(server, home, tmp_path):
    name = "kinetics400-swin-small"
    line = one_error_line(run_cli("download", name, cwd=tmp_path))
    url = server.base + url_path(name)
    assert line == (f"video-swin: error: {name}: cannot download {url}: HTTP 404 Not Found; fetch {url} by hand and "
                    f"run `video-swin convert swin_small_patch244_window877_kinetics400_1k.pth {home / 'presets' / name}`")


def test_a_stalled_server_is_one_line_and_the_next_call_resumes(server, home, random_file, tmp_path):
    name = "torchvision-swin3d-s"
    server.serve(url_path(name), random_file, Behaviour(stall_after=50_000))
    line = one_error_line(run_cli("download", name, cwd=tmp_path, VIDEO_SWIN_ZOO_TIMEOUT="1"))
    assert "stalled: no data for 1 s (timed out) after 50000 of 200000 bytes" in line
    assert "run again to resume" in line and "video-swin convert swin3d_s-da41c237.pth" in line
    assert (home / "downloads" / "swin3d_s-da41c237.pth.part").stat().st_size == 50_000
    one_error_line(run_cli("download", name, cwd=tmp_path))  # resumes, then the (random) file fails its hash
    assert body_requests(server, name)[1][:2] == ("bytes=50000-", 206)


def test_offline_never_touches_the_network(server, home, tiny_checkpoints, tmp_path):
    server.serve(url_path(TINY), tiny_checkpoints["official_pth"])
    line = one_error_line(run_cli("info", TINY, cwd=tmp_path, VIDEO_SWIN_OFFLINE="1"))
    url = server.base + url_path(TINY)
    assert line == (f"video-swin: error: {TINY} is not in the cache ({home / 'presets' / TINY}) and VIDEO_SWIN_OFFLINE=1 "
                    f"forbids downloading it; fetch {url} by hand and run `video-swin convert "
                    f"swin_tiny_patch244_window877_kinetics400_1k.pth {home / 'presets' / TINY}`")
    assert server.requests == []


def test_an_unknown_name_is_one_line_with_the_closest_name(home, tmp_path):
    line = one_error_line(run_cli("info", "kinetics400-swin-tin", cwd=tmp_path))
    assert line == ("video-swin: error: kinetics400-swin-tin: no such preset folder, and not a registered preset name "
                    "(did you mean kinetics400-swin-tiny? `video-swin presets` lists them)")


def test_a_folder_wins_over_a_registered_name(server, home, tmp_path, monkeypatch):
    from video_swin.zoo.synthetic_motion import PRESET_DIR

    shutil.copytree(PRESET_DIR, tmp_path / TINY)
    monkeypatch.chdir(tmp_path)
    assert resolve.resolve_preset(TINY) == Path(TINY)
    assert resolve.load_preset(TINY).config["num_classes"] == 8
    assert server.requests == []


def test_the_shipped_preset_resolves_by_name_offline(home, monkeypatch):
    import video_swin
    from video_swin.inference.classify import VideoClassifier
    from video_swin.zoo.synthetic_motion import PRESET_DIR

    monkeypatch.setenv("VIDEO_SWIN_OFFLINE", "1")
    classifier = VideoClassifier("synthetic-motion")
    assert classifier.preset.path == PRESET_DIR and len(classifier.class_names) == 8
    assert video_swin.from_preset("synthetic-motion").num_classes == 8
    assert not home.exists()


def test_a_download_that_is_not_the_registered_model_does_not_convert_and_is_kept(server, home, tmp_path):
    """A valid checkpoint of another architecture under the Swin-T name: the conversion is forced to the
    registry's variant, window and classes, so it fails; the download is kept and reused, not re-fetched."""
    other = tmp_path / "small.pth"
    torch.save({"state_dict": reference.official_state_dict(reference.randomized_small_reference())}, other)
    server.serve(url_path(TINY), other)
    kept = home / "downloads" / registry.get(TINY).file_name
    for _ in range(2):
        with pytest.raises(resolve.ZooError, match=f"{TINY}: the download cannot be converted .* it is kept at {kept}"):
            resolve.resolve_preset(TINY)
    assert kept.read_bytes() == other.read_bytes()
    assert len(body_requests(server, TINY)) == 1
    assert not (home / "presets" / TINY).exists() and not (home / "records").exists()
