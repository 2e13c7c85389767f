"""`ctfrpu train`: one training run, recorded in the store."""

from __future__ import annotations

import json

import click

from ..config import parse_value, resolve, stored_config
from ..errors import CtfrpuError
from ..store import Store
from ..units import parse_cli_time
from .common import data_dir_option, resume_command, store_option

# flag -> dotted config key. Values go through the strict config validator, so a bad value is a
# one-line error naming the key (click's own type errors would print a usage block instead).
_FLAGS = {
    "dataset": "data.dataset", "epochs": "optim.epochs", "seed": "seed", "lr": "optim.lr", "lr_decay": "optim.lr_decay",
    "batch_size": "optim.batch_size", "train_limit": "data.train_limit", "test_limit": "data.test_limit",
    "val_size": "data.val_size", "device": "device.kind", "device_params": "device.params_file",
    "pulses": "pulses.n", "gap": "pulses.gap", "pw_mode": "pulses.mode", "t_on": "pulses.t_on",
    "pw": "pulses.pw", "update_mode": "update.mode", "compensation": "compensation.kind", "name": "name",
    "engine": "optim.engine",
}


_TIME_FLAGS = ("gap", "t_on", "pw")


def _overrides(options: dict) -> dict:
    out = {}
    for flag, key in _FLAGS.items():
        value = options.get(flag)
        if value is None:
            continue
        if flag in _TIME_FLAGS:
            out[key] = parse_cli_time(value, f"--{flag.replace('_', '-')}")
        elif flag in ("name", "device_params"):
            out[key] = value
        else:
            out[key] = parse_value(value)
    hidden = options.get("hidden")
    if hidden is not None:
        items = [h.strip() for h in hidden.split(",")]
        if not all(items):
            raise CtfrpuError(f"--hidden: give comma-separated layer sizes such as 256,128, got {hidden!r}")
        out["model.hidden"] = [parse_value(h) for h in items]
    return out


def config_from_cli(config_file, options: dict, sets: tuple[str, ...]):
    return resolve(config_file, _overrides(options), list(sets))


@click.command("train")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML run config.")
@click.option("--dataset", help="mnist | fashion | synthetic  [mnist]")
@click.option("--epochs", help="Epochs  [30]")
@click.option("--seed", help="Seed of every random draw  [0]")
@click.option("--lr", help="Learning rate  [0.01]")
@click.option("--lr-decay", help="Per-epoch step decay: epoch e uses lr * lr_decay**(e-1)  [1.0]")
@click.option("--batch-size", help="Mini-batch size; the analog update is applied sample by sample in order  [1]")
@click.option("--engine", help="compiled (one numba call per chunk of samples) | reference (the per-sample numpy "
                               "loop of every earlier stored result)  [compiled]")
@click.option("--train-limit", help="Train on the first N shuffled samples only.")
@click.option("--test-limit", help="Evaluate on the first N test samples only.")
@click.option("--val-size", help="Hold out N training samples for validation  [0]")
@click.option("--hidden", help="Hidden sizes, comma-separated  [256,128]")
@click.option("--device", help="fp | ideal | ctf (ctf = our CTF program-time model)  [fp]")
@click.option("--device-params", help="Device parameter file (TOML/JSON), e.g. from `ctfrpu device fit`.")
@click.option("--pulses", help="N, slots per pulse train  [1000]")
@click.option("--gap", help="t_gap between slots, with a unit: 1us, 100ns, 0  [1us]")
@click.option("--pw-mode", help="on_time (pw = t_on/N) | fixed_pw  [on_time]")
@click.option("--t-on", help="ON-time budget per train in on_time mode, with a unit  [5ms]")
@click.option("--pw", help="Pulse width in fixed_pw mode, with a unit  [5us]")
@click.option("--update-mode",
              help="exact | expected | gaussian | factorial (the 2x2 ablation; needs update.bias_pulses)  [exact]")
