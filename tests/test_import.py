"""Foreign ONNX models: info and bench on a bare model, `toolkit import`, and every runtime command on the
imported one (predict, validate, quantize, serve V1, edge pack, explain).

The foreign models are built here: a small torchvision-style CNN exported with plain torch.onnx.export
(NCHW, and an NHWC variant sharing its weights), a scikit-learn pipeline converted by skl2onnx (zipmap off:
a label tensor plus probabilities), and the CNN with its weights in an external data file.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_one_line_error

LABELS = ["cat", "dog", "bird"]
SIDE = 16
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


# --------------------------------------------------------------------------------------------- foreign models
def _cnn_modules():
    import torch
    import torch.nn as nn

    class Net(nn.Module):
        """Conv-BN-ReLU blocks, global pooling and a linear head: the shape of a torchvision classifier."""

        def __init__(self, nhwc: bool = False, inputs: int = 1) -> None:
            super().__init__()
            self.nhwc, self.inputs = nhwc, inputs
            self.features = nn.Sequential(
                nn.Conv2d(3, 8, 3, padding=1),
                nn.BatchNorm2d(8),
                nn.ReLU(),
                nn.Conv2d(8, 8, 3, padding=1),
                nn.ReLU(),
                nn.AdaptiveAvgPool2d(1),
                nn.Flatten(),
            )
            self.fc = nn.Linear(8, len(LABELS))

        def forward(self, x, y=None):
            if self.nhwc:
                x = x.permute(0, 3, 1, 2)
            z = self.features(x) if y is None else self.features(x) + self.features(y)
            return self.fc(z)

    torch.manual_seed(0)
    nchw = Net().eval()
    nhwc = Net(nhwc=True).eval()
    nhwc.load_state_dict(nchw.state_dict())
    return torch, Net, nchw, nhwc


@pytest.fixture(scope="module")
def foreign(tmp_path_factory) -> dict[str, Path]:
    """The foreign models, written by their own tools (no toolkit involved)."""
    import onnx

    torch, net, nchw, nhwc = _cnn_modules()
    root = tmp_path_factory.mktemp("foreign")
    paths = {}
    kw = {"dynamo": False, "opset_version": 17}
    paths["nchw"] = root / "cnn.onnx"
    torch.onnx.export(
        nchw,
        (torch.randn(1, 3, SIDE, SIDE),),
        str(paths["nchw"]),
        input_names=["pixel_values"],
        output_names=["scores"],
        dynamic_axes={"pixel_values": {0: "N", 2: "H", 3: "W"}, "scores": {0: "N"}},
        **kw,
    )
    paths["nhwc"] = root / "cnn_nhwc.onnx"
    torch.onnx.export(
        nhwc,
        (torch.randn(1, SIDE, SIDE, 3),),
        str(paths["nhwc"]),
        input_names=["image"],
        output_names=["scores"],
        dynamic_axes={"image": {0: "N"}, "scores": {0: "N"}},
        **kw,
    )
    two = net().eval()
    paths["two"] = root / "two_inputs.onnx"
    torch.onnx.export(
        two,
        (torch.randn(1, 3, SIDE, SIDE), torch.randn(1, 3, SIDE, SIDE)),
        str(paths["two"]),
        input_names=["a", "b"],
        **kw,
    )
    ext = root / "external"
    ext.mkdir()
    paths["external"] = ext / "cnn.onnx"
    proto = onnx.load(str(paths["nchw"]))
    onnx.save(
        proto, str(paths["external"]), save_as_external_data=True, location="cnn.weights", size_threshold=0
    )
    paths.update(_sklearn_models(root))
    return paths


def _sklearn_models(root: Path) -> dict[str, Path]:
    from skl2onnx import to_onnx
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = load_iris(return_X_y=True)
    names = np.array(["setosa", "versicolor", "virginica"])
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(
        x.astype(np.float32), names[y]
    )
    out = {"sklearn": root / "iris.onnx", "zipmap": root / "iris_zipmap.onnx"}
    out["sklearn"].write_bytes(
        to_onnx(clf, x[:1].astype(np.float32), options={"zipmap": False}).SerializeToString()
    )
    out["zipmap"].write_bytes(to_onnx(clf, x[:1].astype(np.float32)).SerializeToString())
    return out


def _images(root: Path, labels=LABELS, per_class: int = 4, size: int = 20) -> Path:
    """RGB PNGs, one sub-folder per label (other sizes than the model's: they are resized)."""
    from PIL import Image

    rng = np.random.default_rng(1)
    for label in labels:
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = (rng.random((size, size, 3)) * 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / label / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    return _images(tmp_path_factory.mktemp("images") / "data")


def _import(cli, source: Path, out: Path, *args: str):
    labels = out.parent / "labels.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    labels.write_text("\n".join(LABELS) + "\n")
    return cli("import", str(source), "--out", str(out), "--task", "classify", "--labels", str(labels), *args)


@pytest.fixture(scope="module")
def imported(foreign, tmp_path_factory) -> dict[str, Path]:
    """The foreign models imported (through the Python API the CLI calls)."""
    from toolkit.runtime.importer import ImportOptions, import_model

    root = tmp_path_factory.mktemp("imported")
    out = {}
    image = dict(task="classify", labels=LABELS, image_size=(SIDE, SIDE), preset="imagenet")
    for name, extra in (("nchw", {}), ("nhwc", {}), ("bgr", {"color_order": "bgr"})):
        out[name] = root / f"{name}.onnx"
        import_model(
            foreign["nhwc" if name == "nhwc" else "nchw"], out[name], ImportOptions(**image, **extra)
        )
    out["sklearn"] = root / "iris.onnx"
    names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    import_model(foreign["sklearn"], out["sklearn"], ImportOptions(task="classify", features=names))
    return out


def _expected(model: Path, folder: Path) -> dict[str, np.ndarray]:
    """The model's probabilities computed here by hand: PIL resize, ImageNet standardization, softmax."""
    import onnxruntime as ort
    from PIL import Image

    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    out = {}
    for f in sorted(folder.rglob("*.png")):
        with Image.open(f) as im:
            x = (
                np.asarray(im.convert("RGB").resize((SIDE, SIDE), Image.Resampling.BILINEAR), np.float32)
                / 255
            )
        x = ((x - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)[None].astype(np.float32)
        logits = sess.run(None, {sess.get_inputs()[0].name: x})[0][0].astype(np.float64)
        e = np.exp(logits - logits.max())
        out[str(f)] = e / e.sum()
    return out


# --------------------------------------------------------------------------------------------- bare models
def test_info_describes_a_bare_model_from_its_graph(cli, foreign):
    result = cli("info", str(foreign["nchw"]), "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["toolkit_metadata"] is False and info["task"] is None
    assert info["inputs"] == [
        {"name": "pixel_values", "dtype": "float32", "shape": ["N", 3, "H", "W"], "meaning": None}
    ]
    assert info["outputs"][0]["shape"] == ["N", 3]
    assert info["opset"]["ai.onnx"] == 17 and info["operators"]["Conv"] == 2
    assert info["parameters"] > 3 * 8 * 9 and info["external_data"] == []
    text = cli("info", str(foreign["nchw"])).stdout
    assert "no toolkit metadata" in text and "pixel_values" in text


def test_info_lists_external_data(cli, foreign):
    info = json.loads(cli("info", str(foreign["external"]), "--json").stdout)
    [ext] = info["external_data"]
    weights = foreign["external"].parent / "cnn.weights"
    assert ext["file"] == "cnn.weights" and ext["bytes"] == weights.stat().st_size and ext["tensors"] >= 4
    assert info["total_bytes"] == info["bytes"] + ext["bytes"] and info["bytes"] < ext["bytes"]


def test_info_on_sklearn_model_shows_ml_domain(cli, foreign):
    info = json.loads(cli("info", str(foreign["sklearn"]), "--json").stdout)
    assert "ai.onnx.ml" in info["opset"]
    assert any(op.startswith("ai.onnx.ml.") for op in info["operators"])
    assert [o["dtype"] for o in info["outputs"]] == ["string", "float32"]


def test_bench_feeds_declared_shapes_and_states_them(foreign, tmp_path):
    from toolkit.runtime.bench import bench

    report = bench(
        [foreign["nchw"]],
        batches=[1, 2],
        rounds=1,
        slice_seconds=0.02,
        out=tmp_path / "b.json",
        shapes={"pixel_values": [1, 3, 24, 20]},
    )
    assert report["inputs"] == {"pixel_values": ["batch", 3, 24, 20]}
    assert report["toolkit_metadata"] is False
    assert [r["batch"] for r in report["results"]] == [1, 2] and all(
        r["p50_ms"] > 0 for r in report["results"]
    )
    default = bench([foreign["sklearn"]], batches=[4], rounds=1, slice_seconds=0.02, out=tmp_path / "c.json")
    assert default["inputs"] == {"X": ["batch", 4]}


def test_bench_cli_shape_errors(cli, foreign):
    assert_one_line_error(cli("bench", str(foreign["nchw"]), "--shape", "x=1x3"), "'x'", "pixel_values")
    assert_one_line_error(cli("bench", str(foreign["nchw"]), "--shape", "pixel_values=1x4x8x8"), "fixed at 3")
    assert_one_line_error(cli("bench", str(foreign["nchw"]), "--shape", "pixel_values=abc"), "NAME=DIMS")


def test_bare_model_is_refused_by_predict_with_a_hint(cli, foreign, images):
    assert_one_line_error(cli("predict", str(foreign["nchw"]), str(images)), "no `toolkit` metadata")


# --------------------------------------------------------------------------------------------- import
def test_import_writes_metadata_and_keeps_the_graph(cli, foreign, tmp_path):
    import onnx

    out = tmp_path / "m" / "cnn.onnx"
    result = _import(cli, foreign["nchw"], out, "--image-size", str(SIDE), "--preset", "imagenet", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)["metadata"]
    assert doc["labels"] == LABELS and doc["task"] == "classify" and doc["imported"]["options"]["preset"]
    assert doc["inputs"][0]["layout"] == "NCHW" and doc["outputs"][0]["as"] == "logits"
    assert doc["outputs"][0]["apply"] == "softmax"
    assert json.loads(out.with_suffix(".json").read_text()) == doc
    src, new = onnx.load(str(foreign["nchw"])), onnx.load(str(out))
    assert new.graph == src.graph  # graph and weights unchanged
    info = json.loads(cli("info", str(out), "--json").stdout)
    assert info["toolkit_metadata"] and info["imported"]["sha256"] == doc["imported"]["sha256"]


def test_predict_on_imported_image_model_equals_hand_computed(imported, foreign, images):
    from toolkit.runtime.predict import predict

    results = predict(imported["nchw"], [str(images)]).results
    want = _expected(foreign["nchw"], images)
    assert len(results) == len(want) == 12
    for r in results:
        p = want[r["input"]]
        assert r["label"] == LABELS[int(p.argmax())]
        assert np.allclose([r["probabilities"][k] for k in LABELS], p, atol=1e-5)


def test_nhwc_import_answers_as_the_nchw_model(imported, images):
    from toolkit.runtime.predict import predict

    a = predict(imported["nchw"], [str(images)]).results
    b = predict(imported["nhwc"], [str(images)]).results
    meta = json.loads(imported["nhwc"].with_suffix(".json").read_text())
    assert meta["inputs"][0]["layout"] == "NHWC" and meta["inputs"][0]["shape"] == ["N", SIDE, SIDE, 3]
    for x, y in zip(a, b):
        assert x["label"] == y["label"]
        assert np.allclose(list(x["probabilities"].values()), list(y["probabilities"].values()), atol=1e-5)


def test_bgr_import_reverses_the_channels(imported, foreign, tmp_path):
    """Standardized in RGB order (ImageNet's mean/std are stated in RGB), then fed as B, G, R."""
    import onnxruntime as ort
    from PIL import Image

    from toolkit.runtime.predict import predict

    rng = np.random.default_rng(3)
    pixels = (rng.random((SIDE, SIDE, 3)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "rgb.png")
    [r] = predict(imported["bgr"], [str(tmp_path / "rgb.png")]).results
    x = (pixels.astype(np.float32) / 255 - IMAGENET_MEAN) / IMAGENET_STD
    x = np.ascontiguousarray(x[..., ::-1].transpose(2, 0, 1)[None], dtype=np.float32)
    sess = ort.InferenceSession(str(foreign["nchw"]), providers=["CPUExecutionProvider"])
    logits = sess.run(None, {"pixel_values": x})[0][0].astype(np.float64)
    want = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    assert np.allclose([r["probabilities"][k] for k in LABELS], want, atol=1e-5)
    [plain] = predict(imported["nchw"], [str(tmp_path / "rgb.png")]).results
    assert not np.allclose(list(plain["probabilities"].values()), want, atol=1e-5)  # the order matters


def test_external_data_stays_external(cli, foreign, images, tmp_path):
    import onnx

    out = tmp_path / "elsewhere" / "cnn.onnx"
    result = _import(cli, foreign["external"], out, "--image-size", str(SIDE), "--preset", "imagenet")
    assert result.exit_code == 0, result.output
    weights = out.parent / "cnn.weights"
    assert weights.read_bytes() == (foreign["external"].parent / "cnn.weights").read_bytes()
    proto = onnx.load(str(out), load_external_data=False)
    assert all(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer if t.dims)
    added = len(out.with_suffix(".json").read_bytes())  # the document, once in the model
    assert out.stat().st_size < foreign["external"].stat().st_size + added + 100
    result = cli("predict", str(out), str(images), "--json")
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["results"]) == 12


# --------------------------------------------------------------------------------------------- validate, quantize
def test_validate_with_labelled_folder_names_the_data(cli, imported, images, foreign):
    from toolkit.runtime.validate import validate

    report = validate(imported["nhwc"], data=str(images))
    assert report["passed"], report["checks"]
    assert report["data"] == {"source": str(images), "samples": 12}
    want = _expected(foreign["nchw"], images)
    truth = [LABELS.index(Path(k).parent.name) for k in sorted(want)]
    accuracy = float(np.mean([want[k].argmax() == t for k, t in zip(sorted(want), truth)]))
    assert report["metrics"]["CPUExecutionProvider"]["accuracy"]["got"] == pytest.approx(accuracy)
    assert_one_line_error(cli("validate", str(imported["nhwc"])), "imported", "--data")


def test_quantize_with_labelled_data_reports_it(imported, images, tmp_path):
    import shutil

    from toolkit.runtime.quantize import quantize

    model = tmp_path / "cnn.onnx"
    shutil.copy(imported["nchw"], model)
    report = quantize(model, data=str(images), rounds=1, slice_seconds=0.01, batches=[1])
    assert report["data"]["source"] == str(images)
    assert report["data"]["validation_samples"] == 12
    names = [c["name"] for c in report["candidates"]]
    assert "static" in names and all(c["error"] is None for c in report["candidates"])
    assert json.loads((tmp_path / "quantize.json").read_text())["data"]["source"] == str(images)


def test_import_and_validate_with_data_need_no_torch(foreign, images, tmp_path):
    """The runtime side: import, then validate on an image folder, in an interpreter that refuses torch."""
    from helpers import NO_TORCH

    out, labels = tmp_path / "m.onnx", tmp_path / "labels.txt"
    labels.write_text("\n".join(LABELS))
    argv = [
        [
            "import",
            str(foreign["nchw"]),
            "--out",
            str(out),
            "--task",
            "classify",
            "--image-size",
            str(SIDE),
            "--labels",
            str(labels),
        ],
        ["validate", str(out), "--data", str(images), "--json"],
    ]
    for args in argv:
        code = NO_TORCH + f"sys.argv = ['toolkit', *{args!r}]\nfrom toolkit.cli.main import main\nmain()"
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr + proc.stdout
    assert json.loads(proc.stdout)["passed"]
    assert "torch" not in proc.stderr


def test_data_with_other_labels_is_refused(cli, imported, tmp_path):
    other = _images(tmp_path / "other", labels=["cat", "dog", "fish"], per_class=1)
    for cmd in ("validate", "quantize"):
        line = assert_one_line_error(cli(cmd, str(imported["nchw"]), "--data", str(other)), "fish", "differ")
        assert "cat, dog, bird" in line
    assert not (imported["nchw"].parent / "quantize.json").exists()


# --------------------------------------------------------------------------------------------- scikit-learn
def test_sklearn_model_predicts_validates_with_its_own_labels(cli, imported, foreign, iris_csv):
    import onnxruntime as ort
    from sklearn.datasets import load_iris

    meta = json.loads(imported["sklearn"].with_suffix(".json").read_text())
    assert meta["labels"] == ["setosa", "versicolor", "virginica"]  # read from the ai.onnx.ml classifier
    assert [o.get("as") for o in meta["outputs"]] == ["label", "probabilities"]
    result = cli("predict", str(imported["sklearn"]), str(iris_csv), "--json")
    assert result.exit_code == 0, result.output
    got = [r["label"] for r in json.loads(result.stdout)["results"]]
    x = load_iris().data.astype(np.float32)
    sess = ort.InferenceSession(str(foreign["sklearn"]), providers=["CPUExecutionProvider"])
    labels, probs = sess.run(None, {"X": x})
    assert got == list(labels)
    report = json.loads(cli("validate", str(imported["sklearn"]), "--data", str(iris_csv), "--json").stdout)
    assert report["passed"], report["checks"]
    y = load_iris().target
    want = float(np.mean(probs.argmax(1) == y))
    assert report["metrics"]["CPUExecutionProvider"]["accuracy"]["got"] == pytest.approx(want)


def test_sklearn_regressor_validates_on_npz(cli, tmp_path):
    from skl2onnx import to_onnx
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge

    x, y = load_diabetes(return_X_y=True)
    x = x.astype(np.float32)
    model = Ridge().fit(x, y)
    (tmp_path / "ridge.onnx").write_bytes(to_onnx(model, x[:1]).SerializeToString())
    np.savez(tmp_path / "data.npz", x=x, y=y.astype(np.float32))
    out = tmp_path / "imported" / "ridge.onnx"
    result = cli("import", str(tmp_path / "ridge.onnx"), "--out", str(out), "--task", "regress")
    assert result.exit_code == 0, result.output
    report = json.loads(cli("validate", str(out), "--data", str(tmp_path / "data.npz"), "--json").stdout)
    assert report["passed"], report["checks"]
    rmse = float(np.sqrt(np.mean((model.predict(x) - y) ** 2)))
    assert report["metrics"]["CPUExecutionProvider"]["rmse"]["got"] == pytest.approx(rmse, rel=1e-4)
    first = json.loads(cli("predict", str(out), str(tmp_path / "data.npz"), "--json").stdout)["results"][0]
    assert first["value"] == pytest.approx(float(model.predict(x[:1])[0]), rel=1e-4)


def test_quantize_sklearn_keeps_fp32_and_says_why(imported, iris_csv, tmp_path):
    import shutil

    from toolkit.runtime.quantize import quantize

    model = tmp_path / "iris.onnx"
    shutil.copy(imported["sklearn"], model)
    report = quantize(model, data=str(iris_csv), rounds=1, slice_seconds=0.01, batches=[1])
    assert report["written"] is None and report["data"]["source"] == str(iris_csv)
    assert all("ai.onnx.ml operators" in c["error"] for c in report["candidates"])


def test_sklearn_zipmap_is_refused_with_the_fix(cli, foreign, tmp_path):
    out = tmp_path / "z.onnx"
    assert_one_line_error(
        cli("import", str(foreign["zipmap"]), "--out", str(out), "--task", "classify"), "zipmap"
    )
    assert not out.exists()


# --------------------------------------------------------------------------------------------- serve, edge, explain
def test_serve_v1_answers_imported_models(imported, images, tmp_path):
    import base64
    import shutil

    from test_server import Server, post_json

    repo = tmp_path / "repo"
    for name in ("nhwc", "sklearn"):
        (repo / name / "1").mkdir(parents=True)
        shutil.copy(imported[name], repo / name / "1" / "model.onnx")
    server = Server(repo)
    try:
        files = sorted(images.rglob("*.png"))[:3]
        body = {"instances": [{"b64": base64.b64encode(f.read_bytes()).decode()} for f in files]}
        status, answer = post_json(server.port, "/v1/models/nhwc:predict", body)
        assert status == 200, answer
        from toolkit.runtime.predict import predict

        local = predict(imported["nhwc"], [str(f) for f in files]).results
        assert [p["label"] for p in answer["predictions"]] == [r["label"] for r in local]
        status, answer = post_json(
            server.port, "/v1/models/sklearn:predict", {"instances": [[5.1, 3.5, 1.4, 0.2]]}
        )
        assert status == 200 and answer["predictions"][0]["label"] == "setosa", answer
    finally:
        assert server.stop() == 0, server.stderr()


def test_edge_bundle_of_imported_nhwc_model_answers_as_predict(imported, images, tmp_path):
    from toolkit.runtime.edge import bundle
    from toolkit.runtime.predict import predict

    out = Path(bundle.pack(imported["nhwc"], tmp_path / "bundle", check_pins=False)["out"])
    files = [str(f) for f in sorted(images.rglob("*.png"))[:4]]
    run = subprocess.run(
        [sys.executable, "runner.py", "--json", *files], cwd=out, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout)["results"]
    want = predict(imported["nhwc"], files).results
    assert [r["label"] for r in got] == [r["label"] for r in want]
    assert np.allclose([r["probability"] for r in got], [r["probability"] for r in want], atol=1e-5)


def test_explain_imported_image_and_table_models(imported, images, iris_csv):
    from toolkit.runtime.explain.api import explain

    one = str(sorted(images.rglob("*.png"))[0])
    [r] = explain(imported["nhwc"], [one], method="occlusion").results
    assert np.asarray(r["attributions"]).shape[-2:] == (SIDE, SIDE)
    [t] = explain(imported["sklearn"], [str(iris_csv)], method="occlusion").results[:1]
    assert set(t["features"]) == {"sepal_length", "sepal_width", "petal_length", "petal_width"}


# --------------------------------------------------------------------------------------------- bad input
def _refused(cli, tmp_path, source, *args, needles=()):
    out = tmp_path / "new" / "model.onnx"
    line = assert_one_line_error(_import(cli, source, out, *args), *needles)
    assert not out.exists() and not out.with_suffix(".json").exists()
    return line


def test_import_refuses_bad_input_and_writes_nothing(cli, foreign, tmp_path):
    text = tmp_path / "notes.onnx"
    text.write_text("not a model at all")
    _refused(cli, tmp_path, text, needles=("not an ONNX model",))
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(foreign["nchw"].read_bytes()[:300])
    _refused(cli, tmp_path, cut, needles=("truncated",))
    _refused(cli, tmp_path, foreign["two"], "--image-size", "16", needles=("2 image-like inputs",))
    _refused(cli, tmp_path, foreign["sklearn"], "--layout", "nchw", needles=("4-D", "'X'"))
    _refused(cli, tmp_path, foreign["nchw"], needles=("--image-size",))  # H and W are open
    _refused(cli, tmp_path, foreign["nchw"], "--image-size", "16", "--layout", "nhwc", needles=("channels",))
    five = tmp_path / "five.txt"
    five.write_text("a\nb\nc\nd\ne\n")
    out = tmp_path / "new" / "model.onnx"
    line = assert_one_line_error(
        cli(
            "import",
            str(foreign["nchw"]),
            "--out",
            str(out),
            "--task",
            "classify",
            "--labels",
            str(five),
            "--image-size",
            "16",
        )
    )
    assert "5 labels" in line and "3 classes" in line and not out.exists()
    assert_one_line_error(
        cli("import", str(foreign["nchw"]), "--out", str(out), "--task", "forecast"), "classify, regress"
    )
