"""`toolkit explain`: why a model answered what it did, without torch (attribution maps, SHAP values,
per-token and per-step attributions, reconstruction errors)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from toolkit.cli._common import console, err_console, handle_errors, print_json


@handle_errors
def explain(
    model: Annotated[Path, typer.Argument(help="An exported .onnx model (toolkit export).")],
    inputs: Annotated[
        list[str] | None,
        typer.Argument(
            help="Image files or folders (PNG/JPEG), CSV files (feature rows; a series; a text column), "
            ".txt files (one text a line; a series), .npy/.npz arrays."
        ),
    ] = None,
    text: Annotated[list[str] | None, typer.Option("--text", help="A text to explain (repeatable).")] = None,
    method: Annotated[
        str | None,
        typer.Option(
            help="images: occlusion (default), rise, ig (integrated gradients); tables: shap (default, "
            "KernelSHAP; needs the explain extra), occlusion, ig; series: occlusion (default), ig; texts: loo "
            "(leave-one-out, default), occlusion; autoencoders: reconstruction."
        ),
    ] = None,
    target: Annotated[
        str | None,
        typer.Option(
            help="What to explain: a label name or index (default: the predicted class); a forecast step "
            "1..horizon or 'mean' (default); a regression output index."
        ),
    ] = None,
    samples: Annotated[
        int | None,
        typer.Option(
            help="Budget in model evaluations per input (default: occlusion 1024 masks at most, rise 1000 "
            "masks, ig 16 steps x (inputs + 1), shap 2 x features + 2048)."
        ),
    ] = None,
    seed: Annotated[
        int, typer.Option(help="Seed of the random methods (rise, shap): same seed, same map.")
    ] = 0,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Write a PNG: image grids (input, map, overlay, top labels), bars, series, tokens."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON, for scripts.")] = False,
    keep_going: Annotated[
        bool,
        typer.Option("--keep-going", help="Explain the other inputs when one is bad (exit code 2 still)."),
    ] = False,
    provider: Annotated[
        str | None,
        typer.Option(help="Execution provider: cpu, cuda or tensorrt (default: every available one)."),
    ] = None,
) -> None:
    """Explain a model's answers on local inputs, with onnxruntime only (no torch).

    Attributions are in the units of what is explained (a class probability, a predicted value, a forecast)
    relative to the training mean: positive supports the target, negative works against it. Autoencoders
    show where the reconstruction fails; a GAN generator has nothing to explain (an error says so).
    """
    args = (
        model,
        list(inputs or []),
        list(text or []),
        method,
        target,
        samples,
        seed,
        out,
        keep_going,
        provider,
    )
    result = _run(args, progress=not as_json and sys.stderr.isatty())
    if as_json:
        print_json(result.to_json())
    else:
        _print(result)
    for error in result.errors:
        err_console.print(f"[bold red]error:[/] {escape(error)}", highlight=False, soft_wrap=True)
    if result.errors:
        raise typer.Exit(2)


def _run(args: tuple, progress: bool) -> Any:
    from toolkit.runtime.explain.api import explain as run_explain

    if not progress:
        return run_explain(*args)
    from rich.progress import Progress

    with Progress(console=err_console, transient=True) as bar:
        task = bar.add_task("explaining", total=None)
        return run_explain(*args, advance=lambda: bar.advance(task))


def _print(result: Any) -> None:
    """Each result as text (coloured maps, bars, tokens when the terminal takes colour), then the PNG."""
    from toolkit.runtime.explain.terminal import render

    colour = console.is_terminal and not console.no_color
    for r in result.results:
        if "error" not in r:
            typer.echo(render(r, colour), color=colour)
    if result.out:
        console.print(f"wrote {escape(result.out)}")
