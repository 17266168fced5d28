"""`bench(MODELS)`: honest latency numbers — every contender at the same thread count, in its own process.

For each model and batch size the report gives p50/p90/p99 latency and throughput after a warm-up, the
model's size and the peak memory (RSS) of the process that ran it. Contenders are ORT sessions of the
given files (fp32, quantized, ...) and, with a run directory, PyTorch eager from the run's checkpoint.

Each contender runs in a fresh subprocess (`python -m toolkit.runtime.bench`), so peak RSS is its own and
a PyTorch import cannot slow or bloat an ORT measurement. The contenders take turns: every round runs each
of them once for a short slice of time, for several rounds, and the percentiles are taken over all slices
together. Speed-ups are paired: within each round the contenders ran seconds apart, so the ratio of their
slice medians is taken per round and the median of those ratios reported. A burst of load from another
tenant of a shared machine (which moved single timings here by 2x within minutes) then cancels out instead
of landing on whichever contender happened to run.

Inputs are synthetic but shaped by the metadata (toolkit.runtime.evalset.synthetic_feeds): normal values,
token ids or words from the vocabulary, class indices for labels.
This module never imports torch; the PyTorch contender comes through toolkit.runtime.pytorch, called by
the worker only.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.errors import ToolkitError, one_line
from toolkit.runtime.evalset import check_shapes, synthetic_feeds

BATCHES = (1, 8, 64)
WARMUP_SECONDS = 0.3
SLICE_SECONDS = 0.15  # one contender's turn in a round
ROUNDS = 7
# Pause between two turns: onnxruntime's and OpenMP's worker threads keep spinning for a while after a call
# and would take CPU from the next one (measured: up to 2x on 2 cores). Contender processes are also
# stopped outright while another one runs (_only).
SETTLE_SECONDS = 0.1
REPORT_SCHEMA = "toolkit.bench/1"


# --------------------------------------------------------------------------------------------- timing
def summarize(times_ms: Sequence[float], batch: int) -> dict[str, float]:
    """p50/p90/p99 of per-call latencies (ms) and throughput in rows per second (from the median)."""
    t = np.asarray(times_ms, dtype=np.float64)
    p50, p90, p99 = (float(np.percentile(t, q)) for q in (50, 90, 99))
    return {
        "p50_ms": p50,
        "p90_ms": p90,
        "p99_ms": p99,
        "mean_ms": float(t.mean()),
        "throughput": batch * 1000.0 / p50 if p50 > 0 else float("inf"),
        "calls": int(t.size),
    }


def time_slice(fn: Callable[[], Any], seconds: float, min_calls: int = 3) -> list[float]:
    """Call fn repeatedly for about `seconds` (at least min_calls times); per-call latencies in ms."""
    times: list[float] = []
    end = time.perf_counter() + seconds
    while len(times) < min_calls or time.perf_counter() < end:
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000.0)
    return times


def interleaved(
    calls: dict[str, Callable[[], Any]],
    rounds: int = ROUNDS,
    slice_seconds: float = SLICE_SECONDS,
    warmup_seconds: float = WARMUP_SECONDS,
) -> dict[str, list[list[float]]]:
    """Latencies (ms) of several in-process callables measured in turns (warm-up first, not counted):
    for each callable, one list of latencies per round."""
    for fn in calls.values():
        time_slice(fn, warmup_seconds)
    times: dict[str, list[list[float]]] = {k: [] for k in calls}
    for _ in range(rounds):
        for name, fn in calls.items():
            times[name].append(time_slice(fn, slice_seconds))
            time.sleep(SETTLE_SECONDS)  # one session's spinning threads must not slow the next one
    return times


def batch_sizes(batches: Sequence[int]) -> list[int]:
    """Sorted, distinct, positive batch sizes; anything else is a one-line error."""
    sizes = sorted({int(b) for b in batches})
    if not sizes or sizes[0] < 1:
        raise ToolkitError(f"batch sizes must be positive integers (got {list(batches)})")
    return sizes


def paired_speedup(reference: Sequence[Sequence[float]], other: Sequence[Sequence[float]]) -> float:
    """How many times faster `other` ran than `reference`: per round the ratio of their median latencies,
    then the median over rounds (rounds pair measurements taken seconds apart)."""
    ratios = [float(np.median(r) / np.median(o)) for r, o in zip(reference, other) if len(r) and len(o)]
    return float(np.median(ratios)) if ratios else float("nan")


def ort_session(path: str | Path, threads: int | None, provider: str = "CPUExecutionProvider") -> Any:
    """A plain onnxruntime session with a fixed intra-op thread count (what every contender gets). Strict
    about the provider: one that is missing or does not start is an error, never CPU figures under its name."""
    import onnxruntime as ort

    from toolkit.runtime.providers import open_session

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    return open_session(path, provider, options=opts, strict=True)[0]


# --------------------------------------------------------------------------------------------- worker
def peak_rss_mb() -> float:
    """This process's peak resident set size in MiB. On Linux from VmHWM: ru_maxrss survives exec, so a
    worker started by a large parent (one that trained a model) would report the parent's peak."""
    import resource

    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _worker(job: dict[str, Any]) -> dict[str, Any]:
    """Run one contender: load it, then serve `turn` commands read line by line from stdin."""
    from toolkit.runtime.model import read_metadata

    t0 = time.perf_counter()
    meta = read_metadata(job["path"], bare=True)
    if job["kind"] == "torch":
        from toolkit.runtime.pytorch import eager_runner

        run = eager_runner(job["run"], meta, job["threads"])
    else:
        sess = ort_session(job["path"], job["threads"], job["provider"])

        def run(feeds: dict[str, np.ndarray]) -> Any:
            return sess.run(None, feeds)

    load_s = time.perf_counter() - t0
    feeds = {b: synthetic_feeds(meta, b, shapes=job.get("shapes")) for b in job["batches"]}
    for b in job["batches"]:
        time_slice(lambda b=b: run(feeds[b]), job["warmup"])
    return {"load_s": load_s, "run": run, "feeds": feeds}


