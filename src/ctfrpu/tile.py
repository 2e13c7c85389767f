"""A crossbar tile: analog forward/backward and the stochastic pulse-train update.

:class:`AnalogTile` holds an (out_size x in_size) array of devices of any registered kind (a
device is a plug-in: docs/architecture.md; the tile never branches on its kind). The training
engine computes the MVMs itself with BLAS on :attr:`AnalogTile.weights` (always current, updated
in place by the update kernels) and calls :meth:`AnalogTile.update` once per sample.
:meth:`AnalogTile.from_config` is the one road from a run config to a tile.

The update (docs/science.md §3, aihwkit's vocabulary; N is the pulse count, aihwkit's BL)::

    dw_min = device.nominal_dw(train.pw)             program-time-conserving step of one pulse
    BL     = N, or with update_bl_management min(N, ceil(lr gain max|x| max|d| / dw_min))
    A B    = lr gain / (BL dw_min)
    update_management:  A = sqrt(AB) gamma, B = sqrt(AB) / gamma, gamma = sqrt(max|d| / max|x|)
    otherwise:          A = B = sqrt(AB)
    p_i = min(1, A |x_i|)  per row (input i),   q_j = min(1, B |d_j|)  per column (output j)

Each row i and column j gets a train of BL slots (slot k starts at k (pw + t_gap)); slot k of row
i is ON with probability p_i, of column j with q_j, independently. Cell (j, i) receives one device
pulse of width pw in every slot where both are ON, with sign -sign(x_i d_j), so that
E[dW] = -lr gain outer(d, x) for the ideal device inside its bounds (gradient descent). BL
management keeps pw and the slot period and drops the tail slots; the A B rescaling keeps the
mean unchanged.

Probabilities above 1: without update management they are an error (CtfrpuError: lower lr or
enable update management); with update management p_max = q_max = sqrt(AB max|x| max|d|) exceeds
1 only when even a full train cannot deliver the requested update -- the probabilities are then
clipped to 1 (the update saturates) and the sample is counted in ``stats['clipped']``.

Modes (``UpdateConfig.mode``): 'exact' (pulse-exact, per-cell pulse history, event-driven numba
kernel), 'expected' (the device's exact mean update of the train, noise-free), 'gaussian'
(expected + independent Gaussian noise per cell of the exact mode's variance -- OUR approximation,
see :mod:`ctfrpu.kernels.expected`).

Time. Sample u's train starts at u * train.duration on the tile's clock (OUR choice: trains back
to back, each lasting the full N slots, also with BL management). Where a cell's coincidences sit
in time within an update is the timing model's (``update.timing``, :mod:`ctfrpu.devices.timing`:
'slot' by default, 'burst', 'train'); devices with memory (CTF) read it, memoryless ones ignore it.

Random numbers: everything derives from the tile's ``np.random.Generator``: the device-to-device
draws and one base seed at construction, and the forward/backward output noise. The kernels' own
generator (:mod:`ctfrpu.kernels.rng`: pulse trains, cycle-to-cycle noise) runs one stream per
sample, seeded from (base seed, sample counter) -- no numpy call per update. Same generator state
at construction (and the same calls) -> same result; the batch split does not matter.

Cost (exact mode, see benchmarks/bench_update.py): one kernel call per update (batch), ~5 us of
Python and dispatch, a few ns per row/column train pulse drawn (the sparser side in full, the other
only on the slots where the first has pulses) and ~10-30 ns per cell pulse -- never
N x rows x cols. The expected and Gaussian modes cost a few to ~30 ns per cell with x_i d_j != 0
per sample (dense), i.e. usually MORE than the exact mode. The first call of each kernel on a
machine compiles it (~10 s in all; cached in __pycache__ afterwards).

A tile is not thread-safe (it owns scratch buffers). Its complete state, for checkpoints, is
:meth:`AnalogTile.state_dict` (weights, device records, generator, sample counter, clock);
:meth:`AnalogTile.load_state_dict` restores it so that training continues bit-identically.
"""

from __future__ import annotations

import math

import numpy as np

from .config import IOConfig, UpdateConfig
from .devices.pulses import PulseTrain
from .devices.registry import device_kind
from .devices.timing import timing_model
from .errors import CtfrpuError
from .kernels import exact as kx
from .kernels.bundle import L_CLOCK, L_COUNTER, TrainBuffers, make_ctl
from .kernels.cells import aligned_records
from .kernels.trains import ST_BAD_D, ST_BAD_X, ST_OK, ST_PROB, check_sample, count_coincidences

