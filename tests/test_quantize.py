"""toolkit quantize and toolkit bench: real tiny models, real onnxruntime quantization, real timings."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from helpers import NO_TORCH, assert_one_line_error, two_class_text_csv

from toolkit.runtime.model import OnnxModel, read_metadata
from toolkit.runtime.quantize import Candidate, choose


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("quantize")


@pytest.fixture(scope="module")
def cnn(workdir) -> Path:
    """A small CNN on builtin:digits, exported: RUN_DIR."""
    from toolkit.export import export_run
    from toolkit.train import train

    run = workdir / "cnn"
    overrides = ["model.channels=[8,16]", "model.hidden=32", "train.epochs=4", "train.patience=0"]
    train("cnn-image", overrides=overrides, out=run)
    export_run(run)
    return run


@pytest.fixture(scope="module")
def lstm(workdir) -> Path:
    from toolkit.export import export_run
    from toolkit.train import train

    run = workdir / "lstm"
    train("lstm-forecast", overrides=["model.hidden=32", "train.epochs=3", "train.patience=0"], out=run)
    export_run(run)
    return run


@pytest.fixture(scope="module")
def gru_text(workdir) -> Path:
    """A tiny GRU text classifier (embedding -> GRU -> head), exported."""
    from toolkit.export import export_run
    from toolkit.train import train

    run = workdir / "gru-text"
    data = two_class_text_csv(workdir / "texts.csv")
    overrides = ["model.hidden=16", "model.embed_dim=16", "train.epochs=3", "train.patience=0"]
    train("gru-text", data=str(data), overrides=overrides, out=run)
    export_run(run)
    return run


def _copy(run: Path, dst: Path) -> Path:
    """A private copy of an exported model (and its sidecar), so tests do not see each other's outputs."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("model.onnx", "model.json"):
        shutil.copy(run / name, dst / name)
    return dst / "model.onnx"


def _ops(path: Path) -> Counter:
    return Counter(n.op_type for n in onnx.load(str(path)).graph.node)


def test_static_is_qdq_per_channel_and_carries_its_recipe(cli, cnn, tmp_path):
    model = _copy(cnn, tmp_path)
    res = cli("quantize", model, "--mode", "static", "--max-drop", "0.05", "--json")
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    out = tmp_path / "model.int8.onnx"
    assert report["written"] == str(out) and out.is_file()
    ops = _ops(out)
    assert ops["QuantizeLinear"] > 0 and ops["DequantizeLinear"] > 0, ops
    # Every convolution reads a dequantized weight with one scale per output channel.
    proto = onnx.load(str(out))
    inits = {i.name: i for i in proto.graph.initializer}
    producer = {o: n for n in proto.graph.node for o in n.output}
    convs = [n for n in proto.graph.node if n.op_type == "Conv"]
    assert len(convs) == 4  # two blocks of conv-bn-relu x2
    # what the user reads (logits, probabilities) comes out of float nodes, not out of a uint8 softmax
    outputs = {o.name for o in proto.graph.output}
    assert {producer[o].op_type for o in outputs} == {"Gemm", "Softmax"}
    for conv in convs:
        dq = producer[conv.input[1]]
        assert dq.op_type == "DequantizeLinear"
        scale = onnx.numpy_helper.to_array(inits[dq.input[1]])
        weight = inits[dq.input[0]]
        assert weight.data_type == onnx.TensorProto.INT8
        assert scale.shape == (weight.dims[0],)  # per channel
    meta = read_metadata(out)
    q = meta["quantization"]
    assert q["mode"] == "static" and q["metric"] == "accuracy" and q["passed"] is True
    assert q["calibration"]["method"] == "minmax" and q["calibration"]["split"] == "train"
    assert q["drop"] == pytest.approx(report["candidates"][0]["drop"])
    assert set(q["speedup"]) == {"batch_1", "batch_64"}
    assert json.loads((tmp_path / "model.int8.json").read_text()) == meta
    # the quantized model runs and agrees with fp32 on the test split
    from toolkit.runtime.evalset import evaluation_inputs

    feeds = evaluation_inputs(meta).feeds
    a = OnnxModel(model).run_batches(feeds)["logits"].argmax(1)
    b = OnnxModel(out).run_batches(feeds)["logits"].argmax(1)
    assert (a == b).mean() >= 0.9


