"""Write a federated run as the run directory `toolkit train` writes, one round at a time.

recipe.yaml (written before the federation starts), data.json, metrics.csv (one row per round: the global model
on the server's held-out validation split, the clients' mean training loss, each client's local metrics, bytes
each way, wall time), best.pt / last.pt in the trainer's checkpoint format, metrics.json (test metrics of the
best round plus a `federated` block) and curves.png. Export and everything after it read these unchanged.
"""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from toolkit.federate import adapter
from toolkit.io import write_json, write_text
from toolkit.metrics import is_better
from toolkit.recipe import Recipe


class RunWriter:
    """The strategy's evaluate_fn: scores each round's global model and writes the run directory."""

    def __init__(self, run_dir: Path, rec: Recipe, splits: Any, recorder: Any, meta: dict[str, Any]) -> None:
        self.run_dir, self.rec, self.splits, self.recorder, self.meta = run_dir, rec, splits, recorder, meta
        self.model = adapter.build_model(rec, splits.spec, splits.input_shape, splits.num_outputs)
        self.main, mode = adapter.main_metric(rec)
        has_val = len(splits.x_val) > 0
        self.key, self.mode = (f"val_{self.main}", mode) if has_val else ("train_loss", "min")
        self.history: list[dict[str, Any]] = []
        self.best_value: float | None = None
        self.best_round = 0
        self.t0 = time.perf_counter()

    def initial_state(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def evaluate(self, server_round: int, arrays: Any) -> Any:
        """Called by Flower after each round (and once before the first, as round 0)."""
        from flwr.app import MetricRecord

        self.model.load_state_dict(arrays.to_torch_state_dict())
        scores = adapter.evaluate(
            self.model, self.rec, self.splits.spec, self.splits.x_val, self.splits.y_val
        )
        row: dict[str, Any] = {"round": server_round, **self._round_info(server_round)}
        row.update({f"val_{k}": v for k, v in scores.items()})
        row.update(self._client_columns(server_round))
        self.history.append(row)
        if server_round > 0:
            self._checkpoint(server_round, row)
        _write_csv(self.run_dir / "metrics.csv", self.history)
        return MetricRecord({k: float(v) for k, v in scores.items()})

    def _round_info(self, server_round: int) -> dict[str, Any]:
        info = self.recorder.rounds.get(server_round)
        if info is None:
            return {"clients": 0, "failed": 0}
        clients = info.get("clients", [])
        weights = np.array([c["num-examples"] for c in clients], dtype=np.float64)
        losses = np.array([c["train_loss"] for c in clients], dtype=np.float64)
        out: dict[str, Any] = {"clients": len(clients), "failed": info.get("failed", 0)}
        if len(clients):
            out["train_loss"] = float((weights * losses).sum() / weights.sum())
        out.update(
            bytes_down=info.get("bytes_down", 0),
            bytes_up=info.get("bytes_up", 0),
            seconds=time.perf_counter() - info["t0"],
        )
        return out

    def _client_columns(self, server_round: int) -> dict[str, float]:
        info = self.recorder.rounds.get(server_round) or {}
        out: dict[str, float] = {}
        for c in sorted(info.get("clients", []), key=lambda c: c["client-id"]):
            cid = int(c["client-id"])
            for k in ("train_loss", "local_loss", f"local_{self.main}"):
                if k in c:
                    out[f"client{cid}_{k}"] = float(c[k])
        return out

    def _checkpoint(self, server_round: int, row: dict[str, Any]) -> None:
        if self.key in row and is_better(row[self.key], self.best_value, self.mode):
            self.best_value, self.best_round = row[self.key], server_round
            adapter.save_model(self.run_dir / "best.pt", self.rec, self.splits, self.model, server_round)
        adapter.save_model(
            self.run_dir / "last.pt",
            self.rec,
            self.splits,
            self.model,
            server_round,
            history=self.history,
            best_value=self.best_value,
            best_epoch=self.best_round - 1,
        )

    def finish(self) -> dict[str, Any]:
        """Test metrics of the best round (as `toolkit train` scores them), metrics.json and curves.png."""
        best_path = self.run_dir / "best.pt"
        if not best_path.is_file():  # no round produced a model (every client failed): keep the last state
            adapter.save_model(best_path, self.rec, self.splits, self.model, max(len(self.history) - 1, 1))
        best = adapter.load_checkpoint(best_path)
        self.model.load_state_dict(best["model"])
        test, spec_updates = adapter.final_metrics(self.model, self.rec, self.splits)
        if spec_updates:  # e.g. the anomaly threshold, settled on the validation split
            self.splits.spec.update(spec_updates)
            adapter.save_model(best_path, self.rec, self.splits, self.model, max(self.best_round, 1))
        rounds = [r for r in self.history if r["round"] > 0]
        metrics = {
            **test,
            "best_epoch": self.best_round,
            "epochs_run": len(rounds),
            "stopped_early": False,
            "main_metric": self.main,
            "recipe": self.rec.name,
            "data": self.rec.data.source,
            "samples": {
                "train": len(self.splits.x_train),
                "val": len(self.splits.x_val),
                "test": len(self.splits.x_test),
            },
            "device": "cpu",
            "federated": {**self.meta, **_totals(rounds), "best_round": self.best_round},
        }
        metrics.update(adapter.baseline_metrics(self.splits, metrics))
        write_json(self.run_dir / "metrics.json", metrics)
        if rounds:
            plot_rounds(self.history, self.main, self.run_dir / "curves.png")
        return metrics


def _totals(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    if not rounds:
        return {"rounds_run": 0}
    per_round = [r.get("bytes_down", 0) + r.get("bytes_up", 0) for r in rounds]
    return {
        "rounds_run": len(rounds),
        "bytes_per_round": float(np.mean(per_round)),
        "bytes_total": int(sum(per_round)),
        "seconds_per_round": float(np.median([r.get("seconds", 0.0) for r in rounds])),
        "failed_replies": int(sum(r.get("failed", 0) for r in rounds)),
    }


def _write_csv(path: Path, history: list[dict[str, Any]]) -> None:
    keys: list[str] = []
    for row in history:
        keys += [k for k in row if k not in keys]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    for row in history:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    write_text(path, buf.getvalue())


def plot_rounds(history: list[dict[str, Any]], main: str, path: Path) -> None:
    """Loss and the main metric per round: the global model on validation, each client on its own data."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from toolkit.io import atomic_path

    rounds = [r["round"] for r in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    _line(ax1, history, "train_loss", "clients' training loss (mean)")
    _line(ax1, history, "val_loss", "global model, validation")
    _line(ax2, history, f"val_{main}", "global model, validation", lw=2.0)
    client_keys = sorted(
        {k for r in history for k in r if k.startswith("client") and k.endswith(f"_local_{main}")}
    )
    for k in client_keys:
        _line(ax2, history, k, None, lw=0.8, alpha=0.5)
    if client_keys:
        ax2.plot([], [], color="gray", lw=0.8, label="each client, global model on its data")
    ax1.set(xlabel="round", ylabel="loss", title="loss")
    ax2.set(xlabel="round", ylabel=main, title=main)
    for ax in (ax1, ax2):
        ax.set_xlim(min(rounds), max(rounds))
        ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def _line(ax: Any, history: list[dict[str, Any]], key: str, label: str | None, **kw: Any) -> None:
    points = [(r["round"], r[key]) for r in history if key in r]
    if points:
        xs, ys = zip(*points)
        ax.plot(xs, ys, label=label, **({"color": "gray"} if label is None else {}), **kw)
