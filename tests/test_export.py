"""`toolkit export` on every shipped recipe (tiny, 1 epoch): the ONNX file loads in onnxruntime, its named
inputs and outputs match the task, its axes are really dynamic, it equals the checkpoint's predictions,
it uses only standard domains and passes the checker, and it describes itself (metadata == sidecar).
A broken graph fails the export with exit code 2 and writes nothing; bad input is one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from helpers import assert_one_line_error, two_class_text_csv

import toolkit.export.exporters as export_mod
from toolkit.data import builtin_kind
from toolkit.export import SCHEMA, STANDARD_DOMAINS, export_run
from toolkit.recipe import load_recipe, recipe_from_dict, recipe_names
from toolkit.train import train

FAST = ["train.epochs=1", "train.patience=0"]
# Tiny widths per architecture; an architecture missing here trains at its recipe's own size (1 epoch).
TINY = {
    "mlp": ["model.hidden=[16]"],
    "cnn": ["model.channels=[8]", "model.hidden=16"],
    "rnn": ["model.hidden=16", "model.embed_dim=16"],
    "lstm": ["model.hidden=16", "model.embed_dim=16"],
    "gru": ["model.hidden=16", "model.embed_dim=16"],
    "transformer": ["model.d_model=16", "model.ff_dim=16", "model.heads=2", "model.layers=1"],
    "autoencoder": ["model.channels=[8,16]", "model.hidden=[16]"],
    "gan": ["model.width=8", "model.latent=8", "model.samples_per_class=5"],
    # pretrained backbones: no download in tests (tests/test_backbones.py loads a weights file)
    "mobilenet": ["model.weights=none", "data.augment.crop=0", "data.augment.color_jitter=0"],
    "resnet": ["model.weights=none", "data.augment.crop=0", "data.augment.color_jitter=0"],
    "efficientnet": ["model.weights=none", "data.augment.crop=0", "data.augment.color_jitter=0"],
}
JUDGE = "cnn-image"  # the generate task needs a classifier run of the same data to judge its samples
ATOL, RTOL = 1e-4, 1e-3

# What a runtime finds in the graph, per task: output names, and the input by what the model reads.
OUTPUTS = {
    "classify": ["logits", "probabilities"],
    "regress": ["prediction"],
    "forecast": ["forecast"],
    "reconstruct": ["reconstruction", "score"],
    "generate": ["images"],
    "contrastive": ["embedding"],
}
INPUTS = {
    "tabular": [("input", "float32")],
    "image": [("input", "float32")],
    "tokens": [("tokens", "int64")],
    "series": [("window", "float32")],
    "generate": [("z", "float32"), ("label", "int64")],
}
ONNX_DTYPES = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.INT64: "int64"}


def _digits_npz(path: Path, per_class: int = 30) -> Path:
    """A sixth of scikit-learn's 8x8 digits (pixels in [0, 1]): image recipes train in a fraction of the time."""
    from sklearn.datasets import load_digits

    d = load_digits()
    keep = np.concatenate([np.flatnonzero(d.target == c)[:per_class] for c in range(10)])
    np.savez(path, x=(d.images[keep] / 16.0).astype(np.float32), y=d.target[keep])
    return path


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("export")


@pytest.fixture(scope="module")
def run_of(workdir):
    """run_of(recipe) -> a tiny trained run of it (trained once per module). Builtin text and image
    sources are swapped for small files of the same kind; tabular and series builtins are small already."""
    runs: dict[str, Path] = {}
    small = {"text": two_class_text_csv(workdir / "texts.csv"), "image": _digits_npz(workdir / "digits.npz")}

    def get(name: str) -> Path:
        if name not in runs:
            rec = load_recipe(name)
            overrides = TINY.get(rec.arch, []) + FAST
            if rec.task == "generate":
                overrides.append(f"model.judge={get(JUDGE)}")
            data = small.get(builtin_kind(rec.data.source))
            data = str(data) if data is not None else None
            train(name, data=data, overrides=overrides, out=workdir / name)
            runs[name] = workdir / name
        return runs[name]

    return get


@pytest.fixture(scope="module")
def exported(run_of):
    """exported(recipe) -> export_run's result for its tiny run (RUN_DIR/model.onnx)."""
    results = {}

    def get(name: str):
        if name not in results:
            results[name] = export_run(run_of(name))
        return results[name]

    return get


