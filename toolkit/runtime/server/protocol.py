"""Open Inference Protocol (KServe V2) tensors on the wire: JSON and Triton's binary tensor extension.

The V2 REST body is JSON; Triton's binary extension appends raw little-endian tensors after it, the JSON
length given by the `Inference-Header-Content-Length` header and each tensor's byte count by its
`binary_data_size` parameter (BYTES elements are a 4-byte little-endian length, then the bytes). The Python
`tritonclient.http` sends inputs this way by default and asks for binary outputs with `binary_data`, so a
server that wants existing clients must speak both. Everything here is pure: bytes in, arrays out and back,
and every client mistake is a `ServeError` carrying the HTTP status and a message naming the mismatch.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

# V2 datatype <-> numpy dtype. BYTES travels as numpy object arrays of str (what onnxruntime takes for
# tensor(string)).
DATATYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(object),
}
# numpy dtype name (as the runtime's TensorSpec writes it) -> V2 datatype
DATATYPE_OF = {
    "bool": "BOOL",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "float16": "FP16",
    "float32": "FP32",
    "float64": "FP64",
    "object": "BYTES",
}
ALLOWED = ", ".join(DATATYPES)


class ServeError(Exception):
    """A request the server refuses: `status` is the HTTP status, the message goes out as {"error": ...}."""

    def __init__(self, status: int, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after  # seconds, sent as Retry-After (HTTP) / retry pushback (gRPC)


@dataclass
class Tensor:
    name: str
    datatype: str
    shape: list[int]
    array: np.ndarray


@dataclass
class InferRequest:
    """A decoded request: inputs as arrays; `outputs` the requested names (None = all) and, per name,
    whether the client wants it binary."""

    inputs: list[Tensor]
    id: str | None = None
    outputs: list[str] | None = None
    binary: dict[str, bool] = field(default_factory=dict)
    binary_default: bool = False
    timeout_us: int | None = None  # the request's `timeout` parameter (Triton's, microseconds): queue limit


def _bad(message: str) -> ServeError:
    return ServeError(400, message)


def _shape(value: Any, where: str) -> list[int]:
    if not isinstance(value, list) or not all(type(d) is int and d >= 0 for d in value):
        raise _bad(f"{where}: 'shape' must be a list of non-negative integers, got {value!r}")
    return value


def _count(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def decode_http(
    body: bytes, header_length: int | None = None, check: Callable[[str, str, list[int]], None] | None = None
) -> InferRequest:
    """An /infer body (JSON, or JSON + binary tensors when `header_length` is given) -> InferRequest.

    `check(name, datatype, shape)` is called for each input before its data is read, so a request that
    does not fit the model is refused for that (unknown name, wrong datatype or shape), not for its data."""
    if header_length is not None:
        if header_length < 0 or header_length > len(body):
            raise _bad(
                f"Inference-Header-Content-Length {header_length} is outside the body ({len(body)} bytes)"
            )
        head, tail = body[:header_length], memoryview(body)[header_length:]
    else:
        head, tail = body, memoryview(b"")
    try:
        doc = orjson.loads(head)
    except orjson.JSONDecodeError as exc:
        raise _bad(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise _bad("the request body must be a JSON object with an 'inputs' list")
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise _bad("the request needs a non-empty 'inputs' list of {name, shape, datatype, data}")
    offset = 0
    inputs = []
    for i, item in enumerate(raw_inputs):
        if not isinstance(item, dict):
            raise _bad(f"inputs[{i}] must be an object with name, shape, datatype and data")
        name, datatype = item.get("name"), item.get("datatype")
        if not isinstance(name, str):
            raise _bad(f"inputs[{i}] needs a 'name' string")
        if not isinstance(datatype, str) or datatype not in DATATYPES:
            raise _bad(f"input {name!r}: unknown datatype {datatype!r}; allowed: {ALLOWED}")
        shape = _shape(item.get("shape"), f"input {name!r}")
        if check is not None:
            check(name, datatype, shape)
        params = item.get("parameters") or {}
        size = params.get("binary_data_size") if isinstance(params, dict) else None
        if size is not None:
            if type(size) is not int or size < 0 or offset + size > len(tail):
                raise _bad(
                    f"input {name!r}: binary_data_size {size!r} runs past the {len(tail)} binary bytes sent"
                )
            array = from_raw(tail[offset : offset + size], datatype, shape, name)
            offset += size
        else:
            if "data" not in item:
                raise _bad(f"input {name!r} has neither 'data' nor a binary_data_size parameter")
            array = from_json(item["data"], datatype, shape, name)
        inputs.append(Tensor(name, datatype, shape, array))
    if offset != len(tail):
        raise _bad(f"{len(tail) - offset} binary bytes after the last binary input are not claimed by any")
    request = InferRequest(inputs, id=_id(doc.get("id")))
    params = doc.get("parameters")
    if isinstance(params, dict):
        request.binary_default = bool(params.get("binary_data_output"))
        request.timeout_us = timeout_parameter(params.get("timeout"))
    raw_outputs = doc.get("outputs")
    if raw_outputs is not None:
        if not isinstance(raw_outputs, list):
            raise _bad("'outputs' must be a list of {name, parameters?}")
        request.outputs = []
        for item in raw_outputs:
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise _bad("each requested output needs a 'name' string")
            request.outputs.append(item["name"])
            p = item.get("parameters")
            if isinstance(p, dict) and "binary_data" in p:
                request.binary[item["name"]] = bool(p["binary_data"])
    return request


def decode_v1(body: bytes) -> tuple[dict[str, Any], list[Any]]:
    """A KServe V1 request body (:predict, :explain): the document and its non-empty "instances" list."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ServeError(400, f"the request body is not valid JSON: {exc}") from None
    instances = doc.get("instances") if isinstance(doc, dict) else None
    if not isinstance(instances, list) or not instances:
        raise ServeError(400, 'the request needs a non-empty "instances" list')
    return doc, instances


