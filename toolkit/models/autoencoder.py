"""Autoencoders for anomaly detection: dense (vectors) and convolutional (images).

forward(x) reconstructs x; encode(x) returns the latent code, so the encoder alone serves as a feature
extractor. The anomaly score is the reconstruction error (see toolkit/train/anomaly.py).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from toolkit.models.registry import register_model


def _mlp(widths: list[int], dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:  # no activation on the code or on the reconstruction
            layers += [nn.ReLU(inplace=True), nn.Dropout(dropout)]
    return nn.Sequential(*layers)


class DenseAutoencoder(nn.Module):
    def __init__(self, in_features: int, hidden: list[int], latent: int, dropout: float) -> None:
        super().__init__()
        self.encoder = _mlp([in_features, *hidden, latent], dropout)
        self.decoder = _mlp([latent, *reversed(hidden), in_features], dropout)

    def encode(self, x: torch.Tensor) -> torch.Tensor:  # (B, F) -> (B, latent)
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, F) -> (B, F)
        return self.decoder(self.encoder(x))


class ConvAutoencoder(nn.Module):
    def __init__(
        self, input_shape: tuple[int, ...], channels: list[int], latent: int, dropout: float
    ) -> None:
        super().__init__()
        c, h, w = input_shape
        enc: list[nn.Module] = []
        prev = c
        for ch in channels:  # each block halves the side (rounding up)
            enc += [nn.Conv2d(prev, ch, 3, stride=2, padding=1), nn.BatchNorm2d(ch), nn.ReLU(inplace=True)]
            prev = ch
        self.features = nn.Sequential(*enc)
        with torch.no_grad():
            self.grid = tuple(self.features.eval()(torch.zeros(1, c, h, w)).shape[1:])  # (C', h', w')
        flat = self.grid[0] * self.grid[1] * self.grid[2]
        self.to_code = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(flat, latent))
        self.from_code = nn.Linear(latent, flat)
        dec: list[nn.Module] = []
        for ch in reversed([c, *channels[:-1]]):
            dec += [nn.ConvTranspose2d(prev, ch, 4, stride=2, padding=1)]
            if ch != c:
                dec += [nn.BatchNorm2d(ch), nn.ReLU(inplace=True)]
            prev = ch
        self.deconv = nn.Sequential(*dec)
        self.size = (h, w)

    def encode(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, latent)
        return self.to_code(self.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, H, W)
        z = self.from_code(self.encode(x)).view(-1, *self.grid)
        out = self.deconv(z)
        if tuple(out.shape[-2:]) != self.size:  # odd sides: the decoder overshoots by a pixel
            out = F.interpolate(out, size=self.size, mode="bilinear", align_corners=False)
        return out


@register_model(
    "autoencoder",
    input_kind=lambda task, cfg: "image" if cfg is not None and cfg.variant == "conv" else "tabular",
)
def build_autoencoder(cfg, input_shape: tuple[int, ...], num_outputs: int, spec: dict) -> nn.Module:
    if cfg.variant == "conv":
        return ConvAutoencoder(input_shape, list(cfg.channels), cfg.latent, cfg.dropout)
    (in_features,) = input_shape
    return DenseAutoencoder(in_features, list(cfg.hidden), cfg.latent, cfg.dropout)
