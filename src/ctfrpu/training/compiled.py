"""The compiled training loop: many samples per call, no Python and no numba dispatch per sample.

:class:`CompiledLoop` trains a chunk of samples (hundreds to thousands) of an :class:`~.engine.MLP`
in one numba call: per mini-batch the forward pass (one matrix-vector product per layer at batch
1, one GEMM per layer at batch B), softmax cross-entropy, the backward pass through the old
weights, then every layer's update -- the analog tiles' pulsed update through their device's own
batch kernel, applied sample by sample in order as in hardware (aihwkit does the same), the float
tiles' rank-1 (batch 1) or GEMM (batch B) SGD step -- and the digital biases.

It is the same algorithm as the reference engine (:meth:`MLP.train_step` / :meth:`MLP.train_batch`)
with the same random streams: the device kernels are the very functions the tiles call, seeded
from the same (tile seed, sample counter); the I/O periphery's output noise is drawn from each
tile's own generator in the reference order (forward layer by layer, then backward). It is not
bit-identical to the reference: numba's exp/tanh and BLAS calls may round differently from
numpy's in the last bit, and a stochastic update amplifies such differences over a run. Ours,
tested (``tests/test_compiled.py``): the compiled and the reference path agree to ~1e-9 after
hundreds of samples (FP, ideal, CTF; with cycle-to-cycle and output noise), and the compiled path
gives bit-identical results for the same config, seed and chunking -- and the chunking does not
matter either (a chunk ends on a batch boundary; nothing carries over but the tiles' state).

How a device plugs in: a layer is what its tile's ``loop_layer()`` returns -- the batch kernel of
its update mode (``plan.kernel``, :mod:`ctfrpu.kernels.bundle`'s common signature) and a plain tuple
of its arrays and scalars. The kernel is passed as a first-class function (a typed function
pointer), so this loop is compiled once per kernel *signature* and cached on disk, never per
device or per process; it never branches on the device kind.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import types

from ..errors import CtfrpuError
from ..kernels.bundle import (L_ANALOG, L_BUFS, L_CELLS, L_CLOCK, L_COUNTER, L_CTL0, L_DEV, L_IO, L_RNG, L_STATS,
                              L_W, make_ctl)
from ..kernels.exact import N_STATS, ST_CAP_COLS, ST_CAP_ROWS
from ..kernels.trains import ST_OK

ST_BAD_FORWARD = 101
"""Status of a chunk whose analog forward input was NaN or inf (the reference raises the same)."""
ST_BAD_BACKWARD = 102
"""Status of a chunk whose analog backward input was NaN or inf."""

ACTIVATIONS = {"sigmoid": 0, "tanh": 1, "relu": 2}

SPARSE_INPUT = 0.6
"""Below this fraction of nonzero inputs the first layer's forward skips the zero inputs: the
column walk costs ~46 ns per nonzero input of a 256-unit layer against ~25 us for the dense product
of a 256 x 784 layer, so it pays below ~69 % (MNIST 19 %, Fashion-MNIST 50 %)."""



# ------------------------------------------------------------------------------- float tiles


@numba.njit(cache=True)
def fp_update(X, D, ctl, w, cells, dev, bufs, stats):
    """The float tile's SGD step in the common kernel signature: W <- W - lr outer(d, x) at batch
    1 (row by row, as BLAS ger does), W <- W - lr D^T X at batch B. ``ctl[3]`` is lr."""
    lr = ctl[3]
    if X.shape[0] == 1:
        x = X[0]
        for j in range(w.shape[0]):
            c = -lr * D[0, j]
            row = w[j]
            for i in range(x.size):
                row[i] += c * x[i]
    else:
        w -= lr * np.dot(D.T, X)
    return np.int64(ST_OK), np.int64(X.shape[0])      # typed like the device kernels' (status, sample)


def float_layer(w: np.ndarray) -> tuple:
    """A float tile's ``loop_layer()``: its weights and placeholders of the analog fields."""
    return fp_update, (w, np.zeros((1, 1, 1)), (0.0,), (np.zeros(1),), np.zeros(N_STATS),
                       make_ctl(0, 0, 0, 0.0, 1.0, 1, False, False), np.zeros(1, np.int64), np.array([0.0, 1.0]),
                       (0.0, 0.0, 0.0), np.random.default_rng(0), False)


