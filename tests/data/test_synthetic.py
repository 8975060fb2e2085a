"""Synthetic motion dataset: determinism, files, and class semantics measured independently on the pixels.

The semantic checks never read the motion parameters back: they segment the clean (noise-free) frames
against the known background colour and measure centroid / area / extent, and estimate rotation by
matching frame t+1 against frame t rotated with OpenCV's ``getRotationMatrix2D``, whose documented
convention is "positive angle = counter-clockwise" with the origin at the top-left (y down).
"""

import json
import math
from dataclasses import replace

import cv2
import numpy as np
import pytest

from tests.helpers import binomial_floor, binomial_sf
from video_swin.data import synthetic as syn

T, S = 16, 64


def _clean(label, seed, randomize, j=0):
    p = syn.sample_params(label, np.random.default_rng([seed, syn.label_index(label), j]), randomize=randomize)
    return p, syn.render_params(p, noise=False)


def _coverage(frames, p):
    """Per-pixel foreground fraction in [0, 1] (exact for a clean frame: it is a blend of bg and fg)."""
    bg = np.asarray(p.bg, np.float32)
    d = np.asarray(p.fg, np.float32) - bg
    return np.clip(((frames.astype(np.float32) - bg) @ d) / (d @ d), 0.0, 1.0)


def _measure(frames, p):
    cov = _coverage(frames, p)
    mask = cov > 0.5
    ys, xs = np.mgrid[:S, :S] + 0.5
    area = cov.sum(axis=(1, 2))
    cx = (cov * xs).sum(axis=(1, 2)) / area
    cy = (cov * ys).sum(axis=(1, 2)) / area
    border = mask[:, 0].any(1) | mask[:, -1].any(1) | mask[:, :, 0].any(1) | mask[:, :, -1].any(1)
    return cov, mask, area, cx, cy, border


def _feret(mask):
    pts = np.argwhere(mask).astype(np.float32)
    hull = cv2.convexHull(pts[:, ::-1]).reshape(-1, 2)
    d = np.linalg.norm(hull[:, None] - hull[None], axis=-1)
    return float(d.max()) + 1.0


def _rotation_step_deg(a, b, cx, cy):
    """Angle (OpenCV convention, + = counter-clockwise on screen) that best maps coverage a onto b."""
    best, best_err = 0.0, np.inf
    for ang in np.arange(-20.0, 20.01, 1.0):
        m = cv2.getRotationMatrix2D((float(cx) - 0.5, float(cy) - 0.5), float(ang), 1.0)
        r = cv2.warpAffine(a, m, (S, S), flags=cv2.INTER_LINEAR)
        err = float(((r - b) ** 2).sum())
        if err < best_err:
            best, best_err = ang, err
    return best


# ------------------------------------------------------------------------------------------- basics


def test_classes_order():
    assert syn.CLASSES == (
        "moving_left", "moving_right", "moving_up", "moving_down",
        "rotating_clockwise", "rotating_anticlockwise", "growing", "shrinking",
    )
    assert syn.label_index("growing") == 6 and syn.label_index(3) == 3
    with pytest.raises(ValueError):
        syn.label_index("spinning")


@pytest.mark.parametrize("randomize", [True, False])
def test_render_clip_shape_and_determinism(randomize):
    for c, name in enumerate(syn.CLASSES):
        a = syn.render_clip(name, np.random.default_rng(7), randomize=randomize)
        b = syn.render_clip(c, np.random.default_rng(7), randomize=randomize)
        assert a.shape == (T, S, S, 3) and a.dtype == np.uint8
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, syn.render_clip(c, np.random.default_rng(8), randomize=randomize))
    assert syn.render_clip(0, np.random.default_rng(0), frames=8, size=32).shape == (8, 32, 32, 3)


def test_generate_arrays_deterministic_and_balanced():
    x, y = syn.generate_arrays(24, seed=3)
    x2, y2 = syn.generate_arrays(24, seed=3)
    assert x.shape == (24, T, S, S, 3) and x.dtype == np.uint8 and y.dtype == np.int64
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    assert np.bincount(y, minlength=8).tolist() == [3] * 8
    assert not np.array_equal(x, syn.generate_arrays(24, seed=4)[0])
    # A prefix is the same clips (each clip has its own random stream).
    np.testing.assert_array_equal(syn.generate_arrays(8, seed=3)[0], x[:8])