def _worker_main() -> None:
    """Entry point of a contender subprocess: JSON job on the first stdin line, then one line per turn
    ("BATCH SECONDS"); each turn answers one JSON line of latencies; "end" answers the peak RSS."""
    job = json.loads(sys.stdin.readline())
    try:
        state = _worker(job)
    except Exception as exc:  # reported to the parent as one line
        print(json.dumps({"error": one_line(exc, with_type=True)}))
        sys.stdout.flush()
        return
    print(json.dumps({"ready": True, "load_s": state["load_s"]}))
    sys.stdout.flush()
    for line in sys.stdin:
        cmd = line.split()
        if not cmd or cmd[0] == "end":
            break
        batch, seconds = int(cmd[0]), float(cmd[1])
        times = time_slice(lambda b=batch: state["run"](state["feeds"][b]), seconds)
        print(json.dumps({"times": times}))
        sys.stdout.flush()
    print(json.dumps({"peak_rss_mb": peak_rss_mb()}))
    sys.stdout.flush()


class Contender:
    """One contender process, driven turn by turn."""

    def __init__(self, name: str, job: dict[str, Any]) -> None:
        self.name, self.job = name, job
        env = {**os.environ, "OMP_NUM_THREADS": str(job["threads"] or ""), "PYTHONUNBUFFERED": "1"}
        if not job["threads"]:
            env.pop("OMP_NUM_THREADS")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "toolkit.runtime.bench"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self._send(json.dumps(job))
        first = self._read()
        if "error" in first:
            self.close()
            raise ToolkitError(f"{name}: {first['error']}")
        self.load_s = first["load_s"]

    def _send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            err = (self.proc.stderr.read() if self.proc.stderr else "").strip().splitlines()
            raise ToolkitError(f"{self.name}: the benchmark process died: {err[-1] if err else 'no output'}")
        return json.loads(line)

    def turn(self, batch: int, seconds: float) -> list[float]:
        self._send(f"{batch} {seconds}")
        return self._read()["times"]

    def finish(self) -> float:
        self._send("end")
        peak = self._read()["peak_rss_mb"]
        self.close()
        return peak

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()  # type: ignore[union-attr]
                self.proc.wait(timeout=10)
            except Exception:
                self.proc.kill()


