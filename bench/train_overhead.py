"""Training-loop overhead: the toolkit trainer against a bare PyTorch loop on the same model and data.

What is measured, per recipe (`cnn-image` on builtin:digits, `mlp-tabular` on builtin:breast_cancer), with
the recipe's own model, batch size, optimizer, label smoothing and gradient clipping, on the CPU:

* trainer -- `toolkit.train.loop.train_one_epoch` over `Batches`, with the task's loss, the recipe's grad
  clipping and a progress callback like the CLI's (a cheap Python callable counting batches);
* bare    -- a plain loop written below: `torch.randperm` shuffle, index the batch, forward,
  `F.cross_entropy` (same label smoothing), `zero_grad`, `backward`, `clip_grad_norm_` when the recipe
  clips, `step`.

Both start from the same initialization (`torch.manual_seed(seed)` before `create_model`), the same optimizer
settings, and reseed torch's RNG per epoch the way `fit` does, so they draw the same shuffles and dropout
masks and perform the same arithmetic; the script checks this by comparing their parameters afterwards.
Data augmentation is disabled in both (`data.augment.shift=0`, `data.augment.rotate=0`): the bare loop
would otherwise have to reimplement it, and the point is the trainer's own per-batch cost, not the cost of
augmenting. The per-epoch learning-rate scheduler step, which `fit` does outside `train_one_epoch`, is left
out of both.

The two are interleaved (trainer, bare, trainer, bare, ...) for R rounds after a warm-up, each measurement a
fixed number of epochs (calibrated to about `--target-seconds`), so drift on a shared machine hits both
alike; the medians give samples/s, ratio = median of per-round trainer / bare and overhead % = (1 - ratio) * 100. The goal is
an overhead of at most 5%.

Separately, "end-to-end per epoch" times whole `fit` epochs (train, validation evaluation, checkpoint
writes, metrics.csv), taken between consecutive epoch callbacks in a temporary run directory, against the
same bare loop. That is work a bare loop does not do, so it is reported apart from the overhead figure.

Run: `.venv/bin/python bench/train_overhead.py --out bench/results/train_overhead.json` (`make bench`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from rich import box
from rich.console import Console
from rich.table import Table

from toolkit.data import Splits, load_splits
from toolkit.io import write_json
from toolkit.models import create_model, model_entry
from toolkit.recipe import Recipe, load_recipe
from toolkit.train.loop import Batches, epoch_seed, fit, train_one_epoch
from toolkit.train.optim import build_optimizer, build_scheduler
from toolkit.train.registry import make_task
from toolkit.train.tasks import Task

RECIPES = ("cnn-image", "mlp-tabular")
GOAL_OVERHEAD_PCT = 5.0
# Both paths train without augmentation (see the module docstring); the CPU keeps the comparison simple
# (no autocast, no device syncs to time around).
EpochStamp = Callable[[int, dict[str, float]], None]
OVERRIDES = ["data.augment.shift=0", "data.augment.rotate=0", "train.device=cpu"]


# --------------------------------------------------------------------------------------------- set-up
@dataclass
class Setup:
    name: str
    recipe: Recipe
    splits: Splits
    task: Task
    x: torch.Tensor
    y: torch.Tensor


def prepare(name: str) -> Setup:
    recipe = load_recipe(name, OVERRIDES)
    if recipe.task != "classify" or recipe.loss != "cross_entropy":
        sys.exit(f"{name}: this benchmark's bare loop uses cross_entropy; needs a classify recipe")
    splits = load_splits(
        recipe.data,
        recipe.task,
        model_entry(recipe.arch).input_kind(recipe.task, recipe.model),
        recipe.train.seed,
    )
    task = make_task(recipe, splits.spec)
    x = torch.as_tensor(splits.x_train)
    y = task.targets(splits.y_train)
    return Setup(name, recipe, splits, task, x, y)


def new_model(s: Setup) -> nn.Module:
    torch.manual_seed(s.recipe.train.seed)
    return create_model(s.recipe.arch, s.recipe.model, s.splits.input_shape, s.splits.num_outputs)


def plain_optimizer(recipe: Recipe, params: Any) -> torch.optim.Optimizer:
    """The recipe's optimizer, spelled out with plain torch calls (same settings as build_optimizer)."""
    t = recipe.train
    if t.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)
    if t.optimizer == "adam":
        return torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay)
    if t.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay, nesterov=t.momentum > 0
        )
    return torch.optim.RMSprop(params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)


