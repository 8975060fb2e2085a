"""Long videos: what happens when. Windows over the video, scored as it is decoded, merged into segments.

Windows
-------
A window is the preset's clip: ``clip_len`` frames taken every ``frame_interval`` frames, so it spans
``span = clip_len * frame_interval`` frames. Window ``k`` starts at frame ``s_k = k * stride`` (``stride``:
``stride_s`` seconds rounded to whole frames, at least 1; default half a clip, ``span // 2``) and samples
frames ``s_k, s_k + frame_interval, ..., s_k + (clip_len - 1) * frame_interval``. Frame ``i`` is shown over
``[i / fps, (i + 1) / fps)``, so window ``k`` covers

    ``start_s = s_k / fps``, ``end_s = (s_k + span) / fps``, ``center_s = (start_s + end_s) / 2``.

Every window whose frames all exist is scored. When the last of them ends before the video does, one more
window ends on the last frame (starts at ``n - span``), so the end of the video is scored too. A video
shorter than one window gets one window of the whole video, its frames looped as the test protocol loops
them (:func:`video_swin.data.sampling.center_clip_indices`), covering ``[0, n / fps]``.

A window's views are exactly :meth:`Protocol.views_from_frames` of its sampled frames (one clip; the
centre crop with ``views="1x1"``, three crops with ``"1x3"``), which for the dense sampling of the Kinetics
protocols is what :meth:`Protocol.views_for_video` gives for the window's ``span`` frames; its class
probabilities are the softmax of each view's logits averaged over the views, as
:class:`~video_swin.inference.classify.VideoClassifier` averages them. (A preset with SSv2's uniform sampling,
which spreads one clip over a whole short video, gets the same dense windows: ``clip_len`` frames every
``frame_interval``-th.)

Decoding and memory
-------------------
The video is decoded once, front to back (:class:`~video_swin.data.video.FrameStream`). Each frame is
resized to the protocol's short side as soon as it is decoded, and only the last ``span`` resized frames
are kept (what the windows still to come can need, the final window included), so memory does not grow
with the video's length or resolution.

Segments
--------
Optionally smoothed first (``smooth = K``, odd: each window's probabilities replaced by the mean over the
``K`` windows centred on it, fewer at the ends), each window's top label is taken and consecutive windows
with the same top label form a segment. Boundaries lie midway between the centres of the last window of
one segment and the first of the next; the first segment starts at 0 and the last ends at the video's
end (``n / fps``). A segment's score is the mean, over its windows, of the (unsmoothed) probability of its
label; segments below ``min_score`` are dropped (nothing takes their place). ``DEFAULT_SMOOTH`` and
``DEFAULT_MIN_SCORE`` (5 windows, 0.4) were chosen on twelve 4-minute synthetic long videos (seeds
101-112: mean F1 0.966 at temporal IoU 0.5), never on the tests' seeds.

Output formats
--------------
* one record per window (``--jsonl``): ``{"video", "window", "start_s", "end_s", "center_s", "top_k":
  [{"label", "score"}]}`` and, when following a live source, ``"latency_s"``;
* segments in ActivityNet's results format (:func:`activitynet_results`): ``{"version": "VERSION 1.3",
  "results": {"<video>": [{"label", "score", "segment": [start_s, end_s]}]}, "external_data": {...}}``.

Latency (live sources)
----------------------
``latency_s`` of a window = the wall-clock time its scores were ready minus the time its last sampled frame
was due in the stream, ``t0 + last_frame / fps``. ``t0``, the wall-clock time the stream started, is
estimated from the frames decoded so far as the smallest ``t_i - i / fps`` (``t_i``: the time frame ``i``
came out of the decoder): a live source delivers frames no faster than real time, so a frame that arrives
late reveals an earlier start. So latency is how far behind the stream a result comes: decoding,
preprocessing and the model, and any backlog (frames that waited in a pipe while the model loaded count as
lag as soon as frames arriving in real time show it). It is never negative.

XLA
---
A long video is many windows of one shape, so the model runs compiled by XLA (the models' own
``predict_on_batch`` path; a partial last batch is padded to the full batch, so one shape is compiled once
per model): the compile (seconds for Swin-T) is paid once and then amortised over hundreds of windows, where
:class:`VideoClassifier` turns XLA off because for one file of 12 views the compile costs more than it
saves. ``jit_compile="auto"`` uses XLA for live sources and for files of at least ``XLA_MIN_WINDOWS``
windows, the plain TensorFlow graph below that, and for clips smaller than ``XLA_MIN_CLIP_PIXELS`` (the
synthetic-motion model's 16x64x64: a forward pass of milliseconds, where XLA was no faster per batch and
its compile takes seconds).
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from video_swin.data.preprocess import Protocol, parse_views, resize_short_side
from video_swin.data.sampling import center_clip_indices
from video_swin.data.video import VideoError, open_stream

DEFAULT_SMOOTH = 5
DEFAULT_MIN_SCORE = 0.4
DEFAULT_BATCH = 4
XLA_MIN_WINDOWS = 32
XLA_MIN_CLIP_PIXELS = 16 * 112 * 112
ACTIVITYNET_VERSION = "VERSION 1.3"
INTERRUPTED = "interrupted (Ctrl-C)"
TIME_DECIMALS = 3


class StreamStopped(VideoError):
    """The video stopped before its end. ``partial`` holds the result for what was decoded (a dict as
    :func:`timeline` returns, or as :func:`extract_features` returns), ``at_s`` where it stopped."""

    def __init__(self, message, partial=None, at_s=None):
        super().__init__(message)
        self.partial = partial
        self.at_s = at_s


# --------------------------------------------------------------------------------------------- windows


@dataclass(frozen=True)
class WindowPlan:
    """Where windows lie in a video of a given frame rate (see the module docstring)."""

    clip_len: int
    frame_interval: int
    stride: int  # frames between window starts
    fps: float

    @classmethod
    def for_protocol(cls, protocol: Protocol, fps: float, stride_s: float | None = None) -> "WindowPlan":
        span = protocol.clip_len * protocol.frame_interval
        if stride_s is None:
            stride = max(1, span // 2)
        else:
            if not stride_s > 0 or not math.isfinite(stride_s):
                raise ValueError(f"the stride must be a positive number of seconds, got {stride_s}")
            stride = max(1, int(round(stride_s * fps)))
        return cls(protocol.clip_len, protocol.frame_interval, stride, float(fps))

    @property
    def span(self) -> int:
        return self.clip_len * self.frame_interval

    @property
    def stride_s(self) -> float:
        return self.stride / self.fps

    @property
    def span_s(self) -> float:
        return self.span / self.fps

    def count(self, num_frames: int) -> int:
        """How many windows a video of ``num_frames`` frames gets."""
        if num_frames <= 0:
            return 0
        if num_frames < self.span:
            return 1
        regular = (num_frames - self.span) // self.stride + 1
        return regular + ((regular - 1) * self.stride + self.span < num_frames)


@dataclass(frozen=True)
class Window:
    index: int
    start_frame: int
    frames: tuple  # the sampled frame indices
    start_s: float
    end_s: float

    @property
    def center_s(self) -> float:
        return (self.start_s + self.end_s) / 2

    def record(self) -> dict:
        return {
            "window": self.index,
            "start_s": round(self.start_s, TIME_DECIMALS),
            "end_s": round(self.end_s, TIME_DECIMALS),
            "center_s": round(self.center_s, TIME_DECIMALS),
        }


def iter_windows(frames, plan: WindowPlan):
    """``(Window, sampled frames (clip_len, H, W, 3))`` for each window, as soon as its last frame is in.

    ``frames`` is any iterable of frames in order; at most ``plan.span`` of them are held at any time.
    """
    span, stride, fps = plan.span, plan.stride, plan.fps
    held = deque(maxlen=span)
    n = 0  # frames seen
    k = 0  # next window index
    next_start = 0
    last_end = 0  # end frame (exclusive) of the last window yielded

    def make(start, indices, end_frame):
        first_held = n - len(held)
        sampled = np.stack([held[i - first_held] for i in indices])
        return Window(k, start, tuple(indices), start / fps, end_frame / fps), sampled

    for frame in frames:
        held.append(frame)
        n += 1
        if next_start + span == n:
            yield make(next_start, range(next_start, n, plan.frame_interval), n)
            k, last_end = k + 1, n
            next_start += stride
    if n == 0:
        return
    if n < span:
        yield make(0, center_clip_indices(n, plan.clip_len, plan.frame_interval), n)
    elif last_end < n:
        yield make(n - span, range(n - span, n, plan.frame_interval), n)


# ---------------------------------------------------------------------------------------- running


@dataclass
class _Run:
    """What a run over one video produced: window records, per-window model outputs, stream facts."""

    name: str
    fps: float
    frames: int
    live: bool
    plan: WindowPlan
    windows: list
    outputs: list
    stopped: str | None
    timings: dict

    @property
    def duration_s(self) -> float:
        return self.frames / self.fps


class _WindowRunner:
    """Decodes a video once and feeds its windows' views, in batches, to ``predict``.

    ``predict(views)`` takes ``(B * V, T, C, C, 3)`` float32 views and returns one row per view; the rows
    of a window's ``V`` views are combined by ``combine(rows) -> output``.
    """

    def __init__(self, protocol: Protocol, model, batch_size: int, jit_compile="auto"):
        if int(batch_size) < 1:
            raise ValueError(f"batch size must be at least 1 window, got {batch_size}")
        if jit_compile not in ("auto", True, False):
            raise ValueError(f"jit_compile must be 'auto', True or False, got {jit_compile!r}")
        self.protocol = protocol
        self.model = model
        self.batch_size = int(batch_size)
        self.jit_compile = jit_compile

    def _uses_xla(self, stream, plan) -> bool:
        if self.jit_compile != "auto":
            return bool(self.jit_compile)
        if not self.model.xla_pays_for_inference():
            return False
        p = self.protocol
        if p.clip_len * p.crop_size**2 < XLA_MIN_CLIP_PIXELS:
            return False
        if stream.live:
            return True
        return plan.count(int(round(stream.expected_duration_s * stream.fps))) >= XLA_MIN_WINDOWS

    def predict(self, views, use_xla):
        self.model.inference_jit_compile = bool(use_xla)
        return np.asarray(self.model.predict_on_batch(views))

    def run(self, video, combine, *, stride_s=None, fps=None, format=None, follow=False, on_window=None,
            timeout_s=10.0, keep_outputs=True, interruptible=False) -> _Run:
        protocol = self.protocol
        size = protocol.short_side
        started = time.perf_counter()
        stop = threading.Event()  # set by Ctrl-C when interruptible: the stream ends there
        stream = open_stream(video, frame_fn=lambda frame: resize_short_side(frame, size), format=format,
                             fps=fps, timeout_s=timeout_s, stop=stop)
        plan = WindowPlan.for_protocol(protocol, stream.fps, stride_s)
        use_xla = self._uses_xla(stream, plan)
        # Following a live source, each window is scored as soon as it is complete: no wait for a batch.
        batch_size = 1 if follow else self.batch_size
        windows, outputs, pending = [], [], []
        timings = {"decode_s": 0.0, "preprocess_s": 0.0, "model_s": 0.0}
        stream_start = math.inf  # wall-clock estimate of the stream's start (see "Latency")
        views_per_window = protocol.num_views

        def frames():
            nonlocal stream_start
            for i, frame in enumerate(stream):
                stream_start = min(stream_start, time.perf_counter() - i / plan.fps)
                yield frame

        def flush():
            batch = np.concatenate([v for _, v in pending])
            real = len(batch)
            if use_xla and len(pending) < batch_size:  # one input shape for XLA: pad the last batch
                pad = np.repeat(batch[-views_per_window:], batch_size - len(pending), axis=0)
                batch = np.concatenate([batch, pad])
            t = time.perf_counter()
            rows = self.predict(batch, use_xla)[:real]
            done = time.perf_counter()
            timings["model_s"] += done - t
            timings.setdefault("model_first_call_s", done - t)  # traces (and compiles, with XLA) the model
            for j, (window, _) in enumerate(pending):
                output = combine(rows[j * views_per_window : (j + 1) * views_per_window])
                record = window.record()
                if follow:
                    due = stream_start + max(window.frames) / plan.fps
                    record["latency_s"] = round(done - due, TIME_DECIMALS)
                windows.append(record)
                if keep_outputs:
                    outputs.append(output)
                if on_window is not None:
                    on_window(record, output)
            pending.clear()

        try:
            with _stop_on_ctrl_c(stop, interruptible):
                for window, sampled in iter_windows(frames(), plan):
                    t = time.perf_counter()
                    pending.append((window, protocol.views_from_frames(sampled)))
                    timings["preprocess_s"] += time.perf_counter() - t
                    if len(pending) >= batch_size:
                        flush()
                if pending:
                    flush()
        finally:
            stream.close()
        interrupted = stop.is_set()
        if stream.frames == 0 and not interrupted and not stream.stopped:
            raise VideoError(f"no decodable video frames: {stream.name}")
        timings["decode_s"] = stream.decode_s
        timings["preprocess_s"] += stream.frame_fn_s
        timings["total_s"] = time.perf_counter() - started
        timings["frames_decoded"] = stream.frames
        timings["windows"] = len(windows)
        timings["xla"] = bool(use_xla)
        return _Run(stream.name, plan.fps, stream.frames, stream.live, plan, windows, outputs,
                    INTERRUPTED if interrupted else stream.stopped, timings)


@contextlib.contextmanager
def _stop_on_ctrl_c(stop: threading.Event, enabled: bool):
    """While the block runs, a first Ctrl-C (SIGINT) sets ``stop`` (the stream then ends, as at its end)
    instead of raising KeyboardInterrupt, which PyAV's read callback swallows while it waits for data (a live
    stream on stdin went on to its end after a Ctrl-C); a second Ctrl-C raises as usual. Main thread only."""
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _window_views(views: str) -> str:
    clips, crops = parse_views(views)
    if clips != 1:
        raise ValueError(f"a window is one clip: views must be 1x1 (centre crop) or 1x3 (three crops), got {views!r}")
    return f"1x{crops}"


def _stopped_message(run: _Run) -> str:
    return stopped_message(run.name, run.frames, run.fps, len(run.windows), run.stopped)


def stopped_message(name, frames: int, fps: float, windows: int, reason: str) -> str:
    """The one line for a video that ended before its end: where, and why."""
    where = f"after frame {frames - 1}" if frames else "before its first frame"
    return f"{name} stopped at {frames / fps:.2f} s ({where}, {windows} window(s) scored): {reason}"


def video_id_of(video, given=None) -> str:
    """The key of a video in the results: ``given``, else a file's stem, else ``"stdin"`` / the URL."""
    if given:
        return str(given)
    if isinstance(video, str) and video == "-":
        return "stdin"
    if isinstance(video, str) and "://" in video:
        return video
    name = getattr(video, "name", video)
    if isinstance(name, (str, Path)) and str(name):
        return Path(name).stem
    return "video"


