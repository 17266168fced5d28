"""model.text.onnx: raw strings in, tokenized inside the graph, same outputs as the token-id model."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from helpers import two_class_text_csv

from toolkit.data.tokenizer import Tokenizer
from toolkit.export import export_run
from toolkit.train import train

TINY = {
    "lstm-text": ["model.hidden=8", "model.embed_dim=8"],
    "transformer": ["model.d_model=8", "model.ff_dim=8", "model.heads=2", "model.layers=1"],
}


@pytest.fixture(scope="module")
def texts_csv(tmp_path_factory):
    return two_class_text_csv(tmp_path_factory.mktemp("text") / "t.csv")


@pytest.mark.parametrize("recipe", ["lstm-text", "transformer"])
def test_string_model_equals_token_model(tmp_path, texts_csv, recipe):
    run = tmp_path / "run"
    train(
        recipe,
        data=str(texts_csv),
        out=run,
        overrides=TINY[recipe] + ["train.epochs=2", "data.tokenizer.max_length=6"],
    )
    res = export_run(run)
    text = [p for p in res.parts if p.path.name == "model.text.onnx"]
    assert text, [p.path.name for p in res.parts]
    meta = text[0].metadata
    assert (
        meta["role"] == "text"
        and meta["inputs"][0]["name"] == "text"
        and meta["inputs"][0]["dtype"] == "string"
    )
    assert json.loads((run / "model.text.json").read_text()) == meta
    model = onnx.load(run / "model.text.onnx")
    assert {n.domain or "ai.onnx" for n in model.graph.node} <= {"ai.onnx", "ai.onnx.ml"}
    tok = Tokenizer.from_dict(meta["inputs"][0]["preprocessing"]["tokenizer"])
    texts = ["", "SUN  hot", "cold ice snow frost sun dry sand hot ice", "unknown words only", "  snow "]
    by_text = ort.InferenceSession(run / "model.text.onnx").run(None, {"text": np.array(texts, dtype=object)})
    by_ids = ort.InferenceSession(run / "model.onnx").run(None, {"tokens": tok.encode_batch(texts)})
    for a, b in zip(by_text, by_ids):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-4)
    assert meta["parity"]["text_model"]["max_abs"]["probabilities"] <= 1e-5


def test_word_level_tokenizer_exports_no_string_model(tmp_path, texts_csv):
    run = tmp_path / "run"
    train(
        "lstm-text",
        data=str(texts_csv),
        out=run,
        overrides=TINY["lstm-text"] + ["train.epochs=1", "data.tokenizer.level=word"],
    )
    res = export_run(run)
    assert not (run / "model.text.onnx").exists() and not res.parts


def test_space_tokenizer_matches_string_split_rules():
    tok = Tokenizer.fit(["a b"], level="space")
    assert tok.split("A  b\tc ") == ["a", "b\tc"]  # only spaces separate tokens, as in ONNX StringSplit
