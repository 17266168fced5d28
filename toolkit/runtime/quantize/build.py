"""Building candidates with onnxruntime.quantization: pre-processing, then one ModelProto per mode.

- static: INT8 in QDQ format, weights per channel (int8), activations uint8 (asymmetric) calibrated on
  train-split rows (toolkit.runtime.quantize.calibration); the nodes that write graph outputs stay float;
- dynamic: weights INT8, activations quantized at run time (MatMul, Gemm, LSTM, Attention...), GRUs first
  rewritten as a Scan with an INT8 recurrence (toolkit.runtime.recurrent), small layers and embeddings left
  float;
- fp16: every float weight and op in half precision with fp32 inputs and outputs (for GPUs).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.errors import ToolkitError
from toolkit.runtime.evalset import CalibrationReader
from toolkit.runtime.quantize.calibration import method_of

MODES = ("auto", "static", "dynamic", "fp16")
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

    out = work / f"{mode}-{len(exclude)}.onnx"
    model = onnx.load(str(pre))
    rewrites: list[str] = []
    if mode == "static":
        _static(pre, out, model, calib, calibration, exclude)
    elif mode == "dynamic":
        rewrites = _dynamic(pre, out, model, work, exclude)
    elif mode == "fp16":
        _fp16(out, model, exclude)
    else:
        raise ToolkitError(f"unknown mode {mode!r}; allowed: {', '.join(MODES)}")
    return onnx.load(str(out)), rewrites


def _static(
    pre: Path, out: Path, model: Any, calib: dict[str, np.ndarray], calibration: str, exclude: Sequence[str]
) -> None:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    quantize_static(
        str(pre),
        str(out),
        CalibrationReader(calib),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=list(exclude) + output_nodes(model),
        calibrate_method=method_of(calibration),
        extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
        calibration_cache_path=None,
    )


def _dynamic(pre: Path, out: Path, model: Any, work: Path, exclude: Sequence[str]) -> list[str]:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from toolkit.runtime.recurrent import lower

    rewrites = []
    lowered, count = lower(model, ops=SCAN_INT8_OPS, int8=True, skip=exclude)
    if count:
        rewrites.append(f"{count} {'/'.join(SCAN_INT8_OPS)} op{'s' * (count > 1)} -> Scan, INT8 recurrence")
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
    return rewrites


def _fp16(out: Path, model: Any, exclude: Sequence[str]) -> None:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from toolkit.runtime.graph import topological_sort

    proto = convert_float_to_float16(model, keep_io_types=True, node_block_list=list(exclude) or None)
    topological_sort(proto.graph)  # the converter appends its input casts at the end of the graph
    onnx.save(proto, str(out))


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


@contextlib.contextmanager
def inside(folder: str) -> Iterator[None]:
    """Work inside `folder`: onnxruntime's quantization tools write helper files (external-data files with
    uuid names) into the current directory, which must not be the user's."""
    before = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)
