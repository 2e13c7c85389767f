"""Writing output files safely: atomically, never over an input, never through a symlink.

Every file a command writes (reports, exports, fitted parameters, synthetic data) goes through
here:

* **atomic** -- written to a temporary file in the same folder, flushed to disk, then renamed
  over the target (``os.replace``): a full disk or a kill leaves the old file or none, never half
  a file;
* **not over an input** -- :func:`check_outputs` refuses an output path that is (or is a link to)
  one of the command's input files (``device fit meas.csv --out meas.csv``);
* **not through a symlink** -- a target that is a symbolic link is refused (the rename would
  replace the link, but a planted link is a sign of trouble, and following it would write
  outside the output folder); so is an output folder that is a link;
* **not silently over an earlier output** -- an existing target needs ``--force``.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

from .errors import CtfrpuError


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def check_outputs(outputs: Iterable[str | Path], inputs: Iterable[str | Path | None] = (),
                  force: bool = False) -> None:
    """Refuse (one-line CtfrpuError) outputs that are inputs, symlinks, or exist without ``force``."""
    ins = [Path(p) for p in inputs if p]
    for out in (Path(p) for p in outputs):
        for inp in ins:
            if _same(out, inp):
                raise CtfrpuError(f"output {out} is the input {inp}; choose another output path")
        if out.is_symlink():
            raise CtfrpuError(f"output {out} is a symbolic link; refusing to write through it (remove it first)")
        if out.exists() and not force:
            raise CtfrpuError(f"{out} exists; pass --force to overwrite it (or choose another output path)")
        if out.is_dir():
            raise CtfrpuError(f"output {out} is a directory")


def figure_outputs(folder: str | Path, stem: str) -> list[Path]:
    """The files a table-plus-figure command writes into ``folder``: ``stem.csv``, ``.png``, ``.svg``."""
    d = Path(folder)
    return [d / f"{stem}.csv", d / f"{stem}.png", d / f"{stem}.svg"]


def output_dir(path: str | Path) -> Path:
    """Create the output folder ``path`` (and parents); refuse one that is a symbolic link."""
    p = Path(path)
    if p.is_symlink():
        raise CtfrpuError(f"output folder {p} is a symbolic link; refusing to write through it")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CtfrpuError(f"cannot create output folder {p}: {err.strerror or err}") from None
    if not p.is_dir():
        raise CtfrpuError(f"output folder {p} is not a directory")
    return p


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write to; on success it replaces ``path``.

    For libraries that write to a path (matplotlib, pandas). The temporary keeps the target's
    suffix (writers pick the format from it). On any error the temporary is removed and an
    OSError becomes a one-line CtfrpuError; ``path`` is then unchanged.
    """
    target = Path(path)
    if target.is_symlink():
        raise CtfrpuError(f"output {target} is a symbolic link; refusing to write through it")
    tmp = target.with_name(f".{target.stem}.{os.getpid()}.part{target.suffix}")
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except OSError as err:
        _unlink(tmp)
        raise CtfrpuError(f"cannot write {target}: {err.strerror or err}") from None
    except BaseException:
        _unlink(tmp)
        raise


def write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def _unlink(p: Path) -> None:
    try:
        p.unlink(missing_ok=True)
    except OSError:
        pass
