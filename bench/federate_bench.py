"""Federated training with Flower against centralized training, each contender in its own process.

Goals (issue 23):
- digits, 8 clients, Dirichlet alpha=0.5: FedAvg reaches >= 95% test accuracy within 20 rounds; its curve beside
  centralized training, and FedProx beside FedAvg on the same partition (same seed -> same partition);
- breast cancer, 4 clients, IID: within 1 point of centralized test accuracy;
- bytes sent per round and wall time reported.

Writes bench/results/federate.json and docs/images/federated-digits.png. Run: python bench/federate_bench.py
(about 30 minutes on 2 shared vCPUs: every client of every round is a fresh Flower ClientApp process).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOOLKIT = [sys.executable, "-m", "toolkit.cli.main"]
ROUNDS = 20

CONTENDERS = {
    "digits_central": ["train", "cnn-image", "--set", "train.epochs=20", "--set", "train.patience=0"],
    "digits_fedavg": [
        "federate",
        "cnn-image",
        "--clients", "8", "--rounds", str(ROUNDS), "--partition", "dirichlet:0.5", "--strategy", "fedavg",
        "--local-epochs", "5", "--set", "train.batch_size=32",
    ],
    "digits_fedprox": [
        "federate",
        "cnn-image",
        "--clients", "8", "--rounds", str(ROUNDS), "--partition", "dirichlet:0.5", "--strategy", "fedprox",
        "--proximal-mu", "0.01", "--local-epochs", "5", "--set", "train.batch_size=32",
    ],
    "breast_central": ["train", "mlp-tabular"],
    "breast_fedavg": [
        "federate", "mlp-tabular", "--clients", "4", "--rounds", str(ROUNDS), "--partition", "iid",
        "--local-epochs", "5",
    ],
}  # fmt: skip


def run(name: str, argv: list[str], work: Path) -> dict:
    out = work / name
    t0 = time.perf_counter()
    res = subprocess.run(
        [*TOOLKIT, *argv, "--out", str(out), "--json", *(["--no-progress"] if argv[0] == "train" else [])],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"{name} failed: {res.stderr.strip().splitlines()[-1:]}")
    metrics = json.loads(res.stdout[res.stdout.index("{") :])
    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    step = "round" if "round" in rows[0] else "epoch"
    curve = [(int(r[step]), float(r["val_accuracy"])) for r in rows if int(r[step]) > 0]
    fed = metrics.get("federated", {})
    return {
        "command": "toolkit " + " ".join(argv),
        "test_accuracy": metrics["accuracy"],
        "best": metrics["best_epoch"],
        "wall_seconds": round(wall, 1),
        "val_accuracy_curve": curve,
        "bytes_per_round": fed.get("bytes_per_round"),
        "seconds_per_round": fed.get("seconds_per_round"),
        "failed_replies": fed.get("failed_replies"),
        "clients": [json.loads((out / "data.json").read_text()).get("clients")] if fed else None,
    }


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    labels = {
        "digits_central": "centralized (per epoch)",
        "digits_fedavg": "FedAvg, 8 clients, Dirichlet 0.5 (per round)",
        "digits_fedprox": "FedProx mu=0.01, same partition (per round)",
    }
    for key, label in labels.items():
        xs, ys = zip(*results[key]["val_accuracy_curve"])
        ax.plot(xs, ys, label=f"{label}: test {results[key]['test_accuracy']:.3f}")
    ax.axhline(0.95, color="gray", lw=0.8, ls="--")
    ax.set(
        xlabel="epoch / round", ylabel="validation accuracy", title="digits (cnn-image): federated vs central"
    )
    ax.set_ylim(0.5, 1.0)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench/results/federate.json")
    ap.add_argument("--plot", default="docs/images/federated-digits.png")
    ap.add_argument("--only", nargs="*", help="run only these contenders")
    args = ap.parse_args()
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="federate-bench-") as tmp:
        for name, argv in CONTENDERS.items():
            if args.only and name not in args.only:
                continue
            print(f"{name}: {' '.join(argv)}", flush=True)
            results[name] = run(name, argv, Path(tmp))
            print(
                f"  test accuracy {results[name]['test_accuracy']:.4f} in {results[name]['wall_seconds']} s",
                flush=True,
            )
    goals = {}
    if {"digits_fedavg"} <= results.keys():
        goals["digits_fedavg_test_accuracy_ge_0.95"] = results["digits_fedavg"]["test_accuracy"] >= 0.95
    if {"breast_central", "breast_fedavg"} <= results.keys():
        gap = results["breast_central"]["test_accuracy"] - results["breast_fedavg"]["test_accuracy"]
        goals["breast_gap_points"] = round(100 * gap, 2)
        goals["breast_within_1_point"] = gap <= 0.01
    doc = {
        "machine": f"{platform.machine()}, {os.cpu_count()} vCPU (shared with other jobs, noisy), {platform.python_version()}",
        "flower": _version("flwr"),
        "rounds": ROUNDS,
        "results": results,
        "goals": goals,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    if {"digits_central", "digits_fedavg", "digits_fedprox"} <= results.keys():
        plot(results, Path(args.plot))
    print(json.dumps(goals, indent=2))


def _version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


if __name__ == "__main__":
    main()
