"""The server's limits, seen from the client: a body over --max-body-mb always gets its 413 (lingering close),
a full model queue answers 503 / UNAVAILABLE with a retry hint, a request that waits past --request-timeout-s
in the queue is answered instead of run, and a gRPC client's deadline frees its place in the queue.

Real servers on loopback; raw sockets where a client's exact behaviour matters (send everything, then read)."""

from __future__ import annotations

import http.client
import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_one_line_error
from test_server import Server, identity_model, post_json

tritongrpc = pytest.importorskip("tritonclient.grpc")
from tritonclient.utils import InferenceServerException  # noqa: E402

LIMIT_MB = 0.25
BIG = 4 * 1024 * 1024  # 16x the limit


def slow_model(path: Path) -> Path:
    """y = x after a busy loop: a Loop of `n` iterations adding 0 to x ([batch, 1] float32, n from INT64 input).
    Lets a test hold onnxruntime busy for as long as it asks, with no sleep in the server."""
    import onnx
    from onnx import TensorProto, helper

    zero = helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("Add", ["acc_in", "zero"], ["acc_out"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, ["batch", 1]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, ["batch", 1]),
        ],
        [zero],
    )
    true = helper.make_tensor("true", TensorProto.BOOL, [], [True])
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMax", ["n"], ["trips"], keepdims=0),
            helper.make_node("Loop", ["trips", "true", "x"], ["y"], body=body),
        ],
        "slow",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1]),
            helper.make_tensor_value_info("n", TensorProto.INT64, ["batch", 1]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1])],
        [true],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)
    return path


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("limits") / "repo"
    identity_model(root / "ids" / "1" / "model.onnx")
    slow_model(root / "slow" / "1" / "model.onnx")
    return root


# ---- 413 with lingering close ----------------------------------------------------------------------------
def read_response(sock: socket.socket) -> tuple[int, dict, bytes]:
    """Status, headers and body of one response read to the end (the server closes after a 413)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a full response head: {data[:200]!r}")
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    length = int(headers["content-length"])
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed in the middle of the response body")
        rest += chunk
    return int(lines[0].split()[1]), headers, rest[:length]


def raw_post(port: int, body: bytes, *, chunked: bool = False, pause_s: float = 0.0, close: bool = False):
    """A naive client: sends the whole request (in 64 KB pieces, `pause_s` apart), only then reads."""
    head = ["POST /v2/models/ids/infer HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    head.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {len(body)}")
    if close:
        head.append("Connection: close")
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        for at in range(0, len(body), 65536):
            piece = body[at : at + 65536]
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            if pause_s:
                time.sleep(pause_s)
        if chunked:
            sock.sendall(b"0\r\n\r\n")
        return read_response(sock)


def http_client_post(port: int, body: bytes, close: bool):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        headers = {"Content-Type": "application/json", **({"Connection": "close"} if close else {})}
        conn.request("POST", "/v2/models/ids/infer", body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def test_an_oversized_body_gets_its_413_100_times_out_of_100(repo):
    """100 bodies 16x over the limit from fast clients (http.client, with and without Connection: close),
    chunked clients (no Content-Length: the limit trips mid-body) and slow clients (64 KB every 20 ms):
    every one reads the 413 and its JSON error; then the server still answers."""
    s = Server(repo, "--max-body-mb", str(LIMIT_MB), "--grpc-port", "0")
    body = b"[" * BIG
    kinds = (
        [lambda: http_client_post(s.port, body, close=True)] * 40
        + [lambda: http_client_post(s.port, body, close=False)] * 30
        + [lambda: raw_post(s.port, body, close=True)] * 10
        + [lambda: raw_post(s.port, body, chunked=True)] * 15
        + [lambda: raw_post(s.port, body[: 1024 * 1024], pause_s=0.02)] * 5
    )
    outcomes = []

    def attempt(call) -> str:
        try:
            status, _, data = call()
        except OSError as exc:
            return f"{type(exc).__name__}: {exc}"
        error = json.loads(data).get("error", "")
        return "413" if status == 413 and "--max-body-mb" in error else f"{status} {data[:100]!r}"

    try:
        with ThreadPoolExecutor(6) as pool:
            outcomes = list(pool.map(attempt, [k for k in kinds]))
        assert len(outcomes) == 100
        assert outcomes == ["413"] * 100, [o for o in outcomes if o != "413"][:5]
        assert post_json(s.port, "/v2/models/ids/infer", {"inputs": []})[0] == 400  # still serving
    finally:
        assert s.stop() == 0, s.stderr()


def test_expect_100_continue_gets_the_413_without_sending_the_body(repo):
    """curl's way: headers with Expect: 100-continue, then wait; the server answers 413 and never asks for
    the body."""
    s = Server(repo, "--max-body-mb", str(LIMIT_MB), "--grpc-port", "0")
    try:
        head = (
            "POST /v2/models/ids/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {BIG}\r\nExpect: 100-continue\r\n\r\n"
        )
        with socket.create_connection(("127.0.0.1", s.port), timeout=10) as sock:
            sock.sendall(head.encode())
            status, headers, data = read_response(sock)
            assert status == 413 and headers.get("connection") == "close"
            assert "--max-body-mb" in json.loads(data)["error"]
            sock.settimeout(10)
            assert sock.recv(100) == b""  # the server closed: no 100 Continue, nothing more
    finally:
        assert s.stop() == 0, s.stderr()


# ---- queue limit and timeouts ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trips_per_second(repo) -> float:
    """Loop trips of the slow model per second on this machine (measured, so a test can ask for ~1 s)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(
        str(repo / "slow" / "1" / "model.onnx"), opts, providers=["CPUExecutionProvider"]
    )
    feeds = {"x": np.ones((1, 1), np.float32), "n": np.full((1, 1), 50_000, np.int64)}
    sess.run(None, feeds)
    t0 = time.perf_counter()
    sess.run(None, feeds)
    return 50_000 / (time.perf_counter() - t0)


