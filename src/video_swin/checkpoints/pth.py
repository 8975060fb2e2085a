"""The `.pth` reader: torch.save zip archives (torch >= 1.6) into numpy arrays, without torch and without
executing anything from the file.

Security model
--------------
``data.pkl`` is unpickled by :class:`_RestrictedUnpickler`, whose ``find_class`` admits only an explicit
allow-list of globals, and *every* admitted global is mapped to a function or class defined in this module
(never to the real torch or numpy object; neither torch nor the named module is ever imported).  Any other
global -- ``os.system``, ``builtins.eval``, ``subprocess.Popen``, ``torch.nn.Module``... -- raises
:class:`CheckpointError` before the REDUCE that would call it is reached, so nothing from a hostile file
executes.  The pickle is also scanned statically (``pickletools.genops``) before it is unpickled, so a file
whose GLOBAL opcodes name a refused global is rejected without running the unpickler at all.  Persistent
ids other than torch's ``('storage', <storage type>, key, location, numel)`` are refused.

Tensor rebuild calls do not read any data: they return lightweight references.  Only the tensors of the
selected state dict are materialised afterwards, one storage at a time, read straight from the archive into
their final buffer (optimizer state and other ignored entries are never read).

No library reads `.pth` without torch, hence this module; callers use ``checkpoint_io.read_tensors``,
which sniffs the format and dispatches here.
"""

from __future__ import annotations

import collections
import io
import math
import pickle
import pickletools
import struct
import zipfile
from typing import Any

import numpy as np

from video_swin.checkpoints.errors import CheckpointError, fail, naming

__all__ = ["read_torch_zip", "pickle_globals"]


# ----------------------------------------------------------------------------
# dtypes
# ----------------------------------------------------------------------------

_BF16 = "bfloat16"  # marker: stored as uint16, returned as float32

# torch legacy storage class name -> numpy dtype (or _BF16)
_STORAGE_TYPES = {
    "FloatStorage": "f4",
    "DoubleStorage": "f8",
    "HalfStorage": "f2",
    "BFloat16Storage": _BF16,
    "LongStorage": "i8",
    "IntStorage": "i4",
    "ShortStorage": "i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
    "ComplexFloatStorage": "c8",
    "ComplexDoubleStorage": "c16",
}

# torch dtype object name (as pickled for _rebuild_tensor_v3) -> numpy dtype
_TORCH_DTYPES = {
    "float32": "f4", "float": "f4",
    "float64": "f8", "double": "f8",
    "float16": "f2", "half": "f2",
    "bfloat16": _BF16,
    "int64": "i8", "long": "i8",
    "int32": "i4", "int": "i4",
    "int16": "i2", "short": "i2",
    "int8": "i1",
    "uint8": "u1",
    "uint16": "u2", "uint32": "u4", "uint64": "u8",
    "bool": "?",
    "complex64": "c8", "cfloat": "c8",
    "complex128": "c16", "cdouble": "c16",
}
_UNSUPPORTED_TORCH_DTYPES = {
    "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz", "float8_e8m0fnu",
    "float4_e2m1fn_x2", "complex32", "chalf", "qint8", "quint8", "qint32", "quint4x2", "quint2x4",
    "bits8", "bits16", "bits1x8", "bits2x4", "bits4x2",
}


def _np_dtype(code: str, big_endian: bool = False) -> np.dtype:
    """numpy dtype of the *stored* elements (bfloat16 is stored as uint16)."""
    dt = np.dtype("u2" if code == _BF16 else code)
    if dt.itemsize > 1:
        dt = dt.newbyteorder(">" if big_endian else "<")
    return dt


def _finish(arr: np.ndarray, code: str) -> np.ndarray:
    """Convert stored elements to the returned native-order array."""
    if code == _BF16:  # bfloat16 is the top half of a float32: widening is exact
        wide = arr.astype(np.uint32)  # (native order, so the shift works on values)
        wide <<= 16  # in place: keeps 0-d arrays arrays
        return wide.view(np.float32)
    if not arr.dtype.isnative:
        return arr.astype(arr.dtype.newbyteorder("="))
    if arr.dtype.byteorder not in ("=", "|"):
        arr = arr.view(arr.dtype.newbyteorder("="))  # '<f4' -> 'float32', no copy
    return arr


