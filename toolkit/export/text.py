"""The raw-string text model (model.text.onnx): tokenization inside the graph with standard ONNX ops.

For tokenizers of level `space`, the rules are exactly expressible in ONNX: StringNormalizer lower-cases
(locale C.UTF-8, which exists on most machines, unlike the default en_US), StringSplit without a delimiter
splits on runs of spaces, ai.onnx.ml LabelEncoder maps tokens to ids (unknown -> 1, the padding "" -> 0),
Slice truncates to max_length and Pad adds one padding column (so a batch of empty texts still has one
position). The result feeds the token-id model, converted to opset 20 for StringSplit. Needs onnx and
onnxruntime, not torch.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from toolkit.data.tokenizer import Tokenizer
from toolkit.errors import ToolkitError

TEXT_OPSET = 20  # StringSplit
ML_OPSET = 4  # LabelEncoder with keys_strings / values_int64s
LOCALE = "C.UTF-8"


def supports_text_model(tokenizer: dict[str, Any]) -> bool:
    return tokenizer.get("level") == "space"


def build_text_model(token_model: Any, tokenizer: dict[str, Any], token_input: str = "tokens") -> Any:
    """A model with input `text` (string [batch]) and the token model's outputs."""
    import onnx
    from onnx import TensorProto, compose, helper, numpy_helper, version_converter

    vocab = list(tokenizer["vocab"])
    nodes, current = [], "text"
    if tokenizer.get("lowercase", True):
        nodes.append(
            helper.make_node(
                "StringNormalizer", ["text"], ["text_lower"], case_change_action="LOWER", locale=LOCALE
            )
        )
        current = "text_lower"
    nodes += [
        helper.make_node("StringSplit", [current], ["pieces", "piece_counts"]),
        helper.make_node(
            "LabelEncoder",
            ["pieces"],
            ["ids_all"],
            domain="ai.onnx.ml",
            keys_strings=["", *vocab],
            values_int64s=[0, *range(len(vocab))],
            default_int64=1,
        ),
        helper.make_node("Slice", ["ids_all", "slice_starts", "slice_ends", "slice_axes"], ["ids_cut"]),
        helper.make_node("Pad", ["ids_cut", "pad_amounts"], [f"{token_input}_ids"], mode="constant"),
    ]
    consts = [
        numpy_helper.from_array(np.array([0], dtype=np.int64), "slice_starts"),
        numpy_helper.from_array(np.array([int(tokenizer["max_length"])], dtype=np.int64), "slice_ends"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "slice_axes"),
        numpy_helper.from_array(np.array([0, 0, 0, 1], dtype=np.int64), "pad_amounts"),
    ]
    prefix = helper.make_model(
        helper.make_graph(
            nodes,
            "tokenize",
            [helper.make_tensor_value_info("text", TensorProto.STRING, ["batch"])],
            [helper.make_tensor_value_info(f"{token_input}_ids", TensorProto.INT64, ["batch", "sequence"])],
            initializer=consts,
        ),
        opset_imports=[helper.make_opsetid("", TEXT_OPSET), helper.make_opsetid("ai.onnx.ml", ML_OPSET)],
    )
    body = version_converter.convert_version(token_model, TEXT_OPSET)
    del body.metadata_props[:]
    prefix.ir_version = body.ir_version
    if not any(o.domain == "ai.onnx.ml" for o in body.opset_import):
        body.opset_import.append(helper.make_opsetid("ai.onnx.ml", ML_OPSET))
    merged = compose.merge_models(prefix, body, io_map=[(f"{token_input}_ids", token_input)])
    onnx.checker.check_model(merged, full_check=True)
    return merged


def sample_texts(tokenizer: dict[str, Any], rng: np.random.Generator, count: int) -> list[str]:
    """Texts that exercise the rules: known and unknown words, upper case, repeated spaces, an empty text,
    and texts longer than max_length."""
    vocab = [w for w in tokenizer["vocab"][2:] if " " not in w] or ["x"]
    texts = ["", "   ", "UNSEEN-word qq", " ".join(vocab[:3]).upper()]
    for i in range(count - len(texts)):
        n = int(rng.integers(1, tokenizer["max_length"] + 8 if i % 5 == 0 else 12))
        words = [str(rng.choice(vocab)) if rng.random() > 0.1 else "zzqx" for _ in range(n)]
        texts.append((" " * int(rng.integers(1, 3))).join(words))
    return texts


def check_text_parity(
    text_model: Any, token_model: Any, tokenizer: dict[str, Any], atol: float = 1e-5, rtol: float = 1e-4
) -> dict[str, Any]:
    """The string model must give the token model's outputs on the Python tokenizer's ids."""
    import onnxruntime as ort

    tok = Tokenizer.from_dict(tokenizer)
    rng = np.random.default_rng(7)
    text_sess = ort.InferenceSession(text_model.SerializeToString(), providers=["CPUExecutionProvider"])
    token_sess = ort.InferenceSession(token_model.SerializeToString(), providers=["CPUExecutionProvider"])
    token_input = token_sess.get_inputs()[0].name
    worst: dict[str, float] = {}
    for batch in (1, 3, 17):
        texts = (
            sample_texts(tokenizer, rng, max(batch, 4))[:batch]
            if batch < 4
            else sample_texts(tokenizer, rng, batch)
        )
        got = text_sess.run(None, {"text": np.array(texts, dtype=object)})
        want = token_sess.run(None, {token_input: tok.encode_batch(texts)})
        for out, g, w in zip(token_sess.get_outputs(), got, want):
            err = float(np.max(np.abs(g - w))) if g.size else 0.0
            if not np.allclose(g, w, atol=atol, rtol=rtol):
                raise ToolkitError(
                    f"model.text.onnx differs from the token model on {out.name!r} by {err:.3g} "
                    f"(batch {batch}); the in-graph tokenizer does not match the Python one"
                )
            worst[out.name] = max(worst.get(out.name, 0.0), err)
    return {"compared_with": "token model on Python-tokenized ids", "batches": [1, 3, 17], "max_abs": worst}


def text_document(doc: dict[str, Any], parity: dict[str, Any]) -> dict[str, Any]:
    """The metadata of the string model: the token model's, with a string input and its own parity."""
    out = json.loads(json.dumps(doc))
    tokens = out["inputs"][0]
    out["role"] = "text"
    out["inputs"] = [
        {
            "name": "text",
            "dtype": "string",
            "shape": ["batch"],
            "layout": "N",
            "meaning": "raw texts, tokenized inside the graph (StringNormalizer, StringSplit, LabelEncoder)",
            "preprocessing": tokens.get("preprocessing", {}),
        }
    ]
    out["parity"] = {**out.get("parity", {}), "text_model": parity}
    out["provenance"] = {**out.get("provenance", {}), "opset": TEXT_OPSET}
    return out
