"""`toolkit serve` end to end: real servers on free loopback ports, driven by the real tritonclient (http and
grpc), curl-like raw HTTP for the error paths, and onnxruntime in-process as the reference for every output.

One tiny CNN (8x8 digits) and one tiny LSTM text classifier (its model.text.onnx takes raw strings: BYTES)
are trained once for the module; a hand-built ONNX graph covers every datatype and a model without a
dynamic batch axis. The main server serves a Triton-layout repository of all of them; the API key, body
limit, torch-free start, reload, start-up failure and SIGTERM drain each get their own small server.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from helpers import NO_TORCH, assert_one_line_error

from toolkit.runtime.server.protocol import decode_http, encode_http

tritonhttp = pytest.importorskip("tritonclient.http")
tritongrpc = pytest.importorskip("tritonclient.grpc")
from tritonclient.utils import InferenceServerException  # noqa: E402

# The toolkit CLI in an interpreter where `import torch` fails (tests/helpers.py NO_TORCH).
NO_TORCH_CLI = NO_TORCH + (
    "from toolkit.cli.main import main\nsys.argv = ['toolkit'] + sys.argv[1:]\nmain()\n"
)

# datatype -> numpy dtype of the identity graph's tensors
DTYPES = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "BYTES": np.object_,
}


# ---- models ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("serve")


@pytest.fixture(scope="module")
def cnn_run(workdir) -> Path:
    from toolkit.export import export_run
    from toolkit.train import train

    run = workdir / "digits"
    overrides = ["model.channels=[4,8]", "model.hidden=16", "train.epochs=1", "train.patience=0"]
    train("cnn-image", overrides=overrides, out=run)
    export_run(run)
    return run


@pytest.fixture(scope="module")
def text_run(workdir) -> Path:
    from toolkit.export import export_run
    from toolkit.train import train

    run = workdir / "langid"
    overrides = ["model.hidden=8", "model.embed_dim=8", "train.epochs=1", "train.patience=0"]
    train("lstm-text", overrides=overrides, out=run)
    export_run(run)
    assert (run / "model.text.onnx").exists()
    return run


def identity_model(path: Path, batch: str | int = "batch") -> Path:
    """One Identity per V2 datatype: inputs in_<DT> [batch, 3] -> outputs out_<DT> (no toolkit metadata)."""
    import onnx
    from onnx import TensorProto, helper

    elem = {
        "BOOL": TensorProto.BOOL,
        "UINT8": TensorProto.UINT8,
        "UINT16": TensorProto.UINT16,
        "UINT32": TensorProto.UINT32,
        "UINT64": TensorProto.UINT64,
        "INT8": TensorProto.INT8,
        "INT16": TensorProto.INT16,
        "INT32": TensorProto.INT32,
        "INT64": TensorProto.INT64,
        "FP16": TensorProto.FLOAT16,
        "FP32": TensorProto.FLOAT,
        "FP64": TensorProto.DOUBLE,
        "BYTES": TensorProto.STRING,
    }
    inputs = [helper.make_tensor_value_info(f"in_{k}", v, [batch, 3]) for k, v in elem.items()]
    outputs = [helper.make_tensor_value_info(f"out_{k}", v, [batch, 3]) for k, v in elem.items()]
    nodes = [helper.make_node("Identity", [f"in_{k}"], [f"out_{k}"]) for k in elem]
    graph = helper.make_graph(nodes, "identity", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)
    return path


def big_model(path: Path) -> Path:
    """y = x + 1 on [batch, n] float32 (any n): for messages above gRPC's 4 MB default."""
    import onnx
    from onnx import TensorProto, helper

    one = helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "one"], ["y"])],
        "big",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "n"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "n"])],
        [one],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)
    return path


@pytest.fixture(scope="module")
def repo(workdir, cnn_run, text_run) -> Path:
    """Triton layout: digits/1, text/1, reloadable/1, dtypes/1, fixed/1 (batch fixed at 2), big/1."""
    root = workdir / "repo"
    for name, src in (
        ("digits", cnn_run / "model.onnx"),
        ("text", text_run / "model.text.onnx"),
        ("reloadable", cnn_run / "model.onnx"),
    ):
        (root / name / "1").mkdir(parents=True)
        shutil.copy(src, root / name / "1" / "model.onnx")
    identity_model(root / "dtypes" / "1" / "model.onnx")
    identity_model(root / "fixed" / "1" / "model.onnx", batch=2)
    big_model(root / "big" / "1" / "model.onnx")
    return root


