"""Image augmentation on batches: small random shifts and rotations (one affine warp per sample)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def random_affine(x: torch.Tensor, shift: float, rotate_deg: float) -> torch.Tensor:
    """x: (B, C, H, W) normalized images. Shift is a fraction of the side; draws from torch's global RNG."""
    if shift <= 0 and rotate_deg <= 0:
        return x
    b = x.shape[0]
    angle = (torch.rand(b, device=x.device) * 2 - 1) * math.radians(rotate_deg)
    # affine_grid works in [-1, 1] coordinates, so a shift of s (fraction of the side) is 2*s.
    t = (torch.rand(b, 2, device=x.device) * 2 - 1) * 2 * shift
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack(
        [torch.stack([cos, -sin, t[:, 0]], 1), torch.stack([sin, cos, t[:, 1]], 1)], 1
    )  # (B, 2, 3)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    # Border padding repeats the (normalized) background instead of inventing a new value.
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def token_dropout(tokens: torch.Tensor, p: float, unk_id: int = 1) -> torch.Tensor:
    """tokens: (B, T) ids with 0 as padding. Each real token becomes <unk> with probability p, so the model
    learns from every word it knows instead of memorizing whole texts, and meets unknown words in training."""
    if p <= 0:
        return tokens
    drop = (torch.rand(tokens.shape, device=tokens.device) < p) & (tokens != 0)
    return tokens.masked_fill(drop, unk_id)
