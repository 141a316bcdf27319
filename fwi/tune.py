"""``python -m fwi.tune``: hyperparameter search with Optuna; every trial is one :func:`fwi.train.train` run.

The search space is declared in the config (``tune.space``: dotted config key -> parameter spec). Trial ``n``
trains the resolved config plus its suggestions, named ``trial_<n>`` in ``<train.out_dir>/<study>/`` (its run
folder is ``<train.out_dir>/<study>/trial_<n>/``) with ``seed = seed + n``. Its per-epoch validation MAE feeds the
pruner.

The study lives in an Optuna storage (default ``sqlite:///<train.out_dir>/<study>/study.db``) that any number of
workers may share (PostgreSQL/MySQL for several processes or machines). A password in the storage URL never
reaches a file or the console: pass it as ``tune.storage=env:VAR`` (read from the environment when the study
opens), and any URL is masked in everything saved (trial configs, checkpoints, best.yaml, W&B) or printed.
``tune.n_trials`` is the number of *finished* (complete or pruned) trials the study should hold in total: rerunning
the command after an interruption, or starting another worker, runs only the missing ones. Failed trials (an
exception, NaN loss, out of memory, an invalid combination) are recorded with their reason and do not count; a
trial whose worker was killed stops sending heartbeats and is marked failed after ``2 x tune.heartbeat_s`` seconds.

Outputs in ``<train.out_dir>/<study>/``: ``best.yaml`` (the base config with the best parameters, ready for
``python -m fwi.train --config``), ``trials.csv``, ``history.png`` and ``importance.png``.
"""

from __future__ import annotations

import gc
import json
import math
import os
import signal
import socket
import sys
import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import optuna
import polars as pl
from optuna.exceptions import ExperimentalWarning
from optuna.trial import FrozenTrial, Trial, TrialState

from fwi.cli import config_parser, main_guard, resolve_config
from fwi.config import (
    ENV_PREFIX,
    NAME_PATTERN,
    CategoricalParam,
    Config,
    FloatParam,
    IntParam,
    ParamSpec,
    TuneConfig,
    config_to_dict,
    flatten_config,
    load_config,
    redact_url,
    save_config,
    scrub,
)
from fwi.errors import ConfigError, FwiError
from fwi.io import atomic_path
from fwi.train import train

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
"""Trial states that count towards ``tune.n_trials``."""

SURPLUS = "surplus: the study already had tune.n_trials trials finished or running when this one started"
"""``fail_reason`` of a trial started by a worker racing another one for the last slot (it trains nothing)."""

_SCALARS = (str, int, float, bool, type(None))


class TrialDiverged(FwiError):
    """The validation MAE of a trial became NaN or infinite."""


class _Surplus(Exception):
    pass


# --- configs of trials --------------------------------------------------------------------------------------

def with_overrides(cfg: Config, overrides: Iterable[tuple[str, Any]]) -> Config:
    """``cfg`` with dotted-key overrides applied, validated by the schema (:class:`ConfigError` names the key).

    The result carries ``tune.storage`` masked (see :func:`fwi.config.config_to_dict`): trial configs never
    hold the storage password.
    """
    return load_config(None, [*flatten_config(Config, config_to_dict(cfg)), *overrides])


def _candidates(spec: ParamSpec) -> list[Any]:
    if isinstance(spec, CategoricalParam):
        return list(spec.choices)
    return [spec.low, spec.high]


def check_space(cfg: Config) -> None:
    """Reject an empty ``tune.space``, keys the schema lacks and values it refuses, as one-line ConfigErrors.

    Every key is applied to the config with its bounds (float/int) or each of its choices (categorical).
    """
    if not cfg.tune.space:
        raise ConfigError("tune.space is empty: declare the hyperparameters to search, e.g. "
                          "tune.space: {train.lr: {type: float, low: 1.0e-4, high: 3.0e-3, log: true}}")
    for key, spec in cfg.tune.space.items():
        if key in ("name", "seed") or key.split(".")[0] == "tune":
            raise ConfigError(f"tune.space key '{key}' cannot be tuned: each trial sets name and seed itself, "
                              "and tune.* configures the search")
        for value in _candidates(spec):
            try:
                with_overrides(cfg, [(key, value)])
            except ConfigError as exc:
                raise ConfigError(f"tune.space key '{key}': {exc}") from None


