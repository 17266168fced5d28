"""Image folders at real size: memory, input throughput, cnn epoch cost and accuracy, a fine-tuned backbone.

Generated folders of 96x96 RGB PNGs (scikit-learn's digits, upscaled, in a random colour on a random colour
background, with noise) stand in for photos. Contenders run one process each; figures are medians of paired
rounds where timed. Goals (issue 17):

- peak memory of `toolkit train` on N_LARGE images <= 2 GB and <= 1.2x the peak on N_SMALL (flat in N);
- input pipeline throughput >= 0.9x a bare torchvision ImageFolder + DataLoader (same workers, batch size);
- the cnn recipe's epoch at 96 px <= 2x a bare strided CNN of similar parameter count (same data loader);
- the cnn recipe >= 95% test accuracy on a N_ACCURACY-image folder within 15 epochs;
- mobilenet_v3_small fine-tuned from a state_dict: the schedule runs, export parity holds, static INT8 drops
  <= 1 point.

Usage: python bench/images_bench.py --out bench/results/images.json [--small 5000 --large 20000 ...]
(make bench runs it with the defaults; smaller numbers give a quick look on a busy machine).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TOOLKIT = [sys.executable, "-m", "toolkit.cli.main"]
SIZE = 96


# --------------------------------------------------------------------------------------------- data
def _draw(args: tuple[Path, int, int]) -> None:
    """Images start..stop-1 of the generated folder (class = digit)."""
    from PIL import Image
    from sklearn.datasets import load_digits

    root, start, stop = args
    digits = load_digits()
    for k in range(start, stop):
        rng = np.random.default_rng(k)
        i = int(rng.integers(len(digits.images)))
        label = int(digits.target[i])
        glyph = Image.fromarray((digits.images[i] * 255 / 16).astype(np.uint8)).resize(
            (int(rng.integers(48, 72)),) * 2, Image.Resampling.BILINEAR
        )
        mask = np.asarray(glyph, dtype=np.float32)[..., None] / 255.0
        bg, fg = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        while np.abs(bg - fg).sum() < 150:  # the digit stays visible
            fg = rng.integers(0, 256, 3)
        img = np.empty((SIZE, SIZE, 3), dtype=np.float32)
        img[:] = bg
        s = mask.shape[0]
        y0, x0 = rng.integers(0, SIZE - s + 1, 2)
        img[y0 : y0 + s, x0 : x0 + s] = img[y0 : y0 + s, x0 : x0 + s] * (1 - mask) + fg * mask
        img += rng.normal(0, 12, img.shape)
        out = root / str(label)
        out.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(out / f"{k:06d}.png", compress_level=1)


def make_folder(root: Path, n: int) -> Path:
    """N generated 96x96 RGB PNGs in ROOT/DIGIT/ (made once; reused when complete)."""
    from multiprocessing import Pool

    stamp = root / ".complete"
    if stamp.is_file():
        return root
    chunks = [(root, a, min(a + 500, n)) for a in range(0, n, 500)]
    with Pool(os.cpu_count() or 1) as pool:
        pool.map(_draw, chunks)
    stamp.write_text(str(n))
    return root


# --------------------------------------------------------------------------------------------- memory
def _tree_pss(pid: int) -> int:
    """Proportional set size (bytes) of a process and its descendants: shared pages counted once."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
            for t in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (t / "children").read_text().split()]
        except OSError:
            continue
    return total


def peak_memory(cmd: list[str], env: dict[str, str]) -> dict[str, float]:
    """Run cmd; its peak PSS summed over the process tree (sampled every 0.1 s) and the largest single
    process's peak RSS (getrusage of the waited children)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = [0]

    def sample() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], _tree_pss(proc.pid))
            time.sleep(0.1)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    t0 = time.perf_counter()
    _, err = proc.communicate()
    seconds = time.perf_counter() - t0
    t.join()
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{err[-2000:]}")
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"tree_pss_mb": peak[0] / 2**20, "max_process_rss_mb": max(rss, before) / 1024, "seconds": seconds}


def train_cmd(data: Path, out: Path, *sets: str) -> list[str]:
    shutil.rmtree(out, ignore_errors=True)  # a run directory of an earlier benchmark run
    cmd = [
        *TOOLKIT,
        "train",
        "cnn",
        "--data",
        str(data),
        "--out",
        str(out),
        "--set",
        f"data.image_size={SIZE}",
    ]
    for s in sets:
        cmd += ["--set", s]
    return cmd


# --------------------------------------------------------------------------------------------- contenders
def _tv_loader(path: str):
    from torchvision.io import ImageReadMode, decode_image

    return decode_image(path, mode=ImageReadMode.RGB)


def pipeline_toolkit(data: Path, workers: int, batch: int) -> float:
    """Images/s of toolkit's streamed batches (cache built beforehand), over every image once."""
    import torch

    from toolkit.data.image_folder import ImageOptions, read_folder
    from toolkit.recipe import AugmentConfig
    from toolkit.train.image_batches import StreamBatches

    images, names, _ = read_folder(data, ImageOptions(size=SIZE, workers=workers))
    y = torch.zeros(len(images), dtype=torch.int64)
    batches = StreamBatches(images, y, batch, torch.device("cpu"), workers, AugmentConfig())
    t0 = time.perf_counter()
    n = sum(len(x) for x, _ in batches)
    return n / (time.perf_counter() - t0)


