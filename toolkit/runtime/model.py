"""An exported model as the runtime sees it: an onnxruntime session plus its `toolkit` metadata document.

`OnnxModel(path)` loads the file on the available providers and refuses, with one line, what it cannot
trust: a missing, truncated or non-ONNX file, a model without the metadata document, or one whose schema
is newer than this toolkit (with `bare=True`, a model without the document gets a bare one: its ports).
`read_metadata(path)` reads only the document (with the onnx package when it is
installed, which parses the file without building a session; otherwise through onnxruntime).

Quantize, validate, predict and the server build on this module; it needs only numpy and onnxruntime.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.errors import ToolkitError, one_line
from toolkit.runtime.schema import METADATA_KEY, SCHEMA, SCHEMA_VERSION, schema_version

# onnxruntime's type strings -> numpy dtypes ("tensor(string)" is numpy's object dtype).
ORT_DTYPES = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(float16)": "float16",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int16)": "int16",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
    "tensor(string)": "object",
}


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output: its name, numpy dtype and shape (a str per symbolic dim, None if unknown)."""

    name: str
    dtype: str
    shape: tuple[int | str | None, ...]

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}


def available_providers() -> list[str]:
    """Execution providers of the installed onnxruntime that run a graph locally, fastest first."""
    from toolkit.runtime.providers import available

    return available()


