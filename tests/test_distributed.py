"""Data-parallel training with torch.distributed: `toolkit train --nproc N` through torchrun's engine.

Real processes on loopback (gloo): two ranks must reproduce one process's loss curve and metrics on the
same global batch, survive a killed worker (elastic restart from last.pt), and fail in one line, in time,
when the rendezvous cannot complete.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from toolkit.train import distributed

# digits through the MLP: 1169 training samples; batches of 12 leave a last batch of 5, split 3/2 between two
# ranks (uneven), so the weighted gradient of an uneven batch is covered too. No dropout: the same math as
# one process. Epochs of ~0.5 s let the elastic test kill a worker inside one.
SETTINGS = ["train.epochs=6", "train.batch_size=12", "model.dropout=0.0", "train.patience=0"]
MLP = ["mlp-tabular", "--data", "builtin:digits", "--no-progress"]
for item in SETTINGS:
    MLP += ["--set", item]
TIMEOUT = 300  # generous: the machine is shared and each rank imports torch


def _toolkit(*args: str, env: dict | None = None, **kw) -> subprocess.Popen:
    env = {**(env or os.environ), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "toolkit", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
        **kw,
    )


def _history(run_dir: Path) -> list[dict[str, float]]:
    with open(run_dir / "metrics.csv") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> Path:
    from toolkit.train import train

    run_dir = tmp_path_factory.mktemp("dist") / "one"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each of the two ranks has (a loaded machine makes 2 threads crawl)
    try:
        train("mlp-tabular", data="builtin:digits", overrides=SETTINGS, out=run_dir)
    finally:
        torch.set_num_threads(threads)
    return run_dir


def test_shard_bounds_cover_every_item_once():
    for n in range(0, 12):
        for world in (1, 2, 3, 5):
            pieces = [distributed.shard_bounds(n, r, world) for r in range(world)]
            covered = [i for lo, hi in pieces for i in range(lo, hi)]
            assert covered == list(range(n))  # in order: no duplicates, no gaps
            assert max(hi - lo for lo, hi in pieces) - min(hi - lo for lo, hi in pieces) <= 1


def _assert_same_curve(reference: Path, run_dir: Path) -> None:
    ref, got = _history(reference), _history(run_dir)
    assert [r["epoch"] for r in got] == [r["epoch"] for r in ref]
    for a, b in zip(ref, got):
        for key in ("train_loss", "val_loss", "val_accuracy"):
            assert abs(a[key] - b[key]) <= 1e-4, (key, a, b)
    m_ref = json.loads((reference / "metrics.json").read_text())
    m_got = json.loads((run_dir / "metrics.json").read_text())
    assert m_got["processes"] == 2
    assert abs(m_got["accuracy"] - m_ref["accuracy"]) <= 1e-9  # gathered test outputs: the same metric
    assert m_got["best_epoch"] == m_ref["best_epoch"]


def test_two_processes_match_one_process(one_process, tmp_path):
    """2 ranks x half of each global batch == 1 process on the whole batch: loss curve to 1e-4, metrics."""
    run_dir = tmp_path / "two"
    proc = _toolkit("train", *MLP, "--nproc", "2", "--out", str(run_dir), "--json")
    out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0, err[-3000:]
    printed = json.loads(out[out.index("{") :])  # rank 0 alone prints the result
    assert printed["run_dir"] == str(run_dir)
    _assert_same_curve(one_process, run_dir)
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(p.name for p in one_process.iterdir())


def _worker_pids(parent: int) -> list[int]:
    """The training processes torchrun started under `parent` (children of its agent)."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
                children.append(int(entry.name))
    return children


def test_killed_worker_restarts_and_resumes(one_process, tmp_path):
    """SIGKILL one worker mid-run: torchrun restarts the group, which continues from last.pt and ends with
    the same complete run directory as an uninterrupted run."""
    run_dir = tmp_path / "elastic"
    # Slow the epochs down a little (more of them) so the kill lands inside one, not after the last.
    proc = _toolkit("train", *MLP, "--nproc", "2", "--max-restarts", "2", "--out", str(run_dir), "--json")
    deadline = time.time() + TIMEOUT
    while not (run_dir / "last.pt").exists():  # epoch 1 done: the workers are in epoch 2 now
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.time() < deadline
        time.sleep(0.05)
    workers = _worker_pids(proc.pid)
    assert len(workers) == 2, workers
    os.kill(workers[-1], signal.SIGKILL)
    out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0, err[-3000:]
    assert "restart" in err.lower() or "failed" in err.lower(), err[-3000:]  # the agent saw the failure
    assert not set(workers) & set(_worker_pids(proc.pid))
    _assert_same_curve(one_process, run_dir)  # resumed exactly: the same curve as without the kill


def _silent_port() -> tuple[socket.socket, int]:
    """A port that accepts connections and never answers (a firewall that drops, a wrong service)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    return s, s.getsockname()[1]


def test_unanswered_rendezvous_is_one_line_within_timeout(tmp_path):
    listener, port = _silent_port()
    try:
        t0 = time.time()
        proc = _toolkit(
            "train", *MLP, "--nproc", "64", "--nnodes", "2", "--rdzv-endpoint", f"127.0.0.1:{port}",
            "--rdzv-timeout", "3", "--out", str(tmp_path / "r"),
        )  # fmt: skip
        out, err = proc.communicate(timeout=TIMEOUT)
        elapsed = time.time() - t0
    finally:
        listener.close()
    assert proc.returncode == 2, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and f"127.0.0.1:{port}" in lines[0] and "rendezvous" in lines[0], err
    assert "more than this machine's" in err  # --nproc 64 > cores: warned before anything starts
    assert "Traceback" not in err
    assert elapsed < 60, elapsed  # the 3 s timeout (plus start-up), not a hang


@pytest.mark.slow
def test_rendezvous_without_the_other_nodes_times_out(tmp_path):
    """This node hosts the store on a free port; the second node never comes: one line after the timeout."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = _toolkit(
        "train", *MLP, "--nnodes", "2", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-timeout", "3",
        "--out", str(tmp_path / "r"),
    )  # fmt: skip
    out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 2, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "did not complete within 3 s" in lines[0] and "2 nodes" in lines[0], err


@pytest.mark.slow
def test_gan_refuses_distributed_training(tmp_path):
    proc = _toolkit("train", "gan", "--epochs", "1", "--nproc", "2", "--out", str(tmp_path / "g"))
    out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode != 0
    assert "trains in one process only" in err, err[-3000:]


def test_several_nodes_need_an_endpoint(cli, tmp_path):
    from helpers import assert_one_line_error

    result = cli("train", *MLP, "--nproc", "2", "--nnodes", "2", "--out", tmp_path / "r")
    assert_one_line_error(result, "--nnodes > 1 needs --rdzv-endpoint")
    assert not (tmp_path / "r").exists()  # refused before anything is written