# ---- servers ---------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`toolkit serve` in a subprocess (torch blocked when asked), ready-polled, SIGTERM on stop."""

    def __init__(self, path: Path, *args: str, block_torch: bool = False, env: dict | None = None, wait=True):
        self.port, self.grpc_port = free_port(), free_port()
        argv = ["serve", str(path), "--port", str(self.port), "--grpc-port", str(self.grpc_port), *args]
        cmd = (
            [sys.executable, "-c", NO_TORCH_CLI]
            if block_torch
            else [sys.executable, "-m", "toolkit.cli.main"]
        )
        self.log = path.parent / f"server-{self.port}.log"
        self.proc = subprocess.Popen(
            [*cmd, *argv],
            stdout=subprocess.DEVNULL,
            stderr=open(self.log, "w"),
            env={**os.environ, **(env or {})},
        )
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}: {self.stderr()}")
            try:
                if get(self.port, "/v2/health/ready")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"server not ready: {self.stderr()}")

    def stderr(self) -> str:
        return self.log.read_text()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")


def request(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, data, dict(resp.getheaders())
    finally:
        conn.close()


def get(port: int, path: str, headers: dict | None = None):
    status, data, _ = request(port, "GET", path, headers=headers)
    return status, data


def post_json(port: int, path: str, doc, headers: dict | None = None):
    body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    status, data, _ = request(
        port, "POST", path, body, {"Content-Type": "application/json", **(headers or {})}
    )
    return status, json.loads(data)


@pytest.fixture(scope="module")
def server(repo):
    s = Server(repo, "--max-queue-delay-ms", "2")
    yield s
    assert s.stop() == 0, s.stderr()


@pytest.fixture(scope="module")
def client(server):
    return tritonhttp.InferenceServerClient(f"127.0.0.1:{server.port}", concurrency=4)


@pytest.fixture(scope="module")
def gclient(server):
    return tritongrpc.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")


def digits_batch(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 1, 8, 8)).astype(np.float32)


def reference(path: Path, feeds: dict) -> dict[str, np.ndarray]:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds)))


# ---- health, metadata ------------------------------------------------------------------------------------
def test_health_and_metadata_over_http_and_grpc(server, client, gclient):
    assert client.is_server_live() and client.is_server_ready()
    assert gclient.is_server_live() and gclient.is_server_ready()
    assert client.is_model_ready("digits") and gclient.is_model_ready("digits")
    assert not client.is_model_ready("nope") and not gclient.is_model_ready("nope")
    meta = client.get_model_metadata("digits")
    assert meta["platform"] == "onnx_onnxv1" and meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 1, 8, 8]}]
    assert [o["name"] for o in meta["outputs"]] == ["logits", "probabilities"]
    gmeta = gclient.get_model_metadata("digits", as_json=True)
    assert gmeta["inputs"][0]["shape"] == ["-1", "1", "8", "8"]  # int64 in JSON form
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    assert gclient.get_server_metadata().name == "toolkit"
    config = client.get_model_config("digits")
    assert config["max_batch_size"] == 32 and config["input"][0]["dims"] == [1, 8, 8]
    assert client.get_model_config("fixed")["max_batch_size"] == 0  # no dynamic batch axis
    index = {(m["name"], m["state"]) for m in client.get_model_repository_index()}
    assert ("digits", "READY") in index and ("text", "READY") in index


# ---- inference equals onnxruntime ------------------------------------------------------------------------
@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_http_infer_equals_onnxruntime(client, cnn_run, binary):
    x = digits_batch(5)
    ref = reference(cnn_run / "model.onnx", {"input": x})
    inp = tritonhttp.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    out = tritonhttp.InferRequestedOutput("probabilities", binary_data=binary)
    result = client.infer("digits", [inp], outputs=[out], request_id="req-7")
    np.testing.assert_array_equal(result.as_numpy("probabilities"), ref["probabilities"])
    response = result.get_response()
    assert response["id"] == "req-7" and response["model_version"] == "1"
    assert [o["name"] for o in response["outputs"]] == ["probabilities"]  # requested outputs honoured
    everything = client.infer("digits", [inp])  # no outputs named: all of them
    np.testing.assert_array_equal(everything.as_numpy("logits"), ref["logits"])


def test_grpc_infer_equals_onnxruntime(gclient, cnn_run):
    x = digits_batch(4, seed=1)
    ref = reference(cnn_run / "model.onnx", {"input": x})
    inp = tritongrpc.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    result = gclient.infer("digits", [inp], model_version="1", request_id="g1")
    np.testing.assert_array_equal(result.as_numpy("logits"), ref["logits"])
    np.testing.assert_array_equal(result.as_numpy("probabilities"), ref["probabilities"])
    assert result.get_response().id == "g1"


