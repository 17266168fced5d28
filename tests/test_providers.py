"""Execution providers and device choice on a machine without a GPU (toolkit.runtime.providers, select_device).

What a GPU user relies on and a CPU machine can prove: `cpu|cuda|tensorrt` names resolve to onnxruntime's
provider chains with their options (device_id; TensorRT's engine cache next to the model, fp16 when asked);
a provider this onnxruntime lacks, or one that does not start, falls back to CPU with one warning line (or
is refused with one error line when strict); every command that takes --provider follows that rule; and
`--device cuda` trains on CPU with a warning here. The GPU side itself is `make gpu-check`
(scripts/gpu_check.py). fp16 conversion validity is tested in test_quantize.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from helpers import ANSI, assert_one_line_error

from toolkit.errors import ToolkitError
from toolkit.runtime import providers as P
from toolkit.runtime.model import OnnxModel

HAS_CUDA = "CUDAExecutionProvider" in ort.get_available_providers()
needs_cpu_only_ort = pytest.mark.skipif(HAS_CUDA, reason="onnxruntime-gpu installed: CUDA is not missing")


@pytest.fixture(autouse=True)
def _not_strict(monkeypatch):
    monkeypatch.delenv(P.STRICT_ENV, raising=False)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """An iris MLP trained through the CLI with --device cuda (CPU here), then exported: RUN_DIR, and
    what the train command printed."""
    from typer.testing import CliRunner

    from toolkit.cli.main import app
    from toolkit.export import export_run

    run = tmp_path_factory.mktemp("providers") / "iris"
    args = ["train", "mlp-tabular", "--data", "builtin:iris", "--device", "cuda", "--epochs", "3"]
    result = CliRunner().invoke(app, [*args, "--set", "model.hidden=[8]", "--out", str(run), "--json"])
    assert result.exit_code == 0, result.output
    export_run(run)
    (run / "train.stdout").write_text(result.stdout)
    (run / "train.stderr").write_text(result.stderr)
    return run


# ---- names ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "spec, provider, device, fp16",
    [
        ("cpu", P.CPU, 0, False),
        ("CUDA", P.CUDA, 0, False),
        ("cuda:1", P.CUDA, 1, False),
        ("tensorrt", P.TENSORRT, 0, False),
        ("tensorrt-fp16:2", P.TENSORRT, 2, True),
        ("CUDAExecutionProvider", P.CUDA, 0, False),
        ("OpenVINOExecutionProvider", "OpenVINOExecutionProvider", 0, False),
    ],
)
def test_parse(spec, provider, device, fp16):
    assert P.parse(spec) == P.Request(provider, device, fp16)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("tpu", "unknown provider 'tpu'; allowed: cpu, cuda, tensorrt, tensorrt-fp16"),
        ("cuda:x", "bad device in provider 'cuda:x'"),
        ("cpu:1", "bad device in provider 'cpu:1'"),
        ("", "unknown provider ''"),
    ],
)
def test_parse_refuses(spec, message):
    with pytest.raises(ToolkitError, match=message):
        P.parse(spec)


def test_chains_put_cpu_last():
    assert P.parse("tensorrt").chain == [P.TENSORRT, P.CUDA, P.CPU]
    assert P.parse("cuda").chain == [P.CUDA, P.CPU]
    assert P.parse("CoreMLExecutionProvider").chain == ["CoreMLExecutionProvider", P.CPU]


# ---- options ------------------------------------------------------------------------------------------------
def test_tensorrt_options_cache_next_to_the_model(tmp_path):
    model = tmp_path / "runs" / "cnn" / "model.onnx"
    model.parent.mkdir(parents=True)
    assert P.cache_dir(model) == tmp_path / "runs" / "cnn" / ".trt-cache"
    opts = P.provider_options(P.TENSORRT, device_id=1, fp16=True, cache=P.cache_dir(model))
    assert opts == {
        "device_id": "1",
        "trt_fp16_enable": "True",
        "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": str(tmp_path / "runs" / "cnn" / ".trt-cache"),
        "trt_timing_cache_enable": "True",
        "trt_timing_cache_path": str(tmp_path / "runs" / "cnn" / ".trt-cache"),
    }
    assert P.provider_options(P.TENSORRT)["trt_fp16_enable"] == "False"
    assert "trt_engine_cache_enable" not in P.provider_options(P.TENSORRT)
    assert P.provider_options(P.CUDA, device_id=3) == {"device_id": "3"}
    assert P.provider_options(P.CPU) == {}


def test_for_model_creates_the_cache_folder_only_for_tensorrt(tmp_path):
    model = tmp_path / "m" / "model.onnx"
    model.parent.mkdir()
    entries = [
        (P.TENSORRT, {"device_id": "0", "trt_fp16_enable": "True"}),
        (P.CUDA, {"device_id": "0"}),
        P.CPU,
    ]
    out = P.for_model(entries, model)
    assert [name for name, _ in out] == [P.TENSORRT, P.CUDA, P.CPU]
    trt = out[0][1]
    assert (
        trt["trt_engine_cache_path"] == str(model.parent / ".trt-cache") and trt["trt_fp16_enable"] == "True"
    )
    assert (model.parent / ".trt-cache").is_dir()
    assert out[1][1] == {"device_id": "0"} and out[2][1] == {}
    assert entries[0][1] == {"device_id": "0", "trt_fp16_enable": "True"}  # the input is not changed
    # no TensorRT in the chain: no folder
    other = tmp_path / "n" / "model.onnx"
    other.parent.mkdir()
    P.for_model([(P.CUDA, {}), (P.CPU, {})], other)
    assert not (other.parent / ".trt-cache").exists()


def test_for_model_without_a_usable_folder_builds_without_cache(tmp_path, capsys):
    (tmp_path / ".trt-cache").write_text("a file where the cache folder should be")
    out = P.for_model([(P.TENSORRT, {})], tmp_path / "model.onnx")
    assert "trt_engine_cache_path" not in out[0][1]
    assert "warning: TensorRT engine cache disabled: cannot create" in capsys.readouterr().err


# ---- resolution and fall-back ----------------------------------------------------------------------------------
def test_resolve_with_gpu_providers_listed(monkeypatch):
    """The chain and options when onnxruntime-gpu lists TensorRT and CUDA (the list is all that is faked)."""
    monkeypatch.setattr(P, "available", lambda: [P.TENSORRT, P.CUDA, P.CPU])
    res = P.resolve("tensorrt-fp16:1")
    assert res.reason is None and res.requested == P.TENSORRT
    assert res.providers == [P.TENSORRT, P.CUDA, P.CPU]
    assert res.entries[0][1]["trt_fp16_enable"] == "True" and res.entries[0][1]["device_id"] == "1"
    assert res.entries[1][1] == {"device_id": "1"}
    assert P.resolve("cuda").providers == [P.CUDA, P.CPU]
    assert P.resolve(None).providers == [P.TENSORRT, P.CUDA, P.CPU]  # default: every available one
    assert P.resolve([P.CUDA, "cpu"]).providers == [P.CUDA, P.CPU]


def test_resolve_tensorrt_without_its_provider_keeps_cuda(monkeypatch):
    monkeypatch.setattr(P, "available", lambda: [P.CUDA, P.CPU])
    res = P.resolve("tensorrt")
    assert res.providers == [P.CUDA, P.CPU]
    assert "TensorrtExecutionProvider is not available" in res.reason
    assert res.reason.endswith("falling back to CUDAExecutionProvider")


@needs_cpu_only_ort
@pytest.mark.parametrize("spec", ["cuda", "tensorrt", "tensorrt-fp16", "cuda:1"])
def test_missing_gpu_provider_falls_back_to_cpu(spec):
    res = P.resolve(spec)
    assert res.providers == [P.CPU] and res.fell_back
    assert f"execution provider {P.parse(spec).provider} is not available" in res.reason
    assert "onnxruntime-gpu" in res.reason and res.reason.endswith("falling back to CPUExecutionProvider")
    assert "\n" not in res.reason


@needs_cpu_only_ort
def test_strict_refuses_instead(monkeypatch):
    with pytest.raises(ToolkitError, match="CUDAExecutionProvider is not available.*strict: no fall-back"):
        P.resolve("cuda", strict=True)
    monkeypatch.setenv(P.STRICT_ENV, "1")
    with pytest.raises(ToolkitError, match="strict: no fall-back to CPU"):
        P.resolve("tensorrt")
    assert P.resolve("cuda", strict=False).fell_back  # an explicit argument beats the environment
    assert P.resolve("cpu").reason is None  # CPU is always there


def test_a_provider_that_does_not_start_is_reported(run_dir):
    """onnxruntime drops a listed provider that fails to initialize; not_started says so (or raises)."""
    session, reason = P.open_session(run_dir / "model.onnx", "cpu")
    assert reason is None and session.get_providers() == [P.CPU]
    reason = P.not_started(session, P.CUDA, strict=False)
    assert reason.startswith("execution provider CUDAExecutionProvider did not start (no usable NVIDIA GPU")
    assert reason.endswith("falling back to CPUExecutionProvider")
    with pytest.raises(ToolkitError, match="did not start .*strict: no fall-back"):
        P.not_started(session, P.TENSORRT, strict=True)
    assert P.not_started(session, P.CPU) is None


# ---- every command follows the rule -----------------------------------------------------------------------------
@needs_cpu_only_ort
def test_onnx_model_falls_back_with_one_warning(run_dir, capsys):
    model = OnnxModel(run_dir / "model.onnx", providers="cuda")
    assert model.providers == [P.CPU] and "CUDAExecutionProvider is not available" in model.fallback
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: execution provider CUDAExecutionProvider")
    out = model.run({"input": np.zeros((2, 4), np.float32)})
    assert out["probabilities"].shape == (2, 3)
    assert OnnxModel(run_dir / "model.onnx", providers="cpu").fallback is None
    with pytest.raises(ToolkitError, match="TensorrtExecutionProvider is not available"):
        OnnxModel(run_dir / "model.onnx", providers="tensorrt", strict=True)


@needs_cpu_only_ort
def test_validate_provider_cuda_validates_on_cpu_instead(cli, run_dir, monkeypatch):
    result = cli("validate", run_dir / "model.onnx", "--provider", "cuda", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["passed"] and report["providers"] == [P.CPU]
    loads = [(c["provider"], c["status"]) for c in report["checks"] if c["check"] == "load"]
    assert loads == [(P.CUDA, "skip"), (P.CPU, "pass")]
    assert "CPUExecutionProvider" in report["metrics"]
    assert ANSI.sub("", result.stderr).startswith("warning: execution provider CUDAExecutionProvider")
    monkeypatch.setenv(P.STRICT_ENV, "1")
    assert_one_line_error(
        cli("validate", run_dir / "model.onnx", "--provider", "cuda"),
        "CUDAExecutionProvider is not available",
    )
    assert_one_line_error(
        cli("validate", run_dir / "model.onnx", "--provider", "gpu"), "unknown provider 'gpu'"
    )


def test_validate_provider_cpu_runs_cpu_only(cli, run_dir):
    result = cli("validate", run_dir / "model.onnx", "--provider", "cpu", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["providers"] == [P.CPU]
    assert not result.stderr.strip()


@needs_cpu_only_ort
def test_predict_falls_back_and_answers(cli, run_dir, tmp_path):
    rows = tmp_path / "rows.csv"
    rows.write_text("5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n")
    result = cli("predict", run_dir / "model.onnx", rows, "--provider", "tensorrt", "--json")
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["results"]) == 2
    assert "TensorrtExecutionProvider is not available" in result.stderr


@needs_cpu_only_ort
def test_bench_refuses_a_missing_provider(cli, run_dir):
    """A benchmark must never print CPU figures under a GPU's name: a missing provider is an error."""
    assert_one_line_error(
        cli("bench", run_dir / "model.onnx", "--providers", "cpu,cuda"),
        "CUDAExecutionProvider is not available",
        "strict",
    )


