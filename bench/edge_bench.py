"""Edge footprint: cold start to first prediction and peak RSS of one process answering one image.

Contenders, each a fresh process that loads the digits CNN (28x28 grayscale PNGs), answers one PNG and exits:

* floor            -- bare python + numpy + onnxruntime: default session, a preprocessed .npy input, argmax
                      (the issue's yardstick: "about 0.1 s and 58 MB" on a 2-core machine);
* runner (onnx)    -- the bundle's runner.py (and the processing.py it imports) on model.onnx: PNG decode
                      with Pillow, resize, standardize, low-footprint session (1 thread, no arena), JSON out;
* runner (ort)     -- the same runner on the ORT-format model.ort of a `--format both` bundle;
* toolkit predict  -- `toolkit predict model.onnx digit.png --json` (Typer, rich, the toolkit package);
* pytorch          -- a bare PyTorch runner: the same CNN traced with torch.jit, PIL preprocessing, softmax.

Time is wall time from spawn to exit (interpreter start, imports, model load, one prediction, output); peak
RSS is the child's ru_maxrss from os.wait4. The measuring process imports neither torch nor numpy (the
model is built in a separate process): a forked child's ru_maxrss starts at its parent's size. Rounds are interleaved (every contender once per round, the
order rotating) after one warm-up round, so a shared machine's drift hits all alike; medians are reported.
The goal: the runner within 1.5x of the floor in both figures.

Run: `.venv/bin/python bench/edge_bench.py --out bench/results/edge.json` (`make bench`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIDE = 28  # the digits upscaled to 28x28, the size the goal names

FLOOR = """
import sys, numpy as np, onnxruntime as ort
s = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
p = s.run(["probabilities"], {"input": np.load(sys.argv[2])})[0]
print(int(p.argmax()))
"""

PYTORCH = """
import json, sys
import numpy as np, torch
from PIL import Image
torch.set_num_threads(1)
model = torch.jit.load(sys.argv[1])
meta = json.load(open(sys.argv[2]))
pre = meta["inputs"][0]["preprocessing"]
with Image.open(sys.argv[3]) as im:
    x = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
x = (x[None, None] - np.float32(pre["mean"][0])) / np.float32(pre["std"][0])
with torch.no_grad():
    p = torch.softmax(model(torch.from_numpy(x)), dim=1)[0]
print(json.dumps({"label": meta["labels"][int(p.argmax())], "probability": float(p.max())}))
"""


def build(work: Path, epochs: int) -> dict[str, Path]:
    """Train and export the 28x28 digits CNN, pack it, write the inputs and the traced PyTorch model."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    from toolkit.export import export_run
    from toolkit.runtime.edge.bundle import pack
    from toolkit.train import train

    digits = load_digits()
    data = work / "digits28"
    for i, (img, t) in enumerate(zip(digits.images, digits.target)):
        (data / str(t)).mkdir(parents=True, exist_ok=True)
        im = Image.fromarray((img * 255 / 16).astype(np.uint8), mode="L")
        im.resize((SIDE, SIDE), Image.Resampling.BILINEAR).save(data / str(t) / f"{i}.png")
    run = work / "cnn28"
    overrides = [f"data.image_size={SIDE}", f"train.epochs={epochs}", "train.patience=0", "train.device=cpu"]
    train("cnn-image", data=str(data), overrides=overrides, out=run)
    export_run(run)
    bundle = Path(pack(run / "model.onnx", work / "bundle", fmt="both")["out"])

    digit = work / "digit.png"
    shutil.copyfile(next((data / "3").iterdir()), digit)
    meta = json.loads((run / "model.json").read_text())
    from toolkit.runtime import processing

    row = processing.image_to_row(meta, processing.decode_image(digit.read_bytes(), meta))
    np.save(work / "digit.npy", row[None])
    scripted = work / "cnn28.pt"
    _trace(run, scripted, row[None])
    (work / "floor.py").write_text(FLOOR)
    (work / "pytorch.py").write_text(PYTORCH)
    return {"run": run, "bundle": bundle, "digit": digit, "npy": work / "digit.npy", "scripted": scripted}


def _trace(run: Path, out: Path, example) -> None:
    import torch

    from toolkit.train.checkpoint import load_checkpoint, load_model

    model = load_model(load_checkpoint(run / "best.pt")).eval()
    with torch.no_grad():
        traced = torch.jit.trace(model, torch.from_numpy(example))
    traced.save(str(out))


def contenders(paths: dict[str, Path]) -> dict[str, list[str]]:
    py = sys.executable
    b, work = paths["bundle"], paths["digit"].parent
    toolkit_bin = str(Path(sys.executable).with_name("toolkit"))
    return {
        "floor": [py, str(work / "floor.py"), str(b / "model.onnx"), str(paths["npy"])],
        "runner (onnx)": [py, str(b / "runner.py"), str(paths["digit"]), "--model", str(b / "model.onnx"), "--json"],
        "runner (ort)": [py, str(b / "runner.py"), str(paths["digit"]), "--model", str(b / "model.ort"), "--json"],
        "toolkit predict": [toolkit_bin, "predict", str(paths["run"] / "model.onnx"), str(paths["digit"]), "--json"],
        "pytorch": [py, str(work / "pytorch.py"), str(paths["scripted"]), str(paths["run"] / "model.json"), str(paths["digit"])],
    }  # fmt: skip


