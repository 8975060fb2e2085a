"""checkpoint_io reads torch.save / safetensors files without torch; every expected value here comes
from torch (or the safetensors package) itself, never from our own reader."""

import torch  # noqa: I001  (torch first: importing it after TensorFlow segfaults)
import torchvision  # noqa: F401

import argparse
import builtins
import collections
import io
import json
import os
import pickle
import struct
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from video_swin.checkpoints.checkpoint_io import CheckpointError, read_tensors, write_safetensors


# ---------------------------------------------------------------------------- helpers

def expected(t: torch.Tensor) -> np.ndarray:
    """torch's own values for ``t`` (bfloat16 widened to float32 by torch)."""
    t = t.detach()
    if t.dtype == torch.bfloat16:
        t = t.float()
    return t.numpy()


def assert_bit_exact(got: np.ndarray, want: np.ndarray, name=""):
    assert isinstance(got, np.ndarray), name
    assert got.dtype == want.dtype, (name, got.dtype, want.dtype)
    assert got.shape == want.shape, (name, got.shape, want.shape)
    assert got.tobytes() == np.ascontiguousarray(want).tobytes(), name


def assert_matches_state_dict(got: dict, sd: dict, strip_module=False):
    want = {(k[7:] if strip_module and k.startswith("module.") else k): v for k, v in sd.items()}
    assert sorted(got) == sorted(want)
    for k, v in want.items():
        assert_bit_exact(got[k], expected(v), k)


def one_line_error(path, match=None) -> str:
    with pytest.raises(CheckpointError) as info:
        read_tensors(path)
    msg = str(info.value)
    assert "\n" not in msg and msg.strip() == msg and msg
    assert os.fspath(path) in msg
    if match is not None:
        assert match in msg, msg
    return msg


