"""Self-supervised pretraining for images: SimCLR (Chen et al. 2020), the `contrastive` task.

Each image is seen twice, through two random augmentations (shift, rotation, scale, noise, erased
patches); the network is trained so the two views of an image are closer to each other than to any other
image in the batch (the NT-Xent loss: a softmax over the 2B-1 other views, temperature TEMPERATURE). Labels
are not used for training. The encoder is the network without its head (the cnn's `embed`: conv blocks and
global pooling); the head is the projection that the loss reads, thrown away afterwards.

The monitored metric is a linear probe: a logistic regression fitted on the train split's embeddings (its
labels) and scored on the validation split, every epoch. A supervised recipe starts from the encoder with
`model.init_from: RUN_DIR` (toolkit.train.transfer); `toolkit export` exports the encoder (embeddings out).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from toolkit.errors import ToolkitError
from toolkit.train.registry import register_task
from toolkit.train.tasks import LAZY_BATCH, Task

PROJECTION = 64  # width of the projection the loss compares (the head's output)
TEMPERATURE = 0.2  # NT-Xent softmax temperature
SCALE = (0.75, 1.15)  # random zoom of a view (a resized crop for small images)
NOISE = 0.15  # Gaussian noise added to a view, in standardized units
ERASE = 0.25  # side of the square erased from a view, as a fraction of the image side (half the views)


def simclr_view(x: torch.Tensor, shift: float, rotate_deg: float) -> torch.Tensor:
    """One random view of each image in x (B, C, H, W): zoom, rotation, shift, noise and an erased square;
    draws from torch's global RNG (seeded per epoch by the loop, so runs and resumed runs repeat)."""
    b, _, h, w = x.shape
    dev = x.device
    angle = (torch.rand(b, device=dev) * 2 - 1) * math.radians(rotate_deg)
    scale = SCALE[0] + torch.rand(b, device=dev) * (SCALE[1] - SCALE[0])
    t = (torch.rand(b, 2, device=dev) * 2 - 1) * 2 * shift
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, t[:, 0]], 1), torch.stack([sin, cos, t[:, 1]], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    v = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    v = v + NOISE * torch.randn_like(v)
    side = max(1, round(ERASE * min(h, w)))
    top = torch.randint(0, h - side + 1, (b,), device=dev)
    left = torch.randint(0, w - side + 1, (b,), device=dev)
    rows = torch.arange(h, device=dev)[None, :, None]
    cols = torch.arange(w, device=dev)[None, None, :]
    inside = (rows >= top[:, None, None]) & (rows < top[:, None, None] + side)
    inside = inside & (cols >= left[:, None, None]) & (cols < left[:, None, None] + side)
    erase = inside & (torch.rand(b, device=dev) < 0.5)[:, None, None]
    return v.masked_fill(erase[:, None], 0.0)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = TEMPERATURE) -> torch.Tensor:
    """The NT-Xent loss of SimCLR: for each of the 2B views, cross-entropy of finding its partner among
    the other 2B-1 by cosine similarity / temperature."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / temperature
    n = len(z1)
    sim.fill_diagonal_(float("-inf"))
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, partner)


@torch.no_grad()
def embeddings(model: nn.Module, x: Any, batch_size: int = 512) -> np.ndarray:
    """The encoder's output (N, D) for all of x, in evaluation mode."""
    if not hasattr(model, "embed"):
        raise ToolkitError(f"{type(model).__name__} has no encoder to pretrain (allowed arch: cnn)")
    model.eval()
    device = next(model.parameters()).device
    if not torch.is_tensor(x):
        batch_size = min(batch_size, LAZY_BATCH)
    parts = []
    for i in range(0, len(x), batch_size):
        xb = x[i : i + batch_size]
        xb = xb if torch.is_tensor(xb) else torch.from_numpy(np.asarray(xb))
        parts.append(model.embed(xb.to(device)).float().cpu())
    return torch.cat(parts).numpy()