# ----------------------------------------------------------------------------
# Objects produced by the restricted unpickler (all defined here, all inert)
# ----------------------------------------------------------------------------

class _StorageType:
    """Stands in for ``torch.FloatStorage`` & co. (never called)."""

    __slots__ = ("name", "code")

    def __init__(self, name: str, code: str | None):
        self.name, self.code = name, code  # code None: UntypedStorage (raw bytes)

    def __call__(self, *args, **kwargs):
        raise CheckpointError(f"data.pkl tried to call the storage type torch.{self.name}")


class _DType:
    """Stands in for a ``torch.<dtype>`` object."""

    __slots__ = ("name", "code")

    def __init__(self, name: str, code: str):
        self.name, self.code = name, code

    def __call__(self, *args, **kwargs):
        raise CheckpointError(f"data.pkl tried to call the dtype torch.{self.name}")


class _Storage:
    __slots__ = ("key", "code", "nbytes")

    def __init__(self, key: str, code: str | None, nbytes: int):
        self.key, self.code, self.nbytes = key, code, nbytes


class _TensorRef:
    """A tensor that has not been read yet: storage + dtype + view geometry."""

    __slots__ = ("storage", "code", "offset", "shape", "stride")

    def __init__(self, storage: _Storage, code: str, offset: int, shape: tuple, stride: tuple):
        self.storage, self.code, self.offset, self.shape, self.stride = storage, code, offset, shape, stride


