"""Measures of explanations, for the benchmark and the tests: deletion (faithfulness) and rank agreement.

Deletion (Petsiuk et al. 2018, Samek et al. 2017): set the most-attributed fraction of the positions to the
baseline and see how far the score falls, next to the same number of random positions. A map that finds
what the model uses makes the first fall much further. Spearman's rank correlation compares two maps
(integrated gradients here against Captum's; a trained model's map against a re-initialized model's).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .occlusion import masked


def deletion(
    score: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    attributions: np.ndarray,
    fraction: float,
    rng: np.random.Generator,
    baseline=0.0,
    draws: int = 10,
) -> tuple[float, float]:
    """(score drop with the top `fraction` of positions deleted, mean drop over `draws` random deletions of
    as many positions) for x (C, *S) and its (*S) attributions; deleted positions go to `baseline`."""
    shape = attributions.shape
    n = attributions.size
    k = max(1, int(round(fraction * n)))
    masks = np.zeros((1 + draws, n), dtype=bool)
    masks[0, np.argsort(-attributions.ravel(), kind="stable")[:k]] = True
    for d in range(draws):
        masks[1 + d, rng.choice(n, size=k, replace=False)] = True
    base = np.broadcast_to(np.asarray(baseline, dtype=np.float32), x.shape)
    scores = score(np.concatenate([x[None], masked(x, masks.reshape(-1, *shape), base)]))
    return float(scores[0] - scores[1]), float(scores[0] - scores[2:].mean())


def ranks(a: np.ndarray) -> np.ndarray:
    """Ranks from 1 with ties sharing their mean rank (as scipy.stats.rankdata)."""
    a = np.asarray(a, dtype=np.float64).ravel()
    order = np.argsort(a, kind="mergesort")
    sorted_a = a[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_a)) + 1]
    ends = np.r_[starts[1:], a.size]
    mean_rank = (starts + ends + 1) / 2.0  # ranks starts+1 .. ends, averaged
    r = np.empty(a.size)
    r[order] = np.repeat(mean_rank, ends - starts)
    return r


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two maps of the same size (0 when either is constant)."""
    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = np.sqrt((ra**2).sum() * (rb**2).sum())
    return float((ra * rb).sum() / denom) if denom > 0 else 0.0
