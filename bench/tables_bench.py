"""Tables at real size: a 1,000,000-row CSV loaded and trained for one epoch; accuracy on mixed columns.

What is measured (the CSVs are generated here, seeded, into --cache):

* load -- a 1,000,000-row x 20-column CSV (16 numeric columns, two of them with 5% gaps, 3 categorical
  columns of 5, 40 and 5,000 levels, a yes/no target) read, split and encoded by `toolkit.data.load_splits`
  (pyarrow reader, column encoding fitted on the train split). Beside it, the reader this replaced (Python's
  csv module and a float() per cell, copied below as `old_read_csv`) on the numeric twin of the file (the
  same rows without the categorical columns, which it refused), against `load_splits` on that twin. Each
  load runs in a fresh process per contender, paired rounds, medians.
* epoch -- one mlp-tabular epoch over the train split of the 1M-row table (the recipe's model, optimizer,
  batch --batch-size), `toolkit.train.loop.train_one_epoch` against a bare PyTorch loop on the same arrays
  (bench/train_overhead.py's two paths: same initialization and shuffles), interleaved rounds, medians.
* accuracy -- mixed numeric/categorical CSVs (job, city, age with gaps, income; labels from a logistic model):
  mlp-tabular with the recipe's defaults (--epochs, batch 128) against scikit-learn's LogisticRegression on
  one-hot columns (mean-imputed numbers plus is-missing indicators, missing categories a level) on the same
  split. Two truths: "curved" (age enters squared, as real effects often do) and "additive" (a logistic model
  on the one-hot columns is exactly right: the baseline's best case). Goal: within 1 point or better.

Run: `.venv/bin/python bench/tables_bench.py --out bench/results/tables.json` (`make bench`); `--rows 100000`
for a quick look.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
GOAL_POINTS = 1.0
JOBS = ["nurse", "teacher", "driver", "cook", "clerk", "pilot"]


# --------------------------------------------------------------------------------------------- data
def big_table(path: Path, rows: int, numeric_only: bool, seed: int = 0) -> Path:
    """The 20-column table (or its numeric twin), written with pyarrow; reused when already there."""
    import pyarrow as pa
    from pyarrow import csv as pacsv

    if path.is_file():
        return path
    rng = np.random.default_rng(seed)
    cols: dict[str, Any] = {}
    logit = np.zeros(rows)
    for i in range(16):
        v = rng.normal(0, 1, rows)
        logit += v * rng.normal(0, 0.5)
        arr = pa.array(np.round(v, 4))
        if i < 2:  # two columns with 5% gaps
            arr = pa.array(np.round(v, 4), mask=rng.random(rows) < 0.05)
        cols[f"n{i}"] = arr
    if not numeric_only:
        for name, levels in (("color", 5), ("city", 40), ("shop", 5000)):
            k = rng.integers(0, levels, rows)
            logit += rng.normal(0, 1, levels)[k]
            cols[name] = pa.array(np.char.add(f"{name}", k.astype(str)))
    cols["label"] = pa.array(np.where(rng.random(rows) < 1 / (1 + np.exp(-logit)), "yes", "no"))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    pacsv.write_csv(pa.table(cols), tmp)
    os.replace(tmp, path)
    return path


def mixed_csv(path: Path, n: int, seed: int, curved: bool, cities: int = 40) -> Path:
    """job (6 levels, 5% missing), age (10% missing), income, city; yes/no from a logistic model."""
    rng = np.random.default_rng(seed)
    job_effect, city_effect = rng.normal(0, 1.2, len(JOBS)), rng.normal(0, 1.0, cities)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["job", "age", "income", "city", "label"])
        for _ in range(n):
            j, c = int(rng.integers(len(JOBS))), int(rng.integers(cities))
            age, income = rng.normal(40, 12), rng.normal(50, 15)
            za, zi = (age - 40) / 12, (income - 50) / 15
            logit = (
                job_effect[j] + city_effect[c] + 0.8 * za + 0.6 * zi + 0.5 - (0.9 * za * za if curved else 0)
            )
            label = "yes" if rng.random() < 1 / (1 + np.exp(-2 * logit)) else "no"
            job = JOBS[j] if rng.random() > 0.05 else ""
            w.writerow([job, f"{age:.1f}" if rng.random() > 0.1 else "", f"{income:.2f}", f"city{c}", label])
    return path


def old_read_csv(path: Path) -> np.ndarray:
    """The hand-written reader toolkit had before pyarrow (toolkit/data/sources.py), numbers only."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.reader(f))
    rows = [r for r in rows if any(cell.strip() for cell in r)]
    header, body = rows[0], rows[1:]
    features = list(range(len(header) - 1))
    x = np.empty((len(body), len(features)), dtype=np.float32)
    for j, col in enumerate(features):
        for i, r in enumerate(body):
            cell = r[col].strip()
            x[i, j] = np.nan if cell == "" or cell.lower() in ("na", "nan") else float(cell)
    return x