def test_json_nested_data_is_accepted(server, cnn_run):
    x = digits_batch(2, seed=2)
    ref = reference(cnn_run / "model.onnx", {"input": x})
    doc = {"inputs": [{"name": "input", "shape": [2, 1, 8, 8], "datatype": "FP32", "data": x.tolist()}]}
    status, body = post_json(server.port, "/v2/models/digits/versions/1/infer", doc)
    assert status == 200, body
    out = {o["name"]: np.array(o["data"], np.float32).reshape(o["shape"]) for o in body["outputs"]}
    np.testing.assert_allclose(out["probabilities"], ref["probabilities"], rtol=1e-6)


def test_bytes_text_model_over_http_and_grpc(client, gclient, text_run):
    texts = np.array(["the cat sat on the mat", "der hund ist hier", "el perro"], dtype=object)
    ref = reference(text_run / "model.text.onnx", {"text": texts})
    for binary in (True, False):
        inp = tritonhttp.InferInput("text", [3], "BYTES")
        inp.set_data_from_numpy(texts, binary_data=binary)
        result = client.infer(
            "text", [inp], outputs=[tritonhttp.InferRequestedOutput("probabilities", binary)]
        )
        np.testing.assert_array_equal(result.as_numpy("probabilities"), ref["probabilities"])
    ginp = tritongrpc.InferInput("text", [3], "BYTES")
    ginp.set_data_from_numpy(texts)
    np.testing.assert_array_equal(gclient.infer("text", [ginp]).as_numpy("logits"), ref["logits"])


def _dtype_inputs(mod, rows: int = 2, binary: bool = True):
    rng = np.random.default_rng(3)
    arrays, inputs = {}, []
    for dt, np_type in DTYPES.items():
        if dt == "BYTES":
            a = np.array([[f"w{i}{j}é" for j in range(3)] for i in range(rows)], dtype=object)
        elif dt == "BOOL":
            a = rng.random((rows, 3)) > 0.5
        elif dt.startswith("FP"):
            a = rng.normal(size=(rows, 3)).astype(np_type)
        else:
            info = np.iinfo(np_type)
            a = np.array([[info.min, info.max, 7]] * rows, dtype=np_type)
        arrays[dt] = a
        inp = mod.InferInput(f"in_{dt}", [rows, 3], dt)
        if mod is tritonhttp:
            inp.set_data_from_numpy(a, binary_data=binary)
        else:
            inp.set_data_from_numpy(a)
        inputs.append(inp)
    return arrays, inputs


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_every_datatype_round_trips_over_http(client, binary):
    arrays, inputs = _dtype_inputs(tritonhttp, binary=binary)
    outs = [tritonhttp.InferRequestedOutput(f"out_{dt}", binary_data=binary) for dt in DTYPES]
    result = client.infer("dtypes", inputs, outputs=outs)
    for dt, a in arrays.items():
        got = result.as_numpy(f"out_{dt}")
        if dt == "BYTES":
            got = np.vectorize(lambda b: b.decode() if isinstance(b, bytes) else b, otypes=[object])(got)
        np.testing.assert_array_equal(got, a, err_msg=dt)
        assert result.get_output(f"out_{dt}")["datatype"] == dt


def test_every_datatype_round_trips_over_grpc(gclient):
    arrays, inputs = _dtype_inputs(tritongrpc)
    result = gclient.infer("dtypes", inputs)
    for dt, a in arrays.items():
        got = result.as_numpy(f"out_{dt}")
        if dt == "BYTES":
            got = np.vectorize(lambda b: b.decode(), otypes=[object])(got)
        np.testing.assert_array_equal(got, a, err_msg=dt)