class _TensorTypeMarker:
    """Stands in for ``torch.Tensor`` / ``torch.nn.Parameter`` in _rebuild_from_type_v2."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __call__(self, *args, **kwargs):
        raise CheckpointError(f"data.pkl tried to call {self.name}")


def _int_tuple(value, what: str) -> tuple:
    if not isinstance(value, (tuple, list)) or len(value) > 64:
        raise CheckpointError(f"data.pkl: invalid tensor {what} {value!r}")
    out = tuple(value)
    if not all(type(v) is int and v >= 0 for v in out):
        raise CheckpointError(f"data.pkl: invalid tensor {what} {value!r}")
    return out


def _make_ref(storage, offset, size, stride, code=None) -> _TensorRef:
    if not isinstance(storage, _Storage):
        raise CheckpointError("data.pkl: tensor rebuilt from something that is not a storage")
    if code is None:
        code = storage.code
        if code is None:
            raise CheckpointError("data.pkl: untyped storage used without a dtype")
    if type(offset) is not int or offset < 0:
        raise CheckpointError(f"data.pkl: invalid storage offset {offset!r}")
    shape = _int_tuple(size, "size")
    strides = _int_tuple(stride, "stride")
    if len(shape) != len(strides):
        raise CheckpointError(f"data.pkl: tensor size {shape} and stride {strides} disagree")
    return _TensorRef(storage, code, offset, shape, strides)


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _make_ref(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    return _make_ref(storage, storage_offset, size, stride)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks,
                       dtype, metadata=None):
    if not isinstance(dtype, _DType):
        raise CheckpointError(f"data.pkl: invalid dtype {dtype!r} for _rebuild_tensor_v3")
    return _make_ref(storage, storage_offset, size, stride, dtype.code)


def _rebuild_parameter(data, requires_grad=True, backward_hooks=None):
    if not isinstance(data, _TensorRef):
        raise CheckpointError("data.pkl: parameter rebuilt from something that is not a tensor")
    return data


def _rebuild_parameter_with_state(data, requires_grad, backward_hooks, state):
    return _rebuild_parameter(data)


_REBUILD_FUNCS = (_rebuild_tensor, _rebuild_tensor_v2, _rebuild_tensor_v3,
                  _rebuild_parameter, _rebuild_parameter_with_state)


def _rebuild_from_type_v2(func, new_type, args, state):
    # torch uses this for tensors carrying Python attributes; only plain
    # Tensor/Parameter over one of our own rebuild functions is admitted.
    if func not in _REBUILD_FUNCS or not isinstance(new_type, _TensorTypeMarker) \
            or not isinstance(args, tuple):
        raise CheckpointError("data.pkl: unsupported _rebuild_from_type_v2 call")
    return func(*args)


def _torch_size(seq=()):
    if not isinstance(seq, (tuple, list)):
        raise CheckpointError("data.pkl: invalid torch.Size")
    return tuple(seq)


def _torch_device(kind="cpu", index=None):
    if not isinstance(kind, str):
        raise CheckpointError("data.pkl: invalid torch.device")
    return kind if index is None else f"{kind}:{index}"


def _codecs_encode(obj, encoding="utf-8", errors="strict"):
    # protocol-2 pickles encode bytes objects as _codecs.encode(str, 'latin1')
    if not isinstance(obj, str) or encoding not in ("latin1", "latin-1", "utf-8", "utf8", "ascii") \
            or errors != "strict":
        raise CheckpointError("data.pkl: unsupported _codecs.encode call")
    return obj.encode(encoding)


def _safe_set(items=()):
    if not isinstance(items, (list, tuple)):
        raise CheckpointError("data.pkl: invalid set")
    return set(items)


def _safe_frozenset(items=()):
    return frozenset(_safe_set(items))


def _safe_bytearray(data=b"", encoding=None):
    if isinstance(data, str) and encoding in ("latin1", "latin-1", "utf-8", "ascii"):
        return bytearray(data.encode(encoding))
    if isinstance(data, (bytes, bytearray)) and encoding is None:
        return bytearray(data)
    raise CheckpointError("data.pkl: unsupported bytearray call")


def _safe_complex(real=0.0, imag=0.0):
    if not all(isinstance(v, (int, float)) for v in (real, imag)):
        raise CheckpointError("data.pkl: invalid complex")
    return complex(real, imag)


# --- numpy scalars / arrays that training code leaves in 'meta' (e.g. best_score)

_NP_DTYPE_SPECS = {"b1", "?", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8",
                   "f2", "f4", "f8", "c8", "c16"}


class _NpDType:
    """Stands in for ``numpy.dtype(spec)``; only plain numeric dtypes."""

    __slots__ = ("spec", "byteorder")

    def __init__(self, spec, align=False, copy=True):
        if not isinstance(spec, str) or spec not in _NP_DTYPE_SPECS:
            raise CheckpointError(f"data.pkl: numpy dtype {spec!r} is not admitted")
        self.spec, self.byteorder = spec, "<"

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) > 1 and state[1] in ("<", ">", "|", "="):
            self.byteorder = state[1]

    def numpy(self) -> np.dtype:
        dt = np.dtype(self.spec)
        return dt.newbyteorder(self.byteorder) if dt.itemsize > 1 and self.byteorder in "<>" else dt


def _np_scalar(dtype, data=None):
    if not isinstance(dtype, _NpDType) or not isinstance(data, (bytes, bytearray)):
        raise CheckpointError("data.pkl: unsupported numpy scalar")
    dt = dtype.numpy()
    if len(data) != dt.itemsize:
        raise CheckpointError("data.pkl: numpy scalar has the wrong number of bytes")
    return np.frombuffer(bytes(data), dtype=dt)[0]


class _NdArrayMarker:
    """Stands in for ``numpy.ndarray`` (only as the argument of _reconstruct)."""

    def __call__(self, *args, **kwargs):
        raise CheckpointError("data.pkl tried to call numpy.ndarray")


_NDARRAY = _NdArrayMarker()


class _NdArrayBuilder:
    """Result of ``numpy.core.multiarray._reconstruct``; filled by BUILD."""

    __slots__ = ("array",)

    def __init__(self):
        self.array = None

    def __setstate__(self, state):
        try:
            _version, shape, dtype, is_fortran, raw = state
        except (TypeError, ValueError):
            raise CheckpointError("data.pkl: invalid numpy array state") from None
        shape = _int_tuple(shape, "numpy shape")
        if not isinstance(dtype, _NpDType) or not isinstance(raw, (bytes, bytearray)):
            raise CheckpointError("data.pkl: unsupported numpy array (only numeric dtypes)")
        dt = dtype.numpy()
        if len(raw) != math.prod(shape) * dt.itemsize:
            raise CheckpointError("data.pkl: numpy array data has the wrong size")
        arr = np.frombuffer(bytes(raw), dtype=dt).reshape(shape, order="F" if is_fortran else "C")
        self.array = _finish(arr.copy(order="C"), "")


def _np_reconstruct(subtype, shape=(0,), dtype_code=b"b"):
    if subtype is not _NDARRAY:
        raise CheckpointError("data.pkl: numpy _reconstruct of a type other than ndarray")
    return _NdArrayBuilder()


class _Opaque:
    """Inert stand-in for known, harmless metadata classes (argparse.Namespace,
    yacs CfgNode, mmcv/mmengine config and log objects).  Their module is never
    imported; construction, state and items are discarded.  They are never
    part of the returned weights."""

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass

    def __setitem__(self, key, value):
        pass

    def append(self, value):
        pass

    def extend(self, values):
        pass


_INERT_METADATA_GLOBALS = (
    "argparse.Namespace",
    "yacs.config.CfgNode",
    "mmcv.utils.config.ConfigDict",
    "mmengine.config.config.ConfigDict",
    "mmengine.logging.history_buffer.HistoryBuffer",
    "mmengine.logging.message_hub.MessageHub",
)


def _build_allowed_globals() -> dict[str, Any]:
    allowed: dict[str, Any] = {
        "collections.OrderedDict": collections.OrderedDict,  # plain container
        "torch._utils._rebuild_tensor": _rebuild_tensor,
        "torch._utils._rebuild_tensor_v2": _rebuild_tensor_v2,
        "torch._utils._rebuild_tensor_v3": _rebuild_tensor_v3,
        "torch._utils._rebuild_parameter": _rebuild_parameter,
        "torch._utils._rebuild_parameter_with_state": _rebuild_parameter_with_state,
        "torch._tensor._rebuild_from_type_v2": _rebuild_from_type_v2,
        "torch.Tensor": _TensorTypeMarker("torch.Tensor"),
        "torch.nn.parameter.Parameter": _TensorTypeMarker("torch.nn.parameter.Parameter"),
        "torch.storage.UntypedStorage": _StorageType("UntypedStorage", None),
        "torch.UntypedStorage": _StorageType("UntypedStorage", None),
        "torch.Size": _torch_size,
        "torch.device": _torch_device,
        "_codecs.encode": _codecs_encode,
        "builtins.set": _safe_set,
        "builtins.frozenset": _safe_frozenset,
        "builtins.bytearray": _safe_bytearray,
        "builtins.complex": _safe_complex,
        "numpy.dtype": _NpDType,
        "numpy.ndarray": _NDARRAY,
    }
    for name, code in _STORAGE_TYPES.items():
        allowed[f"torch.{name}"] = _StorageType(name, code)
    for name, code in _TORCH_DTYPES.items():
        allowed[f"torch.{name}"] = _DType(name, code)
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[f"{mod}.scalar"] = _np_scalar
        allowed[f"{mod}._reconstruct"] = _np_reconstruct
    for full in _INERT_METADATA_GLOBALS:
        allowed[full] = type(full.rsplit(".", 1)[1], (_Opaque,), {"__module__": __name__})
    return allowed


_ALLOWED_GLOBALS = _build_allowed_globals()


def _normalize_global(full: str) -> str:
    # protocol-2 pickles spell Python 3's builtins module as Python 2's __builtin__
    if full.startswith("__builtin__."):
        return "builtins." + full[len("__builtin__."):]
    return full


def _global_problem(full: str) -> str | None:
    """None if ``full`` ('module.name') is admitted, else the reason (one line)."""
    full = _normalize_global(full)
    if full in _ALLOWED_GLOBALS:
        return None
    if full.startswith("torch.") and full.rsplit(".", 1)[1] in _UNSUPPORTED_TORCH_DTYPES:
        return f"contains tensors of dtype {full}, which is not supported"
    return (f"refuses to load global '{full}' from data.pkl: only tensor-rebuild functions, "
            "storage/dtype types and plain containers are admitted (the file may be malicious, "
            "or it pickles Python objects such as a whole nn.Module; save model.state_dict() instead)")


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, path, storages: dict[str, _Storage], entry_sizes: dict[str, int]):
        super().__init__(file)
        self._path = path
        self._storages = storages
        self._entry_sizes = entry_sizes

    def find_class(self, module, name):  # noqa: D401 - pickle API
        full = _normalize_global(f"{module}.{name}")
        problem = _global_problem(full)
        if problem is not None:
            raise fail(self._path, problem)
        return _ALLOWED_GLOBALS[full]

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise fail(self._path, f"data.pkl has an unsupported persistent id {str(pid)[:80]!r}")
        _, stype, key, _location, numel = pid
        if not isinstance(stype, _StorageType) or not isinstance(key, str) \
                or type(numel) is not int or numel < 0:
            raise fail(self._path, f"data.pkl has a malformed storage reference {str(pid)[:80]!r}")
        if key not in self._entry_sizes:
            raise fail(self._path, f"storage data/{key} is missing from the archive (truncated or corrupt file)")
        nbytes = numel * (1 if stype.code is None else _np_dtype(stype.code).itemsize)
        cached = self._storages.get(key)
        if cached is None:
            cached = self._storages[key] = _Storage(key, stype.code, nbytes)
        elif cached.nbytes != nbytes or cached.code != stype.code:
            raise fail(self._path, f"storage data/{key} is referenced with inconsistent types")
        return cached


# ----------------------------------------------------------------------------
# Static pickle scan
# ----------------------------------------------------------------------------

_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE",
               "SHORT_BINSTRING", "BINSTRING", "STRING"}


def _scan_globals(data: bytes):
    """Yield ('global', 'module.name') / ('opcode', name) found statically."""
    recent: list[str] = []
    for op, arg, _pos in pickletools.genops(data):
        if op.name in ("GLOBAL", "INST"):
            module, _, name = str(arg).partition(" ")
            yield "global", f"{module}.{name}"
        elif op.name == "STACK_GLOBAL":
            if len(recent) >= 2:
                yield "stack_global", f"{recent[-2]}.{recent[-1]}"
        elif op.name in ("EXT1", "EXT2", "EXT4"):
            yield "opcode", op.name
        if op.name in _STRING_OPS:
            recent = (recent + [str(arg)])[-2:]


def pickle_globals(path) -> list[str]:
    """The globals a (refused) bare pickle names, for the refusal message; [] when it cannot tell."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(1 << 20)
        return [full for kind, full in _scan_globals(data) if kind != "opcode"]
    except Exception:  # purely informational; the file is refused anyway
        return []


