"""Preprocessing fitted on the train split and recorded as a JSON spec (numpy only, no torch).

The spec travels with the run (and later inside the ONNX file) so that evaluation, export and every
runtime apply exactly the transformation the model was trained with.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def fit_spec(x_train: np.ndarray, kind: str, feature_names: list[str] | None, image: dict) -> dict[str, Any]:
    """Statistics from the train split only: per-feature (tabular) or per-channel (image) mean and std."""
    if kind == "image":
        axes = (0, 2, 3)
        mean = x_train.mean(axis=axes)
        std = x_train.std(axis=axes)
    else:
        mean = np.nanmean(x_train, axis=0)
        std = np.nanstd(x_train, axis=0)
        mean = np.where(np.isfinite(mean), mean, 0.0)
        std = np.where(np.isfinite(std), std, 1.0)
    std = np.where(std < 1e-8, 1.0, std)  # constant columns/channels pass through centred
    spec: dict[str, Any] = {
        "kind": kind,
        "mean": [float(v) for v in mean],
        "std": [float(v) for v in std],
        "missing": "train_mean" if kind == "tabular" else None,
    }
    if kind == "tabular":
        spec["feature_names"] = list(feature_names or [f"x{i}" for i in range(x_train.shape[1])])
    if image:
        spec["image"] = dict(image)
    return spec


def apply_spec(spec: dict[str, Any], x: np.ndarray) -> np.ndarray:
    """Normalize already-scaled features with the recorded statistics; missing values become the mean."""
    mean = np.asarray(spec["mean"], dtype=np.float32)
    std = np.asarray(spec["std"], dtype=np.float32)
    if spec["kind"] == "image":
        mean, std = mean[None, :, None, None], std[None, :, None, None]
    out = (x.astype(np.float32) - mean) / std
    return np.nan_to_num(out, nan=0.0).astype(np.float32)


def flatten_images(x: np.ndarray, image: dict) -> tuple[np.ndarray, list[str], dict]:
    """Turn (N, C, H, W) images into (N, C*H*W) features for models that take vectors."""
    n, c, h, w = x.shape
    names = [f"px_{i}" for i in range(c * h * w)]
    return x.reshape(n, -1), names, {**image, "channels": c, "height": h, "width": w, "flattened": True}


def encode_labels(y: np.ndarray, label_names: list[str] | None) -> tuple[np.ndarray, list[str]]:
    """Class labels -> indices 0..K-1 and their names (numeric labels sort numerically)."""
    if label_names is not None and np.issubdtype(np.asarray(y).dtype, np.integer):
        return np.asarray(y, dtype=np.int64), list(label_names)
    values = [str(v) for v in y]
    uniq = sorted(set(values), key=_label_key)
    index = {v: i for i, v in enumerate(uniq)}
    return np.array([index[v] for v in values], dtype=np.int64), uniq


def _label_key(v: str) -> tuple[int, float, str]:
    try:
        return (0, float(v), v)
    except ValueError:
        return (1, 0.0, v)
