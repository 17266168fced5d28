"""Self-supervised pretraining (the contrastive task), model.init_from and data.label_fraction, on tiny real
models trained on builtin:digits."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from toolkit.errors import ToolkitError
from toolkit.train import evaluate_run, train
from toolkit.train.checkpoint import load_checkpoint

TINY = ["model.channels=[4]", "model.hidden=8", "train.batch_size=256"]


def _interrupt_after(n):
    def cb(epoch, row):
        if epoch == n:
            raise KeyboardInterrupt

    return cb


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A 2-epoch contrastive run, exported (shared by the tests below; read-only)."""
    from toolkit.export import export_run

    run = tmp_path_factory.mktemp("pretrain") / "pre"
    train("cnn-contrastive", overrides=TINY + ["train.epochs=2"], out=run)
    export_run(run)
    return run


def test_contrastive_run_monitors_the_probe_and_exports_the_encoder(pretrained):
    import onnxruntime as ort

    from toolkit.train.checkpoint import load_model

    history = (pretrained / "metrics.csv").read_text().splitlines()
    assert history[0].split(",")[:5] == ["epoch", "lr", "train_loss", "val_loss", "val_probe_accuracy"]
    metrics = json.loads((pretrained / "metrics.json").read_text())
    assert metrics["main_metric"] == "probe_accuracy" and 0.1 < metrics["probe_accuracy"] <= 1.0
    assert 0.5 < metrics["pixel_probe_accuracy"] <= 1.0  # the comparison a pretrained encoder must beat
    again = evaluate_run(pretrained, plots=False)["metrics"]  # `toolkit eval`: the same probe, refitted
    assert again["probe_accuracy"] == pytest.approx(metrics["probe_accuracy"])
    meta = json.loads((pretrained / "model.json").read_text())
    assert meta["task"] == "contrastive" and meta["role"] == "model"
    assert [o["name"] for o in meta["outputs"]] == ["embedding"] and meta["outputs"][0]["shape"] == [
        "batch",
        4,
    ]
    x = np.random.default_rng(0).normal(size=(5, 1, 8, 8)).astype(np.float32)
    got = ort.InferenceSession(str(pretrained / "model.onnx")).run(None, {"input": x})[0]
    want = load_model(load_checkpoint(pretrained / "best.pt")).embed(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_contrastive_resume_equals_uninterrupted_run(tmp_path):
    sets = TINY + ["train.epochs=3"]
    full = train("cnn-contrastive", overrides=sets, out=tmp_path / "full")
    with pytest.raises(KeyboardInterrupt):
        train("cnn-contrastive", overrides=sets, out=tmp_path / "cut", callbacks=[_interrupt_after(1)])
    resumed = train(resume=tmp_path / "cut")
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in full.history]
    assert resumed.metrics["probe_accuracy"] == full.metrics["probe_accuracy"]


def test_init_from_loads_the_encoder_and_records_it(pretrained, tmp_path):
    from toolkit.export import export_run

    run = train(
        "cnn", overrides=TINY + ["train.epochs=1", f"model.init_from={pretrained}"], out=tmp_path / "ft"
    )
    source = load_checkpoint(pretrained / "best.pt")
    record = json.loads((run.run_dir / "data.json").read_text())["init_from"]
    assert record["run"] == str(pretrained.resolve()) and record["task"] == "contrastive"
    assert record["initialized"] and all(k.startswith("head.") for k in record["initialized"])
    assert record["loaded"] == len([k for k in source["model"] if not k.startswith("head.")])
    # Loaded before training: with the encoder frozen for the only epoch, its weights stay the source's.
    frozen = train(
        "cnn",
        overrides=TINY + ["train.epochs=1", "model.freeze_epochs=1", f"model.init_from={pretrained}"],
        out=tmp_path / "frozen",
    )
    tuned = load_checkpoint(frozen.run_dir / "best.pt")["model"]
    assert torch.equal(tuned["features.0.0.weight"], source["model"]["features.0.0.weight"])
    assert tuned["head.5.weight"].shape == (
        10,
        8,
    )  # a new head for the 10 classes (the source's projects to 64)
    export_run(run.run_dir)
    meta = json.loads((run.run_dir / "model.json").read_text())
    assert meta["provenance"]["init_from"]["sha256"] == record["sha256"]


def test_init_from_mismatch_is_one_line(pretrained, tmp_path):
    with pytest.raises(ToolkitError) as err:
        train(
            "cnn",
            overrides=TINY[1:] + ["model.channels=[6]", f"model.init_from={pretrained}"],
            out=tmp_path / "a",
        )
    text = str(err.value)
    assert (
        "\n" not in text
        and "shape differs" in text
        and "features.0.0.weight [4, 1, 3, 3] vs [6, 1, 3, 3]" in text
    )
    with pytest.raises(ToolkitError, match="is a cnn run; this recipe's arch is mlp"):
        train("mlp", data="builtin:digits", overrides=[f"model.init_from={pretrained}"], out=tmp_path / "b")
    with pytest.raises(ToolkitError, match="not a finished run"):
        train("cnn", overrides=TINY + [f"model.init_from={tmp_path}"], out=tmp_path / "c")
    assert not (tmp_path / "a" / "best.pt").exists()


def test_cli_init_from(pretrained, tmp_path, cli):
    result = cli(
        "train",
        "cnn",
        "--init-from",
        pretrained,
        "--epochs",
        "1",
        "--out",
        tmp_path / "r",
        "--json",
        *[a for s in TINY for a in ("--set", s)],
    )
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "r" / "data.json").read_text())["init_from"]["task"] == "contrastive"


def test_label_fraction_is_stratified_and_seeded():
    from toolkit.data import load_splits
    from toolkit.recipe import load_recipe

    def split(fraction, seed):
        rec = load_recipe("cnn-image", [f"data.label_fraction={fraction}"])
        return load_splits(rec.data, "classify", "image", seed)

    full, part = split(1.0, 0), split(0.1, 0)
    counts_full, counts_part = np.bincount(full.y_train), np.bincount(part.y_train)
    assert np.array_equal(counts_part, np.maximum(1, np.round(counts_full * 0.1)).astype(int))
    assert len(part.y_val) == len(full.y_val) and len(part.y_test) == len(full.y_test)  # only train shrinks
    rows = {tuple(map(float, r.ravel()[:16])) for r in full.x_train}
    assert all(tuple(map(float, r.ravel()[:16])) in rows for r in part.x_train)  # a subset of the train split
    again, other = split(0.1, 0), split(0.1, 1)
    assert np.array_equal(again.x_train, part.x_train)
    assert not np.array_equal(other.y_train, part.y_train) or not np.array_equal(other.x_train, part.x_train)
    for bad in (0, 1.5):
        with pytest.raises(ToolkitError, match=r"data.label_fraction must be in \(0, 1\]"):
            load_recipe("cnn-image", [f"data.label_fraction={bad}"])
