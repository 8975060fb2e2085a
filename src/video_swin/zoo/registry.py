"""The released checkpoints by name: data only (no behaviour beyond lookup; `resolve` does the work).

Sources, read from public text (cited per group below; nothing here was downloaded):

* Official model zoo, the "Results and Models" tables of github.com/SwinTransformer/Video-Swin-Transformer
  README.md: the six `github` links (release v1.0.4 of SwinTransformer/storage), pretraining, acc@1 / acc@5
  and #params. Windows and stochastic depth are those of the configs named in the same rows
  (`..._window877_...` = (8, 7, 7), `..._window1677_...` = (16, 7, 7); /work/shared/reference/checkpoints.md
  section 5). The publisher gives no checksum for these files.
* torchvision 0.29.1, `torchvision/models/video/swin_transformer.py` (`Swin3D_T/S/B_Weights`): the four URLs,
  acc@1 / acc@5 and `_file_size` (MiB). The 8 hex digits ending each file name ARE the first 8 hex digits of
  the file's sha256: torchvision loads them with `check_hash=True`, and `torch.hub.load_state_dict_from_url`
  takes the hash prefix from the file name (`HASH_REGEX = r"-([a-f0-9]*)\\."`) and refuses a file whose
  sha256 does not start with it (`download_url_to_file(..., hash_prefix)`).

Every URL below was verified against those public sources; no hash was guessed (official files: none
published, see `resolve` for what is checked instead).
"""

from __future__ import annotations

from dataclasses import dataclass

OFFICIAL_README = "https://github.com/SwinTransformer/Video-Swin-Transformer#results-and-models"
TORCHVISION_SOURCE = "torchvision/models/video/swin_transformer.py (torchvision 0.29.1)"

_OFFICIAL_BASE = "https://github.com/SwinTransformer/storage/releases/download/v1.0.4/"
_TORCHVISION_BASE = "https://download.pytorch.org/models/"


@dataclass(frozen=True)
class Entry:
    """One named preset.

    url: where the checkpoint is published (None: shipped inside the package, `package_path`).
    sha256_prefix: the publisher's sha256 prefix, or None when the publisher gives none.
    size_mib: the checkpoint's size; `size_published` says whether the publisher states it (torchvision)
    or it is our estimate (the torch-saved state dict of the same architecture; the real file also holds
    a small `meta` dict).
    top1 / top5: the publisher's figures with the publisher's protocol (`accuracy_source`), not re-measured.
    drop_path: the stochastic depth the checkpoint was trained with (fine-tuning default; None: the
    converter's default).
    """

    name: str
    source: str  # "official", "torchvision" or "package"
    variant: str
    window: tuple[int, int, int]
    classes: int
    dataset: str
    pretrain: str
    top1: float | None
    top5: float | None
    accuracy_source: str
    url: str | None = None
    sha256_prefix: str | None = None
    size_mib: float | None = None
    size_published: bool = False
    drop_path: float | None = None
    params_m: float | None = None
    package_path: str | None = None  # relative to the `zoo` package

    @property
    def file_name(self) -> str | None:
        return self.url.rsplit("/", 1)[-1] if self.url else None


_OFFICIAL_PROTOCOL = "official: 32 frames x interval 2, 4 clips x 3 crops at 224 (SSv2: 1 clip x 3 crops)"
_TORCHVISION_PROTOCOL = "torchvision: clip_len 32 at 15 fps, 12 clips per video, resize 256, crop 224"

