"""The conditional GAN (task generate): the training step, shapes and ranges at any image size, seeds,
metrics judged by a classifier, `toolkit eval` (samples.png) and `toolkit generate` (PNG files), and every
user error as one line. Tiny networks and a tiny judge keep these fast; the acceptance test is slow."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import assert_one_line_error
from PIL import Image
from runs import GAN, default_run, exported

from toolkit.errors import ToolkitError
from toolkit.models import create_model
from toolkit.recipe import load_recipe
from toolkit.train import train
from toolkit.train.gan import generate
from toolkit.train.loop import Batches
from toolkit.train.registry import make_task

TINY = GAN  # the shared tiny GAN (tests/runs.py): trained once per session with these overrides


@pytest.fixture(scope="module")
def judge(tmp_path_factory) -> Path:
    """A one-epoch classifier on digits: a poor judge, but a real one (the metrics' plumbing is tested)."""
    return exported(tmp_path_factory, "digits")


@pytest.fixture(scope="module")
def gan_run(tmp_path_factory, judge) -> Path:
    return exported(tmp_path_factory, "gan")  # TINY, judged by `judge`


def _tiny_model(shape=(1, 8, 8), classes=10):
    torch.manual_seed(0)
    return create_model("gan", load_recipe("gan", TINY).model, shape, classes)


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 16, 16), (1, 28, 28), (3, 9, 13)])
def test_generator_makes_images_of_the_data_shape_and_range(shape):
    model = _tiny_model(shape, classes=3).eval()
    labels = torch.tensor([0, 1, 2, 1, 0])
    images = model(torch.randn(5, 4), labels)
    assert images.shape == (5, *shape)
    assert images.min() >= -1 and images.max() <= 1  # tanh: the data's [-1, 1] scale
    assert model.discriminator(images, labels).shape == (5,)
    model.train()
    model.discriminator(model.generator(torch.randn(5, 4), labels), labels).sum().backward()
    trained = [*model.generator.parameters(), *model.discriminator.parameters()]
    assert all(p.grad is not None for p in trained)


def test_training_step_updates_both_networks():
    recipe = load_recipe("gan", TINY)
    model = _tiny_model()
    task = make_task(recipe, {"labels": [str(i) for i in range(10)]})
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(64, 1, 8, 8) * 2 - 1
    batches = Batches(x, torch.arange(64) % 10, 32)
    losses = task.train_epoch(model, batches, task.optimizers(model))
    assert set(losses) == {"loss_d", "loss_g"} and all(np.isfinite(v) for v in losses.values())
    for net in ("generator", "discriminator", "average"):  # the sampled generator follows the trained one
        changed = [
            k for k, v in model.state_dict().items() if k.startswith(net) and not torch.equal(v, before[k])
        ]
        assert changed, f"{net} did not change"


def test_run_records_metrics_and_reuses_the_judge(gan_run, judge):
    metrics = json.loads((gan_run / "metrics.json").read_text())
    assert 0 <= metrics["class_agreement"] <= 1
    assert metrics["diversity"] > 0
    assert metrics["main_metric"] == "class_agreement"
    header = (gan_run / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"train_loss_d", "train_loss_g", "val_class_agreement", "val_diversity"} <= set(header)
    assert not (gan_run / "judge").exists()  # model.judge given: nothing trained


def test_same_seed_same_samples_and_metrics(gan_run, judge, tmp_path):
    again = tmp_path / "again"
    train("gan", overrides=[*TINY, f"model.judge={judge}"], out=again)
    first, second = (json.loads((r / "metrics.json").read_text()) for r in (gan_run, again))
    assert first["class_agreement"] == second["class_agreement"]
    assert first["diversity"] == second["diversity"]
    a, b = generate(gan_run, "3", 5, seed=7), generate(again, 3, 5, seed=7)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (5, 1, 8, 8) and a.dtype == np.float32 and 0 <= a.min() and a.max() <= 1
    assert not np.array_equal(a, generate(gan_run, "3", 5, seed=8))