def test_dynamic_lstm_uses_integer_kernels(cli, lstm, tmp_path):
    model = _copy(lstm, tmp_path)
    res = cli("quantize", model, "--mode", "dynamic", "--max-drop", "0.2", "--json")
    assert res.exit_code == 0, res.output
    ops = _ops(tmp_path / "model.int8.onnx")
    assert ops["DynamicQuantizeLSTM"] == 1 and ops["LSTM"] == 0, ops
    assert "QuantizeLinear" not in ops  # dynamic: no calibrated activations
    # the 32 -> 1 head is cheaper as a float Gemm than quantized at run time (SMALL_WEIGHT)
    assert ops["MatMulInteger"] == ops["DynamicQuantizeMatMul"] == ops["DynamicQuantizeLinear"] == 0, ops
    assert ops["MatMul"] + ops["Gemm"] == 1, ops
    report = json.loads(res.stdout)
    assert report["metric"] == "mae" and report["drop_kind"] == "relative"


def test_dynamic_gru_gets_an_int8_recurrence_and_a_float_embedding(cli, gru_text, tmp_path):
    model = _copy(gru_text, tmp_path)
    res = cli("quantize", model, "--mode", "dynamic", "--max-drop", "0.5", "--json")
    assert res.exit_code == 0, res.output
    q = onnx.load(str(tmp_path / "model.int8.onnx"))
    ops = _ops(tmp_path / "model.int8.onnx")
    assert ops["GRU"] == 0 and ops["Scan"] == 1, ops  # onnxruntime has no INT8 GRU: a Scan with one
    body = next(a.g for n in q.graph.node if n.op_type == "Scan" for a in n.attribute if a.name == "body")
    assert "DynamicQuantizeMatMul" in [n.op_type for n in body.node]
    assert ops["Gather"] >= 1 and ops["DequantizeLinear"] == 0, ops  # the embedding stays float
    meta = read_metadata(tmp_path / "model.int8.onnx")["quantization"]
    assert meta["rewrites"] == ["1 GRU op -> Scan, INT8 recurrence"]
    report = json.loads(res.stdout)
    assert next(c for c in report["candidates"] if c["name"] == "dynamic")["rewrites"] == meta["rewrites"]
    checks = json.loads(cli("validate", tmp_path / "model.int8.onnx", "--run", gru_text, "--json").stdout)
    assert not [c for c in checks["checks"] if c["status"] == "fail"], checks["checks"]


def test_quantize_measures_the_batch_sizes_asked_for(cli, lstm, tmp_path):
    model = _copy(lstm, tmp_path)
    res = cli("quantize", model, "--mode", "dynamic", "--max-drop", "0.5", "--batch", "2,8")
    assert res.exit_code == 0, res.output
    assert "b2 ms" in res.output and "×b8" in res.output and "b64" not in res.output
    report = json.loads((tmp_path / "quantize.json").read_text())
    assert report["batches"] == [2, 8] and list(report["fp32"]["p50_ms"]) == ["2", "8"]
    assert all(list(c["speedup"]) == ["2", "8"] for c in report["candidates"] if not c["error"])


def test_a_mode_that_finds_nothing_to_quantize_says_so(cli, workdir, tmp_path):
    from toolkit.export import export_run
    from toolkit.train import train

    run = workdir / "mlp-small"  # every layer under SMALL_WEIGHT: dynamic mode leaves it all in float
    train("mlp-tabular", overrides=["model.hidden=[8]", "train.epochs=1", "train.patience=0"], out=run)
    export_run(run)
    model = _copy(run, tmp_path)
    assert_one_line_error(cli("quantize", model, "--mode", "dynamic"), "finds nothing to quantize")
    assert not (tmp_path / "model.int8.onnx").exists()
    res = cli("quantize", model, "--json")  # auto: static remains a contender, dynamic is an error row
    assert res.exit_code == 0, res.output
    rows = {c["name"]: c for c in json.loads(res.stdout)["candidates"]}
    assert "nothing to quantize" in rows["dynamic"]["error"] and rows["static"]["error"] is None


