"""Tables from CSV files: read with pyarrow, categorical and missing-value encoding fitted on the train split.

A column is categorical when its values are not all numbers, or when data.categorical names it. The encoding
(which levels, one-hot or embedding, which numeric columns get an is-missing indicator, which columns are
dropped) is fitted on the train split and recorded in the spec's "columns"; the rows themselves are encoded by
toolkit.runtime.processing.encode_table, the same function predict, the server and the edge runner apply to
raw rows, so training and every runtime encode alike.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.errors import ToolkitError, one_line
from toolkit.runtime import processing

log = logging.getLogger("toolkit.data")

# Cells read as a missing value, in the spellings CSV writers use (processing.MISSING, any case).
NULLS = sorted({v for m in processing.MISSING for v in (m, m.upper(), m.capitalize())} | {"N/A", "n/a"})


@dataclass
class Table:
    """Columns by name, in file order: numeric ones as float64 (NaN: missing), the others as (dictionary,
    indices) with index -1 for a missing value."""

    names: list[str]
    columns: dict[str, Any]
    rows: int
    categorical: list[str] = field(default_factory=list)
    target: str = ""

    def numeric_matrix(self) -> np.ndarray:
        """(N, F) float32 of every column; only for a table without categorical columns."""
        if not self.names:
            return np.zeros((self.rows, 0), dtype=np.float32)
        return np.stack([self.columns[n] for n in self.names], axis=1).astype(np.float32)

    def has_missing(self) -> bool:
        return any(np.isnan(self.columns[n]).any() for n in self.names if n not in self.categorical)


def read_table(path: Path, target: str | None, categorical: list[str] | None) -> tuple[Table, np.ndarray]:
    """The CSV's feature columns (a Table) and its target column (strings), or a one-line ToolkitError."""
    try:
        import pyarrow as pa
        from pyarrow import csv
    except ImportError:
        raise ToolkitError("reading CSV tables needs pyarrow: pip install 'toolkit[train]'") from None
    convert = csv.ConvertOptions(null_values=NULLS, strings_can_be_null=True)
    try:
        table = csv.read_csv(path, convert_options=convert)
        header = [n.strip() for n in table.column_names]
    except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeDecodeError) as exc:
        raise ToolkitError(f"{path}: not a readable UTF-8 CSV file ({one_line(exc)})") from None
    binary = [n for n, t in zip(header, table.schema.types) if pa.types.is_binary(t)]
    if binary:
        raise ToolkitError(f"{path}: column {binary[0]!r} is not UTF-8 text; save the CSV as UTF-8")
    table = table.rename_columns(header)
    if table.num_rows < 1:
        raise ToolkitError(f"{path}: needs a header row and at least one data row")
    dupes = sorted({n for n in header if header.count(n) > 1})
    if dupes:
        raise ToolkitError(f"{path}: column names repeat: {', '.join(dupes)}")
    target = target or header[-1]
    if target not in header:
        raise ToolkitError(f"{path}: no target column {target!r}; columns: {', '.join(header)}")
    features = [n for n in header if n != target]
    if not features:
        raise ToolkitError(f"{path}: needs at least one feature column besides the target {target!r}")
    unknown = [c for c in categorical or [] if c not in features]
    if unknown:
        raise ToolkitError(
            f"data.categorical names {', '.join(map(repr, unknown))}, not a feature column of {path}; "
            f"columns: {', '.join(features)}"
        )
    y = _strings(table.column(target))
    if None in y:
        raise ToolkitError(
            f"{path}: target column {target!r} has missing values (line {y.index(None) + 2}); "
            "drop those rows or fill them in"
        )
    out = Table(features, {}, table.num_rows, target=target)
    for name in features:
        out.columns[name], is_category = _column(table.column(name), name in (categorical or []))
        if is_category:
            out.categorical.append(name)
    return out, np.array(y, dtype=object)


def _strings(col: Any) -> list[str | None]:
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.utf8_trim_whitespace(col.cast(pa.string())).to_pylist()


