"""The dataset registry: the one list of datasets that the config, the CLI, the report and the
data layer read. Adding a dataset: an entry here, its files' names and MD5s in ``layout.py`` (if
it is file-backed) and its source in ``fetch.py`` (if it is fetched)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    """Key used in configs and on the command line."""
    title: str
    """Name shown in reports and figures."""
    classes: tuple[str, ...]
    """Class labels, index order."""
    paper: bool
    """Part of the system paper's study (the report expects it)."""
    files: bool
    """Backed by fetched IDX files (else generated, like the synthetic set)."""
    aliases: tuple[str, ...] = ()


DATASETS: dict[str, DatasetInfo] = {d.name: d for d in (
    DatasetInfo("mnist", "MNIST", tuple(str(k) for k in range(10)), True, True),
    DatasetInfo("fashion", "Fashion-MNIST", ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                                             "Sneaker", "Bag", "Ankle boot"), True, True,
                ("fashion-mnist", "fashion_mnist", "fmnist")),
    DatasetInfo("synthetic", "synthetic (not MNIST)", tuple(f"synthetic-{k}" for k in range(10)), False, False),
)}

DATASET_NAMES = tuple(DATASETS)
FILE_DATASETS = tuple(d.name for d in DATASETS.values() if d.files)
PAPER_DATASETS = tuple(d.name for d in DATASETS.values() if d.paper)
ALIASES = {a: d.name for d in DATASETS.values() for a in d.aliases}