def slow_body(trips: int, timeout_us: int | None = None) -> dict:
    doc = {
        "inputs": [
            {"name": "x", "datatype": "FP32", "shape": [1, 1], "data": [1.0]},
            {"name": "n", "datatype": "INT64", "shape": [1, 1], "data": [trips]},
        ]
    }
    if timeout_us is not None:
        doc["parameters"] = {"timeout": timeout_us}
    return doc


def post_slow(port: int, trips: int, timeout_us: int | None = None) -> tuple[int, dict, dict, float]:
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        body = json.dumps(slow_body(trips, timeout_us)).encode()
        conn.request("POST", "/v2/models/slow/infer", body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read()), dict(resp.getheaders()), time.perf_counter() - t0
    finally:
        conn.close()


def grpc_slow(client, trips: int, **kwargs):
    x = tritongrpc.InferInput("x", [1, 1], "FP32")
    x.set_data_from_numpy(np.ones((1, 1), np.float32))
    n = tritongrpc.InferInput("n", [1, 1], "INT64")
    n.set_data_from_numpy(np.full((1, 1), trips, np.int64))
    return client.infer("slow", [x, n], **kwargs)


def wait_for_stat(port: int, key: str, at_least: int, timeout: float = 10.0) -> int:
    """Poll /v2/models/slow/stats until inference_stats[key].count reaches `at_least`."""
    deadline = time.time() + timeout
    while True:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/v2/models/slow/stats")
        stats = json.loads(conn.getresponse().read())["model_stats"][0]
        conn.close()
        count = stats["inference_stats"][key]["count"] if key != "execution" else stats["execution_count"]
        if count >= at_least or time.time() > deadline:
            return count
        time.sleep(0.02)


def trailing_metadata_of_refusal(port: int) -> dict:
    """One raw gRPC ModelInfer (the server's own stubs) expected to be refused: its trailing metadata."""
    import grpc

    from toolkit.runtime.server import grpc_service_pb2 as pb
    from toolkit.runtime.server import grpc_service_pb2_grpc as pb_grpc

    request = pb.ModelInferRequest(model_name="slow")
    for name, datatype, raw in (("x", "FP32", np.ones(1, "<f4")), ("n", "INT64", np.ones(1, "<i8"))):
        request.inputs.add(name=name, datatype=datatype, shape=[1, 1])
        request.raw_input_contents.append(raw.tobytes())
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        with pytest.raises(grpc.RpcError) as info:
            pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=10)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    return {k: v for k, v in info.value.trailing_metadata() if "retry" in k}


