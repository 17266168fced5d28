#!/usr/bin/env python3
"""`make gpu-check`: the GPU path end to end on a machine with an NVIDIA GPU, in one JSON report.

What it proves, in this order (each step passes, fails or is skipped with its reason; nothing is faked):
1. every default recipe trains for a few epochs on CUDA (mixed precision as the recipe says) and exports;
2. each exported model validates on the CUDA and TensorRT execution providers (fp32 parity: the recorded
   test metrics are reproduced there, as on CPU);
3. each is quantized to fp16 on CUDA with the accuracy gate (`toolkit quantize --mode fp16 --provider cuda`);
4. one model (cnn-image) is served with `toolkit serve --provider cuda` and driven with tritonclient; its
   answers are compared with onnxruntime on CPU;
5. that model is benchmarked on CPU vs CUDA vs TensorRT, p50/p99 at batch 1 and 256 (`toolkit bench`);
6. the same recipe and seed trained on CPU gives the same test metrics as on CUDA, within noise.
Every provider is strict here (TOOLKIT_PROVIDER_STRICT=1): a GPU provider that is missing or does not start
is a failure, never CPU figures under a GPU's name. Steps still ahead when the time budget (8 minutes by
default) runs out are recorded as skipped.

Set-up: the check runs in a Python that has a CUDA build of torch, onnxruntime-gpu (the CPU wheel has no GPU
providers) and the toolkit. With no --python it makes .venv-gpu (with --system-site-packages, so a CUDA torch
already installed with the system Python is reused) and installs what is missing from wheels:

    python3 -m venv --system-site-packages .venv-gpu
    .venv-gpu/bin/pip install torch                       # only if no CUDA torch is there; PyPI's Linux wheels are CUDA builds
    .venv-gpu/bin/pip install 'onnxruntime-gpu[cuda,cudnn]' 'tensorrt-cu13-libs>=10,<11'
    .venv-gpu/bin/pip install --no-deps -e . && .venv-gpu/bin/pip install <toolkit's other deps, not onnxruntime>

(onnxruntime-gpu 1.31 is built for CUDA 13 and cuDNN 9; its TensorRT provider loads TensorRT 10's
libnvinfer.so.10.) `--wheels DIR` installs from a folder of wheels without an index (machines with no
network). On a machine without an NVIDIA GPU the script exits 3 at once with a one-line reason.

Usage: python3 scripts/gpu_check.py [--out bench/results/gpu_check.json] [--epochs 3] [--budget 480]
       [--recipes cnn-image,mlp-tabular] [--python PY | --venv .venv-gpu] [--wheels DIR]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the toolkit from this checkout, installed or not
from toolkit.recipe import SHIPPED_RECIPES as RECIPES  # noqa: E402

SHOWCASE = "cnn-image"  # served, benchmarked and trained on CPU too (else the first recipe checked)
BENCH_BATCHES = (1, 256)
PARITY_ATOL = (
    0.03  # same seed on CPU and CUDA: the main metric within 3 points (accuracy-like) or 3% (errors)
)
NO_GPU = 3  # exit code: no NVIDIA GPU here
STRICT = {"TOOLKIT_PROVIDER_STRICT": "1"}
# The toolkit's own dependencies that the GPU environment must not take from pyproject as they are.
NOT_FROM_PYPROJECT = ("onnxruntime", "torch")
# Where each step runs. `--rehearse` swaps in CPU for all of them: a run of the script's own code paths on a
# machine without a GPU (for developing this script); its report says so and never passes as a GPU check.
PLAN = {
    "device": "cuda",
    "validate": ["cuda", "tensorrt"],
    "quantize": "cuda",
    "serve": "cuda",
    "bench": ["cpu", "cuda", "tensorrt"],
}
REHEARSAL = {"device": "cpu", "validate": ["cpu"], "quantize": "cpu", "serve": "cpu", "bench": ["cpu"]}


# ============================================================================ outer: find the GPU, set up
def detect_gpu() -> dict | None:
    """The first NVIDIA GPU as nvidia-smi reports it; None when there is none (or no driver)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run(
            [smi, "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = [line for line in out.stdout.splitlines() if line.strip()]
    if out.returncode != 0 or not lines:
        return None
    name, memory, driver = [part.strip() for part in lines[0].split(",")[:3]]
    return {"name": name, "memory": memory, "driver": driver, "count": len(lines)}


PROBE = """
import json
info = {}
try:
    import torch
    info["torch"] = torch.__version__
    info["torch_cuda"] = torch.cuda.is_available()
except Exception as exc:
    info["torch"] = None
try:
    import onnxruntime as ort
    info["onnxruntime"] = ort.__version__
    info["providers"] = ort.get_available_providers()
except Exception:
    info["onnxruntime"] = None
import importlib
need = ["toolkit.cli.main", "toolkit.train", "toolkit.export", "toolkit.runtime.server.app", "tritonclient.http",
        "sklearn", "statsmodels", "wordfreq", "onnx", "matplotlib"]
missing = []
for name in need:
    try:
        importlib.import_module(name)
    except Exception:
        missing.append(name)
info["missing"] = missing
info["toolkit"] = not missing
print(json.dumps(info))
"""


def probe(python: str) -> dict:
    out = subprocess.run([python, "-c", PROBE], capture_output=True, text=True, cwd=ROOT, timeout=300)
    if out.returncode != 0:
        return {}
    return json.loads(out.stdout.strip().splitlines()[-1])


def ready(info: dict) -> bool:
    return bool(
        info.get("torch_cuda")
        and "CUDAExecutionProvider" in info.get("providers", [])
        and info.get("toolkit")
    )


def toolkit_requirements() -> list[str]:
    """pyproject's core, train and dev requirements, less onnxruntime (onnxruntime-gpu replaces it) and torch
    (the CUDA build is installed on its own)."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in ("train", "dev"):
        reqs += project.get("optional-dependencies", {}).get(extra, [])
    keep = []
    for req in reqs:
        name = req.split(";")[0].split("[")[0]
        for sep in "<>=!~ ":
            name = name.split(sep)[0]
        if name.strip().lower() not in NOT_FROM_PYPROJECT:
            keep.append(req)
    return keep


def pip(python: str, args: list[str], wheels: str | None, log: list[str]) -> None:
    cmd = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    if wheels:
        cmd += ["--no-index", "--find-links", wheels]
    cmd += args
    log.append(" ".join(cmd))
    print("gpu-check: " + " ".join(cmd[3:]), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def prepare(args: argparse.Namespace) -> tuple[str, dict, list[str]]:
    """The Python to run the check with, what it has, and the pip commands run to get there."""
    log: list[str] = []
    if args.python:
        return args.python, probe(args.python), log
    info = probe(sys.executable)
    if ready(info):
        return sys.executable, info, log
    venv = ROOT / args.venv
    python = str(venv / "bin" / "python")
    if not Path(python).exists():
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    info = probe(python)
    if not info.get("torch_cuda"):
        pip(python, ["torch"], args.wheels, log)
    if "CUDAExecutionProvider" not in info.get("providers", []):
        pip(python, ["onnxruntime-gpu[cuda,cudnn]"], args.wheels, log)
    if "TensorrtExecutionProvider" in probe(python).get("providers", []) and not trt_libs(python):
        pip(python, ["tensorrt-cu13-libs>=10,<11"], args.wheels, log)
    if not info.get("toolkit"):
        pip(python, ["--no-deps", "-e", "."], args.wheels, log)
        pip(python, toolkit_requirements(), args.wheels, log)
    return python, probe(python), log


def site_dirs(python: str) -> list[str]:
    out = subprocess.run(
        [
            python,
            "-c",
            "import sys; print(chr(10).join(p for p in sys.path if p.endswith('-packages')))",
        ],
        capture_output=True,
        text=True,
    )
    return [line for line in out.stdout.splitlines() if line and Path(line).is_dir()]


def trt_libs(python: str) -> list[str]:
    return [d for s in site_dirs(python) for d in glob.glob(f"{s}/tensorrt_libs") if Path(d).is_dir()]


def library_path(python: str) -> str:
    """LD_LIBRARY_PATH for the check: the CUDA, cuDNN and TensorRT libraries that came as wheels (the
    TensorRT provider dlopens libnvinfer.so.10 by name, which only the loader's path finds)."""
    dirs = []
    for s in site_dirs(python):
        dirs += sorted(glob.glob(f"{s}/nvidia/*/lib")) + sorted(glob.glob(f"{s}/nvidia/cu*/lib"))
        dirs += [d for d in (f"{s}/tensorrt_libs",) if Path(d).is_dir()]
    old = os.environ.get("LD_LIBRARY_PATH", "")
    return ":".join(dict.fromkeys(dirs + ([old] if old else [])))


def outer(args: argparse.Namespace) -> int:
    t0 = time.time()
    gpu = detect_gpu()
    if gpu is None:
        print(
            "gpu-check: no NVIDIA GPU on this machine (nvidia-smi is missing or lists none); this check needs "
            "one and ran nothing (the CPU path is `make test`)",
            file=sys.stderr,
        )
        return NO_GPU
    try:
        python, info, pip_log = prepare(args)
    except subprocess.CalledProcessError as exc:
        print(f"gpu-check: set-up failed: {' '.join(exc.cmd)} exited {exc.returncode}", file=sys.stderr)
        return 2
    if not ready(info):
        print(
            f"gpu-check: {python} lacks what the check needs (torch with CUDA, onnxruntime-gpu, the toolkit): "
            f"{json.dumps(info)}",
            file=sys.stderr,
        )
        return 2
    env = {**os.environ, **STRICT, "LD_LIBRARY_PATH": library_path(python), "PYTHONUNBUFFERED": "1"}
    setup_s = time.time() - t0
    cmd = [
        python,
        str(Path(__file__).resolve()),
        "--inner",
        "--out",
        str(args.out),
        "--epochs",
        str(args.epochs),
    ]
    cmd += ["--deadline", str(t0 + args.budget), "--recipes", ",".join(args.recipes)]
    cmd += ["--setup", json.dumps({"seconds": round(setup_s, 1), "pip": pip_log, "gpu": gpu})]
    return subprocess.call(cmd, env=env, cwd=ROOT)


# ============================================================================ inner: the check itself
class Report:
    """Steps with status and figures; written as one JSON document at the end (and after each step)."""

    def __init__(self, out: Path, deadline: float, setup: dict) -> None:
        self.out, self.deadline, self.t0 = out, deadline, time.time()
        self.doc: dict = {"schema": "toolkit.gpu_check/1", "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        self.doc["setup"] = setup
        self.doc["steps"] = []

    def left(self) -> float:
        return self.deadline - time.time()

    def step(self, name: str, fn, min_left: float = 10.0, **where) -> dict | None:
        """Run one step; record pass (with what fn returns), fail (with the error) or skip (no time left)."""
        row = {"step": name, **where}
        if self.left() < min_left:
            row |= {
                "status": "skip",
                "detail": f"time budget: {self.left():.0f} s left, needs ~{min_left:.0f}",
            }
            self.doc["steps"].append(row)
            print(f"gpu-check: skip {name} {where or ''}: no time left", file=sys.stderr, flush=True)
            return None
        t = time.time()
        print(f"gpu-check: {name} {where or ''}", file=sys.stderr, flush=True)
        try:
            result = fn()
            row |= {"status": "pass" if result.pop("passed", True) else "fail", **result}
        except Exception as exc:  # one step's failure is a finding, not the end of the check
            row |= {
                "status": "fail",
                "detail": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
            }
            result = None
        row["seconds"] = round(time.time() - t, 2)
        self.doc["steps"].append(row)
        self.write()
        return result if row["status"] == "pass" else None

    def write(self) -> None:
        from toolkit.io import write_json

        self.doc["seconds"] = round(time.time() - self.t0 + self.doc["setup"].get("seconds", 0), 1)
        counts = {s: sum(r["status"] == s for r in self.doc["steps"]) for s in ("pass", "fail", "skip")}
        self.doc["summary"] = counts
        self.doc["passed"] = counts["fail"] == 0 and counts["skip"] == 0 and "rehearsal" not in self.doc
        write_json(self.out, self.doc)


def machine() -> dict:
    import onnxruntime as ort
    import torch

    props = torch.cuda.get_device_properties(0)
    return {
        "gpu": torch.cuda.get_device_name(0),
        "gpu_memory_gib": round(props.total_memory / 2**30, 1),
        "bf16": torch.cuda.is_bf16_supported(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "onnxruntime": ort.__version__,
        "providers": ort.get_available_providers(),
        "cpu_cores": os.cpu_count(),
    }


def train_step(name: str, work: Path, epochs: int, device: str, out: str) -> dict:
    from toolkit.train import train

    t = time.perf_counter()
    result = train(name, overrides=[f"train.epochs={epochs}", f"train.device={device}"], out=work / out)
    m = result.metrics
    if m["device"].split(":")[0] != device:
        raise RuntimeError(f"trained on {m['device']}, not {device}")
    return {
        "device": m["device"],
        "epochs": m["epochs_run"],
        "train_seconds": round(time.perf_counter() - t, 2),
        "test": {k: v for k, v in m.items() if isinstance(v, float)},
        "main": m.get("main_metric"),
    }


def export_step(run: Path) -> dict:
    from toolkit.export import export_run

    result = export_run(run)
    return {"model": str(result.path), "bytes": result.path.stat().st_size}


def validate_step(model: Path) -> dict:
    from toolkit.runtime.providers import provider_name
    from toolkit.runtime.validate import validate

    report = validate(model, provider=PLAN["validate"])
    fails = [
        f"{c['check']} {c['provider'] or ''}: {c['detail']}"
        for c in report["checks"]
        if c["status"] == "fail"
    ]
    ran = {p: {k: v["got"] for k, v in (rows or {}).items()} for p, rows in report["metrics"].items()}
    return {
        "passed": report["passed"]
        and set(report["providers"]) == {provider_name(p) for p in PLAN["validate"]},
        "providers": report["providers"],
        "metrics": ran,
        "failures": fails[:5],
    }


def quantize_step(model: Path) -> dict:
    from toolkit.runtime.quantize import quantize

    report = quantize(model, mode="fp16", provider=PLAN["quantize"], rounds=2, slice_seconds=0.05)
    chosen = next((c for c in report["candidates"] if c.get("mode") == "fp16"), {})
    return {
        "passed": report["written"] is not None and not report["refused"],
        "provider": report["provider"],
        "written": report["written"],
        "metric": report["metric"],
        "fp32": report["fp32"],
        "fp16": chosen,
        "refused": report["refused"],
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_step(model: Path, seconds: float) -> dict:
    """`toolkit serve MODEL --provider cuda`, driven by tritonclient (HTTP, binary tensors) at batch 1 and 64;
    answers compared with onnxruntime on CPU."""
    import numpy as np
    import onnxruntime as ort
    import tritonclient.http as httpclient

    from toolkit.runtime.evalset import synthetic_feeds
    from toolkit.runtime.model import read_metadata

    port, grpc_port = free_port(), free_port()
    cmd = [sys.executable, "-c", "from toolkit.cli.main import main; main()", "serve", str(model)]
    cmd += ["--provider", PLAN["serve"], "--port", str(port), "--grpc-port", str(grpc_port)]
    log = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    name = model.parent.name
    try:
        client = httpclient.InferenceServerClient(f"127.0.0.1:{port}")
        t_ready = time.time()
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited {proc.returncode} before it was ready")
            try:
                if client.is_server_ready():
                    break
            except Exception:
                pass
            if time.time() - t_ready > min(seconds, 120):
                raise RuntimeError("the server was not ready in time")
            time.sleep(0.2)
        ready_s = time.time() - t_ready
        meta = read_metadata(model)
        cpu = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        out_names = [o.name for o in cpu.get_outputs()]
        lat: dict[str, list[float]] = {}
        worst = 0.0
        for batch, n in ((1, 200), (64, 50)):
            feeds = synthetic_feeds(meta, batch)
            inputs = []
            for k, v in feeds.items():
                i = httpclient.InferInput(k, list(v.shape), "FP32" if v.dtype == np.float32 else "INT64")
                i.set_data_from_numpy(v, binary_data=True)
                inputs.append(i)
            outputs = [httpclient.InferRequestedOutput(o, binary_data=True) for o in out_names]
            ref = dict(zip(out_names, cpu.run(out_names, feeds)))
            times = []
            for _ in range(n):
                t = time.perf_counter()
                res = client.infer(name, inputs, outputs=outputs)
                times.append((time.perf_counter() - t) * 1e3)
            for o in out_names:
                got = res.as_numpy(o)
                worst = max(worst, float(np.max(np.abs(got - ref[o])) / (np.max(np.abs(ref[o])) + 1e-6)))
            lat[f"batch_{batch}"] = times
        stats = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/models/{name}/stats").read())
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = -9
        log.seek(0)
        text = log.read()
    fallback = [line for line in text.splitlines() if "falling back" in line or "did not start" in line]
    return {
        "passed": code == 0 and not fallback and worst < 1e-3,
        "model": name,
        "ready_s": round(ready_s, 2),
        "p50_ms": {k: round(float(np.percentile(v, 50)), 3) for k, v in lat.items()},
        "p99_ms": {k: round(float(np.percentile(v, 99)), 3) for k, v in lat.items()},
        "max_rel_diff_vs_cpu": worst,
        "exit_code": code,
        "fallback_lines": fallback[:3],
        "stats": stats.get("model_stats", [{}])[0].get("inference_count"),
    }


def bench_step(model: Path, out: Path) -> dict:
    from toolkit.runtime.bench import bench

    report = bench([model], batches=BENCH_BATCHES, providers=PLAN["bench"], rounds=3, out=out)
    rows = [
        {k: r[k] for k in ("contender", "provider", "batch", "p50_ms", "p99_ms", "throughput", "load_s")}
        for r in report["results"]
    ]
    return {"report": str(out), "threads": report["threads"], "results": rows}


def parity_step(cuda: dict, cpu: dict) -> dict:
    main = cuda["main"]
    a, b = cuda["test"].get(main), cpu["test"].get(main)
    if a is None or b is None:
        raise RuntimeError(f"no main metric to compare ({main})")
    error_metric = any(w in main for w in ("mse", "mae", "rmse", "mape"))
    diff = abs(a - b) / (abs(b) + 1e-12) if error_metric else abs(a - b)
    return {
        "passed": diff <= PARITY_ATOL,
        "metric": main,
        "cuda": a,
        "cpu": b,
        "difference": diff,
        "tolerance": PARITY_ATOL,
        "kind": "relative" if error_metric else "absolute",
    }


def inner(args: argparse.Namespace) -> int:
    import torch

    try:  # onnxruntime-gpu >= 1.21: load the CUDA and cuDNN libraries that came as wheels
        import onnxruntime

        onnxruntime.preload_dlls()
    except Exception:
        pass
    setup = json.loads(args.setup) if args.setup else {}
    report = Report(Path(args.out), args.deadline, setup)
    report.doc["epochs"] = args.epochs
    if args.rehearse:
        PLAN.update(REHEARSAL)
        report.doc["rehearsal"] = "CPU only: the script's code paths, not a GPU check"
        report.doc["machine"] = {"gpu": None, "torch": torch.__version__, "cpu_cores": os.cpu_count()}
    elif not torch.cuda.is_available():
        raise SystemExit("gpu-check: torch sees no CUDA device")
    else:
        report.doc["machine"] = {**setup.get("gpu", {}), **machine()}
    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    trained: dict[str, dict] = {}
    models: dict[str, Path] = {}
    for name in args.recipes:
        res = report.step(
            "train", lambda n=name: train_step(n, work, args.epochs, PLAN["device"], n), 20, recipe=name
        )
        if res is not None:
            trained[name] = res
            exp = report.step("export", lambda n=name: export_step(work / n), 10, recipe=name)
            if exp is not None:
                models[name] = Path(exp["model"])
    for name, model in models.items():
        report.step("validate", lambda m=model: validate_step(m), 20, recipe=name)
    show = SHOWCASE if SHOWCASE in args.recipes else args.recipes[0]
    if show in models:
        report.step("serve", lambda: serve_step(models[show], report.left() - 60), 40, recipe=show)
        bench_out = work / "bench.json"  # its figures go into the one report
        report.step("bench", lambda: bench_step(models[show], bench_out), 60, recipe=show)
    for name, model in models.items():
        report.step("quantize fp16", lambda m=model: quantize_step(m), 20, recipe=name)
    if show in trained:
        cpu = report.step(
            "train",
            lambda: train_step(show, work, args.epochs, "cpu", "cpu-twin"),
            30,
            recipe=show,
            note="CPU twin, same seed",
        )
        if cpu is not None:
            report.step("parity cpu vs cuda", lambda: parity_step(trained[show], cpu), 0, recipe=show)
    report.write()
    shutil.rmtree(work, ignore_errors=True)
    s = report.doc["summary"]
    print(
        f"gpu-check: {s['pass']} passed, {s['fail']} failed, {s['skip']} skipped in {report.doc['seconds']:.0f} s "
        f"on {report.doc['machine']['gpu'] or 'CPU (rehearsal)'} · report {args.out}",
        file=sys.stderr,
    )
    return 0 if report.doc["passed"] or (args.rehearse and not s["fail"]) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "gpu_check.json")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per recipe (default 3)")
    parser.add_argument("--budget", type=float, default=480, help="seconds for everything, set-up included")
    parser.add_argument("--recipes", default=",".join(RECIPES), help="comma-separated (default: all 12)")
    parser.add_argument("--python", help="a Python that already has CUDA torch, onnxruntime-gpu, the toolkit")
    parser.add_argument("--venv", default=".venv-gpu", help="where to make the GPU environment")
    parser.add_argument("--wheels", help="install from this folder of wheels only (no index)")
    parser.add_argument(
        "--rehearse",
        action="store_true",
        help="run every step on CPU in this Python, no GPU needed: tests the script, proves nothing about GPUs",
    )
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--setup", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.recipes = [r.strip() for r in args.recipes.split(",") if r.strip()]
    unknown = [r for r in args.recipes if r not in RECIPES]
    if unknown:
        print(f"gpu-check: unknown recipe {unknown[0]!r}; allowed: {', '.join(RECIPES)}", file=sys.stderr)
        return 2
    if args.rehearse:
        os.environ.update(STRICT)
        args.deadline = time.time() + args.budget
        return inner(args)
    if args.inner:
        return inner(args)
    return outer(args)


if __name__ == "__main__":
    sys.exit(main())
