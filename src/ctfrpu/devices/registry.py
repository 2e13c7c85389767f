"""Build a device from its kind, an optional parameter file and overrides (strictly validated)."""

from __future__ import annotations

import dataclasses
import json
import tomllib
from pathlib import Path
from typing import Any

from ..errors import CtfrpuError
from .ctf import CTFDevice
from .ideal import IdealDevice

_CLASSES = {"ideal": IdealDevice, "ctf": CTFDevice}


def device_class(kind: str):
    try:
        return _CLASSES[kind]
    except KeyError:
        raise CtfrpuError(f"unknown device kind {kind!r}; choose one of {sorted(_CLASSES)}") from None


#: Tables a parameter file may hold besides the parameters: ``[fit]`` (written by ``device fit``).
_INFO_TABLES = ("fit",)


def load_params_file(path: str | Path) -> dict[str, Any]:
    """Read device parameters from TOML or JSON. A ``[params]`` table (as written by
    ``ctfrpu device fit``, with its ``[fit]`` table) or a flat table is accepted; any other table
    (e.g. a typo ``[param]``) is an error, not silently ignored."""
    p = Path(path)
    if not p.is_file():
        raise CtfrpuError(f"device parameter file not found: {p}")
    try:
        data = json.loads(p.read_text()) if p.suffix == ".json" else tomllib.loads(p.read_text())
    except (json.JSONDecodeError, tomllib.TOMLDecodeError, UnicodeDecodeError, RecursionError) as err:
        raise CtfrpuError(f"{p}: cannot parse device parameters: {type(err).__name__}: "
                          f"{str(err).splitlines()[0] if str(err) else ''}") from None
    if not isinstance(data, dict):
        raise CtfrpuError(f"{p}: device parameters must be a table of name = value, not a {type(data).__name__}")
    tables = [k for k, v in data.items() if isinstance(v, dict) and k not in ("params", *_INFO_TABLES)]
    if isinstance(data.get("params"), dict):
        data = data["params"]
        tables += [f"params.{k}" for k, v in data.items() if isinstance(v, dict)]
    if tables:
        raise CtfrpuError(f"{p}: unknown section [{tables[0]}]; device parameters go in [params] "
                          "(or at the top level)")
    return {k: v for k, v in data.items() if not isinstance(v, dict)}


def build_device(kind: str, params_file: str | Path | None = None, params: dict[str, Any] | None = None):
    """Device dataclass of ``kind`` with file parameters, then ``params`` overrides applied.

    An unknown parameter name is a one-line error naming it and the valid names.
    """
    cls = device_class(kind)
    values: dict[str, Any] = {}
    if params_file:
        values.update(load_params_file(params_file))
    values.update(params or {})
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    for key in values:
        if key not in names:
            raise CtfrpuError(f"unknown {kind} device parameter '{key}'; valid: {', '.join(sorted(names))}")
    try:
        return cls(**values)
    except TypeError as err:
        raise CtfrpuError(f"{kind} device parameters: {err}") from None


def check_run_physics(device_cfg, pulses_cfg) -> None:
    """Build the device and the pulse train that a run config's ``device`` and ``pulses`` sections
    describe, so that a bad parameter (unknown name, out of range, unreadable file) or an invalid
    train design is a one-line error before any run starts. Nothing to check for ``fp``."""
    if device_cfg.kind == "fp":
        return
    from .pulses import PulseTrain

    build_device(device_cfg.kind, device_cfg.params_file, device_cfg.params)
    PulseTrain.from_config(pulses_cfg)
