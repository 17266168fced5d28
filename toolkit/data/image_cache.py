"""The uint8 image cache and the lazy split views (ImageSet) that training, eval and validate read.

Every usable image of a folder is decoded once per (folder contents, size, channels, resize policy) by
DataLoader worker processes and written, in order, to one raw uint8 file (N, C, S, S) under
toolkit.data.images.cache_root(): later runs, `toolkit tune` trials, eval and validate read it instead of
decoding again. It is written to a temporary name and renamed (the index JSON last), so a killed build leaves
nothing a later run reads. Reads use os.pread: no memory map, so no process's resident memory grows with the
data set (the kernel's page cache holds what is hot). Files that fail to decode are left out and logged.

With `data.cache: false` nothing is written: every access decodes the file (in DataLoader workers during
training).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.data.image_decode import decode_file
from toolkit.data.images import FolderListing, cache_root, log_skipped
from toolkit.io import atomic_path

log = logging.getLogger("toolkit.data")
CACHE_VERSION = 1  # bump when decoding changes, so old caches are not read


@dataclass
class PixelSource:
    """Images 0..N-1 of a folder as (C, S, S) uint8, read from the cache file or decoded from the files."""

    files: list[str]
    size: int
    channels: int
    policy: str
    cache: str | None = None  # the raw uint8 file, or None: decode every time
    bad: tuple[int, ...] = ()  # images that failed to decode when the cache was built (left out)

    def __post_init__(self) -> None:
        self._fd: int | None = None

    @property
    def item_bytes(self) -> int:
        return self.channels * self.size * self.size

    def __len__(self) -> int:
        return len(self.files)

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers open their own descriptor
        return {**self.__dict__, "_fd": None}

    def read(self, i: int) -> np.ndarray:
        shape = (self.channels, self.size, self.size)
        if self.cache is None:
            return decode_file(self.files[i], self.size, self.channels, self.policy)
        if self._fd is None:
            self._fd = os.open(self.cache, os.O_RDONLY)
        data = os.pread(self._fd, self.item_bytes, i * self.item_bytes)
        return np.frombuffer(data, dtype=np.uint8).reshape(shape)

    def read_many(self, idx: np.ndarray) -> np.ndarray:
        """(len(idx), C, S, S) uint8."""
        out = np.empty((len(idx), self.channels, self.size, self.size), dtype=np.uint8)
        for k, i in enumerate(idx):
            out[k] = self.read(int(i))
        return out


class ImageSet:
    """A split of an image folder, standardized on access: x[i], x[a:b] or x[index_array] give float32
    (.., C, S, S) arrays as the in-memory splits hold, without ever holding the split."""

    def __init__(self, source: PixelSource, indices: np.ndarray, mean: list[float], std: list[float]) -> None:
        self.source, self.indices = source, np.asarray(indices, dtype=np.int64)
        self.mean = np.asarray(mean, dtype=np.float32)[:, None, None]
        self.std = np.asarray(std, dtype=np.float32)[:, None, None]

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        s = self.source
        return (len(self), s.channels, s.size, s.size)

    @property
    def ndim(self) -> int:
        return 4

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.float32)  # what reading it gives

    def subset(self, rows: np.ndarray, mean: list[float], std: list[float]) -> ImageSet:
        """Rows of this set (a split), standardized with `mean` and `std` (of pixels in [0, 1])."""
        return ImageSet(self.source, self.indices[np.asarray(rows, dtype=np.int64)], mean, std)

    def uint8(self, i: int) -> np.ndarray:
        """Pixels of sample i before standardizing: (C, S, S) uint8 (what the training workers read)."""
        return self.source.read(int(self.indices[i]))

    def standardize(self, pixels: np.ndarray) -> np.ndarray:
        return ((pixels.astype(np.float32) / 255.0 - self.mean) / self.std).astype(np.float32)

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            return self.standardize(self.uint8(int(key)))
        return self.standardize(self.source.read_many(self.indices[key]))

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype)


# --------------------------------------------------------------------------------------------- the cache
def cached_source(
    listing: FolderListing, size: int, channels: int, policy: str, workers: int, use_cache: bool
) -> PixelSource:
    """The folder's pixels: from the cache (built now when missing) or decoded on access. Files that fail to
    decode while the cache is built are listed in its `bad` (and logged): callers leave them out."""
    files = [str(f) for f in listing.files]
    if not use_cache:
        return PixelSource(files, size, channels, policy)
    key = f"{listing.fingerprint()}-{size}px-{channels}c-{policy}-v{CACHE_VERSION}"
    root = cache_root()
    raw, index = root / f"{key}.u8", root / f"{key}.json"
    if not (raw.is_file() and index.is_file()):
        root.mkdir(parents=True, exist_ok=True)
        _build(PixelSource(files, size, channels, policy), raw, index, workers)
    bad = tuple(json.loads(index.read_text())["bad"])
    if bad:  # their slots in the cache hold zeros: indices stay put, callers leave these out
        names = [str(listing.files[i].relative_to(listing.root)) for i in bad]
        log_skipped(listing.root, {"could not be decoded": names})
        listing.skipped.setdefault("could not be decoded", []).extend(names)
    return PixelSource(files, size, channels, policy, str(raw), bad)


class _Decoded:
    """Dataset for the build: (pixels or None, index); a failure is reported, not raised."""

    def __init__(self, source: PixelSource) -> None:
        self.source = source

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int):
        try:
            return self.source.read(i), i
        except Exception:  # noqa: BLE001 - any decoding failure: this file is left out
            return None, i


def _collate(items):
    return items


def _build(source: PixelSource, raw: Path, index: Path, workers: int) -> None:
    """Decode every file with `workers` processes and write them in order; then the index (bad files)."""
    from torch.utils.data import DataLoader

    loader = DataLoader(_Decoded(source), batch_size=64, num_workers=workers, collate_fn=_collate)
    blank = bytes(source.item_bytes)
    bad: list[int] = []
    log.info("decoding %d images into the cache %s", len(source), raw)
    with atomic_path(raw) as tmp, open(tmp, "wb") as f:
        for batch in loader:
            for pixels, i in batch:
                if pixels is None:
                    bad.append(i)
                f.write(blank if pixels is None else np.ascontiguousarray(pixels).tobytes())
    with atomic_path(index) as tmp:
        Path(tmp).write_text(json.dumps({"n": len(source), "bad": bad, "files": source.files[:1]}))