# ----------------------------------------------------------------------------
# torch.save zip format
# ----------------------------------------------------------------------------

def read_torch_zip(path, size: int) -> dict[str, np.ndarray]:
    with open(path, "rb") as fh:
        try:
            zf = zipfile.ZipFile(fh)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
            raise fail(path, f"truncated or corrupt zip archive ({exc})") from None
        with zf:
            infos = {info.filename: info for info in zf.infolist()}
            pkl_names = [n for n in infos if n == "data.pkl" or (n.endswith("/data.pkl") and n.count("/") == 1)]
            if not pkl_names:
                hint = " (it looks like a TorchScript archive; save model.state_dict() with torch.save)" \
                    if any(n.endswith("constants.pkl") for n in infos) else ""
                raise fail(path, f"zip archive has no data.pkl, not a torch.save checkpoint{hint}")
            if len(pkl_names) > 1:
                raise fail(path, f"zip archive has several data.pkl records: {pkl_names[:4]}")
            prefix = pkl_names[0][: -len("data.pkl")]

            big_endian = False
            if prefix + "byteorder" in infos:
                order = _read_entry(zf, fh, size, infos[prefix + "byteorder"], path).decode("ascii", "replace").strip()
                if order not in ("little", "big"):
                    raise fail(path, f"unknown byteorder record {order!r}")
                big_endian = order == "big"

            data_prefix = prefix + "data/"
            entry_sizes = {n[len(data_prefix):]: i.file_size for n, i in infos.items()
                           if n.startswith(data_prefix) and "/" not in n[len(data_prefix):]}
            pkl = _read_entry(zf, fh, size, infos[pkl_names[0]], path)
            _prescan(path, pkl)

            storages: dict[str, _Storage] = {}
            try:
                obj = _RestrictedUnpickler(io.BytesIO(pkl), path, storages, entry_sizes).load()
            except CheckpointError as exc:
                raise naming(path, exc) from None
            except RecursionError:
                raise fail(path, "data.pkl is nested too deeply") from None
            except Exception as exc:  # malformed pickle / bad arguments to an admitted global
                raise fail(path, f"corrupt data.pkl ({type(exc).__name__}: {exc})") from None

            refs = _select_weights(path, obj)
            return _materialize(path, fh, size, zf, infos, data_prefix, refs, big_endian)