class BatchCounter:
    """Stands in for the CLI's progress bar: the same hooks, doing nothing but counting."""

    def __init__(self) -> None:
        self.batches = 0.0
        self.epochs = 0

    def start(self, epochs: int, done: int, steps_per_epoch: int) -> None:
        self.epochs = done

    def advance(self, n: float) -> None:
        self.batches += n

    def update(self, epoch: int, row: dict[str, float]) -> None:
        self.epochs = epoch


# --------------------------------------------------------------------------------------------- the two loops
class TrainerPath:
    """toolkit.train.loop.train_one_epoch, called the way `fit` calls it."""

    def __init__(self, s: Setup) -> None:
        self.s, self.epoch = s, 0
        self.model = new_model(s)
        self.batches = Batches(s.x, s.y, s.recipe.train.batch_size)
        self.opt = build_optimizer(s.recipe, self.model.parameters())
        self.scheduler, self.per_batch = build_scheduler(s.recipe, self.opt, len(self.batches))
        if self.per_batch:
            sys.exit(f"{s.name}: per-batch schedules are not mirrored by the bare loop")
        self.progress = BatchCounter()

    def run(self, epochs: int) -> None:
        t = self.s.recipe.train
        for _ in range(epochs):
            torch.manual_seed(epoch_seed(t.seed, self.epoch))
            train_one_epoch(
                self.model,
                self.s.task,
                self.batches,
                self.opt,
                self.scheduler,
                self.per_batch,
                t.grad_clip,
                (0.0, 0.0),
                None,
                None,
                on_batch=self.progress.advance,
            )
            self.epoch += 1


class BarePath:
    """The plain PyTorch loop every tutorial writes."""

    def __init__(self, s: Setup) -> None:
        self.s, self.epoch = s, 0
        self.model = new_model(s)
        self.opt = plain_optimizer(s.recipe, self.model.parameters())

    def run(self, epochs: int) -> None:
        t = self.s.recipe.train
        model, opt, x, y = self.model, self.opt, self.s.x, self.s.y
        n, bs, smoothing, clip = len(x), t.batch_size, t.label_smoothing, t.grad_clip
        model.train()
        for _ in range(epochs):
            torch.manual_seed(epoch_seed(t.seed, self.epoch))  # what fit does; keeps both paths identical
            perm = torch.randperm(n)
            for i in range(0, n, bs):
                idx = perm[i : i + bs]
                out = model(x[idx])
                loss = F.cross_entropy(out, y[idx], label_smoothing=smoothing)
                opt.zero_grad()
                loss.backward()
                if clip > 0:
                    nn.utils.clip_grad_norm_(model.parameters(), clip)
                opt.step()
            self.epoch += 1


def timed(fn: Callable[[int], None], epochs: int) -> float:
    t0 = time.perf_counter()
    fn(epochs)
    return time.perf_counter() - t0


def max_param_diff(a: nn.Module, b: nn.Module) -> float:
    pairs = zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    return max(float((p - q).abs().max()) for p, q in pairs)


# --------------------------------------------------------------------------------------------- end-to-end
def fit_epoch_seconds(s: Setup, epochs: int) -> float:
    """Median wall time of one whole `fit` epoch (train, validate, checkpoints, metrics.csv).

    Measured between consecutive epoch callbacks (the last thing in fit's epoch loop), so the set-up before
    the first epoch and the final test evaluation are not counted.
    """
    recipe = load_recipe(s.name, [*OVERRIDES, f"train.epochs={epochs}", "train.patience=0"])
    stamps: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-fit-") as tmp:
        stamp: EpochStamp = lambda epoch, row: stamps.append(time.perf_counter())  # noqa: E731
        fit(recipe, s.splits, Path(tmp), progress=BatchCounter(), callbacks=[stamp])
    return statistics.median(b - a for a, b in itertools.pairwise(stamps))


