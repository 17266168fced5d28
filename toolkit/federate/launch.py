"""Start and stop Flower's deployment engine as real processes: a SuperLink, SuperNodes, and `flwr run`.

This is Flower's documented deployment path (SuperLink = server, one SuperNode per client, the app submitted
with `flwr run`); the simulation runs the same processes on loopback. Flower >= 1.40 carries SuperNode <->
SuperLink traffic (the Fleet API) and the Control API over HTTP(S) on the SuperLink's one port; earlier releases
used gRPC. Each process runs in its own session, so stopping it also stops the SuperExec and ClientApp
processes it started. Flower's telemetry and update check are switched off; apps run in this environment
(no runtime dependency installation).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolkit.errors import ToolkitError

ANSI = re.compile(r"\x1b\[[0-9;]*m")

APP_NAME = "toolkit-federate"

APP_PYPROJECT = """\
# The Flower App toolkit federate submits with `flwr run`: its ServerApp and ClientApp live in the installed
# toolkit package, so the app bundle (FAB) is this file alone.
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "{name}"
version = "1.0.0"
description = "toolkit federated training"
dependencies = []

[tool.flwr.app]
publisher = "toolkit"

[tool.flwr.app.components]
serverapp = "toolkit.federate.server_app:app"
clientapp = "toolkit.federate.client_app:app"

[tool.flwr.app.config]
job = ""
"""


def flower_bin(name: str) -> str:
    """A Flower command from this environment (flower-superlink, flower-supernode, flwr)."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise ToolkitError(f"{name} not found beside {sys.executable}: install toolkit[federate]")
    return str(path)


def flower_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        FLWR_HOME=str(home),  # Flower's config, installed app bundles and state: per federation, not ~/.flwr
        FLWR_TELEMETRY_ENABLED="0",
        FLWR_DISABLE_UPDATE_CHECK="1",
        FLWR_SUPEREXEC_TASK_POLL_INTERVAL="0.2",  # start a ClientApp within 0.2 s of its message (default 1 s)
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",  # SuperNode starts flower-superexec
        OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "1"),  # many client processes share the cores
        PYTHONUNBUFFERED="1",
    )
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float, proc: subprocess.Popen | None = None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return True
        except OSError:
            time.sleep(0.2)
    return False