# --------------------------------------------------------------------------------------------- contenders
def contender(name: str, path: str) -> dict[str, float]:
    """One timed load in this process (run as `--contender NAME --csv PATH`); imports are not timed."""
    import pyarrow.csv  # noqa: F401  (imports are a constant, not the reader's cost per row)

    import toolkit.data  # noqa: F401
    import toolkit.models  # noqa: F401

    t0 = time.perf_counter()
    if name == "old":
        rows = len(old_read_csv(Path(path)))
    else:
        splits = load(path)
        rows = len(splits.x_train) + len(splits.x_val) + len(splits.x_test)
    return {"seconds": time.perf_counter() - t0, "rows": rows}


def load(path: str, overrides: list[str] = ()) -> Any:
    from toolkit.data import load_splits
    from toolkit.models import model_entry
    from toolkit.recipe import load_recipe

    recipe = load_recipe("mlp-tabular", [f"data.source={path}", *overrides])
    kind = model_entry(recipe.arch).input_kind(recipe.task, recipe.model)
    return load_splits(recipe.data, recipe.task, kind, recipe.train.seed)


def timed_load(name: str, path: Path) -> float:
    cmd = [sys.executable, __file__, "--contender", name, "--csv", str(path)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT).stdout
    return json.loads(out.strip().splitlines()[-1])["seconds"]


