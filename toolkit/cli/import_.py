"""`toolkit import`: a foreign ONNX model with toolkit metadata, so every runtime command takes it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from toolkit.cli._common import console, handle_errors, print_json
from toolkit.errors import ToolkitError


@handle_errors
def import_model(
    model: Annotated[Path, typer.Argument(help="A .onnx model the toolkit did not export.")],
    out: Annotated[Path, typer.Option(help="The new .onnx file to write (the source is never changed).")],
    task: Annotated[str, typer.Option(help="What the model does: classify or regress.")],
    labels: Annotated[
        Path | None,
        typer.Option(
            help="Class names, one per line, in output order (default: an ai.onnx.ml classifier's own "
            "labels, else 0..K-1)."
        ),
    ] = None,
    output: Annotated[
        str | None,
        typer.Option(help="The output holding the answer (default: the one 2-D float output)."),
    ] = None,
    apply: Annotated[
        str | None,
        typer.Option(
            help="softmax, sigmoid or none: what turns that output into probabilities (default: none "
            "when the graph ends in Softmax/Sigmoid or an ai.onnx.ml classifier, else softmax)."
        ),
    ] = None,
    image_size: Annotated[
        str | None, typer.Option(help="Images: SIZE or HxW, where the graph leaves them open.")
    ] = None,
    layout: Annotated[
        str | None, typer.Option(help="Images: nchw or nhwc (default: read from the input's shape).")
    ] = None,
    mean: Annotated[
        str | None,
        typer.Option(
            help="Images: per-channel mean in the model's pixel units, RGB order, e.g. 0.5,0.5,0.5."
        ),
    ] = None,
    std: Annotated[str | None, typer.Option(help="Images: per-channel std, like --mean.")] = None,
    preset: Annotated[
        str | None, typer.Option(help="Images: imagenet (mean/std of torchvision's ImageNet models).")
    ] = None,
    pixel_scale: Annotated[
        float | None,
        typer.Option(help="Images: model units per 8-bit pixel value (default 1/255: pixels in [0, 1])."),
    ] = None,
    channels: Annotated[
        int | None, typer.Option(help="Images: 1 (grayscale) or 3 (default: read from the graph).")
    ] = None,
    color_order: Annotated[str, typer.Option(help="Images: rgb or bgr (the model's channel order).")] = "rgb",
    features: Annotated[
        Path | None, typer.Option(help="Tables: feature names, one per line, in input order.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metadata written as JSON.")] = False,
) -> None:
    """Attach toolkit metadata to a foreign ONNX model (torch.onnx.export, the ONNX model zoo, skl2onnx...)
    so predict, validate, quantize, serve (V1), edge pack and explain treat it like an exported model.

    Only what the graph cannot tell is asked; what it can tell is checked (output width = label count,
    input rank fits the layout). The graph and weights are copied unchanged (external data stays
    external); OUT.json is the sidecar. On any error nothing is written.
    """
    from toolkit.runtime.importer import ImportOptions
    from toolkit.runtime.importer import import_model as run_import

    stated = {
        k: (str(v) if isinstance(v, Path) else v)
        for k, v in dict(
            task=task,
            labels=labels,
            output=output,
            apply=apply,
            image_size=image_size,
            layout=layout,
            mean=mean,
            std=std,
            preset=preset,
            pixel_scale=pixel_scale,
            channels=channels,
            color_order=color_order,
            features=features,
        ).items()
        if v is not None
    }
    opts = ImportOptions(
        task=task,
        labels=_lines(labels, "--labels") if labels else None,
        output=output,
        apply=apply,
        image_size=_size(image_size) if image_size else None,
        layout=layout.lower() if layout else None,
        mean=_floats(mean, "--mean") if mean else None,
        std=_floats(std, "--std") if std else None,
        preset=preset,
        pixel_scale=pixel_scale,
        channels=channels,
        color_order=color_order.lower(),
        features=_lines(features, "--features") if features else None,
        stated=stated,
    )
    doc = run_import(model, out, opts)
    if as_json:
        print_json({"path": str(out), "sidecar": str(out.with_suffix(".json")), "metadata": doc})
        return
    _summary(out, doc)


def _lines(path: Path, option: str) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ToolkitError(f"{option} file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ToolkitError(
            f"{option} {path}: not a readable UTF-8 text file ({exc.__class__.__name__})"
        ) from None
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise ToolkitError(f"{option} {path} is empty; give one name per line")
    return names


def _size(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    try:
        dims = [int(p) for p in parts]
    except ValueError:
        dims = []
    if len(dims) == 1:
        dims = dims * 2
    if len(dims) != 2 or min(dims) < 1:
        raise ToolkitError(f"--image-size must be SIZE or HxW, such as 224 or 224x320 (got {text!r})")
    return dims[0], dims[1]


def _floats(text: str, option: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ToolkitError(
            f"{option} must be comma-separated numbers, such as 0.5,0.5,0.5 (got {text!r})"
        ) from None


def _summary(out: Path, doc: dict[str, Any]) -> None:
    table = Table(title=escape(f"{out} · {doc['task']} · imported"), title_justify="left")
    for column in ("", "name", "dtype", "shape", "meaning"):
        table.add_column(column)
    for kind in ("inputs", "outputs"):
        for port in doc[kind]:
            shape = escape("[" + ", ".join(str(d) for d in port["shape"]) + "]")
            table.add_row(kind[:-1], port["name"], port["dtype"], shape, escape(port.get("meaning") or ""))
    console.print(table)
    if doc["labels"]:
        shown = ", ".join(doc["labels"][:8]) + (", ..." if len(doc["labels"]) > 8 else "")
        console.print(f"labels ({len(doc['labels'])}): {escape(shown)}")
    console.print(f"sidecar {escape(str(out.with_suffix('.json')))}")
