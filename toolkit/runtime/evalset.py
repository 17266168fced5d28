"""The rows a model is measured on, rebuilt from its metadata alone (validate, quantize and bench).

- evaluation_inputs: the recipe's test split (validate), or sampled inputs for a generator;
- quantization_inputs: the validation split (quantize's accuracy gate) and a seeded sample of the train
  split (its calibration rows), read through a CalibrationReader;
- synthetic_feeds: inputs shaped by the metadata, for timing (bench) where no data is needed.

The splits are the recipe's: same source, fractions and seed, with the preprocessing recorded in the inputs
(mean/std, tokenizer, window) applied, never refitted. `data` points at the same data elsewhere (a moved
CSV, or a copy on a machine without the builtin datasets' packages). No torch.
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from toolkit.errors import ToolkitError
from toolkit.runtime import schema

GENERATE_SAMPLES = 64  # a generator has no test split: it runs on this many draws of z and label
SEQUENCE_LENGTH = 32  # tokens per synthetic text (capped at the tokenizer's max_length)
DEFAULT_IMAGE_SIZE = 224  # a foreign image-like input's open height and width, when --shape does not say
DEFAULT_DIM = 32  # any other open dim of a foreign model's input (sequence length, ...)
CALIBRATION_BATCH = 32  # rows per batch the calibration reader hands to onnxruntime
SEED = 0


@dataclass
class Inputs:
    """What the model runs on: feeds by input name, targets (None: nothing to score) and their origin."""

    feeds: dict[str, np.ndarray]
    y: np.ndarray | None
    source: str
    samples: int


# --------------------------------------------------------------------------------------------- recipe splits
def spec_from_metadata(meta: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The input kind ("tabular", "image", "series", "tokens") and the preprocessing spec that
    toolkit.data.load_splits applies, rebuilt from the metadata's first input."""
    pre = meta["inputs"][0].get("preprocessing") or {}
    labels = meta.get("labels") if meta["task"] != "reconstruct" else None
    if pre.get("type") == "tokenize":
        spec: dict[str, Any] = {"kind": "tokens", "tokenizer": pre["tokenizer"], "labels": labels}
        return "tokens", spec
    if pre.get("type") != "standardize":
        raise ToolkitError(
            f"input {meta['inputs'][0]['name']!r} records no preprocessing to rebuild the test split with"
        )
    if "window" in pre:  # a series: one mean and std, shared by the targets (toolkit.data.series)
        mean, std = float(pre["mean"]), float(pre["std"])
        spec = {"kind": "series", "mean": [mean], "std": [std], "target": {"mean": mean, "std": std}}
        spec.update(window=pre["window"], horizon=pre["horizon"], labels=None)
        return "series", spec
    kind = "image" if pre.get("per") == "channel" else "tabular"
    spec = {"kind": kind, "mean": pre["mean"], "std": pre["std"], "labels": labels}
    if pre.get("image"):
        spec["image"] = pre["image"]
    if kind == "tabular":
        spec["feature_names"] = pre.get("feature_names")
        if pre.get("columns"):
            spec.update(columns=pre["columns"], ignored=pre.get("ignored") or [])
    if meta["task"] == "reconstruct":
        spec["anomaly"] = meta.get("anomaly")
        spec["threshold"] = schema.dig(meta, "thresholds", "score", "value")
    return kind, spec


def recipe_splits(meta: dict[str, Any], data: str | None = None) -> Any:
    """The train/validation/test splits of the model's recipe (toolkit.data.Splits), rebuilt from the
    metadata alone: same source, fractions and seed, the recorded preprocessing applied, never refitted."""
    from toolkit.data import load_splits
    from toolkit.recipe import recipe_from_dict

    raw = copy.deepcopy(meta["recipe"])
    if data is not None:  # a relative path is resolved here, as `toolkit train --data` does
        raw["data"]["source"] = data if data.startswith("builtin:") else os.path.abspath(data)
    rec = recipe_from_dict(raw)
    kind, spec = spec_from_metadata(meta)
    source = rec.data.source
    try:
        splits = load_splits(rec.data, rec.task, kind, rec.train.seed, spec=spec)
    except ToolkitError as exc:
        hint = "" if data is not None else "; pass --data with the data the model was trained on"
        raise ToolkitError(f"cannot rebuild the data splits: {exc}{hint}") from None
    except ImportError as exc:  # a builtin dataset's package (the training extra) is not installed
        raise ToolkitError(
            f"reading {source} needs the {exc.name} package (pip install 'toolkit[train]'), "
            "or pass --data with a copy of the data"
        ) from None
    splits.extra["source"] = source
    return splits


