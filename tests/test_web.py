"""`toolkit edge pack --target web`: the model in a web page, in headless Chromium.

The central check: what toolkit-web.mjs computes in the page (WebAssembly, on the bundle's ORT-format model)
equals onnxruntime in Python on the .onnx model: the preprocessed rows (images decoded, converted, resized
and standardized; rows; series windows; token ids), every raw output within 1e-4, and the predictions, for a
model of every task but the generator. The page is embedded as a web app would embed it: a page outside the
bundle folder imports the bundle's toolkit-web.mjs.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from chromium import WEBGPU_FLAGS
from helpers import assert_one_line_error
from test_predict import exported

from toolkit.runtime import processing
from toolkit.runtime.edge import browser as chromium
from toolkit.runtime.edge import web
from toolkit.runtime.edge.bundle import pack
from toolkit.runtime.edge.runner import close
from toolkit.runtime.model import OnnxModel
from toolkit.runtime.predict import predict, predictions_from_outputs

TASKS = ["digits", "iris", "regress", "forecast", "anomaly", "text"]
ATOL = 1e-4  # the parity bound on raw outputs

# The host page of the parity checks: it imports the bundle's module as another web app would.
APP = """<!doctype html><meta charset="utf-8"><title>app</title><script type="module">
import * as toolkit from "./bundle/toolkit-web.mjs";
window.toolkit = toolkit;
</script>"""

PARITY_JS = """async ({inputs, backend}) => {
  await new Promise((ok) => { const wait = () => (window.toolkit ? ok() : setTimeout(wait, 20)); wait(); });
  const model = await window.toolkit.loadModel("bundle/", {backend});
  const raw = await Promise.all(inputs.map(async (x) => (x && x.file ? (await fetch(x.file)).blob() : x)));
  const rows = await model.prepare(raw);
  const results = await model.predict(raw, {outputs: true});
  return {backend: model.backend, rows: rows.map((r) => (typeof r === "string" ? r : Array.from(r))), results};
}"""


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> dict[str, Path]:
    """A web bundle (ORT format on WebAssembly; the digits CNN's also ONNX on WebGPU) of a tiny model of every
    task but the generator, each in SITE/NAME/bundle beside the host page SITE/NAME/app.html."""
    root = tmp_path_factory.mktemp("web")
    sites = {}
    for name in TASKS:
        folder = root / name
        webgpu = name == "digits"  # the default bundle; the others without the 27 MB WebGPU runtime
        pack(exported(tmp_path_factory, name) / "model.onnx", folder / "bundle", target="web", webgpu=webgpu)
        (folder / "app.html").write_text(APP)
        sites[name] = folder
    return sites


def _png(pixels: np.ndarray, fmt: str = "PNG") -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt)
    return buf.getvalue()


def _extra_inputs(name: str, folder: Path, meta: dict) -> list:
    """Inputs beyond the bundle's samples: real digits at other sizes and modes, rows given as objects or
    strings, a longer series, texts with unknown words and capitals."""
    kind = processing.input_kind(meta)
    if processing.image_geometry(meta) is not None:
        from sklearn.datasets import load_digits

        digits = (load_digits().images[:4] * 255 / 16).astype(np.uint8)
        rgb = np.stack([digits[1], digits[1] // 2, 255 - digits[1]], axis=-1)
        files = {
            "digit.png": _png(digits[0]),
            "digit-rgb.png": _png(np.kron(rgb, np.ones((3, 2, 1), dtype=np.uint8))),  # 24x16 RGB: resize
            "digit-rgba.png": _png(np.dstack([np.kron(digits[2], np.ones((5, 5), dtype=np.uint8))] * 3 + [np.full((40, 40), 255, np.uint8)])),
            "digit.jpg": _png(np.kron(digits[3], np.ones((4, 4), dtype=np.uint8)), "JPEG"),
        }  # fmt: skip
        for file, data in files.items():
            (folder / file).write_bytes(data)
        return [{"file": f} for f in files]
    if kind == "tabular":
        names = processing.feature_names(meta)
        mean = meta["inputs"][0]["preprocessing"]["mean"]
        return [dict(zip(names, mean)), [f"{v:.3f}" for v in mean], [None] * len(names)]
    if kind == "series":
        pre = meta["inputs"][0]["preprocessing"]
        return [[pre["mean"] + pre["std"] * np.cos(i / 5) for i in range(3 * int(pre["window"]))]]
    return ["THE Cat, meow!", "puppy puppy woof zzz-unknown"]


def _python_instance(meta: dict, x, folder: Path):
    """The same input as `toolkit predict` / KServe V1 take it (images as base64, rows as lists)."""
    if isinstance(x, dict) and "file" in x:
        return {"b64": base64.b64encode((folder / x["file"]).read_bytes()).decode()}
    if isinstance(x, dict):
        return [x[n] for n in processing.feature_names(meta)]
    return x


def _parity(page, folder: Path, backend: str = "wasm") -> float:
    """Run the bundle's samples and extra inputs in the page; assert they equal Python's; returns the
    largest output difference."""
    bundle_dir = folder / "bundle"
    meta = json.loads((bundle_dir / "model.json").read_text())
    samples = json.loads((bundle_dir / "samples" / "expected.json").read_text())["instances"]
    inputs = [{"file": f"bundle/{x['file']}"} if isinstance(x, dict) else x for x in samples]
    inputs += _extra_inputs(folder.name, folder, meta)
    got = page.evaluate(PARITY_JS, {"inputs": inputs, "backend": backend})
    assert got["backend"] == backend
    rows = [
        processing.prepare_instance(meta, _python_instance(meta, x, folder), f"input {i}")
        for i, x in enumerate(inputs)
    ]
    for i, (js, py) in enumerate(zip(got["rows"], rows)):
        if isinstance(py, str) or (isinstance(py, list) and py and isinstance(py[0], int)):
            assert js == py, (i, js, py)  # raw text, token ids
        else:
            np.testing.assert_allclose(
                np.asarray(js, np.float32), np.asarray(py).reshape(-1), atol=1e-6, err_msg=f"row {i}"
            )
    outputs = OnnxModel(
        json.loads((bundle_dir / "manifest.json").read_text())["model"]["file"],
        providers=["CPUExecutionProvider"],
    ).run(processing.batch_feeds(meta, rows))
    worst = 0.0
    for name, want in outputs.items():
        js = np.asarray([r["outputs"][name] for r in got["results"]], dtype=np.float64).reshape(want.shape)
        worst = max(worst, float(np.abs(js - want).max()))
    assert worst <= ATOL, f"{folder.name}: outputs differ by {worst:.3g} > {ATOL}"
    want = predictions_from_outputs(meta, outputs)
    for g, w in zip(got["results"], want):
        g = {k: v for k, v in g.items() if k != "outputs"}
        assert close(g, w), (folder.name, g, w)
    return worst


# --------------------------------------------------------------------------------------------- parity
@pytest.mark.parametrize("name", TASKS)
def test_page_equals_onnxruntime_in_python(site, browser, name):
    """Every task's bundle in the page (WebAssembly, ORT format) against onnxruntime in Python (.onnx)."""
    with chromium.serve_folder(site[name]) as url:
        page = browser.new_page()
        page.goto(url + "app.html")
        _parity(page, site[name])
        page.close()


def test_bundle_page_self_test_and_a_prediction_from_its_form(site, browser, tmp_path):
    """index.html answers its samples as `toolkit predict` did at pack time, then a dropped digit PNG."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digit = tmp_path / "seven.png"
    Image.fromarray((load_digits().images[7] * 255 / 16).astype(np.uint8)).resize((32, 32)).save(digit)
    want = predict(site["digits"] / "bundle" / "model.onnx", [str(digit)]).results[0]
    with chromium.serve_folder(site["digits"] / "bundle") as url:
        page = browser.new_page()
        report = chromium.page_ready(page, url + "index.html")
        assert report["selfTest"]["passed"], report
        assert report["backend"] == "wasm"  # Chromium started with --disable-gpu: no WebGPU adapter
        page.get_by_test_id("file").set_input_files(str(digit))
        page.get_by_test_id("predict").click()
        assert page.get_by_test_id("label").text_content() == want["label"]
        assert "in the page" in page.get_by_test_id("latency").text_content()
        page.close()


def test_input_errors_are_one_line_in_the_page(site, browser):
    with chromium.serve_folder(site["digits"]) as url:
        page = browser.new_page()
        page.goto(url + "app.html")
        messages = page.evaluate(
            """async () => {
              await new Promise((ok) => { const w = () => (window.toolkit ? ok() : setTimeout(w, 20)); w(); });
              const model = await window.toolkit.loadModel("bundle/", {backend: "wasm"});
              const out = [];
              for (const bad of ["a text", [1, 2, 3], new Blob(["not an image"])]) {
                try { await model.predict([bad]); out.push("accepted"); } catch (e) { out.push(`${e.name}|${e.message}`); }
              }
              return out;
            }"""
        )
        page.close()
    assert messages[0] == "Error|input 0 is a string; this model takes 8x8 grayscale image"
    assert messages[1].startswith("Error|input 0 has 3 values; the model takes (1, 8, 8) images")
    assert messages[2].startswith("Error|cannot decode the image: not a PNG or JPEG file")


@pytest.mark.slow
def test_webgpu_backend_equals_onnxruntime_in_python(site, playwright):
    """The WebGPU runtime (ONNX model, NHWC kernels) on SwiftShader's software adapter: same answers."""
    with (
        chromium.serve_folder(site["digits"]) as url,
        chromium.headless_chromium(WEBGPU_FLAGS, playwright) as gpu_browser,
    ):
        page = gpu_browser.new_page()
        page.goto(url + "app.html")
        if not page.evaluate("async () => Boolean(navigator.gpu && await navigator.gpu.requestAdapter())"):
            pytest.skip(
                "this Chromium offers no WebGPU adapter (SwiftShader's Vulkan is not shipped with it)"
            )
        _parity(page, site["digits"], backend="webgpu")


# --------------------------------------------------------------------------------------------- pack, verify
def test_pack_writes_a_static_folder_and_verify_runs_its_page(cli, browser, tmp_path_factory, tmp_path):
    run = exported(tmp_path_factory, "iris")
    out = tmp_path / "iris-web"
    result = cli("edge", "pack", run, "--target", "web", "--out", out, "--no-webgpu", "--json")
    assert result.exit_code == 0, result.output
    manifest = json.loads(result.stdout)
    assert manifest["target"] == "web" and manifest["format"] == "ort"
    assert manifest["web"]["models"] == {"wasm": "model.ort"} and manifest["requirements"] == {
        "onnxruntime-web": web.ort_web_version()
    }
    names = set(manifest["files"])
    assert {
        "index.html",
        "toolkit-web.mjs",
        "model.ort",
        "model.json",
        "ort/ort-wasm-simd-threaded.wasm",
    } <= names
    assert not any("webgpu" in n or "asyncify" in n for n in names)  # --no-webgpu: 27 MB less
    for name, entry in manifest["files"].items():
        assert (out / name).stat().st_size == entry["bytes"]

    report = json.loads(cli("edge", "verify", out, "--json").stdout)
    assert report["passed"], report
    smoke = next(c for c in report["checks"] if c["check"] == "smoke")
    assert "headless Chromium" in smoke["detail"] and "3 samples answered" in smoke["detail"]

    # The page's self-test fails when the recorded answers are not what the model gives (hashes updated, so
    # only the browser can tell).
    expected = out / "samples" / "expected.json"
    doc = json.loads(expected.read_text())
    doc["results"][0]["label"] = next(
        label for label in ("setosa", "virginica") if label != doc["results"][0]["label"]
    )
    expected.write_text(json.dumps(doc))
    manifest_doc = json.loads((out / "manifest.json").read_text())
    from toolkit.runtime.edge.packing import file_entry

    manifest_doc["files"]["samples/expected.json"] = file_entry(expected)
    (out / "manifest.json").write_text(json.dumps(manifest_doc))
    result = cli("edge", "verify", out, "--json")
    assert result.exit_code == 1
    smoke = next(c for c in json.loads(result.stdout)["checks"] if c["check"] == "smoke")
    assert smoke["status"] == "fail" and "sample 0 differs" in smoke["detail"], smoke


def test_web_pack_errors_are_one_line(cli, tmp_path_factory, tmp_path):
    run = exported(tmp_path_factory, "iris")
    assert_one_line_error(
        cli("edge", "pack", run, "--target", "web", "--out", tmp_path / "a", "--format", "ort"),
        "--format ort runs on WebAssembly only",
        "--no-webgpu",
    )
    empty = tmp_path / "empty-dist"
    empty.mkdir()
    assert_one_line_error(
        cli("edge", "pack", run, "--target", "web", "--out", tmp_path / "b", "--ort-web", empty),
        "lacks onnxruntime-web's ort.wasm.min.mjs",
    )
    assert_one_line_error(
        cli("edge", "pack", run, "--target", "webasm", "--out", tmp_path / "c"), "allowed: x86_64, arm64, web"
    )
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_ort_web_from_a_given_dist_folder_without_torch_and_no_wasm_file_in_the_repository(
    tmp_path_factory, tmp_path
):
    """--ort-web takes a dist folder (machines without npm); the pack needs no torch; the repository vendors
    no runtime file."""
    import subprocess
    import sys

    from helpers import NO_TORCH

    dist = tmp_path / "onnxruntime-web" / "dist"
    dist.mkdir(parents=True)
    for name in web.WASM_FILES:
        shutil.copyfile(web.ort_web_dist(webgpu=False) / name, dist / name)
    model = exported(tmp_path_factory, "iris") / "model.onnx"
    cli = NO_TORCH + "from toolkit.cli.main import main\nsys.argv = ['toolkit'] + sys.argv[1:]\nmain()\n"
    args = ["edge", "pack", str(model), "--target", "web", "--out", str(tmp_path / "b"), "--format", "onnx"]
    args += ["--no-webgpu", "--ort-web", str(dist.parent), "--json"]
    proc = subprocess.run([sys.executable, "-c", cli, *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["web"]["models"] == {"wasm": "model.onnx"}
    assert (tmp_path / "b" / "ort" / "ort-wasm-simd-threaded.wasm").stat().st_size > 1_000_000
    root = Path(__file__).resolve().parents[1]
    assert not list((root / "toolkit").rglob("*.wasm"))
    assert not (root / "toolkit" / "runtime" / "webui" / "node_modules").exists()
