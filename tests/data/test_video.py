"""Decoding tests on videos generated here with PyAV (no fixtures on disk).

Every generated frame encodes its own index in a 4x4 grid of large black/white
cells (16 bits), which survives lossy compression, so a test can tell exactly
which frame the decoder returned, including after seeks.
"""

from __future__ import annotations

import struct
from fractions import Fraction

import av
import numpy as np
import pytest

from video_swin.data import video
from video_swin.data.video import VideoError, decode_all, probe, read_frames

W, H = 160, 128  # small frames keep encoding fast; cells are 40x32 pixels


def index_frame(i: int, h: int = H, w: int = W) -> np.ndarray:
    """RGB frame whose 4x4 grid of cells spells ``i`` in binary (bit 0 top-left)."""
    img = np.zeros((h, w, 3), np.uint8)
    ch, cw = h // 4, w // 4
    for bit in range(16):
        if (i >> bit) & 1:
            r, c = divmod(bit, 4)
            img[r * ch : (r + 1) * ch, c * cw : (c + 1) * cw] = 255
    return img


def read_index(frame: np.ndarray) -> int:
    h, w = frame.shape[:2]
    ch, cw = h // 4, w // 4
    value = 0
    for bit in range(16):
        r, c = divmod(bit, 4)
        cell = frame[r * ch + ch // 4 : (r + 1) * ch - ch // 4, c * cw + cw // 4 : (c + 1) * cw - cw // 4]
        if cell.mean() > 127:
            value |= 1 << bit
    return value


def write_video(
    path,
    n: int,
    codec: str = "libx264",
    *,
    fmt: str | None = None,
    size: tuple[int, int] = (W, H),
    rate: int = 25,
    pix_fmt: str = "yuv420p",
    options: dict | None = None,
    container_options: dict | None = None,
    pts_ms: list[int] | None = None,
    rotation: int | None = None,
    frame=index_frame,
):
    w, h = size
    out = av.open(str(path), "w", format=fmt, options=container_options or {})
    stream = out.add_stream(codec, rate=rate, options=options or {})
    stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
    if pts_ms is not None:
        stream.codec_context.time_base = Fraction(1, 1000)
    if rotation is not None:
        stream.set_display_rotation(rotation)
    for i in range(n):
        f = av.VideoFrame.from_ndarray(frame(i, h, w), format="rgb24")
        if pts_ms is not None:
            f.pts = pts_ms[i]
            f.time_base = Fraction(1, 1000)
        for packet in stream.encode(f):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)
    out.close()
    return path


X264_GOP = {"preset": "ultrafast", "x264-params": "keyint=30:min-keyint=30:scenecut=0:bframes=2"}
VP_FAST = {"deadline": "realtime", "cpu-used": "8", "g": "30"}

FORMATS = {
    "mp4-h264": ("mp4", "libx264", "yuv420p", X264_GOP),
    "mkv-h264": ("mkv", "libx264", "yuv420p", X264_GOP),
    "mov-h264": ("mov", "libx264", "yuv420p", X264_GOP),
    "webm-vp8": ("webm", "libvpx", "yuv420p", VP_FAST),
    "webm-vp9": ("webm", "libvpx-vp9", "yuv420p", VP_FAST),
    "avi-mjpeg": ("avi", "mjpeg", "yuvj420p", {}),
    "avi-mpeg4": ("avi", "mpeg4", "yuv420p", {"g": "30"}),
    "mp4-mpeg4": ("mp4", "mpeg4", "yuv420p", {"g": "30"}),
}
CODEC_NAMES = {"libx264": "h264", "libvpx": "vp8", "libvpx-vp9": "vp9", "mjpeg": "mjpeg", "mpeg4": "mpeg4"}


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    made = {}
    for name, (ext, codec, pix, opts) in FORMATS.items():
        made[name] = write_video(root / f"{name}.{ext}", 75, codec, pix_fmt=pix, options=opts)
    return made


