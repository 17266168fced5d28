"""Model registry: architecture name -> builder (timm-style `@register_model`, one `create_model`)."""

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
    input_kind: str  # "tabular" (N, F) | "image" (N, C, H, W) | later "sequence", "tokens"


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    name: str, input_kind: str
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


def create_model(name: str, cfg: Any, input_shape: tuple[int, ...], num_outputs: int) -> nn.Module:
    """Build architecture `name` from its config for inputs of `input_shape` (without batch) and `num_outputs`."""
    return model_entry(name).builder(cfg, input_shape, num_outputs)


from toolkit.models import cnn, mlp  # noqa: E402,F401  (registers the builders)
