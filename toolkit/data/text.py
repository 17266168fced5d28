"""Text classification data: the built-in language-identification set and CSV files with a text column."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from toolkit.data.sources import RawData, builtin_or_csv
from toolkit.errors import ToolkitError

LANGID_LANGUAGES = ("de", "en", "es", "fr", "it", "nl", "pt", "sv")
LANGID_PER_LANGUAGE = 1500
LANGID_TOP_WORDS = 2000


def langid() -> RawData:
    """Language identification from real words: for each of 8 languages, 600 phrases of 3-8 words drawn
    (fixed seed) from that language's 2000 most frequent words in the `wordfreq` package, each word with its
    measured frequency in real text (Wikipedia, subtitles, news, books, web, social media). Phrases are bags of
    real words in realistic proportions, not grammatical sentences; many short words are shared between
    languages ("de", "a", "in", "en", ...)."""
    try:
        from wordfreq import top_n_list
    except ImportError:
        raise ToolkitError(
            "builtin:langid needs the wordfreq package: pip install 'toolkit[train]'"
        ) from None
    from wordfreq import word_frequency

    rng = np.random.default_rng(20241127)
    texts, labels = [], []
    for lang in LANGID_LANGUAGES:
        words = [w for w in top_n_list(lang, LANGID_TOP_WORDS) if w.isalpha()]
        freq = np.array([word_frequency(w, lang) for w in words])
        p = freq / freq.sum()  # words appear as often as they do in real text of that language
        for _ in range(LANGID_PER_LANGUAGE):
            n = int(rng.integers(3, 9))
            texts.append(" ".join(words[i] for i in rng.choice(len(words), size=n, p=p)))
            labels.append(lang)
    return RawData(np.array(texts, dtype=object), np.array(labels, dtype=object), "text", "builtin:langid")


BUILTIN_TEXT = {
    "langid": (langid, "wordfreq: 4800 phrases of real words in 8 languages, language identification"),
}


def read_text_csv(path: Path, text_column: str, target: str | None) -> RawData:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = [r for r in csv.reader(f) if any(c.strip() for c in r)]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ToolkitError(f"{path}: not a readable UTF-8 CSV file ({exc.__class__.__name__})") from None
    if len(rows) < 2:
        raise ToolkitError(f"{path}: needs a header row and data rows")
    header = [h.strip() for h in rows[0]]
    if text_column not in header:
        raise ToolkitError(
            f"{path}: no text column {text_column!r} (set --text-column); columns: {', '.join(header)}"
        )
    target = target or next((h for h in reversed(header) if h != text_column), None)
    if target is None or target not in header or target == text_column:
        raise ToolkitError(f"{path}: no label column {target!r} (set --target); columns: {', '.join(header)}")
    ti, li = header.index(text_column), header.index(target)
    texts, labels = [], []
    for line, r in enumerate(rows[1:], start=2):
        text = r[ti].strip() if ti < len(r) else ""
        label = r[li].strip() if li < len(r) else ""
        if not text:
            raise ToolkitError(f"{path}: empty text in column {text_column!r} on line {line}")
        if not label:
            raise ToolkitError(f"{path}: empty label in column {target!r} on line {line}")
        texts.append(text)
        labels.append(label)
    return RawData(np.array(texts, dtype=object), np.array(labels, dtype=object), "text", str(path))


def load_text(source: str, text_column: str, target: str | None) -> RawData:
    data, path = builtin_or_csv(source, BUILTIN_TEXT, "text data")
    return data if data is not None else read_text_csv(path, text_column, target)
