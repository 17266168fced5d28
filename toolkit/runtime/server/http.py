"""The REST side as a bare ASGI app (no framework): Open Inference Protocol V2, Triton's extensions,
KServe V1 `:predict`, Prometheus `/metrics`.

Why bare ASGI: at a few thousand requests a second on two cores, the per-request cost of routing,
middleware and pydantic models in a framework is the whole budget. Here a request is one path split,
one body read (bounded by --max-body-mb: 413 before it is read when Content-Length says so), one orjson
parse and one orjson dump. Every failure goes out as {"error": "..."} with the status Triton uses; an
unexpected exception is logged and answered 500 without taking the server down.

Lingering close: a response sent before the request body was read (413, 401, 404 on a POST) is written at
once, then the server keeps reading and discarding the rest of the body (at most LINGER_BYTES and LINGER_S,
LINGER_IDLE_S without data) before it closes the connection, as nginx's lingering close does. Closing a
socket with unread data makes the kernel send a reset, and a client still sending its body would see a
broken pipe instead of the answer.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from functools import partial
from typing import Any

import orjson

from toolkit.errors import ToolkitError, one_line
from toolkit.runtime.server.metrics import CONTENT_TYPE as METRICS_TYPE
from toolkit.runtime.server.playground import Playground
from toolkit.runtime.server.protocol import ServeError, decode_http, decode_v1, encode_http
from toolkit.runtime.server.service import Service
from toolkit.runtime.server.timeouts import TIMEOUT_LINGER_S

log = logging.getLogger("toolkit.serve")

JSON = b"application/json"
OCTET = b"application/octet-stream"
HEADER_LENGTH = b"inference-header-content-length"
BODY_READ = "toolkit.body_read"  # scope key: the request body was read to its end
BODY_ASKED = "toolkit.body_asked"  # scope key: the body was asked for (uvicorn then sent 100 Continue)
NO_LINGER = (
    "toolkit.no_linger"  # scope key: linger briefly only (TIMEOUT_LINGER_S): a client too slow to wait for
)
# Lingering close (nginx: lingering_time 30 s, lingering_timeout 5 s), plus a byte bound.
LINGER_S = 30.0
LINGER_IDLE_S = 5.0
LINGER_BYTES = 1 << 30


class HttpApp:
    def __init__(self, service: Service) -> None:
        self.service = service
        key = service.config.api_key
        self.expected_auth = f"Bearer {key}".encode() if key else None
        self.max_body = service.config.max_body_bytes
        self.body_timeout = service.config.body_timeout_s  # the whole body within it (0: no limit)
        self.playground = Playground(service.config.ui)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        try:
            status, body, headers = await self._handle(scope, receive)
        except ServeError as exc:
            status, body, headers = exc.status, _error(exc.message), None
            if exc.retry_after is not None:
                headers = _json_headers(body) + [(b"retry-after", str(exc.retry_after).encode())]
        except Exception:
            log.exception("unexpected error on %s %s", scope.get("method"), scope.get("path"))
            status, body, headers = 500, _error("internal server error (logged)"), None
        headers = headers or _json_headers(body)
        if not scope.get(BODY_READ) and _has_body(scope):
            # A client that sent Expect: 100-continue and was never asked for its body sends none: close now.
            expects = any(k == b"expect" and v.lower() == b"100-continue" for k, v in scope["headers"])
            drain = scope.get(BODY_ASKED) or not expects
            linger = TIMEOUT_LINGER_S if scope.get(NO_LINGER) else LINGER_S
            await _respond_and_linger(send, receive, status, body, headers, drain, linger)
            return
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _handle(self, scope: dict, receive: Any) -> tuple[int, bytes, list | None]:
        method = scope["method"]
        parts = scope["path"].strip("/").split("/")
        svc = self.service
        if parts[:2] == ["v2", "health"] and len(parts) == 3 and method == "GET":
            if parts[2] == "live":
                return 200, b'{"live":true}', None
            if parts[2] == "ready":
                ok = svc.ready and not svc.draining
                return (200 if ok else 503), orjson.dumps({"ready": ok}), None
        if self.playground.handles(method, parts):  # GET /: the page, or KServe V1 liveness; GET /ui/*
            return self.playground.answer(scope, parts)
        self._authorize(scope)
        if method == "POST":
            body = await self._read_body(scope, receive)
            if len(parts) >= 4 and parts[0] == "v2" and parts[1] == "models" and parts[-1] == "infer":
                return await self._infer(scope, parts, body)
            if parts[:2] == ["v1", "models"] and len(parts) == 3 and parts[2].endswith(":predict"):
                return 200, await self._predict(parts[2][: -len(":predict")], body), None
            if parts[-1] == "explain" or parts[-1].endswith(":explain"):  # toolkit.runtime.explain.serving
                from toolkit.runtime.explain.serving import route

                return await route(svc, scope, parts, body)
            if parts == ["v2", "repository", "index"]:
                return 200, orjson.dumps(svc.index(_ready_only(body))), None
            if (
                parts[:3] == ["v2", "repository", "models"]
                and len(parts) == 5
                and parts[4] in ("load", "unload")
            ):
                if parts[4] == "load":
                    await svc.reload(parts[3])
                else:
                    await svc.unload(parts[3])
                return 200, b"{}", None
            raise ServeError(404, f"no endpoint POST {scope['path']}")
        if method != "GET":
            raise ServeError(405, f"method {method} is not allowed on {scope['path']}")
        if parts == ["metrics"]:
            body = svc.metrics.render()
            return (
                200,
                body,
                [(b"content-type", METRICS_TYPE.encode()), (b"content-length", str(len(body)).encode())],
            )
        if parts == ["v2"]:
            return 200, orjson.dumps(svc.server_metadata()), None
        if parts[:2] == ["v2", "models"] and len(parts) >= 3:
            return self._model_get(parts)
        if parts[:2] == ["v1", "models"] and len(parts) == 3:
            model = svc.model(parts[2])
            return 200, orjson.dumps({"name": model.name, "ready": True}), None
        raise ServeError(404, f"no endpoint GET {scope['path']}")

    def _model_get(self, parts: list[str]) -> tuple[int, bytes, None]:
        svc = self.service
        if parts[2] == "stats" and len(parts) == 3:
            return 200, orjson.dumps(svc.model_statistics()), None
        name, rest = parts[2], parts[3:]
        version = None
        if rest[:1] == ["versions"]:
            if len(rest) < 2:
                raise ServeError(404, "no endpoint: a version number must follow /versions/")
            version, rest = rest[1], rest[2:]
        model = svc.model(name, version)
        if rest == []:
            return 200, orjson.dumps(model.metadata(svc.versions(name))), None
        if rest == ["ready"]:
            return 200, orjson.dumps({"name": name, "ready": svc.ready}), None
        if rest == ["config"]:
            return 200, orjson.dumps(svc.model_config(name, version)), None
        if rest == ["stats"]:
            return 200, orjson.dumps(svc.model_statistics(name, version)), None
        if rest == ["toolkit"]:  # the `toolkit` metadata document (the playground builds its forms from it)
            if model.meta is None:
                raise ServeError(
                    404, f"model {name!r} has no toolkit metadata (it was not exported by toolkit)"
                )
            return 200, orjson.dumps(model.meta), None
        raise ServeError(404, f"no endpoint GET /{'/'.join(parts)}")

    async def _infer(self, scope: dict, parts: list[str], body: bytes) -> tuple[int, bytes, list | None]:
        svc = self.service
        name = parts[2]
        version = parts[4] if len(parts) == 6 and parts[3] == "versions" else None
        if len(parts) not in (4, 6) or (len(parts) == 6 and parts[3] != "versions"):
            raise ServeError(404, f"no endpoint POST {scope['path']}")
        model = svc.model(name, version)
        header_length = None
        for k, v in scope["headers"]:
            if k == HEADER_LENGTH:
                try:
                    header_length = int(v)
                except ValueError:
                    raise ServeError(
                        400, f"Inference-Header-Content-Length must be an integer, got {v!r}"
                    ) from None
        try:
            request = decode_http(body, header_length, partial(svc.check_input, model))
        except ServeError:
            svc.metrics.for_model(model.name, model.version).failed(0.0)
            raise
        outputs = await svc.infer(model, request)
        out, out_header = encode_http(model.name, model.version, request, outputs)
        if out_header is None:
            return 200, out, None
        headers = [
            (b"content-type", OCTET),
            (b"content-length", str(len(out)).encode()),
            (b"inference-header-content-length", str(out_header).encode()),
        ]
        return 200, out, headers

    async def _predict(self, name: str, body: bytes) -> bytes:
        """KServe V1: {"instances": [raw inputs]} -> {"predictions": [...]}, pre/post-processing from the
        model's own metadata (toolkit.runtime.predict)."""
        svc = self.service
        model = svc.model(name)
        if model.meta is None:
            raise ServeError(400, f"model {name!r} has no toolkit metadata; use the V2 /infer endpoint")
        doc, instances = decode_v1(body)
        try:
            from toolkit.runtime.predict import feeds_from_instances, predictions_from_outputs
        except ImportError:
            raise ServeError(
                501, "the V1 :predict endpoint needs toolkit.runtime.predict, not installed"
            ) from None
        try:
            feeds = feeds_from_instances(model.meta, instances)
        except ToolkitError as exc:
            raise ServeError(400, str(exc)) from None
        except (ValueError, TypeError, OverflowError) as exc:  # an instance the checks did not foresee
            raise ServeError(400, f"cannot prepare these instances for {name!r}: {exc}") from None
        from toolkit.runtime.server.protocol import InferRequest, Tensor, datatype_of

        tensors = [Tensor(k, datatype_of(v), list(v.shape), v) for k, v in feeds.items()]
        outputs = await svc.infer(model, InferRequest(tensors))
        try:
            predictions = predictions_from_outputs(model.meta, outputs)
        except ToolkitError as exc:
            raise ServeError(400, str(exc)) from None
        return orjson.dumps({"predictions": predictions}, option=orjson.OPT_SERIALIZE_NUMPY)

    def _authorize(self, scope: dict) -> None:
        if self.expected_auth is None:
            return
        for k, v in scope["headers"]:
            if k == b"authorization" and hmac.compare_digest(v, self.expected_auth):
                return
        raise ServeError(401, "missing or wrong API key: send the header 'Authorization: Bearer <key>'")

    async def _read_body(self, scope: dict, receive: Any) -> bytes:
        limit = self.max_body
        for k, v in scope["headers"]:
            if k == b"content-length" and v.isdigit() and int(v) > limit:
                raise ServeError(
                    413, f"request body of {int(v)} bytes exceeds the limit of {limit} bytes (--max-body-mb)"
                )
        chunks = []
        size = 0
        scope[BODY_ASKED] = True
        deadline = time.monotonic() + self.body_timeout if self.body_timeout > 0 else None
        while True:
            message = await self._receive_by(deadline, scope, receive)
            if message["type"] == "http.disconnect":
                raise ServeError(400, "the client disconnected")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise ServeError(413, f"request body exceeds the limit of {limit} bytes (--max-body-mb)")
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        scope[BODY_READ] = True
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _receive_by(self, deadline: float | None, scope: dict, receive: Any) -> dict:
        """The next body message, or a 408 (and no lingering) once the body deadline has passed."""
        if deadline is None:
            return await receive()
        try:
            return await asyncio.wait_for(receive(), max(deadline - time.monotonic(), 0.001))
        except asyncio.TimeoutError:
            scope[NO_LINGER] = True
            raise ServeError(
                408, f"request body not received within {self.body_timeout:g} s (--body-timeout-s)"
            ) from None


