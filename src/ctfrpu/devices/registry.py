"""The device registry: kind name -> device class (the one list of device kinds), and building a
device from its kind, an optional parameter file and overrides (strictly validated).

Registering a device plug-in is one line in :data:`DEVICES` (docs/architecture.md)."""

from __future__ import annotations

import dataclasses
import json
import tomllib
from pathlib import Path
from typing import Any

import numpy as np

from ..config import params_path
from ..errors import CtfrpuError
from .ctf import CTFDevice
from .ideal import IdealDevice
from .softbounds import SoftBoundsDevice

DEVICES: dict[str, type] = {
    "ideal": IdealDevice,
    "ctf": CTFDevice,
    "softbounds": SoftBoundsDevice,
}
"""Every device kind the tile, the config, the CLI and the report know (besides 'fp', the
floating-point baseline, which has no device)."""

FP = "fp"


def device_kinds(with_fp: bool = False) -> list[str]:
    """The registered device kinds (``with_fp``: 'fp' first)."""
    return ([FP] if with_fp else []) + list(DEVICES)


def device_class(kind: str):
    try:
        return DEVICES[kind]
    except KeyError:
        raise CtfrpuError(f"unknown device kind {kind!r}; choose one of {', '.join(DEVICES)}") from None


PROTOCOL = ("init_state", "nominal_dw", "apply_pulses", "program", "program_efficiency", "moment_coeffs", "plan")
"""What a device class must provide (docs/architecture.md)."""


def register_device(kind: str, cls: type) -> None:
    """Register a device plug-in (for example one defined in a user's own code) under ``kind``.
    One-line CtfrpuError if the name is taken or the class lacks part of the protocol."""
    if not isinstance(kind, str) or not kind.isidentifier() or kind == FP:
        raise CtfrpuError(f"register_device: kind must be an identifier other than 'fp', got {kind!r}")
    if kind in DEVICES and DEVICES[kind] is not cls:
        raise CtfrpuError(f"register_device: kind {kind!r} is already registered ({DEVICES[kind].__name__})")
    missing = [m for m in PROTOCOL if not callable(getattr(cls, m, None))]
    if missing:
        raise CtfrpuError(f"register_device: {getattr(cls, '__name__', cls)!r} lacks {', '.join(missing)} "
                          f"(see docs/architecture.md)")
    DEVICES[kind] = cls


def device_kind(device) -> str:
    """The registered kind of a device instance (one-line error for anything else)."""
    for kind, cls in DEVICES.items():
        if type(device) is cls:
            return kind
    raise CtfrpuError(f"not a registered device: {type(device).__name__} (registered: "
                      f"{', '.join(c.__name__ for c in DEVICES.values())}; see docs/architecture.md)")


#: Tables a parameter file may hold besides the parameters: ``[fit]`` (written by ``device fit``).
_INFO_TABLES = ("fit",)


def load_params_file(path: str | Path) -> dict[str, Any]:
    """Read device parameters from TOML or JSON. A ``[params]`` table (as written by
    ``ctfrpu device fit``, with its ``[fit]`` table) or a flat table is accepted; any other table
    (e.g. a typo ``[param]``) is an error, not silently ignored. ``preset:NAME`` names a packaged
    preset (:func:`ctfrpu.config.params_path`)."""
    p = params_path(path)
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


def check_run_physics(device_cfg, pulses_cfg, update_cfg=None):
    """Build the device and the pulse train that a run config's ``device`` and ``pulses`` sections
    describe, so that an unknown kind or timing model, a bad parameter (unknown name, out of range,
    unreadable file), an invalid train design or a step per pulse that is not a finite positive
    number is a one-line error before any run starts. Returns (device, train); (None, None) for 'fp'
    (nothing to check). :meth:`ctfrpu.tile.AnalogTile.from_config` builds its tile from this."""
    from .pulses import PulseTrain
    from .timing import timing_model

    timing = None
    if update_cfg is not None:  # a misspelt timing model is an error even where it has no effect (fp)
        timing = timing_model(update_cfg.timing)
    if device_cfg.kind == FP:
        return None, None
    device = build_device(device_cfg.kind, device_cfg.params_file, device_cfg.params)
    train = PulseTrain.from_config(pulses_cfg)
    dw = float(device.nominal_dw(train.pw))
    if not (0.0 < dw < float("inf")):
        raise CtfrpuError(f"{device_cfg.kind} device: step per pulse dw_min = {dw!r} at pw = {train.pw:g} s is not "
                          f"a finite positive number; check the device parameters")
    # A design whose pulses change nothing (a CTF pulse no longer than its onset delay, or a
    # parameter file in the wrong units) would train only the digital biases, at chance level,
    # without any other sign: refuse it. The mean programmed fraction of a lone pulse (P -> 0) under
    # the run's timing model, per polarity, from the device's own program_efficiency.
    tm = timing if update_cfg is not None and update_cfg.timing != "slot" else None   # slot: the devices' default
    for sign, what in ((1.0, "program"), (-1.0, "erase")):
        r = float(np.asarray(device.program_efficiency(1e-6, train, sign, timing=tm)))
        if not r > 0.0:
            raise CtfrpuError(f"{device_cfg.kind} device: a {what} pulse of this design changes nothing (programmed "
                              f"fraction {r:.3g} at {train.describe()}): every analog weight would stay at its "
                              f"initial value; lengthen the pulse (fewer pulses N, or pw) or check the device "
                              f"parameters and their units (e.g. a CTF onset delay t_d longer than pw)")
    return device, train
