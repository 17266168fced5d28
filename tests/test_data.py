"""Data sources, deterministic splits and train-split preprocessing (toolkit.data)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from toolkit.data import BUILTIN, load_source, load_splits, prepare_eval
from toolkit.data.preprocess import apply_spec, encode_labels
from toolkit.data.split import split_indices
from toolkit.errors import ToolkitError
from toolkit.recipe import DataConfig


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def read_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def with_row_ids(src: Path, dst: Path) -> Path:
    """Copy a CSV with a leading numeric `row` feature (0..N-1), so each split's rows can be identified."""
    header, body = read_rows(src)
    return write_csv(dst, ["row", *header], [[i, *r] for i, r in enumerate(body)])


def row_ids(x: np.ndarray, spec: dict) -> np.ndarray:
    """Undo the standardization of feature 0 (the `row` column) to get each sample's CSV row."""
    return np.rint(x[:, 0] * spec["std"][0] + spec["mean"][0]).astype(int)


# --------------------------------------------------------------------------------------------- sources
@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_builtin_sources_match_scikit_learn(name):
    from sklearn import datasets

    bunch = getattr(datasets, f"load_{name}")()
    raw = load_source(f"builtin:{name}")
    assert raw.source == f"builtin:{name}"
    assert len(raw.x) == len(raw.y) == len(bunch.target)
    assert raw.x.dtype == np.float32
    if name == "digits":
        assert raw.kind == "image"
        assert raw.x.shape == (len(bunch.target), 1, 8, 8)
        assert 0.0 <= raw.x.min() and raw.x.max() <= 1.0
    else:
        assert raw.kind == "tabular"
        assert raw.x.shape == bunch.data.shape
        assert raw.feature_names == list(bunch.feature_names)
    if name == "diabetes":
        assert raw.label_names is None
        assert raw.y.dtype == np.float32
    else:
        assert raw.label_names == [str(t) for t in bunch.target_names]
        np.testing.assert_array_equal(raw.y, bunch.target)


def test_unknown_builtin_names_the_allowed_ones():
    with pytest.raises(ToolkitError, match=r"'nope'.*allowed:.*digits.*iris"):
        load_source("builtin:nope")


def test_unsupported_suffix_and_missing_path(tmp_path):
    bad = tmp_path / "data.txt"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ToolkitError, match=r"data\.txt.*\.csv.*\.npz"):
        load_source(str(bad))
    with pytest.raises(ToolkitError, match="not found.*missing.csv"):
        load_source(str(tmp_path / "missing.csv"))


def test_csv_default_target_is_last_column(iris_csv):
    header, body = read_rows(iris_csv)
    raw = load_source(str(iris_csv))
    assert raw.kind == "tabular"
    assert raw.x.shape == (len(body), len(header) - 1)
    assert raw.feature_names == header[:-1]
    assert list(raw.y) == [r[-1] for r in body]
    np.testing.assert_allclose(raw.x, np.array([[float(v) for v in r[:-1]] for r in body]), rtol=1e-6)


def test_csv_target_option_picks_a_middle_column(tmp_path):
    rows = [[i, i * 2.5, f"c{i % 2}", -i] for i in range(8)]
    path = write_csv(tmp_path / "t.csv", ["a", "b", "label", "c"], rows)
    raw = load_source(str(path), target="label")
    assert raw.feature_names == ["a", "b", "c"]
    assert list(raw.y) == [r[2] for r in rows]
    np.testing.assert_allclose(raw.x, [[r[0], r[1], r[3]] for r in rows])
    with pytest.raises(ToolkitError, match=r"'nope'.*a, b, label, c"):
        load_source(str(path), target="nope")


def test_csv_non_numeric_feature_is_a_category(tmp_path):
    path = write_csv(tmp_path / "t.csv", ["size", "color", "y"], [[1, " red", 0], [2, "blue", 1]])
    raw = load_source(str(path))
    assert raw.table.categorical == ["color"] and raw.x.shape == (2, 0)
    dictionary, indices = raw.table.columns["color"]
    assert [dictionary[i] for i in indices] == ["red", "blue"]  # spaces around a level are trimmed