def test_a_full_queue_answers_503_with_retry_after_at_once(repo, trips_per_second):
    """One onnxruntime slot busy for ~1.5 s, two requests waiting (--max-queue-size 2): the next request
    over HTTP gets 503 + Retry-After and over gRPC (tritonclient, then raw stubs for the trailing metadata)
    UNAVAILABLE + retry pushback, all at once; the queued ones are then served."""
    s = Server(repo, "--max-queue-size", "2", "--instances", "1", "--max-batch-size", "1")
    long = int(trips_per_second * 1.5)
    try:
        with ThreadPoolExecutor(3) as pool:
            running = pool.submit(post_slow, s.port, long)
            assert wait_for_stat(s.port, "queue", 1) >= 1  # the first has left the queue and runs
            queued = [pool.submit(post_slow, s.port, 1) for _ in range(2)]
            time.sleep(0.3)  # both are in the queue now (the slot is busy for another second)
            status, body, headers, seconds = post_slow(s.port, 1)
            assert status == 503 and "--max-queue-size 2" in body["error"], body
            assert headers.get("retry-after") == "1" and not running.done()  # at once, not after a wait
            g = tritongrpc.InferenceServerClient(f"127.0.0.1:{s.grpc_port}")
            with pytest.raises(InferenceServerException) as info:
                grpc_slow(g, 1)
            assert "StatusCode.UNAVAILABLE" in str(info.value.status()) and "overloaded" in str(info.value)
            assert trailing_metadata_of_refusal(s.grpc_port) == {
                "retry-after": "1",
                "grpc-retry-pushback-ms": "1000",
            }
            assert running.result()[0] == 200
            assert [q.result()[0] for q in queued] == [200, 200]
        metrics = http.client.HTTPConnection("127.0.0.1", s.port)
        metrics.request("GET", "/metrics")
        text = metrics.getresponse().read().decode()
        assert (
            'toolkit_inference_request_rejected_total{model="slow",reason="queue_full",version="1"} 3.0'
            in text
        )
    finally:
        assert s.stop() == 0, s.stderr()


def test_a_request_waiting_past_the_queue_timeout_is_answered_not_run(repo, trips_per_second):
    """--queue-timeout-s 0.3 with the only slot busy for ~1.5 s: the waiting request gets 503 after ~0.3 s
    and never runs; a request's own `timeout` parameter (Triton's, in microseconds) shortens the wait, and a
    gRPC client's deadline takes its request out of the queue."""
    s = Server(
        repo, "--queue-timeout-s", "0.3", "--instances", "1", "--max-batch-size", "1", "--max-queue-size", "1"
    )
    long = int(trips_per_second * 1.5)
    try:
        with ThreadPoolExecutor(2) as pool:
            running = pool.submit(post_slow, s.port, long)
            wait_for_stat(s.port, "queue", 1)
            status, body, headers, seconds = post_slow(s.port, 1)
            assert status == 503 and "without starting" in body["error"] and headers.get("retry-after") == "1"
            assert seconds >= 0.25 and not running.done(), seconds  # waited its limit, not for the slot
            status, body, _, seconds = post_slow(s.port, 1, timeout_us=100_000)  # 0.1 s of its own
            assert status == 503 and "limit 0.1 s" in body["error"] and not running.done(), (status, body)
            g = tritongrpc.InferenceServerClient(f"127.0.0.1:{s.grpc_port}")
            with pytest.raises(InferenceServerException, match="Deadline"):
                grpc_slow(g, 1, client_timeout=0.1)
            # the abandoned gRPC request left the queue (size 1): the next one waits instead of a 503
            status, body, _, _ = post_slow(s.port, 1, timeout_us=150_000)
            assert status == 503 and "without starting" in body["error"], body  # waited, not refused
            assert running.result()[0] == 200
        assert wait_for_stat(s.port, "execution", 1) == 1  # only the long request ever ran
    finally:
        assert s.stop() == 0, s.stderr()


def test_cli_refuses_bad_limits(cli, repo):
    assert_one_line_error(cli("serve", repo, "--max-queue-size", "-1"), "--max-queue-size must be at least 0")
    assert_one_line_error(cli("serve", repo, "--queue-timeout-s", "-2"), "--queue-timeout-s must be >= 0")
    result = cli("serve", "--help")
    assert "--max-queue-size" in result.output and "--queue-timeout-s" in result.output