def test_grpc_carries_messages_above_4_mb(gclient):
    x = np.random.default_rng(4).random((2, 700_000), dtype=np.float32)  # 5.6 MB each way
    inp = tritongrpc.InferInput("x", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    np.testing.assert_array_equal(gclient.infer("big", [inp]).as_numpy("y"), x + 1)


# ---- KServe V1 ---------------------------------------------------------------------------------------------
def test_v1_predict_on_raw_inputs(server, cnn_run, text_run):
    from sklearn.datasets import load_digits

    images = load_digits().images[:3]  # raw pixels 0..16, the training data's units
    status, body = post_json(server.port, "/v1/models/digits:predict", {"instances": images.tolist()})
    assert status == 200, body
    meta = json.loads((cnn_run / "model.json").read_text())
    pre = meta["inputs"][0]["preprocessing"]
    x = ((images * pre["image"]["pixel_scale"] - pre["mean"][0]) / pre["std"][0]).astype(np.float32)
    probs = reference(cnn_run / "model.onnx", {"input": x[:, None]})["probabilities"]
    labels = [meta["labels"][i] for i in probs.argmax(1)]
    assert [p["label"] for p in body["predictions"]] == labels
    texts = ["the cat sat on the mat", "der hund ist hier"]
    status, body = post_json(server.port, "/v1/models/text:predict", {"instances": texts})
    assert status == 200, body
    probs = reference(text_run / "model.text.onnx", {"text": np.array(texts, dtype=object)})["probabilities"]
    text_labels = json.loads((text_run / "model.text.json").read_text())["labels"]
    assert [p["label"] for p in body["predictions"]] == [text_labels[i] for i in probs.argmax(1)]
    status, body = post_json(server.port, "/v1/models/digits:predict", {"instances": [[1, 2]]})
    assert status == 400 and "instance 0" in body["error"]


# ---- bad input -------------------------------------------------------------------------------------------
def _body(name="input", dt="FP32", shape=(1, 1, 8, 8), n=64):
    return {"inputs": [{"name": name, "datatype": dt, "shape": list(shape), "data": [0.5] * n}]}


PAST_END_HEAD = json.dumps(
    {
        "inputs": [
            {
                "name": "input",
                "datatype": "FP32",
                "shape": [1, 1, 8, 8],
                "parameters": {"binary_data_size": 256},
            }
        ]
    }
).encode()
BAD = [
    ("malformed JSON", "/v2/models/digits/infer", b'{"inputs": [', {}, 400, "not valid JSON"),
    ("not an object", "/v2/models/digits/infer", b"[1, 2]", {}, 400, "JSON object"),
    ("no inputs", "/v2/models/digits/infer", {"inputs": []}, {}, 400, "non-empty 'inputs'"),
    (
        "wrong datatype",
        "/v2/models/digits/infer",
        _body(dt="FP64"),
        {},
        400,
        "datatype FP64; model 'digits' expects FP32",
    ),
    ("unknown datatype", "/v2/models/digits/infer", _body(dt="FLOAT"), {}, 400, "unknown datatype 'FLOAT'"),
    (
        "wrong shape",
        "/v2/models/digits/infer",
        _body(shape=(1, 1, 8, 9), n=72),
        {},
        400,
        "shape [1, 1, 8, 9]",
    ),
    ("wrong rank", "/v2/models/digits/infer", _body(shape=(1, 64)), {}, 400, "expects [-1, 1, 8, 8]"),
    ("unknown input", "/v2/models/digits/infer", _body(name="pixels"), {}, 400, "unknown input 'pixels'"),
    ("data length", "/v2/models/digits/infer", _body(n=63), {}, 400, "63 values do not fill shape"),
    (
        "strings as FP32",
        "/v2/models/digits/infer",
        {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 1, 8, 8], "data": ["a"] * 64}]},
        {},
        400,
        "numbers that fit FP32",
    ),
    (
        "negative shape",
        "/v2/models/digits/infer",
        _body(shape=(-1, 1, 8, 8)),
        {},
        400,
        "non-negative integers",
    ),
    (
        "unknown output",
        "/v2/models/digits/infer",
        {**_body(), "outputs": [{"name": "nope"}]},
        {},
        400,
        "unknown output 'nope'",
    ),
    (
        "binary past the end",
        "/v2/models/digits/infer",
        PAST_END_HEAD + b"abc",
        {"Inference-Header-Content-Length": str(len(PAST_END_HEAD))},
        400,
        "binary_data_size 256",
    ),
    (
        "bad header length",
        "/v2/models/digits/infer",
        b"{}",
        {"Inference-Header-Content-Length": "x"},
        400,
        "must be an integer",
    ),
    ("unknown model", "/v2/models/nope/infer", _body(), {}, 404, "unknown model 'nope'"),
    ("unknown version", "/v2/models/digits/versions/9/infer", _body(), {}, 404, "no version '9'"),
    ("unknown endpoint", "/v2/nothing", _body(), {}, 404, "no endpoint"),
]


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_requests_get_a_clear_error_and_the_server_keeps_serving(server, case):
    _, path, doc, headers, status, message = case
    got_status, body = post_json(server.port, path, doc, headers)
    assert got_status == status, body
    assert set(body) == {"error"} and message in body["error"], body
    assert post_json(server.port, "/v2/models/digits/infer", _body())[0] == 200


