#!/usr/bin/env python3
"""Run an exported toolkit model on a device with nothing but onnxruntime and numpy (Pillow only for images).

`toolkit edge pack` copies this file and processing.py (toolkit/runtime/processing.py: the pre- and
post-processing that `toolkit predict` and the server use too) into a bundle, so a device computes exactly
what `toolkit predict` prints. Neither file imports toolkit or torch; this one adds what a device needs
around the processing: the model file checked and opened with a low-footprint session, the command line,
the bundle's self-test and a minimal KServe V1 endpoint (Pillow, csv and http.server are imported only when
an input needs them, so a cold start stays small).

    python runner.py INPUT... [--text T] [--json] [--top-k K] [--keep-going] [--model FILE] [--threads N]
    python runner.py 3 7 --out grid.png        # a GAN generator: labels in, a PNG grid out
    python runner.py --self-test               # the bundle's samples/ against samples/expected.json
    python runner.py --serve 127.0.0.1:8080    # POST /v1/models/model:predict {"instances": [...]}
    python runner.py explain INPUT... [--method M] [--target T] [--json] [--out F.png]   # explain/ beside it

Inputs by model kind: images (.png/.jpg/.jpeg files or folders of them, resized and scaled as in training),
CSV rows or .npy/.npz arrays (tabular), a CSV/.txt/.npy series (forecast from its last window), text lines
(.txt, a CSV `text` column or --text). A bad input is one line naming it, exit code 2; with --keep-going the
other inputs are still answered.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

if __package__:  # imported from the toolkit package (toolkit.runtime.edge.runner)
    from toolkit.runtime import processing, signature
else:  # a bundle's runner.py, run as a script: processing.py and signature.py lie beside it
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import processing
    import signature

InputError = processing.InputError


# ----------------------------------------------------------------------------------------- external data
# Protocol-buffer field numbers (onnx.proto) on the way from a model to its tensors' external-data entries.
_MODEL_GRAPH = 7
_GRAPH_NODE, _GRAPH_INITIALIZER, _GRAPH_SPARSE = 1, 5, 15
_NODE_ATTRIBUTE = 5
_ATTR_TENSOR, _ATTR_GRAPH, _ATTR_TENSORS, _ATTR_GRAPHS, _ATTR_SPARSE, _ATTR_SPARSES = 5, 6, 10, 11, 22, 23
_SPARSE_VALUES, _SPARSE_INDICES = 1, 2
_TENSOR_EXTERNAL = 13


def _fields(buf: memoryview):
    """(field number, value) of one protobuf message; length-delimited values as memoryviews (no copy)."""
    i, n = 0, len(buf)

    def varint() -> int:
        nonlocal i
        shift = value = 0
        while True:
            byte = buf[i]
            i += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value
            shift += 7

    while i < n:
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            yield number, varint()
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        elif wire == 2:
            size = varint()
            yield number, buf[i : i + size]
            i += size
        else:
            raise InputError(f"unsupported protobuf wire type {wire}")


def _external_locations(graph: memoryview):
    """Every external-data `location` of the tensors in a GraphProto and in its subgraphs (If, Loop, Scan)."""

    def tensor(t: memoryview):
        for number, entry in _fields(t):
            if number == _TENSOR_EXTERNAL:
                kv = dict(_fields(entry))
                if bytes(kv.get(1, b"")) == b"location":
                    yield bytes(kv.get(2, b"")).decode("utf-8", "replace")

    def sparse(t: memoryview):
        for number, part in _fields(t):
            if number in (_SPARSE_VALUES, _SPARSE_INDICES):
                yield from tensor(part)

    for number, value in _fields(graph):
        if number == _GRAPH_INITIALIZER:
            yield from tensor(value)
        elif number == _GRAPH_SPARSE:
            yield from sparse(value)
        elif number == _GRAPH_NODE:
            for field, attr in _fields(value):
                if field != _NODE_ATTRIBUTE:
                    continue
                for kind, part in _fields(attr):
                    if kind in (_ATTR_TENSOR, _ATTR_TENSORS):
                        yield from tensor(part)
                    elif kind in (_ATTR_SPARSE, _ATTR_SPARSES):
                        yield from sparse(part)
                    elif kind in (_ATTR_GRAPH, _ATTR_GRAPHS):
                        yield from _external_locations(part)


def external_files(path: str) -> list[str]:
    """The external-data locations the ONNX model at `path` names (none for ORT-format files)."""
    if path.endswith(".ort"):
        return []
    with open(path, "rb") as f:
        data = memoryview(f.read())
    try:
        graphs = [value for number, value in _fields(data) if number == _MODEL_GRAPH]
        return sorted({loc for graph in graphs for loc in _external_locations(graph)})
    except (IndexError, InputError):
        raise InputError(f"{path} is not an ONNX model (damaged or truncated protobuf)") from None


def check_external_data(path: str) -> None:
    """Refuse a model whose external-data locations leave its own folder (absolute paths, `..`, or links out
    of it), before any session reads them: a received model file must not make us read other files. ORT
    format files carry no external data."""
    if path.endswith(".ort") or not os.path.isfile(path):
        return  # a missing file is onnxruntime's error to word
    folder = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    for loc in external_files(path):
        target = os.path.realpath(os.path.join(folder, loc))
        if os.path.isabs(loc) or os.path.commonpath([folder, target]) != folder:
            raise InputError(
                f"{path} refers to external data {loc!r} outside its folder; external data must be a file "
                "beside the model (a relative path with no '..' and no link out)"
            )


def _signed_set(path: str, signing: bool) -> tuple[str, list[str], str]:
    """(folder, names, signature file) of a model file or of a bundle folder (manifest.json in it)."""
    if os.path.isdir(path):
        return path, signature.bundle_files(path), os.path.join(path, signature.BUNDLE_SIGNATURE)
    if not os.path.isfile(path):
        raise InputError(f"no model at {path}")
    try:
        check_external_data(path)  # never hash (or follow) files outside the model's folder
        external = external_files(path)
    except InputError:
        if signing:
            raise
        external = []  # a damaged or altered model file: the signature check names what changed
    folder = os.path.dirname(os.path.abspath(path))
    return folder, signature.model_files(path, external), signature.signature_path(path)


def sign_path(path: str, key: str, password: str | None = None) -> str:
    """Sign a model file (with its external data and sidecar) or a bundle folder; returns the signature file."""
    folder, names, sig = _signed_set(path, signing=True)
    try:
        return signature.sign(folder, names, key, sig, password)
    except signature.SignatureError as exc:
        raise InputError(str(exc)) from None


def verify_path(path: str, public_key: str) -> str:
    """InputError (one line) unless the model file or bundle folder at `path` carries a valid signature by
    `public_key` over exactly the files it is made of; returns the signature file."""
    folder, names, sig = _signed_set(path, signing=False)
    try:
        signature.verify(folder, names, public_key, sig)
    except signature.SignatureError as exc:
        raise InputError(f"{path}: {exc}") from None
    return sig


def verify_before_load(model: str, here: str, public_key: str) -> None:
    """--verify-key: a model inside a bundle (manifest.json beside it) is checked with the whole bundle's
    signature, any other model with its own NAME.onnx.sig."""
    folder = os.path.realpath(os.path.dirname(os.path.abspath(model)))
    in_bundle = folder == os.path.realpath(here) and os.path.isfile(os.path.join(here, "manifest.json"))
    verify_path(here if in_bundle else model, public_key)


def low_footprint_session(path: str, threads: int = 1):
    """An onnxruntime CPU session for small devices: `threads` intra-op threads without spinning, one
    inter-op thread, no memory arena (an arena keeps its peak for the life of the process), and for
    ORT-format files the model bytes read in place while the session is built (no second copy). Initializers
    are not taken from those bytes (session.use_ort_model_bytes_for_initializers): through the Python API
    onnxruntime 1.32 crashes with it."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.enable_cpu_mem_arena = False
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if path.endswith(".ort"):
        opts.add_session_config_entry("session.use_ort_model_bytes_directly", "1")
        with open(path, "rb") as f:
            data = f.read()
        session = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
        session._toolkit_model_bytes = data  # the session reads these bytes in place: keep them alive
        return session
    check_external_data(path)
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def load_meta(model_path: str, session=None) -> dict:
    """The model's metadata document: its sidecar (NAME.json beside NAME.onnx or NAME.ort, else model.json),
    else the document embedded in the model file."""
    folder, name = os.path.split(os.path.abspath(model_path))
    stem = name.removesuffix(".onnx").removesuffix(".ort")
    for sidecar in (os.path.join(folder, stem + ".json"), os.path.join(folder, "model.json")):
        if os.path.isfile(sidecar):
            with open(sidecar, encoding="utf-8") as f:
                return json.load(f)
    if session is None:
        session = low_footprint_session(model_path)
    raw = session.get_modelmeta().custom_metadata_map.get("toolkit")
    if raw is None:
        raise InputError(f"{model_path} has no `toolkit` metadata and no model.json beside it")
    return json.loads(raw)


