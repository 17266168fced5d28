"""`import_model(MODEL, OUT)`: give a foreign ONNX model the `toolkit` metadata an exported one carries.

A model the toolkit did not train (torch.onnx.export, the ONNX model zoo, skl2onnx, another team) runs in
every runtime command once it says what it is: the task, the labels, how raw inputs become its input
tensor (image size, layout, channels, colour order, pixel scale, mean/std; or the feature names) and which
output holds the class scores. What the graph tells (ports, dtypes, fixed dims, a final Softmax, the class
labels of an ai.onnx.ml classifier) is read from it; the rest is stated by the user and checked against
the graph where it can be (output width = label count, input rank fits the layout).

The graph and the weights are copied unchanged (weights in external data files stay external, copied
beside OUT when it is in another folder); only the metadata is added. Nothing is written on error.
No torch: this module needs onnx (for the graph) and onnxruntime (to check that the result loads).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolkit.errors import ToolkitError
from toolkit.runtime import schema
from toolkit.runtime.model import graph_inputs, graph_port, load_proto

TASKS = ("classify", "regress")  # what an imported model can be; the others need what only training records
APPLY = ("softmax", "sigmoid", "none")
LAYOUTS = ("nchw", "nhwc")
COLOR_ORDERS = ("rgb", "bgr")
PRESETS = {"imagenet": ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])}  # pixels in [0, 1], RGB order
PROBABILITY_OPS = ("Softmax", "Sigmoid", "LogSoftmax")  # a final node that already gives probabilities


@dataclass
class ImportOptions:
    """What the user states about a model (None: read it from the graph, or the default)."""

    task: str
    labels: list[str] | None = None
    output: str | None = None
    apply: str | None = None
    image_size: tuple[int, int] | None = None
    layout: str | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    preset: str | None = None
    pixel_scale: float | None = None
    channels: int | None = None
    color_order: str = "rgb"
    features: list[str] | None = None
    stated: dict[str, Any] = field(default_factory=dict)  # the options as given, recorded in the document


def import_model(source: str | Path, out: str | Path, opts: ImportOptions) -> dict[str, Any]:
    """Write OUT: SOURCE's graph and weights with the metadata document; returns the document."""
    from toolkit.io import atomic_path, write_json
    from toolkit.runtime.model import OnnxModel

    source, out = Path(source), Path(out)
    _check_paths(source, out, opts)
    proto = load_proto(source)  # not ONNX, truncated, missing: a one-line ToolkitError
    doc = document(proto, source, opts)
    errors = schema.check(doc)
    if errors:  # a bug here, not the user's input: still refuse to write a model the runtime would refuse
        raise ToolkitError(f"the metadata for {source} does not fit {schema.SCHEMA}: {errors[0]}")
    kept = [(p.key, p.value) for p in proto.metadata_props if p.key != schema.METADATA_KEY]
    del proto.metadata_props[:]
    for key, value in [*kept, (schema.METADATA_KEY, json.dumps(doc))]:
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    copied = _copy_external_data(proto, source, out)
    try:
        with atomic_path(out) as tmp:
            tmp.write_bytes(proto.SerializeToString())
            OnnxModel(tmp, providers=["CPUExecutionProvider"])  # the result must load before it is in place
        write_json(out.with_suffix(".json"), doc)  # the sidecar, as export writes it
    except BaseException:
        for f in copied:
            f.unlink(missing_ok=True)
        raise
    return doc


def _check_paths(source: Path, out: Path, opts: ImportOptions) -> None:
    if out.suffix != ".onnx":
        raise ToolkitError(f"--out must name a .onnx file (got {out})")
    if source.exists() and out.resolve() == source.resolve():
        raise ToolkitError("--out must be a new file: the source model is copied, never changed")
    if opts.task not in TASKS:
        raise ToolkitError(
            f"--task {opts.task!r} cannot be imported; allowed: {', '.join(TASKS)} (forecast, reconstruct "
            "and generate models need what only toolkit training records: serve and bench them as they are)"
        )
    if opts.apply is not None and opts.apply not in APPLY:
        raise ToolkitError(f"unknown --apply {opts.apply!r}; allowed: {', '.join(APPLY)}")
    if opts.layout is not None and opts.layout not in LAYOUTS:
        raise ToolkitError(f"unknown --layout {opts.layout!r}; allowed: {', '.join(LAYOUTS)}")
    if opts.color_order not in COLOR_ORDERS:
        raise ToolkitError(f"unknown colour order {opts.color_order!r}; allowed: {', '.join(COLOR_ORDERS)}")
    if opts.preset is not None and opts.preset not in PRESETS:
        raise ToolkitError(f"unknown --preset {opts.preset!r}; allowed: {', '.join(PRESETS)}")
    if opts.preset and (opts.mean or opts.std):
        raise ToolkitError("give --preset or --mean/--std, not both")
    if opts.channels not in (None, 1, 3):
        raise ToolkitError(f"--channels must be 1 (grayscale) or 3 (colour) (got {opts.channels})")
    if opts.pixel_scale is not None and not opts.pixel_scale > 0:
        raise ToolkitError(f"--pixel-scale must be positive (got {opts.pixel_scale})")


