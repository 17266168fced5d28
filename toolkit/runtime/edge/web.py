"""`toolkit edge pack MODEL --target web`: a static folder that runs the model in a web page.

The folder holds the model (ONNX, or onnxruntime's ORT format with --format ort), model.json (the metadata
document: onnxruntime-web does not expose an ONNX file's custom metadata), onnxruntime-web's runtime files in
ort/ (the WebAssembly build, and the WebGPU build unless --no-webgpu), toolkit-web.mjs (the JS API: the
metadata's pre- and post-processing, as toolkit/runtime/processing.py applies it in Python), index.html with
its page (a self-test on the bundled samples, then a form for the user's own input), sample inputs with the
answers `toolkit predict` gives them (samples/expected.json), a README and a SHA-256 manifest.

onnxruntime-web comes from the npm registry at the version pinned in toolkit/runtime/webui/package.json (with
its package-lock.json): `make setup`, or the first web pack, runs `npm ci` for it once into the user's cache;
--ort-web DIR (or TOOLKIT_ORT_WEB) names a folder holding its dist files instead, for machines without npm.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.errors import ToolkitError
from toolkit.runtime import processing
from toolkit.runtime.edge import packing
from toolkit.runtime.model import OnnxModel, read_metadata

WEBUI = Path(__file__).resolve().parents[1] / "webui"
PAGE_FILES = ("index.html", "page.mjs", "form.mjs", "toolkit-web.mjs", "style.css")
# onnxruntime-web's dist files a bundle ships: the WebAssembly build, and the WebGPU one (WebGPU execution
# provider; nodes it cannot run fall back to its own WebAssembly kernels).
WASM_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
WEBGPU_FILES = (
    "ort.webgpu.min.mjs",
    "ort-wasm-simd-threaded.asyncify.mjs",
    "ort-wasm-simd-threaded.asyncify.wasm",
)


def ort_web_version() -> str:
    """The pinned onnxruntime-web version (webui/package.json is its one source)."""
    doc = json.loads((WEBUI / "package.json").read_text())
    return doc["dependencies"]["onnxruntime-web"]


def _installed_dist() -> Path:
    return (
        packing.cache_dir()
        / f"onnxruntime-web-{ort_web_version()}"
        / "node_modules"
        / "onnxruntime-web"
        / "dist"
    )


def _has_runtime(dist: Path, webgpu: bool) -> bool:
    return all((dist / f).is_file() for f in (*WASM_FILES, *(WEBGPU_FILES if webgpu else ())))


def ort_web_installed() -> bool:
    """Whether the pinned onnxruntime-web is in the user's cache (a web pack then needs no network)."""
    return _has_runtime(_installed_dist(), webgpu=True)


