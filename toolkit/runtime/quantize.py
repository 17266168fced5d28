"""`quantize(MODEL)`: INT8 / FP16 variants of an exported model, kept only when they stay accurate and fast.

Users' two complaints about INT8 are that accuracy silently collapses and that the quantized model is no
faster than fp32 (dynamic quantization of convolutions is several times slower on CPU). Every candidate is
therefore measured, not assumed:

- the task's main metric on the validation split (the test split stays untouched: it is what `validate`
  and the README report), against the fp32 model on the same rows; the drop is absolute for accuracy-like
  metrics and relative for error metrics (MAE, MSE), and must be at most `max_drop`;
- p50 latency at batch 1 and 64, measured in turns with fp32 at the same thread count.

Candidates (onnxruntime.quantization, after its pre-processing: shape inference and graph optimization):
- static: INT8 in QDQ format, weights per channel (int8), activations uint8 (asymmetric) calibrated on
  train-split rows with MinMax, Entropy or Percentile;
- dynamic: weights INT8, activations quantized at run time (MatMul, Gemm, LSTM, Attention...);
- fp16: every float weight and op in half precision with fp32 inputs and outputs (for GPUs: on a CPU it
  runs but is slow, so `auto` only tries it on a GPU provider).

`mode="auto"` tries every candidate that fits the graph and keeps the fastest that passes the accuracy
gate and is faster than fp32: not slower at any batch size measured (default 1 and 64) and at least 5%
faster at one of them. A candidate in which nothing was quantized is an error, not a contender. When none
passes the gate, it retries with the most sensitive nodes left in fp32: the quantized and fp32 models run the same validation rows with every
intermediate tensor as an output, and the nodes whose outputs gain the most error over their inputs are
excluded first (1, 2, 4, ... of them). If still none fits, fp32 is kept and the report says why.
A forced mode whose drop exceeds the budget is refused (nothing written) unless `force`.

The kept model (model.int8.onnx or model.fp16.onnx) carries the fp32 metadata plus a `quantization`
section (recipe, metric, drop, speed-ups); quantize.json lists every candidate. No torch anywhere.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.errors import ToolkitError
from toolkit.runtime.bench import batch_sizes
from toolkit.runtime.evalset import CalibrationReader, quantization_inputs, repeat_rows
from toolkit.runtime.model import read_metadata
from toolkit.runtime.providers import CPU, Resolution, for_model, not_started, resolve, warn

MODES = ("auto", "static", "dynamic", "fp16")
CALIBRATIONS = ("minmax", "entropy", "percentile")
DEFAULT_MAX_DROP = 0.01  # absolute for accuracy-like metrics, relative for error metrics
DEFAULT_SAMPLES = 256  # calibration rows from the train split (recipe key quantize.calibration_samples)
BATCHES = (1, 64)
EVAL_BATCH = 64
# "Faster" means: never slower (speed-up >= 1 at every batch size, paired per round) and at least MIN_SPEEDUP
# at one of them. Two timings of one model differ by a few percent on a shared machine: a tie is not a win.
MIN_SPEEDUP = 1.05
EXCLUDE_STEPS = (1, 2, 4, 8)  # sensitive nodes left in fp32 on each retry (capped at a quarter of them)
QUANTIZABLE = frozenset(
    {"Conv", "ConvTranspose", "MatMul", "Gemm", "LSTM", "GRU", "Attention", "Gather", "MultiHeadAttention"}
)
# Dynamic INT8 leaves alone what costs more than it saves (measured at batch 64, 2 threads): an embedding
# (Gather) in int8 is dequantized on every call (lstm-text: +134 us on a 1.3 ms model), and a layer whose
# weight has fewer than SMALL_WEIGHT elements (a 64 x 3 classifier head) runs slower as
# DynamicQuantizeMatMul than as a float Gemm.
DYNAMIC_OPS = sorted(QUANTIZABLE - {"Gather"})
SMALL_WEIGHT = 1024
# onnxruntime has INT8 kernels for LSTM but not for GRU: dynamic mode rewrites GRUs as a Scan whose recurrent
# product is INT8 (toolkit.runtime.recurrent; 1.5-1.8x the fp32 GRU op from 128 hidden units on).
SCAN_INT8_OPS = ("GRU",)
# What each mode writes, as its metadata records it: (format, weights, activations).
MODE_FORMATS = {
    "static": ("QDQ", "int8 per channel", "uint8 asymmetric, calibrated"),
    "dynamic": ("QOperator", "int8 per tensor (GRU recurrences: per column)", "uint8, at run time"),
    "fp16": ("float16", "float16", "float16"),
}
REPORT_SCHEMA = "toolkit.quantize/1"


@dataclass
class Candidate:
    """One quantized variant: how it was made, and what it measured."""

    name: str  # "static", "dynamic", "fp16", "static -3 nodes"...
    mode: str
    proto: Any = None
    excluded: list[str] = field(default_factory=list)
    error: str | None = None
    metric: float | None = None
    drop: float | None = None
    passed_gate: bool = False
    latency: dict[int, float] = field(default_factory=dict)  # batch -> p50 ms
    speedup: dict[int, float] = field(default_factory=dict)
    size: int = 0
    rewrites: list[str] = field(default_factory=list)  # graph rewrites made before quantizing

    @property
    def faster(self) -> bool:
        s = self.speedup.values()
        return bool(self.speedup) and min(s) >= 1.0 and max(s) >= MIN_SPEEDUP

    def row(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "mode": self.mode,
            "excluded_nodes": self.excluded,
            "rewrites": self.rewrites,
            "error": self.error,
            "metric": self.metric,
            "drop": self.drop,
            "passed_gate": self.passed_gate,
            "p50_ms": {str(b): v for b, v in self.latency.items()},
            "speedup": {str(b): v for b, v in self.speedup.items()},
            "faster": self.faster,
            "bytes": self.size,
        }


# --------------------------------------------------------------------------------------------- metrics
def main_metric(meta: dict[str, Any], y: np.ndarray | None) -> tuple[str, str]:
    """(metric name, "max"|"min") that gates quantization for this model: the task's main metric
    (toolkit.metrics.TASK_METRICS), except where the fp32 model is the better yardstick: an anomaly detector
    whose validation split has both kinds is gated on detection quality (roc_auc), and a generator on
    `fidelity` to the fp32 generator's images (its own metric needs the judge, a PyTorch model)."""
    from toolkit.metrics import TASK_METRICS

    task = meta["task"]
    if task == "reconstruct" and y is not None and (y == 0).any() and (y == 1).any():
        return "roc_auc", "max"
    if task == "generate" or TASK_METRICS[task].score is None:
        return "fidelity", "max"  # 1 - mean |pixel difference| to the fp32 generator's images
    return TASK_METRICS[task].main, TASK_METRICS[task].direction


