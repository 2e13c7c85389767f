"""Ablation: separate the bias of the CTF updates from their noise -- OUR design (docs/science.md §4).

The system paper (arXiv:2402.09792) reports an ablation concluding that the lower noise of the
weight updates is the most likely significant factor; its arms are not public. Our arms, all at the
same pulse-train design (N, t_gap), data, network and seeds:

======================  =========================================  ==========  ===========
arm                     what                                       mean error  noise
======================  =========================================  ==========  ===========
``fp``                  floating-point SGD (software baseline)     none        none
``ideal``               ideal device, stochastic pulses (exact)    none        counting
``ctf_expected``        CTF device, expected (noise-free) update   CTF bias    none
``ctf``                 CTF device, full stochastic model          CTF bias    CTF noise
``ctf_comp``            ``ctf`` + our gain compensation            residual    CTF noise
``ideal_gauss``         ideal expected update + Gaussian noise     none        matched to
                        matched to ``ctf`` (our matching rule)                 ``ctf``
======================  =========================================  ==========  ===========

``ctf_expected`` keeps the bias of ``ctf`` and drops its noise; ``ideal_gauss`` keeps (the variance
of) its noise and drops its bias: the accuracy losses of these two arms against ``fp`` decompose the
loss of ``ctf``. The ideal device is given the CTF device's nominal rate and weight window, so
that both have the same dw_min and bounds.

For every arm the bias and the noise of single updates are also measured
(:mod:`ctfrpu.experiments.update_stats`) and recorded in the run store as records with
``final.kind = "update_stats"`` (sweep label :data:`STATS_SWEEP`).
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any, Callable

# The arms' names and the config -> arm mapping are shared with the report: they live in the leaf
# module ctfrpu.arms and are re-exported here.
from ..arms import ARM_ORDER, ARMS, STATS_SWEEP, Arm, classify  # noqa: F401
from ..config import RunConfig, merge, validate
from ..errors import CtfrpuError


def _devices(base: RunConfig):
    from ..devices import build_device

    ctf_params = base.device.params if base.device.kind == "ctf" else {}
    ctf_file = base.device.params_file if base.device.kind == "ctf" else None
    return build_device("ctf", ctf_file, ctf_params)


def ideal_params_for(ctf_device) -> dict[str, float]:
    """Ideal-device overrides giving it the CTF device's nominal rate and weight window (only the
    ones that differ from the IdealDevice defaults, so that default configs keep their hash)."""
    from ..devices import IdealDevice

    want = {"rate": ctf_device.nominal_dw(1.0),
            "w_min": (ctf_device.vt_min - ctf_device.vt_ref) / ctf_device.v_unit,
            "w_max": (ctf_device.vt_max - ctf_device.vt_ref) / ctf_device.v_unit}
    ref = IdealDevice()
    return {k: float(f"{v:.10g}") for k, v in want.items() if abs(getattr(ref, k) - v) > 1e-12 * max(1.0, abs(v))}


def arm_config(base: dict[str, Any], arm: str) -> dict[str, Any]:
    """The config dict of ``arm`` built from ``base`` (a RunConfig dict with device.kind = 'ctf'
    or unset, and the pulse design of the ablation)."""
    if arm not in ARMS:
        raise CtfrpuError(f"unknown ablation arm {arm!r}; choose from {', '.join(ARM_ORDER)}")
    base_cfg = validate(merge(base, {"device": {"kind": "ctf"}}))
    ctf_dict = base_cfg.device.model_dump(mode="json")
    cfg = base_cfg.to_dict()
    cfg.pop("name", None)
    cfg.pop("sweep", None)
    default = RunConfig().to_dict()
    cfg["update"] = dict(cfg["update"], mode="exact", noise_scale=default["update"]["noise_scale"])
    comp_gain = dict(cfg["compensation"], kind="gain")           # keeps the base's u_typ for ctf_comp
    cfg["compensation"] = default["compensation"]                # other arms: no gain, default u_typ
    if arm == "fp":
        # the FP baseline ignores the device, the pulses and the update: default values keep one
        # FP run per (study, seed), whatever pulse design the analog arms use
        cfg["device"] = default["device"]
        cfg["pulses"] = default["pulses"]
        cfg["update"] = default["update"]
        return cfg
    if arm in ("ctf", "ctf_comp", "ctf_expected"):
        cfg["device"] = ctf_dict
        if arm == "ctf_comp":
            cfg["compensation"] = comp_gain
        if arm == "ctf_expected":
            cfg["update"]["mode"] = "expected"
        return cfg
    ctf_device = _devices(base_cfg)
    cfg["device"] = {"kind": "ideal", "params_file": None, "params": ideal_params_for(ctf_device)}
    if arm == "ideal_gauss":
        from ..design.helper import matched_noise_scale
        from ..devices import PulseTrain, build_device

        ideal = build_device("ideal", None, cfg["device"]["params"])
        # matched under the run's own timing model: the ctf arm's variance depends on it (before
        # 2026-12-04 slot timing was used for every run: 0.74 instead of 0.98 for the paper preset
        # at N = 100 under train timing)
        scale = matched_noise_scale(ctf_device, ideal, PulseTrain.from_config(base_cfg.pulses), base_cfg.optim.lr,
                                    timing=base_cfg.update.timing)
        cfg["update"]["mode"] = "gaussian"
        cfg["update"]["noise_scale"] = float(f"{scale:.4g}")
    return cfg


def ablation_configs(base: dict[str, Any], seeds=(0,), arms=ARM_ORDER) -> list[RunConfig]:
    """One validated config per (arm, seed)."""
    out = []
    for arm in arms:
        cfg = arm_config(base, arm)
        for seed in seeds:
            out.append(validate(dict(cfg, seed=int(seed))))
    return out


# ------------------------------------------------------------------------------ update statistics


def stats_hash(cfg: RunConfig, pairs: int, reps: int, warmup: int) -> str:
    """Store key of an update-statistics record (never equal to a training run's hash)."""
    text = json.dumps({"run": cfg.hash(), "pairs": pairs, "reps": reps, "warmup": warmup}, sort_keys=True)
    return "us-" + hashlib.sha256(text.encode()).hexdigest()[:13]


def measure_arms(configs: list[RunConfig], dataset, store=None, pairs: int = 8, reps: int = 100,
                 warmup: int = 500, log: Callable[[str], None] | None = print) -> dict[str, dict[str, Any]]:
    """Bias / noise of single updates of each arm (one config per arm: the first seed), on every
    layer, from the same realistic (x, d) pairs; recorded in ``store`` (skipped when present)."""
    from ..experiments.update_stats import collect_pairs, measure

    results: dict[str, dict[str, Any]] = {}
    layer_pairs = None
    seen: set[str] = set()
    for cfg in configs:
        arm = classify(cfg.to_dict())
        if arm is None or arm in seen:
            continue
        seen.add(arm)
        key = stats_hash(cfg, pairs, reps, warmup)
        if store is not None:
            rec = store.finished_by_hash(key)
            if rec is not None and rec.final:
                results[arm] = rec.final
                if log:
                    log(f"update stats {arm}: already in the store")
                continue
        if layer_pairs is None:
            layer_pairs = collect_pairs(cfg, dataset, n_pairs=pairs, warmup=warmup, seed=cfg.seed)
        t0 = time.time()
        layers = [measure(cfg, lp, reps=reps, seed=cfg.seed + 1000 * k).to_dict()
                  for k, lp in enumerate(layer_pairs)]
        final = {"kind": "update_stats", "arm": arm, "pairs": pairs, "reps": reps, "warmup": warmup,
                 "n": cfg.pulses.n, "gap": cfg.pulses.gap, "layers": layers}
        results[arm] = final
        if store is not None:
            now = time.time()
            store.record_run(cfg.to_dict(), key, "finished", [], final, None, t0, now,
                             name=f"update-stats {arm}", sweep=STATS_SWEEP)
        if log:
            out = layers[-1]
            log(f"update stats {arm}: output layer slope {out['slope']:.3f}, relative bias "
                f"{out['relative_bias']:.3f}, relative noise {out['relative_noise']:.3f} ({time.time() - t0:.1f} s)")
    return results


# ------------------------------------------------------------------------ 2 x 2 factorial arms

LEVELS = ("small", "large")


def factorial_config(base: dict[str, Any], n_bias: int, n_noise: int) -> dict[str, Any]:
    """OUR 2 x 2 ablation arm: the CTF device with the bias of the design with ``n_bias`` pulses and
    the noise of the design with ``n_noise`` (``update.mode = 'factorial'``, :mod:`ctfrpu.devices.ctf_update`);
    everything else (gap, pulse mode, data, network, seed) from ``base``, no compensation.

    A diagonal arm (``n_bias == n_noise``) is the CTF full model itself: the factorial update with
    N_b = N_sigma is bit-identical to the exact one (E_b - E_sigma is exactly 0;
    tests/test_factorial.py), so it is returned as the plain exact config and shares its hash -- and
    its run -- with the study grid instead of paying the dense mean passes again."""
    cfg = arm_config(base, "ctf")
    cfg["pulses"] = dict(cfg["pulses"], n=int(n_noise))
    if n_bias != n_noise:
        cfg["update"] = dict(cfg["update"], mode="factorial", bias_pulses=int(n_bias))
    return cfg


def factorial_configs(base: dict[str, Any], n_small: int, n_large: int, seeds=(0,)) -> list[RunConfig]:
    """The four arms (N_b, N_sigma) in {n_small, n_large}^2 for every seed (paired: same seeds)."""
    if not (isinstance(n_small, int) and isinstance(n_large, int) and 1 <= n_small < n_large):
        raise CtfrpuError(f"factorial ablation: need integers 1 <= N_small < N_large, got {n_small!r}, {n_large!r}")
    out = []
    for nb in (n_small, n_large):
        for ns in (n_small, n_large):
            cfg = factorial_config(base, nb, ns)
            out.extend(validate(dict(cfg, seed=int(s))) for s in seeds)
    return out


def factorial_cell(config: dict[str, Any], n_small: int, n_large: int) -> tuple[str, str] | None:
    """(bias level, noise level) of a factorial-arm run config, or None if it is not one. A plain
    exact CTF run (no compensation) with N in {n_small, n_large} is the diagonal arm of its N
    (:func:`factorial_config`); the caller matches the t_gap."""
    upd = config.get("update", {})
    if config.get("device", {}).get("kind") != "ctf":
        return None
    level = {n_small: "small", n_large: "large"}
    ns = config.get("pulses", {}).get("n")
    if upd.get("mode", "exact") == "exact" and config.get("compensation", {}).get("kind", "none") == "none":
        return (level[ns], level[ns]) if ns in level else None
    if upd.get("mode") != "factorial":
        return None
    nb = upd.get("bias_pulses")
    if nb not in level or ns not in level:
        return None
    return level[nb], level[ns]
