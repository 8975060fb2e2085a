"""The bad-checkpoint catalogue: files that lie about their sizes, views out of bounds, and every kind of
hostile pickle. Each case is refused by `read_tensors` with one line naming the file, before anything
larger than the file is allocated (tracemalloc, which numpy reports its buffers to), and by `video-swin
convert` with one error line, exit status 1, no traceback and nothing written; no payload ever runs.

tests/checkpoints/test_checkpoint_io.py already covers os.system / builtins.eval reduces, pickled modules,
bare pickles, unknown persistent ids, the legacy format and plain truncation; these extend that list.
"""

import torch  # noqa: I001  (torch first: importing it after TensorFlow segfaults)

import collections
import io
import json
import os
import pickle
import struct
import subprocess
import tracemalloc
import zipfile

import numpy as np
import pytest

from tests import reliability
from tests.checkpoints.test_checkpoint_io import _Reduce, write_zip_checkpoint
from video_swin.checkpoints.checkpoint_io import CheckpointError, read_tensors
from video_swin.cli import main as cli_main

# What reading may cost at most before it refuses: the file twice (a safetensors header is held as bytes
# and as text while it is parsed; a data.pkl as bytes and as the objects it rebuilds) and some bookkeeping
# (the zip directory, the error message). A lying size must never make it allocate what the file declares.
def memory_bound(file_size):
    return 2 * file_size + (1 << 20)

CASES = {}
PEAKS = {}  # case -> (bytes allocated at the peak while reading, file size)


def case(expect):
    """Registers a builder `fn(tmp_path, marker) -> path` whose file must be refused with `expect` in the
    message."""

    def register(fn):
        CASES[fn.__name__] = (fn, expect)
        return fn

    return register


# ---------------------------------------------------------------------------- helpers


class _Storage:
    pass


class _Tensor:
    """Pickles as torch's `_rebuild_tensor_v2(storage, offset, size, stride, ...)` over `storage`."""

    def __init__(self, storage, offset, size, stride, rebuild=None, extra=(), hooks=None):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride
        self.rebuild = rebuild or torch._utils._rebuild_tensor_v2
        self.extra = extra
        self.hooks = collections.OrderedDict() if hooks is None else hooks

    def __reduce__(self):
        return self.rebuild, (self.storage, self.offset, self.size, self.stride, False, self.hooks, *self.extra)


def _torch_layout(path, obj, storages, numel=4, data=None):
    """A torch.save-layout zip whose data.pkl pickles `obj`; every `_Storage` in `storages` (key -> storage)
    is a float storage of `numel` elements, with `data` (default: numel zero floats) as its record."""
    keys = {id(s): k for k, s in storages.items()}

    class P(pickle.Pickler):
        def persistent_id(self, o):
            if id(o) in keys:
                return ("storage", torch.FloatStorage, keys[id(o)], "cpu", numel)
            return None

    buf = io.BytesIO()
    P(buf, protocol=2).dump(obj)
    payload = np.zeros(min(numel, 1024), "<f4").tobytes() if data is None else data
    write_zip_checkpoint(path, buf.getvalue(), {k: payload for k in storages})
    return path


def _central_record(data: bytes, name: str) -> int:
    """Offset of the central-directory record of `name` in a zip file's bytes."""
    start = 0
    while True:
        at = data.find(b"PK\x01\x02", start)
        if at < 0:
            raise AssertionError(f"{name} not in the central directory")
        name_len = struct.unpack_from("<H", data, at + 28)[0]
        if data[at + 46 : at + 46 + name_len].decode() == name:
            return at
        start = at + 4


def _patch_central(path, suffix, **fields):
    """Patches the central-directory record of the entry ending in `suffix`: `file_size`, `compress_size`
    and `header_offset` are the zip fields at offsets 24, 20 and 42 of the record."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        full = next(i.filename for i in zf.infolist() if i.filename.endswith(suffix))
    at = _central_record(bytes(data), full)
    offsets = {"compress_size": 20, "file_size": 24, "header_offset": 42}
    for field, value in fields.items():
        struct.pack_into("<I", data, at + offsets[field], value)
    path.write_bytes(bytes(data))
    return path


def _patched_torch_save(tmp_path, suffix, **fields):
    path = tmp_path / "patched.pth"
    torch.save({"w": torch.arange(1000, dtype=torch.float32)}, path)
    return _patch_central(path, suffix, **fields)


def _safetensors(path, header: dict, data: bytes = b"", header_bytes=None):
    blob = json.dumps(header).encode() if header_bytes is None else header_bytes
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + data)
    return path


def _pickle_zip(path, pkl: bytes):
    write_zip_checkpoint(path, pkl)
    return path


def _touch(marker):
    return f"touch {marker}"


# ---------------------------------------------------------------------------- sizes and bounds


@case("extends past the end of the file")
def zip_record_size_past_the_end(tmp_path, marker):
    """The pickle declares a 4 GB storage and the central directory agrees that its record holds 4 GB: only
    the file's own size shows the lie."""
    storage = _Storage()
    path = _torch_layout(tmp_path / "c.pth", {"w": _Tensor(storage, 0, (10**9,), (1,))}, {"0": storage}, numel=10**9)
    return _patch_central(path, "data/0", file_size=4 * 10**9, compress_size=4 * 10**9)


