"""`toolkit bench`: honest latency numbers — every contender in its own process, measured in turns."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from toolkit.cli._common import console, fmt_size, fmt_speed, handle_errors, parse_batches
from toolkit.cli._render import print_table
from toolkit.errors import ToolkitError


@handle_errors
def bench(
    models: Annotated[
        list[Path],
        typer.Argument(help="Models (.onnx): exported, quantized, imported or any other ONNX file."),
    ],
    run: Annotated[
        Path | None, typer.Option("--run", help="A run directory: add PyTorch eager from its checkpoint.")
    ] = None,
    batch: Annotated[str, typer.Option(help="Comma-separated batch sizes.")] = "1,8,64",
    threads: Annotated[
        int | None, typer.Option(help="Threads for every contender (default: all cores).")
    ] = None,
    providers: Annotated[
        str,
        typer.Option(
            help="Comma-separated: cpu, cuda, tensorrt, tensorrt-fp16. A provider that is missing or does "
            "not start is an error here (no CPU figures under a GPU's name)."
        ),
    ] = "cpu",
    rounds: Annotated[int, typer.Option(help="Turns each contender gets per batch size.")] = 5,
    shape: Annotated[
        list[str] | None,
        typer.Option(
            "--shape",
            help="NAME=DIMS for an input with open dims, e.g. pixel_values=1x3x224x224 (the first dim is "
            "replaced by each batch size); repeat per input. Default: 224 for the height and width of an "
            "image-like 4-D input, 32 for any other open dim.",
        ),
    ] = None,
    json_out: Annotated[
        Path | None,
        typer.Option("--json", help="Where to write bench.json (default: beside the first model)."),
    ] = None,
    plot: Annotated[
        Path | None, typer.Option(help="Where to write the PNG plot (default: bench.png beside bench.json).")
    ] = None,
) -> None:
    """Latency (p50/p90/p99) and throughput of each model at each batch size, PyTorch eager beside them
    with --run; every contender in its own process at the same thread count, measured in turns.

    Prints a table and writes bench.json and bench.png. Works on any ONNX model, with or without toolkit
    metadata: inputs are random values of each input's declared shape and dtype (--shape for open dims).
    """
    from toolkit.runtime.bench import bench as run_bench
    from toolkit.runtime.bench import plot as draw

    batches = parse_batches(batch)
    if rounds < 1:
        raise ToolkitError(f"--rounds must be at least 1 (got {rounds})")
    for m in models:
        if not m.is_file():
            raise ToolkitError(f"model not found: {m}")
    provs = [p.strip() for p in providers.split(",") if p.strip()]
    with console.status("benchmarking…") as status:
        report = run_bench(
            models,
            run=run,
            batches=batches,
            threads=threads,
            providers=provs,
            rounds=rounds,
            out=json_out,
            progress=lambda m: status.update(f"benchmarking: {m}…"),
            shapes=parse_shapes(shape or []),
        )
    png = draw(report, plot or Path(report["report"]).with_suffix(".png"))
    _print_bench(report)
    console.print(f"report: {escape(report['report'])}" + (f" · plot: {escape(str(png))}" if png else ""))


def parse_shapes(items: list[str]) -> dict[str, list[int]]:
    """["x=1x3x224x224", ...] -> {"x": [1, 3, 224, 224]}; anything else is a one-line error."""
    shapes = {}
    for item in items:
        name, _, dims = item.rpartition("=")
        try:
            values = [int(d) for d in dims.lower().split("x")]
        except ValueError:
            values = []
        if not name or not values or min(values) < 1:
            raise ToolkitError(f"--shape must be NAME=DIMS such as input=1x3x224x224 (got {item!r})")
        shapes[name] = values
    return shapes


def _print_bench(report: dict[str, Any]) -> None:
    m = report["machine"]
    what = f"{report['arch']} {report['task']}" if report.get("toolkit_metadata", True) else "foreign model"
    fed = ", ".join(f"{k} [{', '.join(map(str, v))}]" for k, v in (report.get("inputs") or {}).items())
    title = f"{what} · inputs {fed} · {report['threads']} threads · {m['cpu']} ({m['cores']} cores) · onnxruntime {m['onnxruntime']}"
    t = Table(title=escape(title), title_justify="left")
    cols = (
        "contender",
        "batch",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "rows/s",
        "vs fp32",
        "vs torch",
        "size",
        "peak RSS",
    )
    for col in cols:
        t.add_column(col, justify="left" if col == "contender" else "right")
    for r in report["results"]:
        t.add_row(
            escape(r["contender"]),
            str(r["batch"]),
            f"{r['p50_ms']:.3f}",
            f"{r['p90_ms']:.3f}",
            f"{r['p99_ms']:.3f}",
            f"{r['throughput']:,.0f}",
            fmt_speed(r["vs_ort_fp32"]),
            fmt_speed(r["vs_pytorch"]),
            fmt_size(r["size_bytes"]),
            f"{r['peak_rss_mb']:.0f} MB",
        )
    print_table(console, t)
