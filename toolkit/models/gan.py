"""Class-conditional DCGAN: a generator (noise, class) -> image and a projection discriminator.

The generator starts from a small base grid and doubles its side with transposed convolutions until it
covers the data's (H, W), then crops the centre, so any image size works (8x8 digits, 28x28, 3x16x16...).
The discriminator halves the side with strided convolutions and pools globally, so it is size-independent
too; it takes the class through a projection (an embedding dotted with its pooled features, Miyato &
Koyama 2018), which conditions more strongly than concatenating a one-hot map. Spectral normalization in
the discriminator keeps its gradients bounded, the usual stabilizer for small GANs.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn as nn
from torch.nn.utils.parametrizations import spectral_norm

from toolkit.models.registry import register_model


def num_upsamplings(height: int, width: int) -> int:
    """How many 2x steps take a base grid of side 2..4 to the image (8 -> 2, 16 -> 3, 28 -> 3, 64 -> 4)."""
    return max(1, min(4, int(math.log2(min(height, width) / 2))))


class Generator(nn.Module):
    def __init__(self, latent: int, width: int, num_classes: int, out_shape: tuple[int, int, int]) -> None:
        super().__init__()
        c_out, self.height, self.width = out_shape
        ups = num_upsamplings(self.height, self.width)
        self.base = (math.ceil(self.height / 2**ups), math.ceil(self.width / 2**ups))
        self.c0 = width * 2 ** (ups - 1)  # channels halve with every doubling of the side
        self.latent = latent
        self.embed = nn.Embedding(num_classes, latent)
        self.project = nn.Sequential(
            nn.Linear(2 * latent, self.c0 * self.base[0] * self.base[1], bias=False),
            nn.BatchNorm1d(self.c0 * self.base[0] * self.base[1]),
            nn.ReLU(inplace=True),
        )
        layers: list[nn.Module] = []
        c = self.c0
        for _ in range(ups):
            layers += [
                nn.ConvTranspose2d(c, max(c // 2, 8), 4, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(max(c // 2, 8)),
                nn.ReLU(inplace=True),
            ]
            c = max(c // 2, 8)
        layers += [nn.Conv2d(c, c_out, 3, padding=1), nn.Tanh()]
        self.body = nn.Sequential(*layers)

    def forward(self, noise: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        # (B, latent), (B,) int64 -> (B, C, H, W) in [-1, 1]
        h = self.project(torch.cat([noise, self.embed(labels)], dim=1))
        x = self.body(h.view(h.shape[0], self.c0, *self.base))  # (B, C, base*2^ups, base*2^ups)
        top = (x.shape[2] - self.height) // 2
        left = (x.shape[3] - self.width) // 2
        return x[:, :, top : top + self.height, left : left + self.width]


class Discriminator(nn.Module):
    def __init__(self, width: int, num_classes: int, in_shape: tuple[int, int, int]) -> None:
        super().__init__()
        c_in, h, w = in_shape
        downs = num_upsamplings(h, w)
        layers: list[nn.Module] = [spectral_norm(nn.Conv2d(c_in, width, 3, padding=1)), nn.LeakyReLU(0.2)]
        c = width
        for _ in range(downs):
            layers += [spectral_norm(nn.Conv2d(c, 2 * c, 4, stride=2, padding=1)), nn.LeakyReLU(0.2)]
            c *= 2
        self.features = nn.Sequential(*layers)
        self.out = spectral_norm(nn.Linear(c, 1))
        self.embed = spectral_norm(nn.Embedding(num_classes, c))

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        # (B, C, H, W), (B,) -> (B,) real/fake logits
        h = self.features(images).sum(dim=(2, 3))  # (B, c): global sum pooling, any H, W
        return self.out(h).squeeze(1) + (self.embed(labels) * h).sum(dim=1)


class ConditionalGAN(nn.Module):
    """Both networks in one module (one checkpoint). `generator` is the one being trained; `average` is its
    exponential moving average (updated by the training step), which samples with less noise than the
    latest weights. forward is the averaged generator: what eval, `toolkit generate` and export use."""

    def __init__(self, latent: int, width: int, num_classes: int, shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.latent, self.num_classes = latent, num_classes
        self.generator = Generator(latent, width, num_classes, shape)
        self.discriminator = Discriminator(width, num_classes, shape)
        self.average = copy.deepcopy(self.generator).requires_grad_(False)

    @torch.no_grad()
    def update_average(self, decay: float) -> None:
        for avg, live in zip(self.average.parameters(), self.generator.parameters()):
            avg.lerp_(live, 1.0 - decay)
        for avg, live in zip(self.average.buffers(), self.generator.buffers()):  # BatchNorm statistics
            avg.copy_(live)

    def forward(self, noise: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.average(noise, labels)


@register_model("gan", input_kind="image")
def build_gan(cfg, input_shape: tuple[int, ...], num_outputs: int, spec: dict) -> nn.Module:
    c, h, w = input_shape
    return ConditionalGAN(cfg.latent, cfg.width, num_outputs, (c, h, w))
