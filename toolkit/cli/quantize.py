"""`toolkit quantize`: accuracy-gated INT8/FP16 variants of an exported model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from toolkit.cli._common import (
    console,
    err_console,
    fmt_ms,
    fmt_size,
    fmt_speed,
    handle_errors,
    parse_batches,
    print_json,
)
from toolkit.cli._render import print_table
from toolkit.errors import ToolkitError


@handle_errors
def quantize(
    model: Annotated[
        Path | None,
        typer.Argument(help="The exported fp32 model (.onnx), or a run directory holding model.onnx."),
    ] = None,
    run: Annotated[
        Path | None, typer.Option("--run", help="The run directory (its model.onnx when MODEL is not given).")
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(
            help="The training data at another place (default: the source the metadata names); for an imported model (toolkit import): labelled data, an image "
            "folder (one sub-folder per label), a CSV with a target column or an .npz with x and y."
        ),
    ] = None,
    mode: Annotated[
        str,
        typer.Option(help="auto (try what fits, keep the fastest within budget), static, dynamic or fp16."),
    ] = "auto",
    max_drop: Annotated[
        float | None,
        typer.Option(
            "--max-drop",
            help="Largest allowed drop of the main metric on the validation split: absolute for "
            "accuracy-like metrics (0.01 = 1 point), relative for error metrics (0.01 = 1%). Default 0.01.",
        ),
    ] = None,
    calibration: Annotated[
        str, typer.Option(help="Static calibration: minmax, entropy or percentile.")
    ] = "minmax",
    samples: Annotated[
        int | None, typer.Option(help="Calibration rows from the train split (default 256).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Output file (default MODEL.int8.onnx / MODEL.fp16.onnx).")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Write a forced --mode even when it exceeds the budget.")
    ] = False,
    threads: Annotated[
        int | None, typer.Option(help="Threads for the latency measurement (default: all cores).")
    ] = None,
    batch: Annotated[
        str,
        typer.Option(
            help="Batch sizes the latency is measured at, comma-separated; auto keeps only a candidate "
            "slower at none of them and at least 5% faster at one (a server that batches: --batch 64)."
        ),
    ] = "1,64",
    provider: Annotated[
        str,
        typer.Option(
            help="cpu, cuda, tensorrt or tensorrt-fp16 (cuda:1: GPU 1). A missing provider falls back to CPU "
            "with a warning (TOOLKIT_PROVIDER_STRICT=1: an error instead)."
        ),
    ] = "cpu",
    register: Annotated[
        str | None,
        typer.Option(
            help="Register the written model in MLflow's model registry as a new version of this name "
            "(alias int8 or fp16; MLFLOW_TRACKING_URI or sqlite:///mlflow.db).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    sign_key: Annotated[
        Path | None,
        typer.Option(
            "--sign-key",
            help="EC private key (PEM): sign the model written (MODEL.int8.onnx.sig).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Quantize an exported model to INT8 (static QDQ or dynamic) or FP16, with an accuracy gate.

    Every candidate is scored on the validation split (the task's main metric, against fp32 on the same
    rows) and timed at batch 1 and 64 (--batch) beside fp32. `auto` keeps the fastest candidate within
    --max-drop that is slower than fp32 at no batch size and 5% faster at one; when none fits it retries
    with the most sensitive nodes left in fp32, and
    otherwise keeps fp32 and says so. Writes MODEL.int8.onnx (or .fp16.onnx) and quantize.json.

    Exit 1 when a forced --mode exceeds the budget (nothing written unless --force); 2 on bad input.
    """
    from toolkit.runtime.quantize import quantize as run_quantize

    if model is None and run is None:
        raise ToolkitError("give the model: toolkit quantize MODEL.onnx (or --run RUN_DIR)")
    batches = parse_batches(batch)
    if sign_key is not None:
        from toolkit.runtime.trust import check_signing_key

        check_signing_key(sign_key)  # before the work, not after it
    with console.status("quantizing…") as status:
        report = run_quantize(
            model if model is not None else run,
            run=run,
            data=data,
            mode=mode,
            max_drop=max_drop,
            calibration=calibration,
            out=out,
            force=force,
            samples=samples,
            threads=threads,
            batches=batches,
            provider=provider,
            progress=lambda m: status.update(f"quantizing: {m}…"),
            register=register,
        )
    if report["written"] and sign_key is not None:
        from toolkit.runtime import trust

        report["signature"] = str(trust.sign(report["written"], sign_key))
    if as_json:
        print_json(report)
    else:
        _print_quantize(report)
        if report.get("registered"):
            r = report["registered"]
            console.print(f"registered in MLflow as {r['name']} version {r['version']} ({r['uri']})")
        elif register is not None and not report["refused"]:
            console.print(f"nothing registered as {register}: no quantized model was written (fp32 kept)")
    if report["refused"]:
        err_console.print(f"[bold red]error:[/] {escape(report['refused'])}", soft_wrap=True)
        raise typer.Exit(1)


def _print_quantize(report: dict[str, Any]) -> None:
    metric, kind = report["metric"], report["drop_kind"]
    title = (
        f"{report['model']} · {report['task']} · gate: {metric} drop ≤ "
        f"{_drop(report['max_drop'], kind)} ({kind}) on {report['data']['validation_samples']} validation rows"
    )
    t = Table(title=escape(title), title_justify="left")
    batches = [str(b) for b in report["batches"]]
    cols = ["candidate", metric, "drop", "gate", *(f"b{b} ms" for b in batches), *(f"×b{b}" for b in batches)]
    for col in [*cols, "size"]:
        t.add_column(col, justify="left" if col in ("candidate", "gate") else "right")
    fp = report["fp32"]
    ones = ["1.00×"] * len(batches)
    t.add_row(
        "fp32",
        f"{fp['metric']:.4g}",
        "",
        "",
        *(fmt_ms(fp["p50_ms"].get(b)) for b in batches),
        *ones,
        fmt_size(fp["bytes"]),
    )
    for c in report["candidates"]:
        name = escape(c["name"]) + (" [bold green]← kept[/]" if c["name"] == report["chosen"] else "")
        if c["error"]:
            blank = [""] * (2 * len(batches))
            t.add_row(name, "", "", "[yellow]error[/]", escape(c["error"][:60]), *blank[1:], "")
            continue
        gate = "[green]pass[/]" if c["passed_gate"] else "[red]over[/]"
        t.add_row(
            name,
            f"{c['metric']:.4g}",
            _drop(c["drop"], kind),
            gate,
            *(fmt_ms(c["p50_ms"].get(b)) for b in batches),
            *(fmt_speed(c["speedup"].get(b)) for b in batches),
            fmt_size(c["bytes"]),
        )
    print_table(console, t)
    where = f" → {escape(report['written'])}" if report["written"] else ""
    console.print(f"{escape(report['decision'])}{where} ({report['seconds']:.1f} s)")
    if report.get("report"):
        console.print(f"report: {escape(report['report'])}")


def _drop(value: float | None, kind: str) -> str:
    if value is None:
        return ""
    return f"{value * 100:+.2f} pt" if kind == "absolute" else f"{value * 100:+.2f}%"
