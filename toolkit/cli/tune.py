"""`toolkit tune`: hyperparameter search over a recipe's `search:` space (Optuna)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from toolkit.cli._common import console, err_console, handle_errors, print_json


class TuneProgress:
    """Two bars: finished trials of the study (with the best value so far) and the epochs of the current
    trial (with its latest validation value). With --jobs N only the first: trials run in other processes."""

    def __init__(self) -> None:
        self.bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            console=console,
        )
        self.trials: Any = None
        self.epochs: Any = None
        self.metric = ""

    def start(self, search: Any, study: Any) -> None:
        from toolkit.tune.search import best_trial, finished

        self.metric = search.metric_key
        self.search = search
        self.bar.start()
        self.trials = self.bar.add_task(
            "trials", total=search.trials, completed=min(len(finished(study)), search.trials), info=""
        )
        self._best(best_trial(study))

    def _best(self, best: Any) -> None:
        info = f"best {self.metric}={best.value:.4f} (#{best.number})" if best is not None else "best -"
        self.bar.update(self.trials, info=info)

    def trial_start(self, number: int, values: dict[str, Any], epochs: int) -> None:
        if self.epochs is None:
            self.epochs = self.bar.add_task("", total=epochs, info="")
        self.bar.update(self.epochs, description=f"trial #{number}", total=epochs, completed=0, info="")

    def epoch(self, number: int, epoch: int, value: float) -> None:
        self.bar.update(self.epochs, completed=epoch, info=f"{self.metric}={value:.4f}")

    def trial_end(self, study: Any, trial: Any) -> None:
        from toolkit.tune.search import best_trial, finished

        self.bar.update(self.trials, completed=min(len(finished(study)), self.search.trials))
        self._best(best_trial(study))

    def stop(self) -> None:
        self.bar.stop()


@handle_errors
def tune(
    recipe: Annotated[
        str, typer.Argument(help="Recipe name (see `toolkit recipes`), architecture or YAML path.")
    ],
    data: Annotated[
        str | None, typer.Option(help="builtin:NAME, a .csv file, an image folder or an .npz file.")
    ] = None,
    target: Annotated[str | None, typer.Option(help="CSV target column (default: the last column).")] = None,
    trials: Annotated[
        int, typer.Option(help="Finished trials the study should hold (a rerun continues up to this).")
    ] = 20,
    timeout: Annotated[
        float | None, typer.Option(help="Stop starting trials after this many seconds.")
    ] = None,
    sampler: Annotated[str, typer.Option(help="tpe (Bayesian, default), random or grid.")] = "tpe",
    pruner: Annotated[
        str,
        typer.Option(help="Stop weak trials on the per-epoch validation metric: median, halving or none."),
    ] = "median",
    space: Annotated[
        Path | None, typer.Option(help="YAML search space replacing the recipe's search: section.")
    ] = None,
    metric: Annotated[
        str | None, typer.Option(help="Validation metric to optimize (default: the task's main metric).")
    ] = None,
    direction: Annotated[str | None, typer.Option(help="max or min (default: from the metric).")] = None,
    storage: Annotated[
        str | None,
        typer.Option(help="Optuna database URL (default sqlite:///OUT/study.db); postgresql://... to share."),
    ] = None,
    study: Annotated[
        str | None, typer.Option(help="Study name in the storage (default: the recipe name).")
    ] = None,
    jobs: Annotated[int, typer.Option(help="Trials run in parallel (worker processes).")] = 1,
    track: Annotated[
        list[str] | None,
        typer.Option(
            "--track",
            help="Track the study in mlflow (a run, its trials as child runs) and/or tensorboard (each "
            "trial's folder); repeatable. Default: the recipe's train.track.",
        ),
    ] = None,
    heartbeat_interval: Annotated[
        float, typer.Option(help="Seconds between a running trial's heartbeats in the storage.")
    ] = 30.0,
    heartbeat_grace: Annotated[
        float,
        typer.Option(help="Seconds without a heartbeat after which a trial counts as dead: failed, retried."),
    ] = 120.0,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Fix a recipe key for every trial: --set train.epochs=20 (repeatable)."),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Output directory (default runs/tune-RECIPE).")] = None,
    no_progress: Annotated[
        bool, typer.Option("--no-progress", help="No progress display (logs, CI).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Search hyperparameters on the validation split; the best trial is scored on the test split once.

    Writes OUT/best.yaml (train it with `toolkit train OUT/best.yaml`), OUT/best/ (a run directory for
    `toolkit export`), trials.csv, history.png, importance.png and the study database. Rerunning the same
    command continues an interrupted search.
    """
    from toolkit.tune.search import finish, finished, open_study, prepare, run_search

    search = prepare(
        recipe, data, target, list(set_ or []), space, trials, timeout, sampler, pruner, metric, direction,
        storage, study, jobs, out, track, heartbeat=(heartbeat_interval, heartbeat_grace),
    )  # fmt: skip
    progress = None if (no_progress or as_json) else TuneProgress()
    try:
        run_search(search, progress)
    except KeyboardInterrupt:
        done = len(finished(open_study(search)))
        err_console.print(
            f"interrupted after {done} finished trials; rerun the same command to continue "
            f"(study {search.study_name!r} in {search.out / 'study.db' if not storage else 'the --storage'})"
        )
        raise typer.Exit(130) from None
    result = finish(search)
    if as_json:
        print_json(result.to_dict())
        return
    _summary(result)


def _summary(result: Any) -> None:
    rows = result.rows
    shown = rows
    if len(rows) > 25:  # a long study: the best 20 by value
        ranked = [r for r in rows if r["value"] is not None and r["state"] == "complete"]
        ranked.sort(key=lambda r: r["value"], reverse=result.direction == "maximize")
        shown = sorted(ranked[:20], key=lambda r: r["number"])
    counts = ", ".join(f"{n} {state}" for state, n in sorted(result.counts.items()))
    table = Table(
        title=f"study {result.study_name} · {len(rows)} trials ({counts})",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    for name in ("#", "state", result.metric, "epochs", "s"):
        table.add_column(name, justify="left" if name == "state" else "right", no_wrap=True)
    table.add_column("params (last part of each key)")  # one wrapping column fits any terminal width
    keys = list(result.best["params"])
    for r in shown:
        best = r["number"] == result.best["number"]
        value = "-" if r["value"] is None else f"{r['value']:.4f}"
        cells = [
            str(r["number"]),
            {"complete": "done"}.get(r["state"], r["state"]),
            f"[bold green]{value}[/]" if best else value,
            str(r["epochs"] or "-"),
            f"{r['seconds']:.0f}" if r["seconds"] is not None else "-",
            " ".join(f"{k.rsplit('.', 1)[-1]}={_short(r['params'].get(k))}" for k in keys),
        ]
        table.add_row(*cells)
    console.print(table)
    test = ", ".join(f"{k} {v:.4f}" for k, v in result.test_metrics.items() if isinstance(v, float))
    console.print(
        f"best: trial #{result.best['number']} · {result.metric} {result.best['value']:.4f} · "
        f"test (scored once): {test}"
    )
    for label, key in (
        ("recipe", "best_yaml"),
        ("run", "best_run"),
        ("trials", "trials_csv"),
        ("history", "history"),
        ("importance", "importance"),
    ):
        if key in result.files:
            console.print(f"{label:>10}: {result.files[key]}")
    console.print(f"reproduce: toolkit train {result.files['best_yaml']}")


def _short(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, list):
        return "-".join(map(str, value))  # [32, 64] -> 32-64: narrow columns
    return str(value)