# --------------------------------------------------------------------------------------------- per recipe
def _feeds(meta: dict, batch: int, length: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Inputs built from the metadata alone: symbolic dims get `batch` (the batch axis) or `length`."""
    feeds = {}
    for port in meta["inputs"]:
        shape = [batch if d == "batch" else length if isinstance(d, str) else d for d in port["shape"]]
        if port["dtype"] == "float32":
            feeds[port["name"]] = rng.standard_normal(shape).astype(np.float32)
        elif port["name"] == "tokens":
            vocab = len(port["preprocessing"]["tokenizer"]["vocab"])
            ids = rng.integers(1, vocab, size=shape, dtype=np.int64)
            ids[1:, length // 2 :] = 0  # right padding on all but the first text
            feeds["tokens"] = ids
        else:  # class indices
            feeds[port["name"]] = rng.integers(0, len(meta["labels"]), size=shape, dtype=np.int64)
    return feeds


def _torch_outputs(run_dir: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What the checkpoint predicts, computed the way training and eval compute it (not by toolkit.export)."""
    from toolkit.train.checkpoint import load_checkpoint, load_model
    from toolkit.train.registry import make_task

    ckpt = load_checkpoint(run_dir / "best.pt")
    model, spec, rec = load_model(ckpt), ckpt["spec"], recipe_from_dict(ckpt["recipe"])
    args = [torch.from_numpy(a) for a in feeds.values()]
    if rec.task == "contrastive":  # the encoder alone: the projection head is not exported
        with torch.no_grad():
            return {"embedding": model.embed(*args).numpy()}
    with torch.no_grad():
        raw = model(*args).numpy()
    if rec.task == "classify":
        e = np.exp(raw - raw.max(axis=1, keepdims=True))
        return {"logits": raw, "probabilities": e / e.sum(axis=1, keepdims=True)}
    if rec.task in ("regress", "forecast"):
        return {OUTPUTS[rec.task][0]: make_task(rec, spec).predictions(raw)}
    if rec.task == "reconstruct":
        from toolkit.train.anomaly import anomaly_scores

        return {"reconstruction": raw, "score": anomaly_scores(args[0].numpy(), raw)}
    if rec.task == "generate":
        from toolkit.train.gan import to_pixels

        return {"images": to_pixels(torch.from_numpy(raw)).numpy()}
    raise AssertionError(f"no reference outputs for task {rec.task}: add it to _torch_outputs")


@pytest.mark.parametrize("name", recipe_names())
def test_every_recipe_exports_a_self_describing_model_equal_to_pytorch(name, run_of, exported):
    result = exported(name)
    run_dir = run_of(name)
    rec = load_recipe(run_dir / "recipe.yaml")
    assert result.path == run_dir / "model.onnx" and result.path.is_file()

    # Standard domains only; the full checker and strict shape inference pass.
    proto = onnx.load(result.path)
    domains = {o.domain for o in proto.opset_import} | {n.domain for n in proto.graph.node}
    assert domains <= set(STANDARD_DOMAINS), domains
    onnx.checker.check_model(proto, full_check=True)
    onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)

    # Self-describing: one JSON document under `toolkit`, the same in the sidecar.
    props = {p.key: p.value for p in proto.metadata_props}
    meta = json.loads(props["toolkit"])
    assert json.loads(result.sidecar.read_text()) == meta == result.metadata
    assert result.sidecar == run_dir / "model.json"
    assert meta["schema"] == SCHEMA and meta["task"] == rec.task and meta["role"] == "model"
    assert {"inputs", "outputs", "labels", "thresholds", "recipe", "metrics", "provenance", "parity"} <= set(
        meta
    )
    assert meta["recipe"] == rec.to_dict()
    assert meta["metrics"] == json.loads((run_dir / "metrics.json").read_text())
    prov = meta["provenance"]
    assert prov["exporter"] in export_mod.EXPORTERS and prov["opset"] == export_mod.DEFAULT_OPSET
    assert {"toolkit", "torch", "onnx", "date", "source_run"} <= set(prov)
    if rec.task == "reconstruct":
        assert meta["thresholds"]["score"]["value"] > 0

    # Names and dtypes, in the graph and in the metadata.
    graph_inputs = [(v.name, ONNX_DTYPES[v.type.tensor_type.elem_type]) for v in proto.graph.input]
    kind = "generate" if rec.task == "generate" else _input_kind(meta)
    assert graph_inputs == INPUTS[kind] == [(p["name"], p["dtype"]) for p in meta["inputs"]]
    assert [v.name for v in proto.graph.output] == OUTPUTS[rec.task] == [p["name"] for p in meta["outputs"]]
    for v in [*proto.graph.input, *proto.graph.output]:
        assert v.type.tensor_type.shape.dim[0].dim_param == "batch", v.name

    # Parity figures for every output, within tolerance.
    parity = meta["parity"]
    assert parity["batch_sizes"] == [1, 3, 17, 64] and parity["cases"] >= 4
    for out in OUTPUTS[rec.task]:
        figures = parity["outputs"][out]
        assert set(figures) == {"max_abs", "max_rel", "tolerance_used"} and figures["tolerance_used"] <= 1.0
    sequence = kind in ("tokens", "series")
    assert (len(parity["sequence_lengths"]) >= 3) == sequence

    # Dynamic axes really dynamic: batch 1 and 5, and two sequence lengths the export did not trace; the
    # outputs equal what the checkpoint predicts through the training code.
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    for batch in (1, 5):
        for length in (3, 11) if sequence else (None,):
            feeds = _feeds(meta, batch, length, rng)
            got = dict(zip(OUTPUTS[rec.task], session.run(None, feeds)))
            for out, expected in _torch_outputs(run_dir, feeds).items():
                assert got[out].shape[0] == batch
                np.testing.assert_allclose(got[out], expected, atol=ATOL, rtol=RTOL, err_msg=out)