def mixed_state_dict(seed=0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    base = torch.randn(4, 5, generator=gen)
    sd = collections.OrderedDict()
    sd["f32"] = torch.randn(3, 4, 5, generator=gen)
    sd["f16"] = torch.randn(7, 3, generator=gen).half()
    sd["bf16"] = torch.randn(6, 2, generator=gen).bfloat16()
    sd["f64"] = torch.randn(3, generator=gen).double()
    sd["i64"] = torch.randint(-(2**40), 2**40, (4, 3), generator=gen, dtype=torch.int64)
    sd["i32"] = torch.randint(-1000, 1000, (5,), generator=gen, dtype=torch.int32)
    sd["u8"] = torch.randint(0, 255, (2, 3), generator=gen, dtype=torch.uint8)
    sd["i8"] = torch.randint(-100, 100, (2, 3), generator=gen, dtype=torch.int8)
    sd["bool"] = torch.rand(3, 3, generator=gen) > 0.5
    sd["scalar_f32"] = torch.tensor(3.25)
    sd["scalar_i64"] = torch.tensor(-7)
    sd["scalar_bf16"] = torch.tensor(1.5, dtype=torch.bfloat16)
    sd["empty"] = torch.zeros(0, 3)
    sd["base"] = base
    sd["transposed"] = base.t()  # non-contiguous view of base's storage
    sd["rows_1_3"] = base[1:3]  # storage offset 5
    sd["column_2"] = base[:, 2]  # offset 2, stride 5
    sd["every_other"] = base[::2, 1::2]
    sd["expanded"] = torch.randn(1, 3, generator=gen).expand(4, 3)  # stride 0
    sd["bf16_t"] = torch.randn(3, 4, generator=gen).bfloat16().t()
    sd["param"] = torch.nn.Parameter(torch.randn(2, 2, generator=gen))
    return sd


def write_zip_checkpoint(path, pkl: bytes, storages=None, prefix="archive", byteorder="little"):
    """The torch.save zip layout, with our own data.pkl (for hostile / malformed files)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(f"{prefix}/data.pkl", pkl)
        zf.writestr(f"{prefix}/byteorder", byteorder)
        for key, data in (storages or {}).items():
            zf.writestr(f"{prefix}/data/{key}", data)
        zf.writestr(f"{prefix}/version", "3\n")


class _Reduce:
    """An object whose unpickling calls ``func(*args)``."""

    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


# ---------------------------------------------------------------------------- torch zip: round trips

@pytest.mark.parametrize("layout", ["state_dict+meta", "model", "module", "plain", "plain_dict"])
def test_round_trip_against_torch(tmp_path, layout):
    sd = mixed_state_dict()
    path = tmp_path / "ckpt.pth"
    if layout == "state_dict+meta":
        obj = {"state_dict": sd, "meta": {"epoch": 30, "config": "x = 1", "CLASSES": ("a", "b"),
                                          "best_score": np.float64(0.75), "seed": np.int64(3),
                                          "hist": np.arange(6.0).reshape(2, 3),
                                          "args": argparse.Namespace(lr=0.1), "tags": {"a", "b"},
                                          "blob": b"\x00\xff", "shape": torch.Size([1, 2])},
               "optimizer": {"state": {0: {"exp_avg": torch.randn(100)}}, "param_groups": [{"lr": 0.1}]}}
    elif layout == "model":  # the 2D Swin release layout
        obj = {"model": sd, "epoch": 3}
    elif layout == "module":
        obj = {"module": sd}
    elif layout == "plain":
        obj = sd
    else:
        obj = dict(sd)
    torch.save(obj, path)
    got = read_tensors(path)
    assert_matches_state_dict(got, sd)
    assert got["bf16"].dtype == np.float32 and got["f16"].dtype == np.float16
    assert got["scalar_f32"].shape == () and got["scalar_i64"].dtype == np.int64
    assert got["bool"].dtype == np.bool_


def test_views_of_shared_storage_are_independent_copies(tmp_path):
    sd = mixed_state_dict()
    torch.save(sd, tmp_path / "c.pth")
    got = read_tensors(tmp_path / "c.pth")
    for a in ("transposed", "rows_1_3", "column_2", "every_other"):
        assert not np.shares_memory(got["base"], got[a])
    got["base"][:] = 0  # writable, and the views keep torch's values
    assert_bit_exact(got["transposed"], expected(sd["transposed"]))


def test_module_prefix_and_state_dict_metadata_are_handled(tmp_path):
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    wrapped = collections.OrderedDict(("module." + k, v) for k, v in net.state_dict().items())
    wrapped._metadata = net.state_dict()._metadata  # what DataParallel checkpoints carry
    torch.save({"state_dict": wrapped, "meta": {"mmcv_version": "1.3"}}, tmp_path / "dp.pth")
    got = read_tensors(tmp_path / "dp.pth")
    assert sorted(got) == sorted(net.state_dict())
    assert_matches_state_dict(got, net.state_dict())


def test_non_tensor_entries_are_dropped(tmp_path):
    sd = {"w": torch.randn(2, 2), "step": 5, "name": "x", "nested": {"a": torch.randn(1)}}
    torch.save({"state_dict": sd}, tmp_path / "c.pth")
    got = read_tensors(tmp_path / "c.pth")
    assert list(got) == ["w"]
    assert_bit_exact(got["w"], expected(sd["w"]))


def test_tensors_with_python_attributes_and_uint16(tmp_path):
    t = torch.randn(3)
    t.note = "attribute"  # torch saves this via torch._tensor._rebuild_from_type_v2
    p = torch.nn.Parameter(torch.randn(2))
    p.extra = 1  # torch._utils._rebuild_parameter_with_state
    u16 = torch.tensor([1, 2, 65535], dtype=torch.int32).to(torch.uint16)  # _rebuild_tensor_v3
    sd = {"t": t, "p": p, "u16": u16, "c64": torch.randn(2, dtype=torch.complex64)}
    torch.save(sd, tmp_path / "c.pth")
    got = read_tensors(tmp_path / "c.pth")
    assert_bit_exact(got["t"], t.numpy())
    assert_bit_exact(got["p"], p.detach().numpy())
    assert_bit_exact(got["c64"], sd["c64"].numpy())
    assert got["u16"].dtype == np.uint16 and got["u16"].tolist() == [1, 2, 65535]


@pytest.fixture(scope="module")
def swin3d_t_state_dict():
    from torchvision.models.video import swin3d_t

    torch.manual_seed(0)
    return swin3d_t(weights=None).state_dict()


@pytest.fixture(scope="module")
def swin3d_t_file(swin3d_t_state_dict, tmp_path_factory):
    path = tmp_path_factory.mktemp("swin") / "swin3d_t.pth"
    torch.save(swin3d_t_state_dict, path)
    return path


def test_torchvision_swin3d_t_state_dict(swin3d_t_state_dict, swin3d_t_file):
    sd = swin3d_t_state_dict
    got = read_tensors(swin3d_t_file)
    assert len(got) == len(sd) > 150
    assert_matches_state_dict(got, sd)
    index_keys = [k for k in sd if k.endswith("relative_position_index")]
    assert index_keys and all(got[k].dtype == np.int64 for k in index_keys)


def test_torch_module_prefix_wrapper_dataparallel_style_on_swin(tmp_path, swin3d_t_state_dict):
    sd = swin3d_t_state_dict
    torch.save({"state_dict": {"module." + k: v for k, v in sd.items()}, "meta": {}}, tmp_path / "c.pth")
    assert_matches_state_dict(read_tensors(tmp_path / "c.pth"), sd)


def test_format_is_detected_from_bytes_not_extension(tmp_path):
    sd = {"w": torch.randn(3, 2)}
    torch.save(sd, tmp_path / "weights.safetensors")  # a zip despite the name
    import safetensors.torch

    safetensors.torch.save_file(sd, tmp_path / "weights.pth")  # safetensors despite the name
    for name in ("weights.safetensors", "weights.pth"):
        assert_bit_exact(read_tensors(tmp_path / name)["w"], sd["w"].numpy(), name)


# ---------------------------------------------------------------------------- safetensors

def test_safetensors_numpy_files_read_exactly(tmp_path):
    import safetensors.numpy

    rng = np.random.default_rng(0)
    arrays = {
        "f32": rng.standard_normal((3, 4)).astype(np.float32),
        "f16": rng.standard_normal(5).astype(np.float16),
        "f64": rng.standard_normal((2, 2)),
        "i64": rng.integers(-(2**40), 2**40, (3,)),
        "i32": rng.integers(-100, 100, (2, 3)).astype(np.int32),
        "i16": rng.integers(-100, 100, (4,)).astype(np.int16),
        "i8": rng.integers(-100, 100, (4,)).astype(np.int8),
        "u8": rng.integers(0, 255, (4,)).astype(np.uint8),
        "bool": rng.random(5) > 0.5,
        "scalar": np.array(2.5, dtype=np.float32),
        "module.prefixed": np.arange(3, dtype=np.float32),
    }
    safetensors.numpy.save_file(arrays, tmp_path / "a.safetensors", metadata={"format": "np"})
    got = read_tensors(tmp_path / "a.safetensors")
    want = safetensors.numpy.load_file(tmp_path / "a.safetensors")
    want["prefixed"] = want.pop("module.prefixed")
    assert sorted(got) == sorted(want)
    for k in want:
        assert_bit_exact(got[k], want[k], k)


def test_safetensors_torch_bf16(tmp_path):
    import safetensors.torch

    sd = {"bf16": torch.randn(4, 3).bfloat16(), "f16": torch.randn(2).half(), "i64": torch.arange(5)}
    safetensors.torch.save_file(sd, tmp_path / "t.safetensors")
    assert_matches_state_dict(read_tensors(tmp_path / "t.safetensors"), sd)


def test_our_writer_is_read_exactly_by_safetensors(tmp_path):
    import safetensors
    import safetensors.numpy

    rng = np.random.default_rng(1)
    arrays = {
        "a.weight": rng.standard_normal((5, 3)).astype(np.float32),
        "a.bias": rng.standard_normal(3).astype(np.float16),
        "index": rng.integers(0, 100, (4, 4)),
        "mask": rng.random(3) > 0.5,
        "scalar": np.array(7, dtype=np.int32),
        "empty": np.zeros((0, 2), np.float32),
        "fortran": np.asfortranarray(rng.standard_normal((3, 2))),
        "big_endian": np.arange(4, dtype=">f4"),
    }
    path = tmp_path / "ours.safetensors"
    write_safetensors(path, arrays, metadata={"source": "test"})
    assert os.listdir(tmp_path) == ["ours.safetensors"]  # temp file renamed away
    loaded = safetensors.numpy.load_file(path)
    assert sorted(loaded) == sorted(arrays)
    for k, v in arrays.items():
        assert loaded[k].shape == v.shape and np.array_equal(loaded[k], v), k
        assert loaded[k].dtype == v.dtype.newbyteorder("=") if v.dtype.itemsize > 1 else v.dtype
    with safetensors.safe_open(path, "np") as f:
        assert f.metadata() == {"source": "test"}
    # overwrite in place
    write_safetensors(path, {"x": np.ones(2, np.float32)})
    assert list(safetensors.numpy.load_file(path)) == ["x"]


# ---------------------------------------------------------------------------- hostile files

@pytest.mark.parametrize("protocol", [2, 4])  # 2: GLOBAL (static scan), 4: STACK_GLOBAL (find_class)
def test_zip_with_os_system_reduce_is_refused_without_running(tmp_path, protocol):
    marker = tmp_path / "MARKER"
    evil = _Reduce(os.system, (f"touch {marker}",))
    path = tmp_path / "evil.pth"
    write_zip_checkpoint(path, pickle.dumps({"state_dict": {"w": evil}}, protocol=protocol))
    msg = one_line_error(path, "refuses to load global")
    assert f"{os.system.__module__}.system" in msg
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 4])
def test_zip_with_builtins_eval_is_refused_without_running(tmp_path, protocol):
    marker = tmp_path / "MARKER"
    evil = _Reduce(builtins.eval, (f"open({str(marker)!r}, 'w').close()",))
    path = tmp_path / "evil.pth"
    write_zip_checkpoint(path, pickle.dumps(evil, protocol=protocol))
    one_line_error(path, "'builtins.eval'")
    assert not marker.exists()


def test_malicious_meta_in_real_torch_checkpoint_is_refused(tmp_path):
    marker = tmp_path / "MARKER"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.randn(2)}, "meta": _Reduce(os.system, (f"touch {marker}",))}, path)
    one_line_error(path, "system")
    assert not marker.exists()


def test_pickled_module_objects_are_refused(tmp_path):
    torch.save(torch.nn.Linear(2, 2), tmp_path / "model.pth")
    one_line_error(tmp_path / "model.pth", "refuses to load global 'torch.nn.modules.linear.Linear'")


def test_bare_pickle_with_malicious_reduce_is_refused(tmp_path):
    marker = tmp_path / "MARKER"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(_Reduce(os.system, (f"touch {marker}",)), protocol=2))
    msg = one_line_error(path, "bare pickle")
    assert "system" in msg
    assert not marker.exists()
    path.write_bytes(pickle.dumps(_Reduce(os.system, (f"touch {marker}",)), protocol=4))
    one_line_error(path, "bare pickle")
    assert not marker.exists()


def test_unknown_persistent_id_is_refused(tmp_path):
    class P(pickle.Pickler):
        def persistent_id(self, obj):
            return ("module", "x") if obj == "PID" else None

    buf = io.BytesIO()
    P(buf, protocol=2).dump({"w": "PID"})
    write_zip_checkpoint(tmp_path / "c.pth", buf.getvalue())
    one_line_error(tmp_path / "c.pth", "persistent id")


class _FakeStorage:
    pass


class _FakeTensor:
    def __init__(self, storage, size):
        self.storage, self.size = storage, size

    def __reduce__(self):
        return torch._utils._rebuild_tensor_v2, (self.storage, 0, self.size, (1,), False,
                                                 collections.OrderedDict())


def _handmade_checkpoint(path, size, byteorder="little"):
    """A torch-layout file whose float tensor of ``size`` views a 4-element storage."""
    storage = _FakeStorage()

    class P(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", torch.FloatStorage, "0", "cpu", 4) if obj is storage else None

    buf = io.BytesIO()
    P(buf, protocol=2).dump({"w": _FakeTensor(storage, size)})
    values = np.array([1.0, 2.5, -3.0, 4.0], dtype="<f4" if byteorder == "little" else ">f4")
    write_zip_checkpoint(path, buf.getvalue(), {"0": values.tobytes()}, byteorder=byteorder)
    return values


def test_handmade_checkpoint_reads_and_out_of_bounds_view_is_refused(tmp_path):
    values = _handmade_checkpoint(tmp_path / "ok.pth", (4,))
    assert_bit_exact(read_tensors(tmp_path / "ok.pth")["w"], values)
    assert_bit_exact(torch.load(tmp_path / "ok.pth", weights_only=True)["w"].numpy(), values)
    _handmade_checkpoint(tmp_path / "bad.pth", (1000,))
    one_line_error(tmp_path / "bad.pth", "past the end of its storage")


def test_big_endian_byteorder_record(tmp_path):
    _handmade_checkpoint(tmp_path / "big.pth", (4,), byteorder="big")
    want = torch.load(tmp_path / "big.pth", weights_only=True)["w"].numpy()
    assert_bit_exact(read_tensors(tmp_path / "big.pth")["w"], want)


def test_missing_storage_record_is_refused(tmp_path):
    torch.save({"w": torch.randn(3)}, tmp_path / "c.pth")
    with zipfile.ZipFile(tmp_path / "c.pth") as src, \
            zipfile.ZipFile(tmp_path / "d.pth", "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            if "/data/" not in info.filename:
                dst.writestr(info, src.read(info))
    one_line_error(tmp_path / "d.pth", "missing")


# ---------------------------------------------------------------------------- not checkpoints

def test_legacy_format_is_refused_with_resave_command(tmp_path):
    path = tmp_path / "legacy.pth"
    torch.save({"w": torch.randn(2)}, path, _use_new_zipfile_serialization=False)
    msg = one_line_error(path, "legacy")
    assert "torch.save(sd, 'NEW')" in msg and "weights_only=True" in msg


def test_not_checkpoints(tmp_path):
    (tmp_path / "empty.pth").write_bytes(b"")
    one_line_error(tmp_path / "empty.pth", "empty")
    (tmp_path / "text.pth").write_text("model weights:\n 1 2 3\n")
    one_line_error(tmp_path / "text.pth", "not a checkpoint")
    (tmp_path / "random.pth").write_bytes(np.random.default_rng(0).bytes(4096))
    one_line_error(tmp_path / "random.pth")
    one_line_error(tmp_path / "missing.pth", "not found")
    one_line_error(tmp_path, "directory")
    torch.save({"meta": {"epoch": 1}}, tmp_path / "no_tensors.pth")
    one_line_error(tmp_path / "no_tensors.pth", "no tensors found")
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as zf:
        zf.writestr("readme.txt", "hello")
    one_line_error(tmp_path / "other.zip", "no data.pkl")


def test_truncated_zip_checkpoint(tmp_path, swin3d_t_file):
    data = swin3d_t_file.read_bytes()
    for cut in (len(data) // 2, len(data) - 10, 100):
        (tmp_path / "cut.pth").write_bytes(data[:cut])
        one_line_error(tmp_path / "cut.pth", "truncated")


def test_truncated_safetensors(tmp_path):
    import safetensors.numpy

    full = tmp_path / "full.safetensors"
    safetensors.numpy.save_file({"a": np.arange(1000, dtype=np.float32), "b": np.ones(10)}, full)
    data = full.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) - 100])
    one_line_error(tmp_path / "cut.safetensors", "truncated")
    (tmp_path / "head.safetensors").write_bytes(data[:40])  # header cut
    one_line_error(tmp_path / "head.safetensors", "truncated")


def safetensors_file(path, header, data=b"", header_len=None, raw=None):
    """A safetensors file written byte by byte, for headers no writer would produce."""
    blob = raw if raw is not None else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob) if header_len is None else header_len) + blob + data)
    return path


F32_PAIR = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}


@pytest.mark.parametrize("header, data, header_len, raw, message", [
    (F32_PAIR, b"\0" * 8, 10_000, None, "truncated safetensors file: header claims 10000 bytes, file has 69"),
    ({}, b"", 2**63, None, "truncated safetensors file: header claims 9223372036854775808 bytes"),
    (None, b"\0" * 8, None, b"{not json}", "invalid JSON in header"),
    (None, b"", None, b'{"\xff": 1}', "invalid UTF-8 in header"),
    ({"a": 3}, b"", None, None, "invalid safetensors file"),
    (F32_PAIR, b"\0" * 4, None, None, "truncated safetensors file: its tensors end at byte 8 of a 4-byte data section"),
    (F32_PAIR, b"\0" * 16, None, None, "invalid safetensors file: 8 bytes follow the last tensor's data"),
    ({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8, None, None,
     "tensor 'a': data_offsets span 8 bytes, shape [3] of F32 needs 12"),
    ({"a": {"dtype": "F32", "shape": [2**62, 2**62], "data_offsets": [0, 8]}}, b"\0" * 8, None, None, "overflow"),
    ({"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, b"\0" * 8, None, None, "invalid safetensors file"),
    ({**F32_PAIR, "b": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8, None, None,
     "invalid offset for tensor"),
    ({"a": {"dtype": "F32", "shape": [0], "data_offsets": [8, 0]}}, b"\0" * 8, None, None, "invalid offset"),
    ({"a": {"dtype": "F8_E4M3", "shape": [2], "data_offsets": [0, 2]}}, b"\0" * 2, None, None,
     "tensor 'a' has unsupported safetensors dtype 'F8_E4M3'"),
    ({"a": {"dtype": "C64", "shape": [1], "data_offsets": [0, 8]}}, b"\0" * 8, None, None,
     "unsupported safetensors dtype 'C64'"),
    ({"a": {"dtype": "Q9", "shape": [2], "data_offsets": [0, 2]}}, b"\0" * 2, None, None, "unknown variant `Q9`"),
    ({"__metadata__": {"x": 1}, **F32_PAIR}, b"\0" * 8, None, None, "invalid safetensors file"),
])
def test_corrupt_or_hostile_safetensors_are_refused_in_one_line(tmp_path, header, data, header_len, raw, message):
    one_line_error(safetensors_file(tmp_path / "bad.safetensors", header, data, header_len, raw), message)


def test_a_huge_declared_tensor_is_refused_without_allocating_it(tmp_path):
    """A 1 KB file declaring a 400 GB tensor, read in a process whose address space is capped 1 GiB above
    what it already uses: an allocation of the declared size would raise MemoryError instead."""
    path = safetensors_file(tmp_path / "huge.safetensors",
                            {"a": {"dtype": "F32", "shape": [100000, 100000, 10], "data_offsets": [0, 4 * 10**11]}},
                            b"\0" * 1000)
    code = (
        "import resource\n"
        "from video_swin.checkpoints.checkpoint_io import CheckpointError, read_tensors\n"
        "used = int(open('/proc/self/statm').read().split()[0]) * resource.getpagesize()\n"
        "resource.setrlimit(resource.RLIMIT_AS, (used + 2**30, resource.RLIM_INFINITY))\n"
        "try:\n"
        f"    read_tensors({str(path)!r})\n"
        "except CheckpointError as e:\n"
        "    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "truncated safetensors file: its tensors end at byte 400000000000 of a 1000-byte" in out.stdout


def test_refused_writes_leave_nothing(tmp_path, monkeypatch):
    import safetensors.numpy

    path = tmp_path / "w.safetensors"
    for tensors, message in [({"c": np.ones(2, np.complex64)}, "unsupported dtype complex64"),
                             ({"o": np.array([None])}, "unsupported dtype object"),
                             ({3: np.ones(2)}, "invalid tensor name 3"),
                             ({"__metadata__": np.ones(2)}, "invalid tensor name '__metadata__'")]:
        with pytest.raises(CheckpointError, match=message):
            write_safetensors(path, tensors)
    with pytest.raises(CheckpointError, match="metadata must map str to str"):
        write_safetensors(path, {"x": np.ones(2)}, metadata={"epoch": 3})
    assert list(tmp_path.iterdir()) == []

    write_safetensors(path, {"x": np.ones(2, np.float32)})
    before = path.read_bytes()

    def half_written(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"\x10\0\0\0")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.numpy, "save_file", half_written)
    with pytest.raises(OSError, match="disk full"):
        write_safetensors(path, {"x": np.zeros(2, np.float32)})
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]


def test_our_bfloat16_is_torchs_bfloat16(tmp_path):
    import ml_dtypes
    import safetensors.torch

    values = np.array([1.5, -2.25, 3e38, 1e-40, np.inf], np.float32)
    write_safetensors(tmp_path / "b.safetensors", {"b": values.astype(ml_dtypes.bfloat16)})
    got = safetensors.torch.load_file(tmp_path / "b.safetensors")["b"]
    assert got.dtype == torch.bfloat16
    assert_bit_exact(read_tensors(tmp_path / "b.safetensors")["b"], got.float().numpy())
    assert_bit_exact(got.float().numpy(), torch.from_numpy(values).bfloat16().float().numpy())


def test_errors_of_the_unpicklers_stand_ins_name_the_file(tmp_path):
    not_a_storage = _Reduce(torch._utils._rebuild_tensor_v2, ("text", 0, (2,), (1,), False, collections.OrderedDict()))
    write_zip_checkpoint(tmp_path / "c.pth", pickle.dumps({"w": not_a_storage}, protocol=2))
    one_line_error(tmp_path / "c.pth", "tensor rebuilt from something that is not a storage")


def test_reader_never_imports_torch(tmp_path):
    torch.save({"state_dict": {"w": torch.randn(3)}}, tmp_path / "c.pth")
    code = ("import sys; from video_swin.checkpoints.checkpoint_io import read_tensors; "
            f"r = read_tensors({str(tmp_path / 'c.pth')!r}); "
            "assert r['w'].shape == (3,); assert 'torch' not in sys.modules; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
