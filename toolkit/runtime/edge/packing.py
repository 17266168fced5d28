"""What every bundle target shares (a device folder, a web page): the model file and variant shipped, its
ORT-format conversion, the manifest's file entries, the staging folder swapped into place, the user's cache.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from toolkit.errors import ToolkitError
from toolkit.runtime.model import read_metadata

BUNDLE_SCHEMA = "toolkit.edge/1"
FORMATS = ("onnx", "ort", "both")
SAMPLES = "samples"


def resolve_model(path: str | Path) -> Path:
    """A model file, or a run directory holding model.onnx."""
    path = Path(path)
    if path.is_dir():
        if not (path / "model.onnx").is_file():
            raise ToolkitError(f"{path} is a directory without model.onnx; give the exported .onnx file")
        return path / "model.onnx"
    if not path.exists():
        raise ToolkitError(f"model not found: {path}")
    return path


def choose_variant(model: Path) -> tuple[Path, str, str]:
    """The file to ship: NAME.int8.onnx beside NAME.onnx when its quantization gate passed, else NAME.onnx.
    An fp16 variant is never chosen (it is for GPUs; CPUs run it slower than fp32)."""
    stem = model.name.removesuffix(".onnx")
    if ".int8" in stem or ".fp16" in stem:  # a variant named on purpose is shipped as given
        return model, stem.rsplit(".", 1)[-1], "the variant given on the command line"
    int8 = model.with_name(f"{stem}.int8.onnx")
    if not int8.is_file():
        return model, "fp32", f"no {int8.name} beside the model"
    try:
        q = read_metadata(int8).get("quantization") or {}
    except ToolkitError as exc:
        return model, "fp32", f"{int8.name} is unreadable ({exc})"
    if q.get("mode") not in ("static", "dynamic"):
        return model, "fp32", f"{int8.name} records no int8 quantization"
    if q.get("passed") is not True:
        drop = q.get("drop")
        shown = (
            f" ({q.get('metric')} drop {drop:.4g} > {q.get('max_drop')})" if isinstance(drop, float) else ""
        )
        return model, "fp32", f"{int8.name} did not pass its accuracy gate{shown}"
    detail = f"{q['mode']} int8"
    if isinstance(q.get("drop"), (int, float)):
        detail += f", {q.get('metric')} drop {q['drop']:.4g} within {q.get('max_drop')}"
    return int8, "int8", f"{int8.name} passed its accuracy gate ({detail})"


def cache_dir() -> Path:
    """The user's cache for bundles (wheel checks, onnxruntime converters): $XDG_CACHE_HOME/toolkit/edge."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "toolkit" / "edge"


def converter_path(version: str) -> str | None:
    """A folder holding onnxruntime `version` for this machine, to put first on PYTHONPATH when converting
    to the ORT format; None when this interpreter's onnxruntime is that version.

    The ORT format is read by the onnxruntime that wrote it and newer ones, not always by older ones (the
    format and the fused kernels the optimizer writes change between releases), so the ORT-format model in a
    bundle is written by the onnxruntime version the bundle pins. That version's wheel for this machine is
    fetched once with pip (binary only, no dependencies: this environment has them) and unzipped into the
    user's cache."""
    import onnxruntime

    if version == onnxruntime.__version__:
        return None
    import sysconfig
    import zipfile

    folder = (
        cache_dir()
        / f"onnxruntime-{version}-{sysconfig.get_platform()}-cp{sys.version_info[0]}{sys.version_info[1]}"
    )
    if (folder / ".complete").is_file():
        return str(folder)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--no-deps", "--quiet",
            "-d", tmp, f"onnxruntime=={version}",
        ]  # fmt: skip
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            proc = None
        wheels = list(Path(tmp).glob("onnxruntime-*.whl"))
        if proc is None or proc.returncode != 0 or len(wheels) != 1:
            lines = [x for x in (proc.stderr if proc else "timed out").splitlines() if x.strip()] or ["?"]
            raise ToolkitError(
                f"cannot fetch onnxruntime=={version} for this machine to write the ORT-format model that "
                f"version reads ({lines[-1][:160]}); use --format onnx, or --no-check to convert with "
                f"onnxruntime {onnxruntime.__version__}"
            )
        stage = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=cache_dir()))
        with zipfile.ZipFile(wheels[0]) as zf:
            zf.extractall(stage)
        (stage / ".complete").write_text(wheels[0].name + "\n")
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(stage, folder)
    return str(folder)


