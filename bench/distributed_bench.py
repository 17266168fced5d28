"""Data-parallel training on one machine: 1 process against `--nproc 2`, and what multi-node would give.

What is measured (cnn-image on builtin:digits, CPU, gloo on loopback):

* throughput -- `toolkit train cnn-image --nproc P` for P = 1 and 2, each a fresh process tree, interleaved
  (1, 2, 1, 2, ...) for R rounds; samples/s = training samples / median epoch seconds (metrics.csv, first
  epoch dropped: it warms caches), so process start-up is not counted. Efficiency = speed-up / P.
* accuracy -- the same recipe trained to the end (its early stopping) with 1 and 2 processes, same global
  batch; the goal is test accuracy within 0.5 point.
* communication -- gradient bytes per step (fp32 parameters of the model) and the time of one all-reduce of
  that many bytes between two gloo processes on loopback (median of many); compute per step is 1-process
  step time. From that split, a written projection of multi-node scaling (ring all-reduce model).

The machine is a shared 2-vCPU VM: two processes share two cores, so compute does not double; the figures
say how much the toolkit's distributed path costs, not what a many-core node gains.

Run: `.venv/bin/python bench/distributed_bench.py --out bench/results/distributed.json` (`make bench`).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ["cnn-image", "--data", "builtin:digits", "--no-progress", "--json"]


def _train(nproc: int, out: Path, extra: list[str], threads: int | None = 1) -> dict:
    """One `toolkit train` process tree; `threads` torch threads per process (None: torch's default)."""
    cmd = [sys.executable, "-m", "toolkit", "train", *RECIPE, "--nproc", str(nproc), "--out", str(out)]
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    proc = subprocess.run([*cmd, *extra], capture_output=True, text=True, timeout=3600, cwd=ROOT, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"training with --nproc {nproc} failed:\n{proc.stderr[-3000:]}")
    metrics = json.loads(proc.stdout[proc.stdout.index("{") :])
    with open(out / "metrics.csv") as f:
        metrics["epoch_seconds"] = [float(r["seconds"]) for r in csv.DictReader(f)]
    return metrics


# contender -> (processes, torch threads per process; None = torch's default, one per core)
CONTENDERS = {"1 process, default threads": (1, None), "1 process, 1 thread": (1, 1), "2 processes": (2, 1)}


def throughput(rounds: int, epochs: int, tmp: Path) -> dict:
    """Interleaved rounds of each contender; median samples/s and the per-round speed-up of 2 processes
    over each single-process contender."""
    per: dict[str, list[float]] = {name: [] for name in CONTENDERS}
    samples = 0
    for r in range(rounds):
        for i, (name, (nproc, threads)) in enumerate(CONTENDERS.items()):
            extra = ["--epochs", str(epochs), "--set", "train.patience=0"]
            m = _train(nproc, tmp / f"tp-{r}-{i}", extra, threads)
            samples = m["samples"]["train"]
            per[name].append(samples / statistics.median(m["epoch_seconds"][1:]))
    two = per["2 processes"]
    speedup = {
        name: round(statistics.median(b / a for a, b in zip(per[name], two)), 3)
        for name in CONTENDERS
        if name != "2 processes"
    }
    return {
        "train_samples": samples,
        "epochs_per_run": epochs,
        "samples_per_s": {name: round(statistics.median(v), 1) for name, v in per.items()},
        "speedup_2_vs": speedup,
        "efficiency_2_vs": {name: round(v / 2, 3) for name, v in speedup.items()},
        "rounds": rounds,
    }


def accuracy(tmp: Path, seeds: list[int]) -> dict:
    rows = []
    for seed in seeds:
        one = _train(1, tmp / f"acc-{seed}-1", ["--seed", str(seed)])
        two = _train(2, tmp / f"acc-{seed}-2", ["--seed", str(seed)])
        rows.append({"seed": seed, "accuracy_1": one["accuracy"], "accuracy_2": two["accuracy"]})
    gap = statistics.mean(abs(r["accuracy_1"] - r["accuracy_2"]) for r in rows) * 100
    mean1 = statistics.mean(r["accuracy_1"] for r in rows) * 100
    mean2 = statistics.mean(r["accuracy_2"] for r in rows) * 100
    return {
        "runs": rows,
        "mean_accuracy_1_pct": round(mean1, 2),
        "mean_accuracy_2_pct": round(mean2, 2),
        "mean_gap_points": round(abs(mean1 - mean2), 2),
        "mean_abs_gap_per_seed_points": round(gap, 2),
        "goal_points": 0.5,
        "within_goal": abs(mean1 - mean2) <= 0.5,
    }


ALLREDUCE = r"""
import os, statistics, sys, time, torch, torch.distributed as dist
dist.init_process_group("gloo")
t = torch.ones(int(sys.argv[1]))
for _ in range(5):
    dist.all_reduce(t)
times = []
for _ in range(int(sys.argv[2])):
    dist.barrier(); t0 = time.perf_counter(); dist.all_reduce(t); times.append(time.perf_counter() - t0)
if dist.get_rank() == 0:
    print(statistics.median(times))
dist.destroy_process_group()
"""


def communication(reps: int) -> dict:
    """Gradient bytes per step of the model, one all-reduce of them with gloo (2 processes, loopback), and
    one process's compute per step (forward + backward + step on a global batch)."""
    import torch

    from toolkit.data import load_splits
    from toolkit.models import create_model, model_entry
    from toolkit.recipe import load_recipe
    from toolkit.train.optim import build_optimizer

    torch.set_num_threads(1)  # as each rank has; the machine's other core is the other rank's
    rec = load_recipe("cnn-image")
    splits = load_splits(rec.data, rec.task, model_entry(rec.arch).input_kind(rec.task, rec.model), 0)
    torch.manual_seed(0)
    model = create_model(rec.arch, rec.model, splits.input_shape, splits.num_outputs, splits.spec)
    numel = sum(p.numel() for p in model.parameters() if p.requires_grad)
    opt = build_optimizer(rec, model.parameters())
    x = torch.as_tensor(splits.x_train[: rec.train.batch_size])
    y = torch.as_tensor(splits.y_train[: rec.train.batch_size], dtype=torch.int64)
    step = []
    for i in range(30):
        t0 = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= 5:
            step.append(time.perf_counter() - t0)
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(ALLREDUCE)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", f.name]
    proc = subprocess.run([*cmd, str(numel), str(reps)], capture_output=True, text=True, env=env, timeout=600)
    os.unlink(f.name)
    if proc.returncode != 0:
        raise SystemExit(f"all-reduce measurement failed:\n{proc.stderr[-2000:]}")
    allreduce_s = float(proc.stdout.strip().splitlines()[-1])
    compute_s = statistics.median(step)
    return {
        "parameters": numel,
        "gradient_bytes_per_step": numel * 4,
        "allreduce_ms_gloo_loopback_2proc": round(allreduce_s * 1e3, 3),
        "compute_ms_per_step_1proc": round(compute_s * 1e3, 3),
        "batch_size": rec.train.batch_size,
        "communication_fraction": round(allreduce_s / (allreduce_s + compute_s), 3),
    }


def projection(comm: dict) -> list[dict]:
    """Step time on N nodes (one process each) with a ring all-reduce: compute / N + 2 (N - 1) / N x bytes /
    bandwidth + 2 (N - 1) x latency; latency from the loopback measurement (an optimistic floor)."""
    compute = comm["compute_ms_per_step_1proc"] / 1e3
    nbytes = comm["gradient_bytes_per_step"]
    latency = comm["allreduce_ms_gloo_loopback_2proc"] / 1e3 / 2  # one ring step of the 2-process measurement
    rows = []
    for gbit in (1, 10, 100):
        for nodes in (1, 2, 4, 8, 16):
            comm_s = (
                0.0
                if nodes == 1
                else 2 * (nodes - 1) / nodes * nbytes / (gbit * 1.25e8)
                + 2 * (nodes - 1) * max(latency, 50e-6)
            )
            t = compute / nodes + comm_s
            rows.append(
                {
                    "network_gbit": gbit,
                    "nodes": nodes,
                    "step_ms": round(t * 1e3, 3),
                    "speedup": round(compute / t, 2),
                    "efficiency": round(compute / t / nodes, 2),
                }
            )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "distributed.json")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    ap.add_argument("--reps", type=int, default=200)
    args = ap.parse_args()
    import torch

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        comm = communication(args.reps)
        report = {
            "benchmark": "data-parallel training: cnn-image on builtin:digits, 1 vs 2 processes (gloo)",
            "date": dt.date.today().isoformat(),
            "machine": {
                "processor": platform.processor() or platform.machine(),
                "cpu_count": os.cpu_count(),
                "python": platform.python_version(),
                "torch": torch.__version__,
                "note": "shared 2-vCPU VM: 2 processes share 2 cores, compute cannot double here",
                "load_average_before": [round(x, 1) for x in os.getloadavg()],
            },
            "throughput": throughput(args.rounds, args.epochs, tmp),
            "accuracy": accuracy(tmp, args.seeds),
            "communication": comm,
            "projection": projection(comm),
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("throughput", "accuracy", "communication")}, indent=2))


if __name__ == "__main__":
    main()
