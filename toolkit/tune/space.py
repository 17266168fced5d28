"""Search spaces: which recipe keys `toolkit tune` varies, and over what values.

A space maps dotted recipe keys (the names `--set` uses) to a range or a list of choices:

    train.lr: {low: 3.0e-4, high: 1.0e-2, log: true}   # a number range; log: sample evenly in log space
    model.hidden: {low: 64, high: 256, step: 64}         # an integer key gets integers (step optional)
    train.optimizer: [adam, adamw, sgd]                   # choices: any values the key accepts

It lives in a recipe's `search:` section or in a file given with `--space`. Every key and every bound is
checked against the recipe schema before a trial runs: an unknown key, an empty range, low > high or a
value the recipe would reject is a one-line error, not a failed trial ten minutes later.

The recipe keeps its `search:` section raw; this module checks it (for `toolkit tune`, and for `toolkit
train`, so a broken section fails at once). It imports only the standard library, yaml and the recipe schema.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from toolkit.errors import ToolkitError, one_line
from toolkit.recipe import Recipe, allowed_keys, recipe_from_dict

# Keys a search may not vary: they define the data and its split, so trials must share them for their
# validation scores to be comparable (and for the test split to stay unseen by every trial).
FIXED_KEYS = {
    "name": "the recipe's name",
    "arch": "the architecture (tune one recipe per architecture)",
    "task": "the task",
    "description": "the description",
    "data.source": "the data",
    "data.target": "the target column",
    "data.val_fraction": "the validation split",
    "data.test_fraction": "the test split",
    "train.seed": "the split and initialization (selecting on seeds overfits the validation split)",
    "train.device": "the device",
    "search": "the search space itself",
}
RANGE_KEYS = ("low", "high", "log", "step")
GRID_POINTS = 3  # a range without a step contributes low, middle and high to a grid search


@dataclass(frozen=True)
class Param:
    """One searched key: a numeric range (kind float or int) or a list of choices (kind choice)."""

    key: str
    kind: str  # "float" | "int" | "choice"
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] = ()

    def encoded_choices(self) -> list[Any]:
        """Optuna stores scalars only: a list choice such as [32, 64] is stored as its JSON text."""
        return [encode(c) for c in self.choices]

    def describe(self) -> str:
        if self.kind == "choice":
            return " | ".join(json.dumps(c) for c in self.choices)
        text = f"{self.low:g} .. {self.high:g}"
        if self.log:
            text += " (log)"
        if self.step is not None:
            text += f" step {self.step:g}"
        return text

    def grid(self) -> list[Any]:
        """The values a grid search tries for this key."""
        if self.kind == "choice":
            return self.encoded_choices()
        lo, hi = self.low, self.high
        if self.step is not None:
            count = int(math.floor((hi - lo) / self.step + 1e-9)) + 1
            values = [lo + i * self.step for i in range(count)]
        elif self.kind == "int" and hi - lo + 1 <= GRID_POINTS:
            values = list(range(int(lo), int(hi) + 1))
        else:
            mid = math.sqrt(lo * hi) if self.log else (lo + hi) / 2
            values = [lo, mid, hi]
        if self.kind == "int":
            return sorted({int(round(v)) for v in values})
        return [float(v) for v in values]


def encode(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value)


def decode(param: Param, stored: Any) -> Any:
    """A sampled value as the recipe takes it (list choices come back from their JSON text)."""
    if param.kind == "choice":
        for choice in param.choices:
            if encode(choice) == stored:
                return copy.deepcopy(choice)
        raise ToolkitError(f"search {param.key}: {stored!r} is not one of the choices {param.describe()}")
    return int(stored) if param.kind == "int" else float(stored)


# --------------------------------------------------------------------------------------------- parsing
def load_space_file(path: str | Path) -> dict[str, Any]:
    """A --space file: a mapping of keys to ranges, at the top level or under `search:`."""
    path = Path(path)
    if not path.is_file():
        raise ToolkitError(f"search space file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ToolkitError(f"{path}: not valid YAML ({one_line(exc)})") from None
    if isinstance(raw, dict) and set(raw) == {"search"}:
        raw = raw["search"]
    if not isinstance(raw, dict) or not raw:
        raise ToolkitError(
            f"{path}: a search space is a mapping of recipe keys to ranges, such as "
            "'train.lr: {low: 1.0e-4, high: 1.0e-2, log: true}'"
        )
    return raw


def parse_space(recipe_raw: dict[str, Any], search: Any, where: str = "search") -> list[Param]:
    """Validate a search mapping against a recipe (its raw mapping, without `search`) and return its params.

    Each bound and each choice is applied to the recipe and validated, so a value the recipe would reject
    (a dropout of 1.5, an optimizer named lion) is reported here, naming the key."""
    if search is None:
        return []
    if not isinstance(search, dict):
        raise ToolkitError(f"{where} must be a mapping of recipe keys to ranges or choice lists")
    params = []
    for key, spec in search.items():
        key = str(key)
        label = f"{where} {key}"
        if key in FIXED_KEYS:
            raise ToolkitError(f"{label}: cannot be searched, it fixes {FIXED_KEYS[key]}")
        tp = _leaf_type(recipe_raw, key, label)
        param = _param(key, tp, spec, label)
        for value in param.choices if param.kind == "choice" else (param.low, param.high):
            raw = copy.deepcopy(recipe_raw)
            raw.pop("search", None)
            set_key(raw, key, value)
            try:
                recipe_from_dict(raw)
            except ToolkitError as exc:
                raise ToolkitError(f"{label}: value {json.dumps(value)} is rejected: {exc}") from None
        params.append(param)
    return params


def set_key(raw: dict[str, Any], key: str, value: Any) -> None:
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[parts[-1]] = copy.deepcopy(value)


def _leaf_type(recipe_raw: dict[str, Any], key: str, label: str) -> Any:
    """The declared type of a dotted recipe key; an unknown key is an error naming what is allowed."""
    cls: Any = Recipe
    parts = key.split(".")
    for depth, part in enumerate(parts):
        allowed = allowed_keys(cls, recipe_raw)
        if part not in allowed:
            scope = ".".join(parts[:depth]) or "the recipe"
            raise ToolkitError(f"{label}: unknown key; {scope} has {', '.join(allowed)}")
        tp = allowed[part]
        if depth == len(parts) - 1:
            if dataclasses.is_dataclass(tp):
                raise ToolkitError(f"{label}: is a section; search one of its keys, such as {key}.<key>")
            return _strip_optional(tp)
        if not dataclasses.is_dataclass(tp):
            raise ToolkitError(f"{label}: unknown key; {'.'.join(parts[: depth + 1])} has no sub-keys")
        cls = tp
    raise AssertionError("unreachable")


def _strip_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return inner[0] if len(inner) == 1 else tp
    return tp


def _param(key: str, tp: Any, spec: Any, label: str) -> Param:
    if isinstance(spec, list):
        if not spec:
            raise ToolkitError(f"{label}: empty list of choices; give at least one value")
        return Param(key, "choice", choices=tuple(spec))
    if not isinstance(spec, dict):
        raise ToolkitError(
            f"{label}: give a range such as {{low: 0.1, high: 0.5}} or a list of choices (got {spec!r})"
        )
    unknown = [k for k in spec if k not in RANGE_KEYS]
    if unknown:
        raise ToolkitError(f"{label}: unknown range key {unknown[0]!r}; a range has {', '.join(RANGE_KEYS)}")
    if tp not in (int, float):
        raise ToolkitError(f"{label}: not a number, so it takes a list of choices, not a range")
    if "low" not in spec or "high" not in spec:
        raise ToolkitError(f"{label}: a range needs both low and high")
    low, high, step = spec["low"], spec["high"], spec.get("step")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ToolkitError(f"{label}: log must be true or false (got {log!r})")
    bounds = {}
    for name, value in (("low", low), ("high", high), ("step", step)):
        if value is None and name == "step":
            continue
        number = _number(value)
        if number is None or (tp is int and not number.is_integer()):
            kind = "an integer" if tp is int else "a number"
            raise ToolkitError(f"{label}: {name} must be {kind} (got {value!r})")
        bounds[name] = int(number) if tp is int else number
    low, high, step = bounds["low"], bounds["high"], bounds.get("step")
    if low > high:
        raise ToolkitError(f"{label}: low ({low:g}) is greater than high ({high:g})")
    if low == high:
        raise ToolkitError(f"{label}: empty range (low = high = {low:g}); fix the value with --set instead")
    if log and low <= 0:
        raise ToolkitError(f"{label}: a log range needs low > 0 (got {low:g})")
    if step is not None:
        if step <= 0 or step > high - low:
            raise ToolkitError(f"{label}: step must be > 0 and at most high - low (got {step:g})")
        if log:
            raise ToolkitError(f"{label}: a range takes log or step, not both")
    return Param(key, "int" if tp is int else "float", low=low, high=high, log=log, step=step)


def _number(value: Any) -> float | None:
    """A finite number, also from text (YAML reads 1e-4, without a dot, as a string)."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
