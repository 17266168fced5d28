"""toolkit.runtime.subpixel: a strided ConvTranspose and its Conv + DepthToSpace rewrite give the same
tensor (real onnxruntime sessions, random weights, several batch sizes and image sizes in one graph);
configurations the rewrite does not cover are left alone."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto as TP
from onnx import helper as oh
from onnx import numpy_helper as nh

from toolkit.runtime.subpixel import lower


def _model(c_in: int, c_out: int, k: int, s: int, p: int, bias: bool = True, **attrs) -> onnx.ModelProto:
    rng = np.random.default_rng(k * 10 + s)
    inits = [nh.from_array(rng.normal(0, 0.5, (c_in, c_out, k, k)).astype(np.float32), "W")]
    ins = ["x", "W"]
    if bias:
        inits.append(nh.from_array(rng.normal(0, 0.5, c_out).astype(np.float32), "B"))
        ins.append("B")
    node = oh.make_node("ConvTranspose", ins, ["y"], name="up", strides=[s, s], pads=[p] * 4, **attrs)
    graph = oh.make_graph(
        [node, oh.make_node("Relu", ["y"], ["out"])],  # a consumer: the rewrite keeps the output's name
        "g",
        [oh.make_tensor_value_info("x", TP.FLOAT, ["N", c_in, "H", "W"])],
        [oh.make_tensor_value_info("out", TP.FLOAT, ["N", c_out, "H2", "W2"])],
        inits,
    )
    return oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)])


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"]).run(
        None, {"x": x}
    )[0]


@pytest.mark.parametrize(
    "c_in, c_out, k, s, p, bias",
    [
        (8, 4, 4, 2, 1, False),
        (3, 5, 4, 2, 1, True),
        (4, 2, 2, 2, 0, True),
        (2, 3, 3, 3, 0, True),
        (4, 4, 6, 2, 2, True),
    ],
)
def test_the_rewrite_computes_the_same_tensor(c_in, c_out, k, s, p, bias):
    model = _model(c_in, c_out, k, s, p, bias)
    lowered, count = lower(model)
    assert count == 1
    ops = [n.op_type for n in lowered.graph.node]
    assert ops == ["Conv", "DepthToSpace", "Relu"], ops
    assert [i.name for i in lowered.graph.initializer if i.name in ("W", "B")] == []  # the old weights went
    onnx.checker.check_model(lowered, full_check=True)
    rng = np.random.default_rng(0)
    for batch, h, w in [(1, 1, 1), (2, 4, 4), (5, 3, 7)]:
        x = rng.normal(0, 1, (batch, c_in, h, w)).astype(np.float32)
        want, got = _run(model, x), _run(lowered, x)
        assert got.shape == want.shape == (batch, c_out, h * s, w * s)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "k, s, p, attrs",
    [
        (3, 2, 1, {}),  # K - 2p = 1, not the stride: the output is not exactly 2x the input
        (4, 2, 1, {"output_padding": [1, 1]}),
        (4, 2, 1, {"group": 2}),
        (3, 1, 1, {}),  # stride 1: nothing to gain
    ],
)
def test_what_the_rewrite_does_not_cover_is_left_alone(k, s, p, attrs):
    model = _model(4, 4, k, s, p, **attrs)
    lowered, count = lower(model)
    assert count == 0 and [n.op_type for n in lowered.graph.node] == ["ConvTranspose", "Relu"]
