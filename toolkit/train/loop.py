"""The training loop: `train_one_epoch` and `evaluate`, driven by `fit`.

Determinism: every epoch reseeds torch's RNG from (seed, epoch), so shuffling, dropout and augmentation of
epoch k do not depend on what ran before. With the model, optimizer, scheduler and early-stopping state
restored from last.pt, a resumed run repeats exactly what an uninterrupted run would have done.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from toolkit.data import Splits
from toolkit.data.image_cache import ImageSet
from toolkit.errors import ToolkitError
from toolkit.metrics import is_better
from toolkit.models.backbones import init_weights
from toolkit.recipe import Recipe
from toolkit.train import distributed
from toolkit.train.augment import random_affine, token_dropout
from toolkit.train.checkpoint import save_checkpoint
from toolkit.train.finetune import schedule_epoch
from toolkit.train.image_batches import stream_batches
from toolkit.train.optim import build_scheduler
from toolkit.train.registry import make_task
from toolkit.train.tasks import Task
from toolkit.train.transfer import apply_transfer

EpochCallback = Callable[[int, dict[str, float]], None]


# --------------------------------------------------------------------------------------------- device
def select_device(requested: str) -> torch.device:
    """auto -> CUDA when available, else CPU. An explicit `cuda` without a GPU falls back with a warning."""
    if requested in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def autocast_dtype(device: torch.device, enabled: bool) -> torch.dtype | None:
    """bf16 where the GPU supports it, else fp16 (with loss scaling); None = full precision (always on CPU)."""
    if device.type != "cuda" or not enabled:
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


# --------------------------------------------------------------------------------------------- pieces
def epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7919 + 1) % (2**63 - 1)


@dataclass
class Batches:
    """In-memory tensors on the training device, served as shuffled mini-batches (no DataLoader overhead)."""

    x: torch.Tensor
    y: torch.Tensor
    batch_size: int

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    @property
    def device(self) -> torch.device:
        return self.x.device

    def __iter__(self):
        # Drawn on the CPU generator whatever the device: the same seed visits the batches in the same order
        # on CPU and GPU (CUDA's generator would give another order), so their metrics differ only by noise.
        perm = torch.randperm(len(self.x)).to(self.x.device, non_blocking=True)
        tokens = self.x.dtype == torch.int64  # right-padded token ids: trim each batch to its longest text
        for i in range(0, len(self.x), self.batch_size):
            idx = perm[i : i + self.batch_size]
            xb = self.x[idx]
            if tokens:
                xb = xb[:, : max(int((xb != 0).sum(1).max()), 1)]
            yield xb, self.y[idx]


def to_device(array: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    if isinstance(array, ImageSet):  # an image folder's split stays lazy: read in batches where it is used
        return array
    t = torch.as_tensor(array)
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t


# --------------------------------------------------------------------------------------------- loops
def train_one_epoch(
    model: nn.Module,
    task: Task,
    batches: Batches,
    opt: torch.optim.Optimizer,
    scheduler=None,
    per_batch_schedule: bool = False,
    grad_clip: float = 0.0,
    augment: tuple[float, float] = (0.0, 0.0),
    amp_dtype: torch.dtype | None = None,
    scaler: torch.amp.GradScaler | None = None,
    on_batch: Callable[[float], None] | None = None,
    token_p: float = 0.0,
) -> float:
    """One pass over the train batches; returns the mean loss."""
    model.train()
    total, count = torch.zeros((), device=batches.device), 0
    for x, y in batches:
        if augment[0] > 0 or augment[1] > 0:
            x = random_affine(x, *augment)
        if token_p > 0:
            x = token_dropout(x, token_p)
        # autocast costs a few microseconds per batch even when disabled: enter it only for mixed precision.
        amp = (
            torch.autocast(x.device.type, dtype=amp_dtype)
            if amp_dtype is not None
            else contextlib.nullcontext()
        )
        with amp:
            outputs = model(x)
            loss = task.loss(outputs.float(), y, x)
        opt.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
        else:
            loss.backward()
        if grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        if scaler is not None:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
        if per_batch_schedule and scheduler is not None:
            scheduler.step()
        total.add_(loss.detach(), alpha=len(x))  # stays on device: no sync per batch
        count += len(x)
        if on_batch is not None:
            on_batch(1.0)
    return float(total) / max(count, 1)


def evaluate(model: nn.Module, task: Task, x: torch.Tensor, y_np: np.ndarray) -> dict[str, float]:
    """Loss and task metrics on one split (empty for an empty split)."""
    return task.evaluate(model, x, y_np) if len(x) else {}


# --------------------------------------------------------------------------------------------- fit
@dataclass
class FitResult:
    run_dir: Path
    history: list[dict[str, float]]
    best_epoch: int
    stopped_early: bool
    test_metrics: dict[str, float]
    device: str
    seconds: float


@dataclass
class Selection:
    """Early stopping and model selection: the best validation value so far (saved in last.pt)."""

    key: str  # the history column compared: val_<main metric>, or train_loss without a validation split
    mode: str  # "max" | "min"
    min_delta: float = 0.0
    best_value: float | None = None
    best_loss: float = float("inf")
    best_epoch: int = -1
    bad_epochs: int = 0

    def update(self, row: dict[str, float], epoch: int) -> bool:
        """Record one epoch's row; True when it is the new best."""
        # Ties on the metric (common for accuracy on small validation sets) go to the lower validation loss.
        value = row[self.key]
        tie = (
            self.best_value is not None
            and value == self.best_value
            and row.get("val_loss", 0.0) < self.best_loss
        )
        if is_better(value, self.best_value, self.mode, self.min_delta) or tie:
            self.best_value, self.best_loss, self.best_epoch = value, row.get("val_loss", 0.0), epoch
            self.bad_epochs = 0
            return True
        self.bad_epochs += 1
        return False

    def state(self) -> dict[str, Any]:
        names = ("best_value", "best_loss", "best_epoch", "bad_epochs")
        return {k: getattr(self, k) for k in names}


