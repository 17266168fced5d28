"""`validate(MODEL)`: prove, with onnxruntime alone, that an exported model is what its metadata says.

The checks, in order (each passes, fails or is skipped with a reason; any failure fails the validation):

- metadata: the document fits its schema (toolkit.runtime.schema); sidecar: model.json, if present, is the
  same document; signature: the graph's inputs and outputs are the ones the metadata declares.
- per available execution provider: load; run (the test split through the model in batches of BATCH:
  outputs finite, shapes as declared); batch sizes (the first rows at batch sizes 1, 3 and 17 give the
  same outputs: the batch axis is really dynamic); metrics (the task's test metrics, computed from the
  outputs by toolkit.metrics.TASK_METRICS as training computed them, equal the recorded ones within
  ACCURACY_ATOL or ERROR_RTOL).
- with a run directory: checkpoint (its best.pt is the one exported) and parity (the PyTorch checkpoint
  gives the same outputs on the test split; skipped with a note when torch is not installed).

The test split is rebuilt from the metadata alone (toolkit.runtime.evalset): the recipe's data source,
fractions and seed, and the preprocessing recorded in the inputs, applied, never refitted. `data` points at
the same data elsewhere (a moved CSV, or a copy on a machine without the builtin datasets' packages).

A check that cannot start (no model file, no metadata, unreadable data, a run without checkpoint) is the
user's input, not the model: ToolkitError. The report is written to validate.json beside the model.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.errors import ToolkitError
from toolkit.metrics import ERROR_METRICS, TASK_METRICS
from toolkit.runtime import schema
from toolkit.runtime.evalset import Inputs, evaluation_inputs
from toolkit.runtime.freshness import stale_checkpoint
from toolkit.runtime.model import OnnxModel, available_providers, read_metadata
from toolkit.runtime.providers import CPU, resolve, warn

# Recorded metrics must be reproduced: accuracy-like ones (fractions) within 0.1 point, error metrics
# (in the data's units) within a relative 1e-3.
ACCURACY_ATOL = 1e-3
ERROR_RTOL = 1e-3
# Outputs compared across batch sizes and with PyTorch: the export's parity tolerance.
ATOL, RTOL = 1e-4, 1e-3
QUANT_BATCH_ATOL = 0.05  # quantized variants across batch sizes: 5% of the output's largest magnitude
BATCH = 64  # the test split runs in batches of this size
PROBE_BATCHES = (1, 3, 17)  # then its first rows at these sizes: a frozen batch axis cannot pass


# --------------------------------------------------------------------------------------------- metrics
def compare_metrics(
    got: dict[str, float], expected: dict[str, Any] | None, slack: float = 0.0
) -> dict[str, dict[str, Any]]:
    """Each computed metric next to the recorded one: delta, tolerance and whether it is within it.
    `slack` widens the tolerance (a quantized variant may differ by its accuracy budget: absolute for
    accuracy-like metrics, relative for error metrics)."""
    rows = {}
    for name, value in got.items():
        want = (expected or {}).get(name)
        if not isinstance(want, (int, float)) or isinstance(want, bool):
            rows[name] = {"expected": None, "got": value, "delta": None, "tolerance": None, "passed": None}
            continue
        tol = (ERROR_RTOL + slack) * abs(want) if name in ERROR_METRICS else ACCURACY_ATOL + slack
        delta = value - want
        same_nan = np.isnan(value) and np.isnan(want)
        ok = bool(same_nan or abs(delta) <= tol + 1e-12)
        rows[name] = {"expected": want, "got": value, "delta": delta, "tolerance": tol, "passed": ok}
    return rows


# --------------------------------------------------------------------------------------------- checks
class Checks:
    """The list of checks a validation ran; each one pass, fail or skip, with one line of detail."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def add(self, name: str, status: str, detail: str, provider: str | None = None) -> bool:
        self.items.append({"check": name, "provider": provider, "status": status, "detail": detail})
        return status != "fail"

    @property
    def passed(self) -> bool:
        return all(c["status"] != "fail" for c in self.items)


