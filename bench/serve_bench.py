"""Server throughput: `toolkit serve` under wrk at concurrency 16, JSON and binary tensors, beside the
in-process onnxruntime `session.run` ceiling, on a 28x28 single-channel digits CNN.

    .venv/bin/python bench/serve_bench.py --out bench/results/serve.json

The model: scikit-learn's 8x8 digits upscaled to 28x28 PNGs, `toolkit train cnn` for one epoch (the weights
do not matter for speed), `toolkit export`, placed in a Triton layout repository. wrk (apt-get install wrk)
drives the load, as in /work/shared/bench/serve_vs_mlserver.sh (the side-by-side run against MLServer);
without wrk a Python asyncio client stands in (it needs CPU itself, so its numbers are lower; the report
names the load generator).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TOOLKIT = [sys.executable, "-m", "toolkit.cli.main"]


def make_model(work: Path) -> Path:
    """A Triton-layout repository REPO/digits28/1/model.onnx holding a freshly trained 28x28 CNN."""
    repo = work / "repo"
    target = repo / "digits28" / "1" / "model.onnx"
    if target.exists():
        return repo
    from PIL import Image
    from sklearn.datasets import load_digits

    images = work / "digits28"
    if not images.exists():
        digits = load_digits()
        for i, (img, y) in enumerate(zip(digits.images[:600], digits.target[:600])):
            d = images / str(y)
            d.mkdir(parents=True, exist_ok=True)
            im = Image.fromarray((img * 255 / 16).astype(np.uint8), mode="L").resize((28, 28))
            im.save(d / f"{i}.png")
    from toolkit.export import export_run
    from toolkit.train import train

    run = work / "run"
    shutil.rmtree(run, ignore_errors=True)
    train(
        "cnn-image",
        data=str(images),
        overrides=["data.image_size=28", "model.channels=[8,16]", "model.hidden=64", "train.epochs=1"],
        out=run,
    )
    export_run(run)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(run / "model.onnx", target)
    shutil.copy(run / "model.json", target.parent / "model.json")
    return repo


def session_ceiling(model: Path, x: np.ndarray, seconds: float = 3.0) -> dict:
    """Requests/s of a bare loop over session.run (batch of 1, one thread): what no server can beat
    without batching; and rows/s at batch 16."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
    out = {}
    for batch in (1, 16):
        feed = {"input": np.repeat(x, batch, axis=0)}
        for _ in range(20):
            sess.run(None, feed)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            sess.run(None, feed)
            n += 1
        out[f"batch{batch}_rows_per_s"] = round(n * batch / (time.perf_counter() - t0))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(repo: Path, port: int, extra: list[str]) -> subprocess.Popen:
    cmd = [*TOOLKIT, "serve", str(repo), "--port", str(port), "--grpc-port", "0", *extra]
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


def stop_server(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def bodies(x: np.ndarray, work: Path) -> tuple[dict[str, Path], dict[str, dict]]:
    """wrk Lua scripts posting the same image as JSON and as a binary tensor (binary output too)."""
    json_body = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": list(x.shape),
                    "datatype": "FP32",
                    "data": [round(float(v), 4) for v in x.ravel()],
                }
            ]
        }
    ).encode()
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": list(x.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": x.nbytes},
                }
            ],
            "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}],
        }
    ).encode()
    binary_body = head + x.astype("<f4").tobytes()
    scripts, all_headers = {}, {}
    for name, body, headers in (
        ("json", json_body, {"Content-Type": "application/json"}),
        (
            "binary",
            binary_body,
            {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(head))},
        ),
    ):
        (work / f"{name}.body").write_bytes(body)
        lua = ['wrk.method = "POST"']
        lua += [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
        lua += [
            f'local f = io.open("{work / (name + ".body")}", "rb")',
            "wrk.body = f:read('*all')",
            "f:close()",
        ]
        (work / f"{name}.lua").write_text("\n".join(lua) + "\n")
        scripts[name] = work / f"{name}.lua"
        all_headers[name] = headers
    return scripts, all_headers


def wrk(url: str, script: Path, concurrency: int, seconds: int) -> dict:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    def ms(label: str) -> float:
        m = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)", out, re.M)
        value, unit = float(m.group(1)), m.group(2)
        return round(value * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit], 2)

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {
        "req_per_s": round(float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))),
        "p50_ms": ms("50"),
        "p99_ms": ms("99"),
        "non_2xx": int(errors.group(1)) if errors else 0,
        "socket_errors": socket_errors.group(1) if socket_errors else None,
    }


