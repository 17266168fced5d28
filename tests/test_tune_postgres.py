"""`toolkit tune` on a real PostgreSQL server: two worker processes share one study, one is SIGKILLed.

The server is Debian's PostgreSQL (scripts/postgres_setup.py installs it with apt-get when missing),
started on 127.0.0.1 in a temporary data directory (as the `postgres` user when the tests run as root:
initdb refuses root). The fast tests here need no server: storage errors are one line.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from helpers import assert_one_line_error

ROOT = Path(__file__).resolve().parents[1]
SPACE = {"train.lr": {"low": 1.0e-3, "high": 3.0e-2, "log": True}, "model.hidden": [[16], [32]]}


# --------------------------------------------------------------------------------------------- errors
def test_missing_driver_names_the_extra(cli, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if toolkit[postgres] were not installed
    result = cli(
        "tune", "mlp", "--data", "builtin:iris", "--trials", "1", "--out", tmp_path / "t",
        "--storage", "postgresql://toolkit@127.0.0.1:1/db",
    )  # fmt: skip
    assert_one_line_error(result, "toolkit[postgres]", "postgresql://")


@pytest.mark.parametrize(
    "url, fragment",
    [
        ("postgresql://toolkit:secret@127.0.0.1:1/db", "cannot open --storage"),  # nothing listens there
        ("nosuchdb://host/db", "cannot open --storage"),
        ("study.db", "must be a database URL"),
    ],
)
def test_wrong_or_unreachable_storage_is_one_line(cli, tmp_path, url, fragment):
    pytest.importorskip("psycopg")
    result = cli(
        "tune", "mlp", "--data", "builtin:iris", "--trials", "1", "--out", tmp_path / "t", "--storage", url
    )
    line = assert_one_line_error(result, fragment)
    assert "secret" not in line  # the password is redacted


def test_heartbeat_grace_must_exceed_the_interval(cli, tmp_path):
    result = cli(
        "tune", "mlp", "--data", "builtin:iris", "--trials", "1", "--out", tmp_path / "t",
        "--heartbeat-interval", "5", "--heartbeat-grace", "2",
    )  # fmt: skip
    assert_one_line_error(result, "--heartbeat-interval", "--heartbeat-grace")


# --------------------------------------------------------------------------------------------- server
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres(cmd: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: run them as Debian's `postgres` user then."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@pytest.fixture(scope="module")
def postgres_url():
    pytest.importorskip("psycopg", reason="the PostgreSQL driver: pip install 'toolkit[postgres]'")
    setup = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "postgres_setup.py")], capture_output=True, text=True
    )
    if setup.returncode != 0:
        pytest.skip(f"no PostgreSQL server binaries: {setup.stderr.strip()}")
    bindir = Path(setup.stdout.strip())
    data = Path(tempfile.mkdtemp(prefix="toolkit-pg-"))  # under /tmp: the postgres user can reach it
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
    init = subprocess.run(
        _as_postgres([str(bindir / "initdb"), "-D", str(data), "-U", "toolkit", "-A", "trust"]),
        capture_output=True,
        text=True,
    )
    assert init.returncode == 0, init.stderr
    port = _free_port()
    opts = f"-h 127.0.0.1 -p {port} -k {data} -c fsync=off"
    log = data / "server.log"  # the server's output goes here: a pipe would stay open as long as it runs
    start = subprocess.run(
        _as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", opts, "-w", "start"]),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=120,
    )
    assert start.returncode == 0, log.read_text() if log.exists() else "pg_ctl start failed"
    try:
        yield f"postgresql://toolkit@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            _as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=120,
        )
        shutil.rmtree(data, ignore_errors=True)


def _tune(url: str, out: Path, space: Path) -> subprocess.Popen:
    args = [
        "tune", "mlp-tabular", "--data", "builtin:digits", "--space", str(space), "--trials", "4",
        "--set", "train.epochs=4", "--set", "train.patience=0", "--sampler", "random", "--pruner", "none",
        "--storage", url, "--study", "shared", "--out", str(out),
        "--heartbeat-interval", "1", "--heartbeat-grace", "3", "--no-progress", "--json",
    ]  # fmt: skip
    return subprocess.Popen(
        [sys.executable, "-m", "toolkit", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _study(url: str):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    return optuna.load_study(study_name="shared", storage=url)


@pytest.mark.slow
def test_two_workers_one_killed_mid_trial(postgres_url, tmp_path):
    import optuna

    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    out = tmp_path / "tune"
    victim, survivor = _tune(postgres_url, out, space), None
    try:
        deadline, killed = time.time() + 300, None
        while killed is None:  # the victim's first trial, once it is running
            assert victim.poll() is None, victim.communicate()[1][-3000:]
            assert time.time() < deadline
            if survivor is None:
                try:
                    _study(postgres_url)
                    survivor = _tune(postgres_url, out, space)  # the study exists: start the second worker
                except KeyError:
                    pass
            try:
                running = _study(postgres_url).get_trials(states=(optuna.trial.TrialState.RUNNING,))
            except KeyError:
                running = []
            mine = [t for t in running if t.user_attrs.get("worker", "").endswith(f":{victim.pid}")]
            if mine and survivor is not None:
                time.sleep(0.5)  # inside its first epochs
                os.kill(victim.pid, signal.SIGKILL)
                killed = mine[0].number
            time.sleep(0.1)
        victim.wait(30)
        assert survivor is not None
        stdout, stderr = survivor.communicate(timeout=600)
        assert survivor.returncode == 0, stderr[-3000:]
    finally:
        for p in (victim, survivor):
            if p is not None and p.poll() is None:
                p.kill()

    study = _study(postgres_url)
    states = {t.number: t.state for t in study.trials}
    assert states[killed] == optuna.trial.TrialState.FAIL  # no heartbeat: marked failed
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 4  # exactly the requested number, not one more
    retries = [t for t in study.trials if t.system_attrs.get("failed_trial") == killed]
    assert len(retries) == 1  # the killed configuration is queued again (retried, or waiting: replaced)
    assert retries[0].params == study.trials[killed].params

    # best.yaml reproduces the best trial (CPU: the same seed gives the same numbers).
    doc = json.loads(stdout)
    assert doc["best"]["number"] == study.best_trial.number or doc["best"]["value"] == study.best_value
    from toolkit.train import train

    again = train(out / "best.yaml", out=tmp_path / "again")
    row = again.history[again.metrics["best_epoch"] - 1]
    assert row["val_accuracy"] == pytest.approx(study.best_value, abs=1e-6)