def install_ort_web() -> Path:
    """`npm ci` of the pinned onnxruntime-web into the user's cache (once); returns its dist folder."""
    dist = _installed_dist()
    if _has_runtime(dist, webgpu=True):
        return dist
    npm = shutil.which("npm")
    if npm is None:
        raise ToolkitError(
            f"onnxruntime-web {ort_web_version()} is not installed and npm is not on PATH: install Node.js "
            "(npm), or pass --ort-web DIR (a folder holding onnxruntime-web's dist files)"
        )
    folder = dist.parents[2]
    folder.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        for name in ("package.json", "package-lock.json"):
            shutil.copyfile(WEBUI / name, stage / name)
        cmd = [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"]
        proc = subprocess.run(cmd, cwd=stage, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            tail = [x for x in proc.stderr.splitlines() if x.strip()] or ["no output"]
            raise ToolkitError(
                f"npm ci could not install onnxruntime-web {ort_web_version()}: {tail[-1][:200]}"
            )
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(stage, folder)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return dist


def ort_web_dist(explicit: str | Path | None = None, webgpu: bool = True) -> Path:
    """The folder holding onnxruntime-web's dist files: --ort-web DIR, else $TOOLKIT_ORT_WEB, else the pinned
    release in the user's cache (installed with npm ci when missing)."""
    given = explicit or os.environ.get("TOOLKIT_ORT_WEB")
    dist = Path(given) if given else install_ort_web()
    if (dist / "dist").is_dir():  # the package folder rather than its dist/
        dist = dist / "dist"
    needed = (*WASM_FILES, *(WEBGPU_FILES if webgpu else ()))
    missing = [f for f in needed if not (dist / f).is_file()]
    if missing:
        raise ToolkitError(
            f"{dist} lacks onnxruntime-web's {missing[0]}; --ort-web takes the dist folder of the "
            f"onnxruntime-web {ort_web_version()} npm package"
        )
    return dist


# --------------------------------------------------------------------------------------------- samples
def sample_instances(stage: Path, meta: dict[str, Any]) -> list[Any]:
    """Raw inputs for the page's self-test, written under samples/: images as PNG files ({"file": path}) at
    the trained size, at twice that size (the resize path) and in the other colour mode; feature rows (one
    with a missing value), a series, texts (one with an unknown word), or labels."""
    folder = stage / packing.SAMPLES
    folder.mkdir()
    rng = np.random.default_rng(0)
    kind = processing.input_kind(meta)
    pre = meta["inputs"][0].get("preprocessing") or {}
    geom = processing.image_geometry(meta)
    if kind == "noise":
        return list((meta.get("labels") or ["0"])[:3])
    if geom is not None:
        from PIL import Image

        c, h, w = geom
        out = []
        for i, (mode, scale) in enumerate(
            [("L" if c == 1 else "RGB", 1), ("L" if c == 1 else "RGB", 2), ("RGB" if c == 1 else "L", 1)]
        ):
            side = (h * scale, w * scale)
            pixels = (rng.random((*side, 3 if mode == "RGB" else 1)) * 255).astype(np.uint8)
            name = f"{packing.SAMPLES}/image_{i}.png"
            Image.fromarray(pixels[..., 0] if mode == "L" else pixels, mode).save(stage / name)
            out.append({"file": name})
        return out
    if kind == "tabular":
        mean, std = np.asarray(pre["mean"]), np.asarray(pre["std"])
        rows = [
            [round(float(v), 4) for v in mean + k * std * rng.uniform(0.5, 1, size=mean.shape)]
            for k in (0, 1, -1)
        ]
        rows[-1][0] = None
        return rows
    if kind == "series":
        n = int(pre["window"]) + 5
        return [[round(float(pre["mean"]) + float(pre["std"]) * float(np.sin(i / 3.0)), 5) for i in range(n)]]
    vocab = [t for t in pre.get("tokenizer", {}).get("vocab", [])[2:] if t.strip()] or ["text"]
    texts = [" ".join(vocab[(6 * i + j) % len(vocab)] for j in range(6)) for i in range(2)]
    return [*texts, "Zzzunknownzzz " + " ".join(vocab[:3])]


def python_answers(model: OnnxModel, meta: dict[str, Any], stage: Path, instances: list[Any]) -> list[dict]:
    """What `toolkit predict` (the server's V1 :predict) answers for the instances: the page must agree."""
    from toolkit.runtime.predict import feeds_from_instances, predictions_from_outputs

    raw = [
        {"b64": base64.b64encode((stage / x["file"]).read_bytes()).decode()} if isinstance(x, dict) else x
        for x in instances
    ]
    feeds = feeds_from_instances(meta, raw)
    labels = (
        [processing.label_index(meta, x, "sample") for x in raw]
        if processing.input_kind(meta) == "noise"
        else None
    )
    return predictions_from_outputs(meta, model.run(feeds), label_indices=labels)


def write_samples(stage: Path, chosen: Path, meta: dict[str, Any]) -> list[str]:
    instances = sample_instances(stage, meta)
    model = OnnxModel(chosen, providers=["CPUExecutionProvider"])
    results = python_answers(model, meta, stage, instances)
    doc = {"instances": instances, "results": results}
    (stage / packing.SAMPLES / "expected.json").write_text(json.dumps(doc, indent=2) + "\n")
    return sorted(str(p.relative_to(stage)) for p in (stage / packing.SAMPLES).iterdir())


# --------------------------------------------------------------------------------------------- pack
def pack_web(
    model_path: str | Path,
    out: str | Path,
    fmt: str | None = None,
    tar: bool = False,
    force: bool = False,
    webgpu: bool = True,
    ort_web: str | Path | None = None,
) -> dict[str, Any]:
    """Write the browser bundle of `model_path` to `out`; returns the manifest plus what was written.

    `fmt` (default: both with WebGPU, else ort): the ORT format for WebAssembly (its sessions start faster:
    bench/results/web.json) and ONNX for WebGPU (whose NHWC layout rewrite needs the ONNX graph)."""
    t0 = time.perf_counter()
    fmt = fmt or ("both" if webgpu else "ort")
    if fmt not in packing.FORMATS:
        raise ToolkitError(f"unknown --format {fmt!r}; allowed: {', '.join(packing.FORMATS)}")
    if fmt == "ort" and webgpu:
        raise ToolkitError(
            "--format ort runs on WebAssembly only (WebGPU sessions need model.onnx): use --format both, "
            "or --no-webgpu"
        )
    out = Path(out)
    if out.exists() and not force:
        raise ToolkitError(f"{out} already exists; choose another --out or pass --force to replace it")
    source = packing.resolve_model(model_path)
    chosen, variant, why = packing.choose_variant(source)
    meta = read_metadata(chosen)
    dist = ort_web_dist(ort_web, webgpu)
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        files, web = _fill(stage, chosen, meta, fmt, dist, webgpu)
        manifest = {
            "bundle": packing.BUNDLE_SCHEMA,
            "model": {"source": str(source), "file": str(chosen), "variant": variant, "why": why,
                      "task": meta["task"], "role": meta.get("role"), "quantization": meta.get("quantization")},
            "target": "web",
            "format": fmt,
            "requirements": {"onnxruntime-web": ort_web_version()},
            **({"ort_converter": web["ort_converter"]} if web.get("ort_converter") else {}),
            "web": web,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "files": {name: packing.file_entry(stage / name) for name in sorted(files)},
        }  # fmt: skip
        packing.write_manifest(stage, manifest)
        packing.swap_in(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    archive = packing.archive(out, tar)
    size = sum(e["bytes"] for e in manifest["files"].values())
    return {**manifest, "out": str(out), "archive": str(archive) if archive else None, "bytes": size,
            "seconds": round(time.perf_counter() - t0, 2)}  # fmt: skip


def _fill(
    stage: Path, chosen: Path, meta: dict[str, Any], fmt: str, dist: Path, webgpu: bool
) -> tuple[list[str], dict[str, Any]]:
    """Every bundle file into `stage`; returns their names and the manifest's `web` section."""
    files: list[str] = []
    web: dict[str, Any] = {"ort_web": ort_web_version(), "webgpu": webgpu}
    if fmt in ("onnx", "both"):
        shutil.copyfile(chosen, stage / "model.onnx")
        files.append("model.onnx")
    if fmt in ("ort", "both"):
        # Written by the onnxruntime release the page runs (the ORT format is read by the version that wrote
        # it and newer ones): its wheel for this machine is fetched once into the user's cache.
        converter = packing.converter_path(ort_web_version())
        files += packing.convert_to_ort(chosen, stage, "web", converter)
        web["ort_converter"] = ort_web_version()
    web["models"] = {"wasm": "model.onnx" if fmt == "onnx" else "model.ort"}
    if webgpu:
        web["models"]["webgpu"] = "model.onnx"
    (stage / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
    (stage / "ort").mkdir()
    for name in (*WASM_FILES, *(WEBGPU_FILES if webgpu else ())):
        shutil.copyfile(dist / name, stage / "ort" / name)
        files.append(f"ort/{name}")
    for name in PAGE_FILES:
        shutil.copyfile(WEBUI / name, stage / name)
    files += ["model.json", *PAGE_FILES]
    files += write_samples(stage, chosen, meta)
    (stage / "README.md").write_text(web_readme(meta, web))
    return [*files, "README.md"], web


def web_readme(meta: dict[str, Any], web: dict[str, Any]) -> str:
    backends = "WebGPU when the browser offers it, else WebAssembly" if web["webgpu"] else "WebAssembly"
    return f"""# toolkit model in the browser ({meta["task"]}, {meta.get("arch")})

A static folder: the model runs in the page with onnxruntime-web {web["ort_web"]} ({backends}):
{", ".join(f"`{f}` on {b}" for b, f in web["models"].items())}.
Inputs: {processing.describe(meta)}. toolkit-web.mjs applies the same pre- and post-processing as `toolkit predict`.

## Open the page

Serve the folder over HTTP (ES modules and WebAssembly are not loaded from file:// URLs), then open it:

    python3 -m http.server 8080 --bind 127.0.0.1      # http://127.0.0.1:8080/

The page answers the bundled samples and compares them with the answers `toolkit predict` gave at pack time
(samples/expected.json), then takes your own input. Any static host works (nginx, GitHub Pages, S3); serve
`.mjs` as `text/javascript` and `.wasm` as `application/wasm`.

## Embed it in your own page

    <script type="module">
      import {{ loadModel }} from "./toolkit-web.mjs";      // copy this folder beside your page
      const model = await loadModel("./");                 // manifest.json + model.json + the model
      const [result] = await model.predict([input]);       // File/Blob/<img>/<canvas>, row, text, series
      console.log(result);                                 // as `toolkit predict --json` prints it
    </script>

`loadModel(base, {{backend: "auto" | "wasm" | "webgpu", threads: 1}})`; `model.predict(inputs, {{topK}})`;
`model.prepare(inputs)` and `model.run(feeds)` for the two halves; `model.meta` is the metadata document.
"""


# --------------------------------------------------------------------------------------------- verify
def browser_smoke(folder: Path, timeout: float = 120) -> dict[str, str]:
    """The bundle's page in headless Chromium (served on loopback): its self-test answers the samples as
    recorded at pack time. Skipped, with the reason, where no headless browser can start."""
    from concurrent.futures import ThreadPoolExecutor

    from toolkit.runtime.edge import browser

    why = browser.unavailable()
    if why:
        return {"check": "smoke", "status": "skip", "detail": f"not run in a browser: {why}"}

    def run() -> dict[str, Any]:
        with browser.serve_folder(folder) as url, browser.headless_chromium() as chromium:
            return browser.page_ready(chromium.new_page(), url + "index.html?backend=wasm", timeout)

    try:  # a thread of its own: Playwright's sync API allows one instance per thread (a caller may hold one)
        with ThreadPoolExecutor(1) as pool:
            report = pool.submit(run).result()
    except ToolkitError as exc:
        return {"check": "smoke", "status": "fail", "detail": str(exc)}
    test = report["selfTest"]
    detail = f"{test['detail']} (headless Chromium, WebAssembly, ready in {report['coldStartMs']:.0f} ms)"
    return {"check": "smoke", "status": "pass" if test["passed"] else "fail", "detail": detail}
