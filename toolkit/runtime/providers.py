"""Execution providers: the one place that turns `--provider cpu|cuda|tensorrt` into onnxruntime sessions.

Every command that opens a session (predict, serve, validate, quantize, bench) has to agree on three things
a GPU user meets at once, so they live here and nowhere else:

- Names. `cpu`, `cuda`, `tensorrt` and `tensorrt-fp16` (TensorRT allowed to build fp16 kernels for an fp32
  model), or onnxruntime's own names (`CUDAExecutionProvider`); `:N` picks GPU N (`cuda:1`).
- The chain and its options. A GPU provider is asked for together with the ones behind it: TensorRT, then
  CUDA for the nodes TensorRT does not take, then CPU for the nodes neither takes. CUDA gets its device_id;
  TensorRT also gets an engine cache in a folder next to the model (MODEL_DIR/.trt-cache), because
  building an engine takes seconds to minutes and must happen once per model and GPU, not at every start.
- Fall-back. A provider missing from the installed onnxruntime (the plain `onnxruntime` wheel has no CUDA),
  or one that is listed but does not start (no GPU, CUDA/cuDNN/TensorRT libraries missing; onnxruntime
  then quietly runs on what is left), runs on CPU with one warning line on stderr saying why. Strict mode
  (`strict=True`, or TOOLKIT_PROVIDER_STRICT=1 in the environment) makes it a one-line error instead:
  a GPU check or a benchmark must never report CPU figures under a GPU's name.

onnxruntime takes a provider list as names or (name, options) pairs; `Resolution.entries` is that list,
so callers pass it through unchanged. This module imports onnxruntime only inside functions.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolkit.errors import ToolkitError

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
ALIASES = {"cpu": CPU, "cuda": CUDA, "tensorrt": TENSORRT, "tensorrt-fp16": TENSORRT}
# What is asked of onnxruntime for each provider, most preferred first.
CHAINS = {CPU: [CPU], CUDA: [CUDA, CPU], TENSORRT: [TENSORRT, CUDA, CPU]}
# Providers that onnxruntime lists but that run no local graph (Azure calls a remote endpoint).
REMOTE_PROVIDERS = ("AzureExecutionProvider",)
CACHE_DIR = ".trt-cache"  # TensorRT engines and timing cache, next to the model
STRICT_ENV = "TOOLKIT_PROVIDER_STRICT"
ALLOWED = "cpu, cuda, tensorrt, tensorrt-fp16 (cuda:1 for GPU 1) or an onnxruntime provider name"
# Why a GPU provider that onnxruntime lists may still not start.
WHY_NOT_STARTED = {
    CUDA: "no usable NVIDIA GPU, or the CUDA/cuDNN libraries onnxruntime-gpu needs are not found",
    TENSORRT: "the TensorRT libraries (libnvinfer) are not found, or no usable NVIDIA GPU",
}


@dataclass(frozen=True)
class Request:
    """One parsed `--provider` value."""

    provider: str  # onnxruntime's name
    device_id: int = 0
    fp16: bool = False  # TensorRT: allow fp16 kernels

    @property
    def chain(self) -> list[str]:
        return CHAINS.get(self.provider, [self.provider, CPU])


@dataclass(frozen=True)
class Resolution:
    """What to ask onnxruntime for. `entries` go to InferenceSession(providers=...) as they are; `reason`
    says why they differ from the request (a provider this onnxruntime lacks), None when they do not."""

    requested: str  # the preferred provider as asked, onnxruntime's name
    entries: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    reason: str | None = None

    @property
    def providers(self) -> list[str]:
        return [name for name, _ in self.entries]

    @property
    def fell_back(self) -> bool:
        return self.reason is not None


def short(provider: str) -> str:
    """CUDAExecutionProvider -> CUDA (for tables and messages)."""
    return provider.removesuffix("ExecutionProvider")


def parse(spec: str) -> Request:
    """`cpu`, `cuda:1`, `tensorrt-fp16`, `CUDAExecutionProvider`, ... -> Request; ToolkitError otherwise."""
    text = str(spec).strip()
    name, sep, device = text.partition(":")
    key = name.lower()
    if key in ALIASES:
        provider = ALIASES[key]
    elif name.endswith("ExecutionProvider") and name[: -len("ExecutionProvider")].isalnum():
        provider = name
    else:
        raise ToolkitError(f"unknown provider {spec!r}; allowed: {ALLOWED}")
    if sep and (not device.isdigit() or provider == CPU):
        raise ToolkitError(f"bad device in provider {spec!r}: a GPU index goes after the colon (cuda:1)")
    return Request(provider, int(device) if sep else 0, key == "tensorrt-fp16")


def provider_name(spec: str) -> str:
    """The onnxruntime name of a `--provider` value (cpu -> CPUExecutionProvider)."""
    return parse(spec).provider


def available() -> list[str]:
    """Providers of the installed onnxruntime that run a graph locally, fastest first."""
    import onnxruntime as ort

    return [p for p in ort.get_available_providers() if p not in REMOTE_PROVIDERS]


def cache_dir(model_path: str | Path) -> Path:
    """Where TensorRT keeps the engines it builds for a model: a folder next to the model file."""
    return Path(model_path).resolve().parent / CACHE_DIR


def provider_options(
    provider: str, device_id: int = 0, fp16: bool = False, cache: str | Path | None = None
) -> dict[str, str]:
    """The options onnxruntime gets for one provider (strings, as its C API wants them)."""
    if provider == CUDA:
        return {"device_id": str(device_id)}
    if provider == TENSORRT:
        opts = {"device_id": str(device_id), "trt_fp16_enable": "True" if fp16 else "False"}
        if cache is not None:
            opts |= {
                "trt_engine_cache_enable": "True",
                "trt_engine_cache_path": str(cache),
                "trt_timing_cache_enable": "True",
                "trt_timing_cache_path": str(cache),
            }
        return opts
    return {}


def strict_default() -> bool:
    return os.environ.get(STRICT_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def resolve(spec: str | Sequence[str] | None = None, *, strict: bool | None = None) -> Resolution:
    """The providers for a request: `None` = every available one (fastest first); a name or a list of
    names = those (each with its chain), CPU last. A requested provider this onnxruntime lacks is dropped
    and the reason returned, or, strict, raised as a one-line ToolkitError."""
    have = available()
    if spec is None:
        return Resolution(have[0], [(p, provider_options(p)) for p in have])
    specs = [spec] if isinstance(spec, str) else list(spec)
    if not specs:
        raise ToolkitError(f"no provider given; allowed: {ALLOWED}")
    requests = [parse(s) for s in specs]
    entries: dict[str, dict[str, str]] = {}
    for r in requests:
        for p in r.chain:
            if p in have and p not in entries:
                entries[p] = provider_options(p, r.device_id, r.fp16 and p == TENSORRT)
    if CPU not in entries:
        entries[CPU] = {}
    first = requests[0].provider
    reason = None
    if first not in have:
        import onnxruntime as ort

        reason = (
            f"execution provider {first} is not available (onnxruntime {ort.__version__} has "
            f"{', '.join(short(p) for p in have)}; GPU providers need onnxruntime-gpu, see README: GPU): "
            f"falling back to {next(iter(entries))}"
        )
        _refuse_if_strict(reason, strict)
    return Resolution(first, list(entries.items()), reason)


def for_model(
    entries: Sequence[tuple[str, dict[str, str]] | str], model_path: str | Path | None
) -> list[tuple[str, dict[str, str]]]:
    """The entries with TensorRT's engine cache pointed at MODEL_DIR/.trt-cache (created here). Without a
    model path (a model in memory), or when that folder cannot be made, TensorRT builds without a cache."""
    out = []
    for entry in entries:
        name, opts = (entry, {}) if isinstance(entry, str) else (entry[0], dict(entry[1]))
        if name == TENSORRT and model_path is not None and "trt_engine_cache_path" not in opts:
            folder = cache_dir(model_path)
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                warn(f"TensorRT engine cache disabled: cannot create {folder}: {exc.strerror}")
            else:
                cache = provider_options(TENSORRT, cache=folder)
                opts |= {k: v for k, v in cache.items() if k.startswith("trt_") and "cache" in k}
        out.append((name, opts))
    return out


def not_started(session: Any, wanted: str, strict: bool | None = None) -> str | None:
    """Why the session does not run on `wanted` although onnxruntime lists it (None: it does). onnxruntime
    drops a provider that fails to initialize and carries on with the rest; this says so, or raises."""
    running = session.get_providers()
    if wanted in running:
        return None
    why = WHY_NOT_STARTED.get(wanted, "it failed to initialize")
    reason = f"execution provider {wanted} did not start ({why}): falling back to {running[0]}"
    _refuse_if_strict(reason, strict)
    return reason


def open_session(
    model: str | Path | bytes,
    spec: str | Sequence[str] | Resolution | None = None,
    *,
    options: Any = None,
    model_path: str | Path | None = None,
    strict: bool | None = None,
) -> tuple[Any, str | None]:
    """An InferenceSession on the requested providers (see resolve), and the fall-back reason (None when
    it runs on the preferred provider). `model_path` places the TensorRT cache when `model` is bytes.
    Errors from onnxruntime itself (an unreadable file) propagate for the caller to word."""
    import onnxruntime as ort

    res = spec if isinstance(spec, Resolution) else resolve(spec, strict=strict)
    if model_path is None and not isinstance(model, bytes):
        model_path = model
    if not isinstance(model, bytes):
        confine_external_data(model)
    entries = for_model(res.entries, model_path)
    session = ort.InferenceSession(
        model if isinstance(model, bytes) else str(model),
        options,
        providers=[name for name, _ in entries],
        provider_options=[opts for _, opts in entries],
    )
    reason = res.reason or not_started(session, entries[0][0], strict)
    return session, reason


def confine_external_data(path: str | Path) -> None:
    """ToolkitError when the model at `path` names external data outside its own folder (checked before
    onnxruntime opens anything; see edge.runner.check_external_data)."""
    from toolkit.runtime.edge.runner import InputError, check_external_data

    try:
        check_external_data(str(path))
    except InputError as exc:
        raise ToolkitError(str(exc)) from None


def _refuse_if_strict(reason: str, strict: bool | None) -> None:
    if strict_default() if strict is None else strict:
        raise ToolkitError(reason.split(": falling back")[0] + "; strict: no fall-back to CPU")


def warn(reason: str) -> None:
    """One warning line on stderr (the CLI's error lines go there too; stdout stays clean for --json)."""
    print(f"warning: {reason}", file=sys.stderr, flush=True)
