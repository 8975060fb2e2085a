"""Inflation of 2D ImageNet Swin checkpoints (checkpoints.md §3) against torchvision's 2D swin_t."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision

from tests.helpers import assert_within_float32_ulps
from tests.reference import randomize_


def _swin_release_state_dict(tv_model) -> dict:
    """torchvision 2D names -> the Swin 2D release names, written out independently of inflate.py, with
    the buffers a real release file carries (relative_position_index, attn_mask) and the 2D head."""
    out = {}
    for key, value in tv_model.state_dict().items():
        parts = key.split(".")
        if parts[0] == "features":
            k = int(parts[1])
            if k == 0:
                name = {"0": "patch_embed.proj", "2": "patch_embed.norm"}[parts[2]] + "." + parts[3]
            elif k % 2 == 1:
                rest = ".".join(parts[3:]).replace("mlp.0.", "mlp.fc1.").replace("mlp.3.", "mlp.fc2.")
                name = f"layers.{(k - 1) // 2}.blocks.{parts[2]}.{rest}"
            else:
                name = f"layers.{k // 2 - 1}.downsample." + ".".join(parts[2:])
        else:
            name = key
        out[name] = value.clone().contiguous()
    for key in list(out):
        m = key.endswith("attn.relative_position_bias_table")
        if m and key.split(".")[3] == "1":  # shifted blocks carry their mask in the release files
            out[key.replace("attn.relative_position_bias_table", "attn_mask")] = torch.zeros(4, 49, 49)
    return out


@pytest.fixture(scope="module")
def swin2d():
    torch.manual_seed(0)
    model = torchvision.models.swin_t(weights=None).eval()
    return randomize_(model, seed=3)


@pytest.mark.parametrize("src,dst", [((13, 13), (7, 7)), ((13, 13), (23, 23)), ((7, 7), (15, 15)), ((5, 9), (8, 3))])
def test_bicubic_matches_torch(src, dst):
    from video_swin.checkpoints.inflate import bicubic_resize

    rng = np.random.default_rng(0)
    image = rng.standard_normal((3,) + src).astype(np.float32)
    expected = F.interpolate(torch.from_numpy(image.astype(np.float64))[None], size=dst, mode="bicubic",
                             align_corners=False)[0].numpy()
    # Both sides compute in float64 (torch's kernel on float64 tensors, the same algorithm as on float32);
    # ours then rounds once to float32: within half a float32 ulp of the float64 result, plus float64
    # rounding of a 16-tap sum (~1e-15, far below half an ulp at these magnitudes): 1 ulp bounds it.
    # (torch's own float32 kernel is up to ~3e-6 off the float64 result here, thousands of ulps near
    # small values, which is why the reference is float64.)
    assert_within_float32_ulps(bicubic_resize(image, dst), expected, ulps=1)


def test_bias_table_resize_and_stack_match_official_code():
    """The official inflate_weights code path, in torch, against ours, for a 13x13 -> 7x7 (window 12 to 4)
    resize... here a (2*7-1)^2 table inflated to window (4, 4, 4)."""
    from video_swin.checkpoints.inflate import inflate_state_dict

    rng = np.random.default_rng(1)
    table = rng.standard_normal((169, 3)).astype(np.float32)
    wd, wh, ww = 4, 4, 4
    # The official code's lines, run on a float64 copy of the table: the same operations, without torch's
    # float32 rounding (which is up to ~2e-6 here; see test_bicubic_matches_torch).
    t = torch.from_numpy(table.astype(np.float64))
    resized = F.interpolate(t.permute(1, 0).view(1, 3, 13, 13), size=(2 * wh - 1, 2 * ww - 1), mode="bicubic")
    expected = resized.view(3, (2 * wh - 1) * (2 * ww - 1)).permute(1, 0).repeat(2 * wd - 1, 1)
    out = inflate_state_dict({"layers.0.blocks.0.attn.relative_position_bias_table": table}, (wd, wh, ww))
    got = out["backbone.layers.0.blocks.0.attn.relative_position_bias_table"]
    assert got.shape == tuple(expected.shape) == ((2 * wd - 1) * 49, 3) and got.dtype == np.float32
    # float64 arithmetic rounded once to float32: 1 ulp of the reference (half for the rounding, the rest
    # covers the two sides' float64 summation orders, ~1e-15)
    assert_within_float32_ulps(got, expected.numpy(), ulps=1)


def test_patch_embedding_and_dropped_keys():
    from video_swin.checkpoints.inflate import inflate_state_dict

    w = np.random.default_rng(2).standard_normal((8, 3, 4, 4)).astype(np.float32)
    out = inflate_state_dict(
        {
            "patch_embed.proj.weight": w,
            "layers.0.blocks.1.attn_mask": np.zeros((4, 49, 49), np.float32),
            "layers.0.blocks.1.attn.relative_position_index": np.zeros((49, 49), np.int64),
            "head.weight": np.zeros((1000, 8), np.float32),
        },
        (8, 7, 7),
        patch_t=2,
    )
    assert list(out) == ["backbone.patch_embed.proj.weight"]
    inflated = out["backbone.patch_embed.proj.weight"]
    assert inflated.shape == (8, 3, 2, 4, 4)
    np.testing.assert_allclose(inflated.sum(axis=2), w, atol=1e-6)
    np.testing.assert_array_equal(inflated[:, :, 0], inflated[:, :, 1])


def test_both_layouts_inflate_identically(swin2d):
    from video_swin.checkpoints.inflate import inflate_state_dict, to_swin_names

    tv = {k: v.numpy() for k, v in swin2d.state_dict().items()}
    release = {k: v.numpy() for k, v in _swin_release_state_dict(swin2d).items()}
    a, layout_a = to_swin_names(tv)
    b, layout_b = to_swin_names(release)
    assert (layout_a, layout_b) == ("torchvision", "swin")
    ia, ib = inflate_state_dict(a), inflate_state_dict(b)
    assert sorted(ia) == sorted(ib)
    for key in ia:
        np.testing.assert_array_equal(ia[key], ib[key], err_msg=key)


def test_inflated_static_clip_equals_2d_model(swin2d, tmp_path):
    """Swin release file -> `video-swin convert --inflate` -> preset; on a static clip (4 identical frames)
    its pooled features equal torchvision 2D swin_t's pooled features on the frame."""
    from video_swin import cli
    from video_swin.models import presets

    src = tmp_path / "swin_tiny_patch4_window7_224.pth"
    torch.save({"model": _swin_release_state_dict(swin2d)}, src)
    out = tmp_path / "inflated"
    assert cli.main(["convert", "--inflate", str(src), str(out)]) == 0
    preset = presets.load_preset(out)
    assert preset.config["num_classes"] is None
    assert preset.config["architecture"]["window_size"] == [8, 7, 7]
    assert preset.config["variant"] == "tiny"
    backbone = preset.load_model()

    frame = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        m = swin2d
        expected = m.flatten(m.avgpool(m.permute(m.norm(m.features(frame))))).numpy()
    clip = np.repeat(frame.numpy().transpose(0, 2, 3, 1)[:, None], 4, axis=1)  # (1, 4, 224, 224, 3)
    features = np.asarray(backbone(clip, training=False))
    pooled = features.mean(axis=(1, 2, 3))
    assert features.shape == (1, 2, 7, 7, 768)
    err = np.abs(pooled - expected).max()
    assert err <= 1e-5, err


def test_torchvision_layout_and_errors(swin2d, tmp_path):
    from video_swin.checkpoints.inflate import InflationError, inflate_checkpoint

    src = tmp_path / "swin_t.pth"
    torch.save(swin2d.state_dict(), src)
    with pytest.raises(InflationError, match="embed_dim"):
        inflate_checkpoint(src, tmp_path / "x", variant="base")
    assert not (tmp_path / "x").exists()
    path = inflate_checkpoint(src, tmp_path / "y", window_size=(4, 7, 7))
    from video_swin.models import presets

    preset = presets.load_preset(path)
    assert preset.config["architecture"]["window_size"] == [4, 7, 7]
    assert preset.metadata["source_layout"] == "2d-torchvision"
    with pytest.raises(InflationError, match="already exists"):
        inflate_checkpoint(src, path)