@case("corrupt local header")
def zip_record_offset_past_the_end(tmp_path, marker):
    return _patched_torch_save(tmp_path, "data/0", header_offset=0x7FFFFFF0)


@case("data.pkl")
def zip_data_pkl_size_past_the_end(tmp_path, marker):
    return _patched_torch_save(tmp_path, "data.pkl", file_size=0x7FFFFFF0, compress_size=0x7FFFFFF0)


@case("holds 4096 bytes, 400000000000 expected")
def storage_declared_far_larger_than_the_file(tmp_path, marker):
    """The pickle declares a storage of 1e11 floats (400 GB) over a 4 KiB record."""
    storage = _Storage()
    return _torch_layout(tmp_path / "c.pth", {"w": _Tensor(storage, 0, (10**11,), (1,))}, {"0": storage},
                         numel=10**11, data=np.zeros(1024, "<f4").tobytes())


@case("reads past the end of its storage")
def view_size_far_larger_than_its_storage(tmp_path, marker):
    storage = _Storage()
    return _torch_layout(tmp_path / "c.pth", {"w": _Tensor(storage, 0, (10**6, 10**6), (10**6, 1))}, {"0": storage})


@case("reads past the end of its storage")
def view_offset_out_of_bounds(tmp_path, marker):
    storage = _Storage()
    return _torch_layout(tmp_path / "c.pth", {"w": _Tensor(storage, 10**9, (2,), (1,))}, {"0": storage})


@case("reads past the end of its storage")
def view_stride_out_of_bounds(tmp_path, marker):
    storage = _Storage()
    return _torch_layout(tmp_path / "c.pth", {"w": _Tensor(storage, 0, (2, 2), (10**12, 1))}, {"0": storage})


@case("invalid tensor stride")
def view_negative_stride(tmp_path, marker):
    storage = _Storage()
    return _torch_layout(tmp_path / "c.pth", {"w": _Tensor(storage, 0, (2,), (-1,))}, {"0": storage})


@case("invalid storage offset")
def view_negative_offset(tmp_path, marker):
    storage = _Storage()
    return _torch_layout(tmp_path / "c.pth", {"w": _Tensor(storage, -5, (2,), (1,))}, {"0": storage})


@case("more than deflate can produce")
def zip_deflate_claim_beyond_any_ratio(tmp_path, marker):
    """A deflated storage record whose declared size is 1e6 times its compressed size (deflate cannot
    exceed 1032:1): a lie, refused before the buffer is made."""
    storage = _Storage()
    numel = 250_000_000  # 1 GB declared
    path = _torch_layout(tmp_path / "c.pth", {"w": _Tensor(storage, 0, (numel,), (1,))}, {"0": storage}, numel=numel,
                         data=b"\0" * 1000)
    src = path.read_bytes()
    out = tmp_path / "deflated.pth"
    with zipfile.ZipFile(io.BytesIO(src)) as zin, zipfile.ZipFile(out, "w") as zout:
        for info in zin.infolist():
            kind = zipfile.ZIP_DEFLATED if info.filename.endswith("data/0") else zipfile.ZIP_STORED
            zout.writestr(info.filename, zin.read(info), compress_type=kind)
    data = bytearray(out.read_bytes())
    at = _central_record(bytes(data), "archive/data/0")
    struct.pack_into("<I", data, at + 24, numel * 4)  # the uncompressed size it claims
    out.write_bytes(bytes(data))
    return out


@case("end at byte 16 of a 8-byte data section")
def safetensors_offsets_past_the_end(tmp_path, marker):
    return _safetensors(tmp_path / "c.safetensors", {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}},
                        b"\0" * 8)


@case("truncated safetensors file")
def safetensors_tensor_far_larger_than_the_file(tmp_path, marker):
    n = 100_000
    return _safetensors(tmp_path / "c.safetensors",
                        {"w": {"dtype": "F32", "shape": [n, n], "data_offsets": [0, 4 * n * n]}}, b"\0" * 64)


