"""`toolkit edge pack` and `toolkit edge verify`: a self-contained folder to copy onto a device.

A bundle holds the model (the INT8 variant when one passed its accuracy gate; ORT format on request, with the
required_operators config for a reduced onnxruntime build), model.json, runner.py and processing.py (the
runner and the pre/post-processing it shares with `toolkit predict`: onnxruntime + numpy, Pillow for images), requirements.txt pinned for the target, a README and a systemd unit
for the device, sample inputs with the answers `toolkit predict` gave them (samples/expected.json) and a
SHA-256 manifest (manifest.json, and SHA256SUMS for `sha256sum -c` on the device).

`verify` re-hashes every file against the manifest and runs the runner's self-test (the samples answered as
recorded), so a corrupted or edited bundle fails before it reaches a device. The bundle is written to a
temporary folder beside DIR and renamed into place: an interrupted pack leaves nothing half-written.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.errors import ToolkitError, one_line
from toolkit.runtime import processing, signature
from toolkit.runtime.edge import runner
from toolkit.runtime.edge.packing import (
    BUNDLE_SCHEMA,
    FORMATS,
    SAMPLES,
    cache_dir,
    choose_variant,
    convert_to_ort,
    converter_path,
    file_entry,
    resolve_model,
    swap_in,
    write_manifest,
)
from toolkit.runtime.edge.packing import archive as packing_archive
from toolkit.runtime.model import OnnxModel, read_metadata

TARGETS = {"x86_64": "manylinux_2_28_x86_64", "arm64": "manylinux_2_28_aarch64"}
# onnxruntime for arm64 devices: a release with manylinux aarch64 wheels that also runs under the qemu
# user-mode emulation used to test arm64 bundles (1.20-1.26 do; override with --ort-version).
DEFAULT_ARM64_ORT = "1.22.1"
DEVICE_PYTHON = "3.11"  # the CPython the arm64 pins are checked for
SERVICE = "toolkit-model.service"


# --------------------------------------------------------------------------------------------- pack
def pack(
    model_path: str | Path,
    out: str | Path,
    target: str = "x86_64",
    fmt: str | None = None,
    tar: bool = False,
    ort_version: str | None = None,
    force: bool = False,
    check_pins: bool = True,
    webgpu: bool = True,
    ort_web: str | Path | None = None,
    sign_key: str | Path | None = None,
) -> dict[str, Any]:
    """Write the bundle for `model_path` to `out`; returns what was written (the manifest, plus notes).
    `fmt` defaults to onnx. `target="web"`: a static folder that runs the model in a web page
    (toolkit.runtime.edge.web; `webgpu` and `ort_web` are its options, and its own `fmt` default).
    `sign_key`: an EC private key (PEM) that signs the bundle (bundle.sig over manifest.json and its files)."""
    t0 = time.perf_counter()
    if target == "web" and sign_key:
        raise ToolkitError(
            "--sign-key signs device bundles; a web page cannot check signatures (sign the model)"
        )
    if sign_key:
        from toolkit.runtime.trust import check_signing_key

        check_signing_key(sign_key)  # before the bundle is built, not after
    if target == "web":
        from toolkit.runtime.edge.web import pack_web

        return pack_web(model_path, out, fmt, tar, force, webgpu, ort_web)
    fmt = fmt or "onnx"
    if target not in TARGETS:
        raise ToolkitError(f"unknown --target {target!r}; allowed: {', '.join(TARGETS)}, web")
    if fmt not in FORMATS:
        raise ToolkitError(f"unknown --format {fmt!r}; allowed: {', '.join(FORMATS)}")
    out = Path(out)
    if out.exists() and not force:
        raise ToolkitError(f"{out} already exists; choose another --out or pass --force to replace it")
    source = resolve_model(model_path)
    chosen, variant, why = choose_variant(source)
    meta = read_metadata(chosen)
    pins = requirements(meta, target, ort_version)
    if check_pins and (target == "arm64" or ort_version):
        check_wheels(pins, target)

    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        files, converter = _fill(stage, chosen, meta, target, fmt, pins, check_pins)
        manifest = {
            "bundle": BUNDLE_SCHEMA,
            "model": {
                "source": str(source),
                "file": str(chosen),
                "variant": variant,
                "why": why,
                "task": meta["task"],
                "role": meta.get("role"),
                "quantization": meta.get("quantization"),
            },
            "target": target,
            "format": fmt,
            "python": DEVICE_PYTHON if target == "arm64" else ".".join(map(str, sys.version_info[:2])),
            "requirements": pins,
            **({"ort_converter": converter} if converter else {}),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "files": {name: file_entry(stage / name) for name in sorted(files)},
        }
        write_manifest(stage, manifest)
        if sign_key:
            _sign_stage(stage, sign_key)
        swap_in(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    archive = packing_archive(out, tar)
    size = sum(e["bytes"] for e in manifest["files"].values())
    return {
        **manifest,
        "out": str(out),
        "archive": str(archive) if archive else None,
        "bytes": size,
        "seconds": round(time.perf_counter() - t0, 2),
    }


def requirements(meta: dict[str, Any], target: str, ort_version: str | None) -> dict[str, str]:
    """Pinned versions: this machine's for x86_64; for arm64 onnxruntime DEFAULT_ARM64_ORT (or the override)
    with this machine's numpy and Pillow. Pillow only for models that read or write images."""
    import numpy
    import onnxruntime

    if target == "arm64":
        ort = ort_version or DEFAULT_ARM64_ORT
    else:
        ort = ort_version or onnxruntime.__version__
    pins = {"onnxruntime": ort, "numpy": numpy.__version__}
    if needs_pillow(meta):
        import PIL

        pins["pillow"] = PIL.__version__
    return pins