def bench_loads(big: Path, twin: Path, rounds: int) -> dict[str, Any]:
    runs: dict[str, list[float]] = {"toolkit_mixed": [], "toolkit_numeric": [], "old_numeric": []}
    for r in range(rounds):
        order = [("toolkit", twin, "toolkit_numeric"), ("old", twin, "old_numeric")]
        for name, path, key in order if r % 2 == 0 else order[::-1]:
            runs[key].append(timed_load(name, path))
        runs["toolkit_mixed"].append(timed_load("toolkit", big))
        print(f"  load round {r + 1}/{rounds}: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in runs.items()))
    med = {k: statistics.median(v) for k, v in runs.items()}
    return {
        "seconds": runs,
        "median_s": med,
        "old_over_toolkit": med["old_numeric"] / med["toolkit_numeric"],
    }


def bench_epoch(big: Path, batch: int, rounds: int) -> dict[str, Any]:
    """The trainer's epoch against the bare loop on the same encoded arrays (paths of train_overhead.py)."""
    sys.path.insert(0, str(ROOT / "bench"))
    import torch
    from train_overhead import BarePath, Setup, TrainerPath, timed

    from toolkit.recipe import load_recipe
    from toolkit.train.registry import make_task

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    overrides = [f"data.source={big}", f"train.batch_size={batch}", "train.device=cpu"]
    recipe = load_recipe("mlp-tabular", overrides)
    t0 = time.perf_counter()
    splits = load(str(big), overrides)
    load_s = time.perf_counter() - t0
    task = make_task(recipe, splits.spec)
    s = Setup(
        "mlp-tabular", recipe, splits, task, torch.as_tensor(splits.x_train), task.targets(splits.y_train)
    )
    trainer, bare = TrainerPath(s), BarePath(s)
    if rounds > 1:  # warm-up: allocator, kernels, optimizer state (one round alternates the order anyway)
        trainer.run(1)
        bare.run(1)
    trainer_s, bare_s = [], []
    for r in range(rounds):
        pair = [(trainer, trainer_s), (bare, bare_s)]
        for path, times in pair if r % 2 == 0 else pair[::-1]:
            times.append(timed(path.run, 1))
        print(f"  epoch round {r + 1}/{rounds}: trainer {trainer_s[-1]:.1f} s, bare {bare_s[-1]:.1f} s")
    return {
        "rows": len(splits.x_train),
        "input_width": int(splits.x_train.shape[1]),
        "columns": [(c["name"], c["kind"], c.get("encoding")) for c in splits.spec["columns"]],
        "batch_size": batch,
        "load_in_process_s": load_s,
        "trainer_s": trainer_s,
        "bare_s": bare_s,
        "median_trainer_s": statistics.median(trainer_s),
        "median_bare_s": statistics.median(bare_s),
        "ratio": statistics.median(t / b for t, b in zip(trainer_s, bare_s)),
    }


def bench_accuracy(cache: Path, n: int, epochs: int) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression

    from toolkit.data import load_splits
    from toolkit.recipe import DataConfig
    from toolkit.train import train

    out = {}
    for truth in ("curved", "additive"):
        path = mixed_csv(cache / f"mixed-{truth}-{n}.csv", n, seed=3, curved=truth == "curved")
        run = cache / f"run-{truth}"
        shutil.rmtree(run, ignore_errors=True)
        t0 = time.perf_counter()
        train(
            "mlp-tabular",
            data=str(path),
            out=run,
            overrides=[f"train.epochs={epochs}", "train.batch_size=128"],
        )
        train_s = time.perf_counter() - t0
        acc = json.loads((run / "metrics.json").read_text())["accuracy"]
        s = load_splits(DataConfig(source=str(path), onehot_max_levels=10**6), "classify", "tabular", seed=0)
        lr = LogisticRegression(max_iter=5000).fit(s.x_train, s.y_train)
        base = float((lr.predict(s.x_test) == s.y_test).mean())
        points = 100 * (acc - base)
        out[truth] = {
            "rows": n,
            "test_rows": len(s.y_test),
            "mlp_accuracy": acc,
            "logreg_onehot_accuracy": base,
            "points": points,
            "within_goal": points >= -GOAL_POINTS,
            "mlp_train_s": train_s,
        }
        print(f"  {truth}: mlp {acc:.4f}  logistic regression {base:.4f}  ({points:+.2f} points)")
    return out


def machine() -> dict[str, Any]:
    import pyarrow
    import torch

    return {
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "pyarrow": pyarrow.__version__,
        "note": "shared, noisy 2-vCPU machine unless stated otherwise",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/tables.json")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--accuracy-rows", type=int, default=20_000)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--cache", type=Path, default=ROOT / ".cache/bench-tables")
    ap.add_argument("--contender", choices=["toolkit", "old"])
    ap.add_argument("--csv")
    args = ap.parse_args()
    if args.contender:
        print(json.dumps(contender(args.contender, args.csv)))
        return
    big = big_table(args.cache / f"table-{args.rows}.csv", args.rows, numeric_only=False)
    twin = big_table(args.cache / f"numeric-{args.rows}.csv", args.rows, numeric_only=True)
    print(f"tables bench: {args.rows:,} rows, {args.rounds} rounds")
    report = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "settings": {k: v for k, v in vars(args).items() if k in ("rows", "rounds", "batch_size", "epochs")},
        "csv_columns": 20,
        "goal_points": GOAL_POINTS,
        "load": bench_loads(big, twin, args.rounds),
        "epoch": bench_epoch(big, args.batch_size, args.rounds),
        "accuracy": bench_accuracy(args.cache, args.accuracy_rows, args.epochs),
    }
    from toolkit.io import write_json

    write_json(args.out, report)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
