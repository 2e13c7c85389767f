"""Sweep files: a base config, a grid of dotted overrides, explicit extra runs.

A sweep file is TOML::

    name = "pulses-vs-gap"            # label stored with every run (RunConfig.sweep)
    description = "..."               # optional, free text

    [base]                            # a RunConfig dict, as for `ctfrpu train --config`
    data = { dataset = "synthetic", train_limit = 200 }
    optim = { epochs = 1 }

    [grid]                            # dotted config path -> non-empty list of values
    "pulses.n" = [100, 1000]
    "pulses.gap" = ["1us", "100us"]
    seed = [0, 1, 2]

    [[runs]]                          # optional explicit extra runs (dotted overrides of base)
    "device.kind" = "fp"

The runs are the cartesian product of the grid axes (in file order, the last axis varying fastest)
applied to ``base``, followed by the explicit runs. Every run config is validated when the file is
loaded, before anything runs; runs with the same config hash are kept once. Grid keys may also be
written as nested tables (``[grid.pulses] n = [100, 1000]``); they are flattened to dotted paths.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ..config import RunConfig, load_toml, merge, set_path, validate
from ..devices import check_run_physics
from ..errors import CtfrpuError

_TOP_KEYS = ("name", "description", "base", "grid", "runs")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
# Labels are set by the engine, not by the sweep file (``name`` of a run may be set per run).
_RESERVED = ("sweep",)


@dataclass(frozen=True)
class SweepRun:
    """One run of a sweep: its position, validated config, hash and what it varies."""

    index: int
    """1-based position in the sweep (grid order, then the explicit runs)."""
    config: RunConfig = field(repr=False)
    hash: str
    varied: dict[str, Any]
    """The dotted overrides that define this run (grid values, or the explicit run's keys)."""

    def label(self) -> str:
        return " ".join(f"{k}={_show(v)}" for k, v in self.varied.items()) or "(base)"


@dataclass(frozen=True)
class Sweep:
    name: str
    path: Path
    runs: list[SweepRun]
    axes: dict[str, list[Any]]
    description: str = ""
    duplicates: int = 0
    """How many generated runs were dropped because an earlier run had the same config hash."""
    equivalent: tuple[tuple[int, int], ...] = ()
    """(run, earlier run) pairs with different hashes but one computation
    (:meth:`~ctfrpu.config.RunConfig.computation_key`: e.g. FP runs that differ only in pulse or
    compensation settings, which FP ignores): they are run, but the sweep warns."""


def _show(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def _literal(value: Any) -> str:
    """A value as written in TOML/JSON (strings quoted), for error messages."""
    try:
        return json.dumps(value, separators=(", ", " = "))
    except TypeError:
        return repr(value)


def shipped_sweeps() -> list[str]:
    """Names of the example sweep files shipped with the package (``ctfrpu sweep NAME``)."""
    try:
        folder = resources.files("ctfrpu") / "sweeps"
        return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))
    except (FileNotFoundError, NotADirectoryError, ModuleNotFoundError):
        return []


def resolve_sweep_path(path: str | Path) -> Path:
    """``path`` if it is a file, else the shipped sweep of that name; one-line error otherwise."""
    p = Path(path)
    if p.is_file():
        return p
    stem = p.name[:-5] if p.name.endswith(".toml") else p.name
    if p.parent == Path(".") and stem in shipped_sweeps():
        with resources.as_file(resources.files("ctfrpu") / "sweeps" / f"{stem}.toml") as real:
            return Path(real)
    if p.is_dir():
        raise CtfrpuError(f"sweep file {p} is a directory; give the sweep's .toml file")
    shipped = ", ".join(shipped_sweeps()) or "none"
    raise CtfrpuError(f"sweep file not found: {p} (shipped sweeps: {shipped})")


