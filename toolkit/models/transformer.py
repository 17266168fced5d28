"""Transformer encoders for text classification and series forecasting.

Written out with plain matmuls and softmax instead of nn.TransformerEncoderLayer: the built-in layer takes a
fused "fast path" in eval mode (and nested tensors with padding masks) that the ONNX exporters do not handle,
and here every op exports with a dynamic sequence axis. Padding (token id 0) is masked out of attention
keys and out of the pooled mean, so adding padding to a batch does not change predictions.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from toolkit.models.registry import register_model


def sinusoidal_table(max_length: int, d_model: int) -> torch.Tensor:
    pos = torch.arange(max_length, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
    table = torch.zeros(max_length, d_model)
    table[:, 0::2] = torch.sin(pos * div)
    table[:, 1::2] = torch.cos(pos * div[: d_model // 2])
    return table  # (max_length, d_model)


class SelfAttention(nn.Module):
    def __init__(self, d_model: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.d_head = heads, d_model // heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        b, t, d = x.shape  # (B, T, D)
        q, k, v = (
            self.qkv(x).reshape(b, t, 3, self.heads, self.d_head).permute(2, 0, 3, 1, 4)
        )  # 3 x (B, H, T, Dh)
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.d_head)  # (B, H, T, T)
        if mask is not None:  # (B, 1, 1, T): 0 at real keys, the dtype's lowest value at padding keys
            scores = scores + mask
        attn = self.drop(torch.softmax(scores, dim=-1))
        return self.out((attn @ v).transpose(1, 2).reshape(b, t, d))


class EncoderLayer(nn.Module):
    """Pre-norm encoder layer: x + attention(norm(x)), then x + feed-forward(norm(x))."""

    def __init__(self, d_model: int, heads: int, ff_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.attn = SelfAttention(d_model, heads, dropout)
        self.ff = nn.Sequential(
            nn.Linear(d_model, ff_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(ff_dim, d_model)
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x), mask))
        return x + self.drop(self.ff(self.norm2(x)))


class Encoder(nn.Module):
    def __init__(self, cfg) -> None:
        super().__init__()
        self.register_buffer("pos", sinusoidal_table(cfg.max_length, cfg.d_model), persistent=False)
        self.layers = nn.ModuleList(
            EncoderLayer(cfg.d_model, cfg.heads, cfg.ff_dim, cfg.dropout) for _ in range(cfg.layers)
        )
        self.norm = nn.LayerNorm(cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, h: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:  # (B, T, D)
        h = self.drop(h + self.pos[: h.shape[1]])
        # padding keys (keep False) get the dtype's lowest finite value added to their scores (weight 0
        # after softmax; finite, so a text of padding only still gives numbers under fp16 autocast),
        # computed once for every layer: an addition broadcasts fast in onnxruntime, while a masked_fill
        # (Where) over (B, H, T, T) in each layer took a sixth of transformer-text's time at batch 64
        lowest = torch.finfo(h.dtype).min
        mask = None if keep is None else ((~keep).to(h.dtype) * lowest)[:, None, None, :]
        for layer in self.layers:
            h = layer(h, mask)
        return self.norm(h)


class TextTransformer(nn.Module):
    def __init__(self, cfg, vocab_size: int, num_classes: int) -> None:
        super().__init__()
        self.scale = math.sqrt(cfg.d_model)
        self.embed = nn.Embedding(vocab_size, cfg.d_model, padding_idx=0)
        self.encoder = Encoder(cfg)
        self.head = nn.Linear(cfg.d_model, num_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # (B, T) int64 -> (B, classes)
        keep = tokens != 0  # (B, T)
        h = self.encoder(self.embed(tokens) * self.scale, keep)  # (B, T, D)
        w = keep.unsqueeze(-1).to(h.dtype)
        return self.head((h * w).sum(1) / w.sum(1).clamp(min=1.0))  # mean over real tokens


class SeriesTransformer(nn.Module):
    def __init__(self, cfg, horizon: int) -> None:
        super().__init__()
        self.proj = nn.Linear(1, cfg.d_model)
        self.encoder = Encoder(cfg)
        self.head = nn.Linear(cfg.d_model, horizon)
        self.residual = cfg.residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, 1) -> (B, horizon)
        h = self.encoder(self.proj(x))  # (B, T, D)
        y = self.head(h[:, -1])  # the last position has attended to the whole window
        return y + x[:, -1] if self.residual else y


@register_model("transformer", input_kind={"forecast": "series", "classify": "tokens"})
def build_transformer(cfg, input_shape: tuple[int, ...], num_outputs: int, spec: dict) -> nn.Module:
    if spec.get("kind") == "tokens":
        return TextTransformer(cfg, len(spec["tokenizer"]["vocab"]), num_outputs)
    return SeriesTransformer(cfg, num_outputs)