# --------------------------------------------------------------------------------------------- document
def document(proto: Any, source: Path, opts: ImportOptions) -> dict[str, Any]:
    """The metadata document for a foreign graph and the user's statements (ToolkitError when they do
    not fit the graph)."""
    import onnx

    import toolkit

    inputs = [graph_port(v) for v in graph_inputs(proto)]
    outputs = [graph_port(v) for v in proto.graph.output]
    port = _data_input(inputs, opts)
    out_ports = _outputs(proto, outputs, opts)
    labels = _labels(proto, out_ports, opts) if opts.task == "classify" else None
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    return {
        "schema": schema.SCHEMA,
        "task": opts.task,
        "arch": "imported",
        "role": "model",
        "inputs": [port],
        "outputs": out_ports,
        "labels": labels,
        "anomaly": None,
        "thresholds": {},
        "recipe": {  # no recipe made this model: validate and quantize need --data (labelled data)
            "name": "imported",
            "arch": "imported",
            "task": opts.task,
            "data": {"source": "none", "val_fraction": 0.0, "test_fraction": 0.0},
            "model": {},
            "train": {"seed": 0},
        },
        "metrics": None,
        "provenance": {
            "toolkit": toolkit.__version__,
            "onnx": onnx.__version__,
            "exporter": "imported",
            "opset": opset,
            "date": now,
            "source_run": "none",
            "producer": f"{proto.producer_name} {proto.producer_version}".strip() or None,
        },
        "parity": {"atol": 0.0, "rtol": 0.0, "cases": 0, "outputs": {}},
        "imported": {
            "source": str(source.resolve()),
            "sha256": hashlib.sha256(source.read_bytes()).hexdigest(),
            "date": now,
            "options": opts.stated,
        },
    }


def _named_dims(port: dict[str, Any]) -> list[int | str]:
    """Unknown dims get names (the schema's shapes are ints or names): the first is the batch axis."""
    return [d if d is not None else ("batch" if i == 0 else f"dim{i}") for i, d in enumerate(port["shape"])]


def image_like(port: dict[str, Any]) -> bool:
    """A 4-D float input with 1 or 3 channels first or last (NCHW or NHWC): the shape of an image batch."""
    s = port["shape"]
    return (port["dtype"] or "").startswith("float") and len(s) == 4 and (s[1] in (1, 3) or s[3] in (1, 3))


def _data_input(inputs: list[dict[str, Any]], opts: ImportOptions) -> dict[str, Any]:
    """The one input the toolkit feeds, described with its preprocessing (image or feature rows)."""
    images = [p for p in inputs if image_like(p)]
    if len(images) > 1:
        names = ", ".join(repr(p["name"]) for p in images)
        raise ToolkitError(
            f"the model has {len(images)} image-like inputs ({names}); toolkit import handles one-input "
            "models (serve it as it is: toolkit serve speaks the V2 protocol with any inputs)"
        )
    if len(inputs) != 1:
        names = ", ".join(repr(p["name"]) for p in inputs)
        raise ToolkitError(
            f"the model takes {len(inputs)} inputs ({names}); toolkit import handles one-input models "
            "(serve and bench it as it is)"
        )
    port = inputs[0]
    if not (port["dtype"] or "").startswith("float"):
        raise ToolkitError(
            f"input {port['name']!r} is {port['dtype'] or 'not a tensor'}; toolkit import handles float "
            "image or feature inputs (text and token models: serve and bench them as they are)"
        )
    wants_image = opts.layout or opts.image_size or opts.preset or opts.channels or images
    if wants_image or len(port["shape"]) != 2:
        return _image_input(port, opts)
    return _feature_input(port, opts)