def score(meta: dict[str, Any], name: str, out: dict[str, np.ndarray], y: Any, ref: Any) -> float:
    """The gate metric of one model's outputs on the validation rows."""
    from toolkit.metrics import TASK_METRICS

    if name == "fidelity":
        first = next(iter(out))
        return float(1.0 - np.mean(np.abs(out[first].astype(np.float64) - ref[first])))
    return float(TASK_METRICS[meta["task"]].score(out, y, meta)[name])


def drop_of(name: str, direction: str, base: float, value: float) -> float:
    """How much worse `value` is than `base`: points for accuracy-like metrics, a fraction for errors."""
    if direction == "max":
        return base - value
    return (value - base) / abs(base) if base else value - base


# --------------------------------------------------------------------------------------------- building
def preprocess(src: Path, work: Path) -> Path:
    """onnxruntime's quantization pre-processing: symbolic shape inference + graph optimization."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out = work / "pre.onnx"
    try:
        quant_pre_process(str(src), str(out), skip_symbolic_shape=False)
    except Exception:  # symbolic shape inference cannot handle every graph: plain ONNX inference then
        quant_pre_process(str(src), str(out), skip_symbolic_shape=True)
    return out


def build(
    mode: str,
    pre: Path,
    work: Path,
    calib: dict[str, np.ndarray],
    calibration: str,
    exclude: Sequence[str] = (),
) -> tuple[Any, list[str]]:
    """One quantized ModelProto of the pre-processed model, and the graph rewrites made on the way."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    out = work / f"{mode}-{len(exclude)}.onnx"
    rewrites: list[str] = []
    model = onnx.load(str(pre))
    if mode == "static":
        method = {
            "minmax": CalibrationMethod.MinMax,
            "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile,
        }[calibration]
        quantize_static(
            str(pre),
            str(out),
            CalibrationReader(calib),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=list(exclude) + output_nodes(model),
            calibrate_method=method,
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
            calibration_cache_path=None,
        )
    elif mode == "dynamic":
        from toolkit.runtime.recurrent import lower

        lowered, count = lower(model, ops=SCAN_INT8_OPS, int8=True, skip=exclude)
        if count:
            rewrites.append(
                f"{count} {'/'.join(SCAN_INT8_OPS)} op{'s' * (count > 1)} -> Scan, INT8 recurrence"
            )
            model, pre = lowered, work / "pre-scan.onnx"
            onnx.save(model, str(pre))
        quantize_dynamic(
            str(pre),
            str(out),
            per_channel=False,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=DYNAMIC_OPS,
            nodes_to_exclude=list(exclude) + small_layers(model),
        )
    elif mode == "fp16":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        from toolkit.runtime.graph import topological_sort

        proto = convert_float_to_float16(model, keep_io_types=True, node_block_list=list(exclude) or None)
        topological_sort(proto.graph)  # the converter appends its input casts at the end of the graph
        onnx.save(proto, str(out))
    else:
        raise ToolkitError(f"unknown mode {mode!r}; allowed: {', '.join(MODES)}")
    return onnx.load(str(out)), rewrites