@dataclass
class Setup:
    """Everything one training run works with, built once from the recipe and the data."""

    recipe: Recipe
    splits: Splits
    device: torch.device
    task: Task
    model: nn.Module
    batches: Batches
    x_val: torch.Tensor
    optimizers: dict[str, torch.optim.Optimizer]
    scheduler: Any
    per_batch: bool
    amp_dtype: torch.dtype | None
    scaler: torch.amp.GradScaler | None
    train_model: nn.Module | None = None  # what trains: the model, or its DistributedDataParallel wrapper

    @property
    def opt(self) -> torch.optim.Optimizer:
        return next(iter(self.optimizers.values()))

    def payload(self, epoch: int) -> dict[str, Any]:
        return model_payload(self.recipe, self.splits, self.model, epoch)


def model_payload(recipe: Recipe, splits: Splits, model: nn.Module, epoch: int) -> dict[str, Any]:
    """What best.pt holds: the weights and everything needed to rebuild and describe the model."""
    return {
        "recipe": recipe.to_dict(),
        "spec": splits.spec,
        "arch": recipe.arch,
        "input_shape": list(splits.input_shape),
        "num_outputs": splits.num_outputs,
        "epoch": epoch,
        "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
    }


def _write_history(path: Path, history: list[dict[str, float]]) -> None:
    from toolkit.io import write_text

    if not history:
        return
    keys = list(history[0])
    for row in history:
        keys += [k for k in row if k not in keys]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    for row in history:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    write_text(path, buf.getvalue())