def _read_entry(zf: zipfile.ZipFile, fh, size: int, info: zipfile.ZipInfo, path) -> bytes:
    _entry_data_offset(fh, info, size, path)  # its sizes are checked before zipfile reads that many bytes
    try:
        return zf.read(info)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
        raise fail(path, f"truncated or corrupt zip entry {info.filename} ({exc})") from None


def _prescan(path, pkl: bytes) -> None:
    try:
        for kind, full in _scan_globals(pkl):
            if kind == "opcode":
                raise fail(path, f"data.pkl uses the pickle opcode {full}, which is refused")
            if kind == "global":
                problem = _global_problem(full)
                if problem is not None:
                    raise fail(path, problem)
    except CheckpointError:
        raise
    except Exception as exc:  # pickletools rejects malformed streams
        raise fail(path, f"corrupt data.pkl ({exc})") from None


def _select_weights(path, obj) -> dict[str, Any]:
    """Pick the state dict out of the unpickled object; keep tensors (refs) only."""
    candidate = None
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "module"):
            if isinstance(obj.get(key), dict):
                candidate = obj[key]
                break
        else:
            candidate = obj
    weights: dict[str, Any] = {}
    if candidate is not None:
        for key, value in candidate.items():
            if not isinstance(key, str):
                continue
            if isinstance(value, _NdArrayBuilder):
                value = value.array
            if isinstance(value, (_TensorRef, np.ndarray)):
                weights[key] = value
    if not weights:
        if isinstance(obj, dict):
            keys = ", ".join(repr(k) for k in list(obj)[:8])
            raise fail(path, f"no tensors found (top-level keys: {keys}); expected a state dict, "
                        "or a dict with 'state_dict', 'model' or 'module'")
        raise fail(path, f"no tensors found (the checkpoint holds a {type(obj).__name__}, not a state dict)")
    return weights


