"""Pictures of a timeline: a plot of the top classes' probability over time, and the video with its labels.

Both take the dict :func:`video_swin.inference.timeline.timeline` returns and give each class the same
colour (:func:`class_colours`). The plot uses matplotlib's object API (``Figure`` and the Agg canvas, never
pyplot, so nothing global changes in the calling process); matplotlib is the optional ``plot`` extra. The
annotated video is drawn with OpenCV and encoded with PyAV, both dependencies of the package.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import numpy as np

from video_swin import files

# matplotlib's "tab10" colours (RGB): distinct, and readable on white and on video.
PALETTE = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
)
# Codecs an MP4 file can carry as they are; other audio is re-encoded to AAC.
MP4_AUDIO_CODECS = {"aac", "mp3", "ac3", "eac3", "alac", "opus", "flac"}


def top_classes(result, n: int = 5) -> list[str]:
    """The classes to show: every class of a segment (by total duration, up to the palette's size), then
    the most probable others (mean probability) until there are ``n``."""
    names = result["class_names"]
    duration = {}
    for s in result["segments"]:
        duration[s["label"]] = duration.get(s["label"], 0.0) + s["segment"][1] - s["segment"][0]
    chosen = sorted(duration, key=lambda label: -duration[label])[: len(PALETTE)]
    probabilities = np.asarray(result["probabilities"])
    if len(chosen) < n and len(probabilities):
        for i in np.argsort(-probabilities.mean(axis=0), kind="stable"):
            if names[i] not in chosen:
                chosen.append(names[i])
            if len(chosen) == n:
                break
    return chosen


def class_colours(result, n: int = 10) -> dict:
    """RGB colour of each class shown: the segments' classes first (in order of first appearance), then
    the most probable others, up to ``n``; classes past the palette share its colours."""
    ordered = []
    for s in result["segments"]:
        if s["label"] not in ordered:
            ordered.append(s["label"])
    for label in top_classes(result, n):
        if label not in ordered:
            ordered.append(label)
    return {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(ordered)}


def _clock(seconds: float, decimals: int = 0) -> str:
    minutes, rest = divmod(max(0.0, seconds), 60)
    width = 2 + (decimals + 1 if decimals else 0)
    return f"{int(minutes)}:{rest:0{width}.{decimals}f}"


def plot_timeline(result, out, top: int = 5, width_in: float = 12.0) -> Path:
    """A PNG: the probability per window against time of the segments' classes (and of the most probable
    others, up to ``top`` classes), the segments as coloured bands behind the curves and as labelled blocks
    in a strip underneath. Written atomically."""
    from video_swin import plotting

    names = result["class_names"]
    probabilities = np.asarray(result["probabilities"])
    centers = np.array([w["center_s"] for w in result["windows"]])
    duration = float(result["duration_s"]) or 1.0
    colours = {k: tuple(c / 255 for c in v) for k, v in class_colours(result).items()}
    shown = top_classes(result, top)

    with plotting.figure(int(width_in * 110), int(4.8 * 110), dpi=110) as figure:
        _draw_timeline(figure, result, names, probabilities, centers, duration, colours, shown, width_in)
        plotting.save_png(figure, out)
    return Path(out)


def _draw_timeline(figure, result, names, probabilities, centers, duration, colours, shown, width_in):
    curves, strip = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [6, 1]})
    for s in result["segments"]:
        curves.axvspan(*s["segment"], color=colours[s["label"]], alpha=0.13, linewidth=0)
    for label in shown:
        i = names.index(label)
        curves.plot(centers, probabilities[:, i], color=colours.get(label, (0.3, 0.3, 0.3)), linewidth=1.6,
                    marker="o" if len(centers) <= 60 else None, markersize=3, label=label)
    curves.set_ylim(0, 1.02)
    curves.set_ylabel("probability (per window)")
    curves.grid(True, alpha=0.3)
    curves.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=9, frameon=False, title="classes",
                  title_fontsize=9)
    title = (f"{result['video']}: {len(result['segments'])} segments in {_clock(duration, 1)}  "
             f"(window {result['window_s']:g} s every {result['stride_s']:g} s, {result['views']} views, "
             f"smoothing {result['smooth']}, min score {result['min_score']:g})")
    curves.set_title(title, fontsize=10, loc="left")

    strip_px = 0.8 * width_in * figure.dpi  # about the axes' width (the legend takes the rest)
    for s in result["segments"]:
        start, end = s["segment"]
        strip.axvspan(start, end, color=colours[s["label"]], linewidth=0)
        if (end - start) / duration * strip_px > 7.0 * len(s["label"]) + 8:  # 7-point text fits
            strip.text((start + end) / 2, 0.5, s["label"], ha="center", va="center", fontsize=7, color="white",
                       clip_on=True)
    strip.set_yticks([])
    strip.set_ylabel("segments", rotation=0, ha="right", va="center", fontsize=9)
    strip.set_xlim(0, duration)
    strip.set_xlabel("time (m:ss)" if duration >= 120 else "time (s)")
    if duration >= 120:
        step = _tick_step(duration)
        ticks = np.arange(0, duration + 1e-9, step)
        strip.set_xticks(ticks, [_clock(t) for t in ticks])


def _tick_step(duration: float) -> float:
    for step in (10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600):
        if duration / step <= 12:
            return step
    return 7200


# ---------------------------------------------------------------------------------- annotated video


class _Painter:
    """Draws a frame of the annotated video: the frame (scaled up when small) over a panel with the
    current top-3 labels and a strip of the whole timeline with a play head."""

    def __init__(self, result, width: int, height: int, min_height: int):
        import cv2

        self.cv2 = cv2
        self.result = result
        self.scale = max(1, math.ceil(min_height / height)) if height < min_height else 1
        self.frame_w, self.frame_h = width * self.scale, height * self.scale
        self.width = self.frame_w + self.frame_w % 2
        # The panel: three label lines, the timeline strip, its time labels.
        self.line_h = max(18, int(round(self.frame_h * 0.065)))
        self.text_scale = self.line_h / 34
        self.strip_top = self.frame_h + 3 * self.line_h + 8
        self.strip_h = self.line_h
        self.height = self.strip_top + self.strip_h + self.line_h + 4
        self.height += self.height % 2
        self.duration = float(result["duration_s"]) or 1.0
        self.names = result["class_names"]
        self.probabilities = np.asarray(result["probabilities"])
        self.centers = np.array([w["center_s"] for w in result["windows"]])
        colours = class_colours(result)
        self.colour = lambda label: colours.get(label, (160, 160, 160))
        self.font = cv2.FONT_HERSHEY_SIMPLEX
        self.background = self._static_panel()

    def _x(self, seconds: float) -> int:
        return int(round(6 + (self.width - 12) * min(max(seconds / self.duration, 0.0), 1.0)))

    def _static_panel(self) -> np.ndarray:
        cv2 = self.cv2
        panel = np.full((self.height, self.width, 3), 24, np.uint8)
        top, bottom = self.strip_top, self.strip_top + self.strip_h
        cv2.rectangle(panel, (6, top), (self.width - 7, bottom), (60, 60, 60), -1)
        for s in self.result["segments"]:
            x0, x1 = self._x(s["segment"][0]), self._x(s["segment"][1])
            cv2.rectangle(panel, (x0, top), (max(x0, x1 - 1), bottom), self.colour(s["label"]), -1)
        scale = self.text_scale * 0.8
        for label_s in (0.0, self.duration):
            text = _clock(label_s)
            (w, h), _ = cv2.getTextSize(text, self.font, scale, 1)
            x = 6 if label_s == 0 else self.width - 7 - w
            cv2.putText(panel, text, (x, min(self.height - 3, bottom + h + 4)), self.font, scale, (200, 200, 200), 1,
                        cv2.LINE_AA)
        return panel

    def top3(self, t: float):
        if not len(self.centers):
            return []
        j = int(np.clip(np.searchsorted(self.centers, t), 1, len(self.centers) - 1)) if len(self.centers) > 1 else 0
        if j > 0 and abs(self.centers[j - 1] - t) <= abs(self.centers[j] - t):
            j -= 1
        row = self.probabilities[j]
        return [(self.names[i], float(row[i])) for i in np.argsort(-row, kind="stable")[:3]]

    def draw(self, rgb: np.ndarray, t: float) -> np.ndarray:
        cv2 = self.cv2
        out = self.background.copy()
        if self.scale > 1:
            rgb = cv2.resize(rgb, (self.frame_w, self.frame_h), interpolation=cv2.INTER_NEAREST)
        out[: self.frame_h, : self.frame_w] = rgb
        bar_w = max(40, self.width // 5)
        for row, (label, score) in enumerate(self.top3(t)):
            y = self.frame_h + (row + 1) * self.line_h
            colour = self.colour(label)
            cv2.rectangle(out, (6, y - self.line_h + 5), (6 + int(bar_w * score), y - 2), colour, -1)
            cv2.rectangle(out, (6, y - self.line_h + 5), (6 + bar_w, y - 2), (90, 90, 90), 1)
            weight = 2 if row == 0 else 1
            cv2.putText(out, f"{label}  {score:.2f}", (12 + bar_w, y - 3), self.font, self.text_scale,
                        (255, 255, 255) if row == 0 else (200, 200, 200), weight, cv2.LINE_AA)
        clock = _clock(t, 1)
        scale = self.text_scale * 0.8
        (w, h), _ = cv2.getTextSize(clock, self.font, scale, 1)
        cv2.putText(out, clock, ((self.width - w) // 2, min(self.height - 3, self.strip_top + self.strip_h + h + 4)),
                    self.font, scale, (255, 255, 255), 1, cv2.LINE_AA)
        x = self._x(t)
        cv2.line(out, (x, self.strip_top - 4), (x, self.strip_top + self.strip_h + 3), (255, 255, 255), 2)
        return out


def annotate_video(video, result, out, *, min_height: int = 360, crf: int = 20) -> Path:
    """Re-encode ``video`` (a file) with the labels of ``result`` on every frame: the window nearest in
    time gives the current top-3, and a strip of the whole timeline with a play head runs underneath.
    Frames smaller than ``min_height`` are scaled up by a whole factor (text needs room). The first audio
    stream is copied (re-encoded to AAC when MP4 cannot carry its codec). H.264 (MPEG-4 Part 2 when this
    FFmpeg has no libx264), yuv420p, MP4; written atomically.

    This decodes the video a second time: the strip shows the whole timeline, which is known only once the
    first pass has ended.
    """
    import av

    from video_swin.data.synthetic import _has_libx264
    from video_swin.data.video import _check_file, _frame_rotation, _open, _rotation_from_tag

    path = _check_file(video)
    container, stream = _open(path)
    try:
        audio = container.streams.audio[0] if container.streams.audio else None
        rate = stream.average_rate or stream.guessed_rate or Fraction(result["fps"]).limit_denominator(1001)
        tag_rotation = _rotation_from_tag(stream)
        with files.atomic_path(out) as tmp:
            with av.open(str(tmp), mode="w", format="mp4") as output:
                encoder = _Encoder(output, rate, crf, _has_libx264())
                copy_audio = _audio_stream(output, audio)
                video_start = None
                painter = None
                index = 0
                early_audio = []  # the output's header is written at the first packet: video size first
                streams = [stream] + ([audio] if audio is not None else [])
                for packet in container.demux(*streams):
                    if packet.stream.type == "audio":
                        if painter is None:
                            early_audio.append(packet)
                        else:
                            copy_audio(packet, video_start)
                        continue
                    try:
                        decoded = packet.decode()
                    except av.FFmpegError:
                        continue
                    for frame in decoded:
                        if video_start is None:
                            video_start = float(frame.time or 0.0)
                        rgb = frame.to_ndarray(format="rgb24")
                        rotation = _frame_rotation(frame, tag_rotation)
                        if rotation:
                            rgb = np.ascontiguousarray(np.rot90(rgb, rotation // 90))
                        if painter is None:
                            painter = _Painter(result, rgb.shape[1], rgb.shape[0], min_height)
                            encoder.open(painter.width, painter.height)
                            for early in early_audio:
                                copy_audio(early, video_start)
                            early_audio.clear()
                        encoder.write(painter.draw(rgb, index / result["fps"]))
                        index += 1
                copy_audio(None, video_start)
                encoder.close()
                if index == 0:
                    raise ValueError(f"no decodable video frames to annotate: {path}")
    finally:
        container.close()
    return Path(out)


class _Encoder:
    def __init__(self, output, rate, crf, libx264):
        import av

        self.av = av
        self.output = output
        codec = "libx264" if libx264 else "mpeg4"
        self.stream = output.add_stream(codec, rate=rate)
        self.stream.pix_fmt = "yuv420p"
        self.stream.codec_context.options = {"crf": str(crf), "preset": "veryfast"} if libx264 else {"qscale": "3"}
        self.time_base = 1 / Fraction(rate)
        self.index = 0
        self.opened = False

    def open(self, width, height):
        self.stream.width, self.stream.height = width, height
        self.opened = True

    def write(self, rgb):
        frame = self.av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
        frame.pts = self.index
        frame.time_base = self.time_base
        self.index += 1
        for packet in self.stream.encode(frame):
            self.output.mux(packet)

    def close(self):
        if self.opened:
            for packet in self.stream.encode():
                self.output.mux(packet)


def _audio_stream(output, audio):
    """A function ``(packet or None at the end, video start seconds)`` that puts the input's audio into
    ``output``: packets copied, or decoded and re-encoded to AAC, shifted so that audio stays in step with
    the video (which starts at 0 in the output)."""
    if audio is None:
        return lambda packet, video_start: None
    codec = audio.codec_context.name
    if codec in MP4_AUDIO_CODECS:
        out_audio = output.add_stream_from_template(audio)

        def copy(packet, video_start):
            if packet is None or packet.dts is None or packet.pts is None:
                return
            shift = int(round((video_start or 0.0) / audio.time_base)) if video_start else 0
            packet.pts -= shift
            packet.dts -= shift
            if packet.pts < 0:
                return
            packet.stream = out_audio
            output.mux(packet)

        return copy
    out_audio = output.add_stream("aac", rate=audio.codec_context.sample_rate or 48000)

    def transcode(packet, video_start):
        frames = packet.decode() if packet is not None else []
        for frame in frames:
            if video_start and frame.time is not None and frame.time < video_start:
                continue
            if frame.pts is not None and video_start:
                frame.pts -= int(round(video_start / frame.time_base))
            for out_packet in out_audio.encode(frame):
                output.mux(out_packet)
        if packet is None:
            for out_packet in out_audio.encode(None):
                output.mux(out_packet)

    return transcode