def test_mutated_requests_never_get_a_5xx(server):
    """A small fuzz in the spirit of Triton's L0_http_fuzz: 400 random mutations of valid JSON and binary
    requests (flipped bytes, wrong-typed fields, lying header lengths, trailing bytes) -> only 200 or 4xx."""
    rng = random.Random(0)
    valid = {
        "id": "x",
        "inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": [0.5] * 64}],
        "outputs": [{"name": "logits", "parameters": {"binary_data": True}}],
    }
    junk = [None, True, -1, 0, 2**70, 1.5, "", "x", [], {}, [[1]], {"a": 1}, "BYTES", [1, -1], [0]]
    statuses = set()
    for _ in range(400):
        doc = json.loads(json.dumps(valid))
        headers = {}
        if rng.random() < 0.25:
            body = bytearray(json.dumps(valid).encode())
            for _ in range(rng.randrange(1, 5)):
                body[rng.randrange(len(body))] = rng.randrange(256)
            body = bytes(body)
        else:
            target = rng.choice([doc, doc["inputs"][0], doc["outputs"][0], doc["outputs"][0]["parameters"]])
            key = rng.choice([*target, "parameters", "binary_data_size", "binary_data_output", "data"])
            target[key] = rng.choice(junk)
            body = json.dumps(doc).encode()
            if rng.random() < 0.3:
                headers["Inference-Header-Content-Length"] = str(
                    rng.choice([0, len(body), len(body) - 3, -5])
                )
                body += rng.randbytes(rng.randrange(300))
        status, data, _ = request(server.port, "POST", "/v2/models/digits/infer", body, headers)
        statuses.add(status)
        assert status < 500, (body[:300], data)
    assert statuses <= {200, 400} and 400 in statuses


def test_unknown_model_metadata_is_404_over_http_and_grpc(server, gclient):
    status, body = get(server.port, "/v2/models/nope")
    assert status == 404 and b"unknown model" in body
    with pytest.raises(InferenceServerException, match="unknown model"):
        gclient.get_model_metadata("nope")
    inp = tritongrpc.InferInput("input", [1, 1, 8, 7], "FP32")
    inp.set_data_from_numpy(np.zeros((1, 1, 8, 7), np.float32))
    with pytest.raises(InferenceServerException, match=r"expects \[-1, 1, 8, 8\]"):
        gclient.infer("digits", [inp])


# ---- batching, load, metrics -----------------------------------------------------------------------------
def test_dynamic_batching_gives_each_caller_its_own_rows(server, client, cnn_run):
    """48 concurrent callers, each with distinct inputs of 1-3 rows: each gets exactly its rows' outputs."""
    rng = np.random.default_rng(5)
    xs = [rng.normal(size=(1 + i % 3, 1, 8, 8)).astype(np.float32) for i in range(48)]
    allx = np.concatenate(xs)
    ref = reference(cnn_run / "model.onnx", {"input": allx})["logits"]
    bounds = np.cumsum([0] + [len(x) for x in xs])

    def call(i: int) -> np.ndarray:
        x = xs[i]
        c = tritonhttp.InferenceServerClient(f"127.0.0.1:{server.port}")
        inp = tritonhttp.InferInput("input", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        return c.infer("digits", [inp], outputs=[tritonhttp.InferRequestedOutput("logits")]).as_numpy(
            "logits"
        )

    before = _metric(server, "toolkit_inference_batch_size_sum", "digits")
    count_before = _metric(server, "toolkit_inference_batch_size_count", "digits")
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(call, range(48)))
    for i, got in enumerate(results):
        np.testing.assert_allclose(got, ref[bounds[i] : bounds[i + 1]], rtol=1e-5, atol=1e-6)
    rows = _metric(server, "toolkit_inference_batch_size_sum", "digits") - before
    calls = _metric(server, "toolkit_inference_batch_size_count", "digits") - count_before
    assert calls == 48
    # each request observes the rows of the batch that served it: alone, that is its own rows
    assert rows > sum(len(x) for x in xs), "no request was batched with another"


def test_model_without_batch_axis_is_served_unbatched(server):
    def call(i: int):
        doc = {
            "inputs": [
                {
                    "name": f"in_{dt}",
                    "datatype": dt,
                    "shape": [2, 3],
                    "data": [i % 2] * 6 if dt != "BYTES" else [str(i)] * 6,
                }
                for dt in DTYPES
            ],
            "outputs": [{"name": "out_INT32"}],
        }
        return post_json(server.port, "/v2/models/fixed/infer", doc)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(call, range(16)))
    for i, (status, body) in enumerate(results):
        assert status == 200, body
        assert body["outputs"][0]["data"] == [i % 2] * 6
    assert _metric(server, "toolkit_inference_batch_size_sum", "fixed") == 2 * 16  # never merged