# --------------------------------------------------------------------------------------------- benchmark
def bench_recipe(
    s: Setup, rounds: int, target_s: float, epochs: int | None, console: Console
) -> dict[str, Any]:
    t = s.recipe.train
    trainer, bare = TrainerPath(s), BarePath(s)
    n = len(s.x)

    # Warm-up (allocator, kernels, optimizer state), the same epochs in both. The fastest bare epoch sets
    # the epochs per measurement: on a shared machine the fastest is the least disturbed one.
    warm = [timed(p.run, 1) for _ in range(3) for p in (trainer, bare)]
    same_after_warmup = max_param_diff(trainer.model, bare.model)
    epoch_s = min(warm[1::2])
    if epochs is None:
        epochs = max(1, round(target_s / epoch_s))
    fit_epochs = max(3, epochs + 1)  # + 1: the first epoch is not timed
    console.print(
        f"[bold]{s.name}[/]: {n} samples/epoch, batch {t.batch_size}, {t.optimizer}, clip {t.grad_clip}, "
        f"smoothing {t.label_smoothing}; {epochs} epochs per measurement, {rounds} rounds"
    )

    trainer_sps: list[float] = []
    bare_sps: list[float] = []
    e2e_sps: list[float] = []
    for r in range(rounds):
        # Alternate which loop goes first, so neither always runs right after the end-to-end `fit` epochs.
        if r % 2 == 0:
            trainer_sps.append(n * epochs / timed(trainer.run, epochs))
            bare_sps.append(n * epochs / timed(bare.run, epochs))
        else:
            bare_sps.append(n * epochs / timed(bare.run, epochs))
            trainer_sps.append(n * epochs / timed(trainer.run, epochs))
        e2e_sps.append(n / fit_epoch_seconds(s, fit_epochs))
        console.print(
            f"  round {r + 1}/{rounds}: trainer {trainer_sps[-1]:,.0f}  bare {bare_sps[-1]:,.0f}  "
            f"fit {e2e_sps[-1]:,.0f} samples/s",
            highlight=False,
        )

    med_t, med_b, med_e = (statistics.median(v) for v in (trainer_sps, bare_sps, e2e_sps))
    # Headline: the median of per-round ratios. Each round runs both loops back to back, so a burst of load
    # from another process hits both; the ratio of the two medians is kept for reference.
    ratio = statistics.median(a / b for a, b in zip(trainer_sps, bare_sps, strict=True))
    e2e_ratio = statistics.median(e / b for e, b in zip(e2e_sps, bare_sps, strict=True))
    return {
        "recipe": s.name,
        "source": s.recipe.data.source,
        "arch": s.recipe.arch,
        "optimizer": t.optimizer,
        "batch_size": t.batch_size,
        "samples_per_epoch": n,
        "batches_per_epoch": math.ceil(n / t.batch_size),
        "grad_clip": t.grad_clip,
        "label_smoothing": t.label_smoothing,
        "epochs_per_measurement": epochs,
        "trainer": summarize(trainer_sps),
        "bare": summarize(bare_sps),
        "ratio": ratio,
        "overhead_pct": (1 - ratio) * 100,
        "ratio_of_medians": med_t / med_b,
        "within_goal": (1 - ratio) * 100 <= GOAL_OVERHEAD_PCT,
        "same_work_check": {
            "max_abs_param_diff_after_warmup": same_after_warmup,
            "max_abs_param_diff_at_end": max_param_diff(trainer.model, bare.model),
            "epochs_each": trainer.epoch,
        },
        "end_to_end_per_epoch": {
            "what": "whole fit epochs: train + validation evaluation + checkpoint write(s) + metrics.csv, "
            "median interval between epoch callbacks, in a temporary run directory",
            "fit_epochs_per_run": fit_epochs,
            "validation_samples": len(s.splits.x_val),
            **summarize(e2e_sps),
            "median_seconds_per_epoch": n / med_e,
            "ratio_vs_bare": e2e_ratio,
            "overhead_vs_bare_pct": (1 - e2e_ratio) * 100,
        },
    }


