"""One training run from a config: data, model, epochs, metrics; and its record in the store.

RNG story: ``SeedSequence(cfg.seed)`` spawns independent streams for the weight init, the data
order, and each tile (its pulse trains, noise and device-to-device draws), so the same config
gives bit-identical metrics and each part can change without shifting the others' draws.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from .. import __version__
from ..config import RunConfig, stored_config
from ..errors import CtfrpuError
from ..store import signals_deferred
from . import checkpoint as ckpt
from .engine import MLP, FloatTile, init_weights, layer_sizes

#: Samples between progress-bar refreshes (refreshing per sample would cost more than a step).
_PROGRESS_EVERY = 500

#: A run has *diverged* when an epoch's mean training loss exceeds this multiple of the chance
#: loss ln(number of classes) -- the cross-entropy of a uniform guess, about where a freshly
#: initialised network starts -- or when a weight or bias is no longer finite. Ours: a healthy run
#: stays below ln(C) after its first epoch; 10 x ln(10) = 23 nats means confidently wrong on
#: essentially every sample (--lr 1000 on MNIST reaches 6e4). The run then stops with status
#: 'diverged', its epochs and final metrics kept.
DIVERGE_FACTOR = 10.0


def build_model(cfg: RunConfig, n_inputs: int, n_classes: int, seeds: np.random.SeedSequence) -> MLP:
    """The MLP of ``cfg`` with float or analog tiles, initialised from ``seeds``."""
    init_seed, *tile_seeds = seeds.spawn(1 + len(cfg.model.hidden) + 1)
    params = init_weights(layer_sizes(cfg, n_inputs, n_classes), np.random.default_rng(init_seed))
    if cfg.device.kind == "fp":
        tiles = [FloatTile(w) for w, _ in params]
    else:
        tiles = [_analog_tile(cfg, w, np.random.default_rng(s)) for (w, _), s in zip(params, tile_seeds)]
    return MLP(tiles, [b for _, b in params], cfg.model.activation)


def _analog_tile(cfg: RunConfig, w0: np.ndarray, rng: np.random.Generator):
    from ..tile import AnalogTile

    # the compiled loop's pulse-exact runs keep W column-major: its input-sparse forward reads the
    # columns of the first layer's W (training.compiled); the reference engine keeps its layout
    order = "F" if cfg.optim.engine == "compiled" and cfg.update.mode == "exact" else "C"
    return AnalogTile.from_config(cfg, w0, rng, weight_order=order)


def device_parameters(cfg: RunConfig) -> dict[str, Any] | None:
    """Every parameter of the run's device, resolved (parameter file, then ``device.params``;
    units parsed) -- what the store records -- or None for an fp run."""
    if cfg.device.kind == "fp":
        return None
    import dataclasses

    from ..devices import build_device

    dev = build_device(cfg.device.kind, cfg.device.params_file, cfg.device.params)
    return {f.name: getattr(dev, f.name) for f in dataclasses.fields(dev) if f.init}


def split_data(cfg: RunConfig, ds, rng: np.random.Generator, keep_float32: bool = False):
    """Shuffle the training set once (seeded), hold out ``val_size``, apply ``train_limit``.
    The training inputs come back float64 C-contiguous -- or, with ``keep_float32``, float32 ones
    stay float32 (the compiled loop widens each sample exactly as it copies it: the same values, half
    the memory; a full MNIST run's peak RSS 0.9 -> 0.5 GB)."""
    n = len(ds.y_train)
    order = rng.permutation(n)
    val_size = cfg.data.val_size
    if val_size >= n:
        raise CtfrpuError(f"data.val_size={val_size} leaves no training data ({n} samples)")
    val_idx = order[n - val_size:] if val_size else order[:0]
    train_idx = order[: n - val_size]
    if cfg.data.train_limit is not None:
        train_idx = train_idx[: cfg.data.train_limit]
    x_test, y_test = ds.x_test, ds.y_test
    if cfg.data.test_limit is not None:
        x_test, y_test = x_test[: cfg.data.test_limit], y_test[: cfg.data.test_limit]
    wide = not (keep_float32 and ds.x_train.dtype == np.float32)
    x_train = np.ascontiguousarray(ds.x_train[train_idx], dtype=np.float64 if wide else np.float32)
    return (x_train, ds.y_train[train_idx], ds.x_train[val_idx], ds.y_train[val_idx], x_test, y_test)


def train_run(cfg: RunConfig, dataset=None, on_epoch: Callable[[dict[str, Any]], None] | None = None,
              progress: bool = False, data_dir=None, checkpoint=None) -> dict[str, Any]:
    """Train and evaluate ``cfg``; pure compute (no store). Returns ``{"epochs": [...], "final": {...},
    "status": "finished" | "diverged"}`` (with ``"reason"`` when diverged: :data:`DIVERGE_FACTOR`).

    ``on_epoch`` receives each epoch's metrics as soon as it finishes (the store logs them), so an
    interrupted run keeps what it finished. With ``checkpoint`` (a path), the state after each
    epoch is saved there (:mod:`ctfrpu.training.checkpoint`), and a run that finds a checkpoint of
    its config continues after its last epoch -- with the metrics an uninterrupted run gives; the
    restored epochs are passed to ``on_epoch`` again.

    BLAS runs single-threaded: batch-1 matrix-vector work is far too small to split, and a second
    BLAS thread spinning on a busy core slowed the rank-1 update 70x on a loaded 2-core machine.
    Parallelism comes from running independent runs side by side (``ctfrpu sweep``).
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return _train_run(cfg, dataset, on_epoch, progress, data_dir, checkpoint)


def _train_run(cfg, dataset, on_epoch, progress, data_dir, checkpoint) -> dict[str, Any]:
    if dataset is None:
        from ..data import load_dataset

        dataset = load_dataset(cfg.data.dataset, data_dir)
    root = np.random.SeedSequence(cfg.seed)
    data_seed, model_seed = root.spawn(2)
    data_rng = np.random.default_rng(data_seed)
    compiled = cfg.optim.engine == "compiled"
    x_tr, y_tr, x_val, y_val, x_te, y_te = split_data(cfg, dataset, data_rng, keep_float32=compiled)
    n_classes = int(max(dataset.y_train.max(), dataset.y_test.max())) + 1
    model = build_model(cfg, x_tr.shape[1], n_classes, model_seed)
    bs = cfg.optim.batch_size
    epochs: list[dict[str, Any]] = []
    elapsed_before = 0.0
    saved = ckpt.load(checkpoint, cfg.hash()) if checkpoint is not None else None
    if saved is not None:
        model.load_state_dict(saved["model"])
        data_rng.bit_generator.state = saved["data_rng"]
        epochs = saved["epochs"]
        elapsed_before = saved["elapsed"]
        if on_epoch is not None:
            for metrics in epochs:
                on_epoch(metrics)
    first_epoch = len(epochs) + 1
    diverged = None
    loop = None
    if compiled:
        from .compiled import CompiledLoop

        loop = CompiledLoop(model, x_tr, y_tr, bs, cfg.model.activation)
        chunk = max(1, _PROGRESS_EVERY // bs) * bs          # chunks end on batch boundaries

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.optim.epochs * len(y_tr), unit="sample", unit_scale=True, leave=False,
                   dynamic_ncols=True, desc=f"{cfg.device.kind} {cfg.data.dataset}",
                   initial=(first_epoch - 1) * len(y_tr))
    t_start = time.perf_counter()
    try:
        for epoch in range(first_epoch, cfg.optim.epochs + 1):
            t0 = time.perf_counter()
            lr = cfg.optim.epoch_lr(epoch)
            order = data_rng.permutation(len(y_tr))
            loss_sum = 0.0
            if loop is not None:       # Ctrl-C / SIGTERM arrive between chunks (a fraction of a second)
                for k in range(0, len(order), chunk):
                    stop = min(len(order), k + chunk)
                    loss_sum += loop.run(order, k, stop, lr)
                    if bar is not None:
                        bar.update(stop - k)
            elif bs == 1:
                step = model.train_step
                for k, i in enumerate(order):
                    loss_sum += step(x_tr[i], int(y_tr[i]), lr)
                    if bar is not None and (k + 1) % _PROGRESS_EVERY == 0:
                        bar.update(_PROGRESS_EVERY)
            else:
                for k in range(0, len(order), bs):
                    idx = order[k:k + bs]
                    loss_sum += model.train_batch(x_tr[idx], y_tr[idx], lr) * len(idx)
                    if bar is not None:
                        bar.update(len(idx))
            if bar is not None:
                bar.n = epoch * len(y_tr)
                bar.refresh()
            train_loss = loss_sum / len(y_tr)
            with np.errstate(all="ignore"):  # a diverged model's evaluation overflows; it is reported
                test_acc, test_loss = model.evaluate(x_te, y_te)
                metrics = {"epoch": epoch, "train_loss": train_loss, "test_accuracy": test_acc,
                           "test_loss": test_loss, "seconds": time.perf_counter() - t0}
                if len(y_val):
                    metrics["val_accuracy"], metrics["val_loss"] = model.evaluate(x_val, y_val)
            epochs.append(metrics)
            diverged = divergence(model, train_loss, n_classes)
            if diverged is not None:
                diverged = f"diverged at epoch {epoch}: {diverged}; lower optim.lr"
                if on_epoch is not None:
                    on_epoch(metrics)
                break
            if bar is not None:
                bar.set_postfix(epoch=epoch, loss=f"{train_loss:.4f}", acc=f"{test_acc:.4f}")
            # checkpoint first: if the process dies while the store logs the epoch, the resumed
            # run re-logs every restored epoch anyway
            if checkpoint is not None and epoch < cfg.optim.epochs:
                ckpt.save(checkpoint, cfg.hash(), epoch, epochs, model.state_dict(),
                          data_rng.bit_generator.state, elapsed_before + time.perf_counter() - t_start)
            if on_epoch is not None:
                on_epoch(metrics)
    finally:
        if bar is not None:
            bar.close()
    last = epochs[-1]
    final = {"test_accuracy": last["test_accuracy"], "train_loss": last["train_loss"],
             "test_loss": last["test_loss"], "epochs": len(epochs),
             "seconds": elapsed_before + time.perf_counter() - t_start, "train_samples": int(len(y_tr))}
    if "val_accuracy" in last:
        final["val_accuracy"] = last["val_accuracy"]
    out = {"epochs": epochs, "final": final, "status": "finished"}
    clipped = clipped_fraction(model)
    if clipped:
        out["warnings"] = [f"{clipped:.1%} of the pulsed updates of this run wanted more than a full train "
                           "(pulse probabilities clipped to 1: the update saturated); raise pulses.t_on or "
                           "pulses.n, or lower optim.lr"]
    if diverged is not None:
        out.update(status="diverged", reason=diverged)
    return out


CLIP_WARN = 0.01
"""Fraction of clipped pulsed updates above which a run warns (:func:`clipped_fraction`)."""


def clipped_fraction(model: MLP) -> float:
    """Share of the analog tiles' updates (whole run: the counters travel with the checkpoint) whose
    probabilities were clipped at 1,
    when above :data:`CLIP_WARN`; else 0. Only with update management, when a full train cannot
    deliver the requested change (for example a tiny ``pulses.t_on``)."""
    updates = clipped = 0
    for tile in model.tiles:
        st = getattr(tile, "stats", None)
        if isinstance(st, dict):
            updates += st["updates"]
            clipped += st["clipped"]
    frac = clipped / updates if updates else 0.0
    return frac if frac > CLIP_WARN else 0.0


def divergence(model: MLP, train_loss: float, n_classes: int) -> str | None:
    """Why the model has diverged (see :data:`DIVERGE_FACTOR`), or None."""
    limit = DIVERGE_FACTOR * float(np.log(max(n_classes, 2)))
    if not np.isfinite(train_loss):
        return f"train loss {train_loss}"
    if train_loss > limit:
        return f"train loss {train_loss:.4g} > {DIVERGE_FACTOR:g} x ln({n_classes}) = {limit:.3g}"
    for k, (tile, bias) in enumerate(zip(model.tiles, model.biases)):
        if not (np.all(np.isfinite(tile.get_weights())) and np.all(np.isfinite(bias))):
            return f"non-finite weights in layer {k + 1}"
    return None


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C / SIGTERM during :func:`execute_run`, after the run was marked interrupted."""

    def __init__(self, run_id: int):
        super().__init__(f"run {run_id} interrupted")
        self.run_id = run_id


def execute_run(cfg: RunConfig | None, store, progress: bool = True, data_dir=None, dataset=None,
                resume: int | None = None) -> tuple[int, dict]:
    """Run ``cfg`` and record it: status running -> finished / diverged / failed / interrupted.

    The run checkpoints after every epoch (``store.checkpoint_path(run_id)``, removed when it
    finishes, diverges or fails) and holds a lock while it trains. Interrupted: Ctrl-C/SIGTERM
    (:class:`RunInterrupted`) or a checkpoint that could not be written (full disk: the last good
    checkpoint is kept, and a one-line CtfrpuError says how to continue). ``resume=RUN_ID``
    continues an interrupted run -- or one left 'running' by a killed process -- under the same id
    from its last checkpoint; ``cfg`` is then taken from the store and must be None. Everything
    that can be refused (bad config, missing dataset, unreadable checkpoint, a run still alive,
    device parameters changed since the run started) is refused before the store changes.
    """
    if resume is not None:
        if cfg is not None:
            raise CtfrpuError("resume takes the run's config from the store; give no other config")
        record = store.get(resume)
        if record.status not in ("interrupted", "running"):
            raise CtfrpuError(f"run {resume} is {record.status}; only an interrupted run (or one left "
                              f"'running' by a killed process) can be resumed")
        try:
            cfg = stored_config(record.config)
        except CtfrpuError as err:
            raise CtfrpuError(f"run {resume} cannot be resumed by ctfrpu {__version__} ({err}); start it anew") \
                from None
        if cfg.hash() != record.config_hash:
            changed = ""
            if record.device is not None and device_parameters(cfg) != record.device:
                changed = f" (its device parameters differ from {cfg.device.params_file or 'the stored ones'})"
            raise CtfrpuError(f"run {resume} no longer matches its stored config hash{changed}; it was stored "
                              f"by ctfrpu {record.version}; start it anew")
    if dataset is None:
        from ..data import load_dataset

        dataset = load_dataset(cfg.data.dataset, data_dir)  # fail before a run row exists
    from ..devices import check_run_physics

    check_run_physics(cfg.device, cfg.pulses, cfg.update)  # so do bad device parameters and pulse designs
    config_hash = cfg.hash()

    run_id = None
    try:
        with signals_deferred():  # a Ctrl-C here is delivered once run_id is known
            if resume is None:
                run_id = store.start_run(cfg.to_dict(), config_hash, cfg.name, cfg.sweep,
                                         device=device_parameters(cfg))
            else:
                run_id = resume
        checkpoint = store.checkpoint_path(run_id)
        with ckpt.locked(checkpoint, run_id):
            if resume is None:
                ckpt.remove(checkpoint)  # a stale file of a deleted store that reused this id
            else:
                status = store.get(run_id).status  # again, now that no one else can take the run
                if status not in ("interrupted", "running"):
                    raise CtfrpuError(f"run {run_id} is {status}; only an interrupted run can be resumed")
                ckpt.load(checkpoint, config_hash)  # refuse an unreadable one before touching the run
                store.reopen_run(run_id)
            try:
                result = train_run(cfg, dataset, on_epoch=lambda m: store.log_epoch(run_id, m["epoch"], m),
                                   progress=progress, checkpoint=checkpoint)
            except KeyboardInterrupt:
                raise
            except ckpt.CheckpointWriteError as err:  # full disk: keep the last good checkpoint
                store.finish_run(run_id, "interrupted", error=str(err))
                kept = checkpoint.exists()
                how = (f"free space, then continue it with `ctfrpu train --resume {run_id} --store {store.path}`"
                       if kept else "free space and start it anew")
                raise CtfrpuError(f"{err}; run {run_id} is marked interrupted: {how}") from None
            except Exception as err:  # recorded, then re-raised for the caller to report
                ckpt.remove(checkpoint)
                store.finish_run(run_id, "failed", error=f"{type(err).__name__}: {err}")
                ckpt.remove_lock(checkpoint)  # safe while held: a resumer re-checks the status
                raise
            ckpt.remove(checkpoint)
            store.finish_run(run_id, result["status"], final=result["final"], error=result.get("reason"))
        ckpt.remove_lock(checkpoint)
        return run_id, result
    except KeyboardInterrupt as err:
        status = store.get(run_id).status if run_id is not None else None
        if status in (None, "finished", "diverged"):
            raise  # nothing recorded yet / a Ctrl-C after the run ended
        if status == "running":
            _record_interrupted(store, run_id)
        raise RunInterrupted(run_id) from err


def _record_interrupted(store, run_id: int) -> None:
    """Mark the run interrupted; a second Ctrl-C while this is written does not stop it."""
    for _ in range(5):
        try:
            store.finish_run(run_id, "interrupted", error="interrupted by user (Ctrl-C or SIGTERM)")
            return
        except KeyboardInterrupt:
            continue
