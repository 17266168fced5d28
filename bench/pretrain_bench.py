"""Self-supervised pretraining on digits: few labels with and without a SimCLR-pretrained encoder (issue 22).

For each seed (the seed also draws the split, so the pretraining never sees a test image):
1. `cnn-contrastive` on the whole train split (labels unused) for --pretrain-epochs; its wall time is the
   pretraining cost (torch limited to --threads threads);
2. for each label fraction: `cnn-image` on that stratified share of the train labels (data.label_fraction),
   from scratch and from the pretrained encoder (model.init_from), the same recipe otherwise;
3. a linear probe (logistic regression) on the frozen encoder's embeddings vs on raw pixels, fitted on the
   same labelled rows.

Goals: with 5% of the labels, init_from >= 5 points higher test accuracy than scratch (mean over seeds);
the probe on the encoder beats the linear model on pixels.

Usage: python bench/pretrain_bench.py --out bench/results/pretrain.json [--seeds 0 1 2 --fractions 0.05 ...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def pretrain(seed: int, epochs: int, root: Path) -> tuple[Path, float, float]:
    """The pretraining run, its wall seconds and its test probe accuracy (CPU seconds printed beside)."""
    from toolkit.train import train

    t0, c0 = time.perf_counter(), time.process_time()
    sets = [f"train.epochs={epochs}", f"train.seed={seed}"]
    result = train("cnn-contrastive", overrides=sets, out=root / f"pre-{seed}")
    print(json.dumps({"seed": seed, "pretrain_cpu_seconds": time.process_time() - c0}), flush=True)
    return result.run_dir, time.perf_counter() - t0, float(result.metrics["probe_accuracy"])


def finetune(seed: int, fraction: float, init: Path | None, args: argparse.Namespace, root: Path) -> float:
    """Test accuracy of cnn-image on `fraction` of the train labels, from scratch or from `init`."""
    from toolkit.train import train

    sets = [f"train.seed={seed}", f"data.label_fraction={fraction}", f"train.epochs={args.epochs}"]
    if init is not None:
        sets += [f"model.init_from={json.dumps(str(init))}", f"model.freeze_epochs={args.freeze}"]
    name = f"{'init' if init else 'scratch'}-{seed}-{fraction}"
    return float(train("cnn-image", overrides=sets, out=root / name).metrics["accuracy"])


def probes(seed: int, fraction: float, run: Path) -> dict[str, float]:
    """Linear probe on the frozen encoder vs logistic regression on raw pixels, on the same labelled rows."""
    from toolkit.data import load_splits
    from toolkit.data.split import label_subset
    from toolkit.recipe import load_recipe
    from toolkit.train.checkpoint import load_checkpoint, load_model
    from toolkit.train.contrastive import embeddings, linear_probe

    rec = load_recipe("cnn-image", [f"train.seed={seed}"])
    splits = load_splits(rec.data, "classify", "image", seed)
    keep = label_subset(splits.y_train, np.arange(len(splits.y_train)), fraction, seed, True)
    model = load_model(load_checkpoint(run / "best.pt"))
    x_tr, y_tr, x_te = splits.x_train[keep], splits.y_train[keep], splits.x_test
    enc = linear_probe((embeddings(model, x_tr), y_tr), (embeddings(model, x_te), splits.y_test))
    pix = linear_probe((x_tr, y_tr), (x_te, splits.y_test))
    return {"probe_encoder": enc, "probe_pixels": pix}


def summarize(rows: list[dict], cost: list[float], pre_probe: list[float], settings: dict) -> dict:
    """The result document: the rows, the means per label fraction and the goals."""
    summary = []
    for fraction in sorted({r["fraction"] for r in rows}):
        mine = [r for r in rows if r["fraction"] == fraction]
        keys = ("scratch", "init_from", "probe_encoder", "probe_pixels")
        mean = {k: statistics.mean(r[k] for r in mine) for k in keys}
        gain = 100 * (mean["init_from"] - mean["scratch"])
        summary.append({"fraction": fraction, "seeds": len(mine), **mean, "gain_points": gain})
    five = next((s for s in summary if abs(s["fraction"] - 0.05) < 1e-9), None)
    return {
        "machine": f"{os.cpu_count()} vCPU ({platform.machine()}), shared with other jobs (load high, noisy); "
        f"torch threads {settings.get('threads')}",
        "settings": settings,
        "pretrain_seconds": cost,
        "pretrain_probe_accuracy": pre_probe,
        "rows": rows,
        "summary": summary,
        "goals": {
            "gain_at_5pct_points": five["gain_points"] if five else None,
            "gain_at_5pct_met": bool(five and five["gain_points"] >= 5),
            "probe_beats_pixels": all(s["probe_encoder"] > s["probe_pixels"] for s in summary),
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/pretrain.json")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.05, 0.1, 0.25, 1.0])
    ap.add_argument("--pretrain-epochs", type=int, default=30)
    ap.add_argument("--epochs", type=int, default=40, help="fine-tuning / scratch epochs (cnn-image)")
    ap.add_argument(
        "--freeze", type=int, default=0, help="model.freeze_epochs when starting from the encoder"
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--merge", type=Path, nargs="+", help="join the rows of these result files (one per seed)"
    )
    args = ap.parse_args()
    if args.merge:
        parts = [json.loads(p.read_text()) for p in args.merge]
        settings = {**parts[0]["settings"], "seeds": [r for p in parts for r in p["settings"]["seeds"]]}
        cost = [c for p in parts for c in p["pretrain_seconds"]]
        probe = [c for p in parts for c in p["pretrain_probe_accuracy"]]
        result = summarize([r for p in parts for r in p["rows"]], cost, probe, settings)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result["summary"], indent=2))
        return
    import torch

    torch.set_num_threads(args.threads)
    rows: list[dict] = []
    cost: list[float] = []
    pre_probe: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for seed in args.seeds:
            run, seconds, probe = pretrain(seed, args.pretrain_epochs, root)
            cost.append(seconds)
            pre_probe.append(probe)
            for fraction in args.fractions:
                row = {"seed": seed, "fraction": fraction}
                row["scratch"] = finetune(seed, fraction, None, args, root)
                row["init_from"] = finetune(seed, fraction, run, args, root)
                row.update(probes(seed, fraction, run))
                rows.append(row)
                print(json.dumps(row), flush=True)
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "merge")}
    result = summarize(rows, cost, pre_probe, settings)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["summary"], indent=2))


if __name__ == "__main__":
    main()
