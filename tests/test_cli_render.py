"""What a newcomer sees: help without `<bool>` after flags, tables whole in a pipe, and on a runtime-only
install a training command that names the extra to install."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ANSI, NO_TORCH
from typer.main import get_command

from toolkit.cli.main import app

TOOLKIT = [sys.executable, "-m", "toolkit.cli.main"]


def _commands(cmd, path=("toolkit",)):
    yield path, cmd
    for name, sub in sorted(getattr(cmd, "commands", {}).items()):
        yield from _commands(sub, (*path, name))


@pytest.mark.parametrize("path", [p for p, _ in _commands(get_command(app))], ids=" ".join)
def test_help_shows_no_type_after_flags(cli, path):
    result = cli(*path[1:], "--help")
    assert result.exit_code == 0, result.output
    text = ANSI.sub("", result.output)
    assert "<bool>" not in text
    assert "--help" in text


def test_help_keeps_the_type_of_options_that_take_a_value(cli):
    text = ANSI.sub("", cli("train", "--help").output)
    assert "<int>" in text  # --epochs takes a number
    assert "--no-progress" in text


@pytest.fixture(scope="module")
def iris_model(tmp_path_factory) -> Path:
    """A tiny iris MLP (2 epochs) exported to ONNX, trained in-process through the CLI."""
    from typer.testing import CliRunner

    run = tmp_path_factory.mktemp("render") / "iris"
    runner = CliRunner()
    args = ["train", "mlp", "--data", "builtin:iris", "--epochs", "2", "--out", str(run), "--no-progress"]
    assert runner.invoke(app, args).exit_code == 0
    assert runner.invoke(app, ["export", str(run)]).exit_code == 0
    return run / "model.onnx"


def _piped(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """The CLI as CI runs it: stdout is a pipe, no COLUMNS, so rich assumes 80 columns."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "FORCE_COLOR")} | (env or {})
    return subprocess.run([*TOOLKIT, *args], capture_output=True, text=True, timeout=240, env=env)


def _table_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line[:1] in "┏┃┡│└"]


def test_bench_table_is_whole_in_a_pipe(iris_model):
    out = _piped(
        "bench",
        str(iris_model),
        "--rounds",
        "1",
        "--batch",
        "1,64",
        "--json",
        str(iris_model.parent / "b.json"),
    )
    assert out.returncode == 0, out.stderr
    lines = _table_lines(out.stdout)
    assert lines, out.stdout
    assert "…" not in out.stdout, out.stdout
    assert max(len(line) for line in lines) > 80  # wider than the 80 columns rich assumed
    header = " ".join(lines[:3])
    for column in ("contender", "p50 ms", "rows/s", "vs fp32", "peak RSS"):
        assert column in header


def test_quantize_table_is_whole_in_a_pipe(iris_model):
    out = _piped("quantize", str(iris_model), "--mode", "dynamic", "--batch", "1,64", "--force")
    assert out.returncode in (0, 1), out.stderr
    assert "…" not in out.stdout, out.stdout
    lines = _table_lines(out.stdout)
    assert any("candidate" in line and "accuracy" in line for line in lines), out.stdout
    assert max(len(line) for line in lines) > 80


def _without_torch(*args: str, block_more: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    extra = "".join(
        f"sys.modules[{m!r}] = None\n" for m in block_more
    )  # None in sys.modules: `import m` raises ModuleNotFoundError, as when it is not installed
    code = (
        NO_TORCH
        + extra
        + f"sys.argv = ['toolkit', *{list(args)!r}]\nfrom toolkit.cli.main import main\nmain()\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240)


@pytest.mark.parametrize("args", [("train", "mlp", "--epochs", "1"), ("export", "runs/none-such")])
def test_training_commands_name_the_extra_without_torch(args, tmp_path):
    out = _without_torch(*args)
    assert out.returncode == 2, out.stderr
    line = ANSI.sub("", out.stderr).strip()
    assert line.startswith("error:") and len(line.splitlines()) == 1, line
    assert "pip install 'toolkit[train]'" in line
    assert "unexpected" not in line


def test_validate_names_the_train_extra_when_the_dataset_package_is_missing(iris_model):
    out = _without_torch("validate", str(iris_model), block_more=("sklearn", "sklearn.datasets"))
    assert out.returncode == 2, out.stderr
    line = ANSI.sub("", out.stderr).strip()
    assert "pip install 'toolkit[train]'" in line, line  # `[train]` was eaten as rich markup before


def test_bundle_readme_installs_with_sudo_and_reloads_systemd(iris_model, tmp_path):
    from toolkit.runtime.edge.bundle import device_readme
    from toolkit.runtime.model import read_metadata

    text = device_readme(read_metadata(iris_model), "x86_64", "onnx", {"onnxruntime": "1"}, "model.onnx")
    assert "sudo python3 -m venv venv && sudo venv/bin/pip install -r requirements.txt" in text
    assert "sudo systemctl daemon-reload" in text
    assert text.index("daemon-reload") < text.index("enable --now")
