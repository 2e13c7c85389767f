"""Run a sweep on dask.distributed, resumably.

Who writes what: the workers only compute (:func:`ctfrpu.sweep.worker.run_task`) and return each
run's result to the client; the client alone writes the run store, one transaction per run
(:meth:`ctfrpu.store.Store.record_run`) as each future completes (``distributed.as_completed``).
A run is *done* when the store holds a finished run with its config hash, so after a crash,
``kill -9`` or Ctrl-C a rerun computes only what is missing, and a finished run is never lost (it
was committed) nor duplicated (its hash is skipped). Failed runs are recorded with their error and
rerun only with ``retry_failed``. On a local cluster each run also checkpoints after every epoch
(``checkpoints/`` beside the store), so a run cut short by a kill continues from its last epoch
when the sweep is rerun, with the same metrics; runs on a remote scheduler start over.

The cluster: a :class:`distributed.LocalCluster` sized to the machine (one single-threaded worker
process per core, never more workers than runs), or an existing scheduler by address.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator, NamedTuple, TextIO

from ..errors import CtfrpuError
from ..store import Store
from .spec import Sweep, SweepRun
from .worker import DEFAULT_TRAINER, run_task

# --------------------------------------------------------------------------------------- status


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


class StoreState(NamedTuple):
    status: str
    """'finished', 'diverged', 'failed' or 'missing'."""
    run_id: int | None
    final: dict[str, Any] | None


def store_status(sweep: Sweep, store: Store) -> dict[str, StoreState]:
    """hash -> state in ``store`` of every run of the sweep: 'finished' (the first finished run with
    that hash, recorded by any sweep or by `ctfrpu train`), 'failed' (the latest failed run; no
    finished one) or 'missing' (a 'running'/'interrupted' leftover of `ctfrpu train` is missing)."""
    failed: dict[str, int] = {}
    for rec in store.list(status="failed"):
        failed[rec.config_hash] = rec.id
    diverged: dict[str, Any] = {}
    for rec in store.list(status="diverged"):  # a result (deterministic): never rerun
        diverged.setdefault(rec.config_hash, rec)
    out: dict[str, StoreState] = {}
    for run in sweep.runs:
        done = store.finished_by_hash(run.hash)
        if done is not None:
            out[run.hash] = StoreState("finished", done.id, done.final)
        elif run.hash in diverged:
            rec = diverged[run.hash]
            out[run.hash] = StoreState("diverged", rec.id, rec.final)
        elif run.hash in failed:
            out[run.hash] = StoreState("failed", failed[run.hash], None)
        else:
            out[run.hash] = StoreState("missing", None, None)
    return out


# --------------------------------------------------------------------------------------- result


DONE = ("finished", "skipped-finished", "diverged", "skipped-diverged")


@dataclass
class RunOutcome:
    index: int
    hash: str
    varied: dict[str, Any]
    status: str
    """'finished' / 'diverged' / 'failed' (this invocation), 'skipped-finished', 'skipped-diverged',
    'skipped-failed' (already in the store), 'not-run' (interrupted or lost before it completed).
    A diverged run is a result (its loss ran away, :data:`ctfrpu.training.runner.DIVERGE_FACTOR`),
    deterministic for its config, so it is never rerun and counts as done."""
    run_id: int | None = None
    final: dict[str, Any] | None = None
    error: str | None = None
    seconds: float | None = None
    cpu_seconds: float | None = None
    """CPU time (all threads) of the worker process during the run; compare with the run alone. A
    worker's first run includes its dataset load and the numba cache load; on a cluster whose
    workers run several threads it also counts concurrent tasks."""
    worker: str | None = None
    peak_rss_mb: float | None = None


@dataclass
class SweepResult:
    sweep: str
    file: str
    store: str
    total: int
    scheduler: str | None = None
    n_workers: int = 0
    wall_seconds: float = 0.0
    interrupted: bool = False
    """Ctrl-C (or SIGTERM: ``terminated``) stopped the sweep; the runs not done are 'not-run'."""
    terminated: bool = False
    outcomes: list[RunOutcome] = field(default_factory=list)
    workers: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per worker address: runs done, peak RSS of the worker process (MiB), dataset loads."""

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    @property
    def complete(self) -> bool:
        """Every run of the sweep has a finished run in the store."""
        return all(o.status in DONE for o in self.outcomes)

    def to_dict(self) -> dict[str, Any]:
        counts = {s: self.count(s) for s in
                  ("finished", "diverged", "failed", "skipped-finished", "skipped-diverged", "skipped-failed",
                   "not-run")}
        return {
            "sweep": self.sweep, "file": self.file, "store": self.store, "total": self.total,
            "counts": counts, "complete": self.complete, "interrupted": self.interrupted,
            "terminated": self.terminated,
            "scheduler": self.scheduler, "n_workers": self.n_workers,
            "wall_seconds": round(self.wall_seconds, 3), "workers": self.workers,
            "runs": [asdict(o) for o in sorted(self.outcomes, key=lambda o: o.index)],
        }


