"""What quantize writes: the kept model with its metadata, and quantize.json listing every candidate.

The kept model carries the fp32 document plus a `quantization` section (also in its .json sidecar);
quantize.json has schema REPORT_SCHEMA.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolkit.runtime.quantize.build import MODE_FORMATS
from toolkit.runtime.quantize.gate import Candidate, Gate

REPORT_SCHEMA = "toolkit.quantize/1"


@dataclass
class Context:
    """What every part of the report states: the source, the data, the settings and where it ran."""

    path: Path  # the fp32 model
    meta: dict[str, Any]
    mode: str
    calibration: str
    gate: Gate
    source: str  # the data's origin
    validation_samples: int
    calibration_samples: int
    threads: int = 1
    batches: list[int] = field(default_factory=list)
    provider: str = "CPUExecutionProvider"  # the provider every score and timing ran on
    fallback: str | None = None  # why it is not the requested one


def written_path(path: Path, chosen: Candidate, out: Path | None) -> Path:
    """--out, else MODEL.int8.onnx (MODEL.fp16.onnx for fp16) beside the fp32 model."""
    suffix = ".fp16.onnx" if chosen.mode == "fp16" else ".int8.onnx"
    return out if out is not None else path.with_name(path.name.removesuffix(".onnx") + suffix)


def metadata(ctx: Context, chosen: Candidate) -> dict[str, Any]:
    """The kept model's metadata document: the fp32 model's, with its `quantization` section."""
    import onnxruntime as ort

    from toolkit import __version__

    fmt, weights, activations = MODE_FORMATS[chosen.mode]
    g = ctx.gate
    doc = copy.deepcopy(ctx.meta)
    doc["quantization"] = {
        "mode": chosen.mode,
        "format": fmt,
        "weights": weights,
        "activations": activations,
        "calibration": {"method": ctx.calibration, "samples": ctx.calibration_samples, "split": "train"}
        if chosen.mode == "static"
        else None,
        "excluded_nodes": chosen.excluded,
        "rewrites": chosen.rewrites,
        "metric": g.metric,
        "direction": g.direction,
        "drop_kind": "absolute" if g.direction == "max" else "relative",
        "fp32": g.base,
        "value": chosen.metric,
        "drop": chosen.drop,
        "max_drop": g.max_drop,
        "passed": chosen.passed_gate,
        "validation_samples": ctx.validation_samples,
        "speedup": {f"batch_{b}": s for b, s in chosen.speedup.items()},
        "p50_ms": {f"batch_{b}": v for b, v in chosen.latency.items()},
        "threads": ctx.threads,
        "provider": ctx.provider,
        "source_model": ctx.path.name,
        "onnxruntime": ort.__version__,
        "toolkit": __version__,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    return doc


def write_model(ctx: Context, chosen: Candidate, out: Path | None) -> str:
    """Write the kept candidate with its metadata (atomically) and its sidecar; returns the model's path."""
    import onnx

    from toolkit.io import write_bytes, write_json

    out_path = written_path(ctx.path, chosen, out)
    doc = metadata(ctx, chosen)
    proto = chosen.proto
    onnx.helper.set_model_props(
        proto, {**{p.key: p.value for p in proto.metadata_props}, "toolkit": json.dumps(doc)}
    )
    write_bytes(out_path, proto.SerializeToString())
    write_json(out_path.with_suffix(".json"), doc)
    return str(out_path)


def report(
    ctx: Context,
    candidates: list[Candidate],
    base_latency: dict[int, float],
    decision: tuple[Candidate | None, str, str | None],
    written: str | None,
    seconds: float,
) -> dict[str, Any]:
    """quantize.json: the settings, fp32's figures and every candidate's, and what was decided."""
    chosen, words, refused = decision
    g = ctx.gate
    return {
        "schema": REPORT_SCHEMA,
        "model": str(ctx.path),
        "task": ctx.meta["task"],
        "mode": ctx.mode,
        "metric": g.metric,
        "direction": g.direction,
        "drop_kind": "absolute" if g.direction == "max" else "relative",
        "max_drop": g.max_drop,
        "data": {
            "source": ctx.source,
            "validation_samples": ctx.validation_samples,
            "calibration_samples": ctx.calibration_samples,
        },
        "calibration": ctx.calibration,
        "threads": ctx.threads,
        "batches": ctx.batches,
        "provider": ctx.provider,
        "provider_fallback": ctx.fallback,
        "fp32": {
            "metric": g.base,
            "p50_ms": {str(b): v for b, v in base_latency.items()},
            "bytes": ctx.path.stat().st_size,
        },
        "candidates": [c.row() for c in candidates],
        "chosen": None if refused or chosen is None else chosen.name,
        "decision": words,
        "refused": refused,
        "written": written,
        "seconds": round(seconds, 2),
    }
