"""Local inference driven by the model's metadata: `toolkit predict`, and the server's KServe V1 endpoint.

The pre- and post-processing itself lives in toolkit/runtime/processing.py, a file that imports only numpy
(Pillow for images) because `toolkit edge pack` copies it onto devices beside the runner. Importing it here
means `toolkit predict`, the server and a bundle on a device compute the same thing from the same code; this
module adds what the toolkit side needs around it: ToolkitError instead of processing's InputError, sessions
through OnnxModel (execution providers, one-line load errors), and the GAN grid written atomically.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.errors import ToolkitError
from toolkit.runtime import processing
from toolkit.runtime.freshness import stale_checkpoint
from toolkit.runtime.model import OnnxModel
from toolkit.runtime.providers import warn

InputError = processing.InputError


def feeds_from_instances(meta: dict, instances: list, seed: int = 0) -> dict[str, np.ndarray]:
    """Raw instances -> {input name: array}, preprocessed as in training.

    An instance is a list of numbers (a tabular feature row, a raw series whose last `window` values are used,
    or image pixels in the training data's units), a str (a text for text models; a label for generators),
    {"b64": "..."} (PNG/JPEG bytes, base64) or an int (a generator's label index). A bad instance is a
    ToolkitError naming it ("instance 3: ...")."""
    if not isinstance(instances, list) or not instances:
        raise ToolkitError("instances must be a non-empty list")
    try:
        rows = [processing.prepare_instance(meta, inst, f"instance {i}") for i, inst in enumerate(instances)]
        return processing.batch_feeds(meta, rows, seed)
    except InputError as exc:
        raise ToolkitError(str(exc)) from None


def predictions_from_outputs(
    meta: dict,
    outputs: dict[str, np.ndarray],
    top_k: int | None = None,
    label_indices: list[int] | None = None,
) -> list[dict]:
    """Model outputs -> one JSON-able dict per row: label, probability and probabilities (classify, the
    `top_k` most likely), value (regress), forecast (in the series' units), score, anomaly and threshold
    (reconstruct), image {"b64": PNG} and label (generate: the label indices that were fed)."""
    try:
        return processing.predictions(meta, outputs, top_k, label_indices)
    except KeyError as exc:
        raise ToolkitError(
            f"a {meta['task']} model needs output {exc}; the outputs are {list(outputs)}"
        ) from None


@dataclass
class Prediction:
    """What `predict` answered: one result per input item (a file, CSV row, text, label), in order."""

    model: str
    task: str
    meta: dict[str, Any]
    results: list[dict[str, Any]]
    errors: list[str] = field(default_factory=list)
    out: str | None = None  # the PNG grid a generator wrote

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"model": self.model, "task": self.task, "results": self.results}
        if self.out:
            doc["out"] = self.out
        return doc


def predict(
    model_path: str | Path,
    inputs: list[str],
    texts: list[str] | None = None,
    top_k: int | None = None,
    provider: str | None = None,
    keep_going: bool = False,
    out: str | Path | None = None,
    seed: int = 0,
    threads: int | None = None,
) -> Prediction:
    """Answer files, folders and texts (labels for a generator) with the model at `model_path`.

    Without `keep_going` the first bad input is a ToolkitError and nothing runs; with it, bad inputs become
    {"input", "error"} results and the others are answered. A generator writes its images as one PNG grid to
    `out`."""
    if top_k is not None and top_k < 1:
        raise ToolkitError(f"--top-k must be a positive integer (got {top_k})")
    model = OnnxModel(model_path, providers=[provider] if provider else None, threads=threads)
    meta = model.meta
    stale = stale_checkpoint(model_path, meta)
    if stale:  # still answered: the file is a valid model, but not the run's latest weights
        warn(stale)
    if meta["task"] == "generate" and out is None:
        raise ToolkitError("a generator writes images: give --out GRID.png")
    if not inputs and not texts:
        what = "labels to generate" if meta["task"] == "generate" else "files, folders or --text"
        raise ToolkitError(f"no inputs: give {what}")
    if texts and processing.input_kind(meta) not in ("tokens", "text", "noise"):
        raise ToolkitError(f"--text is for text models; this model takes {processing.describe(meta)}")
    items = processing.read_inputs(meta, [str(p) for p in inputs], list(texts or []))
    errors = [str(row) for _, row in items if isinstance(row, InputError)]
    if errors and not keep_going:
        raise ToolkitError(errors[0])
    results = processing.run_items(model.run, meta, items, top_k, seed)
    written = None
    if out is not None and meta["task"] == "generate" and any("image" in r for r in results):
        from toolkit.io import write_bytes

        write_bytes(out, processing.grid_png(processing.generated_images(results)))
        written = str(out)
    return Prediction(str(model_path), meta["task"], meta, results, errors, written)
