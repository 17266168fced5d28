"""`toolkit predict` on tiny exported models of every task, and the server's feeds/predictions functions.

The central check: predict on the training image files gives what the exported model gives on the
preprocessed test split (same resize, scaling and standardization), and likewise for CSV rows, texts (token
model vs raw-string model) and a CSV series. Bad inputs are one line naming the input, exit 2; --keep-going
still answers the others.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_one_line_error
from runs import exported

from toolkit.errors import ToolkitError
from toolkit.runtime.model import OnnxModel
from toolkit.runtime.predict import feeds_from_instances, predict, predictions_from_outputs


def digit_folder(root: Path, side: int = 16, per_class: int = 12) -> Path:
    """PNG digits 0-2, upscaled to side x side (so training and predict both resize them)."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    for c in range(3):
        (root / str(c)).mkdir(parents=True)
        for i, img in enumerate(digits.images[digits.target == c][:per_class]):
            im = Image.fromarray((img * 255 / 16).astype(np.uint8), mode="L")
            im.resize((side, side), Image.Resampling.NEAREST).save(root / str(c) / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def image_run(tmp_path_factory) -> Path:
    """A CNN trained on a 16x16 PNG folder resized to 8x8 in training: RUN_DIR (data folder at RUN/../data)."""
    from toolkit.export import export_run
    from toolkit.train import train

    root = tmp_path_factory.mktemp("predict-images")
    data = digit_folder(root / "data")
    run = root / "cnn"
    overrides = ["data.image_size=8", "train.epochs=3", "model.channels=[4]", "model.hidden=8"]
    train("cnn-image", data=str(data), overrides=overrides, out=run)
    export_run(run)
    return run


def _test_files(run: Path) -> list[str]:
    """The image files of the run's test split, in split order (as toolkit.data.load_splits picks them)."""
    from toolkit.data.preprocess import encode_labels
    from toolkit.data.split import split_indices
    from toolkit.recipe import recipe_from_dict

    meta = json.loads((run / "model.json").read_text())
    rec = recipe_from_dict(meta["recipe"])
    folder = Path(rec.data.source)
    files = [(c.name, f) for c in sorted(folder.iterdir()) for f in sorted(c.iterdir())]
    y, labels = encode_labels(np.array([c for c, _ in files], dtype=object), None)
    d = rec.data
    _, _, te = split_indices(y, d.val_fraction, d.test_fraction, rec.train.seed, True, labels)
    return [str(files[i][1]) for i in te]


# --------------------------------------------------------------------------------------------- equality
def test_predict_on_image_files_equals_model_on_test_split(image_run):
    from toolkit.runtime.evalset import evaluation_inputs

    model = OnnxModel(image_run / "model.onnx")
    inputs = evaluation_inputs(model.meta)  # the test split, preprocessed by the training pipeline
    expected = model.run(inputs.feeds)["probabilities"]
    files = _test_files(image_run)
    assert len(files) == inputs.samples > 3

    got = predict(image_run / "model.onnx", files)
    assert [r["input"] for r in got.results] == files
    labels = model.meta["labels"]
    for row, want in zip(got.results, expected):
        assert row["label"] == labels[int(want.argmax())]
        probs = np.array([row["probabilities"][lab] for lab in labels])
        np.testing.assert_allclose(probs, want, atol=2e-6)


def test_predict_cli_table_json_and_folder(cli, image_run):
    files = _test_files(image_run)
    result = cli("predict", image_run / "model.onnx", *files[:2], "--top-k", "2")
    assert result.exit_code == 0, result.output
    assert "label" in result.output and "2 of 2 inputs answered" in " ".join(result.output.split())

    result = cli("predict", image_run / "model.onnx", Path(files[0]).parent.parent, "--json", "--top-k", "2")
    doc = json.loads(result.stdout)
    assert doc["task"] == "classify" and len(doc["results"]) == 36  # the folder, recursively
    assert all(len(r["probabilities"]) == 2 for r in doc["results"])


def test_csv_rows_with_header_and_target_column(cli, tmp_path_factory, tmp_path):
    """Rows of a CSV with the feature names (in another order) plus the target: the named columns are used."""
    from sklearn.datasets import load_iris

    from toolkit.data.preprocess import apply_spec

    run = exported(tmp_path_factory, "iris")
    model = OnnxModel(run / "model.onnx")
    pre = model.meta["inputs"][0]["preprocessing"]
    bunch = load_iris()
    names = pre["feature_names"]
    path = tmp_path / "rows.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["species", *reversed(names)])
        for row, t in zip(bunch.data[:20], bunch.target[:20]):
            w.writerow([bunch.target_names[t], *reversed([f"{v:g}" for v in row])])
    got = predict(run / "model.onnx", [str(path)])
    x = apply_spec({"kind": "tabular", **pre}, bunch.data[:20].astype(np.float32))
    want = model.run({"input": x})["probabilities"]
    assert [r["label"] for r in got.results] == [model.meta["labels"][i] for i in want.argmax(1)]
    assert got.results[0]["input"] == f"{path}:2"

    # Without a header, rows have exactly the model's columns; a short row is named by its line.
    bare = tmp_path / "bare.csv"
    bare.write_text("5.1,3.5,1.4,0.2\n6.7,3.0,5.2\n")
    assert_one_line_error(cli("predict", run / "model.onnx", bare), "bare.csv:2", "3 columns", "4 features")


def test_text_tokens_model_equals_raw_string_model(tmp_path_factory, tmp_path):
    """The runner's tokenizer (tokens model) and the graph's (model.text.onnx) agree, and match toolkit's."""
    from toolkit.data.tokenizer import Tokenizer

    run = exported(tmp_path_factory, "text")
    texts = ["the cat purr meow", "my dog is a good puppy woof", "Bark BARK bark", "unknownword cat"]
    lines = tmp_path / "texts.txt"
    lines.write_text("\n".join(texts) + "\n")
    tokens = predict(run / "model.onnx", [str(lines)])
    strings = predict(run / "model.text.onnx", [], texts=texts)
    for a, b in zip(tokens.results, strings.results):
        assert a["label"] == b["label"]
        for k in a["probabilities"]:
            assert abs(a["probabilities"][k] - b["probabilities"][k]) < 1e-5
    meta = tokens.meta
    tok = Tokenizer.from_dict(meta["inputs"][0]["preprocessing"]["tokenizer"])
    feeds = feeds_from_instances(meta, texts)
    np.testing.assert_array_equal(feeds["tokens"], tok.encode_batch(texts))


def test_forecast_from_csv_series_equals_test_window(tmp_path_factory, tmp_path):
    from toolkit.data import load_splits
    from toolkit.recipe import recipe_from_dict

    run = exported(tmp_path_factory, "forecast")
    model = OnnxModel(run / "model.onnx")
    rec = recipe_from_dict(model.meta["recipe"])
    splits = load_splits(rec.data, rec.task, "series", rec.train.seed)
    first_target = int(splits.extra["test_starts"][0])  # the first test window ends right before it
    values = splits.extra["values"][:first_target]
    path = tmp_path / "series.csv"
    path.write_text("year,sunactivity\n" + "".join(f"{i},{float(v)!r}\n" for i, v in enumerate(values)))
    got = predict(run / "model.onnx", [str(path)]).results[0]["forecast"]
    want = model.run({"window": splits.x_test[:1]})["forecast"][0]
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_anomaly_scores_and_flags(tmp_path_factory, tmp_path):
    from PIL import Image
    from sklearn.datasets import load_digits

    run = exported(tmp_path_factory, "anomaly")
    meta = OnnxModel(run / "model.onnx").meta
    digits = load_digits()
    pixels = (digits.images[:6] * 255 / 16).astype(np.uint8)
    files = []
    for i, img in enumerate(pixels):
        files.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(img).save(files[-1])
    got = predict(run / "model.onnx", files).results
    threshold = meta["thresholds"]["score"]["value"]
    np.save(tmp_path / "u8.npy", pixels)  # the same 8-bit pixels as an array: the same scores
    again = predict(run / "model.onnx", [str(tmp_path / "u8.npy")]).results
    # Arrays in the data's own units (digits: 0..16) are scaled by the recorded pixel_scale.
    np.save(tmp_path / "raw.npy", digits.images[:6].astype(np.float32))
    raw = predict(run / "model.onnx", [str(tmp_path / "raw.npy")]).results
    pre = meta["inputs"][0]["preprocessing"]
    x = (digits.images[:6, None].astype(np.float32) / 16 - pre["mean"][0]) / pre["std"][0]
    want = OnnxModel(run / "model.onnx").run({"input": x.astype(np.float32)})["score"]
    assert [r["score"] for r in raw] == pytest.approx(want.tolist(), rel=1e-5)
    for a, b in zip(got, again):
        assert a["score"] == b["score"]
        assert a["anomaly"] == (a["score"] > threshold) and a["threshold"] == threshold
    codes = predict(run / "encoder.onnx", files[:2]).results  # the encoder: the latent code per image
    assert [len(r["code"]) for r in codes] == [2, 2]


def test_regress_value_and_server_functions(tmp_path_factory):
    run = exported(tmp_path_factory, "regress")
    model = OnnxModel(run / "model.onnx")
    rows = [[0.01 * i] * 10 for i in range(3)]
    feeds = feeds_from_instances(model.meta, rows)
    preds = predictions_from_outputs(model.meta, model.run(feeds))
    pre = model.meta["inputs"][0]["preprocessing"]
    x = (np.array(rows, np.float32) - np.array(pre["mean"], np.float32)) / np.array(pre["std"], np.float32)
    want = model.run({"input": x})["prediction"][:, 0]
    assert [p["value"] for p in preds] == pytest.approx(want.tolist())
    json.dumps(preds)
    with pytest.raises(ToolkitError, match="instance 1 has 3 values; the model takes 10"):
        feeds_from_instances(model.meta, [rows[0], [1, 2, 3]])
    with pytest.raises(ToolkitError, match="instance 0 is a string"):
        feeds_from_instances(model.meta, ["hello"])


def test_image_instances_b64_and_pixels(image_run):
    import base64

    model = OnnxModel(image_run / "model.onnx")
    file = _test_files(image_run)[0]
    b64 = base64.b64encode(Path(file).read_bytes()).decode()
    from_b64 = feeds_from_instances(model.meta, [{"b64": b64}])["input"]
    want = predict(image_run / "model.onnx", [file]).results[0]
    got = predictions_from_outputs(model.meta, model.run({"input": from_b64}))[0]
    assert got["label"] == want["label"] and got["probabilities"] == want["probabilities"]
    with pytest.raises(ToolkitError, match="instance 0: cannot decode the image"):
        feeds_from_instances(model.meta, [{"b64": base64.b64encode(b"not an image").decode()}])
    with pytest.raises(ToolkitError, match="instance 0: 'b64' is not valid base64"):
        feeds_from_instances(model.meta, [{"b64": "%%%"}])


def test_generator_writes_a_png_grid(cli, tmp_path_factory, tmp_path):
    from PIL import Image

    run = exported(tmp_path_factory, "gan")
    out = tmp_path / "grid.png"
    result = cli("predict", run / "model.onnx", "0", "1", "2", "--out", out, "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [r["label"] for r in doc["results"]] == ["0", "1", "2"] and doc["out"] == str(out)
    with Image.open(out) as im:
        assert im.size == (3 * 8 + 4 * 2, 8 + 2 * 2)
    assert_one_line_error(cli("predict", run / "model.onnx", "0"), "--out")
    assert_one_line_error(cli("predict", run / "model.onnx", "x", "--out", out), "label 'x'")


# --------------------------------------------------------------------------------------------- bad input
def test_bad_inputs_are_one_line_and_keep_going_answers_the_rest(cli, image_run, tmp_path):
    good = _test_files(image_run)[0]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    notes = tmp_path / "notes.txt"
    notes.write_text("hello\n")
    model = image_run / "model.onnx"

    assert_one_line_error(cli("predict", model, good, broken), "broken.png", "cannot decode the image")
    assert_one_line_error(cli("predict", model, notes), "notes.txt", ".txt file is not an input", ".png")
    assert_one_line_error(cli("predict", model, tmp_path / "missing.png"), "missing.png")
    assert_one_line_error(cli("predict", model), "no inputs")
    assert_one_line_error(cli("predict", model, good, "--text", "hi"), "--text is for text models")

    result = cli("predict", model, good, broken, notes, "--keep-going", "--json")
    assert result.exit_code == 2
    doc = json.loads(result.stdout)
    assert [("error" in r) for r in doc["results"]] == [False, True, True]
    assert "label" in doc["results"][0]
    assert len(result.stderr.strip().splitlines()) == 2 and "broken.png" in result.stderr


def test_empty_text_is_refused(cli, tmp_path_factory, tmp_path):
    run = exported(tmp_path_factory, "text")
    assert_one_line_error(cli("predict", run / "model.onnx", "--text", "  "), "--text #1", "empty text")
    lines = tmp_path / "t.txt"
    lines.write_text("the cat\n\nmy dog\n")
    assert_one_line_error(cli("predict", run / "model.onnx", lines), "t.txt:2", "empty text")
    result = cli("predict", run / "model.onnx", lines, "--keep-going", "--json")
    assert result.exit_code == 2
    assert [r["input"] for r in json.loads(result.stdout)["results"] if "label" in r] == [
        f"{lines}:1",
        f"{lines}:3",
    ]


def test_predict_command_imports_no_torch(tmp_path_factory, tmp_path):
    """`toolkit predict` end to end in a fresh interpreter where `import torch` fails, as without the extra."""
    import subprocess
    import sys

    run = exported(tmp_path_factory, "iris")
    rows = tmp_path / "rows.csv"
    rows.write_text("5.1,3.5,1.4,0.2\n6.3,2.5,5.0,1.9\n")
    code = (
        "import sys\n"
        "class _NoTorch:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'torch':\n"
        "            raise ModuleNotFoundError(f'import of {name} halted: torch is blocked', name=name)\n"
        "sys.meta_path.insert(0, _NoTorch())\n"
        "from toolkit.cli.main import main\n"
        "try:\n"
        "    main()\n"
        "finally:\n"
        "    print('torch loaded' if any(m.split('.')[0] == 'torch' for m in sys.modules) else 'no torch')\n"
    )
    args = ["predict", str(run / "model.onnx"), str(rows), "--json"]
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("no torch")
    assert len(json.loads(proc.stdout.rsplit("\n", 2)[0])["results"]) == 2
