"""Metrics on numpy arrays, and the one table of what each task is scored on (no torch).

TASK_METRICS is read by training (early stopping, model selection, metrics.json), tuning, validate (the
test metrics recomputed from the graph's outputs) and quantize (the accuracy gate): one main metric per
task, one function from outputs to metrics. Regression's main metric is rmse: in the target's units like
forecasting's mae, and what quantize always gated on (mse picks the same epochs, and its relative drop is
twice rmse's, so the same budget would have meant two different things).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

# Error metrics: lower is better, in the data's units (validate compares them relatively).
ERROR_METRICS = frozenset({"mse", "rmse", "mae", "mape", "recon_mse"})

Outputs = dict[str, np.ndarray]


@dataclass(frozen=True)
class TaskMetrics:
    """What one task is scored on."""

    main: str  # early stopping, model selection, tuning and the quantization gate follow it
    direction: str  # "max" or "min"
    # (graph outputs by name, targets, model metadata) -> test metrics; None: nothing labelled to score
    score: Callable[[Outputs, np.ndarray, dict[str, Any]], dict[str, float]] | None


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(num_classes, num_classes) counts; rows are true classes, columns predicted classes."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return cm


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> dict[str, float]:
    """accuracy and macro-averaged precision, recall and F1 (classes absent from both count as 0)."""
    cm = confusion_matrix(y_true, y_pred, num_classes)
    tp = np.diag(cm).astype(np.float64)
    predicted = cm.sum(axis=0)
    actual = cm.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(actual > 0, tp / actual, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    present = actual > 0  # macro averages over the classes present in y_true, as scikit-learn warns about
    return {
        "accuracy": float(tp.sum() / max(cm.sum(), 1)),
        "f1_macro": float(f1[present].mean()) if present.any() else 0.0,
        "precision_macro": float(precision[present].mean()) if present.any() else 0.0,
        "recall_macro": float(recall[present].mean()) if present.any() else 0.0,
    }


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    y_true = np.asarray(y_true, dtype=np.float64).reshape(len(y_true), -1)
    y_pred = np.asarray(y_pred, dtype=np.float64).reshape(len(y_pred), -1)
    err = y_pred - y_true
    mse = float(np.mean(err**2))
    ss_tot = float(np.sum((y_true - y_true.mean(axis=0)) ** 2))
    return {
        "mse": mse,
        "rmse": float(np.sqrt(mse)),
        "mae": float(np.mean(np.abs(err))),
        "r2": float(1 - np.sum(err**2) / ss_tot) if ss_tot > 0 else 0.0,
    }


def forecast_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """mae, rmse and mape over every forecast step. mape (a fraction, not %) skips actual values of 0."""
    y_true = np.asarray(y_true, dtype=np.float64)
    err = np.asarray(y_pred, dtype=np.float64) - y_true
    nonzero = np.abs(y_true) > 1e-12
    return {
        "mae": float(np.mean(np.abs(err))),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "mape": float(np.mean(np.abs(err[nonzero]) / np.abs(y_true[nonzero])))
        if nonzero.any()
        else float("nan"),
    }


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    z = logits - logits.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def is_better(value: float, best: float | None, mode: str, min_delta: float = 0.0) -> bool:
    if best is None:
        return True
    return value > best + min_delta if mode == "max" else value < best - min_delta


def roc_auc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve for binary labels (1 = positive); ties count half (Mann-Whitney U)."""
    y = np.asarray(y_true).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = np.asarray(scores)[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0 + 1
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_precision(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Mean of the precision at each positive, ranking by descending score (as scikit-learn computes it)."""
    y = np.asarray(y_true).astype(bool)
    if not y.any():
        return float("nan")
    order = np.argsort(-np.asarray(scores), kind="mergesort")
    s, hits = np.asarray(scores)[order], y[order]
    # group tied scores: precision and recall move only at the end of each tie group
    last = np.r_[s[1:] != s[:-1], True]
    tp = np.cumsum(hits)[last]
    k = (np.arange(1, len(s) + 1))[last]
    precision = tp / k
    recall_step = np.diff(np.r_[0, tp]) / y.sum()
    return float(np.sum(precision * recall_step))


def binary_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """precision, recall and F1 of the positive class (1)."""
    y, p = np.asarray(y_true).astype(bool), np.asarray(y_pred).astype(bool)
    tp, fp, fn = int((y & p).sum()), int((~y & p).sum()), int((y & ~p).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def best_f1_threshold(y_true: np.ndarray, scores: np.ndarray) -> float:
    """The score threshold (flag score > threshold) that maximizes F1; midpoints between sorted scores."""
    s = np.unique(np.asarray(scores, dtype=np.float64))
    candidates = np.r_[s[0] - 1.0, (s[1:] + s[:-1]) / 2] if len(s) > 1 else s - 1.0
    f1 = [binary_metrics(y_true, scores > t)["f1"] for t in candidates]
    return float(candidates[int(np.argmax(f1))])


# --------------------------------------------------------------------------------------------- by task
def _named(out: Outputs, meta: dict[str, Any]) -> Outputs:
    """An imported model's outputs under the toolkit's names (toolkit.runtime.processing.task_outputs)."""
    from toolkit.runtime.processing import task_outputs

    return task_outputs(meta or {}, out)


def _classify(out: Outputs, y: np.ndarray, meta: dict[str, Any]) -> dict[str, float]:
    # (N, classes): the raw outputs in training, the graph's logits output after export
    logits = _named(out, meta)["logits"]
    return classification_metrics(y, logits.argmax(axis=1), logits.shape[1])


def _regress(out: Outputs, y: np.ndarray, meta: dict[str, Any]) -> dict[str, float]:
    return regression_metrics(y, _named(out, meta)["prediction"])  # both in the target's units


def _forecast(out: Outputs, y: np.ndarray, meta: dict[str, Any]) -> dict[str, float]:
    return forecast_metrics(y, out["forecast"])  # (N, horizon) in the series' units


def _reconstruct(out: Outputs, y: np.ndarray, meta: dict[str, Any]) -> dict[str, float]:
    """recon_mse over the normal samples; with both kinds labelled, detection quality (roc_auc, average
    precision) and, at the recorded threshold (meta thresholds.score.value), precision, recall and F1."""
    scores = out["score"].astype(np.float64)  # (N,) mean squared reconstruction error per sample
    normal = y == 0
    got = {"recon_mse": float(scores[normal].mean()) if normal.any() else float(scores.mean())}
    if normal.any() and (~normal).any():
        got["roc_auc"] = roc_auc(y, scores)
        got["average_precision"] = average_precision(y, scores)
        threshold = ((meta.get("thresholds") or {}).get("score") or {}).get("value")
        if threshold is not None:
            got.update(binary_metrics(y, scores > threshold))
    return got


TASK_METRICS: dict[str, TaskMetrics] = {
    "classify": TaskMetrics("accuracy", "max", _classify),
    "regress": TaskMetrics("rmse", "min", _regress),
    "forecast": TaskMetrics("mae", "min", _forecast),
    "reconstruct": TaskMetrics("recon_mse", "min", _reconstruct),
    "generate": TaskMetrics("class_agreement", "max", None),  # judged samples (toolkit.train.gan)
    # Self-supervised: a linear probe's accuracy on the embeddings (toolkit.train.contrastive)
    "contrastive": TaskMetrics("probe_accuracy", "max", None),
}
# The main metric of each task and whether larger is better, as (name, "max"|"min").
MAIN_METRIC: dict[str, tuple[str, str]] = {task: (m.main, m.direction) for task, m in TASK_METRICS.items()}


def direction_of(name: str) -> str:
    """ "min" for losses and error metrics (also a baseline's, such as naive_mae), else "max"."""
    name = name.removeprefix("val_").removeprefix("train_")
    lower = name == "loss" or name in ERROR_METRICS or name.endswith(("mse", "mae", "loss", "error"))
    return "min" if lower else "max"
