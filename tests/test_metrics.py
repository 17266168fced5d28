"""The one table of per-task metrics (toolkit.metrics.TASK_METRICS) and the consumers that read it."""

from __future__ import annotations

import numpy as np
import pytest

from toolkit.metrics import ERROR_METRICS, MAIN_METRIC, TASK_METRICS, direction_of, regression_metrics
from toolkit.recipe import ARCH_TASKS


def test_every_task_a_recipe_can_name_has_one_row():
    tasks = {t for tasks in ARCH_TASKS.values() for t in tasks}
    assert tasks == set(TASK_METRICS)
    assert MAIN_METRIC == {t: (m.main, m.direction) for t, m in TASK_METRICS.items()}
    for m in TASK_METRICS.values():  # error metrics go down, the others up
        assert m.direction == ("min" if m.main in ERROR_METRICS else "max")


@pytest.mark.parametrize("task", ["classify", "regress", "forecast", "reconstruct"])
def test_training_tasks_and_the_quantize_gate_read_the_table(task):
    from toolkit.runtime.quantize.gate import main_metric

    meta = {"task": task}
    y = np.zeros(4)  # one kind only: an anomaly detector is then gated on its main metric too
    assert main_metric(meta, y) == MAIN_METRIC[task]


def test_the_training_task_reports_the_table_main_metric():
    from toolkit.recipe import load_recipe
    from toolkit.train.registry import make_task

    for name, task in (("mlp-regress", "regress"), ("lstm-forecast", "forecast"), ("cnn-image", "classify")):
        t = make_task(load_recipe(name), {})
        assert (t.main_metric, t.mode) == MAIN_METRIC[task]


def test_regression_scores_from_graph_outputs_equal_the_metric_functions():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(50, 1))
    pred = y + rng.normal(scale=0.1, size=(50, 1))
    got = TASK_METRICS["regress"].score({"prediction": pred.astype(np.float32)}, y, {})
    assert got["rmse"] == pytest.approx(regression_metrics(y, pred)["rmse"], rel=1e-6)
    assert got["rmse"] == pytest.approx(float(np.sqrt(np.mean((pred - y) ** 2))), rel=1e-6)


def test_reconstruct_scores_detection_and_the_recorded_threshold():
    y = np.array([0, 0, 0, 1, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.9, 0.25])
    meta = {"thresholds": {"score": {"value": 0.5}}}
    got = TASK_METRICS["reconstruct"].score({"score": scores}, y, meta)
    assert got["recon_mse"] == pytest.approx(0.2)  # normal samples only
    assert got["roc_auc"] == pytest.approx(5 / 6)
    assert (got["precision"], got["recall"]) == (1.0, 0.5)
    assert "precision" not in TASK_METRICS["reconstruct"].score({"score": scores}, y, {})


@pytest.mark.parametrize(
    "name, direction",
    [("accuracy", "max"), ("val_rmse", "min"), ("loss", "min"), ("naive_mae", "min"), ("roc_auc", "max")],
)
def test_direction_of_a_metric_name(name, direction):
    assert direction_of(name) == direction
