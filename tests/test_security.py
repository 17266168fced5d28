"""Files and requests from others reach nothing they should not: the server's repository root confines every
load (any spelling of a path out of it), external-data locations stay inside the model's folder, and a
checkpoint that would run code when unpickled is refused before anything runs."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_one_line_error
from onnx import TensorProto, helper, numpy_helper
from test_server import Server, get, identity_model, request

from toolkit.errors import ToolkitError


def add_model(path: Path, location: str | None = None, value: float = 1.0) -> Path:
    """y = x + w (2x2 float); with `location`, w is stored as external data at that location."""
    w = numpy_helper.from_array(np.full((2, 2), value, np.float32), "w")
    if location is not None:
        w.ClearField("raw_data")
        w.data_location = TensorProto.EXTERNAL
        for key, val in (("location", location), ("offset", "0"), ("length", "16")):
            entry = w.external_data.add()
            entry.key, entry.value = key, val
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        "add",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())
    return path


def in_a_subgraph(path: Path, location: str) -> Path:
    """An If node whose then-branch holds a constant stored as external data at `location`."""
    const = numpy_helper.from_array(np.ones((2, 2), np.float32), "c")
    const.ClearField("raw_data")
    const.data_location = TensorProto.EXTERNAL
    entry = const.external_data.add()
    entry.key, entry.value = "location", location
    out = helper.make_tensor_value_info("c_out", TensorProto.FLOAT, [2, 2])
    branch = helper.make_graph([helper.make_node("Constant", [], ["c_out"], value=const)], "then", [], [out])
    other = helper.make_graph(
        [
            helper.make_node(
                "Constant", [], ["c_out"], value=numpy_helper.from_array(np.zeros((2, 2), np.float32))
            )
        ],
        "else",
        [],
        [out],
    )
    graph = helper.make_graph(
        [helper.make_node("If", ["cond"], ["y"], then_branch=branch, else_branch=other)],
        "if",
        [helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])],
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(helper.make_model(graph).SerializeToString())
    return path


@pytest.fixture
def secret(tmp_path) -> Path:
    path = tmp_path / "secret.bin"
    np.full((2, 2), 7, np.float32).tofile(path)
    return path


# ---- external data ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("spelling", ["../secret.bin", "ABSOLUTE", "sub/../../secret.bin", "link.bin"])
def test_external_data_outside_the_model_folder_is_refused(tmp_path, secret, spelling):
    from toolkit.runtime.edge.runner import InputError, check_external_data, low_footprint_session
    from toolkit.runtime.providers import open_session

    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "sub").mkdir()
    os.symlink(secret, folder / "link.bin")
    location = str(secret) if spelling == "ABSOLUTE" else spelling
    model = add_model(folder / "model.onnx", location)
    with pytest.raises(InputError, match="outside its folder"):
        check_external_data(str(model))
    with pytest.raises(InputError, match="outside its folder"):
        low_footprint_session(str(model))  # the edge runner's session
    with pytest.raises(ToolkitError, match="outside its folder"):
        open_session(model)  # predict, validate, bench, quantize


def test_external_data_in_a_subgraph_is_checked_too(tmp_path, secret):
    from toolkit.runtime.edge.runner import InputError, check_external_data

    with pytest.raises(InputError, match="outside its folder"):
        check_external_data(str(in_a_subgraph(tmp_path / "m" / "model.onnx", "../secret.bin")))


def test_external_data_beside_the_model_loads(tmp_path):
    from toolkit.runtime.edge.runner import low_footprint_session

    model = add_model(tmp_path / "m" / "model.onnx", "w.bin")
    np.full((2, 2), 3, np.float32).tofile(tmp_path / "m" / "w.bin")
    session = low_footprint_session(str(model))
    out = session.run(None, {"x": np.ones((2, 2), np.float32)})[0]
    np.testing.assert_array_equal(out, np.full((2, 2), 4, np.float32))


def test_a_file_that_is_not_onnx_is_one_clear_error(tmp_path):
    from toolkit.runtime.edge.runner import InputError, check_external_data

    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"\x0f" * 64)  # wire type 7: not a protobuf message
    with pytest.raises(InputError, match="is not an ONNX model"):
        check_external_data(str(bad))


# ---- the server's repository root ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def confined(tmp_path_factory):
    """REPO holds `ok`; OUTSIDE holds a valid model `evil` that must never be loaded. REPO/linked is a link
    to OUTSIDE/evil, REPO/filelink/1/model.onnx a link to its model file."""
    base = tmp_path_factory.mktemp("confined")
    repo, outside = base / "repo", base / "outside"
    identity_model(repo / "ok" / "1" / "model.onnx")
    identity_model(outside / "evil" / "1" / "model.onnx")
    identity_model(base / "1" / "model.onnx")  # what REPO/.. would find as a version folder
    os.symlink(outside / "evil", repo / "linked")
    (repo / "filelink" / "1").mkdir(parents=True)
    os.symlink(outside / "evil" / "1" / "model.onnx", repo / "filelink" / "1" / "model.onnx")
    server = Server(repo)
    yield server, repo, outside
    assert server.stop() == 0, server.stderr()


def listed(server) -> set[str]:
    status, body, _ = request(server.port, "POST", "/v2/repository/index", b"{}")
    assert status == 200
    return {m["name"] for m in json.loads(body)}


def test_only_models_inside_the_root_are_listed(confined):
    assert listed(confined[0]) == {"ok"}


# Spellings of a way out of the root, as the model name of a load request. Percent-encoded separators are
# decoded by the HTTP layer before routing; what stays one path segment must be refused by the name pattern.
ESCAPES = [
    "..",
    "%2E%2E",
    "%2e%2e",
    ".",
    "..%2F..%2Foutside%2Fevil",
    "..%2Foutside%2Fevil",
    "%2Ftmp",
    "%2F..%2Foutside",
    "..%5Coutside%5Cevil",
    "%252E%252E",
    "linked",
    "filelink",
    "ok%00",
    "evil",
    "-rf",
    "a" * 200,
]


@pytest.mark.parametrize("name", ESCAPES)
def test_no_load_request_reaches_outside_the_root(confined, name):
    server, _, _ = confined
    status, body, _ = request(server.port, "POST", f"/v2/repository/models/{name}/load", b"{}")
    assert status in (400, 404), (name, status, body)
    assert listed(server) == {"ok"}


@pytest.mark.parametrize("name", ["..", "%2E%2E", ".", "-rf", "a" * 200, "ok%00"])
def test_a_name_outside_the_pattern_is_400(confined, name):
    server, _, _ = confined
    status, body, _ = request(server.port, "POST", f"/v2/repository/models/{name}/load", b"{}")
    assert status == 400 and b"invalid model name" in body, body
    status, body = get(server.port, f"/v2/models/{name}")
    assert status == 400, body
    status, body = get(server.port, f"/v2/models/ok/versions/{name}")
    assert status == 400, body


def test_a_model_with_outside_external_data_is_refused_and_the_rest_keeps_serving(confined, secret):
    server, repo, _ = confined
    target = repo / "ext" / "1"
    add_model(target / "model.onnx", os.path.relpath(secret, target))
    try:
        status, body, _ = request(server.port, "POST", "/v2/repository/models/ext/load", b"{}")
        assert status == 400 and b"outside its folder" in body, body
        assert get(server.port, "/v2/models/ok/ready")[0] == 200
    finally:
        shutil.rmtree(repo / "ext")


# ---- checkpoints -----------------------------------------------------------------------------------------
class _RunsCode:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_that_would_run_code_is_refused(cli, tmp_path):
    torch = pytest.importorskip("torch")
    marker = tmp_path / "ran"
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"format": 1, "recipe": {}, "payload": _RunsCode(str(marker))}, run / "best.pt")
    line = assert_one_line_error(cli("export", run), "refused checkpoint", "could run code")
    assert "best.pt" in line
    assert not marker.exists()  # nothing ran
    assert not (run / "model.onnx").exists()
