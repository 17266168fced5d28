"""Quantizing an imported model with labelled data (issue 18's goal): `toolkit quantize MODEL --data DIR`.

A foreign image classifier, made the way a user who never saw toolkit would make it: a torchvision-style CNN
(conv-bn-relu x2 per block, [32, 64] channels, max-pool, a dense head: the shape of recipe cnn-image) trained
with a plain PyTorch loop on scikit-learn's 8x8 digits and written with plain `torch.onnx.export`. Then:

1. `toolkit import` with the task, the labels, the channel mean/std of the training images;
2. `toolkit quantize --data FOLDER`, the test images as PNG files in one sub-folder per label: calibration
   draws from them, the accuracy gate scores on them; static INT8 must stay within the gate (1 point of
   accuracy) and be faster than fp32 (paired speed-ups at batch 1 and 64) to be kept, as for exported models.

The JSON holds the decision, every candidate's accuracy, drop and speed-ups, the data the report names, and
the machine. Run: `.venv/bin/python bench/import_bench.py --out bench/results/import.json` (`make bench`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import tempfile
from pathlib import Path

import numpy as np


def train_foreign_cnn(x: np.ndarray, y: np.ndarray, epochs: int, seed: int = 0):
    """A plain PyTorch model and loop (no toolkit): (N, 1, 8, 8) standardized images, 10 classes."""
    import torch
    import torch.nn as nn

    def block(cin: int, cout: int) -> list[nn.Module]:
        conv = [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]
        return [*conv, nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2)]

    torch.manual_seed(seed)
    model = nn.Sequential(
        *block(1, 32), *block(32, 64), nn.Flatten(), nn.Linear(64 * 2 * 2, 128), nn.ReLU(), nn.Linear(128, 10)
    )
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=5e-4)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(xt)).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
    return model.eval()


def write_pngs(root: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    """8-bit grayscale PNGs, one sub-folder per digit."""
    from PIL import Image

    for i, (img, label) in enumerate(zip(images, labels)):
        (root / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.round(img * 255 / 16).astype(np.uint8), mode="L").save(
            root / str(label) / f"{i}.png"
        )
    return root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench/results/import.json")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()

    import onnxruntime
    import torch
    from sklearn.datasets import load_digits

    from toolkit.runtime.importer import ImportOptions, import_model
    from toolkit.runtime.quantize import quantize

    digits = load_digits()
    rng = np.random.default_rng(0)
    order = rng.permutation(len(digits.target))
    train, test = order[:1400], order[1400:]
    pixels = (np.round(digits.images * 255 / 16) / 255).astype(np.float32)[:, None]  # as the PNGs decode
    mean, std = float(pixels[train].mean()), float(pixels[train].std())
    x = (pixels - mean) / std
    model = train_foreign_cnn(x[train], digits.target[train].astype(np.int64), args.epochs)

    with tempfile.TemporaryDirectory(prefix="import-bench-") as tmp:
        work = Path(tmp)
        foreign = work / "digits_cnn.onnx"
        torch.onnx.export(
            model,
            (torch.from_numpy(x[:1]),),
            str(foreign),
            input_names=["x"],
            output_names=["logits"],
            dynamic_axes={"x": {0: "N"}, "logits": {0: "N"}},
            dynamo=False,
            opset_version=17,
        )
        data = write_pngs(work / "digits-test", digits.images[test], digits.target[test])
        imported = work / "model.onnx"
        labels = [str(i) for i in range(10)]
        import_model(foreign, imported, ImportOptions(task="classify", labels=labels, mean=[mean], std=[std]))
        report = quantize(imported, data=str(data), rounds=args.rounds, batches=[1, 64])

    static = next(c for c in report["candidates"] if c["name"] == "static")
    doc = {
        "benchmark": "toolkit quantize --data on an imported CNN (plain torch.onnx.export, 8x8 digits)",
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} vCPU (shared, noisy), onnxruntime {onnxruntime.__version__}",
        "data": {k: v for k, v in report["data"].items()},
        "decision": report["decision"],
        "written": report["written"] is not None,
        "fp32_accuracy": report["fp32"]["metric"],
        "fp32_p50_ms": report["fp32"]["p50_ms"],
        "candidates": [
            {
                k: c.get(k)
                for k in ("name", "metric", "drop", "passed_gate", "p50_ms", "speedup", "faster", "error")
            }
            for c in report["candidates"]
        ],
        "goal": {
            "static_within_gate": bool(static["passed_gate"]),
            "static_faster": bool(static["faster"]),
            "static_kept": report["decision"].startswith("kept static"),
            "report_names_data": str(data) == report["data"]["source"],
        },
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