def set_up(recipe: Recipe, splits: Splits, run_dir: Path) -> Setup:
    """The device, task, model, batches, optimizers and schedule of a run (seeded: the same every time)."""
    from toolkit.models import create_model

    t = recipe.train
    device = select_device(t.device)
    task = make_task(recipe, splits.spec, run_dir)
    distributed.check_task(task)  # before prepare: the GAN would train its judge first
    task.prepare(splits, device)  # e.g. the GAN trains (or loads) the classifier that judges its samples
    torch.manual_seed(t.seed)
    model = create_model(recipe.arch, recipe.model, splits.input_shape, splits.num_outputs, splits.spec)
    if getattr(recipe.model, "weights", None) is not None:  # a pretrained backbone: model.weights
        init_weights(model, recipe.model.weights)
    apply_transfer(model, recipe, splits.spec)  # model.init_from: another run's encoder; the head to freeze
    model = model.to(device)
    if isinstance(splits.x_train, ImageSet):  # an image folder: DataLoader workers decode and augment
        batches = stream_batches(splits, task.targets(splits.y_train), device, recipe.data, t.batch_size)
    else:
        batches = Batches(
            to_device(splits.x_train, device), task.targets(splits.y_train).to(device), t.batch_size
        )
    optimizers = task.optimizers(model)  # {"model": opt} for most tasks; the GAN has one per network
    scheduler, per_batch = (None, False)
    if len(optimizers) == 1:
        scheduler, per_batch = build_scheduler(recipe, next(iter(optimizers.values())), len(batches))
    amp_dtype = autocast_dtype(device, t.amp)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    x_val = to_device(splits.x_val, device)
    train_model, batches = distributed.prepare(model, batches, task, device)  # no-op in one process
    return Setup(
        recipe,
        splits,
        device,
        task,
        model,
        batches,
        x_val,
        optimizers,
        scheduler,
        per_batch,
        amp_dtype,
        scaler,
        train_model,
    )


def _restore(s: Setup, selection: Selection, state: dict[str, Any]) -> tuple[list[dict[str, float]], int]:
    """Continue from last.pt: weights, optimizer, schedule and selection state; (history, next epoch)."""
    s.model.load_state_dict(state["model"])
    for name, o in s.optimizers.items():
        o.load_state_dict(state["optimizers"][name])
    if s.scheduler is not None and state.get("scheduler"):
        s.scheduler.load_state_dict(state["scheduler"])
    if s.scaler is not None and state.get("scaler"):
        s.scaler.load_state_dict(state["scaler"])
    for k in ("best_value", "best_loss", "best_epoch", "bad_epochs"):
        setattr(selection, k, state[k])
    return state["history"], state["epoch"] + 1


def _epoch(s: Setup, epoch: int, progress: Any) -> dict[str, float]:
    """One epoch (seeded from the recipe's seed and the epoch number) and its history row."""
    recipe, t = s.recipe, s.recipe.train
    torch.manual_seed(epoch_seed(t.seed, epoch))
    e0 = time.perf_counter()
    kind = s.splits.spec["kind"]
    epoch_args = dict(
        on_batch=progress.advance if progress is not None else None,
        token_p=recipe.data.augment.token_dropout if kind == "tokens" else 0.0,
    )
    freeze = getattr(recipe.model, "freeze_epochs", None)
    if freeze is not None:  # fine-tuning: the head alone first, then everything at a lower learning rate
        schedule_epoch(s.model, s.opt, s.scheduler, epoch, freeze, recipe.model.unfreeze_lr)
    if s.task.custom_epoch:  # tasks with their own step (the GAN's alternating updates)
        losses = s.task.train_epoch(s.model, s.batches, s.optimizers, **epoch_args)
    else:
        augment = (recipe.data.augment.shift, recipe.data.augment.rotate) if kind == "image" else (0, 0)
        args = (s.scheduler, s.per_batch, t.grad_clip, augment, s.amp_dtype, s.scaler)
        losses = {"loss": train_one_epoch(s.train_model, s.task, s.batches, s.opt, *args, **epoch_args)}
        losses = distributed.mean_losses(losses, s.batches)
    lr = s.opt.param_groups[0]["lr"]
    if s.scheduler is not None and not s.per_batch:
        s.scheduler.step()
    row: dict[str, float] = {"epoch": epoch + 1, "lr": lr, **{f"train_{k}": v for k, v in losses.items()}}
    for k, v in evaluate(s.model, s.task, s.x_val, s.splits.y_val).items():
        row[f"val_{k}"] = v
    row["seconds"] = time.perf_counter() - e0
    return row


