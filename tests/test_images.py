"""Image folders at real size: the resize policy shared by training and every runtime, streaming splits and
the uint8 cache, photo augmentation, and bad input (corrupt, non-image, mixed modes, huge, empty classes)."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from toolkit.data import load_splits
from toolkit.data.image_cache import ImageSet
from toolkit.data.image_decode import decode_file
from toolkit.errors import ToolkitError
from toolkit.recipe import DataConfig
from toolkit.runtime import processing

SHAPES = [(37, 23), (23, 37), (200, 120), (15, 9), (301, 500)]  # (width, height): non-square, several sizes


def _photo(w: int, h: int, seed: int = 0, mode: str = "RGB") -> Image.Image:
    """Gradients plus noise: smooth parts and sharp ones, as in photos."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    a = np.stack([xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1), rng.integers(0, 256, (h, w))], -1)
    return Image.fromarray(a.astype(np.uint8), "RGB").convert(mode)


def _folder(root: Path, per_class: int = 6, shapes=SHAPES, mode: str = "RGB") -> Path:
    for c in range(2):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(per_class):
            w, h = shapes[i % len(shapes)]
            _photo(w, h, seed=10 * c + i, mode=mode).save(root / f"class{c}" / f"{i}.png")
    return root


# --------------------------------------------------------------------------------------------- resize policy
def test_resize_plan_geometry():
    assert processing.resize_plan(200, 100, 50, "crop") == (100, 50, 25, 0)  # shorter side to 50, centre
    assert processing.resize_plan(100, 200, 50, "letterbox") == (25, 50, 12, 0)  # longer side to 50, padded
    assert processing.resize_plan(100, 200, 50, "stretch") == (50, 50, 0, 0)


@pytest.mark.parametrize("policy", processing.RESIZE_POLICIES)
def test_runtime_decoder_matches_training_transform(tmp_path, policy):
    """Pillow (predict, server V1, edge runner, bundles) and torchvision (training) on non-square images of
    several sizes: the same geometry, pixels within one grey level."""
    for w, h in SHAPES:
        buf = io.BytesIO()
        _photo(w, h).save(buf, "PNG")
        path = tmp_path / f"{w}x{h}.png"
        path.write_bytes(buf.getvalue())
        for channels in (1, 3):
            for size in (8, 32):
                train = decode_file(path, size, channels, policy).astype(int)
                runtime = processing.open_pixels(buf.getvalue(), channels, size, policy).astype(int)
                assert train.shape == runtime.shape == (channels, size, size)
                assert np.abs(train - runtime).max() <= 1, (w, h, channels, size)


def test_letterbox_pads_black_and_crop_keeps_the_centre():
    buf = io.BytesIO()
    Image.new("RGB", (40, 20), (200, 100, 50)).save(buf, "PNG")
    boxed = processing.open_pixels(buf.getvalue(), 3, 20, "letterbox")
    assert (boxed[:, :5] == 0).all() and (boxed[:, 15:] == 0).all() and (boxed[:, 5:15] > 0).all()
    assert (processing.open_pixels(buf.getvalue(), 3, 20, "crop")[0] == 200).all()


# --------------------------------------------------------------------------------------------- streaming
def test_folder_splits_stream_and_match_the_runtime_rows(tmp_path):
    root = _folder(tmp_path / "photos")
    cfg = DataConfig(
        source=str(root), image_size=16, resize="letterbox", val_fraction=0.25, test_fraction=0.25
    )
    s = load_splits(cfg, "classify", "image", seed=0)
    assert isinstance(s.x_train, ImageSet) and s.input_shape == (3, 16, 16)
    assert s.spec["image"]["resize"] == "letterbox" and s.spec["labels"] == ["class0", "class1"]
    meta = {
        "task": "classify",
        "inputs": [
            {
                "name": "input",
                "dtype": "float32",
                "shape": ["batch", 3, 16, 16],
                "preprocessing": {"type": "standardize", "per": "channel", **s.spec},
            }
        ],
    }
    rows = s.x_test[:]  # (N, 3, 16, 16) standardized, read lazily
    for k, idx in enumerate(s.x_test.indices):
        data = Path(s.x_test.source.files[idx]).read_bytes()
        runtime = processing.image_to_row(meta, processing.decode_image(data, meta))
        # one grey level apart at most, in standardized units
        assert np.abs(runtime - rows[k]).max() <= 1.01 / 255 / min(s.spec["std"])


