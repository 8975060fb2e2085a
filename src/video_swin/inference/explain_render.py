"""Drawing an `Explanation` on the video: the frames with the heat map blended in and the class and its
probability written on them, as an MP4 (H.264 through PyAV) or an animated GIF (FFmpeg's palettegen /
paletteuse through PyAV). OpenCV draws; no other dependency.

One panel per explained class, side by side. Each panel is scaled so that its short side is between
256 and 480 pixels (small clips are enlarged so the text stays legible; the maps themselves stay at the
original resolution). The heat is blended in OpenCV's "turbo" colour map with an opacity of
`alpha * sqrt(heat)`: 0 where the map is 0, so cold regions show the frame as it is, and weak evidence
still visible. The maps come on one scale for the whole video (see `explain`).
"""

from __future__ import annotations

import fractions
import io
from pathlib import Path

import numpy as np

from video_swin import files

FORMATS = (".mp4", ".gif")
SHORT_SIDE_RANGE = (256, 480)
DEFAULT_FPS = 8.0  # arrays carry no frame rate; the synthetic clips' rate


def check_output(out):
    """Refuses an output path whose format is not one we write, before any work is done."""
    suffix = Path(out).suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"{out}: the output must end in .mp4 or .gif")
    return suffix


def source_frames(explanation, video):
    """The original frames the maps cover, (F, H, W, 3) uint8, from a path or the frames explained."""
    if isinstance(video, np.ndarray):
        return np.asarray(video)[explanation.frame_indices]
    from video_swin.data.video import read_frames

    return read_frames(video, explanation.frame_indices.tolist())


def draw(explanation, frames, alpha=0.6):
    """(F, H', W' * K, 3) uint8: each class's panel, the heat blended in, its label and probability."""
    import cv2

    frames = np.asarray(frames)
    maps = explanation.maps
    if frames.shape[:3] != maps.shape[1:]:
        raise ValueError(f"frames of shape {frames.shape[:3]} do not match maps of shape {maps.shape[1:]}")
    height, width = frames.shape[1:3]
    scale = _panel_scale(height, width)
    size = (max(2, round(width * scale)), max(2, round(height * scale)))
    panels = []
    for k in range(len(maps)):
        text = [f"{explanation.labels[k]} {explanation.probabilities[k]:.2f}", _method_text(explanation)]
        panel = np.empty((len(frames), size[1], size[0], 3), np.uint8)
        for f in range(len(frames)):
            # Nearest for the frame (its pixels as they are), linear for the map (it is a smooth field).
            image = cv2.resize(frames[f], size, interpolation=cv2.INTER_NEAREST if scale > 1 else cv2.INTER_AREA)
            heat = cv2.resize(maps[k, f], size, interpolation=cv2.INTER_LINEAR)
            colour = cv2.applyColorMap(np.round(heat * 255).astype(np.uint8), cv2.COLORMAP_TURBO)[..., ::-1]
            opacity = (alpha * np.sqrt(np.clip(heat, 0.0, 1.0)))[..., None]
            blended = image * (1.0 - opacity) + colour * opacity
            panel[f] = np.clip(np.round(blended), 0, 255).astype(np.uint8)
            _write_text(panel[f], text)
        panels.append(panel)
    return np.concatenate(panels, axis=2)


def render(explanation, video, format="gif", fps=None, alpha=0.6) -> bytes:
    """`explanation` drawn on `video` (the path or frames it was computed on), encoded as "gif" or "mp4"
    bytes, at `fps` (default: the video's rate, else 8)."""
    if format not in ("gif", "mp4"):
        raise ValueError(f"format must be 'gif' or 'mp4', got {format!r}")
    drawn = draw(explanation, source_frames(explanation, video), alpha=alpha)
    fps = fps or explanation.fps or DEFAULT_FPS
    if format == "mp4":
        from video_swin.data.synthetic import encode_video

        return encode_video(_even(drawn), fps=_rate(fps))
    return encode_gif(drawn, fps)


def write(explanation, video, out, fps=None, alpha=0.6):
    """Draws `explanation` on `video` and writes `out` (.mp4 or .gif) atomically. Returns the path."""
    suffix = check_output(out)
    files.atomic_write_bytes(out, render(explanation, video, suffix[1:], fps=fps, alpha=alpha))
    return Path(out)


def encode_gif(frames, fps):
    """RGB frames (T, H, W, 3) uint8 -> GIF bytes, looping, with one palette made for the whole clip."""
    import av

    frames = np.asarray(frames)
    rate = _rate(fps)
    height, width = frames.shape[1:3]
    graph = av.filter.Graph()
    source = graph.add_buffer(width=width, height=height, format="rgb24", time_base=1 / rate)
    split = graph.add("split")
    palette = graph.add("palettegen", "stats_mode=full")
    use = graph.add("paletteuse", "dither=sierra2_4a")
    sink = graph.add("buffersink")
    source.link_to(split)
    split.link_to(palette, 0, 0)
    split.link_to(use, 1, 0)
    palette.link_to(use, 0, 1)
    use.link_to(sink)
    graph.configure()
    for i, frame in enumerate(frames):
        video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        video_frame.pts, video_frame.time_base = i, 1 / rate
        source.push(video_frame)
    source.push(None)  # the palette is made at the end of the stream, then every frame is mapped to it
    quantised = []
    while True:
        try:
            quantised.append(sink.pull())
        except (av.error.BlockingIOError, av.error.EOFError):
            break
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="gif") as container:
        stream = container.add_stream("gif", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "pal8"
        for frame in quantised:
            frame.pts = None
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


def _rate(fps):
    return fractions.Fraction(float(fps)).limit_denominator(1001)


def _panel_scale(height, width):
    low, high = SHORT_SIDE_RANGE
    short = min(height, width)
    if short < low:
        return float(-(-low // short))  # a whole factor: every source pixel becomes the same square
    return high / short if short > high else 1.0


def _method_text(explanation):
    return explanation.method + (f" @ {explanation.layer}" if explanation.layer else "")


def _write_text(image, lines):
    """White text on a dark band at the top left, sized to the panel."""
    import cv2

    font = cv2.FONT_HERSHEY_SIMPLEX
    width = image.shape[1]
    scale = min(0.8, 0.9 * width / max(cv2.getTextSize(line, font, 1.0, 1)[0][0] for line in lines))
    thickness = 2 if scale >= 0.7 else 1
    y = 0
    for line, weight in zip(lines, (1.0, 0.75)):
        (w, h), base = cv2.getTextSize(line, font, scale * weight, thickness)
        pad = max(2, round(4 * scale))
        image[y : y + h + base + 2 * pad, : w + 2 * pad] //= 3
        cv2.putText(image, line, (pad, y + pad + h), font, scale * weight, (255, 255, 255), thickness, cv2.LINE_AA)
        y += h + base + 2 * pad


def _even(frames):
    """yuv420p needs even sides: repeat the last row / column where one is odd."""
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return frames
