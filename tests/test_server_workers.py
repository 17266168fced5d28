"""`toolkit serve --workers N`: every worker serves gRPC on the shared port (SO_REUSEPORT), and /metrics and
/v2/models/.../stats give the whole server's totals whichever worker answers (prometheus_client's
multiprocess mode in a temporary folder, removed at exit)."""

from __future__ import annotations

import http.client
import json
from pathlib import Path

import numpy as np
import pytest
from test_server import Server, big_model, get, post_json

tritongrpc = pytest.importorskip("tritonclient.grpc")
from prometheus_client.multiprocess import MultiProcessCollector  # noqa: E402

BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]}


def children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def successes(files: list[Path]) -> float:
    """toolkit_inference_request_success_total for model `ids`, summed over the given worker files."""
    total = 0.0
    for metric in MultiProcessCollector.merge([str(f) for f in files]):
        for sample in metric.samples:
            if sample.name == "toolkit_inference_request_success_total" and sample.labels["model"] == "ids":
                total += sample.value
    return total


def grpc_infer(port: int) -> None:
    """One call on a connection of its own (a local subchannel pool: no sharing between clients)."""
    client = tritongrpc.InferenceServerClient(
        f"127.0.0.1:{port}", channel_args=[("grpc.use_local_subchannel_pool", 1)]
    )
    x = tritongrpc.InferInput("x", [1, 3], "FP32")
    x.set_data_from_numpy(np.ones((1, 3), np.float32))
    try:
        np.testing.assert_array_equal(client.infer("ids", [x]).as_numpy("y"), np.full((1, 3), 2, np.float32))
    finally:
        client.close()


def fresh_get(port: int, path: str) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        return conn.getresponse().read()
    finally:
        conn.close()


def test_workers_share_grpc_and_report_whole_server_totals(tmp_path):
    repo = tmp_path / "repo"
    big_model(repo / "ids" / "1" / "model.onnx")  # y = x + 1
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    s = Server(repo, "--workers", "2", env={"TMPDIR": str(tmp)})
    try:
        workers = children(s.proc.pid)
        assert len(workers) == 2
        (metrics_dir,) = list(tmp.glob("toolkit-serve-metrics-*"))
        for _ in range(40):  # gRPC only: 40 connections, spread by the kernel
            grpc_infer(s.grpc_port)
        per_worker = {pid: successes(list(metrics_dir.glob(f"*_{pid}.db"))) for pid in workers}
        assert sum(per_worker.values()) == 40 and all(v > 0 for v in per_worker.values()), per_worker
        for _ in range(20):  # then REST, each request on a new connection
            assert post_json(s.port, "/v2/models/ids/infer", BODY)[0] == 200
        # whichever worker answers: the same totals (10 fresh connections each)
        totals = set()
        for _ in range(10):
            stats = json.loads(fresh_get(s.port, "/v2/models/ids/stats"))["model_stats"][0]
            totals.add((stats["inference_stats"]["success"]["count"], stats["execution_count"]))
            text = fresh_get(s.port, "/metrics").decode()
            line = next(
                x for x in text.splitlines() if x.startswith("toolkit_inference_request_success_total{")
            )
            totals.add((float(line.rsplit(" ", 1)[1]),))
        assert totals == {(60, 60), (60.0,)}, totals
        g = tritongrpc.InferenceServerClient(f"127.0.0.1:{s.grpc_port}")
        assert g.get_inference_statistics("ids").model_stats[0].inference_stats.success.count == 60
        assert get(s.port, "/v2/health/ready")[0] == 200
    finally:
        assert s.stop() == 0, s.stderr()
    assert s.stderr().count("drained and stopped") == 2
    assert not metrics_dir.exists()  # removed at exit