def split_inputs(meta: dict[str, Any], splits: Any, which: str) -> Inputs:
    """One split ("train", "val" or "test") of recipe_splits() as the model's first input."""
    x, y = getattr(splits, f"x_{which}"), getattr(splits, f"y_{which}")
    if which != "train" and not isinstance(x, np.ndarray):  # an image folder's lazy split, read now
        x = np.asarray(x)  # (the train split stays lazy: only the calibration sample of it is read)
    name = {"val": "validation"}.get(which, which)
    source = f"{splits.extra['source']} ({name} split)"
    return Inputs({meta["inputs"][0]["name"]: x}, y, source, len(x))


def generator_inputs(meta: dict[str, Any]) -> Inputs:
    """GENERATE_SAMPLES seeded draws of every input of a generator: normal noise, every class in turn."""
    rng = np.random.default_rng(SEED)
    feeds = {}
    for port in meta["inputs"]:
        dims = [GENERATE_SAMPLES if isinstance(d, str) else d for d in port["shape"]]
        if port["dtype"].startswith("int"):  # class indices, every class in turn
            feeds[port["name"]] = (np.arange(GENERATE_SAMPLES) % len(meta["labels"])).astype(port["dtype"])
        else:
            feeds[port["name"]] = rng.standard_normal(dims).astype(port["dtype"])
    source = f"{GENERATE_SAMPLES} sampled inputs (a generator has no test split)"
    return Inputs(feeds, None, source, GENERATE_SAMPLES)


def evaluation_inputs(meta: dict[str, Any], data: str | None = None) -> Inputs:
    """The test split of the model's recipe, preprocessed as recorded; a generator gets sampled inputs;
    an imported model (no recipe) gets the whole labelled `data` (labelled_inputs)."""
    if meta["task"] == "generate":
        return generator_inputs(meta)
    if meta.get("imported"):
        return labelled_inputs(meta, data)
    return split_inputs(meta, recipe_splits(meta, data), "test")


# --------------------------------------------------------------------------------------------- labelled data
def labelled_inputs(meta: dict[str, Any], data: str | None) -> Inputs:
    """Labelled data for a model without a recipe (toolkit import): an image folder (one sub-folder per
    label), a CSV with a target column or an .npz with x and y, read by toolkit.data's readers (as
    training reads them) and preprocessed from the model's metadata alone."""
    from toolkit.data import load_source

    if data is None:
        raise ToolkitError(
            "this model was imported (toolkit import): it has no recipe to rebuild a test split from; "
            "pass --data with labelled data (an image folder, a CSV with a target column or an .npz with x, y)"
        )
    from toolkit.runtime import processing

    kind = processing.input_kind(meta)
    geom = processing.image_geometry(meta)
    if kind == "image" and geom[1] != geom[2] and os.path.isdir(data):
        raise ToolkitError(
            f"{data}: an image folder is read at a square size; this model takes {geom[2]}x{geom[1]} (give an .npz)"
        )
    target = _csv_target(meta, data) if data.lower().endswith(".csv") else None
    raw = load_source(data, target, geom[1] if geom and kind == "image" else None, geom[0] if geom else None)
    x = _model_rows(meta, raw, kind, geom)
    y = _targets_of(meta, raw)
    if len(x) == 0:
        raise ToolkitError(f"{data}: no labelled samples")
    return Inputs({meta["inputs"][0]["name"]: x}, y, data, len(x))


def _csv_target(meta: dict[str, Any], path: str) -> str | None:
    """The target column of a CSV: the one column that is not one of the model's features (else the last)."""
    import csv

    from toolkit.runtime.processing import feature_names

    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            header = [h.strip() for h in next(csv.reader(f), [])]
    except OSError:
        return None  # the reader says what is wrong
    rest = [h for h in header if h not in feature_names(meta)]
    return rest[0] if len(rest) == 1 else None


