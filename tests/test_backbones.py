"""Pretrained torchvision backbones: weights from a state_dict file (written here: nothing is downloaded),
names and shapes checked, the freeze-then-unfreeze schedule, and export parity."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from toolkit.errors import ToolkitError
from toolkit.train.finetune import load_matching, read_state_dict


def _weights(tmp_path: Path) -> Path:
    import torchvision

    torch.manual_seed(0)
    path = tmp_path / "mobilenet_v3_small.pt"
    torch.save(torchvision.models.mobilenet_v3_small(weights=None).state_dict(), path)
    return path


def _photos(root: Path) -> Path:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(2):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(12):
            a = rng.integers(0, 80, size=(20 + i, 24, 3)).astype(np.uint8)
            a[..., c] += 150
            Image.fromarray(a).save(root / f"c{c}" / f"{i}.png")
    return root


def test_load_matching_lists_misfits_in_one_line():
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["0.weight"] = torch.zeros(5, 4)
    state["extra.bias"] = torch.zeros(1)
    with pytest.raises(ToolkitError) as err:
        load_matching(model, state)
    msg = str(err.value)
    assert "\n" not in msg and "extra.bias" in msg and "0.weight [5, 4] vs [3, 4]" in msg
    state = {k: v for k, v in state.items() if k != "extra.bias"}
    fresh = load_matching(model, {**state, "1.weight": torch.ones(7, 3)}, replaced=("0", "1"))
    assert fresh == ["0.weight", "1.weight"]  # the replaced layers keep their initialization


def test_weights_file_is_read_with_weights_only(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("code ran",))

    bad = tmp_path / "evil.pt"
    bad.write_bytes(pickle.dumps({"w": Evil()}))
    with pytest.raises(ToolkitError, match="weights_only=True"):
        read_state_dict(bad)
    with pytest.raises(ToolkitError, match="not found"):
        read_state_dict(tmp_path / "missing.pt")


def test_mobilenet_fine_tunes_from_a_file_and_exports(tmp_path):
    from toolkit.export import export_run
    from toolkit.train import train
    from toolkit.train.checkpoint import load_checkpoint

    weights = _weights(tmp_path)
    data = _photos(tmp_path / "photos")
    common = ["data.image_size=32", "train.batch_size=8", f"model.weights={weights}", "model.freeze_epochs=1"]
    common += ["data.augment.flip=false", "train.patience=0"]
    head = train("mobilenet", data=str(data), overrides=[*common, "train.epochs=1"], out=tmp_path / "head")
    start = torch.load(weights, weights_only=True)
    trained = load_checkpoint(head.run_dir / "best.pt")["model"]
    body = [k for k in start if not k.startswith("classifier") and k.endswith("weight")]
    assert all(torch.equal(start[k], trained[f"net.{k}"]) for k in body)  # frozen: only the head learned
    assert not torch.equal(start["classifier.0.weight"], trained["net.classifier.0.weight"])
    full = train("mobilenet", data=str(data), overrides=[*common, "train.epochs=2"], out=tmp_path / "all")
    trained = load_checkpoint(full.run_dir / "best.pt")["model"]
    if full.metrics["best_epoch"] == 2:  # the second epoch trained the whole network at lr * unfreeze_lr
        assert not all(torch.equal(start[k], trained[f"net.{k}"]) for k in body)
    lrs = [row["lr"] for row in full.history]
    assert lrs[1] < lrs[0] * 0.2  # lower after unfreezing (cosine and unfreeze_lr 0.1)
    export_run(full.run_dir)  # fails unless ONNX matches PyTorch (parity on several batch sizes)
    import json

    doc = json.loads((full.run_dir / "model.json").read_text())
    pre = doc["inputs"][0]["preprocessing"]
    assert pre["mean"] == [0.485, 0.456, 0.406] and pre["image"]["resize"] == "crop"
    assert max(v["max_abs"] for v in doc["parity"]["outputs"].values()) < 1e-3
