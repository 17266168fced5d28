"""Is a model older than the checkpoint it was exported from? Export records the checkpoint's SHA-256 in the
metadata (provenance.checkpoint); a model lying in a run folder whose checkpoint has changed since (after
`train --resume`, a retrain into the same folder, a killed export) would otherwise be used silently.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from toolkit.runtime import schema


def stale_checkpoint(
    model_path: str | Path, meta: dict[str, Any], ckpt_path: str | Path | None = None
) -> str | None:
    """One line when the checkpoint the model's metadata names (beside the model, or `ckpt_path`) exists and
    differs from the one exported; None when it matches, or when there is nothing to compare with. Beside the
    model, a checkpoint no newer than the model file is taken as unchanged without reading it."""
    recorded = schema.dig(meta, "provenance", "checkpoint") or {}
    want = recorded.get("sha256") if isinstance(recorded, dict) else None
    if not want:
        return None
    model_path = Path(model_path)
    explicit = ckpt_path is not None
    ckpt = Path(ckpt_path) if explicit else model_path.with_name(recorded.get("file") or "best.pt")
    try:
        if not explicit and ckpt.stat().st_mtime <= model_path.stat().st_mtime:
            return None
        got = _sha256(ckpt)
    except OSError:
        return None  # no checkpoint here: a model copied away from its run
    if got == want:
        return None
    return (
        f"{model_path} is older than {ckpt} (checkpoint sha256 {got[:12]}, exported from {want[:12]}): "
        f"export again (toolkit export {ckpt.parent})"
    )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