def test_forced_mode_over_budget_is_refused_and_writes_nothing(cli, cnn, tmp_path):
    model = _copy(cnn, tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    # -0.5: the variant would have to be 50 points better than fp32 — impossible.
    res = cli("quantize", model, "--mode", "static", "--max-drop", "-0.5")
    assert res.exit_code == 1
    assert "nothing written" in res.stderr and "budget" in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    # --force writes it, marked as failing its gate
    res = cli("quantize", model, "--mode", "static", "--max-drop", "-0.5", "--force", "--json")
    assert res.exit_code == 0, res.output
    q = read_metadata(tmp_path / "model.int8.onnx")["quantization"]
    assert q["passed"] is False and q["max_drop"] == -0.5


def test_auto_keeps_only_a_faster_candidate_within_budget(cli, cnn, tmp_path):
    model = _copy(cnn, tmp_path)
    res = cli("quantize", model, "--json")
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    by_name = {c["name"]: c for c in report["candidates"]}
    assert {"static", "dynamic"} <= set(by_name)
    assert report == json.loads((tmp_path / "quantize.json").read_text()) | {"report": report["report"]}
    if report["chosen"] is None:
        assert report["written"] is None and report["decision"].startswith("kept fp32")
        assert not (tmp_path / "model.int8.onnx").exists()
    else:
        kept = by_name[report["chosen"]]
        assert kept["passed_gate"] and all(s > 1 for s in kept["speedup"].values())
        for c in report["candidates"]:  # nothing eligible was faster than what was kept
            if c["passed_gate"] and c["faster"]:
                assert np.prod(list(c["speedup"].values())) <= np.prod(list(kept["speedup"].values()))
    # dynamic INT8 convolutions are slower than fp32 on a CPU: never kept
    assert report["chosen"] != "dynamic" or by_name["dynamic"]["faster"]


def _cand(name: str, drop: float, b1: float, b64: float, gate: bool = True) -> Candidate:
    c = Candidate(name, name.split()[0], proto=object(), metric=1 - drop, drop=drop, passed_gate=gate)
    c.speedup = {1: b1, 64: b64}
    return c


def test_choose_rules():
    fast_bad = _cand("static", 0.05, 2.0, 3.0, gate=False)
    slow_ok = _cand("dynamic", 0.0, 0.3, 0.1)
    half = _cand("static -1 node", 0.0, 0.9, 2.5)  # faster at 64 but slower at 1: not faster
    tie = _cand("dynamic -1 node", 0.0, 1.03, 1.02)  # within timing noise of fp32: not faster
    chosen, decision, refused = choose([fast_bad, slow_ok, half, tie], "auto", False, "accuracy", "max", 0.01)
    assert chosen is None and decision.startswith("kept fp32") and "slower" in decision and refused is None
    even = _cand("dynamic -2 nodes", 0.0, 1.0, 1.4)  # a tie at batch 1, clearly faster at 64: kept
    chosen, decision, _ = choose([fast_bad, half, tie, even], "auto", False, "accuracy", "max", 0.01)
    assert chosen is even and decision == "kept dynamic -2 nodes"
    good = _cand("static -2 nodes", 0.004, 1.2, 2.0)
    better = _cand("fp16", 0.0, 1.1, 2.5)
    chosen, decision, _ = choose([fast_bad, good, better, slow_ok], "auto", False, "accuracy", "max", 0.01)
    assert chosen is better and decision == "kept fp16"
    chosen, decision, _ = choose([fast_bad], "auto", False, "accuracy", "max", 0.01)
    assert chosen is None and "within the budget" in decision
    # forced mode
    chosen, _, refused = choose([fast_bad], "static", False, "accuracy", "max", 0.01)
    assert refused and "nothing written" in refused
    chosen, decision, refused = choose([fast_bad], "static", True, "accuracy", "max", 0.01)
    assert chosen is fast_bad and refused is None and "forced" in decision
    chosen, _, refused = choose([fast_bad, good], "static", False, "accuracy", "max", 0.01)
    assert chosen is good and refused is None


def test_fp16_passes_the_checker_and_runs(cli, cnn, tmp_path):
    model = _copy(cnn, tmp_path)
    res = cli("quantize", model, "--mode", "fp16", "--max-drop", "0.05", "--force", "--json")
    assert res.exit_code == 0, res.output
    out = tmp_path / "model.fp16.onnx"
    onnx.checker.check_model(onnx.load(str(out)), full_check=True)
    proto = onnx.load(str(out))
    halves = [i for i in proto.graph.initializer if i.data_type == onnx.TensorProto.FLOAT16]
    assert halves, "no float16 weights"
    m = OnnxModel(out, providers=["CPUExecutionProvider"])
    assert [s.dtype for s in m.inputs] == ["float32"]  # inputs and outputs stay fp32
    x = np.random.default_rng(1).standard_normal((5, 1, 8, 8)).astype(np.float32)
    got = m.run({"input": x})["probabilities"]
    ref = OnnxModel(model).run({"input": x})["probabilities"]
    assert got.dtype == np.float32 and np.abs(got - ref).max() < 1e-2


def test_validate_accepts_a_quantized_variant(cli, lstm, tmp_path):
    model = _copy(lstm, tmp_path)
    assert cli("quantize", model, "--mode", "dynamic", "--max-drop", "0.2").exit_code == 0
    res = cli("validate", tmp_path / "model.int8.onnx", "--run", lstm, "--json")
    report = json.loads(res.stdout)
    checks = {c["check"]: c for c in report["checks"]}
    assert res.exit_code == 0, [c for c in report["checks"] if c["status"] == "fail"]
    assert checks["parity"]["status"] == "skip" and "gated" in checks["parity"]["detail"]
    assert (tmp_path / "model.int8.validate.json").is_file()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--mode", "int4"], "unknown --mode 'int4'; allowed: auto, static, dynamic, fp16"),
        (["--calibration", "median"], "unknown --calibration"),
        (["--max-drop", "2"], "--max-drop must be between -1 and 1"),
        (["--provider", "tpu"], "unknown provider 'tpu'"),
        (["--samples", "0"], "--samples must be at least 1"),
        (["--out", "model.int8.txt"], "--out must name a .onnx file"),
        (["--batch", "1,x"], "--batch must be comma-separated positive integers"),
        (["--batch", "0"], "--batch must be comma-separated positive integers"),
    ],
)
def test_quantize_bad_options(cli, cnn, args, message):
    assert_one_line_error(cli("quantize", cnn / "model.onnx", *args), message)