EVENT_FIELDS = [("row", np.int32), ("col", np.int32), ("slot", np.int32), ("time_s", np.float64),
                ("sign", np.int8), ("dw", np.float64)]
"""Pulse events of :meth:`AnalogTile.trace_update`: row = input index i, col = output index j, slot
k, time_s = k * period (start of the slot, from the train's start), sign +1 potentiate / -1
depress, dw = weight change of the cell (after bounds); a device may add fields (CTF: dvt_V, the
V_T change in volts, and e0, the enhancement at the pulse's start after relaxation)."""
EVENT_DTYPE_IDEAL = np.dtype(EVENT_FIELDS)
EVENT_DTYPE_CTF = np.dtype(EVENT_FIELDS + [("dvt_V", np.float64), ("e0", np.float64)])


def _as_int(v, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise CtfrpuError(f"AnalogTile: {what} must be an integer >= 1, got {v!r}")
    return int(v)


class AnalogTile:
    """Crossbar of ``out_size x in_size`` devices with the stochastic pulse-train update.

    Parameters: ``device`` a device of a registered kind (:func:`ctfrpu.devices.registry.device_kind`);
    ``train`` the pulse-train design; ``update`` and ``io`` from :mod:`ctfrpu.config` (``update.timing``
    names the timing model); ``rng`` the generator every random draw of the tile comes from; ``w0``
    initial weights (out, in) (clipped to the device window; default 0); ``gain`` multiplies A*B
    (the hook of the compensation technique; settable later, ``tile.gain = g``).
    """

    def __init__(self, out_size: int, in_size: int, device, train: PulseTrain, update: UpdateConfig,
                 io: IOConfig, rng: np.random.Generator, w0: np.ndarray | None = None, gain: float = 1.0,
                 bias_train: PulseTrain | None = None, weight_order: str = "C"):
        self.out_size = _as_int(out_size, "out_size")
        self.in_size = _as_int(in_size, "in_size")
        kind = device_kind(device)
        if not isinstance(train, PulseTrain):
            raise CtfrpuError(f"AnalogTile: train must be a PulseTrain, got {type(train).__name__}")
        if not isinstance(update, UpdateConfig):
            raise CtfrpuError(f"AnalogTile: update must be an UpdateConfig, got {type(update).__name__}")
        if not isinstance(io, IOConfig):
            raise CtfrpuError(f"AnalogTile: io must be an IOConfig, got {type(io).__name__}")
        if not isinstance(rng, np.random.Generator):
            raise CtfrpuError(f"AnalogTile: rng must be a numpy Generator, got {type(rng).__name__}")
        shape = (self.out_size, self.in_size)
        if w0 is not None:
            w0 = np.asarray(w0, dtype=np.float64)
            if w0.shape != shape:
                raise CtfrpuError(f"AnalogTile: w0 has shape {w0.shape}, expected {shape}")
            if not np.all(np.isfinite(w0)):
                raise CtfrpuError("AnalogTile: w0 contains NaN or inf")
        self.dw_min = float(device.nominal_dw(train.pw))
        """Program-time-conserving step of one pulse of width pw (aihwkit's dw_min)."""
        if not (0.0 < self.dw_min < math.inf):
            raise CtfrpuError(f"AnalogTile: the device's step per pulse dw_min = {self.dw_min!r} at pw = "
                              f"{train.pw:g} s is not a finite positive number; check the device parameters")
        self.device = device
        self.kind = kind
        self.train = train
        self.update_config = update
        self.timing = timing_model(update.timing)
        self.io = io
        self.rng = rng
        self.gain = gain

        st = device.init_state(shape, rng, w0)
        plan = device.plan(shape, train, self.timing)
        self._plan = plan
        if weight_order not in ("C", "F"):
            raise CtfrpuError(f"AnalogTile: weight_order must be 'C' or 'F', got {weight_order!r}")
        # C-contiguous (fields = 1), huge pages if large; 'F': column-major -- the layout of the
        # compiled loop, whose input-sparse forward reads the columns of W (training.compiled)
        self._w = aligned_records(shape, 1)[..., 0] if weight_order == "C" else \
            aligned_records(shape[::-1], 1)[..., 0].T
        self._w[...] = st.w
        cells = aligned_records(shape, plan.n_fields)
        for k, name in enumerate(plan.fields):
            cells[..., k] = getattr(st, name)
        self._cells = cells
        self.state = st.replace(w=self._w, **{name: cells[..., k] for k, name in enumerate(plan.fields)})
        """The device state, updated in place: ``state.w`` is the weights' base array, the other
        fields are strided views of the per-cell records (:mod:`ctfrpu.kernels.cells`)."""
        self._w_ro = self._w.view()
        self._w_ro.flags.writeable = False

        self._n = train.n
        self._clock = 0.0
        self._stats = np.zeros(kx.N_STATS, dtype=np.float64)
        self._base_seed = int(rng.integers(0, 2**63))
        self._counter = 0
        self._bufs = TrainBuffers(self.out_size, self.in_size, train.n)
        uc = update
        self._ctl0 = make_ctl(self._base_seed, 0, 0, 0.0, self.dw_min, self._n, uc.update_management,
                              uc.update_bl_management, 0.0, train.duration, uc.mode == "gaussian", uc.noise_scale)
        self._event_dtype = np.dtype(EVENT_FIELDS + list(plan.event_fields))
        self.bias_train = bias_train
        """'factorial' mode: the design whose mean update (bias) is used; ``train`` gives the noise."""
        self._bias_plan = None
        if update.mode == "factorial":
            if not isinstance(bias_train, PulseTrain):
                raise CtfrpuError("AnalogTile: update.mode = 'factorial' needs bias_train (update.bias_pulses "
                                  "in a run config)")
            if "factorial" not in plan.modes:       # an optional capability of a device plan
                raise CtfrpuError(f"update.mode = 'factorial' is not available for the {kind} device (it has no "
                                  f"program-time bias to separate); use the ctf device")
            self._bias_plan = device.plan(shape, bias_train, self.timing)
        self._kernel_cache = None

    @classmethod
    def from_config(cls, cfg, w0: np.ndarray, rng: np.random.Generator, weight_order: str = "C") -> "AnalogTile":
        """The tile of a :class:`ctfrpu.config.RunConfig` for initial weights ``w0`` (out, in): its
        device (registry, parameter file, overrides), pulse train, update mode and timing, I/O
        periphery and compensation gain -- the one road from a config to a tile (training runner,
        update statistics, the nn layer's run configs and the config's physics check use it)."""
        from .design.compensation import compensated_design
        from .devices.registry import check_run_physics

        device, train = check_run_physics(cfg.device, cfg.pulses, cfg.update)
        if device is None:
            raise CtfrpuError("device.kind = 'fp' has no analog tile")
        train, gain = compensated_design(device, train, cfg)
        bias_train = None
        if cfg.update.mode == "factorial":
            if cfg.update.bias_pulses is None:
                raise CtfrpuError("update.mode = 'factorial' needs update.bias_pulses (N_b of the bias design)")
            if cfg.compensation.kind != "none":
                raise CtfrpuError("update.mode = 'factorial' with compensation is not supported: the two designs "
                                  "would need their own gains")
            bias_train = PulseTrain.from_config(cfg.pulses.model_copy(update={"n": cfg.update.bias_pulses}))
        out_size, in_size = np.shape(w0)
        return cls(out_size, in_size, device, train, cfg.update, cfg.io, rng, w0=w0, gain=gain, bias_train=bias_train,
                   weight_order=weight_order)

    # -- properties ---------------------------------------------------------------------------

    @property
    def gain(self) -> float:
        """Multiplier of A*B (compensation hook); 1 = plain SGD scaling."""
        return self._gain

    @gain.setter
    def gain(self, value: float) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) \
                or not math.isfinite(value) or value <= 0:
            raise CtfrpuError(f"AnalogTile: gain must be finite and > 0, got {value!r}")
        self._gain = float(value)

    @property
    def weights(self) -> np.ndarray:
        """Current weights, (out, in) float64, read-only view updated in place; C-contiguous unless the
        tile was built with ``weight_order='F'`` (column-major, the compiled training loop's layout)."""
        return self._w_ro

    @property
    def clock(self) -> float:
        """Tile time, seconds: start of the next update's train."""
        return self._clock

    @property
    def stats(self) -> dict[str, int]:
        """Counters since construction: updates (samples), pulses (coincidences: device pulses applied
        to cells, exact mode only), row_pulses / col_pulses (EXPECTED numbers of ON slots of the row /
        column trains, sum of BL p_i resp. BL q_j -- the kernels draw a train only where it can
        coincide, see :mod:`ctfrpu.kernels.trains`), clipped (samples whose probabilities were
        clipped at 1)."""
        s = self._stats
        return {"updates": int(s[kx.S_UPDATES]), "pulses": int(s[kx.S_COINC]),
                "row_pulses": float(s[kx.S_ROW_PULSES]), "col_pulses": float(s[kx.S_COL_PULSES]),
                "clipped": int(s[kx.S_CLIPPED])}

    def __repr__(self) -> str:
        return (f"AnalogTile({self.out_size}x{self.in_size}, device={self.kind}, {self.train.describe()}, "
                f"mode={self.update_config.mode}, timing={self.timing.name}, gain={self.gain:g})")

    # -- weights ------------------------------------------------------------------------------

    def get_weights(self) -> np.ndarray:
        """A copy of the weights (out, in)."""
        return self._w.copy()

    def set_weights(self, w: np.ndarray) -> None:
        """Program the weights, clipped to each cell's window (the device's ``program``: the CTF
        device sets V_T and leaves the cell fully relaxed, e = 0, no pulse history)."""
        w = np.asarray(w, dtype=np.float64)
        if w.shape != self._w.shape:
            raise CtfrpuError(f"set_weights: shape {w.shape}, expected {self._w.shape}")
        if not np.all(np.isfinite(w)):
            raise CtfrpuError("set_weights: weights contain NaN or inf")
        self.device.program(self.state, w)

    # -- checkpoints --------------------------------------------------------------------------

    def _state_arrays(self) -> dict[str, np.ndarray]:
        return {"_w": self._w, "_cells": self._cells, "_stats": self._stats, **self._plan.state}

    def state_dict(self) -> dict:
        """Everything an update depends on that changes during training (copies): weights, per-cell
        device records, the device plan's per-tile state, tile clock, sample counter (the pulse
        streams are seeded from it), the generator, gain and counters. Scratch buffers are rewritten
        every sample and not included. ``load_state_dict`` on a tile built with the same arguments
        continues bit-identically."""
        out = {name: a.copy() for name, a in self._state_arrays().items()}
        out.update(kind=self.kind, shape=(self.out_size, self.in_size), n=self._n, clock=self._clock,
                   counter=self._counter, base_seed=self._base_seed, gain=self._gain,
                   rng=self.rng.bit_generator.state)
        return out

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` in place (the views on the weights and records stay valid)."""
        if state.get("kind") != self.kind or tuple(state.get("shape", ())) != (self.out_size, self.in_size) \
                or state.get("n") != self._n:
            raise CtfrpuError(f"load_state_dict: state of a {state.get('kind')} tile {state.get('shape')} with "
                              f"N={state.get('n')} does not fit {self!r}")
        for name, a in self._state_arrays().items():
            a[...] = state[name]
        self._clock = float(state["clock"])
        self._counter = int(state["counter"])
        self._base_seed = int(state["base_seed"])
        self.gain = state["gain"]
        self.rng.bit_generator.state = state["rng"]

    # -- forward / backward ---------------------------------------------------------------------

    def _check_vec(self, a, size: int, what: str) -> np.ndarray:
        a = np.asarray(a, dtype=np.float64)
        if a.ndim not in (1, 2) or a.shape[-1] != size:
            raise CtfrpuError(f"{what}: expected shape ({size},) or (B, {size}), got {a.shape}")
        if not np.all(np.isfinite(a)):
            raise CtfrpuError(f"{what}: input contains NaN or inf")
        return a

    def _mvm(self, a: np.ndarray, transposed: bool) -> np.ndarray:
        mat = self._w if transposed else self._w.T      # y = a @ mat
        io = self.io
        if io.inp_res == 0 and io.out_res == 0 and io.out_noise == 0:
            return a @ mat
        # aihwkit-style periphery: abs-max noise management, DAC quantisation of the normalised
        # input, additive output noise and ADC quantisation in normalised units, then rescale.
        alpha = np.max(np.abs(a), axis=-1, keepdims=True)
        alpha = np.where(alpha > 0, alpha, 1.0)
        an = a / alpha
        if io.inp_res > 0:
            an = np.clip(np.round(an / io.inp_res) * io.inp_res, -1.0, 1.0)
        y = an @ mat
        if io.out_noise > 0:
            y = y + io.out_noise * self.rng.standard_normal(y.shape)
        if io.out_res > 0:
            y = np.round(y / io.out_res) * io.out_res
        return y * (alpha if a.ndim == 2 else alpha[0])

    def forward(self, x: np.ndarray) -> np.ndarray:
        """y = W x for x of shape (in,) or (B, in) (IOConfig periphery applied if set)."""
        return self._mvm(self._check_vec(x, self.in_size, "forward"), transposed=False)

    def backward(self, d: np.ndarray) -> np.ndarray:
        """W^T d for d of shape (out,) or (B, out) (IOConfig periphery applied if set)."""
        return self._mvm(self._check_vec(d, self.out_size, "backward"), transposed=True)

    # -- update -----------------------------------------------------------------------------

    def _batch(self, x, d):
        x = np.asarray(x, dtype=np.float64)
        d = np.asarray(d, dtype=np.float64)
        if x.ndim == 1 and d.ndim == 1:
            x = x[None, :]
            d = d[None, :]
        if x.ndim != 2 or d.ndim != 2 or x.shape[1] != self.in_size or d.shape[1] != self.out_size \
                or x.shape[0] != d.shape[0]:
            raise CtfrpuError(f"update: x and d must have shapes ({self.in_size},)/({self.out_size},) or "
                              f"(B, {self.in_size})/(B, {self.out_size}), got {x.shape} and {d.shape}")
        return np.ascontiguousarray(x), np.ascontiguousarray(d)

    def _lrg(self, lr) -> float:
        if isinstance(lr, bool) or not isinstance(lr, (int, float, np.floating, np.integer)) \
                or not math.isfinite(lr) or lr < 0:
            raise CtfrpuError(f"update: lr must be finite and >= 0, got {lr!r}")
        return float(lr) * self._gain

    def _raise(self, status: int, b: int, X, D, lrg: float, batch: int):
        where = f" (sample {b})" if batch > 1 else ""
        if status == ST_BAD_X:
            raise CtfrpuError(f"update: x contains NaN or inf{where}")
        if status == ST_BAD_D:
            raise CtfrpuError(f"update: d contains NaN or inf{where}")
        if status == ST_PROB:
            uc = self.update_config
            _, pm, qm = check_sample(X[b], D[b], lrg, self.dw_min, self._n, uc.update_management,
                                     uc.update_bl_management)
            raise CtfrpuError(f"update: pulse probability above 1 without update management "
                              f"(max p = {pm:.3g}, max q = {qm:.3g}){where}; lower lr or set "
                              f"update.update_management = true")
        raise CtfrpuError(f"update: internal kernel status {status}")  # pragma: no cover

    def _kernel(self) -> tuple:
        """(batch kernel, dev) of this tile's update mode, from the device's plan."""
        if self._kernel_cache is None:
            self._kernel_cache = self._plan.kernel(self.update_config.mode, self._bias_plan)
        return self._kernel_cache

    def _grow(self, status: int) -> None:
        if not self._bufs.grow(rows=status == kx.ST_CAP_ROWS):
            # the bound always suffices; never loop on a kernel fault
            raise CtfrpuError(f"update: internal kernel fault (event buffer full at its bound, status {status})")

    def _ctl(self, lrg: float, start: int = 0) -> tuple:
        # make_ctl fixes the types once; per call only the changing fields are rebuilt (~0.3 us)
        c = self._ctl0
        return (self._base_seed, self._counter, start, lrg, c[4], c[5], c[6], c[7], self._clock, c[9], c[10], c[11])

    def update(self, x: np.ndarray, d: np.ndarray, lr: float) -> None:
        """Apply the stochastic pulsed update, E[dW] = -lr * gain * outer(d, x) (ideal device).

        x (in,) and d (out,), or a batch (B, in) / (B, out) applied sample by sample. The whole batch
        is checked first: NaN/inf or (without update management) a probability above 1 raises
        CtfrpuError and leaves the weights untouched.
        """
        X, D = self._batch(x, d)
        lrg = self._lrg(lr)
        nb = X.shape[0]
        fn, dev = self._kernel()
        start = 0
        while True:
            st, b = fn(X, D, self._ctl(lrg, start), self._w, self._cells, dev, self._bufs.args, self._stats)
            if st == ST_OK:
                break
            if st in (kx.ST_CAP_ROWS, kx.ST_CAP_COLS):     # exact modes: grow, go on from that sample
                self._grow(st)
                start = b
                continue
            self._raise(st, b, X, D, lrg, nb)
        self._clock += nb * self.train.duration
        self._counter += nb

    # -- compiled training loop ------------------------------------------------------------

    def loop_layer(self) -> tuple:
        """This tile as one layer of the compiled training loop (:mod:`ctfrpu.training.compiled`):
        (batch kernel of its update mode, layer tuple of its weights, records, kernel constants,
        scratch, counters, fixed ``ctl`` fields, sample counter [1], [clock, gain], I/O periphery,
        generator, True). The kernel is the one :meth:`update` calls; the train buffers are grown to
        their bound first (the loop cannot stop mid-sample to grow them). Built once per loop;
        :meth:`loop_begin` / :meth:`loop_end` move the counter, clock and gain in and out."""
        fn, dev = self._kernel()
        self._bufs.grow_to_bound()
        io = self.io
        layer = (self._w, self._cells, dev, self._bufs.args, self._stats, self._ctl0,
                 np.zeros(1, np.int64), np.zeros(2), (float(io.inp_res), float(io.out_res), float(io.out_noise)),
                 self.rng, True)
        return fn, layer

    def loop_begin(self, layer: tuple) -> None:
        """Before a compiled chunk: the tile's sample counter, clock and gain into ``layer``."""
        layer[L_COUNTER][0] = self._counter
        layer[L_CLOCK][0] = self._clock
        layer[L_CLOCK][1] = self._gain

    def loop_end(self, layer: tuple) -> None:
        """After a compiled chunk: the sample counter and clock it advanced back into the tile."""
        self._counter = int(layer[L_COUNTER][0])
        self._clock = float(layer[L_CLOCK][0])

    def trace_update(self, x: np.ndarray, d: np.ndarray, lr: float) -> np.ndarray:
        """Apply ONE exact-mode update (x (in,), d (out,)) and return its pulse events.

        Returns a structured array (:data:`EVENT_FIELDS` plus the device's own fields), one record
        per pulse applied to a cell, ordered by column then slot then row (each cell's pulses in
        time order). The update applied -- and the generator draws used -- are exactly those of
        :meth:`update` with the same generator state.
        """
        if self.update_config.mode != "exact":
            raise CtfrpuError(f"trace_update: needs update.mode = 'exact' (this tile: "
                              f"'{self.update_config.mode}'): only the exact mode has pulses")
        x = np.asarray(x, dtype=np.float64)
        d = np.asarray(d, dtype=np.float64)
        if x.ndim != 1 or d.ndim != 1:
            raise CtfrpuError("trace_update: one sample only: x (in,) and d (out,)")
        X, D = self._batch(x, d)
        lrg = self._lrg(lr)
        uc = self.update_config
        st, _, _ = check_sample(X[0], D[0], lrg, self.dw_min, self._n, uc.update_management, uc.update_bl_management)
        if st != ST_OK:
            self._raise(st, 0, X, D, lrg, 1)
        ctl = self._ctl(lrg)
        while True:
            st, bl, clipped, er, ec = kx.draw_sample(X[0], D[0], ctl, 0, self._bufs.args)
            if st == ST_OK:
                break
            self._grow(st)
        self._stats[kx.S_UPDATES] += 1
        self._counter += 1
        t0 = self._clock
        self._clock += self.train.duration
        if bl == 0:
            return np.zeros(0, dtype=self._event_dtype)
        bufs = self._bufs
        m = count_coincidences(bufs.col_ptr, bufs.col_slots, self.out_size, bufs.slot_ptr)
        n_extra = len(self._plan.event_fields)
        out = (np.empty(m, np.int64), np.empty(m, np.int64), np.empty(m, np.int64), np.empty(m), np.empty(m),
               np.empty(m if n_extra > 0 else 0), np.empty(m if n_extra > 1 else 0))
        cnt = self._plan.apply(self._w, self._cells, bufs.args, t0, out)
        assert cnt == m
        kx.account(self._stats, cnt, er, ec, clipped)
        ev = np.zeros(m, dtype=self._event_dtype)
        for name, a in zip(("row", "col", "slot", "sign", "dw"), out):
            ev[name] = a
        ev["time_s"] = out[2] * self.train.period
        for (name, _), a in zip(self._plan.event_fields, out[5:]):
            ev[name] = a
        return ev
