"""Small VGG-style CNN for images: conv blocks that halve the side, global pooling, a dense head."""

from __future__ import annotations

import torch
import torch.nn as nn

from toolkit.models.registry import register_model


def _block(c_in: int, c_out: int, k: int, bn: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for c in (c_in, c_out):
        layers.append(nn.Conv2d(c, c_out, k, padding=k // 2, bias=not bn))
        if bn:
            layers.append(nn.BatchNorm2d(c_out))
        layers.append(nn.ReLU(inplace=True))
    layers.append(nn.MaxPool2d(2, ceil_mode=True))
    return nn.Sequential(*layers)


class CNN(nn.Module):
    def __init__(
        self,
        in_channels: int,
        channels: list[int],
        kernel_size: int,
        hidden: int,
        num_outputs: int,
        dropout: float,
        batch_norm: bool,
    ) -> None:
        super().__init__()
        blocks, c = [], in_channels
        for width in channels:
            blocks.append(_block(c, width, kernel_size, batch_norm))
            c = width
        self.features = nn.Sequential(*blocks)
        # Global average pooling keeps the head independent of the input size (any H, W exports cleanly).
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(c, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_outputs),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, num_outputs)
        return self.head(self.pool(self.features(x)))


@register_model("cnn", input_kind="image")
def build_cnn(cfg, input_shape: tuple[int, ...], num_outputs: int, spec: dict) -> nn.Module:
    in_channels = input_shape[0]
    return CNN(
        in_channels, list(cfg.channels), cfg.kernel_size, cfg.hidden, num_outputs, cfg.dropout, cfg.batch_norm
    )
