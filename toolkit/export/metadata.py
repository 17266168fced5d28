"""The metadata document of an exported graph: the `toolkit` key of the model, and model.json beside it.

Schema SCHEMA: inputs with their preprocessing, outputs with their meaning, labels, thresholds, the resolved
recipe, the test metrics, the parity figures and provenance.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from toolkit.export.signatures import Signature
from toolkit.runtime.schema import SCHEMA  # one definition, shared with the torch-free readers


def common_document(run_dir: Path, ckpt: dict[str, Any], ckpt_path: Path, opset: int) -> dict[str, Any]:
    import onnx
    import onnxruntime

    import toolkit

    spec = ckpt["spec"]
    metrics_path = run_dir / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else None
    thresholds: dict[str, Any] = {}
    if "threshold" in spec:
        thresholds["score"] = {
            "value": spec["threshold"],
            "method": spec.get("threshold_method"),
            "rule": "score > value: anomaly",
        }
    provenance = {
        "toolkit": toolkit.__version__,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "exporter": None,  # set per graph: the exporter that passed
        "opset": opset,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "source_run": str(run_dir.resolve()),
        "checkpoint": {
            "file": ckpt_path.name,
            "epoch": ckpt.get("epoch", -1) + 1,
            "sha256": hashlib.sha256(ckpt_path.read_bytes()).hexdigest(),
        },
    }
    if spec.get("init_from"):  # started from another run's weights (model.init_from)
        provenance["init_from"] = spec["init_from"]
    return {
        "schema": SCHEMA,
        "task": ckpt["recipe"]["task"],
        "arch": ckpt["arch"],
        "labels": spec.get("labels"),
        "anomaly": spec.get("anomaly"),
        "thresholds": thresholds,
        "recipe": ckpt["recipe"],
        "metrics": metrics,
        "provenance": provenance,
    }


def document(common: dict[str, Any], sig: Signature, proto: Any, parity: dict[str, Any]) -> dict[str, Any]:
    """The metadata of one graph; shapes are read back from the graph, so they say what it really takes."""
    graph_shapes = {v.name: graph_shape(v) for v in [*proto.graph.input, *proto.graph.output]}
    ports = {}
    for kind, declared in (("inputs", sig.inputs), ("outputs", sig.outputs)):
        ports[kind] = []
        for p in declared:
            d = p.describe()
            d["shape"] = graph_shapes.get(p.name, p.shape)
            ports[kind].append(d)
    doc = {k: common[k] for k in ("schema", "task", "arch")}
    doc["role"] = sig.role
    doc.update(ports)
    doc.update({k: v for k, v in common.items() if k not in doc})
    doc["parity"] = parity
    return doc


def graph_shape(value_info: Any) -> list[int | str]:
    dims = value_info.type.tensor_type.shape.dim
    return [d.dim_param if d.HasField("dim_param") else int(d.dim_value) for d in dims]
