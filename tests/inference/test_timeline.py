"""`timeline`: windows that equal the test protocol's clips, one decode, bounded memory, segments that match
the truth of a fresh long synthetic video, the outputs, live streams on stdin and streams that stop.

The long videos come from `make-synthetic --long` (segments of 4-20 s, truth beside) and are scored by the
shipped synthetic-motion model; the segment defaults (smoothing, minimum score) were chosen on seeds
101-112, the tests use other seeds.
"""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import textwrap
import threading
import time
import weakref

import av
import numpy as np
import pytest

from tests.data.test_video import write_video
from video_swin.data import synthetic, video
from video_swin.data.preprocess import Protocol
from video_swin.data.video import decode_all, probe
from video_swin.inference import timeline as tl
from video_swin.zoo.synthetic_motion import PRESET_DIR

F1_SEED = 20261204  # never used to choose anything
SPAN = 16  # the synthetic preset's clip: 16 frames, interval 1


@pytest.fixture(scope="module")
def model():
    return tl.TimelineModel(PRESET_DIR, jit_compile=False)


def _noisy(i, h, w):
    return np.random.default_rng(i).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _cli(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "video_swin.cli", *args], capture_output=True, text=True,
                          timeout=600, **kwargs)


# ------------------------------------------------------------------------------------------- windows


def _index_frames(n):
    """Stand-in frames: arrays that hold their own index."""
    return [np.full((2, 2, 3), i, np.int32) for i in range(n)]


@pytest.mark.parametrize("n, stride, starts", [
    (40, 8, [0, 8, 16, 24]),  # the last window ends on the last frame: no extra one
    (43, 8, [0, 8, 16, 24, 27]),  # one more window ending on the last frame
    (16, 8, [0]),
    (50, 20, [0, 20, 34]),  # stride longer than... the gap is covered by the end window
])
def test_window_starts_and_sampled_frames(n, stride, starts):
    plan = tl.WindowPlan(clip_len=8, frame_interval=2, stride=stride, fps=4.0)
    windows = list(tl.iter_windows(_index_frames(n), plan))
    assert [w.start_frame for w, _ in windows] == starts
    assert plan.count(n) == len(starts)
    for k, (w, sampled) in enumerate(windows):
        expected = list(range(w.start_frame, w.start_frame + 16, 2))
        assert w.index == k and list(w.frames) == expected
        assert [int(f[0, 0, 0]) for f in sampled] == expected
        assert (w.start_s, w.end_s, w.center_s) == (w.start_frame / 4, (w.start_frame + 16) / 4, (w.start_frame + 8) / 4)


def test_video_shorter_than_a_window_loops_like_the_protocol():
    plan = tl.WindowPlan(clip_len=8, frame_interval=2, stride=8, fps=4.0)
    [(w, sampled)] = list(tl.iter_windows(_index_frames(5), plan))
    assert list(w.frames) == [0, 2, 4, 1, 3, 0, 2, 4]  # (0 + 2k) mod 5, as SampleFrames loops
    assert [int(f[0, 0, 0]) for f in sampled] == list(w.frames)
    assert (w.start_s, w.end_s) == (0.0, 5 / 4)


def test_stride_in_seconds():
    protocol = Protocol(clip_len=32, frame_interval=2, num_clips=1, num_crops=1)
    assert tl.WindowPlan.for_protocol(protocol, 25.0).stride == 32  # half a clip
    assert tl.WindowPlan.for_protocol(protocol, 25.0, stride_s=1.0).stride == 25
    assert tl.WindowPlan.for_protocol(protocol, 25.0, stride_s=0.001).stride == 1
    with pytest.raises(ValueError, match="positive"):
        tl.WindowPlan.for_protocol(protocol, 25.0, stride_s=0)


