"""TensorBoard event files for one run, in RUN_DIR/tensorboard: per-epoch scalars, the recipe as text, the
run's plots (curves, confusion matrix, GAN samples) as images and, after `toolkit export`, the ONNX graph.

Written with torch.utils.tensorboard (the training side has torch); view with `tensorboard --logdir runs`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from toolkit.tracking.common import numeric

LOGDIR = "tensorboard"


def writer(run_dir: Path):
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(Path(run_dir) / LOGDIR))


class TensorboardRun:
    def __init__(self, run_dir: Path, params: dict[str, Any]) -> None:
        self.writer = writer(run_dir)
        table = "\n".join(f"| {k} | {v} |" for k, v in params.items())
        self.writer.add_text("recipe", "| key | value |\n|---|---|\n" + table)
        self.writer.flush()

    def epoch(self, step: int, row: dict[str, float]) -> None:
        for key, value in numeric(row).items():
            self.writer.add_scalar(key.replace("_", "/", 1), value, step)
        self.writer.flush()

    def finish(self, metrics: dict[str, Any], run_dir: Path) -> None:
        import numpy as np
        from PIL import Image

        step = int(metrics.get("epochs_run", 0) or 0)
        for key, value in numeric(metrics).items():
            self.writer.add_scalar(f"final/{key}", value, step)
        for png in sorted(Path(run_dir).glob("*.png")):
            with Image.open(png) as im:
                pixels = np.asarray(im.convert("RGB"))
            self.writer.add_image(png.stem, pixels, step, dataformats="HWC")
        self.writer.close()

    def fail(self, status: str = "FAILED") -> None:
        self.writer.close()

    def where(self) -> dict[str, Any]:
        return {"tensorboard": LOGDIR}


def add_onnx_graph(run_dir: Path, model: Path) -> bool:
    """Add the exported graph to a run that was tracked with TensorBoard; False when it was not."""
    if not (Path(run_dir) / LOGDIR).is_dir():
        return False
    w = writer(run_dir)
    try:
        w.add_onnx_graph(str(model))
    finally:
        w.close()
    return True