def test_csv_in_another_encoding_is_a_toolkit_error(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("a,caf\xe9\n1,x\n2,y\n".encode("latin-1"))
    with pytest.raises(ToolkitError, match="latin1.csv"):
        load_source(str(path))


def test_npz_tabular_and_images(tmp_path, npz_file):
    raw = load_source(str(npz_file))
    with np.load(npz_file) as z:
        x, y = z["x"], z["y"]
    assert raw.kind == "tabular" and raw.x.shape == x.shape
    np.testing.assert_array_equal(raw.x, x)
    np.testing.assert_array_equal(raw.y, y)

    imgs = np.random.default_rng(1).integers(0, 256, size=(6, 5, 7, 3), dtype=np.uint8)  # NHWC uint8
    np.savez(tmp_path / "img.npz", x=imgs, y=np.arange(6))
    raw = load_source(str(tmp_path / "img.npz"))
    assert raw.kind == "image" and raw.x.shape == (6, 3, 5, 7)
    np.testing.assert_allclose(raw.x, imgs.transpose(0, 3, 1, 2) / 255.0, rtol=1e-6)

    np.savez(tmp_path / "gray.npz", x=np.ones((4, 6, 6)), y=np.arange(4))
    assert load_source(str(tmp_path / "gray.npz")).x.shape == (4, 1, 6, 6)

    np.savez(tmp_path / "bad.npz", features=np.ones((4, 2)), y=np.arange(4))
    with pytest.raises(ToolkitError, match=r"'x' and 'y'.*features"):
        load_source(str(tmp_path / "bad.npz"))


def test_npz_load_splits_classify(npz_file):
    s = load_splits(DataConfig(source=str(npz_file)), "classify", "tabular", seed=0)
    assert s.spec["labels"] == ["0", "1", "2"]
    assert s.num_outputs == 3 and s.input_shape == (5,)
    assert len(s.x_train) + len(s.x_val) + len(s.x_test) == 60


# --------------------------------------------------------------------------------------------- labels
def test_string_labels_kept_as_sorted_names_and_mapped_to_their_rows(tmp_path):
    # feature `code` is 10 for zebra, 0 for apple, 5 for mango: after encoding, each label index must
    # still sit on the rows of its own name.
    code = {"zebra": 10.0, "apple": 0.0, "mango": 5.0}
    names = ["zebra", "apple", "mango"] * 10
    path = write_csv(tmp_path / "fruit.csv", ["code", "fruit"], [[code[n], n] for n in names])
    s = load_splits(DataConfig(source=str(path)), "classify", "tabular", seed=0)
    assert s.spec["labels"] == ["apple", "mango", "zebra"]
    for x, y in ((s.x_train, s.y_train), (s.x_val, s.y_val), (s.x_test, s.y_test)):
        raw_code = x[:, 0] * s.spec["std"][0] + s.spec["mean"][0]
        expected = [code[s.spec["labels"][i]] for i in y]
        np.testing.assert_allclose(raw_code, expected, atol=1e-4)


def test_numeric_labels_sort_numerically():
    y, labels = encode_labels(np.array(["10", "2", "1", "2"], dtype=object), None)
    assert labels == ["1", "2", "10"]
    assert list(y) == [2, 1, 0, 1]


def test_regression_target_must_be_numeric_and_finite(tmp_path, iris_csv):
    with pytest.raises(ToolkitError, match="not numeric"):
        load_splits(DataConfig(source=str(iris_csv)), "regress", "tabular", seed=0)
    path = write_csv(tmp_path / "r.csv", ["a", "y"], [[i, "nan" if i == 3 else i * 0.5] for i in range(10)])
    with pytest.raises(ToolkitError, match="target column 'y' has missing values"):
        load_splits(DataConfig(source=str(path)), "regress", "tabular", seed=0)


# --------------------------------------------------------------------------------------------- preprocessing
def test_standardization_uses_train_rows_only(tmp_path, iris_csv):
    path = with_row_ids(iris_csv, tmp_path / "ids.csv")
    header, body = read_rows(path)
    raw = np.array([[float(v) for v in r[:-1]] for r in body])
    cfg = DataConfig(source=str(path))
    s = load_splits(cfg, "classify", "tabular", seed=3)
    tr, va, te = (row_ids(x, s.spec) for x in (s.x_train, s.x_val, s.x_test))

    np.testing.assert_allclose(s.spec["mean"], raw[tr].mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(s.spec["std"], raw[tr].std(axis=0), rtol=1e-4)
    assert not np.allclose(s.spec["mean"][1:], raw[:, 1:].mean(axis=0), rtol=1e-6)  # not all rows
    np.testing.assert_allclose(s.x_train.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(s.x_train.std(axis=0), 1.0, atol=1e-4)

    # Blow up the test rows' features: train statistics and the train split must not change.
    big = [
        [r[0], *(str(float(v) * 1000 + 500) for v in r[1:-1]), r[-1]] if i in set(te) else r
        for i, r in enumerate(body)
    ]
    changed = load_splits(
        DataConfig(source=str(write_csv(tmp_path / "big.csv", header, big))), "classify", "tabular", seed=3
    )
    assert changed.spec["mean"] == s.spec["mean"] and changed.spec["std"] == s.spec["std"]
    np.testing.assert_array_equal(changed.x_train, s.x_train)
    np.testing.assert_array_equal(changed.x_val, s.x_val)
    assert not np.allclose(changed.x_test, s.x_test)
    assert set(va).isdisjoint(te)


def test_missing_cells_become_the_train_mean(tmp_path):
    rng = np.random.default_rng(0)
    rows = [[i, f"{rng.normal(5, 2):.4f}", f"{rng.normal(-3, 1):.4f}", i % 2] for i in range(40)]
    for i, col, blank in ((4, 1, ""), (11, 2, "NA"), (20, 1, "nan"), (33, 2, "")):
        rows[i][col] = blank
    path = write_csv(tmp_path / "gaps.csv", ["row", "a", "b", "y"], rows)
    s = load_splits(DataConfig(source=str(path)), "classify", "tabular", seed=0)
    raw = load_source(str(path)).x
    assert np.isnan(raw).sum() == 4
    x_all = np.concatenate([s.x_train, s.x_val, s.x_test])
    ids = row_ids(x_all, s.spec)
    assert np.isfinite(x_all).all()
    for i, col in ((4, 1), (11, 3), (20, 1), (33, 3)):
        assert x_all[list(ids).index(i), col] == 0.0
    tr = row_ids(s.x_train, s.spec)
    # row, a, a=missing, b, b=missing: an is-missing indicator beside each column with gaps in training
    assert s.spec["feature_names"] == ["row", "a", "a=missing", "b", "b=missing"]
    np.testing.assert_allclose(np.array(s.spec["mean"])[[0, 1, 3]], np.nanmean(raw[tr], axis=0), rtol=1e-5)
    for i, col in ((4, 2), (11, 4), (20, 2), (33, 4)):
        assert x_all[list(ids).index(i), col] == 1.0
    assert x_all[:, [2, 4]].sum() == 4
    assert s.spec["missing"] == "train_mean"


# --------------------------------------------------------------------------------------------- split
def _labels(counts: list[int]) -> np.ndarray:
    return np.concatenate([np.full(n, c) for c, n in enumerate(counts)])


def test_split_is_deterministic_for_a_seed_and_differs_for_another():
    y = np.random.default_rng(7).permutation(_labels([50, 30, 20]))
    a = split_indices(y, 0.15, 0.2, seed=5, stratify=True)
    b = split_indices(y, 0.15, 0.2, seed=5, stratify=True)
    c = split_indices(y, 0.15, 0.2, seed=6, stratify=True)
    for p, q in zip(a, b, strict=True):
        np.testing.assert_array_equal(p, q)
    assert any(not np.array_equal(p, q) for p, q in zip(a, c, strict=True))


@pytest.mark.parametrize("stratify", [True, False])
def test_split_partitions_all_indices(stratify):
    y = np.random.default_rng(1).permutation(_labels([40, 25, 13]))
    tr, va, te = split_indices(y, 0.15, 0.2, seed=2, stratify=stratify)
    allidx = np.concatenate([tr, va, te])
    assert len(allidx) == len(y) == len(np.unique(allidx))
    np.testing.assert_array_equal(np.sort(allidx), np.arange(len(y)))
    assert len(te) == pytest.approx(0.2 * len(y), abs=3)
    assert len(va) == pytest.approx(0.15 * len(y), abs=3)


def test_split_is_stratified():
    y = np.random.default_rng(3).permutation(_labels([100, 60, 20]))
    tr, va, te = split_indices(y, 0.15, 0.2, seed=0, stratify=True)
    for c, n in enumerate([100, 60, 20]):
        assert (y[te] == c).sum() == round(0.2 * n)
        assert (y[va] == c).sum() == round(0.15 * n)
        assert (y[tr] == c).sum() == n - round(0.2 * n) - round(0.15 * n)


def test_load_splits_is_stratified_and_seeded(iris_csv):
    cfg = DataConfig(source=str(iris_csv))
    s = load_splits(cfg, "classify", "tabular", seed=0)
    for y in (s.y_train, s.y_val, s.y_test):
        counts = np.bincount(y, minlength=3)
        assert counts.max() - counts.min() <= 1  # iris has 50 of each class
    again = load_splits(cfg, "classify", "tabular", seed=0)
    other = load_splits(cfg, "classify", "tabular", seed=1)
    np.testing.assert_array_equal(s.x_test, again.x_test)
    assert s.spec == again.spec
    assert not np.array_equal(s.x_test, other.x_test)


def test_split_rejects_a_single_sample_class():
    with pytest.raises(ToolkitError, match=r"'cat'.*single sample"):
        split_indices(np.array([0, 0, 0, 1]), 0.15, 0.2, seed=0, stratify=True, names=["dog", "cat"])


# --------------------------------------------------------------------------------------------- images
def test_image_folder_loads_classes_and_pixels(make_image_folder):
    from PIL import Image

    root = make_image_folder(classes=3, per_class=4)
    raw = load_source(str(root))
    assert raw.kind == "image" and raw.x.shape == (12, 1, 8, 8)
    assert sorted(set(raw.y)) == ["0", "1", "2"] and list(raw.y).count("1") == 4
    first = np.asarray(Image.open(root / "0" / "0.png"), dtype=np.float32) / 255.0
    np.testing.assert_allclose(raw.x[0, 0], first)


def test_image_folder_resize_and_rgb_to_one_channel(make_image_folder):
    from PIL import Image

    root = make_image_folder(mode="RGB")
    assert load_source(str(root)).x.shape[1] == 3  # channels from the first image
    raw = load_source(str(root), image_size=12, channels=1)
    assert raw.x.shape == (12, 1, 12, 12)
    with Image.open(root / "2" / "3.png") as im:
        expected = np.asarray(im.convert("L").resize((12, 12), Image.Resampling.BILINEAR)) / 255.0
    np.testing.assert_allclose(raw.x[-1, 0], expected, atol=1e-6)
    gray = make_image_folder(name="gray")
    assert load_source(str(gray), channels=3).x.shape == (12, 3, 8, 8)


def test_mixed_image_sizes_take_the_median_side(make_image_folder):
    root = make_image_folder(size=[8, 10, 10])
    assert load_source(str(root)).x.shape == (12, 1, 10, 10)  # the data's median shorter side
    assert load_source(str(root), image_size=9).x.shape == (12, 1, 9, 9)


def test_image_folder_errors(tmp_path, make_image_folder):
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    with pytest.raises(ToolkitError, match="no images found"):
        load_source(str(tmp_path / "empty"))
    root = make_image_folder()
    (root / "1" / "0.png").write_bytes(b"not a png at all")  # skipped and logged (tests/test_images.py)
    assert load_source(str(root)).x.shape == (11, 1, 8, 8)


def test_image_spec_records_size_channels_and_labels(make_image_folder):
    root = make_image_folder(mode="RGB")
    cfg = DataConfig(source=str(root), image_size=12, channels=1)
    s = load_splits(cfg, "classify", "image", seed=0)
    assert s.input_shape == (1, 12, 12)
    assert s.spec["kind"] == "image" and s.spec["labels"] == ["0", "1", "2"]
    assert {k: s.spec["image"][k] for k in ("channels", "height", "width")} == {
        "channels": 1,
        "height": 12,
        "width": 12,
    }
    assert len(s.spec["mean"]) == 1
    flat = load_splits(cfg, "classify", "tabular", seed=0)
    assert flat.input_shape == (144,) and flat.spec["kind"] == "tabular"
    assert flat.spec["image"]["flattened"] is True and flat.spec["image"]["height"] == 12


def test_cnn_on_tabular_data_is_rejected(iris_csv):
    with pytest.raises(ToolkitError, match="needs image data.*tabular"):
        load_splits(DataConfig(source=str(iris_csv)), "classify", "image", seed=0)


# --------------------------------------------------------------------------------------------- eval
def test_prepare_eval_applies_the_run_spec(tmp_path, iris_csv):
    cfg = DataConfig(source=str(iris_csv))
    s = load_splits(cfg, "classify", "tabular", seed=0)
    header, body = read_rows(iris_csv)
    virginica = [r for r in body if r[-1] == "virginica"][:7]
    new = write_csv(tmp_path / "new.csv", header, virginica)
    x, y = prepare_eval(str(new), s.spec, cfg, "classify", "tabular")
    assert list(y) == [s.spec["labels"].index("virginica")] * 7  # the run's mapping, not a refit one
    raw = np.array([[float(v) for v in r[:-1]] for r in virginica])
    np.testing.assert_allclose(x, (raw - s.spec["mean"]) / s.spec["std"], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(x, apply_spec(s.spec, load_source(str(new)).x))


def test_prepare_eval_rejects_unseen_labels_and_other_shapes(tmp_path, iris_csv):
    cfg = DataConfig(source=str(iris_csv))
    s = load_splits(cfg, "classify", "tabular", seed=0)
    header, body = read_rows(iris_csv)
    odd = write_csv(tmp_path / "odd.csv", header, [*body[:3], [*body[0][:-1], "tulip"]])
    with pytest.raises(ToolkitError, match=r"tulip.*not seen.*setosa"):
        prepare_eval(str(odd), s.spec, cfg, "classify", "tabular")
    narrow = write_csv(tmp_path / "narrow.csv", header[2:], [r[2:] for r in body[:5]])
    with pytest.raises(ToolkitError, match="shape"):
        prepare_eval(str(narrow), s.spec, cfg, "classify", "tabular")


def test_prepare_eval_resizes_new_images(make_image_folder):
    train = make_image_folder(name="train")
    cfg = DataConfig(source=str(train), image_size=8, channels=1)
    s = load_splits(cfg, "classify", "image", seed=0)
    big = make_image_folder(classes=2, per_class=3, mode="RGB", size=16, name="big")
    x, y = prepare_eval(str(big), s.spec, cfg, "classify", "image")
    assert x.shape == (6, 1, 8, 8)
    assert list(y) == [0, 0, 0, 1, 1, 1]
