"""`make edge-arm64`: the edge bundle proven on an emulated arm64 device.

Most edge boards (Raspberry Pi 4/5, Jetson, RK3588) run 64-bit ARM Linux. This check runs the bundle there
without a board and without root-level system changes: an arm64 Debian bookworm userland (debootstrap
--foreign, its .debs unpacked with dpkg -x: the second stage is not needed) runs under qemu-aarch64-static
with QEMU_LD_PREFIX pointing at it, and the bundle's pinned aarch64 wheels are unzipped into a folder on
PYTHONPATH (a wheel is a zip file; nothing is compiled). Userland and wheels are cached under
.cache/arm64/ (git-ignored), so only the first run downloads.

For each task's default recipe it trains a model for one epoch (the check is about the bundle running on
arm64 and answering like x86-64, not about accuracy), exports it, packs an arm64 bundle with
`toolkit edge pack --target arm64 --format both`, runs the bundle's runner.py under emulation on the bundle's
sample inputs, once with the ORT-format model and once with the ONNX model, and compares the answers with
`toolkit predict` on this machine: the same labels, numbers within 1e-4 (+ 1e-3 relative) for fp32 and
within the accuracy budget of the quantization gate for an INT8 variant (the CNN is quantized so one is
checked). Anything that fails, including fetching the userland or the wheels, exits non-zero: never a skip.

    python scripts/edge_arm64.py [--cache .cache/arm64] [--only cnn,mlp] [--keep-work]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TOOLKIT = [str(BIN / "toolkit")]
SUITE = "bookworm"
MIRROR = os.environ.get("DEBIAN_MIRROR", "http://deb.debian.org/debian")
PLATFORM = "manylinux_2_28_aarch64"
PYTHON = "3.11"  # bookworm's python3
EMULATION_TIMEOUT = 600
JOBS = max(1, min(2, os.cpu_count() or 1))  # emulated runs at a time (each is one busy core)

# Each task's default recipe, trained for one epoch (the models need only be real, not accurate); bigger
# batches where an epoch would otherwise dominate the check's time.
TINY = ["train.epochs=1", "train.patience=0"]
MODELS = {
    "cnn": ("cnn-image", [*TINY, "train.batch_size=256"]),
    "mlp": ("mlp-tabular", TINY),
    "transformer-text": ("transformer-text", [*TINY, "train.batch_size=256"]),
    "regress": ("mlp-regress", TINY),
    "lstm-forecast": ("lstm-forecast", TINY),
    "autoencoder": ("autoencoder-anomaly", [*TINY, "train.batch_size=256"]),
    "gan": ("gan-image", [*TINY, "train.batch_size=256", "model.samples_per_class=10", "model.judge=@cnn"]),
}
QUANTIZE = {"cnn": {"mode": "static", "max_drop": 0.05, "rounds": 1}}  # one INT8 variant in the check


class CheckFailed(Exception):
    """A step of the check failed: the message says which and why (exit code 1)."""


# --------------------------------------------------------------------------------------------- helpers
def log(msg: str) -> None:
    print(f"[edge-arm64 {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(cmd: list, what: str, timeout: float = 1800, **kw) -> subprocess.CompletedProcess:
    """Run `cmd`; a non-zero exit is CheckFailed naming `what` with the last lines of its output."""
    try:
        proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, **kw)
    except subprocess.TimeoutExpired:
        raise CheckFailed(f"{what}: timed out after {timeout:.0f} s") from None
    except OSError as exc:
        raise CheckFailed(f"{what}: {exc}") from None
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr.strip() or proc.stdout.strip()).splitlines()[-15:])
        raise CheckFailed(f"{what} failed (exit {proc.returncode}):\n{tail}")
    return proc


def which(name: str) -> str | None:
    """A program on PATH or in the sbin folders (debootstrap lives in /usr/sbin, often not on PATH)."""
    path = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/sbin:/usr/local/sbin"
    return shutil.which(name, path=path)


# --------------------------------------------------------------------------------------------- userland
def ensure_tools() -> tuple[str, str]:
    """debootstrap and qemu-aarch64-static; installed with apt-get when missing and this process may."""
    missing = [p for p, prog in (("debootstrap", "debootstrap"), ("qemu-user-static", "qemu-aarch64-static"))
               if not which(prog)]  # fmt: skip
    if missing:
        apt = which("apt-get")
        if not apt or os.geteuid() != 0:
            raise CheckFailed(
                f"missing {' and '.join(missing)}: install with `sudo apt-get install {' '.join(missing)}` "
                "(Debian/Ubuntu) and run again"
            )
        log(f"installing {' '.join(missing)} with apt-get")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = [apt, "install", "-y", "-q", "--no-install-recommends", *missing]
        if subprocess.run(install, capture_output=True, env=env).returncode != 0:
            run([apt, "update", "-q"], "apt-get update", env=env)
            run(install, f"apt-get install {' '.join(missing)}", env=env)
    return which("debootstrap"), which("qemu-aarch64-static")  # type: ignore[return-value]


def ensure_userland(cache: Path, debootstrap: str) -> Path:
    """cache/rootfs: Debian bookworm arm64 (minbase + python3), built once into a temporary folder and renamed
    into place, so an interrupted build is never taken for a finished one."""
    rootfs = cache / "rootfs"
    if (rootfs / "usr" / "bin" / f"python{PYTHON}").is_file():
        log(f"userland: cached ({rootfs})")
        return rootfs
    t0 = time.perf_counter()
    stage = cache / "rootfs.partial"
    shutil.rmtree(stage, ignore_errors=True)
    cache.mkdir(parents=True, exist_ok=True)
    log(
        f"userland: debootstrap --foreign --arch=arm64 --variant=minbase --include=python3 {SUITE} ({MIRROR})"
    )
    run(
        [
            debootstrap,
            "--foreign",
            "--arch=arm64",
            "--variant=minbase",
            "--include=python3",
            SUITE,
            stage,
            MIRROR,
        ],
        f"fetching the arm64 {SUITE} userland from {MIRROR} (debootstrap)",
    )
    debs = sorted((stage / "var" / "cache" / "apt" / "archives").glob("*.deb"))
    if not debs:
        raise CheckFailed(f"debootstrap downloaded no packages into {stage}")
    for deb in debs:  # the first stage unpacks only the required set; python3 needs the rest
        run(["dpkg", "-x", deb, stage], f"dpkg -x {deb.name}")
        deb.unlink()
    if not (stage / "usr" / "bin" / f"python{PYTHON}").is_file():
        raise CheckFailed(f"the unpacked userland has no /usr/bin/python{PYTHON}")
    stage.rename(rootfs)
    log(f"userland: {len(debs)} packages unpacked in {time.perf_counter() - t0:.0f} s")
    return rootfs


def ensure_site(cache: Path, pins: dict[str, str]) -> Path:
    """cache/site-HASH: the pinned aarch64 wheels (and what they depend on, as `pip install -r` on the device
    would fetch) unzipped into one folder for PYTHONPATH."""
    spec = sorted(f"{p}=={v}" for p, v in pins.items())
    site = cache / f"site-{hashlib.sha256(' '.join(spec).encode()).hexdigest()[:12]}"
    if (site / ".complete").is_file():
        log(f"wheels: cached ({site.name}: {', '.join(spec)})")
        return site
    wheels = cache / f"wheels-{site.name.removeprefix('site-')}"
    shutil.rmtree(wheels, ignore_errors=True)
    log(f"wheels: pip download {PLATFORM} cp{PYTHON.replace('.', '')}: {', '.join(spec)}")
    run(
        [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--platform", PLATFORM,
         "--python-version", PYTHON, "--implementation", "cp", "--quiet", "-d", wheels, *spec],
        "downloading the aarch64 wheels (pip download)",
    )  # fmt: skip
    names = sorted(p.name for p in wheels.glob("*.whl"))
    stage = cache / f"{site.name}.partial"
    shutil.rmtree(stage, ignore_errors=True)
    for name in names:
        with zipfile.ZipFile(wheels / name) as zf:
            zf.extractall(stage)
    (stage / ".complete").write_text("\n".join(names) + "\n")
    shutil.rmtree(wheels)
    shutil.rmtree(site, ignore_errors=True)
    stage.rename(site)
    return site


class Emulator:
    """ROOT/usr/bin/python3.11 under qemu-aarch64-static, the wheels on PYTHONPATH."""

    def __init__(self, qemu: str, rootfs: Path, site: Path) -> None:
        self.cmd = [qemu, str(rootfs / "usr" / "bin" / f"python{PYTHON}")]
        self.env = {
            "PATH": "/usr/bin:/bin",
            "QEMU_LD_PREFIX": str(rootfs),
            "PYTHONPATH": str(site),
            "PYTHONNOUSERSITE": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "LANG": "C.UTF-8",
            "OMP_NUM_THREADS": "1",
        }

    def python(self, args: list, what: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
        return run([*self.cmd, *args], what, timeout=EMULATION_TIMEOUT, cwd=cwd, env=self.env)


# --------------------------------------------------------------------------------------------- models
def train_all(work: Path, names: list[str]) -> dict[str, Path]:
    """Train, export (and for QUANTIZE, quantize) each model in this process: one torch import for all."""
    from toolkit.errors import ToolkitError
    from toolkit.export import export_run
    from toolkit.runtime.quantize import quantize
    from toolkit.train import train

    runs: dict[str, Path] = {}
    for name in names:
        recipe, overrides = MODELS[name]
        out = work / "runs" / name
        judge = str(runs.get("cnn", ""))
        sets = [s.replace("@cnn", judge) for s in overrides if s != "model.judge=@cnn" or judge]
        t0 = time.perf_counter()
        try:
            train(recipe, overrides=sets, out=out)
            export_run(out)
            if name in QUANTIZE:
                q = quantize(out / "model.onnx", **QUANTIZE[name])
                log(f"quantized {name}: {q.get('written') or q.get('refused')}")
        except ToolkitError as exc:
            raise CheckFailed(f"training {name} ({recipe}): {exc}") from None
        log(f"trained + exported {name} ({recipe}, {', '.join(sets)}) in {time.perf_counter() - t0:.0f} s")
        runs[name] = out
    return runs


def pack(run_dir: Path, out: Path) -> dict:
    proc = run(
        [*TOOLKIT, "edge", "pack", run_dir, "--out", out, "--target", "arm64", "--format", "both", "--force",
         "--json"],
        f"toolkit edge pack {run_dir.name} --target arm64",
    )  # fmt: skip
    return json.loads(proc.stdout)


def sample_args(bundle: Path) -> list[str]:
    """The bundle's sample inputs as runner / predict arguments (and --out for a generator's grid)."""
    spec = json.loads((bundle / "samples" / "expected.json").read_text())
    args = [*spec["inputs"], *spec["labels"]]
    for text in spec["texts"]:
        args += ["--text", text]
    return args + (["--out", "grid.png"] if spec["labels"] else [])


def compare(got: list, want: list, slack: float, close) -> tuple[bool, float, str]:
    """(passed, largest numeric difference, first mismatch): same inputs, same labels, numbers close."""
    if len(got) != len(want):
        return False, float("nan"), f"{len(got)} answers, {len(want)} expected"
    worst = 0.0
    for g, w in zip(got, want):
        worst = max(worst, _max_diff(g, w))
        if g.get("input") != w.get("input") or not close(g, w, 1e-4 + slack, 1e-3 + slack):
            return (
                False,
                worst,
                f"{w.get('input')}: arm64 {json.dumps(g)[:200]} vs x86-64 {json.dumps(w)[:200]}",
            )
    return True, worst, ""


def _max_diff(a, b) -> float:
    if isinstance(a, dict) and isinstance(b, dict):
        return max([_max_diff(a[k], b[k]) for k in a.keys() & b.keys() if k != "b64"] or [0.0])
    if isinstance(a, list) and isinstance(b, list):
        return max([_max_diff(x, y) for x, y in zip(a, b)] or [0.0])
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return abs(float(a) - float(b))
    return 0.0


def reference(name: str, bundle: Path, report: dict) -> list:
    """`toolkit predict` on this x86-64 machine: the packed model file on the bundle's samples."""
    args = [a if a != "grid.png" else "grid-x86.png" for a in sample_args(bundle)]
    proc = run(
        [*TOOLKIT, "predict", report["model"]["file"], *args, "--json", "--provider", "CPUExecutionProvider"],
        f"toolkit predict ({name})",
        cwd=bundle,
    )
    return json.loads(proc.stdout)["results"]


