"""`export_run(RUN_DIR)`: the export steps in order, from the best checkpoint to the written files.

Rebuild the best checkpoint, export each of the task's graphs with the first exporter whose graph passes
every check (and its text model), then write them all, atomically, with their metadata.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolkit.errors import ToolkitError
from toolkit.export import exporters
from toolkit.export.exporters import DEFAULT_OPSET, supported_opsets
from toolkit.export.metadata import common_document, document
from toolkit.export.parity import check_parity
from toolkit.export.signatures import SIGNATURES, Signature
from toolkit.runtime.rewrite import for_export as rewrite_for_export


@dataclass
class Graph:
    """One exported graph that passed every check, before it is written: the proto and its document."""

    signature: Signature
    model: Any  # onnx.ModelProto
    document: dict[str, Any]
    seconds: float


@dataclass
class ExportResult:
    """What export_run wrote: the model, its sidecar, the metadata document and the file size."""

    path: Path
    sidecar: Path
    metadata: dict[str, Any]
    bytes: int
    seconds: float
    parts: list[ExportResult] = field(default_factory=list)  # files exported beside it (the encoder)
    registered: dict[str, Any] | None = None  # the MLflow model version (--register NAME)


def export_run(
    run_dir: str | Path,
    out: str | Path | None = None,
    opset: int | None = None,
    exporter: str = "auto",
    register: str | None = None,
) -> ExportResult:
    """Export RUN_DIR/best.pt to `out` (default RUN_DIR/model.onnx) and model.json beside it.

    `exporter`: "auto" tries each of EXPORTERS in order and keeps the first whose graph passes every check;
    "torchscript" or "dynamo" uses only that one. Nothing is written unless every graph passes the checker,
    strict shape inference and the parity check; files are replaced atomically, so an earlier model.onnx
    stays whole when an export fails. `register=NAME` registers the model in MLflow's model registry
    (toolkit.tracking.registry); a run tracked with TensorBoard gets the ONNX graph in its event files."""
    from toolkit.io import write_bytes, write_json
    from toolkit.train.checkpoint import load_checkpoint, load_model

    t0 = time.perf_counter()
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ToolkitError(f"run directory not found: {run_dir}")
    if exporter != "auto" and exporter not in exporters.EXPORTERS:
        raise ToolkitError(f"unknown exporter {exporter!r}; allowed: auto, {', '.join(exporters.EXPORTERS)}")
    opsets = supported_opsets()
    opset = DEFAULT_OPSET if opset is None else opset
    if opset not in opsets:
        raise ToolkitError(f"opset {opset} is not supported; allowed: {opsets.start}-{opsets.stop - 1}")
    out = Path(out) if out is not None else run_dir / "model.onnx"
    if out.suffix != ".onnx":
        raise ToolkitError(f"--out must name a .onnx file (got {out})")
    if register is not None:
        from toolkit.tracking import check_kinds

        check_kinds(["mlflow"])  # a missing mlflow is said before the export, not after
    ckpt_path = run_dir / "best.pt"
    ckpt = load_checkpoint(ckpt_path)
    task = ckpt["recipe"].get("task")
    if task not in SIGNATURES:
        raise ToolkitError(f"{run_dir}: task {task!r} cannot be exported; allowed: {', '.join(SIGNATURES)}")
    model = load_model(ckpt)
    common = common_document(run_dir, ckpt, ckpt_path, opset)
    graphs = [
        _export_graph(sig, opset, list(exporters.EXPORTERS) if exporter == "auto" else [exporter], common)
        for sig in SIGNATURES[task](model, ckpt)
    ]
    tokenizer = ckpt["spec"].get("tokenizer")
    if tokenizer is not None:
        from toolkit.export.text import supports_text_model

        if supports_text_model(tokenizer):  # a second file that takes raw strings
            graphs.append(_text_graph(graphs[0], tokenizer))
    results = []
    for g in graphs:  # every graph passed: now write them
        import onnx

        path = part_path(out, g.signature.suffix)
        onnx.helper.set_model_props(g.model, {"toolkit": json.dumps(g.document)})
        data = g.model.SerializeToString()
        write_bytes(path, data)
        write_json(path.with_suffix(".json"), g.document)
        results.append(ExportResult(path, path.with_suffix(".json"), g.document, len(data), g.seconds))
    main, parts = results[0], results[1:]
    main.parts, main.seconds = parts, time.perf_counter() - t0
    _track_export(run_dir, main, register)
    return main


def _track_export(run_dir: Path, main: ExportResult, register: str | None) -> None:
    """The graph into a TensorBoard-tracked run's event files; the model into MLflow's registry."""
    if (run_dir / "tensorboard").is_dir():
        from toolkit.tracking.tensorboard_backend import add_onnx_graph

        add_onnx_graph(run_dir, main.path)
    if register is not None:
        from toolkit.tracking.registry import register as register_model

        main.registered = register_model(main.path, register, "fp32", run_dir)


def part_path(out: Path, suffix: str) -> Path:
    """Where a graph goes: model.onnx, model.text.onnx, and the encoder as encoder.onnx beside model.onnx
    (OUT.encoder.onnx beside any other OUT.onnx)."""
    if suffix == ".encoder" and out.stem == "model":
        return out.with_name("encoder.onnx")
    return out.with_name(out.stem + suffix + ".onnx")


def _text_graph(token_graph: Graph, tokenizer: dict[str, Any]) -> Graph:
    """model.text.onnx: the token model behind an in-graph tokenizer, checked against the Python one."""
    import dataclasses

    from toolkit.export.text import build_text_model, check_text_parity, text_document

    t0 = time.perf_counter()
    proto = build_text_model(token_graph.model, tokenizer, token_graph.signature.inputs[0].name)
    parity = check_text_parity(proto, token_graph.model, tokenizer)
    sig = dataclasses.replace(
        token_graph.signature, suffix=token_graph.signature.suffix + ".text", role="text"
    )
    return Graph(sig, proto, text_document(token_graph.document, parity), time.perf_counter() - t0)


def _export_graph(sig: Signature, opset: int, names: list[str], common: dict[str, Any]) -> Graph:
    """Export with the first exporter whose graph passes the checks; one line naming every failure."""
    failures = []
    for name in names:
        t0 = time.perf_counter()
        try:
            proto = exporters.EXPORTERS[name](sig, opset)
            proto, rewrites = rewrite_for_export(proto)  # where onnxruntime's own kernel is the slow one
            exporters.declare_shapes(proto, sig)
            exporters.check_graph(proto, sig, opset)
            parity = check_parity(sig, proto.SerializeToString())
        except ToolkitError as exc:
            failures.append((name, str(exc)))
            continue
        doc = document(common, sig, proto, parity)
        doc["provenance"] = {**doc["provenance"], "exporter": name}
        if rewrites:
            doc["provenance"]["rewrites"] = rewrites
        return Graph(sig, proto, doc, time.perf_counter() - t0)
    if len(failures) == 1:
        raise ToolkitError(failures[0][1])
    raise ToolkitError("; ".join(f"{name} exporter: {msg}" for name, msg in failures))
