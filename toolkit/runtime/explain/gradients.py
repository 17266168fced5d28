"""Integrated gradients (Sundararajan et al. 2017) with gradients by finite differences through onnxruntime.

IG_i = (x_i - b_i) * integral over a in [0, 1] of dF/dx_i (b + a (x - b)), the integral by Gauss-Legendre
quadrature (Captum's default rule) and each gradient by forward differences: F at a path point and at the
point moved by h along each input dimension, all in batches. A run costs steps * (D + 1) model evaluations for
D input values, so it suits small inputs (an 8x8 digit: 16 steps = 1040 rows); `--samples` sets the budget and
the number of steps follows from it.

Why finite differences and not an exported gradient graph: with torch 2.13 neither exporter writes a backward
pass to ONNX (TorchScript fails on the functional gradient; the dynamo exporter has no ONNX function for
aten.convolution_backward), and finite differences work on every model onnxruntime runs (INT8, foreign
models) with no extra file. Measured against Captum on the digits CNN: Spearman 0.99 (bench/explain_bench.py).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._core import InputError

STEP = 1e-2  # finite-difference step, in the model's (standardized) input units
MAX_ROWS = 4096  # rows per scorer call
MAX_VALUES = 16384  # inputs larger than this (a 128x128 image) are refused: the cost grows with their size


def steps_for(budget: int, size: int) -> int:
    """Quadrature steps that fit `budget` model evaluations for an input of `size` values (at least 2)."""
    return max(2, budget // (size + 1))


def integrated_gradients(
    score: Callable[[np.ndarray], np.ndarray], x: np.ndarray, baseline, steps: int, h: float = STEP
) -> tuple[np.ndarray, float]:
    """Attributions of x (same shape) and the completeness gap: sum(attributions) - (F(x) - F(baseline)),
    which is small when the steps suffice."""
    if x.size > MAX_VALUES:
        raise InputError(
            f"integrated gradients by finite differences cost steps x (values + 1) model evaluations: "
            f"{steps * (x.size + 1):,} for this input of {x.size:,} values; use --method occlusion or rise"
        )
    b = np.broadcast_to(np.asarray(baseline, dtype=np.float64), x.shape).ravel()
    d = x.astype(np.float64).ravel() - b
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    points = b[None] + ((nodes + 1) / 2)[:, None] * d[None]  # (steps, D): the path's quadrature points
    per_call = MAX_ROWS // (d.size + 1)  # small inputs: several points' differences in one call
    grad = np.zeros(d.size)
    if per_call > 1:
        for start in range(0, steps, per_call):
            g = _gradients(score, points[start : start + per_call], x.shape, h)
            grad += (weights[start : start + per_call, None] / 2 * g).sum(axis=0)
    else:
        for point, weight in zip(points, weights / 2):
            grad += weight * _gradient(score, point, x.shape, h)
    attributions = (grad * d).reshape(x.shape)
    ends = score(np.stack([x, b.reshape(x.shape)]).astype(np.float32))
    return attributions, float(attributions.sum() - (ends[0] - ends[1]))


def _gradients(score: Callable, points: np.ndarray, shape: tuple[int, ...], h: float) -> np.ndarray:
    """dF/dx at each of a few points (S, D) by forward differences, in one scorer call of S x (D + 1) rows."""
    s, size = points.shape
    rows = np.repeat(points[:, None], size + 1, axis=1)  # (S, D + 1, D)
    rows[:, 1 + np.arange(size), np.arange(size)] += h
    f = score(rows.reshape(-1, *shape).astype(np.float32)).reshape(s, size + 1)
    return (f[:, 1:] - f[:, :1]) / h


def _gradient(score: Callable, point: np.ndarray, shape: tuple[int, ...], h: float) -> np.ndarray:
    """dF/dx at `point` (flat) by forward differences: F(point) and F(point + h e_i), MAX_ROWS rows a call."""
    size = point.size
    grad = np.empty(size)
    f0 = None
    for start in range(0, size, MAX_ROWS - 1):
        idx = np.arange(start, min(start + MAX_ROWS - 1, size))
        rows = np.repeat(point[None], len(idx) + 1, axis=0)
        rows[1 + np.arange(len(idx)), idx] += h
        f = score(rows.reshape(-1, *shape).astype(np.float32))
        f0 = f[0] if f0 is None else f0
        grad[idx] = (f[1:] - f0) / h
    return grad
