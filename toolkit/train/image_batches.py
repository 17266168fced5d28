"""Streamed image batches: a DataLoader whose worker processes read (cache) or decode (files) each image and
augment it (torchvision transforms v2: random resized crop, horizontal flip, colour jitter), handing uint8
batches to the loop, which standardizes them on the training device. Only the batches in flight are in
memory, whatever the size of the folder.

The order is drawn from torch's global generator (reseeded every epoch by the loop) and the workers' seeds
from it too, so an epoch is the same whether it runs first or after a resume.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from toolkit.data.image_cache import ImageSet


class _Samples(torch.utils.data.Dataset):
    """(C, S, S) uint8 pixels, augmented, and the sample's position (to look its target up)."""

    def __init__(self, images: ImageSet, transform: Any = None) -> None:
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        px = torch.from_numpy(np.array(self.images.uint8(i)))  # a writable copy of the read buffer
        if self.transform is not None:
            px = self.transform(px)
        return px, i


def photo_transform(augment: Any, size: int) -> Any:
    """The recipe's photo augmentations as one transforms v2 pipeline on uint8 tensors (None when off)."""
    if not (augment.crop > 0 or augment.flip or augment.color_jitter > 0):
        return None  # (and no import of transforms v2: seconds on a busy machine)
    from torchvision.transforms import v2

    steps: list[Any] = []
    if augment.crop > 0:
        steps.append(v2.RandomResizedCrop(size, scale=(augment.crop, 1.0), antialias=True))
    if augment.flip:
        steps.append(v2.RandomHorizontalFlip())
    if augment.color_jitter > 0:
        j = augment.color_jitter
        steps.append(v2.ColorJitter(brightness=j, contrast=j, saturation=j))
    return v2.Compose(steps) if steps else None


class StreamBatches:
    """Shuffled mini-batches of an ImageSet on the training device, standardized: (B, C, S, S) float32."""

    def __init__(
        self, images: ImageSet, y: torch.Tensor, batch_size: int, device: torch.device, workers: int, augment
    ) -> None:
        self.images, self.y, self.batch_size, self.device = images, y.to(device), batch_size, device
        self.workers = workers
        transform = photo_transform(augment, images.shape[2]) if augment is not None else None
        self.dataset = _Samples(images, transform)
        # (pixels / 255 - mean) / std as one multiply and one add, in place on each batch: (1, C, 1, 1)
        self.scale = torch.as_tensor(1.0 / (255.0 * images.std), device=device)[None]
        self.shift = torch.as_tensor(-images.mean / images.std, device=device)[None]

    def __len__(self) -> int:
        return math.ceil(len(self.images) / self.batch_size)

    def __iter__(self):
        order = torch.randperm(len(self.images)).tolist()  # global generator: seeded per epoch
        loader = torch.utils.data.DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            sampler=order,
            num_workers=self.workers,
            pin_memory=self.device.type == "cuda",
            prefetch_factor=4 if self.workers else None,
        )
        for pixels, idx in loader:  # (B, C, S, S) uint8, (B,)
            x = pixels.to(self.device, non_blocking=True).float().mul_(self.scale).add_(self.shift)
            yield x, self.y[idx.to(self.device)]


def stream_batches(splits: Any, targets: torch.Tensor, device: torch.device, data_cfg: Any, batch_size: int):
    """The train split of an image folder as StreamBatches, with the recipe's workers and augmentations."""
    from toolkit.data.image_folder import ImageOptions

    workers = ImageOptions.of(data_cfg).processes
    return StreamBatches(splits.x_train, targets, batch_size, device, workers, data_cfg.augment)
