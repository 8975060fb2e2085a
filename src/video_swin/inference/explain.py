"""Where the model looks: a heat map of the evidence for a class, on the original frames of a video.

Methods. Measured on the shipped synthetic-motion model with 24 clips of the independent second generator
and the moving shape's mask (docs/explain.md: every method at every layer, the command, the sanity checks
of Adebayo et al.): "ratio" = mean heat inside the shape / outside, "cascade" = rank correlation with the
original map once every weight is randomised from the head down, "other class" = rank correlation of the
top-1 and top-2 classes' maps (low = the map depends on the class).

* ``occlusion`` (the default): cubes of the clip (``occlusion_cube``, by default a quarter of the clip's
  frames by an eighth of the crop: a 4 x 8 x 8 grid of 256 cubes whatever the model) are set one at a
  time to the clip's median colour; a cube's heat is the drop of the class probability. The one method
  that passes both the localisation test (>= 3x on >= 80 % of the correctly classified clips) and the
  sanity checks: >= 3x on 100 % of the clips, median 13.9; cascade 0.21, other class 0.01.
  Cost: 1 + 256 forward passes per view (one pass gives every class's map), scored ``batch_size`` clips
  at a time.
* ``hirescam``: ReLU of (gradient x activation) summed over channels (HiResCAM), at ``stage1`` by
  default: >= 3x on 75 %, median 6.0; cascade 0.04, other class 0.24. It draws nothing at all (a map of
  zeros: no positive evidence at that layer) for 3 of the 24 clips, "shrinking" ones.
  Cost: one forward and one backward pass (from the head down to the layer) per view and class.
* ``grad-x-act``: |gradient x activation| summed over channels, at ``patch_embed`` by default. Localises
  (>= 3x on 100 %) but fails both sanity checks (cascade 0.39, other class 0.90): it draws the
  shape's outline whatever the class, and much of it whatever the weights. Same cost as hirescam.
* ``gradcam``: Grad-CAM (channel weights = the gradient's mean over positions, ReLU), at ``stage1`` by
  default. Does not localise on this model (>= 3x on 33 %): window attention mixes each window's
  evidence into all its tokens and the mean-pooled head spreads it. Kept for comparison.

Layers for the gradient methods: ``patch_embed`` (after its LayerNorm), ``stage1`` ... ``stageN`` (the
output of backbone layer ``layers_{N-1}``, after its patch merging) and ``norm`` (the backbone's final
norm). Explanations run on the TensorFlow backend (the one the command line uses): GradientTape.

Maps are computed per view on the token (or cube) grid, upsampled linearly (half-pixel centres) to the
clip's (T, crop, crop), then mapped back through the protocol: each original pixel samples the crop at
its position in the short-side-resized frame (pixels outside every crop get no heat), and each original
frame between two sampled frames of a view interpolates linearly between them (frames outside a view's
span take nothing from it; frames between views interpolate between the nearest covered frames). Views
(``views="4x3"``: clips x crops) are averaged in original-frame coordinates; by default one view, the
centre clip and centre crop. The maps are then divided by their maximum over the whole video and every
class explained: one colour scale per video, so a class with little evidence stays dim beside the top one.

The model is the preset's, as loaded (its layers called in order, sharing the weights); an `Explainer`
keeps it and its traced functions (one trace per input shape and method, reused by later calls), and
`explain` keeps the last few Explainers by preset folder.
"""

from __future__ import annotations

import difflib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from video_swin.data.preprocess import Protocol, crop_offsets, short_side_size

METHODS = ("occlusion", "hirescam", "grad-x-act", "gradcam")
GRADIENT_METHODS = ("grad-x-act", "hirescam", "gradcam")
DEFAULT_METHOD = "occlusion"
DEFAULT_LAYERS = {"grad-x-act": "patch_embed", "hirescam": "stage1", "gradcam": "stage1"}
DEFAULT_VIEWS = "1x1"
DEFAULT_BATCH_SIZE = 16  # occlusion's perturbed clips per forward pass


