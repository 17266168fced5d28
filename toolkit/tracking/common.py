"""What the trackers share: the kinds, the extras that install them, params flattened, numeric rows."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from toolkit.errors import ToolkitError

KINDS = ("mlflow", "tensorboard")
# what each kind imports, and the extra that installs it
NEEDS = {"mlflow": ("mlflow", "mlflow"), "tensorboard": ("tensorboard", "tensorboard")}
DEFAULT_MLFLOW_URI = "sqlite:///mlflow.db"
ARTIFACTS = ("metrics.json", "metrics.csv", "recipe.yaml", "data.json", "best.yaml", "study.csv")


class Backend(Protocol):
    def epoch(self, step: int, row: dict[str, float]) -> None: ...

    def finish(self, metrics: dict[str, Any], run_dir: Path) -> None: ...

    def fail(self, status: str = "FAILED") -> None: ...

    def where(self) -> dict[str, Any]: ...


def check_kinds(kinds: Iterable[str] | str | None) -> list[str]:
    """The requested trackers, in order and without repeats; one-line errors for unknown or missing ones."""
    if kinds is None:
        return []
    if isinstance(kinds, str):
        kinds = [kinds]
    names: list[str] = []
    for raw in kinds:
        for kind in str(raw).split(","):
            kind = kind.strip().lower()
            if kind in ("", "none"):
                continue
            if kind not in KINDS:
                raise ToolkitError(f"unknown tracker {kind!r}: use {' or '.join(KINDS)} (or none)")
            if kind not in names:
                names.append(kind)
    for kind in names:
        module, extra = NEEDS[kind]
        try:
            found = importlib.util.find_spec(module) is not None
        except ImportError:  # a finder that refuses it (or a broken install) counts as missing
            found = False
        if not found:
            raise ToolkitError(
                f"--track {kind} needs the {module} package: pip install 'toolkit[{extra}]' (or pip install {module})"
            )
    return names


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """A nested recipe mapping as dotted keys (train.lr, model.hidden), the form trackers take params in."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        flat.update(flatten(value, name) if isinstance(value, dict) else {name: value})
    return flat


def numeric(row: dict[str, Any]) -> dict[str, float]:
    """The numeric, finite-or-not entries of a metrics row (trackers log numbers only)."""
    return {k: float(v) for k, v in row.items() if isinstance(v, int | float) and not isinstance(v, bool)}
