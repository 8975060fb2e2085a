"""Preprocessing vs. an independent transcription of the official test pipeline."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from video_swin.data.preprocess import (
    DEFAULT_MEAN,
    DEFAULT_STD,
    Protocol,
    center_crop,
    normalize,
    parse_views,
    resize_short_side,
    short_side_size,
    three_crops,
)

K400 = {
    "mean": [123.675, 116.28, 103.53],
    "std": [58.395, 57.12, 57.375],
    "short_side": 224,
    "crop_size": 224,
    "sampling": "dense",
    "clip_len": 32,
    "frame_interval": 2,
    "num_clips": 4,
    "num_crops": 3,
}
SSV2 = dict(K400, sampling="uniform", num_clips=1, num_crops=3)
# Same rules, shorter clips (span 16): keeps the many edge cases fast.
SHORT = dict(K400, clip_len=8, frame_interval=2)
SSV2_SHORT = dict(SSV2, clip_len=8)


# --------------------------------------------------------------------------- #
# The reference: written from the mmaction2 0.x / mmcv 1.x sources, step by
# step, without calling anything from video_swin.
# --------------------------------------------------------------------------- #


def ref_sample(total_frames, cfg):
    if cfg["sampling"] == "uniform":  # SampleFrames(frame_uniform=True, test_mode=True)
        seg_size = float(total_frames - 1) / cfg["clip_len"]
        seq = []
        for i in range(cfg["clip_len"]):
            start = int(np.round(seg_size * i))
            end = int(np.round(seg_size * (i + 1)))
            seq.append((start + end) // 2)
        return np.array(seq), 1
    clip_len, interval, num_clips = cfg["clip_len"], cfg["frame_interval"], cfg["num_clips"]
    ori_clip_len = clip_len * interval
    avg_interval = (total_frames - ori_clip_len + 1) / float(num_clips)
    if total_frames > ori_clip_len - 1:
        base_offsets = np.arange(num_clips) * avg_interval
        clip_offsets = (base_offsets + avg_interval / 2.0).astype(np.int64)
    else:
        clip_offsets = np.zeros((num_clips,), dtype=np.int64)
    frame_inds = clip_offsets[:, None] + np.arange(clip_len)[None, :] * interval
    frame_inds = np.mod(frame_inds, total_frames)  # out_of_bound_opt='loop'
    return np.concatenate(frame_inds), num_clips


def ref_rescale_size(old_size, scale):  # mmcv.rescale_size, tuple branch
    w, h = old_size
    max_long_edge = max(scale)
    max_short_edge = min(scale)
    scale_factor = min(max_long_edge / max(h, w), max_short_edge / min(h, w))
    return int(w * float(scale_factor) + 0.5), int(h * float(scale_factor) + 0.5)


def ref_pipeline(video, cfg):
    """``video``: every decoded frame (n, H, W, 3) uint8 -> (V, T, C, C, 3) float32."""
    frame_inds, num_clips = ref_sample(len(video), cfg)
    imgs = [video[i] for i in frame_inds]  # DecordDecode
    # Resize(scale=(-1, S)) -> scale (inf, S)
    h, w = imgs[0].shape[:2]
    new_w, new_h = ref_rescale_size((w, h), (np.inf, cfg["short_side"]))
    imgs = [cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR) for img in imgs]
    crop_w = crop_h = cfg["crop_size"]
    img_h, img_w = imgs[0].shape[:2]
    if cfg["num_crops"] == 3:  # ThreeCrop
        assert crop_h == img_h or crop_w == img_w
        if crop_h == img_h:
            w_step = (img_w - crop_w) // 2
            offsets = [(0, 0), (2 * w_step, 0), (w_step, 0)]
        else:
            h_step = (img_h - crop_h) // 2
            offsets = [(0, 0), (0, 2 * h_step), (0, h_step)]
        cropped = []
        for x_offset, y_offset in offsets:
            cropped.extend(img[y_offset : y_offset + crop_h, x_offset : x_offset + crop_w] for img in imgs)
        imgs = cropped
    else:  # CenterCrop
        left = (img_w - crop_w) // 2
        top = (img_h - crop_h) // 2
        imgs = [img[top : top + crop_h, left : left + crop_w] for img in imgs]
    # Normalize: mmcv.imnormalize_ with float32 mean/std, to_rgb=False
    mean = np.array(cfg["mean"], dtype=np.float32)
    std = np.array(cfg["std"], dtype=np.float32)
    out = np.empty((len(imgs),) + imgs[0].shape, dtype=np.float32)
    for i, img in enumerate(imgs):
        out[i] = img
    for img in out:
        m = np.float64(mean.reshape(1, -1))
        stdinv = 1 / np.float64(std.reshape(1, -1))
        cv2.subtract(img, m, img)
        cv2.multiply(img, stdinv, img)
    # FormatShape('NCTHW') without the channel transpose: (crops*clips, T, H, W, C)
    clip_len = cfg["clip_len"]
    out = out.reshape((-1, num_clips, clip_len) + out.shape[1:])
    return out.reshape((-1,) + out.shape[2:])


def smooth_video(n, h, w, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (n, max(h // 8, 2), max(w // 8, 2), 3), dtype=np.uint8)
    video = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_CUBIC) for f in base])
    noise = rng.integers(-20, 21, video.shape)
    return np.clip(video.astype(int) + noise, 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- #
# exactness of the whole pipeline
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    "n,h,w,cfg",
    [
        (150, 256, 340, K400),  # landscape, the full Kinetics protocol
        (100, 340, 256, K400),  # portrait
        (50, 240, 427, SSV2),  # the full SSv2 protocol
        (40, 240, 320, SHORT),  # 320 -> 298.67: odd difference after rounding
        (5, 240, 320, SHORT),  # short: every clip loops
        (15, 256, 340, SHORT),  # n == span - 1
        (16, 256, 340, SHORT),  # n == span
        (17, 256, 340, SHORT),  # n == span + 1
        (30, 231, 411, SHORT),  # odd sizes
        (5, 426, 240, SSV2_SHORT),  # short, portrait
        (40, 224, 224, SHORT),  # already square at the crop size
    ],
)
def test_views_equal_reference(n, h, w, cfg):
    video = smooth_video(n, h, w, seed=n + h)
    proto = Protocol.from_dict(cfg)
    ours = proto.views_for_video(video)
    ref = ref_pipeline(video, cfg)
    assert ours.dtype == np.float32
    assert ours.shape == ref.shape == (proto.num_views, cfg["clip_len"], 224, 224, 3)
    assert np.array_equal(ours, ref)


@pytest.mark.parametrize("views", ["1x1", "2x3", "1x3", "5x1"])
def test_view_overrides_equal_reference(views):
    video = smooth_video(60, 240, 320, seed=3)
    clips, crops = parse_views(views)
    cfg = dict(SHORT, num_clips=clips, num_crops=crops)
    proto = Protocol.from_dict(SHORT, views=views)
    assert proto.num_views == clips * crops
    assert np.array_equal(proto.views_for_video(video), ref_pipeline(video, cfg))


def test_validation_variant_equals_reference():
    video = smooth_video(100, 240, 320, seed=4)
    proto = Protocol.from_dict(K400).validation()
    assert (proto.short_side, proto.num_clips, proto.num_crops, proto.clip_len) == (256, 1, 1, 32)
    cfg = dict(K400, short_side=256, num_clips=1, num_crops=1)
    assert np.array_equal(proto.views_for_video(video), ref_pipeline(video, cfg))


def test_views_for_file_equal_reference_on_decoded_frames(tmp_path):
    from tests.data.test_video import write_video
    from video_swin.data.video import decode_all

    video = smooth_video(70, 120, 176, seed=9)
    path = write_video(tmp_path / "clip.mp4", 70, "libx264", size=(176, 120),
                       options={"preset": "ultrafast", "g": "16"}, frame=lambda i, h, w: video[i])
    decoded = decode_all(path)
    proto = Protocol.from_dict(SHORT)
    ours = proto.views_for_video(path)  # only sampled frames decoded, resized on the fly
    assert np.array_equal(ours, ref_pipeline(decoded, SHORT))
    assert np.array_equal(ours, proto.views_for_video(decoded))


def test_view_order_is_crop_major():
    video = smooth_video(80, 224, 300, seed=1)
    v = Protocol.from_dict(SHORT).views_for_video(video)
    clips = Protocol.from_dict(SHORT).clip_indices(80)
    resized = resize_short_side(video, 224)  # already 224 high: unchanged
    step = (300 - 224) // 2
    for crop, x0 in enumerate([0, 2 * step, step]):
        for clip in range(4):
            expect = normalize(resized[clips[clip], :, x0 : x0 + 224])
            assert np.array_equal(v[crop * 4 + clip], expect)


# --------------------------------------------------------------------------- #
# building blocks
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    "hw,expected",
    [
        ((240, 320), (224, 299)),  # 298.67 -> 299
        ((256, 340), (224, 298)),  # 297.5 + 0.5 = 298.0 -> 298
        ((340, 256), (298, 224)),
        ((1080, 1920), (224, 398)),
        ((720, 1280), (224, 398)),  # 398.22
        ((224, 224), (224, 224)),
        ((100, 150), (224, 336)),  # upscaling
    ],
)
def test_short_side_size(hw, expected):
    assert short_side_size(*hw, 224) == expected
    w, h = ref_rescale_size((hw[1], hw[0]), (np.inf, 224))
    assert (h, w) == expected


def test_resize_is_cv2_bilinear():
    video = smooth_video(3, 240, 320)
    out = resize_short_side(video, 224)
    assert out.shape == (3, 224, 299, 3) and out.dtype == np.uint8
    for i in range(3):
        assert np.array_equal(out[i], cv2.resize(video[i], (299, 224), interpolation=cv2.INTER_LINEAR))
    assert resize_short_side(video[0], 224).shape == (224, 299, 3)


def test_three_crops_offsets_and_order():
    x = np.arange(224 * 301).reshape(1, 224, 301, 1).repeat(3, -1)
    crops = three_crops(x, 224)
    step = (301 - 224) // 2  # 38
    assert [int(c[0, 0, 0, 0]) for c in crops] == [0, 2 * step, step]
    portrait = np.transpose(x, (0, 2, 1, 3))
    crops = three_crops(portrait, 224)
    assert [int(c[0, 0, 0, 0]) for c in crops] == [0, 2 * step, step]
    with pytest.raises(ValueError):
        three_crops(np.zeros((1, 250, 300, 3)), 224)


def test_center_crop():
    x = np.arange(255 * 301).reshape(255, 301, 1)
    c = center_crop(x, 224)
    assert c.shape == (224, 224, 1)
    assert c[0, 0, 0] == ((255 - 224) // 2) * 301 + (301 - 224) // 2
    with pytest.raises(ValueError):
        center_crop(np.zeros((200, 300, 3)), 224)


def test_normalize_equals_mmcv_imnormalize_for_every_pixel_value():
    values = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1).reshape(16, 16, 3)
    ours = normalize(values)
    ref = values.astype(np.float32)
    cv2.subtract(ref, np.float64(np.float32(DEFAULT_MEAN).reshape(1, -1)), ref)
    cv2.multiply(ref, 1 / np.float64(np.float32(DEFAULT_STD).reshape(1, -1)), ref)
    assert ours.dtype == np.float32
    assert np.array_equal(ours, ref)


# --------------------------------------------------------------------------- #
# protocol config
# --------------------------------------------------------------------------- #


def test_protocol_from_dict_roundtrip():
    p = Protocol.from_dict(K400)
    assert p == Protocol()
    assert p.to_dict() == K400
    assert p.num_views == 12 and p.views == "4x3"
    s = Protocol.from_dict(SSV2)
    assert s.sampling == "uniform" and s.num_views == 3
    assert Protocol.from_dict(K400, views="1x1").views == "1x1"
    assert Protocol.from_dict(K400).with_views("2X3").num_views == 6


@pytest.mark.parametrize(
    "change",
    [
        {"sampling": "random"},
        {"num_crops": 2},
        {"num_clips": 0},
        {"short_side": 256},  # three crops need short_side == crop_size
        {"mean": [1, 2]},
        {"std": [1, 0, 1]},
        {"bogus_key": 1},
        {"sampling": "uniform", "num_clips": 2},
    ],
)
def test_protocol_rejects(change):
    with pytest.raises(ValueError):
        Protocol.from_dict(dict(K400, **change))


@pytest.mark.parametrize("bad", ["4", "4x2", "0x3", "ax3", "4x3x1"])
def test_parse_views_rejects(bad):
    with pytest.raises(ValueError):
        parse_views(bad)


def test_protocol_uniform_views_override():
    with pytest.raises(ValueError):
        Protocol.from_dict(SSV2, views="2x3")
    assert Protocol.from_dict(SSV2, views="1x1").num_views == 1


# --------------------------------------------------------------------------- #
# TensorFlow / Keras
# --------------------------------------------------------------------------- #


def test_tf_preprocess_close_to_exact_path():
    import tensorflow as tf

    from video_swin.data.preprocess import make_tf_preprocess

    video = smooth_video(8, 240, 320, seed=2)
    proto = Protocol.from_dict(K400)
    fn = make_tf_preprocess(proto)
    got = fn(tf.constant(video)).numpy()
    exact = normalize(center_crop(resize_short_side(video, 224), 224))
    assert got.shape == exact.shape == (8, 224, 224, 3) and got.dtype == np.float32
    # not bit-identical (tf.image.resize vs OpenCV fixed point), but close:
    diff = np.abs(got - exact) * np.float32(DEFAULT_STD)  # back in grey levels
    assert diff.max() <= 3.0 and diff.mean() < 0.6

    ds = tf.data.Dataset.from_tensor_slices(video[None]).map(fn)
    (item,) = list(ds)
    assert item.shape == (8, 224, 224, 3)
    np.testing.assert_allclose(item.numpy(), got, atol=1e-6)

    val = make_tf_preprocess(dict(K400, short_side=256, num_clips=1, num_crops=1))
    assert val(tf.constant(video[:2])).shape == (2, 224, 224, 3)


def test_normalize_pixels_layer(tmp_path):
    import keras

    from video_swin.data.preprocess import NormalizePixels

    layer = NormalizePixels(DEFAULT_MEAN, DEFAULT_STD)
    x = smooth_video(2, 16, 16)
    out = keras.ops.convert_to_numpy(layer(x))
    assert out.dtype == np.float32
    assert np.array_equal(out, normalize(x))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x.astype(np.float32))), out)

    config = layer.get_config()
    assert config["mean"] == list(DEFAULT_MEAN) and config["std"] == list(DEFAULT_STD)
    clone = NormalizePixels.from_config(config)
    assert clone.mean == layer.mean

    inputs = keras.Input((2, 16, 16, 3), dtype="uint8")
    model = keras.Model(inputs, NormalizePixels(name="norm")(inputs))
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.get_layer("norm"), NormalizePixels)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(x[None])), out[None])
