"""Read PyTorch / safetensors checkpoints into numpy arrays without importing torch.

Public API
----------
``read_tensors(path) -> dict[str, numpy.ndarray]``
    Flat ``name -> array`` dict of the weights stored in ``path``.  The format is
    detected from the file's bytes, not its extension:

    * a zip archive -> the ``torch.save`` format of torch >= 1.6, read by the
      restricted unpickler of :mod:`video_swin.checkpoints.pth`;
    * an 8-byte little-endian header length followed by JSON -> safetensors,
      read by the ``safetensors`` package's numpy API;
    * the legacy (pre-1.6, non-zip) ``torch.save`` format -> refused, with the
      command that re-saves it in the zip format;
    * anything else -> refused.

``write_safetensors(path, tensors, metadata=None)``
    numpy arrays -> safetensors file (``safetensors.numpy``), written atomically.

``CheckpointError(ValueError)``
    Raised for every failure, always with a one-line message naming the file
    and what was wrong.

The safetensors package validates the whole header (offsets contiguous and
inside the file, sizes matching shape x dtype, no overflow) before it maps a
single tensor, so a hostile header (a 100 GB tensor declared in a 1 KB file)
is refused without allocating anything; we only add the dtype allow-list and
word its refusals as our one-line errors.
"""

from __future__ import annotations

import json
import math
import os
import struct
from typing import Mapping

# safetensors' numpy API looks BF16 up as numpy's dtype named 'bfloat16', which exists only once ml_dtypes
# (a TensorFlow dependency) is imported.
import ml_dtypes
import numpy as np
import safetensors
import safetensors.numpy

from video_swin import files
from video_swin.checkpoints import pth
from video_swin.checkpoints.errors import CheckpointError, fail

__all__ = ["CheckpointError", "read_tensors", "write_safetensors"]


# ----------------------------------------------------------------------------
# Format detection
# ----------------------------------------------------------------------------

# torch.save's legacy format starts with a pickle of this magic number.
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_MAGIC_BYTES = _LEGACY_MAGIC.to_bytes(10, "little")
_RESAVE_HINT = (
    "re-save it in the zip format with torch >= 1.6: "
    "python -c \"import torch; sd=torch.load('OLD', map_location='cpu', weights_only=True); "
    "torch.save(sd, 'NEW')\""
)


def _sniff(head: bytes, size: int) -> str:
    if size == 0:
        return "empty"
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if head[:1] == b"\x80" and _LEGACY_MAGIC_BYTES in head[:32]:
        return "legacy"
    if len(head) >= 9 and head[8:9] == b"{":
        return "safetensors"
    if head[:1] == b"\x80" and 0 <= head[1] <= 5:
        return "pickle"
    return "unknown"


def read_tensors(path) -> dict[str, np.ndarray]:
    """Read the weights of a checkpoint as a flat ``name -> numpy array`` dict.

    ``bfloat16`` tensors are returned as float32 (exact), ``float16`` as
    float16; a leading ``module.`` is stripped from every name.
    """
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            head = fh.read(64)
    except FileNotFoundError:
        raise fail(path, "file not found") from None
    except IsADirectoryError:
        raise fail(path, "is a directory, not a checkpoint file") from None
    except OSError as exc:
        raise fail(path, f"cannot be read ({exc.strerror or exc})") from None

    kind = _sniff(head, size)
    if kind == "empty":
        raise fail(path, "is empty (0 bytes), not a checkpoint")
    if kind == "zip":
        tensors = pth.read_torch_zip(path, size)
    elif kind == "safetensors":
        tensors = _read_safetensors(path, size)
    elif kind == "legacy":
        raise fail(path, "is in the legacy (pre-1.6, non-zip) torch.save format, which is not supported; "
                   + _RESAVE_HINT)
    elif kind == "pickle":
        names = pth.pickle_globals(path)
        extra = f" (it references {', '.join(repr(n) for n in names[:3])})" if names else ""
        raise fail(path, "is a bare pickle stream, not a torch.save zip archive or safetensors file; "
                   f"refusing to unpickle it{extra}")
    else:
        raise fail(path, f"not a checkpoint: unrecognised format (starts with {head[:8]!r}); "
                   "expected a torch.save zip archive or a safetensors file")
    return _strip_module_prefix(path, tensors)


