"""Reader for the IDX format of MNIST and Fashion-MNIST, gzip-compressed or not.

Format (LeCun et al., http://yann.lecun.com/exdb/mnist/): two zero bytes, a type byte
(0x08 = unsigned byte, the only one the image sets use; 0x09, 0x0B-0x0E for the others),
a byte with the number of dimensions, one big-endian uint32 per dimension, then the values,
big-endian, row-major. Compression is detected from the gzip magic bytes, not the file name.
"""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from cnntricks.data.errors import DataError

# IDX type byte -> big-endian numpy dtype.
IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_GZIP_MAGIC = b"\x1f\x8b"


def read_idx_bytes(path: str | Path) -> bytes:
    """The IDX bytes of `path`, decompressed when it is gzip."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DataError(f"{path}: cannot read the file ({err.strerror or err}); check that it exists and is readable") from None
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path}: corrupt or truncated gzip file ({err}); delete it and fetch it again") from None


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode IDX bytes to a writable native-endian array; `name` is used in error messages."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataError(f"{name}: not an IDX file (the first two bytes must be zero, got {data[:4].hex() or 'an empty file'})")
    type_byte, ndim = data[2], data[3]
    if type_byte not in IDX_DTYPES:
        raise DataError(f"{name}: unknown IDX type byte 0x{type_byte:02x} (expected one of "
                        f"{', '.join(f'0x{t:02x}' for t in IDX_DTYPES)}); the file is corrupt")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{name}: truncated IDX header ({len(data)} bytes, {header} needed); fetch the file again")
    dims = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    dtype = np.dtype(IDX_DTYPES[type_byte])
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        state = "truncated" if len(data) < expected else "longer than its header says"
        raise DataError(f"{name}: IDX file is {state} ({len(data)} bytes, header {dims} needs {expected}); "
                        f"fetch the file again")
    values = np.frombuffer(data, dtype, offset=header).reshape(dims)
    return values.astype(dtype.newbyteorder("="), copy=True)  # copy: frombuffer of bytes is read-only


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (plain or .gz) into a numpy array of its stored shape and type."""
    return parse_idx(read_idx_bytes(path), str(path))