@pytest.mark.parametrize("views", ["1x3", "1x1"])
def test_window_views_are_the_protocols_views_of_those_frames(model, tmp_path, views):
    """What reaches the model for each window equals `Protocol.views_for_video` of the window's frames,
    decoded by the (seeking) decoder and preprocessed by the protocol's own path."""
    path = write_video(tmp_path / "v.mp4", 43, "libx264", size=(96, 80), options={"preset": "ultrafast"}, frame=_noisy)
    scorer = tl.TimelineModel(PRESET_DIR, views=views, batch_size=2, jit_compile=False)
    seen = []
    predict = scorer.runner.predict
    scorer.runner.predict = lambda batch, xla: (seen.append(batch.copy()), predict(batch, xla))[1]
    result = scorer.timeline(str(path))
    got = np.concatenate(seen)
    protocol = Protocol.from_dict(scorer.preset.preprocessing, views=views)
    frames = decode_all(path)
    starts = [0, 8, 16, 24, 27]
    assert [w["start_s"] for w in result["windows"]] == [s / 25 for s in starts]
    crops = protocol.num_crops
    assert got.shape == (len(starts) * crops, SPAN, 64, 64, 3)
    for k, s in enumerate(starts):
        np.testing.assert_array_equal(got[k * crops : (k + 1) * crops], protocol.views_for_video(frames[s : s + SPAN]))
    # and the probabilities are the softmax of those views' logits, averaged over the crops
    logits = np.asarray(scorer.model.predict_on_batch(got), np.float64).reshape(len(starts), crops, -1)
    expected = np.exp(logits - logits.max(-1, keepdims=True))
    expected = (expected / expected.sum(-1, keepdims=True)).mean(axis=1)
    np.testing.assert_allclose(result["probabilities"], expected, atol=1e-6)


def test_short_video_is_one_looped_window(model, tmp_path):
    path = write_video(tmp_path / "short.mp4", 10, "libx264", size=(64, 64), options={"preset": "ultrafast"}, frame=_noisy)
    result = model.timeline(str(path))
    assert [(w["start_s"], w["end_s"]) for w in result["windows"]] == [(0.0, 0.4)]
    assert result["segments"] == [] or result["segments"][0]["segment"] == [0.0, 0.4]


def test_each_frame_is_decoded_once_and_few_are_held(model, tmp_path, monkeypatch):
    """The decoder's output is counted where it leaves PyAV, and every resized frame is tracked while it
    lives: each frame comes out once, and no more frames live than one window spans (plus the frame being
    resized), whatever the video's length."""
    path = write_video(tmp_path / "long.mp4", 240, "libx264", size=(480, 272), options={"preset": "ultrafast"}, frame=_noisy)
    n = probe(path).num_frames
    decoded = []
    original_iter = video._iter_frames

    def counting(*args, **kwargs):
        for frame in original_iter(*args, **kwargs):
            decoded.append(frame.pts)
            yield frame

    monkeypatch.setattr(video, "_iter_frames", counting)
    alive, most = [], [0]
    original_resize = tl.resize_short_side

    def tracked(frame, size):
        out = original_resize(frame, size)
        alive.append(weakref.ref(out))
        most[0] = max(most[0], sum(r() is not None for r in alive))
        return out

    monkeypatch.setattr(tl, "resize_short_side", tracked)
    result = model.timeline(str(path))
    assert len(decoded) == n == 240 and len(set(decoded)) == n
    assert result["timings"]["frames_decoded"] == n
    assert most[0] == SPAN + 1
    assert len(result["windows"]) == (240 - SPAN) // 8 + 1


# ------------------------------------------------------------------------------------------ segments


def test_segments_from_windows_by_hand():
    names = ["a", "b"]
    centers = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    p_a = np.array([0.9, 0.8, 0.3, 0.2, 0.45, 0.7])
    probabilities = np.stack([p_a, 1 - p_a], axis=1)
    segments = tl.segments_from_windows(centers, probabilities, 7.0, names, smooth=1, min_score=0.0)
    assert segments == [
        {"label": "a", "score": 0.85, "segment": [0.0, 2.5]},
        {"label": "b", "score": round((0.7 + 0.8 + 0.55) / 3, 4), "segment": [2.5, 5.5]},
        {"label": "a", "score": 0.7, "segment": [5.5, 7.0]},
    ]
    kept = tl.segments_from_windows(centers, probabilities, 7.0, names, smooth=1, min_score=0.7)
    assert [s["segment"] for s in kept] == [[0.0, 2.5], [5.5, 7.0]]  # b (0.683) dropped, nothing fills its place
    smoothed = tl.smooth_probabilities(probabilities, 3)
    np.testing.assert_allclose(smoothed[:, 0], [0.85, 2.0 / 3, 1.3 / 3, 0.95 / 3, 1.35 / 3, 0.575])
    with pytest.raises(ValueError, match="odd"):
        tl.smooth_probabilities(probabilities, 2)


