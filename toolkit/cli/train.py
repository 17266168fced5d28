"""`toolkit train` and `toolkit eval`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from toolkit.cli._common import console, err_console, handle_errors, print_json, track_overrides


class RichProgress:
    """Adapter between the trainer's progress hooks and a rich progress bar (epochs, loss, val metric)."""

    def __init__(self, main_metric: str) -> None:
        self.metric = main_metric
        self.bar = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[loss]}  val {task.fields[metric]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.task_id: Any = None
        self.steps = 1
        self.started = False

    def start(self, epochs: int, done: int, steps_per_epoch: int) -> None:
        self.steps = max(steps_per_epoch, 1)
        self.bar.start()
        self.started = True
        self.task_id = self.bar.add_task(
            "train", total=epochs, completed=done, epoch=f"{done}/{epochs}", loss="-", metric="-"
        )

    def advance(self, n: float) -> None:
        self.bar.advance(self.task_id, n / self.steps)

    def update(self, epoch: int, row: dict[str, float]) -> None:
        total = self.bar.tasks[0].total
        metric = row.get(f"val_{self.metric}")
        losses = "  ".join(f"{k[6:]} {v:.4f}" for k, v in row.items() if k.startswith("train_"))  # GAN: two
        self.bar.update(
            self.task_id,
            completed=epoch,
            epoch=f"{epoch}/{int(total)}",
            loss=losses,
            metric=f"{self.metric}={metric:.4f}" if metric is not None else "-",
        )

    def stop(self) -> None:
        if self.started:
            self.bar.stop()
            self.started = False


@handle_errors
def train(
    recipe: Annotated[
        str | None, typer.Argument(help="Recipe name (see `toolkit recipes`), architecture or YAML path.")
    ] = None,
    data: Annotated[
        str | None, typer.Option(help="builtin:NAME, a .csv file, an image folder or an .npz file.")
    ] = None,
    target: Annotated[
        str | None, typer.Option(help="CSV target: label, value or series column (default: the last column).")
    ] = None,
    text_column: Annotated[
        str | None, typer.Option(help="Text CSV: the column holding the text (data.text_column).")
    ] = None,
    time_column: Annotated[
        str | None, typer.Option(help="Series CSV: optional time column for plot labels (data.time_column).")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Maximum epochs (train.epochs).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Mini-batch size (train.batch_size).")] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate (train.lr).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for split, init, shuffling (train.seed).")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda (train.device).")] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override any recipe key: --set train.lr=3e-4 (repeatable)."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Run directory (default runs/NAME, -2, -3... when taken).")
    ] = None,
    resume: Annotated[
        Path | None, typer.Option(help="Continue an interrupted run in this directory.")
    ] = None,
    track: Annotated[
        list[str] | None,
        typer.Option(
            "--track",
            help="Track the run in mlflow or tensorboard (repeatable; train.track). MLflow uses "
            "MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here; TensorBoard writes RUN_DIR/tensorboard.",
        ),
    ] = None,
    init_from: Annotated[
        Path | None,
        typer.Option(
            help="Start from this run's weights, all but the head (model.init_from), e.g. a pretraining run."
        ),
    ] = None,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="No progress bar (logs, CI).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the final metrics as JSON.")] = False,
    nproc: Annotated[
        int,
        typer.Option(
            min=1,
            help="Data-parallel processes on this machine (torchrun's engine; train.batch_size stays the "
            "global batch). See docs/distributed.md.",
        ),
    ] = 1,
    max_restarts: Annotated[
        int, typer.Option(min=0, help="With --nproc: restart the process group this often after a failure.")
    ] = 0,
    nnodes: Annotated[
        int, typer.Option(min=1, help="Machines taking part (run the same command on each one).")
    ] = 1,
    rdzv_endpoint: Annotated[
        str | None,
        typer.Option(help="HOST:PORT where the nodes meet (c10d rendezvous; needed with --nnodes > 1)."),
    ] = None,
    rdzv_timeout: Annotated[
        int, typer.Option(min=1, help="Seconds to wait for all nodes to join the rendezvous.")
    ] = 60,
) -> None:
    """Train a recipe on data; writes a run directory with checkpoints, metrics and curves.

    With --nproc N (and --nnodes, --rdzv-endpoint across machines) the run trains data-parallel in N
    processes per machine, started through torch.distributed.run (torchrun)."""
    from toolkit.metrics import MAIN_METRIC
    from toolkit.train import resolve_recipe
    from toolkit.train import train as train_api

    overrides = list(set_ or [])
    overrides += track_overrides(track)
    for key, value in (("text_column", text_column), ("time_column", time_column)):
        if value is not None:
            overrides.append(f"data.{key}={json.dumps(value)}")  # a JSON string is a valid YAML scalar
    for key, value in (
        ("epochs", epochs),
        ("batch_size", batch_size),
        ("lr", lr),
        ("seed", seed),
        ("device", device),
    ):
        if value is not None:
            overrides.append(f"train.{key}={value}")
    if init_from is not None:  # stored absolute, so --resume and eval work from any directory
        overrides.append(f"model.init_from={json.dumps(str(init_from.resolve()))}")
    if nproc > 1 or nnodes > 1:
        launch_opts = (nproc, max_restarts, nnodes, rdzv_endpoint, rdzv_timeout)
        _train_processes(recipe, data, target, overrides, out, resume, launch_opts, no_progress, as_json)
        return
    if resume is None:
        rec = resolve_recipe(recipe, data, target, overrides) if recipe else None
    else:
        from toolkit.recipe import load_recipe

        rec = load_recipe(resume / "recipe.yaml") if (resume / "recipe.yaml").is_file() else None
    if rec is not None and rec.train.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            err_console.print("[yellow]warning:[/] CUDA requested but not available; training on CPU")
    main_rank = os.environ.get("RANK", "0") == "0"  # under torchrun only rank 0 shows progress and prints
    progress = (
        RichProgress(MAIN_METRIC[rec.task][0])
        if (rec is not None and not no_progress and not as_json and main_rank)
        else None
    )
    try:
        result = train_api(
            rec if resume is None else None,
            out=out,
            resume=resume,
            progress=progress,
        )
    except KeyboardInterrupt:
        if progress is not None:
            progress.stop()
        where = resume or out or "the run directory"
        err_console.print(f"interrupted; continue with: toolkit train --resume {where}")
        raise typer.Exit(130) from None
    finally:
        if progress is not None:
            progress.stop()
    if not main_rank:
        return
    if as_json:
        print_json({"run_dir": str(result.run_dir), **result.metrics})
        return
    _summary(result)


