"""`toolkit export`: a run's best checkpoint to a self-describing ONNX model, proven equal to PyTorch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from toolkit.cli._common import console, handle_errors, print_json


@handle_errors
def export(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by `toolkit train`.")],
    out: Annotated[
        Path | None, typer.Option(help="The .onnx file to write (default RUN_DIR/model.onnx).")
    ] = None,
    opset: Annotated[int | None, typer.Option(help="ONNX opset to write (default 18).")] = None,
    exporter: Annotated[
        str, typer.Option(help="auto (TorchScript, then dynamo if needed), torchscript or dynamo.")
    ] = "auto",
    register: Annotated[
        str | None,
        typer.Option(
            help="Register the model in MLflow's model registry under this name (alias fp32; "
            "MLFLOW_TRACKING_URI or sqlite:///mlflow.db).",
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the files written and their metadata as JSON.")
    ] = False,
    sign_key: Annotated[
        Path | None,
        typer.Option(
            "--sign-key",
            help="EC private key (PEM): sign each model written (MODEL.onnx.sig).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Export a run to a self-describing ONNX model (model.onnx and a model.json sidecar).

    Parity with PyTorch is checked at several batch sizes and sequence lengths; a mismatch writes nothing.
    """
    from toolkit.export import export_run

    if sign_key is not None:
        from toolkit.runtime.trust import check_signing_key

        check_signing_key(sign_key)  # before the export, not after it
    result = export_run(run_dir, out, opset, exporter, register)
    files = [result, *result.parts]
    signatures = sign_all([r.path for r in files], sign_key)
    if as_json:
        print_json(
            {
                "seconds": round(result.seconds, 3),
                "registered": result.registered,
                "files": [
                    {"path": str(r.path), "sidecar": str(r.sidecar), "bytes": r.bytes, "metadata": r.metadata}
                    for r in files
                ],
                "signatures": [str(p) for p in signatures],
            }
        )
        return
    for r in files:
        _summary(r)
    for sig in signatures:
        console.print(f"signed: {escape(str(sig))}")
    console.print(f"exported in {result.seconds:.1f} s")
    if result.registered:
        r = result.registered
        console.print(f"registered in MLflow as {r['name']} version {r['version']} ({r['uri']})")


def sign_all(paths: list[Path], key: Path | None) -> list[Path]:
    """--sign-key: a signature beside each model written (nothing when no key was given)."""
    if key is None:
        return []
    from toolkit.runtime import trust

    return [trust.sign(p, key) for p in paths]


def _summary(result: Any) -> None:
    m = result.metadata
    prov, parity = m["provenance"], m["parity"]
    table = Table(
        title=f"{result.path} · {m['task']} {m['role']} · {_size(result.bytes)}", title_justify="left"
    )
    for column in ("", "name", "dtype", "shape", "parity max abs error"):
        table.add_column(column)
    for kind in ("inputs", "outputs"):
        for port in m[kind]:
            err = parity["outputs"].get(port["name"], {}).get("max_abs")
            shape = escape("[" + ", ".join(str(d) for d in port["shape"]) + "]")  # not rich markup
            table.add_row(kind[:-1], port["name"], port["dtype"], shape, "" if err is None else f"{err:.2g}")
    console.print(table)
    lengths = parity["sequence_lengths"]
    probed = f"batch {', '.join(map(str, parity['batch_sizes']))}" + (
        f" × sequence {', '.join(map(str, lengths))}" if lengths else ""
    )
    console.print(
        f"exporter {prov['exporter']} · opset {prov['opset']} · parity with PyTorch on {parity['cases']} "
        f"shapes ({probed}) within atol {parity['atol']:g} / rtol {parity['rtol']:g} · sidecar {result.sidecar.name}"
    )


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"