def default_model(folder: str) -> str:
    for name in ("model.ort", "model.onnx"):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path
    raise InputError(f"no model.ort or model.onnx in {folder}; pass --model FILE")


class Runner:
    """A model, its metadata and a low-footprint session: `answer(items)` -> results."""

    def __init__(self, model_path: str, threads: int = 1) -> None:
        self.path = model_path
        self.session = low_footprint_session(model_path, threads)
        self.meta = load_meta(model_path, self.session)
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, feeds: dict) -> dict:
        return dict(zip(self.output_names, self.session.run(self.output_names, feeds)))

    def answer(self, items: list, top_k: int | None = None, seed: int = 0) -> list[dict]:
        return processing.run_items(self.run, self.meta, items, top_k, seed)

    def predict_instances(self, instances: list, top_k: int | None = None) -> list[dict]:
        """KServe V1 instances -> predictions; the first bad instance raises InputError naming it."""
        rows = [
            processing.prepare_instance(self.meta, inst, f"instance {i}") for i, inst in enumerate(instances)
        ]
        out = []
        for start in range(0, len(rows), processing.BATCH):
            chunk = rows[start : start + processing.BATCH]
            labels = chunk if processing.input_kind(self.meta) == "noise" else None
            out += processing.predictions(
                self.meta, self.run(processing.batch_feeds(self.meta, chunk, start)), top_k, labels
            )
        return out