def _scalar_choices(spec: CategoricalParam) -> bool:
    return all(isinstance(c, _SCALARS) for c in spec.choices)


def suggest(trial: Trial, key: str, spec: ParamSpec) -> Any:
    """The trial's value for ``key`` (Optuna parameter named by the dotted key)."""
    if isinstance(spec, FloatParam):
        return trial.suggest_float(key, spec.low, spec.high, log=spec.log, step=spec.step)
    if isinstance(spec, IntParam):
        return trial.suggest_int(key, spec.low, spec.high, step=spec.step, log=spec.log)
    if _scalar_choices(spec):
        return trial.suggest_categorical(key, spec.choices)
    # Optuna stores scalar choices only: lists/mappings are chosen by their JSON text.
    return json.loads(trial.suggest_categorical(key, [json.dumps(c) for c in spec.choices]))


def decode_params(cfg: Config, params: dict[str, Any]) -> dict[str, Any]:
    """Config values of a trial's stored Optuna parameters (JSON-encoded choices decoded)."""
    out = {}
    for key, value in params.items():
        spec = cfg.tune.space.get(key)
        if isinstance(spec, CategoricalParam) and not _scalar_choices(spec) and isinstance(value, str):
            value = json.loads(value)
        out[key] = value
    return out


def trial_config(cfg: Config, study_name: str, number: int, params: dict[str, Any]) -> Config:
    """The config trial ``number`` trains: ``cfg`` + ``params``, ``name=trial_<n>`` in
    ``train.out_dir=<out_dir>/<study>`` (its run folder: ``<out_dir>/<study>/trial_<n>/``), ``seed=seed+n``."""
    return with_overrides(cfg, [*params.items(), ("name", f"trial_{number}"),
                                ("train.out_dir", str(cfg.train.out_dir / study_name)), ("seed", cfg.seed + number)])


def best_config(cfg: Config, study_name: str, params: dict[str, Any]) -> Config:
    """The base config with the best trial's parameters, named ``<study>-best`` (written as best.yaml)."""
    return with_overrides(cfg, [*decode_params(cfg, params).items(), ("name", f"{study_name}-best")])


# --- storage, sampler, pruner ---------------------------------------------------------------------------------

def storage_url(cfg: Config, study_name: str) -> str:
    """The study's storage URL: ``tune.storage``, the URL in the environment variable it names (``env:VAR``), or
    ``sqlite:///<train.out_dir>/<study>/study.db`` (its folder created). It may hold a password: print and save
    only :func:`fwi.config.redact_url` of it."""
    storage = cfg.tune.storage
    if storage and storage.startswith(ENV_PREFIX):
        var = storage[len(ENV_PREFIX):]
        if not os.environ.get(var):
            raise ConfigError(f"tune.storage is {storage} but the environment variable {var} is not set (export "
                              f"{var}=postgresql+psycopg2://user:password@host/db)")
        return os.environ[var]
    if storage:
        if ":***@" in storage:
            raise ConfigError("tune.storage holds a masked password (':***@', from a saved config): pass the real URL "
                              "with --storage, or better env:VAR")
        return storage
    path = cfg.train.out_dir / study_name / "study.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


_DRIVERS = {"psycopg2": "pip install psycopg2-binary", "psycopg": "pip install 'psycopg[binary]'",
            "pymysql": "pip install pymysql", "MySQLdb": "pip install mysqlclient"}