def test_quantize_refuses_a_quantized_model_and_missing_files(cli, cnn, tmp_path):
    model = _copy(cnn, tmp_path)
    assert cli("quantize", model, "--mode", "static", "--max-drop", "0.5").exit_code == 0
    assert_one_line_error(cli("quantize", tmp_path / "model.int8.onnx"), "already quantized")
    assert_one_line_error(cli("quantize", tmp_path / "nope.onnx"), "model not found")


def test_bench_report_schema_and_plot(cli, cnn, tmp_path):
    model = _copy(cnn, tmp_path)
    assert cli("quantize", model, "--mode", "static", "--max-drop", "0.5").exit_code == 0
    out = tmp_path / "b.json"
    res = cli(
        "bench", model, tmp_path / "model.int8.onnx", "--run", cnn, "--batch", "1,4",
        "--rounds", "3", "--threads", "1", "--json", out,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    report = json.loads(out.read_text())
    assert report["schema"] == "toolkit.bench/1" and report["threads"] == 1 and report["batches"] == [1, 4]
    assert {"cpu", "cores", "onnxruntime", "python"} <= set(report["machine"])
    names = {r["contender"] for r in report["results"]}
    assert names == {"pytorch eager", "ort fp32", "ort static"}
    assert len(report["results"]) == 6
    for r in report["results"]:
        assert 0 < r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"]
        assert r["throughput"] == pytest.approx(r["batch"] * 1000 / r["p50_ms"])
        assert r["calls"] >= 3 and r["peak_rss_mb"] > 10 and r["size_bytes"] > 0
        assert r["vs_ort_fp32"] > 0 and r["vs_pytorch"] > 0
        assert len(r["round_p50_ms"]) == 3
    by = {(r["contender"], r["batch"]): r for r in report["results"]}
    for b in (1, 4):  # speed-ups are paired per round, not a ratio of pooled medians
        ref, q = by[("ort fp32", b)]["round_p50_ms"], by[("ort static", b)]["round_p50_ms"]
        assert by[("ort static", b)]["vs_ort_fp32"] == pytest.approx(np.median(np.divide(ref, q)))
    fp32 = [r for r in report["results"] if r["contender"] == "ort fp32"]
    assert all(r["vs_ort_fp32"] == 1.0 for r in fp32)
    assert (tmp_path / "b.png").read_bytes()[:4] == b"\x89PNG"


def test_paired_speedup_cancels_load_that_hits_one_round():
    from toolkit.runtime.bench import paired_speedup

    # B is 2x faster than A in every quiet round; a burst of load hit B in round 2 and A in round 3.
    a, b = [[1.0, 1.0], [1.0, 1.1], [8.0, 8.0]], [[0.5, 0.5], [4.0, 4.0], [4.0, 4.0]]
    assert paired_speedup(a, b) == pytest.approx(2.0)
    pooled = np.median(np.concatenate(a)) / np.median(np.concatenate(b))
    assert pooled < 1  # a ratio of pooled medians would call B the slower one


def test_bench_tells_apart_two_fp32_models_of_the_same_name(cli, cnn, tmp_path):
    a, b = _copy(cnn, tmp_path / "a"), _copy(cnn, tmp_path / "b")
    out = tmp_path / "b.json"
    res = cli("bench", a, b, "--batch", "2", "--rounds", "1", "--threads", "1", "--json", out)
    assert res.exit_code == 0, res.output
    names = [r["contender"] for r in json.loads(out.read_text())["results"]]
    assert names == ["ort fp32 [a/model.onnx]", "ort fp32 [b/model.onnx]"]
    assert_one_line_error(cli("bench", a, a, "--rounds", "1"), "given twice")


def test_bench_bad_input(cli, cnn, tmp_path):
    assert_one_line_error(cli("bench", cnn / "model.onnx", "--batch", "1,x"), "--batch must be")
    assert_one_line_error(cli("bench", tmp_path / "missing.onnx"), "model not found")
    assert_one_line_error(
        cli("bench", cnn / "model.onnx", "--batch", "0"), "--batch must be comma-separated positive"
    )


def test_quantize_and_bench_run_without_torch(cnn, tmp_path):
    model = _copy(cnn, tmp_path)
    code = NO_TORCH + (
        "from toolkit.runtime.quantize import quantize\n"
        "from toolkit.runtime.bench import bench\n"
        f"r = quantize({str(model)!r}, mode='static', max_drop=0.5, rounds=1, slice_seconds=0.02)\n"
        "assert r['written'], r\n"
        f"b = bench([{str(model)!r}, r['written']], batches=[2], rounds=1, slice_seconds=0.02)\n"
        "assert len(b['results']) == 2\n"
        "assert 'torch' not in sys.modules\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-2000:]


def test_quantize_leaves_the_working_directory_alone(cli, lstm, tmp_path, monkeypatch):
    """onnxruntime's quantization tools drop uuid-named external-data files into the current directory;
    quantize runs them elsewhere, and a relative model path still works."""
    _copy(lstm, tmp_path / "m")
    monkeypatch.chdir(tmp_path)
    res = cli("quantize", "m/model.onnx", "--json")
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    assert json.loads(res.stdout)["model"] == "m/model.onnx"
