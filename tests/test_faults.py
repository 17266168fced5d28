"""Faults that lose nothing: `train`, `export`, `quantize`, `edge pack` and `tune` are SIGKILLed (with their
child processes) at several moments of a real run; afterwards every file a later step reads is complete and
valid or absent, and resuming or re-running succeeds. A model.onnx older than the checkpoint it was exported
from (after `train --resume`, or a retrain into the same folder) is reported by validate and predict.

Temporary files (hidden names: `.NAME.XXXX.tmp`, a bundle's `.OUT.XXXX` staging folder) are never read by a
later step and are not checked.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from helpers import assert_one_line_error
from runs import exported

CLI = [sys.executable, "-m", "toolkit.cli.main"]
# Moments of the kill, as fractions of the time from the first file written to the end of an uninterrupted
# run: one in the default suite (it must stay under 10 minutes on 2 cores), three with TOOLKIT_FAULTS_FULL=1
# (as the fuzzer's full count: tests/test_server_fuzz.py).
MOMENTS = (0.2, 0.5, 0.8) if os.environ.get("TOOLKIT_FAULTS_FULL") == "1" else (0.5,)
TINY_TRAIN = ["mlp", "--data", "builtin:iris", "--set", "model.hidden=[8]", "--epochs", "15", "--no-progress"]
SPACE = {"train.lr": {"low": 1.0e-3, "high": 3.0e-2, "log": True}, "model.hidden": [[8], [16]]}


# ---- what "complete and valid" means for each kind of file ----------------------------------------------
def check_file(path: Path) -> None:
    """AssertionError unless `path` is whole: parsed by what a later step parses it with."""
    suffix = path.suffix
    if suffix == ".onnx":
        import onnxruntime as ort

        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    elif suffix == ".pt":
        from toolkit.train.checkpoint import load_checkpoint

        load_checkpoint(path)
    elif suffix in (".json", ".sig"):
        json.loads(path.read_text())
    elif suffix == ".yaml":
        assert yaml.safe_load(path.read_text()) is not None, path
    elif suffix == ".csv":
        rows = list(csv.reader(path.open()))
        assert rows and all(len(r) == len(rows[0]) for r in rows), path
        assert path.read_bytes().endswith(b"\n"), path
    elif suffix == ".png":
        from PIL import Image

        Image.open(path).load()
    elif suffix == ".db":
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok", path


def check_tree(root: Path) -> int:
    """Every visible file under `root` is whole; a bundle (manifest.json) passes `edge verify`. Returns the
    number of files checked."""
    from toolkit.runtime.edge.bundle import verify

    count = 0
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or not path.is_file():
            continue
        try:
            check_file(path)
        except Exception as exc:  # noqa: BLE001 (whatever the reader raised is the failure)
            raise AssertionError(f"{rel} is not whole after the kill: {exc}") from None
        if path.name == "manifest.json" and (path.parent / "runner.py").is_file():
            report = verify(path.parent)
            assert report["passed"], report["checks"]
        count += 1
    return count


# ---- the steps -------------------------------------------------------------------------------------------
def run_cli(args: list, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run([*CLI, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def visible_files(root: Path) -> set[Path]:
    return {
        p
        for p in root.rglob("*")
        if p.is_file() and not any(x.startswith(".") for x in p.relative_to(root).parts)
    }


def timed_run(args: list, cwd: Path) -> tuple[float, float]:
    """Run the step to its end; returns (seconds until it wrote its first file, seconds in all), so that the
    kills land while it writes, not while Python imports."""
    before = visible_files(cwd)
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as err:  # a file, not a pipe: a chatty step never blocks on it
        proc = subprocess.Popen([*CLI, *map(str, args)], cwd=cwd, stdout=subprocess.DEVNULL, stderr=err)
        first = None
        while proc.poll() is None:
            if first is None and visible_files(cwd) - before:
                first = time.perf_counter() - t0
            time.sleep(0.02)
        total = time.perf_counter() - t0
        err.seek(0)
        assert proc.returncode == 0, err.read().decode()[-2000:]
    return (first if first is not None else 0.0), total


def killed_at(args: list, cwd: Path, after_s: float) -> None:
    """Start the command in its own process group and SIGKILL the whole group after `after_s`."""
    proc = subprocess.Popen(
        [*CLI, *map(str, args)], cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        proc.wait(after_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)


class Step:
    """`prepare(work)` lays out what the step starts from; `args(work)` is its command line; `again(work)`
    the command that resumes or re-runs it after a kill; `done(work)` the files a finished run leaves."""

    def __init__(self, prepare, args, again, done) -> None:
        self.prepare, self.args, self.again, self.done = prepare, args, again, done


def _exported_run(tmp_path_factory):
    def prepare(work: Path) -> None:
        shutil.copytree(exported(tmp_path_factory, "iris"), work / "run")

    return prepare


def _trained_run(tmp_path_factory):
    def prepare(work: Path) -> None:
        shutil.copytree(exported(tmp_path_factory, "iris"), work / "run")
        for p in (work / "run").glob("model*"):
            p.unlink()

    return prepare


def _train_again(work: Path) -> list:
    if (work / "run" / "last.pt").is_file():
        return ["train", "--resume", work / "run", "--no-progress"]
    return ["train", *TINY_TRAIN, "--out", work / "run"]


def _space(work: Path) -> Path:
    path = work / "space.yaml"
    path.write_text(yaml.safe_dump(SPACE))
    return path


def steps(tmp_path_factory) -> dict[str, Step]:
    quantize = ["quantize", "run/model.onnx", "--run", "run", "--max-drop", "0.5", "--batch", "1"]
    pack = ["edge", "pack", "run/model.onnx", "--out", "bundle"]
    tune = ["tune", "mlp", "--data", "builtin:iris", "--set", "train.epochs=2", "--set", "train.patience=0"]
    tune += ["--space", "space.yaml", "--trials", "4", "--out", "tune", "--no-progress"]
    return {
        "train": Step(
            lambda w: None,
            lambda w: ["train", *TINY_TRAIN, "--out", w / "run"],
            _train_again,
            lambda w: [w / "run" / n for n in ("best.pt", "last.pt", "metrics.json", "recipe.yaml")],
        ),
        "export": Step(
            _trained_run(tmp_path_factory),
            lambda w: ["export", "run"],
            lambda w: ["export", "run"],
            lambda w: [w / "run" / "model.onnx", w / "run" / "model.json"],
        ),
        "quantize": Step(
            _exported_run(tmp_path_factory),
            lambda w: quantize,
            lambda w: quantize,
            lambda w: [w / "run" / "quantize.json"],
        ),
        "edge pack": Step(
            _exported_run(tmp_path_factory),
            lambda w: pack,
            lambda w: [*pack, "--force"],
            lambda w: [w / "bundle" / "manifest.json", w / "bundle" / "runner.py"],
        ),
        "tune": Step(
            _space,
            lambda w: tune,
            lambda w: tune,
            lambda w: [w / "tune" / "tune.json", w / "tune" / "best.yaml", w / "tune" / "trials.csv"],
        ),
    }


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("name", ["train", "export", "quantize", "edge pack", "tune"])
def test_sigkill_at_several_moments_loses_nothing(tmp_path_factory, tmp_path, name):
    """One uninterrupted reference run times the step; then one working folder is killed at each moment in
    turn (the first time running the step, later times resuming or re-running it after the previous kill),
    checked after every kill, and finally resumed to the end."""
    step = steps(tmp_path_factory)[name]
    reference = tmp_path / "reference"
    reference.mkdir()
    step.prepare(reference)
    first_s, full_s = timed_run(step.args(reference), reference)
    assert all(p.is_file() for p in step.done(reference))
    check_tree(reference)
    work = tmp_path / "killed"
    work.mkdir()
    step.prepare(work)
    args = step.args(work)
    for moment in MOMENTS:
        killed_at(args, work, first_s + moment * (full_s - first_s))
        check_tree(work)  # whatever is there is whole
        args = step.again(work)  # the next round resumes or re-runs what the kill interrupted
    run_cli(step.again(work), work)
    missing = [p for p in step.done(work) if not p.is_file()]
    assert not missing, f"after {len(MOMENTS)} kills and a last rerun, missing {missing}"
    check_tree(work)


# ---- a model older than its checkpoint -------------------------------------------------------------------
def _retrained(tmp_path_factory, tmp_path) -> Path:
    """An exported run whose best.pt was then rewritten (as `train --resume` does), model.onnx kept."""
    from toolkit.train.checkpoint import load_checkpoint, save_checkpoint

    run = tmp_path / "run"
    shutil.copytree(exported(tmp_path_factory, "iris"), run)
    ckpt = load_checkpoint(run / "best.pt")
    ckpt["epoch"] = ckpt.get("epoch", 0) + 5
    time.sleep(0.05)  # a later modification time than model.onnx on any file system clock
    save_checkpoint(run / "best.pt", {k: v for k, v in ckpt.items() if k != "format"})
    return run


def test_validate_and_predict_report_a_model_older_than_its_checkpoint(cli, tmp_path_factory, tmp_path):
    run = _retrained(tmp_path_factory, tmp_path)
    rows = tmp_path / "rows.csv"
    rows.write_text("5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n")
    result = cli("validate", run / "model.onnx", "--json")
    checks = {c["check"]: c for c in json.loads(result.stdout)["checks"]}
    assert result.exit_code == 1 and checks["checkpoint"]["status"] == "fail", result.output
    assert (
        "is older than" in checks["checkpoint"]["detail"] and "export again" in checks["checkpoint"]["detail"]
    )
    result = cli("predict", run / "model.onnx", rows, "--json")
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "is older than" in warnings[0] and "best.pt" in warnings[0], result.stderr
    assert len(json.loads(result.stdout)["results"]) == 2  # still answered

    assert cli("export", run).exit_code == 0  # exported again: nothing to report
    result = cli("validate", run / "model.onnx", "--json")
    checks = {c["check"]: c for c in json.loads(result.stdout)["checks"]}
    assert checks["checkpoint"]["status"] == "pass", checks["checkpoint"]
    assert "warning" not in cli("predict", run / "model.onnx", rows).stderr


def test_a_model_away_from_its_run_is_not_reported(cli, tmp_path_factory, tmp_path):
    run = _retrained(tmp_path_factory, tmp_path)
    away = tmp_path / "deploy" / "model.onnx"
    away.parent.mkdir()
    shutil.copyfile(run / "model.onnx", away)
    result = cli("validate", away, "--json")
    assert "checkpoint" not in {c["check"] for c in json.loads(result.stdout)["checks"]}
    result = cli("validate", away, "--run", run, "--json")  # given the run, it is compared
    checks = {c["check"]: c for c in json.loads(result.stdout)["checks"]}
    assert checks["checkpoint"]["status"] == "fail", checks


def test_a_killed_export_never_leaves_a_truncated_model(cli, tmp_path_factory, tmp_path):
    """The fast counterpart of the slow kill test: a model file cut short (as a non-atomic write killed
    midway would leave it) is refused by predict with one line, so the atomic writes are what keep a kill
    harmless."""
    run = tmp_path / "run"
    shutil.copytree(exported(tmp_path_factory, "iris"), run)
    data = (run / "model.onnx").read_bytes()
    (run / "model.onnx").write_bytes(data[: len(data) // 2])
    rows = tmp_path / "rows.csv"
    rows.write_text("5.1,3.5,1.4,0.2\n")
    assert_one_line_error(cli("predict", run / "model.onnx", rows), "model.onnx")
