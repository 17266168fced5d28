"""toolkit.runtime.recurrent: RNN / GRU / LSTM ops rewritten as a Scan give the op's own outputs (fp32: to
float precision; INT8 recurrence: close, with the integer kernel in the loop), at every batch size and
sequence length of one graph; what the rewrite does not cover is left alone. Real onnxruntime sessions on
graphs built here with random weights (no torch)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto as TP
from onnx import helper as oh
from onnx import numpy_helper as nh

from toolkit.runtime.recurrent import GATES, lower

HIDDEN, INPUT = 6, 3


def _model(
    kind: str,
    *,
    bias: bool = True,
    initial: bool = False,
    layers: int = 1,
    outputs: tuple[str, ...] = ("Y", "Y_h"),
    seed: int = 0,
    **attrs,
) -> onnx.ModelProto:
    """X [T, B, INPUT] -> `layers` stacked `kind` ops (the first layer's outputs named as in `outputs`),
    with random weights (and initial states as graph inputs when `initial`)."""
    rng = np.random.default_rng(seed)
    g = GATES[kind]
    attrs = {"hidden_size": HIDDEN, **attrs}
    if kind == "GRU":
        attrs.setdefault("linear_before_reset", 1)
    inputs = [oh.make_tensor_value_info("X", TP.FLOAT, ["T", "B", INPUT])]
    inits, nodes, x, width = [], [], "X", INPUT
    graph_outputs = []
    for layer in range(layers):
        p = f"l{layer}_"
        inits += [
            nh.from_array(rng.normal(0, 0.6, (1, g * HIDDEN, width)).astype(np.float32), p + "W"),
            nh.from_array(rng.normal(0, 0.6, (1, g * HIDDEN, HIDDEN)).astype(np.float32), p + "R"),
        ]
        ins = [x, p + "W", p + "R"]
        if bias or initial:
            if bias:
                inits.append(
                    nh.from_array(rng.normal(0, 0.3, (1, 2 * g * HIDDEN)).astype(np.float32), p + "B")
                )
            ins.append(p + "B" if bias else "")
        if initial:
            ins += ["", p + "h0"] + ([p + "c0"] if kind == "LSTM" else [])
            for s in ["h0"] + (["c0"] if kind == "LSTM" else []):
                inputs.append(oh.make_tensor_value_info(p + s, TP.FLOAT, [1, "B", HIDDEN]))
        names = {"Y": p + "Y", "Y_h": p + "Y_h", "Y_c": p + "Y_c"}
        outs = [names["Y"], names["Y_h"]] + ([names["Y_c"]] if kind == "LSTM" else [])
        nodes.append(oh.make_node(kind, ins, outs, name=f"{kind.lower()}{layer}", **attrs))
        if layer + 1 < layers:  # Y [T, 1, B, H] -> [T, B, H] for the next layer
            axes = p + "axes"
            inits.append(nh.from_array(np.array([1], np.int64), axes))
            nodes.append(oh.make_node("Squeeze", [names["Y"], axes], [p + "next"]))
            x, width = p + "next", HIDDEN
        if layer == 0 or layer + 1 == layers:
            shapes = {"Y": ["T", 1, "B", HIDDEN], "Y_h": [1, "B", HIDDEN], "Y_c": [1, "B", HIDDEN]}
            graph_outputs += [oh.make_tensor_value_info(names[o], TP.FLOAT, shapes[o]) for o in outputs]
    seen, unique = set(), []
    for o in graph_outputs:
        if o.name not in seen:
            seen.add(o.name)
            unique.append(o)
    graph = oh.make_graph(nodes, "recurrent", inputs, unique, inits)
    return oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)])


def _run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))


def _feeds(model: onnx.ModelProto, steps: int, batch: int, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feeds = {"X": rng.normal(0, 1, (steps, batch, INPUT)).astype(np.float32)}
    for i in model.graph.input[1:]:
        feeds[i.name] = rng.normal(0, 0.5, (1, batch, HIDDEN)).astype(np.float32)
    return feeds


def _ops(model: onnx.ModelProto) -> Counter:
    found = Counter(n.op_type for n in model.graph.node)
    for n in model.graph.node:
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                found.update(f"body:{b.op_type}" for b in a.g.node)
    return found


CASES = [
    ("RNN", {}),
    ("RNN", {"activations": ["Relu"]}),
    ("GRU", {}),
    ("LSTM", {}),
    ("LSTM", {"bias": False}),
    ("GRU", {"initial": True}),
    ("LSTM", {"initial": True, "outputs": ("Y", "Y_h", "Y_c")}),
    ("GRU", {"layers": 2}),
    ("LSTM", {"outputs": ("Y_c",)}),
]


@pytest.mark.parametrize("kind, options", CASES, ids=[f"{k}-{'-'.join(o) or 'plain'}" for k, o in CASES])
def test_fp32_scan_equals_the_op_at_every_shape(kind, options):
    model = _model(kind, **options)
    lowered, count = lower(model)
    assert count == options.get("layers", 1)
    onnx.checker.check_model(lowered, full_check=True)
    onnx.shape_inference.infer_shapes(lowered, check_type=True, strict_mode=True)
    ops = _ops(lowered)
    assert ops[kind] == 0 and ops["Scan"] == count, ops
    assert not any(i.name.startswith("l0_R") for i in lowered.graph.initializer)  # the op's weights went
    for steps, batch in [(1, 1), (7, 1), (5, 4), (12, 9)]:  # one graph: dynamic time and batch axes
        feeds = _feeds(model, steps, batch)
        want, got = _run(model, feeds), _run(lowered, feeds)
        assert want.keys() == got.keys()
        for name in want:
            assert got[name].shape == want[name].shape, name
            np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("kind", ["GRU", "LSTM", "RNN"])
def test_int8_recurrence_is_close_and_runs_the_integer_kernel(kind):
    model = _model(kind, outputs=("Y", "Y_h"))
    lowered, count = lower(model, int8=True)
    assert count == 1
    ops = _ops(lowered)
    assert ops["body:DynamicQuantizeMatMul"] == 1 and ops["body:MatMul"] == 0, ops
    assert {o.domain for o in lowered.opset_import} >= {"", "com.microsoft"}
    body = next(a.g for n in lowered.graph.node for a in n.attribute if a.type == onnx.AttributeProto.GRAPH)
    weight = next(i for i in body.initializer if i.name == "R_T_int8")
    assert weight.data_type == TP.INT8 and list(weight.dims) == [HIDDEN, GATES[kind] * HIDDEN]
    feeds = _feeds(model, 9, 5)
    want, got = _run(model, feeds), _run(lowered, feeds)
    for name in want:
        err = np.abs(got[name] - want[name]).max()
        assert 0 < err < 0.05, (name, err)  # quantized (not bit-equal), but close: |h| <= 1 here


@pytest.mark.parametrize(
    "kind, attrs",
    [
        ("GRU", {"direction": "bidirectional"}),
        ("LSTM", {"direction": "reverse"}),
        ("GRU", {"linear_before_reset": 0}),
        ("RNN", {"clip": 3.0}),
        ("LSTM", {"activations": ["Sigmoid", "Relu", "Tanh"]}),
    ],
)
def test_what_the_rewrite_does_not_cover_is_left_alone(kind, attrs):
    model = _model(kind, **attrs)
    lowered, count = lower(model)
    assert count == 0
    assert _ops(lowered)[kind] == 1 and "Scan" not in _ops(lowered)


def test_only_the_requested_op_types_and_not_the_skipped_nodes():
    model = _model("GRU", layers=2)
    assert lower(model, ops=("RNN", "LSTM"))[1] == 0
    lowered, count = lower(model, skip={"gru0"})
    assert count == 1
    assert [n.name for n in lowered.graph.node if n.op_type == "GRU"] == ["gru0"]
    feeds = _feeds(model, 6, 3)
    for name, value in _run(model, feeds).items():
        np.testing.assert_allclose(_run(lowered, feeds)[name], value, rtol=1e-5, atol=1e-5)