# -------------------------------------------------------------------------------------- segments


def smooth_probabilities(probabilities: np.ndarray, smooth: int) -> np.ndarray:
    """Each row replaced by the mean of the ``smooth`` rows centred on it (fewer at the ends)."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    smooth = int(smooth)
    if smooth < 1 or smooth % 2 == 0:
        raise ValueError(f"smoothing takes an odd number of windows (1 = none), got {smooth}")
    if smooth == 1 or len(probabilities) < 2:
        return probabilities
    half = smooth // 2
    cumulative = np.concatenate([np.zeros((1,) + probabilities.shape[1:]), np.cumsum(probabilities, axis=0)])
    n = len(probabilities)
    lo = np.clip(np.arange(n) - half, 0, n)
    hi = np.clip(np.arange(n) + half + 1, 0, n)
    return (cumulative[hi] - cumulative[lo]) / (hi - lo)[:, None]


def segments_from_windows(centers_s, probabilities, duration_s: float, class_names, smooth: int = DEFAULT_SMOOTH,
                          min_score: float = DEFAULT_MIN_SCORE) -> list[dict]:
    """Segments ``[{"label", "score", "segment": [start_s, end_s]}]`` from per-window probabilities
    (rules in the module docstring), in time order."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    centers = np.asarray(centers_s, dtype=np.float64)
    if len(centers) == 0:
        return []
    if probabilities.shape != (len(centers), len(class_names)):
        raise ValueError(f"probabilities of shape {probabilities.shape} for {len(centers)} windows and "
                         f"{len(class_names)} classes")
    top = np.argmax(smooth_probabilities(probabilities, smooth), axis=1)
    edges = np.concatenate([[0.0], (centers[1:] + centers[:-1]) / 2, [float(duration_s)]])
    change = np.flatnonzero(top[1:] != top[:-1]) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [len(top)]])
    segments = []
    for a, b in zip(starts, ends):
        label = int(top[a])
        score = float(probabilities[a:b, label].mean())
        if score < min_score:
            continue
        segments.append({
            "label": class_names[label],
            "score": round(score, 4),
            "segment": [round(float(edges[a]), TIME_DECIMALS), round(float(edges[b]), TIME_DECIMALS)],
        })
    return segments


