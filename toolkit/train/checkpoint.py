"""Checkpoints: written atomically; each carries the recipe and preprocessing spec that made it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from toolkit.errors import ToolkitError
from toolkit.io import atomic_path

FORMAT = 1


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, **payload}, tmp)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ToolkitError(
            f"checkpoint not found: {path} (is this a run directory written by `toolkit train`?)"
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # a damaged file: say which one, not a pickle traceback
        raise ToolkitError(f"cannot read checkpoint {path}: {exc.__class__.__name__}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ToolkitError(f"{path} is not a toolkit checkpoint (format {FORMAT})")
    return ckpt
