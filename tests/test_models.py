"""Every registered model, for every task it serves: tiny forward passes (shape, no NaN) at several batch
sizes and sequence lengths; backward reaches all weights; text models ignore padding."""

from __future__ import annotations

import pytest
import torch

from toolkit.models import create_model, list_models, model_entry
from toolkit.recipe import ARCH_TASKS, MODEL_CONFIGS

VOCAB = 50
TOKENS_SPEC = {
    "kind": "tokens",
    "tokenizer": {"vocab": ["<pad>", "<unk>"] + [f"w{i}" for i in range(VOCAB - 2)]},
}
# The GAN's generator takes (noise, labels): tests/test_gan.py covers its shapes and gradients.
CASES = [(arch, task) for arch in list_models() for task in ARCH_TASKS[arch] if task != "generate"]


def _build(arch, task, num_outputs=3, **cfg):
    kind = model_entry(arch).input_kind(task, MODEL_CONFIGS[arch](**cfg))
    spec = TOKENS_SPEC if kind == "tokens" else {"kind": kind}
    shape = {"tabular": (7,), "image": (1, 8, 8), "series": (12, 1), "tokens": (12,)}[kind]
    torch.manual_seed(0)
    return create_model(arch, MODEL_CONFIGS[arch](**cfg), shape, num_outputs, spec), kind


def _input(kind, batch, length=12):
    if kind == "tabular":
        return torch.randn(batch, 7)
    if kind == "image":
        return torch.randn(batch, 1, 8, 8)
    if kind == "series":
        return torch.randn(batch, length, 1)
    return torch.randint(2, VOCAB, (batch, length))


@pytest.mark.parametrize("arch, task", CASES, ids=[f"{a}-{t}" for a, t in CASES])
@pytest.mark.parametrize("batch, length", [(1, 12), (5, 3), (4, 40)])
def test_forward_shape_and_finite(arch, task, batch, length):
    model, kind = _build(arch, task)
    x = _input(kind, batch, length)
    out = model.eval()(x)
    assert out.shape == (x.shape if task == "reconstruct" else (batch, 3))  # an autoencoder reconstructs x
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("arch, task", CASES, ids=[f"{a}-{t}" for a, t in CASES])
def test_backward_reaches_every_parameter(arch, task):
    model, kind = _build(arch, task, num_outputs=2)
    model.train()(_input(kind, 4)).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing


TEXT_ARCHS = [
    a
    for a in list_models()
    if "classify" in ARCH_TASKS[a] and model_entry(a).input_kind("classify") == "tokens"
]


@pytest.mark.parametrize("arch", TEXT_ARCHS)
def test_text_predictions_do_not_change_with_padding(arch):
    model, _ = _build(arch, "classify")
    model.eval()
    tokens = torch.randint(2, VOCAB, (3, 9))
    tokens[1, 5:] = 0  # a shorter text inside the batch
    tokens[2, 2:] = 0
    padded = torch.cat([tokens, torch.zeros(3, 20, dtype=torch.int64)], dim=1)
    with torch.no_grad():
        a, b = model(tokens), model(padded)
        alone = model(tokens[2:3, :2])  # the short text in a batch of its own, with no padding at all
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a[2:3], alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", [a for a in list_models() if "forecast" in ARCH_TASKS[a]])
def test_residual_forecaster_starts_from_the_last_value(arch):
    model, _ = _build(arch, "forecast", num_outputs=2)
    for p in model.parameters():
        torch.nn.init.zeros_(p)
    x = torch.randn(4, 12, 1)
    torch.testing.assert_close(model.eval()(x), x[:, -1].expand(4, 2))


def test_cnn_accepts_other_image_sizes_and_channels():
    model = create_model("cnn", MODEL_CONFIGS["cnn"](channels=[4, 8, 8]), (3, 20, 28), num_outputs=4).eval()
    assert model(torch.randn(2, 3, 20, 28)).shape == (2, 4)
    assert model(torch.randn(2, 3, 9, 9)).shape == (2, 4)  # global pooling: size independent


def test_transformer_heads_must_divide_width():
    from toolkit.errors import ToolkitError

    with pytest.raises(ToolkitError, match="divide"):
        MODEL_CONFIGS["transformer"](d_model=30, heads=4)


def test_every_config_has_a_builder():
    assert set(MODEL_CONFIGS) == set(list_models())
