#!/usr/bin/env python3
"""Embed a toolkit model in a Python program with only onnxruntime and numpy (no toolkit, no torch).

    pip install onnxruntime numpy
    python predict.py MODEL.onnx rows.csv                # tabular classifier or regressor: one row per line
    python predict.py MODEL.onnx --text "some text"      # text classifier (token-id or raw-string model)
    python predict.py MODEL.onnx series.csv              # forecaster: the last window of the last column
    add --json for machine-readable output

Everything the program needs is in the model file: the `toolkit` metadata document (read here through
onnxruntime's custom metadata map) records the preprocessing (mean/std, tokenizer, window), the labels and
the meaning of each output. For every input kind, with images and the exact CLI behaviour, use the bundle
runner that `toolkit edge pack` writes (runner.py with processing.py).
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys

import numpy as np
import onnxruntime as ort


def load(model_path: str) -> tuple[ort.InferenceSession, dict]:
    session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    raw = session.get_modelmeta().custom_metadata_map.get("toolkit")
    if raw is None:
        sys.exit(f"error: {model_path} has no `toolkit` metadata (export it with toolkit export)")
    return session, json.loads(raw)


def tokenize(text: str, tok: dict) -> list[int]:
    """toolkit's tokenizer: lower-case, split by level, id 1 for unknown tokens, truncated to max_length."""
    if tok["lowercase"]:
        text = text.lower()
    if tok["level"] == "space":
        parts = [t for t in text.split(" ") if t]
    elif tok["level"] == "char":
        parts = [c for c in text if not c.isspace() or c == " "]
    else:
        parts = re.findall(tok["pattern"], text)
    index = {w: i for i, w in enumerate(tok["vocab"])}
    return [index.get(p, tok["unk_id"]) for p in parts][: tok["max_length"]]


def features(path: str, pre: dict, width: int) -> tuple[list[str], np.ndarray]:
    """CSV rows -> (names, (N, F) float32); a header naming the features selects those columns."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = [(i, r) for i, r in enumerate(csv.reader(f), start=1) if any(c.strip() for c in r)]
    columns = list(range(width))
    first = rows[0][1]
    if any(not _is_number(c) for c in first):  # a header
        header = [h.strip() for h in first]
        names = pre.get("feature_names") or []
        if all(n in header for n in names):
            columns = [header.index(n) for n in names]
        rows = rows[1:]
    x = np.array([[_value(r[c]) for c in columns] for _, r in rows], dtype=np.float32)
    return [f"{path}:{i}" for i, _ in rows], x


def _is_number(cell: str) -> bool:
    try:
        float(cell)
        return True
    except ValueError:
        return cell.strip().lower() in ("", "na", "nan")


def _value(cell: str) -> float:
    return float("nan") if cell.strip().lower() in ("", "na", "nan") else float(cell)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("inputs", nargs="*")
    ap.add_argument("--text", action="append", default=[])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    session, meta = load(args.model)
    port = meta["inputs"][0]
    pre = port.get("preprocessing") or {}

    if port["dtype"] == "string":  # the raw-string model tokenizes inside the graph
        names, feed = [f"--text #{i + 1}" for i in range(len(args.text))], np.array(args.text, dtype=object)
    elif pre.get("type") == "tokenize":
        ids = [tokenize(t, pre["tokenizer"]) for t in args.text]
        feed = np.zeros((len(ids), max(1, *map(len, ids))), dtype=np.int64)  # right-padded with 0
        for i, r in enumerate(ids):
            feed[i, : len(r)] = r
        names = [f"--text #{i + 1}" for i in range(len(ids))]
    elif "window" in pre:  # forecast: the last `window` values of the last CSV column
        with open(args.inputs[0], newline="") as f:
            values = [float(r[-1]) for r in csv.reader(f) if r and _is_number(r[-1]) and r[-1].strip()]
        window = np.asarray(values[-pre["window"] :], dtype=np.float64)
        feed = ((window - pre["mean"]) / pre["std"]).astype(np.float32)[None, :, None]
        names = [args.inputs[0]]
    elif pre.get("per") == "feature":
        names, x = features(args.inputs[0], pre, port["shape"][1])
        mean, std = np.asarray(pre["mean"], np.float32), np.asarray(pre["std"], np.float32)
        feed = np.nan_to_num((x - mean) / std, nan=0.0).astype(np.float32)
    else:
        sys.exit(f"error: this example handles tabular, text and series models, not {port['name']!r} inputs")

    outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, {port["name"]: feed})))
    results = []
    for i, name in enumerate(names):
        if meta["task"] == "classify":
            p = outputs["probabilities"][i]
            results.append(
                {"input": name, "label": meta["labels"][int(p.argmax())], "probability": float(p.max())}
            )
        elif meta["task"] == "regress":
            results.append({"input": name, "value": float(outputs["prediction"][i][0])})
        else:
            results.append({"input": name, "forecast": outputs["forecast"][i].tolist()})
    if args.json:
        print(json.dumps({"model": args.model, "results": results}, indent=2))
    else:
        for r in results:
            print(r["input"], {k: v for k, v in r.items() if k != "input"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