def test_make_synthetic_files(tmp_path):
    items = syn.make_synthetic(tmp_path / "a", clips=10, seed=5, workers=1)
    assert len(items) == 16  # ceil(10 / 8) = 2 per class
    labels = [lab for _, lab in items]
    assert np.bincount(labels, minlength=8).tolist() == [2] * 8
    assert (tmp_path / "a" / "labels.txt").read_text().split() == list(syn.CLASSES)
    for path, lab in items:
        name = syn.CLASSES[lab]
        assert path.endswith(f"{name}/{name}_{int(path[-9:-4]):05d}.mp4")
        x = syn.read_video(path)
        assert x.shape == (T, S, S, 3) and x.dtype == np.uint8
    assert not list((tmp_path / "a").rglob("*.tmp"))

    # Same seed: identical bytes (also with a worker pool); another seed: different files.
    items_b = syn.make_synthetic(tmp_path / "b", clips=10, seed=5, workers=2)
    items_c = syn.make_synthetic(tmp_path / "c", clips=10, seed=6, workers=1)
    for (pa, _), (pb, _), (pc, _) in zip(items, items_b, items_c):
        data = open(pa, "rb").read()
        assert data == open(pb, "rb").read()
        assert data != open(pc, "rb").read()

    # generate_arrays(compress=True) reproduces the decoded files: clip i = class i % 8, number i // 8.
    x, y = syn.generate_arrays(16, seed=5, compress=True)
    for i in (0, 5, 9, 14):
        path = tmp_path / "a" / syn.CLASSES[i % 8] / f"{syn.CLASSES[i % 8]}_{i // 8:05d}.mp4"
        np.testing.assert_array_equal(x[i], syn.read_video(path))


def test_the_same_frames_encode_to_the_same_bytes_every_time():
    """Every codec setting the generator draws, each clip encoded four times in this one process: one
    stream each. (With x264's macroblock tree on, 11 of these 16 libx264 settings gave 2-5 different
    streams over 8 encodes on an AVX-512 CPU, with the encoder on one thread.)"""
    import re

    settings = [dict(codec="libx264", crf=crf, preset=preset) for preset in ("ultrafast", "superfast", "veryfast", "faster")
                for crf in (14, 32)] + [dict(codec="mpeg4", qscale=q) for q in (2, 12)]
    for seed in range(2):
        frames = syn.render_clip(seed, np.random.default_rng(seed), randomize=True)
        for kw in settings:
            streams = {syn.encode_video(frames, **kw) for _ in range(4)}
            assert len(streams) == 1, (seed, kw, len(streams))
    options = re.search(rb"x264 - core .*? options: ([^\x00]*)", syn.encode_video(frames)).group(1).decode()
    assert "threads=1 " in options and "mbtree=0" in options, options  # what the stream says x264 ran with


def test_write_video_codecs(tmp_path):
    frames = syn.render_clip("growing", np.random.default_rng(1), randomize=False)
    for kw in ({}, {"codec": "mpeg4", "qscale": 3}, {"codec": "mpeg4", "bitrate": 200_000}, {"crf": 30}):
        path = syn.write_video(tmp_path / "v.mp4", frames, **kw)
        x = syn.read_video(path)
        assert x.shape == frames.shape
        assert np.abs(x.astype(np.float32) - frames).mean() < 8.0, kw
    in_memory = syn.read_video(syn.encode_video(frames))
    np.testing.assert_array_equal(in_memory, syn.read_video(syn.write_video(tmp_path / "w.mp4", frames)))
    assert sorted(q.name for q in tmp_path.iterdir()) == ["v.mp4", "w.mp4"]


def test_cli(tmp_path, capsys):
    assert syn.main([str(tmp_path / "d"), "--clips", "8", "--seed", "2", "--frames", "8", "--size", "32"]) == 0
    files = sorted((tmp_path / "d").rglob("*.mp4"))
    assert len(files) == 8
    assert syn.read_video(files[0]).shape == (8, 32, 32, 3)
    assert "wrote 8 clips" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------- semantics