ENTRIES: tuple[Entry, ...] = (
    # Official model zoo (README "Kinetics 400", "Kinetics 600", "Something-Something V2" tables).
    Entry("kinetics400-swin-tiny", "official", "tiny", (8, 7, 7), 400, "Kinetics-400", "ImageNet-1K", 78.8, 93.6,
          _OFFICIAL_PROTOCOL, _OFFICIAL_BASE + "swin_tiny_patch244_window877_kinetics400_1k.pth",
          size_mib=121.5, drop_path=0.1, params_m=28),
    Entry("kinetics400-swin-small", "official", "small", (8, 7, 7), 400, "Kinetics-400", "ImageNet-1K", 80.6, 94.5,
          _OFFICIAL_PROTOCOL, _OFFICIAL_BASE + "swin_small_patch244_window877_kinetics400_1k.pth",
          size_mib=218.3, drop_path=0.1, params_m=50),
    Entry("kinetics400-swin-base", "official", "base", (8, 7, 7), 400, "Kinetics-400", "ImageNet-1K", 80.6, 94.6,
          _OFFICIAL_PROTOCOL, _OFFICIAL_BASE + "swin_base_patch244_window877_kinetics400_1k.pth",
          size_mib=364.1, drop_path=0.3, params_m=88),
    Entry("kinetics400-swin-base-22k", "official", "base", (8, 7, 7), 400, "Kinetics-400", "ImageNet-22K", 82.7,
          95.5, _OFFICIAL_PROTOCOL, _OFFICIAL_BASE + "swin_base_patch244_window877_kinetics400_22k.pth",
          size_mib=364.1, drop_path=0.2, params_m=88),
    Entry("kinetics600-swin-base-22k", "official", "base", (8, 7, 7), 600, "Kinetics-600", "ImageNet-22K", 84.0,
          96.5, _OFFICIAL_PROTOCOL, _OFFICIAL_BASE + "swin_base_patch244_window877_kinetics600_22k.pth",
          size_mib=364.9, drop_path=0.2, params_m=88),
    Entry("ssv2-swin-base", "official", "base", (16, 7, 7), 174, "Something-Something v2", "Kinetics-400", 69.6, 92.7,
          _OFFICIAL_PROTOCOL, _OFFICIAL_BASE + "swin_base_patch244_window1677_sthv2.pth",
          size_mib=451.5, drop_path=0.4, params_m=89),
    # torchvision's Swin3D_T/S/B_Weights (the official weights, ported; torchvision's own accuracies).
    Entry("torchvision-swin3d-t", "torchvision", "tiny", (8, 7, 7), 400, "Kinetics-400", "ImageNet-1K", 77.715,
          93.519, _TORCHVISION_PROTOCOL, _TORCHVISION_BASE + "swin3d_t-7615ae03.pth", sha256_prefix="7615ae03",
          size_mib=121.543, size_published=True, params_m=28.158070),
    Entry("torchvision-swin3d-s", "torchvision", "small", (8, 7, 7), 400, "Kinetics-400", "ImageNet-1K", 79.521,
          94.158, _TORCHVISION_PROTOCOL, _TORCHVISION_BASE + "swin3d_s-da41c237.pth", sha256_prefix="da41c237",
          size_mib=218.288, size_published=True, params_m=49.816678),
    Entry("torchvision-swin3d-b", "torchvision", "base", (8, 7, 7), 400, "Kinetics-400", "ImageNet-1K", 79.427,
          94.386, _TORCHVISION_PROTOCOL, _TORCHVISION_BASE + "swin3d_b_1k-24f7c7c6.pth", sha256_prefix="24f7c7c6",
          size_mib=364.134, size_published=True, params_m=88.048984),
    Entry("torchvision-swin3d-b-22k", "torchvision", "base", (8, 7, 7), 400, "Kinetics-400", "ImageNet-22K", 81.643,
          95.574, _TORCHVISION_PROTOCOL, _TORCHVISION_BASE + "swin3d_b_22k-7c6ae6fa.pth", sha256_prefix="7c6ae6fa",
          size_mib=364.134, size_published=True, params_m=88.048984),
    # Shipped inside the package (README "The embedded default"): resolved locally, never downloaded.
    Entry("synthetic-motion", "package", "custom", (4, 4, 4), 8, "synthetic motion (8 classes)", "none",
          None, None, "held-out synthetic clips, see its metadata.json", size_mib=1.5, size_published=True,
          package_path="builtin/synthetic_motion"),
)

_BY_NAME = {entry.name: entry for entry in ENTRIES}


def names() -> list[str]:
    return [entry.name for entry in ENTRIES]


def get(name: str) -> Entry | None:
    return _BY_NAME.get(name)
