"""Recurrent models (Elman RNN, LSTM, GRU) for series forecasting and text classification.

Text: right-padded token ids with 0 as padding. The recurrence runs left to right, so the outputs at real
tokens never see the padding after them; a masked mean over those outputs makes the prediction independent
of how much padding a batch adds, and keeps the graph simple to export (no packed sequences).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from toolkit.models.registry import register_model

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


def _recurrent(cell: str, input_size: int, hidden: int, layers: int, dropout: float) -> nn.Module:
    kwargs = {"nonlinearity": "tanh"} if cell == "rnn" else {}
    return CELLS[cell](
        input_size,
        hidden,
        num_layers=layers,
        batch_first=True,
        dropout=dropout if layers > 1 else 0.0,
        **kwargs,
    )


class SeriesRNN(nn.Module):
    def __init__(
        self, cell: str, hidden: int, layers: int, dropout: float, horizon: int, residual: bool
    ) -> None:
        super().__init__()
        self.rnn = _recurrent(cell, 1, hidden, layers, dropout)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, horizon))
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, 1) -> (B, horizon)
        out, _ = self.rnn(x)  # (B, T, hidden)
        y = self.head(out[:, -1])
        return y + x[:, -1] if self.residual else y  # residual: predict the change from the last value


class TextRNN(nn.Module):
    def __init__(
        self,
        cell: str,
        vocab_size: int,
        embed_dim: int,
        hidden: int,
        layers: int,
        dropout: float,
        num_classes: int,
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.rnn = _recurrent(cell, embed_dim, hidden, layers, dropout)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, num_classes))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # (B, T) int64 -> (B, classes)
        keep = (tokens != 0).unsqueeze(-1).to(self.head[1].weight.dtype)  # (B, T, 1)
        out, _ = self.rnn(self.embed(tokens))  # (B, T, hidden)
        pooled = (out * keep).sum(1) / keep.sum(1).clamp(min=1.0)  # mean over real tokens
        return self.head(pooled)


def _builder(cell: str):
    def build(cfg, input_shape: tuple[int, ...], num_outputs: int, spec: dict) -> nn.Module:
        if spec.get("kind") == "tokens":
            vocab = len(spec["tokenizer"]["vocab"])
            return TextRNN(cell, vocab, cfg.embed_dim, cfg.hidden, cfg.layers, cfg.dropout, num_outputs)
        return SeriesRNN(cell, cfg.hidden, cfg.layers, cfg.dropout, num_outputs, cfg.residual)

    return build


for _cell in CELLS:
    register_model(_cell, input_kind={"forecast": "series", "classify": "tokens"})(_builder(_cell))