# --------------------------------------------------------------------------------------- cluster


@contextmanager
def quiet_dask(verbose: bool = False) -> Iterator[None]:
    """Silence distributed's INFO/WARNING chatter (startup, shutdown, closed comms) in this process."""
    if verbose:
        yield
        return
    names = ("distributed", "tornado", "bokeh", "asyncio")
    saved = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for n, level in saved.items():
            logging.getLogger(n).setLevel(level)


_ADDRESS = re.compile(r"^(?:(?:tcp|tls|ucx|ws|wss)://)?(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})/?$")


def check_scheduler_address(address: str) -> str:
    """A dask scheduler address as ``[tcp://]host:port`` (one-line CtfrpuError otherwise), checked
    before any connection attempt -- a malformed one used to fail after a 40 s timeout."""
    m = _ADDRESS.match(address.strip()) if isinstance(address, str) else None
    if not m or not 0 < int(m.group(1)) < 65536:
        raise CtfrpuError(f"--scheduler {address!r} is not a scheduler address; give [tcp://]HOST:PORT, "
                          "e.g. tcp://10.0.0.5:8786")
    return address.strip()


@contextmanager
def open_client(*, workers: int | None = None, scheduler: str | None = None,
                verbose: bool = False) -> Iterator[Any]:
    """A distributed Client on a new LocalCluster (``workers`` single-threaded processes) or on
    the scheduler at ``scheduler``; closed (cluster included) on exit, also on Ctrl-C."""
    from distributed import Client, LocalCluster

    if scheduler:
        scheduler = check_scheduler_address(scheduler)
        try:
            client = Client(scheduler, timeout="20s", set_as_default=False)
        except (OSError, TimeoutError, ValueError) as err:
            raise CtfrpuError(f"cannot connect to the dask scheduler at {scheduler}: {err}") from None
        try:
            _check_workers(client, scheduler)
            yield client
        finally:
            client.close()
        return
    n = workers or available_cores()
    with _children_ignore_sigint():
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                               dashboard_address="127.0.0.1:0",  # a free port: never warn "8787 in use"
                               silence_logs=logging.WARNING if verbose else logging.CRITICAL)
    try:
        client = Client(cluster, set_as_default=False)
        try:
            yield client
        finally:
            client.close()
    finally:
        cluster.close()


