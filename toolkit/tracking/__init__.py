"""Experiment tracking: a run's parameters, per-epoch metrics and artifacts sent to MLflow or TensorBoard.

`toolkit train/tune/federate --track mlflow|tensorboard` (or the recipe key `train.track`) opens a
`Tracker` for the run directory; the trainer calls `epoch(n, row)` after every epoch and `finish(metrics)`
at the end. MLflow writes to the user's MLFLOW_TRACKING_URI, or to a local SQLite store (`sqlite:///mlflow.db`
in the working directory: a real database, no server); TensorBoard writes event files into RUN_DIR/tensorboard.
Both are optional extras (`toolkit[mlflow]`, `toolkit[tensorboard]`); a missing one is named in a one-line
error before anything is trained. `toolkit.tracking.registry` registers exported models in MLflow's model
registry and imports no torch (quantize is on the runtime side).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from toolkit.tracking.common import KINDS, Backend, check_kinds, flatten, numeric

__all__ = ["KINDS", "Backend", "Tracker", "check_kinds", "flatten", "for_run", "numeric", "start"]


class Tracker:
    """The trackers of one run (possibly none): every call goes to each backend."""

    def __init__(self, backends: list[Backend]) -> None:
        self.backends = backends

    def epoch(self, step: int, row: dict[str, float]) -> None:
        for backend in self.backends:
            backend.epoch(step, row)

    def finish(self, metrics: dict[str, Any], run_dir: Path) -> None:
        for backend in self.backends:
            backend.finish(metrics, run_dir)

    def fail(self, status: str = "FAILED") -> None:
        """The run ended without finishing: FAILED, or KILLED (a pruned tune trial, Ctrl-C)."""
        for backend in self.backends:
            backend.fail(status)

    def __bool__(self) -> bool:
        return bool(self.backends)


def start(
    kinds: Iterable[str] | str | None,
    run_dir: Path,
    params: dict[str, Any],
    *,
    experiment: str,
    run_name: str | None = None,
    parent: dict[str, str] | None = None,
    tags: dict[str, str] | None = None,
    resume_id: str | None = None,
) -> Tracker:
    """Open the trackers `kinds` for the run in `run_dir` (params: a nested mapping, flattened here).

    `parent` ({"mlflow": RUN_ID}) makes the MLflow run a child (a tune trial under its study)."""
    backends: list[Backend] = []
    for kind in check_kinds(kinds):
        if kind == "mlflow":
            from toolkit.tracking.mlflow_backend import MlflowRun

            backends.append(
                MlflowRun(
                    experiment, run_name or run_dir.name, flatten(params), run_dir, parent, tags, resume_id
                )
            )
        else:
            from toolkit.tracking.tensorboard_backend import TensorboardRun

            backends.append(TensorboardRun(run_dir, flatten(params)))
    return Tracker(backends)


def for_run(
    kinds: Iterable[str] | str | None,
    run_dir: Path,
    recipe: Any,
    *,
    resume: bool = False,
    parent: dict[str, str] | None = None,
    experiment: str | None = None,
) -> Tracker:
    """The trackers of a training run: experiment = the recipe's name, params = the resolved recipe.

    Writes RUN_DIR/tracking.json (which MLflow run, which TensorBoard folder) so that `--resume` continues
    the same MLflow run and `export --register` links the model to it."""
    import json

    from toolkit.io import write_json

    names = check_kinds(kinds)
    if not names:
        return Tracker([])
    record = Path(run_dir) / "tracking.json"
    previous = json.loads(record.read_text()) if resume and record.is_file() else {}
    tracker = start(
        names,
        Path(run_dir),
        recipe.to_dict(),
        experiment=experiment or recipe.name,
        parent=parent,
        tags={"toolkit.recipe": recipe.name, "toolkit.task": recipe.task},
        resume_id=(previous.get("mlflow") or {}).get("run_id"),
    )
    write_json(record, describe(tracker))
    return tracker


def describe(tracker: Tracker) -> dict[str, Any]:
    """Where a run's tracking went: {"mlflow": {"uri", "experiment_id", "run_id"}, "tensorboard": "tensorboard"}."""
    out: dict[str, Any] = {}
    for backend in tracker.backends:
        out.update(backend.where())
    return out
