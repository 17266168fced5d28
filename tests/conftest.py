"""Shared fixtures: small data sets made in tmp_path (nothing is downloaded) and a CLI runner."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from chromium import browser, playwright  # noqa: F401 (session fixtures: headless Chromium via Playwright)


@pytest.fixture(scope="session", autouse=True)
def image_cache_dir(tmp_path_factory) -> Path:
    """Image-folder caches (toolkit.data.image_cache) go to a session folder, not ~/.cache; subprocesses
    inherit it."""
    import os

    path = tmp_path_factory.mktemp("toolkit-cache")
    os.environ["TOOLKIT_CACHE_DIR"] = str(path)
    return path


@pytest.fixture
def iris_csv(tmp_path: Path) -> Path:
    """scikit-learn's iris as a CSV: 4 numeric features, then `species` holding string class names."""
    from sklearn.datasets import load_iris

    bunch = load_iris()
    path = tmp_path / "iris.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["sepal_length", "sepal_width", "petal_length", "petal_width", "species"])
        for row, t in zip(bunch.data, bunch.target, strict=True):
            w.writerow([*(f"{v:g}" for v in row), bunch.target_names[t]])
    return path


@pytest.fixture
def make_image_folder(tmp_path: Path):
    """make_image_folder(classes=3, per_class=4, mode="L", size=8) -> a folder of PNG digits, one sub-folder
    per class. `size` may be an int or a list (one per image, cycled) to make mixed sizes."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()

    def make(
        classes: int = 3, per_class: int = 4, mode: str = "L", size: int | list[int] = 8, name: str = "images"
    ) -> Path:
        root = tmp_path / name
        sizes = size if isinstance(size, list) else [size]
        k = 0
        for c in range(classes):
            (root / str(c)).mkdir(parents=True)
            for i, img in enumerate(digits.images[digits.target == c][:per_class]):
                im = Image.fromarray((img * 255 / 16).astype(np.uint8), mode="L").convert(mode)
                side = sizes[k % len(sizes)]
                k += 1
                im.resize((side, side), Image.Resampling.NEAREST).save(root / str(c) / f"{i}.png")
        return root

    return make


@pytest.fixture
def npz_file(tmp_path: Path) -> Path:
    """60 rows of 5 random features and integer labels 0..2 (20 each)."""
    rng = np.random.default_rng(0)
    path = tmp_path / "data.npz"
    np.savez(path, x=rng.normal(size=(60, 5)).astype(np.float32), y=np.repeat(np.arange(3), 20))
    return path


@pytest.fixture
def cli():
    """cli(*args) runs the Typer app in-process and returns the click Result (stderr kept separately)."""
    from typer.testing import CliRunner

    from toolkit.cli.main import app

    runner = CliRunner()

    def run(*args: str):
        return runner.invoke(app, [str(a) for a in args])

    return run
