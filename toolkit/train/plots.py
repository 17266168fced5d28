"""PNG plots for runs: learning curves and confusion matrices (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from toolkit.io import atomic_path


def pyplot():
    """matplotlib.pyplot on the Agg backend (files only, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(history: list[dict[str, float]], main_metric: str, path: Path) -> None:
    """Train/validation loss and the validation main metric per epoch."""
    plt = pyplot()
    epochs = [r["epoch"] for r in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for key in [k for k in history[0] if k.startswith("train_")]:  # train_loss, or the GAN's two losses
        ax1.plot(
            epochs,
            [r[key] for r in history],
            label=key.replace("train_", "train ").replace("train loss", "train"),
        )
    if "val_loss" in history[0]:
        ax1.plot(epochs, [r["val_loss"] for r in history], label="validation")
    ax1.set(xlabel="epoch", ylabel="loss", title="loss")
    ax1.legend()
    key = f"val_{main_metric}"
    if key in history[0]:
        ax2.plot(epochs, [r[key] for r in history], color="tab:green")
        ax2.set(xlabel="epoch", ylabel=main_metric, title=f"validation {main_metric}")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def plot_confusion(
    cm: np.ndarray, labels: list[str], path: Path, title: str = "confusion matrix (test)"
) -> None:
    plt = pyplot()
    n = len(labels)
    size = max(4.0, 0.5 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(n), labels, rotation=45 if max(map(len, labels)) > 3 else 0, ha="right")
    ax.set_yticks(range(n), labels)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    threshold = cm.max() / 2 if cm.size else 0
    for i in range(n):
        for j in range(n):
            ax.text(
                j,
                i,
                str(cm[i, j]),
                ha="center",
                va="center",
                color="white" if cm[i, j] > threshold else "black",
            )
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def plot_forecast(spec: dict, splits, x: np.ndarray, y: np.ndarray, pred: np.ndarray, path: Path) -> None:
    """The series around the test windows, the first forecast step of every window and, for the run's own
    test split, the persistence and autoregressive baselines on the same windows."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(11, 4))
    if splits is not None:
        values, times, starts = splits.extra["values"], splits.extra["times"], splits.extra["test_starts"]
        first = max(int(starts[0]) - 3 * spec["window"], 0)
        pos = np.arange(first, len(values))
        ax.plot(pos, values[first:], color="0.3", lw=1.5, label="actual")
        ax.plot(starts, pred[:, 0], "o-", ms=3, color="tab:blue", label="model")
        for name, style in (("naive", "tab:gray"), ("ar", "tab:orange")):
            if name in splits.extra["baselines"]:
                ax.plot(starts, splits.extra["baselines"][name][:, 0], "--", color=style, lw=1, label=name)
        ax.axvline(starts[0] - 0.5, color="0.7", ls=":")
        step = max(len(pos) // 8, 1)
        ax.set_xticks(pos[::step], [times[i] for i in pos[::step]])
        ax.set_title(f"{spec.get('series_name', 'series')}: test windows, first forecast step")
    else:
        idx = np.arange(len(y)) + spec["window"]
        ax.plot(idx, y[:, 0], color="0.3", lw=1.5, label="actual")
        ax.plot(idx, pred[:, 0], "o-", ms=2, color="tab:blue", label="model")
        ax.set_title("forecasts (first step)")
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def plot_samples(images: np.ndarray, labels: list[str], path: Path, title: str = "generated samples") -> None:
    """A grid of generated images in [0, 1], (K * n, C, H, W) grouped by class: one row per class."""
    plt = pyplot()
    k = len(labels)
    n, (c, h, w) = len(images) // k, images.shape[1:]
    grid = np.ones((k * (h + 1) - 1, n * (w + 1) - 1, c), dtype=np.float32)  # 1-pixel white gutters
    for i, img in enumerate(images[: k * n]):
        r, col = divmod(i, n)
        grid[r * (h + 1) : r * (h + 1) + h, col * (w + 1) : col * (w + 1) + w] = img.transpose(1, 2, 0)
    cell = max(0.5, max(h, w) / 100)  # inches per image: 8x8 digits drawn large, big images at full size
    fig, ax = plt.subplots(figsize=(n * cell + 1.2, k * cell + 0.6))
    ax.imshow(grid[..., 0] if c == 1 else grid, cmap="gray" if c == 1 else None, vmin=0, vmax=1)
    ax.set_yticks([r * (h + 1) + h / 2 - 0.5 for r in range(k)], labels)
    ax.set_xticks([])
    ax.set_title(title)
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