# ---------------------------------------------------------------------------------- the loop


@numba.njit(cache=True, inline="always")
def _finite(a):
    for r in range(a.shape[0]):
        for u in range(a.shape[1]):
            if not np.isfinite(a[r, u]):
                return False
    return True


@numba.njit(cache=True)
def _mvm(layer, a, out, transposed):
    """out = a W^T (forward) or a W (backward) for the rows of ``a``, with the tile's periphery
    (:meth:`ctfrpu.tile.AnalogTile._mvm`: abs-max scaling, input DAC, output noise, ADC);
    False if an analog tile's input is not finite. ``layer``: the layer's :func:`_mvm_view`."""
    w, (inp_res, out_res, out_noise), rng, analog = layer
    if analog and not _finite(a):
        return False
    nb = a.shape[0]
    if inp_res == 0.0 and out_res == 0.0 and out_noise == 0.0:
        if nb == 1:
            out[0] = np.dot(a[0], w) if transposed else np.dot(w, a[0])
        else:
            out[:] = np.dot(a, w) if transposed else np.dot(a, w.T)
        return True
    alpha = np.empty(nb)
    an = np.empty_like(a)
    for r in range(nb):
        m = np.max(np.abs(a[r]))
        alpha[r] = m if m > 0 else 1.0
        an[r] = a[r] / alpha[r]
    if inp_res > 0:
        an = np.minimum(np.maximum(np.round(an / inp_res) * inp_res, -1.0), 1.0)
    if nb == 1:
        y = (np.dot(an[0], w) if transposed else np.dot(w, an[0])).reshape((1, out.shape[1]))
    else:
        y = np.dot(an, w) if transposed else np.dot(an, w.T)
    if out_noise > 0:
        y = y + out_noise * rng.standard_normal(y.shape)
    if out_res > 0:
        y = np.round(y / out_res) * out_res
    for r in range(nb):
        out[r] = y[r] * alpha[r]
    return True


def _mvm_view(layer: tuple) -> tuple:
    """The fields of a layer tuple the products read: (W, I/O periphery, generator, analog flag)."""
    return layer[L_W], layer[L_IO], layer[L_RNG], layer[L_ANALOG]


@numba.njit(cache=True)
def _sparse_forward(layer, x, y):
    """y = W x for a mostly-zero x (an image's pixels) and a column-major W: the sum over the
    columns W[:, i] with x_i != 0, in increasing i, each a contiguous axpy (MNIST: 19 % of the
    pixels are nonzero; 7 us against 25 us for the dense BLAS product of a 256 x 784 layer, which
    reads all 1.6 MB of W). False if x is not finite (analog input check)."""
    w, _, _, analog = layer
    if analog:
        for i in range(x.size):
            if not np.isfinite(x[i]):
                return False
    wt = w.T                                 # (in, out), C-contiguous for a column-major W
    y[:] = 0.0
    for i in range(x.size):
        v = x[i]
        if v != 0.0:
            for j in range(y.size):
                y[j] += v * wt[i, j]         # (no view of the column: a view costs two atomic refcount updates)
    return True


@numba.njit(cache=True, inline="always")
def _activate(z, act):
    for r in range(z.shape[0]):
        for u in range(z.shape[1]):
            v = z[r, u]
            if act == 0:
                z[r, u] = 1.0 / (1.0 + np.exp(-v))
            elif act == 1:
                z[r, u] = np.tanh(v)
            else:
                z[r, u] = max(v, 0.0)


@numba.njit(cache=True, inline="always")
def _dact(y, act):
    if act == 0:
        return y * (1.0 - y)
    if act == 1:
        return 1.0 - y * y
    return 1.0 if y > 0 else 0.0


