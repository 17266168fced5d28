"""The one place federated training touches the shared trainer (toolkit.train, toolkit.data, toolkit.models).

Clients train with the same `train_one_epoch` and score with the same task `evaluate` as `toolkit train`; the
server writes checkpoints with the same payload and `save_checkpoint`, so a federated run directory is read
by export, quantize, validate, serve and edge pack unchanged. Everything else in toolkit.federate talks to
training through the functions below, so a change inside toolkit.train is absorbed here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from toolkit.errors import ToolkitError
from toolkit.recipe import Recipe

# The recipes federated training supports: every task the shared trainer drives with train_one_epoch.
SUPPORTED_TASKS = ("classify", "regress", "forecast", "reconstruct")


def resolve_recipe(recipe: Any, data: str | None, target: str | None, overrides: Any) -> Recipe:
    """A recipe by name, path or object with --data/--target/--set applied, as `toolkit train` resolves it."""
    from toolkit.train import resolve_recipe as _resolve

    return _resolve(recipe, data, target, overrides)


def next_run_dir(name: str) -> Path:
    from toolkit.train import next_run_dir as _next

    return _next(name)


def check_supported(rec: Recipe) -> None:
    if rec.task not in SUPPORTED_TASKS:
        raise ToolkitError(
            f"federated training does not support {rec.arch}-{rec.task} (the GAN trains two networks with its "
            f"own loop); supported: recipes whose task is {', '.join(SUPPORTED_TASKS)}"
        )


def input_kind(rec: Recipe) -> str:
    from toolkit.models import model_entry

    return model_entry(rec.arch).input_kind(rec.task, rec.model)


def load_splits(rec: Recipe) -> Any:
    """The recipe's data split and preprocessed exactly as `toolkit train` does (toolkit.data.Splits)."""
    from toolkit.data import load_splits as _load

    return _load(rec.data, rec.task, input_kind(rec), rec.train.seed)


def client_arrays(source: str, spec: dict[str, Any], rec: Recipe) -> tuple[np.ndarray, np.ndarray]:
    """A client's own raw data with the federation's recorded preprocessing applied.

    Refuses (one line) data whose columns or labels differ from the federation's, before any training."""
    from toolkit.data import load_source, prepare_eval

    if spec.get("kind") == "tabular":
        raw = load_source(source, rec.data.target)
        names = list(raw.feature_names or [])
        if names != spec["feature_names"]:
            missing = [c for c in spec["feature_names"] if c not in names]
            extra = [c for c in names if c not in spec["feature_names"]]
            raise ToolkitError(
                f"{source}: its columns differ from the federation's (missing {missing[:5]}, extra {extra[:5]}); "
                f"expected {len(spec['feature_names'])} feature columns: {', '.join(spec['feature_names'][:8])}"
                + (" ..." if len(spec["feature_names"]) > 8 else "")
            )
    x, y = prepare_eval(source, spec, rec.data, rec.task, input_kind(rec))
    return x, y


def make_task(rec: Recipe, spec: dict[str, Any]) -> Any:
    from toolkit.train.registry import make_task as _make

    return _make(rec, spec)


def build_model(rec: Recipe, spec: dict[str, Any], input_shape: tuple[int, ...], num_outputs: int):
    from toolkit.models import create_model

    torch.manual_seed(rec.train.seed)  # every party builds the same initial model from the recipe
    return create_model(rec.arch, rec.model, tuple(input_shape), num_outputs, spec)


class _Proximal:
    """FedProx: the task's loss plus (mu/2)*||w - w_global||^2, so the local model stays near the global one."""

    def __init__(self, task: Any, model: torch.nn.Module, mu: float) -> None:
        self.task, self.model, self.mu = task, model, mu
        self.anchor = [p.detach().clone() for p in model.parameters()]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.task, name)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor, inputs: torch.Tensor | None = None):
        prox = sum(((p - a) ** 2).sum() for p, a in zip(self.model.parameters(), self.anchor))
        return self.task.loss(outputs, targets, inputs) + 0.5 * self.mu * prox


def train_local(
    model: torch.nn.Module,
    rec: Recipe,
    spec: dict[str, Any],
    x: np.ndarray,
    y: np.ndarray,
    epochs: int,
    proximal_mu: float = 0.0,
    seed: int = 0,
) -> float:
    """`epochs` passes of the shared train_one_epoch over one client's data; returns the last mean loss.

    The optimizer is the recipe's, built fresh each round (its state does not travel between rounds)."""
    from toolkit.train.loop import Batches, train_one_epoch
    from toolkit.train.optim import build_optimizer

    task = make_task(rec, spec)
    objective = _Proximal(task, model, proximal_mu) if proximal_mu > 0 else task
    batches = Batches(torch.as_tensor(x), task.targets(y), rec.train.batch_size)
    opt = build_optimizer(rec, model.parameters())
    augment = (rec.data.augment.shift, rec.data.augment.rotate) if spec.get("kind") == "image" else (0.0, 0.0)
    token_p = rec.data.augment.token_dropout if spec.get("kind") == "tokens" else 0.0
    loss = float("nan")
    for epoch in range(epochs):
        torch.manual_seed(seed * 1_000_003 + epoch)
        loss = train_one_epoch(
            model, objective, batches, opt, grad_clip=rec.train.grad_clip, augment=augment, token_p=token_p
        )
    return loss


def evaluate(model: torch.nn.Module, rec: Recipe, spec: dict[str, Any], x: np.ndarray, y: np.ndarray):
    """Loss and task metrics (the shared `evaluate`) of a model on one split."""
    from toolkit.train.loop import evaluate as _evaluate

    return _evaluate(model, make_task(rec, spec), torch.as_tensor(x), y)


def final_metrics(model: torch.nn.Module, rec: Recipe, splits: Any) -> tuple[dict[str, float], dict]:
    """Test metrics of the best model, and the spec entries a task settles on validation (the anomaly
    threshold), as `toolkit train` computes them."""
    task = make_task(rec, splits.spec)
    val = (torch.as_tensor(splits.x_val), splits.y_val)
    test = (torch.as_tensor(splits.x_test), splits.y_test)
    return task.final_metrics(model, val, test)


def baseline_metrics(splits: Any, metrics: dict[str, Any]) -> dict[str, float]:
    from toolkit.train import baseline_metrics as _baselines

    return _baselines(splits, metrics)


def save_model(
    path: Path, rec: Recipe, splits: Any, model: torch.nn.Module, round_: int, **extra: Any
) -> None:
    """A checkpoint in the format `toolkit train` writes (best.pt / last.pt); `round_` is stored as the epoch."""
    from toolkit.train.checkpoint import save_checkpoint
    from toolkit.train.loop import model_payload

    save_checkpoint(path, {**model_payload(rec, splits, model, round_ - 1), **extra})


def load_checkpoint(path: Path) -> dict[str, Any]:
    from toolkit.train.checkpoint import load_checkpoint as _load

    return _load(path)


def main_metric(rec: Recipe) -> tuple[str, str]:
    """(name, 'max' | 'min') of the task's main metric."""
    from toolkit.metrics import MAIN_METRIC

    return MAIN_METRIC[rec.task]
