"""`toolkit edge pack` / `verify`, the bundle runner, and the embedding examples in deploy/examples/.

The runner is run as a device runs it: in its own process, with torch and toolkit unimportable (and, in the
slow test, in a fresh virtual environment holding only the bundle's requirements); its answers must equal
`toolkit predict`'s on the same inputs, for a model of every task.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import venv
from pathlib import Path

import numpy as np
import onnx
import pytest
from helpers import assert_one_line_error
from runs import exported

from toolkit.runtime.edge import bundle, packing
from toolkit.runtime.edge.runner import close
from toolkit.runtime.predict import feeds_from_instances, predict, predictions_from_outputs

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "deploy" / "examples"
TASKS = ["digits", "iris", "regress", "forecast", "anomaly", "text", "gan"]

# Refuse torch and toolkit as a device without them would: the runner must not need either.
BLOCK = (
    "import sys\n"
    "class _Block:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name.split('.')[0] in ('torch', 'toolkit'):\n"
    "            raise ModuleNotFoundError(f'import of {name} halted: blocked', name=name)\n"
    "sys.meta_path.insert(0, _Block())\n"
)


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> dict[str, Path]:
    """A bundle (ONNX format) of a tiny model of every task."""
    root = tmp_path_factory.mktemp("bundles")
    return {name: Path(bundle.pack(exported(tmp_path_factory, name), root / name)["out"]) for name in TASKS}


def _run_runner(folder: Path, args: list[str], python: str = sys.executable) -> subprocess.CompletedProcess:
    code = (
        BLOCK
        + "import runpy; sys.argv = ['runner.py', *sys.argv[1:]]; runpy.run_path('runner.py', run_name='__main__')"
    )
    if python != sys.executable:  # a fresh venv: neither package is installed there at all
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        cmd = [python, "runner.py", *args]
        return subprocess.run(cmd, cwd=folder, capture_output=True, text=True, timeout=120, env=env)
    return subprocess.run(
        [python, "-c", code, *args], cwd=folder, capture_output=True, text=True, timeout=120
    )


def _sample_args(folder: Path) -> tuple[list[str], bool]:
    """The bundle's sample inputs as command-line arguments, and whether the model is a generator."""
    spec = json.loads((folder / "samples" / "expected.json").read_text())
    args = [*spec["inputs"], *spec["labels"]]
    for t in spec["texts"]:
        args += ["--text", t]
    return args, bool(spec["labels"])


def _compare_with_predict(folder: Path, python: str = sys.executable) -> None:
    """The runner's --json answers on the bundle's samples equal toolkit predict's on the same files."""
    args, generator = _sample_args(folder)
    extra = ["--out", "grid.png"] if generator else []
    proc = _run_runner(folder, [*args, "--json", *extra], python)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)["results"]
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        texts = [a for i, a in enumerate(args) if i and args[i - 1] == "--text"]
        files = [a for i, a in enumerate(args) if a != "--text" and not (i and args[i - 1] == "--text")]
        want = predict("model.onnx", files, texts, out="grid-predict.png" if generator else None).results
    finally:
        os.chdir(cwd)
    assert len(got) == len(want) > 0
    for g, w in zip(got, want):
        assert g["input"] == w["input"] and close(g, w), (g, w)


# --------------------------------------------------------------------------------------------- pack / verify
def test_runner_equals_predict_for_every_task_without_torch_or_toolkit(bundles):
    for name, folder in bundles.items():
        _compare_with_predict(folder)
        proc = _run_runner(folder, ["--self-test", "--json"])
        assert proc.returncode == 0 and json.loads(proc.stdout)["passed"], (name, proc.stdout, proc.stderr)