def test_image_folder_rgb_with_a_judge_trained_on_the_fly(make_image_folder, tmp_path, cli):
    folder = make_image_folder(classes=3, per_class=4, mode="RGB", size=16)
    out = tmp_path / "rgb"
    result = train(
        "gan", data=str(folder), overrides=[*TINY, "data.image_size=16", "data.channels=3"], out=out
    )
    assert {"class_agreement", "diversity"} <= set(result.metrics)
    judge_metrics = json.loads((out / "judge" / "metrics.json").read_text())
    assert judge_metrics["recipe"] == "cnn-image"  # trained into RUN/judge on the same data
    res = cli("generate", out, "--label", "2", "--count", "3", "--out", tmp_path / "png")
    assert res.exit_code == 0, res.output
    files = sorted((tmp_path / "png").glob("*.png"))
    assert len(files) == 3
    with Image.open(files[0]) as im:
        assert im.size == (16, 16) and im.mode == "RGB"


def test_eval_writes_the_sample_grid_and_repeats_the_metrics(gan_run, cli):
    res = cli("eval", gan_run, "--json")
    assert res.exit_code == 0, res.output
    result = json.loads(res.stdout)
    recorded = json.loads((gan_run / "metrics.json").read_text())
    assert result["metrics"]["class_agreement"] == recorded["class_agreement"]
    assert result["metrics"]["diversity"] == pytest.approx(recorded["diversity"])
    assert set(result["per_class_agreement"]) == {str(i) for i in range(10)}
    with Image.open(gan_run / "samples.png") as im:
        assert im.format == "PNG" and im.size[0] > 100
    assert "class_agreement" in cli("eval", gan_run).stdout


def test_generate_writes_pngs_of_the_data_size(gan_run, cli, tmp_path):
    res = cli("generate", gan_run, "--label", "7", "--count", "4", "--out", tmp_path / "sevens", "--json")
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["count"] == 4 and report["label"] == "7" and report["shape"] == [1, 8, 8]
    files = sorted((tmp_path / "sevens").glob("7_*.png"))
    assert [str(f) for f in files] == report["files"]
    with Image.open(files[0]) as im:
        assert im.size == (8, 8) and im.mode == "L"


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--label", "3", "--count", "0"], ["count must be a positive integer", "got 0"]),
        (["--label", "cat"], ["label 'cat' is not in the data", "allowed: 0, 1, 2", "9"]),
        (["--label", "10"], ["label '10'", "index 0-9"]),
    ],
)
def test_generate_rejects_bad_arguments(gan_run, cli, args, needles):
    assert_one_line_error(cli("generate", gan_run, *args), *needles)


def test_generate_on_a_run_that_is_not_a_gan(judge, cli, tmp_path):
    assert_one_line_error(cli("generate", judge, "--label", "1"), "classify run", "not a GAN run")
    assert_one_line_error(cli("generate", tmp_path / "nope", "--label", "1"), "run directory not found")


def test_a_judge_must_be_a_classifier_of_the_same_classes(gan_run, tmp_path, cli):
    with pytest.raises(ToolkitError, match="must be a classifier run"):
        train("gan", overrides=[*TINY, f"model.judge={gan_run}"], out=tmp_path / "a")
    res = cli("train", "gan", "--set", f"model.judge={tmp_path / 'missing'}", "--out", tmp_path / "b")
    assert_one_line_error(res, "no best.pt")


def test_a_classifier_on_flattened_pixels_can_judge(tmp_path):
    mlp = tmp_path / "mlp"
    train("mlp", data="builtin:digits", overrides=["train.epochs=3", "model.hidden=[16]"], out=mlp)
    result = train("gan", overrides=[*TINY, f"model.judge={mlp}"], out=tmp_path / "gan")
    assert 0 <= result.metrics["class_agreement"] <= 1


@pytest.mark.slow
def test_default_recipe_acceptance(tmp_path_factory, tmp_path):
    """Defaults on CPU: the judge recognizes >= 95% of the samples as the class asked for, and they vary at
    least half as much as real digits do. The judge is the default CNN on CPU, the very run a default GAN
    trains on the fly (same recipe, seed, split and device), shared with test_accuracy; training a judge on
    the fly is tested above (test_image_folder_rgb_with_a_judge_trained_on_the_fly)."""
    judge = default_run(tmp_path_factory, "cnn", ("train.device=cpu",))
    t0 = time.perf_counter()
    result = train("gan", overrides=["train.device=cpu", f"model.judge={judge}"], out=tmp_path / "gan")
    seconds = time.perf_counter() - t0
    print(f"gan-image defaults: {result.metrics} in {seconds:.0f} s")
    assert result.metrics["class_agreement"] >= 0.95
    assert result.metrics["diversity"] >= 0.5
