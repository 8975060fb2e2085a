"""`video-swin verify`: our model against torchvision's swin3d_* with the same weights.

The reference is torchvision's implementation (installed from the package index; with the same weights its
logits were measured bitwise identical to the official code's on every shape tried, as the project's
reference notes record). Weights reach our model through the real converter, from a checkpoint file
written the way users bring them. torch must be imported before TensorFlow in this process.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TOLERANCE = 1e-5
DEFAULT_SHAPES = [(1, 32, 224, 224), (1, 16, 224, 224), (1, 5, 50, 70), (2, 20, 112, 96), (1, 3, 33, 33)]


class ReferenceUnavailable(RuntimeError):
    pass


def import_torch():
    try:
        import torch  # noqa: F401  (before TensorFlow)
        import torchvision  # noqa: F401
        from torchvision.models.video import swin_transformer
    except ImportError:
        raise ReferenceUnavailable(
            "verify needs the PyTorch reference (torch and torchvision): "
            "pip install 'video_swin[torch]'  (torch==2.14.1 torchvision==0.29.1)"
        ) from None
    return torch, swin_transformer


@dataclass
class Row:
    what: str
    shape: str
    max_abs: float
    max_rel: float
    ok: bool  # numpy.testing.assert_allclose(rtol=TOLERANCE, atol=TOLERANCE) would pass


def _errors(ours, ref):
    ours, ref = np.asarray(ours, dtype="float64"), np.asarray(ref, dtype="float64")
    diff = np.abs(ours - ref)
    rel = diff / np.maximum(np.abs(ref), 1e-12)
    return float(diff.max()), float(rel.max()), bool(np.all(diff <= TOLERANCE + TOLERANCE * np.abs(ref)))


def _randomize(torch, module, seed):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if p.dim() == 1 and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * noise)
            elif p.dim() == 1 or name.endswith("relative_position_bias_table"):
                p.copy_(0.2 * noise)
            else:
                p.copy_(noise / np.sqrt(float(np.prod(p.shape[1:]))))


def build_reference(architecture, num_classes):
    """torchvision's SwinTransformer3d for an architecture dict (our config keys)."""
    torch, tv = import_torch()
    from functools import partial

    return tv.SwinTransformer3d(
        patch_size=list(architecture["patch_size"]),
        embed_dim=architecture["embed_dim"],
        depths=list(architecture["depths"]),
        num_heads=list(architecture["num_heads"]),
        window_size=list(architecture["window_size"]),
        num_classes=num_classes or 1,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-5),
    ).eval()


def run(checkpoint=None, shapes=None, seed=0, out=print):
    """Prints a component and end-to-end comparison table; returns True if every row passes."""
    torch, tv = import_torch()
    from video_swin.checkpoints import checkpoint_io, convert, weights
    from video_swin.models import presets

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if checkpoint is None:
            reference = tv.swin3d_t(weights=None).eval()
            _randomize(torch, reference, seed)
            checkpoint = tmp / "swin3d_t_seeded.pth"
            torch.save(reference.state_dict(), checkpoint)
            out(f"reference: torchvision swin3d_t with seeded random weights (seed {seed}), saved to a .pth")
        preset_path = convert.convert_checkpoint(checkpoint, tmp / "preset")
        preset = presets.load_preset(preset_path)
        model = preset.load_model()
        official, _ = convert.to_official_names(checkpoint_io.read_tensors(checkpoint))
        reference = build_reference(preset.config["architecture"], preset.config["num_classes"])
        state = {weights.official_to_torchvision(k): torch.from_numpy(np.array(v)) for k, v in official.items()}
        if not preset.config["num_classes"]:
            state.update({k: v for k, v in reference.state_dict().items() if k.startswith("head.")})
        reference.load_state_dict(state, strict=True)
        out(f"ours: {preset.config['variant']} converted by video_swin from {Path(checkpoint).name}")

    rows = _component_rows(torch, reference, model, seed)
    rows += _end_to_end_rows(torch, reference, model, shapes or DEFAULT_SHAPES, seed)
    out(format_table(rows))
    passed = all(r.ok for r in rows)
    out(f"{'PASS' if passed else 'FAIL'}: {sum(r.ok for r in rows)}/{len(rows)} rows within {TOLERANCE:g}")
    return passed


def _component_rows(torch, reference, model, seed):
    backbone = model.backbone if hasattr(model, "backbone") else model
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((1, 18, 60, 52, 3)).astype("float32")
    tx = torch.from_numpy(x.transpose(0, 4, 1, 2, 3).copy())
    rows = []
    with torch.no_grad():
        ref_embed = reference.patch_embed(tx)
    ours_embed = backbone.get_layer("patch_embed")(x)
    rows.append(Row("patch embedding", str(x.shape[1:4]), *_errors(ours_embed, ref_embed.numpy())))

    # Every component is fed the reference's own input, so errors do not accumulate across rows.
    feats = ref_embed
    stage = backbone.get_layer("layers_0")
    for j, (block, ref_block) in enumerate(zip(stage.blocks, reference.features[0])):
        with torch.no_grad():
            ref_attn = ref_block.attn(ref_block.norm1(feats))
            ref_out = ref_block(feats)
        kind = "shifted" if any(block.shift_size) else "plain"
        ours_attn = block.attention_branch(block.norm1(feats.numpy()))
        rows.append(Row(f"window attention ({kind})", str(tuple(feats.shape[1:4])), *_errors(ours_attn, ref_attn.numpy())))
        rows.append(Row(f"block {j} ({kind})", str(tuple(feats.shape[1:4])), *_errors(block(feats.numpy()), ref_out.numpy())))
        feats = ref_out
    with torch.no_grad():
        ref_merge = reference.features[1](feats)
        ref_stage = reference.features[1](reference.features[0](ref_embed))
    rows.append(Row("patch merging", str(tuple(feats.shape[1:4])), *_errors(stage.merging(feats.numpy()), ref_merge.numpy())))
    rows.append(Row("stage 1", str(tuple(ref_embed.shape[1:4])), *_errors(stage(ref_embed.numpy()), ref_stage.numpy())))
    return rows


def _end_to_end_rows(torch, reference, model, shapes, seed):
    rows = []
    has_head = hasattr(model, "backbone")
    for i, (b, t, h, w) in enumerate(shapes):
        x = np.random.default_rng(seed + 1 + i).standard_normal((b, t, h, w, 3)).astype("float32")
        tx = torch.from_numpy(x.transpose(0, 4, 1, 2, 3).copy())
        with torch.no_grad():
            ref_feats = reference.norm(reference.features(reference.patch_embed(tx)))
            ref_logits = reference.head(ref_feats.mean(dim=(1, 2, 3)))
        backbone = model.backbone if has_head else model
        label = f"{b}x{t}x{h}x{w}"
        rows.append(Row("features (end to end)", label, *_errors(backbone(x), ref_feats.numpy())))
        if has_head:
            rows.append(Row("logits (end to end)", label, *_errors(model(x), ref_logits.numpy())))
    return rows


def format_table(rows):
    header = f"{'component':<28} {'shape (T,H,W) / BxTxHxW':<24} {'max abs err':>12} {'max rel err':>12}  result"
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r.what:<28} {r.shape:<24} {r.max_abs:>12.3e} {r.max_rel:>12.3e}  {'pass' if r.ok else 'FAIL'}"
        )
    return "\n".join(lines)