def _flatten_grid(grid: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested TOML tables -> dotted keys; a non-table value ends a path (it must be a list)."""
    out: dict[str, Any] = {}
    for key, value in grid.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            if not value:
                raise CtfrpuError(f"grid '{dotted}': empty table (expected a list of values)")
            out.update(_flatten_grid(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def _check_key(where: str, dotted: str) -> None:
    if not dotted or any(not part for part in dotted.split(".")):
        raise CtfrpuError(f"{where}: bad config path")
    if dotted.split(".")[0] in _RESERVED:
        raise CtfrpuError(f"{where}: '{dotted}' is set from the sweep's name, not per run")


def _apply(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    data = merge(base, {})
    for key, value in overrides.items():
        set_path(data, key, value)
    return data


def parse_sweep(doc: dict[str, Any], source: str = "<sweep>") -> Sweep:
    """Expand and validate a parsed sweep document; errors read ``sweep file SOURCE: ...``."""
    try:
        return _parse(doc, source)
    except CtfrpuError as err:
        raise CtfrpuError(f"sweep file {source}: {err}") from None


def _parse(doc: dict[str, Any], source: str) -> Sweep:
    unknown = [k for k in doc if k not in _TOP_KEYS]
    if unknown:
        raise CtfrpuError(f"unknown top-level key '{unknown[0]}' (allowed: {', '.join(_TOP_KEYS)})")
    name = doc.get("name")
    if name is not None and not isinstance(name, str):
        raise CtfrpuError(f"name must be a string (the sweep's label in the run store), got {name!r}")
    if not name:
        raise CtfrpuError("missing 'name = \"...\"' (the sweep's label in the run store)")
    if not _NAME_RE.match(name):
        raise CtfrpuError(f"name {name!r}: use letters, digits and _ . + - only")
    description = doc.get("description", "")
    if not isinstance(description, str):
        raise CtfrpuError("'description' must be a string")

    base = doc.get("base", {})
    if not isinstance(base, dict):
        raise CtfrpuError("'base' must be a table (a run config)")
    for key in _RESERVED:
        if key in base:
            raise CtfrpuError(f"base: '{key}' is set from the sweep's name, not per run")
    try:
        validate(base)
    except CtfrpuError as err:
        raise CtfrpuError(f"base: {err}") from None

    grid_doc = doc.get("grid", {})
    if not isinstance(grid_doc, dict):
        raise CtfrpuError("'grid' must be a table of 'dotted.path' = [values]")
    axes = _flatten_grid(grid_doc)
    for key, values in axes.items():
        where = f"grid '{key}'"
        _check_key(where, key)
        if not isinstance(values, list):
            raise CtfrpuError(f"{where}: expected a list of values, got {_show(values)}")
        if not values:
            raise CtfrpuError(f"{where}: empty axis")
        for value in values:  # attribute a bad value to its axis before combining axes
            try:
                validate(_apply(base, {key: value}))
            except CtfrpuError as err:
                raise CtfrpuError(f"{where} = {_literal(value)}: {err}") from None

    explicit = doc.get("runs", [])
    if not isinstance(explicit, list) or not all(isinstance(r, dict) for r in explicit):
        raise CtfrpuError("'runs' must be an array of tables ([[runs]]) of dotted overrides")

    specs: list[tuple[str, dict[str, Any]]] = []
    if axes:
        keys = list(axes)
        for combo in itertools.product(*(axes[k] for k in keys)):
            specs.append(("grid run", dict(zip(keys, combo))))
    elif not explicit:
        specs.append(("base run", {}))  # no grid, no runs: the base config alone
    for i, over in enumerate(explicit, 1):
        flat = _flatten_grid(over) if over else {}
        for key in flat:
            _check_key(f"runs[{i}] '{key}'", key)
        specs.append((f"runs[{i}]", flat))

    runs: list[SweepRun] = []
    seen: set[str] = set()
    checked: set[str] = set()
    duplicates = 0
    for what, over in specs:
        data = _apply(base, over)
        data["sweep"] = name
        try:
            cfg = validate(data)
            physics = json.dumps([cfg.device.model_dump(mode="json"), cfg.pulses.model_dump(mode="json"),
                                  cfg.update.timing], sort_keys=True)
            if physics not in checked:  # device parameters, train design, timing: once per distinct one
                check_run_physics(cfg.device, cfg.pulses, cfg.update)
                checked.add(physics)
        except CtfrpuError as err:
            label = " ".join(f"{k}={_literal(v)}" for k, v in over.items())
            raise CtfrpuError(f"{what} ({label}): {err}" if label else f"{what}: {err}") from None
        h = cfg.hash()
        if h in seen:
            duplicates += 1
            continue
        seen.add(h)
        runs.append(SweepRun(index=len(runs) + 1, config=cfg, hash=h, varied=over))
    first: dict[str, int] = {}
    equivalent = []
    for r in runs:
        key = r.config.computation_key(r.hash)
        if key in first:
            equivalent.append((r.index, first[key]))
        else:
            first[key] = r.index
    return Sweep(name=name, path=Path(source), runs=runs, axes=axes, description=description,
                 duplicates=duplicates, equivalent=tuple(equivalent))


def load_sweep(path: str | Path) -> Sweep:
    """Read, expand and validate a sweep file (or a shipped sweep by name)."""
    p = resolve_sweep_path(path)
    try:
        doc = load_toml(p)
    except CtfrpuError as err:
        raise CtfrpuError(f"sweep file {err}") from None
    sweep = parse_sweep(doc, str(path))
    return Sweep(name=sweep.name, path=p, runs=sweep.runs, axes=sweep.axes,
                 description=sweep.description, duplicates=sweep.duplicates, equivalent=sweep.equivalent)
