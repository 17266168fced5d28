"""The task registry: task name -> Task class, as toolkit.models.registry is for architectures.

Task modules (toolkit.train.tasks, .anomaly, .gan) register their classes with `@register_task` and import
this module, never the package; importing toolkit.train imports every task module, so all are registered
before anything in the package can ask for one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from toolkit.errors import ToolkitError

_TASKS: dict[str, type] = {}


def register_task(cls: type) -> type:
    """Class decorator: register a Task subclass under its `name`."""
    _TASKS[cls.name] = cls
    return cls


def task_names() -> list[str]:
    return sorted(_TASKS)


def make_task(recipe: Any, spec: dict[str, Any], run_dir: Any = None) -> Any:
    """The Task object for a recipe's task, over the data's preprocessing spec."""
    cls: Callable[..., Any] | None = _TASKS.get(recipe.task)
    if cls is None:
        raise ToolkitError(f"unknown task {recipe.task!r}; allowed: {', '.join(task_names())}")
    return cls(recipe, spec, run_dir)