# ---- training device -----------------------------------------------------------------------------------------
def test_device_selection_without_gpu():
    import torch

    from toolkit.train.loop import autocast_dtype, select_device

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert select_device("auto").type == "cpu"
    assert select_device("cpu").type == "cpu"
    assert select_device("cuda").type == "cpu"  # falls back; the CLI says so
    assert autocast_dtype(torch.device("cpu"), True) is None  # no mixed precision on CPU


def test_train_device_cuda_without_gpu_warns_and_trains_on_cpu(run_dir):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    err = ANSI.sub("", (run_dir / "train.stderr").read_text()).strip().splitlines()
    assert err == ["warning: CUDA requested but not available; training on CPU"]
    metrics = json.loads((run_dir / "train.stdout").read_text())
    assert metrics["device"] == "cpu" and metrics["epochs_run"] == 3


def test_train_rejects_an_unknown_device(cli, tmp_path):
    assert_one_line_error(
        cli("train", "mlp-tabular", "--data", "builtin:iris", "--device", "tpu", "--out", tmp_path / "x"),
        "tpu",
    )


# ---- make gpu-check -------------------------------------------------------------------------------------------
GPU_CHECK = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.py"


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="an NVIDIA driver is present")
def test_gpu_check_without_a_gpu_exits_3_and_writes_nothing(tmp_path):
    out = tmp_path / "gpu_check.json"
    proc = subprocess.run(
        [sys.executable, GPU_CHECK, "--out", out], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 3
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu-check: no NVIDIA GPU on this machine"), proc.stderr
    assert not out.exists() and not (GPU_CHECK.parents[1] / ".venv-gpu").exists()


@pytest.mark.slow  # ~30 s: trains, serves and benchmarks
def test_gpu_check_rehearsal_runs_every_step_on_cpu(tmp_path):
    """The script's own code paths (train, export, validate, serve + tritonclient, bench, fp16, parity) on
    CPU; its report says rehearsal and never passes as a GPU check."""
    out = tmp_path / "gpu_check.json"
    args = ["--rehearse", "--recipes", "mlp-tabular", "--epochs", "1", "--out", out]
    proc = subprocess.run([sys.executable, GPU_CHECK, *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    steps = {s["step"]: s for s in report["steps"]}
    assert set(steps) == {
        "train",
        "export",
        "validate",
        "serve",
        "bench",
        "quantize fp16",
        "parity cpu vs cuda",
    }
    assert all(s["status"] == "pass" for s in report["steps"]), report["steps"]
    assert steps["serve"]["max_rel_diff_vs_cpu"] < 1e-3 and steps["serve"]["exit_code"] == 0
    assert {r["batch"] for r in steps["bench"]["results"]} == {1, 256}
    assert report["rehearsal"] and report["passed"] is False