def _model_rows(meta: dict[str, Any], raw: Any, kind: str, geom: tuple[int, int, int] | None) -> np.ndarray:
    """RawData features -> the model's input rows, with the recorded preprocessing and layout."""
    from toolkit.runtime import processing

    if kind == "image":
        if raw.kind != "image" or tuple(raw.x.shape[1:]) != tuple(geom):
            got = list(raw.x.shape[1:])
            raise ToolkitError(f"{raw.source}: samples have shape {got}; the model takes {list(geom)} images")
        return processing.model_layout(meta, processing.standardize_images(meta, raw.x))
    if kind != "tabular":
        raise ToolkitError(f"--data with labelled samples needs an image or tabular model, not {kind}")
    names = processing.feature_names(meta)
    x = raw.x.reshape(len(raw.x), -1)
    if raw.feature_names and all(n in raw.feature_names for n in names):
        x = x[:, [raw.feature_names.index(n) for n in names]]
    if x.shape[1] != len(names):
        raise ToolkitError(f"{raw.source}: samples have {x.shape[1]} features; the model takes {len(names)}")
    return processing.standardize_features(meta, x)


def _targets_of(meta: dict[str, Any], raw: Any) -> np.ndarray:
    """Targets: label names (or indices) mapped to the model's labels; a regressor's numbers."""
    if meta["task"] != "classify":
        try:
            return np.asarray(raw.y, dtype=np.float32).reshape(len(raw.y), -1).squeeze(1)
        except (TypeError, ValueError):
            raise ToolkitError(f"{raw.source}: the target is not numeric; this model regresses") from None
    labels = list(meta["labels"])
    y = np.asarray(raw.y)
    if raw.label_names is not None and np.issubdtype(y.dtype, np.integer):
        names = [raw.label_names[int(i)] for i in y]
    elif np.issubdtype(y.dtype, np.integer) and not set(map(str, np.unique(y))) <= set(labels):
        names = [labels[int(i)] if 0 <= int(i) < len(labels) else str(i) for i in y]  # class indices
    else:
        names = [str(v) for v in y]
    unknown = sorted(set(names) - set(labels))
    if unknown:
        shown = ", ".join(labels[:10]) + (", ..." if len(labels) > 10 else "")
        raise ToolkitError(
            f"{raw.source}: its labels {unknown[:5]} differ from the model's ({shown}); name the data's "
            "classes (sub-folders, target values) as the model's labels"
        )
    index = {v: i for i, v in enumerate(labels)}
    return np.array([index[v] for v in names], dtype=np.int64)


# --------------------------------------------------------------------------------------------- quantization
@dataclass
class QuantizationInputs:
    """Validation rows (the accuracy gate) and calibration rows (a seeded sample of the train split)."""

    val: Inputs
    calibration: dict[str, np.ndarray]
    source: str

    @property
    def calibration_samples(self) -> int:
        return len(next(iter(self.calibration.values())))


def quantization_inputs(meta: dict[str, Any], data: str | None, samples: int) -> QuantizationInputs:
    """The validation split and `samples` calibration rows drawn (seeded) from the train split; a generator
    gets sampled inputs for both."""
    if meta["task"] == "generate":
        inputs = generator_inputs(meta)
        return QuantizationInputs(inputs, inputs.feeds, inputs.source)
    if meta.get("imported"):  # no recipe: the gate scores on all of `data`, calibration draws from it
        inputs = labelled_inputs(meta, data)
        rng = np.random.default_rng(SEED)
        idx = np.sort(rng.choice(inputs.samples, size=min(samples, inputs.samples), replace=False))
        calibration = {k: v[idx] for k, v in inputs.feeds.items()}
        return QuantizationInputs(inputs, calibration, inputs.source)
    splits = recipe_splits(meta, data)
    val = split_inputs(meta, splits, "val")
    train = split_inputs(meta, splits, "train")
    if val.samples == 0:
        raise ToolkitError(
            "the recipe has no validation split (val_fraction 0): nothing to gate quantization on"
        )
    rng = np.random.default_rng(SEED)
    idx = np.sort(rng.choice(train.samples, size=min(samples, train.samples), replace=False))
    calibration = {k: v[idx] for k, v in train.feeds.items()}
    return QuantizationInputs(val, calibration, splits.extra["source"])


class CalibrationReader:
    """onnxruntime's CalibrationDataReader over calibration rows, in batches of CALIBRATION_BATCH."""

    def __init__(self, feeds: dict[str, np.ndarray], batch: int = CALIBRATION_BATCH) -> None:
        n = len(next(iter(feeds.values())))
        self.batches = [{k: v[i : i + batch] for k, v in feeds.items()} for i in range(0, n, batch)]
        self.i = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.i >= len(self.batches):
            return None
        self.i += 1
        return self.batches[self.i - 1]

    def rewind(self) -> None:
        self.i = 0


