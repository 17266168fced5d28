"""The whole pipeline's benchmark: train -> export -> quantize -> bench, for every default recipe.

For each recipe (its own defaults and data) the script trains a run, exports it, lets `toolkit quantize`
(mode auto, default budget) pick an INT8 variant or keep fp32, then benchmarks PyTorch eager, ORT fp32 and
the quantized variant side by side with `toolkit bench` (every contender in its own process at the same
thread count, measured in turns, medians). It writes bench/results/pipeline.json and a Markdown table,
bench/results/pipeline.md, and checks the goals of the quantize issue:

- ORT fp32 >= 2x PyTorch eager at batch 1 and >= 1x at batch 64, for every recipe;
- CNN INT8 >= 1.8x ORT fp32 at batch 64 with <= 0.5 point accuracy drop;
- LSTM / GRU INT8 >= 1.5x ORT fp32 at batch 64 within budget.

Besides the shipped recipes, VARIANTS adds the LSTM and GRU forecasters at 128 hidden units: INT8 pays for
a recurrence only once its matrix products outweigh the per-step overhead (at 64 units, the recipes'
default, they do not; see the README).

Run: `.venv/bin/python bench/pipeline.py` (`make bench`); `--recipes cnn-image,lstm-forecast@h128` for a
subset, `--epochs N` to cap training (speed does not depend on it; accuracy drops do).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from toolkit.recipe import SHIPPED_RECIPES as RECIPES  # noqa: E402

BATCHES = (1, 64)
# label -> (recipe, training overrides, extra `toolkit quantize` options)
VARIANTS = {
    "lstm-forecast@h128": ("lstm-forecast", ["model.hidden=128"], []),
    # the GRU's INT8 Scan is slower than the fp32 op at batch 1 (per-step overhead): judged where a
    # batching server runs it
    "gru-forecast@h128": ("gru-forecast", ["model.hidden=128"], ["--batch", "64"]),
    # the pretrained backbones default to model.weights=imagenet (a download): the benchmark, which runs
    # offline, times the same networks from random weights
    **{n: (n, ["model.weights=none"], []) for n in ("mobilenet-image", "resnet-image", "efficientnet-image")},
}


def row_of(report: dict, contender: str, batch: int) -> dict | None:
    return next((r for r in report["results"] if r["contender"] == contender and r["batch"] == batch), None)


def _toolkit(*args: str) -> None:
    """A toolkit command in its own process: quantize and bench must not time models inside a process
    that has imported torch and trained (its thread pools took CPU from the contenders: transformer-forecast
    at batch 64 read 0.81x PyTorch from inside this script, 1.30x from `toolkit bench`)."""
    subprocess.run(
        [str(Path(sys.executable).with_name("toolkit")), *args], check=True, stdout=subprocess.DEVNULL
    )


def run_recipe(name: str, work: Path, threads: int, epochs: int | None, rounds: int) -> dict:
    from toolkit.export import export_run
    from toolkit.train import train

    recipe, overrides, quantize_args = VARIANTS.get(name, (name, [], []))
    run = work / name
    t0 = time.perf_counter()
    overrides = overrides + ([f"train.epochs={epochs}"] if epochs else [])
    train(recipe, overrides=overrides, out=run)
    t_train = time.perf_counter() - t0
    export_run(run)
    model = run / "model.onnx"
    _toolkit("quantize", str(model), "--threads", str(threads), *quantize_args)
    q = json.loads((run / "quantize.json").read_text())
    models = [model] + ([Path(q["written"])] if q["written"] else [])
    _toolkit(
        "bench", *map(str, models), "--run", str(run), "--batch", ",".join(map(str, BATCHES)),
        "--threads", str(threads), "--rounds", str(rounds), "--json", str(run / "bench.json"),
    )  # fmt: skip
    b = json.loads((run / "bench.json").read_text())
    kept = next((c for c in q["candidates"] if c["name"] == q["chosen"]), None)
    out = {
        "recipe": name,
        "overrides": overrides,
        "quantize_options": quantize_args,
        "task": q["task"],
        "train_seconds": round(t_train, 1),
        "metric": q["metric"],
        "drop_kind": q["drop_kind"],
        "fp32_metric": q["fp32"]["metric"],
        "quantized": q["chosen"],
        "decision": q["decision"],
        "quantized_metric": kept["metric"] if kept else None,
        "drop": kept["drop"] if kept else None,
        "candidates": [
            {k: c[k] for k in ("name", "metric", "drop", "passed_gate", "speedup", "error")}
            for c in q["candidates"]
        ],
        "latency": {},
    }
    int8_name = f"ort {kept['mode']}" if kept else None
    for batch in BATCHES:
        torch_row = row_of(b, "pytorch eager", batch)
        fp32_row = row_of(b, "ort fp32", batch)
        q_row = row_of(b, int8_name, batch) if int8_name else None
        out["latency"][str(batch)] = {
            "pytorch_ms": torch_row["p50_ms"],
            "ort_fp32_ms": fp32_row["p50_ms"],
            "ort_quantized_ms": q_row["p50_ms"] if q_row else None,
            # paired per round (toolkit.runtime.bench.paired_speedup), not a ratio of pooled medians
            "ort_vs_pytorch": fp32_row["vs_pytorch"],
            "quantized_vs_fp32": q_row["vs_ort_fp32"] if q_row else None,
            "peak_rss_mb": {"pytorch": torch_row["peak_rss_mb"], "ort_fp32": fp32_row["peak_rss_mb"]},
        }
    return out


def goals(results: list[dict]) -> list[dict]:
    """Each goal of the issue, per recipe it concerns: met or not, with the figure."""
    checks = []
    for r in results:
        lat = r["latency"]
        checks.append(
            {
                "goal": "ORT fp32 >= 2x PyTorch eager at batch 1",
                "recipe": r["recipe"],
                "value": lat["1"]["ort_vs_pytorch"],
                "met": lat["1"]["ort_vs_pytorch"] >= 2.0,
            }
        )
        checks.append(
            {
                "goal": "ORT fp32 >= PyTorch eager at batch 64",
                "recipe": r["recipe"],
                "value": lat["64"]["ort_vs_pytorch"],
                "met": lat["64"]["ort_vs_pytorch"] >= 1.0,
            }
        )
        arch = r["recipe"].split("-")[0]
        want = {"cnn": 1.8, "lstm": 1.5, "gru": 1.5}.get(arch)
        if want:
            speed = lat["64"]["quantized_vs_fp32"]
            ok_drop = r["drop"] is not None and (arch != "cnn" or r["drop"] <= 0.005)
            checks.append(
                {
                    "goal": f"{arch.upper()} INT8 >= {want}x ORT fp32 at batch 64 within budget",
                    "recipe": r["recipe"],
                    "value": speed,
                    "drop": r["drop"],
                    "met": bool(speed and speed >= want and ok_drop),
                }
            )
    return checks


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        f"# Pipeline benchmark ({report['date']})",
        "",
        f"{m['cpu']}, {m['cores']} cores, {report['threads']} threads for every contender; "
        f"onnxruntime {m['onnxruntime']}, Python {m['python']}. p50 latency in ms over "
        f"{report['rounds']} interleaved rounds (`toolkit bench`); ratios paired per round (the median of "
        "per-round ratios), so they need not equal the ratio of the two p50 columns.",
        "",
        "| recipe | metric fp32 → kept | drop | kept | torch b1 | ORT b1 | ORT/torch b1 | torch b64 | ORT b64 | ORT/torch b64 | INT8 b64 | INT8/fp32 b64 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        b1, b64 = r["latency"]["1"], r["latency"]["64"]
        drop = (
            ""
            if r["drop"] is None
            else (
                f"{r['drop'] * 100:+.2f} pt" if r["drop_kind"] == "absolute" else f"{r['drop'] * 100:+.2f}%"
            )
        )
        kept_metric = "" if r["quantized_metric"] is None else f" → {r['quantized_metric']:.4g}"
        q64 = "" if b64["ort_quantized_ms"] is None else f"{b64['ort_quantized_ms']:.3f}"
        qx = "" if b64["quantized_vs_fp32"] is None else f"{b64['quantized_vs_fp32']:.2f}×"
        lines.append(
            f"| {r['recipe']} | {r['metric']} {r['fp32_metric']:.4g}{kept_metric} | {drop} | {r['quantized'] or 'fp32'} | "
            f"{b1['pytorch_ms']:.3f} | {b1['ort_fp32_ms']:.3f} | {b1['ort_vs_pytorch']:.2f}× | "
            f"{b64['pytorch_ms']:.3f} | {b64['ort_fp32_ms']:.3f} | {b64['ort_vs_pytorch']:.2f}× | {q64} | {qx} |"
        )
    lines += ["", "## Goals", "", "| goal | recipe | value | met |", "|---|---|---|---|"]
    for g in report["goals"]:
        value = "n/a" if g["value"] is None else f"{g['value']:.2f}×"
        lines.append(f"| {g['goal']} | {g['recipe']} | {value} | {'yes' if g['met'] else '**no**'} |")
    lines += ["", "## Quantization decisions", ""]
    for r in report["results"]:
        extra = (
            f" (`toolkit quantize {' '.join(r['quantize_options'])}`)" if r.get("quantize_options") else ""
        )
        lines.append(f"- **{r['recipe']}**{extra}: {r['decision']}")
    lines += [
        "",
        "Variants: " + "; ".join(f"{k} = {v[0]} with {' '.join(v[1])}" for k, v in VARIANTS.items()),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipes", default=",".join(dict.fromkeys([*RECIPES, *VARIANTS])))
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--epochs", type=int, default=None, help="cap training epochs (default: the recipe's)")
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--work", type=Path, default=None, help="where runs go (default: a temporary folder)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/pipeline.json")
    args = ap.parse_args()

    from toolkit.io import write_json, write_text
    from toolkit.runtime.bench import machine

    names = [n for n in args.recipes.split(",") if n]
    results = []
    with tempfile.TemporaryDirectory(prefix="toolkit-bench-") as tmp:
        work = args.work or Path(tmp)
        for i, name in enumerate(names, 1):
            t0 = time.perf_counter()
            print(f"[{i}/{len(names)}] {name} ...", flush=True)
            r = run_recipe(name, work, args.threads, args.epochs, args.rounds)
            lat = r["latency"]
            print(
                f"    {time.perf_counter() - t0:.0f} s · kept {r['quantized'] or 'fp32'} · "
                f"ORT/torch b1 {lat['1']['ort_vs_pytorch']:.2f}× b64 {lat['64']['ort_vs_pytorch']:.2f}× · "
                f"INT8/fp32 b64 {lat['64']['quantized_vs_fp32'] or 0:.2f}×",
                flush=True,
            )
            results.append(r)
    report = {
        "schema": "toolkit.pipeline-bench/1",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(),
        "threads": args.threads,
        "rounds": args.rounds,
        "epochs": args.epochs,
        "results": results,
    }
    report["goals"] = goals(results)
    write_json(args.out, report)
    write_text(args.out.with_suffix(".md"), markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