@dataclass
class Federation:
    """The Flower processes of one federation, stopped together (a context manager)."""

    home: Path  # FLWR_HOME and the logs
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def __enter__(self) -> Federation:
        self.home.mkdir(parents=True, exist_ok=True)
        self._previous = None
        if threading.current_thread() is threading.main_thread():
            # `kill PID` (SIGTERM) stops the federation cleanly too: the Flower processes live in their own
            # sessions and would otherwise outlive this one.
            self._previous = signal.signal(signal.SIGTERM, _terminate)
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            self.stop_all()
        finally:
            if self._previous is not None:
                signal.signal(signal.SIGTERM, self._previous)

    def start(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = open(self.home / f"{name}.log", "ab")  # noqa: SIM115  (closed with the process)
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env=flower_env(self.home), start_new_session=True
        )
        log.close()
        self.procs[name] = proc
        return proc

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        """Stop one process and what it started (its session): used to kill a client mid-round too."""
        proc = self.procs.get(name)
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def stop_all(self, grace: float = 5.0) -> None:
        """SIGTERM every process group at once, SIGKILL what is left after `grace` seconds."""
        live = [p for p in self.procs.values() if p.poll() is None]
        for proc in live:
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in live:
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                pass
        for proc in live:  # the session too: a SuperNode's SuperExec and ClientApp outlive a dead parent
            _signal_group(proc, signal.SIGKILL)
            if proc.poll() is None:
                proc.wait(timeout=10)

    def log_tail(self, name: str, lines: int = 5) -> str:
        """The last lines of a process's log, or the error Flower logged there (its ERROR entry)."""
        path = self.home / f"{name}.log"
        if not path.is_file():
            return ""
        text = [ANSI.sub("", line).strip() for line in path.read_text(errors="replace").splitlines()]
        errors = [i for i, line in enumerate(text) if line.startswith("ERROR")]
        if errors:  # Flower: "ERROR : Exit Code: 305", then what failed and why
            picked = [line for line in text[errors[-1] : errors[-1] + 4] if line and "visit:" not in line]
            return " ".join(picked)
        return " | ".join(line for line in text[-lines:] if line)

    # ----------------------------------------------------------------------------------------- roles
    def start_superlink(
        self, host: str, port: int, tls: dict[str, str] | None = None, auth: bool = False
    ) -> None:
        argv = [flower_bin("flower-superlink"), "--host", host, "--port", str(port)]
        argv += ["--disable-runtime-dependency-installation"]
        argv += _tls_args(tls) if tls else ["--insecure"]
        if auth:
            argv.append("--enable-supernode-auth")
        proc = self.start("superlink", argv)
        probe = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        if not wait_for_port(probe, port, 60.0, proc):
            raise ToolkitError(
                f"the Flower SuperLink did not start on {host}:{port} ({self.log_tail('superlink', 2)})"
            )

    def start_supernode(
        self,
        name: str,
        server: str,
        node_config: dict[str, Any],
        root_certificates: str | None = None,
        auth_key: str | None = None,
        max_wait: float | None = None,
    ) -> subprocess.Popen:
        argv = [flower_bin("flower-supernode"), "--superlink", server, "--port", str(free_port())]
        argv += ["--root-certificates", root_certificates] if root_certificates else ["--insecure"]
        if auth_key:
            argv += ["--auth-supernode-private-key", auth_key]
        if max_wait is not None:
            argv += ["--max-wait-time", str(max_wait)]
        argv += ["--node-config", node_config_arg(node_config)]
        return self.start(name, argv)

    def write_app(self, server: str, root_certificates: str | None = None) -> Path:
        """The Flower App directory and the Flower configuration naming this federation's SuperLink."""
        app_dir = self.home / "app"
        app_dir.mkdir(parents=True, exist_ok=True)
        (app_dir / "pyproject.toml").write_text(APP_PYPROJECT.format(name=APP_NAME))
        conn = [f'address = "{server}"']
        conn += [f'root-certificates = "{root_certificates}"'] if root_certificates else ["insecure = true"]
        (self.home / "config.toml").write_text(
            '[superlink]\ndefault = "toolkit"\n\n[superlink.toolkit]\n' + "\n".join(conn) + "\n"
        )
        return app_dir

    def submit(self, app_dir: Path, job_file: Path) -> subprocess.Popen:
        """`flwr run APP toolkit --run-config job=... --stream`: it returns when the run has finished."""
        argv = [flower_bin("flwr"), "run", str(app_dir), "toolkit", "--stream"]
        argv += ["--run-config", f'job="{job_file}"']
        return self.start("flwr-run", argv)

    def register_supernode(self, public_key: str) -> None:
        """`flwr supernode register KEY`: only registered SuperNodes may join (with --enable-supernode-auth)."""
        res = subprocess.run(
            [flower_bin("flwr"), "supernode", "register", public_key, "toolkit"],
            env=flower_env(self.home),
            capture_output=True,
            text=True,
            timeout=60,
        )
        if res.returncode != 0:
            last = (res.stderr or res.stdout).strip().splitlines()
            raise ToolkitError(f"could not register {public_key}: {last[-1] if last else 'flwr failed'}")


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def node_config_arg(config: dict[str, Any]) -> str:
    """--node-config 'key="string" other=3' (TOML values)."""
    parts = []
    for k, v in config.items():
        parts.append(f'{k}="{v}"' if isinstance(v, (str, Path)) else f"{k}={v}")
    return " ".join(parts)


def _tls_args(tls: dict[str, str]) -> list[str]:
    return [
        "--ssl-ca-certfile",
        tls["ca"],
        "--ssl-certfile",
        tls["cert"],
        "--ssl-keyfile",
        tls["key"],
    ]