def repeat_rows(feeds: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    """The first n rows (repeated when there are fewer), for latency at batch n."""
    out = {}
    for k, v in feeds.items():
        reps = math.ceil(n / len(v))
        out[k] = np.concatenate([v] * reps)[:n] if reps > 1 else v[:n]
    return out


# --------------------------------------------------------------------------------------------- synthetic
def check_shapes(meta: dict[str, Any], shapes: dict[str, list[int]] | None) -> None:
    """--shape NAME=DIMS must name an input, have its rank and agree with its fixed dims (not the batch)."""
    ports = {p["name"]: p for p in meta["inputs"]}
    for name, dims in (shapes or {}).items():
        if name not in ports:
            raise ToolkitError(f"--shape names {name!r}; the model's inputs: {', '.join(ports)}")
        declared = ports[name]["shape"]
        if len(dims) != len(declared):
            raise ToolkitError(
                f"--shape {name} has {len(dims)} dims; {name!r} is {len(declared)}-D {declared}"
            )
        for i, (got, want) in enumerate(zip(dims, declared)):
            if i > 0 and isinstance(want, int) and want > 0 and got != want:
                raise ToolkitError(f"--shape {name}: dim {i} is fixed at {want} in the graph (got {got})")


def input_dims(
    port: dict[str, Any], batch: int, shapes: dict[str, list[int]] | None, length: int
) -> list[int]:
    """The dims an input is fed with: the batch first, then --shape's dims, else the graph's fixed dims,
    else the stated defaults: DEFAULT_IMAGE_SIZE for the height and width of an image-like 4-D input,
    `length` (a text's tokens, DEFAULT_DIM for a foreign model) for any other open dim."""
    given = (shapes or {}).get(port["name"])
    shape = port["shape"]
    image = (
        len(shape) == 4
        and (str(port["dtype"]).startswith("float"))
        and (shape[1] in (1, 3) or shape[3] in (1, 3))
    )
    hw = (2, 3) if image and shape[1] in (1, 3) else (1, 2)
    dims = [batch]
    for i, d in enumerate(shape[1:], start=1):
        if given is not None:
            dims.append(int(given[i]))
        elif isinstance(d, int) and d > 0:
            dims.append(d)
        else:
            dims.append(DEFAULT_IMAGE_SIZE if image and i in hw else length)
    return dims


def synthetic_feeds(
    meta: dict[str, Any], batch: int, seed: int = SEED, shapes: dict[str, list[int]] | None = None
) -> dict[str, np.ndarray]:
    """A batch of inputs for every input the metadata declares, deterministic for a seed: normal values
    for float inputs, token ids drawn from the vocabulary (texts of SEQUENCE_LENGTH tokens), vocabulary
    words for string inputs, class indices for labels (0 or 1 for a foreign model's integer inputs).
    `shapes` gives the dims of open axes (see input_dims); a bare model (no metadata) gets the defaults."""
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    for port in meta["inputs"]:
        pre = port.get("preprocessing") or {}
        tok = pre.get("tokenizer") if pre.get("type") == "tokenize" else None
        if tok is None and meta.get("role") == "text":  # raw strings: the token model's vocabulary
            tok = (meta["inputs"][0].get("preprocessing") or {}).get("tokenizer")
        length = min(SEQUENCE_LENGTH, int(tok["max_length"])) if tok else SEQUENCE_LENGTH
        if meta.get("bare") and not tok:
            length = DEFAULT_DIM
        dims = input_dims(port, batch, shapes, length)
        dtype = port["dtype"]
        if dtype == "bool":
            feeds[port["name"]] = rng.integers(0, 2, size=dims).astype(bool)
            continue
        if dtype == "string":
            words = [w for w in (tok or {}).get("vocab", []) if not w.startswith("<")] or ["text"]
            texts = [" ".join(rng.choice(words, size=length)) for _ in range(batch)]
            feeds[port["name"]] = np.array(texts, dtype=object).reshape(dims)
        elif tok is not None:
            feeds[port["name"]] = rng.integers(1, len(tok["vocab"]), size=dims, dtype=np.int64)
        elif dtype.startswith("int"):  # class indices (a conditional generator's labels)
            classes = len(meta.get("labels") or [0, 1])
            feeds[port["name"]] = (np.arange(np.prod(dims)) % classes).reshape(dims).astype(dtype)
        else:
            feeds[port["name"]] = rng.standard_normal(dims).astype(dtype)
    return feeds
