"""Run an Optuna study over a recipe's search space, then finish with the best trial.

Trustworthy by construction:
- every trial trains through the ordinary loop (`toolkit.train.loop.fit`) on the same train/validation split,
  with the test split withheld (an empty array takes its place), so selection sees validation data only;
- the test split is scored once, at the end, for the best trial's checkpoint (`evaluate_run`);
- each epoch's validation metric is reported to the pruner, which stops unpromising trials early.

The study lives in a database (`sqlite:///OUT/study.db` by default): rerunning the same command continues
it, and `--trials N` counts the finished trials of the whole study, so N machines pointed at one
PostgreSQL URL share the work and stop together. `--jobs N` starts N worker processes on one machine.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import socket
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolkit.errors import ToolkitError, one_line
from toolkit.io import write_json, write_text
from toolkit.recipe import Recipe, recipe_from_dict
from toolkit.tune.space import Param, decode, load_space_file, parse_space, set_key

SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "halving", "none")
FINISHED = ("COMPLETE", "PRUNED")
SPACE_ATTR = "toolkit_search"  # study user attribute: what the study searches (checked on resume)


@dataclass
class Search:
    """Everything a worker needs to run trials (picklable: --jobs sends it to worker processes)."""

    recipe: Recipe
    params: list[Param]
    metric: str  # the validation metric without prefix, e.g. accuracy
    direction: str  # maximize | minimize
    out: Path
    storage: str
    study_name: str
    sampler: str = "tpe"
    pruner: str = "median"
    trials: int = 20
    timeout: float | None = None
    jobs: int = 1
    track: list[str] = field(default_factory=list)  # mlflow/tensorboard: trials as (child) runs
    track_parent: dict[str, str] | None = None  # {"mlflow": the study's run id}, set by run_search
    # A running trial whose worker sent no heartbeat for `grace` seconds is marked failed (its worker died)
    # and retried once, by whichever worker is free; the heartbeat is written every `interval` seconds.
    heartbeat: tuple[float, float] = (30.0, 120.0)  # (interval, grace)

    @property
    def metric_key(self) -> str:
        return f"val_{self.metric}"

    def trial_dir(self, number: int) -> Path:
        return self.out / "trials" / f"{number:04d}"

    def fingerprint(self) -> dict[str, Any]:
        return {
            "recipe": self.recipe.to_dict(),
            "space": {p.key: p.describe() for p in self.params},
            "metric": self.metric,
            "direction": self.direction,
        }


@dataclass
class TuneResult:
    out: Path
    study_name: str
    storage: str
    metric: str  # val_accuracy, ...
    direction: str
    rows: list[dict[str, Any]]  # one per trial: number, state, value, epochs, seconds, params
    best: dict[str, Any]  # number, value, params, retrained
    test_metrics: dict[str, Any]
    files: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "study": self.study_name,
            "storage": self.storage,
            "metric": self.metric,
            "direction": self.direction,
            "counts": self.counts,
            "best": self.best,
            "test_metrics": self.test_metrics,
            "files": self.files,
            "trials": self.rows,
        }


# --------------------------------------------------------------------------------------------- public API
def tune(
    recipe: str | Path | Recipe,
    data: str | None = None,
    target: str | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    space: str | Path | None = None,
    trials: int = 20,
    timeout: float | None = None,
    sampler: str = "tpe",
    pruner: str = "median",
    metric: str | None = None,
    direction: str | None = None,
    storage: str | None = None,
    study: str | None = None,
    jobs: int = 1,
    out: str | Path | None = None,
    progress: Any = None,
    track: list[str] | None = None,
) -> TuneResult:
    """Search the recipe's space (or `space`, a YAML file) and finish with the best trial. See module doc."""
    search = prepare(
        recipe, data, target, overrides, space, trials, timeout, sampler, pruner, metric, direction,
        storage, study, jobs, out, track,
    )  # fmt: skip
    run_search(search, progress)
    return finish(search)