def open_storage(url: str, heartbeat_s: int, *, attempts: int = 4) -> optuna.storages.RDBStorage:
    """An Optuna RDB storage with trial heartbeats; retried when several workers create its tables at once.

    Every error is one line with the URL's password masked (:func:`fwi.config.scrub`).
    """
    import sqlalchemy.exc

    shown = redact_url(url)
    sqlite = url.startswith("sqlite")
    engine_kwargs = {"connect_args": {"timeout": 60}} if sqlite else {"pool_pre_ping": True}
    for attempt in range(attempts):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ExperimentalWarning)
                return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_s)
        except ImportError as exc:  # optuna re-raises the driver's ModuleNotFoundError as a bare ImportError
            missing = exc.__cause__ if isinstance(exc.__cause__, ImportError) else exc
            module = (missing.name or "?").split(".")[0]
            hint = _DRIVERS.get(module, f"pip install {module}")
            raise FwiError(f"storage {shown} needs the database driver '{module}', which is not installed: {hint}, "
                           "or name an installed driver in the URL (PostgreSQL: postgresql+psycopg2://...)") from None
        except (sqlalchemy.exc.ArgumentError, ValueError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise FwiError(scrub(f"invalid storage URL {shown}: {first}", url)) from None
        except sqlalchemy.exc.SQLAlchemyError as exc:
            if attempt == attempts - 1:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise FwiError(scrub(f"cannot open storage {shown}: {first}", url)) from None
            time.sleep(0.5 + attempt)
    raise AssertionError("unreachable")


def make_sampler(tune_cfg: TuneConfig, trial_number: int = 0) -> optuna.samplers.BaseSampler:
    """TPE seeded with ``sampler_seed + trial_number`` (constant liar: running trials repel new suggestions)."""
    seed = None if tune_cfg.sampler_seed is None else tune_cfg.sampler_seed + trial_number
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=tune_cfg.sampler_startup_trials,
                                          constant_liar=True)


def make_pruner(tune_cfg: TuneConfig) -> optuna.pruners.BasePruner:
    if tune_cfg.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=tune_cfg.pruner_startup_trials,
                                           n_warmup_steps=tune_cfg.pruner_warmup_epochs)
    if tune_cfg.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=max(1, tune_cfg.pruner_warmup_epochs))
    return optuna.pruners.NopPruner()


def _counts(study: optuna.Study) -> tuple[int, int]:
    """(finished, running) trials of the study."""
    trials = study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING))
    running = sum(t.state == TrialState.RUNNING for t in trials)
    return len(trials) - running, running


def _fail_stale(study: optuna.Study) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


# --- the objective ----------------------------------------------------------------------------------------------

