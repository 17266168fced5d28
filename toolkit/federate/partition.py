"""Split the train split among simulated clients with Flower Datasets' partitioners.

iid -> IidPartitioner; dirichlet:ALPHA -> DirichletPartitioner over the class label (label skew: smaller ALPHA,
fewer classes per client); by-column:COL -> NaturalIdPartitioner (one client per value of a tabular column,
say a hospital id). Each partition is a list of row indices into the train split; the simulation writes each
client's rows to its own file, so a client process holds only its own partition.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from toolkit.errors import ToolkitError
from toolkit.recipe import parse_partition

# A client needs enough rows for a local batch and a meaningful update; Flower Datasets' Dirichlet default.
MIN_PARTITION = 10


def check_clients(n_samples: int, clients: int) -> None:
    if clients < 1:
        raise ToolkitError(f"--clients must be at least 1 (got {clients})")
    if clients * MIN_PARTITION > n_samples:
        raise ToolkitError(
            f"--clients {clients} is too many for {n_samples} training samples: each client needs at least "
            f"{MIN_PARTITION}; use --clients {max(n_samples // MIN_PARTITION, 1)} or fewer"
        )


def partition(
    partition: str, clients: int, y: np.ndarray, seed: int, task: str, x: np.ndarray, spec: dict[str, Any]
) -> list[np.ndarray]:
    """Row indices of each client's share of the train split (x, y); every share is non-empty."""
    kind, arg = parse_partition(partition)
    check_clients(len(y), clients)
    try:
        import datasets
        from datasets import Dataset
        from flwr_datasets.partitioner import DirichletPartitioner, IidPartitioner, NaturalIdPartitioner
    except ImportError:
        raise ToolkitError("federated training needs Flower: pip install 'toolkit[federate]'") from None

    datasets.disable_progress_bars()
    columns: dict[str, Any] = {"row": np.arange(len(y))}
    if kind == "iid":
        partitioner = IidPartitioner(num_partitions=clients)
    elif kind == "dirichlet":
        if task != "classify":
            raise ToolkitError(f"--partition dirichlet splits by class label; task {task} has none: use iid")
        columns["label"] = np.asarray(y, dtype=np.int64)
        partitioner = DirichletPartitioner(
            num_partitions=clients,
            partition_by="label",
            alpha=float(arg),
            min_partition_size=MIN_PARTITION,
            self_balancing=False,
            seed=seed,
        )
    else:
        columns["group"] = _column_values(str(arg), x, spec)
        groups = len(np.unique(columns["group"]))
        if groups != clients:
            raise ToolkitError(
                f"--partition by-column:{arg} makes one client per value: the column has {groups} values, "
                f"so use --clients {groups} (got {clients})"
            )
        partitioner = NaturalIdPartitioner(partition_by="group")
    # Shuffled first, as Flower Datasets' FederatedDataset does: IidPartitioner cuts contiguous ranges.
    partitioner.dataset = Dataset.from_dict(columns).shuffle(seed=seed)
    try:
        with warnings.catch_warnings():  # Dirichlet redraws warn on every retry; failing for good raises
            warnings.simplefilter("ignore")
            parts = [np.sort(partitioner.load_partition(i)["row"]).astype(np.int64) for i in range(clients)]
    except ValueError as exc:  # Dirichlet: no draw gave every client MIN_PARTITION rows
        raise ToolkitError(
            f"--partition {partition} cannot give each of {clients} clients {MIN_PARTITION} samples "
            f"({len(y)} training samples): use fewer clients or a larger alpha ({str(exc).splitlines()[0]})"
        ) from None
    empty = [i for i, p in enumerate(parts) if len(p) == 0]
    if empty:
        raise ToolkitError(
            f"--partition {partition} left client {empty[0]} without samples; use fewer clients"
        )
    return parts


def _column_values(column: str, x: np.ndarray, spec: dict[str, Any]) -> np.ndarray:
    names = spec.get("feature_names") or []
    if spec.get("kind") != "tabular" or column not in names:
        shown = ", ".join(names[:10]) + (" ..." if len(names) > 10 else "")
        raise ToolkitError(
            f"--partition by-column:{column}: no such feature column"
            + (f"; columns: {shown}" if names else " (by-column needs tabular data)")
        )
    return np.round(np.asarray(x[:, names.index(column)], dtype=np.float64), 6)  # normalized, still distinct


def describe(parts: list[np.ndarray], y: np.ndarray, task: str) -> list[dict[str, Any]]:
    """Per client: its sample count and, for classifiers, how many samples of each class it holds."""
    rows = []
    for i, idx in enumerate(parts):
        row: dict[str, Any] = {"client": i, "samples": int(len(idx))}
        if task == "classify":
            row["classes"] = {int(c): int(n) for c, n in zip(*np.unique(y[idx], return_counts=True))}
        rows.append(row)
    return rows
