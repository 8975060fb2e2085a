"""The bad-preset catalogue: config.json naming another class or module, impossible architectures, class
names that do not fit, weights missing, truncated, mis-shaped or declaring far more than the file holds.
Each is refused by `video-swin info` (which builds the model and loads its weights) with one error line
naming the file and the problem, exit status 1 and no traceback; nothing is ever deserialised from a
preset as a Keras object, so no code in a preset runs."""

import json
import os
import shutil
import zipfile

import h5py
import numpy as np
import pytest

from video_swin.cli import main as cli_main
from video_swin.zoo.synthetic_motion import PRESET_DIR

CASES = {}


def case(expect):
    def register(fn):
        CASES[fn.__name__] = (fn, expect)
        return fn

    return register


def _edit_config(folder, edit):
    path = folder / "config.json"
    config = edit(json.loads(path.read_text()))
    path.write_text(config if isinstance(config, str) else json.dumps(config))


def _edit_architecture(folder, **changes):
    _edit_config(folder, lambda c: {**c, "architecture": {**c["architecture"], **changes}})


def _datasets(path):
    names = []
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    return names


def _replace_dataset(path, which, make):
    name = next(n for n in _datasets(path) if which in n)
    with h5py.File(path, "a") as f:
        old = f[name]
        shape, dtype = old.shape, old.dtype
        del f[name]
        make(f, name, shape, dtype)
    return name


@case("describes a Keras object (class_name 'Lambda', module 'keras.layers')")
def config_is_a_keras_object(folder):
    _edit_config(folder, lambda c: {"class_name": "Lambda", "module": "keras.layers",
                                    "config": {"function": {"class_name": "__lambda__", "config": {"code": "AAAA"}}}})


@case("unknown architecture key(s) ['class_name', 'module']")
def architecture_names_a_class_and_module(folder):
    _edit_architecture(folder, class_name="Lambda", module="builtins")


@case("invalid preset config (Expecting")
def config_is_not_json(folder):
    _edit_config(folder, lambda c: "{'architecture': None")


@case("expected a JSON object, got list")
def config_is_a_list(folder):
    _edit_config(folder, lambda c: [c])


@case("architecture embed_dim must be a positive integer, got -5")
def negative_embed_dim(folder):
    _edit_architecture(folder, embed_dim=-5)


@case("architecture window_size must be a list of 3 positive integers, got [0, 4, 4]")
def zero_window(folder):
    _edit_architecture(folder, window_size=[0, 4, 4])


@case("architecture depths must be a list of positive integers, got 'abc'")
def depths_not_a_list(folder):
    _edit_architecture(folder, depths="abc")


@case("num_heads[1] = 5 does not divide stage 1's 96 channels")
def heads_that_do_not_divide_the_channels(folder):
    _edit_architecture(folder, num_heads=[3, 5])


@case("weights, more than model.weights.h5")
def architecture_far_larger_than_its_weights(folder):
    """2**20 channels would take terabytes; refused from the file's size before anything is built."""
    _edit_architecture(folder, embed_dim=2**20, num_heads=[1, 1])


@case("3 class_names for 8 classes")
def class_names_do_not_fit_the_head(folder):
    _edit_config(folder, lambda c: {**c, "class_names": c["class_names"][:3]})


@case("num_classes must be a positive integer or null, got 0")
def zero_classes(folder):
    _edit_config(folder, lambda c: {**c, "num_classes": 0, "class_names": []})


@case("config.json is missing or not a file")
def config_missing(folder):
    os.remove(folder / "config.json")


@case("model.weights.h5 is missing or not a file")
def weights_missing(folder):
    os.remove(folder / "model.weights.h5")


@case("model.weights.h5 is missing or not a file")
def weights_are_a_directory(folder):
    os.remove(folder / "model.weights.h5")
    (folder / "model.weights.h5").mkdir()


@case("more than model.weights.h5 (5,000 bytes) can hold")
def weights_truncated(folder):
    path = folder / "model.weights.h5"
    path.write_bytes(path.read_bytes()[:5000])