def pipeline_torchvision(data: Path, workers: int, batch: int) -> float:
    """Images/s of a bare torchvision ImageFolder (decode_image) + DataLoader, over every image once."""
    import torch
    from torchvision.datasets import ImageFolder

    ds = ImageFolder(str(data), loader=_tv_loader)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers)
    t0 = time.perf_counter()
    n = 0
    for x, _ in loader:
        x = x.float().div_(255.0)  # as toolkit's batches: float pixels
        n += len(x)
    return n / (time.perf_counter() - t0)


def bare_cnn():
    """A plain strided CNN of about the cnn recipe's parameter count at 96 px (~0.09 M)."""
    import torch.nn as nn

    layers, c = [], 3
    for width in (32, 64, 96, 96):
        layers += [nn.Conv2d(c, width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
        c = width
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 10))


def epoch_bare(data: Path, workers: int, batch: int) -> float:
    """Seconds of one epoch of the bare CNN on the same share of the folder the recipe trains on (65%), with
    ImageFolder + DataLoader, plus scoring the validation share (15%), as the recipe's epoch does."""
    import torch
    from torchvision.datasets import ImageFolder

    torch.manual_seed(0)
    ds = ImageFolder(str(data), loader=_tv_loader)
    perm = torch.randperm(len(ds)).tolist()
    n_train, n_val = int(0.65 * len(ds)), int(0.15 * len(ds))
    train = torch.utils.data.Subset(ds, perm[:n_train])
    val = torch.utils.data.Subset(ds, perm[n_train : n_train + n_val])
    model = bare_cnn()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    t0 = time.perf_counter()
    model.train()
    for x, y in torch.utils.data.DataLoader(train, batch_size=batch, shuffle=True, num_workers=workers):
        loss = torch.nn.functional.cross_entropy(model((x.float() / 255 - 0.5) / 0.25), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        for x, _ in torch.utils.data.DataLoader(val, batch_size=1024, num_workers=workers):
            model((x.float() / 255 - 0.5) / 0.25)
    return time.perf_counter() - t0


def in_subprocess(name: str, *args: str) -> float:
    """Run one contender in its own process; its figure."""
    cmd = [sys.executable, __file__, "--contender", name, *args]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=_env())
    return float(out.stdout.strip().splitlines()[-1])


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("PYTHONPATH", str(ROOT))
    return env


def paired(rounds: int, a: tuple, b: tuple) -> tuple[float, float, list]:
    """Medians of paired rounds (a, b alternate which goes first)."""
    pairs = []
    for r in range(rounds):
        first, second = (a, b) if r % 2 == 0 else (b, a)
        x, y = in_subprocess(*first), in_subprocess(*second)
        pairs.append((x, y) if r % 2 == 0 else (y, x))
    return statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs), pairs


# --------------------------------------------------------------------------------------------- sections
def memory_section(work: Path, small: int, large: int) -> dict:
    rows = {}
    for n in (small, large):
        folder = make_folder(work / f"folder-{n}", n)
        run = work / f"rss-{n}"
        memory = peak_memory(train_cmd(folder, run, "train.epochs=1"), _env())
        rows[str(n)] = memory
    return summarize_memory(rows, small, large)


