"""`model.init_from: RUN_DIR`: start a model from another run's weights (self-supervised or supervised).

The source run's best.pt is read (weights_only), and every parameter and buffer outside the model's head is
loaded with names and shapes checked (toolkit.train.finetune.load_matching: one ToolkitError line lists
what does not fit); the head keeps its fresh initialization, as the task and the number of outputs may
differ. With `model.freeze_epochs` the head trains alone first (finetune.schedule_epoch). What was loaded is
recorded in the data spec under "init_from" (checkpoints, data.json and the exported metadata carry it).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch.nn as nn

from toolkit.errors import ToolkitError
from toolkit.train.finetune import load_matching


def head_prefixes(model: nn.Module) -> tuple[str, ...]:
    """The parameter-name prefixes of the model's head: its own `head_prefixes`, its `head` module, or
    (an MLP) its last Linear layer."""
    if getattr(model, "head_prefixes", None):
        return tuple(model.head_prefixes)
    if isinstance(getattr(model, "head", None), nn.Module):
        return ("head",)
    linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    return (linears[-1],) if linears else ()


def init_from_run(model: nn.Module, run_dir: str | Path, arch: str) -> dict[str, Any]:
    """Load `run_dir`'s weights into `model` except its head; returns the provenance record."""
    from toolkit.train.checkpoint import load_checkpoint

    run_dir = Path(run_dir)
    best = run_dir / "best.pt"
    if not best.is_file():
        raise ToolkitError(f"model.init_from: {run_dir} is not a finished run (no best.pt there)")
    ckpt = load_checkpoint(best)
    if ckpt.get("arch") != arch:
        raise ToolkitError(
            f"model.init_from: {run_dir} is a {ckpt.get('arch')} run; this recipe's arch is {arch}"
        )
    head = head_prefixes(model)
    model.head_prefixes = head  # what finetune.head_only keeps trainable while the rest is frozen
    state = {k: v for k, v in ckpt["model"].items() if not any(k == p or k.startswith(p + ".") for p in head)}
    left = load_matching(model, state, replaced=head, what=f"model.init_from {run_dir} weights")
    return {
        "run": str(run_dir.resolve()),
        "task": ckpt["recipe"]["task"],
        "recipe": ckpt["recipe"]["name"],
        "epoch": int(ckpt.get("epoch", -1)) + 1,
        "sha256": hashlib.sha256(best.read_bytes()).hexdigest(),
        "loaded": len(state),
        "initialized": left,
    }


def apply_transfer(model: nn.Module, recipe: Any, spec: dict[str, Any]) -> None:
    """set_up's step after building the model: `model.init_from` (recorded in spec["init_from"]), and the
    head named for a freeze-then-unfreeze schedule (model.freeze_epochs)."""
    cfg = recipe.model
    source = getattr(cfg, "init_from", None)
    if source:
        spec["init_from"] = init_from_run(model, source, recipe.arch)
    if getattr(cfg, "freeze_epochs", None) is not None and not getattr(model, "head_prefixes", None):
        model.head_prefixes = head_prefixes(model)
