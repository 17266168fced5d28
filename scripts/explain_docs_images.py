"""Draw the pictures of docs/explain.md into docs/images/ (small PNGs, one per task and image method).

The models are the benchmark's (bench/explain_bench.py: the same recipes, trained into --work and reused), the
inputs are their test splits, and the pictures come from `toolkit.runtime.explain.api.explain`, as
`toolkit explain ... --out FILE.png` draws them.

Run: `.venv/bin/python scripts/explain_docs_images.py [--work DIR]`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from explain_bench import build, test_rows  # noqa: E402


def raw(run: Path, rows: np.ndarray) -> np.ndarray:
    """Preprocessed test rows back in the data's own units (what a user passes to `toolkit explain`)."""
    import json

    meta = json.loads((run / "model.json").read_text())
    pre = meta["inputs"][0]["preprocessing"]
    if pre.get("per") == "channel":  # images: pixels in the training data's units (pixel_scale undone)
        mean, std = np.asarray(pre["mean"])[:, None, None], np.asarray(pre["std"])[:, None, None]
        return (rows * std + mean) / (pre.get("image") or {}).get("pixel_scale", 1.0)
    return rows * np.asarray(pre["std"]) + np.asarray(pre["mean"])


def main() -> None:
    from toolkit.runtime.explain.api import explain

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", help="folder of the trained models (shared with the benchmark)")
    ap.add_argument("--out", default=str(ROOT / "docs" / "images"))
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="explain-docs-"))
    out = Path(args.out)
    runs = build(work, quick=False)
    inputs = work / "inputs"
    inputs.mkdir(exist_ok=True)

    cnn = runs["digits-cnn"]
    np.save(inputs / "digits.npy", raw(cnn, test_rows(cnn, 3)))
    for method in ("occlusion", "rise", "ig"):
        explain(
            cnn / "model.onnx",
            [str(inputs / "digits.npy")],
            method=method,
            out=out / f"explain-image-{method}.png",
        )

    table = runs["table-mlp"]
    np.save(inputs / "row.npy", raw(table, test_rows(table, 1))[0])
    explain(table / "model.onnx", [str(inputs / "row.npy")], out=out / "explain-table.png")

    texts = ["my cat says meow and purrs", "the dog barks at a puppy"]
    explain(runs["text-lstm"] / "model.onnx", [], texts, out=out / "explain-text.png")

    series = runs["forecast-rnn"]
    window = test_rows(series, 1)[0].reshape(-1)
    pre = __import__("json").loads((series / "model.json").read_text())["inputs"][0]["preprocessing"]
    (inputs / "series.txt").write_text("\n".join(f"{v * pre['std'] + pre['mean']:.4f}" for v in window))
    explain(series / "model.onnx", [str(inputs / "series.txt")], out=out / "explain-series.png")

    ae = runs["autoencoder"]
    from sklearn.datasets import load_digits

    d = load_digits()
    picks = [int(np.flatnonzero(d.target == c)[-1]) for c in (3, 0, 6)]  # a normal digit, then two anomalies
    np.save(inputs / "ae.npy", d.images[picks])
    explain(ae / "model.onnx", [str(inputs / "ae.npy")], out=out / "explain-autoencoder.png")
    for p in sorted(out.glob("explain-*.png")):
        print(f"{p.relative_to(ROOT)}: {p.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