def _entry_data_offset(fh, info: zipfile.ZipInfo, size: int, path) -> int:
    fh.seek(info.header_offset)
    header = fh.read(30)
    if len(header) != 30 or header[:4] != b"PK\x03\x04":
        raise fail(path, f"corrupt local header for {info.filename}")
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    start = info.header_offset + 30 + name_len + extra_len
    stored = info.file_size if info.compress_type == zipfile.ZIP_STORED else info.compress_size
    if start + stored > size:
        raise fail(path, f"truncated: {info.filename} extends past the end of the file")
    if info.compress_type != zipfile.ZIP_STORED and info.file_size > _MAX_DEFLATE_RATIO * info.compress_size + 64:
        raise fail(path, f"{info.filename} claims {info.file_size} bytes from {info.compress_size} compressed "
                   "bytes, more than deflate can produce")
    return start


# Deflate cannot expand data more than 1032-fold; a record claiming more lies about its size.
_MAX_DEFLATE_RATIO = 1032


def _read_storage(path, fh, size: int, zf, info: zipfile.ZipInfo, nbytes: int) -> np.ndarray:
    if info.file_size < nbytes:
        raise fail(path, f"truncated: {info.filename} holds {info.file_size} bytes, {nbytes} expected")
    # Every size the archive declares is checked against the file before the buffer is made, so a lying
    # archive costs no memory.
    start = _entry_data_offset(fh, info, size, path)
    buf = np.empty(nbytes, dtype=np.uint8)
    if nbytes == 0:
        return buf
    if info.compress_type == zipfile.ZIP_STORED:  # what torch writes: read straight into buf
        fh.seek(start)
        got = 0
        view = memoryview(buf)
        while got < nbytes:
            n = fh.readinto(view[got:])
            if not n:
                raise fail(path, f"truncated: {info.filename} ends early")
            got += n
        return buf
    try:
        with zf.open(info) as src:
            got = 0
            view = memoryview(buf)
            while got < nbytes:
                n = src.readinto(view[got:])
                if not n:
                    raise fail(path, f"truncated: {info.filename} ends early")
                got += n
    except CheckpointError:
        raise
    except Exception as exc:
        raise fail(path, f"corrupt zip entry {info.filename} ({exc})") from None
    return buf