class OnnxModel:
    """One exported model: `run(feeds)` returns {output name: array}; `.meta` is its metadata document.

    `providers`: `cpu`, `cuda`, `tensorrt` (or onnxruntime names, or a list of them) in order of preference
    (default: every available one); the CPU provider is always added last so that nodes other providers
    cannot run still run. A provider that is missing or does not start falls back to CPU with a warning on
    stderr (`.fallback` holds the reason), or raises with `strict` (see toolkit.runtime.providers)."""

    def __init__(
        self,
        path: str | Path,
        providers: str | Sequence[str] | None = None,
        threads: int | None = None,
        strict: bool | None = None,
        bare: bool = False,
    ) -> None:
        import onnxruntime as ort

        from toolkit.runtime.providers import open_session, warn

        self.path = Path(path)
        _check_file(self.path)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3  # errors only: a provider fall-back is reported once, below, in our words
        if threads:
            opts.intra_op_num_threads = threads
        try:
            self.session, self.fallback = open_session(self.path, providers, options=opts, strict=strict)
        except ToolkitError:
            raise
        except Exception as exc:
            if type(exc).__name__ == "InvalidProtobuf" or "No graph was found" in str(exc):
                raise ToolkitError(_unreadable(self.path)) from None
            # The file parses but this onnxruntime cannot run it (an operator or opset it lacks): say why.
            raise ToolkitError(
                f"onnxruntime {ort.__version__} cannot load {self.path}: {one_line(exc)}"
            ) from None
        if self.fallback:
            warn(self.fallback)
        raw = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        self.inputs = [_spec(v) for v in self.session.get_inputs()]
        self.outputs = [_spec(v) for v in self.session.get_outputs()]
        if raw is None and bare:  # a foreign model: its ports are all there is to know
            ports = [[_bare_port(s) for s in specs] for specs in (self.inputs, self.outputs)]
            self.meta: dict[str, Any] = bare_metadata(*ports)
        else:
            self.meta = parse_metadata(raw, self.path)

    @property
    def providers(self) -> list[str]:
        """The providers the session really uses (onnxruntime drops those it cannot initialize)."""
        return self.session.get_providers()

    @property
    def task(self) -> str:
        return self.meta["task"]

    @property
    def labels(self) -> list[str] | None:
        return self.meta.get("labels")

    @property
    def input_names(self) -> list[str]:
        return [s.name for s in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [s.name for s in self.outputs]

    def run(self, feeds: Mapping[str, Any], outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Run one batch. Feeds are converted to each input's dtype; a missing or unknown input name and
        an input the graph rejects (wrong shape or rank) are ToolkitErrors with onnxruntime's reason."""
        missing = [n for n in self.input_names if n not in feeds]
        extra = [n for n in feeds if n not in self.input_names]
        if missing or extra:
            what = f"missing input {missing[0]!r}" if missing else f"unknown input {extra[0]!r}"
            raise ToolkitError(f"{what}; the model takes: {', '.join(self.input_names)}")
        arrays = {s.name: np.asarray(feeds[s.name], dtype=s.dtype) for s in self.inputs}
        names = list(outputs) if outputs is not None else self.output_names
        try:
            values = self.session.run(names, arrays)
        except Exception as exc:
            shapes = ", ".join(f"{k} {list(v.shape)}" for k, v in arrays.items())
            raise ToolkitError(f"the model fails on inputs {shapes}: {one_line(exc)}") from None
        return dict(zip(names, values))

    def run_batches(
        self, feeds: Mapping[str, Any], batch_size: int = 64, outputs: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Run inputs of any length through the model `batch_size` rows at a time; outputs concatenated."""
        arrays = {k: np.asarray(v) for k, v in feeds.items()}
        n = len(next(iter(arrays.values()))) if arrays else 0
        parts = [
            self.run({k: v[i : i + batch_size] for k, v in arrays.items()}, outputs)
            for i in range(0, n, batch_size)
        ]
        if not parts:
            raise ToolkitError("no inputs to run (0 rows)")
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def read_metadata(path: str | Path, bare: bool = False) -> dict[str, Any]:
    """The `toolkit` metadata document of a model file, without building an inference session when the
    onnx package is installed (the training extra); otherwise onnxruntime reads it.

    `bare`: a model without the document (one the toolkit did not export or import) gets a bare one
    instead of an error: its graph's ports, task None (see bare_metadata); info and bench need no more."""
    path = Path(path)
    try:
        proto = load_proto(path)
    except ImportError:
        if bare:
            return OnnxModel(path, providers=["CPUExecutionProvider"], bare=True).meta
        return OnnxModel(path, providers=["CPUExecutionProvider"]).meta
    if bare and not has_metadata(proto):
        return bare_metadata(
            [graph_port(v) for v in graph_inputs(proto)], [graph_port(v) for v in proto.graph.output]
        )
    return metadata_of(proto, path)


def has_metadata(proto: Any) -> bool:
    """Whether an onnx.ModelProto carries a `toolkit` document (exported or imported)."""
    return any(p.key == METADATA_KEY for p in proto.metadata_props)


def bare_metadata(inputs: list[dict[str, Any]], outputs: list[dict[str, Any]]) -> dict[str, Any]:
    """What the runtime knows of a model without metadata: its ports; no task, labels or preprocessing."""
    return {
        "schema": None,
        "task": None,
        "arch": "onnx",
        "role": "model",
        "bare": True,
        "inputs": inputs,
        "outputs": outputs,
        "labels": None,
    }


def graph_inputs(proto: Any) -> list[Any]:
    """The graph's real inputs (models of IR version < 4 also list their weights as inputs)."""
    weights = {t.name for t in proto.graph.initializer}
    return [v for v in proto.graph.input if v.name not in weights]


def graph_port(value: Any) -> dict[str, Any]:
    """An onnx ValueInfoProto as {name, dtype, shape}: symbolic dims by name, unknown ones None; dtype
    None for what is not a tensor (a sequence of maps: skl2onnx's ZipMap output)."""
    from onnx import helper

    if not value.type.HasField("tensor_type"):
        return {"name": value.name, "dtype": None, "shape": [], "type": value.type.WhichOneof("value")}
    t = value.type.tensor_type
    dims = [
        d.dim_param if d.HasField("dim_param") else (d.dim_value if d.HasField("dim_value") else None)
        for d in t.shape.dim
    ]
    dtype = helper.tensor_dtype_to_np_dtype(t.elem_type).name if t.elem_type else None
    return {"name": value.name, "dtype": "string" if dtype == "object" else dtype, "shape": dims}


def load_proto(path: str | Path) -> Any:
    """The onnx.ModelProto of a file, weights left where they are; ImportError when onnx is missing."""
    import onnx
    from google.protobuf.message import DecodeError

    path = Path(path)
    _check_file(path)
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except DecodeError:
        raise ToolkitError(_unreadable(path)) from None
    except Exception as exc:  # onnx's own errors (an unreadable external-data reference, ...)
        raise ToolkitError(f"onnx cannot read {path}: {one_line(exc)}") from None
    if not proto.ir_version or not proto.HasField("graph"):
        raise ToolkitError(_unreadable(path))
    return proto


def metadata_of(proto: Any, path: Path) -> dict[str, Any]:
    """The parsed, version-checked document of an onnx.ModelProto."""
    props = {p.key: p.value for p in proto.metadata_props}
    return parse_metadata(props.get(METADATA_KEY), path)


def parse_metadata(raw: str | None, path: Path) -> dict[str, Any]:
    """The metadata JSON as a dict; ToolkitError when it is absent, not JSON or from a newer schema."""
    if raw is None:
        raise ToolkitError(
            f"{path} has no `{METADATA_KEY}` metadata: it was not exported by `toolkit export` "
            "(or its metadata was stripped)"
        )
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ToolkitError(f"{path}: its `{METADATA_KEY}` metadata is not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise ToolkitError(f"{path}: its `{METADATA_KEY}` metadata is not a JSON object")
    name = doc.get("schema")
    version = schema_version(name)
    if version is None:
        raise ToolkitError(f"{path}: unknown metadata schema {name!r}; this toolkit reads {SCHEMA}")
    if version > SCHEMA_VERSION:
        raise ToolkitError(
            f"{path}: metadata schema {name} is newer than this toolkit understands ({SCHEMA}); "
            "upgrade toolkit (pip install -U toolkit)"
        )
    return doc


def _check_file(path: Path) -> None:
    if not path.exists():
        raise ToolkitError(f"model not found: {path}")
    if not path.is_file():
        raise ToolkitError(f"{path} is a directory; give the .onnx file (such as {path / 'model.onnx'})")


def _unreadable(path: Path) -> str:
    """Why a file that does not parse as a model cannot be loaded, told apart by its first byte: a
    serialized ModelProto starts with its ir_version field (tag 0x08), so a file that does is damaged."""
    with open(path, "rb") as f:
        head = f.read(1)
    if not head:
        return f"{path} is empty, not an ONNX model"
    if head == b"\x08":
        return f"{path} is a truncated or corrupt ONNX model (it does not parse); export it again"
    return f"{path} is not an ONNX model (it does not parse as one)"


def _bare_port(spec: TensorSpec) -> dict[str, Any]:
    d = spec.describe()
    d["dtype"] = "string" if d["dtype"] == "object" else d["dtype"]
    return d


def _spec(value: Any) -> TensorSpec:
    dtype = ORT_DTYPES.get(value.type, value.type)
    return TensorSpec(value.name, dtype, tuple(value.shape))