def prepare(
    recipe: str | Path | Recipe,
    data: str | None = None,
    target: str | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    space: str | Path | None = None,
    trials: int = 20,
    timeout: float | None = None,
    sampler: str = "tpe",
    pruner: str = "median",
    metric: str | None = None,
    direction: str | None = None,
    storage: str | None = None,
    study: str | None = None,
    jobs: int = 1,
    out: str | Path | None = None,
    track: list[str] | None = None,
    heartbeat: tuple[float, float] = (30.0, 120.0),
) -> Search:
    """Resolve and check every argument (nothing is written when one is wrong)."""
    from toolkit.metrics import MAIN_METRIC, direction_of
    from toolkit.tracking import check_kinds
    from toolkit.train import resolve_recipe

    given = recipe.search if isinstance(recipe, Recipe) else {}
    rec = resolve_recipe(recipe, data, target, overrides)
    rec.search = load_space_file(space) if space is not None else (rec.search or given)
    where = f"--space {space}:" if space is not None else "search"
    params = parse_space(rec.to_dict(), rec.search, where=where)  # checked against the resolved recipe
    if not params:
        raise ToolkitError(
            f"recipe {rec.name} has no search: section; give --space FILE (see recipes/cnn-image.yaml)"
        )
    if sampler not in SAMPLERS:
        raise ToolkitError(f"--sampler must be one of {', '.join(SAMPLERS)} (got {sampler!r})")
    if pruner not in PRUNERS:
        raise ToolkitError(f"--pruner must be one of {', '.join(PRUNERS)} (got {pruner!r})")
    if trials < 1 or jobs < 1 or (timeout is not None and timeout <= 0):
        raise ToolkitError("--trials and --jobs must be positive integers and --timeout positive seconds")
    if not (0 < heartbeat[0] < heartbeat[1]):
        raise ToolkitError(
            f"--heartbeat-interval must be positive and below --heartbeat-grace (got {heartbeat[0]:g} and "
            f"{heartbeat[1]:g} seconds)"
        )
    if rec.data.val_fraction <= 0:
        raise ToolkitError("tune selects on the validation split: data.val_fraction must be > 0")
    main, mode = MAIN_METRIC[rec.task]
    name = (metric or main).removeprefix("val_")
    if direction is None:
        direction = mode if name == main else direction_of(name)
    if direction not in ("max", "min", "maximize", "minimize"):
        raise ToolkitError(f"--direction must be max or min (got {direction!r})")
    out = Path(out) if out is not None else Path("runs") / f"tune-{rec.name}"
    if storage is None:
        storage = f"sqlite:///{(out / 'study.db').resolve()}"
    if "://" not in storage:
        raise ToolkitError(
            f"--storage must be a database URL such as sqlite:///study.db or "
            f"postgresql://user:password@host/db (got {storage!r})"
        )
    return Search(
        recipe=rec,
        params=params,
        metric=name,
        direction="maximize" if direction.startswith("max") else "minimize",
        out=out,
        storage=storage,
        study_name=study or rec.name,
        sampler=sampler,
        pruner=pruner,
        trials=trials,
        timeout=timeout,
        jobs=jobs,
        track=check_kinds(rec.train.track if track is None else track),
        heartbeat=(float(heartbeat[0]), float(heartbeat[1])),
    )


def apply_params(base: Recipe, params: list[Param], values: dict[str, Any]) -> Recipe:
    """The recipe of one trial: the base recipe with each searched key set to its sampled value."""
    raw = base.to_dict()
    for p in params:
        set_key(raw, p.key, decode(p, values[p.key]))
    return recipe_from_dict(raw)


