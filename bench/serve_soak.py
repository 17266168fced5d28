"""Soak: `toolkit serve` under mixed REST JSON, REST binary and gRPC traffic for a bounded time (or a bounded
number of requests), with model reloads in between; server memory growth, latency percentiles and every
error written to bench/results/serve_soak.json.

    .venv/bin/python bench/serve_soak.py --minutes 30                 # the default: 30 minutes
    .venv/bin/python bench/serve_soak.py --requests 1000000 --out bench/results/serve_soak_1m.json

The model is a small MLP (64 -> 64 -> 10, built here with onnx.helper: nothing to train) in a Triton-layout
repository. One Python asyncio process drives the load: REST keep-alive connections (half JSON, half binary
tensors, as tritonclient.http sends them) and tritonclient.grpc.aio calls; every `--reload-every-s` seconds
the model is reloaded from disk (alternately over REST and gRPC) while traffic continues. Server memory is
the resident set of the server process and its workers, sampled every few seconds; growth is measured from
the end of the warm-up (the first `--warmup-s` seconds) to the end. The goal (issue 20): under 20 MB of
growth over 1,000,000 requests, 0 errors.

    .venv/bin/python bench/serve_soak.py --minutes 20 --signed --slow-clients 8 \
        --out bench/results/serve_soak_signed.json

`--signed`: the model is signed (toolkit sign, a fresh EC key) and the server runs with --verify-key; every
other reload first plants a tampered copy as version 2, which must be refused (HTTP 400 / gRPC error) while
version 1 keeps answering, then removes it. `--slow-clients N`: N slowloris connections that send a partial
request a byte a second, over and over; each must be answered 408 and closed by the server's header deadline
(--header-timeout-s, 10 s by default), not held.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from array import array
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODEL = "mlp"
FEATURES = 64


def make_repository(work: Path) -> Path:
    """REPO/mlp/1/model.onnx: x [batch, 64] -> Gemm+Relu -> Gemm -> Softmax -> probabilities [batch, 10]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.normal(size=(FEATURES, 64)).astype(np.float32) / 8, "w1"),
        numpy_helper.from_array(np.zeros(64, np.float32), "b1"),
        numpy_helper.from_array(rng.normal(size=(64, 10)).astype(np.float32) / 8, "w2"),
        numpy_helper.from_array(np.zeros(10, np.float32), "b2"),
    ]
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h"]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Gemm", ["r", "w2", "b2"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", FEATURES])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = work / "repo" / MODEL / "1" / "model.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)
    return work / "repo"


