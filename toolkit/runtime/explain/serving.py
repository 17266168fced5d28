"""The server's explain endpoints (`toolkit serve`), on the engine the CLI and the edge runner use.

    POST /v2/models/NAME[/versions/V]/explain   V2 tensors in (the model's preprocessed inputs, JSON or
        binary, as for /infer), attribution tensors out: `attributions` FP32 (N, *map shape: H x W, features,
        steps or tokens), `score` and `baseline_score` FP32 (N), `target` BYTES (N), and `tokens` BYTES
        (N, T) for text models (rows padded with "" and 0).
    POST /v1/models/NAME:explain                KServe V1 on raw inputs: {"instances": [...]} (the :predict
        forms: pixels or {"b64": PNG}, feature rows, series values, texts) -> {"explanations": [...]}, one
        JSON result per instance, as `toolkit explain --json` prints them.

Both take "parameters": {"method", "target", "samples", "seed"} in the body. The work runs on the server's
thread pool, its perturbation batches straight on the model's session (not through the request batcher, whose
batch limit is for requests).
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

import numpy as np
import orjson

from toolkit.runtime.explain import engine
from toolkit.runtime.explain._core import InputError, from_model_layout, prepare_instance
from toolkit.runtime.server.protocol import ServeError, decode_http, decode_v1, encode_http

HEADER_LENGTH = b"inference-header-content-length"


async def route(service: Any, scope: dict, parts: list[str], body: bytes) -> tuple[int, bytes, list | None]:
    """Answer POST .../explain (V2) or /v1/models/NAME:explain; 404 for any other path ending so."""
    if parts[:2] == ["v1", "models"] and len(parts) == 3 and parts[2].endswith(":explain"):
        model = service.model(parts[2][: -len(":explain")])
        return 200, await explain_v1(service, model, body), None
    if parts[:2] == ["v2", "models"] and parts[-1] == "explain" and len(parts) in (4, 6):
        if len(parts) == 6 and parts[3] != "versions":
            raise ServeError(404, f"no endpoint POST {scope['path']}")
        model = service.model(parts[2], parts[4] if len(parts) == 6 else None)
        out, header = await explain_v2(service, model, body, _header_length(scope))
        if header is None:
            return 200, out, None
        headers = [
            (b"content-type", b"application/octet-stream"),
            (b"content-length", str(len(out)).encode()),
            (HEADER_LENGTH, str(header).encode()),
        ]
        return 200, out, headers
    raise ServeError(404, f"no endpoint POST {scope['path']}")


def _header_length(scope: dict) -> int | None:
    for k, v in scope["headers"]:
        if k == HEADER_LENGTH:
            try:
                return int(v)
            except ValueError:
                raise ServeError(
                    400, f"Inference-Header-Content-Length must be an integer, got {v!r}"
                ) from None
    return None


def options(params: Any) -> engine.Options:
    """The body's "parameters" -> engine options (400 for a wrong type)."""
    if params is None:
        return engine.Options()
    if not isinstance(params, dict):
        raise ServeError(400, '"parameters" must be an object {method, target, samples, seed}')
    method, target = params.get("method"), params.get("target")
    samples, seed = params.get("samples"), params.get("seed", 0)
    if method is not None and not isinstance(method, str):
        raise ServeError(400, f"parameters.method must be a string, got {method!r}")
    if target is not None and (isinstance(target, bool) or not isinstance(target, (str, int))):
        raise ServeError(400, f"parameters.target must be a label or an index, got {target!r}")
    for key, value in (("samples", samples), ("seed", seed)):
        if value is not None and (type(value) is not int or value < 0):
            raise ServeError(400, f"parameters.{key} must be a non-negative integer, got {value!r}")
    return engine.Options(method, None if target is None else str(target), samples, seed)


async def _explain(service: Any, model: Any, items: list, opts: engine.Options) -> list[dict]:
    """Run the engine on the server's thread pool; a request the engine refuses is a 400."""
    loop = asyncio.get_running_loop()
    try:
        results = await loop.run_in_executor(
            service.executor, partial(engine.explain_items, model.meta, model.run, items, opts)
        )
    except InputError as exc:
        raise ServeError(400, str(exc)) from None
    errors = [r["error"] for r in results if "error" in r]
    if errors:
        raise ServeError(400, errors[0])
    return results


def _meta(model: Any) -> dict:
    if model.meta is None:
        raise ServeError(400, f"model {model.name!r} has no toolkit metadata; explanations are made from it")
    try:
        engine.kind_of(model.meta)
    except InputError as exc:
        raise ServeError(400, str(exc)) from None
    return model.meta


async def explain_v1(service: Any, model: Any, body: bytes) -> bytes:
    meta = _meta(model)
    doc, instances = decode_v1(body)
    opts = options(doc.get("parameters"))
    reading = engine.reading_meta(meta)
    try:
        items = [
            (f"instance {i}", prepare_instance(reading, x, f"instance {i}")) for i, x in enumerate(instances)
        ]
    except (InputError, ValueError, TypeError) as exc:
        raise ServeError(400, str(exc)) from None
    results = await _explain(service, model, items, opts)
    return orjson.dumps({"explanations": results})


async def explain_v2(
    service: Any, model: Any, body: bytes, header_length: int | None
) -> tuple[bytes, int | None]:
    meta = _meta(model)
    request = decode_http(body, header_length, partial(service.check_input, model))
    feeds = service.check(model, request)
    head = body[:header_length] if header_length is not None else body
    opts = options(orjson.loads(head).get("parameters"))
    items = [(f"row {i}", row) for i, row in enumerate(_rows(meta, feeds))]
    results = await _explain(service, model, items, opts)
    request.outputs = None  # the explanation's tensors, whatever /infer outputs were named
    return encode_http(model.name, model.version, request, tensors(results))


def _rows(meta: dict, feeds: dict[str, np.ndarray]) -> list:
    """The batch of the model's first input, one row each: arrays, token-id lists (padding kept: the engine
    drops ids 0) or strings."""
    array = from_model_layout(meta, feeds[meta["inputs"][0]["name"]])  # NHWC, BGR: back to rows
    if array.dtype == object:
        return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in array.reshape(-1)]
    if array.dtype.kind in "iu":
        return [list(map(int, r)) for r in array]
    return list(array)


def tensors(results: list[dict]) -> dict[str, np.ndarray]:
    """Results -> output tensors; ragged attributions (texts of different lengths) padded with 0."""
    maps = [np.asarray(r["attributions"], dtype=np.float32) for r in results]
    width = max(m.size for m in maps)
    out: dict[str, np.ndarray] = {}
    if len({m.shape for m in maps}) == 1:
        out["attributions"] = np.stack(maps)
    else:
        out["attributions"] = np.stack([np.pad(m.ravel(), (0, width - m.size)) for m in maps])
    out["score"] = np.asarray([r["score"] for r in results], dtype=np.float32)
    if all("baseline_score" in r for r in results):
        out["baseline_score"] = np.asarray([r["baseline_score"] for r in results], dtype=np.float32)
    out["target"] = np.asarray([str(r["target"]) for r in results], dtype=object)
    if "tokens" in results[0]:
        out["tokens"] = np.asarray(
            [r["tokens"] + [""] * (width - len(r["tokens"])) for r in results], dtype=object
        )
    return out
