"""The gRPC side: `inference.GRPCInferenceService` of the Open Inference Protocol, as tritonclient.grpc
calls it (inputs in raw_input_contents or typed contents; outputs always in raw_output_contents, the only
form tritonclient.grpc decodes).

It runs on grpcio's thread-pool server; each ModelInfer hands its checked feeds to the same batcher the
REST side uses, on the server's event loop, so gRPC and REST requests batch together. The message size
limit is --max-body-mb for both directions (gRPC's own default, 4 MB, is too small for image batches).

Triton's extensions answer from the same service calls as REST (ModelConfig, ModelStatistics,
RepositoryIndex, RepositoryModelLoad/Unload), the dicts turned into messages by protobuf's json_format, so
both transports give the same answer. A refused request carries the status Triton uses (UNAVAILABLE for a
full queue, with `retry-after` and gRPC's own `grpc-retry-pushback-ms` in the trailing metadata); a client's
deadline bounds its wait in the queue, and a call the client gives up on leaves the queue.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import grpc
import numpy as np
from google.protobuf import json_format

from toolkit.runtime.server import grpc_service_pb2 as pb
from toolkit.runtime.server import grpc_service_pb2_grpc as pb_grpc
from toolkit.runtime.server.protocol import (
    DATATYPES,
    InferRequest,
    ServeError,
    Tensor,
    datatype_of,
    from_raw,
    timeout_parameter,
    to_raw,
)
from toolkit.runtime.server.service import Service

log = logging.getLogger("toolkit.serve")

GRPC_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    501: grpc.StatusCode.UNIMPLEMENTED,
    503: grpc.StatusCode.UNAVAILABLE,
}
# InferTensorContents field per datatype (typed contents, for clients that do not send raw bytes)
CONTENTS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, service: Service, loop: asyncio.AbstractEventLoop) -> None:
        self.service = service
        self.loop = loop
        key = service.config.api_key
        self.expected_auth = f"Bearer {key}" if key else None

    def _authorize(self, context: grpc.ServicerContext) -> None:
        if self.expected_auth is None:
            return
        for k, v in context.invocation_metadata():
            if k == "authorization" and v == self.expected_auth:
                return
        context.abort(
            grpc.StatusCode.UNAUTHENTICATED,
            "missing or wrong API key: send metadata authorization: Bearer <key>",
        )

    def _abort(self, context: grpc.ServicerContext, exc: ServeError) -> None:
        if exc.retry_after is not None:
            context.set_trailing_metadata(
                (
                    ("retry-after", str(exc.retry_after)),
                    ("grpc-retry-pushback-ms", str(exc.retry_after * 1000)),
                )
            )
        context.abort(GRPC_CODES.get(exc.status, grpc.StatusCode.INVALID_ARGUMENT), exc.message)

    def _on_loop(self, context: grpc.ServicerContext, coroutine: Any) -> Any:
        """Run a service coroutine on the server's loop and wait for it; the call ending early (client
        cancelled, deadline passed) cancels it. ServeError -> the matching status."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        context.add_callback(future.cancel)
        try:
            return future.result()
        except ServeError as exc:
            self._abort(context, exc)
        except concurrent.futures.CancelledError:
            context.abort(grpc.StatusCode.CANCELLED, "the call ended before the request ran")
        except Exception:
            log.exception("unexpected error in a gRPC call")
            context.abort(grpc.StatusCode.INTERNAL, "internal server error (logged)")

    def ServerLive(self, request, context):  # noqa: N802 (names fixed by the protocol)
        return pb.ServerLiveResponse(live=True)

    def ServerReady(self, request, context):  # noqa: N802
        return pb.ServerReadyResponse(ready=self.service.ready and not self.service.draining)

    def ModelReady(self, request, context):  # noqa: N802
        self._authorize(context)
        ready = (
            self.service.ready and self.service.repo.get(request.name, request.version or None) is not None
        )
        return pb.ModelReadyResponse(ready=ready)

    def ServerMetadata(self, request, context):  # noqa: N802
        self._authorize(context)
        return pb.ServerMetadataResponse(**self.service.server_metadata())

    def ModelMetadata(self, request, context):  # noqa: N802
        self._authorize(context)
        try:
            model = self.service.model(request.name, request.version or None)
        except ServeError as exc:
            self._abort(context, exc)
        meta = model.metadata(self.service.versions(model.name))
        return pb.ModelMetadataResponse(
            name=meta["name"],
            versions=meta["versions"],
            platform=meta["platform"],
            inputs=[pb.ModelMetadataResponse.TensorMetadata(**t) for t in meta["inputs"]],
            outputs=[pb.ModelMetadataResponse.TensorMetadata(**t) for t in meta["outputs"]],
        )

    def ModelInfer(self, request, context):  # noqa: N802
        self._authorize(context)
        try:
            model = self.service.model(request.model_name, request.model_version or None)
            infer_request = decode_grpc(request, partial(self.service.check_input, model))
        except ServeError as exc:
            self._abort(context, exc)
        except Exception:
            log.exception("unexpected error in ModelInfer")
            context.abort(grpc.StatusCode.INTERNAL, "internal server error (logged)")
        wait_s = context.time_remaining()  # the client's deadline (about 1e9 s without one)
        wait_s = wait_s if wait_s < 1e6 else None
        outputs = self._on_loop(context, self.service.infer(model, infer_request, wait_s))
        response = pb.ModelInferResponse(model_name=model.name, model_version=model.version, id=request.id)
        for name, array in outputs.items():
            datatype = datatype_of(array)
            response.outputs.add(name=name, datatype=datatype, shape=list(array.shape))
            response.raw_output_contents.append(to_raw(array, datatype))
        return response

    # ---- Triton's extensions: the REST answers as messages --------------------------------------------
    def _answer(self, context: grpc.ServicerContext, call: Any, message: Any) -> Any:
        self._authorize(context)
        try:
            doc = call()
        except ServeError as exc:
            self._abort(context, exc)
        return json_format.ParseDict(doc, message, ignore_unknown_fields=True)

    def ModelConfig(self, request, context):  # noqa: N802
        call = partial(self.service.model_config, request.name, request.version or None)
        return self._answer(context, lambda: {"config": call()}, pb.ModelConfigResponse())

    def ModelStatistics(self, request, context):  # noqa: N802
        call = partial(self.service.model_statistics, request.name or None, request.version or None)
        return self._answer(context, call, pb.ModelStatisticsResponse())

    def RepositoryIndex(self, request, context):  # noqa: N802
        call = partial(self.service.index, request.ready)
        return self._answer(context, lambda: {"models": call()}, pb.RepositoryIndexResponse())

    def RepositoryModelLoad(self, request, context):  # noqa: N802
        self._authorize(context)
        self._on_loop(context, self.service.reload(request.model_name))
        return pb.RepositoryModelLoadResponse()

    def RepositoryModelUnload(self, request, context):  # noqa: N802
        self._authorize(context)
        self._on_loop(context, self.service.unload(request.model_name))
        return pb.RepositoryModelUnloadResponse()


