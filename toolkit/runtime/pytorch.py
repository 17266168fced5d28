"""The runtime side's one door to PyTorch, which says clearly when torch is not installed.

The run's checkpoint run as it is exported (toolkit.export.eager), for `validate --run` (parity) and
`bench --run` (the PyTorch eager contender).

Importing this module never imports torch; each function imports the training side when called, and raises
TorchMissing (a ToolkitError naming the extra to install) when torch is not installed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.errors import ToolkitError

INSTALL = "pip install 'toolkit[train]'"


class TorchMissing(ToolkitError):
    """PyTorch (the training extra) is not installed here."""


def _eager() -> Any:
    """toolkit.export.eager, or TorchMissing when torch cannot be imported."""
    try:
        from toolkit.export import eager
    except ImportError as exc:
        if (exc.name or "").split(".")[0] != "torch":
            raise
        raise TorchMissing(f"PyTorch is not installed ({INSTALL} to run the checkpoint)") from None
    return eager


def available() -> bool:
    """Whether the checkpoint can be run here (torch importable)."""
    try:
        _eager()
    except TorchMissing:
        return False
    return True


def checkpoint_outputs(
    ckpt_path: Path, task: str, role: str, feeds: dict[str, np.ndarray], samples: int
) -> dict[str, np.ndarray]:
    """PyTorch outputs of the checkpoint wrapped as exported, {output name: array} (empty: the run exports
    no `role` graph); see toolkit.export.eager.checkpoint_outputs."""
    return _eager().checkpoint_outputs(ckpt_path, task, role, feeds, samples)


def eager_runner(run_dir: str | Path, meta: dict[str, Any], threads: int | None = None) -> Callable:
    """fn(feeds) -> PyTorch outputs of the run for the graph `meta` describes; see
    toolkit.export.eager.eager_runner."""
    return _eager().eager_runner(run_dir, meta, threads)
