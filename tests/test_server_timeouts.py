"""Slow clients (slowloris) cannot hold the server's connections: request headers that do not arrive within
--header-timeout-s, or a body that does not arrive within --body-timeout-s, get a 408 with the JSON error and
the connection is closed, while other clients are answered as usual. Raw sockets on loopback, real server."""

from __future__ import annotations

import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from helpers import assert_one_line_error
from test_server import Server, get, identity_model
from test_server_limits import read_response

from toolkit.runtime.server.timeouts import BODY_TIMEOUT_S, HEADER_TIMEOUT_S


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repo = tmp_path_factory.mktemp("timeouts") / "repo"
    identity_model(repo / "ids" / "1" / "model.onnx")
    s = Server(repo, "--header-timeout-s", "1", "--body-timeout-s", "1.5", "--grpc-port", "0")
    yield s
    assert s.stop() == 0, s.stderr()


def drip(sock: socket.socket, data: bytes, every_s: float, until: float) -> None:
    """Send `data` a byte at a time, `every_s` apart, until the deadline or until the server closes."""
    for byte in data:
        if time.monotonic() > until:
            return
        try:
            sock.sendall(bytes([byte]))
        except OSError:  # closed by the server: what the test waits for
            return
        time.sleep(every_s)


def closed_with_408(sock: socket.socket, flag: str) -> float:
    """Reads the 408 and the close; returns the seconds it took from now."""
    t0 = time.monotonic()
    status, headers, body = read_response(sock)
    assert status == 408 and headers.get("connection") == "close", (status, headers)
    assert flag in json.loads(body)["error"]
    assert sock.recv(100) == b""  # closed
    return time.monotonic() - t0


def test_headers_sent_a_byte_at_a_time_get_408_and_close(server):
    head = b"POST /v2/models/ids/infer HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200 + b"\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
        t0 = time.monotonic()
        with ThreadPoolExecutor(1) as pool:
            pool.submit(drip, sock, head, 0.1, t0 + 10)
            closed_with_408(sock, "--header-timeout-s")
        assert time.monotonic() - t0 < 8  # 1 s limit (and load on a shared machine), not the 20 s of bytes


def test_a_connection_that_sends_nothing_is_closed(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
        t0 = time.monotonic()
        closed_with_408(sock, "--header-timeout-s")
        assert time.monotonic() - t0 < 8


def test_a_body_sent_slowly_gets_408_and_close(server):
    head = (
        b"POST /v2/models/ids/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
        sock.sendall(head + b'{"inputs": [')
        t0 = time.monotonic()
        with ThreadPoolExecutor(1) as pool:
            pool.submit(drip, sock, b" " * 900, 0.1, t0 + 10)
            closed_with_408(sock, "--body-timeout-s")
        assert time.monotonic() - t0 < 8


def test_many_slow_clients_do_not_stop_the_others(server):
    """40 slowloris connections at once: each is closed by the deadline, and a normal client is answered
    promptly all the while."""
    socks = [socket.create_connection(("127.0.0.1", server.port), timeout=20) for _ in range(40)]
    try:
        for s in socks:
            s.sendall(b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n")  # never finished
        t0 = time.monotonic()
        assert get(server.port, "/v2/health/ready")[0] == 200
        assert time.monotonic() - t0 < 2
        for s in socks:
            closed_with_408(s, "--header-timeout-s")
    finally:
        for s in socks:
            s.close()
    assert get(server.port, "/v2/models/ids")[0] == 200


def test_a_kept_alive_connection_is_not_cut_by_the_header_deadline(server):
    """The deadline runs per request: a client that takes longer than it in total, over several quick
    requests on one connection, is served each time."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=20)
    try:
        for _ in range(4):
            conn.request("GET", "/v2/health/ready")
            assert conn.getresponse().read() is not None
            time.sleep(0.4)  # 1.6 s in all: over the 1 s header deadline, each request well under it
    finally:
        conn.close()


def test_defaults_are_documented_and_bad_values_refused(cli, tmp_path):
    result = cli("serve", "--help")
    text = " ".join(result.output.split())
    assert "--header-timeout-s" in text and "--body-timeout-s" in text
    assert f"{HEADER_TIMEOUT_S:g}" in text and f"{BODY_TIMEOUT_S:g}" in text
    identity_model(tmp_path / "m.onnx")
    assert_one_line_error(cli("serve", tmp_path / "m.onnx", "--body-timeout-s", "-1"), "--body-timeout-s")


def test_the_defaults_are_in_the_docs():
    page = (Path(__file__).resolve().parents[1] / "docs" / "serve-reliability.md").read_text()
    assert "--header-timeout-s" in page and "--body-timeout-s" in page
