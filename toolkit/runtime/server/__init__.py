"""`toolkit serve`: the Open Inference Protocol (KServe V2) over REST and gRPC for exported ONNX models.

protocol.py (wire codecs), repository.py (what is served, loading), batching.py, service.py (checks,
lifecycle, shared by both transports), http.py (ASGI), grpc_service.py (+ generated *_pb2*), metrics.py,
app.py (processes, signals). Torch-free, like the rest of toolkit.runtime.
"""
