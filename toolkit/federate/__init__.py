"""Federated training with Flower: the data stays with its owners, the model comes back as a normal run.

- `simulate(recipe, ...)`: one machine; a Flower SuperLink and one SuperNode process per client on loopback,
  each client holding only its partition of the recipe's train split (or its own file with `client_data`).
- `serve(recipe, ...)`: the server of a real deployment (SuperLink + ServerApp); the recipe's data is the
  server's evaluation data.
- `join(data, server, ...)`: one client of a real deployment (a SuperNode on the owner's machine).

The run directory is what `toolkit train` writes, so export, quantize, validate, serve and edge pack work
unchanged. The CLI (`toolkit federate`, `toolkit federate server|client`) is a thin layer over these functions.
Flower itself is imported only by the modules that run inside Flower's processes (client_app, server_app,
strategy), so importing this package needs neither Flower nor torch.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolkit.errors import ToolkitError

__all__ = ["FederateResult", "simulate", "serve", "join"]

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
    from toolkit.train import next_run_dir, resolve_recipe

    rec = resolve_recipe(recipe, data, target, overrides)
    if rec.federate is None:
        rec = recipe_from_dict({**rec.to_dict(), "federate": FederateConfig().__dict__ | {"privacy": {}}})
    adapter.check_supported(rec)
    _check_flower()
    splits = adapter.load_splits(rec)  # a bad source fails here, before any process or file
    run_dir = Path(out) if out is not None else next_run_dir(f"{rec.name}-federated")
    if (run_dir / "last.pt").exists():
        raise ToolkitError(f"{run_dir} already holds a run; choose another --out")
    return rec, splits, run_dir


def simulate(
    recipe: Any,
    data: str | None = None,
    target: str | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    out: str | Path | None = None,
    client_data: list[str] | None = None,
    progress: Any = None,
    on_round: RoundHook | None = None,
) -> FederateResult:
    """Federated training on this machine: every client is its own Flower SuperNode process on loopback.

    `client_data`: one data file per client instead of partitions of the train split (each is checked against
    the server's columns and labels before anything starts). `on_round(round, federation)` runs as each round
    lands (tests use it to kill a client mid-run)."""
    from toolkit.federate import launch
    from toolkit.federate.privacy import describe

    rec, splits, run_dir = prepare(recipe, data, target, overrides, out)
    fed = rec.federate
    with tempfile.TemporaryDirectory(prefix="toolkit-federate-") as tmp:
        nodes, shares = client_nodes(rec, splits, client_data, Path(tmp))
        clients = len(nodes)
        meta = federation_meta(rec, clients, "simulation", shares)
        meta["privacy"] = describe(fed.privacy, max(int(clients * fed.fraction_fit), 1))
        job_file = write_start(run_dir, rec, splits, Path(tmp), clients, meta, shares)
        with launch.Federation(Path(tmp) / "flower") as federation:
            port = launch.free_port()
            federation.start_superlink("127.0.0.1", port)
            for i, node in enumerate(nodes):
                federation.start_supernode(f"client{i}", f"127.0.0.1:{port}", node)
            app = federation.write_app(f"127.0.0.1:{port}")
            status = watch(run_dir, federation, federation.submit(app, job_file), progress, on_round)
    return finish(run_dir, status)


def client_nodes(
    rec: Any, splits: Any, client_data: list[str] | None, tmp: Path
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Each SuperNode's --node-config and a description of its share: a partition file it alone reads, or
    the client's own data file (checked against the server's columns and labels now, before any training)."""
    import numpy as np

    from toolkit.federate import adapter, partition

    if client_data:
        nodes, shares = [], []
        for i, source in enumerate(client_data):
            try:
                x, _ = adapter.client_arrays(source, splits.spec, rec)
            except ToolkitError as exc:
                raise ToolkitError(f"client {i} refused: {exc}") from None
            where = source if source.startswith("builtin:") else str(Path(source).resolve())
            nodes.append({"data": where, "client-id": i})
            shares.append({"client": i, "samples": int(len(x)), "data": source})
        return nodes, shares
    fed = rec.federate
    parts = partition.partition(
        fed.partition, fed.clients, splits.y_train, rec.train.seed, rec.task, splits.x_train, splits.spec
    )
    nodes = []
    for i, idx in enumerate(parts):
        path = tmp / f"client{i}.npz"
        np.savez(path, x=splits.x_train[idx], y=splits.y_train[idx])
        nodes.append({"partition": str(path), "client-id": i})
    return nodes, partition.describe(parts, splits.y_train, rec.task)


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


def watch(run_dir: Path, federation: Any, proc: Any, progress: Any, on_round: RoundHook | None) -> dict:
    """Wait for `flwr run` to finish, reporting rounds as metrics.csv grows; returns the ServerApp's status."""
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


def finish(run_dir: Path, status: dict[str, Any]) -> FederateResult:
    if status.get("state") != "done":
        raise ToolkitError(status.get("error") or "the federated run failed")
    import csv

    with open(run_dir / "metrics.csv", newline="") as f:
        history = list(csv.DictReader(f))
    return FederateResult(run_dir, status["metrics"], history)


def _check_flower() -> None:
    import importlib.util

    for module in ("flwr", "flwr_datasets"):
        if importlib.util.find_spec(module) is None:
            raise ToolkitError("federated training needs Flower: pip install 'toolkit[federate]'")


def serve(*args: Any, **kwargs: Any) -> FederateResult:
    from toolkit.federate.deploy import serve as _serve

    return _serve(*args, **kwargs)


def join(*args: Any, **kwargs: Any) -> None:
    from toolkit.federate.deploy import join as _join

    return _join(*args, **kwargs)
