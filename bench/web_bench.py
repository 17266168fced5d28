"""The model in the browser: cold start and per-inference time of a web bundle's page in headless Chromium,
and its parity with onnxruntime in Python.

Models: the digits CNN of recipes/cnn-image.yaml (its default architecture, on builtin:digits 8x8; a few
epochs: speed does not depend on accuracy), an iris MLP and an LSTM text classifier (parity only).

* cold start -- a fresh browser context per visit (empty HTTP cache, no compiled-code cache): from navigation
  start to the page's self-test answered (HTML, modules, manifest, model, onnxruntime-web import, WebAssembly
  compile and init, session, the three sample PNGs decoded and answered), as the page reports it
  (performance.now() at ready). Contenders, interleaved in paired rounds: the default bundle (ORT format on
  WebAssembly) and the same bundle with --format onnx.
* inference -- in the ready page: `model.run(feeds)` on one preprocessed digit (batch 1), and
  `model.predict([png])` (PNG decode, resize, standardize, run, softmax), medians of many calls; beside it
  onnxruntime in Python (its own process, 1 intra-op thread) on the same preprocessed digit.
* parity -- the page's raw outputs against onnxruntime in Python on the bundle's samples (image: PNGs at the
  trained size, upscaled, RGB; tabular rows; texts): the largest absolute difference.

The machine's load average is recorded before and after: on a shared 2-core machine it moves the timings.
Run: `.venv/bin/python bench/web_bench.py --out bench/results/web.json` (`make bench`).
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # helpers.two_class_text_csv: the text data the tests train on

PY_ORT = """
import json, sys, time
import numpy as np, onnxruntime as ort
opts = ort.SessionOptions(); opts.intra_op_num_threads = 1; opts.inter_op_num_threads = 1
s = ort.InferenceSession(sys.argv[1], opts, providers=["CPUExecutionProvider"])
x = np.load(sys.argv[2])
for _ in range(20): s.run(None, {"input": x})
times = []
for _ in range(int(sys.argv[3])):
    t = time.perf_counter(); s.run(None, {"input": x}); times.append((time.perf_counter() - t) * 1000)
