"""Autoencoder anomaly detection: metrics, threshold selection, score monotonicity, eval plots, encoder,
bad class lists."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import assert_one_line_error

from toolkit.data import load_splits
from toolkit.errors import ToolkitError
from toolkit.metrics import average_precision, best_f1_threshold, binary_metrics, roc_auc
from toolkit.recipe import load_recipe
from toolkit.train import evaluate_run, train
from toolkit.train.anomaly import anomaly_scores, encode
from toolkit.train.checkpoint import load_checkpoint, load_model
from toolkit.train.tasks import predict_outputs

TINY = ["model.variant=dense", "model.hidden=[32]", "model.latent=4", "train.epochs=15", "train.patience=0"]


def test_ranking_metrics_match_scikit_learn():
    from sklearn.metrics import average_precision_score, roc_auc_score

    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.normal(size=300) + y, 1)  # rounding makes ties
    assert roc_auc(y, s) == pytest.approx(roc_auc_score(y, s))
    assert average_precision(y, s) == pytest.approx(average_precision_score(y, s))
    assert roc_auc(y, y.astype(float)) == 1.0 and roc_auc(y, -y.astype(float)) == 0.0


def test_best_f1_threshold_separates_separable_scores():
    y = np.array([0, 0, 0, 0, 1, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.9, 1.5])
    t = best_f1_threshold(y, scores)
    assert 0.4 < t < 0.9
    assert binary_metrics(y, scores > t) == {"precision": 1.0, "recall": 1.0, "f1": 1.0}


def test_novelty_split_trains_on_normal_classes_only():
    cfg = load_recipe("autoencoder").data
    s = load_splits(cfg, "reconstruct", "tabular", seed=0)
    assert set(np.unique(s.y_train)) == {0}
    assert set(np.unique(s.y_val)) == {0, 1} and set(np.unique(s.y_test)) == {0, 1}
    assert (
        s.spec["anomaly"]["anomaly_classes"] == ["0", "6"] and len(s.spec["anomaly"]["normal_classes"]) == 8
    )
    assert (s.y_test == 1).sum() == pytest.approx(0.2 * (s.y_test.size), rel=0.2)  # 2 of 10 classes


@pytest.fixture(scope="module")
def ae_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ae") / "run"
    result = train("autoencoder", overrides=TINY, out=out)
    return out, result


def test_metrics_and_threshold_recorded(ae_run):
    out, result = ae_run
    m = json.loads((out / "metrics.json").read_text())
    for key in ("roc_auc", "average_precision", "precision", "recall", "f1", "recon_mse", "threshold"):
        assert key in m, key
    assert 0.5 < m["roc_auc"] <= 1.0
    spec = load_checkpoint(out / "best.pt")["spec"]
    assert spec["threshold"] == pytest.approx(m["threshold"]) and spec["threshold_method"] == "f1"


def test_corrupted_inputs_score_higher(ae_run):
    out, _ = ae_run
    ckpt = load_checkpoint(out / "best.pt")
    model = load_model(ckpt)
    rec = load_recipe("autoencoder")
    s = load_splits(rec.data, "reconstruct", "tabular", seed=0, spec=ckpt["spec"])
    clean = s.x_test[s.y_test == 0]
    noisy = clean + np.random.default_rng(0).normal(0, 1.5, clean.shape).astype(np.float32)
    import torch

    sc = anomaly_scores(clean, predict_outputs(model, torch.as_tensor(clean)))
    sn = anomaly_scores(noisy, predict_outputs(model, torch.as_tensor(noisy)))
    assert (sn > sc).mean() > 0.95  # per sample: the corrupted version scores higher


def test_eval_writes_plots_and_matches(ae_run):
    out, result = ae_run
    ev = evaluate_run(out)
    assert ev["metrics"]["roc_auc"] == pytest.approx(result.metrics["roc_auc"])
    for name in ("score_hist.png", "reconstructions.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"


def test_encoder_is_a_feature_extractor(ae_run):
    out, _ = ae_run
    codes = encode(out, np.zeros((5, 64), dtype=np.float32))
    assert codes.shape == (5, 4)


def test_quantile_threshold_without_labelled_anomalies(tmp_path):
    res = train(
        "autoencoder",
        data="builtin:iris",
        out=tmp_path / "r",
        overrides=TINY + ["data.anomaly_classes=[]", "model.quantile=0.9"],
    )
    spec = load_checkpoint(tmp_path / "r" / "best.pt")["spec"]
    assert spec["threshold_method"] == "quantile 0.9"
    assert "roc_auc" not in res.metrics  # nothing labelled anomalous to rank against


def test_conv_variant(tmp_path):
    res = train(
        "autoencoder",
        out=tmp_path / "r",
        overrides=["model.variant=conv", "model.channels=[8, 16]", "train.epochs=3", "train.patience=0"],
    )
    assert "roc_auc" in res.metrics
    assert load_checkpoint(tmp_path / "r" / "best.pt")["input_shape"] == [1, 8, 8]


def test_overlapping_classes_are_rejected(cli, tmp_path):
    res = cli(
        "train",
        "autoencoder",
        "--set",
        "data.normal_classes=[1,2,3]",
        "--set",
        "data.anomaly_classes=[3,4]",
        "--out",
        tmp_path / "r",
    )
    assert_one_line_error(res, "overlap", "3")


def test_unknown_class_name_is_rejected(cli, tmp_path):
    res = cli("train", "autoencoder", "--set", "data.anomaly_classes=[cat]", "--out", tmp_path / "r")
    assert_one_line_error(res, "'cat'", "classes: 0, 1, 2")
    assert not (tmp_path / "r").exists()


def test_no_normal_class_left():
    cfg = load_recipe(
        "autoencoder", ["data.source=builtin:iris", "data.anomaly_classes=[setosa, versicolor, virginica]"]
    ).data
    with pytest.raises(ToolkitError, match="no normal class"):
        load_splits(cfg, "reconstruct", "tabular", seed=0)
