"""The PyTorch reference: torchvision's swin3d_* (an independent implementation from the package index; its
logits were measured bitwise identical to the official code's on every shape tried, as the project's
reference notes record), with every tensor randomised, saved in the layouts users bring."""

from __future__ import annotations

from functools import partial

import numpy as np
import torch
from torch import nn
from torchvision.models.video import swin_transformer as tv

# TF32 off wherever this reference runs on a GPU (a user's CUDA_VISIBLE_DEVICES; conftest hides GPUs by
# default): cuDNN convolutions default to TF32 in torch, which would break the 1e-5 parity tolerance.
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
torch.set_float32_matmul_precision("highest")

VARIANTS = {
    "tiny": dict(embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24]),
    "small": dict(embed_dim=96, depths=[2, 2, 18, 2], num_heads=[3, 6, 12, 24]),
    "base": dict(embed_dim=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32]),
}


def build_reference(variant="tiny", window_size=(8, 7, 7), num_classes=400):
    """torchvision's SwinTransformer3d exactly as swin3d_t/s/b build it (any window)."""
    return tv.SwinTransformer3d(
        patch_size=[2, 4, 4],
        window_size=list(window_size),
        stochastic_depth_prob=0.1,
        num_classes=num_classes,
        norm_layer=partial(nn.LayerNorm, eps=1e-5),
        **VARIANTS[variant],
    ).eval()


def randomize_(module: nn.Module, seed: int) -> nn.Module:
    """Gives every parameter a random value, LayerNorm scales and biases and bias tables included, so
    no tensor sits at an initial value that could hide a mapping mistake."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if p.dim() == 1 and name.endswith("weight"):  # LayerNorm scale
                p.copy_(1.0 + 0.2 * noise)
            elif p.dim() == 1 or name.endswith("relative_position_bias_table"):
                p.copy_(0.2 * noise)
            else:
                fan_in = int(np.prod(p.shape[1:]))
                p.copy_(noise / np.sqrt(fan_in))
    return module


def randomized_reference(variant="tiny", seed=0, window_size=(8, 7, 7), num_classes=400):
    return randomize_(build_reference(variant, window_size, num_classes), seed)


SMALL_ARCHITECTURE = dict(embed_dim=24, depths=[2, 2], num_heads=[2, 4], window_size=[4, 3, 3])


def randomized_small_reference(seed=4, num_classes=5):
    """torchvision's SwinTransformer3d with a small custom architecture (two stages, window (4, 3, 3)), no
    stochastic depth, every tensor randomised."""
    module = tv.SwinTransformer3d(
        patch_size=[2, 4, 4], stochastic_depth_prob=0.0, num_classes=num_classes,
        norm_layer=partial(nn.LayerNorm, eps=1e-5), **SMALL_ARCHITECTURE,
    )
    return randomize_(module, seed).eval()


def official_state_dict(module: nn.Module) -> dict:
    """torchvision names -> official mmaction2 names (checkpoints.md §2), written out independently of
    the converter's own mapping."""
    out = {}
    for key, value in module.state_dict().items():
        parts = key.split(".")
        if parts[0] == "features":
            index = int(parts[1])
            if index % 2 == 0:
                rest = ".".join(parts[3:]).replace("mlp.0.", "mlp.fc1.").replace("mlp.3.", "mlp.fc2.")
                name = f"backbone.layers.{index // 2}.blocks.{parts[2]}.{rest}"
            else:
                name = f"backbone.layers.{index // 2}.downsample." + ".".join(parts[2:])
        elif parts[0] == "head":
            name = "cls_head.fc_cls." + parts[1]
        else:
            name = "backbone." + key
        out[name] = value.clone()
    return out


def save_checkpoints(module: nn.Module, folder) -> dict:
    """Saves `module` as users bring it: torchvision .pth, official mmaction .pth (state_dict + meta),
    and both layouts as .safetensors. Returns {name: path}."""
    from safetensors.torch import save_file

    tv_sd = {k: v.contiguous() for k, v in module.state_dict().items()}
    off_sd = {k: v.contiguous() for k, v in official_state_dict(module).items()}
    paths = {
        "torchvision_pth": folder / "swin3d_tv.pth",
        "official_pth": folder / "swin_official.pth",
        "torchvision_safetensors": folder / "swin3d_tv.safetensors",
        "official_safetensors": folder / "swin_official.safetensors",
    }
    torch.save(tv_sd, paths["torchvision_pth"])
    torch.save({"meta": {"epoch": 30, "config": "swin_tiny"}, "state_dict": off_sd}, paths["official_pth"])
    save_file(tv_sd, str(paths["torchvision_safetensors"]))
    save_file(off_sd, str(paths["official_safetensors"]))
    return paths


def run_reference(module: nn.Module, x_channels_last: np.ndarray, features=False) -> np.ndarray:
    """Runs the reference on our (B, T, H, W, 3) layout; logits, or backbone features (B, D, H, W, C)."""
    x = torch.from_numpy(np.ascontiguousarray(x_channels_last.transpose(0, 4, 1, 2, 3)))
    with torch.no_grad():
        if features:
            return module.norm(module.features(module.patch_embed(x))).numpy()
        return module(x).numpy()
