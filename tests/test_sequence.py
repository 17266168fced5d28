"""Sequence data and recipes: tokenizer, chronological split, baselines, text/forecast training and eval,
resume with text batches, and the bad inputs of the sequence issue (one-line error, exit 2)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from helpers import assert_one_line_error

from toolkit.data import load_splits
from toolkit.data import series as ts
from toolkit.data.tokenizer import Tokenizer
from toolkit.recipe import load_recipe
from toolkit.train import evaluate_run, train
from toolkit.train.checkpoint import load_checkpoint

TINY_TEXT = ["model.d_model=16", "model.ff_dim=16", "model.layers=1", "train.patience=0"]
TINY_RNN = ["model.hidden=16", "model.embed_dim=16", "train.patience=0"]


# --------------------------------------------------------------------------------------------- tokenizer
def test_tokenizer_round_trip_and_oov():
    tok = Tokenizer.fit(["The cat sat.", "the dog sat!", "a cat"], max_length=10)
    assert tok.vocab[:2] == ["<pad>", "<unk>"]
    assert tok.vocab[2:5] == ["cat", "sat", "the"]  # most frequent first, ties alphabetical
    ids = tok.encode("The CAT sat.")
    assert tok.decode(ids) == ["the", "cat", "sat", "."]
    assert tok.encode("the zebra sat")[1] == tok.unk_id  # out of vocabulary
    assert tok.encode("") == [] and tok.encode_batch([""]).tolist() == [[0]]  # an all-padding row
    again = Tokenizer.from_dict(json.loads(json.dumps(tok.to_dict())))
    assert again.encode("the dog sat!") == tok.encode("the dog sat!")


def test_tokenizer_options():
    char = Tokenizer.fit(["abc", "abd"], level="char", lowercase=False, max_length=3)
    assert char.decode(char.encode("ABcd")) == ["<unk>", "<unk>", "c"]  # case kept, truncated to 3
    small = Tokenizer.fit(["a a a b b c"], max_vocab=2, min_freq=1)
    assert small.vocab == ["<pad>", "<unk>", "a", "b"]
    rare = Tokenizer.fit(["a a b"], min_freq=2)
    assert rare.vocab == ["<pad>", "<unk>", "a"]
    batch = small.encode_batch(["a", "a b a b"])
    assert batch.shape == (2, 4) and batch[0].tolist() == [2, 0, 0, 0]


def _text_csv(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(rows)
    return path


def _animal_rows(n=120, seed=0):
    """Two classes told apart by their words: texts of random length about cats or about dogs."""
    rng = np.random.default_rng(seed)
    vocab = {
        "cat": ["cat", "meow", "whiskers", "purr", "kitten"],
        "dog": ["dog", "bark", "leash", "puppy", "woof"],
    }
    filler = ["the", "a", "is", "very", "my", "and", "on"]
    rows = []
    for i in range(n):
        label = "cat" if i % 2 else "dog"
        words = [str(rng.choice(vocab[label] + filler)) for _ in range(int(rng.integers(2, 12)))]
        words[int(rng.integers(len(words)))] = str(rng.choice(vocab[label]))
        rows.append((" ".join(words), label))
    return rows


def test_vocabulary_comes_from_the_train_split_only(tmp_path):
    rows = _animal_rows(60) + [("zebra only in one text", "cat"), ("zebra", "dog")]
    path = _text_csv(tmp_path / "t.csv", rows)
    cfg = load_recipe("transformer", [f"data.source={path}"]).data
    splits = load_splits(cfg, "classify", "tokens", seed=0)
    vocab = set(splits.spec["tokenizer"]["vocab"])
    tok = Tokenizer.from_dict(splits.spec["tokenizer"])
    train_words = {w for ids in splits.x_train for w in tok.decode(ids)}
    assert vocab - {"<pad>", "<unk>"} <= train_words
    # the two "zebra" texts: in the vocabulary only if a train text holds the word
    assert ("zebra" in vocab) == ("zebra" in train_words)


# --------------------------------------------------------------------------------------------- series
def test_windows_and_chronological_split_do_not_overlap():
    values = np.arange(100, dtype=float)
    x, y, starts = ts.make_windows(values, window=10, horizon=3)
    assert x.shape == (88, 10) and y.shape == (88, 3)
    assert np.all(x[:, -1] + 1 == y[:, 0])
    train_end, val_end = ts.chronological_parts(100, 0.15, 0.15)
    tr, va, te = ts.split_windows(starts, 3, train_end, val_end, 100)
    targets = [set((starts[m][:, None] + np.arange(3)).ravel()) for m in (tr, va, te)]
    assert not (targets[0] & targets[1]) and not (targets[1] & targets[2]) and not (targets[0] & targets[2])
    assert max(targets[0]) < min(targets[1]) and max(targets[1]) < min(targets[2])  # past -> future
    assert max(targets[0]) < train_end <= min(targets[1])


def test_series_scaling_comes_from_the_train_part(tmp_path):
    path = tmp_path / "s.csv"
    values = np.r_[np.zeros(70), np.full(30, 1000.0)] + np.sin(np.arange(100))
    with open(path, "w") as f:
        f.write("t,v\n" + "".join(f"{i},{v}\n" for i, v in enumerate(values)))
    cfg = load_recipe("lstm", [f"data.source={path}", "data.window=5", "data.time_column=t"]).data
    splits = load_splits(cfg, "forecast", "series", seed=0)
    train_end, _ = ts.chronological_parts(100, cfg.val_fraction, cfg.test_fraction)
    assert splits.spec["mean"][0] == pytest.approx(values[:train_end].mean())
    assert splits.spec["mean"][0] < 10  # the jump to 1000 in the later parts did not leak into the scaling
    assert splits.x_train.shape[1:] == (5, 1) and splits.y_train.shape[1:] == (1,)
    assert splits.extra["times"][:2] == ["0", "1"]


def test_baselines():
    rng = np.random.default_rng(0)
    values = np.zeros(300)
    for t in range(1, 300):  # an AR(1) process: the linear baseline recovers it
        values[t] = 0.8 * values[t - 1] + rng.normal()
    x, y, _ = ts.make_windows(values, 5, 1)
    coef = ts.fit_ar(x[:200], y[:200])
    assert coef[-2, 0] == pytest.approx(0.8, abs=0.1)  # weight of the last value
    naive = ts.naive_forecast(x, 2)
    assert naive.shape == (len(x), 2) and np.all(naive[:, 1] == x[:, -1])


# --------------------------------------------------------------------------------------------- training
@pytest.fixture
def sine_csv(tmp_path):
    t = np.arange(240)
    v = 10 + 5 * np.sin(2 * np.pi * t / 24) + np.random.default_rng(0).normal(0, 0.3, len(t))
    path = tmp_path / "sine.csv"
    with open(path, "w") as f:
        f.write("month,value\n" + "".join(f"m{i},{x:.4f}\n" for i, x in enumerate(v)))
    return path


@pytest.mark.parametrize("recipe", ["lstm", "transformer-forecast"])
def test_forecast_on_csv_beats_persistence_and_eval_plots(tmp_path, sine_csv, recipe):
    res = train(
        recipe,
        data=str(sine_csv),
        out=tmp_path / "r",
        overrides=[
            "data.time_column=month",
            "data.horizon=3",
            "train.epochs=25",
            "train.patience=0",
            "train.lr=0.005",
        ],
    )
    m = res.metrics
    assert {"mae", "rmse", "mape", "naive_mae", "ar_mae", "mae_vs_naive"} <= set(m)
    assert m["mae"] < m["naive_mae"]  # a smooth seasonal series: persistence is easy to beat
    ev = evaluate_run(tmp_path / "r")
    assert ev["metrics"]["mae"] == pytest.approx(m["mae"], rel=1e-5)
    assert (tmp_path / "r" / "forecast.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    "recipe, tiny", [("transformer", TINY_TEXT), ("lstm-text", TINY_RNN), ("gru-text", TINY_RNN)]
)
def test_text_on_csv_learns_and_eval_matches(tmp_path, recipe, tiny):
    path = _text_csv(tmp_path / "animals.csv", _animal_rows(200))
    res = train(
        recipe, data=str(path), out=tmp_path / "r", overrides=tiny + ["train.epochs=15", "train.lr=0.01"]
    )
    assert res.metrics["accuracy"] >= 0.9
    ev = evaluate_run(tmp_path / "r")
    assert ev["metrics"]["accuracy"] == pytest.approx(res.metrics["accuracy"])
    assert ev["labels"] == ["cat", "dog"]


def test_text_resume_equals_uninterrupted(tmp_path):
    path = _text_csv(tmp_path / "animals.csv", _animal_rows(120))
    sets = TINY_TEXT + ["train.epochs=4", "data.augment.token_dropout=0.2"]

    def stop_after_2(epoch, row):
        if epoch == 2:
            raise KeyboardInterrupt

    full = train("transformer", data=str(path), overrides=sets, out=tmp_path / "full")
    with pytest.raises(KeyboardInterrupt):
        train("transformer", data=str(path), overrides=sets, out=tmp_path / "cut", callbacks=[stop_after_2])
    resumed = train(resume=tmp_path / "cut")
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in full.history]
    a, b = (
        load_checkpoint(tmp_path / "full" / "best.pt")["model"],
        load_checkpoint(tmp_path / "cut" / "best.pt")["model"],
    )
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)


def test_checkpoint_records_the_tokenizer(tmp_path):
    path = _text_csv(tmp_path / "animals.csv", _animal_rows(60))
    train("lstm-text", data=str(path), overrides=TINY_RNN + ["train.epochs=1"], out=tmp_path / "r")
    spec = load_checkpoint(tmp_path / "r" / "best.pt")["spec"]
    assert spec["kind"] == "tokens" and spec["tokenizer"]["vocab"][:2] == ["<pad>", "<unk>"]
    assert spec["labels"] == ["cat", "dog"]


# --------------------------------------------------------------------------------------------- bad input
@pytest.fixture
def run_cli(cli, tmp_path):
    def run(*args):
        return cli("train", *args, "--epochs", "1", "--no-progress", "--out", tmp_path / "run")

    return run


def test_empty_text(run_cli, tmp_path):
    path = _text_csv(tmp_path / "t.csv", [("hello there", "a"), ("  ", "b"), ("bye", "b")])
    assert_one_line_error(run_cli("transformer", "--data", path), "empty text", "line 3")


def test_label_column_missing(run_cli, tmp_path):
    path = _text_csv(tmp_path / "t.csv", _animal_rows(10))
    assert_one_line_error(
        run_cli("lstm-text", "--data", path, "--target", "sentiment"), "'sentiment'", "text, label"
    )


def test_text_column_missing(run_cli, tmp_path):
    path = _text_csv(tmp_path / "t.csv", _animal_rows(10))
    assert_one_line_error(
        run_cli("lstm-text", "--data", path, "--text-column", "body"), "'body'", "--text-column"
    )


def test_series_shorter_than_window_plus_horizon(run_cli, tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("v\n" + "\n".join(str(i) for i in range(15)) + "\n")
    assert_one_line_error(run_cli("gru", "--data", path), "15 values", "window + horizon = 21")


def test_series_too_short_for_the_split(run_cli, tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("v\n" + "\n".join(str(i) for i in range(25)) + "\n")  # 17 train values < 20 + 1
    assert_one_line_error(run_cli("gru", "--data", path), "no train windows", "data.window")


def test_non_numeric_series(run_cli, tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("day,v\n1,3.5\n2,high\n3,4\n")
    assert_one_line_error(run_cli("rnn", "--data", path, "--target", "v"), "'v'", "numeric", "line 3")


def test_series_recipe_on_tabular_builtin(run_cli):
    assert_one_line_error(run_cli("lstm", "--data", "builtin:iris"), "time series", "mlp")


def test_tabular_recipe_on_series_builtin(run_cli):
    assert_one_line_error(run_cli("mlp", "--data", "builtin:sunspots"), "forecast recipe")


def test_eval_on_other_data(tmp_path, sine_csv):
    run = tmp_path / "f"
    train("gru", data=str(sine_csv), out=run, overrides=["data.window=12", "train.epochs=3"])
    ev = evaluate_run(run, data=str(sine_csv))
    assert ev["samples"] == 240 - 12  # every window of the whole series, horizon 1
    assert (run / "forecast.png").is_file()
    path = _text_csv(tmp_path / "a.csv", _animal_rows(80))
    train("gru-text", data=str(path), out=tmp_path / "t", overrides=TINY_RNN + ["train.epochs=2"])
    ev = evaluate_run(tmp_path / "t", data=str(path))
    assert ev["samples"] == 80 and sum(map(sum, ev["confusion"])) == 80