def temporal_iou(a, b) -> float:
    """Intersection over union of two time intervals ``[start, end]``."""
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union > 0 else 0.0


def match_segments(predicted, truth, tiou: float = 0.5) -> dict:
    """Detection matching as ActivityNet's evaluation does it at one threshold: predictions in order of
    decreasing score each take the unmatched ground-truth segment of the same label with the highest
    temporal IoU, if that IoU is at least ``tiou``; each ground-truth segment is matched at most once.

    ``predicted``: ``[{"label", "score", "segment"}]``; ``truth``: ``[{"label", "segment"}]``. Returns
    ``{"true_positives", "false_positives", "false_negatives", "precision", "recall", "f1", "matches":
    [(predicted index, truth index, iou)]}``.
    """
    order = sorted(range(len(predicted)), key=lambda i: -float(predicted[i].get("score", 1.0)))
    taken = set()
    matches = []
    for i in order:
        best, best_iou = None, tiou
        for j, gt in enumerate(truth):
            if j in taken or gt["label"] != predicted[i]["label"]:
                continue
            iou = temporal_iou(predicted[i]["segment"], gt["segment"])
            if iou >= best_iou:
                best, best_iou = j, iou
        if best is not None:
            taken.add(best)
            matches.append((i, best, best_iou))
    tp = len(matches)
    precision = tp / len(predicted) if predicted else 0.0
    recall = tp / len(truth) if truth else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"true_positives": tp, "false_positives": len(predicted) - tp, "false_negatives": len(truth) - tp,
            "precision": precision, "recall": recall, "f1": f1, "matches": matches}