def _train_processes(recipe, data, target, overrides, out, resume, opts, no_progress, as_json) -> None:
    """--nproc / --nnodes: write the run's recipe, then torchrun trains it (rank 0 prints the summary)."""
    from toolkit.errors import ToolkitError
    from toolkit.train.launch import cpu_warning, launch, prepare_run, torchrun_args

    nproc, max_restarts, nnodes, endpoint, timeout = opts
    if nnodes > 1 and not endpoint:
        raise ToolkitError("--nnodes > 1 needs --rdzv-endpoint HOST:PORT (where the nodes meet)")
    warning = cpu_warning(nproc)
    if warning:
        err_console.print(f"[yellow]warning:[/] {warning}")
    run_dir = prepare_run(recipe, data, target, overrides, out, resume)
    child = tuple(flag for flag, on in (("--no-progress", no_progress), ("--json", as_json)) if on)
    launch(torchrun_args(run_dir, nproc, max_restarts, nnodes, endpoint, timeout, child))


def _summary(result: Any) -> None:
    m = result.metrics
    scored = f"{m['samples']['test']} test samples"
    if result.recipe.task == "generate":  # judged on what it generates, not on a test split
        scored = "generated samples"
    console.print(f"[bold]test metrics[/] · {m['recipe']} on {m['data']} · {scored}")
    table = Table()
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in m.items():
        if isinstance(value, float) and key not in ("best_epoch",):
            table.add_row(key, f"{value:.4f}")
    console.print(table)
    stop = "early stop" if m["stopped_early"] else "all epochs"
    console.print(
        f"best epoch {m['best_epoch']} of {m['epochs_run']} ({stop}) on {m['device']} · run: [bold]{result.run_dir}[/]"
    )


@handle_errors
def eval_run(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by `toolkit train`.")],
    data: Annotated[
        str | None, typer.Option(help="Score all of this data source instead of the run's test split.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print metrics (and the confusion matrix) as JSON.")
    ] = False,
) -> None:
    """Recompute test metrics from the best checkpoint; confusion matrix and confusion.png for classifiers."""
    from toolkit.train import evaluate_run

    result = evaluate_run(run_dir, data)
    if as_json:
        print_json(result)
        return
    console.print(f"[bold]test metrics[/] · {run_dir} on {result['source']} · {result['samples']} samples")
    table = Table()
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in result["metrics"].items():
        table.add_row(k, f"{v:.4f}")
    console.print(table)
    if "confusion" in result:
        labels = result["labels"]
        cm = Table(title="confusion matrix (rows: true, columns: predicted)")
        cm.add_column("")
        for lab in labels:
            cm.add_column(lab[:10], justify="right")
        for lab, row in zip(labels, result["confusion"]):
            cm.add_row(
                lab[:10],
                *[
                    f"[bold]{v}[/]" if i == labels.index(lab) else (str(v) if v else "·")
                    for i, v in enumerate(row)
                ],
            )
        console.print(cm)
    for path in ([result["plot"]] if "plot" in result else []) + result.get("plots", []):
        console.print(f"wrote {path}")