@case("header claims")
def safetensors_header_length_past_the_end(tmp_path, marker):
    path = tmp_path / "c.safetensors"
    path.write_bytes(struct.pack("<Q", 10**12) + b'{"w": {}}')
    return path


@case("invalid JSON in header")
def safetensors_header_nested_too_deeply(tmp_path, marker):
    return _safetensors(tmp_path / "c.safetensors", {}, header_bytes=b"{" + b'"a":[' * 200_000 + b"1" + b"]" * 200_000 + b"}")


@case("data_offsets span")
def safetensors_offsets_disagree_with_the_shape(tmp_path, marker):
    return _safetensors(tmp_path / "c.safetensors", {"w": {"dtype": "F32", "shape": [10**9], "data_offsets": [0, 8]}},
                        b"\0" * 8)


@case("integer `-2`, expected usize")
def safetensors_negative_shape(tmp_path, marker):
    return _safetensors(tmp_path / "c.safetensors", {"w": {"dtype": "F32", "shape": [-2, -2], "data_offsets": [0, 16]}},
                        b"\0" * 16)


# ---------------------------------------------------------------------------- hostile pickles


@case("refuses to load global 'subprocess.Popen'")
def reduce_to_subprocess_popen(tmp_path, marker):
    import subprocess as sp

    return _pickle_zip(tmp_path / "c.pth", pickle.dumps({"w": _Reduce(sp.Popen, (["touch", str(marker)],))}, protocol=4))


@case("refuses to load global 'subprocess.check_call'")
def reduce_to_subprocess_check_call(tmp_path, marker):
    return _pickle_zip(tmp_path / "c.pth", pickle.dumps(_Reduce(subprocess.check_call, (["touch", str(marker)],)), protocol=3))


@case("refuses to load global 'os.popen'")
def reduce_to_os_popen(tmp_path, marker):
    pkl = f"cos\npopen\n(V{_touch(marker)}\ntR.".encode()
    return _pickle_zip(tmp_path / "c.pth", pkl)


@case("refuses to load global 'builtins.exec'")
def reduce_to_builtins_exec(tmp_path, marker):
    code = f"open({str(marker)!r}, 'w').close()"
    return _pickle_zip(tmp_path / "c.pth", pickle.dumps({"state_dict": {"w": _Reduce(exec, (code,))}}, protocol=4))


@case("refuses to load global 'builtins.getattr'")
def getattr_of_dunder_import(tmp_path, marker):
    """getattr(__import__('os'), 'system')('touch MARKER'), written out in protocol 0."""
    pkl = (f"cbuiltins\ngetattr\n(cbuiltins\n__import__\n(Vos\ntRVsystem\ntR(V{_touch(marker)}\ntR.").encode()
    return _pickle_zip(tmp_path / "c.pth", pkl)


@case("refuses to load global 'builtins.__import__'")
def dunder_import_by_stack_global(tmp_path, marker):
    """The same chain with STACK_GLOBAL (protocol 4), which the static scan sees only through find_class."""
    pkl = b"\x80\x04\x8c\x08builtins\x8c\n__import__\x93\x8c\x02os\x85R."
    return _pickle_zip(tmp_path / "c.pth", pkl)


@case("refuses to load global 'importlib.import_module'")
def reduce_to_importlib(tmp_path, marker):
    import importlib

    return _pickle_zip(tmp_path / "c.pth", pickle.dumps({"w": _Reduce(importlib.import_module, ("os",))}, protocol=2))


@case("refuses to load global 'copyreg._reconstructor'")
def via_copyreg_reconstructor(tmp_path, marker):
    pkl = (f"ccopyreg\n_reconstructor\n(csubprocess\nPopen\ncbuiltins\nobject\nNtR.").encode()
    return _pickle_zip(tmp_path / "c.pth", pkl)


@case("pickle opcode EXT1")
def via_copyreg_extension_registry(tmp_path, marker):
    """EXT1 names a global by its number in copyreg's extension registry: refused outright."""
    return _pickle_zip(tmp_path / "c.pth", b"\x80\x02\x82\x01(Vx\ntR.")


@case("refuses to load global 'posix.system'")
def nested_deep_inside_the_state_dict(tmp_path, marker):
    evil = _Reduce(os.system, (_touch(marker),))
    obj = {"state_dict": {"w": [{"deeper": ({"x": [evil]},)}]}, "meta": {"epoch": 3}}
    return _pickle_zip(tmp_path / "c.pth", pickle.dumps(obj, protocol=2))