@contextlib.contextmanager
def _only(running: Contender, procs: Sequence[Contender]) -> Iterator[None]:
    """Run one contender's turn with every other contender stopped (SIGSTOP): an idle onnxruntime or
    OpenMP process still has threads that spin for a while after each call, and they took CPU from the
    contender being measured (the CNN's INT8 speed-up read 1.65x with PyTorch's process alive, 1.9x
    without). Where SIGSTOP does not exist, a pause between turns instead."""
    others = [c for c in procs if c is not running and c.proc.poll() is None]
    if not hasattr(signal, "SIGSTOP"):
        time.sleep(SETTLE_SECONDS)
        yield
        return
    for c in others:
        os.kill(c.proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for c in others:
            os.kill(c.proc.pid, signal.SIGCONT)


# --------------------------------------------------------------------------------------------- bench
def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    import onnxruntime as ort

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "machine": platform.machine(),
        "system": platform.system(),
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
    }


def _provider_label(spec: str) -> str:
    """CUDAExecutionProvider -> CUDA; tensorrt-fp16 stays as given."""
    return spec.removesuffix("ExecutionProvider")


def _variant(meta: dict[str, Any]) -> str:
    q = meta.get("quantization")
    return f"ort {q['mode']}" if q else "ort fp32"


def bench(
    models: Sequence[str | Path],
    run: str | Path | None = None,
    batches: Sequence[int] = BATCHES,
    threads: int | None = None,
    providers: Sequence[str] = ("CPUExecutionProvider",),
    rounds: int = ROUNDS,
    slice_seconds: float = SLICE_SECONDS,
    out: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
    shapes: dict[str, list[int]] | None = None,
) -> dict[str, Any]:
    """Benchmark each model (on each provider) and, with `run`, PyTorch eager; returns the report and
    writes it to `out` (default: bench.json beside the first model).

    Any ONNX model works, with or without toolkit metadata: inputs are made from the declared shapes and
    dtypes; `shapes` ({input: dims}, the batch dim replaced by each batch size) fixes open dims, else the
    defaults of toolkit.runtime.evalset.input_dims apply; the report's `inputs` says what was fed."""
    from toolkit.io import write_json
    from toolkit.runtime.model import read_metadata
    from toolkit.runtime.providers import resolve

    if not models:
        raise ToolkitError("no model to benchmark: give at least one .onnx file")
    batches = batch_sizes(batches)
    threads = threads or os.cpu_count() or 1
    if threads < 1:
        raise ToolkitError(f"--threads must be at least 1 (got {threads})")
    for p in providers:
        resolve(p, strict=True)  # unknown or missing: a one-line error before any process starts
    paths = [Path(m) for m in models]
    metas = [read_metadata(p, bare=True) for p in paths]
    for meta in metas:
        check_shapes(meta, shapes)
    base = {"batches": batches, "threads": threads, "warmup": WARMUP_SECONDS, "shapes": shapes}
    contenders = _contenders(paths, metas, run, providers, base)
    times, peaks, loads = _measure(contenders, batches, rounds, slice_seconds, progress)
    rows = _rows(contenders, batches, times, peaks, loads)
    _add_speedups(rows)
    report = {
        "schema": REPORT_SCHEMA,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "threads": threads,
        "batches": batches,
        "rounds": rounds,
        "slice_seconds": slice_seconds,
        "task": metas[0]["task"],
        "arch": metas[0]["arch"],
        "toolkit_metadata": not metas[0].get("bare", False),
        "inputs": {
            name: ["batch", *dims[1:]]
            for name, dims in (
                (k, list(v.shape)) for k, v in synthetic_feeds(metas[0], 1, shapes=shapes).items()
            )
        },
        "results": rows,
    }
    out = Path(out) if out is not None else paths[0].with_name("bench.json")
    write_json(out, report)
    report["report"] = str(out)
    return report


def _contenders(
    paths: list[Path],
    metas: list[dict[str, Any]],
    run: str | Path | None,
    providers: Sequence[str],
    base: dict[str, Any],
) -> list[tuple[str, dict[str, Any], Path]]:
    """(label, job, file) of every contender: PyTorch eager first with a run, then each model on each
    provider; labels name the file where two models would read the same."""
    from toolkit.runtime.providers import CPU, parse

    contenders: list[tuple[str, dict[str, Any], Path]] = []
    if run is not None:
        run = Path(run)
        if not (run / "best.pt").is_file():
            raise ToolkitError(f"{run} is not a run directory with a checkpoint (best.pt)")
        contenders.append(
            (
                "pytorch eager",
                {**base, "kind": "torch", "path": str(paths[0]), "run": str(run)},
                run / "best.pt",
            )
        )
    for path, meta in zip(paths, metas):
        for p in providers:
            label = _variant(meta) + ("" if parse(p).provider == CPU else f" ({_provider_label(p)})")
            if len(paths) > 1 and sum(_variant(m) == _variant(meta) for m in metas) > 1:
                same_name = sum(q.name == path.name for q in paths) > 1
                label += f" [{path.parent.name}/{path.name}]" if same_name else f" [{path.name}]"
            if any(label == c[0] for c in contenders):
                raise ToolkitError(f"{path} is given twice (as {label!r}): give each model once")
            contenders.append((label, {**base, "kind": "ort", "path": str(path), "provider": p}, path))
    return contenders


