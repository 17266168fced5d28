"""`serve(path, config)`: REST on uvicorn (httptools + uvloop), gRPC beside it, one process or several.

Lifecycle, in the order a deployment sees it:
1. PATH is resolved to models before anything binds (a wrong path is a one-line error, exit 2).
2. HTTP (and gRPC) bind; `live` answers at once, `ready` is 503.
3. Every model version is loaded and warmed up in a thread; then `ready` turns 200. A model that fails
   to load at start-up stops the server with exit code 2 (a half-served repository is worse than none).
4. SIGTERM/SIGINT: `ready` turns 503 and new inference requests get 503, while requests already accepted
   finish (uvicorn closes idle keep-alive connections and waits for busy ones; gRPC stops with a grace
   period); then the process exits 0.

With --workers N > 1 the parent binds the HTTP socket and forks N workers that share it (the kernel spreads
connections); each worker loads its own models before it accepts any (so whichever worker answers `ready`
or a request has its models). Every worker also serves gRPC: each binds the gRPC port with SO_REUSEPORT
(grpcio takes no inherited socket), after its models are loaded, and the kernel spreads gRPC connections
too. Metrics use prometheus_client's multiprocess mode in a temporary folder the parent removes at exit, so
/metrics and /v2/models/.../stats answer the whole server's totals whichever worker is asked.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

from toolkit.errors import ToolkitError
from toolkit.runtime.server.repository import Repository, choose_providers
from toolkit.runtime.server.service import ServeConfig, Service

log = logging.getLogger("toolkit.serve")

GRACE_S = 30.0


def _setup_logging() -> None:
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s toolkit.serve: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False


def build_service(path: str | Path, config: ServeConfig) -> Service:
    """Resolve PATH and providers (ToolkitError on a bad one); models load later, in `run`."""
    providers, reason = choose_providers(config.provider)
    if reason:
        log.warning("provider %s: %s", config.provider, reason)
    repository = Repository(path, providers, threads=config.threads, verify_key=config.verify_key)
    return Service(repository, config)


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ToolkitError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def check_grpc_port(host: str, port: int) -> None:
    """A clear error before forking when the gRPC port is taken (each worker binds it itself)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ToolkitError(f"cannot listen for gRPC on {host}:{port}: {exc.strerror}") from None


def serve(path: str | Path, config: ServeConfig) -> int:
    """Serve until SIGTERM/SIGINT; returns the exit code (0 after a clean drain, 2 if models fail to load)."""
    _setup_logging()
    service = build_service(path, config)
    sock = bind_socket(config.host, config.port)
    if config.workers <= 1:
        return _run_worker(service, sock, preload=False)
    return _run_workers(path, config, sock)


# A signal that reaches a worker while it is still loading its models (before uvicorn installs its own
# handlers) must stop it cleanly, not kill it: the handler is set in the parent before forking, so each
# worker inherits it, and a worker that finds it set after loading exits 0 without serving.
_EARLY_SIGNAL: dict[str, int | None] = {"sig": None}


def _early_signal(sig: int, frame: object) -> None:  # noqa: ARG001
    _EARLY_SIGNAL["sig"] = sig


def _run_workers(path: str | Path, config: ServeConfig, sock: socket.socket) -> int:
    if config.grpc_port:
        check_grpc_port(config.host, config.grpc_port)
    from toolkit.runtime.server.metrics import use_multiprocess

    metrics_dir = tempfile.mkdtemp(prefix="toolkit-serve-metrics-")
    use_multiprocess(metrics_dir)
    try:
        return _fork_workers(path, config, sock)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _fork_workers(path: str | Path, config: ServeConfig, sock: socket.socket) -> int:
    children = []
    signal.signal(signal.SIGTERM, _early_signal)
    signal.signal(signal.SIGINT, _early_signal)
    for _ in range(config.workers):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = _run_worker(build_service(path, config), sock, preload=True)
            finally:
                os._exit(code)
        children.append(pid)
    sock.close()

    def forward(sig: int, frame: object) -> None:
        for pid in children:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    worst = 0
    for pid in children:
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            worst = worst or (code if code > 0 else 1)
            forward(signal.SIGTERM, None)
    return worst