def linear_probe(train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray]) -> float:
    """Accuracy on `test` of a logistic regression fitted on `train` (standardized features, lbfgs): how
    linearly separable the classes are in the embedding."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    (x_tr, y_tr), (x_te, y_te) = train, test
    if len(np.unique(y_tr)) < 2 or not len(x_te):
        return float("nan")
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))
    probe.fit(x_tr.reshape(len(x_tr), -1), y_tr)
    return float((probe.predict(x_te.reshape(len(x_te), -1)) == y_te).mean())


@register_task
class Contrastive(Task):
    """SimCLR on images; y holds the class labels, used only by the linear probe."""

    name = "contrastive"
    target_dtype = torch.int64
    custom_epoch = True

    def prepare(self, splits: Any, device: torch.device) -> None:
        if splits.spec.get("kind") != "image":
            raise ToolkitError(
                "the contrastive task needs image data (builtin:digits, an image folder, .npz)"
            )
        splits.spec["projection"] = PROJECTION  # the head's width (Splits.num_outputs reads it)
        self.probe_train = (splits.x_train, np.asarray(splits.y_train))

    def _views(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        aug = self.recipe.data.augment
        return simclr_view(x, aug.shift, aug.rotate), simclr_view(x, aug.shift, aug.rotate)

    def train_epoch(
        self, model, batches, optimizers, on_batch=None, token_p: float = 0.0
    ) -> dict[str, float]:
        """One pass: two views per image, NT-Xent on their projections; returns {"loss": mean}."""
        model.train()
        opt = optimizers["model"]
        clip = self.recipe.train.grad_clip
        total, count = 0.0, 0
        for x, _ in batches:
            if len(x) < 2:  # a lone last sample has no negatives
                continue
            v1, v2 = self._views(x)
            loss = nt_xent(*model(torch.cat([v1, v2])).float().chunk(2))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
            total, count = total + float(loss.detach()) * len(x), count + len(x)
            if on_batch is not None:
                on_batch(1.0)
        return {"loss": total / max(count, 1)}

    @torch.no_grad()
    def contrastive_loss(self, model: nn.Module, x: Any) -> float:
        model.eval()
        x = x if torch.is_tensor(x) else torch.as_tensor(np.asarray(x))
        x = x[:512].to(next(model.parameters()).device)
        if len(x) < 2:
            return float("nan")
        v1, v2 = self._views(x)
        return float(nt_xent(*model(torch.cat([v1, v2])).float().chunk(2)))

    def evaluate(self, model: nn.Module, x: torch.Tensor, y_np: np.ndarray) -> dict[str, float]:
        """The NT-Xent loss on (up to 512 of) the split's images and the linear probe's accuracy on it."""
        train = (embeddings(model, self.probe_train[0]), self.probe_train[1])
        probe = linear_probe(train, (embeddings(model, x), np.asarray(y_np)))
        return {"loss": self.contrastive_loss(model, x), "probe_accuracy": probe}

    def metrics(self, y_true, outputs, x=None) -> dict[str, float]:
        raise ToolkitError("a contrastive run is scored by its linear probe (Contrastive.evaluate)")

    def final_metrics(self, model: nn.Module, val: tuple, test: tuple) -> tuple[dict[str, float], dict]:
        """The probe's test accuracy, and the same on raw pixels for comparison (pixel_probe_accuracy)."""
        if not len(test[0]):
            return {}, {}
        out = {"probe_accuracy": self.evaluate(model, *test)["probe_accuracy"]}
        raw = [
            np.asarray(self.probe_train[0]),
            np.asarray(test[0].cpu() if torch.is_tensor(test[0]) else test[0]),
        ]
        out["pixel_probe_accuracy"] = linear_probe(
            (raw[0], self.probe_train[1]), (raw[1], np.asarray(test[1]))
        )
        return out, {}

    def evaluate_run(self, run_dir: Path, ckpt: dict[str, Any], data: str | None, plots: bool) -> dict:
        """`toolkit eval`: the probe's accuracy on the test split (fitted on the train split's labels)."""
        from toolkit.data import load_splits
        from toolkit.train.checkpoint import load_model

        if data is not None:
            raise ToolkitError("a contrastive run is evaluated on its own splits (drop --data)")
        rec = self.recipe
        splits = load_splits(rec.data, rec.task, "image", rec.train.seed, spec=self.spec)
        self.probe_train = (splits.x_train, np.asarray(splits.y_train))
        x_test = torch.as_tensor(np.asarray(splits.x_test))
        metrics, _ = self.final_metrics(load_model(ckpt), (None, None), (x_test, splits.y_test))
        return {"source": f"{rec.data.source} (test split)", "samples": len(x_test), "metrics": metrics}
