"""KernelSHAP (Lundberg & Lee 2017) over an onnxruntime predict function, through the `shap` library.

The background is the training mean (one row of zeros in the model's standardized units), so a feature's
value is its Shapley contribution to moving the score from F(mean) to F(x) with absent features at their
mean; they add up to that difference exactly (shap's efficiency constraint). KernelSHAP samples coalitions,
`--samples` of them (shap evaluates them in one batch), with the sampling seeded: the same seed gives the same
values. Needs `pip install "toolkit[explain]"` (or `pip install shap` on a device).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable

import numpy as np

from ._core import InputError


def default_samples(width: int) -> int:
    """shap's own "auto" budget for `width` features."""
    return 2 * width + 2048


def kernel_shap(
    score: Callable[[np.ndarray], np.ndarray], x: np.ndarray, background: np.ndarray, samples: int, seed: int
) -> tuple[np.ndarray, float]:
    """(D,) SHAP values of the feature row x and the base value F(background)."""
    try:
        import shap
    except ImportError:
        raise InputError(
            'KernelSHAP needs the shap library: pip install "toolkit[explain]" (or pip install shap), '
            "or use --method occlusion"
        ) from None
    x = np.asarray(x, dtype=np.float32).reshape(1, -1)
    with _seeded(seed), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # shap's notices about its own defaults, not the user's concern
        explainer = shap.KernelExplainer(lambda b: score(np.asarray(b, dtype=np.float32)), background)
        values = explainer.shap_values(x, nsamples=int(samples), l1_reg=False, silent=True)
    return np.asarray(values, dtype=np.float64).reshape(-1), float(np.ravel(explainer.expected_value)[0])


@contextlib.contextmanager
def _seeded(seed: int):
    """shap samples coalitions with numpy's global generator: seed it, and put its state back afterwards."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)
