"""The metadata document's schema (`toolkit.model/1`) and a tiny checker for it (no dependency).

A schema is written with plain Python values: a type (`str`, `int`, `float` also accepts ints, `bool`),
`None`, a tuple of alternatives, a one-item list (a list of those), a dict of keys (a leading "?" marks an
optional key; other keys are allowed) or a frozenset (one of these values). `check(doc)` returns every
mismatch as "where: what was expected", so one run names all that is wrong.

The version is the number after the slash: a reader understands documents up to SCHEMA_VERSION and refuses
newer ones, whose meaning it cannot know.
"""

from __future__ import annotations

import re
from typing import Any

SCHEMA_NAME = "toolkit.model"
SCHEMA_VERSION = 1
SCHEMA = f"{SCHEMA_NAME}/{SCHEMA_VERSION}"  # what toolkit.export writes today
METADATA_KEY = "toolkit"  # the metadata_props key holding the document
TASKS = frozenset({"classify", "regress", "forecast", "reconstruct", "generate", "contrastive"})

_SCHEMA_RE = re.compile(rf"^{re.escape(SCHEMA_NAME)}/(\d+)$")

PORT = {
    "name": str,
    "dtype": str,
    "shape": [(int, str)],  # symbolic dims are names: ["batch", 4]
    "?meaning": str,
    "?layout": str,
    "?preprocessing": dict,
}

DOCUMENT: dict[str, Any] = {
    "schema": str,
    "task": TASKS,
    "arch": str,
    "role": str,
    "inputs": [PORT],
    "outputs": [PORT],
    "labels": ([str], None),
    "anomaly": (dict, None),
    "thresholds": dict,
    "recipe": {
        "name": str,
        "arch": str,
        "task": TASKS,
        "data": {"source": str, "val_fraction": float, "test_fraction": float},
        "model": dict,
        "train": {"seed": int},
    },
    "metrics": (dict, None),
    "provenance": {
        "toolkit": str,
        "exporter": str,
        "opset": int,
        "date": str,
        "source_run": str,
        "?torch": str,
        "?onnx": str,
        "?checkpoint": {"file": str, "sha256": str},
        "?rewrites": [str],  # graph rewrites applied after the exporter (toolkit.runtime.rewrite)
        "?init_from": dict,  # the run whose weights started this one (model.init_from; toolkit.train.transfer)
    },
    "parity": {"atol": float, "rtol": float, "cases": int, "outputs": dict},
    # Written by `toolkit quantize` into model.int8.onnx / model.fp16.onnx (absent from fp32 models).
    "?quantization": {
        "mode": frozenset({"static", "dynamic", "fp16"}),
        "metric": str,
        "fp32": float,
        "value": float,
        "drop": float,
        "max_drop": float,
        "passed": bool,
        "speedup": dict,
    },
}


def dig(doc: Any, *keys: str) -> Any:
    """doc[k1][k2]... or None where a key is missing or a level is not an object (a malformed document)."""
    for key in keys:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(key)
    return doc


def schema_version(name: Any) -> int | None:
    """The version number of a schema name ("toolkit.model/1" -> 1); None for anything else."""
    m = _SCHEMA_RE.match(name) if isinstance(name, str) else None
    return int(m.group(1)) if m else None


def check(doc: Any, schema: Any = DOCUMENT) -> list[str]:
    """Every place where `doc` does not fit `schema`, as "path: expected ..., got ..." lines."""
    errors: list[str] = []
    _check(doc, schema, "metadata", errors)
    if not errors and schema is DOCUMENT:
        errors += _cross_check(doc)
    return errors


def _check(value: Any, schema: Any, where: str, errors: list[str]) -> None:
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            errors.append(f"{where}: expected an object, got {_kind(value)}")
            return
        for key, sub in schema.items():
            optional, name = key.startswith("?"), key.lstrip("?")
            if name not in value:
                if not optional:
                    errors.append(f"{where}: missing key {name!r}")
                continue
            _check(value[name], sub, f"{where}.{name}", errors)
        return
    if isinstance(schema, list):
        if not isinstance(value, list):
            errors.append(f"{where}: expected a list, got {_kind(value)}")
            return
        for i, item in enumerate(value):
            _check(item, schema[0], f"{where}[{i}]", errors)
        return
    if not _fits(value, schema):
        errors.append(f"{where}: expected {_describe(schema)}, got {_kind(value)}")


def _fits(value: Any, schema: Any) -> bool:
    """Whether `value` fits `schema` (used for alternatives, where nested messages would only confuse)."""
    if isinstance(schema, tuple):
        return any(_fits(value, s) for s in schema)
    if schema is None:
        return value is None
    if isinstance(schema, frozenset):
        return isinstance(value, str) and value in schema
    if isinstance(schema, (dict, list)):
        found: list[str] = []
        _check(value, schema, "", found)
        return not found
    if isinstance(value, bool):  # bool is an int subclass; a JSON true is not a number
        return schema is bool
    if schema is float:
        return isinstance(value, (int, float))
    return isinstance(value, schema)


def _describe(schema: Any) -> str:
    if isinstance(schema, tuple):
        return " or ".join(_describe(s) for s in schema)
    if schema is None:
        return "null"
    if isinstance(schema, frozenset):
        return "one of " + ", ".join(sorted(schema))
    if isinstance(schema, list):
        return f"a list of {_describe(schema[0])}"
    if isinstance(schema, dict):
        return "an object"
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false", dict: "an object"}[
        schema
    ]


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return f"the number {value}"
    return {dict: "an object", list: "a list"}.get(type(value), type(value).__name__)


def _cross_check(doc: dict[str, Any]) -> list[str]:
    """What the types alone cannot say: the version, the task's ports and the labels they index."""
    errors = []
    version = schema_version(doc["schema"])
    if version is None:
        errors.append(f"metadata.schema: expected {SCHEMA_NAME}/N, got {doc['schema']!r}")
    if doc["recipe"]["task"] != doc["task"]:
        errors.append(
            f"metadata.recipe.task is {doc['recipe']['task']!r} but metadata.task is {doc['task']!r}"
        )
    if not doc["inputs"] or not doc["outputs"]:
        errors.append("metadata: a model needs at least one input and one output")
    if doc["task"] in ("classify", "generate") and not doc["labels"]:
        errors.append(f"metadata.labels: a {doc['task']} model needs its class names")
    if doc["task"] == "reconstruct" and doc["role"] == "model":
        score = doc["thresholds"].get("score")
        value = score.get("value") if isinstance(score, dict) else None
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            errors.append("metadata.thresholds.score.value: an anomaly model needs its score threshold")
    if doc["task"] == "classify" and doc["labels"]:
        for port in doc["outputs"]:
            width = port["shape"][-1] if len(port["shape"]) == 2 else None
            if isinstance(width, int) and width != len(doc["labels"]):
                errors.append(
                    f"metadata.outputs: {port['name']!r} has {width} classes but there are "
                    f"{len(doc['labels'])} labels"
                )
    return errors