def low_precision_weights(model: Any) -> int:
    """How many constant tensors (subgraphs included) are int8, uint8 or float16: none means that a
    "quantized" graph computes everything in fp32 (the quantizer only rewired it)."""
    from onnx import TensorProto

    from toolkit.runtime.graph import graphs

    kinds = {TensorProto.INT8, TensorProto.UINT8, TensorProto.FLOAT16}
    tensors = [t for g in graphs(model.graph) for t in g.initializer]
    tensors += [a.t for g in graphs(model.graph) for n in g.node for a in n.attribute if a.type == a.TENSOR]
    return sum(t.data_type in kinds for t in tensors)


def output_nodes(model: Any) -> list[str]:
    """Names of the nodes that write a graph output. Static INT8 leaves them in float: their result is what
    the user reads, and a uint8 softmax has probabilities in steps of 1/255 (ties in argmax, coarse
    thresholds) for a few microseconds saved."""
    outputs = {o.name for o in model.graph.output}
    return [n.name for n in model.graph.node if n.name and outputs.intersection(n.output)]


def small_layers(model: Any) -> list[str]:
    """Names of the MatMul / Gemm nodes whose constant weight has fewer than SMALL_WEIGHT elements (a Gemm
    also under the name of the MatMul that the quantizer replaces it with)."""
    sizes = {i.name: math.prod(i.dims) for i in model.graph.initializer}
    small = [
        n
        for n in model.graph.node
        if n.op_type in ("MatMul", "Gemm")
        and len(n.input) > 1
        and sizes.get(n.input[1], SMALL_WEIGHT) < SMALL_WEIGHT
    ]
    return [n.name for n in small] + [f"{n.name}_MatMul" for n in small if n.op_type == "Gemm"]


def session(proto: Any, threads: int | None, provider: str | Resolution) -> Any:
    """A session of an in-memory model on `provider` (a --provider value, or one resolved already); the
    fall-back, if any, was reported when the provider was resolved."""
    import onnxruntime as ort

    from toolkit.runtime.providers import open_session

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    return open_session(proto.SerializeToString(), provider, options=opts)[0]


