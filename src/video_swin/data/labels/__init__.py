"""Class-name lists for the datasets the official Video Swin checkpoints were trained on.

Each shipped file holds one class name per line, in the class-index order of the
official checkpoints' classifier heads:

* ``kinetics400.txt`` -- 400 names, mmaction2 ``tools/data/kinetics/label_map_k400.txt``
  order (alphabetical; identical to torchvision's Kinetics-400 category list).
* ``kinetics600.txt`` -- 600 names, mmaction2 ``label_map_k600.txt`` order (alphabetical).
* ``ssv2.txt`` -- 174 Something-Something-v2 templates, mmaction2
  ``tools/data/sthv2/label_map.txt`` (the index order of the dataset's
  ``something-something-v2-labels.json``, with the ``[...]`` brackets removed).
"""

from __future__ import annotations

import os
from importlib import resources

__all__ = ["DATASETS", "load_labels", "labels_for_num_classes", "read_label_file"]

# dataset name -> (shipped file, number of classes)
DATASETS: dict[str, tuple[str, int]] = {
    "kinetics400": ("kinetics400.txt", 400),
    "kinetics600": ("kinetics600.txt", 600),
    "ssv2": ("ssv2.txt", 174),
}
_BY_COUNT = {count: name for name, (_file, count) in DATASETS.items()}


def _parse(text: str, source: str) -> list[str]:
    names = [line.strip() for line in text.splitlines()]
    names = [n for n in names if n]
    if not names:
        raise ValueError(f"label file {source} is empty: expected one class name per line")
    return names


def read_label_file(path: str | os.PathLike) -> list[str]:
    """Read a label file: one class name per line; blank lines are skipped.

    Raises ``ValueError`` if the file holds no names (and ``OSError`` if it
    cannot be read).
    """
    with open(path, encoding="utf-8") as fh:
        return _parse(fh.read(), os.fspath(path))


def load_labels(name_or_count: str | int) -> list[str]:
    """The shipped class names for ``'kinetics400'``, ``'kinetics600'`` or ``'ssv2'``
    (or for the class counts 400, 600, 174)."""
    if isinstance(name_or_count, bool):
        raise TypeError("load_labels expects a dataset name or a class count, not a bool")
    if isinstance(name_or_count, int):
        if name_or_count not in _BY_COUNT:
            raise ValueError(f"no shipped label list has {name_or_count} classes "
                             f"(known: {sorted(_BY_COUNT)})")
        name = _BY_COUNT[name_or_count]
    elif isinstance(name_or_count, str):
        name = name_or_count.strip().lower().replace("-", "").replace("_", "")
        name = {"k400": "kinetics400", "k600": "kinetics600", "sthv2": "ssv2",
                "somethingsomethingv2": "ssv2"}.get(name, name)
        if name not in DATASETS:
            raise ValueError(f"unknown label set {name_or_count!r} (known: {', '.join(DATASETS)})")
    else:
        raise TypeError(f"load_labels expects a dataset name or a class count, got {type(name_or_count).__name__}")
    filename, count = DATASETS[name]
    text = resources.files(__name__).joinpath(filename).read_text(encoding="utf-8")
    names = _parse(text, filename)
    if len(names) != count:  # guards against a damaged install
        raise ValueError(f"shipped label file {filename} has {len(names)} names, expected {count}")
    return names


def labels_for_num_classes(n: int) -> list[str] | None:
    """The shipped class names for a head with ``n`` classes, or None if none match."""
    if isinstance(n, bool) or not isinstance(n, int) or n not in _BY_COUNT:
        return None
    return load_labels(n)
