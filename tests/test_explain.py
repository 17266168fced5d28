"""`toolkit explain` on tiny trained models of every task: faithfulness (deletion), agreement with Captum,
sanity under re-initialized weights, determinism, pictures, the server's endpoints, the edge runner, and
one-line errors for bad inputs.

The faithfulness, agreement and sanity checks use an MLP on the 8x8 digits (flattened images: the image
methods apply, and it learns in seconds); the digits CNN of the benchmark is too slow to train here. The
CNN path (NCHW input) is exercised on test_predict's tiny CNN.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import ANSI, NO_TORCH, assert_one_line_error
from runs import exported
from test_edge import BLOCK

from toolkit.errors import ToolkitError
from toolkit.runtime.explain import engine
from toolkit.runtime.explain.api import explain
from toolkit.runtime.explain.evaluate import deletion, spearman
from toolkit.runtime.explain.scores import Scorer
from toolkit.runtime.explain.terminal import render
from toolkit.runtime.model import OnnxModel

DIGITS_MLP = ["model.hidden=[32]", "model.dropout=0", "train.epochs=6", "train.lr=0.01"]
CANCER_MLP = ["model.hidden=[16]", "model.dropout=0", "train.epochs=12", "train.lr=0.01"]


def _train(root: Path, name: str, recipe: str, data: str, overrides: list[str]) -> Path:
    from toolkit.export import export_run
    from toolkit.train import train

    run = root / name
    train(recipe, data=data, overrides=overrides, out=run)
    export_run(run)
    return run


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("explain")


@pytest.fixture(scope="module")
def digits_mlp(work) -> Path:
    return _train(work, "digits-mlp", "mlp-tabular", "builtin:digits", DIGITS_MLP)


@pytest.fixture(scope="module")
def cancer_mlp(work) -> Path:
    return _train(work, "cancer-mlp", "mlp-tabular", "builtin:breast_cancer", CANCER_MLP)


def _test_split(run: Path, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first n preprocessed test rows of a run and their labels."""
    from toolkit.data import load_splits
    from toolkit.models import model_entry
    from toolkit.recipe import load_recipe

    rec = load_recipe(run / "recipe.yaml")
    kind = model_entry(rec.arch).input_kind(rec.task, rec.model)
    splits = load_splits(rec.data, rec.task, kind, rec.train.seed)
    return splits.x_test[:n], splits.y_test[:n]


def _maps(model: OnnxModel, rows: np.ndarray, method: str, targets=None, **kw) -> list[dict]:
    items = [(f"row {i}", r) for i, r in enumerate(rows)]
    out = []
    for i, item in enumerate(items):
        target = None if targets is None else str(targets[i])
        out += engine.explain_items(model.meta, model.run, [item], engine.Options(method, target, **kw))
    return out


def _scorer(model: OnnxModel, index: int) -> Scorer:
    width = model.inputs[0].shape[1:]
    feed = lambda b: {model.input_names[0]: np.asarray(b, np.float32).reshape(len(b), *width)}  # noqa: E731
    scorer = Scorer(model.meta, model.run, feed)
    scorer.index = index
    return scorer


# --------------------------------------------------------------------------------------------- goals
@pytest.mark.parametrize("method", ["occlusion", "ig", "rise"])
def test_deleting_the_most_attributed_pixels_lowers_the_score_twice_as_much_as_random(digits_mlp, method):
    model = OnnxModel(digits_mlp / "model.onnx")
    rows, _ = _test_split(digits_mlp, 30)
    rng = np.random.default_rng(0)
    top, rand = [], []
    for row, r in zip(rows, _maps(model, rows, method)):
        a, b = deletion(
            _scorer(model, r["target_index"]), row.reshape(1, 8, 8), np.array(r["attributions"]), 0.1, rng
        )
        top.append(a)
        rand.append(b)
    assert np.mean(top) >= 2 * np.mean(rand) > 0, (np.mean(top), np.mean(rand))


def test_tabular_shap_is_faithful_complete_and_seeded(cancer_mlp):
    model = OnnxModel(cancer_mlp / "model.onnx")
    rows, _ = _test_split(cancer_mlp, 25)
    rng = np.random.default_rng(0)
    results = _maps(model, rows, "shap", samples=300, seed=1)
    top, rand = [], []
    for row, r in zip(rows, results):
        # efficiency: the values add up to F(x) - F(training mean)
        assert abs(sum(r["attributions"]) - (r["score"] - r["baseline_score"])) < 1e-3
        a, b = deletion(_scorer(model, r["target_index"]), row[None], np.array(r["attributions"]), 0.1, rng)
        top.append(a)
        rand.append(b)
    assert np.mean(top) >= 2 * np.mean(rand) > 0, (np.mean(top), np.mean(rand))
    again = _maps(model, rows[:1], "shap", samples=300, seed=1)[0]
    other = _maps(model, rows[:1], "shap", samples=300, seed=2)[0]
    assert again["attributions"] == results[0]["attributions"]
    assert other["attributions"] != results[0]["attributions"]