def run_all(
    sess: Any, feeds: dict[str, np.ndarray], outputs: Sequence[str] | None = None
) -> dict[str, np.ndarray]:
    names = list(outputs) if outputs else [o.name for o in sess.get_outputs()]
    n = len(next(iter(feeds.values())))
    parts = [
        sess.run(names, {k: v[i : i + EVAL_BATCH] for k, v in feeds.items()}) for i in range(0, n, EVAL_BATCH)
    ]
    return {name: np.concatenate([p[j] for p in parts]) for j, name in enumerate(names)}


# --------------------------------------------------------------------------------------------- sensitivity
def sensitive_nodes(
    pre: Path, quantized: Any, feeds: dict[str, np.ndarray], provider: Resolution
) -> list[str]:
    """Names of the pre-processed graph's quantizable nodes, most sensitive first: the relative error of
    each node's output (quantized vs fp32, on validation rows) minus the largest error of its inputs."""
    import onnx

    fp32 = onnx.load(str(pre))
    produced = {o: n for n in fp32.graph.node for o in n.output}
    q_tensors = {o for n in quantized.graph.node for o in n.output} | {o.name for o in quantized.graph.output}
    wanted = [
        o
        for n in fp32.graph.node
        for o in n.output
        if o and o in q_tensors and (n.op_type in QUANTIZABLE or any(i in produced for i in n.input))
    ]
    rows = {k: v[: min(len(v), 128)] for k, v in feeds.items()}
    ref = _intermediate(fp32, wanted, rows, provider)
    got = _intermediate(quantized, [w for w in wanted if w in ref], rows, provider)
    err: dict[str, float] = {}
    for name, a in ref.items():
        b = got.get(name)
        if b is None or a.shape != b.shape or not np.issubdtype(a.dtype, np.floating):
            continue
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
        err[name] = float(np.linalg.norm(a64 - b64) / (np.linalg.norm(a64) + 1e-12))
    jumps = []
    for n in fp32.graph.node:
        if n.op_type not in QUANTIZABLE or not n.output or n.output[0] not in err:
            continue
        before = max((err.get(i, 0.0) for i in n.input if i in produced), default=0.0)
        jumps.append((err[n.output[0]] - before, n.name))
    jumps.sort(reverse=True)
    return [name for _, name in jumps if name]


def _intermediate(
    proto: Any, names: list[str], feeds: dict[str, np.ndarray], provider: Resolution
) -> dict[str, np.ndarray]:
    """The named tensors of a graph, made outputs (types from shape inference), on the given rows."""
    import onnx

    model = copy.deepcopy(proto)
    try:
        model = onnx.shape_inference.infer_shapes(model)
    except Exception:
        pass
    types = {v.name: v for v in [*model.graph.value_info, *model.graph.output]}
    existing = {o.name for o in model.graph.output}
    added = []
    for name in names:
        if name in existing:
            added.append(name)
        elif name in types:
            vi = onnx.ValueInfoProto()
            vi.CopyFrom(types[name])
            model.graph.output.append(vi)
            added.append(name)
    try:
        sess = session(model, None, provider)
        return dict(zip(added, sess.run(added, feeds)))
    except Exception:
        return {}


# --------------------------------------------------------------------------------------------- timing
def measure_speed(
    fp32: Any,
    candidates: list[Candidate],
    feeds: dict[str, np.ndarray],
    threads: int,
    provider: Resolution,
    rounds: int,
    slice_seconds: float,
    batches: Sequence[int] = BATCHES,
) -> dict[int, float]:
    """p50 latency of fp32 and every candidate at each batch size, measured in turns; fills speed-ups
    (paired per round: toolkit.runtime.bench.paired_speedup)."""
    from toolkit.runtime.bench import interleaved, paired_speedup

    sessions = {"fp32": session(fp32, threads, provider)}
    for c in candidates:
        sessions[c.name] = session(c.proto, threads, provider)
    base: dict[int, float] = {}
    for b in batches:
        rows = repeat_rows(feeds, b)
        calls = {name: (lambda s=s, rows=rows: s.run(None, rows)) for name, s in sessions.items()}
        times = interleaved(calls, rounds=rounds, slice_seconds=slice_seconds, warmup_seconds=0.1)
        base[b] = float(np.median(np.concatenate(times["fp32"])))
        for c in candidates:
            c.latency[b] = float(np.median(np.concatenate(times[c.name])))
            c.speedup[b] = paired_speedup(times["fp32"], times[c.name])
    return base


