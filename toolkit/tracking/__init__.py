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

import importlib.util
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from toolkit.errors import ToolkitError

KINDS = ("mlflow", "tensorboard")
# what each kind imports, and the extra that installs it
NEEDS = {"mlflow": ("mlflow", "mlflow"), "tensorboard": ("tensorboard", "tensorboard")}
DEFAULT_MLFLOW_URI = "sqlite:///mlflow.db"
ARTIFACTS = ("metrics.json", "metrics.csv", "recipe.yaml", "data.json", "best.yaml", "study.csv")


class Backend(Protocol):
    def epoch(self, step: int, row: dict[str, float]) -> None: ...

    def finish(self, metrics: dict[str, Any], run_dir: Path) -> None: ...

    def fail(self, status: str = "FAILED") -> None: ...

    def where(self) -> dict[str, Any]: ...


def check_kinds(kinds: Iterable[str] | str | None) -> list[str]:
    """The requested trackers, in order and without repeats; one-line errors for unknown or missing ones."""
    if kinds is None:
        return []
    if isinstance(kinds, str):
        kinds = [kinds]
    names: list[str] = []
    for raw in kinds:
        for kind in str(raw).split(","):
            kind = kind.strip().lower()
            if kind in ("", "none"):
                continue
            if kind not in KINDS:
                raise ToolkitError(f"unknown tracker {kind!r}: use {' or '.join(KINDS)} (or none)")
            if kind not in names:
                names.append(kind)
    for kind in names:
        module, extra = NEEDS[kind]
        if importlib.util.find_spec(module) is None:
            raise ToolkitError(
                f"--track {kind} needs the {module} package: pip install 'toolkit[{extra}]' (or pip install {module})"
            )
    return names


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """A nested recipe mapping as dotted keys (train.lr, model.hidden), the form trackers take params in."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        flat.update(flatten(value, name) if isinstance(value, dict) else {name: value})
    return flat


def numeric(row: dict[str, Any]) -> dict[str, float]:
    """The numeric, finite-or-not entries of a metrics row (trackers log numbers only)."""
    return {k: float(v) for k, v in row.items() if isinstance(v, int | float) and not isinstance(v, bool)}


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