N_SEM = 16  # clips per class and mode


@pytest.mark.parametrize("randomize", [False, True])
def test_moving_semantics(randomize):
    for c, (sx, sy) in enumerate([(-1, 0), (1, 0), (0, -1), (0, 1)]):
        for j in range(N_SEM):
            p, x = _clean(c, 11, randomize, j)
            _, mask, area, cx, cy, border = _measure(x, p)
            along, perp = (np.diff(cx), np.diff(cy)) if sx else (np.diff(cy), np.diff(cx))
            sign = sx or sy
            assert (sign * along > 0.2).all(), (c, j, along)  # every frame moves the right way
            assert np.abs(perp).mean() < 0.35, (c, j, perp)  # straight: no drift across the motion
            if not border.any():
                speed = sign * along.mean()
                assert 0.95 <= speed <= 3.05, (c, j, speed)
                assert np.abs(perp).max() < (0.4 if randomize else 0.15)
                assert area.max() / area.min() < (1.15 if randomize else 1.04)  # no scaling (aliasing flicker)
            assert (mask.sum(axis=(1, 2)) >= 0.4 * mask.sum(axis=(1, 2)).max()).all()  # mostly in view


@pytest.mark.parametrize("randomize", [False, True])
def test_rotation_semantics(randomize):
    for c, cw in ((4, True), (5, False)):
        for j in range(N_SEM):
            p, x = _clean(c, 12, randomize, j)
            cov, _, area, cx, cy, _ = _measure(x, p)
            tol = 1.0 if randomize else 0.3  # aliased rendering moves the pixel centroid a little
            assert np.hypot(cx - cx[0], cy - cy[0]).max() < tol  # turns about its centre
            assert area.max() / area.min() < (1.3 if randomize else 1.04)  # aliased small shapes
            steps = np.array([_rotation_step_deg(cov[t], cov[t + 1], cx[t], cy[t]) for t in range(0, T - 1, 3)])
            # OpenCV: + is counter-clockwise on screen, so clockwise clips must measure negative angles.
            on_screen_cw = -steps
            if cw:
                assert (on_screen_cw > 0).all(), (j, p.shape, steps)
            else:
                assert (on_screen_cw < 0).all(), (j, p.shape, steps)
            assert 3.5 <= np.median(np.abs(steps)) <= 16.5, (j, p.shape, steps)


def test_clockwise_means_up_to_right_on_screen():
    """A needle pointing up (12 o'clock) turned clockwise on screen points to 3 o'clock a quarter turn later."""
    p = syn.sample_params("rotating_clockwise", np.random.default_rng(0), randomize=False)
    omega = p.angles[1] - p.angles[0]
    # Thin isosceles triangle pointing to +x; its tip is by far the farthest point from its centroid.
    needle = np.array([(-0.3, -0.12), (1.0, 0.0), (-0.3, 0.12)])
    needle -= needle.mean(0)
    up = -np.pi / 2  # y is down: rotating +x by -90 deg gives (0, -1), i.e. up on screen
    p = replace(p, polygon=needle, scales=np.full(T, 24.0), centers=np.full((T, 2), 32.0),
                angles=up + omega * np.arange(T))
    _, mask, _, cx, cy, _ = _measure(syn.render_params(p, noise=False), p)

    def tip(t):
        ys, xs = np.nonzero(mask[t])
        i = np.argmax((xs + 0.5 - cx[t]) ** 2 + (ys + 0.5 - cy[t]) ** 2)
        return xs[i] + 0.5 - cx[t], ys[i] + 0.5 - cy[t]

    x0, y0 = tip(0)
    assert y0 < -12 and abs(x0) < 2, (x0, y0)  # starts pointing up
    x1, y1 = tip(1)
    assert x1 > 0.5 and y1 < -12, (x1, y1)  # the tip moves right straight away
    xq, yq = tip(int(np.ceil(np.deg2rad(90) / omega)))  # after >= 90 deg clockwise: pointing right
    assert xq > 12 and abs(yq) < 0.5 * xq, (xq, yq)