def _metric(server, name: str, model: str) -> float:
    _, text = get(server.port, "/metrics")
    for line in text.decode().splitlines():
        if line.startswith(name + "{") and f'model="{model}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_and_statistics(server, client):
    _, text = get(server.port, "/metrics")
    text = text.decode()
    for name in (
        "toolkit_inference_request_success_total",
        "toolkit_inference_request_failure_total",
        "toolkit_inference_request_duration_seconds_bucket",
        "toolkit_inference_queue_duration_seconds_bucket",
        "toolkit_inference_batch_size_bucket",
    ):
        assert f"{name}{{" in text and 'model="digits",version="1"' in text, name
    assert _metric(server, "toolkit_inference_request_success_total", "digits") > 0
    assert _metric(server, "toolkit_inference_request_failure_total", "digits") > 0  # the bad-input suite
    stats = client.get_inference_statistics("digits")["model_stats"][0]
    assert stats["name"] == "digits" and stats["inference_count"] >= stats["execution_count"] > 0
    assert stats["inference_stats"]["success"]["count"] > 0


def test_load_many_clients_no_errors_bounded_memory(server):
    """4,000 requests from 32 concurrent keep-alive clients: all 200; RSS growth after warm-up bounded."""
    x = digits_batch(1, seed=6)
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": [1, 1, 8, 8],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": x.nbytes},
                }
            ]
        }
    ).encode()
    body = head + x.tobytes()
    headers = {"Inference-Header-Content-Length": str(len(head)), "Content-Type": "application/octet-stream"}
    errors: list = []

    def client_loop(n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        for _ in range(n):
            conn.request("POST", "/v2/models/digits/infer", body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                errors.append(resp.status)
        conn.close()

    def burst(per_client: int) -> None:
        threads = [threading.Thread(target=client_loop, args=(per_client,)) for _ in range(32)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    burst(25)  # warm-up: 800 requests
    rss0 = server.rss_kb()
    t0 = time.perf_counter()
    burst(125)  # 4,000 requests
    elapsed = time.perf_counter() - t0
    growth_mb = (server.rss_kb() - rss0) / 1024
    assert errors == []
    assert growth_mb < 30, f"RSS grew {growth_mb:.1f} MB over 4,000 requests"
    assert 4000 / elapsed > 100  # a sanity floor on a busy 2-core machine, not a benchmark


# ---- reload ----------------------------------------------------------------------------------------------
def test_failed_reload_keeps_the_old_version_and_a_good_one_replaces_it(server, client, repo, cnn_run):
    x = digits_batch(1, seed=7)
    before = post_json(server.port, "/v2/models/reloadable/infer", _body())
    assert before[0] == 200
    broken = repo / "reloadable" / "2"
    broken.mkdir()
    (broken / "model.onnx").write_bytes(b"\x08\x07 not really a model")
    with pytest.raises(InferenceServerException, match="previous versions keep serving"):
        client.load_model("reloadable")
    assert client.get_model_metadata("reloadable")["versions"] == ["1"]
    assert post_json(server.port, "/v2/models/reloadable/infer", _body()) == before
    shutil.rmtree(broken)
    good = repo / "reloadable" / "3"
    good.mkdir()
    shutil.copy(cnn_run / "model.onnx", good / "model.onnx")
    client.load_model("reloadable")
    assert client.get_model_metadata("reloadable")["versions"] == ["1", "3"]
    inp = tritonhttp.InferInput("input", [1, 1, 8, 8], "FP32")
    inp.set_data_from_numpy(x)
    result = client.infer("reloadable", [inp])
    assert result.get_response()["model_version"] == "3"  # the newest serves by default
    client.unload_model("reloadable")
    assert get(server.port, "/v2/models/reloadable")[0] == 404
    assert client.is_model_ready("digits")


# ---- Triton's extensions over gRPC: the REST answers --------------------------------------------------------
def test_grpc_config_statistics_and_index_equal_rest(server, client, gclient):
    """tritonclient.grpc's get_model_config / get_inference_statistics / get_model_repository_index give the
    REST answers field for field (the REST JSON parsed into Triton's own messages)."""
    from google.protobuf import json_format
    from tritonclient.grpc import model_config_pb2, service_pb2

    for name in ("digits", "fixed", "text"):
        rest = json_format.ParseDict(client.get_model_config(name), model_config_pb2.ModelConfig())
        assert gclient.get_model_config(name).config == rest, name
    config = gclient.get_model_config("digits").config
    assert config.max_batch_size == 32 and list(config.input[0].dims) == [1, 8, 8]
    assert config.input[0].data_type == model_config_pb2.TYPE_FP32
    assert config.dynamic_batching.default_queue_policy.max_queue_size == 1024
    for kwargs in ({"model_name": "digits"}, {"model_name": "digits", "model_version": "1"}, {}):
        rest = json_format.ParseDict(
            client.get_inference_statistics(**kwargs), service_pb2.ModelStatisticsResponse()
        )
        assert gclient.get_inference_statistics(**kwargs) == rest, kwargs
    stats = gclient.get_inference_statistics("digits").model_stats[0]
    assert stats.inference_stats.success.count > 0 and stats.execution_count > 0
    rest_index = {(m["name"], m["version"], m["state"]) for m in client.get_model_repository_index()}
    grpc_index = {(m.name, m.version, m.state) for m in gclient.get_model_repository_index().models}
    assert grpc_index == rest_index and ("digits", "1", "READY") in grpc_index


def test_grpc_unload_and_load_act_like_rest(server, client, gclient):
    gclient.unload_model("fixed")
    assert not gclient.is_model_ready("fixed") and not client.is_model_ready("fixed")
    assert get(server.port, "/v2/models/fixed")[0] == 404
    states = {m.name: m.state for m in gclient.get_model_repository_index().models}
    assert states["fixed"] == "UNAVAILABLE"
    status, ready = post_json(server.port, "/v2/repository/index", {"ready": True})
    assert (
        status == 200 and "fixed" not in {m["name"] for m in ready} and "digits" in {m["name"] for m in ready}
    )
    gclient.load_model("fixed")
    assert gclient.is_model_ready("fixed") and get(server.port, "/v2/models/fixed")[0] == 200


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda g: g.get_model_config("nope"), "unknown model 'nope'"),
        (lambda g: g.get_model_config(".."), "invalid model name"),
        (lambda g: g.get_inference_statistics("nope"), "unknown model 'nope'"),
        (lambda g: g.get_inference_statistics("digits", "x"), "invalid version"),
        (lambda g: g.load_model("../digits"), "invalid model name"),
        (lambda g: g.load_model("absent"), "failed to load 'absent'"),
        (lambda g: g.unload_model("%2e%2e"), "invalid model name"),
        (lambda g: g.unload_model("absent"), "not loaded"),
    ],
)
def test_grpc_extension_errors_are_the_rest_errors(gclient, call, match):
    with pytest.raises(InferenceServerException, match=match):
        call(gclient)


