"""Load MNIST, Fashion-MNIST or the built-in SYNTHETIC dataset as flat float32 arrays.

Why a cache: verifying the official MD5s and parsing the IDX files costs a few hundred ms per
load, and training runs and sweeps load the data again and again. The first load of a dataset
verifies every file once, then writes ``DATA/<name>/ctfrpu-cache.npz`` (uncompressed, uint8
pixels, int64-ready labels) keyed by the size and mtime of the four source files. Later loads only
read that file and scale the pixels to [0, 1]. A stale key (the sources changed) or an unreadable
cache is rebuilt silently; a bad *source* file is always a one-line CtfrpuError. If the data
directory is read-only the cache is simply not written.

Why a synthetic dataset: tests, demos and CI must run without any download; see
:func:`make_synthetic`. It is NOT MNIST and its accuracies mean nothing outside this project.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from ctfrpu.errors import CtfrpuError

from .idx import parse_idx
from .layout import (
    FILE_DATASETS,
    FILE_NAMES,
    TEST_IMAGES,
    TEST_LABELS,
    TRAIN_IMAGES,
    TRAIN_LABELS,
    dataset_dir,
    locate,
    missing_error,
    read_verified,
)

from .registry import ALIASES as _ALIASES
from .registry import DATASET_NAMES, DATASETS

MNIST_CLASSES = list(DATASETS["mnist"].classes)
FASHION_CLASSES = list(DATASETS["fashion"].classes)
CLASSES = {d.name: list(d.classes) for d in DATASETS.values() if d.files}

CACHE_NAME = "ctfrpu-cache.npz"
CACHE_FORMAT = 1
_CACHE_ARRAYS = ("x_train", "y_train", "x_test", "y_test")

SYNTHETIC_SEED = 20_251_129
SYNTHETIC_CLASSES = list(DATASETS["synthetic"].classes)
IMAGE_SIDE = 28


@dataclass(frozen=True, eq=False)
class Dataset:
    """A train/test split with flattened images.

    x_*: float32, shape (n, 784), pixel/255 in [0, 1]; y_*: int64 class indices 0..9.
    """

    name: str
    x_train: np.ndarray = field(repr=False)
    y_train: np.ndarray = field(repr=False)
    x_test: np.ndarray = field(repr=False)
    y_test: np.ndarray = field(repr=False)
    classes: list[str] = field(default_factory=list)

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def __repr__(self) -> str:
        return (f"Dataset(name={self.name!r}, train={self.x_train.shape}, test={self.x_test.shape}, "
                f"classes={self.n_classes})")


def load_dataset(name: str, data_dir: str | os.PathLike[str] | None = None) -> Dataset:
    """Load ``name`` ("mnist", "fashion" or "synthetic") from ``data_dir`` (see layout.py for the default).

    Missing or corrupt files -> one-line CtfrpuError that says to run ``ctfrpu data fetch``.
    """
    key = normalise_name(name)
    if key == "synthetic":
        return make_synthetic()
    arrays = _load_arrays(key, data_dir)
    return _to_dataset(key, arrays)


def normalise_name(name: str) -> str:
    """Canonical dataset name; unknown names -> CtfrpuError listing the choices."""
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in DATASET_NAMES:
        raise CtfrpuError(f"unknown dataset {name!r}; choose from {', '.join(DATASET_NAMES)}")
    return key


# --------------------------------------------------------------------------- file datasets + cache


def _load_arrays(name: str, data_dir: str | os.PathLike[str] | None) -> dict[str, np.ndarray]:
    """uint8 images (n, 784) and uint8 labels, from the cache when it is fresh."""
    sources = [locate(name, fname, data_dir) for fname in FILE_NAMES]
    if all(path is None for path in sources):
        raise missing_error(name, data_dir)
    if any(path is None for path in sources):
        missing = [f for f, p in zip(FILE_NAMES, sources) if p is None]
        raise CtfrpuError(f"{dataset_dir(name, data_dir)}: missing {', '.join(missing)}; "
                          f"run `ctfrpu data fetch --dataset {name}`")
    key = _cache_key(sources)  # type: ignore[arg-type]
    cache = dataset_dir(name, data_dir) / CACHE_NAME
    arrays = _read_cache(cache, key)
    if arrays is None:
        arrays = _read_sources(name, data_dir)
        _write_cache(cache, key, arrays)
    return arrays


def _cache_key(sources: list[Path]) -> str:
    """Identify the source files by name, size and mtime (ns); any change invalidates the cache."""
    parts = []
    for path in sources:
        st = path.stat()
        parts.append([path.name, st.st_size, st.st_mtime_ns])
    return json.dumps({"format": CACHE_FORMAT, "files": parts}, sort_keys=True)


def _read_sources(name: str, data_dir: str | os.PathLike[str] | None) -> dict[str, np.ndarray]:
    """Verify (IDX header + official MD5) and parse the four files; check they fit together."""
    raw = {fname: parse_idx(read_verified(name, fname, data_dir), source=fname) for fname in FILE_NAMES}
    arrays = {
        "x_train": _flat_images(raw[TRAIN_IMAGES], TRAIN_IMAGES),
        "y_train": _labels(raw[TRAIN_LABELS], TRAIN_LABELS),
        "x_test": _flat_images(raw[TEST_IMAGES], TEST_IMAGES),
        "y_test": _labels(raw[TEST_LABELS], TEST_LABELS),
    }
    for split in ("train", "test"):
        n_x, n_y = len(arrays[f"x_{split}"]), len(arrays[f"y_{split}"])
        if n_x != n_y:
            raise CtfrpuError(f"{dataset_dir(name, data_dir)}: {split} has {n_x} images but {n_y} labels; "
                              f"run `ctfrpu data fetch --dataset {name}`")
    return arrays


def _flat_images(images: np.ndarray, fname: str) -> np.ndarray:
    if images.ndim != 3:
        raise CtfrpuError(f"{fname}: expected 3-D images, got shape {images.shape}; run `ctfrpu data fetch`")
    return images.reshape(images.shape[0], -1)


def _labels(labels: np.ndarray, fname: str) -> np.ndarray:
    if labels.ndim != 1:
        raise CtfrpuError(f"{fname}: expected 1-D labels, got shape {labels.shape}; run `ctfrpu data fetch`")
    if labels.size and int(labels.max()) > 9:
        raise CtfrpuError(f"{fname}: label {int(labels.max())} out of range 0..9; run `ctfrpu data fetch`")
    return labels


def _read_cache(cache: Path, key: str) -> dict[str, np.ndarray] | None:
    """The cached arrays if the cache exists, is readable and has ``key``; else None (rebuild)."""
    if not cache.is_file():
        return None
    try:
        with np.load(cache, allow_pickle=False) as npz:
            if str(npz["key"]) != key:
                return None
            arrays = {k: npz[k] for k in _CACHE_ARRAYS}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    return arrays if _cache_consistent(arrays) else None


def _cache_consistent(arrays: dict[str, np.ndarray]) -> bool:
    ok_dtype = all(a.dtype == np.uint8 for a in arrays.values())
    ok_shape = (arrays["x_train"].ndim == 2 and arrays["x_test"].ndim == 2
                and arrays["y_train"].ndim == 1 and arrays["y_test"].ndim == 1
                and len(arrays["x_train"]) == len(arrays["y_train"])
                and len(arrays["x_test"]) == len(arrays["y_test"])
                and arrays["x_train"].shape[1] == arrays["x_test"].shape[1])
    # the raw files' label check (_labels) must hold for the cache too: a cache edited or damaged
    # after it was written is rebuilt from the (MD5-checked) raw files
    ok_labels = ok_shape and all(arrays[k].size == 0 or int(arrays[k].max()) <= 9 for k in ("y_train", "y_test"))
    return ok_dtype and ok_shape and ok_labels


def _write_cache(cache: Path, key: str, arrays: dict[str, np.ndarray]) -> None:
    """Write the cache atomically; a read-only data directory just means no cache."""
    part = cache.with_name(f".{cache.name}.{os.getpid()}.part")
    try:
        with open(part, "wb") as fh:
            np.savez(fh, key=np.array(key), **arrays)
        os.replace(part, cache)
    except OSError:
        part.unlink(missing_ok=True)


def _to_dataset(name: str, arrays: dict[str, np.ndarray]) -> Dataset:
    return Dataset(
        name=name,
        x_train=_scale(arrays["x_train"]),
        y_train=arrays["y_train"].astype(np.int64),
        x_test=_scale(arrays["x_test"]),
        y_test=arrays["y_test"].astype(np.int64),
        classes=list(CLASSES[name]),
    )


def _scale(pixels: np.ndarray) -> np.ndarray:
    """uint8 -> float32 pixel/255 (correctly rounded float32 division)."""
    return np.divide(pixels, np.float32(255.0), dtype=np.float32)


# --------------------------------------------------------------------------- synthetic


def make_synthetic(n_train: int = 2000, n_test: int = 500, seed: int = SYNTHETIC_SEED) -> Dataset:
    """A SYNTHETIC 10-class 28x28 dataset (not MNIST), deterministic for a given seed.

    Each class has one smooth random prototype image (blurred white noise squashed to look like
    sparse strokes). Each sample is its class prototype, randomly scaled in contrast, shifted by up
    to 3 pixels, blended with a random other prototype and covered in pixel noise, then clipped to
    [0, 1]. Classes are balanced. An MLP learns it well above chance (10 %) but not perfectly,
    which is what tests and demos need; no download is involved.
    """
    if n_train < 1 or n_test < 1:
        raise CtfrpuError(f"synthetic dataset needs n_train, n_test >= 1 (got {n_train}, {n_test})")
    rng = np.random.default_rng(seed)
    prototypes = _prototypes(rng)
    x, y = _synthetic_samples(rng, prototypes, n_train, n_test)
    return Dataset(
        name="synthetic",
        x_train=x[:n_train], y_train=y[:n_train],
        x_test=x[n_train:], y_test=y[n_train:],
        classes=list(SYNTHETIC_CLASSES),
    )


def _prototypes(rng: np.random.Generator, n_classes: int = 10) -> np.ndarray:
    """Smooth stroke-like images in [0, 1], shape (n_classes, 28, 28)."""
    protos = np.empty((n_classes, IMAGE_SIDE, IMAGE_SIDE))
    yy, xx = np.mgrid[:IMAGE_SIDE, :IMAGE_SIDE]
    window = np.exp(-(((yy - 13.5) / 9.0) ** 2 + ((xx - 13.5) / 9.0) ** 2))  # keep the border dark
    for k in range(n_classes):
        field_ = ndimage.gaussian_filter(rng.standard_normal((IMAGE_SIDE, IMAGE_SIDE)), sigma=2.5)
        field_ = (field_ - field_.mean()) / field_.std()
        protos[k] = window / (1.0 + np.exp(-4.0 * (field_ - 0.5)))
    return protos


def _synthetic_samples(rng: np.random.Generator, prototypes: np.ndarray, n_train: int,
                       n_test: int) -> tuple[np.ndarray, np.ndarray]:
    """Train samples then test samples; each split is class-balanced (up to n % 10)."""
    n_classes = len(prototypes)
    labels = np.concatenate([rng.permutation(np.arange(n) % n_classes) for n in (n_train, n_test)])
    labels = labels.astype(np.int64)
    images = np.empty((len(labels), IMAGE_SIDE * IMAGE_SIDE), dtype=np.float32)
    for i, label in enumerate(labels):
        other = prototypes[(label + rng.integers(1, n_classes)) % n_classes]
        img = rng.uniform(0.7, 1.2) * prototypes[label] + rng.uniform(0.0, 0.5) * other
        img = ndimage.shift(img, rng.integers(-3, 4, size=2), order=0, mode="constant", cval=0.0)
        img = img + rng.normal(0.0, 0.25, size=img.shape)
        images[i] = np.clip(img, 0.0, 1.0).ravel()
    return images, labels
