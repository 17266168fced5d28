"""`toolkit edge pack` / `toolkit edge verify`: self-contained bundles for devices without PyTorch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from toolkit.cli._common import console, handle_errors, print_json

app = typer.Typer(
    help="Bundle a model for a device (onnxruntime + numpy only) and verify a bundle.",
    no_args_is_help=True,
)
STYLE = {"pass": "[green]pass[/]", "fail": "[bold red]FAIL[/]", "skip": "[yellow]skip[/]"}


@app.command("pack")
@handle_errors
def pack(
    model: Annotated[Path, typer.Argument(help="An exported .onnx model, or the run directory holding it.")],
    out: Annotated[Path, typer.Option("--out", help="The bundle folder to write.")],
    target: Annotated[
        str,
        typer.Option(
            help="Device CPU: x86_64 or arm64 (sets the pinned wheels); web: a static folder that runs the "
            "model in a web page with onnxruntime-web (docs/browser.md)."
        ),
    ] = "x86_64",
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="onnx, ort (onnxruntime's ORT format, for small builds) or both (default: onnx; web: both, "
            "the ORT format on WebAssembly and ONNX on WebGPU; ort with --no-webgpu).",
        ),
    ] = None,
    tar: Annotated[bool, typer.Option("--tar", help="Also write OUT.tar.gz.")] = False,
    ort_version: Annotated[
        str | None,
        typer.Option(
            help="onnxruntime version to pin (default: this one for x86_64, 1.22.1 for arm64); "
            "an ORT-format model is written and loaded by that version."
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing OUT.")] = False,
    check: Annotated[
        bool, typer.Option("--check/--no-check", help="Check with pip download that every pin has a wheel.")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON.")] = False,
    webgpu: Annotated[
        bool,
        typer.Option(
            "--webgpu/--no-webgpu",
            help="web: also ship onnxruntime-web's WebGPU runtime (27 MB), used when the browser has WebGPU.",
        ),
    ] = True,
    ort_web: Annotated[
        Path | None,
        typer.Option(
            "--ort-web",
            help="web: a folder holding onnxruntime-web's dist files (default: the pinned release, installed "
            "once with npm into the user's cache; env TOOLKIT_ORT_WEB).",
        ),
    ] = None,
    sign_key: Annotated[
        Path | None,
        typer.Option(
            "--sign-key",
            help="EC private key (PEM) that signs the bundle: bundle.sig over manifest.json and every file "
            "(runner.py --verify-key PUB.pem checks it on the device; needs toolkit[sign]).",
        ),
    ] = None,
) -> None:
    """Write a self-contained bundle to copy onto a device (onnxruntime + numpy only).

    The bundle holds the model (its INT8 variant when one passed its accuracy gate), model.json, runner.py
    and processing.py (need only onnxruntime + numpy, Pillow for images), requirements.txt pinned for the target, a README and
    systemd unit for the device, sample inputs with their expected answers, and a SHA-256 manifest.

    --target web writes a static folder instead: the model, onnxruntime-web (pinned, vendored), index.html and
    toolkit-web.mjs (the same pre- and post-processing in JavaScript, and an API to embed in a web app).
    """
    from toolkit.runtime.edge.bundle import pack as run_pack

    report = run_pack(model, out, target, fmt, tar, ort_version, force, check, webgpu, ort_web, sign_key)
    if as_json:
        print_json(report)
        return
    m = report["model"]
    console.print(f"model: [bold]{escape(m['file'])}[/] ({m['variant']}: {escape(m['why'])})")
    table = Table(
        title=escape(f"{report['out']} · {report['target']} · {report['format']}"), title_justify="left"
    )
    table.add_column("file")
    table.add_column("bytes", justify="right")
    table.add_column("sha256")
    for name, e in report["files"].items():
        table.add_row(escape(name), f"{e['bytes']:,}", e["sha256"][:16])
    console.print(table)
    pins = ", ".join(f"{p}=={v}" for p, v in report["requirements"].items())
    console.print(f"requirements: {pins}")
    if report["target"] == "web":
        console.print(f"serve it: python -m http.server -d {escape(report['out'])}  (then open the page)")
    if report.get("ort_converter"):
        console.print(f"model.ort written and loaded by onnxruntime {report['ort_converter']}")
    tail = f" · archive {escape(report['archive'])}" if report["archive"] else ""
    console.print(f"[green]packed[/] {report['bytes']:,} bytes in {report['seconds']:.1f} s{tail}")


@app.command("verify")
@handle_errors
def verify(
    bundle: Annotated[
        Path, typer.Argument(help="A bundle folder (or its .tar.gz) from `toolkit edge pack`.")
    ],
    python: Annotated[
        str | None, typer.Option(help="The Python to run the runner with (default: this one).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    key: Annotated[
        Path | None,
        typer.Option("--key", help="Public key (PEM): also check the bundle's signature (bundle.sig)."),
    ] = None,
) -> None:
    """Check a bundle against its SHA-256 manifest and run a smoke inference.

    The smoke inference is the shipped runner's self-test in its own process: the bundled samples answered
    as recorded at pack time. For a web bundle it is the page's self-test in headless Chromium (the system's
    Chromium through Playwright: toolkit[web]); skipped, with the reason, where none can start. Exit code 1 when a check fails, 2 when DIR is not a bundle.
    """
    from toolkit.runtime.edge.bundle import verify as run_verify

    report = run_verify(bundle, python, key=key)
    if as_json:
        print_json(report)
    else:
        _print(report)
    if not report["passed"]:
        raise typer.Exit(1)


def _print(report: dict[str, Any]) -> None:
    table = Table(title=escape(report["bundle"]), title_justify="left")
    for column in ("check", "result", "detail"):
        table.add_column(column)
    for c in report["checks"]:
        table.add_row(c["check"], STYLE[c["status"]], escape(c["detail"]))
    console.print(table)
    failed = [c["check"] for c in report["checks"] if c["status"] == "fail"]
    console.print("[green]verified[/]" if report["passed"] else f"[bold red]FAILED[/] ({', '.join(failed)})")