def test_pack_verify_tar_and_a_corrupted_bundle(cli, tmp_path_factory, tmp_path):
    run = exported(tmp_path_factory, "iris")
    out = tmp_path / "iris-bundle"
    result = cli("edge", "pack", run / "model.onnx", "--out", out, "--format", "both", "--tar")
    assert result.exit_code == 0, result.output
    assert "(fp32: no model.int8.onnx beside the model)" in " ".join(result.output.split())
    names = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    expected = {"model.onnx", "model.ort", "model.required_operators.config", "model.json", "runner.py"}
    assert expected | {"requirements.txt", "README.md", "toolkit-model.service", "manifest.json"} <= names
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["files"]) == names - {"manifest.json", "SHA256SUMS"}
    assert "Gemm" in (out / "model.required_operators.config").read_text()
    reqs = (out / "requirements.txt").read_text().split()
    assert reqs[0].startswith("onnxruntime==") and not any(r.startswith("pillow") for r in reqs)
    with tarfile.open(tmp_path / "iris-bundle.tar.gz") as tf:
        assert "iris-bundle/runner.py" in tf.getnames()

    result = cli("edge", "verify", out)
    assert result.exit_code == 0, result.output
    assert "samples answered as expected" in " ".join(result.output.split())
    assert cli("edge", "verify", tmp_path / "iris-bundle.tar.gz").exit_code == 0
    (tmp_path / "cut.tar.gz").write_bytes((tmp_path / "iris-bundle.tar.gz").read_bytes()[:500])
    assert_one_line_error(cli("edge", "verify", tmp_path / "cut.tar.gz"), "cut.tar.gz", "not a readable")
    assert_one_line_error(cli("edge", "pack", run, "--out", out), "already exists", "--force")

    # The ORT-format model is what the runner prefers, and answers like the ONNX one.
    proc = _run_runner(out, ["samples/rows.csv", "--json"])
    assert json.loads(proc.stdout)["model"].endswith("model.ort")

    data = bytearray((out / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (out / "model.onnx").write_bytes(bytes(data))
    (out / "runner.py").unlink()
    result = cli("edge", "verify", out, "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    detail = {c["check"]: c for c in report["checks"]}
    assert detail["files"]["status"] == "fail" and detail["smoke"]["status"] == "skip"
    assert "model.onnx does not match its SHA-256" in detail["files"]["detail"]
    assert "runner.py is missing" in detail["files"]["detail"]
    (out / "manifest.json").unlink()
    assert_one_line_error(cli("edge", "verify", out), "no manifest.json")


def test_smoke_fails_when_the_model_answers_differently(cli, tmp_path_factory, tmp_path):
    """A bundle whose model and manifest were both swapped: hashes match, the recorded answers do not."""
    runs = [exported(tmp_path_factory, "iris"), tmp_path / "other"]
    shutil.copytree(runs[0], runs[1])
    proto = onnx.load(runs[1] / "model.onnx")
    for init in proto.graph.initializer:
        arr = onnx.numpy_helper.to_array(init)
        init.CopyFrom(onnx.numpy_helper.from_array((arr * -1.5).astype(arr.dtype), init.name))
    onnx.save(proto, runs[1] / "model.onnx")
    out = tmp_path / "b"
    bundle.pack(runs[0], out)
    shutil.copyfile(runs[1] / "model.onnx", out / "model.onnx")
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["files"]["model.onnx"] = packing.file_entry(out / "model.onnx")
    (out / "manifest.json").write_text(json.dumps(manifest))
    result = cli("edge", "verify", out)
    assert result.exit_code == 1 and "smoke" in result.output and "FAIL" in result.output


def _with_quantization(
    run: Path, folder: Path, quantization: dict | None, name: str = "model.int8.onnx"
) -> Path:
    """A copy of the run's model with a dynamically quantized variant carrying the `quantization` key."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    folder.mkdir()
    shutil.copyfile(run / "model.onnx", folder / "model.onnx")
    quantize_dynamic(folder / "model.onnx", folder / name, weight_type=QuantType.QInt8)
    proto = onnx.load(folder / name)
    prop = next(p for p in proto.metadata_props if p.key == "toolkit")
    doc = json.loads(prop.value)
    if quantization is not None:
        doc["quantization"] = quantization
    prop.value = json.dumps(doc)
    onnx.save(proto, folder / name)
    return folder / "model.onnx"


def test_pack_takes_the_int8_variant_only_when_it_passed(cli, tmp_path_factory, tmp_path):
    run = exported(tmp_path_factory, "iris")
    gate = {"mode": "dynamic", "passed": True, "metric": "accuracy", "drop": 0.0, "max_drop": 0.01}
    model = _with_quantization(run, tmp_path / "passed", gate)
    result = cli("edge", "pack", model, "--out", tmp_path / "b1", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["model"]["variant"] == "int8" and "passed its accuracy gate" in report["model"]["why"]
    ops = {n.op_type for n in onnx.load(tmp_path / "b1" / "model.onnx").graph.node}
    assert ops & {"MatMulInteger", "DynamicQuantizeLinear", "DynamicQuantizeMatMul"}
    assert json.loads((tmp_path / "b1" / "model.json").read_text())["quantization"]["passed"] is True
    assert cli("edge", "verify", tmp_path / "b1").exit_code == 0

    failed = {**gate, "passed": False, "drop": 0.2}
    model = _with_quantization(run, tmp_path / "failed", failed)
    report = json.loads(cli("edge", "pack", model, "--out", tmp_path / "b2", "--json").stdout)
    assert report["model"]["variant"] == "fp32" and "did not pass" in report["model"]["why"]

    model = _with_quantization(run, tmp_path / "fp16", {**gate, "mode": "fp16"}, "model.fp16.onnx")
    report = json.loads(cli("edge", "pack", model, "--out", tmp_path / "b3", "--json").stdout)
    assert report["model"]["variant"] == "fp32"


def test_arm64_pins_are_checked(cli, tmp_path_factory, tmp_path):
    run = exported(tmp_path_factory, "iris")
    result = cli(
        "edge", "pack", run, "--out", tmp_path / "bad", "--target", "arm64", "--ort-version", "0.0.1"
    )
    if "could not check" in result.output:
        pytest.skip("the package index is not reachable for pip download")
    assert_one_line_error(result, "onnxruntime==0.0.1", "aarch64")
    assert not (tmp_path / "bad").exists()
    result = cli("edge", "pack", run, "--out", tmp_path / "arm", "--target", "arm64", "--format", "ort")
    assert result.exit_code == 0, result.output
    reqs = (tmp_path / "arm" / "requirements.txt").read_text()
    assert f"onnxruntime=={bundle.DEFAULT_ARM64_ORT}" in reqs
    assert json.loads((tmp_path / "arm" / "manifest.json").read_text())["target"] == "arm64"
    assert_one_line_error(
        cli("edge", "pack", run, "--out", tmp_path / "x", "--target", "riscv"), "x86_64, arm64"
    )


def test_runner_serves_kserve_v1(bundles):
    folder = bundles["iris"]
    proc = subprocess.Popen(
        [sys.executable, "runner.py", "--serve", "127.0.0.1:0"], cwd=folder, stdout=subprocess.PIPE, text=True
    )
    try:
        url = proc.stdout.readline().split(" on ")[1].strip()
        import urllib.error
        import urllib.request

        rows = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
        req = urllib.request.Request(
            url + "/v1/models/model:predict", json.dumps({"instances": rows}).encode()
        )
        got = json.loads(urllib.request.urlopen(req, timeout=30).read())["predictions"]
        meta = json.loads((folder / "model.json").read_text())
        from toolkit.runtime.model import OnnxModel

        model = OnnxModel(folder / "model.onnx")
        want = predictions_from_outputs(meta, model.run(feeds_from_instances(meta, rows)))
        assert close(got, want)
        bad = urllib.request.Request(
            url + "/v1/models/model:predict", json.dumps({"instances": [[1, 2]]}).encode()
        )
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(bad, timeout=30)
        assert err.value.code == 400 and "instance 0 has 2 values" in err.value.read().decode()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.slow
def test_fresh_venv_with_only_the_bundle_requirements(bundles, tmp_path):
    """A new virtual environment with requirements.txt alone (no torch, no toolkit; pip's cache reused):
    the runner answers every task's samples as toolkit predict does, and `edge verify --python` passes."""
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = str(env_dir / "bin" / "python")
    reqs = sorted({line for b in bundles.values() for line in (b / "requirements.txt").read_text().split()})
    proc = subprocess.run(
        [python, "-m", "pip", "install", "-q", *reqs], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    check = subprocess.run(
        [python, "-c", "import importlib.util as u; print(u.find_spec('torch'), u.find_spec('toolkit'))"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert check.stdout.split() == ["None", "None"]
    for folder in bundles.values():
        _compare_with_predict(folder, python)
        report = bundle.verify(folder, python)
        assert report["passed"], report


# --------------------------------------------------------------------------------------------- examples
def test_python_example_equals_predict(tmp_path_factory, tmp_path):
    example = EXAMPLES / "python" / "predict.py"
    run = exported(tmp_path_factory, "iris")
    rows = tmp_path / "rows.csv"
    rows.write_text(
        "sepal length (cm),sepal width (cm),petal length (cm),petal width (cm)\n5.1,3.5,1.4,0.2\n6.3,2.5,5.0,1.9\n"
    )
    text_run = exported(tmp_path_factory, "text")
    texts = ["the cat purr", "a dog barks woof"]
    for model, args, inputs in [
        (run / "model.onnx", [str(rows)], {"inputs": [str(rows)]}),
        (text_run / "model.onnx", [a for t in texts for a in ("--text", t)], {"inputs": [], "texts": texts}),
        (
            text_run / "model.text.onnx",
            [a for t in texts for a in ("--text", t)],
            {"inputs": [], "texts": texts},
        ),
    ]:
        code = (
            BLOCK + "import runpy; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
        )
        proc = subprocess.run(
            [sys.executable, "-c", code, str(example), str(model), *args, "--json"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        got = json.loads(proc.stdout)["results"]
        want = predict(model, inputs["inputs"], texts=inputs.get("texts")).results
        assert [(g["label"], round(g["probability"], 5)) for g in got] == [
            (w["label"], round(w["probability"], 5)) for w in want
        ]


def _node_modules() -> Path:
    """onnxruntime-node installed once into the user's cache (npm install --ignore-scripts: CPU binaries)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "toolkit" / "node-example"
    package = (EXAMPLES / "node" / "package.json").read_text()
    if (
        not (base / "node_modules" / "onnxruntime-node").is_dir()
        or (base / "package.json").read_text() != package
    ):
        base.mkdir(parents=True, exist_ok=True)
        (base / "package.json").write_text(package)
        proc = subprocess.run(
            ["npm", "install", "--ignore-scripts", "--no-audit", "--no-fund"],
            cwd=base,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
    return base / "node_modules"


def test_node_example_equals_predict(tmp_path_factory, tmp_path):
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node/npm are not installed: the Node.js embedding example cannot run here")
    from PIL import Image
    from sklearn.datasets import load_digits

    env = {**os.environ, "NODE_PATH": str(_node_modules())}
    digits = load_digits()
    pngs = []
    for i in range(5):
        pngs.append(str(tmp_path / f"{i}.png"))
        Image.fromarray((digits.images[i] * 255 / 16).astype(np.uint8)).save(pngs[-1])
    rows = tmp_path / "rows.csv"
    rows.write_text("5.1,3.5,1.4,0.2\n6.3,2.5,5.0,1.9\n7.7,2.6,6.9,2.3\n")
    texts = ["the cat purr", "a dog barks woof", "MEOW meow"]
    cases = [
        (exported(tmp_path_factory, "digits") / "model.onnx", pngs, [], pngs),
        (exported(tmp_path_factory, "iris") / "model.onnx", [str(rows)], [], [str(rows)]),
        (
            exported(tmp_path_factory, "text") / "model.onnx",
            [a for t in texts for a in ("--text", t)],
            texts,
            [],
        ),
    ]
    for model, args, texts_in, files in cases:
        proc = subprocess.run(
            ["node", str(EXAMPLES / "node" / "predict.js"), str(model), *args, "--json"],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        assert proc.returncode == 0, proc.stderr
        got = json.loads(proc.stdout)["results"]
        want = predict(model, files, texts=texts_in).results
        assert [g["label"] for g in got] == [w["label"] for w in want]
        assert [g["probability"] for g in got] == pytest.approx([w["probability"] for w in want], abs=1e-5)
