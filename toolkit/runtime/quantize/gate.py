"""The accuracy gate and the choice: each candidate's metric against fp32, and which candidate is kept.

The gate metric is the task's main metric (toolkit.metrics.TASK_METRICS) on the validation split, against
the fp32 model on the same rows; the drop is absolute for accuracy-like metrics and relative for error
metrics (MAE, MSE), and must be at most `max_drop`. `auto` keeps the fastest candidate that passes the gate
and is faster than fp32 (Candidate.faster); a forced mode over budget is refused unless forced.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from toolkit.metrics import TASK_METRICS

DEFAULT_MAX_DROP = 0.01  # absolute for accuracy-like metrics, relative for error metrics
# "Faster" means: never slower (speed-up >= 1 at every batch size, paired per round) and at least MIN_SPEEDUP
# at one of them. Two timings of one model differ by a few percent on a shared machine: a tie is not a win.
MIN_SPEEDUP = 1.05


@dataclass
class Candidate:
    """One quantized variant: how it was made, and what it measured."""

    name: str  # "static", "dynamic", "fp16", "static -3 nodes"...
    mode: str
    proto: Any = None
    excluded: list[str] = field(default_factory=list)
    error: str | None = None
    metric: float | None = None
    drop: float | None = None
    passed_gate: bool = False
    latency: dict[int, float] = field(default_factory=dict)  # batch -> p50 ms
    speedup: dict[int, float] = field(default_factory=dict)
    size: int = 0
    rewrites: list[str] = field(default_factory=list)  # graph rewrites made before quantizing

    @property
    def faster(self) -> bool:
        s = self.speedup.values()
        return bool(self.speedup) and min(s) >= 1.0 and max(s) >= MIN_SPEEDUP

    def row(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "mode": self.mode,
            "excluded_nodes": self.excluded,
            "rewrites": self.rewrites,
            "error": self.error,
            "metric": self.metric,
            "drop": self.drop,
            "passed_gate": self.passed_gate,
            "p50_ms": {str(b): v for b, v in self.latency.items()},
            "speedup": {str(b): v for b, v in self.speedup.items()},
            "faster": self.faster,
            "bytes": self.size,
        }


@dataclass
class Gate:
    """The metric a model is gated on, the fp32 model's value and outputs, and the budget."""

    meta: dict[str, Any]
    metric: str
    direction: str  # "max" | "min"
    y: Any  # validation targets (None for a generator)
    reference: dict[str, np.ndarray]  # the fp32 model's outputs on the validation rows
    max_drop: float
    base: float = 0.0

    def __post_init__(self) -> None:
        self.base = score(self.meta, self.metric, self.reference, self.y, self.reference)

    def judge(self, c: Candidate, outputs: dict[str, np.ndarray]) -> None:
        """Score a built candidate's outputs: its metric, its drop and whether it passes."""
        c.metric = score(self.meta, self.metric, outputs, self.y, self.reference)
        c.drop = drop_of(self.direction, self.base, c.metric)
        c.passed_gate = bool(np.isfinite(c.metric)) and c.drop <= self.max_drop + 1e-12


def main_metric(meta: dict[str, Any], y: np.ndarray | None) -> tuple[str, str]:
    """(metric name, "max"|"min") that gates quantization for this model: the task's main metric
    (toolkit.metrics.TASK_METRICS), except where the fp32 model is the better yardstick: an anomaly detector
    whose validation split has both kinds is gated on detection quality (roc_auc), and a generator on
    `fidelity` to the fp32 generator's images (its own metric needs the judge, a PyTorch model)."""
    task = meta["task"]
    if task == "reconstruct" and y is not None and (y == 0).any() and (y == 1).any():
        return "roc_auc", "max"
    if task == "generate" or TASK_METRICS[task].score is None:
        return "fidelity", "max"  # 1 - mean |pixel difference| to the fp32 generator's images
    return TASK_METRICS[task].main, TASK_METRICS[task].direction


def score(meta: dict[str, Any], name: str, out: dict[str, np.ndarray], y: Any, ref: Any) -> float:
    """The gate metric of one model's outputs on the validation rows."""
    if name == "fidelity":
        first = next(iter(out))
        return float(1.0 - np.mean(np.abs(out[first].astype(np.float64) - ref[first])))
    return float(TASK_METRICS[meta["task"]].score(out, y, meta)[name])


def drop_of(direction: str, base: float, value: float) -> float:
    """How much worse `value` is than `base`: points for accuracy-like metrics, a fraction for errors."""
    if direction == "max":
        return base - value
    return (value - base) / abs(base) if base else value - base


def choose(
    candidates: Sequence[Candidate], mode: str, force: bool, metric: str, direction: str, max_drop: float
) -> tuple[Candidate | None, str, str | None]:
    """(the candidate to write or None, the decision in words, the refusal message or None).

    auto: the candidate with the best speed-up (geometric over the batch sizes) among those that pass
    the gate AND are faster than fp32 (Candidate.faster); none -> fp32 is kept. A forced mode:
    the first try of that mode within the budget; when every try is over budget, the least bad one is
    refused (or written, marked as failing the gate, with force)."""
    built = [c for c in candidates if c.proto is not None]
    passing = [c for c in built if c.passed_gate]
    if mode == "auto":
        eligible = [c for c in passing if c.faster]
        if eligible:
            best = max(eligible, key=lambda c: math.prod(c.speedup.values()))
            return best, f"kept {best.name}", None
        if not built:
            why = "no candidate could be built for this graph"
        elif not passing:
            worst = min(built, key=lambda c: c.drop if c.drop is not None else math.inf)
            why = (
                f"no candidate kept {metric} within the budget "
                f"(best: {worst.name}, drop {fmt_drop(worst.drop, direction)})"
            )
        else:
            why = "every candidate within the accuracy budget is slower than fp32"
        return None, f"kept fp32: {why}", None
    if not built:
        return None, "nothing built", None
    if passing:
        return passing[0], f"kept {passing[0].name}", None
    least = min(built, key=lambda c: c.drop if c.drop is not None else math.inf)
    if force:
        return least, f"kept {least.name} (forced, over budget)", None
    refused = (
        f"--mode {mode}: {metric} drops by {fmt_drop(least.drop, direction)} "
        f"(budget {fmt_drop(max_drop, direction)}); nothing written (--force writes it anyway)"
    )
    return least, "refused: " + refused, refused


def fmt_drop(drop: float | None, direction: str) -> str:
    if drop is None:
        return "n/a"
    return f"{drop * 100:+.2f} points" if direction == "max" else f"{drop * 100:+.2f}%"