def activitynet_results(results, **details) -> dict:
    """ActivityNet's results format for one :func:`timeline` result or a list of them."""
    if isinstance(results, dict):
        results = [results]
    return {
        "version": ACTIVITYNET_VERSION,
        "results": {r["video"]: r["segments"] for r in results},
        "external_data": {"used": False, "details": "video_swin timeline"},
        "video_swin": [{k: r[k] for k in ("video", "preset", "views", "window_s", "stride_s", "smooth", "min_score",
                                          "duration_s", "stopped") if k in r} | details for r in results],
    }


def window_lines(result) -> list[str]:
    """The JSON line of each window of a :func:`timeline` result."""
    return [json.dumps({"video": result["video"], **w}) for w in result["windows"]]


# -------------------------------------------------------------------------------------- the model


class TimelineModel:
    """A preset's classifier and test protocol, loaded once, to make timelines of many videos.

    ``views``: ``"1x1"`` (centre crop) or ``"1x3"`` (three crops) per window; ``batch_size``: windows per
    model call (each of ``views`` clips); ``jit_compile``: ``"auto"``, True or False (module docstring).
    """

    def __init__(self, preset, views: str = "1x1", batch_size: int = DEFAULT_BATCH, jit_compile="auto",
                 precision: str = "float32"):
        from video_swin.inference.classify import VideoClassifier

        classifier = VideoClassifier(preset, views=_window_views(views), precision=precision)
        self.precision, self.precision_notice = classifier.precision, classifier.precision_notice
        self.preset = classifier.preset
        self.protocol = classifier.protocol
        self.class_names = classifier.class_names
        self.model = classifier.model
        self.runner = _WindowRunner(self.protocol, self.model, batch_size, jit_compile)

    def __call__(self, video, **kwargs) -> dict:
        return self.timeline(video, **kwargs)

    def timeline(self, video, *, stride_s: float | None = None, top_k: int = 5, smooth: int = DEFAULT_SMOOTH,
                 min_score: float = DEFAULT_MIN_SCORE, video_id: str | None = None, fps: float | None = None,
                 format: str | None = None, follow: bool = False, on_window=None, timeout_s: float = 10.0,
                 interruptible: bool = False) -> dict:
        """See :func:`timeline`. ``interruptible`` (main thread only): a first Ctrl-C ends the video as a stop
        (``StreamStopped`` with the windows so far, reason :data:`INTERRUPTED`) instead of raising
        ``KeyboardInterrupt``; a second one raises."""
        from video_swin.inference.classify import softmax

        smooth_probabilities(np.zeros((1, 1)), smooth)  # checks smooth before a long run
        if int(top_k) < 1:
            raise ValueError(f"top-k must be at least 1, got {top_k}")
        top_k = min(int(top_k), len(self.class_names))
        vid = video_id_of(video, video_id)
        names = self.class_names

        def combine(logits):
            return softmax(logits).mean(axis=0)

        def emit(record, probabilities):
            order = np.argsort(-probabilities, kind="stable")[:top_k]
            record["top_k"] = [{"label": names[i], "score": round(float(probabilities[i]), 4)} for i in order]
            if on_window is not None:
                on_window({"video": vid, **record})

        run = self.runner.run(video, combine, stride_s=stride_s, fps=fps, format=format, follow=follow,
                              on_window=emit, timeout_s=timeout_s, interruptible=interruptible)
        probabilities = np.asarray(run.outputs, dtype=np.float32).reshape(len(run.outputs), len(names))
        centers = [w["center_s"] for w in run.windows]
        result = {
            "video": vid,
            "source": run.name,
            "preset": str(self.preset.path),
            "views": self.protocol.views,
            "fps": run.fps,
            "frames": run.frames,
            "duration_s": round(run.duration_s, TIME_DECIMALS),
            "window_s": round(run.plan.span_s, TIME_DECIMALS),
            "stride_s": round(run.plan.stride_s, TIME_DECIMALS),
            "smooth": int(smooth),
            "min_score": float(min_score),
            "class_names": list(names),
            "windows": run.windows,
            "probabilities": probabilities,
            "segments": segments_from_windows(centers, probabilities, run.duration_s, names, smooth, min_score),
            "stopped": None,
            "timings": run.timings,
        }
        if run.stopped:
            message = _stopped_message(run)
            result["stopped"] = {"at_s": round(run.duration_s, TIME_DECIMALS), "frame": run.frames, "reason": run.stopped}
            raise StreamStopped(message, partial=result, at_s=run.duration_s)
        return result