times.sort(); print(json.dumps({"run_ms": times[len(times) // 2]}))
"""

INFER_JS = """async ({n, png}) => {
  const {model} = await window.toolkitPage.ready;
  const {batchFeeds} = await import(new URL("toolkit-web.mjs", location.href).href);
  const blob = await (await fetch(png)).blob();
  const feeds = batchFeeds(model.meta, await model.prepare([blob]));
  for (let i = 0; i < 20; i++) await model.run(feeds);
  // performance.now() is coarsened to 0.1 ms in a page that is not cross-origin isolated: time whole loops
  const loop = async (k, f) => { const t = performance.now(); for (let i = 0; i < k; i++) await f(); return (performance.now() - t) / k; };
  const run = [], full = [];
  for (let r = 0; r < 5; r++) {
    run.push(await loop(n / 5, () => model.run(feeds)));
    full.push(await loop(n / 20, () => model.predict([blob])));
  }
  const med = (xs) => xs.sort((a, b) => a - b)[xs.length >> 1];
  return {run_ms: med(run), predict_ms: med(full), backend: model.backend};
}"""

# The model's own share of a session's start: sessions made once the runtime is up, the formats in turn.
SESSIONS_JS = """async ({rounds}) => {
  const {model} = await window.toolkitPage.ready;
  const bytes = {};
  for (const f of ["model.onnx", "model.ort"]) bytes[f] = new Uint8Array(await (await fetch(f)).arrayBuffer());
  const create = {"model.onnx": [], "model.ort": []};
  for (let r = 0; r < rounds; r++) for (const f of (r % 2 ? ["model.onnx", "model.ort"] : ["model.ort", "model.onnx"])) {
    const t = performance.now();
    const s = await model.ort.InferenceSession.create(bytes[f], {executionProviders: ["wasm"]});
    create[f].push(performance.now() - t);
    await s.release();
  }
  const med = (xs) => xs.sort((a, b) => a - b)[xs.length >> 1];
  return {onnx: med(create["model.onnx"]), ort: med(create["model.ort"])};
}"""

OUTPUTS_JS = """async ({inputs}) => {
  const {model} = await window.toolkitPage.ready;
  const raw = await Promise.all(inputs.map(async (x) => (x && x.file ? (await fetch(x.file)).blob() : x)));
  return (await model.predict(raw, {outputs: true})).map((r) => r.outputs);
}"""


def build(work: Path, epochs: int) -> dict[str, Path]:
    """Train and export the models, pack their web bundles (the digits CNN also with --format onnx)."""
    from helpers import two_class_text_csv

    from toolkit.export import export_run
    from toolkit.runtime.edge.bundle import pack
    from toolkit.train import train

    recipes = {
        "digits": ("cnn-image", "builtin:digits", [f"train.epochs={epochs}", "train.patience=0"]),
        "iris": ("mlp-tabular", "builtin:iris", ["train.epochs=20"]),
        "text": ("lstm-text", str(two_class_text_csv(work / "text.csv")), ["train.epochs=3"]),
        "transformer": (
            "transformer-text",
            str(work / "text.csv"),
            ["train.epochs=1"],
        ),  # session starts only
    }
    out = {}
    for name, (recipe, data, overrides) in recipes.items():
        train(recipe, data=data, overrides=[*overrides, "train.device=cpu"], out=work / name)
        export_run(work / name)
        out[name] = Path(pack(work / name / "model.onnx", work / f"{name}-web", target="web")["out"])
    out["digits-onnx"] = Path(
        pack(work / "digits" / "model.onnx", work / "digits-web-onnx", target="web", fmt="onnx")["out"]
    )
    return out


def cold_starts(browser, bundles: dict[str, Path], rounds: int) -> dict[str, list[dict]]:
    """Paired rounds of fresh-context visits, the contenders' order alternating."""
    from toolkit.runtime.edge.browser import page_ready, serve_folder

    names = ["digits", "digits-onnx"]
    samples: dict[str, list[dict]] = {n: [] for n in names}
    with serve_folder(bundles["digits"].parent) as url:
        for r in range(rounds + 1):  # round 0 warms the OS file cache and the browser process
            for name in names if r % 2 else names[::-1]:
                context = browser.new_context()
                report = page_ready(context.new_page(), f"{url}{bundles[name].name}/index.html?backend=wasm")
                context.close()
                assert report["selfTest"]["passed"], report
                if r:
                    samples[name].append({"cold_start_ms": report["coldStartMs"], **report["timings"]})
    return samples


def inference(browser, bundle: Path, n: int) -> dict[str, float]:
    from toolkit.runtime.edge.browser import page_ready, serve_folder

    with serve_folder(bundle) as url:
        page = browser.new_page()
        page_ready(page, url + "index.html?backend=wasm")
        return page.evaluate(INFER_JS, {"n": n, "png": "samples/image_0.png"})


def sessions(browser, bundle: Path, rounds: int = 12) -> dict[str, float]:
    from toolkit.runtime.edge.browser import page_ready, serve_folder

    with serve_folder(bundle) as url:
        page = browser.new_page()
        page_ready(page, url + "index.html?backend=wasm")
        return {k: round(v, 1) for k, v in page.evaluate(SESSIONS_JS, {"rounds": rounds}).items()}


def python_inference(bundle: Path, n: int) -> dict[str, float]:
    from toolkit.runtime import processing

    meta = json.loads((bundle / "model.json").read_text())
    row = processing.image_to_row(
        meta, processing.decode_image((bundle / "samples" / "image_0.png").read_bytes(), meta)
    )
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "x.npy", row[None])
        proc = subprocess.run(
            [sys.executable, "-c", PY_ORT, str(bundle / "model.onnx"), str(Path(tmp) / "x.npy"), str(n)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
    return json.loads(proc.stdout)


def parity(browser, bundle: Path) -> float:
    """Largest |page - onnxruntime in Python| over every output of the bundle's samples."""
    from toolkit.runtime import processing
    from toolkit.runtime.edge.browser import page_ready, serve_folder
    from toolkit.runtime.model import OnnxModel

    meta = json.loads((bundle / "model.json").read_text())
    instances = json.loads((bundle / "samples" / "expected.json").read_text())["instances"]
    with serve_folder(bundle) as url:
        page = browser.new_page()
        page_ready(page, url + "index.html?backend=wasm")
        got = page.evaluate(OUTPUTS_JS, {"inputs": instances})
    raw = [
        {"b64": base64.b64encode((bundle / x["file"]).read_bytes()).decode()} if isinstance(x, dict) else x
        for x in instances
    ]
    rows = [processing.prepare_instance(meta, x, "sample") for x in raw]
    want = OnnxModel(bundle / "model.onnx", providers=["CPUExecutionProvider"]).run(
        processing.batch_feeds(meta, rows)
    )
    return max(
        float(np.abs(np.asarray([g[k] for g in got], dtype=np.float64).reshape(v.shape) - v).max())
        for k, v in want.items()
    )


def summarize(samples: list[dict]) -> dict[str, float]:
    keys = samples[0].keys()
    return {f"{k}_median": round(statistics.median(s[k] for s in samples), 1) for k in keys} | {
        "cold_start_ms_min": round(min(s["cold_start_ms"] for s in samples), 1),
        "cold_start_ms_max": round(max(s["cold_start_ms"] for s in samples), 1),
        "rounds": len(samples),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "web.json")
    ap.add_argument("--rounds", type=int, default=10, help="paired cold-start rounds")
    ap.add_argument("--runs", type=int, default=400, help="inference calls measured in the page")
    ap.add_argument("--epochs", type=int, default=3)
    args = ap.parse_args()
    from toolkit.runtime.edge import web
    from toolkit.runtime.edge.browser import chromium_path, headless_chromium
    from toolkit.runtime.edge.bundle import _file_entry

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        bundles = build(Path(tmp), args.epochs)
        with headless_chromium() as browser:
            version = browser.version
            cold = cold_starts(browser, bundles, args.rounds)
            page = inference(browser, bundles["digits"], args.runs)
            diffs = {name: parity(browser, bundles[name]) for name in ("digits", "iris", "text")}
            starts = {name: sessions(browser, bundles[name]) for name in ("digits", "transformer")}
        py = python_inference(bundles["digits-onnx"], args.runs)
        sizes = {
            "model.onnx": _file_entry(bundles["digits"] / "model.onnx")["bytes"],
            "model.ort": _file_entry(bundles["digits"] / "model.ort")["bytes"],
            "wasm_runtime": sum(_file_entry(bundles["digits"] / "ort" / f)["bytes"] for f in web.WASM_FILES),
            "webgpu_runtime": sum(
                _file_entry(bundles["digits"] / "ort" / f)["bytes"] for f in web.WEBGPU_FILES
            ),
        }
    result = {
        "bench": "web",
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "note": "shared 2-vCPU machine, other jobs running: see load_average",
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
        "browser": f"headless Chromium {version} ({chromium_path()}), --disable-gpu: WebAssembly, 1 thread",
        "onnxruntime_web": web.ort_web_version(),
        "model": "recipes/cnn-image.yaml default architecture (channels [32, 64], hidden 128), builtin:digits 8x8",
        "bytes": sizes,
        "cold_start": {
            "what": "fresh context, navigation start to the 3 sample PNGs answered (page's performance.now())",
            "ort_format (default)": summarize(cold["digits"]),
            "onnx_format": summarize(cold["digits-onnx"]),
        },
        "inference_ms": {
            "what": "one digit, batch 1: medians of 5 loops (page) / of single calls (Python, own process)",
            "page_session_run": round(page["run_ms"], 3),
            "page_predict_png": round(page["predict_ms"], 3),
            "python_onnxruntime_run": round(py["run_ms"], 3),
            "page_over_python": round(page["run_ms"] / py["run_ms"], 1),
            "calls": args.runs,
        },
        "session_create_ms": {
            "what": "median session start once the runtime is up (the model's share of a cold start), ONNX vs "
            "ORT format, in turn; transformer: recipes/transformer-text.yaml's default architecture",
            **starts,
        },
        "parity_max_abs_diff": {k: float(f"{v:.3g}") for k, v in diffs.items()},
        "goals": {"parity": 1e-4, "cold_start_ms": 1500, "inference_ms": 5},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
