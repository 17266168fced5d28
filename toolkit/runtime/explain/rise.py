"""RISE (Petsiuk et al. 2018): randomized input sampling for explanation.

N random binary grids (cell x cell, each cell kept with probability p) are upsampled bilinearly with a random
sub-cell shift into smooth masks; the masked inputs (hidden parts at the baseline) go through the model in
batches, and a pixel's saliency is the score-weighted mean of the masks that keep it, minus the mean score
(so it is signed: above zero where keeping the pixel raises the score). Works for any image model and any
size, at the price of noise that falls with N (`--samples`); deterministic for a given seed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .occlusion import CHUNK, scores_of


def _upsample(n: int, cell: int) -> np.ndarray:
    """(n, cell) linear-interpolation matrix from `cell` knots onto n positions spanning them."""
    pos = np.linspace(0, cell - 1, n)
    lo = np.clip(np.floor(pos).astype(int), 0, cell - 2) if cell > 1 else np.zeros(n, dtype=int)
    frac = pos - lo
    a = np.zeros((n, cell))
    a[np.arange(n), lo] = 1 - frac
    if cell > 1:
        a[np.arange(n), lo + 1] += frac
    return a


def rise_masks(n: int, shape: tuple[int, int], rng: np.random.Generator, cell: int = 4, p: float = 0.5):
    """(n, H, W) smooth masks in [0, 1] where 1 keeps a pixel (float32)."""
    h, w = shape
    grids = (rng.random((n, cell + 1, cell + 1)) < p).astype(np.float64)
    # Upsample onto (cell + 1) cells of size (H / cell, W / cell), then crop H x W at a random offset.
    ch, cw = -(-h // cell), -(-w // cell)
    big_h, big_w = ch * (cell + 1), cw * (cell + 1)
    up = np.einsum("hi,nij,wj->nhw", _upsample(big_h, cell + 1), grids, _upsample(big_w, cell + 1))
    dy, dx = rng.integers(0, ch, n), rng.integers(0, cw, n)
    out = np.empty((n, h, w), dtype=np.float32)
    for i in range(n):
        out[i] = up[i, dy[i] : dy[i] + h, dx[i] : dx[i] + w]
    return out


def rise(
    score: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    baseline,
    n: int,
    rng: np.random.Generator,
    cell: int = 4,
    p: float = 0.5,
) -> np.ndarray:
    """(H, W) saliency of x (C, H, W): sum_i (s_i - mean s) m_i / (n p), masks made and scored CHUNK at a
    time (the same masks for the same seed)."""
    baseline = np.broadcast_to(np.asarray(baseline, dtype=np.float32), x.shape)
    weighted = np.zeros(x.shape[1:])  # sum of s_i m_i
    coverage = np.zeros(x.shape[1:])  # sum of m_i
    total = 0.0  # sum of s_i
    for start in range(0, n, CHUNK):
        keep = rise_masks(min(CHUNK, n - start), x.shape[1:], rng, cell, p)
        scores = scores_of(score, x, 1.0 - keep, baseline)  # 1 - keep: the part moved to the baseline
        weighted += np.tensordot(scores, keep.astype(np.float64), axes=1)
        coverage += keep.sum(axis=0)
        total += float(scores.sum())
    return (weighted - total / n * coverage) / (n * p)
