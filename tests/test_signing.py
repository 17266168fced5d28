"""Signed models (OpenSSF model-signing, EC keys made here): `toolkit sign` / `verify` over the model file, its
external data and its sidecar; export and quantize sign in the same step; `toolkit serve --verify-key` loads
only models whose signature verifies (the previous version keeps serving on reload); bundles and the edge
runner verify too. Tampered, unsigned and foreign-signed models are refused with one line naming why."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from helpers import assert_one_line_error
from onnx import TensorProto, helper, numpy_helper
from runs import exported
from test_edge import _run_runner
from test_server import Server, get, identity_model, request

pytest.importorskip("model_signing", reason="toolkit[sign] is not installed")


def make_key(folder: Path, name: str) -> tuple[Path, Path]:
    """(private PEM, public PEM) of a fresh P-256 key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    private, public = folder / f"{name}.pem", folder / f"{name}.pub.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    folder = tmp_path_factory.mktemp("keys")
    return {name: make_key(folder, name) for name in ("ours", "theirs")}


def matmul_model(folder: Path, scale: float = 1.0) -> Path:
    """y = x @ W with W (4x3) stored as external data model.onnx.data, and a model.json sidecar."""
    w = numpy_helper.from_array(np.full((4, 3), scale, np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.onnx"
    onnx.save(model, path, save_as_external_data=True, location="model.onnx.data", size_threshold=0)
    (folder / "model.json").write_text('{"task": "regress"}\n')
    (folder / "checkpoint.pt").write_bytes(b"not part of the model")  # a run folder holds other files
    return path


def flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_sign_then_verify_covers_model_external_data_and_sidecar(cli, keys, tmp_path):
    model = matmul_model(tmp_path / "run")
    result = cli("sign", model, "--key", keys["ours"][0], "--json")
    assert result.exit_code == 0, result.output
    sig = Path(json.loads(result.stdout)["signature"])
    assert sig == tmp_path / "run" / "model.onnx.sig" and json.loads(sig.read_text())["dsseEnvelope"]
    result = cli("verify", model, "--key", keys["ours"][1])
    assert result.exit_code == 0 and "verified" in result.output, result.output
    # Files that are not the model's may change: the checkpoint, another model beside it.
    (tmp_path / "run" / "checkpoint.pt").write_bytes(b"retrained")
    assert cli("verify", model, "--key", keys["ours"][1]).exit_code == 0


TAMPER = {
    "a byte of the model": (lambda d: flip(d / "model.onnx"), "model.onnx changed"),
    "a byte of its external data": (lambda d: flip(d / "model.onnx.data"), "model.onnx.data changed"),
    "its sidecar edited": (
        lambda d: (d / "model.json").write_text('{"task": "classify"}'),
        "model.json changed",
    ),
    "its sidecar removed": (lambda d: (d / "model.json").unlink(), "model.json missing"),
    "no signature": (lambda d: (d / "model.onnx.sig").unlink(), "unsigned"),
    "a damaged signature": (lambda d: (d / "model.onnx.sig").write_text("{}"), "does not verify"),
}


@pytest.mark.parametrize("case", TAMPER)
def test_a_tampered_or_unsigned_model_is_refused(cli, keys, tmp_path, case):
    model = matmul_model(tmp_path / "run")
    assert cli("sign", model, "--key", keys["ours"][0]).exit_code == 0
    change, reason = TAMPER[case]
    change(tmp_path / "run")
    assert_one_line_error(cli("verify", model, "--key", keys["ours"][1]), "model.onnx", reason)


def test_a_sidecar_added_after_signing_is_refused(cli, keys, tmp_path):
    model = matmul_model(tmp_path / "run")
    (tmp_path / "run" / "model.json").unlink()
    assert cli("sign", model, "--key", keys["ours"][0]).exit_code == 0
    (tmp_path / "run" / "model.json").write_text('{"labels": ["swapped"]}')
    assert_one_line_error(cli("verify", model, "--key", keys["ours"][1]), "model.json not signed")


def test_a_model_signed_with_another_key_is_refused(cli, keys, tmp_path):
    model = matmul_model(tmp_path / "run")
    assert cli("sign", model, "--key", keys["theirs"][0]).exit_code == 0
    assert_one_line_error(cli("verify", model, "--key", keys["ours"][1]), "does not verify with this key")


def test_bad_keys_are_one_line_errors(cli, keys, tmp_path):
    model = matmul_model(tmp_path / "run")
    assert_one_line_error(cli("sign", model, "--key", tmp_path / "nope.pem"), "no signing key")
    assert_one_line_error(cli("sign", model, "--key", keys["ours"][1]), "cannot use", "signing key")
    assert cli("sign", model, "--key", keys["ours"][0]).exit_code == 0
    assert_one_line_error(cli("verify", model, "--key", tmp_path / "nope.pem"), "no public key")


def test_export_and_quantize_sign_in_the_same_step(cli, keys, tmp_path_factory, tmp_path):
    run = tmp_path / "iris"
    shutil.copytree(exported(tmp_path_factory, "iris"), run)
    for leftover in run.glob("model*.onnx*"):
        leftover.unlink()
    result = cli("export", run, "--sign-key", keys["ours"][0], "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["signatures"] == [str(run / "model.onnx.sig")]
    assert cli("verify", run / "model.onnx", "--key", keys["ours"][1]).exit_code == 0
    result = cli(
        "quantize", run / "model.onnx", "--run", run, "--mode", "static", "--max-drop", "0.9", "--force",
        "--sign-key", keys["ours"][0], "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    written = Path(json.loads(result.stdout)["written"])
    assert json.loads(result.stdout)["signature"] == str(written) + ".sig"
    assert cli("verify", written, "--key", keys["ours"][1]).exit_code == 0
    flip(run / "model.int8.json")
    assert_one_line_error(cli("verify", written, "--key", keys["ours"][1]), "model.int8.json changed")


# ---- the server ------------------------------------------------------------------------------------------
def signed_identity(folder: Path, key: Path) -> Path:
    from toolkit.runtime import trust

    path = identity_model(folder / "model.onnx")
    trust.sign(path, key)
    return path


def versions_ready(server: Server) -> dict[str, int]:
    return {v: get(server.port, f"/v2/models/m/versions/{v}/ready")[0] for v in ("1", "2")}


def test_serve_verify_key_refuses_tampered_unsigned_and_foreign_versions(keys, tmp_path):
    repo = tmp_path / "repo"
    signed_identity(repo / "m" / "1", keys["ours"][0])
    server = Server(repo, "--verify-key", str(keys["ours"][1]), "--workers", "1")
    try:
        assert versions_ready(server) == {"1": 200, "2": 404}
        cases = {
            "tampered": (lambda d: flip(signed_identity(d, keys["ours"][0])), "model.onnx changed"),
            "unsigned": (lambda d: identity_model(d / "model.onnx"), "unsigned"),
            "foreign": (lambda d: signed_identity(d, keys["theirs"][0]), "does not verify with this key"),
        }
        for case, (make, reason) in cases.items():
            make(repo / "m" / "2")
            status, body, _ = request(server.port, "POST", "/v2/repository/models/m/load", b"{}")
            error = json.loads(body)["error"]
            assert status == 400 and reason in error and "refusing m version 2" in error, (case, body)
            assert "\n" not in error
            assert versions_ready(server) == {"1": 200, "2": 404}, case  # version 1 keeps serving
            shutil.rmtree(repo / "m" / "2")
        signed_identity(repo / "m" / "2", keys["ours"][0])
        status, body, _ = request(server.port, "POST", "/v2/repository/models/m/load", b"{}")
        assert status == 200, body
        assert versions_ready(server) == {"1": 200, "2": 200}
    finally:
        assert server.stop() == 0, server.stderr()


def test_serve_verify_key_refuses_to_start_on_an_unsigned_model(keys, tmp_path):
    identity_model(tmp_path / "repo" / "m" / "1" / "model.onnx")
    server = Server(tmp_path / "repo", "--verify-key", str(keys["ours"][1]), wait=False)
    assert server.proc.wait(120) == 2
    assert "refusing m version 1" in server.stderr() and "unsigned" in server.stderr()


# ---- bundles and the edge runner -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def signed_bundle(tmp_path_factory, keys) -> Path:
    from toolkit.runtime.edge import bundle

    out = tmp_path_factory.mktemp("signed") / "iris"
    bundle.pack(exported(tmp_path_factory, "iris"), out, sign_key=keys["ours"][0])
    return out


def test_a_signed_bundle_verifies_on_the_device_and_with_edge_verify(cli, signed_bundle, keys, tmp_path):
    bundle = tmp_path / "b"
    shutil.copytree(signed_bundle, bundle)
    proc = _run_runner(bundle, ["--self-test", "--json", "--verify-key", str(keys["ours"][1])])
    assert proc.returncode == 0 and json.loads(proc.stdout)["passed"], proc.stderr
    result = cli("edge", "verify", bundle, "--key", keys["ours"][1], "--json")
    checks = {c["check"]: c["status"] for c in json.loads(result.stdout)["checks"]}
    assert result.exit_code == 0 and checks["signature"] == "pass", result.output
    proc = _run_runner(bundle, ["--self-test", "--verify-key", str(keys["theirs"][1])])
    assert proc.returncode == 2 and "does not verify with this key" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("case", ["model", "runner", "unsigned"])
def test_the_runner_refuses_a_tampered_or_unsigned_bundle(signed_bundle, keys, tmp_path, case):
    bundle = tmp_path / "b"
    shutil.copytree(signed_bundle, bundle)
    if case == "model":
        flip(bundle / "model.onnx")
    elif case == "runner":
        with open(bundle / "processing.py", "a") as f:
            f.write("\n# changed on the way\n")
    else:
        (bundle / "bundle.sig").unlink()
    proc = _run_runner(bundle, ["--self-test", "--verify-key", str(keys["ours"][1])])
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    reason = {"model": "model.onnx changed", "runner": "processing.py changed", "unsigned": "unsigned"}[case]
    assert reason in lines[0], lines[0]


def test_the_runner_verifies_a_model_outside_a_bundle(signed_bundle, keys, tmp_path):
    model = matmul_model(tmp_path / "elsewhere")
    (model.parent / "model.json").write_text(json.dumps({"task": "regress", "inputs": []}))
    from toolkit.runtime import trust

    trust.sign(model, keys["ours"][0])
    args = ["--model", str(model), "--verify-key", str(keys["ours"][1]), "--self-test"]
    proc = _run_runner(signed_bundle, args)
    assert "signature" not in proc.stderr and "unsigned" not in proc.stderr, proc.stderr
    flip(model.parent / "model.onnx.data")
    proc = _run_runner(signed_bundle, args)
    assert proc.returncode == 2 and "model.onnx.data changed" in proc.stderr, proc.stderr


def test_the_runner_without_model_signing_says_what_to_install(signed_bundle, keys):
    code = (
        "import sys\n"
        "class _Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'toolkit', 'model_signing'):\n"
        "            raise ModuleNotFoundError(name, name=name)\n"
        "sys.meta_path.insert(0, _Block())\n"
        "import runpy; sys.argv = ['runner.py', *sys.argv[1:]]; runpy.run_path('runner.py', run_name='__main__')"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, "--self-test", "--verify-key", str(keys["ours"][1])],
        cwd=signed_bundle, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2 and "install model-signing" in proc.stderr, proc.stderr


def test_a_step_asked_to_sign_with_a_bad_key_fails_before_writing(cli, tmp_path_factory, tmp_path):
    run = tmp_path / "iris"
    shutil.copytree(exported(tmp_path_factory, "iris"), run)
    (run / "model.onnx").unlink()
    assert_one_line_error(cli("export", run, "--sign-key", tmp_path / "nope.pem"), "no signing key")
    assert not (run / "model.onnx").exists()
    out = tmp_path / "bundle"
    assert_one_line_error(
        cli(
            "edge", "pack", exported(tmp_path_factory, "iris"), "--out", out, "--sign-key", tmp_path / "x.pem"
        ),
        "no signing key",
    )
    assert not out.exists()
