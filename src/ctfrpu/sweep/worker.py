"""The task a sweep runs on a dask worker: train one run and return the result to the client.

Workers never touch the run store; the client records what they return. A run that raises is
returned as ``status = "failed"`` with its error text (the client records it), so one bad run never
stops a sweep. The dataset is loaded once per worker process and kept in :data:`_DATASETS`, keyed
by ``(name, data_dir)``, for every later run on that worker.
"""

from __future__ import annotations

import importlib
import inspect
import os
import resource
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from ..config import validate
from ..errors import CtfrpuError

DEFAULT_TRAINER = "ctfrpu.training.runner:train_run"

_DATASETS: dict[tuple[str, str | None], Any] = {}
_LOADS = 0  # how many times this process loaded a dataset (for tests/benchmarks)


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, MiB (ru_maxrss: KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def dataset(name: str, data_dir: str | None) -> Any:
    """The dataset ``name`` from this process's cache, loading it on first use."""
    global _LOADS
    key = (name, data_dir)
    if key not in _DATASETS:
        from ..data import load_dataset

        _DATASETS[key] = load_dataset(name, data_dir)
        _LOADS += 1
    return _DATASETS[key]


def dataset_loads() -> int:
    return _LOADS


def resolve_trainer(spec: str) -> Callable[..., dict[str, Any]]:
    module, _, attr = spec.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as err:
        raise CtfrpuError(f"cannot import the training function {spec}: {err}") from None


def _error_text(err: BaseException) -> str:
    """First line: ``Type: message`` (a CtfrpuError: the message alone); then the traceback."""
    if isinstance(err, CtfrpuError):
        return str(err)
    head = f"{type(err).__name__}: {err}".strip().splitlines()[0] if str(err) else type(err).__name__
    return head + "\n\n" + "".join(traceback.format_exception(err)).rstrip()


def probe() -> dict[str, Any]:
    """What a worker runs to show it can import ctfrpu (``--scheduler`` preflight)."""
    from .. import __version__

    return {"version": __version__, "pid": os.getpid(), "python": sys.version.split()[0]}


def _worker_address() -> str | None:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):  # not running on a dask worker
        return None


def run_task(config: dict[str, Any], data_dir: str | None = None,
             trainer: str = DEFAULT_TRAINER, checkpoint_dir: str | None = None) -> dict[str, Any]:
    """Train one run; never raises for a failure of the run itself (returns it as failed).

    With ``checkpoint_dir`` (a folder the worker can write; the client passes one beside the store
    for local clusters) the run checkpoints after every epoch into ``sweep-<config hash>.ckpt``
    there and, when a killed sweep is rerun, continues from it -- with the metrics of an
    uninterrupted run (:mod:`ctfrpu.training.checkpoint`). The file is removed once the run ends.
    """
    started = time.time()
    cpu0 = time.process_time()  # all threads of this worker process: what the run cost the machine
    result: dict[str, Any] = {"status": "failed", "epochs": [], "final": None, "error": None}
    path = None
    from ..training import checkpoint as ckpt

    try:
        cfg = validate(config)
        train = resolve_trainer(trainer)
        data = dataset(cfg.data.dataset, data_dir)
        kwargs = {}
        if checkpoint_dir and "checkpoint" in inspect.signature(train).parameters:
            path = Path(checkpoint_dir) / f"sweep-{cfg.hash()}.ckpt"
            try:
                ckpt.load(path, cfg.hash())  # data only (npz, no pickle): a planted file runs nothing
            except CtfrpuError:  # unreadable, foreign or of another ctfrpu version: this run starts over
                ckpt.remove(path)
            kwargs["checkpoint"] = path
        from ..training.runner import device_parameters

        result["device"] = device_parameters(cfg)
        out = train(cfg, dataset=data, **kwargs)
        result.update(status=out.get("status", "finished"), epochs=list(out["epochs"]), final=dict(out["final"]),
                      error=out.get("reason"), warnings=list(out.get("warnings", ())))
    except Exception as err:  # noqa: BLE001 - recorded as a failed run by the client
        result["error"] = _error_text(err)
        if path is not None and isinstance(err, ckpt.CheckpointWriteError):
            path = None  # full disk: the last good checkpoint stays for the rerun
    if path is not None:
        ckpt.remove(path)
    result.update(started=started, ended=time.time(), cpu_seconds=time.process_time() - cpu0, pid=os.getpid(), peak_rss_mb=peak_rss_mb(),
                  dataset_loads=_LOADS, worker=_worker_address() or f"pid {os.getpid()}")
    return result
