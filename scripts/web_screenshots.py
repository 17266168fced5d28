#!/usr/bin/env python3
"""The screenshots in docs/playground.md and docs/browser.md, taken in headless Chromium from real runs.

Trains a digits CNN, an iris MLP and a forecaster (a few epochs each), serves them with `toolkit serve`, drops a
digit PNG into the playground (docs/images/playground.png), then packs the CNN with `toolkit edge pack --target
web` and answers the same PNG in the bundle's page (docs/images/browser.png).

Run: `.venv/bin/python scripts/web_screenshots.py` (a few minutes; needs `make setup`'s Chromium).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"
VIEWPORT = {"width": 1000, "height": 700}


def train_models(work: Path) -> Path:
    """A Triton-layout repository of the three models."""
    from toolkit.export import export_run
    from toolkit.train import train

    repo = work / "repo"
    for name, recipe, data, overrides in [
        ("digits", "cnn-image", "builtin:digits", ["train.epochs=8"]),
        ("iris", "mlp-tabular", "builtin:iris", ["train.epochs=30"]),
        ("sunspots", "lstm-forecast", "builtin:sunspots", ["train.epochs=3"]),
    ]:
        train(recipe, data=data, overrides=[*overrides, "train.device=cpu"], out=work / name)
        export_run(work / name)
        (repo / name / "1").mkdir(parents=True)
        shutil.copyfile(work / name / "model.onnx", repo / name / "1" / "model.onnx")
    return repo


def digit_png(path: Path) -> Path:
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    img = (digits.images[-7] * 255 / 16).astype(np.uint8)  # a test-split digit
    Image.fromarray(img).resize((64, 64), Image.Resampling.NEAREST).save(path)
    return path


def playground(browser, repo: Path, png: Path, port: int = 18731) -> None:
    cmd = [
        sys.executable,
        "-m",
        "toolkit.cli.main",
        "serve",
        str(repo),
        "--port",
        str(port),
        "--grpc-port",
        "0",
    ]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        page = browser.new_page(viewport=VIEWPORT)
        page.goto(f"http://127.0.0.1:{port}/#digits")
        page.get_by_test_id("file").set_input_files(str(png))
        page.get_by_test_id("predict").click()
        page.get_by_test_id("label").wait_for()
        page.screenshot(path=str(IMAGES / "playground.png"))
    finally:
        server.terminate()
        server.wait(30)


def bundle_page(browser, run: Path, png: Path, work: Path) -> None:
    from toolkit.runtime.edge.browser import page_ready, serve_folder
    from toolkit.runtime.edge.bundle import pack

    out = Path(pack(run / "model.onnx", work / "digits-web", target="web")["out"])
    with serve_folder(out) as url:
        page = browser.new_page(viewport=VIEWPORT)
        page_ready(page, url + "index.html")
        page.get_by_test_id("file").set_input_files(str(png))
        page.get_by_test_id("predict").click()
        page.get_by_test_id("label").wait_for()
        page.screenshot(path=str(IMAGES / "browser.png"))


def main() -> None:
    from toolkit.runtime.edge.browser import headless_chromium

    IMAGES.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        repo = train_models(work)
        png = digit_png(work / "digit.png")
        with headless_chromium() as browser:
            playground(browser, repo, png)
            bundle_page(browser, work / "digits", png, work)
    for name in ("playground.png", "browser.png"):
        print(f"wrote docs/images/{name} ({(IMAGES / name).stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
