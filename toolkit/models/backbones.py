"""Pretrained torchvision backbones with a new classifier head: mobilenet (mobilenet_v3_small), resnet
(resnet18), efficientnet (efficientnet_b0).

The builder makes the architecture only (random weights), so a checkpoint rebuilds without a download;
`init_weights` (called once when training starts) loads `model.weights`: torchvision's published ImageNet
weights, a state_dict file, or none. Loading goes through toolkit.train.finetune.load_matching (names and
shapes checked; the replaced last layer keeps its fresh initialization).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from toolkit.errors import ToolkitError
from toolkit.models.registry import register_model

# arch -> (torchvision builder, weights enum, the head (trained first), the replaced last layer)
BACKBONES = {
    "mobilenet": ("mobilenet_v3_small", "MobileNet_V3_Small_Weights", "classifier", "classifier.3"),
    "resnet": ("resnet18", "ResNet18_Weights", "fc", "fc"),
    "efficientnet": ("efficientnet_b0", "EfficientNet_B0_Weights", "classifier", "classifier.1"),
}


class Pretrained(nn.Module):
    """A torchvision classifier whose last layer has num_outputs units; `head_prefixes` name the head."""

    def __init__(self, arch: str, num_outputs: int, dropout: float, in_channels: int = 3) -> None:
        super().__init__()
        self.gray = in_channels == 1  # grayscale images are repeated into the 3 channels the weights expect
        import torchvision.models as tvm

        name, _, head, last = BACKBONES[arch]
        self.arch = arch
        self.net = getattr(tvm, name)(weights=None)
        layer = self.net.get_submodule(last)
        new = nn.Linear(layer.in_features, num_outputs)
        parent, _, child = last.rpartition(".")
        container = self.net.get_submodule(parent) if parent else self.net
        if arch == "resnet":  # resnet's fc has no dropout before it
            new = nn.Sequential(nn.Dropout(dropout), new)
            last = "fc"
        elif arch == "mobilenet" or arch == "efficientnet":
            for m in container:
                if isinstance(m, nn.Dropout):
                    m.p = dropout
        setattr(container, child, new)
        self.head_prefixes = (f"net.{head}",)
        self.replaced = (last,)  # names inside self.net

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) or (B, 1, H, W) -> (B, num_outputs)
        if self.gray:
            x = x.expand(-1, 3, -1, -1)
        return self.net(x)


def _builder(arch: str):
    def build(cfg: Any, input_shape: tuple[int, ...], num_outputs: int, spec: dict) -> nn.Module:
        if input_shape[0] not in (1, 3):
            raise ToolkitError(f"{arch} takes RGB or grayscale images (got {input_shape[0]} channels)")
        return Pretrained(arch, num_outputs, cfg.dropout, input_shape[0])

    return build


for _arch in BACKBONES:
    register_model(_arch, input_kind="image")(_builder(_arch))


def imagenet_state_dict(arch: str) -> dict[str, torch.Tensor]:
    """torchvision's published ImageNet weights (downloaded once into torch's hub cache)."""
    import torchvision.models as tvm

    name, enum, _, _ = BACKBONES[arch]
    weights = getattr(tvm, enum).IMAGENET1K_V1
    try:
        return weights.get_state_dict(progress=False, check_hash=True)
    except Exception as exc:  # noqa: BLE001 - offline, proxy, disk: the same advice
        raise ToolkitError(
            f"cannot download torchvision's ImageNet weights for {name} ({exc.__class__.__name__}); on a machine "
            f"online download {weights.url} and pass --set model.weights=PATH (or copy it into "
            f"{torch.hub.get_dir()}/checkpoints/), or train from scratch with --set model.weights=none"
        ) from None


def init_weights(model: nn.Module, weights: str) -> str:
    """Load model.weights into a freshly built backbone; returns where they came from (for the log)."""
    from toolkit.train.finetune import load_matching, read_state_dict

    if weights == "none":
        return "random initialization"
    state = imagenet_state_dict(model.arch) if weights == "imagenet" else read_state_dict(weights)
    if any(k.startswith("net.") for k in state):  # a toolkit checkpoint of the same wrapper
        state = {k[4:]: v for k, v in state.items() if k.startswith("net.")}
    load_matching(model.net, state, model.replaced, what=f"model.weights ({weights})")
    return weights
