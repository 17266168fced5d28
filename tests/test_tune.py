"""`toolkit tune` on tiny real searches: end to end, resume after an interrupt, bad spaces, and proof that
trials never read the test split (only the final scoring of the best trial does)."""

from __future__ import annotations

import csv
import json

import pytest
import yaml
from helpers import assert_one_line_error

import toolkit.data
import toolkit.train.loop
from toolkit.data import Splits
from toolkit.tune.search import finish, open_study, prepare, run_search

TINY = ["--data", "builtin:iris", "--set", "train.epochs=2", "--set", "train.patience=0"]
SPACE = {
    "train.lr": {"low": 1.0e-3, "high": 3.0e-2, "log": True},
    "model.hidden": [[8], [16]],
}


@pytest.fixture
def space_file(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(SPACE))
    return path


def _rows(path):
    return list(csv.DictReader(open(path)))


def test_tiny_search_end_to_end_and_best_yaml_reproduces(cli, tmp_path, space_file):
    out = tmp_path / "tune"
    result = cli("tune", "mlp", *TINY, "--space", space_file, "--trials", "3", "--out", out, "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [t["state"] for t in doc["trials"]] == ["complete"] * 3
    values = [t["value"] for t in doc["trials"]]
    assert doc["best"]["value"] == max(values) and doc["metric"] == "val_accuracy"
    assert set(doc["best"]["params"]) == set(SPACE)
    for name in ("best.yaml", "trials.csv", "history.png", "importance.png", "study.db", "tune.json"):
        assert (out / name).is_file(), name
    assert len(_rows(out / "trials.csv")) == 3
    for name in ("best.pt", "recipe.yaml", "metrics.csv", "metrics.json", "curves.png", "data.json"):
        assert (out / "best" / name).is_file(), name
    best_metrics = json.loads((out / "best" / "metrics.json").read_text())
    assert best_metrics["accuracy"] == doc["test_metrics"]["accuracy"]
    # Only the best trial keeps its checkpoint (a long search does not fill the disk).
    kept = sorted(p.parent.name for p in (out / "trials").glob("*/best.pt"))
    assert kept == [f"{doc['best']['number']:04d}"]

    # best.yaml is a complete recipe: `toolkit train best.yaml` retrains the best trial exactly (CPU).
    best = yaml.safe_load((out / "best.yaml").read_text())
    assert best["train"]["lr"] == pytest.approx(doc["best"]["params"]["train.lr"])
    assert best["model"]["hidden"] == doc["best"]["params"]["model.hidden"]
    again = cli("train", out / "best.yaml", "--out", tmp_path / "again", "--json")
    assert again.exit_code == 0, again.output
    retrained = json.loads(again.stdout)
    row = _rows(tmp_path / "again" / "metrics.csv")[retrained["best_epoch"] - 1]
    assert float(row["val_accuracy"]) == pytest.approx(doc["best"]["value"], abs=1e-6)
    assert retrained["accuracy"] == pytest.approx(best_metrics["accuracy"], abs=1e-6)

    # The best run directory is ready for export.
    exported = cli("export", out / "best")
    assert exported.exit_code == 0, exported.output
    assert (out / "best" / "model.onnx").is_file()


def test_interrupted_search_resumes_without_repeating_finished_trials(cli, tmp_path, space_file, monkeypatch):
    out = tmp_path / "tune"
    real_fit = toolkit.train.loop.fit
    calls = []

    def fit(recipe, splits, run_dir, **kwargs):
        calls.append(run_dir.name)
        if len(calls) == 2 and interrupt:  # Ctrl-C during the first epoch of the second trial

            def stop(epoch, row):
                raise KeyboardInterrupt

            kwargs["callbacks"] = [stop, *(kwargs.get("callbacks") or [])]
        return real_fit(recipe, splits, run_dir, **kwargs)

    monkeypatch.setattr(toolkit.train.loop, "fit", fit)
    args = ("tune", "mlp", *TINY, "--space", space_file, "--trials", "3", "--out", out, "--no-progress")
    interrupt = True
    first = cli(*args)
    assert first.exit_code == 130, first.output
    assert "interrupted after 1 finished trials" in first.output
    assert calls == ["0000", "0001"]
    trial0 = (out / "trials" / "0000" / "metrics.csv").read_text()

    interrupt = False
    second = cli(*args, "--json")
    assert second.exit_code == 0, second.output
    assert calls == ["0000", "0001", "0002", "0003"], "trial 0 finished before the interrupt: not rerun"
    doc = json.loads(second.stdout)
    assert [(t["number"], t["state"]) for t in doc["trials"]] == [
        (0, "complete"),
        (1, "fail"),
        (2, "complete"),
        (3, "complete"),
    ]
    assert (out / "trials" / "0000" / "metrics.csv").read_text() == trial0
    assert not (out / "trials" / "0001").exists(), "the interrupted trial's half-run is removed"

    # A third run of the finished search trains nothing and keeps the result.
    third = cli(*args, "--json")
    assert third.exit_code == 0 and len(calls) == 4
    assert json.loads(third.stdout)["best"] == doc["best"]


@pytest.mark.parametrize(
    "space, fragment",
    [
        ({"train.lrr": {"low": 0.1, "high": 0.2}}, "unknown key; train has epochs"),
        ({"model.dropout": {"low": 0.2, "high": 0.2}}, "empty range"),
        ({"model.hidden": []}, "empty list of choices"),
        ({"train.lr": {"low": 0.1, "high": 0.01}}, "low (0.1) is greater than high (0.01)"),
        ({"model.dropout": {"low": 0.1, "high": 1.5}}, "rejected: model.dropout must be between"),
        ({"train.seed": [0, 1]}, "cannot be searched"),
        ({"train.optimizer": {"low": 1, "high": 2}}, "list of choices, not a range"),
    ],
)
def test_bad_space_is_a_one_line_error(cli, tmp_path, space, fragment):
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    out = tmp_path / "tune"
    result = cli("tune", "mlp", *TINY, "--space", path, "--out", out)
    assert_one_line_error(result, fragment)
    assert not out.exists(), "nothing is written for a bad space"


def test_bad_search_section_in_a_recipe_file_is_rejected(cli, tmp_path):
    raw = {"name": "mine", "arch": "mlp", "task": "classify", "search": {"model.widths": [[8]]}}
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert_one_line_error(cli("tune", path, *TINY), "search model.widths: unknown key; model has", "hidden")
    assert_one_line_error(cli("train", path, "--data", "builtin:iris"), "search model.widths")


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--sampler", "cmaes"], "--sampler must be one of tpe, random, grid"),
        (["--storage", "study.db"], "--storage must be a database URL"),
        (["--direction", "up"], "--direction must be max or min"),
    ],
)
def test_bad_options_are_one_line_errors(cli, tmp_path, space_file, args, fragment):
    result = cli("tune", "mlp", *TINY, "--space", space_file, "--out", tmp_path / "t", *args)
    assert_one_line_error(result, fragment)


