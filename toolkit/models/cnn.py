"""Small VGG-style CNN for images: a strided stem for large inputs, conv blocks that halve the side, global
pooling, a dense head.

The stem (stride-2 convolutions) brings a large input down to about STEM_TARGET pixels a side before the
full-width blocks, so the cost per image follows the pixel count: 32 px and smaller go straight to the blocks
(the model is what it always was), 96 px gets two stem convolutions, 224 px three."""

from __future__ import annotations

import math

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


STEM_TARGET = 32  # the side the stem aims for (auto)


def stem_depth(side: int, stem: int | None) -> int:
    """Stride-2 stem convolutions: None (auto) = enough to bring `side` to about STEM_TARGET; an int as given."""
    if stem is not None:
        return int(stem)
    return max(0, math.ceil(math.log2(side / STEM_TARGET) - 0.25)) if side > STEM_TARGET else 0


def _stem(c_in: int, width: int, depth: int, bn: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(depth):
        c_out = width if i == depth - 1 else max(width // 2, 8)
        layers.append(nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=not bn))
        if bn:
            layers.append(nn.BatchNorm2d(c_out))
        layers.append(nn.ReLU(inplace=True))
        c_in = c_out
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
        stem_depth: int = 0,
    ) -> None:
        super().__init__()
        blocks, c = [], in_channels
        if (
            stem_depth
        ):  # a large input: stride-2 convolutions first (checkpoints without a stem load as before)
            blocks.append(_stem(c, channels[0], stem_depth, batch_norm))
            c = channels[0]
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

    def embed(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, channels[-1]): the encoder alone
        return self.pool(self.features(x)).flatten(1)


@register_model("cnn", input_kind="image")
def build_cnn(cfg, input_shape: tuple[int, ...], num_outputs: int, spec: dict) -> nn.Module:
    in_channels, side = input_shape[0], min(input_shape[1:])
    depth = stem_depth(side, getattr(cfg, "stem", None))
    return CNN(
        in_channels,
        list(cfg.channels),
        cfg.kernel_size,
        cfg.hidden,
        num_outputs,
        cfg.dropout,
        cfg.batch_norm,
        depth,
    )