def run_rounds(cmds: dict[str, list[str]], rounds: int) -> dict[str, dict[str, list[float]]]:
    names = list(cmds)
    samples = {n: {"seconds": [], "rss_mb": []} for n in names}
    for r in range(rounds + 1):
        order = names[r % len(names) :] + names[: r % len(names)]
        for n in order:
            s, mb, _ = measure_child(cmds[n])
            if r:  # round 0 warms the page cache
                samples[n]["seconds"].append(s)
                samples[n]["rss_mb"].append(mb)
        if r:
            print(
                f"round {r}: " + ", ".join(f"{n} {samples[n]['seconds'][-1]:.3f}s" for n in names), flush=True
            )
    return samples


def measure_child(cmd: list[str]) -> tuple[float, float, str]:
    """Spawn with fork/exec and reap with os.wait4, which reports this child's own peak RSS."""
    r, w = os.pipe()
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # child: stdout to the pipe, stderr to /dev/null, then exec
        os.dup2(w, 1)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(r)
        try:
            os.execv(cmd[0], cmd)
        finally:
            os._exit(127)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 65536):
        chunks.append(chunk)
    os.close(r)
    _, status, usage = os.wait4(pid, 0)
    seconds = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} failed with exit code {os.waitstatus_to_exitcode(status)}")
    return seconds, usage.ru_maxrss / 1024, b"".join(chunks).decode()


def _label(stdout: str) -> str:
    """The predicted label in a contender's output (a bare index, {"label"} or {"results": [{"label"}]})."""
    try:
        doc = json.loads(stdout)
    except ValueError:
        return stdout.strip()
    if isinstance(doc, dict) and "results" in doc:
        doc = doc["results"][0]
    return str(doc["label"]) if isinstance(doc, dict) else str(doc)


def summarize(samples: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, float]]:
    floor_s = statistics.median(samples["floor"]["seconds"])
    floor_mb = statistics.median(samples["floor"]["rss_mb"])
    out = {}
    for name, s in samples.items():
        sec, mb = statistics.median(s["seconds"]), statistics.median(s["rss_mb"])
        out[name] = {
            "seconds_median": round(sec, 4),
            "seconds_min": round(min(s["seconds"]), 4),
            "seconds_max": round(max(s["seconds"]), 4),
            "rss_mb_median": round(mb, 1),
            "x_floor_seconds": round(sec / floor_s, 2),
            "x_floor_rss": round(mb / floor_mb, 2),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "edge.json"))
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument(
        "--epochs", type=int, default=2, help="training epochs of the CNN (accuracy is not the point)"
    )
    ap.add_argument("--build", help=argparse.SUPPRESS)  # internal: build into this folder and exit
    args = ap.parse_args()
    if args.build:
        paths = build(Path(args.build), args.epochs)
        (Path(args.build) / "paths.json").write_text(json.dumps({k: str(v) for k, v in paths.items()}))
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        built = subprocess.run([sys.executable, __file__, "--build", tmp, "--epochs", str(args.epochs)])
        if built.returncode:
            raise SystemExit("building the model failed")
        paths = {k: Path(v) for k, v in json.loads((work / "paths.json").read_text()).items()}
        cmds = contenders(paths)
        answers = {n: _label(measure_child(c)[2]) for n, c in cmds.items()}  # same digit, same label
        samples = run_rounds(cmds, args.rounds)
        table = summarize(samples)
        files = ("model.onnx", "model.ort", "runner.py", "processing.py")
        sizes = {f: (paths["bundle"] / f).stat().st_size for f in files}
    versions = subprocess.run(
        [
            sys.executable,
            "-c",
            "import onnxruntime, torch; print(onnxruntime.__version__, torch.__version__)",
        ],
        capture_output=True,
        text=True,
    ).stdout.split()
    runner = table["runner (onnx)"]
    report = {
        "benchmark": "edge cold start and peak RSS (digits CNN, 28x28 PNG, one prediction per process)",
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "onnxruntime": versions[0] if versions else None,
            "torch": versions[1] if len(versions) > 1 else None,
        },
        "rounds": args.rounds,
        "results": table,
        "goal": {
            "runner_within_1_5x_floor_seconds": runner["x_floor_seconds"] <= 1.5,
            "runner_within_1_5x_floor_rss": runner["x_floor_rss"] <= 1.5,
        },
        "bundle_bytes": sizes,
        "labels": answers,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    width = max(map(len, table))
    print(f"{'contender':<{width}}  seconds  x floor  peak MB  x floor")
    for name, r in table.items():
        print(
            f"{name:<{width}}  {r['seconds_median']:7.3f}  {r['x_floor_seconds']:7.2f}  "
            f"{r['rss_mb_median']:7.1f}  {r['x_floor_rss']:7.2f}"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