def test_match_segments_by_hand():
    truth = [{"label": "a", "segment": [0, 10]}, {"label": "b", "segment": [10, 20]}, {"label": "a", "segment": [20, 30]}]
    predicted = [
        {"label": "a", "score": 0.9, "segment": [1, 10]},  # IoU 0.9 with truth 0
        {"label": "a", "score": 0.8, "segment": [0, 9]},  # also best with truth 0, taken: unmatched
        {"label": "b", "score": 0.7, "segment": [14, 30]},  # IoU 6/20 = 0.3 with truth 1
        {"label": "b", "score": 0.6, "segment": [20, 30]},  # wrong label for truth 2
    ]
    m = tl.match_segments(predicted, truth)
    assert m["matches"] == [(0, 0, 0.9)]
    assert (m["true_positives"], m["false_positives"], m["false_negatives"]) == (1, 3, 2)
    assert m["f1"] == pytest.approx(2 * 0.25 * (1 / 3) / (0.25 + 1 / 3))


def _f1(predicted, truth, threshold=0.5):
    """The rule of ActivityNet's detection evaluation at one threshold, written here independently:
    predictions sorted by decreasing score; each is a true positive if the ground-truth segment of the
    same label with the highest temporal IoU among those not yet matched has IoU >= threshold (that segment
    is then matched); otherwise a false positive. Unmatched ground truth: false negatives."""
    def iou(x, y):
        inter = max(0.0, min(x[1], y[1]) - max(x[0], y[0]))
        return inter / (max(x[1], y[1]) - min(x[0], y[0]))

    free = list(range(len(truth)))
    tp = 0
    for p in sorted(predicted, key=lambda s: -s["score"]):
        scored = [(iou(p["segment"], truth[j]["segment"]), j) for j in free if truth[j]["label"] == p["label"]]
        if scored and max(scored)[0] >= threshold:
            free.remove(max(scored)[1])
            tp += 1
    precision, recall = tp / len(predicted), tp / len(truth)
    return 2 * precision * recall / (precision + recall) if tp else 0.0


def test_segments_of_a_fresh_long_video_match_the_truth(model, tmp_path):
    """8 minutes of new motion segments: F1 >= 0.9 at temporal IoU 0.5 (matching rule in `_f1`), with the
    default smoothing and minimum score (chosen on other seeds)."""
    path, truth_path = synthetic.make_long_video(tmp_path / "fresh.mp4", minutes=8, seed=F1_SEED)
    truth = json.loads(truth_path.read_text())["database"]["fresh"]["annotations"]
    result = model.timeline(str(path))
    f1 = _f1(result["segments"], truth)
    print(f"{len(truth)} true segments, {len(result['segments'])} found, F1 {f1:.3f}")
    assert f1 >= 0.9
    assert f1 == pytest.approx(tl.match_segments(result["segments"], truth)["f1"])
    segments = result["segments"]
    assert segments[0]["segment"][0] >= 0 and segments[-1]["segment"][1] <= result["duration_s"] == 480.0
    assert all(a["segment"][1] <= b["segment"][0] for a, b in zip(segments, segments[1:]))


def test_xla_scores_as_the_graph_does(model, tmp_path):
    """XLA (with the last batch padded to the batch size) gives the graph's probabilities."""
    path = write_video(tmp_path / "v.mp4", 60, "libx264", size=(64, 64), options={"preset": "ultrafast"}, frame=_noisy)
    xla = tl.TimelineModel(PRESET_DIR, batch_size=4, jit_compile=True).timeline(str(path))
    graph = model.timeline(str(path))
    assert xla["timings"]["xla"] and not graph["timings"]["xla"] and len(xla["windows"]) == 7  # 4 + 3, padded to 4
    np.testing.assert_allclose(xla["probabilities"], graph["probabilities"], atol=1e-5)


def test_file_objects_give_the_same_timeline(model, tmp_path):
    path, _ = synthetic.make_long_video(tmp_path / "v.mp4", minutes=0.5, seed=3)
    by_path = model.timeline(str(path))
    with open(path, "rb") as f:
        by_file = model.timeline(f)
    by_bytes = model.timeline(io.BytesIO(path.read_bytes()), video_id="upload")
    for other in (by_file, by_bytes):
        assert other["windows"] == by_path["windows"] and other["segments"] == by_path["segments"]
        np.testing.assert_array_equal(other["probabilities"], by_path["probabilities"])
    assert by_file["video"] == "v" and by_bytes["video"] == "upload"
    json.dumps({k: v for k, v in by_path.items() if k != "probabilities"})  # plain data


