"""End-of-epoch checkpoints, so an interrupted run continues instead of starting over.

A checkpoint holds what the next epoch depends on: the model's state (weights, biases, every
tile's device records, clock, sample counter and generator -- ``MLP.state_dict``), the state of
the data-order generator, the metrics of the finished epochs and the config hash it belongs to.
Because every random draw derives from those states, a resumed run gives bit-identical metrics
to one that was never interrupted (tested).

The file is data, never code: a NumPy ``.npz`` archive read with ``allow_pickle=False``. Every
array of the state is one member (``a0``, ``a1``, ...; plain dtypes and structured records only,
no object arrays); everything else (numbers, strings, the generators' bit-generator state dicts,
the nesting of the state) is JSON in the member ``meta`` (UTF-8 bytes), where arrays are
referenced by member name. ``meta`` carries a magic string, the format number, the ctfrpu
version and a SHA-256 over the metadata and every array's dtype, shape and bytes: a foreign,
truncated or altered file is refused with a one-line error. (The checksum catches damage and
careless edits; it is not a signature -- a file that cannot run code needs none.)

Written atomically (temporary file + fsync + rename) after each epoch: a kill at any moment leaves
either the previous checkpoint or the new one, never a torn file; a failed write (full disk)
leaves the previous checkpoint in place and raises :class:`CheckpointWriteError`. While a run
trains, it holds an advisory lock (``flock``) on a ``.lock`` file beside its checkpoint, so a
second process cannot resume a run that is still alive; the lock dies with its process.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .. import __version__
from ..errors import CtfrpuError

FORMAT = 2
MAGIC = "ctfrpu-checkpoint"
_META = "meta"


class CheckpointWriteError(CtfrpuError):
    """Writing a checkpoint failed (e.g. disk full); the previous checkpoint is intact."""


# -- encoding: a state tree <-> (JSON-able tree, named arrays) -----------------------------------

def _encode(obj: Any, arrays: dict[str, np.ndarray]) -> Any:
    """Tagged JSON: {"v": scalar}, {"d": {..}}, {"l": [..]}, {"t": [..]}, {"a": member}, {"s": member}."""
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise TypeError("checkpoint: object arrays cannot be saved as data")
        name = f"a{len(arrays)}"
        arrays[name] = np.ascontiguousarray(obj)
        return {"a": name}
    if isinstance(obj, np.generic):  # a NumPy scalar keeps its exact dtype (0-d member)
        name = f"a{len(arrays)}"
        arrays[name] = np.asarray(obj)
        return {"s": name}
    if isinstance(obj, dict):
        if not all(isinstance(k, str) for k in obj):
            raise TypeError("checkpoint: state dict keys must be strings")
        return {"d": {k: _encode(v, arrays) for k, v in obj.items()}}
    if isinstance(obj, list):
        return {"l": [_encode(v, arrays) for v in obj]}
    if isinstance(obj, tuple):
        return {"t": [_encode(v, arrays) for v in obj]}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return {"v": obj}
    raise TypeError(f"checkpoint: cannot save a {type(obj).__name__} as data")


def _decode(node: Any, arrays: dict[str, np.ndarray]) -> Any:
    if not isinstance(node, dict) or len(node) != 1:
        raise ValueError("malformed state tree")
    (tag, val), = node.items()
    if tag == "v":
        if val is not None and not isinstance(val, (bool, int, float, str)):
            raise ValueError("malformed scalar")
        return val
    if tag == "d":
        return {k: _decode(v, arrays) for k, v in val.items()}
    if tag == "l":
        return [_decode(v, arrays) for v in val]
    if tag == "t":
        return tuple(_decode(v, arrays) for v in val)
    if tag == "a":
        return arrays[val].copy()
    if tag == "s":
        return arrays[val][()]
    raise ValueError(f"unknown tag {tag!r}")


def _digest(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256(json.dumps(meta, sort_keys=True).encode())
    for name in sorted(arrays):
        a = arrays[name]
        h.update(f"\0{name}\0{np.lib.format.dtype_to_descr(a.dtype)}\0{a.shape}\0".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


# -- save / load ------------------------------------------------------------------------------------

def save(path: Path, config_hash: str, epoch: int, epochs: list[dict[str, Any]], model_state: dict,
         data_rng_state: dict, elapsed: float) -> None:
    """Write the checkpoint atomically; CheckpointWriteError (previous file kept) if it cannot."""
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    meta = {"magic": MAGIC, "format": FORMAT, "version": __version__, "config_hash": config_hash,
            "epoch": int(epoch), "elapsed": float(elapsed), "epochs": epochs,
            "state": _encode({"model": model_state, "data_rng": data_rng_state}, arrays)}
    meta["sha256"] = _digest(meta, arrays)
    buf = io.BytesIO()
    np.savez(buf, **arrays, **{_META: np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)})
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as fh:
            fh.write(buf.getbuffer())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as err:          # also Ctrl-C / SIGTERM mid-write: no debris, the previous file stays
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        if not isinstance(err, OSError):
            raise
        kept = "the previous checkpoint is kept" if path.exists() else "no checkpoint was written"
        raise CheckpointWriteError(f"cannot write checkpoint {path}: {err.strerror or err} ({kept})") from None


def _read(path: Path) -> dict[str, Any]:
    """The verified metadata of the file, its state decoded; ValueError/OSError if it is not one."""
    npz = np.load(path, allow_pickle=False)
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise ValueError("not an npz archive")
    with npz:
        names = set(npz.files)
        if _META not in names:
            raise ValueError("no metadata")
        raw = npz[_META]
        if raw.dtype != np.uint8 or raw.ndim != 1:
            raise ValueError("bad metadata")
        meta = json.loads(raw.tobytes().decode("utf-8"))
        if not isinstance(meta, dict) or meta.get("magic") != MAGIC:
            raise ValueError("not a ctfrpu checkpoint")
        arrays = {n: npz[n] for n in names - {_META}}
    return meta, arrays


def load(path: Path, config_hash: str) -> dict[str, Any] | None:
    """The checkpoint at ``path`` (None if there is none); refuses one of another config, format or
    version, and any file that is not an intact ctfrpu checkpoint (one-line CtfrpuError)."""
    path = Path(path)
    if not path.exists():
        return None
    advice = "delete it to start the run over"
    try:
        meta, arrays = _read(path)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, UnicodeDecodeError) as err:
        why = str(err).splitlines()[0] if str(err) else type(err).__name__
        if "pickle" in why.lower():     # numpy's advice (load it unsafely) is the opposite of ours
            why = "not an npz archive of plain arrays"
        raise CtfrpuError(f"checkpoint {path} is unreadable: not an intact ctfrpu checkpoint ({why}); "
                          f"{advice}") from None
    if meta.get("format") != FORMAT:
        raise CtfrpuError(f"checkpoint {path} has format {meta.get('format')!r}, this ctfrpu reads "
                          f"{FORMAT}; {advice}")
    if meta.get("version") != __version__:
        raise CtfrpuError(f"checkpoint {path} was written by ctfrpu {meta.get('version')}, this is "
                          f"{__version__}; resume with that version or {advice}")
    stored = meta.pop("sha256", None)
    if stored != _digest(meta, arrays):
        raise CtfrpuError(f"checkpoint {path} fails its checksum (damaged or altered); {advice}")
    if meta.get("config_hash") != config_hash:
        raise CtfrpuError(f"checkpoint {path} belongs to config {meta.get('config_hash')}, not {config_hash}")
    try:
        state = _decode(meta["state"], arrays)
        out = {"format": FORMAT, "version": meta["version"], "config_hash": meta["config_hash"],
               "epoch": int(meta["epoch"]), "epochs": list(meta["epochs"]), "elapsed": float(meta["elapsed"]),
               "model": state["model"], "data_rng": state["data_rng"]}
    except (KeyError, ValueError, TypeError, AttributeError) as err:
        raise CtfrpuError(f"checkpoint {path} is unreadable: malformed state ({err}); {advice}") from None
    return out


def remove(path: Path) -> None:
    """Delete a checkpoint with its leftover temporaries (not its lock: see :func:`remove_lock`)."""
    path = Path(path)
    for p in (path, *path.parent.glob(f"{path.name}.*.tmp")):
        p.unlink(missing_ok=True)


def remove_lock(path: Path) -> None:
    """Delete the lock file of a run that has ended (call after releasing the lock)."""
    lock = Path(path).with_name(Path(path).name + ".lock")
    lock.unlink(missing_ok=True)


def lock_path(path: Path) -> Path:
    return Path(path).with_name(Path(path).name + ".lock")


def is_locked(path: Path) -> bool | None:
    """Whether a live process holds the lock of the checkpoint ``path`` (None: no lock file)."""
    try:
        fd = os.open(lock_path(path), os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return None
    finally:
        os.close(fd)
    return False


@contextmanager
def locked(path: Path, run_id: int) -> Iterator[None]:
    """Hold the run's lock for the block; CtfrpuError if another live process holds it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path(path), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CtfrpuError(f"run {run_id} is being trained by another live process") from None
        yield
    finally:
        os.close(fd)  # releases the lock
