"""Calibration for static INT8: the method and how many train-split rows.

The rows themselves come from toolkit.runtime.evalset.quantization_inputs, read by its CalibrationReader.
"""

from __future__ import annotations

from typing import Any

from toolkit.errors import ToolkitError

CALIBRATIONS = ("minmax", "entropy", "percentile")
DEFAULT_SAMPLES = 256  # calibration rows from the train split (recipe key quantize.calibration_samples)


def method_of(name: str) -> Any:
    """onnxruntime's CalibrationMethod for a --calibration value."""
    from onnxruntime.quantization import CalibrationMethod

    if name not in CALIBRATIONS:
        raise ToolkitError(f"unknown --calibration {name!r}; allowed: {', '.join(CALIBRATIONS)}")
    return {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[name]


def sample_count(meta: dict[str, Any], samples: int | None) -> int:
    """--samples, else the recipe's quantize.calibration_samples, else DEFAULT_SAMPLES; at least 1."""
    if samples is None:
        recipe_q = (meta.get("recipe") or {}).get("quantize") or {}
        samples = int(recipe_q.get("calibration_samples") or DEFAULT_SAMPLES)
    if samples < 1:
        raise ToolkitError(f"--samples must be at least 1 (got {samples})")
    return samples
