"""Minimal safetensors reader/writer using only numpy and the standard library.

File layout:
    8 bytes   little-endian u64 N = header length
    N bytes   UTF-8 JSON header:
                {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]},
                 ..., "__metadata__": {"key": "value", ...}}   (metadata optional)
              offsets are relative to the start of the data buffer (right after the header)
    rest      the data buffer; every tensor little-endian, row-major (C order)

The writer pads the JSON header with spaces so that 8 + N is a multiple of 8, and
lays tensors out in sorted-name order, contiguously.
"""

import json
import struct

import numpy as np

# safetensors dtype string -> little-endian numpy dtype
_DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"),
    "U32": np.dtype("<u4"),
    "U16": np.dtype("<u2"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
_NAMES = {(dt.kind, dt.itemsize): name for name, dt in _DTYPES.items()}


def _dtype_name(dt):
    dt = np.dtype(dt)
    try:
        return _NAMES[(dt.kind, dt.itemsize)]
    except KeyError:
        raise ValueError(f"safetensors: unsupported dtype {dt}") from None


def load_bytes(buf, with_metadata=False):
    """Parse a safetensors byte string -> dict name -> numpy array (copies, native order)."""
    buf = memoryview(buf)
    if len(buf) < 8:
        raise ValueError("safetensors: file too short")
    (n,) = struct.unpack("<Q", bytes(buf[:8]))
    if 8 + n > len(buf):
        raise ValueError("safetensors: header length exceeds file size")
    header = json.loads(bytes(buf[8:8 + n]).decode("utf-8"))
    data = buf[8 + n:]
    metadata = header.pop("__metadata__", None) or {}
    out = {}
    for name, info in header.items():
        dt = _DTYPES.get(info["dtype"])
        if dt is None:
            raise ValueError(f"safetensors: unsupported dtype {info['dtype']} for {name}")
        shape = tuple(int(s) for s in info["shape"])
        begin, end = (int(o) for o in info["data_offsets"])
        count = int(np.prod(shape, dtype=np.int64))
        if end - begin != count * dt.itemsize or end > len(data) or begin < 0:
            raise ValueError(f"safetensors: bad data_offsets for {name}")
        arr = np.frombuffer(data[begin:end], dtype=dt, count=count).reshape(shape)
        out[name] = arr.astype(dt.newbyteorder("="), copy=True)
    if with_metadata:
        return out, metadata
    return out


def load_file(path, with_metadata=False):
    """Read a .safetensors file -> dict name -> numpy array (and metadata dict if asked)."""
    with open(path, "rb") as f:
        return load_bytes(f.read(), with_metadata=with_metadata)


def dump_bytes(tensors, metadata=None):
    """Serialize dict name -> array-like into safetensors bytes."""
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    chunks = []
    offset = 0
    for name in sorted(tensors):
        if name == "__metadata__":
            raise ValueError("safetensors: '__metadata__' is not a valid tensor name")
        arr = np.asarray(tensors[name])
        dname = _dtype_name(arr.dtype)
        raw = np.ascontiguousarray(arr, dtype=_DTYPES[dname]).tobytes(order="C")
        header[name] = {"dtype": dname, "shape": [int(s) for s in arr.shape],
                        "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    hjson = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hjson += b" " * ((-(8 + len(hjson))) % 8)
    return struct.pack("<Q", len(hjson)) + hjson + b"".join(chunks)


def save_file(tensors, path, metadata=None):
    """Write dict name -> array-like to a .safetensors file."""
    with open(path, "wb") as f:
        f.write(dump_bytes(tensors, metadata))
