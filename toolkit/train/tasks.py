"""The Task interface (loss, targets, predictions, metrics, eval report) and the supervised tasks.

What differs by task sits behind this one small interface. The supervised tasks live here (classify, regress, forecast); reconstruct is in
toolkit.train.anomaly and generate in toolkit.train.gan. Each registers itself (toolkit.train.registry).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from toolkit.metrics import MAIN_METRIC, TASK_METRICS, softmax
from toolkit.train.optim import build_optimizer
from toolkit.train.registry import register_task

LAZY_BATCH = 128  # rows per forward pass when evaluating a lazy image split (read and standardized per batch)
# Losses that compare outputs with real-valued targets (regression, forecasting, reconstruction).
REGRESSION_LOSSES = {"mse": F.mse_loss, "mae": F.l1_loss, "huber": F.huber_loss}


@torch.no_grad()
def predict_outputs(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 1024) -> np.ndarray:
    """Raw model outputs for all of x, in evaluation mode."""
    model.eval()
    device = next(model.parameters()).device
    if not torch.is_tensor(x):  # a lazy image split: smaller batches keep memory flat in the split's size
        batch_size = min(batch_size, LAZY_BATCH)
    parts = []
    for i in range(0, len(x), batch_size):
        xb = x[i : i + batch_size]  # a lazy image split gives numpy rows: onto the model's device
        xb = xb if torch.is_tensor(xb) else torch.from_numpy(np.asarray(xb)).to(device)
        parts.append(model(xb).float().cpu())
    return torch.cat(parts).numpy() if parts else np.zeros((0,))


class Task:
    """The task-specific part of training. Most tasks override only loss, predictions and metrics; a task
    with its own optimization (the GAN) sets custom_epoch and implements optimizers and train_epoch."""

    name: str = ""
    target_dtype: torch.dtype = torch.float32
    custom_epoch = False
    # model, x -> raw outputs for all of x; distributed training swaps in a sharded version (one per rank)
    predict = staticmethod(predict_outputs)

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
        outputs = self.predict(model, x)
        x_cpu = x.cpu() if torch.is_tensor(x) else None  # a lazy image split is not needed by the metrics
        loss = float(self.loss(torch.as_tensor(outputs), self.targets(y_np), x_cpu))
        return {"loss": loss, **self.metrics(y_np, outputs, x_cpu.numpy() if x_cpu is not None else None)}

    def final_metrics(self, model: torch.nn.Module, val: tuple, test: tuple) -> tuple[dict[str, float], dict]:
        """Test metrics of the best model, and any spec entries settled on the validation split."""
        metrics = self.evaluate(model, *test) if len(test[0]) else {}
        metrics.pop("loss", None)
        return metrics, {}

    def evaluate_run(
        self, run_dir: Path, ckpt: dict[str, Any], data: str | None, plots: bool
    ) -> dict[str, Any]:
        """`toolkit eval`: the checkpoint's metrics on the test split (with `data`: on all of that source,
        preprocessed with the run's recorded statistics), plus what report() adds for the task."""
        from toolkit.data import load_splits, prepare_eval
        from toolkit.models import model_entry
        from toolkit.train.checkpoint import load_model

        rec, spec = self.recipe, self.spec
        kind = model_entry(rec.arch).input_kind(rec.task, rec.model)
        splits = None
        if data is None:
            splits = load_splits(rec.data, rec.task, kind, rec.train.seed, spec=spec)
            x, y, source = splits.x_test, splits.y_test, f"{rec.data.source} (test split)"
        else:
            x, y = prepare_eval(data, spec, rec.data, rec.task, kind)
            source = data
        x = np.asarray(x)  # a lazy image split is read here (the test split only)
        outputs = predict_outputs(load_model(ckpt), torch.as_tensor(x))
        result: dict[str, Any] = {
            "source": source,
            "samples": int(len(x)),
            "metrics": self.metrics(y, outputs, x),
        }
        result.update(self.report(run_dir, splits, x, y, outputs, result["metrics"], plots))
        return result

    def report(
        self,
        run_dir: Path,
        splits: Any,
        x: np.ndarray,
        y: np.ndarray,
        outputs: np.ndarray,
        metrics: dict[str, float],
        plots: bool,
    ) -> dict[str, Any]:
        """What `toolkit eval` adds beyond the metrics (a confusion matrix, plots); may add to `metrics`.
        `splits` is None when the run is scored on other data."""
        return {}


@register_task
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
        return TASK_METRICS["classify"].score({"logits": outputs}, y_true, {})

    def report(self, run_dir, splits, x, y, outputs, metrics, plots) -> dict[str, Any]:
        """The confusion matrix (confusion.png with plots)."""
        from toolkit.metrics import confusion_matrix
        from toolkit.train.plots import plot_confusion

        labels = self.spec["labels"]
        cm = confusion_matrix(y, np.argmax(outputs, axis=1), len(labels))
        result: dict[str, Any] = {"labels": labels, "confusion": cm.tolist()}
        if plots:
            plot_confusion(cm, labels, run_dir / "confusion.png")
            result["plot"] = str(run_dir / "confusion.png")
        return result


@register_task
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
        return TASK_METRICS["regress"].score({"prediction": self.predictions(outputs)}, y_true, {})


@register_task
class Forecast(Regress):
    """Like regression on (B, horizon) targets in series units; metrics are mae, rmse and mape."""

    name = "forecast"

    def metrics(
        self, y_true: np.ndarray, outputs: np.ndarray, x: np.ndarray | None = None
    ) -> dict[str, float]:
        return TASK_METRICS["forecast"].score({"forecast": self.predictions(outputs)}, y_true, {})

    def report(self, run_dir, splits, x, y, outputs, metrics, plots) -> dict[str, Any]:
        """The baselines' test MAE (on the test split) and forecast.png: the test series, the forecasts and
        the baselines."""
        result: dict[str, Any] = {}
        if splits is not None:
            metrics.update(baseline_metrics(splits, metrics))
        if plots:
            from toolkit.train.plots import plot_forecast

            plot_forecast(self.spec, splits, x, y, self.predictions(outputs), run_dir / "forecast.png")
            result["plot"] = str(run_dir / "forecast.png")
        return result


def baseline_metrics(splits: Any, metrics: dict[str, Any]) -> dict[str, float]:
    """Forecasting: the test MAE of each baseline on the same windows (naive_mae, ar_mae) and the network's
    MAE relative to persistence (mae_vs_naive < 1 means it beats persistence); empty for other tasks."""
    out: dict[str, float] = {}
    for name, pred in splits.extra.get("baselines", {}).items():
        out[f"{name}_mae"] = float(np.mean(np.abs(pred - splits.y_test)))
    if "naive_mae" in out and "mae" in metrics and out["naive_mae"] > 0:
        out["mae_vs_naive"] = metrics["mae"] / out["naive_mae"]
    return out
