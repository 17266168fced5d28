"""Export a run to one self-describing ONNX file, proven equal to PyTorch before it is written.

`export_run(RUN_DIR)` rebuilds the best checkpoint, wraps it so that the graph holds what a runtime would
otherwise have to re-implement (softmax, target de-standardization, the anomaly score, pixel scaling), and
exports it with named inputs and outputs and a dynamic batch axis (sequence models: a dynamic sequence axis
too). The result is then run with onnxruntime at batch sizes and sequence lengths other than the traced
ones and compared with PyTorch on every output; any mismatch is a ToolkitError and nothing is written.

The metadata key `toolkit` holds one JSON document (schema SCHEMA) with everything a runtime needs and
everything a reader wants to know: inputs with their preprocessing, outputs with their meaning, labels,
thresholds, the resolved recipe, the test metrics, the parity figures and provenance. model.json beside
the model holds the same document, for runtimes whose bindings cannot read ONNX metadata.

What differs by task is one entry in SIGNATURES: a function that wraps the model and names its ports.
Exporters are tried in the order of EXPORTERS (TorchScript, then dynamo) and the first whose graph passes
every check is kept; which one it was is recorded (provenance.exporter).
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import inspect
import io
import json
import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from toolkit.errors import ToolkitError, one_line
from toolkit.runtime.rewrite import for_export as rewrite_for_export
from toolkit.runtime.schema import SCHEMA  # one definition, shared with the torch-free readers

DEFAULT_OPSET = 18  # both exporters write it natively (dynamo: 18 and up); onnxruntime >= 1.14 runs it
MIN_OPSET = 13  # the TorchScript exporter's LSTM/GRU and slicing need dynamic-shape ops from 13 on
STANDARD_DOMAINS = ("", "ai.onnx", "ai.onnx.ml")

# Parity: every output, at every probed shape, within |onnx - torch| <= ATOL + RTOL * |torch|.
ATOL, RTOL = 1e-4, 1e-3
BATCH_SIZES = (1, 3, 17, 64)
TRACE_BATCH = 2  # traced at a batch size that is not probed, so a frozen batch axis cannot pass
TEXT_LENGTHS = (1, 5, 23, 40)  # token sequence lengths probed (capped at the model's longest)
TEXT_TRACE_LENGTH = 7
PARITY_SEED = 0


# --------------------------------------------------------------------------------------------- signatures
@dataclass
class Port:
    """One named input or output of the exported graph, as the metadata describes it."""

    name: str
    dtype: str  # numpy name: float32, int64
    shape: list[int | str]  # symbolic dims are strings: ["batch", 1, 8, 8]
    meaning: str
    layout: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # preprocessing, value range, ...

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "dtype": self.dtype, "shape": self.shape}
        if self.layout:
            out["layout"] = self.layout
        out["meaning"] = self.meaning
        return {**out, **self.extra}


@dataclass
class Signature:
    """What gets exported for one graph: the wrapped module, its ports, and how to probe it.

    `sample(rng, batch, length)` returns numpy inputs in the order of `inputs`; `lengths` are the sequence
    lengths probed for parity ((None,) for fixed-shape inputs) and `trace_length` the one used for tracing.
    """

    module: nn.Module
    inputs: list[Port]
    outputs: list[Port]
    sample: Callable[[np.random.Generator, int, int | None], tuple[np.ndarray, ...]]
    lengths: tuple[int | None, ...] = (None,)
    trace_length: int | None = None
    role: str = "model"  # "model", or a part exported beside it ("encoder")
    suffix: str = ""  # file name part: model.onnx, model.text.onnx; the encoder: see part_path

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        return {
            p.name: {i: d for i, d in enumerate(p.shape) if isinstance(d, str)}
            for p in [*self.inputs, *self.outputs]
        }


class _Classify(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model(x)  # (B, classes)
        return logits, torch.softmax(logits, dim=-1)


class _Destandardize(nn.Module):
    """The network predicts standardized targets; the graph returns them in the target's own units."""

    def __init__(self, model: nn.Module, mean: float, std: float) -> None:
        super().__init__()
        self.model, self.mean, self.std = model, float(mean), float(std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) * self.std + self.mean  # (B, outputs)