# ---- security, limits, torch-free, providers -------------------------------------------------------------
def test_api_key_body_limit_and_torch_free_start(repo, cnn_run):
    s = Server(
        cnn_run / "model.onnx",
        "--max-body-mb",
        "0.01",
        "--provider",
        "cuda",
        block_torch=True,
        env={"TOOLKIT_API_KEY": "s3cret"},
    )
    try:
        name = "digits"  # a run's model.onnx serves under the run directory's name
        auth = {"Authorization": "Bearer s3cret"}
        assert get(s.port, "/v2/health/ready")[0] == 200  # health needs no key
        assert get(s.port, "/v2/health/live")[0] == 200
        status, body = post_json(s.port, f"/v2/models/{name}/infer", _body())
        assert status == 401 and "API key" in body["error"]
        status, body = post_json(
            s.port, f"/v2/models/{name}/infer", _body(), {"Authorization": "Bearer nope"}
        )
        assert status == 401
        assert get(s.port, "/metrics")[0] == 401
        assert get(s.port, f"/v2/models/{name}", auth)[0] == 200
        assert post_json(s.port, f"/v2/models/{name}/infer", _body(), auth)[0] == 200
        big = _body(shape=(40, 1, 8, 8), n=40 * 64)  # ~ 12 KB of JSON > 0.01 MB
        status, body = post_json(s.port, f"/v2/models/{name}/infer", big, auth)
        assert status == 413 and "--max-body-mb" in body["error"]
        assert post_json(s.port, f"/v2/models/{name}/infer", _body(), auth)[0] == 200
        g = tritongrpc.InferenceServerClient(f"127.0.0.1:{s.grpc_port}")
        with pytest.raises(InferenceServerException, match="API key"):
            g.get_model_metadata(name)
        assert g.get_model_metadata(name, headers={"authorization": "Bearer s3cret"}).name == name
        assert g.is_server_live()
    finally:
        assert s.stop() == 0
    log = s.stderr()
    assert "falling back to CPUExecutionProvider" in log  # CUDA is not in this onnxruntime
    assert "torch" not in log