# --------------------------------------------------------------------------------------------- main
def quantize(
    model_path: str | Path,
    run: str | Path | None = None,
    data: str | None = None,
    mode: str = "auto",
    max_drop: float | None = None,
    calibration: str = "minmax",
    out: str | Path | None = None,
    force: bool = False,
    samples: int | None = None,
    threads: int | None = None,
    batches: Sequence[int] = BATCHES,
    provider: str = "CPUExecutionProvider",
    rounds: int = 7,
    slice_seconds: float = 0.08,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Quantize MODEL (see the module docstring). Returns the report (also quantize.json beside the model).
    report["written"] is the file written, or None (fp32 kept, or a forced mode refused: report["refused"])."""
    import onnx
    import onnxruntime as ort

    from toolkit import __version__
    from toolkit.io import write_bytes, write_json

    t0 = time.perf_counter()
    say = progress or (lambda _m: None)
    path = _resolve_model(model_path, run)
    if mode not in MODES:
        raise ToolkitError(f"unknown --mode {mode!r}; allowed: {', '.join(MODES)}")
    if calibration not in CALIBRATIONS:
        raise ToolkitError(f"unknown --calibration {calibration!r}; allowed: {', '.join(CALIBRATIONS)}")
    if max_drop is not None and not (-1 < max_drop < 1):  # negative: the variant must be better
        raise ToolkitError(f"--max-drop must be between -1 and 1 (got {max_drop})")
    # cpu|cuda|tensorrt: unknown -> ToolkitError; missing -> CPU, with the reason (strict: ToolkitError)
    resolved = resolve(provider)
    meta = read_metadata(path)
    if meta.get("quantization"):
        raise ToolkitError(
            f"{path} is already quantized ({meta['quantization'].get('mode')}); quantize the fp32 model"
        )
    if meta.get("role") not in ("model", "generator"):
        raise ToolkitError(
            f"{path} is the {meta.get('role')} graph; quantize the task's model.onnx "
            "(text models: quantize the token model; the in-graph tokenizer has nothing to quantize)"
        )
    recipe_q = (meta.get("recipe") or {}).get("quantize") or {}
    if samples is None:
        samples = int(recipe_q.get("calibration_samples") or DEFAULT_SAMPLES)
    if samples < 1:
        raise ToolkitError(f"--samples must be at least 1 (got {samples})")
    batches = batch_sizes(batches)
    max_drop = DEFAULT_MAX_DROP if max_drop is None else float(max_drop)
    threads = threads or os.cpu_count() or 1
    if out is not None:  # checked before the work, not after it
        out = Path(out)
        if out.suffix != ".onnx":
            raise ToolkitError(f"--out must name a .onnx file (got {out})")
        if out.resolve() == path.resolve():
            raise ToolkitError("--out must not overwrite the fp32 model")

    say("loading the validation and calibration data")
    d = quantization_inputs(meta, data, samples)
    fp32 = onnx.load(str(path))
    metric, direction = main_metric(meta, d.val.y)
    # TensorRT caches its engines next to the model; every session below shares the resolved providers.
    provider = Resolution(resolved.requested, for_model(resolved.entries, path), resolved.reason)
    ref_sess = session(fp32, threads, provider)
    fallback = resolved.reason or not_started(ref_sess, provider.providers[0])
    if fallback:
        warn(fallback)
    running = ref_sess.get_providers()[0]  # what every score and timing below really ran on
    gpu = running != CPU
    ref_out = run_all(ref_sess, d.val.feeds)
    base = score(meta, metric, ref_out, d.val.y, ref_out)

    if mode == "auto":
        modes = ["static", "dynamic"] + (["fp16"] if gpu else [])
    else:
        modes = [mode]
    candidates: list[Candidate] = []
    source = path.resolve()  # before _inside() changes the working directory
    with tempfile.TemporaryDirectory(prefix="toolkit-quantize-") as tmp, _inside(tmp):
        work = Path(tmp)
        say("pre-processing (shape inference, graph optimization)")
        pre = preprocess(source, work)

        def evaluate(c: Candidate, exclude: Sequence[str] = ()) -> Candidate:
            say(f"building {c.name}")
            try:
                c.proto, c.rewrites = build(c.mode, pre, work, d.calibration, calibration, exclude)
                if not low_precision_weights(c.proto):
                    raise ToolkitError(f"{c.mode} mode finds nothing to quantize in this graph")
                out = run_all(session(c.proto, threads, provider), d.val.feeds)
            except Exception as exc:  # a candidate the graph does not fit: reported, not fatal
                c.error = _first_line(exc)
                c.proto = None
                return c
            c.metric = score(meta, metric, out, d.val.y, ref_out)
            c.drop = drop_of(metric, direction, base, c.metric)
            c.passed_gate = bool(np.isfinite(c.metric)) and c.drop <= max_drop + 1e-12
            c.size = c.proto.ByteSize()
            c.excluded = list(exclude)
            return c

        for m in modes:
            candidates.append(evaluate(Candidate(m, m)))
        # None passes the gate: leave the most sensitive nodes in fp32 and try again.
        if not any(c.passed_gate for c in candidates):
            for c in [c for c in candidates if c.proto is not None and c.mode != "fp16"]:
                say(f"ranking {c.name}'s nodes by sensitivity")
                ranked = sensitive_nodes(pre, c.proto, d.val.feeds, provider)
                cap = max(1, len(ranked) // 4)
                for k in sorted({min(s, cap) for s in EXCLUDE_STEPS}):
                    if k > len(ranked):
                        break
                    retry = evaluate(Candidate(f"{c.mode} -{k} node{'s' * (k > 1)}", c.mode), ranked[:k])
                    candidates.append(retry)
                    if retry.passed_gate:
                        break

    built = [c for c in candidates if c.proto is not None]
    say("measuring latency")
    base_latency = (
        measure_speed(fp32, built, d.val.feeds, threads, provider, rounds, slice_seconds, batches)
        if built
        else {}
    )

    chosen, decision, refused = choose(candidates, mode, force, metric, direction, max_drop)
    if mode != "auto" and not built:
        raise ToolkitError(f"--mode {mode} cannot quantize {path}: {candidates[0].error}")

    written = None
    chosen_to_write = None if refused else chosen
    if chosen_to_write is not None:
        suffix = ".fp16.onnx" if chosen_to_write.mode == "fp16" else ".int8.onnx"
        out_path = out if out is not None else path.with_name(path.name.removesuffix(".onnx") + suffix)
        fmt, weights, activations = MODE_FORMATS[chosen_to_write.mode]
        doc = copy.deepcopy(meta)
        doc["quantization"] = {
            "mode": chosen_to_write.mode,
            "format": fmt,
            "weights": weights,
            "activations": activations,
            "calibration": {"method": calibration, "samples": d.calibration_samples, "split": "train"}
            if chosen_to_write.mode == "static"
            else None,
            "excluded_nodes": chosen_to_write.excluded,
            "rewrites": chosen_to_write.rewrites,
            "metric": metric,
            "direction": direction,
            "drop_kind": "absolute" if direction == "max" else "relative",
            "fp32": base,
            "value": chosen_to_write.metric,
            "drop": chosen_to_write.drop,
            "max_drop": max_drop,
            "passed": chosen_to_write.passed_gate,
            "validation_samples": d.val.samples,
            "speedup": {f"batch_{b}": s for b, s in chosen_to_write.speedup.items()},
            "p50_ms": {f"batch_{b}": v for b, v in chosen_to_write.latency.items()},
            "threads": threads,
            "provider": running,
            "source_model": path.name,
            "onnxruntime": ort.__version__,
            "toolkit": __version__,
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        proto = chosen_to_write.proto
        onnx.helper.set_model_props(
            proto, {**{p.key: p.value for p in proto.metadata_props}, "toolkit": json.dumps(doc)}
        )
        write_bytes(out_path, proto.SerializeToString())
        write_json(out_path.with_suffix(".json"), doc)
        written = str(out_path)

    report = {
        "schema": REPORT_SCHEMA,
        "model": str(path),
        "task": meta["task"],
        "mode": mode,
        "metric": metric,
        "direction": direction,
        "drop_kind": "absolute" if direction == "max" else "relative",
        "max_drop": max_drop,
        "data": {
            "source": d.source,
            "validation_samples": d.val.samples,
            "calibration_samples": d.calibration_samples,
        },
        "calibration": calibration,
        "threads": threads,
        "batches": batches,
        "provider": running,
        "provider_fallback": fallback,
        "fp32": {
            "metric": base,
            "p50_ms": {str(b): v for b, v in base_latency.items()},
            "bytes": path.stat().st_size,
        },
        "candidates": [c.row() for c in candidates],
        "chosen": chosen_to_write.name if chosen_to_write else None,
        "decision": decision,
        "refused": refused,
        "written": written,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    if not refused:  # a refused forced mode writes nothing at all
        report_file = path.with_name("quantize.json")
        write_json(report_file, report)
        report["report"] = str(report_file)
    return report


def choose(
    candidates: Sequence[Candidate], mode: str, force: bool, metric: str, direction: str, max_drop: float
) -> tuple[Candidate | None, str, str | None]:
    """(the candidate to write or None, the decision in words, the refusal message or None).

    auto: the candidate with the best speed-up (geometric over the batch sizes) among those that pass
    the gate AND are faster than fp32 (Candidate.faster); none -> fp32 is kept. A forced mode:
    the first try of that mode within the budget; when every try is over budget, the least bad one is
    refused (or written, marked as failing the gate, with force)."""
    built = [c for c in candidates if c.proto is not None]
    passing = [c for c in built if c.passed_gate]
    if mode == "auto":
        eligible = [c for c in passing if c.faster]
        if eligible:
            best = max(eligible, key=lambda c: math.prod(c.speedup.values()))
            return best, f"kept {best.name}", None
        if not built:
            why = "no candidate could be built for this graph"
        elif not passing:
            worst = min(built, key=lambda c: c.drop if c.drop is not None else math.inf)
            why = (
                f"no candidate kept {metric} within the budget "
                f"(best: {worst.name}, drop {_fmt_drop(worst.drop, direction)})"
            )
        else:
            why = "every candidate within the accuracy budget is slower than fp32"
        return None, f"kept fp32: {why}", None
    if not built:
        return None, "nothing built", None
    if passing:
        return passing[0], f"kept {passing[0].name}", None
    least = min(built, key=lambda c: c.drop if c.drop is not None else math.inf)
    if force:
        return least, f"kept {least.name} (forced, over budget)", None
    refused = (
        f"--mode {mode}: {metric} drops by {_fmt_drop(least.drop, direction)} "
        f"(budget {_fmt_drop(max_drop, direction)}); nothing written (--force writes it anyway)"
    )
    return least, "refused: " + refused, refused


@contextlib.contextmanager
def _inside(folder: str) -> Iterator[None]:
    """Work inside `folder`: onnxruntime's quantization tools write helper files (external-data files with
    uuid names) into the current directory, which must not be the user's."""
    before = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


def _fmt_drop(drop: float | None, direction: str) -> str:
    if drop is None:
        return "n/a"
    return f"{drop * 100:+.2f} points" if direction == "max" else f"{drop * 100:+.2f}%"


def _resolve_model(model_path: str | Path, run: str | Path | None) -> Path:
    path = Path(model_path) if model_path is not None else None
    if path is None or (path.is_dir() and not str(path).endswith(".onnx")):
        base = path if path is not None else Path(run)  # type: ignore[arg-type]
        path = base / "model.onnx"
    if not path.is_file():
        raise ToolkitError(f"model not found: {path} (export the run first: toolkit export RUN_DIR)")
    return path


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]