def timeline(video, preset, *, views: str = "1x1", stride_s: float | None = None, batch_size: int = DEFAULT_BATCH,
             top_k: int = 5, smooth: int = DEFAULT_SMOOTH, min_score: float = DEFAULT_MIN_SCORE,
             video_id: str | None = None, fps: float | None = None, format: str | None = None, follow: bool = False,
             on_window=None, jit_compile="auto", timeout_s: float = 10.0, precision: str = "float32") -> dict:
    """What happens when in ``video``: per-window top-k, and segments.

    ``video``: a path, ``"-"`` (standard input), a URL (``udp://``, ``rtsp://``, ``http://``...) or a binary
    file-like object. ``preset``: a preset folder, a loaded ``Preset``, or a :class:`TimelineModel` (load it
    once to serve many videos; then ``views``, ``batch_size``, ``jit_compile`` and ``precision`` are the
    model's). ``precision``: ``"float32"`` or ``"bfloat16"`` (see :class:`~video_swin.inference.classify.VideoClassifier`).
    ``stride_s``: seconds between window starts (default: half a clip). ``on_window(record)`` is called
    with each window's record as soon as it is scored; ``follow`` scores each window as soon as it is
    complete and adds ``latency_s`` (module docstring). ``fps`` / ``format``: for streams that do not say.

    Returns a dict of plain data: ``video`` (its key: a file's stem, ``"stdin"`` or the URL), ``fps``,
    ``frames``, ``duration_s``, ``window_s``, ``stride_s``, ``views``, ``class_names``, ``windows`` (a list of
    ``{"window", "start_s", "end_s", "center_s", "top_k": [{"label", "score"}]}``), ``probabilities``
    (``(windows, classes)`` float32 array), ``segments`` (``[{"label", "score", "segment": [start_s,
    end_s]}]``), ``stopped`` (None) and ``timings`` (``decode_s``, ``preprocess_s``, ``model_s``,
    ``total_s``, ``frames_decoded``, ``windows``, ``xla``).

    Raises :class:`StreamStopped` (a ``VideoError``, so a ``ValueError``) when the video ends before its
    end; its ``partial`` is the result for what was decoded, with ``stopped = {"at_s", "frame",
    "reason"}``.
    """
    model = preset if isinstance(preset, TimelineModel) else TimelineModel(preset, views, batch_size, jit_compile, precision)
    return model.timeline(video, stride_s=stride_s, top_k=top_k, smooth=smooth, min_score=min_score,
                          video_id=video_id, fps=fps, format=format, follow=follow, on_window=on_window,
                          timeout_s=timeout_s)
