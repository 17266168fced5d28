"""The simulation: a Flower SuperLink and one SuperNode process per client on loopback, each client holding
only its partition of the recipe's train split (or its own data file)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from toolkit.errors import ToolkitError
from toolkit.federate.run import (
    FederateResult,
    RoundHook,
    federation_meta,
    finish,
    open_tracker,
    prepare,
    watch,
    write_start,
)


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
    from toolkit.federate.privacy import describe, sampled_clients

    rec, splits, run_dir = prepare(recipe, data, target, overrides, out)
    fed = rec.federate
    with tempfile.TemporaryDirectory(prefix="toolkit-federate-") as tmp:
        nodes, shares = client_nodes(rec, splits, client_data, Path(tmp))
        clients = len(nodes)
        meta = federation_meta(rec, clients, "simulation", shares)
        meta["privacy"] = describe(fed.privacy, sampled_clients(fed, clients))
        job_file = write_start(run_dir, rec, splits, Path(tmp), clients, meta, shares)
        tracker = open_tracker(rec, run_dir)
        with launch.Federation(Path(tmp) / "flower") as federation:
            port = launch.free_port()
            federation.start_superlink("127.0.0.1", port)
            for i, node in enumerate(nodes):
                federation.start_supernode(f"client{i}", f"127.0.0.1:{port}", node)
            app = federation.write_app(f"127.0.0.1:{port}")
            status = watch(run_dir, federation, federation.submit(app, job_file), progress, on_round, tracker)
    return finish(run_dir, status, tracker)


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