@case("model.weights.h5: cannot load weights")
def weights_not_hdf5(folder):
    path = folder / "model.weights.h5"
    size = path.stat().st_size
    with zipfile.ZipFile(path, "w") as zf:  # a .keras archive under the weights' name, as large as they were
        zf.writestr("config.json", json.dumps({"class_name": "Lambda"}))
        zf.writestr("padding", os.urandom(size))


@case("expected 2 variables, but received 1")
def weights_missing_a_variable(folder):
    path = folder / "model.weights.h5"
    name = next(n for n in _datasets(path) if "patch_embedding3d/proj/vars/1" in n)
    with h5py.File(path, "a") as f:
        del f[name]


@case("The shape of the target variable and the shape of the target value")
def weights_mis_shaped(folder):
    _replace_dataset(folder / "model.weights.h5", "patch_embedding3d/norm/vars/1",
                     lambda f, name, shape, dtype: f.create_dataset(name, data=np.zeros((shape[0] + 1,), dtype)))


@case("declares")
def weights_declare_far_more_than_is_stored(folder):
    """A chunked, compressed dataset declaring 160 GB that stores nothing (Keras refuses it from the
    declared size before reading)."""
    _replace_dataset(
        folder / "model.weights.h5", "norm2/vars/0",
        lambda f, name, shape, dtype: f.create_dataset(name, shape=(200_000, 200_000), dtype="float32",
                                                       chunks=(1000, 1000), compression="gzip", fillvalue=0.5),
    )


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_preset_is_refused(name, tmp_path, capsys):
    build, expect = CASES[name]
    folder = tmp_path / "preset"
    shutil.copytree(PRESET_DIR, folder)
    build(folder)
    before = sorted(p.name for p in folder.iterdir()) if folder.exists() else None
    capsys.readouterr()
    assert cli_main(["info", str(folder)]) == 1
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("video-swin: error: "), err
    assert str(folder) in lines[0] and expect in lines[0], lines[0]
    assert "Traceback" not in err
    assert sorted(p.name for p in folder.iterdir()) == before  # nothing written


def test_invalid_protocol_is_refused_before_the_model_is_loaded(tmp_path, capsys):
    folder = tmp_path / "preset"
    shutil.copytree(PRESET_DIR, folder)
    _edit_config(folder, lambda c: {**c, "preprocessing": {**c["preprocessing"], "crop_size": 0}})
    assert cli_main(["classify", str(tmp_path / "any.mp4"), "--preset", str(folder)]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["video-swin: error: preprocessing crop_size must be a positive integer, got 0"]


def test_a_lambda_in_place_of_the_backbone_is_refused_by_keras_safe_mode(tmp_path):
    """A `.keras` archive claiming to be our classifier, its backbone a Lambda whose bytecode would write a
    file: our classifier's `from_config` deserialises the backbone in Keras' safe mode, which refuses."""
    import keras

    from video_swin.models.classifier import VideoSwinClassifier  # registers the class with Keras

    assert keras.saving.get_registered_object("video_swin>VideoSwinClassifier") is VideoSwinClassifier
    marker = tmp_path / "MARKER"
    where = str(marker)
    evil = keras.layers.Lambda(lambda x: (open(where, "w").close(), x)[1], name="backbone")
    config = {
        "module": "video_swin.models.classifier", "class_name": "VideoSwinClassifier",
        "registered_name": "video_swin>VideoSwinClassifier",
        "config": {"name": "classifier", "trainable": True, "backbone": keras.saving.serialize_keras_object(evil),
                   "num_classes": 3, "head_dropout": 0.5},
    }
    path = tmp_path / "evil.keras"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("config.json", json.dumps(config))
        zf.writestr("metadata.json", json.dumps({"keras_version": keras.__version__}))
    with pytest.raises(ValueError, match="safe_mode"):
        keras.saving.load_model(path)
    assert not marker.exists()