def _input_kind(meta: dict) -> str:
    port = meta["inputs"][0]
    if port["name"] == "tokens":
        return "tokens"
    if port["name"] == "window":
        return "series"
    return "image" if port.get("layout") == "NCHW" else "tabular"


def test_slow_ops_are_rewritten_and_lstm_gru_keep_their_ops(exported):
    """onnxruntime's RNN kernel is slower than a Scan of MatMul + Tanh, its strided ConvTranspose slower than
    Conv + DepthToSpace (both slower than PyTorch at batch 64): the export rewrites them, says so in the
    provenance, and the parity check above covers the rewritten graphs."""
    rnn = onnx.load(exported("rnn-forecast").path)
    ops = {n.op_type for n in rnn.graph.node}
    assert "Scan" in ops and "RNN" not in ops, ops
    assert exported("rnn-forecast").metadata["provenance"]["rewrites"] == ["1 RNN op -> Scan"]
    gan = exported("gan-image")
    assert {n.op_type for n in onnx.load(gan.path).graph.node} >= {"Conv", "DepthToSpace"}
    assert "ConvTranspose" not in {n.op_type for n in onnx.load(gan.path).graph.node}
    assert gan.metadata["provenance"]["rewrites"] == ["2 ConvTranspose ops -> Conv + DepthToSpace"]
    for name, op in (("lstm-forecast", "LSTM"), ("gru-forecast", "GRU")):
        result = exported(name)
        assert op in {n.op_type for n in onnx.load(result.path).graph.node}
        assert "rewrites" not in result.metadata["provenance"]


def test_autoencoder_encoder_exports_beside_the_model(exported, run_of):
    result = exported("autoencoder-anomaly")
    (encoder,) = result.parts
    run_dir = run_of("autoencoder-anomaly")
    assert encoder.path == run_dir / "encoder.onnx" and encoder.sidecar == run_dir / "encoder.json"
    meta = encoder.metadata
    assert meta["role"] == "encoder" and [p["name"] for p in meta["outputs"]] == ["code"]
    latent = meta["recipe"]["model"]["latent"]
    x = np.random.default_rng(0).standard_normal((3, *meta["inputs"][0]["shape"][1:])).astype(np.float32)
    (code,) = ort.InferenceSession(str(encoder.path)).run(None, {"input": x})
    assert code.shape == (3, latent)


# --------------------------------------------------------------------------------------------- exporters
def test_dynamo_exporter_gives_the_same_model(run_of, tmp_path):
    result = export_run(run_of("mlp-tabular"), out=tmp_path / "m.onnx", exporter="dynamo")
    assert result.metadata["provenance"]["exporter"] == "dynamo"
    assert result.metadata["parity"]["outputs"]["probabilities"]["tolerance_used"] <= 1.0


