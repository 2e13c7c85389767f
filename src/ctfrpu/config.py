"""Run configuration: one validated object describes a run completely.

A config is loaded from TOML, overridden by CLI flags (``section.key=value``), validated strictly
(an unknown key or a bad value is a one-line :class:`CtfrpuError` naming the key) and stored,
resolved, with every run. Its hash identifies the run for resumable sweeps.

Sections mirror aihwkit's vocabulary where the meaning is the same (``update_management``,
``update_bl_management``, ``inp_res``, ``out_res``, ``out_noise``); device parameters live in the
device dataclasses (:mod:`ctfrpu.devices`) and are overridden here by name through
``device.params``.
"""

from __future__ import annotations

import hashlib
import json
import math
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import CtfrpuError
from .units import parse_time

from .data.registry import DATASET_NAMES as DATASETS


#: Upper bounds that keep a typo from asking for terabytes (a one-line error instead of an
#: ArrayMemoryError). Ours: far above every design in the papers (N <= a few thousand, layers of
#: a few hundred units) and still within a workstation's memory for one tile.
MAX_PULSES = 100_000
MAX_LAYER = 8192


class _Strict(BaseModel):
    # strict: no bool for a number (`epochs = true` was one epoch), no string for a bool
    # (`update_management = "yes"`), no float for an int; an int is still accepted for a float.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, use_attribute_docstrings=True,
                              strict=True)


def _finite(v: float) -> float:
    if v is not None and not math.isfinite(v):
        raise ValueError("must be finite")
    return v


class DataConfig(_Strict):
    dataset: Literal[DATASETS] = "mnist"  # type: ignore[valid-type]  (the registry's names)
    """Dataset (``ctfrpu.data.registry``): 'mnist', 'fashion' (Fashion-MNIST) or 'synthetic' (small
    generated 28x28 set for tests)."""
    train_limit: int | None = Field(default=None, ge=1)
    """Train on the first N samples of the shuffled training set only (quick looks); None = all."""
    test_limit: int | None = Field(default=None, ge=1)
    """Evaluate on the first N test samples only; None = all 10,000."""
    val_size: int = Field(default=0, ge=0)
    """Hold out this many training samples as a validation split (never the test set) for choices."""


class ModelConfig(_Strict):
    hidden: list[int] = Field(default_factory=lambda: [256, 128])
    """Hidden layer sizes of the MLP (Gokmen-Vlasov: 784-256-128-10)."""
    activation: Literal["sigmoid", "tanh", "relu"] = "sigmoid"
    """Hidden activation; the output is softmax with cross-entropy."""

    @field_validator("hidden")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if not v or any(h < 1 for h in v):
            raise ValueError("hidden sizes must be a non-empty list of positive integers")
        if any(h > MAX_LAYER for h in v):
            raise ValueError(f"hidden sizes must be at most {MAX_LAYER}")
        return v


class OptimConfig(_Strict):
    lr: float = Field(default=0.01, gt=0)
    """Learning rate of SGD (and of the pulsed update)."""
    batch_size: int = Field(default=1, ge=1)
    """Mini-batch size; analog layers apply the pulsed update sample by sample (as in hardware)."""
    epochs: int = Field(default=30, ge=1)
    """Number of passes over the training set. 30: where the FP baseline's validation accuracy
    (5,000 held-out training samples, seed 0) has plateaued on both MNIST and Fashion-MNIST."""
    lr_decay: float = Field(default=1.0, gt=0, le=1)
    """Step decay of the learning rate: epoch e (1-based) trains with lr * lr_decay**(e - 1).
    1.0 (default) keeps lr constant. It reaches a converged FP baseline in a few epochs at a
    large lr (the paper-scale study); the pulsed update scales with the epoch's lr as SGD does."""

    engine: Literal["compiled", "reference"] = "compiled"
    """How the training loop runs. 'compiled': one numba call trains a chunk of samples (forward,
    backward, every layer's update; :mod:`ctfrpu.training.compiled`), several times faster.
    'reference': the per-sample numpy loop (:class:`ctfrpu.training.engine.MLP`) that produced every
    stored result before the compiled loop existed (ours). Same algorithm and random streams; the
    two agree to rounding (tested), not bit for bit over a whole run, so the engine is part of the
    config hash. A stored config without this field ran on the reference engine
    (:func:`stored_config`)."""

    def epoch_lr(self, epoch: int) -> float:
        """The learning rate of (1-based) ``epoch``."""
        return self.lr * self.lr_decay ** (epoch - 1)

    @field_validator("lr")
    @classmethod
    def _lr_finite(cls, v: float) -> float:
        return _finite(v)