def timeout_parameter(value: Any) -> int | None:
    """The request's `timeout` parameter (microseconds, as tritonclient sends it; 0 or absent: none)."""
    if value is None:
        return None
    if type(value) is not int or value < 0:
        raise _bad(f"the 'timeout' parameter must be a whole number of microseconds >= 0, got {value!r}")
    return value or None


def _id(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise _bad(f"'id' must be a string, got {value!r}")


def from_json(data: Any, datatype: str, shape: list[int], name: str) -> np.ndarray:
    """JSON `data` (flat or nested, row-major) -> an array of `shape`."""
    n = _count(shape)
    if datatype == "BYTES":
        flat = _flatten(data) if isinstance(data, list) else [data]
        if not all(isinstance(v, str) for v in flat):
            raise _bad(f"input {name!r}: BYTES data must be strings")
        array = np.empty(len(flat), dtype=object)
        array[:] = flat
    else:
        try:
            array = np.asarray(data, dtype=DATATYPES[datatype])
        except (ValueError, TypeError, OverflowError):
            raise _bad(
                f"input {name!r}: data is not a (nested) list of numbers that fit {datatype}"
            ) from None
        if datatype != "BOOL" and datatype[:2] != "FP" and _has_non_int(data):
            raise _bad(f"input {name!r}: {datatype} data must be integers")
    if array.size != n:
        raise _bad(f"input {name!r}: {array.size} values do not fill shape {shape} ({n} values)")
    return array.reshape(shape)


def _has_non_int(data: Any) -> bool:
    """Cheap check on the first value: JSON floats sent for an integer tensor are a datatype mistake."""
    while isinstance(data, list) and data:
        data = data[0]
    return isinstance(data, float)


def _flatten(data: list) -> list:
    out: list = []
    stack = [iter(data)]
    while stack:
        for v in stack[-1]:
            if isinstance(v, list):
                stack.append(iter(v))
                break
            out.append(v)
        else:
            stack.pop()
    return out


def from_raw(buf: memoryview | bytes, datatype: str, shape: list[int], name: str) -> np.ndarray:
    """Raw little-endian bytes (the binary extension, gRPC raw_input_contents) -> an array of `shape`."""
    n = _count(shape)
    if datatype == "BYTES":
        items = unpack_bytes(buf, name)
        if len(items) != n:
            raise _bad(f"input {name!r}: {len(items)} BYTES elements do not fill shape {shape} ({n})")
        array = np.empty(n, dtype=object)
        try:
            array[:] = [b.decode("utf-8") for b in items]
        except UnicodeDecodeError:
            raise _bad(f"input {name!r}: BYTES elements must be UTF-8 text for this model") from None
        return array.reshape(shape)
    dtype = DATATYPES[datatype]
    if len(buf) != n * dtype.itemsize:
        raise _bad(
            f"input {name!r}: {len(buf)} bytes do not fill shape {shape} of {datatype} "
            f"({n * dtype.itemsize} bytes)"
        )
    return np.frombuffer(buf, dtype=dtype).reshape(shape)


def unpack_bytes(buf: memoryview | bytes, name: str) -> list[bytes]:
    buf = bytes(buf)
    items, i = [], 0
    while i < len(buf):
        if i + 4 > len(buf):
            raise _bad(f"input {name!r}: BYTES data ends inside a 4-byte length prefix")
        (k,) = struct.unpack_from("<I", buf, i)
        i += 4
        if i + k > len(buf):
            raise _bad(f"input {name!r}: a BYTES element of {k} bytes runs past the data")
        items.append(buf[i : i + k])
        i += k
    return items


def pack_bytes(array: np.ndarray) -> bytes:
    parts = []
    for v in array.ravel():
        b = v if isinstance(v, bytes) else str(v).encode("utf-8")
        parts.append(struct.pack("<I", len(b)))
        parts.append(b)
    return b"".join(parts)


def to_raw(array: np.ndarray, datatype: str) -> bytes:
    if datatype == "BYTES":
        return pack_bytes(array)
    return np.ascontiguousarray(array, dtype=DATATYPES[datatype]).tobytes()


_BY_DTYPE = {np.dtype(name): datatype for name, datatype in DATATYPE_OF.items()}


def datatype_of(array: np.ndarray) -> str:
    """The V2 datatype of an array (str/bytes arrays are BYTES)."""
    found = _BY_DTYPE.get(array.dtype) or DATATYPE_OF.get(array.dtype.name)
    if found is None:
        if array.dtype.kind not in "OSU":
            raise ServeError(500, f"the model returned dtype {array.dtype}, which V2 has no datatype for")
        found = "BYTES"
    return found


def encode_http(
    model: str,
    version: str,
    request: InferRequest,
    outputs: dict[str, np.ndarray],
) -> tuple[bytes, int | None]:
    """Outputs -> (body, Inference-Header-Content-Length or None when every output is JSON)."""
    items = []
    blobs = []
    for name, array in outputs.items():
        datatype = datatype_of(array)
        item: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if request.binary.get(name, request.binary_default):
            raw = to_raw(array, datatype)
            item["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        elif datatype == "BYTES":
            item["data"] = [
                v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in array.ravel()
            ]
        elif datatype == "FP16":
            item["data"] = array.astype(np.float32).ravel()
        else:
            item["data"] = array.ravel()
        items.append(item)
    doc: dict[str, Any] = {"model_name": model, "model_version": version, "outputs": items}
    if request.id is not None:
        doc["id"] = request.id
    head = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return head, None
    return head + b"".join(blobs), len(head)
