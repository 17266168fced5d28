"""Anomaly detection with autoencoders: the reconstruct task, its threshold, plots and the encoder.

The anomaly score of a sample is its mean squared reconstruction error over all features (or pixels), in
the normalized units the model sees. The decision threshold is chosen on the validation split: the best F1
when the validation split holds labelled anomalies (model.threshold: f1), otherwise a quantile of the
normal samples' scores (model.threshold: quantile, model.quantile). It is recorded in the checkpoint's spec
("threshold"), so every later stage flags anomalies the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from toolkit.metrics import TASK_METRICS, best_f1_threshold
from toolkit.train.registry import register_task
from toolkit.train.tasks import REGRESSION_LOSSES, Task, predict_outputs


def anomaly_scores(x: np.ndarray, reconstruction: np.ndarray) -> np.ndarray:
    """(N,) mean squared reconstruction error per sample."""
    err = (np.asarray(reconstruction, dtype=np.float64) - np.asarray(x, dtype=np.float64)) ** 2
    return err.reshape(len(err), -1).mean(axis=1)


@register_task
class Reconstruct(Task):
    """Targets are the inputs; y holds anomaly flags (0 normal, 1 anomaly) used only for metrics."""

    name = "reconstruct"
    target_dtype = torch.int64

    def loss(
        self, outputs: torch.Tensor, targets: torch.Tensor, inputs: torch.Tensor | None = None
    ) -> torch.Tensor:
        return REGRESSION_LOSSES[self.loss_name](outputs, inputs)  # the target is the input itself

    def predictions(self, outputs: np.ndarray) -> np.ndarray:
        return outputs  # the reconstruction, in normalized units

    def metrics(
        self, y_true: np.ndarray, outputs: np.ndarray, x: np.ndarray | None = None
    ) -> dict[str, float]:
        threshold = {"score": {"value": self.spec["threshold"]}} if "threshold" in self.spec else {}
        scores = anomaly_scores(x, outputs)  # what the exported graph's `score` output computes
        return TASK_METRICS["reconstruct"].score({"score": scores}, y_true, {"thresholds": threshold})

    def choose_threshold(self, y_val: np.ndarray, scores: np.ndarray) -> tuple[float, str]:
        cfg = self.recipe.model
        if cfg.threshold == "f1" and (y_val == 1).any() and (y_val == 0).any():
            return best_f1_threshold(y_val, scores), "f1"
        normal = scores[y_val == 0] if (y_val == 0).any() else scores
        return float(np.quantile(normal, cfg.quantile)), f"quantile {cfg.quantile}"

    def final_metrics(self, model: torch.nn.Module, val: tuple, test: tuple) -> tuple[dict[str, float], dict]:
        x_val, y_val = val
        scores = anomaly_scores(x_val.cpu().numpy(), predict_outputs(model, x_val))
        threshold, method = self.choose_threshold(y_val, scores)
        updates = {
            "threshold": threshold,
            "threshold_method": method,
            "score": "mean squared reconstruction error per sample, in normalized units; above threshold = anomaly",
        }
        self.spec.update(updates)
        metrics = self.evaluate(model, *test) if len(test[0]) else {}
        metrics.pop("loss", None)
        return {**metrics, "threshold": threshold}, updates

    def report(self, run_dir, splits, x, y, outputs, metrics, plots) -> dict[str, Any]:
        """The recorded threshold, and with plots score_hist.png and reconstructions.png (anomaly_report)."""
        result: dict[str, Any] = {"threshold": self.spec.get("threshold")}
        if plots:
            result.update(anomaly_report(run_dir, self.spec, x, y, outputs))
        return result


# --------------------------------------------------------------------------------------------- eval
def anomaly_report(
    run_dir: Path, spec: dict[str, Any], x: np.ndarray, y: np.ndarray, recon: np.ndarray
) -> dict:
    """Write score_hist.png (normal vs anomalous scores and the threshold) and reconstructions.png."""
    scores = anomaly_scores(x, recon)
    plot_score_histogram(scores, y, spec.get("threshold"), run_dir / "score_hist.png")
    written = [str(run_dir / "score_hist.png")]
    image = spec.get("image")
    if image:
        plot_reconstructions(x, recon, y, scores, spec, run_dir / "reconstructions.png")
        written.append(str(run_dir / "reconstructions.png"))
    return {"plots": written}


def _to_images(x: np.ndarray, spec: dict[str, Any]) -> np.ndarray:
    """Normalized samples -> (N, H, W) or (N, H, W, 3) pixels in [0, 1] for display."""
    im = spec["image"]
    c, h, w = im["channels"], im["height"], im["width"]
    mean = np.asarray(spec["mean"], dtype=np.float64)
    std = np.asarray(spec["std"], dtype=np.float64)
    if spec["kind"] == "tabular":  # flattened pixels, normalized per pixel
        px = x.reshape(len(x), -1) * std + mean
    else:
        px = x * std[None, :, None, None] + mean[None, :, None, None]
    px = np.clip(px.reshape(len(x), c, h, w), 0, 1)
    return px[:, 0] if c == 1 else px.transpose(0, 2, 3, 1)


def plot_score_histogram(scores: np.ndarray, y: np.ndarray, threshold: float | None, path: Path) -> None:
    from toolkit.io import atomic_path
    from toolkit.train.plots import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    top = float(np.quantile(scores, 0.99))
    if threshold is not None:
        top = max(top, threshold * 1.2)
    bins = np.linspace(scores.min(), top, 50)
    clipped = np.minimum(scores, top)  # the few largest scores pile up in the last bin
    for flag, name, color in ((0, "normal", "tab:blue"), (1, "anomalous", "tab:red")):
        if (y == flag).any():
            n = int((y == flag).sum())
            ax.hist(clipped[y == flag], bins=bins, alpha=0.6, label=f"{name} ({n})", color=color)
    if threshold is not None:
        ax.axvline(threshold, color="black", ls="--", label=f"threshold {threshold:.3g}")
    ax.set(xlabel="anomaly score (reconstruction MSE)", ylabel="samples", title="anomaly scores (test)")
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def plot_reconstructions(x, recon, y, scores, spec, path: Path, per_kind: int = 8) -> None:
    """Top row pairs: inputs and, below each, its reconstruction; normal samples first, then anomalies."""
    from toolkit.io import atomic_path
    from toolkit.train.plots import pyplot

    rng = np.random.default_rng(0)
    picks = [rng.permutation(np.flatnonzero(y == k))[:per_kind] for k in (0, 1)]
    idx = np.concatenate(picks)
    inputs, outputs = _to_images(x[idx], spec), _to_images(recon[idx], spec)
    plt = pyplot()
    fig, axes = plt.subplots(2, len(idx), figsize=(1.1 * len(idx), 2.6), squeeze=False)
    for j, i in enumerate(idx):
        for row, img in ((0, inputs[j]), (1, outputs[j])):
            ax = axes[row, j]
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        color = "tab:red" if y[i] == 1 else "tab:blue"
        axes[0, j].set_title(f"{scores[i]:.2f}", fontsize=8, color=color)
    axes[0, 0].set_ylabel("input")
    axes[1, 0].set_ylabel("recon.")
    fig.suptitle("test inputs (blue: normal, red: anomalous; title = score) and reconstructions", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


# --------------------------------------------------------------------------------------------- features
def encode(run_dir: str | Path, x: np.ndarray) -> np.ndarray:
    """The encoder as a feature extractor: latent codes (N, latent) for already-normalized inputs x."""
    from toolkit.errors import ToolkitError
    from toolkit.train.checkpoint import load_checkpoint, load_model

    ckpt = load_checkpoint(Path(run_dir) / "best.pt")
    model = load_model(ckpt)
    if not hasattr(model, "encode"):
        raise ToolkitError(f"{run_dir} is not an autoencoder run (arch {ckpt['arch']})")
    with torch.no_grad():
        return model.encode(torch.as_tensor(np.asarray(x, dtype=np.float32))).numpy()