def decode_grpc(request: Any, check: Any = None) -> InferRequest:
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise ServeError(400, f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs")
    tensors = []
    for i, t in enumerate(request.inputs):
        if t.datatype not in DATATYPES:
            raise ServeError(400, f"input {t.name!r}: unknown datatype {t.datatype!r}")
        shape = list(t.shape)
        if any(d < 0 for d in shape):
            raise ServeError(400, f"input {t.name!r}: shape {shape} has a negative dimension")
        if check is not None:
            check(t.name, t.datatype, shape)
        if raw:
            array = from_raw(raw[i], t.datatype, shape, t.name)
        else:
            field = CONTENTS.get(t.datatype)
            if field is None:
                raise ServeError(400, f"input {t.name!r}: {t.datatype} must be sent in raw_input_contents")
            values = list(getattr(t.contents, field))
            n = int(np.prod(shape)) if shape else 1
            if len(values) != n:
                raise ServeError(
                    400, f"input {t.name!r}: {len(values)} values do not fill shape {shape} ({n})"
                )
            if t.datatype == "BYTES":
                array = np.empty(n, dtype=object)
                array[:] = [v.decode("utf-8", "replace") for v in values]
                array = array.reshape(shape)
            else:
                array = np.asarray(values, dtype=DATATYPES[t.datatype]).reshape(shape)
        tensors.append(Tensor(t.name, t.datatype, shape, array))
    if not tensors:
        raise ServeError(400, "the request has no inputs")
    outputs = [o.name for o in request.outputs] or None
    timeout = request.parameters["timeout"].int64_param if "timeout" in request.parameters else None
    return InferRequest(
        tensors, id=request.id or None, outputs=outputs, timeout_us=timeout_parameter(timeout)
    )


def start_grpc(
    service: Service, loop: asyncio.AbstractEventLoop, host: str, port: int, reuse_port: bool = False
) -> grpc.Server:
    """Listen on host:port (`reuse_port`: SO_REUSEPORT, so every worker of --workers binds the same port)."""
    limit = service.config.max_body_bytes
    server = grpc.server(
        ThreadPoolExecutor(max_workers=16, thread_name_prefix="toolkit-grpc"),
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
            ("grpc.so_reuseport", 1 if reuse_port else 0),
        ],
    )
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(service, loop), server)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    bound = server.add_insecure_port(address)
    if not bound:
        raise OSError(f"cannot bind gRPC to {address}")
    server.start()
    return server
