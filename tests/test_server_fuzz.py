"""Property-based fuzzing of the REST side (hypothesis): every V2 and V1 endpoint, any method, model and
version names from the valid to the hostile, infer bodies from well-formed (the models' own inputs, JSON or
binary tensors) through mutated to arbitrary JSON and raw bytes, lying Inference-Header-Content-Length
headers. The properties, for every request: no 5xx, no dropped connection (the full response always
arrives), a JSON error body {"error": "..."} on every 4xx.

The default suite sends FUZZ_REQUESTS (300); the slow-marked test sends 10,000 (issue 20's goal; run with
TOOLKIT_FUZZ_FULL=1, as `make bench` does; it writes bench/results/serve_fuzz.json), both
derandomized so a failure reproduces (hypothesis then shrinks it to a minimal request).
"""

from __future__ import annotations

import http.client
import json
import math
import os
import string
from pathlib import Path
from urllib.parse import quote

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from test_server import Server, identity_model  # noqa: E402

FUZZ_REQUESTS = 300
FULL_REQUESTS = 10_000
# hypothesis favours boundary values, so `integers(0, 9) == 0` is far from 1 in 10: rare events are drawn
# from a list instead
RARE = st.sampled_from([False, False, False, False, False, False, False, True])
SOMETIMES = st.sampled_from([False, False, True])
DATATYPES = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64"]
DATATYPES += ["FP16", "FP32", "FP64", "BYTES"]


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory):
    """A repository with a trained tabular MLP (toolkit metadata: V1 :predict works), the every-datatype
    identity graph, one with a fixed batch of 2 and `scratch` for load/unload; the inputs of each."""
    from toolkit.export import export_run
    from toolkit.train import train

    base = tmp_path_factory.mktemp("fuzz")
    run = base / "run"
    train("mlp-tabular", overrides=["model.hidden=[8]", "train.epochs=1", "train.patience=0"], out=run)
    export_run(run)
    repo = base / "repo"
    for name in ("tab", "scratch"):
        (repo / name / "1").mkdir(parents=True)
        (repo / name / "1" / "model.onnx").write_bytes((run / "model.onnx").read_bytes())
    identity_model(repo / "ids" / "1" / "model.onnx")
    identity_model(repo / "fixed" / "1" / "model.onnx", batch=2)
    server = Server(repo, "--max-body-mb", "0.05")
    specs = {}
    for name in ("tab", "ids", "fixed"):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.request("GET", f"/v2/models/{name}")
        specs[name] = json.loads(conn.getresponse().read())["inputs"]
        conn.close()
    yield server, specs
    assert server.stop() == 0, server.stderr()


# ---- strategies ------------------------------------------------------------------------------------------
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
HOSTILE_NAMES = ["nope", "..", ".", "%2e%2e", "%2F", "a" * 129, "tab%00", "%", "%25", "é", "-x", "tab/..", ""]
NAMES = st.sampled_from(["tab", "ids", "fixed"] * 3 + ["scratch", *HOSTILE_NAMES]) | st.text(
    alphabet=string.ascii_letters + string.digits + "._-%/\\:", max_size=12
)
VERSIONS = st.sampled_from(["1", "2", "0", "-1", "x", "1.0", "99999999999999999999", "%2e%2e", ""])


def seg(value: str) -> str:
    """A path segment as a client would send it: '%' kept (pre-encoded spellings), the rest encoded."""
    return quote(value, safe="%._-:")