# --------------------------------------------------------------------------------------------- self-test
def close(a, b, atol: float = 1e-4, rtol: float = 1e-3) -> bool:
    """Two results equal: same keys and labels, numbers within atol + rtol * |b|, images within one level."""
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return False
        if "b64" in a:
            return _images_close(a["b64"], b["b64"])
        return all(close(a[k], b[k], atol, rtol) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y, atol, rtol) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return (
            isinstance(a, (int, float)) and isinstance(b, (int, float)) and abs(a - b) <= atol + rtol * abs(b)
        )
    return a == b


def _images_close(a: str, b: str) -> bool:
    x = processing.generated_images([{"image": {"b64": a}}]).astype(np.float64)
    y = processing.generated_images([{"image": {"b64": b}}]).astype(np.float64)
    return x.shape == y.shape and float(np.abs(x - y).max()) <= 1.5 / 255


def self_test(runner: Runner, folder: str) -> tuple[bool, str]:
    """Run the bundle's samples (samples/inputs.json lists them) and compare with samples/expected.json."""
    samples = os.path.join(folder, "samples")
    try:
        with open(os.path.join(samples, "expected.json"), encoding="utf-8") as f:
            expected = json.load(f)
    except (OSError, ValueError) as exc:
        return False, f"cannot read samples/expected.json ({processing.one_line(exc)})"
    paths = [os.path.join(folder, p) for p in expected.get("inputs", [])] + expected.get("labels", [])
    items = processing.read_inputs(runner.meta, paths, expected.get("texts", []))
    got = runner.answer(items, seed=expected.get("seed", 0))
    want = expected["results"]
    if len(got) != len(want):
        return False, f"{len(got)} results, expected {len(want)}"
    for g, w in zip(got, want):
        g = {k: v for k, v in g.items() if k != "input"}
        w = {k: v for k, v in w.items() if k != "input"}
        if not close(g, w):
            return (
                False,
                f"sample {w.get('input')}: got {json.dumps(g)[:160]}, expected {json.dumps(w)[:160]}",
            )
    return True, f"{len(got)} samples answered as expected"


