"""The download protocol against a server on 127.0.0.1 (small generated files, no model): resume with
Range (through a GitHub-like redirect), restart when the server cannot resume, the sha256 checks, and
timeouts on a stalled server. Expected digests come from hashlib on the served bytes."""

import hashlib
import time

import numpy as np
import pytest

from tests.zoo.checkpoint_server import Behaviour, CheckpointServer
from video_swin.zoo import download

SIZE = 3 * download.CHUNK + 12345  # several read blocks, not a multiple of one
RELEASE_PATH = "/SwinTransformer/storage/releases/download/v1.0.4/blob.pth"  # redirected, as GitHub does
DIRECT_PATH = "/models/blob-00000000.pth"


@pytest.fixture
def payload(tmp_path):
    data = np.random.default_rng(7).integers(0, 256, SIZE, dtype=np.uint8).tobytes()
    path = tmp_path / "served.bin"
    path.write_bytes(data)
    return path, data


@pytest.fixture
def server():
    with CheckpointServer() as srv:
        yield srv


def test_interrupted_download_resumes_with_range_where_it_stopped(server, payload, tmp_path):
    served, data = payload
    cut = SIZE // 3
    server.serve(RELEASE_PATH, served, Behaviour(close_after=cut))
    dest = tmp_path / "cache" / "blob.pth"
    with pytest.raises(download.DownloadError, match=f"closed after {cut} of {SIZE} bytes.*run again to resume"):
        download.fetch(server.base + RELEASE_PATH, dest)
    assert not dest.exists()
    assert download.part_path(dest).read_bytes() == data[:cut]

    digest = download.fetch(server.base + RELEASE_PATH, dest)

    requests = [(r.range, r.status, r.body_bytes) for r in server.get_requests(RELEASE_PATH) if r.status != 302]
    # the Range header survived the redirect to the CDN path, and only the rest was sent
    assert requests == [(None, 200, cut), (f"bytes={cut}-", 206, SIZE - cut)]
    assert dest.read_bytes() == data
    assert digest == hashlib.sha256(data).hexdigest()
    assert not download.part_path(dest).exists()


def test_a_server_ignoring_range_restarts_the_file(server, payload, tmp_path):
    served, data = payload
    server.serve(DIRECT_PATH, served, Behaviour(ignore_range=True))
    dest = tmp_path / "blob.pth"
    download.part_path(dest).write_bytes(b"stale bytes from another file")
    download.fetch(server.base + DIRECT_PATH, dest)
    assert dest.read_bytes() == data
    assert [r.status for r in server.get_requests(DIRECT_PATH)] == [200]


def test_a_part_longer_than_the_file_is_dropped(server, payload, tmp_path):
    served, data = payload
    server.serve(DIRECT_PATH, served)
    dest = tmp_path / "blob.pth"
    download.part_path(dest).write_bytes(b"x" * (SIZE + 10))
    download.fetch(server.base + DIRECT_PATH, dest)
    assert dest.read_bytes() == data
    assert [r.status for r in server.get_requests(DIRECT_PATH)] == [416, 200]


def test_sha256_prefix_and_full_digest_are_checked(server, payload, tmp_path):
    served, data = payload
    server.serve(DIRECT_PATH, served)
    digest = hashlib.sha256(data).hexdigest()
    good = tmp_path / "good.pth"
    assert download.fetch(server.base + DIRECT_PATH, good, sha256_prefix=digest[:8], expected_sha256=digest) == digest

    wrong_prefix = "0" * 8 if not digest.startswith("0" * 8) else "f" * 8
    for kwargs in ({"sha256_prefix": wrong_prefix}, {"expected_sha256": hashlib.sha256(b"other").hexdigest()}):
        dest = tmp_path / "bad.pth"
        with pytest.raises(download.HashMismatchError, match=f"its sha256 is {digest}.*the file was deleted"):
            download.fetch(server.base + DIRECT_PATH, dest, **kwargs)
        assert not dest.exists() and not download.part_path(dest).exists()


@pytest.mark.parametrize("behaviour", [Behaviour(stall_after=SIZE // 2), Behaviour(stall_before_headers=True)],
                         ids=["mid-body", "before-headers"])
def test_a_stalled_server_times_out_and_keeps_what_arrived(server, payload, tmp_path, behaviour):
    served, data = payload
    server.serve(DIRECT_PATH, served, behaviour)
    dest = tmp_path / "blob.pth"
    start = time.monotonic()
    with pytest.raises(download.DownloadError, match=r"timed out"):
        download.fetch(server.base + DIRECT_PATH, dest, timeout=0.5)
    assert time.monotonic() - start < 20  # the bound holds; the exact figure is not this test's business
    kept = download.part_path(dest).read_bytes() if download.part_path(dest).exists() else b""
    assert data.startswith(kept)
    if behaviour.stall_after:
        assert len(kept) == SIZE // 2  # every byte that arrived is kept
    download.fetch(server.base + DIRECT_PATH, dest, timeout=5)  # the next call completes it
    assert dest.read_bytes() == data


def test_http_errors_and_unreachable_hosts_are_download_errors(server, tmp_path):
    with pytest.raises(download.DownloadError, match="HTTP 404"):
        download.fetch(server.base + "/models/missing.pth", tmp_path / "x.pth")
    port = server.httpd.server_address[1]
    server.__exit__(None, None, None)  # nothing listens on the port any more
    with pytest.raises(download.DownloadError, match="unreachable"):
        download.fetch(f"http://127.0.0.1:{port}/models/x.pth", tmp_path / "x.pth", timeout=2)
    assert not (tmp_path / "x.pth").exists()
