"""Experiment tracking through the real libraries: MLflow on a SQLite store (read back with MLflow's own
client), TensorBoard event files (read back with TensorBoard's EventAccumulator), and the MLflow model
registry for exported and quantized models."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import NO_TORCH, assert_one_line_error
from typer.testing import CliRunner

pytest.importorskip("mlflow")
pytest.importorskip("tensorboard")

from mlflow.tracking import MlflowClient  # noqa: E402

from toolkit.cli.main import app  # noqa: E402
from toolkit.errors import ToolkitError  # noqa: E402

IRIS = ["model.hidden=[8]", "train.epochs=3", "train.lr=0.05"]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture(autouse=True)
def _uri(store, monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.chdir(tmp_path)  # MLflow's artifact folder (./mlruns) lands in the test's folder


@pytest.fixture(scope="module")
def tracked(tmp_path_factory, store) -> Path:
    """An iris run tracked in MLflow and TensorBoard, then exported (graph into TensorBoard, registered)."""
    import os

    from toolkit.export import export_run
    from toolkit.train import train

    os.environ["MLFLOW_TRACKING_URI"] = store
    run = tmp_path_factory.mktemp("tracked") / "iris"
    train("mlp-tabular", data="builtin:iris", overrides=IRIS, out=run, track=["mlflow", "tensorboard"])
    export_run(run, register="iris-mlp")
    return run


def run_id(run: Path) -> str:
    return json.loads((run / "tracking.json").read_text())["mlflow"]["run_id"]


def test_a_tracked_run_is_in_mlflow_with_params_metrics_per_epoch_and_artifacts(tracked, store):
    c = MlflowClient(store)
    r = c.get_run(run_id(tracked))
    assert r.info.status == "FINISHED"
    assert r.data.params["train.lr"] == "0.05" and r.data.params["model.hidden"] == "[8]"
    history = [
        m.value for m in sorted(c.get_metric_history(r.info.run_id, "val_accuracy"), key=lambda m: m.step)
    ]
    import csv

    with open(tracked / "metrics.csv") as f:
        expected = [float(row["val_accuracy"]) for row in csv.DictReader(f)]
    assert history == pytest.approx(expected) and len(history) == 3
    final = json.loads((tracked / "metrics.json").read_text())
    assert r.data.metrics["accuracy"] == pytest.approx(final["accuracy"])
    artifacts = {a.path for a in c.list_artifacts(r.info.run_id)}
    assert {"metrics.json", "metrics.csv", "recipe.yaml", "curves.png"} <= artifacts


def test_tensorboard_holds_scalars_images_and_the_exported_onnx_graph(tracked):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tracked / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    assert [e.step for e in acc.Scalars("val/accuracy")] == [1, 2, 3]
    assert "curves" in tags["images"]
    assert tags["graph"], "the ONNX graph written at export is missing"
    names = {node.op for node in acc.Graph().node}
    assert "Gemm" in names or "MatMul" in names


def test_export_registers_the_model_with_its_signature_linked_to_the_training_run(tracked, store):
    import mlflow

    c = MlflowClient(store)
    version = c.get_model_version_by_alias("iris-mlp", "fp32")
    assert version.run_id == run_id(tracked)
    mlflow.set_tracking_uri(store)
    info = mlflow.models.get_model_info("models:/iris-mlp@fp32")
    inputs = info.signature.inputs.to_dict()
    assert list(inputs[0]["tensor-spec"]["shape"]) == [-1, 4]
    names = [o["name"] for o in info.signature.outputs.to_dict()]
    assert "probabilities" in names


def test_quantize_registers_the_int8_variant_as_a_new_version_without_torch(tracked, store, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tracked, run)
    code = NO_TORCH + (
        "from toolkit.runtime.quantize import quantize\n"
        f"r = quantize({str(run / 'model.onnx')!r}, mode='static', force=True, register='iris-mlp')\n"
        "import json, sys; print(json.dumps(r['registered']))\n"
        "assert not any(m == 'torch' or m.startswith('torch.') for m in sys.modules)\n"
    )
    env = {**__import__("os").environ, "MLFLOW_TRACKING_URI": store}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    registered = json.loads(proc.stdout.strip().splitlines()[-1])
    assert registered["alias"] == "int8" and registered["run_id"] == run_id(tracked)
    c = MlflowClient(store)
    int8, fp32 = (c.get_model_version_by_alias("iris-mlp", a) for a in ("int8", "fp32"))
    assert int(int8.version) > int(fp32.version)
    assert c.get_model_version("iris-mlp", int8.version).tags["toolkit.variant"] == "int8"


def test_a_tune_study_is_a_run_with_its_trials_as_child_runs(tmp_path, store):
    from toolkit.tune import tune

    result = tune(
        "mlp-tabular", data="builtin:iris", overrides=["train.epochs=2"], trials=2, out=tmp_path / "tune",
        track=["mlflow"],
    )  # fmt: skip
    c = MlflowClient(store)
    parent_id = json.loads((tmp_path / "tune" / "tracking.json").read_text())["mlflow"]["run_id"]
    parent = c.get_run(parent_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["best_val_accuracy"] == pytest.approx(result.best["value"])
    children = c.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'"
    )
    assert len(children) == 2
    values = sorted(ch.data.metrics["val_accuracy"] for ch in children)
    assert max(values) == pytest.approx(result.best["value"])
    assert "best.yaml" in {a.path for a in c.list_artifacts(parent_id)}


def test_resume_continues_the_same_mlflow_run(tmp_path, store):
    from toolkit.train import train

    def stop(epoch, row):
        if epoch == 1:
            raise KeyboardInterrupt

    run = tmp_path / "iris"
    with pytest.raises(KeyboardInterrupt):
        train("mlp-tabular", data="builtin:iris", overrides=IRIS, out=run, callbacks=[stop], track=["mlflow"])
    first = run_id(run)
    assert MlflowClient(store).get_run(first).info.status == "KILLED"
    train(resume=run)
    assert run_id(run) == first
    c = MlflowClient(store)
    assert c.get_run(first).info.status == "FINISHED"
    assert sorted(m.step for m in c.get_metric_history(first, "val_accuracy")) == [1, 2, 3]


def test_unknown_and_missing_trackers_are_one_line_errors():
    result = CliRunner().invoke(app, ["train", "mlp-tabular", "--data", "builtin:iris", "--track", "wandb"])
    assert_one_line_error(result, "unknown tracker 'wandb'", "mlflow or tensorboard")
    with pytest.raises(ToolkitError, match="register takes a model name"):
        from toolkit.tracking.registry import register

        register(Path("x.onnx"), "bad name!", "fp32")
    block = (
        "import sys\nclass _No:\n    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'mlflow':\n            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, _No())\n"
        "from toolkit.tracking import check_kinds\ncheck_kinds(['mlflow'])\n"
    )
    proc = subprocess.run([sys.executable, "-c", block], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "pip install 'toolkit[mlflow]'" in proc.stderr


def test_a_federated_run_logs_each_round(tmp_path, store):
    pytest.importorskip("flwr")
    from toolkit.federate import simulate

    overrides = ["federate.clients=2", "federate.rounds=2", "model.hidden=[8]", "train.track=[mlflow]"]
    res = simulate("mlp-tabular", data="builtin:iris", overrides=overrides, out=tmp_path / "run")
    c = MlflowClient(store)
    rid = run_id(tmp_path / "run")
    run = c.get_run(rid)
    assert run.info.status == "FINISHED"
    assert run.data.params["federate.rounds"] == "2"
    assert sorted(m.step for m in c.get_metric_history(rid, "clients")) == [1, 2]
    assert run.data.metrics["accuracy"] == pytest.approx(res.metrics["accuracy"])
