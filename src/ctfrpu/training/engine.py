"""Fused batch-1 MLP engine: the hot loop of every training run.

Batch-1 SGD is what RPU hardware does, and at batch 1 the framework overhead of autograd dominates
the ~1.5 MFLOP of arithmetic per sample. This engine therefore does forward, backward and update
by hand with BLAS calls on numpy arrays, with the weights held by *tiles*:

* :class:`FloatTile` -- floating-point weights, in-place BLAS rank-1 update (the software baseline);
* :class:`ctfrpu.tile.AnalogTile` -- an RPU crossbar tile with a stochastic pulse-train update.

Both expose ``weights`` (out, in), ``update(x, d, lr)`` with the gradient-descent convention
``W <- W - lr * outer(d, x)`` (in expectation for analog tiles), and ``forward``/``backward``.
Biases are digital (float) as in aihwkit. The network is the Gokmen-Vlasov MLP: hidden layers
with a sigmoid (or tanh/relu), softmax output with cross-entropy loss.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy.linalg import blas

from ..config import RunConfig
from ..errors import CtfrpuError


class FloatTile:
    """Floating-point weights with an in-place BLAS rank-1 update (``dger``)."""

    def __init__(self, w0: np.ndarray):
        # Stored C-contiguous (out, in); its transpose is the Fortran-ordered (in, out) matrix that
        # BLAS ger updates in place, so the update allocates nothing.
        self.weights = np.array(w0, dtype=np.float64, order="C", copy=True)
        self._wt = self.weights.T

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x @ self.weights.T if x.ndim == 2 else self.weights @ x

    def backward(self, d: np.ndarray) -> np.ndarray:
        return d @ self.weights if d.ndim == 2 else self.weights.T @ d

    def update(self, x: np.ndarray, d: np.ndarray, lr: float) -> None:
        if x.ndim == 2:
            self.weights -= lr * (d.T @ x)
            return
        blas.dger(-lr, x, d, a=self._wt, overwrite_a=True)

    def get_weights(self) -> np.ndarray:
        return self.weights.copy()

    def loop_layer(self) -> tuple:
        """This tile as a layer of the compiled training loop (:mod:`.compiled`)."""
        from .compiled import float_layer

        return float_layer(self.weights)

    def loop_begin(self, layer: tuple) -> None:
        """Nothing to move: the weights are updated in place."""

    def loop_end(self, layer: tuple) -> None:
        """Nothing to move: the weights are updated in place."""

    def state_dict(self) -> dict:
        return {"kind": "fp", "w": self.weights.copy()}

    def load_state_dict(self, state: dict) -> None:
        if state.get("kind") != "fp" or state["w"].shape != self.weights.shape:
            raise CtfrpuError(f"load_state_dict: not the state of a float tile {self.weights.shape}")
        self.weights[...] = state["w"]


def _activation(name: str) -> tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]:
    """(f, f' expressed through the output y = f(z))."""
    if name == "sigmoid":
        def f(z):
            # exp of a large negative argument overflows harmlessly to inf -> 0; silence that.
            with np.errstate(over="ignore"):
                return 1.0 / (1.0 + np.exp(-z))
        return f, lambda y: y * (1.0 - y)
    if name == "tanh":
        return np.tanh, lambda y: 1.0 - y * y
    if name == "relu":
        return (lambda z: np.maximum(z, 0.0)), (lambda y: (y > 0).astype(y.dtype))
    raise ValueError(name)


def init_weights(sizes: list[int], rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    """PyTorch nn.Linear's default init: W, b ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        bound = 1.0 / np.sqrt(fan_in)
        w = rng.uniform(-bound, bound, size=(fan_out, fan_in))
        b = rng.uniform(-bound, bound, size=fan_out)
        params.append((w, b))
    return params


class MLP:
    """An MLP whose layer weights live in tiles; biases are digital float vectors."""

    def __init__(self, tiles: list, biases: list[np.ndarray], activation: str = "sigmoid"):
        self.tiles = tiles
        self.biases = [np.asarray(b, dtype=np.float64).copy() for b in biases]
        self.act, self.dact = _activation(activation)

    def state_dict(self) -> dict:
        return {"tiles": [t.state_dict() for t in self.tiles], "biases": [b.copy() for b in self.biases]}

    def load_state_dict(self, state: dict) -> None:
        if len(state["tiles"]) != len(self.tiles):
            raise CtfrpuError(f"load_state_dict: {len(state['tiles'])} layers saved, the model has {len(self.tiles)}")
        for tile, ts, bias, bs in zip(self.tiles, state["tiles"], self.biases, state["biases"]):
            tile.load_state_dict(ts)
            bias[...] = bs

    # -- inference --------------------------------------------------------------------------

    def logits(self, x: np.ndarray) -> np.ndarray:
        h = x
        last = len(self.tiles) - 1
        for k, (tile, b) in enumerate(zip(self.tiles, self.biases)):
            z = tile.forward(h) + b
            h = z if k == last else self.act(z)
        return h

    def evaluate(self, x: np.ndarray, y: np.ndarray, batch: int = 2000) -> tuple[float, float]:
        """(accuracy, mean cross-entropy) over a dataset, in batches."""
        correct, loss = 0, 0.0
        for i in range(0, len(x), batch):
            z = self.logits(np.asarray(x[i:i + batch], dtype=np.float64))
            yy = y[i:i + batch]
            correct += int(np.sum(np.argmax(z, axis=1) == yy))
            zmax = z.max(axis=1, keepdims=True)
            lse = np.log(np.exp(z - zmax).sum(axis=1)) + zmax[:, 0]
            loss += float(np.sum(lse - z[np.arange(len(yy)), yy]))
        return correct / len(x), loss / len(x)

    # -- training ---------------------------------------------------------------------------

    def train_step(self, x: np.ndarray, label: int, lr: float) -> float:
        """One batch-1 SGD step; returns the sample's cross-entropy loss."""
        tiles, biases, act = self.tiles, self.biases, self.act
        last = len(tiles) - 1
        inputs = []
        h = x
        for k in range(last + 1):
            inputs.append(h)
            z = tiles[k].forward(h)
            z += biases[k]
            h = z if k == last else act(z)
        zmax = h.max()
        p = np.exp(h - zmax)
        s = p.sum()
        loss = float(np.log(s) + zmax - h[label])
        d = p / s
        d[label] -= 1.0
        self._backprop(inputs, d, lr)
        return loss

    def train_batch(self, x: np.ndarray, labels: np.ndarray, lr: float) -> float:
        """Mini-batch SGD on the mean loss; analog tiles apply their update sample by sample."""
        tiles, biases, act = self.tiles, self.biases, self.act
        last = len(tiles) - 1
        n = len(labels)
        inputs = []
        h = x
        for k in range(last + 1):
            inputs.append(h)
            z = tiles[k].forward(h) + biases[k]
            h = z if k == last else act(z)
        zmax = h.max(axis=1, keepdims=True)
        p = np.exp(h - zmax)
        s = p.sum(axis=1, keepdims=True)
        loss = float(np.mean(np.log(s[:, 0]) + zmax[:, 0] - h[np.arange(n), labels]))
        d = p / s
        d[np.arange(n), labels] -= 1.0
        d /= n
        self._backprop(inputs, d, lr)
        return loss

    def _backprop(self, inputs: list[np.ndarray], d: np.ndarray, lr: float) -> None:
        """Backward through the old weights first, then update every layer (standard SGD).

        ``d`` is dL/d(logits) of one sample (1-D) or of a batch (2-D, already divided by its size).
        """
        tiles, dact = self.tiles, self.dact
        deltas = [d]
        for k in range(len(tiles) - 1, 0, -1):
            d = tiles[k].backward(d) * dact(inputs[k])
            deltas.append(d)
        deltas.reverse()
        for k, (tile, bias, delta) in enumerate(zip(tiles, self.biases, deltas)):
            tile.update(inputs[k], delta, lr)
            bias -= lr * (delta if delta.ndim == 1 else delta.sum(axis=0))


def layer_sizes(cfg: RunConfig, n_inputs: int, n_classes: int) -> list[int]:
    return [n_inputs, *cfg.model.hidden, n_classes]