@case("refuses to load global 'posix.system'")
def hostile_storage_argument_to_the_rebuild(tmp_path, marker):
    """A real rebuild function whose storage argument is itself a reduce to os.system."""
    tensor = _Tensor(_Reduce(os.system, (_touch(marker),)), 0, (1,), (1,))
    return _pickle_zip(tmp_path / "c.pth", pickle.dumps({"w": tensor}, protocol=4))


@case("refuses to load global 'builtins.eval'")
def hostile_backward_hooks_argument(tmp_path, marker):
    storage = _Storage()
    hooks = collections.OrderedDict(h=_Reduce(eval, (f"open({str(marker)!r}, 'w')",)))
    tensor = _Tensor(storage, 0, (4,), (1,), hooks=hooks)
    return _torch_layout(tmp_path / "c.pth", {"w": tensor}, {"0": storage})


@case("tensor rebuilt from something that is not a storage")
def rebuild_with_a_string_for_storage(tmp_path, marker):
    return _pickle_zip(tmp_path / "c.pth", pickle.dumps({"w": _Tensor("os.system", 0, (4,), (1,))}, protocol=2))


@case("invalid tensor size")
def rebuild_with_a_hundred_dimensions(tmp_path, marker):
    storage = _Storage()
    return _torch_layout(tmp_path / "c.pth", {"w": _Tensor(storage, 0, (1,) * 100, (1,) * 100)}, {"0": storage})


@case("unsupported _rebuild_from_type_v2 call")
def rebuild_from_type_with_foreign_arguments(tmp_path, marker):
    pkl = (b"\x80\x02ctorch._tensor\n_rebuild_from_type_v2\n(ctorch._utils\n_rebuild_tensor_v2\nctorch\nTensor\n"
           b"Vnot a tuple\n}tR.")
    return _pickle_zip(tmp_path / "c.pth", pkl)


@case("invalid dtype")
def rebuild_v3_with_a_string_dtype(tmp_path, marker):
    storage = _Storage()
    tensor = _Tensor(storage, 0, (4,), (1,), rebuild=torch._utils._rebuild_tensor_v3, extra=("float32",))
    return _torch_layout(tmp_path / "c.pth", {"w": tensor}, {"0": storage})


@case("refuses to load global 'torch.storage._load_from_bytes'")
def torch_storage_load_from_bytes(tmp_path, marker):
    """torch's own legacy loader would unpickle the bytes it is given without restriction."""
    return _pickle_zip(tmp_path / "c.pth", b"\x80\x02ctorch.storage\n_load_from_bytes\nC\x04evil\x85R.")


@case("numpy dtype 'O8' is not admitted")
def numpy_object_array(tmp_path, marker):
    """An object-dtype numpy array would unpickle arbitrary objects as its items."""
    return _pickle_zip(tmp_path / "c.pth", pickle.dumps({"w": np.array([None, 1], dtype=object)}, protocol=2))


@case("unsupported _codecs.encode call")
def codecs_encode_with_a_foreign_codec(tmp_path, marker):
    return _pickle_zip(tmp_path / "c.pth", b"\x80\x02c_codecs\nencode\nVx\nVzlib_codec\n\x86R.")


# ---------------------------------------------------------------------------- the checks


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_checkpoint_is_refused(name, tmp_path, capsys):
    build, expect = CASES[name]
    marker = tmp_path / "MARKER"
    path = build(tmp_path, marker)
    size = os.path.getsize(path)

    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError) as info:
            read_tensors(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = str(info.value)
    assert "\n" not in message and str(path) in message and expect in message, message
    assert peak <= memory_bound(size), f"{peak} bytes allocated reading a {size}-byte file"
    PEAKS[name] = (peak, size)

    out = tmp_path / "preset"
    capsys.readouterr()
    assert cli_main(["convert", str(path), str(out)]) == 1
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("video-swin: error: ") and expect in lines[0], err
    assert "Traceback" not in err
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".preset")]
    assert not marker.exists()


def test_record_the_memory_of_refusals():
    """The figures docs/reliability.md shows: what reading cost before each refusal (run after the cases)."""
    if not PEAKS:
        pytest.skip("no case ran in this session")
    largest = max(PEAKS, key=lambda k: PEAKS[k][0])
    closest = max(PEAKS, key=lambda k: PEAKS[k][0] / memory_bound(PEAKS[k][1]))
    reliability.record("hostile_checkpoints", {
        "cases": len(PEAKS),
        "largest_peak_bytes": PEAKS[largest][0],
        "largest_peak_file_bytes": PEAKS[largest][1],
        "largest_peak_case": largest,
        "largest_fraction_of_the_bound": PEAKS[closest][0] / memory_bound(PEAKS[closest][1]),
        "largest_fraction_of_the_bound_case": closest,
        "bound": "2 x file size + 1 MiB",
    })
