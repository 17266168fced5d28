"""Readers for every `--data` source: builtin:NAME, CSV files, image folders and .npz files.

Each reader returns RawData: features as float arrays (tabular (N, F) or images (N, C, H, W) scaled to
[0, 1]; an image folder may stay a lazy ImageSet) and the raw targets. Normalization is not done here: it is fitted on the train split later.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.data.image_folder import ImageOptions
from toolkit.errors import ToolkitError


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
    images: ImageOptions | None = None,
    stream: bool = False,
    categorical: list[str] | None = None,
) -> RawData:
    """Read any supported data source; raise ToolkitError with what is allowed when it cannot be read.

    Image folders are read with `images` (size, channels, resize policy, cache; image_size and channels
    fill in what it leaves unset); `stream` keeps their pixels lazy (an ImageSet) instead of an array."""
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
        opts = images or ImageOptions()
        opts.size, opts.channels = opts.size or image_size, opts.channels or channels
        return read_image_folder(path, opts, stream)
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
def read_image_folder(path: Path, options: ImageOptions, stream: bool = False) -> RawData:
    """An image folder (one sub-folder per class). With `stream`, x is a lazy ImageSet (pixels decoded or
    read from the uint8 cache on access: toolkit.data.image_folder); otherwise a float32 array in [0, 1]."""
    from toolkit.data.image_folder import read_folder

    images, names, record = read_folder(path, options)
    x = images if stream else np.asarray(images)
    return RawData(x, names, "image", str(path), None, None, record)


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