@click.option("--compensation",
              help="none | gain | stretch (our pulse-train design compensation: more pulses, or longer ones)  [none]")
@click.option("--name", help="Label of the run.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Any config key, e.g. --set device.params.dv_std=0.2 (repeatable).")
@click.option("--resume", "resume_id", type=int, metavar="RUN_ID",
              help="Continue an interrupted run from its last finished epoch (same id, same config, "
                   "same results as an uninterrupted run). Takes no config options.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a summary.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@store_option
@data_dir_option
def train(config_file, sets, resume_id, as_json, no_progress, store_path, data_dir, **options) -> None:
    """Train the MLP (default: Gokmen-Vlasov 784-256-128-10, sigmoid, SGD batch 1, lr 0.01).

    Every setting comes from the config (defaults < --config FILE < flags < --set); the resolved
    config and per-epoch metrics are stored in the run store. The run checkpoints after every
    epoch; Ctrl-C (or kill) marks it interrupted, and `ctfrpu train --resume ID` continues it.
    A run whose loss runs away (above 10 x the chance loss ln(classes), or non-finite weights)
    stops and is recorded 'diverged' (exit status 1).
    """
    from ..training.runner import RunInterrupted, execute_run

    if resume_id is not None:
        given = [f"--{k.replace('_', '-')}" for k, v in options.items() if v is not None]
        given += ["--config"] * bool(config_file) + ["--set"] * bool(sets)
        if given:
            raise CtfrpuError(f"--resume continues a run with its stored config; drop {', '.join(given)}")
        cfg = None
    else:
        cfg = config_from_cli(config_file, options, sets)
    _sigterm_as_interrupt()
    with Store(store_path, create=resume_id is None) as store:   # --resume of a mistyped store: no new file
        try:
            run_id, result = execute_run(cfg, store, progress=not (no_progress or as_json), data_dir=data_dir,
                                         resume=resume_id)
        except RunInterrupted as stop:
            click.echo(f"interrupted: run {stop.run_id} marked 'interrupted' in {store.path}; continue it "
                       f"with `{resume_command(stop.run_id, store_path and store.path)}`", err=True)
            raise click.exceptions.Exit(_interrupt_status())
        except KeyboardInterrupt:  # before the run was recorded, or after it finished
            click.echo("interrupted; no run left unfinished", err=True)
            raise click.exceptions.Exit(_interrupt_status())
        if cfg is None:
            cfg = stored_config(store.get(run_id).config)
        final = result["final"]
        status = result.get("status", "finished")
        if as_json:
            click.echo(json.dumps({"run_id": run_id, "status": status, "config_hash": cfg.hash(),
                                   "config": cfg.to_dict(), "test_accuracy": final["test_accuracy"],
                                   "final": final, "epochs": result["epochs"],
                                   **({"reason": result["reason"]} if "reason" in result else {})}))
        else:
            click.echo(f"run {run_id} {status}: {cfg.data.dataset} {cfg.device.kind}, {final['epochs']} epoch(s), "
                       f"test accuracy {final['test_accuracy']:.4f}, train loss {final['train_loss']:.4g}, "
                       f"{final['seconds']:.1f} s  [store {store.path}]")
        for note in result.get("warnings", ()):
            click.echo(f"warning: run {run_id}: {note}", err=True)
        if status == "diverged":
            click.echo(f"warning: run {run_id} {result['reason']}", err=True)
            raise click.exceptions.Exit(1)


_TERMINATED = []


def _sigterm_as_interrupt() -> None:
    """`kill` (SIGTERM) ends a run like Ctrl-C: recorded as interrupted, store consistent."""
    import signal

    def handler(signum, frame):
        _TERMINATED.append(signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def _interrupt_status() -> int:
    """130 after Ctrl-C, 143 after SIGTERM (the shell's 128 + signal number, as `ctfrpu sweep`)."""
    return 143 if _TERMINATED else 130



COMMANDS = [train]