@pytest.mark.parametrize("randomize", [False, True])
def test_scaling_semantics(randomize):
    lo = np.sqrt(1.5) if randomize else 1.5
    for c, grow in ((6, True), (7, False)):
        for j in range(N_SEM):
            p, x = _clean(c, 13, randomize, j)
            _, _, area, cx, cy, border = _measure(x, p)
            lin = np.sqrt(area)  # linear size
            step = np.log(lin[3:] / lin[:-3])  # aliased pixel counts can stall for a frame or two
            assert ((step > 0) if grow else (step < 0)).all(), (c, j, step)
            if not randomize:
                assert ((np.diff(lin) > 0) if grow else (np.diff(lin) < 0)).all()
            if border.any():
                continue
            ratio = lin.max() / lin.min()
            assert lo * 0.93 <= ratio <= 2.5 * 1.07, (c, j, ratio)
            # Geometric: log size is linear in time.
            fit = np.polyval(np.polyfit(np.arange(T), np.log(lin), 1), np.arange(T))
            assert np.abs(fit - np.log(lin)).max() < (0.08 if randomize else 0.03), (c, j)
            assert np.hypot(cx - cx[0], cy - cy[0]).max() < (1.0 if randomize else 0.3)  # about its centre


@pytest.mark.parametrize("randomize", [False, True])
def test_shape_size_range(randomize):
    """Size 8-24 px at some frame (size = longer bbox side in the canonical pose, between Feret/sqrt2 and
    Feret), never below 8/1.5 or above 24*1.5, and shape/background contrast is sufficient."""
    for c in range(8):
        for j in range(6):
            p, x = _clean(c, 14, randomize, j)
            _, mask, _, _, _, border = _measure(x, p)
            fer = np.array([_feret(m) for m in mask])
            lo_est, hi_est = fer / np.sqrt(2) - 1.5, fer + 1.5
            assert ((lo_est <= 24) & (hi_est >= 8)).any(), (c, j, fer)
            assert (hi_est >= 8 / 1.5).all()
            if not border.any():
                assert (lo_est <= 24 * 1.5).all()
            luma = x[0].astype(float) @ [0.299, 0.587, 0.114]
            inside, outside = luma[mask[0]], luma[~mask[0]]
            assert abs(np.median(inside) - np.median(outside)) >= 30  # shape/background contrast


# ------------------------------------------------------------------------------- what one frame tells
#
# The claims (README, synthetic.py's docstring): in the canonical mode the first frame is drawn from one
# distribution for every class; later frames, and any frame in the default randomised mode, tell
# something about the class, but a single frame is never close to what the motion tells: a classifier on
# one frame's shape position, size and extent (nearest class centroid, standardised features, 2-fold) is
# right for fewer than three clips in four at every frame position, against one in eight by chance.
# Every limit below comes from a sampling distribution at ALPHA, not from what was observed.

ALPHA = 1e-3  # per check; a generator that meets its claims fails any one check at most once in 1000 seeds
N_PER_CLASS = 48
SINGLE_FRAME_CEILING = 0.75  # the claim: a single frame never identifies the class in 3 clips of 4


def _frame_features(randomize, n_per=N_PER_CLASS, seed=21):
    """(frames, clips, 5) single-frame features of clean clips (centroid x, y, sqrt(area), bbox w, h of
    the foreground mask) and the labels."""
    feats, labels = [], []
    for c in range(8):
        for j in range(n_per):
            p = syn.sample_params(c, np.random.default_rng([seed, c, j]), randomize=randomize)
            _, mask, area, cx, cy, _ = _measure(syn.render_params(p, noise=False), p)
            per_frame = []
            for t in range(T):
                ys, xs = np.nonzero(mask[t])
                per_frame.append([cx[t], cy[t], np.sqrt(area[t]), np.ptp(xs) + 1, np.ptp(ys) + 1])
            feats.append(per_frame)
            labels.append(c)
    return np.array(feats).transpose(1, 0, 2), np.array(labels)