def _strip_module_prefix(path, tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for key, value in tensors.items():
        new = key[len("module."):] if key.startswith("module.") else key
        if new in out:
            raise fail(path, f"two tensors map to the name {new!r} after stripping the 'module.' prefix")
        out[new] = value
    return out


# ----------------------------------------------------------------------------
# safetensors
# ----------------------------------------------------------------------------

# The dtypes a weight can have (and their sizes in bytes); the library also knows FP8/FP4/complex, which
# nothing here could use.
_ST_ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
                "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1}
_WRITABLE_DTYPES = {np.dtype(t) for t in ("f8", "f4", "f2", "i8", "i4", "i2", "i1", "u8", "u4", "u2", "u1", "?")}
_WRITABLE_DTYPES.add(np.dtype(ml_dtypes.bfloat16))
# The library refuses longer headers; our diagnosis of a refused file reads no more than it would.
_MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024


def _read_safetensors(path, size: int) -> dict[str, np.ndarray]:
    try:
        # safe_open validates the whole header before it returns; get_tensor copies out of the mapping.
        with safetensors.safe_open(path, framework="numpy") as f:
            names = f.offset_keys()
            for name in names:
                dtype = f.get_slice(name).get_dtype()
                if dtype not in _ST_ITEMSIZE:
                    raise fail(path, f"tensor {name!r} has unsupported safetensors dtype {dtype!r}")
            out = {name: f.get_tensor(name) for name in names}
    except CheckpointError:
        raise
    except (safetensors.SafetensorError, OSError) as exc:
        raise fail(path, _safetensors_problem(path, size, exc)) from None
    for name, arr in out.items():
        if arr.dtype == ml_dtypes.bfloat16:
            out[name] = arr.astype(np.float32)  # bfloat16 is the top half of a float32: exact
    return out


def _safetensors_problem(path, size: int, exc: Exception) -> str:
    """The library's refusal in our words. It says what is wrong but not always where: for its refusals of a
    file shorter or longer than its header says, or of a size that does not match a shape, we read the
    header it has just parsed (bounded as it bounds it) to say by how much, or which tensor."""
    detail = str(exc).removeprefix("Error while deserializing header: ")
    with open(path, "rb") as fh:
        (header_len,) = struct.unpack("<Q", fh.read(8).ljust(8, b"\0"))
        if header_len > size - 8:
            return (f"truncated safetensors file: header claims {header_len} bytes, "
                    f"file has {max(size - 8, 0)} after the length")
        sizes_refused = "not fully covered" in detail or "invalid shape, data type, or offset" in detail
        if sizes_refused and header_len <= _MAX_SAFETENSORS_HEADER:
            found = _sizes_problem(fh.read(header_len), data_size=size - 8 - header_len)
            if found:
                return found
    return f"invalid safetensors file ({detail})"


def _unique(pairs):
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError("a name appears twice")
    return dict(pairs)


def _sizes_problem(raw: bytes, data_size: int) -> str | None:
    try:
        entries = [(name, e["dtype"], e["shape"], e["data_offsets"])
                   for name, e in json.loads(raw, object_pairs_hook=_unique).items() if name != "__metadata__"]
        data_end = 0
        for name, dtype, shape, (begin, end) in entries:
            needed = math.prod(shape) * _ST_ITEMSIZE[dtype]
            if end - begin != needed:
                return (f"tensor {name!r}: data_offsets span {end - begin} bytes, "
                        f"shape {list(shape)} of {dtype} needs {needed}")
            data_end = max(data_end, end)
    except Exception:  # not the header the library parsed: keep its own message
        return None
    if data_end > data_size:
        return f"truncated safetensors file: its tensors end at byte {data_end} of a {data_size}-byte data section"
    if data_end < data_size:
        return f"invalid safetensors file: {data_size - data_end} bytes follow the last tensor's data"
    return None


def write_safetensors(path, tensors: Mapping[str, np.ndarray],
                      metadata: Mapping[str, str] | None = None) -> None:
    """Write ``tensors`` as a safetensors file, atomically and flushed to disk."""
    arrays: dict[str, np.ndarray] = {}
    for name, value in tensors.items():
        if not isinstance(name, str) or name == "__metadata__":
            raise fail(path, f"invalid tensor name {name!r}")
        arr = np.asarray(value)
        if arr.dtype.newbyteorder("=") not in _WRITABLE_DTYPES:
            raise fail(path, f"tensor {name!r} has unsupported dtype {arr.dtype}")
        # The library writes each array's memory as it lies, strides ignored: hand it little-endian C order.
        # (np.asarray, not np.ascontiguousarray, which turns 0-d arrays into 1-d ones.)
        little = arr.dtype.newbyteorder("<") if arr.dtype.itemsize > 1 else arr.dtype
        arrays[name] = np.asarray(arr, dtype=little, order="C")
    if metadata is not None and not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise fail(path, "safetensors metadata must map str to str")
    with files.atomic_path(path) as tmp:
        try:
            safetensors.numpy.save_file(arrays, tmp, metadata=dict(metadata) if metadata else None)
        except safetensors.SafetensorError as exc:
            raise fail(path, f"cannot be written as safetensors ({exc})") from None
        files.sync_to_disk(tmp)