def emulated(name: str, bundle: Path, report: dict, model: str, want: list, emu: Emulator) -> dict:
    """The bundle's runner.py under emulation with `model` (model.ort or model.onnx), compared with `want`."""
    from toolkit.runtime.edge.runner import close
    from toolkit.runtime.validate import quantization_slack

    meta = json.loads((bundle / "model.json").read_text())
    slack = quantization_slack(meta)
    out = ["--out", f"grid-{model}.png"] if "--out" in sample_args(bundle) else []
    args = [a for a in sample_args(bundle) if a not in ("--out", "grid.png")]
    t0 = time.perf_counter()
    proc = emu.python(
        ["runner.py", "--model", model, *args, *out, "--json"],
        f"runner.py --model {model} ({name}) on arm64",
        bundle,
    )
    seconds = time.perf_counter() - t0
    got = json.loads(proc.stdout)["results"]
    passed, worst, why = compare(got, want, slack, close)
    return {
        "model": name, "task": meta["task"], "variant": report["model"]["variant"], "file": model,
        "answers": len(got), "max_abs_diff": worst, "tolerance": f"1e-4+{slack:g}" if slack else "1e-4",
        "seconds": round(seconds, 1), "passed": passed, "why": why,
    }  # fmt: skip


def check_all(reports: dict[str, dict], emu: Emulator) -> list[dict]:
    """Every bundle's runner under emulation, ORT format and ONNX, JOBS processes at a time."""
    jobs = []
    for name, report in reports.items():
        bundle = Path(report["out"])
        want = reference(name, bundle, report)
        jobs += [(name, bundle, report, model, want, emu) for model in ("model.ort", "model.onnx")]
    rows = []
    with ThreadPoolExecutor(JOBS) as pool:
        for row in pool.map(lambda job: emulated(*job), jobs):
            verdict = "pass" if row["passed"] else "FAIL " + row["why"]
            log(
                f"{row['model']:<17} {row['file']:<10} {row['variant']:<5} {row['answers']} answers, max |diff| "
                f"{row['max_abs_diff']:.2e} (tol {row['tolerance']}), {row['seconds']:.1f} s: {verdict}"
            )
            rows.append(row)
    return rows