def worker_id() -> str:
    """``<hostname>:<pid>`` of this process, recorded on each of its trials (user attr ``worker``)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:500]


class Objective:
    """One trial: suggest, build the trial config, train with per-epoch reports to the pruner."""

    def __init__(self, cfg: Config, study_name: str, *, progress: bool = False):
        self.cfg, self.study_name, self.progress = cfg, study_name, progress

    def __call__(self, trial: Trial) -> float:
        t = self.cfg.tune
        # Reseeded per trial: reproducible, and no replay of earlier suggestions on resume or in another worker.
        trial.study.sampler = make_sampler(t, trial.number)
        trial.set_user_attr("worker", worker_id())
        ahead = trial.study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING))
        if sum(other.number < trial.number for other in ahead) >= t.n_trials:
            trial.set_user_attr("fail_reason", SURPLUS)
            raise _Surplus(SURPLUS)
        try:
            params = {key: suggest(trial, key, spec) for key, spec in t.space.items()}
            cfg = trial_config(self.cfg, self.study_name, trial.number, params)
            trial.set_user_attr("run_dir", str(cfg.train.out_dir / cfg.name))
            value = train(cfg, on_epoch=self._reporter(trial), progress=self.progress)
            if not math.isfinite(value):
                raise TrialDiverged(f"val MAE is {value} (training diverged)")
            return value
        except optuna.TrialPruned:
            raise
        except KeyboardInterrupt:
            trial.set_user_attr("fail_reason", "interrupted")
            raise
        except Exception as exc:
            trial.set_user_attr("fail_reason", _reason(exc))
            raise
        finally:
            gc.collect()
            _empty_cuda_cache()

    @staticmethod
    def _reporter(trial: Trial) -> Callable[[int, float], None]:
        def on_epoch(epoch: int, val_mae: float) -> None:
            if not math.isfinite(val_mae):
                raise TrialDiverged(f"val MAE is {val_mae} after epoch {epoch} (training diverged)")
            trial.report(val_mae, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"val MAE {val_mae:.1f} m/s after epoch {epoch}")

        return on_epoch


def _empty_cuda_cache() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


class _StopWhenEnough:
    """Stop this worker once finished trials plus trials running elsewhere reach tune.n_trials."""

    def __init__(self, n_trials: int):
        self.n_trials = n_trials

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if sum(_counts(study)) >= self.n_trials:
            study.stop()


class _FailureStreak:
    """Stop this worker after ``limit`` failed trials in a row."""

    def __init__(self, limit: int):
        self.limit, self.count, self.last = limit, 0, ""

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if trial.state != TrialState.FAIL:
            self.count = 0
            return
        reason = trial.user_attrs.get("fail_reason", "")
        if reason == SURPLUS:
            return
        self.count += 1
        self.last = f"trial {trial.number}: {reason or 'no reason recorded'}"
        if self.tripped:
            study.stop()

    @property
    def tripped(self) -> bool:
        return self.count >= self.limit


# --- outputs ----------------------------------------------------------------------------------------------------

def trials_table(trials: list[FrozenTrial]) -> pl.DataFrame:
    """One row per trial: number, state, val_mae, epochs reported, duration, params, worker, reason, run_dir."""
    rows = []
    for t in trials:
        last = t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values else None
        reason = t.user_attrs.get("fail_reason")
        if t.state == TrialState.FAIL and not reason:
            reason = "no reason recorded (its worker died or was killed)"
        rows.append({
            "number": t.number, "state": t.state.name,
            "val_mae": t.value if t.state == TrialState.COMPLETE else None,
            "epochs": len(t.intermediate_values), "last_val_mae": last,
            "duration_s": t.duration.total_seconds() if t.duration is not None else None,
            "start": t.datetime_start.isoformat(timespec="seconds") if t.datetime_start else None,
            **{f"param_{k}": v for k, v in t.params.items()},
            "worker": t.user_attrs.get("worker"), "fail_reason": reason, "run_dir": t.user_attrs.get("run_dir"),
        })
    if not rows:
        return pl.DataFrame()
    columns = list(dict.fromkeys(k for row in rows for k in row))
    for key in columns:  # a categorical parameter may mix types: write such a column as text
        kinds = {type(row.get(key)) for row in rows} - {type(None)}
        if len(kinds) > 1 and not kinds <= {int, float}:
            for row in rows:
                row[key] = None if row.get(key) is None else str(row[key])
    return pl.from_dicts([{k: row.get(k) for k in columns} for row in rows], infer_schema_length=None)


def _save_figure(make: Callable[[], Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        warnings.simplefilter("ignore", UserWarning)
        ax = make()
    fig = ax.figure
    try:
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=110)
    finally:
        plt.close(fig)


def write_outputs(study: optuna.Study, cfg: Config, study_name: str, *, plots: bool = True) -> Path | None:
    """Write trials.csv, best.yaml (when a trial completed) and the plots; returns best.yaml's path or None."""
    from optuna.visualization import matplotlib as vis

    out = cfg.train.out_dir / study_name
    trials = study.get_trials(deepcopy=False)
    table = trials_table(trials)
    with atomic_path(out / "trials.csv") as tmp:
        table.write_csv(tmp)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best_path = None
    if complete:
        best = study.best_trial
        best_path = out / "best.yaml"
        save_config(best_config(cfg, study_name, best.params), best_path)
    if not plots:
        return best_path
    target = "val MAE (m/s)"
    if complete:
        _save_figure(lambda: vis.plot_optimization_history(study, target_name=target), out / "history.png")
    else:
        print("history.png skipped: no completed trial yet", file=sys.stderr)
    if len(complete) < 2:
        print("importance.png skipped: needs at least 2 completed trials", file=sys.stderr)
    else:
        try:
            _save_figure(lambda: vis.plot_param_importances(study, target_name=target), out / "importance.png")
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:
            print(f"importance.png skipped: {_reason(exc)}", file=sys.stderr)
    return best_path


# --- the study --------------------------------------------------------------------------------------------------

