"""torch -> ONNX with PyTorch's exporters (TorchScript, then dynamo), and the checks each graph must pass.

EXPORTERS are tried in order; a graph must have the requested opset, standard domains only, pass the ONNX
checker and strict shape inference, and carry the declared output shapes.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from toolkit.errors import ToolkitError, one_line
from toolkit.export.signatures import Signature

DEFAULT_OPSET = 18  # both exporters write it natively (dynamo: 18 and up); onnxruntime >= 1.14 runs it
MIN_OPSET = 13  # the TorchScript exporter's LSTM/GRU and slicing need dynamic-shape ops from 13 on
STANDARD_DOMAINS = ("", "ai.onnx", "ai.onnx.ml")
TRACE_BATCH = 2  # traced at a batch size that is not probed, so a frozen batch axis cannot pass
TRACE_SEED = 0


def supported_opsets() -> range:
    """Opsets both the TorchScript exporter and the installed onnx package can write."""
    import onnx

    try:
        from torch.onnx._constants import ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET as torch_max
    except ImportError:  # older torch: one constant for its only exporter
        from torch.onnx._constants import ONNX_MAX_OPSET as torch_max
    return range(MIN_OPSET, min(torch_max, onnx.defs.onnx_opset_version()) + 1)


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
    rng = np.random.default_rng(TRACE_SEED)
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


def declare_shapes(proto: Any, sig: Signature) -> None:
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


def check_graph(proto: Any, sig: Signature, opset: int) -> None:
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
