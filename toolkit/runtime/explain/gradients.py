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

STEP = 1e-2  # finite-difference step, in the model's (standardized) input units
MAX_ROWS = 4096  # rows per group of path points sent to the scorer


def steps_for(budget: int, size: int) -> int:
    """Quadrature steps that fit `budget` model evaluations for an input of `size` values (at least 2)."""
    return max(2, budget // (size + 1))


def integrated_gradients(
    score: Callable[[np.ndarray], np.ndarray], x: np.ndarray, baseline, steps: int, h: float = STEP
) -> tuple[np.ndarray, float]:
    """Attributions of x (same shape) and the completeness gap: sum(attributions) - (F(x) - F(baseline)),
    which is small when the steps suffice."""
    b = np.broadcast_to(np.asarray(baseline, dtype=np.float64), x.shape).ravel()
    d = x.astype(np.float64).ravel() - b
    size = d.size
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    alphas, weights = (nodes + 1) / 2, weights / 2
    grad = np.zeros(size)
    eye = np.eye(size) * h
    per_group = max(1, MAX_ROWS // (size + 1))
    for start in range(0, steps, per_group):
        a = alphas[start : start + per_group]
        points = b[None] + a[:, None] * d[None]  # (S, D)
        rows = np.concatenate([points[:, None], points[:, None] + eye[None]], axis=1)  # (S, D + 1, D)
        f = score(rows.reshape(-1, *x.shape).astype(np.float32)).reshape(len(a), size + 1)
        grad += (weights[start : start + per_group, None] * (f[:, 1:] - f[:, :1]) / h).sum(axis=0)
    attributions = (grad * d).reshape(x.shape)
    ends = score(np.stack([x, b.reshape(x.shape)]).astype(np.float32))
    return attributions, float(attributions.sum() - (ends[0] - ends[1]))