def _nearest_centroid_correct(f, y):
    """Correct predictions of a nearest-class-centroid classifier, 2-fold (each clip predicted once, by
    the centroids of the other half)."""
    z = (f - f.mean(0)) / f.std(0)
    half = np.arange(len(y)) % 2 == 0
    correct = 0
    for train in (half, ~half):
        centroids = np.stack([z[train & (y == c)].mean(0) for c in range(8)])
        pred = np.argmin(((z[~train][:, None] - centroids[None]) ** 2).sum(-1), axis=1)
        correct += int((pred == y[~train]).sum())
    return correct


def _ks(a, b):
    grid = np.sort(np.r_[a, b])
    fa = np.searchsorted(np.sort(a), grid, side="right") / len(a)
    fb = np.searchsorted(np.sort(b), grid, side="right") / len(b)
    return np.abs(fa - fb).max()


def _ks_critical(n, m, alpha=ALPHA):
    """Two-sample Kolmogorov-Smirnov: the statistic exceeds this with probability ~alpha when both samples
    come from one continuous distribution (asymptotic form, c(alpha) = sqrt(-ln(alpha / 2) / 2))."""
    return math.sqrt(-math.log(alpha / 2) / 2) * math.sqrt((n + m) / (n * m))


def _chance_ceiling(n, p=1 / 8, alpha=ALPHA):
    """The count a classifier that knows nothing exceeds with probability <= alpha: under "the features
    do not depend on the class" each held-out prediction is right with probability 1/8 (balanced classes),
    independently, so the correct count is Binomial(n, 1/8)."""
    k = 0
    while binomial_sf(k, n, p) > alpha:
        k += 1
    return k


def test_the_canonical_first_frame_does_not_depend_on_the_class():
    f, y = _frame_features(randomize=False)
    first = f[0]
    critical = _ks_critical(N_PER_CLASS, N_PER_CLASS)
    # left vs right: x centroids; up vs down: y centroids; growing vs shrinking: size
    for (a, b), column in (((0, 1), 0), ((2, 3), 1), ((6, 7), 2)):
        statistic = _ks(first[y == a, column], first[y == b, column])
        assert statistic < critical, (a, b, statistic, critical)
    correct = _nearest_centroid_correct(first, y)
    assert correct <= _chance_ceiling(len(y)), (correct, len(y))
    # The same classifier finds the class in the last frame: the check above has the power to fail.
    assert _nearest_centroid_correct(f[-1], y) > _chance_ceiling(len(y))


@pytest.mark.parametrize("randomize", [False, True], ids=["canonical", "randomised"])
def test_no_single_frame_position_tells_the_class_of_three_clips_in_four(randomize):
    """At every frame position: if the single-frame classifier's true accuracy were >= 3/4, it would
    score below `binomial_floor(n, 3/4)` with probability <= ALPHA; it must score below that floor."""
    f, y = _frame_features(randomize=randomize)
    floor = binomial_floor(len(y), SINGLE_FRAME_CEILING, ALPHA)
    correct = [_nearest_centroid_correct(f[t], y) for t in range(T)]
    assert max(correct) < floor, ([c / len(y) for c in correct], floor / len(y))


# ------------------------------------------------------------------------------------------ long videos


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_long_video_layout(seed):
    """Consecutive segments of 4-20 s covering exactly the requested minutes, neighbours never alike."""
    fps = 8
    segments = syn.long_video_segments(3.5, seed, fps=fps)
    assert segments[0][1] == 0 and segments[-1][2] == 3.5 * 60 * fps
    for (label, start, end), nxt in zip(segments, segments[1:] + [None]):
        assert 4 * fps <= end - start <= 20 * fps
        assert 0 <= label < len(syn.CLASSES)
        if nxt is not None:
            assert nxt[1] == end and nxt[0] != label
    assert syn.long_video_segments(3.5, seed, fps=fps) == segments
    assert syn.long_video_segments(3.5, seed + 100, fps=fps) != segments
    with pytest.raises(ValueError, match="at least 4"):
        syn.long_video_segments(0.05, seed)