class DeviceConfig(_Strict):
    kind: str = "fp"
    """'fp': floating-point weights (software baseline), or a registered device kind
    (``ctfrpu.devices.registry.DEVICES``: 'ideal' constant-step device that conserves program time,
    aihwkit ConstantStep; 'ctf' our CTF program-time model; 'softbounds'); checked against the
    registry by ``check_run_physics`` before a run starts."""
    params_file: str | None = None
    """TOML/JSON file of device parameters (e.g. written by ``ctfrpu device fit``)."""
    params: dict[str, float | int | bool | str] = Field(default_factory=dict)
    """Overrides of device-dataclass fields by name, e.g. {dw_min = 0.002}; unknown names are errors."""


class PulseConfig(_Strict):
    n: int = Field(default=1000, ge=1, le=MAX_PULSES)
    """N: number of slots of each row/column pulse train (aihwkit's desired_bl)."""
    gap: float = 1e-6
    """t_gap: off time between successive slots, seconds (accepts '1us')."""
    mode: Literal["on_time", "fixed_pw"] = "on_time"
    """'on_time': fixed ON-time budget per train, pw = t_on / N (default; more pulses, shorter
    pulses); 'fixed_pw': every pulse has width ``pw`` whatever N."""
    t_on: float = 5e-3
    """ON-time budget of one train in 'on_time' mode, seconds (our illustrative default)."""
    pw: float = 5e-6
    """Pulse width in 'fixed_pw' mode, seconds."""

    @field_validator("gap", "t_on", "pw", mode="before")
    @classmethod
    def _time(cls, v: Any, info) -> float:
        return parse_time(v, f"pulses.{info.field_name}")

    @field_validator("gap")
    @classmethod
    def _gap(cls, v: float) -> float:
        if v < 0:
            raise ValueError("must be >= 0")
        return v

    @field_validator("t_on", "pw")
    @classmethod
    def _pos(cls, v: float) -> float:
        if v <= 0:
            raise ValueError("must be > 0")
        return v


class UpdateConfig(_Strict):
    mode: Literal["exact", "expected", "gaussian", "factorial"] = "exact"
    """'exact': pulse-exact stochastic update with per-cell pulse history (reference);
    'expected': the noise-free mean update of the device (ablation: bias only);
    'gaussian': expected update plus Gaussian noise of the exact mode's variance (ablation);
    'factorial': OUR 2 x 2 ablation, per cell E(N_b) + [exact(N) - E(N)]: the bias of the design
    with ``bias_pulses`` = N_b slots and the noise of this config's own design (N = pulses.n)."""
    update_management: bool = True
    """Rescale row/column probabilities by sqrt(max|d|/max|x|) so both use their range (aihwkit)."""
    update_bl_management: bool = False
    """Shorten the train when few pulses are needed (aihwkit); pw is kept, only slots are dropped."""
    noise_scale: float = Field(default=1.0, ge=0)
    """Multiplier of the Gaussian noise in 'gaussian' mode (1 = matched to the exact mode)."""
    bias_pulses: int | None = Field(default=None, ge=1)
    """'factorial' mode only: N_b, the pulse count of the design whose mean update (bias) is used
    (same pulse mode, t_on / pw and gap as ``pulses``)."""
    timing: str = "slot"
    """Timing model of a cell's coincidences within an update (OUR models, ``ctfrpu.devices.timing``):
    'slot' (at their slot of the train; default), 'burst' (back to back, t_gap apart), 'train'
    (each with the per-pulse mean change of a fully-ON train); checked by ``check_run_physics``."""


