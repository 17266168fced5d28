"""What the simulation and a deployment's server share: the resolved recipe and server data, the run
directory's first files and the ServerApp's job, following the run as it lands, and its result."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolkit.errors import ToolkitError

RoundHook = Callable[[int, Any], None]  # (round just finished, the Federation) -> None


@dataclass
class FederateResult:
    run_dir: Path
    metrics: dict[str, Any]  # what metrics.json holds
    history: list[dict[str, Any]]


def prepare(
    recipe: Any, data: str | None, target: str | None, overrides: list[str] | tuple[str, ...], out: Any
) -> tuple[Any, Any, Path]:
    """The resolved recipe (with a federate section), the server's splits and the run directory."""
    from toolkit.federate import adapter
    from toolkit.recipe import FederateConfig, recipe_from_dict

    rec = adapter.resolve_recipe(recipe, data, target, overrides)
    if rec.federate is None:
        rec = recipe_from_dict({**rec.to_dict(), "federate": FederateConfig().__dict__ | {"privacy": {}}})
    adapter.check_supported(rec)
    _check_flower()
    splits = adapter.load_splits(rec)  # a bad source fails here, before any process or file
    run_dir = Path(out) if out is not None else adapter.next_run_dir(f"{rec.name}-federated")
    if (run_dir / "last.pt").exists():
        raise ToolkitError(f"{run_dir} already holds a run; choose another --out")
    return rec, splits, run_dir


def federation_meta(rec: Any, clients: int, mode: str, shares: list[dict[str, Any]]) -> dict[str, Any]:
    """The `federated` block of metrics.json (and so of the exported model's metadata)."""
    from importlib.metadata import version

    fed = rec.federate
    meta: dict[str, Any] = {
        "engine": f"Flower {version('flwr')} deployment engine (SuperLink + one SuperNode per client)",
        "mode": mode,
        "strategy": fed.strategy,
        "clients": clients,
        "rounds": fed.rounds,
        "local_epochs": fed.local_epochs,
        "fraction_fit": fed.fraction_fit,
    }
    if mode == "simulation":
        meta["partition"] = "client files" if any("data" in s for s in shares) else fed.partition
    if fed.strategy == "fedprox":
        meta["proximal_mu"] = fed.proximal_mu
    if fed.strategy == "fedadam":
        meta["server_lr"] = fed.server_lr
    return meta


def write_start(
    run_dir: Path,
    rec: Any,
    splits: Any,
    tmp: Path,
    clients: int,
    meta: dict[str, Any],
    shares: list[dict[str, Any]],
    connect_timeout: float = 120.0,
) -> Path:
    """recipe.yaml and data.json in the run directory, and the ServerApp's job file; returns the job file."""
    from toolkit.io import write_json, write_text

    run_dir.mkdir(parents=True, exist_ok=True)
    write_text(run_dir / "recipe.yaml", f"# resolved recipe of this run (toolkit federate)\n{rec.to_yaml()}")
    samples = {"train": len(splits.x_train), "val": len(splits.x_val), "test": len(splits.x_test)}
    write_json(run_dir / "data.json", {**splits.spec, "samples": samples, "clients": shares})
    job = {
        "recipe": rec.to_dict(),
        "out": str(run_dir.resolve()),
        "clients": clients,
        "connect_timeout": connect_timeout,
        "meta": meta,
    }
    job_file = tmp / "job.json"
    job_file.write_text(json.dumps(job))
    return job_file


def watch(
    run_dir: Path, federation: Any, proc: Any, progress: Any, on_round: RoundHook | None, tracker: Any = None
) -> dict:
    """Wait for `flwr run` to finish, reporting rounds as metrics.csv grows; returns the ServerApp's status.
    `tracker` (toolkit.tracking.for_run) gets every round's row as it lands."""
    try:
        return _watch(run_dir, federation, proc, progress, on_round, tracker)
    except BaseException:
        if tracker is not None:
            tracker.fail()
        raise


def _watch(run_dir: Path, federation: Any, proc: Any, progress: Any, on_round: Any, tracker: Any) -> dict:
    import csv
    import time

    from toolkit.federate.server_app import STATUS_FILE

    seen = 0
    status_path = run_dir / STATUS_FILE
    if progress is not None and hasattr(progress, "start"):
        progress.start()
    while True:
        done = proc.poll() is not None
        rows = []
        if (run_dir / "metrics.csv").is_file():
            with open(run_dir / "metrics.csv", newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["round"]) > 0]
        for row in rows[seen:]:
            if tracker is not None:
                tracker.epoch(int(row["round"]), _floats(row))
            if progress is not None:
                progress.update(int(row["round"]), row)
            if on_round is not None:
                on_round(int(row["round"]), federation)
        seen = len(rows)
        if done:
            break
        time.sleep(0.5)
    if not status_path.is_file():
        raise ToolkitError(f"the federation ended without a result ({federation.log_tail('flwr-run', 3)})")
    status = json.loads(status_path.read_text())
    status_path.unlink()
    return status


def finish(run_dir: Path, status: dict[str, Any], tracker: Any = None) -> FederateResult:
    if status.get("state") != "done":
        if tracker is not None:
            tracker.fail()
        raise ToolkitError(status.get("error") or "the federated run failed")
    import csv

    with open(run_dir / "metrics.csv", newline="") as f:
        history = list(csv.DictReader(f))
    if tracker is not None:
        tracker.finish(status["metrics"], run_dir)
    return FederateResult(run_dir, status["metrics"], history)


def open_tracker(rec: Any, run_dir: Path) -> Any:
    """The run's trackers (train.track / --track): params, each round's metrics, the final report."""
    from toolkit import tracking

    return tracking.for_run(rec.train.track, run_dir, rec)


def _floats(row: dict[str, str]) -> dict[str, float]:
    """A metrics.csv row (strings) as numbers; empty cells dropped."""
    out = {}
    for key, value in row.items():
        try:
            out[key] = float(value)
        except (TypeError, ValueError):
            continue
    return out


def _check_flower() -> None:
    import importlib.util

    for module in ("flwr", "flwr_datasets"):
        if importlib.util.find_spec(module) is None:
            raise ToolkitError("federated training needs Flower: pip install 'toolkit[federate]'")
