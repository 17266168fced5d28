"""A real deployment: `serve` runs the server (Flower SuperLink + the ServerApp), `join` runs one client (a
Flower SuperNode) on the machine that holds the data.

Security is Flower's: TLS on the SuperLink (`tls` = CA, certificate and key files; clients verify it with the
CA file), and SuperNode authentication (the server registers each client's public key with
`flwr supernode register` and admits only those; a client signs with its private key). Without TLS both sides
must say `insecure=True`. See docs/federated.md.
"""

from __future__ import annotations

import socket
import tempfile
import time
from pathlib import Path
from typing import Any

from toolkit.errors import ToolkitError
from toolkit.federate.run import (
    FederateResult,
    federation_meta,
    finish,
    open_tracker,
    prepare,
    watch,
    write_start,
)


def parse_address(address: str, default_host: str = "0.0.0.0") -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep:
        host, port = default_host, address
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ToolkitError(f"address must be HOST:PORT such as 0.0.0.0:9092 (got {address!r})")
    return host.strip("[]") or default_host, int(port)


def check_security(insecure: bool, tls_files: list[str | None], what: str) -> None:
    given = [f for f in tls_files if f]
    if insecure and given:
        raise ToolkitError(f"{what}: give either --insecure or the TLS files, not both")
    if not insecure and len(given) != len(tls_files):
        raise ToolkitError(
            f"{what}: TLS needs {' and '.join(_TLS_FLAGS[what])}; or pass --insecure (plain HTTP)"
        )
    for f in given:
        if not Path(f).is_file():
            raise ToolkitError(f"{what}: file not found: {f}")


_TLS_FLAGS = {
    "server": ["--ssl-ca-certfile", "--ssl-certfile", "--ssl-keyfile"],
    "client": ["--root-certificates"],
}


def serve(
    recipe: Any,
    data: str | None = None,
    target: str | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    out: str | Path | None = None,
    address: str = "0.0.0.0:9092",
    tls: dict[str, str] | None = None,
    insecure: bool = False,
    auth_keys: list[str] | None = None,
    connect_timeout: float = 600.0,
    progress: Any = None,
) -> FederateResult:
    """Run the server: wait for `federate.clients` clients, train for the recipe's rounds, write the run."""
    from toolkit.federate import launch
    from toolkit.federate.privacy import describe, sampled_clients

    check_security(insecure, list((tls or {}).values()) or [None, None, None], "server")
    if auth_keys and insecure:
        raise ToolkitError(
            "SuperNode authentication needs TLS (Flower refuses it over plain HTTP); drop --insecure"
        )
    host, port = parse_address(address)
    rec, splits, run_dir = prepare(recipe, data, target, overrides, out)
    fed = rec.federate
    with tempfile.TemporaryDirectory(prefix="toolkit-federate-server-") as tmp:
        meta = federation_meta(rec, fed.clients, "deployment", [])
        meta["privacy"] = describe(fed.privacy, sampled_clients(fed, fed.clients))
        meta["security"] = {"tls": not insecure, "supernode_auth": bool(auth_keys)}
        job = write_start(run_dir, rec, splits, Path(tmp), fed.clients, meta, [], connect_timeout)
        tracker = open_tracker(rec, run_dir)
        with launch.Federation(Path(tmp) / "flower") as federation:
            federation.start_superlink(host, port, tls, auth=bool(auth_keys))
            local = "127.0.0.1" if host in ("0.0.0.0", "::") else host
            app = federation.write_app(f"{local}:{port}", (tls or {}).get("ca"))
            for key in auth_keys or []:
                federation.register_supernode(str(Path(key).resolve()))
            status = watch(run_dir, federation, federation.submit(app, job), progress, None, tracker)
    return finish(run_dir, status, tracker)


def join(
    data: str,
    server: str,
    root_certificates: str | None = None,
    insecure: bool = False,
    auth_key: str | None = None,
    client_id: int | None = None,
    connect_timeout: float = 30.0,
    on_status: Any = None,
) -> None:
    """Run one client until interrupted (Ctrl-C) or refused: a SuperNode serving `data` to the server."""
    from toolkit.federate import launch

    check_security(insecure, [root_certificates], "client")
    host, port = parse_address(server, default_host="127.0.0.1")
    source = data if data.startswith("builtin:") else str(Path(data).resolve())
    if not data.startswith("builtin:") and not Path(source).exists():
        raise ToolkitError(f"data not found: {data}")
    wait_for_server(host, port, connect_timeout, root_certificates)
    with tempfile.TemporaryDirectory(prefix="toolkit-federate-client-") as tmp:
        status = Path(tmp) / "status.txt"
        node: dict[str, Any] = {"data": source, "status-file": str(status)}
        if client_id is not None:
            node["client-id"] = client_id
        with launch.Federation(Path(tmp) / "flower") as federation:
            serve_node(
                federation, f"{host}:{port}", node, root_certificates, auth_key, connect_timeout, on_status
            )


def serve_node(
    federation: Any,
    server: str,
    node: dict[str, Any],
    root_certificates: str | None,
    auth_key: str | None,
    connect_timeout: float,
    on_status: Any,
) -> None:
    """Run the SuperNode until stopped. One that the server turns away at first (its key is registered only
    once the server is up) is started again until `connect_timeout` has passed."""
    status = Path(node["status-file"])
    deadline = time.monotonic() + connect_timeout
    while True:
        proc = federation.start_supernode(
            "supernode", server, node, root_certificates, auth_key, connect_timeout
        )
        if on_status is not None:
            on_status(f"joining the federation at {server}; serving {node['data']} (Ctrl-C to leave)")
        started = time.monotonic()
        while proc.poll() is None:
            if status.is_file():  # the ClientApp refused this client's data: say why, and leave
                raise ToolkitError(status.read_text().strip())
            time.sleep(0.5)
        reason = federation.log_tail("supernode", 2)
        if time.monotonic() > deadline or time.monotonic() - started > connect_timeout:
            hint = (
                " (is this client's public key registered with the server's --auth-key?)" if auth_key else ""
            )
            raise ToolkitError(f"the client stopped: {reason}{hint}")
        federation.stop("supernode", sig=9)
        time.sleep(2.0)


def wait_for_server(host: str, port: int, timeout: float, root_certificates: str | None = None) -> None:
    """Fail in bounded time, with one line, when nothing answers HTTP(S) at HOST:PORT: a closed port, or one
    that accepts connections and never replies. With a CA file the server's certificate is verified too."""
    import ssl

    deadline = time.monotonic() + timeout
    context = ssl.create_default_context(cafile=root_certificates) if root_certificates else None
    reason = "no answer"
    while time.monotonic() < deadline:
        left = max(deadline - time.monotonic(), 0.1)
        try:
            with socket.create_connection((host, port), timeout=min(left, 5.0)) as raw:
                raw.settimeout(min(left, 5.0))
                conn = context.wrap_socket(raw, server_hostname=host) if context else raw
                conn.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
                if conn.recv(1):  # any HTTP answer (a SuperLink says 404 to this): someone is there
                    return
        except ssl.SSLCertVerificationError as exc:
            raise ToolkitError(
                f"the server at {host}:{port} failed TLS verification: {exc.verify_message}"
            ) from None
        except OSError as exc:
            reason = exc.__class__.__name__
        time.sleep(min(1.0, max(deadline - time.monotonic(), 0)))
    raise ToolkitError(
        f"no Flower server answers at {host}:{port} (waited {timeout:.0f} s, {reason}); is `toolkit federate "
        "server` running there, and the address and port right?"
    )