def needs_pillow(meta: dict[str, Any]) -> bool:
    return processing.image_geometry(meta) is not None or meta["task"] == "generate"


def check_wheels(pins: dict[str, str], target: str) -> None:
    """Every pin has a wheel for the target on the package index (pip download, binary only); checks that
    passed are remembered in the user's cache so a second pack is fast. A wrong pin is a ToolkitError."""
    platform = TARGETS[target]
    cache_file = cache_dir() / "wheel-checks.json"
    try:
        known = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        known = {}
    todo = {p: v for p, v in pins.items() if known.get(_key(p, v, platform)) is not True}
    if not todo:
        return
    ok = _pip_download(todo, platform)
    if ok is not True:  # name the pin that has no wheel
        for pkg, ver in todo.items():
            single = _pip_download({pkg: ver}, platform)
            if single is not True:
                raise ToolkitError(
                    f"{pkg}=={ver} has no wheel for {platform} / CPython {DEVICE_PYTHON} "
                    f"({single}); pin another version (--ort-version for onnxruntime)"
                )
    known.update({_key(p, v, platform): True for p, v in todo.items()})
    try:
        from toolkit.io import write_json

        write_json(cache_file, known)
    except OSError:
        pass  # a read-only home: the check simply runs again next time


def _pip_download(pins: dict[str, str], platform: str) -> bool | str:
    dest = cache_dir() / "wheels"
    cmd = [
        sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--platform", platform,
        "--python-version", DEVICE_PYTHON, "--implementation", "cp", "--no-deps", "--quiet",
        "-d", str(dest), *(f"{p}=={v}" for p, v in pins.items()),
    ]  # fmt: skip
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        raise ToolkitError("pip download timed out checking the pinned wheels; pass --no-check") from None
    if proc.returncode == 0:
        return True
    err = proc.stderr
    if "No matching distribution" in err or "Could not find a version" in err:
        return "no matching distribution"
    lines = [line for line in err.splitlines() if line.strip()]
    raise ToolkitError(
        f"pip download could not check the pinned wheels ({(lines[-1] if lines else 'no output')[:200]}); "
        "pass --no-check to pack without the check"
    )


def _key(pkg: str, ver: str, platform: str) -> str:
    return f"{pkg}=={ver} {platform} cp{DEVICE_PYTHON.replace('.', '')}"


