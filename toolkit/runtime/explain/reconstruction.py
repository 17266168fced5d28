"""Why an autoencoder flagged an input: where its reconstruction is wrong.

The model's `reconstruction` output against its input, both in the model's standardized units, squared: the
per-pixel (mean over channels) or per-feature error. Its mean is the anomaly score the model reports, so the
map shows exactly which parts made the score.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._core import InputError


def reconstruction_error(
    run: Callable[[dict], dict], meta: dict, x: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float]:
    """(squared error with x's shape, the reconstruction, the model's score) for one preprocessed row."""
    name = meta["inputs"][0]["name"]
    outputs = run({name: x[None].astype(np.float32)})
    if "reconstruction" not in outputs:
        raise InputError(f"this autoencoder has no `reconstruction` output (outputs: {', '.join(outputs)})")
    recon = outputs["reconstruction"][0].astype(np.float64)
    score = outputs.get("score")
    error = (x.astype(np.float64) - recon) ** 2
    return error, recon, float(np.ravel(score)[0]) if score is not None else float(error.mean())
