"""The model registry: architecture name -> builder, with `register_model` and `create_model`.

As timm's `_registry`: builders import this module, never the package that imports them back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch.nn as nn

from toolkit.errors import ToolkitError


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Callable[..., nn.Module]
    # What the model consumes, by task: "tabular" (B, F), "image" (B, C, H, W), "series" (B, T, 1) float,
    # "tokens" (B, T) int64 with 0 as padding. One string means the same for every task; a callable
    # decides from (task, model config), e.g. the autoencoder's dense or conv variant.
    input_kinds: str | dict[str, str] | Callable[[str, Any], str]

    def input_kind(self, task: str, cfg: Any = None) -> str:
        if isinstance(self.input_kinds, str):
            return self.input_kinds
        if callable(self.input_kinds):
            return self.input_kinds(task, cfg)
        return self.input_kinds[task]


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    name: str, input_kind: str | dict[str, str] | Callable[[str, Any], str]
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _REGISTRY[name] = ModelEntry(name, fn, input_kind)
        return fn

    return deco


def model_entry(name: str) -> ModelEntry:
    if name not in _REGISTRY:
        raise ToolkitError(f"unknown model {name!r}; allowed: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def create_model(
    name: str, cfg: Any, input_shape: tuple[int, ...], num_outputs: int, spec: dict[str, Any] | None = None
) -> nn.Module:
    """Build architecture `name` from its config for inputs of `input_shape` (without batch) and `num_outputs`.

    `spec` is the data's preprocessing record: its "kind" picks the input kind for models that take several
    (series or tokens), and text models read their vocabulary size from its tokenizer."""
    return model_entry(name).builder(cfg, input_shape, num_outputs, spec or {})
