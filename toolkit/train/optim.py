"""Optimizers and learning-rate schedules, built from a recipe's train section."""

from __future__ import annotations

import torch

from toolkit.recipe import Recipe


def build_optimizer(recipe: Recipe, params) -> torch.optim.Optimizer:
    """train.optimizer (sgd, adam, adamw, rmsprop) over `params` with the recipe's lr and weight decay."""
    t = recipe.train
    if t.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay, nesterov=t.momentum > 0
        )
    if t.optimizer == "adam":
        return torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay)
    if t.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)
    return torch.optim.RMSprop(params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)


def build_scheduler(recipe: Recipe, opt: torch.optim.Optimizer, steps_per_epoch: int):
    """Returns (scheduler or None, whether it steps per batch)."""
    t = recipe.train
    if t.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=t.epochs), False
    if t.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=t.step_size, gamma=t.gamma), False
    if t.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=t.lr, epochs=t.epochs, steps_per_epoch=steps_per_epoch
        ), True
    return None, False
