"""Video decoding with PyAV: exact frame counts, sparse random access, rotation, and streaming.

:func:`probe` and :func:`read_frames` serve files read in any order (an index of the file first);
:class:`FrameStream` reads a file, standard input, a URL or a file object once, front to back, without an
index, and says where a stream stopped early (see there).

Frame numbering
---------------
Frame ``i`` is the ``i``-th *presented* frame of the first video stream, in
presentation (pts) order, counting from 0.  ``probe(path).num_frames`` is the
number of such frames, so every index ``0 <= i < num_frames`` is readable by
:func:`read_frames`.

The count is exact.  It is not taken from the container header (``nb_frames`` is
0 in Matroska/WebM, may be wrong in AVI, and ignores edit lists in MP4);
instead the video packets are demuxed once (no decoding) and the non-empty,
non-discarded packets are counted.  Their presentation timestamps, sorted, give
the pts of every frame, and the keyframe flags give the places a seek can land
on.  That index is what lets :func:`read_frames` seek to the keyframe before a
wanted frame and still know exactly which frame each decoded picture is (by its
pts, not by counting after the seek, which would drift).

When a stream has packets without a pts, or with duplicate pts (broken muxers,
raw elementary streams), the index falls back to *sequential* mode: the count
is obtained by decoding the whole stream once (no colour conversion) and frames
are read by decoding from the start and counting.  Slower, still exact.

Rotation
--------
Phone videos store a display matrix (MP4/MOV ``tkhd`` matrix, exported by FFmpeg
as ``DISPLAYMATRIX`` side data and by PyAV >= 14 as ``VideoFrame.rotation``,
the counter-clockwise angle in degrees).  Returned frames are rotated upright
with ``np.rot90(frame, rotation // 90)`` (``np.rot90`` turns an image
counter-clockwise), which is what ``ffmpeg``'s autorotate shows.  Older files
that only carry a ``rotate`` stream tag (clockwise degrees) are honoured too.
Only multiples of 90 degrees are applied; flips in the matrix are ignored.

Colour
------
Frames are converted to RGB24 by libswscale through
``VideoFrame.to_ndarray(format="rgb24")``.  decord (used by mmaction2's
``DecordDecode``) also goes through libswscale, but pixel values can differ by
a unit here and there between FFmpeg builds/converters; everything after
decoding in this package is exact.
"""

from __future__ import annotations

import os
import sys
import stat
import threading
import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, Iterable, Sequence

import numpy as np

__all__ = [
    "VideoError",
    "VideoInfo",
    "probe",
    "read_frames",
    "decode_all",
    "FrameStream",
    "open_stream",
    "is_url",
]


