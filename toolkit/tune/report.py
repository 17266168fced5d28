"""What a search leaves behind besides the best run: trials.csv and two plots (history, importance).

Rows are built from the study's storage, so a study shared by several machines is reported whole.
"""

from __future__ import annotations

import csv
import io
import warnings
from pathlib import Path
from typing import Any

from toolkit.io import atomic_path, write_text
from toolkit.tune.space import decode


def trial_rows(study: Any, search: Any) -> list[dict[str, Any]]:
    """One row per trial: number, state, value, epochs run, best epoch, seconds and the sampled params."""
    rows = []
    for tr in study.get_trials(deepcopy=False):
        params = {}
        for p in search.params:
            if p.key in tr.params:
                params[p.key] = decode(p, tr.params[p.key])
        seconds = tr.duration.total_seconds() if tr.duration is not None else None
        rows.append(
            {
                "number": tr.number,
                "state": tr.state.name.lower(),
                "value": tr.value if tr.value is not None else _last(tr),
                "epochs": tr.user_attrs.get("epochs"),
                "best_epoch": tr.user_attrs.get("best_epoch"),
                "seconds": round(seconds, 2) if seconds is not None else None,
                "params": params,
            }
        )
    return rows


def _last(tr: Any) -> float | None:
    """A pruned trial's value: its last reported intermediate value."""
    if tr.intermediate_values:
        return tr.intermediate_values[max(tr.intermediate_values)]
    return None


def write_reports(study: Any, search: Any, rows: list[dict[str, Any]]) -> dict[str, str]:
    out = Path(search.out)
    files = {"trials_csv": str(out / "trials.csv")}
    write_text(out / "trials.csv", trials_csv(rows, search))
    for name, plot in (("history", plot_history), ("importance", plot_importance)):
        path = out / f"{name}.png"
        if plot(study, path, search.metric_key):
            files[name] = str(path)
        else:
            path.unlink(missing_ok=True)  # a plot of an earlier session would no longer match
    return files


def trials_csv(rows: list[dict[str, Any]], search: Any) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    keys = [p.key for p in search.params]
    writer.writerow(["number", "state", search.metric_key, "epochs", "best_epoch", "seconds", *keys])
    for r in rows:
        value = "" if r["value"] is None else f"{r['value']:.6g}"
        params = [_cell(r["params"].get(k)) for k in keys]
        writer.writerow([r["number"], r["state"], value, r["epochs"], r["best_epoch"], r["seconds"], *params])
    return buf.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _save(ax: Any, path: Path) -> None:
    fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
    fig.set_size_inches(8, 4.5)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)


def plot_history(study: Any, path: Path, metric: str = "value") -> bool:
    """The metric of every completed trial and the best so far (Optuna's optimization history)."""
    from toolkit.train.plots import pyplot

    pyplot()
    import optuna
    from optuna.visualization.matplotlib import plot_optimization_history

    if not any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ax = plot_optimization_history(study, target_name=metric)
    _save(ax, path)
    return True


def plot_importance(study: Any, path: Path, metric: str = "value") -> bool:
    """How much each searched key explains the metric (PED-ANOVA over completed trials); needs a few."""
    from toolkit.train.plots import pyplot

    pyplot()
    import optuna
    from optuna.visualization.matplotlib import plot_param_importances

    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if len(complete) < 3:
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ax = plot_param_importances(study, target_name=metric)
        except (ValueError, RuntimeError, ZeroDivisionError):  # e.g. every trial sampled the same point
            return False
    _save(ax, path)
    return True
