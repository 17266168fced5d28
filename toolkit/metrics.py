"""Metrics on numpy arrays, shared by training, eval, validate and quantize (no torch)."""

from __future__ import annotations

import numpy as np

# The main metric of each task and whether larger is better: early stopping and model selection use it.
MAIN_METRIC: dict[str, tuple[str, str]] = {
    "classify": ("accuracy", "max"),
    "regress": ("mse", "min"),
    "forecast": ("mae", "min"),
    "reconstruct": ("recon_mse", "min"),
    "generate": ("class_agreement", "max"),
}


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
