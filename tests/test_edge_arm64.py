"""The arm64 pieces that run without emulation: the ORT-format model of an arm64 bundle is written and read by
the onnxruntime it pins, and scripts/edge_arm64.py (`make edge-arm64`) compares answers strictly, names
missing tools, and fails (never skips) when the userland cannot be fetched. The emulated run itself is
`make edge-arm64` (minutes: not a unit test)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from runs import exported

from toolkit.runtime.edge import bundle
from toolkit.runtime.edge.runner import close

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("edge_arm64", ROOT / "scripts" / "edge_arm64.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_arm64_ort_model_is_written_and_read_by_the_pinned_onnxruntime(cli, tmp_path_factory, tmp_path):
    run = exported(tmp_path_factory, "iris")
    result = cli("edge", "pack", run, "--out", tmp_path / "b", "--target", "arm64", "--format", "ort")
    if "could not check" in result.output or "cannot fetch" in result.output:
        pytest.skip("the package index is not reachable for pip download")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["requirements"]["onnxruntime"] == manifest["ort_converter"] == bundle.DEFAULT_ARM64_ORT
    folder = bundle.converter_path(bundle.DEFAULT_ARM64_ORT)
    code = (
        "import sys, onnxruntime as o\n"
        "s = o.InferenceSession(sys.argv[1], providers=['CPUExecutionProvider'])\n"
        "print(o.__version__, s.get_inputs()[0].name)"
    )
    env = {**os.environ, "PYTHONPATH": folder or ""}
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "b" / "model.ort")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[0] == bundle.DEFAULT_ARM64_ORT


def test_compare_needs_same_labels_and_close_numbers(script):
    want = [{"input": "a.png", "label": "3", "probability": 0.5, "probabilities": {"3": 0.5, "1": 0.5}}]
    same = [{**want[0], "probability": 0.50004}]
    assert script.compare(same, want, 0.0, close)[0]
    passed, worst, _ = script.compare([{**want[0], "probability": 0.51}], want, 0.0, close)
    assert not passed and worst == pytest.approx(0.01)
    assert script.compare([{**want[0], "probability": 0.51}], want, 0.02, close)[0]  # an INT8 gate's budget
    assert not script.compare([{**want[0], "label": "1"}], want, 0.02, close)[0]
    assert not script.compare([{**want[0], "input": "b.png"}], want, 0.0, close)[0]
    assert not script.compare([], want, 0.0, close)[0]


def test_missing_tools_are_named_when_they_cannot_be_installed(script, monkeypatch):
    monkeypatch.setattr(script, "which", lambda name: None)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(script.CheckFailed, match="apt-get install debootstrap qemu-user-static"):
        script.ensure_tools()


def test_a_userland_that_cannot_be_fetched_fails_the_check(script, monkeypatch, tmp_path, capsys):
    fake = tmp_path / "debootstrap"
    fake.write_text(
        "#!/bin/sh\necho 'E: Failed getting release file http://deb.invalid/dists/bookworm' >&2\nexit 1\n"
    )
    fake.chmod(0o755)
    monkeypatch.setattr(script, "ensure_tools", lambda: (str(fake), "/nonexistent/qemu-aarch64-static"))
    assert script.main(["--cache", str(tmp_path / "cache"), "--only", "mlp"]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "fetching the arm64 bookworm userland" in out and "release file" in out
    assert not (tmp_path / "cache" / "rootfs").exists()
