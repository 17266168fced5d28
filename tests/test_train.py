"""The trainer on tiny real models: run directory contents, resume, early stopping, atomic writes, eval."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from toolkit.io import atomic_path, write_json
from toolkit.train import evaluate_run, next_run_dir, train
from toolkit.train.checkpoint import load_checkpoint

TINY_MLP = ["model.hidden=[16]", "train.patience=0"]
TINY_CNN = ["model.channels=[8]", "model.hidden=16", "train.patience=0", "train.batch_size=128"]


def _weights(path):
    return load_checkpoint(path)["model"]


def test_run_directory_holds_every_artifact(tmp_path):
    res = train("mlp", data="builtin:iris", overrides=TINY_MLP + ["train.epochs=3"], out=tmp_path / "run")
    run = res.run_dir
    for name in (
        "recipe.yaml",
        "best.pt",
        "last.pt",
        "metrics.csv",
        "metrics.json",
        "curves.png",
        "data.json",
    ):
        assert (run / name).is_file(), name
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert {"train_loss", "val_loss", "val_accuracy", "lr"} <= set(rows[0])
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("accuracy", "f1_macro", "precision_macro", "recall_macro"):
        assert 0.0 <= metrics[key] <= 1.0
    spec = json.loads((run / "data.json").read_text())
    assert spec["labels"] == ["setosa", "versicolor", "virginica"]
    assert len(spec["mean"]) == 4
    assert "train.epochs" not in (run / "recipe.yaml").read_text()
    assert "epochs: 3" in (run / "recipe.yaml").read_text()  # the resolved recipe, overrides applied


def test_default_run_dir_is_runs_name_then_numbered(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = train("mlp", data="builtin:iris", overrides=TINY_MLP + ["train.epochs=1"]).run_dir
    second = train("mlp", data="builtin:iris", overrides=TINY_MLP + ["train.epochs=1"]).run_dir
    assert str(first) == "runs/mlp-tabular" and str(second) == "runs/mlp-tabular-2"
    assert next_run_dir("mlp-tabular") == next_run_dir("mlp-tabular")  # asking does not create


def _interrupt_after(n):
    def cb(epoch, row):
        if epoch == n:
            raise KeyboardInterrupt

    return cb


@pytest.mark.parametrize(
    "recipe, data, extra",
    [
        ("mlp", "builtin:iris", TINY_MLP + ["model.dropout=0.3", "train.schedule=onecycle"]),
        ("cnn", "builtin:digits", TINY_CNN),  # dropout + augmentation + batch norm draw random numbers
    ],
)
def test_resume_equals_uninterrupted_run(tmp_path, recipe, data, extra):
    sets = extra + ["train.epochs=4"]
    full = train(recipe, data=data, overrides=sets, out=tmp_path / "full")
    with pytest.raises(KeyboardInterrupt):
        train(recipe, data=data, overrides=sets, out=tmp_path / "cut", callbacks=[_interrupt_after(2)])
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["epoch"] == 1  # two epochs done (0-based)
    resumed = train(resume=tmp_path / "cut")
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in full.history]
    for k, v in _weights(tmp_path / "full" / "best.pt").items():
        assert torch.equal(v, _weights(tmp_path / "cut" / "best.pt")[k]), k
    drop = ("seconds",)
    assert {k: v for k, v in resumed.metrics.items() if k not in drop} == {
        k: v for k, v in full.metrics.items() if k not in drop
    }


def test_resume_refuses_extra_arguments_and_non_runs(tmp_path):
    from toolkit.errors import ToolkitError

    with pytest.raises(ToolkitError, match="no recipe.yaml"):
        train(resume=tmp_path)
    with pytest.raises(ToolkitError, match="saved recipe"):
        train("mlp", resume=tmp_path)


def test_existing_run_is_not_overwritten(tmp_path):
    from toolkit.errors import ToolkitError

    train("mlp", data="builtin:iris", overrides=TINY_MLP + ["train.epochs=1"], out=tmp_path / "r")
    with pytest.raises(ToolkitError, match="--resume"):
        train("mlp", data="builtin:iris", overrides=TINY_MLP + ["train.epochs=1"], out=tmp_path / "r")


def test_early_stopping_stops_and_keeps_best(tmp_path):
    # A learning rate of zero cannot improve anything: the run must stop after `patience` more epochs.
    res = train(
        "mlp",
        data="builtin:iris",
        overrides=[
            "model.hidden=[8]",
            "train.lr=1e-12",
            "train.epochs=30",
            "train.patience=3",
            "train.schedule=none",
        ],
        out=tmp_path / "r",
    )
    assert res.metrics["stopped_early"] is True
    assert res.metrics["epochs_run"] == res.metrics["best_epoch"] + 3
    assert load_checkpoint(tmp_path / "r" / "best.pt")["epoch"] + 1 == res.metrics["best_epoch"]


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw", "rmsprop"])
@pytest.mark.parametrize("schedule", ["none", "cosine", "step", "onecycle"])
def test_optimizers_and_schedules_learn(tmp_path, optimizer, schedule):
    lr = {"sgd": 0.05, "rmsprop": 0.003}.get(optimizer, 0.01)
    res = train(
        "mlp",
        data="builtin:iris",
        out=tmp_path / "r",
        overrides=TINY_MLP
        + [
            f"train.optimizer={optimizer}",
            f"train.schedule={schedule}",
            f"train.lr={lr}",
            "train.epochs=12",
            "train.step_size=4",
            "train.weight_decay=1e-4",
            "train.grad_clip=1.0",
        ],
    )
    assert res.history[-1]["train_loss"] < res.history[0]["train_loss"]
    assert res.metrics["accuracy"] > 0.6  # chance is 0.33


@pytest.mark.parametrize("loss", ["bce", "cross_entropy"])
def test_classification_losses(tmp_path, loss):
    res = train(
        "mlp",
        data="builtin:iris",
        out=tmp_path / "r",
        overrides=TINY_MLP + [f"train.loss={loss}", "train.epochs=15", "train.lr=0.01"],
    )
    assert res.metrics["accuracy"] > 0.6


@pytest.mark.parametrize("loss", ["mse", "mae", "huber"])
def test_regression_reports_in_target_units(tmp_path, loss):
    res = train(
        "mlp-regress", out=tmp_path / "r", overrides=TINY_MLP + [f"train.loss={loss}", "train.epochs=15"]
    )
    m = res.metrics
    assert set(m) >= {"mse", "rmse", "mae", "r2"}
    assert m["rmse"] == pytest.approx(m["mse"] ** 0.5)
    assert 20 < m["mae"] < 150  # diabetes targets span 25..346: errors are in those units, not standardized
    assert m["r2"] > 0.0
    # the main metric is the one quantize gates on and validate reports first (toolkit.metrics.TASK_METRICS)
    assert m["main_metric"] == "rmse"
    assert "val_rmse" in (tmp_path / "r" / "metrics.csv").read_text().splitlines()[0]


def test_eval_recomputes_the_training_metrics(tmp_path):
    res = train("cnn", out=tmp_path / "r", overrides=TINY_CNN + ["train.epochs=2"])
    ev = evaluate_run(tmp_path / "r")
    assert ev["metrics"]["accuracy"] == pytest.approx(res.metrics["accuracy"])
    assert sum(map(sum, ev["confusion"])) == res.metrics["samples"]["test"]
    assert (tmp_path / "r" / "confusion.png").read_bytes()[:4] == b"\x89PNG"


def test_atomic_path_keeps_old_file_when_the_writer_dies(tmp_path):
    target = tmp_path / "metrics.json"
    write_json(target, {"ok": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text('{"half')
            raise RuntimeError("killed")
    assert json.loads(target.read_text()) == {"ok": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temp file left behind


def test_checkpoint_write_killed_midway_leaves_previous_checkpoint(tmp_path, monkeypatch):
    res = train("mlp", data="builtin:iris", overrides=TINY_MLP + ["train.epochs=2"], out=tmp_path / "r")
    before = load_checkpoint(res.run_dir / "last.pt")

    def dying_save(obj, f, *a, **k):
        with open(f, "wb") as fh:
            fh.write(b"PK\x03\x04 truncated")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(OSError):
        _resume_with_more_epochs(res.run_dir)
    after = load_checkpoint(res.run_dir / "last.pt")
    assert after["epoch"] == before["epoch"]
    assert not [p for p in res.run_dir.iterdir() if p.name.endswith(".tmp")]


def _resume_with_more_epochs(run_dir):
    text = (run_dir / "recipe.yaml").read_text().replace("epochs: 2", "epochs: 4")
    (run_dir / "recipe.yaml").write_text(text)
    train(resume=run_dir)


def test_damaged_checkpoint_is_a_clear_error(tmp_path):
    from toolkit.errors import ToolkitError

    (tmp_path / "best.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ToolkitError, match="cannot read checkpoint"):
        evaluate_run(tmp_path)


def test_bad_data_leaves_no_run_directory(tmp_path):
    from toolkit.errors import ToolkitError

    with pytest.raises(ToolkitError):
        train("cnn", data="builtin:iris", out=tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_atomic_writes_get_normal_permissions(tmp_path):
    import os
    import stat

    write_json(tmp_path / "a.json", {})
    mode = stat.S_IMODE(os.stat(tmp_path / "a.json").st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask
