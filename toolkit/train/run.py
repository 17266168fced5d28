"""Training API: `train(...)` runs a recipe into a run directory; `evaluate_run(...)` re-scores it.

The CLI commands `toolkit train` and `toolkit eval` are thin wrappers over these two functions (also
importable from toolkit.train).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolkit.errors import ToolkitError
from toolkit.io import write_json, write_text
from toolkit.recipe import Recipe, apply_override, load_recipe, recipe_from_dict
from toolkit.train.registry import make_task

RUNS_ROOT = Path("runs")


@dataclass
class TrainResult:
    run_dir: Path
    metrics: dict[str, Any]  # what metrics.json holds
    history: list[dict[str, float]]
    recipe: Recipe


def next_run_dir(name: str, root: Path = RUNS_ROOT) -> Path:
    """runs/NAME, or runs/NAME-2, -3, ... when it is taken."""
    candidate, i = root / name, 2
    while candidate.exists():
        candidate, i = root / f"{name}-{i}", i + 1
    return candidate


def resolve_recipe(
    recipe: str | Path | Recipe,
    data: str | None = None,
    target: str | None = None,
    overrides: list[str] | tuple[str, ...] = (),
) -> Recipe:
    """Load a recipe by name or path and apply --data/--target and --set overrides (in that order); its
    `search:` section, kept raw by the recipe, is checked here too."""
    from toolkit.tune.space import parse_space

    if isinstance(recipe, Recipe):
        raw = recipe.to_dict()
        for item in _data_overrides(data, target) + list(overrides):
            apply_override(raw, item)
        rec = recipe_from_dict(raw)
    else:
        rec = load_recipe(recipe, _data_overrides(data, target) + list(overrides))
    parse_space(rec.to_dict(), rec.search)  # a broken `search:` section fails now, not in a later tune
    return rec


def _data_overrides(data: str | None, target: str | None) -> list[str]:
    items = []
    if data:
        # A relative path is stored absolute, so `--resume` and `eval` work from any directory.
        src = data if data.startswith("builtin:") else os.path.abspath(data)
        items.append(f"data.source={_yaml_str(src)}")
    if target:
        items.append(f"data.target={_yaml_str(target)}")
    return items


def _yaml_str(s: str) -> str:
    import json

    return json.dumps(s)  # a JSON string is a valid YAML scalar, whatever characters it holds


def train(
    recipe: str | Path | Recipe | None = None,
    data: str | None = None,
    target: str | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    out: str | Path | None = None,
    resume: str | Path | None = None,
    progress: Any = None,
    callbacks: list | None = None,
    track: list[str] | None = None,
    track_parent: dict[str, str] | None = None,
) -> TrainResult:
    """Train a recipe; returns the run directory and final test metrics.

    `resume=RUN_DIR` continues an interrupted run with its saved recipe (other arguments must be empty).
    `track` (default: the recipe's train.track) sends params, per-epoch metrics and artifacts to MLflow
    and/or TensorBoard (toolkit.tracking); `track_parent` nests the MLflow run (a tune trial).
    """
    from toolkit.train import distributed

    args = (recipe, data, target, overrides, out, resume)
    if not distributed.launched():
        return _train_run(*resolve_run(*args), progress, callbacks, track, track_parent)
    # Started by torchrun: join the group, then rank 0 decides the run (its file system holds it; after an
    # elastic restart the run continues from its last.pt) and every rank follows.
    distributed.init(_device_hint(recipe, overrides, resume))
    try:
        resolved = distributed.agree(lambda: resolve_run(*args, restarted=distributed.restarted()))
        return _train_run(*resolved, progress, callbacks, track, track_parent)
    finally:
        distributed.shutdown()


def _device_hint(recipe: Any, overrides: Any, resume: Any) -> str:
    """The recipe's train.device, read before the process group exists (auto when it cannot be read)."""
    try:
        if isinstance(recipe, Recipe):
            return recipe.train.device
        return load_recipe(Path(resume) / "recipe.yaml" if resume else recipe, list(overrides)).train.device
    except Exception:  # the real error is raised on rank 0 once the group exists
        return "auto"


def resolve_run(recipe, data, target, overrides, out, resume, restarted: bool = False) -> tuple:
    """(recipe, run directory, resuming?) from train()'s arguments; with `restarted` (torchrun restarted
    the worker group) a run that already has last.pt continues from it."""
    if resume is not None:
        run_dir = Path(resume)
        if recipe is not None or data or target or overrides or out:
            raise ToolkitError(
                "--resume continues a run with its saved recipe; drop the recipe, --data and --set"
            )
        if not (run_dir / "recipe.yaml").is_file():
            raise ToolkitError(f"cannot resume {run_dir}: no recipe.yaml there (not a run directory)")
        return load_recipe(run_dir / "recipe.yaml"), run_dir, True
    if recipe is None:
        raise ToolkitError("give a recipe (see `toolkit recipes`) or --resume RUN_DIR")
    rec = resolve_recipe(recipe, data, target, overrides)
    run_dir = Path(out) if out is not None else next_run_dir(rec.name)
    if (run_dir / "last.pt").exists():
        if restarted:
            return rec, run_dir, True
        raise ToolkitError(f"{run_dir} already holds a run; use --resume {run_dir} or another --out")
    return rec, run_dir, False


def _train_run(
    rec: Recipe, run_dir: Path, resuming: bool, progress: Any, callbacks: list | None, track, track_parent
) -> TrainResult:
    """Load the data, fit, and write the run directory (rank 0 only when distributed; it alone tracks)."""
    from toolkit import tracking
    from toolkit.data import load_splits
    from toolkit.models import model_entry
    from toolkit.train import distributed
    from toolkit.train.loop import fit

    if track is not None:  # kept in the recipe: --resume tracks the rest of the run the same way
        rec.train.track = tracking.check_kinds(track)
    # Data first: a bad source fails before anything is written, so no half-made run directory remains.
    splits = load_splits(
        rec.data, rec.task, model_entry(rec.arch).input_kind(rec.task, rec.model), rec.train.seed
    )
    main = distributed.is_main()
    if main and not resuming:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text(run_dir / "recipe.yaml", f"# resolved recipe of this run (toolkit train)\n{rec.to_yaml()}")
    if main:
        write_json(run_dir / "data.json", {**splits.spec, "samples": _samples(splits)})
    kinds = rec.train.track if main else []
    tracker = tracking.for_run(kinds, run_dir, rec, resume=resuming, parent=track_parent)
    try:
        result = fit(
            rec,
            splits,
            run_dir,
            resume=resuming,
            progress=progress,
            callbacks=[tracker.epoch, *(callbacks or [])],
        )
        metrics = _final_metrics(rec, splits, result, run_dir, write=main)
    except BaseException as exc:
        tracker.fail("KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        raise
    tracker.finish(metrics, run_dir)
    return TrainResult(run_dir, metrics, result.history, rec)


def _samples(splits: Any) -> dict[str, int]:
    return {"train": len(splits.x_train), "val": len(splits.x_val), "test": len(splits.x_test)}


def _final_metrics(
    rec: Recipe, splits: Any, result: Any, run_dir: Path, write: bool = True
) -> dict[str, Any]:
    """metrics.json (test metrics, epochs, baselines) and curves.png of a finished fit (`write`: rank 0)."""
    from toolkit.train import distributed
    from toolkit.train.plots import plot_curves
    from toolkit.train.tasks import baseline_metrics

    if "init_from" in splits.spec:  # recorded while the model was built (model.init_from)
        samples = {"train": len(splits.x_train), "val": len(splits.x_val), "test": len(splits.x_test)}
        write_json(run_dir / "data.json", {**splits.spec, "samples": samples})
    task = make_task(rec, splits.spec)
    metrics = {
        **result.test_metrics,
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "stopped_early": result.stopped_early,
        "main_metric": task.main_metric,
        "recipe": rec.name,
        "data": rec.data.source,
        "samples": _samples(splits),
        "device": result.device,
    }
    if distributed.world_size() > 1:
        metrics["processes"] = distributed.world_size()
    metrics.update(baseline_metrics(splits, metrics))
    if write:
        write_json(run_dir / "metrics.json", metrics)
        if result.history:
            plot_curves(result.history, task.main_metric, run_dir / "curves.png")
    return metrics


def evaluate_run(run_dir: str | Path, data: str | None = None, plots: bool = True) -> dict[str, Any]:
    """Recompute test metrics from RUN_DIR/best.pt. With `data`, score all of that source instead
    (preprocessed with the run's recorded statistics and label names). The task adds its report: the
    confusion matrix (confusion.png) for classifiers, forecast.png and the baselines for forecasters, the
    score histogram for anomaly detectors, judged samples for a GAN (Task.evaluate_run)."""
    from toolkit.train.checkpoint import load_checkpoint

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ToolkitError(f"run directory not found: {run_dir}")
    ckpt = load_checkpoint(run_dir / "best.pt")
    task = make_task(recipe_from_dict(ckpt["recipe"]), ckpt["spec"], run_dir)
    return task.evaluate_run(run_dir, ckpt, data, plots)
