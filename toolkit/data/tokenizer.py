"""A small, torch-free tokenizer: vocabulary from the train split, word or character level.

It is saved as a JSON document (`to_dict`) in the run and later inside the ONNX file, so any runtime,
including non-Python ones, can reproduce the exact token ids: the rules are lower-casing (optional), then
`word` (a regular expression: `\\w+` runs and single punctuation characters), `space` (runs of spaces separate
tokens, exactly what ONNX StringSplit does, so toolkit export can also write a raw-string model) or `char`
(single characters); id 0 for padding, id 1 for out-of-vocabulary tokens, truncation to `max_length`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

PAD, UNK = "<pad>", "<unk>"
WORD_PATTERN = r"\w+|[^\w\s]"
_WORD_RE = re.compile(WORD_PATTERN)


@dataclass
class Tokenizer:
    vocab: list[str]  # id -> token; vocab[0] is <pad>, vocab[1] is <unk>
    level: str = "word"
    lowercase: bool = True
    max_length: int = 128

    def __post_init__(self) -> None:
        self.index = {tok: i for i, tok in enumerate(self.vocab)}

    @property
    def pad_id(self) -> int:
        return 0

    @property
    def unk_id(self) -> int:
        return 1

    def split(self, text: str) -> list[str]:
        if self.lowercase:
            text = text.lower()
        if self.level == "char":
            return [c for c in text if not c.isspace() or c == " "]
        if self.level == "space":  # exactly ONNX StringSplit without a delimiter: runs of " " separate tokens
            return [t for t in text.split(" ") if t]
        return _WORD_RE.findall(text)

    def encode(self, text: str) -> list[int]:
        """Token ids of one text, truncated to max_length (empty for a text without tokens: the models
        treat an all-padding row as an empty text)."""
        return [self.index.get(tok, 1) for tok in self.split(text)][: self.max_length]

    def encode_batch(self, texts: Sequence[str], length: int | None = None) -> np.ndarray:
        """(N, L) int64 ids, right-padded with 0 to the longest text (or to `length`)."""
        rows = [self.encode(t) for t in texts]
        width = length or max(max((len(r) for r in rows), default=1), 1)
        out = np.zeros((len(rows), width), dtype=np.int64)
        for i, r in enumerate(rows):
            out[i, : min(len(r), width)] = r[:width]
        return out

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.vocab[i] if 0 <= i < len(self.vocab) else UNK for i in ids if i != 0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "toolkit.tokenizer",
            "level": self.level,
            "lowercase": self.lowercase,
            "pattern": WORD_PATTERN if self.level == "word" else (" " if self.level == "space" else None),
            "max_length": self.max_length,
            "pad_id": 0,
            "unk_id": 1,
            "vocab": list(self.vocab),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Tokenizer:
        return cls(list(d["vocab"]), d["level"], d["lowercase"], d["max_length"])

    @classmethod
    def fit(
        cls,
        texts: Iterable[str],
        level: str = "word",
        lowercase: bool = True,
        max_vocab: int = 20000,
        min_freq: int = 1,
        max_length: int = 128,
    ) -> Tokenizer:
        """Build the vocabulary from (train-split) texts: most frequent first, ties alphabetical."""
        probe = cls([PAD, UNK], level, lowercase, max_length)
        counts = Counter(tok for t in texts for tok in probe.split(t))
        ranked = sorted((tok for tok, c in counts.items() if c >= min_freq), key=lambda t: (-counts[t], t))
        return cls([PAD, UNK, *ranked[:max_vocab]], level, lowercase, max_length)