@st.composite
def values_for(draw, datatype: str, n: int, clean: bool = False) -> list:
    """`n` values for `datatype`: numbers from one drawn seed (cheap to generate) with the type's extremes
    mixed in, or a few drawn values repeated; unless `clean`, sometimes out of range or junk."""
    import numpy as np

    choice = "seeded" if clean else draw(st.sampled_from(["seeded"] * 6 + ["drawn", "junk"]))
    if choice == "junk":
        return draw(st.lists(JSON_VALUES, min_size=n, max_size=n))
    if datatype == "BYTES" or choice == "drawn":
        element = {"BYTES": st.text(max_size=6), "BOOL": st.booleans()}.get(
            datatype,
            st.floats(-1e6, 1e6, width=32) if datatype.startswith("FP") else st.integers(-300, 70_000),
        )
        few = draw(st.lists(element, min_size=min(n, 8), max_size=min(n, 8)))
        return (few * n)[:n]
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if datatype == "BOOL":
        return rng.random(n).round().astype(bool).tolist()
    if datatype.startswith("FP"):
        values = (rng.standard_normal(n) * 10 ** rng.integers(0, 5)).tolist()
        extremes = [0.0, -0.0, 65504.0, -1e-45]
    else:
        info = np.iinfo(datatype.lower()) if clean and datatype in DATATYPES else np.iinfo(np.int32)
        lo, hi = max(int(info.min), -(2**62)), min(int(info.max), 2**62)
        values = rng.integers(lo, hi, n, endpoint=True).tolist()
        extremes = [lo, hi, 0] if clean else [0, -1, 255, 2**31 - 1, 2**63 - 1, -(2**63)]
    for i in rng.integers(0, n, min(n, 2)).tolist():
        values[i] = extremes[int(rng.integers(0, len(extremes)))]
    return values


def pack(values: list, datatype: str) -> bytes:
    """Values as Triton's binary tensor bytes (little-endian; BYTES: 4-byte length + UTF-8 each)."""
    import struct

    import numpy as np

    from toolkit.runtime.server.protocol import DATATYPES as NUMPY

    if datatype == "BYTES":
        return b"".join(struct.pack("<I", len(v.encode())) + v.encode() for v in map(str, values))
    with np.errstate(over="ignore", invalid="ignore"):
        return np.asarray(values).astype(NUMPY[datatype]).tobytes()


@st.composite
def tensor(draw, spec: dict, clean: bool) -> tuple[dict, bytes | None]:
    """One input as {name, datatype, shape, data}, or with binary bytes instead of data; `clean`: exactly
    what the model takes, otherwise sometimes a wrong shape, datatype, value or byte count."""
    shape = [draw(st.integers(1, 3)) if d == -1 else d for d in spec["shape"]]
    datatype = spec["datatype"]
    if not clean and draw(RARE):
        shape = draw(st.lists(st.integers(-2, 4), max_size=4))
    if not clean and draw(RARE):
        datatype = draw(st.sampled_from([*DATATYPES, "FLOAT", "", "fp32"]))
    n = math.prod(shape) if all(d >= 0 for d in shape) else 1
    item = {"name": spec["name"], "datatype": datatype, "shape": shape}
    values = draw(values_for(datatype, min(n, 256), clean))
    if datatype in DATATYPES and draw(st.booleans()):
        try:
            raw = pack(values, datatype)
        except (ValueError, TypeError, OverflowError):  # junk values: random bytes instead
            raw = draw(st.binary(max_size=64))
        size = len(raw)
        if not clean and draw(RARE):
            raw = raw[: draw(st.integers(0, len(raw)))] + draw(st.binary(max_size=3))
            size = draw(st.sampled_from([len(raw), size, len(raw) + 3, -1]))
        item["parameters"] = {"binary_data_size": size}
        return item, raw
    item["data"] = values
    return item, None


