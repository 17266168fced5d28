"""Data: read a source, split it deterministically, fit preprocessing on the train split.

`load_splits(cfg, task, input_kind, seed)` is the one entry point the trainer uses; `prepare_eval`
applies a run's recorded preprocessing to new data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from toolkit.data import series as ts
from toolkit.data.image_cache import ImageSet
from toolkit.data.image_folder import IMAGENET, ImageOptions, channel_stats
from toolkit.data.preprocess import apply_spec, encode_labels, fit_spec, flatten_images
from toolkit.data.sources import BUILTIN, RawData, load_source
from toolkit.data.split import label_subset, split_indices
from toolkit.data.table import encode as encode_table
from toolkit.data.table import fit_columns, needs_encoding
from toolkit.data.text import BUILTIN_TEXT, load_text
from toolkit.data.tokenizer import Tokenizer
from toolkit.errors import ToolkitError

__all__ = ["BUILTIN", "BUILTIN_TEXT", "Splits", "load_splits", "prepare_eval", "load_source", "apply_spec"]

# What each kind of model input is called in messages, and the recipes that take it.
KIND_HINT = {
    "tabular": "tabular data (use an mlp recipe)",
    "image": "images (use cnn or mlp)",
    "series": "a time series (use a forecast recipe: rnn, lstm, gru, transformer-forecast)",
    "text": "text (use a text recipe: lstm-text, gru-text, transformer-text)",
}


@dataclass
class Splits:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    spec: dict[str, Any]  # preprocessing + labels + target scaling, JSON-serializable
    # Task-specific extras: forecast baselines ("baselines": name -> test predictions) and the series with
    # the test windows' positions, for plots.
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def num_outputs(self) -> int:
        """Classes for classifiers, else the width of the targets (the horizon for forecasts)."""
        if (
            "projection" in self.spec
        ):  # a contrastive run: the projection head's width (toolkit.train.contrastive)
            return int(self.spec["projection"])
        labels = self.spec.get("labels")
        if labels:
            return len(labels)
        return int(self.y_train.shape[1]) if self.y_train.ndim == 2 else 1


def _adapt(raw: RawData, input_kind: str, channels: int | None = None) -> RawData:
    """Make raw data fit what the model consumes ('tabular' vectors or 'image' tensors)."""
    if input_kind == raw.kind:
        if raw.kind == "image" and channels == 3 and raw.x.shape[1] == 1 and isinstance(raw.x, np.ndarray):
            raw.x = np.repeat(raw.x, 3, axis=1)  # grayscale arrays (builtin:digits, .npz) for RGB models
        if raw.kind == "image":
            _, c, h, w = raw.x.shape
            raw.image = {**raw.image, "channels": c, "height": h, "width": w}
        return raw
    if input_kind == "tabular" and raw.kind == "image":
        raw.x, raw.feature_names, raw.image = flatten_images(raw.x, raw.image)
        raw.kind = "tabular"
        return raw
    raise ToolkitError(f"this model needs {input_kind} data, but {raw.source} is {KIND_HINT[raw.kind]}")


def _targets(raw: RawData, task: str) -> tuple[np.ndarray, list[str] | None]:
    if task in (
        "classify",
        "reconstruct",
        "generate",
        "contrastive",
    ):  # class labels (conditional GAN, anomaly classes)
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


def builtin_kind(source: str) -> str | None:
    """The kind of a builtin:NAME source ('tabular', 'image', 'series', 'text'), or None if not builtin."""
    if not source.startswith("builtin:"):
        return None
    name = source.split(":", 1)[1]
    if name in ts.BUILTIN_SERIES:
        return "series"
    if name in BUILTIN_TEXT:
        return "text"
    if name == "digits":
        return "image"
    if name in BUILTIN:
        return "tabular"
    allowed = sorted([*BUILTIN, *ts.BUILTIN_SERIES, *BUILTIN_TEXT])
    raise ToolkitError(f"unknown builtin dataset {name!r}; allowed: {', '.join(allowed)}")


def _check_kind(source: str, input_kind: str) -> None:
    kind = builtin_kind(source)
    wants = {"series": "series", "tokens": "text"}.get(input_kind)
    if kind is not None and (kind in ("series", "text") or wants) and kind != wants:
        needed = KIND_HINT[wants] if wants else f"{input_kind} data"
        raise ToolkitError(f"this recipe needs {needed.split(' (')[0]}, but {source} is {KIND_HINT[kind]}")


def load_splits(
    cfg: Any, task: str, input_kind: str, seed: int, spec: dict[str, Any] | None = None
) -> Splits:
    """Read cfg.source, split it (with `seed` where random), fit preprocessing on the train split only.

    With `spec` (a run's recorded preprocessing) nothing is fitted: the recorded statistics, labels and
    tokenizer are applied, so a run is re-scored exactly as it was trained."""
    _check_kind(cfg.source, input_kind)
    if input_kind == "series":
        return _series_splits(cfg, spec)
    if input_kind == "tokens":
        return _text_splits(cfg, seed, spec)
    stream = input_kind == "image" and task in ("classify", "regress")  # image folders stay lazy
    options = ImageOptions.of(cfg, spec)
    categorical = getattr(cfg, "categorical", None)
    raw = load_source(cfg.source, cfg.target, cfg.image_size, cfg.channels, options, stream, categorical)
    raw = _adapt(raw, input_kind, cfg.channels)
    y, labels = _targets(raw, task)
    if task == "classify" and len(labels) < 2:
        raise ToolkitError(f"{raw.source}: classification needs at least 2 classes (found {len(labels)})")
    stratify = task in ("classify", "reconstruct", "generate", "contrastive")
    tr, va, te = split_indices(y, cfg.val_fraction, cfg.test_fraction, seed, stratify, labels)
    classes = labels
    if task == "reconstruct":
        # Novelty detection: train on normal samples only; validation and test keep both kinds.
        flags, anomaly = anomaly_flags(y, labels, cfg.normal_classes, cfg.anomaly_classes, raw.source)
        keep = flags >= 0  # classes named neither normal nor anomaly (when both lists are given) are left out
        tr, va, te = tr[keep[tr] & (flags[tr] == 0)], va[keep[va]], te[keep[te]]
        y, labels = flags, None
    labelled = tr  # data.label_fraction: few labels; the images' statistics still come from the whole split
    if task in ("classify", "regress"):
        labelled = label_subset(y, tr, getattr(cfg, "label_fraction", 1.0), seed, stratify)
    if spec is None:
        if needs_encoding(raw.table):  # categories or missing values: the column encoding (data/table.py)
            spec = fit_columns(raw.table, tr, cfg, raw.source)
        else:
            spec = _fit(raw, tr, cfg, seed)
        spec["source"] = raw.source
        spec["labels"] = labels
        if task == "regress":
            mu, sd = float(y[labelled].mean()), float(y[labelled].std()) or 1.0
            spec["target"] = {"mean": mu, "std": sd}
        if task == "reconstruct":
            spec["anomaly"] = anomaly
        if task == "generate":  # a tanh generator: pixels in [0, 1] map to [-1, 1]
            spec["mean"] = [0.5] * len(spec["mean"])
            spec["std"] = [0.5] * len(spec["std"])
    elif task == "reconstruct" and spec.get("anomaly", {}).get("classes") != classes:
        raise ToolkitError(f"{raw.source}: its classes {classes} differ from the run's")
    elif task != "reconstruct" and labels != spec.get("labels"):
        raise ToolkitError(f"{raw.source}: its labels {labels} differ from the run's {spec.get('labels')}")
    if isinstance(raw.x, ImageSet):
        xs = [raw.x.subset(part, spec["mean"], spec["std"]) for part in (labelled, va, te)]
        return Splits(xs[0], y[labelled], xs[1], y[va], xs[2], y[te], spec)
    x = _apply(spec, raw)
    return Splits(x[labelled], y[labelled], x[va], y[va], x[te], y[te], spec)


def _fit(raw: RawData, train: np.ndarray, cfg: Any, seed: int) -> dict[str, Any]:
    """The preprocessing spec fitted on the train split; a lazy image folder is measured on a sample, and
    `data.normalize: imagenet` (pretrained backbones) records ImageNet's statistics instead."""
    if not isinstance(raw.x, ImageSet):
        spec = fit_spec(raw.x[train], raw.kind, raw.feature_names, raw.image)
    else:
        mean, std = channel_stats(raw.x, train, seed)
        spec = {"kind": "image", "mean": mean, "std": std, "missing": None, "image": dict(raw.image)}
    if raw.kind == "image" and getattr(cfg, "normalize", "fit") == "imagenet":
        if spec["image"]["channels"] != 3:
            raise ToolkitError("data.normalize: imagenet needs RGB images (data.channels: 3)")
        spec["mean"], spec["std"] = list(IMAGENET["mean"]), list(IMAGENET["std"])
    return spec


def _apply(spec: dict[str, Any], raw: RawData) -> np.ndarray:
    """The recorded preprocessing applied to raw data: a table's column encoding, or standardization."""
    if spec.get("columns"):
        if raw.table is None:
            raise ToolkitError(f"{raw.source}: the model was trained on a CSV table; give a CSV file")
        return encode_table(spec, raw.table, raw.source)
    if raw.table is not None and raw.table.categorical:
        raise ToolkitError(
            f"{raw.source}: column {raw.table.categorical[0]!r} is not numeric; the model takes numbers only"
        )
    return apply_spec(spec, raw.x)


def anomaly_flags(
    y: np.ndarray, classes: list[str], normal: list[str] | None, anomalous: list[str] | None, source: str
) -> tuple[np.ndarray, dict[str, Any]]:
    """Per-sample flags from class indices: 0 normal, 1 anomaly, -1 neither (left out)."""
    for name, given in (("normal_classes", normal), ("anomaly_classes", anomalous)):
        unknown = [c for c in given or [] if c not in classes]
        if unknown:
            raise ToolkitError(
                f"data.{name} names {', '.join(map(repr, unknown))}, not a class of {source}; "
                f"classes: {', '.join(classes)}"
            )
    anomalous = list(anomalous or [])
    if normal:  # named normal classes: the others are anomalies unless anomalies are named too
        normal = list(normal)
        anomalous = anomalous or [c for c in classes if c not in normal]
    else:
        normal = [c for c in classes if c not in anomalous]
    if not normal:
        raise ToolkitError("data.normal_classes leaves no normal class to train on")
    index = {c: i for i, c in enumerate(classes)}
    flags = np.full(len(y), -1, dtype=np.int64)
    flags[np.isin(y, [index[c] for c in normal])] = 0
    flags[np.isin(y, [index[c] for c in anomalous])] = 1
    return flags, {"classes": classes, "normal_classes": normal, "anomaly_classes": anomalous}


def _text_splits(cfg: Any, seed: int, spec: dict[str, Any] | None = None) -> Splits:
    raw = load_text(cfg.source, cfg.text_column, cfg.target)
    y, labels = encode_labels(raw.y, None)
    if len(labels) < 2:
        raise ToolkitError(f"{raw.source}: classification needs at least 2 classes (found {len(labels)})")
    tr, va, te = split_indices(y, cfg.val_fraction, cfg.test_fraction, seed, True, labels)
    if spec is None:
        t = cfg.tokenizer
        tok = Tokenizer.fit(raw.x[tr], t.level, t.lowercase, t.max_vocab, t.min_freq, t.max_length)
        spec = {
            "kind": "tokens",
            "source": raw.source,
            "text_column": cfg.text_column,
            "labels": labels,
            "tokenizer": tok.to_dict(),
        }
    else:
        tok = Tokenizer.from_dict(spec["tokenizer"])
        y = _map_labels([labels[i] for i in y], spec["labels"], raw.source)
    x = tok.encode_batch(list(raw.x))  # (N, L) right-padded to the longest text; batches trim further
    return Splits(x[tr], y[tr], x[va], y[va], x[te], y[te], spec)


def _series_splits(cfg: Any, recorded: dict[str, Any] | None = None) -> Splits:
    s = ts.load_series(cfg.source, cfg.target, cfg.time_column)
    w, h, n = cfg.window, cfg.horizon, len(s.values)
    x, y, starts = ts.make_windows(s.values, w, h)
    train_end, val_end = ts.chronological_parts(n, cfg.val_fraction, cfg.test_fraction)
    tr, va, te = ts.split_windows(starts, h, train_end, val_end, n)
    parts = {
        "train": tr.sum(),
        "validation": va.sum() if cfg.val_fraction else 1,
        "test": te.sum() if cfg.test_fraction else 1,
    }
    empty = [k for k, v in parts.items() if v == 0]
    if empty:
        raise ToolkitError(
            f"{s.source}: {n} values leave no {empty[0]} windows for window {w} + horizon {h}; "
            "use a smaller data.window or a longer series"
        )
    spec = recorded or {**ts.series_spec(s, train_end, w, h), "source": s.source}
    mean, std = spec["mean"][0], spec["std"][0]
    xs = ((x - mean) / std)[..., None].astype(np.float32)  # (N, window, 1)
    y = y.astype(np.float32)  # (N, horizon) in the series' own units
    baselines = {"naive": ts.naive_forecast(x[te], h), "ar": ts.predict_ar(ts.fit_ar(x[tr], y[tr]), x[te])}
    extra = {
        "baselines": baselines,
        "values": s.values,
        "times": s.times,
        "test_starts": starts[te],
    }
    return Splits(xs[tr], y[tr], xs[va], y[va], xs[te], y[te], spec, extra)


def prepare_eval(
    source: str, spec: dict[str, Any], cfg: Any, task: str, input_kind: str
) -> tuple[np.ndarray, np.ndarray]:
    """Read a whole data source and apply a run's recorded preprocessing and label mapping to it."""
    _check_kind(source, input_kind)
    if input_kind == "series":
        s = ts.load_series(source, cfg.target, cfg.time_column)
        x, y, _ = ts.make_windows(s.values, spec["window"], spec["horizon"])
        xs = ((x - spec["mean"][0]) / spec["std"][0])[..., None].astype(np.float32)
        return xs, y.astype(np.float32)
    if input_kind == "tokens":
        raw = load_text(source, spec.get("text_column", cfg.text_column), cfg.target)
        tok = Tokenizer.from_dict(spec["tokenizer"])
        return tok.encode_batch(list(raw.x)), _map_labels([str(v) for v in raw.y], spec["labels"], source)
    image = spec.get("image") or {}
    channels = image.get("channels", cfg.channels)
    options = ImageOptions.of(cfg, spec)
    categorical = [c["name"] for c in spec.get("columns") or [] if c["kind"] == "category"]
    raw = load_source(source, cfg.target, cfg.image_size, channels, options, categorical=categorical or None)
    raw = _adapt(raw, input_kind, channels)
    expected = tuple(_expected_shape(spec))
    if not spec.get("columns") and raw.x.shape[1:] != expected:
        raise ToolkitError(f"{source}: samples have shape {raw.x.shape[1:]}, the model expects {expected}")
    if task == "classify":
        if raw.label_names is not None and np.issubdtype(np.asarray(raw.y).dtype, np.integer):
            names = [raw.label_names[int(i)] for i in raw.y]
        else:
            names = [str(v) for v in raw.y]
        y = _map_labels(names, spec["labels"], source)
    else:
        y, _ = _targets(raw, task)
    return _apply(spec, raw), y


def _map_labels(names: list[str], labels: list[str], source: str) -> np.ndarray:
    unknown = sorted(set(names) - set(labels))
    if unknown:
        raise ToolkitError(
            f"{source}: labels {unknown[:5]} were not seen in training; known: {', '.join(labels)}"
        )
    index = {v: i for i, v in enumerate(labels)}
    return np.array([index[v] for v in names], dtype=np.int64)


def _expected_shape(spec: dict[str, Any]) -> list[int]:
    if spec["kind"] == "tabular":
        return [len(spec["mean"])]
    im = spec["image"]
    return [im["channels"], im["height"], im["width"]]
