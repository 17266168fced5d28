"""What gets exported for each task: the wrapped model and its named input and output ports.

The model is wrapped so the graph holds what a runtime would otherwise re-implement (softmax, target
de-standardization, the anomaly score, pixel scaling).

What differs by task is one entry in SIGNATURES: a function that wraps the model and names its ports.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn as nn

TEXT_LENGTHS = (1, 5, 23, 40)  # token sequence lengths probed (capped at the model's longest)
TEXT_TRACE_LENGTH = 7


@dataclass
class Port:
    """One named input or output of the exported graph, as the metadata describes it."""

    name: str
    dtype: str  # numpy name: float32, int64
    shape: list[int | str]  # symbolic dims are strings: ["batch", 1, 8, 8]
    meaning: str
    layout: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # preprocessing, value range, ...

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "dtype": self.dtype, "shape": self.shape}
        if self.layout:
            out["layout"] = self.layout
        out["meaning"] = self.meaning
        return {**out, **self.extra}


@dataclass
class Signature:
    """What gets exported for one graph: the wrapped module, its ports, and how to probe it.

    `sample(rng, batch, length)` returns numpy inputs in the order of `inputs`; `lengths` are the sequence
    lengths probed for parity ((None,) for fixed-shape inputs) and `trace_length` the one used for tracing.
    """

    module: nn.Module
    inputs: list[Port]
    outputs: list[Port]
    sample: Callable[[np.random.Generator, int, int | None], tuple[np.ndarray, ...]]
    lengths: tuple[int | None, ...] = (None,)
    trace_length: int | None = None
    role: str = "model"  # "model", or a part exported beside it ("encoder")
    suffix: str = ""  # file name part: model.onnx, model.text.onnx; the encoder: see part_path

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        return {
            p.name: {i: d for i, d in enumerate(p.shape) if isinstance(d, str)}
            for p in [*self.inputs, *self.outputs]
        }


class _Classify(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model(x)  # (B, classes)
        return logits, torch.softmax(logits, dim=-1)


class _Destandardize(nn.Module):
    """The network predicts standardized targets; the graph returns them in the target's own units."""

    def __init__(self, model: nn.Module, mean: float, std: float) -> None:
        super().__init__()
        self.model, self.mean, self.std = model, float(mean), float(std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) * self.std + self.mean  # (B, outputs)


