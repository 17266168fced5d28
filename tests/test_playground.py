"""The playground at `toolkit serve`'s root, in headless Chromium against a real server.

`GET /` stays KServe V1's liveness answer for API clients ({"status": "alive"}) while a browser gets the page;
the page lists the served models, builds each form from the model's metadata and shows what KServe V1
:predict answers. Each flow is checked against `toolkit predict` on the same input: an image (a digit PNG
dropped into the form), a table row, a text, a series and an anomaly score; and the API key is asked once.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from test_predict import exported
from test_server import Server, get, request

from toolkit.runtime.predict import predict

MODELS = ["digits", "iris", "text", "forecast", "anomaly", "table"]
KEY = "s3cret-key"


def _plain_model(path: Path) -> None:
    """An ONNX model without toolkit metadata (the playground lists it and points to V2 /infer)."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "plain", [x], [y])
    path.parent.mkdir(parents=True)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("playground") / "repo"
    for name in MODELS:
        (root / name / "1").mkdir(parents=True)
        shutil.copyfile(exported(tmp_path_factory, name) / "model.onnx", root / name / "1" / "model.onnx")
    _plain_model(root / "plain" / "1" / "model.onnx")
    return root


@pytest.fixture(scope="module")
def server(repo):
    s = Server(repo)
    yield s
    assert s.stop() == 0, s.stderr()


@pytest.fixture(scope="module")
def digit_png(tmp_path_factory) -> Path:
    from PIL import Image
    from sklearn.datasets import load_digits

    path = tmp_path_factory.mktemp("digit") / "digit-3.png"
    img = (load_digits().images[3] * 255 / 16).astype(np.uint8)
    Image.fromarray(img).resize((32, 32), Image.Resampling.NEAREST).save(path)
    return path


def _model(repo: Path, name: str) -> Path:
    return repo / name / "1" / "model.onnx"


# --------------------------------------------------------------------------------------------- HTTP
def test_root_is_kserve_liveness_for_clients_and_the_page_for_browsers(server):
    for accept in (None, "application/json", "*/*"):
        status, body, headers = request(
            server.port, "GET", "/", headers={"Accept": accept} if accept else None
        )
        assert status == 200 and json.loads(body) == {"status": "alive"}
        assert headers["content-type"] == "application/json"
    status, body, headers = request(
        server.port, "GET", "/", headers={"Accept": "text/html,application/xhtml+xml"}
    )
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b'src="ui/playground.mjs"' in body and "script-src 'self'" in headers["content-security-policy"]
    for asset, kind in [
        ("playground.mjs", "text/javascript"),
        ("form.mjs", "text/javascript"),
        ("style.css", "text/css"),
    ]:
        status, body, headers = request(server.port, "GET", f"/ui/{asset}")
        assert status == 200 and headers["content-type"].startswith(kind) and len(body) > 500
    for missing in ("/ui/", "/ui/nope.mjs", "/ui/../http.py", "/ui/package.json"):
        assert get(server.port, missing)[0] == 404, missing
    status, body = get(server.port, "/v2/models/iris/toolkit")
    assert status == 200 and json.loads(body)["labels"] == ["setosa", "versicolor", "virginica"]
    status, body = get(server.port, "/v2/models/plain/toolkit")
    assert status == 404 and "no toolkit metadata" in json.loads(body)["error"]


def test_api_key_guards_the_models_not_the_page_and_no_ui_keeps_liveness(repo):
    s = Server(repo, "--api-key", KEY, "--no-ui")
    try:
        html = {"Accept": "text/html"}
        status, body = get(s.port, "/", headers=html)
        assert status == 200 and json.loads(body) == {"status": "alive"}  # --no-ui: JSON for browsers too
        assert get(s.port, "/ui/playground.mjs")[0] == 404
        assert get(s.port, "/v2/models/iris/toolkit")[0] == 401
        assert get(s.port, "/v2/models/iris/toolkit", headers={"Authorization": f"Bearer {KEY}"})[0] == 200
    finally:
        assert s.stop() == 0, s.stderr()


# --------------------------------------------------------------------------------------------- browser
def _open(browser, server, model: str):
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    origin = f"http://127.0.0.1:{server.port}/"
    # Offline by design: every request the page makes goes to the server itself (no CDN, no fonts).
    page.on(
        "request",
        lambda r: r.url.startswith((origin, "data:", "blob:")) or errors.append(f"request to {r.url}"),
    )
    page.goto(f"{origin}#{model}")
    page.locator(f"nav button[data-model={model}].active").wait_for()
    return page, errors


def test_image_flow_reads_the_predicted_label(browser, server, repo, digit_png):
    want = predict(_model(repo, "digits"), [str(digit_png)]).results[0]
    page, errors = _open(browser, server, "digits")
    assert "8x8 grayscale image" in page.locator("nav button[data-model=digits]").text_content()
    page.get_by_test_id("file").set_input_files(str(digit_png))
    page.get_by_test_id("predict").click()
    assert page.get_by_test_id("label").text_content() == want["label"]
    bars = page.locator(".bar")
    assert bars.count() == 5 and bars.first.get_attribute("data-label") == want["label"]  # most likely first
    value = float(bars.first.locator(".value").text_content())
    assert value == pytest.approx(want["probability"], abs=5e-4)
    assert "latency" in page.get_by_test_id("latency").text_content()
    assert not errors
    page.close()


