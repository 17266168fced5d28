"""`python runner.py explain INPUT... [--method M] [--target T] [--samples N] [--seed S] [--json] [--out F.png]`
in an edge bundle: the same explanations as `toolkit explain`, with the runner's low-footprint session."""

from __future__ import annotations

import json
import os
import sys

from . import engine, plots
from ._core import InputError, runner
from .terminal import render


def _parser():
    import argparse

    ap = argparse.ArgumentParser(
        prog="runner.py explain", description="Explain the bundled model's answers (onnxruntime + numpy)."
    )
    ap.add_argument("inputs", nargs="*", help="files or folders, as for prediction")
    ap.add_argument("--text", action="append", default=[], help="a text to explain (repeatable)")
    ap.add_argument("--model", help="model file (default: model.ort, else model.onnx beside runner.py)")
    ap.add_argument("--method", help="occlusion, rise, ig (images); shap, occlusion, ig (tables); ...")
    ap.add_argument("--target", help="label (default: the predicted one), forecast step or output index")
    ap.add_argument("--samples", type=int, help="budget in model evaluations per input")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random methods (rise, shap)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    ap.add_argument("--out", help="write the picture (PNG) here")
    ap.add_argument("--keep-going", action="store_true", help="explain the other inputs when one is bad")
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1)")
    return ap


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.out and not args.out.lower().endswith(".png"):
            raise InputError(f"--out must name a .png file (got {args.out})")
        model = runner.Runner(
            args.model or runner.default_model(os.path.dirname(os.path.abspath(runner.__file__))),
            args.threads,
        )
        meta = model.meta
        method = engine.check_method(meta, args.method)
        if not args.inputs and not args.text:
            raise InputError("no inputs: give files, folders or --text")
        items = engine.read_items(meta, args.inputs, args.text)
        bad = [row for _, row in items if isinstance(row, InputError)]
        if bad and not args.keep_going:
            raise bad[0]
        options = engine.Options(method, args.target, args.samples, args.seed)
        results = engine.explain_items(meta, model.run, items, options)
        if args.out:
            _write(args.out, plots.figure(meta, items, results))
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        doc = {"model": model.path, "task": meta["task"], "method": method, "results": results}
        print(json.dumps({**doc, **({"out": args.out} if args.out else {})}, indent=2))
    else:
        colour = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
        for r in results:
            print(render(r, colour), file=sys.stderr if "error" in r else sys.stdout)
    return 2 if bad else 0


def _write(path: str, data: bytes) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
