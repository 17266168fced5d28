"""PyTorch eager inference of a run's checkpoint, wrapped exactly as `toolkit export` wraps it.

The reference contender of `toolkit bench --run`: the same inputs and outputs as the exported graph (the
export's signature modules), run under torch.inference_mode at a fixed thread count. Training side: this
module imports torch, and the benchmark imports it only inside the PyTorch contender's own process.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from toolkit.errors import ToolkitError


def eager_runner(run_dir: str | Path, meta: dict[str, Any], threads: int | None = None) -> Callable:
    """fn(feeds) -> outputs of the run's checkpoint for the graph that `meta` describes (its role)."""
    from toolkit.export import SIGNATURES
    from toolkit.train.checkpoint import load_checkpoint, load_model

    if threads:
        torch.set_num_threads(threads)
    ckpt = load_checkpoint(Path(run_dir) / "best.pt")
    task = ckpt["recipe"].get("task")
    if task != meta["task"]:
        raise ToolkitError(f"{run_dir} is a {task} run, the model a {meta['task']} model")
    role = "model" if meta.get("role") == "text" else meta.get("role", "model")
    sig = next((s for s in SIGNATURES[task](load_model(ckpt), ckpt) if s.role == role), None)
    if sig is None:
        raise ToolkitError(f"{run_dir} exports no {role} graph")
    names = [p.name for p in sig.inputs]
    text = meta.get("role") == "text"

    def run(feeds: dict[str, np.ndarray]) -> Any:
        if text:  # PyTorch takes token ids: tokenize as the toolkit does before the model
            feeds = {names[0]: _tokenize(meta, feeds)}
        with torch.inference_mode():
            return sig.module(*(torch.from_numpy(feeds[n]) for n in names))

    return run


def _tokenize(meta: dict[str, Any], feeds: dict[str, np.ndarray]) -> np.ndarray:
    from toolkit.data.tokenizer import Tokenizer

    tok = Tokenizer.from_dict(meta["inputs"][0]["preprocessing"]["tokenizer"])
    return tok.encode_batch(list(next(iter(feeds.values()))))
