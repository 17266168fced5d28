"""What differs by task, behind one small interface: loss, targets, outputs -> predictions, metrics.

Later tasks (forecast, reconstruct, generate) add a class here and an entry in TASKS.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from toolkit.metrics import MAIN_METRIC, classification_metrics, forecast_metrics, regression_metrics, softmax

# Losses that compare outputs with real-valued targets (regression, forecasting, reconstruction).
REGRESSION_LOSSES = {"mse": F.mse_loss, "mae": F.l1_loss, "huber": F.huber_loss}


@torch.no_grad()
def predict_outputs(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 1024) -> np.ndarray:
    """Raw model outputs for all of x, in evaluation mode."""
    model.eval()
    parts = [model(x[i : i + batch_size]).float().cpu() for i in range(0, len(x), batch_size)]
    return torch.cat(parts).numpy() if parts else np.zeros((0,))


class Task:
    """The task-specific part of training. Most tasks override only loss, predictions and metrics; a task
    with its own optimization (the GAN) sets custom_epoch and implements optimizers and train_epoch."""

    name: str = ""
    target_dtype: torch.dtype = torch.float32
    custom_epoch = False

    @property
    def main_metric(self) -> str:
        return MAIN_METRIC[self.name][0]

    @property
    def mode(self) -> str:
        return MAIN_METRIC[self.name][1]

    def __init__(self, recipe: Any, spec: dict[str, Any], run_dir: Any = None) -> None:
        self.recipe, self.spec, self.run_dir = recipe, spec, run_dir
        self.loss_name = recipe.loss  # resolved once: loss() runs every batch

    def prepare(self, splits: Any, device: torch.device) -> None:
        """Called once before training (after the data is loaded)."""

    def optimizers(self, model: torch.nn.Module) -> dict[str, torch.optim.Optimizer]:
        from toolkit.train.loop import build_optimizer

        return {"model": build_optimizer(self.recipe, model.parameters())}

    def targets(self, y: np.ndarray) -> torch.Tensor:
        """numpy targets -> the tensor the loss expects."""
        return torch.as_tensor(y, dtype=self.target_dtype)

    def loss(
        self, outputs: torch.Tensor, targets: torch.Tensor, inputs: torch.Tensor | None = None
    ) -> torch.Tensor:
        raise NotImplementedError

    def predictions(self, outputs: np.ndarray) -> np.ndarray:
        """Raw model outputs -> what a user reads (class probabilities, values in target units)."""
        raise NotImplementedError

    def metrics(
        self, y_true: np.ndarray, outputs: np.ndarray, x: np.ndarray | None = None
    ) -> dict[str, float]:
        raise NotImplementedError

    def evaluate(self, model: torch.nn.Module, x: torch.Tensor, y_np: np.ndarray) -> dict[str, float]:
        """Loss and metrics on one split."""
        outputs = predict_outputs(model, x)
        loss = float(self.loss(torch.as_tensor(outputs), self.targets(y_np), x.cpu()))
        return {"loss": loss, **self.metrics(y_np, outputs, x.cpu().numpy())}

    def final_metrics(self, model: torch.nn.Module, val: tuple, test: tuple) -> tuple[dict[str, float], dict]:
        """Test metrics of the best model, and any spec entries settled on the validation split."""
        metrics = self.evaluate(model, *test) if len(test[0]) else {}
        metrics.pop("loss", None)
        return metrics, {}


class Classify(Task):
    name = "classify"
    target_dtype = torch.int64

    def loss(
        self, outputs: torch.Tensor, targets: torch.Tensor, inputs: torch.Tensor | None = None
    ) -> torch.Tensor:
        if self.loss_name == "bce":
            onehot = F.one_hot(targets, outputs.shape[1]).to(outputs.dtype)
            return F.binary_cross_entropy_with_logits(outputs, onehot)
        return F.cross_entropy(outputs, targets, label_smoothing=self.recipe.train.label_smoothing)

    def predictions(self, outputs: np.ndarray) -> np.ndarray:
        return softmax(outputs.astype(np.float64), axis=1)

    def metrics(
        self, y_true: np.ndarray, outputs: np.ndarray, x: np.ndarray | None = None
    ) -> dict[str, float]:
        return classification_metrics(y_true, outputs.argmax(axis=1), outputs.shape[1])


class Regress(Task):
    name = "regress"

    def targets(self, y: np.ndarray) -> torch.Tensor:
        t = self.spec["target"]  # the network learns standardized targets; predictions undo it
        return torch.as_tensor((y.reshape(len(y), -1) - t["mean"]) / t["std"], dtype=torch.float32)

    def loss(
        self, outputs: torch.Tensor, targets: torch.Tensor, inputs: torch.Tensor | None = None
    ) -> torch.Tensor:
        fn = REGRESSION_LOSSES[self.loss_name]
        return fn(outputs, targets)

    def predictions(self, outputs: np.ndarray) -> np.ndarray:
        t = self.spec["target"]
        return outputs * t["std"] + t["mean"]

    def metrics(
        self, y_true: np.ndarray, outputs: np.ndarray, x: np.ndarray | None = None
    ) -> dict[str, float]:
        return regression_metrics(y_true, self.predictions(outputs))


class Forecast(Regress):
    """Like regression on (B, horizon) targets in series units; metrics are mae, rmse and mape."""

    name = "forecast"

    def metrics(
        self, y_true: np.ndarray, outputs: np.ndarray, x: np.ndarray | None = None
    ) -> dict[str, float]:
        return forecast_metrics(y_true, self.predictions(outputs))


TASKS: dict[str, type[Task]] = {"classify": Classify, "regress": Regress, "forecast": Forecast}


def make_task(recipe: Any, spec: dict[str, Any], run_dir: Any = None) -> Task:
    if recipe.task == "reconstruct":
        from toolkit.train.anomaly import Reconstruct

        return Reconstruct(recipe, spec, run_dir)
    if recipe.task == "generate":
        from toolkit.train.gan import GenerateTask

        return GenerateTask(recipe, spec, run_dir)
    return TASKS[recipe.task](recipe, spec, run_dir)