def test_cache_written_once_and_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("TOOLKIT_CACHE_DIR", str(tmp_path / "cache"))
    root = _folder(tmp_path / "photos", per_class=3)
    cfg = DataConfig(source=str(root), image_size=12)
    first = load_splits(cfg, "classify", "image", seed=0)
    files = sorted((tmp_path / "cache" / "images").iterdir())
    assert [f.suffix for f in files] == [".json", ".u8"]  # nothing temporary left
    assert files[1].stat().st_size == 6 * 3 * 12 * 12
    stamp = files[1].stat().st_mtime_ns
    again = load_splits(cfg, "classify", "image", seed=0)
    assert files[1].stat().st_mtime_ns == stamp  # read, not rewritten
    np.testing.assert_array_equal(first.x_train[:], again.x_train[:])
    uncached = load_splits(DataConfig(source=str(root), image_size=12, cache=False), "classify", "image", 0)
    np.testing.assert_array_equal(first.x_train[:], uncached.x_train[:])
    (root / "class0" / "0.png").unlink()  # the folder changed: a new cache
    load_splits(cfg, "classify", "image", seed=0)
    assert len(list((tmp_path / "cache" / "images").glob("*.u8"))) == 2


def test_image_size_and_channels_from_the_data(tmp_path):
    root = _folder(tmp_path / "gray", shapes=[(30, 20), (20, 30), (40, 24)], mode="L")
    s = load_splits(DataConfig(source=str(root)), "classify", "image", seed=0)
    assert s.input_shape == (1, 20, 20)  # all grayscale; the median shorter side
    s = load_splits(DataConfig(source=str(root), image_size=10, channels=3), "classify", "image", seed=0)
    assert s.input_shape == (3, 10, 10)


def test_photo_augmentation_changes_pixels_and_keeps_shape(tmp_path):
    import torch

    from toolkit.recipe import AugmentConfig
    from toolkit.train.image_batches import StreamBatches

    root = _folder(tmp_path / "photos", per_class=4)
    s = load_splits(DataConfig(source=str(root), image_size=16), "classify", "image", seed=0)
    y = torch.as_tensor(s.y_train)
    plain = StreamBatches(s.x_train, y, 64, torch.device("cpu"), 0, AugmentConfig())
    aug = AugmentConfig(crop=0.5, flip=True, color_jitter=0.4)
    jittered = StreamBatches(s.x_train, y, 64, torch.device("cpu"), 2, aug)
    torch.manual_seed(0)
    ((xa, ya),) = list(plain)
    torch.manual_seed(0)
    ((xb, yb),) = list(jittered)
    assert xa.shape == xb.shape == (len(s.x_train), 3, 16, 16) and torch.equal(ya, yb)
    torch.manual_seed(0)
    perm = torch.randperm(len(s.x_train))  # the order StreamBatches drew
    np.testing.assert_allclose(xa.numpy(), s.x_train[perm.numpy()], atol=1e-5)  # standardized as ImageSet
    assert not torch.allclose(xa, xb)
    torch.manual_seed(0)
    ((xc, _),) = list(jittered)
    assert torch.equal(xb, xc)  # the same seed draws the same augmentations (workers seeded from it)


