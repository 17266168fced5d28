"""Occlusion: hide a part of the input (set it to the baseline, the training mean) and measure the drop.

The input is seen as (C, *S): channels over positions S (an image's (H, W), a feature vector's (D,), a
series' (T,)). A mask hides a window of positions in every channel at once; all masked copies go through the
model as one batch. A position's attribution is the mean drop of the windows that cover it, so with windows
of one position it is exactly "how much the score falls without this pixel / feature / time step".
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

CHUNK = 256  # masked copies built at once


def window_masks(shape: tuple[int, ...], window: int, stride: int) -> np.ndarray:
    """(M, *shape) boolean masks of square (1-D: contiguous) windows of side `window`, `stride` apart, the
    last window flush with the far edge so every position is covered."""
    starts = [_starts(n, min(window, n), stride) for n in shape]
    grids = np.meshgrid(*starts, indexing="ij")
    corners = np.stack([g.ravel() for g in grids], axis=1)  # (M, ndim)
    masks = np.zeros((len(corners), *shape), dtype=bool)
    for m, corner in enumerate(corners):
        masks[(m, *(slice(c, c + min(window, n)) for c, n in zip(corner, shape)))] = True
    return masks


def _starts(n: int, window: int, stride: int) -> np.ndarray:
    starts = list(range(0, n - window + 1, stride))
    if starts[-1] != n - window:
        starts.append(n - window)
    return np.asarray(starts)


def fit_windows(shape: tuple[int, ...], window: int, budget: int) -> tuple[int, int]:
    """(window, stride): the smallest stride whose masks fit in `budget` model evaluations (at least one
    position per step), the window widened to the stride when the budget forces gaps."""
    stride = 1
    while np.prod([len(_starts(n, min(window, n), stride)) for n in shape]) > budget and stride < max(shape):
        stride += 1
    return max(window, stride), stride


def masked(x: np.ndarray, masks: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    """(M, C, *S) copies of x (C, *S) with masked positions (M, *S, boolean or in [0, 1]) moved to baseline."""
    m = masks[:, None].astype(np.float32)
    return (x[None] * (1 - m) + baseline[None] * m).astype(np.float32)


def occlusion(
    score: Callable[[np.ndarray], np.ndarray], x: np.ndarray, masks: np.ndarray, baseline
) -> np.ndarray:
    """Per-position attributions (*S) of x (C, *S): the mean score drop of the masks covering a position.
    `score` takes a batch (N, C, *S)."""
    baseline = np.broadcast_to(np.asarray(baseline, dtype=np.float32), x.shape)
    nothing = np.zeros((1, *masks.shape[1:]), dtype=masks.dtype)  # x itself, in the same batch
    scores = scores_of(score, x, np.concatenate([nothing, masks]), baseline)
    drops = scores[0] - scores[1:]  # (M,)
    total = np.tensordot(drops, masks.astype(np.float64), axes=1)
    return total / np.maximum(masks.sum(axis=0), 1)


def scores_of(score: Callable, x: np.ndarray, masks: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    """Scores of x with each mask applied, built and scored CHUNK masks at a time (a 224x224 RGB image
    times a thousand masks would otherwise be gigabytes)."""
    return np.concatenate(
        [score(masked(x, masks[i : i + CHUNK], baseline)) for i in range(0, len(masks), CHUNK)]
    )