def _run_worker(service: Service, sock: socket.socket, preload: bool) -> int:
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # Windows: the default loop
        pass
    return asyncio.run(_main(service, sock, preload))


def _start_grpc(service: Service, server: Any, reuse_port: bool) -> bool:
    """gRPC beside HTTP (when --grpc-port is not 0); False, logged, when it cannot listen."""
    config = service.config
    if not config.grpc_port:
        return True
    from toolkit.runtime.server.grpc_service import start_grpc

    try:
        server.grpc_server = start_grpc(service, service.loop, config.host, config.grpc_port, reuse_port)
    except (OSError, RuntimeError) as exc:
        log.error("error: cannot listen for gRPC on %s:%s: %s", config.host, config.grpc_port, exc)
        return False
    return True


async def _main(service: Service, sock: socket.socket, preload: bool) -> int:
    """Serve on `sock` until a signal. `preload` (workers): load the models before accepting connections
    (a worker still loading must not take connections, or `ready` answered by one worker would not hold
    for the next request) and only then start gRPC. Alone, the process listens at once (`live` answers)
    and loads in the background."""
    import uvicorn

    from toolkit.runtime.server.http import HttpApp
    from toolkit.runtime.server.timeouts import protocol_class

    config = service.config
    loop = asyncio.get_running_loop()
    service.loop = loop
    uv_config = uvicorn.Config(
        HttpApp(service),
        http=protocol_class(config.header_timeout_s),
        loop="none",
        lifespan="off",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=GRACE_S,
        timeout_keep_alive=30,
        backlog=2048,
    )
    server = _Server(uv_config, service)
    if not preload and not _start_grpc(service, server, reuse_port=False):
        return 2
    log.info(
        "listening on http://%s:%s%s; loading models",
        config.host,
        sock.getsockname()[1],
        f" and grpc {config.host}:{config.grpc_port}" if config.grpc_port else "",
    )
    code = 0

    async def load() -> None:
        nonlocal code
        try:
            await service.start()
        except ToolkitError:
            code = 2
            server.should_exit = True

    load_task = None
    if preload:
        await load()
        if not code and _EARLY_SIGNAL["sig"] is None and not _start_grpc(service, server, reuse_port=True):
            code = 2
    else:
        load_task = loop.create_task(load())
    if preload and not code and _EARLY_SIGNAL["sig"] is not None:
        log.info("signal %s while loading: stopping before serving", _EARLY_SIGNAL["sig"])
    elif not (preload and code):
        await server.serve(sockets=[sock])
    if load_task is not None and not load_task.done():
        load_task.cancel()
    if server.grpc_server is not None:
        await loop.run_in_executor(None, server.grpc_server.stop(GRACE_S).wait)
    await service.close()
    service.executor.shutdown(wait=True)
    if code == 0:
        log.info("drained and stopped")
    return code


class _Server:
    """uvicorn.Server that drains on SIGTERM/SIGINT and returns instead of re-raising the signal (uvicorn
    re-raises it after shutdown, which would make a clean drain exit with -15 instead of 0)."""

    def __new__(cls, config, service):  # a subclass made lazily: uvicorn is imported only when serving
        import uvicorn

        class Server(uvicorn.Server):
            grpc_server = None

            def handle_exit(self, sig, frame):  # noqa: ARG002
                if not service.draining:
                    log.info("signal %s: draining in-flight requests, refusing new ones", sig)
                service.draining = True
                if self.grpc_server is not None:
                    self.grpc_server.stop(GRACE_S)
                if self.should_exit and sig == signal.SIGINT:
                    self.force_exit = True
                self.should_exit = True

        return Server(config)
