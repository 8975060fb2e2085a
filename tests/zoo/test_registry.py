"""The registry's facts against independent sources: torchvision's own weight enums (installed from the
package index) and torch.hub's hash-prefix convention, the official file-naming scheme, the shipped
preset's config, and the README table that documents the names."""

import json
import re
from pathlib import Path

import pytest
import torch.hub
import torchvision.models.video as tvv

from video_swin.zoo import registry, resolve

README = Path(__file__).resolve().parents[2] / "README.md"

TORCHVISION_WEIGHTS = {
    "torchvision-swin3d-t": tvv.Swin3D_T_Weights.KINETICS400_V1,
    "torchvision-swin3d-s": tvv.Swin3D_S_Weights.KINETICS400_V1,
    "torchvision-swin3d-b": tvv.Swin3D_B_Weights.KINETICS400_V1,
    "torchvision-swin3d-b-22k": tvv.Swin3D_B_Weights.KINETICS400_IMAGENET22K_V1,
}


def test_names_are_unique_and_downloadable_entries_have_distinct_https_files():
    names = registry.names()
    assert len(names) == len(set(names)) == 11
    downloadable = [e for e in registry.ENTRIES if e.url]
    assert all(e.url.startswith("https://") for e in downloadable)
    assert len({e.file_name for e in downloadable}) == len(downloadable) == 10


@pytest.mark.parametrize("name", sorted(TORCHVISION_WEIGHTS))
def test_torchvision_entries_match_torchvision_and_the_hub_hash_convention(name):
    entry, weights = registry.get(name), TORCHVISION_WEIGHTS[name]
    assert entry.url == weights.url
    metrics = weights.meta["_metrics"]["Kinetics-400"]
    assert (entry.top1, entry.top5) == (metrics["acc@1"], metrics["acc@5"])
    assert entry.size_mib == weights.meta["_file_size"] and entry.size_published
    assert entry.params_m * 1e6 == pytest.approx(weights.meta["num_params"])
    assert entry.classes == len(weights.meta["categories"])
    # torch.hub.load_state_dict_from_url(check_hash=True) takes the sha256 prefix from the file name
    assert entry.sha256_prefix == torch.hub.HASH_REGEX.search(entry.file_name).group(1)
    assert len(entry.sha256_prefix) == 8


@pytest.mark.parametrize("entry", [e for e in registry.ENTRIES if e.source == "official"], ids=lambda e: e.name)
def test_official_entries_follow_the_release_naming(entry):
    """swin_<variant>_patch244_window<D><H><W>_<dataset>...: the URL, variant and window agree; no hash is
    claimed (the model zoo publishes none)."""
    assert entry.url.startswith("https://github.com/SwinTransformer/storage/releases/download/v1.0.4/")
    match = re.fullmatch(r"swin_(tiny|small|base)_patch244_window(\d+)_(\w+)\.pth", entry.file_name)
    assert match and match.group(1) == entry.variant
    digits = match.group(2)
    assert tuple(int(d) for d in ([digits[:-2], digits[-2], digits[-1]])) == entry.window
    assert entry.sha256_prefix is None and not entry.size_published
    assert entry.classes == {"kinetics400": 400, "kinetics600": 600, "sthv2": 174}[match.group(3).split("_")[0]]


def test_the_shipped_preset_is_a_registered_name_resolved_in_the_package():
    from video_swin.zoo.synthetic_motion import PRESET_DIR

    entry = registry.get("synthetic-motion")
    assert entry.url is None
    assert resolve.preset_dir("synthetic-motion") == PRESET_DIR
    config = json.loads((PRESET_DIR / "config.json").read_text())
    assert tuple(config["architecture"]["window_size"]) == entry.window
    assert config["num_classes"] == entry.classes


def test_the_cache_check_names_the_preset_files():
    from video_swin.models import presets

    assert resolve.PRESET_FILES == (presets.CONFIG_FILE, presets.WEIGHTS_FILE)


def test_the_readme_table_is_the_registry():
    rows = {}
    for line in README.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 8 and re.fullmatch(r"`[a-z0-9-]+`", cells[0]):
            rows[cells[0].strip("`")] = cells
    assert sorted(rows) == sorted(registry.names())
    for name, (_, file_cell, variant, window, pretrain, classes, accuracy, size) in rows.items():
        entry = registry.get(name)
        if entry.file_name:
            assert file_cell.startswith(f"`{entry.file_name}`")
        assert variant == {"tiny": "T", "small": "S", "base": "B", "custom": "custom"}[entry.variant]
        assert window == ",".join(map(str, entry.window))
        assert int(classes) == entry.classes
        if entry.top5 is not None:
            assert [float(v) for v in accuracy.split(" / ")] == [entry.top1, entry.top5]
        assert float(size.lstrip("~").split()[0]) == entry.size_mib
        assert size.startswith("~") == (not entry.size_published)
