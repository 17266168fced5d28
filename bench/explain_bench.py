"""Explanations: faithfulness, agreement with Captum, sanity and speed (issue 21's goals).

Models: the digits CNN (recipe cnn-image, builtin:digits, 8x8), the tabular MLP (mlp-tabular,
builtin:breast_cancer, 30 features), and for the per-task speed figures a text LSTM, an RNN forecaster and the
digits autoencoder (fewer epochs: speed does not depend on accuracy).

* Faithfulness (deletion): set the 10% most-attributed pixels (features) to the training mean and measure the
  fall of the predicted class's probability, next to 10 random deletions of as many pixels; means over the
  first 100 test images (every test row of the table). Goal: top >= 2 x random.
* Agreement: our integrated gradients (finite differences through onnxruntime, default 16 Gauss-Legendre steps)
  against Captum's IntegratedGradients (50 steps, autograd) on the PyTorch checkpoint, same target and
  baseline (zeros in standardized units = the training mean); Spearman per image, mean over 20. Goal >= 0.9.
* Sanity (Adebayo et al. 2018): every float weight of the ONNX model drawn again at random with the same
  shape and spread; Spearman between the trained and the re-initialized model's maps for the same target,
  mean over 20 images. Goal < 0.5.
* Speed: the wall time (and the process's CPU time) of one explanation with a warm session (engine call:
  perturbations, onnxruntime, result), median over the inputs and rounds, per task and method, 1 onnxruntime
  thread; and `toolkit explain`
  end to end in a fresh process. Goal: an 8x8 digit <= 50 ms with the default budget.
* Gradient model: whether torch's ONNX exporters can write the gradient graph that an exported-gradient IG
  would need (the alternative to finite differences).

Run: `.venv/bin/python bench/explain_bench.py --out bench/results/explain.json` (`make bench`).
"""

from __future__ import annotations

import argparse
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

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # helpers.two_class_text_csv: the tests' generated text data

MODELS = {  # name -> (recipe, data, overrides); None data = the recipe's own
    "digits-cnn": ("cnn-image", None, []),
    "table-mlp": ("mlp-tabular", None, []),
    "text-lstm": ("lstm-text", "TEXT_CSV", []),
    "forecast-rnn": ("rnn-forecast", None, ["train.epochs=5"]),
    "autoencoder": ("autoencoder-anomaly", None, ["train.epochs=5"]),
}


def build(work: Path, quick: bool) -> dict[str, Path]:
    """Train and export every model into `work` (kept: a second run reuses them)."""
    from helpers import two_class_text_csv

    from toolkit.export import export_run
    from toolkit.train import train

    runs = {}
    for name, (recipe, data, overrides) in MODELS.items():
        run = work / name
        runs[name] = run
        if (run / "model.onnx").is_file():
            continue
        if data == "TEXT_CSV":
            data = str(two_class_text_csv(work / "text.csv"))
        extra = ["train.epochs=3"] if quick else []
        train(recipe, data=data, overrides=[*overrides, *extra], out=run)
        export_run(run)
    return runs


def test_rows(run: Path, n: int) -> np.ndarray:
    from toolkit.data import load_splits
    from toolkit.models import model_entry
    from toolkit.recipe import load_recipe

    rec = load_recipe(run / "recipe.yaml")
    kind = model_entry(rec.arch).input_kind(rec.task, rec.model)
    return load_splits(rec.data, rec.task, kind, rec.train.seed).x_test[:n]


def explain_rows(model, rows, method: str, targets=None, **kw) -> list[dict]:
    from toolkit.runtime.explain import engine

    out = []
    for i, row in enumerate(rows):
        target = None if targets is None else str(targets[i])
        opts = engine.Options(method, target, **kw)
        out += engine.explain_items(model.meta, model.run, [(str(i), row)], opts)
    return out


def scorer(model, index: int):
    from toolkit.runtime.explain.scores import Scorer

    shape = model.inputs[0].shape[1:]
    name = model.input_names[0]
    s = Scorer(model.meta, model.run, lambda b: {name: np.asarray(b, np.float32).reshape(len(b), *shape)})
    s.index = index
    return s


def faithfulness(model, rows: np.ndarray, methods: list[str], image: bool) -> dict:
    """Mean probability drop with the top 10% deleted vs 10 random deletions, per method."""
    from toolkit.runtime.explain.evaluate import deletion

    out = {}
    for method in methods:
        rng = np.random.default_rng(0)
        top, rand = [], []
        for row, r in zip(rows, explain_rows(model, rows, method)):
            x = row if image else row[None]
            a, b = deletion(scorer(model, r["target_index"]), x, np.array(r["attributions"]), 0.1, rng)
            top.append(a)
            rand.append(b)
        t, q = float(np.mean(top)), float(np.mean(rand))
        out[method] = {"top_drop": round(t, 4), "random_drop": round(q, 4), "ratio": round(t / q, 2)}
    return {
        "inputs": len(rows),
        "fraction": 0.1,
        "methods": out,
        "goal_met": all(v["ratio"] >= 2 for v in out.values()),
    }