class CompensationConfig(_Strict):
    kind: Literal["none", "gain", "stretch"] = "none"
    """'none'; 'gain': pulse-train design compensation that raises the row/column gain A*B by
    1/r_bar so the expected CTF update equals SGD (more pulses, same pw); 'stretch': pulse width
    k pw with A*B x k instead (same pulse count, longer pulses). Both OUR rules, see
    ctfrpu.design.compensation."""
    u_typ: float = Field(default=0.2, gt=0, le=1)
    """Typical |x_i d_j| at which the gain is evaluated (our choice; ctfrpu.design.compensation.U_TYP)."""


class IOConfig(_Strict):
    inp_res: float = Field(default=0.0, ge=0)
    """Input quantisation step (fraction of the input range); 0 = ideal (aihwkit inp_res)."""
    out_res: float = Field(default=0.0, ge=0)
    """Output quantisation step; 0 = ideal (aihwkit out_res)."""
    out_noise: float = Field(default=0.0, ge=0)
    """Std of additive Gaussian output noise of the analog MVM; 0 = ideal (aihwkit out_noise)."""


class RunConfig(_Strict):
    seed: int = Field(default=0, ge=0)
    """The one seed from which every random draw of the run is derived."""
    name: str | None = None
    """Optional label of the run (not part of the hash)."""
    sweep: str | None = None
    """Name of the sweep this run belongs to (set by the sweep engine; not part of the hash)."""
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    device: DeviceConfig = Field(default_factory=DeviceConfig)
    pulses: PulseConfig = Field(default_factory=PulseConfig)
    update: UpdateConfig = Field(default_factory=UpdateConfig)
    compensation: CompensationConfig = Field(default_factory=CompensationConfig)
    io: IOConfig = Field(default_factory=IOConfig)

    @field_validator("name", "sweep")
    @classmethod
    def _printable(cls, v: str | None) -> str | None:
        # labels are printed in tables and logs: a newline or an escape sequence would forge them
        if v is not None and any(ord(c) < 32 or 127 <= ord(c) < 160 for c in v):
            raise ValueError("must not contain control characters (newlines, tabs, escape sequences)")
        return v

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def computation_key(self, known_hash: str | None = None) -> str:
        """What the run computes: :meth:`hash` with the sections its device ignores reset to their
        defaults -- an 'fp' run has no pulse train, update, compensation, I/O periphery or device
        parameters. Two configs with one key give the same result (sweeps warn about them); the
        hashes themselves stay distinct, so every stored run keeps its own. ``known_hash``: this
        config's :meth:`hash` if already computed (it reads the device parameter file)."""
        if self.device.kind != "fp":
            return known_hash or self.hash()
        return self.model_copy(update={"pulses": PulseConfig(), "update": UpdateConfig(),
                                       "compensation": CompensationConfig(), "io": IOConfig(),
                                       "device": DeviceConfig()}).hash()

    def hash(self) -> str:
        """SHA-256 (16 hex digits) of the canonical resolved config, labels excluded.

        Content-addressed: with a ``device.params_file``, the file's path is replaced by its
        parameter values (merged with ``device.params``; times in seconds, numbers as floats), so
        editing the file makes a new hash and the same values inline or in another file hash
        alike. A config without a parameter file and with float (or no) overrides hashes as it
        always did. Reads the file (one-line CtfrpuError if
        it is unreadable). The full resolved device is recorded by the runner (store
        ``device_json``); this layer cannot build devices.
        """
        d = self.to_dict()
        d.pop("name", None)
        d.pop("sweep", None)
        if d["optim"].get("lr_decay") == 1.0:  # added later: its default keeps every earlier hash
            d["optim"].pop("lr_decay")
        if d["optim"].get("engine") == "reference":  # added later: every earlier run was a reference run
            d["optim"].pop("engine")
        if self.device.kind != "fp":
            values = read_params_file(self.device.params_file) if self.device.params_file else {}
            values.update(self.device.params)
            d["device"]["params_file"] = None  # as if given inline: the path is not the content
            d["device"]["params"] = {k: _canonical(v) for k, v in sorted(values.items())}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def _canonical(v: Any) -> Any:
    """A device-parameter value as hashed: a time string ('20us') in seconds, numbers as floats."""
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return parse_time(v, "parameter")
        except CtfrpuError:
            return v
    return v