@dataclass
class Explanation:
    """Heat maps of one video, one per explained class, at the original resolution.

    maps: (K, F, H, W) float32 in [0, 1], one colour scale for all classes and frames;
    frame_indices: (F,) the original frame index of each map frame (the span the views sampled);
    labels / class_indices / probabilities: the K explained classes, with the probability the model gives
    each (softmax per view, mean over the explained views).
    """

    maps: np.ndarray
    frame_indices: np.ndarray
    labels: list
    class_indices: list
    probabilities: list
    method: str
    layer: str | None
    views: str
    size: tuple  # (H, W) of the original frames
    fps: float | None = None
    details: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)

    def to_dict(self):
        """Everything but the maps, as plain JSON-able data."""
        return {
            "classes": [
                {"label": l, "index": int(i), "probability": float(p)}
                for l, i, p in zip(self.labels, self.class_indices, self.probabilities)
            ],
            "method": self.method,
            "layer": self.layer,
            "views": self.views,
            "frames": [int(self.frame_indices[0]), int(self.frame_indices[-1])],
            "size": [int(self.size[0]), int(self.size[1])],
            "fps": self.fps,
            "details": self.details,
            "timings": {k: round(v, 4) if isinstance(v, float) else v for k, v in self.timings.items()},
        }


class Explainer:
    """A preset's classifier, loaded once, explained many times (the traced functions are kept)."""

    def __init__(self, preset):
        from video_swin import runtime
        from video_swin.models import presets
        from video_swin.zoo.resolve import load_preset

        runtime.configure()
        self.preset = load_preset(preset)
        if not self.preset.config.get("num_classes"):
            raise presets.PresetError(
                f"{self.preset.path}: a backbone-only preset has no classes, so there is nothing to explain "
                "(explain a classifier preset)"
            )
        self.protocol = Protocol.from_dict(self.preset.preprocessing)
        self.model = self.preset.load_model()
        names = self.preset.class_names or [f"class_{i}" for i in range(self.preset.config["num_classes"])]
        self.class_names = list(names)
        self._points, self._layers = _forward_layers(self.model)
        self._functions = {}

    # -- the public entry ---------------------------------------------------------------------------

    @property
    def layer_names(self):
        """The layers the gradient methods can read, input side first."""
        return list(self._points)

    def __call__(self, video, label=None, top=1, method=DEFAULT_METHOD, layer=None, views=None,
                 occlusion_cube=None, batch_size=None, fps=None) -> Explanation:
        """Explains a video path or (T, H, W, 3) uint8 frames; see `explain`."""
        start = time.perf_counter()
        from video_swin.inference.classify import _check_frames

        method, layer, classes = self._check_arguments(method, layer, label, top)
        protocol = self.protocol.with_views(views or DEFAULT_VIEWS)
        if isinstance(video, np.ndarray):
            video = _check_frames(video)
            num_frames, height, width = video.shape[:3]
        else:
            from video_swin.data.video import probe

            info = probe(video)
            num_frames, height, width, fps = info.num_frames, info.height, info.width, info.fps
        clips = protocol.clip_indices(num_frames)
        resized = short_side_size(height, width, protocol.short_side)
        offsets = crop_offsets(*resized, protocol.crop_size, protocol.num_crops)
        pixels = protocol.views_for_video(video)
        timings = {"preprocess_s": time.perf_counter() - start}

        model_start = time.perf_counter()
        if method == "occlusion":
            view_maps, probabilities, details = self._occlusion(pixels, occlusion_cube, batch_size)
        else:
            view_maps, probabilities, details = self._gradient(pixels, method, layer, classes)
        if classes is None:
            classes = [int(c) for c in np.argsort(-probabilities, kind="stable")[: int(top)]]
        timings["model_s"] = time.perf_counter() - model_start

        map_start = time.perf_counter()
        placements = [
            (clips[v % protocol.num_clips], offsets[v // protocol.num_clips]) for v in range(len(pixels))
        ]
        maps, frame_indices = _to_original_frames(
            [[view_maps(v, c) for c in classes] for v in range(len(pixels))],
            placements,
            resized,
            (height, width),
        )
        timings["map_back_s"] = time.perf_counter() - map_start
        timings["total_s"] = time.perf_counter() - start
        timings["views"] = len(pixels)
        return Explanation(
            maps=maps,
            frame_indices=frame_indices,
            labels=[self.class_names[c] for c in classes],
            class_indices=list(classes),
            probabilities=[float(probabilities[c]) for c in classes],
            method=method,
            layer=layer,
            views=protocol.views,
            size=(int(height), int(width)),
            fps=None if fps is None else float(fps),
            details=details,
            timings=timings,
        )

    # -- arguments -----------------------------------------------------------------------------------

    def _check_arguments(self, method, layer, label, top):
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
        import keras

        if keras.backend.backend() != "tensorflow":
            raise ValueError(f"explanations need the TensorFlow backend (KERAS_BACKEND=tensorflow), not "
                             f"{keras.backend.backend()}")
        if method == "occlusion":
            if layer is not None:
                raise ValueError("occlusion perturbs the input: it takes no layer (--layer is for gradient methods)")
        else:
            layer = layer or DEFAULT_LAYERS[method]
            if layer not in self._points:
                raise ValueError(f"unknown layer {layer!r}; choose one of {', '.join(self._points)}")
        if isinstance(top, bool) or int(top) != top or not 1 <= int(top) <= len(self.class_names):
            raise ValueError(f"top must be an integer from 1 to {len(self.class_names)}, got {top!r}")
        if label is None:
            return method, layer, None
        return method, layer, [self.class_index(label)]

    def class_index(self, label):
        """The index of a class name (or of an index given as int); an unknown name raises one line that
        lists the close matches."""
        if isinstance(label, (int, np.integer)) and not isinstance(label, bool):
            if not 0 <= int(label) < len(self.class_names):
                raise ValueError(f"class index {label} out of range 0..{len(self.class_names) - 1}")
            return int(label)
        label = str(label)
        if label in self.class_names:
            return self.class_names.index(label)
        folded = {name.casefold().replace(" ", "_"): i for i, name in enumerate(self.class_names)}
        key = label.casefold().replace(" ", "_")
        if key in folded:
            return folded[key]
        close = difflib.get_close_matches(key, list(folded), n=5, cutoff=0.5)
        hint = (
            f"close matches: {', '.join(self.class_names[folded[c]] for c in close)}"
            if close
            else f"no close match among its {len(self.class_names)} classes (`video-swin info {self.preset.path}` lists them)"
        )
        raise ValueError(f"the preset {self.preset.path} has no class {label!r}; {hint}")

    # -- gradient methods ----------------------------------------------------------------------------

    def _gradient(self, pixels, method, layer, classes):
        import tensorflow as tf

        fn = self._gradient_function(method, layer)
        stride = self._points[layer]["stride"]
        clip_shape = pixels.shape[1:4]
        computed, logits = {}, []

        def compute(v, c):
            out_logits, chosen, token_map = fn(tf.constant(pixels[v : v + 1]), tf.constant(c, tf.int32))
            computed[v, int(chosen)] = token_map.numpy()[0]
            return out_logits.numpy()[0]

        for v in range(len(pixels)):
            # Without a class, each view's own top class (-1) first: usually the class the views' mean
            # ranks first, whose map is then already there; others are computed when asked for.
            logits.append([compute(v, c) for c in ([-1] if classes is None else classes)][0])

        def view_map(v, c):
            if (v, c) not in computed:
                compute(v, c)
            return _upsample(computed[v, c], stride, clip_shape).astype(np.float32)

        return view_map, _softmax(np.stack(logits)).mean(axis=0), {}

    def _gradient_function(self, method, layer):
        key = (method, layer)
        if key not in self._functions:
            import tensorflow as tf

            from video_swin.models.inference import chain

            split = self._points[layer]["index"] + 1
            before, after = chain(self._layers[:split]), chain(self._layers[split:])
            reduce = _REDUCTIONS[method]

            # One trace per input shape (tf.function's cache), reused by every later call.
            @tf.function(autograph=False)
            def explain_step(x, class_index):
                activation = before(x)
                with tf.GradientTape(watch_accessed_variables=False) as tape:
                    tape.watch(activation)
                    logits = after(activation)
                    chosen = tf.where(class_index < 0, tf.argmax(logits[0], output_type=tf.int32), class_index)
                    score = tf.reduce_sum(tf.gather(logits, chosen, axis=-1))
                gradient = tape.gradient(score, activation)
                activation = tf.cast(activation, tf.float32)
                return logits, chosen, reduce(activation, tf.cast(gradient, tf.float32))

            self._functions[key] = explain_step
        return self._functions[key]

    # -- occlusion -----------------------------------------------------------------------------------

    def _occlusion(self, pixels, cube, batch_size):
        t, h, w = pixels.shape[1:4]
        cube = _occlusion_cube(cube, (t, h, w))
        batch_size = DEFAULT_BATCH_SIZE if batch_size is None else int(batch_size)
        if batch_size < 1:
            raise ValueError(f"batch size must be at least 1, got {batch_size}")
        grid = tuple(-(-s // c) for s, c in zip((t, h, w), cube))
        starts = [(a * cube[0], b * cube[1], c * cube[2]) for a in range(grid[0]) for b in range(grid[1]) for c in range(grid[2])]
        forward = self._forward_function()
        drops, base = [], []
        for view in pixels:
            median = np.median(view.reshape(-1, view.shape[-1]), axis=0).astype(view.dtype)
            # Item 0 is the view itself; the last batch is padded with it so every call has one shape.
            items = [None] + starts
            probs = []
            for first in range(0, len(items), batch_size):
                chunk = items[first : first + batch_size]
                batch = np.repeat(view[None], batch_size, axis=0)
                for j, s in enumerate(chunk):
                    if s is not None:
                        batch[j, s[0] : s[0] + cube[0], s[1] : s[1] + cube[1], s[2] : s[2] + cube[2]] = median
                probs.append(_softmax(np.asarray(forward(batch), np.float64))[: len(chunk)])
            probs = np.concatenate(probs)
            base.append(probs[0])
            drops.append((probs[0] - probs[1:]).reshape(grid + (-1,)))  # (gt, gh, gw, classes)
        probabilities = np.mean(base, axis=0)

        def view_map(v, c):
            return _upsample(np.maximum(drops[v][..., c], 0.0), cube, (t, h, w)).astype(np.float32)

        details = {
            "occlusion_cube": list(cube),
            "perturbed_clips_per_view": len(starts),
            "batch_size": batch_size,
            "forward_calls_per_view": -(-(len(starts) + 1) // batch_size),
        }
        return view_map, probabilities, details

    def _forward_function(self):
        if "forward" not in self._functions:
            import tensorflow as tf

            from video_swin.models.inference import chain

            # The plain TensorFlow graph, as `VideoClassifier` runs the model.
            self._functions["forward"] = tf.function(chain(self._layers), autograph=False)
        return self._functions["forward"]


# --------------------------------------------------------------------------------------------------- API

_EXPLAINERS = {}
_EXPLAINERS_KEPT = 2


def explain(video, preset, label=None, top=1, method=DEFAULT_METHOD, layer=None, views=None,
            occlusion_cube=None, batch_size=None, fps=None) -> Explanation:
    """Heat maps of where `preset`'s classifier finds the evidence for a class in `video`.

    video: a video file path or (T, H, W, 3) uint8 frames; preset: a preset folder, a `Preset` or an
    `Explainer` (an Explainer per folder is kept between calls: the model is loaded and its functions
    traced once); label: a class name (or index) to explain, else the `top` most probable classes;
    method: one of METHODS (module docstring: what each measured and costs); layer: for the gradient
    methods (`Explainer.layer_names`; default DEFAULT_LAYERS[method]); views: "AxB" clips x crops
    averaged in original-frame coordinates (default "1x1": the centre view); occlusion_cube: (t, h, w)
    in clip pixels; batch_size: occlusion's perturbed clips per forward pass (default 16); fps: the frame
    rate of an array input (a file's own is read from it). Returns an `Explanation`.
    """
    if isinstance(preset, Explainer):
        explainer = preset
    else:
        explainer = _explainer_for(preset)
    return explainer(video, label=label, top=top, method=method, layer=layer, views=views,
                     occlusion_cube=occlusion_cube, batch_size=batch_size, fps=fps)


def _explainer_for(preset):
    from video_swin.models import presets
    from video_swin.zoo.resolve import resolve_preset

    if isinstance(preset, presets.Preset):
        return Explainer(preset)
    path = resolve_preset(preset).resolve()
    weights = path / presets.WEIGHTS_FILE
    key = (str(path), weights.stat().st_mtime_ns if weights.is_file() else None)
    if key not in _EXPLAINERS:
        explainer = Explainer(path)
        while len(_EXPLAINERS) >= _EXPLAINERS_KEPT:
            _EXPLAINERS.pop(next(iter(_EXPLAINERS)))
        _EXPLAINERS[key] = explainer
    return _EXPLAINERS[key]


# ----------------------------------------------------------------------------------------- the model


def _forward_layers(model):
    """The classifier's layers in forward order, and the readable points: name -> {index, stride}."""
    from video_swin.models.backbone import VideoSwinBackbone
    from video_swin.models.classifier import VideoSwinClassifier

    if not isinstance(model, VideoSwinClassifier) or not isinstance(model.backbone, VideoSwinBackbone):
        raise ValueError(f"explanations need a VideoSwinClassifier, got {type(model).__name__}")
    backbone = model.backbone
    layers = [backbone.get_layer("background_difference")] if backbone.background_difference else []
    points = {}
    pt, ph, pw = backbone.patch_size
    layers.append(backbone.get_layer("patch_embed"))
    points["patch_embed"] = {"index": len(layers) - 1, "stride": (pt, ph, pw)}
    layers.append(backbone.get_layer("pos_drop"))
    merges = 0
    for i in range(len(backbone.depths)):
        stage = backbone.get_layer(f"layers_{i}")
        layers.append(stage)
        merges += int(stage.downsample)
        points[f"stage{i + 1}"] = {"index": len(layers) - 1, "stride": (pt, ph * 2**merges, pw * 2**merges)}
    layers.append(backbone.get_layer("norm"))
    points["norm"] = {"index": len(layers) - 1, "stride": (pt, ph * 2**merges, pw * 2**merges)}
    layers += [model.get_layer("pool"), model.get_layer("head_dropout"), model.get_layer("head")]
    return points, layers


def _reduce_gradcam(a, g):
    import tensorflow as tf

    weights = tf.reduce_mean(g, axis=(1, 2, 3), keepdims=True)
    return tf.nn.relu(tf.reduce_sum(weights * a, axis=-1))


def _reduce_hirescam(a, g):
    import tensorflow as tf

    return tf.nn.relu(tf.reduce_sum(g * a, axis=-1))


def _reduce_grad_x_act(a, g):
    import tensorflow as tf

    return tf.reduce_sum(tf.abs(g * a), axis=-1)


_REDUCTIONS = {"gradcam": _reduce_gradcam, "hirescam": _reduce_hirescam, "grad-x-act": _reduce_grad_x_act}


def _softmax(logits):
    logits = np.asarray(logits, np.float64)
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _occlusion_cube(cube, clip_shape):
    if cube is None:
        t, h, w = clip_shape
        return (max(1, t // 4), max(1, h // 8), max(1, w // 8))
    if isinstance(cube, str):
        try:
            cube = tuple(int(v) for v in cube.lower().replace("\u00d7", "x").split("x"))
        except ValueError:
            cube = ()
    cube = tuple(cube)
    if len(cube) != 3 or any(isinstance(v, bool) or int(v) != v or int(v) < 1 for v in cube):
        raise ValueError(f"occlusion cube must be three positive integers T x H x W (e.g. 4x8x8), got {cube!r}")
    cube = tuple(int(v) for v in cube)
    if any(c > s for c, s in zip(cube, clip_shape)):
        raise ValueError(f"occlusion cube {'x'.join(map(str, cube))} is larger than the clip {'x'.join(map(str, clip_shape))}")
    return cube


# ------------------------------------------------------------------------------------ maps, geometry


def _linear_weights(coords, n_src):
    """(len(coords), n_src) linear-interpolation weights at source coordinates, clamped at both ends."""
    coords = np.clip(np.asarray(coords, np.float64), 0.0, n_src - 1)
    low = np.floor(coords).astype(np.int64)
    high = np.minimum(low + 1, n_src - 1)
    frac = coords - low
    weights = np.zeros((len(coords), n_src))
    rows = np.arange(len(coords))
    np.add.at(weights, (rows, low), 1.0 - frac)
    np.add.at(weights, (rows, high), frac)
    return weights


def _upsample(grid_map, stride, shape):
    """A map on a grid of cells `stride` pixels apart (the patch grid, padded at the end as the model
    pads) to `shape` pixels, linearly between cell centres."""
    out = np.asarray(grid_map, np.float64)
    for axis, (s, n) in enumerate(zip(stride, shape)):
        weights = _linear_weights((np.arange(n) + 0.5) / s - 0.5, out.shape[axis])
        out = np.moveaxis(np.tensordot(weights, out, axes=([1], [axis])), 0, axis)
    return out


def _crop_sampling(n_original, n_resized, offset, crop):
    """For each original pixel along one axis: interpolation weights over the crop's pixels (zero rows
    where the pixel lies outside the crop), and whether it is covered."""
    resized = (np.arange(n_original) + 0.5) * n_resized / n_original - 0.5  # cv2's resize, inverted
    in_crop = resized - offset
    covered = (in_crop >= -0.5) & (in_crop <= crop - 0.5)
    return _linear_weights(in_crop, crop) * covered[:, None], covered.astype(np.float64)


def _frame_weights(indices, frames):
    """(len(frames), len(indices)) weights taking a clip's maps to original frames: the mean of the clip
    positions showing a frame, linear between sampled frames, zero outside the clip's span."""
    indices = np.asarray(indices)
    sampled = np.unique(indices)
    per_frame = np.zeros((len(sampled), len(indices)))
    per_frame[np.searchsorted(sampled, indices), np.arange(len(indices))] = 1.0
    per_frame /= per_frame.sum(axis=1, keepdims=True)
    weights = np.zeros((len(frames), len(indices)))
    inside = (frames >= sampled[0]) & (frames <= sampled[-1])
    if len(sampled) == 1:
        weights[inside] = per_frame[0]
        return weights, inside
    position = np.interp(frames[inside], sampled, np.arange(len(sampled)))
    low = np.minimum(np.floor(position).astype(np.int64), len(sampled) - 2)
    frac = (position - low)[:, None]
    weights[inside] = (1.0 - frac) * per_frame[low] + frac * per_frame[low + 1]
    return weights, inside


def _to_original_frames(view_maps, placements, resized, original):
    """Averages per-view clip maps (view_maps[v][k]: (T, C, C)) in original-frame coordinates and
    divides them by their maximum over every class and frame: (K, F, H, W) float32 in [0, 1], and the
    original frame index of each map frame."""
    height, width = original
    first = min(min(clip) for clip, _ in placements)
    last = max(max(clip) for clip, _ in placements)
    frames = np.arange(first, last + 1)
    num_classes = len(view_maps[0])
    crop = view_maps[0][0].shape[1]
    geometry = []
    for clip, (top, left) in placements:
        rows, row_cover = _crop_sampling(height, resized[0], top, crop)
        cols, col_cover = _crop_sampling(width, resized[1], left, crop)
        time_weights, time_cover = _frame_weights(clip, frames)
        geometry.append((rows, cols, np.outer(row_cover, col_cover), time_weights, time_cover))
    maps = np.zeros((num_classes, len(frames), height, width), np.float32)
    covered = np.zeros(len(frames), bool)
    for f in range(len(frames)):
        total = np.zeros((num_classes, height, width))
        weight = np.zeros((height, width))
        for v, (rows, cols, cover, time_weights, time_cover) in enumerate(geometry):
            if not time_cover[f]:
                continue
            positions = np.nonzero(time_weights[f])[0]
            for k in range(num_classes):
                crop_map = np.tensordot(time_weights[f, positions], view_maps[v][k][positions], axes=1)
                total[k] += rows @ crop_map @ cols.T
            weight += cover
            covered[f] = True
        if covered[f]:
            maps[:, f] = np.where(weight > 0, total / np.maximum(weight, 1e-12), 0.0)
    if not covered.all():  # frames between non-overlapping views: linear between the nearest covered ones
        known = np.nonzero(covered)[0]
        for f in np.nonzero(~covered)[0]:
            after = known[np.searchsorted(known, f)]
            before = known[np.searchsorted(known, f) - 1]
            frac = (f - before) / (after - before)
            maps[:, f] = (1.0 - frac) * maps[:, before] + frac * maps[:, after]
    peak = float(maps.max())
    if peak > 0 and math.isfinite(peak):
        maps /= peak
    np.clip(maps, 0.0, 1.0, out=maps)
    return maps, frames


# ------------------------------------------------------------------------------------- sanity checks


def rank_correlation(a, b):
    """Spearman's rank correlation of two maps (ties share their mean rank); NaN if either is constant."""
    ra, rb = _ranks(np.ravel(a)), _ranks(np.ravel(b))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    norm = math.sqrt(float(ra @ ra) * float(rb @ rb))
    return float(ra @ rb) / norm if norm > 0 else float("nan")


def _ranks(values):
    unique, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return (first + (counts - 1) / 2.0)[inverse]


def randomisation_cascade(explainer):
    """The model's weight groups from the head down (head, final norm, last stage ... first stage, patch
    embedding), as (name, layer): the order of Adebayo et al.'s cascading randomisation."""
    backbone = explainer.model.backbone
    groups = [("head", explainer.model.get_layer("head")), ("norm", backbone.get_layer("norm"))]
    groups += [(f"stage{i + 1}", backbone.get_layer(f"layers_{i}")) for i in reversed(range(len(backbone.depths)))]
    return groups + [("patch_embed", backbone.get_layer("patch_embed"))]


def cascading_randomisation(explainer, seed=0):
    """Yields the name of each weight group of `randomisation_cascade` after randomising it, on top of the
    groups before it (each weight tensor's entries shuffled: the same values, the learned arrangement
    gone); every weight is restored when the generator finishes or is closed."""
    rng = np.random.default_rng(seed)
    saved = {}
    try:
        for name, layer in randomisation_cascade(explainer):
            for variable in layer.weights:
                value = np.asarray(variable.numpy())
                saved[id(variable)] = (variable, value)
                variable.assign(rng.permutation(value.ravel()).reshape(value.shape))
            yield name
    finally:
        for variable, value in saved.values():
            variable.assign(value)


def inside_outside_ratio(heat, mask):
    """Mean heat inside a mask / mean heat outside it: the localisation measure of docs/explain.md (inf
    when all the heat is inside, 0 for a map without heat: it shows nothing)."""
    heat, mask = np.asarray(heat, np.float64), np.asarray(mask, bool)
    inside, outside = heat[mask].mean(), heat[~mask].mean()
    if outside > 0:
        return float(inside / outside)
    return float("inf") if inside > 0 else 0.0