def _corrupted(exporter):
    """An exporter whose graph has one weight changed: parity must catch it."""

    def export(sig, opset):
        proto = exporter(sig, opset)
        init = next(t for t in proto.graph.initializer if t.data_type == onnx.TensorProto.FLOAT)
        w = onnx.numpy_helper.to_array(init).copy()
        w.flat[0] += 0.5
        init.CopyFrom(onnx.numpy_helper.from_array(w, init.name))
        return proto

    return export


def _frozen_batch(exporter):
    """An exporter whose graph takes only the traced batch size."""

    def export(sig, opset):
        proto = exporter(sig, opset)
        proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value = export_mod.TRACE_BATCH
        return proto

    return export


@pytest.mark.parametrize(
    "broken, needle", [(_corrupted, "parity check failed"), (_frozen_batch, "fails at batch 1")]
)
def test_broken_graph_fails_with_exit_2_and_writes_nothing(
    broken, needle, cli, run_of, tmp_path, monkeypatch
):
    exporters = {name: broken(fn) for name, fn in export_mod.EXPORTERS.items() if name == "torchscript"}
    monkeypatch.setattr(export_mod, "EXPORTERS", exporters)
    result = cli("export", run_of("mlp-regress"), "--out", tmp_path / "m.onnx")
    assert_one_line_error(result, needle)
    assert list(tmp_path.iterdir()) == []  # no model, no sidecar, no temporary file


def test_failed_export_keeps_the_earlier_model_whole(cli, run_of, tmp_path, monkeypatch):
    out = tmp_path / "m.onnx"
    export_run(run_of("mlp-regress"), out=out, exporter="torchscript")
    before = out.read_bytes()
    torchscript = export_mod.EXPORTERS["torchscript"]
    monkeypatch.setattr(export_mod, "EXPORTERS", {"torchscript": _corrupted(torchscript)})
    assert cli("export", run_of("mlp-regress"), "--out", out).exit_code == 2
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.onnx"]


# --------------------------------------------------------------------------------------------- CLI
def test_cli_export_prints_the_signature(cli, run_of, tmp_path):
    result = cli("export", run_of("gru-text"), "--out", tmp_path / "t.onnx")
    assert result.exit_code == 0, result.output
    for word in ("tokens", "[batch, sequence]", "probabilities", "exporter torchscript", "opset 18"):
        assert word in result.output
    assert (tmp_path / "t.onnx").is_file() and (tmp_path / "t.json").is_file()


def test_cli_export_json(cli, run_of, tmp_path):
    result = cli("export", run_of("mlp-tabular"), "--out", tmp_path / "m.onnx", "--opset", "17", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    (entry,) = doc["files"]
    assert entry["path"] == str(tmp_path / "m.onnx") and entry["metadata"]["provenance"]["opset"] == 17
    assert onnx.load(entry["path"]).opset_import[0].version == 17


def test_export_help(cli):
    result = cli("export", "--help")
    assert result.exit_code == 0
    for word in ("RUN_DIR", "--out", "--opset", "--json", "parity"):
        assert word.lower() in result.output.lower()


def test_export_of_a_directory_without_a_checkpoint(cli, tmp_path):
    assert_one_line_error(cli("export", tmp_path), "checkpoint not found", "toolkit train")


def test_export_of_a_missing_directory(cli, tmp_path):
    assert_one_line_error(cli("export", tmp_path / "nope"), "run directory not found")


def test_export_of_a_damaged_checkpoint(cli, tmp_path):
    (tmp_path / "best.pt").write_bytes(b"not a checkpoint")
    assert_one_line_error(cli("export", tmp_path), "cannot read checkpoint")


@pytest.mark.parametrize(
    "args, needles",
    [
        (("--opset", "99"), ("opset 99 is not supported", "allowed: 13-")),
        (("--opset", "7"), ("opset 7 is not supported",)),
        (("--out", "model.txt"), ("--out must name a .onnx file",)),
        (("--exporter", "tensorrt"), ("unknown exporter 'tensorrt'", "torchscript", "dynamo")),
    ],
)
def test_export_bad_options(cli, run_of, args, needles):
    assert_one_line_error(cli("export", run_of("mlp-regress"), *args), *needles)
