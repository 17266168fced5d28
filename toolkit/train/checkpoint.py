"""Checkpoints: written atomically, read safely, and the model rebuilt from one (`load_model`).

Each checkpoint carries the recipe and preprocessing spec that made it, so the file alone rebuilds it.

Checkpoints (and any weights file a user hands us) are read with `torch.load(weights_only=True)`: only
tensors, plain containers and numbers come back, so a file received from someone else cannot run code while
it is read. Everything toolkit writes into a checkpoint is of those types (the recipe and preprocessing spec
as plain dicts).
"""

from __future__ import annotations

import pickle
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
    ckpt = load_weights_file(path, "checkpoint")
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ToolkitError(f"{path} is not a toolkit checkpoint (format {FORMAT})")
    return ckpt


def load_weights_file(path: Path, what: str = "weights file") -> Any:
    """The tensors and plain data in a torch.save file, refusing anything that would run code when
    unpickled (weights_only=True); a one-line ToolkitError for a damaged or unsafe file."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "GLOBAL" in str(exc) or "global" in str(exc):  # it names code to import: refuse, do not run
            raise ToolkitError(
                f"refused {what} {path}: it holds objects other than tensors and plain data (a pickle that "
                "could run code when loaded); only tensors, lists, dicts, numbers and strings are read"
            ) from None
        raise ToolkitError(f"cannot read {what} {path}: {exc.__class__.__name__}") from None
    except Exception as exc:  # a damaged file: say which one, not a pickle traceback
        raise ToolkitError(f"cannot read {what} {path}: {exc.__class__.__name__}") from None


def load_model(ckpt: dict[str, Any]) -> torch.nn.Module:
    """Rebuild the model saved in a checkpoint (CPU, eval mode)."""
    from toolkit.models import create_model
    from toolkit.recipe import recipe_from_dict

    recipe = recipe_from_dict(ckpt["recipe"])
    model = create_model(
        recipe.arch, recipe.model, tuple(ckpt["input_shape"]), ckpt["num_outputs"], ckpt["spec"]
    )
    model.load_state_dict(ckpt["model"])
    return model.eval()
