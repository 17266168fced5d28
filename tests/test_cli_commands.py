"""CLI: help of every command and the happy path of each, through Typer's test runner."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from toolkit.cli.main import app

runner = CliRunner()
COMMANDS = ["recipes", "train", "eval"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_root_help_lists_every_command():
    res = invoke("--help")
    assert res.exit_code == 0
    for cmd in COMMANDS:
        assert cmd in res.output


@pytest.mark.parametrize("cmd", COMMANDS)
def test_command_help(cmd):
    res = invoke(cmd, "--help")
    assert res.exit_code == 0
    assert "Usage" in res.output


def test_version():
    from toolkit import __version__

    res = invoke("--version")
    assert res.exit_code == 0 and __version__ in res.output


def test_recipes_table_and_json():
    res = invoke("recipes")
    assert res.exit_code == 0 and "cnn-image" in res.output and "builtin:digits" in res.output
    rows = json.loads(invoke("recipes", "--json").output)
    by_name = {r["name"]: r for r in rows}
    assert by_name["cnn-image"]["alias"] == "cnn" and by_name["mlp-tabular"]["task"] == "classify"


def test_train_then_eval(tmp_path):
    run = tmp_path / "run"
    res = invoke(
        "train", "cnn", "--epochs", 2, "--set", "model.channels=[8]", "--batch-size", 128, "--out", run
    )
    assert res.exit_code == 0, res.output
    assert "accuracy" in res.output and str(run) in res.output.replace("\n", "")
    assert (run / "best.pt").is_file()
    res = invoke("eval", run)
    assert res.exit_code == 0, res.output
    assert "confusion matrix" in res.output
    data = json.loads(invoke("eval", run, "--json").output)
    assert data["samples"] == sum(map(sum, data["confusion"]))
    assert data["metrics"]["accuracy"] == pytest.approx(
        json.loads((run / "metrics.json").read_text())["accuracy"]
    )


def test_train_json_and_shortcut_flags(tmp_path):
    res = invoke(
        "train",
        "mlp",
        "--data",
        "builtin:iris",
        "--epochs",
        3,
        "--lr",
        "0.01",
        "--seed",
        3,
        "--device",
        "cpu",
        "--out",
        tmp_path / "r",
        "--json",
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["epochs_run"] == 3 and out["data"] == "builtin:iris" and out["device"] == "cpu"
    recipe = (tmp_path / "r" / "recipe.yaml").read_text()
    assert "lr: 0.01" in recipe and "seed: 3" in recipe


def test_train_resume_via_cli(tmp_path):
    run = tmp_path / "r"
    assert invoke("train", "mlp", "--data", "builtin:iris", "--epochs", 2, "--out", run).exit_code == 0
    text = (run / "recipe.yaml").read_text().replace("epochs: 2", "epochs: 4")
    (run / "recipe.yaml").write_text(text)
    res = invoke("train", "--resume", run, "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["epochs_run"] == 4


def test_eval_on_other_data_uses_run_preprocessing(tmp_path):
    import csv

    from sklearn.datasets import load_iris

    iris = load_iris()
    path = tmp_path / "iris.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([*iris.feature_names, "species"])
        for row, t in zip(iris.data, iris.target):
            w.writerow([*row, iris.target_names[t]])
    run = tmp_path / "r"
    assert invoke("train", "mlp", "--data", path, "--epochs", 20, "--lr", "0.01", "--out", run).exit_code == 0
    data = json.loads(invoke("eval", run, "--data", path, "--json").output)
    assert data["samples"] == 150 and data["labels"] == ["setosa", "versicolor", "virginica"]
    assert data["metrics"]["accuracy"] > 0.8


def test_the_version_is_the_one_in_pyproject():
    """One place for the version: pyproject.toml; toolkit.__version__ reads the installed metadata."""
    import re
    from pathlib import Path

    import toolkit

    pyproject = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    assert toolkit.__version__ == re.search(r'^version = "([^"]+)"', pyproject, re.M).group(1)
    assert "__version__ =" not in Path(toolkit.__file__).read_text()
