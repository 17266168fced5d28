"""`toolkit validate`: prove an exported model with onnxruntime alone (metadata, shapes, metrics, parity)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from toolkit.cli._common import console, handle_errors, print_json

STYLE = {"pass": "[green]pass[/]", "fail": "[bold red]FAIL[/]", "skip": "[yellow]skip[/]"}


@handle_errors
def validate(
    model: Annotated[Path, typer.Argument(help="An exported .onnx model (toolkit export).")],
    run: Annotated[
        Path | None,
        typer.Option("--run", help="The run directory it was exported from: also check parity with PyTorch."),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(
            help="The training data at another place (default: the source the recipe names); for an imported model (toolkit import): labelled data, an image "
            "folder (one sub-folder per label), a CSV with a target column or an .npz with x and y."
        ),
    ] = None,
    provider: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated: cpu, cuda, tensorrt, tensorrt-fp16 (default: every available provider). "
            "A missing one is skipped with the reason and the model validated on CPU instead "
            "(TOOLKIT_PROVIDER_STRICT=1: an error)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Validate an exported model: metadata schema, every available provider, dynamic batch axis, the test
    metrics recorded at training time, and parity with the PyTorch checkpoint when --run is given.

    Writes validate.json beside the model. Exit code 1 when a check fails, 2 on bad input.
    """
    from toolkit.runtime.validate import validate as run_validation

    providers = [p.strip() for p in provider.split(",") if p.strip()] if provider is not None else None
    report = run_validation(model, run, data, providers)
    if as_json:
        print_json(report)
    else:
        _print(report)
    if not report["passed"]:
        raise typer.Exit(1)


def _print(report: dict[str, Any]) -> None:
    title = f"{report['model']} · {report['task']} {report['role']}"
    if report["data"]:
        title += f" · {report['data']['source']}, {report['data']['samples']} samples"
    table = Table(title=escape(title), title_justify="left")
    for column in ("check", "provider", "result", "detail"):
        table.add_column(column)
    for c in report["checks"]:
        provider = (c["provider"] or "").removesuffix("ExecutionProvider")
        table.add_row(c["check"], provider, STYLE[c["status"]], escape(c["detail"]))
    console.print(table)
    for provider, rows in report["metrics"].items():
        if not rows:
            continue
        t = Table(title=f"test metrics on {provider.removesuffix('ExecutionProvider')}", title_justify="left")
        for column in ("metric", "recorded", "onnxruntime", "delta", "tolerance", "result"):
            t.add_column(column, justify="left" if column in ("metric", "result") else "right")
        for name, r in rows.items():
            mark = "" if r["passed"] is None else STYLE["pass" if r["passed"] else "fail"]
            main = " (main)" if name == report.get("main_metric") else ""
            t.add_row(
                name + main,
                _num(r["expected"]),
                _num(r["got"]),
                _num(r["delta"], "+.2g"),
                _num(r["tolerance"], ".2g"),
                mark,
            )
        console.print(t)
    failed = sorted({c["check"] for c in report["checks"] if c["status"] == "fail"})
    verdict = "[green]passed[/]" if report["passed"] else f"[bold red]FAILED[/] ({', '.join(failed)})"
    console.print(f"{verdict} in {report['seconds']:.1f} s · report {escape(report['report'])}")


def _num(value: Any, fmt: str = ".4g") -> str:
    return "" if value is None else format(value, fmt)
