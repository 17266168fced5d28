"""Starting from trained weights: load a state_dict that must match (names and shapes checked), and the
freeze-then-unfreeze schedule (head only for N epochs, then the whole network at a lower learning rate).

Written for any model and any source of weights: the pretrained backbones (toolkit.models.backbones) use it
for torchvision's ImageNet weights or a state_dict file, and a run started from another run's weights can
use it the same way. A model names its head with `head_prefixes` (parameter-name prefixes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from toolkit.errors import ToolkitError


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state_dict file (torch.save of model.state_dict()), read with weights_only=True: tensors only, no
    code runs. A checkpoint holding {"model": state_dict} (toolkit's best.pt) is accepted too."""
    path = Path(path)
    if not path.is_file():
        raise ToolkitError(f"weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - unpickling refused or not a torch file: one line either way
        raise ToolkitError(
            f"{path}: not a state_dict file readable with weights_only=True ({exc.__class__.__name__})"
        ) from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ToolkitError(f"{path}: expected a state_dict (parameter name -> tensor)")
    return state


def load_matching(
    module: nn.Module, state: dict[str, torch.Tensor], replaced: tuple[str, ...] = (), what: str = "weights"
) -> list[str]:
    """Load `state` into `module`; every name and shape must match, except entries under the `replaced`
    prefixes (a new head: those keep their fresh initialization). Returns the names left as initialized.
    Misfits are one ToolkitError line listing them."""
    own = module.state_dict()
    under = lambda k: any(k == p or k.startswith(p + ".") for p in replaced)  # noqa: E731
    unexpected = [k for k in state if k not in own and not under(k)]
    missing = [k for k in own if k not in state and not under(k)]
    shapes = [
        f"{k} {list(state[k].shape)} vs {list(own[k].shape)}"
        for k in state
        if k in own and state[k].shape != own[k].shape and not under(k)
    ]
    problems = [("unexpected", unexpected), ("missing", missing), ("shape differs", shapes)]
    listed = [
        f"{name}: {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''}" for name, keys in problems if keys
    ]
    if listed:
        raise ToolkitError(f"{what} do not match the model ({'; '.join(listed)})")
    fitting = {k: v for k, v in state.items() if k in own and v.shape == own[k].shape}
    module.load_state_dict({**own, **fitting})
    return [k for k in own if k not in fitting]


def head_only(model: nn.Module, trainable: bool) -> None:
    """Freeze (trainable=False) every parameter outside the model's head, or unfreeze them all."""
    prefixes = tuple(getattr(model, "head_prefixes", ()))
    for name, p in model.named_parameters():
        p.requires_grad_(trainable or name.startswith(prefixes))


def schedule_epoch(
    model: nn.Module, optimizer: Any, scheduler: Any, epoch: int, freeze: int, factor: float
) -> str:
    """Before `epoch`: the head alone while epoch < freeze; at epoch == freeze every parameter trains and the
    learning rates (and the scheduler's base rates) are multiplied by `factor`. Returns the phase."""
    if epoch < freeze:
        head_only(model, trainable=False)
        return "head"
    head_only(model, trainable=True)
    if epoch == freeze and freeze > 0:
        for group in optimizer.param_groups:
            group["lr"] *= factor
        if scheduler is not None and hasattr(scheduler, "base_lrs"):
            scheduler.base_lrs = [lr * factor for lr in scheduler.base_lrs]
    return "all"