PRESET_PREFIX = "preset:"
"""``device.params_file = "preset:ctf_paper"`` names a parameter file shipped in ``ctfrpu/presets``."""


def params_path(path: str | Path) -> Path:
    """The file a ``device.params_file`` value names: a path, or ``preset:NAME`` for the packaged
    ``ctfrpu/presets/NAME.toml`` (so sweep files and stores do not depend on where ctfrpu is installed)."""
    text = str(path)
    if not text.startswith(PRESET_PREFIX):
        return Path(path)
    name = text[len(PRESET_PREFIX):]
    root = Path(__file__).parent / "presets"
    known = sorted(f.stem for f in root.glob("*.toml"))
    if name not in known:
        raise CtfrpuError(f"unknown device preset {name!r}; choose from {', '.join(known)}")
    return root / f"{name}.toml"


def read_params_file(path: str | Path) -> dict[str, Any]:
    """The parameter values of a device parameter file (its ``[params]`` table, or the flat
    table), for hashing; the device layer (``ctfrpu.devices.registry``) validates them."""
    p = params_path(path)
    if not p.is_file():
        raise CtfrpuError(f"device parameter file not found: {p}")
    try:
        text = p.read_bytes().decode("utf-8")
        data = json.loads(text) if p.suffix == ".json" else parse_toml_text(text, str(p))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, OSError) as err:
        raise CtfrpuError(f"{p}: cannot parse device parameters: {type(err).__name__}") from None
    if not isinstance(data, dict):
        raise CtfrpuError(f"{p}: device parameters must be a table of name = value, not a {type(data).__name__}")
    if isinstance(data.get("params"), dict):
        data = data["params"]
    return {k: v for k, v in data.items() if not isinstance(v, dict)}


# ----------------------------------------------------------------------------------------------
# loading, overriding, error formatting


