"""`toolkit validate` and `toolkit info` on tiny exported runs (an iris classifier and a sunspots forecaster).

A good model passes and reproduces metrics.json; a model with changed weights or a frozen batch axis fails
with exit code 1; info shows the operators and the parameter count of the PyTorch model; bad input (a
damaged or foreign file, missing or newer metadata, a run without checkpoint) is one line and exit code 2.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from helpers import assert_one_line_error
from runs import exported

from toolkit.errors import ToolkitError
from toolkit.runtime import schema
from toolkit.runtime.info import model_info
from toolkit.runtime.model import OnnxModel, read_metadata
from toolkit.runtime.validate import ACCURACY_ATOL, ERROR_RTOL


@pytest.fixture(scope="module")
def classifier(tmp_path_factory) -> Path:
    """An MLP on builtin:iris, right most of the time, exported: RUN_DIR (shared, tests/runs.py)."""
    return exported(tmp_path_factory, "iris")


@pytest.fixture(scope="module")
def forecaster(tmp_path_factory) -> Path:
    """An Elman RNN on the builtin sunspots series, exported: RUN_DIR (shared, tests/runs.py)."""
    return exported(tmp_path_factory, "forecast")


def _checks(report: dict) -> dict[str, str]:
    """check name -> status (the worst over providers)."""
    out: dict[str, str] = {}
    for c in report["checks"]:
        if out.get(c["check"]) != "fail":
            out[c["check"]] = c["status"]
    return out


def _edited(src: Path, dst: Path, edit) -> Path:
    """A copy of a model with `edit(proto)` applied (no sidecar beside it)."""
    proto = onnx.load(src)
    edit(proto)
    onnx.save(proto, dst)
    return dst


def _set_metadata(proto, change) -> None:
    prop = next(p for p in proto.metadata_props if p.key == "toolkit")
    doc = json.loads(prop.value)
    change(doc)
    prop.value = json.dumps(doc)


# --------------------------------------------------------------------------------------------- good models
def test_validate_passes_and_reproduces_metrics_json(cli, classifier):
    result = cli("validate", classifier / "model.onnx", "--run", classifier)
    assert result.exit_code == 0, result.output
    for word in ("metadata", "batch sizes", "parity", "accuracy (main)", "passed"):
        assert word in result.output

    report = json.loads((classifier / "validate.json").read_text())
    assert report["passed"] and report["data"]["samples"] == 30
    assert _checks(report) == {
        "metadata": "pass",
        "sidecar": "pass",
        "load": "pass",
        "signature": "pass",
        "run": "pass",
        "batch sizes": "pass",
        "metrics": "pass",
        "checkpoint": "pass",
        "parity": "pass",
    }
    recorded = json.loads((classifier / "metrics.json").read_text())
    (rows,) = report["metrics"].values()
    assert set(rows) == {"accuracy", "f1_macro", "precision_macro", "recall_macro"}
    for name, row in rows.items():
        assert row["expected"] == recorded[name]
        assert abs(row["got"] - recorded[name]) <= ACCURACY_ATOL
    assert recorded["accuracy"] > 0.6  # a model worth validating: a perturbation must show
    assert report["parity"]["outputs"]["probabilities"]["tolerance_used"] <= 1.0


def test_validate_forecaster_json(cli, forecaster):
    result = cli("validate", forecaster / "model.onnx", "--run", forecaster, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["passed"] and report["task"] == "forecast"
    assert report == json.loads((forecaster / "validate.json").read_text())
    recorded = json.loads((forecaster / "metrics.json").read_text())
    rows = report["metrics"]["CPUExecutionProvider"]
    for name in ("mae", "rmse", "mape"):
        assert abs(rows[name]["got"] - recorded[name]) <= ERROR_RTOL * abs(recorded[name])
    assert report["data"]["samples"] == recorded["samples"]["test"]


def test_validate_with_data_elsewhere(cli, classifier, iris_csv):
    """--data: the same data at another place (a CSV of iris) gives the same split and metrics."""
    result = cli("validate", classifier / "model.onnx", "--data", iris_csv, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["data"]["source"].startswith(str(iris_csv))
    assert _checks(report)["metrics"] == "pass"


def test_validate_without_torch(classifier, tmp_path):
    """In an interpreter where torch cannot be imported, validate still runs every check but parity,
    which is skipped with a note (torch is blocked by an import hook, as if it were not installed)."""
    code = f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "torch":
            raise ImportError("no torch here", name=name)
sys.meta_path.insert(0, Block())
sys.argv = ["toolkit", "validate", {str(classifier / "model.onnx")!r}, "--run", {str(classifier)!r}, "--json"]
from toolkit.cli.main import main
try:
    main()
finally:
    assert not [m for m in sys.modules if m.split(".")[0] == "torch"], "torch was imported"
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    parity = next(c for c in report["checks"] if c["check"] == "parity")
    assert parity["status"] == "skip" and "PyTorch is not installed" in parity["detail"]
    assert report["passed"] and _checks(report)["metrics"] == "pass"


# --------------------------------------------------------------------------------------------- bad models
def _negate_last_layer(proto) -> None:
    """Logits negated: argmax becomes argmin, so the accuracy collapses."""
    last = [n for n in proto.graph.node if n.op_type == "Gemm"][-1]
    for init in proto.graph.initializer:
        if init.name in last.input[1:]:
            w = onnx.numpy_helper.to_array(init)
            init.CopyFrom(onnx.numpy_helper.from_array(-w, init.name))


def test_validate_fails_on_perturbed_weights(cli, classifier, tmp_path):
    model = _edited(classifier / "model.onnx", tmp_path / "perturbed.onnx", _negate_last_layer)
    result = cli("validate", model)
    assert result.exit_code == 1, result.output
    assert "FAILED (metrics)" in result.output
    report = json.loads((tmp_path / "perturbed.validate.json").read_text())
    assert not report["passed"] and _checks(report)["metrics"] == "fail"
    assert not report["metrics"]["CPUExecutionProvider"]["accuracy"]["passed"]

    # With the run, PyTorch disagrees too.
    report = json.loads(cli("validate", model, "--run", classifier, "--json").stdout)
    assert _checks(report)["parity"] == "fail" and _checks(report)["checkpoint"] == "pass"


def test_validate_fails_on_frozen_batch_axis(cli, classifier, tmp_path):
    """The batch axis fixed at 2: the test split (30 rows) cannot run, and the graph contradicts the metadata."""

    def freeze(proto):
        proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 2

    model = _edited(classifier / "model.onnx", tmp_path / "frozen.onnx", freeze)
    result = cli("validate", model, "--json")
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    checks = _checks(report)
    assert checks["run"] == "fail" and checks["signature"] == "fail"
    run = next(c for c in report["checks"] if c["check"] == "run")
    assert "Got: 30 Expected: 2" in run["detail"]


def test_validate_catches_a_batch_axis_frozen_at_the_test_size(cli, classifier, tmp_path):
    """Frozen at exactly the test split's size, and the metadata edited to agree: only running at other
    batch sizes shows it."""

    def freeze(proto):
        for value in [proto.graph.input[0], *proto.graph.output]:
            value.type.tensor_type.shape.dim[0].dim_value = 30

        def change(doc):
            for port in [*doc["inputs"], *doc["outputs"]]:
                port["shape"][0] = 30

        _set_metadata(proto, change)

    model = _edited(classifier / "model.onnx", tmp_path / "frozen30.onnx", freeze)
    result = cli("validate", model, "--json")
    assert result.exit_code == 1, result.output
    checks = _checks(json.loads(result.stdout))
    assert checks["run"] == checks["signature"] == checks["metrics"] == "pass"
    assert checks["batch sizes"] == "fail"


def test_validate_fails_on_metadata_that_does_not_fit_the_schema(cli, classifier, tmp_path):
    def change(doc):
        doc["labels"] = 3
        del doc["provenance"]["opset"]

    model = _edited(classifier / "model.onnx", tmp_path / "bad.onnx", lambda p: _set_metadata(p, change))
    result = cli("validate", model, "--json")
    assert result.exit_code == 1, result.output
    meta = next(c for c in json.loads(result.stdout)["checks"] if c["check"] == "metadata")
    assert meta["status"] == "fail"
    assert "metadata.labels: expected a list of a string or null, got the number 3" in meta["detail"]
    assert "metadata.provenance: missing key 'opset'" in meta["detail"]


def test_validate_fails_when_the_sidecar_differs(cli, classifier, tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes((classifier / "model.onnx").read_bytes())
    doc = json.loads((classifier / "model.json").read_text())
    doc["labels"] = ["a", "b", "c"]
    (tmp_path / "m.json").write_text(json.dumps(doc))
    result = cli("validate", model, "--json")
    assert result.exit_code == 1
    assert _checks(json.loads(result.stdout))["sidecar"] == "fail"


# --------------------------------------------------------------------------------------------- info
def _torch_parameters(run_dir: Path) -> int:
    from toolkit.train.checkpoint import load_checkpoint, load_model

    return sum(p.numel() for p in load_model(load_checkpoint(run_dir / "best.pt")).parameters())


def test_info_table(cli, classifier):
    result = cli("info", classifier / "model.onnx")
    assert result.exit_code == 0, result.output
    out = result.output
    for word in ("classify model", "mlp", "[batch, 4]", "probabilities", "ai.onnx 18", "Gemm", "setosa"):
        assert word in out, word
    assert f"{_torch_parameters(classifier):,} in 4 initializers" in out
    assert "read with onnx" in out


def test_info_json(cli, classifier, forecaster):
    doc = json.loads(cli("info", classifier / "model.onnx", "--json").stdout)
    assert doc["operators"]["Gemm"] == 2 and {"Relu", "Softmax"} <= set(doc["operators"])
    assert doc["parameters"] == _torch_parameters(classifier)
    assert doc["opset"] == {"ai.onnx": 18} and doc["bytes"] == (classifier / "model.onnx").stat().st_size
    assert [p["name"] for p in doc["inputs"]] == ["input"]
    assert doc["inputs"][0]["shape"] == ["batch", 4] and doc["inputs"][0]["preprocessing"]["per"] == "feature"
    assert doc["metadata"] == json.loads((classifier / "model.json").read_text())

    doc = json.loads(cli("info", forecaster / "model.onnx", "--json").stdout)
    assert doc["task"] == "forecast" and doc["inputs"][0]["shape"] == ["batch", "window", 1]
    assert doc["parameters"] > 0 and doc["nodes"] == sum(doc["operators"].values())


def test_info_without_onnx_falls_back_to_onnxruntime(classifier, monkeypatch):
    with_onnx = model_info(classifier / "model.onnx")
    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` now raises ImportError
    without = model_info(classifier / "model.onnx")
    assert without["source"].startswith("onnxruntime") and "onnx is not installed" in without["source"]
    assert without["operators"] is None and without["parameters"] is None
    assert without["inputs"] == with_onnx["inputs"] and without["outputs"] == with_onnx["outputs"]
    assert without["opset"] == {"ai.onnx": 18} and without["metadata"] == with_onnx["metadata"]
    assert read_metadata(classifier / "model.onnx") == with_onnx["metadata"]


# --------------------------------------------------------------------------------------------- the wrapper
def test_onnx_model_runs_and_refuses_bad_feeds(classifier):
    model = OnnxModel(classifier / "model.onnx")
    assert model.task == "classify" and model.labels == ["setosa", "versicolor", "virginica"]
    assert model.input_names == ["input"] and model.output_names == ["logits", "probabilities"]
    assert model.inputs[0].shape == ("batch", 4) and model.inputs[0].dtype == "float32"
    x = np.random.default_rng(0).standard_normal((5, 4))  # float64: converted to the input's dtype
    out = model.run({"input": x})
    assert out["probabilities"].shape == (5, 3)
    np.testing.assert_allclose(out["probabilities"].sum(axis=1), 1, rtol=1e-5)
    batched = model.run_batches({"input": x}, batch_size=2)
    np.testing.assert_allclose(batched["logits"], out["logits"], atol=1e-5)
    with pytest.raises(ToolkitError, match="missing input 'input'; the model takes: input"):
        model.run({"x": x})
    with pytest.raises(ToolkitError, match=r"the model fails on inputs input \[5, 3\]"):
        model.run({"input": x[:, :3]})
    with pytest.raises(ToolkitError, match="execution provider TensorrtExecutionProvider is not available"):
        OnnxModel(classifier / "model.onnx", providers=["TensorrtExecutionProvider"], strict=True)


def test_schema_checker():
    assert schema.check({"schema": "toolkit.model/1"})[:2] == [
        "metadata: missing key 'task'",
        "metadata: missing key 'arch'",
    ]
    assert schema.check([]) == ["metadata: expected an object, got a list"]
    assert schema.schema_version("toolkit.model/12") == 12 and schema.schema_version("other/1") is None
    assert schema.check(True, int) == ["metadata: expected an integer, got true"]
    assert schema.check(2, float) == [] and schema.check("x", schema.TASKS) != []


# --------------------------------------------------------------------------------------------- bad input
def _bad_inputs(src: Path, tmp: Path) -> dict[str, tuple[Path, tuple[str, ...]]]:
    data = src.read_bytes()
    (tmp / "truncated.onnx").write_bytes(data[: len(data) // 2])
    (tmp / "notes.onnx").write_text("these are my notes, not a model\n")
    (tmp / "empty.onnx").write_bytes(b"")
    _edited(src, tmp / "bare.onnx", lambda p: p.ClearField("metadata_props"))
    _edited(src, tmp / "newer.onnx", lambda p: _set_metadata(p, lambda d: d.update(schema="toolkit.model/2")))
    _edited(src, tmp / "alien.onnx", lambda p: _set_metadata(p, lambda d: d.update(schema="acme/1")))
    _edited(
        src,
        tmp / "garbled.onnx",
        lambda p: next(m for m in p.metadata_props if m.key == "toolkit").__setattr__("value", "{oops"),
    )
    return {
        "truncated": (tmp / "truncated.onnx", ("truncated or corrupt ONNX model", "export it again")),
        "not onnx": (tmp / "notes.onnx", ("notes.onnx is not an ONNX model",)),
        "empty": (tmp / "empty.onnx", ("empty.onnx is empty",)),
        "missing": (tmp / "nope.onnx", ("model not found",)),
        "directory": (tmp, ("is a directory", "model.onnx")),
        "no metadata": (tmp / "bare.onnx", ("has no `toolkit` metadata", "toolkit export")),
        "newer schema": (
            tmp / "newer.onnx",
            ("toolkit.model/2 is newer than this toolkit", "toolkit.model/1"),
        ),
        "other schema": (tmp / "alien.onnx", ("unknown metadata schema 'acme/1'",)),
        "not json": (tmp / "garbled.onnx", ("metadata is not valid JSON",)),
    }


CASES = [
    "truncated",
    "not onnx",
    "empty",
    "missing",
    "directory",
    "no metadata",
    "newer schema",
    "other schema",
    "not json",
]


@pytest.mark.parametrize("command", ["validate", "info"])
@pytest.mark.parametrize("case", CASES)
def test_bad_model_files(cli, classifier, tmp_path, command, case):
    path, needles = _bad_inputs(classifier / "model.onnx", tmp_path)[case]
    if command == "info" and case == "no metadata":  # info describes any ONNX model (tests/test_import.py)
        result = cli(command, path)
        assert result.exit_code == 0 and "no toolkit metadata" in result.output, result.output
        return
    assert_one_line_error(cli(command, path), *needles)
    assert not list(tmp_path.glob("*validate.json"))


def test_bad_model_without_onnx(classifier, tmp_path, monkeypatch):
    """The onnxruntime path (no onnx package) tells the same things apart."""
    cases = _bad_inputs(classifier / "model.onnx", tmp_path)
    monkeypatch.setitem(sys.modules, "onnx", None)
    for case in CASES:
        path, needles = cases[case]
        with pytest.raises(ToolkitError) as info:
            read_metadata(path)
        for needle in needles:
            assert needle in str(info.value), (case, str(info.value))


def test_validate_run_without_checkpoint(cli, classifier, tmp_path):
    assert_one_line_error(
        cli("validate", classifier / "model.onnx", "--run", tmp_path), "checkpoint not found", "toolkit train"
    )
    assert_one_line_error(
        cli("validate", classifier / "model.onnx", "--run", tmp_path / "nope"), "run directory not found"
    )


def test_validate_data_that_cannot_be_read(cli, classifier, tmp_path):
    assert_one_line_error(
        cli("validate", classifier / "model.onnx", "--data", tmp_path / "nope.csv"),
        "cannot rebuild the data splits",
    )


def test_help(cli):
    for command, words in (("validate", ("--run", "--data", "--json", "exit code 1")), ("info", ("--json",))):
        result = cli(command, "--help")
        assert result.exit_code == 0
        text = " ".join(result.output.lower().split())
        for word in words:
            assert word in text, word