def sign_repository(work: Path, repo: Path) -> Path:
    """Sign REPO/mlp/1/model.onnx with a fresh P-256 key; returns the public key's path."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from toolkit.runtime import trust

    key = ec.generate_private_key(ec.SECP256R1())
    private, public = work / "key.pem", work / "key.pub.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    trust.sign(repo / MODEL / "1" / "model.onnx", private)
    return public


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(repo: Path, port: int, grpc_port: int, extra: list[str]) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "toolkit.cli.main", "serve", str(repo), "--port", str(port)]
    cmd += ["--grpc-port", str(grpc_port), *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.2)
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stderr.read().decode()}")
    raise SystemExit("server not ready in 60 s")


def tree_rss_kb(pid: int) -> int:
    """Resident set of `pid` and its children (the --workers processes), in KiB."""
    total = 0
    pids = [pid]
    try:
        pids += [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def rest_requests(x: np.ndarray) -> dict[str, bytes]:
    """Raw HTTP/1.1 requests for /v2/models/mlp/infer: a JSON body and a binary-tensor body."""
    path = f"/v2/models/{MODEL}/infer"
    doc = {"inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]}
    json_body = json.dumps(doc).encode()
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": list(x.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": x.nbytes},
                }
            ],
            "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}],
        }
    ).encode()
    out = {}
    for kind, body, extra in (
        ("rest_json", json_body, ["Content-Type: application/json"]),
        (
            "rest_binary",
            head + x.astype("<f4").tobytes(),
            ["Content-Type: application/octet-stream", f"Inference-Header-Content-Length: {len(head)}"],
        ),
    ):
        lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}", *extra]
        out[kind] = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
    return out


class Load:
    """Counters and latencies shared by the client tasks."""

    def __init__(self, stop_at: float, max_requests: int | None) -> None:
        self.stop_at, self.max_requests = stop_at, max_requests
        self.latency: dict[str, array] = {}
        self.errors: dict[str, int] = {}
        self.error_samples: list[str] = []
        self.count = 0
        self.refused = 0  # tampered versions refused (--signed)
        self.slow_held: list[
            float
        ] = []  # seconds each slow connection was held before its 408 (--slow-clients)

    def more(self) -> bool:
        if self.max_requests is not None:
            return self.count < self.max_requests
        return time.monotonic() < self.stop_at

    def record(self, kind: str, seconds: float) -> None:
        self.count += 1
        self.latency.setdefault(kind, array("d")).append(seconds)

    def error(self, kind: str, what: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1
        if len(self.error_samples) < 20:
            self.error_samples.append(f"{kind}: {what[:200]}")


async def rest_client(port: int, kind: str, raw: bytes, load: Load) -> None:
    reader = writer = None
    while load.more():
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            t0 = time.perf_counter()
            writer.write(raw)
            status = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            body = await reader.readexactly(length)
            if b" 200 " in status:
                load.record(kind, time.perf_counter() - t0)
            else:
                load.error(kind, status.decode(errors="replace") + body.decode(errors="replace"))
        except (OSError, asyncio.IncompleteReadError) as exc:
            load.error(kind, f"{type(exc).__name__}: {exc}")
            writer = None
    if writer is not None:
        writer.close()


async def grpc_client(port: int, x: np.ndarray, load: Load) -> None:
    import tritonclient.grpc.aio as grpcclient

    client = grpcclient.InferenceServerClient(f"127.0.0.1:{port}")
    inp = grpcclient.InferInput("x", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    try:
        while load.more():
            t0 = time.perf_counter()
            try:
                result = await client.infer(MODEL, [inp])
                if result.as_numpy("probabilities").shape != (x.shape[0], 10):
                    load.error("grpc", "wrong output shape")
                else:
                    load.record("grpc", time.perf_counter() - t0)
            except Exception as exc:  # tritonclient's InferenceServerException and gRPC errors alike
                load.error("grpc", f"{type(exc).__name__}: {exc}")
    finally:
        await client.close()


async def reload_once(client, port: int, over_grpc: bool) -> None:
    """One reload of the model, over gRPC or REST; raises on any refusal."""
    if over_grpc:
        await client.load_model(MODEL)
        return
    url = f"http://127.0.0.1:{port}/v2/repository/models/{MODEL}/load"
    req = urllib.request.Request(url, data=b"{}", method="POST")
    await asyncio.get_running_loop().run_in_executor(
        None, lambda r=req: urllib.request.urlopen(r, timeout=60).read()
    )


def plant_tampered(repo: Path) -> Path:
    """REPO/mlp/2: a copy of version 1 and its signature, one byte of the model flipped."""
    v1, v2 = repo / MODEL / "1", repo / MODEL / "2"
    shutil.copytree(v1, v2)
    data = bytearray((v2 / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0x01
    (v2 / "model.onnx").write_bytes(bytes(data))
    return v2


async def reloader(port: int, grpc_port: int, args: argparse.Namespace, load: Load, reloads: list) -> None:
    import tritonclient.grpc.aio as grpcclient

    client = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    try:
        while load.more():
            await asyncio.sleep(args.reload_every_s)
            if not load.more():
                break
            t0 = time.perf_counter()
            if args.signed and len(reloads) % 2:  # a tampered version 2 must be refused
                v2 = plant_tampered(args.repo)
                try:
                    await reload_once(client, port, len(reloads) % 4 == 1)
                    load.error("reload", "a tampered version 2 was loaded")
                except Exception as exc:  # refused, as it must be: HTTP 400 or a gRPC error
                    if "refusing" not in f"{exc} {getattr(exc, 'read', lambda: b'')()}":
                        load.error("reload", f"refused for another reason: {type(exc).__name__}: {exc}")
                    load.refused += 1
                finally:
                    shutil.rmtree(v2)
                reloads.append(round(time.perf_counter() - t0, 3))
                continue
            try:
                await reload_once(client, port, len(reloads) % 2 == 1 or len(reloads) % 4 == 2)
                reloads.append(round(time.perf_counter() - t0, 3))
            except Exception as exc:
                load.error("reload", f"{type(exc).__name__}: {exc}")
    finally:
        await client.close()


async def slow_client(port: int, load: Load, limit_s: float) -> None:
    """A slowloris connection, over and over: a partial request a byte a second; the server must answer 408
    and close it within `limit_s`. The time each connection was held goes to load.slow_held."""
    head = b"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 600
    while load.more():
        t0 = time.monotonic()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError as exc:
            load.error("slow_client", f"connect: {exc}")
            await asyncio.sleep(1)
            continue
        answer = asyncio.ensure_future(reader.read())
        for byte in head:
            if answer.done() or time.monotonic() - t0 > limit_s or not load.more():
                break
            try:
                writer.write(bytes([byte]))
                await writer.drain()
            except OSError:
                break
            await asyncio.wait([answer], timeout=1.0)
        try:
            data = await asyncio.wait_for(answer, max(0.1, limit_s - (time.monotonic() - t0)))
        except asyncio.TimeoutError:
            data = None
        except OSError as exc:  # a reset: the server closed without letting the 408 through
            data = f"{type(exc).__name__}".encode()
        writer.close()
        if not load.more() and data is None:
            break
        if data is None or b" 408 " not in data.split(b"\r\n", 1)[0]:
            load.error(
                "slow_client", f"not closed with 408 within {limit_s:g} s: {data[:80] if data else None}"
            )
        else:
            load.slow_held.append(time.monotonic() - t0)


async def sampler(pid: int, load: Load, samples: list, every_s: float, t_start: float) -> None:
    while load.more():
        samples.append((round(time.monotonic() - t_start, 1), load.count, tree_rss_kb(pid)))
        await asyncio.sleep(every_s)


async def progress(load: Load, t_start: float) -> None:
    while load.more():
        await asyncio.sleep(30)
        elapsed = time.monotonic() - t_start
        print(f"{elapsed:7.0f} s  {load.count:>9,} requests  errors {sum(load.errors.values())}", flush=True)


async def drive(args: argparse.Namespace, proc: subprocess.Popen, port: int, grpc_port: int) -> dict:
    x = np.random.default_rng(1).random((1, FEATURES), dtype=np.float32)
    raws = rest_requests(x)
    t_start = time.monotonic()
    load = Load(t_start + args.minutes * 60, args.requests)
    samples: list = []
    reloads: list = []
    tasks = [
        rest_client(port, "rest_json", raws["rest_json"], load) for _ in range(args.rest_connections // 2)
    ]
    tasks += [
        rest_client(port, "rest_binary", raws["rest_binary"], load)
        for _ in range(args.rest_connections - args.rest_connections // 2)
    ]
    tasks += [grpc_client(grpc_port, x, load) for _ in range(args.grpc_streams)]
    tasks += [slow_client(port, load, args.header_timeout_s + 10) for _ in range(args.slow_clients)]
    tasks += [
        reloader(port, grpc_port, args, load, reloads),
        sampler(proc.pid, load, samples, args.sample_every_s, t_start),
        progress(load, t_start),
    ]
    await asyncio.gather(*tasks)
    elapsed = time.monotonic() - t_start
    samples.append((round(elapsed, 1), load.count, tree_rss_kb(proc.pid)))
    return {"load": load, "samples": samples, "reloads": reloads, "elapsed_s": elapsed}


def summarize(args: argparse.Namespace, run: dict) -> dict:
    load, samples = run["load"], run["samples"]
    after_warmup = next((s for s in samples if s[0] >= args.warmup_s), samples[0])
    growth_mb = (samples[-1][2] - after_warmup[2]) / 1024
    kinds = {}
    for kind, lat in load.latency.items():
        q = np.percentile(np.frombuffer(lat, dtype=np.float64), [50, 99, 99.9]) * 1000
        kinds[kind] = {
            "requests": len(lat),
            "p50_ms": round(float(q[0]), 2),
            "p99_ms": round(float(q[1]), 2),
            "p99_9_ms": round(float(q[2]), 2),
        }
    every = np.concatenate([np.frombuffer(v, dtype=np.float64) for v in load.latency.values()])
    errors = sum(load.errors.values())
    step = max(1, len(samples) // 200)
    return {
        "machine": f"{platform.machine()} {os.cpu_count()} cores (shared, noisy), {platform.system()}",
        "python": platform.python_version(),
        "mode": f"{args.requests:,} requests" if args.requests else f"{args.minutes:g} minutes",
        "duration_s": round(run["elapsed_s"], 1),
        "server_args": args.server_args,
        "traffic": (
            f"{args.rest_connections} REST keep-alive connections (half JSON, half binary tensors), "
            f"{args.grpc_streams} tritonclient.grpc.aio callers, one Python asyncio client process; "
            f"model {MODEL} (64 -> 64 -> 10 MLP), batch 1"
        ),
        "requests": load.count,
        "req_per_s": round(load.count / run["elapsed_s"]),
        "p50_ms": round(float(np.percentile(every, 50) * 1000), 2),
        "p99_ms": round(float(np.percentile(every, 99) * 1000), 2),
        "by_kind": kinds,
        "errors": errors,
        "errors_by_kind": load.errors,
        "error_samples": load.error_samples,
        "reloads": len(run["reloads"]),
        "signed": args.signed,
        "tampered_versions_refused": load.refused if args.signed else None,
        "slow_clients": args.slow_clients,
        "slow_connections_closed": len(load.slow_held),
        "slow_connection_held_s": (
            {
                "median": round(float(np.median(load.slow_held)), 2),
                "max": round(float(max(load.slow_held)), 2),
            }
            if load.slow_held
            else None
        ),
        "reload_seconds": run["reloads"][:50],
        "rss_mb_after_warmup": round(after_warmup[2] / 1024, 1),
        "rss_mb_end": round(samples[-1][2] / 1024, 1),
        "rss_mb_max": round(max(s[2] for s in samples) / 1024, 1),
        "memory_growth_mb": round(growth_mb, 1),
        "warmup_s": args.warmup_s,
        "goal": "memory growth < 20 MB over 1,000,000 requests; 0 errors",
        "goal_met": bool(errors == 0 and growth_mb < 20 and (not args.requests or load.count >= 1_000_000)),
        "rss_samples": [
            {"t_s": t, "requests": n, "rss_mb": round(kb / 1024, 1)} for t, n, kb in samples[::step]
        ],
        "load_average_after": [round(v, 1) for v in os.getloadavg()],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=30.0, help="how long to run (default 30)")
    ap.add_argument("--requests", type=int, default=None, help="stop after this many requests instead")
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/serve_soak.json")
    ap.add_argument("--rest-connections", type=int, default=8)
    ap.add_argument("--grpc-streams", type=int, default=4)
    ap.add_argument("--reload-every-s", type=float, default=30.0)
    ap.add_argument("--sample-every-s", type=float, default=5.0)
    ap.add_argument("--warmup-s", type=float, default=60.0, help="memory growth is measured from here")
    ap.add_argument("--server-args", default="", help="extra `toolkit serve` flags, e.g. '--workers 2'")
    ap.add_argument("--signed", action="store_true", help="sign the model, serve with --verify-key")
    ap.add_argument("--slow-clients", type=int, default=0, help="slowloris connections (default 0)")
    ap.add_argument("--header-timeout-s", type=float, default=10.0, help="the server's --header-timeout-s")
    args = ap.parse_args()
    if args.minutes <= 0 or (args.requests is not None and args.requests <= 0):
        raise SystemExit("--minutes and --requests must be positive")
    if args.requests is not None:
        args.minutes = 24 * 60  # bounded by the count; a day at most
    work = Path(tempfile.mkdtemp(prefix="toolkit-soak-"))
    repo = args.repo = make_repository(work)
    extra = [*args.server_args.split(), "--header-timeout-s", f"{args.header_timeout_s:g}"]
    if args.signed:
        extra += ["--verify-key", str(sign_repository(work, repo))]
    port, grpc_port = free_port(), free_port()
    proc = start_server(repo, port, grpc_port, extra)
    try:
        run = asyncio.run(drive(args, proc, port, grpc_port))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    report = summarize(args, run)
    report["server_exit_code"] = proc.returncode
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    tmp.replace(args.out)
    keys = ("mode", "requests", "req_per_s", "p50_ms", "p99_ms", "errors", "reloads", "memory_growth_mb")
    keys += ("tampered_versions_refused", "slow_connections_closed")
    print(json.dumps({k: report[k] for k in keys}, indent=2))


if __name__ == "__main__":
    main()