def _format_validation_error(err: ValidationError) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]) or "config"
    kind = first["type"]
    if kind == "extra_forbidden":
        return f"unknown config key '{loc}'"
    msg = first["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    value = first.get("input")
    shown = "" if isinstance(value, (dict, list)) else f" (got {value!r})"
    return f"invalid config value for '{loc}': {msg}{shown}"


def stored_config(data: dict[str, Any]) -> RunConfig:
    """A config as a store recorded it (``RunConfig.to_dict()`` of its time). Fields added since
    then are absent and mean what the code of that time did: no ``optim.engine`` -> 'reference'
    (the only engine before the compiled loop), so an earlier run keeps its hash and can be resumed."""
    if isinstance(data, dict) and isinstance(data.get("optim"), dict) and "engine" not in data["optim"]:
        data = {**data, "optim": {**data["optim"], "engine": "reference"}}
    return validate(data)


def validate(data: dict[str, Any]) -> RunConfig:
    """Build a RunConfig from a nested dict; one-line CtfrpuError on any problem."""
    try:
        return RunConfig.model_validate(data)
    except ValidationError as err:
        raise CtfrpuError(_format_validation_error(err)) from None
    except CtfrpuError as err:  # from unit parsing inside validators
        raise CtfrpuError(f"invalid config value: {err}") from None


#: Deepest table nesting accepted in a TOML file (ours: configs nest 3 deep; the limit keeps a
#: hostile file from reaching Python's recursion limit).
MAX_TOML_DEPTH = 32


def parse_toml_text(text: str, where: str) -> dict[str, Any]:
    """TOML text -> dict with one-line errors (bad syntax, absurd nesting)."""
    depth = _nesting(text)
    if depth > MAX_TOML_DEPTH:
        raise CtfrpuError(f"{where}: invalid TOML: nested {depth} levels deep (at most {MAX_TOML_DEPTH})")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise CtfrpuError(f"{where}: invalid TOML: {err}") from None
    except RecursionError:
        raise CtfrpuError(f"{where}: invalid TOML: nested too deeply") from None


def _nesting(text: str) -> int:
    """Upper bound of the bracket/brace nesting of ``text`` (strings ignored only roughly: a
    bracket inside a string can only make the bound larger, never hide real nesting)."""
    depth = best = 0
    for ch in text:
        if ch in "[{":
            depth += 1
            best = max(best, depth)
        elif ch in "]}":
            depth = max(depth - 1, 0)
    return best


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file into a dict; one-line errors for a missing file, bad encoding or syntax."""
    p = Path(path)
    if not p.is_file():
        raise CtfrpuError(f"config file not found: {p}")
    try:
        text = p.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise CtfrpuError(f"{p}: not a TOML text file (not UTF-8 at byte {err.start})") from None
    except OSError as err:
        raise CtfrpuError(f"cannot read {p}: {err.strerror or err}") from None
    if p.suffix.lower() == ".json" or text.lstrip().startswith("{"):
        raise CtfrpuError(f"{p}: configs and sweep files are TOML (this looks like JSON); write the same "
                          f"keys as TOML tables, e.g. [optim] then lr = 0.1")
    return parse_toml_text(text, str(p))


def parse_value(text: str) -> Any:
    """Interpret a CLI override value: TOML scalar/array/inline-table syntax if it parses, else
    the string."""
    if _nesting(text) > MAX_TOML_DEPTH:
        raise CtfrpuError(f"value nested too deeply: {text[:40]!r}...")
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except (tomllib.TOMLDecodeError, RecursionError):
        return text


def set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``data['a']['b'] = value`` for ``dotted='a.b'`` (creating sections). A table value
    given for a section merges into it (``--set "optim={lr=0.5}"`` keeps ``optim.epochs``)."""
    keys = dotted.split(".")
    if any(not k for k in keys):
        raise CtfrpuError(f"bad config key '{dotted}'")
    cur = data
    for k in keys[:-1]:
        nxt = cur.setdefault(k, {})
        if not isinstance(nxt, dict):
            raise CtfrpuError(f"config key '{dotted}': '{k}' is not a section")
        cur = nxt
    last = keys[-1]
    if isinstance(value, dict) and isinstance(cur.get(last), dict):
        cur[last] = merge(cur[last], value)
    else:
        cur[last] = value


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``over`` into a copy of ``base``."""
    out = json.loads(json.dumps(base))
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def resolve(config_file: str | Path | None = None, overrides: dict[str, Any] | None = None,
            sets: list[str] | None = None) -> RunConfig:
    """File, then dotted ``overrides`` (from CLI flags), then ``--set key=value`` strings."""
    data: dict[str, Any] = load_toml(config_file) if config_file else {}
    for key, value in (overrides or {}).items():
        if value is not None:
            set_path(data, key, value)
    for item in sets or []:
        if "=" not in item:
            raise CtfrpuError(f"--set expects key=value, got {item!r}")
        key, text = item.split("=", 1)
        set_path(data, key.strip(), parse_value(text.strip()))
    return validate(data)
