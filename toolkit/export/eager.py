"""The checkpoint run as it is exported: PyTorch outputs for validate's parity and bench's eager contender.

The run's best.pt wrapped by the task's signature (the same module the exporters traced), for the PyTorch
side of `validate --run` (checkpoint_outputs) and the PyTorch eager contender of `bench --run`
(eager_runner). The runtime side reaches it through toolkit.runtime.pytorch,
which says clearly when torch is not installed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from toolkit.errors import ToolkitError
from toolkit.export.signatures import SIGNATURES, Signature


def exported_signature(ckpt_path: str | Path, task: str, role: str) -> Signature | None:
    """The checkpoint's model wrapped as the `role` graph ("model", "encoder", ...) is exported; None when
    the run exports no such graph. A run of another task is a ToolkitError."""
    from toolkit.train.checkpoint import load_checkpoint, load_model

    ckpt = load_checkpoint(ckpt_path)
    run_task = ckpt["recipe"].get("task")
    if run_task != task or run_task not in SIGNATURES:
        raise ToolkitError(f"{ckpt_path} is a {run_task} run, the model a {task} model")
    return next((s for s in SIGNATURES[run_task](load_model(ckpt), ckpt) if s.role == role), None)


def checkpoint_outputs(
    ckpt_path: Path, task: str, role: str, feeds: dict[str, np.ndarray], samples: int, batch: int = 64
) -> dict[str, np.ndarray]:
    """PyTorch outputs of a run's checkpoint, wrapped exactly as it is exported, for the named ONNX inputs
    (`toolkit validate --run`): {output name: array}; empty when the run exports no such role."""
    sig = exported_signature(ckpt_path, task, role)
    if sig is None:
        return {}
    names = [p.name for p in sig.outputs]
    arrays = [feeds[p.name] for p in sig.inputs]
    parts: list[list[np.ndarray]] = [[] for _ in names]
    with torch.no_grad():
        for i in range(0, samples, batch):
            got = sig.module(*(torch.from_numpy(np.ascontiguousarray(a[i : i + batch])) for a in arrays))
            for part, value in zip(parts, [got] if isinstance(got, torch.Tensor) else got):
                part.append(value.numpy())
    return {name: np.concatenate(part) for name, part in zip(names, parts)}


def eager_runner(run_dir: str | Path, meta: dict[str, Any], threads: int | None = None) -> Callable:
    """fn(feeds) -> outputs of the run's checkpoint for the graph that `meta` describes (its role), under
    torch.inference_mode at a fixed thread count (`toolkit bench --run`). A text model's raw strings are
    tokenized as the toolkit does, since PyTorch takes token ids."""
    if threads:
        torch.set_num_threads(threads)
    role = "model" if meta.get("role") == "text" else meta.get("role", "model")
    sig = exported_signature(Path(run_dir) / "best.pt", meta["task"], role)
    if sig is None:
        raise ToolkitError(f"{run_dir} exports no {role} graph")
    names = [p.name for p in sig.inputs]
    text = meta.get("role") == "text"

    def run(feeds: dict[str, np.ndarray]) -> Any:
        if text:
            feeds = {names[0]: _tokenize(meta, feeds)}
        with torch.inference_mode():
            return sig.module(*(torch.from_numpy(feeds[n]) for n in names))

    return run


def _tokenize(meta: dict[str, Any], feeds: dict[str, np.ndarray]) -> np.ndarray:
    from toolkit.data.tokenizer import Tokenizer

    tok = Tokenizer.from_dict(meta["inputs"][0]["preprocessing"]["tokenizer"])
    return tok.encode_batch(list(next(iter(feeds.values()))))