def indices_of(frames: np.ndarray) -> list[int]:
    return [read_index(f) for f in frames]


# --------------------------------------------------------------------------- #
# formats, counts, exact frames
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("name", list(FORMATS))
def test_probe_and_read_every_format(videos, name):
    path = videos[name]
    info = probe(path)
    assert info.num_frames == 75 == info.n
    assert (info.width, info.height) == (W, H)
    assert info.rotation == 0
    assert info.codec == CODEC_NAMES[FORMATS[name][1]]
    assert info.fps == pytest.approx(25.0)
    assert info.duration == pytest.approx(3.0, abs=0.05)
    want = [74, 0, 37, 37, 5, 73, 1, 74, 30, 29, 31]
    frames = read_frames(path, want)
    assert frames.shape == (len(want), H, W, 3) and frames.dtype == np.uint8
    assert indices_of(frames) == want


@pytest.mark.parametrize("name", ["mp4-h264", "webm-vp9", "avi-mjpeg"])
def test_decode_all_matches_read_frames(videos, name):
    path = videos[name]
    allf = decode_all(path)
    assert allf.shape == (75, H, W, 3)
    assert indices_of(allf) == list(range(75))
    some = read_frames(path, [60, 3, 3, 44])
    assert np.array_equal(some, allf[[60, 3, 3, 44]])


def test_container_count_missing_is_counted(videos):
    # Matroska/WebM store no frame count; the count comes from the packets.
    path = videos["webm-vp8"]
    assert probe(path).container_frames == 0
    assert probe(path).num_frames == 75


def test_wrong_container_count_is_ignored(tmp_path, videos):
    data = bytearray(videos["avi-mjpeg"].read_bytes())
    strh = data.find(b"strh")
    avih = data.find(b"avih")
    struct.pack_into("<I", data, strh + 8 + 32, 999)  # AVISTREAMHEADER.dwLength
    struct.pack_into("<I", data, avih + 8 + 16, 999)  # AVIMAINHEADER.dwTotalFrames
    path = tmp_path / "wrong_count.avi"
    path.write_bytes(bytes(data))
    info = probe(path)
    assert info.container_frames == 999
    assert info.num_frames == 75
    assert indices_of(read_frames(path, [74, 0])) == [74, 0]


# --------------------------------------------------------------------------- #
# seeking
# --------------------------------------------------------------------------- #


@pytest.fixture(scope="module")
def long_videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("long")
    return {
        "mp4": write_video(root / "long.mp4", 300, "libx264", options=X264_GOP),
        "mkv": write_video(root / "long.mkv", 300, "libx264", options=X264_GOP),
        "webm": write_video(root / "long.webm", 300, "libvpx", options=VP_FAST),
    }


class _CountFrames:
    def __init__(self, monkeypatch):
        self.count = 0
        original = video._iter_frames

        def counting(container, stream):
            for frame in original(container, stream):
                self.count += 1
                yield frame

        monkeypatch.setattr(video, "_iter_frames", counting)


@pytest.mark.parametrize("kind", ["mp4", "mkv", "webm"])
def test_seek_returns_the_right_frames(long_videos, kind):
    path = long_videos[kind]
    assert probe(path).num_frames == 300
    want = [299, 290, 5, 151, 150, 299, 240, 241, 0, 61, 59, 60]
    assert indices_of(read_frames(path, want)) == want


@pytest.mark.parametrize("kind", ["mp4", "mkv", "webm"])
def test_seek_decodes_only_what_is_needed(long_videos, kind, monkeypatch):
    path = long_videos[kind]
    probe(path)  # build (and cache) the index outside the count
    counter = _CountFrames(monkeypatch)
    assert indices_of(read_frames(path, [295])) == [295]
    # keyframe every 30 frames: from frame 270 to 295, not from 0
    assert counter.count <= 40, counter.count
    counter.count = 0
    want = [5, 100, 200, 290]
    assert indices_of(read_frames(path, want)) == want
    assert counter.count <= 4 * 35, counter.count


