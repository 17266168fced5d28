"""MLflow tracking for one run: params, per-epoch metrics, final metrics and the run directory's artifacts.

Through MlflowClient (no global active run, so a library caller's own MLflow run is left alone). The store is
MLFLOW_TRACKING_URI, or `sqlite:///mlflow.db` in the working directory. A tune trial is a child run of its
study's run (the `mlflow.parentRunId` tag, which MLflow's UI nests).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path
from typing import Any

from toolkit.errors import ToolkitError, one_line
from toolkit.tracking.common import ARTIFACTS, DEFAULT_MLFLOW_URI, numeric

BATCH = 100  # MLflow takes at most 100 params and 1,000 metrics per log_batch call


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_MLFLOW_URI


@contextlib.contextmanager
def quiet():
    """Alembic's schema migration and MLflow's own INFO lines stay out of the user's terminal."""
    loggers = [logging.getLogger(name) for name in ("alembic", "mlflow")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def client():
    from mlflow.tracking import MlflowClient

    uri = tracking_uri()
    try:
        with quiet():
            c = MlflowClient(tracking_uri=uri)
            c.search_experiments(max_results=1)  # opens (and for SQLite creates) the store now
    except Exception as exc:  # noqa: BLE001 - any failure to reach the store is the user's configuration
        raise ToolkitError(f"cannot open the MLflow tracking store {uri}: {one_line(exc)}") from None
    return c


def experiment_id(c: Any, name: str) -> str:
    """The experiment's id, created when new (two tune workers may race to create it: the loser reads it)."""
    found = c.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return c.create_experiment(name)
    except Exception:  # noqa: BLE001 - created meanwhile by another process
        found = c.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


class MlflowRun:
    """One MLflow run that mirrors a toolkit run directory."""

    def __init__(
        self,
        experiment: str,
        run_name: str,
        params: dict[str, Any],
        run_dir: Path,
        parent: dict[str, str] | None = None,
        tags: dict[str, str] | None = None,
        resume_id: str | None = None,
    ) -> None:
        self.client = client()
        if resume_id is not None:  # --resume: the same MLflow run goes on (its params are already there)
            self.run_id = resume_id
            self.client.update_run(resume_id, status="RUNNING")
            return
        all_tags = {"toolkit.run_dir": str(Path(run_dir).resolve()), **(tags or {})}
        if parent and parent.get("mlflow"):
            all_tags["mlflow.parentRunId"] = parent["mlflow"]
        with quiet():
            run = self.client.create_run(
                experiment_id(self.client, experiment), run_name=run_name, tags=all_tags
            )
        self.run_id = run.info.run_id
        self.log_params(params)

    @classmethod
    def attach(cls, run_id: str) -> MlflowRun:
        """An existing run, to log more into it."""
        run = cls.__new__(cls)
        run.client, run.run_id = client(), run_id
        return run

    def epoch(self, step: int, row: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, step) for k, v in numeric(row).items() if v == v]  # NaN is not logged
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)

    def finish(self, metrics: dict[str, Any], run_dir: Path) -> None:
        final = {
            f"final_{k}" if k in ("best_epoch", "epochs_run") else k: v for k, v in numeric(metrics).items()
        }
        self.epoch(int(metrics.get("epochs_run", 0) or 0), final)
        for path in artifacts(run_dir):
            self.client.log_artifact(self.run_id, str(path))
        self.client.set_terminated(self.run_id, "FINISHED")

    def fail(self, status: str = "FAILED") -> None:
        with contextlib.suppress(Exception):  # the run's own error is the one to report
            self.client.set_terminated(self.run_id, status)

    def where(self) -> dict[str, Any]:
        run = self.client.get_run(self.run_id)
        return {
            "mlflow": {"uri": tracking_uri(), "experiment_id": run.info.experiment_id, "run_id": self.run_id}
        }

    def log_value(self, key: str, value: float, step: int = 0) -> None:
        self.epoch(step, {key: value})

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), BATCH):
            self.client.log_batch(self.run_id, params=items[i : i + BATCH])


def artifacts(run_dir: Path) -> list[Path]:
    """The run directory's reports worth keeping beside the metrics: its JSON/CSV/YAML summaries and plots."""
    run_dir = Path(run_dir)
    files = [run_dir / name for name in ARTIFACTS if (run_dir / name).is_file()]
    return files + sorted(run_dir.glob("*.png"))