def test_a_url_gives_the_same_timeline(model, tmp_path):
    """A video served over HTTP by a server on 127.0.0.1 is read as a stream, with the file's windows."""
    import functools
    import http.server

    path, _ = synthetic.make_long_video(tmp_path / "v.mp4", minutes=0.25, seed=4)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v.mp4"
        by_url = model.timeline(url)
    finally:
        server.shutdown()
        server.server_close()
    by_path = model.timeline(str(path))
    assert by_url["video"] == url and by_url["windows"] == by_path["windows"]
    np.testing.assert_allclose(by_url["probabilities"], by_path["probabilities"], atol=1e-6)


def test_bad_arguments(model, tmp_path):
    path, _ = synthetic.make_long_video(tmp_path / "v.mp4", minutes=0.1, seed=3)
    with pytest.raises(ValueError, match="odd"):
        model.timeline(str(path), smooth=4)
    with pytest.raises(ValueError, match="1x1"):
        tl.TimelineModel(PRESET_DIR, views="4x3")
    with pytest.raises(video.VideoError, match="not found"):
        model.timeline(str(tmp_path / "missing.mp4"))


# ------------------------------------------------------------------------------------ command line


def _with_audio(src, out, seconds):
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(src), "-f", "lavfi", "-i",
                    f"sine=frequency=440:duration={seconds}", "-c:v", "copy", "-c:a", "aac", "-shortest", str(out)],
                   check=True)
    return out


def _playhead_x(frame, strip_rows):
    """Column of the white play-head line in the timeline strip."""
    band = frame[strip_rows].astype(int)
    white = (band > 235).all(axis=-1).mean(axis=0)
    return int(np.argmax(white))


def test_cli_outputs(tmp_path):
    """Table, ActivityNet JSON, JSON lines, plot and the labelled video with its audio."""
    long_video, _ = synthetic.make_long_video(tmp_path / "long.mp4", minutes=1, seed=11)
    clip = _with_audio(long_video, tmp_path / "clip.mp4", 60)
    out = {k: tmp_path / f"out.{k}" for k in ("json", "jsonl", "png", "mp4")}
    result = _cli("timeline", str(clip), "--preset", str(PRESET_DIR), "--json", str(out["json"]), "--jsonl",
                  str(out["jsonl"]), "--plot", str(out["png"]), "--annotate", str(out["mp4"]), "--top-k", "3")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "segment(s) in 1:00.0" in result.stdout and "frames/s" in result.stdout

    anet = json.loads(out["json"].read_text())
    assert anet["version"] == "VERSION 1.3" and list(anet["results"]) == ["clip"]
    segments = anet["results"]["clip"]
    assert segments and all(set(s) == {"label", "score", "segment"} for s in segments)
    assert all(s["label"] in synthetic.CLASSES and 0 <= s["segment"][0] < s["segment"][1] <= 60 for s in segments)
    assert len(result.stdout.splitlines()) == 2 + len(segments) + 2  # head, column names, rows, timings, "wrote"

    lines = [json.loads(line) for line in out["jsonl"].read_text().splitlines()]
    assert len(lines) == 59 and [r["window"] for r in lines] == list(range(59))
    for r in lines:
        assert r["video"] == "clip" and r["end_s"] - r["start_s"] == 2.0 and r["center_s"] == r["start_s"] + 1
        scores = [t["score"] for t in r["top_k"]]
        assert len(scores) == 3 and scores == sorted(scores, reverse=True)

    import cv2

    png = cv2.imread(str(out["png"]))
    assert png is not None and png.shape[1] > 1000 and png.std() > 10

    with av.open(str(out["mp4"])) as container:
        assert container.streams.audio and container.streams.audio[0].codec_context.name == "aac"
        audio_s = float(container.streams.audio[0].duration * container.streams.audio[0].time_base)
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 480 and audio_s == pytest.approx(60, abs=0.2)
    h, w = frames[0].shape[:2]
    assert w == 384 and h > 384  # the 64x64 video scaled 6x, the panel under it
    np.testing.assert_allclose(cv2.resize(frames[100][:384, :384], (64, 64), interpolation=cv2.INTER_AREA),
                               synthetic.read_video(clip)[100], atol=40)
    painter_rows = slice(384 + 3 * 25 + 8, 384 + 3 * 25 + 8 + 25)
    xs = [_playhead_x(frames[i], painter_rows) for i in (0, 240, 479)]
    assert xs[0] < xs[1] < xs[2]
    assert xs[1] == pytest.approx(6 + (w - 12) * 30 / 60, abs=3)