def _chunk(fn, layers, views, biases, hs, ds, x, y, order, pos0, pos1, bs, lr, act, sparse0):
    """Train samples order[pos0:pos1] in mini-batches of ``bs`` (pos0 on a batch boundary);
    ``sparse0``: the first layer's forward by :func:`_sparse_forward` (batch 1, column-major W).
    ``views``: each layer's :func:`_mvm_view`, what the forward and backward passes read -- taking a
    whole layer tuple out of ``layers`` costs two atomic reference-count updates per array in it
    (about 30), so it is done once per layer and sample, for the update.

    Returns (status, layer, pos, sample, loss): status ST_OK, or the failing kernel's status with
    its layer, the position of its batch and the sample within it (the batch is left in hs / ds for
    the error message), or ST_BAD_FORWARD / ST_BAD_BACKWARD; loss is the summed cross-entropy of
    the samples trained."""
    n_layers = len(layers)
    last = n_layers - 1
    zero = pos0 - pos0
    loss = 0.0
    pos = pos0
    while pos < pos1:
        nb = min(bs, pos1 - pos)
        h0 = hs[0][:nb]
        for r in range(nb):
            h0[r] = x[order[pos + r]]
        for k in range(n_layers):                                   # forward
            layer = views[k]
            z = hs[k + 1][:nb]
            if k == 0 and sparse0 and nb == 1:
                ok = _sparse_forward(layer, hs[0][0], z[0])
            else:
                ok = _mvm(layer, hs[k][:nb], z, False)
            if not ok:
                return ST_BAD_FORWARD, k, pos, zero, loss
            bias = biases[k]
            for r in range(nb):
                z[r] += bias
            if k < last:
                _activate(z, act)
        z = hs[n_layers][:nb]                                       # softmax cross-entropy
        d = ds[last][:nb]
        for r in range(nb):
            zr = z[r]
            label = y[order[pos + r]]
            zmax = np.max(zr)
            dr = d[r]
            for u in range(zr.size):                                # (p = exp(z - max z) in d: no temporaries)
                dr[u] = np.exp(zr[u] - zmax)
            s = np.sum(dr)
            loss += np.log(s) + zmax - zr[label]
            for u in range(dr.size):
                dr[u] /= s
            d[r, label] -= 1.0
            if nb > 1:
                d[r] /= nb
        for k in range(last, 0, -1):                                # backward through the old weights
            dk = ds[k - 1][:nb]
            if not _mvm(views[k], ds[k][:nb], dk, True):
                return ST_BAD_BACKWARD, k, pos, zero, loss
            hk = hs[k][:nb]
            for r in range(nb):
                for u in range(dk.shape[1]):
                    dk[r, u] *= _dact(hk[r, u], act)
        for k in range(n_layers):                                   # updates, layer by layer
            layer = layers[k]
            c0 = layer[L_CTL0]
            cnt = layer[L_COUNTER]
            clk = layer[L_CLOCK]
            ctl = (c0[0], cnt[0], zero, lr * clk[1], c0[4], c0[5], c0[6], c0[7], clk[0], c0[9], c0[10], c0[11])
            st, bad = fn(hs[k][:nb], ds[k][:nb], ctl, layer[L_W], layer[L_CELLS], layer[L_DEV], layer[L_BUFS],
                       layer[L_STATS])
            if st != ST_OK:
                return st, k, pos, bad, loss
            cnt[0] += nb
            clk[0] += nb * c0[9]
            bias = biases[k]
            dk = ds[k][:nb]
            if nb == 1:
                for u in range(bias.size):                          # (bias -= lr * dk[0], no temporary)
                    bias[u] -= lr * dk[0, u]
            else:
                bias -= lr * dk.sum(axis=0)
        pos += nb
    return ST_OK, zero - 1, pos, zero, loss


_DISPATCHERS: dict = {}


def _dispatcher(fn, args: tuple):
    """The compiled :func:`_chunk` for the kernel ``fn`` and these argument types (compiled once per
    signature, cached on disk)."""
    arg_types = tuple(numba.typeof(a) for a in args)
    layer = args[0][0]
    x2 = np.zeros((1, 1))
    kernel_args = (numba.typeof(x2), numba.typeof(x2), numba.typeof(layer[L_CTL0]), numba.typeof(layer[L_W]),
                   numba.typeof(layer[L_CELLS]), numba.typeof(layer[L_DEV]), numba.typeof(layer[L_BUFS]),
                   numba.typeof(layer[L_STATS]))
    key = (fn, arg_types)
    disp = _DISPATCHERS.get(key)
    if disp is None:
        fn.compile(kernel_args)
        fnty = types.FunctionType(fn.overloads[kernel_args].signature)
        disp = _DISPATCHERS[key] = numba.njit((fnty, *arg_types), cache=True)(_chunk)
    return disp