def agreement(run: Path, model, rows: np.ndarray) -> dict:
    """Spearman between our IG and Captum's on the PyTorch checkpoint."""
    import torch
    from captum.attr import IntegratedGradients

    from toolkit.runtime.explain.evaluate import spearman
    from toolkit.train.checkpoint import load_checkpoint, load_model

    net = load_model(load_checkpoint(run / "best.pt")).eval()
    ig = IntegratedGradients(lambda x: torch.softmax(net(x), dim=-1))
    rhos, gaps = [], []
    for row, r in zip(rows, explain_rows(model, rows, "ig")):
        theirs = ig.attribute(
            torch.from_numpy(row[None].astype(np.float32)), target=r["target_index"], n_steps=50
        )
        rhos.append(spearman(np.array(r["attributions"]), theirs.detach().numpy()[0].sum(axis=0)))
        gaps.append(abs(r["completeness_gap"]))
    return {
        "inputs": len(rows),
        "ours": "16 Gauss-Legendre steps, forward differences (h = 0.01) through onnxruntime",
        "captum": "IntegratedGradients, 50 steps, autograd on the checkpoint",
        "spearman_mean": round(float(np.mean(rhos)), 4),
        "spearman_min": round(float(np.min(rhos)), 4),
        "completeness_gap_median": float(f"{np.median(gaps):.3g}"),
        "goal_met": bool(np.mean(rhos) >= 0.9),
    }


def reinitialized(src: Path, dst: Path) -> Path:
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(src))
    rng = np.random.default_rng(0)
    for init in proto.graph.initializer:
        w = numpy_helper.to_array(init)
        if w.dtype == np.float32 and w.ndim >= 1 and w.size > 1:
            fresh = rng.normal(0, float(w.std()) or 0.1, w.shape).astype(np.float32)
            init.CopyFrom(numpy_helper.from_array(fresh, init.name))
    onnx.save(proto, str(dst))
    return dst


def sanity(model, random_model, rows: np.ndarray, methods: list[str]) -> dict:
    from toolkit.runtime.explain.evaluate import spearman

    out = {}
    for method in methods:
        trained = explain_rows(model, rows, method)
        targets = [r["target_index"] for r in trained]
        shuffled = explain_rows(random_model, rows, method, targets)
        rhos = [
            spearman(np.array(a["attributions"]), np.array(b["attributions"]))
            for a, b in zip(trained, shuffled)
        ]
        out[method] = round(float(np.mean(rhos)), 4)
    return {"inputs": len(rows), "spearman_mean": out, "goal_met": all(v < 0.5 for v in out.values())}


def timings(model, rows, methods: list[str], rounds: int) -> dict:
    """Median ms per explanation; rounds interleave the methods so the host's drift hits all alike."""
    wall: dict[str, list[float]] = {m: [] for m in methods}
    cpu: dict[str, list[float]] = {m: [] for m in methods}
    evaluations = {}
    explain_rows(model, rows[:2], methods[0])  # warm-up
    for k in range(rounds):
        for method in methods[k % len(methods) :] + methods[: k % len(methods)]:
            for row in rows:
                t0, c0 = time.perf_counter(), time.process_time()
                r = explain_rows(model, [row], method)[0]
                wall[method].append((time.perf_counter() - t0) * 1e3)
                cpu[method].append((time.process_time() - c0) * 1e3)
                evaluations[method] = r["evaluations"]
    return {
        m: {
            "ms_median": round(statistics.median(v), 2),
            "ms_p90": round(float(np.percentile(v, 90)), 2),
            "cpu_ms_median": round(
                statistics.median(cpu[m]), 2
            ),  # CPU time: what the host's load inflates least
            "evaluations": evaluations[m],
        }
        for m, v in wall.items()
    }


def speed(runs: dict[str, Path], rounds: int) -> dict:
    from toolkit.runtime.explain import engine
    from toolkit.runtime.model import OnnxModel

    out = {}
    for name, run in runs.items():
        model = OnnxModel(run / "model.onnx", providers=["cpu"], threads=1)
        if name == "text-lstm":
            rows = [
                t
                for _, t in engine.read_items(
                    model.meta, [], ["my cat says meow and purrs", "the dog barks at a puppy"]
                )
            ]
        else:
            rows = list(test_rows(run, 20))
        methods = list(engine.METHODS[engine.kind_of(model.meta)][1])
        out[name] = {
            "default": engine.check_method(model.meta, None),
            **timings(model, rows, methods, rounds),
        }
    return out