def _error(message: str) -> bytes:
    return orjson.dumps({"error": one_line(message)})  # the V2 error body: {"error": "one line"}


def _ready_only(body: bytes) -> bool:
    """The `ready` flag of a repository index request body ({} or empty: every model)."""
    if not body.strip():
        return False
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ServeError(400, f"the request body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("ready", False), bool):
        raise ServeError(400, 'the index request body must be {} or {"ready": true|false}')
    return doc.get("ready", False)


def _json_headers(body: bytes) -> list[tuple[bytes, bytes]]:
    return [(b"content-type", JSON), (b"content-length", str(len(body)).encode())]


def _has_body(scope: dict) -> bool:
    """Whether the request announced a body (a Content-Length above 0, or chunked transfer encoding)."""
    for k, v in scope["headers"]:
        if (k == b"content-length" and v.strip() not in (b"0", b"")) or k == b"transfer-encoding":
            return True
    return False


async def _respond_and_linger(
    send: Any,
    receive: Any,
    status: int,
    body: bytes,
    headers: list,
    drain: bool = True,
    linger: float = LINGER_S,
) -> None:
    """Send the whole response now, read and discard what is left of the request body (bounded), then
    close: the client gets its answer even while it is still sending (a reset would lose it)."""
    await send(
        {"type": "http.response.start", "status": status, "headers": [*headers, (b"connection", b"close")]}
    )
    await send({"type": "http.response.body", "body": body, "more_body": True})
    deadline = time.monotonic() + linger
    discarded = 0
    while drain and discarded < LINGER_BYTES:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            message = await asyncio.wait_for(receive(), min(left, LINGER_IDLE_S))
        except asyncio.TimeoutError:
            break
        if message["type"] != "http.request":
            break
        discarded += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    await send({"type": "http.response.body", "body": b""})  # ends the response; uvicorn closes
