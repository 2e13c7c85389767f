"""Where the datasets live on disk and how we know they are the real, complete files.

Data directory (first match wins):

1. an explicit ``data_dir`` argument / the ``--data-dir`` flag of the ``ctfrpu data`` commands,
2. the environment variable ``CTFRPU_DATA``,
3. ``~/.cache/ctfrpu/data``.

Layout inside it::

    DATA/mnist/train-images-idx3-ubyte     raw (uncompressed) IDX files, exactly the official bytes
    DATA/mnist/train-labels-idx1-ubyte
    DATA/mnist/t10k-images-idx3-ubyte
    DATA/mnist/t10k-labels-idx1-ubyte
    DATA/mnist/ctfrpu-cache.npz            loader cache (see datasets.py), rebuilt when stale
    DATA/fashion/...                       same four names for Fashion-MNIST

``ctfrpu data fetch`` stores the files **raw** (Fashion-MNIST arrives gzipped and is decompressed
on the way in) because raw files can be checked against the official MD5s and parsed without a
decompression pass. A ``<name>.gz`` file is accepted too if no raw file is present, so a folder of
the original ``*.gz`` downloads also works.

Why MD5: the official checksums are MD5s of the uncompressed IDX bytes; matching them proves that
our numbers are computed on the same data as everyone else's, not on a truncated download.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

from ctfrpu.errors import CtfrpuError

from .idx import IdxError, md5_hex, parse_idx, read_idx_bytes

ENV_VAR = "CTFRPU_DATA"
from .registry import DATASETS as _REGISTRY
from .registry import FILE_DATASETS  # noqa: F401  (datasets backed by files; synthetic is generated)

DISPLAY_NAMES = {name: _REGISTRY[name].title for name in FILE_DATASETS}

TRAIN_IMAGES = "train-images-idx3-ubyte"
TRAIN_LABELS = "train-labels-idx1-ubyte"
TEST_IMAGES = "t10k-images-idx3-ubyte"
TEST_LABELS = "t10k-labels-idx1-ubyte"
FILE_NAMES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)

# Official MD5 of the UNCOMPRESSED IDX bytes. Looked up at call time, so tests can monkeypatch it.
EXPECTED_MD5: dict[str, dict[str, str]] = {
    "mnist": {
        TRAIN_IMAGES: "6bbc9ace898e44ae57da46a324031adb",
        TRAIN_LABELS: "a25bea736e30d166cdddb491f175f624",
        TEST_IMAGES: "2646ac647ad5339dbf082846283269ea",
        TEST_LABELS: "27ae3e4e09519cfbb04c329615203637",
    },
    "fashion": {
        TRAIN_IMAGES: "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        TRAIN_LABELS: "9018921c3c673c538a1fc5bad174d6f9",
        TEST_IMAGES: "8181f5470baa50b63fa0f6fddb340f0a",
        TEST_LABELS: "15d484375f8d13e6eb1aabb0c3f46965",
    },
}

STATUS_OK, STATUS_MISSING, STATUS_BAD = "OK", "MISSING", "BAD"


def default_data_dir() -> Path:
    """``~/.cache/ctfrpu/data`` (used when neither an argument nor CTFRPU_DATA is given)."""
    return Path.home() / ".cache" / "ctfrpu" / "data"


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The data directory: explicit argument, else $CTFRPU_DATA, else :func:`default_data_dir`."""
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser()
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return Path(env).expanduser()
    return default_data_dir()


def dataset_dir(name: str, data_dir: str | os.PathLike[str] | None = None) -> Path:
    """``DATA/<name>`` for a file-backed dataset."""
    _check_file_dataset(name)
    return resolve_data_dir(data_dir) / name


def locate(name: str, file_name: str, data_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """Path of ``file_name`` (raw preferred, else ``.gz``) in the dataset folder, or None."""
    folder = dataset_dir(name, data_dir)
    for candidate in (folder / file_name, folder / f"{file_name}.gz"):
        if candidate.is_file():
            return candidate
    return None


@dataclass(frozen=True)
class FileCheck:
    """Result of checking one dataset file: status is OK, MISSING or BAD (with a reason)."""

    dataset: str
    file: str
    status: str
    reason: str = ""
    path: str = ""

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK

    def line(self) -> str:
        """One human-readable line, e.g. ``mnist  train-images-idx3-ubyte  OK``."""
        text = f"{self.dataset:<8} {self.file:<24} {self.status}"
        return f"{text} ({self.reason})" if self.reason else text

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def check_bytes(name: str, file_name: str, data: bytes, source: str | os.PathLike[str]) -> str:
    """Return "" if ``data`` is a valid IDX file with the official MD5, else the short reason."""
    try:
        parse_idx(data, source=source)
    except IdxError as err:
        return err.reason
    expected = EXPECTED_MD5[name][file_name]
    actual = md5_hex(data)
    if actual != expected:
        return f"MD5 mismatch: got {actual}, expected {expected}"
    return ""


def read_verified(name: str, file_name: str, data_dir: str | os.PathLike[str] | None = None) -> bytes:
    """Uncompressed bytes of a dataset file after the IDX and MD5 checks; problems -> CtfrpuError."""
    path = locate(name, file_name, data_dir)
    if path is None:
        raise missing_error(name, data_dir)
    data = read_idx_bytes(path)
    reason = check_bytes(name, file_name, data, path)
    if reason:
        raise CtfrpuError(f"{path}: {reason}; run `{fetch_command(name, data_dir)}`")
    return data


def check_file(name: str, file_name: str, data_dir: str | os.PathLike[str] | None = None) -> FileCheck:
    """Check one file without raising: OK, MISSING, or BAD with the reason."""
    path = locate(name, file_name, data_dir)
    if path is None:
        return FileCheck(name, file_name, STATUS_MISSING, path=str(dataset_dir(name, data_dir) / file_name))
    try:
        data = read_idx_bytes(path)
    except IdxError as err:
        return FileCheck(name, file_name, STATUS_BAD, err.reason, str(path))
    reason = check_bytes(name, file_name, data, path)
    return FileCheck(name, file_name, STATUS_BAD if reason else STATUS_OK, reason, str(path))


def verify_files(
    data_dir: str | os.PathLike[str] | None = None, datasets: tuple[str, ...] = FILE_DATASETS
) -> list[FileCheck]:
    """Check all four files of each dataset (8 files for MNIST + Fashion-MNIST)."""
    return [check_file(name, fname, data_dir) for name in datasets for fname in FILE_NAMES]


def missing_error(name: str, data_dir: str | os.PathLike[str] | None = None) -> CtfrpuError:
    """The one-line 'not found' error, with the command that fixes it."""
    folder = dataset_dir(name, data_dir)
    return CtfrpuError(f"{DISPLAY_NAMES[name]} not found in {folder}; run `{fetch_command(name, data_dir)}`")


def fetch_command(name: str | None = None, data_dir: str | os.PathLike[str] | None = None,
                  force: bool = False) -> str:
    """The ``ctfrpu data fetch ...`` command line that repairs ``name`` (None = all)."""
    parts = ["ctfrpu data fetch"]
    if name:
        parts.append(f"--dataset {name}")
    if data_dir is not None and str(data_dir) != "":
        parts.append(f"--data-dir {data_dir}")
    if force:
        parts.append("--force")
    return " ".join(parts)


def _check_file_dataset(name: str) -> None:
    if name not in FILE_DATASETS:
        raise CtfrpuError(f"unknown file dataset {name!r}; choose from {', '.join(FILE_DATASETS)}")