def pyload(port: int, path: str, body: Path, headers: dict, concurrency: int, seconds: float) -> dict:
    """wrk's stand-in: `concurrency` keep-alive connections, each sending the next request when the last
    response is in; req/s and latency percentiles."""
    import asyncio

    payload = body.read_bytes()
    head = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(payload)}"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    raw = ("\r\n".join(head) + "\r\n\r\n").encode() + payload
    latencies: list[float] = []
    errors = 0

    async def conn(stop: float) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            writer.write(raw)
            status = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - t0)
            errors += b" 200 " not in status
        writer.close()

    async def run() -> float:
        t0 = time.perf_counter()
        await asyncio.gather(*(conn(t0 + seconds) for _ in range(concurrency)))
        return time.perf_counter() - t0

    elapsed = asyncio.run(run())
    q = np.percentile(latencies, [50, 99]) * 1000
    return {
        "req_per_s": round(len(latencies) / elapsed),
        "p50_ms": round(float(q[0]), 2),
        "p99_ms": round(float(q[1]), 2),
        "non_2xx": errors,
        "socket_errors": None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/serve.json")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "toolkit-serve-bench")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--server-args", default="", help="extra `toolkit serve` flags, e.g. '--workers 2'")
    ap.add_argument("--python-client", action="store_true", help="drive the load from Python even with wrk")
    args = ap.parse_args()
    have_wrk = shutil.which("wrk") is not None and not args.python_client
    if not have_wrk:
        print(
            "wrk is not installed (apt-get install wrk): a Python client drives the load instead", flush=True
        )
    args.work.mkdir(parents=True, exist_ok=True)
    repo = make_model(args.work)
    x = np.random.default_rng(0).random((1, 1, 28, 28), dtype=np.float32)
    scripts, headers = bodies(x, args.work)
    ceiling = session_ceiling(repo / "digits28/1/model.onnx", x)
    print(f"in-process session.run: {ceiling}", flush=True)
    port = free_port()
    path = "/v2/models/digits28/infer"
    url = f"http://127.0.0.1:{port}{path}"

    def load(name: str, seconds: int) -> dict:
        if have_wrk:
            return wrk(url, scripts[name], args.concurrency, seconds)
        body = scripts[name].with_suffix(".body")
        return pyload(port, path, body, headers[name], args.concurrency, seconds)

    results: dict[str, list] = {"json": [], "binary": []}
    proc = start_server(repo, port, args.server_args.split())
    try:
        for name in results:  # warm the server and the connections
            load(name, 1)
        for r in range(args.rounds):
            for name in results:
                res = load(name, args.seconds)
                print(f"round {r + 1} {name}: {res}", flush=True)
                results[name].append(res)
    finally:
        stop_server(proc)
    best = {k: max(v, key=lambda d: d["req_per_s"]) for k, v in results.items()}
    report = {
        "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.system()}",
        "python": platform.python_version(),
        "model": "28x28x1 CNN (channels [8,16], hidden 64), batch 1 per request",
        "load": (
            f"wrk -t1 -c{args.concurrency}"
            if have_wrk
            else f"python asyncio client, {args.concurrency} connections"
        )
        + f", {args.seconds} s, {args.rounds} rounds, best shown",
        "server_args": args.server_args,
        "load_average_after": [round(v, 1) for v in os.getloadavg()],  # other work on the machine
        "session_run_ceiling": ceiling,
        "json": best["json"],
        "binary": best["binary"],
        "rounds": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    tmp.replace(args.out)
    print(json.dumps({k: report[k] for k in ("session_run_ceiling", "json", "binary")}, indent=2))


if __name__ == "__main__":
    main()
