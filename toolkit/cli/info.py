"""`toolkit info`: what an exported model is: metadata, ports, opset, size, parameters, operators."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from toolkit.cli._common import console, handle_errors, print_json


@handle_errors
def info(
    model: Annotated[
        Path, typer.Argument(help="A .onnx model: exported, imported (toolkit import) or any other.")
    ],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print everything as JSON (metadata included).")
    ] = False,
) -> None:
    """Show a model's metadata summary, inputs and outputs, opset, file size, parameter count and operator
    histogram. The graph is read with the onnx package when installed, otherwise with onnxruntime.

    Any ONNX model works: one without toolkit metadata is described from its graph alone (symbolic dims by
    name, weights kept in external data files listed); `toolkit import` adds the metadata."""
    from toolkit.runtime.info import model_info

    result = model_info(model)
    if as_json:
        print_json(result)
        return
    _print(result)


def _print(r: dict[str, Any]) -> None:
    size = _size(r["total_bytes"])
    title = f"{r['path']} · {r['task']} {r['role']} · {r['arch']} · {size} · {r['schema']}"
    if not r["toolkit_metadata"]:
        title = f"{r['path']} · {size} · no toolkit metadata (toolkit import adds it)"
    ports = Table(title=escape(title), title_justify="left")
    for column in ("", "name", "dtype", "shape", "meaning"):
        ports.add_column(column)
    for kind in ("inputs", "outputs"):
        for p in r[kind]:
            shape = "[" + ", ".join("?" if d is None else str(d) for d in p["shape"]) + "]"
            ports.add_row(
                kind[:-1], p["name"], p["dtype"] or "?", escape(shape), escape(p.get("meaning") or "")
            )
    console.print(ports)

    summary = Table(show_header=False, box=None, padding=(0, 2, 0, 0))
    summary.add_column(style="bold")
    summary.add_column()
    for key, value in _summary(r):
        summary.add_row(key, escape(value))
    console.print(summary)

    if r["operators"]:
        ops = Table(title=f"operators ({r['nodes']} nodes)", title_justify="left")
        ops.add_column("operator")
        ops.add_column("count", justify="right")
        for name, count in r["operators"].items():
            ops.add_row(name, str(count))
        console.print(ops)
    console.print(f"read with {escape(r['source'])}")


def _summary(r: dict[str, Any]) -> list[tuple[str, str]]:
    rows = []
    opset = ", ".join(f"{d} {v}" for d, v in r["opset"].items()) or "unknown"
    rows.append(("opset", opset + (f" · IR version {r['ir_version']}" if r["ir_version"] else "")))
    if r["parameters"] is not None:
        rows.append(
            (
                "parameters",
                f"{r['parameters']:,} in {r['initializers']} initializers"
                + (f" (+{r['constants']:,} index constants)" if r["constants"] else ""),
            )
        )
    for e in r["external_data"]:
        size = "missing" if e["bytes"] is None else _size(e["bytes"])
        rows.append(("external data", f"{e['file']}: {e['tensors']} tensors, {size}"))
    if r["producer"]:
        rows.append(("producer", r["producer"]))
    imported = r.get("imported")
    prov = r["provenance"]
    if isinstance(imported, dict):
        rows.append(("imported", f"{imported.get('date')} by toolkit from {imported.get('source')}"))
    elif prov:
        rows.append(
            (
                "exported",
                f"{prov.get('date')} by toolkit {prov.get('toolkit')} · {r['exporter']} exporter, torch {prov.get('torch')}",
            )
        )
        rows.append(("from run", str(prov.get("source_run"))))
    if r["recipe"] and not imported:
        rows.append(("recipe", f"{r['recipe']} · data {r['data']}"))
    if r["labels"]:
        shown = ", ".join(r["labels"][:8]) + (", ..." if len(r["labels"]) > 8 else "")
        rows.append(("labels", f"{len(r['labels'])}: {shown}"))
    for name, t in (r["thresholds"] or {}).items():
        if isinstance(t, dict) and isinstance(t.get("value"), (int, float)):
            rows.append(("threshold", f"{name} {t['value']:.4g} ({t.get('rule') or t.get('method')})"))
    for p in r["inputs"]:
        pre = p.get("preprocessing")
        if pre:
            rows.append((f"preprocessing {p['name']}", _preprocessing(pre)))
    metrics = r["metrics"] or {}
    main = metrics.get("main_metric")
    shown = [k for k, v in metrics.items() if isinstance(v, float)]
    if shown:
        test = (metrics.get("samples") or {}).get("test")
        text = " · ".join(
            f"{k} {metrics[k]:.4g}"
            for k in ([main] if main in shown else []) + [k for k in shown if k != main]
        )
        rows.append(("test metrics", text + (f" ({test} samples)" if test else "")))
    parity = r["parity"] or {}
    if parity.get("outputs"):
        worst = max(v.get("max_abs", 0.0) for v in parity["outputs"].values())
        rows.append(("parity", f"max abs error {worst:.2g} vs PyTorch on {parity.get('cases')} shapes"))
    return rows


def _preprocessing(pre: dict[str, Any]) -> str:
    if pre.get("type") == "tokenize":
        tok = pre["tokenizer"]
        return f"tokenize: {tok.get('level')} level, {len(tok.get('vocab', []))} tokens, max length {tok.get('max_length')}"
    mean = pre.get("mean")
    n = len(mean) if isinstance(mean, list) else 1
    text = f"{pre.get('type')}: {pre.get('formula')}"
    if pre.get("per"):
        text += f", per {pre['per']} ({n} values)"
    if pre.get("window"):
        text += f", window {pre['window']}, horizon {pre.get('horizon')}"
    return text


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"
