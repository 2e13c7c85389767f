"""End-of-epoch checkpoints, so an interrupted run continues instead of starting over.

A checkpoint holds what the next epoch depends on: the model's state (weights, biases, every
tile's device records, clock, sample counter and generator -- ``MLP.state_dict``), the state of
the data-order generator, the metrics of the finished epochs and the config hash it belongs to.
Because every random draw derives from those states, a resumed run gives bit-identical metrics
to one that was never interrupted (tested).

Written atomically (temporary file + rename) after each epoch: a kill at any moment leaves either
the previous checkpoint or the new one, never a torn file. The file is a pickle -- load only
checkpoints you wrote yourself. While a run trains, it holds an advisory lock (``flock``) on a
``.lock`` file beside its checkpoint, so a second process cannot resume a run that is still alive;
the lock dies with its process.
"""

from __future__ import annotations

import fcntl
import os
import pickle
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from .. import __version__
from ..errors import CtfrpuError

FORMAT = 1


def save(path: Path, config_hash: str, epoch: int, epochs: list[dict[str, Any]], model_state: dict,
         data_rng_state: dict, elapsed: float) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "version": __version__, "config_hash": config_hash, "epoch": epoch,
               "epochs": epochs, "model": model_state, "data_rng": data_rng_state, "elapsed": elapsed}
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        pickle.dump(payload, fh, protocol=pickle.HIGHEST_PROTOCOL)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def load(path: Path, config_hash: str) -> dict[str, Any] | None:
    """The checkpoint at ``path`` (None if there is none); refuses one of another config."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        with open(path, "rb") as fh:
            payload = pickle.load(fh)
    except Exception as err:  # noqa: BLE001 -- any unreadable file gets the same advice
        raise CtfrpuError(f"checkpoint {path} is unreadable ({type(err).__name__}); delete it to start "
                          f"the run over") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CtfrpuError(f"checkpoint {path} has an unknown format; delete it to start the run over")
    if payload.get("version") != __version__:
        raise CtfrpuError(f"checkpoint {path} was written by ctfrpu {payload.get('version')}, this is "
                          f"{__version__}; resume with that version or delete it to start the run over")
    if payload["config_hash"] != config_hash:
        raise CtfrpuError(f"checkpoint {path} belongs to config {payload['config_hash']}, not {config_hash}")
    return payload


def remove(path: Path) -> None:
    """Delete a checkpoint with its leftover temporaries (not its lock: see :func:`remove_lock`)."""
    path = Path(path)
    for p in (path, *path.parent.glob(f"{path.name}.*.tmp")):
        p.unlink(missing_ok=True)


def remove_lock(path: Path) -> None:
    """Delete the lock file of a run that has ended (call after releasing the lock)."""
    lock = Path(path).with_name(Path(path).name + ".lock")
    lock.unlink(missing_ok=True)


@contextmanager
def locked(path: Path, run_id: int) -> Iterator[None]:
    """Hold the run's lock for the block; CtfrpuError if another live process holds it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CtfrpuError(f"run {run_id} is being trained by another live process") from None
        yield
    finally:
        os.close(fd)  # releases the lock