def summarize_memory(rows: dict, small: int, large: int) -> dict:
    """The goal on the train process's peak RSS; the whole tree's PSS (workers included) beside it."""
    big, little = rows[str(large)], rows[str(small)]
    ratio = big["max_process_rss_mb"] / little["max_process_rss_mb"]
    peak = max(r["max_process_rss_mb"] for r in rows.values())
    return {
        "images": rows,
        "ratio": ratio,
        "peak_mb": peak,
        "tree_ratio": big["tree_pss_mb"] / little["tree_pss_mb"],
        "tree_peak_mb": max(r["tree_pss_mb"] for r in rows.values()),
        "goal": "peak RSS <= 2048 MB, ratio <= 1.2",
        "met": peak <= 2048 and ratio <= 1.2,
    }


def throughput_section(work: Path, n: int, workers: int, batch: int, rounds: int) -> dict:
    folder = make_folder(work / f"folder-{n}", n)
    in_subprocess("pipeline-toolkit", str(folder), str(workers), str(batch))  # builds the cache
    ours, bare, pairs = paired(
        rounds,
        ("pipeline-toolkit", str(folder), str(workers), str(batch)),
        ("pipeline-torchvision", str(folder), str(workers), str(batch)),
    )
    return {
        "images": n,
        "workers": workers,
        "batch": batch,
        "toolkit_img_s": ours,
        "torchvision_img_s": bare,
        "ratio": ours / bare,
        "pairs": pairs,
        "goal": ">= 0.9",
        "met": ours / bare >= 0.9,
    }


def epoch_section(work: Path, n: int, workers: int, batch: int, rounds: int) -> dict:
    folder = make_folder(work / f"folder-{n}", n)
    recipe, bare = [], []
    for r in range(rounds):
        run = work / f"epoch-{n}-{r}"
        peak_memory(train_cmd(folder, run, "train.epochs=1", f"data.workers={workers}"), _env())
        with open(run / "metrics.csv") as f:
            recipe.append(float(f.read().splitlines()[1].split(",")[-1]))
        bare.append(in_subprocess("epoch-bare", str(folder), str(workers), str(batch)))
    ratio = statistics.median(recipe) / statistics.median(bare)
    return {
        "images": n,
        "recipe_s": recipe,
        "bare_s": bare,
        "ratio": ratio,
        "goal": "<= 2",
        "met": ratio <= 2,
    }


def accuracy_section(work: Path, n: int, epochs: int) -> dict:
    folder = make_folder(work / f"folder-{n}", n)
    run = work / f"accuracy-{n}"
    memory = peak_memory(train_cmd(folder, run, f"train.epochs={epochs}"), _env())
    metrics = json.loads((run / "metrics.json").read_text())
    return {
        "images": n,
        "epochs": epochs,
        "accuracy": metrics["accuracy"],
        "seconds": memory["seconds"],
        "epochs_run": metrics["epochs_run"],
        "goal": ">= 0.95 within 15 epochs on 10,000",
        "met": n >= 10_000 and epochs <= 15 and metrics["accuracy"] >= 0.95,
    }


def mobilenet_section(work: Path, n: int, epochs: int) -> dict:
    """mobilenet_v3_small from a state_dict file (torchvision's architecture, weights written here: nothing is
    downloaded), head only for 1 epoch, then everything; export (parity) and static INT8 (the drop)."""
    import torch
    import torchvision

    folder = make_folder(work / f"folder-{n}", n)
    weights = work / "mobilenet_v3_small.pt"
    torch.manual_seed(0)
    torch.save(torchvision.models.mobilenet_v3_small(weights=None).state_dict(), weights)
    run = work / f"mobilenet-{n}"
    shutil.rmtree(run, ignore_errors=True)
    cmd = [*TOOLKIT, "train", "mobilenet", "--data", str(folder), "--out", str(run)]
    for item in (
        f"model.weights={weights}",
        "model.freeze_epochs=1",
        f"train.epochs={epochs}",
        "data.augment.flip=false",
        "train.patience=0",
    ):
        cmd += ["--set", item]
    memory = peak_memory(cmd, _env())
    subprocess.run([*TOOLKIT, "export", str(run)], check=True, capture_output=True, env=_env())
    q = subprocess.run(
        [*TOOLKIT, "quantize", str(run), "--mode", "static", "--force", "--json"],
        capture_output=True,
        text=True,
        env=_env(),
    )
    report = json.loads(q.stdout) if q.stdout.strip().startswith("{") else {"error": q.stderr[-500:]}
    doc = json.loads((run / "model.json").read_text())
    history = (run / "metrics.csv").read_text().splitlines()
    candidate = (report.get("candidates") or [{}])[0]
    drop = candidate.get("drop")
    return {
        "images": n,
        "epochs": epochs,
        "lr_by_epoch": [float(r.split(",")[1]) for r in history[1:]],
        "accuracy": json.loads((run / "metrics.json").read_text())["accuracy"],
        "parity_max_abs": max(v["max_abs"] for v in doc["parity"]["outputs"].values()),
        "int8_metric": candidate.get("metric"),
        "fp32_metric": (report.get("fp32") or {}).get("metric"),
        "int8_drop": drop,
        "train_seconds": memory["seconds"],
        "goal": "schedule runs, parity holds, INT8 drop <= 0.01",
        "met": drop is not None and drop <= 0.01,
    }