def test_integrated_gradients_agree_with_captum(digits_mlp):
    import torch
    from captum.attr import IntegratedGradients

    from toolkit.train.checkpoint import load_checkpoint, load_model

    net = load_model(load_checkpoint(digits_mlp / "best.pt")).eval()
    probs = lambda x: torch.softmax(net(x), dim=-1)  # noqa: E731
    model = OnnxModel(digits_mlp / "model.onnx")
    rows, _ = _test_split(digits_mlp, 5)
    ours = _maps(model, rows, "ig")
    rhos = []
    for row, r in zip(rows, ours):
        x = torch.from_numpy(row[None].astype(np.float32))
        theirs = IntegratedGradients(probs).attribute(x, target=r["target_index"], n_steps=50)
        rhos.append(spearman(np.array(r["attributions"]), theirs.detach().numpy()))
        assert abs(r["completeness_gap"]) < 0.05 * max(abs(r["score"] - r["baseline_score"]), 1e-3)
    assert np.mean(rhos) >= 0.9, rhos


def _reinitialized(src: Path, dst: Path) -> Path:
    """The model with every float weight drawn again at random (same shapes and spread): Adebayo et al.'s
    model-parameter randomization test, done on the ONNX file."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(src))
    rng = np.random.default_rng(0)
    for init in proto.graph.initializer:
        w = numpy_helper.to_array(init)
        if w.dtype == np.float32 and w.ndim >= 1 and w.size > 1:
            fresh = rng.normal(0, float(w.std()) or 0.1, w.shape).astype(np.float32)
            init.CopyFrom(numpy_helper.from_array(fresh, init.name))
    onnx.save(proto, str(dst))
    return dst


@pytest.mark.parametrize("method", ["occlusion", "ig"])
def test_maps_of_a_reinitialized_model_differ(digits_mlp, tmp_path, method):
    model = OnnxModel(digits_mlp / "model.onnx")
    random = OnnxModel(_reinitialized(digits_mlp / "model.onnx", tmp_path / "random.onnx"))
    rows, _ = _test_split(digits_mlp, 10)
    trained = _maps(model, rows, method)
    targets = [r["target_index"] for r in trained]
    rhos = [
        spearman(np.array(a["attributions"]), np.array(b["attributions"]))
        for a, b in zip(trained, _maps(random, rows, method, targets))
    ]
    assert np.mean(rhos) < 0.5, rhos


def test_rise_is_deterministic_for_a_seed(digits_mlp):
    model = OnnxModel(digits_mlp / "model.onnx")
    rows, _ = _test_split(digits_mlp, 1)
    a, b = (_maps(model, rows, "rise", samples=200, seed=7)[0] for _ in range(2))
    c = _maps(model, rows, "rise", samples=200, seed=8)[0]
    assert a["attributions"] == b["attributions"] != c["attributions"]
    assert a["evaluations"] == 200 + 2  # the masks, the input and the baseline


# --------------------------------------------------------------------------------------------- every task
def test_cnn_occlusion_is_the_drop_of_hiding_each_pixel(tmp_path_factory, tmp_path):
    run = exported(tmp_path_factory, "digits")
    model = OnnxModel(run / "model.onnx")
    from sklearn.datasets import load_digits

    np.save(tmp_path / "seven.npy", load_digits().images[7])
    got = explain(run / "model.onnx", [str(tmp_path / "seven.npy")], target="3", out=tmp_path / "map.png")
    r = got.results[0]
    assert r["shape"] == [8, 8] and r["target"] == "3" and r["window"] == 1 and r["evaluations"] == 67
    x = engine.read_items(model.meta, [str(tmp_path / "seven.npy")])[0][1]
    hidden = np.repeat(x[None], 64, axis=0).reshape(64, 64)
    hidden[np.arange(64), np.arange(64)] = 0.0  # each pixel at the training mean, one copy each
    p = model.run({"input": np.concatenate([x[None], hidden.reshape(64, 1, 8, 8)])})["probabilities"][:, 3]
    np.testing.assert_allclose(np.array(r["attributions"]).ravel(), p[0] - p[1:], atol=2e-6)
    _check_png(tmp_path / "map.png", rows=1)


def _check_png(path: Path, rows: int) -> None:
    from PIL import Image

    with Image.open(path) as im:
        assert im.format == "PNG"
        assert im.height >= rows * 112 and im.width >= 3 * 112  # input, map, overlay (+ labels) per row


def test_image_grid_has_a_row_per_input(tmp_path_factory, tmp_path, cli):
    run = exported(tmp_path_factory, "digits")
    from sklearn.datasets import load_digits

    np.save(tmp_path / "three.npy", load_digits().images[:3])
    result = cli(
        "explain", run / "model.onnx", tmp_path / "three.npy", "--method", "ig", "--out", tmp_path / "g.png"
    )
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and result.output.count("ig for") == 3
    _check_png(tmp_path / "g.png", rows=3)
    from PIL import Image

    with Image.open(tmp_path / "g.png") as im:
        assert im.height < 4 * 130


def test_text_tokens_in_json_and_in_colour(tmp_path_factory, cli):
    run = exported(tmp_path_factory, "text")
    result = cli("explain", run / "model.onnx", "--text", "my cat says meow", "--json")
    assert result.exit_code == 0, result.output
    r = json.loads(result.stdout)["results"][0]
    assert r["method"] == "loo" and r["tokens"] == ["my", "cat", "says", "meow"]
    # leave-one-out: the full text's probability minus the text without each token, as the model gives them
    model = OnnxModel(run / "model.onnx")
    tok = model.meta["inputs"][0]["preprocessing"]["tokenizer"]
    ids = [tok["vocab"].index(w) if w in tok["vocab"] else 1 for w in r["tokens"]]
    rows = [ids] + [ids[:i] + ids[i + 1 :] for i in range(len(ids))]
    batch = np.zeros((len(rows), len(ids)), dtype=np.int64)
    for i, row in enumerate(rows):
        batch[i, : len(row)] = row
    p = model.run({model.input_names[0]: batch})["probabilities"][:, r["target_index"]]
    np.testing.assert_allclose(r["attributions"], p[0] - p[1:], atol=2e-6)
    strongest = int(np.argmax(np.abs(r["attributions"])))
    assert r["colours"][strongest] in ("#b2182b", "#2166ac")  # the ends of the diverging scale
    coloured = render(r, colour=True)
    assert coloured.count("\x1b[48;2;") == 4 and "meow" in ANSI.sub("", coloured)
    # the raw-string model (tokenizer inside the graph) gives the same explanation
    if (run / "model.text.onnx").is_file():
        raw = cli("explain", run / "model.text.onnx", "--text", "my cat says meow", "--json")
        assert json.loads(raw.stdout)["results"][0]["attributions"] == r["attributions"]


def test_forecast_window_attributions_and_plot(tmp_path_factory, tmp_path):
    run = exported(tmp_path_factory, "forecast")
    model = OnnxModel(run / "model.onnx")
    window = model.meta["inputs"][0]["preprocessing"]["window"]
    series = tmp_path / "series.txt"
    series.write_text("\n".join(f"{50 + 30 * np.sin(i / 3):.4f}" for i in range(window + 5)))
    occl = explain(run / "model.onnx", [str(series)], out=tmp_path / "s.png").results[0]
    ig = explain(run / "model.onnx", [str(series)], method="ig").results[0]
    assert len(occl["window"]) == len(occl["attributions"]) == len(ig["attributions"]) == window
    assert occl["target"] in ("step 1", f"mean of the {len(occl['forecast'])}-step forecast")
    # integrated gradients are complete: they add up to F(x) - F(mean window)
    assert (
        abs(sum(ig["attributions"]) - (ig["score"] - ig["baseline_score"])) < 0.02 * abs(ig["score"]) + 1e-3
    )
    from PIL import Image

    with Image.open(tmp_path / "s.png") as im:
        assert im.format == "PNG" and im.width > 400


def test_autoencoder_error_map_adds_up_to_its_score(tmp_path_factory, tmp_path):
    run = exported(tmp_path_factory, "anomaly")
    from sklearn.datasets import load_digits

    np.save(tmp_path / "zero.npy", load_digits().images[0])
    got = explain(run / "model.onnx", [str(tmp_path / "zero.npy")], out=tmp_path / "ae.png")
    r = got.results[0]
    assert r["method"] == "reconstruction" and r["shape"] == [8, 8]
    assert np.mean(r["attributions"]) == pytest.approx(r["score"], rel=1e-4)
    assert r["anomaly"] == (r["score"] > r["threshold"])
    _check_png(tmp_path / "ae.png", rows=1)


def test_gan_is_not_applicable(tmp_path_factory, cli):
    run = exported(tmp_path_factory, "gan")
    assert_one_line_error(cli("explain", run / "model.onnx", "3"), "does not apply to a GAN generator")


# --------------------------------------------------------------------------------------------- bad input
def test_bad_inputs_are_one_line_errors(tmp_path_factory, tmp_path, cli):
    digits = exported(tmp_path_factory, "digits") / "model.onnx"
    iris = exported(tmp_path_factory, "iris") / "model.onnx"
    np.save(tmp_path / "wrong.npy", np.zeros((5, 7)))
    np.save(tmp_path / "ok.npy", np.zeros((8, 8)))
    assert_one_line_error(cli("explain", digits, tmp_path / "wrong.npy"), "shape [5, 7]", "(1, 8, 8)")
    assert_one_line_error(cli("explain", digits, tmp_path / "ok.npy", "--target", "cat"), "'cat'", "0, 1, 2")
    assert_one_line_error(
        cli("explain", digits, tmp_path / "ok.npy", "--method", "shap"), "allowed: occlusion"
    )
    assert_one_line_error(cli("explain", digits, tmp_path / "ok.npy", "--samples", "0"), "--samples")
    assert_one_line_error(cli("explain", digits, tmp_path / "ok.npy", "--out", tmp_path / "m.jpg"), ".png")
    assert_one_line_error(cli("explain", digits, "--text", "hello"), "--text is for text models")
    assert_one_line_error(cli("explain", iris, tmp_path / "ok.npy"), "4 features")
    assert_one_line_error(cli("explain", iris, tmp_path / "ok.npy", "--method", "loo"), "allowed: shap")
    with pytest.raises(ToolkitError, match="no inputs"):
        explain(digits, [])


def test_keep_going_explains_the_good_inputs(tmp_path_factory, tmp_path, cli):
    digits = exported(tmp_path_factory, "digits") / "model.onnx"
    np.save(tmp_path / "ok.npy", np.zeros((8, 8)))
    result = cli("explain", digits, tmp_path / "ok.npy", tmp_path / "missing.png", "--keep-going", "--json")
    assert result.exit_code == 2
    results = json.loads(result.stdout)["results"]
    assert "attributions" in results[0] and "no such file" in results[1]["error"]


# --------------------------------------------------------------------------------------------- no torch
def test_cli_explains_tables_with_shap_without_torch(cancer_mlp, tmp_path):
    rows, _ = _test_split(cancer_mlp, 2)
    meta = json.loads((cancer_mlp / "model.json").read_text())
    pre = meta["inputs"][0]["preprocessing"]
    np.save(tmp_path / "rows.npy", rows * np.array(pre["std"]) + np.array(pre["mean"]))
    code = (
        "import sys; sys.argv = ['toolkit', 'explain', sys.argv[1], sys.argv[2], '--json', '--samples', '200']\n"
        "from toolkit.cli.main import main\nmain()"
    )
    proc = subprocess.run(
        [sys.executable, "-c", NO_TORCH + code, str(cancer_mlp / "model.onnx"), str(tmp_path / "rows.npy")],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)["results"]
    assert [r["method"] for r in results] == ["shap", "shap"] and len(results[0]["attributions"]) == 30
    assert results[0]["features"][0] == pre["feature_names"][0]


# --------------------------------------------------------------------------------------------- edge
def test_edge_runner_explains_like_the_cli_without_torch_or_toolkit(tmp_path_factory, tmp_path):
    from toolkit.runtime.edge import bundle

    for name, args in (("digits", ["samples"]), ("text", ["--text", "my cat says meow"])):
        folder = Path(bundle.pack(exported(tmp_path_factory, name), tmp_path / name)["out"])
        code = (
            BLOCK
            + "import runpy; sys.argv = ['runner.py', *sys.argv[1:]]; runpy.run_path('runner.py', run_name='__main__')"
        )
        cmd = [sys.executable, "-c", code, "explain", *args, "--json", "--out", "explain.png"]
        proc = subprocess.run(cmd, cwd=folder, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        got = json.loads(proc.stdout)["results"]
        cwd = os.getcwd()
        os.chdir(folder)
        try:
            texts = args[1:] if args[0] == "--text" else []
            want = explain("model.onnx", [] if texts else args, texts).results
        finally:
            os.chdir(cwd)
        assert got == want and len(got) > 0
        assert (folder / "explain.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        bad = subprocess.run(
            cmd[:3] + ["explain", *args, "--target", "nope"], cwd=folder, capture_output=True, text=True
        )
        assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "'nope'" in bad.stderr


# --------------------------------------------------------------------------------------------- server
def _post(port: int, path: str, doc: dict) -> tuple[int, dict]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", path, json.dumps(doc).encode(), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`toolkit serve` (torch blocked) on a repository of the tiny digits CNN and text model."""
    import shutil
    import socket

    repo = tmp_path_factory.mktemp("explain-repo")
    for name in ("digits", "text"):
        (repo / name / "1").mkdir(parents=True)
        shutil.copyfile(exported(tmp_path_factory, name) / "model.onnx", repo / name / "1" / "model.onnx")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = (
        NO_TORCH
        + "import sys; from toolkit.cli.main import main; sys.argv = ['toolkit', *sys.argv[1:]]; main()"
    )
    log = open(repo / "server.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "serve", str(repo), "--port", str(port), "--grpc-port", "0"], stderr=log
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        assert proc.poll() is None, (repo / "server.log").read_text()
        try:
            if _post(port, "/v2/repository/index", {})[0] == 200:
                break
        except OSError:
            time.sleep(0.2)
    yield port
    proc.terminate()
    proc.wait(30)
    log.close()


def test_server_v2_explain_returns_the_engines_attribution_tensors(server, tmp_path_factory):
    from sklearn.datasets import load_digits

    model = OnnxModel(exported(tmp_path_factory, "digits") / "model.onnx")
    images = load_digits().images[:2]
    rows = [r for _, r in engine.read_items(model.meta, [str(_save(tmp_path_factory, images))])]
    x = np.stack(rows).astype(np.float32)  # (2, 1, 8, 8) preprocessed, as /infer takes them
    body = {
        "inputs": [{"name": "input", "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()}],
        "parameters": {"method": "ig", "target": "3"},
    }
    status, doc = _post(server, "/v2/models/digits/explain", body)
    assert status == 200, doc
    outs = {o["name"]: o for o in doc["outputs"]}
    assert outs["attributions"]["shape"] == [2, 8, 8] and outs["target"]["data"] == ["3", "3"]
    want = engine.explain_items(model.meta, model.run, [("a", x[0]), ("b", x[1])], engine.Options("ig", "3"))
    np.testing.assert_allclose(
        np.array(outs["attributions"]["data"]).reshape(2, 8, 8), [w["attributions"] for w in want], atol=1e-5
    )
    np.testing.assert_allclose(outs["score"]["data"], [w["score"] for w in want], rtol=1e-5)
    status, doc = _post(
        server, "/v2/models/digits/versions/1/explain", {**body, "parameters": {"target": "x"}}
    )
    assert status == 400 and "'x' is not a label" in doc["error"]
    bad = {"inputs": [{**body["inputs"][0], "shape": [1, 1, 8, 7], "data": x.ravel()[:56].tolist()}]}
    assert _post(server, "/v2/models/digits/explain", bad)[0] == 400


def _save(tmp_path_factory, images: np.ndarray) -> Path:
    path = tmp_path_factory.mktemp("explain-inputs") / "images.npy"
    np.save(path, images)
    return path


def test_server_v1_explain_on_raw_inputs(server, tmp_path_factory):
    from sklearn.datasets import load_digits

    pixels = load_digits().images[5]
    status, doc = _post(server, "/v1/models/digits:explain", {"instances": [pixels.tolist()]})
    assert status == 200, doc
    got = doc["explanations"][0]
    want = explain(
        exported(tmp_path_factory, "digits") / "model.onnx", [str(_save(tmp_path_factory, pixels))]
    )
    assert got["attributions"] == want.results[0]["attributions"] and got["method"] == "occlusion"
    status, doc = _post(server, "/v1/models/text:explain", {"instances": ["my cat says meow"]})
    assert status == 200 and doc["explanations"][0]["tokens"] == ["my", "cat", "says", "meow"]
    status, doc = _post(
        server, "/v1/models/text:explain", {"instances": ["my cat"], "parameters": {"method": "ig"}}
    )
    assert status == 400 and "allowed: loo, occlusion" in doc["error"]
    assert _post(server, "/v1/models/nothing:explain", {"instances": [[1]]})[0] == 404
