"""Multi-layer perceptron for tabular vectors."""

from __future__ import annotations

import torch
import torch.nn as nn

from toolkit.models.registry import register_model

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "silu": nn.SiLU}


def embedding_dim(codes: int) -> int:
    """Width of a category's embedding from its number of codes (fast.ai's rule of thumb, capped at 32)."""
    return int(min(32, max(2, round(1.6 * codes**0.56))))


class TableInput(nn.Module):
    """A table row with category codes in its last columns -> dense features and one learned embedding per
    code column, concatenated: (B, D + K) -> (B, D + sum of embedding widths). The codes arrive as floats
    (the model has one float input, see docs/data.md) and are cast and clamped to their range in the graph."""

    def __init__(self, width: int, codes: list[int]) -> None:
        super().__init__()
        self.dense = width - len(codes)
        self.embeddings = nn.ModuleList(nn.Embedding(n, embedding_dim(n)) for n in codes)
        self.out_features = self.dense + sum(embedding_dim(n) for n in codes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = [x[:, : self.dense]]
        for i, emb in enumerate(self.embeddings):
            code = x[:, self.dense + i].round().long().clamp(0, emb.num_embeddings - 1)  # (B,)
            parts.append(emb(code))  # (B, dim)
        return torch.cat(parts, dim=1)


class MLP(nn.Module):
    def __init__(
        self,
        in_features: int,
        hidden: list[int],
        num_outputs: int,
        dropout: float,
        activation: str,
        batch_norm: bool,
        codes: list[int] | None = None,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        if codes:  # category columns with many levels: embeddings first
            table = TableInput(in_features, codes)
            layers.append(table)
            width = table.out_features
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
    codes = [len(c["levels"]) + 2 for c in spec.get("columns") or [] if c.get("encoding") == "embedding"]
    return MLP(in_features, list(cfg.hidden), num_outputs, cfg.dropout, cfg.activation, cfg.batch_norm, codes)