def _save_last(s: Setup, path: Path, epoch: int, history: list, selection: Selection) -> None:
    """last.pt: everything --resume needs to continue exactly as an uninterrupted run would."""
    save_checkpoint(
        path,
        {
            **s.payload(epoch),
            "optimizers": {name: o.state_dict() for name, o in s.optimizers.items()},
            "scheduler": s.scheduler.state_dict() if s.scheduler is not None else None,
            "scaler": s.scaler.state_dict() if s.scaler is not None else None,
            "history": history,
            **selection.state(),
        },
    )


def fit(
    recipe: Recipe,
    splits: Splits,
    run_dir: Path,
    resume: bool = False,
    progress: Any = None,
    callbacks: list[EpochCallback] | None = None,
) -> FitResult:
    """Train `recipe` on `splits`, writing checkpoints and metrics.csv to run_dir.

    `progress` is an optional object with start(total_epochs, done) / advance(n) / update(epoch, row)
    (the CLI passes a rich progress bar). Callbacks run after each epoch with (epoch, row); raising
    KeyboardInterrupt from one behaves like Ctrl-C (last.pt is already written, so --resume continues).
    """
    t = recipe.train
    s = set_up(recipe, splits, run_dir)
    has_val = len(splits.x_val) > 0
    key = f"val_{s.task.main_metric}" if has_val else "train_loss"
    selection = Selection(key, s.task.mode if has_val else "min", t.min_delta)
    history: list[dict[str, float]] = []
    start_epoch = 0
    last_path, best_path = run_dir / "last.pt", run_dir / "best.pt"
    last = distributed.load_on_main(last_path) if resume else None  # rank 0 reads, every rank gets it
    if last is not None:
        history, start_epoch = _restore(s, selection, last)
    stopped = bool(resume and start_epoch > 0 and t.patience and selection.bad_epochs >= t.patience)
    t0 = time.perf_counter()
    if progress is not None:
        progress.start(t.epochs, start_epoch, len(s.batches))
    main, best = distributed.is_main(), None  # only rank 0 writes; every rank keeps the best weights
    for epoch in range(start_epoch, t.epochs):
        if stopped:
            break
        row = _epoch(s, epoch, progress)
        history.append(row)
        if selection.update(row, epoch):
            best = s.payload(epoch)
            if main:
                save_checkpoint(best_path, best)
        stopped = bool(t.patience and selection.bad_epochs >= t.patience)
        if main:
            _save_last(s, last_path, epoch, history, selection)
            _write_history(run_dir / "metrics.csv", history)
        if progress is not None:
            progress.update(epoch + 1, row)
        for cb in callbacks or []:
            cb(epoch + 1, row)

    # Final test metrics from the best checkpoint. A task may settle more on the validation split first (the
    # anomaly threshold); what it settles is recorded in the best checkpoint's spec, for eval and export.
    best = best if best is not None else distributed.load_on_main(best_path)
    if best is None:
        raise ToolkitError(f"no best checkpoint in {run_dir}: best.pt is missing (was it deleted?)")
    s.model.load_state_dict(best["model"])
    x_test = to_device(splits.x_test, s.device)
    test, spec_updates = s.task.final_metrics(s.model, (s.x_val, splits.y_val), (x_test, splits.y_test))
    if spec_updates:
        splits.spec.update(spec_updates)
        if main:
            save_checkpoint(best_path, {**best, "spec": splits.spec})
    seconds = time.perf_counter() - t0
    return FitResult(run_dir, history, selection.best_epoch + 1, stopped, test, str(s.device), seconds)
