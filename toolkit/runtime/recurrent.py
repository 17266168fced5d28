"""Recurrent layers (ONNX RNN / GRU / LSTM) rewritten as a Scan over time, fp32 or with an INT8 recurrence.

Why: onnxruntime's CPU kernel for the plain RNN op runs one small GEMM per step through a slow generic path
(at batch 64 a 64-unit Elman RNN took 0.75 ms as an RNN op and 0.21 ms as the Scan below, on 2 cores), and
onnxruntime has an INT8 kernel for LSTM (DynamicQuantizeLSTM) but none for GRU or RNN. The rewrite:

- the input projection of every time step at once: one MatMul [T, B, I] x [I, G*H] plus the biases that
  can be merged (G gates: RNN 1, GRU 3, LSTM 4);
- a Scan over time whose body holds the recurrent MatMul [B, H] x [H, G*H] and the gate arithmetic, with
  the op's own outputs rebuilt around it (Y [T, 1, B, H], Y_h and Y_c [1, B, H]), so consumers are untouched.

With `int8=True` the recurrent weights become int8 (symmetric, one scale per output column) and the product
runs as onnxruntime's DynamicQuantizeMatMul (com.microsoft; the hidden state quantized to uint8 at run time,
then the u8 x s8 MLAS kernel): the INT8 GRU that onnxruntime lacks. The input projection stays a plain MatMul
for the caller's quantizer (dynamic INT8) to take. Measured at batch 64, 32 steps, 2 threads, against the GRU
op in fp32: 1.1-1.35x at 64 hidden units (every step also pays some ten small element-wise nodes), 1.5-1.8x
at 128, 1.5-1.9x at 256 (random weights; trained models: bench/results/pipeline.md).

Only what PyTorch exports is rewritten: one direction (forward), no sequence_lens, no peepholes, default
activations, no clip, layout 0, GRU with linear_before_reset=1. Anything else is left as it was.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

import numpy as np

from toolkit.runtime.graph import replace_nodes

GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}
DEFAULT_ACTIVATIONS = {"RNN": ["Tanh"], "GRU": ["Sigmoid", "Tanh"], "LSTM": ["Sigmoid", "Tanh", "Tanh"]}


def lowerable(node: Any, initializers: dict[str, Any]) -> bool:
    """Whether `node` is a recurrent op this module can rewrite (see the module docstring)."""
    from onnx import helper

    if node.op_type not in GATES:
        return False
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    direction = attrs.get("direction", b"forward")
    if (direction.decode() if isinstance(direction, bytes) else direction) != "forward":
        return False
    acts = [a.decode() if isinstance(a, bytes) else a for a in attrs.get("activations", [])]
    if (
        acts
        and acts != DEFAULT_ACTIVATIONS[node.op_type]
        and not (node.op_type == "RNN" and acts == ["Relu"])
    ):
        return False
    if any(k in attrs for k in ("activation_alpha", "activation_beta", "clip")):
        return False
    if attrs.get("layout", 0) != 0 or attrs.get("input_forget", 0) != 0:
        return False
    if node.op_type == "GRU" and attrs.get("linear_before_reset", 0) != 1:
        return False
    ins = list(node.input) + [""] * (8 - len(node.input))
    if ins[4] or (node.op_type == "LSTM" and ins[7]):  # sequence_lens, peepholes
        return False
    # the weights must be constants (they are folded into the new graph)
    return all(name in initializers for name in ins[1:4] if name) and bool(ins[1]) and bool(ins[2])


def lower(
    model: Any, ops: Iterable[str] = tuple(GATES), int8: bool = False, skip: Collection[str] = ()
) -> tuple[Any, int]:
    """A copy of `model` with every lowerable recurrent op of the types `ops` rewritten, except the nodes
    named in `skip`; (model, how many were rewritten). int8: the recurrent product in INT8 (see above)."""
    import onnx
    from onnx import numpy_helper

    def replace(node: Any, inits: dict[str, Any]) -> tuple[list[Any], list[Any]] | None:
        if node.op_type not in ops or node.name in skip or not lowerable(node, inits):
            return None
        arrays = {k: numpy_helper.to_array(inits[k]) for k in node.input[1:4] if k}
        return _rewrite(node, arrays, f"{node.name or node.output[0]}/scan", int8)

    model, count = replace_nodes(model, replace)
    if int8 and count and not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
    return model, count


def _relu(node: Any) -> bool:
    from onnx import helper

    acts = [helper.get_attribute_value(a) for a in node.attribute if a.name == "activations"]
    return bool(acts) and [a.decode() if isinstance(a, bytes) else a for a in acts[0]] == ["Relu"]


def _rewrite(node: Any, arrays: dict[str, np.ndarray], p: str, int8: bool) -> tuple[list[Any], list[Any]]:
    """(nodes, initializers) that replace one recurrent node."""
    from onnx import helper as oh
    from onnx import numpy_helper as nh

    kind = node.op_type
    g = GATES[kind]
    ins = list(node.input) + [""] * (8 - len(node.input))
    outs = list(node.output) + [""] * (3 - len(node.output))
    W = arrays[ins[1]][0].astype(np.float32)  # [G*H, I]
    R = arrays[ins[2]][0].astype(np.float32)  # [G*H, H]
    h = R.shape[1]
    B = arrays[ins[3]][0].astype(np.float32) if ins[3] else np.zeros(2 * g * h, np.float32)
    wb, rb = B[: g * h], B[g * h :]
    if kind == "GRU":  # the hidden gate's recurrent bias sits inside r * (...): kept apart
        x_bias = wb + np.concatenate([rb[: 2 * h], np.zeros(h, np.float32)])
        h_bias = np.concatenate([np.zeros(2 * h, np.float32), rb[2 * h :]])
    else:
        x_bias, h_bias = wb + rb, None

    def name(s: str) -> str:
        return f"{p}/{s}"

    tensors = [nh.from_array(np.ascontiguousarray(W.T), name("W_T")), nh.from_array(x_bias, name("x_bias"))]
    nodes = [
        oh.make_node("MatMul", [ins[0], name("W_T")], [name("xw")], name=name("input_projection")),
        oh.make_node("Add", [name("xw"), name("x_bias")], [name("xp")], name=name("input_bias")),
    ]
    states = ["h"] + (["c"] if kind == "LSTM" else [])
    init_inputs = {"h": ins[5], "c": ins[6] if kind == "LSTM" else ""}
    zeros_made = False
    scan_in = []
    for s in states:
        if init_inputs[s]:
            tensors.append(nh.from_array(np.array([0], np.int64), name(f"{s}0_axes")))
            nodes.append(oh.make_node("Squeeze", [init_inputs[s], name(f"{s}0_axes")], [name(f"{s}0")]))
        else:
            if not zeros_made:  # [batch, hidden] zeros, batch from X's shape [T, B, I]
                tensors += [
                    nh.from_array(np.array([1], np.int64), name("one")),
                    nh.from_array(np.array([h], np.int64), name("hidden")),
                ]
                nodes += [
                    oh.make_node("Shape", [ins[0]], [name("x_shape")]),
                    oh.make_node("Gather", [name("x_shape"), name("one")], [name("batch")], axis=0),
                    oh.make_node("Concat", [name("batch"), name("hidden")], [name("state_shape")], axis=0),
                    oh.make_node("ConstantOfShape", [name("state_shape")], [name("zeros")]),
                ]
                zeros_made = True
            nodes.append(oh.make_node("Identity", [name("zeros")], [name(f"{s}0")]))
        scan_in.append(name(f"{s}0"))

    xs = [name("xp")]
    if kind == "GRU":  # the gates' and the candidate's input parts, split once for all steps
        tensors.append(nh.from_array(np.array([2 * h, h], np.int64), name("x_split")))
        xs = [name("x_zr"), name("x_h")]
        nodes.append(oh.make_node("Split", [name("xp"), name("x_split")], xs, axis=2))
    body = _body(kind, R, h_bias, h, int8, "Relu" if _relu(node) else "Tanh")
    final = [name(f"{s}_last") for s in states]
    nodes.append(
        oh.make_node(
            "Scan",
            [*scan_in, *xs],
            [*final, name("y")],
            name=name("scan"),
            body=body,
            num_scan_inputs=len(xs),
        )
    )
    # the op's outputs: Y [T, 1, B, H], Y_h / Y_c [1, B, H]
    tensors += [
        nh.from_array(np.array([1], np.int64), name("dir_axis")),
        nh.from_array(np.array([0], np.int64), name("state_axis")),
    ]
    if outs[0]:
        nodes.append(oh.make_node("Unsqueeze", [name("y"), name("dir_axis")], [outs[0]]))
    for s, o in zip(states, outs[1:]):
        if o:
            nodes.append(oh.make_node("Unsqueeze", [name(f"{s}_last"), name("state_axis")], [o]))
    return nodes, tensors


def _body(kind: str, R: np.ndarray, h_bias: np.ndarray | None, h: int, int8: bool, act: str = "Tanh") -> Any:
    """The Scan body: states (h[, c]) and one time step's projected input xp [B, G*H] -> new states, y."""
    from onnx import TensorProto as TP
    from onnx import helper as oh
    from onnx import numpy_helper as nh

    g = GATES[kind]
    nodes: list[Any] = []
    tensors: list[Any] = []

    def const(arr: np.ndarray, n: str) -> str:
        tensors.append(nh.from_array(arr, n))
        return n

    def op(
        op_type: str, inputs: list[str], n_out: int = 1, out: list[str] | None = None, **attrs: Any
    ) -> list[str]:
        outputs = out or [f"{op_type.lower()}{len(nodes)}_{i}" for i in range(n_out)]
        nodes.append(oh.make_node(op_type, inputs, outputs, **attrs))
        return outputs

    def split(x: str, sizes: list[int]) -> list[str]:
        return op("Split", [x, const(np.array(sizes, np.int64), f"split{len(nodes)}")], len(sizes), axis=1)

    # recurrent product hr = h @ R^T (+ the GRU's hidden-gate bias)  [B, G*H]
    bias = [const(h_bias.astype(np.float32), "h_bias")] if h_bias is not None else []
    if int8:
        col_max = np.abs(R).max(axis=1)  # one scale per output column of R^T
        w_scale = np.where(col_max > 0, col_max / 127.0, 1.0).astype(np.float32)
        Rq = np.clip(np.round(R / w_scale[:, None]), -127, 127).astype(np.int8)
        hr = op(
            "DynamicQuantizeMatMul",
            [
                "h_prev",
                const(np.ascontiguousarray(Rq.T), "R_T_int8"),
                const(w_scale, "R_scale"),
                const(np.zeros(g * h, np.int8), "R_zero"),
                *bias,
            ],
            domain="com.microsoft",
        )[0]
    else:
        hr = op("MatMul", ["h_prev", const(np.ascontiguousarray(R.T), "R_T")])[0]
        if bias:
            hr = op("Add", [hr, bias[0]])[0]

    states_in = ["h_prev"] + (["c_prev"] if kind == "LSTM" else [])
    out_names = ["h_next"] + (["c_next"] if kind == "LSTM" else [])
    if kind == "RNN":
        op(act, [op("Add", [hr, "xp"])[0]], out=["h_next"])
    elif kind == "LSTM":  # ONNX gate order i, o, f, c
        gates = op("Add", [hr, "xp"])[0]
        sig, cand = split(gates, [3 * h, h])
        i, o, f = split(op("Sigmoid", [sig])[0], [h, h, h])
        c = op("Add", [op("Mul", [f, "c_prev"])[0], op("Mul", [i, op("Tanh", [cand])[0]])[0]], out=["c_next"])
        op("Mul", [o, op("Tanh", c)[0]], out=["h_next"])
    else:  # GRU, gate order z, r, h, linear_before_reset=1
        x_zr, x_h = "x_zr", "x_h"
        h_zr, h_h = split(hr, [2 * h, h])
        z, r = split(op("Sigmoid", [op("Add", [x_zr, h_zr])[0]])[0], [h, h])
        n = op("Tanh", [op("Add", [x_h, op("Mul", [r, h_h])[0]])[0]])[0]
        op("Add", [n, op("Mul", [z, op("Sub", ["h_prev", n])[0]])[0]], out=["h_next"])  # (1-z)*n + z*h
    nodes.append(oh.make_node("Identity", ["h_next"], ["y_t"]))  # the scan output: every step's h
    state_vi = [oh.make_tensor_value_info(s, TP.FLOAT, ["batch", h]) for s in states_in]
    return oh.make_graph(
        nodes,
        f"{kind.lower()}_step",
        [
            *state_vi,
            *(
                [
                    oh.make_tensor_value_info("x_zr", TP.FLOAT, ["batch", 2 * h]),
                    oh.make_tensor_value_info("x_h", TP.FLOAT, ["batch", h]),
                ]
                if kind == "GRU"
                else [oh.make_tensor_value_info("xp", TP.FLOAT, ["batch", g * h])]
            ),
        ],
        [
            *(oh.make_tensor_value_info(s, TP.FLOAT, ["batch", h]) for s in out_names),
            oh.make_tensor_value_info("y_t", TP.FLOAT, ["batch", h]),
        ],
        tensors,
    )