# ------------------------------------------------------------------------------------------ streams

WRITER = textwrap.dedent("""
    import fcntl, os, sys, time
    import av
    src, grace = sys.argv[1], float(sys.argv[2])
    frames = [f.to_ndarray(format="rgb24") for f in av.open(src).decode(video=0)]
    out = av.open(sys.stdout.buffer, "w", format="mpegts", options={"flush_packets": "1", "omit_video_pes_length": "0"})
    stream = out.add_stream("libx264", rate=8)
    stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
    stream.codec_context.options = {"tune": "zerolatency", "preset": "ultrafast"}
    try:  # a one-page pipe: the writer waits for the reader to start instead of filling 64 KiB ahead of it
        fcntl.fcntl(sys.stdout.fileno(), fcntl.F_SETPIPE_SZ, 4096)
    except (AttributeError, OSError):
        pass
    start = time.time()
    for i, rgb in enumerate(frames):
        start = max(start, time.time() - i / 8)  # after a wait (a full pipe), real time from there on
        time.sleep(max(0.0, start + i / 8 - time.time()))  # frame i at i / 8 s
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts = i
        for packet in stream.encode(frame):
            out.mux(packet)
    print(f"last frame {time.time()}", file=sys.stderr, flush=True)
    for packet in stream.encode():
        out.mux(packet)
    out.close()
    sys.stdout.buffer.flush()
    os.close(sys.stdout.fileno())  # the end of the stream
    print(f"closed {time.time()}", file=sys.stderr, flush=True)
    time.sleep(grace)
    print(f"done {time.time()}", file=sys.stderr, flush=True)
""")


