"""What `toolkit serve PATH` serves: a single .onnx file, a run directory, or a Triton model repository.

Triton's layout (`REPO/MODEL/VERSION/model.onnx`, versions are integers) is the common ground with Triton
and KServe, so a repository that grows out of this server moves without changes. Every version found is
loaded; the newest serves when a request names no version. A model is loaded, then warmed up with one
inference, before it is put in the table, and a load that fails leaves the table as it was: a broken new
version never replaces a serving one.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.errors import ToolkitError, one_line
from toolkit.runtime.model import ORT_DTYPES
from toolkit.runtime.providers import confine_external_data, for_model, not_started, resolve
from toolkit.runtime.schema import METADATA_KEY
from toolkit.runtime.server.protocol import DATATYPE_OF, DATATYPES

log = logging.getLogger("toolkit.serve")

PLATFORM = "onnx_onnxv1"
# What a model or version name may be (Triton's names are folder names): anything else is refused with 400,
# so no request can name a path ("..", "/", "%2F", "\\", an absolute path) outside the repository root.
NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
VERSION_PATTERN = re.compile(r"[0-9]{1,18}")
# onnxruntime type strings -> numpy dtype names: the runtime's table plus the unsigned widths it omits
TYPES = {**ORT_DTYPES, "tensor(uint16)": "uint16", "tensor(uint32)": "uint32", "tensor(uint64)": "uint64"}


def choose_providers(provider: str) -> tuple[list[tuple[str, dict[str, str]]], str | None]:
    """The providers to ask onnxruntime for, as (name, options), and the logged reason when the requested
    one is not installed (toolkit.runtime.providers; TOOLKIT_PROVIDER_STRICT=1 makes that an error)."""
    resolved = resolve(provider)
    return resolved.entries, resolved.reason


@dataclass
class Spec:
    """One graph input or output in V2 terms: shape with -1 for variable dimensions."""

    name: str
    datatype: str
    shape: list[int]
    dtype: np.dtype

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": self.shape}


class LoadedModel:
    """One version of one model: an onnxruntime session, its V2 metadata and its `toolkit` document."""

    def __init__(
        self,
        name: str,
        version: str,
        path: Path,
        providers: list[tuple[str, dict[str, str]]],
        threads: int,
        verify_key: Path | None = None,
    ) -> None:
        import onnxruntime as ort

        self.name, self.version, self.path = name, version, path
        if verify_key is not None:  # before onnxruntime reads a byte of it
            from toolkit.runtime import trust

            try:
                trust.verify(path, verify_key)
            except ToolkitError as exc:
                raise ToolkitError(f"refusing {name} version {version}: {exc}") from None
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        try:
            confine_external_data(path)
            self.session = ort.InferenceSession(str(path), opts, providers=for_model(providers, path))
        except Exception as exc:
            raise ToolkitError(f"cannot load {path}: {one_line(exc)}") from None
        raw = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        try:
            self.meta: dict[str, Any] | None = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            self.meta = None
        self.inputs = [_spec(v) for v in self.session.get_inputs()]
        self.outputs = [_spec(v) for v in self.session.get_outputs()]
        self.input_by_name = {s.name: s for s in self.inputs}
        self.output_names = [s.name for s in self.outputs]
        # Batched when every input and output has a variable first dimension: rows can be stacked.
        self.batchable = all(s.shape and s.shape[0] == -1 for s in self.inputs + self.outputs)
        self.batcher: Any = None  # the server's Batcher for this version, made on first request
        self.providers = self.session.get_providers()
        reason = not_started(self.session, providers[0][0])  # listed by onnxruntime, but did not start
        if reason:
            log.warning("%s: %s", path, reason)

    def warm_up(self) -> None:
        """One inference on a batch of one (variable dimensions set to 1), so the first request is not slow
        and a model that cannot run fails here, before it is served."""
        feeds = {}
        for s in self.inputs:
            shape = [1 if d < 0 else d for d in s.shape]
            feeds[s.name] = (
                np.full(shape, "", dtype=object) if s.datatype == "BYTES" else np.zeros(shape, s.dtype)
            )
        try:
            self.session.run(None, feeds)
        except Exception as exc:
            raise ToolkitError(f"{self.path} fails its warm-up inference: {one_line(exc)}") from None

    def run(self, feeds: dict[str, np.ndarray], outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        names = outputs or self.output_names
        return dict(zip(names, self.session.run(names, feeds)))

    def metadata(self, versions: list[str]) -> dict[str, Any]:
        return {
            "name": self.name,
            "versions": versions,
            "platform": PLATFORM,
            "inputs": [s.describe() for s in self.inputs],
            "outputs": [s.describe() for s in self.outputs],
        }

    def config(self, max_batch_size: int) -> dict[str, Any]:
        """A Triton-style model configuration (what perf_analyzer and Triton's tools read)."""
        batched = self.batchable and max_batch_size > 1

        def dims(s: Spec) -> list[int]:
            return s.shape[1:] if batched else s.shape

        def tensor(s: Spec) -> dict[str, Any]:
            return {
                "name": s.name,
                "data_type": "TYPE_" + ("STRING" if s.datatype == "BYTES" else s.datatype),
                "dims": dims(s),
            }

        cfg: dict[str, Any] = {
            "name": self.name,
            "platform": PLATFORM,
            "backend": "onnxruntime",
            "max_batch_size": max_batch_size if batched else 0,
            "input": [tensor(s) for s in self.inputs],
            "output": [tensor(s) for s in self.outputs],
        }
        if batched:
            cfg["dynamic_batching"] = {}
        return cfg


def _spec(value: Any) -> Spec:
    dtype_name = TYPES.get(value.type)
    if dtype_name is None:
        raise ToolkitError(
            f"input/output {value.name!r} has type {value.type}, which the server cannot carry"
        )
    datatype = DATATYPE_OF[dtype_name]
    shape = [d if isinstance(d, int) and d >= 0 else -1 for d in value.shape]
    return Spec(value.name, datatype, shape, DATATYPES[datatype])


def check_name(name: str, what: str = "model name") -> str:
    """`name` unchanged when it is a valid model name; a ToolkitError naming the pattern otherwise."""
    if not NAME_PATTERN.fullmatch(name) or ".." in name:
        raise ToolkitError(
            f"invalid {what} {name[:80]!r}: use letters, digits, '_', '-' and '.', starting with a letter, "
            "digit or '_' (at most 128 characters, no '..')"
        )
    return name


def check_version(version: str) -> str:
    if not VERSION_PATTERN.fullmatch(version):
        raise ToolkitError(f"invalid version {version[:80]!r}: a version is a whole number such as 1")
    return version


def inside(root: Path, path: Path) -> bool:
    """Whether `path`, with every symlink followed, lies inside `root` (also resolved)."""
    try:
        return path.resolve().is_relative_to(root.resolve())
    except OSError:
        return False


def discover(path: str | Path) -> dict[str, dict[str, Path]]:
    """{model name: {version: model file}} for a .onnx file, a run directory or a Triton repository."""
    path = Path(path)
    if not path.exists():
        raise ToolkitError(
            f"nothing to serve at {path}: give a .onnx file, a run directory or a model repository"
        )
    if path.is_file():
        if path.suffix != ".onnx":
            raise ToolkitError(
                f"{path} is not a .onnx file; give a .onnx file, a run directory or a model repository"
            )
        name = path.parent.name if path.stem == "model" and path.parent.name else path.stem
        return {_clean(name): {"1": path}}
    if (path / "model.onnx").is_file():  # a run directory: model.onnx, model.text.onnx, model.int8.onnx ...
        found = {}
        for f in sorted(path.glob("model*.onnx")):
            suffix = f.name[len("model") : -len(".onnx")].strip(".")
            found[_clean(path.name + (f"-{suffix}" if suffix else ""))] = {"1": f}
        return found
    found = {}
    for model_dir in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if not NAME_PATTERN.fullmatch(model_dir.name) or not inside(path, model_dir):
            log.warning("skipped %s: not a valid model name, or a link out of the repository", model_dir)
            continue
        versions = scan_versions(model_dir, path)
        if versions:
            found[model_dir.name] = versions
    if not found:
        raise ToolkitError(
            f"{path} holds no models: expected model.onnx (a run directory) or REPO/MODEL/VERSION/model.onnx "
            "(Triton's layout)"
        )
    return found


def scan_versions(model_dir: Path, root: Path) -> dict[str, Path]:
    """{version: file} for the integer-named version folders of one model that hold a model.onnx. A version
    folder or model file that is a link out of `root` is skipped (logged): nothing outside is loaded."""
    versions = {}
    for v in model_dir.iterdir():
        if v.is_dir() and VERSION_PATTERN.fullmatch(v.name) and (v / "model.onnx").is_file():
            if not inside(root, v / "model.onnx"):
                log.warning("skipped %s: it links out of the repository %s", v / "model.onnx", root)
                continue
            versions[str(int(v.name))] = v / "model.onnx"
    return dict(sorted(versions.items(), key=lambda kv: int(kv[0])))


def _clean(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name) or "model"


class Repository:
    """The table of loaded models. Reads are lock-free (a dict swap); loads hold one lock."""

    def __init__(
        self,
        root: str | Path,
        providers: list[tuple[str, dict[str, str]]],
        threads: int = 0,
        verify_key: str | Path | None = None,
    ) -> None:
        self.root = Path(root)
        self.providers = providers
        self.threads = threads
        self.verify_key = Path(verify_key) if verify_key else None  # serve only models signed by it
        self.layout = discover(self.root)
        self.models: dict[str, dict[str, LoadedModel]] = {}
        self._lock = threading.Lock()
        self.on_change: list[Any] = []  # callbacks(name) after a model's versions change

    def load_all(self) -> None:
        for name in self.layout:
            self.load(name, rescan=False)

    def load(self, name: str, rescan: bool = True) -> dict[str, LoadedModel]:
        """(Re)load every version of `name`; on any failure the previous versions keep serving."""
        check_name(name)
        with self._lock:
            if rescan and self.root.is_dir() and not (self.root / "model.onnx").is_file():
                model_dir = self.root / name
                ok = model_dir.is_dir() and inside(self.root, model_dir)
                versions = scan_versions(model_dir, self.root) if ok else {}
                if not versions:
                    raise ToolkitError(
                        f"no model {name!r} in {self.root} (expected {name}/VERSION/model.onnx)"
                    )
            elif name in self.layout:
                versions = self.layout[name]
            else:
                raise ToolkitError(f"no model {name!r} in {self.root}")
            old = self.models.get(name, {})
            loaded = {}
            for version, path in versions.items():
                t0 = time.perf_counter()
                model = LoadedModel(name, version, path, self.providers, self.threads, self.verify_key)
                model.warm_up()
                loaded[version] = model
                log.info(
                    "loaded %s version %s from %s in %.2f s", name, version, path, time.perf_counter() - t0
                )
            table = dict(self.models)
            table[name] = loaded
            self.models = table
            self.layout[name] = versions
        for cb in self.on_change:
            cb(name, old, loaded)
        return loaded

    def unload(self, name: str) -> None:
        with self._lock:
            table = dict(self.models)
            old = table.pop(name, None)
            if old is None:
                raise ToolkitError(f"model {name!r} is not loaded")
            self.models = table
        for cb in self.on_change:
            cb(name, old, {})

    def get(self, name: str, version: str | None = None) -> LoadedModel | None:
        versions = self.models.get(name)
        if not versions:
            return None
        if not version:
            return versions[next(reversed(versions))]
        return versions.get(version)

    def index(self) -> list[dict[str, Any]]:
        out = []
        for name, versions in self.layout.items():
            loaded = self.models.get(name, {})
            for v in versions:
                out.append({"name": name, "version": v, "state": "READY" if v in loaded else "UNAVAILABLE"})
        return out