def _materialize(path, fh, size, zf, infos, data_prefix, refs: dict[str, Any],
                 big_endian: bool) -> dict[str, np.ndarray]:
    users: dict[str, int] = collections.Counter(
        r.storage.key for r in refs.values() if isinstance(r, _TensorRef))
    remaining = dict(users)
    loaded: dict[str, np.ndarray] = {}
    out: dict[str, np.ndarray] = {}
    for name, ref in refs.items():
        if isinstance(ref, np.ndarray):
            out[name] = ref
            continue
        key = ref.storage.key
        buf = loaded.get(key)
        if buf is None:
            buf = loaded[key] = _read_storage(path, fh, size, zf, infos[data_prefix + key], ref.storage.nbytes)
        out[name] = _tensor_from_storage(path, name, ref, buf, big_endian, sole_user=users[key] == 1)
        remaining[key] -= 1
        if remaining[key] == 0:
            del loaded[key]
    return out


def _tensor_from_storage(path, name, ref: _TensorRef, buf: np.ndarray, big_endian: bool,
                         sole_user: bool) -> np.ndarray:
    dt = _np_dtype(ref.code, big_endian)
    count = buf.size // dt.itemsize
    shape, stride, offset = ref.shape, ref.stride, ref.offset
    numel = math.prod(shape)
    if numel == 0:
        return _finish(np.zeros(shape, dtype=dt), ref.code)
    last = offset + sum((s - 1) * st for s, st in zip(shape, stride))
    if last >= count:
        raise fail(path, f"tensor {name!r} (size {shape}, stride {stride}, offset {offset}) "
                    f"reads past the end of its storage ({count} elements)")
    elems = buf[: count * dt.itemsize].view(dt)
    contiguous = stride == _contiguous_strides(shape)
    if contiguous and sole_user and offset == 0 and numel == count:
        arr = elems.reshape(shape)  # no copy: the buffer belongs to this tensor alone
    elif contiguous:
        arr = elems[offset: offset + numel].reshape(shape).copy()
    else:
        view = np.lib.stride_tricks.as_strided(
            elems[offset:], shape=shape, strides=[s * dt.itemsize for s in stride], writeable=False)
        arr = np.array(view, copy=True, order="C")
    return _finish(arr, ref.code)


def _contiguous_strides(shape: tuple) -> tuple:
    strides, acc = [], 1
    for s in reversed(shape):
        strides.append(acc)
        acc *= s
    return tuple(reversed(strides))