def summarize(values: list[float]) -> dict[str, Any]:
    """Median samples/s, every round's value, and the spread (max - min) / median as a noise gauge."""
    med = statistics.median(values)
    return {
        "median_samples_per_s": med,
        "rounds_samples_per_s": values,
        "spread_pct": (max(values) - min(values)) / med * 100,
    }


def machine_info(threads: int) -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": threads,
        "device": "cpu",
    }


def summary_table(results: list[dict[str, Any]]) -> Table:
    title = f"Trainer vs bare PyTorch loop, median samples/s (goal: overhead <= {GOAL_OVERHEAD_PCT:g}%)"
    table = Table(title=title, box=box.SIMPLE_HEAD)
    for col in ("recipe", "batch", "samples", "trainer", "bare", "ratio", "overhead", "fit e2e", "e2e/bare"):
        table.add_column(col, justify="left" if col == "recipe" else "right")
    for r in results:
        e2e = r["end_to_end_per_epoch"]
        colour = "green" if r["within_goal"] else "red"
        table.add_row(
            r["recipe"],
            str(r["batch_size"]),
            str(r["samples_per_epoch"]),
            f"{r['trainer']['median_samples_per_s']:,.0f}",
            f"{r['bare']['median_samples_per_s']:,.0f}",
            f"{r['ratio']:.3f}",
            f"[{colour}]{r['overhead_pct']:+.1f}%[/]",
            f"{e2e['median_samples_per_s']:,.0f}",
            f"{e2e['ratio_vs_bare']:.3f}",
        )
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results/train_overhead.json"))
    parser.add_argument("--rounds", type=int, default=15, help="interleaved trainer/bare rounds (default 15)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: on a shared 2-core machine two threads make single rounds vary by 2x; "
        "0 = torch's default)",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="epochs per measurement (default: calibrated to --target-seconds)",
    )
    parser.add_argument("--target-seconds", type=float, default=1.0, help="aim for this long per measurement")
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), help=f"default: {' '.join(RECIPES)}")
    args = parser.parse_args(argv)
    if args.rounds < 1 or (args.epochs is not None and args.epochs < 1):
        parser.error("--rounds and --epochs must be positive")

    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    console = Console(width=None if sys.stdout.isatty() else 100)  # `make bench | tee`: keep the table whole
    info = machine_info(threads)
    console.print(
        f"torch {info['torch']}, python {info['python']}, {info['cpu_count']} CPUs, {threads} torch threads; "
        "augmentation off in both paths",
        highlight=False,
    )

    t0 = time.perf_counter()
    results = [
        bench_recipe(prepare(name), args.rounds, args.target_seconds, args.epochs, console)
        for name in args.recipes
    ]
    report = {
        "benchmark": "train_overhead",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": info,
        "settings": {
            "rounds": args.rounds,
            "order": "warm-up, then per round: trainer, bare, fit (end-to-end)",
            "target_seconds_per_measurement": args.target_seconds,
            "augmentation": "disabled in both paths (data.augment.shift=0, data.augment.rotate=0)",
            "overrides": OVERRIDES,
            "progress_callback": "python callable counting batches (stand-in for the CLI's progress bar)",
            "lr_scheduler": "per-epoch scheduler step not included in trainer or bare (fit does it outside "
            "train_one_epoch); it is included in end-to-end",
        },
        "goal_overhead_pct": GOAL_OVERHEAD_PCT,
        "definitions": {
            "ratio": "median over rounds of trainer/bare samples/s measured back to back in the same round",
            "overhead_pct": "(1 - ratio) * 100; negative means the trainer was faster",
            "ratio_of_medians": "median trainer samples/s / median bare samples/s (reference)",
        },
        "recipes": {r["recipe"]: r for r in results},
        "total_seconds": time.perf_counter() - t0,
    }
    write_json(args.out, report)
    console.print(summary_table(results))
    console.print(f"wrote {args.out} ({report['total_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
