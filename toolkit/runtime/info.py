"""`model_info(MODEL)`: what a model is, for people (`toolkit info`) and scripts (`--json`).

The metadata summary, the inputs and outputs, opset, file size, parameter count, operator histogram and the
external data files holding its weights. Any ONNX model is described: one without toolkit metadata (a
foreign model) from its graph alone.
The graph is read with the onnx package when it is installed (the training extra). Without it, onnxruntime
shows the ports and the metadata but not the nodes or weights: the opset then comes from the metadata and
the operator histogram and parameter count are None; `source` says which reader was used.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from toolkit.runtime.model import (
    OnnxModel,
    TensorSpec,
    bare_metadata,
    graph_inputs,
    graph_port,
    has_metadata,
    load_proto,
    metadata_of,
)

# Initializers of these types are indices, shapes and axes (Gather indices, Reshape targets), not learned
# weights; they are counted as constants. Float and 8-bit (quantized) initializers count as parameters.
INDEX_TYPES = ("INT64", "INT32", "INT16", "UINT64", "UINT32", "UINT16", "BOOL", "STRING")


def model_info(path: str | Path) -> dict[str, Any]:
    """Everything `toolkit info` shows, as one JSON-serializable dict. A model without `toolkit` metadata
    (a foreign model) is described from its graph alone: `imported` false, task and labels None."""
    path = Path(path)
    try:
        graph = _from_onnx(path)
    except ImportError:
        graph = _from_onnxruntime(path)
    meta = graph.pop("metadata")
    ports = {p["name"]: p for p in [*meta.get("inputs", []), *meta.get("outputs", [])] if isinstance(p, dict)}
    for kind in ("inputs", "outputs"):  # the graph's truth, with the metadata's meaning beside it
        for port in graph[kind]:
            declared = ports.get(port["name"], {})
            port["meaning"] = declared.get("meaning")
            if declared.get("layout"):
                port["layout"] = declared["layout"]
            if declared.get("preprocessing"):
                port["preprocessing"] = declared["preprocessing"]
    provenance = meta.get("provenance") or {}
    external = graph.pop("external_data", [])
    return {
        "path": str(path),
        "bytes": path.stat().st_size,
        "external_data": external,
        "total_bytes": path.stat().st_size + sum(e["bytes"] or 0 for e in external),
        "toolkit_metadata": not meta.get("bare", False),
        "imported": meta.get("imported"),
        "schema": meta.get("schema"),
        "task": meta.get("task"),
        "arch": meta.get("arch"),
        "role": meta.get("role"),
        "labels": meta.get("labels"),
        "thresholds": meta.get("thresholds"),
        **graph,
        "exporter": provenance.get("exporter"),
        "provenance": provenance,
        "recipe": (meta.get("recipe") or {}).get("name"),
        "data": ((meta.get("recipe") or {}).get("data") or {}).get("source"),
        "metrics": meta.get("metrics"),
        "parity": meta.get("parity"),
        "metadata": meta,
    }


def _from_onnx(path: Path) -> dict[str, Any]:
    import onnx

    proto = load_proto(path)
    graph = proto.graph
    if has_metadata(proto):
        meta = metadata_of(proto, path)
    else:
        meta = bare_metadata(
            [graph_port(v) for v in graph_inputs(proto)], [graph_port(v) for v in graph.output]
        )
    names = {v: k for k, v in onnx.TensorProto.DataType.items()}
    parameters = constants = 0
    for t in graph.initializer:
        size = 1
        for d in t.dims:
            size *= d
        if names.get(t.data_type, "") in INDEX_TYPES:
            constants += size
        else:
            parameters += size
    ops = Counter(_nodes(graph))
    return {
        "source": f"onnx {onnx.__version__}",
        "inputs": [graph_port(v) for v in graph_inputs(proto)],  # IR < 4 lists weights as inputs too
        "outputs": [graph_port(v) for v in graph.output],
        "opset": {o.domain or "ai.onnx": o.version for o in proto.opset_import},
        "ir_version": proto.ir_version,
        "producer": f"{proto.producer_name} {proto.producer_version}".strip() or None,
        "nodes": sum(ops.values()),
        "parameters": parameters,
        "initializers": len(graph.initializer),
        "constants": constants,
        "operators": dict(sorted(ops.items(), key=lambda kv: (-kv[1], kv[0]))),
        "metadata": meta,
        "external_data": _external_data(path, graph),
    }


def _external_data(path: Path, graph: Any) -> list[dict[str, Any]]:
    """The files holding the weights stored outside the model file: name, tensors, bytes (None: missing)."""
    files: dict[str, int] = Counter()
    for t in graph.initializer:
        if t.data_location == 1:  # onnx.TensorProto.EXTERNAL
            location = next((e.value for e in t.external_data if e.key == "location"), "?")
            files[location] += 1
    out = []
    for name, tensors in files.items():
        f = path.parent / name
        out.append({"file": name, "tensors": tensors, "bytes": f.stat().st_size if f.is_file() else None})
    return out


def _nodes(graph: Any) -> list[str]:
    """Operator names of every node, subgraphs (If, Loop, Scan bodies) included; other domains prefixed."""
    out = []
    for node in graph.node:
        out.append(node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}")
        for attr in node.attribute:
            for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                out += _nodes(sub)
    return out


def _from_onnxruntime(path: Path) -> dict[str, Any]:
    import onnxruntime as ort

    model = OnnxModel(path, providers=["CPUExecutionProvider"], bare=True)
    meta = model.meta
    opset = (meta.get("provenance") or {}).get("opset")
    modelmeta = model.session.get_modelmeta()

    def port(spec: TensorSpec) -> dict[str, Any]:
        d = spec.describe()
        d["dtype"] = "string" if d["dtype"] == "object" else d["dtype"]
        return d

    return {
        "source": f"onnxruntime {ort.__version__} (onnx is not installed: no operator histogram or "
        "parameter count; the opset is the metadata's)",
        "inputs": [port(s) for s in model.inputs],
        "outputs": [port(s) for s in model.outputs],
        "opset": {"ai.onnx": opset} if opset is not None else {},
        "ir_version": None,
        "producer": modelmeta.producer_name or None,
        "nodes": None,
        "parameters": None,
        "initializers": None,
        "constants": None,
        "operators": None,
        "metadata": meta,
        "external_data": [],
    }