def convert_to_ort(chosen: Path, stage: Path, target: str, converter: str | None = None) -> list[str]:
    """onnxruntime's converter (Fixed optimizations, hardware-neutral: no x86-only NCHWc layout) ->
    model.ort and model.required_operators.config (for a reduced-size onnxruntime build). `converter`: a
    folder holding another onnxruntime version to convert with (see converter_path)."""
    env = None
    if converter:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [converter, os.environ.get("PYTHONPATH")])),
        }
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "model.onnx"
        shutil.copyfile(chosen, src)
        cmd = [
            sys.executable, "-m", "onnxruntime.tools.convert_onnx_models_to_ort", str(src),
            "--output_dir", str(Path(tmp) / "out"), "--optimization_style", "Fixed",
        ]  # fmt: skip
        if target == "arm64":
            cmd += ["--target_platform", "arm"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
        made = Path(tmp) / "out" / "model.ort"
        if proc.returncode != 0 or not made.is_file():
            lines = [x for x in (proc.stderr or proc.stdout).splitlines() if x.strip()]
            raise ToolkitError(f"onnxruntime's ORT-format converter failed: {(lines or ['?'])[-1][:300]}")
        load = [
            sys.executable, "-c",
            "import sys, onnxruntime as o; o.InferenceSession(sys.argv[1], providers=['CPUExecutionProvider'])",
            str(made),
        ]  # fmt: skip
        proc = subprocess.run(load, capture_output=True, text=True, timeout=300, env=env)
        if proc.returncode != 0:  # the version that wrote it must read it, as the device will
            lines = [x for x in proc.stderr.splitlines() if x.strip()] or ["?"]
            raise ToolkitError(f"the ORT-format model does not load in its onnxruntime: {lines[-1][:300]}")
        shutil.copyfile(made, stage / "model.ort")
        config = Path(tmp) / "out" / "model.required_operators.config"
        text = config.read_text() if config.is_file() else ""
        # The converter writes its temporary path into the config's header comment: keep it reproducible.
        text = "".join(
            "# - model.ort\n" if line.startswith("# - ") else line for line in text.splitlines(keepends=True)
        )
        (stage / "model.required_operators.config").write_text(text)
    return ["model.ort", "model.required_operators.config"]


def file_entry(path: Path) -> dict[str, Any]:
    """A manifest entry: the file's SHA-256 and size."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return {"sha256": h.hexdigest(), "bytes": path.stat().st_size}


def swap_in(stage: Path, out: Path) -> None:
    """Move the finished stage onto `out` (replacing an old bundle only once the new one is complete)."""
    os.chmod(stage, 0o755)
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
        os.replace(stage, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(stage, out)


def write_manifest(stage: Path, manifest: dict[str, Any]) -> None:
    """manifest.json and SHA256SUMS (`sha256sum -c` on the device) into a bundle's staging folder."""
    import json

    (stage / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    sums = "".join(f"{e['sha256']}  {n}\n" for n, e in manifest["files"].items())
    (stage / "SHA256SUMS").write_text(sums)


def archive(out: Path, tar: bool) -> Path | None:
    """OUT.tar.gz beside a bundle folder (written atomically) when `tar`; None otherwise."""
    if not tar:
        return None
    import tarfile

    from toolkit.io import atomic_path

    path = out.with_name(out.name + ".tar.gz")
    with atomic_path(path) as tmp, tarfile.open(tmp, "w:gz") as tf:
        tf.add(out, arcname=out.name)
    return path