class CompiledLoop:
    """Trains an :class:`~.engine.MLP` chunk by chunk with :func:`_chunk` (see the module doc).

    ``x`` (samples, inputs) float64 or float32, ``y`` the labels, ``batch_size`` B. Each
    :meth:`run` trains ``order[pos0:pos1]`` and returns the summed loss; the tiles' counters and
    clocks are read before and written back after every call, so checkpoints, ``state_dict`` and
    the reference path see the same state between chunks.
    """

    def __init__(self, model, x: np.ndarray, y: np.ndarray, batch_size: int, activation: str):
        if activation not in ACTIVATIONS:
            raise CtfrpuError(f"compiled training loop: unknown activation {activation!r}")
        self.model = model
        self.tiles = model.tiles
        pairs = [t.loop_layer() for t in self.tiles]
        fns = {fn for fn, _ in pairs}
        if len(fns) != 1:
            raise CtfrpuError("compiled training loop: all layers must use one kind of tile and update mode")
        self._fn = pairs[0][0]
        self._layers = tuple(layer for _, layer in pairs)
        self._views = tuple(_mvm_view(layer) for layer in self._layers)
        self._biases = tuple(model.biases)
        sizes = [self._layers[0][L_W].shape[1]] + [layer[L_W].shape[0] for layer in self._layers]
        self._hs = tuple(np.zeros((batch_size, s)) for s in sizes)
        self._ds = tuple(np.zeros((batch_size, s)) for s in sizes[1:])
        # float32 inputs stay float32 (widened exactly per sample as they are copied in)
        self.x = np.ascontiguousarray(x, dtype=np.float32 if np.asarray(x).dtype == np.float32 else np.float64)
        self.y = np.ascontiguousarray(y, dtype=np.int64)
        self.batch_size = int(batch_size)
        self._act = ACTIVATIONS[activation]
        first = self._layers[0]
        self.sparse_input = bool(self.batch_size == 1 and first[L_W].flags.f_contiguous
                                 and first[L_IO] == (0.0, 0.0, 0.0)
                                 and np.count_nonzero(self.x) < SPARSE_INPUT * self.x.size)
        """The first layer's forward reads only the columns of W where x is nonzero (see
        :func:`_sparse_forward`): batch 1, a column-major W (the runner's pulse-exact tiles), no I/O
        periphery, and inputs less than :data:`SPARSE_INPUT` nonzero on average."""
        self._run = _dispatcher(self._fn, (self._layers, self._views, self._biases, self._hs, self._ds, self.x,
                                           self.y, np.zeros(1, np.int64), 0, 0, 0, 0.0, 0, False))

    def run(self, order: np.ndarray, pos0: int, pos1: int, lr: float) -> float:
        """Train ``order[pos0:pos1]`` with learning rate ``lr``; returns the summed cross-entropy."""
        for tile, layer in zip(self.tiles, self._layers):
            tile.loop_begin(layer)
        try:
            st, k, pos, bad, loss = self._run(self._fn, self._layers, self._views, self._biases, self._hs, self._ds,
                                         self.x, self.y,
                                         order, int(pos0), int(pos1), self.batch_size, float(lr), self._act,
                                         self.sparse_input)
        finally:
            for tile, layer in zip(self.tiles, self._layers):
                tile.loop_end(layer)
        if st != ST_OK:
            self._raise(st, k, pos, bad, pos1, lr)
        return float(loss)

    def _raise(self, st: int, k: int, pos: int, bad: int, pos1: int, lr: float):
        nb = min(self.batch_size, pos1 - pos)
        if st == ST_BAD_FORWARD:
            raise CtfrpuError("forward: input contains NaN or inf")
        if st == ST_BAD_BACKWARD:
            raise CtfrpuError("backward: input contains NaN or inf")
        if st in (ST_CAP_ROWS, ST_CAP_COLS):      # pragma: no cover -- the buffers are at their bound
            raise CtfrpuError(f"compiled training loop: internal kernel fault (status {st})")
        tile = self.tiles[k]
        tile._raise(st, bad, self._hs[k][:nb], self._ds[k][:nb], tile._lrg(lr), nb)  # the tile's own message
