import pytest

from video_swin.data.labels import DATASETS, labels_for_num_classes, load_labels, read_label_file


@pytest.mark.parametrize("name,count", [("kinetics400", 400), ("kinetics600", 600), ("ssv2", 174)])
def test_shipped_lists_have_exact_counts_and_unique_names(name, count):
    names = load_labels(name)
    assert len(names) == count
    assert len(set(names)) == count
    assert all(n == n.strip() and n for n in names)
    assert load_labels(count) == names
    assert labels_for_num_classes(count) == names
    assert DATASETS[name][1] == count


def test_kinetics400_matches_torchvision_category_order():
    # an independent copy of the Kinetics-400 class order (index -> name)
    import torch  # noqa: F401  (torch before anything else that may pull in TF)
    from torchvision.models._meta import _KINETICS400_CATEGORIES

    assert load_labels("kinetics400") == list(_KINETICS400_CATEGORIES)


def test_known_indices():
    k400, k600, ssv2 = load_labels(400), load_labels(600), load_labels(174)
    assert k400[0] == "abseiling" and k400[-1] == "zumba"
    assert k400[196] == "massaging person's head"
    # K600 index -> name pairs seen in third-party model outputs
    for idx, name in [(31, "biking through snow"), (74, "casting fishing line"), (124, "cutting apple"),
                      (242, "jumping jacks"), (309, "passing american football (not in game)"),
                      (466, "skiing mono"), (509, "swinging baseball bat"), (599, "zumba")]:
        assert k600[idx] == name
    # SSv2: official labels.json indices, brackets removed
    assert ssv2[0] == "Approaching something with your camera"
    assert ssv2[33] == "Moving part of something"
    assert ssv2[131] == "Something being deflected from something"
    assert ssv2[173] == "Wiping something off of something"


def test_kinetics_lists_are_in_sorted_order():
    # the official class index order is the sorted class-name order
    for name in ("kinetics400", "kinetics600"):
        names = load_labels(name)
        assert names == sorted(names)


def test_aliases_and_unknowns():
    assert load_labels("K400") == load_labels("kinetics400")
    assert load_labels("kinetics-600") == load_labels("kinetics600")
    assert labels_for_num_classes(1000) is None
    assert labels_for_num_classes(True) is None
    with pytest.raises(ValueError, match="unknown label set"):
        load_labels("imagenet")
    with pytest.raises(ValueError, match="no shipped label list"):
        load_labels(10)


def test_read_label_file(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("  first class \n\nsecond\n\n", encoding="utf-8")
    assert read_label_file(path) == ["first class", "second"]
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n", encoding="utf-8")
    with pytest.raises(ValueError, match="empty"):
        read_label_file(empty)
