"""A tune study as an MLflow run: its trials are child runs (nested in MLflow's UI), the study's run holds
the search settings, the best trial's value and test metrics, and the reports (best.yaml, trials.csv, plots).

The study's run id is kept in OUT/tracking.json, so rerunning an interrupted search continues the same run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from toolkit.io import write_json

REPORTS = ("best.yaml", "trials.csv", "tune.json", "history.png", "importance.png")


def start_study_run(search: Any) -> dict[str, str] | None:
    """Open (or reopen) the study's MLflow run; {"mlflow": run_id} for the trials, None without MLflow."""
    if "mlflow" not in search.track:
        return None
    from toolkit.tracking.mlflow_backend import MlflowRun

    record = Path(search.out) / "tracking.json"
    previous = json.loads(record.read_text()).get("mlflow", {}) if record.is_file() else {}
    params = {
        "study": search.study_name,
        "metric": search.metric_key,
        "direction": search.direction,
        "sampler": search.sampler,
        "pruner": search.pruner,
        "trials": search.trials,
        **{f"space.{p.key}": p.describe() for p in search.params},
    }
    run = MlflowRun(
        search.recipe.name,
        f"tune {search.study_name}",
        params,
        Path(search.out),
        tags={"toolkit.study": search.study_name},
        resume_id=previous.get("run_id"),
    )
    write_json(record, run.where())
    return {"mlflow": run.run_id}


def finish_study_run(search: Any, result: Any) -> None:
    """The best trial's value and test metrics, the trial counts and the study's reports on its run."""
    from toolkit.tracking.mlflow_backend import MlflowRun

    run = MlflowRun.attach(search.track_parent["mlflow"])
    values = {f"best_{search.metric_key}": result.best["value"], "best_trial": result.best["number"]}
    values.update({f"test_{k}": v for k, v in result.test_metrics.items()})
    values.update({f"trials_{state}": n for state, n in result.counts.items()})
    for key, value in result.best["params"].items():  # tags: a rerun may find another best
        run.client.set_tag(run.run_id, f"best.{key}", str(value))
    run.epoch(0, values)
    for name in REPORTS:
        if (Path(search.out) / name).is_file():
            run.client.log_artifact(run.run_id, str(Path(search.out) / name))
    run.client.set_terminated(run.run_id, "FINISHED")
