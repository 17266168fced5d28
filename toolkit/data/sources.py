"""Readers for every `--data` source: builtin:NAME, CSV files, image folders and .npz files.

Each reader returns RawData: features as float arrays (tabular (N, F) or images (N, C, H, W) scaled to
[0, 1]) and the raw targets. Normalization is not done here: it is fitted on the train split later.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.errors import ToolkitError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}


@dataclass
class RawData:
    x: np.ndarray  # (N, F) float32 for tabular; (N, C, H, W) float32 in [0, 1] for images
    y: np.ndarray  # (N,) raw targets: label indices/strings for classification, floats for regression
    kind: str  # "tabular" | "image"
    source: str
    feature_names: list[str] | None = None
    label_names: list[str] | None = None  # names of label indices 0..K-1 when y holds indices
    image: dict = field(default_factory=dict)  # images: pixel_scale, resize, original layout
    table: Any = None  # CSV tables: the columns as read (toolkit.data.table.Table), categorical ones too


# --------------------------------------------------------------------------------------------- builtin
def _sklearn(name: str) -> Callable[[], RawData]:
    def load() -> RawData:
        from sklearn import datasets

        bunch = getattr(datasets, f"load_{name}")()
        if name == "digits":  # 8x8 grayscale images with pixel values 0..16
            x = bunch.images.astype(np.float32)[:, None] / 16.0
            names = [str(t) for t in bunch.target_names]
            return RawData(
                x,
                bunch.target.astype(np.int64),
                "image",
                f"builtin:{name}",
                None,
                names,
                {"pixel_scale": 1 / 16.0},
            )
        names = [str(t) for t in bunch.target_names] if hasattr(bunch, "target_names") else None
        y = bunch.target.astype(np.int64) if names else bunch.target.astype(np.float32)
        return RawData(
            bunch.data.astype(np.float32),
            y,
            "tabular",
            f"builtin:{name}",
            [str(f) for f in bunch.feature_names],
            names,
        )

    return load


# name -> (loader, one-line description); datasets ship inside installed packages, nothing is downloaded.
BUILTIN: dict[str, tuple[Callable[[], RawData], str]] = {
    "digits": (_sklearn("digits"), "scikit-learn: 1797 8x8 grayscale handwritten digits, 10 classes"),
    "breast_cancer": (_sklearn("breast_cancer"), "scikit-learn: 569 tumours, 30 features, 2 classes"),
    "wine": (_sklearn("wine"), "scikit-learn: 178 wines, 13 features, 3 classes"),
    "iris": (_sklearn("iris"), "scikit-learn: 150 flowers, 4 features, 3 classes"),
    "diabetes": (_sklearn("diabetes"), "scikit-learn: 442 patients, 10 features, regression target"),
}


def load_source(
    source: str,
    target: str | None = None,
    image_size: int | None = None,
    channels: int | None = None,
    categorical: list[str] | None = None,
) -> RawData:
    """Read any supported data source; raise ToolkitError with what is allowed when it cannot be read."""
    if source.startswith("builtin:"):
        name = source.split(":", 1)[1]
        if name not in BUILTIN:
            raise ToolkitError(f"unknown builtin dataset {name!r}; allowed: {', '.join(sorted(BUILTIN))}")
        return BUILTIN[name][0]()
    path = Path(source)
    if not path.exists():
        raise ToolkitError(
            f"data not found: {source} (expected builtin:NAME, a .csv file, an image folder or an .npz file)"
        )
    if path.is_dir():
        return read_image_folder(path, image_size, channels)
    if path.suffix.lower() == ".csv":
        return read_csv(path, target, categorical)
    if path.suffix.lower() == ".npz":
        return read_npz(path)
    raise ToolkitError(
        f"unsupported data file {source}; allowed: .csv, .npz, an image folder or builtin:NAME"
    )


# --------------------------------------------------------------------------------------------- CSV
def read_csv(path: Path, target: str | None, categorical: list[str] | None = None) -> RawData:
    """A CSV table (pyarrow): features as a Table in RawData.table; RawData.x holds them as numbers when
    every feature column is numeric (else it has no columns: the table must be encoded, toolkit.data.table)."""
    from toolkit.data.table import read_table

    table, y = read_table(path, target, categorical)
    x = table.numeric_matrix() if not table.categorical else np.zeros((table.rows, 0), dtype=np.float32)
    return RawData(x, y, "tabular", str(path), list(table.names), None, table=table)


# --------------------------------------------------------------------------------------------- images
def read_image_folder(path: Path, image_size: int | None, channels: int | None) -> RawData:
    from PIL import Image, UnidentifiedImageError

    classes = sorted(d.name for d in path.iterdir() if d.is_dir() and not d.name.startswith("."))
    files = [
        (c, f) for c in classes for f in sorted((path / c).iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not files:
        raise ToolkitError(
            f"{path}: no images found; expected one sub-folder per class holding PNG/JPEG files"
        )
    images, labels, size = [], [], None
    for label, file in files:
        try:
            with Image.open(file) as im:
                im.load()
                if channels is None:
                    channels = 1 if im.mode in ("L", "1", "I", "I;16", "F") else 3
                im = im.convert("L" if channels == 1 else "RGB")
                if image_size:
                    im = im.resize((image_size, image_size), Image.Resampling.BILINEAR)
                arr = np.asarray(im, dtype=np.float32) / 255.0
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise ToolkitError(f"cannot read image {file}: {exc.__class__.__name__}: {exc}") from None
        arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)  # (C, H, W)
        if size is None:
            size = arr.shape
        elif arr.shape != size:
            raise ToolkitError(
                f"{file} is {arr.shape[2]}x{arr.shape[1]}, earlier images are {size[2]}x{size[1]}; "
                "set data.image_size to resize all images"
            )
        images.append(arr)
        labels.append(label)
    x = np.stack(images).astype(np.float32)
    return RawData(
        x,
        np.array(labels, dtype=object),
        "image",
        str(path),
        None,
        None,
        {"pixel_scale": 1 / 255.0, "resize": "bilinear" if image_size else None},
    )


# --------------------------------------------------------------------------------------------- npz
def read_npz(path: Path) -> RawData:
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in ("x", "y") if k not in z.files]
            if missing:
                raise ToolkitError(f"{path}: needs arrays 'x' and 'y' (has {', '.join(z.files) or 'none'})")
            x, y = z["x"], z["y"]
    except (ValueError, OSError) as exc:
        raise ToolkitError(f"{path}: not a readable .npz file ({exc})") from None
    if len(x) != len(y):
        raise ToolkitError(f"{path}: x has {len(x)} rows but y has {len(y)}")
    if not np.issubdtype(x.dtype, np.number):
        raise ToolkitError(f"{path}: x must be numeric (got dtype {x.dtype})")
    scale = 1 / 255.0 if x.dtype == np.uint8 else 1.0
    xf = x.astype(np.float32) * scale
    if x.ndim == 2:
        return RawData(xf, y, "tabular", str(path), [f"x{i}" for i in range(x.shape[1])])
    if x.ndim == 3:  # (N, H, W) grayscale
        return RawData(xf[:, None], y, "image", str(path), image={"pixel_scale": scale})
    if x.ndim == 4:
        if x.shape[1] not in (1, 3) and x.shape[3] in (1, 3):
            xf = xf.transpose(0, 3, 1, 2)  # NHWC -> NCHW
        return RawData(np.ascontiguousarray(xf), y, "image", str(path), image={"pixel_scale": scale})
    raise ToolkitError(f"{path}: x must be 2-D (tabular), 3-D or 4-D (images); got shape {x.shape}")


def builtin_or_csv(source: str, registry: dict, what: str) -> tuple[object | None, Path | None]:
    """For readers of one kind (series, text): builtin:NAME -> (the registry's data, None); an existing .csv
    file -> (None, its path), for the caller to read with its own options."""
    if source.startswith("builtin:"):
        name = source.split(":", 1)[1]
        if name not in registry:
            raise ToolkitError(f"unknown builtin {what} {name!r}; allowed: {', '.join(sorted(registry))}")
        return registry[name][0](), None
    path = Path(source)
    if not path.is_file() or path.suffix.lower() != ".csv":
        raise ToolkitError(f"{what} must be builtin:NAME or an existing .csv file (got {source})")
    return None, path
