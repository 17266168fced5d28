"""Multi-layer perceptron for tabular vectors."""

from __future__ import annotations

import torch
import torch.nn as nn

from toolkit.models.registry import register_model

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "silu": nn.SiLU}


class MLP(nn.Module):
    def __init__(
        self,
        in_features: int,
        hidden: list[int],
        num_outputs: int,
        dropout: float,
        activation: str,
        batch_norm: bool,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers.append(nn.Linear(width, h))
            if batch_norm:
                layers.append(nn.BatchNorm1d(h))
            layers += [ACTIVATIONS[activation](), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, num_outputs))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, F) -> (B, num_outputs)
        return self.net(x)


@register_model("mlp", input_kind="tabular")
def build_mlp(cfg, input_shape: tuple[int, ...], num_outputs: int, spec: dict) -> nn.Module:
    (in_features,) = input_shape
    return MLP(in_features, list(cfg.hidden), num_outputs, cfg.dropout, cfg.activation, cfg.batch_norm)