def _measure(
    contenders: list[tuple[str, dict[str, Any], Path]],
    batches: list[int],
    rounds: int,
    slice_seconds: float,
    progress: Callable[[str], None] | None,
) -> tuple[dict[tuple[str, int], list[list[float]]], dict[str, float], dict[str, float]]:
    """Every contender in its own process, taking turns: (latencies per (name, batch) per round, peak
    RSS by name, load seconds by name)."""
    say = progress or (lambda _msg: None)
    procs: list[Contender] = []
    try:
        for name, job, _ in contenders:
            say(f"loading {name}")
            procs.append(Contender(name, job))
        times: dict[tuple[str, int], list[list[float]]] = {(c.name, b): [] for c in procs for b in batches}
        for r in range(rounds):
            say(f"round {r + 1}/{rounds}")
            for b in batches:
                for c in procs:
                    with _only(c, procs):
                        times[(c.name, b)].append(c.turn(b, slice_seconds))
        peaks = {c.name: c.finish() for c in procs}
    finally:
        for c in procs:
            c.close()
    return times, peaks, {c.name: c.load_s for c in procs}


def _rows(
    contenders: list[tuple[str, dict[str, Any], Path]],
    batches: list[int],
    times: dict[tuple[str, int], list[list[float]]],
    peaks: dict[str, float],
    loads: dict[str, float],
) -> list[dict[str, Any]]:
    """One result row per contender and batch size."""
    rows = []
    for name, job, file in contenders:
        for b in batches:
            rows.append(
                {
                    "contender": name,
                    "kind": job["kind"],
                    "model": str(file),
                    "provider": job.get("provider"),
                    "batch": b,
                    **summarize([t for turn in times[(name, b)] for t in turn], b),
                    "round_p50_ms": [float(np.median(turn)) for turn in times[(name, b)]],
                    "size_bytes": file.stat().st_size,
                    "peak_rss_mb": peaks[name],
                    "load_s": loads[name],
                }
            )
    return rows


def _add_speedups(rows: list[dict[str, Any]]) -> None:
    """Each row's speed-up over ORT fp32 (the first fp32 contender) and over PyTorch eager, same batch:
    paired per round (paired_speedup)."""
    for ref_name, key in (("ort fp32", "vs_ort_fp32"), ("pytorch eager", "vs_pytorch")):
        for row in rows:
            ref = next(
                (r for r in rows if r["contender"].startswith(ref_name) and r["batch"] == row["batch"]), None
            )
            if ref is None:
                row[key] = None
            elif ref is row:
                row[key] = 1.0
            else:
                row[key] = paired_speedup(
                    [[t] for t in ref["round_p50_ms"]], [[t] for t in row["round_p50_ms"]]
                )


def plot(report: dict[str, Any], path: str | Path) -> Path | None:
    """Throughput per contender and batch size as grouped bars (PNG); None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    from toolkit.io import atomic_path

    names = list(dict.fromkeys(r["contender"] for r in report["results"]))
    batches = report["batches"]
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(batches) * max(1, len(names)) / 2, 3.6))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        vals = [
            next(r["throughput"] for r in report["results"] if r["contender"] == name and r["batch"] == b)
            for b in batches
        ]
        ax.bar(np.arange(len(batches)) + i * width - 0.4 + width / 2, vals, width, label=name)
    ax.set_xticks(np.arange(len(batches)), [f"batch {b}" for b in batches])
    ax.set_ylabel("rows / s (from p50)")
    ax.set_yscale("log")
    ax.set_title(
        f"{report['arch']} {report['task']} · {report['threads']} threads · {report['machine']['cpu']}",
        fontsize=8,
    )
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


if __name__ == "__main__":
    _worker_main()
