"""Bad input through `toolkit train`: one `error:` line naming the problem, exit code 2, no traceback."""

from __future__ import annotations

import shutil

import pytest
from helpers import assert_one_line_error

from toolkit.errors import ToolkitError

FAST = ("--epochs", "1", "--no-progress")
TINY = {
    "mlp": ("--set", "model.hidden=[8]"),
    "cnn": ("--set", "model.channels=[4]", "--set", "model.hidden=8"),
}


@pytest.fixture
def train(cli, tmp_path):
    """train(recipe, *args): `toolkit train`, tiny model, 1 epoch, --out under tmp_path; args come last."""

    def run(recipe: str, *args: str):
        return cli("train", recipe, *FAST, *TINY.get(recipe, ()), *args, "--out", tmp_path / "run")

    return run


def test_unknown_recipe(train):
    assert_one_line_error(train("nope"), "'nope'", "mlp-tabular", "cnn-image")


def test_missing_data_path(train, tmp_path):
    assert_one_line_error(train("mlp", "--data", tmp_path / "missing.csv"), "missing.csv", "not found")


def test_unknown_builtin_dataset(train):
    assert_one_line_error(train("mlp", "--data", "builtin:nope"), "'nope'", "breast_cancer", "iris")


def test_unsupported_file_suffix(train, tmp_path):
    path = tmp_path / "data.txt"
    path.write_text("a,b\n1,2\n")
    assert_one_line_error(train("mlp", "--data", path), "data.txt", ".csv", ".npz")


def test_csv_without_target_column(train, iris_csv):
    assert_one_line_error(train("mlp", "--data", iris_csv, "--target", "colour"), "'colour'", "species")


def test_non_numeric_feature_column_is_a_category_not_an_error(train, tmp_path):
    """A text column (job = nurse) is encoded as a category (docs/data.md), where it was refused before."""
    import json

    path = tmp_path / "t.csv"
    path.write_text("size,color,y\n1,red,0\n2,blue,1\n3,red,0\n4,blue,1\n" * 3)
    result = train("mlp", "--data", path)
    assert result.exit_code == 0, result.output
    columns = json.loads((tmp_path / "run" / "data.json").read_text())["columns"]
    assert {c["name"]: c["kind"] for c in columns}["color"] == "category"


def test_empty_image_folder(train, tmp_path):
    (tmp_path / "imgs" / "cat").mkdir(parents=True)
    (tmp_path / "imgs" / "dog").mkdir()
    assert_one_line_error(train("cnn", "--data", tmp_path / "imgs"), "imgs", "no images", "PNG")


def test_class_with_a_single_image(train, make_image_folder):
    root = make_image_folder(classes=2, per_class=4)
    (root / "solo").mkdir()
    shutil.copy(root / "0" / "0.png", root / "solo" / "0.png")
    assert_one_line_error(train("cnn", "--data", root), "'solo'", "single")


def test_corrupt_image_is_skipped_and_named(train, make_image_folder, caplog):
    """A corrupt file is skipped with a logged warning that names it (docs/images.md), not a traceback."""
    root = make_image_folder()
    (root / "2" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with caplog.at_level("WARNING", logger="toolkit.data"):
        result = train("cnn", "--data", root)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert "skipped 1 file" in caplog.text and "2/1.png" in caplog.text


def test_cnn_on_tabular_data(train):
    assert_one_line_error(train("cnn", "--data", "builtin:iris"), "image data", "builtin:iris", "mlp")


def test_unknown_set_key(train):
    assert_one_line_error(train("mlp", "--set", "train.epoch=3"), "'train.epoch'", "epochs", "batch_size")


def test_unknown_top_level_set_key(train):
    assert_one_line_error(train("mlp", "--set", "trian.lr=0.1"), "'trian.lr'", "train", "data")


@pytest.mark.parametrize("flag", [("--epochs", "-1"), ("--set", "train.epochs=-3")])
def test_negative_epoch_count(cli, tmp_path, flag):
    result = cli("train", "mlp", *flag, "--set", "model.hidden=[8]", "--out", tmp_path / "run")
    assert_one_line_error(result, "train.epochs", "positive")


@pytest.mark.parametrize(
    "item, needles",
    [
        ("train.lr=abc", ("train.lr", "number", "'abc'")),
        ("train.optimizer=foo", ("train.optimizer", "'foo'", "sgd", "adam", "adamw", "rmsprop")),
        ("train.batch_size=2.5", ("train.batch_size", "integer")),
        ("model.hidden=8", ("model.hidden", "list")),
        ("model.hidden=[8", ("model.hidden", "YAML")),
        ("train.amp=maybe", ("train.amp", "true or false")),
        ("train.lr=.nan", ("train.lr", "finite")),
        ("data.val_fraction=0.9", ("data.val_fraction", "between")),
        ("noequals", ("KEY=VALUE",)),
    ],
)
def test_bad_set_values(train, item, needles):
    assert_one_line_error(train("mlp", "--set", item), *needles)


def test_recipe_errors_create_no_run_directory(train, tmp_path):
    assert_one_line_error(train("nope"))
    assert not (tmp_path / "run").exists()


def test_debug_reraises_the_error(cli, tmp_path):
    result = cli("--debug", "train", "nope", "--out", tmp_path / "run")
    assert isinstance(result.exception, ToolkitError)
    assert "'nope'" in str(result.exception)
    assert result.exit_code != 0
    # The switch does not stick: the next command without --debug gets the one-line error again.
    assert_one_line_error(cli("train", "nope", "--out", tmp_path / "run"), "'nope'")