class _Reconstruct(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        recon = self.model(x)  # same shape as x
        score = (recon - x).pow(2).flatten(1).mean(dim=1)  # (B,): toolkit.train.anomaly.anomaly_scores
        return recon, score


class _Encode(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.encode(x)  # (B, latent)


class _Embed(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.embed(x)  # (B, D): the encoder without its projection head


class _Generate(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, z: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        from toolkit.train.gan import to_pixels

        return to_pixels(self.model(z, label))  # (B, C, H, W) pixels in [0, 1]


def _data_input(ckpt: dict[str, Any]) -> tuple[Port, Callable, tuple[int | None, ...], int | None]:
    """The input port for what the model reads (tabular, image, tokens or series), its probe sampler,
    the sequence lengths to probe and the traced length."""
    spec, shape = ckpt["spec"], list(ckpt["input_shape"])
    if spec["kind"] == "tokens":
        return _token_input(ckpt)
    standardize = {
        "type": "standardize",
        "formula": "(x - mean) / std",
        "mean": spec["mean"],
        "std": spec["std"],
    }
    if spec["kind"] == "series":
        return _series_input(ckpt, standardize)
    image = spec.get("image")
    if image and image.get("pixel_scale") is not None:  # images: raw pixel values are scaled first
        standardize["formula"] = "(pixels * image.pixel_scale - mean) / std"
    if spec["kind"] == "image":
        standardize.update(per="channel", image=image)
        port = Port("input", "float32", ["batch", *shape], "images, standardized per channel", "NCHW")
    else:
        standardize.update(per="feature", missing="a missing value (NaN) becomes 0 after standardizing")
        standardize["feature_names"] = spec.get("feature_names")
        if spec.get(
            "columns"
        ):  # a table's column encoding, applied to raw rows by toolkit.runtime.processing
            standardize.update(columns=spec["columns"], ignored=spec.get("ignored") or [])
        if image:  # images flattened into vectors (row-major C, H, W) for an MLP or a dense autoencoder
            standardize["image"] = image
        port = Port("input", "float32", ["batch", *shape], "feature vectors, standardized per feature", "NF")
    port.extra["preprocessing"] = standardize
    return port, _normal_sampler(tuple(shape)), (None,), None


def _token_input(ckpt: dict[str, Any]) -> tuple[Port, Callable, tuple[int | None, ...], int | None]:
    """Token ids: probed at TEXT_LENGTHS (capped at the model's longest), traced at TEXT_TRACE_LENGTH."""
    tok = ckpt["spec"]["tokenizer"]
    longest = min(tok["max_length"], getattr(_recipe(ckpt).model, "max_length", None) or tok["max_length"])
    lengths = tuple(sorted({min(n, longest) for n in TEXT_LENGTHS}))
    port = Port(
        "tokens",
        "int64",
        ["batch", "sequence"],
        "token ids of each text, right-padded with pad_id to the longest text of the batch",
        "NT",
        {"preprocessing": {"type": "tokenize", "tokenizer": tok}},
    )
    vocab = len(tok["vocab"])
    return port, _token_sampler(vocab), lengths, min(TEXT_TRACE_LENGTH, longest)


def _series_input(
    ckpt: dict[str, Any], standardize: dict[str, Any]
) -> tuple[Port, Callable, tuple[int | None, ...], int | None]:
    """A window of the series: traced at the trained window, probed shorter and longer too."""
    spec = ckpt["spec"]
    window = spec["window"]
    longest = getattr(_recipe(ckpt).model, "max_length", None) or 4 * window
    lengths = tuple(sorted({window, max(1, window // 2), min(window + 7, longest)}))
    pre = {
        **standardize,
        "mean": spec["mean"][0],
        "std": spec["std"][0],
        "window": window,
        "horizon": spec["horizon"],
        "series_name": spec.get("series_name"),
    }
    port = Port(
        "window",
        "float32",
        ["batch", "window", 1],
        f"the last {window} values of the series (the trained window), oldest first, standardized",
        "NTC",
        {"preprocessing": pre},
    )
    return port, _normal_sampler(None), lengths, window


def _normal_sampler(shape: tuple[int, ...] | None) -> Callable:
    def sample(rng: np.random.Generator, batch: int, length: int | None) -> tuple[np.ndarray, ...]:
        dims = shape if shape is not None else (length, 1)
        return (rng.standard_normal((batch, *dims)).astype(np.float32),)

    return sample


def _token_sampler(vocab: int) -> Callable:
    def sample(rng: np.random.Generator, batch: int, length: int | None) -> tuple[np.ndarray, ...]:
        ids = rng.integers(1, vocab, size=(batch, length), dtype=np.int64)  # 1 = <unk> included
        real = rng.integers(1, length + 1, size=batch)
        real[0] = length  # the longest text sets the width, as encode_batch does
        ids[np.arange(length)[None, :] >= real[:, None]] = 0  # right padding
        return (ids,)

    return sample


def _classify(model: nn.Module, ckpt: dict[str, Any]) -> list[Signature]:
    port, sample, lengths, trace = _data_input(ckpt)
    k = ckpt["num_outputs"]
    outputs = [
        Port("logits", "float32", ["batch", k], "unnormalized class scores, one per label"),
        Port("probabilities", "float32", ["batch", k], "softmax of logits; argmax is the predicted label"),
    ]
    return [Signature(_Classify(model), [port], outputs, sample, lengths, trace)]


def _regress(model: nn.Module, ckpt: dict[str, Any]) -> list[Signature]:
    port, sample, lengths, trace = _data_input(ckpt)
    t = ckpt["spec"]["target"]
    out = Port(
        "prediction",
        "float32",
        ["batch", ckpt["num_outputs"]],
        "predicted target in its own units (standardization undone inside the graph)",
        extra={"target": t},
    )
    return [Signature(_Destandardize(model, t["mean"], t["std"]), [port], [out], sample, lengths, trace)]


def _forecast(model: nn.Module, ckpt: dict[str, Any]) -> list[Signature]:
    port, sample, lengths, trace = _data_input(ckpt)
    spec = ckpt["spec"]
    out = Port(
        "forecast",
        "float32",
        ["batch", spec["horizon"]],
        "the next `horizon` values after the window, in the series' own units (scaling undone inside the graph)",
    )
    wrapped = _Destandardize(model, spec["target"]["mean"], spec["target"]["std"])
    return [Signature(wrapped, [port], [out], sample, lengths, trace)]


def _reconstruct(model: nn.Module, ckpt: dict[str, Any]) -> list[Signature]:
    port, sample, lengths, trace = _data_input(ckpt)
    spec = ckpt["spec"]
    outputs = [
        Port("reconstruction", "float32", list(port.shape), "the input as the autoencoder reconstructs it"),
        Port(
            "score",
            "float32",
            ["batch"],
            spec.get("score", "mean squared reconstruction error per sample, in normalized units"),
        ),
    ]
    latent = _recipe(ckpt).model.latent
    code = Port("code", "float32", ["batch", latent], "the latent code (the encoder as a feature extractor)")
    return [
        Signature(_Reconstruct(model), [port], outputs, sample, lengths, trace),
        Signature(_Encode(model), [port], [code], sample, lengths, trace, role="encoder", suffix=".encoder"),
    ]


def _generate(model: nn.Module, ckpt: dict[str, Any]) -> list[Signature]:
    spec, shape = ckpt["spec"], list(ckpt["input_shape"])
    latent, classes = _recipe(ckpt).model.latent, ckpt["num_outputs"]
    inputs = [
        Port(
            "z", "float32", ["batch", latent], "noise: draws of a standard normal", extra={"latent": latent}
        ),
        Port("label", "int64", ["batch"], "class to generate: an index into labels"),
    ]
    image = {**(spec.get("image") or {}), "value_range": [0.0, 1.0]}
    out = Port(
        "images", "float32", ["batch", *shape], "generated images, pixels in [0, 1]", "NCHW", {"image": image}
    )

    def sample(rng: np.random.Generator, batch: int, length: int | None) -> tuple[np.ndarray, ...]:
        z = rng.standard_normal((batch, latent)).astype(np.float32)
        return z, rng.integers(0, classes, size=batch, dtype=np.int64)

    return [Signature(_Generate(model), inputs, [out], sample)]


def _contrastive(model: nn.Module, ckpt: dict[str, Any]) -> list[Signature]:
    """A self-supervised run exports its encoder as the model: images in, embeddings out (similarity search,
    features); the projection head the loss read is left out."""
    port, sample, lengths, trace = _data_input(ckpt)
    width = _recipe(ckpt).model.channels[-1]
    out = Port(
        "embedding",
        "float32",
        ["batch", width],
        "the encoder's features (global-pooled conv blocks; compare by cosine similarity)",
    )
    return [Signature(_Embed(model), [port], [out], sample, lengths, trace)]


# One entry per task: (model, checkpoint) -> the graphs to export, the main one first.
SIGNATURES: dict[str, Callable[[nn.Module, dict[str, Any]], list[Signature]]] = {
    "classify": _classify,
    "regress": _regress,
    "forecast": _forecast,
    "reconstruct": _reconstruct,
    "generate": _generate,
    "contrastive": _contrastive,
}


def _recipe(ckpt: dict[str, Any]) -> Any:
    from toolkit.recipe import recipe_from_dict

    return recipe_from_dict(ckpt["recipe"])