@contextmanager
def _children_ignore_sigint() -> Iterator[None]:
    """Start the worker processes with SIGINT ignored (the disposition survives exec): Ctrl-C in a
    terminal signals the whole process group, and the client, not each worker, handles it by
    cancelling the runs and closing the cluster. (A Ctrl-C during the ~2 s start-up is ignored.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def _check_workers(client: Any, address: str) -> None:
    """Fail early (instead of recording every run as failed) if workers cannot import ctfrpu."""
    from .worker import probe

    try:
        info = client.run(probe)
    except Exception as err:  # noqa: BLE001 - any worker-side failure means a broken worker env
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CtfrpuError(f"workers of {address} cannot run ctfrpu ({type(err).__name__}: {first}); "
                          "install ctfrpu in the workers' environment") from None
    from .. import __version__

    bad = sorted({v["version"] for v in info.values()} - {__version__})
    if bad:
        print(f"warning: workers run ctfrpu {', '.join(bad)}, this client {__version__}",
              file=sys.stderr)


# --------------------------------------------------------------------------------------- running


class _Terminate(KeyboardInterrupt):
    """SIGTERM (e.g. scancel) during a sweep: handled like Ctrl-C."""


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise _Terminate()

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _n(k: int | None, word: str) -> str:
    return f"{k} {word}" + ("" if k == 1 else "s")


def _short(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if text and text.strip() else ""


def run_sweep(sweep: Sweep, store: Store, *, workers: int | None = None,
              scheduler: str | None = None, client: Any = None, retry_failed: bool = False,
              data_dir: str | None = None, trainer: str = DEFAULT_TRAINER,
              log: TextIO | None = sys.stdout, progress: bool | None = None,
              verbose: bool = False) -> SweepResult:
    """Run every run of ``sweep`` that has no finished run in ``store`` (and, with
    ``retry_failed``, those that only failed); record each result as it completes.

    The cluster: ``client`` (an existing distributed Client, left open), else ``scheduler`` (an
    address), else a LocalCluster of ``workers`` processes (default: one per core, at most one per
    run). ``log``: where the per-run lines go (None: silent); ``progress``: a tqdm bar on stderr
    (None: only if stderr is a terminal). Ctrl-C/SIGTERM cancels the pending runs, closes the
    cluster and returns with ``interrupted = True`` (what finished is recorded).
    """
    if workers is not None and workers < 1:
        raise CtfrpuError(f"--workers must be >= 1, got {workers}")
    if workers is not None and (scheduler or client is not None):
        raise CtfrpuError("--workers sizes the local cluster; it cannot be used with --scheduler")
    if scheduler:
        check_scheduler_address(scheduler)
    t0 = time.perf_counter()
    result = SweepResult(sweep=sweep.name, file=str(sweep.path), store=str(store.path),
                         total=len(sweep.runs), scheduler=scheduler)
    status = store_status(sweep, store)
    todo: list[SweepRun] = []
    for run in sweep.runs:
        st = status[run.hash]
        if st.status in ("finished", "diverged"):
            result.outcomes.append(RunOutcome(run.index, run.hash, run.varied, f"skipped-{st.status}",
                                              st.run_id, final=st.final))
        elif st.status == "failed" and not retry_failed:
            result.outcomes.append(RunOutcome(run.index, run.hash, run.varied, "skipped-failed",
                                              st.run_id))
        else:
            todo.append(run)

    def emit(line: str) -> None:
        if log is None:
            return
        if bar is not None:
            bar.write(line, file=log)
        else:
            print(line, file=log, flush=True)

    bar = None
    skipped = len(sweep.runs) - len(todo)
    if skipped:
        failed_before = result.count("skipped-failed")
        emit(f"sweep {sweep.name}: {_n(len(sweep.runs), 'run')}, {result.count('skipped-finished')} "
             "already finished, "
             + (f"{failed_before} failed before (not retried: --retry-failed), " if failed_before else "")
             + f"{len(todo)} to run")
    if not todo:
        result.wall_seconds = time.perf_counter() - t0
        return result

    def set_bar(b: Any) -> None:
        nonlocal bar
        bar = b

    pending = {run.index: run for run in todo}
    with quiet_dask(verbose), _sigterm_as_interrupt():
        try:
            if client is not None:
                result.n_workers = len(client.scheduler_info().get("workers", {}))
                _execute(client, sweep, store, todo, pending, result, data_dir, trainer, emit,
                         progress, set_bar, None)
            else:
                n = min(workers or available_cores(), len(todo)) if not scheduler else None
                with open_client(workers=n, scheduler=scheduler, verbose=verbose) as cl:
                    result.n_workers = n or len(cl.scheduler_info().get("workers", {}))
                    if scheduler and result.n_workers == 0:
                        emit(f"no workers at {scheduler} yet; the runs wait for workers to join")
                    emit(f"sweep {sweep.name}: running {_n(len(todo), 'run')} on "
                         + (f"{scheduler}" if scheduler else f"a local cluster of {_n(n, 'worker')}"))
                    # a local cluster shares this file system: its runs checkpoint beside the store
                    ckpt_dir = None if scheduler else str(store.path.parent / "checkpoints")
                    _execute(cl, sweep, store, todo, pending, result, data_dir, trainer, emit,
                             progress, set_bar, ckpt_dir)
        except KeyboardInterrupt as err:
            result.interrupted = True
            result.terminated = isinstance(err, _Terminate)
    for run in pending.values():
        result.outcomes.append(RunOutcome(run.index, run.hash, run.varied, "not-run"))
    result.wall_seconds = time.perf_counter() - t0
    return result


def _eta(elapsed: float, done: int, left: int) -> str:
    """'12 left, eta 1h05m' from the mean wall time per completed run of this sweep (all workers)."""
    if left <= 0:
        return "0 left"
    sec = int(round(elapsed / max(done, 1) * left))
    h, m = divmod((sec + 59) // 60, 60)
    return f"{left} left, eta {h}h{m:02d}m" if h else f"{left} left, eta {m}m"


def _execute(client: Any, sweep: Sweep, store: Store, todo: list[SweepRun],
             pending: dict[int, SweepRun], result: SweepResult, data_dir: str | None,
             trainer: str, emit: Any, progress: bool | None, set_bar: Any,
             checkpoint_dir: str | None) -> None:
    from distributed import as_completed
    from tqdm import tqdm

    token = uuid.uuid4().hex[:8]
    futures = {}
    for run in todo:
        fut = client.submit(run_task, run.config.to_dict(), data_dir, trainer, checkpoint_dir, pure=False,
                            key=f"ctfrpu-run-{sweep.name}-{run.index}-{run.hash}-{token}")
        futures[fut.key] = (fut, run)
    width = len(str(len(sweep.runs)))
    bar = tqdm(total=len(todo), desc=sweep.name, unit="run", file=sys.stderr, leave=False,
               disable=None if progress is None else not progress, dynamic_ncols=True)
    set_bar(bar)
    n_ok = n_bad = n_done = 0  # n_done: every completion, also one recorded by another process
    started = time.perf_counter()
    try:
        for fut in as_completed([f for f, _ in futures.values()], loop=client.loop):
            _, run = futures[fut.key]
            out = _collect(fut)
            outcome = _record(store, sweep, run, out)
            result.outcomes.append(outcome)
            pending.pop(run.index, None)
            if out.get("worker"):
                w = result.workers.setdefault(out["worker"], {"runs": 0, "peak_rss_mb": 0.0,
                                                              "dataset_loads": 0})
                w["runs"] += 1
                w["peak_rss_mb"] = round(max(w["peak_rss_mb"], out.get("peak_rss_mb") or 0.0), 1)
                w["dataset_loads"] = max(w["dataset_loads"], out.get("dataset_loads") or 0)
            tag = f"[{run.index:>{width}}/{len(sweep.runs)}] {run.hash}"
            n_done += 1
            eta = _eta(time.perf_counter() - started, n_done, len(todo) - n_done)
            if outcome.status == "finished":
                n_ok += 1
                acc = (outcome.final or {}).get("test_accuracy")
                acc_s = f"acc={acc:.4f}" if isinstance(acc, (int, float)) else "acc=?"
                cpu = outcome.cpu_seconds
                cpu_s = f" (cpu {cpu:.1f}s)" if isinstance(cpu, (int, float)) else ""
                emit(f"{tag} done    {acc_s} {outcome.seconds:7.1f}s{cpu_s}  {eta}  {run.label()}")
                for note in out.get("warnings") or ():
                    emit(f"{tag} warning: {note}")
            elif outcome.status == "skipped-finished":
                emit(f"{tag} already finished (recorded by another process)  {run.label()}")
            elif outcome.status == "diverged":
                n_ok += 1
                emit(f"{tag} DIVERGED {outcome.seconds:7.1f}s  {run.label()}: {_short(outcome.error)}")
            else:
                n_bad += 1
                emit(f"{tag} FAILED  {run.label()}: {_short(outcome.error)}")
            bar.set_postfix(done=n_ok, failed=n_bad, refresh=False)
            bar.update(1)
    except KeyboardInterrupt as err:
        set_bar(None)
        bar.close()
        what = "terminated" if isinstance(err, _Terminate) else "interrupted"
        emit(f"{what}: cancelling {_n(len(pending), 'run')} and closing the cluster; the finished "
             "runs are recorded, rerun the same command to resume")
        client.cancel([f for f, _ in futures.values()], force=True)
        raise
    except BaseException:
        client.cancel([f for f, _ in futures.values()], force=True)
        raise
    finally:
        set_bar(None)
        bar.close()


def _collect(fut: Any) -> dict[str, Any]:
    """The task's result dict; an error of the future itself (e.g. the worker died running it
    every time it was tried: KilledWorker) becomes a failed result."""
    try:
        out = fut.result()
    except KeyboardInterrupt:
        raise
    except Exception as err:  # noqa: BLE001
        name = type(err).__name__
        hint = " (the worker process died running it: out of memory?)" if name == "KilledWorker" else ""
        now = time.time()
        return {"status": "failed", "epochs": [], "final": None, "started": now, "ended": now,
                "error": f"{name}: {_short(str(err))}{hint}"}
    return dict(out)


def _record(store: Store, sweep: Sweep, run: SweepRun, out: dict[str, Any]) -> RunOutcome:
    """Write one run in one transaction; a hash finished meanwhile by another process is kept once."""
    base = RunOutcome(run.index, run.hash, run.varied, out["status"], final=out.get("final"),
                      error=out.get("error"), seconds=round(out["ended"] - out["started"], 3),
                      cpu_seconds=out.get("cpu_seconds"),
                      worker=out.get("worker"), peak_rss_mb=out.get("peak_rss_mb"))
    if out["status"] == "finished":
        other = store.finished_by_hash(run.hash)
        if other is not None:
            base.status, base.run_id, base.final = "skipped-finished", other.id, other.final
            return base
    cfg = run.config
    base.run_id = store.record_run(cfg.to_dict(), run.hash, out["status"], out["epochs"],
                                   out["final"], out["error"], out["started"], out["ended"],
                                   name=cfg.name, sweep=sweep.name, once=True, device=out.get("device"))
    return base
