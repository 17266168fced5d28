"""Time series for forecasting: readers, sliding windows, chronological split, baselines.

A window of `window` past values predicts the next `horizon` values. The split is chronological on the
*targets*: train windows predict only values in the first part of the series, validation windows only the
middle part, test windows only the end; a window whose targets straddle a boundary is dropped, so nothing
from the future leaks into training. Scaling is fitted on the train part only.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.errors import ToolkitError


@dataclass
class Series:
    values: np.ndarray  # (n,) float64
    times: list[str]  # (n,) labels for plots: years, dates or row numbers
    name: str
    source: str


def _sunspots() -> Series:
    from statsmodels.datasets import sunspots

    df = sunspots.load_pandas().data
    return Series(
        df["SUNACTIVITY"].to_numpy(np.float64),
        [str(int(y)) for y in df["YEAR"]],
        "sunactivity",
        "builtin:sunspots",
    )


def _co2() -> Series:
    from statsmodels.datasets import co2

    weekly = co2.load_pandas().data["co2"]
    monthly = weekly.resample("MS").mean().interpolate()  # a few weeks are missing; months are complete
    return Series(
        monthly.to_numpy(np.float64), [d.strftime("%Y-%m") for d in monthly.index], "co2", "builtin:co2"
    )


BUILTIN_SERIES: dict[str, tuple[Callable[[], Series], str]] = {
    "sunspots": (_sunspots, "statsmodels: yearly sunspot activity 1700-2008 (309 values)"),
    "co2": (_co2, "statsmodels: Mauna Loa CO2 ppm, weekly 1958-2001 averaged to 526 monthly values"),
}


def read_series_csv(path: Path, target: str | None, time_column: str | None) -> Series:
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = [r for r in csv.reader(f) if any(c.strip() for c in r)]
    if len(rows) < 2:
        raise ToolkitError(f"{path}: needs a header row and data rows")
    header = [h.strip() for h in rows[0]]
    target = target or header[-1]
    for col, what in ((target, "series (--target)"), (time_column, "time (data.time_column)")):
        if col is not None and col not in header:
            raise ToolkitError(f"{path}: no {what} column {col!r}; columns: {', '.join(header)}")
    t = header.index(target)
    values = np.empty(len(rows) - 1)
    for i, r in enumerate(rows[1:]):
        cell = r[t].strip() if t < len(r) else ""
        try:
            values[i] = float(cell)
        except ValueError:
            raise ToolkitError(
                f"{path}: series column {target!r} must be numeric (value {cell!r} on line {i + 2})"
            ) from None
        if not math.isfinite(values[i]):
            raise ToolkitError(f"{path}: series column {target!r} has a missing value on line {i + 2}")
    if time_column:
        k = header.index(time_column)
        times = [r[k].strip() for r in rows[1:]]
    else:
        times = [str(i) for i in range(len(values))]
    return Series(values, times, target, str(path))


def load_series(source: str, target: str | None, time_column: str | None) -> Series:
    from toolkit.data.sources import builtin_or_csv

    series, path = builtin_or_csv(source, BUILTIN_SERIES, "series")
    return series if series is not None else read_series_csv(path, target, time_column)


def make_windows(values: np.ndarray, window: int, horizon: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All windows: inputs (N, window), targets (N, horizon), index of each window's first target (N,)."""
    n = len(values) - window - horizon + 1
    if n < 1:
        raise ToolkitError(
            f"the series has {len(values)} values; it needs at least window + horizon = {window + horizon}"
        )
    idx = np.arange(n)[:, None]
    x = values[idx + np.arange(window)]
    y = values[idx + window + np.arange(horizon)]
    return x, y, np.arange(n) + window


def chronological_parts(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    """Boundaries (train_end, val_end) in the series: train [0, train_end), val [train_end, val_end), test after."""
    val_end = n - int(round(n * test_fraction))
    train_end = val_end - int(round(n * val_fraction))
    return train_end, val_end


def split_windows(starts: np.ndarray, horizon: int, train_end: int, val_end: int, n: int):
    """Masks of windows whose targets lie entirely in one part (straddling windows are dropped)."""
    ends = starts + horizon  # exclusive
    train = ends <= train_end
    val = (starts >= train_end) & (ends <= val_end)
    test = (starts >= val_end) & (ends <= n)
    return train, val, test


def fit_ar(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Linear autoregression with intercept, one least-squares fit per horizon step: coef (window + 1, horizon)."""
    a = np.c_[x, np.ones(len(x))]
    return np.linalg.lstsq(a, y, rcond=None)[0]


def predict_ar(coef: np.ndarray, x: np.ndarray) -> np.ndarray:
    return np.c_[x, np.ones(len(x))] @ coef


def naive_forecast(x: np.ndarray, horizon: int) -> np.ndarray:
    """Persistence: the last observed value, repeated over the horizon."""
    return np.repeat(x[:, -1:], horizon, axis=1)


def series_spec(series: Series, train_end: int, window: int, horizon: int) -> dict[str, Any]:
    train = series.values[:train_end]
    std = float(train.std()) or 1.0
    return {
        "kind": "series",
        "mean": [float(train.mean())],
        "std": [std],
        "target": {"mean": float(train.mean()), "std": std},  # targets share the input scaling
        "window": window,
        "horizon": horizon,
        "series_name": series.name,
        "labels": None,
    }
