"""Acceptance: default recipes on CPU reach the promised test accuracy, on builtin data and on the same data
as a CSV file or an image folder (slow: full default training).

A default run that several tests judge is trained once per session (runs.default_run): the default CNN is
also the default GAN's judge (test_gan), and each text recipe's langid run answers for the same texts read
from a CSV file once the CSV is shown to give the very same splits.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from runs import default_run

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


CPU = ("train.device=cpu",)  # the default GAN's judge is trained on the GAN's device: on CPU here


def _metrics(run):
    return json.loads((run / "metrics.json").read_text())


def test_default_cnn_accuracy_on_builtin_digits(tmp_path_factory):
    m = _metrics(default_run(tmp_path_factory, "cnn", CPU))
    assert m["accuracy"] >= 0.985, m


@pytest.mark.parametrize("recipe, data, minimum", [("mlp", None, 0.96), ("mlp", "builtin:wine", 0.95)])
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
def test_text_recipes_on_builtin_langid(tmp_path_factory, recipe):
    m = _metrics(default_run(tmp_path_factory, recipe))
    assert m["accuracy"] >= TEXT_MINIMUM, m


@pytest.mark.parametrize("recipe", ["transformer", "lstm-text"])
def test_text_recipes_on_generated_csv(tmp_path_factory, tmp_path, recipe):
    """The same texts as a CSV file: the splits (texts as token ids, labels, tokenizer) equal builtin:langid's,
    so training on them is the builtin run over again (seeded, deterministic): its accuracy is the CSV's."""
    from toolkit.data import load_splits
    from toolkit.recipe import load_recipe

    path = _langid_csv(tmp_path / "langid.csv")
    builtin = load_recipe(recipe)
    csv_recipe = load_recipe(recipe, [f"data.source={path}", "data.text_column=sentence"])
    a, b = (load_splits(r.data, r.task, "tokens", r.train.seed) for r in (builtin, csv_recipe))
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(a, f"x_{split}"), getattr(b, f"x_{split}"))
        np.testing.assert_array_equal(getattr(a, f"y_{split}"), getattr(b, f"y_{split}"))
    where = ("source", "text_column")  # the spec records where the texts came from; the rest is equal
    assert {k: v for k, v in a.spec.items() if k not in where} == {
        k: v for k, v in b.spec.items() if k not in where
    }
    assert a.spec["tokenizer"] == b.spec["tokenizer"] and len(a.y_test) > 100
    m = _metrics(default_run(tmp_path_factory, recipe))
    assert m["accuracy"] >= TEXT_MINIMUM, m


# --------------------------------------------------------------------------------------------- anomaly
def test_autoencoder_default_roc_auc(tmp_path):
    m = train("autoencoder", out=tmp_path / "run").metrics
    assert m["roc_auc"] >= 0.95, m