# --------------------------------------------------------------------------------------------- study
def open_study(search: Search, worker: int = 0):
    """Create or load the study; a study made for a different search is refused (naming the difference)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # failures are in the trials table
    if search.storage.startswith("sqlite:///"):
        Path(search.storage.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings():  # heartbeats (stale trials of killed workers fail) are "experimental"
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            kwargs = _storage_kwargs(search)
            storage = optuna.storages.RDBStorage(_with_driver(search.storage), **kwargs)
    except ImportError as exc:
        raise ToolkitError(
            f"--storage {_redact(search.storage)} needs a database driver ({one_line(exc, with_type=True)}); "
            "for PostgreSQL: pip install 'toolkit[postgres]'"
        ) from None
    except Exception as exc:  # SQLAlchemy: a bad URL or an unreachable server
        raise ToolkitError(
            f"cannot open --storage {_redact(search.storage)}: {one_line(exc, with_type=True)}"
        ) from None
    study = optuna.create_study(
        storage=storage,
        study_name=search.study_name,
        direction=search.direction,
        load_if_exists=True,
        sampler=optuna.samplers.RandomSampler(),  # replaced below, once the trials so far are known
        pruner=make_pruner(search),
    )
    if study.direction.name.lower() != search.direction:
        raise ToolkitError(
            f"study {search.study_name!r} {study.direction.name.lower()}s its metric, not {search.direction}"
            "; use another --study or --out"
        )
    study.sampler = make_sampler(search, len(study.trials), worker)
    wanted = search.fingerprint()
    held = study.user_attrs.get(SPACE_ATTR)
    if held is None or (held != json.loads(json.dumps(wanted)) and not finished(study)):
        study.set_user_attr(SPACE_ATTR, json.loads(json.dumps(wanted)))  # nothing finished: nothing to keep
    elif held != json.loads(json.dumps(wanted)):
        differs = ", ".join(k for k in wanted if held.get(k) != json.loads(json.dumps(wanted[k])))
        raise ToolkitError(
            f"study {search.study_name!r} in {_redact(search.storage)} was made for a different search "
            f"(its {differs} differ); use another --study or --out"
        )
    return study


def _storage_kwargs(search: Search) -> dict[str, Any]:
    """Heartbeats (a dead worker's trial fails after the grace period and runs once more) and connection
    settings for the storage URL."""
    import optuna

    interval, grace = search.heartbeat
    kwargs: dict[str, Any] = {
        "heartbeat_interval": max(1, round(interval)),
        "grace_period": max(2, round(grace)),
    }
    if hasattr(optuna.storages, "RetryHeartbeatStaleTrialCallback"):  # optuna >= 4.9
        kwargs["heartbeat_stale_trial_callback"] = optuna.storages.RetryHeartbeatStaleTrialCallback(
            max_retry=1
        )
    else:
        kwargs["failed_trial_callback"] = optuna.storages.RetryFailedTrialCallback(max_retry=1)
    if search.storage.startswith("sqlite"):  # worker processes wait for the file lock, not fail
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}
    elif search.storage.startswith("postgresql"):  # a server that does not answer: fail, do not hang
        kwargs["engine_kwargs"] = {"connect_args": {"connect_timeout": 10}}
    return kwargs


def _with_driver(url: str) -> str:
    """postgresql://... opens with psycopg 3 (toolkit[postgres]) whatever SQLAlchemy's default driver is."""
    return (
        "postgresql+psycopg://" + url.removeprefix("postgresql://")
        if url.startswith("postgresql://")
        else url
    )


def make_sampler(search: Search, existing: int, worker: int):
    """Seeded from the recipe seed and the trials already run, so a resumed search does not replay the
    proposals of its first session (and parallel workers do not propose the same points)."""
    import optuna

    seed = search.recipe.train.seed * 100_003 + existing * 7919 + worker * 104_729
    if search.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if search.sampler == "grid":
        return optuna.samplers.GridSampler({p.key: p.grid() for p in search.params}, seed=seed)
    startup = max(4, min(10, search.trials // 4))  # random proposals before TPE models the results
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, multivariate=True)


def make_pruner(search: Search):
    import optuna

    epochs = search.recipe.train.epochs
    if search.pruner == "median":  # stop a trial whose metric is worse than the median of earlier trials
        warmup = min(10, max(2, epochs // 5))  # the first epochs say little about where a run ends
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=warmup)
    if search.pruner == "halving":  # successive halving: keep the best third at each rung
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=max(1, epochs // 10), reduction_factor=3)
    return optuna.pruners.NopPruner()


def finished(study) -> list[Any]:
    import optuna

    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return study.get_trials(deepcopy=False, states=states)


def best_trial(study) -> Any | None:
    """The completed trial with the best value; ties (common for accuracy on a small validation split) go
    to the lower validation loss, as the trainer breaks ties between epochs."""
    import optuna

    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        return None
    sign = -1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else 1.0
    return min(complete, key=lambda t: (sign * t.value, t.user_attrs.get("val_loss", float("inf")), t.number))


# --------------------------------------------------------------------------------------------- search
def run_search(search: Search, progress: Any = None) -> None:
    """Run trials until the study holds `search.trials` finished ones (or the timeout passes).

    Only the train and validation splits are used here; the test split is withheld from every trial."""
    study = open_study(search)
    done = len(finished(study))
    _drop_failed_trial_dirs(search, study)
    if search.track and search.track_parent is None:
        from toolkit.tune.tracked import start_study_run

        search.track_parent = start_study_run(search)
    if progress is not None:
        progress.start(search, study)
    try:
        if done >= search.trials:
            return
        if search.jobs == 1:
            _optimize(search, study, progress)
        else:
            _optimize_processes(search, study, progress)
    finally:
        if progress is not None:
            progress.stop()


def _optimize(search: Search, study, progress: Any = None, quota: int | None = None) -> None:
    import optuna

    remaining = search.trials - len(finished(study)) if quota is None else quota
    if remaining <= 0:
        return
    callbacks = [
        optuna.study.MaxTrialsCallback(search.trials, states=tuple(_states(FINISHED))),
        lambda st, tr: _stop_when_others_fill(search, st),
        lambda st, tr: _drop_checkpoints(search, st),
    ]
    if progress is not None:
        callbacks.append(lambda st, tr: progress.trial_end(st, tr))
    objective = Objective(search, progress)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.optimize(
            objective,
            n_trials=remaining,  # failed trials count here too, so a search that only fails still ends
            timeout=search.timeout,
            callbacks=callbacks,
            catch=(RuntimeError, FloatingPointError),  # a configuration that diverges or runs out of memory
        )


def _stop_when_others_fill(search: Search, study) -> None:
    """Stop this worker when the trials other workers are running would reach --trials: independent
    workers on one storage (other machines, other commands) then end with exactly --trials finished ones.
    Trials of dead workers (stale heartbeats) are failed first, so they do not count as running."""
    import optuna

    optuna.storages.fail_stale_trials(study)
    running = study.get_trials(deepcopy=False, states=_states(("RUNNING",)))
    if len(finished(study)) + len(running) >= search.trials:
        study.stop()


def _states(names: tuple[str, ...]) -> list[Any]:
    import optuna

    return [optuna.trial.TrialState[n] for n in names]


def _optimize_processes(search: Search, study, progress: Any = None) -> None:
    """--jobs N: N worker processes share the study through its storage; this process shows progress."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")  # no fork of a process that holds torch threads
    errors = ctx.Queue()
    remaining = search.trials - len(finished(study))
    quotas = [remaining // search.jobs + (i < remaining % search.jobs) for i in range(search.jobs)]
    procs = [
        ctx.Process(target=_worker, args=(search, i + 1, quota, errors), daemon=True)
        for i, quota in enumerate(quotas)
        if quota > 0
    ]
    for p in procs:
        p.start()
    seen = {t.number for t in finished(study)}
    try:
        while any(p.is_alive() for p in procs):
            time.sleep(0.5)
            for tr in finished(study):
                if tr.number not in seen:
                    seen.add(tr.number)
                    if progress is not None:
                        progress.trial_end(study, tr)
    except KeyboardInterrupt:
        for p in procs:
            p.join(timeout=30)  # the workers got the same Ctrl-C and mark their trials failed
        raise
    for p in procs:
        p.join()
    if not errors.empty():
        raise ToolkitError(errors.get())
    if any(p.exitcode not in (0, None) for p in procs):
        codes = ", ".join(str(p.exitcode) for p in procs)
        raise ToolkitError(f"a worker process failed (exit codes {codes}); rerun with --jobs 1 to see why")


def _worker(search: Search, worker: int, quota: int, errors: Any) -> None:
    """One --jobs process: its share of the trials, with its share of the CPU threads."""
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // search.jobs))
    try:
        _optimize(search, open_study(search, worker=worker), quota=quota)
    except ToolkitError as exc:
        errors.put(str(exc))
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None


class InfeasibleTrial(RuntimeError):
    """A sampled combination the recipe rejects: the trial fails, the search goes on."""


class Objective:
    """Train one trial; its value is the validation metric of the checkpoint the trial keeps."""

    def __init__(self, search: Search, progress: Any = None) -> None:
        self.search, self.progress = search, progress
        self.cache: dict[str, Any] = {}

    def __call__(self, trial) -> float:
        import optuna

        s = self.search
        values = {p.key: self._suggest(trial, p) for p in s.params}
        try:
            rec = apply_params(s.recipe, s.params, values)
        except ToolkitError as exc:  # keys valid alone can clash (model.heads must divide model.d_model)
            trial.set_user_attr("error", str(exc))
            raise InfeasibleTrial(str(exc)) from None
        run_dir = s.trial_dir(trial.number)
        trial.set_user_attr("run_dir", str(run_dir.resolve()))
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")  # who runs it (shared storage)
        if self.progress is not None:
            self.progress.trial_start(trial.number, values, rec.train.epochs)

        def report(epoch: int, row: dict[str, float]) -> None:
            if s.metric_key not in row:
                reported = ", ".join(k[4:] for k in row if k.startswith("val_"))
                raise ToolkitError(f"--metric {s.metric}: not reported; the validation split has {reported}")
            trial.report(row[s.metric_key], epoch)
            trial.set_user_attr("epochs", epoch)
            if self.progress is not None:
                self.progress.epoch(trial.number, epoch, row[s.metric_key])
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {epoch}")

        track = None
        if s.track:
            track = {
                "kinds": s.track, "params": {**rec.to_dict(), "trial": trial.number},
                "experiment": s.recipe.name, "run_name": f"{s.study_name} trial {trial.number}",
                "parent": s.track_parent, "tags": {"toolkit.trial": str(trial.number)},
            }  # fmt: skip
        history = train_trial(rec, run_dir, self._splits(rec), callbacks=[report], track=track)
        trial.set_user_attr("best_epoch", history["best_epoch"])
        kept = next(r for r in history["rows"] if r["epoch"] == history["best_epoch"])
        if "val_loss" in kept:
            trial.set_user_attr("val_loss", float(kept["val_loss"]))  # breaks ties between trials
        return float(kept[s.metric_key])

    @staticmethod
    def _suggest(trial, p: Param) -> Any:
        if p.kind == "choice":
            return trial.suggest_categorical(p.key, p.encoded_choices())
        if p.kind == "int":
            return trial.suggest_int(p.key, p.low, p.high, step=p.step or 1, log=p.log)
        return trial.suggest_float(p.key, p.low, p.high, step=p.step, log=p.log)

    def _splits(self, rec: Recipe) -> Any:
        """The train/validation splits, loaded once per data configuration, with the test split withheld."""
        from toolkit import data as data_mod
        from toolkit.models import model_entry

        kind = model_entry(rec.arch).input_kind(rec.task, rec.model)
        cfg = {k: v for k, v in rec.to_dict()["data"].items() if k != "augment"}  # augment: at train time
        key = json.dumps([cfg, rec.task, kind, rec.train.seed], sort_keys=True, default=str)
        if key not in self.cache:
            self.cache[key] = data_mod.load_splits(rec.data, rec.task, kind, rec.train.seed)
        return withhold_test(self.cache[key])


def withhold_test(splits: Any) -> Any:
    """A copy of the splits whose test split is empty: trials cannot score (or select on) test data.

    Built field by field so the test arrays are never touched; the spec is copied because a task may
    settle values in it (the anomaly threshold) per trial."""
    import numpy as np

    from toolkit.data import Splits

    x, y = splits.x_train, splits.y_train
    return Splits(
        x_train=x,
        y_train=y,
        x_val=splits.x_val,
        y_val=splits.y_val,
        x_test=np.empty((0, *x.shape[1:]), dtype=x.dtype),
        y_test=np.empty((0, *y.shape[1:]), dtype=y.dtype),
        spec=copy.deepcopy(splits.spec),
        extra={},
    )


def train_trial(
    rec: Recipe, run_dir: Path, splits: Any, callbacks: list | None = None, track: dict | None = None
) -> dict[str, Any]:
    """Train one configuration into run_dir (a run directory like `toolkit train` writes, minus test
    metrics); returns its history and best epoch. The caller passes splits without a test split.
    `track`: toolkit.tracking.start's arguments, for a trial tracked as its own (child) run."""
    from toolkit import tracking
    from toolkit.train import loop

    if len(splits.x_test):
        raise AssertionError("trials must not see the test split")
    if run_dir.exists():
        shutil.rmtree(run_dir)  # a leftover of an interrupted attempt under this number
    run_dir.mkdir(parents=True)
    write_text(run_dir / "recipe.yaml", f"# resolved recipe of this trial (toolkit tune)\n{rec.to_yaml()}")
    samples = {"train": len(splits.x_train), "val": len(splits.x_val), "test": 0}
    write_json(run_dir / "data.json", {**splits.spec, "samples": samples})
    tracker = tracking.start(run_dir=run_dir, **track) if track else tracking.Tracker([])
    try:
        result = loop.fit(rec, splits, run_dir, callbacks=[tracker.epoch, *(callbacks or [])])
    except BaseException as exc:
        tracker.fail("KILLED" if type(exc).__name__ in ("TrialPruned", "KeyboardInterrupt") else "FAILED")
        raise
    summary = {
        "rows": result.history,
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "stopped_early": result.stopped_early,
        "device": result.device,
    }
    write_json(run_dir / "trial.json", {k: v for k, v in summary.items() if k != "rows"})
    (run_dir / "last.pt").unlink(missing_ok=True)  # optimizer state: only needed to resume a run
    last = result.history[-1] if result.history else {}
    tracker.finish({**last, **{k: v for k, v in summary.items() if k != "rows"}}, run_dir)
    return summary


def _drop_checkpoints(search: Search, study) -> None:
    """Keep best.pt only for the best trial so far: a long search does not fill the disk with checkpoints."""
    best = best_trial(study)
    for tr in study.get_trials(deepcopy=False):
        if tr.state.name in ("RUNNING", "WAITING") or (best is not None and tr.number == best.number):
            continue
        run_dir = Path(tr.user_attrs.get("run_dir", search.trial_dir(tr.number)))
        for name in ("best.pt", "last.pt"):
            (run_dir / name).unlink(missing_ok=True)


def _drop_failed_trial_dirs(search: Search, study) -> None:
    for tr in study.get_trials(deepcopy=False):
        if tr.state.name == "FAIL":
            shutil.rmtree(search.trial_dir(tr.number), ignore_errors=True)


# --------------------------------------------------------------------------------------------- finish
def finish(search: Search) -> TuneResult:
    """Score the best trial on the test split (once), write best.yaml, OUT/best/, trials.csv and plots."""
    from toolkit.tune import report

    study = open_study(search)
    best = best_trial(study)
    if best is None:
        raise ToolkitError(
            f"no trial of study {search.study_name!r} completed; see {search.out / 'trials.csv'}"
            if study.trials
            else f"study {search.study_name!r} has no trials"
        )
    rec = apply_params(search.recipe, search.params, best.params)
    best_run = search.out / "best"
    done = _finished_best(best_run, search, best)
    if done is None:
        done = _make_best_run(search, rec, best, best_run)
    test_metrics, retrained = done

    header = (
        f"# best of {len(finished(study))} trials of study {search.study_name!r} (toolkit tune):\n"
        f"# trial {best.number}, {search.metric_key} = {best.value:.6g}"
        f" (test {search.metric} = {test_metrics.get(search.metric, float('nan')):.6g})\n"
        f"# reproduce: toolkit train {search.out / 'best.yaml'}\n"
    )
    write_text(search.out / "best.yaml", header + rec.to_yaml())
    rows = report.trial_rows(study, search)
    files = report.write_reports(study, search, rows)
    files.update(best_yaml=str(search.out / "best.yaml"), best_run=str(best_run))
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["state"]] = counts.get(row["state"], 0) + 1
    result = TuneResult(
        out=search.out,
        study_name=search.study_name,
        storage=_redact(search.storage),
        metric=search.metric_key,
        direction=search.direction,
        rows=rows,
        best={
            "number": best.number,
            "value": best.value,
            "params": {p.key: decode(p, best.params[p.key]) for p in search.params},
            "retrained": retrained,
        },
        test_metrics=test_metrics,
        files=files,
        counts=counts,
    )
    write_json(search.out / "tune.json", {k: v for k, v in result.to_dict().items() if k != "trials"})
    if search.track_parent:
        from toolkit.tune.tracked import finish_study_run

        finish_study_run(search, result)
    return result


def _finished_best(best_run: Path, search: Search, best: Any) -> tuple[dict[str, Any], bool] | None:
    """The test metrics of OUT/best when it already holds this study's best trial (a rerun of a finished
    search does not score the test split again)."""
    try:
        metrics = json.loads((best_run / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    tag = metrics.get("tune", {})
    if tag.get("study") != search.study_name or tag.get("trial") != best.number:
        return None
    test = {k: v for k, v in metrics.items() if k not in BEST_RUN_KEYS}
    return test, bool(tag.get("retrained"))


BEST_RUN_KEYS = {"best_epoch", "epochs_run", "stopped_early", "main_metric", "recipe", "data", "samples",
                 "device", "tune"}  # fmt: skip


def _make_best_run(search: Search, rec: Recipe, best: Any, best_run: Path) -> tuple[dict[str, Any], bool]:
    """OUT/best: the best trial's run directory, scored on the test split (the only time it is read)."""
    from toolkit.train import evaluate_run

    trial_dir = Path(best.user_attrs.get("run_dir", search.trial_dir(best.number)))
    retrained = not (trial_dir / "best.pt").is_file()
    if retrained:  # the best trial ran on another machine (shared storage): train its recipe here
        trial_dir = search.trial_dir(best.number)
        train_trial(rec, trial_dir, Objective(search)._splits(rec))
    search.out.mkdir(parents=True, exist_ok=True)
    staging = search.out / ".best.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(trial_dir, staging, ignore=shutil.ignore_patterns("last.pt", "trial.json"))
    write_text(
        staging / "recipe.yaml", f"# resolved recipe of the best trial (toolkit tune)\n{rec.to_yaml()}"
    )
    test_metrics = evaluate_run(staging, plots=True)["metrics"]  # the one read of the test split
    trial_info = json.loads((trial_dir / "trial.json").read_text())
    metrics = _best_metrics(search, rec, staging, trial_info, test_metrics, best)
    metrics["tune"]["retrained"] = retrained
    write_json(staging / "metrics.json", metrics)
    _plot_curves(staging, rec)
    shutil.rmtree(best_run, ignore_errors=True)
    os.replace(staging, best_run)  # appears whole or not at all
    return test_metrics, retrained


def _best_metrics(search, rec, run_dir, trial_info, test_metrics, best) -> dict[str, Any]:
    from toolkit.metrics import MAIN_METRIC

    data = json.loads((run_dir / "data.json").read_text())
    return {
        **test_metrics,
        "best_epoch": trial_info["best_epoch"],
        "epochs_run": trial_info["epochs_run"],
        "stopped_early": trial_info["stopped_early"],
        "main_metric": MAIN_METRIC[rec.task][0],
        "recipe": rec.name,
        "data": rec.data.source,
        "samples": data.get("samples"),
        "device": trial_info["device"],
        "tune": {"study": search.study_name, "trial": best.number, search.metric_key: best.value},
    }


def _plot_curves(run_dir: Path, rec: Recipe) -> None:
    import csv

    from toolkit.metrics import MAIN_METRIC
    from toolkit.train.plots import plot_curves

    with open(run_dir / "metrics.csv") as f:
        history = [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]
    if history:
        plot_curves(history, MAIN_METRIC[rec.task][0], run_dir / "curves.png")


def _redact(url: str) -> str:
    """A URL as shown to users: without its password."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}" if ":" in creds else url
    return url
