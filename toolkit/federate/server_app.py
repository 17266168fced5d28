"""The Flower ServerApp: waits for the clients, runs the strategy for the recipe's rounds, writes the run.

Flower's SuperLink starts this app in its own process when `flwr run` submits the federation's app; the run
config's `job` names a JSON file (written by toolkit federate) with the recipe, the run directory and how many
clients to wait for. The server's data is the recipe's data source: it fixes the preprocessing (fitted on its
train split, as `toolkit train` does), its validation split scores every round's global model and picks the
best round, and its test split gives the final metrics. In the simulation the same train split is what the
clients were given, partitioned; in a deployment the clients bring their own data.
"""

from __future__ import annotations

import json
import random
import time
import traceback
from pathlib import Path
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Context
from flwr.serverapp import Grid, ServerApp

from toolkit.errors import ToolkitError

app = ServerApp()

STATUS_FILE = ".federate-status.json"  # in the run directory while it runs; the launcher reads and removes it


@app.main()
def main(grid: Grid, context: Context) -> None:
    job = json.loads(Path(str(context.run_config["job"])).read_text())
    run_dir = Path(job["out"])
    try:
        _status(run_dir, {"state": "running"})
        metrics = run(grid, job)
        _status(run_dir, {"state": "done", "metrics": metrics})
    except ToolkitError as exc:
        _status(run_dir, {"state": "failed", "error": str(exc)})
    except Exception as exc:  # noqa: BLE001  (the launcher shows one line; the trace stays in the log)
        traceback.print_exc()
        _status(run_dir, {"state": "failed", "error": f"{exc.__class__.__name__}: {exc}"})


def run(grid: Grid, job: dict[str, Any]) -> dict[str, Any]:
    from toolkit.federate import adapter
    from toolkit.federate.rundir import RunWriter
    from toolkit.federate.strategy import build_strategy
    from toolkit.recipe import recipe_from_dict

    rec = recipe_from_dict(job["recipe"])
    fed = rec.federate
    random.seed(rec.train.seed)  # Flower samples clients with the random module
    splits = adapter.load_splits(rec)
    clients = wait_for_clients(grid, int(job["clients"]), float(job.get("connect_timeout", 120.0)))
    strategy = build_strategy(fed, clients, rec.train.lr)
    meta = {**job.get("meta", {}), "clients_connected": clients}
    writer = RunWriter(Path(job["out"]), rec, splits, strategy, meta)
    payload = {
        "recipe": rec.to_dict(),
        "spec": splits.spec,
        "input_shape": list(splits.input_shape),
        "num_outputs": splits.num_outputs,
        "local_epochs": fed.local_epochs,
        "main_metric": writer.main,
    }
    from toolkit.federate.client_app import JOB_KEY

    strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord(writer.initial_state()),
        num_rounds=fed.rounds,
        timeout=fed.round_timeout,
        train_config=ConfigRecord({JOB_KEY: json.dumps(payload)}),
        evaluate_fn=writer.evaluate,
    )
    return writer.finish()


def wait_for_clients(grid: Grid, expected: int, timeout: float) -> int:
    """Block until `expected` SuperNodes are connected (so round 1 samples all of them)."""
    deadline = time.monotonic() + timeout
    while (n := len(list(grid.get_node_ids()))) < expected:
        if time.monotonic() > deadline:
            raise ToolkitError(
                f"only {n} of {expected} clients connected within {timeout:.0f} s; start the missing "
                "`toolkit federate client` processes or lower --clients"
            )
        time.sleep(0.5)
    return n


def _status(run_dir: Path, doc: dict[str, Any]) -> None:
    from toolkit.io import write_json

    write_json(run_dir / STATUS_FILE, doc)