def _fill(
    stage: Path,
    chosen: Path,
    meta: dict[str, Any],
    target: str,
    fmt: str,
    pins: dict[str, str],
    check_pins: bool = True,
) -> tuple[list[str], str | None]:
    """Write every bundle file into `stage`; returns their names relative to it, and the onnxruntime
    version that wrote the ORT-format model (None without one)."""
    files = []
    converter = None
    if fmt in ("onnx", "both"):
        shutil.copyfile(chosen, stage / "model.onnx")
        files.append("model.onnx")
    if fmt in ("ort", "both"):
        converter = pins["onnxruntime"] if check_pins else None
        path = converter_path(converter) if converter else None
        files += convert_to_ort(chosen, stage, target, path)
        if converter is None:
            import onnxruntime

            converter = onnxruntime.__version__
    (stage / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
    shutil.copyfile(runner.__file__, stage / "runner.py")  # the device program
    shutil.copyfile(processing.__file__, stage / "processing.py")  # the pre/post-processing it imports
    shutil.copyfile(signature.__file__, stage / "signature.py")  # runner.py --verify-key
    (stage / "requirements.txt").write_text("".join(f"{p}=={v}\n" for p, v in pins.items()))
    files += ["model.json", "runner.py", "processing.py", "signature.py", "requirements.txt"]
    files += ship_explain(stage)
    files += write_samples(stage, chosen, meta)
    model_file = "model.ort" if fmt != "onnx" else "model.onnx"
    (stage / SERVICE).write_text(service_unit(meta))
    (stage / "README.md").write_text(device_readme(meta, target, fmt, pins, model_file))
    return [*files, SERVICE, "README.md"], converter


def _sign_stage(stage: Path, key: str | Path) -> None:
    try:
        runner.sign_path(str(stage), str(key))
    except runner.InputError as exc:
        raise ToolkitError(str(exc)) from None


def ship_explain(stage: Path) -> list[str]:
    """The torch-free explain package beside runner.py as explain/ (`runner.py explain ...`)."""
    from toolkit.runtime import explain

    source, target = Path(explain.__file__).parent, stage / "explain"
    target.mkdir()
    for name in explain.PORTABLE:
        shutil.copyfile(source / name, target / name)
    return [f"explain/{name}" for name in explain.PORTABLE]


# --------------------------------------------------------------------------------------------- samples
def sample_inputs(stage: Path, meta: dict[str, Any]) -> dict[str, list]:
    """Small deterministic inputs of the model's kind, made from its metadata alone (no training data):
    images, feature rows around the training mean, a series, texts of vocabulary words, labels."""
    rng = np.random.default_rng(0)
    folder = stage / SAMPLES
    folder.mkdir()
    kind = processing.input_kind(meta)
    pre = processing.preprocessing(meta)
    geom = processing.image_geometry(meta)
    if kind == "noise":
        return {"inputs": [], "texts": [], "labels": list((meta.get("labels") or ["0"])[:3])}
    if geom is not None:
        from PIL import Image

        c, h, w = geom
        names = []
        for i in range(3):
            pixels = (rng.random((h, w, c)) * 255).astype(np.uint8)
            img = Image.fromarray(pixels[..., 0] if c == 1 else pixels)
            names.append(f"{SAMPLES}/image_{i}.png")
            img.save(stage / names[-1])
        return {"inputs": names, "texts": [], "labels": []}
    if kind == "tabular":
        import csv

        if processing.table_columns(meta):  # raw rows: numbers, trained levels and a missing value
            with open(folder / "rows.csv", "w", newline="") as f:
                writer = csv.DictWriter(f, processing.feature_names(meta))
                writer.writeheader()
                writer.writerows(processing.example_rows(meta))
            return {"inputs": [f"{SAMPLES}/rows.csv"], "texts": [], "labels": []}
        mean, std = np.asarray(pre["mean"]), np.asarray(pre["std"])
        with open(folder / "rows.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(processing.feature_names(meta))
            for k in (0.0, 1.0, -1.0):
                writer.writerow([f"{v:.6g}" for v in mean + k * std * rng.uniform(0.5, 1, size=mean.shape)])
        return {"inputs": [f"{SAMPLES}/rows.csv"], "texts": [], "labels": []}
    if kind == "series":
        n = int(pre["window"]) + 5
        values = float(pre["mean"]) + float(pre["std"]) * np.sin(np.arange(n) / 3.0)
        name = pre.get("series_name") or "value"
        lines = [name, *(f"{v:.6g}" for v in values)]
        (folder / "series.csv").write_text("\n".join(lines) + "\n")
        return {"inputs": [f"{SAMPLES}/series.csv"], "texts": [], "labels": []}
    vocab = [t for t in pre["tokenizer"]["vocab"][2:] if t.strip()] or ["text"]
    texts = [" ".join(vocab[(6 * i + j) % len(vocab)] for j in range(6)) for i in range(3)]
    texts.append("zzzunknownzzz " + " ".join(vocab[:3]))
    (folder / "texts.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    return {"inputs": [f"{SAMPLES}/texts.txt"], "texts": [], "labels": []}


def write_samples(stage: Path, chosen: Path, meta: dict[str, Any]) -> list[str]:
    """samples/: the inputs and samples/expected.json, the answers `toolkit predict` gives them (CPU)."""
    spec = sample_inputs(stage, meta)
    model = OnnxModel(chosen, providers=["CPUExecutionProvider"])
    cwd = os.getcwd()
    os.chdir(stage)  # names in the results are relative to the bundle, as the runner sees them there
    try:
        items = processing.read_inputs(meta, [*spec["inputs"], *spec["labels"]], spec["texts"])
        bad = [str(row) for _, row in items if isinstance(row, processing.InputError)]
        if bad:
            raise ToolkitError(f"cannot make sample inputs for this model: {bad[0]}")
        results = processing.run_items(model.run, meta, items, seed=0)
    finally:
        os.chdir(cwd)
    doc = {**spec, "seed": 0, "results": results}
    (stage / SAMPLES / "expected.json").write_text(json.dumps(doc, indent=2) + "\n")
    return sorted(str(p.relative_to(stage)) for p in (stage / SAMPLES).iterdir())


# --------------------------------------------------------------------------------------------- device docs
def service_unit(meta: dict[str, Any]) -> str:
    return f"""[Unit]
Description=toolkit model ({meta["task"]}, {meta.get("arch")}): KServe V1 predict over HTTP
After=network-online.target

[Service]
WorkingDirectory=/opt/toolkit-model
ExecStart=/opt/toolkit-model/venv/bin/python /opt/toolkit-model/runner.py --serve 127.0.0.1:8080
Restart=on-failure
DynamicUser=yes
MemoryMax=256M
Environment=OMP_NUM_THREADS=1

[Install]
WantedBy=multi-user.target
"""


def device_readme(meta: dict[str, Any], target: str, fmt: str, pins: dict[str, str], model_file: str) -> str:
    kind = processing.input_kind(meta)
    example = {
        "image": "samples/image_0.png",
        "tabular": "samples/rows.csv",
        "series": "samples/series.csv",
        "tokens": "samples/texts.txt",
        "text": "samples/texts.txt",
        "noise": f"{(meta.get('labels') or ['0'])[0]} --out grid.png",
    }[kind]
    if processing.image_geometry(meta) is not None:
        example = "samples/image_0.png"
    pin_list = ", ".join(f"{p} {v}" for p, v in pins.items())
    explain = ""  # `runner.py explain` (the explain/ package): not for generators, whose input is noise
    if meta["task"] != "generate":
        method = " --method occlusion" if example == "samples/rows.csv" else ""  # KernelSHAP needs shap
        explain = f"    venv/bin/python runner.py explain {example}{method} --out explain.png    # why\n"
    return f"""# toolkit model bundle ({meta["task"]}, {meta.get("arch")}, {target})

Runs `{model_file}` with onnxruntime and numpy only{" (Pillow for images)" if "pillow" in pins else ""}; pins: {pin_list}.
Inputs: {processing.describe(meta)}. `runner.py` (with `processing.py`) does the same pre- and post-processing as `toolkit predict`.

## Install

    sudo apt-get install -y python3-venv     # Debian / Raspberry Pi OS, when venv is missing
    sudo mkdir -p /opt/toolkit-model && sudo cp -r . /opt/toolkit-model && cd /opt/toolkit-model
    sha256sum -c SHA256SUMS              # every file as packed
    sudo python3 -m venv venv && sudo venv/bin/pip install -r requirements.txt   # /opt is root's
    venv/bin/python runner.py --self-test    # the samples answered as recorded at pack time

## Run

    venv/bin/python runner.py {example}
    venv/bin/python runner.py {example} --json --keep-going
{explain}    venv/bin/python runner.py --help

The session is set up for small devices: 1 intra-op thread (--threads N for more), no memory arena,
ORT-format model bytes read in place. A bad input is one line naming it, exit code 2.

## Run as a service

    sudo cp {SERVICE} /etc/systemd/system/
    sudo systemctl daemon-reload && sudo systemctl enable --now {SERVICE.removesuffix(".service")}
    journalctl -u {SERVICE.removesuffix(".service")} -n 20     # its log; systemctl status for its state
    curl -s localhost:8080/v1/models/model:predict -d '{{"instances": [...]}}'

Instances: a list of numbers (feature row, series, pixels), a string (text), {{"b64": "<PNG/JPEG base64>"}}.
{"The ORT-format model was converted with onnxruntime's converter; model.required_operators.config lists its operators for a reduced-size onnxruntime build (build.sh --minimal_build --include_ops_by_config)." if fmt != "onnx" else ""}
"""


# --------------------------------------------------------------------------------------------- verify
def verify(
    bundle: str | Path, python: str | None = None, timeout: float = 120, key: str | Path | None = None
) -> dict[str, Any]:
    """Check every file against the manifest (and, given the public `key`, the bundle's signature), then run
    the runner's self-test with `python` (default this interpreter). A .tar.gz bundle is unpacked into a
    temporary folder first."""
    bundle = Path(bundle)
    if bundle.is_file() and bundle.name.endswith((".tar.gz", ".tgz")):
        with tempfile.TemporaryDirectory() as tmp:
            try:
                with tarfile.open(bundle) as tf:
                    tf.extractall(tmp, filter="data")
            except (tarfile.TarError, OSError, EOFError) as exc:
                raise ToolkitError(f"{bundle} is not a readable .tar.gz ({one_line(exc)})") from None
            entries = list(Path(tmp).iterdir())
            top = entries[0] if len(entries) == 1 and entries[0].is_dir() else Path(tmp)
            report = verify(top, python, timeout, key)
        return {**report, "bundle": str(bundle)}
    if not bundle.is_dir():
        raise ToolkitError(f"bundle not found: {bundle} (a folder written by `toolkit edge pack`)")
    manifest_path = bundle / "manifest.json"
    if not manifest_path.is_file():
        raise ToolkitError(
            f"{bundle} has no manifest.json: it is not a bundle written by `toolkit edge pack`"
        )
    checks: list[dict[str, str]] = []
    try:
        manifest = json.loads(manifest_path.read_text())
        files = manifest["files"]
        assert manifest.get("bundle") == BUNDLE_SCHEMA and isinstance(files, dict)
    except (ValueError, KeyError, AssertionError, TypeError):
        checks.append({"check": "manifest", "status": "fail", "detail": "manifest.json is damaged"})
        return {"bundle": str(bundle), "passed": False, "checks": checks}
    checks.append({"check": "manifest", "status": "pass", "detail": f"{len(files)} files listed"})
    if key:
        checks.append(_signature_check(bundle, key))
    problems = []
    for name, entry in files.items():
        path = bundle / name
        if not path.is_file():
            problems.append(f"{name} is missing")
        elif file_entry(path)["sha256"] != entry.get("sha256"):
            problems.append(f"{name} does not match its SHA-256 (corrupted or modified)")
    if problems:
        more = f" (and {len(problems) - 2} more)" if len(problems) > 2 else ""
        checks.append({"check": "files", "status": "fail", "detail": "; ".join(problems[:2]) + more})
        checks.append(
            {"check": "smoke", "status": "skip", "detail": "not run: files differ from the manifest"}
        )
    else:
        checks.append({"check": "files", "status": "pass", "detail": f"{len(files)} SHA-256 sums match"})
        if manifest.get("target") == "web":  # the page's self-test in headless Chromium
            from toolkit.runtime.edge.web import browser_smoke

            checks.append(browser_smoke(bundle, timeout))
        else:
            checks.append(_smoke(bundle, python or sys.executable, timeout))
    return {
        "bundle": str(bundle),
        "passed": all(c["status"] != "fail" for c in checks),
        "target": manifest.get("target"),
        "model": manifest.get("model"),
        "checks": checks,
    }


def _signature_check(bundle: Path, key: str | Path) -> dict[str, str]:
    try:
        sig = runner.verify_path(str(bundle), str(key))
    except runner.InputError as exc:
        return {"check": "signature", "status": "fail", "detail": str(exc)}
    return {
        "check": "signature",
        "status": "pass",
        "detail": f"{Path(sig).name} verifies with {Path(key).name}",
    }


def _smoke(bundle: Path, python: str, timeout: float) -> dict[str, str]:
    """The shipped runner.py, in its own process as on the device: the samples answered as recorded."""
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            [python, "runner.py", "--self-test", "--json"],
            cwd=bundle,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"check": "smoke", "status": "fail", "detail": f"the runner did not finish: {one_line(exc)}"}
    seconds = time.perf_counter() - t0
    try:
        result = json.loads(proc.stdout)
    except ValueError:
        tail = [x for x in proc.stderr.splitlines() if x.strip()] or ["no output"]
        return {"check": "smoke", "status": "fail", "detail": f"the runner failed: {tail[-1][:300]}"}
    status = "pass" if result.get("passed") else "fail"
    return {"check": "smoke", "status": status, "detail": f"{result.get('detail')} ({seconds:.2f} s)"}