class VideoError(ValueError):
    """A video cannot be used; the message is one line and names the file."""


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` reports about a video file."""

    path: str
    num_frames: int  # exact number of presented frames (indices 0..num_frames-1)
    fps: float  # average frame rate (frames / second)
    width: int  # displayed width, i.e. after rotation
    height: int  # displayed height, i.e. after rotation
    rotation: int  # counter-clockwise degrees applied to frames: 0, 90, 180 or 270
    codec: str  # decoder name, e.g. "h264", "vp9", "mjpeg"
    duration: float  # seconds (from the timestamps; 0.0 if unknown)
    container_frames: int  # the container's own count (0 = not stored); informative only

    @property
    def n(self) -> int:
        return self.num_frames


# --------------------------------------------------------------------------- #
# opening / error mapping
# --------------------------------------------------------------------------- #


def _av():
    try:
        import av  # noqa: PLC0415
    except ImportError as exc:  # pragma: no cover - av is a hard dependency
        raise ImportError("video decoding needs PyAV: pip install av") from exc
    return av


def _check_file(path: str) -> str:
    path = os.fspath(path)
    if not os.path.exists(path):
        raise VideoError(f"video file not found: {path}")
    if os.path.isdir(path):
        raise VideoError(f"expected a video file, got a directory: {path}")
    try:
        mode = os.stat(path).st_mode
        size = os.path.getsize(path)
    except OSError as exc:
        raise VideoError(f"cannot read video file {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(mode):  # opening a FIFO would wait for a writer forever
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
        raise VideoError(f"expected a video file, got {kind}: {path}")
    if size == 0:
        raise VideoError(f"video file is empty (0 bytes): {path}")
    return path


def _one_line(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()
    text = msg[0] if msg else type(exc).__name__
    return text[:200]


def _open(path, threads: bool | str = True, *, format: str | None = None, options: dict | None = None,
          name: str | None = None):
    """Open ``path`` and return ``(container, video_stream)`` or raise VideoError.

    ``threads``: let FFmpeg pick frame/slice threading (faster).  The fallback
    paths decode single-threaded, which copes better with damaged data (a
    frame-threaded decoder can drop the frames in flight around a bad packet).
    A thread type name (``"SLICE"``) selects that one.  ``path`` may also be a
    URL or a binary file-like object (``format``, ``options``: FFmpeg's demuxer
    name and options; ``name``: what error messages call the source).
    """
    av = _av()
    name = name or path
    try:
        container = av.open(path, mode="r", format=format, options=options or {}, metadata_errors="ignore")
    except PermissionError:
        raise VideoError(f"permission denied reading video file: {name}") from None
    except FileNotFoundError:
        raise VideoError(f"video file not found: {name}") from None
    except (av.FFmpegError, UnicodeDecodeError, OSError, ValueError) as exc:
        raise VideoError(
            f"not a readable video file (unknown format, corrupt or truncated): {name} "
            f"[{_one_line(exc)}]"
        ) from None
    try:
        streams = container.streams.video
        if not streams:
            kinds = sorted({s.type for s in container.streams})
            what = f"only {', '.join(kinds)} streams" if kinds else "no streams"
            raise VideoError(f"no video stream in file ({what}): {name}")
        stream = streams[0]
        if stream.codec_context is None:
            codec = _codec_name_for_error(stream)
            raise VideoError(
                f"unsupported or unknown video codec ({codec}; no decoder in this FFmpeg build): {name}"
            )
        if threads:
            try:
                stream.codec_context.thread_type = threads if isinstance(threads, str) else "AUTO"
            except Exception:  # pragma: no cover - best effort
                pass
    except BaseException:
        container.close()
        raise
    return container, stream


def _codec_name_for_error(stream) -> str:
    for attr in ("codec_tag",):
        try:
            value = getattr(stream, attr)
            if value:
                return str(value)
        except Exception:
            pass
    try:
        return str(stream.metadata.get("codec", "unknown"))
    except Exception:  # pragma: no cover
        return "unknown"


def _iter_frames(container, stream, status: dict | None = None):
    """Decode ``stream`` from the current position, robust to a damaged tail.

    Unlike ``container.decode``, a demuxing error (truncated file) ends the
    stream *and flushes the decoder*, so the frames it still holds (B-frame
    reordering delay) are not lost; a packet the decoder rejects is skipped.
    ``status`` (optional) records how reading went: ``"packets"`` (non-empty
    packets demuxed), ``"error"`` (the demuxer's message when it failed),
    ``"corrupt_tail"`` (the last packet was incomplete) and
    ``"decode_errors"`` (packets the decoder rejected).
    """
    av = _av()
    demux = container.demux(stream)
    flushed = False
    last_corrupt = False
    while True:
        try:
            packet = next(demux)
        except StopIteration:
            break
        except av.FFmpegError as exc:
            if status is not None:
                status["error"] = _one_line(exc)
            break
        if packet.size == 0:
            flushed = True
        else:
            last_corrupt = bool(packet.is_corrupt)
            if status is not None:
                status["packets"] = status.get("packets", 0) + 1
        try:
            frames = packet.decode()
        except av.FFmpegError:
            if status is not None:
                status["decode_errors"] = status.get("decode_errors", 0) + 1
            continue
        yield from frames
    if status is not None and last_corrupt:
        status["corrupt_tail"] = True
    if not flushed:
        try:
            frames = stream.decode(None)
        except av.FFmpegError:
            frames = []
        yield from frames


# --------------------------------------------------------------------------- #
# the frame index
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class _Index:
    path: str
    mode: str  # "pts" or "sequential"
    pts: np.ndarray  # (n,) int64, sorted, pts of frame i ("pts" mode); empty otherwise
    keyframes: np.ndarray  # (k,) int64 sorted frame indices of keyframes ("pts" mode)
    num_frames: int
    time_base: Fraction | None
    fps: float
    coded_width: int
    coded_height: int
    rotation: int  # ccw degrees, multiple of 90
    codec: str
    duration: float
    container_frames: int


_CACHE: "OrderedDict[tuple, _Index]" = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 16


def _cache_key(path: str) -> tuple:
    st = os.stat(path)
    return (os.path.realpath(path), st.st_size, st.st_mtime_ns, st.st_ino)


def _get_index(path: str) -> _Index:
    path = _check_file(path)
    key = _cache_key(path)
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            _CACHE.move_to_end(key)
            return hit
    index = _build_index(path)
    with _CACHE_LOCK:
        _CACHE[key] = index
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return index


def _rotation_from_tag(stream) -> int:
    """Legacy ``rotate`` tag: clockwise degrees -> our counter-clockwise degrees."""
    try:
        tag = stream.metadata.get("rotate")
    except Exception:  # pragma: no cover
        tag = None
    if not tag:
        return 0
    try:
        return _norm_rotation(-float(tag))
    except ValueError:
        return 0


def _norm_rotation(deg: float) -> int:
    return int(round(deg / 90.0)) % 4 * 90


def _frame_rotation(frame, tag_rotation: int) -> int:
    try:
        rot = frame.rotation
    except AttributeError:  # pragma: no cover - PyAV < 14
        rot = 0
    if rot:
        return _norm_rotation(rot)
    return tag_rotation


def _build_index(path: str) -> _Index:
    av = _av()
    container, stream = _open(path)
    try:
        tb = stream.time_base
        codec = stream.codec_context.name
        container_frames = int(stream.frames or 0)
        pts_list: list[int] = []
        key_list: list[bool] = []
        corrupt_list: list[bool] = []
        missing_pts = False
        try:
            for packet in container.demux(stream):
                if packet.size == 0:  # the flush packet at EOF
                    continue
                if packet.is_discard:  # outside the edit list: decoded but never shown
                    continue
                if packet.pts is None:
                    missing_pts = True
                    pts_list.append(0)
                else:
                    pts_list.append(int(packet.pts))
                key_list.append(bool(packet.is_keyframe))
                corrupt_list.append(bool(packet.is_corrupt))
        except av.FFmpegError:
            # Truncated/corrupt tail: keep what could be demuxed.
            pass
        # A file cut in the middle of a packet ends with a partial packet
        # flagged corrupt; it does not make a frame.  (Corrupt packets in the
        # middle are kept: decoders usually still output a picture for them.)
        while corrupt_list and corrupt_list[-1]:
            corrupt_list.pop()
            key_list.pop()
            pts_list.pop()
        first, rotation = _first_frame_facts(path)
        if first is None:
            raise VideoError(
                f"no decodable video frames (truncated or corrupt file?): {path}"
            )
        width, height = first
        pts = np.asarray(pts_list, dtype=np.int64)
        keys = np.asarray(key_list, dtype=bool)
        mode = "pts"
        if missing_pts or len(np.unique(pts)) != len(pts):
            mode = "sequential"
        if mode == "pts":
            order = np.argsort(pts, kind="stable")
            pts = pts[order]
            keyframes = np.flatnonzero(keys[order]).astype(np.int64)
            if len(keyframes) == 0 or keyframes[0] != 0:
                # Decoding always starts at the beginning of the file, so frame 0
                # is a valid place to start even if it is not flagged.
                keyframes = np.concatenate([[0], keyframes]).astype(np.int64)
            num_frames = len(pts)
        else:
            num_frames = _count_by_decoding(path)
            pts = np.zeros(0, dtype=np.int64)
            keyframes = np.zeros(1, dtype=np.int64)
        if num_frames == 0:
            raise VideoError(f"no decodable video frames (truncated or corrupt file?): {path}")
        fps = _fps(stream, pts, tb, num_frames)
        duration = _duration(stream, container, pts, tb, num_frames, fps)
        return _Index(
            path=path,
            mode=mode,
            pts=pts,
            keyframes=keyframes,
            num_frames=num_frames,
            time_base=tb,
            fps=fps,
            coded_width=width,
            coded_height=height,
            rotation=rotation,
            codec=codec,
            duration=duration,
            container_frames=container_frames,
        )
    finally:
        container.close()


def _first_frame_facts(path: str) -> tuple[tuple[int, int] | None, int]:
    """Decode the first frame: its (width, height) and rotation, or (None, 0)."""
    container, stream = _open(path)
    tag_rot = _rotation_from_tag(stream)
    try:
        for frame in _iter_frames(container, stream):
            return (frame.width, frame.height), _frame_rotation(frame, tag_rot)
        return None, 0
    finally:
        container.close()


def _count_by_decoding(path: str) -> int:
    container, stream = _open(path, threads=False)
    n = 0
    try:
        for _ in _iter_frames(container, stream):
            n += 1
    finally:
        container.close()
    return n


def _fps(stream, pts: np.ndarray, tb, n: int) -> float:
    for attr in ("average_rate", "guessed_rate", "base_rate"):
        try:
            rate = getattr(stream, attr)
        except Exception:  # pragma: no cover
            rate = None
        if rate:
            # Matroska reports the nominal rate even for variable-rate streams;
            # prefer the measured one when the timestamps disagree clearly.
            if len(pts) > 1 and tb:
                span = float((pts[-1] - pts[0]) * tb)
                if span > 0:
                    measured = (n - 1) / span
                    if abs(measured - float(rate)) / float(rate) > 0.05:
                        return measured
            return float(rate)
    if len(pts) > 1 and tb:
        span = float((pts[-1] - pts[0]) * tb)
        if span > 0:
            return (n - 1) / span
    return 0.0


def _duration(stream, container, pts, tb, n, fps) -> float:
    if len(pts) > 1 and tb and fps > 0:
        return float((pts[-1] - pts[0]) * tb) + 1.0 / fps
    if stream.duration and tb:
        return float(stream.duration * tb)
    if container.duration:
        return container.duration / 1_000_000
    return n / fps if fps > 0 else 0.0


# --------------------------------------------------------------------------- #
# public API
# --------------------------------------------------------------------------- #


def probe(path: str | os.PathLike) -> VideoInfo:
    """Exact frame count, fps, displayed size, rotation and codec of a video.

    Raises :class:`VideoError` (one-line message) for a missing, empty,
    unreadable, truncated (nothing decodable), audio-only or unsupported file.
    """
    index = _get_index(os.fspath(path))
    w, h = index.coded_width, index.coded_height
    if index.rotation in (90, 270):
        w, h = h, w
    return VideoInfo(
        path=index.path,
        num_frames=index.num_frames,
        fps=index.fps,
        width=w,
        height=h,
        rotation=index.rotation,
        codec=index.codec,
        duration=index.duration,
        container_frames=index.container_frames,
    )


FrameFn = Callable[[np.ndarray], np.ndarray]


def read_frames(
    path: str | os.PathLike,
    indices: Iterable[int],
    *,
    frame_fn: FrameFn | None = None,
) -> np.ndarray:
    """Decode the frames at ``indices`` and return them as RGB uint8.

    Returns an array ``(len(indices), H, W, 3)`` in the requested order;
    repeated indices are allowed (short videos loop) and are decoded once.
    Only what the indices need is decoded: the unique indices are visited in
    increasing order, and whenever a keyframe lies between the current decoding
    position and the next wanted frame, the demuxer seeks to that keyframe.
    Frames are upright (rotation metadata applied).

    ``frame_fn`` (optional) maps each upright RGB frame ``(H, W, 3)`` to the
    array that is stored (e.g. a short-side resize); it is applied once per
    unique frame, keeping peak memory at ``len(indices)`` *transformed* frames.
    All outputs of ``frame_fn`` must have the same shape and dtype.
    """
    path = os.fspath(path)
    idx_list = [int(i) for i in indices]
    index = _get_index(path)
    n = index.num_frames
    if not idx_list:
        raise VideoError(f"no frame indices requested: {path}")
    bad = [i for i in idx_list if i < 0 or i >= n]
    if bad:
        raise VideoError(
            f"frame index {bad[0]} out of range: video has {n} frames (valid 0..{n - 1}): {path}"
        )
    positions: dict[int, list[int]] = {}
    for pos, i in enumerate(idx_list):
        positions.setdefault(i, []).append(pos)
    wanted = sorted(positions)
    sink = _Sink(len(idx_list), positions, frame_fn, path)

    if index.mode == "pts":
        _read_by_pts(index, wanted, sink)
    missing = [i for i in wanted if i not in sink.done]
    if missing:
        # Sequential mode, or a seek/decoder that did not deliver: decode from
        # the start (exact for both pts and counting identification).
        _read_sequential(index, missing, sink)
        missing = [i for i in wanted if i not in sink.done]
    if missing:
        if not sink.done:
            raise VideoError(f"no decodable video frames (truncated or corrupt file?): {path}")
        warnings.warn(
            f"{len(missing)} frame(s) of {path} could not be decoded "
            f"(first: {missing[0]}); using the nearest decoded frame instead",
            RuntimeWarning,
            stacklevel=2,
        )
        sink.fill_missing(missing)
    return sink.out


def decode_all(
    path: str | os.PathLike,
    *,
    frame_fn: FrameFn | None = None,
    max_bytes: int = 2 << 30,
) -> np.ndarray:
    """Every frame of a (short) video as ``(n, H, W, 3)`` RGB uint8, upright.

    Refuses (VideoError) when the result would exceed ``max_bytes``; use
    :func:`read_frames` with the indices you need for long videos.
    """
    info = probe(path)
    if frame_fn is None:
        size = info.num_frames * info.width * info.height * 3
        if size > max_bytes:
            raise VideoError(
                f"decoding all {info.num_frames} frames of {info.width}x{info.height} needs "
                f"{size / 2**30:.1f} GiB (> max_bytes); use read_frames with the indices "
                f"you need: {info.path}"
            )
    return read_frames(path, range(info.num_frames), frame_fn=frame_fn)


# --------------------------------------------------------------------------- #
# decoding internals
# --------------------------------------------------------------------------- #


class _Sink:
    """Writes each wanted frame straight into its output slot(s)."""

    def __init__(self, total: int, positions: dict[int, list[int]], frame_fn, path: str):
        self.total = total
        self.positions = positions
        self.frame_fn = frame_fn
        self.path = path
        self.out: np.ndarray | None = None
        self.done: set[int] = set()

    def wants(self, i: int) -> bool:
        return i in self.positions and i not in self.done

    def put(self, i: int, frame, tag_rotation: int) -> None:
        rgb = frame.to_ndarray(format="rgb24")
        rot = _frame_rotation(frame, tag_rotation)
        if rot:
            rgb = np.ascontiguousarray(np.rot90(rgb, rot // 90))
        if self.frame_fn is not None:
            rgb = np.asarray(self.frame_fn(rgb))
        if self.out is None:
            self.out = np.empty((self.total,) + rgb.shape, dtype=rgb.dtype)
        elif rgb.shape != self.out.shape[1:]:
            raise VideoError(
                f"frame size changes inside the video ({self.out.shape[1:3]} -> "
                f"{rgb.shape[:2]} at frame {i}); not supported: {self.path}"
            )
        for pos in self.positions[i]:
            self.out[pos] = rgb
        self.done.add(i)

    def fill_missing(self, missing: Sequence[int]) -> None:
        have = np.array(sorted(self.done))
        for i in missing:
            j = int(np.searchsorted(have, i, side="right")) - 1
            src = int(have[max(j, 0)])
            src_pos = self.positions[src][0]
            for pos in self.positions[i]:
                self.out[pos] = self.out[src_pos]
            self.done.add(i)


def _read_by_pts(index: _Index, wanted: list[int], sink: _Sink) -> None:
    av = _av()
    container, stream = _open(index.path)
    tag_rot = _rotation_from_tag(stream)
    pts_arr = index.pts
    keyframes = index.keyframes
    n = index.num_frames

    def position(frame) -> int | None:
        if frame.pts is None:
            return None
        j = int(np.searchsorted(pts_arr, frame.pts))
        if j < n and pts_arr[j] == frame.pts:
            return j
        return None

    try:
        frames = None  # the current decode iterator
        cur = -1  # index of the last frame seen from the decoder
        w = 0
        while w < len(wanted):
            target = wanted[w]
            if not sink.wants(target):
                w += 1
                continue
            k = int(keyframes[int(np.searchsorted(keyframes, target, side="right")) - 1])
            if frames is None or k > cur + 1:
                if k == 0 and frames is None:
                    pass  # start at the beginning; no seek needed
                else:
                    try:
                        container.seek(int(pts_arr[k]), stream=stream, backward=True, any_frame=False)
                    except av.FFmpegError:
                        return  # caller falls back to sequential decoding
                frames = _iter_frames(container, stream)
                cur = -1
                seek_check = True
            else:
                seek_check = False
            reached = False
            for frame in frames:
                i = position(frame)
                if i is None:
                    continue
                if seek_check:
                    seek_check = False
                    if i > target:
                        # The seek overshot (bad index): give up on seeking.
                        return
                cur = i
                if sink.wants(i):
                    sink.put(i, frame, tag_rot)
                if i >= target:
                    reached = True
                    break
            if not reached:
                return  # EOF before the target; fall back
            w += 1
    finally:
        container.close()


def _read_sequential(index: _Index, wanted: list[int], sink: _Sink) -> None:
    """Decode from the start; identify frames by pts when possible, else by count."""
    container, stream = _open(index.path, threads=False)
    tag_rot = _rotation_from_tag(stream)
    last = max(wanted)
    use_pts = index.mode == "pts"
    pts_arr = index.pts
    n = index.num_frames
    i = -1
    try:
        for frame in _iter_frames(container, stream):
            if use_pts and frame.pts is not None:
                j = int(np.searchsorted(pts_arr, frame.pts))
                if not (j < n and pts_arr[j] == frame.pts):
                    continue  # not a presented frame of the index
                i = j
            else:
                # No timestamps: frames come out in presentation order, count them.
                i += 1
                if i >= n:
                    break
            if sink.wants(i):
                sink.put(i, frame, tag_rot)
            if i >= last:
                break
    finally:
        container.close()


# --------------------------------------------------------------------------- #
# streaming: front to back, each frame decoded once
# --------------------------------------------------------------------------- #

# How much of a live stream FFmpeg reads before it says what the stream holds: 1 s instead of its default
# 5 s, so that the first results of a live source are not 5 s late (it still finds the frame rate).
LIVE_ANALYZE_US = 1_000_000
MPEGTS_PACKET_BYTES = 188
_MP4_FORMATS = ("mov", "mp4")


def is_url(source) -> bool:
    """True for a string FFmpeg opens as a network stream (``udp://``, ``rtsp://``, ``http://``, ...)."""
    return isinstance(source, str) and "://" in source and not source.startswith("file://")


class _PipeReader:
    """A non-seekable binary stream for PyAV, read as data arrives (a partial read is not the end, unlike
    ``sys.stdin.buffer.read(n)``, which waits for all n bytes and so would hold a live stream back);
    counts the bytes it read. On a file descriptor, a set ``stop`` event ends the stream even while no data
    comes (checked every 0.2 s)."""

    def __init__(self, raw, stop=None):
        self.raw = raw
        self.stop = stop
        self.bytes_read = 0

    def read(self, n):
        if isinstance(self.raw, int):
            if self.stop is not None:
                import select

                while not select.select([self.raw], [], [], 0.2)[0]:
                    if self.stop.is_set():
                        return b""
            data = os.read(self.raw, n)
        else:
            read = getattr(self.raw, "read1", None) or self.raw.read
            data = read(n)
        self.bytes_read += len(data)
        return data


class FrameStream:
    """The frames of a video file, a stream on stdin, a file-like object or a URL, decoded once, front to
    back, in presentation order.

    Iterating yields each frame as an upright RGB uint8 array (rotation metadata applied), passed through
    ``frame_fn`` when given (e.g. a short-side resize, so that a large frame is never kept). Frame ``i``
    is at ``i / fps`` seconds: times come from the frame count, not the timestamps (a live MPEG-TS stream
    starts at an arbitrary timestamp; a variable-frame-rate file is treated as constant-rate).

    When iteration ends, :attr:`stopped` says why if the stream ended before its end: a read error (a
    network stream that timed out, a damaged file), an incomplete last packet, an MPEG-TS stream cut
    inside a 188-byte packet, or an MP4/MOV file with fewer packets than its index announces; ``None`` for
    a stream that ended normally. A frame size change also stops the stream (windows need one size).

    ``source``: a path; ``"-"`` (standard input, which must be a streamable format such as MPEG-TS or
    Matroska); a URL (read with a ``timeout_s`` on every read); a binary file-like object (seekable
    ones, e.g. an uploaded file, are read like files). ``format``: FFmpeg's demuxer name when it cannot
    be guessed; ``fps``: the frame rate when the stream does not tell; ``stop``: a ``threading.Event``
    that ends the stream early when set (between frames, and while standard input is silent).
    """

    def __init__(self, source, *, frame_fn: FrameFn | None = None, format: str | None = None,
                 fps: float | None = None, timeout_s: float = 10.0, stop: threading.Event | None = None):
        self.frame_fn = frame_fn
        self.stop = stop
        self.reader = None
        self._size_on_disk = None
        options = {}
        if isinstance(source, (str, os.PathLike)) and os.fspath(source) == "-":
            self.name, self.live = "<stdin>", True
            self.reader = _PipeReader(sys.stdin.buffer.fileno(), stop)
            target = self.reader
        elif is_url(source):
            self.name, self.live = source, True
            options["rw_timeout"] = str(int(timeout_s * 1_000_000))
            target = source
        elif hasattr(source, "read"):
            self.name = getattr(source, "name", None) or "<file object>"
            if not isinstance(self.name, str):
                self.name = "<file object>"
            seekable = getattr(source, "seekable", lambda: False)()
            self.live = not seekable
            target = source if seekable else _PipeReader(source)
            self.reader = None if seekable else target
        else:
            target = self.name = _check_file(os.fspath(source))
            self.live = False
            self._size_on_disk = os.path.getsize(target)
        if self.live:
            options["analyzeduration"] = str(LIVE_ANALYZE_US)
        # Frame threading holds several frames back in the decoder: fine for files, latency for live sources.
        self.container, self.stream = _open(target, "SLICE" if self.live else True, format=format,
                                            options=options, name=self.name)
        self.format = self.container.format.name
        self.codec = self.stream.codec_context.name
        self.fps = float(fps) if fps else _fps(self.stream, np.zeros(0, np.int64), self.stream.time_base, 0)
        if not self.fps > 0:
            self.close()
            raise VideoError(f"the frame rate of {self.name} is unknown; give it (fps=... / --fps)")
        family = self.format.split(",")
        self.expected_frames = 0 if self.live or not any(f in _MP4_FORMATS for f in family) else int(self.stream.frames or 0)
        self.frames = 0  # frames decoded so far
        self.width = self.height = None  # displayed size of the first frame (after rotation)
        self.stopped: str | None = None
        self.decode_s = 0.0  # wall time in the decoder and the colour conversion
        self.frame_fn_s = 0.0  # wall time in frame_fn
        self._status: dict = {}
        self._iterating = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        container, self.container = getattr(self, "container", None), None
        if container is not None:
            container.close()

    @property
    def expected_duration_s(self) -> float:
        """What the container says the video lasts (0.0 for a live source or when it does not say)."""
        if self.live:
            return 0.0
        if self.expected_frames:
            return self.expected_frames / self.fps
        stream, container = self.stream, self.container
        if stream is not None and stream.duration and stream.time_base:
            return float(stream.duration * stream.time_base)
        if container is not None and container.duration:
            return container.duration / 1_000_000
        return 0.0

    @property
    def duration_s(self) -> float:
        """Seconds decoded so far (all of the stream once iteration has ended)."""
        return self.frames / self.fps

    def __iter__(self):
        if self._iterating or self.container is None:
            raise RuntimeError("a FrameStream is read once")
        self._iterating = True
        try:
            yield from self._frames()
        finally:
            self.close()

    def _frames(self):
        tag_rotation = _rotation_from_tag(self.stream)
        decoded = _iter_frames(self.container, self.stream, self._status)
        size = None
        while self.stop is None or not self.stop.is_set():
            start = time.perf_counter()
            frame = next(decoded, None)
            if frame is None:
                self.decode_s += time.perf_counter() - start
                break
            if size is None:
                size = (frame.width, frame.height)
            elif (frame.width, frame.height) != size:
                self.decode_s += time.perf_counter() - start
                self.stopped = (f"the frame size changes from {size[0]}x{size[1]} to {frame.width}x{frame.height} "
                                f"at frame {self.frames}, which windows cannot span")
                return
            rgb = frame.to_ndarray(format="rgb24")
            rotation = _frame_rotation(frame, tag_rotation)
            if rotation:
                rgb = np.ascontiguousarray(np.rot90(rgb, rotation // 90))
            if self.width is None:
                self.height, self.width = rgb.shape[:2]
            mid = time.perf_counter()
            self.decode_s += mid - start
            if self.frame_fn is not None:
                rgb = self.frame_fn(rgb)
                self.frame_fn_s += time.perf_counter() - mid
            self.frames += 1
            yield rgb
        if self.stop is not None and self.stop.is_set():
            return  # the caller asked: not a stop of the stream's own
        self.stopped = self._stop_reason()

    def _stop_reason(self) -> str | None:
        status = self._status
        if status.get("error"):
            return f"reading failed: {status['error']}"
        if status.get("corrupt_tail"):
            return "its last packet is incomplete"
        if self.format == "mpegts":
            size = self.reader.bytes_read if self.reader is not None else self._size_on_disk
            if size and size % MPEGTS_PACKET_BYTES:
                return f"it is cut inside an MPEG-TS packet ({size} bytes, not a multiple of {MPEGTS_PACKET_BYTES})"
        packets = status.get("packets", 0)
        if self.expected_frames and packets < self.expected_frames:
            return f"it holds {packets} of the {self.expected_frames} frames its index announces"
        return None


def open_stream(source, **kwargs) -> FrameStream:
    """:class:`FrameStream` over ``source`` (see there)."""
    return FrameStream(source, **kwargs)