def _column(col: Any, declared: bool) -> tuple[Any, bool]:
    """One Arrow column -> (float64 array, False) for numbers, ((dictionary, indices), True) otherwise."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not declared:
        if pa.types.is_integer(col.type) or pa.types.is_floating(col.type):
            return col.cast(pa.float64()).to_numpy(), False
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            try:  # numbers with spaces around them are still numbers
                return pc.utf8_trim_whitespace(col).cast(pa.float64()).to_numpy(), False
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                pass
    text = pc.utf8_trim_whitespace(col.cast(pa.string()))
    if pa.types.is_floating(col.type):  # a declared numeric category: 41.0 -> "41" as processing.level_text
        text = pa.chunked_array([[processing.level_text(v) for v in col.to_pylist()]], pa.string())
    encoded = text.combine_chunks().dictionary_encode()
    dictionary = encoded.dictionary.to_pylist()
    indices = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    return (dictionary, indices), True


def needs_encoding(table: Table | None) -> bool:
    """Whether a table needs the column encoding (categories or missing values), else plain numeric rows."""
    return table is not None and (bool(table.categorical) or table.has_missing())


def fit_columns(table: Table, train: np.ndarray, cfg: Any, source: str) -> dict[str, Any]:
    """The encoding fitted on the train rows: the spec's "columns", "feature_names" (encoded), "mean" and
    "std" (per encoded feature), "ignored" (dropped columns) and "notes" (what was decided and logged)."""
    columns, dropped, notes = [], [], []
    for name in table.names:
        values = table.columns[name]
        is_category = name in table.categorical
        missing = _missing_share(values, train, is_category)
        if missing > cfg.max_missing:
            dropped.append(name)
            notes.append(
                f"dropped column {name!r}: {missing:.0%} of its train values are missing "
                f"(more than data.max_missing {cfg.max_missing:g})"
            )
            continue
        if is_category:
            col, note = _fit_category(name, values, train, cfg)
            if note:
                notes.append(note)
            columns.append(col)
        else:
            columns.append({"name": name, "kind": "numeric", "indicator": bool(missing > 0)})
    if not columns:
        raise ToolkitError(
            f"{source}: no feature column is left (all are mostly missing: {', '.join(dropped)})"
        )
    for note in notes:
        log.warning("%s: %s", source, note)
    ignored = [*dropped, table.target]  # keys a raw row may carry without being refused
    spec: dict[str, Any] = {"kind": "tabular", "columns": columns, "ignored": ignored, "notes": notes}
    spec["feature_names"] = encoded_names(columns)
    width = len(spec["feature_names"])
    spec["mean"], spec["std"] = [0.0] * width, [1.0] * width  # one-hot, indicators, codes: unchanged
    for col, pos in zip(columns, processing.column_positions(columns)):
        if col["kind"] == "numeric":
            v = table.columns[col["name"]][train]
            v = v[~np.isnan(v)]
            spec["mean"][pos] = float(v.mean()) if len(v) else 0.0
            std = float(v.std()) if len(v) else 1.0
            spec["std"][pos] = std if std > 1e-8 else 1.0  # a constant column passes through centred
    spec["missing"] = "train_mean"
    return spec


def _missing_share(values: Any, train: np.ndarray, is_category: bool) -> float:
    if len(train) == 0:
        return 0.0
    if is_category:
        return float((values[1][train] < 0).mean())
    return float(np.isnan(values[train]).mean())


def _fit_category(name: str, values: Any, train: np.ndarray, cfg: Any) -> tuple[dict[str, Any], str | None]:
    """Levels seen in training, most frequent first, at most data.max_levels; one-hot or embedding."""
    dictionary, indices = values
    idx = indices[train]
    counts = np.bincount(idx[idx >= 0], minlength=len(dictionary))
    order = sorted(
        (i for i in range(len(dictionary)) if counts[i] > 0), key=lambda i: (-counts[i], dictionary[i])
    )
    note = None
    if len(order) > cfg.max_levels:
        kept = int(counts[order[: cfg.max_levels]].sum())
        note = (
            f"column {name!r} has {len(order)} levels; kept the {cfg.max_levels} most frequent "
            f"(data.max_levels, {kept / max(counts.sum(), 1):.1%} of its train values), the rest map to 'other'"
        )
        if len(order) > len(idx) // 2:  # a new value on most rows: an identifier, not a category
            note += "; it looks like an identifier (a new value on most rows): consider leaving it out"
        order = order[: cfg.max_levels]
    levels = [dictionary[i] for i in order]
    encoding = "onehot" if len(levels) + 2 <= cfg.onehot_max_levels else "embedding"
    return {"name": name, "kind": "category", "levels": levels, "encoding": encoding}, note


def encoded_names(columns: list[dict]) -> list[str]:
    """One name per encoded feature, in processing.encode_table's layout (embedding codes last)."""
    dense, codes = [], []
    for col in columns:
        name = col["name"]
        if col["kind"] == "numeric":
            dense += [name, f"{name}=missing"] if col.get("indicator") else [name]
        elif col["encoding"] == "embedding":
            codes.append(f"{name}#code")
        else:
            dense += [f"{name}={v}" for v in col["levels"]] + [f"{name}=<other>", f"{name}=<missing>"]
    return dense + codes


def _rows(table: Table, rows: np.ndarray | None) -> dict[str, Any]:
    """The table's columns limited to `rows` (all when None), in encode_table's input form."""
    out = {}
    for name in table.names:
        v = table.columns[name]
        if isinstance(v, tuple):
            out[name] = v if rows is None else (v[0], v[1][rows])
        else:
            out[name] = v if rows is None else v[rows]
    return out


def encode(spec: dict[str, Any], table: Table, source: str) -> np.ndarray:
    """Every row of the table encoded with a fitted (or recorded) spec: (N, F) float32."""
    absent = [c["name"] for c in spec["columns"] if c["name"] not in table.columns]
    if absent:
        raise ToolkitError(f"{source}: no column {', '.join(map(repr, absent))}; the model was trained on it")
    try:
        return processing.encode_table({"inputs": [{"preprocessing": spec}]}, _rows(table, None), source)
    except processing.InputError as exc:
        raise ToolkitError(str(exc)) from None