def sizes_section(steps: int = 5, batch: int = 32) -> dict:
    """The cnn recipe's training step (forward + backward + AdamW, synthetic batches) at several image sides,
    milliseconds per image: the stem keeps the cost following the pixel count."""
    import torch

    from toolkit.models import create_model
    from toolkit.models.cnn import stem_depth
    from toolkit.recipe import load_recipe

    rec = load_recipe("cnn")
    rows = {}
    for side in (32, 64, 96, 128, 224):
        torch.manual_seed(0)
        model = create_model("cnn", rec.model, (3, side, side), 10, {})
        opt = torch.optim.AdamW(model.parameters())
        x, y = torch.randn(batch, 3, side, side), torch.randint(0, 10, (batch,))
        times = []
        for _ in range(steps + 1):
            t0 = time.perf_counter()
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - t0)
        rows[str(side)] = {
            "stem": stem_depth(side, None),
            "params": sum(p.numel() for p in model.parameters()),
            "ms_per_image": 1000 * statistics.median(times[1:]) / batch,
        }
    return {"batch": batch, "sizes": rows}


def machine() -> dict:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_1min": load,
        "note": "2 vCPU, shared with other jobs (noisy); torch threads = OMP_NUM_THREADS",
    }


CONTENDERS = {
    "pipeline-toolkit": pipeline_toolkit,
    "pipeline-torchvision": pipeline_torchvision,
    "epoch-bare": epoch_bare,
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "images.json")
    p.add_argument("--work", type=Path, default=None, help="where the folders go (default: a temp dir)")
    p.add_argument("--small", type=int, default=5000)
    p.add_argument("--large", type=int, default=20000)
    p.add_argument("--throughput-images", type=int, default=5000)
    p.add_argument("--accuracy-images", type=int, default=10000)
    p.add_argument("--accuracy-epochs", type=int, default=15)
    p.add_argument("--mobilenet-images", type=int, default=2000)
    p.add_argument("--mobilenet-epochs", type=int, default=4)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--only", default="memory,throughput,epoch,accuracy,mobilenet,sizes")
    p.add_argument("--contender", default=None, help=argparse.SUPPRESS)
    args, rest = p.parse_known_args(argv)
    if args.contender:  # one contender in this process: print its figure
        folder, workers, batch = rest
        print(CONTENDERS[args.contender](Path(folder), int(workers), int(batch)))
        return 0
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # the same threads for every contender
    work = args.work or Path(tempfile.mkdtemp(prefix="images-bench-"))
    os.environ.setdefault("TOOLKIT_CACHE_DIR", str(work / "cache"))
    only = set(args.only.split(","))
    # --only re-measures some sections and keeps the others' last figures
    result: dict = json.loads(args.out.read_text()) if args.out.is_file() and len(only) < 6 else {}
    result.update(machine=machine(), image_size=SIZE, omp_threads=os.environ["OMP_NUM_THREADS"])
    sections = {
        "memory": lambda: memory_section(work, args.small, args.large),
        "throughput": lambda: throughput_section(work, args.throughput_images, args.workers, 64, args.rounds),
        "epoch": lambda: epoch_section(work, args.throughput_images, args.workers, 64, args.rounds),
        "accuracy": lambda: accuracy_section(work, args.accuracy_images, args.accuracy_epochs),
        "mobilenet": lambda: mobilenet_section(work, args.mobilenet_images, args.mobilenet_epochs),
        "sizes": lambda: sizes_section(),
    }
    for name, run in sections.items():
        if name in only:
            t0 = time.perf_counter()
            result[name] = run()
            print(f"{name}: {json.dumps(result[name])[:300]} ({time.perf_counter() - t0:.0f} s)", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
