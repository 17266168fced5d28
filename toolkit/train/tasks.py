"""What differs by task, behind one small interface: loss, targets, outputs -> predictions, metrics.

Later tasks (forecast, reconstruct, generate) add a class here and an entry in TASKS.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from toolkit.metrics import MAIN_METRIC, classification_metrics, forecast_metrics, regression_metrics, softmax


class Task:
    name: str = ""
    target_dtype: torch.dtype = torch.float32

    @property
    def main_metric(self) -> str:
        return MAIN_METRIC[self.name][0]

    @property
    def mode(self) -> str:
        return MAIN_METRIC[self.name][1]

    def __init__(self, recipe: Any, spec: dict[str, Any]) -> None:
        self.recipe, self.spec = recipe, spec
        self.loss_name = recipe.loss  # resolved once: loss() runs every batch

    def targets(self, y: np.ndarray) -> torch.Tensor:
        """numpy targets -> the tensor the loss expects."""
        return torch.as_tensor(y, dtype=self.target_dtype)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def predictions(self, outputs: np.ndarray) -> np.ndarray:
        """Raw model outputs -> what a user reads (class probabilities, values in target units)."""
        raise NotImplementedError

    def metrics(self, y_true: np.ndarray, outputs: np.ndarray) -> dict[str, float]:
        raise NotImplementedError


class Classify(Task):
    name = "classify"
    target_dtype = torch.int64

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:  # (B, K), (B,)
        if self.loss_name == "bce":
            onehot = F.one_hot(targets, outputs.shape[1]).to(outputs.dtype)
            return F.binary_cross_entropy_with_logits(outputs, onehot)
        return F.cross_entropy(outputs, targets, label_smoothing=self.recipe.train.label_smoothing)

    def predictions(self, outputs: np.ndarray) -> np.ndarray:
        return softmax(outputs.astype(np.float64), axis=1)

    def metrics(self, y_true: np.ndarray, outputs: np.ndarray) -> dict[str, float]:
        return classification_metrics(y_true, outputs.argmax(axis=1), outputs.shape[1])


class Regress(Task):
    name = "regress"

    def targets(self, y: np.ndarray) -> torch.Tensor:
        t = self.spec["target"]  # the network learns standardized targets; predictions undo it
        return torch.as_tensor((y.reshape(len(y), -1) - t["mean"]) / t["std"], dtype=torch.float32)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        fn = {"mse": F.mse_loss, "mae": F.l1_loss, "huber": F.huber_loss}[self.loss_name]
        return fn(outputs, targets)

    def predictions(self, outputs: np.ndarray) -> np.ndarray:
        t = self.spec["target"]
        return outputs * t["std"] + t["mean"]

    def metrics(self, y_true: np.ndarray, outputs: np.ndarray) -> dict[str, float]:
        return regression_metrics(y_true, self.predictions(outputs))


class Forecast(Regress):
    """Like regression on (B, horizon) targets in series units; metrics are mae, rmse and mape."""

    name = "forecast"

    def metrics(self, y_true: np.ndarray, outputs: np.ndarray) -> dict[str, float]:
        return forecast_metrics(y_true, self.predictions(outputs))


TASKS: dict[str, type[Task]] = {"classify": Classify, "regress": Regress, "forecast": Forecast}


def make_task(recipe: Any, spec: dict[str, Any]) -> Task:
    return TASKS[recipe.task](recipe, spec)
