"""Every registered model: a tiny forward pass has the right shape and no NaN; backward reaches all weights."""

from __future__ import annotations

import pytest
import torch

from toolkit.models import create_model, list_models, model_entry
from toolkit.recipe import MODEL_CONFIGS

SHAPES = {"tabular": (7,), "image": (1, 8, 8)}


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("batch", [1, 5])
def test_forward_shape_and_finite(name, batch):
    torch.manual_seed(0)
    entry = model_entry(name)
    shape = SHAPES[entry.input_kind]
    model = create_model(name, MODEL_CONFIGS[name](), shape, num_outputs=3).eval()
    out = model(torch.randn(batch, *shape))
    assert out.shape == (batch, 3)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", list_models())
def test_backward_reaches_every_parameter(name):
    torch.manual_seed(0)
    shape = SHAPES[model_entry(name).input_kind]
    model = create_model(name, MODEL_CONFIGS[name](), shape, num_outputs=2).train()
    model(torch.randn(4, *shape)).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing


def test_cnn_accepts_other_image_sizes_and_channels():
    model = create_model("cnn", MODEL_CONFIGS["cnn"](channels=[4, 8, 8]), (3, 20, 28), num_outputs=4).eval()
    assert model(torch.randn(2, 3, 20, 28)).shape == (2, 4)
    assert model(torch.randn(2, 3, 9, 9)).shape == (2, 4)  # global pooling: size independent


def test_every_config_has_a_builder():
    assert set(MODEL_CONFIGS) == set(list_models())
