"""Data: read a source, split it deterministically, fit preprocessing on the train split.

`load_splits(cfg, task, input_kind, seed)` is the one entry point the trainer uses; `prepare_eval`
applies a run's recorded preprocessing to new data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from toolkit.data.preprocess import apply_spec, encode_labels, fit_spec, flatten_images
from toolkit.data.sources import BUILTIN, RawData, load_source
from toolkit.data.split import split_indices
from toolkit.errors import ToolkitError

__all__ = ["BUILTIN", "Splits", "load_splits", "prepare_eval", "load_source", "apply_spec"]


@dataclass
class Splits:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    spec: dict[str, Any]  # preprocessing + labels + target scaling, JSON-serializable

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def num_outputs(self) -> int:
        labels = self.spec.get("labels")
        return len(labels) if labels else 1


def _adapt(raw: RawData, input_kind: str) -> RawData:
    """Make raw data fit what the model consumes ('tabular' vectors or 'image' tensors)."""
    if input_kind == raw.kind:
        if raw.kind == "image":
            _, c, h, w = raw.x.shape
            raw.image = {**raw.image, "channels": c, "height": h, "width": w}
        return raw
    if input_kind == "tabular" and raw.kind == "image":
        raw.x, raw.feature_names, raw.image = flatten_images(raw.x, raw.image)
        raw.kind = "tabular"
        return raw
    raise ToolkitError(
        f"this model needs image data, but {raw.source} is {raw.kind}; use an mlp recipe instead"
    )


def _targets(raw: RawData, task: str) -> tuple[np.ndarray, list[str] | None]:
    if task == "classify":
        return encode_labels(raw.y, raw.label_names)
    try:
        y = np.asarray(raw.y, dtype=np.float32)
    except (TypeError, ValueError):
        raise ToolkitError(
            f"{raw.source}: the target is not numeric, so it cannot be regressed; use a classify recipe"
        ) from None
    if not np.isfinite(y).all():
        raise ToolkitError(f"{raw.source}: the regression target has missing or infinite values")
    return y, None


def load_splits(cfg: Any, task: str, input_kind: str, seed: int) -> Splits:
    """Read cfg.source, split with `seed`, fit preprocessing on the train split and apply it to all three."""
    raw = load_source(cfg.source, cfg.target, cfg.image_size, cfg.channels)
    raw = _adapt(raw, input_kind)
    y, labels = _targets(raw, task)
    if task == "classify" and len(labels) < 2:
        raise ToolkitError(f"{raw.source}: classification needs at least 2 classes (found {len(labels)})")
    tr, va, te = split_indices(y, cfg.val_fraction, cfg.test_fraction, seed, task == "classify", labels)
    spec = fit_spec(raw.x[tr], raw.kind, raw.feature_names, raw.image)
    spec["source"] = raw.source
    spec["labels"] = labels
    if task == "regress":
        mu, sd = float(y[tr].mean()), float(y[tr].std()) or 1.0
        spec["target"] = {"mean": mu, "std": sd}
    x = apply_spec(spec, raw.x)
    return Splits(x[tr], y[tr], x[va], y[va], x[te], y[te], spec)


def prepare_eval(
    source: str, spec: dict[str, Any], cfg: Any, task: str, input_kind: str
) -> tuple[np.ndarray, np.ndarray]:
    """Read a whole data source and apply a run's recorded preprocessing and label mapping to it."""
    image = spec.get("image") or {}
    channels = image.get("channels", cfg.channels)
    raw = _adapt(load_source(source, cfg.target, cfg.image_size, channels), input_kind)
    expected = tuple(_expected_shape(spec))
    if raw.x.shape[1:] != expected:
        raise ToolkitError(f"{source}: samples have shape {raw.x.shape[1:]}, the model expects {expected}")
    if task == "classify":
        labels = spec["labels"]
        if raw.label_names is not None and np.issubdtype(np.asarray(raw.y).dtype, np.integer):
            names = [raw.label_names[int(i)] for i in raw.y]
        else:
            names = [str(v) for v in raw.y]
        unknown = sorted(set(names) - set(labels))
        if unknown:
            raise ToolkitError(
                f"{source}: labels {unknown[:5]} were not seen in training; known: {', '.join(labels)}"
            )
        index = {v: i for i, v in enumerate(labels)}
        y = np.array([index[v] for v in names], dtype=np.int64)
    else:
        y, _ = _targets(raw, task)
    return apply_spec(spec, raw.x), y


def _expected_shape(spec: dict[str, Any]) -> list[int]:
    if spec["kind"] == "tabular":
        return [len(spec["mean"])]
    im = spec["image"]
    return [im["channels"], im["height"], im["width"]]