def test_live_at_once_ready_only_after_every_model_is_loaded(workdir, cnn_run, text_run):
    """40 model versions take a while to load and warm up: meanwhile live is 200 and ready 503; the first
    200 from ready comes when every one of them answers."""
    root = workdir / "many"
    for i in range(20):
        for name, src in ((f"d{i}", cnn_run / "model.onnx"), (f"t{i}", text_run / "model.text.onnx")):
            (root / name / "1").mkdir(parents=True)
            shutil.copy(src, root / name / "1" / "model.onnx")
    s = Server(root, "--grpc-port", "0", wait=False)
    seen_live_not_ready = False
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                status = get(s.port, "/v2/health/ready")[0]
            except OSError:
                time.sleep(0.01)
                continue
            if status == 200:
                break
            assert status == 503
            seen_live_not_ready |= get(s.port, "/v2/health/live")[0] == 200
        index = post_json(s.port, "/v2/repository/index", {})[1]
        assert len(index) == 40 and {m["state"] for m in index} == {"READY"}
        assert seen_live_not_ready
    finally:
        assert s.stop() == 0


def test_failed_start_exits_2_with_the_reason(workdir, cnn_run):
    bad = workdir / "badrepo"
    (bad / "good" / "1").mkdir(parents=True)
    shutil.copy(cnn_run / "model.onnx", bad / "good" / "1" / "model.onnx")
    (bad / "broken" / "1").mkdir(parents=True)
    (bad / "broken" / "1" / "model.onnx").write_bytes(b"garbage")
    s = Server(bad, wait=False)
    code = s.proc.wait(60)
    assert code == 2
    assert "broken" in s.stderr() and "cannot load" in s.stderr()


def test_sigterm_drains_in_flight_requests_and_exits_0(repo):
    """Requests held in the batch queue (--max-queue-delay-ms 400) when SIGTERM arrives all complete with
    200; readiness turns 503 during the drain; the process exits 0 and stops listening."""
    s = Server(repo, "--max-queue-delay-ms", "400", "--max-batch-size", "64", block_torch=True)
    results: list = []

    def call() -> None:
        results.append(post_json(s.port, "/v2/models/digits/infer", _body())[0])

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.15)
    s.proc.send_signal(signal.SIGTERM)
    time.sleep(0.05)
    try:
        ready = get(s.port, "/v2/health/ready")[0]
    except OSError:
        ready = None  # the listener may already be closed: also not ready
    for t in threads:
        t.join()
    assert s.proc.wait(30) == 0, s.stderr()
    assert results == [200] * 8
    assert ready in (503, None)
    with pytest.raises(OSError):
        get(s.port, "/v2/health/live")
    assert "drained and stopped" in s.stderr()


def test_workers_share_the_port_and_stop_together(cnn_run):
    s = Server(cnn_run, "--workers", "2", "--grpc-port", "0")
    try:
        statuses = {post_json(s.port, "/v2/models/digits/infer", _body())[0] for _ in range(20)}
        assert statuses == {200}
    finally:
        assert s.stop() == 0
    assert s.stderr().count("drained and stopped") == 2


# ---- CLI -------------------------------------------------------------------------------------------------
def test_cli_refuses_bad_paths_and_flags(cli, tmp_path):
    result = cli("serve", tmp_path / "missing.onnx")
    assert result.exit_code == 2
    assert_one_line_error(result, "nothing to serve")
    (tmp_path / "empty").mkdir()
    result = cli("serve", tmp_path / "empty")
    assert result.exit_code == 2
    assert_one_line_error(result, "holds no models")
    result = cli("serve", tmp_path / "empty", "--max-batch-size", "0")
    assert result.exit_code == 2
    assert_one_line_error(result, "--max-batch-size must be at least 1")
    result = cli("serve", "--help")
    assert result.exit_code == 0 and "Open Inference Protocol" in result.output


def test_codec_round_trip_binary_and_json():
    """The pure codec: a binary request decodes to the arrays sent; outputs encode to what tritonclient reads."""
    from toolkit.runtime.server.protocol import InferRequest, pack_bytes, unpack_bytes

    x = np.arange(6, dtype=np.float16).reshape(2, 3)
    head = json.dumps(
        {
            "id": "a",
            "inputs": [
                {"name": "x", "datatype": "FP16", "shape": [2, 3], "parameters": {"binary_data_size": 12}}
            ],
        }
    ).encode()
    req = decode_http(head + x.tobytes(), len(head))
    np.testing.assert_array_equal(req.inputs[0].array, x)
    assert req.id == "a"
    body, n = encode_http("m", "1", InferRequest([], binary_default=True), {"y": x})
    assert json.loads(body[:n])["outputs"][0]["parameters"] == {"binary_data_size": 12}
    np.testing.assert_array_equal(np.frombuffer(body[n:], np.float16).reshape(2, 3), x)
    assert unpack_bytes(pack_bytes(np.array(["ab", "", "é"], dtype=object)), "t") == [
        b"ab",
        b"",
        "é".encode(),
    ]
