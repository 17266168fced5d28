"""Image folders at real size: the file list, its checks, and the image size and channels read from the data.

A folder holds one sub-folder per class. Listing reads only the files' headers (Pillow opens lazily), so it
costs milliseconds per thousand files and no pixels are held. What cannot be used is left out with one logged
line naming the files, never a traceback: files that are not images (by suffix), unreadable or corrupt files,
images over `data.max_pixels` (a decompression-bomb guard), empty class folders. Decoding happens later, in
DataLoader workers (toolkit.data.image_cache), never here.
"""

from __future__ import annotations

import hashlib
import logging
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from toolkit.errors import ToolkitError

log = logging.getLogger("toolkit.data")

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")
MAX_PIXELS = 40_000_000  # default data.max_pixels: 40 MP (a 10,000 x 10,000 image is refused)
SIZE_SAMPLE = 256  # headers read to pick the image size and channels when the recipe leaves them null


@dataclass
class FolderListing:
    """The usable files of an image folder (sorted by class, then name) and what was left out."""

    root: Path
    classes: list[str]
    files: list[Path]
    labels: list[int]  # class index per file
    sizes: list[tuple[int, int]]  # (width, height) per file, from its header
    gray: list[bool]  # per file: a one-channel mode (L, I;16, ...)
    skipped: dict[str, list[str]] = field(default_factory=dict)  # reason -> file names

    def fingerprint(self) -> str:
        """Changes when a file is added, removed, renamed or rewritten (size and mtime)."""
        h = hashlib.sha256(str(self.root.resolve()).encode())
        for f in self.files:
            st = f.stat()
            h.update(f"{f.relative_to(self.root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return h.hexdigest()[:24]


def list_image_folder(root: Path, max_pixels: int = MAX_PIXELS) -> FolderListing:
    """Scan ROOT/CLASS/*.png|jpg|...; check each header; log (once) what was left out and why."""
    from PIL import Image

    if not root.is_dir():
        raise ToolkitError(f"{root}: not a folder")
    classes, files, labels, sizes, gray = [], [], [], [], []
    skipped: dict[str, list[str]] = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        entries = sorted(f for f in d.iterdir() if f.is_file() and not f.name.startswith("."))
        kept = 0
        for f in entries:
            if f.suffix.lower() not in IMAGE_SUFFIXES:
                skipped.setdefault("not an image file (by suffix)", []).append(_rel(root, f))
                continue
            info = _header(Image, f, max_pixels)
            if isinstance(info, str):
                skipped.setdefault(info, []).append(_rel(root, f))
                continue
            files.append(f)
            labels.append(len(classes))
            sizes.append(info[0])
            gray.append(info[1])
            kept += 1
        if kept:
            classes.append(d.name)
        else:
            skipped.setdefault("empty class folder (no usable image)", []).append(d.name + "/")
    if not files:
        raise ToolkitError(
            f"{root}: no images found; expected one sub-folder per class holding PNG/JPEG files"
        )
    listing = FolderListing(root, classes, files, labels, sizes, gray, skipped)
    log_skipped(root, skipped)
    return listing


def _header(image_module, path: Path, max_pixels: int) -> tuple[tuple[int, int], bool] | str:
    """((width, height), is_gray) from the header alone, or the reason the file cannot be used."""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's DecompressionBombWarning: the limit below decides
            with image_module.open(path) as im:
                w, h = im.size
                mode = im.mode
    except image_module.DecompressionBombError:
        return f"over data.max_pixels ({max_pixels:,} pixels; a decompression-bomb guard)"
    except Exception:  # noqa: BLE001 - any failure to parse a header means: not a readable image
        return "unreadable or corrupt"
    if w * h > max_pixels:
        return f"over data.max_pixels ({max_pixels:,} pixels; a decompression-bomb guard)"
    if w < 1 or h < 1:
        return "unreadable or corrupt"
    return (w, h), mode in GRAY_MODES


def _rel(root: Path, f: Path) -> str:
    return str(f.relative_to(root))


def log_skipped(root: Path, skipped: dict[str, list[str]]) -> None:
    """One warning line per reason: 'skipped 3 files of FOLDER (unreadable or corrupt): a.png, b.png, ...'."""
    for reason, names in skipped.items():
        shown = ", ".join(names[:5]) + (f", ... ({len(names) - 5} more)" if len(names) > 5 else "")
        log.warning(
            "skipped %d %s of %s (%s): %s", len(names), _noun(reason, len(names)), root, reason, shown
        )


def _noun(reason: str, n: int) -> str:
    word = "folder" if reason.startswith("empty class") else "file"
    return word if n == 1 else word + "s"


def pick_size(listing: FolderListing, image_size: int | None) -> int:
    """The recipe's data.image_size, else the data's: the median shorter side of a sample of the images."""
    if image_size:
        return int(image_size)
    step = max(1, len(listing.sizes) // SIZE_SAMPLE)
    return int(statistics.median_low(min(w, h) for w, h in listing.sizes[::step]))


def pick_channels(listing: FolderListing, channels: int | None) -> int:
    """The recipe's data.channels, else 1 when every image is one-channel (L, I;16, ...) and 3 otherwise."""
    if channels:
        return int(channels)
    return 1 if all(listing.gray) else 3


def cache_root() -> Path:
    """Where image caches live: $TOOLKIT_CACHE_DIR/images, else ~/.cache/toolkit/images."""
    base = os.environ.get("TOOLKIT_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "toolkit")
    return Path(base) / "images"