def _image_input(port: dict[str, Any], opts: ImportOptions) -> dict[str, Any]:
    shape = port["shape"]
    if len(shape) != 4:
        layout = f"--layout {opts.layout}" if opts.layout else "an image layout (nchw, nhwc)"
        raise ToolkitError(
            f"{layout} needs a 4-D image input; {port['name']!r} is {len(shape)}-D {shape} "
            "(feature rows are 2-D: leave out the image options)"
        )
    layout = opts.layout or _guess_layout(port)
    c_at, hw_at = (1, (2, 3)) if layout == "nchw" else (3, (1, 2))
    channels = _fixed(shape[c_at], opts.channels, "--channels", port, "channels")
    if channels not in (1, 3):
        raise ToolkitError(f"{port['name']!r} has {channels} channels at {layout}; images have 1 or 3")
    size = opts.image_size or (None, None)
    h = _fixed(shape[hw_at[0]], size[0], "--image-size", port, "height")
    w = _fixed(shape[hw_at[1]], size[1], "--image-size", port, "width")
    mean, std = _mean_std(opts, channels)
    scale = opts.pixel_scale if opts.pixel_scale is not None else 1 / 255
    # The runtime standardizes pixels in [0, 1]; the model wants (pixel8 * scale - mean) / std.
    factor = 255.0 * scale
    image = {
        "channels": channels,
        "height": h,
        "width": w,
        "pixel_scale": 1 / 255,  # numeric arrays given to predict are 8-bit pixel values
        "resize": "bilinear",
        "color_order": opts.color_order.upper(),
        "model_pixel_scale": scale,
        "stated_mean": mean,
        "stated_std": std,
    }
    pre = {
        "type": "standardize",
        "formula": "(pixels * image.pixel_scale - mean) / std",
        "mean": [m / factor for m in mean],
        "std": [s / factor for s in std],
        "per": "channel",
        "image": image,
    }
    meaning = f"{w}x{h} {'grayscale' if channels == 1 else opts.color_order.upper()} images, {layout.upper()}"
    return {
        **port,
        "shape": _named_dims(port),
        "layout": layout.upper(),
        "meaning": meaning,
        "preprocessing": pre,
    }


def _guess_layout(port: dict[str, Any]) -> str:
    s = port["shape"]
    if len(s) == 4 and s[1] in (1, 3) and s[3] not in (1, 3):
        return "nchw"
    if len(s) == 4 and s[3] in (1, 3) and s[1] not in (1, 3):
        return "nhwc"
    if len(s) == 4 and s[1] in (1, 3):
        return "nchw"
    raise ToolkitError(
        f"cannot tell the layout of {port['name']!r} {s} from the graph; give --layout nchw or nhwc"
    )


def _fixed(graph: Any, stated: int | None, option: str, port: dict[str, Any], what: str) -> int:
    """A dim the graph fixes, or the user states (both: they must agree)."""
    if isinstance(graph, int) and graph > 0:
        if stated is not None and stated != graph:
            raise ToolkitError(f"{option} says {what} {stated}, but {port['name']!r} takes {graph}")
        return graph
    if stated is None:
        raise ToolkitError(f"the graph leaves the {what} of {port['name']!r} open ({graph}); give {option}")
    return int(stated)


def _mean_std(opts: ImportOptions, channels: int) -> tuple[list[float], list[float]]:
    if opts.preset:
        mean, std = PRESETS[opts.preset]
        if channels == 1:
            mean, std = [sum(mean) / 3], [sum(std) / 3]
        return list(mean), list(std)
    mean = opts.mean or [0.0]
    std = opts.std or [1.0]
    out = []
    for name, values in (("--mean", mean), ("--std", std)):
        if len(values) == 1:
            values = values * channels
        if len(values) != channels:
            raise ToolkitError(
                f"{name} has {len(values)} values; the model's images have {channels} channels"
            )
        out.append([float(v) for v in values])
    if any(s <= 0 for s in out[1]):
        raise ToolkitError(f"--std must be positive (got {out[1]})")
    return out[0], out[1]


def _feature_input(port: dict[str, Any], opts: ImportOptions) -> dict[str, Any]:
    width = port["shape"][1]
    names = opts.features
    if names is not None and isinstance(width, int) and len(names) != width:
        raise ToolkitError(f"--features names {len(names)} features; {port['name']!r} takes {width}")
    if not isinstance(width, int):
        if names is None:
            raise ToolkitError(
                f"{port['name']!r} leaves its width open; give --features FILE (names in order)"
            )
        width = len(names)
    shape = _named_dims(port)
    shape[1] = width
    pre = {
        "type": "standardize",
        "formula": "(x - mean) / std",
        "mean": [0.0] * width,  # an imported model scales its features itself (or takes them raw)
        "std": [1.0] * width,
        "per": "feature",
        "missing": "a missing value (NaN) becomes 0",
        "feature_names": names or [f"x{i}" for i in range(width)],
    }
    return {
        **port,
        "shape": shape,
        "layout": "NF",
        "meaning": f"rows of {width} features",
        "preprocessing": pre,
    }


