"""Charge Trap Flash device with non-ideal program time -- OUR reconstruction.

Only the abstracts of Shrivastava et al. (arXiv:2307.06088, arXiv:2402.09792) are public. They
state three trends at fixed total ON time: (1) splitting the ON time into more, shorter pulses
loses V_T shift, (2) the shift collapses for pw < ~2 us, (3) smaller gaps recover the loss, and a
mechanism: a transient tunnelling-field enhancement from blocking-oxide trap-charge dynamics.
The equations below are our model of that mechanism (docs/science.md §4), not the papers'.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar
from pathlib import Path

import numba
import numpy as np

from ..errors import CtfrpuError
from .base import DeviceState, check_pulse_arrays, validate_fields
from .ideal import coerce_fields

PRESET_NAME = "ctf_illustrative"
"""Name of OUR illustrative preset (``src/ctfrpu/presets/ctf_illustrative.toml``): the
:class:`CTFDevice` defaults are equal to it (a test checks this)."""

TIME_FIELDS = ("tau_on_p", "t_d_p", "tau_on_e", "t_d_e", "tau_off")  # CTFDevice.time_fields
"""CTFDevice fields that are times: parameter files and ``--fix`` accept '2us', '500ns', '1ms'."""


def preset_path(name: str = PRESET_NAME) -> Path:
    """Path of a device preset shipped with the package (TOML with a ``[params]`` table)."""
    path = Path(__file__).resolve().parent.parent / "presets" / f"{name}.toml"
    if not path.is_file():
        raise CtfrpuError(f"unknown device preset {name!r} (no {path})")
    return path


def pulse_overlap_tol(times):
    """Tolerance (s) below which a pulse starting before the previous one ended is rounding, not
    an overlap: 1e-15 s plus a few ulps of the absolute time (long runs reach large times)."""
    return 1e-15 + 1e-12 * np.abs(times)


def check_pulses_lazy(shape, times, widths, signs):
    """Like :func:`base.check_pulse_arrays`, but validates the arrays *before* broadcasting them to
    ``shape + (K,)`` (a train shared by 10^6 cells is checked once, not 10^6 times).

    Returns ``(small, full)``: the checked arrays at their own broadcast shape ``cells' + (K,)``
    and read-only views broadcast to ``shape + (K,)``.
    """
    signs_a = np.asarray(signs)
    if signs_a.ndim == 0:
        raise CtfrpuError("pulses: signs must have a last axis of pulses")
    arrays = [np.asarray(times), np.asarray(widths), signs_a]
    try:
        cells = np.broadcast_shapes(*(a.shape[:-1] if a.ndim else () for a in arrays))
        if np.broadcast_shapes(cells, tuple(shape)) != tuple(shape):
            raise ValueError
    except ValueError:
        raise CtfrpuError(f"pulses: arrays do not broadcast to cells {tuple(shape)} x K") from None
    small = check_pulse_arrays(cells, *arrays)
    target = tuple(shape) + (signs_a.shape[-1],)
    return small, tuple(np.broadcast_to(a, target) for a in small)

# Indices into CTFDevice.kernel_params() (shared by the numpy and the numba code paths).
K_KAPPA_P, K_A_P, K_TAU_ON_P, K_TD_P, K_KAPPA_E, K_A_E, K_TAU_ON_E, K_TD_E, K_TAU_OFF, K_M, K_NORM, \
    K_DV_STD, K_VT_REF, K_V_UNIT = range(14)


def pulse_math(vt, e0, pw, sign, kscale, vmin, vmax, prm, xi):
    """One pulse, closed form (works on numpy arrays and, jitted, on scalars).

    ``e0`` is the enhancement at the pulse's start (already relaxed over the preceding gap),
    ``sign`` +1 program / -1 erase / 0 no pulse, ``xi`` a standard normal for cycle-to-cycle noise.
    Returns (vt_new, e_new). With w = max(pw - t_d, 0), c = exp(-w / tau_on)::

        dV = sign * kappa * kscale * s(V_T) * [(1 + a) w - a tau_on (1 - e0)(1 - c)] * max(0, 1 + dv_std xi)
        e_new = 1 - (1 - e0) c
    """
    prog = 0.5 * (1.0 + sign)                       # 1 for program, 0 for erase (and 0.5 for no pulse)
    active = sign * sign                              # 0 for padding
    kappa = prog * prm[K_KAPPA_P] + (1.0 - prog) * prm[K_KAPPA_E]
    a = prog * prm[K_A_P] + (1.0 - prog) * prm[K_A_E]
    tau_on = prog * prm[K_TAU_ON_P] + (1.0 - prog) * prm[K_TAU_ON_E]
    t_d = prog * prm[K_TD_P] + (1.0 - prog) * prm[K_TD_E]
    w = np.maximum(pw - t_d, 0.0)
    c = np.exp(-w / tau_on)
    u = np.minimum(np.maximum((vt - vmin) / (vmax - vmin), 0.0), 1.0)
    m = prm[K_M]
    s = (prog * (1.0 - u ** m) + (1.0 - prog) * (1.0 - (1.0 - u) ** m)) / prm[K_NORM]
    noise = np.maximum(0.0, 1.0 + prm[K_DV_STD] * xi)
    dv = sign * kappa * kscale * s * ((1.0 + a) * w - a * tau_on * (1.0 - e0) * (1.0 - c)) * noise
    vt_new = np.minimum(np.maximum(vt + dv, vmin), vmax)
    e_new = active * (1.0 - (1.0 - e0) * c) + (1.0 - active) * e0
    return vt_new, e_new


@numba.njit(cache=True)
def pulse_coeffs(a, tau_on, t_d, pw):
    """(lin, aq, c) of one pulse of width pw: w = max(pw - t_d, 0), c = exp(-w / tau_on),
    lin = (1 + a) w - a tau_on (1 - c), aq = a tau_on (1 - c); dV = sign kappa s (lin + aq e0).
    The scalar closed form, jitted once and called from Python (``CTFDevice.pulse_constants``) and
    numba (``ctf_fast``) alike; :func:`pulse_math` is its vectorised numpy reference (tested equal)."""
    w = max(pw - t_d, 0.0)
    c = math.exp(-w / tau_on)
    return (1.0 + a) * w - a * tau_on * (1.0 - c), a * tau_on * (1.0 - c), c


pulse_math_nb = numba.njit(cache=True, inline="always")(pulse_math)
"""The same closed form compiled for scalars: called per coincidence by the update kernel."""


@dataclass(frozen=True)
class CTFDevice:
    """CTF cell with a transient field enhancement e -- OUR model of non-ideal program time.

    State per cell: threshold voltage V_T (the weight) and a fast hidden enhancement e in [0, 1].

    During a pulse, after an onset delay t_d (e frozen), the enhancement builds up and V_T moves::

        de/dt = (1 - e) / tau_on            dV_T/dt = +/- kappa (1 + a e) s(V_T)

    and between pulses it relaxes, de/dt = -e / tau_off. For one pulse of width pw starting at e0
    (s held constant over the pulse), with w = max(pw - t_d, 0) and c = exp(-w / tau_on)::

        dV_T = kappa s [(1 + a) w - a tau_on (1 - e0)(1 - c)],   e1 = 1 - (1 - e0) c
        after an off time t:  e <- e exp(-t / tau_off)

    Saturation (soft bounds), u = (V_T - V_min) / (V_max - V_min), normalised to 1 at u = 1/2::

        s_program = (1 - u^m) / (1 - 2^-m),   s_erase = (1 - (1 - u)^m) / (1 - 2^-m)

    Time conventions (OUR choices): during the onset delay t_d neither V_T nor e changes; e relaxes
    from the *end* of a pulse to the start of the next one; s is evaluated at the V_T of the pulse's
    start (per-pulse soft bounds, as in aihwkit's SoftBounds); V_T is finally clipped to the cell's
    window. A pulse shorter than t_d does nothing at all.

    Weight: w = (V_T - vt_ref) / v_unit. Program (+) raises V_T and the weight, erase (-) lowers
    them; erase has its own kappa, a, tau_on, t_d; the enhancement e is shared by both polarities.
    Device-to-device: kappa and the window half-widths vary per cell; cycle-to-cycle: each pulse's
    dV_T is multiplied by max(0, 1 + dv_std xi).

    Why it reproduces the device paper's trends: splitting the ON time resets e at every pulse
    and pays t_d again (fragmentation loss); t_d and tau_on make short pulses inefficient (cliff);
    a short gap keeps e high for the next pulse (recovery at small gaps). In the long-pulse limit a
    pulse programs ``kappa (1 + a) pw``: the program-time-conserving (ideal) level.

    The defaults are OUR illustrative preset (``presets/ctf_illustrative.toml``), chosen to show the
    three trends with the cliff near 2 us -- not measured data. The nominal program rate is
    ``kappa_p (1 + a_p) / v_unit = 200 /s`` of ON time, the ideal device's rate (dw_min = 0.001 at
    pw = 5 us). Time fields accept strings with units ('2us'). Fit measured data with
    ``ctfrpu device fit``.
    """

    kappa_p: float = 200.0
    """Program rate kappa without enhancement, V/s."""
    a_p: float = 1.0
    """Program: maximum relative rate enhancement a (rate = kappa (1 + a e))."""
    tau_on_p: float = 3e-6
    """Program: build-up time constant of e during a pulse, s."""
    t_d_p: float = 1.2e-6
    """Program: onset delay before a pulse programs (and builds e), s."""
    kappa_e: float = 200.0
    """Erase rate kappa without enhancement, V/s."""
    a_e: float = 1.0
    """Erase: maximum relative rate enhancement a."""
    tau_on_e: float = 3e-6
    """Erase: build-up time constant of e during a pulse, s."""
    t_d_e: float = 1.2e-6
    """Erase: onset delay, s."""
    tau_off: float = 20e-6
    """Relaxation time constant of e between pulses, s."""
    vt_min: float = 1.0
    """Lower end of the V_T window (erase saturation), V."""
    vt_max: float = 5.0
    """Upper end of the V_T window (program saturation), V."""
    vt_ref: float = 3.0
    """V_T of weight 0, V."""
    v_unit: float = 2.0
    """Volts per unit weight: w = (V_T - vt_ref) / v_unit."""
    bound_exponent: float = 6.0
    """Exponent m of the saturation function (large m: flat centre, sharp saturation)."""
    kappa_dtod: float = 0.1
    """Relative device-to-device spread (std) of kappa."""
    window_dtod: float = 0.05
    """Relative device-to-device spread (std) of the window half-widths."""
    dv_std: float = 0.1
    """Relative cycle-to-cycle spread (std) of each pulse's dV_T."""
    carry_enhancement: bool = False
    """Whether e carries over from one training update to the next (default: the time between
    updates relaxes it fully). Device-level pulse APIs always keep the full history."""

    kind: str = field(default="ctf", init=False, repr=False)

    def __post_init__(self) -> None:
        coerce_fields(self, times=TIME_FIELDS, flags=("carry_enhancement",))
        validate_fields(self, positive=("kappa_p", "kappa_e", "tau_on_p", "tau_on_e", "tau_off", "v_unit",
                                        "bound_exponent"),
                        nonneg=("a_p", "a_e", "t_d_p", "t_d_e", "kappa_dtod", "window_dtod", "dv_std"))
        if not self.vt_min < self.vt_ref < self.vt_max:
            raise CtfrpuError(f"CTFDevice: need vt_min < vt_ref < vt_max, got {self.vt_min}, {self.vt_ref}, {self.vt_max}")

    # -- parameters -------------------------------------------------------------------------

    def kernel_params(self) -> np.ndarray:
        """Scalars for :func:`pulse_math` / the numba kernel, indexed by the ``K_*`` constants."""
        m = float(self.bound_exponent)
        return np.array([self.kappa_p, self.a_p, self.tau_on_p, self.t_d_p, self.kappa_e, self.a_e,
                         self.tau_on_e, self.t_d_e, self.tau_off, m, 1.0 - 0.5 ** m, self.dv_std,
                         self.vt_ref, self.v_unit], dtype=np.float64)

    def pulse_constants(self, pw: float, sign: float = 1.0) -> tuple[float, float, float, float]:
        """(kappa, lin, aq, c) of one pulse of width pw and polarity ``sign`` -- the closed form's
        constants, computed here only (kernels, design helper and expected modes call this):
        w = max(pw - t_d, 0), c = exp(-w / tau_on), lin = (1 + a) w - a tau_on (1 - c),
        aq = a tau_on (1 - c), so that dV = sign kappa kscale s (lin + aq e0)."""
        if sign > 0:
            kappa, a, tau_on, t_d = self.kappa_p, self.a_p, self.tau_on_p, self.t_d_p
        else:
            kappa, a, tau_on, t_d = self.kappa_e, self.a_e, self.tau_on_e, self.t_d_e
        lin, aq, c = pulse_coeffs(float(a), float(tau_on), float(t_d), float(pw))
        return kappa, lin, aq, c

    def decay(self, off_time):
        """Relaxation factor of e over an off time (s): exp(-t / tau_off) (t < 0 counts as 0). The one
        home of this formula outside the kernels' per-pulse carry-over."""
        f = np.exp(-np.maximum(np.asarray(off_time, dtype=np.float64), 0.0) / self.tau_off)
        return float(f) if f.ndim == 0 else f

    # -- plug-in protocol (docs/architecture.md) --------------------------------------------

    def plan(self, shape: tuple[int, int], train, timing):
        """The tile's per-design plan: records, constants, kernels (:class:`~.ctf_update.CTFPlan`)."""
        from .ctf_update import CTFPlan

        return CTFPlan(self, shape, train, timing)

    def program(self, state: DeviceState, w: np.ndarray) -> None:
        """Program weights ``w`` into ``state`` in place (set_weights): V_T set and clipped to each
        cell's window, the cell left fully relaxed (e = 0, no pulse history)."""
        np.clip(self.vt_ref + self.v_unit * w, state.lo, state.hi, out=state.vt)
        np.subtract(state.vt, self.vt_ref, out=state.w)
        state.w /= self.v_unit
        state.e.fill(0.0)
        state.t_last.fill(-np.inf)

    def timing_tables(self, train, timing):
        """The timing model's tables (:class:`~.timing.TimingTables`) for this device and design."""
        return timing.tables(self.decay, (self.pulse_constants(train.pw, 1.0)[3],
                                          self.pulse_constants(train.pw, -1.0)[3]), train)

    def moment_coeffs(self, train, timing, sign: float):
        """(u0, v, c, d_gap, d_T, cv) of one pulse in weight units for the design helper's moment
        recursion (dw = (u0 + v e0)(1 + cv xi)), with the timing model's tables applied."""
        tables = self.timing_tables(train, timing)
        kappa, lin, aq, c = self.pulse_constants(train.pw, sign)
        lin, aq = tables.fold(lin, aq, 0 if sign > 0 else 1)
        return kappa * lin / self.v_unit, kappa * aq / self.v_unit, c, tables.d_gap, tables.d_t, float(self.dv_std)

    title: ClassVar[str] = ("CTF device parameters -- OUR reconstruction of the program-time model (docs/science.md §4); "
                            "its defaults are our illustrative preset, not measured data")
    """How `ctfrpu device params` names this device's parameter set."""
    time_fields: ClassVar[tuple[str, ...]] = TIME_FIELDS
    """Parameters that are times in seconds (shown with a unit)."""

    def summary(self) -> str:
        """One line of derived quantities for `ctfrpu device params` ('' if none)."""
        return (f"derived: nominal rate kappa_p (1 + a_p) / v_unit = {self.kappa_p * (1 + self.a_p) / self.v_unit:g} /s "
                f"of ON time; dw_min at pw = 5us: {self.nominal_dw(5e-6):g}")

    def nominal_dw(self, pw: float) -> float:
        """Program-time-conserving weight step of one pulse (long-pulse limit, s = 1): the ideal
        device this CTF cell is compared with; dw_min in aihwkit's vocabulary."""
        return self.kappa_p * (1.0 + self.a_p) * pw / self.v_unit

    # -- state ------------------------------------------------------------------------------

    def init_state(self, shape: tuple[int, ...], rng: np.random.Generator,
                   w0: np.ndarray | None = None) -> DeviceState:
        """Fresh, fully relaxed cells (e = 0) at weights w0 (default 0), d2d spreads drawn."""
        kscale = np.ones(shape)
        if self.kappa_dtod > 0:
            kscale = np.maximum(0.0, 1.0 + self.kappa_dtod * rng.standard_normal(shape))
        wscale = np.ones(shape)
        if self.window_dtod > 0:
            wscale = np.maximum(0.05, 1.0 + self.window_dtod * rng.standard_normal(shape))
        lo = self.vt_ref - (self.vt_ref - self.vt_min) * wscale
        hi = self.vt_ref + (self.vt_max - self.vt_ref) * wscale
        w0 = np.zeros(shape) if w0 is None else np.asarray(w0, dtype=np.float64)
        vt = np.clip(self.vt_ref + self.v_unit * w0, lo, hi)
        return DeviceState(w=(vt - self.vt_ref) / self.v_unit, rate_scale=kscale, lo=lo, hi=hi, vt=vt,
                           e=np.zeros(shape), t_last=np.full(shape, -np.inf))

    def weights(self, state: DeviceState) -> np.ndarray:
        return state.w

    # -- dynamics ---------------------------------------------------------------------------

    def relax(self, e: np.ndarray, off_time: np.ndarray) -> np.ndarray:
        """e after an off time (seconds): e exp(-t / tau_off)."""
        return e * self.decay(off_time)

    def apply_pulses(self, state: DeviceState, times: np.ndarray, widths: np.ndarray,
                     signs: np.ndarray, rng: np.random.Generator | None = None) -> DeviceState:
        """Apply pulses (arrays of shape state.shape + (K,)), starting at ``times`` (s).

        Vectorised over cells, sequential over the K pulses of each cell; the enhancement relaxes
        between the end of one pulse and the start of the next. Cycle-to-cycle noise is drawn from
        ``rng`` when given and dv_std > 0. The pulse arrays are validated before broadcasting, so
        a train of shape (K,) shared by all cells costs no K x cells memory. A numba-parallel
        equivalent for large arrays is :func:`ctfrpu.devices.ctf_fast.apply_pulses_fast`.
        """
        _, (times, widths, signs) = check_pulses_lazy(state.shape, times, widths, signs)
        prm = self.kernel_params()
        vt, e, t_last = state.vt.copy(), state.e.copy(), state.t_last.copy()
        noisy = rng is not None and self.dv_std > 0
        for k in range(signs.shape[-1]):
            s = signs[..., k]
            fired = s != 0
            off = np.where(np.isfinite(t_last), times[..., k] - t_last, np.inf)
            if np.any(fired & (off < -pulse_overlap_tol(times[..., k]))):
                raise CtfrpuError("pulses: a pulse starts before the previous one ended")
            e0 = self.relax(e, off)
            xi = rng.standard_normal(state.shape) if noisy else 0.0
            vt_new, e_new = pulse_math(vt, e0, widths[..., k], s, state.rate_scale, state.lo, state.hi, prm, xi)
            vt = np.where(fired, vt_new, vt)
            e = np.where(fired, e_new, e)
            t_last = np.where(fired, times[..., k] + widths[..., k], t_last)
        return state.replace(vt=vt, e=e, t_last=t_last, w=(vt - self.vt_ref) / self.v_unit)

    def expected_train_dvt(self, vt: np.ndarray, prob: np.ndarray, sign: np.ndarray, train,
                           kscale: np.ndarray | float = 1.0, lo: np.ndarray | float | None = None,
                           hi: np.ndarray | float | None = None, e_init: np.ndarray | float = 0.0,
                           timing=None) -> np.ndarray:
        """Exact mean dV_T of one stochastic train (s frozen at the start, no bounds clipping).

        ``timing`` (a model of :mod:`ctfrpu.devices.timing`, default slot) sets d_gap and d_T of the
        recursion (burst: d_T = 1) and may add a constant e to every pulse (train timing).

        Each of the N slots fires independently with probability P. Because dV of a pulse is
        affine in e0 and e evolves affinely, the mean m_t = E[e at slot t] obeys
        ``m_{t+1} = alpha m_t + beta`` with alpha = P c d_gap + (1 - P) d_T, beta = P (1 - c) d_gap,
        d_gap = exp(-t_gap / tau_off), d_T = exp(-(pw + t_gap) / tau_off), so that::

            E[dV] = sign kappa s P [N ((1 + a) w - a tau_on (1 - c)) + a tau_on (1 - c) sum_t m_t]
            sum_t m_t = N m* + (e_init - m*)(1 - alpha^N) / (1 - alpha),  m* = beta / (1 - alpha)
        """
        prm = self.kernel_params()
        lo = self.vt_min if lo is None else lo
        hi = self.vt_max if hi is None else hi
        prob = np.asarray(prob, dtype=np.float64)
        sign = np.asarray(sign, dtype=np.float64)
        prog = 0.5 * (1.0 + sign)
        kappa = prog * prm[K_KAPPA_P] + (1 - prog) * prm[K_KAPPA_E]
        a = prog * prm[K_A_P] + (1 - prog) * prm[K_A_E]
        tau_on = prog * prm[K_TAU_ON_P] + (1 - prog) * prm[K_TAU_ON_E]
        t_d = prog * prm[K_TD_P] + (1 - prog) * prm[K_TD_E]
        n, pw = train.n, train.pw
        w = np.maximum(pw - t_d, 0.0)
        c = np.exp(-w / tau_on)
        lin = (1 + a) * w - a * tau_on * (1 - c)
        aq = a * tau_on * (1 - c)
        if timing is None:
            d_gap = self.decay(train.gap)
            d_t = self.decay(train.period)
        else:
            tt = self.timing_tables(train, timing)
            d_gap, d_t = tt.d_gap, tt.d_t
            if tt.e_add != (0.0, 0.0):
                lin = lin + aq * np.where(sign > 0, tt.e_add[0], tt.e_add[1])
                aq = 0.0 * aq
        alpha = prob * c * d_gap + (1 - prob) * d_t
        beta = prob * (1 - c) * d_gap
        one_m_alpha = 1.0 - alpha
        safe = one_m_alpha > 1e-12
        denom = np.where(safe, one_m_alpha, 1.0)
        m_star = np.where(safe, beta / denom, 0.0)
        geo = np.where(safe, (1.0 - alpha ** n) / denom, float(n))
        sum_m = n * m_star + (e_init - m_star) * geo
        u = np.clip((vt - lo) / (np.asarray(hi) - lo), 0.0, 1.0)
        m = prm[K_M]
        s = (prog * (1 - u ** m) + (1 - prog) * (1 - (1 - u) ** m)) / prm[K_NORM]
        return sign * kappa * kscale * s * prob * (n * lin + aq * sum_m)

    def expected_train_dw(self, state: DeviceState, prob: np.ndarray, sign: np.ndarray, train) -> np.ndarray:
        """Mean weight change of one train (window applied to the result)."""
        dvt = self.expected_train_dvt(state.vt, prob, sign, train, state.rate_scale, state.lo, state.hi)
        vt_new = np.clip(state.vt + dvt, state.lo, state.hi)
        return (vt_new - state.vt) / self.v_unit

    def program_efficiency(self, prob: np.ndarray | float, train, sign: float = 1.0, timing=None) -> np.ndarray:
        """r = E[dV] / (N P kappa (1 + a) pw): mean programmed fraction of the ideal (conserved)
        level for a cell that fires with per-slot probability P, at the window centre (``timing``:
        see :meth:`expected_train_dvt`)."""
        prob = np.asarray(prob, dtype=np.float64)
        dv = self.expected_train_dvt(np.full(prob.shape, self.vt_ref), prob, np.full(prob.shape, sign), train,
                                     timing=timing)
        kappa, a = (self.kappa_p, self.a_p) if sign > 0 else (self.kappa_e, self.a_e)
        ideal = sign * train.n * np.maximum(prob, 1e-300) * kappa * (1 + a) * train.pw
        return dv / ideal
