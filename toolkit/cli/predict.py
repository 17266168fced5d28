"""`toolkit predict`: answer images, CSV rows, texts, arrays or a series with an exported model (no torch)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from toolkit.cli._common import console, err_console, handle_errors, print_json


@handle_errors
def predict(
    model: Annotated[Path, typer.Argument(help="An exported .onnx model (toolkit export).")],
    inputs: Annotated[
        list[str] | None,
        typer.Argument(
            help="Image files or folders (PNG/JPEG), CSV files (feature rows; a series; a text column), "
            ".txt files (one text a line; a series), .npy/.npz arrays. For a GAN generator: labels to draw."
        ),
    ] = None,
    text: Annotated[list[str] | None, typer.Option("--text", help="A text to classify (repeatable).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON, for scripts.")] = False,
    top_k: Annotated[
        int | None, typer.Option("--top-k", help="Classes listed per input, most likely first (default all).")
    ] = None,
    provider: Annotated[
        str | None,
        typer.Option(
            help="Execution provider: cpu, cuda or tensorrt (default: every available one); falls back to "
            "CPU with a warning when it is missing (TOOLKIT_PROVIDER_STRICT=1: an error instead)."
        ),
    ] = None,
    keep_going: Annotated[
        bool,
        typer.Option("--keep-going", help="Answer the other inputs when one is bad (exit code 2 still)."),
    ] = False,
    out: Annotated[
        Path | None, typer.Option(help="GAN generator: write the generated images here as one PNG grid.")
    ] = None,
    seed: Annotated[int, typer.Option(help="GAN generator: noise seed (same seed, same images).")] = 0,
) -> None:
    """Run a model on local files, rows and texts, preprocessed as in training (no torch).

    Everything comes from the model's metadata: labels with probabilities, regression values, forecasts,
    anomaly flags with scores, or generated images.

    A bad input (a file of the wrong kind, an image that does not decode, a CSV row with the wrong number of
    columns, an empty text) is a one-line error naming it, exit code 2; with --keep-going the other inputs are
    still answered.
    """
    from toolkit.runtime.predict import predict as run_predict

    result = run_predict(model, list(inputs or []), list(text or []), top_k, provider, keep_going, out, seed)
    if as_json:
        print_json(result.to_json())
    else:
        _print(result)
    for error in result.errors:
        err_console.print(f"[bold red]error:[/] {escape(error)}", highlight=False, soft_wrap=True)
    if result.errors:
        raise typer.Exit(2)


def _print(result: Any) -> None:
    task, meta = result.task, result.meta
    answered = [r for r in result.results if "error" not in r]
    title = f"{result.model} · {task} · {len(answered)} of {len(result.results)} inputs answered"
    table = Table(title=escape(title), title_justify="left")
    table.add_column("input", overflow="fold")
    if task == "classify":
        table.add_column("label")
        table.add_column("probability", justify="right")
        table.add_column("next most likely")
    elif task == "regress":
        table.add_column("value", justify="right")
    elif task == "forecast":
        horizon = meta["inputs"][0]["preprocessing"]["horizon"]
        table.add_column(f"forecast (next {horizon})")
    elif meta.get("role") == "encoder":
        table.add_column("latent code")
    elif task == "reconstruct":
        table.add_column("verdict")
        table.add_column("score", justify="right")
        table.add_column("threshold", justify="right")
    else:
        table.add_column("label")
    for r in answered:
        cells = [", ".join(f"{v:.4g}" for v in r["code"])] if "code" in r else _cells(task, r)
        table.add_row(escape(r["input"]), *cells)
    console.print(table)
    if result.out:
        console.print(f"wrote {len(answered)} generated images as a grid to [bold]{escape(result.out)}[/]")


def _cells(task: str, r: dict[str, Any]) -> list[str]:
    if task == "classify":
        others = [f"{escape(k)} {v:.3f}" for k, v in list(r["probabilities"].items())[1:3]]
        return [escape(r["label"]), f"{r['probability']:.3f}", ", ".join(others)]
    if task == "regress":
        v = r["value"]
        return [f"{v:.6g}" if isinstance(v, float) else ", ".join(f"{x:.6g}" for x in v)]
    if task == "forecast":
        return [", ".join(f"{v:.6g}" for v in r["forecast"])]
    if task == "reconstruct":
        verdict = {True: "[bold red]anomaly[/]", False: "[green]normal[/]", None: "no threshold"}[
            r["anomaly"]
        ]
        t = r["threshold"]
        return [verdict, f"{r['score']:.4g}", "" if t is None else f"{t:.4g}"]
    return [escape(str(r.get("label")))]