# --------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", type=Path, default=ROOT / ".cache" / "arm64", help="userland + wheels cache")
    ap.add_argument("--only", help=f"comma-separated subset of: {', '.join(MODELS)}")
    ap.add_argument("--keep-work", action="store_true", help="keep the trained runs and bundles (cache/work)")
    opts = ap.parse_args(argv)
    names = opts.only.split(",") if opts.only else list(MODELS)
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        ap.error(f"unknown model {unknown[0]!r}; allowed: {', '.join(MODELS)}")
    t0 = time.perf_counter()
    cache = opts.cache.resolve()
    work = cache / "work"
    try:
        debootstrap, qemu = ensure_tools()
        rootfs = ensure_userland(cache, debootstrap)
        shutil.rmtree(work, ignore_errors=True)
        runs = train_all(work, names)
        with ThreadPoolExecutor(JOBS) as pool:  # `toolkit edge pack`, JOBS at a time
            packed = pool.map(lambda item: pack(item[1], work / "bundles" / item[0]), runs.items())
            reports = dict(zip(runs, packed))
        log(f"packed {len(reports)} arm64 bundles (--format both)")
        pins = {p: v for r in reports.values() for p, v in r["requirements"].items()}
        site = ensure_site(cache, pins)
        emu = Emulator(qemu, rootfs, site)
        probe = emu.python(
            ["-c", "import platform, sys, numpy, onnxruntime as o; "
             "print(platform.machine(), sys.version.split()[0], 'onnxruntime', o.__version__, 'numpy', numpy.__version__)"],
            "importing onnxruntime under qemu-aarch64",
        )  # fmt: skip
        log(f"emulated device: {probe.stdout.strip()}")
        if not probe.stdout.startswith("aarch64"):
            raise CheckFailed(f"the emulated Python is not aarch64: {probe.stdout.strip()}")
        rows = check_all(reports, emu)
    except CheckFailed as exc:
        log(f"FAILED after {time.perf_counter() - t0:.0f} s: {exc} (runs and bundles kept in {work})")
        return 1
    failed = [r for r in rows if not r["passed"]]
    if not opts.keep_work and not failed:  # a failure keeps them to look at
        shutil.rmtree(work, ignore_errors=True)
    (cache / "last-result.json").write_text(
        json.dumps({"device": probe.stdout.strip(), "rows": rows}, indent=2)
    )
    verdict = (
        f"{len(rows) - len(failed)}/{len(rows)} bundle runs on emulated arm64 equal toolkit predict on x86-64"
    )
    log(f"{'passed' if not failed else 'FAILED'}: {verdict} in {time.perf_counter() - t0:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