def cli_seconds(run: Path, rounds: int) -> dict:
    """`toolkit explain model.onnx digit.npy --json` in a fresh process: wall seconds, median of rounds."""
    from sklearn.datasets import load_digits

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "digit.npy"
        np.save(path, load_digits().images[0])
        cmd = [
            sys.executable,
            "-m",
            "toolkit.cli.main",
            "explain",
            str(run / "model.onnx"),
            str(path),
            "--json",
        ]
        times = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            times.append(time.perf_counter() - t0)
    return {"seconds_median": round(statistics.median(times), 3), "rounds": rounds}


GRADIENT_MODEL = r"""
import re, warnings, torch
warnings.filterwarnings("ignore")
from toolkit.train.checkpoint import load_checkpoint, load_model
net = load_model(load_checkpoint(__import__("sys").argv[1])).eval()
for p in net.parameters():
    p.requires_grad_(False)
class Grad(torch.nn.Module):
    def forward(self, x, onehot):
        return torch.func.grad(lambda v: (torch.softmax(net(v), -1) * onehot).sum())(x)
class Traced(torch.nn.Module):  # the backward pass traced into plain aten operators first
    def __init__(self, gm):
        super().__init__()
        self.gm = gm
    def forward(self, x, onehot):
        return self.gm(x, onehot)
x, onehot = torch.randn(2, 1, 8, 8), torch.eye(10)[:2]
for name, dynamo in (("torchscript", False), ("dynamo", True), ("make_fx + dynamo", True)):
    try:
        if name == "make_fx + dynamo":
            from torch.fx.experimental.proxy_tensor import make_fx
            module = Traced(make_fx(Grad())(x, onehot))
        else:
            module = Grad()
        torch.onnx.export(module, (x, onehot), "/dev/null", dynamo=dynamo)
        print("exporter", name, "ok")
    except Exception as exc:
        while exc.__cause__ is not None:  # the exporter wraps the reason: report the innermost one
            exc = exc.__cause__
        msg = re.sub(r"\x1b\[[0-9;]*m", "", " ".join(str(exc).split()))
        print("exporter", name, "fails:", type(exc).__name__, msg[:160])
"""


def gradient_model(run: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", GRADIENT_MODEL, str(run / "best.pt")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [ln.removeprefix("exporter ") for ln in proc.stdout.splitlines() if ln.startswith("exporter ")]
    return {"torch": _torch_version(), "exporters": lines, "chosen": "finite differences through onnxruntime"}


def _torch_version() -> str:
    import torch

    return torch.__version__


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "explain.json"))
    ap.add_argument(
        "--work", help="folder for the trained models (kept between runs); default a temporary one"
    )
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="3 epochs per model (a smoke run, not the figures)")
    args = ap.parse_args()
    import onnxruntime

    from toolkit.io import write_json
    from toolkit.runtime.model import OnnxModel

    work = Path(args.work or tempfile.mkdtemp(prefix="explain-bench-"))
    load_before = [round(v, 1) for v in os.getloadavg()]
    runs = build(work, args.quick)
    cnn = OnnxModel(runs["digits-cnn"] / "model.onnx", providers=["cpu"], threads=1)
    table = OnnxModel(runs["table-mlp"] / "model.onnx", providers=["cpu"], threads=1)
    random_cnn = OnnxModel(
        reinitialized(runs["digits-cnn"] / "model.onnx", work / "random-cnn.onnx"),
        providers=["cpu"],
        threads=1,
    )
    digits, rows = test_rows(runs["digits-cnn"], 100), test_rows(runs["table-mlp"], 10_000)
    report = {
        "benchmark": "explanations: faithfulness, agreement with Captum, sanity, speed (issue 21)",
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "onnxruntime": onnxruntime.__version__,
            "note": "2 vCPU shared with other jobs: absolute times are noisy (load averages below)",
        },
        "faithfulness": {
            "digits_cnn": faithfulness(cnn, digits, ["occlusion", "rise", "ig"], image=True),
            "table_mlp": faithfulness(table, rows, ["shap", "occlusion", "ig"], image=False),
        },
        "agreement_ig_captum": agreement(runs["digits-cnn"], cnn, digits[:20]),
        "sanity_reinitialized": sanity(cnn, random_cnn, digits[:20], ["occlusion", "rise", "ig"]),
        "speed_ms": speed(runs, args.rounds),
        "cli_seconds": cli_seconds(runs["digits-cnn"], args.rounds),
        "gradient_model": gradient_model(runs["digits-cnn"]),
    }
    digit = report["speed_ms"]["digits-cnn"]
    report["goal_speed_8x8_default_le_50ms"] = digit[digit["default"]]["ms_median"] <= 50
    report["load_average"] = {"before": load_before, "after": [round(v, 1) for v in os.getloadavg()]}
    write_json(args.out, report)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
