"""Hyperparameter search (`toolkit tune`): Optuna studies over a recipe's `search:` space.

space.py parses and checks search spaces (no torch, no optuna: recipes load anywhere); search.py runs the
study (trials train through the ordinary training loop with the test split withheld) and finishes with
the best trial (test metrics once, best.yaml, a run directory); report.py writes trials.csv and plots.
"""

from __future__ import annotations

from typing import Any

__all__ = ["tune", "TuneResult"]


def __getattr__(name: str) -> Any:  # torch and optuna load only when a search runs
    if name in __all__:
        from toolkit.tune import search

        return getattr(search, name)
    raise AttributeError(name)
