"""An image folder as a data source: options from the recipe (or a run's record), a lazy ImageSet of every
usable image, the class names, and the per-channel statistics fitted on a sample of the train split.

toolkit.data.sources.read_image_folder calls read_folder; toolkit.data.load_splits keeps the ImageSet lazy
(streamed by DataLoader workers in training) or materializes it where an array is needed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.data.image_cache import ImageSet, cached_source
from toolkit.data.images import MAX_PIXELS, list_image_folder, pick_channels, pick_size
from toolkit.errors import ToolkitError

STATS_SAMPLE = 2000  # train images the per-channel mean and std are measured on
IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}  # torchvision's published weights


@dataclass
class ImageOptions:
    """How a folder is read: size and channels (None: from the data), resize policy, cache, workers."""

    size: int | None = None
    channels: int | None = None
    policy: str = "crop"
    cache: bool = True
    workers: int | None = None  # decoding processes (None: the machine's cores)
    max_pixels: int = MAX_PIXELS

    @classmethod
    def of(cls, cfg: Any, spec: dict[str, Any] | None = None) -> ImageOptions:
        """From a DataConfig; a run's recorded spec (re-scoring) fixes size, channels and policy."""
        image = (spec or {}).get("image") or {}
        get = lambda name, default: getattr(cfg, name, default)  # noqa: E731 - old configs lack keys
        opts = cls(
            get("image_size", None),
            get("channels", None),
            get("resize", "crop"),
            get("cache", True),
            get("workers", None),
            get("max_pixels", MAX_PIXELS) or MAX_PIXELS,
        )
        if image.get("height"):
            from toolkit.runtime.processing import resize_policy

            opts.size, opts.channels, opts.policy = (
                int(image["height"]),
                int(image["channels"]),
                resize_policy(image),
            )
        return opts

    @property
    def processes(self) -> int:
        """DataLoader workers: none inside a daemonic process (a parallel `toolkit tune` worker may not have
        children), else data.workers or the cores."""
        import multiprocessing

        if multiprocessing.current_process().daemon:
            return 0
        return default_workers() if self.workers is None else int(self.workers)


def default_workers() -> int:
    """The cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def read_folder(path: Path, opts: ImageOptions) -> tuple[ImageSet, np.ndarray, dict[str, Any]]:
    """(every usable image as pixels in [0, 1], lazily; its class name; the image record for the spec)."""
    listing = list_image_folder(path, opts.max_pixels)
    size = pick_size(listing, opts.size)
    channels = pick_channels(listing, opts.channels)
    source = cached_source(listing, size, channels, opts.policy, opts.processes, opts.cache)
    bad = set(source.bad)
    keep = np.array([i for i in range(len(listing.files)) if i not in bad], dtype=np.int64)
    if len(keep) == 0:
        raise ToolkitError(f"{path}: none of its images could be decoded")
    names = np.array([listing.classes[listing.labels[i]] for i in keep], dtype=object)
    images = ImageSet(source, keep, [0.0] * channels, [1.0] * channels)
    record = {"pixel_scale": 1 / 255.0, "resize": opts.policy, "size": size}
    if listing.skipped:
        record["skipped"] = {k: len(v) for k, v in listing.skipped.items()}
    return images, names, record


def channel_stats(images: ImageSet, train: np.ndarray, seed: int) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of pixels in [0, 1] over up to STATS_SAMPLE train images (seeded)."""
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(train, size=min(STATS_SAMPLE, len(train)), replace=False))
    s1, s2 = np.zeros(images.shape[1]), np.zeros(images.shape[1])
    for start in range(0, len(pick), 256):  # in chunks: the sample is never held whole
        px = images.source.read_many(images.indices[pick[start : start + 256]]).astype(np.float64) / 255.0
        s1 += px.sum(axis=(0, 2, 3))
        s2 += (px**2).sum(axis=(0, 2, 3))
    count = len(pick) * images.shape[2] * images.shape[3]
    mean = s1 / count
    std = np.sqrt(np.maximum(s2 / count - mean**2, 0.0))
    std = np.where(std < 1e-8, 1.0, std)
    return [float(v) for v in mean], [float(v) for v in std]