def test_test_split_is_not_read_during_search(tmp_path, space_file, monkeypatch):
    """Spy at the data boundary: the splits every loader returns record each read of a non-empty test array.
    The search must record none; the final scoring of the best trial must record some (so the spy works)."""
    reads = []

    class SpySplits(Splits):
        def __getattribute__(self, name):
            value = super().__getattribute__(name)
            if name in ("x_test", "y_test") and len(value):
                reads.append(name)
            return value

    real = toolkit.data.load_splits

    def load_splits(*args, **kwargs):
        s = real(*args, **kwargs)
        return SpySplits(**{f: getattr(s, f) for f in Splits.__dataclass_fields__})

    monkeypatch.setattr(toolkit.data, "load_splits", load_splits)
    search = prepare(
        "mlp",
        data="builtin:iris",
        overrides=["train.epochs=2"],
        space=space_file,
        trials=2,
        out=tmp_path / "t",
    )
    run_search(search)
    assert len(open_study(search).trials) == 2
    assert reads == [], "a trial read the test split"
    result = finish(search)
    assert reads, "the best trial is scored on the test split at the end"
    assert 0.0 <= result.test_metrics["accuracy"] <= 1.0


def test_grid_sampler_stops_when_the_grid_is_done(tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump({"search": {"model.hidden": [[4], [8]], "train.lr": [0.01]}}))
    search = prepare(
        "mlp",
        data="builtin:iris",
        overrides=["train.epochs=1"],
        space=path,
        sampler="grid",
        trials=10,
        out=tmp_path / "g",
    )
    run_search(search)
    params = sorted(json.dumps(t.params, sort_keys=True) for t in open_study(search).trials)
    assert len(params) == 2 and len(set(params)) == 2, "each grid point once, then the search stops"
