"""Bias and noise of single weight updates, measured by Monte Carlo -- OUR ablation instrument.

Given a tile configuration (a :class:`ctfrpu.config.RunConfig`: device, pulses, update mode,
compensation) and a set of realistic (x, d) pairs of one layer, every pair's update is repeated
``reps`` times from the same device state, and the mean and the variance of the weight change are
compared with the SGD update ``T = -lr outer(d, x)`` (pooled over the pairs, Frobenius norms)::

    slope          = sum <E[dW], T> / sum |T|^2        (1 = unbiased scale; r for the CTF device)
    relative_bias  = sqrt(max(0, sum |mean - T|^2 - sum Var / reps) / sum |T|^2)
    relative_noise = sqrt(sum Var / sum |T|^2)
    relative_error = sqrt(relative_bias^2 + relative_noise^2)

(the ``sum Var / reps`` term removes the Monte-Carlo noise of the estimated mean from the bias).
Realistic pairs come from the reference MLP of the run config trained briefly in floating point
(:func:`collect_pairs`); the analog tile starts from the same weights.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from ..config import RunConfig
from ..errors import CtfrpuError


@dataclass
class LayerPairs:
    """Realistic inputs X (n, in) and errors D (n, out) of one layer, and its weights W (out, in)."""

    layer: int
    w: np.ndarray
    x: np.ndarray
    d: np.ndarray


@dataclass
class UpdateStats:
    """Pooled statistics of one arm on one layer (see the module docstring)."""

    layer: int
    shape: tuple[int, int]
    pairs: int
    reps: int
    slope: float
    slope_se: float
    relative_bias: float
    relative_noise: float
    relative_error: float
    gain: float

    def to_dict(self) -> dict:
        d = asdict(self)
        d["shape"] = list(self.shape)
        return d


def collect_pairs(cfg: RunConfig, dataset, n_pairs: int = 8, warmup: int = 500, seed: int = 0) -> list[LayerPairs]:
    """Train the FP reference MLP of ``cfg`` for ``warmup`` samples at ``cfg.optim.lr``, then record
    the (x, d) of every layer for the next ``n_pairs`` samples (weights frozen at that point)."""
    from ..training.engine import MLP, FloatTile, init_weights, layer_sizes

    if n_pairs < 1 or warmup < 0:
        raise CtfrpuError("update stats: need n_pairs >= 1 and warmup >= 0")
    rng = np.random.default_rng(seed)
    n_classes = int(max(dataset.y_train.max(), dataset.y_test.max())) + 1
    params = init_weights(layer_sizes(cfg, dataset.x_train.shape[1], n_classes), rng)

    class _Rec(FloatTile):
        record = False

        def __init__(self, w):
            super().__init__(w)
            self.seen: list[tuple[np.ndarray, np.ndarray]] = []

        def update(self, x, d, lr):
            if _Rec.record:
                self.seen.append((np.array(x, dtype=np.float64), np.array(d, dtype=np.float64)))
                return
            super().update(x, d, lr)

    tiles = [_Rec(w) for w, _ in params]
    net = MLP(tiles, [b for _, b in params], cfg.model.activation)
    order = rng.permutation(len(dataset.y_train))
    need = warmup + n_pairs
    order = np.resize(order, need)
    for i in order[:warmup]:
        net.train_step(np.asarray(dataset.x_train[i], dtype=np.float64), int(dataset.y_train[i]), cfg.optim.lr)
    weights = [t.get_weights() for t in tiles]
    _Rec.record = True
    for i in order[warmup:need]:
        net.train_step(np.asarray(dataset.x_train[i], dtype=np.float64), int(dataset.y_train[i]), cfg.optim.lr)
    return [LayerPairs(k, weights[k], np.array([s[0] for s in t.seen]), np.array([s[1] for s in t.seen]))
            for k, t in enumerate(tiles)]


def make_tile(cfg: RunConfig, w0: np.ndarray, rng: np.random.Generator):
    """The analog tile of ``cfg`` (device, train, update mode, compensation gain), or None for FP."""
    if cfg.device.kind == "fp":
        return None
    from ..tile import AnalogTile

    return AnalogTile.from_config(cfg, w0, rng)


def measure(cfg: RunConfig, pairs: LayerPairs, reps: int = 100, seed: int = 0, lr: float | None = None) -> UpdateStats:
    """Monte-Carlo bias / noise of the updates of ``cfg``'s tile on one layer's pairs."""
    if reps < 2:
        raise CtfrpuError("update stats: need reps >= 2")
    lr = cfg.optim.lr if lr is None else lr
    rng = np.random.default_rng(seed)
    tile = make_tile(cfg, pairs.w, rng)
    w_start = pairs.w.copy() if tile is None else tile.get_weights()
    s_tt = s_mt = s_var = s_err = s_se = 0.0
    deterministic = tile is None or cfg.update.mode == "expected"
    for x, d in zip(pairs.x, pairs.d):
        target = -lr * np.outer(d, x)
        if tile is None:
            mean, var = target, np.zeros_like(target)
        else:
            total = np.zeros_like(target)
            total2 = np.zeros_like(target)
            n = 1 if deterministic else reps
            for _ in range(n):
                tile.set_weights(w_start)
                tile.update(x, d, lr)
                dw = tile.weights - w_start
                total += dw
                total2 += dw * dw
            mean = total / n
            var = np.maximum(total2 / n - mean * mean, 0.0) * (n / (n - 1) if n > 1 else 0.0)
        s_tt += float(np.sum(target * target))
        s_mt += float(np.sum(mean * target))
        s_var += float(np.sum(var))
        s_err += float(np.sum((mean - target) ** 2))
        s_se += float(np.sum(var * target * target))
    if s_tt <= 0:
        raise CtfrpuError("update stats: the SGD updates of these pairs are all zero")
    n_eff = 1 if deterministic else reps
    bias2 = max(0.0, s_err - (s_var / n_eff if n_eff > 1 else 0.0))
    noise = math.sqrt(s_var / s_tt)
    bias = math.sqrt(bias2 / s_tt)
    gain = 1.0 if tile is None else tile.gain
    return UpdateStats(layer=pairs.layer, shape=tuple(pairs.w.shape), pairs=len(pairs.x), reps=n_eff,
                       slope=s_mt / s_tt, slope_se=math.sqrt(s_se / n_eff) / s_tt if n_eff > 1 else 0.0,
                       relative_bias=bias, relative_noise=noise, relative_error=math.hypot(bias, noise),
                       gain=gain)


def mean_update_error(cfg: RunConfig, pairs: LayerPairs, lr: float | None = None, seed: int = 0) -> float:
    """Relative error of the EXPECTED update vs SGD, ||E[dW] - T|| / ||T|| pooled over the pairs,
    with the noise-free expected mode of ``cfg``'s device (and its compensation, if any)."""
    exp_cfg = cfg.model_copy(update={"update": cfg.update.model_copy(update={"mode": "expected"})})
    st = measure(exp_cfg, pairs, reps=2, seed=seed, lr=lr)
    return st.relative_bias