# --------------------------------------------------------------------------------------------- serving
def serve(runner: Runner, address: str) -> None:
    """A minimal KServe V1 endpoint (standard library only): POST /v1/models/NAME:predict with
    {"instances": [...]} -> {"predictions": [...]}; GET /v1/models/NAME and /healthz."""
    from http.server import BaseHTTPRequestHandler, HTTPServer

    host, _, port = address.rpartition(":")
    name = os.path.splitext(os.path.basename(runner.path))[0]

    class Handler(BaseHTTPRequestHandler):
        def _send(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            if self.path in ("/healthz", "/v1/models/" + name, "/v1/models/model"):
                self._send(200, {"name": name, "ready": True, "task": runner.meta["task"]})
            else:
                self._send(404, {"error": f"no route {self.path}"})

        def do_POST(self) -> None:  # noqa: N802
            if not self.path.endswith(":predict"):
                return self._send(404, {"error": f"no route {self.path}; POST /v1/models/{name}:predict"})
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                instances = body["instances"]
                if not isinstance(instances, list):
                    raise InputError("'instances' must be a list")
                self._send(200, {"predictions": runner.predict_instances(instances)})
            except (InputError, ValueError, KeyError, TypeError) as exc:
                msg = (
                    str(exc) if isinstance(exc, InputError) else 'the body must be JSON {"instances": [...]}'
                )
                self._send(400, {"error": msg})

        def log_message(self, *args) -> None:
            pass

    server = HTTPServer((host or "127.0.0.1", int(port)), Handler)
    print(f"serving {runner.path} on http://{host or '127.0.0.1'}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


# --------------------------------------------------------------------------------------------- command line
def format_result(r: dict) -> str:
    """One result as one line of text."""
    if "error" in r:
        return f"{r['input']}: error: {r['error']}"
    if "label" in r and "probabilities" in r:
        return f"{r['input']}: {r['label']} ({r['probability']:.3f})"
    if "value" in r:
        return f"{r['input']}: {r['value']}"
    if "forecast" in r:
        return f"{r['input']}: forecast " + ", ".join(f"{v:.4g}" for v in r["forecast"])
    if "code" in r:
        return f"{r['input']}: code " + ", ".join(f"{v:.4g}" for v in r["code"])
    if "score" in r:
        flag = {True: "ANOMALY", False: "normal", None: "no threshold"}[r["anomaly"]]
        return f"{r['input']}: {flag} (score {r['score']:.4g}, threshold {r['threshold']})"
    return f"{r['input']}: generated {r.get('label')}"


def main(argv: list[str] | None = None) -> int:
    import argparse

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["explain"]:
        return _explain(argv[1:])
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description="Run a toolkit model bundle (onnxruntime + numpy).")
    ap.add_argument("inputs", nargs="*", help="files or folders (labels for a generator)")
    ap.add_argument("--text", action="append", default=[], help="a text to classify (repeatable)")
    ap.add_argument("--model", help="model file (default: model.ort, else model.onnx beside this runner)")
    ap.add_argument("--json", action="store_true", help="print results as JSON")
    ap.add_argument("--top-k", type=int, default=None, help="classes to list per input (default all)")
    ap.add_argument("--keep-going", action="store_true", help="answer the other inputs when one is bad")
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1)")
    ap.add_argument("--seed", type=int, default=0, help="generator noise seed")
    ap.add_argument("--out", help="generator: write the images as one PNG grid here")
    ap.add_argument("--self-test", action="store_true", help="check samples/ against samples/expected.json")
    ap.add_argument("--serve", metavar="HOST:PORT", help="serve KServe V1 predict requests over HTTP")
    ap.add_argument(
        "--verify-key",
        metavar="PUB.pem",
        help="run only if the signature verifies with this public key (the bundle's bundle.sig, or MODEL.sig "
        "beside a --model elsewhere); needs pip install model-signing",
    )
    args = ap.parse_args(argv)
    try:
        model = args.model or default_model(here)
        if args.verify_key:
            verify_before_load(model, here, args.verify_key)
        runner = Runner(model, args.threads)
        if args.self_test:
            ok, detail = self_test(runner, here)
            print(json.dumps({"passed": ok, "detail": detail}) if args.json else detail)
            return 0 if ok else 1
        if args.serve:
            serve(runner, args.serve)
            return 0
        if not args.inputs and not args.text:
            raise InputError("no inputs: give files, folders or --text (labels for a generator)")
        if args.top_k is not None and args.top_k < 1:
            raise InputError(f"--top-k must be a positive integer (got {args.top_k})")
        if runner.meta["task"] == "generate" and not args.out:
            raise InputError("a generator writes images: give --out GRID.png")
        items = processing.read_inputs(runner.meta, args.inputs, args.text)
        bad = [row for _, row in items if isinstance(row, InputError)]
        if bad and not args.keep_going:
            raise bad[0]
        results = runner.answer(items, args.top_k, args.seed)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.out:
        grid = processing.grid_png(processing.generated_images(results))
        tmp = args.out + ".tmp"
        with open(tmp, "wb") as f:
            f.write(grid)
        os.replace(tmp, args.out)
    if args.json:
        print(json.dumps({"model": model, "task": runner.meta["task"], "results": results}, indent=2))
    else:
        for r in results:
            print(format_result(r), file=sys.stderr if "error" in r else sys.stdout)
    return 2 if bad else 0


def _explain(argv: list[str]) -> int:
    """`runner.py explain ...`: the explain/ package that `toolkit edge pack` ships beside this file (it uses
    this module's functions, so this module is registered as `runner` first)."""
    sys.modules.setdefault("runner", sys.modules[__name__])
    try:
        from explain.edge import main as explain_main
    except ImportError:
        print("error: this bundle has no explain/ package beside runner.py; pack it again", file=sys.stderr)
        return 2
    return explain_main(argv)


if __name__ == "__main__":
    sys.exit(main())