class _Reconstruct(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        recon = self.model(x)  # same shape as x
        score = (recon - x).pow(2).flatten(1).mean(dim=1)  # (B,): toolkit.train.anomaly.anomaly_scores
        return recon, score


class _Encode(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.encode(x)  # (B, latent)


class _Generate(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, z: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        from toolkit.train.gan import to_pixels

        return to_pixels(self.model(z, label))  # (B, C, H, W) pixels in [0, 1]


def _data_input(ckpt: dict[str, Any]) -> tuple[Port, Callable, tuple[int | None, ...], int | None]:
    """The input port for what the model reads (tabular, image, tokens or series), its probe sampler,
    the sequence lengths to probe and the traced length."""
    spec, shape = ckpt["spec"], list(ckpt["input_shape"])
    kind = spec["kind"]
    if kind == "tokens":
        tok = spec["tokenizer"]
        longest = min(
            tok["max_length"], getattr(_recipe(ckpt).model, "max_length", None) or tok["max_length"]
        )
        lengths = tuple(sorted({min(n, longest) for n in TEXT_LENGTHS}))
        port = Port(
            "tokens",
            "int64",
            ["batch", "sequence"],
            "token ids of each text, right-padded with pad_id to the longest text of the batch",
            "NT",
            {"preprocessing": {"type": "tokenize", "tokenizer": tok}},
        )
        vocab = len(tok["vocab"])
        return port, _token_sampler(vocab), lengths, min(TEXT_TRACE_LENGTH, longest)
    standardize = {
        "type": "standardize",
        "formula": "(x - mean) / std",
        "mean": spec["mean"],
        "std": spec["std"],
    }
    if kind == "series":
        window = spec["window"]
        longest = getattr(_recipe(ckpt).model, "max_length", None) or 4 * window
        lengths = tuple(sorted({window, max(1, window // 2), min(window + 7, longest)}))
        port = Port(
            "window",
            "float32",
            ["batch", "window", 1],
            f"the last {window} values of the series (the trained window), oldest first, standardized",
            "NTC",
            {
                "preprocessing": {
                    **standardize,
                    "mean": spec["mean"][0],
                    "std": spec["std"][0],
                    "window": window,
                    "horizon": spec["horizon"],
                    "series_name": spec.get("series_name"),
                }
            },
        )
        return port, _normal_sampler(None), lengths, window
    image = spec.get("image")
    if image and image.get("pixel_scale") is not None:  # images: raw pixel values are scaled first
        standardize["formula"] = "(pixels * image.pixel_scale - mean) / std"
    if kind == "image":
        standardize.update(per="channel", image=image)
        port = Port("input", "float32", ["batch", *shape], "images, standardized per channel", "NCHW")
    else:
        standardize.update(per="feature", missing="a missing value (NaN) becomes 0 after standardizing")
        standardize["feature_names"] = spec.get("feature_names")
        if image:  # images flattened into vectors (row-major C, H, W) for an MLP or a dense autoencoder
            standardize["image"] = image
        port = Port("input", "float32", ["batch", *shape], "feature vectors, standardized per feature", "NF")
    port.extra["preprocessing"] = standardize
    return port, _normal_sampler(tuple(shape)), (None,), None


def _normal_sampler(shape: tuple[int, ...] | None) -> Callable:
    def sample(rng: np.random.Generator, batch: int, length: int | None) -> tuple[np.ndarray, ...]:
        dims = shape if shape is not None else (length, 1)
        return (rng.standard_normal((batch, *dims)).astype(np.float32),)

    return sample


def _token_sampler(vocab: int) -> Callable:
    def sample(rng: np.random.Generator, batch: int, length: int | None) -> tuple[np.ndarray, ...]:
        ids = rng.integers(1, vocab, size=(batch, length), dtype=np.int64)  # 1 = <unk> included
        real = rng.integers(1, length + 1, size=batch)
        real[0] = length  # the longest text sets the width, as encode_batch does
        ids[np.arange(length)[None, :] >= real[:, None]] = 0  # right padding
        return (ids,)

    return sample


def _classify(model: nn.Module, ckpt: dict[str, Any]) -> list[Signature]:
    port, sample, lengths, trace = _data_input(ckpt)
    k = ckpt["num_outputs"]
    outputs = [
        Port("logits", "float32", ["batch", k], "unnormalized class scores, one per label"),
        Port("probabilities", "float32", ["batch", k], "softmax of logits; argmax is the predicted label"),
    ]
    return [Signature(_Classify(model), [port], outputs, sample, lengths, trace)]


def _regress(model: nn.Module, ckpt: dict[str, Any]) -> list[Signature]:
    port, sample, lengths, trace = _data_input(ckpt)
    t = ckpt["spec"]["target"]
    out = Port(
        "prediction",
        "float32",
        ["batch", ckpt["num_outputs"]],
        "predicted target in its own units (standardization undone inside the graph)",
        extra={"target": t},
    )
    return [Signature(_Destandardize(model, t["mean"], t["std"]), [port], [out], sample, lengths, trace)]


def _forecast(model: nn.Module, ckpt: dict[str, Any]) -> list[Signature]:
    port, sample, lengths, trace = _data_input(ckpt)
    spec = ckpt["spec"]
    out = Port(
        "forecast",
        "float32",
        ["batch", spec["horizon"]],
        "the next `horizon` values after the window, in the series' own units (scaling undone inside the graph)",
    )
    wrapped = _Destandardize(model, spec["target"]["mean"], spec["target"]["std"])
    return [Signature(wrapped, [port], [out], sample, lengths, trace)]


def _reconstruct(model: nn.Module, ckpt: dict[str, Any]) -> list[Signature]:
    port, sample, lengths, trace = _data_input(ckpt)
    spec = ckpt["spec"]
    outputs = [
        Port("reconstruction", "float32", list(port.shape), "the input as the autoencoder reconstructs it"),
        Port(
            "score",
            "float32",
            ["batch"],
            spec.get("score", "mean squared reconstruction error per sample, in normalized units"),
        ),
    ]
    latent = _recipe(ckpt).model.latent
    code = Port("code", "float32", ["batch", latent], "the latent code (the encoder as a feature extractor)")
    return [
        Signature(_Reconstruct(model), [port], outputs, sample, lengths, trace),
        Signature(_Encode(model), [port], [code], sample, lengths, trace, role="encoder", suffix=".encoder"),
    ]


def _generate(model: nn.Module, ckpt: dict[str, Any]) -> list[Signature]:
    spec, shape = ckpt["spec"], list(ckpt["input_shape"])
    latent, classes = _recipe(ckpt).model.latent, ckpt["num_outputs"]
    inputs = [
        Port(
            "z", "float32", ["batch", latent], "noise: draws of a standard normal", extra={"latent": latent}
        ),
        Port("label", "int64", ["batch"], "class to generate: an index into labels"),
    ]
    image = {**(spec.get("image") or {}), "value_range": [0.0, 1.0]}
    out = Port(
        "images", "float32", ["batch", *shape], "generated images, pixels in [0, 1]", "NCHW", {"image": image}
    )

    def sample(rng: np.random.Generator, batch: int, length: int | None) -> tuple[np.ndarray, ...]:
        z = rng.standard_normal((batch, latent)).astype(np.float32)
        return z, rng.integers(0, classes, size=batch, dtype=np.int64)

    return [Signature(_Generate(model), inputs, [out], sample)]


# One entry per task: (model, checkpoint) -> the graphs to export, the main one first.
SIGNATURES: dict[str, Callable[[nn.Module, dict[str, Any]], list[Signature]]] = {
    "classify": _classify,
    "regress": _regress,
    "forecast": _forecast,
    "reconstruct": _reconstruct,
    "generate": _generate,
}


def _recipe(ckpt: dict[str, Any]) -> Any:
    from toolkit.recipe import recipe_from_dict

    return recipe_from_dict(ckpt["recipe"])


# --------------------------------------------------------------------------------------------- export
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


def supported_opsets() -> range:
    """Opsets both the TorchScript exporter and the installed onnx package can write."""
    import onnx

    try:
        from torch.onnx._constants import ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET as torch_max
    except ImportError:  # older torch: one constant for its only exporter
        from torch.onnx._constants import ONNX_MAX_OPSET as torch_max
    return range(MIN_OPSET, min(torch_max, onnx.defs.onnx_opset_version()) + 1)


def export_run(
    run_dir: str | Path, out: str | Path | None = None, opset: int | None = None, exporter: str = "auto"
) -> ExportResult:
    """Export RUN_DIR/best.pt to `out` (default RUN_DIR/model.onnx) and model.json beside it.

    `exporter`: "auto" tries each of EXPORTERS in order and keeps the first whose graph passes every check;
    "torchscript" or "dynamo" uses only that one. Nothing is written unless every graph passes the checker,
    strict shape inference and the parity check; files are replaced atomically, so an earlier model.onnx
    stays whole when an export fails."""
    from toolkit.io import write_bytes, write_json
    from toolkit.train.checkpoint import load_checkpoint, load_model

    t0 = time.perf_counter()
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ToolkitError(f"run directory not found: {run_dir}")
    if exporter != "auto" and exporter not in EXPORTERS:
        raise ToolkitError(f"unknown exporter {exporter!r}; allowed: auto, {', '.join(EXPORTERS)}")
    opsets = supported_opsets()
    opset = DEFAULT_OPSET if opset is None else opset
    if opset not in opsets:
        raise ToolkitError(f"opset {opset} is not supported; allowed: {opsets.start}-{opsets.stop - 1}")
    out = Path(out) if out is not None else run_dir / "model.onnx"
    if out.suffix != ".onnx":
        raise ToolkitError(f"--out must name a .onnx file (got {out})")
    ckpt_path = run_dir / "best.pt"
    ckpt = load_checkpoint(ckpt_path)
    task = ckpt["recipe"].get("task")
    if task not in SIGNATURES:
        raise ToolkitError(f"{run_dir}: task {task!r} cannot be exported; allowed: {', '.join(SIGNATURES)}")
    model = load_model(ckpt)
    common = _common_document(run_dir, ckpt, ckpt_path, opset)
    graphs = [
        _export_graph(sig, opset, list(EXPORTERS) if exporter == "auto" else [exporter], common)
        for sig in SIGNATURES[task](model, ckpt)
    ]
    tokenizer = ckpt["spec"].get("tokenizer")
    if tokenizer is not None:
        from toolkit.text_model import supports_text_model

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
    return main


def part_path(out: Path, suffix: str) -> Path:
    """Where a graph goes: model.onnx, model.text.onnx, and the encoder as encoder.onnx beside model.onnx
    (OUT.encoder.onnx beside any other OUT.onnx)."""
    if suffix == ".encoder" and out.stem == "model":
        return out.with_name("encoder.onnx")
    return out.with_name(out.stem + suffix + ".onnx")


def _text_graph(token_graph: Graph, tokenizer: dict[str, Any]) -> Graph:
    """model.text.onnx: the token model behind an in-graph tokenizer, checked against the Python one."""
    import dataclasses

    from toolkit.text_model import build_text_model, check_text_parity, text_document

    t0 = time.perf_counter()
    proto = build_text_model(token_graph.model, tokenizer, token_graph.signature.inputs[0].name)
    parity = check_text_parity(proto, token_graph.model, tokenizer)
    sig = dataclasses.replace(
        token_graph.signature, suffix=token_graph.signature.suffix + ".text", role="text"
    )
    return Graph(sig, proto, text_document(token_graph.document, parity), time.perf_counter() - t0)


def _export_graph(sig: Signature, opset: int, exporters: list[str], common: dict[str, Any]) -> Graph:
    """Export with the first exporter whose graph passes the checks; one line naming every failure."""
    failures = []
    for name in exporters:
        t0 = time.perf_counter()
        try:
            proto = EXPORTERS[name](sig, opset)
            proto, rewrites = rewrite_for_export(proto)  # where onnxruntime's own kernel is the slow one
            _declare_shapes(proto, sig)
            _check(proto, sig, opset)
            parity = check_parity(sig, proto.SerializeToString())
        except ToolkitError as exc:
            failures.append((name, str(exc)))
            continue
        doc = _document(common, sig, proto, parity)
        doc["provenance"] = {**doc["provenance"], "exporter": name}
        if rewrites:
            doc["provenance"]["rewrites"] = rewrites
        return Graph(sig, proto, doc, time.perf_counter() - t0)
    if len(failures) == 1:
        raise ToolkitError(failures[0][1])
    raise ToolkitError("; ".join(f"{name} exporter: {msg}" for name, msg in failures))


def _quiet() -> contextlib.ExitStack:
    """Silence exporter chatter (tracer warnings, deprecation notices, progress lines, registry logs):
    the checks after export decide whether a graph is good, not the exporter's warnings."""
    stack = contextlib.ExitStack()
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    for name in ("torch.onnx", "onnxscript", "onnx_ir"):
        logger = logging.getLogger(name)
        stack.callback(logger.setLevel, logger.level)
        logger.setLevel(logging.CRITICAL)
    return stack


def _example(sig: Signature) -> tuple[torch.Tensor, ...]:
    rng = np.random.default_rng(PARITY_SEED)
    return tuple(torch.from_numpy(a) for a in sig.sample(rng, TRACE_BATCH, sig.trace_length))


def _export_torchscript(sig: Signature, opset: int) -> Any:
    """torch.onnx.export(dynamo=False): traces the module; constant folding on."""
    import onnx

    buf = io.BytesIO()
    try:
        with _quiet():
            torch.onnx.export(
                sig.module.eval(),
                _example(sig),
                buf,
                **({"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}),
                input_names=[p.name for p in sig.inputs],
                output_names=[p.name for p in sig.outputs],
                dynamic_axes=sig.dynamic_axes(),
                opset_version=opset,
                do_constant_folding=True,
            )
    except Exception as exc:
        raise ToolkitError(f"the exporter failed at opset {opset}: {one_line(exc, with_type=True)}") from exc
    return onnx.load_from_string(buf.getvalue())


def _export_dynamo(sig: Signature, opset: int) -> Any:
    """torch.onnx.export(dynamo=True): torch.export, then onnxscript's translation and graph optimization."""
    try:
        import onnxscript  # noqa: F401
    except ImportError:
        raise ToolkitError("not available: it needs onnxscript (pip install onnxscript)") from None
    try:
        with _quiet():
            program = torch.onnx.export(
                sig.module.eval(),
                _example(sig),
                dynamo=True,
                input_names=[p.name for p in sig.inputs],
                output_names=[p.name for p in sig.outputs],
                dynamic_axes=sig.dynamic_axes(),
                opset_version=opset,
                optimize=True,
                verbose=False,
            )
    except Exception as exc:
        raise ToolkitError(f"the exporter failed at opset {opset}: {one_line(exc, with_type=True)}") from exc
    return program.model_proto


# Tried in this order by exporter="auto". TorchScript first: it exports every shipped recipe with parity
# (the dynamo exporter cannot export nn.RNN and the text RNNs here) and takes a fraction of the time.
EXPORTERS: dict[str, Callable[[Signature, int], Any]] = {
    "torchscript": _export_torchscript,
    "dynamo": _export_dynamo,
}


def _declare_shapes(proto: Any, sig: Signature) -> None:
    """Write the declared output shapes into the graph (the TorchScript exporter leaves some dims as
    generated names, such as a transposed convolution's side); strict shape inference then checks them."""
    declared = {p.name: p.shape for p in sig.outputs}
    for value in proto.graph.output:
        shape = declared.get(value.name)
        if shape is None:
            continue
        dims = value.type.tensor_type.shape.dim
        if len(dims) != len(shape):
            raise ToolkitError(
                f"output {value.name!r} has rank {len(dims)} in the graph, {len(shape)} declared"
            )
        for dim, want in zip(dims, shape):
            if isinstance(want, str):
                dim.dim_param = want
            else:
                dim.dim_value = want


def _check(proto: Any, sig: Signature, opset: int) -> None:
    """The requested opset; only standard domains; the full checker and strict shape inference pass."""
    import onnx

    written = {o.domain or "ai.onnx": o.version for o in proto.opset_import}.get("ai.onnx")
    if written != opset:
        raise ToolkitError(f"it wrote opset {written}, not the requested {opset}")
    domains = {o.domain for o in proto.opset_import} | {n.domain for n in proto.graph.node}
    other = sorted(d for d in domains if d not in STANDARD_DOMAINS)
    if other or proto.functions:
        raise ToolkitError(
            f"the exported {sig.role} uses non-standard operator domains {other}; allowed: ai.onnx, ai.onnx.ml"
        )
    try:
        onnx.checker.check_model(proto, full_check=True)
        onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)
    except Exception as exc:
        raise ToolkitError(
            f"the exported {sig.role} fails the ONNX checker: {one_line(exc, with_type=True)}"
        ) from exc


def check_parity(sig: Signature, model_bytes: bytes) -> dict[str, Any]:
    """Run the exported graph with onnxruntime and the module with PyTorch on the same inputs, at every
    probed batch size and sequence length; a difference beyond ATOL + RTOL * |torch| raises ToolkitError.

    Returns the figures for the metadata: per output the largest absolute error, the largest relative error
    (over values with |torch| > ATOL) and the largest fraction of the tolerance used (<= 1 passes)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1  # small probes; no thread pool to spin up on a shared machine
    opts.log_severity_level = 4  # errors become ToolkitErrors; the runtime need not log them too
    try:
        session = ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ToolkitError(
            f"onnxruntime cannot load the exported {sig.role}: {one_line(exc, with_type=True)}"
        ) from exc
    rng = np.random.default_rng(PARITY_SEED)
    stats = {p.name: {"max_abs": 0.0, "max_rel": 0.0, "tolerance_used": 0.0} for p in sig.outputs}
    cases = 0
    for length in sig.lengths:
        for batch in BATCH_SIZES:
            where = f"batch {batch}" + (f", sequence length {length}" if length is not None else "")
            arrays = sig.sample(rng, batch, length)
            with torch.no_grad():
                expected = sig.module(*(torch.from_numpy(a) for a in arrays))
            expected = [expected] if isinstance(expected, torch.Tensor) else list(expected)
            feeds = {p.name: a for p, a in zip(sig.inputs, arrays)}
            try:
                got = session.run([p.name for p in sig.outputs], feeds)
            except Exception as exc:
                raise ToolkitError(
                    f"the exported {sig.role} fails at {where}: {one_line(exc, with_type=True)}"
                ) from exc
            for port, ref, onnx_out in zip(sig.outputs, expected, got):
                ref = ref.numpy()
                if onnx_out.shape != ref.shape:
                    raise ToolkitError(
                        f"parity check failed: output {port.name!r} has shape {list(onnx_out.shape)} in ONNX "
                        f"but {list(ref.shape)} in PyTorch at {where}"
                    )
                err = np.abs(onnx_out.astype(np.float64) - ref.astype(np.float64))
                scale = np.abs(ref.astype(np.float64))
                s = stats[port.name]
                if err.size:
                    big = scale > ATOL
                    s["max_abs"] = max(s["max_abs"], float(err.max()))
                    if big.any():
                        s["max_rel"] = max(s["max_rel"], float((err[big] / scale[big]).max()))
                    s["tolerance_used"] = max(s["tolerance_used"], float((err / (ATOL + RTOL * scale)).max()))
                if not np.isfinite(err).all() or s["tolerance_used"] > 1.0:
                    raise ToolkitError(
                        f"parity check failed: output {port.name!r} differs from PyTorch by up to "
                        f"{s['max_abs']:.3g} at {where} (allowed: atol {ATOL:g} + rtol {RTOL:g}); nothing written"
                    )
            cases += 1
    return {
        "atol": ATOL,
        "rtol": RTOL,
        "runtime": f"onnxruntime {ort.__version__} (CPUExecutionProvider)",
        "batch_sizes": list(BATCH_SIZES),
        "sequence_lengths": [n for n in sig.lengths if n is not None],
        "traced": {"batch": TRACE_BATCH, "sequence_length": sig.trace_length},
        "cases": cases,
        "outputs": stats,
    }


# --------------------------------------------------------------------------------------------- metadata
def _common_document(run_dir: Path, ckpt: dict[str, Any], ckpt_path: Path, opset: int) -> dict[str, Any]:
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
    return {
        "schema": SCHEMA,
        "task": ckpt["recipe"]["task"],
        "arch": ckpt["arch"],
        "labels": spec.get("labels"),
        "anomaly": spec.get("anomaly"),
        "thresholds": thresholds,
        "recipe": ckpt["recipe"],
        "metrics": metrics,
        "provenance": {
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
        },
    }


def _document(common: dict[str, Any], sig: Signature, proto: Any, parity: dict[str, Any]) -> dict[str, Any]:
    """The metadata of one graph; shapes are read back from the graph, so they say what it really takes."""
    graph_shapes = {v.name: _shape(v) for v in [*proto.graph.input, *proto.graph.output]}
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


def _shape(value_info: Any) -> list[int | str]:
    dims = value_info.type.tensor_type.shape.dim
    return [d.dim_param if d.HasField("dim_param") else int(d.dim_value) for d in dims]


def checkpoint_outputs(
    ckpt_path: Path, task: str, role: str, feeds: dict[str, np.ndarray], samples: int, batch: int = 64
) -> dict[str, np.ndarray]:
    """PyTorch outputs of a run's checkpoint, wrapped exactly as it is exported, for the named ONNX inputs
    (used by `toolkit validate --run`): {output name: array}; empty when the run exports no such role.
    A run of another task is a ToolkitError."""
    from toolkit.train.checkpoint import load_checkpoint, load_model

    ckpt = load_checkpoint(ckpt_path)
    run_task = ckpt["recipe"].get("task")
    if run_task != task or run_task not in SIGNATURES:
        raise ToolkitError(f"{ckpt_path} is a {run_task} run, the model a {task} model")
    signatures = [s for s in SIGNATURES[run_task](load_model(ckpt), ckpt) if s.role == role]
    if not signatures:
        return {}
    sig = signatures[0]
    names = [p.name for p in sig.outputs]
    arrays = [feeds[p.name] for p in sig.inputs]
    parts: list[list[np.ndarray]] = [[] for _ in names]
    with torch.no_grad():
        for i in range(0, samples, batch):
            got = sig.module(*(torch.from_numpy(np.ascontiguousarray(a[i : i + batch])) for a in arrays))
            for part, value in zip(parts, [got] if isinstance(got, torch.Tensor) else got):
                part.append(value.numpy())
    return {name: np.concatenate(part) for name, part in zip(names, parts)}