def _segment_measure(label, frames, seed):
    p = syn.segment_params(label, frames, np.random.default_rng(seed))
    clean = syn.render_params(p, noise=False)
    _, _, area, cx, cy, _ = _measure(clean, p)
    return p, area, cx, cy


@pytest.mark.parametrize("label", range(8))
def test_long_video_segment_motion(label):
    """Measured on the pixels of a clean 12 s segment: the class's motion from the first frame to the last,
    interrupted only by a moving shape's wrap to the opposite margin; size classes do not wrap at this length."""
    frames = 96
    for seed in range(3):
        p, area, cx, cy = _segment_measure(label, frames, seed)
        if label < 4:
            d = np.diff(cx if label < 2 else cy)
            sign = -1 if label in (0, 2) else 1
            wraps = np.abs(d) > 10
            assert np.all(sign * d[~wraps] > 0.3)
            other = np.diff(cy if label < 2 else cx)
            assert np.abs(other[~wraps]).max() < 0.6  # no perpendicular motion
        elif label < 6:
            assert np.ptp(cx) < 1.5 and np.ptp(cy) < 1.5  # turning in place
            assert np.std(area) / area.mean() < 0.1  # the same shape (rasterisation moves the area a little)
        else:
            # at least 2.7 % a frame in size, so 24 % in area over 8 frames: above the rasterisation's wobble
            change = np.log(area[8:]) - np.log(area[:-8])
            assert np.all(change > 0) if label == 6 else np.all(change < 0)
    clockwise = syn.segment_params(4, 40, np.random.default_rng(0))
    assert np.all(np.diff(clockwise.angles) > 0)  # + is clockwise on screen (see the clip tests)


def test_make_long_video_file_and_truth(tmp_path):
    video, truth_path = syn.make_long_video(tmp_path / "long.mp4", minutes=0.5, seed=5)
    truth = json.loads(truth_path.read_text())
    assert truth_path == tmp_path / "long.json" and truth["version"] == syn.LONG_VIDEO_VERSION
    entry = truth["database"]["long"]
    frames = syn.read_video(video)
    assert frames.shape == (240, 64, 64, 3) and entry["frames"] == 240 and entry["duration"] == 30.0
    segments = entry["annotations"]
    assert [s["frames"] for s in segments] == [[a, b] for _, a, b in syn.long_video_segments(0.5, 5)]
    for s in segments:
        assert s["segment"] == [s["frames"][0] / 8, s["frames"][1] / 8] and s["label"] in syn.CLASSES
    # every segment has its own background: the mean colour jumps at the boundaries, not inside
    means = frames.reshape(240, -1, 3).astype(np.float32).mean(axis=1)
    jumps = np.abs(np.diff(means, axis=0)).max(axis=1)
    boundaries = [s["frames"][0] - 1 for s in segments[1:]]
    inside = np.delete(jumps, boundaries)
    assert jumps[boundaries].min() > 3 * inside.max()
    # Deterministic frames (the encoded bytes are not compared: in a process that imported torch, as the test
    # suite does, libx264's output varies from call to call, for make_synthetic's clips as well).
    again = np.concatenate(list(syn.long_video_chunks(syn.long_video_segments(0.5, 5), 5)))
    assert np.abs(again.astype(np.int16) - frames).mean() < 8.0  # the file holds them (through the codec)
    np.testing.assert_array_equal(again, np.concatenate(list(syn.long_video_chunks(syn.long_video_segments(0.5, 5), 5))))


def test_make_synthetic_long_cli(tmp_path, capsys):
    out = tmp_path / "l.mp4"
    assert syn.main(["--long", str(out), "--minutes", "0.25", "--seed", "4", "--size", "32"]) == 0
    assert "and its ground truth" in capsys.readouterr().out
    assert syn.read_video(out).shape == (120, 32, 32, 3) and (tmp_path / "l.json").is_file()
    with pytest.raises(ValueError, match="not both"):
        syn.main([str(tmp_path / "d"), "--long", str(out)])
    with pytest.raises(ValueError, match=".mp4"):
        syn.main(["--long", str(tmp_path / "l.avi")])
