"""`quantize(MODEL)`: the quantize steps in order, from the arguments to the written model and report.

Check the arguments, read the validation and calibration rows, build each candidate, gate it, retry with
sensitive nodes in fp32, time the ones built, choose, write. No torch anywhere.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolkit.errors import ToolkitError, one_line
from toolkit.io import write_json
from toolkit.runtime.bench import batch_sizes
from toolkit.runtime.evalset import QuantizationInputs, quantization_inputs
from toolkit.runtime.model import read_metadata
from toolkit.runtime.providers import CPU, Resolution, for_model, not_started, resolve, warn
from toolkit.runtime.quantize import report as rep
from toolkit.runtime.quantize.build import MODES, build, inside, low_precision_weights, preprocess
from toolkit.runtime.quantize.calibration import CALIBRATIONS, sample_count
from toolkit.runtime.quantize.gate import DEFAULT_MAX_DROP, Candidate, Gate, choose, main_metric
from toolkit.runtime.quantize.sensitivity import exclusion_steps, sensitive_nodes
from toolkit.runtime.quantize.session import run_all, session
from toolkit.runtime.quantize.speed import BATCHES, measure_speed


@dataclass
class Settings:
    """The checked arguments of one quantize call."""

    path: Path
    meta: dict[str, Any]
    mode: str
    calibration: str
    max_drop: float
    samples: int
    threads: int
    batches: list[int]
    out: Path | None
    provider: Resolution


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
    register: str | None = None,
) -> dict[str, Any]:
    """Quantize MODEL (see toolkit.runtime.quantize). Returns the report (also quantize.json beside the
    model). report["written"] is the file written, or None (fp32 kept, or a forced mode refused:
    report["refused"]). `register=NAME` registers the written model in MLflow's model registry as a new
    version of NAME with alias int8 (or fp16): report["registered"]."""
    import onnx

    t0 = time.perf_counter()
    say = progress or (lambda _m: None)
    if register is not None:
        from toolkit.tracking import check_kinds

        check_kinds(["mlflow"])  # said before the work, not after
    s = _settings(model_path, run, mode, max_drop, calibration, out, samples, threads, batches, provider)
    say("loading the validation and calibration data")
    d = quantization_inputs(s.meta, data, s.samples)
    fp32 = onnx.load(str(s.path))
    # TensorRT caches its engines next to the model; every session below shares the resolved providers.
    resolved = Resolution(s.provider.requested, for_model(s.provider.entries, s.path), s.provider.reason)
    ref_sess = session(fp32, s.threads, resolved)
    fallback = s.provider.reason or not_started(ref_sess, resolved.providers[0])
    if fallback:
        warn(fallback)
    running = ref_sess.get_providers()[0]  # what every score and timing below really ran on
    metric, direction = main_metric(s.meta, d.val.y)
    gate = Gate(s.meta, metric, direction, d.val.y, run_all(ref_sess, d.val.feeds), s.max_drop)
    modes = (["static", "dynamic"] + (["fp16"] if running != CPU else [])) if mode == "auto" else [mode]
    candidates = _candidates(s, d, gate, modes, resolved, say)

    built = [c for c in candidates if c.proto is not None]
    say("measuring latency")
    base_latency = (
        measure_speed(fp32, built, d.val.feeds, s.threads, resolved, rounds, slice_seconds, s.batches)
        if built
        else {}
    )
    decision = choose(candidates, mode, force, metric, direction, s.max_drop)
    if mode != "auto" and not built:
        raise ToolkitError(f"--mode {mode} cannot quantize {s.path}: {candidates[0].error}")
    ctx = rep.Context(
        s.path, s.meta, mode, s.calibration, gate, d.source, d.val.samples, d.calibration_samples
    )
    ctx.threads, ctx.batches, ctx.provider, ctx.fallback = s.threads, s.batches, running, fallback
    chosen, _, refused = decision
    written = rep.write_model(ctx, chosen, s.out) if chosen is not None and not refused else None
    report = rep.report(ctx, candidates, base_latency, decision, written, time.perf_counter() - t0)
    if register is not None and written is not None:
        from toolkit.tracking.registry import register as register_model

        alias = "fp16" if chosen.mode == "fp16" else "int8"
        report["registered"] = register_model(
            Path(written), register, alias, Path(run) if run else s.path.parent
        )
    if not refused:  # a refused forced mode writes nothing at all
        report_file = s.path.with_name("quantize.json")
        write_json(report_file, report)
        report["report"] = str(report_file)
    return report


def _settings(
    model_path: str | Path,
    run: str | Path | None,
    mode: str,
    max_drop: float | None,
    calibration: str,
    out: str | Path | None,
    samples: int | None,
    threads: int | None,
    batches: Sequence[int],
    provider: str,
) -> Settings:
    """Every argument checked before any work: a bad one is a one-line ToolkitError."""
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
    samples = sample_count(meta, samples)
    sizes = batch_sizes(batches)
    if out is not None:  # checked before the work, not after it
        out = Path(out)
        if out.suffix != ".onnx":
            raise ToolkitError(f"--out must name a .onnx file (got {out})")
        if out.resolve() == path.resolve():
            raise ToolkitError("--out must not overwrite the fp32 model")
    drop = DEFAULT_MAX_DROP if max_drop is None else float(max_drop)
    return Settings(
        path, meta, mode, calibration, drop, samples, threads or os.cpu_count() or 1, sizes, out, resolved
    )


def _candidates(
    s: Settings, d: QuantizationInputs, gate: Gate, modes: list[str], provider: Resolution, say: Callable
) -> list[Candidate]:
    """Build and gate each mode; when none passes, retry with the most sensitive nodes left in fp32."""
    candidates: list[Candidate] = []
    source = s.path.resolve()  # before inside() changes the working directory
    with tempfile.TemporaryDirectory(prefix="toolkit-quantize-") as tmp, inside(tmp):
        work = Path(tmp)
        say("pre-processing (shape inference, graph optimization)")
        pre = preprocess(source, work)

        def evaluate(c: Candidate, exclude: Sequence[str] = ()) -> Candidate:
            say(f"building {c.name}")
            try:
                c.proto, c.rewrites = build(c.mode, pre, work, d.calibration, s.calibration, exclude)
                if not low_precision_weights(c.proto):
                    raise ToolkitError(f"{c.mode} mode finds nothing to quantize in this graph")
                outputs = run_all(session(c.proto, s.threads, provider), d.val.feeds)
            except Exception as exc:  # a candidate the graph does not fit: reported, not fatal
                c.error, c.proto = _why(exc, pre), None
                return c
            gate.judge(c, outputs)
            c.size, c.excluded = c.proto.ByteSize(), list(exclude)
            return c

        candidates = [evaluate(Candidate(m, m)) for m in modes]
        if any(c.passed_gate for c in candidates):
            return candidates
        # None passes the gate: leave the most sensitive nodes in fp32 and try again.
        for c in [c for c in candidates if c.proto is not None and c.mode != "fp16"]:
            say(f"ranking {c.name}'s nodes by sensitivity")
            ranked = sensitive_nodes(pre, c.proto, d.val.feeds, provider)
            for k in exclusion_steps(ranked):
                retry = evaluate(Candidate(f"{c.mode} -{k} node{'s' * (k > 1)}", c.mode), ranked[:k])
                candidates.append(retry)
                if retry.passed_gate:
                    break
    return candidates


def _why(exc: Exception, model: Path) -> str:
    """A candidate's failure in one line; a graph of ai.onnx.ml operators (scikit-learn) says so."""
    import onnx

    text = one_line(exc, with_type=True)
    proto = onnx.load(str(model), load_external_data=False)
    if any(n.domain == "ai.onnx.ml" for n in proto.graph.node):
        return f"ai.onnx.ml operators (scikit-learn) are not quantizable by onnxruntime ({text})"
    return text


def _resolve_model(model_path: str | Path, run: str | Path | None) -> Path:
    path = Path(model_path) if model_path is not None else None
    if path is None or (path.is_dir() and not str(path).endswith(".onnx")):
        base = path if path is not None else Path(run)  # type: ignore[arg-type]
        path = base / "model.onnx"
    if not path.is_file():
        raise ToolkitError(f"model not found: {path} (export the run first: toolkit export RUN_DIR)")
    return path