@st.composite
def infer_body(draw, specs: dict, model: str | None) -> tuple[bytes, dict]:
    """(body, extra headers) for /infer: exactly what `model` takes (JSON or binary tensors), the same with
    mutations, arbitrary JSON or raw bytes."""
    kind = draw(st.sampled_from(["clean"] * 3 + ["mutated"] * 3 + ["json", "bytes", "huge"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300)), {}
    if kind == "huge":  # over --max-body-mb (0.05 MB): a 413, then the server closes (lingering close)
        return b"[" * draw(st.integers(60_000, 200_000)), {}
    if kind == "json":
        return json.dumps(draw(JSON_VALUES)).encode(), {}
    clean = kind == "clean"
    if model not in specs or (not clean and draw(RARE)):
        model = draw(st.sampled_from(sorted(specs)))
    inputs, tail = [], b""
    for spec in specs[model]:
        if not clean and draw(RARE):
            continue  # a missing input
        item, raw = draw(tensor(spec, clean))
        inputs.append(item)
        tail += raw or b""
    doc: dict = {"inputs": inputs}
    if draw(SOMETIMES):
        doc["id"] = draw(JSON_VALUES if not clean and draw(RARE) else st.text(max_size=8))
    if draw(SOMETIMES):
        known = ["out_FP32", "out_BYTES", "out_BOOL"] if model != "tab" else ["probabilities", "logits"]
        output = draw(st.text(max_size=8) if not clean and draw(RARE) else st.sampled_from(known))
        doc["outputs"] = [{"name": output, "parameters": {"binary_data": draw(st.booleans())}}]
    if draw(SOMETIMES):
        # a `timeout` that can pass while the request waits is a legitimate 503: only junk, 0 or >= 60 s
        if clean:
            timeout = st.sampled_from([0, 60_000_000])
            flag = st.booleans()
        else:
            timeout = JSON_VALUES.filter(lambda v: not isinstance(v, int) or v <= 0 or v >= 60_000_000)
            flag = JSON_VALUES
        doc["parameters"] = draw(
            st.fixed_dictionaries({}, optional={"binary_data_output": flag, "timeout": timeout})
        )
    if not clean:
        target = draw(st.sampled_from([doc, *doc["inputs"]] if doc["inputs"] else [doc]))
        field = draw(st.sampled_from(["inputs", "name", "shape", "datatype", "data", "parameters", "x"]))
        target[field] = draw(JSON_VALUES)
    head = json.dumps(doc).encode()
    if not tail and (clean or not draw(RARE)):
        return head, {"Content-Type": "application/json"}
    length = len(head) if clean else draw(st.sampled_from([len(head)] * 3 + [0, len(head) + 7, -3, "x"]))
    return head + tail, {"Inference-Header-Content-Length": str(length)}


@st.composite
def requests(draw, specs: dict) -> tuple[str, str, bytes | None, dict]:
    """(method, path, body, headers) over every endpoint of the V2 and V1 REST APIs."""
    served = draw(st.sampled_from([True, True, True, False]))  # a served model's name 3 times in 4
    raw_name = draw(st.sampled_from(sorted(specs)) if served else NAMES)
    name, version = seg(raw_name), seg(draw(st.just("1") if served and draw(SOMETIMES) else VERSIONS))
    model = f"/v2/models/{name}" + (f"/versions/{version}" if draw(SOMETIMES) else "")
    endpoint = draw(
        st.sampled_from(
            ["infer"] * 12
            + ["predict"] * 4
            + ["model", "ready", "config", "stats", "all-stats", "v1-model", "server", "live", "ready-all"]
            + ["metrics", "index", "load", "unload", "other"]
        )
    )
    method, body, headers = "GET", None, {}
    if endpoint == "infer":
        method, path = "POST", model + "/infer"
        body, headers = draw(infer_body(specs, raw_name))
    elif endpoint == "predict":
        method, path = "POST", f"/v1/models/{'tab' if served else name}:predict"  # tab has metadata
        rows = st.lists(st.floats(-1e3, 1e3), min_size=30, max_size=30)
        instances = st.lists(rows, min_size=1, max_size=3)
        if draw(st.sampled_from([True, True, False])):
            doc = {"instances": draw(instances)}
        else:
            doc = draw(st.fixed_dictionaries({"instances": JSON_VALUES}) | JSON_VALUES)
        body = json.dumps(doc).encode()
    elif endpoint in ("index", "load", "unload"):
        method = "POST"
        target = draw(st.sampled_from(["scratch", *HOSTILE_NAMES]) | NAMES.filter(lambda n: n not in specs))
        path = {
            "index": "/v2/repository/index",
            "load": f"/v2/repository/models/{seg(target)}/load",
            "unload": f"/v2/repository/models/{seg(target)}/unload",
        }[endpoint]
        body = json.dumps(
            draw(st.just({}) | st.fixed_dictionaries({"ready": JSON_VALUES}) | JSON_VALUES)
        ).encode()
    else:
        path = {
            "model": model,
            "ready": model + "/ready",
            "config": model + "/config",
            "stats": model + "/stats",
            "all-stats": "/v2/models/stats",
            "v1-model": f"/v1/models/{name}",
            "server": "/v2",
            "live": "/v2/health/live",
            "ready-all": "/v2/health/ready",
            "metrics": "/metrics",
            "other": "/" + "/".join(seg(s) for s in draw(st.lists(st.text(max_size=6), max_size=4))),
        }[endpoint]
    if draw(RARE):
        method = draw(st.sampled_from(["PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "GET", "POST"]))
    return method, path, body, headers


# ---- the properties --------------------------------------------------------------------------------------
class Client:
    """One keep-alive connection, opened again only after the server said `Connection: close`."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn: http.client.HTTPConnection | None = None
        self.sent = 0

    def send(self, method: str, path: str, body: bytes | None, headers: dict) -> tuple[int, dict, bytes]:
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            self.conn.request(method, path, body=body, headers=headers)
            resp = self.conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            self.conn.close()
            self.conn = None
            raise AssertionError(
                f"dropped connection on {method} {path}: {type(exc).__name__}: {exc}"
            ) from None
        self.sent += 1
        got = {k.lower(): v for k, v in resp.getheaders()}
        if got.get("connection") == "close":
            self.conn.close()
            self.conn = None
        return resp.status, got, data


def check(status: int, headers: dict, data: bytes, request: tuple) -> None:
    method, path, body, _ = request
    where = f"{method} {path} {(body or b'')[:200]!r}"
    assert status < 500, f"{status} for {where}: {data[:300]!r}"
    if status >= 400 and method != "HEAD":
        doc = json.loads(data)
        assert isinstance(doc, dict) and isinstance(doc.get("error"), str) and doc["error"], (
            status,
            where,
            data,
        )
    elif headers.get("content-type", "").startswith("application/json") and method != "HEAD":
        json.loads(data)


def fuzz(fuzz_server, count: int) -> dict:
    """Send `count` generated requests on one client; the statuses seen, per endpoint kind."""
    server, specs = fuzz_server
    client = Client(server.port)
    seen: dict[str, dict[int, int]] = {}

    @settings(
        max_examples=count,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(requests(specs))
    def one(request: tuple) -> None:
        status, headers, data = client.send(*request)
        check(status, headers, data, request)
        kind = "v1" if ":predict" in request[1] else "infer" if request[1].endswith("/infer") else "other"
        seen.setdefault(kind, {}).setdefault(status, 0)
        seen[kind][status] += 1

    one()
    assert client.sent >= count * 0.95, client.sent  # the bounded count was actually sent
    status, _, _ = client.send("GET", "/v2/health/ready", None, {})
    assert status == 200  # and the server still serves
    return seen


def test_fuzzed_requests_never_get_a_5xx_or_a_dropped_connection(fuzz_server):
    """The properties over FUZZ_REQUESTS requests, and the strategies reach the deep paths: inferences that
    run, V1 predictions that run, and the client-error kinds."""
    seen = fuzz(fuzz_server, FUZZ_REQUESTS)
    assert seen["infer"].get(200, 0) >= 20 and seen["infer"].get(400, 0) >= 20, seen
    assert seen["v1"].get(200, 0) >= 3 and seen["other"].get(404, 0) >= 5, seen
    assert seen["infer"].get(413, 0) >= 1, seen
    statuses = {status for kinds in seen.values() for status in kinds}
    assert statuses <= {200, 400, 404, 405, 413}, seen


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.skipif(
    not os.environ.get("TOOLKIT_FUZZ_FULL"),
    reason="10,000 requests: TOOLKIT_FUZZ_FULL=1 (make bench runs it)",
)
def test_10000_fuzzed_requests(fuzz_server):
    """Issue 20's goal: 0 x 5xx and 0 dropped connections over 10,000 fuzzed requests; the statuses seen
    and the time taken go to bench/results/serve_fuzz.json."""
    import platform
    import time

    t0 = time.perf_counter()
    seen = fuzz(fuzz_server, FULL_REQUESTS)
    seconds = time.perf_counter() - t0
    total = sum(n for kinds in seen.values() for n in kinds.values())
    report = {
        "machine": f"{platform.machine()} {os.cpu_count()} cores (shared, noisy)",
        "requests": total,
        "server_errors_5xx": 0,  # fuzz() fails on the first one
        "dropped_connections": 0,  # likewise
        "statuses_by_kind": {k: dict(sorted(v.items())) for k, v in seen.items()},
        "seconds": round(seconds, 1),
        "goal": "0 x 5xx and 0 dropped connections from 10,000 fuzzed requests",
    }
    out = Path(__file__).resolve().parents[1] / "bench" / "results" / "serve_fuzz.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    assert total >= FULL_REQUESTS * 0.95
