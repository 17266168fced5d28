"""Trained runs the whole test session shares: one tiny model per recipe, trained and exported once.

`exported(tmp_path_factory, name)` -> RUN_DIR (best.pt, model.onnx and its parts) of RUNS[name]. The runs
live under the session's base temporary folder, so every test module that asks for one gets the same files
(test_predict, test_edge, test_explain, test_gan, test_validate, ...); tests treat them as read-only and copy
a run, or its model, before writing beside it. `default_run(tmp_path_factory, recipe)` is the same for a
recipe trained with its defaults (the slow acceptance tests share those).
"""

from __future__ import annotations

from pathlib import Path

from helpers import mixed_table_csv, two_class_text_csv

# A one-epoch CNN on digits: the image classifier and the judge of the GAN below.
DIGITS = ["train.epochs=1", "model.channels=[4]", "model.hidden=8", "train.batch_size=256"]
# The tiny GAN (test_gan trains it again with these overrides and expects the same run).
GAN = [
    "model.width=4",
    "model.latent=4",
    "model.samples_per_class=4",
    "train.epochs=2",
    "train.batch_size=256",
]

# name -> (recipe, data, overrides). Seconds of training each: the models only need to be real, not good.
RUNS = {
    "iris": ("mlp-tabular", "builtin:iris", ["model.hidden=[8]", "train.epochs=8", "train.lr=0.05"]),
    "digits": ("cnn-image", "builtin:digits", DIGITS),
    "regress": ("mlp-regress", "builtin:diabetes", ["model.hidden=[8]", "train.epochs=2"]),
    "forecast": ("rnn-forecast", None, ["model.hidden=8", "train.epochs=1", "train.patience=0"]),
    "anomaly": (
        "autoencoder-anomaly",
        None,
        ["train.epochs=1", "model.latent=2", "model.channels=[4]", "train.batch_size=256"],
    ),
    "text": ("lstm-text", "TEXT_CSV", ["model.hidden=8", "model.embed_dim=8", "train.epochs=2"]),
    "gan": ("gan-image", None, GAN),  # judged by "digits"
    # categorical columns (job one-hot, city embedded) and missing values (tests/test_tables.py)
    "table": (
        "mlp-tabular",
        "TABLE_CSV",
        ["model.hidden=[16]", "train.epochs=6", "data.onehot_max_levels=8"],
    ),
}


def root(tmp_path_factory) -> Path:
    folder = tmp_path_factory.getbasetemp() / "shared-runs"
    folder.mkdir(exist_ok=True)
    return folder


def exported(tmp_path_factory, name: str) -> Path:
    """The run directory of RUNS[name], trained and exported once per test session."""
    from toolkit.export import export_run
    from toolkit.train import train

    run = root(tmp_path_factory) / name
    if (run / "model.onnx").is_file():
        return run
    recipe, data, overrides = RUNS[name]
    if data == "TEXT_CSV":
        data = str(two_class_text_csv(root(tmp_path_factory) / "text.csv"))
    if data == "TABLE_CSV":
        data = str(mixed_table_csv(root(tmp_path_factory) / "table.csv"))
    if name == "gan":
        overrides = [*overrides, f"model.judge={exported(tmp_path_factory, 'digits')}"]
    train(recipe, data=data, overrides=overrides, out=run)
    export_run(run)
    return run


def default_run(tmp_path_factory, recipe: str, overrides: tuple[str, ...] = ()) -> Path:
    """A recipe trained with its defaults (and `overrides`), once per session: the slow acceptance tests
    share these (the default CNN is also the default GAN's judge)."""
    from toolkit.train import train

    run = root(tmp_path_factory) / ("default-" + "-".join([recipe, *overrides]).replace("/", "_"))
    if not (run / "metrics.json").is_file():
        train(recipe, overrides=list(overrides), out=run)
    return run
