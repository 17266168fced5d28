"""`toolkit serve`: an Open Inference Protocol (KServe V2) server for exported models, REST and gRPC."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from toolkit.cli._common import handle_errors
from toolkit.errors import ToolkitError
from toolkit.runtime.server.timeouts import BODY_TIMEOUT_S, HEADER_TIMEOUT_S

# Overload limits (docs/serve-reliability.md)
MaxQueueSize = Annotated[
    int,
    typer.Option(
        "--max-queue-size",
        help="Requests that may wait for one model version (per worker); one more gets 503 (gRPC "
        "UNAVAILABLE) with Retry-After at once instead of a longer wait (0: no bound).",
    ),
]
QueueTimeout = Annotated[
    float,
    typer.Option(
        "--queue-timeout-s",
        help="A request still waiting for its batch to start after this long gets 503 with Retry-After "
        "and is never run (0: no limit). A request's own 'timeout' parameter or gRPC deadline may "
        "shorten it; a request that has started runs to the end.",
    ),
]


@handle_errors
def serve(
    path: Annotated[
        Path,
        typer.Argument(
            help="A .onnx file, a run directory (serves each model*.onnx in it) or a model repository in "
            "Triton's layout REPO/MODEL/VERSION/model.onnx (the newest version serves by default)."
        ),
    ],
    host: Annotated[
        str, typer.Option(help="Address to listen on (127.0.0.1: this machine only; 0.0.0.0: everywhere).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port (REST, /metrics).")] = 8000,
    grpc_port: Annotated[int, typer.Option("--grpc-port", help="gRPC port (0: no gRPC).")] = 8001,
    max_batch_size: Annotated[
        int,
        typer.Option(
            "--max-batch-size",
            help="Most rows merged into one onnxruntime call by dynamic batching (1: no batching).",
        ),
    ] = 32,
    max_queue_delay_ms: Annotated[
        float,
        typer.Option(
            "--max-queue-delay-ms",
            help="How long a request may wait for others to fill its batch (0: batch only what is already "
            "queued, adds no latency).",
        ),
    ] = 0.0,
    workers: Annotated[
        int,
        typer.Option(
            help="Server processes sharing the HTTP and gRPC ports (each loads every model; /metrics and "
            "/stats give the whole server's totals from any of them)."
        ),
    ] = 1,
    provider: Annotated[
        str,
        typer.Option(
            help="Execution provider: cpu, cuda, tensorrt or tensorrt-fp16 (cuda:1: GPU 1); falls back to CPU "
            "with the reason logged (TOOLKIT_PROVIDER_STRICT=1: refuses to start instead)."
        ),
    ] = "cpu",
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            help="Require 'Authorization: Bearer KEY' on everything but /v2/health/* (default: env TOOLKIT_API_KEY).",
        ),
    ] = None,
    max_body_mb: Annotated[
        float,
        typer.Option("--max-body-mb", help="Largest request body (HTTP 413 above it) and gRPC message size."),
    ] = 64.0,
    threads: Annotated[int, typer.Option(help="onnxruntime intra-op threads per model session.")] = 1,
    instances: Annotated[
        int, typer.Option(help="Batches of one model that may run at the same time (thread pool).")
    ] = 2,
    max_queue_size: MaxQueueSize = 1024,
    queue_timeout_s: QueueTimeout = 30.0,
    ui: Annotated[
        bool,
        typer.Option(
            "--ui/--no-ui",
            help="The playground page at GET / for browsers (docs/playground.md); API clients get KServe V1's "
            "liveness answer there either way.",
        ),
    ] = True,
    header_timeout_s: Annotated[
        float,
        typer.Option(
            "--header-timeout-s",
            help="A request's line and headers must arrive within this many seconds of the connection (or "
            "of its first byte on a kept-alive one), else 408 and close: slow clients cannot hold "
            "connections (0: no limit).",
        ),
    ] = HEADER_TIMEOUT_S,
    body_timeout_s: Annotated[
        float,
        typer.Option(
            "--body-timeout-s",
            help="A request's whole body must arrive within this many seconds of its headers, else 408 and "
            "close (0: no limit).",
        ),
    ] = BODY_TIMEOUT_S,
    verify_key: Annotated[
        Path | None,
        typer.Option(
            "--verify-key",
            help="EC public key (PEM): load only models whose signature (MODEL.onnx.sig, `toolkit sign`) "
            "verifies with it; an unsigned, altered or foreign-signed model is refused, and on reload the "
            "previous version keeps serving. Needs toolkit[sign].",
        ),
    ] = None,
) -> None:
    """Serve models over the Open Inference Protocol (KServe V2) REST and gRPC, with Triton's binary tensor
    extension, KServe V1 :predict on raw inputs, dynamic batching and Prometheus /metrics.

    Ready (GET /v2/health/ready) once every model is loaded and warmed up; SIGTERM drains, then exits 0.
    """
    from toolkit.runtime.server.app import serve as run_server
    from toolkit.runtime.server.service import ServeConfig

    for flag, value, low in (
        ("--max-batch-size", max_batch_size, 1),
        ("--workers", workers, 1),
        ("--threads", threads, 1),
        ("--instances", instances, 1),
        ("--port", port, 0),
        ("--grpc-port", grpc_port, 0),
        ("--max-queue-size", max_queue_size, 0),
    ):
        if value < low:
            raise ToolkitError(f"{flag} must be at least {low}, got {value}")
    if verify_key is not None and not verify_key.is_file():
        raise ToolkitError(f"--verify-key {verify_key}: no such file (the signer's EC public key in PEM)")
    if header_timeout_s < 0 or body_timeout_s < 0:
        raise ToolkitError("--header-timeout-s and --body-timeout-s must be >= 0 (0: no limit)")
    if max_queue_delay_ms < 0 or max_body_mb <= 0 or queue_timeout_s < 0:
        raise ToolkitError("--max-queue-delay-ms and --queue-timeout-s must be >= 0, --max-body-mb > 0")
    config = ServeConfig(
        host=host,
        port=port,
        grpc_port=grpc_port,
        max_batch_size=max_batch_size,
        max_queue_delay_ms=max_queue_delay_ms,
        workers=workers,
        provider=provider,
        api_key=api_key or os.environ.get("TOOLKIT_API_KEY") or None,
        max_body_mb=max_body_mb,
        threads=threads,
        instances=instances,
        max_queue_size=max_queue_size,
        queue_timeout_s=queue_timeout_s,
        ui=ui,
        header_timeout_s=header_timeout_s,
        body_timeout_s=body_timeout_s,
        verify_key=str(verify_key) if verify_key else None,
    )
    code = run_server(path, config)
    if code:
        raise typer.Exit(code)
