"""Attributions over a text's tokens: leave-one-out (the token removed) or occlusion (replaced by <unk>).

Every variant of the text goes through the model in one batch: the text itself, then one copy per token. A
token's attribution is the score of the whole text minus the score without it. Texts are cut to the
tokenizer's max_length first, as the model sees them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._core import Tokenizer, preprocessing


def split(meta: dict, text: str) -> list[str]:
    """The tokens the model sees (after lower-casing), at most max_length of them."""
    tok = Tokenizer(preprocessing(meta)["tokenizer"])
    return tok.split(text)[: tok.max_length]


def variants(meta: dict, tokens: list[str], method: str, raw_text: bool) -> list:
    """The text and its variants, as the model's rows: token-id lists, or strings for a raw-text model
    (re-joined with spaces, exact for the space-level tokenizers such models have)."""
    doc = preprocessing(meta)["tokenizer"]
    unk = doc["vocab"][int(doc.get("unk_id", 1))]
    texts = [tokens]
    for i in range(len(tokens)):
        texts.append(
            tokens[:i] + tokens[i + 1 :] if method == "loo" else [*tokens[:i], unk, *tokens[i + 1 :]]
        )
    if raw_text:
        return [" ".join(t) for t in texts]
    index = Tokenizer(doc).index
    unk_id = int(doc.get("unk_id", 1))
    return [[index.get(t, unk_id) for t in text] or [0] for text in texts]


def token_attributions(score: Callable[[list], np.ndarray], rows: list) -> tuple[np.ndarray, float]:
    """(n,) attributions (the full text's score minus each variant's) and the full text's score."""
    scores = score(rows)
    return scores[0] - scores[1:], float(scores[0])