# --------------------------------------------------------------------------------------------- outputs
def _outputs(proto: Any, outputs: list[dict[str, Any]], opts: ImportOptions) -> list[dict[str, Any]]:
    """Every output described; the one holding the answer marked with `as` (logits, probabilities or
    prediction) and `apply`; an ai.onnx.ml label tensor marked `as: label`."""
    for p in outputs:
        if p["dtype"] is None:
            raise ToolkitError(
                f"output {p['name']!r} is a {p.get('type', 'non-tensor')} (skl2onnx's ZipMap gives a sequence "
                "of maps); convert with options={'zipmap': False} so probabilities are a tensor"
            )
    chosen = _chosen_output(outputs, opts)
    producers = {o: n for n in proto.graph.node for o in n.output}
    node = producers.get(chosen["name"])
    from_ml = node is not None and node.domain == "ai.onnx.ml"
    apply = opts.apply
    if apply is None:
        apply = "none" if from_ml or (node is not None and node.op_type in PROBABILITY_OPS) else "softmax"
    if opts.task == "regress":
        apply = "none"
    described = []
    for p in outputs:
        d = {**p, "shape": _named_dims(p)}
        if p is chosen:
            d["as"] = (
                "prediction" if opts.task == "regress" else ("probabilities" if apply == "none" else "logits")
            )
            d["apply"] = apply
            d["meaning"] = (
                {
                    "softmax": "class scores (logits): softmax gives the probabilities",
                    "sigmoid": "class scores: sigmoid gives the probabilities",
                    "none": "the class probabilities",
                }[apply]
                if opts.task == "classify"
                else "the prediction, in the target's units"
            )
        elif opts.task == "classify" and len(p["shape"]) <= 1 and p["dtype"] in ("int64", "string"):
            d["as"], d["meaning"] = "label", "the predicted label (the toolkit reads the probabilities)"
        else:
            d["meaning"] = "another output of the graph (not read by the toolkit)"
        described.append(d)
    return described


def _chosen_output(outputs: list[dict[str, Any]], opts: ImportOptions) -> dict[str, Any]:
    if opts.output is not None:
        found = [p for p in outputs if p["name"] == opts.output]
        if not found:
            names = ", ".join(repr(p["name"]) for p in outputs)
            raise ToolkitError(
                f"--output {opts.output!r} is not an output of the model; its outputs: {names}"
            )
        port = found[0]
    else:
        floats = [p for p in outputs if (p["dtype"] or "").startswith("float") and len(p["shape"]) == 2]
        if len(floats) != 1:
            names = ", ".join(f"{p['name']!r} {p['shape']}" for p in outputs)
            raise ToolkitError(f"cannot tell which output holds the answer ({names}); give --output NAME")
        port = floats[0]
    if not (port["dtype"] or "").startswith("float") or len(port["shape"]) != 2:
        raise ToolkitError(
            f"output {port['name']!r} is {port['dtype']} {port['shape']}; the toolkit reads a 2-D float "
            "output (batch, classes) or (batch, targets)"
        )
    return port


def _labels(proto: Any, outputs: list[dict[str, Any]], opts: ImportOptions) -> list[str]:
    """--labels, else the class labels an ai.onnx.ml classifier node records, else class indices; checked
    against the width of the output holding the answer."""
    chosen = next(p for p in outputs if p.get("as") in ("logits", "probabilities"))
    width = chosen["shape"][1]
    labels = opts.labels or _graph_labels(proto)
    if labels is None:
        if not isinstance(width, int):
            raise ToolkitError(f"output {chosen['name']!r} leaves the class count open; give --labels FILE")
        labels = [str(i) for i in range(width)]
    if len(set(labels)) != len(labels):
        raise ToolkitError("--labels has repeated names; give one distinct label per line")
    binary_sigmoid = chosen.get("apply") == "sigmoid" and width == 1 and len(labels) == 2
    if isinstance(width, int) and width != len(labels) and not binary_sigmoid:
        raise ToolkitError(
            f"{len(labels)} labels, but output {chosen['name']!r} has {width} classes; give one label per class"
        )
    return labels


def _graph_labels(proto: Any) -> list[str] | None:
    for node in proto.graph.node:
        if node.domain == "ai.onnx.ml":
            for a in node.attribute:
                if a.name == "classlabels_strings" and a.strings:
                    return [s.decode() for s in a.strings]
                if a.name == "classlabels_ints" and a.ints:
                    return [str(i) for i in a.ints]
    return None


# --------------------------------------------------------------------------------------------- writing
def _copy_external_data(proto: Any, source: Path, out: Path) -> list[Path]:
    """External data files beside OUT (copied when OUT is in another folder; shared when it is not)."""
    from toolkit.io import atomic_path

    files = sorted(
        {
            e.value
            for t in proto.graph.initializer
            if t.data_location == 1
            for e in t.external_data
            if e.key == "location"
        }
    )
    copied = []
    if out.parent.resolve() == source.parent.resolve():
        return copied
    for name in files:
        src, dst = source.parent / name, out.parent / name
        if not src.is_file():
            raise ToolkitError(f"{source}'s weights file {name} is missing (external data is kept beside it)")
        if dst.exists():
            raise ToolkitError(f"{dst} exists; import into an empty folder or beside the source model")
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
        copied.append(dst)
    return copied