def validate(
    model_path: str | Path,
    run_dir: str | Path | None = None,
    data: str | None = None,
    provider: str | Sequence[str] | None = None,
) -> dict[str, Any]:
    """Validate MODEL (see the module docstring); returns the report, also written to validate.json.

    `provider`: cpu, cuda, tensorrt (or a list) instead of every available provider. One that is missing
    or does not start is a skipped load check with the reason, and the model is validated on CPU instead
    (strict, TOOLKIT_PROVIDER_STRICT=1: a one-line error, or a failed load check)."""
    from toolkit.io import write_json

    t0 = time.perf_counter()
    path = Path(model_path)
    meta = read_metadata(path)  # a missing, damaged or foreign file, or a newer schema: ToolkitError
    ckpt_path = checkpoint_path(run_dir, meta) if run_dir is not None else None
    checks = Checks()
    errors = schema.check(meta)
    well_formed = checks.add(
        "metadata",
        "fail" if errors else "pass",
        "; ".join(errors[:3]) + (f" (and {len(errors) - 3} more)" if len(errors) > 3 else "")
        if errors
        else f"fits {meta['schema']}",
    )
    _check_sidecar(path, meta, checks)
    inputs = evaluation_inputs(meta, data) if well_formed else None
    targets = _targets(provider, checks)  # [(onnxruntime name, what OnnxModel is asked for)]
    runs = _check_providers(path, meta, inputs, targets, provider is not None, well_formed, checks)

    parity = None
    _check_checkpoint(path, ckpt_path, meta, checks)
    if ckpt_path is not None:
        if runs.reference is None or inputs is None:
            checks.add("parity", "skip", "no outputs to compare: the model did not run")
        else:
            parity = torch_parity(meta, ckpt_path, inputs, runs.reference, checks)

    report_file = report_path(path)
    report = {
        "model": str(path),
        "report": str(report_file),
        "passed": checks.passed,
        "schema": meta.get("schema"),
        "task": meta.get("task"),
        "role": meta.get("role"),
        "run": str(run_dir) if run_dir is not None else None,
        "data": {"source": inputs.source, "samples": inputs.samples} if inputs is not None else None,
        "providers": runs.providers,
        "checks": checks.items,
        "main_metric": schema.dig(meta, "metrics", "main_metric"),
        "metrics": runs.metrics,
        "parity": parity,
        "tolerance": _tolerance(),
        "versions": _versions(),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    try:
        write_json(report_file, report)
    except OSError as exc:
        raise ToolkitError(f"cannot write {report_file}: {exc.strerror or exc}") from None
    return report


@dataclass
class ProviderRuns:
    """What the per-provider checks found: the providers tried, their metrics, the outputs for parity."""

    providers: list[str]
    metrics: dict[str, Any] = field(default_factory=dict)
    reference: dict[str, np.ndarray] | None = None  # the outputs compared with PyTorch: the CPU's if it ran


def _check_providers(
    path: Path,
    meta: dict[str, Any],
    inputs: Inputs | None,
    targets: list[tuple[str, str]],
    explicit: bool,
    well_formed: bool,
    checks: Checks,
) -> ProviderRuns:
    """Per provider: load, then (once) the signature, then run, batch sizes and metrics. A provider asked
    for that does not start adds the CPU as a target (its fall-back)."""
    runs = ProviderRuns([name for name, _ in targets])
    signed = not well_formed  # the signature is checked once, on the first session that starts
    for provider, spec in targets:  # (a target may be appended: the CPU fall-back of one that did not start)
        try:
            model = OnnxModel(path, providers=spec)
        except ToolkitError as exc:
            checks.add("load", "fail", str(exc), provider)
            continue
        if provider not in model.providers:  # e.g. the CUDA provider installed on a machine without a GPU
            checks.add(
                "load", "skip", f"{provider} did not start here (onnxruntime fell back to CPU)", provider
            )
            if explicit and CPU not in runs.providers:
                targets.append((CPU, CPU))
                runs.providers.append(CPU)
            continue
        checks.add("load", "pass", "session on " + ", ".join(_short(p) for p in model.providers), provider)
        if not signed:
            _check_signature(model, meta, checks)
            signed = True
        if inputs is None:
            continue
        outputs = _check_run(model, meta, inputs, checks, provider)
        if outputs is None:
            continue
        if runs.reference is None or provider == "CPUExecutionProvider":
            runs.reference = outputs
        _check_batch_sizes(model, inputs, outputs, checks, provider)
        runs.metrics[provider] = _check_metrics(meta, inputs, outputs, checks, provider)
    return runs


def _tolerance() -> dict[str, Any]:
    return {
        "accuracy_like_atol": ACCURACY_ATOL,
        "error_metric_rtol": ERROR_RTOL,
        "error_metrics": sorted(ERROR_METRICS),
        "outputs": {"atol": ATOL, "rtol": RTOL},
    }


def _versions() -> dict[str, str]:
    import onnxruntime as ort

    from toolkit import __version__

    return {"toolkit": __version__, "onnxruntime": ort.__version__}


def _targets(provider: str | Sequence[str] | None, checks: Checks) -> list[tuple[str, str]]:
    """The providers to validate on: every available one by default; else the requested ones, each that is
    missing replaced by its CPU fall-back (with a skipped load check saying why)."""
    if provider is None:
        return [(p, p) for p in available_providers()]
    targets: list[tuple[str, str]] = []
    for spec in [provider] if isinstance(provider, str) else provider:
        resolved = resolve(spec)  # unknown: ToolkitError; missing: CPU (strict: ToolkitError)
        if resolved.reason:
            warn(resolved.reason)
            checks.add("load", "skip", resolved.reason, resolved.requested)
        name = resolved.providers[0]
        if name not in (t[0] for t in targets):
            targets.append((name, name if resolved.reason else spec))
    return targets


def report_path(model_path: Path) -> Path:
    """validate.json beside model.onnx; NAME.validate.json beside any other NAME.onnx (model.int8.onnx),
    so validating a variant does not overwrite the report of the model it came from."""
    stem = model_path.name.removesuffix(".onnx")
    return model_path.with_name("validate.json" if stem == "model" else f"{stem}.validate.json")


def checkpoint_path(run_dir: str | Path, meta: dict[str, Any]) -> Path:
    """RUN_DIR's checkpoint file (the one the metadata names, best.pt by default); ToolkitError if absent."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ToolkitError(f"run directory not found: {run_dir}")
    name = schema.dig(meta, "provenance", "checkpoint", "file") or "best.pt"
    path = run_dir / name
    if not path.is_file():
        raise ToolkitError(
            f"checkpoint not found: {path} (is this a run directory written by `toolkit train`?)"
        )
    return path


def _short(provider: str) -> str:
    return provider.removesuffix("ExecutionProvider")


def _check_sidecar(path: Path, meta: dict[str, Any], checks: Checks) -> None:
    sidecar = path.with_suffix(".json")
    if not sidecar.is_file():
        checks.add("sidecar", "skip", f"no {sidecar.name} beside the model (optional)")
        return
    try:
        same = json.loads(sidecar.read_text()) == meta
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        checks.add("sidecar", "fail", f"{sidecar.name} is not readable JSON ({exc.__class__.__name__})")
        return
    if same:
        checks.add("sidecar", "pass", f"{sidecar.name} holds the same document")
    else:
        checks.add("sidecar", "fail", f"{sidecar.name} differs from the embedded metadata: export again")


def _check_signature(model: OnnxModel, meta: dict[str, Any], checks: Checks) -> None:
    """The graph's ports are the metadata's: same names in order, dtypes and shapes (symbolic dims too)."""
    problems = []
    for kind, graph in (("inputs", model.inputs), ("outputs", model.outputs)):
        declared = meta.get(kind) or []
        names = [p.get("name") for p in declared]
        if [s.name for s in graph] != names:
            problems.append(f"{kind} are {[s.name for s in graph]} in the graph, {names} in the metadata")
            continue
        for spec, port in zip(graph, declared):
            if {"object": "string"}.get(spec.dtype, spec.dtype) != port.get("dtype"):
                problems.append(
                    f"{spec.name!r} is {spec.dtype} in the graph, {port.get('dtype')} in the metadata"
                )
            want = port.get("shape") or []
            same = len(spec.shape) == len(want) and all(
                g == w or (g is None and isinstance(w, str)) for g, w in zip(spec.shape, want)
            )
            if not same:
                problems.append(
                    f"{spec.name!r} has shape {_dims(spec.shape)} in the graph, {_dims(want)} in the metadata"
                )
    if problems:
        checks.add("signature", "fail", "; ".join(problems))
    else:
        described = ", ".join(f"{s.name} {_dims(s.shape)}" for s in [*model.inputs, *model.outputs])
        checks.add("signature", "pass", f"graph ports match the metadata: {described}")


def _dims(shape: Any) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def _check_run(
    model: OnnxModel, meta: dict[str, Any], inputs: Inputs, checks: Checks, provider: str
) -> dict[str, np.ndarray] | None:
    """The whole input set in batches of BATCH; outputs finite, one row per sample, declared widths."""
    if any(s.dtype == "object" for s in model.inputs):
        checks.add("run", "skip", "the model takes raw strings; validate the token-id model", provider)
        return None
    if not inputs.samples:
        checks.add("run", "skip", "the recipe holds out no test split (data.test_fraction 0)", provider)
        return None
    try:
        outputs = model.run_batches(inputs.feeds, BATCH)
    except ToolkitError as exc:
        checks.add("run", "fail", f"batches of {BATCH}: {exc}", provider)
        return None
    problems = []
    for port in meta["outputs"]:
        value = outputs.get(port["name"])
        if value is None:
            problems.append(f"no output {port['name']!r}")
            continue
        want = [inputs.samples if isinstance(d, str) and i == 0 else d for i, d in enumerate(port["shape"])]
        fits = value.ndim == len(want) and all(
            isinstance(w, str) or w == g for w, g in zip(want, value.shape)
        )
        if not fits:
            problems.append(f"{port['name']!r} has shape {list(value.shape)}, declared {port['shape']}")
        elif value.dtype.kind in "fc" and not np.isfinite(value).all():
            problems.append(f"{port['name']!r} has {int((~np.isfinite(value)).sum())} NaN or infinite values")
        value_range = (port.get("image") or {}).get("value_range")
        if value_range and value.size and (value.min() < value_range[0] or value.max() > value_range[1]):
            problems.append(f"{port['name']!r} leaves its declared range {value_range}")
    if problems:
        checks.add("run", "fail", "; ".join(problems), provider)
        return None
    checks.add(
        "run", "pass", f"{inputs.samples} samples in batches of {BATCH}: finite, shapes as declared", provider
    )
    return outputs


def quantization_slack(meta: dict[str, Any]) -> float:
    """The accuracy budget a quantized variant was gated with (0 for an fp32 model)."""
    q = meta.get("quantization")
    value = q.get("max_drop") if isinstance(q, dict) else None
    return max(0.0, float(value)) if isinstance(value, (int, float)) else 0.0


def meta_of(model: OnnxModel) -> dict[str, Any]:
    return model.meta if isinstance(model.meta, dict) else {}


def _check_batch_sizes(
    model: OnnxModel, inputs: Inputs, outputs: dict[str, np.ndarray], checks: Checks, provider: str
) -> None:
    """The first rows again at other batch sizes: same outputs, or the batch axis is not really dynamic."""
    first = min(inputs.samples, BATCH)  # the batch size of the run being compared with
    sizes = [b for b in PROBE_BATCHES if b < first]
    rows = min(inputs.samples, max(sizes, default=1))
    if not sizes:
        checks.add("batch sizes", "skip", "one sample only: nothing to vary", provider)
        return
    head = {k: v[:rows] for k, v in inputs.feeds.items()}
    quantized = bool(meta_of(model).get("quantization"))
    for b in sizes:
        try:
            got = model.run_batches(head, b)
        except ToolkitError as exc:
            checks.add("batch sizes", "fail", f"batch {b}: {exc}", provider)
            return
        for name, value in got.items():
            ref = outputs[name][:rows]
            if value.dtype.kind not in "fciub":  # labels as strings (an ai.onnx.ml classifier): equal
                if not np.array_equal(value, ref):
                    checks.add("batch sizes", "fail", f"{name!r} at batch {b} gives other labels", provider)
                    return
                continue
            err = np.abs(value.astype(np.float64) - ref)
            # A quantized variant's activations may be scaled per batch (dynamic INT8): outputs then move
            # with the batch's content, by a fraction of their range, never by a frozen axis's error.
            atol = QUANT_BATCH_ATOL * float(np.abs(outputs[name]).max()) if quantized else ATOL
            if not (err <= atol + RTOL * np.abs(ref)).all():
                checks.add(
                    "batch sizes",
                    "fail",
                    f"{name!r} at batch {b} differs from batch {min(BATCH, inputs.samples)} by up to "
                    f"{float(err.max()):.3g} (allowed: atol {ATOL:g} + rtol {RTOL:g})",
                    provider,
                )
                return
    shown = ", ".join(map(str, sizes))
    checks.add("batch sizes", "pass", f"first {rows} samples at batch {shown}: same outputs", provider)


def _check_metrics(
    meta: dict[str, Any], inputs: Inputs, outputs: dict[str, np.ndarray], checks: Checks, provider: str
) -> dict[str, Any]:
    fn = TASK_METRICS[meta["task"]].score if meta["task"] in TASK_METRICS else None
    if fn is None or inputs.y is None:
        checks.add("metrics", "skip", f"the {meta['task']} task has no test metrics to reproduce", provider)
        return {}
    if meta["role"] != "model":
        checks.add("metrics", "skip", f"the {meta['role']} has no test metrics of its own", provider)
        return {}
    recorded = meta.get("metrics")
    try:
        got = fn(outputs, inputs.y, meta)
    except KeyError as exc:  # the task's output is not among the graph's
        checks.add("metrics", "fail", f"a {meta['task']} model needs output {exc}", provider)
        return {}
    slack = quantization_slack(meta)
    rows = compare_metrics(got, recorded, slack)
    compared = {k: r for k, r in rows.items() if r["passed"] is not None}
    if not compared:
        checks.add("metrics", "skip", "the metadata records no test metrics to compare with", provider)
        return rows
    expected_n = schema.dig(recorded, "samples", "test")
    if isinstance(expected_n, int) and expected_n != inputs.samples:
        checks.add(
            "metrics",
            "fail",
            f"the rebuilt test split has {inputs.samples} samples, training had {expected_n}: "
            "the data differs from the data the model was trained on",
            provider,
        )
        return rows
    bad = [k for k, r in compared.items() if not r["passed"]]
    main = schema.dig(recorded, "main_metric")
    if bad:
        shown = ", ".join(
            f"{k} {compared[k]['got']:.4g} (recorded {compared[k]['expected']:.4g})" for k in bad
        )
        checks.add("metrics", "fail", f"{shown} on {inputs.samples} test samples", provider)
    else:
        key = main if main in compared else next(iter(compared))
        r = compared[key]
        checks.add(
            "metrics",
            "pass",
            f"{len(compared)} metrics reproduced on {inputs.samples} test samples "
            f"({key} {r['got']:.4g}, recorded {r['expected']:.4g}, delta {r['delta']:.2g})"
            + (f"; quantized: tolerance widened by its budget {slack:g}" if slack else ""),
            provider,
        )
    return rows


def _check_checkpoint(path: Path, ckpt_path: Path | None, meta: dict[str, Any], checks: Checks) -> None:
    """The checkpoint (--run's, else the one beside the model) is the one the model was exported from."""
    want = schema.dig(meta, "provenance", "checkpoint", "sha256")
    if not want:
        if ckpt_path is not None:
            checks.add("checkpoint", "skip", "the metadata records no checkpoint hash")
        return
    beside = path.with_name(schema.dig(meta, "provenance", "checkpoint", "file") or "best.pt")
    target = ckpt_path if ckpt_path is not None else beside
    if not target.is_file():
        return  # a model away from its run: nothing to compare with
    stale = stale_checkpoint(path, meta, target)
    if stale:
        checks.add("checkpoint", "fail", stale)
    else:
        checks.add("checkpoint", "pass", f"{target} is the checkpoint exported (sha256 {want[:12]})")


# --------------------------------------------------------------------------------------------- parity
def torch_parity(
    meta: dict[str, Any],
    ckpt_path: Path,
    inputs: Inputs,
    onnx_outputs: dict[str, np.ndarray],
    checks: Checks,
) -> dict[str, Any] | None:
    """The PyTorch checkpoint, wrapped as toolkit.export wraps it (toolkit.runtime.pytorch), on the same
    inputs: every output within atol + rtol * |torch|. Skipped when PyTorch is not installed."""
    from toolkit.runtime import pytorch  # the one door to the training side; it imports torch when called

    try:
        torch_outputs = pytorch.checkpoint_outputs(
            ckpt_path, meta["task"], meta["role"], inputs.feeds, inputs.samples
        )
    except pytorch.TorchMissing:
        checks.add("parity", "skip", f"PyTorch is not installed ({pytorch.INSTALL} to compare with the run)")
        return None
    except ToolkitError as exc:  # the run is not the one this model came from
        checks.add("parity", "fail", str(exc))
        return None
    if not torch_outputs:
        checks.add("parity", "skip", f"the run exports no {meta['role']} to compare with")
        return None
    quant = meta.get("quantization")
    figures, worst = {}, None
    for name, ref in torch_outputs.items():
        ref = ref.astype(np.float64)
        err = np.abs(onnx_outputs[name].astype(np.float64) - ref)
        used = float((err / (ATOL + RTOL * np.abs(ref))).max()) if err.size else 0.0
        figures[name] = {"max_abs": float(err.max()) if err.size else 0.0, "tolerance_used": used}
        if not used <= 1.0 and worst is None:
            worst = name
    result = {"atol": ATOL, "rtol": RTOL, "samples": inputs.samples, "outputs": figures}
    summary = ", ".join(f"{k} {v['max_abs']:.2g}" for k, v in figures.items())
    if quant:  # INT8/FP16 outputs differ from PyTorch by design; quantize gated the metric instead
        checks.add(
            "parity",
            "skip",
            f"{quant.get('mode')} variant: max abs difference from PyTorch {summary} by design; its "
            f"{quant.get('metric')} drop {quant.get('drop', 0):+.3g} was gated by toolkit quantize "
            f"(budget {quant.get('max_drop')})",
        )
    elif worst is not None:
        checks.add(
            "parity",
            "fail",
            f"{worst!r} differs from PyTorch by up to {figures[worst]['max_abs']:.3g} on {inputs.samples} "
            f"samples (allowed: atol {ATOL:g} + rtol {RTOL:g})",
        )
    else:
        checks.add("parity", "pass", f"equals PyTorch on {inputs.samples} samples (max abs error {summary})")
    return result