# --------------------------------------------------------------------------------------------- bad input
def test_bad_files_are_skipped_and_logged(tmp_path, caplog):
    root = _folder(tmp_path / "photos", per_class=4)
    (root / "class0" / "notes.txt").write_text("not an image")
    (root / "class0" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    buf = io.BytesIO()
    _photo(20, 20).save(buf, "PNG")
    (root / "class1" / "truncated.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    Image.new("L", (10_000, 10_000)).save(root / "class1" / "huge.png", compress_level=1)
    (root / "empty").mkdir()
    _photo(20, 20, mode="RGBA").save(root / "class0" / "rgba.png")
    _photo(20, 20, mode="L").save(root / "class0" / "gray.png")
    _photo(20, 20).convert("P").save(root / "class1" / "palette.png")
    with caplog.at_level(logging.WARNING, logger="toolkit.data"):
        s = load_splits(DataConfig(source=str(root), image_size=8), "classify", "image", seed=0)
    text = caplog.text
    assert "skipped 1 file" in text and "notes.txt" in text
    assert "broken.png" in text and "unreadable" in text
    assert "huge.png" in text and "max_pixels" in text
    assert "empty/" in text and "empty class folder" in text
    assert "truncated.png" in text and "could not be decoded" in text
    assert s.spec["labels"] == ["class0", "class1"] and s.input_shape == (3, 8, 8)
    assert len(s.x_train) + len(s.x_val) + len(s.x_test) == 8 + 3  # 4 + 4 photos, RGBA, L and P
    assert s.spec["image"]["skipped"]["could not be decoded"] == 1


def test_unusable_folders_are_one_line_errors(tmp_path):
    (tmp_path / "none" / "a").mkdir(parents=True)
    (tmp_path / "none" / "a" / "x.txt").write_text("x")
    with pytest.raises(ToolkitError, match="no images found"):
        load_splits(DataConfig(source=str(tmp_path / "none")), "classify", "image", seed=0)
    one = _folder(tmp_path / "one", per_class=3)
    for f in (one / "class1").iterdir():
        f.write_bytes(b"corrupt")
    with pytest.raises(ToolkitError, match="at least 2 classes"):
        load_splits(DataConfig(source=str(one), image_size=8), "classify", "image", seed=0)


def test_train_cli_on_a_bad_folder_warns_without_traceback(tmp_path, cli):
    root = _folder(tmp_path / "photos", per_class=4)
    (root / "class0" / "broken.png").write_bytes(b"garbage")
    out = tmp_path / "run"
    result = cli(
        "train", "cnn", "--data", str(root), "--out", str(out),
        "--set", "train.epochs=1", "--set", "data.image_size=8", "--set", "model.channels=[4]",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    data = json.loads((out / "data.json").read_text())
    assert data["image"]["skipped"] == {"unreadable or corrupt": 1}


def test_predict_on_photos_matches_training_rows(tmp_path):
    """A model trained on non-square photos (letterbox): `toolkit predict` on the files (Pillow) answers as the
    model does on the training pipeline's rows (torchvision) of the same files."""
    from toolkit.export import export_run
    from toolkit.runtime.evalset import evaluation_inputs
    from toolkit.runtime.model import OnnxModel
    from toolkit.runtime.predict import predict
    from toolkit.train import train

    root = _folder(tmp_path / "photos", per_class=8)
    sets = ["train.epochs=1", "data.image_size=24", "data.resize=letterbox", "model.channels=[4]"]
    run = train("cnn", data=str(root), overrides=sets, out=tmp_path / "run").run_dir
    export_run(run)
    model = OnnxModel(run / "model.onnx")
    assert model.meta["inputs"][0]["preprocessing"]["image"]["resize"] == "letterbox"
    inputs = evaluation_inputs(model.meta)
    expected = model.run(inputs.feeds)["probabilities"]
    s = load_splits(DataConfig(source=str(root), image_size=24, resize="letterbox"), "classify", "image", 0)
    files = [s.x_test.source.files[i] for i in s.x_test.indices]
    got = predict(run / "model.onnx", files)
    labels = model.meta["labels"]
    for row, want in zip(got.results, expected, strict=True):
        probs = np.array([row["probabilities"][lab] for lab in labels])
        np.testing.assert_allclose(probs, want, atol=2e-3)


def test_parallel_tune_on_an_image_folder(tmp_path, cli):
    """`toolkit tune --jobs 2` runs trials in daemonic worker processes: they read the folder without
    DataLoader workers of their own, from the cache the first reader built."""
    root = _folder(tmp_path / "photos", per_class=4)
    out = tmp_path / "study"
    result = cli(
        "tune", "cnn", "--data", str(root), "--trials", "2", "--jobs", "2", "--out", str(out), "--no-progress",
        "--set", "train.epochs=1", "--set", "data.image_size=8", "--set", "model.channels=[4]",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
