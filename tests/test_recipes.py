"""Every shipped recipe loads; bad keys and values are rejected naming what is allowed; --set overrides."""

from __future__ import annotations

import pytest
import yaml

from toolkit.errors import ToolkitError
from toolkit.recipe import (
    ALIASES,
    MODEL_CONFIGS,
    SHIPPED_RECIPES,
    load_recipe,
    recipe_dir,
    recipe_from_dict,
    recipe_names,
)

SHIPPED = sorted(recipe_dir().glob("*.yaml"))


def test_recipes_are_shipped():
    assert {"cnn-image", "mlp-tabular"} <= set(recipe_names())


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_recipe_loads_and_round_trips(path):
    recipe = load_recipe(path)
    assert recipe.name == path.stem, "a recipe's name matches its file name"
    assert f"{recipe.arch}-" in path.stem
    assert isinstance(recipe.model, MODEL_CONFIGS[recipe.arch])
    again = recipe_from_dict(yaml.safe_load(recipe.to_yaml()))
    assert again == recipe


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_search_section_is_a_valid_space(path):
    """The recipe keeps `search:` raw; toolkit.tune.space checks it (as `toolkit tune` and `train` do)."""
    from toolkit.tune.space import parse_space

    recipe = load_recipe(path)
    params = parse_space(recipe.to_dict(), recipe.search)
    assert [p.key for p in params] == list(recipe.search)


def test_search_section_is_kept_raw_but_must_be_a_mapping():
    raw = {"name": "mine", "arch": "mlp", "task": "classify", "search": {"model.widths": [[8]]}}
    assert recipe_from_dict(raw).search == {"model.widths": [[8]]}  # unknown key: tune's to reject
    with pytest.raises(ToolkitError, match="search must be a mapping"):
        recipe_from_dict({**raw, "search": ["train.lr"]})


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_key_is_commented(path):
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            assert " #" in line, f"uncommented key in {path.name}: {line}"


def test_alias_picks_default_recipe():
    for arch, name in ALIASES.items():
        assert load_recipe(arch).name == name


def test_set_overrides_nested_keys_and_coerces_types():
    r = load_recipe(
        "cnn", ["train.lr=3e-4", "model.channels=[8, 16]", "data.augment.rotate=0", "train.epochs=3"]
    )
    assert r.train.lr == pytest.approx(3e-4)  # YAML reads 3e-4 as a string; it is coerced to float
    assert r.model.channels == [8, 16]
    assert r.data.augment.rotate == 0.0
    assert r.train.epochs == 3


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("train.lrr=1", "train has epochs"),
        ("nope=1", "the recipe has"),
        ("train.optimizer=lion", "sgd, adam, adamw, rmsprop"),
        ("train.epochs=-1", "positive"),
        ("train.epochs=2.5", "integer"),
        ("train.lr=abc", "number"),
        ("model.hidden=64", "list"),
        ("model.nope=1", "model has"),
        ("train.loss=mse", "cross_entropy"),
        ("data.val_fraction=0.9", "between"),
        ("train.amp=maybe", "true or false"),
        ("lr", "KEY=VALUE"),
    ],
)
def test_bad_overrides_are_rejected_with_allowed_values(override, fragment):
    recipe = "mlp" if override.startswith("model.hidden") else "cnn"
    with pytest.raises(ToolkitError) as err:
        load_recipe(recipe, [override])
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_key_in_yaml_file(tmp_path):
    raw = yaml.safe_load(load_recipe("mlp").to_yaml())
    raw["train"]["warmup"] = 3
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ToolkitError, match="unknown key 'train.warmup'"):
        load_recipe(path)


def test_task_must_suit_arch():
    raw = yaml.safe_load(load_recipe("cnn").to_yaml())
    raw["task"] = "generate"
    with pytest.raises(ToolkitError, match="task for arch cnn must be one of classify, regress"):
        recipe_from_dict(raw)


def test_unknown_recipe_lists_allowed():
    with pytest.raises(ToolkitError, match="allowed: .*cnn-image"):
        load_recipe("resnet9000")


def test_transformer_positions_cover_the_longest_input():
    with pytest.raises(
        ToolkitError, match=r"model.max_length \(32\) must be >= data.tokenizer.max_length \(64\)"
    ):
        load_recipe("transformer", ["model.max_length=32"])
    with pytest.raises(ToolkitError, match=r"data.window \(40\)"):
        load_recipe("transformer-forecast", ["model.max_length=30", "data.window=40"])


def test_shipped_recipes_list_every_recipe_once():
    """bench/pipeline.py and scripts/gpu_check.py iterate SHIPPED_RECIPES: it must name each recipe file."""
    assert sorted(SHIPPED_RECIPES) == recipe_names()
