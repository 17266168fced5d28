"""Acceptance: default recipes on CPU reach the promised test accuracy, on builtin data and on the same data
as a CSV file or an image folder (slow: full default training, ~1 minute in all on 2 cores)."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from toolkit.train import train

pytestmark = pytest.mark.slow


def _csv_from_sklearn(name, path):
    from sklearn import datasets

    bunch = getattr(datasets, f"load_{name}")()
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([*bunch.feature_names, "label"])
        for row, t in zip(bunch.data, bunch.target):
            w.writerow([*(f"{v:.6g}" for v in row), bunch.target_names[t]])
    return path


def _digits_folder(root):
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    for i, (img, t) in enumerate(zip(d.images, d.target)):
        folder = root / str(t)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.round(img * 255 / 16).astype(np.uint8), mode="L").save(folder / f"{i:04d}.png")
    return root


@pytest.mark.parametrize(
    "recipe, data, minimum",
    [
        ("cnn", None, 0.985),
        ("mlp", None, 0.96),
        ("mlp", "builtin:wine", 0.95),
    ],
)
def test_default_recipe_accuracy_on_builtin_data(tmp_path, recipe, data, minimum):
    res = train(recipe, data=data, out=tmp_path / "run")
    assert res.metrics["accuracy"] >= minimum, res.metrics


@pytest.mark.parametrize("name, minimum", [("breast_cancer", 0.96), ("wine", 0.95)])
def test_mlp_on_csv_made_from_builtin(tmp_path, name, minimum):
    res = train("mlp", data=str(_csv_from_sklearn(name, tmp_path / f"{name}.csv")), out=tmp_path / "run")
    assert res.metrics["accuracy"] >= minimum, res.metrics


def test_cnn_on_image_folder_made_from_digits(tmp_path):
    res = train("cnn", data=str(_digits_folder(tmp_path / "digits")), out=tmp_path / "run")
    assert res.metrics["accuracy"] >= 0.985, res.metrics
    assert res.metrics["samples"]["test"] == 359


# --------------------------------------------------------------------------------------------- sequences
@pytest.mark.parametrize(
    "recipe, max_ratio",
    [("lstm", 0.70), ("gru", 0.70), ("transformer-forecast", 0.70), ("rnn", 1.0)],
)
def test_forecasters_beat_persistence_on_sunspots(tmp_path, recipe, max_ratio):
    m = train(recipe, out=tmp_path / "run").metrics
    assert m["mae"] <= max_ratio * m["naive_mae"], m


def _langid_csv(path):
    from toolkit.data.text import langid

    raw = langid()
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["sentence", "language"])
        w.writerows(zip(raw.x, raw.y))
    return path


TEXT_MINIMUM = 0.95  # the accuracy the README states for the default text recipes on builtin:langid


@pytest.mark.parametrize("recipe", ["transformer", "lstm-text"])
def test_text_recipes_on_builtin_langid(tmp_path, recipe):
    m = train(recipe, out=tmp_path / "run").metrics
    assert m["accuracy"] >= TEXT_MINIMUM, m


@pytest.mark.parametrize("recipe", ["transformer", "lstm-text"])
def test_text_recipes_on_generated_csv(tmp_path, recipe):
    path = _langid_csv(tmp_path / "langid.csv")
    m = train(recipe, data=str(path), overrides=["data.text_column=sentence"], out=tmp_path / "run").metrics
    assert m["accuracy"] >= TEXT_MINIMUM, m


# --------------------------------------------------------------------------------------------- anomaly
def test_autoencoder_default_roc_auc(tmp_path):
    m = train("autoencoder", out=tmp_path / "run").metrics
    assert m["roc_auc"] >= 0.95, m
