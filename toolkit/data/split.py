"""Deterministic train/validation/test splits from a seed (stratified for classification)."""

from __future__ import annotations

import numpy as np

from toolkit.errors import ToolkitError


def split_indices(
    y: np.ndarray,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    stratify: bool,
    names: list[str] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return sorted index arrays (train, val, test). Same inputs and seed -> same split, on any machine."""
    rng = np.random.default_rng(seed)
    n = len(y)
    if n < 3:
        raise ToolkitError(f"need at least 3 samples to split into train/val/test (got {n})")
    groups = [np.flatnonzero(y == c) for c in np.unique(y)] if stratify else [np.arange(n)]
    if stratify:
        for c, g in zip(np.unique(y), groups, strict=True):
            if len(g) < 2:
                label = names[int(c)] if names else str(c)
                raise ToolkitError(
                    f"class {label!r} has a single sample; "
                    "every class needs at least 2 for a stratified split"
                )
    train, val, test = [], [], []
    for g in groups:
        g = rng.permutation(g)
        n_test = int(round(len(g) * test_fraction)) if test_fraction > 0 else 0
        n_val = int(round(len(g) * val_fraction)) if val_fraction > 0 else 0
        if test_fraction > 0:
            n_test = max(n_test, 1)
        if val_fraction > 0 and len(g) - n_test > 1:
            n_val = max(n_val, 1)
        n_val = min(n_val, max(len(g) - n_test - 1, 0))
        test.append(g[:n_test])
        val.append(g[n_test : n_test + n_val])
        train.append(g[n_test + n_val :])
    return tuple(np.sort(np.concatenate(part)).astype(np.int64) for part in (train, val, test))  # type: ignore[return-value]


def label_subset(y: np.ndarray, train: np.ndarray, fraction: float, seed: int, stratify: bool) -> np.ndarray:
    """`data.label_fraction`: a seeded share of the train indices, drawn per class when `stratify` (every
    class keeps at least one row), so a model can be trained on few labels and the rest left unused.
    Drawn from its own generator: the same seed gives the same split and the same subset."""
    if fraction >= 1.0:
        return train
    rng = np.random.default_rng([seed, 0x1AB])  # independent of the split's draws
    groups = [train[y[train] == c] for c in np.unique(y[train])] if stratify else [train]
    keep = [rng.permutation(g)[: max(1, int(round(len(g) * fraction)))] for g in groups]
    return np.sort(np.concatenate(keep)).astype(np.int64)
