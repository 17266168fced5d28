"""The number an explanation explains, computed for a batch of model inputs.

classify: the target class's probability (the model's `probabilities` output, else the softmax of `logits`);
regress: one predicted value (a column of `prediction`); forecast: one step of the forecast, or the mean of
the horizon. Attributions are in these units: an occlusion attribution of 0.2 on a pixel means that hiding it
lowers the target's probability by 0.2.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._core import InputError, softmax, task_outputs

CHUNK = 1024  # rows per onnxruntime call: large enough to amortize the call, small enough for memory


class Scorer:
    """`scorer(batch) -> (N,)` scores of the target; `scorer.matrix(batch) -> (N, K)` every candidate.

    `run(feeds) -> outputs` runs the model; `feed(batch) -> feeds` turns a batch of rows (an array, or a list
    of token-id lists or texts) into its inputs. `index` is None for the mean over every column (a forecast's
    whole horizon)."""

    def __init__(self, meta: dict, run: Callable[[dict], dict], feed: Callable) -> None:
        self.meta, self.run, self.feed = meta, run, feed
        self.index: int | None = 0
        self.calls = 0  # rows scored so far: the budget actually spent

    def matrix(self, batch) -> np.ndarray:
        parts = []
        for start in range(0, len(batch), CHUNK):
            chunk = batch[start : start + CHUNK]
            parts.append(_columns(self.meta, self.run(self.feed(chunk))))
            self.calls += len(chunk)
        return np.concatenate(parts) if parts else np.zeros((0, 1))

    def __call__(self, batch) -> np.ndarray:
        m = self.matrix(batch)
        return m.mean(axis=1) if self.index is None else m[:, self.index]


def _columns(meta: dict, outputs: dict) -> np.ndarray:
    """The task's output as an (N, K) float64 matrix: class probabilities, predictions or forecast steps."""
    task = meta["task"]
    outputs = task_outputs(meta, outputs)  # an imported model's outputs under the toolkit's names
    if task == "classify":
        probs = outputs.get("probabilities")
        return softmax(outputs["logits"]) if probs is None else probs.astype(np.float64)
    name = {"regress": "prediction", "forecast": "forecast"}.get(task)
    if name is None or name not in outputs:
        raise InputError(f"a {task} model has no output to explain (outputs: {', '.join(outputs)})")
    out = outputs[name].astype(np.float64)
    return out.reshape(len(out), -1)


def resolve_target(meta: dict, target, row_scores: np.ndarray) -> tuple[int | None, str]:
    """--target -> (column index or None for the mean, its name); the default is the predicted class for a
    classifier, the only value of a regressor and the horizon's mean for a forecaster."""
    task, width = meta["task"], row_scores.shape[-1]
    text = None if target is None else str(target).strip()
    if task == "classify":
        labels = meta.get("labels") or [str(i) for i in range(width)]
        if text is None:
            best = int(np.argmax(row_scores))
            return best, labels[best]
        if text in labels:
            return labels.index(text), text
        if text.isdigit() and int(text) < len(labels):
            return int(text), labels[int(text)]
        shown = ", ".join(labels[:20]) + (", ..." if len(labels) > 20 else "")
        raise InputError(
            f"--target {text!r} is not a label of this model: {shown} (or an index 0-{width - 1})"
        )
    if task == "forecast":
        if text is None or text == "mean":
            return None, f"mean of the {width}-step forecast" if width > 1 else "step 1"
        if text.isdigit() and 1 <= int(text) <= width:
            return int(text) - 1, f"step {int(text)}"
        raise InputError(f"--target {text!r}: a forecaster's target is a step 1-{width} or 'mean'")
    if text is None:
        if width == 1:
            return 0, "value"
        raise InputError(f"this model predicts {width} values; choose one with --target 0-{width - 1}")
    if text.isdigit() and int(text) < width:
        return int(text), f"value {text}"
    raise InputError(f"--target {text!r}: this model predicts {width} values; give an index 0-{width - 1}")