def test_table_and_text_flows(browser, server, repo, tmp_path):
    rows = tmp_path / "row.csv"
    rows.write_text("6.7,3.0,5.2,2.3\n")
    want = predict(_model(repo, "iris"), [str(rows)]).results[0]
    page, errors = _open(browser, server, "iris")
    fields = page.locator(".fields input")
    assert [f.get_attribute("data-feature") for f in fields.all()][0] == "sepal length (cm)"
    for field, value in zip(fields.all(), ["6.7", "3.0", "5.2", "2.3"]):
        field.fill(value)
    page.get_by_test_id("predict").click()
    assert page.get_by_test_id("label").text_content() == want["label"]

    text = "my kitten purr meow the cat"
    want = predict(_model(repo, "text"), [], texts=[text]).results[0]
    page.locator("nav button[data-model=text]").click()
    page.get_by_test_id("text").fill(text)
    page.get_by_test_id("predict").click()
    assert page.get_by_test_id("label").text_content() == want["label"]
    assert not errors
    page.close()


def test_table_with_categorical_columns(browser, server, repo, tmp_path):
    """A category field offers the trained levels and sends text; the server encodes the raw row."""
    rows = tmp_path / "rows.csv"
    rows.write_text("job,age,income,city\nnurse,,52.5,nowhere\n")
    want = predict(_model(repo, "table"), [str(rows)]).results[0]
    page, errors = _open(browser, server, "table")
    fields = page.locator(".fields input")
    assert [f.get_attribute("data-feature") for f in fields.all()] == ["job", "age", "income", "city"]
    assert page.locator("datalist#levels-0 option").count() == 6  # job's trained levels
    for field, value in zip(fields.all(), ["nurse", "", "52.5", "nowhere"]):
        field.fill(value)
    page.get_by_test_id("predict").click()
    assert page.get_by_test_id("label").text_content() == want["label"]
    value = float(page.locator(".bar").first.locator(".value").text_content())
    assert value == pytest.approx(want["probability"], abs=5e-4)
    assert not errors
    page.close()


def test_series_plot_anomaly_score_and_a_model_without_metadata(browser, server, repo, digit_png, tmp_path):
    meta = json.loads(get(server.port, "/v2/models/forecast/toolkit")[1])
    pre = meta["inputs"][0]["preprocessing"]
    series = [round(pre["mean"] + pre["std"] * np.sin(i / 4), 3) for i in range(int(pre["window"]) + 3)]
    csv = tmp_path / "series.csv"
    csv.write_text("value\n" + "\n".join(map(str, series)) + "\n")
    want = predict(_model(repo, "forecast"), [str(csv)]).results[0]["forecast"]
    page, errors = _open(browser, server, "forecast")
    page.get_by_test_id("series").fill(", ".join(map(str, series)))
    page.get_by_test_id("predict").click()
    shown = [float(v) for v in page.get_by_test_id("forecast").text_content().split(",")]
    assert shown == pytest.approx(want, rel=1e-4)
    assert page.locator("svg.plot path.forecast").count() == 1

    want = predict(_model(repo, "anomaly"), [str(digit_png)]).results[0]
    page.locator("nav button[data-model=anomaly]").click()
    page.get_by_test_id("file").set_input_files(str(digit_png))
    page.get_by_test_id("predict").click()
    verdict = page.get_by_test_id("verdict").text_content()
    assert verdict == ("ANOMALY" if want["anomaly"] else "normal")
    assert page.locator(".gauge .threshold").count() == 1

    page.locator("nav button[data-model=plain]").click()
    assert "no toolkit metadata" in page.locator("#panel").text_content()
    assert not errors
    page.close()


def test_api_key_is_asked_once(browser, repo, digit_png):
    s = Server(repo, "--api-key", KEY)
    try:
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{s.port}/")
        page.get_by_test_id("api-key").fill("wrong")
        page.get_by_test_id("use-key").click()
        page.locator(".keybox", has_text="the server refused this API key").wait_for()  # asked again
        page.get_by_test_id("api-key").fill(KEY)
        page.get_by_test_id("use-key").click()
        page.locator("nav button[data-model=digits]").click()
        for _ in range(2):  # the key is kept: sent with every call, no second prompt
            page.get_by_test_id("file").set_input_files(str(digit_png))
            with page.expect_response(lambda r: r.url.endswith("/v1/models/digits:predict")) as answer:
                page.get_by_test_id("predict").click()
            assert answer.value.status == 200
            page.get_by_test_id("label").wait_for()
            assert page.get_by_test_id("api-key").count() == 0
        page.reload()  # and for the tab's life
        page.locator("nav button[data-model=digits]").wait_for()
        assert page.get_by_test_id("api-key").count() == 0
        page.close()
    finally:
        assert s.stop() == 0, s.stderr()