def test_dense_protocol_indices_on_long_video(long_videos):
    from video_swin.data.sampling import dense_test_indices

    path = long_videos["mp4"]
    clips = dense_test_indices(probe(path).num_frames, 32, 2, 4)
    flat = [i for c in clips for i in c]
    assert indices_of(read_frames(path, flat)) == flat


# --------------------------------------------------------------------------- #
# variable frame rate, rotation, no timestamps
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_variable_frame_rate(tmp_path, ext):
    steps = [20, 40, 33, 100, 7, 60]
    pts = np.cumsum([0] + [steps[i % len(steps)] for i in range(59)]).tolist()
    path = write_video(tmp_path / f"vfr.{ext}", 60, "libx264", options=X264_GOP, pts_ms=pts)
    info = probe(path)
    assert info.num_frames == 60
    # mean rate over the clip, not Matroska's nominal 25
    assert info.fps == pytest.approx(59 / (pts[-1] / 1000), rel=0.02)
    want = [59, 0, 31, 32, 3]
    assert indices_of(read_frames(path, want)) == want


def marker_frame(i: int, h: int, w: int) -> np.ndarray:
    """A red block at the top-left and a green one at the top-right."""
    img = np.full((h, w, 3), 40, np.uint8)
    img[: h // 4, : w // 4] = (255, 0, 0)
    img[: h // 4, -w // 4 :] = (0, 255, 0)
    return img


def _where(img: np.ndarray, color) -> tuple[float, float]:
    mask = np.all(np.abs(img.astype(int) - np.array(color)) < 60, axis=-1)
    ys, xs = np.nonzero(mask)
    return ys.mean() / img.shape[0], xs.mean() / img.shape[1]


@pytest.mark.parametrize("ext", ["mp4", "mov"])
@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotation_metadata_is_applied(tmp_path, rotation, ext):
    path = write_video(tmp_path / f"rot{rotation}.{ext}", 10, "libx264", options=X264_GOP, rotation=rotation, frame=marker_frame)
    info = probe(path)
    assert info.rotation == rotation
    if rotation in (90, 270):
        assert (info.width, info.height) == (H, W)
    else:
        assert (info.width, info.height) == (W, H)
    frames = read_frames(path, [0, 9])
    assert frames.shape == (2, info.height, info.width, 3)
    expected = np.rot90(marker_frame(0, H, W), rotation // 90)  # counter-clockwise
    for color in [(255, 0, 0), (0, 255, 0)]:
        got, exp = _where(frames[0], color), _where(expected, color)
        assert got == pytest.approx(exp, abs=0.05)
    # 90 degrees counter-clockwise: the top-left red block ends up bottom-left
    if rotation == 90:
        y, x = _where(frames[1], (255, 0, 0))
        assert y > 0.5 and x < 0.5


def test_rotated_index_frames_roundtrip(tmp_path):
    path = write_video(tmp_path / "rot.mp4", 40, "libx264", options=X264_GOP, rotation=270)
    frames = read_frames(path, [39, 2])
    assert frames.shape == (2, W, H, 3)
    assert [read_index(np.rot90(f, -3)) for f in frames] == [39, 2]


def test_stream_without_timestamps_is_counted_by_decoding(tmp_path):
    # A raw H.264 elementary stream has no pts: sequential mode.
    path = write_video(tmp_path / "raw.h264", 45, "libx264", fmt="h264", options=X264_GOP)
    index = video._get_index(str(path))
    assert index.mode == "sequential"
    assert probe(path).num_frames == 45
    want = [44, 0, 20, 20]
    assert indices_of(read_frames(path, want)) == want


def test_frame_fn_is_applied_once_per_unique_frame(videos):
    calls = []

    def half(f):
        calls.append(1)
        return f[::2, ::2].copy()

    out = read_frames(videos["mp4-h264"], [3, 3, 3, 10], frame_fn=half)
    assert out.shape == (4, H // 2, W // 2, 3)
    assert len(calls) == 2


# --------------------------------------------------------------------------- #
# bad inputs
# --------------------------------------------------------------------------- #


def _one_line(exc_info) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg
    return msg


def test_missing_file(tmp_path):
    with pytest.raises(VideoError) as e:
        probe(tmp_path / "nope.mp4")
    assert "not found" in _one_line(e)


def test_directory(tmp_path):
    with pytest.raises(VideoError) as e:
        probe(tmp_path)
    assert "directory" in _one_line(e)


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    with pytest.raises(VideoError) as e:
        read_frames(path, [0])
    assert "empty" in _one_line(e)


def test_text_file_named_mp4(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video\n" * 20)
    with pytest.raises(VideoError) as e:
        probe(path)
    assert "not a readable video" in _one_line(e)


def test_truncated_mp4(tmp_path, videos):
    data = videos["mp4-h264"].read_bytes()
    path = tmp_path / "cut.mp4"
    path.write_bytes(data[: int(len(data) * 0.3)])  # index (moov) is at the end: lost
    with pytest.raises(VideoError) as e:
        probe(path)
    assert "truncated" in _one_line(e)


def test_truncated_with_no_decodable_frames(tmp_path, videos):
    data = videos["mkv-h264"].read_bytes()
    cut = data.find(b"\x1f\x43\xb6\x75")  # first Matroska Cluster: headers only
    assert cut > 0
    path = tmp_path / "headers_only.mkv"
    path.write_bytes(data[:cut])
    with pytest.raises(VideoError) as e:
        probe(path)
    assert "no decodable video frames" in _one_line(e) or "not a readable" in _one_line(e)


def test_truncated_mkv_keeps_what_is_there(tmp_path, videos):
    data = videos["mkv-h264"].read_bytes()
    path = tmp_path / "cut.mkv"
    path.write_bytes(data[: int(len(data) * 0.3)])
    n = probe(path).num_frames
    assert 0 < n < 75
    assert indices_of(read_frames(path, list(range(n)))) == list(range(n))


def test_truncated_faststart_mp4(tmp_path):
    noisy = lambda i, h, w: np.random.default_rng(i).integers(0, 256, (h, w, 3), dtype=np.uint8)  # noqa: E731
    path = write_video(
        tmp_path / "fs.mp4", 60, "libx264", options={"preset": "ultrafast"},
        container_options={"movflags": "faststart"}, frame=noisy,
    )
    data = path.read_bytes()
    cut = tmp_path / "fs_cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.4)])
    n = probe(cut).num_frames
    assert 0 < n < 60
    frames = read_frames(cut, list(range(n)))  # every counted frame decodes
    assert frames.shape[0] == n


def write_audio_only(path):
    """A file with one AAC audio stream and no video stream."""
    out = av.open(str(path), "w")
    stream = out.add_stream("aac", rate=16000)
    for i in range(10):
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        frame.pts = i * 1024
        for p in stream.encode(frame):
            out.mux(p)
    for p in stream.encode():
        out.mux(p)
    out.close()
    return path


def test_audio_only(tmp_path):
    path = write_audio_only(tmp_path / "sound.m4a")
    with pytest.raises(VideoError) as e:
        probe(path)
    assert "no video stream" in _one_line(e)


def test_unsupported_codec(tmp_path, videos):
    data = videos["mkv-h264"].read_bytes()
    assert data.count(b"V_MPEG4/ISO/AVC") == 1
    path = tmp_path / "alien.mkv"
    path.write_bytes(data.replace(b"V_MPEG4/ISO/AVC", b"V_QQQQQ/ISO/QQQ"))
    with pytest.raises(VideoError) as e:
        probe(path)
    assert "codec" in _one_line(e)


def test_index_out_of_range(videos):
    with pytest.raises(VideoError) as e:
        read_frames(videos["mp4-h264"], [0, 75])
    assert "out of range" in _one_line(e) and "75 frames" in _one_line(e)
    with pytest.raises(VideoError):
        read_frames(videos["mp4-h264"], [-1])
    with pytest.raises(VideoError):
        read_frames(videos["mp4-h264"], [])


def test_decode_all_refuses_huge_output(videos):
    with pytest.raises(VideoError) as e:
        decode_all(videos["mp4-h264"], max_bytes=1000)
    assert "read_frames" in _one_line(e)


def test_video_error_is_value_error():
    assert issubclass(VideoError, ValueError)


# --------------------------------------------------------------------------- #
# streaming: FrameStream
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("name", ["mp4-h264", "mkv-h264", "webm-vp9", "avi-mjpeg"])
def test_frame_stream_gives_every_frame_once_in_order(videos, name):
    with video.open_stream(videos[name]) as stream:
        got = [read_index(f) for f in stream]
    assert got == list(range(75))
    assert stream.frames == 75 and stream.stopped is None and stream.fps == pytest.approx(25)
    assert (stream.width, stream.height) == (W, H) and not stream.live


def test_frame_stream_applies_rotation_and_frame_fn(tmp_path):
    path = write_video(tmp_path / "rot.mp4", 12, "libx264", options=X264_GOP, rotation=90)
    sizes = []
    stream = video.open_stream(path, frame_fn=lambda f: (sizes.append(f.shape), f[::2, ::2])[1])
    frames = list(stream)
    assert sizes[0] == (W, H, 3) and frames[0].shape == (W // 2, H // 2, 3)  # upright before frame_fn
    np.testing.assert_array_equal(frames[5], read_frames(path, [5])[0][::2, ::2])
    with pytest.raises(RuntimeError, match="read once"):
        list(stream)


def test_frame_stream_reads_file_objects(videos):
    path = videos["mkv-h264"]
    with open(path, "rb") as f:  # seekable: read like the file
        assert [read_index(x) for x in video.open_stream(f)] == list(range(75))
    with open(path, "rb") as f:
        unseekable = type("Pipe", (), {"read": lambda self, n: f.read(n)})()
        stream = video.open_stream(unseekable)
        assert stream.live and [read_index(x) for x in stream] == list(range(75))


def test_frame_stream_says_where_a_cut_mp4_stops(tmp_path):
    noisy = lambda i, h, w: np.random.default_rng(i).integers(0, 256, (h, w, 3), dtype=np.uint8)  # noqa: E731
    path = write_video(tmp_path / "fs.mp4", 60, "libx264", options={"preset": "ultrafast"},
                       container_options={"movflags": "faststart"}, frame=noisy)
    data = path.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.5)])
    stream = video.open_stream(cut)
    n = len(list(stream))
    assert 0 < n < 60 and stream.stopped and ("incomplete" in stream.stopped or "announces" in stream.stopped)
    whole = video.open_stream(path)
    assert len(list(whole)) == 60 and whole.stopped is None


def test_frame_stream_says_where_a_cut_mpegts_stream_stops(tmp_path):
    path = write_video(tmp_path / "s.ts", 50, "libx264", fmt="mpegts", options=X264_GOP)
    data = path.read_bytes()
    assert len(data) % video.MPEGTS_PACKET_BYTES == 0
    whole = video.open_stream(path)
    assert [read_index(f) for f in whole] == list(range(50)) and whole.stopped is None
    cut = tmp_path / "cut.ts"
    cut.write_bytes(data[: len(data) // 2 + 17])
    stream = video.open_stream(cut)
    n = len(list(stream))
    assert 0 < n < 50 and "MPEG-TS packet" in stream.stopped


def test_frame_stream_refuses_what_is_not_a_video(tmp_path):
    (tmp_path / "t.mp4").write_text("hello")
    with pytest.raises(VideoError, match="not a readable video"):
        video.open_stream(tmp_path / "t.mp4")
    with pytest.raises(VideoError, match="not found"):
        video.open_stream(tmp_path / "missing.mp4")
    with pytest.raises(VideoError, match="no video stream"):
        video.open_stream(write_audio_only(tmp_path / "a.m4a"))