def test_live_stream_on_stdin(tmp_path):
    """A writer process sends a video in real time (8 fps) as MPEG-TS into `timeline -`: each window's line
    comes while the stream runs, with its latency. The last window waits for the end of the stream (the
    demuxer's H.264 parser knows a frame has ended when the next begins, or at the end), so the writer closes
    the stream and then waits 3 s before it exits: every line arrives before the writer finishes."""
    src, _ = synthetic.make_long_video(tmp_path / "live.mp4", minutes=0.2, seed=12)  # 96 frames: 11 windows, none extra
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(src), "3"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=False)
    reader = subprocess.Popen([sys.executable, "-m", "video_swin.cli", "timeline", "-", "--preset", str(PRESET_DIR)],
                              stdin=writer.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    writer.stdout.close()
    arrivals = []
    for line in reader.stdout:
        arrivals.append((time.time(), json.loads(line)))
    reader.wait(timeout=120)
    writer_log = writer.stderr.read().decode().split()
    writer.wait(timeout=60)
    assert reader.returncode == 0, reader.stderr.read()
    last_frame, closed, done = (float(writer_log[writer_log.index(word) + 1]) for word in ("frame", "closed", "done"))
    records = [r for _, r in arrivals]
    assert [r["window"] for r in records] == list(range(11))
    assert [r["start_s"] for r in records] == [k * 1.0 for k in range(11)]
    latencies = [r["latency_s"] for r in records]
    print("latencies (s):", latencies)
    assert all(0 <= latency < 60 for latency in latencies)
    assert arrivals[0][0] < last_frame  # results while the stream runs, not after it
    print("arrivals - closed (s):", [round(t - closed, 3) for t, _ in arrivals], "last frame - closed", last_frame - closed)
    assert all(t < closed for t, _ in arrivals[:-1])  # only the last window waits for the end of the stream
    assert all(t < done for t, _ in arrivals)  # every line before the writer has finished


def test_ctrl_c_ends_a_live_stream_keeping_what_was_scored(tmp_path):
    """The usual end of a live source: Ctrl-C, here while the source has gone silent (the pipe still open).
    The windows so far stay printed and their segments are written; exit 130 with one line."""
    src, _ = synthetic.make_long_video(tmp_path / "live.mp4", minutes=0.2, seed=14)
    silent_writer = WRITER.replace("out.close()", "time.sleep(120)")  # the stream stops sending, stays open
    writer = subprocess.Popen([sys.executable, "-c", silent_writer, str(src), "0"], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL)
    out = tmp_path / "segments.json"
    reader = subprocess.Popen([sys.executable, "-m", "video_swin.cli", "timeline", "-", "--preset", str(PRESET_DIR),
                               "--json", str(out)], stdin=writer.stdout, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    writer.stdout.close()
    try:
        records = [json.loads(reader.stdout.readline()) for _ in range(10)]  # the last window needs the end
        time.sleep(1.0)
        reader.send_signal(signal.SIGINT)
        rest, err = reader.communicate(timeout=60)
    finally:
        writer.kill()
        writer.wait()
    assert reader.returncode == 130 and err == "video-swin: interrupted\n"
    records += [json.loads(line) for line in rest.splitlines()]
    assert [r["window"] for r in records] == list(range(len(records))) and len(records) >= 10
    anet = json.loads(out.read_text())
    assert anet["video_swin"][0]["stopped"]["reason"] == tl.INTERRUPTED
    assert anet["results"]["stdin"] and anet["results"]["stdin"][-1]["segment"][1] <= 12.0


def test_stream_that_stops_midway(tmp_path):
    """A stream cut in the middle: the windows so far, then one line saying where it stopped, exit 1; the
    segments so far are written."""
    src, _ = synthetic.make_long_video(tmp_path / "s.mp4", minutes=0.5, seed=13)
    ts = tmp_path / "s.ts"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(src), "-c:v", "libx264", "-f", "mpegts", str(ts)], check=True)
    data = ts.read_bytes()
    cut = tmp_path / "cut.ts"
    cut.write_bytes(data[: len(data) // 2 // 188 * 188 + 100])  # inside a 188-byte packet
    with open(cut, "rb") as stdin:
        result = _cli("timeline", "-", "--preset", str(PRESET_DIR), "--json", str(tmp_path / "seg.json"), stdin=stdin)
    assert result.returncode == 1
    [error] = result.stderr.splitlines()
    assert error.startswith("video-swin: error: <stdin> stopped at ") and "MPEG-TS packet" in error
    records = [json.loads(line) for line in result.stdout.splitlines()]
    stopped_at = float(error.split("stopped at ")[1].split(" s")[0])
    assert 5 < stopped_at < 25 and records and records[-1]["end_s"] <= stopped_at
    anet = json.loads((tmp_path / "seg.json").read_text())
    assert anet["video_swin"][0]["stopped"]["at_s"] == stopped_at
    assert anet["results"]["stdin"][-1]["segment"][1] <= stopped_at

    # a file cut short raises, with the result so far
    mp4 = tmp_path / "fs.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(src), "-c", "copy", "-movflags", "faststart", str(mp4)], check=True)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(mp4.read_bytes()[: mp4.stat().st_size // 2])
    with pytest.raises(tl.StreamStopped) as stop:
        tl.timeline(str(truncated), tl.TimelineModel(PRESET_DIR, jit_compile=False))
    partial = stop.value.partial
    assert partial["windows"] and partial["stopped"]["at_s"] == pytest.approx(stop.value.at_s, abs=1e-3)
    assert partial["windows"][-1]["end_s"] <= stop.value.at_s < 30


def test_cli_refuses_what_it_cannot_do(tmp_path, capsys):
    from video_swin.cli.app import main

    assert main(["timeline", "-", "--preset", str(PRESET_DIR), "--annotate", str(tmp_path / "a.mp4")]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "video-swin: error: --annotate needs a video file: it decodes the video a second time to draw on it "
        "(record the stream to a file first)"]
    assert main(["timeline", str(tmp_path / "missing.mp4"), "--preset", str(PRESET_DIR)]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("video-swin: error: video file not found")
    assert main(["timeline", str(tmp_path / "missing.mp4"), "--preset", str(PRESET_DIR), "--smooth", "2"]) == 1
    assert "odd number of windows" in capsys.readouterr().err
    assert not (tmp_path / "a.mp4").exists()


def test_package_exports():
    import video_swin

    assert video_swin.timeline is tl.timeline and video_swin.TimelineModel is tl.TimelineModel
    from video_swin.inference import features

    assert video_swin.extract_features is features.extract_features
