"""Read and write IDX files (the MNIST / Fashion-MNIST container) with numpy alone.

Why our own parser: torchvision/keras loaders download at run time (no internet here) and
torchvision does not import beside the CPU torch we use. IDX is tiny: 2 zero bytes, a type byte
(0x08 = uint8, the only type these datasets use), an ndim byte, ndim big-endian uint32 sizes, then
the payload. We check every part of that so that a truncated or corrupted download turns into a
one-line :class:`~ctfrpu.errors.CtfrpuError` that names the file and says what to run, never a
numpy reshape traceback.

Both raw files and ``.gz`` files are accepted (decided by the ``.gz`` suffix).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from pathlib import Path

import numpy as np

from ctfrpu.errors import CtfrpuError

UINT8_TYPE = 0x08
HEADER_FIXED = 4  # 2 zero bytes, type byte, ndim byte
FETCH_HINT = "run `ctfrpu data fetch`"


class IdxError(CtfrpuError):
    """A file that is not a valid IDX file; ``reason`` is the short why (without path or hint)."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}; {FETCH_HINT}")


def read_idx_bytes(path: str | os.PathLike[str]) -> bytes:
    """Return the uncompressed bytes of an IDX file (raw or ``.gz``).

    Raises CtfrpuError for unreadable files and broken gzip streams.
    """
    path = Path(path)
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except FileNotFoundError:
        raise CtfrpuError(f"{path}: file not found; run `ctfrpu data fetch`") from None
    except (OSError, EOFError, zlib.error) as err:
        # gzip.BadGzipFile is an OSError; a truncated .gz raises EOFError.
        raise IdxError(path, f"cannot read ({_short(err)})") from None


def parse_idx(data: bytes, source: str | os.PathLike[str] = "<bytes>") -> np.ndarray:
    """Parse uncompressed IDX bytes into a uint8 array of the declared shape.

    The returned array is a read-only view on ``data`` (no copy); ``.copy()`` it to modify.
    ``source`` only labels error messages.
    """
    if len(data) < HEADER_FIXED:
        raise _bad(source, f"too short for an IDX header ({len(data)} bytes)")
    if data[0] != 0 or data[1] != 0:
        raise _bad(source, "bad magic number (first two bytes must be zero); not an IDX file")
    dtype_code, ndim = data[2], data[3]
    if dtype_code != UINT8_TYPE:
        raise _bad(source, f"unsupported IDX data type 0x{dtype_code:02x} (expected 0x08 = uint8)")
    if ndim == 0:
        raise _bad(source, "IDX header declares 0 dimensions")
    header_len = HEADER_FIXED + 4 * ndim
    if len(data) < header_len:
        raise _bad(source, f"truncated header ({len(data)} bytes, need {header_len})")
    shape = tuple(int(s) for s in np.frombuffer(data, dtype=">u4", count=ndim, offset=HEADER_FIXED))
    expected = int(np.prod(shape, dtype=np.int64))
    payload = len(data) - header_len
    if payload != expected:
        what = "truncated" if payload < expected else "trailing bytes"
        raise _bad(source, f"{what}: payload is {payload} bytes, header shape {shape} needs {expected}")
    return np.frombuffer(data, dtype=np.uint8, offset=header_len).reshape(shape)


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (raw or ``.gz``) into a uint8 array; any problem -> CtfrpuError."""
    return parse_idx(read_idx_bytes(path), source=path)


def encode_idx(array: np.ndarray) -> bytes:
    """Serialise a uint8 array as IDX bytes (used by tests and the synthetic fixtures)."""
    arr = np.ascontiguousarray(array)
    if arr.dtype != np.uint8:
        raise CtfrpuError(f"encode_idx: only uint8 arrays are supported, got {arr.dtype}")
    if not 1 <= arr.ndim <= 255:
        raise CtfrpuError(f"encode_idx: ndim must be 1..255, got {arr.ndim}")
    header = bytes([0, 0, UINT8_TYPE, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    return header + arr.tobytes()


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> Path:
    """Write ``array`` as an IDX file; gzip-compressed if the name ends in ``.gz``."""
    path = Path(path)
    data = encode_idx(array)
    if path.name.endswith(".gz"):
        with gzip.open(path, "wb") as fh:
            fh.write(data)
    else:
        path.write_bytes(data)
    return path


def md5_hex(data: bytes) -> str:
    """MD5 of ``data`` as hex (the official checksums are MD5 of the uncompressed bytes)."""
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _bad(source: str | os.PathLike[str], why: str) -> IdxError:
    return IdxError(source, why)


def _short(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
