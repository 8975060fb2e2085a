"""Each piece of the model against torchvision's own module, with random weights: max abs error <= 1e-5."""

import numpy as np
import pytest
import torch
from torchvision.models import swin_transformer as tv2d
from torchvision.models.video import swin_transformer as tv

from tests.reference import randomize_
from video_swin.models import layers

TOL = 1e-5
LN = tv.partial(torch.nn.LayerNorm, eps=1e-5)


def _t(x):
    return torch.from_numpy(np.ascontiguousarray(x))


def _np(x):
    return np.asarray(x)


def _set_norm(layer, module):
    layer.gamma.assign(module.weight.detach().numpy())
    layer.beta.assign(module.bias.detach().numpy())


def _set_dense(layer, module):
    layer.kernel.assign(module.weight.detach().numpy().T)
    if module.bias is not None:
        layer.bias.assign(module.bias.detach().numpy())


def _set_attention(layer, module):
    _set_dense(layer.qkv, module.qkv)
    _set_dense(layer.proj, module.proj)
    layer.relative_position_bias_table.assign(module.relative_position_bias_table.detach().numpy())


def _set_block(layer, module):
    _set_norm(layer.norm1, module.norm1)
    _set_attention(layer.attn, module.attn)
    _set_norm(layer.norm2, module.norm2)
    _set_dense(layer.mlp.fc1, module.mlp[0])
    _set_dense(layer.mlp.fc2, module.mlp[3])


def _reference_block(dim, heads, window, shift, seed):
    block = tv2d.SwinTransformerBlock(
        dim, heads, window_size=list(window), shift_size=list(shift), norm_layer=LN,
        attn_layer=tv.ShiftedWindowAttention3d,
    )
    return randomize_(block, seed).eval()


def _keras_block(dim, heads, window, shift, module):
    block = layers.SwinTransformerBlock3D(dim, heads, window, shift)
    block.build((None, None, None, None, dim))
    _set_block(block, module)
    return block


def _max_err(ours, ref):
    return float(np.max(np.abs(_np(ours) - ref)))


@pytest.mark.parametrize("shape", [(1, 8, 64, 64, 3), (2, 5, 50, 70, 3), (1, 1, 3, 5, 3)])
def test_patch_embedding(shape):
    ref = randomize_(tv.PatchEmbed3d([2, 4, 4], 3, 96, norm_layer=LN), 1).eval()
    ours = layers.PatchEmbedding3D((2, 4, 4), 96)
    ours.build(shape)
    ours.proj.kernel.assign(ref.proj.weight.detach().numpy().transpose(2, 3, 4, 1, 0))
    ours.proj.bias.assign(ref.proj.bias.detach().numpy())
    _set_norm(ours.norm, ref.norm)
    x = np.random.default_rng(0).standard_normal(shape).astype("float32")
    with torch.no_grad():
        expected = ref(_t(x.transpose(0, 4, 1, 2, 3))).numpy()
    assert _max_err(ours(x), expected) <= TOL


@pytest.mark.parametrize("shape", [(1, 4, 14, 14, 48), (2, 3, 7, 9, 48), (1, 2, 1, 1, 48)])
def test_patch_merging(shape):
    ref = randomize_(tv2d.PatchMerging(48, norm_layer=LN), 2).eval()
    ours = layers.PatchMerging3D(48)
    ours.build(shape)
    _set_dense(ours.reduction, ref.reduction)
    _set_norm(ours.norm, ref.norm)
    x = np.random.default_rng(1).standard_normal(shape).astype("float32")
    with torch.no_grad():
        expected = ref(_t(x)).numpy()
    assert _max_err(ours(x), expected) <= TOL


def test_mlp():
    ref = randomize_(tv2d.MLP(48, [192, 48], activation_layer=torch.nn.GELU, inplace=None, dropout=0.0), 3)
    ours = layers.Mlp(48, 192)
    ours.build((None, 48))
    _set_dense(ours.fc1, ref[0])
    _set_dense(ours.fc2, ref[3])
    x = 3 * np.random.default_rng(2).standard_normal((4, 10, 48)).astype("float32")
    with torch.no_grad():
        expected = ref.eval()(_t(x)).numpy()
    assert _max_err(ours(x), expected) <= TOL


# Window attention alone (padding, shift, mask, partition, attention, reverse) against torchvision's
# ShiftedWindowAttention3d, which does the same steps inside one module.
@pytest.mark.parametrize(
    "shape,window,shift",
    [
        ((1, 8, 14, 14, 48), (4, 7, 7), (0, 0, 0)),
        ((2, 10, 17, 15, 48), (4, 7, 7), (2, 3, 3)),  # padding + shift + mask
        ((1, 3, 5, 9, 48), (4, 7, 7), (2, 3, 3)),  # shrink on D and H, shift on W only
    ],
)
def test_window_attention(shape, window, shift):
    ref = randomize_(tv.ShiftedWindowAttention3d(48, list(window), list(shift), 3), 4).eval()
    block = layers.SwinTransformerBlock3D(48, 3, window, shift)
    block.build((None, None, None, None, 48))
    _set_attention(block.attn, ref)
    x = np.random.default_rng(3).standard_normal(shape).astype("float32")
    y = block.attention_branch(x)
    with torch.no_grad():
        expected = ref(_t(x)).numpy()
    assert _max_err(y, expected) <= TOL


@pytest.mark.parametrize(
    "shape,shift",
    [
        ((1, 8, 14, 14, 96), (0, 0, 0)),  # plain windows
        ((2, 16, 14, 21, 96), (4, 3, 3)),  # shifted, mask on all three axes
        ((1, 10, 9, 12, 96), (4, 3, 3)),  # shifted with padding (padded tokens unmasked)
        ((1, 6, 7, 20, 96), (4, 3, 3)),  # D and H shrink: only W shifts; bias uses index[:N, :N]
    ],
)
def test_block(shape, shift):
    ref = _reference_block(96, 3, (8, 7, 7), shift, 5)
    ours = _keras_block(96, 3, (8, 7, 7), shift, ref)
    x = np.random.default_rng(4).standard_normal(shape).astype("float32")
    with torch.no_grad():
        expected = ref(_t(x)).numpy()
    assert _max_err(ours(x), expected) <= TOL


def test_stage_with_merging():
    dim, heads = 96, 3
    ref_blocks = [_reference_block(dim, heads, (8, 7, 7), s, 10 + i) for i, s in enumerate([(0, 0, 0), (4, 3, 3)])]
    ref_merge = randomize_(tv2d.PatchMerging(dim, norm_layer=LN), 12).eval()
    stage = layers.SwinStage3D(dim, 2, heads, (8, 7, 7), downsample=True)
    stage.build((None, None, None, None, dim))
    for ours, ref in zip(stage.blocks, ref_blocks):
        _set_block(ours, ref)
    _set_dense(stage.merging.reduction, ref_merge.reduction)
    _set_norm(stage.merging.norm, ref_merge.norm)
    x = np.random.default_rng(5).standard_normal((1, 10, 15, 17, dim)).astype("float32")
    with torch.no_grad():
        y = _t(x)
        for block in ref_blocks:
            y = block(y)
        expected = ref_merge(y).numpy()
    assert _max_err(stage(x), expected) <= TOL