def tune(cfg: Config, study_name: str, *, progress: bool | None = None) -> optuna.Study:
    """Run (or resume, or join) the study ``study_name`` until it holds ``tune.n_trials`` finished trials.

    Stops earlier after ``tune.timeout_s`` seconds, or with :class:`FwiError` after ``tune.max_failures``
    failed trials in a row. Writes the outputs (see the module docstring) and returns the study.
    ``progress``: tqdm bars inside each trial (default: when stderr is a terminal).
    """
    if not NAME_PATTERN.fullmatch(study_name):
        raise ConfigError(f"study name '{study_name}' must be letters, digits, '_', '.', '+' or '-' (it names a "
                          "folder)")
    check_space(cfg)
    t = cfg.tune
    if progress is None:
        progress = sys.stderr.isatty()
    url = storage_url(cfg, study_name)
    study = optuna.create_study(study_name=study_name, storage=open_storage(url, t.heartbeat_s),
                                sampler=make_sampler(t), pruner=make_pruner(t), direction="minimize",
                                load_if_exists=True)
    _fail_stale(study)
    finished, running = _counts(study)
    print(f"study '{study_name}' in {redact_url(url)}: {finished} of {t.n_trials} trials finished, {running} running; "
          f"worker {worker_id()}", flush=True)
    deadline = None if t.timeout_s is None else time.monotonic() + t.timeout_s
    objective = Objective(cfg, study_name, progress=progress)
    streak = _FailureStreak(t.max_failures)
    callbacks = [_StopWhenEnough(t.n_trials), streak,
                 lambda s, _trial: write_outputs(s, cfg, study_name, plots=False)]
    waiting = False
    try:
        while True:
            _fail_stale(study)
            finished, running = _counts(study)
            if finished >= t.n_trials:
                break
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                print(f"tune.timeout_s={t.timeout_s} reached with {finished} of {t.n_trials} trials finished; "
                      "run the command again to continue", flush=True)
                break
            if finished + running >= t.n_trials:  # the rest is running elsewhere: wait, take over if it dies
                if not waiting:
                    print(f"waiting for {running} running trial(s) of other workers (a dead worker's trial is "
                          f"marked failed {2 * t.heartbeat_s} s after its last heartbeat, then redone here)",
                          flush=True)
                    waiting = True
                time.sleep(min(5.0, t.heartbeat_s, left if left is not None else math.inf))
                continue
            waiting = False
            study.optimize(objective, timeout=left, catch=(Exception,), callbacks=callbacks, gc_after_trial=True)
            if streak.tripped:
                raise FwiError(f"{streak.count} trials failed in a row (tune.max_failures={t.max_failures}); last "
                               f"{streak.last}; stopping this worker (see trials.csv)")
    except BaseException:
        write_outputs(study, cfg, study_name, plots=False)
        raise
    best_path = write_outputs(study, cfg, study_name)
    finished, _ = _counts(study)
    out = cfg.train.out_dir / study_name
    if best_path is None:
        print(f"{finished} trials finished, none completed (all pruned or failed): no best.yaml; trials: "
              f"{out / 'trials.csv'}")
    else:
        best = study.best_trial
        shown = ", ".join(f"{k}={v}" for k, v in decode_params(cfg, best.params).items())
        print(f"{finished} trials finished; best trial {best.number}: val MAE {best.value:.1f} m/s with {shown}\n"
              f"best config: {best_path}  (train it: python -m fwi.train --config {best_path})\n"
              f"trials: {out / 'trials.csv'}  plots: {out / 'history.png'}, {out / 'importance.png'}")
    return study


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@main_guard
def main(argv: list[str] | None = None) -> int:
    parser = config_parser("python -m fwi.tune", "Search hyperparameters with Optuna: each trial is one "
                           "fwi.train run of the config plus the trial's tune.space suggestions.")
    parser.add_argument("--study", metavar="NAME", help="study name (required): outputs go to runs/NAME/, trials to "
                        "runs/NAME/trial_<n>/; rerun with the same name to resume, or start more workers")
    parser.add_argument("--storage", metavar="URL", help="Optuna storage shared by the workers (tune.storage; "
                        "default sqlite:///runs/NAME/study.db); env:VAR reads the URL from environment variable VAR")
    parser.add_argument("--n-trials", type=int, metavar="N", help="finished trials wanted in total (tune.n_trials)")
    parser.add_argument("--timeout", type=float, metavar="S", help="start no trial after S seconds (tune.timeout_s)")
    args = parser.parse_intermixed_args(argv)
    extra = {"tune.storage": args.storage, "tune.n_trials": args.n_trials, "tune.timeout_s": args.timeout}
    cfg = resolve_config(args, {k: v for k, v in extra.items() if v is not None})
    if not args.study:
        parser.error("--study NAME is required")
    try:  # a terminated worker marks its running trial failed instead of leaving it to the heartbeat timeout
        previous = signal.signal(signal.SIGTERM, _interrupt)
    except ValueError:  # not the main thread
        previous = None
    try:
        tune(cfg, args.study)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":
    sys.exit(main())
