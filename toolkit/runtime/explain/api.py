"""`toolkit explain` as a Python function: read inputs, explain them with an onnxruntime session, draw.

The explanation itself is engine.py (shared with the server and the edge runner); this module adds what the
toolkit side needs around it: sessions through OnnxModel (execution providers, one-line load errors),
ToolkitError instead of the runner's InputError, and the picture written atomically.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolkit.errors import ToolkitError
from toolkit.runtime.explain import engine, plots
from toolkit.runtime.explain._core import InputError, describe
from toolkit.runtime.model import OnnxModel


@dataclass
class Explanation:
    """What `explain` answered: one result per input item (an image, a CSV row, a text, a series), in order."""

    model: str
    task: str
    method: str
    results: list[dict[str, Any]]
    errors: list[str] = field(default_factory=list)
    out: str | None = None  # the PNG written

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"model": self.model, "task": self.task, "method": self.method}
        doc["results"] = self.results
        if self.out:
            doc["out"] = self.out
        return doc


def explain(
    model_path: str | Path,
    inputs: list[str],
    texts: list[str] | None = None,
    method: str | None = None,
    target: str | None = None,
    samples: int | None = None,
    seed: int = 0,
    out: str | Path | None = None,
    keep_going: bool = False,
    provider: str | None = None,
    threads: int | None = None,
    advance: Callable[[], Any] | None = None,
) -> Explanation:
    """Explain the model's answers for files, folders and texts; with `out`, draw them into one PNG.

    `advance()` is called after each explained input (a progress bar). Without `keep_going` the first bad
    input is a ToolkitError and nothing runs; with it, bad inputs become {"input", "error"} results."""
    if out is not None and Path(out).suffix.lower() != ".png":
        raise ToolkitError(f"--out must name a .png file (got {out})")
    model = OnnxModel(model_path, providers=[provider] if provider else None, threads=threads)
    meta = model.meta
    try:
        chosen = engine.check_method(meta, method)
        if not inputs and not texts:
            raise ToolkitError("no inputs: give files, folders or --text")
        if texts and engine.kind_of(meta) != "text":
            raise ToolkitError(f"--text is for text models; this model takes {describe(meta)}")
        items = engine.read_items(meta, [str(p) for p in inputs], list(texts or []))
        errors = [str(row) for _, row in items if isinstance(row, InputError)]
        if errors and not keep_going:
            raise ToolkitError(errors[0])
        options = engine.Options(chosen, target, samples, seed)
        results = engine.explain_items(meta, model.run, items, options, advance)
        written = None
        if out is not None:
            from toolkit.io import write_bytes

            write_bytes(out, plots.figure(meta, items, results))
            written = str(out)
    except InputError as exc:
        raise ToolkitError(str(exc)) from None
    return Explanation(str(model_path), meta["task"], chosen, results, errors, written)
